//! A small client of the admin API over HTTP or HTTPS (reqwest on rustls), used by
//! `acctd admin --url` and by the integration tests. HTTPS trusts the Mozilla roots and,
//! with [`Client::with_ca`], the certificates of a PEM file (an internal CA).

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Method, StatusCode};
use serde_json::Value;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("bad API URL `{url}`: {message}")]
    Url { url: String, message: String },
    #[error("bad CA certificates: {0}")]
    Ca(String),
    #[error("cannot reach the API at {url}: {message}")]
    Connect { url: String, message: String },
    #[error("HTTP error: {0}")]
    Http(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the answer is not JSON ({status}): {message}")]
    NotJson { status: StatusCode, message: String },
}

/// A raw answer.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON.
    ///
    /// # Errors
    /// [`ClientError::NotJson`].
    pub fn json(&self) -> Result<Value, ClientError> {
        serde_json::from_slice(&self.body).map_err(|e| ClientError::NotJson {
            status: self.status,
            message: e.to_string(),
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The API at a base URL, with an optional bearer token.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    /// The base URL without a trailing `/`.
    base: String,
    token: Option<String>,
}

/// How long a request may take in all.
const TIMEOUT: Duration = Duration::from_mins(5);

/// How long connecting (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Client {
    /// `url` is `http://HOST[:PORT]` or `https://HOST[:PORT]`, with an optional path
    /// prefix.
    ///
    /// # Errors
    /// [`ClientError::Url`] for anything else.
    pub fn new(url: &str, token: Option<String>) -> Result<Self, ClientError> {
        Self::with_ca(url, token, None)
    }

    /// As [`Client::new`], trusting also the certificates in `ca_pem` (PEM bytes) for
    /// `https`.
    ///
    /// # Errors
    /// [`ClientError::Url`]; [`ClientError::Ca`] for PEM data without a usable certificate.
    pub fn with_ca(
        url: &str,
        token: Option<String>,
        ca_pem: Option<&[u8]>,
    ) -> Result<Self, ClientError> {
        let bad = |message: &str| ClientError::Url {
            url: url.to_owned(),
            message: message.to_owned(),
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad("expected http://HOST:PORT or https://HOST:PORT"));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(bad("no host"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad("credentials in the URL are not supported; use --token"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(bad(
                "a query or fragment has no place in the API's base URL",
            ));
        }
        let tls = crate::https::tls_config(ca_pem).map_err(ClientError::Ca)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(TIMEOUT)
            // The API answers; it never redirects. A redirect would carry the token away.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| ClientError::Http(e.to_string()))?;
        Ok(Self {
            http,
            base: parsed.as_str().trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// The same client with another token (or none).
    #[must_use]
    pub fn with_token(&self, token: Option<&str>) -> Self {
        Self {
            token: token.map(str::to_owned),
            ..self.clone()
        }
    }

    /// Sends a request with a raw body and extra headers.
    ///
    /// # Errors
    /// The API cannot be reached or does not answer in time.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Result<Answer, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if body.is_some()
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                ClientError::Timeout(TIMEOUT)
            } else if e.is_connect() {
                ClientError::Connect {
                    url: self.base.clone(),
                    message: crate::https::chain(&e),
                }
            } else {
                ClientError::Http(crate::https::chain(&e))
            }
        };
        let response = request.send().await.map_err(failed)?;
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.bytes().await.map_err(failed)?;
        Ok(Answer {
            status,
            content_type,
            body,
        })
    }

    /// Sends JSON (or nothing) and reads JSON back.
    ///
    /// # Errors
    /// The API cannot be reached, or its answer is not JSON.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), ClientError> {
        let body = body.map(|b| b.to_string().into_bytes());
        let answer = self.send(method, path, body, &[]).await?;
        Ok((answer.status, answer.json()?))
    }
}
