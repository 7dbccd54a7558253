//! The admin HTTP API (axum), served by `acctd serve`: JSON in and out, bearer tokens with
//! roles, every write through the [`Engine`] with the token's name as the actor.
//!
//! **API boundary:** the routes of [`endpoints`], the DTOs of [`dto`] and the error shape
//! of [`error::ApiError`] (`{"error": {"code", "message", "details"}}`).
//!
//! **Architecture Invariant:** the API knows HTTP and serde, not the rules: a handler
//! parses and checks its input, calls one engine method through the engine that owns
//! the org ([`Engine::for_org`]: orgs on a test clock live on its time) and converts the
//! result. The route table is the single source of the router, the role checks and the
//! `OpenAPI` document.

pub mod auth;
pub mod client;
pub mod dto;
pub mod error;
pub mod extract;
pub mod openapi;

mod admin;
mod billing;
mod clocks;
mod health;
mod orgs;
mod usage;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::handler::Handler;
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{Extension, Router};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{self, Role};
use crate::domain::plan::Kind;
use crate::engine::Engine;
pub use auth::{Principal, Tokens};
pub use error::ApiError;
use extract::BodyLimit;

/// What every handler shares.
#[derive(Clone)]
pub struct ApiState {
    pub engine: Engine,
    pub tokens: Arc<Tokens>,
    pub settings: Arc<config::Api>,
}

impl ApiState {
    pub fn new(engine: Engine, settings: config::Api, tokens: Tokens) -> Self {
        Self {
            engine,
            tokens: Arc::new(tokens),
            settings: Arc::new(settings),
        }
    }
}

/// The method as a metrics label: one of HTTP's standard methods, or `other`.
fn method_label(method: &Method) -> &'static str {
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::HEAD,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    STANDARD
        .iter()
        .find(|m| *m == method)
        .map_or("other", Method::as_str)
}

/// One route as documented: method, path, the role it needs (`None`: no token) and what
/// it does.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub method: Method,
    pub path: &'static str,
    pub role: Option<Role>,
    pub summary: &'static str,
    /// The status of a success.
    pub status: u16,
    pub content_type: &'static str,
    /// Query parameters it reads.
    pub query: &'static [&'static str],
    /// An example request body, if it takes one.
    pub example: Option<fn() -> Value>,
    /// The request body's type, and whether the body may be left out.
    pub request: Option<(Body, bool)>,
    /// The success response body's type (JSON routes).
    pub response: Option<Body>,
    /// The kinds of command it runs (rows of [`crate::domain::plan::KINDS`]): the remote
    /// CLI finds a command's route by this. `{op}` in the path is the command's name, any
    /// other `{field}` but `{id}` one of its fields.
    pub runs: Option<fn(&Kind) -> bool>,
}

/// A body's type as the `OpenAPI` document names and describes it (utoipa's `ToSchema`).
#[derive(Clone, Copy, Debug)]
pub struct Body {
    pub name: fn() -> std::borrow::Cow<'static, str>,
    /// Adds the type's schema and every schema it refers to.
    pub schemas: fn(
        &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ),
}

impl Body {
    fn of<T: utoipa::ToSchema>() -> Self {
        Self {
            name: T::name,
            schemas: |schemas| {
                schemas.push((T::name().into_owned(), T::schema()));
                T::schemas(schemas);
            },
        }
    }
}

struct Route {
    doc: Endpoint,
    handler: MethodRouter<ApiState>,
}

fn route<H, T>(
    method: &Method,
    path: &'static str,
    role: Option<Role>,
    summary: &'static str,
    handler: H,
) -> Route
where
    H: Handler<T, ApiState>,
    T: 'static,
{
    let filter = match *method {
        Method::POST => MethodFilter::POST,
        Method::DELETE => MethodFilter::DELETE,
        _ => MethodFilter::GET,
    };
    Route {
        doc: Endpoint {
            method: method.clone(),
            path,
            role,
            summary,
            status: 200,
            content_type: "application/json",
            query: &[],
            example: None,
            request: None,
            response: None,
            runs: None,
        },
        handler: on(filter, handler),
    }
}

impl Route {
    fn created(mut self) -> Self {
        self.doc.status = 201;
        self
    }

