//! [`DbTransaction`]: a transaction on the primary (or the router's write
//! alias) that remembers what its writes moved and invalidates it at commit,
//! also when the commit's outcome is unknown (nothing on rollback).

use crate::classify::{self, Access, Kind, write};
use crate::conn::Db;
use crate::conn::write::{Statement as Stmt, Written, writes_prevented};
use crate::route::{Target, Using, Why};
use crate::scope;
use crate::tag::Moved;
use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, ExecResult, IsolationLevel,
    QueryResult, SqliteTransactionMode, Statement, StatementBuilder, TransactionError,
    TransactionOptions, TransactionSession, TransactionTrait,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tracing::Instrument;

/// A transaction opened on a [`Db`]. Nested transactions (savepoints)
/// share their root's record of what was written.
///
/// A cached read inside a transaction bypasses the cache and reads the
/// transaction. `commit` and `rollback` are inherent methods: no trait
/// needs to be in scope.
pub struct DbTransaction {
    inner: DatabaseTransaction,
    db: Db,
    /// Tags moved so far; shared with nested transactions.
    moved: Arc<Mutex<Vec<Moved>>>,
    /// A schema statement ran in it (or a nested one).
    schema: Arc<std::sync::atomic::AtomicBool>,
    root: bool,
    /// Opened by `begin_read_only`: writes are refused before they are sent.
    read_only: bool,
}

impl std::fmt::Debug for DbTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbTransaction")
            .field("root", &self.root)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

impl DbTransaction {
    fn check(&self, access: &Access) -> Result<(), DbErr> {
        if access.is_write() && (self.read_only || self.db.writes_refused()) {
            return Err(writes_prevented());
        }
        Ok(())
    }

    /// Runs `stmt` in the transaction, recording what a write moved.
    async fn run<W, Fut>(
        &self,
        access: Access,
        shape: Option<write::Shape>,
        stmt: &Statement,
        fut: Fut,
    ) -> Result<W, DbErr>
    where
        W: Written,
        Fut: Future<Output = Result<W, DbErr>>,
    {
        self.check(&access)?;
        let span = tracing::debug_span!(
            "seaway.statement",
            alias = crate::DEFAULT,
            reason = Why::Transaction.as_str()
        );
        if access.kind != Kind::Write {
            self.db.count_read_in_transaction();
            return fut.instrument(span).await;
        }
        self.db.count_write();
        scope::with_current(|s| s.mark_wrote());
        let result = fut.instrument(span).await;
        let values = stmt.values.as_ref().map_or(&[][..], |v| &v.0[..]);
        let w = Stmt {
            access: &access,
            shape: shape.as_ref(),
            values,
        };
        // a failed statement may still have written (a broken connection):
        // count it, the commit decides
        let tags = match &result {
            Ok(r) => self.db.moved_by(&w, Some(r)),
            Err(_) => self.db.moved_by::<ExecResult>(&w, None),
        };
        if access.schema {
            self.schema
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        if let Ok(mut m) = self.moved.lock() {
            m.extend(tags);
        }
        result
    }

    fn typed(&self, stmt: &Statement) -> (Access, Option<write::Shape>) {
        let access = classify::classify_typed(&stmt.sql);
        let shape = access
            .is_write()
            .then(|| write::shape(self.inner.get_database_backend(), &stmt.sql))
            .flatten();
        (access, shape)
    }

    fn nested(&self, inner: DatabaseTransaction) -> Self {
        Self {
            inner,
            db: self.db.clone(),
            moved: self.moved.clone(),
            schema: self.schema.clone(),
            root: false,
            read_only: self.read_only,
        }
    }

    /// Commits; a root transaction then invalidates what its writes moved
    /// (also when the commit's outcome is unknown: a broken connection).
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn commit(self) -> Result<(), DbErr> {
        // dropped while COMMIT is on its way, it may still commit: the guard
        // invalidates what the transaction moved, as for an unknown outcome
        let mut guard = self.root.then(|| CommitGuard {
            db: self.db.clone(),
            moved: self.moved.clone(),
        });
        let result = self.inner.commit().await;
        if let Some(g) = guard.as_mut() {
            g.moved = Arc::default();
        }
        let committed_or_unknown = match &result {
            Ok(()) => true,
            Err(e) => crate::is_connection_error(e),
        };
        if self.root && committed_or_unknown {
            let tags = self
                .moved
                .lock()
                .map(|mut w| std::mem::take(&mut *w))
                .unwrap_or_default();
            if self.schema.load(std::sync::atomic::Ordering::Relaxed) {
                self.db.schema_changed();
            }
            if !tags.is_empty() {
                self.db.after_write(tags).await;
            }
        }
        result
    }

    /// Rolls back; nothing is invalidated.
    ///
    /// # Errors
    ///
    /// The database's.
    pub async fn rollback(self) -> Result<(), DbErr> {
        self.inner.rollback().await
    }
}

/// What a transaction moved, invalidated if its commit is dropped before
/// it answers.
struct CommitGuard {
    db: Db,
    moved: Arc<Mutex<Vec<Moved>>>,
}

impl Drop for CommitGuard {
    fn drop(&mut self) {
        let tags = self
            .moved
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default();
        if tags.is_empty() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let db = self.db.clone();
            rt.spawn(async move { db.after_write(tags).await });
        }
    }
}

