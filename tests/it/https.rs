//! acctd's HTTP clients over TLS and their refusals: `acctd admin --url https://…` and the
//! API client against a loopback HTTPS server whose self-signed certificate the test makes,
//! trusted only through `--ca-file`; webhooks that refuse to follow a redirect.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use acctd::api::client::Client;
use axum::http::{Method, StatusCode};
use serde_json::json;
use tokio::net::TcpListener;

use crate::api::{TestApp, ADMIN};
use crate::helpers::{output_within, Backend};

/// A certificate for `localhost`, self-signed: (certificate PEM, TLS server config).
fn self_signed() -> (String, Arc<rustls::ServerConfig>) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .unwrap();
    (cert.pem(), Arc::new(config))
}

/// Terminates TLS on a loopback port and forwards each connection to `upstream` (the
/// daemon's plain HTTP, as a TLS proxy in front of it would). Returns the port and how
/// many TLS handshakes succeeded.
async fn tls_proxy(
    config: Arc<rustls::ServerConfig>,
    upstream: SocketAddr,
) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let handshakes = Arc::new(AtomicUsize::new(0));
    let counted = handshakes.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, counted) = (acceptor.clone(), counted.clone());
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to serve.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                counted.fetch_add(1, Ordering::SeqCst);
                let mut plain = tokio::net::TcpStream::connect(upstream).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (port, handshakes)
}

fn upstream(app: &TestApp) -> SocketAddr {
    app.base.strip_prefix("http://").unwrap().parse().unwrap()
}

/// The API client speaks HTTPS and trusts an internal CA given as PEM; without it, the
/// self-signed certificate is refused and the error says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_client_speaks_https_trusting_a_given_ca() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    app.signup("acme", true, json!({})).await;
    let (pem, config) = self_signed();
    let (port, handshakes) = tls_proxy(config, upstream(&app)).await;
    let url = format!("https://localhost:{port}");

    let trusting = Client::with_ca(&url, Some(ADMIN.to_owned()), Some(pem.as_bytes())).unwrap();
    let (status, org) = trusting
        .call(Method::GET, "/v1/orgs/acme", None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{org}");
    assert_eq!(org["id"], "acme");
    assert_eq!(handshakes.load(Ordering::SeqCst), 1);

    let refused = Client::new(&url, Some(ADMIN.to_owned()))
        .unwrap()
        .call(Method::GET, "/v1/orgs/acme", None)
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("certificate"), "{refused}");
    assert_eq!(
        handshakes.load(Ordering::SeqCst),
        1,
        "no request went through"
    );

    // A CA file without a certificate is bad input, named as such.
    let bad = Client::with_ca(&url, None, Some(b"not a certificate")).unwrap_err();
    assert!(bad.to_string().contains("no certificate"), "{bad}");
    // Neither a query nor credentials belong in the base URL.
    assert!(Client::new("https://user:pw@localhost:1", None).is_err());
    assert!(Client::new("ftp://localhost:1", None).is_err());
}

/// `acctd admin --url https://… --ca-file ca.pem show ORG` works end to end as a process;
/// without `--ca-file` it fails naming the certificate, and a missing file is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_url_over_https_with_a_ca_file() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    app.signup("globex", false, json!({})).await;
    let (pem, config) = self_signed();
    let (port, _) = tls_proxy(config, upstream(&app)).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pem).unwrap();
    let url = format!("https://localhost:{port}");
    let admin = move |extra: Vec<String>| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let mut command = Command::new(env!("CARGO_BIN_EXE_acctd"));
            command
                .args(["admin", "--url", &url])
                .args(extra)
                .args(["show", "globex", "--json"])
                .env("ACCTD_API_TOKEN", ADMIN)
                .env_remove("ACCTD_API_CA_FILE")
                .env_remove("RUST_LOG");
            output_within(&mut command, Duration::from_mins(1))
        })
    };

    let shown = admin(vec!["--ca-file".into(), ca.display().to_string()])
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let org: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(org["id"], "globex");
    assert_eq!(org["state"], "trial");

    let refused = admin(Vec::new()).await.unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("certificate"), "{stderr}");

    let missing = dir.path().join("nope.pem");
    let missing_run = admin(vec!["--ca-file".into(), missing.display().to_string()])
        .await
        .unwrap();
    assert_eq!(missing_run.status.code(), Some(2), "bad input exits 2");
    let stderr = String::from_utf8_lossy(&missing_run.stderr);
    assert!(stderr.contains("nope.pem"), "{stderr}");
}

/// A webhook receiver that answers with a redirect has not received the event: the
/// delivery fails with the status, and the signed body is not sent on to the new place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_refuse_redirects() {
    use axum::routing::post;
    let followed = Arc::new(AtomicUsize::new(0));
    let counted = followed.clone();
    let router = axum::Router::new()
        .route(
            "/hook",
            post(|| async { (StatusCode::FOUND, [("location", "/elsewhere")]) }),
        )
        .route(
            "/elsewhere",
            post(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async { StatusCode::OK }
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });

    let secret_env = "ACCTD_TEST_REDIRECT_HOOK_SECRET";
    // Edition 2021: set_var is safe; the name is unique to this test.
    std::env::set_var(secret_env, "s3cret");
    let settings = acctd::config::Webhooks {
        endpoints: vec![acctd::config::WebhookEndpoint {
            name: "crm".to_owned(),
            url: format!("http://{addr}/hook"),
            secret_env: secret_env.to_owned(),
        }],
    };
    let hooks =
        acctd::notify::webhook::Webhooks::from_settings(&settings, Duration::from_secs(5)).unwrap();
    let error = hooks.post("crm", b"{}", 1, "evt-1").await.unwrap_err();
    assert!(error.contains("302"), "{error}");
    assert_eq!(
        followed.load(Ordering::SeqCst),
        0,
        "the redirect was not followed"
    );
}
