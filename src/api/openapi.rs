//! `GET /openapi.json`: an `OpenAPI` 3.1 document built from the route table
//! ([`super::endpoints`]), the same table the router and the role checks are built from,
//! so every served route is documented with its method, parameters, role, error
//! responses and an example body. Every JSON body, asked or answered, has the JSON Schema
//! utoipa derives from its DTO type (`#[derive(utoipa::ToSchema)]` in `dto/` and
//! `error.rs`), under `components.schemas`.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Map, Value};

use super::error::ErrorBody;
use super::{endpoints, ApiState, Endpoint};

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

fn operation(e: &Endpoint) -> Value {
    let mut parameters: Vec<Value> = path_params(e.path)
        .into_iter()
        .map(|name| {
            let schema = if name == "id" && e.path.starts_with("/v1/invoices") {
                json!({ "type": "integer" })
            } else {
                json!({ "type": "string" })
            };
            json!({ "name": name, "in": "path", "required": true, "schema": schema })
        })
        .collect();
    parameters.extend(e.query.iter().map(|name| {
        json!({ "name": name, "in": "query", "required": false, "schema": { "type": "string" } })
    }));
    let error = |description: &str| {
        json!({
            "description": description,
            "content": { "application/json": { "schema": schema_ref("Error") } }
        })
    };
    let mut responses = Map::new();
    let answer = match &e.response {
        Some(body) => json!({ "schema": schema_ref(&(body.name)()) }),
        None if e.content_type == "application/json" => json!({ "schema": { "type": "object" } }),
        None => json!({ "schema": { "type": "string" } }),
    };
    responses.insert(
        e.status.to_string(),
        json!({ "description": e.summary, "content": { e.content_type: answer } }),
    );
    if e.request.is_some() || e.method != axum::http::Method::GET {
        responses.insert("400".into(), error("malformed or invalid input"));
        responses.insert(
            "409".into(),
            error("a move the rules refuse (names the legal moves), or a conflict"),
        );
        responses.insert("413".into(), error("request body too large"));
    }
    if e.role.is_some() {
        responses.insert("401".into(), error("missing or unknown bearer token"));
        responses.insert("403".into(), error("the token's role is insufficient"));
    }
    if !path_params(e.path).is_empty() {
        responses.insert(
            "404".into(),
            error("unknown org, invoice, test clock or operation"),
        );
    }
    let mut op = json!({
        "summary": e.summary,
        "operationId": format!("{}_{}", e.method.as_str().to_lowercase(), e.path.trim_start_matches('/').replace(['/', '-'], "_").replace(['{', '}'], "")),
        "tags": [e.path.split('/').find(|s| !s.is_empty() && *s != "v1").unwrap_or("api")],
        "parameters": parameters,
        "responses": responses,
    });
    match e.role {
        Some(role) => {
            op["security"] = json!([{ "bearer": [] }]);
            op["x-acctd-role"] = json!(role.as_str());
        }
        None => op["security"] = json!([]),
    }
    if let Some((body, required)) = &e.request {
        let mut content = json!({ "schema": schema_ref(&(body.name)()) });
        if let Some(example) = e.example {
            content["example"] = example();
        }
        op["requestBody"] = json!({
            "required": required,
            "content": { "application/json": content }
        });
    }
    op
}

/// Every schema the routes' bodies name, with those they refer to, and `Error`.
fn schemas(routes: &[Endpoint]) -> Map<String, Value> {
    use utoipa::{PartialSchema as _, ToSchema as _};
    let mut found = vec![(ErrorBody::name().into_owned(), ErrorBody::schema())];
    ErrorBody::schemas(&mut found);
    for e in routes {
        for body in e.request.iter().map(|(b, _)| b).chain(&e.response) {
            (body.schemas)(&mut found);
        }
    }
    found
        .into_iter()
        .map(|(name, schema)| (name, serde_json::to_value(schema).unwrap_or_default()))
        .collect()
}

/// The document for a router with (or without) the test-clock routes.
pub fn document(test_clocks: bool) -> Value {
    let routes = endpoints(test_clocks);
    let mut paths = Map::new();
    for e in &routes {
        let item = paths.entry(e.path.to_owned()).or_insert_with(|| json!({}));
        item[e.method.as_str().to_lowercase()] = operation(e);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "acctd admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Account lifecycle: orgs, usage, payments, plan changes, manual operations (SPEC sections 3, 8, 10). Roles: viewer (GET) < operator (usage, payments, plan changes, payment methods, signup) < admin (manual operations, cancel, test clocks).",
        },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": schemas(&routes),
        }
    })
}

/// `GET /openapi.json` (viewer).
pub(super) async fn serve(State(state): State<ApiState>) -> Json<Value> {
    Json(document(state.settings.test_clocks))
}
