//! Email over TLS with authentication, to SMTP servers on loopback that the tests start
//! with a certificate from a CA the tests make: STARTTLS (mailin-embedded's own TLS) and
//! implicit TLS (mailin's SMTP session over a rustls socket), each with AUTH; a relay
//! whose certificate the configured CAs do not vouch for is refused (issue 28).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use acctd::config::{EmailTransport, Settings, SmtpTls};
use acctd::notify::Mailer;
use mailin_embedded::{response, AuthMechanism, Handler, Response, Server, SslConfig};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::notify::{sink, Received, Sink};

const USER: &str = "acctd";
const PASSWORD: &str = "relay-s3cret";

/// A CA and a server certificate it signed for 127.0.0.1 and localhost, as PEM files.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn pki() -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "acctd test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut server =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    server
        .distinguished_name
        .push(DnType::CommonName, "sink.test");
    let cert = server.signed_by(&key, &ca).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, pem: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    Pki {
        ca: write("ca.pem", ca.pem()),
        cert: write("server.pem", cert.pem()),
        key: write("server.key", key.serialize_pem()),
        _dir: dir,
    }
}

/// A [`Sink`] that also requires `AUTH` with [`USER`] and [`PASSWORD`], and records the
/// users who logged in.
#[derive(Clone)]
struct AuthSink {
    sink: Sink,
    logins: Arc<Mutex<Vec<String>>>,
}

impl AuthSink {
    fn new() -> Self {
        Self {
            sink: sink(),
            logins: Arc::default(),
        }
    }

    fn login(&self, user: &str, password: &str) -> Response {
        if user == USER && password == PASSWORD {
            self.logins.lock().unwrap().push(user.to_owned());
            response::AUTH_OK
        } else {
            response::INVALID_CREDENTIALS
        }
    }
}

impl Handler for AuthSink {
    fn data_start(&mut self, domain: &str, from: &str, is8bit: bool, to: &[String]) -> Response {
        self.sink.data_start(domain, from, is8bit, to)
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.sink.data(buf)
    }

    fn data_end(&mut self) -> Response {
        self.sink.data_end()
    }

    fn auth_plain(&mut self, _authorization_id: &str, user: &str, password: &str) -> Response {
        self.login(user, password)
    }

    fn auth_login(&mut self, user: &str, password: &str) -> Response {
        self.login(user, password)
    }
}

/// Both rustls providers are linked into this binary, so the ones that take the
/// process's default (mailin-embedded's server config) need it named.
fn default_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// mailin-embedded's server: plain SMTP that offers STARTTLS, and AUTH once upgraded.
fn starttls_server(listener: TcpListener, pki: &Pki, handler: AuthSink) {
    default_crypto_provider();
    let mut server = Server::new(handler);
    server
        .with_name("sink.test")
        .with_tcp_listener(listener)
        .with_auth(AuthMechanism::Plain)
        .with_ssl(SslConfig::SelfSigned {
            cert_path: pki.cert.display().to_string(),
            key_path: pki.key.display().to_string(),
        })
        .unwrap();
    std::thread::spawn(move || {
        let _ = server.serve();
    });
}

/// Implicit TLS (SMTPS): TLS from the first byte, then mailin's SMTP session, which
/// offers AUTH since the connection is encrypted.
fn implicit_tls_server(listener: TcpListener, pki: &Pki, handler: AuthSink) {
    let certs = CertificateDer::pem_file_iter(&pki.cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&pki.key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let config = Arc::new(config);
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            let config = config.clone();
            let handler = handler.clone();
            std::thread::spawn(move || {
                let remote = tcp.peer_addr().unwrap().ip();
                let tls = rustls::ServerConnection::new(config).unwrap();
                let mut stream = BufReader::new(rustls::StreamOwned::new(tls, tcp));
                let mut session = mailin::SessionBuilder::new("tls.test")
                    .enable_auth(AuthMechanism::Plain)
                    .build(remote, handler);
                session.tls_active();
                let reply = |stream: &mut BufReader<_>, r: &Response| -> std::io::Result<()> {
                    let out: &mut rustls::StreamOwned<_, _> = stream.get_mut();
                    r.write_to(out)?;
                    out.flush()
                };
                if reply(&mut stream, &session.greeting()).is_err() {
                    return;
                }
                let mut line = Vec::new();
                loop {
                    line.clear();
                    // A failed handshake (an untrusting client) ends here too.
                    match stream.read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let response = session.process(&line);
                    match response.action {
                        mailin::Action::Reply => {
                            if reply(&mut stream, &response).is_err() {
                                return;
                            }
                        }
                        mailin::Action::Close | mailin::Action::UpgradeTls => {
                            let _ = reply(&mut stream, &response);
                            return;
                        }
                        mailin::Action::NoReply => {}
                    }
                }
            });
        }
    });
}

