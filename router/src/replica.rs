//! The replica set: balancing, health from periodic probes, lag in bytes and
//! milliseconds, and the choice of a replica for a read.

use crate::config::{Candidate, Strategy};
use crate::lsn::Lsn;
use crate::stats::{PoolStats, ReplicaHealth};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Probe failures in a row that mark a replica unhealthy.
pub const UNHEALTHY_AFTER: u32 = 3;

/// Asks for replay positions to be re-read soon: set by every invalidation
/// (local or from another instance), so that replicas that have replayed a
/// write become usable for cache fills within milliseconds, not a probe period.
#[derive(Debug, Default)]
pub(crate) struct Catchup {
    want: AtomicU64,
    notify: tokio::sync::Notify,
}

impl Catchup {
    /// Waits until an invalidation asks for positions to be re-read.
    pub(crate) async fn wanted(&self) {
        self.notify.notified().await;
    }

    /// Replicas should be re-read until they have replayed `lsn`.
    pub(crate) fn want(&self, lsn: Lsn) {
        if lsn.0 > self.want.fetch_max(lsn.0, Relaxed) {
            self.notify.notify_one();
        }
    }
}

/// One replica of the `read_replica` alias.
#[derive(Debug)]
pub(crate) struct Replica {
    /// `replica1`, `replica2`, ...: shown in headers and /health, never the URL.
    pub(crate) name: Arc<str>,
    pub(crate) conn: DatabaseConnection,
    /// A connection of its own for probes and replay reads, outside the
    /// query pool: a pool saturated by slow reads does not make the replica
    /// look dead. `None` (connections given by the caller): the pool.
    probe: Option<DatabaseConnection>,
    /// Queries in flight, for `least_connections`.
    pub(crate) inflight: AtomicUsize,
    healthy: AtomicBool,
    failures: AtomicU32,
    /// Replay position at the last probe: a lower bound of what it has now.
    replay_lsn: AtomicU64,
    lag_bytes: AtomicU64,
    lag_ms: AtomicU64,
    /// The SQLite read-only pool on the primary's own file: never behind.
    shares_primary: bool,
}

impl Replica {
    pub(crate) fn new(
        name: String,
        conn: DatabaseConnection,
        probe: Option<DatabaseConnection>,
        shares_primary: bool,
    ) -> Self {
        Self {
            name: name.into(),
            conn,
            probe,
            inflight: AtomicUsize::new(0),
            healthy: AtomicBool::new(true),
            failures: AtomicU32::new(0),
            replay_lsn: AtomicU64::new(if shares_primary { u64::MAX } else { 0 }),
            lag_bytes: AtomicU64::new(0),
            lag_ms: AtomicU64::new(0),
            shares_primary,
        }
    }

    /// Where probes and replay reads go.
    pub(crate) fn probe_conn(&self) -> &DatabaseConnection {
        self.probe.as_ref().unwrap_or(&self.conn)
    }

    /// Whether it is the SQLite read-only pool on the primary's own file.
    pub(crate) fn shares_primary(&self) -> bool {
        self.shares_primary
    }

    /// A read on it failed at the connection level: counted as a failed
    /// probe, unless the pool was merely busy (a busy pool is not a dead
    /// replica).
    pub(crate) fn read_failed(&self) {
        self.probe_failed();
    }

    /// What it has replayed at least.
    pub(crate) fn replay_lsn(&self) -> Lsn {
        Lsn(self.replay_lsn.load(Relaxed))
    }

    pub(crate) fn healthy(&self) -> bool {
        self.healthy.load(Relaxed)
    }

    pub(crate) fn health(&self) -> ReplicaHealth {
        ReplicaHealth {
            name: self.name.to_string(),
            healthy: self.healthy(),
            lag_ms: self.lag_ms.load(Relaxed),
            lag_bytes: self.lag_bytes.load(Relaxed),
            consecutive_failures: self.failures.load(Relaxed),
        }
    }

    fn probe_failed(&self) {
        let n = self.failures.fetch_add(1, Relaxed) + 1;
        if n >= UNHEALTHY_AFTER && self.healthy.swap(false, Relaxed) {
            tracing::warn!(replica = %self.name, failures = n, "replica marked unhealthy");
        }
    }

    fn probe_ok(&self, replay: Lsn, lag_bytes: u64, lag_ms: u64) {
        self.failures.store(0, Relaxed);
        self.replay_lsn.fetch_max(replay.0, Relaxed);
        self.lag_bytes.store(lag_bytes, Relaxed);
        self.lag_ms.store(lag_ms, Relaxed);
        if !self.healthy.swap(true, Relaxed) {
            tracing::info!(replica = %self.name, "replica healthy again");
        }
    }
}

