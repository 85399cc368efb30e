//! [`Db`]: the routed connection handle. Plain SeaORM code on it is routed
//! statement by statement; the explicit API in [`select`](crate::select) and
//! the cache use the same decisions.

use crate::cache::{CacheStats, QueryCache};
use crate::classify::{self, Access, Tag};
use crate::config::{Config, REPLICA_CONNECT_TIMEOUT};
use crate::error::{Error, redact_url, scrub};
use crate::lsn::Lsn;
use crate::replica::{InFlight, Replica, ReplicaSet, Skip, pool_size, query_lsn};
use crate::router::{DEFAULT, DatabaseRouter, Hints, READ_REPLICA, ReadWriteRouter};
use crate::scope::{self, CacheOutcome, Route};
use crate::stats::{PoolStats, PoolsStats, ReplicaHealth, RouteCounters, RoutingStats, bump};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, ExecResult,
    QueryResult, RuntimeErr, Statement, StatementBuilder,
};
use serde::Serialize;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tracing::Instrument;

/// A routed database handle: the primary, the replica set, named aliases, the
/// router and the query cache.
///
/// Cloning is an `Arc` increment. Background probes stop when the last clone
/// is dropped.
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
/// primary. A replica read that fails at the connection level is retried once
/// on the primary.
#[derive(Clone)]
pub struct Db {
    shared: Arc<Shared>,
}

struct Shared {
    backend: DbBackend,
    primary: DatabaseConnection,
    replicas: ReplicaSet,
    aliases: HashMap<String, DatabaseConnection>,
    router: Box<dyn DatabaseRouter>,
    cache: Arc<QueryCache>,
    /// Tables changed by foreign-key actions, invalidated with their parent.
    cascades: Arc<crate::cascade::Cascades>,
    counters: RouteCounters,
    replica_fallback: bool,
    /// `CACHE_TTL_SECS=0` turns `.cached()` into a bypass.
    cache_enabled: bool,
    /// SQLite has no WAL position shared with readers: count writes instead,
    /// starting at the clock so that tokens stay ordered across restarts.
    sqlite_lsn: AtomicU64,
    /// The prober and the catch-up watcher, stopped when the last handle goes.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The reason of a read sent to the primary because its scope wrote.
const STICKY: &str = "sticky";

/// Where one read goes, and why (for tracing).
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Primary(&'static str),
    Replica(usize),
    Alias(Arc<str>),
}

/// An explicit route asked for by a query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Explicit {
    #[default]
    Auto,
    Primary,
    Replica,
    Alias(String),
}

/// `/health` as the library sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// Whether the primary answered just now.
    pub primary_healthy: bool,
    /// Each replica.
    pub replicas: Vec<ReplicaHealth>,
    /// The cache tiers.
    pub cache: CacheStats,
}

impl Health {
    /// Whether anything but the primary is down (a replica, or Redis).
    pub fn degraded(&self) -> bool {
        self.replicas.iter().any(|r| !r.healthy)
            || (self.cache.l2_enabled && !self.cache.l2_healthy)
    }
}

fn options(url: &str, min: u32, max: u32, timeout: Duration, lazy: bool) -> ConnectOptions {
    let mut o = ConnectOptions::new(url.to_owned());
    o.max_connections(max)
        .min_connections(min)
        .connect_timeout(timeout)
        .acquire_timeout(timeout)
        // A liveness ping on every checkout doubles a point query's cost
        // (BENCHMARKS.md): ping only connections idle for a while, and let a
        // replica read that meets a dead connection retry on the primary.
        .test_before_acquire(false)
        .test_before_acquire_if_idle_for(Duration::from_secs(30))
        .connect_lazy(lazy)
        .sqlx_logging(false);
    o
}

async fn connect(url: &str, opts: ConnectOptions) -> Result<DatabaseConnection, Error> {
    Database::connect(opts).await.map_err(|e| Error::Connect {
        url: redact_url(url),
        message: scrub(&e.to_string(), url),
    })
}

/// A read-only twin of an SQLite URL (`mode=ro`), or `None` for in-memory.
fn sqlite_read_only(url: &str) -> Option<String> {
    if url.contains(":memory:") || url.contains("mode=memory") {
        return None;
    }
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut params: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("mode="))
        .map(str::to_owned)
        .collect();
    params.push("mode=ro".to_owned());
    Some(format!("{base}?{}", params.join("&")))
}

