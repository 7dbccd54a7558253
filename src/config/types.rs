//! The setting structs, one per section of `config.toml`, with their defaults in code.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::domain::entitlement;

/// Bounds of `acctd simulate`: a scenario beyond them is refused (exit 2) before it
/// runs, rather than running for hours or exhausting memory.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Simulation {
    /// The most `[[org]]`s a scenario may declare.
    pub max_orgs: u32,
    /// The longest span from `start` to `until`, in years.
    pub max_years: u32,
}

impl Default for Simulation {
    fn default() -> Self {
        Self {
            max_orgs: 100_000,
            max_years: 100,
        }
    }
}

/// How emails leave: SMTP in production, `.eml` files or stdout for development and QA.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Email {
    pub transport: EmailTransport,
    /// The From address, e.g. `"Billing <billing@example.com>"`.
    pub from: String,
    /// Where the file transport writes `.eml` files.
    pub file_dir: String,
    pub smtp: Smtp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailTransport {
    Smtp,
    File,
    Stdout,
    /// Keep messages in the outbox without sending (e.g. a replica that only sweeps).
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (port 587).
    Starttls,
    /// Implicit TLS (port 465).
    Tls,
    /// No encryption: only for a relay on loopback.
    None,
}

#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    /// Only from the environment (`ACCTD__EMAIL__SMTP__PASSWORD`) or `password_file`;
    /// never serialized, printed or logged.
    #[serde(skip_serializing)]
    pub password: Option<String>,
    pub password_file: Option<String>,
    /// A PEM file of CA certificates trusted for the relay besides the public roots
    /// (an internal CA, or a test's own); only with `tls` = `starttls` or `tls`.
    pub ca_file: Option<String>,
    pub timeout_seconds: u64,
}

impl fmt::Debug for Smtp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Smtp")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("password_file", &self.password_file)
            .field("ca_file", &self.ca_file)
            .field("timeout_seconds", &self.timeout_seconds)
            .finish()
    }
}

impl Default for Email {
    fn default() -> Self {
        Self {
            transport: EmailTransport::File,
            from: "acctd <billing@localhost>".to_owned(),
            file_dir: "outbox-mail".to_owned(),
            smtp: Smtp::default(),
        }
    }
}

impl Default for Smtp {
    fn default() -> Self {
        Self {
            host: "localhost".to_owned(),
            port: 587,
            tls: SmtpTls::Starttls,
            username: None,
            password: None,
            password_file: None,
            ca_file: None,
            timeout_seconds: 10,
        }
    }
}

/// Signed webhooks: every lifecycle event POSTed as JSON to each endpoint, through the
/// outbox (optional; none by default).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Webhooks {
    pub endpoints: Vec<WebhookEndpoint>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpoint {
    /// A short unique name, used in dedupe keys and logs.
    pub name: String,
    /// `http://` or `https://`.
    pub url: String,
    /// The environment variable that holds the signing secret (never in a file).
    pub secret_env: String,
}

/// The outbox dispatcher: delivery retries with exponential backoff and a dead letter.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Notify {
    /// How often the dispatcher looks for due messages.
    pub poll_seconds: u64,
    /// Messages claimed per round.
    pub batch_size: u32,
    /// Attempts before a message is dead-lettered (see `acctd admin outbox`).
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt (with jitter) up to the maximum.
    pub backoff_base_seconds: u64,
    pub backoff_max_seconds: u64,
    /// A claimed message not acknowledged within this time is sent again (crash safety).
    pub lease_seconds: u64,
    /// Reminders (trial_ending, grace_ending, cancel_warning) go this many days before.
    pub reminder_days: u32,
    /// The most account admins an org may have: alerts and lock notices go to all of
    /// them in one message, which must stay small.
    pub max_admins_per_org: u32,
}

