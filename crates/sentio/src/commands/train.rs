//! `sentio train`: train, calibrate, register and (maybe) promote an LSTM autoencoder.

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use sentio_config::{Config, Promote};
use sentio_core::time::format_rfc3339;
use sentio_services::shutdown::Shutdown;
use sentio_services::train::data::DataReport;
use sentio_services::train::fit::{EpochReport, Observer};
use sentio_services::train::{Progress, TrainOutcome, TrainRequest, train};
use sentio_store::ReadingStore;
use sentio_tracking::Tracking;
use tokio_util::sync::CancellationToken;

use super::time_arg::parse_instant;
use crate::wiring;

/// Reads history from the store (train.lookback before the newest reading, or --from/--to),
/// trains the LSTM autoencoder with early stopping, calibrates the anomaly threshold on held-out
/// data, logs the run (params, per-epoch metrics) and the model to the tracker, registers a new
/// version of the profile's model (train.model_name for the pump, sentio-<profile> for any other)
/// and moves the alias `champion` to it when it beats the current champion on the same
/// validation data. One model per asset profile: --profile trains one, otherwise every profile
/// with stored devices is trained in turn. The time split (train, validation, calibration) is over
/// the data found in the range, first to last reading, however long the range is. Ctrl-C stops
/// training and registers the best model so far, which is never promoted.
#[derive(clap::Args)]
pub struct Args {
    /// Start of the training range: RFC 3339, a date, or `now`.
    #[arg(long, value_parser = parse_instant)]
    from: Option<i64>,
    /// End (exclusive) of the training range.
    #[arg(long, value_parser = parse_instant)]
    to: Option<i64>,
    /// Most epochs (overrides train.epochs).
    #[arg(long)]
    epochs: Option<usize>,
    /// CPU threads, 0 for all cores (overrides train.threads).
    #[arg(long)]
    threads: Option<usize>,
    /// Random seed (overrides train.seed).
    #[arg(long)]
    seed: Option<u64>,
    /// Always move the `champion` alias to the new version (unless training is cancelled).
    #[arg(long, conflicts_with = "no_promote")]
    promote: bool,
    /// Never move the `champion` alias.
    #[arg(long)]
    no_promote: bool,
    /// The asset profile to train a model for (`sentio profile list`); default: every profile
    /// with stored devices.
    #[arg(long)]
    profile: Option<String>,
}

pub async fn run(mut config: Config, args: Args) -> anyhow::Result<()> {
    let t = &mut config.train;
    t.epochs = args.epochs.unwrap_or(t.epochs);
    t.threads = args.threads.unwrap_or(t.threads);
    t.seed = args.seed.unwrap_or(t.seed);
    if args.promote {
        t.promote = Promote::Always;
    }
    if args.no_promote {
        t.promote = Promote::Never;
    }
    config.validate()?;

    let store = wiring::open_store(&config).await?;
    let tracking = wiring::open_tracking(&config)?;
    let shutdown = Shutdown::new();
    shutdown.cancel_on_signals();
    let profiles = config.profiles()?;
    let names = match args.profile {
        Some(name) => {
            if profiles.get(&name).is_none() {
                let known: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
                anyhow::bail!(
                    "--profile {name:?}: the configuration declares no such profile; it has {}",
                    known.join(", ")
                );
            }
            vec![name]
        }
        None => {
            let stored = sentio_services::train::stored_profiles(store.as_ref(), &profiles).await?;
            if stored.is_empty() {
                anyhow::bail!(
                    "the store holds no readings of any profile's channels: ingest some first \
                     (`sentio demo`, `sentio import --csv`, or `sentio simulate --backfill` with \
                     `sentio ingest`)"
                );
            }
            stored
        }
    };
    let several = names.len() > 1;
    for profile in names {
        if shutdown.token().is_cancelled() {
            break;
        }
        if several {
            say!("profile {profile}:");
        }
        let request = TrainRequest {
            config: config.train.clone(),
            profiles: profiles.clone(),
            profile,
            experiment: config.tracking.experiment.clone(),
            from_ns: args.from,
            to_ns: args.to,
        };
        train_and_report(&config, store.as_ref(), tracking.clone(), request, shutdown.token())
            .await?;
    }
    Ok(())
}

