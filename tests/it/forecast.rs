//! Forecasts equal what then happens: an org is forecast from its stored state, then the
//! same clock is advanced a day at a time (through the engine, and through the running
//! daemon's test clock), and the facts are compared one by one.

use acctd::domain::Status;
use acctd::engine::usage::UsageReport;
use acctd::engine::{Actor, Command, Fact, Payments, PlanChange};
use axum::http::StatusCode;
use chrono::Duration;
use serde_json::{json, Value};

use crate::api::{TestApp, ADMIN, OPERATOR};
use crate::helpers::{both, t, Backend, Harness};

fn ops() -> Actor {
    Actor::new("ops@example.test", "support ticket")
}

/// Forecasts `org` `days` ahead under `payments`, then ticks the harness's clock a day
/// at a time to the same horizon and checks that the facts are the same, in order.
/// Returns the facts.
async fn forecast_equals_reality(
    h: &Harness,
    org: &str,
    days: i64,
    payments: Payments,
) -> Vec<Fact> {
    let from = h.engine.now();
    let until = from + Duration::days(days);
    let forecast = h.engine.forecast(org, until, payments).await.unwrap();
    let mut happened = Vec::new();
    let mut at = from;
    while at < until {
        at = (at + Duration::days(1)).min(until);
        h.clock.set(at);
        happened.extend(h.engine.tick(at).await.unwrap().facts);
    }
    happened.sort_by_key(Fact::at);
    assert!(!forecast.facts.is_empty(), "{org}: the forecast is empty");
    for (i, (f, h)) in forecast.facts.iter().zip(&happened).enumerate() {
        assert_eq!(f, h, "{org}: fact {i} differs");
    }
    assert_eq!(
        forecast.facts.len(),
        happened.len(),
        "{org}: forecast {:#?}\nhappened {:#?}",
        forecast.facts,
        happened
    );
    assert_eq!(
        forecast.org.lifecycle,
        h.org(org).await.lifecycle,
        "{org}: the org then"
    );
    happened
}

fn transitions(facts: &[Fact]) -> Vec<(Status, String)> {
    facts
        .iter()
        .filter_map(|f| match f {
            Fact::Transition { to, cause, .. } => Some((*to, cause.clone())),
            _ => None,
        })
        .collect()
}

async fn a_declined_card_is_forecast_through_grace_lock_and_cancel(backend: Backend) {
    let Some(h) = Harness::start(backend, "2026-04-20T00:00:00Z").await else {
        return;
    };
    h.signup("acme", true, true).await;
    h.card.decline("acme");
    let facts = forecast_equals_reality(&h, "acme", 60, Payments::Fail).await;
    let states: Vec<Status> = transitions(&facts).into_iter().map(|(s, _)| s).collect();
    assert_eq!(
        states,
        [Status::GracePeriod, Status::Locked, Status::Canceled],
        "{facts:#?}"
    );
}
both!(a_declined_card_is_forecast_through_grace_lock_and_cancel);

async fn a_trial_conversion_is_forecast(backend: Backend) {
    let Some(h) = Harness::start(backend, "2026-04-10T00:00:00Z").await else {
        return;
    };
    h.signup("trial", true, false).await;
    let facts = forecast_equals_reality(&h, "trial", 60, Payments::AsLast).await;
    assert!(
        transitions(&facts).contains(&(Status::Active, "trial_converted".into()))
            || transitions(&facts)
                .iter()
                .any(|(s, _)| *s == Status::Active),
        "{facts:#?}"
    );
    assert!(facts.iter().any(|f| matches!(
        f,
        Fact::Payment {
            succeeded: true,
            ..
        }
    )));
}
both!(a_trial_conversion_is_forecast);

