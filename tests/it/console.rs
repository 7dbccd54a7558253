//! The ops console (issue 27): its security over plain HTTP on both backends, and the
//! pages and actions in a real browser (headless Chromium through chromedriver) against
//! a real `acctd serve`.

use std::time::Duration;

use acctd::api::client::Client;
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::api::{TestApp, ADMIN, OPERATOR, VIEWER};
use crate::helpers::{both, Backend};

/// One HTTP/1.0 exchange, raw, so that a test sees every header (cookies included).
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value a `Set-Cookie` of this reply gives `name`.
    fn cookie(&self, name: &str) -> Option<String> {
        self.header("set-cookie").into_iter().find_map(|c| {
            let (pair, _) = c.split_once(';')?;
            let (k, v) = pair.split_once('=')?;
            (k == name).then(|| v.to_owned())
        })
    }

    /// The first hidden `csrf` field of the page.
    fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a csrf field")
            + 19;
        self.body[at..at + 64].to_owned()
    }
}

async fn http(base: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let authority = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(authority).await.unwrap();
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {authority}\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" {
        request.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// Signs in with `token` over plain HTTP; returns the session cookie header and the
/// session's CSRF token.
async fn sign_in(base: &str, token: &str) -> (String, String) {
    let form = http(base, "GET", "/console/sign-in", &[], "").await;
    assert_eq!(form.status, 200);
    let pre = form.cookie("acctd_sign_in").expect("a sign-in cookie");
    let reply = http(
        base,
        "POST",
        "/console/sign-in",
        &[("Cookie", &format!("acctd_sign_in={pre}"))],
        &format!("csrf={pre}&token={token}"),
    )
    .await;
    assert_eq!(reply.status, 303, "{}", reply.body);
    let session = reply.cookie("acctd_session").expect("a session cookie");
    let cookie = format!("acctd_session={session}");
    let page = http(base, "GET", "/console/orgs", &[("Cookie", &cookie)], "").await;
    assert_eq!(page.status, 200, "{}", page.body);
    (cookie, page.csrf())
}

/// Sign-in, CSRF, roles and headers without a browser: a form without the session's
/// CSRF token is refused with 403, and so is a viewer's hand-made action; a signed-out
/// request is sent to sign in; failed sign-ins are throttled; the list filters and
/// searches.
async fn console_refuses_what_it_must(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    for id in ["acme-1", "acme-2", "bolt-1"] {
        app.signup(id, true, json!({})).await;
    }
    let base = &app.base;

    // Signed out: pages go to the sign-in form, posts are refused.
    let reply = http(base, "GET", "/console/orgs", &[], "").await;
    assert_eq!(reply.status, 303);
    assert_eq!(reply.header("location"), ["/console/sign-in"]);
    let reply = http(
        base,
        "POST",
        "/console/orgs/acme-1/execute",
        &[],
        "op=lock&reason=x",
    )
    .await;
    assert_eq!(reply.status, 403);

    // The sign-in form: its own CSRF cookie, security headers, no script.
    let form = http(base, "GET", "/console/sign-in", &[], "").await;
    let csp = form.header("content-security-policy");
    assert!(csp[0].contains("default-src 'none'") && !csp[0].contains("unsafe-inline"));
    assert!(!form.body.contains("<script"));
    // Its server time, for a browser's developer tools.
    let timing = form.header("server-timing");
    assert!(
        timing.len() == 1
            && timing[0]
                .strip_prefix("app;dur=")
                .is_some_and(|ms| ms.parse::<f64>().is_ok()),
        "{timing:?}"
    );
    let set = form.header("set-cookie").join("\n");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    let pre = form.cookie("acctd_sign_in").unwrap();
    // Without its CSRF token, even the right token is refused.
    let reply = http(
        base,
        "POST",
        "/console/sign-in",
        &[("Cookie", &format!("acctd_sign_in={pre}"))],
        &format!("token={ADMIN}"),
    )
    .await;
    assert_eq!(reply.status, 403);
    // Behind a TLS proxy the cookies are Secure.
    let tls = http(
        base,
        "GET",
        "/console/sign-in",
        &[("X-Forwarded-Proto", "https")],
        "",
    )
    .await;
    assert!(tls.header("set-cookie")[0].contains("; Secure"));

    let (admin, admin_csrf) = sign_in(base, ADMIN).await;
    let (viewer, viewer_csrf) = sign_in(base, VIEWER).await;

    // An admin's action without the CSRF token, or with another session's: 403.
    for body in [
        "op=lock&reason=test".to_owned(),
        format!("op=lock&reason=test&csrf={viewer_csrf}"),
    ] {
        let reply = http(
            base,
            "POST",
            "/console/orgs/acme-1/execute",
            &[("Cookie", &admin)],
            &body,
        )
        .await;
        assert_eq!(reply.status, 403, "{body}: {}", reply.body);
        assert!(reply.body.contains("CSRF"));
    }
    // A viewer's hand-made action with its own valid CSRF token: 403 by role.
    for path in [
        "/console/orgs/acme-1/confirm",
        "/console/orgs/acme-1/execute",
    ] {
        let reply = http(
            base,
            "POST",
            path,
            &[("Cookie", &viewer)],
            &format!("op=lock&reason=test&csrf={viewer_csrf}"),
        )
        .await;
        assert_eq!(reply.status, 403, "{path}: {}", reply.body);
        assert!(reply.body.contains("role"), "{}", reply.body);
    }
    // A viewer's org page has no action forms.
    let page = http(
        base,
        "GET",
        "/console/orgs/acme-1",
        &[("Cookie", &viewer)],
        "",
    )
    .await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("/confirm"), "a viewer sees actions");
    assert_eq!(app.ok("/v1/orgs/acme-1").await["state"], "trial");

    // The admin's lock, with its token: confirm, then execute.
    let body = format!("op=lock&reason=chargeback&csrf={admin_csrf}");
    let confirm = http(
        base,
        "POST",
        "/console/orgs/acme-1/confirm",
        &[("Cookie", &admin)],
        &body,
    )
    .await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    // The engine's preview: the transition and the email it would cause, nothing written.
    let preview = &confirm.body[confirm
        .body
        .find("id=\"preview-facts\"")
        .expect("a preview")..];
    assert!(
        preview.contains("<strong>transition</strong>") && preview.contains("account_locked"),
        "{preview}"
    );
    assert_eq!(
        app.ok("/v1/orgs/acme-1").await["state"],
        "trial",
        "confirming changes nothing"
    );
    assert!(
        !http(
            base,
            "GET",
            "/console/orgs/acme-1",
            &[("Cookie", &admin)],
            ""
        )
        .await
        .body
        .contains("account_locked"),
        "a preview left a message"
    );
    let done = http(
        base,
        "POST",
        "/console/orgs/acme-1/execute",
        &[("Cookie", &admin)],
        &body,
    )
    .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(app.ok("/v1/orgs/acme-1").await["state"], "locked");
    let trail = app.ok("/v1/orgs/acme-1/transitions").await;
    let newest = trail["transitions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (newest["actor"].as_str(), newest["reason"].as_str()),
        (Some("admin-bot"), Some("chargeback"))
    );
    // A missing reason is refused before anything runs; cancel needs DELETE.
    let reply = http(
        base,
        "POST",
        "/console/orgs/acme-2/confirm",
        &[("Cookie", &admin)],
        &format!("op=lock&reason=&csrf={admin_csrf}"),
    )
    .await;
    assert_eq!(reply.status, 400);
    let reply = http(
        base,
        "POST",
        "/console/orgs/acme-2/execute",
        &[("Cookie", &admin)],
        &format!("op=cancel&reason=asked&confirm=delete&csrf={admin_csrf}"),
    )
    .await;
    assert_eq!(reply.status, 400);
    assert_eq!(app.ok("/v1/orgs/acme-2").await["state"], "trial");
    // A refusal shows the legal moves.
    let reply = http(
        base,
        "POST",
        "/console/orgs/acme-2/execute",
        &[("Cookie", &admin)],
        &format!("op=unlock&reason=why&csrf={admin_csrf}"),
    )
    .await;
    assert_eq!(reply.status, 409, "{}", reply.body);
    assert!(
        reply.body.contains("id=\"legal-moves\"") && reply.body.contains("<code>lock</code>"),
        "{}",
        reply.body
    );

    // The list: filters and search.
    let list = |query: &'static str| {
        let admin = admin.clone();
        async move {
            let page = http(
                base,
                "GET",
                &format!("/console/orgs{query}"),
                &[("Cookie", &admin)],
                "",
            )
            .await;
            assert_eq!(page.status, 200, "{query}: {}", page.body);
            ["acme-1", "acme-2", "bolt-1"]
                .into_iter()
                .filter(|id| page.body.contains(&format!(">{id}</a>")))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list("").await, ["acme-1", "acme-2", "bolt-1"]);
    assert_eq!(list("?q=acme").await, ["acme-1", "acme-2"]);
    assert_eq!(list("?q=ops%40bolt-1.test").await, ["bolt-1"]);
    assert_eq!(list("?state=locked").await, ["acme-1"]);
    assert_eq!(list("?reason=manual").await, ["acme-1"]);
    assert_eq!(
        list("?plan=basic&clock=real&after=acme-1").await,
        ["acme-2", "bolt-1"]
    );
    assert_eq!(list("?clock=qa").await, Vec::<&str>::new());

    // The forecast: what happens next if nothing changes, read only.
    let page = http(
        base,
        "GET",
        "/console/orgs/acme-2/forecast?days=90&payments=fail",
        &[("Cookie", &viewer)],
        "",
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("grace_expired") && page.body.contains("auto_cancel"),
        "{}",
        page.body
    );
    assert_eq!(app.ok("/v1/orgs/acme-2").await["state"], "trial");
    let page = http(
        base,
        "GET",
        "/console/orgs/acme-2/forecast?payments=maybe",
        &[("Cookie", &viewer)],
        "",
    )
    .await;
    assert_eq!(page.status, 400, "{}", page.body);

    // The org's page lists its messages; a dead letter shows on the outbox page, where an
    // operator puts it back in line (a viewer sees no buttons).
    let page = http(
        base,
        "GET",
        "/console/orgs/acme-1",
        &[("Cookie", &admin)],
        "",
    )
    .await;
    assert!(page.body.contains("account_locked"), "{}", page.body);
    {
        use sea_orm::ConnectionTrait;
        let conn = app.db.connect().await;
        conn.execute_unprepared(
            "UPDATE outbox SET status = 'dead', attempts = 5, last_error = 'smtp said no' \
             WHERE org_id = 'acme-1' AND template = 'account_locked'",
        )
        .await
        .unwrap();
    }
    let page = http(base, "GET", "/console/outbox", &[("Cookie", &viewer)], "").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("smtp said no"), "{}", page.body);
    assert!(!page.body.contains("/retry"), "a viewer may not retry");
    let page = http(base, "GET", "/console/outbox", &[("Cookie", &admin)], "").await;
    let at = page
        .body
        .find("action=\"/console/outbox/")
        .expect("a retry form")
        + "action=\"/console/outbox/".len();
    let id: String = page.body[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let retried = http(
        base,
        "POST",
        &format!("/console/outbox/{id}/retry"),
        &[("Cookie", &admin)],
        &format!("csrf={admin_csrf}"),
    )
    .await;
    assert_eq!(retried.status, 303, "{}", retried.body);
    let page = http(base, "GET", "/console/outbox", &[("Cookie", &admin)], "").await;
    assert!(
        !page.body.contains("smtp said no"),
        "still dead: {}",
        page.body
    );

    // Test clocks: a clock made through the console lists its orgs.
    let made = http(
        base,
        "POST",
        "/console/clocks",
        &[("Cookie", &admin)],
        &format!("id=qa&at=2026-03-01T00%3A00%3A00Z&csrf={admin_csrf}"),
    )
    .await;
    assert_eq!(made.status, 303, "{}", made.body);
    let made = http(
        base,
        "POST",
        "/console/clocks",
        &[("Cookie", &viewer)],
        &format!("id=qb&at=2026-03-01T00%3A00%3A00Z&csrf={viewer_csrf}"),
    )
    .await;
    assert_eq!(made.status, 403);
    let page = http(base, "GET", "/console/clocks", &[("Cookie", &admin)], "").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("qa: 2026-03-01 00:00 UTC")
            && page.body.contains("clocks&#x2f;qa&#x2f;advance"),
        "{}",
        page.body
    );
    let moved = http(
        base,
        "POST",
        "/console/clocks/qa/advance",
        &[("Cookie", &admin)],
        &format!("at=2026-03-02T00%3A00%3A00Z&csrf={admin_csrf}"),
    )
    .await;
    assert_eq!(moved.status, 303, "{}", moved.body);
    // An org on the clock is shown on the clock's time.
    app.signup("qa-1", true, json!({"test_clock": "qa"})).await;
    let page = http(
        base,
        "GET",
        "/console/orgs/qa-1",
        &[("Cookie", &viewer)],
        "",
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("qa (now 2026-03-02 00:00 UTC)"),
        "{}",
        page.body
    );
    let page = http(
        base,
        "GET",
        "/console/orgs?clock=qa",
        &[("Cookie", &viewer)],
        "",
    )
    .await;
    assert!(
        page.body.contains(">qa-1</a>") && !page.body.contains(">acme-1</a>"),
        "{}",
        page.body
    );

    // Sign-out ends the session.
    let reply = http(
        base,
        "POST",
        "/console/sign-out",
        &[("Cookie", &viewer)],
        &format!("csrf={viewer_csrf}"),
    )
    .await;
    assert_eq!(reply.status, 303);
    let reply = http(base, "GET", "/console/orgs", &[("Cookie", &viewer)], "").await;
    assert_eq!(reply.status, 303);

    // Failed sign-ins: after five, even the right token waits.
    for _ in 0..5 {
        let form = http(base, "GET", "/console/sign-in", &[], "").await;
        let pre = form.cookie("acctd_sign_in").unwrap();
        let reply = http(
            base,
            "POST",
            "/console/sign-in",
            &[("Cookie", &format!("acctd_sign_in={pre}"))],
            &format!("csrf={pre}&token=wrong-token-0123456789"),
        )
        .await;
        assert_eq!(reply.status, 401);
    }
    let form = http(base, "GET", "/console/sign-in", &[], "").await;
    let pre = form.cookie("acctd_sign_in").unwrap();
    let reply = http(
        base,
        "POST",
        "/console/sign-in",
        &[("Cookie", &format!("acctd_sign_in={pre}"))],
        &format!("csrf={pre}&token={ADMIN}"),
    )
    .await;
    assert_eq!(reply.status, 429);
    assert!(!reply.header("retry-after").is_empty());
    app.stop().await;
}
both!(console_refuses_what_it_must);

