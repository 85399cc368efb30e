//! The tables the database changes by itself when another is written: a
//! foreign key with `ON DELETE` or `ON UPDATE` `CASCADE`, `SET NULL` or
//! `SET DEFAULT` changes the referencing table's rows. Deleting a profile
//! deletes its stories and follows, so a write to `profiles` invalidates
//! `stories` and `follows` too (and, transitively, whatever references them).
//!
//! The foreign keys are read from the catalog (`pg_constraint`, or SQLite's
//! `pragma_foreign_key_list`) when the `Db` connects, again before the
//! invalidation of a schema statement that went through it (in a transaction:
//! at commit), and in the background at the first write a minute or more
//! after the last reading (for migrations another process ran; that write
//! still uses the previous reading). Triggers are not followed: what a
//! trigger writes still needs `db.invalidate(..)`.

use crate::classify::Tag;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How old a reading of the foreign keys may get before a write reads them again.
const REFRESH: Duration = Duration::from_secs(60);

/// Parent table -> every table a write to it can change (transitively).
type Map = HashMap<String, Vec<Tag>>;

/// The foreign keys' cascades, as last read from the catalog.
#[derive(Default)]
pub(crate) struct Cascades {
    map: RwLock<Arc<Map>>,
    /// A schema statement ran since the last reading.
    stale: AtomicBool,
    /// When the map was last read (`None`: never).
    read_at: Mutex<Option<Instant>>,
    /// A reading in the background is under way.
    reading: AtomicBool,
}

impl Cascades {
    /// A schema statement ran: read the foreign keys again before the next
    /// invalidation.
    pub(crate) fn mark_stale(&self) {
        self.stale.store(true, Relaxed);
    }

    /// The tables a committed write to `tables` may have changed with them
    /// (`None`: no more than `tables`). After a schema statement the catalog
    /// is read first; when the last reading is a minute old, it is read again
    /// in the background and this write uses the previous one.
    pub(crate) async fn written_with(
        self: &Arc<Self>,
        conn: &DatabaseConnection,
        tables: &[Tag],
    ) -> Option<Vec<Tag>> {
        if self.stale.load(Relaxed) {
            self.refresh(conn).await;
        } else if self.is_old() && !self.reading.swap(true, Relaxed) {
            let (me, conn) = (self.clone(), conn.clone());
            tokio::spawn(async move {
                me.refresh(&conn).await;
                me.reading.store(false, Relaxed);
            });
        }
        self.expand(tables)
    }

    /// Whether the last reading is a minute old (or there was none).
    fn is_old(&self) -> bool {
        self.read_at
            .lock()
            .map(|t| t.is_none_or(|t| t.elapsed() > REFRESH))
            .unwrap_or(true)
    }

    /// Reads the foreign keys from `conn`'s catalog. On an error the previous
    /// map stays, and the catalog is read again a minute later (not at every
    /// write: a catalog that cannot be read must not cost each write a query).
    pub(crate) async fn refresh(&self, conn: &DatabaseConnection) {
        self.stale.store(false, Relaxed);
        match read(conn).await {
            Ok(edges) => {
                if let Ok(mut m) = self.map.write() {
                    *m = Arc::new(closure(&edges));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read foreign keys; cascades are not followed until they can be read");
            }
        }
        if let Ok(mut t) = self.read_at.lock() {
            *t = Some(Instant::now());
        }
    }

    /// `tables` with every table the database may have changed with them, or
    /// `None` when there is none to add (and for "everything", the empty list).
    fn expand(&self, tables: &[Tag]) -> Option<Vec<Tag>> {
        let map = self.map.read().ok()?.clone();
        if map.is_empty() {
            return None;
        }
        let mut out: Option<Vec<Tag>> = None;
        for t in tables {
            for child in map.get(t.as_ref()).into_iter().flatten() {
                if !out.as_deref().unwrap_or(tables).contains(child) {
                    out.get_or_insert_with(|| tables.to_vec())
                        .push(child.clone());
                }
            }
        }
        out
    }
}

/// (parent, child) for every foreign key whose action changes the child's rows.
async fn read(conn: &DatabaseConnection) -> Result<Vec<(String, String)>, sea_orm::DbErr> {
    let backend = conn.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT p.relname::text AS parent, c.relname::text AS child \
             FROM pg_constraint k \
             JOIN pg_class c ON c.oid = k.conrelid \
             JOIN pg_class p ON p.oid = k.confrelid \
             WHERE k.contype = 'f' \
               AND (k.confdeltype IN ('c', 'n', 'd') OR k.confupdtype IN ('c', 'n', 'd'))"
        }
        DbBackend::Sqlite => {
            "SELECT f.\"table\" AS parent, m.name AS child \
             FROM sqlite_master m, pragma_foreign_key_list(m.name) f \
             WHERE m.type = 'table' \
               AND (upper(f.on_delete) IN ('CASCADE', 'SET NULL', 'SET DEFAULT') \
                 OR upper(f.on_update) IN ('CASCADE', 'SET NULL', 'SET DEFAULT'))"
        }
        _ => return Ok(Vec::new()),
    };
    let rows = conn
        .query_all_raw(Statement::from_string(backend, sql))
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("", "parent")?, r.try_get("", "child")?)))
        .collect()
}