async fn an_overage_lock_is_forecast(backend: Backend) {
    let Some(h) = Harness::start(backend, "2026-04-01T00:00:00Z").await else {
        return;
    };
    h.signup("big", true, true).await;
    h.set("2026-04-12T00:00:00Z");
    let report = UsageReport {
        org: "big".into(),
        project: "web".into(),
        period: "2026-04".into(),
        mau: 130_000,
        data_points: 5,
        correction: false,
    };
    h.engine.report_usage(&[report], &ops()).await.unwrap();
    assert_eq!(h.status("big").await, Status::Locked);
    let facts = forecast_equals_reality(&h, "big", 60, Payments::Succeed).await;
    // The 1st bills the overage.
    assert!(
        facts.iter().any(|f| matches!(f, Fact::Invoice { .. })),
        "{facts:#?}"
    );
}
both!(an_overage_lock_is_forecast);

async fn a_scheduled_downgrade_is_forecast(backend: Backend) {
    let Some(h) = Harness::start(backend, "2026-04-01T00:00:00Z").await else {
        return;
    };
    h.signup("acme", true, true).await;
    h.set("2026-04-05T00:00:00Z");
    h.engine
        .command(
            "acme",
            &Command::Plan(PlanChange::Downgrade { tier: 10_000 }),
            &ops(),
        )
        .await
        .unwrap();
    let facts = forecast_equals_reality(&h, "acme", 40, Payments::AsLast).await;
    assert!(
        facts
            .iter()
            .any(|f| matches!(f, Fact::Plan { tier: 10_000, .. })),
        "{facts:#?}"
    );
    assert_eq!(h.org("acme").await.tier, 10_000);
}
both!(a_scheduled_downgrade_is_forecast);

async fn a_payment_recovery_is_forecast(backend: Backend) {
    let Some(h) = Harness::start(backend, "2026-03-26T00:00:00Z").await else {
        return;
    };
    // The trial's conversion charge fails on Apr 25: grace until May 5.
    h.signup("acme", true, false).await;
    h.card.decline("acme");
    h.tick("2026-04-25T00:00:00Z").await;
    h.tick("2026-04-27T00:00:00Z").await;
    assert_eq!(h.status("acme").await, Status::GracePeriod);
    // The card works again, with no command: the charge of the 1st succeeds and settles
    // everything overdue. As-last would assume a failure here; the forecast is told.
    h.card.approve("acme");
    assert_eq!(
        h.engine
            .forecast("acme", t("2026-06-10T00:00:00Z"), Payments::AsLast)
            .await
            .unwrap()
            .payments,
        Payments::Fail
    );
    let facts = forecast_equals_reality(&h, "acme", 45, Payments::Succeed).await;
    let states: Vec<Status> = transitions(&facts).into_iter().map(|(s, _)| s).collect();
    assert_eq!(states, [Status::Active], "{facts:#?}");
    assert!(facts.iter().any(|f| matches!(
        f,
        Fact::Payment {
            succeeded: true,
            ..
        }
    )));
}
both!(a_payment_recovery_is_forecast);

