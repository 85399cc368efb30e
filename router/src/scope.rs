//! Per-request state in a tokio task-local: the sticky flag, the minimum LSN a
//! read must see, forced-primary, the pinned replica and what its reads did.
//!
//! The axum layer ([`SeawayLayer`](crate::SeawayLayer)) opens a scope per
//! request. Code outside any request (a background job) can open one by hand:
//!
//! ```no_run
//! # async fn job(db: seaway::Db) -> Result<(), sea_orm::DbErr> {
//! use seaway::Scope;
//! let scope = Scope::new();
//! scope.run(async {
//!     // reads and writes here share one sticky flag
//! }).await;
//! # Ok(()) }
//! ```
//!
//! Without a scope every read is routed on its own: nothing is sticky, and
//! only [`with_primary`](crate::Db::with_primary) forces the primary.

use crate::lsn::Lsn;
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

tokio::task_local! {
    static SCOPE: Arc<ScopeState>;
    static FORCE_PRIMARY: bool;
    static PREVENT_WRITES: bool;
    static USING: crate::route::Using;
}

/// Where a read was served from, for `X-DB-Route`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// The `default` alias.
    Primary,
    /// A replica of the `read_replica` alias, by name.
    Replica(Arc<str>),
    /// Another named alias.
    Alias(Arc<str>),
}

impl Route {
    /// The header value: `primary`, `replica:<name>` or `alias:<name>`.
    pub fn header_value(&self) -> String {
        match self {
            Route::Primary => "primary".to_owned(),
            Route::Replica(n) => format!("replica:{n}"),
            Route::Alias(n) => format!("alias:{n}"),
        }
    }
}

/// The cache outcome of a read, for `X-Cache`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CacheOutcome {
    /// Served from the in-process cache.
    HitL1 = 1,
    /// Served from Redis.
    HitL2 = 2,
    /// Loaded from the database (and possibly stored).
    Miss = 3,
    /// Not cached (`no_cache`, a transaction, or a plain SeaORM call).
    Bypass = 4,
}

impl CacheOutcome {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HitL1 => "hit-l1",
            Self::HitL2 => "hit-l2",
            Self::Miss => "miss",
            Self::Bypass => "bypass",
        }
    }
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::HitL1,
            2 => Self::HitL2,
            3 => Self::Miss,
            4 => Self::Bypass,
            _ => return None,
        })
    }
}

/// The state of one scope. Shared by every task of a request through an `Arc`.
#[derive(Debug, Default)]
pub struct ScopeState {
    /// Set by the first write; from then on reads go to the primary.
    wrote: AtomicBool,
    /// Reads must see at least this LSN (from a token, or this scope's writes).
    min_lsn: AtomicU64,
    /// The replica chosen by this scope's first replica read (index + 1; 0: none),
    /// kept while it stays usable so that time never goes backwards.
    pinned: AtomicU64,
    /// Route of the last read that went to the database (else of the last
    /// read), for `X-DB-Route`.
    last_route: Mutex<Option<Route>>,
    /// Cache outcome of the last read that went to the database (else of
    /// the last read), for `X-Cache`.
    last_cache: AtomicU8,
    /// A token, or a write whose LSN could not be read, asks for the primary.
    token_primary: AtomicBool,
}

impl ScopeState {
    /// Whether this scope wrote.
    pub fn wrote(&self) -> bool {
        self.wrote.load(Ordering::Relaxed)
    }
    /// The minimum LSN reads must see.
    pub fn min_lsn(&self) -> Lsn {
        Lsn(self.min_lsn.load(Ordering::Relaxed))
    }
    /// Raises the minimum LSN (never lowers it).
    pub fn require_lsn(&self, lsn: Lsn) {
        self.min_lsn.fetch_max(lsn.0, Ordering::Relaxed);
    }
    pub(crate) fn mark_wrote(&self) {
        self.wrote.store(true, Ordering::Relaxed);
    }
    /// Whether reads must go to the primary for a token or an unknown LSN.
    pub fn token_primary(&self) -> bool {
        self.token_primary.load(Ordering::Relaxed)
    }
    pub(crate) fn set_token_primary(&self) {
        self.token_primary.store(true, Ordering::Relaxed);
    }

