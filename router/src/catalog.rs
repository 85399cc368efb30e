//! What the database's catalog says that invalidation needs: each table's
//! primary key (to name the rows a write touched), and the foreign keys whose
//! actions change other tables (`ON DELETE`/`ON UPDATE` `CASCADE`, `SET NULL`,
//! `SET DEFAULT`: deleting a profile deletes its stories and follows).
//!
//! Read from `pg_index`/`pg_constraint` (PostgreSQL) or `pragma_table_info`/
//! `pragma_foreign_key_list` (SQLite) when the `Db` connects, again before the
//! invalidation of a schema statement that went through it (in a
//! transaction: at commit), and in the background at the first write a minute
//! or more after the last reading (for migrations another process ran; that
//! write still uses the previous reading). Triggers are not followed: what a
//! trigger writes still needs `db.invalidate(..)`.

use crate::tag::{Level, Moved, TagId};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How old a reading may get before a write reads the catalog again.
const REFRESH: Duration = Duration::from_secs(60);

/// A table's primary key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pk {
    /// Its columns, in key order.
    pub(crate) columns: Vec<String>,
    /// Whether every column has a type whose values have one canonical text
    /// (integers, text, UUIDs): only then are rows tracked one by one.
    pub(crate) trackable: bool,
}

/// A foreign key whose action changes `child` when its parent is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Edge {
    pub(crate) child: String,
    /// `ON DELETE` changes the child's rows.
    pub(crate) on_delete: bool,
    /// `ON UPDATE` changes the child's rows (when a referenced column is set).
    pub(crate) on_update: bool,
    /// The parent's referenced columns.
    pub(crate) referenced: Vec<String>,
}

/// One reading of the catalog.
#[derive(Clone, Debug, Default)]
pub(crate) struct Schema {
    pub(crate) pks: HashMap<String, Pk>,
    /// Parent table -> edges to the tables its writes can change.
    pub(crate) edges: HashMap<String, Vec<Edge>>,
}

/// How a write changed a table, as far as its cascades care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change<'a> {
    /// Rows were deleted.
    Delete,
    /// Rows were updated, setting these columns.
    Update(&'a [String]),
    /// Unknown: every action may have fired.
    Any,
}

impl Schema {
    /// The primary key of `table`, if the catalog knows one.
    pub(crate) fn pk(&self, table: &str) -> Option<&Pk> {
        self.pks.get(table)
    }

    /// The `Table` tags of every table the database itself may have changed
    /// when `table` was changed so (transitively: a cascaded change is of
    /// unknown rows, so it follows every action of the child's own keys).
    pub(crate) fn cascades(&self, table: &str, change: Change<'_>, out: &mut Vec<Moved>) {
        let mut seen: HashSet<&str> = HashSet::from([table]);
        let mut todo: Vec<(&str, Change<'_>)> = vec![(table, change)];
        while let Some((t, ch)) = todo.pop() {
            for e in self.edges.get(t).into_iter().flatten() {
                let fires = match ch {
                    Change::Delete => e.on_delete,
                    Change::Update(cols) => {
                        e.on_update && e.referenced.iter().any(|r| cols.contains(r))
                    }
                    Change::Any => e.on_delete || e.on_update,
                };
                if fires && seen.insert(e.child.as_str()) {
                    out.push(Moved::new(TagId::table(&e.child), Level::Table));
                    todo.push((e.child.as_str(), Change::Any));
                }
            }
        }
    }
}

/// The catalog as last read, and when to read it again.
#[derive(Default)]
pub(crate) struct Catalog {
    schema: RwLock<Arc<Schema>>,
    /// A schema statement ran since the last reading.
    stale: AtomicBool,
    /// When it was last read (`None`: never).
    read_at: Mutex<Option<Instant>>,
    /// A reading in the background is under way.
    reading: AtomicBool,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").finish_non_exhaustive()
    }
}

