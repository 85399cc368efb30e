//! The explicit API: `Story::find().using_replica().cached().all(&db)`.

use crate::cache::{CacheValue, key_of};
use crate::classify::Tag;
use crate::conn::{Db, Explicit};
use crate::scope::{self, CacheOutcome};
use sea_orm::sea_query::audit::{AccessType, AuditTrait};
use sea_orm::{
    DbErr, EntityTrait, PaginatorTrait, QuerySelect, QueryTrait, Select, SelectTwo, SelectTwoMany,
};
use std::sync::Arc;
use std::time::Duration;

mod sealed {
    pub trait Sealed {}
    impl<E: sea_orm::EntityTrait> Sealed for sea_orm::Select<E> {}
    impl<E: sea_orm::EntityTrait, F: sea_orm::EntityTrait> Sealed for sea_orm::SelectTwo<E, F> {}
    impl<E: sea_orm::EntityTrait, F: sea_orm::EntityTrait> Sealed for sea_orm::SelectTwoMany<E, F> {}
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
    /// Always `Some` until a terminal method takes it.
    select: Option<Q>,
    route: Explicit,
    cache: Option<Option<Duration>>,
    extra_tags: Vec<Tag>,
}

impl<Q> Routed<Q> {
    fn take(&mut self) -> Result<Q, DbErr> {
        self.select
            .take()
            .ok_or_else(|| DbErr::Custom("routed select already run".into()))
    }

