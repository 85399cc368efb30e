//! [`DbTransaction`]: a transaction on the primary that remembers what it
//! wrote and invalidates it at commit (nothing on rollback).

use crate::classify::{self, ALL_TAG, Access, Tag};
use crate::conn::Db;
use crate::scope;
use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, ExecResult, IsolationLevel,
    QueryResult, Statement, StatementBuilder, TransactionError, TransactionOptions,
    TransactionSession, TransactionTrait,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use tracing::Instrument;

/// A transaction opened on a [`Db`]: always on the primary. Nested
/// transactions (savepoints) share their root's record of written tables.
pub struct DbTransaction {
    inner: DatabaseTransaction,
    db: Db,
    /// Tables written so far; shared with nested transactions.
    written: Arc<Mutex<Vec<Tag>>>,
    /// A schema statement ran in it (or a nested one): at commit, the foreign
    /// keys are read again before the written tables are invalidated.
    schema: Arc<AtomicBool>,
    root: bool,
}

impl std::fmt::Debug for DbTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbTransaction")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl DbTransaction {
    /// Records what `access` writes; the span of the statement.
    fn note(&self, access: &Access) -> tracing::Span {
        let span = tracing::debug_span!(
            "seaway.statement",
            alias = crate::DEFAULT,
            reason = "transaction"
        );
        if !access.is_write() {
            self.db.count_read_in_transaction();
            return span;
        }
        self.db.count_write();
        if access.schema {
            self.schema
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        scope::with_current(|s| s.mark_wrote());
        if let Ok(mut w) = self.written.lock() {
            if access.tables.is_empty() {
                w.push(Tag::Borrowed(ALL_TAG));
            }
            for t in &access.tables {
                if !w.contains(t) {
                    w.push(t.clone());
                }
            }
        }
        span
    }

    fn nested(&self, inner: DatabaseTransaction) -> Self {
        Self {
            inner,
            db: self.db.clone(),
            written: self.written.clone(),
            schema: self.schema.clone(),
            root: false,
        }
    }
}

impl Db {
    fn wrap(&self, inner: DatabaseTransaction) -> DbTransaction {
        DbTransaction {
            inner,
            db: self.clone(),
            written: Arc::default(),
            schema: Arc::default(),
            root: true,
        }
    }
}

#[async_trait::async_trait]
impl TransactionSession for DbTransaction {
    async fn commit(self) -> Result<(), DbErr> {
        self.inner.commit().await?;
        if self.root {
            let tables = self
                .written
                .lock()
                .map(|mut w| std::mem::take(&mut *w))
                .unwrap_or_default();
            if self.schema.load(std::sync::atomic::Ordering::Relaxed) {
                self.db.schema_changed();
            }
            if !tables.is_empty() {
                self.db.after_write(&tables).await;
            }
        }
        Ok(())
    }

    async fn rollback(self) -> Result<(), DbErr> {
        self.inner.rollback().await
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for DbTransaction {
    fn get_database_backend(&self) -> DbBackend {
        self.inner.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        let span = self.note(&classify::classify_sql(&stmt.sql));
        self.inner.execute_raw(stmt).instrument(span).await
    }

    async fn execute<S: StatementBuilder>(&self, stmt: &S) -> Result<ExecResult, DbErr> {
        let built = self.get_database_backend().build(stmt);
        let span = self.note(&classify::classify_builder(stmt, &built));
        self.inner.execute_raw(built).instrument(span).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        let span = self.note(&classify::classify_sql(sql));
        self.inner.execute_unprepared(sql).instrument(span).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        let span = self.note(&classify::classify_sql(&stmt.sql));
        self.inner.query_one_raw(stmt).instrument(span).await
    }

    async fn query_one<S: StatementBuilder>(&self, stmt: &S) -> Result<Option<QueryResult>, DbErr> {
        let built = self.get_database_backend().build(stmt);
        let span = self.note(&classify::classify_builder(stmt, &built));
        self.inner.query_one_raw(built).instrument(span).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let span = self.note(&classify::classify_sql(&stmt.sql));
        self.inner.query_all_raw(stmt).instrument(span).await
    }

    async fn query_all<S: StatementBuilder>(&self, stmt: &S) -> Result<Vec<QueryResult>, DbErr> {
        let built = self.get_database_backend().build(stmt);
        let span = self.note(&classify::classify_builder(stmt, &built));
        self.inner.query_all_raw(built).instrument(span).await
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
        Ok(self.wrap(self.primary().begin().await?))
    }

    async fn begin_with_config(
        &self,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<DbTransaction, DbErr> {
        Ok(self.wrap(
            self.primary()
                .begin_with_config(isolation_level, access_mode)
                .await?,
        ))
    }

    async fn begin_with_options(
        &self,
        options: TransactionOptions,
    ) -> Result<DbTransaction, DbErr> {
        Ok(self.wrap(self.primary().begin_with_options(options).await?))
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
