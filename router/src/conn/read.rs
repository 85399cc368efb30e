//! The one read pipeline: decide where (`route::decide`), then run on the
//! target with a time bound, stamped with what the source proved before the
//! query was sent, retried on the primary when a replica fails, counted, and
//! recorded in the scope. Plain SeaORM calls and the explicit API both run
//! here; the explicit API only describes the read (and its cache policy).

use super::Db;
use crate::cache::{CacheValue, Request, Source};
use crate::lsn::Lsn;
use crate::replica::InFlight;
use crate::route::{self, Target, Using, Why};
use crate::router::Hints;
use crate::scope::{self, CacheOutcome, Route};
use crate::stats::bump;
use crate::tag::TagId;
use sea_orm::{DatabaseConnection, DbErr, RuntimeErr};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// How much longer than the statement timeout the client waits for a server
/// that does not answer at all (a stopped or paused server cannot cancel).
const CLIENT_GRACE: Duration = Duration::from_millis(250);

/// How a read is cached.
pub(crate) struct CacheSpec<'a, V> {
    /// The key, given the namespace of the target.
    pub(crate) key: &'a (dyn Fn(u64) -> u128 + Sync),
    /// `None`: the configured TTL.
    pub(crate) ttl: Option<Duration>,
    /// Tags known before the load.
    pub(crate) static_tags: &'a (dyn Fn() -> Vec<TagId> + Sync),
    /// Every tag the result depends on, and whether it is empty (`None`:
    /// do not store it).
    pub(crate) deps: &'a crate::cache::RowDeps<'a, V>,
    /// Asked on a miss: the read must run on the primary (a lock clause or
    /// a side-effect function in it), and is then not stored.
    pub(crate) needs_primary: &'a (dyn Fn() -> bool + Sync),
}

fn unavailable(why: Why) -> DbErr {
    DbErr::Conn(RuntimeErr::Internal(format!(
        "no usable read replica ({}) and REPLICA_FALLBACK=false",
        why.as_str()
    )))
}

fn no_such_alias(using: &Using) -> DbErr {
    let name = match using {
        Using::Alias(a) => a.to_string(),
        _ => "?".to_owned(),
    };
    DbErr::Custom(format!(
        "no database alias named {name:?}: configure it with ConfigBuilder::alias"
    ))
}

fn timed_out(after: Duration) -> DbErr {
    DbErr::Conn(RuntimeErr::Internal(format!(
        "the server did not answer within {after:?}"
    )))
}

impl Db {
    /// Decides where a read goes.
    pub(crate) fn decide(&self, using: &Using, hints: &Hints<'_>) -> (Target, Why) {
        let s = &self.shared;
        let block = match using {
            Using::Auto => crate::scope::block_using(),
            _ => None,
        };
        let using = block.as_ref().unwrap_or(using);
        let answer = match using {
            Using::Auto => s.router.db_for_read(hints),
            _ => None,
        };
        let (target, why) = route::decide(
            using,
            scope::view(),
            answer,
            &s.alias_names,
            s.replica_fallback,
            |pinned, min| s.replicas.pick(pinned, min),
        );
        if let Target::Replica(i) = target {
            scope::with_current(|st| st.pin(i));
        }
        (target, why)
    }

    /// The cache namespace of reads from `target`.
    pub(crate) fn ns_for(&self, target: Target) -> u64 {
        match target {
            Target::Alias(i) => self
                .shared
                .alias_ns
                .get(i)
                .copied()
                .unwrap_or(self.shared.ns),
            _ => self.shared.ns,
        }
    }

    /// What a read on `target` will be proved fresh to, sampled before it
    /// is sent: the replica's replay position, or the primary's.
    fn stamp(&self, target: Target) -> Source {
        match target {
            Target::Replica(i) => {
                let r = &self.shared.replicas.replicas[i];
                if r.shares_primary() {
                    self.stamp(Target::Primary)
                } else {
                    let replay = r.replay_lsn();
                    Source {
                        replay_lsn: replay,
                        fresh_lsn: replay,
                    }
                }
            }
            Target::Primary => Source {
                replay_lsn: Lsn::MAX,
                fresh_lsn: self.known_lsn(),
            },
            // a plain pool: nothing is proved
            _ => Source {
                replay_lsn: Lsn::ZERO,
                fresh_lsn: Lsn::ZERO,
            },
        }
    }

    pub(crate) fn route_of(&self, t: Target) -> Route {
        match t {
            Target::Replica(i) => Route::Replica(self.shared.replicas.replicas[i].name.clone()),
            Target::Alias(i) => Route::Alias(self.shared.alias_names[i].clone()),
            _ => Route::Primary,
        }
    }

    /// Runs `exec` on one connection, bounded by the statement timeout.
    pub(crate) async fn bounded<V, Fut>(&self, fut: Fut) -> Result<V, DbErr>
    where
        Fut: Future<Output = Result<V, DbErr>>,
    {
        let after = self.shared.statement_timeout + CLIENT_GRACE;
        match tokio::time::timeout(after, fut).await {
            Ok(r) => r,
            Err(_) => Err(timed_out(after)),
        }
    }

