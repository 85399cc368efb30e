//! Whether a statement reads or writes, and which tables it touches.
//!
//! SeaQuery-built statements are classified from their structure (SeaQuery's
//! audit: the access kind and table of every part, joins and subqueries
//! included). Raw SQL is classified from its text by a small tokenizer that
//! skips comments, string literals, quoted identifiers and dollar quotes.
//! Anything unclear is a write: a write sent to the primary is merely slower,
//! a write sent to a replica fails.

use sea_orm::sea_query::audit::AccessType;
use sea_orm::{Statement, StatementBuilder};
use std::borrow::Cow;

/// A cache tag: a table name. Static for entity tables, so free to copy.
pub type Tag = Cow<'static, str>;

/// The tag every cached entry depends on; bumped by writes whose tables are
/// unknown (raw DDL or `DO` blocks), which so empty the whole cache.
pub const ALL_TAG: &str = "*";

/// Read or write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Safe on a hot standby.
    Read,
    /// Must run on the primary.
    Write,
}

/// The outcome of classification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    /// Read or write.
    pub kind: Kind,
    /// For a read, the tables read; for a write, the tables written (empty
    /// when unknown: then every cached entry is invalidated).
    pub tables: Vec<Tag>,
    /// A schema statement (`CREATE`, `ALTER`, `DROP`, `TRUNCATE`, `RENAME`,
    /// `COMMENT`): the router then reads the foreign keys again, whose
    /// cascades a write also invalidates.
    pub schema: bool,
}

impl Access {
    /// Whether this must go to the primary.
    pub fn is_write(&self) -> bool {
        self.kind == Kind::Write
    }
}

/// Classifies a SeaQuery-built statement from its structure; `built` is the
/// same statement rendered for the backend.
pub fn classify_builder<S: StatementBuilder>(stmt: &S, built: &Statement) -> Access {
    let sql = built.sql.as_str();
    // Schema statements: SeaORM's audit of them panics (todo!), so never ask.
    if let Some(first) = first_keyword(sql)
        && is_schema_keyword(first)
    {
        return classify_sql(sql);
    }
    match stmt.audit() {
        Ok(audit) => {
            let mut write = false;
            let mut written = Vec::new();
            let mut read = Vec::with_capacity(audit.requests.len());
            for req in &audit.requests {
                let table = req.schema_table.1.inner();
                match req.access_type {
                    AccessType::Select => push_unique(&mut read, table),
                    _ => {
                        write = true;
                        push_unique(&mut written, table);
                    }
                }
            }
            // The audit says SELECT for SELECT .. FOR UPDATE and for sequence
            // functions inside expressions: look at the rendered text once.
            if write || typed_select_needs_primary(sql) {
                Access {
                    kind: Kind::Write,
                    tables: written,
                    schema: false,
                }
            } else {
                Access {
                    kind: Kind::Read,
                    tables: read,
                    schema: false,
                }
            }
        }
        Err(_) => classify_sql(sql),
    }
}

/// Whether a SeaQuery-built statement, rendered as `sql`, is a plain read: a
/// `SELECT` (SeaQuery renders a `SelectStatement` with no `WITH` so, and
/// nothing else so) without a lock clause or a sequence function.
///
/// Its audit can then name only tables it reads: PostgreSQL accepts a
/// data-modifying statement only in a top-level `WITH`, which would render
/// first. So routing it needs no audit; [`read_tables`] gives its tables when
/// a router or the cache asks for them.
pub fn is_plain_select(sql: &str) -> bool {
    sql.starts_with("SELECT ") && !typed_select_needs_primary(sql)
}

/// The tables a SeaQuery-built statement reads, from its audit (empty when
/// the audit fails).
pub fn read_tables<S: StatementBuilder>(stmt: &S) -> Vec<Tag> {
    let mut read = Vec::new();
    if let Ok(audit) = stmt.audit() {
        for req in &audit.requests {
            if req.access_type == AccessType::Select {
                push_unique(&mut read, req.schema_table.1.inner());
            }
        }
    }
    read
}

