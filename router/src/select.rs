//! The explicit API: `Story::find().using_replica().cached().all(&db)`.
//!
//! A [`Routed`] read only describes itself: where it should go, and whether
//! and how long it is cached. Its terminals mirror SeaORM's (`all`, `one`,
//! `count`, `exists`, `paginate`) and hand it to the `Db`'s read pipeline;
//! given a [`DbTransaction`] instead, they read the transaction, uncached.
//! Only `.cached()` asks for serde on the rows.
//!
//! Covered directly: `Select`, `SelectTwo`, `SelectTwoMany`,
//! `SelectTwoRequired`, the projections of a `Select` (`into_model`,
//! `into_partial_model`, `into_tuple`, `into_json` with the `json`
//! feature) and raw selectors (`find_by_statement`, `from_raw_sql`). For
//! anything else SeaORM can run (cursors, loaders, `SelectThree`.., streams,
//! SeaORM's own paginator) the blocks [`Db::with_replica`],
//! [`Db::with_alias`] and [`Db::with_primary`] route every read inside them.

use crate::analyze;
use crate::cache::{CacheValue, key_of, key_of_raw};
use crate::conn::{CacheSpec, Db};
use crate::depends::{self, Plan, Returned};
use crate::route::Using;
use crate::router::Hints;
use crate::scope::Scope;
use crate::tag::TagId;
use crate::txn::DbTransaction;
use sea_orm::sea_query::SelectStatement;
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, QuerySelect, Select, Statement};
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Keys of returned rows, by table.
pub(crate) type RowKeys = Vec<(&'static str, Option<Vec<String>>)>;

/// What a read is, for its key and its dependencies.
#[doc(hidden)]
pub enum Described<'a> {
    /// Built by SeaQuery: analyzed from its structure.
    Built(&'a SelectStatement),
    /// Raw SQL: it depends on every write.
    Raw(Statement),
}

mod sealed {
    use super::{Described, RowKeys};
    use sea_orm::{ConnectionTrait, DbErr};
    use std::future::Future;

    /// A SeaORM read that can be routed: its rows, how to run it on a
    /// connection, what names its cache keys.
    pub trait Sealed: Clone + Send + Sync + 'static {
        /// One row of the result.
        type Row: Send + 'static;
        /// Key kind of `all` (each kind has its own, so two kinds rendering
        /// the same SQL never share an entry).
        const ALL: &'static str;
        /// The table of the entity selected (`""` for raw SQL).
        fn table() -> &'static str;
        /// The statement, to key and analyze.
        fn describe(&self) -> Described<'_>;
        /// The tables whose rows it returns, with their key columns.
        fn returned() -> Vec<(&'static str, Vec<String>)>;
        /// The keys of `row`'s models.
        fn keys(row: &Self::Row, out: &mut RowKeys);
        /// SeaORM's `all` on `c`.
        fn all_on<C: ConnectionTrait>(
            self,
            c: &C,
        ) -> impl Future<Output = Result<Vec<Self::Row>, DbErr>> + Send;
    }

    /// The reads that also have a `one`.
    pub trait One: Sealed {
        /// Key kind of `one`.
        const ONE: &'static str;
        /// SeaORM's `one` on `c`.
        fn one_on<C: ConnectionTrait>(
            self,
            c: &C,
        ) -> impl Future<Output = Result<Option<Self::Row>, DbErr>> + Send;
    }

    /// The reads SeaORM can count and test for rows.
    pub trait Counted: Sealed {
        /// SeaORM's `count` on `c`.
        fn count_on<C: ConnectionTrait>(
            self,
            c: &C,
        ) -> impl Future<Output = Result<u64, DbErr>> + Send;
        /// SeaORM's `exists` on `c`.
        fn exists_on<C: ConnectionTrait>(
            self,
            c: &C,
        ) -> impl Future<Output = Result<bool, DbErr>> + Send;
    }

    /// Where terminals run: a `Db` (routed, cached) or a transaction.
    pub trait Conn: Sync {
        /// The `Db`, or the transaction.
        fn via(&self) -> super::Via<'_>;
    }
}

pub(crate) use sealed::{Counted, One, Sealed};

/// Where a terminal runs.
#[doc(hidden)]
pub enum Via<'a> {
    /// Routed and cached.
    Db(&'a Db),
    /// Inside a transaction: read there, uncached.
    Txn(&'a DbTransaction),
}

/// Where a routed read can run: a [`Db`], or a [`DbTransaction`] (read in
/// the transaction, bypassing routing and the cache). Sealed.
pub trait ReadConn: sealed::Conn {}
impl sealed::Conn for Db {
    fn via(&self) -> Via<'_> {
        Via::Db(self)
    }
}
impl ReadConn for Db {}
impl sealed::Conn for DbTransaction {
    fn via(&self) -> Via<'_> {
        Via::Txn(self)
    }
}
impl ReadConn for DbTransaction {}

