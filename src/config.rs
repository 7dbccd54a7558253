//! Settings: defaults in code, then `config.toml` (or `--config PATH`), then
//! `config.local.toml` beside it, then environment variables `ACCTD__SECTION__KEY`.
//! Every layer is merged key by key, then validated once.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::domain::{self, entitlement, price};

/// A configuration problem, located in its file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {message}")]
    Parse {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}:{line}: key `{key}`: {message}")]
    Invalid {
        file: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What to say about a refused plan, tier or add-on: the error's own message, except for
/// an add-on while the catalog is empty (the built-in default), where listing the choices
/// would list nothing: say how to configure one instead.
#[must_use]
pub fn price_error_message(e: &price::PriceError) -> String {
    match e {
        price::PriceError::UnknownAddon(addon, choices) if choices.is_empty() => format!(
            "unknown add-on `{addon}`: the add-on catalog is empty; define add-ons in the \
             config as `[addons.ID]` with `name` and `price_per_100_mau` (config.toml shows \
             an example)"
        ),
        other => other.to_string(),
    }
}

/// Settings that load and validate but cannot be used: a database that cannot be opened
/// or reached, malformed API tokens, an email transport or webhook that cannot be built.
/// Like an [`Error`], this is bad configuration: `acctd` says so in one line and exits 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unusable(pub String);

/// Every setting of acctd. See `config.toml` for each key's meaning.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub database: Database,
    pub daemon: Daemon,
    pub lifecycle: Lifecycle,
    pub log: Log,
    pub billing: Billing,
    pub usage: UsageSettings,
    pub entitlements: EntitlementSettings,
    pub email: Email,
    pub notify: Notify,
    pub webhooks: Webhooks,
    pub plans: BTreeMap<String, Plan>,
    pub addons: BTreeMap<String, Addon>,
    pub api: Api,
    pub simulation: Simulation,
}

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

impl Default for Settings {
    fn default() -> Self {
        let plan = |price: &str, points, days| Plan {
            price_per_100_mau: dec(price),
            data_points_per_mau: points,
            retention_days: days,
            tier_prices: BTreeMap::new(),
        };
        Self {
            database: Database::default(),
            daemon: Daemon::default(),
            lifecycle: Lifecycle::default(),
            log: Log::default(),
            billing: Billing::default(),
            usage: UsageSettings::default(),
            entitlements: EntitlementSettings::default(),
            email: Email::default(),
            notify: Notify::default(),
            webhooks: Webhooks::default(),
            plans: BTreeMap::from([
                ("basic".to_owned(), plan("1.00", 2_000, 365)),
                ("essentials".to_owned(), plan("1.25", 10_000, 3 * 365)),
            ]),
            addons: BTreeMap::new(),
            api: Api::default(),
            simulation: Simulation::default(),
        }
    }
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

fn dec(s: &str) -> Decimal {
    // Proven invariant: only called with literal decimals written in this file.
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

impl Api {
    /// Checks the API settings; returns the offending key and why.
    ///
    /// # Errors
    /// `(key, message)` for the first invalid value.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.max_body_bytes < 1024 {
            return Err(("api.max_body_bytes".into(), "must be at least 1024".into()));
        }
        let mut names = std::collections::BTreeSet::new();
        for token in &self.tokens {
            if !valid_name(&token.name) {
                return Err((
                    "api.tokens".into(),
                    format!(
                        "token name `{}` must be 1 to 64 characters without `:`, `,` or spaces",
                        token.name
                    ),
                ));
            }
            if !names.insert(token.name.as_str()) {
                return Err((
                    "api.tokens".into(),
                    format!("token name `{}` is used twice", token.name),
                ));
            }
            if parse_sha256(&token.token_sha256).is_none() {
                return Err((
                    "api.tokens".into(),
                    format!("token `{}`: token_sha256 must be 64 hex digits", token.name),
                ));
            }
        }
        Ok(())
    }
}

/// The default config file, read if present.
pub const DEFAULT_PATH: &str = "config.toml";

/// A layer of TOML with the file it came from, for error messages.
pub struct Layer {
    pub file: PathBuf,
    pub text: String,
    pub table: toml::Table,
}

