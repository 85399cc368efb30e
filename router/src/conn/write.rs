//! The write path: writes go to the router's write alias (the primary by
//! default) and make the scope sticky; once committed (or when the outcome
//! is ambiguous) the primary's position is read and the tags the write moved
//! are invalidated, in a task of its own so that a cancelled request still
//! completes it; tokens are issued and checked.

use super::Db;
use crate::classify::write::{Outcome, Shape, moved};
use crate::classify::{Access, Kind};
use crate::lsn::Lsn;
use crate::replica::query_lsn;
use crate::router::Hints;
use crate::scope::{self, Scope};
use crate::stats::bump;
use crate::tag::{Level, Moved, TagId};
use crate::token::TokenError;
use sea_orm::{DatabaseConnection, DbBackend, DbErr, QueryResult, Value};
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// How long a write waits for the primary's position after it.
const LSN_TIMEOUT: Duration = Duration::from_secs(1);

/// A write whose statement was sent but whose future was dropped before
/// it answered: it may have committed, so what it may have moved is
/// invalidated (in a task: the request is gone).
struct Unfinished<'a, 'b> {
    db: &'a Db,
    stmt: Option<&'a Statement<'b>>,
}

impl Drop for Unfinished<'_, '_> {
    fn drop(&mut self) {
        let Some(stmt) = self.stmt else { return };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let tags = self.db.moved_by::<sea_orm::ExecResult>(stmt, None);
        let db = self.db.clone();
        tracing::debug!("a write was dropped before it answered: invalidating as if it committed");
        rt.spawn(async move { db.after_write(tags).await });
    }
}

/// What a write returned, for the rows it touched.
pub(crate) trait Written {
    /// The rows it returned (`RETURNING`), if it ran as a query.
    fn rows(&self) -> Option<&[QueryResult]> {
        None
    }
    /// SQLite's rowid of an insert.
    fn last_insert_id(&self) -> Option<u64> {
        None
    }
}

impl Written for sea_orm::ExecResult {
    fn last_insert_id(&self) -> Option<u64> {
        Some(sea_orm::ExecResult::last_insert_id(self))
    }
}

impl Written for Vec<QueryResult> {
    fn rows(&self) -> Option<&[QueryResult]> {
        Some(self)
    }
}

impl Written for Option<QueryResult> {
    fn rows(&self) -> Option<&[QueryResult]> {
        Some(self.as_slice())
    }
}

/// A statement as the write path sees it.
pub(crate) struct Statement<'a> {
    pub(crate) access: &'a Access,
    pub(crate) shape: Option<&'a Shape>,
    pub(crate) values: &'a [Value],
}

/// The refusal of a write in a `prevent_writes` scope.
pub(crate) fn writes_prevented() -> DbErr {
    DbErr::Custom(
        "write refused: this scope prevents writes (Db::prevent_writes or a read-only handle)"
            .into(),
    )
}

/// The refusal of a session statement outside a transaction.
pub(crate) fn session_refused() -> DbErr {
    DbErr::Custom(
        "session statement refused: SET, PREPARE, LISTEN, temporary tables and session-level advisory locks (pg_advisory_lock, .._unlock) change the pooled connection they run on, which the next request would get; run them inside a transaction (db.begin()), or use pg_advisory_xact_lock".into(),
    )
}

impl Db {
    /// The connection writes of `tables` go to (the router's write alias).
    pub(crate) fn write_conn(&self, tables: &[String]) -> DatabaseConnection {
        let s = &self.shared;
        let hints = Hints::write(tables);
        match s.router.db_for_write(&hints) {
            Some(a) if a != crate::DEFAULT => s
                .aliases
                .iter()
                .find(|(n, _)| &**n == a)
                .map(|(_, c)| c.clone())
                .unwrap_or_else(|| s.primary.clone()),
            _ => s.primary.clone(),
        }
    }

    /// The tags a committed write moved, with the catalog as now read.
    pub(crate) fn moved_by<W: Written>(
        &self,
        stmt: &Statement<'_>,
        result: Option<&W>,
    ) -> Vec<Moved> {
        let schema = self.shared.catalog.schema();
        let returned = match (stmt.shape, result.and_then(|r| r.rows())) {
            (Some(shape), Some(rows)) if shape.returning => schema
                .pk(&shape.table)
                .filter(|p| p.trackable)
                .and_then(|pk| crate::classify::write::returned_keys(rows, &pk.columns)),
            _ => None,
        };
        let outcome = Outcome {
            returned,
            last_insert_id: if self.shared.backend == DbBackend::Sqlite {
                result.and_then(|r| r.last_insert_id())
            } else {
                None
            },
        };
        moved(
            stmt.shape,
            &stmt.access.tables,
            stmt.values,
            &schema,
            outcome,
        )
    }

