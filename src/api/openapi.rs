//! `GET /openapi.json`: an `OpenAPI` 3.1 document built from the route table
//! ([`super::endpoints`]), the same table the router is built from, so every served route
//! is documented with its method, path parameters, role and an example body. Bodies are
//! described by examples serialized from the request DTOs, not by JSON Schemas (no
//! schema generator is linked in).

use axum::extract::State;
use axum::Json;
use serde_json::{json, Map, Value};

use super::{endpoints, ApiState, Endpoint};

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
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
        })
    };
    let mut responses = Map::new();
    responses.insert(
        e.status.to_string(),
        json!({ "description": e.summary, "content": { e.content_type: {} } }),
    );
    if e.example.is_some() || e.method != axum::http::Method::GET {
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
    if let Some(example) = e.example {
        op["requestBody"] = json!({
            "required": true,
            "content": { "application/json": { "example": example() } }
        });
    }
    op
}

/// The document for a router with (or without) the test-clock routes.
pub fn document(test_clocks: bool) -> Value {
    let mut paths = Map::new();
    for e in endpoints(test_clocks) {
        let item = paths.entry(e.path.to_owned()).or_insert_with(|| json!({}));
        item[e.method.as_str().to_lowercase()] = operation(&e);
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
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message", "details"],
                            "properties": {
                                "code": { "type": "string", "enum": ["bad_request", "invalid", "unauthorized", "forbidden", "not_found", "method_not_allowed", "illegal_transition", "conflict", "payload_too_large", "unsupported_media_type", "unavailable", "internal"] },
                                "message": { "type": "string" },
                                "details": { "type": "object" }
                            }
                        }
                    }
                }
            }
        }
    })
}

/// `GET /openapi.json` (viewer).
pub(super) async fn serve(State(state): State<ApiState>) -> Json<Value> {
    Json(document(state.settings.test_clocks))
}
