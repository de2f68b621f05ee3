//! `sentio config`: the effective configuration.

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
        print!("{DEFAULT_TOML}");
        return Ok(());
    }
    let config = Config::load(file)?;
    print!("{}", config.to_toml()?);
    Ok(())
}