fn returned_of<E: EntityTrait>() -> (&'static str, Vec<String>) {
    (E::default().table_name(), depends::entity_pk::<E>())
}

fn key_of_model<E: EntityTrait>(m: &E::Model) -> (&'static str, Option<Vec<String>>) {
    (E::default().table_name(), depends::model_key(m))
}

macro_rules! built {
    () => {
        fn describe(&self) -> Described<'_> {
            Described::Built(sea_orm::QueryTrait::as_query(self))
        }
    };
}

impl<E: EntityTrait> Sealed for Select<E> {
    type Row = E::Model;
    const ALL: &'static str = "all";
    fn table() -> &'static str {
        E::default().table_name()
    }
    built!();
    fn returned() -> Vec<(&'static str, Vec<String>)> {
        vec![returned_of::<E>()]
    }
    fn keys(row: &Self::Row, out: &mut RowKeys) {
        out.push(key_of_model::<E>(row));
    }
    async fn all_on<C: ConnectionTrait>(self, c: &C) -> Result<Vec<Self::Row>, DbErr> {
        self.all(c).await
    }
}
impl<E: EntityTrait> One for Select<E> {
    const ONE: &'static str = "one";
    async fn one_on<C: ConnectionTrait>(self, c: &C) -> Result<Option<Self::Row>, DbErr> {
        self.one(c).await
    }
}
impl<E: EntityTrait> Counted for Select<E>
where
    E::Model: Sync,
{
    async fn count_on<C: ConnectionTrait>(self, c: &C) -> Result<u64, DbErr> {
        sea_orm::PaginatorTrait::count(self, c).await
    }
    async fn exists_on<C: ConnectionTrait>(self, c: &C) -> Result<bool, DbErr> {
        sea_orm::SelectExt::exists(self, c).await
    }
}

impl<E: EntityTrait, F: EntityTrait> Sealed for sea_orm::SelectTwo<E, F> {
    type Row = (E::Model, Option<F::Model>);
    const ALL: &'static str = "two_all";
    fn table() -> &'static str {
        E::default().table_name()
    }
    built!();
    fn returned() -> Vec<(&'static str, Vec<String>)> {
        vec![returned_of::<E>(), returned_of::<F>()]
    }
    fn keys(row: &Self::Row, out: &mut RowKeys) {
        out.push(key_of_model::<E>(&row.0));
        if let Some(f) = &row.1 {
            out.push(key_of_model::<F>(f));
        }
    }
    async fn all_on<C: ConnectionTrait>(self, c: &C) -> Result<Vec<Self::Row>, DbErr> {
        self.all(c).await
    }
}
impl<E: EntityTrait, F: EntityTrait> One for sea_orm::SelectTwo<E, F> {
    const ONE: &'static str = "two_one";
    async fn one_on<C: ConnectionTrait>(self, c: &C) -> Result<Option<Self::Row>, DbErr> {
        self.one(c).await
    }
}
impl<E: EntityTrait, F: EntityTrait> Counted for sea_orm::SelectTwo<E, F>
where
    E::Model: Sync,
    F::Model: Sync,
{
    async fn count_on<C: ConnectionTrait>(self, c: &C) -> Result<u64, DbErr> {
        sea_orm::PaginatorTrait::count(self, c).await
    }
    async fn exists_on<C: ConnectionTrait>(self, c: &C) -> Result<bool, DbErr> {
        sea_orm::SelectExt::exists(self, c).await
    }
}

