//! Django's database routers: which alias serves a read, a write, a migration.

/// The primary's alias.
pub const DEFAULT: &str = "default";
/// The replica set's alias.
pub const READ_REPLICA: &str = "read_replica";

use std::sync::OnceLock;

/// What is being routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation {
    /// A read.
    Read,
    /// A write, or a transaction (which may write).
    Write,
    /// A migration.
    Migrate,
}

/// What a router is told about a statement: the operation, the tables it
/// reads or writes, and (for the explicit API) the entity's table. The
/// tables are worked out only if the router asks (the default router never
/// does), so routing a cached read costs no statement analysis.
pub struct Hints<'a> {
    operation: Operation,
    entity: Option<&'static str>,
    known: Option<&'a [String]>,
    compute: Option<&'a (dyn Fn() -> Vec<String> + Sync)>,
    computed: OnceLock<Vec<String>>,
}

impl<'a> Hints<'a> {
    fn with(
        operation: Operation,
        known: Option<&'a [String]>,
        compute: Option<&'a (dyn Fn() -> Vec<String> + Sync)>,
    ) -> Self {
        Self {
            operation,
            entity: None,
            known,
            compute,
            computed: OnceLock::new(),
        }
    }

    /// Hints of a read whose tables are known.
    pub fn new(tables: &'a [String]) -> Self {
        Self::with(Operation::Read, Some(tables), None)
    }

    /// Hints of a read whose tables are computed on first use.
    pub fn lazy(compute: &'a (dyn Fn() -> Vec<String> + Sync)) -> Self {
        Self::with(Operation::Read, None, Some(compute))
    }

    /// Hints of a write of `tables`.
    pub fn write(tables: &'a [String]) -> Self {
        Self::with(Operation::Write, Some(tables), None)
    }

    /// Hints of a migration.
    pub fn migrate() -> Self {
        Self::with(Operation::Migrate, Some(&[]), None)
    }

    /// The same hints, naming the entity (its table) the statement is built from.
    #[must_use]
    pub fn for_entity(mut self, table: &'static str) -> Self {
        self.entity = Some(table);
        self
    }

    /// The operation routed.
    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// The table of the entity the statement is built from, when known.
    pub fn entity(&self) -> Option<&'static str> {
        self.entity
    }

    /// The tables the statement reads (for a read) or writes (for a write).
    pub fn tables(&self) -> &[String] {
        match (self.known, self.compute) {
            (Some(t), _) => t,
            (None, Some(f)) => self.computed.get_or_init(f),
            (None, None) => &[],
        }
    }

    /// Whether the statement touches `table` (or is built from its entity).
    pub fn touches(&self, table: &str) -> bool {
        self.entity == Some(table) || self.tables().iter().any(|t| t == table)
    }
}

impl std::fmt::Debug for Hints<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hints")
            .field("operation", &self.operation)
            .field("entity", &self.entity)
            .field("tables", &self.tables())
            .finish()
    }
}

/// Picks the alias for every statement, as Django's routers do.
///
/// Returning `None` means "no opinion": the next router of a chain is
/// asked, and when none answers, reads go to [`READ_REPLICA`] and writes to
/// [`DEFAULT`]. Whatever a router says, a scope that wrote, a consistency
/// token and `with_primary` can still send a read to the primary. An alias
/// that is not configured is an error.
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
    /// The alias for a write (and for a transaction).
    fn db_for_write(&self, hints: &Hints<'_>) -> Option<&str> {
        let _ = hints;
        None
    }
    /// Whether migrations may run on `alias` (`None`: no opinion; the
    /// default is the primary only).
    fn allow_migrate(&self, alias: &str) -> Option<bool> {
        let _ = alias;
        None
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
    fn allow_migrate(&self, alias: &str) -> Option<bool> {
        Some(alias == DEFAULT)
    }
}

/// Routers asked in order; the first answer wins (Django's `DATABASE_ROUTERS`).
pub struct Chain(Vec<Box<dyn DatabaseRouter>>);

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Chain({} routers)", self.0.len())
    }
}

impl Chain {
    /// An empty chain (every answer falls to the defaults).
    pub fn new() -> Self {
        Self(Vec::new())
    }
    /// Adds a router after the others.
    #[must_use]
    pub fn then(mut self, r: impl DatabaseRouter) -> Self {
        self.0.push(Box::new(r));
        self
    }
}

impl Default for Chain {
    fn default() -> Self {
        Self::new()
    }
}

impl DatabaseRouter for Chain {
    fn db_for_read(&self, hints: &Hints<'_>) -> Option<&str> {
        self.0.iter().find_map(|r| r.db_for_read(hints))
    }
    fn db_for_write(&self, hints: &Hints<'_>) -> Option<&str> {
        self.0.iter().find_map(|r| r.db_for_write(hints))
    }
    fn allow_migrate(&self, alias: &str) -> Option<bool> {
        self.0.iter().find_map(|r| r.allow_migrate(alias))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Only(&'static str);
    impl DatabaseRouter for Only {
        fn db_for_read(&self, h: &Hints<'_>) -> Option<&str> {
            h.touches(self.0).then_some(DEFAULT)
        }
    }

    #[test]
    fn a_chain_takes_the_first_answer() {
        let chain = Chain::new().then(Only("follows")).then(ReadWriteRouter);
        let follows = vec!["follows".to_owned()];
        let stories = vec!["stories".to_owned()];
        assert_eq!(chain.db_for_read(&Hints::new(&follows)), Some(DEFAULT));
        assert_eq!(chain.db_for_read(&Hints::new(&stories)), Some(READ_REPLICA));
        assert_eq!(chain.allow_migrate(DEFAULT), Some(true));
        assert_eq!(Chain::new().db_for_read(&Hints::new(&stories)), None);
        assert!(Hints::new(&[]).for_entity("follows").touches("follows"));
    }
}
