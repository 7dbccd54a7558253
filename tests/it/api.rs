//! The admin HTTP API as a client sees it: the real [`App`] on a fresh database and a
//! virtual clock, bound to 127.0.0.1:0, with one token per role (SPEC sections 3, 8, 10).

use std::sync::Arc;
use std::time::Duration;

use acctd::api::auth::sha256_hex;
use acctd::api::client::Client;
use acctd::app::App;
use acctd::clock::VirtualClock;
use acctd::config::{Addon, ApiToken, EmailTransport, Role, Settings};
use axum::http::{Method, StatusCode};
use sea_orm::ConnectionTrait;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::helpers::{both, t, Backend, TestDb};

pub const VIEWER: &str = "viewer-token-0123456789abcdef";
pub const OPERATOR: &str = "operator-token-0123456789abcdef";
pub const ADMIN: &str = "admin-token-0123456789abcdef";
const START: &str = "2026-03-01T00:00:00Z";

/// The daemon (`App::run`: scheduler and API) on a fresh database. Dropping it cancels it.
pub struct TestApp {
    pub base: String,
    pub clock: Arc<VirtualClock>,
    shutdown: CancellationToken,
    run: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// Dropped last: the database outlives the app.
    pub db: TestDb,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Option<Self> {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> Option<Self> {
        let db = TestDb::new(backend).await?;
        let mut settings = Settings::default();
        settings.database.url.clone_from(&db.url);
        settings.daemon.sweep_every_seconds = 3600;
        // Notifications stay in the outbox; these tests read them from there.
        settings.email.transport = EmailTransport::None;
        settings.api.listen = "127.0.0.1:0".parse().unwrap();
        settings.api.test_clocks = true;
        settings.api.max_body_bytes = 64 * 1024;
        settings.api.tokens = [
            ("viewer-bot", Role::Viewer, VIEWER),
            ("operator-bot", Role::Operator, OPERATOR),
            ("admin-bot", Role::Admin, ADMIN),
        ]
        .into_iter()
        .map(|(name, role, token)| ApiToken {
            name: name.to_owned(),
            role,
            token_sha256: sha256_hex(token),
        })
        .collect();
        settings.addons.insert(
            "journeys".to_owned(),
            Addon {
                name: "Journeys".to_owned(),
                price_per_100_mau: "0.10".parse().unwrap(),
            },
        );
        tweak(&mut settings);
        let clock = Arc::new(VirtualClock::new(t(START)));
        let app = App::build_with_clock(settings, clock.clone())
            .await
            .expect("build the app");
        let base = format!("http://{}", app.addr());
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(app.run(shutdown.clone()));
        Some(Self {
            base,
            clock,
            shutdown,
            run: Some(run),
            db,
        })
    }

    pub fn client(&self, token: Option<&str>) -> Client {
        Client::new(&self.base, token.map(str::to_owned)).unwrap()
    }

    pub fn set(&self, at: &str) {
        self.clock.set(t(at));
    }

    pub async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.client(Some(token))
            .call(method, path, body.as_ref())
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(VIEWER, Method::GET, path, None).await
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(token, Method::POST, path, Some(body)).await
    }

    /// `GET` that must succeed.
    pub async fn ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        body
    }

    pub async fn signup(&self, id: &str, card: bool, extra: Value) -> Value {
        let mut body = json!({
            "id": id, "plan": "basic", "tier": 20_000,
            "admins": [format!("ops@{id}.test")], "payment_method": card,
            "reason": "new customer",
        });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let (status, answer) = self.post(OPERATOR, "/v1/orgs", body).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        answer
    }

    /// Cancels the app and waits for `run` to return, which must be prompt.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let run = self.run.take().unwrap();
        let result = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("run returns promptly after cancel");
        result.expect("run task").expect("run returns Ok");
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Asserts an error answer: status, `error.code` and, if given, `error.details.field`.
#[track_caller]
fn assert_error(answer: &(StatusCode, Value), status: StatusCode, code: &str, field: Option<&str>) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    if let Some(field) = field {
        assert_eq!(body["error"]["details"]["field"], field, "{body}");
    }
}

