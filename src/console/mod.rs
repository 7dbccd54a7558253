//! The ops console: server-rendered HTML pages under `/console`, served by `acctd serve`
//! on the API's router, reading and acting through the same [`Engine`] methods with the
//! same roles as the API (SPEC section 10).
//!
//! A user signs in with an API token, which is exchanged for a session cookie
//! ([`session`]); the token's name is the actor of every change, as with the API. Every
//! `POST` carries the session's CSRF token (checked here, before any handler runs: 403
//! without it), and every route names the role it needs, checked on the server; a page
//! only hides what the role may not do. Actions go form → confirm page (with the engine's
//! preview of the change) → execute ([`action`]).
//!
//! **Architecture Invariant:** the console has no rules of its own, like the API: it
//! parses forms, calls the engine, and renders. Its pages carry no script and no inline
//! style (the Content-Security-Policy forbids both); its one stylesheet is compiled in.

pub mod action;
mod page;
pub mod session;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, REFERRER_POLICY, SET_COOKIE,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use minijinja::{AutoEscape, Environment};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{ApiError, ApiState};
use crate::config::Role;
use crate::engine::Engine;
use session::{Session, Sessions, Throttle};

/// The Content-Security-Policy of every console response: nothing but this origin's
/// stylesheet and forms; no script at all, no inline style, no framing.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
                       form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const CSS: &str = include_str!("../../templates/console/console.css");

/// What the console's handlers share.
#[derive(Clone)]
pub struct ConsoleState {
    pub api: ApiState,
    sessions: Arc<Sessions>,
    throttle: Arc<Throttle>,
    templates: Arc<Environment<'static>>,
    /// The org list's counts, refreshed in the background.
    counts: Arc<page::CountsCache>,
}

impl ConsoleState {
    fn engine(&self) -> &Engine {
        &self.api.engine
    }
}

fn templates() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    for (name, source) in [
        (
            "base.html",
            include_str!("../../templates/console/base.html.j2"),
        ),
        (
            "sign_in.html",
            include_str!("../../templates/console/sign_in.html.j2"),
        ),
        (
            "orgs.html",
            include_str!("../../templates/console/orgs.html.j2"),
        ),
        (
            "org.html",
            include_str!("../../templates/console/org.html.j2"),
        ),
        (
            "confirm.html",
            include_str!("../../templates/console/confirm.html.j2"),
        ),
        (
            "problem.html",
            include_str!("../../templates/console/problem.html.j2"),
        ),
        (
            "forecast.html",
            include_str!("../../templates/console/forecast.html.j2"),
        ),
        (
            "outbox.html",
            include_str!("../../templates/console/outbox.html.j2"),
        ),
        (
            "clocks.html",
            include_str!("../../templates/console/clocks.html.j2"),
        ),
    ] {
        // The templates are compiled in; a syntax error fails every test that renders.
        env.add_template(name, source)
            .expect("a console template compiles");
    }
    env
}

/// The console's routes, ready to merge into the API's router (which adds its request
/// span, metrics and body limit to them).
pub fn router(api: ApiState) -> Router<ApiState> {
    let state = ConsoleState {
        api,
        sessions: Arc::default(),
        throttle: Arc::default(),
        templates: Arc::new(templates()),
        counts: Arc::default(),
    };
    let role = |r: Role| middleware::from_fn_with_state((state.clone(), r), require);
    let signed_in = Router::new()
        .route(
            "/console/orgs",
            get(page::orgs).route_layer(role(Role::Viewer)),
        )
        .route(
            "/console/orgs/{id}",
            get(page::org).route_layer(role(Role::Viewer)),
        )
        .route(
            "/console/orgs/{id}/forecast",
            get(page::forecast).route_layer(role(Role::Viewer)),
        )
        .route(
            "/console/orgs/{id}/confirm",
            post(action::confirm).route_layer(role(Role::Operator)),
        )
        .route(
            "/console/orgs/{id}/execute",
            post(action::execute).route_layer(role(Role::Operator)),
        )
        .route(
            "/console/outbox",
            get(page::outbox).route_layer(role(Role::Viewer)),
        )
        .route(
            "/console/outbox/{id}/{op}",
            post(page::outbox_action).route_layer(role(Role::Operator)),
        )
        .route(
            "/console/clocks",
            get(page::clocks).route_layer(role(Role::Viewer)),
        )
        .route(
            "/console/clocks",
            post(page::create_clock).route_layer(role(Role::Admin)),
        )
        .route(
            "/console/clocks/{id}/advance",
            post(page::advance_clock).route_layer(role(Role::Admin)),
        )
        .route(
            "/console/sign-out",
            post(sign_out).route_layer(role(Role::Viewer)),
        );
    Router::new()
        .route("/console", get(|| async { redirect("/console/orgs") }))
        .route("/console/sign-in", get(sign_in_form).post(sign_in))
        .route("/console/console.css", get(stylesheet))
        .merge(signed_in)
        .layer(middleware::from_fn(headers))
        .with_state(state)
}

