//! The farm server of farmlb: a small shop application that keeps each client
//! session in a local data cache with write-through to a shared database, and
//! checks a server instance ID cookie to flush stale cache entries
//! (US 7,197,547, FIGS. 4A–4C and 5); with a server number it also keeps each
//! session on a secondary server (US 7,702,791).
//!
//! - [`app`]: endpoints, cookies, the read path (cache, then database) and the
//!   write path (database first, version-guarded, then cache).
//! - [`store`]: the shared database behind one trait: SQLite or PostgreSQL,
//!   or this process's memory when sessions are replicated instead.
//! - [`replication`]: server numbers and peers, primary and secondary per
//!   session, the route cookie, versions, signed replication, repair and
//!   takeover (US 7,702,791).
//! - [`cache`]: the local data cache.
//! - [`load`]: the load report per farm unit (`GET /load`) for farmlb's
//!   service manager (US 6,970,913).
//! - [`server`]: running it on a socket.

pub mod app;
pub mod cache;
pub mod catalogue;
pub mod ids;
pub mod load;
pub mod replication;
pub mod server;
pub mod state;
pub mod stats;
pub mod store;

pub use app::{AppConfig, Shared, HEALTH_OK};
pub use server::RunningServer;
