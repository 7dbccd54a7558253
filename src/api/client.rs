//! A small client of the admin API (HTTP/1.1 over TCP, no TLS), used by `acctd admin
//! --url` and by the integration tests. One connection per request: the callers make a
//! handful of requests, and a fresh connection never trips over a closed keep-alive.

use std::time::Duration;

use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use axum::http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("bad API URL `{url}`: {message}")]
    Url { url: String, message: String },
    #[error("cannot reach the API at {authority}: {source}")]
    Connect {
        authority: String,
        source: std::io::Error,
    },
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
    authority: String,
    prefix: String,
    token: Option<String>,
    timeout: Duration,
}

impl Client {
    /// `url` is `http://HOST:PORT` with an optional path prefix.
    ///
    /// # Errors
    /// [`ClientError::Url`] for anything else (including `https`: put a TLS-terminating
    /// proxy in front, and reach the API on its private address).
    pub fn new(url: &str, token: Option<String>) -> Result<Self, ClientError> {
        let bad = |message: &str| ClientError::Url {
            url: url.to_owned(),
            message: message.to_owned(),
        };
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => return Err(bad("https is not supported by this client; use http")),
            _ => return Err(bad("expected http://HOST:PORT")),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| bad("no host"))?
            .as_str()
            .to_owned();
        if authority.contains('@') {
            return Err(bad("credentials in the URL are not supported; use --token"));
        }
        let authority = if uri.port().is_some() {
            authority
        } else {
            format!("{authority}:80")
        };
        Ok(Self {
            authority,
            prefix: uri.path().trim_end_matches('/').to_owned(),
            token,
            timeout: Duration::from_mins(5),
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
        tokio::time::timeout(self.timeout, self.exchange(method, path, body, headers))
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))?
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Result<Answer, ClientError> {
        let http = |e: &dyn std::fmt::Display| ClientError::Http(e.to_string());
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|source| ClientError::Connect {
                authority: self.authority.clone(),
                source,
            })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| http(&e))?;
        tokio::spawn(async move {
            // The connection ends with the request; an error shows in the response too.
            let _ = connection.await;
        });
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.prefix))
            .header(HOST, &self.authority);
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if body.is_some()
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| http(&e))?;
        let response = sender.send_request(request).await.map_err(|e| http(&e))?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| http(&e))?
            .to_bytes();
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
