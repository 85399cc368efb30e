//! Seaway: declarative read/write routing, read-your-writes and a two-tier
//! query cache for SeaORM, when one PostgreSQL server is no longer enough.
//!
//! Plain SeaORM calls on a [`Db`] are routed statement by statement: reads to
//! a replica, writes and transactions to the primary. A request scope makes
//! reads sticky to the primary after a write, and a consistency token carries
//! read-your-writes to later requests on any instance. Queries opt into a
//! cache (moka in process, Redis shared) that is invalidated by table on every
//! instance and never stores rows older than what a client was promised.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use sea_orm::EntityTrait;
//! use seaway::prelude::*;
//! use entity::prelude::Story;
//! let db = seaway::Db::connect(seaway::Config::from_env()?).await?;
//! let listing = Story::find().using_replica().cached().all(&db).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! * [`config`]: settings from the environment or a builder.
//! * [`router`]: the [`DatabaseRouter`] trait and [`ReadWriteRouter`].
//! * [`classify`]: read or write, and the tables a statement touches;
//!   `cascade`: the tables foreign-key actions change with them.
//! * `replica`: the replica set: balancing, probes, lag, failover.
//! * [`scope`]: per-request state (sticky flag, minimum LSN) in a task-local.
//! * `conn`: [`Db`], the routed `ConnectionTrait`; `txn`: [`DbTransaction`].
//! * [`select`]: `.using_replica()`, `.using_primary()`, `.using(..)`, `.cached()`;
//!   `.all_shared()`/`.one_shared()` return the cached `Arc` itself (no copy on an L1 hit).
//! * `cache`: the L1/L2 query cache, invalidation bus and circuit breaker.
//! * [`layer`]: the axum layer that opens scopes and writes the headers.
//! * `stats`: counters and snapshots for `/stats`, `/health`, `/metrics`.

mod cascade;
pub mod classify;
pub mod config;
mod conn;
mod error;
pub mod layer;
mod lsn;
mod replica;
pub mod router;
pub mod scope;
pub mod select;
mod stats;
mod txn;

mod cache;

pub use cache::{CacheStats, CacheValue, FORMAT_VERSION, SHORT_TTL};
pub use config::{Config, ConfigBuilder, Strategy};
pub use conn::{Db, Health, is_connection_error};
pub use error::{Error, redact_url};
pub use layer::SeawayLayer;
pub use lsn::Lsn;
pub use replica::{Skip, UNHEALTHY_AFTER};
pub use router::{DEFAULT, DatabaseRouter, Hints, READ_REPLICA, ReadWriteRouter};
pub use scope::{CacheOutcome, Route, Scope};
pub use select::{RoutedSelect, RoutedSelectExt};
pub use stats::{PoolStats, PoolsStats, ReplicaHealth, RoutingStats};
pub use txn::DbTransaction;

/// The extension traits, to `use seaway::prelude::*`.
pub mod prelude {
    pub use crate::select::RoutedSelectExt;
}
