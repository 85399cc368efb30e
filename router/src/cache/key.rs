//! The key of a cached query.

use super::FORMAT_VERSION;
use std::hash::{Hash, Hasher};

/// The key of a query: the namespace (database identity and alias), the
/// result kind, the backend, SQL and bound values, hashed (xxh3-128).
///
/// SeaQuery renders the statement into a per-thread buffer that is reused
/// (so working out the key of an L1 hit allocates nothing), and the buffer is
/// hashed once: hashing piece by piece as SeaQuery writes costs more than
/// rendering.
pub(crate) fn key_of(
    ns: u64,
    kind: &str,
    backend: sea_orm::DbBackend,
    stmt: &sea_orm::sea_query::SelectStatement,
) -> u128 {
    use sea_orm::sea_query::{MysqlQueryBuilder, PostgresQueryBuilder, SqliteQueryBuilder};
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let render = |buf: &mut Vec<u8>| {
        buf.clear();
        let mut w = KeyWriter(buf);
        FORMAT_VERSION.hash(&mut w);
        ns.hash(&mut w);
        kind.hash(&mut w);
        (backend as u8).hash(&mut w);
        match backend {
            sea_orm::DbBackend::Postgres => {
                stmt.build_collect_any_into(&PostgresQueryBuilder, &mut w)
            }
            sea_orm::DbBackend::Sqlite => stmt.build_collect_any_into(&SqliteQueryBuilder, &mut w),
            // MySQL, and any backend added later (its byte is in the key too)
            _ => stmt.build_collect_any_into(&MysqlQueryBuilder, &mut w),
        }
        let key = xxhash_rust::xxh3::xxh3_128(buf);
        // keep a buffer of a usual size, not the largest ever rendered
        if buf.capacity() > 64 << 10 {
            *buf = Vec::new();
        }
        key
    };
    BUF.try_with(|b| match b.try_borrow_mut() {
        Ok(mut buf) => render(&mut buf),
        Err(_) => render(&mut Vec::new()),
    })
    .unwrap_or_else(|_| render(&mut Vec::new()))
}

/// A SeaQuery `SqlWriter` (and a `Hasher`, for bound values) that appends
/// everything it is given to a byte buffer, which is then hashed once.
struct KeyWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for KeyWriter<'_> {
    #[inline]
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
    // SeaQuery writes an owned identifier a char at a time (SeaORM's column
    // references carry the table's name as one). `#[inline]` lets SeaQuery's
    // loop, compiled in another codegen unit, inline this push.
    #[inline]
    fn write_char(&mut self, c: char) -> std::fmt::Result {
        if c.is_ascii() {
            self.0.push(c as u8);
        } else {
            self.0
                .extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        }
        Ok(())
    }
}

impl Hasher for KeyWriter<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
    fn finish(&self) -> u64 {
        0 // never asked: the buffer is hashed by `key_of`
    }
}

/// Required by `SqlWriter`; a key has no text.
impl std::fmt::Display for KeyWriter<'_> {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Ok(())
    }
}

impl sea_orm::sea_query::SqlWriter for KeyWriter<'_> {
    fn push_param<T: sea_orm::sea_query::QueryBuilder>(
        &mut self,
        value: sea_orm::sea_query::Value,
        _: &T,
    ) {
        // 0xFF never occurs in UTF-8 text: a value cannot pass for SQL.
        self.0.push(0xFF);
        value.hash(self);
    }

    fn as_writer(&mut self) -> &mut dyn std::fmt::Write {
        self
    }
}

/// The key of a raw statement (its SQL text and values).
pub(crate) fn key_of_raw(ns: u64, kind: &str, stmt: &sea_orm::Statement) -> u128 {
    let mut buf = Vec::with_capacity(stmt.sql.len() + 64);
    let mut w = KeyWriter(&mut buf);
    FORMAT_VERSION.hash(&mut w);
    ns.hash(&mut w);
    kind.hash(&mut w);
    (stmt.db_backend as u8).hash(&mut w);
    w.0.push(0xFE);
    w.0.extend_from_slice(stmt.sql.as_bytes());
    if let Some(values) = &stmt.values {
        for v in &values.0 {
            w.0.push(0xFF);
            v.hash(&mut w);
        }
    }
    xxhash_rust::xxh3::xxh3_128(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::DbBackend;

    #[test]
    fn keys_differ_by_sql_values_backend_and_kind() {
        use sea_orm::sea_query::{Expr, ExprTrait, Query, SelectStatement};
        let q = |table: &'static str, v: sea_orm::Value| -> SelectStatement {
            Query::select()
                .column("id")
                .from(table)
                .and_where(Expr::col("id").eq(v))
                .to_owned()
        };
        let a = q("t", 1i64.into());
        let keys = [
            key_of(7, "all", DbBackend::Postgres, &a),
            key_of(7, "all", DbBackend::Postgres, &q("t", 2i64.into())),
            key_of(7, "all", DbBackend::Postgres, &q("t", "1".into())),
            key_of(7, "all", DbBackend::Postgres, &q("u", 1i64.into())),
            key_of(7, "all", DbBackend::Sqlite, &a),
            key_of(7, "count", DbBackend::Postgres, &a),
            // the same text, inlined instead of bound
            key_of(
                7,
                "all",
                DbBackend::Postgres,
                &Query::select()
                    .column("id")
                    .from("t")
                    .and_where(Expr::cust("\"id\" = 1"))
                    .to_owned(),
            ),
        ];
        for i in 0..keys.len() {
            for j in i + 1..keys.len() {
                assert_ne!(keys[i], keys[j], "{i} vs {j}");
            }
        }
        assert_eq!(
            key_of(7, "all", DbBackend::Postgres, &a),
            key_of(7, "all", DbBackend::Postgres, &a.clone())
        );
    }

    #[test]
    fn namespaces_separate_keys() {
        use sea_orm::sea_query::Query;
        let q = Query::select().column("id").from("t").to_owned();
        assert_ne!(
            key_of(1, "all", DbBackend::Postgres, &q),
            key_of(2, "all", DbBackend::Postgres, &q)
        );
    }
}
