//! The two-tier query cache: L1 moka in process, L2 Redis shared, tagged by
//! table, invalidated after commit on every instance.
//!
//! # Consistency
//!
//! * Every entry records the version of each table it read (plus the global
//!   tag `*`). A write moves the versions of the tables it wrote; an entry
//!   whose versions moved is a miss. L1 compares with this process's versions
//!   (kept current by the Redis channel), L2 with Redis's own, read in the
//!   same round trip as the entry.
//! * Every invalidation records the primary's LSN. A result read from a
//!   replica that had not replayed past the last invalidation of one of its
//!   tables is returned but not stored, and so is a result whose tables were
//!   invalidated while it was being read.
//! * Every entry records the LSN it is fresh to; a scope that must see an LSN
//!   (consistency token, or its own writes) uses only entries at least that fresh.
//! * With Redis unreachable, L1 is emptied, new L1 entries live at most
//!   [`SHORT_TTL`], and invalidations are kept and sent once Redis answers.

mod l2;

use crate::classify::{ALL_TAG, Tag};
use crate::config::Config;
use crate::lsn::Lsn;
use crate::scope::CacheOutcome;
use l2::L2;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Bumped whenever the encoding of entries changes: older entries are then
/// misses (their key differs), never wrong decodes.
pub const FORMAT_VERSION: u32 = 1;
/// L1 time-to-live while cross-instance invalidation is unavailable.
pub const SHORT_TTL: Duration = Duration::from_secs(1);

/// What can be cached: any serde value that is cheap enough to clone.
pub trait CacheValue: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static> CacheValue for T {}

/// The key of a query: backend, SQL and bound values, hashed (xxh3-128).
///
/// SeaQuery renders the statement into a per-thread buffer that is reused
/// (so working out the key of an L1 hit allocates nothing), and the buffer is
/// hashed once: hashing piece by piece as SeaQuery writes costs more than
/// rendering.
pub(crate) fn key_of(
    kind: &str,
    backend: sea_orm::DbBackend,
    stmt: &sea_orm::sea_query::SelectStatement,
) -> u128 {
    use sea_orm::sea_query::{MysqlQueryBuilder, PostgresQueryBuilder, SqliteQueryBuilder};
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let render = |buf: &mut Vec<u8>| {
        buf.clear();
        let mut w = KeyWriter(buf);
        FORMAT_VERSION.hash(&mut w);
        kind.hash(&mut w);
        (backend as u8).hash(&mut w);
        match backend {
            sea_orm::DbBackend::Postgres => {
                stmt.build_collect_any_into(&PostgresQueryBuilder, &mut w)
            }
            sea_orm::DbBackend::Sqlite => stmt.build_collect_any_into(&SqliteQueryBuilder, &mut w),
            // MySQL, and any backend added later (its byte is in the key too)
            _ => stmt.build_collect_any_into(&MysqlQueryBuilder, &mut w),
        }
        let key = xxhash_rust::xxh3::xxh3_128(buf);
        // keep a buffer of a usual size, not the largest ever rendered
        if buf.capacity() > 64 << 10 {
            *buf = Vec::new();
        }
        key
    };
    BUF.try_with(|b| match b.try_borrow_mut() {
        Ok(mut buf) => render(&mut buf),
        Err(_) => render(&mut Vec::new()),
    })
    .unwrap_or_else(|_| render(&mut Vec::new()))
}

/// A SeaQuery `SqlWriter` (and a `Hasher`, for bound values) that appends
/// everything it is given to a byte buffer, which is then hashed once.
struct KeyWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for KeyWriter<'_> {
    #[inline]
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
    // SeaQuery writes an owned identifier a char at a time (SeaORM's column
    // references carry the table's name as one). `#[inline]` lets SeaQuery's
    // loop, compiled in another codegen unit, inline this push.
    #[inline]
    fn write_char(&mut self, c: char) -> std::fmt::Result {
        if c.is_ascii() {
            self.0.push(c as u8);
        } else {
            self.0
                .extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        }
        Ok(())
    }
}

