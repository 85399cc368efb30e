//! Where a read goes, as a pure function of what was asked, the scope, the
//! router's answer and the replicas' state; with the reason, an enum.

use crate::lsn::Lsn;
use crate::replica::Skip;
use crate::router::{DEFAULT, READ_REPLICA};
use std::sync::Arc;

/// What a read asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Using {
    /// As the router says.
    #[default]
    Auto,
    /// The primary (`default`).
    Primary,
    /// A replica (`read_replica`), subject to the scope.
    Replica,
    /// A named alias.
    Alias(Arc<str>),
}

impl Using {
    /// `default` and `read_replica` by their meaning, anything else by name.
    pub(crate) fn alias(name: &str) -> Self {
        match name {
            DEFAULT => Using::Primary,
            READ_REPLICA => Using::Replica,
            other => Using::Alias(other.into()),
        }
    }
}

/// What the scope says, at the moment of the read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ScopeView {
    /// `with_primary` is running.
    pub(crate) forced: bool,
    /// The scope wrote (sticky).
    pub(crate) wrote: bool,
    /// Reads must see this LSN (a token, or the scope's writes).
    pub(crate) min_lsn: Lsn,
    /// A token, or a write whose LSN is unknown, asks for the primary.
    pub(crate) token_primary: bool,
    /// The replica this scope read before.
    pub(crate) pinned: Option<usize>,
}

/// Where a read goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Primary,
    Replica(usize),
    /// A configured alias, by index.
    Alias(usize),
    /// No usable replica and `REPLICA_FALLBACK=false`.
    Unavailable,
    /// The alias asked for is not configured.
    NoSuchAlias,
}

impl Target {
    /// The class of a target for single-flight loads.
    pub(crate) fn class(self) -> u8 {
        match self {
            Target::Primary => 0,
            Target::Replica(_) => 1,
            Target::Alias(i) => 2 + (i.min(250) as u8),
            Target::Unavailable | Target::NoSuchAlias => 255,
        }
    }
}

/// Why a read went where it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Why {
    /// Inside `with_primary`.
    Forced,
    /// `.using_primary()` or `.using("default")`.
    Explicit,
    /// The scope wrote before.
    Sticky,
    /// A token asks for the primary (its write's LSN was unknown, or a
    /// failover happened since).
    TokenPrimary,
    /// The router named `default`.
    Router,
    /// A configured alias.
    Alias,
    /// A replica chosen by the balancing strategy.
    Balanced,
    /// The replica this scope read before (reads never go back in time).
    Pinned,
    /// No replicas are configured.
    NoReplicas,
    /// Every replica is unhealthy.
    Unhealthy,
    /// Every healthy replica is over the lag bound.
    Lag,
    /// No replica has replayed the scope's minimum LSN.
    Token,
    /// A replica failed at the connection level; retried on the primary.
    Failover,
    /// Inside a transaction (always the primary, or the router's write alias).
    Transaction,
    /// A cached read whose replica answer was behind an invalidation of its
    /// rows, read again where that write is.
    Stale,
}

impl Why {
    /// The reason as a word, for tracing.
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Forced => "forced",
            Why::Explicit => "explicit",
            Why::Sticky => "sticky",
            Why::TokenPrimary => "token_primary",
            Why::Router => "router",
            Why::Alias => "alias",
            Why::Balanced => "balanced",
            Why::Pinned => "pinned",
            Why::NoReplicas => "no_replicas",
            Why::Unhealthy => "unhealthy",
            Why::Lag => "lag",
            Why::Token => "token",
            Why::Failover => "failover",
            Why::Transaction => "transaction",
            Why::Stale => "stale",
        }
    }

    /// Whether a read that runs on the primary for this reason counts as a
    /// fallback (it wanted a replica).
    pub(crate) fn is_fallback(self) -> bool {
        matches!(self, Why::Unhealthy | Why::Lag | Why::Failover)
    }
}

