//! Settings: defaults in code, then `config.toml` (or `--config PATH`), then
//! `config.local.toml` beside it, then environment variables `ACCTD__SECTION__KEY`.
//! Every layer is merged key by key, then validated once.
//!
//! This module holds [`Settings`], its errors and the loading entry points
//! ([`Settings::load`], [`Settings::from_layers`], [`Settings::with_overrides`]); the
//! section structs are in `types`, the TOML layers and error location in `load`, the
//! value checks in `validate`, and what the settings mean to the engine in `rules`.

mod load;
mod rules;
mod types;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::domain::price;

use load::{invalid_at, invalid_in, parse_env_value, set_path};
pub use load::{key_at, line_col, line_of_key, merge, Layer, DEFAULT_PATH, ENV_PREFIX};
use types::dec;
pub use types::{
    Addon, Api, ApiToken, Billing, Daemon, Database, Email, EmailTransport, EntitlementRow,
    EntitlementSettings, Lifecycle, Log, LogFormat, Notify, Plan, Role, Simulation, Smtp, SmtpTls,
    UsageSettings, WebhookEndpoint, Webhooks,
};
pub use validate::{parse_sha256, valid_name};

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
}

/// A layer named `c.toml`, for the tests of every part of this module.
#[cfg(test)]
fn layer(text: &str) -> Result<Layer> {
    Layer::parse(Path::new("c.toml"), text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

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
