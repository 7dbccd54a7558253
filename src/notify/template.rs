//! Email templates (minijinja), one plain-text source per kind under `templates/email/`,
//! rendered as the text part and, through `layout.html.j2` (escaped), as the HTML part.

use chrono::{DateTime, Utc};
use minijinja::value::Serde;
use minijinja::{Environment, Value};

macro_rules! sources {
    ($($name:literal),* $(,)?) => {
        [$(($name, include_str!(concat!("../../templates/email/", $name, ".txt.j2")))),*]
    };
}

/// Every template SPEC section 6 names, with its source.
const SOURCES: [(&str, &str); 14] = sources!(
    "trial_ending",
    "trial_ended",
    "payment_failed",
    "grace_ending",
    "account_locked",
    "cancel_warning",
    "overage_alert",
    "overage_locked",
    "account_unlocked",
    "invoice",
    "downgrade_scheduled",
    "downgrade_applied",
    "addon_changed",
    "canceled",
);

/// The names of every template.
pub fn kinds() -> [&'static str; 14] {
    SOURCES.map(|(name, _)| name)
}

const LAYOUT: &str = include_str!("../../templates/email/layout.html.j2");

/// A rendered message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// A template that is missing or failed to render.
#[derive(Debug, thiserror::Error)]
#[error("template `{template}`: {message}")]
pub struct Error {
    pub template: String,
    pub message: String,
}

/// The compiled templates.
pub struct Templates {
    env: Environment<'static>,
}

fn parse_time(value: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    /// Compiles every template.
    ///
    /// # Panics
    /// If a bundled template does not compile (a build defect, caught by the tests).
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.add_filter("day", |v: String| {
            parse_time(&v).map_or(v, |t| t.format("%B %-d, %Y").to_string())
        });
        env.add_filter("clock", |v: String| {
            parse_time(&v).map_or(v, |t| t.format("%H:%M").to_string())
        });
        for (name, source) in SOURCES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("bundled template {name} does not compile: {e}"));
        }
        env.add_template("layout.html", LAYOUT)
            .unwrap_or_else(|e| panic!("bundled layout does not compile: {e}"));
        Self { env }
    }

    /// Renders a template with the message's payload (the facts it states).
    ///
    /// # Errors
    /// An unknown template or a rendering failure.
    pub fn render(&self, template: &str, payload: &serde_json::Value) -> Result<Rendered, Error> {
        let fail = |message: String| Error {
            template: template.to_owned(),
            message,
        };
        let tpl = self
            .env
            .get_template(template)
            .map_err(|_| fail("no such template".to_owned()))?;
        let render = |html: bool| {
            let mut ctx = payload.clone();
            if let Some(map) = ctx.as_object_mut() {
                map.insert("html".into(), html.into());
            }
            tpl.render(Value::from(Serde(&ctx)))
                .map_err(|e| fail(e.to_string()))
        };
        let text = render(false)?;
        let (subject, body) = split_subject(&text)
            .ok_or_else(|| fail("first line must be `Subject: …`".to_owned()))?;
        let html_source = render(true)?;
        let (_, html_body) = split_subject(&html_source).unwrap_or(("", &html_source));
        let paragraphs: Vec<&str> = html_body
            .split("\n\n")
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        let mut ctx = payload.clone();
        if let Some(map) = ctx.as_object_mut() {
            map.insert("subject".into(), subject.into());
            map.insert("paragraphs".into(), paragraphs.into());
        }
        let layout = self
            .env
            .get_template("layout.html")
            .map_err(|e| fail(e.to_string()))?;
        let html = layout
            .render(Value::from(Serde(&ctx)))
            .map_err(|e| fail(e.to_string()))?;
        Ok(Rendered {
            subject: subject.to_owned(),
            text: body.trim().to_owned() + "\n",
            html,
        })
    }
}

fn split_subject(text: &str) -> Option<(&str, &str)> {
    let (first, rest) = text.split_once('\n')?;
    Some((first.strip_prefix("Subject: ")?.trim(), rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload() -> serde_json::Value {
        json!({
            "org": "acme", "at": "2026-04-11T00:00:00Z", "state": "locked",
            "lock_reasons": ["payment_overdue"], "trial_ends_at": "2026-04-01T09:30:00Z",
            "grace_ends_at": "2026-04-11T00:00:00Z", "cancel_at": "2026-04-25T00:00:00Z",
            "plan": "basic", "tier": 20000, "payment_method": true,
            "invoice": 7, "period": "2026-04", "currency": "USD", "total": "246.40",
            "lines": [{"kind": "base", "description": "basic plan <20000> MAU", "amount": "200.00"}],
            "threshold": 125, "usage_mau": 25001, "usage_percent": "125.01",
            "upgrade_hint": "upgrade to the 30000 MAU tier", "addons": ["journeys"],
            "scheduled_tier": 10000, "scheduled_removals": [], "effective": "2026-05-01T00:00:00Z",
        })
    }

    #[test]
    fn every_kind_renders_a_subject_and_both_parts() {
        let templates = Templates::new();
        for kind in kinds() {
            let r = templates.render(kind, &payload()).unwrap();
            assert!(!r.subject.is_empty() && !r.subject.contains('\n'), "{kind}");
            assert!(r.text.contains("acme"), "{kind}: {}", r.text);
            assert!(
                r.html.starts_with("<!doctype html>") && r.html.contains("acme"),
                "{kind}"
            );
        }
    }

    #[test]
    fn messages_state_the_facts_and_escape_html() {
        let t = Templates::new();
        let locked = t.render("account_locked", &payload()).unwrap();
        assert!(
            locked.text.contains("April 25, 2026 at 00:00 UTC"),
            "{}",
            locked.text
        );
        let invoice = t.render("invoice", &payload()).unwrap();
        assert_eq!(invoice.subject, "Invoice 7 for acme: USD 246.40");
        assert!(invoice.text.contains("Total: USD 246.40"));
        assert!(
            invoice.html.contains("basic plan &lt;20000&gt; MAU"),
            "{}",
            invoice.html
        );
        let alert = t.render("overage_alert", &payload()).unwrap();
        assert!(
            alert.text.contains("125%")
                && alert.text.contains("25001")
                && alert.text.contains("30000")
        );
    }
}
