//! Row- and column-precise invalidation, tested against the database: a
//! seeded random run of interleaved writes (inserts, updates of random
//! column sets, deletes, by key and by filter, upserts, raw SQL, cascades,
//! in and out of transactions) and cached reads from a fixed family, on two
//! `Db` instances sharing the primary, the replicas and Redis. After each
//! write, once the replicas replayed it and both instances applied its
//! invalidation, every cached read must equal the same read run uncached on
//! the primary.
//!
//! `SEAWAY_DIFF_SEED` replays a run; `SEAWAY_DIFF_OPS` sets its length
//! (10,000 by default).

use chrono::{TimeZone, Utc};
use entity::prelude::*;
use entity::{follow, profile, story};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sea_orm::sea_query::{Expr, ExprTrait, NullOrdering, OnConflict, Order, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    IntoActiveModel, JoinType, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, RelationTrait,
    Set, TransactionTrait,
};
use seaway::Db;
use seaway::prelude::*;
use seaway_tests::{TestDb, cluster, wait_for};
use std::time::{Duration, Instant};

const GENRES: &[Option<&str>] = &[None, Some("a"), Some("b"), Some("c")];
const TITLES: &[&str] = &["alpha", "beta", "gamma", "delta", "epsilon"];

fn at(n: i64) -> chrono::DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + n, 0)
        .single()
        .expect("time")
}

async fn ids<E: EntityTrait>(p: &DatabaseConnection, col: impl ColumnTrait) -> Vec<i64> {
    E::find()
        .select_only()
        .column(col)
        .into_tuple::<i64>()
        .all(p)
        .await
        .expect("ids")
}

fn pick(rng: &mut StdRng, v: &[i64]) -> i64 {
    if v.is_empty() {
        1
    } else {
        v[rng.random_range(0..v.len())]
    }
}

