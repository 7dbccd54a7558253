//! Actions on an org: every manual operation of SPEC section 10 and every plan and add-on
//! change, each with a required reason, as form → confirm page → execute. The confirm
//! page shows what will be done and the engine's preview of it (`Engine::preview`: the
//! transitions, invoices and emails it would cause, or the refusal). Cancellation is
//! confirmed by typing `DELETE`. A refusal by the rules shows the legal moves.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{redirect, render, ConsoleState, Failure, FormBody, Signed};
use crate::api::extract::PathParams;
use crate::api::ApiError;
use crate::config::Role;
use crate::domain::plan::{Kind, KINDS};
use crate::domain::Org;
use crate::engine::{Actor, Command, PlanChange};

/// One kind of action: its name in forms, its label, the role it needs and the fields it
/// takes besides the reason.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Op {
    pub name: &'static str,
    pub label: &'static str,
    #[serde(skip)]
    pub role: Role,
    pub fields: &'static [&'static str],
    /// Whether it moves the lifecycle (shown with the state's legal moves) rather than the
    /// plan.
    pub lifecycle: bool,
}

impl From<&Kind> for Op {
    fn from(kind: &Kind) -> Self {
        Op {
            name: kind.name,
            label: kind.summary,
            role: if kind.admin() {
                Role::Admin
            } else {
                Role::Operator
            },
            fields: kind.fields,
            lifecycle: !kind.plan(),
        }
    }
}

/// The console's tier change: an upgrade or a downgrade, picked from the tier given.
const CHANGE_TIER: Op = Op {
    name: "change_tier",
    label: "Change the tier",
    role: Role::Operator,
    fields: &["tier"],
    lifecycle: false,
};

/// Every action the console offers: the admin's rows of the command table and the plan
/// changes, with one tier change for `upgrade` and `downgrade`.
pub fn ops() -> Vec<Op> {
    KINDS
        .iter()
        .filter(|k| (k.admin() || k.plan()) && k.name != "downgrade")
        .map(|k| {
            if k.name == "upgrade" {
                CHANGE_TIER
            } else {
                Op::from(k)
            }
        })
        .collect()
}

/// The actions a role may take.
pub fn allowed(role: Role) -> Vec<Op> {
    ops().into_iter().filter(|o| o.role <= role).collect()
}

/// An action form as submitted; every field is text, checked by [`parse`].
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ActionForm {
    #[serde(default)]
    pub op: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub days: String,
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub lock_reason: String,
    #[serde(default)]
    pub tier: String,
    #[serde(default)]
    pub addon: String,
    #[serde(default, skip_serializing)]
    pub confirm: String,
}

/// The action's kind, command and a sentence saying what it does; the reason must not be
/// blank.
///
/// # Errors
/// [`ApiError::NotFound`] for an unknown action; [`ApiError::Invalid`] for a missing or
/// malformed field.
pub fn parse(form: &ActionForm, org: &Org) -> Result<(Op, Command, String), ApiError> {
    let op = ops()
        .into_iter()
        .find(|o| o.name == form.op)
        .ok_or_else(|| ApiError::NotFound(format!("unknown action `{}`", form.op)))?;
    if form.reason.trim().is_empty() {
        return Err(ApiError::invalid(
            "reason",
            "a reason is required; it is stored in the audit trail",
        ));
    }
    let value = |field: &str| match field {
        "days" => form.days.as_str(),
        "to" => form.to.as_str(),
        "lock_reason" => form.lock_reason.as_str(),
        "tier" => form.tier.as_str(),
        "addon" => form.addon.as_str(),
        // The confirm page asks for `DELETE`; `execute` checks it.
        "confirm" if op.name == "cancel" => "DELETE",
        _ => "",
    };
    let field = |name: &str| Some(value(name).trim().to_owned()).filter(|v| !v.is_empty());
    let id = &org.id;
    let command = match op.name {
        // A tier is read as an upgrade's, then the org's tier picks the direction.
        "change_tier" => match Command::from_fields("upgrade", field)? {
            Command::Plan(PlanChange::Upgrade { tier }) => Command::change_tier(tier, org.tier)
                .ok_or_else(|| {
                    ApiError::invalid("tier", format!("org `{id}` is on tier {tier} already"))
                })?,
            other => other,
        },
        name => Command::from_fields(name, field)?,
    };
    let summary = summary(&command, org);
    Ok((op, command, summary))
}

