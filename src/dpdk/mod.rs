//! The DPDK shell: the only module that touches `dpdk-sys` and the only place
//! in farmlb (with `dpdk-sys` itself) allowed `unsafe`.
//!
//! It owns the EAL, mempools, ports, mbufs and lcores, and turns DPDK's return
//! codes into `DpdkError`. Nothing here decides what happens to a packet: that
//! is the pure core's job (`crate::packet`).
//!
//! Only [`hint`] (cache prefetching, which the core's flow table uses) is
//! built without the `dpdk` feature; everything else needs the system DPDK.

pub mod hint;

#[cfg(feature = "dpdk")]
mod eal;
#[cfg(feature = "dpdk")]
mod error;
#[cfg(feature = "dpdk")]
mod lcore;
#[cfg(feature = "dpdk")]
mod mbuf;
#[cfg(feature = "dpdk")]
mod mempool;
#[cfg(feature = "dpdk")]
mod port;

#[cfg(feature = "dpdk")]
pub use eal::{Eal, EalArgs};
#[cfg(feature = "dpdk")]
pub use error::{DpdkError, Result};
#[cfg(feature = "dpdk")]
pub use lcore::{launch_workers, tsc_hz, tsc_now, LcoreId, WorkerHandle};
#[cfg(feature = "dpdk")]
pub use mbuf::{Mbuf, MbufBurst};
#[cfg(feature = "dpdk")]
pub use mempool::Mempool;
#[cfg(feature = "dpdk")]
pub use port::{Port, PortConfig, PortId, PortStats, QueueId};