/// One write, through `c` (a `Db` or a transaction on one).
async fn write<C: ConnectionTrait>(
    rng: &mut StdRng,
    c: &C,
    p: &DatabaseConnection,
    n: i64,
) -> String {
    let profiles = ids::<Profile>(p, profile::Column::Id).await;
    let stories = ids::<Story>(p, story::Column::Id).await;
    let kind = rng.random_range(0..14);
    let r: Result<(), sea_orm::DbErr> = match kind {
        0 | 1 => story::ActiveModel {
            author_id: Set(pick(rng, &profiles)),
            title: Set(TITLES[rng.random_range(0..TITLES.len())].into()),
            body: Set("b".into()),
            genre: Set(GENRES[rng.random_range(0..GENRES.len())].map(str::to_owned)),
            published: Set(rng.random_bool(0.6)),
            featured: Set(rng.random_bool(0.3)),
            view_count: Set(rng.random_range(0..5)),
            published_at: Set(Some(at(rng.random_range(0..50)))),
            created_at: Set(at(n)),
            updated_at: Set(at(n)),
            ..Default::default()
        }
        .insert(c)
        .await
        .map(|_| ()),
        2 | 3 => {
            // an update of a random set of columns of one row, as SeaORM's
            // ActiveModel sends it
            match Story::find_by_id(pick(rng, &stories))
                .one(p)
                .await
                .expect("row")
            {
                Some(m) => {
                    let mut am = m.into_active_model();
                    if rng.random_bool(0.5) {
                        am.title = Set(TITLES[rng.random_range(0..TITLES.len())].into());
                    }
                    if rng.random_bool(0.4) {
                        am.published = Set(rng.random_bool(0.5));
                    }
                    if rng.random_bool(0.3) {
                        am.featured = Set(rng.random_bool(0.5));
                    }
                    if rng.random_bool(0.3) {
                        am.genre =
                            Set(GENRES[rng.random_range(0..GENRES.len())].map(str::to_owned));
                    }
                    if rng.random_bool(0.3) {
                        am.published_at = Set(Some(at(rng.random_range(0..50))));
                    }
                    am.updated_at = Set(at(n));
                    am.update(c).await.map(|_| ())
                }
                None => Ok(()),
            }
        }
        4 => Story::update_many()
            .col_expr(
                story::Column::ViewCount,
                Expr::col(story::Column::ViewCount).add(1),
            )
            .filter(story::Column::Id.eq(pick(rng, &stories)))
            .exec(c)
            .await
            .map(|_| ()),
        5 => Story::update_many()
            .col_expr(story::Column::Featured, Expr::value(rng.random_bool(0.5)))
            .filter(story::Column::AuthorId.eq(pick(rng, &profiles)))
            .exec(c)
            .await
            .map(|_| ()),
        6 => Story::delete_by_id(pick(rng, &stories))
            .exec(c)
            .await
            .map(|_| ()),
        7 => Story::delete_many()
            .filter(story::Column::Genre.eq(GENRES[rng.random_range(1..GENRES.len())]))
            .filter(story::Column::ViewCount.gt(3))
            .exec(c)
            .await
            .map(|_| ()),
        8 => c
            .execute_unprepared(&format!(
                "UPDATE stories SET title = 'raw' || id::text WHERE view_count = {}",
                rng.random_range(0..6)
            ))
            .await
            .map(|_| ()),
        9 => {
            let (a, b) = (pick(rng, &profiles), pick(rng, &profiles));
            if a == b {
                Ok(())
            } else if rng.random_bool(0.6) {
                let row = follow::ActiveModel {
                    follower_id: Set(a),
                    following_id: Set(b),
                    created_at: Set(at(n)),
                };
                let q = Follow::insert(row);
                if rng.random_bool(0.5) {
                    q.on_conflict_do_nothing()
                        .exec_without_returning(c)
                        .await
                        .map(|_| ())
                } else {
                    q.on_conflict(
                        OnConflict::columns([
                            follow::Column::FollowerId,
                            follow::Column::FollowingId,
                        ])
                        .update_column(follow::Column::CreatedAt)
                        .to_owned(),
                    )
                    .exec_without_returning(c)
                    .await
                    .map(|_| ())
                }
            } else {
                Follow::delete_many()
                    .filter(follow::Column::FollowerId.eq(a))
                    .filter(follow::Column::FollowingId.eq(b))
                    .exec(c)
                    .await
                    .map(|_| ())
            }
        }
        10 => profile::ActiveModel {
            username: Set(format!("u{n}")),
            display_name: Set("d".into()),
            bio: Set(String::new()),
            created_at: Set(at(n)),
            updated_at: Set(at(n)),
            ..Default::default()
        }
        .insert(c)
        .await
        .map(|_| ()),
        11 => Profile::update_many()
            .col_expr(
                profile::Column::DisplayName,
                Expr::value(TITLES[rng.random_range(0..TITLES.len())]),
            )
            .filter(profile::Column::Id.eq(pick(rng, &profiles)))
            .exec_with_returning(c)
            .await
            .map(|_| ()),
        12 if profiles.len() > 4 && rng.random_bool(0.3) => {
            // a cascade: its stories and follows go with it
            Profile::delete_by_id(pick(rng, &profiles))
                .exec(c)
                .await
                .map(|_| ())
        }
        _ => Story::update_many()
            .col_expr(
                story::Column::ViewCount,
                Expr::col(story::Column::ViewCount).add(1),
            )
            .filter(story::Column::Id.eq(pick(rng, &stories)))
            .exec_with_returning(c)
            .await
            .map(|_| ()),
    };
    match r {
        Ok(()) => format!("w{kind}"),
        // a unique or foreign key refused it, or (in a transaction) its row
        // was deleted earlier in it: nothing changed
        Err(e) if e.sql_err().is_some() || matches!(e, sea_orm::DbErr::RecordNotUpdated) => {
            format!("w{kind} refused")
        }
        Err(e) => panic!("write {kind}: {e}"),
    }
}

