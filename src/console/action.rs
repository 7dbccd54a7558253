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
use crate::domain::{LockReason, Org, Status};
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

const fn op(
    name: &'static str,
    label: &'static str,
    role: Role,
    fields: &'static [&'static str],
    lifecycle: bool,
) -> Op {
    Op {
        name,
        label,
        role,
        fields,
        lifecycle,
    }
}

/// Every action the console offers.
pub const OPS: [Op; 14] = [
    op("lock", "Lock", Role::Admin, &[], true),
    op("unlock", "Unlock", Role::Admin, &["lock_reason"], true),
    op(
        "extend_trial",
        "Extend the trial",
        Role::Admin,
        &["days"],
        true,
    ),
    op(
        "extend_grace",
        "Extend the grace period",
        Role::Admin,
        &["days"],
        true,
    ),
    op(
        "postpone_cancel",
        "Postpone the cancellation",
        Role::Admin,
        &["days"],
        true,
    ),
    op("end_trial", "End the trial now", Role::Admin, &[], true),
    op(
        "mark_paid",
        "Mark the overdue invoices paid",
        Role::Admin,
        &[],
        true,
    ),
    op("transition", "Move to a state", Role::Admin, &["to"], true),
    op("cancel", "Cancel the org", Role::Admin, &[], true),
    op(
        "change_tier",
        "Change the tier",
        Role::Operator,
        &["tier"],
        false,
    ),
    op(
        "cancel_downgrade",
        "Cancel the scheduled downgrade",
        Role::Operator,
        &[],
        false,
    ),
    op(
        "add_addon",
        "Add an add-on",
        Role::Operator,
        &["addon"],
        false,
    ),
    op(
        "remove_addon",
        "Remove an add-on",
        Role::Operator,
        &["addon"],
        false,
    ),
    op(
        "keep_addon",
        "Keep an add-on scheduled for removal",
        Role::Operator,
        &["addon"],
        false,
    ),
];

/// The actions a role may take.
pub fn allowed(role: Role) -> Vec<Op> {
    OPS.into_iter().filter(|o| o.role <= role).collect()
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

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid(field, message)
}

fn days(form: &ActionForm) -> Result<u32, ApiError> {
    form.days
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|d| (1..=3_650).contains(d))
        .ok_or_else(|| invalid("days", "a whole number of days from 1 to 3650"))
}

fn addon(form: &ActionForm) -> Result<String, ApiError> {
    let addon = form.addon.trim();
    if addon.is_empty() {
        return Err(invalid("addon", "choose an add-on"));
    }
    Ok(addon.to_owned())
}

/// The action's kind, command and a sentence saying what it does; the reason must not be
/// blank.
///
/// # Errors
/// [`ApiError::NotFound`] for an unknown action; [`ApiError::Invalid`] for a missing or
/// malformed field.
pub fn parse(form: &ActionForm, org: &Org) -> Result<(Op, Command, String), ApiError> {
    let op = OPS
        .into_iter()
        .find(|o| o.name == form.op)
        .ok_or_else(|| ApiError::NotFound(format!("unknown action `{}`", form.op)))?;
    if form.reason.trim().is_empty() {
        return Err(invalid(
            "reason",
            "a reason is required; it is stored in the audit trail",
        ));
    }
    let id = &org.id;
    let (command, summary) = match op.name {
        "lock" => (Command::Lock, format!("Lock `{id}` (manual lock).")),
        "unlock" => {
            let reason = match form.lock_reason.trim() {
                "" => LockReason::Manual,
                r => r
                    .parse::<LockReason>()
                    .map_err(|e| invalid("lock_reason", e.to_string()))?,
            };
            (
                Command::Unlock { reason },
                format!("Lift the `{}` lock of `{id}`.", reason.as_str()),
            )
        }
        "extend_trial" => {
            let days = days(form)?;
            (
                Command::ExtendTrial { days },
                format!("Extend the trial of `{id}` by {days} days."),
            )
        }
        "extend_grace" => {
            let days = days(form)?;
            (
                Command::ExtendGrace { days },
                format!("Extend the grace period of `{id}` by {days} days."),
            )
        }
        "postpone_cancel" => {
            let days = days(form)?;
            (
                Command::PostponeCancel { days },
                format!("Postpone the cancellation of `{id}` by {days} days."),
            )
        }
        "end_trial" => (Command::EndTrial, format!("End the trial of `{id}` now.")),
        "mark_paid" => (
            Command::MarkPaid,
            format!("Mark the overdue invoices of `{id}` paid."),
        ),
        "transition" => {
            let to = form
                .to
                .trim()
                .parse::<Status>()
                .map_err(|e| invalid("to", e.to_string()))?;
            (
                Command::Transition { to },
                format!("Move `{id}` to `{}`.", to.as_str()),
            )
        }
        "cancel" => (
            Command::Cancel {
                confirm: "DELETE".to_owned(),
            },
            format!("Cancel `{id}`: its data is purged and it cannot come back."),
        ),
        "change_tier" => {
            let tier = form
                .tier
                .trim()
                .replace(['_', ','], "")
                .parse::<u32>()
                .map_err(|_| invalid("tier", "a tier in MAU, such as 20000"))?;
            let change = match tier.cmp(&org.tier) {
                std::cmp::Ordering::Greater => PlanChange::Upgrade { tier },
                std::cmp::Ordering::Less => PlanChange::Downgrade { tier },
                std::cmp::Ordering::Equal => {
                    return Err(invalid("tier", format!("`{id}` is on tier {tier} already")))
                }
            };
            let what = if tier > org.tier {
                "Upgrade (charged prorated now)"
            } else {
                "Downgrade (at the next 1st)"
            };
            (
                Command::Plan(change),
                format!("{what} `{id}` from tier {} to tier {tier}.", org.tier),
            )
        }
        "cancel_downgrade" => (
            Command::Plan(PlanChange::CancelDowngrade),
            format!("Cancel the scheduled downgrade of `{id}`."),
        ),
        "add_addon" => {
            let addon = addon(form)?;
            let summary = format!("Add the add-on `{addon}` to `{id}`.");
            (Command::Plan(PlanChange::AddAddon { addon }), summary)
        }
        "remove_addon" => {
            let addon = addon(form)?;
            let summary = format!("Remove the add-on `{addon}` from `{id}`.");
            (Command::Plan(PlanChange::RemoveAddon { addon }), summary)
        }
        _ => {
            let addon = addon(form)?;
            let summary = format!("Keep the add-on `{addon}` of `{id}` (cancel its removal).");
            (
                Command::Plan(PlanChange::CancelAddonRemoval { addon }),
                summary,
            )
        }
    };
    Ok((op, command, summary))
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
    if let Some(op) = OPS.iter().find(|o| o.name == form.op) {
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
        for op in OPS {
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
        assert_eq!(allowed(Role::Admin).len(), OPS.len());
    }

    #[test]
    fn urlencode_keeps_unreserved_characters() {
        assert_eq!(urlencode("a b/c"), "a%20b%2Fc");
    }
}
