//! Django's database routers: which alias serves a read, a write, a migration.

/// The primary's alias.
pub const DEFAULT: &str = "default";
/// The replica set's alias.
pub const READ_REPLICA: &str = "read_replica";

use crate::classify::Tag;
use std::sync::OnceLock;

/// What a router is told about a statement. The tables are worked out only
/// if the router asks (the default router never does), so routing a cached
/// read costs no statement analysis.
pub struct Hints<'a> {
    known: Option<&'a [Tag]>,
    compute: Option<&'a (dyn Fn() -> Vec<Tag> + Sync)>,
    computed: OnceLock<Vec<Tag>>,
}

impl<'a> Hints<'a> {
    /// Hints with the tables already known.
    pub fn new(tables: &'a [Tag]) -> Self {
        Self {
            known: Some(tables),
            compute: None,
            computed: OnceLock::new(),
        }
    }

    /// Hints whose tables are computed on first use.
    pub fn lazy(compute: &'a (dyn Fn() -> Vec<Tag> + Sync)) -> Self {
        Self {
            known: None,
            compute: Some(compute),
            computed: OnceLock::new(),
        }
    }

    /// The tables the statement reads (for a read) or writes (for a write).
    pub fn tables(&self) -> &[Tag] {
        match (self.known, self.compute) {
            (Some(t), _) => t,
            (None, Some(f)) => self.computed.get_or_init(f),
            (None, None) => &[],
        }
    }

    /// Whether the statement touches `table`.
    pub fn touches(&self, table: &str) -> bool {
        self.tables().iter().any(|t| t == table)
    }
}

impl std::fmt::Debug for Hints<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hints")
            .field("tables", &self.tables())
            .finish()
    }
}

/// Picks the alias for every statement, as Django's routers do.
///
/// Returning `None` means "no opinion": reads then go to [`READ_REPLICA`],
/// writes to [`DEFAULT`]. An alias that is not configured is treated as
/// [`DEFAULT`]. Whatever a router says, a scope that wrote, a consistency
/// token and `with_primary` can still send a read to the primary.
///
/// ```
/// use seaway::{DatabaseRouter, Hints, DEFAULT};
///
/// /// Follows are read where they are written: no lag for the social graph.
/// struct FollowsOnPrimary;
///
/// impl DatabaseRouter for FollowsOnPrimary {
///     fn db_for_read(&self, hints: &Hints<'_>) -> Option<&str> {
///         hints.touches("follows").then_some(DEFAULT)
///     }
/// }
/// ```
pub trait DatabaseRouter: Send + Sync + 'static {
    /// The alias for a read.
    fn db_for_read(&self, hints: &Hints<'_>) -> Option<&str> {
        let _ = hints;
        None
    }
    /// The alias for a write.
    fn db_for_write(&self, hints: &Hints<'_>) -> Option<&str> {
        let _ = hints;
        None
    }
    /// Whether migrations may run on `alias`. Only the primary by default.
    fn allow_migrate(&self, alias: &str) -> bool {
        alias == DEFAULT
    }
}

/// The default router: reads to `read_replica`, writes and migrations to `default`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadWriteRouter;

impl DatabaseRouter for ReadWriteRouter {
    fn db_for_read(&self, _: &Hints<'_>) -> Option<&str> {
        Some(READ_REPLICA)
    }
    fn db_for_write(&self, _: &Hints<'_>) -> Option<&str> {
        Some(DEFAULT)
    }
}
