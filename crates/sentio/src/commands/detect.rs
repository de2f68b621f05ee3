//! `sentio detect`: the streaming detector on the bus, or, with `--from --to`, a replay of a stored
//! time range through the same scorer and alert rules.

use std::sync::Arc;

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use sentio_config::{BusKind, Config};
use sentio_core::time::format_rfc3339;
use sentio_core::{Alert, AlertState, Channel, DeviceId};
use sentio_services::detect::service::{DetectStats, Detector};
use sentio_services::detect::{AlertV1, Scorer, replay, save_replay_scores};
use sentio_services::shutdown::Shutdown;
use sentio_store::ReadingStore;

use super::time_arg::parse_instant;
use crate::wiring;

/// Scores sensor readings with a registered model (detect.alias of detect.model_name, default:
/// the champion of train.model_name) and raises alerts: an alert opens when the score stays above
/// the model's threshold for detect.open_after, and names the sensors that deviated (share of the
/// error, relative to each sensor's normal level), the top one first.
///
/// One model per asset profile: each device is scored by its profile's model (train.model_name,
/// or detect.model_name, for the built-in pump; sentio-<profile> for any other). A profile with
/// no model yet is not scored until one is registered.
///
/// Without --from/--to, it streams: it consumes topics.readings in the consumer group
/// detect.group (bus.kind = "kafka"; on the embedded bus, `sentio demo` runs it), assembles each
/// device's frames in event time, scores the windows in batches, publishes alert messages to
/// topics.alerts and saves them in the anomalies table (and, with detect.save_scores, every
/// window's score in anomaly_scores), and switches to a newly promoted version within
/// detect.poll_interval. Ctrl-C stops it.
///
/// With --from/--to, it replays the stored readings of that range of one profile's devices
/// (--profile, or the profile of the --device given, or the only profile with stored devices,
/// else the pump; windows aligned exactly as in training), lists the alerts and writes them, and the scores, like the stream does (unless
/// --dry-run).
#[derive(clap::Args)]
pub struct Args {
    /// Start of a stored range to replay: RFC 3339, a date, or `now`.
    #[arg(long, value_parser = parse_instant, requires = "to")]
    from: Option<i64>,
    /// End (exclusive) of the range.
    #[arg(long, value_parser = parse_instant, requires = "from")]
    to: Option<i64>,
    /// Only these devices (repeat the flag; default: every device of the profile in the range).
    #[arg(long = "device", value_name = "DEVICE")]
    devices: Vec<String>,
    /// With --from/--to: the asset profile whose devices and model to replay (default: that of
    /// the --device given, or the only profile with stored devices, else pump).
    #[arg(long, requires = "from")]
    profile: Option<String>,
    /// The model version or alias to use (overrides detect.alias).
    #[arg(long, value_name = "VERSION|ALIAS")]
    model: Option<String>,
    /// Print every alert message (opened, updated, resolved) as a JSON line instead of a table:
    /// the alert message v1 of docs/messages.md.
    #[arg(long, requires = "from")]
    json: bool,
    /// With --from/--to: only list the alerts; do not publish them or save them (nor the scores).
    #[arg(long, requires = "from")]
    dry_run: bool,
}

pub async fn run(mut config: Config, args: Args) -> anyhow::Result<()> {
    if let Some(model) = &args.model {
        config.detect.alias = model.clone();
    }
    config.validate()?;
    match (args.from, args.to) {
        (Some(from), Some(to)) => replay_range(config, args, from, to).await,
        _ => stream(config).await,
    }
}

