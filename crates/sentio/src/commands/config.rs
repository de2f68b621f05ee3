//! `sentio config`: the effective configuration.

use std::io::Write;
use std::path::Path;

use sentio_config::{Config, DEFAULT_TOML};

#[derive(clap::Args)]
pub struct Args {
    /// Print the commented defaults instead (a starting point for your own file).
    #[arg(long)]
    defaults: bool,
}

pub fn run(file: Option<&Path>, args: Args) -> anyhow::Result<()> {
    if args.defaults {
        let _ = std::io::stdout().write_all(DEFAULT_TOML.as_bytes());
        return Ok(());
    }
    let config = Config::load(file)?;
    let _ = std::io::stdout().write_all(config.to_toml()?.as_bytes());
    Ok(())
}
