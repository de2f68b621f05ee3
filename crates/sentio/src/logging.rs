//! Logs go to stderr as text or JSON lines, filtered by --log or RUST_LOG.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `quiet` lowers the default level for commands that draw progress bars.
pub fn init(format: LogFormat, filter: Option<&str>, quiet: bool) {
    // PostgreSQL's NOTICEs (e.g. "relation already exists, skipping" from idempotent
    // migrations) come through tokio_postgres at INFO: noise for an operator, so WARN by default.
    let default = if quiet { "warn" } else { "info,tokio_postgres=warn" };
    let filter = filter
        .map(EnvFilter::new)
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    // Colour only on a terminal: a log file or a pipe gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
