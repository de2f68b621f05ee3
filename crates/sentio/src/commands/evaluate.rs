//! `sentio evaluate`: detection quality on labelled data, from the store (a replay of a range
//! against the ground truth stored with its readings), or from labelled CSV files: those are
//! imported into a scratch embedded stack, trained on and replayed there, by the same steps as
//! `sentio import`, `sentio train` and `sentio evaluate --from --to` by hand.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use sentio_config::{BusKind, Config, Promote, StoreKind, TrackingKind};
use sentio_core::DeviceId;
use sentio_core::time::format_rfc3339;
use sentio_services::evaluate::{Scores, StoreEvaluation, Tally, evaluate_store, list_inputs};
use sentio_services::train::TrainRequest;
use sentio_store::RangeQuery;
use serde::Serialize;

use super::detect::{ReplaySetup, replay_setup};
use super::time_arg::parse_instant;
use crate::wiring;

/// The flags of `sentio evaluate`; its help text is the doc comment of `Command::Evaluate`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["csv", "from"])))]
pub struct Args {
    /// Labelled CSV files, or directories whose *.csv files are all labelled (repeatable). Each
    /// file is a device of --profile, named after the profile's device pattern with the file's
    /// name for its `*` (`skab-*`: valve1/3.csv is skab-3).
    #[arg(help_heading = "CSV files", long, value_name = "FILE|DIR", num_args = 1.., conflicts_with_all = ["from", "to", "devices", "model"], requires = "profile")]
    csv: Vec<PathBuf>,
    /// The fleet protocol: one model trained on this anomaly-free file (same columns, no label
    /// needed), then every labelled file evaluated whole. Without it, SKAB's per-run protocol:
    /// each file's model trains on its own first --train-rows rows.
    #[arg(help_heading = "CSV files", long, value_name = "FILE", requires = "csv")]
    train_file: Option<PathBuf>,
    /// Name of the 0/1 label column.
    #[arg(
        help_heading = "CSV files",
        long,
        value_name = "NAME",
        default_value = "anomaly",
        requires = "csv"
    )]
    label_column: String,
    /// Leading rows (distinct timestamps) of each file that train its model; the rest is
    /// evaluated (ignored with --train-file).
    #[arg(help_heading = "CSV files", long, value_name = "N", default_value_t = 400)]
    train_rows: usize,
    /// Keep the scratch stack in DIR (its store, registry and models; DIR must be empty or
    /// absent) to look at afterwards, e.g. with `sentio serve` on a configuration pointing there.
    /// Default: a temporary directory, removed at the end.
    #[arg(help_heading = "CSV files", long, value_name = "DIR", requires = "csv")]
    keep: Option<PathBuf>,
    /// Start of the stored range to replay: RFC 3339, a date, or `now`.
    #[arg(help_heading = "Stored range", long, value_parser = parse_instant, requires = "to")]
    from: Option<i64>,
    /// End (exclusive) of the stored range.
    #[arg(help_heading = "Stored range", long, value_parser = parse_instant, requires = "from")]
    to: Option<i64>,
    /// Only these devices (repeat the flag; default: every device of the profile in the range).
    #[arg(help_heading = "Stored range", long = "device", value_name = "DEVICE")]
    devices: Vec<String>,
    /// The asset profile whose devices and model to evaluate (default: that of the --device
    /// given, or the only profile with stored devices, else pump). With --csv, the profile the
    /// files' columns are the channels of (required).
    #[arg(long)]
    profile: Option<String>,
    /// The model version or alias to replay with (overrides detect.alias).
    #[arg(help_heading = "Stored range", long, value_name = "VERSION|ALIAS")]
    model: Option<String>,
    /// Print the whole result as one JSON document instead of tables.
    #[arg(long)]
    json: bool,
}

pub async fn run(mut config: Config, args: Args) -> anyhow::Result<()> {
    match (args.from, args.to) {
        (Some(from), Some(to)) => {
            if let Some(model) = &args.model {
                config.detect.alias = model.clone();
            }
            let result =
                evaluate_range(&config, &args.devices, args.profile.as_deref(), from, to).await?;
            if args.json {
                say!("{}", serde_json::to_string_pretty(&result)?);
            } else {
                print_store(&result);
            }
            Ok(())
        }
        _ => run_csv(config, &args).await,
    }
}

/// One CSV file's outcome.
#[derive(Debug, Serialize)]
struct FileReport {
    path: String,
    device: String,
    /// Rows (distinct timestamps) imported.
    rows: usize,
    /// Rows that trained (this file's, or the training file's).
    train_rows: usize,
    tested_rows: usize,
    model_version: String,
    threshold: f64,
    scores: Scores,
    /// The whole file scored with the same model, its training rows counted as SKAB's notebooks
    /// count them (per-run protocol only: with --train-file every row is tested already).
    #[serde(skip_serializing_if = "Option::is_none")]
    whole_file: Option<Scores>,
}

