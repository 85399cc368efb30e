//! The two-tier query cache: L1 moka in process, L2 Redis shared, tagged by
//! row, column, membership and table, invalidated after commit on every
//! instance.
//!
//! # Layout
//!
//! * `key`: the key of a query (namespace, kind, backend, SQL, values);
//! * `versions`: tag versions as this process knows them, and generations;
//! * `flight`: one load per key and target at a time;
//! * `l2`: entries, versions and the epoch in Redis;
//! * `breaker`: the circuit breaker in front of Redis;
//! * `bus`: the invalidation channel, its heartbeat, and the loops that
//!   resend invalidations and forget idle tags.
//!
//! # Consistency
//!
//! * **No stale fill.** A load is stamped by its source with what the source
//!   proved before the query was sent (a replica's replay position read
//!   before it; the primary's position likewise). It is stored only when no
//!   tag it depends on changed while it ran, and when its source had
//!   replayed past the last invalidation of every one of them; otherwise it
//!   is not stored (`a_replica_read_whose_snapshot_predates_a_write_is_never_stored`).
//! * **No answer older than a known invalidation.** A replica answer behind
//!   the last invalidation of its tags is not returned either: the read is
//!   made once more where that write is (a replica known to have replayed
//!   it, or the primary), and that answer is returned and stored; the first
//!   answer stands only when that read fails
//!   (`a_cached_read_never_answers_older_than_an_invalidation_its_instance_applied`).
//! * **Fresh enough for the scope.** An entry records the stamp; a scope
//!   that must see an LSN (a token, its own writes) takes only entries at
//!   least that fresh, and a waiter never takes a load fresher than it was
//!   proved (`a_token_holder_joining_a_tokenless_flight_gets_the_write`).
//! * **Versions only move forward within an epoch**, and an epoch change (a
//!   Redis restart, failover or restored snapshot) invalidates every entry on
//!   every instance (`versions.rs`; `a_redis_restart_never_makes_an_old_entry_valid`).
//! * **No lost invalidation.** An invalidation is one atomic script (new
//!   version, every tag, the announcement); one that Redis did not take stays
//!   pending and is resent by a loop of its own and at shutdown. When the
//!   versions' master has replicas, an invalidation counts as taken only
//!   once one acknowledged it (`WAIT 1`): a master killed before it
//!   replicated cannot lose one for good
//!   (`an_invalidation_no_redis_replica_acknowledged_is_sent_again`). A bus that
//!   goes silent (no heartbeat of its own within a second) counts as lost:
//!   L1 is emptied and new entries live at most [`SHORT_TTL`] until it is
//!   back (`a_deaf_instance_sees_writes_within_the_short_ttl`).

#![cfg_attr(not(feature = "redis"), allow(dead_code))]

mod breaker;
#[cfg(feature = "redis")]
mod bus;
mod envelope;
mod flight;
mod key;
#[cfg(feature = "redis")]
mod l2;
#[cfg(not(feature = "redis"))]
#[path = "l2_off.rs"]
mod l2;
mod versions;

pub(crate) use key::{key_of, key_of_raw};

use crate::lsn::Lsn;
use crate::scope::CacheOutcome;
use crate::tag::{Level, Moved, TagId};
use flight::{Flights, Role, SharedErr, Waited};
use l2::L2;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::any::Any;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use versions::Versions;

/// Bumped whenever the encoding of entries changes: older entries are then
/// misses (their key differs), never wrong decodes.
pub(crate) const FORMAT_VERSION: u32 = 2;
/// L1 time-to-live while cross-instance invalidation is unavailable.
pub const SHORT_TTL: Duration = Duration::from_secs(1);
/// Time-to-live of an empty result (`None`, no rows): the row it looked for
/// may be inserted by a write this instance does not see at once.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(30);
/// What a cached read's rows depend on: their tags, and whether they can
/// be cached at all (`None`: they cannot be told apart).
pub(crate) type RowDeps<'a, V> = dyn Fn(&V) -> Option<(Vec<TagId>, bool)> + Sync + 'a;

/// The longest time-to-live a query can ask for; idle tag versions are
/// forgotten after it (with a margin), never while an entry may use them.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// What can be cached: any serde value that is cheap enough to clone.
pub trait CacheValue: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static> CacheValue for T {}

