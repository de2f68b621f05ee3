//! `sentio model`: the registered models, their versions and aliases, in either tracking backend.

use anyhow::Context;
use sentio_config::Config;
use sentio_core::time::format_rfc3339;
use sentio_services::train::CHAMPION;
use sentio_services::train::artifact::ModelCard;

use crate::wiring;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: ModelCommand,
}

#[derive(clap::Subcommand)]
enum ModelCommand {
    /// List registered models with their versions and aliases.
    List,
    /// Show one version: where it came from, its data range, threshold and training summary.
    Show {
        /// Registered model name (default: the model of --profile).
        #[arg(long, conflicts_with = "profile")]
        name: Option<String>,
        /// The asset profile whose model it is: train.model_name for pump (the default),
        /// sentio-<profile> for any other.
        #[arg(long)]
        profile: Option<String>,
        /// Version number or alias.
        #[arg(default_value = CHAMPION, value_name = "VERSION|ALIAS")]
        which: String,
    },
    /// Point an alias (default: champion) at a version. The detector follows `champion`.
    Promote {
        /// The version number to promote.
        #[arg(value_name = "VERSION")]
        number: u64,
        /// Registered model name (default: the model of --profile).
        #[arg(long, conflicts_with = "profile")]
        name: Option<String>,
        /// The asset profile whose model it is: train.model_name for pump (the default),
        /// sentio-<profile> for any other.
        #[arg(long)]
        profile: Option<String>,
        /// The alias to move.
        #[arg(long, default_value = CHAMPION)]
        alias: String,
    },
}

pub async fn run(config: Config, args: Args) -> anyhow::Result<()> {
    let tracking = wiring::open_tracking(&config)?;
    match args.command {
        ModelCommand::List => {
            let models = tracking.list_registered_models().await?;
            if models.is_empty() {
                say!("no registered models yet: `sentio train` registers one");
            }
            for m in models {
                say!("{}", m.name);
                for v in tracking.list_model_versions(&m.name).await? {
                    let aliases = if v.aliases.is_empty() {
                        String::new()
                    } else {
                        format!("  @{}", v.aliases.join(" @"))
                    };
                    say!(
                        "  version {:>3}  {}  run {}{}",
                        v.version,
                        format_rfc3339(v.creation_timestamp_ms.saturating_mul(1_000_000)),
                        v.run_id.as_ref().map_or("-", |r| r.as_str()),
                        aliases
                    );
                }
            }
        }
        ModelCommand::Show { name, profile, which: version } => {
            let name = model_name(&config, name, profile)?;
            let v = match version.parse::<u64>() {
                Ok(n) => tracking.get_model_version(&name, n).await?,
                Err(_) => tracking.get_alias(&name, &version).await?.with_context(|| {
                    format!(
                        "model {name:?} has no alias {version:?}; `sentio model list` shows them"
                    )
                })?,
            };
            let dir = tempfile::tempdir()?;
            tracking.download_model_version(&name, v.version, dir.path()).await?;
            let card = ModelCard::read(dir.path())?;
            say!("{name} version {} (aliases: {})", v.version, v.aliases.join(", "));
            say!("  profile     {}", card.profile);
            say!("  source      {}", v.source);
            say!("  run         {}", v.run_id.as_ref().map_or("-", |r| r.as_str()));
            say!(
                "  model       LSTM autoencoder: window {}, hidden {}, bottleneck {}, sensors {}",
                card.window,
                card.hidden,
                card.bottleneck,
                card.sensors.join(", ")
            );
            say!(
                "  data        {} .. {} ({} devices, {} training windows)",
                format_rfc3339(card.data.from_ns),
                format_rfc3339(card.data.to_ns),
                card.data.devices.len(),
                card.data.train_windows
            );
            let t = &card.training;
            say!(
                "  training    {} epochs ({}), best {} with validation loss {:.5}, seed {}",
                t.epochs_run,
                super::train::stop_reason(&t.stopped),
                t.best_epoch,
                t.best_validation_loss,
                t.seed
            );
            let c = &card.calibration;
            say!(
                "  threshold   {:.5} ({}, {} calibration windows)",
                c.threshold,
                c.method,
                c.windows
            );
            for (s, sensor) in card.sensors.iter().enumerate() {
                say!(
                    "    {sensor:<12} error mean {:.5}  std {:.5}  threshold {:.5}",
                    c.sensor_mean[s],
                    c.sensor_std[s],
                    c.sensor_threshold[s]
                );
            }
        }
        ModelCommand::Promote { number: version, name, profile, alias } => {
            let name = model_name(&config, name, profile)?;
            tracking.get_model_version(&name, version).await.with_context(|| {
                format!("model {name:?} has no version {version}; `sentio model list` shows them")
            })?;
            tracking.set_alias(&name, &alias, version).await?;
            say!("{name}@{alias} -> version {version}");
        }
    }
    Ok(())
}

/// `--name`, or the registered model of `--profile` (default: pump).
fn model_name(
    config: &Config,
    name: Option<String>,
    profile: Option<String>,
) -> anyhow::Result<String> {
    if let Some(name) = name {
        return Ok(name);
    }
    let profile = profile.unwrap_or_else(|| sentio_core::profile::PUMP.to_owned());
    anyhow::ensure!(
        config.profiles()?.get(&profile).is_some(),
        "--profile {profile:?}: the configuration declares no such profile; `sentio profile list` \
         shows them"
    );
    Ok(sentio_services::train::model_name(&config.train, &profile))
}
