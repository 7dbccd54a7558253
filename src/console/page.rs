//! The console's pages: the org list, an org, the outbox across orgs, the test clocks.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::action::{self, urlencode};
use super::{problem, redirect, render, ConsoleState, Failure, FormBody, Signed};
use crate::api::extract::{Params, PathParams};
use crate::api::ApiError;
use crate::domain::period::Period;
use crate::domain::{LockReason, Org, Status};
use crate::engine::forecast::{horizon, Payments};
use crate::storage::org::{ClockFilter, Counts, Filter};
use crate::storage::outbox::Message;

/// Orgs per page of the list.
const PAGE: u64 = 50;
/// Rows of an org's audit trail and outbox shown on its page.
const TRAIL: u64 = 100;
const MESSAGES: u64 = 50;
/// The usage bar's width in SVG units.
const WIDTH: u64 = 600;

/// `2026-03-15 00:00 UTC`.
fn at(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// How far `t` is from `now`: `in 3 d 4 h`, `2 h 5 min ago`.
fn left(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    let secs = (t - now).num_seconds();
    let abs = secs.unsigned_abs();
    let (d, h, m) = (abs / 86_400, abs % 86_400 / 3_600, abs % 3_600 / 60);
    let span = if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else {
        format!("{m} min")
    };
    if secs >= 0 {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

fn reasons(org: &Org) -> Vec<&'static str> {
    org.lifecycle
        .reasons
        .iter()
        .map(LockReason::as_str)
        .collect()
}

fn summary(org: &Org, now: DateTime<Utc>) -> Value {
    let next = org.lifecycle.next_deadline();
    json!({
        "id": org.id,
        "href": format!("/console/orgs/{}", urlencode(&org.id)),
        "state": org.lifecycle.status.as_str(),
        "reasons": reasons(org),
        "plan": org.plan,
        "tier": org.tier,
        "clock": org.clock,
        "billing_email": org.billing_email,
        "next": next.map(|(t, kind)| json!({
            "kind": format!("{kind:?}"),
            "at": at(t),
            "left": left(now, t),
        })),
    })
}

/// How old the org list's counts may be before they are read again.
const COUNTS_FOR: std::time::Duration = std::time::Duration::from_secs(10);

/// The counts at the top of the org list. Counting a million orgs by state takes far
/// longer than a page should, so a page shows the last counts and, when they are older
/// than [`COUNTS_FOR`], one task counts again in the background; only the first page
/// after a start waits for them.
#[derive(Default)]
pub(super) struct CountsCache {
    value: std::sync::Mutex<Option<(std::time::Instant, Counts, String)>>,
    refreshing: std::sync::atomic::AtomicBool,
}

impl CountsCache {
    fn get(&self) -> Option<(std::time::Instant, Counts, String)> {
        self.value
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set(&self, counts: Counts, label: String) {
        *self
            .value
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((std::time::Instant::now(), counts, label));
    }
}

async fn counts(state: &ConsoleState) -> Result<(Counts, String), Failure> {
    use std::sync::atomic::Ordering;
    let cache = &state.counts;
    if let Some((when, counts, label)) = cache.get() {
        if when.elapsed() >= COUNTS_FOR && !cache.refreshing.swap(true, Ordering::AcqRel) {
            let (cache, engine) = (state.counts.clone(), state.engine().clone());
            tokio::spawn(async move {
                match engine.counts().await {
                    Ok(counts) => cache.set(counts, at(engine.now())),
                    Err(e) => tracing::warn!(error = %e, "console: counting orgs failed"),
                }
                cache.refreshing.store(false, Ordering::Release);
            });
        }
        return Ok((counts, label));
    }
    let counts = state.engine().counts().await?;
    let label = at(state.engine().now());
    cache.set(counts.clone(), label.clone());
    Ok((counts, label))
}

/// The org list's filters, as the form sends them (empty means none).
#[derive(Debug, Default, Deserialize)]
pub(super) struct OrgsQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    plan: String,
    #[serde(default)]
    clock: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    after: String,
}

impl OrgsQuery {
    fn filter(&self) -> Result<Filter, ApiError> {
        let some = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        let q = some(&self.q);
        Ok(Filter {
            status: some(&self.state)
                .map(|s| s.parse::<Status>())
                .transpose()
                .map_err(|e| ApiError::invalid("state", e.to_string()))?,
            reason: some(&self.reason)
                .map(|s| s.parse::<LockReason>())
                .transpose()
                .map_err(|e| ApiError::invalid("reason", e.to_string()))?,
            plan: some(&self.plan),
            clock: some(&self.clock).map(|c| {
                if c == "real" {
                    ClockFilter::Real
                } else {
                    ClockFilter::Test(c)
                }
            }),
            billing_email: q.clone().filter(|q| q.contains('@')),
            id_prefix: q.filter(|q| !q.contains('@')),
            after: some(&self.after),
            limit: PAGE,
        })
    }

    /// The query string of the same filters after `after`.
    fn next(&self, after: &str) -> String {
        let pairs = [
            ("state", &self.state),
            ("reason", &self.reason),
            ("plan", &self.plan),
            ("clock", &self.clock),
            ("q", &self.q),
        ];
        let mut out = String::from("?");
        for (k, v) in pairs {
            if !v.trim().is_empty() {
                out.push_str(&format!("{k}={}&", urlencode(v.trim())));
            }
        }
        out.push_str(&format!("after={}", urlencode(after)));
        out
    }
}

/// `GET /console/orgs`: counts, filters, search, one page of orgs.
pub(super) async fn orgs(
    State(state): State<ConsoleState>,
    Extension(signed): Extension<Signed>,
    Params(query): Params<OrgsQuery>,
) -> Response {
    let page = async {
        let filter = query.filter()?;
        let (counts, counted_at) = counts(&state).await?;
        let orgs = state.engine().orgs(&filter).await?;
        Ok::<_, Failure>((filter, counts, counted_at, orgs))
    }
    .await;
    let (filter, counts, counted_at, orgs) = match page {
        Ok(page) => page,
        Err(e) => return e.page(&state, &signed),
    };
    let now = state.engine().now();
    let next = (orgs.len() as u64 == filter.limit)
        .then(|| orgs.last().map(|o| query.next(&o.id)))
        .flatten();
    let plans: Vec<&String> = state.engine().rules().prices.plans.keys().collect();
    render(
        &state,
        Some(&signed),
        StatusCode::OK,
        "orgs.html",
        json!({
            "title": "Orgs",
            "counts": {
                "orgs": counts.orgs,
                "due": counts.due,
                "at": counted_at,
                "by_state": counts.by_state.iter().map(|(s, n)| json!({"name": s.as_str(), "n": n})).collect::<Vec<_>>(),
                "by_reason": counts.by_reason.iter().map(|(r, n)| json!({"name": r.as_str(), "n": n})).collect::<Vec<_>>(),
            },
            "states": Status::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            "reasons": LockReason::ALL.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            "plans": plans,
            "query": {
                "state": query.state, "reason": query.reason, "plan": query.plan,
                "clock": query.clock, "q": query.q, "after": query.after,
            },
            "orgs": orgs.iter().map(|o| summary(o, now)).collect::<Vec<_>>(),
            "next": next,
        }),
    )
}

/// The usage bar: this period's usage MAU against the tier, with the alert thresholds
/// and the overage lock marked, as SVG geometry (the template draws it).
fn usage_bar(
    org: &Org,
    now: DateTime<Utc>,
    thresholds: &[u32],
    lock: u32,
    alerted: &[u32],
) -> Value {
    let period = Period::containing(now);
    let mau = org
        .usage
        .filter(|(p, _)| *p == period)
        .map_or(0, |(_, m)| m);
    let tier = u64::from(org.tier.max(1));
    let percent = mau * 100 / tier;
    // The scale reaches past the overage lock, or past the usage if that is higher.
    let scale = (u64::from(lock).max(percent) * 11 / 10).max(110);
    let x = |p: u64| p.min(scale) * WIDTH / scale;
    let marks: Vec<Value> = thresholds
        .iter()
        .map(|&t| u64::from(t))
        .filter(|&t| t <= scale)
        .map(|t| {
            json!({
                "percent": t,
                "x": x(t),
                "alerted": alerted.iter().any(|&a| u64::from(a) == t),
                "passed": percent >= t,
            })
        })
        .collect();
    json!({
        "period": period.label(),
        "mau": mau,
        "tier": org.tier,
        "percent": percent,
        "width": WIDTH,
        "fill": x(percent),
        "full": x(100),
        "lock": { "percent": lock, "x": x(u64::from(lock)) },
        "over": percent >= 100,
        "marks": marks,
        "unmarked": thresholds.iter().filter(|&&t| u64::from(t) > scale).collect::<Vec<_>>(),
        "alerted": alerted,
    })
}

fn message(m: &Message) -> Value {
    json!({
        "id": m.id,
        "org": m.org_id,
        "org_href": format!("/console/orgs/{}", urlencode(&m.org_id)),
        "channel": m.channel,
        "template": m.template,
        "recipients": m.recipients.join(", "),
        "at": at(m.at),
        "status": m.status,
        "attempts": m.attempts,
        "next_attempt_at": at(m.next_attempt_at),
        "last_error": m.last_error,
        "sent_at": m.sent_at.map(at),
    })
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct OrgQuery {
    #[serde(default)]
    done: String,
}

/// `GET /console/orgs/{id}`: everything about one org.
pub(super) async fn org(
    State(state): State<ConsoleState>,
    Extension(signed): Extension<Signed>,
    PathParams(id): PathParams<String>,
    Params(query): Params<OrgQuery>,
) -> Response {
    match org_page(&state, &signed, &id, &query).await {
        Ok(response) => response,
        Err(e) => e.page(&state, &signed),
    }
}

async fn org_page(
    state: &ConsoleState,
    signed: &Signed,
    id: &str,
    query: &OrgQuery,
) -> Result<Response, Failure> {
    // Every read at once, each on its own pooled connection, on the real clock's engine.
    // An org on a test clock is viewed again on its clock's instant (as the API does),
    // with that instant's alerts; its invoices, payments, trail and messages are the same.
    let real = state.engine();
    let (view, alerted, invoices, payments, trail, messages) = tokio::try_join!(
        real.view(id),
        real.alerted(id, Period::containing(real.now())),
        real.invoices(id),
        real.payments(id),
        real.transitions(id, TRAIL),
        real.messages_of(id, MESSAGES),
    )?;
    let (engine, view, alerted) = match &view.org.clock {
        Some(clock) => {
            let engine = state.engine().for_test_clock(clock).await?;
            let period = Period::containing(engine.now());
            let (view, alerted) = tokio::try_join!(engine.view(id), engine.alerted(id, period))?;
            (engine, view, alerted)
        }
        None => (real.clone(), view, alerted),
    };
    let now = engine.now();
    let org = &view.org;
    let l = &org.lifecycle;
    let rules = engine.rules();
    let mut paid: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
    for p in &payments {
        paid.entry(p.invoice_id).or_default().push(json!({
            "outcome": if p.succeeded { "succeeded" } else { "failed" },
            "source": p.source,
            "at": at(p.at),
        }));
    }
    let deadline = |label: &str, t: Option<DateTime<Utc>>| {
        t.map(|t| json!({"label": label, "at": at(t), "left": left(now, t), "passed": t <= now}))
    };
    let deadlines: Vec<Value> = [
        deadline("Trial ends", l.trial_ends_at),
        deadline("Grace period ends", l.grace_ends_at),
        deadline("Auto-cancel", l.cancel_at),
        deadline("Monthly cycle", l.next_cycle_at),
        deadline("Next reminder", l.reminder_at),
    ]
    .into_iter()
    .flatten()
    .collect();
    let e = &view.entitlements;
    let role = signed.role();
    // Each lifecycle action says whether the rules allow it now (the engine decides on
    // execute either way; a refusal lists the legal moves).
    let actions: Vec<Value> = if l.status == Status::Canceled {
        Vec::new()
    } else {
        action::allowed(role)
            .into_iter()
            .map(|op| {
                // `transition` depends on its target: the engine checks the edge.
                let legal = !op.lifecycle
                    || op.name == "transition"
                    || view
                        .legal_moves
                        .iter()
                        .any(|m| m.split(' ').next() == Some(op.name));
                json!({"name": op.name, "label": op.label, "fields": op.fields, "legal": legal})
            })
            .collect()
    };
    let context = json!({
        "title": format!("Org {id}"),
        "done": Some(&query.done).filter(|d| !d.is_empty()),
        "now": at(now),
        "org": {
            "id": org.id,
            "href": format!("/console/orgs/{}", urlencode(&org.id)),
            "state": l.status.as_str(),
            "reasons": reasons(org),
            "plan": org.plan,
            "tier": org.tier,
            "addons": org.addons,
            "scheduled_tier": org.scheduled_tier,
            "scheduled_removals": org.scheduled_removals,
            "admins": org.admins,
            "billing_email": org.billing_email,
            "payment_method": l.payment_method,
            "subscriber": l.subscriber,
            "signup_at": at(org.signup_at),
            "canceled_at": org.canceled_at.map(at),
            "clock": org.clock,
            "upgrade_prompt": view.upgrade_prompt,
        },
        "deadlines": deadlines,
        "entitlements": [
            {"name": "dashboard", "on": e.dashboard},
            {"name": "exports", "on": e.exports},
            {"name": "ingestion", "on": e.ingestion},
            {"name": "campaigns", "on": e.campaigns},
        ],
        "usage": usage_bar(org, now, &rules.alert_thresholds, rules.lock_above_percent, &alerted),
        "invoices": invoices.iter().rev().map(|i| json!({
            "id": i.id,
            "key": i.key,
            "period": i.period,
            "kind": i.kind.as_str(),
            "status": i.status.as_str(),
            "total": format!("{} {}", i.total, i.currency),
            "issued_at": at(i.issued_at),
            "paid_at": i.paid_at.map(at),
            "lines": i.lines.iter().map(|line| json!({
                "description": line.description,
                "amount": line.amount.to_string(),
            })).collect::<Vec<_>>(),
            "payments": paid.remove(&i.id).unwrap_or_default(),
        })).collect::<Vec<_>>(),
        "trail": trail.iter().rev().map(|t| json!({
            "at": at(t.at),
            "recorded_at": at(t.recorded_at),
            "from": t.from.map(Status::as_str),
            "to": t.to.as_str(),
            "reasons": t.reasons.iter().map(LockReason::as_str).collect::<Vec<_>>(),
            "cause": t.cause,
            "actor": t.actor,
            "reason": t.reason,
        })).collect::<Vec<_>>(),
        "messages": messages.iter().map(message).collect::<Vec<_>>(),
        "legal_moves": view.legal_moves,
        "actions": actions,
        "states": Status::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "addons": rules.prices.addons.keys().collect::<Vec<_>>(),
        "tiers": rules.prices.tiers,
    });
    Ok(render(
        state,
        Some(signed),
        StatusCode::OK,
        "org.html",
        context,
    ))
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ForecastQuery {
    #[serde(default)]
    days: String,
    #[serde(default)]
    payments: String,
}

/// `GET /console/orgs/{id}/forecast?days=&payments=`: what happens to the org if nothing
/// else does (`Engine::forecast`: reads only), as a timeline.
pub(super) async fn forecast(
    State(state): State<ConsoleState>,
    Extension(signed): Extension<Signed>,
    PathParams(id): PathParams<String>,
    Params(query): Params<ForecastQuery>,
) -> Response {
    let page = async {
        let engine = state.engine().for_org(&id).await?;
        let days = match query.days.trim() {
            "" => None,
            d => Some(
                d.parse::<u32>()
                    .map_err(|_| ApiError::invalid("days", "a whole number of days"))?,
            ),
        };
        let payments = match query.payments.trim() {
            "" => Payments::AsLast,
            p => p
                .parse::<Payments>()
                .map_err(|e| ApiError::invalid("payments", e))?,
        };
        let until = horizon(engine.now(), days.or(Some(60)), None)?;
        Ok::<_, Failure>(engine.forecast(&id, until, payments).await?)
    }
    .await;
    let forecast = match page {
        Ok(forecast) => forecast,
        Err(e) => return e.page(&state, &signed),
    };
    let events: Vec<Value> = forecast
        .facts
        .iter()
        .map(|f| {
            let mut json = fact_fields(f);
            let at_label = json
                .get("at")
                .and_then(Value::as_str)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| at(t.with_timezone(&Utc)));
            if let Some(map) = json.as_object_mut() {
                map.insert("when".to_owned(), json!(at_label));
            }
            json
        })
        .collect();
    render(
        &state,
        Some(&signed),
        StatusCode::OK,
        "forecast.html",
        json!({
            "title": format!("Forecast of {id}"),
            "org": id,
            "org_href": format!("/console/orgs/{}", urlencode(&id)),
            "from": at(forecast.from),
            "until": at(forecast.until),
            "payments": forecast.payments.as_str(),
            "choices": Payments::ALL,
            "days": query.days,
            "events": events,
            "then": summary(&forecast.org, forecast.until),
        }),
    )
}

/// A fact as the pages print it: its fields as text, lists joined (`a, b`), objects in a
/// list as `key value` pairs, and without the org (the page is the org's).
pub(super) fn fact_fields(fact: &crate::domain::fact::Fact) -> Value {
    fn text(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(", "),
            Value::Object(map) => map.values().map(text).collect::<Vec<_>>().join(" "),
            Value::Null => "—".to_owned(),
            other => other.to_string(),
        }
    }
    let json = fact.to_json();
    let fields: serde_json::Map<String, Value> = json
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != "org")
        .map(|(k, v)| (k.clone(), Value::String(text(v))))
        .collect();
    Value::Object(fields)
}

/// `GET /console/outbox`: dead letters and messages waiting for a retry, across orgs.
pub(super) async fn outbox(
    State(state): State<ConsoleState>,
    Extension(signed): Extension<Signed>,
    Params(query): Params<OrgQuery>,
) -> Response {
    let lists = async {
        Ok::<_, Failure>((
            state.engine().dead_letters(100).await?,
            state.engine().retrying(100).await?,
        ))
    }
    .await;
    match lists {
        Ok((dead, retrying)) => render(
            &state,
            Some(&signed),
            StatusCode::OK,
            "outbox.html",
            json!({
                "title": "Outbox",
                "done": Some(&query.done).filter(|d| !d.is_empty()),
                "dead": dead.iter().map(message).collect::<Vec<_>>(),
                "retrying": retrying.iter().map(message).collect::<Vec<_>>(),
            }),
        ),
        Err(e) => e.page(&state, &signed),
    }
}

/// `POST /console/outbox/{id}/{retry|discard}` (operator).
pub(super) async fn outbox_action(
    State(state): State<ConsoleState>,
    Extension(signed): Extension<Signed>,
    PathParams((id, op)): PathParams<(String, String)>,
) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return problem(
            &state,
            Some(&signed),
            StatusCode::NOT_FOUND,
            "No such message",
            "",
        );
    };
    let done = match op.as_str() {
        "retry" => state.engine().retry_message(id).await,
        "discard" => state.engine().discard_message(id).await,
        _ => {
            return problem(
                &state,
                Some(&signed),
                StatusCode::NOT_FOUND,
                "No such action",
                "",
            )
        }
    };
    match done {
        Ok(true) => {
            tracing::info!(message = id, op, actor = %signed.session.principal.name, "console: outbox");
            redirect(&format!("/console/outbox?done={op}"))
        }
        Ok(false) => problem(
            &state,
            Some(&signed),
            StatusCode::CONFLICT,
            "Nothing changed",
            &format!("Message {id} is not dead or pending (sent or discarded already?)."),
        ),
        Err(e) => Failure::from(e).page(&state, &signed),
    }
}