impl Hasher for KeyWriter<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
    fn finish(&self) -> u64 {
        0 // never asked: the buffer is hashed by `key_of`
    }
}

/// Required by `SqlWriter`; a key has no text.
impl std::fmt::Display for KeyWriter<'_> {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Ok(())
    }
}

impl sea_orm::sea_query::SqlWriter for KeyWriter<'_> {
    fn push_param<T: sea_orm::sea_query::QueryBuilder>(
        &mut self,
        value: sea_orm::sea_query::Value,
        _: &T,
    ) {
        // 0xFF never occurs in UTF-8 text: a value cannot pass for SQL.
        self.0.push(0xFF);
        value.hash(self);
    }

    fn as_writer(&mut self) -> &mut dyn std::fmt::Write {
        self
    }
}

/// One L1 entry: the decoded value, ready to clone out.
struct Entry {
    value: Arc<dyn Any + Send + Sync>,
    versions: Box<[(Tag, u64)]>,
    fresh_lsn: Lsn,
    expires_at: Instant,
    weight: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct TagState {
    version: u64,
    lsn: u64,
}

/// Where a loaded result came from, as the loader reports it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Source {
    /// What the source had replayed at least (`Lsn::MAX` for the primary).
    pub(crate) replay_lsn: Lsn,
    /// What the result is fresh to at least.
    pub(crate) fresh_lsn: Lsn,
}

/// Hit, miss and error counters, and what fills were refused.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) l1_hits: AtomicU64,
    pub(crate) l1_misses: AtomicU64,
    pub(crate) l2_hits: AtomicU64,
    pub(crate) l2_misses: AtomicU64,
    pub(crate) invalidations: AtomicU64,
    pub(crate) loads: AtomicU64,
    pub(crate) refused_lag: AtomicU64,
    pub(crate) refused_race: AtomicU64,
}

/// Cache figures at one moment, for `/stats` and `/health`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CacheStats {
    /// L1 hits.
    pub l1_hits: u64,
    /// L1 misses.
    pub l1_misses: u64,
    /// L2 hits.
    pub l2_hits: u64,
    /// L2 misses (including undecodable entries).
    pub l2_misses: u64,
    /// Redis calls that failed or timed out.
    pub l2_errors: u64,
    /// hits / (hits + database loads).
    pub hit_rate: f64,
    /// Tables invalidated.
    pub invalidations: u64,
    /// Database loads made for cached queries.
    pub loads: u64,
    /// Fills not stored because the replica was behind an invalidation.
    pub refused_lag: u64,
    /// Fills not stored because an invalidation raced them.
    pub refused_race: u64,
    /// Entries in L1.
    pub l1_entries: u64,
    /// Weighted size of L1 in bytes.
    pub l1_bytes: u64,
    /// Whether Redis is configured.
    pub l2_enabled: bool,
    /// Whether Redis answers (and the circuit is closed).
    pub l2_healthy: bool,
}

type Flight = Arc<tokio::sync::OnceCell<Loaded>>;

#[derive(Clone)]
struct Loaded {
    value: Arc<dyn Any + Send + Sync>,
    outcome: CacheOutcome,
    fresh_lsn: Lsn,
}

/// The query cache shared by every clone of a [`Db`](crate::Db).
pub(crate) struct QueryCache {
    l1: moka::future::Cache<u128, Arc<Entry>>,
    tags: RwLock<HashMap<String, TagState>>,
    /// Tags invalidated locally while Redis was unreachable: sent when it answers.
    pending: Mutex<HashSet<String>>,
    flights: Mutex<HashMap<u128, Flight>>,
    l2: Option<Arc<L2>>,
    ttl: Duration,
    pub(crate) counters: Counters,
    /// Whether the invalidation channel is subscribed (always true without Redis).
    bus_up: AtomicBool,
    /// Distinct local version numbers for invalidations Redis has not seen.
    local_versions: AtomicU64,
    /// Told every invalidation's LSN, so replica positions are re-read.
    catchup: Arc<crate::replica::Catchup>,
    /// `l1_max_bytes == 0`: no L1 (every hit comes from Redis).
    l1_enabled: bool,
}