/// The streaming detector, until Ctrl-C.
async fn stream(config: Config) -> anyhow::Result<()> {
    if config.bus.kind == BusKind::Memory {
        bail!(
            "bus.kind = \"memory\" lives inside one process, so `sentio detect` alone would never \
             receive a reading. Run `sentio demo` (simulator, ingest and detector in one process), \
             replay stored readings with `sentio detect --from ... --to ...`, or use bus.kind = \"kafka\""
        );
    }
    let shutdown = Shutdown::new();
    shutdown.cancel_on_signals();
    let store = wiring::open_store(&config).await?;
    let bus = wiring::open_bus(&config, None).await?;
    let tracking = wiring::open_tracking(&config)?;
    let cache = tempfile::tempdir().context("creating a temporary directory for models")?;
    let scorers = wiring::profile_scorers(&config, tracking.as_ref(), cache.path()).await?;
    let settings =
        wiring::stream_settings(&config, Some((tracking.clone(), cache.path().to_owned())))?;
    let detector = Detector::new(bus, store, settings);
    let stats = detector.stats();
    let task = shutdown.spawn("detect", detector.run(scorers, shutdown.token()));
    let started = std::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.tick().await;
    let mut last = 0u64;
    let stop = shutdown.token();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {
                let scored = stats.windows_scored.load(Ordering::Relaxed);
                say_err!("{}", summary(&stats, (scored - last) as f64 / 10.0, true));
                last = scored;
            }
        }
    }
    task.await.context("the detect task panicked")??;
    let rate =
        stats.windows_scored.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    say_err!("{}", summary(&stats, rate, true));
    shutdown.wait(Duration::from_secs(5)).await;
    Ok(())
}

/// One line: model, windows scored (per second), latency, alerts. `latency` is false when event
/// time does not follow the clock (a simulator sped up), which makes it meaningless.
pub fn summary(stats: &DetectStats, windows_per_s: f64, latency: bool) -> String {
    let ms = |d: Option<Duration>| {
        d.map_or("-".to_owned(), |d| format!("{:.0} ms", d.as_secs_f64() * 1e3))
    };
    let models = stats.models();
    let model = if models.is_empty() {
        "-".to_owned()
    } else {
        models.values().map(|m| format!("{} v{}", m.name, m.version)).collect::<Vec<_>>().join(", ")
    };
    let latency = if latency {
        format!(
            "latency p50 {} p99 {}",
            ms(stats.latency.quantile(0.5)),
            ms(stats.latency.quantile(0.99))
        )
    } else {
        "no latency (sped-up event time)".to_owned()
    };
    format!(
        "{model}: {} windows scored ({windows_per_s:.0}/s), {latency}, {} alerts open, \
         {} alert messages, {} late readings, {} undecodable",
        stats.windows_scored.load(Ordering::Relaxed),
        stats.alerts_open.load(Ordering::Relaxed),
        stats.alerts_published.load(Ordering::Relaxed),
        stats.late.load(Ordering::Relaxed),
        stats.undecodable.load(Ordering::Relaxed),
    )
}

/// What replaying stored readings needs: the devices asked for (or the profile's), the store, and
/// the profile's model (detect.alias of its registered model), downloaded into a directory that
/// lives as long as this.
pub(crate) struct ReplaySetup {
    pub devices: Vec<DeviceId>,
    pub store: Arc<dyn ReadingStore>,
    pub scorer: Arc<Scorer>,
    pub _cache: tempfile::TempDir,
}

pub(crate) async fn replay_setup(
    config: &Config,
    devices: &[String],
    profile: Option<&str>,
) -> anyhow::Result<ReplaySetup> {
    let mut devices: Vec<DeviceId> = devices
        .iter()
        .map(|d| DeviceId::new(d).with_context(|| format!("--device {d:?}")))
        .collect::<anyhow::Result<_>>()?;
    let profiles = config.profiles()?;
    let store = wiring::open_store(config).await?;
    let profile = match (profile, devices.first()) {
        (Some(p), _) => profiles.get(p).with_context(|| {
            format!("--profile {p:?}: no such profile; `sentio profile list` shows them")
        })?,
        (None, Some(d)) => profiles.for_device(d.as_str()).with_context(|| {
            format!("device {d} belongs to no profile; `sentio profile list` shows which is which")
        })?,
        (None, None) => {
            // The only profile with stored devices, else the pump.
            let stored = sentio_services::train::stored_profiles(store.as_ref(), &profiles).await?;
            let only = match &stored[..] {
                [one] => one.as_str(),
                _ => sentio_core::profile::PUMP,
            };
            profiles.get(only).context("no profile to replay: give --profile")?
        }
    };
    for d in &devices {
        let theirs = profiles.for_device(d.as_str()).map(|p| p.name.as_str());
        anyhow::ensure!(
            theirs == Some(profile.name.as_str()),
            "device {d} is of profile {}, not {}: replay one profile at a time (--profile)",
            theirs.unwrap_or("(none)"),
            profile.name
        );
    }
    let d = &config.detect;
    let name = wiring::profile_model_name(config, &profile.name);
    let tracking = wiring::open_tracking(config)?;
    let cache = tempfile::tempdir().context("creating a temporary directory for the model")?;
    let threads = sentio_services::train::fit::threads_or_all(d.threads);
    // The model first: without one there is nothing to replay, whatever the store holds.
    let scorer =
        Arc::new(Scorer::resolve(tracking.as_ref(), &name, &d.alias, cache.path(), threads).await?);
    if devices.is_empty() {
        devices = sentio_services::train::profile_devices(store.as_ref(), &profiles, profile)
            .await?
            .iter()
            .map(|d| DeviceId::new(d).with_context(|| format!("stored device {d:?}")))
            .collect::<anyhow::Result<_>>()?;
    }
    Ok(ReplaySetup { devices, store, scorer, _cache: cache })
}