fn push_unique(v: &mut Vec<Tag>, t: Tag) {
    if !v.contains(&t) {
        v.push(t);
    }
}

/// SeaQuery renders lock clauses as ` FOR UPDATE`, ` FOR SHARE`, ` FOR NO KEY
/// UPDATE`, ` FOR KEY SHARE`; functions keep the case they were given.
fn typed_select_needs_primary(sql: &str) -> bool {
    static LOCK: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b" FOR "));
    LOCK.find(sql.as_bytes()).is_some() || mentions_sequence_write(sql)
}

/// Whether `nextval` or `setval` occurs anywhere, in any case. Looks only
/// around each `v` (found with `memchr`): this runs for every typed read.
fn mentions_sequence_write(sql: &str) -> bool {
    let b = sql.as_bytes();
    let ends_at = |i: usize, prefix: &[u8]| {
        i >= prefix.len() && b[i - prefix.len()..i].eq_ignore_ascii_case(prefix)
    };
    memchr::memchr2_iter(b'v', b'V', b).any(|i| {
        b.get(i + 1..i + 3)
            .is_some_and(|t| t.eq_ignore_ascii_case(b"al"))
            && (ends_at(i, b"next") || ends_at(i, b"set"))
    })
}

fn is_schema_keyword(w: &str) -> bool {
    ["CREATE", "ALTER", "DROP", "TRUNCATE", "RENAME", "COMMENT"]
        .iter()
        .any(|k| k.eq_ignore_ascii_case(w))
}

/// Functions that write, take locks, or fail on a standby.
const PRIMARY_FUNCTIONS: &[&str] = &[
    "nextval",
    "setval",
    "currval",
    "lastval",
    "pg_advisory_lock",
    "pg_advisory_xact_lock",
    "pg_try_advisory_lock",
    "pg_try_advisory_xact_lock",
    "pg_current_wal_lsn",
    "pg_current_wal_insert_lsn",
    "txid_current",
    "pg_current_xact_id",
    "lo_create",
    "lo_import",
    "lo_unlink",
    "pg_notify",
    "set_config",
];

/// Statements that only read.
const READ_STARTS: &[&str] = &["SELECT", "WITH", "VALUES", "TABLE", "SHOW", "EXPLAIN"];

/// Classifies raw SQL text. Tables are found for writes (after `INSERT INTO`,
/// `UPDATE`, `DELETE FROM`, `MERGE INTO`, `TRUNCATE`, `ALTER/DROP/CREATE
/// TABLE`) so that raw writes invalidate what they touch.
pub fn classify_sql(sql: &str) -> Access {
    let tokens = tokenize(sql);
    let first = match tokens.iter().find(|t| !matches!(t, Token::Punct(b'('))) {
        Some(Token::Word(w)) => Some(*w),
        _ => None,
    };
    let write = Access {
        kind: Kind::Write,
        tables: written_tables(&tokens),
        schema: first.is_some_and(is_schema_keyword),
    };
    let Some(first) = first else {
        return write;
    };
    if !READ_STARTS.iter().any(|k| k.eq_ignore_ascii_case(first)) {
        return write;
    }
    for (i, tok) in tokens.iter().enumerate() {
        let Token::Word(w) = tok else { continue };
        let is = |k: &str| w.eq_ignore_ascii_case(k);
        if is("INSERT") || is("UPDATE") || is("DELETE") || is("MERGE") || is("TRUNCATE") {
            return write; // data-modifying CTE, or a lock clause ending in UPDATE
        }
        if is("INTO") {
            return write; // SELECT .. INTO creates a table
        }
        if is("FOR")
            && let Some(Token::Word(next)) = tokens.get(i + 1)
            && ["UPDATE", "SHARE", "NO", "KEY"]
                .iter()
                .any(|k| k.eq_ignore_ascii_case(next))
        {
            return write;
        }
        if is("ANALYZE") && first.eq_ignore_ascii_case("EXPLAIN") {
            return write; // EXPLAIN ANALYZE runs the statement
        }
        if matches!(tokens.get(i + 1), Some(Token::Punct(b'(')))
            && PRIMARY_FUNCTIONS.iter().any(|f| f.eq_ignore_ascii_case(w))
        {
            return write;
        }
    }
    Access {
        kind: Kind::Read,
        tables: tables_read(&tokens),
        schema: false,
    }
}

