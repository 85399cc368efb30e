//! The explicit API: `Story::find().using_replica().cached().all(&db)`.
//!
//! A [`Routed`] select only describes the read: where it should go, and how
//! it is cached. Its terminals hand it to the `Db`'s read pipeline.

use crate::analyze;
use crate::cache::{CacheValue, key_of};
use crate::conn::{CacheSpec, Db};
use crate::depends::{self, Plan, Returned};
use crate::route::Using;
use crate::router::Hints;
use crate::tag::TagId;
use sea_orm::{DbErr, EntityTrait, PaginatorTrait, QuerySelect, Select, SelectTwo, SelectTwoMany};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Keys of returned rows, by table.
pub(crate) type RowKeys = Vec<(&'static str, Option<Vec<String>>)>;

mod sealed {
    use super::RowKeys;
    use crate::depends::{entity_pk, model_key};
    use sea_orm::sea_query::SelectStatement;
    use sea_orm::{DatabaseConnection, DbErr, EntityTrait, QueryTrait};
    use std::future::Future;

    /// The SeaORM selects that can be routed: what a row is, how to read all
    /// of them, and what names their cache keys.
    pub trait Sealed: QueryTrait<QueryStatement = SelectStatement> + Clone + Send + Sync {
        /// One row of the result.
        type Row: Send;
        /// Key kind of `all` (each select kind has its own, so two kinds
        /// rendering the same SQL never share an entry).
        const ALL: &'static str;
        /// The table of the entity selected.
        fn table() -> &'static str;
        /// The tables whose rows it returns, with their key columns.
        fn returned() -> Vec<(&'static str, Vec<String>)>;
        /// The keys of `row`'s models.
        fn keys(row: &Self::Row, out: &mut RowKeys);
        /// SeaORM's `all` on `c`.
        fn all_on(
            self,
            c: DatabaseConnection,
        ) -> impl Future<Output = Result<Vec<Self::Row>, DbErr>> + Send;
    }

    /// The selects that also have a `one`.
    pub trait One: Sealed {
        /// Key kind of `one`.
        const ONE: &'static str;
        /// SeaORM's `one` on `c`.
        fn one_on(
            self,
            c: DatabaseConnection,
        ) -> impl Future<Output = Result<Option<Self::Row>, DbErr>> + Send;
    }

    fn returned_of<E: EntityTrait>() -> (&'static str, Vec<String>) {
        (E::default().table_name(), entity_pk::<E>())
    }

    impl<E: EntityTrait> Sealed for sea_orm::Select<E> {
        type Row = E::Model;
        const ALL: &'static str = "all";
        fn table() -> &'static str {
            E::default().table_name()
        }
        fn returned() -> Vec<(&'static str, Vec<String>)> {
            vec![returned_of::<E>()]
        }
        fn keys(row: &Self::Row, out: &mut RowKeys) {
            out.push((Self::table(), model_key(row)));
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
        fn returned() -> Vec<(&'static str, Vec<String>)> {
            vec![returned_of::<E>(), returned_of::<F>()]
        }
        fn keys(row: &Self::Row, out: &mut RowKeys) {
            out.push((E::default().table_name(), model_key(&row.0)));
            if let Some(f) = &row.1 {
                out.push((F::default().table_name(), model_key(f)));
            }
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
        fn returned() -> Vec<(&'static str, Vec<String>)> {
            vec![returned_of::<E>(), returned_of::<F>()]
        }
        fn keys(row: &Self::Row, out: &mut RowKeys) {
            out.push((E::default().table_name(), model_key(&row.0)));
            for f in &row.1 {
                out.push((F::default().table_name(), model_key(f)));
            }
        }
        async fn all_on(self, c: DatabaseConnection) -> Result<Vec<Self::Row>, DbErr> {
            self.all(&c).await
        }
    }
}

/// Routing and caching choices on a SeaORM select. Sealed.
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
    /// Read from a named alias (`default`, `read_replica`, or one configured;
    /// another name is an error when the read runs).
    fn using(self, alias: &str) -> Routed<Self> {
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

/// How a read is cached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum CachePolicy {
    /// Not cached (the default).
    #[default]
    Off,
    /// Cached for the configured TTL.
    Default,
    /// Cached for this long.
    Ttl(Duration),
}

/// A select with a route and a cache policy; run it with `all`, `one` or `count`.
#[must_use = "a routed select does nothing until .all(), .one() or .count()"]
#[derive(Debug, Clone)]
pub struct Routed<Q> {
    select: Q,
    using: Using,
    cache: CachePolicy,
    extra_tags: Vec<TagId>,
}

impl<Q: sealed::Sealed> Routed<Q> {
    fn new(select: Q) -> Self {
        Self {
            select,
            using: Using::Auto,
            cache: CachePolicy::Off,
            extra_tags: Vec::new(),
        }
    }
    /// Read from a replica.
    pub fn using_replica(mut self) -> Self {
        self.using = Using::Replica;
        self
    }
    /// Read from the primary.
    pub fn using_primary(mut self) -> Self {
        self.using = Using::Primary;
        self
    }
    /// Read from a named alias.
    pub fn using(mut self, alias: &str) -> Self {
        self.using = Using::alias(alias);
        self
    }
    /// Cache the result for the configured TTL.
    pub fn cached(mut self) -> Self {
        self.cache = CachePolicy::Default;
        self
    }
    /// Cache the result for `ttl` (at most [`MAX_TTL`](crate::MAX_TTL)).
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache = CachePolicy::Ttl(ttl);
        self
    }
    /// Do not cache (the default; undoes `cached`).
    pub fn no_cache(mut self) -> Self {
        self.cache = CachePolicy::Off;
        self
    }
    /// Adds a dependency beyond the tables read: `db.invalidate(&[tag])` then
    /// empties the entry.
    pub fn tag(mut self, tag: &str) -> Self {
        self.extra_tags.push(TagId::table(tag));
        self
    }

    /// Hands the read to the pipeline: `exec` runs it on the connection
    /// chosen, `keys` names the rows of a result, `negative` tells an empty
    /// one. `kind` names the result in the cache key.
    async fn run<V, F, Fut>(
        self,
        db: &Db,
        kind: &'static str,
        exec: F,
        keys: fn(&V, &mut RowKeys),
        negative: fn(&V) -> bool,
    ) -> Result<Arc<V>, DbErr>
    where
        V: CacheValue,
        F: Fn(Q, sea_orm::DatabaseConnection) -> Fut + Sync,
        Fut: std::future::Future<Output = Result<V, DbErr>>,
    {
        let Self {
            select,
            using,
            cache,
            extra_tags,
        } = self;
        let shape = OnceLock::new();
        let shape_of = || shape.get_or_init(|| analyze::shape(select.as_query()));
        let tables = || shape_of().tables.clone();
        let hints = Hints::lazy(&tables).for_entity(Q::table());
        let ttl = match cache {
            CachePolicy::Off => {
                // an uncached read costs a round trip: telling a lock clause
                // or a side-effect function costs little beside it
                let using = if shape_of().needs_primary {
                    Using::Primary
                } else {
                    using
                };
                let v = db.read(&using, &hints, |c| exec(select.clone(), c)).await?;
                return Ok(Arc::new(v));
            }
            CachePolicy::Default => None,
            CachePolicy::Ttl(t) => Some(t),
        };
        let plan: OnceLock<Plan> = OnceLock::new();
        let schema = OnceLock::new();
        let plan_of = || {
            plan.get_or_init(|| {
                let schema = schema.get_or_init(|| db.catalog_schema());
                let pk = |t: &str| schema.pk(t).map(|p| p.columns.clone());
                let returned: Vec<Returned> = Q::returned()
                    .into_iter()
                    .map(|(table, pk)| Returned { table, pk })
                    .collect();
                let mut p = depends::plan(shape_of(), &returned, &pk);
                p.statics.extend(extra_tags.iter().copied());
                p
            })
        };
        let statics = || plan_of().statics.clone();
        let deps = |v: &V| {
            if shape_of().needs_primary {
                return None;
            }
            let mut k = Vec::new();
            keys(v, &mut k);
            Some((plan_of().finish(&k), negative(v)))
        };
        let needs_primary = || shape_of().needs_primary;
        let backend = db.backend();
        let key = |ns: u64| key_of(ns, kind, backend, select.as_query());
        db.read_cached(
            &using,
            &hints,
            CacheSpec {
                key: &key,
                ttl,
                static_tags: &statics,
                deps: &deps,
                needs_primary: &needs_primary,
            },
            |c| exec(select.clone(), c),
        )
        .await
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
        fn keys<Q: sealed::Sealed>(rows: &Vec<Q::Row>, out: &mut RowKeys) {
            for r in rows {
                Q::keys(r, out);
            }
        }
        self.run(
            db,
            Q::ALL,
            |q, c| q.all_on(c),
            keys::<Q>,
            |v: &Vec<Q::Row>| v.is_empty(),
        )
        .await
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
        fn keys<Q: sealed::Sealed>(row: &Option<Q::Row>, out: &mut RowKeys) {
            if let Some(r) = row {
                Q::keys(r, out);
            }
        }
        let this = Self {
            select: self.select.limit(1),
            ..self
        };
        this.run(
            db,
            Q::ONE,
            |q, c| q.one_on(c),
            keys::<Q>,
            |v: &Option<Q::Row>| v.is_none(),
        )
        .await
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
        // counted from a subquery of the select, as SeaORM does
        fn none(_: &u64, _: &mut RowKeys) {}
        self.run(
            db,
            "count",
            |s, c| async move { s.count(&c).await },
            none,
            |n: &u64| *n == 0,
        )
        .await
        .map(|n| *n)
    }
}