/// Trains with progress bars and prints what came of it: epochs, threshold, registered version,
/// promotion.
pub(crate) async fn train_and_report(
    config: &Config,
    store: &dyn ReadingStore,
    tracking: Arc<dyn Tracking>,
    request: TrainRequest,
    stop: CancellationToken,
) -> anyhow::Result<TrainOutcome> {
    let outcome = train(store, tracking, request, stop, Box::new(Bars::new())).await?;

    let c = &outcome.card.calibration;
    let s = &outcome.card.training;
    say!(
        "trained in {:.1}s: {} epochs ({}), best epoch {} with validation loss {:.5}, {:.0} windows/s on {} threads",
        s.seconds,
        s.epochs_run,
        stop_reason(&s.stopped),
        s.best_epoch,
        s.best_validation_loss,
        s.train_windows_per_s,
        s.threads
    );
    say!(
        "threshold {:.5} ({} over {} calibration windows; {:.2}% above it)",
        c.threshold,
        c.method,
        c.windows,
        c.exceed_fraction * 100.0
    );
    say!(
        "registered {} version {} (run {}, tracking {})",
        outcome.model_name,
        outcome.version,
        outcome.run_id,
        config_tracking(config)
    );
    let p = &outcome.promotion;
    match (p.promote, p.champion_version) {
        (true, _) => say!("champion -> version {}: {}", outcome.version, p.reason),
        (false, Some(champion)) => say!("champion stays at version {champion}: {}", p.reason),
        (false, None) => {
            say!("no champion: version {} not promoted: {}", outcome.version, p.reason)
        }
    }
    Ok(outcome)
}

fn config_tracking(config: &Config) -> String {
    match config.tracking.kind {
        sentio_config::TrackingKind::Local => config.tracking.local.root.display().to_string(),
        sentio_config::TrackingKind::Mlflow => config.tracking.mlflow.uri.clone(),
    }
}

/// Progress bars: loading, then one bar per epoch.
struct Bars {
    bar: ProgressBar,
    best: f64,
    /// Without a terminal the bar is hidden, and so is what it prints: the lines go to stderr.
    tty: bool,
}

impl Bars {
    fn new() -> Bars {
        let bar = ProgressBar::new(1000).with_style(
            ProgressStyle::with_template("{msg:>14} [{bar:30}] {percent:>3}% {prefix}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message("reading");
        bar.enable_steady_tick(Duration::from_millis(200));
        Bars { bar, best: f64::INFINITY, tty: std::io::stderr().is_terminal() }
    }

    fn line(&self, text: impl AsRef<str>) {
        if self.tty {
            self.bar.println(text);
        } else {
            eprintln!("{}", text.as_ref());
        }
    }
}

impl Observer for Bars {
    fn epoch_started(&mut self, epoch: usize, epochs: usize, batches: usize) {
        self.bar.reset();
        self.bar.set_length(batches as u64);
        self.bar.set_message(format!("epoch {epoch}/{epochs}"));
    }

    fn batch_done(&mut self, _epoch: usize, batch: usize, loss: f32, rate: f64) {
        self.bar.set_position(batch as u64);
        self.bar.set_prefix(format!("loss {loss:.5}  {rate:.0} windows/s"));
    }

    fn epoch_finished(&mut self, e: &EpochReport) {
        self.best = self.best.min(e.validation_loss);
        self.line(format!(
            "epoch {:>3}  train {:.5}  validation {:.5}{}  {:>6.0} windows/s  {:.1}s",
            e.epoch,
            e.train_loss,
            e.validation_loss,
            if e.best { " *" } else { "  " },
            e.train_windows_per_s,
            e.seconds
        ));
    }
}

impl Progress for Bars {
    fn loading(&mut self, done_ns: i64, total_ns: i64, readings: u64) {
        let permille = (done_ns as f64 / total_ns.max(1) as f64 * 1000.0) as u64;
        self.bar.set_position(permille);
        self.bar.set_prefix(format!("{readings} readings"));
    }

    fn prepared(&mut self, r: &DataReport) {
        self.line(format!(
            "data {} .. {}: {} devices, {} readings, {} frames; windows: {} train, {} validation, {} calibration ({} with ground-truth labels left out)",
            format_rfc3339(r.from_ns),
            format_rfc3339(r.to_ns),
            r.devices.len(),
            r.readings,
            r.frames,
            r.train_windows,
            r.validation_windows,
            r.calibration_windows,
            r.labelled_windows
        ));
    }

    fn stage(&mut self, what: &str) {
        self.bar.finish_and_clear();
        self.line(what);
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// Why training ended, in words (the card stores the short form).
pub(crate) fn stop_reason(stopped: &str) -> &str {
    match stopped {
        "epochs" => "all of train.epochs ran",
        "early-stopping" => "stopped early: validation loss no longer improved",
        "cancelled" => "cancelled; the best epoch is kept but never promoted",
        other => other,
    }
}