impl<E: EntityTrait, F: EntityTrait> Sealed for sea_orm::SelectTwoMany<E, F> {
    type Row = (E::Model, Vec<F::Model>);
    const ALL: &'static str = "many_all";
    fn table() -> &'static str {
        E::default().table_name()
    }
    built!();
    fn returned() -> Vec<(&'static str, Vec<String>)> {
        vec![returned_of::<E>(), returned_of::<F>()]
    }
    fn keys(row: &Self::Row, out: &mut RowKeys) {
        out.push(key_of_model::<E>(&row.0));
        for f in &row.1 {
            out.push(key_of_model::<F>(f));
        }
    }
    async fn all_on<C: ConnectionTrait>(self, c: &C) -> Result<Vec<Self::Row>, DbErr> {
        self.all(c).await
    }
}

impl<E: EntityTrait, F: EntityTrait> Sealed for sea_orm::SelectTwoRequired<E, F> {
    type Row = (E::Model, F::Model);
    const ALL: &'static str = "req_all";
    fn table() -> &'static str {
        E::default().table_name()
    }
    built!();
    fn returned() -> Vec<(&'static str, Vec<String>)> {
        vec![returned_of::<E>(), returned_of::<F>()]
    }
    fn keys(row: &Self::Row, out: &mut RowKeys) {
        out.push(key_of_model::<E>(&row.0));
        out.push(key_of_model::<F>(&row.1));
    }
    async fn all_on<C: ConnectionTrait>(self, c: &C) -> Result<Vec<Self::Row>, DbErr> {
        self.all(c).await
    }
}
impl<E: EntityTrait, F: EntityTrait> One for sea_orm::SelectTwoRequired<E, F> {
    const ONE: &'static str = "req_one";
    async fn one_on<C: ConnectionTrait>(self, c: &C) -> Result<Option<Self::Row>, DbErr> {
        self.one(c).await
    }
}

/// How a projection of a `Select` reads its rows.
pub trait Projection<E: EntityTrait>: Send + Sync + 'static {
    /// One row.
    type Row: Send + Sync;
    /// Its key kind.
    const KIND: &'static str;
    /// SeaORM's selector for it.
    #[doc(hidden)]
    fn selector(
        s: Select<E>,
    ) -> sea_orm::Selector<impl sea_orm::SelectorTrait<Item = Self::Row> + Send + Sync>;
}

/// `into_model::<M>()`.
#[derive(Debug)]
pub struct AsModel<M>(PhantomData<fn() -> M>);
/// `into_partial_model::<M>()`.
#[derive(Debug)]
pub struct AsPartial<M>(PhantomData<fn() -> M>);
/// `into_tuple::<T>()`.
#[derive(Debug)]
pub struct AsTuple<T>(PhantomData<fn() -> T>);
/// `into_json()`.
#[cfg(feature = "json")]
#[derive(Debug)]
pub struct AsJson;

impl<E: EntityTrait, M: sea_orm::FromQueryResult + Send + Sync + 'static> Projection<E>
    for AsModel<M>
{
    type Row = M;
    const KIND: &'static str = "model";
    fn selector(
        s: Select<E>,
    ) -> sea_orm::Selector<impl sea_orm::SelectorTrait<Item = M> + Send + Sync> {
        s.into_model::<M>()
    }
}
impl<E: EntityTrait, M: sea_orm::PartialModelTrait + Send + Sync + 'static> Projection<E>
    for AsPartial<M>
{
    type Row = M;
    const KIND: &'static str = "partial";
    fn selector(
        s: Select<E>,
    ) -> sea_orm::Selector<impl sea_orm::SelectorTrait<Item = M> + Send + Sync> {
        s.into_partial_model::<M>()
    }
}
impl<E: EntityTrait, T: sea_orm::TryGetableMany + Send + Sync + 'static> Projection<E>
    for AsTuple<T>
{
    type Row = T;
    const KIND: &'static str = "tuple";
    fn selector(
        s: Select<E>,
    ) -> sea_orm::Selector<impl sea_orm::SelectorTrait<Item = T> + Send + Sync> {
        s.into_tuple::<T>()
    }
}
#[cfg(feature = "json")]
impl<E: EntityTrait> Projection<E> for AsJson {
    type Row = serde_json::Value;
    const KIND: &'static str = "json";
    fn selector(
        s: Select<E>,
    ) -> sea_orm::Selector<impl sea_orm::SelectorTrait<Item = serde_json::Value> + Send + Sync>
    {
        s.into_json()
    }
}

