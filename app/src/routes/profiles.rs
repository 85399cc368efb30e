//! `/profiles`: create, read, change, and a profile's counts.

use crate::error::ApiError;
use crate::extract::{Json, Path, check_text, check_username, not_null, parse_id};
use crate::state::AppState;
use crate::wire;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use chrono::Utc;
use entity::prelude::*;
use entity::{follow, profile, story};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set, SqlErr};
use seaway::Db;
use seaway::prelude::*;
use serde::Deserialize;

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/profiles", post(create))
        .route("/profiles/{id}", get(show).patch(update))
        .route("/profiles/{id}/stats", get(stats))
}

/// `POST /profiles`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewProfile {
    #[schema(pattern = "^[A-Za-z0-9_]{1,50}$")]
    username: String,
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000]*[^\\u0000\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000]*$"
    )]
    display_name: String,
    #[serde(default)]
    #[schema(max_length = 10000, pattern = "^[^\\u0000]*$")]
    bio: String,
}

/// `PATCH /profiles/{id}`: the fields to change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProfileChange {
    #[serde(default, deserialize_with = "not_null")]
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000]*[^\\u0000\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000]*$"
    )]
    display_name: Option<String>,
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false, max_length = 10000, pattern = "^[^\\u0000]*$")]
    bio: Option<String>,
}

const MAX_BIO: usize = 10_000;

async fn create(
    State(s): State<AppState>,
    Json(p): Json<NewProfile>,
) -> Result<(StatusCode, axum::Json<wire::Profile>), ApiError> {
    check_username(&p.username)?;
    check_text(&p.display_name, "display_name", 100, false)?;
    check_text(&p.bio, "bio", MAX_BIO, true)?;
    let now = Utc::now();
    let model = profile::ActiveModel {
        username: Set(p.username),
        display_name: Set(p.display_name),
        bio: Set(p.bio),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(&s.db) // a plain SeaORM write: routed to the primary
    .await
    .map_err(|e| match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => {
            ApiError::conflict("username is taken", Some("username"))
        }
        _ => e.into(),
    })?;
    Ok((StatusCode::CREATED, axum::Json(model.into())))
}

/// A profile read through the replica and the cache; 404 when absent.
pub(crate) async fn find(db: &Db, id: i64) -> Result<profile::Model, ApiError> {
    Profile::find_by_id(id)
        .using_replica()
        .cached()
        .one(db)
        .await?
        .ok_or_else(|| ApiError::not_found("profile"))
}

async fn show(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<wire::Profile>, ApiError> {
    let id = parse_id(&id, "id")?;
    Ok(axum::Json(find(&s.db, id).await?.into()))
}

async fn update(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Json(c): Json<ProfileChange>,
) -> Result<axum::Json<wire::Profile>, ApiError> {
    let id = parse_id(&id, "id")?;
    if let Some(d) = &c.display_name {
        check_text(d, "display_name", 100, false)?;
    }
    if let Some(b) = &c.bio {
        check_text(b, "bio", MAX_BIO, true)?;
    }
    let mut q = Profile::update_many().filter(profile::Column::Id.eq(id));
    if let Some(d) = c.display_name {
        q = q.col_expr(profile::Column::DisplayName, Expr::value(d));
    }
    if let Some(b) = c.bio {
        q = q.col_expr(profile::Column::Bio, Expr::value(b));
    }
    // Always touch updated_at, so the statement is never empty; answers
    // with the row as stored (RETURNING, on the primary).
    let rows = q
        .col_expr(profile::Column::UpdatedAt, Expr::value(Utc::now()))
        .exec_with_returning(&s.db)
        .await?;
    rows.into_iter()
        .next()
        .map(|m| axum::Json(m.into()))
        .ok_or_else(|| ApiError::not_found("profile"))
}

/// A profile's counts, read through the replica and the cache (or the
/// primary, when the request has written: the sticky flag).
pub(crate) async fn counts(db: &Db, id: i64) -> Result<wire::Stats, ApiError> {
    let by_author = Story::find().filter(story::Column::AuthorId.eq(id));
    let (story_count, published_story_count, follower_count, following_count) = futures::try_join!(
        by_author.clone().using_replica().cached().count(db),
        by_author
            .filter(story::Column::Published.eq(true))
            .using_replica()
            .cached()
            .count(db),
        Follow::find()
            .filter(follow::Column::FollowingId.eq(id))
            .using_replica()
            .cached()
            .count(db),
        Follow::find()
            .filter(follow::Column::FollowerId.eq(id))
            .using_replica()
            .cached()
            .count(db),
    )?;
    Ok(wire::Stats {
        story_count,
        published_story_count,
        follower_count,
        following_count,
    })
}

async fn stats(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<wire::Stats>, ApiError> {
    let id = parse_id(&id, "id")?;
    find(&s.db, id).await?;
    Ok(axum::Json(counts(&s.db, id).await?))
}
