//! One module per subcommand.

pub mod bench;
mod bench_detect;
mod bench_real;
mod bench_train;
pub mod config;
pub mod demo;
pub mod detect;
pub mod evaluate;
pub mod import;
pub mod ingest;
pub mod migrate;
pub mod model;
pub mod profile;
pub mod serve;
pub mod simulate;
mod time_arg;
pub mod train;