/// A `Select` read as a projection: its rows are not models, so a cached
/// one depends on its output columns as well (their keys are unknown).
pub struct Projected<E: EntityTrait, P> {
    select: Select<E>,
    _p: PhantomData<fn() -> P>,
}

impl<E: EntityTrait, P> Clone for Projected<E, P> {
    fn clone(&self) -> Self {
        Self {
            select: self.select.clone(),
            _p: PhantomData,
        }
    }
}

impl<E: EntityTrait, P> std::fmt::Debug for Projected<E, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projected").finish_non_exhaustive()
    }
}

impl<E: EntityTrait, P: Projection<E>> Sealed for Projected<E, P> {
    type Row = P::Row;
    const ALL: &'static str = P::KIND;
    fn table() -> &'static str {
        E::default().table_name()
    }
    fn describe(&self) -> Described<'_> {
        Described::Built(sea_orm::QueryTrait::as_query(&self.select))
    }
    fn returned() -> Vec<(&'static str, Vec<String>)> {
        Vec::new()
    }
    fn keys(_: &Self::Row, _: &mut RowKeys) {}
    async fn all_on<C: ConnectionTrait>(self, c: &C) -> Result<Vec<Self::Row>, DbErr> {
        P::selector(self.select).all(c).await
    }
}
impl<E: EntityTrait, P: Projection<E>> One for Projected<E, P> {
    const ONE: &'static str = "projected_one";
    async fn one_on<C: ConnectionTrait>(self, c: &C) -> Result<Option<Self::Row>, DbErr> {
        P::selector(self.select).one(c).await
    }
}

/// A raw SQL read (what `find_by_statement`/`from_raw_sql` run), rows as
/// `M`: routed like any read; cached, it depends on every write (its text
/// is not analyzed), unless tags name what it reads.
///
/// ```no_run
/// # async fn demo(db: seaway::Db) -> Result<(), sea_orm::DbErr> {
/// use sea_orm::{DbBackend, Statement};
/// use seaway::{RawSelect, prelude::*};
/// let stmt = Statement::from_string(DbBackend::Postgres, "SELECT * FROM stories WHERE published");
/// let rows = RawSelect::<entity::story::Model>::new(stmt).using_replica().cached().all(&db).await?;
/// # let _ = rows; Ok(()) }
/// ```
pub struct RawSelect<M> {
    stmt: Statement,
    _m: PhantomData<fn() -> M>,
}

impl<M> RawSelect<M> {
    /// A read of `stmt`, rows as `M`.
    pub fn new(stmt: Statement) -> Self {
        Self {
            stmt,
            _m: PhantomData,
        }
    }
}

impl<M> Clone for RawSelect<M> {
    fn clone(&self) -> Self {
        Self::new(self.stmt.clone())
    }
}

impl<M> std::fmt::Debug for RawSelect<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawSelect")
            .field("sql", &self.stmt.sql)
            .finish()
    }
}

impl<M: sea_orm::FromQueryResult + Send + Sync + 'static> Sealed for RawSelect<M> {
    type Row = M;
    const ALL: &'static str = "raw_all";
    fn table() -> &'static str {
        ""
    }
    fn describe(&self) -> Described<'_> {
        Described::Raw(self.stmt.clone())
    }
    fn returned() -> Vec<(&'static str, Vec<String>)> {
        Vec::new()
    }
    fn keys(_: &Self::Row, _: &mut RowKeys) {}
    async fn all_on<C: ConnectionTrait>(self, c: &C) -> Result<Vec<Self::Row>, DbErr> {
        M::find_by_statement(self.stmt).all(c).await
    }
}
impl<M: sea_orm::FromQueryResult + Send + Sync + 'static> One for RawSelect<M> {
    const ONE: &'static str = "raw_one";
    async fn one_on<C: ConnectionTrait>(self, c: &C) -> Result<Option<Self::Row>, DbErr> {
        M::find_by_statement(self.stmt).one(c).await
    }
}