/// A minimal WebDriver client over the API's own HTTP client (JSON over HTTP/1).
struct Browser {
    client: Client,
    session: String,
}

impl Browser {
    async fn open(driver: &str) -> Self {
        let client = Client::new(driver, None).unwrap();
        let (status, body) = client
            .call(
                Method::POST,
                "/session",
                Some(&json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": chromium(),
                        "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                                 "--disable-dev-shm-usage", "--window-size=1280,1400"],
                    },
                }}})),
            )
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK, "new session: {body}");
        Self {
            client,
            session: body["value"]["sessionId"].as_str().unwrap().to_owned(),
        }
    }

    async fn cmd(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let (status, answer) = self
            .client
            .call(method, &path, body.as_ref())
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
        answer["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.cmd(Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn find(&self, css: &str) -> Option<String> {
        let path = format!("/session/{}/element", self.session);
        let (status, answer) = self
            .client
            .call(
                Method::POST,
                &path,
                Some(&json!({"using": "css selector", "value": css})),
            )
            .await
            .unwrap();
        if status != StatusCode::OK {
            return None;
        }
        answer["value"]
            .as_object()?
            .values()
            .next()?
            .as_str()
            .map(str::to_owned)
    }

    /// The element, waiting up to 10 s for it: a click that submits a form returns before
    /// the next page has loaded.
    async fn el(&self, css: &str) -> String {
        for _ in 0..100 {
            if let Some(id) = self.find(css).await {
                return id;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no `{css}` on the page:\n{}", self.source().await)
    }

    /// Runs a command on the element `css` selects, finding it again when the page
    /// changed under it (a stale element: the old page was still there when it was found).
    async fn on(&self, css: &str, method: Method, command: &str, body: Option<Value>) -> Value {
        for _ in 0..50 {
            let id = self.el(css).await;
            let path = format!("/session/{}/element/{id}{command}", self.session);
            let (status, answer) = self
                .client
                .call(method.clone(), &path, body.as_ref())
                .await
                .unwrap();
            if status == StatusCode::OK {
                return answer["value"].clone();
            }
            assert_eq!(
                answer["value"]["error"], "stale element reference",
                "{css}{command}: {answer}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("`{css}` stayed stale")
    }

    async fn click(&self, css: &str) {
        self.on(css, Method::POST, "/click", Some(json!({}))).await;
    }

    async fn type_in(&self, css: &str, text: &str) {
        self.on(css, Method::POST, "/clear", Some(json!({}))).await;
        self.on(css, Method::POST, "/value", Some(json!({ "text": text })))
            .await;
    }

    async fn text(&self, css: &str) -> String {
        self.on(css, Method::GET, "/text", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Waits until the current URL contains `part` (a submitted form has loaded).
    async fn wait_url(&self, part: &str) {
        for _ in 0..100 {
            let url = self.cmd(Method::GET, "/url", None).await;
            if url.as_str().is_some_and(|u| u.contains(part)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the URL never contained `{part}`");
    }

    async fn source(&self) -> String {
        self.cmd(Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn screenshot(&self, name: &str) {
        use base64::Engine as _;
        let png = self.cmd(Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
        // The README's screenshots are rewritten only when asked: every run differs by a
        // few pixels, and tests should not dirty the tree.
        let dir = if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs")
        } else {
            std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        };
        std::fs::write(dir.join(name), bytes).unwrap();
    }

    async fn sign_in(&self, base: &str, token: &str) {
        self.go(&format!("{base}/console/sign-in")).await;
        self.type_in("#token", token).await;
        self.click("#sign-in").await;
        self.el("#who").await;
    }

    async fn sign_out(&self) {
        self.click("form.who button").await;
        self.el("#token").await;
    }

    async fn close(self) {
        let path = format!("/session/{}", self.session);
        let _ = self.client.call(Method::DELETE, &path, None).await;
    }
}

fn chromium() -> &'static str {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .unwrap_or("/usr/bin/chromium")
}

fn chromedriver() -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("chromedriver"))
        .find(|p| p.exists())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `acctd serve` on a fresh SQLite file with one token per role and test clocks
/// on; returns the guard and its base URL.
fn serve(dir: &std::path::Path) -> (crate::helpers::Spawned, String) {
    use std::io::BufRead;
    let db = format!("sqlite://{}?mode=rwc", dir.join("console.db").display());
    let mut child = crate::helpers::Spawned::spawn(
        std::process::Command::new(env!("CARGO_BIN_EXE_acctd"))
            .args(["--db", &db, "serve", "--listen", "127.0.0.1:0"])
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .env(
                "ACCTD_API_TOKENS",
                format!("viewer-bot:viewer:{VIEWER},operator-bot:operator:{OPERATOR},admin-bot:admin:{ADMIN}"),
            )
            .env("ACCTD__API__TEST_CLOCKS", "true")
            .env("ACCTD__EMAIL__TRANSPORT", "none")
            .env("ACCTD__LOG__FORMAT", "json")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped()),
    );
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut lines = stderr.lines().map_while(Result::ok);
    let addr = lines
        .find_map(|line| {
            let event: Value = serde_json::from_str(&line).unwrap_or_default();
            (event["message"] == "acctd serving").then(|| event["api"].as_str().unwrap().to_owned())
        })
        .expect("an `acctd serving` line");
    // Keep draining the log so the daemon never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, format!("http://{addr}"))
}

/// In headless Chromium: each role signs in; the viewer sees no actions and is refused
/// a hand-made one; the operator sees plan changes only; the admin finds an org, locks it
/// with a reason through the confirm page, sees the audit row, is shown the legal moves
/// on a refusal, and cancels with `DELETE`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_browser() {
    let Some(driver) = chromedriver() else {
        assert!(
            std::env::var("CI").map_or(true, |ci| ci != "true"),
            "CI=true: chromedriver must be installed (apt-get install chromium chromium-driver)"
        );
        eprintln!("console_in_a_browser: skipped, chromedriver is not installed (apt-get install chromium chromium-driver)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, base) = serve(dir.path());
    let api = Client::new(&base, Some(ADMIN.to_owned())).unwrap();
    for i in 0..24 {
        let id = format!("org-{i:02}");
        let (status, body) = api
            .call(
                Method::POST,
                "/v1/orgs",
                Some(&json!({
                    "id": id, "plan": "basic", "tier": if i % 3 == 0 { 20_000 } else { 5_000 },
                    "admins": [format!("ops@{id}.test")], "payment_method": i % 2 == 0,
                    "reason": "seeded by the console test",
                })),
            )
            .await
            .unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    for (i, op) in [(3, "lock"), (5, "lock")] {
        let (status, body) = api
            .call(
                Method::POST,
                &format!("/v1/orgs/org-{i:02}/admin/{op}"),
                Some(&json!({"reason": "seeded lock"})),
            )
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/usage",
            Some(&json!({"reports": [{"org": "org-00", "project": "web", "mau": 17_500, "data_points": 1}]})),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");

    let port = free_port();
    let _chromedriver = crate::helpers::Spawned::spawn(
        std::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    let driver = format!("http://127.0.0.1:{port}");
    let status = Client::new(&driver, None).unwrap();
    for _ in 0..100 {
        if let Ok((_, v)) = status.call(Method::GET, "/status", None).await {
            if v["value"]["ready"] == true {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let browser = Browser::open(&driver).await;

    // A viewer: the org's page without actions; a hand-made post is refused.
    browser.sign_in(&base, VIEWER).await;
    assert_eq!(browser.text("#role").await, "viewer");
    browser.go(&format!("{base}/console/orgs/org-01")).await;
    assert_eq!(browser.text("#state").await, "trial");
    assert!(
        browser.find("#actions").await.is_none(),
        "a viewer sees actions"
    );
    // The page's own CSRF token, in a form the viewer makes by hand (WebDriver's script
    // runs outside the page's Content-Security-Policy).
    browser
        .cmd(
            Method::POST,
            "/execute/sync",
            Some(json!({"script": "const f = document.createElement('form'); f.method = 'post'; \
                f.action = '/console/orgs/org-01/execute'; \
                for (const [k, v] of [['csrf', document.querySelector('input[name=csrf]').value], ['op', 'lock'], ['reason', 'by hand']]) { \
                  const i = document.createElement('input'); i.name = k; i.value = v; f.appendChild(i); } \
                document.body.appendChild(f); f.submit();", "args": []})),
        )
        .await;
    assert!(
        browser.text("#problem").await.contains("role"),
        "{}",
        browser.source().await
    );
    browser.sign_out().await;

    // An operator: plan changes, no lifecycle actions.
    browser.sign_in(&base, OPERATOR).await;
    browser.go(&format!("{base}/console/orgs/org-01")).await;
    assert!(browser.find("#action-change_tier").await.is_some());
    assert!(browser.find("#action-lock").await.is_none());
    browser.sign_out().await;

    // An admin: find the org, lock it through the confirm page.
    browser.sign_in(&base, ADMIN).await;
    browser.go(&format!("{base}/console/orgs")).await;
    browser.screenshot("console-orgs.png").await;
    browser.type_in("#q", "org-0").await;
    browser.click("#filter").await;
    browser.wait_url("q=org-0").await;
    browser.click("#orgs a[href='/console/orgs/org-00']").await;
    assert_eq!(browser.text("#org-id").await, "org-00");
    browser
        .type_in("#lock-reason", "chargeback under review")
        .await;
    browser.click("#action-lock button").await;
    assert!(browser.text("#summary").await.contains("Lock `org-00`"));
    assert!(browser.text("#preview-facts").await.contains("transition"));
    browser.click("#execute").await;
    assert_eq!(browser.text("#state").await, "locked");
    let trail = browser.text("#trail tbody tr").await;
    assert!(
        trail.contains("admin-bot") && trail.contains("chargeback under review"),
        "{trail}"
    );
    browser.screenshot("console-org.png").await;

    // A refusal shows the legal moves.
    browser.go(&format!("{base}/console/orgs/org-01")).await;
    browser.type_in("#unlock-reason", "nothing to lift").await;
    browser.click("#action-unlock button").await;
    assert!(browser.text("#preview-legal").await.contains("lock"));
    browser.click("#execute").await;
    browser.el("#legal-moves").await;

    // Cancel: typing DELETE.
    browser.go(&format!("{base}/console/orgs/org-01")).await;
    browser.type_in("#cancel-reason", "customer asked").await;
    browser.click("#action-cancel button").await;
    browser.type_in("#confirm", "DELETE").await;
    browser.click("#execute").await;
    assert_eq!(browser.text("#state").await, "canceled");
    browser.close().await;
}
