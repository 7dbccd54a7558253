//! The tracing subscriber, built from parts so tests can inject a writer, and the
//! process's Prometheus metrics ([`metrics`]).

pub mod metrics;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber: `RUST_LOG` overrides `level`; JSON or text to `writer`,
/// with ANSI colours only when `colour` is true (see [`colour_for_stderr`]).
/// A second call is a no-op (tests share a process).
pub fn init<W>(level: &str, format: LogFormat, writer: W, colour: bool)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // Migrations and the scheduler library narrate every start at info; keep them quiet.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{level},sea_orm_migration=warn,tokio_cron_scheduler=warn"
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(colour)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Whether logs written to stderr may be coloured: only on a terminal, and never when
/// `NO_COLOR` is set to anything but the empty string (<https://no-color.org>). A file or a
/// pipe (journald, a log shipper, `2> log.txt`) gets plain text.
#[must_use]
pub fn colour_for_stderr() -> bool {
    use std::io::IsTerminal;
    colour_allowed(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

fn colour_allowed(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(std::ffi::OsStr::is_empty)
}

#[cfg(test)]
mod tests {
    use super::colour_allowed;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour_allowed(true, None));
        assert!(colour_allowed(true, Some(OsStr::new(""))));
        assert!(!colour_allowed(true, Some(OsStr::new("1"))));
        assert!(!colour_allowed(false, None));
    }
}
