//! Bearer tokens: stored as SHA-256 hashes, compared in constant time, each with a role.
//!
//! A request's token is hashed and compared with every known hash (no early exit), so
//! neither the token nor which entry matched shows in the timing. Plain-text tokens exist
//! only in the environment variable [`ENV_VAR`] and are hashed as soon as it is read;
//! nothing here logs or stores a token.

use std::fmt::Write as _;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::ApiState;
use crate::config::{parse_sha256, valid_name, ApiToken, Role};
use crate::engine::Actor;

/// Plain-text tokens from the environment: `name:role:token,...`.
pub const ENV_VAR: &str = "ACCTD_API_TOKENS";

/// Tokens from the environment must be at least this long.
pub const MIN_TOKEN_LEN: usize = 16;

/// Who made a request: the token's name (the actor in the audit trail) and its role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

impl Principal {
    /// The actor of a write, with the reason the request gave.
    pub fn actor(&self, reason: Option<String>) -> Actor {
        Actor {
            name: self.name.clone(),
            reason,
        }
    }
}

#[derive(Clone)]
struct Entry {
    name: String,
    role: Role,
    hash: [u8; 32],
}

/// The known tokens.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| (&e.name, e.role)))
            .finish()
    }
}

/// A problem with the configured tokens. Messages never contain a token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("environment variable {ENV_VAR}: entry {index}: {message}")]
    Env { index: usize, message: String },
    #[error("api.tokens: {0}")]
    Config(String),
    #[error("token name `{0}` is configured twice")]
    Duplicate(String),
}

/// Lowercase hex SHA-256 of a token, the form `api.tokens[].token_sha256` takes.
pub fn sha256_hex(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

fn parse_role(s: &str) -> Option<Role> {
    [Role::Viewer, Role::Operator, Role::Admin]
        .into_iter()
        .find(|r| r.as_str() == s)
}

impl Tokens {
    /// The configured hashes plus the plain-text tokens of `env` (the value of
    /// [`ENV_VAR`], if set).
    ///
    /// # Errors
    /// A malformed entry or hash, or a name used twice.
    pub fn load(config: &[ApiToken], env: Option<&str>) -> Result<Self, TokenError> {
        let mut entries = Vec::new();
        for token in config {
            let hash = parse_sha256(&token.token_sha256).ok_or_else(|| {
                TokenError::Config(format!(
                    "token `{}`: token_sha256 must be 64 hex digits",
                    token.name
                ))
            })?;
            entries.push(Entry {
                name: token.name.clone(),
                role: token.role,
                hash,
            });
        }
        let env = env.unwrap_or_default();
        for (index, item) in env.split(',').map(str::trim).enumerate() {
            if item.is_empty() {
                continue;
            }
            let fail = |message: &str| TokenError::Env {
                index: index + 1,
                message: message.to_owned(),
            };
            let mut parts = item.splitn(3, ':');
            let (Some(name), Some(role), Some(token)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(fail("expected name:role:token"));
            };
            if !valid_name(name) {
                return Err(fail(
                    "the name must be 1 to 64 characters without `:`, `,` or spaces",
                ));
            }
            let role = parse_role(role)
                .ok_or_else(|| fail("the role must be viewer, operator or admin"))?;
            if token.len() < MIN_TOKEN_LEN {
                return Err(fail(&format!(
                    "the token must be at least {MIN_TOKEN_LEN} characters"
                )));
            }
            entries.push(Entry {
                name: name.to_owned(),
                role,
                hash: Sha256::digest(token.as_bytes()).into(),
            });
        }
        let mut names = std::collections::BTreeSet::new();
        for entry in &entries {
            if !names.insert(entry.name.as_str()) {
                return Err(TokenError::Duplicate(entry.name.clone()));
            }
        }
        Ok(Self { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The principal a token stands for. Every entry is compared, in constant time.
    pub fn authenticate(&self, token: &str) -> Option<Principal> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.hash.ct_eq(&hash)) {
                found = Some(entry);
            }
        }
        found.map(|e| Principal {
            name: e.name.clone(),
            role: e.role,
        })
    }
}

/// The bearer token of a request, if it has a well-formed `Authorization` header.
fn bearer(request: &Request) -> Option<&str> {
    let value = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Middleware of every authenticated route: 401 without a known token, 403 below the
/// route's role; otherwise the [`Principal`] goes into the request's extensions.
pub async fn require(
    State((state, role)): State<(ApiState, Role)>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(principal) = bearer(&request).and_then(|t| state.tokens.authenticate(t)) else {
        return ApiError::Unauthorized.into_response();
    };
    if principal.role < role {
        return ApiError::Forbidden {
            role: principal.role,
            required: role,
        }
        .into_response();
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_lowercase_hex_and_round_trip() {
        let hex = sha256_hex("test");
        assert_eq!(
            hex,
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        assert_eq!(
            parse_sha256(&hex.to_uppercase()),
            Some(Sha256::digest(b"test").into())
        );
        assert_eq!(parse_sha256("abc"), None);
        assert_eq!(parse_sha256(&"g".repeat(64)), None);
    }

    #[test]
    fn env_and_config_tokens_authenticate_with_their_role() {
        let config = [ApiToken {
            name: "console".into(),
            role: Role::Viewer,
            token_sha256: sha256_hex("console-token-0123456789"),
        }];
        let tokens = Tokens::load(
            &config,
            Some(
                "ops:admin:ops-token-0123456789:with-colon, meter:operator:meter-token-0123456789",
            ),
        )
        .unwrap();
        let who = |t: &str| tokens.authenticate(t).map(|p| (p.name, p.role));
        assert_eq!(
            who("console-token-0123456789"),
            Some(("console".into(), Role::Viewer))
        );
        assert_eq!(
            who("ops-token-0123456789:with-colon"),
            Some(("ops".into(), Role::Admin))
        );
        assert_eq!(
            who("meter-token-0123456789"),
            Some(("meter".into(), Role::Operator))
        );
        assert_eq!(who("ops-token-0123456789"), None);
        assert_eq!(who(""), None);
    }

    #[test]
    fn bad_env_entries_are_refused_without_echoing_the_token() {
        for (env, expected) in [
            ("ops:admin", "expected name:role:token"),
            ("ops:root:secret-secret-secret", "the role must be"),
            ("ops:admin:short", "at least 16"),
            (":admin:secret-secret-secret", "the name must be"),
            (
                "ops:admin:secret-secret-secret,ops:viewer:other-secret-secret",
                "configured twice",
            ),
        ] {
            let err = Tokens::load(&[], Some(env)).unwrap_err().to_string();
            assert!(err.contains(expected), "{env}: {err}");
            assert!(!err.contains("secret"), "{err} leaks the token");
        }
        assert!(Tokens::load(&[], Some(" , ")).unwrap().is_empty());
    }

    #[test]
    fn roles_include_the_lower_ones() {
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Viewer);
    }
}