/// The first keyword of `sql`, after comments, whitespace and parentheses.
pub fn first_keyword(sql: &str) -> Option<&str> {
    tokenize_until(sql, 1).into_iter().find_map(|t| match t {
        Token::Word(w) => Some(w),
        _ => None,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    /// A bare word (keyword or identifier), as written.
    Word(&'a str),
    /// A double-quoted identifier, without quotes.
    Quoted(&'a str),
    /// One punctuation byte.
    Punct(u8),
    /// A string literal or number (content irrelevant).
    Literal,
}

fn tokenize(sql: &str) -> Vec<Token<'_>> {
    tokenize_until(sql, usize::MAX)
}

/// Splits SQL into tokens, skipping comments and literal contents; stops after
/// `max_words` bare words.
fn tokenize_until(sql: &str, max_words: usize) -> Vec<Token<'_>> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut words = 0;
    let mut i = 0;
    while i < b.len() && words < max_words {
        let c = b[i];
        match c {
            _ if c.is_ascii_whitespace() => i += 1,
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                // nested block comments, as PostgreSQL allows
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'\'' => {
                let escapes = i > 0 && matches!(b[i - 1], b'E' | b'e');
                i += 1;
                while i < b.len() {
                    if escapes && b[i] == b'\\' {
                        i += 2;
                    } else if b[i] == b'\'' {
                        if b.get(i + 1) == Some(&b'\'') {
                            i += 2;
                        } else {
                            i += 1;
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                out.push(Token::Literal);
            }
            b'"' | b'`' => {
                let start = i + 1;
                i += 1;
                while i < b.len() && b[i] != c {
                    i += 1;
                }
                out.push(Token::Quoted(&sql[start..i.min(b.len())]));
                i += 1;
            }
            b'$' => {
                // $1 parameter or $tag$ .. $tag$ dollar quote
                let start = i;
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                if b.get(i) == Some(&b'$')
                    && !sql[start + 1..i].starts_with(|ch: char| ch.is_ascii_digit())
                {
                    let tag = &sql[start..=i];
                    i += 1;
                    match sql[i..].find(tag) {
                        Some(end) => i += end + tag.len(),
                        None => i = b.len(),
                    }
                }
                out.push(Token::Literal);
            }
            _ if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] >= 0x80)
                {
                    i += 1;
                }
                // E'..' escape strings: let the literal arm see the E
                if i - start == 1 && matches!(c, b'E' | b'e') && b.get(i) == Some(&b'\'') {
                    continue;
                }
                out.push(Token::Word(&sql[start..i]));
                words += 1;
            }
            _ if c.is_ascii_digit() => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
                out.push(Token::Literal);
            }
            _ => {
                out.push(Token::Punct(c));
                i += 1;
            }
        }
    }
    out
}

/// The table name at `tokens[i..]`: `name`, `"name"`, `schema.name`; lowercased
/// when unquoted, as PostgreSQL folds it.
fn name_at(tokens: &[Token<'_>], mut i: usize) -> Option<Tag> {
    let mut last = None;
    loop {
        match tokens.get(i)? {
            Token::Word(w) => last = Some(Cow::Owned(w.to_ascii_lowercase())),
            Token::Quoted(q) => last = Some(Cow::Owned((*q).to_owned())),
            _ => return last,
        }
        if tokens.get(i + 1) == Some(&Token::Punct(b'.')) {
            i += 2;
        } else {
            return last;
        }
    }
}

fn word_is(t: Option<&Token<'_>>, k: &str) -> bool {
    matches!(t, Some(Token::Word(w)) if w.eq_ignore_ascii_case(k))
}

fn written_tables(tokens: &[Token<'_>]) -> Vec<Tag> {
    let mut out: Vec<Tag> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let Token::Word(w) = t else { continue };
        let is = |k: &str| w.eq_ignore_ascii_case(k);
        let prev_is = |k: &str| word_is(tokens.get(i.wrapping_sub(1)), k);
        let next_is = |k: &str| word_is(tokens.get(i + 1), k);
        let mut at = if ((is("INSERT") || is("MERGE")) && next_is("INTO"))
            || (is("DELETE") && next_is("FROM"))
        {
            i + 2
        } else if is("UPDATE") && !prev_is("FOR") && !prev_is("KEY") && !prev_is("DO") {
            i + 1
        } else if is("TRUNCATE") {
            i + 1 + usize::from(next_is("TABLE"))
        } else if (is("ALTER") || is("DROP") || is("CREATE")) && next_is("TABLE") {
            i + 2
        } else {
            continue;
        };
        // IF [NOT] EXISTS, ONLY
        while word_is(tokens.get(at), "IF")
            || word_is(tokens.get(at), "NOT")
            || word_is(tokens.get(at), "EXISTS")
            || word_is(tokens.get(at), "ONLY")
        {
            at += 1;
        }
        if let Some(name) = name_at(tokens, at)
            && !out.contains(&name)
        {
            out.push(name);
        }
    }
    out
}

fn tables_read(tokens: &[Token<'_>]) -> Vec<Tag> {
    let mut out: Vec<Tag> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if (word_is(Some(t), "FROM") || word_is(Some(t), "JOIN"))
            && let Some(name) = name_at(tokens, i + 1)
            && !out.contains(&name)
        {
            out.push(name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("SELECT nextval('s')", true)]
    #[case("SELECT NEXTVAL('s')", true)]
    #[case("SELECT \"setval\"('s', 1)", true)]
    #[case("SELECT SetVal('s', 1)", true)]
    #[case("SELECT \"val\", \"view_count\" FROM \"v\"", false)]
    #[case("SELECT interval, next_val, sets_val FROM t", false)]
    #[case("v", false)]
    #[case("", false)]
    fn sequence_functions_are_found_in_any_case(#[case] sql: &str, #[case] found: bool) {
        assert_eq!(mentions_sequence_write(sql), found, "{sql}");
    }

    #[rstest]
    #[case::plain_select("SELECT * FROM stories", Kind::Read)]
    #[case::lowercase("select id from stories where id = $1", Kind::Read)]
    #[case::leading_whitespace("   \n\t SELECT 1", Kind::Read)]
    #[case::block_comment("/* x */ select * from profiles", Kind::Read)]
    #[case::nested_comment("/* a /* b */ c */ SELECT 1", Kind::Read)]
    #[case::line_comment("-- insert into x\nSELECT 1", Kind::Read)]
    #[case::parenthesized("(SELECT 1) UNION (SELECT 2)", Kind::Read)]
    #[case::read_only_cte("WITH t AS (SELECT id FROM stories) SELECT * FROM t", Kind::Read)]
    #[case::values("VALUES (1), (2)", Kind::Read)]
    #[case::show("SHOW server_version", Kind::Read)]
    #[case::explain("EXPLAIN SELECT * FROM stories", Kind::Read)]
    #[case::keyword_in_string("SELECT 'insert into x; update y' AS s", Kind::Read)]
    #[case::keyword_in_escape_string("SELECT E'it\\'s delete' AS s", Kind::Read)]
    #[case::keyword_in_quoted_ident("SELECT \"update\" FROM \"delete\"", Kind::Read)]
    #[case::keyword_in_dollar_quote("SELECT $$ drop table x $$", Kind::Read)]
    #[case::replay_lsn("SELECT pg_last_wal_replay_lsn()", Kind::Read)]
    #[case::insert("INSERT INTO stories (title) VALUES ('a')", Kind::Write)]
    #[case::insert_returning("insert into stories (title) values ($1) returning id", Kind::Write)]
    #[case::update("UPDATE stories SET view_count = view_count + 1", Kind::Write)]
    #[case::delete("DELETE FROM follows WHERE follower_id = 1", Kind::Write)]
    #[case::merge(
        "MERGE INTO stories s USING x ON true WHEN MATCHED THEN DELETE",
        Kind::Write
    )]
    #[case::truncate("TRUNCATE stories", Kind::Write)]
    #[case::create("CREATE TABLE x (id int)", Kind::Write)]
    #[case::alter("ALTER TABLE stories ADD COLUMN x int", Kind::Write)]
    #[case::drop("DROP TABLE IF EXISTS x", Kind::Write)]
    #[case::grant("GRANT SELECT ON stories TO app", Kind::Write)]
    #[case::data_modifying_cte(
        "WITH x AS (UPDATE stories SET featured = true RETURNING id) SELECT * FROM x",
        Kind::Write
    )]
    #[case::for_update("SELECT * FROM stories WHERE id = 1 FOR UPDATE", Kind::Write)]
    #[case::for_share("select * from stories for share", Kind::Write)]
    #[case::for_no_key_update("SELECT 1 FROM stories FOR NO KEY UPDATE", Kind::Write)]
    #[case::for_key_share("SELECT 1 FROM stories FOR KEY SHARE", Kind::Write)]
    #[case::nextval("SELECT nextval('stories_id_seq')", Kind::Write)]
    #[case::setval("select SETVAL('s', 1)", Kind::Write)]
    #[case::advisory_lock("SELECT pg_advisory_lock(1)", Kind::Write)]
    #[case::current_wal_lsn("SELECT pg_current_wal_lsn()", Kind::Write)]
    #[case::select_into("SELECT * INTO backup FROM stories", Kind::Write)]
    #[case::explain_analyze("EXPLAIN ANALYZE DELETE FROM x", Kind::Write)]
    #[case::copy("COPY stories FROM STDIN", Kind::Write)]
    #[case::do_block("DO $$ BEGIN PERFORM 1; END $$", Kind::Write)]
    #[case::lock("LOCK TABLE stories", Kind::Write)]
    #[case::set("SET search_path = x", Kind::Write)]
    #[case::empty("", Kind::Write)]
    #[case::only_comment("/* nothing */", Kind::Write)]
    #[case::gibberish("frobnicate the database", Kind::Write)]
    #[case::comment_hiding_write("/* select */ DELETE FROM stories", Kind::Write)]
    fn classifies_text(#[case] sql: &str, #[case] want: Kind) {
        assert_eq!(classify_sql(sql).kind, want, "{sql}");
    }

    #[rstest]
    #[case("CREATE TABLE x (id int)", true)]
    #[case("alter table stories add column x int", true)]
    #[case("/* c */ DROP TABLE IF EXISTS x", true)]
    #[case("TRUNCATE stories", true)]
    #[case("UPDATE stories SET title = 'CREATE'", false)]
    #[case("SELECT 1", false)]
    #[case("(SELECT 1)", false)]
    fn tells_schema_statements(#[case] sql: &str, #[case] schema: bool) {
        assert_eq!(classify_sql(sql).schema, schema, "{sql}");
    }

    #[rstest]
    #[case("INSERT INTO stories (a) VALUES (1)", &["stories"])]
    #[case("update public.\"Profiles\" set x = 1", &["Profiles"])]
    #[case("DELETE FROM follows", &["follows"])]
    #[case("TRUNCATE TABLE stories", &["stories"])]
    #[case("WITH x AS (UPDATE stories SET a = 1 RETURNING id) INSERT INTO follows SELECT 1", &["stories", "follows"])]
    #[case("DROP TABLE IF EXISTS Stories", &["stories"])]
    #[case("SELECT * FROM stories FOR UPDATE", &[])]
    #[case("DO $$ BEGIN END $$", &[])]
    fn finds_written_tables(#[case] sql: &str, #[case] want: &[&str]) {
        let got = classify_sql(sql).tables;
        assert_eq!(
            got,
            want.iter()
                .map(|s| Tag::Owned((*s).to_owned()))
                .collect::<Vec<_>>(),
            "{sql}"
        );
    }

    #[test]
    fn plain_selects_route_without_the_audit() {
        use entity::prelude::*;
        use sea_orm::sea_query::{Expr, Query};
        use sea_orm::{DbBackend, EntityTrait, JoinType, QuerySelect, QueryTrait, RelationTrait};
        for backend in [DbBackend::Postgres, DbBackend::Sqlite] {
            // every typed statement: the fast check agrees with the audit's kind
            let joined = Story::find()
                .join(JoinType::InnerJoin, entity::story::Relation::Author.def())
                .into_query();
            let locked = Story::find().lock_exclusive().into_query();
            let sequence = Query::select()
                .expr(Expr::cust("NEXTVAL('stories_id_seq')"))
                .to_owned();
            let delete = Follow::delete_many().into_query();
            fn check<S: StatementBuilder>(backend: DbBackend, stmt: &S, plain: bool) {
                let built = backend.build(stmt);
                assert_eq!(is_plain_select(&built.sql), plain, "{}", built.sql);
                if plain {
                    assert_eq!(classify_builder(stmt, &built).kind, Kind::Read);
                } else if built.sql.starts_with("SELECT") {
                    assert_eq!(classify_builder(stmt, &built).kind, Kind::Write);
                }
            }
            check(backend, &joined, true);
            // SQLite has no lock clause: SeaQuery leaves it out there
            check(backend, &locked, backend == DbBackend::Sqlite);
            check(backend, &sequence, false);
            check(backend, &delete, false);
            // the lazily audited tables are the audit's
            let built = backend.build(&joined);
            assert_eq!(
                read_tables(&joined),
                classify_builder(&joined, &built).tables
            );
            assert_eq!(
                read_tables(&joined),
                vec![Tag::Borrowed("stories"), Tag::Borrowed("profiles")]
            );
        }
        // raw text is never "plain" by accident of case or comments
        assert!(!is_plain_select("select * from stories"));
        assert!(!is_plain_select("/* x */ SELECT 1"));
    }

    #[test]
    fn typed_statements_use_the_audit() {
        use entity::prelude::*;
        use sea_orm::{DbBackend, EntityTrait, JoinType, QuerySelect, QueryTrait, RelationTrait};
        let backend = DbBackend::Postgres;
        let select = Story::find()
            .join(JoinType::InnerJoin, entity::story::Relation::Author.def())
            .into_query();
        let built = backend.build(&select);
        let access = classify_builder(&select, &built);
        assert_eq!(access.kind, Kind::Read);
        assert_eq!(
            access.tables,
            vec![Tag::Borrowed("stories"), Tag::Borrowed("profiles")]
        );

        let locked = Story::find().lock_exclusive().into_query();
        assert_eq!(
            classify_builder(&locked, &backend.build(&locked)).kind,
            Kind::Write
        );

        let delete = Follow::delete_many().into_query();
        let access = classify_builder(&delete, &backend.build(&delete));
        assert_eq!(access.kind, Kind::Write);
        assert_eq!(access.tables, vec![Tag::Borrowed("follows")]);
    }

    #[test]
    fn schema_statements_do_not_panic() {
        use sea_orm::sea_query::Table;
        let stmt = Table::drop().table("stories").to_owned();
        let built = sea_orm::DbBackend::Postgres.build(&stmt);
        let access = classify_builder(&stmt, &built);
        assert_eq!(access.kind, Kind::Write);
        assert_eq!(access.tables, vec![Tag::Owned("stories".into())]);
    }
}