/// Through the running daemon: an org on a test clock, forecast over the API, then the
/// clock advanced a week at a time; the facts of the advances are the forecast's. The
/// daemon's gateway leaves charges pending, so the forecast assumes `pending`; an org
/// without a card fails at once and goes through grace, lock and cancel.
async fn a_forecast_over_the_api_equals_the_test_clock_advances(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (status, answer) = app
        .post(
            ADMIN,
            "/v1/test-clocks",
            json!({"id": "qa", "frozen_at": "2026-01-20T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    app.signup("nocard", false, json!({"test_clock": "qa", "active": true}))
        .await;
    app.signup("trial", true, json!({"test_clock": "qa"})).await;
    let mut forecasts = Vec::new();
    for org in ["nocard", "trial"] {
        let forecast = app
            .ok(&format!("/v1/orgs/{org}/forecast?days=70&payments=pending"))
            .await;
        assert_eq!(forecast["assumptions"]["payments"], "pending");
        assert_eq!(forecast["from"], "2026-01-20T00:00:00Z");
        assert_eq!(forecast["until"], "2026-03-31T00:00:00Z");
        forecasts.push(forecast);
    }
    let mut happened: Vec<Value> = Vec::new();
    let mut at = t("2026-01-20T00:00:00Z");
    for _ in 0..10 {
        at += Duration::days(7);
        let (status, answer) = app
            .post(
                ADMIN,
                "/v1/test-clocks/qa/advance",
                json!({ "to": at.to_rfc3339() }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        happened.extend(answer["facts"].as_array().unwrap().iter().cloned());
    }
    // Each forecast reads the next free invoice ids for its own org; the two orgs then
    // share them, so ids are compared apart from the facts.
    let without_ids = |facts: Vec<Value>| -> Vec<Value> {
        facts
            .into_iter()
            .map(|mut f| {
                if let Some(f) = f.as_object_mut() {
                    f.remove("id");
                    f.remove("invoice");
                }
                f
            })
            .collect()
    };
    for (org, forecast) in ["nocard", "trial"].iter().zip(&forecasts) {
        let mut real: Vec<Value> = happened
            .iter()
            .filter(|f| f["org"] == *org)
            .cloned()
            .collect();
        real.sort_by(|a, b| a["at"].as_str().cmp(&b["at"].as_str()));
        let predicted = forecast["facts"].as_array().unwrap().clone();
        assert!(!predicted.is_empty());
        assert_eq!(without_ids(predicted), without_ids(real), "{org}");
        let org_now = app.ok(&format!("/v1/orgs/{org}")).await;
        assert_eq!(forecast["then"]["state"], org_now["state"], "{org}");
    }
    let moves: Vec<&str> = forecasts[0]["facts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["type"] == "transition")
        .map(|f| f["to"].as_str().unwrap())
        .collect();
    assert_eq!(moves, ["grace_period", "locked", "canceled"]);

    // Bad horizons and assumptions are refused, naming the field.
    for (query, field) in [
        ("days=9999", "days"),
        ("until=2020-01-01T00:00:00Z", "until"),
        ("payments=maybe", "payments"),
    ] {
        let (status, answer) = app.get(&format!("/v1/orgs/trial/forecast?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {answer}");
        assert_eq!(answer["error"]["details"]["field"], field, "{answer}");
    }
    let (status, _) = app.get("/v1/orgs/nobody/forecast").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
both!(a_forecast_over_the_api_equals_the_test_clock_advances);

/// `?dry_run=true` answers what the call would, writes nothing, and says so.
async fn dry_run_over_the_api_answers_like_the_call(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.signup("acme", true, json!({"active": true})).await;
    let path = "/v1/orgs/acme/admin/lock";
    let body = json!({"reason": "chargeback"});
    let (status, preview) = app
        .post(ADMIN, &format!("{path}?dry_run=true"), body.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["dry_run"], true);
    assert_eq!(preview["org"]["state"], "locked");
    assert_eq!(app.ok("/v1/orgs/acme").await["state"], "active");
    let (status, done) = app.post(ADMIN, path, body).await;
    assert_eq!(status, StatusCode::OK);
    assert!(done.get("dry_run").is_none());
    assert_eq!(preview["facts"], done["facts"]);
    assert_eq!(preview["org"]["state"], done["org"]["state"]);

    // A refusal previews as the same refusal.
    let illegal = json!({"reason": "x", "to": "trial"});
    let p = app
        .post(
            ADMIN,
            "/v1/orgs/acme/admin/transition?dry_run=true",
            illegal.clone(),
        )
        .await;
    let r = app
        .post(ADMIN, "/v1/orgs/acme/admin/transition", illegal)
        .await;
    assert_eq!(p, r);

    // A signup preview is 200, not 201, and creates nothing.
    let (status, answer) = app
        .post(
            OPERATOR,
            "/v1/orgs?dry_run=true",
            json!({"id": "ghost", "plan": "basic", "tier": 20_000, "admins": ["a@ghost.test"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["org"]["state"], "trial");
    assert_eq!(app.get("/v1/orgs/ghost").await.0, StatusCode::NOT_FOUND);

    let (status, answer) = app
        .post(
            ADMIN,
            "/v1/orgs/acme/admin/lock?dry_run=maybe",
            json!({"reason": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["details"]["field"], "dry_run");
}
both!(dry_run_over_the_api_answers_like_the_call);
