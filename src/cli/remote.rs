//! `acctd admin --url URL --token TOKEN …`: the admin subcommands through the admin HTTP
//! API instead of the database. The actor recorded is the token's name (`--actor` is
//! then ignored); `--reason` goes into the request.

use std::fmt::Write as _;
use std::io::Write;

use axum::http::Method;
use clap::Args;
use serde_json::{json, Value};

use super::admin::{AdminCommand, Failure};
use crate::api::client::{Client, ClientError};
use crate::domain::plan::FieldValue;
use crate::engine::{Command, PlanChange};

/// Where the admin API is, and the token to use.
#[derive(Debug, Clone, Default, Args)]
pub struct Remote {
    /// Act through the admin API at this URL (http://HOST:PORT or https://HOST:PORT)
    /// instead of the database.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "ACCTD_API_URL",
        help_heading = "API client options"
    )]
    pub url: Option<String>,
    /// Bearer token for --url; prefer the environment variable, which keeps it out of the
    /// shell history.
    #[arg(
        long,
        global = true,
        value_name = "TOKEN",
        env = "ACCTD_API_TOKEN",
        hide_env_values = true,
        help_heading = "API client options"
    )]
    pub token: Option<String>,
    /// For an https --url: also trust the CA certificates in this PEM file (an internal
    /// CA; the Mozilla roots are always trusted).
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "ACCTD_API_CA_FILE",
        help_heading = "API client options"
    )]
    pub ca_file: Option<std::path::PathBuf>,
}

/// Percent-encodes one path segment or query value.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// What to send for a subcommand and how to print the answer.
enum Print {
    /// `{org, facts}`: the facts as JSON Lines, like the local command.
    Facts,
    /// The answer as pretty JSON.
    Json,
    /// One line per org.
    Orgs,
    /// Invoices with their lines.
    Invoices,
    /// `show`: the org with its recent transitions, as text, or as JSON with `--json`.
    Show { json: bool },
}

struct Call {
    method: Method,
    path: String,
    body: Option<Value>,
    print: Print,
}

/// The request behind a subcommand.
fn call(command: AdminCommand) -> Result<Call, Failure> {
    let org_path = |org: &str, rest: &str| format!("/v1/orgs/{}{rest}", enc(org));
    Ok(match command {
        AdminCommand::Signup {
            org,
            plan,
            tier,
            admins,
            billing_email,
            payment_method,
            addons,
            active,
            who,
        } => Call {
            method: Method::POST,
            path: "/v1/orgs".to_owned(),
            body: Some(json!({
                "id": org, "plan": plan, "tier": tier, "admins": admins,
                "billing_email": billing_email, "payment_method": payment_method,
                "addons": addons, "active": active, "reason": who.reason,
            })),
            print: Print::Facts,
        },
        AdminCommand::Show { org, json } => Call {
            method: Method::GET,
            path: org_path(&org, ""),
            body: None,
            print: Print::Show { json },
        },
        AdminCommand::Orgs {
            state,
            reason,
            limit,
        } => {
            let mut query = format!("?limit={limit}");
            if let Some(state) = state {
                query.push_str(&format!("&state={}", state.as_str()));
            }
            if let Some(reason) = reason {
                query.push_str(&format!("&reason={}", reason.as_str()));
            }
            Call {
                method: Method::GET,
                path: format!("/v1/orgs{query}"),
                body: None,
                print: Print::Orgs,
            }
        }
        AdminCommand::Stats { .. } => Call {
            method: Method::GET,
            path: "/v1/stats".to_owned(),
            body: None,
            print: Print::Json,
        },
        AdminCommand::Invoices { org } => Call {
            method: Method::GET,
            path: org_path(&org, "/invoices"),
            body: None,
            print: Print::Invoices,
        },
        AdminCommand::Payment {
            invoice,
            outcome,
            who,
        } => Call {
            method: Method::POST,
            path: format!("/v1/invoices/{invoice}/payment"),
            body: Some(json!({"outcome": outcome, "reason": who.reason})),
            print: Print::Facts,
        },
        AdminCommand::Command(command) => {
            let (org, command, who) = command.into_command();
            command_call(&org, &command, &who.reason)?
        }
        other @ AdminCommand::Outbox(_) => {
            return Err(Failure::Input(format!(
                "{other:?} is not available through the API; run it without --url"
            )))
        }
    })
}