impl QueryCache {
    pub(crate) fn new(
        config: &Config,
        catchup: Arc<crate::replica::Catchup>,
    ) -> Result<Arc<Self>, crate::Error> {
        let l1 = moka::future::Cache::builder()
            .max_capacity(config.l1_max_bytes)
            .weigher(|_k: &u128, e: &Arc<Entry>| e.weight)
            .time_to_live(config.cache_ttl.max(Duration::from_millis(1)))
            .build();
        let l2 = match &config.redis_url {
            Some(url) => Some(Arc::new(L2::new(url, config)?)),
            None => None,
        };
        let cache = Arc::new(Self {
            l1,
            tags: RwLock::new(HashMap::new()),
            pending: Mutex::new(HashSet::new()),
            flights: Mutex::new(HashMap::new()),
            bus_up: AtomicBool::new(l2.is_none()),
            l2,
            ttl: config.cache_ttl,
            counters: Counters::default(),
            local_versions: AtomicU64::new(1 << 62),
            catchup,
            l1_enabled: config.l1_max_bytes > 0,
        });
        if let Some(l2) = &cache.l2 {
            l2::spawn_bus(l2.clone(), Arc::downgrade(&cache));
        }
        Ok(cache)
    }

    fn local_version(&self, tag: &str) -> TagState {
        self.tags
            .read()
            .map(|t| t.get(tag).copied().unwrap_or_default())
            .unwrap_or_default()
    }

    fn valid(&self, e: &Entry, min_lsn: Lsn) -> bool {
        if e.fresh_lsn < min_lsn || e.expires_at <= Instant::now() {
            return false;
        }
        let Ok(tags) = self.tags.read() else {
            return false;
        };
        e.versions
            .iter()
            .all(|(t, v)| tags.get(t.as_ref()).map_or(0, |s| s.version) == *v)
    }

    /// Looks `key` up in L1, then L2, then loads it once however many ask.
    ///
    /// `tags` are the tables the query reads; `load` reads the database and
    /// says from where.
    pub(crate) async fn get_or_load<V, F, Fut>(
        self: &Arc<Self>,
        key: u128,
        tags: impl FnOnce() -> Vec<Tag>,
        ttl: Option<Duration>,
        min_lsn: Lsn,
        load: F,
    ) -> Result<(Arc<V>, CacheOutcome), sea_orm::DbErr>
    where
        V: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(V, Source), sea_orm::DbErr>>,
    {
        if let Some(e) = self.l1.get(&key).await
            && self.valid(&e, min_lsn)
            && let Ok(v) = e.value.clone().downcast::<V>()
        {
            self.counters.l1_hits.fetch_add(1, Relaxed);
            metrics::counter!("seaway_cache_l1_hits_total").increment(1);
            return Ok((v, CacheOutcome::HitL1));
        }
        self.counters.l1_misses.fetch_add(1, Relaxed);
        metrics::counter!("seaway_cache_l1_misses_total").increment(1);
        let mut tags = tags();
        if !tags.iter().any(|t| t == ALL_TAG) {
            tags.push(Tag::Borrowed(ALL_TAG));
        }
        let ttl = ttl.unwrap_or(self.ttl);

        let flight: Flight = {
            let mut f = self.flights.lock().map_err(|_| poisoned())?;
            f.entry(key).or_default().clone()
        };
        let mut load = Some(load);
        let result = flight
            .get_or_try_init(|| {
                let load = load.take();
                async {
                    let load = load.ok_or_else(|| sea_orm::DbErr::Custom("load taken".into()))?;
                    self.miss::<V, F, Fut>(key, &tags, ttl, min_lsn, load).await
                }
            })
            .await
            .cloned();
        if let Ok(mut f) = self.flights.lock()
            && f.get(&key).is_some_and(|g| Arc::ptr_eq(g, &flight))
        {
            f.remove(&key);
        }
        let loaded = result?;
        if loaded.fresh_lsn >= min_lsn
            && let Ok(v) = loaded.value.clone().downcast::<V>()
        {
            return Ok((v, loaded.outcome));
        }
        // We joined a load made for a scope that needed less freshness (or
        // another type): load our own, uncoalesced.
        match load.take() {
            Some(load) => {
                let own = self
                    .miss::<V, F, Fut>(key, &tags, ttl, min_lsn, load)
                    .await?;
                let v = own
                    .value
                    .downcast::<V>()
                    .map_err(|_| sea_orm::DbErr::Custom("cache type mismatch".into()))?;
                Ok((v, own.outcome))
            }
            None => Err(sea_orm::DbErr::Custom("cache type mismatch".into())),
        }
    }

