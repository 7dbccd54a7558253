//! Scenario files (SPEC section 9): parsed with spans so that every error names the file,
//! the line and the key.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use toml::Spanned;

use crate::config::line_col;
use crate::domain::plan::{FieldError, Kind, FIELDS};
use crate::domain::{LockReason, Status};
use crate::engine::Command;

/// A scenario the simulator refuses to run: exit code 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub file: PathBuf,
    pub line: usize,
    pub key: String,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        } else {
            write!(
                f,
                "{}:{}: key `{}`: {}",
                self.file.display(),
                self.line,
                self.key,
                self.message
            )
        }
    }
}

impl std::error::Error for Error {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    start: Spanned<String>,
    until: Spanned<String>,
    #[serde(default)]
    config: Option<toml::Table>,
    #[serde(default)]
    org: Vec<RawOrg>,
    #[serde(default)]
    step: Vec<RawStep>,
    #[serde(default)]
    expect: Vec<RawExpect>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrg {
    id: Spanned<String>,
    plan: Spanned<String>,
    tier: Spanned<u32>,
    admins: Spanned<Vec<String>>,
    billing_email: Option<Spanned<String>>,
    #[serde(default)]
    payment_method: bool,
    state: Option<Spanned<String>>,
    #[serde(default)]
    addons: Vec<String>,
    signup_at: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    at: Spanned<String>,
    org: Spanned<String>,
    action: Spanned<String>,
    project: Option<Spanned<String>>,
    mau: Option<Spanned<u64>>,
    data_points: Option<Spanned<u64>>,
    correction: Option<Spanned<bool>>,
    tier: Option<Spanned<u32>>,
    addon: Option<Spanned<String>>,
    confirm: Option<Spanned<String>>,
    reason: Option<Spanned<String>>,
    op: Option<Spanned<String>>,
    actor: Option<Spanned<String>>,
    days: Option<Spanned<u32>>,
    lock_reason: Option<Spanned<String>>,
    to: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    at: Spanned<String>,
    org: Spanned<String>,
    state: Option<Spanned<String>>,
    lock_reasons: Option<Spanned<Vec<String>>>,
    entitlements: Option<Spanned<BTreeMap<String, bool>>>,
}

/// A parsed, validated scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub file: PathBuf,
    pub text: String,
    pub start: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub config: Option<toml::Table>,
    pub orgs: Vec<Org>,
    pub steps: Vec<Step>,
    pub expects: Vec<Expect>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Org {
    pub id: String,
    pub plan: String,
    pub tier: u32,
    pub admins: Vec<String>,
    pub billing_email: Option<String>,
    pub payment_method: bool,
    pub active: bool,
    pub addons: Vec<String>,
    pub signup_at: DateTime<Utc>,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Usage {
        project: String,
        mau: u64,
        data_points: u64,
        correction: bool,
    },
    CardDeclined,
    CardUpdated,
    /// A command the org asks for itself (a customer row of the command table, named by
    /// `action`): the org is the actor; the reason is the one given (`cancel` takes one)
    /// or else the action's name.
    Customer {
        command: Command,
        reason: String,
    },
    /// A manual operation (a manual row of the command table, named by `op`).
    Admin {
        command: Command,
        actor: String,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub at: DateTime<Utc>,
    pub org: String,
    /// The action's name as written.
    pub name: String,
    pub action: Action,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    pub at: DateTime<Utc>,
    pub org: String,
    pub state: Option<Status>,
    pub lock_reasons: Option<Vec<LockReason>>,
    pub entitlements: BTreeMap<String, bool>,
    pub line: usize,
}

/// The actions that run no command of their own; the others are the customer rows of the
/// command table.
const ACTIONS: &str = "usage, card_declined, card_updated, admin, ";

#[derive(Clone, Copy)]
struct Ctx<'a> {
    file: &'a Path,
    /// Byte offset of each line's start, for line numbers in O(log n).
    line_starts: &'a [usize],
}

impl Ctx<'_> {
    fn line<T>(&self, s: &Spanned<T>) -> usize {
        let at = s.span().start;
        self.line_starts.partition_point(|start| *start <= at)
    }

