//! What a SeaQuery `SELECT` reads, from its structure: the tables, the
//! columns it uses outside its plain output list (filters, order, grouping,
//! joins, aggregates, `DISTINCT`, subqueries), its plain output columns, the
//! equalities of its top-level `WHERE` (to recognize a lookup by primary
//! key), and whether it must run on the primary (a lock clause, a function
//! with side effects).
//!
//! SeaQuery keeps a statement's parts private, but renders them through the
//! overridable methods of its `QueryBuilder` trait. [`Collector`] is a
//! `QueryBuilder` that renders nothing and records what each method is
//! given: every clause of the statement passes through it, in SeaQuery's own
//! walk, so nothing is parsed back from SQL text.

use crate::classify;
use sea_orm::sea_query::{
    BinOper, ColumnName, ColumnRef, ConditionHolder, ConditionHolderContents, EscapeBuilder,
    ExplainStatement, Expr, Func, JoinExpr, LockClause, LogicalChainOper, Oper,
    OperLeftAssocDecider, PrecedenceDecider, QueryBuilder, Quote, QuotedBuilder, SelectDistinct,
    SelectExpr, SelectInto, SelectStatement, SqlWriter, SubQueryStatement, TableName, TableRef,
    TableRefBuilder, UnionType, Value, WithClause,
};
use std::cell::RefCell;
use std::collections::BTreeSet;

/// A column, by table (`None`: unqualified, it may be any table's).
pub(crate) type Col = (Option<String>, String);

/// What a `SELECT` reads, as its structure says.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Shape {
    /// Every table named anywhere (aliases resolved), first seen first.
    pub(crate) tables: Vec<String>,
    /// The tables of the outermost `FROM`.
    pub(crate) from: Vec<String>,
    /// Columns used outside the plain output list.
    pub(crate) deps: BTreeSet<Col>,
    /// Plain output columns of the outermost select list.
    pub(crate) outputs: BTreeSet<Col>,
    /// The outermost select list has something other than plain columns
    /// (an aggregate, an expression, `*`).
    pub(crate) computed_output: bool,
    /// Tables some part of which cannot be told column by column (custom
    /// SQL, `t.*` inside an expression): all of their columns count.
    pub(crate) opaque: BTreeSet<Option<String>>,
    /// Custom SQL (or a set-returning function): its columns cannot be
    /// told apart.
    pub(crate) custom_sql: bool,
    /// Custom SQL that may read tables the structure does not name (it says
    /// `SELECT` or `FROM`), or a set-returning function in `FROM`.
    pub(crate) hidden_tables: bool,
    /// Joins, subqueries, unions or common table expressions.
    pub(crate) nested: bool,
    /// `DISTINCT` or `HAVING` on the outermost select.
    pub(crate) grouped: bool,
    /// The outermost `WHERE` as a conjunction: `column = value` and
    /// `column IN (values)` terms (other terms are not listed).
    pub(crate) equalities: Vec<(Col, Vec<Value>)>,
    /// The outermost `WHERE` is not a plain conjunction (an `OR` at its top).
    pub(crate) where_disjunctive: bool,
    /// A lock clause, or a function with side effects: run on the primary.
    pub(crate) needs_primary: bool,
}

/// Analyzes `stmt`.
pub(crate) fn shape(stmt: &SelectStatement) -> Shape {
    let c = Collector::default();
    let mut sink = Sink;
    c.prepare_select_statement(stmt, &mut sink);
    c.finish()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FrameKind {
    /// A subquery in `FROM`: its outputs count only if the outer query
    /// names its columns.
    From(usize),
    /// Any other nested statement.
    Nested,
}

#[derive(Default)]
struct State {
    depth: u32,
    frames: Vec<(FrameKind, u32)>,
    /// Inside the outermost select list, in a plain output column.
    output: bool,
    /// Function calls being walked (`COUNT(*)` names no column).
    in_function: u32,
    /// (alias, real table)
    aliases: Vec<(String, String)>,
    /// FROM-subquery aliases and the columns their select lists output.
    sub_outputs: Vec<(String, Vec<Col>, bool)>,
    shape: Shape,
}

/// The recording `QueryBuilder`.
#[derive(Default)]
struct Collector(RefCell<State>);

/// Discards what the builder writes.
struct Sink;

impl std::fmt::Write for Sink {
    fn write_str(&mut self, _: &str) -> std::fmt::Result {
        Ok(())
    }
}

impl std::fmt::Display for Sink {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Ok(())
    }
}