    async fn miss<V, F, Fut>(
        self: &Arc<Self>,
        key: u128,
        tags: &[Tag],
        ttl: Duration,
        min_lsn: Lsn,
        load: F,
    ) -> Result<Loaded, sea_orm::DbErr>
    where
        V: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(V, Source), sea_orm::DbErr>>,
    {
        // L2, with Redis's current versions of the tags in the same round trip.
        if let Some(l2) = &self.l2
            && let Some(found) = l2.get(key, tags).await
        {
            self.sync_versions(tags, &found.versions);
            if let Some(bytes) = found.entry {
                match l2::decode_entry::<V>(&bytes) {
                    Some(e)
                        if e.fresh_lsn >= min_lsn.0 && e.versions_match(tags, &found.versions) =>
                    {
                        self.counters.l2_hits.fetch_add(1, Relaxed);
                        metrics::counter!("seaway_cache_l2_hits_total").increment(1);
                        let value: Arc<dyn Any + Send + Sync> = Arc::new(e.value);
                        self.put_l1(
                            key,
                            tags,
                            &e.versions,
                            Lsn(e.fresh_lsn),
                            ttl,
                            value.clone(),
                            bytes.len(),
                        )
                        .await;
                        return Ok(Loaded {
                            value,
                            outcome: CacheOutcome::HitL2,
                            fresh_lsn: Lsn(e.fresh_lsn),
                        });
                    }
                    _ => {}
                }
            }
            self.counters.l2_misses.fetch_add(1, Relaxed);
            metrics::counter!("seaway_cache_l2_misses_total").increment(1);
        }

        let before: Vec<TagState> = tags.iter().map(|t| self.local_version(t)).collect();
        self.counters.loads.fetch_add(1, Relaxed);
        let (value, source) = load().await?;
        let after: Vec<TagState> = tags.iter().map(|t| self.local_version(t)).collect();
        let newest_invalidation = after.iter().map(|s| s.lsn).max().unwrap_or(0);
        let fresh = Lsn(source.fresh_lsn.0.max(newest_invalidation).max(min_lsn.0));
        let value = Arc::new(value);
        let stored: Arc<dyn Any + Send + Sync> = value.clone();
        if before != after {
            self.counters.refused_race.fetch_add(1, Relaxed);
            tracing::debug!("cache fill refused: invalidated while loading");
        } else if source.replay_lsn.0 < newest_invalidation {
            self.counters.refused_lag.fetch_add(1, Relaxed);
            tracing::debug!(
                replay = %source.replay_lsn,
                invalidated = %Lsn(newest_invalidation),
                "cache fill refused: replica behind the last invalidation"
            );
        } else {
            let versions: Vec<u64> = before.iter().map(|s| s.version).collect();
            match postcard::to_allocvec(&*value) {
                Ok(payload) => {
                    let size = payload.len();
                    if let Some(l2) = &self.l2 {
                        l2.put(key, tags, &versions, fresh, ttl, payload);
                    }
                    self.put_l1(key, tags, &versions, fresh, ttl, stored.clone(), size)
                        .await;
                }
                Err(e) => tracing::warn!(error = %e, "cache value does not encode; not cached"),
            }
        }
        Ok(Loaded {
            value: stored,
            outcome: CacheOutcome::Miss,
            fresh_lsn: fresh,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn put_l1(
        &self,
        key: u128,
        tags: &[Tag],
        versions: &[u64],
        fresh: Lsn,
        ttl: Duration,
        value: Arc<dyn Any + Send + Sync>,
        size: usize,
    ) {
        if !self.l1_enabled {
            return;
        }
        let ttl = if self.bus_up.load(Relaxed) {
            ttl
        } else {
            ttl.min(SHORT_TTL)
        };
        let entry = Entry {
            value,
            versions: tags.iter().cloned().zip(versions.iter().copied()).collect(),
            fresh_lsn: fresh,
            expires_at: Instant::now() + ttl,
            weight: u32::try_from(size + 64 + 32 * tags.len()).unwrap_or(u32::MAX),
        };
        self.l1.insert(key, Arc::new(entry)).await;
    }

    /// Takes Redis's versions as this process's, except for tags whose
    /// local invalidation Redis has not heard of yet.
    fn sync_versions(&self, tags: &[Tag], remote: &[(u64, u64)]) {
        // Lock order: pending, then tags (nowhere else holds both).
        let Ok(pending) = self.pending.lock() else {
            return;
        };
        if let Ok(mut local) = self.tags.write() {
            for (t, (v, lsn)) in tags.iter().zip(remote) {
                if pending.contains(t.as_ref()) {
                    continue;
                }
                let s = local.entry(t.to_string()).or_default();
                s.version = *v;
                s.lsn = s.lsn.max(*lsn);
            }
        }
    }

    /// Applies versions announced by another instance.
    pub(crate) fn apply_remote(&self, updates: &[(String, u64, u64)]) {
        if let Some(max) = updates.iter().map(|u| u.2).max() {
            self.catchup.want(Lsn(max));
        }
        if let Ok(mut local) = self.tags.write() {
            for (t, v, lsn) in updates {
                let s = local.entry(t.clone()).or_default();
                s.version = *v;
                s.lsn = s.lsn.max(*lsn);
            }
        }
    }

    /// Moves the versions of `tables` (all entries when empty), here and, through
    /// Redis, on every instance. `lsn` is the primary's position after the write.
    pub(crate) async fn invalidate(&self, tables: &[Tag], lsn: Lsn) {
        let tags: Vec<String> = if tables.is_empty() {
            vec![ALL_TAG.to_owned()]
        } else {
            tables.iter().map(|t| t.to_string()).collect()
        };
        self.counters
            .invalidations
            .fetch_add(tags.len() as u64, Relaxed);
        metrics::counter!("seaway_cache_invalidations_total").increment(tags.len() as u64);
        // Local first, so this instance never serves its own stale entry.
        self.bump_local(&tags, lsn);
        self.catchup.want(lsn);
        self.announce(tags, lsn).await;
    }

    /// Moves the tags' versions in Redis and tells every instance; when Redis
    /// does not take them, keeps them to send once it answers.
    async fn announce(&self, tags: Vec<String>, lsn: Lsn) {
        let Some(l2) = &self.l2 else { return };
        match l2.invalidate(&tags, lsn).await {
            Some(versions) => {
                let updates: Vec<_> = tags
                    .into_iter()
                    .zip(versions)
                    .map(|(t, v)| (t, v, lsn.0))
                    .collect();
                self.apply_remote(&updates);
            }
            None => {
                if let Ok(mut p) = self.pending.lock() {
                    p.extend(tags);
                }
            }
        }
    }

    fn bump_local(&self, tags: &[String], lsn: Lsn) {
        if let Ok(mut local) = self.tags.write() {
            for t in tags {
                let s = local.entry(t.clone()).or_default();
                // Distinct from any Redis counter value until Redis assigns one.
                s.version = self.local_versions.fetch_add(1, Relaxed) | (1 << 63);
                s.lsn = s.lsn.max(lsn.0);
            }
        }
    }

    /// Sends invalidations made while Redis was unreachable.
    pub(crate) async fn replay_pending(&self) {
        let tags: Vec<String> = match self.pending.lock() {
            Ok(mut p) if !p.is_empty() => p.drain().collect(),
            _ => return,
        };
        let lsn = Lsn(self
            .tags
            .read()
            .map(|t| {
                tags.iter()
                    .filter_map(|x| t.get(x))
                    .map(|s| s.lsn)
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0));
        self.announce(tags, lsn).await;
    }

    /// Empties L1 (cross-instance invalidations may have been lost).
    pub(crate) fn clear_l1(&self) {
        self.l1.invalidate_all();
    }

    pub(crate) fn set_bus_up(&self, up: bool) {
        self.bus_up.store(up, Relaxed);
    }

    /// Figures for `/stats` and `/health`.
    pub(crate) fn stats(&self) -> CacheStats {
        let c = &self.counters;
        let hits = c.l1_hits.load(Relaxed) + c.l2_hits.load(Relaxed);
        let loads = c.loads.load(Relaxed);
        CacheStats {
            l1_hits: c.l1_hits.load(Relaxed),
            l1_misses: c.l1_misses.load(Relaxed),
            l2_hits: c.l2_hits.load(Relaxed),
            l2_misses: c.l2_misses.load(Relaxed),
            l2_errors: self.l2.as_ref().map_or(0, |l| l.errors()),
            hit_rate: if hits + loads == 0 {
                0.0
            } else {
                hits as f64 / (hits + loads) as f64
            },
            invalidations: c.invalidations.load(Relaxed),
            loads,
            refused_lag: c.refused_lag.load(Relaxed),
            refused_race: c.refused_race.load(Relaxed),
            l1_entries: self.l1.entry_count(),
            l1_bytes: self.l1.weighted_size(),
            l2_enabled: self.l2.is_some(),
            l2_healthy: self.l2.as_ref().is_some_and(|l| l.healthy()),
        }
    }

    /// Runs moka's pending maintenance (so entry counts are current).
    pub(crate) async fn sync(&self) {
        self.l1.run_pending_tasks().await;
    }
}

fn poisoned() -> sea_orm::DbErr {
    sea_orm::DbErr::Custom("cache lock poisoned".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::DbBackend;

    #[test]
    fn keys_differ_by_sql_values_backend_and_kind() {
        use sea_orm::sea_query::{Expr, ExprTrait, Query, SelectStatement};
        let q = |table: &'static str, v: sea_orm::Value| -> SelectStatement {
            Query::select()
                .column("id")
                .from(table)
                .and_where(Expr::col("id").eq(v))
                .to_owned()
        };
        let a = q("t", 1i64.into());
        let keys = [
            key_of("all", DbBackend::Postgres, &a),
            key_of("all", DbBackend::Postgres, &q("t", 2i64.into())),
            key_of("all", DbBackend::Postgres, &q("t", "1".into())),
            key_of("all", DbBackend::Postgres, &q("u", 1i64.into())),
            key_of("all", DbBackend::Sqlite, &a),
            key_of("count", DbBackend::Postgres, &a),
            // the same text, inlined instead of bound
            key_of(
                "all",
                DbBackend::Postgres,
                &Query::select()
                    .column("id")
                    .from("t")
                    .and_where(Expr::cust("\"id\" = 1"))
                    .to_owned(),
            ),
        ];
        for i in 0..keys.len() {
            for j in i + 1..keys.len() {
                assert_ne!(keys[i], keys[j], "{i} vs {j}");
            }
        }
        assert_eq!(
            key_of("all", DbBackend::Postgres, &a),
            key_of("all", DbBackend::Postgres, &a.clone())
        );
    }

    fn cache() -> Arc<QueryCache> {
        QueryCache::new(&Config::default(), Arc::default()).expect("cache")
    }

    async fn load_n(c: &Arc<QueryCache>, key: u128, n: i64, replay: Lsn) -> (i64, CacheOutcome) {
        c.get_or_load(
            key,
            || vec![Tag::Borrowed("stories")],
            None,
            Lsn::ZERO,
            || async move {
                Ok((
                    n,
                    Source {
                        replay_lsn: replay,
                        fresh_lsn: Lsn::ZERO,
                    },
                ))
            },
        )
        .await
        .map(|(v, o)| (*v, o))
        .expect("load")
    }

    #[tokio::test]
    async fn hit_after_miss_and_miss_after_invalidation() {
        let c = cache();
        assert_eq!(load_n(&c, 1, 10, Lsn::MAX).await, (10, CacheOutcome::Miss));
        assert_eq!(load_n(&c, 1, 11, Lsn::MAX).await, (10, CacheOutcome::HitL1));
        c.invalidate(&[Tag::Borrowed("profiles")], Lsn(5)).await;
        assert_eq!(
            load_n(&c, 1, 12, Lsn::MAX).await,
            (10, CacheOutcome::HitL1),
            "other table"
        );
        c.invalidate(&[Tag::Borrowed("stories")], Lsn(6)).await;
        assert_eq!(load_n(&c, 1, 13, Lsn::MAX).await, (13, CacheOutcome::Miss));
        c.invalidate(&[], Lsn(7)).await;
        assert_eq!(
            load_n(&c, 1, 14, Lsn::MAX).await,
            (14, CacheOutcome::Miss),
            "unknown tables empty all"
        );
    }

    #[tokio::test]
    async fn lagging_replica_fill_is_not_stored() {
        let c = cache();
        c.invalidate(&[Tag::Borrowed("stories")], Lsn(100)).await;
        assert_eq!(load_n(&c, 2, 1, Lsn(99)).await, (1, CacheOutcome::Miss));
        assert_eq!(
            load_n(&c, 2, 2, Lsn(100)).await,
            (2, CacheOutcome::Miss),
            "not stored before"
        );
        assert_eq!(load_n(&c, 2, 3, Lsn(100)).await, (2, CacheOutcome::HitL1));
        assert_eq!(c.counters.refused_lag.load(Relaxed), 1);
    }

    #[tokio::test]
    async fn entries_older_than_the_scope_are_not_used() {
        let c = cache();
        load_n(&c, 3, 1, Lsn::MAX).await;
        let (v, o) = c
            .get_or_load(
                3,
                || vec![Tag::Borrowed("stories")],
                None,
                Lsn(50),
                || async {
                    Ok((
                        2i64,
                        Source {
                            replay_lsn: Lsn::MAX,
                            fresh_lsn: Lsn(50),
                        },
                    ))
                },
            )
            .await
            .expect("load");
        assert_eq!((*v, o), (2, CacheOutcome::Miss));
    }

    #[tokio::test]
    async fn concurrent_misses_load_once() {
        let c = cache();
        let loads = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let c = c.clone();
                let loads = loads.clone();
                tokio::spawn(async move {
                    c.get_or_load(
                        9,
                        || vec![Tag::Borrowed("stories")],
                        None,
                        Lsn::ZERO,
                        || async move {
                            loads.fetch_add(1, Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Ok((
                                7i64,
                                Source {
                                    replay_lsn: Lsn::MAX,
                                    fresh_lsn: Lsn::ZERO,
                                },
                            ))
                        },
                    )
                    .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(*t.await.expect("join").expect("load").0, 7);
        }
        assert_eq!(loads.load(Relaxed), 1);
    }
}