/// Where a loaded result came from, as the read pipeline proves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Source {
    /// What the source had replayed before the query was sent (`Lsn::MAX`
    /// for the primary, which has every committed write).
    pub(crate) replay_lsn: Lsn,
    /// What the result is proved fresh to: the source's position sampled
    /// before the query, never a client's token.
    pub(crate) fresh_lsn: Lsn,
}

/// What one cached read asks of the cache.
pub(crate) struct Request<'a, V> {
    pub(crate) key: u128,
    /// Primary, replicas or an alias: loads for different targets are not
    /// coalesced.
    pub(crate) target: u8,
    /// The scope's freshness requirement.
    pub(crate) min_lsn: Lsn,
    pub(crate) ttl: Duration,
    /// The tags known before the load (all of them for a lookup by key).
    pub(crate) static_tags: &'a (dyn Fn() -> Vec<TagId> + Sync),
    /// Every tag the result depends on, and whether it is empty; `None`:
    /// never store it (it had to run on the primary).
    pub(crate) deps: &'a RowDeps<'a, V>,
}

/// One L1 entry: the decoded value, ready to hand out.
struct Entry {
    value: Arc<dyn Any + Send + Sync>,
    tags: Box<[TagId]>,
    /// The generation at which its load began.
    since: u64,
    /// The last generation at which it was found valid.
    checked: AtomicU64,
    fresh_lsn: Lsn,
    ttl: Duration,
    weight: u32,
}

/// Per-entry expiry for moka.
struct PerEntry;

impl moka::Expiry<u128, Arc<Entry>> for PerEntry {
    fn expire_after_create(
        &self,
        _: &u128,
        e: &Arc<Entry>,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(e.ttl)
    }
}

#[derive(Clone)]
struct Loaded {
    value: Arc<dyn Any + Send + Sync>,
    outcome: CacheOutcome,
    fresh_lsn: Lsn,
}

/// What became of a database answer: stored or served as it is, or behind
/// an invalidation (whose LSN a fresher read must have).
enum Fill {
    Done(Loaded),
    Behind(Loaded, Lsn),
}

/// Hit, miss and error counters, and what fills were refused.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    l1_hits: AtomicU64,
    l1_misses: AtomicU64,
    l2_hits: AtomicU64,
    l2_misses: AtomicU64,
    loads: AtomicU64,
    refused_lag: AtomicU64,
    refused_race: AtomicU64,
    refreshed: AtomicU64,
    oversize: AtomicU64,
    unacknowledged: AtomicU64,
    inv_row: AtomicU64,
    inv_column: AtomicU64,
    inv_membership: AtomicU64,
    inv_table: AtomicU64,
    joined: AtomicU64,
}

/// Invalidated tags by level.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Invalidations {
    /// Rows.
    pub row: u64,
    /// Columns (and "any column" of a table).
    pub column: u64,
    /// Table memberships (inserts and deletes).
    pub membership: u64,
    /// Whole tables (raw SQL, cascades, unknown rows, `Db::invalidate`).
    pub table: u64,
}

impl Invalidations {
    /// All levels together.
    pub fn total(&self) -> u64 {
        self.row + self.column + self.membership + self.table
    }
}

