//! The OpenAPI 3.1 document of API.md, served at `GET /openapi.json`: the
//! schemas are derived from the handlers' own request and response types
//! (`wire`, the bodies the handlers deserialize); each operation lists every
//! status it can answer, errors in the error shape.
//!
//! The functions below are never called: they carry each operation's
//! description for utoipa, next to the route table they mirror
//! (`routes::*::router`; `tests/http.rs` checks that every documented
//! operation is routed and every routed one documented, and schemathesis,
//! `scripts/api-fuzz.sh`, that every answer is documented). The answers
//! and parameters many operations share (503, 413, the 400s, a page) are
//! one type each.

#![allow(dead_code, clippy::unused_async)]

use crate::routes::follows::Followed;
use crate::routes::profiles::{NewProfile, ProfileChange};
use crate::routes::stories::{NewStory, StoryChange, Views};
use crate::wire::{Follow, List, Profile, Stats, Story};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

/// An error, for every status of 400 and above.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// `invalid_input` (400/405/422), `not_found` (404), `conflict` (409),
    /// `payload_too_large` (413), `unavailable` (503), `internal` (500).
    #[schema(
        pattern = "^(invalid_input|not_found|conflict|payload_too_large|unavailable|internal)$"
    )]
    code: String,
    message: String,
    /// The input at fault, when one is.
    #[schema(nullable = false)]
    field: Option<String>,
}

/// 503, on every operation that reads or writes.
#[derive(utoipa::IntoResponses)]
#[response(status = 503, description = "the database is unavailable")]
pub struct Unavailable(ErrorBody);

/// 413, on every operation with a request body.
#[derive(utoipa::IntoResponses)]
#[response(status = 413, description = "body over 1 MiB")]
pub struct TooLarge(ErrorBody);

/// 400, on the operations whose path holds ids and nothing else to refuse.
#[derive(utoipa::IntoResponses)]
#[response(status = 400, description = "a bad id")]
pub struct BadId(ErrorBody);

/// 400, on the lists of a profile (an id and the page's parameters).
#[derive(utoipa::IntoResponses)]
#[response(status = 400, description = "a bad id or parameter")]
pub struct BadIdOrParameter(ErrorBody);

/// 400, on the lists without an id.
#[derive(utoipa::IntoResponses)]
#[response(status = 400, description = "a bad or unknown parameter")]
pub struct BadParameter(ErrorBody);

/// A page of a list: `limit` (1..=100, 20 when absent) and `offset`
/// (0..=100000).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u64>,
    #[param(minimum = 0, maximum = 100000)]
    offset: Option<u64>,
}

/// The whole document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Seaway sample service",
        description = "The contract of API.md: profiles, stories, follows, feeds, and the health and figures of the data layer.",
        version = "1"
    ),
    paths(
        create_profile,
        show_profile,
        update_profile,
        profile_stats,
        follow,
        unfollow,
        followers,
        following,
        feed,
        create_story,
        list_stories,
        featured,
        show_story,
        update_story,
        remove_story,
        view_story,
        health,
        stats,
        metrics,
    ),
    components(schemas(
        ErrorBody, ErrorDetail, Profile, Story, Follow, Stats, List<Story>, List<Profile>,
        NewProfile, ProfileChange, NewStory, StoryChange, Views, Followed
    ))
)]
pub struct ApiDoc;

/// The document as JSON.
pub fn document() -> String {
    ApiDoc::openapi()
        .to_json()
        .unwrap_or_else(|_| "{}".to_owned())
}

// Every operation's parameters and answers. `id`-like path segments are
// positive 64-bit integers; anything else is a 400.

#[utoipa::path(post, path = "/profiles", tag = "profiles", request_body = NewProfile,
    responses(
        (status = 201, description = "created", body = Profile),
        (status = 400, description = "not JSON, or not application/json", body = ErrorBody),
        (status = 409, description = "the username is taken", body = ErrorBody),
        TooLarge,
        (status = 422, description = "a field is missing, unknown or invalid", body = ErrorBody),
        Unavailable,
    ))]
async fn create_profile() {}

#[utoipa::path(get, path = "/profiles/{id}", tag = "profiles",
    params(("id" = i64, Path, minimum = 1)),
    responses(
        (status = 200, description = "the profile", body = Profile),
        BadId,
        (status = 404, description = "no such profile", body = ErrorBody),
        Unavailable,
    ))]
async fn show_profile() {}

#[utoipa::path(patch, path = "/profiles/{id}", tag = "profiles",
    params(("id" = i64, Path, minimum = 1)), request_body = ProfileChange,
    responses(
        (status = 200, description = "the row as now stored", body = Profile),
        (status = 400, description = "a bad id, or not JSON", body = ErrorBody),
        (status = 404, description = "no such profile", body = ErrorBody),
        TooLarge,
        (status = 422, description = "an unknown or invalid field", body = ErrorBody),
        Unavailable,
    ))]
async fn update_profile() {}

#[utoipa::path(get, path = "/profiles/{id}/stats", tag = "profiles",
    params(("id" = i64, Path, minimum = 1)),
    responses(
        (status = 200, description = "counts", body = Stats),
        BadId,
        (status = 404, description = "no such profile", body = ErrorBody),
        Unavailable,
    ))]
async fn profile_stats() {}