/// Counts a query in flight on a replica for as long as it lives.
pub(crate) struct InFlight<'a>(&'a Replica);

impl<'a> InFlight<'a> {
    pub(crate) fn new(r: &'a Replica) -> Self {
        r.inflight.fetch_add(1, Relaxed);
        Self(r)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Relaxed);
    }
}

/// Why no replica could serve a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Skip {
    /// No replicas are configured.
    NoReplicas,
    /// All are unhealthy.
    Unhealthy,
    /// All healthy ones are over the lag bound.
    Lag,
    /// None has replayed the scope's minimum LSN (token or own writes).
    Token,
}

/// The replicas of `read_replica`, and how to pick one.
#[derive(Debug)]
pub(crate) struct ReplicaSet {
    pub(crate) replicas: Vec<Arc<Replica>>,
    strategy: Strategy,
    max_lag_ms: u64,
    next: AtomicUsize,
    /// (when, primary LSN) of recent probes, to turn a replay LSN into a time lag.
    history: Mutex<VecDeque<(Instant, u64)>>,
    /// The primary's LSN at the last probe: a lower bound of its position now.
    pub(crate) primary_lsn: AtomicU64,
    pub(crate) primary_healthy: AtomicBool,
}

impl ReplicaSet {
    pub(crate) fn new(replicas: Vec<Arc<Replica>>, strategy: Strategy, max_lag: Duration) -> Self {
        Self {
            replicas,
            strategy,
            max_lag_ms: max_lag.as_millis() as u64,
            next: AtomicUsize::new(0),
            history: Mutex::new(VecDeque::with_capacity(64)),
            primary_lsn: AtomicU64::new(0),
            primary_healthy: AtomicBool::new(true),
        }
    }

    fn check(&self, r: &Replica, min_lsn: Lsn) -> Result<(), Skip> {
        if !r.healthy() {
            return Err(Skip::Unhealthy);
        }
        if r.lag_ms.load(Relaxed) > self.max_lag_ms {
            return Err(Skip::Lag);
        }
        if r.replay_lsn() < min_lsn {
            return Err(Skip::Token);
        }
        Ok(())
    }

    /// Picks a replica for a read that must see `min_lsn`; keeps `pinned` while usable.
    pub(crate) fn pick(&self, pinned: Option<usize>, min_lsn: Lsn) -> Result<usize, Skip> {
        let n = self.replicas.len();
        if n == 0 {
            return Err(Skip::NoReplicas);
        }
        if let Some(p) = pinned
            && p < n
            && self.check(&self.replicas[p], min_lsn).is_ok()
        {
            return Ok(p);
        }
        let mut worst = Skip::Unhealthy;
        let mut note = |e: Skip| {
            // report the most specific reason: token over lag over unhealthy
            let rank = |s: Skip| match s {
                Skip::Token => 3,
                Skip::Lag => 2,
                _ => 1,
            };
            if rank(e) > rank(worst) {
                worst = e;
            }
        };
        let start = self.next.fetch_add(1, Relaxed);
        match &self.strategy {
            Strategy::RoundRobin => {
                for k in 0..n {
                    let i = (start + k) % n;
                    match self.check(&self.replicas[i], min_lsn) {
                        Ok(()) => return Ok(i),
                        Err(e) => note(e),
                    }
                }
            }
            Strategy::Custom(policy) => {
                let mut usable = Vec::with_capacity(n);
                for (i, r) in self.replicas.iter().enumerate() {
                    match self.check(r, min_lsn) {
                        Ok(()) => usable.push(Candidate {
                            index: i,
                            name: &r.name,
                            in_flight: r.inflight.load(Relaxed),
                            lag_ms: r.lag_ms.load(Relaxed),
                        }),
                        Err(e) => note(e),
                    }
                }
                if let Some(first) = usable.first() {
                    let chosen = policy.pick(&usable);
                    return Ok(if usable.iter().any(|c| c.index == chosen) {
                        chosen
                    } else {
                        first.index
                    });
                }
            }
            strategy => {
                let random = matches!(strategy, Strategy::Random);
                let mut best: Option<(usize, usize)> = None;
                let offset = if random {
                    rand::random_range(0..n)
                } else {
                    start % n
                };
                for k in 0..n {
                    let i = (offset + k) % n;
                    let r = &self.replicas[i];
                    match self.check(r, min_lsn) {
                        Ok(()) if random => return Ok(i),
                        Ok(()) => {
                            let load = r.inflight.load(Relaxed);
                            if best.is_none_or(|(_, b)| load < b) {
                                best = Some((i, load));
                            }
                        }
                        Err(e) => note(e),
                    }
                }
                if let Some((i, _)) = best {
                    return Ok(i);
                }
            }
        }
        Err(worst)
    }