impl Db {
    fn wrap(&self, inner: DatabaseTransaction, read_only: bool) -> DbTransaction {
        DbTransaction {
            inner,
            db: self.clone(),
            moved: Arc::default(),
            schema: Arc::default(),
            root: true,
            read_only,
        }
    }

    /// Opens a read-only, repeatable-read transaction on one replica (the
    /// primary when none is usable): several reads from one snapshot. Writes
    /// in it are refused before they are sent.
    ///
    /// # Errors
    ///
    /// The database's, when the transaction cannot begin.
    pub async fn begin_read_only(&self) -> Result<DbTransaction, DbErr> {
        let hints = crate::router::Hints::new(&[]);
        let (target, why) = self.decide(&Using::Replica, &hints);
        let (iso, mode) = if self.backend() == DbBackend::Postgres {
            (
                Some(IsolationLevel::RepeatableRead),
                Some(AccessMode::ReadOnly),
            )
        } else {
            (None, None)
        };
        let (txn, _, _) = self
            .run_on(&Using::Replica, target, why, |c| async move {
                c.begin_with_config(iso, mode).await
            })
            .await?;
        if target == Target::Primary {
            let _ = why;
        }
        Ok(self.wrap(txn, true))
    }

    /// Runs `callback` in a transaction (on the router's write alias),
    /// committing on `Ok` and rolling back on `Err`, as SeaORM's
    /// `transaction_async`: the closure is an async closure.
    ///
    /// ```no_run
    /// # async fn demo(db: seaway::Db) -> Result<(), sea_orm::TransactionError<sea_orm::DbErr>> {
    /// use sea_orm::ConnectionTrait;
    /// db.transaction_async(async |txn| {
    ///     txn.execute_unprepared("UPDATE stories SET featured = false").await?;
    ///     Ok::<_, sea_orm::DbErr>(())
    /// })
    /// .await
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// The callback's, or the database's.
    pub async fn transaction_async<F, T, E>(&self, callback: F) -> Result<T, TransactionError<E>>
    where
        F: for<'c> AsyncFnOnce(&'c DbTransaction) -> Result<T, E> + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        let txn = TransactionTrait::begin(self)
            .await
            .map_err(TransactionError::Connection)?;
        match callback(&txn).await {
            Ok(v) => {
                txn.commit().await.map_err(TransactionError::Connection)?;
                Ok(v)
            }
            Err(e) => {
                txn.rollback().await.map_err(TransactionError::Connection)?;
                Err(TransactionError::Transaction(e))
            }
        }
    }

    /// The connection a transaction begins on: the router's write alias.
    fn txn_conn(&self) -> sea_orm::DatabaseConnection {
        self.write_conn(&[])
    }
}

#[async_trait::async_trait]
impl TransactionSession for DbTransaction {
    async fn commit(self) -> Result<(), DbErr> {
        DbTransaction::commit(self).await
    }