/// A sentence saying what `command` does to `org`.
fn summary(command: &Command, org: &Org) -> String {
    let id = &org.id;
    match command {
        Command::Lock => format!("Lock `{id}` (manual lock)."),
        Command::Unlock { reason } => format!("Lift the `{}` lock of `{id}`.", reason.as_str()),
        Command::ExtendTrial { days } => format!("Extend the trial of `{id}` by {days} days."),
        Command::ExtendGrace { days } => {
            format!("Extend the grace period of `{id}` by {days} days.")
        }
        Command::PostponeCancel { days } => {
            format!("Postpone the cancellation of `{id}` by {days} days.")
        }
        Command::EndTrial => format!("End the trial of `{id}` now."),
        Command::MarkPaid => format!("Mark the overdue invoices of `{id}` paid."),
        Command::Transition { to } => format!("Move `{id}` to `{}`.", to.as_str()),
        Command::Cancel { .. } => {
            format!("Cancel `{id}`: its data is purged and it cannot come back.")
        }
        Command::Plan(PlanChange::Upgrade { tier }) => format!(
            "Upgrade (charged prorated now) `{id}` from tier {} to tier {tier}.",
            org.tier
        ),
        Command::Plan(PlanChange::Downgrade { tier }) => format!(
            "Downgrade (at the next 1st) `{id}` from tier {} to tier {tier}.",
            org.tier
        ),
        Command::Plan(PlanChange::CancelDowngrade) => {
            format!("Cancel the scheduled downgrade of `{id}`.")
        }
        Command::Plan(PlanChange::AddAddon { addon }) => {
            format!("Add the add-on `{addon}` to `{id}`.")
        }
        Command::Plan(PlanChange::RemoveAddon { addon }) => {
            format!("Remove the add-on `{addon}` from `{id}`.")
        }
        Command::Plan(PlanChange::CancelAddonRemoval { addon }) => {
            format!("Keep the add-on `{addon}` of `{id}` (cancel its removal).")
        }
        Command::AddPaymentMethod | Command::RetryOverdue => {
            format!("{} for `{id}`.", command.kind().summary)
        }
    }
}

/// Checks the role and parses the form against the org as it is now.
async fn prepare(
    state: &ConsoleState,
    signed: &Signed,
    id: &str,
    form: &ActionForm,
) -> Result<(Op, Command, String), Failure> {
    let org = state
        .engine()
        .org(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("unknown org `{id}`")))?;
    if let Some(op) = ops().into_iter().find(|o| o.name == form.op) {
        if signed.role() < op.role {
            return Err(Failure(ApiError::Forbidden {
                role: signed.role(),
                required: op.role,
            }));
        }
    }
    Ok(parse(form, &org)?)
}

/// The confirm page; with an `error` (a cancel not confirmed) it is a 400.
fn confirm_page(
    state: &ConsoleState,
    signed: &Signed,
    id: &str,
    form: &ActionForm,
    (op, summary): (Op, &str),
    error: Option<&str>,
    preview: &serde_json::Value,
) -> Response {
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    render(
        state,
        Some(signed),
        status,
        "confirm.html",
        json!({
            "org": id,
            "org_href": format!("/console/orgs/{}", urlencode(id)),
            "op": op,
            "summary": summary,
            "form": form,
            "needs_delete": op.name == "cancel",
            "error": error,
            "preview": preview,
        }),
    )
}

/// `POST /console/orgs/{id}/confirm`: what the action will do, and a button to do it.
pub(super) async fn confirm(
    State(state): State<ConsoleState>,
    Extension(signed): Extension<Signed>,
    PathParams(id): PathParams<String>,
    FormBody(form): FormBody<ActionForm>,
) -> Response {
    let (op, command, summary) = match prepare(&state, &signed, &id, &form).await {
        Ok(prepared) => prepared,
        Err(e) => return e.page(&state, &signed),
    };
    let actor = actor(&signed, &form);
    // The engine's preview: the same command planned and written, then rolled back.
    let previewed = async {
        let engine = state.engine().for_org(&id).await?.preview();
        engine.command(&id, &command, &actor).await
    }
    .await;
    let preview = match previewed {
        Ok(report) => {
            json!({ "facts": report.facts.iter().map(super::page::fact_fields).collect::<Vec<_>>() })
        }
        Err(crate::engine::Error::Refused(refusal)) => json!({
            "refused": refusal.to_string(),
            "legal_moves": refusal.legal,
        }),
        Err(e) => return Failure::from(e).page(&state, &signed),
    };
    confirm_page(&state, &signed, &id, &form, (op, &summary), None, &preview)
}

