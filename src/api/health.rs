//! Probes, metrics and counts: `/healthz`, `/readyz` (no token), `/metrics` (Prometheus
//! text) and `/v1/stats`.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::dto::Health;
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
pub(super) async fn stats(State(state): State<ApiState>) -> Result<Json<Value>> {
    let counted = state.engine.stats().await?;
    let (counts, transitions, outbox) =
        (counted.counts, counted.transitions, counted.outbox_backlog);
    Ok(Json(json!({
        "orgs": counts.orgs,
        "by_state": counts.by_state.iter().map(|(s, n)| (s.as_str().to_owned(), Value::from(*n))).collect::<serde_json::Map<_, _>>(),
        "by_reason": counts.by_reason.iter().map(|(r, n)| (r.as_str().to_owned(), Value::from(*n))).collect::<serde_json::Map<_, _>>(),
        "transitions": transitions,
        "due_backlog": counts.due,
        "outbox_backlog": outbox,
    })))
}

fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// `GET /metrics` (viewer): Prometheus text. Sweep latency and batch sizes are not here:
/// the scheduler does not record them yet (its log line `sweep` has both).
pub(super) async fn metrics(State(state): State<ApiState>) -> Result<impl IntoResponse> {
    let now = state.engine.now();
    let counted = state.engine.stats().await?;
    let (counts, outbox) = (&counted.counts, counted.outbox_backlog);
    let (by_cause, oldest_due) = (&counted.transitions_by_cause, counted.oldest_due);
    let mut out = String::new();
    family(&mut out, "acctd_orgs", "gauge", "Orgs by lifecycle state.");
    for (status, n) in &counts.by_state {
        let _ = writeln!(out, "acctd_orgs{{state=\"{}\"}} {n}", status.as_str());
    }
    family(
        &mut out,
        "acctd_locked_orgs",
        "gauge",
        "Locked orgs by lock reason (an org may have several).",
    );
    for (reason, n) in &counts.by_reason {
        let _ = writeln!(
            out,
            "acctd_locked_orgs{{reason=\"{}\"}} {n}",
            reason.as_str()
        );
    }
    family(
        &mut out,
        "acctd_transitions_total",
        "counter",
        "Transitions in the audit trail, by cause.",
    );
    for (cause, n) in by_cause {
        let _ = writeln!(
            out,
            "acctd_transitions_total{{cause=\"{}\"}} {n}",
            label(cause)
        );
    }
    family(
        &mut out,
        "acctd_outbox_backlog",
        "gauge",
        "Notifications written but not yet delivered.",
    );
    let _ = writeln!(out, "acctd_outbox_backlog {outbox}");
    family(
        &mut out,
        "acctd_due_orgs",
        "gauge",
        "Orgs on the real clock with a deadline that has passed and is not processed yet.",
    );
    let _ = writeln!(out, "acctd_due_orgs {}", counts.due);
    family(
        &mut out,
        "acctd_due_lag_seconds",
        "gauge",
        "How long the oldest passed, unprocessed deadline has waited (0 when none).",
    );
    let lag = oldest_due.map_or(0, |at| (now - at).num_seconds().max(0));
    let _ = writeln!(out, "acctd_due_lag_seconds {lag}");
    let (sweeps, swept, batches, seconds, last, last_batch) = crate::scheduler::stats::snapshot();
    family(
        &mut out,
        "acctd_sweeps_total",
        "counter",
        "Sweeps run by this process.",
    );
    let _ = writeln!(out, "acctd_sweeps_total {sweeps}");
    family(
        &mut out,
        "acctd_sweep_seconds_total",
        "counter",
        "Time spent sweeping.",
    );
    let _ = writeln!(out, "acctd_sweep_seconds_total {seconds}");
    family(
        &mut out,
        "acctd_sweep_last_seconds",
        "gauge",
        "Latency of the last sweep.",
    );
    let _ = writeln!(out, "acctd_sweep_last_seconds {last}");
    family(
        &mut out,
        "acctd_sweep_batches_total",
        "counter",
        "Batches (transactions) swept.",
    );
    let _ = writeln!(out, "acctd_sweep_batches_total {batches}");
    family(
        &mut out,
        "acctd_sweep_orgs_total",
        "counter",
        "Orgs processed by sweeps.",
    );
    let _ = writeln!(out, "acctd_sweep_orgs_total {swept}");
    family(
        &mut out,
        "acctd_sweep_last_batch_orgs",
        "gauge",
        "Orgs in the last batch.",
    );
    let _ = writeln!(out, "acctd_sweep_last_batch_orgs {last_batch}");
    family(
        &mut out,
        "acctd_http_requests_total",
        "counter",
        "API requests served by this process, by method, route and status.",
    );
    for ((method, route, status), n) in state.metrics.snapshot() {
        let _ = writeln!(
            out,
            "acctd_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
            label(&route)
        );
    }
    Ok((
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        out,
    ))
}
