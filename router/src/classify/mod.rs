//! Whether a statement reads, writes, or only needs the primary, and which
//! tables it touches.
//!
//! Three inputs, three paths:
//! * a cached read through the explicit API has its `SelectStatement`: what
//!   it depends on comes from its structure (`analyze`);
//! * any other statement SeaORM builds reaches `Db` as SeaQuery's rendered
//!   text and values: a plain `SELECT` is recognized by its first word (and
//!   the absence of a lock clause or a side-effect function), and a write's
//!   table, columns and keys are read from SeaQuery's regular output by a
//!   strict recognizer that falls back to the whole table ([`write`]);
//! * raw SQL is classified from its text by a tokenizer that skips comments,
//!   string literals, quoted identifiers and dollar quotes; every statement
//!   of a multi-statement string counts.
//!
//! Anything unclear is a write: a write sent to the primary is merely
//! slower, a write sent to a replica fails.

pub(crate) mod lex;
pub(crate) mod write;

use lex::{Token, name_at, statements, tokenize};

/// What a statement needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Safe on a hot standby.
    Read,
    /// Must run on the primary, and changes no rows: a locking read, a
    /// sequence call, an advisory lock, a side-effect function. Moves no tag.
    Primary,
    /// Changes data or schema: runs on the primary, moves tags.
    Write,
}

/// The outcome of classification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Access {
    /// What it needs.
    pub(crate) kind: Kind,
    /// For a read, the tables read; for a write, the tables written (empty
    /// when unknown: then every cached entry is invalidated).
    pub(crate) tables: Vec<String>,
    /// A schema statement (`CREATE`, `ALTER`, `DROP`, `RENAME`, `COMMENT`):
    /// the catalog is read again after it.
    pub(crate) schema: bool,
    /// A statement whose effect lives in the session (`SET`, `PREPARE`,
    /// `LISTEN`, temporary tables): on a pool it would leak to whichever
    /// request gets the connection next.
    pub(crate) session: bool,
    /// `TRUNCATE .. CASCADE` and the like: tables beyond those named change.
    pub(crate) unbounded: bool,
}

impl Access {
    fn new(kind: Kind) -> Self {
        Self {
            kind,
            tables: Vec::new(),
            schema: false,
            session: false,
            unbounded: false,
        }
    }

    /// Whether this must go to the primary.
    pub(crate) fn needs_primary(&self) -> bool {
        self.kind != Kind::Read
    }

    /// Whether it changes data.
    pub(crate) fn is_write(&self) -> bool {
        self.kind == Kind::Write
    }
}

/// Functions that write, take locks, read session state, or fail on a
/// standby (matched in any case, quoted or not).
const PRIMARY_FUNCTIONS: &[&str] = &[
    "nextval",
    "setval",
    "currval",
    "lastval",
    "pg_current_wal_lsn",
    "pg_current_wal_insert_lsn",
    "pg_current_wal_flush_lsn",
    "txid_current",
    "txid_current_if_assigned",
    "pg_current_xact_id",
    "pg_current_xact_id_if_assigned",
    "pg_notify",
    "set_config",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_backup_start",
    "pg_backup_stop",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_logical_emit_message",
    "pg_import_system_collations",
    "loread",
    "lowrite",
    "dblink_exec",
    "dblink_connect",
    "dblink_send_query",
];

/// Prefixes of function families of the same kind.
const PRIMARY_FUNCTION_PREFIXES: &[&str] = &[
    "pg_advisory_",
    "pg_try_advisory_",
    "lo_",
    "pg_stat_reset",
    "pg_create_",
    "pg_drop_",
    "pg_replication_origin_",
    "pg_replication_slot_",
    "pg_copy_",
];

/// Whether a function of this name must run on the primary.
pub(crate) fn is_primary_function(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let lower = lower.rsplit('.').next().unwrap_or(&lower); // pg_catalog.nextval
    PRIMARY_FUNCTIONS.contains(&lower)
        || PRIMARY_FUNCTION_PREFIXES
            .iter()
            .any(|p| lower.starts_with(p))
}