    fn err<T>(&self, at: &Spanned<T>, key: &str, message: impl Into<String>) -> Error {
        Error {
            file: self.file.to_owned(),
            line: self.line(at),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    fn time(&self, s: &Spanned<String>, key: &str) -> Result<DateTime<Utc>, Error> {
        DateTime::parse_from_rfc3339(s.get_ref())
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                self.err(
                    s,
                    key,
                    format!(
                        "`{}` is not an RFC 3339 time like \"2026-03-05T10:00:00Z\" ({e})",
                        s.get_ref()
                    ),
                )
            })
            .and_then(|t| {
                if t.timestamp_subsec_nanos() == 0 {
                    Ok(t)
                } else {
                    Err(self.err(s, key, "times are whole seconds"))
                }
            })
    }
}

/// Reads and validates a scenario file.
///
/// # Errors
/// An unreadable file, a TOML or schema error, or a rule below, located.
pub fn load(file: &Path) -> Result<Scenario, Error> {
    let text = std::fs::read_to_string(file).map_err(|e| Error {
        file: file.to_owned(),
        line: 1,
        key: String::new(),
        message: format!("cannot read: {e}"),
    })?;
    parse(file, text)
}

/// Parses and validates scenario text.
///
/// # Errors
/// A TOML or schema error, or a rule below, located.
pub fn parse(file: &Path, text: String) -> Result<Scenario, Error> {
    let raw = toml::from_str::<Raw>(&text).map_err(|e| {
        let line = e.span().map_or(1, |s| line_col(&text, s.start).0);
        let message = e.message().trim().to_owned();
        let key = message.split('`').nth(1).unwrap_or_default().to_owned();
        Error {
            file: file.to_owned(),
            line,
            key,
            message,
        }
    })?;
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let cx = Ctx {
        file,
        line_starts: &line_starts,
    };
    let start = cx.time(&raw.start, "start")?;
    let until = cx.time(&raw.until, "until")?;
    if until <= start {
        return Err(cx.err(&raw.until, "until", "must be after `start`"));
    }

    let mut orgs = Vec::new();
    let mut signups = BTreeMap::new();
    for o in raw.org {
        let id = o.id.get_ref().clone();
        if signups.contains_key(&id) {
            return Err(cx.err(&o.id, "org.id", format!("org `{id}` is declared twice")));
        }
        let active = match o.state.as_ref().map(|s| s.get_ref().as_str()) {
            None | Some("trial") => false,
            Some("active") => true,
            Some(other) => {
                return Err(cx.err(
                    o.state.as_ref().unwrap_or(&o.id),
                    "org.state",
                    format!("`{other}` is not a starting state, expected trial or active"),
                ))
            }
        };
        let signup_at = match &o.signup_at {
            Some(s) => {
                let t = cx.time(s, "org.signup_at")?;
                if t < start || t >= until {
                    return Err(cx.err(s, "org.signup_at", "must be within [start, until)"));
                }
                t
            }
            None => start,
        };
        if o.admins.get_ref().is_empty() {
            return Err(cx.err(
                &o.admins,
                "org.admins",
                "at least one account admin is required",
            ));
        }
        signups.insert(id.clone(), signup_at);
        orgs.push(Org {
            line: cx.line(&o.id),
            id,
            plan: o.plan.into_inner(),
            tier: o.tier.into_inner(),
            admins: o.admins.into_inner(),
            billing_email: o.billing_email.map(Spanned::into_inner),
            payment_method: o.payment_method,
            active,
            addons: o.addons,
            signup_at,
        });
    }

    let mut steps = Vec::new();
    let mut last = start;
    for s in raw.step {
        let at = cx.time(&s.at, "step.at")?;
        if at < start || at >= until {
            return Err(cx.err(&s.at, "step.at", "must be within [start, until)"));
        }
        if at < last {
            return Err(cx.err(
                &s.at,
                "step.at",
                "steps must be in time order; this one is earlier than the step before it",
            ));
        }
        last = at;
        let org = s.org.get_ref().clone();
        match signups.get(&org) {
            None => {
                return Err(cx.err(
                    &s.org,
                    "step.org",
                    format!("unknown org `{org}`: declare it in an [[org]] table"),
                ))
            }
            Some(signup) if at < *signup => {
                return Err(cx.err(
                    &s.at,
                    "step.at",
                    format!("org `{org}` signs up later, at {signup}"),
                ))
            }
            Some(_) => {}
        }
        let action = step_action(&cx, &s)?;
        steps.push(Step {
            at,
            org,
            name: s.action.get_ref().clone(),
            action,
            line: cx.line(&s.action),
        });
    }

    let mut expects = Vec::new();
    for e in raw.expect {
        let at = cx.time(&e.at, "expect.at")?;
        if at < start || at >= until {
            return Err(cx.err(&e.at, "expect.at", "must be within [start, until)"));
        }
        let org = e.org.get_ref().clone();
        if !signups.contains_key(&org) {
            return Err(cx.err(&e.org, "expect.org", format!("unknown org `{org}`")));
        }
        let state = e
            .state
            .as_ref()
            .map(|s| {
                s.get_ref()
                    .parse::<Status>()
                    .map_err(|err| cx.err(s, "expect.state", err.to_string()))
            })
            .transpose()?;
        let lock_reasons = e
            .lock_reasons
            .as_ref()
            .map(|s| {
                let mut reasons = s
                    .get_ref()
                    .iter()
                    .map(|r| {
                        r.parse::<LockReason>()
                            .map_err(|err| cx.err(s, "expect.lock_reasons", err.to_string()))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                reasons.sort();
                reasons.dedup();
                Ok::<_, Error>(reasons)
            })
            .transpose()?;
        let mut entitlements = BTreeMap::new();
        if let Some(ent) = &e.entitlements {
            let known: BTreeSet<&str> = [
                "dashboard",
                "exports",
                "ingestion",
                "campaigns",
                "upgrade_prompt",
            ]
            .into();
            for (key, value) in ent.get_ref() {
                if !known.contains(key.as_str()) {
                    return Err(cx.err(
                        ent,
                        &format!("expect.entitlements.{key}"),
                        "unknown entitlement, expected one of: dashboard, exports, ingestion, campaigns, upgrade_prompt",
                    ));
                }
                entitlements.insert(key.clone(), *value);
            }
        }
        expects.push(Expect {
            at,
            org,
            state,
            lock_reasons,
            entitlements,
            line: cx.line(&e.at),
        });
    }

    Ok(Scenario {
        file: file.to_owned(),
        start,
        until,
        config: raw.config,
        orgs,
        steps,
        expects,
        text,
    })
}

/// A key's value as text, and its line.
fn given<T: ToString>(cx: &Ctx<'_>, v: Option<&Spanned<T>>) -> Option<(String, usize)> {
    v.map(|v| (v.get_ref().to_string(), cx.line(v)))
}

fn step_action(cx: &Ctx<'_>, s: &RawStep) -> Result<Action, Error> {
    let name = s.action.get_ref().as_str();
    // Every key a step may carry besides `at`, `org` and `action`: its value and line.
    let keys: [(&str, Option<(String, usize)>); 13] = [
        ("project", given(cx, s.project.as_ref())),
        ("mau", given(cx, s.mau.as_ref())),
        ("data_points", given(cx, s.data_points.as_ref())),
        ("correction", given(cx, s.correction.as_ref())),
        ("tier", given(cx, s.tier.as_ref())),
        ("addon", given(cx, s.addon.as_ref())),
        ("confirm", given(cx, s.confirm.as_ref())),
        ("reason", given(cx, s.reason.as_ref())),
        ("op", given(cx, s.op.as_ref())),
        ("actor", given(cx, s.actor.as_ref())),
        ("days", given(cx, s.days.as_ref())),
        ("lock_reason", given(cx, s.lock_reason.as_ref())),
        ("to", given(cx, s.to.as_ref())),
    ];
    let value = |key: &str| {
        keys.iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.clone())
    };
    let at_key = |key: &str, message: String| {
        let line = value(key).map_or_else(|| cx.line(&s.action), |(_, line)| line);
        Error {
            file: cx.file.to_owned(),
            line,
            key: format!("step.{key}"),
            message,
        }
    };
    let required = |key: &str| {
        value(key)
            .map(|(v, _)| v)
            .ok_or_else(|| at_key(key, format!("action `{name}` needs `{key}`")))
    };
    // Names the legal ones as `Kind::named` does, after the actions that run no command.
    let unknown = |e: FieldError, what: &str, name: &str, more: &str| match e {
        FieldError::Unknown { expected, .. } => {
            format!("unknown {what} `{name}`, expected one of: {more}{expected}")
        }
        other => other.to_string(),
    };
    // The command's kind and what to call it in messages, and the other keys it takes.
    let (kind, what, allowed): (_, _, &[&str]) = match name {
        "usage" => (
            None,
            String::new(),
            &["project", "mau", "data_points", "correction"],
        ),
        "card_declined" | "card_updated" => (None, String::new(), &[]),
        "admin" => {
            let op = required("op")?;
            let kind = Kind::named(&op, Kind::manual)
                .map_err(|e| at_key("op", unknown(e, "op", &op, "")))?;
            (Some(kind), format!("op `{op}`"), &["op", "actor", "reason"])
        }
        _ => {
            let kind = Kind::named(name, Kind::customer).map_err(|e| {
                cx.err(
                    &s.action,
                    "step.action",
                    unknown(e, "action", name, ACTIONS),
                )
            })?;
            let allowed: &[&str] = if name == "cancel" { &["reason"] } else { &[] };
            (Some(kind), format!("action `{name}`"), allowed)
        }
    };
    let takes = |key: &&str| allowed.contains(key) || (kind.is_some() && FIELDS.contains(key));
    if let Some((key, _)) = keys.iter().find(|(key, v)| v.is_some() && !takes(key)) {
        return Err(at_key(key, format!("action `{name}` takes no `{key}`")));
    }
    let Some(kind) = kind else {
        return Ok(match name {
            "usage" => {
                Action::Usage {
                    project: required("project")?,
                    mau: s.mau.as_ref().map(|v| *v.get_ref()).ok_or_else(|| {
                        cx.err(&s.action, "step.mau", "action `usage` needs `mau`")
                    })?,
                    data_points: s.data_points.as_ref().map_or(0, |v| *v.get_ref()),
                    correction: s.correction.as_ref().is_some_and(|v| *v.get_ref()),
                }
            }
            "card_declined" => Action::CardDeclined,
            _ => Action::CardUpdated,
        });
    };
    let command = kind
        .command(|field| value(field).map(|(v, _)| v))
        .map_err(|e| match e {
            FieldError::Missing { field, .. } => Error {
                line: cx.line(s.op.as_ref().unwrap_or(&s.action)),
                ..at_key(field, format!("{what} needs `{field}`"))
            },
            FieldError::Extra { field, .. } => at_key(field, format!("{what} takes no `{field}`")),
            other => at_key(other.field().unwrap_or("action"), other.to_string()),
        })?;
    Ok(if name == "admin" {
        Action::Admin {
            command,
            actor: required("actor")?,
            reason: required("reason")?,
        }
    } else {
        Action::Customer {
            command,
            reason: value("reason").map_or_else(|| name.to_owned(), |(v, _)| v),
        }
    })
}
