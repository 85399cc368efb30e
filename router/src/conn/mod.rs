//! [`Db`]: the routed connection handle.
//!
//! * `connect`: building the handle (pools, identity, cache, tasks);
//! * `read`: the one read pipeline, for plain SeaORM calls and the explicit
//!   API alike: decide (`route`), then run, stamp and count;
//! * `write`: the write path: the sticky flag, the LSN, invalidation;
//! * `seaorm`: SeaORM's `ConnectionTrait` on top of both.

mod connect;
mod migrate;
mod read;
mod seaorm;
pub(crate) mod write;

pub(crate) use read::CacheSpec;

use crate::cache::{CacheStats, QueryCache};
use crate::catalog::Catalog;
use crate::lsn::Lsn;
use crate::replica::{ReplicaSet, pool_size};
use crate::router::DatabaseRouter;
use crate::scope;
use crate::stats::{PoolStats, PoolsStats, ReplicaHealth, RouteCounters, RoutingStats};
use crate::token::Tokens;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
use sea_orm::RuntimeErr;
use sea_orm::{DatabaseConnection, DbBackend, DbErr};
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A routed database handle: the primary, the replica set, named aliases,
/// the router and the query cache.
///
/// Cloning is an `Arc` increment. Background tasks (probes, the cache's
/// bus) stop when the last clone is dropped.
///
/// `Db` implements SeaORM's `ConnectionTrait` and `TransactionTrait`, so
/// existing code routes itself:
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use sea_orm::EntityTrait;
/// use entity::prelude::Story;
/// let db = seaway::Db::connect(seaway::Config::from_env()?).await?;
/// let stories = Story::find().all(&db).await?; // a replica, unless the scope wrote
/// # Ok(()) }
/// ```
///
/// # Consistency
///
/// A read goes to the primary when `with_primary` is running, when its scope
/// has written (sticky), or when no replica is healthy, within the lag bound
/// and replayed past the scope's minimum LSN. Transactions always run on the
/// primary. A replica read that fails at the connection level (or does not
/// answer within the statement timeout) is retried once on the primary.
#[derive(Clone)]
pub struct Db {
    shared: Arc<Shared>,
    /// Made by [`Db::read_only`]: every write is refused before it is sent.
    read_only: bool,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("backend", &self.shared.backend)
            .field("replicas", &self.replica_names())
            .field(
                "aliases",
                &self
                    .shared
                    .aliases
                    .iter()
                    .map(|(n, _)| n)
                    .collect::<Vec<_>>(),
            )
            .field("cache", &self.shared.cache_enabled)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    pub(crate) backend: DbBackend,
    pub(crate) primary: DatabaseConnection,
    /// A connection of its own to the primary for probes and `/health`,
    /// outside the query pool (`None`: the pool).
    pub(crate) primary_probe: Option<DatabaseConnection>,
    /// The pools' size bound.
    pub(crate) pool_max: u32,
    /// The primary's pool, reporting each statement (`Migrator::up(&db, ..)`).
    pub(crate) migrations: DatabaseConnection,
    /// What a refused migration gets, by reason: a connection that answers
    /// each statement with the refusal.
    pub(crate) refused: Vec<DatabaseConnection>,
    /// The "primary" answered that it is in recovery: a misconfiguration.
    pub(crate) primary_in_recovery: bool,
    pub(crate) replicas: ReplicaSet,
    pub(crate) aliases: Vec<(Arc<str>, DatabaseConnection)>,
    pub(crate) alias_names: Vec<Arc<str>>,
    pub(crate) router: Box<dyn DatabaseRouter>,
    pub(crate) cache: Arc<QueryCache>,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) counters: RouteCounters,
    pub(crate) replica_fallback: bool,
    /// `CACHE_TTL_SECS=0` turns `.cached()` into a bypass.
    pub(crate) cache_enabled: bool,
    pub(crate) cache_ttl: Duration,
    pub(crate) statement_timeout: Duration,
    /// SQLite has no WAL position shared with readers: count writes instead,
    /// starting at the clock so that tokens stay ordered across restarts.
    pub(crate) sqlite_lsn: AtomicU64,
    /// The cache namespace of the database's identity, and of each alias.
    pub(crate) ns: u64,
    pub(crate) alias_ns: Vec<u64>,
    pub(crate) tokens: Tokens,
    /// One re-read of the primary's position at a time, for tokens.
    pub(crate) reread: tokio::sync::Mutex<()>,
    /// The prober and the catch-up watcher, stopped when the last handle goes.
    pub(crate) tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// `/health` as the library sees it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Health {
    /// Whether the primary answered just now.
    pub primary_healthy: bool,
    /// Whether every connection of the primary's pool is in use (requests
    /// wait for one): degraded, not down.
    pub primary_pool_busy: bool,
    /// Each replica.
    pub replicas: Vec<ReplicaHealth>,
    /// The cache tiers.
    pub cache: CacheStats,
}

