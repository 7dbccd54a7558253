//! The rules a setting's value must follow, checked once the layers are merged; each
//! refusal names the offending key, which `load` then locates in its file.

use rust_decimal::Decimal;

use super::{Api, Settings};

impl Settings {
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
        if !(crate::storage::is_sqlite(&self.database.url)
            || self.database.url.starts_with("postgres"))
        {
            return fail(
                "database.url",
                format!(
                    "`{}` is neither sqlite:… nor postgres://…",
                    self.database.url
                ),
            );
        }
        if crate::storage::is_sqlite(&self.database.url) {
            if let Err(e) = crate::storage::SqliteUrl::parse(&self.database.url) {
                return fail(
                    "database.url",
                    format!("`{}` is not a SQLite URL: {e}", self.database.url),
                );
            }
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
        if let Some(bad) = unknown_log_level(&self.log.level) {
            let within = if bad == self.log.level.trim() {
                String::new()
            } else {
                format!("`{}`: ", self.log.level)
            };
            return fail(
                "log.level",
                format!(
                    "{within}`{bad}` is not a log level; use one of {}, alone or as target=level",
                    LOG_LEVELS.join(", ")
                ),
            );
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
        // One mailbox, as every message's `From`; a display name is fine there.
        match crate::notify::address::mailbox(&self.email.from) {
            Ok(_) => {}
            Err(crate::notify::address::AddressError::List(n)) => {
                return fail(
                    "email.from",
                    format!(
                        "`{}` is not one email address: it lists {n} addresses",
                        self.email.from
                    ),
                );
            }
            Err(_) => {
                return fail(
                    "email.from",
                    format!("`{}` is not an email address", self.email.from),
                );
            }
        }
        if let Some(ca_file) = &self.email.smtp.ca_file {
            if ca_file.is_empty() {
                return fail("email.smtp.ca_file", "must not be empty".into());
            }
            if self.email.smtp.tls == super::SmtpTls::None {
                return fail(
                    "email.smtp.ca_file",
                    "trusts a CA for TLS, but email.smtp.tls is none".into(),
                );
            }
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
                || reqwest::Url::parse(&endpoint.url).is_err()
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
/// The levels a `log.level` directive may set.
const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// The first level in a tracing filter (`warn,acctd=debug`) that is not one of
/// [`LOG_LEVELS`]. `EnvFilter` reads a bare word it does not know as a target to log at
/// every level (`verbose` is `verbose=trace`), and so a misspelt level would log nothing
/// of acctd's: here a directive's level must be named, alone or after `target=`. The
/// level is what follows the last `=` outside a span filter's brackets and braces
/// (`acctd[sweep{org=acme}]=debug`).
fn unknown_log_level(filter: &str) -> Option<&str> {
    filter
        .split(',')
        .map(str::trim)
        .filter(|directive| !directive.is_empty())
        .map(|directive| {
            let mut depth = 0_i32;
            let mut level_at = 0;
            for (i, c) in directive.char_indices() {
                match c {
                    '[' | '{' => depth += 1,
                    ']' | '}' => depth -= 1,
                    '=' if depth == 0 => level_at = i + 1,
                    _ => {}
                }
            }
            directive[level_at..].trim()
        })
        .find(|level| !LOG_LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)))
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
    use crate::config::{layer, Settings};

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
    fn email_from_is_one_mailbox_with_an_optional_name() {
        let l = layer("[email]\nfrom = \"a@x.com, b@y.com\"\n").unwrap();
        let err = Settings::from_layers(vec![l], std::iter::empty()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.toml:2: key `email.from`: `a@x.com, b@y.com` is not one email address: it lists 2 addresses"
        );
        let l = layer("[email]\nfrom = \"billing at example.com\"\n").unwrap();
        let err = Settings::from_layers(vec![l], std::iter::empty()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.toml:2: key `email.from`: `billing at example.com` is not an email address"
        );
        let l = layer("[email]\nfrom = \"acctd <billing@example.com>\"\n").unwrap();
        let s = Settings::from_layers(vec![l], std::iter::empty()).unwrap();
        assert_eq!(s.email.from, "acctd <billing@example.com>");
    }

    #[test]
    fn a_sqlite_url_sqlx_would_refuse_is_refused() {
        let l = layer("[database]\nurl = \"sqlite://acctd.db?mode=rwx\"\n").unwrap();
        let err = Settings::from_layers(vec![l], std::iter::empty()).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "c.toml:2: key `database.url`: `sqlite://acctd.db?mode=rwx` is not a SQLite URL: "
            ),
            "{err}"
        );
        assert!(err.to_string().contains("mode"), "{err}");
        for ok in [
            "sqlite:acctd.db",
            "sqlite://acctd.db?mode=rwc&cache=shared",
            "sqlite::memory:",
        ] {
            let l = layer(&format!("[database]\nurl = \"{ok}\"\n")).unwrap();
            assert!(
                Settings::from_layers(vec![l], std::iter::empty()).is_ok(),
                "{ok}"
            );
        }
    }

    #[test]
    fn an_unknown_log_level_is_refused_with_its_line() {
        for (level, message) in [
            (
                "verbose",
                "`verbose` is not a log level; use one of trace, debug, info, warn, error, off, alone or as target=level",
            ),
            (
                "warn,acctd=verbose",
                "`warn,acctd=verbose`: `verbose` is not a log level; use one of trace, debug, info, warn, error, off, alone or as target=level",
            ),
            (
                "acctd",
                "`acctd` is not a log level; use one of trace, debug, info, warn, error, off, alone or as target=level",
            ),
            (
                "info,acctd[sweep{org=acme}]=dbug",
                "`info,acctd[sweep{org=acme}]=dbug`: `dbug` is not a log level; use one of trace, debug, info, warn, error, off, alone or as target=level",
            ),
        ] {
            let l = layer(&format!("# logs\n[log]\nformat = \"text\"\nlevel = \"{level}\"\n")).unwrap();
            let err = Settings::from_layers(vec![l], std::iter::empty()).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("c.toml:4: key `log.level`: {message}"),
                "{level}"
            );
        }
        for level in [
            "info",
            "WARN",
            "off",
            "warn,acctd=debug,sea_orm=off",
            "acctd::engine=trace",
            "info,acctd[sweep{org=acme}]=debug",
        ] {
            let l = layer(&format!("[log]\nlevel = \"{level}\"\n")).unwrap();
            assert!(
                Settings::from_layers(vec![l], std::iter::empty()).is_ok(),
                "{level}"
            );
        }
    }

    #[test]
    fn an_smtp_ca_file_needs_tls() {
        let l = layer("[email.smtp]\ntls = \"none\"\nca_file = \"ca.pem\"\n").unwrap();
        let err = Settings::from_layers(vec![l], std::iter::empty()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.toml:3: key `email.smtp.ca_file`: trusts a CA for TLS, but email.smtp.tls is none"
        );
        let l = layer("[email.smtp]\nca_file = \"\"\n").unwrap();
        let err = Settings::from_layers(vec![l], std::iter::empty()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.toml:2: key `email.smtp.ca_file`: must not be empty"
        );
        let l = layer("[email.smtp]\ntls = \"tls\"\nca_file = \"ca.pem\"\n").unwrap();
        let s = Settings::from_layers(vec![l], std::iter::empty()).unwrap();
        assert_eq!(s.email.smtp.ca_file.as_deref(), Some("ca.pem"));
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
}