    fn text(mut self) -> Self {
        self.doc.content_type = "text/plain";
        self
    }

    fn query(mut self, names: &'static [&'static str]) -> Self {
        self.doc.query = names;
        self
    }

    fn example(mut self, example: fn() -> Value) -> Self {
        self.doc.example = Some(example);
        self
    }

    /// The route runs the commands whose kind `runs` accepts.
    fn runs(mut self, runs: fn(&Kind) -> bool) -> Self {
        self.doc.runs = Some(runs);
        self
    }

    /// The route reads a JSON body of type `T`.
    fn takes<T: utoipa::ToSchema>(mut self) -> Self {
        self.doc.request = Some((Body::of::<T>(), true));
        self
    }

    /// The route reads a JSON body of type `T`, or none (every field has a default).
    fn may_take<T: utoipa::ToSchema>(mut self) -> Self {
        self.doc.request = Some((Body::of::<T>(), false));
        self
    }

    /// The route answers a JSON body of type `T`.
    fn returns<T: utoipa::ToSchema>(mut self) -> Self {
        self.doc.response = Some(Body::of::<T>());
        self
    }
}

fn example<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or_default()
}

/// The route table: the router, the role checks and the `OpenAPI` document all come from
/// it.
fn table(test_clocks: bool) -> Vec<Route> {
    use dto::{
        AddonRequest, AdminRequest, AdvanceRequest, CancelRequest, CreateClockRequest,
        PaymentOutcome, PaymentRequest, PlanRequest, SignupRequest, UsageItem, UsageRequest,
    };
    const GET: &Method = &Method::GET;
    const POST: &Method = &Method::POST;
    const DELETE: &Method = &Method::DELETE;
    let viewer = Some(Role::Viewer);
    let operator = Some(Role::Operator);
    let admin = Some(Role::Admin);
    let mut routes = vec![
        route(GET, "/healthz", None, "Liveness: the process answers", health::healthz).returns::<dto::Health>(),
        route(GET, "/readyz", None, "Readiness: database reachable, migrations applied", health::readyz).returns::<dto::Health>(),
        route(GET, "/metrics", viewer, "Prometheus metrics", health::metrics).text(),
        route(GET, "/openapi.json", viewer, "This document", openapi::serve),
        route(GET, "/v1/stats", viewer, "Counts by state and lock reason, backlogs", health::stats).returns::<dto::StatsResponse>(),
        route(GET, "/v1/orgs", viewer, "List orgs by id, optionally by state and lock reason (keyset paging)", orgs::list)
            .returns::<dto::OrgList>()
            .query(&["state", "reason", "after", "limit"]),
        route(POST, "/v1/orgs", operator, "Sign an org up (a trial, or an imported subscriber)", orgs::signup)
            .takes::<SignupRequest>()
            .returns::<dto::CommandResponse>()
            .query(&["dry_run"])
            .created()
            .example(|| example(&SignupRequest {
                id: "acme".into(),
                plan: "basic".into(),
                tier: 20_000,
                admins: vec!["ops@acme.test".into()],
                payment_method: true,
                reason: Some("new customer".into()),
                ..SignupRequest::default()
            })),
        route(GET, "/v1/orgs/{id}", viewer, "An org: state, reasons, deadlines, entitlements, legal moves", orgs::show).returns::<dto::OrgDto>(),
        route(GET, "/v1/orgs/{id}/entitlements", viewer, "What an org may use, with its state and deadlines", orgs::entitlements).returns::<dto::EntitlementsResponse>(),
        route(GET, "/v1/orgs/{id}/transitions", viewer, "The org's audit trail, oldest first", orgs::transitions)
            .returns::<dto::TransitionList>()
            .query(&["limit"]),
        route(GET, "/v1/orgs/{id}/invoices", viewer, "The org's invoices with their lines", orgs::invoices).returns::<dto::InvoiceList>(),
        route(GET, "/v1/orgs/{id}/forecast", viewer, "What happens to the org up to a horizon (default 60 days) if nothing else does; writes nothing", orgs::forecast)
            .returns::<dto::ForecastResponse>()
            .query(&["days", "until", "payments"]),
        route(POST, "/v1/usage", operator, "Report usage totals; a result per item", usage::report)
            .takes::<UsageRequest>()
            .returns::<dto::UsageResponse>()
            .query(&["dry_run"])
            .example(|| example(&UsageRequest {
                reports: vec![UsageItem {
                    org: "acme".into(),
                    project: "web".into(),
                    period: Some("2026-03".into()),
                    mau: 17_000,
                    data_points: 1_000_000,
                    correction: false,
                }],
            })),
        route(POST, "/v1/invoices/{id}/payment", operator, "Record the payment provider's outcome for an invoice", billing::payment)
            .takes::<PaymentRequest>()
            .returns::<dto::CommandResponse>()
            .query(&["dry_run"])
            .example(|| example(&PaymentRequest { outcome: PaymentOutcome::Failed, reason: Some("provider webhook".into()) })),
        route(POST, "/v1/orgs/{id}/payment-method", operator, "A card was added", orgs::payment_method)
            .runs(|k| k.name == "add_payment_method")
            .may_take::<dto::ReasonBody>()
            .returns::<dto::CommandResponse>()
            .query(&["dry_run"]),
        route(POST, "/v1/orgs/{id}/plan", operator, "Change the tier: upgrade if higher, downgrade if lower", billing::plan)
            .runs(|k| matches!(k.name, "upgrade" | "downgrade"))
            .takes::<PlanRequest>()
            .returns::<dto::CommandResponse>()
            .query(&["dry_run"])
            .example(|| example(&PlanRequest { tier: 30_000, reason: None })),
        route(DELETE, "/v1/orgs/{id}/plan/scheduled", operator, "Cancel a scheduled downgrade", billing::cancel_downgrade)
            .runs(|k| k.name == "cancel_downgrade")
            .may_take::<dto::ReasonBody>()
            .returns::<dto::CommandResponse>()
            .query(&["dry_run"]),
        route(POST, "/v1/orgs/{id}/addons", operator, "Include an add-on", billing::add_addon)
            .runs(|k| k.name == "add_addon")
            .takes::<AddonRequest>()
            .returns::<dto::CommandResponse>()
            .query(&["dry_run"])
            .example(|| example(&AddonRequest { addon: "journeys".into(), reason: None })),
        route(DELETE, "/v1/orgs/{id}/addons/{addon}", operator, "Remove an add-on (at the next 1st unless in trial)", billing::remove_addon)
            .runs(|k| k.name == "remove_addon")
            .may_take::<dto::ReasonBody>()
            .returns::<dto::CommandResponse>()
            .query(&["dry_run"]),
        route(POST, "/v1/orgs/{id}/addons/{addon}/keep", operator, "Cancel a scheduled add-on removal", billing::keep_addon)
            .runs(|k| k.name == "cancel_addon_removal")
            .may_take::<dto::ReasonBody>()
            .returns::<dto::CommandResponse>()
            .query(&["dry_run"]),
        route(POST, "/v1/orgs/{id}/cancel", admin, "Cancel an org: confirm with exactly DELETE and give a reason", admin::cancel)
            .runs(|k| k.name == "cancel")
            .may_take::<CancelRequest>()
            .returns::<dto::CommandResponse>()
            .query(&["dry_run"])
            .example(|| example(&CancelRequest { confirm: Some("DELETE".into()), reason: Some("customer asked".into()) })),
        route(POST, "/v1/orgs/{id}/admin/{op}", admin, "A manual operation: lock, unlock, extend_trial, extend_grace, postpone_cancel, end_trial, mark_paid, transition", admin::operation)
            .runs(Kind::manual)
            .may_take::<AdminRequest>()
            .returns::<dto::CommandResponse>()
            .query(&["dry_run"])
            .example(|| example(&AdminRequest { reason: Some("chargeback".into()), ..AdminRequest::default() })),
    ];
    if test_clocks {
        routes.extend([
            route(
                POST,
                "/v1/test-clocks",
                admin,
                "Create a test clock frozen at an instant",
                clocks::create,
            )
            .takes::<CreateClockRequest>()
            .returns::<dto::ClockDto>()
            .created()
            .example(|| {
                example(&CreateClockRequest {
                    id: "qa-1".into(),
                    frozen_at: chrono::DateTime::UNIX_EPOCH,
                })
            }),
            route(
                GET,
                "/v1/test-clocks/{id}",
                viewer,
                "A test clock",
                clocks::show,
            )
            .returns::<dto::ClockDto>(),
            route(
                POST,
                "/v1/test-clocks/{id}/advance",
                admin,
                "Move a test clock forward and run its orgs up to it",
                clocks::advance,
            )
            .takes::<AdvanceRequest>()
            .returns::<dto::AdvanceResponse>()
            .example(|| {
                example(&AdvanceRequest {
                    to: chrono::DateTime::UNIX_EPOCH,
                })
            }),
            route(
                DELETE,
                "/v1/test-clocks/{id}",
                admin,
                "Delete a test clock and its orgs",
                clocks::delete,
            )
            .returns::<dto::DeletedClock>(),
        ]);
    }
    routes
}

