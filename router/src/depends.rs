//! What a cached read depends on, from its shape (`analyze`) and the rows
//! it returned: the scheme of the `tag` module, applied.
//!
//! * A lookup by primary key (one table, a conjunction that fixes every key
//!   column, nothing nested or computed) depends on its rows only, also when
//!   it found nothing: inserting the key moves the row's tag.
//! * Any other read depends on the rows it returned (their keys), on the
//!   columns it uses outside its plain output list, and on its tables'
//!   membership; when the rows' keys are unknown (a projection without the
//!   key, an aggregate) also on its output columns; `DISTINCT`/`HAVING` make
//!   the output columns count too.
//! * Custom SQL makes every column of its tables count, and custom SQL that
//!   may read tables of its own (a subquery in text) depends on every write.
//! * Everything depends on each table's `Table` tag and on `All`.

use crate::analyze::Shape;
use crate::tag::{TagId, key_text};
use std::collections::BTreeSet;

/// A table whose rows a read returns, and its key columns as the entity
/// declares them.
#[derive(Clone, Debug)]
pub(crate) struct Returned {
    pub(crate) table: &'static str,
    pub(crate) pk: Vec<String>,
}

/// What a read depends on before it runs, and how to finish that from its
/// rows.
#[derive(Clone, Debug, Default)]
pub(crate) struct Plan {
    /// Known before the load.
    pub(crate) statics: Vec<TagId>,
    /// Tables whose returned rows are tracked by key; their output columns
    /// count instead when a row's key cannot be read.
    pub(crate) by_row: Vec<(&'static str, Vec<TagId>)>,
}

impl Plan {
    /// Every tag, given the returned rows' keys by table (`None`: unreadable).
    pub(crate) fn finish(&self, keys: &[(&str, Option<Vec<String>>)]) -> Vec<TagId> {
        let mut out = self.statics.clone();
        let mut fallback = vec![false; self.by_row.len()];
        for (table, k) in keys {
            let Some(i) = self.by_row.iter().position(|(t, _)| t == table) else {
                continue;
            };
            match k {
                Some(k) => out.push(TagId::row(table, k)),
                None => fallback[i] = true,
            }
        }
        for (i, (_, outputs)) in self.by_row.iter().enumerate() {
            if fallback[i] {
                out.extend(outputs.iter().copied());
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The key of a model's row, as canonical texts (`None` for a key type
/// without one).
pub(crate) fn model_key<M: sea_orm::ModelTrait>(m: &M) -> Option<Vec<String>> {
    use sea_orm::{Iterable, PrimaryKeyToColumn};
    <<M::Entity as sea_orm::EntityTrait>::PrimaryKey as Iterable>::iter()
        .map(|pk| key_text(&m.get(pk.into_column())))
        .collect()
}

/// The key columns an entity declares.
pub(crate) fn entity_pk<E: sea_orm::EntityTrait>() -> Vec<String> {
    use sea_orm::{IdenStatic, Iterable, PrimaryKeyToColumn};
    <E::PrimaryKey as Iterable>::iter()
        .map(|pk| pk.into_column().as_str().to_owned())
        .collect()
}

fn of_table<'a>(c: &'a (Option<String>, String), tables: &'a [String]) -> Vec<&'a str> {
    match &c.0 {
        Some(t) => vec![t.as_str()],
        None => tables.iter().map(String::as_str).collect(),
    }
}

/// The dependencies of a read of `shape` returning rows of `returned`;
/// `catalog_pk` tells a table's key as the database declares it (rows are
/// tracked only where it agrees with the entity).
pub(crate) fn plan(
    shape: &Shape,
    returned: &[Returned],
    catalog_pk: &dyn Fn(&str) -> Option<Vec<String>>,
) -> Plan {
    let mut statics: BTreeSet<TagId> = BTreeSet::new();
    statics.insert(TagId::ALL);
    for t in &shape.tables {
        statics.insert(TagId::table(t));
    }
    if shape.hidden_tables {
        statics.insert(TagId::ANY_WRITE);
    }
    let agrees = |r: &Returned| catalog_pk(r.table).is_none_or(|pk| pk == r.pk);
    // a lookup by key
    if let ([table], [r]) = (shape.tables.as_slice(), returned)
        && r.table == table
        && agrees(r)
        && !r.pk.is_empty()
        && !shape.nested
        && !shape.computed_output
        && !shape.grouped
        && !shape.custom_sql
        && shape.opaque.is_empty()
        && !shape.where_disjunctive
        && let Some(keys) = lookup_keys(shape, table, &r.pk)
    {
        for k in keys {
            statics.insert(TagId::row(table, &k));
        }
        return Plan {
            statics: statics.into_iter().collect(),
            by_row: Vec::new(),
        };
    }
    for t in &shape.tables {
        statics.insert(TagId::members(t));
    }
    for c in &shape.deps {
        for t in of_table(c, &shape.tables) {
            statics.insert(TagId::column(t, &c.1));
        }
    }
    for t in &shape.opaque {
        match t {
            Some(t) => {
                statics.insert(TagId::updates(t));
            }
            None => {
                for t in &shape.tables {
                    statics.insert(TagId::updates(t));
                }
            }
        }
    }
    let output_tags = |table: &str| -> Vec<TagId> {
        shape
            .outputs
            .iter()
            .filter(|c| of_table(c, &shape.tables).contains(&table))
            .map(|c| TagId::column(table, &c.1))
            .collect()
    };
    let mut by_row = Vec::new();
    for t in &shape.tables {
        let tracked = returned
            .iter()
            .find(|r| r.table == t && !r.pk.is_empty() && agrees(r))
            .filter(|_| !shape.grouped);
        match tracked {
            Some(r) => by_row.push((r.table, output_tags(t))),
            None => statics.extend(output_tags(t)),
        }
    }
    Plan {
        statics: statics.into_iter().collect(),
        by_row,
    }
}

/// The keys a conjunction fixes: every key column equal to a value (or, for
/// a one-column key, in a list of values).
fn lookup_keys(shape: &Shape, table: &str, pk: &[String]) -> Option<Vec<Vec<String>>> {
    let values_of = |col: &str| -> Option<Vec<String>> {
        shape
            .equalities
            .iter()
            .find(|((t, c), _)| c == col && t.as_deref().is_none_or(|t| t == table))
            .and_then(|(_, vs)| vs.iter().map(key_text).collect())
    };
    let per_col: Vec<Vec<String>> = pk.iter().map(|c| values_of(c)).collect::<Option<_>>()?;
    match per_col.as_slice() {
        [one] => Some(one.iter().map(|v| vec![v.clone()]).collect()),
        many if many.iter().all(|v| v.len() == 1) => {
            Some(vec![many.iter().map(|v| v[0].clone()).collect()])
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::shape;
    use entity::prelude::*;
    use entity::{follow, story};
    use sea_orm::{
        ColumnTrait, EntityTrait, JoinType, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
        RelationTrait,
    };

    fn stories() -> Returned {
        Returned {
            table: "stories",
            pk: vec!["id".into()],
        }
    }

    fn none(_: &str) -> Option<Vec<String>> {
        None
    }

    fn k(s: &str) -> Vec<String> {
        vec![s.to_owned()]
    }

    #[test]
    fn a_lookup_by_key_depends_on_its_row_only() {
        let p = plan(
            &shape(&Story::find_by_id(42).into_query()),
            &[stories()],
            &none,
        );
        assert!(p.statics.contains(&TagId::row("stories", &k("42"))));
        assert!(p.statics.contains(&TagId::table("stories")));
        assert!(
            !p.statics.contains(&TagId::members("stories")),
            "not on membership"
        );
        assert!(!p.statics.contains(&TagId::column("stories", "title")));
        assert!(p.by_row.is_empty());
        // a lookup narrowed by the row's own columns still depends on the row only
        let q = Story::find_by_id(42).filter(story::Column::Published.eq(true));
        assert!(
            plan(&shape(&q.into_query()), &[stories()], &none)
                .by_row
                .is_empty()
        );
        // but not when the entity's key is not the table's
        let other = |_: &str| Some(vec!["uuid".to_owned()]);
        let p = plan(
            &shape(&Story::find_by_id(42).into_query()),
            &[stories()],
            &other,
        );
        assert!(p.statics.contains(&TagId::members("stories")));
    }

    #[test]
    fn a_listing_depends_on_its_rows_filters_order_and_membership() {
        let q = Story::find()
            .filter(story::Column::Published.eq(true))
            .order_by_desc(story::Column::PublishedAt)
            .limit(20);
        let p = plan(&shape(&q.into_query()), &[stories()], &none);
        for t in [
            TagId::members("stories"),
            TagId::column("stories", "published"),
            TagId::column("stories", "published_at"),
        ] {
            assert!(p.statics.contains(&t));
        }
        assert!(
            !p.statics.contains(&TagId::column("stories", "title")),
            "title is only output"
        );
        assert!(!p.statics.contains(&TagId::column("stories", "view_count")));
        assert_eq!(p.by_row.len(), 1);
        let all = p.finish(&[("stories", Some(k("7"))), ("stories", Some(k("8")))]);
        assert!(all.contains(&TagId::row("stories", &k("7"))));
        // a row whose key cannot be read: the output columns count instead
        let all = p.finish(&[("stories", None)]);
        assert!(all.contains(&TagId::column("stories", "title")));
    }

    #[test]
    fn a_count_depends_on_its_filters_and_membership() {
        use sea_orm::sea_query::{Asterisk, Expr, ExprTrait, SelectStatement};
        let inner = Story::find()
            .filter(story::Column::AuthorId.eq(5))
            .into_query();
        let q = SelectStatement::new()
            .expr(Expr::col(Asterisk).count())
            .from_subquery(inner, "sub_query")
            .to_owned();
        let p = plan(&shape(&q), &[], &none);
        assert!(p.statics.contains(&TagId::column("stories", "author_id")));
        assert!(p.statics.contains(&TagId::members("stories")));
        assert!(!p.statics.contains(&TagId::column("stories", "view_count")));
        assert!(!p.statics.contains(&TagId::column("stories", "title")));
    }

    #[test]
    fn joined_tables_depend_on_what_they_use() {
        let q = Profile::find()
            .join(JoinType::InnerJoin, follow::Relation::Follower.def().rev())
            .filter(follow::Column::FollowingId.eq(7));
        let profiles = Returned {
            table: "profiles",
            pk: vec!["id".into()],
        };
        let p = plan(&shape(&q.into_query()), &[profiles], &none);
        assert!(p.statics.contains(&TagId::members("follows")));
        assert!(
            p.statics
                .contains(&TagId::column("follows", "following_id"))
        );
        assert!(p.statics.contains(&TagId::column("follows", "follower_id")));
        assert!(!p.statics.contains(&TagId::column("follows", "created_at")));
        assert!(!p.statics.contains(&TagId::column("profiles", "bio")));
    }

    #[test]
    fn custom_sql_depends_on_every_column_and_subqueries_in_text_on_every_write() {
        use sea_orm::sea_query::Expr;
        let q = Story::find().filter(Expr::cust("title ILIKE 'a%'"));
        let p = plan(&shape(&q.into_query()), &[stories()], &none);
        assert!(p.statics.contains(&TagId::updates("stories")));
        assert!(!p.statics.contains(&TagId::ANY_WRITE));
        let q = Story::find().filter(Expr::cust("id IN (SELECT 1 FROM other)"));
        let p = plan(&shape(&q.into_query()), &[stories()], &none);
        assert!(p.statics.contains(&TagId::ANY_WRITE));
    }
}