/// Cache figures at one moment, for `/stats` and `/health`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[non_exhaustive]
pub struct CacheStats {
    /// L1 hits.
    pub l1_hits: u64,
    /// L1 misses.
    pub l1_misses: u64,
    /// L2 hits.
    pub l2_hits: u64,
    /// L2 misses (including undecodable and outdated entries).
    pub l2_misses: u64,
    /// Redis calls that failed or timed out.
    pub l2_errors: u64,
    /// hits / (hits + database loads).
    pub hit_rate: f64,
    /// Tags invalidated, all levels.
    pub invalidations: u64,
    /// Tags invalidated, by level.
    pub invalidations_by_level: Invalidations,
    /// Database loads made for cached queries.
    pub loads: u64,
    /// Misses that waited for another's load.
    pub joined: u64,
    /// Fills not stored because their source was behind an invalidation.
    pub refused_lag: u64,
    /// Fills not stored because an invalidation raced them.
    pub refused_race: u64,
    /// Reads whose replica answer was refused for lag and read again where
    /// the invalidating write is (a replica that replayed it, or the
    /// primary), so that the answer is not older than it.
    pub refreshed: u64,
    /// Results over the size bound: served, kept in L1, not sent to L2.
    pub oversize: u64,
    /// Invalidations Redis took but no replica of its master acknowledged
    /// in time (each stays pending and is sent again).
    pub unacknowledged: u64,
    /// Loads in flight now.
    pub in_flight: u64,
    /// Invalidations (tags) Redis has not taken yet, or no replica of its
    /// master has acknowledged yet.
    pub pending: u64,
    /// The newest invalidation version (of the current epoch) applied here:
    /// two instances with the same figure have applied the same invalidations.
    pub version: u64,
    /// Entries in L1.
    pub l1_entries: u64,
    /// Weighted size of L1 in bytes.
    pub l1_bytes: u64,
    /// Whether Redis is configured.
    pub l2_enabled: bool,
    /// Whether Redis answers (and the circuit is closed) and the
    /// invalidation channel is live.
    pub l2_healthy: bool,
    /// Whether the invalidation channel is live (always true without Redis).
    pub bus_healthy: bool,
}

/// The epoch Redis holds: its text, and a hash of it kept in entries.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Epoch {
    text: String,
    id: u64,
}

/// Settings of the cache, from [`Config`](crate::Config).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) l1_max_bytes: u64,
    pub(crate) max_entry_bytes: usize,
    /// How long a waiter waits for another's load.
    pub(crate) join_deadline: Duration,
}

/// The query cache shared by every clone of a [`Db`](crate::Db).
pub(crate) struct QueryCache {
    l1: moka::future::Cache<u128, Arc<Entry>>,
    versions: Versions,
    flights: Flights<Loaded>,
    l2: Option<Arc<L2>>,
    settings: Settings,
    counters: Counters,
    /// Whether the invalidation channel is live (always true without Redis).
    bus_up: AtomicBool,
    epoch: RwLock<Option<Epoch>>,
    /// Told every invalidation's LSN, so replica positions are re-read.
    catchup: Arc<crate::replica::Catchup>,
    /// Wakes the loop that resends pending invalidations.
    resend: Arc<tokio::sync::Notify>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Drop for QueryCache {
    fn drop(&mut self) {
        if let Ok(t) = self.tasks.lock() {
            for t in t.iter() {
                t.abort();
            }
        }
    }
}

/// What became of one invalidation sent to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// Taken, and acknowledged by a replica of its master (or it has none).
    Durable,
    /// Taken and announced, but no replica acknowledged it yet: it stays
    /// pending, and the resend loop sends it again.
    Unacknowledged,
    /// Not taken: pending, resent at once.
    Failed,
}

