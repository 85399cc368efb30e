//! Django's database routers: which alias serves a read, a write, a migration.

/// The primary's alias.
pub const DEFAULT: &str = "default";
/// The replica set's alias.
pub const READ_REPLICA: &str = "read_replica";

/// What a router is told about a statement.
#[derive(Debug, Clone, Copy)]
pub struct Hints<'a> {
    /// The tables the statement reads (for a read) or writes (for a write).
    pub tables: &'a [crate::classify::Tag],
}

impl Hints<'_> {
    /// Whether the statement touches `table`.
    pub fn touches(&self, table: &str) -> bool {
        self.tables.iter().any(|t| t == table)
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
