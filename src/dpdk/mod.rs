//! The DPDK shell: the only module that touches `dpdk-sys` and the only place
//! in farmlb (with `dpdk-sys` itself) allowed `unsafe`.
//!
//! It owns the EAL, mempools, ports, mbufs and lcores, and turns DPDK's return
//! codes into [`DpdkError`]. Nothing here decides what happens to a packet: that
//! is the pure core's job (`crate::packet`).

mod eal;
mod error;
mod lcore;
mod mbuf;
mod mempool;
mod port;

pub use eal::{Eal, EalArgs};
pub use error::{DpdkError, Result};
pub use lcore::{launch_workers, tsc_hz, tsc_now, LcoreId, WorkerHandle};
pub use mbuf::{Mbuf, MbufBurst};
pub use mempool::Mempool;
pub use port::{Port, PortConfig, PortId, PortStats, QueueId};