impl Layer {
    /// Reads and parses a TOML file, checking its keys against [`Settings`] so that an
    /// unknown key or a wrong type is reported with its line.
    ///
    /// # Errors
    /// [`Error::Read`] or [`Error::Parse`].
    pub fn read(file: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(file).map_err(|source| Error::Read {
            file: file.to_owned(),
            source,
        })?;
        Self::parse(file, text)
    }

    /// Parses TOML text that stands for a whole settings file.
    ///
    /// # Errors
    /// [`Error::Parse`].
    pub fn parse(file: &Path, text: String) -> Result<Self> {
        let located = |e: toml::de::Error| {
            let (line, column) = e.span().map_or((1, 1), |span| line_col(&text, span.start));
            let message = e.message().trim();
            // A wrong value says which value, not which key: name the key too.
            let message = match e.span().and_then(|span| key_at(&text, span.start)) {
                Some(key) if !message.contains(&format!("`{key}`")) => {
                    format!("key `{key}`: {message}")
                }
                _ => message.to_owned(),
            };
            Error::Parse {
                file: file.to_owned(),
                line,
                column,
                message,
            }
        };
        let table: toml::Table = toml::from_str(&text).map_err(located)?;
        // Checked alone, a layer reports unknown keys and wrong types at their line. A
        // missing field is fine here: an overlay may set part of a table (one tier
        // price), and the merged settings are checked again.
        if let Err(e) = toml::from_str::<Settings>(&text) {
            if !e.message().starts_with("missing field") {
                return Err(located(e));
            }
        }
        Ok(Self {
            file: file.to_owned(),
            text,
            table,
        })
    }
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// The line where a dotted key is set (or its table opens), found by walking the table
/// headers; a key may be given by its last segments only.
pub fn line_of_key(text: &str, key: &str) -> Option<usize> {
    if key.is_empty() {
        return None;
    }
    let mut table = String::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[') {
            table = header
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .replace('"', "");
            if table == key || table.ends_with(&format!(".{key}")) {
                return Some(index + 1);
            }
            continue;
        }
        if let Some((name, _)) = line.split_once('=') {
            let name = name.trim().replace('"', "");
            let full = if table.is_empty() {
                name
            } else {
                format!("{table}.{name}")
            };
            if full == key || full.ends_with(&format!(".{key}")) {
                return Some(index + 1);
            }
        }
    }
    None
}

/// The dotted key set on the line holding byte `offset` (the table header's key on a
/// header line), found by walking the table headers above it.
pub fn key_at(text: &str, offset: usize) -> Option<String> {
    let (target, _) = line_col(text, offset);
    let mut table = String::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[') {
            table = header
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .replace('"', "");
            if index + 1 == target {
                return Some(table);
            }
            continue;
        }
        if index + 1 == target {
            let (name, _) = line.split_once('=')?;
            let name = name.trim().replace('"', "");
            return Some(if table.is_empty() {
                name
            } else {
                format!("{table}.{name}")
            });
        }
    }
    None
}

/// Merges `overlay` into `base`, key by key (tables recursively, other values replaced).
pub fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(into)), toml::Value::Table(from)) => merge(into, from),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The environment prefix: `ACCTD__DATABASE__URL` sets `database.url`.
pub const ENV_PREFIX: &str = "ACCTD__";

