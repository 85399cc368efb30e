//! What a SeaQuery-built write changed: its table, the columns an `UPDATE`
//! sets, and the rows it touched, as far as they can be known soundly.
//!
//! SeaORM hands a `Db` a write as SeaQuery's rendered text and bound
//! values (its `StatementBuilder` exposes nothing else). That text has a
//! fixed form: quoted identifiers, one `$N` (or `?`) per value, clauses in
//! one order. [`shape`] recognizes exactly the forms SeaQuery renders for
//! `INSERT .. VALUES`, `UPDATE .. SET .. WHERE` and `DELETE .. WHERE`, and
//! returns `None` for anything else, which is then invalidated by table.
//!
//! Rows are known
//! * for an `INSERT`, from the values of the key columns, or from the rows
//!   of its `RETURNING` clause;
//! * for an `UPDATE` or `DELETE`, from a `WHERE` that is a conjunction fixing
//!   every key column (`key = $N`, or `key IN ($1, $2, ..)` for a one-column
//!   key): other terms can only narrow the rows, so the keys are a sound
//!   superset; or from the rows of its `RETURNING` clause.
//!
//! Otherwise (a filter on other columns, executed without `RETURNING`) the
//! write moves the whole table: exact, but it empties every cached read of
//! the table. `exec_with_returning` names the rows and keeps the rest.

use super::lex::{Token, ident, name_at, tokenize};
use crate::catalog::{Change, Schema};
use crate::tag::{Level, Moved, TagId, key_text};
use sea_orm::{DbBackend, QueryResult, Value};

/// What `ON CONFLICT` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Conflict {
    /// No `ON CONFLICT`.
    None,
    /// `DO NOTHING`.
    Nothing,
    /// `DO UPDATE SET` these columns.
    Update(Vec<String>),
}

/// A recognized write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// `INSERT INTO t (columns) VALUES (..), ..`: per row, per column, the
    /// index of the bound value (`None`: not a plain parameter).
    Insert {
        columns: Vec<String>,
        rows: Vec<Vec<Option<usize>>>,
        conflict: Conflict,
    },
    /// `UPDATE t SET set.. WHERE ..`.
    Update {
        set: Vec<String>,
        keys: Vec<(String, Vec<usize>)>,
    },
    /// `DELETE FROM t WHERE ..`.
    Delete { keys: Vec<(String, Vec<usize>)> },
}

/// A write as SeaQuery rendered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Shape {
    pub(crate) table: String,
    pub(crate) op: Op,
    /// It has a `RETURNING` clause (its rows then name what it touched).
    pub(crate) returning: bool,
}

/// Recognizes SeaQuery's rendering of a write, or `None`.
pub(crate) fn shape(backend: DbBackend, sql: &str) -> Option<Shape> {
    let mut tokens = tokenize(sql);
    if backend != DbBackend::Postgres {
        // `?` placeholders take the values in order
        let mut n = 0;
        for t in &mut tokens {
            if *t == Token::QMark {
                *t = Token::Param(n);
                n += 1;
            }
        }
    }
    let t = &tokens;
    let first = t.first()?;
    if first.is("INSERT") && t.get(1)?.is("INTO") {
        insert(t)
    } else if first.is("UPDATE") {
        update(t)
    } else if first.is("DELETE") && t.get(1)?.is("FROM") {
        delete(t)
    } else {
        None
    }
}

/// Index of the first top-level keyword of `keys` at or after `from`.
fn find_top(t: &[Token<'_>], from: usize, keys: &[&str]) -> Option<usize> {
    let mut depth = 0i32;
    for (i, tok) in t.iter().enumerate().skip(from) {
        match tok {
            Token::Punct(b'(') => depth += 1,
            Token::Punct(b')') => depth -= 1,
            _ if depth == 0 && keys.iter().any(|k| tok.is(k)) => return Some(i),
            _ => {}
        }
    }
    None
}

/// Splits `t` at top-level `sep` punctuation.
fn split_top<'t, 'a>(t: &'t [Token<'a>], sep: u8) -> Vec<&'t [Token<'a>]> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, tok) in t.iter().enumerate() {
        match tok {
            Token::Punct(b'(') => depth += 1,
            Token::Punct(b')') => depth -= 1,
            Token::Punct(c) if *c == sep && depth == 0 => {
                out.push(&t[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&t[start..]);
    out
}

/// `( .. )` starting at `at`: the tokens inside and the index after.
fn parens<'t, 'a>(t: &'t [Token<'a>], at: usize) -> Option<(&'t [Token<'a>], usize)> {
    if t.get(at) != Some(&Token::Punct(b'(')) {
        return None;
    }
    let mut depth = 0i32;
    for (i, tok) in t.iter().enumerate().skip(at) {
        match tok {
            Token::Punct(b'(') => depth += 1,
            Token::Punct(b')') => {
                depth -= 1;
                if depth == 0 {
                    return Some((&t[at + 1..i], i + 1));
                }
            }
            _ => {}
        }
    }
    None
}

fn strip_parens<'t, 'a>(mut t: &'t [Token<'a>]) -> &'t [Token<'a>] {
    while let Some((inner, end)) = parens(t, 0) {
        if end != t.len() {
            break;
        }
        t = inner;
    }
    t
}