/// The page saying test clocks are off, if they are.
fn clocks_disabled(state: &ConsoleState, signed: &Signed) -> Option<Response> {
    if state.api.settings.test_clocks {
        None
    } else {
        Some(problem(
            state,
            Some(signed),
            StatusCode::NOT_FOUND,
            "Test clocks are disabled",
            "Set api.test_clocks = true to use them (never in production).",
        ))
    }
}

/// `GET /console/clocks`: each test clock with its orgs.
pub(super) async fn clocks(
    State(state): State<ConsoleState>,
    Extension(signed): Extension<Signed>,
    Params(query): Params<OrgQuery>,
) -> Response {
    if let Some(page) = clocks_disabled(&state, &signed) {
        return page;
    }
    let listed = async {
        let mut out = Vec::new();
        for clock in state.engine().test_clocks().await? {
            let orgs = state
                .engine()
                .orgs(&Filter {
                    clock: Some(ClockFilter::Test(clock.id.clone())),
                    limit: 20,
                    ..Filter::default()
                })
                .await?;
            out.push(json!({
                "id": clock.id,
                "now": at(clock.now),
                "value": clock.now.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                "orgs": orgs.iter().map(|o| summary(o, clock.now)).collect::<Vec<_>>(),
                "more": orgs.len() == 20,
                "href": format!("/console/orgs?clock={}", urlencode(&clock.id)),
                "advance_href": format!("/console/clocks/{}/advance", urlencode(&clock.id)),
            }));
        }
        Ok::<_, Failure>(out)
    }
    .await;
    match listed {
        Ok(clocks) => render(
            &state,
            Some(&signed),
            StatusCode::OK,
            "clocks.html",
            json!({
                "title": "Test clocks",
                "done": Some(&query.done).filter(|d| !d.is_empty()),
                "clocks": clocks,
            }),
        ),
        Err(e) => e.page(&state, &signed),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ClockForm {
    #[serde(default)]
    id: String,
    #[serde(default)]
    at: String,
}

fn instant(field: &str, s: &str) -> Result<DateTime<Utc>, ApiError> {
    let s = s.trim();
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M").map(|t| t.and_utc())
        })
        .map_err(|_| ApiError::invalid(field, "an instant such as 2026-03-01T00:00:00Z"))
}