/// Session-level advisory locks: held by the pooled connection past the
/// statement (and past a transaction's end), so taken on one connection and
/// released on another. Refused outside a transaction like `SET`.
const SESSION_FUNCTIONS: &[&str] = &[
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "pg_advisory_unlock",
    "pg_advisory_unlock_shared",
    "pg_advisory_unlock_all",
];

/// Whether a function of this name keeps state in the session.
fn is_session_function(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let lower = lower.rsplit('.').next().unwrap_or(&lower);
    SESSION_FUNCTIONS.contains(&lower)
}

fn calls_session(tokens: &[Token<'_>]) -> bool {
    tokens.windows(2).any(|w| {
        w[1] == Token::Punct(b'(')
            && match w[0] {
                Token::Word(n) | Token::Quoted(n) => is_session_function(n),
                _ => false,
            }
    })
}

/// Whether custom SQL text (an `Expr::cust`) calls such a function.
pub(crate) fn text_needs_primary(text: &str) -> bool {
    let tokens = tokenize(text);
    calls_primary(&tokens)
}

/// Whether custom SQL text may read tables of its own (a subquery).
pub(crate) fn text_reads_tables(text: &str) -> bool {
    tokenize(text)
        .iter()
        .any(|t| t.is("SELECT") || t.is("FROM") || t.is("TABLE"))
}

fn calls_primary(tokens: &[Token<'_>]) -> bool {
    tokens.windows(2).any(|w| {
        w[1] == Token::Punct(b'(')
            && match w[0] {
                Token::Word(n) | Token::Quoted(n) => is_primary_function(n),
                _ => false,
            }
    })
}

/// Whether SeaQuery-rendered `sql` (byte text, no user strings in it:
/// values are bound) calls a primary-only function: looks only before each
/// `(`, so a plain select costs a `memchr` pass.
fn calls_primary_function(sql: &str) -> bool {
    let b = sql.as_bytes();
    memchr::memchr_iter(b'(', b).any(|open| {
        let mut end = open;
        while end > 0 && b[end - 1] == b' ' {
            end -= 1;
        }
        if end == 0 {
            return false;
        }
        let (start, stop) = if b[end - 1] == b'"' {
            match b[..end - 1].iter().rposition(|&c| c == b'"') {
                Some(q) => (q + 1, end - 1),
                None => return false,
            }
        } else {
            let mut s = end;
            while s > 0 && (b[s - 1].is_ascii_alphanumeric() || b[s - 1] == b'_') {
                s -= 1;
            }
            (s, end)
        };
        start < stop && is_primary_function(&sql[start..stop])
    })
}

/// Whether a SeaQuery-built statement, rendered as `sql`, is a plain read: a
/// `SELECT` (SeaQuery renders a `SelectStatement` with no `WITH` so, and
/// nothing else so) without a lock clause or a primary-only function.
///
/// Its tables can then only be read: PostgreSQL accepts a data-modifying
/// statement only in a top-level `WITH`, which would render first.
pub(crate) fn is_plain_select(sql: &str) -> bool {
    sql.starts_with("SELECT ") && !typed_select_needs_primary(sql)
}

/// SeaQuery renders lock clauses as ` FOR UPDATE`, ` FOR SHARE`, ` FOR NO KEY
/// UPDATE`, ` FOR KEY SHARE`.
fn typed_select_needs_primary(sql: &str) -> bool {
    static LOCK: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b" FOR "));
    LOCK.find(sql.as_bytes()).is_some() || calls_primary_function(sql)
}

/// Classifies SeaQuery-rendered text (a typed statement).
pub(crate) fn classify_typed(sql: &str) -> Access {
    if sql.starts_with("SELECT ") {
        let primary = typed_select_needs_primary(sql);
        let mut a = Access::new(if primary { Kind::Primary } else { Kind::Read });
        let tokens = tokenize(sql);
        a.session = primary && calls_session(&tokens);
        a.tables = tables_read(&tokens);
        return a;
    }
    classify_sql(sql)
}

/// The tables a (typed or raw) read names after `FROM` or `JOIN`.
pub(crate) fn read_tables(sql: &str) -> Vec<String> {
    tables_read(&tokenize(sql))
}

