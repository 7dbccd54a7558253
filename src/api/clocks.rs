//! Test clocks (admin; routed only with `api.test_clocks = true`): orgs attached to a clock
//! live on its time, and advancing it runs them, and only them, through the same engine.

use axum::extract::State;
use axum::http::header::LOCATION;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;

use super::dto::{self, AdvanceRequest, ClockDto, CreateClockRequest, DeletedClock};
use super::error::{ApiError, Result};
use super::extract::{JsonBody, PathParams};
use super::ApiState;
use crate::storage::test_clock::TestClock;

async fn find(state: &ApiState, id: &str) -> Result<TestClock> {
    state
        .engine
        .test_clock_named(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("unknown test clock `{id}`")))
}

/// `POST /v1/test-clocks`.
pub(super) async fn create(
    State(state): State<ApiState>,
    JsonBody(body): JsonBody<CreateClockRequest>,
) -> Result<impl IntoResponse> {
    if state.engine.test_clock_named(&body.id).await?.is_some() {
        return Err(ApiError::Conflict(format!(
            "test clock `{}` exists already",
            body.id
        )));
    }
    let clock = state
        .engine
        .create_test_clock(&body.id, body.frozen_at)
        .await?;
    Ok((
        StatusCode::CREATED,
        [(LOCATION, format!("/v1/test-clocks/{}", clock.id))],
        Json(ClockDto::from(&clock)),
    ))
}

/// `GET /v1/test-clocks/{id}`.
pub(super) async fn show(
    State(state): State<ApiState>,
    PathParams(id): PathParams<String>,
) -> Result<Json<ClockDto>> {
    Ok(Json(ClockDto::from(&find(&state, &id).await?)))
}

/// `POST /v1/test-clocks/{id}/advance`: forward only; answers when every deadline of the
/// clock's orgs up to `to` has been processed, with what happened.
pub(super) async fn advance(
    State(state): State<ApiState>,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<AdvanceRequest>,
) -> Result<Json<dto::AdvanceResponse>> {
    find(&state, &id).await?;
    let report = state.engine.advance_test_clock(&id, body.to).await?;
    let clock = find(&state, &id).await?;
    Ok(Json(dto::AdvanceResponse {
        clock: ClockDto::from(&clock),
        facts: dto::facts(&report.facts),
    }))
}

/// `DELETE /v1/test-clocks/{id}`: the clock and all its orgs with their rows.
pub(super) async fn delete(
    State(state): State<ApiState>,
    PathParams(id): PathParams<String>,
) -> Result<Json<DeletedClock>> {
    find(&state, &id).await?;
    let deleted_orgs = state.engine.delete_test_clock(&id).await?;
    Ok(Json(DeletedClock { id, deleted_orgs }))
}
