//! Story helpers the suites share: a story every replica has, its title
//! read through the cache, and written.

use crate::{TestDb, insert_profile, insert_story, wait_for};
use entity::prelude::*;
use entity::story;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter};
use seaway::prelude::*;
use seaway::{CacheOutcome, Db, Scope};
use std::time::Duration;

/// A story (by a new author) that every replica already has.
pub async fn replicated_story(t: &TestDb, db: &Db, title: &str) -> i64 {
    let author = insert_profile(db.primary(), &format!("a{}", rand::random::<u32>())).await;
    let id = insert_story(db.primary(), author, title, true).await;
    for i in 0..t.replica_urls.len() {
        let r = t.replica(i).await;
        wait_for(Duration::from_secs(5), || async {
            Story::find_by_id(id).one(&r).await.ok().flatten().is_some()
        })
        .await
        .expect("replicated");
    }
    id
}

/// Waits until every replica shows story `id` with title `want`.
pub async fn replicated_title(t: &TestDb, id: i64, want: &str) {
    for i in 0..t.replica_urls.len() {
        let r = t.replica(i).await;
        wait_for(Duration::from_secs(5), || async {
            Story::find_by_id(id)
                .one(&r)
                .await
                .ok()
                .flatten()
                .map(|m| m.title)
                == Some(want.to_owned())
        })
        .await
        .expect("replicated");
    }
}

/// Story `id`'s title through the cache (routed to a replica), in a fresh
/// scope, and how the cache answered.
pub async fn cached_title(db: &Db, id: i64) -> (Option<String>, CacheOutcome) {
    cached_title_via(db, id, seaway::READ_REPLICA).await
}

/// Story `id`'s title through the cache from `alias`. From the primary, a
/// stale answer can come only from the cache, never from replica lag.
pub async fn cached_title_via(db: &Db, id: i64, alias: &str) -> (Option<String>, CacheOutcome) {
    let scope = Scope::new();
    let m = scope
        .run(async {
            Story::find_by_id(id)
                .using(alias)
                .cached()
                .one(db)
                .await
                .expect("read")
        })
        .await;
    (
        m.map(|m| m.title),
        scope.state().last_cache().expect("outcome"),
    )
}

/// Sets story `id`'s title through `db`.
pub async fn try_set_title(db: &Db, id: i64, t: &str) -> Result<(), DbErr> {
    Story::update_many()
        .col_expr(story::Column::Title, Expr::value(t))
        .filter(story::Column::Id.eq(id))
        .exec(db)
        .await
        .map(|_| ())
}

/// Sets story `id`'s title through `db`; panics if it fails.
pub async fn set_title(db: &Db, id: i64, t: &str) {
    try_set_title(db, id, t).await.expect("update");
}