/// The outcome over all files.
#[derive(Debug, Serialize)]
struct CsvEvaluation {
    profile: String,
    model_name: String,
    train_file: Option<String>,
    /// Confusion counts summed over the files, then the ratios (SKAB's aggregation).
    pooled: Scores,
    /// The same over whole files, training rows counted (per-run protocol only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pooled_whole_file: Option<Scores>,
    files: Vec<FileReport>,
    seconds: f64,
}

/// The scratch stack: the configuration with an embedded store, bus and registry in `dir`.
fn scratch_config(config: &Config, dir: &Path) -> anyhow::Result<Config> {
    let mut c = config.clone();
    c.store.kind = StoreKind::Sqlite;
    c.store.sqlite.path = dir.join("sentio.db");
    c.bus.kind = BusKind::Memory;
    c.tracking.kind = TrackingKind::Local;
    c.tracking.local.root = dir.join("tracking");
    c.objects.local.root = dir.join("objects");
    c.objects.kind = sentio_config::ObjectsKind::Local;
    c.archive.enabled = false;
    c.train.promote = Promote::Always;
    c.validate()?;
    Ok(c)
}

/// The device a file becomes: the profile's first device pattern ending in `*`, with the file's
/// name (without extension) for the `*`.
fn device_prefix(config: &Config, profile: &str) -> anyhow::Result<String> {
    let profiles = config.profiles()?;
    let p = profiles.get(profile).with_context(|| {
        let known: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
        format!(
            "--profile {profile:?}: the configuration declares no such profile (it has {}). \
             Declare [profiles.{profile}] with the files' columns as its channels and a device \
             pattern such as \"{profile}-*\" (examples/skab.toml is SKAB's; `sentio profile \
             suggest` prints one from imported history), and pass the file with --config",
            known.join(", ")
        )
    })?;
    p.devices
        .iter()
        .find_map(|d| d.strip_suffix('*').filter(|s| !s.contains(['*', '?'])))
        .map(str::to_owned)
        .with_context(|| {
            format!(
                "profile {profile}'s device patterns ({}) have none that ends in `*` to name a \
                 device per file: add one, such as \"{profile}-*\"",
                p.devices.join(", ")
            )
        })
}

async fn run_csv(config: Config, args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let profile = args.profile.clone().context("--csv needs --profile")?;
    let files = list_inputs(&args.csv)?;
    let prefix = device_prefix(&config, &profile)?;
    let temp;
    let dir = match &args.keep {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            anyhow::ensure!(
                std::fs::read_dir(dir)?.next().is_none(),
                "--keep {}: the directory is not empty; give an empty or new one",
                dir.display()
            );
            dir.clone()
        }
        None => {
            temp = tempfile::tempdir().context("creating the scratch directory")?;
            temp.path().to_owned()
        }
    };
    let scratch = scratch_config(&config, &dir)?;
    say_err!(
        "importing {} files as devices of profile {profile} into {}",
        files.len() + usize::from(args.train_file.is_some()),
        dir.display()
    );
    sentio_app::divert_reports(true);
    let result = evaluate_files(&scratch, args, &profile, &prefix, &files).await;
    sentio_app::divert_reports(false);
    let (files_out, model_name) = result?;
    let mut pooled = Tally::default();
    let mut pooled_whole = Tally::default();
    for (_, tally, whole) in &files_out {
        pooled.add(tally);
        if let Some(whole) = whole {
            pooled_whole.add(whole);
        }
    }
    let result = CsvEvaluation {
        profile: profile.clone(),
        model_name,
        train_file: args.train_file.as_ref().map(|p| p.display().to_string()),
        pooled: pooled.scores(),
        pooled_whole_file: args.train_file.is_none().then(|| pooled_whole.scores()),
        files: files_out.into_iter().map(|(f, _, _)| f).collect(),
        seconds: started.elapsed().as_secs_f64(),
    };
    if args.json {
        say!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print_csv(&result, args);
    }
    Ok(())
}