impl QueryCache {
    /// A cache; with `redis_url`, L2 and the bus in namespace `ns`, started
    /// (waiting at most a few Redis timeouts for the bus to come up).
    pub(crate) async fn start(
        settings: Settings,
        redis: Option<(&str, &crate::Config)>,
        ns: u64,
        catchup: Arc<crate::replica::Catchup>,
    ) -> Result<Arc<Self>, crate::Error> {
        let l1 = moka::future::Cache::builder()
            .max_capacity(settings.l1_max_bytes.max(1))
            .weigher(|_k: &u128, e: &Arc<Entry>| e.weight)
            .expire_after(PerEntry)
            .build();
        let l2 = match redis {
            Some((url, config)) => Some(Arc::new(L2::new(url, config, ns)?)),
            None => None,
        };
        let cache = Arc::new(Self {
            l1,
            versions: Versions::default(),
            flights: Flights::default(),
            bus_up: AtomicBool::new(l2.is_none()),
            l2,
            settings,
            counters: Counters::default(),
            epoch: RwLock::new(None),
            catchup,
            resend: Arc::new(tokio::sync::Notify::new()),
            tasks: Mutex::new(Vec::new()),
        });
        #[cfg(feature = "redis")]
        if let Some(l2) = &cache.l2 {
            let tasks = bus::spawn(l2.clone(), Arc::downgrade(&cache), cache.resend.clone());
            if let Ok(mut t) = cache.tasks.lock() {
                t.extend(tasks);
            }
            let wait = l2.timeout * 10;
            let _ = tokio::time::timeout(wait, async {
                while !cache.bus_up.load(Relaxed) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await;
            l2.check_policy().await;
        }
        Ok(cache)
    }

    fn l1_enabled(&self) -> bool {
        self.settings.l1_max_bytes > 0
    }

    fn epoch(&self) -> Option<Epoch> {
        self.epoch.read().ok().and_then(|e| e.clone())
    }

    /// Takes `text` as Redis's epoch; a new one invalidates everything.
    fn adopt_epoch(&self, text: &str) {
        let Ok(mut e) = self.epoch.write() else {
            return;
        };
        if e.as_ref().is_some_and(|e| e.text == text) {
            return;
        }
        if e.is_some() {
            tracing::warn!(
                "redis holds a new cache epoch (restarted, restored or failed over): every cached entry is dropped"
            );
        }
        *e = Some(Epoch {
            text: text.to_owned(),
            id: xxhash_rust::xxh3::xxh3_64(text.as_bytes()),
        });
        self.versions.reset();
        self.l1.invalidate_all();
    }

    /// Forgets the epoch (the bus is down: it may change unseen).
    fn forget_epoch(&self) {
        if let Ok(mut e) = self.epoch.write() {
            *e = None;
        }
    }

    #[inline]
    fn valid(&self, e: &Entry) -> bool {
        let g = self.versions.generation();
        if e.checked.load(Relaxed) == g {
            return true;
        }
        if self.versions.valid_since(&e.tags, e.since) {
            e.checked.store(g, Relaxed);
            true
        } else {
            false
        }
    }

    /// [`QueryCache::get_or_refresh`] with a load that cannot be asked
    /// again: a fill refused for lag returns the first answer.
    #[cfg(test)]
    pub(crate) async fn get_or_load<V, F, Fut>(
        self: &Arc<Self>,
        req: Request<'_, V>,
        load: F,
    ) -> Result<(Arc<V>, CacheOutcome), sea_orm::DbErr>
    where
        V: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(V, Source), sea_orm::DbErr>>,
    {
        let mut load = Some(load);
        self.get_or_refresh(req, move |again: Option<Lsn>| {
            let first = if again.is_none() { load.take() } else { None };
            async move {
                match first {
                    Some(l) => l().await.map(Some),
                    None => Ok(None),
                }
            }
        })
        .await
    }

    /// Looks the request up in L1, then L2, then loads it: once for all
    /// concurrent callers with the same target and no more freshness.
    ///
    /// `load(None)` is the read as routed. When its source proves to be
    /// behind an invalidation this instance has applied (a replica that has
    /// not replayed the write), its answer is not stored, and
    /// `load(Some(lsn))` is asked for one that has `lsn` (from a replica
    /// that has replayed it, or the primary); `Ok(None)` declines, and the
    /// first answer is returned. So a cached read never answers with rows
    /// older than an invalidation of them its instance has seen.
    pub(crate) async fn get_or_refresh<V, F, Fut>(
        self: &Arc<Self>,
        req: Request<'_, V>,
        load: F,
    ) -> Result<(Arc<V>, CacheOutcome), sea_orm::DbErr>
    where
        V: CacheValue,
        F: FnMut(Option<Lsn>) -> Fut,
        Fut: Future<Output = Result<Option<(V, Source)>, sea_orm::DbErr>>,
    {
        if self.l1_enabled()
            && let Some(e) = self.l1.get(&req.key).await
            && e.fresh_lsn >= req.min_lsn
            && self.valid(&e)
            && let Ok(v) = e.value.clone().downcast::<V>()
        {
            self.counters.l1_hits.fetch_add(1, Relaxed);
            crate::stats::metric("seaway_cache_l1_hits_total", 1);
            return Ok((v, CacheOutcome::HitL1));
        }
        self.counters.l1_misses.fetch_add(1, Relaxed);
        crate::stats::metric("seaway_cache_l1_misses_total", 1);
        let mut load = Some(load);
        for _ in 0..3 {
            match self.flights.join(req.key, req.target, req.min_lsn) {
                Role::Lead(lead) => {
                    let Some(l) = load.take() else { break };
                    // boxed: the miss path's future is large, the hit path stays small
                    let result = Box::pin(self.miss(&req, l)).await;
                    lead.finish(result.as_ref().cloned().map_err(SharedErr::of));
                    return Self::typed(result?);
                }
                Role::Wait(rx) => {
                    self.counters.joined.fetch_add(1, Relaxed);
                    match Box::pin(Flights::wait(rx, self.settings.join_deadline)).await {
                        Waited::Done(Ok(l)) if l.fresh_lsn >= req.min_lsn => {
                            if let Ok(v) = l.value.clone().downcast::<V>() {
                                return Ok((v, l.outcome));
                            }
                            break;
                        }
                        // a load that was proved less fresh than we need
                        Waited::Done(Ok(_)) => break,
                        Waited::Done(Err(e)) => return Err(e.to_err()),
                        Waited::Abandoned => continue,
                    }
                }
                Role::Alone => break,
            }
        }
        let l = load.ok_or_else(|| sea_orm::DbErr::Custom("load taken".into()))?;
        Self::typed(Box::pin(self.miss(&req, l)).await?)
    }

    fn typed<V: CacheValue>(l: Loaded) -> Result<(Arc<V>, CacheOutcome), sea_orm::DbErr> {
        let v = l
            .value
            .downcast::<V>()
            .map_err(|_| sea_orm::DbErr::Custom("cache type mismatch".into()))?;
        Ok((v, l.outcome))
    }

    fn ttl_for(&self, ttl: Duration, negative: bool) -> Duration {
        let mut ttl = ttl.min(MAX_TTL).max(Duration::from_millis(1));
        if negative {
            ttl = ttl.min(NEGATIVE_TTL);
        }
        ttl
    }

    /// L2, then the database (twice at most: see [`QueryCache::get_or_refresh`]).
    async fn miss<V, F, Fut>(
        &self,
        req: &Request<'_, V>,
        mut load: F,
    ) -> Result<Loaded, sea_orm::DbErr>
    where
        V: CacheValue,
        F: FnMut(Option<Lsn>) -> Fut,
        Fut: Future<Output = Result<Option<(V, Source)>, sea_orm::DbErr>>,
    {
        if let Some(hit) = self.read_l2::<V>(req).await {
            return Ok(hit);
        }
        let since = self.versions.generation();
        self.counters.loads.fetch_add(1, Relaxed);
        let Some((value, source)) = load(None).await? else {
            return Err(sea_orm::DbErr::Custom(
                "the load declined its first read".into(),
            ));
        };
        let (first, lsn) = match self.fill(req, value, source, since).await {
            Fill::Done(loaded) => return Ok(loaded),
            Fill::Behind(loaded, lsn) => (loaded, lsn),
        };
        // known stale: read again where the write is
        let since = self.versions.generation();
        match load(Some(lsn)).await {
            Ok(Some((value, source))) => {
                self.counters.loads.fetch_add(1, Relaxed);
                self.counters.refreshed.fetch_add(1, Relaxed);
                match self.fill(req, value, source, since).await {
                    Fill::Done(loaded) | Fill::Behind(loaded, _) => Ok(loaded),
                }
            }
            Ok(None) => Ok(first),
            // the first answer stands when the fresher read fails
            Err(e) => {
                tracing::debug!(error = %e, "fresher read failed; answering the replica's");
                Ok(first)
            }
        }
    }

    /// Stores a database answer loaded since generation `since`, unless its
    /// source was behind the last invalidation of its tags (`Behind`, with
    /// that invalidation's LSN) or an invalidation raced it.
    async fn fill<V: CacheValue>(
        &self,
        req: &Request<'_, V>,
        value: V,
        source: Source,
        since: u64,
    ) -> Fill {
        let deps = (req.deps)(&value);
        let value: Arc<dyn Any + Send + Sync> = Arc::new(value);
        let loaded = Loaded {
            value: value.clone(),
            outcome: CacheOutcome::Miss,
            fresh_lsn: source.fresh_lsn,
        };
        let Some((tags, negative)) = deps else {
            return Fill::Done(loaded);
        };
        // lag first: an answer behind a known invalidation is stale,
        // whether or not that invalidation came during the load
        let newest = self.versions.max_lsn(&tags);
        if source.replay_lsn.0 < newest {
            self.counters.refused_lag.fetch_add(1, Relaxed);
            tracing::debug!(
                replay = %source.replay_lsn,
                invalidated = %Lsn(newest),
                "cache fill refused: the source was behind the last invalidation"
            );
            return Fill::Behind(loaded, Lsn(newest));
        }
        if !self.versions.valid_since(&tags, since) {
            self.counters.refused_race.fetch_add(1, Relaxed);
            tracing::debug!("cache fill refused: invalidated while loading");
            return Fill::Done(loaded);
        }
        let ttl = self.ttl_for(req.ttl, negative);
        let Some(v) = value.downcast_ref::<V>() else {
            return Fill::Done(loaded);
        };
        let payload = match postcard::to_allocvec(v) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cache value does not encode; not cached");
                return Fill::Done(loaded);
            }
        };
        let size = payload.len();
        if let Some(l2) = &self.l2
            && self.bus_up.load(Relaxed)
            && let Some(epoch) = self.epoch()
            && !self.versions.any_pending(&tags)
        {
            if size > self.settings.max_entry_bytes {
                self.counters.oversize.fetch_add(1, Relaxed);
                crate::stats::metric("seaway_cache_oversize_total", 1);
            } else {
                let env = envelope::Envelope {
                    epoch: epoch.id,
                    fresh_lsn: source.fresh_lsn.0,
                    tags: tags.iter().map(|t| t.0).collect(),
                    versions: self.versions.recorded(&tags),
                    payload: &payload,
                };
                if let Ok(bytes) = postcard::to_allocvec(&env) {
                    l2.put(req.key, bytes, ttl);
                }
            }
        } else if self.l2.is_none() && size > self.settings.max_entry_bytes {
            self.counters.oversize.fetch_add(1, Relaxed);
        }
        self.put_l1(req.key, tags, since, source.fresh_lsn, ttl, value, size)
            .await;
        Fill::Done(loaded)
    }

