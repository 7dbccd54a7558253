//! [`ApiError`]: every failure of the API as `{"error": {"code", "message", "details"}}`
//! with its status. Client faults say what was wrong; anything else is an opaque 500 whose
//! cause chain is logged here, once.

use axum::http::header::WWW_AUTHENTICATE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::config::Role;
use crate::domain::plan::FieldError;
use crate::domain::price::PriceError;
use crate::domain::{LockReason, Refusal};
use crate::engine;
use crate::storage;

/// The body of every error answer: `{"error": {"code", "message", "details"}}` (the
/// `OpenAPI` document's `Error` schema).
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    /// What the code needs: the field, the roles, the refusal's state and legal moves, a
    /// limit.
    #[schema(value_type = Object)]
    pub details: Value,
}

/// The stable, machine-readable error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Invalid,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    IllegalTransition,
    Conflict,
    PayloadTooLarge,
    UriTooLong,
    UnsupportedMediaType,
    Unavailable,
    Internal,
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed: not JSON, a wrong type, an unknown field, a bad query.
    #[error("{0}")]
    BadRequest(String),
    /// A field's value is not acceptable.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("the `{}` role is required; this token has `{}`", required.as_str(), role.as_str())]
    Forbidden { role: Role, required: Role },
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A move the rules refuse: names the current state and the legal moves.
    #[error(transparent)]
    Refused(Refusal),
    /// The thing exists already, or changed concurrently.
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the URI is longer than {limit} bytes")]
    UriTooLong { limit: usize },
    #[error("send the body as Content-Type: application/json")]
    UnsupportedMediaType,
    /// Not ready to serve (readiness probe).
    #[error("{message}")]
    Unavailable { message: String, details: Value },
    /// Anything else: logged with its cause chain, answered with an opaque 500.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        ApiError::Internal(Box::new(e))
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Invalid { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Refused(_) | ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable, machine-readable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::BadRequest(_) => ErrorCode::BadRequest,
            ApiError::Invalid { .. } => ErrorCode::Invalid,
            ApiError::Unauthorized => ErrorCode::Unauthorized,
            ApiError::Forbidden { .. } => ErrorCode::Forbidden,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            ApiError::Refused(_) => ErrorCode::IllegalTransition,
            ApiError::Conflict(_) => ErrorCode::Conflict,
            ApiError::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            ApiError::UriTooLong { .. } => ErrorCode::UriTooLong,
            ApiError::UnsupportedMediaType => ErrorCode::UnsupportedMediaType,
            ApiError::Unavailable { .. } => ErrorCode::Unavailable,
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }

    fn details(&self) -> Value {
        match self {
            ApiError::Invalid { field, .. } => json!({ "field": field }),
            ApiError::Forbidden { role, required } => {
                json!({ "role": role.as_str(), "required_role": required.as_str() })
            }
            ApiError::Refused(r) => json!({
                "command": r.command,
                "state": r.status.as_str(),
                "lock_reasons": r.reasons.iter().map(LockReason::as_str).collect::<Vec<_>>(),
                "why": r.why,
                "legal_moves": r.legal,
            }),
            ApiError::PayloadTooLarge { limit } | ApiError::UriTooLong { limit } => {
                json!({ "limit_bytes": limit })
            }
            ApiError::Unavailable { details, .. } => details.clone(),
            _ => json!({}),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(e) = &self {
            let mut chain = vec![e.to_string()];
            let mut source = e.source();
            while let Some(cause) = source {
                chain.push(cause.to_string());
                source = cause.source();
            }
            tracing::error!(error = %e, error.cause_chain = ?chain, "request failed");
        }
        let status = self.status();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
                details: self.details(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let ApiError::Refused(refusal) = &self {
            response
                .extensions_mut()
                .insert(super::Refused(refusal.command));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"acctd\""),
            );
        }
        response
    }
}

impl From<engine::Error> for ApiError {
    fn from(e: engine::Error) -> Self {
        match e {
            engine::Error::UnknownOrg(id) => ApiError::NotFound(format!("unknown org `{id}`")),
            engine::Error::UnknownInvoice(id) => {
                ApiError::NotFound(format!("unknown invoice {id}"))
            }
            engine::Error::Exists(id) => ApiError::Conflict(format!("org `{id}` exists already")),
            engine::Error::Settled(message) => ApiError::Conflict(message),
            engine::Error::Invalid { field, message } => ApiError::invalid(field, message),
            engine::Error::Refused(refusal) => ApiError::Refused(refusal),
            engine::Error::Price(e) => {
                let field = match &e {
                    PriceError::UnknownPlan(..) => "plan",
                    PriceError::Enterprise { .. } | PriceError::UnknownTier(..) => "tier",
                    PriceError::UnknownAddon(..) => "addon",
                };
                ApiError::invalid(field, crate::config::price_error_message(&e))
            }
            engine::Error::Storage(e) => e.into(),
        }
    }
}

/// A command the table cannot build: an unknown name is a 404, a field a 400 naming it.
impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        match e.field() {
            Some(field) => ApiError::invalid(field, e.to_string()),
            None => ApiError::NotFound(e.to_string()),
        }
    }
}

impl From<storage::Error> for ApiError {
    fn from(e: storage::Error) -> Self {
        match e {
            stale @ storage::Error::Stale { .. } => ApiError::Conflict(format!(
                "{stale}; the engine retried and gave up, try again"
            )),
            other => ApiError::internal(other),
        }
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        ApiError::internal(e)
    }
}