/// Replays a stored range.
async fn replay_range(config: Config, args: Args, from: i64, to: i64) -> anyhow::Result<()> {
    anyhow::ensure!(from < to, "--from must be before --to");
    let ReplaySetup { devices, store, scorer, _cache } =
        replay_setup(&config, &args.devices, args.profile.as_deref()).await?;
    let d = &config.detect;
    let settings = wiring::alert_settings(&config);
    let found =
        replay(store.as_ref(), scorer.clone(), &devices, from, to, d.stride, settings).await?;
    if !args.dry_run && d.save_scores {
        save_replay_scores(store.as_ref(), &found.scores, &scorer).await?;
    }
    if !args.dry_run && !found.alerts.is_empty() {
        store.save_alerts(&found.alerts).await.context("saving the alerts")?;
        if config.bus.kind == BusKind::Kafka {
            let bus = wiring::open_bus(&config, None).await?;
            let records = found.alerts.iter().map(|a| AlertV1::from(a).to_record()).collect();
            bus.publish_batch(&config.topics.alerts, records)
                .await
                .with_context(|| format!("publishing the alerts to {:?}", config.topics.alerts))?;
        }
    }

    if args.json {
        for alert in &found.alerts {
            say!("{}", serde_json::to_string(&AlertV1::from(alert))?);
        }
        return Ok(());
    }
    let windows: usize = found.scores.values().map(Vec::len).sum();
    say!(
        "{} version {}: {} readings, {} devices, {} windows scored, threshold {:.5}",
        scorer.model().name,
        scorer.model().version,
        found.readings,
        found.scores.len(),
        windows,
        scorer.threshold()
    );
    let resolved: Vec<&Alert> =
        found.alerts.iter().filter(|a| a.state == AlertState::Resolved).collect();
    if resolved.is_empty() {
        say!("no alerts");
        return Ok(());
    }
    say!("{} alerts:", resolved.len());
    for a in resolved {
        say!(
            "  {}  {} .. {}  peak {:.4} ({:.1}x)  {:?}  {}",
            a.device,
            format_rfc3339(a.window_start_ns),
            format_rfc3339(a.window_end_ns),
            a.score,
            a.score / a.threshold,
            a.severity,
            sensors(&a.sensor_share)
        );
    }
    Ok(())
}

/// "vibration 91%, pressure 5%, ...", the top sensor first, shares under 1 % left out.
fn sensors(share: &[(Channel, f64)]) -> String {
    let mut order: Vec<&(Channel, f64)> = share.iter().collect();
    // Stable: equal shares keep display order, as the alert's top sensor does.
    order.sort_by(|a, b| b.1.total_cmp(&a.1));
    order
        .iter()
        .filter(|(_, s)| *s >= 0.01)
        .map(|(c, s)| format!("{} {:.0}%", c.as_str(), s * 100.0))
        .collect::<Vec<_>>()
        .join(", ")
}