/// The request that runs `command` against `org`: the route of the API's route table that
/// runs its kind, with `{id}` the org, `{op}` the command's name and any other `{field}` one
/// of its fields; the other fields and the reason go in the body.
fn command_call(org: &str, command: &Command, reason: &str) -> Result<Call, Failure> {
    let kind = command.kind();
    let endpoint = crate::api::endpoints(false)
        .into_iter()
        .find(|e| e.runs.is_some_and(|runs| runs(kind)))
        .ok_or_else(|| {
            Failure::Input(format!(
                "`{}` is not available through the API; run it without --url",
                kind.name
            ))
        })?;
    let mut path = endpoint
        .path
        .replace("{id}", &enc(org))
        .replace("{op}", kind.name);
    let mut body = json!({ "reason": reason });
    for (field, value) in command.fields() {
        let slot = format!("{{{field}}}");
        if path.contains(&slot) {
            path = path.replace(&slot, &enc(&value.to_string()));
        } else {
            body[field] = match value {
                FieldValue::Number(n) => json!(n),
                FieldValue::Text(t) => json!(t),
            };
        }
    }
    Ok(Call {
        method: endpoint.method,
        path,
        body: Some(body),
        print: Print::Facts,
    })
}

/// `upgrade` and `downgrade` share one route that picks the direction from the tier; the
/// CLI keeps its meaning by checking the direction first.
async fn check_direction(client: &Client, org: &str, command: &Command) -> Result<(), Failure> {
    let (tier, up) = match command {
        Command::Plan(PlanChange::Upgrade { tier }) => (*tier, true),
        Command::Plan(PlanChange::Downgrade { tier }) => (*tier, false),
        _ => return Ok(()),
    };
    let org_value = fetch(client, Method::GET, &format!("/v1/orgs/{}", enc(org)), None).await?;
    let current = org_value["tier"].as_u64().unwrap_or_default();
    let tier64 = u64::from(tier);
    if up && tier64 <= current {
        return Err(Failure::Input(format!(
            "tier: {tier} is not above the current tier {current}; use downgrade"
        )));
    }
    if !up && tier64 >= current {
        return Err(Failure::Input(format!(
            "tier: {tier} is not below the current tier {current}; use upgrade"
        )));
    }
    Ok(())
}