/// The documented routes: everything the router serves.
pub fn endpoints(test_clocks: bool) -> Vec<Endpoint> {
    table(test_clocks).into_iter().map(|r| r.doc).collect()
}

/// The router, with role checks per route, the body limit, and a span, a metric and a
/// panic guard per request.
pub fn router(state: ApiState) -> Router {
    let limit = state.settings.max_body_bytes;
    let mut router = Router::new();
    for Route { doc, handler } in table(state.settings.test_clocks) {
        let handler = match doc.role {
            Some(role) => handler.route_layer(middleware::from_fn_with_state(
                (state.clone(), role),
                auth::require,
            )),
            None => handler,
        };
        router = router.route(doc.path, handler);
    }
    router
        .merge(crate::console::router(state.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(check_uri))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(limit))
        .layer(Extension(BodyLimit(limit)))
        .with_state(state)
}

/// The longest URI (path and query) served: a longer one is a 414 with the usual JSON
/// error. hyper itself answers URIs over 64 KiB with a bare 414 before any of this runs.
pub const MAX_URI_BYTES: usize = 8_192;

/// Refuses a URI no handler should see, before routing and authentication: one longer
/// than [`MAX_URI_BYTES`], or with a NUL character in its path or query.
async fn check_uri(request: Request, next: Next) -> Response {
    let uri = request.uri();
    let length = uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    if length > MAX_URI_BYTES {
        return ApiError::UriTooLong {
            limit: MAX_URI_BYTES,
        }
        .into_response();
    }
    if let Err(e) = extract::refuse_nul_in_uri(uri) {
        return e.into_response();
    }
    next.run(request).await
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".to_owned())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// A span per request, a metric per response, and a 500 instead of a dropped connection
/// when a handler panics (the handler runs as its own task).
async fn observe(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let span = tracing::info_span!(
        "request",
        method = %method,
        route = route.as_deref().unwrap_or("unmatched")
    );
    let started = Instant::now();
    let response = match tokio::spawn(next.run(request).instrument(span.clone())).await {
        Ok(response) => response,
        Err(e) => {
            let _entered = span.enter();
            ApiError::internal(HandlerFailed(e.to_string())).into_response()
        }
    };
    let status = response.status().as_u16();
    let metrics = state.engine.metrics();
    metrics.http_request(
        method_label(&method),
        route.as_deref(),
        status,
        started.elapsed(),
    );
    if let Some(Refused(command)) = response.extensions().get::<Refused>() {
        metrics.refused(command);
    }
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    if method == Method::GET && status < 400 {
        tracing::debug!(parent: &span, status, elapsed_ms, "request");
    } else {
        tracing::info!(parent: &span, status, elapsed_ms, "request");
    }
    response
}

#[derive(Debug, thiserror::Error)]
#[error("handler failed: {0}")]
struct HandlerFailed(String);

/// A response's mark that the rules refused a command (`ApiError::Refused`, the console's
/// refusal page), for the refusals counter of `/metrics`.
#[derive(Clone, Copy, Debug)]
pub struct Refused(pub &'static str);

/// Serves `router` on `listener` until `shutdown` is cancelled; requests in flight are
/// answered first.
///
/// # Errors
/// The listener failed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    // The peer's address: the console throttles failed sign-ins by it.
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await
}
