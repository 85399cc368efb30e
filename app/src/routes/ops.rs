//! `/health`, `/stats`, `/metrics`.

use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;
use std::sync::OnceLock;

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
}

async fn health(State(s): State<AppState>) -> impl IntoResponse {
    let h = s.db.health().await;
    let status = if h.degraded() || !h.primary_healthy {
        "degraded"
    } else {
        "ok"
    };
    let body = json!({
        "status": status,
        "primary": {"healthy": h.primary_healthy},
        "replicas": h.replicas,
        "cache": {
            "l1": {"entries": h.cache.l1_entries},
            "l2": {"enabled": h.cache.l2_enabled, "healthy": h.cache.l2_healthy},
        },
    });
    let code = if h.primary_healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body))
}

async fn snapshot(s: &AppState) -> serde_json::Value {
    let r = s.db.routing_stats();
    let c = s.db.cache_stats().await;
    json!({
        "routing": r,
        "pools": s.db.pool_stats(),
        "cache": {
            "l1": {"hits": c.l1_hits, "misses": c.l1_misses, "entries": c.l1_entries, "bytes": c.l1_bytes},
            "l2": {"hits": c.l2_hits, "misses": c.l2_misses, "errors": c.l2_errors},
            "hit_rate": c.hit_rate,
            "invalidations": c.invalidations,
            "invalidations_by_level": c.invalidations_by_level,
            "loads": c.loads,
            "joined": c.joined,
            "fills_refused": {"lag": c.refused_lag, "race": c.refused_race},
            "reads_refreshed": c.refreshed,
            "oversize": c.oversize,
            "pending_invalidations": c.pending,
            "unacknowledged_invalidations": c.unacknowledged,
        },
    })
}

async fn stats(State(s): State<AppState>) -> impl IntoResponse {
    axum::Json(snapshot(&s).await)
}

/// The Prometheus recorder, installed once per process.
fn recorder() -> Option<&'static metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        OnceLock::new();
    HANDLE
        .get_or_init(|| {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .ok()
        })
        .as_ref()
}

/// Installs the recorder early so the library's counters are captured.
pub fn install_metrics() {
    let _ = recorder();
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let r = s.db.routing_stats();
    let c = s.db.cache_stats().await;
    let h = s.db.health().await;
    // This instance's figures, as in /stats: gauges set from the snapshot.
    let g = |name: &'static str, v: f64| metrics::gauge!(name).set(v);
    g("seaway_routing_primary_reads", r.primary_reads as f64);
    g("seaway_routing_replica_reads", r.replica_reads as f64);
    g("seaway_routing_writes", r.writes as f64);
    g("seaway_routing_sticky_reads", r.sticky_reads as f64);
    g("seaway_routing_fallbacks", r.fallbacks as f64);
    g("seaway_cache_l1_hits", c.l1_hits as f64);
    g("seaway_cache_l1_misses", c.l1_misses as f64);
    g("seaway_cache_l2_hits", c.l2_hits as f64);
    g("seaway_cache_l2_misses", c.l2_misses as f64);
    g("seaway_cache_l2_errors", c.l2_errors as f64);
    g("seaway_cache_hit_rate", c.hit_rate);
    g("seaway_cache_invalidations", c.invalidations as f64);
    for (level, n) in [
        ("row", c.invalidations_by_level.row),
        ("column", c.invalidations_by_level.column),
        ("membership", c.invalidations_by_level.membership),
        ("table", c.invalidations_by_level.table),
    ] {
        metrics::gauge!("seaway_cache_invalidations_by_level", "level" => level).set(n as f64);
    }
    g("seaway_cache_oversize", c.oversize as f64);
    g("seaway_cache_pending_invalidations", c.pending as f64);
    g(
        "seaway_cache_bus_healthy",
        f64::from(u8::from(c.bus_healthy)),
    );
    g("seaway_cache_l1_entries", c.l1_entries as f64);
    g(
        "seaway_primary_healthy",
        f64::from(u8::from(h.primary_healthy)),
    );
    for rep in &h.replicas {
        let name = rep.name.clone();
        metrics::gauge!("seaway_replica_healthy", "replica" => name.clone())
            .set(f64::from(u8::from(rep.healthy)));
        metrics::gauge!("seaway_replica_lag_ms", "replica" => name.clone()).set(rep.lag_ms as f64);
        metrics::gauge!("seaway_replica_lag_bytes", "replica" => name).set(rep.lag_bytes as f64);
    }
    let text = recorder().map(|h| h.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