#[utoipa::path(post, path = "/profiles/{id}/following/{target_id}", tag = "follows",
    params(("id" = i64, Path, minimum = 1), ("target_id" = i64, Path, minimum = 1)),
    responses(
        (status = 201, description = "followed", body = Followed),
        (status = 200, description = "already followed", body = Followed),
        BadId,
        (status = 404, description = "no such profile", body = ErrorBody),
        (status = 422, description = "a self-follow", body = ErrorBody),
        Unavailable,
    ))]
async fn follow() {}

#[utoipa::path(delete, path = "/profiles/{id}/following/{target_id}", tag = "follows",
    params(("id" = i64, Path, minimum = 1), ("target_id" = i64, Path, minimum = 1)),
    responses(
        (status = 204, description = "not following (any more)"),
        BadId,
        Unavailable,
    ))]
async fn unfollow() {}

#[utoipa::path(get, path = "/profiles/{id}/followers", tag = "follows",
    params(
        ("id" = i64, Path, minimum = 1),
        Page,
    ),
    responses(
        (status = 200, description = "profiles that follow id", body = List<Profile>),
        BadIdOrParameter,
        (status = 404, description = "no such profile", body = ErrorBody),
        Unavailable,
    ))]
async fn followers() {}

#[utoipa::path(get, path = "/profiles/{id}/following", tag = "follows",
    params(
        ("id" = i64, Path, minimum = 1),
        Page,
    ),
    responses(
        (status = 200, description = "profiles id follows", body = List<Profile>),
        BadIdOrParameter,
        (status = 404, description = "no such profile", body = ErrorBody),
        Unavailable,
    ))]
async fn following() {}

#[utoipa::path(get, path = "/profiles/{id}/feed", tag = "follows",
    params(
        ("id" = i64, Path, minimum = 1),
        Page,
    ),
    responses(
        (status = 200, description = "published stories of the profiles id follows, newest first", body = List<Story>),
        BadIdOrParameter,
        (status = 404, description = "no such profile", body = ErrorBody),
        Unavailable,
    ))]
async fn feed() {}

#[utoipa::path(post, path = "/stories", tag = "stories", request_body = NewStory,
    responses(
        (status = 201, description = "created", body = Story),
        (status = 400, description = "not JSON, or not application/json", body = ErrorBody),
        TooLarge,
        (status = 422, description = "a field is missing, unknown or invalid, or the author does not exist", body = ErrorBody),
        Unavailable,
    ))]
async fn create_story() {}

#[utoipa::path(get, path = "/stories", tag = "stories",
    params(
        ("published" = Option<bool>, Query),
        ("genre" = Option<String>, Query, max_length = 50, pattern = "^[^\\u0000]*$"),
        ("author_id" = Option<i64>, Query, minimum = 1),
        ("q" = Option<String>, Query, max_length = 200, pattern = "^[^\\u0000]*$", description = "case-insensitive title substring"),
        ("order" = Option<String>, Query, pattern = "^(recent|trending)$"),
        Page,
    ),
    responses(
        (status = 200, description = "a page of stories", body = List<Story>),
        BadParameter,
        Unavailable,
    ))]
async fn list_stories() {}

#[utoipa::path(get, path = "/stories/featured", tag = "stories",
    params(
        Page,
    ),
    responses(
        (status = 200, description = "published and featured stories, newest first", body = List<Story>),
        BadParameter,
        Unavailable,
    ))]
async fn featured() {}

#[utoipa::path(get, path = "/stories/{id}", tag = "stories",
    params(("id" = i64, Path, minimum = 1)),
    responses(
        (status = 200, description = "the story", body = Story),
        BadId,
        (status = 404, description = "no such story", body = ErrorBody),
        Unavailable,
    ))]
async fn show_story() {}

#[utoipa::path(patch, path = "/stories/{id}", tag = "stories",
    params(("id" = i64, Path, minimum = 1)), request_body = StoryChange,
    responses(
        (status = 200, description = "the row as now stored", body = Story),
        (status = 400, description = "a bad id, or not JSON", body = ErrorBody),
        (status = 404, description = "no such story", body = ErrorBody),
        TooLarge,
        (status = 422, description = "an unknown or invalid field", body = ErrorBody),
        Unavailable,
    ))]
async fn update_story() {}

#[utoipa::path(delete, path = "/stories/{id}", tag = "stories",
    params(("id" = i64, Path, minimum = 1)),
    responses(
        (status = 204, description = "deleted"),
        BadId,
        (status = 404, description = "no such story", body = ErrorBody),
        Unavailable,
    ))]
async fn remove_story() {}

#[utoipa::path(post, path = "/stories/{id}/views", tag = "stories",
    params(("id" = i64, Path, minimum = 1)),
    responses(
        (status = 200, description = "counted", body = Views),
        BadId,
        (status = 404, description = "no such story", body = ErrorBody),
        Unavailable,
    ))]
async fn view_story() {}

#[utoipa::path(get, path = "/health", tag = "ops",
    responses(
        (status = 200, description = "the primary answers; `status` is `degraded` when a replica or the L2 cache is down", body = Object),
        (status = 503, description = "the primary is down", body = Object),
    ))]
async fn health() {}

#[utoipa::path(get, path = "/stats", tag = "ops",
    responses((status = 200, description = "routing and cache counters", body = Object)))]
async fn stats() {}

#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "the same figures, Prometheus text", body = String, content_type = "text/plain")))]
async fn metrics() {}
