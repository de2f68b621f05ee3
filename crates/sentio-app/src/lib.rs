//! What the `sentio` binary's commands and the benchmarks (`sentio-bench`) share: [`wiring`] of
//! the configured backends into the services, the embedded store's [`owner`] lock, command-line
//! [`time_arg`]s, and the report macros [`say!`] and [`say_err!`].

/// `println!` for a command's report, except that a closed stdout (`sentio … | head`) is not a
/// panic: the report is for whoever still reads it.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if $crate::diverted() {
            let _ = writeln!(std::io::stderr(), $($arg)*);
        } else {
            let _ = writeln!(std::io::stdout(), $($arg)*);
        }
    }};
}

static DIVERTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether [`say!`] writes to stderr: a command that runs other commands' steps (`sentio
/// evaluate --csv` runs import, train and evaluate) shows their reports there, and keeps stdout
/// for its own (a JSON document, say).
pub fn diverted() -> bool {
    DIVERTED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Sends [`say!`] to stderr (or back to stdout).
pub fn divert_reports(divert: bool) {
    DIVERTED.store(divert, std::sync::atomic::Ordering::Relaxed);
}

/// Writes one line to stderr (status lines that must not mix with stdout's data).
#[macro_export]
macro_rules! say_err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod owner;
pub mod time_arg;
pub mod wiring;