impl Catalog {
    /// The current reading.
    pub(crate) fn schema(&self) -> Arc<Schema> {
        self.schema.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// A schema statement ran: read the catalog again before the next
    /// invalidation.
    pub(crate) fn mark_stale(&self) {
        self.stale.store(true, Relaxed);
    }

    /// Whether a schema statement ran since the last reading.
    pub(crate) fn is_stale(&self) -> bool {
        self.stale.load(Relaxed)
    }

    /// Reads the catalog again in the background when the last reading is
    /// a minute old.
    pub(crate) fn refresh_if_old(self: &Arc<Self>, conn: &DatabaseConnection) {
        if self.is_old() && !self.reading.swap(true, Relaxed) {
            let (me, conn) = (self.clone(), conn.clone());
            tokio::spawn(async move {
                me.refresh(&conn).await;
                me.reading.store(false, Relaxed);
            });
        }
    }

    fn is_old(&self) -> bool {
        self.read_at
            .lock()
            .map(|t| t.is_none_or(|t| t.elapsed() > REFRESH))
            .unwrap_or(true)
    }

    /// Reads the catalog from `conn`. On an error the previous reading stays,
    /// and the catalog is read again a minute later (not at every write: a
    /// catalog that cannot be read must not cost each write a query).
    pub(crate) async fn refresh(&self, conn: &DatabaseConnection) {
        self.stale.store(false, Relaxed);
        match read(conn).await {
            Ok(schema) => {
                if let Ok(mut s) = self.schema.write() {
                    *s = Arc::new(schema);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the catalog; writes are invalidated by table until it can be read");
            }
        }
        if let Ok(mut t) = self.read_at.lock() {
            *t = Some(Instant::now());
        }
    }
}

/// Types whose values have one canonical text in `tag::key_text`, in the
/// catalog's own spelling.
fn trackable_type(backend: DbBackend, ty: &str) -> bool {
    let ty = ty.to_ascii_lowercase();
    match backend {
        DbBackend::Postgres => matches!(
            ty.as_str(),
            "smallint" | "integer" | "bigint" | "text" | "character varying"
        ),
        // SQLite: an INTEGER PRIMARY KEY is the rowid; TEXT keys as text
        _ => {
            ty.contains("int") || ty.contains("char") || ty.contains("text") || ty.contains("clob")
        }
    }
}

async fn rows(
    conn: &DatabaseConnection,
    sql: &str,
) -> Result<Vec<sea_orm::QueryResult>, sea_orm::DbErr> {
    let backend = conn.get_database_backend();
    conn.query_all_raw(Statement::from_string(backend, sql))
        .await
}

async fn read(conn: &DatabaseConnection) -> Result<Schema, sea_orm::DbErr> {
    let backend = conn.get_database_backend();
    let (pk_sql, fk_sql) = match backend {
        DbBackend::Postgres => (
            "SELECT c.relname::text AS tbl, a.attname::text AS col, \
                    format_type(a.atttypid, NULL) AS typ \
             FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indrelid \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY (i.indkey) \
             WHERE i.indisprimary AND pg_table_is_visible(c.oid) \
             ORDER BY 1, array_position(i.indkey::int2[], a.attnum)",
            "SELECT p.relname::text AS parent, c.relname::text AS child, \
                    k.confdeltype IN ('c', 'n', 'd') AS on_delete, \
                    k.confupdtype IN ('c', 'n', 'd') AS on_update, \
                    (SELECT string_agg(a.attname::text, ',') FROM pg_attribute a \
                      WHERE a.attrelid = k.confrelid AND a.attnum = ANY (k.confkey)) AS referenced \
             FROM pg_constraint k \
             JOIN pg_class c ON c.oid = k.conrelid \
             JOIN pg_class p ON p.oid = k.confrelid \
             WHERE k.contype = 'f' AND pg_table_is_visible(c.oid) \
               AND (k.confdeltype IN ('c', 'n', 'd') OR k.confupdtype IN ('c', 'n', 'd'))",
        ),
        DbBackend::Sqlite => (
            "SELECT m.name AS tbl, p.name AS col, p.type AS typ \
             FROM sqlite_master m, pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND p.pk > 0 ORDER BY m.name, p.pk",
            // `to` is NULL when the key references the parent's primary key
            "SELECT f.\"table\" AS parent, m.name AS child, \
                    upper(f.on_delete) IN ('CASCADE', 'SET NULL', 'SET DEFAULT') AS on_delete, \
                    upper(f.on_update) IN ('CASCADE', 'SET NULL', 'SET DEFAULT') AS on_update, \
                    coalesce(f.\"to\", '') AS referenced \
             FROM sqlite_master m, pragma_foreign_key_list(m.name) f \
             WHERE m.type = 'table' \
               AND (upper(f.on_delete) IN ('CASCADE', 'SET NULL', 'SET DEFAULT') \
                 OR upper(f.on_update) IN ('CASCADE', 'SET NULL', 'SET DEFAULT'))",
        ),
        _ => return Ok(Schema::default()),
    };
    let mut schema = Schema::default();
    for r in rows(conn, pk_sql).await? {
        let table: String = r.try_get("", "tbl")?;
        let col: String = r.try_get("", "col")?;
        let ty: String = r.try_get("", "typ")?;
        let pk = schema.pks.entry(table).or_insert(Pk {
            columns: Vec::new(),
            trackable: true,
        });
        pk.trackable &= trackable_type(backend, &ty);
        pk.columns.push(col);
    }
    for r in rows(conn, fk_sql).await? {
        let parent: String = r.try_get("", "parent")?;
        let child: String = r.try_get("", "child")?;
        let on_delete: bool = r.try_get("", "on_delete")?;
        let on_update: bool = r.try_get("", "on_update")?;
        let referenced: Option<String> = r.try_get("", "referenced")?;
        let mut referenced: Vec<String> = referenced
            .unwrap_or_default()
            .split(',')
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect();
        if referenced.is_empty() {
            referenced = schema
                .pks
                .get(&parent)
                .map(|p| p.columns.clone())
                .unwrap_or_default();
        }
        let edges = schema.edges.entry(parent).or_default();
        match edges.iter_mut().find(|e| e.child == child) {
            // several keys to one child (follows has two): one edge that
            // fires when any of them would
            Some(e) => {
                e.on_delete |= on_delete;
                e.on_update |= on_update;
                for c in referenced {
                    if !e.referenced.contains(&c) {
                        e.referenced.push(c);
                    }
                }
            }
            None => edges.push(Edge {
                child,
                on_delete,
                on_update,
                referenced,
            }),
        }
    }
    Ok(schema)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(child: &str, on_delete: bool, on_update: bool, referenced: &[&str]) -> Edge {
        Edge {
            child: child.into(),
            on_delete,
            on_update,
            referenced: referenced.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn schema() -> Schema {
        // profiles <- stories <- comments (delete); profiles <- follows (delete
        // and update of id); a <-> b (a cycle)
        let mut s = Schema::default();
        s.edges.insert(
            "profiles".into(),
            vec![
                edge("stories", true, false, &["id"]),
                edge("follows", true, true, &["id"]),
            ],
        );
        s.edges.insert(
            "stories".into(),
            vec![edge("comments", true, false, &["id"])],
        );
        s.edges
            .insert("a".into(), vec![edge("b", true, true, &["id"])]);
        s.edges
            .insert("b".into(), vec![edge("a", true, true, &["id"])]);
        s
    }

    fn tables(s: &Schema, t: &str, change: Change<'_>) -> Vec<TagId> {
        let mut out = Vec::new();
        s.cascades(t, change, &mut out);
        let mut ids: Vec<TagId> = out.into_iter().map(|m| m.id).collect();
        ids.sort();
        ids
    }

    fn ids(names: &[&str]) -> Vec<TagId> {
        let mut v: Vec<TagId> = names.iter().map(|n| TagId::table(n)).collect();
        v.sort();
        v
    }

    #[test]
    fn a_delete_reaches_every_table_its_delete_actions_change() {
        let s = schema();
        assert_eq!(
            tables(&s, "profiles", Change::Delete),
            ids(&["stories", "follows", "comments"])
        );
        assert_eq!(tables(&s, "stories", Change::Delete), ids(&["comments"]));
        assert_eq!(tables(&s, "a", Change::Delete), ids(&["b"]), "a cycle ends");
    }

    #[test]
    fn an_update_cascades_only_when_it_sets_a_referenced_column() {
        let s = schema();
        let name = ["display_name".to_owned()];
        let id = ["id".to_owned()];
        assert_eq!(tables(&s, "profiles", Change::Update(&name)), ids(&[]));
        // follows has ON UPDATE CASCADE; the cascaded change is of unknown
        // rows, so it goes on along follows' own keys (none here)
        assert_eq!(
            tables(&s, "profiles", Change::Update(&id)),
            ids(&["follows"])
        );
        assert_eq!(
            tables(&s, "profiles", Change::Any),
            ids(&["stories", "follows", "comments"])
        );
    }

    #[tokio::test]
    async fn sqlite_keys_are_read() {
        let conn = sea_orm::Database::connect("sqlite::memory:")
            .await
            .expect("sqlite");
        conn.execute_unprepared(
            "CREATE TABLE p (id INTEGER PRIMARY KEY, name TEXT); \
             CREATE TABLE c (id INTEGER PRIMARY KEY, p_id INTEGER REFERENCES p (id) ON DELETE CASCADE); \
             CREATE TABLE s (id INTEGER PRIMARY KEY, p_id INTEGER REFERENCES p ON UPDATE SET NULL); \
             CREATE TABLE plain (id INTEGER PRIMARY KEY, p_id INTEGER REFERENCES p (id)); \
             CREATE TABLE two (a TEXT, b INTEGER, x REAL, PRIMARY KEY (a, b)); \
             CREATE TABLE odd (k REAL PRIMARY KEY)",
        )
        .await
        .expect("schema");
        let s = read(&conn).await.expect("read");
        assert_eq!(
            s.pk("two"),
            Some(&Pk {
                columns: vec!["a".into(), "b".into()],
                trackable: true
            })
        );
        assert!(
            !s.pk("odd").expect("odd").trackable,
            "REAL keys are not tracked by row"
        );
        let mut children: Vec<&str> = s.edges["p"].iter().map(|e| e.child.as_str()).collect();
        children.sort();
        assert_eq!(children, ["c", "s"]);
        let s_edge = s.edges["p"].iter().find(|e| e.child == "s").expect("s");
        assert_eq!(
            s_edge.referenced,
            ["id"],
            "an implicit reference is the parent's key"
        );
        assert!(s_edge.on_update && !s_edge.on_delete);
    }
}
