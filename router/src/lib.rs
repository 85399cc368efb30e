//! Seaway: declarative read/write routing, read-your-writes and a two-tier
//! query cache for SeaORM, when one PostgreSQL server is no longer enough.
//!
//! Plain SeaORM calls on a [`Db`] are routed statement by statement: reads to
//! a replica, writes and transactions to the primary. A request scope makes
//! reads sticky to the primary after a write, and a signed consistency token
//! carries read-your-writes to later requests on any instance. Queries opt
//! into a cache (moka in process, Redis shared) that a write empties only
//! where it can change a result (by row, column, membership or table), on
//! every instance, and that never stores rows older than what its source
//! proved.
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
//! * `config`: settings from the environment or a builder.
//! * `router`: the [`DatabaseRouter`] trait, [`ReadWriteRouter`], [`Chain`].
//! * `route`: where a read goes, as a pure function, and why ([`Why`]).
//! * `classify`: read, write or primary-only, the tables a statement
//!   touches, and what a SeaQuery write changed; `analyze`: what a cached
//!   `SELECT` reads, from its structure; `depends`: the tags it depends on;
//!   `tag`: tag identities; `catalog`: primary keys and cascades.
//! * `replica`: the replica set: balancing, probes, lag, failover.
//! * `scope`: per-request state (sticky flag, minimum LSN) in a task-local.
//! * `conn`: [`Db`] (connect, the read pipeline, the write path, SeaORM's
//!   traits); `txn`: [`DbTransaction`].
//! * `select`: `.using_replica()`, `.using_primary()`, `.using(..)`, `.cached()`.
//! * `cache`: L1/L2, versions, single-flight, the breaker and the bus.
//! * `token`: signed consistency tokens; `lsn`: WAL positions.
//! * `layer`: the axum layer that opens scopes and writes the headers.
//! * `stats`: counters and snapshots for `/stats`, `/health`, `/metrics`.

mod analyze;
mod cache;
mod catalog;
mod classify;
mod config;
mod conn;
mod depends;
mod error;
mod layer;
mod lsn;
mod replica;
mod route;
mod router;
mod scope;
mod select;
mod stats;
mod tag;
mod token;
mod txn;

pub use cache::{CacheStats, CacheValue, Invalidations, MAX_TTL, NEGATIVE_TTL, SHORT_TTL};
pub use config::{Config, ConfigBuilder, Strategy};
pub use conn::{Db, Health, is_connection_error};
pub use error::{Error, redact_url};
pub use layer::{CACHE_HEADER, ROUTE_HEADER, SeawayLayer, SeawayService, TOKEN_HEADER};
pub use lsn::Lsn;
pub use replica::UNHEALTHY_AFTER;
pub use route::Why;
pub use router::{Chain, DEFAULT, DatabaseRouter, Hints, Operation, READ_REPLICA, ReadWriteRouter};
pub use scope::{CacheOutcome, Route, Scope, ScopeState};
pub use select::{Routed, RoutedSelect, RoutedSelectExt};
pub use stats::{PoolStats, PoolsStats, ReplicaHealth, RoutingStats};
pub use token::TokenError;
pub use txn::DbTransaction;

/// The documented default of every setting.
pub mod defaults {
    pub use crate::config::{
        DEFAULT_CACHE_TTL, DEFAULT_DATABASE_URL, DEFAULT_HEALTH_CHECK_INTERVAL, DEFAULT_KEY_PREFIX,
        DEFAULT_L1_MAX_BYTES, DEFAULT_MAX_ENTRY_BYTES, DEFAULT_MAX_REPLICA_LAG, DEFAULT_POOL_MAX,
        DEFAULT_POOL_MIN, DEFAULT_REDIS_BACKOFF, DEFAULT_REDIS_TIMEOUT, DEFAULT_STATEMENT_TIMEOUT,
        MIN_TOKEN_SECRET_LEN, REPLICA_CONNECT_TIMEOUT,
    };
}

/// The extension traits, to `use seaway::prelude::*`.
pub mod prelude {
    pub use crate::select::RoutedSelectExt;
}