    pub(crate) fn pinned(&self) -> Option<usize> {
        match self.pinned.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n as usize - 1),
        }
    }
    pub(crate) fn pin(&self, idx: usize) {
        self.pinned.store(idx as u64 + 1, Ordering::Relaxed);
    }
    pub(crate) fn record(&self, route: Route, cache: CacheOutcome) {
        // a hit after a read that went to the database does not hide it (a
        // page read as its ids, then its rows, loaded when either did)
        if matches!(cache, CacheOutcome::HitL1 | CacheOutcome::HitL2)
            && matches!(
                self.last_cache(),
                Some(CacheOutcome::Miss | CacheOutcome::Bypass)
            )
        {
            return;
        }
        if let Ok(mut r) = self.last_route.lock() {
            *r = Some(route);
        }
        self.last_cache.store(cache as u8, Ordering::Relaxed);
    }
    /// Route of the last read in this scope that went to the database, or,
    /// when none did, of its last read.
    pub fn last_route(&self) -> Option<Route> {
        self.last_route.lock().ok().and_then(|r| r.clone())
    }
    /// Cache outcome of the last read in this scope that went to the
    /// database (a miss or a bypass), or, when none did, of its last read
    /// (a hit).
    pub fn last_cache(&self) -> Option<CacheOutcome> {
        CacheOutcome::from_u8(self.last_cache.load(Ordering::Relaxed))
    }
}

/// A request scope: create one, optionally give it a token, run a future in it.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    state: Arc<ScopeState>,
}

impl Scope {
    /// A fresh scope: not sticky, no minimum LSN.
    pub fn new() -> Self {
        Self::default()
    }
    /// A scope whose reads must see `lsn` (from a consistency token).
    pub fn with_min_lsn(lsn: Lsn) -> Self {
        let s = Self::new();
        s.state.require_lsn(lsn);
        s
    }
    /// The shared state, to read after the future finished.
    pub fn state(&self) -> &Arc<ScopeState> {
        &self.state
    }
    /// The scope the current task runs in, if any: run a spawned task in it
    /// to carry the request's sticky flag and freshness there.
    ///
    /// ```no_run
    /// # async fn demo() {
    /// let scope = seaway::Scope::current().unwrap_or_default();
    /// tokio::spawn(async move {
    ///     scope.run(async { /* reads here see the request's writes */ }).await
    /// });
    /// # }
    /// ```
    pub fn current() -> Option<Scope> {
        SCOPE.try_with(|s| Scope { state: s.clone() }).ok()
    }
    /// Runs `fut` inside this scope.
    pub async fn run<F: Future>(&self, fut: F) -> F::Output {
        SCOPE.scope(self.state.clone(), fut).await
    }
}

/// Runs `f` with the current scope's state, if any.
pub(crate) fn with_current<R>(f: impl FnOnce(&ScopeState) -> R) -> Option<R> {
    SCOPE.try_with(|s| f(s)).ok()
}

/// Whether a `with_primary` block is running.
pub(crate) fn forced_primary() -> bool {
    FORCE_PRIMARY.try_with(|f| *f).unwrap_or(false)
}

/// The routing view of the current scope (defaults outside any).
pub(crate) fn view() -> crate::route::ScopeView {
    let forced = forced_primary();
    with_current(|s| crate::route::ScopeView {
        forced,
        wrote: s.wrote(),
        min_lsn: s.min_lsn(),
        token_primary: s.token_primary(),
        pinned: s.pinned(),
    })
    .unwrap_or(crate::route::ScopeView {
        forced,
        ..Default::default()
    })
}

/// What a `with_replica`/`with_alias` block asks of the reads in it.
pub(crate) fn block_using() -> Option<crate::route::Using> {
    USING.try_with(|u| u.clone()).ok()
}

/// Runs `fut` with its reads routed as `using` (unless they ask otherwise),
/// in the current scope or a new one, so that its reads stay on one replica.
pub(crate) async fn with_using<F: Future>(using: crate::route::Using, fut: F) -> F::Output {
    let scope = Scope::current().unwrap_or_default();
    scope.run(USING.scope(using, fut)).await
}

/// Whether a `prevent_writes` block is running.
pub(crate) fn writes_prevented() -> bool {
    PREVENT_WRITES.try_with(|f| *f).unwrap_or(false)
}

/// Runs `fut` with every write refused.
pub(crate) async fn prevent_writes<F: Future>(fut: F) -> F::Output {
    PREVENT_WRITES.scope(true, fut).await
}

/// Runs `fut` with every read forced to the primary.
pub(crate) async fn force_primary<F: Future>(fut: F) -> F::Output {
    FORCE_PRIMARY.scope(true, fut).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hit_after_a_database_read_does_not_hide_it() {
        let s = Scope::new();
        let st = s.state();
        st.record(Route::Replica("r1".into()), CacheOutcome::HitL1);
        assert_eq!(st.last_cache(), Some(CacheOutcome::HitL1));
        st.record(Route::Replica("r2".into()), CacheOutcome::Miss);
        st.record(Route::Replica("r1".into()), CacheOutcome::HitL1);
        assert_eq!(st.last_cache(), Some(CacheOutcome::Miss));
        assert_eq!(st.last_route(), Some(Route::Replica("r2".into())));
        st.record(Route::Primary, CacheOutcome::Bypass);
        assert_eq!(st.last_cache(), Some(CacheOutcome::Bypass));
        assert_eq!(st.last_route(), Some(Route::Primary));
    }
}