/// One read of the family, cached on `db` and uncached on the primary:
/// their answers, for comparison.
async fn read(rng: &mut StdRng, db: &Db, p: &DatabaseConnection) -> (String, String, String) {
    let stories = ids::<Story>(p, story::Column::Id).await;
    let profiles = ids::<Profile>(p, profile::Column::Id).await;
    let kind = rng.random_range(0..13);
    let max = stories.iter().max().copied().unwrap_or(1);
    macro_rules! both {
        ($q:expr, $term:ident) => {{
            let q = $q;
            let cached = q
                .clone()
                .using_replica()
                .cached()
                .$term(db)
                .await
                .expect("cached");
            let plain = q.$term(p).await.expect("plain");
            (
                format!("r{kind}"),
                format!("{cached:?}"),
                format!("{plain:?}"),
            )
        }};
    }
    match kind {
        0 => both!(
            Story::find_by_id(rng.random_range(1..=Ord::min(max, 40) + 2)),
            one
        ),
        1 => both!(
            Story::find()
                .filter(story::Column::Published.eq(rng.random_bool(0.5)))
                .order_by_with_nulls(story::Column::PublishedAt, Order::Desc, NullOrdering::Last)
                .order_by_desc(story::Column::Id)
                .limit(rng.random_range(1..4))
                .offset(rng.random_range(0..2)),
            all
        ),
        2 => both!(
            Story::find()
                .filter(story::Column::Genre.eq(GENRES[rng.random_range(1..GENRES.len())]))
                .order_by_asc(story::Column::Title)
                .order_by_asc(story::Column::Id),
            all
        ),
        3 => both!(
            Story::find()
                .order_by_desc(story::Column::ViewCount)
                .order_by_desc(story::Column::Id)
                .limit(5),
            all
        ),
        4 => {
            let q = Story::find().filter(story::Column::AuthorId.eq(pick(rng, &profiles)));
            let cached = q
                .clone()
                .using_replica()
                .cached()
                .count(db)
                .await
                .expect("cached");
            let plain = q.count(p).await.expect("plain");
            ("r4".into(), cached.to_string(), plain.to_string())
        }
        5 => {
            let q = Story::find()
                .filter(story::Column::Published.eq(true))
                .filter(story::Column::Featured.eq(true));
            let cached = q
                .clone()
                .using_replica()
                .cached()
                .count(db)
                .await
                .expect("cached");
            let plain = q.count(p).await.expect("plain");
            ("r5".into(), cached.to_string(), plain.to_string())
        }
        6 => both!(
            Profile::find()
                .join(JoinType::InnerJoin, follow::Relation::Follower.def().rev())
                .filter(follow::Column::FollowingId.eq(pick(rng, &profiles)))
                .order_by_desc(follow::Column::CreatedAt)
                .order_by_asc(profile::Column::Id),
            all
        ),
        7 => both!(
            Story::find()
                .find_also_related(Profile)
                .filter(story::Column::Published.eq(true))
                .order_by_asc(story::Column::Id)
                .limit(8),
            all
        ),
        8 => {
            let followed = Query::select()
                .column(follow::Column::FollowingId)
                .from(follow::Entity)
                .and_where(Expr::col(follow::Column::FollowerId).eq(pick(rng, &profiles)))
                .to_owned();
            both!(
                Story::find()
                    .filter(story::Column::Published.eq(true))
                    .filter(story::Column::AuthorId.in_subquery(followed))
                    .order_by_desc(story::Column::Id)
                    .limit(10),
                all
            )
        }
        9 => both!(Profile::find_by_id(pick(rng, &profiles)), one),
        // the service's feed ids: the key alone, picked by a subquery,
        // ordered and paged (it depends on no row, only on columns)
        11 => {
            let followed = Query::select()
                .column(follow::Column::FollowingId)
                .from(follow::Entity)
                .and_where(Expr::col(follow::Column::FollowerId).eq(pick(rng, &profiles)))
                .to_owned();
            let q = Story::find()
                .select_only()
                .column(story::Column::Id)
                .filter(story::Column::Published.eq(true))
                .filter(story::Column::AuthorId.in_subquery(followed))
                .order_by_desc(story::Column::PublishedAt)
                .order_by_desc(story::Column::Id)
                .limit(rng.random_range(1..4))
                .offset(rng.random_range(0..2));
            let cached = q
                .clone()
                .using_replica()
                .cached()
                .into_tuple::<i64>()
                .all(db)
                .await
                .expect("cached");
            let plain = q.into_tuple::<i64>().all(p).await.expect("plain");
            ("r11".into(), format!("{cached:?}"), format!("{plain:?}"))
        }
        10 => both!(
            Profile::find()
                .find_with_related(Story)
                .filter(profile::Column::Id.lte(pick(rng, &profiles)))
                .order_by_asc(profile::Column::Id)
                .order_by_asc(story::Column::Id),
            all
        ),
        _ => both!(
            Story::find()
                .filter(story::Column::Id.is_in([
                    rng.random_range(1..=max),
                    rng.random_range(1..=max),
                    rng.random_range(1..=max + 2)
                ]))
                .order_by_asc(story::Column::Id),
            all
        ),
    }
}