    /// Runs a read on `target`; a replica that fails at the connection level
    /// (or does not answer) is replaced by the primary once. Returns where it
    /// ran, why, and what it was proved fresh to.
    pub(crate) async fn run_on<V, F, Fut>(
        &self,
        using: &Using,
        target: Target,
        why: Why,
        exec: F,
    ) -> Result<(V, Target, Source), DbErr>
    where
        F: Fn(DatabaseConnection) -> Fut,
        Fut: Future<Output = Result<V, DbErr>>,
    {
        let s = &self.shared;
        match target {
            Target::Replica(i) => {
                let r = &s.replicas.replicas[i];
                let source = self.stamp(target);
                let result = {
                    let _guard = InFlight::new(r);
                    let span = tracing::debug_span!("seaway.statement", replica = %r.name, reason = why.as_str());
                    self.bounded(exec(r.conn.clone())).instrument(span).await
                };
                match result {
                    Ok(v) => {
                        bump(&s.counters.replica_reads, "seaway_replica_reads_total");
                        Ok((v, target, source))
                    }
                    Err(e) if super::is_connection_error(&e) && s.replica_fallback => {
                        tracing::warn!(replica = %r.name, error = %e, "replica read failed; retrying on the primary");
                        if !super::is_pool_timeout(&e) {
                            r.read_failed();
                        }
                        let source = self.stamp(Target::Primary);
                        let span = tracing::debug_span!(
                            "seaway.statement",
                            alias = "default",
                            reason = Why::Failover.as_str()
                        );
                        let v = self
                            .bounded(exec(s.primary.clone()))
                            .instrument(span)
                            .await?;
                        bump(&s.counters.primary_reads, "seaway_primary_reads_total");
                        bump(&s.counters.fallbacks, "seaway_fallbacks_total");
                        Ok((v, Target::Primary, source))
                    }
                    Err(e) => Err(e),
                }
            }
            Target::Primary => {
                let source = self.stamp(target);
                let span = tracing::debug_span!(
                    "seaway.statement",
                    alias = "default",
                    reason = why.as_str()
                );
                let v = self
                    .bounded(exec(s.primary.clone()))
                    .instrument(span)
                    .await?;
                bump(&s.counters.primary_reads, "seaway_primary_reads_total");
                if why == Why::Sticky {
                    bump(&s.counters.sticky_reads, "seaway_sticky_reads_total");
                } else if why.is_fallback() {
                    bump(&s.counters.fallbacks, "seaway_fallbacks_total");
                }
                Ok((v, target, source))
            }
            Target::Alias(i) => {
                let (name, conn) = &s.aliases[i];
                let span =
                    tracing::debug_span!("seaway.statement", alias = %name, reason = why.as_str());
                let v = self.bounded(exec(conn.clone())).instrument(span).await?;
                Ok((v, target, self.stamp(target)))
            }
            Target::Unavailable => Err(unavailable(why)),
            Target::NoSuchAlias => Err(no_such_alias(using)),
        }
    }

    /// An uncached read.
    pub(crate) async fn read<V, F, Fut>(
        &self,
        using: &Using,
        hints: &Hints<'_>,
        exec: F,
    ) -> Result<V, DbErr>
    where
        F: Fn(DatabaseConnection) -> Fut,
        Fut: Future<Output = Result<V, DbErr>>,
    {
        let (target, why) = self.decide(using, hints);
        // boxed: keeps the caller's future small (failover, timeouts, spans)
        let (v, ran, _) = Box::pin(self.run_on(using, target, why, exec)).await?;
        let route = self.route_of(ran);
        scope::with_current(|st| st.record(route, CacheOutcome::Bypass));
        Ok(v)
    }

    /// A read through the cache (or around it, when caching is off).
    pub(crate) async fn read_cached<V, F, Fut>(
        &self,
        using: &Using,
        hints: &Hints<'_>,
        spec: CacheSpec<'_, V>,
        exec: F,
    ) -> Result<Arc<V>, DbErr>
    where
        V: CacheValue,
        F: Fn(DatabaseConnection) -> Fut,
        Fut: Future<Output = Result<V, DbErr>>,
    {
        let (target, why) = self.decide(using, hints);
        if !self.shared.cache_enabled || target == Target::NoSuchAlias {
            let (v, ran, _) = Box::pin(self.run_on(using, target, why, exec)).await?;
            let route = self.route_of(ran);
            scope::with_current(|st| st.record(route, CacheOutcome::Bypass));
            return Ok(Arc::new(v));
        }
        let min_lsn = scope::with_current(|s| s.min_lsn()).unwrap_or_default();
        let ran_on = std::sync::Mutex::new(None);
        let (exec, ran_on_ref) = (&exec, &ran_on);
        let (v, outcome) = self
            .shared
            .cache
            .get_or_refresh(
                Request {
                    key: (spec.key)(self.ns_for(target)),
                    target: target.class(),
                    min_lsn,
                    ttl: spec.ttl.unwrap_or(self.shared.cache_ttl),
                    static_tags: spec.static_tags,
                    deps: spec.deps,
                },
                |again: Option<Lsn>| async move {
                    let (target, why) = match again {
                        _ if (spec.needs_primary)() => (Target::Primary, Why::Explicit),
                        None => (target, why),
                        // a replica answer behind an invalidation this
                        // instance applied: read where that write is; only
                        // replica reads are read again (an alias's are its own)
                        Some(lsn) => match target {
                            Target::Replica(_) => {
                                // and the scope's later reads do not go back
                                // to before it (monotonic reads per scope)
                                scope::with_current(|st| st.require_lsn(lsn));
                                match self.shared.replicas.pick(None, lsn) {
                                    Ok(i) => (Target::Replica(i), Why::Stale),
                                    Err(_) => (Target::Primary, Why::Stale),
                                }
                            }
                            _ => return Ok(None),
                        },
                    };
                    let (v, ran, source) = self.run_on(using, target, why, exec).await?;
                    if let Ok(mut r) = ran_on_ref.lock() {
                        *r = Some(ran);
                    }
                    Ok(Some((v, source)))
                },
            )
            .await?;
        let ran = ran_on.lock().ok().and_then(|r| *r);
        let route = self.route_of(ran.unwrap_or(target));
        scope::with_current(|st| st.record(route, outcome));
        Ok(v)
    }
}