/// A column reference: `"c"` or `"t"."c"` (the table is the write's own).
fn column(t: &[Token<'_>]) -> Option<String> {
    match t {
        [c @ Token::Quoted(_)] => ident(c),
        [Token::Quoted(_), Token::Punct(b'.'), c @ Token::Quoted(_)] => ident(c),
        [
            Token::Quoted(_),
            Token::Punct(b'.'),
            Token::Quoted(_),
            Token::Punct(b'.'),
            c @ Token::Quoted(_),
        ] => ident(c),
        _ => None,
    }
}

/// The key terms of a `WHERE`: `column = $N` / `column IN ($..)` terms of a
/// top-level conjunction (none when it is not one).
fn key_terms(t: &[Token<'_>]) -> Vec<(String, Vec<usize>)> {
    let t = strip_parens(t);
    let mut terms: Vec<&[Token<'_>]> = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, tok) in t.iter().enumerate() {
        match tok {
            Token::Punct(b'(') => depth += 1,
            Token::Punct(b')') => depth -= 1,
            _ if depth == 0 && tok.is("OR") => return Vec::new(),
            _ if depth == 0 && tok.is("AND") => {
                terms.push(&t[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&t[start..]);
    let mut out = Vec::new();
    for term in terms {
        let term = strip_parens(term);
        // a conjunction in parentheses is still a conjunction
        if term.iter().any(|x| x.is("AND")) && !term.iter().any(|x| x.is("OR")) {
            out.extend(key_terms(term));
            continue;
        }
        if let Some(eq) = term.iter().position(|x| *x == Token::Punct(b'=')) {
            let (l, r) = (&term[..eq], &term[eq + 1..]);
            match (column(l), r) {
                (Some(c), [Token::Param(n)]) => out.push((c, vec![*n])),
                _ => {
                    if let ([Token::Param(n)], Some(c)) = (l, column(r)) {
                        out.push((c, vec![*n]));
                    }
                }
            }
        } else if let Some(i) = term.iter().position(|x| x.is("IN")) {
            let Some(c) = column(&term[..i]) else {
                continue;
            };
            if i > 0 && term[i - 1].is("NOT") {
                continue;
            }
            let Some((inside, end)) = parens(term, i + 1) else {
                continue;
            };
            if end != term.len() {
                continue;
            }
            let params: Option<Vec<usize>> = split_top(inside, b',')
                .into_iter()
                .map(|p| match p {
                    [Token::Param(n)] => Some(*n),
                    _ => None,
                })
                .collect();
            if let Some(ps) = params {
                out.push((c, ps));
            }
        }
    }
    out
}

fn insert(t: &[Token<'_>]) -> Option<Shape> {
    let (table, mut at) = name_at(t, 2)?;
    let mut columns = Vec::new();
    if let Some((cols, end)) = parens(t, at) {
        for c in split_top(cols, b',') {
            columns.push(column(c)?);
        }
        at = end;
    }
    let mut rows = Vec::new();
    if t.get(at)?.is("VALUES") {
        at += 1;
        while let Some((row, end)) = parens(t, at) {
            let vals: Vec<Option<usize>> = split_top(row, b',')
                .into_iter()
                .map(|v| match v {
                    [Token::Param(n)] => Some(*n),
                    _ => None,
                })
                .collect();
            if vals.len() != columns.len() {
                return None;
            }
            rows.push(vals);
            at = end;
            if t.get(at) == Some(&Token::Punct(b',')) {
                at += 1;
            } else {
                break;
            }
        }
    } else if t.get(at)?.is("DEFAULT") && t.get(at + 1)?.is("VALUES") {
        at += 2;
        rows.push(Vec::new());
    } else {
        return None; // INSERT .. SELECT
    }
    let mut conflict = Conflict::None;
    if t.get(at).is_some_and(|x| x.is("ON")) && t.get(at + 1).is_some_and(|x| x.is("CONFLICT")) {
        let do_at = find_top(t, at, &["DO"])?;
        conflict = if t.get(do_at + 1)?.is("NOTHING") {
            Conflict::Nothing
        } else if t.get(do_at + 1)?.is("UPDATE") && t.get(do_at + 2)?.is("SET") {
            let end = find_top(t, do_at + 3, &["RETURNING", "WHERE"]).unwrap_or(t.len());
            let mut set = Vec::new();
            for item in split_top(&t[do_at + 3..end], b',') {
                let eq = item.iter().position(|x| *x == Token::Punct(b'='))?;
                set.push(column(&item[..eq])?);
            }
            Conflict::Update(set)
        } else {
            return None;
        };
    }
    let returning = find_top(t, at, &["RETURNING"]).is_some();
    Some(Shape {
        table,
        op: Op::Insert {
            columns,
            rows,
            conflict,
        },
        returning,
    })
}

fn update(t: &[Token<'_>]) -> Option<Shape> {
    let (table, at) = name_at(t, 1)?;
    if !t.get(at)?.is("SET") {
        return None;
    }
    let end =
        find_top(t, at + 1, &["WHERE", "RETURNING", "FROM", "ORDER", "LIMIT"]).unwrap_or(t.len());
    if t.get(end).is_some_and(|x| x.is("FROM")) {
        return None; // UPDATE .. FROM: joins decide the rows
    }
    let mut set = Vec::new();
    for item in split_top(&t[at + 1..end], b',') {
        let eq = item.iter().position(|x| *x == Token::Punct(b'='))?;
        set.push(column(&item[..eq])?);
    }
    let keys = where_keys(t, end);
    let returning = find_top(t, end, &["RETURNING"]).is_some();
    Some(Shape {
        table,
        op: Op::Update { set, keys },
        returning,
    })
}

fn delete(t: &[Token<'_>]) -> Option<Shape> {
    let (table, at) = name_at(t, 2)?;
    if t.get(at).is_some_and(|x| x.is("USING")) {
        return None;
    }
    let keys = where_keys(t, at);
    let returning = find_top(t, at, &["RETURNING"]).is_some();
    Some(Shape {
        table,
        op: Op::Delete { keys },
        returning,
    })
}

fn where_keys(t: &[Token<'_>], from: usize) -> Vec<(String, Vec<usize>)> {
    match find_top(t, from, &["WHERE"]) {
        Some(w) => {
            let end = find_top(t, w + 1, &["RETURNING", "ORDER", "LIMIT"]).unwrap_or(t.len());
            key_terms(&t[w + 1..end])
        }
        None => Vec::new(),
    }
}

/// What a write returned or reported, for the rows it touched.
#[derive(Clone, Debug, Default)]
pub(crate) struct Outcome {
    /// The keys of the rows its `RETURNING` clause returned (see
    /// [`returned_keys`]), when it ran as a query.
    pub(crate) returned: Option<Vec<Vec<String>>>,
    /// SQLite's `last_insert_rowid` of a one-row insert run without `RETURNING`.
    pub(crate) last_insert_id: Option<u64>,
}

/// The canonical key text of a column of a returned row (integers of any
/// width, or text).
fn returned_key(row: &QueryResult, col: &str) -> Option<String> {
    if let Ok(v) = row.try_get::<i64>("", col) {
        return Some(v.to_string());
    }
    if let Ok(v) = row.try_get::<i32>("", col) {
        return Some(v.to_string());
    }
    if let Ok(v) = row.try_get::<i16>("", col) {
        return Some(v.to_string());
    }
    row.try_get::<String>("", col).ok()
}

/// The keys of returned rows: the canonical text of each key column, or
/// `None` when a row lacks one.
pub(crate) fn returned_keys(rows: &[QueryResult], pk: &[String]) -> Option<Vec<Vec<String>>> {
    rows.iter()
        .map(|r| {
            pk.iter()
                .map(|c| returned_key(r, c))
                .collect::<Option<Vec<_>>>()
        })
        .collect()
}

fn keys_of_values(
    pk: &[String],
    columns: &[String],
    rows: &[Vec<Option<usize>>],
    values: &[Value],
) -> Option<Vec<Vec<String>>> {
    let idx: Vec<usize> = pk
        .iter()
        .map(|k| columns.iter().position(|c| c == k))
        .collect::<Option<_>>()?;
    rows.iter()
        .map(|row| {
            idx.iter()
                .map(|&i| {
                    row.get(i)
                        .copied()
                        .flatten()
                        .and_then(|v| values.get(v))
                        .and_then(key_text)
                })
                .collect::<Option<Vec<_>>>()
        })
        .collect()
}

fn keys_of_terms(
    pk: &[String],
    terms: &[(String, Vec<usize>)],
    values: &[Value],
) -> Option<Vec<Vec<String>>> {
    let per_col: Vec<Vec<String>> = pk
        .iter()
        .map(|k| {
            terms.iter().find(|(c, _)| c == k).and_then(|(_, ps)| {
                ps.iter()
                    .map(|&p| values.get(p).and_then(key_text))
                    .collect::<Option<Vec<_>>>()
            })
        })
        .collect::<Option<_>>()?;
    match per_col.as_slice() {
        [one] => Some(one.iter().map(|k| vec![k.clone()]).collect()),
        // several key columns: each fixed to one value
        many if many.iter().all(|v| v.len() == 1) => {
            Some(vec![many.iter().map(|v| v[0].clone()).collect()])
        }
        _ => None,
    }
}

/// The tags a committed write moved: by row and column where the shape, the
/// catalog and the outcome tell, by table otherwise; plus what its
/// foreign keys' actions changed, and the tag every write moves.
pub(crate) fn moved(
    shape: Option<&Shape>,
    tables: &[String],
    values: &[Value],
    schema: &Schema,
    outcome: Outcome,
) -> Vec<Moved> {
    let mut out = vec![Moved::new(TagId::ANY_WRITE, Level::Table)];
    let Some(s) = shape else {
        if tables.is_empty() {
            out.push(Moved::new(TagId::ALL, Level::Table));
        }
        for t in tables {
            out.push(Moved::new(TagId::table(t), Level::Table));
            schema.cascades(t, Change::Any, &mut out);
        }
        return out;
    };
    let t = s.table.as_str();
    let pk = schema
        .pk(t)
        .filter(|p| p.trackable && !p.columns.is_empty());
    let from_rows = || -> Option<Vec<Vec<String>>> {
        pk?;
        if s.returning {
            outcome.returned.clone()
        } else {
            None
        }
    };
    let row_tags = |keys: &[Vec<String>], out: &mut Vec<Moved>| {
        for k in keys {
            out.push(Moved::new(TagId::row(t, k), Level::Row));
        }
    };
    match &s.op {
        Op::Insert {
            columns,
            rows,
            conflict,
        } => {
            out.push(Moved::new(TagId::members(t), Level::Membership));
            let keys = pk
                .and_then(|pk| keys_of_values(&pk.columns, columns, rows, values))
                .or_else(from_rows)
                .or_else(|| {
                    // SQLite without RETURNING: the rowid of a one-row insert
                    let pk = pk?;
                    (rows.len() == 1 && pk.columns.len() == 1 && *conflict == Conflict::None)
                        .then_some(())?;
                    outcome.last_insert_id.map(|id| vec![vec![id.to_string()]])
                });
            match keys {
                Some(k) => row_tags(&k, &mut out),
                None => out.push(Moved::new(TagId::table(t), Level::Table)),
            }
            if let Conflict::Update(set) = conflict {
                out.push(Moved::new(TagId::updates(t), Level::Column));
                for c in set {
                    out.push(Moved::new(TagId::column(t, c), Level::Column));
                }
                schema.cascades(t, Change::Update(set), &mut out);
            }
        }
        Op::Update { set, keys } => {
            let sets_key = pk.is_none_or(|p| p.columns.iter().any(|k| set.contains(k)));
            let keys =
                pk.and_then(|pk| from_rows().or_else(|| keys_of_terms(&pk.columns, keys, values)));
            match keys {
                Some(k) if !sets_key => {
                    row_tags(&k, &mut out);
                    out.push(Moved::new(TagId::updates(t), Level::Column));
                    for c in set {
                        out.push(Moved::new(TagId::column(t, c), Level::Column));
                    }
                }
                _ => out.push(Moved::new(TagId::table(t), Level::Table)),
            }
            schema.cascades(t, Change::Update(set), &mut out);
        }
        Op::Delete { keys } => {
            out.push(Moved::new(TagId::members(t), Level::Membership));
            let keys =
                pk.and_then(|pk| from_rows().or_else(|| keys_of_terms(&pk.columns, keys, values)));
            match keys {
                Some(k) => row_tags(&k, &mut out),
                None => out.push(Moved::new(TagId::table(t), Level::Table)),
            }
            schema.cascades(t, Change::Delete, &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Edge, Pk};
    use entity::prelude::*;
    use entity::{follow, story};
    use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryTrait, Set};

    fn schema() -> Schema {
        let mut s = Schema::default();
        for (t, cols) in [
            ("stories", vec!["id"]),
            ("profiles", vec!["id"]),
            ("follows", vec!["follower_id", "following_id"]),
        ] {
            s.pks.insert(
                t.into(),
                Pk {
                    columns: cols.into_iter().map(str::to_owned).collect(),
                    trackable: true,
                },
            );
        }
        s.edges.insert(
            "profiles".into(),
            vec![Edge {
                child: "stories".into(),
                on_delete: true,
                on_update: false,
                referenced: vec!["id".into()],
            }],
        );
        s
    }

    fn tags_of<S: sea_orm::StatementBuilder>(
        backend: DbBackend,
        stmt: &S,
    ) -> (Option<Shape>, Vec<Moved>) {
        let built = backend.build(stmt);
        let shape = shape(backend, &built.sql);
        let values = built.values.map(|v| v.0).unwrap_or_default();
        let tables = super::super::classify_sql(&built.sql).tables;
        let moved = moved(
            shape.as_ref(),
            &tables,
            &values,
            &schema(),
            Outcome::default(),
        );
        (shape, moved)
    }

    fn has(m: &[Moved], id: TagId) -> bool {
        m.iter().any(|x| x.id == id)
    }

    fn key(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn an_update_by_key_moves_its_row_and_columns() {
        for backend in [DbBackend::Postgres, DbBackend::Sqlite] {
            let q = Story::update_many()
                .col_expr(story::Column::Title, Expr::value("t"))
                .col_expr(
                    story::Column::ViewCount,
                    Expr::col(story::Column::ViewCount).add(1),
                )
                .filter(story::Column::Id.eq(42));
            let (shape, m) = tags_of(backend, &q.into_query());
            let shape = shape.expect("recognized");
            assert_eq!(
                shape.op,
                Op::Update {
                    set: vec!["title".into(), "view_count".into()],
                    keys: vec![("id".into(), vec![2])]
                },
                "{backend:?}"
            );
            assert!(has(&m, TagId::row("stories", &key(&["42"]))));
            assert!(has(&m, TagId::column("stories", "title")));
            assert!(has(&m, TagId::column("stories", "view_count")));
            assert!(!has(&m, TagId::table("stories")));
            assert!(!has(&m, TagId::members("stories")));
        }
    }

    #[test]
    fn an_update_by_another_filter_moves_the_table() {
        let q = Story::update_many()
            .col_expr(story::Column::Featured, Expr::value(true))
            .filter(story::Column::AuthorId.eq(3));
        let (_, m) = tags_of(DbBackend::Postgres, &q.into_query());
        assert!(has(&m, TagId::table("stories")));
        let q = Story::update_many()
            .col_expr(story::Column::Featured, Expr::value(true))
            .filter(
                sea_orm::Condition::any()
                    .add(story::Column::Id.eq(1))
                    .add(story::Column::AuthorId.eq(3)),
            );
        let (_, m) = tags_of(DbBackend::Postgres, &q.into_query());
        assert!(
            has(&m, TagId::table("stories")),
            "an OR is not a key filter"
        );
    }

    #[test]
    fn an_update_of_the_key_moves_the_table() {
        let q = Story::update_many()
            .col_expr(story::Column::Id, Expr::value(7))
            .filter(story::Column::Id.eq(3));
        let (_, m) = tags_of(DbBackend::Postgres, &q.into_query());
        assert!(has(&m, TagId::table("stories")));
    }

    #[test]
    fn deletes_by_key_and_in_lists_move_rows_and_membership() {
        let (_, m) = tags_of(DbBackend::Postgres, &Story::delete_by_id(5).into_query());
        assert!(has(&m, TagId::row("stories", &key(&["5"]))));
        assert!(has(&m, TagId::members("stories")));
        assert!(!has(&m, TagId::table("stories")));
        let q = Story::delete_many().filter(story::Column::Id.is_in([1, 2, 3]));
        let (_, m) = tags_of(DbBackend::Sqlite, &q.into_query());
        for k in ["1", "2", "3"] {
            assert!(has(&m, TagId::row("stories", &key(&[k]))));
        }
        let q = Follow::delete_many()
            .filter(follow::Column::FollowerId.eq(1))
            .filter(follow::Column::FollowingId.eq(2));
        let (_, m) = tags_of(DbBackend::Postgres, &q.into_query());
        assert!(has(&m, TagId::row("follows", &key(&["1", "2"]))), "{m:?}");
    }

    #[test]
    fn a_profile_delete_cascades_to_stories_and_its_update_does_not() {
        let (_, m) = tags_of(DbBackend::Postgres, &Profile::delete_by_id(5).into_query());
        assert!(has(&m, TagId::table("stories")));
        let q = Profile::update_many()
            .col_expr(entity::profile::Column::DisplayName, Expr::value("x"))
            .filter(entity::profile::Column::Id.eq(5));
        let (_, m) = tags_of(DbBackend::Postgres, &q.into_query());
        assert!(!has(&m, TagId::table("stories")));
    }

    #[test]
    fn inserts_with_their_keys_move_rows_and_upserts_columns() {
        let row = follow::ActiveModel {
            follower_id: Set(1),
            following_id: Set(2),
            created_at: Set(chrono::Utc::now()),
        };
        let q = || {
            Follow::insert(row.clone()).on_conflict_do_nothing_on([
                follow::Column::FollowerId,
                follow::Column::FollowingId,
            ])
        };
        for backend in [DbBackend::Postgres, DbBackend::Sqlite] {
            let (shape, m) = tags_of(backend, &q().into_query());
            assert!(matches!(
                shape.expect("recognized").op,
                Op::Insert {
                    conflict: Conflict::Nothing,
                    ..
                }
            ));
            assert!(has(&m, TagId::row("follows", &key(&["1", "2"]))));
            assert!(has(&m, TagId::members("follows")));
            assert!(!has(&m, TagId::table("follows")));
        }
        let upsert = Follow::insert(row).on_conflict(
            OnConflict::columns([follow::Column::FollowerId, follow::Column::FollowingId])
                .update_column(follow::Column::CreatedAt)
                .to_owned(),
        );
        let (_, m) = tags_of(DbBackend::Postgres, &upsert.into_query());
        assert!(has(&m, TagId::row("follows", &key(&["1", "2"]))));
        assert!(has(&m, TagId::column("follows", "created_at")));
    }

    #[test]
    fn an_insert_without_its_key_moves_the_table_unless_rows_return_it() {
        let row = entity::profile::ActiveModel {
            username: Set("u".into()),
            display_name: Set("d".into()),
            bio: Set(String::new()),
            created_at: Set(chrono::Utc::now()),
            updated_at: Set(chrono::Utc::now()),
            ..Default::default()
        };
        let (_, m) = tags_of(
            DbBackend::Postgres,
            &Profile::insert(row.clone()).into_query(),
        );
        assert!(has(&m, TagId::table("profiles")));
        // SQLite's rowid of a one-row insert names it
        let built = DbBackend::Sqlite.build(&Profile::insert(row).into_query());
        let s = shape(DbBackend::Sqlite, &built.sql);
        let m = moved(
            s.as_ref(),
            &["profiles".into()],
            &built.values.map(|v| v.0).unwrap_or_default(),
            &schema(),
            Outcome {
                returned: None,
                last_insert_id: Some(9),
            },
        );
        assert!(has(&m, TagId::row("profiles", &key(&["9"]))));
        assert!(!has(&m, TagId::table("profiles")));
    }

    #[test]
    fn unrecognized_text_is_not_a_shape() {
        for sql in [
            "UPDATE \"t\" SET \"a\" = $1 FROM \"u\" WHERE \"t\".\"id\" = \"u\".\"id\"",
            "INSERT INTO \"t\" (\"a\") SELECT 1",
            "DELETE FROM \"t\" USING \"u\"",
            "WITH x AS (DELETE FROM \"t\" RETURNING 1) SELECT 1",
        ] {
            assert_eq!(shape(DbBackend::Postgres, sql), None, "{sql}");
        }
    }
}