/// Until the replicas replayed the primary's position and both instances
/// applied every invalidation sent so far.
async fn settle(t: &TestDb, a: &Db, b: &Db) {
    let p = t.primary().await;
    let row = p
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_current_wal_lsn()::text AS l",
        ))
        .await
        .expect("lsn")
        .expect("row");
    let lsn: String = row.try_get("", "l").expect("l");
    for r in [a.replica_pool("replica1"), a.replica_pool("replica2")]
        .into_iter()
        .flatten()
    {
        let sql = format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn AS ok");
        wait_for(Duration::from_secs(10), || async {
            r.query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                sql.clone(),
            ))
            .await
            .ok()
            .flatten()
            .and_then(|row| row.try_get::<bool>("", "ok").ok())
            .unwrap_or(false)
        })
        .await
        .expect("replayed");
    }
    wait_for(Duration::from_secs(10), || async {
        let (x, y) = (a.cache_stats().await, b.cache_stats().await);
        x.pending == 0 && y.pending == 0 && x.version == y.version
    })
    .await
    .expect("both instances applied every invalidation");
}

#[tokio::test]
async fn cached_reads_equal_the_primary_after_every_write() {
    let Some(c) = cluster() else { return };
    let _g = c.shared().await;
    let t = c.fresh_db("differential").await;
    let seed: u64 = std::env::var("SEAWAY_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let ops: usize = std::env::var("SEAWAY_DIFF_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    println!(
        "differential run: seed {seed} (SEAWAY_DIFF_SEED={seed} replays it), {ops} operations"
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let cfg = || t.config().max_replica_lag(Duration::from_secs(60)).build();
    let a = Db::connect(cfg()).await.expect("a");
    let b = Db::connect(cfg()).await.expect("b");
    let p = t.primary().await;
    for n in 0..8 {
        profile::ActiveModel {
            username: Set(format!("seed{n}")),
            display_name: Set("d".into()),
            bio: Set(String::new()),
            created_at: Set(at(n)),
            updated_at: Set(at(n)),
            ..Default::default()
        }
        .insert(&a)
        .await
        .expect("profile");
    }
    for n in 0..30 {
        write(&mut rng, &a, &p, 100 + n).await;
    }
    settle(&t, &a, &b).await;
    let (mut writes, mut reads, mut txns, mut diffs) = (0, 0, 0, Vec::new());
    let start = Instant::now();
    for n in 0..ops as i64 {
        let db = if rng.random_bool(0.5) { &a } else { &b };
        if rng.random_bool(0.2) {
            if rng.random_bool(0.1) {
                let txn = db.begin().await.expect("begin");
                for k in 0..rng.random_range(1..4) {
                    write(&mut rng, &txn, &p, 1000 + n * 4 + k).await;
                }
                if rng.random_bool(0.8) {
                    txn.commit().await.expect("commit");
                } else {
                    txn.rollback().await.expect("rollback");
                }
                txns += 1;
            } else {
                write(&mut rng, db, &p, 1000 + n * 4).await;
            }
            writes += 1;
            settle(&t, &a, &b).await;
        } else {
            let (what, cached, plain) = read(&mut rng, db, &p).await;
            reads += 1;
            if cached != plain {
                if diffs.len() < 5 {
                    eprintln!("op {n} ({what}): cached {cached}\n   primary {plain}");
                }
                diffs.push(n);
            }
        }
    }
    let (sa, sb) = (a.cache_stats().await, b.cache_stats().await);
    println!(
        "differential run (seed {seed}): {writes} writes ({txns} transactions), {reads} cached reads, {} differences, in {:.1}s; hits {} / {}, invalidations by level A {:?} B {:?}",
        diffs.len(),
        start.elapsed().as_secs_f64(),
        sa.l1_hits + sa.l2_hits + sb.l1_hits + sb.l2_hits,
        sa.loads + sb.loads,
        sa.invalidations_by_level,
        sb.invalidations_by_level,
    );
    assert!(
        diffs.is_empty(),
        "seed {seed}: cached reads differed from the primary at ops {diffs:?}"
    );
    let hits = sa.l1_hits + sa.l2_hits + sb.l1_hits + sb.l2_hits;
    assert!(
        hits * 10 > reads as u64,
        "the cache answered too few reads ({hits} of {reads}) to test it"
    );
}