    async fn rollback(self) -> Result<(), DbErr> {
        DbTransaction::rollback(self).await
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for DbTransaction {
    fn get_database_backend(&self) -> DbBackend {
        self.inner.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        let access = classify::classify_sql(&stmt.sql);
        self.run(access, None, &stmt, self.inner.execute_raw(stmt.clone()))
            .await
    }

    async fn execute<S: StatementBuilder>(&self, stmt: &S) -> Result<ExecResult, DbErr> {
        let built = self.get_database_backend().build(stmt);
        let (access, shape) = self.typed(&built);
        self.run(access, shape, &built, self.inner.execute_raw(built.clone()))
            .await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        let stmt = Statement::from_string(self.get_database_backend(), sql);
        let access = classify::classify_sql(sql);
        self.run(access, None, &stmt, self.inner.execute_unprepared(sql))
            .await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        let access = classify::classify_sql(&stmt.sql);
        self.run(access, None, &stmt, self.inner.query_one_raw(stmt.clone()))
            .await
    }

    async fn query_one<S: StatementBuilder>(&self, stmt: &S) -> Result<Option<QueryResult>, DbErr> {
        let built = self.get_database_backend().build(stmt);
        let (access, shape) = self.typed(&built);
        self.run(
            access,
            shape,
            &built,
            self.inner.query_one_raw(built.clone()),
        )
        .await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let access = classify::classify_sql(&stmt.sql);
        self.run(access, None, &stmt, self.inner.query_all_raw(stmt.clone()))
            .await
    }

    async fn query_all<S: StatementBuilder>(&self, stmt: &S) -> Result<Vec<QueryResult>, DbErr> {
        let built = self.get_database_backend().build(stmt);
        let (access, shape) = self.typed(&built);
        self.run(
            access,
            shape,
            &built,
            self.inner.query_all_raw(built.clone()),
        )
        .await
    }
}

/// Runs `callback` in `txn`, then commits on `Ok` and rolls back on `Err`.
async fn run<F, T, E>(txn: DbTransaction, callback: F) -> Result<T, TransactionError<E>>
where
    F: for<'c> FnOnce(&'c DbTransaction) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
        + Send,
    T: Send,
    E: std::fmt::Display + std::fmt::Debug + Send,
{
    let result = callback(&txn).await;
    match result {
        Ok(v) => {
            txn.commit().await.map_err(TransactionError::Connection)?;
            Ok(v)
        }
        Err(e) => {
            txn.rollback().await.map_err(TransactionError::Connection)?;
            Err(TransactionError::Transaction(e))
        }
    }
}

#[async_trait::async_trait]
impl TransactionTrait for DbTransaction {
    type Transaction = DbTransaction;

    async fn begin(&self) -> Result<DbTransaction, DbErr> {
        Ok(self.nested(self.inner.begin().await?))
    }

    async fn begin_with_config(
        &self,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<DbTransaction, DbErr> {
        Ok(self.nested(
            self.inner
                .begin_with_config(isolation_level, access_mode)
                .await?,
        ))
    }

    async fn begin_with_options(
        &self,
        options: TransactionOptions,
    ) -> Result<DbTransaction, DbErr> {
        Ok(self.nested(self.inner.begin_with_options(options).await?))
    }

    async fn transaction<F, T, E>(&self, callback: F) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c DbTransaction,
            ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
            + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        self.transaction_with_config(callback, None, None).await
    }

    async fn transaction_with_config<F, T, E>(
        &self,
        callback: F,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c DbTransaction,
            ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
            + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        let txn = self
            .begin_with_config(isolation_level, access_mode)
            .await
            .map_err(TransactionError::Connection)?;
        run(txn, callback).await
    }
}

#[async_trait::async_trait]
impl TransactionTrait for Db {
    type Transaction = DbTransaction;

    async fn begin(&self) -> Result<DbTransaction, DbErr> {
        self.begin_with_options(TransactionOptions::default()).await
    }

    async fn begin_with_config(
        &self,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<DbTransaction, DbErr> {
        self.begin_with_options(TransactionOptions {
            isolation_level,
            access_mode,
            sqlite_transaction_mode: None,
        })
        .await
    }

    /// On SQLite a transaction that may write begins `IMMEDIATE` unless
    /// `options` say otherwise: it takes the write lock at `BEGIN`, waiting
    /// (the busy timeout) for another writer, instead of failing with
    /// "database is locked" when its first write finds the snapshot it read
    /// from already overtaken.
    async fn begin_with_options(
        &self,
        mut options: TransactionOptions,
    ) -> Result<DbTransaction, DbErr> {
        let read_only = options.access_mode == Some(AccessMode::ReadOnly) || self.is_read_only();
        let conn = self.txn_conn();
        if conn.get_database_backend() == DbBackend::Sqlite && !read_only {
            options
                .sqlite_transaction_mode
                .get_or_insert(SqliteTransactionMode::Immediate);
        }
        Ok(self.wrap(conn.begin_with_options(options).await?, read_only))
    }

    async fn transaction<F, T, E>(&self, callback: F) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c DbTransaction,
            ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
            + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        self.transaction_with_config(callback, None, None).await
    }

    async fn transaction_with_config<F, T, E>(
        &self,
        callback: F,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c DbTransaction,
            ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
            + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        let txn = self
            .begin_with_config(isolation_level, access_mode)
            .await
            .map_err(TransactionError::Connection)?;
        run(txn, callback).await
    }
}