/// Statements that only read (unless something in them says otherwise).
const READ_STARTS: &[&str] = &["SELECT", "WITH", "VALUES", "TABLE", "SHOW", "EXPLAIN"];

/// Statements whose effect stays in the session.
const SESSION_STARTS: &[&str] = &[
    "SET",
    "RESET",
    "PREPARE",
    "DEALLOCATE",
    "LISTEN",
    "UNLISTEN",
    "DISCARD",
    "LOAD",
];

fn is_schema_keyword(w: &Token<'_>) -> bool {
    ["CREATE", "ALTER", "DROP", "RENAME", "COMMENT"]
        .iter()
        .any(|k| w.is(k))
}

/// Classifies raw SQL text: every statement of it, the most demanding wins;
/// the tables of every write are collected so that raw writes invalidate
/// what they touch.
pub(crate) fn classify_sql(sql: &str) -> Access {
    let tokens = tokenize(sql);
    let stmts = statements(&tokens);
    if stmts.is_empty() {
        return Access::new(Kind::Write);
    }
    let mut out = Access::new(Kind::Read);
    let mut unknown_tables = false;
    for s in stmts {
        let a = classify_one(s);
        out.schema |= a.schema;
        out.session |= a.session;
        out.unbounded |= a.unbounded;
        match (a.kind, out.kind) {
            (Kind::Write, _) => {
                if out.kind != Kind::Write {
                    out.tables.clear();
                }
                out.kind = Kind::Write;
                unknown_tables |= a.tables.is_empty();
                push_all(&mut out.tables, a.tables);
            }
            (Kind::Primary, Kind::Read) => {
                out.kind = Kind::Primary;
                out.tables = a.tables;
            }
            (_, Kind::Write) => {}
            (_, _) => push_all(&mut out.tables, a.tables),
        }
    }
    if out.kind == Kind::Write && (unknown_tables || out.unbounded) {
        out.tables.clear(); // one statement of unknown reach: everything
    }
    out
}

fn push_all(v: &mut Vec<String>, more: Vec<String>) {
    for t in more {
        if !v.contains(&t) {
            v.push(t);
        }
    }
}