impl Settings {
    /// These settings with a `[config]` table of overrides (a scenario's) merged on top,
    /// validated; errors are located in `file`.
    ///
    /// # Errors
    /// An unknown key, a wrong type or an invalid value in the overrides.
    pub fn with_overrides(&self, file: &Path, text: &str, overrides: toml::Table) -> Result<Self> {
        let mut table = toml::Table::try_from(self).map_err(|e| Error::Invalid {
            file: file.to_owned(),
            line: 1,
            key: String::new(),
            message: e.to_string(),
        })?;
        let sources = [(file.to_owned(), text.to_owned())];
        // The overrides alone first, as TOML text, so that a wrong type or value is
        // reported with its key (and so its line in `text`), not with the value only.
        if let Ok(alone) = toml::to_string(&overrides) {
            if let Err(e) = toml::from_str::<Settings>(&alone) {
                if !e.message().starts_with("missing field") {
                    let key = e
                        .span()
                        .and_then(|span| key_at(&alone, span.start))
                        .unwrap_or_default();
                    return Err(invalid_at(&sources, &key, e.message().trim()));
                }
            }
        }
        merge(&mut table, overrides);
        let settings: Settings = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| invalid_at(&sources, "", e.message().trim()))?;
        settings
            .validate()
            .map_err(|(key, message)| invalid_at(&sources, &key, &message))?;
        Ok(settings)
    }

    /// Loads the layers: defaults, the file (`path`, or `config.toml` if it exists),
    /// `config.local.toml` beside it, then the environment; validates the result.
    ///
    /// # Errors
    /// A missing explicit file, a parse error, an invalid value or environment variable.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let file = path.map_or_else(|| PathBuf::from(DEFAULT_PATH), Path::to_path_buf);
        let mut layers = Vec::new();
        if path.is_some() || file.exists() {
            layers.push(Layer::read(&file)?);
            let local = file.with_file_name("config.local.toml");
            if local.exists() {
                layers.push(Layer::read(&local)?);
            }
        }
        Self::from_layers(layers, std::env::vars())
    }

    /// Builds settings from parsed layers and environment variables, then validates.
    ///
    /// # Errors
    /// An invalid merged value (located in the last layer that sets it) or variable.
    pub fn from_layers(
        layers: Vec<Layer>,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Self> {
        let mut table = toml::Table::try_from(Settings::default())
            .map_err(|e| invalid_in(&layers, "", &e.to_string()))?;
        let sources: Vec<(PathBuf, String)> = layers
            .iter()
            .map(|l| (l.file.clone(), l.text.clone()))
            .collect();
        for layer in layers {
            merge(&mut table, layer.table);
        }
        let mut env: Vec<(String, String)> =
            env.filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
        env.sort();
        for (var, value) in &env {
            let path: Vec<String> = var[ENV_PREFIX.len()..]
                .split("__")
                .map(str::to_lowercase)
                .collect();
            set_path(&mut table, &path, parse_env_value(value));
        }
        let settings: Settings =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| match env.first() {
                    Some((var, _)) => Error::Env {
                        var: var.clone(),
                        message: e.message().trim().to_owned(),
                    },
                    None => invalid_at(&sources, "", e.message().trim()),
                })?;
        settings
            .validate()
            .map_err(|(key, message)| invalid_at(&sources, &key, &message))?;
        Ok(settings)
    }

    /// Checks every rule a value must follow; returns the offending key and why.
    ///
    /// # Errors
    /// `(key, message)` for the first invalid value.
    pub fn validate(&self) -> Result<(), (String, String)> {
        self.api.validate()?;
        let fail = |key: &str, message: String| Err((key.to_owned(), message));
        if self.database.url.is_empty() {
            return fail("database.url", "must not be empty".into());
        }
        if !(self.database.url.starts_with("sqlite:") || self.database.url.starts_with("postgres"))
        {
            return fail(
                "database.url",
                format!(
                    "`{}` is neither sqlite:… nor postgres://…",
                    self.database.url
                ),
            );
        }
        if self.database.read_lanes == 0 {
            return fail("database.read_lanes", "must be at least 1".into());
        }
        if self.daemon.sweep_every_seconds == 0 {
            return fail("daemon.sweep_every_seconds", "must be at least 1".into());
        }
        if self.daemon.batch_size == 0 {
            return fail("daemon.batch_size", "must be at least 1".into());
        }
        if self.daemon.batch_target_ms == 0 {
            return fail("daemon.batch_target_ms", "must be at least 1".into());
        }
        for (key, days) in [
            ("lifecycle.trial_days", self.lifecycle.trial_days),
            ("lifecycle.grace_days", self.lifecycle.grace_days),
            (
                "lifecycle.cancel_after_lock_days",
                self.lifecycle.cancel_after_lock_days,
            ),
        ] {
            if days == 0 || days > 3650 {
                return fail(key, format!("{days} days is out of range 1..=3650"));
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return fail(
                "log.level",
                format!("`{}` is not a log filter", self.log.level),
            );
        }
        if self.billing.currency.len() != 3
            || !self
                .billing
                .currency
                .chars()
                .all(|c| c.is_ascii_uppercase())
        {
            return fail(
                "billing.currency",
                format!("`{}` is not an ISO 4217 code", self.billing.currency),
            );
        }
        if self.billing.overage_multiplier < Decimal::ONE {
            return fail("billing.overage_multiplier", "must be at least 1".into());
        }
        if self.billing.tiers.is_empty() || self.billing.tiers.contains(&0) {
            return fail(
                "billing.tiers",
                "must list at least one tier, none of them 0".into(),
            );
        }
        if let Some(tier) = self
            .billing
            .tiers
            .iter()
            .find(|t| **t > self.billing.max_self_serve_tier)
        {
            return fail(
                "billing.tiers",
                format!(
                    "tier {tier} is above billing.max_self_serve_tier ({})",
                    self.billing.max_self_serve_tier
                ),
            );
        }
        let thresholds = &self.usage.alert_thresholds;
        if thresholds.contains(&0) || thresholds.windows(2).any(|w| w[0] >= w[1]) {
            return fail(
                "usage.alert_thresholds",
                "must be positive and strictly increasing".into(),
            );
        }
        if self.usage.lock_above_percent < 100 {
            return fail("usage.lock_above_percent", "must be at least 100".into());
        }
        if self.email.from.parse::<lettre::message::Mailbox>().is_err() {
            return fail(
                "email.from",
                format!("`{}` is not an email address", self.email.from),
            );
        }
        if self.notify.max_attempts == 0
            || self.notify.batch_size == 0
            || self.notify.poll_seconds == 0
        {
            return fail(
                "notify",
                "max_attempts, batch_size and poll_seconds must be at least 1".into(),
            );
        }
        if self.simulation.max_orgs == 0 || self.simulation.max_years == 0 {
            return fail(
                "simulation",
                "max_orgs and max_years must be at least 1".into(),
            );
        }
        if self.notify.max_admins_per_org == 0 {
            return fail("notify.max_admins_per_org", "must be at least 1".into());
        }
        // A send (cut at three times the SMTP timeout, see `Mailer::send`) must end within
        // the lease renewed right before it, or another dispatcher may send it too.
        let longest_send = self.email.smtp.timeout_seconds.max(1).saturating_mul(3);
        if self.notify.lease_seconds <= longest_send {
            return fail(
                "notify.lease_seconds",
                format!(
                    "{} must be more than 3 × email.smtp.timeout_seconds ({longest_send}), the longest a send may take",
                    self.notify.lease_seconds
                ),
            );
        }
        if self.notify.backoff_base_seconds == 0
            || self.notify.backoff_max_seconds < self.notify.backoff_base_seconds
        {
            return fail(
                "notify.backoff_max_seconds",
                "must be at least backoff_base_seconds, which must be positive".into(),
            );
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, endpoint) in self.webhooks.endpoints.iter().enumerate() {
            let key = format!("webhooks.endpoints[{i}]");
            if endpoint.name.is_empty() || !names.insert(endpoint.name.as_str()) {
                return fail(
                    &format!("{key}.name"),
                    format!("`{}` must be non-empty and unique", endpoint.name),
                );
            }
            if !(endpoint.url.starts_with("http://") || endpoint.url.starts_with("https://"))
                || endpoint.url.parse::<hyper::Uri>().is_err()
            {
                return fail(
                    &format!("{key}.url"),
                    format!("`{}` is not an http(s) URL", endpoint.url),
                );
            }
            if endpoint.secret_env.is_empty() {
                return fail(
                    &format!("{key}.secret_env"),
                    "names the environment variable holding the secret".into(),
                );
            }
        }
        if self.plans.is_empty() {
            return fail("plans", "at least one plan is required".into());
        }
        for (name, plan) in &self.plans {
            if plan.price_per_100_mau.is_sign_negative() {
                return fail(
                    &format!("plans.{name}.price_per_100_mau"),
                    "must not be negative".into(),
                );
            }
            if plan.data_points_per_mau == 0 {
                return fail(
                    &format!("plans.{name}.data_points_per_mau"),
                    "must be at least 1".into(),
                );
            }
            for (tier, price) in &plan.tier_prices {
                let ok = tier
                    .parse::<u32>()
                    .is_ok_and(|t| self.billing.tiers.contains(&t));
                if !ok {
                    return fail(
                        &format!("plans.{name}.tier_prices.{tier}"),
                        format!("`{tier}` is not one of billing.tiers"),
                    );
                }
                if price.is_sign_negative() {
                    return fail(
                        &format!("plans.{name}.tier_prices.{tier}"),
                        "must not be negative".into(),
                    );
                }
            }
        }
        for (id, addon) in &self.addons {
            if addon.price_per_100_mau.is_sign_negative() {
                return fail(
                    &format!("addons.{id}.price_per_100_mau"),
                    "must not be negative".into(),
                );
            }
        }
        Ok(())
    }

    /// The rules the engine and its planner apply.
    pub fn rules(&self) -> domain::plan::Rules {
        domain::plan::Rules {
            timers: self.timers(),
            prices: self.price_book(),
            entitlements: self.entitlements(),
            currency: self.billing.currency.clone(),
            batch_size: u64::from(self.daemon.batch_size),
            max_batch_size: u64::from(self.daemon.max_batch_size),
            batch_target: std::time::Duration::from_millis(self.daemon.batch_target_ms),
            alert_thresholds: self.usage.alert_thresholds.clone(),
            lock_above_percent: self.usage.lock_above_percent,
            reminder_days: self.notify.reminder_days,
            max_admins: usize::try_from(self.notify.max_admins_per_org).unwrap_or(usize::MAX),
            webhooks: self
                .webhooks
                .endpoints
                .iter()
                .map(|e| e.name.clone())
                .collect(),
        }
    }

    /// The lifecycle timers.
    pub fn timers(&self) -> domain::Timers {
        domain::Timers {
            trial: chrono::Duration::days(i64::from(self.lifecycle.trial_days)),
            grace: chrono::Duration::days(i64::from(self.lifecycle.grace_days)),
            lock_to_cancel: chrono::Duration::days(i64::from(
                self.lifecycle.cancel_after_lock_days,
            )),
        }
    }

    /// The price book the billing code reads.
    pub fn price_book(&self) -> price::PriceBook {
        price::PriceBook {
            plans: self
                .plans
                .iter()
                .map(|(name, plan)| {
                    let tier_prices = plan
                        .tier_prices
                        .iter()
                        .filter_map(|(tier, price)| Some((tier.parse().ok()?, *price)))
                        .collect();
                    (
                        name.clone(),
                        price::PlanPrice {
                            price_per_100_mau: plan.price_per_100_mau,
                            data_points_per_mau: plan.data_points_per_mau,
                            tier_prices,
                        },
                    )
                })
                .collect(),
            addons: self
                .addons
                .iter()
                .map(|(id, addon)| {
                    (
                        id.clone(),
                        price::AddonPrice {
                            name: addon.name.clone(),
                            price_per_100_mau: addon.price_per_100_mau,
                        },
                    )
                })
                .collect(),
            tiers: self.billing.tiers.clone(),
            max_self_serve_tier: self.billing.max_self_serve_tier,
            overage_multiplier: self.billing.overage_multiplier,
        }
    }

    /// The entitlement matrix.
    pub fn entitlements(&self) -> entitlement::Matrix {
        let e = &self.entitlements;
        entitlement::Matrix {
            overage: e.overage.into(),
            payment_overdue: e.payment_overdue.into(),
            trial_expired: e.trial_expired.into(),
            manual: e.manual.into(),
        }
    }
}