    pub(crate) fn health(&self) -> Vec<ReplicaHealth> {
        self.replicas.iter().map(|r| r.health()).collect()
    }

    pub(crate) fn pools(&self) -> Vec<PoolStats> {
        self.replicas
            .iter()
            .map(|r| {
                let (size, idle) = pool_size(&r.conn);
                PoolStats {
                    name: Some(r.name.to_string()),
                    size,
                    idle,
                }
            })
            .collect()
    }

    /// One round of probes: the primary's LSN, then every replica at once.
    pub(crate) async fn probe(&self, primary: &DatabaseConnection, timeout: Duration) {
        if primary.get_database_backend() != DbBackend::Postgres {
            let ok = tokio::time::timeout(timeout, primary.ping())
                .await
                .is_ok_and(|r| r.is_ok());
            self.primary_healthy.store(ok, Relaxed);
            return;
        }
        let primary_lsn = match tokio::time::timeout(timeout, query_lsn(primary)).await {
            Ok(Ok(lsn)) => {
                self.primary_healthy.store(true, Relaxed);
                self.primary_lsn.fetch_max(lsn.0, Relaxed);
                let now = Instant::now();
                if let Ok(mut h) = self.history.lock() {
                    if h.len() == 64 {
                        h.pop_front();
                    }
                    h.push_back((now, lsn.0));
                }
                Some(lsn)
            }
            _ => {
                self.primary_healthy.store(false, Relaxed);
                None
            }
        };
        let probes = self.replicas.iter().filter(|r| !r.shares_primary).map(|r| async move {
            match tokio::time::timeout(timeout, probe_replica(r.probe_conn())).await {
                Ok(Ok(Some((replay, age_ms)))) => {
                    let (bytes, ms) = match primary_lsn {
                        Some(p) if replay >= p => (0, 0),
                        Some(p) => (p.0 - replay.0, self.time_lag_ms(replay).min(age_ms)),
                        // The primary's position is unknown (down, or too busy
                        // to answer): keep the last lag known, so that a busy
                        // primary does not switch the lag bound off.
                        None => (r.lag_bytes.load(Relaxed), r.lag_ms.load(Relaxed)),
                    };
                    r.probe_ok(replay, bytes, ms);
                }
                Ok(Ok(None)) => {
                    tracing::warn!(replica = %r.name, "replica is not in recovery: not serving reads");
                    r.probe_failed();
                }
                Ok(Err(e)) => {
                    tracing::debug!(replica = %r.name, error = %e, "replica probe failed");
                    r.probe_failed();
                }
                Err(_) => r.probe_failed(),
            }
        });
        futures::future::join_all(probes).await;
    }

    /// Re-reads the replay position of replicas behind what `c` wants, every
    /// few milliseconds, until they all passed it (or stopped answering).
    pub(crate) async fn catch_up(&self, c: &Catchup) {
        for _ in 0..1000 {
            let want = c.want.load(Relaxed);
            let behind: Vec<&Arc<Replica>> = self
                .replicas
                .iter()
                .filter(|r| !r.shares_primary && r.healthy() && r.replay_lsn().0 < want)
                .collect();
            if behind.is_empty() {
                return;
            }
            let reads = behind.iter().map(|r| async move {
                let q = r.probe_conn().query_one_raw(Statement::from_string(
                    DbBackend::Postgres,
                    "SELECT COALESCE(pg_last_wal_replay_lsn(), '0/0'::pg_lsn)::text AS replay",
                ));
                if let Ok(Ok(Some(row))) = tokio::time::timeout(Duration::from_millis(200), q).await
                    && let Ok(text) = row.try_get::<String>("", "replay")
                    && let Ok(lsn) = Lsn::parse(&text)
                {
                    r.replay_lsn.fetch_max(lsn.0, Relaxed);
                }
            });
            futures::future::join_all(reads).await;
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }

    /// Time since the primary was last seen at or before `replay`: how far
    /// behind a replica at `replay` is, at most.
    fn time_lag_ms(&self, replay: Lsn) -> u64 {
        let Ok(h) = self.history.lock() else {
            return u64::MAX;
        };
        h.iter()
            .rev()
            .find(|(_, lsn)| *lsn <= replay.0)
            .map(|(t, _)| t.elapsed().as_millis() as u64)
            .unwrap_or(u64::MAX)
    }
}

/// Open and idle connections of a pool.
pub(crate) fn pool_size(conn: &DatabaseConnection) -> (u32, u32) {
    match conn.get_database_backend() {
        // a mock or disconnected handle has no pool to look at
        #[cfg(feature = "postgres")]
        DbBackend::Postgres
            if matches!(
                conn.inner,
                sea_orm::DatabaseConnectionType::SqlxPostgresPoolConnection(_)
            ) =>
        {
            let p = conn.get_postgres_connection_pool();
            (p.size(), p.num_idle() as u32)
        }
        #[cfg(feature = "sqlite")]
        DbBackend::Sqlite
            if matches!(
                conn.inner,
                sea_orm::DatabaseConnectionType::SqlxSqlitePoolConnection(_)
            ) =>
        {
            let p = conn.get_sqlite_connection_pool();
            (p.size(), p.num_idle() as u32)
        }
        _ => (0, 0),
    }
}

/// `pg_current_wal_lsn()` of a primary.
pub(crate) async fn query_lsn(conn: &DatabaseConnection) -> Result<Lsn, sea_orm::DbErr> {
    let row = conn
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pg_current_wal_lsn()::text AS lsn",
        ))
        .await?
        .ok_or_else(|| sea_orm::DbErr::Custom("no row".into()))?;
    let text: String = row.try_get("", "lsn")?;
    Lsn::parse(&text).map_err(|e| sea_orm::DbErr::Custom(e.to_string()))
}