/// Routing and caching choices on a SeaORM read. Sealed.
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
pub trait RoutedSelectExt: Sealed + Sized {
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
    fn cached(self) -> Routed<Self, Cached> {
        Routed::new(self).cached()
    }
}

impl<Q: Sealed> RoutedSelectExt for Q {}

/// A routed `Select<E>`.
pub type RoutedSelect<E> = Routed<Select<E>>;

/// The cache policy of a [`Routed`] read: not cached (its rows need no serde).
#[derive(Debug, Clone, Copy, Default)]
pub struct Uncached;
/// The cache policy of a [`Routed`] read: cached (its rows are serde values).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cached;

/// A read with a route and a cache policy; run it with `all`, `one`,
/// `count`, `exists` or `paginate`.
#[must_use = "a routed read does nothing until .all(), .one(), .count() or .exists()"]
#[derive(Debug, Clone)]
pub struct Routed<Q, P = Uncached> {
    select: Q,
    using: Using,
    ttl: Option<Duration>,
    extra_tags: Vec<TagId>,
    _policy: PhantomData<P>,
}

impl<Q: Sealed> Routed<Q, Uncached> {
    fn new(select: Q) -> Self {
        Self {
            select,
            using: Using::Auto,
            ttl: None,
            extra_tags: Vec::new(),
            _policy: PhantomData,
        }
    }
}

