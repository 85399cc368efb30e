//! The explicit API: `Story::find().using_replica().cached().all(&db)`.

use crate::cache::{CacheValue, key_of};
use crate::classify::Tag;
use crate::conn::{Db, Explicit};
use crate::scope::{self, CacheOutcome};
use sea_orm::{DbErr, EntityTrait, PaginatorTrait, QuerySelect, Select, SelectTwo, SelectTwoMany};
use std::sync::Arc;
use std::time::Duration;

mod sealed {
    use sea_orm::sea_query::SelectStatement;
    use sea_orm::{DatabaseConnection, DbErr, EntityTrait, QueryTrait};
    use std::future::Future;

    /// The SeaORM selects that can be routed: what a row is, how to read all
    /// of them, and what names their cache keys.
    pub trait Sealed: QueryTrait<QueryStatement = SelectStatement> + Clone + Sync {
        /// One row of the result.
        type Row;
        /// Key kind of `all` (each select kind has its own, so two kinds
        /// rendering the same SQL never share an entry).
        const ALL: &'static str;
        /// The table tagged when the statement's audit names none.
        fn table() -> &'static str;
        /// SeaORM's `all` on `c`.
        fn all_on(
            self,
            c: DatabaseConnection,
        ) -> impl Future<Output = Result<Vec<Self::Row>, DbErr>>;
    }

    /// The selects that also have a `one`.
    pub trait One: Sealed {
        /// Key kind of `one`.
        const ONE: &'static str;
        /// SeaORM's `one` on `c`.
        fn one_on(
            self,
            c: DatabaseConnection,
        ) -> impl Future<Output = Result<Option<Self::Row>, DbErr>>;
    }

    impl<E: EntityTrait> Sealed for sea_orm::Select<E> {
        type Row = E::Model;
        const ALL: &'static str = "all";
        fn table() -> &'static str {
            E::default().table_name()
        }
        async fn all_on(self, c: DatabaseConnection) -> Result<Vec<Self::Row>, DbErr> {
            self.all(&c).await
        }
    }
    impl<E: EntityTrait> One for sea_orm::Select<E> {
        const ONE: &'static str = "one";
        async fn one_on(self, c: DatabaseConnection) -> Result<Option<Self::Row>, DbErr> {
            self.one(&c).await
        }
    }

    impl<E: EntityTrait, F: EntityTrait> Sealed for sea_orm::SelectTwo<E, F> {
        type Row = (E::Model, Option<F::Model>);
        const ALL: &'static str = "two_all";
        fn table() -> &'static str {
            E::default().table_name()
        }
        async fn all_on(self, c: DatabaseConnection) -> Result<Vec<Self::Row>, DbErr> {
            self.all(&c).await
        }
    }
    impl<E: EntityTrait, F: EntityTrait> One for sea_orm::SelectTwo<E, F> {
        const ONE: &'static str = "two_one";
        async fn one_on(self, c: DatabaseConnection) -> Result<Option<Self::Row>, DbErr> {
            self.one(&c).await
        }
    }

    impl<E: EntityTrait, F: EntityTrait> Sealed for sea_orm::SelectTwoMany<E, F> {
        type Row = (E::Model, Vec<F::Model>);
        const ALL: &'static str = "many_all";
        fn table() -> &'static str {
            E::default().table_name()
        }
        async fn all_on(self, c: DatabaseConnection) -> Result<Vec<Self::Row>, DbErr> {
            self.all(&c).await
        }
    }
}

/// Routing and caching choices on a SeaORM `Select`. Sealed.
///
/// ```no_run
/// # async fn demo(db: seaway::Db) -> Result<(), sea_orm::DbErr> {
/// use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
/// use seaway::prelude::*;
/// use entity::{prelude::Story, story};
/// let published = Story::find()
///     .filter(story::Column::Published.eq(true))
///     .using_replica()
///     .cached()
///     .all(&db)
///     .await?;
/// # Ok(()) }
/// ```
///
/// Also on `find_also_related` (`SelectTwo`) and `find_with_related`
/// (`SelectTwoMany`) selects.
pub trait RoutedSelectExt: sealed::Sealed + Sized {
    /// Read from a replica (subject to the scope: sticky, token, health, lag).
    fn using_replica(self) -> Routed<Self> {
        Routed::new(self).using_replica()
    }
    /// Read from the primary.
    fn using_primary(self) -> Routed<Self> {
        Routed::new(self).using_primary()
    }
    /// Read from a named alias (`default`, `read_replica`, or one configured).
    fn using(self, alias: impl Into<String>) -> Routed<Self> {
        Routed::new(self).using(alias)
    }
    /// Route as the router says, and cache the result for the default TTL.
    fn cached(self) -> Routed<Self> {
        Routed::new(self).cached()
    }
}

impl<E: EntityTrait> RoutedSelectExt for Select<E> {}
impl<E: EntityTrait, F: EntityTrait> RoutedSelectExt for SelectTwo<E, F> {}
impl<E: EntityTrait, F: EntityTrait> RoutedSelectExt for SelectTwoMany<E, F> {}

/// A routed `Select<E>`.
pub type RoutedSelect<E> = Routed<Select<E>>;

/// A select with a route and a cache policy; run it with `all`, `one` or `count`.
#[must_use = "a routed select does nothing until .all(), .one() or .count()"]
#[derive(Debug, Clone)]
pub struct Routed<Q> {
    select: Q,
    route: Explicit,
    cache: Option<Option<Duration>>,
    extra_tags: Vec<Tag>,
}