impl Health {
    /// Whether anything but the primary is down (a replica, Redis, the bus).
    pub fn degraded(&self) -> bool {
        self.replicas.iter().any(|r| !r.healthy)
            || (self.cache.l2_enabled && !self.cache.l2_healthy)
            || self.primary_pool_busy
    }
}

/// Whether an error means the server or the connection is gone (retry
/// elsewhere), as opposed to an error in the statement.
pub fn is_connection_error(e: &DbErr) -> bool {
    match e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        #[cfg(any(feature = "postgres", feature = "sqlite"))]
        DbErr::Query(RuntimeErr::SqlxError(s)) | DbErr::Exec(RuntimeErr::SqlxError(s)) => {
            use sea_orm::sqlx::Error as X;
            match s.as_ref() {
                X::Io(_)
                | X::Tls(_)
                | X::PoolTimedOut
                | X::PoolClosed
                | X::WorkerCrashed
                | X::Protocol(_) => true,
                X::Database(d) => d.code().is_some_and(|c| {
                    // connection exceptions, shutdowns, and a standby
                    // cancelling a query for a recovery conflict
                    c.starts_with("08")
                        || matches!(c.as_ref(), "57P01" | "57P02" | "57P03" | "40001")
                }),
                _ => false,
            }
        }
        _ => false,
    }
}

/// Whether a connection error is only a busy pool (no connection free in
/// time): not a sign that the server is down.
pub(crate) fn is_pool_timeout(e: &DbErr) -> bool {
    match e {
        DbErr::ConnectionAcquire(_) => true,
        #[cfg(any(feature = "postgres", feature = "sqlite"))]
        DbErr::Query(RuntimeErr::SqlxError(s)) | DbErr::Exec(RuntimeErr::SqlxError(s)) => {
            matches!(s.as_ref(), sea_orm::sqlx::Error::PoolTimedOut)
        }
        _ => false,
    }
}

impl Shared {
    /// Where the primary's probes and `/health` pings go.
    pub(crate) fn probe_conn(&self) -> &DatabaseConnection {
        self.primary_probe.as_ref().unwrap_or(&self.primary)
    }
}

impl Db {
    /// The backend of the primary.
    pub fn backend(&self) -> DbBackend {
        self.shared.backend
    }

    /// The primary's plain SeaORM connection (no routing, no cache, no
    /// invalidation: for tools and benchmarks).
    pub fn primary(&self) -> &DatabaseConnection {
        &self.shared.primary
    }

    /// The pool of the replica named `name` (see [`Db::replica_names`]), for
    /// tools and benchmarks: a statement run on it directly is not routed,
    /// counted or cached.
    pub fn replica_pool(&self, name: &str) -> Option<&DatabaseConnection> {
        self.shared
            .replicas
            .replicas
            .iter()
            .find(|r| &*r.name == name)
            .map(|r| &r.conn)
    }

    /// Names of the replicas (`replica1`, ...), in configuration order.
    pub fn replica_names(&self) -> Vec<String> {
        self.shared
            .replicas
            .replicas
            .iter()
            .map(|r| r.name.to_string())
            .collect()
    }

    /// Runs `f` with every read forced to the primary (read-after-write
    /// without a request scope, or across a write made elsewhere).
    ///
    /// ```no_run
    /// # async fn demo(db: seaway::Db) -> Result<(), sea_orm::DbErr> {
    /// use sea_orm::EntityTrait;
    /// let fresh = db.with_primary(|db| async move {
    ///     entity::prelude::Story::find_by_id(1).one(&db).await
    /// }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn with_primary<F, Fut, T>(&self, f: F) -> T
    where
        F: FnOnce(Db) -> Fut,
        Fut: Future<Output = T>,
    {
        scope::force_primary(f(self.clone())).await
    }

    /// A handle on the same databases that refuses every write, with a clear
    /// error, before it is sent (Rails' `connected_to(role: :reading)`).
    #[must_use]
    pub fn read_only(&self) -> Db {
        Db {
            shared: self.shared.clone(),
            read_only: true,
        }
    }

    /// Whether this handle refuses writes.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Whether writes are refused here and now (a read-only handle, or a
    /// `prevent_writes` block).
    pub(crate) fn writes_refused(&self) -> bool {
        self.read_only || scope::writes_prevented()
    }

    /// Pings the primary.
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn ping(&self) -> Result<(), DbErr> {
        self.shared.primary.ping().await
    }

