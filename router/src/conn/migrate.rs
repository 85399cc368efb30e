//! Migrations through a [`Db`]: on the primary, refused on a replica or
//! where the router's `allow_migrate` says no, and invalidating what they
//! changed.
//!
//! * [`Db::migrate`] runs a closure on the primary, then reads the catalog
//!   again and invalidates every cached entry: exact, whatever the closure did.
//! * `Migrator::up(&db, None)` (SeaORM's own call) works too: `&Db` turns
//!   into a connection to the primary that reports each statement it runs;
//!   a write or schema statement invalidates its tables at once, and again a
//!   second after the migration's last statement (its transaction has
//!   committed by then). A refused target is a closed pool: the migration
//!   fails (`ConnectionAcquire`) before it sends anything, and the reason
//!   is logged; [`Db::migrate`] returns the reason itself.

use super::{Db, Shared};
use crate::classify;
use crate::router::DEFAULT;
use crate::tag::{Level, Moved, TagId};
use sea_orm::{DatabaseConnection, DatabaseExecutor, DbErr, IntoDatabaseExecutor};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// Tags written by a migration's statements, invalidated again once they stop.
#[derive(Default)]
struct Written {
    tags: Vec<Moved>,
    /// A statement since the last sweep.
    fresh: bool,
    /// The sweeper runs.
    sweeping: bool,
}

/// The migration connection: the primary's pool, reporting each statement.
pub(super) fn connection(primary: &DatabaseConnection, db: Weak<Shared>) -> DatabaseConnection {
    let mut c = primary.clone();
    let written: Arc<Mutex<Written>> = Arc::default();
    c.set_metric_callback(move |info| {
        if info.failed {
            return;
        }
        let access = classify::classify_sql(&info.statement.sql);
        if !access.is_write() {
            return;
        }
        let Some(shared) = db.upgrade() else { return };
        if access.schema {
            shared.catalog.mark_stale();
        }
        let mut tags = vec![Moved::new(TagId::ANY_WRITE, Level::Table)];
        if access.tables.is_empty() || access.unbounded {
            tags.push(Moved::new(TagId::ALL, Level::Table));
        }
        tags.extend(
            access
                .tables
                .iter()
                .map(|t| Moved::new(TagId::table(t), Level::Table)),
        );
        let start_sweeper = match written.lock() {
            Ok(mut w) => {
                w.tags.extend(tags.iter().copied());
                w.fresh = true;
                !std::mem::replace(&mut w.sweeping, true)
            }
            Err(_) => false,
        };
        let db = Db {
            shared,
            read_only: false,
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let db2 = db.clone();
        rt.spawn(async move { db2.after_write(tags).await });
        if start_sweeper {
            let written = written.clone();
            rt.spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let tags = match written.lock() {
                        Ok(mut w) if !w.fresh => {
                            w.sweeping = false;
                            std::mem::take(&mut w.tags)
                        }
                        Ok(mut w) => {
                            w.fresh = false;
                            continue;
                        }
                        Err(_) => return,
                    };
                    db.after_write(tags).await;
                    return;
                }
            });
        }
    });
    c
}

/// Why a migration is refused, one message per reason.
pub(super) const REFUSALS: [&str; 3] = [
    "refusing to migrate: the primary is a server in recovery (a read replica); migrations run on the primary",
    "refusing to migrate: the router's allow_migrate(\"default\") says no",
    "refusing to migrate: this handle is read-only",
];

/// Why a migration may not run here (an index into [`REFUSALS`]).
fn refusal(db: &Db) -> Option<usize> {
    let s = &db.shared;
    if s.primary_in_recovery {
        return Some(0);
    }
    if s.router.allow_migrate(DEFAULT) == Some(false) {
        return Some(1);
    }
    if db.read_only {
        return Some(2);
    }
    None
}

/// A connection that can run nothing: a pool for the same backend, closed
/// before anything used it. SeaORM's migrator can build its statements
/// (the backend is known), and the first one fails to acquire a connection,
/// before anything is sent anywhere; the reason is logged.
async fn closed_pool(backend: sea_orm::DbBackend) -> DatabaseConnection {
    match backend {
        #[cfg(feature = "postgres")]
        sea_orm::DbBackend::Postgres => {
            let pool = sea_orm::sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect_lazy_with(sea_orm::sqlx::postgres::PgConnectOptions::new_without_pgpass());
            pool.close().await;
            sea_orm::SqlxPostgresConnector::from_sqlx_postgres_pool(pool)
        }
        #[cfg(feature = "sqlite")]
        sea_orm::DbBackend::Sqlite => {
            let pool = sea_orm::sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect_lazy_with(sea_orm::sqlx::sqlite::SqliteConnectOptions::new());
            pool.close().await;
            sea_orm::SqlxSqliteConnector::from_sqlx_sqlite_pool(pool)
        }
        #[allow(unreachable_patterns)]
        _ => DatabaseConnection::default(),
    }
}

/// One refusing connection per reason (they are the same closed pool: the
/// reason is in the log and in [`Db::migrate`]'s error).
pub(super) async fn refused_connections(backend: sea_orm::DbBackend) -> Vec<DatabaseConnection> {
    let c = closed_pool(backend).await;
    REFUSALS.iter().map(|_| c.clone()).collect()
}

impl Db {
    /// Runs migrations (`f`, given the primary's connection) where they
    /// belong: never on a replica, never where the router's
    /// `allow_migrate("default")` says no; then reads the catalog again
    /// and invalidates every cached entry on every instance.
    ///
    /// ```no_run
    /// # async fn demo(db: seaway::Db) -> Result<(), sea_orm::DbErr> {
    /// # struct Migrator;
    /// # impl Migrator { async fn up(_: &sea_orm::DatabaseConnection, _: Option<u32>) -> Result<(), sea_orm::DbErr> { Ok(()) } }
    /// db.migrate(async |primary| Migrator::up(primary, None).await).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// The refusal, or the migration's error.
    pub async fn migrate<T>(
        &self,
        f: impl AsyncFnOnce(&DatabaseConnection) -> Result<T, DbErr>,
    ) -> Result<T, DbErr> {
        if let Some(why) = refusal(self) {
            return Err(DbErr::Migration(REFUSALS[why].to_owned()));
        }
        let result = f(&self.shared.primary).await;
        self.shared.catalog.mark_stale();
        self.after_write(vec![
            Moved::new(TagId::ANY_WRITE, Level::Table),
            Moved::new(TagId::ALL, Level::Table),
        ])
        .await;
        result
    }
}

impl<'c> IntoDatabaseExecutor<'c> for &'c Db {
    fn into_database_executor(self) -> DatabaseExecutor<'c> {
        match refusal(self) {
            Some(why) => {
                tracing::error!("{}", REFUSALS[why]);
                DatabaseExecutor::Connection(&self.shared.refused[why])
            }
            None => DatabaseExecutor::Connection(&self.shared.migrations),
        }
    }
}
