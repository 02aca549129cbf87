//! Flow sync between farmlb nodes ("Flow sync" in DESIGN.md and the
//! README): each node tells its peers about its established flows, so that
//! a peer takes a flow over when the node dies or the router moves the
//! flow.
//!
//! - [`record`]: the records of flow changes and the authenticated batches
//!   that carry them (the wire format);
//! - [`window`]: the sending side towards one peer (bounded queue, batches
//!   in flight, acknowledgements, retransmission);
//! - [`store`]: the synced flows a worker looks a packet up in before it
//!   treats it as new;
//! - [`node`]: the sync thread (records from the workers, peers, liveness,
//!   address takeover, bulk copies, the report).
//!
//! The workers' side is in the farm balancer (records of flows that became
//! established, changed or ended; adoption of synced flows) and the packet
//! processor (datagrams to and from the sync address, ARP for claimed
//! addresses).

pub mod node;
pub mod record;
pub mod store;
pub mod window;

pub use node::{wall_ns, Outgoing, Shared, SyncReport, Takeover};
pub use record::{Record, What};
pub use store::Store;