/// The decision. `pick` chooses a replica for the scope (see
/// `ReplicaSet::pick`); `aliases` are the configured alias names.
pub(crate) fn decide(
    using: &Using,
    scope: ScopeView,
    router_answer: Option<&str>,
    aliases: &[Arc<str>],
    fallback: bool,
    pick: impl FnOnce(Option<usize>, Lsn) -> Result<usize, Skip>,
) -> (Target, Why) {
    if scope.forced {
        return (Target::Primary, Why::Forced);
    }
    let alias: &str = match using {
        Using::Primary => return (Target::Primary, Why::Explicit),
        Using::Replica => READ_REPLICA,
        Using::Alias(a) => a,
        Using::Auto => router_answer.unwrap_or(READ_REPLICA),
    };
    if alias == DEFAULT {
        return (Target::Primary, Why::Router);
    }
    if alias != READ_REPLICA {
        // aliases are plain pools of other databases: the sticky flag and
        // tokens, which speak of the primary's LSN, do not apply to them
        return match aliases.iter().position(|a| &**a == alias) {
            Some(i) => (Target::Alias(i), Why::Alias),
            None => (Target::NoSuchAlias, Why::Alias),
        };
    }
    if scope.token_primary {
        return (Target::Primary, Why::TokenPrimary);
    }
    if scope.wrote {
        return (Target::Primary, Why::Sticky);
    }
    match pick(scope.pinned, scope.min_lsn) {
        Ok(i) if scope.pinned == Some(i) => (Target::Replica(i), Why::Pinned),
        Ok(i) => (Target::Replica(i), Why::Balanced),
        Err(Skip::NoReplicas) => (Target::Primary, Why::NoReplicas),
        // API.md: a token no replica has replayed reads the primary
        Err(Skip::Token) => (Target::Primary, Why::Token),
        Err(skip) => {
            let why = if skip == Skip::Lag {
                Why::Lag
            } else {
                Why::Unhealthy
            };
            if fallback {
                (Target::Primary, why)
            } else {
                (Target::Unavailable, why)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aliases() -> Vec<Arc<str>> {
        vec!["analytics".into()]
    }

    /// One case: what is asked, the scope, the router, the replicas, fallback;
    /// and the decision wanted.
    struct Case {
        what: &'static str,
        using: Using,
        scope: ScopeView,
        router: Option<&'static str>,
        replicas: Result<usize, Skip>,
        fallback: bool,
        want: (Target, Why),
    }

    #[test]
    fn every_rule_of_the_routing_table() {
        let wrote = ScopeView {
            wrote: true,
            ..Default::default()
        };
        let base = |what, using, want| Case {
            what,
            using,
            scope: ScopeView::default(),
            router: None,
            replicas: Ok(1),
            fallback: true,
            want,
        };
        let cases = vec![
            base(
                "auto reads a replica",
                Using::Auto,
                (Target::Replica(1), Why::Balanced),
            ),
            base(
                "explicit replica",
                Using::Replica,
                (Target::Replica(1), Why::Balanced),
            ),
            base(
                "explicit primary",
                Using::Primary,
                (Target::Primary, Why::Explicit),
            ),
            base(
                "a configured alias",
                Using::Alias("analytics".into()),
                (Target::Alias(0), Why::Alias),
            ),
            base(
                "an unknown alias is an error",
                Using::Alias("typo".into()),
                (Target::NoSuchAlias, Why::Alias),
            ),
            Case {
                scope: ScopeView {
                    forced: true,
                    ..Default::default()
                },
                ..base(
                    "with_primary wins over everything",
                    Using::Alias("analytics".into()),
                    (Target::Primary, Why::Forced),
                )
            },
            Case {
                scope: wrote,
                ..base(
                    "sticky after a write",
                    Using::Replica,
                    (Target::Primary, Why::Sticky),
                )
            },
            Case {
                scope: wrote,
                ..base(
                    "aliases are not sticky",
                    Using::Alias("analytics".into()),
                    (Target::Alias(0), Why::Alias),
                )
            },
            Case {
                scope: ScopeView {
                    token_primary: true,
                    ..Default::default()
                },
                ..base(
                    "a token that asks for the primary",
                    Using::Auto,
                    (Target::Primary, Why::TokenPrimary),
                )
            },
            Case {
                router: Some(DEFAULT),
                ..base(
                    "the router names the primary",
                    Using::Auto,
                    (Target::Primary, Why::Router),
                )
            },
            Case {
                router: Some("analytics"),
                ..base(
                    "the router names an alias",
                    Using::Auto,
                    (Target::Alias(0), Why::Alias),
                )
            },
            Case {
                router: Some(DEFAULT),
                ..base(
                    "an explicit replica overrides the router",
                    Using::Replica,
                    (Target::Replica(1), Why::Balanced),
                )
            },
            Case {
                scope: ScopeView {
                    pinned: Some(1),
                    ..Default::default()
                },
                ..base(
                    "the pinned replica",
                    Using::Auto,
                    (Target::Replica(1), Why::Pinned),
                )
            },
            Case {
                replicas: Err(Skip::NoReplicas),
                ..base(
                    "no replicas",
                    Using::Auto,
                    (Target::Primary, Why::NoReplicas),
                )
            },
            Case {
                replicas: Err(Skip::Unhealthy),
                ..base(
                    "all unhealthy: fallback",
                    Using::Auto,
                    (Target::Primary, Why::Unhealthy),
                )
            },
            Case {
                replicas: Err(Skip::Lag),
                ..base(
                    "all lagging: fallback",
                    Using::Auto,
                    (Target::Primary, Why::Lag),
                )
            },
            Case {
                replicas: Err(Skip::Unhealthy),
                fallback: false,
                ..base(
                    "all unhealthy, no fallback",
                    Using::Auto,
                    (Target::Unavailable, Why::Unhealthy),
                )
            },
            Case {
                replicas: Err(Skip::Token),
                fallback: false,
                ..base(
                    "a token no replica replayed reads the primary even without fallback",
                    Using::Auto,
                    (Target::Primary, Why::Token),
                )
            },
        ];
        for c in cases {
            let got = decide(
                &c.using,
                c.scope,
                c.router,
                &aliases(),
                c.fallback,
                |_, _| c.replicas,
            );
            assert_eq!(got, c.want, "{}", c.what);
        }
    }

    #[test]
    fn the_scope_s_minimum_lsn_and_pin_reach_the_pick() {
        let scope = ScopeView {
            min_lsn: Lsn(42),
            pinned: Some(0),
            ..Default::default()
        };
        let mut seen = None;
        decide(&Using::Auto, scope, None, &[], true, |p, l| {
            seen = Some((p, l));
            Ok(0)
        });
        assert_eq!(seen, Some((Some(0), Lsn(42))));
    }
}