/// For each parent, every table reachable through `edges` (itself excluded).
fn closure(edges: &[(String, String)]) -> Map {
    let mut direct: HashMap<&str, Vec<&str>> = HashMap::new();
    for (p, c) in edges {
        direct.entry(p).or_default().push(c);
    }
    let mut map = Map::new();
    for &parent in direct.keys() {
        let mut seen: HashSet<&str> = HashSet::from([parent]);
        let mut todo = vec![parent];
        let mut reached = Vec::new();
        while let Some(t) = todo.pop() {
            for &c in direct.get(t).into_iter().flatten() {
                if seen.insert(c) {
                    reached.push(Tag::Owned(c.to_owned()));
                    todo.push(c);
                }
            }
        }
        if !reached.is_empty() {
            map.insert(parent.to_owned(), reached);
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cascades(edges: &[(&str, &str)]) -> Cascades {
        let c = Cascades::default();
        let edges: Vec<(String, String)> = edges
            .iter()
            .map(|(p, c)| ((*p).to_owned(), (*c).to_owned()))
            .collect();
        *c.map.write().expect("map") = Arc::new(closure(&edges));
        c
    }

    fn tags(v: &[&'static str]) -> Vec<Tag> {
        v.iter().map(|t| Tag::Borrowed(t)).collect()
    }

    #[test]
    fn a_write_reaches_every_table_its_cascades_change() {
        // profiles <- stories <- comments; profiles <- follows (twice);
        // a cycle a <-> b
        let c = cascades(&[
            ("profiles", "stories"),
            ("stories", "comments"),
            ("profiles", "follows"),
            ("profiles", "follows"),
            ("a", "b"),
            ("b", "a"),
        ]);
        let mut got = c.expand(&tags(&["profiles"])).expect("expanded");
        got.sort();
        assert_eq!(got, tags(&["comments", "follows", "profiles", "stories"]));
        assert_eq!(
            c.expand(&tags(&["stories"])),
            Some(tags(&["stories", "comments"]))
        );
        let mut cycle = c.expand(&tags(&["a"])).expect("expanded");
        cycle.sort();
        assert_eq!(cycle, tags(&["a", "b"]));
        // already listed: nothing to add
        assert_eq!(c.expand(&tags(&["stories", "comments"])), None);
    }

    #[test]
    fn tables_without_cascades_and_everything_stay_as_they_are() {
        let c = cascades(&[("profiles", "stories")]);
        assert_eq!(c.expand(&tags(&["comments"])), None);
        assert_eq!(c.expand(&[]), None);
        assert_eq!(Cascades::default().expand(&tags(&["profiles"])), None);
    }

    #[tokio::test]
    async fn sqlite_foreign_keys_are_read() {
        let conn = sea_orm::Database::connect("sqlite::memory:")
            .await
            .expect("sqlite");
        conn.execute_unprepared(
            "CREATE TABLE p (id INTEGER PRIMARY KEY); \
             CREATE TABLE c (id INTEGER PRIMARY KEY, p_id INTEGER REFERENCES p (id) ON DELETE CASCADE); \
             CREATE TABLE s (id INTEGER PRIMARY KEY, p_id INTEGER REFERENCES p (id) ON UPDATE SET NULL); \
             CREATE TABLE plain (id INTEGER PRIMARY KEY, p_id INTEGER REFERENCES p (id))",
        )
        .await
        .expect("schema");
        let mut edges = read(&conn).await.expect("read");
        edges.sort();
        assert_eq!(
            edges,
            [
                ("p".to_owned(), "c".to_owned()),
                ("p".to_owned(), "s".to_owned())
            ]
        );
    }
}
