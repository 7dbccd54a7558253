//! Orgs: signup, list, show, entitlements, audit trail, invoices, payment method.

use axum::extract::State;
use axum::http::header::LOCATION;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};

use super::auth::Principal;
use super::dto::{
    self, Assumptions, CommandResponse, EntitlementsResponse, ForecastQuery, ForecastResponse,
    InvoiceDto, InvoiceList, LimitQuery, ListQuery, OrgDto, OrgList, OrgSummary, ReasonBody,
    SignupRequest, TransitionDto, TransitionList,
};
use super::error::{ApiError, Result};
use super::extract::{DryRun, JsonBody, OptionalJsonBody, Params, PathParams};
use super::ApiState;
use crate::domain::{LockReason, Status};
use crate::engine::forecast::horizon;
use crate::engine::{Actor, Command, Engine, Payments, Report, Signup, View};

/// Orgs per page of `GET /v1/orgs` unless `limit` says otherwise, and the most it may say.
const PAGE: u64 = 100;
const MAX_PAGE: u64 = 1_000;

/// The view of an org on its own clock: one `engine.view` for an org on the real clock;
/// an org on a test clock is viewed again at its clock's instant (upgrade prompt, legal
/// moves).
pub(super) async fn view(state: &ApiState, id: &str) -> Result<View> {
    let view = state.engine.view(id).await?;
    match &view.org.clock {
        Some(clock) => Ok(state.engine.for_test_clock(clock).await?.view(id).await?),
        None => Ok(view),
    }
}

/// Runs a command on an org through the engine that owns it (its test clock's, if any)
/// and answers with the org afterwards and what the command caused.
pub(super) async fn command(
    state: &ApiState,
    dry_run: bool,
    id: &str,
    command: Command,
    actor: Actor,
) -> Result<Json<CommandResponse>> {
    let engine = previewing(state.engine.for_org(id).await?, dry_run);
    let report = engine.command(id, &command, &actor).await?;
    respond(&engine, id, report).await
}

/// The engine itself, or its preview (`?dry_run=true`).
pub(super) fn previewing(engine: Engine, dry_run: bool) -> Engine {
    if dry_run {
        engine.preview()
    } else {
        engine
    }
}

/// A command's answer: the org afterwards (as it would be, for a preview) and the facts.
pub(super) async fn respond(
    engine: &Engine,
    id: &str,
    report: Report,
) -> Result<Json<CommandResponse>> {
    let view = match report.org {
        Some(org) if engine.is_preview() => engine.view_of(engine.access_of(org)),
        _ => engine.view(id).await?,
    };
    Ok(Json(CommandResponse {
        dry_run: engine.is_preview(),
        org: OrgDto::from(&view),
        facts: dto::facts(&report.facts),
    }))
}

/// `POST /v1/orgs` (operator).
pub(super) async fn signup(
    State(state): State<ApiState>,
    Extension(who): Extension<Principal>,
    DryRun(dry_run): DryRun,
    JsonBody(body): JsonBody<SignupRequest>,
) -> Result<impl IntoResponse> {
    let engine = match &body.test_clock {
        Some(_) if !state.settings.test_clocks => {
            return Err(ApiError::invalid(
                "test_clock",
                "test clocks are disabled (api.test_clocks = false)",
            ))
        }
        Some(clock) => state.engine.for_test_clock(clock).await?,
        None => state.engine.clone(),
    };
    let engine = previewing(engine, dry_run);
    let id = body.id.clone();
    let signup = Signup {
        id: body.id,
        plan: body.plan,
        tier: body.tier,
        admins: body.admins,
        billing_email: body.billing_email,
        payment_method: body.payment_method,
        addons: body.addons,
        active: body.active,
    };
    let report = engine.signup(signup, &who.actor(body.reason)).await?;
    let status = if dry_run {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let response = respond(&engine, &id, report).await?;
    Ok((status, [(LOCATION, format!("/v1/orgs/{id}"))], response))
}

/// `GET /v1/orgs?state=&reason=&after=&limit=` (viewer).
pub(super) async fn list(
    State(state): State<ApiState>,
    Params(query): Params<ListQuery>,
) -> Result<Json<OrgList>> {
    let status = query
        .state
        .as_deref()
        .map(str::parse::<Status>)
        .transpose()
        .map_err(|e| ApiError::invalid("state", e.to_string()))?;
    let reason = query
        .reason
        .as_deref()
        .map(str::parse::<LockReason>)
        .transpose()
        .map_err(|e| ApiError::invalid("reason", e.to_string()))?;
    let limit = query.limit.unwrap_or(PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("{limit} is out of range 1..={MAX_PAGE}"),
        ));
    }
    let filter = crate::storage::org::Filter {
        status,
        reason,
        after: query.after,
        limit,
        ..crate::storage::org::Filter::default()
    };
    let orgs = state.engine.orgs(&filter).await?;
    let next_after = (orgs.len() as u64 == limit)
        .then(|| orgs.last().map(|o| o.id.clone()))
        .flatten();
    Ok(Json(OrgList {
        orgs: orgs.iter().map(OrgSummary::from).collect(),
        next_after,
    }))
}