/// Imports, trains and evaluates every file on the scratch stack.
async fn evaluate_files(
    scratch: &Config,
    args: &Args,
    profile: &str,
    prefix: &str,
    files: &[PathBuf],
) -> anyhow::Result<(Vec<(FileReport, Tally, Option<Tally>)>, String)> {
    let device_of = |path: &Path| {
        sentio_services::import::names::device_from_file(prefix, path)
            .with_context(|| format!("naming the device of {}", path.display()))
    };
    let mut all = files.to_vec();
    all.extend(args.train_file.iter().cloned());
    let import = super::import::Args::files(
        all,
        prefix.to_owned(),
        profile.to_owned(),
        args.label_column.clone(),
    );
    super::import::run(scratch.clone(), import).await.context("importing the files")?;
    let store = wiring::open_store(scratch).await?;
    let profiles = scratch.profiles()?;
    let channels = profiles.get(profile).context("no such profile")?.channel_names();
    // Each device's distinct timestamps, in order.
    let timestamps = async |device: &DeviceId| -> anyhow::Result<Vec<i64>> {
        let rows = store
            .query_range(&RangeQuery {
                devices: vec![device.clone()],
                sensors: channels.clone(),
                from_ns: i64::MIN,
                to_ns: i64::MAX,
            })
            .await
            .context("reading the imported rows")?;
        let mut ts: Vec<i64> = rows.iter().map(|r| r.ts_ns).collect();
        ts.sort_unstable();
        ts.dedup();
        Ok(ts)
    };
    let tracking = wiring::open_tracking(scratch)?;
    let stop = tokio_util::sync::CancellationToken::new();
    let train = async |device: &DeviceId, from_ns: i64, to_ns: i64| -> anyhow::Result<u64> {
        let mut cfg = scratch.clone();
        cfg.train.devices = vec![device.to_string()];
        let request = TrainRequest {
            config: cfg.train.clone(),
            profiles: profiles.clone(),
            profile: profile.to_owned(),
            experiment: cfg.tracking.experiment.clone(),
            from_ns: Some(from_ns),
            to_ns: Some(to_ns),
        };
        let outcome = super::train::train_and_report(
            &cfg,
            store.as_ref(),
            tracking.clone(),
            request,
            stop.clone(),
        )
        .await
        .with_context(|| format!("training on {device}"))?;
        Ok(outcome.version)
    };
    let fleet = match &args.train_file {
        Some(path) => {
            let device = device_of(path)?;
            let ts = timestamps(&device).await?;
            let (Some(&first), Some(&last)) = (ts.first(), ts.last()) else {
                anyhow::bail!("{}: no row could be imported", path.display());
            };
            say_err!("training on {} ({} rows)", path.display(), ts.len());
            Some((train(&device, first, last + 1).await?, ts.len()))
        }
        None => None,
    };
    let mut out = Vec::with_capacity(files.len());
    for (i, path) in files.iter().enumerate() {
        let device = device_of(path)?;
        let ts = timestamps(&device).await?;
        let (Some(&first), Some(&last)) = (ts.first(), ts.last()) else {
            anyhow::bail!("{}: no row could be imported", path.display());
        };
        let end = last + 1;
        let (version, from, train_rows) = match fleet {
            Some((version, rows)) => (version, first, rows),
            None => {
                let n = args.train_rows;
                anyhow::ensure!(
                    ts.len() > n,
                    "{} has {} rows, not more than the {n} training rows (--train-rows)",
                    path.display(),
                    ts.len()
                );
                (train(&device, first, ts[n]).await?, ts[n], n)
            }
        };
        let mut cfg = scratch.clone();
        cfg.detect.alias = version.to_string();
        let result = evaluate_range(&cfg, &[device.to_string()], Some(profile), from, end)
            .await
            .with_context(|| format!("evaluating {}", path.display()))?;
        let p = &result.points;
        say_err!(
            "{}/{} {}: F1 {:.3}, FAR {:.1} %, MAR {:.1} % (version {version})",
            i + 1,
            files.len(),
            path.display(),
            p.f1,
            p.far_pct,
            p.mar_pct
        );
        // SKAB's notebooks score whole files: the same model over the training rows too.
        let whole = if from > first {
            let r = evaluate_range(&cfg, &[device.to_string()], Some(profile), first, end)
                .await
                .with_context(|| format!("evaluating the whole of {}", path.display()))?;
            Some(r.tally)
        } else {
            None
        };
        let tested = ts.iter().filter(|&&t| t >= from).count();
        out.push((
            FileReport {
                path: path.display().to_string(),
                device: device.to_string(),
                rows: ts.len(),
                train_rows,
                tested_rows: tested,
                model_version: result.model_version.clone(),
                threshold: result.threshold,
                scores: result.points.clone(),
                whole_file: whole.as_ref().map(Tally::scores),
            },
            result.tally,
            whole,
        ));
    }
    Ok((out, wiring::profile_model_name(scratch, profile)))
}

