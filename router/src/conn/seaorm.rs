//! SeaORM's `ConnectionTrait` on [`Db`]: every statement is classified and
//! sent down the read pipeline or the write path.

use super::Db;
use super::write::{Statement as Stmt, session_refused};
use crate::classify::{self, Access, Kind, write};
use crate::route::Using;
use crate::router::Hints;
use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, ExecResult, QueryResult, Statement, StatementBuilder, Value,
};

fn values(stmt: &Statement) -> &[Value] {
    stmt.values.as_ref().map_or(&[], |v| &v.0[..])
}

impl Db {
    /// Routes a raw statement, classified from its text.
    async fn route_raw<W, F, Fut>(&self, stmt: Statement, run: F) -> Result<W, DbErr>
    where
        W: super::write::Written,
        F: Fn(sea_orm::DatabaseConnection, Statement) -> Fut,
        Fut: Future<Output = Result<W, DbErr>>,
    {
        let access = classify::classify_sql(&stmt.sql);
        self.route(access, None, stmt, run).await
    }

    /// Routes a SeaQuery-built statement, rendered as `stmt`. A plain
    /// `SELECT` is a read at once (its tables are worked out only if the
    /// router asks); a write's rows and columns are read from SeaQuery's
    /// rendering.
    async fn route_typed<W, F, Fut>(&self, stmt: Statement, run: F) -> Result<W, DbErr>
    where
        W: super::write::Written,
        F: Fn(sea_orm::DatabaseConnection, Statement) -> Fut,
        Fut: Future<Output = Result<W, DbErr>>,
    {
        if classify::is_plain_select(&stmt.sql) {
            let sql = stmt.sql.clone();
            let tables = move || classify::read_tables(&sql);
            let hints = Hints::lazy(&tables);
            return self
                .read(&Using::Auto, &hints, |c| run(c, stmt.clone()))
                .await;
        }
        let access = classify::classify_typed(&stmt.sql);
        let shape = if access.is_write() {
            write::shape(self.backend(), &stmt.sql)
        } else {
            None
        };
        self.route(access, shape, stmt, run).await
    }

    async fn route<W, F, Fut>(
        &self,
        access: Access,
        shape: Option<write::Shape>,
        stmt: Statement,
        run: F,
    ) -> Result<W, DbErr>
    where
        W: super::write::Written,
        F: Fn(sea_orm::DatabaseConnection, Statement) -> Fut,
        Fut: Future<Output = Result<W, DbErr>>,
    {
        if access.session {
            return Err(session_refused());
        }
        if access.kind == Kind::Read {
            let hints = Hints::new(&access.tables);
            return self
                .read(&Using::Auto, &hints, |c| run(c, stmt.clone()))
                .await;
        }
        let vals = values(&stmt).to_vec();
        let w = Stmt {
            access: &access,
            shape: shape.as_ref(),
            values: &vals,
        };
        self.run_write(w, |c| run(c, stmt)).await
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Db {
    fn get_database_backend(&self) -> DbBackend {
        self.shared.backend
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.route_raw(stmt, |c, st| async move { c.execute_raw(st).await })
            .await
    }

    async fn execute<S: StatementBuilder>(&self, stmt: &S) -> Result<ExecResult, DbErr> {
        let built = self.shared.backend.build(stmt);
        self.route_typed(built, |c, st| async move { c.execute_raw(st).await })
            .await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        let stmt = Statement::from_string(self.shared.backend, sql);
        self.route_raw(
            stmt,
            |c, st| async move { c.execute_unprepared(&st.sql).await },
        )
        .await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.route_raw(stmt, |c, st| async move { c.query_one_raw(st).await })
            .await
    }

    async fn query_one<S: StatementBuilder>(&self, stmt: &S) -> Result<Option<QueryResult>, DbErr> {
        let built = self.shared.backend.build(stmt);
        self.route_typed(built, |c, st| async move { c.query_one_raw(st).await })
            .await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.route_raw(stmt, |c, st| async move { c.query_all_raw(st).await })
            .await
    }

    async fn query_all<S: StatementBuilder>(&self, stmt: &S) -> Result<Vec<QueryResult>, DbErr> {
        let built = self.shared.backend.build(stmt);
        self.route_typed(built, |c, st| async move { c.query_all_raw(st).await })
            .await
    }
}

#[cfg(feature = "stream")]
impl sea_orm::StreamTrait for Db {
    type Stream<'a> = sea_orm::QueryStream;

    fn get_database_backend(&self) -> DbBackend {
        self.shared.backend
    }

    /// A read streams from where the read pipeline sends it (a replica
    /// unless the scope says otherwise); anything else is refused: a write
    /// runs with `execute` or `query_all`, which invalidate what it changed.
    fn stream_raw<'a>(
        &'a self,
        stmt: Statement,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Self::Stream<'a>, DbErr>> + 'a + Send>> {
        Box::pin(async move {
            let access = classify::classify_sql(&stmt.sql);
            if access.kind != Kind::Read {
                return Err(DbErr::Custom(
                    "only reads stream through a Db: run writes and locking reads with execute or query_all".into(),
                ));
            }
            let hints = Hints::new(&access.tables);
            self.read(&Using::Auto, &hints, |c| {
                let stmt = stmt.clone();
                async move { sea_orm::StreamTrait::stream_raw(&c, stmt).await }
            })
            .await
        })
    }
}

/// `SchemaBuilder::sync(&db)`: the schema is read on the primary (what sync
/// compares with must be current), and the DDL it then runs goes through
/// `Db` like any other: on the primary, invalidating its tables.
#[cfg(feature = "schema-sync")]
#[async_trait::async_trait]
impl sea_schema::Connection for Db {
    async fn query_all(
        &self,
        select: sea_orm::sea_query::SelectStatement,
    ) -> Result<Vec<sea_schema::sqlx_types::SqlxRow>, sea_schema::sqlx_types::SqlxError> {
        <sea_orm::DatabaseConnection as sea_schema::Connection>::query_all(
            &self.shared.primary,
            select,
        )
        .await
    }

    async fn query_all_raw(
        &self,
        sql: String,
    ) -> Result<Vec<sea_schema::sqlx_types::SqlxRow>, sea_schema::sqlx_types::SqlxError> {
        <sea_orm::DatabaseConnection as sea_schema::Connection>::query_all_raw(
            &self.shared.primary,
            sql,
        )
        .await
    }
}
