//! Extractors whose rejections are [`ApiError`]s, so that a malformed body, query or path
//! gets the same JSON error shape as every other failure.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::ApiError;

/// A JSON body, required. The size limit is `api.max_body_bytes` (413 above it); a
/// `Content-Type` other than JSON is refused (415); a missing one is taken as JSON.
pub struct JsonBody<T>(pub T);

/// A JSON body that may be absent (empty): then `T::default()`.
pub struct OptionalJsonBody<T>(pub T);

/// A required JSON body of items that the handler checks one by one (a usage batch): a
/// NUL character is left to the handler, which refuses only the item that has it.
pub struct JsonBatch<T>(pub T);

async fn read_body<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    if let Some(content_type) = request.headers().get(CONTENT_TYPE) {
        let json = content_type.to_str().is_ok_and(|ct| {
            let mime = ct.split(';').next().unwrap_or_default().trim();
            mime.eq_ignore_ascii_case("application/json")
                || mime.to_ascii_lowercase().ends_with("+json")
        });
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
    }
    let limit = request
        .extensions()
        .get::<BodyLimit>()
        .map_or(usize::MAX, |l| l.0);
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit }
            } else {
                ApiError::BadRequest(format!("cannot read the request body: {rejection}"))
            }
        })
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

/// Refuses a body with a NUL character in any string or key, naming where (`admins[0]`):
/// no column stores one (`PostgreSQL` refuses it outright), so it is refused up front on
/// every database alike.
fn refuse_nul(bytes: &[u8]) -> Result<(), ApiError> {
    // JSON text can only carry a NUL as the escape `\u0000`: without it there is none,
    // and the body is not parsed a second time.
    if !bytes.windows(6).any(|w| w == b"\\u0000") {
        return Ok(());
    }
    // A body that does not parse is reported by `parse`.
    let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
        return Ok(());
    };
    match nul_at(&value, "") {
        Some(field) => Err(ApiError::invalid(field, "must not contain a NUL character")),
        None => Ok(()),
    }
}

/// The path of the first string or key in `value` that contains a NUL character.
fn nul_at(value: &Value, at: &str) -> Option<String> {
    match value {
        Value::String(s) => s.contains('\0').then(|| at.to_owned()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_at(item, &format!("{at}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            let here = if at.is_empty() {
                key.clone()
            } else {
                format!("{at}.{key}")
            };
            if key.contains('\0') {
                Some(here)
            } else {
                nul_at(item, &here)
            }
        }),
        _ => None,
    }
}

/// Refuses a request whose path or query has a NUL character once decoded (`%00`), for
/// the same reason as a body's.
///
/// # Errors
/// [`ApiError::Invalid`] naming `path` or `query`.
pub fn refuse_nul_in_uri(uri: &axum::http::Uri) -> Result<(), ApiError> {
    // Percent-decoding yields a NUL only from `%00` (a raw NUL is not a valid URI byte).
    if uri.path().contains("%00") {
        return Err(ApiError::invalid(
            "path",
            "must not contain a NUL character",
        ));
    }
    if uri.query().is_some_and(|q| q.contains("%00")) {
        return Err(ApiError::invalid(
            "query",
            "must not contain a NUL character",
        ));
    }
    Ok(())
}

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::BadRequest("a JSON body is required".to_owned()));
        }
        let body = parse(&bytes)?;
        refuse_nul(&bytes)?;
        Ok(JsonBody(body))
    }
}

impl<S, T> FromRequest<S> for JsonBatch<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::BadRequest("a JSON body is required".to_owned()));
        }
        parse(&bytes).map(JsonBatch)
    }
}

impl<S, T> FromRequest<S> for OptionalJsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(T::default()));
        }
        let body = parse(&bytes)?;
        refuse_nul(&bytes)?;
        Ok(OptionalJsonBody(body))
    }
}

/// The body limit in force, put into each request's extensions by the router so that a
/// 413 can say what the limit is.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

/// Query parameters.
pub struct Params<T>(pub T);

impl<S, T> FromRequestParts<S> for Params<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| Params(q))
            .map_err(|e| ApiError::BadRequest(format!("invalid query: {}", e.body_text())))
    }
}

/// Path parameters.
pub struct PathParams<T>(pub T);

impl<S, T> FromRequestParts<S> for PathParams<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(p)| PathParams(p))
            .map_err(|e| ApiError::BadRequest(format!("invalid path: {}", e.body_text())))
    }
}

/// `?dry_run=true` on a route that changes orgs: preview the call (see
/// [`crate::engine::Engine::preview`]). Other query keys are left to the handler.
pub struct DryRun(pub bool);

impl<S: Send + Sync> FromRequestParts<S> for DryRun {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        let mut dry_run = false;
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if key == "dry_run" {
                dry_run = match value {
                    "true" | "1" | "" => true,
                    "false" | "0" => false,
                    other => {
                        return Err(ApiError::invalid(
                            "dry_run",
                            format!("`{other}` is not a boolean (true or false)"),
                        ))
                    }
                };
            }
        }
        Ok(DryRun(dry_run))
    }
}
