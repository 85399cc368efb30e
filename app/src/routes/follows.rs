//! Following, followers and the feed.

use crate::error::ApiError;
use crate::extract::{Params, Path, Query, parse_id};
use crate::render::JsonBody;
use crate::routes::profiles::{counts, find};
use crate::state::AppState;
use crate::wire;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use chrono::Utc;
use entity::prelude::*;
use entity::{follow, profile, story};
use sea_orm::sea_query::{Expr, ExprTrait, Query as SqlQuery};
use sea_orm::{
    ColumnTrait, EntityTrait, JoinType, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    RelationTrait, Set, TryInsertResult,
};
use seaway::prelude::*;
use serde::Serialize;
use std::collections::HashMap;

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/profiles/{id}/following/{target_id}",
            post(follow).delete(unfollow),
        )
        .route("/profiles/{id}/followers", get(followers))
        .route("/profiles/{id}/following", get(following))
        .route("/profiles/{id}/feed", get(feed))
}

/// `POST /profiles/{id}/following/{target_id}`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Followed {
    follow: wire::Follow,
    target_stats: wire::Stats,
}

fn ids(raw: &(String, String)) -> Result<(i64, i64), ApiError> {
    Ok((parse_id(&raw.0, "id")?, parse_id(&raw.1, "target_id")?))
}

async fn follow(
    State(s): State<AppState>,
    Path(raw): Path<(String, String)>,
) -> Result<(StatusCode, axum::Json<Followed>), ApiError> {
    let (id, target) = ids(&raw)?;
    if id == target {
        return Err(ApiError::unprocessable(
            "a profile cannot follow itself",
            Some("target_id"),
        ));
    }
    let row = follow::ActiveModel {
        follower_id: Set(id),
        following_id: Set(target),
        created_at: Set(Utc::now()),
    };
    // A plain SeaORM insert on the routed handle: it goes to the primary and
    // makes this request sticky, so the reads below see it.
    let inserted = Follow::insert(row)
        .on_conflict_do_nothing()
        .exec_without_returning(&s.db)
        .await
        .map_err(|e| match e.sql_err() {
            Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_)) => {
                ApiError::not_found("profile")
            }
            _ => e.into(),
        })?;
    let status = match inserted {
        TryInsertResult::Inserted(n) if n > 0 => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    let stored = Follow::find_by_id((id, target))
        .using_replica() // sticky: still the primary
        .one(&s.db)
        .await?
        .ok_or_else(|| ApiError::not_found("follow"))?;
    let target_stats = counts(&s.db, target).await?;
    Ok((
        status,
        axum::Json(Followed {
            follow: stored.into(),
            target_stats,
        }),
    ))
}

async fn unfollow(
    State(s): State<AppState>,
    Path(raw): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (id, target) = ids(&raw)?;
    Follow::delete_many()
        .filter(follow::Column::FollowerId.eq(id))
        .filter(follow::Column::FollowingId.eq(target))
        .exec(&s.db)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn people(
    s: AppState,
    raw: String,
    q: HashMap<String, String>,
    rel: follow::Relation,
    key: follow::Column,
) -> Result<JsonBody, ApiError> {
    let id = parse_id(&raw, "id")?;
    let page = Params::new(q, &[])?.page()?;
    find(&s.db, id).await?;
    super::page_of::<_, wire::Profile>(
        &s,
        Profile::find()
            .join(JoinType::InnerJoin, rel.def().rev())
            .filter(key.eq(id))
            .order_by_desc(follow::Column::CreatedAt)
            .order_by_asc(profile::Column::Id),
        page,
    )
    .await
}

async fn followers(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<JsonBody, ApiError> {
    // profiles.id = follows.follower_id, for follows of `id`
    people(
        s,
        raw,
        q,
        follow::Relation::Follower,
        follow::Column::FollowingId,
    )
    .await
}

async fn following(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<JsonBody, ApiError> {
    people(
        s,
        raw,
        q,
        follow::Relation::Following,
        follow::Column::FollowerId,
    )
    .await
}

async fn feed(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<JsonBody, ApiError> {
    let id = parse_id(&raw, "id")?;
    let page = Params::new(q, &[])?.page()?;
    // Two cached reads, so that a write empties only the half it changes:
    // the page's ids, from the feed index alone (published stories of the
    // authors `id` follows, newest first), depend on the stories' and
    // follows' membership and on the columns that pick and order them, not
    // on a story's title or view count; then those rows by key, which
    // depend on those rows only. A title PATCH or a view of a story in the
    // feed reloads 20 rows by key, not the feed (BENCHMARKS.md).
    let followed = SqlQuery::select()
        .column(follow::Column::FollowingId)
        .from(follow::Entity)
        .and_where(Expr::col(follow::Column::FollowerId).eq(id))
        .to_owned();
    let published_by_followed = || {
        super::stories::newest_first(
            Story::find()
                .select_only()
                .column(story::Column::Id)
                .filter(story::Column::Published.eq(true))
                .filter(story::Column::AuthorId.in_subquery(followed.clone())),
        )
        .limit(page.limit)
        .offset(page.offset)
    };
    let ids = published_by_followed()
        .using_replica()
        .cached()
        .into_tuple::<i64>()
        .all_shared(&s.db)
        .await?;
    let mut feed = if ids.is_empty() {
        std::sync::Arc::new(Vec::new())
    } else {
        // the same order as the ids (the same rows, the same key)
        super::stories::newest_first(
            Story::find().filter(story::Column::Id.is_in(ids.iter().copied())),
        )
        .using_replica()
        .cached()
        .all_shared(&s.db)
        .await?
    };
    if feed.len() != ids.len() {
        // a story deleted since the ids were read: the page in one query
        feed = super::stories::newest_first(
            Story::find()
                .filter(story::Column::Id.in_subquery(published_by_followed().into_query())),
        )
        .using_replica()
        .cached()
        .all_shared(&s.db)
        .await?;
    }
    // A feed with stories proves the profile exists (follows reference it):
    // only an empty one needs the lookup that tells 404 from an empty page.
    if feed.is_empty() {
        find(&s.db, id).await?;
    }
    Ok(super::page_body::<_, wire::Story>(&s, &feed, page).await)
}