    /// An L2 hit, validated against Redis's versions of every tag it
    /// recorded, its epoch, and the writes still pending here.
    async fn read_l2<V: CacheValue>(&self, req: &Request<'_, V>) -> Option<Loaded> {
        let l2 = self.l2.as_ref()?;
        if !self.bus_up.load(Relaxed) {
            return None;
        }
        let epoch = self.epoch()?;
        let since = self.versions.generation();
        let statics = (req.static_tags)();
        let (entry, remote) = l2.get(req.key, &statics).await?;
        self.learn(&statics, &remote);
        let miss = || {
            self.counters.l2_misses.fetch_add(1, Relaxed);
            crate::stats::metric("seaway_cache_l2_misses_total", 1);
            None
        };
        if remote.epoch.as_deref() != Some(epoch.text.as_str()) {
            return miss();
        }
        let Some(bytes) = entry else { return miss() };
        let Some(env) = envelope::decode(&bytes) else {
            return miss();
        };
        if env.epoch != epoch.id || Lsn(env.fresh_lsn) < req.min_lsn {
            return miss();
        }
        let tags: Vec<TagId> = env.tags.iter().map(|t| TagId(*t)).collect();
        let extra: Vec<TagId> = tags
            .iter()
            .filter(|t| !statics.contains(t))
            .copied()
            .collect();
        if !extra.is_empty() {
            let remote = l2.versions(&extra).await?;
            if remote.epoch.as_deref() != Some(epoch.text.as_str()) {
                return miss();
            }
            self.learn(&extra, &remote);
        }
        if self.versions.recorded(&tags) != env.versions || self.versions.any_pending(&tags) {
            return miss();
        }
        let Ok(value) = postcard::from_bytes::<V>(env.payload) else {
            return miss();
        };
        self.counters.l2_hits.fetch_add(1, Relaxed);
        crate::stats::metric("seaway_cache_l2_hits_total", 1);
        let value: Arc<dyn Any + Send + Sync> = Arc::new(value);
        if self.versions.valid_since(&tags, since) {
            let ttl = self.ttl_for(req.ttl, false);
            self.put_l1(
                req.key,
                tags,
                since,
                Lsn(env.fresh_lsn),
                ttl,
                value.clone(),
                bytes.len(),
            )
            .await;
        }
        Some(Loaded {
            value,
            outcome: CacheOutcome::HitL2,
            fresh_lsn: Lsn(env.fresh_lsn),
        })
    }

