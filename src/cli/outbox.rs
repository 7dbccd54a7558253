//! `acctd admin outbox …`: inspect and repair notification delivery.

use std::io::Write;

use clap::Subcommand;

use super::admin::Failure;
use crate::engine::Engine;
use crate::storage::outbox;

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// List messages, newest first.
    List {
        /// Only messages with this status.
        #[arg(long, value_parser = ["pending", "sent", "dead", "discarded", "skipped"])]
        status: Option<String>,
        /// At most this many messages.
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// Put a dead or pending message back in line now, attempts reset.
    Retry {
        /// The message id (`admin outbox list` shows it).
        id: i64,
    },
    /// Give up on a dead or pending message.
    Discard {
        /// The message id (`admin outbox list` shows it).
        id: i64,
    },
}

/// Runs an outbox command.
///
/// # Errors
/// [`Failure::Input`] for an unknown id or a message in a final state.
pub async fn run(
    engine: &Engine,
    command: OutboxCommand,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::Other(e.into());
    let db = engine.db();
    match command {
        OutboxCommand::List { status, limit } => {
            let messages = outbox::list(db, status.as_deref(), limit).await?;
            let time = |at: chrono::DateTime<chrono::Utc>| {
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            };
            let mut text = String::new();
            for m in messages {
                // When it was sent, or when the next attempt is due; nothing for messages
                // that will not be sent.
                let when = match (m.status.as_str(), m.sent_at) {
                    (_, Some(sent)) => format!("sent {}", time(sent)),
                    ("pending", None) => format!("next {}", time(m.next_attempt_at)),
                    _ => "-".to_owned(),
                };
                text.push_str(&format!(
                    "{:>8} {:<9} {:<18} {:<20} {:>8} {:<25} {}{}\n",
                    m.id,
                    m.status,
                    m.template,
                    m.org_id,
                    m.attempts,
                    when,
                    m.recipients.join(","),
                    m.last_error
                        .map_or_else(String::new, |e| format!("  error: {e}")),
                ));
            }
            let text = (!text.is_empty()).then(|| {
                format!(
                    "{:>8} {:<9} {:<18} {:<20} {:>8} {:<25} {}\n{text}",
                    "ID", "STATUS", "TEMPLATE", "ORG", "ATTEMPTS", "SENT / NEXT ATTEMPT", "TO"
                )
            });
            let empty = match &status {
                Some(status) => format!("no {status} messages in the outbox"),
                None => "the outbox is empty".to_owned(),
            };
            super::admin::print_or_say(out, text, &empty)
        }
        OutboxCommand::Retry { id } => {
            if outbox::retry(db, id, engine.now()).await? {
                writeln!(out, "message {id} will be sent again").map_err(io)
            } else {
                Err(Failure::Input(format!(
                    "message {id} is unknown, sent or discarded"
                )))
            }
        }
        OutboxCommand::Discard { id } => {
            if outbox::discard(db, id).await? {
                writeln!(out, "message {id} discarded").map_err(io)
            } else {
                Err(Failure::Input(format!(
                    "message {id} is unknown, sent or discarded"
                )))
            }
        }
    }
}