/// One request; a 4xx is bad input (exit 2), anything else that is not a success is an
/// error (exit 1).
async fn fetch(
    client: &Client,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, Failure> {
    let (status, value) = client
        .call(method, path, body)
        .await
        .map_err(|e| Failure::Other(e.into()))?;
    if status.is_success() {
        return Ok(value);
    }
    let message = value["error"]["message"]
        .as_str()
        .unwrap_or("no message")
        .to_owned();
    if status.is_client_error() {
        Err(Failure::Input(format!("{status}: {message}")))
    } else {
        Err(Failure::Other(anyhow::anyhow!("{status}: {message}")))
    }
}

/// Runs an admin subcommand through the API at `url`.
///
/// # Errors
/// [`Failure::Input`] for a bad URL, a 4xx (bad input, unknown org, a refused move, a
/// missing or insufficient token); [`Failure::Other`] when the API cannot be reached or
/// fails.
pub async fn run(
    url: &str,
    remote: Remote,
    command: AdminCommand,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::Other(e.into());
    let ca = match &remote.ca_file {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| Failure::Input(format!("--ca-file {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let client =
        Client::with_ca(url, remote.token, ca.as_deref()).map_err(|e| match &remote.ca_file {
            Some(path) if matches!(e, ClientError::Ca(_)) => {
                Failure::Input(format!("--ca-file {}: {e}", path.display()))
            }
            _ => Failure::Input(e.to_string()),
        })?;
    let dry_run = match &command {
        AdminCommand::Signup { who, .. } | AdminCommand::Payment { who, .. } => who.dry_run,
        AdminCommand::Command(command) => {
            let (org, command, who) = command.clone().into_command();
            check_direction(&client, &org, &command).await?;
            who.dry_run
        }
        _ => false,
    };
    let mut call = call(command)?;
    if dry_run {
        eprintln!("dry run: nothing is written");
        call.path.push_str("?dry_run=true");
    }
    let value = fetch(&client, call.method, &call.path, call.body.as_ref()).await?;
    let mut text = String::new();
    match call.print {
        Print::Facts => {
            let facts = value["facts"].as_array().cloned().unwrap_or_default();
            if facts.is_empty() {
                text.push_str("nothing changed\n");
            }
            for fact in facts {
                text.push_str(&format!("{fact}\n"));
            }
        }
        Print::Json => text.push_str(&format!("{value:#}\n")),
        Print::Show { json } => {
            let mut value = value;
            let path = format!(
                "/v1/orgs/{}/transitions?limit=10",
                enc(value["id"].as_str().unwrap_or_default())
            );
            let transitions = fetch(&client, Method::GET, &path, None).await?;
            value["transitions"] = transitions["transitions"].clone();
            if json {
                text.push_str(&format!("{value:#}\n"));
            } else {
                text.push_str(&super::render::show(&value));
            }
        }
        Print::Orgs => {
            let rows = value["orgs"].as_array().cloned().unwrap_or_default();
            return super::admin::print_or_say(out, super::render::orgs(&rows), "no orgs match");
        }
        Print::Invoices => {
            let rows = value["invoices"].as_array().cloned().unwrap_or_default();
            let org = value["org"].as_str().unwrap_or_default();
            return super::admin::print_or_say(
                out,
                super::render::invoices(&rows),
                &format!("org `{org}` has no invoices yet"),
            );
        }
    }
    out.write_all(text.as_bytes()).map_err(io)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{command_call, enc};
    use crate::domain::{LockReason, Status};
    use crate::engine::{Command, PlanChange};

    /// Each command's request, as `--url` sent it per subcommand before the command table.
    #[test]
    fn every_command_goes_to_its_route() {
        let addon = || "add on".to_owned();
        let cases = [
            (Command::Lock, "POST /v1/orgs/a%2Fb/admin/lock", json!({})),
            (
                Command::Unlock {
                    reason: LockReason::Overage,
                },
                "POST /v1/orgs/a%2Fb/admin/unlock",
                json!({"lock_reason": "overage"}),
            ),
            (
                Command::PostponeCancel { days: 7 },
                "POST /v1/orgs/a%2Fb/admin/postpone_cancel",
                json!({"days": 7}),
            ),
            (
                Command::Transition { to: Status::Active },
                "POST /v1/orgs/a%2Fb/admin/transition",
                json!({"to": "active"}),
            ),
            (
                Command::Cancel {
                    confirm: "DELETE".into(),
                },
                "POST /v1/orgs/a%2Fb/cancel",
                json!({"confirm": "DELETE"}),
            ),
            (
                Command::AddPaymentMethod,
                "POST /v1/orgs/a%2Fb/payment-method",
                json!({}),
            ),
            (
                Command::Plan(PlanChange::Downgrade { tier: 5_000 }),
                "POST /v1/orgs/a%2Fb/plan",
                json!({"tier": 5_000}),
            ),
            (
                Command::Plan(PlanChange::CancelDowngrade),
                "DELETE /v1/orgs/a%2Fb/plan/scheduled",
                json!({}),
            ),
            (
                Command::Plan(PlanChange::AddAddon { addon: addon() }),
                "POST /v1/orgs/a%2Fb/addons",
                json!({"addon": "add on"}),
            ),
            (
                Command::Plan(PlanChange::RemoveAddon { addon: addon() }),
                "DELETE /v1/orgs/a%2Fb/addons/add%20on",
                json!({}),
            ),
            (
                Command::Plan(PlanChange::CancelAddonRemoval { addon: addon() }),
                "POST /v1/orgs/a%2Fb/addons/add%20on/keep",
                json!({}),
            ),
        ];
        for (command, route, mut body) in cases {
            let call = command_call("a/b", &command, "why").unwrap();
            body["reason"] = json!("why");
            assert_eq!(format!("{} {}", call.method, call.path), route);
            assert_eq!(call.body, Some(body), "{route}");
        }
        assert!(command_call("a", &Command::RetryOverdue, "why").is_err());
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(enc("acme-1_x.y~"), "acme-1_x.y~");
        assert_eq!(enc("a b/c?"), "a%20b%2Fc%3F");
    }
}