    /// Takes the versions of a reply as known.
    fn learn(&self, tags: &[TagId], remote: &l2::Remote) {
        let lsns: Vec<u64> = remote.versions.iter().map(|(_, l)| *l).collect();
        if let Some(max) = lsns.iter().max() {
            self.catchup.want(Lsn(*max));
        }
        self.versions.apply(
            tags.iter()
                .zip(&remote.versions)
                .map(|(t, (v, l))| (*t, *v, *l)),
        );
    }

    #[allow(clippy::too_many_arguments)]
    async fn put_l1(
        &self,
        key: u128,
        tags: Vec<TagId>,
        since: u64,
        fresh: Lsn,
        ttl: Duration,
        value: Arc<dyn Any + Send + Sync>,
        size: usize,
    ) {
        if !self.l1_enabled() {
            return;
        }
        let ttl = if self.bus_up.load(Relaxed) {
            ttl
        } else {
            ttl.min(SHORT_TTL)
        };
        let entry = Entry {
            value,
            weight: u32::try_from(size + 96 + 8 * tags.len()).unwrap_or(u32::MAX),
            tags: tags.into_boxed_slice(),
            since,
            checked: AtomicU64::new(0),
            fresh_lsn: fresh,
            ttl,
        };
        self.l1.insert(key, Arc::new(entry)).await;
    }