fn print_csv(r: &CsvEvaluation, args: &Args) {
    say!(
        "{:<28} {:>6} {:>6} {:>10} {:>6} {:>6} {:>6} {:>7} {:>7} {:>7} {:>8}",
        "file",
        "rows",
        "tested",
        "threshold",
        "F1",
        "prec",
        "recall",
        "FAR %",
        "MAR %",
        "events",
        "delay s"
    );
    for f in &r.files {
        let name = short(&f.path, 28);
        say!(
            "{name:<28} {:>6} {:>6} {:>10.4} {}",
            f.rows,
            f.tested_rows,
            f.threshold,
            row(&f.scores)
        );
    }
    let name = format!("pooled ({} files)", r.files.len());
    let tested: usize = r.files.iter().map(|f| f.tested_rows).sum();
    say!("{name:<28} {:>6} {tested:>6} {:>10} {}", "", "", row(&r.pooled));
    let p = &r.pooled;
    if let Some(w) = &r.pooled_whole_file {
        say!(
            "whole files, training rows counted (as SKAB's notebooks score): F1 {:.3}, precision \
             {:.3}, recall {:.3}, FAR {:.2} %, MAR {:.2} %",
            w.f1,
            w.precision,
            w.recall,
            w.far_pct,
            w.mar_pct
        );
    }
    say!(
        "events: {} of {} detected, {} of {} alarms true; delay mean {} s, median {} s, max {} s",
        p.events_detected,
        p.events,
        p.true_alarms,
        p.alarms,
        opt(p.delay_mean_s),
        opt(p.delay_median_s),
        opt(p.delay_max_s)
    );
    say!(
        "{} of profile {} {}, the configuration's [train] and [detect] settings; {:.1} s",
        r.model_name,
        r.profile,
        match &r.train_file {
            Some(f) => format!("trained once on {f}"),
            None => format!("trained per file on its first {} rows", args.train_rows),
        },
        r.seconds
    );
}

fn row(s: &Scores) -> String {
    format!(
        "{:>6.3} {:>6.3} {:>6.3} {:>7.2} {:>7.2} {:>7} {:>8}",
        s.f1,
        s.precision,
        s.recall,
        s.far_pct,
        s.mar_pct,
        format!("{}/{}", s.events_detected, s.events),
        opt(s.delay_mean_s)
    )
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"))
}

/// The last `width` characters of `path`.
fn short(path: &str, width: usize) -> String {
    let n = path.chars().count();
    if n <= width {
        path.to_owned()
    } else {
        format!("…{}", path.chars().skip(n + 1 - width).collect::<String>())
    }
}

/// Replays `[from, to)` of the configured store and scores it against its ground truth.
/// `devices` (all of the profile's when empty) with the model `detect.alias` names.
async fn evaluate_range(
    config: &Config,
    devices: &[String],
    profile: Option<&str>,
    from: i64,
    to: i64,
) -> anyhow::Result<StoreEvaluation> {
    config.validate()?;
    anyhow::ensure!(from < to, "--from must be before --to");
    let ReplaySetup { devices, store, scorer, _cache } =
        replay_setup(config, devices, profile).await?;
    let d = &config.detect;
    let settings = wiring::alert_settings(config);
    evaluate_store(store.as_ref(), scorer, &devices, from, to, d.stride, settings).await
}

fn print_store(r: &StoreEvaluation) {
    say!(
        "{} version {} (threshold {:.5}): {} .. {}, {} readings, {} devices, {} windows",
        r.model_name,
        r.model_version,
        r.threshold,
        format_rfc3339(r.from_ns),
        format_rfc3339(r.to_ns),
        r.readings,
        r.devices,
        r.windows
    );
    let p = &r.points;
    say!(
        "frames (predicted while an alert is open): F1 {:.3}, precision {:.3}, recall {:.3}, \
         FAR {:.2} %, MAR {:.2} %",
        p.f1,
        p.precision,
        p.recall,
        p.far_pct,
        p.mar_pct
    );
    let a = &r.alerts;
    say!(
        "alerts: {} raised, {} over a fault (precision {:.3}); faults: {} of {} caught (recall \
         {:.3}); delay mean {} s, median {} s, max {} s",
        a.alerts,
        a.true_alerts,
        a.precision,
        a.detected,
        a.events,
        a.recall,
        opt(a.delay_mean_s),
        opt(a.delay_median_s),
        opt(a.delay_max_s)
    );
    if !a.false_by_sensor.is_empty() {
        let named: Vec<String> =
            a.false_by_sensor.iter().map(|(sensor, n)| format!("{sensor} {n}")).collect();
        say!("false alerts by the sensor they named first: {}", named.join(", "));
    }
    say!(
        "{:<20} {:>7} {:>7} {:>7} {:>13} {:>11}",
        "anomaly kind",
        "faults",
        "caught",
        "recall",
        "mean delay s",
        "top sensor"
    );
    for k in &r.kinds {
        say!(
            "{:<20} {:>7} {:>7} {:>7.3} {:>13} {:>11}",
            k.kind.as_str(),
            k.events,
            k.detected,
            k.recall,
            opt(k.delay_mean_s),
            format!("{}/{}", k.top_sensor_right, k.detected)
        );
    }
}
