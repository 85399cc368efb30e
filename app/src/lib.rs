//! The example service of `shared/API.md` on the Seaway data layer.
//!
//! # Layout
//!
//! * `config`: [`AppConfig`] from the environment.
//! * `error`: [`ApiError`], the one error shape; `extract`: extractors whose
//!   rejections use it.
//! * `routes`: `profiles`, `stories`, `follows`, `ops` (health, stats, metrics).
//! * `render`: JSON bodies of pages, kept beside the cached rows they show.
//! * `seed`: fills a database with deterministic data.
//! * [`router`] builds the app for tests (`oneshot`); [`serve`] runs it.

pub mod config;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod render;
pub mod routes;
pub mod seed;
pub mod state;
pub mod wire;

pub use config::AppConfig;
pub use error::ApiError;
pub use state::AppState;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use migration::{Migrator, MigratorTrait};
use sea_orm::DbBackend;
use seaway::{Db, SeawayLayer};
use std::future::Future;
use std::time::Duration;
use tower_http::trace::TraceLayer;

/// Request bodies above this are answered 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The whole application: routes, the Seaway layer (scopes and headers),
/// the body limit, and request tracing.
pub fn router(state: AppState) -> Router {
    routes::ops::install_metrics();
    let db = state.db.clone();
    Router::new()
        .merge(routes::profiles::router())
        .merge(routes::stories::router())
        .merge(routes::follows::router())
        .merge(routes::ops::router())
        .route("/openapi.json", axum::routing::get(openapi_json))
        .fallback(|| async { ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async {
            ApiError::bad_request("method not allowed", None)
                .with_status(axum::http::StatusCode::METHOD_NOT_ALLOWED)
        })
        .with_state(state)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(reject_large_bodies))
        .layer(SeawayLayer::new(db).on_bad_token(|e| {
            use axum::response::IntoResponse;
            ApiError::bad_request(
                format!("{e}: send back a token this service issued, or none"),
                Some("X-Consistency-Token"),
            )
            .into_response()
        }))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &axum::http::Request<axum::body::Body>| {
                    tracing::info_span!(
                        "request",
                        method = %req.method(),
                        path = %req.uri().path(),
                        status = tracing::field::Empty,
                        latency_us = tracing::field::Empty,
                        route = tracing::field::Empty,
                        cache = tracing::field::Empty,
                    )
                })
                .on_response(
                    |res: &axum::http::Response<axum::body::Body>,
                     latency: Duration,
                     span: &tracing::Span| {
                        let h = |n: &str| {
                            res.headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-")
                        };
                        span.record("status", res.status().as_u16());
                        span.record("latency_us", latency.as_micros() as u64);
                        span.record("route", h("x-db-route"));
                        span.record("cache", h("x-cache"));
                        tracing::info!("response");
                    },
                ),
        )
}

/// `GET /openapi.json`: the contract, machine-readable (built once).
async fn openapi_json() -> impl axum::response::IntoResponse {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        DOC.get_or_init(openapi::document).as_str(),
    )
}

/// Answers 413 to any request that declares a body over [`MAX_BODY_BYTES`],
/// whatever the endpoint (bodies without a length are cut by the extractors).
async fn reject_large_bodies(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .or_else(|| axum::body::HttpBody::size_hint(req.body()).exact());
    let Some(declared) = declared.filter(|n| *n > MAX_BODY_BYTES as u64) else {
        return next.run(req).await;
    };
    // A client that writes its whole body before reading (urllib, requests)
    // would meet a closed socket and never read the 413: read and drop the
    // body first, up to a bound in bytes and time, then close the connection.
    if declared <= DRAIN_MAX_BYTES {
        use futures::StreamExt;
        let mut body = req.into_body().into_data_stream();
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
            let mut seen = 0u64;
            while let Some(Ok(chunk)) = body.next().await {
                seen += chunk.len() as u64;
                if seen > DRAIN_MAX_BYTES {
                    break;
                }
            }
        })
        .await;
    }
    let mut r = ApiError::too_large().into_response();
    r.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    r
}

/// A body declared over [`MAX_BODY_BYTES`] but at most this is read and
/// dropped before the 413 (so that the client reads it); a larger one gets
/// the 413 at once.
const DRAIN_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// How long a too-large body is drained at most.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects, prepares the schema (SQLite: migrate; PostgreSQL: check that the
/// migrations are applied) and returns the state.
///
/// # Errors
///
/// A message for the operator: which setting or step failed, no secrets.
pub async fn connect(config: &AppConfig) -> Result<AppState, String> {
    let db = Db::connect(config.seaway.clone())
        .await
        .map_err(|e| e.to_string())?;
    match db.backend() {
        DbBackend::Sqlite => db
            .migrate(async |primary| Migrator::up(primary, None).await)
            .await
            .map_err(|e| format!("migrating the embedded database failed: {e}"))?,
        _ => {
            let pending = Migrator::get_pending_migrations_read_only(db.primary())
                .await
                .map_err(|e| format!("cannot read the migration status: {e}"))?;
            if !pending.is_empty() {
                return Err(format!(
                    "{} migration(s) are not applied: run `cargo run -p seaway-app -- migrate` (or `cargo run -p migration -- up`) against the primary",
                    pending.len()
                ));
            }
        }
    }
    Ok(AppState {
        db,
        bodies: render::Bodies::default(),
    })
}

/// Serves `state` on `listener` until `shutdown` completes, then drains
/// the requests in flight and sends the invalidations Redis has not taken
/// yet (for at most five seconds).
///
/// # Errors
///
/// I/O errors of the listener.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let db = state.db.clone();
    let served = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await;
    if !db.flush(Duration::from_secs(5)).await {
        tracing::warn!(
            "invalidations Redis did not take before shutdown: other instances' entries of them expire by their TTL"
        );
    }
    served
}
