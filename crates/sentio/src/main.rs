//! `sentio`: one binary, one subcommand per role. This crate only parses arguments; the wiring of
//! the configured backends lives in `sentio-app`, the work in `sentio-services`, and the
//! benchmarks (`sentio bench`) in `sentio-bench`.

#[macro_use]
extern crate sentio_app;

mod commands;
mod logging;

/// mimalloc instead of glibc's malloc (docs/benchmarks.md, "MQTT bridge").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use sentio_app::wiring;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Sentio watches industrial IoT sensors and catches anomalies as they happen.
///
/// Every role runs on embedded backends by default (in-process bus, SQLite, local files), so
/// `sentio demo` needs no servers. Configuration: `default.toml` (see `sentio config`), a file given
/// with --config, and SENTIO__SECTION__KEY environment variables, in that order.
#[derive(Parser)]
#[command(name = "sentio", version, propagate_version = true, max_term_width = 100)]
struct Cli {
    /// Configuration file layered over the defaults (only the keys you change).
    #[arg(long, short = 'c', global = true, value_name = "FILE", env = "SENTIO_CONFIG")]
    config: Option<PathBuf>,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = logging::LogFormat::Text)]
    log_format: logging::LogFormat,

    /// Log filter, e.g. `info` or `sentio_services=debug` (RUST_LOG works too).
    #[arg(long, global = true, value_name = "FILTER")]
    log: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole pipeline in this process on the embedded backends: backfill simulated
    /// history, then stream live readings through the bus into the store and the raw archive.
    Demo(commands::demo::Args),
    /// Simulate devices and publish their readings (and archive raw batches).
    Simulate(commands::simulate::Args),
    /// Consume readings from the bus and store them exactly once (dead letters to the DLQ).
    Ingest(commands::ingest::Args),
    /// Devices in: `sentio bridge mqtt` subscribes to an MQTT broker and publishes what devices
    /// send there as readings (docs/bridge.md).
    Bridge(commands::bridge::Args),
    /// Import history from CSV files: publish their rows as readings on the bus, through the
    /// same ETL as live data (decoding, the profile's unit check, dead letters, the store).
    ///
    /// Formats: SKAB's `;`-separated files and `,`-separated ones, with a header row and a
    /// timestamp column (datetime, timestamp, time or ts, or --timestamp-column). Timestamps are
    /// `2020-03-09 10:14:33[.fff]` (UTC), RFC 3339, or a number since the Unix epoch in seconds
    /// (below 1e11), milliseconds (below 1e14), microseconds (below 1e17) or nanoseconds.
    ///
    /// Every other column is a channel, named after its header: lower case, each run of
    /// characters other than a-z, 0-9, `_`, `.`, `-` replaced by `_`, at most 64 (SKAB's
    /// `Volume Flow RateRMS` is `volume_flow_raterms`); `changepoint` and --skip-column columns
    /// are left out, the --label-column is ground truth. A channel the profile declares takes its
    /// unit; any other is stored, not modelled.
    ///
    /// Devices: --device once (every file is that device's history), --device once per file, or
    /// --device-prefix P (each file is device P + its file name without extension).
    ///
    /// Rows are imported in timestamp order (rows out of order are counted, then sorted); a row
    /// with the timestamp of an earlier row of the device, a row whose timestamp, label or field
    /// count cannot be read, is skipped and reported with its file and line; an unreadable value
    /// skips that reading only. `seq` counts each channel's readings from 0. The store keeps every
    /// message, not every value, so importing rows the store already holds (same device and
    /// channel, overlapping time span) is refused unless --allow-overlap.
    ///
    /// With the embedded bus the command runs the ETL itself and exits once every reading is
    /// stored; with Kafka too, unless --publish-only leaves storing to a running `sentio ingest`.
    /// See docs/import.md.
    Import(commands::import::Args),
    /// Apply pending store migrations and create the topics.
    Migrate,
    /// Train the LSTM autoencoder on stored history, calibrate its threshold, log the run and
    /// register the model (tracking.kind: local directory or MLflow).
    Train(commands::train::Args),
    /// Score a stored time range with the promoted model and list the alerts it raises.
    Detect(commands::detect::Args),
    /// Serve the live dashboard and its JSON API (read-only; 127.0.0.1:8080 by default).
    Serve(commands::serve::Args),
    /// Measure detection quality on labelled data: CSV benchmarks such as SKAB (--csv), or a
    /// stored range of simulated data against its ground truth (--from/--to).
    ///
    /// Reports point-wise precision, recall and F1, SKAB's false and missed alarm rates (FAR =
    /// FP/(FP+TN), MAR = FN/(FN+TP)), event recall and precision, and detection delay; over
    /// several files the counts are pooled (summed, then the ratios), as SKAB does.
    ///
    /// With --csv, the labelled files (SKAB's `;`-separated files, or `,`-separated ones with a
    /// timestamp column and a 0/1 label column) are imported as devices of --profile into a
    /// scratch embedded stack (store, bus, registry; --keep keeps it), and each file's model is
    /// trained there on its first --train-rows rows (SKAB's per-run protocol), or one model on
    /// --train-file (the fleet protocol); then the rest is replayed and scored as with
    /// --from/--to. These are the steps of `sentio import`, `sentio train` and `sentio evaluate
    /// --from/--to`, with the configuration's [train] and [detect] settings: doing them by hand
    /// gives the same numbers. examples/skab.toml holds SKAB's profile and the settings measured
    /// in docs/quality.md.
    ///
    /// With --from/--to, a registered model (as for `sentio detect`, the detect.* settings)
    /// replays a stored range; its alerts are compared with the ground truth stored with each
    /// reading (the simulator's anomaly kinds, or an imported label column), in all and per
    /// anomaly kind. A frame counts as predicted while an alert is open.
    Evaluate(commands::evaluate::Args),
    /// List, inspect and promote registered model versions.
    Model(commands::model::Args),
    /// Asset profiles: which kind of machine each stored device is, the channels stored but not
    /// modelled, and a profile to paste for machines no profile declares (`profile suggest`).
    Profile(commands::profile::Args),
    /// Print the effective configuration (defaults, file, environment), secrets masked.
    Config(commands::config::Args),
    /// Measure throughput against peers: the embedded pipeline against its parts, with --real the
    /// ETL and producer on Kafka and PostgreSQL against raw COPY and bare librdkafka, `bench
    /// train` the model engine against PyTorch, `bench detect` windows scored per second
    /// against PyTorch's inference and the streaming detector's end-to-end latency, or `bench
    /// bridge` the MQTT bridge's readings/s from Mosquitto into the bus against `mosquitto_sub`
    /// draining the same backlog (bridge.mqtt.host/port; bus.kind kafka), or `bench http` the
    /// ingest endpoint's readings/s at 1,000 per request against the bus taking them directly.
    ///
    /// `sentio bench detect` trains the configured model (train.window, hidden, bottleneck) for a
    /// few seconds on simulated history at the live run's cadence, then measures, on the
    /// embedded backends in a temporary directory (about two minutes with the defaults):
    ///
    /// Throughput: 4,096 raw windows are scored in batches of detect.batch_windows by Sentio's
    /// detection path (scaler, autoencoder, per-window and per-sensor errors, stuck-sensor check)
    /// and by PyTorch with the same weights (scripts/bench_torch_detect.py, no_grad), at each
    /// --threads count, the two alternating over --rounds rounds (medians, with ranges).
    /// PyTorch's scores must equal Sentio's within 1e-4 relative, or the command fails.
    ///
    /// Latency: the simulator publishes --rate readings/s (--devices devices x 4 sensors) in real
    /// time onto the embedded bus and the streaming detector scores every window; after a
    /// warm-up of one window span it reports, over --duration, p50, p99 and max of the newest
    /// reading's event time to the window's score and to its alert, windows scored per second
    /// and late readings.
    Bench(commands::bench::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet_default = matches!(
        cli.command,
        Command::Demo(_) | Command::Bench(_) | Command::Train(_) | Command::Import(_)
    );
    logging::init(cli.log_format, cli.log.as_deref(), quiet_default);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let load = || sentio_config::Config::load(cli.config.as_deref());
        match cli.command {
            Command::Demo(args) => commands::demo::run(load()?, args).await,
            Command::Simulate(args) => commands::simulate::run(load()?, args).await,
            Command::Ingest(args) => commands::ingest::run(load()?, args).await,
            Command::Import(args) => commands::import::run(load()?, args).await,
            Command::Bridge(args) => commands::bridge::run(load()?, args).await,
            Command::Migrate => commands::migrate::run(load()?).await,
            Command::Train(args) => commands::train::run(load()?, args).await,
            Command::Detect(args) => commands::detect::run(load()?, args).await,
            Command::Serve(args) => commands::serve::run(load()?, args).await,
            Command::Evaluate(args) => commands::evaluate::run(load()?, args).await,
            Command::Model(args) => commands::model::run(load()?, args).await,
            Command::Profile(args) => commands::profile::run(load()?, args).await,
            Command::Config(args) => commands::config::run(cli.config.as_deref(), args),
            Command::Bench(args) => commands::bench::run(load()?, args).await,
        }
    });
    // Do not wait for stray blocking tasks (e.g. a stdin reader) once the command is done.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    /// clap checks the whole command tree (unique argument names, valid defaults) only when a
    /// command is built: this builds every subcommand, so a clash fails here, not at a user's.
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory as _;
        super::Cli::command().debug_assert();
    }
}