impl Default for Notify {
    fn default() -> Self {
        Self {
            poll_seconds: 5,
            batch_size: 100,
            max_attempts: 12,
            backoff_base_seconds: 30,
            backoff_max_seconds: 6 * 3600,
            lease_seconds: 120,
            reminder_days: 3,
            max_admins_per_org: 100,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsageSettings {
    /// Percent-of-tier thresholds that raise an overage alert, once per period each.
    pub alert_thresholds: Vec<u32>,
    /// Usage strictly above this percent of the tier locks the org (reason `overage`).
    pub lock_above_percent: u32,
}

impl Default for UsageSettings {
    fn default() -> Self {
        Self {
            alert_thresholds: vec![80, 100, 125, 150, 200, 250, 300, 600],
            lock_above_percent: 300,
        }
    }
}

/// What each lock reason leaves on; with several reasons the most restrictive wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EntitlementSettings {
    pub overage: EntitlementRow,
    pub payment_overdue: EntitlementRow,
    pub trial_expired: EntitlementRow,
    pub manual: EntitlementRow,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EntitlementRow {
    pub dashboard: bool,
    pub exports: bool,
    pub ingestion: bool,
    pub campaigns: bool,
}

impl From<entitlement::Entitlements> for EntitlementRow {
    fn from(e: entitlement::Entitlements) -> Self {
        Self {
            dashboard: e.dashboard,
            exports: e.exports,
            ingestion: e.ingestion,
            campaigns: e.campaigns,
        }
    }
}

impl From<EntitlementRow> for entitlement::Entitlements {
    fn from(e: EntitlementRow) -> Self {
        Self {
            dashboard: e.dashboard,
            exports: e.exports,
            ingestion: e.ingestion,
            campaigns: e.campaigns,
        }
    }
}

impl Default for EntitlementSettings {
    fn default() -> Self {
        let m = entitlement::Matrix::default();
        Self {
            overage: m.overage.into(),
            payment_overdue: m.payment_overdue.into(),
            trial_expired: m.trial_expired.into(),
            manual: m.manual.into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Database {
    pub url: String,
    pub max_connections: u32,
    /// `acctd serve`'s coalesced point reads of orgs: how many batches may be in flight
    /// at once (see `storage::reads`); at most the pool's size is used.
    pub read_lanes: u32,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Daemon {
    pub sweep_every_seconds: u64,
    /// A sweep's first and smallest batch (orgs per transaction).
    pub batch_size: u32,
    /// Its largest batch; below `batch_size`, batches are all of `batch_size`.
    pub max_batch_size: u32,
    /// The time one batch should take: a full batch done in under half of it doubles
    /// the next one, one over it halves the next one.
    pub batch_target_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Lifecycle {
    pub trial_days: u32,
    pub grace_days: u32,
    pub cancel_after_lock_days: u32,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    pub level: String,
    pub format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Billing {
    pub currency: String,
    pub overage_multiplier: Decimal,
    pub tiers: Vec<u32>,
    pub max_self_serve_tier: u32,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub price_per_100_mau: Decimal,
    pub data_points_per_mau: u64,
    pub retention_days: u32,
    #[serde(default)]
    pub tier_prices: BTreeMap<String, Decimal>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Addon {
    pub name: String,
    pub price_per_100_mau: Decimal,
}
impl Default for Database {
    fn default() -> Self {
        Self {
            url: "sqlite://acctd.db?mode=rwc".to_owned(),
            max_connections: 8,
            read_lanes: 1,
        }
    }
}

impl Default for Daemon {
    fn default() -> Self {
        Self {
            sweep_every_seconds: 5,
            batch_size: 500,
            max_batch_size: 2_000,
            batch_target_ms: 250,
        }
    }
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            trial_days: 30,
            grace_days: 10,
            cancel_after_lock_days: 14,
        }
    }
}

impl Default for Log {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

impl Default for Billing {
    fn default() -> Self {
        Self {
            currency: "USD".to_owned(),
            overage_multiplier: dec("1.2"),
            tiers: vec![
                5_000, 10_000, 15_000, 20_000, 25_000, 30_000, 40_000, 50_000, 75_000, 100_000,
            ],
            max_self_serve_tier: 100_000,
        }
    }
}

pub(super) fn dec(s: &str) -> Decimal {
    // Proven invariant: only called with literal decimals written in this module.
    Decimal::from_str(s).expect("literal decimal")
}

/// The admin HTTP API served by `acctd serve` (see `src/api`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Api {
    /// Where the API listens; `acctd serve --listen ADDR` overrides it.
    pub listen: std::net::SocketAddr,
    /// Serve the test-clock endpoints (`/v1/test-clocks`); off in production.
    pub test_clocks: bool,
    /// Larger request bodies are refused with 413.
    pub max_body_bytes: usize,
    /// Bearer tokens, stored as SHA-256 hashes. More come from the environment variable
    /// `ACCTD_API_TOKENS` (`name:role:plaintext,...`), never from a file in plain text.
    pub tokens: Vec<ApiToken>,
}

/// One bearer token of the admin API; its name is the actor recorded in the audit trail.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    pub name: String,
    pub role: Role,
    /// Lowercase hex SHA-256 of the token, e.g. from `printf %s "$TOKEN" | sha256sum`.
    pub token_sha256: String,
}

/// What a token may do; a higher role includes the lower ones (SPEC section 10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read (`GET`).
    Viewer,
    /// Usage, payments, plan changes, payment methods, signup.
    Operator,
    /// Manual operations, cancellation, test clocks.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl Default for Api {
    fn default() -> Self {
        Self {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 8080)),
            test_clocks: false,
            max_body_bytes: 4 * 1024 * 1024,
            tokens: Vec::new(),
        }
    }
}
impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}
