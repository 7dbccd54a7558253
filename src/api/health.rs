//! Probes, metrics and counts: `/healthz`, `/readyz` (no token), `/metrics` (Prometheus
//! text) and `/v1/stats`.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::dto::{Health, StatsResponse};
use super::error::{ApiError, Result};
use super::ApiState;
use crate::engine::Readiness;

/// `GET /healthz`: the process answers.
pub(super) async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// `GET /readyz`: the database answers and every migration is applied; 503 otherwise.
pub(super) async fn readyz(State(state): State<ApiState>) -> Result<Json<Health>> {
    match state.engine.readiness().await {
        Readiness::Ready => Ok(Json(Health { status: "ready" })),
        Readiness::Unreachable => Err(ApiError::Unavailable {
            message: "database unreachable".to_owned(),
            details: json!({}),
        }),
        Readiness::NoMigrationTable => Err(ApiError::Unavailable {
            message: "cannot read the migration table".to_owned(),
            details: json!({}),
        }),
        Readiness::Pending(names) => Err(ApiError::Unavailable {
            message: format!("{} migrations are pending", names.len()),
            details: json!({ "pending_migrations": names }),
        }),
    }
}

/// `GET /v1/stats` (viewer): the same object as `acctd admin stats --json`.
pub(super) async fn stats(State(state): State<ApiState>) -> Result<Json<StatsResponse>> {
    let counted = state.engine.stats().await?;
    let counts = counted.counts;
    Ok(Json(StatsResponse {
        orgs: counts.orgs,
        by_state: counts
            .by_state
            .iter()
            .map(|(s, n)| (s.as_str().to_owned(), Value::from(*n)))
            .collect(),
        by_reason: counts
            .by_reason
            .iter()
            .map(|(r, n)| (r.as_str().to_owned(), Value::from(*n)))
            .collect(),
        transitions: counted.transitions,
        due_backlog: counts.due,
        outbox_backlog: counted.outbox_backlog,
    }))
}

/// `GET /metrics` (viewer): Prometheus text. The gauges (orgs by state and lock reason,
/// backlogs, the due lag) are read from the database now; the counters and histograms
/// are this process's since it started (`telemetry::metrics`).
pub(super) async fn metrics(State(state): State<ApiState>) -> Result<impl IntoResponse> {
    use crate::domain::{LockReason, Status};
    let metrics = state.engine.metrics();
    let set = |name, label, value| metrics.set(name, label, value);
    let now = state.engine.now();
    let counted = state.engine.stats().await?;
    let counts = &counted.counts;
    #[allow(clippy::cast_precision_loss)]
    let n = |n: u64| n as f64;
    for status in Status::ALL {
        let count = counts
            .by_state
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n);
        set("acctd_orgs", Some(("state", status.as_str())), n(count));
    }
    for reason in LockReason::ALL {
        let count = counts
            .by_reason
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n);
        set(
            "acctd_locked_orgs",
            Some(("reason", reason.as_str())),
            n(count),
        );
    }
    set("acctd_outbox_backlog", None, n(counted.outbox_backlog));
    set("acctd_due_orgs", None, n(counts.due));
    let lag = counted
        .oldest_due
        .map_or(0, |at| (now - at).num_seconds().max(0));
    set("acctd_due_lag_seconds", None, n(lag.unsigned_abs()));
    Ok((
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        metrics.render().unwrap_or_default(),
    ))
}