impl<Q: sealed::Sealed> Routed<Q> {
    fn new(select: Q) -> Self {
        Self {
            select,
            route: Explicit::Auto,
            cache: None,
            extra_tags: Vec::new(),
        }
    }
    /// Read from a replica.
    pub fn using_replica(mut self) -> Self {
        self.route = Explicit::Replica;
        self
    }
    /// Read from the primary.
    pub fn using_primary(mut self) -> Self {
        self.route = Explicit::Primary;
        self
    }
    /// Read from a named alias.
    pub fn using(mut self, alias: impl Into<String>) -> Self {
        let alias = alias.into();
        self.route = match alias.as_str() {
            crate::DEFAULT => Explicit::Primary,
            crate::READ_REPLICA => Explicit::Replica,
            _ => Explicit::Alias(alias),
        };
        self
    }
    /// Cache the result for the configured TTL.
    pub fn cached(mut self) -> Self {
        self.cache = Some(None);
        self
    }
    /// Cache the result for `ttl`.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache = Some(Some(ttl));
        self
    }
    /// Do not cache (the default; undoes `cached`).
    pub fn no_cache(mut self) -> Self {
        self.cache = None;
        self
    }
    /// Adds a tag beyond the tables read: `db.invalidate(&[tag])` then empties it.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.extra_tags.push(Tag::Owned(tag.into()));
        self
    }

    fn tables(select: &Q, extra_tags: &[Tag]) -> Vec<Tag> {
        let mut tags = crate::classify::read_tables(select.as_query());
        if tags.is_empty() {
            tags.push(Tag::Borrowed(Q::table()));
        }
        tags.extend(extra_tags.iter().cloned());
        tags
    }

    /// Routes, then answers from the cache or runs `exec` on the connection
    /// chosen. `kind` names the result in the cache key.
    async fn run<V, F, Fut>(self, db: &Db, kind: &str, exec: F) -> Result<Arc<V>, DbErr>
    where
        V: CacheValue,
        F: Fn(Q, sea_orm::DatabaseConnection) -> Fut,
        Fut: std::future::Future<Output = Result<V, DbErr>>,
    {
        let Self {
            select: query,
            route,
            cache,
            extra_tags,
        } = self;
        // Tables are worked out only when needed: by a custom router, or on a miss.
        let compute = || Self::tables(&query, &extra_tags);
        let hints = crate::router::Hints::lazy(&compute);
        let target = db.decide_read_with(&route, &hints)?;
        let Some(ttl) = cache.filter(|_| db.cache_enabled()) else {
            // uncached: the query moves to the connection, uncopied
            let (v, ran) = db.run_read(target, query, |c, q| exec(q, c)).await?;
            let route = db.route_of(&ran);
            scope::with_current(|s| s.record(route, CacheOutcome::Bypass));
            return Ok(Arc::new(v));
        };
        let key = key_of(kind, db.backend(), query.as_query());
        let tables = move || hints.tables().to_vec();
        let run_db = || async {
            db.run_read(target.clone(), query.clone(), |c, q| exec(q, c))
                .await
        };
        let min_lsn = scope::with_current(|s| s.min_lsn()).unwrap_or_default();
        let mut ran_on = None;
        let (v, outcome) = db
            .cache()
            .get_or_load(key, tables, ttl, min_lsn, || async {
                let (v, ran) = run_db().await?;
                let source = db.source_of(&ran);
                ran_on = Some(ran);
                Ok((v, source))
            })
            .await?;
        let route = db.route_of(ran_on.as_ref().unwrap_or(&target));
        scope::with_current(|s| s.record(route, outcome));
        Ok(v)
    }

    /// All rows, as SeaORM's `all` on this kind of select.
    ///
    /// # Errors
    ///
    /// The database's; a cache failure is never an error.
    pub async fn all(self, db: &Db) -> Result<Vec<Q::Row>, DbErr>
    where
        Q::Row: CacheValue,
    {
        self.all_shared(db).await.map(Arc::unwrap_or_clone)
    }

    /// All rows, shared: an L1 hit hands out the cached vector itself, with
    /// no copy of the rows (cheapest for long listings).
    ///
    /// # Errors
    ///
    /// The database's; a cache failure is never an error.
    pub async fn all_shared(self, db: &Db) -> Result<Arc<Vec<Q::Row>>, DbErr>
    where
        Q::Row: CacheValue,
    {
        self.run(db, Q::ALL, Q::all_on).await
    }
}

impl<Q: sealed::One + QuerySelect> Routed<Q> {
    /// The first row, as SeaORM's `one` on this kind of select.
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn one(self, db: &Db) -> Result<Option<Q::Row>, DbErr>
    where
        Q::Row: CacheValue,
    {
        self.one_shared(db).await.map(Arc::unwrap_or_clone)
    }

    /// The first row, shared: an L1 hit hands out the cached value itself.
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn one_shared(self, db: &Db) -> Result<Arc<Option<Q::Row>>, DbErr>
    where
        Q::Row: CacheValue,
    {
        let this = Self {
            select: self.select.limit(1),
            ..self
        };
        this.run(db, Q::ONE, Q::one_on).await
    }
}

impl<E: EntityTrait> Routed<Select<E>> {
    /// The number of rows, as SeaORM's `PaginatorTrait::count`.
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn count(self, db: &Db) -> Result<u64, DbErr>
    where
        E::Model: Sync,
    {
        self.run(db, "count", |s, c| async move { s.count(&c).await })
            .await
            .map(|n| *n)
    }
}