impl<Q: Sealed, P> Routed<Q, P> {
    fn with_policy<R>(self) -> Routed<Q, R> {
        Routed {
            select: self.select,
            using: self.using,
            ttl: self.ttl,
            extra_tags: self.extra_tags,
            _policy: PhantomData,
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
    pub fn cached(self) -> Routed<Q, Cached> {
        self.with_policy()
    }
    /// Cache the result for `ttl` (at most [`MAX_TTL`](crate::settings::MAX_TTL)).
    pub fn cache_ttl(mut self, ttl: Duration) -> Routed<Q, Cached> {
        self.ttl = Some(ttl);
        self.with_policy()
    }
    /// Do not cache (undoes `cached`).
    pub fn no_cache(self) -> Routed<Q, Uncached> {
        self.with_policy()
    }
    /// Adds a dependency beyond the tables read: `db.invalidate(&[tag])` then
    /// empties the entry.
    pub fn tag(mut self, tag: &str) -> Self {
        self.extra_tags.push(TagId::table(tag));
        self
    }

    fn hint_tables(select: &Q) -> Vec<String> {
        match select.describe() {
            Described::Built(s) => analyze::shape(s).tables,
            Described::Raw(s) => crate::classify::read_tables(&s.sql),
        }
    }

    /// An uncached run: routed on a `Db`, or in the transaction.
    async fn run_plain<V, F, Fut, G>(
        self,
        conn: &impl ReadConn,
        exec: F,
        in_txn: G,
    ) -> Result<V, DbErr>
    where
        F: Fn(Q, sea_orm::DatabaseConnection) -> Fut + Sync,
        Fut: std::future::Future<Output = Result<V, DbErr>>,
        G: for<'t> FnOnce(Q, &'t DbTransaction) -> futures::future::BoxFuture<'t, Result<V, DbErr>>,
    {
        let db = match sealed::Conn::via(conn) {
            Via::Txn(t) => return in_txn(self.select, t).await,
            Via::Db(db) => db,
        };
        let Self { select, using, .. } = self;
        let needs_primary = match select.describe() {
            Described::Built(s) => analyze::shape(s).needs_primary,
            Described::Raw(s) => crate::classify::classify_sql(&s.sql).needs_primary(),
        };
        let using = if needs_primary { Using::Primary } else { using };
        let tables = || Self::hint_tables(&select);
        let hints = Hints::lazy(&tables).for_entity(Q::table());
        db.read(&using, &hints, |c| exec(select.clone(), c)).await
    }

    /// A cached run (around the cache in a transaction).
    async fn run_cached<V, F, Fut, G>(
        self,
        conn: &impl ReadConn,
        kind: &'static str,
        exec: F,
        in_txn: G,
        keys: fn(&V, &mut RowKeys),
        negative: fn(&V) -> bool,
    ) -> Result<Arc<V>, DbErr>
    where
        V: CacheValue,
        F: Fn(Q, sea_orm::DatabaseConnection) -> Fut + Sync,
        Fut: std::future::Future<Output = Result<V, DbErr>>,
        G: for<'t> FnOnce(Q, &'t DbTransaction) -> futures::future::BoxFuture<'t, Result<V, DbErr>>,
    {
        let db = match sealed::Conn::via(conn) {
            Via::Txn(t) => return in_txn(self.select, t).await.map(Arc::new),
            Via::Db(db) => db,
        };
        let Self {
            select,
            using,
            ttl,
            extra_tags,
            ..
        } = self;
        let described = select.describe();
        let shape = OnceLock::new();
        let shape_of = || {
            shape.get_or_init(|| match &described {
                Described::Built(s) => Some(analyze::shape(s)),
                Described::Raw(_) => None,
            })
        };
        let tables = || match &described {
            Described::Built(_) => shape_of()
                .as_ref()
                .map(|s| s.tables.clone())
                .unwrap_or_default(),
            Described::Raw(s) => crate::classify::read_tables(&s.sql),
        };
        let hints = Hints::lazy(&tables).for_entity(Q::table());
        let needs_primary = || match &described {
            Described::Built(_) => shape_of().as_ref().is_some_and(|s| s.needs_primary),
            Described::Raw(s) => crate::classify::classify_sql(&s.sql).needs_primary(),
        };
        let plan: OnceLock<Plan> = OnceLock::new();
        let plan_of = || {
            plan.get_or_init(|| {
                let mut p = match shape_of() {
                    Some(shape) => {
                        let schema = db.catalog_schema();
                        let pk = |t: &str| schema.pk(t).map(|p| p.columns.clone());
                        let returned: Vec<Returned> = Q::returned()
                            .into_iter()
                            .map(|(table, pk)| Returned { table, pk })
                            .collect();
                        depends::plan(shape, &returned, &pk)
                    }
                    // raw SQL: every write
                    None => Plan {
                        statics: vec![TagId::ALL, TagId::ANY_WRITE],
                        by_row: Vec::new(),
                    },
                };
                p.statics.extend(extra_tags.iter().copied());
                p
            })
        };
        let statics = || plan_of().statics.clone();
        let deps = |v: &V| {
            if needs_primary() {
                return None;
            }
            let mut k = Vec::new();
            keys(v, &mut k);
            Some((plan_of().finish(&k), negative(v)))
        };
        let backend = db.backend();
        let key = |ns: u64| match &described {
            Described::Built(s) => key_of(ns, kind, backend, s),
            Described::Raw(s) => key_of_raw(ns, kind, s),
        };
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
}

fn all_keys<Q: Sealed>(rows: &Vec<Q::Row>, out: &mut RowKeys) {
    for r in rows {
        Q::keys(r, out);
    }
}

fn one_keys<Q: Sealed>(row: &Option<Q::Row>, out: &mut RowKeys) {
    if let Some(r) = row {
        Q::keys(r, out);
    }
}

fn no_keys<T>(_: &T, _: &mut RowKeys) {}

impl<Q: Sealed> Routed<Q, Uncached> {
    /// All rows, as SeaORM's `all`.
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn all(self, conn: &impl ReadConn) -> Result<Vec<Q::Row>, DbErr> {
        self.run_plain(
            conn,
            |q, c| async move { q.all_on(&c).await },
            |q, t| Box::pin(q.all_on(t)),
        )
        .await
    }
}

impl<Q: One> Routed<Q, Uncached> {
    /// The first row, as SeaORM's `one`.
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn one(self, conn: &impl ReadConn) -> Result<Option<Q::Row>, DbErr> {
        self.run_plain(
            conn,
            |q, c| async move { q.one_on(&c).await },
            |q, t| Box::pin(q.one_on(t)),
        )
        .await
    }

