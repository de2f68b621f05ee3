//! What the `sentio` binary's commands and the benchmarks (`sentio-bench`) share: [`wiring`] of
//! the configured backends into the services, the embedded store's [`owner`] lock, command-line
//! [`time_arg`]s, and the report macros [`say!`] and [`say_err!`].

/// `println!` for a command's report, except that a closed stdout (`sentio … | head`) is not a
/// panic: the report is for whoever still reads it.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
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