fn invalid_in(layers: &[Layer], key: &str, message: &str) -> Error {
    let sources: Vec<(PathBuf, String)> = layers
        .iter()
        .map(|l| (l.file.clone(), l.text.clone()))
        .collect();
    invalid_at(&sources, key, message)
}

/// Locates `key` in the last layer that mentions it. Without a key, the first name in
/// backticks in the message (serde's "unknown field `x`") is looked up instead.
fn invalid_at(sources: &[(PathBuf, String)], key: &str, message: &str) -> Error {
    let named = message.split('`').nth(1).unwrap_or_default();
    let key = if key.is_empty() { named } else { key };
    let found = sources
        .iter()
        .rev()
        .find_map(|(file, text)| line_of_key(text, key).map(|line| (file.clone(), line)));
    let (file, line) = found.unwrap_or_else(|| {
        let file = sources
            .last()
            .map_or_else(|| PathBuf::from("(defaults)"), |(f, _)| f.clone());
        (file, 1)
    });
    Error::Invalid {
        file,
        line,
        key: key.to_owned(),
        message: message.to_owned(),
    }
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    match path {
        [] => {}
        [last] => {
            table.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(inner) = entry {
                set_path(inner, rest, value);
            }
        }
    }
}

/// An environment value is read as a TOML value if it parses as one (numbers, booleans,
/// arrays, quoted strings), else as a plain string.
fn parse_env_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// Parses 64 hex digits (either case) into a hash.
pub fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A token name: 1 to 64 characters, none of them `:`, `,` or whitespace.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= 64
        && !name.contains(|c: char| c == ':' || c == ',' || c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(text: &str) -> Result<Layer> {
        Layer::parse(Path::new("c.toml"), text.to_owned())
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err = layer("[lifecycle]\ngrace_days = 5\ngrace_dayz = 3\n")
            .err()
            .unwrap();
        let msg = err.to_string();
        assert!(msg.starts_with("c.toml:3:"), "{msg}");
        assert!(msg.contains("grace_dayz"), "{msg}");
    }

    #[test]
    fn a_wrong_value_names_its_key_and_line() {
        let err = layer("# defaults\n\n[lifecycle]\ngrace_days = -3\n")
            .err()
            .unwrap();
        let msg = err.to_string();
        assert!(
            msg.starts_with("c.toml:4:") && msg.contains("key `lifecycle.grace_days`"),
            "{msg}"
        );
        let scenario = "start = \"2026-03-01T00:00:00Z\"\n[config.lifecycle]\ngrace_days = -5\n";
        let overrides: toml::Table = toml::from_str("[lifecycle]\ngrace_days = -5\n").unwrap();
        let err = Settings::default()
            .with_overrides(Path::new("s.toml"), scenario, overrides)
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("s.toml:3: key `lifecycle.grace_days`:"),
            "{msg}"
        );
    }

    #[test]
    fn invalid_value_is_located() {
        let l = layer("[daemon]\nbatch_size = 0\n").unwrap();
        let err = Settings::from_layers(vec![l], std::iter::empty()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.toml:2: key `daemon.batch_size`: must be at least 1"
        );
    }

    #[test]
    fn zero_read_lanes_are_refused() {
        let l = layer("[database]\nread_lanes = 0\n").unwrap();
        let err = Settings::from_layers(vec![l], std::iter::empty()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.toml:2: key `database.read_lanes`: must be at least 1"
        );
        let l = layer("[database]\nread_lanes = 3\n").unwrap();
        assert_eq!(
            Settings::from_layers(vec![l], std::iter::empty())
                .unwrap()
                .database
                .read_lanes,
            3
        );
    }

    #[test]
    fn a_lease_shorter_than_a_send_is_refused() {
        let l =
            layer("[email.smtp]\ntimeout_seconds = 10\n[notify]\nlease_seconds = 30\n").unwrap();
        let err = Settings::from_layers(vec![l], std::iter::empty()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("c.toml:4: key `notify.lease_seconds`: 30 must be more than"),
            "{err}"
        );
        let l =
            layer("[email.smtp]\ntimeout_seconds = 10\n[notify]\nlease_seconds = 31\n").unwrap();
        assert!(Settings::from_layers(vec![l], std::iter::empty()).is_ok());
    }

    #[test]
    fn a_zero_batch_target_is_refused() {
        let l = layer("[daemon]\nbatch_target_ms = 0\n").unwrap();
        let err = Settings::from_layers(vec![l], std::iter::empty()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.toml:2: key `daemon.batch_target_ms`: must be at least 1"
        );
    }

    #[test]
    fn layers_merge_key_by_key_and_env_wins() {
        let l = layer("[plans.essentials.tier_prices]\n20000 = \"200.00\"\n").unwrap();
        let env = [("ACCTD__LIFECYCLE__GRACE_DAYS".to_owned(), "7".to_owned())];
        let s = Settings::from_layers(vec![l], env.into_iter()).unwrap();
        assert_eq!(s.lifecycle.grace_days, 7);
        assert_eq!(s.plans["essentials"].price_per_100_mau, dec("1.25"));
        assert_eq!(s.plans["essentials"].tier_prices["20000"], dec("200.00"));
        assert_eq!(s.plans.len(), 2);
    }

    #[test]
    fn committed_config_file_equals_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
        let l = Layer::read(&path).unwrap();
        let mut s = Settings::from_layers(vec![l], std::iter::empty()).unwrap();
        // Besides the defaults, the file ships one example add-on (the built-in catalog is
        // empty), which the README's walkthrough uses.
        let example = s.addons.remove("journeys").expect("the example add-on");
        assert_eq!(example.price_per_100_mau, dec("0.10"));
        assert_eq!(s, Settings::default());
    }
}
