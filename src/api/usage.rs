//! `POST /v1/usage` (operator): a batch of usage reports with a result per item (SPEC
//! section 4). A refused item stores nothing and does not stop the others.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::{Extension, Json};

use super::auth::Principal;
use super::dto::{self, ItemStatus, UsageRequest, UsageResponse, UsageResult};
use super::error::{ApiError, Result};
use super::extract::{DryRun, JsonBatch};
use super::ApiState;
use crate::domain::period::Period;
use crate::domain::usage;
use crate::engine::usage::{Outcome, UsageReport};
use crate::engine::Engine;

/// Items per request; larger batches go in several requests.
pub const MAX_ITEMS: usize = 10_000;

/// Groups the items by the clock their org lives on, so that each group goes through the
/// engine of that clock. Without test clocks everything is one group on the real clock.
async fn by_clock(
    state: &ApiState,
    body: &UsageRequest,
) -> Result<BTreeMap<Option<String>, Vec<usize>>> {
    let mut groups: BTreeMap<Option<String>, Vec<usize>> = BTreeMap::new();
    let any_clock = state.engine.any_test_clock().await?;
    if !any_clock {
        groups.insert(None, (0..body.reports.len()).collect());
        return Ok(groups);
    }
    let mut clock_of: BTreeMap<&str, Option<String>> = BTreeMap::new();
    for (index, item) in body.reports.iter().enumerate() {
        if !clock_of.contains_key(item.org.as_str()) {
            let clock = state.engine.org(&item.org).await?.and_then(|o| o.clock);
            clock_of.insert(&item.org, clock);
        }
        groups
            .entry(clock_of[item.org.as_str()].clone())
            .or_default()
            .push(index);
    }
    Ok(groups)
}

/// `POST /v1/usage`.
pub(super) async fn report(
    State(state): State<ApiState>,
    Extension(who): Extension<Principal>,
    DryRun(dry_run): DryRun,
    JsonBatch(body): JsonBatch<UsageRequest>,
) -> Result<Json<UsageResponse>> {
    if body.reports.is_empty() {
        return Err(ApiError::invalid(
            "reports",
            "at least one report is required",
        ));
    }
    if body.reports.len() > MAX_ITEMS {
        return Err(ApiError::invalid(
            "reports",
            format!(
                "{} reports in one request; at most {MAX_ITEMS}",
                body.reports.len()
            ),
        ));
    }
    for (i, item) in body.reports.iter().enumerate() {
        for (name, value) in [("mau", item.mau), ("data_points", item.data_points)] {
            if value > usage::LIMIT {
                return Err(ApiError::invalid(
                    format!("reports[{i}].{name}"),
                    format!("{value} is above the limit of {}", usage::LIMIT),
                ));
            }
        }
    }
    let actor = who.actor(Some("usage report".to_owned()));
    let mut outcomes: Vec<Option<Outcome>> = vec![None; body.reports.len()];
    let mut facts = Vec::new();
    for (clock, indices) in by_clock(&state, &body).await? {
        let engine: Engine = match clock {
            Some(clock) => state.engine.for_test_clock(&clock).await?,
            None => state.engine.clone(),
        };
        let engine = super::orgs::previewing(engine, dry_run);
        let current = Period::containing(engine.now()).label();
        let reports: Vec<UsageReport> = indices
            .iter()
            .map(|&i| {
                let item = &body.reports[i];
                UsageReport {
                    org: item.org.clone(),
                    project: item.project.clone(),
                    period: item.period.clone().unwrap_or_else(|| current.clone()),
                    mau: item.mau,
                    data_points: item.data_points,
                    correction: item.correction,
                }
            })
            .collect();
        let ingested = engine.report_usage(&reports, &actor).await?;
        for (&i, outcome) in indices.iter().zip(ingested.outcomes) {
            outcomes[i] = Some(outcome);
        }
        facts.extend(dto::facts(&ingested.report.facts));
    }
    let results: Vec<UsageResult> = body
        .reports
        .iter()
        .zip(outcomes)
        .enumerate()
        .map(|(index, (item, outcome))| {
            let (status, error) = match outcome {
                Some(Outcome::Accepted) => (ItemStatus::Accepted, None),
                Some(Outcome::Refused(why)) => (ItemStatus::Refused, Some(why)),
                // Every index is in exactly one group, so every item has an outcome.
                None => (ItemStatus::Refused, Some("not processed".to_owned())),
            };
            UsageResult {
                index,
                org: item.org.clone(),
                project: item.project.clone(),
                status,
                error,
            }
        })
        .collect();
    let accepted = results
        .iter()
        .filter(|r| r.status == ItemStatus::Accepted)
        .count();
    Ok(Json(UsageResponse {
        dry_run,
        accepted,
        refused: results.len() - accepted,
        results,
        facts,
    }))
}