    /// Runs one statement that needs the primary: a write (sticky,
    /// invalidating after), or a statement that changes no rows (a locking
    /// read, a sequence call, an advisory lock), which moves nothing.
    pub(crate) async fn run_write<W, F, Fut>(
        &self,
        stmt: Statement<'_>,
        exec: F,
    ) -> Result<W, DbErr>
    where
        W: Written,
        F: FnOnce(DatabaseConnection) -> Fut,
        Fut: Future<Output = Result<W, DbErr>>,
    {
        let s = &self.shared;
        if stmt.access.kind == Kind::Primary {
            // changes no rows: the primary, no sticky flag, no invalidation
            let span =
                tracing::debug_span!("seaway.statement", alias = "default", reason = "locking");
            let v = tracing::Instrument::instrument(self.bounded(exec(s.primary.clone())), span)
                .await?;
            bump(&s.counters.primary_reads, "seaway_primary_reads_total");
            scope::with_current(|st| {
                st.record(
                    crate::scope::Route::Primary,
                    crate::scope::CacheOutcome::Bypass,
                )
            });
            return Ok(v);
        }
        if self.writes_refused() {
            return Err(writes_prevented());
        }
        let conn = self.write_conn(&stmt.access.tables);
        scope::with_current(|st| st.mark_wrote());
        bump(&s.counters.writes, "seaway_writes_total");
        let span = tracing::debug_span!("seaway.statement", alias = "default", reason = "write", tables = ?stmt.access.tables);
        // Dropped mid-statement (the client went away, a timeout), the write
        // may still commit: the guard invalidates as for an unknown outcome.
        let mut guard = Unfinished {
            db: self,
            stmt: Some(&stmt),
        };
        let result = tracing::Instrument::instrument(exec(conn), span).await;
        guard.stmt = None;
        match &result {
            Ok(w) => {
                if stmt.access.schema {
                    s.catalog.mark_stale();
                }
                let tags = self.moved_by(&stmt, Some(w));
                self.after_write(tags).await;
            }
            // the write may have committed before the connection broke
            Err(e) if super::is_connection_error(e) => {
                let tags = self.moved_by::<sea_orm::ExecResult>(&stmt, None);
                self.after_write(tags).await;
            }
            Err(_) => {}
        }
        result
    }

    /// The primary's position after a write (SQLite: the write counter), or
    /// `None` when it cannot be read.
    pub(crate) async fn write_lsn(&self) -> Option<Lsn> {
        let s = &self.shared;
        match s.backend {
            DbBackend::Postgres => {
                match tokio::time::timeout(LSN_TIMEOUT, query_lsn(&s.primary)).await {
                    Ok(Ok(lsn)) => {
                        s.replicas.primary_lsn.fetch_max(lsn.0, Relaxed);
                        Some(lsn)
                    }
                    _ => None,
                }
            }
            _ => Some(Lsn(s.sqlite_lsn.fetch_add(1, Relaxed) + 1)),
        }
    }

    /// After a committed write (or one whose outcome is unknown): the scope
    /// must see it, and every instance forgets what it moved. Runs in a task
    /// of its own: dropping the request's future does not stop it.
    pub(crate) async fn after_write(&self, tags: Vec<Moved>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let db = self.clone();
        tokio::spawn(async move {
            let s = &db.shared;
            if s.catalog.is_stale() {
                s.catalog.refresh(&s.primary).await;
            } else {
                s.catalog.refresh_if_old(&s.primary);
            }
            let (lsn, known) = match db.write_lsn().await {
                Some(l) => (l, true),
                None => {
                    tracing::warn!(
                        "cannot read the primary's LSN after a write: the scope reads the primary, and its token says so"
                    );
                    (db.known_lsn(), false)
                }
            };
            let g = s.cache.invalidate_local(&tags, lsn);
            let _ = tx.send((lsn, known));
            s.cache.announce(&tags, lsn, g).await;
            if !known {
                // once the position can be read (it is past the write),
                // invalidate again: a fill from a replica between the write
                // and its reading cannot stay
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if let Some(lsn) = db.write_lsn().await {
                        let g = s.cache.invalidate_local(&tags, lsn);
                        s.cache.announce(&tags, lsn, g).await;
                        break;
                    }
                    if std::sync::Arc::strong_count(&db.shared) == 1 {
                        break;
                    }
                }
            }
        });
        if let Ok((lsn, known)) = rx.await {
            scope::with_current(|st| {
                st.require_lsn(lsn);
                if !known {
                    st.set_token_primary();
                }
            });
        }
    }

    /// Invalidates cached results of `tables` on every instance (for writes
    /// this library did not see: triggers, other services, psql).
    pub async fn invalidate(&self, tables: &[&str]) {
        let mut tags = vec![Moved::new(TagId::ANY_WRITE, Level::Table)];
        tags.extend(
            tables
                .iter()
                .map(|t| Moved::new(TagId::table(t), Level::Table)),
        );
        self.after_write(tags).await;
    }

    /// The consistency token for what `state`'s scope wrote, if it wrote.
    pub fn token_for(&self, state: &scope::ScopeState) -> Option<String> {
        state.wrote().then(|| {
            self.shared
                .tokens
                .issue(state.min_lsn(), state.token_primary())
        })
    }

    /// A scope for a request that sent `token`, or why it is refused: not
    /// issued by this service (its signature), issued for another database
    /// cluster, or ahead of the primary's position after one re-read.
    ///
    /// # Errors
    ///
    /// [`TokenError`], for a 400.
    pub async fn verify_token(&self, token: &str) -> Result<Scope, TokenError> {
        let v = self.shared.tokens.verify(token)?;
        if v.lsn > self.known_lsn() && !self.reread_ahead(v.lsn).await {
            return Err(TokenError::Ahead);
        }
        let scope = Scope::with_min_lsn(v.lsn);
        if v.primary {
            scope.state().set_token_primary();
        }
        Ok(scope)
    }

    /// Whether the primary has reached `lsn`, reading its position once
    /// (one reading at a time: many tokens ahead cost one query).
    async fn reread_ahead(&self, lsn: Lsn) -> bool {
        if self.shared.backend != DbBackend::Postgres {
            return false;
        }
        let _one = self.shared.reread.lock().await;
        if lsn <= self.known_lsn() {
            return true;
        }
        if let Ok(Ok(now)) =
            tokio::time::timeout(LSN_TIMEOUT, query_lsn(&self.shared.primary)).await
        {
            self.shared.replicas.primary_lsn.fetch_max(now.0, Relaxed);
        }
        lsn <= self.known_lsn()
    }
}