fn actor(signed: &Signed, form: &ActionForm) -> Actor {
    Actor {
        name: signed.session.principal.name.clone(),
        reason: Some(form.reason.trim().to_owned()),
    }
}

/// `POST /console/orgs/{id}/execute`: does it, through the engine that owns the org,
/// with the signed-in token's name as the actor; back to the org's page.
pub(super) async fn execute(
    State(state): State<ConsoleState>,
    Extension(signed): Extension<Signed>,
    PathParams(id): PathParams<String>,
    FormBody(form): FormBody<ActionForm>,
) -> Response {
    let (op, command, summary) = match prepare(&state, &signed, &id, &form).await {
        Ok(prepared) => prepared,
        Err(e) => return e.page(&state, &signed),
    };
    if op.name == "cancel" && form.confirm != "DELETE" {
        return confirm_page(
            &state,
            &signed,
            &id,
            &form,
            (op, &summary),
            Some("Type DELETE, in capitals, to cancel this org."),
            &serde_json::Value::Null,
        );
    }
    let actor = actor(&signed, &form);
    let done = async {
        let engine = state.engine().for_org(&id).await?;
        engine.command(&id, &command, &actor).await
    }
    .await;
    match done {
        Ok(_) => {
            tracing::info!(org = %id, op = op.name, actor = %actor.name, "console: action done");
            redirect(&format!(
                "/console/orgs/{}?done={}",
                urlencode(&id),
                op.name
            ))
        }
        Err(e) => Failure::from(e).page(&state, &signed),
    }
}

/// Percent-encodes a path segment or query value.
pub(super) fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org() -> Org {
        Org {
            id: "acme".into(),
            plan: "basic".into(),
            tier: 20_000,
            addons: vec![],
            currency: "USD".into(),
            admins: vec!["a@acme.test".into()],
            billing_email: "a@acme.test".into(),
            signup_at: chrono::DateTime::UNIX_EPOCH,
            canceled_at: None,
            lifecycle: crate::domain::Lifecycle::trial(chrono::DateTime::UNIX_EPOCH, false),
            usage: None,
            overage_lock_mau: None,
            scheduled_tier: None,
            scheduled_removals: vec![],
            clock: None,
            version: 0,
        }
    }

    fn form(op: &str, reason: &str) -> ActionForm {
        ActionForm {
            op: op.into(),
            reason: reason.into(),
            ..ActionForm::default()
        }
    }

    #[test]
    fn every_action_needs_a_reason() {
        for op in ops() {
            let err = parse(&form(op.name, "  "), &org()).unwrap_err();
            assert!(err.to_string().starts_with("reason:"), "{}: {err}", op.name);
        }
    }

    #[test]
    fn fields_are_checked_and_tiers_pick_the_direction() {
        let mut f = form("extend_trial", "asked");
        f.days = "0".into();
        assert!(parse(&f, &org()).is_err());
        f.days = "7".into();
        assert!(matches!(
            parse(&f, &org()).unwrap().1,
            Command::ExtendTrial { days: 7 }
        ));
        let mut f = form("change_tier", "asked");
        f.tier = "10_000".into();
        assert!(matches!(
            parse(&f, &org()).unwrap().1,
            Command::Plan(PlanChange::Downgrade { tier: 10_000 })
        ));
        f.tier = "20000".into();
        assert!(parse(&f, &org()).is_err());
        assert!(matches!(
            parse(&form("nuke", "asked"), &org()),
            Err(ApiError::NotFound(_))
        ));
    }

    #[test]
    fn viewers_may_take_no_action() {
        assert!(allowed(Role::Viewer).is_empty());
        assert!(allowed(Role::Operator).iter().all(|o| !o.lifecycle));
        assert_eq!(allowed(Role::Admin).len(), ops().len());
    }

    #[test]
    fn urlencode_keeps_unreserved_characters() {
        assert_eq!(urlencode("a b/c"), "a%20b%2Fc");
    }
}