fn classify_one(tokens: &[Token<'_>]) -> Access {
    let first = tokens.iter().find(|t| !matches!(t, Token::Punct(b'(')));
    let Some(first) = first.copied() else {
        return Access::new(Kind::Write);
    };
    let Token::Word(first_word) = first else {
        return Access::new(Kind::Write);
    };
    let mut write = Access::new(Kind::Write);
    write.tables = written_tables(tokens);
    write.schema = is_schema_keyword(&first);
    write.unbounded = first.is("TRUNCATE") && tokens.iter().any(|t| t.is("CASCADE"));
    if SESSION_STARTS.iter().any(|k| first.is(k))
        || (first.is("CREATE")
            && tokens
                .iter()
                .take(4)
                .any(|t| t.is("TEMP") || t.is("TEMPORARY")))
    {
        // changes no rows: runs on the primary, moves no tag
        let mut a = Access::new(Kind::Primary);
        a.session = !tokens.get(1).is_some_and(|t| t.is("LOCAL"));
        return a;
    }
    if first.is("LOCK") {
        return Access::new(Kind::Primary);
    }
    if !READ_STARTS
        .iter()
        .any(|k| k.eq_ignore_ascii_case(first_word))
    {
        return write;
    }
    let mut primary = false;
    for (i, tok) in tokens.iter().enumerate() {
        let Token::Word(w) = tok else { continue };
        let is = |k: &str| w.eq_ignore_ascii_case(k);
        if is("INSERT") || is("UPDATE") || is("DELETE") || is("MERGE") || is("TRUNCATE") {
            // a data-modifying CTE, or a lock clause ending in UPDATE
            let lock = i > 0
                && (tokens[i - 1].is("FOR") || tokens[i - 1].is("KEY") || tokens[i - 1].is("NO"));
            if lock {
                primary = true;
                continue;
            }
            return write;
        }
        if is("INTO") {
            return write; // SELECT .. INTO creates a table
        }
        if is("FOR")
            && let Some(next) = tokens.get(i + 1)
            && ["UPDATE", "SHARE", "NO", "KEY"].iter().any(|k| next.is(k))
        {
            primary = true;
        }
        if is("ANALYZE") && first.is("EXPLAIN") {
            // EXPLAIN ANALYZE runs the statement: as the statement does
            return classify_one(&tokens[i + 1..]);
        }
    }
    if calls_primary(tokens) {
        primary = true;
    }
    let mut a = Access::new(if primary { Kind::Primary } else { Kind::Read });
    a.session = primary && calls_session(tokens);
    a.tables = tables_read(tokens);
    a
}

fn written_tables(tokens: &[Token<'_>]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let Token::Word(_) = t else { continue };
        let prev_is = |k: &str| i > 0 && tokens[i - 1].is(k);
        let next_is = |k: &str| tokens.get(i + 1).is_some_and(|n| n.is(k));
        let (mut at, list) = if ((t.is("INSERT") || t.is("MERGE")) && next_is("INTO"))
            || (t.is("DELETE") && next_is("FROM"))
        {
            (i + 2, false)
        } else if t.is("UPDATE") && !prev_is("FOR") && !prev_is("KEY") && !prev_is("DO") {
            (i + 1, false)
        } else if t.is("TRUNCATE") {
            (i + 1 + usize::from(next_is("TABLE")), true)
        } else if (t.is("ALTER") || t.is("CREATE")) && next_is("TABLE") {
            (i + 2, false)
        } else if t.is("DROP") && next_is("TABLE") {
            (i + 2, true)
        } else if t.is("COPY") && i == 0 {
            (i + 1, false)
        } else {
            continue;
        };
        loop {
            // IF [NOT] EXISTS, ONLY
            while ["IF", "NOT", "EXISTS", "ONLY"]
                .iter()
                .any(|k| tokens.get(at).is_some_and(|t| t.is(k)))
            {
                at += 1;
            }
            let Some((name, next)) = name_at(tokens, at) else {
                break;
            };
            if !out.contains(&name) {
                out.push(name);
            }
            at = next;
            // TRUNCATE a, b / DROP TABLE a, b; `*` after a name (inheritance)
            if tokens.get(at) == Some(&Token::Punct(b'*')) {
                at += 1;
            }
            if list && tokens.get(at) == Some(&Token::Punct(b',')) {
                at += 1;
                continue;
            }
            break;
        }
    }
    out
}

fn tables_read(tokens: &[Token<'_>]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if (t.is("FROM") || t.is("JOIN"))
            && let Some((name, _)) = name_at(tokens, i + 1)
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
    #[case::explain_analyze_select("EXPLAIN ANALYZE SELECT * FROM stories", Kind::Read)]
    #[case::keyword_in_string("SELECT 'insert into x; update y' AS s", Kind::Read)]
    #[case::keyword_in_escape_string("SELECT E'it\\'s delete' AS s", Kind::Read)]
    #[case::keyword_in_quoted_ident("SELECT \"update\" FROM \"delete\"", Kind::Read)]
    #[case::keyword_in_dollar_quote("SELECT $$ drop table x $$", Kind::Read)]
    #[case::replay_lsn("SELECT pg_last_wal_replay_lsn()", Kind::Read)]
    #[case::sleep("SELECT pg_sleep(0.1)", Kind::Read)]
    #[case::semicolon_in_string("SELECT ';DROP TABLE x'", Kind::Read)]
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
    #[case::for_update("SELECT * FROM stories WHERE id = 1 FOR UPDATE", Kind::Primary)]
    #[case::for_share("select * from stories for share", Kind::Primary)]
    #[case::for_no_key_update("SELECT 1 FROM stories FOR NO KEY UPDATE", Kind::Primary)]
    #[case::for_key_share("SELECT 1 FROM stories FOR KEY SHARE", Kind::Primary)]
    #[case::skip_locked("SELECT 1 FROM stories FOR UPDATE SKIP LOCKED", Kind::Primary)]
    #[case::nowait("SELECT 1 FROM stories FOR SHARE NOWAIT", Kind::Primary)]
    #[case::nextval("SELECT nextval('stories_id_seq')", Kind::Primary)]
    #[case::setval("select SETVAL('s', 1)", Kind::Primary)]
    #[case::currval("SELECT currval('s')", Kind::Primary)]
    #[case::advisory_lock("SELECT pg_advisory_lock(1)", Kind::Primary)]
    #[case::advisory_unlock("SELECT pg_advisory_unlock(1)", Kind::Primary)]
    #[case::advisory_shared("SELECT pg_advisory_lock_shared(1)", Kind::Primary)]
    #[case::advisory_xact("SELECT pg_try_advisory_xact_lock_shared(1)", Kind::Primary)]
    #[case::advisory_unlock_all("SELECT pg_advisory_unlock_all()", Kind::Primary)]
    #[case::quoted_function("SELECT \"pg_advisory_lock\"(1)", Kind::Primary)]
    #[case::qualified_function("SELECT pg_catalog.nextval('s')", Kind::Primary)]
    #[case::large_object("SELECT lo_create(0)", Kind::Primary)]
    #[case::large_object_unlink("SELECT lo_unlink(1)", Kind::Primary)]
    #[case::terminate("SELECT pg_terminate_backend(1)", Kind::Primary)]
    #[case::cancel("SELECT pg_cancel_backend(1)", Kind::Primary)]
    #[case::set_config("SELECT set_config('a.b', 'c', false)", Kind::Primary)]
    #[case::current_wal_lsn("SELECT pg_current_wal_lsn()", Kind::Primary)]
    #[case::notify("SELECT pg_notify('c', 'x')", Kind::Primary)]
    #[case::select_into("SELECT * INTO backup FROM stories", Kind::Write)]
    #[case::explain_analyze("EXPLAIN ANALYZE DELETE FROM x", Kind::Write)]
    #[case::copy("COPY stories FROM STDIN", Kind::Write)]
    #[case::do_block("DO $$ BEGIN PERFORM 1; END $$", Kind::Write)]
    #[case::lock("LOCK TABLE stories", Kind::Primary)]
    #[case::set("SET search_path = x", Kind::Primary)]
    #[case::multi_statement("SELECT 1; CREATE TABLE x (a int)", Kind::Write)]
    #[case::multi_statement_lock("SELECT 1; SELECT pg_advisory_lock(1)", Kind::Primary)]
    #[case::empty("", Kind::Write)]
    #[case::only_comment("/* nothing */", Kind::Write)]
    #[case::gibberish("frobnicate the database", Kind::Write)]
    #[case::comment_hiding_write("/* select */ DELETE FROM stories", Kind::Write)]
    fn classifies_text(#[case] sql: &str, #[case] want: Kind) {
        assert_eq!(classify_sql(sql).kind, want, "{sql}");
    }

    #[rstest]
    #[case("SET search_path = x", true)]
    #[case("SET LOCAL statement_timeout = 1", false)]
    #[case("RESET ALL", true)]
    #[case("PREPARE p AS SELECT 1", true)]
    #[case("LISTEN c", true)]
    #[case("CREATE TEMP TABLE t (a int)", true)]
    #[case("CREATE TEMPORARY TABLE t (a int)", true)]
    #[case("DISCARD ALL", true)]
    #[case("SELECT 1; SET x = 1", true)]
    #[case("CREATE TABLE t (a int)", false)]
    #[case("SELECT 1", false)]
    #[case("SELECT pg_advisory_lock(1)", true)]
    #[case("SELECT \"pg_advisory_unlock\"(1)", true)]
    #[case("select pg_catalog.pg_try_advisory_lock_shared(1, 2)", true)]
    #[case("SELECT pg_advisory_unlock_all()", true)]
    #[case("SELECT pg_advisory_xact_lock(1)", false)]
    #[case("SELECT pg_try_advisory_xact_lock(1)", false)]
    fn tells_session_statements(#[case] sql: &str, #[case] session: bool) {
        assert_eq!(classify_sql(sql).session, session, "{sql}");
    }

    #[test]
    fn typed_session_functions_are_session_statements() {
        let sql = r#"SELECT pg_advisory_lock(1) AS "l""#;
        assert!(classify_typed(sql).session);
        let sql = r#"SELECT pg_advisory_xact_lock(1) AS "l""#;
        assert!(!classify_typed(sql).session);
        assert!(!classify_typed(r#"SELECT "id" FROM "stories""#).session);
    }

    #[rstest]
    #[case("CREATE TABLE x (id int)", true)]
    #[case("alter table stories add column x int", true)]
    #[case("/* c */ DROP TABLE IF EXISTS x", true)]
    #[case("UPDATE stories SET title = 'CREATE'", false)]
    #[case("SELECT 1", false)]
    #[case("(SELECT 1)", false)]
    #[case("SELECT 1; ALTER TABLE x ADD y int", true)]
    fn tells_schema_statements(#[case] sql: &str, #[case] schema: bool) {
        assert_eq!(classify_sql(sql).schema, schema, "{sql}");
    }

    #[rstest]
    #[case("INSERT INTO stories (a) VALUES (1)", &["stories"])]
    #[case("update public.\"Profiles\" set x = 1", &["Profiles"])]
    #[case("DELETE FROM follows", &["follows"])]
    #[case("TRUNCATE TABLE stories", &["stories"])]
    #[case("TRUNCATE a, b", &["a", "b"])]
    #[case("TRUNCATE ONLY a, public.b RESTART IDENTITY", &["a", "b"])]
    #[case("TRUNCATE a CASCADE", &[])]
    #[case("DROP TABLE a, b", &["a", "b"])]
    #[case("WITH x AS (UPDATE stories SET a = 1 RETURNING id) INSERT INTO follows SELECT 1", &["stories", "follows"])]
    #[case("DROP TABLE IF EXISTS Stories", &["stories"])]
    #[case("UPDATE a SET x = 1; DELETE FROM b", &["a", "b"])]
    #[case("UPDATE a SET x = 1; DO $$ BEGIN END $$", &[])]
    #[case("SELECT * FROM stories FOR UPDATE", &["stories"])]
    #[case("DO $$ BEGIN END $$", &[])]
    fn finds_written_tables(#[case] sql: &str, #[case] want: &[&str]) {
        assert_eq!(classify_sql(sql).tables, want, "{sql}");
    }

    #[test]
    fn plain_selects_are_told_from_their_text() {
        use entity::prelude::*;
        use sea_orm::sea_query::{Expr, Func, Query};
        use sea_orm::{DbBackend, EntityTrait, JoinType, QuerySelect, QueryTrait, RelationTrait};
        for backend in [DbBackend::Postgres, DbBackend::Sqlite] {
            let joined = Story::find()
                .join(JoinType::InnerJoin, entity::story::Relation::Author.def())
                .into_query();
            let built = backend.build(&joined);
            assert!(is_plain_select(&built.sql), "{}", built.sql);
            assert_eq!(read_tables(&built.sql), ["stories", "profiles"]);
            let locked = backend.build(&Story::find().lock_exclusive().into_query());
            // SQLite has no lock clause: SeaQuery leaves it out there
            assert_eq!(is_plain_select(&locked.sql), backend == DbBackend::Sqlite);
            for side_effect in [
                Query::select()
                    .expr(Expr::cust("NEXTVAL('stories_id_seq')"))
                    .to_owned(),
                Query::select()
                    .expr(Func::cust("pg_advisory_lock").arg(1))
                    .to_owned(),
                Query::select()
                    .expr(Func::cust("\"lo_unlink\"").arg(1))
                    .to_owned(),
                Query::select()
                    .expr(Func::cust("set_config").arg("a"))
                    .to_owned(),
            ] {
                let built = backend.build(&side_effect);
                assert!(!is_plain_select(&built.sql), "{}", built.sql);
                assert_eq!(
                    classify_typed(&built.sql).kind,
                    Kind::Primary,
                    "{}",
                    built.sql
                );
            }
            let plain_fn =
                backend.build(&Query::select().expr(Func::lower(Expr::val("A"))).to_owned());
            assert!(is_plain_select(&plain_fn.sql));
        }
        assert!(!is_plain_select("select * from stories"));
        assert!(!is_plain_select("/* x */ SELECT 1"));
    }
}