fn fact_types(answer: &Value) -> Vec<String> {
    answer["facts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["type"].as_str().unwrap().to_owned())
        .collect()
}

fn transitions_to(answer: &Value) -> Vec<(String, String)> {
    answer["facts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["type"] == "transition")
        .map(|f| {
            (
                f["to"].as_str().unwrap().to_owned(),
                f["at"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn sample_path(path: &str) -> String {
    let id = if path.starts_with("/v1/invoices") {
        "999999"
    } else {
        "nobody"
    };
    path.replace("{id}", id)
        .replace("{addon}", "journeys")
        .replace("{op}", "lock")
}

/// SPEC 10: every route, table-driven from the route table the router is built from:
/// 401 without or with a wrong token, 403 below its role, neither at or above it.
async fn every_route_answers_401_and_403_by_role(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let roles = [
        (Role::Viewer, VIEWER),
        (Role::Operator, OPERATOR),
        (Role::Admin, ADMIN),
    ];
    let endpoints = acctd::api::endpoints(true);
    assert!(endpoints.len() >= 25, "{} routes", endpoints.len());
    for e in endpoints {
        let path = sample_path(e.path);
        let what = format!("{} {}", e.method, e.path);
        let send = |token: Option<&str>, headers: &'static [(&'static str, &'static str)]| {
            let client = app.client(token);
            let method = e.method.clone();
            let path = path.clone();
            async move { client.send(method, &path, None, headers).await.unwrap() }
        };
        let Some(required) = e.role else {
            let answer = send(None, &[]).await;
            assert_eq!(answer.status, StatusCode::OK, "{what}: {}", answer.text());
            continue;
        };
        for (token, headers) in [
            (None, &[][..]),
            (Some("wrong-token-0123456789abcdef"), &[][..]),
            (None, &[("authorization", "Basic YWRtaW46YWRtaW4=")][..]),
            (None, &[("authorization", "Bearer")][..]),
        ] {
            let answer = send(token, headers).await;
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{what}");
            assert_eq!(answer.json().unwrap()["error"]["code"], "unauthorized");
        }
        for (role, token) in roles {
            let answer = send(Some(token), &[]).await;
            if role < required {
                assert_eq!(answer.status, StatusCode::FORBIDDEN, "{what} as {role:?}");
                let body = answer.json().unwrap();
                assert_eq!(body["error"]["code"], "forbidden");
                assert_eq!(body["error"]["details"]["required_role"], required.as_str());
            } else {
                assert!(
                    answer.status != StatusCode::UNAUTHORIZED
                        && answer.status != StatusCode::FORBIDDEN
                        && answer.status.as_u16() < 500,
                    "{what} as {role:?}: {} {}",
                    answer.status,
                    answer.text()
                );
            }
        }
    }
    // Unknown routes and methods answer in the same JSON shape.
    let client = app.client(Some(ADMIN));
    let (status, body) = client.call(Method::GET, "/v1/nothing", None).await.unwrap();
    assert_error(&(status, body), StatusCode::NOT_FOUND, "not_found", None);
    let (status, body) = client.call(Method::PUT, "/v1/orgs", None).await.unwrap();
    assert_error(
        &(status, body),
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        None,
    );
    app.stop().await;
}
both!(every_route_answers_401_and_403_by_role);

/// `/healthz` and `/readyz` need no token; ready means migrations are applied.
async fn probes_need_no_token(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let client = app.client(None);
    let (status, body) = client.call(Method::GET, "/healthz", None).await.unwrap();
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
    let (status, body) = client.call(Method::GET, "/readyz", None).await.unwrap();
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ready"})));
}
both!(probes_need_no_token);

/// A server fault is an opaque 500 in the usual shape: no database message, no trace.
async fn server_faults_are_opaque_500s(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.signup("acme", false, json!({})).await;
    let conn = sea_orm::Database::connect(&app.db.url).await.unwrap();
    conn.execute_unprepared("DROP TABLE transitions")
        .await
        .unwrap();
    conn.close().await.unwrap();
    let (status, body) = app.get("/v1/orgs/acme/transitions").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        body,
        json!({"error": {"code": "internal", "message": "internal error", "details": {}}})
    );
}
both!(server_faults_are_opaque_500s);

/// Signup, show, list with filters and paging, entitlements, audit trail, invoices; and
/// each validation error of signup and listing.
async fn signup_show_list_and_validation(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let answer = app.signup("acme", true, json!({})).await;
    assert_eq!(answer["org"]["state"], "trial");
    assert_eq!(answer["facts"][0]["type"], "transition");
    assert_eq!(answer["facts"][0]["cause"], "signup");
    assert_eq!(answer["facts"][0]["actor"], "operator-bot");

    let org = app.ok("/v1/orgs/acme").await;
    assert_eq!(org["id"], "acme");
    assert_eq!(org["tier"], 20_000);
    assert_eq!(org["payment_method"], true);
    assert_eq!(org["billing_email"], "ops@acme.test");
    assert_eq!(org["deadlines"]["trial_ends_at"], "2026-03-31T00:00:00Z");
    assert_eq!(org["deadlines"]["cancel_at"], Value::Null);
    assert!(org["legal_moves"]
        .as_array()
        .unwrap()
        .contains(&json!("lock")));

    let e = app.ok("/v1/orgs/acme/entitlements").await;
    assert_eq!(
        e,
        json!({
            "org": "acme", "state": "trial", "lock_reasons": [],
            "dashboard": true, "exports": true, "ingestion": true, "campaigns": true,
            "upgrade_prompt": false,
            "deadlines": {"trial_ends_at": "2026-03-31T00:00:00Z", "grace_ends_at": null,
                          "cancel_at": null, "next_cycle_at": null},
        })
    );
    let trail = app.ok("/v1/orgs/acme/transitions").await;
    assert_eq!(trail["transitions"].as_array().unwrap().len(), 1);
    assert_eq!(trail["transitions"][0]["actor"], "operator-bot");
    assert_eq!(trail["transitions"][0]["reason"], "new customer");
    assert_eq!(trail["transitions"][0]["from"], Value::Null);
    assert_eq!(
        app.ok("/v1/orgs/acme/invoices").await,
        json!({"org": "acme", "invoices": []})
    );

    // Validation: each bad signup names its field; nothing is created.
    let base = json!({"id": "new", "plan": "basic", "tier": 20_000, "admins": ["a@new.test"]});
    let with = |patch: Value| {
        let mut body = base.clone();
        body.as_object_mut()
            .unwrap()
            .extend(patch.as_object().unwrap().clone());
        body
    };
    for (patch, field) in [
        (json!({"id": "bad id!"}), "id"),
        (json!({"admins": []}), "admins"),
        (json!({"admins": ["nope"]}), "admins"),
        (json!({"billing_email": "nope"}), "billing_email"),
        (json!({"plan": "gold"}), "plan"),
        (json!({"tier": 200_000}), "tier"),
        (json!({"tier": 12_345}), "tier"),
        (json!({"addons": ["nope"]}), "addon"),
        (json!({"test_clock": "nope"}), "test_clock"),
    ] {
        let answer = app.post(OPERATOR, "/v1/orgs", with(patch.clone())).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "invalid", Some(field));
    }
    let answer = app
        .post(OPERATOR, "/v1/orgs", with(json!({"tier": 200_000})))
        .await;
    assert!(
        answer.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Enterprise"),
        "{}",
        answer.1
    );
    let answer = app
        .post(OPERATOR, "/v1/orgs", with(json!({"id": "acme"})))
        .await;
    assert_error(&answer, StatusCode::CONFLICT, "conflict", None);
    for body in [
        json!({"id": "new", "plan": "basic", "admins": ["a@new.test"]}),
        with(json!({"colour": "red"})),
        with(json!({"tier": "many"})),
        with(json!({"tier": -1})),
    ] {
        let answer = app.post(OPERATOR, "/v1/orgs", body).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "bad_request", None);
    }
    let raw = |body: &'static [u8], headers: &'static [(&'static str, &'static str)]| {
        let client = app.client(Some(OPERATOR));
        async move {
            let answer = client
                .send(Method::POST, "/v1/orgs", Some(body.to_vec()), headers)
                .await
                .unwrap();
            (answer.status, answer.json().unwrap())
        }
    };
    assert_error(
        &raw(b"{", &[]).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        None,
    );
    assert_error(
        &raw(b"", &[]).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        None,
    );
    assert_error(
        &raw(
            b"id=x",
            &[("content-type", "application/x-www-form-urlencoded")],
        )
        .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        None,
    );
    let big = format!(
        r#"{{"id": "big", "plan": "basic", "tier": 20000, "admins": ["a@b.test"], "reason": "{}"}}"#,
        "x".repeat(100_000)
    );
    let answer = app
        .client(Some(OPERATOR))
        .send(Method::POST, "/v1/orgs", Some(big.into_bytes()), &[])
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.json().unwrap()["error"]["code"], "payload_too_large");
    assert_eq!(app.get("/v1/orgs/new").await.0, StatusCode::NOT_FOUND);

    for path in [
        "/v1/orgs/nobody",
        "/v1/orgs/nobody/entitlements",
        "/v1/orgs/nobody/transitions",
        "/v1/orgs/nobody/invoices",
    ] {
        assert_error(
            &app.get(path).await,
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        );
    }

    // Listing: filters and keyset paging.
    app.signup("beta", false, json!({})).await;
    app.signup("gamma", false, json!({})).await;
    let (status, _) = app
        .post(
            ADMIN,
            "/v1/orgs/gamma/admin/lock",
            json!({"reason": "chargeback"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let ids = |v: &Value| -> Vec<String> {
        v["orgs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let page = app.ok("/v1/orgs?limit=2").await;
    assert_eq!(ids(&page), ["acme", "beta"]);
    assert_eq!(page["next_after"], "beta");
    let page = app.ok("/v1/orgs?limit=2&after=beta").await;
    assert_eq!(ids(&page), ["gamma"]);
    assert_eq!(page["next_after"], Value::Null);
    assert_eq!(ids(&app.ok("/v1/orgs?state=locked").await), ["gamma"]);
    assert_eq!(ids(&app.ok("/v1/orgs?reason=manual").await), ["gamma"]);
    assert_eq!(ids(&app.ok("/v1/orgs?state=trial").await), ["acme", "beta"]);
    assert_error(
        &app.get("/v1/orgs?state=bogus").await,
        StatusCode::BAD_REQUEST,
        "invalid",
        Some("state"),
    );
    assert_error(
        &app.get("/v1/orgs?reason=bogus").await,
        StatusCode::BAD_REQUEST,
        "invalid",
        Some("reason"),
    );
    assert_error(
        &app.get("/v1/orgs?limit=0").await,
        StatusCode::BAD_REQUEST,
        "invalid",
        Some("limit"),
    );
    for path in ["/v1/orgs?limit=abc", "/v1/orgs?colour=red"] {
        assert_error(
            &app.get(path).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
            None,
        );
    }
}
both!(signup_show_list_and_validation);

/// SPEC 10: each manual operation records the token's name and the reason; illegal moves
/// are refused with 409 naming the current state and the legal moves.
async fn manual_operations_record_actor_and_reason(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.signup("acme", false, json!({})).await;
    app.set("2026-03-05T00:00:00Z");
    let op = |name: &str, body: Value| {
        let path = format!("/v1/orgs/acme/admin/{name}");
        let app = &app;
        async move { app.post(ADMIN, &path, body).await }
    };

    for body in [json!({}), json!({"reason": "  "})] {
        assert_error(
            &op("lock", body).await,
            StatusCode::BAD_REQUEST,
            "invalid",
            Some("reason"),
        );
    }
    let (status, answer) = op("lock", json!({"reason": "chargeback"})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["org"]["state"], "locked");
    assert_eq!(answer["org"]["lock_reasons"], json!(["manual"]));
    assert_eq!(answer["org"]["entitlements"]["dashboard"], false);
    assert_eq!(answer["facts"][0]["actor"], "admin-bot");
    assert_eq!(answer["facts"][0]["at"], "2026-03-05T00:00:00Z");

    let refused = op("lock", json!({"reason": "again"})).await;
    assert_error(&refused, StatusCode::CONFLICT, "illegal_transition", None);
    let details = &refused.1["error"]["details"];
    assert_eq!(details["state"], "locked");
    assert_eq!(details["lock_reasons"], json!(["manual"]));
    assert!(details["legal_moves"]
        .as_array()
        .unwrap()
        .contains(&json!("unlock (manual)")));
    assert!(refused.1["error"]["message"]
        .as_str()
        .unwrap()
        .contains("legal moves"));

    assert_error(
        &op("unlock", json!({"reason": "x", "lock_reason": "bogus"})).await,
        StatusCode::BAD_REQUEST,
        "invalid",
        Some("lock_reason"),
    );
    let (status, answer) = op("unlock", json!({"reason": "resolved"})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["org"]["state"], "trial");

    assert_error(
        &op("extend_trial", json!({"reason": "x"})).await,
        StatusCode::BAD_REQUEST,
        "invalid",
        Some("days"),
    );
    assert_error(
        &op("extend_trial", json!({"reason": "x", "days": 0})).await,
        StatusCode::BAD_REQUEST,
        "invalid",
        Some("days"),
    );
    assert_error(
        &op("lock", json!({"reason": "x", "days": 3})).await,
        StatusCode::BAD_REQUEST,
        "invalid",
        Some("days"),
    );
    assert_error(
        &op("lock", json!({"reason": "x", "colour": "red"})).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        None,
    );
    let (status, answer) = op("extend_trial", json!({"reason": "sales call", "days": 5})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["org"]["deadlines"]["trial_ends_at"],
        "2026-04-05T00:00:00Z"
    );

    assert_error(
        &op("transition", json!({"reason": "x"})).await,
        StatusCode::BAD_REQUEST,
        "invalid",
        Some("to"),
    );
    assert_error(
        &op("transition", json!({"reason": "x", "to": "bogus"})).await,
        StatusCode::BAD_REQUEST,
        "invalid",
        Some("to"),
    );
    assert_error(
        &op("transition", json!({"reason": "x", "to": "canceled"})).await,
        StatusCode::BAD_REQUEST,
        "invalid",
        Some("to"),
    );
    // Without a card no command leads from trial to grace_period.
    let refused = op("transition", json!({"reason": "x", "to": "grace_period"})).await;
    assert_error(&refused, StatusCode::CONFLICT, "illegal_transition", None);
    assert_eq!(refused.1["error"]["details"]["state"], "trial");
    assert!(!refused.1["error"]["details"]["legal_moves"]
        .as_array()
        .unwrap()
        .is_empty());
    let (status, answer) = op(
        "transition",
        json!({"reason": "ops review", "to": "locked"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["org"]["lock_reasons"], json!(["manual"]));
    op("unlock", json!({"reason": "done"})).await;

    let (status, answer) = op("end_trial", json!({"reason": "customer asked"})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["org"]["lock_reasons"], json!(["trial_expired"]));
    assert_eq!(
        answer["org"]["deadlines"]["cancel_at"],
        "2026-03-19T00:00:00Z"
    );
    let (status, answer) = op("postpone_cancel", json!({"reason": "talks", "days": 3})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["org"]["deadlines"]["cancel_at"],
        "2026-03-22T00:00:00Z"
    );

    assert_error(
        &op("explode", json!({"reason": "x"})).await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    assert_error(
        &app.post(ADMIN, "/v1/orgs/nobody/admin/lock", json!({"reason": "x"}))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );

    let trail = app.ok("/v1/orgs/acme/transitions").await;
    let rows: Vec<(String, String, String)> = trail["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["cause"].as_str().unwrap().to_owned(),
                r["actor"].as_str().unwrap().to_owned(),
                r["reason"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect();
    let row = |c: &str, a: &str, r: &str| (c.to_owned(), a.to_owned(), r.to_owned());
    assert_eq!(rows[0], row("signup", "operator-bot", "new customer"));
    assert!(
        rows.contains(&row("admin_lock", "admin-bot", "chargeback")),
        "{rows:?}"
    );
    assert!(
        rows.contains(&row("admin_unlock", "admin-bot", "resolved")),
        "{rows:?}"
    );
    assert!(
        rows.contains(&row("admin_lock", "admin-bot", "ops review")),
        "{rows:?}"
    );
    let limited = app.ok("/v1/orgs/acme/transitions?limit=1").await;
    assert_eq!(limited["transitions"].as_array().unwrap().len(), 1);
    assert_eq!(
        limited["transitions"][0]["cause"],
        trail["transitions"].as_array().unwrap().last().unwrap()["cause"]
    );
}
both!(manual_operations_record_actor_and_reason);

/// SPEC 3: cancel needs exactly `DELETE` and a reason; canceled is terminal.
async fn cancel_needs_the_exact_confirmation(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.signup("acme", true, json!({})).await;
    let cancel = |body: Option<Value>| app.call(ADMIN, Method::POST, "/v1/orgs/acme/cancel", body);
    for body in [
        None,
        Some(json!({})),
        Some(json!({"reason": "x"})),
        Some(json!({"confirm": "delete", "reason": "x"})),
        Some(json!({"confirm": "DELETE ", "reason": "x"})),
    ] {
        assert_error(
            &cancel(body).await,
            StatusCode::BAD_REQUEST,
            "invalid",
            Some("confirm"),
        );
    }
    assert_error(
        &cancel(Some(json!({"confirm": "DELETE"}))).await,
        StatusCode::BAD_REQUEST,
        "invalid",
        Some("reason"),
    );
    assert_eq!(app.ok("/v1/orgs/acme").await["state"], "trial");
    let (status, answer) = cancel(Some(
        json!({"confirm": "DELETE", "reason": "customer left"}),
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["org"]["state"], "canceled");
    assert_eq!(answer["org"]["canceled_at"], START);
    let e = app.ok("/v1/orgs/acme/entitlements").await;
    for switch in ["dashboard", "exports", "ingestion", "campaigns"] {
        assert_eq!(e[switch], false, "{switch}");
    }
    let again = cancel(Some(json!({"confirm": "DELETE", "reason": "twice"}))).await;
    assert_error(&again, StatusCode::CONFLICT, "illegal_transition", None);
    assert_eq!(again.1["error"]["details"]["state"], "canceled");
    assert_eq!(again.1["error"]["details"]["legal_moves"], json!([]));
}
both!(cancel_needs_the_exact_confirmation);

/// SPEC 4: a batch gets a result per item; refused items store nothing; crossing 300 %
/// locks the org.
async fn usage_batches_answer_per_item(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.signup("acme", false, json!({"tier": 5_000})).await;
    app.set("2026-03-10T00:00:00Z");
    let (status, answer) = app
        .post(
            OPERATOR,
            "/v1/usage",
            json!({"reports": [
                {"org": "acme", "project": "web", "mau": 4_500},
                {"org": "nobody", "project": "web", "mau": 1},
                {"org": "acme", "project": "app", "period": "2026-13", "mau": 1},
                {"org": "acme", "project": "web", "period": "2026-03", "mau": 100},
                {"org": "acme", "project": "web", "period": "2026-03", "mau": 100, "correction": true},
                {"org": "acme", "project": "web", "period": "2026-03", "mau": 4_500},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        (answer["accepted"].clone(), answer["refused"].clone()),
        (json!(3), json!(3))
    );
    let results = answer["results"].as_array().unwrap();
    let statuses: Vec<&str> = results
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["accepted", "refused", "refused", "refused", "accepted", "accepted"]
    );
    for (index, needle) in [
        (1, "unknown org"),
        (2, "malformed period"),
        (3, "correction"),
    ] {
        let error = results[index]["error"].as_str().unwrap();
        assert!(error.contains(needle), "{index}: {error}");
        assert_eq!(results[index]["index"], index);
    }
    assert!(
        fact_types(&answer).contains(&"alert".to_owned()),
        "{answer}"
    );
    let org = app.ok("/v1/orgs/acme").await;
    assert_eq!(org["usage"]["usage_mau"], 4_500);
    assert_eq!(org["usage"]["period"], "2026-03");

    let (status, answer) = app
        .post(
            OPERATOR,
            "/v1/usage",
            json!({"reports": [{"org": "acme", "project": "web", "mau": 16_000}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        transitions_to(&answer),
        [("locked".to_owned(), "2026-03-10T00:00:00Z".to_owned())]
    );
    let e = app.ok("/v1/orgs/acme/entitlements").await;
    assert_eq!(e["lock_reasons"], json!(["overage"]));
    assert_eq!(e["upgrade_prompt"], true);
    assert_eq!(e["dashboard"], false);
    assert_eq!(e["ingestion"], true);

    assert_error(
        &app.post(OPERATOR, "/v1/usage", json!({"reports": []}))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid",
        Some("reports"),
    );
    for body in [
        json!({}),
        json!({"reports": [{"org": "acme", "project": "web", "mau": -1}]}),
        json!({"reports": [{"org": "acme", "mau": 1}]}),
    ] {
        assert_error(
            &app.post(OPERATOR, "/v1/usage", body).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
            None,
        );
    }
}
both!(usage_batches_answer_per_item);

/// Issue 29 item 4: a usage value above the limit is a 400 naming the item, the field and
/// the limit, and nothing of the request is stored.
async fn absurd_usage_is_a_400_naming_the_limit(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.signup("acme", false, json!({})).await;
    for (field, item) in [
        (
            "reports[1].mau",
            json!({"org": "acme", "project": "web", "mau": 9_223_372_036_854_775_808_u64}),
        ),
        (
            "reports[1].data_points",
            json!({"org": "acme", "project": "web", "mau": 1, "data_points": 1_000_000_000_000_001_u64}),
        ),
    ] {
        let body = json!({"reports": [{"org": "acme", "project": "ok", "mau": 10}, item]});
        let answer = app.post(OPERATOR, "/v1/usage", body).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "invalid", Some(field));
        let message = answer.1["error"]["message"].as_str().unwrap();
        assert!(message.contains("limit of 1000000000000000"), "{message}");
    }
    assert!(app.ok("/v1/orgs/acme").await["usage"].is_null());
}
both!(absurd_usage_is_a_400_naming_the_limit);

/// SPEC 5: tier changes (up or down by the tier given), scheduled downgrades, add-ons;
/// a paid change waits for its payment outcome.
async fn plan_changes_and_addons(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.signup("trial", false, json!({})).await;
    app.set("2026-03-10T00:00:00Z");
    let plan = |org: &str, body: Value| {
        let path = format!("/v1/orgs/{org}/plan");
        let app = &app;
        async move { app.post(OPERATOR, &path, body).await }
    };
    // In trial: immediate, no charge.
    let (status, answer) = plan("trial", json!({"tier": 30_000})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["org"]["tier"], 30_000);
    let (_, answer) = plan("trial", json!({"tier": 10_000})).await;
    assert_eq!(answer["org"]["tier"], 10_000);
    assert_error(
        &plan("trial", json!({"tier": 10_000})).await,
        StatusCode::BAD_REQUEST,
        "invalid",
        Some("tier"),
    );
    assert_error(
        &plan("trial", json!({"tier": 150_000})).await,
        StatusCode::BAD_REQUEST,
        "invalid",
        Some("tier"),
    );
    assert_error(
        &plan("trial", json!({})).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        None,
    );
    assert_error(
        &plan("nobody", json!({"tier": 5_000})).await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    let (status, answer) = app
        .call(
            OPERATOR,
            Method::DELETE,
            "/v1/orgs/trial/plan/scheduled",
            None,
        )
        .await;
    assert_error(
        &(status, answer),
        StatusCode::BAD_REQUEST,
        "invalid",
        Some("downgrade"),
    );

    let addons = "/v1/orgs/trial/addons";
    let (status, answer) = app
        .post(OPERATOR, addons, json!({"addon": "journeys"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["org"]["addons"], json!(["journeys"]));
    assert_error(
        &app.post(OPERATOR, addons, json!({"addon": "journeys"}))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid",
        Some("addon"),
    );
    assert_error(
        &app.post(OPERATOR, addons, json!({"addon": "nope"})).await,
        StatusCode::BAD_REQUEST,
        "invalid",
        Some("addon"),
    );
    let (status, answer) = app
        .call(
            OPERATOR,
            Method::DELETE,
            "/v1/orgs/trial/addons/journeys",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["org"]["addons"], json!([]));

    // A subscriber: downgrades and removals wait for the 1st; upgrades for their payment.
    app.signup("paid", true, json!({"active": true})).await;
    let (_, answer) = plan("paid", json!({"tier": 10_000, "reason": "budget"})).await;
    assert_eq!(answer["org"]["tier"], 20_000);
    assert_eq!(answer["org"]["scheduled_tier"], 10_000);
    let (status, answer) = app
        .call(
            OPERATOR,
            Method::DELETE,
            "/v1/orgs/paid/plan/scheduled",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["org"]["scheduled_tier"], Value::Null);

    let (status, answer) = plan("paid", json!({"tier": 30_000})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["org"]["tier"], 20_000, "applies only once paid");
    assert!(
        fact_types(&answer).contains(&"invoice".to_owned()),
        "{answer}"
    );
    let invoices = app.ok("/v1/orgs/paid/invoices").await;
    let invoice = &invoices["invoices"][0];
    assert_eq!(invoice["kind"], "proration");
    assert_eq!(invoice["status"], "open");
    let id = invoice["id"].as_i64().unwrap();
    let (status, answer) = app
        .post(
            OPERATOR,
            &format!("/v1/invoices/{id}/payment"),
            json!({"outcome": "succeeded"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["org"]["tier"], 30_000);
    assert_eq!(
        app.ok("/v1/orgs/paid/invoices").await["invoices"][0]["status"],
        "paid"
    );

    let (_, answer) = app
        .post(
            OPERATOR,
            "/v1/orgs/paid/addons",
            json!({"addon": "journeys"}),
        )
        .await;
    assert_eq!(answer["org"]["addons"], json!([]), "added once paid");
    // Asked again while that charge is pending: refused, naming the invoice; no second
    // invoice, no second charge.
    let id = app.ok("/v1/orgs/paid/invoices").await["invoices"][1]["id"]
        .as_i64()
        .unwrap();
    let (status, again) = app
        .post(
            OPERATOR,
            "/v1/orgs/paid/addons",
            json!({"addon": "journeys"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{again}");
    assert_eq!(again["error"]["details"]["field"], "addon");
    let message = again["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("pending (invoice #{id})")),
        "{message}"
    );
    assert_eq!(
        app.ok("/v1/orgs/paid/invoices").await["invoices"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (_, answer) = app
        .post(
            OPERATOR,
            &format!("/v1/invoices/{id}/payment"),
            json!({"outcome": "succeeded"}),
        )
        .await;
    assert_eq!(answer["org"]["addons"], json!(["journeys"]));
    let (_, answer) = app
        .call(
            OPERATOR,
            Method::DELETE,
            "/v1/orgs/paid/addons/journeys",
            None,
        )
        .await;
    assert_eq!(
        answer["org"]["scheduled_addon_removals"],
        json!(["journeys"])
    );
    assert_eq!(answer["org"]["addons"], json!(["journeys"]));
    let (status, answer) = app
        .call(
            OPERATOR,
            Method::POST,
            "/v1/orgs/paid/addons/journeys/keep",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["org"]["scheduled_addon_removals"], json!([]));
}
both!(plan_changes_and_addons);

/// SPEC 3 and 5: payment outcomes from the provider drive grace and recovery; a card
/// added through the API is recorded.
async fn payment_outcomes_drive_grace_and_recovery(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.signup("acme", true, json!({})).await;
    app.set("2026-03-10T00:00:00Z");
    let (status, answer) = app
        .post(
            ADMIN,
            "/v1/orgs/acme/admin/end_trial",
            json!({"reason": "converts early"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["org"]["state"], "active");
    assert_eq!(answer["org"]["subscriber"], true);
    let invoice = app.ok("/v1/orgs/acme/invoices").await["invoices"][0].clone();
    assert_eq!(invoice["kind"], "conversion");
    let path = format!("/v1/invoices/{}/payment", invoice["id"]);

    let (status, answer) = app
        .post(
            OPERATOR,
            &path,
            json!({"outcome": "failed", "reason": "card declined"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["org"]["state"], "grace_period");
    assert_eq!(
        answer["org"]["deadlines"]["grace_ends_at"],
        "2026-03-20T00:00:00Z"
    );
    assert!(fact_types(&answer).contains(&"payment".to_owned()));

    let (status, answer) = app
        .post(
            ADMIN,
            "/v1/orgs/acme/admin/extend_grace",
            json!({"reason": "asked", "days": 2}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["org"]["deadlines"]["grace_ends_at"],
        "2026-03-22T00:00:00Z"
    );

    assert_error(
        &app.post(OPERATOR, &path, json!({"outcome": "maybe"})).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        None,
    );
    assert_error(
        &app.post(OPERATOR, &path, json!({})).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        None,
    );
    assert_error(
        &app.post(
            OPERATOR,
            "/v1/invoices/999999/payment",
            json!({"outcome": "failed"}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    assert_error(
        &app.post(
            OPERATOR,
            "/v1/invoices/abc/payment",
            json!({"outcome": "failed"}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        None,
    );

    let (status, answer) = app
        .post(
            ADMIN,
            "/v1/orgs/acme/admin/mark_paid",
            json!({"reason": "wire transfer"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["org"]["state"], "active");
    assert_eq!(answer["org"]["deadlines"]["grace_ends_at"], Value::Null);
    // Issue 29 item 1: any outcome for a settled invoice is a conflict with the one that
    // settled it, and changes nothing.
    for outcome in ["succeeded", "failed"] {
        let answer = app.post(OPERATOR, &path, json!({"outcome": outcome})).await;
        assert_error(&answer, StatusCode::CONFLICT, "conflict", None);
        let message = answer.1["error"]["message"].as_str().unwrap();
        assert!(message.contains("is paid already"), "{message}");
    }
    assert_eq!(app.ok("/v1/orgs/acme").await["state"], "active");

    app.signup("nocard", false, json!({})).await;
    let (status, answer) = app
        .call(
            OPERATOR,
            Method::POST,
            "/v1/orgs/nocard/payment-method",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["org"]["payment_method"], true);
}
both!(payment_outcomes_drive_grace_and_recovery);

/// Test clocks: advancing a clock 60 days moves its org through trial end, grace, the
/// payment_overdue lock and auto-cancel at their instants, while an org on the real clock
/// stays untouched.
async fn a_test_clock_runs_its_orgs_through_grace_lock_and_cancel(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (status, answer) = app
        .post(
            ADMIN,
            "/v1/test-clocks",
            json!({"id": "qa", "frozen_at": "2026-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["now"], "2026-01-01T00:00:00Z");
    assert_error(
        &app.post(
            ADMIN,
            "/v1/test-clocks",
            json!({"id": "qa", "frozen_at": "2026-01-01T00:00:00Z"}),
        )
        .await,
        StatusCode::CONFLICT,
        "conflict",
        None,
    );
    assert_error(
        &app.post(
            ADMIN,
            "/v1/test-clocks",
            json!({"id": "bad id", "frozen_at": "2026-01-01T00:00:00Z"}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid",
        Some("id"),
    );
    assert_error(
        &app.post(
            ADMIN,
            "/v1/test-clocks",
            json!({"id": "x", "frozen_at": "yesterday"}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        None,
    );
    assert_eq!(
        app.ok("/v1/test-clocks/qa").await["now"],
        "2026-01-01T00:00:00Z"
    );
    assert_error(
        &app.get("/v1/test-clocks/nope").await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );

    let answer = app
        .signup("clocked", true, json!({"test_clock": "qa"}))
        .await;
    assert_eq!(answer["org"]["test_clock"], "qa");
    assert_eq!(answer["org"]["signup_at"], "2026-01-01T00:00:00Z");
    assert_eq!(
        answer["org"]["deadlines"]["trial_ends_at"],
        "2026-01-31T00:00:00Z"
    );
    app.signup("real", true, json!({})).await;

    let advance = |to: &str| {
        let app = &app;
        let body = json!({ "to": to });
        async move { app.post(ADMIN, "/v1/test-clocks/qa/advance", body).await }
    };
    let (status, answer) = advance("2026-01-31T00:00:00Z").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["clock"]["now"], "2026-01-31T00:00:00Z");
    assert_eq!(
        transitions_to(&answer),
        [("active".to_owned(), "2026-01-31T00:00:00Z".to_owned())]
    );
    // Usage for the clocked org defaults to its clock's period, beside a real-clock org.
    let (status, answer) = app
        .post(
            OPERATOR,
            "/v1/usage",
            json!({"reports": [
                {"org": "clocked", "project": "web", "mau": 1_000},
                {"org": "real", "project": "web", "mau": 1_000},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["accepted"], 2, "{answer}");
    assert_eq!(
        app.ok("/v1/orgs/clocked").await["usage"]["period"],
        "2026-01"
    );
    assert_eq!(app.ok("/v1/orgs/real").await["usage"]["period"], "2026-03");

    let invoice = app.ok("/v1/orgs/clocked/invoices").await["invoices"][0]["id"].clone();
    let (status, answer) = app
        .post(
            OPERATOR,
            &format!("/v1/invoices/{invoice}/payment"),
            json!({"outcome": "failed"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["org"]["state"], "grace_period");
    assert_eq!(
        answer["org"]["deadlines"]["grace_ends_at"],
        "2026-02-10T00:00:00Z"
    );

    let (status, answer) = advance("2026-03-02T00:00:00Z").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        transitions_to(&answer),
        [
            ("locked".to_owned(), "2026-02-10T00:00:00Z".to_owned()),
            ("canceled".to_owned(), "2026-02-24T00:00:00Z".to_owned()),
        ]
    );
    let org = app.ok("/v1/orgs/clocked").await;
    assert_eq!(org["state"], "canceled");
    let causes: Vec<Value> = app.ok("/v1/orgs/clocked/transitions").await["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| json!([r["from"], r["to"], r["at"]]))
        .collect();
    assert_eq!(
        causes,
        [
            json!([null, "trial", "2026-01-01T00:00:00Z"]),
            json!(["trial", "active", "2026-01-31T00:00:00Z"]),
            json!(["active", "grace_period", "2026-01-31T00:00:00Z"]),
            json!(["grace_period", "locked", "2026-02-10T00:00:00Z"]),
            json!(["locked", "canceled", "2026-02-24T00:00:00Z"]),
        ]
    );

    let real = app.ok("/v1/orgs/real").await;
    assert_eq!(real["state"], "trial");
    assert_eq!(real["deadlines"]["trial_ends_at"], "2026-03-31T00:00:00Z");
    assert_eq!(
        app.ok("/v1/orgs/real/transitions").await["transitions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    assert_error(
        &advance("2026-01-01T00:00:00Z").await,
        StatusCode::BAD_REQUEST,
        "invalid",
        Some("to"),
    );
    assert_error(
        &app.post(
            ADMIN,
            "/v1/test-clocks/nope/advance",
            json!({"to": "2027-01-01T00:00:00Z"}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    let (status, answer) = app
        .call(ADMIN, Method::DELETE, "/v1/test-clocks/qa", None)
        .await;
    assert_eq!(
        (status, answer),
        (StatusCode::OK, json!({"id": "qa", "deleted_orgs": 1}))
    );
    assert_eq!(app.get("/v1/orgs/clocked").await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/v1/test-clocks/qa").await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.ok("/v1/orgs/real").await["state"], "trial");
    app.stop().await;

    // Without api.test_clocks the routes do not exist and signup refuses a clock.
    let Some(app) = TestApp::spawn_with(backend, |s| s.api.test_clocks = false).await else {
        return;
    };
    assert_error(
        &app.post(
            ADMIN,
            "/v1/test-clocks",
            json!({"id": "qa", "frozen_at": START}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    let (status, answer) = app
        .post(OPERATOR, "/v1/orgs", json!({"id": "x", "plan": "basic", "tier": 5_000, "admins": ["a@x.test"], "test_clock": "qa"}))
        .await;
    assert_error(
        &(status, answer),
        StatusCode::BAD_REQUEST,
        "invalid",
        Some("test_clock"),
    );
    assert!(acctd::api::endpoints(false)
        .iter()
        .all(|e| !e.path.contains("test-clocks")));
}
both!(a_test_clock_runs_its_orgs_through_grace_lock_and_cancel);

/// `/metrics` (Prometheus text), `/v1/stats` and `/openapi.json` (every route of the table).
async fn metrics_stats_and_openapi(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.signup("acme", false, json!({})).await;
    app.post(ADMIN, "/v1/orgs/acme/admin/lock", json!({"reason": "x"}))
        .await;
    app.post(ADMIN, "/v1/orgs/acme/admin/unlock", json!({"reason": "y"}))
        .await;
    // Refused by the rules: the org is not locked.
    let (refused, _) = app
        .post(ADMIN, "/v1/orgs/acme/admin/unlock", json!({"reason": "z"}))
        .await;
    assert_eq!(refused, StatusCode::CONFLICT);
    let metrics = || async {
        let answer = app
            .client(Some(VIEWER))
            .send(Method::GET, "/metrics", None, &[])
            .await
            .unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        assert!(answer
            .content_type
            .as_deref()
            .unwrap()
            .starts_with("text/plain"));
        answer.text()
    };
    let text = metrics().await;
    for line in [
        "# TYPE acctd_transitions_total counter",
        "acctd_transitions_total{cause=\"signup\"} 1",
        "acctd_transitions_total{cause=\"admin_lock\"} 1",
        "acctd_transitions_total{cause=\"admin_unlock\"} 1",
        "acctd_orgs{state=\"trial\"} 1",
        "acctd_orgs{state=\"locked\"} 0",
        "acctd_locked_orgs{reason=\"manual\"} 0",
        "acctd_due_orgs 0",
        "acctd_due_lag_seconds 0",
        "acctd_http_requests_total{method=\"POST\",route=\"/v1/orgs\",status=\"201\"} 1",
        "acctd_http_requests_total{method=\"POST\",route=\"/v1/orgs/{id}/admin/{op}\",status=\"200\"} 2",
        "acctd_http_requests_total{method=\"POST\",route=\"/v1/orgs/{id}/admin/{op}\",status=\"409\"} 1",
        "acctd_refusals_total{command=\"unlock\"} 1",
        "# TYPE acctd_http_request_duration_seconds histogram",
        "acctd_http_request_duration_seconds_count{method=\"POST\",route=\"/v1/orgs\",status=\"201\"} 1",
        "acctd_http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/orgs\",status=\"201\",le=\"+Inf\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
    }
    assert!(text.contains("acctd_outbox_backlog "), "{text}");
    // The trial deadline passed a day ago and no sweep ran since (the virtual clock moved).
    app.set("2026-04-01T00:00:00Z");
    let text = metrics().await;
    assert!(text.lines().any(|l| l == "acctd_due_orgs 1"), "{text}");
    let lag: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("acctd_due_lag_seconds "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no lag in\n{text}"));
    // At least the day since the trial ended (earlier reminders may be due too).
    assert!(lag >= 86_400, "{text}");

    let stats = app.ok("/v1/stats").await;
    assert_eq!(stats["orgs"], 1);
    assert_eq!(stats["by_state"]["trial"], 1);
    assert_eq!(stats["transitions"], 3);

    let doc = app.ok("/openapi.json").await;
    assert_eq!(doc["openapi"], "3.1.0");
    for e in acctd::api::endpoints(true) {
        let op = &doc["paths"][e.path][e.method.as_str().to_lowercase()];
        assert_eq!(op["summary"], e.summary, "{} {}", e.method, e.path);
        match e.role {
            Some(role) => assert_eq!(op["x-acctd-role"], role.as_str()),
            None => assert_eq!(op["security"], json!([])),
        }
    }
    assert_eq!(
        doc["paths"]["/v1/orgs"]["post"]["requestBody"]["content"]["application/json"]["example"]
            ["id"],
        "acme"
    );
    assert_eq!(
        doc["paths"]["/v1/orgs/{id}/addons/{addon}"]["delete"]["parameters"][1]["name"],
        "addon"
    );
}
both!(metrics_stats_and_openapi);

fn acctd(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_acctd"));
    command
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("ACCTD_API_URL")
        .env_remove("ACCTD_API_TOKEN")
        .env_remove("ACCTD_API_TOKENS");
    for (key, value) in env {
        command.env(key, value);
    }
    crate::helpers::output_within(&mut command, std::time::Duration::from_mins(2))
}

/// `acctd admin --url --token …` acts through the API: the token's name is the actor;
/// 4xx answers exit 2 with the API's message, an unreachable API exits 1.
async fn admin_cli_acts_through_the_api(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let url = app.base.clone();
    let run = |args: Vec<String>, env: Vec<(&'static str, &'static str)>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            acctd(&args, &env)
        })
    };
    let admin = |token: &str, rest: &[&str]| {
        let mut args = vec!["admin".to_owned(), "--url".to_owned(), url.clone()];
        if !token.is_empty() {
            args.extend(["--token".to_owned(), token.to_owned()]);
        }
        args.extend(rest.iter().map(|s| (*s).to_owned()));
        args
    };
    let who = ["--actor", "ignored", "--reason", "via cli"];
    let out = run(
        admin(
            OPERATOR,
            &[
                &[
                    "signup",
                    "acme",
                    "--tier",
                    "20000",
                    "--admin",
                    "ops@acme.test",
                ][..],
                &who,
            ]
            .concat(),
        ),
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"type\":\"transition\""));

    // The token may come from the environment instead of the command line.
    let out = run(
        admin("", &[&["lock", "acme"][..], &who].concat()),
        vec![("ACCTD_API_TOKEN", ADMIN)],
    )
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = run(admin(VIEWER, &["show", "acme", "--json"]), vec![])
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["state"], "locked");
    assert_eq!(shown["transitions"][1]["actor"], "admin-bot");
    assert_eq!(shown["transitions"][1]["reason"], "via cli");

    for (token, needle) in [(VIEWER, "403"), ("", "401"), (ADMIN, "legal moves")] {
        let out = run(
            admin(token, &[&["lock", "acme"][..], &who].concat()),
            vec![],
        )
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }
    let out = run(
        admin(
            OPERATOR,
            &[&["upgrade", "acme", "--tier", "5000"][..], &who].concat(),
        ),
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not above"));

    let out = run(admin(VIEWER, &["orgs", "--state", "locked"]), vec![])
        .await
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.starts_with("ORG ") && listed.lines().nth(1).unwrap().starts_with("acme "),
        "{listed}"
    );
    // `show` prints the same text through the API as from the database.
    let out = run(admin(VIEWER, &["show", "acme"]), vec![]).await.unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.starts_with("org acme\n  state          locked (manual)")
            && shown.contains("(admin_lock, by admin-bot: via cli)"),
        "{shown}"
    );

    // Each command goes to its route: its fields in the path or the body, with the
    // reason (a DELETE too).
    for args in [
        &["unlock", "acme", "--lock-reason", "manual"][..],
        &["extend-trial", "acme", "--days", "3"],
        &["add-addon", "acme", "--addon", "journeys"],
        &["remove-addon", "acme", "--addon", "journeys"],
    ] {
        let out = run(admin(ADMIN, &[args, &who].concat()), vec![])
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }

    let out = run(
        vec![
            "admin".into(),
            "--url".into(),
            "http://127.0.0.1:1".into(),
            "show".into(),
            "acme".into(),
        ],
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
}
both!(admin_cli_acts_through_the_api);

/// `acctd serve --listen 127.0.0.1:0` with a token from `ACCTD_API_TOKENS`: the API
/// answers, the token never shows in the log, and SIGTERM stops it with exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_takes_tokens_from_the_environment() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("a.db").display());
    let token = "s3cret-token-from-env-0123456789";
    let mut child = crate::helpers::Spawned::spawn(
        std::process::Command::new(env!("CARGO_BIN_EXE_acctd"))
            .args(["--db", &db, "serve", "--listen", "127.0.0.1:0"])
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .env("ACCTD_API_TOKENS", format!("ops:admin:{token}"))
            .env("ACCTD__LOG__FORMAT", "json")
            .env("ACCTD__LOG__LEVEL", "debug")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped()),
    );
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_mins(1))
            .unwrap_or_else(|_| panic!("no `acctd serving` line in {log:?}"));
        let event: Value = serde_json::from_str(&line).unwrap_or_default();
        if event["message"] == "acctd serving" {
            break event["api"].as_str().unwrap().to_owned();
        }
        log.push(line);
    };
    let client = Client::new(&format!("http://{addr}"), Some(token.to_owned())).unwrap();
    let (status, _) = client.call(Method::GET, "/readyz", None).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let (status, body) = client
        .call(
            Method::POST,
            "/v1/orgs",
            Some(&json!({"id": "acme", "plan": "basic", "tier": 5_000, "admins": ["a@acme.test"]})),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["facts"][0]["actor"], "ops");
    let (status, _) = client
        .with_token(Some("wrong-token-0123456789"))
        .call(Method::GET, "/v1/orgs", None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    log.extend(rx.try_iter());
    assert!(
        !log.iter().any(|l| l.contains(token)),
        "token in the log: {log:?}"
    );
}

/// Issue 29 item 6: a NUL byte (which PostgreSQL refuses in any text) in an org id, an
/// admin address, a reason or `?after=` is a 400 naming the field on both databases, and
/// changes nothing; in a usage batch it refuses its own item only.
async fn nul_bytes_are_refused_as_400_and_per_usage_item(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.signup("acme", false, json!({})).await;
    let signup = |patch: Value| {
        let mut body = json!({"id": "new", "plan": "basic", "tier": 20_000,
                              "admins": ["a@new.test"], "reason": "new customer"});
        body.as_object_mut()
            .unwrap()
            .extend(patch.as_object().unwrap().clone());
        body
    };
    for (patch, field) in [
        (json!({"id": "n\u{0}ew"}), "id"),
        (json!({"admins": ["a\u{0}@new.test"]}), "admins[0]"),
        (json!({"billing_email": "b\u{0}@new.test"}), "billing_email"),
        (json!({"reason": "new\u{0}customer"}), "reason"),
    ] {
        let answer = app.post(OPERATOR, "/v1/orgs", signup(patch)).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "invalid", Some(field));
    }
    assert_eq!(app.get("/v1/orgs/new").await.0, StatusCode::NOT_FOUND);
    assert_error(
        &app.post(
            ADMIN,
            "/v1/orgs/acme/admin/lock",
            json!({"reason": "x\u{0}y"}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid",
        Some("reason"),
    );
    assert_eq!(app.ok("/v1/orgs/acme").await["state"], "trial");
    for path in [
        "/v1/orgs?after=a%00b",
        "/v1/orgs/ac%00me",
        "/v1/orgs/ac%00me/entitlements",
    ] {
        assert_error(
            &app.get(path).await,
            StatusCode::BAD_REQUEST,
            "invalid",
            None,
        );
    }

    let (status, answer) = app
        .post(
            OPERATOR,
            "/v1/usage",
            json!({"reports": [
                {"org": "ac\u{0}me", "project": "web", "mau": 1},
                {"org": "acme", "project": "w\u{0}eb", "mau": 1},
                {"org": "acme", "project": "web", "period": "2026-0\u{0}3", "mau": 1},
                {"org": "acme", "project": "web", "mau": 1_000},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let results = answer["results"].as_array().unwrap();
    for result in &results[..3] {
        assert_eq!(result["status"], "refused", "{answer}");
    }
    assert!(
        results[0]["error"].as_str().unwrap().contains("NUL"),
        "{answer}"
    );
    assert!(
        results[1]["error"].as_str().unwrap().contains("NUL"),
        "{answer}"
    );
    assert_eq!(results[3]["status"], "accepted", "{answer}");
    assert_eq!(app.ok("/v1/orgs/acme").await["usage"]["usage_mau"], 1_000);
}
both!(nul_bytes_are_refused_as_400_and_per_usage_item);

/// Issue 29 item 14: a URL over the limit is a 414 with the usual JSON error body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlong_url_is_a_414_with_a_json_body() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let path = format!("/v1/orgs/{}", "a".repeat(20_000));
    let answer = app.get(&path).await;
    assert_error(&answer, StatusCode::URI_TOO_LONG, "uri_too_long", None);
    let message = answer.1["error"]["message"].as_str().unwrap();
    assert!(message.contains("8192"), "{message}");
}

/// Issue 29 item 10: `/metrics` labels stay bounded: methods outside HTTP's standard set
/// and paths that match no route are each counted under `other`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_fold_unknown_methods_and_unmatched_routes_into_other() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let client = app.client(Some(VIEWER));
    for i in 0..20 {
        let method = Method::from_bytes(format!("FOO{i}").as_bytes()).unwrap();
        client.send(method, "/v1/orgs", None, &[]).await.unwrap();
        client
            .send(Method::GET, &format!("/nope/{i}"), None, &[])
            .await
            .unwrap();
    }
    let text = client
        .send(Method::GET, "/metrics", None, &[])
        .await
        .unwrap()
        .text();
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("acctd_http_requests_total{"))
        .collect();
    assert!(!text.contains("FOO"), "{text}");
    assert!(!text.contains("/nope"), "{text}");
    assert!(
        series.contains(
            &"acctd_http_requests_total{method=\"other\",route=\"/v1/orgs\",status=\"405\"} 20"
        ),
        "{text}"
    );
    assert!(
        series.contains(
            &"acctd_http_requests_total{method=\"GET\",route=\"other\",status=\"404\"} 20"
        ),
        "{text}"
    );
}

/// Issue 29 item 7: documented limits on what a signup, a reason and a usage item may
/// carry; each refusal is a 400 (or a refused usage item) naming what is wrong, and
/// nothing is stored.
async fn oversized_and_ambiguous_input_is_refused_naming_the_limit(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.signup("acme", false, json!({})).await;
    let signup = |patch: Value| {
        let mut body = json!({"id": "new", "plan": "basic", "tier": 20_000,
                              "admins": ["a@new.test"], "reason": "new customer"});
        body.as_object_mut()
            .unwrap()
            .extend(patch.as_object().unwrap().clone());
        body
    };
    let many: Vec<String> = (0..101).map(|i| format!("a{i}@new.test")).collect();
    for (patch, field, needle) in [
        (json!({"admins": many}), "admins", "at most 100"),
        (
            json!({"admins": ["a@b.co,evil@x.co"]}),
            "admins",
            "one email address",
        ),
        (
            json!({"admins": ["Eve <evil@x.co>"]}),
            "admins",
            "one email address",
        ),
        (
            json!({"billing_email": "a@b.co;evil@x.co"}),
            "billing_email",
            "one email address",
        ),
        // Issue 28: addresses are read by lettre's parser, the one the transport uses.
        (
            json!({"admins": ["a@new.test, b@new.test"]}),
            "admins",
            "`a@new.test, b@new.test` is not one email address: it lists 2 addresses",
        ),
        (
            json!({"billing_email": "Billing <billing@new.test>"}),
            "billing_email",
            "is not one email address: give the address alone",
        ),
        (
            json!({"billing_email": " billing@new.test"}),
            "billing_email",
            "is not one email address: give the address alone",
        ),
        (
            json!({"admins": ["a@new.test", "billing at new.test"]}),
            "admins",
            "`billing at new.test` is not one email address",
        ),
        (
            json!({"billing_email": format!("{}@new.test", "b".repeat(250))}),
            "billing_email",
            "longer than 254 bytes",
        ),
        (json!({"id": "."}), "id", "not a usable id"),
        (json!({"id": ".."}), "id", "not a usable id"),
        (
            json!({"reason": "x".repeat(1_001)}),
            "reason",
            "at most 1000",
        ),
    ] {
        let answer = app.post(OPERATOR, "/v1/orgs", signup(patch)).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "invalid", Some(field));
        let message = answer.1["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{message}");
    }
    assert_eq!(app.get("/v1/orgs/new").await.0, StatusCode::NOT_FOUND);
    assert_error(
        &app.post(
            ADMIN,
            "/v1/orgs/acme/admin/lock",
            json!({"reason": "y".repeat(1_001)}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid",
        Some("reason"),
    );
    assert_eq!(app.ok("/v1/orgs/acme").await["state"], "trial");

    let (status, answer) = app
        .post(
            OPERATOR,
            "/v1/usage",
            json!({"reports": [
                {"org": "acme", "project": "p".repeat(201), "mau": 1},
                {"org": "acme", "project": "web", "period": "1999-12", "mau": 1},
                {"org": "acme", "project": "web", "period": "0001-01", "mau": 1},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let errors: Vec<&str> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["error"].as_str().unwrap_or("accepted"))
        .collect();
    assert!(errors[0].contains("at most 200"), "{errors:?}");
    assert!(errors[1].contains("before 2000-01"), "{errors:?}");
    assert!(errors[2].contains("before 2000-01"), "{errors:?}");
    assert!(app.ok("/v1/orgs/acme").await["usage"].is_null());
}
both!(oversized_and_ambiguous_input_is_refused_naming_the_limit);

/// Every `$ref` in a JSON document.
fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r);
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// Issue 28: `/openapi.json` gives every route of the table, its role and error answers,
/// and a JSON Schema (derived by utoipa from the DTO types) for every JSON body. A request
/// body and real answers validate against their schemas; a wrong one does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_has_a_schema_for_every_body_and_answers_match_them() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let doc = app.ok("/openapi.json").await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["info"]["title"].is_string());
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    // Every reference anywhere in the document resolves.
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(found.len() > 50, "{}", found.len());
    for r in found {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or(r);
        assert!(schemas.contains_key(name), "dangling {r}");
    }
    let codes = &schemas["ErrorCode"]["enum"];
    assert!(
        codes
            .as_array()
            .unwrap()
            .contains(&json!("illegal_transition")),
        "{codes}"
    );
    // Every route the router serves (the same table) is in the document, with a schema
    // for its JSON bodies and the error answers of its role.
    for e in acctd::api::endpoints(true) {
        let op = &doc["paths"][e.path][e.method.as_str().to_lowercase()];
        assert!(op.is_object(), "{} {} is missing", e.method, e.path);
        let success = &op["responses"][e.status.to_string()]["content"][e.content_type];
        assert!(
            success["schema"].is_object(),
            "{} {}: {op}",
            e.method,
            e.path
        );
        if e.role.is_some() {
            assert_eq!(
                op["responses"]["403"]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/Error"
            );
        }
        if e.method != Method::GET {
            assert!(
                op["responses"]["400"].is_object(),
                "{} {}",
                e.method,
                e.path
            );
        }
        if e.request.is_some() {
            assert!(op["requestBody"]["content"]["application/json"]["schema"]["$ref"].is_string());
        }
    }

    // A request body against its schema: the documented example validates; a wrong type,
    // a missing required field and an unknown field do not.
    let signup = &doc["paths"]["/v1/orgs"]["post"]["requestBody"]["content"]["application/json"];
    let schema = &signup["schema"];
    let example = signup["example"].clone();
    assert_eq!(validate(&doc, schema, &example), Ok(()));
    let mut wrong = example.clone();
    wrong["tier"] = json!("many");
    assert!(validate(&doc, schema, &wrong).unwrap_err().contains("tier"));
    let mut missing = example.clone();
    missing.as_object_mut().unwrap().remove("plan");
    assert!(validate(&doc, schema, &missing)
        .unwrap_err()
        .contains("plan"));
    // The same body, sent, is accepted; the answers validate against their schemas.
    let (status, created) = app.post(OPERATOR, "/v1/orgs", example).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let answer = |path: &str| {
        doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
            .clone()
    };
    assert_eq!(
        validate(
            &doc,
            &doc["paths"]["/v1/orgs"]["post"]["responses"]["201"]["content"]["application/json"]
                ["schema"],
            &created
        ),
        Ok(())
    );
    for (template, path) in [
        ("/v1/orgs/{id}", "/v1/orgs/acme"),
        ("/v1/orgs/{id}/entitlements", "/v1/orgs/acme/entitlements"),
        ("/v1/orgs/{id}/transitions", "/v1/orgs/acme/transitions"),
        ("/v1/orgs/{id}/invoices", "/v1/orgs/acme/invoices"),
        ("/v1/orgs/{id}/forecast", "/v1/orgs/acme/forecast"),
        ("/v1/orgs", "/v1/orgs"),
        ("/v1/stats", "/v1/stats"),
    ] {
        let body = app.ok(path).await;
        assert_eq!(
            validate(&doc, &answer(template), &body),
            Ok(()),
            "{path}: {body}"
        );
    }
    let (_, refused) = app
        .post(
            ADMIN,
            "/v1/orgs/acme/admin/unlock",
            json!({"reason": "not locked"}),
        )
        .await;
    assert_eq!(
        validate(
            &doc,
            &json!({"$ref": "#/components/schemas/Error"}),
            &refused
        ),
        Ok(())
    );
}

/// Checks `value` against the subset of JSON Schema that utoipa writes: `$ref`, `type`
/// (one or several), `properties`, `required`, `additionalProperties`, `items`, `enum`,
/// `oneOf`, `anyOf`, `allOf`. Names the path of the first mismatch.
fn validate(doc: &Value, schema: &Value, value: &Value) -> Result<(), String> {
    fn at(doc: &Value, schema: &Value, value: &Value, path: &str) -> Result<(), String> {
        if let Some(r) = schema["$ref"].as_str() {
            let name = r.trim_start_matches("#/components/schemas/");
            return at(doc, &doc["components"]["schemas"][name], value, path);
        }
        if let Some(all) = schema["allOf"].as_array() {
            for s in all {
                at(doc, s, value, path)?;
            }
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(options) = schema[key].as_array() {
                let matching = options
                    .iter()
                    .filter(|s| at(doc, s, value, path).is_ok())
                    .count();
                if matching == 0 || (key == "oneOf" && matching > 1) {
                    return Err(format!(
                        "{path}: {matching} of the {key} options match {value}"
                    ));
                }
            }
        }
        if let Some(options) = schema["enum"].as_array() {
            if !options.contains(value) {
                return Err(format!("{path}: {value} is not one of {options:?}"));
            }
        }
        let kind = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let allowed: Vec<&str> = match &schema["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let fits = allowed.contains(&kind) || (kind == "integer" && allowed.contains(&"number"));
        if !allowed.is_empty() && !fits {
            return Err(format!("{path}: {kind} where the schema wants {allowed:?}"));
        }
        if let Value::Object(map) = value {
            for name in schema["required"].as_array().into_iter().flatten() {
                let name = name.as_str().unwrap();
                if !map.contains_key(name) {
                    return Err(format!("{path}.{name}: required, missing"));
                }
            }
            let properties = schema["properties"].as_object();
            for (name, v) in map {
                match properties.and_then(|p| p.get(name)) {
                    Some(s) => at(doc, s, v, &format!("{path}.{name}"))?,
                    None => match &schema["additionalProperties"] {
                        Value::Bool(false) => return Err(format!("{path}.{name}: not allowed")),
                        s @ Value::Object(_) => at(doc, s, v, &format!("{path}.{name}"))?,
                        _ => {}
                    },
                }
            }
        }
        if let (Value::Array(items), Some(s)) = (value, schema.get("items")) {
            for (i, v) in items.iter().enumerate() {
                at(doc, s, v, &format!("{path}[{i}]"))?;
            }
        }
        Ok(())
    }
    at(doc, schema, value, "$")
}
