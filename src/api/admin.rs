//! Manual operations and cancellation (admin, SPEC section 10): each names its actor (the
//! token) and a required reason, both stored in the audit trail. The operations and their
//! fields are the manual rows of the command table ([`crate::domain::plan::KINDS`]).

use axum::extract::State;
use axum::{Extension, Json};

use super::auth::Principal;
use super::dto::{AdminRequest, CancelRequest, CommandResponse};
use super::error::{ApiError, Result};
use super::extract::{DryRun, OptionalJsonBody, PathParams};
use super::orgs::command;
use super::ApiState;
use crate::domain::plan::Kind;
use crate::engine::Command;

/// A required, non-blank reason.
fn reason(reason: Option<String>) -> Result<String> {
    match reason {
        Some(r) if !r.trim().is_empty() => Ok(r),
        _ => Err(ApiError::invalid(
            "reason",
            "a reason is required; it is stored in the audit trail",
        )),
    }
}

/// `POST /v1/orgs/{id}/admin/{op}`.
pub(super) async fn operation(
    State(state): State<ApiState>,
    Extension(who): Extension<Principal>,
    PathParams((id, op)): PathParams<(String, String)>,
    DryRun(dry_run): DryRun,
    OptionalJsonBody(body): OptionalJsonBody<AdminRequest>,
) -> Result<Json<CommandResponse>> {
    let cmd = Kind::named(&op, Kind::manual)?.command(|field| match field {
        "days" => body.days.map(|d| d.to_string()),
        "to" => body.to.clone(),
        "lock_reason" => body.lock_reason.clone(),
        _ => None,
    })?;
    let reason = reason(body.reason)?;
    command(&state, dry_run, &id, cmd, who.actor(Some(reason))).await
}

/// `POST /v1/orgs/{id}/cancel`: needs `"confirm": "DELETE"` exactly, and a reason.
pub(super) async fn cancel(
    State(state): State<ApiState>,
    Extension(who): Extension<Principal>,
    PathParams(id): PathParams<String>,
    DryRun(dry_run): DryRun,
    OptionalJsonBody(body): OptionalJsonBody<CancelRequest>,
) -> Result<Json<CommandResponse>> {
    let Some(confirm) = body.confirm.filter(|c| c == "DELETE") else {
        return Err(ApiError::invalid(
            "confirm",
            "cancellation must be confirmed with exactly `DELETE`",
        ));
    };
    let reason = reason(body.reason)?;
    command(
        &state,
        dry_run,
        &id,
        Command::Cancel { confirm },
        who.actor(Some(reason)),
    )
    .await
}
