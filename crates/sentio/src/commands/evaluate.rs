//! `sentio evaluate`: detection quality on labelled data, from CSV files (SKAB) or from the
//! simulator's ground truth in the store.

use std::path::PathBuf;

use anyhow::Context;
use sentio_config::Config;
use sentio_core::time::format_rfc3339;
use sentio_services::evaluate::{
    CsvEvaluation, Features, FileSettings, PointScore, Scores, StoreEvaluation, evaluate_files,
    evaluate_store, list_inputs,
};

use super::detect::{ReplaySetup, replay_setup};
use super::time_arg::parse_instant;
use crate::wiring;

/// The flags of `sentio evaluate`; its help text is the doc comment of `Command::Evaluate`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["csv", "from"])))]
pub struct Args {
    /// Labelled CSV files, or directories whose *.csv files are all labelled (repeatable).
    #[arg(help_heading = "CSV files", long, value_name = "FILE|DIR", num_args = 1.., conflicts_with_all = ["from", "to", "devices", "model"])]
    csv: Vec<PathBuf>,
    /// An anomaly-free file to train one model on (same columns, no label needed); the labelled
    /// files are then evaluated whole.
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
    /// Leading rows of each file that train the model (ignored with --train-file).
    #[arg(help_heading = "CSV files", long, value_name = "N", default_value_t = FileSettings::default().train_rows)]
    train_rows: usize,
    /// What the model sees of each column: `raw` (the values), `detrend` (each value minus the
    /// mean of the --trend rows before it: drift removed, but a lasting level shift fades too) or
    /// `detrend-slow` (only the columns that wander on the training part, by --slow, are
    /// detrended; the others stay raw).
    #[arg(help_heading = "CSV files", long, value_enum, default_value_t = FeaturesArg::from(FileSettings::default().features))]
    features: FeaturesArg,
    /// Rows of the trailing mean that `--features detrend|detrend-slow` subtracts.
    #[arg(help_heading = "CSV files", long, value_name = "N", default_value_t = FileSettings::default().trend)]
    trend: usize,
    /// `--features detrend-slow` detrends a column whose training part's variance is more than
    /// this many times half the variance of its first differences (noise: about 1; wandering
    /// temperatures: 4 to 270 on SKAB valve1).
    #[arg(help_heading = "CSV files", long, value_name = "X", default_value_t = FileSettings::default().slow)]
    slow: f64,
    /// Rows per window.
    #[arg(help_heading = "CSV files", long, value_name = "N", default_value_t = FileSettings::default().window)]
    window: usize,
    /// LSTM width.
    #[arg(help_heading = "CSV files", long, value_name = "N", default_value_t = FileSettings::default().hidden)]
    hidden: usize,
    /// Width of the bottleneck between encoder and decoder (0: none).
    #[arg(help_heading = "CSV files", long, value_name = "N", default_value_t = FileSettings::default().bottleneck)]
    bottleneck: usize,
    /// Training passes over the training windows (at most, with --patience).
    #[arg(help_heading = "CSV files", long, value_name = "N", default_value_t = FileSettings::default().epochs)]
    epochs: usize,
    /// Early stopping: stop after this many epochs without a lower loss on the held-out windows
    /// and keep the best epoch's model (0: off, train every epoch on every window).
    #[arg(help_heading = "CSV files", long, value_name = "N", default_value_t = FileSettings::default().patience)]
    patience: usize,
    /// Fraction (0..1) of the training windows, the last in time, held out for --patience.
    #[arg(help_heading = "CSV files", long, value_name = "F", default_value_t = FileSettings::default().holdout)]
    holdout: f64,
    /// How a point's score comes from the windows: `window-end` (the window ending at the point,
    /// causal) or `covering` (every window covering it; looks ahead).
    #[arg(help_heading = "CSV files", long, value_enum, default_value_t = PointScoreArg::from(FileSettings::default().point_score))]
    point_score: PointScoreArg,
    /// Trailing moving average of the point scores, in points (1: none).
    #[arg(help_heading = "CSV files", long, value_name = "N", default_value_t = FileSettings::default().smooth)]
    smooth: usize,
    /// Quantile (0..1) of the training part's point scores the threshold starts from.
    #[arg(help_heading = "CSV files", long, value_name = "Q", default_value_t = FileSettings::default().quantile)]
    quantile: f64,
    /// The threshold is this factor times the quantile.
    #[arg(help_heading = "CSV files", long, value_name = "X", default_value_t = FileSettings::default().factor)]
    factor: f64,
    /// Join detections separated by at most this many normal points (0: none).
    #[arg(help_heading = "CSV files", long, value_name = "N", default_value_t = FileSettings::default().merge_gap)]
    merge_gap: usize,
    /// Drift tracking: scores are taken relative to an exponential average (this many points)
    /// of the scores of points predicted normal, so slow drift does not alarm (0: off).
    #[arg(help_heading = "CSV files", long, value_name = "N", default_value_t = FileSettings::default().drift)]
    drift: usize,
    /// Seed of the model's initialization and of the batch order.
    #[arg(help_heading = "CSV files", long, value_name = "N", default_value_t = FileSettings::default().seed)]
    seed: u64,
    /// Files evaluated at once (0: every core).
    #[arg(help_heading = "CSV files", long, value_name = "N", default_value_t = 0)]
    threads: usize,
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
    /// given, or the only profile with stored devices, else pump).
    #[arg(help_heading = "Stored range", long, conflicts_with = "csv")]
    profile: Option<String>,
    /// The model version or alias to replay with (overrides detect.alias).
    #[arg(help_heading = "Stored range", long, value_name = "VERSION|ALIAS")]
    model: Option<String>,
    /// Print the whole result as one JSON document instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum FeaturesArg {
    Raw,
    Detrend,
    DetrendSlow,
}