fn settings(port: u16, tls: SmtpTls, ca_file: Option<&Path>, password: &str) -> Settings {
    let mut settings = Settings::default();
    settings.email.transport = EmailTransport::Smtp;
    settings.email.from = "Billing <billing@vendor.test>".into();
    settings.email.smtp.host = "127.0.0.1".into();
    settings.email.smtp.port = port;
    settings.email.smtp.tls = tls;
    settings.email.smtp.username = Some(USER.into());
    settings.email.smtp.password = Some(password.into());
    settings.email.smtp.ca_file = ca_file.map(|f| f.display().to_string());
    settings.email.smtp.timeout_seconds = 5;
    settings.validate().unwrap();
    settings
}

fn message() -> lettre::Message {
    lettre::Message::builder()
        .from("Billing <billing@vendor.test>".parse().unwrap())
        .to("admin@acme.test".parse().unwrap())
        .subject("Your invoice")
        .body("paid, thank you".to_owned())
        .unwrap()
}

/// A relay the test started: its port, what it received and who logged in.
struct Relay {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    logins: Arc<Mutex<Vec<String>>>,
}

/// Starts a server of the given kind on loopback.
fn start(tls: SmtpTls, pki: &Pki) -> Relay {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let handler = AuthSink::new();
    let relay = Relay {
        port: listener.local_addr().unwrap().port(),
        received: handler.sink.received.clone(),
        logins: handler.logins.clone(),
    };
    match tls {
        SmtpTls::Starttls => starttls_server(listener, pki, handler),
        SmtpTls::Tls => implicit_tls_server(listener, pki, handler),
        SmtpTls::None => unreachable!("these servers speak TLS"),
    }
    relay
}

async fn delivers_over_tls_with_auth(tls: SmtpTls) {
    let pki = pki();
    let Relay {
        port,
        received,
        logins,
    } = start(tls, &pki);
    let mailer =
        Mailer::from_settings(&settings(port, tls, Some(&pki.ca), PASSWORD).email).unwrap();
    mailer.send(message()).await.unwrap();
    assert_eq!(*logins.lock().unwrap(), [USER]);
    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].to, ["admin@acme.test"]);
    assert_eq!(
        received[0].header("Subject").as_deref(),
        Some("Your invoice")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_with_auth_delivers_to_a_relay_signed_by_the_configured_ca() {
    delivers_over_tls_with_auth(SmtpTls::Starttls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_with_auth_delivers_to_a_relay_signed_by_the_configured_ca() {
    delivers_over_tls_with_auth(SmtpTls::Tls).await;
}

/// Without `ca_file` the test CA is no public root: the handshake fails and nothing is
/// sent, credentials included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_certificate_no_trusted_ca_signed_is_refused() {
    for tls in [SmtpTls::Starttls, SmtpTls::Tls] {
        let pki = pki();
        let Relay {
            port,
            received,
            logins,
        } = start(tls, &pki);
        let mailer = Mailer::from_settings(&settings(port, tls, None, PASSWORD).email).unwrap();
        let error = mailer.send(message()).await.unwrap_err();
        assert!(
            error.starts_with("smtp: ")
                && error.contains("invalid peer certificate: UnknownIssuer"),
            "{tls:?}: {error}"
        );
        assert!(logins.lock().unwrap().is_empty(), "{tls:?}");
        assert!(received.lock().unwrap().is_empty(), "{tls:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_over_tls() {
    for tls in [SmtpTls::Starttls, SmtpTls::Tls] {
        let pki = pki();
        let Relay {
            port,
            received,
            logins,
        } = start(tls, &pki);
        let mailer =
            Mailer::from_settings(&settings(port, tls, Some(&pki.ca), "wrong").email).unwrap();
        let error = mailer.send(message()).await.unwrap_err();
        assert!(error.contains("535"), "{tls:?}: {error}");
        assert!(logins.lock().unwrap().is_empty(), "{tls:?}");
        assert!(received.lock().unwrap().is_empty(), "{tls:?}");
    }
}

#[test]
fn a_ca_file_without_certificates_is_refused_when_the_transport_is_built() {
    let pki = pki();
    let mut s = settings(465, SmtpTls::Tls, Some(&pki.key), PASSWORD);
    let error = Mailer::from_settings(&s.email).err().unwrap().to_string();
    assert_eq!(
        error,
        format!(
            "email.smtp.ca_file `{}`: holds no PEM certificate",
            pki.key.display()
        )
    );
    s.email.smtp.ca_file = Some(pki.ca.with_file_name("missing.pem").display().to_string());
    let error = Mailer::from_settings(&s.email).err().unwrap().to_string();
    assert!(error.contains("missing.pem`: "), "{error}");
}
