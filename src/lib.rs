//! farmlb: a DPDK userspace load balancer for server farms.
//!
//! The pure core (`wire`, `packet`, `farm`, `flow`, `splice`, `config`, `idle`) has no DPDK types and
//! builds with `--no-default-features`; the DPDK shell (`dpdk`, `dataplane`) is
//! behind the default `dpdk` feature, except `dpdk::hint` (cache prefetching),
//! which the core uses and which needs no DPDK.

pub mod cli;
pub mod config;
pub mod control;
pub mod farm;
pub mod flow;
pub mod idle;
pub mod manager;
pub mod packet;
pub mod splice;
pub mod sync;
pub mod wire;

#[cfg(feature = "dpdk")]
pub mod dataplane;
pub mod dpdk;
