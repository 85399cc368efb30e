#![doc = include_str!("../README.md")]
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
#[cfg(feature = "axum")]
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

pub use cache::CacheValue;
pub use config::{Config, ConfigBuilder, Strategy};
pub use conn::{Db, is_connection_error};
pub use error::{Error, redact_message, redact_url};
#[cfg(feature = "axum")]
pub use layer::SeawayLayer;
pub use lsn::Lsn;
pub use route::Why;
pub use router::{Chain, DEFAULT, DatabaseRouter, Hints, READ_REPLICA, ReadWriteRouter};
pub use scope::{CacheOutcome, Route, Scope, ScopeState};
pub use select::RawSelect;
pub use token::TokenError;
pub use txn::DbTransaction;

/// The extension traits, to `use seaway::prelude::*`.
pub mod prelude {
    pub use crate::select::RoutedSelectExt;
}

/// The explicit read API's types: what `.using_replica()`, `.cached()` and
/// the projections return, and where their terminals run.
pub mod read {
    #[cfg(feature = "json")]
    pub use crate::select::AsJson;
    pub use crate::select::{
        AsModel, AsPartial, AsTuple, Cached, Paginator, Projected, Projection, ReadConn, Routed,
        RoutedSelect, RoutedSelectExt, Uncached,
    };
}

/// Figures for `/stats`, `/health` and `/metrics`.
pub mod figures {
    pub use crate::cache::{CacheStats, Invalidations};
    pub use crate::conn::Health;
    pub use crate::replica::UNHEALTHY_AFTER;
    pub use crate::stats::{PoolStats, PoolsStats, ReplicaHealth, RoutingStats};
}

/// Settings beyond [`Config`]'s fields: balancing policies, connect-option
/// hooks, what routers are told, and every default.
pub mod settings {
    pub use crate::cache::{MAX_TTL, NEGATIVE_TTL, SHORT_TTL};
    pub use crate::config::{
        Balance, Candidate, ConnectOptionsHook, DEFAULT_CACHE_TTL, DEFAULT_DATABASE_URL,
        DEFAULT_HEALTH_CHECK_INTERVAL, DEFAULT_KEY_PREFIX, DEFAULT_L1_MAX_BYTES,
        DEFAULT_MAX_ENTRY_BYTES, DEFAULT_MAX_REPLICA_LAG, DEFAULT_POOL_MAX, DEFAULT_POOL_MIN,
        DEFAULT_REDIS_BACKOFF, DEFAULT_REDIS_TIMEOUT, DEFAULT_STATEMENT_TIMEOUT,
        MIN_TOKEN_SECRET_LEN, REPLICA_CONNECT_TIMEOUT, Server,
    };
    pub use crate::router::Operation;
}

/// The axum layer's service and header names.
#[cfg(feature = "axum")]
pub mod web {
    pub use crate::layer::{CACHE_HEADER, ROUTE_HEADER, SeawayService, TOKEN_HEADER};
}