/// `Some((replay LSN, ms since the last replayed commit))` of a standby;
/// `None` when the server is not in recovery.
async fn probe_replica(conn: &DatabaseConnection) -> Result<Option<(Lsn, u64)>, sea_orm::DbErr> {
    let row = conn
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pg_is_in_recovery() AS rec, \
             COALESCE(pg_last_wal_replay_lsn(), '0/0'::pg_lsn)::text AS replay, \
             COALESCE((EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000)::bigint, 0) AS age_ms",
        ))
        .await?
        .ok_or_else(|| sea_orm::DbErr::Custom("no row".into()))?;
    let rec: bool = row.try_get("", "rec")?;
    if !rec {
        return Ok(None);
    }
    let replay: String = row.try_get("", "replay")?;
    let age: i64 = row.try_get("", "age_ms")?;
    let lsn = Lsn::parse(&replay).map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?;
    Ok(Some((lsn, age.max(0) as u64)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(strategy: Strategy, n: usize) -> ReplicaSet {
        let replicas = (0..n)
            .map(|i| {
                Arc::new(Replica::new(
                    format!("replica{}", i + 1),
                    DatabaseConnection::default(),
                    None,
                    false,
                ))
            })
            .collect();
        ReplicaSet::new(replicas, strategy, Duration::from_millis(1000))
    }

    #[test]
    fn round_robin_alternates() {
        let s = set(Strategy::RoundRobin, 2);
        let picks: Vec<usize> = (0..4)
            .map(|_| s.pick(None, Lsn::ZERO).expect("pick"))
            .collect();
        assert_eq!(picks, vec![0, 1, 0, 1]);
    }

    #[test]
    fn least_connections_prefers_the_idle_one() {
        let s = set(Strategy::LeastConnections, 2);
        let _busy = InFlight::new(&s.replicas[0]);
        for _ in 0..5 {
            assert_eq!(s.pick(None, Lsn::ZERO), Ok(1));
        }
    }

    #[test]
    fn skips_unhealthy_lagging_and_behind_token() {
        let s = set(Strategy::RoundRobin, 2);
        for _ in 0..UNHEALTHY_AFTER {
            s.replicas[0].probe_failed();
        }
        assert!(!s.replicas[0].healthy());
        for _ in 0..3 {
            assert_eq!(s.pick(None, Lsn::ZERO), Ok(1));
        }
        s.replicas[1].probe_ok(Lsn(10), 100, 5000);
        assert_eq!(s.pick(None, Lsn::ZERO), Err(Skip::Lag));
        s.replicas[1].probe_ok(Lsn(10), 0, 0);
        assert_eq!(s.pick(None, Lsn(11)), Err(Skip::Token));
        assert_eq!(s.pick(None, Lsn(10)), Ok(1));
        s.replicas[0].probe_ok(Lsn(10), 0, 0);
        assert!(s.replicas[0].healthy(), "one success brings it back");
    }

    #[test]
    fn keeps_the_pinned_replica() {
        let s = set(Strategy::RoundRobin, 3);
        for _ in 0..5 {
            assert_eq!(s.pick(Some(2), Lsn::ZERO), Ok(2));
        }
    }
}