/// Security headers on every console response, and its server time (`Server-Timing`,
/// shown by a browser's developer tools and read by the console benchmark).
async fn headers(request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let mut response = next.run(request).await;
    let took = started.elapsed().as_secs_f64() * 1e3;
    let h = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&format!("app;dur={took:.2}")) {
        h.insert("server-timing", value);
    }
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !h.contains_key(CACHE_CONTROL) {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn stylesheet() -> Response {
    (
        [
            (CONTENT_TYPE, "text/css; charset=utf-8"),
            (CACHE_CONTROL, "max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

/// A 303 to `to`.
fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, to.to_owned())]).into_response()
}

/// Whether the request came over TLS (through a TLS-terminating proxy: `acctd serve`
/// itself speaks plain HTTP), so that cookies are marked `Secure`. A client that sends
/// the header falsely only makes its own cookies stricter.
fn over_tls(headers: &HeaderMap) -> bool {
    let forwarded = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default()
    };
    forwarded("x-forwarded-proto") == "https" || forwarded("forwarded").contains("proto=https")
}

/// Who is signed in, put into the request's extensions by [`require`].
#[derive(Clone, Debug)]
pub struct Signed {
    pub session: Session,
}

impl Signed {
    fn role(&self) -> Role {
        self.session.principal.role
    }
}

/// A form field read by the CSRF check: the body is read once, checked, and handed on.
#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

/// Middleware of every signed-in route: a live session (else the sign-in page for a
/// `GET`, 403 for anything else), the session's CSRF token in every `POST` form (403
/// without it), and the route's role (403 below it).
async fn require(
    State((state, role)): State<(ConsoleState, Role)>,
    request: Request,
    next: Next,
) -> Response {
    let session = session::read_cookie(request.headers(), session::COOKIE)
        .and_then(|id| state.sessions.get(id));
    let Some(session) = session else {
        if request.method() == Method::GET {
            return redirect("/console/sign-in");
        }
        return problem(&state, None, StatusCode::FORBIDDEN, "Sign in first", "");
    };
    let signed = Signed { session };
    let request = if request.method() == Method::POST {
        let (parts, body) = request.into_parts();
        let limit = state.api.settings.max_body_bytes;
        let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
            return problem(
                &state,
                Some(&signed),
                StatusCode::PAYLOAD_TOO_LARGE,
                "The form is too large",
                "",
            );
        };
        let csrf = serde_urlencoded_field(&bytes);
        if !session::same(&csrf, &signed.session.csrf) {
            return problem(
                &state,
                Some(&signed),
                StatusCode::FORBIDDEN,
                "Refused: the form's CSRF token is missing or wrong",
                "Reload the page and submit the form again.",
            );
        }
        Request::from_parts(parts, Body::from(bytes))
    } else {
        request
    };
    if signed.role() < role {
        return problem(
            &state,
            Some(&signed),
            StatusCode::FORBIDDEN,
            "Refused: your role may not do this",
            &format!(
                "This needs the `{}` role; you are signed in as `{}`.",
                role.as_str(),
                signed.role().as_str()
            ),
        );
    }
    let mut request = request;
    request.extensions_mut().insert(signed);
    next.run(request).await
}

fn serde_urlencoded_field(bytes: &Bytes) -> String {
    serde_urlencoded::from_bytes::<CsrfField>(bytes)
        .map(|f| f.csrf)
        .unwrap_or_default()
}

/// Renders a page inside the layout; `user` fills the navigation.
fn render(
    state: &ConsoleState,
    signed: Option<&Signed>,
    status: StatusCode,
    template: &str,
    mut context: Value,
) -> Response {
    if let (Some(signed), Some(map)) = (signed, context.as_object_mut()) {
        map.insert(
            "user".to_owned(),
            json!({
                "name": signed.session.principal.name,
                "role": signed.role().as_str(),
                "operator": signed.role() >= Role::Operator,
                "admin": signed.role() >= Role::Admin,
                "csrf": signed.session.csrf,
            }),
        );
        map.insert(
            "test_clocks".to_owned(),
            Value::Bool(state.api.settings.test_clocks),
        );
    }
    let rendered = state
        .templates
        .get_template(template)
        .and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(&context))));
    match rendered {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, template, "console: a template failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// A page that says what went wrong.
fn problem(
    state: &ConsoleState,
    signed: Option<&Signed>,
    status: StatusCode,
    title: &str,
    detail: &str,
) -> Response {
    render(
        state,
        signed,
        status,
        "problem.html",
        json!({ "title": title, "detail": detail, "status": status.as_u16() }),
    )
}

/// A failure of a console handler, shown as a page.
#[derive(Debug)]
pub struct Failure(ApiError);

impl<E: Into<ApiError>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.into())
    }
}