    /// Sends pending invalidations (at most five seconds), then closes every
    /// pool. Other clones of this handle fail from then on.
    ///
    /// # Errors
    ///
    /// The first pool's error.
    pub async fn close(self) -> Result<(), DbErr> {
        let _ = self.flush(Duration::from_secs(5)).await;
        let s = &self.shared;
        let mut first = s.primary.close_by_ref().await.err();
        for r in &s.replicas.replicas {
            if let Err(e) = r.conn.close_by_ref().await {
                first.get_or_insert(e);
            }
        }
        for (_, c) in &s.aliases {
            if let Err(e) = c.close_by_ref().await {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Runs `fut` with every statement the classifier calls a write refused,
    /// with a clear error, before it is sent (Rails'
    /// `while_preventing_writes`): a block that must only read, on any
    /// connection it uses, transactions included.
    ///
    /// ```no_run
    /// # async fn demo(db: seaway::Db) {
    /// use sea_orm::EntityTrait;
    /// let report = db.prevent_writes(async {
    ///     entity::prelude::Story::find().all(&db).await // fine
    /// }).await;
    /// # }
    /// ```
    pub async fn prevent_writes<F: Future>(&self, fut: F) -> F::Output {
        scope::prevent_writes(fut).await
    }

    /// Runs `f` with every read in it that asks nothing else routed to a
    /// replica (subject to the scope: sticky, token, health, lag), all on one
    /// replica: for what the explicit API does not cover (cursors, loaders,
    /// `SelectThree`.., streams, SeaORM's own paginator).
    ///
    /// ```no_run
    /// # async fn demo(db: seaway::Db) -> Result<(), sea_orm::DbErr> {
    /// use sea_orm::{CursorTrait, EntityTrait};
    /// let page = db.with_replica(|db| async move {
    ///     entity::prelude::Story::find().cursor_by(entity::story::Column::Id).first(10).all(&db).await
    /// }).await?;
    /// # let _ = page; Ok(()) }
    /// ```
    pub async fn with_replica<F, Fut, T>(&self, f: F) -> T
    where
        F: FnOnce(Db) -> Fut,
        Fut: Future<Output = T>,
    {
        scope::with_using(crate::route::Using::Replica, f(self.clone())).await
    }

    /// As [`with_replica`](Self::with_replica), reading from the alias
    /// `name` (`default`, `read_replica`, or one configured; another name
    /// makes each read in it fail).
    pub async fn with_alias<F, Fut, T>(&self, name: &str, f: F) -> T
    where
        F: FnOnce(Db) -> Fut,
        Fut: Future<Output = T>,
    {
        scope::with_using(crate::route::Using::alias(name), f(self.clone())).await
    }

    /// Routing counters now.
    pub fn routing_stats(&self) -> RoutingStats {
        self.shared.counters.snapshot()
    }

    /// Cache counters now.
    pub async fn cache_stats(&self) -> CacheStats {
        self.shared.cache.sync().await;
        self.shared.cache.stats()
    }

    /// Pool occupancy now.
    pub fn pool_stats(&self) -> PoolsStats {
        let (size, idle) = pool_size(&self.shared.primary);
        PoolsStats {
            primary: PoolStats {
                name: None,
                size,
                idle,
            },
            replicas: self.shared.replicas.pools(),
        }
    }

    /// Pings the primary (bounded by a second, on a connection outside the
    /// query pool: a busy pool is not a dead primary) and reports every part.
    pub async fn health(&self) -> Health {
        let primary_healthy =
            tokio::time::timeout(Duration::from_secs(1), self.shared.probe_conn().ping())
                .await
                .is_ok_and(|r| r.is_ok());
        let (size, idle) = crate::replica::pool_size(&self.shared.primary);
        Health {
            primary_healthy,
            primary_pool_busy: self.shared.primary_probe.is_some()
                && size > 0
                && idle == 0
                && size >= self.shared.pool_max,
            replicas: self.shared.replicas.health(),
            cache: self.cache_stats().await,
        }
    }

    /// Runs one round of replica probes now (tests and tools; the service
    /// relies on the periodic ones).
    pub async fn probe_now(&self) {
        self.shared
            .replicas
            .probe(self.shared.probe_conn(), Duration::from_secs(1))
            .await;
    }

    /// Whether `.cached()` caches (false when the TTL is zero).
    pub fn cache_enabled(&self) -> bool {
        self.shared.cache_enabled
    }

    /// Cached loads in flight now (a test can check that none leaks).
    pub fn loads_in_flight(&self) -> usize {
        self.shared.cache.in_flight()
    }

    /// Sends invalidations Redis has not taken yet, waiting at most
    /// `deadline`: call it at graceful shutdown. Whether none is left.
    pub async fn flush(&self, deadline: Duration) -> bool {
        self.shared.cache.flush(deadline).await
    }

    /// The catalog as last read.
    pub(crate) fn catalog_schema(&self) -> Arc<crate::catalog::Schema> {
        self.shared.catalog.schema()
    }

    /// A schema statement ran: the catalog is read again before the next
    /// invalidation.
    pub(crate) fn schema_changed(&self) {
        self.shared.catalog.mark_stale();
    }

    pub(crate) fn count_write(&self) {
        crate::stats::bump(&self.shared.counters.writes, "seaway_writes_total");
    }

    pub(crate) fn count_read_in_transaction(&self) {
        crate::stats::bump(
            &self.shared.counters.primary_reads,
            "seaway_primary_reads_total",
        );
    }

    /// The primary's position as last known (SQLite: the write counter).
    pub(crate) fn known_lsn(&self) -> Lsn {
        match self.shared.backend {
            DbBackend::Postgres => Lsn(self.shared.replicas.primary_lsn.load(Relaxed)),
            _ => Lsn(self.shared.sqlite_lsn.load(Relaxed)),
        }
    }
}