/// Whether an error means the server or the connection is gone (retry
/// elsewhere), as opposed to an error in the statement.
pub fn is_connection_error(e: &DbErr) -> bool {
    use sea_orm::sqlx::Error as X;
    match e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Query(RuntimeErr::SqlxError(s)) | DbErr::Exec(RuntimeErr::SqlxError(s)) => {
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

fn unavailable(why: &str) -> DbErr {
    DbErr::Conn(RuntimeErr::Internal(format!(
        "no usable read replica ({why}) and REPLICA_FALLBACK=false"
    )))
}

impl Db {
    /// Connects the primary, the replicas (lazily: a replica that is down
    /// does not stop the service) and the aliases, with the default router.
    ///
    /// # Errors
    ///
    /// [`Error::Connect`] when the primary cannot be reached, [`Error::Config`]
    /// for an unusable Redis URL.
    pub async fn connect(config: Config) -> Result<Self, Error> {
        Self::connect_with_router(config, ReadWriteRouter).await
    }

    /// As [`connect`](Self::connect), with a custom router.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub async fn connect_with_router(
        config: Config,
        router: impl DatabaseRouter,
    ) -> Result<Self, Error> {
        let url = &config.database_url;
        if config.is_sqlite()
            && let Some(dir) = sqlite_dir(url)
        {
            std::fs::create_dir_all(&dir).map_err(|e| Error::Connect {
                url: redact_url(url),
                message: format!("cannot create {}: {e}", dir.display()),
            })?;
        }
        let primary = connect(
            url,
            options(
                url,
                config.pool_min,
                config.pool_max,
                Duration::from_secs(5),
                false,
            ),
        )
        .await?;
        let backend = primary.get_database_backend();
        let mut replicas = Vec::new();
        if backend == DbBackend::Sqlite {
            // WAL lets the read-only pool read while the primary writes.
            let _ = primary.execute_unprepared("PRAGMA journal_mode=WAL").await;
            if config.replica_urls.is_empty()
                && let Some(ro) = sqlite_read_only(url)
            {
                let conn = connect(
                    &ro,
                    options(&ro, 1, config.pool_max, Duration::from_secs(5), false),
                )
                .await?;
                replicas.push(Arc::new(Replica::new("replica1".into(), conn, true)));
            }
        }
        for (i, r) in config.replica_urls.iter().enumerate() {
            let conn = connect(
                r,
                options(
                    r,
                    config.pool_min,
                    config.pool_max,
                    REPLICA_CONNECT_TIMEOUT,
                    true,
                ),
            )
            .await?;
            let shares = backend == DbBackend::Sqlite;
            replicas.push(Arc::new(Replica::new(
                format!("replica{}", i + 1),
                conn,
                shares,
            )));
        }
        let mut aliases = HashMap::new();
        for (name, u) in &config.aliases {
            let conn = connect(
                u,
                options(u, 0, config.pool_max, REPLICA_CONNECT_TIMEOUT, true),
            )
            .await?;
            aliases.insert(name.clone(), conn);
        }
        let catchup = Arc::new(crate::replica::Catchup::default());
        let cache = QueryCache::new(&config, catchup.clone())?;
        let now_micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(1);
        let set = ReplicaSet::new(replicas, config.strategy, config.max_replica_lag);
        let interval = config.health_check_interval;
        let shared = Arc::new_cyclic(|weak: &Weak<Shared>| {
            let watcher = {
                let weak = weak.clone();
                tokio::spawn(async move {
                    loop {
                        // wait without holding the shared state, so dropping
                        // the last Db still drops it
                        catchup.wanted().await;
                        let Some(s) = weak.upgrade() else { return };
                        s.replicas.catch_up(&catchup).await;
                    }
                })
            };
            let weak = weak.clone();
            let prober = tokio::spawn(async move {
                // Db::connect probes once itself: the first tick is one period away.
                let mut tick =
                    tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(s) = weak.upgrade() else { return };
                    s.replicas
                        .probe(&s.primary, interval.max(Duration::from_millis(500)))
                        .await;
                }
            });
            Shared {
                backend,
                primary,
                replicas: set,
                aliases,
                router: Box::new(router),
                cache,
                cascades: Arc::default(),
                counters: RouteCounters::default(),
                replica_fallback: config.replica_fallback,
                cache_enabled: !config.cache_ttl.is_zero(),
                sqlite_lsn: AtomicU64::new(now_micros),
                tasks: vec![prober, watcher],
            }
        });
        let db = Self { shared };
        db.shared.cascades.refresh(&db.shared.primary).await;
        // Know the replicas' state before the first read.
        db.shared
            .replicas
            .probe(&db.shared.primary, Duration::from_secs(1))
            .await;
        Ok(db)
    }

    /// The backend of the primary.
    pub fn backend(&self) -> DbBackend {
        self.shared.backend
    }

    /// The primary's plain SeaORM connection (no routing, no cache).
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

    /// Invalidates cached results of `tables` on every instance (for writes
    /// this library did not see).
    pub async fn invalidate(&self, tables: &[&str]) {
        let tags: Vec<Tag> = tables.iter().map(|t| Tag::Owned((*t).to_owned())).collect();
        let lsn = self.write_lsn().await;
        self.shared.cache.invalidate(&tags, lsn).await;
    }

    /// Opens a read-only, repeatable-read transaction on one replica (the
    /// primary when none is usable): several reads from one snapshot.
    ///
    /// # Errors
    ///
    /// The database's, when the transaction cannot begin.
    pub async fn begin_read_only(&self) -> Result<sea_orm::DatabaseTransaction, DbErr> {
        use sea_orm::{AccessMode, IsolationLevel, TransactionTrait};
        let target = self.decide_read(&Explicit::Replica, &[])?;
        if let Target::Primary(reason) = &target {
            self.count_primary_read(reason);
        }
        let conn = self.conn_for(&target);
        let (iso, mode) = if self.backend() == DbBackend::Postgres {
            (
                Some(IsolationLevel::RepeatableRead),
                Some(AccessMode::ReadOnly),
            )
        } else {
            (None, None)
        };
        match conn.begin_with_config(iso, mode).await {
            Err(e) if matches!(target, Target::Replica(_)) && is_connection_error(&e) => {
                bump(&self.shared.counters.fallbacks, "seaway_fallbacks_total");
                self.shared.primary.begin_with_config(iso, mode).await
            }
            other => other,
        }
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

    /// Pings the primary (bounded by a second) and reports every part.
    pub async fn health(&self) -> Health {
        let primary_healthy =
            tokio::time::timeout(Duration::from_secs(1), self.shared.primary.ping())
                .await
                .is_ok_and(|r| r.is_ok());
        Health {
            primary_healthy,
            replicas: self.shared.replicas.health(),
            cache: self.cache_stats().await,
        }
    }

    /// Runs one round of replica probes now (tests and tools; the service
    /// relies on the periodic ones).
    pub async fn probe_now(&self) {
        self.shared
            .replicas
            .probe(&self.shared.primary, Duration::from_secs(1))
            .await;
    }

    /// The consistency token for what `state`'s scope wrote, if it wrote.
    pub fn token_for(&self, state: &scope::ScopeState) -> Option<Lsn> {
        state.wrote().then(|| state.min_lsn())
    }

    pub(crate) fn cache(&self) -> &Arc<QueryCache> {
        &self.shared.cache
    }

    /// Whether `.cached()` caches (false when the TTL is zero).
    pub fn cache_enabled(&self) -> bool {
        self.shared.cache_enabled
    }

    pub(crate) fn count_write(&self) {
        bump(&self.shared.counters.writes, "seaway_writes_total");
    }

    pub(crate) fn count_read_in_transaction(&self) {
        bump(
            &self.shared.counters.primary_reads,
            "seaway_primary_reads_total",
        );
    }

    /// The primary's position after a write (SQLite: the write counter).
    async fn write_lsn(&self) -> Lsn {
        match self.shared.backend {
            DbBackend::Postgres => {
                match tokio::time::timeout(Duration::from_secs(1), query_lsn(&self.shared.primary))
                    .await
                {
                    Ok(Ok(lsn)) => {
                        self.shared.replicas.primary_lsn.fetch_max(lsn.0, Relaxed);
                        lsn
                    }
                    _ => {
                        tracing::warn!(
                            "cannot read the primary's LSN after a write; using the last known"
                        );
                        Lsn(self.shared.replicas.primary_lsn.load(Relaxed))
                    }
                }
            }
            _ => Lsn(self.shared.sqlite_lsn.fetch_add(1, Relaxed) + 1),
        }
    }

    /// After a committed write: the scope must see it, caches forget `tables`
    /// and the tables their foreign keys' actions change.
    pub(crate) async fn after_write(&self, tables: &[Tag]) {
        let lsn = self.write_lsn().await;
        scope::with_current(|s| s.require_lsn(lsn));
        let s = &self.shared;
        let with = s.cascades.written_with(&s.primary, tables).await;
        s.cache
            .invalidate(with.as_deref().unwrap_or(tables), lsn)
            .await;
    }

    /// A schema statement ran: the foreign keys are read again before the
    /// next invalidation.
    pub(crate) fn schema_changed(&self) {
        self.shared.cascades.mark_stale();
    }

    /// Counts a read that ran on the primary for `reason` (a decision of
    /// `decide_read_with`): after a write in its scope (`sticky_reads`), or
    /// because no replica was usable (`fallbacks`). Counted where the read
    /// runs, not where it is decided, so that a cached answer counts neither.
    fn count_primary_read(&self, reason: &str) {
        let c = &self.shared.counters;
        if reason == STICKY {
            bump(&c.sticky_reads, "seaway_sticky_reads_total");
        } else if reason == Skip::Unhealthy.as_str() || reason == Skip::Lag.as_str() {
            bump(&c.fallbacks, "seaway_fallbacks_total");
        }
    }

    /// Decides where a read goes.
    pub(crate) fn decide_read(&self, explicit: &Explicit, tables: &[Tag]) -> Result<Target, DbErr> {
        self.decide_read_with(explicit, &Hints::new(tables))
    }

    /// As `decide_read`, with hints that may be computed lazily.
    pub(crate) fn decide_read_with(
        &self,
        explicit: &Explicit,
        hints: &Hints<'_>,
    ) -> Result<Target, DbErr> {
        let s = &self.shared;
        if scope::forced_primary() {
            return Ok(Target::Primary("forced"));
        }
        if *explicit == Explicit::Primary {
            return Ok(Target::Primary("explicit"));
        }
        let (wrote, min_lsn, pinned) =
            scope::with_current(|st| (st.wrote(), st.min_lsn(), st.pinned())).unwrap_or((
                false,
                Lsn::ZERO,
                None,
            ));
        let alias: &str = match explicit {
            Explicit::Alias(a) => a,
            Explicit::Replica => READ_REPLICA,
            _ => s.router.db_for_read(hints).unwrap_or(READ_REPLICA),
        };
        if alias != READ_REPLICA
            && alias != DEFAULT
            && let Some((name, _)) = s.aliases.get_key_value(alias)
        {
            return Ok(Target::Alias(name.as_str().into()));
        }
        if wrote {
            return Ok(Target::Primary(STICKY));
        }
        if alias != READ_REPLICA {
            return Ok(Target::Primary("router"));
        }
        match s.replicas.pick(pinned, min_lsn) {
            Ok(i) => {
                scope::with_current(|st| st.pin(i));
                Ok(Target::Replica(i))
            }
            Err(Skip::NoReplicas) => Ok(Target::Primary("no_replicas")),
            // Counted (`fallbacks`) when the read runs: an L1 hit reads nothing.
            Err(skip) if s.replica_fallback => Ok(Target::Primary(skip.as_str())),
            Err(skip) => Err(unavailable(skip.as_str())),
        }
    }

    fn conn_for(&self, t: &Target) -> DatabaseConnection {
        match t {
            Target::Primary(_) => self.shared.primary.clone(),
            Target::Replica(i) => self.shared.replicas.replicas[*i].conn.clone(),
            Target::Alias(a) => self
                .shared
                .aliases
                .get(a.as_ref())
                .cloned()
                .unwrap_or_else(|| self.shared.primary.clone()),
        }
    }

    pub(crate) fn route_of(&self, t: &Target) -> Route {
        match t {
            Target::Primary(_) => Route::Primary,
            Target::Replica(i) => Route::Replica(self.shared.replicas.replicas[*i].name.clone()),
            Target::Alias(a) => Route::Alias(a.clone()),
        }
    }

    /// What a result read from `t` is fresh to, and what that source had replayed.
    pub(crate) fn source_of(&self, t: &Target) -> crate::cache::Source {
        let min = scope::with_current(|s| s.min_lsn()).unwrap_or(Lsn::ZERO);
        let (replay, fresh) = match t {
            Target::Primary(_) => {
                let known = match self.shared.backend {
                    DbBackend::Postgres => self.shared.replicas.primary_lsn.load(Relaxed),
                    _ => self.shared.sqlite_lsn.load(Relaxed),
                };
                (Lsn::MAX, Lsn(known.max(min.0)))
            }
            Target::Replica(i) => {
                let r = self.shared.replicas.replicas[*i].replay_lsn();
                if r == Lsn::MAX {
                    // shares the primary's file
                    (
                        Lsn::MAX,
                        Lsn(self.shared.sqlite_lsn.load(Relaxed).max(min.0)),
                    )
                } else {
                    (r, Lsn(r.0.max(min.0)))
                }
            }
            Target::Alias(_) => (Lsn::ZERO, Lsn::ZERO),
        };
        crate::cache::Source {
            replay_lsn: replay,
            fresh_lsn: fresh,
        }
    }

    /// Runs a read on `target`; a replica that fails at the connection level
    /// is replaced by the primary once. Returns where it finally ran.
    ///
    /// `input` (the statement) is copied only when a retry may need it, so a
    /// read on the primary copies nothing.
    pub(crate) async fn run_read<I, T, F, Fut>(
        &self,
        target: Target,
        input: I,
        f: F,
    ) -> Result<(T, Target), DbErr>
    where
        I: Clone,
        F: Fn(DatabaseConnection, I) -> Fut,
        Fut: Future<Output = Result<T, DbErr>>,
    {
        let s = &self.shared;
        match &target {
            Target::Replica(i) => {
                let r = &s.replicas.replicas[*i];
                let result = {
                    let _guard = InFlight::new(r);
                    let span = tracing::debug_span!("seaway.statement", alias = READ_REPLICA, replica = %r.name, reason = "router");
                    f(r.conn.clone(), input.clone()).instrument(span).await
                };
                match result {
                    Ok(v) => {
                        bump(&s.counters.replica_reads, "seaway_replica_reads_total");
                        Ok((v, target))
                    }
                    Err(e) if is_connection_error(&e) && s.replica_fallback => {
                        tracing::warn!(replica = %r.name, error = %e, "replica read failed; retrying on the primary");
                        bump(&s.counters.fallbacks, "seaway_fallbacks_total");
                        let span = tracing::debug_span!(
                            "seaway.statement",
                            alias = DEFAULT,
                            reason = "fallback"
                        );
                        let v = f(s.primary.clone(), input).instrument(span).await?;
                        bump(&s.counters.primary_reads, "seaway_primary_reads_total");
                        Ok((v, Target::Primary("fallback")))
                    }
                    Err(e) => Err(e),
                }
            }
            Target::Primary(reason) => {
                let span =
                    tracing::debug_span!("seaway.statement", alias = DEFAULT, reason = *reason);
                let v = f(s.primary.clone(), input).instrument(span).await?;
                bump(&s.counters.primary_reads, "seaway_primary_reads_total");
                self.count_primary_read(reason);
                Ok((v, target))
            }
            Target::Alias(a) => {
                let span = tracing::debug_span!("seaway.statement", alias = %a, reason = "router");
                let v = f(self.conn_for(&target), input).instrument(span).await?;
                Ok((v, target))
            }
        }
    }

    /// Runs a write on the router's write alias (the primary by default),
    /// marks the scope sticky, and invalidates `access.tables` once it succeeded.
    async fn run_write<T, F, Fut>(&self, access: &Access, f: F) -> Result<T, DbErr>
    where
        F: FnOnce(DatabaseConnection) -> Fut,
        Fut: Future<Output = Result<T, DbErr>>,
    {
        let s = &self.shared;
        let conn = match s.router.db_for_write(&Hints::new(&access.tables)) {
            Some(a) if a != DEFAULT => s
                .aliases
                .get(a)
                .cloned()
                .unwrap_or_else(|| s.primary.clone()),
            _ => s.primary.clone(),
        };
        scope::with_current(|st| st.mark_wrote());
        bump(&s.counters.writes, "seaway_writes_total");
        let span = tracing::debug_span!("seaway.statement", alias = DEFAULT, reason = "write", tables = ?access.tables);
        let result = f(conn).instrument(span).await;
        if result.is_ok() {
            // once the schema statement is done, so that the reading sees it
            if access.schema {
                self.schema_changed();
            }
            self.after_write(&access.tables).await;
        }
        result
    }

    /// Routes one statement: writes to the write alias, reads through the
    /// router (retried on the primary if a replica fails); `run` executes
    /// `input` (the statement) on the connection chosen.
    async fn routed<I, T, F, Fut>(&self, access: Access, input: I, run: F) -> Result<T, DbErr>
    where
        I: Clone,
        F: Fn(DatabaseConnection, I) -> Fut,
        Fut: Future<Output = Result<T, DbErr>>,
    {
        if access.is_write() {
            return self.run_write(&access, |c| run(c, input)).await;
        }
        let target = self.decide_read(&Explicit::Auto, &access.tables)?;
        self.read_on(target, input, run).await
    }

    /// Runs a read on `target` (see `run_read`) and records its route in the scope.
    async fn read_on<I, T, F, Fut>(&self, target: Target, input: I, run: F) -> Result<T, DbErr>
    where
        I: Clone,
        F: Fn(DatabaseConnection, I) -> Fut,
        Fut: Future<Output = Result<T, DbErr>>,
    {
        let (v, ran) = self.run_read(target, input, run).await?;
        let route = self.route_of(&ran);
        scope::with_current(|st| st.record(route, CacheOutcome::Bypass));
        Ok(v)
    }

    /// Routes a SeaQuery-built statement. A plain `SELECT` is routed as a
    /// read at once; its tables are audited only if the router asks (the
    /// default router does not). Anything else is classified from its
    /// structure (`classify_builder`).
    async fn routed_typed<S, T, F, Fut>(&self, stmt: &S, run: F) -> Result<T, DbErr>
    where
        S: StatementBuilder,
        F: Fn(DatabaseConnection, Statement) -> Fut,
        Fut: Future<Output = Result<T, DbErr>>,
    {
        let built = self.shared.backend.build(stmt);
        if classify::is_plain_select(&built.sql) {
            let target = {
                let tables = || classify::read_tables(stmt);
                self.decide_read_with(&Explicit::Auto, &Hints::lazy(&tables))?
            };
            return self.read_on(target, built, run).await;
        }
        let access = classify::classify_builder(stmt, &built);
        self.routed(access, built, run).await
    }
}

fn sqlite_dir(url: &str) -> Option<std::path::PathBuf> {
    let path = url.strip_prefix("sqlite://")?.split('?').next()?;
    let parent = std::path::Path::new(path).parent()?;
    (!parent.as_os_str().is_empty()).then(|| parent.to_path_buf())
}

#[async_trait::async_trait]
impl ConnectionTrait for Db {
    fn get_database_backend(&self) -> DbBackend {
        self.shared.backend
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        let access = classify::classify_sql(&stmt.sql);
        self.routed(access, stmt, |c, st| async move { c.execute_raw(st).await })
            .await
    }

    async fn execute<S: StatementBuilder>(&self, stmt: &S) -> Result<ExecResult, DbErr> {
        self.routed_typed(stmt, |c, st| async move { c.execute_raw(st).await })
            .await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        let access = classify::classify_sql(sql);
        self.routed(access, sql, |c, sql| async move {
            c.execute_unprepared(sql).await
        })
        .await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        let access = classify::classify_sql(&stmt.sql);
        self.routed(
            access,
            stmt,
            |c, st| async move { c.query_one_raw(st).await },
        )
        .await
    }

    async fn query_one<S: StatementBuilder>(&self, stmt: &S) -> Result<Option<QueryResult>, DbErr> {
        self.routed_typed(stmt, |c, st| async move { c.query_one_raw(st).await })
            .await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let access = classify::classify_sql(&stmt.sql);
        self.routed(
            access,
            stmt,
            |c, st| async move { c.query_all_raw(st).await },
        )
        .await
    }

    async fn query_all<S: StatementBuilder>(&self, stmt: &S) -> Result<Vec<QueryResult>, DbErr> {
        self.routed_typed(stmt, |c, st| async move { c.query_all_raw(st).await })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_read_only_twin() {
        assert_eq!(
            sqlite_read_only("sqlite://./data/x.db?mode=rwc").as_deref(),
            Some("sqlite://./data/x.db?mode=ro")
        );
        assert_eq!(
            sqlite_read_only("sqlite://x.db").as_deref(),
            Some("sqlite://x.db?mode=ro")
        );
        assert_eq!(sqlite_read_only("sqlite::memory:"), None);
    }
}