    /// A committed write moved `tags` at `lsn`: this instance stops using
    /// what depends on them at once (before this returns), and Redis and
    /// every other instance are told (by the time the returned future is
    /// done, or later by the resend loop when Redis does not answer).
    pub(crate) fn invalidate_local(&self, tags: &[Moved], lsn: Lsn) -> u64 {
        let c = &self.counters;
        // the tag every write moves is bookkeeping, not a level
        for m in tags.iter().filter(|m| m.id != TagId::ANY_WRITE) {
            let (counter, name) = match m.level {
                Level::Row => (&c.inv_row, "row"),
                Level::Column => (&c.inv_column, "column"),
                Level::Membership => (&c.inv_membership, "membership"),
                Level::Table => (&c.inv_table, "table"),
            };
            counter.fetch_add(1, Relaxed);
            crate::stats::metric_labeled("seaway_cache_invalidations_total", "level", name, 1);
        }
        let g = self.versions.bump_local(tags, lsn.0, self.l2.is_some());
        self.catchup.want(lsn);
        g
    }

    /// Sends a local invalidation (see [`invalidate_local`](Self::invalidate_local)).
    pub(crate) async fn announce(&self, tags: &[Moved], lsn: Lsn, generation: u64) {
        let Some(l2) = &self.l2 else { return };
        let list: Vec<(TagId, bool)> = tags.iter().map(|m| (m.id, m.level == Level::Row)).collect();
        if self.send(l2, &list, lsn, generation).await == Sent::Failed {
            self.resend.notify_one();
        }
    }

    /// One invalidation to Redis: whether Redis took it, and for good.
    async fn send(&self, l2: &L2, tags: &[(TagId, bool)], lsn: Lsn, generation: u64) -> Sent {
        for _ in 0..2 {
            let Some(epoch) = self.epoch() else {
                return Sent::Failed;
            };
            match l2.invalidate(&epoch.text, tags, lsn).await {
                Ok(taken) => {
                    let version = taken.version;
                    self.versions
                        .apply(tags.iter().enumerate().map(|(i, (t, _))| {
                            let l = taken.lsns.get(i).copied().unwrap_or(0);
                            (*t, version, l.max(lsn.0))
                        }));
                    self.versions.heard(version);
                    if !taken.durable {
                        // announced, but a failover could still lose it:
                        // pending until a replica acknowledges a resend
                        self.counters.unacknowledged.fetch_add(1, Relaxed);
                        crate::stats::metric("seaway_cache_unacknowledged_total", 1);
                        return Sent::Unacknowledged;
                    }
                    let ids: Vec<TagId> = tags.iter().map(|(t, _)| *t).collect();
                    self.versions.confirm(&ids, generation);
                    return Sent::Durable;
                }
                Err(l2::Refused::Epoch) => match l2.ensure_epoch().await {
                    Some(text) => self.adopt_epoch(&text),
                    None => return Sent::Failed,
                },
                Err(l2::Refused::Failed) => return Sent::Failed,
            }
        }
        Sent::Failed
    }