impl From<Features> for FeaturesArg {
    fn from(f: Features) -> Self {
        match f {
            Features::Raw => FeaturesArg::Raw,
            Features::Detrend => FeaturesArg::Detrend,
            Features::DetrendSlow => FeaturesArg::DetrendSlow,
        }
    }
}

impl From<FeaturesArg> for Features {
    fn from(f: FeaturesArg) -> Self {
        match f {
            FeaturesArg::Raw => Features::Raw,
            FeaturesArg::Detrend => Features::Detrend,
            FeaturesArg::DetrendSlow => Features::DetrendSlow,
        }
    }
}

impl std::fmt::Display for FeaturesArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FeaturesArg::Raw => "raw",
            FeaturesArg::Detrend => "detrend",
            FeaturesArg::DetrendSlow => "detrend-slow",
        })
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum PointScoreArg {
    WindowEnd,
    Covering,
}

impl From<PointScore> for PointScoreArg {
    fn from(p: PointScore) -> Self {
        match p {
            PointScore::WindowEnd => PointScoreArg::WindowEnd,
            PointScore::Covering => PointScoreArg::Covering,
        }
    }
}

impl From<PointScoreArg> for PointScore {
    fn from(p: PointScoreArg) -> Self {
        match p {
            PointScoreArg::WindowEnd => PointScore::WindowEnd,
            PointScoreArg::Covering => PointScore::Covering,
        }
    }
}

impl std::fmt::Display for PointScoreArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PointScoreArg::WindowEnd => "window-end",
            PointScoreArg::Covering => "covering",
        })
    }
}

pub async fn run(config: Config, args: Args) -> anyhow::Result<()> {
    match (args.from, args.to) {
        (Some(from), Some(to)) => run_store(config, &args, from, to).await,
        _ => run_csv(&args).await,
    }
}

async fn run_csv(args: &Args) -> anyhow::Result<()> {
    let settings = FileSettings {
        features: args.features.into(),
        trend: args.trend,
        slow: args.slow,
        train_rows: args.train_rows,
        window: args.window,
        hidden: args.hidden,
        bottleneck: args.bottleneck,
        epochs: args.epochs,
        patience: args.patience,
        holdout: args.holdout,
        point_score: args.point_score.into(),
        smooth: args.smooth,
        quantile: args.quantile,
        factor: args.factor,
        merge_gap: args.merge_gap,
        drift: args.drift,
        seed: args.seed,
        threads: args.threads,
        ..FileSettings::default()
    };
    let files = list_inputs(&args.csv)?;
    let train_file = args.train_file.clone();
    let label = args.label_column.clone();
    let result = tokio::task::spawn_blocking(move || {
        evaluate_files(&files, train_file.as_deref(), &label, &settings)
    })
    .await
    .context("the evaluation thread failed")??;
    if args.json {
        say!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print_csv(&result);
    }
    Ok(())
}

fn print_csv(r: &CsvEvaluation) {
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
            f.test_rows,
            f.threshold,
            row(&f.scores)
        );
    }
    let name = format!("pooled ({} files)", r.files.len());
    let tested: usize = r.files.iter().map(|f| f.test_rows).sum();
    say!("{name:<28} {:>6} {tested:>6} {:>10} {}", "", "", row(&r.pooled));
    let p = &r.pooled;
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
    let s = &r.settings;
    say!(
        "settings: {}features {}, window {}, hidden {}, bottleneck {}, epochs {}{}, lr {}, seed {}, \
         point score {}, smooth {}, threshold q{} x {}, merge gap {}, drift {}; {:.1} s",
        match &r.train_file {
            Some(f) => format!("trained on {f}, "),
            None => format!("trained on the first {} rows, ", s.train_rows),
        },
        match s.features {
            Features::Raw => "raw".to_owned(),
            Features::Detrend => format!("detrend (trend {})", s.trend),
            Features::DetrendSlow => format!("detrend-slow (trend {}, slow {})", s.trend, s.slow),
        },
        s.window,
        s.hidden,
        s.bottleneck,
        s.epochs,
        if s.patience > 0 {
            format!(" (patience {}, holdout {})", s.patience, s.holdout)
        } else {
            String::new()
        },
        s.learning_rate,
        s.seed,
        PointScoreArg::from(s.point_score),
        s.smooth,
        s.quantile,
        s.factor,
        s.merge_gap,
        s.drift,
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

async fn run_store(mut config: Config, args: &Args, from: i64, to: i64) -> anyhow::Result<()> {
    if let Some(model) = &args.model {
        config.detect.alias = model.clone();
    }
    config.validate()?;
    anyhow::ensure!(from < to, "--from must be before --to");
    let ReplaySetup { devices, store, scorer, _cache } =
        replay_setup(&config, &args.devices, args.profile.as_deref()).await?;
    let d = &config.detect;
    let settings = wiring::alert_settings(&config);
    let result =
        evaluate_store(store.as_ref(), scorer, &devices, from, to, d.stride, settings).await?;
    if args.json {
        say!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print_store(&result);
    }
    Ok(())
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
