//! One module per subcommand.

pub use sentio_bench as bench;
pub mod bridge;
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
use sentio_app::time_arg;
pub mod train;