    fn new(select: Q) -> Self {
        Self {
            select: Some(select),
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

    fn tables(select: &Q, extra_tags: &[Tag], fallback: &'static str) -> Vec<Tag>
    where
        Q: QueryTrait<QueryStatement = sea_orm::sea_query::SelectStatement>,
    {
        let mut tags: Vec<Tag> = Vec::with_capacity(2 + extra_tags.len());
        if let Ok(audit) = select.as_query().audit() {
            for r in audit.requests {
                let t = r.schema_table.1.inner();
                if r.access_type == AccessType::Select && !tags.contains(&t) {
                    tags.push(t);
                }
            }
        }
        if tags.is_empty() {
            tags.push(Tag::Borrowed(fallback));
        }
        tags.extend(extra_tags.iter().cloned());
        tags
    }

    async fn run<V, F, Fut>(
        self,
        db: &Db,
        kind: &str,
        fallback: &'static str,
        query: Q,
        exec: F,
    ) -> Result<Arc<V>, DbErr>
    where
        Q: QueryTrait<QueryStatement = sea_orm::sea_query::SelectStatement> + Clone + Sync,
        V: CacheValue,
        F: Fn(Q, sea_orm::DatabaseConnection) -> Fut,
        Fut: std::future::Future<Output = Result<V, DbErr>>,
    {
        // Tables are worked out only when needed: by a custom router, or on a miss.
        let extra = self.extra_tags;
        let compute = || Self::tables(&query, &extra, fallback);
        let hints = crate::router::Hints::lazy(&compute);
        let target = db.decide_read_with(&self.route, &hints)?;
        let Some(ttl) = self.cache.filter(|_| db.cache_enabled()) else {
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
}

impl<E: EntityTrait> Routed<Select<E>> {
    /// All rows, as SeaORM's `Select::all`.
    ///
    /// # Errors
    ///
    /// The database's; a cache failure is never an error.
    pub async fn all(self, db: &Db) -> Result<Vec<E::Model>, DbErr>
    where
        E::Model: CacheValue,
    {
        self.all_shared(db).await.map(Arc::unwrap_or_clone)
    }

    /// All rows, shared: an L1 hit hands out the cached vector itself, with
    /// no copy of the rows (cheapest for long listings).
    ///
    /// # Errors
    ///
    /// The database's; a cache failure is never an error.
    pub async fn all_shared(mut self, db: &Db) -> Result<Arc<Vec<E::Model>>, DbErr>
    where
        E::Model: CacheValue,
    {
        let q = self.take()?;
        self.run(db, "all", E::default().table_name(), q, |s, c| async move {
            s.all(&c).await
        })
        .await
    }

    /// The first row, as SeaORM's `Select::one`.
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn one(self, db: &Db) -> Result<Option<E::Model>, DbErr>
    where
        E::Model: CacheValue,
    {
        self.one_shared(db).await.map(Arc::unwrap_or_clone)
    }

    /// The first row, shared: an L1 hit hands out the cached value itself.
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn one_shared(mut self, db: &Db) -> Result<Arc<Option<E::Model>>, DbErr>
    where
        E::Model: CacheValue,
    {
        let q = self.take()?.limit(1);
        self.run(db, "one", E::default().table_name(), q, |s, c| async move {
            s.one(&c).await
        })
        .await
    }

    /// The number of rows, as SeaORM's `PaginatorTrait::count`.
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn count(mut self, db: &Db) -> Result<u64, DbErr>
    where
        E::Model: Sync,
    {
        let q = self.take()?;
        self.run(
            db,
            "count",
            E::default().table_name(),
            q,
            |s, c| async move { s.count(&c).await },
        )
        .await
        .map(|n| *n)
    }
}

impl<E: EntityTrait, F: EntityTrait> Routed<SelectTwo<E, F>> {
    /// All rows with their related row, as SeaORM's `SelectTwo::all`.
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn all(self, db: &Db) -> Result<Vec<(E::Model, Option<F::Model>)>, DbErr>
    where
        E::Model: CacheValue,
        F::Model: CacheValue,
    {
        self.all_shared(db).await.map(Arc::unwrap_or_clone)
    }

    /// All rows with their related row, shared: an L1 hit hands out the cached vector itself.
    ///
    /// # Errors
    ///
    /// The database's.
    #[allow(clippy::type_complexity)]
    pub async fn all_shared(
        mut self,
        db: &Db,
    ) -> Result<Arc<Vec<(E::Model, Option<F::Model>)>>, DbErr>
    where
        E::Model: CacheValue,
        F::Model: CacheValue,
    {
        let q = self.take()?;
        self.run(
            db,
            "two_all",
            E::default().table_name(),
            q,
            |s, c| async move { s.all(&c).await },
        )
        .await
    }

    /// The first row with its related row, as SeaORM's `SelectTwo::one`.
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn one(mut self, db: &Db) -> Result<Option<(E::Model, Option<F::Model>)>, DbErr>
    where
        E::Model: CacheValue,
        F::Model: CacheValue,
    {
        let q = self.take()?.limit(1);
        self.run(
            db,
            "two_one",
            E::default().table_name(),
            q,
            |s, c| async move { s.one(&c).await },
        )
        .await
        .map(Arc::unwrap_or_clone)
    }
}

impl<E: EntityTrait, F: EntityTrait> Routed<SelectTwoMany<E, F>> {
    /// All rows with their related rows, as SeaORM's `SelectTwoMany::all`.
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn all(self, db: &Db) -> Result<Vec<(E::Model, Vec<F::Model>)>, DbErr>
    where
        E::Model: CacheValue,
        F::Model: CacheValue,
    {
        self.all_shared(db).await.map(Arc::unwrap_or_clone)
    }

    /// All rows with their related rows, shared: an L1 hit hands out the cached vector itself.
    ///
    /// # Errors
    ///
    /// The database's.
    #[allow(clippy::type_complexity)]
    pub async fn all_shared(mut self, db: &Db) -> Result<Arc<Vec<(E::Model, Vec<F::Model>)>>, DbErr>
    where
        E::Model: CacheValue,
        F::Model: CacheValue,
    {
        let q = self.take()?;
        self.run(
            db,
            "many_all",
            E::default().table_name(),
            q,
            |s, c| async move { s.all(&c).await },
        )
        .await
    }
}