    /// The first row, or [`DbErr::RecordNotFound`], as SeaORM's `require_one`.
    ///
    /// # Errors
    ///
    /// The database's, or none found.
    pub async fn require_one(self, conn: &impl ReadConn) -> Result<Q::Row, DbErr> {
        self.one(conn)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("no row".into()))
    }
}

impl<Q: Counted> Routed<Q, Uncached> {
    /// The number of rows, as SeaORM's `count`.
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn count(self, conn: &impl ReadConn) -> Result<u64, DbErr> {
        self.run_plain(
            conn,
            |q, c| async move { q.count_on(&c).await },
            |q, t| Box::pin(q.count_on(t)),
        )
        .await
    }

    /// Whether any row matches, as SeaORM's `exists`.
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn exists(self, conn: &impl ReadConn) -> Result<bool, DbErr> {
        self.run_plain(
            conn,
            |q, c| async move { q.exists_on(&c).await },
            |q, t| Box::pin(q.exists_on(t)),
        )
        .await
    }
}

impl<Q: Sealed> Routed<Q, Cached>
where
    Q::Row: CacheValue,
{
    /// All rows, as SeaORM's `all`, through the cache.
    ///
    /// # Errors
    ///
    /// The database's; a cache failure is never an error.
    pub async fn all(self, conn: &impl ReadConn) -> Result<Vec<Q::Row>, DbErr> {
        self.all_shared(conn).await.map(Arc::unwrap_or_clone)
    }

    /// All rows, shared: an L1 hit hands out the cached vector itself, with
    /// no copy of the rows (cheapest for long listings).
    ///
    /// # Errors
    ///
    /// The database's; a cache failure is never an error.
    pub async fn all_shared(self, conn: &impl ReadConn) -> Result<Arc<Vec<Q::Row>>, DbErr> {
        self.run_cached(
            conn,
            Q::ALL,
            |q, c| async move { q.all_on(&c).await },
            |q, t| Box::pin(q.all_on(t)),
            all_keys::<Q>,
            |v: &Vec<Q::Row>| v.is_empty(),
        )
        .await
    }
}

impl<Q: One> Routed<Q, Cached>
where
    Q::Row: CacheValue,
{
    /// The first row, as SeaORM's `one`, through the cache.
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn one(self, conn: &impl ReadConn) -> Result<Option<Q::Row>, DbErr> {
        self.one_shared(conn).await.map(Arc::unwrap_or_clone)
    }

    /// The first row, shared: an L1 hit hands out the cached value itself.
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn one_shared(self, conn: &impl ReadConn) -> Result<Arc<Option<Q::Row>>, DbErr> {
        self.run_cached(
            conn,
            Q::ONE,
            |q, c| async move { q.one_on(&c).await },
            |q, t| Box::pin(q.one_on(t)),
            one_keys::<Q>,
            |v: &Option<Q::Row>| v.is_none(),
        )
        .await
    }

    /// The first row, or [`DbErr::RecordNotFound`].
    ///
    /// # Errors
    ///
    /// The database's, or none found.
    pub async fn require_one(self, conn: &impl ReadConn) -> Result<Q::Row, DbErr> {
        self.one(conn)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("no row".into()))
    }
}

impl<Q: Counted> Routed<Q, Cached> {
    /// The number of rows, through the cache.
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn count(self, conn: &impl ReadConn) -> Result<u64, DbErr> {
        self.run_cached(
            conn,
            "count",
            |q, c| async move { q.count_on(&c).await },
            |q, t| Box::pin(q.count_on(t)),
            no_keys::<u64>,
            |n: &u64| *n == 0,
        )
        .await
        .map(|n| *n)
    }

    /// Whether any row matches, through the cache.
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn exists(self, conn: &impl ReadConn) -> Result<bool, DbErr> {
        self.run_cached(
            conn,
            "exists",
            |q, c| async move { q.exists_on(&c).await },
            |q, t| Box::pin(q.exists_on(t)),
            no_keys::<bool>,
            |b: &bool| !*b,
        )
        .await
        .map(|b| *b)
    }
}

