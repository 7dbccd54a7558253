//! Signed webhooks: lifecycle events POSTed as JSON, signed with HMAC-SHA256 over
//! `"{timestamp}.{body}"` (header `Acctd-Signature: t={timestamp},v1={hex}`), so a
//! receiver can check both the sender and the freshness.

use std::collections::BTreeMap;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config;

struct Endpoint {
    url: reqwest::Url,
    secret: Vec<u8>,
}

/// The configured endpoints and an HTTP(S) client (reqwest on rustls, redirects refused).
pub struct Webhooks {
    endpoints: BTreeMap<String, Endpoint>,
    client: reqwest::Client,
}

/// The signature header value for a body sent at `timestamp` (seconds since the epoch).
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // Proven invariant: HMAC accepts keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("hmac takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex = mac
        .finalize()
        .into_bytes()
        .iter()
        .fold(String::with_capacity(64), |mut hex, b| {
            use std::fmt::Write as _;
            let _ = write!(hex, "{b:02x}");
            hex
        });
    format!("t={timestamp},v1={hex}")
}

impl Webhooks {
    /// Builds the endpoints; each secret is read from its environment variable.
    ///
    /// # Errors
    /// A missing secret variable or a bad URL, naming the endpoint.
    pub fn from_settings(settings: &config::Webhooks, timeout: Duration) -> Result<Self, String> {
        let mut endpoints = BTreeMap::new();
        for e in &settings.endpoints {
            let secret = std::env::var(&e.secret_env).map_err(|_| {
                format!(
                    "webhook `{}`: environment variable {} is not set",
                    e.name, e.secret_env
                )
            })?;
            let url = reqwest::Url::parse(&e.url)
                .map_err(|err| format!("webhook `{}`: {err}", e.name))?;
            endpoints.insert(
                e.name.clone(),
                Endpoint {
                    url,
                    secret: secret.into_bytes(),
                },
            );
        }
        let tls = crate::https::tls_config(None).map_err(|e| format!("webhooks: tls: {e}"))?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(timeout)
            // A receiver that moved answers 3xx: that is a failed delivery to fix in the
            // configuration, never a signed body sent on to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("acctd")
            .build()
            .map_err(|e| format!("webhooks: {e}"))?;
        Ok(Self { endpoints, client })
    }

    /// Whether an endpoint of this name is configured.
    pub fn has(&self, name: &str) -> bool {
        self.endpoints.contains_key(name)
    }

    /// POSTs a body to an endpoint; any 2xx is delivered.
    ///
    /// # Errors
    /// The endpoint's status or the transport error, as text for the outbox row.
    pub async fn post(
        &self,
        name: &str,
        body: &[u8],
        timestamp: i64,
        event_id: &str,
    ) -> Result<(), String> {
        let endpoint = self
            .endpoints
            .get(name)
            .ok_or_else(|| format!("no webhook endpoint `{name}`"))?;
        let sent = self
            .client
            .post(endpoint.url.clone())
            .header("content-type", "application/json")
            .header("acctd-event-id", event_id)
            .header(
                "acctd-signature",
                signature(&endpoint.secret, timestamp, body),
            )
            .body(body.to_vec())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!("webhook `{name}`: HTTP {}", response.status())),
            Err(e) if e.is_timeout() => Err(format!("webhook `{name}`: timed out")),
            Err(e) => Err(format!("webhook `{name}`: {}", crate::https::chain(&e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_over_timestamp_and_body() {
        // The header's shape, and that the secret and the timestamp are both signed (the
        // value itself is checked against independent vectors below).
        let sig = signature(b"key", 1, b"{}");
        assert!(sig.starts_with("t=1,v1="));
        assert_eq!(sig.len(), "t=1,v1=".len() + 64);
        assert_ne!(sig, signature(b"other", 1, b"{}"));
        assert_ne!(sig, signature(b"key", 2, b"{}"));
    }
}

/// Vectors computed outside this crate, so that a mistake in [`signature`] cannot hide
/// behind a test that computes the expected value with it. Each was made with
/// `printf '%s' '{timestamp}.{body}' | openssl dgst -sha256 -hmac '{secret}'`.
#[cfg(test)]
mod vector_tests {
    use super::signature;

    #[test]
    fn signature_matches_openssl_for_an_event_body() {
        assert_eq!(
            signature(
                b"s3cret",
                1_772_323_200,
                br#"{"event":"org.canceled","org":"acme"}"#
            ),
            "t=1772323200,v1=52257ef446a18db58756d849c1e17e833183b40b09542dc7e272db7cd4d1d0ee"
        );
    }

    #[test]
    fn signature_matches_openssl_for_an_empty_body_and_a_key_longer_than_a_block() {
        // 92 bytes: HMAC hashes a key longer than SHA-256's 64-byte block first.
        let secret = b"a much longer secret, longer than the 64-byte block of SHA-256, so HMAC hashes the key first";
        assert_eq!(
            signature(secret, -1, b""),
            "t=-1,v1=4a18559a6ab99b7cd3eb7eb4680ef8b1d3974a932cb3e1b965a8539d1163508d"
        );
    }

    #[test]
    fn signature_matches_openssl_for_a_short_key() {
        assert_eq!(
            signature(b"key", 1, b"{}"),
            "t=1,v1=1ba6b8171186efc613e8bcc0cbdab2748f24984d7c5a84faa2637afa0e40d224"
        );
    }
}