impl Failure {
    fn page(self, state: &ConsoleState, signed: &Signed) -> Response {
        let status = self.0.status();
        if let ApiError::Internal(e) = &self.0 {
            tracing::error!(error = %e, "console request failed");
        }
        let refusal = match &self.0 {
            ApiError::Refused(r) => json!({
                "why": r.why,
                "state": r.status.as_str(),
                "legal_moves": r.legal,
            }),
            _ => Value::Null,
        };
        let title = match &self.0 {
            ApiError::Refused(_) => "Refused by the rules".to_owned(),
            ApiError::Internal(_) => "Internal error".to_owned(),
            e => format!("Refused: {e}"),
        };
        let refused = match &self.0 {
            ApiError::Refused(r) => Some(crate::api::Refused(r.command)),
            _ => None,
        };
        let mut response = render(
            state,
            Some(signed),
            status,
            "problem.html",
            json!({
                "title": title,
                "detail": if refusal.is_null() { String::new() } else { self.0.to_string() },
                "status": status.as_u16(),
                "refusal": refusal,
            }),
        );
        if let Some(refused) = refused {
            response.extensions_mut().insert(refused);
        }
        response
    }
}

fn client_ip(request_extensions: &axum::http::Extensions) -> IpAddr {
    request_extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// `GET /console/sign-in`: the form, with a fresh CSRF cookie of its own.
async fn sign_in_form(State(state): State<ConsoleState>, request: Request) -> Response {
    sign_in_page(&state, request.headers(), StatusCode::OK, None)
}

fn sign_in_page(
    state: &ConsoleState,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let csrf = session::random_token();
    let mut response = render(
        state,
        None,
        status,
        "sign_in.html",
        json!({ "csrf": csrf, "error": error }),
    );
    let cookie = session::cookie(
        session::SIGN_IN_COOKIE,
        &csrf,
        std::time::Duration::from_hours(1),
        over_tls(headers),
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

#[derive(Deserialize)]
struct SignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
}

/// `POST /console/sign-in`: a known token starts a session; failures are throttled by
/// client address.
async fn sign_in(State(state): State<ConsoleState>, request: Request) -> Response {
    let ip = client_ip(request.extensions());
    let headers = request.headers().clone();
    let expected = session::read_cookie(&headers, session::SIGN_IN_COOKIE)
        .unwrap_or_default()
        .to_owned();
    let limit = state.api.settings.max_body_bytes;
    let form = match axum::body::to_bytes(request.into_body(), limit).await {
        Ok(bytes) => serde_urlencoded::from_bytes::<SignInForm>(&bytes).ok(),
        Err(_) => None,
    };
    let Some(form) = form else {
        return problem(&state, None, StatusCode::BAD_REQUEST, "Unreadable form", "");
    };
    if expected.is_empty() || !session::same(&form.csrf, &expected) {
        return problem(
            &state,
            None,
            StatusCode::FORBIDDEN,
            "Refused: the form's CSRF token is missing or wrong",
            "Reload the sign-in page and try again.",
        );
    }
    if let Some(wait) = state.throttle.wait(ip) {
        let mut response = sign_in_page(
            &state,
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            Some(&format!(
                "Too many failed sign-ins from your address; try again in {} s.",
                wait.as_secs().max(1)
            )),
        );
        if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            response.headers_mut().insert("retry-after", v);
        }
        return response;
    }
    let Some(principal) = state.api.tokens.authenticate(form.token.trim()) else {
        state.throttle.failed(ip);
        tracing::info!(%ip, "console: failed sign-in");
        return sign_in_page(
            &state,
            &headers,
            StatusCode::UNAUTHORIZED,
            Some("That token is not known."),
        );
    };
    state.throttle.succeeded(ip);
    tracing::info!(actor = %principal.name, role = principal.role.as_str(), "console: signed in");
    let id = state.sessions.start(principal);
    let secure = over_tls(&headers);
    let mut response = redirect("/console/orgs");
    for cookie in [
        session::cookie(session::COOKIE, &id, session::LIFETIME, secure),
        session::cookie(
            session::SIGN_IN_COOKIE,
            "",
            std::time::Duration::ZERO,
            secure,
        ),
    ] {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(SET_COOKIE, value);
        }
    }
    response
}

/// `POST /console/sign-out`: ends the session and clears the cookie.
async fn sign_out(State(state): State<ConsoleState>, headers: HeaderMap) -> Response {
    if let Some(id) = session::read_cookie(&headers, session::COOKIE) {
        state.sessions.end(id);
    }
    let mut response = redirect("/console/sign-in");
    let cookie = session::cookie(
        session::COOKIE,
        "",
        std::time::Duration::ZERO,
        over_tls(&headers),
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

/// A form body (`application/x-www-form-urlencoded`); unknown fields are ignored (the
/// CSRF token among them).
pub struct FormBody<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for FormBody<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        serde_urlencoded::from_bytes(&bytes)
            .map(FormBody)
            .map_err(|e| (StatusCode::BAD_REQUEST, format!("unreadable form: {e}")).into_response())
    }
}