impl<E: EntityTrait, P> Routed<Select<E>, P> {
    fn project<X>(self) -> Routed<Projected<E, X>, P> {
        Routed {
            select: Projected {
                select: self.select,
                _p: PhantomData,
            },
            using: self.using,
            ttl: self.ttl,
            extra_tags: self.extra_tags,
            _policy: PhantomData,
        }
    }
    /// Rows as `M`, as SeaORM's `into_model`.
    pub fn into_model<M: sea_orm::FromQueryResult + Send + Sync + 'static>(
        self,
    ) -> Routed<Projected<E, AsModel<M>>, P> {
        self.project()
    }
    /// Rows as a partial model, as SeaORM's `into_partial_model`.
    pub fn into_partial_model<M: sea_orm::PartialModelTrait + Send + Sync + 'static>(
        self,
    ) -> Routed<Projected<E, AsPartial<M>>, P> {
        self.project()
    }
    /// Rows as tuples, as SeaORM's `into_tuple`.
    pub fn into_tuple<T: sea_orm::TryGetableMany + Send + Sync + 'static>(
        self,
    ) -> Routed<Projected<E, AsTuple<T>>, P> {
        self.project()
    }
    /// Rows as JSON values, as SeaORM's `into_json`.
    #[cfg(feature = "json")]
    pub fn into_json(self) -> Routed<Projected<E, AsJson>, P> {
        self.project()
    }
}

/// Pages of a routed read, as SeaORM's paginator: every page and the count
/// read from one replica (that of the scope current when `paginate` is
/// called, or of a scope of its own), through the cache
/// when the read is cached.
#[derive(Debug)]
pub struct Paginator<'d, Q, P> {
    routed: Routed<Q, P>,
    db: &'d Db,
    page_size: u64,
    scope: Scope,
}

impl<Q: Sealed + QuerySelect, P> Routed<Q, P> {
    /// Pages of `page_size` rows (at least one), as SeaORM's `paginate`.
    pub fn paginate(self, db: &Db, page_size: u64) -> Paginator<'_, Q, P> {
        Paginator {
            routed: self,
            db,
            page_size: page_size.max(1),
            scope: Scope::current().unwrap_or_default(),
        }
    }
}

impl<Q: Sealed + QuerySelect, P> Paginator<'_, Q, P> {
    fn page(&self, page: u64) -> Routed<Q, P> {
        let mut r = Routed {
            select: self.routed.select.clone(),
            using: self.routed.using.clone(),
            ttl: self.routed.ttl,
            extra_tags: self.routed.extra_tags.clone(),
            _policy: PhantomData,
        };
        r.select = r.select.limit(self.page_size).offset(page * self.page_size);
        r
    }
}

impl<Q: Sealed + QuerySelect> Paginator<'_, Q, Uncached> {
    /// Page `page` (0-based).
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn fetch_page(&self, page: u64) -> Result<Vec<Q::Row>, DbErr> {
        self.scope.run(self.page(page).all(self.db)).await
    }
}

impl<Q: Counted + QuerySelect> Paginator<'_, Q, Uncached> {
    /// The number of rows.
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn num_items(&self) -> Result<u64, DbErr> {
        let r = self.page(0);
        let all = Routed::<Q, Uncached> {
            select: self.routed.select.clone(),
            ..r
        };
        self.scope.run(all.count(self.db)).await
    }
    /// The number of pages.
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn num_pages(&self) -> Result<u64, DbErr> {
        Ok(self.num_items().await?.div_ceil(self.page_size))
    }
}

impl<Q: Sealed + QuerySelect> Paginator<'_, Q, Cached>
where
    Q::Row: CacheValue,
{
    /// Page `page` (0-based), through the cache.
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn fetch_page(&self, page: u64) -> Result<Vec<Q::Row>, DbErr> {
        self.scope.run(self.page(page).all(self.db)).await
    }
}

impl<Q: Counted + QuerySelect> Paginator<'_, Q, Cached> {
    /// The number of rows, through the cache.
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn num_items(&self) -> Result<u64, DbErr> {
        let r = self.page(0);
        let all = Routed::<Q, Cached> {
            select: self.routed.select.clone(),
            ..r
        };
        self.scope.run(all.count(self.db)).await
    }
    /// The number of pages.
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn num_pages(&self) -> Result<u64, DbErr> {
        Ok(self.num_items().await?.div_ceil(self.page_size))
    }
}
