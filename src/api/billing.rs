//! Payments and plan changes (operator): the payment provider's outcomes, tier changes,
//! add-ons (SPEC section 5).

use axum::extract::State;
use axum::{Extension, Json};

use super::auth::Principal;
use super::dto::{
    AddonRequest, CommandResponse, PaymentOutcome, PaymentRequest, PlanRequest, ReasonBody,
};
use super::error::{ApiError, Result};
use super::extract::{DryRun, JsonBody, OptionalJsonBody, PathParams};
use super::orgs::{command, previewing, respond};
use super::ApiState;
use crate::engine::Command;
use crate::engine::PlanChange;

/// `POST /v1/invoices/{id}/payment`: the provider's outcome for an invoice.
pub(super) async fn payment(
    State(state): State<ApiState>,
    Extension(who): Extension<Principal>,
    PathParams(id): PathParams<i64>,
    DryRun(dry_run): DryRun,
    JsonBody(body): JsonBody<PaymentRequest>,
) -> Result<Json<CommandResponse>> {
    let invoice = state.engine.invoice(id).await?;
    let engine = previewing(state.engine.for_org(&invoice.org_id).await?, dry_run);
    let report = engine
        .payment_outcome(
            id,
            body.outcome == PaymentOutcome::Succeeded,
            &who.actor(body.reason),
        )
        .await?;
    respond(&engine, &invoice.org_id, report).await
}

/// `POST /v1/orgs/{id}/plan`: an upgrade if `tier` is above the current tier, a downgrade
/// if below.
pub(super) async fn plan(
    State(state): State<ApiState>,
    Extension(who): Extension<Principal>,
    PathParams(id): PathParams<String>,
    DryRun(dry_run): DryRun,
    JsonBody(body): JsonBody<PlanRequest>,
) -> Result<Json<CommandResponse>> {
    let org = state
        .engine
        .org(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("unknown org `{id}`")))?;
    let change = Command::change_tier(body.tier, org.tier).ok_or_else(|| {
        ApiError::invalid(
            "tier",
            format!("org `{id}` is on tier {} already", org.tier),
        )
    })?;
    command(&state, dry_run, &id, change, who.actor(body.reason)).await
}

/// `DELETE /v1/orgs/{id}/plan/scheduled`: cancels a scheduled downgrade.
pub(super) async fn cancel_downgrade(
    State(state): State<ApiState>,
    Extension(who): Extension<Principal>,
    PathParams(id): PathParams<String>,
    DryRun(dry_run): DryRun,
    OptionalJsonBody(body): OptionalJsonBody<ReasonBody>,
) -> Result<Json<CommandResponse>> {
    let cmd = Command::Plan(PlanChange::CancelDowngrade);
    command(&state, dry_run, &id, cmd, who.actor(body.reason)).await
}

/// `POST /v1/orgs/{id}/addons`: includes an add-on now.
pub(super) async fn add_addon(
    State(state): State<ApiState>,
    Extension(who): Extension<Principal>,
    PathParams(id): PathParams<String>,
    DryRun(dry_run): DryRun,
    JsonBody(body): JsonBody<AddonRequest>,
) -> Result<Json<CommandResponse>> {
    let cmd = Command::Plan(PlanChange::AddAddon { addon: body.addon });
    command(&state, dry_run, &id, cmd, who.actor(body.reason)).await
}

/// `DELETE /v1/orgs/{id}/addons/{addon}`: removes an add-on (in trial at once, otherwise
/// at the next 1st).
pub(super) async fn remove_addon(
    State(state): State<ApiState>,
    Extension(who): Extension<Principal>,
    PathParams((id, addon)): PathParams<(String, String)>,
    DryRun(dry_run): DryRun,
    OptionalJsonBody(body): OptionalJsonBody<ReasonBody>,
) -> Result<Json<CommandResponse>> {
    let cmd = Command::Plan(PlanChange::RemoveAddon { addon });
    command(&state, dry_run, &id, cmd, who.actor(body.reason)).await
}

/// `POST /v1/orgs/{id}/addons/{addon}/keep`: cancels a scheduled add-on removal.
pub(super) async fn keep_addon(
    State(state): State<ApiState>,
    Extension(who): Extension<Principal>,
    PathParams((id, addon)): PathParams<(String, String)>,
    DryRun(dry_run): DryRun,
    OptionalJsonBody(body): OptionalJsonBody<ReasonBody>,
) -> Result<Json<CommandResponse>> {
    let cmd = Command::Plan(PlanChange::CancelAddonRemoval { addon });
    command(&state, dry_run, &id, cmd, who.actor(body.reason)).await
}