/// `GET /v1/orgs/{id}` (viewer).
pub(super) async fn show(
    State(state): State<ApiState>,
    PathParams(id): PathParams<String>,
) -> Result<Json<OrgDto>> {
    Ok(Json(OrgDto::from(&view(&state, &id).await?)))
}

/// `GET /v1/orgs/{id}/entitlements` (viewer): one `engine.view` for real-clock orgs.
pub(super) async fn entitlements(
    State(state): State<ApiState>,
    PathParams(id): PathParams<String>,
) -> Result<Json<EntitlementsResponse>> {
    let access = state.engine.access(&id).await?;
    let access = match &access.org.clock {
        Some(clock) => {
            state
                .engine
                .for_test_clock(clock)
                .await?
                .access(&id)
                .await?
        }
        None => access,
    };
    Ok(Json(EntitlementsResponse::from(&access)))
}

async fn known(state: &ApiState, id: &str) -> Result<()> {
    match state.engine.org(id).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::NotFound(format!("unknown org `{id}`"))),
    }
}

/// `GET /v1/orgs/{id}/transitions?limit=` (viewer): the newest `limit` rows, oldest first.
pub(super) async fn transitions(
    State(state): State<ApiState>,
    PathParams(id): PathParams<String>,
    Params(query): Params<LimitQuery>,
) -> Result<Json<TransitionList>> {
    let limit = query.limit.unwrap_or(PAGE);
    if !(1..=10 * MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("{limit} is out of range 1..={}", 10 * MAX_PAGE),
        ));
    }
    known(&state, &id).await?;
    let rows = state.engine.transitions(&id, limit).await?;
    Ok(Json(TransitionList {
        transitions: rows.iter().map(TransitionDto::from).collect(),
        org: id,
    }))
}

/// `GET /v1/orgs/{id}/forecast?days=&until=&payments=` (viewer): what happens to the org
/// up to the horizon if nothing else does. Reads only.
pub(super) async fn forecast(
    State(state): State<ApiState>,
    PathParams(id): PathParams<String>,
    Params(query): Params<ForecastQuery>,
) -> Result<Json<ForecastResponse>> {
    let engine = state.engine.for_org(&id).await?;
    let until = horizon(engine.now(), query.days, query.until)?;
    let payments = query
        .payments
        .as_deref()
        .map_or(Ok(Payments::AsLast), str::parse)
        .map_err(|e: String| ApiError::invalid("payments", e))?;
    let forecast = engine.forecast(&id, until, payments).await?;
    Ok(Json(ForecastResponse {
        then: OrgSummary::from(&forecast.org),
        org: id,
        from: forecast.from,
        until: forecast.until,
        assumptions: Assumptions {
            usage: "no usage beyond what is reported",
            actions: "no admin, operator or customer action",
            payments: forecast.payments.as_str(),
        },
        facts: dto::facts(&forecast.facts),
    }))
}

/// `GET /v1/orgs/{id}/invoices` (viewer).
pub(super) async fn invoices(
    State(state): State<ApiState>,
    PathParams(id): PathParams<String>,
) -> Result<Json<InvoiceList>> {
    known(&state, &id).await?;
    let invoices = state.engine.invoices(&id).await?;
    Ok(Json(InvoiceList {
        invoices: invoices.iter().map(InvoiceDto::from).collect(),
        org: id,
    }))
}

/// `POST /v1/orgs/{id}/payment-method` (operator): a card was added. After a
/// `trial_expired` lock this charges the rest of the month and converts the org.
pub(super) async fn payment_method(
    State(state): State<ApiState>,
    Extension(who): Extension<Principal>,
    PathParams(id): PathParams<String>,
    DryRun(dry_run): DryRun,
    OptionalJsonBody(body): OptionalJsonBody<ReasonBody>,
) -> Result<Json<CommandResponse>> {
    command(
        &state,
        dry_run,
        &id,
        Command::AddPaymentMethod,
        who.actor(body.reason),
    )
    .await
}