/// `POST /console/clocks` (admin): a new test clock.
pub(super) async fn create_clock(
    State(state): State<ConsoleState>,
    Extension(signed): Extension<Signed>,
    FormBody(form): FormBody<ClockForm>,
) -> Response {
    if let Some(page) = clocks_disabled(&state, &signed) {
        return page;
    }
    let created = async {
        let id = form.id.trim();
        if id.is_empty() {
            return Err(ApiError::invalid("id", "a clock needs an id").into());
        }
        let at = instant("at", &form.at)?;
        if state.engine().test_clock_named(id).await?.is_some() {
            return Err(ApiError::Conflict(format!("test clock `{id}` exists already")).into());
        }
        state.engine().create_test_clock(id, at).await?;
        Ok::<_, Failure>(())
    }
    .await;
    match created {
        Ok(()) => redirect("/console/clocks?done=created"),
        Err(e) => e.page(&state, &signed),
    }
}

/// `POST /console/clocks/{id}/advance` (admin): moves it forward, running its orgs.
pub(super) async fn advance_clock(
    State(state): State<ConsoleState>,
    Extension(signed): Extension<Signed>,
    PathParams(id): PathParams<String>,
    FormBody(form): FormBody<ClockForm>,
) -> Response {
    if let Some(page) = clocks_disabled(&state, &signed) {
        return page;
    }
    let advanced = async {
        let to = instant("at", &form.at)?;
        state.engine().advance_test_clock(&id, to).await?;
        Ok::<_, Failure>(())
    }
    .await;
    match advanced {
        Ok(()) => redirect("/console/clocks?done=advanced"),
        Err(e) => e.page(&state, &signed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_reads_naturally() {
        let now = DateTime::UNIX_EPOCH;
        assert_eq!(left(now, now + chrono::Duration::hours(76)), "in 3 d 4 h");
        assert_eq!(
            left(now, now - chrono::Duration::minutes(125)),
            "2 h 5 min ago"
        );
    }

    #[test]
    fn a_search_with_an_at_sign_is_an_email() {
        let q = OrgsQuery {
            q: "a@acme.test".into(),
            ..OrgsQuery::default()
        };
        let f = q.filter().unwrap();
        assert_eq!(f.billing_email.as_deref(), Some("a@acme.test"));
        assert_eq!(f.id_prefix, None);
        let q = OrgsQuery {
            q: "acme".into(),
            clock: "real".into(),
            ..OrgsQuery::default()
        };
        let f = q.filter().unwrap();
        assert_eq!(f.id_prefix.as_deref(), Some("acme"));
        assert_eq!(f.clock, Some(ClockFilter::Real));
        assert_eq!(q.next("x y"), "?clock=real&q=acme&after=x%20y");
    }
}