    /// Sends every pending invalidation; whether none is left.
    pub(crate) async fn resend_pending(&self) -> bool {
        let Some(l2) = &self.l2 else { return true };
        let pending = self.versions.pending();
        if pending.is_empty() {
            return true;
        }
        for chunk in pending.chunks(256) {
            let tags: Vec<(TagId, bool)> = chunk.iter().map(|(t, r, _, _)| (*t, *r)).collect();
            let lsn = chunk.iter().map(|p| p.2).max().unwrap_or(0);
            let upto = chunk.iter().map(|p| p.3).max().unwrap_or(0);
            if self.send(l2, &tags, Lsn(lsn), upto).await == Sent::Failed {
                return false;
            }
        }
        !self.versions.has_pending()
    }

    /// Sends what is pending, for at most `deadline` (graceful shutdown).
    pub(crate) async fn flush(&self, deadline: Duration) -> bool {
        tokio::time::timeout(deadline, async {
            loop {
                if self.resend_pending().await {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .is_ok()
    }

    /// Empties L1 (cross-instance invalidations may have been lost).
    fn clear_l1(&self) {
        self.versions.clear();
        self.l1.invalidate_all();
    }

    fn set_bus_up(&self, up: bool) {
        self.bus_up.store(up, Relaxed);
    }

    /// Whether the invalidation channel is live.
    pub(crate) fn bus_up(&self) -> bool {
        self.bus_up.load(Relaxed)
    }

    /// Loads in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.flights.len()
    }

    /// Figures for `/stats` and `/health`.
    pub(crate) fn stats(&self) -> CacheStats {
        let c = &self.counters;
        let hits = c.l1_hits.load(Relaxed) + c.l2_hits.load(Relaxed);
        let loads = c.loads.load(Relaxed);
        let by_level = Invalidations {
            row: c.inv_row.load(Relaxed),
            column: c.inv_column.load(Relaxed),
            membership: c.inv_membership.load(Relaxed),
            table: c.inv_table.load(Relaxed),
        };
        let bus = self.bus_up();
        CacheStats {
            l1_hits: c.l1_hits.load(Relaxed),
            l1_misses: c.l1_misses.load(Relaxed),
            l2_hits: c.l2_hits.load(Relaxed),
            l2_misses: c.l2_misses.load(Relaxed),
            l2_errors: self.l2.as_ref().map_or(0, |l| l.breaker.errors()),
            hit_rate: if hits + loads == 0 {
                0.0
            } else {
                hits as f64 / (hits + loads) as f64
            },
            invalidations: by_level.total(),
            invalidations_by_level: by_level,
            loads,
            joined: c.joined.load(Relaxed),
            refused_lag: c.refused_lag.load(Relaxed),
            refused_race: c.refused_race.load(Relaxed),
            refreshed: c.refreshed.load(Relaxed),
            oversize: c.oversize.load(Relaxed),
            unacknowledged: c.unacknowledged.load(Relaxed),
            in_flight: self.flights.len() as u64,
            pending: self.versions.pending().len() as u64,
            version: self.versions.newest(),
            l1_entries: self.l1.entry_count(),
            l1_bytes: self.l1.weighted_size(),
            l2_enabled: self.l2.is_some(),
            l2_healthy: self.l2.as_ref().is_some_and(|l| l.breaker.healthy()) && bus,
            bus_healthy: bus,
        }
    }

    /// Runs moka's pending maintenance (so entry counts are current).
    pub(crate) async fn sync(&self) {
        self.l1.run_pending_tasks().await;
    }
}

#[cfg(test)]
mod tests;
