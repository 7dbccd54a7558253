//! Where emails go: lettre's SMTP transport, `.eml` files, stdout, or nowhere.

use std::time::Duration;

use lettre::message::{header, header::ContentType, Mailbox, Mailboxes, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;

use super::template::Rendered;
use crate::config::{Email, EmailTransport, Smtp, SmtpTls};

/// A mail transport built from settings.
pub enum Mailer {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        timeout: Duration,
    },
    File(AsyncFileTransport<Tokio1Executor>),
    Stdout,
    /// Messages stay in the outbox.
    None,
}

/// Why a transport could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("email.smtp: {0}")]
    Smtp(String),
    #[error("email.smtp.password_file: {0}")]
    PasswordFile(std::io::Error),
    #[error("email.smtp.ca_file `{0}`: {1}")]
    CaFile(String, String),
    #[error("email.file_dir `{0}`: {1}")]
    FileDir(String, std::io::Error),
}

impl Mailer {
    /// Builds the configured transport. SMTP credentials come from the settings (the
    /// password from the environment or `password_file`) and are never logged.
    ///
    /// # Errors
    /// A bad SMTP relay or an unreadable password file or mail directory.
    pub fn from_settings(email: &Email) -> Result<Self, BuildError> {
        Ok(match email.transport {
            EmailTransport::Smtp => {
                let smtp = &email.smtp;
                let builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host);
                let builder = match smtp.tls {
                    SmtpTls::Starttls => builder.tls(Tls::Required(tls_parameters(smtp)?)),
                    SmtpTls::Tls => builder.tls(Tls::Wrapper(tls_parameters(smtp)?)),
                    SmtpTls::None => builder,
                };
                let timeout = Duration::from_secs(smtp.timeout_seconds.max(1));
                let mut builder = builder
                    .port(smtp.port)
                    .timeout(Some(timeout))
                    .pool_config(PoolConfig::new().max_size(4));
                let password = match (&smtp.password, &smtp.password_file) {
                    (Some(p), _) => Some(p.clone()),
                    (None, Some(file)) => Some(
                        std::fs::read_to_string(file)
                            .map_err(BuildError::PasswordFile)?
                            .trim_end()
                            .to_owned(),
                    ),
                    (None, None) => None,
                };
                if let Some(user) = &smtp.username {
                    builder = builder
                        .credentials(Credentials::new(user.clone(), password.unwrap_or_default()));
                }
                Mailer::Smtp {
                    transport: builder.build(),
                    timeout,
                }
            }
            EmailTransport::File => {
                std::fs::create_dir_all(&email.file_dir)
                    .map_err(|e| BuildError::FileDir(email.file_dir.clone(), e))?;
                Mailer::File(AsyncFileTransport::<Tokio1Executor>::new(&email.file_dir))
            }
            EmailTransport::Stdout => Mailer::Stdout,
            EmailTransport::None => Mailer::None,
        })
    }

    /// Whether this transport delivers anything.
    pub fn delivers(&self) -> bool {
        !matches!(self, Mailer::None)
    }

    /// Sends one message, with a timeout on the whole send (lettre's covers connecting
    /// only).
    ///
    /// # Errors
    /// The transport's error, as text for the outbox row.
    pub async fn send(&self, message: Message) -> Result<(), String> {
        match self {
            Mailer::Smtp { transport, timeout } => {
                match tokio::time::timeout(*timeout * 3, transport.send(message)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(format!("smtp: {e}")),
                    Err(_) => Err("smtp: timed out".to_owned()),
                }
            }
            Mailer::File(transport) => transport
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| format!("file: {e}")),
            Mailer::Stdout => {
                println!("{}", String::from_utf8_lossy(&message.formatted()));
                Ok(())
            }
            Mailer::None => Err("email.transport is none".to_owned()),
        }
    }
}

/// TLS to `smtp.host`, verified against the public roots and, with `ca_file`, the CAs
/// in that PEM file too.
fn tls_parameters(smtp: &Smtp) -> Result<TlsParameters, BuildError> {
    let mut builder = TlsParameters::builder(smtp.host.clone());
    if let Some(file) = &smtp.ca_file {
        let failed = |message: String| BuildError::CaFile(file.clone(), message);
        let pem = std::fs::read(file).map_err(|e| failed(e.to_string()))?;
        // lettre reads a PEM file without certificates as an empty list: say so instead.
        let certificates = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| failed(format!("not PEM certificates: {e}")))?;
        if certificates.is_empty() {
            return Err(failed("holds no PEM certificate".to_owned()));
        }
        let certificate = Certificate::from_pem(&pem).map_err(|e| failed(e.to_string()))?;
        builder = builder.add_root_certificate(certificate);
    }
    builder
        .build()
        .map_err(|e| BuildError::Smtp(format!("tls: {e}")))
}

/// Builds the MIME message: both parts, a Message-ID derived from the dedupe key so that
/// receivers can drop the one duplicate a crash between send and acknowledgement may make.
///
/// # Errors
/// An invalid address.
pub fn message(
    from: &str,
    to: &[String],
    dedupe_key: &str,
    rendered: &Rendered,
) -> Result<Message, String> {
    let from: Mailbox = from.parse().map_err(|e| format!("from `{from}`: {e}"))?;
    let mut builder = Message::builder()
        .from(from)
        .subject(rendered.subject.clone())
        .message_id(Some(format!("<{}@acctd>", message_id(dedupe_key))));
    // The recipients as one header, built once (adding them one by one re-parses the
    // header each time, quadratic in the number of recipients).
    let mut mailboxes = Mailboxes::new();
    for recipient in to {
        let mailbox: Mailbox = recipient
            .parse()
            .map_err(|e| format!("to `{recipient}`: {e}"))?;
        mailboxes.push(mailbox);
    }
    if !to.is_empty() {
        builder = builder.mailbox(header::To::from(mailboxes));
    }
    builder
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(rendered.text.clone()),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(rendered.html.clone()),
                ),
        )
        .map_err(|e| format!("message: {e}"))
}

/// A stable, header-safe id for a dedupe key (FNV-1a, hex).
fn message_id(key: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}.{}", key.len())
}
