//! Manual operations and cancellation (admin, SPEC section 10): each names its actor (the
//! token) and a required reason, both stored in the audit trail.

use axum::extract::State;
use axum::{Extension, Json};

use super::auth::Principal;
use super::dto::{AdminRequest, CancelRequest, CommandResponse};
use super::error::{ApiError, Result};
use super::extract::{DryRun, OptionalJsonBody, PathParams};
use super::orgs::command;
use super::ApiState;
use crate::domain::{LockReason, Status};
use crate::engine::Command;

/// The operations of `POST /v1/orgs/{id}/admin/{op}`.
pub const OPS: [&str; 8] = [
    "lock",
    "unlock",
    "extend_trial",
    "extend_grace",
    "postpone_cancel",
    "end_trial",
    "mark_paid",
    "transition",
];

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

/// Which optional fields an operation takes; any other one given is refused.
fn check_fields(op: &str, body: &AdminRequest, takes: &[&str]) -> Result<()> {
    let given = [
        ("days", body.days.is_some()),
        ("to", body.to.is_some()),
        ("lock_reason", body.lock_reason.is_some()),
    ];
    match given
        .iter()
        .find(|(name, set)| *set && !takes.contains(name))
    {
        Some((name, _)) => Err(ApiError::invalid(
            *name,
            format!("`{name}` does not apply to `{op}`"),
        )),
        None => Ok(()),
    }
}

fn days(op: &str, days: Option<u32>) -> Result<u32> {
    days.ok_or_else(|| ApiError::invalid("days", format!("`{op}` needs `days`")))
}

/// `POST /v1/orgs/{id}/admin/{op}`.
pub(super) async fn operation(
    State(state): State<ApiState>,
    Extension(who): Extension<Principal>,
    PathParams((id, op)): PathParams<(String, String)>,
    DryRun(dry_run): DryRun,
    OptionalJsonBody(body): OptionalJsonBody<AdminRequest>,
) -> Result<Json<CommandResponse>> {
    let takes: &[&str] = match op.as_str() {
        "unlock" => &["lock_reason"],
        "extend_trial" | "extend_grace" | "postpone_cancel" => &["days"],
        "transition" => &["to"],
        "lock" | "end_trial" | "mark_paid" => &[],
        _ => {
            return Err(ApiError::NotFound(format!(
                "unknown operation `{op}`, expected one of: {}",
                OPS.join(", ")
            )))
        }
    };
    check_fields(&op, &body, takes)?;
    let reason = reason(body.reason)?;
    let cmd = match op.as_str() {
        "lock" => Command::Lock,
        "unlock" => Command::Unlock {
            reason: body
                .lock_reason
                .as_deref()
                .map_or(Ok(LockReason::Manual), str::parse)
                .map_err(|e| ApiError::invalid("lock_reason", e.to_string()))?,
        },
        "extend_trial" => Command::ExtendTrial {
            days: days(&op, body.days)?,
        },
        "extend_grace" => Command::ExtendGrace {
            days: days(&op, body.days)?,
        },
        "postpone_cancel" => Command::PostponeCancel {
            days: days(&op, body.days)?,
        },
        "end_trial" => Command::EndTrial,
        "mark_paid" => Command::MarkPaid,
        _ => Command::Transition {
            to: body
                .to
                .as_deref()
                .ok_or_else(|| ApiError::invalid("to", "`transition` needs `to`"))?
                .parse::<Status>()
                .map_err(|e| ApiError::invalid("to", e.to_string()))?,
        },
    };
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