impl SqlWriter for Sink {
    fn push_param<T: QueryBuilder>(&mut self, _: Value, _: &T) {}
    fn as_writer(&mut self) -> &mut dyn std::fmt::Write {
        self
    }
}

fn name(t: &TableName) -> String {
    t.1.to_string()
}

fn push_unique(v: &mut Vec<String>, t: String) {
    if !v.contains(&t) {
        v.push(t);
    }
}

/// Flattens a top-level `AND` tree into its terms.
fn conjuncts<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
    match e {
        Expr::Binary(l, BinOper::And, r) => {
            conjuncts(l, out);
            conjuncts(r, out);
        }
        other => out.push(other),
    }
}

fn column_of(e: &Expr) -> Option<Col> {
    match e {
        Expr::Column(ColumnRef::Column(ColumnName(t, c))) => {
            Some((t.as_ref().map(name), c.to_string()))
        }
        _ => None,
    }
}

/// `column = value`, `value = column` or `column IN (values)`.
fn equality(e: &Expr) -> Option<(Col, Vec<Value>)> {
    let Expr::Binary(l, op, r) = e else {
        return None;
    };
    match op {
        BinOper::Equal => match (column_of(l), r.as_ref()) {
            (Some(c), Expr::Value(v)) => Some((c, vec![v.clone()])),
            _ => match (l.as_ref(), column_of(r)) {
                (Expr::Value(v), Some(c)) => Some((c, vec![v.clone()])),
                _ => None,
            },
        },
        BinOper::In => {
            let c = column_of(l)?;
            let values = match r.as_ref() {
                Expr::Tuple(items) => items
                    .iter()
                    .map(|i| match i {
                        Expr::Value(v) => Some(v.clone()),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()?,
                Expr::Values(vs) => vs.clone(),
                _ => return None,
            };
            Some((c, values))
        }
        _ => None,
    }
}

impl Collector {
    fn finish(self) -> Shape {
        let st = self.0.into_inner();
        let mut shape = st.shape;
        // a FROM subquery's outputs are read only if the outer query names them
        for (_, cols, used) in st.sub_outputs {
            if used {
                shape.deps.extend(cols);
            }
        }
        let resolve = |c: Col| -> Col {
            match c.0 {
                Some(t) => match st.aliases.iter().find(|(a, _)| *a == t) {
                    Some((_, real)) => (Some(real.clone()), c.1),
                    None => (Some(t), c.1),
                },
                None => c,
            }
        };
        shape.deps = shape.deps.into_iter().map(resolve).collect();
        shape.outputs = shape.outputs.into_iter().map(resolve).collect();
        shape.equalities = shape
            .equalities
            .into_iter()
            .map(|(c, v)| (resolve(c), v))
            .collect();
        shape.opaque = shape
            .opaque
            .into_iter()
            .map(|t| t.map(|t| resolve((Some(t), String::new())).0.unwrap_or_default()))
            .collect();
        shape
    }

    fn enter(&self, kind: FrameKind) {
        let mut st = self.0.borrow_mut();
        st.depth += 1;
        let d = st.depth;
        st.frames.push((kind, d));
        st.shape.nested = true;
    }

    fn leave(&self) {
        let mut st = self.0.borrow_mut();
        st.depth -= 1;
        st.frames.pop();
    }

    /// The FROM-subquery whose select list is being walked, if any.
    fn sub_output_frame(&self) -> Option<usize> {
        let st = self.0.borrow();
        match st.frames.last() {
            Some((FrameKind::From(i), d)) if *d == st.depth => Some(*i),
            _ => None,
        }
    }

    fn record_column(&self, c: Col) {
        let mut st = self.0.borrow_mut();
        // a column named through a FROM subquery's alias reads its outputs
        if let Some(t) = &c.0
            && let Some(sub) = st.sub_outputs.iter_mut().find(|(a, _, _)| a == t)
        {
            sub.2 = true;
            return;
        }
        if c.0.is_none() {
            // may be a FROM subquery's output column too
            for sub in &mut st.sub_outputs {
                sub.2 = true;
            }
        }
        if st.output {
            st.shape.outputs.insert(c);
        } else {
            st.shape.deps.insert(c);
        }
    }
}

impl QuotedBuilder for Collector {
    fn quote(&self) -> Quote {
        Quote::new(b'"')
    }
}

impl EscapeBuilder for Collector {}

impl TableRefBuilder for Collector {}

impl OperLeftAssocDecider for Collector {
    fn well_known_left_associative(&self, _: &BinOper) -> bool {
        false
    }
}

impl PrecedenceDecider for Collector {
    fn inner_expr_well_known_greater_precedence(&self, _: &Expr, _: &Oper) -> bool {
        false
    }
}

impl QueryBuilder for Collector {
    fn prepare_query_statement(&self, query: &SubQueryStatement, sql: &mut impl SqlWriter) {
        self.enter(FrameKind::Nested);
        match query {
            SubQueryStatement::SelectStatement(s) => self.prepare_select_statement(s, sql),
            SubQueryStatement::InsertStatement(s) => {
                self.0.borrow_mut().shape.needs_primary = true;
                self.prepare_insert_statement(s, sql)
            }
            SubQueryStatement::UpdateStatement(s) => {
                self.0.borrow_mut().shape.needs_primary = true;
                self.prepare_update_statement(s, sql)
            }
            SubQueryStatement::DeleteStatement(s) => {
                self.0.borrow_mut().shape.needs_primary = true;
                self.prepare_delete_statement(s, sql)
            }
            SubQueryStatement::WithStatement(w) => self.prepare_with_query(w, sql),
        }
        self.leave();
    }

    fn prepare_select_into(&self, _: &SelectInto, _: &mut impl SqlWriter) {
        self.0.borrow_mut().shape.needs_primary = true;
    }

    fn prepare_explain_statement(&self, _: &ExplainStatement, _: &mut impl SqlWriter) {}

    fn prepare_value(&self, _: Value, _: &mut impl SqlWriter) {}

    fn prepare_union_statement(
        &self,
        _: UnionType,
        select: &SelectStatement,
        sql: &mut impl SqlWriter,
    ) {
        self.enter(FrameKind::Nested);
        self.prepare_select_statement(select, sql);
        self.leave();
    }

    fn prepare_with_clause(&self, with_clause: &WithClause, sql: &mut impl SqlWriter) {
        self.0.borrow_mut().shape.nested = true;
        // the common tables are walked as nested statements (their query
        // goes through `prepare_query_statement`)
        self.prepare_with_clause_common_tables(with_clause, sql);
        self.prepare_with_clause_recursive_options(with_clause, sql);
    }

    fn prepare_select_distinct(&self, distinct: &SelectDistinct, _: &mut impl SqlWriter) {
        let mut st = self.0.borrow_mut();
        if st.depth == 0 && !matches!(distinct, SelectDistinct::All) {
            st.shape.grouped = true;
        }
        if let SelectDistinct::DistinctOn(cols) = distinct {
            for c in cols {
                if let ColumnRef::Column(ColumnName(t, c)) = c {
                    st.shape.deps.insert((t.as_ref().map(name), c.to_string()));
                }
            }
        }
    }

    fn prepare_select_lock(&self, _: &LockClause, _: &mut impl SqlWriter) {
        self.0.borrow_mut().shape.needs_primary = true;
    }

    fn prepare_select_expr(&self, select_expr: &SelectExpr, sql: &mut impl SqlWriter) {
        let outermost = self.0.borrow().depth == 0;
        if let Some(i) = self.sub_output_frame() {
            // a FROM subquery's output: recorded aside until we know whether
            // the outer query reads it
            let before = self.0.borrow().shape.deps.clone();
            self.prepare_expr(&select_expr.expr, sql);
            let mut st = self.0.borrow_mut();
            let added: Vec<Col> = st.shape.deps.difference(&before).cloned().collect();
            for c in &added {
                st.shape.deps.remove(c);
            }
            st.sub_outputs[i].1.extend(added);
            return;
        }
        if outermost && select_expr.window.is_none() {
            match &select_expr.expr {
                Expr::Column(ColumnRef::Column(_)) => {
                    self.0.borrow_mut().output = true;
                    self.prepare_expr(&select_expr.expr, sql);
                    self.0.borrow_mut().output = false;
                    return;
                }
                _ => self.0.borrow_mut().shape.computed_output = true,
            }
        } else if outermost {
            self.0.borrow_mut().shape.computed_output = true;
        }
        self.prepare_expr(&select_expr.expr, sql);
        if let Some(sea_orm::sea_query::WindowSelectType::Query(w)) = &select_expr.window {
            self.prepare_window_statement(w, sql);
        }
    }

    fn prepare_join_expr(&self, join_expr: &JoinExpr, sql: &mut impl SqlWriter) {
        self.0.borrow_mut().shape.nested = true;
        self.prepare_table_ref(&join_expr.table, sql);
        if let Some(on) = &join_expr.on {
            self.prepare_join_on(on, sql);
        }
    }

    fn prepare_table_ref(&self, table_ref: &TableRef, sql: &mut impl SqlWriter) {
        match table_ref {
            TableRef::Table(t, alias) => {
                let real = name(t);
                let mut st = self.0.borrow_mut();
                if let Some(a) = alias {
                    st.aliases.push((a.to_string(), real.clone()));
                }
                if st.depth == 0 {
                    push_unique(&mut st.shape.from, real.clone());
                }
                push_unique(&mut st.shape.tables, real);
            }
            TableRef::SubQuery(q, alias) => {
                let i = {
                    let mut st = self.0.borrow_mut();
                    st.sub_outputs.push((alias.to_string(), Vec::new(), false));
                    st.sub_outputs.len() - 1
                };
                self.enter(FrameKind::From(i));
                self.prepare_select_statement(q, sql);
                self.leave();
            }
            TableRef::ValuesList(..) => {}
            // a set-returning function (or a form of a later SeaQuery): it
            // may read anything
            _ => {
                let mut st = self.0.borrow_mut();
                st.shape.custom_sql = true;
                st.shape.hidden_tables = true;
            }
        }
    }

    fn prepare_column_ref(&self, column_ref: &ColumnRef, _: &mut impl SqlWriter) {
        match column_ref {
            ColumnRef::Column(ColumnName(t, c)) => {
                self.record_column((t.as_ref().map(name), c.to_string()));
            }
            ColumnRef::Asterisk(t) => {
                let mut st = self.0.borrow_mut();
                if st.in_function > 0 && t.is_none() {
                    return; // COUNT(*): rows, not columns
                }
                if st.depth == 0 && st.output {
                    st.shape.computed_output = true;
                }
                let t = t.as_ref().map(name);
                if let Some(name) = &t
                    && let Some(sub) = st.sub_outputs.iter_mut().find(|(a, _, _)| a == name)
                {
                    sub.2 = true;
                    return;
                }
                for sub in &mut st.sub_outputs {
                    sub.2 = true;
                }
                st.shape.opaque.insert(t);
            }
            _ => {
                let mut st = self.0.borrow_mut();
                st.shape.opaque.insert(None);
            }
        }
    }

    fn prepare_expr(&self, e: &Expr, sql: &mut impl SqlWriter) {
        match e {
            Expr::Custom(text) | Expr::CustomWithExpr(text, _) => {
                let mut st = self.0.borrow_mut();
                st.shape.custom_sql = true;
                st.shape.opaque.insert(None);
                if classify::text_reads_tables(text) {
                    st.shape.hidden_tables = true;
                }
                if classify::text_needs_primary(text) {
                    st.shape.needs_primary = true;
                }
            }
            _ => {}
        }
        let function = matches!(e, Expr::FunctionCall(_));
        if function {
            self.0.borrow_mut().in_function += 1;
        }
        self.prepare_expr_common(e, sql);
        if function {
            self.0.borrow_mut().in_function -= 1;
        }
    }

    fn prepare_function_name(&self, function: &Func, sql: &mut impl SqlWriter) {
        if let Func::Custom(iden) = function
            && classify::is_primary_function(&iden.to_string())
        {
            self.0.borrow_mut().shape.needs_primary = true;
        }
        self.prepare_function_name_common(function, sql);
    }

    fn prepare_condition(
        &self,
        condition: &ConditionHolder,
        keyword: &str,
        sql: &mut impl SqlWriter,
    ) {
        let outermost = self.0.borrow().depth == 0;
        if outermost
            && keyword == "HAVING"
            && !matches!(condition.contents, ConditionHolderContents::Empty)
        {
            self.0.borrow_mut().shape.grouped = true;
        }
        if outermost && keyword == "WHERE" {
            let mut terms: Vec<Expr> = Vec::new();
            let mut disjunctive = false;
            match &condition.contents {
                ConditionHolderContents::Empty => {}
                ConditionHolderContents::Chain(chain) => {
                    for (i, link) in chain.iter().enumerate() {
                        match link {
                            LogicalChainOper::And(e) => terms.push(e.clone()),
                            LogicalChainOper::Or(e) => {
                                disjunctive |= i > 0;
                                terms.push(e.clone());
                            }
                        }
                    }
                }
                ConditionHolderContents::Condition(c) => terms.push(c.clone().into()),
            }
            let mut flat = Vec::new();
            for t in &terms {
                conjuncts(t, &mut flat);
            }
            let mut st = self.0.borrow_mut();
            st.shape.where_disjunctive |= disjunctive
                || flat
                    .iter()
                    .any(|t| matches!(t, Expr::Binary(_, BinOper::Or, _)));
            if !disjunctive {
                for t in flat {
                    if let Some(eq) = equality(t) {
                        st.shape.equalities.push(eq);
                    }
                }
            }
        }
        match &condition.contents {
            ConditionHolderContents::Empty => {}
            ConditionHolderContents::Chain(chain) => {
                for (i, link) in chain.iter().enumerate() {
                    self.prepare_logical_chain_oper(link, i, chain.len(), sql);
                }
            }
            ConditionHolderContents::Condition(c) => self.prepare_condition_where(c, sql),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use entity::prelude::*;
    use entity::{follow, profile, story};
    use sea_orm::sea_query::{Expr, ExprTrait, Func, Query};
    use sea_orm::{
        ColumnTrait, EntityTrait, JoinType, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
        RelationTrait,
    };

    fn cols(s: &BTreeSet<Col>) -> Vec<String> {
        s.iter()
            .map(|(t, c)| format!("{}.{c}", t.as_deref().unwrap_or("?")))
            .collect()
    }

    #[test]
    fn a_lookup_by_key_has_its_equality_and_no_dependencies() {
        let s = shape(&Story::find_by_id(42).into_query());
        assert_eq!(s.tables, ["stories"]);
        assert!(!s.nested && !s.computed_output && !s.grouped && !s.needs_primary);
        assert_eq!(s.equalities.len(), 1);
        assert_eq!(s.equalities[0].0, (Some("stories".into()), "id".into()));
        assert_eq!(s.equalities[0].1, vec![sea_orm::Value::BigInt(Some(42))]);
        assert!(s.deps.contains(&(Some("stories".into()), "id".into())));
        assert_eq!(s.outputs.len(), 11, "every column of the model is output");
    }

    #[test]
    fn a_listing_depends_on_its_filter_and_order_columns_only() {
        let q = Story::find()
            .filter(story::Column::Published.eq(true))
            .order_by_desc(story::Column::PublishedAt)
            .order_by_desc(story::Column::Id)
            .limit(20)
            .offset(40)
            .into_query();
        let s = shape(&q);
        assert_eq!(
            cols(&s.deps),
            ["stories.id", "stories.published", "stories.published_at"]
        );
        assert!(!s.nested);
    }

    #[test]
    fn joins_and_subqueries_name_every_table_and_column() {
        let followers = Profile::find()
            .join(JoinType::InnerJoin, follow::Relation::Follower.def().rev())
            .filter(follow::Column::FollowingId.eq(7))
            .order_by_desc(follow::Column::CreatedAt)
            .into_query();
        let s = shape(&followers);
        assert_eq!(s.tables, ["profiles", "follows"]);
        assert!(s.nested);
        assert_eq!(
            cols(&s.deps),
            [
                "follows.created_at",
                "follows.follower_id",
                "follows.following_id",
                "profiles.id"
            ]
        );

        let sub = Query::select()
            .column(follow::Column::FollowingId)
            .from(follow::Entity)
            .and_where(Expr::col(follow::Column::FollowerId).eq(3))
            .to_owned();
        let feed = Story::find()
            .filter(story::Column::AuthorId.in_subquery(sub))
            .into_query();
        let s = shape(&feed);
        assert_eq!(s.tables, ["stories", "follows"]);
        assert_eq!(s.from, ["stories"]);
        assert!(
            cols(&s.deps).contains(&"?.following_id".to_owned())
                || cols(&s.deps).contains(&"follows.following_id".to_owned())
        );
    }

    #[test]
    fn a_count_reads_its_filters_not_the_inner_select_list() {
        let q = Story::find()
            .filter(story::Column::AuthorId.eq(5))
            .into_query();
        // SeaORM's count: SELECT COUNT(*) FROM (SELECT ...) AS sub_query
        let counted = sea_orm::sea_query::SelectStatement::new()
            .expr(Expr::col(sea_orm::sea_query::Asterisk).count())
            .from_subquery(q, "sub_query")
            .to_owned();
        let s = shape(&counted);
        assert_eq!(cols(&s.deps), ["stories.author_id"]);
        assert!(s.computed_output && s.nested);
    }

    #[test]
    fn custom_sql_and_side_effects_are_seen() {
        let q = Story::find()
            .filter(Expr::cust("title ILIKE 'a%'"))
            .into_query();
        let s = shape(&q);
        assert!(s.custom_sql && s.opaque.contains(&None));
        let lock = Story::find().lock_exclusive().into_query();
        assert!(shape(&lock).needs_primary);
        let f = Query::select()
            .expr(Func::cust("pg_advisory_lock").arg(1))
            .to_owned();
        assert!(shape(&f).needs_primary);
        let f = Query::select()
            .expr(Expr::cust("set_config('a', 'b', false)"))
            .to_owned();
        assert!(shape(&f).needs_primary);
        let plain = Query::select()
            .expr(Func::cust("lower").arg("A"))
            .to_owned();
        assert!(!shape(&plain).needs_primary);
    }

    #[test]
    fn or_at_the_top_is_not_a_conjunction() {
        let q = Story::find()
            .filter(
                sea_orm::Condition::any()
                    .add(story::Column::Id.eq(1))
                    .add(story::Column::Id.eq(2)),
            )
            .into_query();
        let s = shape(&q);
        assert!(s.where_disjunctive);
        let q = Profile::find_by_id(1)
            .filter(profile::Column::Bio.eq(""))
            .into_query();
        let s = shape(&q);
        assert!(!s.where_disjunctive);
        assert_eq!(s.equalities.len(), 2);
    }
}
