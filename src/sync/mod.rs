//! Flow sync between farmlb nodes (issue 20; "Flow sync" in DESIGN.md): the
//! pure parts, not yet wired into the data path.
//!
//! - [`record`]: the records of flow changes and the authenticated batches
//!   that carry them (the wire format);
//! - [`window`]: the sending side towards one peer (bounded queue, batches
//!   in flight, acknowledgements, retransmission).
//!
//! Still to build (issue 20): the transport through the ports (UDP on a
//! dedicated address per node), the receiving side's store of synced flows
//! and their adoption by the owning worker, FullNAT local-address failover,
//! the bulk copy of a joining node, counters in `/status` and `/metrics`.

pub mod record;
pub mod window;
