//! What a cached read depends on, and what a write changed, named at four
//! levels per table, plus one tag for "everything".
//!
//! | tag | moved by | a read depends on it when |
//! |---|---|---|
//! | `Row(t, key)` | an insert, update or delete of that row | it returned the row, or looked it up by key |
//! | `Column(t, c)` | an update that sets `c` (any row) | it filters, orders, groups, joins or aggregates on `c` (or returns `c` without the rows' keys) |
//! | `Updates(t)` | any update of `t` | it uses `t` in a way that cannot be told column by column (custom SQL) |
//! | `Members(t)` | any insert or delete | it is not a lookup by key |
//! | `Table(t)` | raw SQL, a foreign-key cascade, a write whose rows are unknown, `Db::invalidate` | always |
//! | `All` | a write whose tables are unknown | always |
//! | `AnyWrite` | every write | it is raw SQL, or custom SQL that may read other tables |
//!
//! A tag is hashed to a [`TagId`]: two tags that collide share versions,
//! which can only invalidate more, never less.

use std::fmt::Write as _;

/// The level of a tag, for the invalidation counters of `/stats`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Level {
    /// One row.
    Row,
    /// One column, or every column (`Updates`).
    Column,
    /// The table's membership.
    Membership,
    /// The whole table, or everything.
    Table,
}

/// A tag's identity: a 64-bit hash of its kind, table and parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct TagId(pub(crate) u64);

impl TagId {
    /// The tag every entry depends on.
    pub(crate) const ALL: TagId = TagId(0x5ea_a11);
    /// Moved by every write: what a read that cannot be analyzed (raw SQL)
    /// depends on.
    pub(crate) const ANY_WRITE: TagId = TagId(0x5ea_a111);

    fn of(kind: u8, table: &str, part: &[&str]) -> Self {
        // kind, table and each part separated by bytes that cannot occur in
        // UTF-8 text, so ("ab", "c") and ("a", "bc") never hash alike
        let mut buf =
            Vec::with_capacity(16 + table.len() + part.iter().map(|p| p.len() + 1).sum::<usize>());
        buf.push(kind);
        buf.extend_from_slice(table.as_bytes());
        for p in part {
            buf.push(0xFF);
            buf.extend_from_slice(p.as_bytes());
        }
        TagId(xxhash_rust::xxh3::xxh3_64(&buf))
    }

    /// Every read of `table` depends on this; raw SQL and cascades move it.
    pub(crate) fn table(table: &str) -> Self {
        Self::of(b'T', table, &[])
    }
    /// Moved by any insert or delete of `table`.
    pub(crate) fn members(table: &str) -> Self {
        Self::of(b'M', table, &[])
    }
    /// Moved by any update of `table`.
    pub(crate) fn updates(table: &str) -> Self {
        Self::of(b'U', table, &[])
    }
    /// Moved by an update that sets `column` of `table`.
    pub(crate) fn column(table: &str, column: &str) -> Self {
        Self::of(b'C', table, &[column])
    }
    /// Moved by any write of the row of `table` whose primary key is `key`
    /// (one canonical text per key column, see [`key_text`]).
    pub(crate) fn row(table: &str, key: &[String]) -> Self {
        let parts: Vec<&str> = key.iter().map(String::as_str).collect();
        Self::of(b'R', table, &parts)
    }

    /// Hex form, in Redis keys and invalidation messages.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn hex(self) -> String {
        let mut s = String::with_capacity(16);
        let _ = write!(s, "{:016x}", self.0);
        s
    }
}

/// A tag with its level, as a write names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Moved {
    pub(crate) id: TagId,
    pub(crate) level: Level,
}

impl Moved {
    pub(crate) fn new(id: TagId, level: Level) -> Self {
        Self { id, level }
    }
}

/// The canonical text of a primary-key value, the same whether it comes
/// from a bound parameter, a model's field or a `RETURNING` column: integers
/// in decimal, text as it is, UUIDs hyphenated. `None` for any other type
/// (such keys are not tracked by row: their writes move the table).
pub(crate) fn key_text(v: &sea_orm::Value) -> Option<String> {
    use sea_orm::Value as V;
    Some(match v {
        V::TinyInt(Some(n)) => n.to_string(),
        V::SmallInt(Some(n)) => n.to_string(),
        V::Int(Some(n)) => n.to_string(),
        V::BigInt(Some(n)) => n.to_string(),
        V::TinyUnsigned(Some(n)) => n.to_string(),
        V::SmallUnsigned(Some(n)) => n.to_string(),
        V::Unsigned(Some(n)) => n.to_string(),
        V::BigUnsigned(Some(n)) => n.to_string(),
        V::String(Some(s)) => s.to_string(),
        V::Char(Some(c)) => c.to_string(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_of_different_kinds_parts_and_tables_differ() {
        let k = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let ids = [
            TagId::table("stories"),
            TagId::members("stories"),
            TagId::updates("stories"),
            TagId::column("stories", "title"),
            TagId::column("stories", "body"),
            TagId::column("profiles", "title"),
            TagId::row("stories", &k(&["1"])),
            TagId::row("stories", &k(&["11"])),
            TagId::row("stories", &k(&["1", "1"])),
            TagId::row("storie", &k(&["s1"])),
            TagId::row("profiles", &k(&["1"])),
            TagId::ALL,
        ];
        for i in 0..ids.len() {
            for j in i + 1..ids.len() {
                assert_ne!(ids[i], ids[j], "{i} vs {j}");
            }
        }
        assert_eq!(
            TagId::row("stories", &k(&["1"])),
            TagId::row("stories", &k(&["1"]))
        );
    }

    #[test]
    fn key_text_is_the_same_for_every_integer_width() {
        use sea_orm::Value as V;
        for v in [
            V::Int(Some(42)),
            V::BigInt(Some(42)),
            V::BigUnsigned(Some(42)),
            V::SmallInt(Some(42)),
        ] {
            assert_eq!(key_text(&v).as_deref(), Some("42"));
        }
        assert_eq!(
            key_text(&V::String(Some("a b".into()))).as_deref(),
            Some("a b")
        );
        assert_eq!(key_text(&V::BigInt(None)), None);
        assert_eq!(key_text(&V::Double(Some(1.0))), None);
    }
}
