//! `sentio simulate`: publish simulated readings.

use std::time::Duration;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use sentio_config::{BusKind, Config};
use sentio_core::time::{format_rfc3339, now_ns};
use sentio_services::shutdown::Shutdown;
use sentio_services::simulator::Output;

use super::time_arg::{parse_duration, parse_instant};
use crate::wiring;

/// Without --from/--to it runs in real time from now until Ctrl-C. With --from and --to it
/// backfills that range as fast as possible and exits; the same seed and range give the same
/// messages byte for byte. The fleet is `demo.profiles` (devices per profile, e.g. 6 pumps and 2
/// compressors), or, when that is empty, `simulator.devices` pumps.
#[derive(clap::Args)]
pub struct Args {
    /// Random seed (overrides simulator.seed).
    #[arg(long)]
    seed: Option<u64>,
    /// Number of pumps (overrides simulator.devices), for a fleet of pumps only.
    #[arg(long)]
    devices: Option<u32>,
    /// The fleet by profile, e.g. pump=6,compressor=2 (overrides demo.profiles). Each name is a
    /// profile the configuration declares.
    #[arg(
        long,
        value_name = "NAME=COUNT,...",
        value_delimiter = ',',
        value_parser = parse_profile_count,
        conflicts_with = "devices"
    )]
    profiles: Vec<(String, u32)>,
    /// Time between readings, e.g. 1s or 250ms (overrides simulator.cadence).
    #[arg(long, value_parser = parse_duration)]
    cadence: Option<Duration>,
    /// Real-time speed-up factor (overrides simulator.speedup). Below 1 the live stream slows
    /// down; it never runs ahead of the clock (ingest would refuse readings from the future), so
    /// here a value above 1 acts as 1. For a fast history use --from/--to or --backfill.
    #[arg(long)]
    speedup: Option<f64>,
    /// Start of a backfill: RFC 3339, a date, or `now`.
    #[arg(long, value_parser = parse_instant, requires = "to")]
    from: Option<i64>,
    /// End (exclusive) of a backfill.
    #[arg(long, value_parser = parse_instant, requires = "from")]
    to: Option<i64>,
    /// Backfill this much history before now, then continue in real time (e.g. 6h).
    #[arg(long, value_parser = parse_duration, conflicts_with_all = ["from", "to"])]
    backfill: Option<Duration>,
    /// Write the messages to stdout as JSON lines instead of publishing them.
    #[arg(long, conflicts_with = "mqtt")]
    stdout: bool,
    /// Publish to the MQTT broker of bridge.mqtt (host, port, credentials) instead of the bus,
    /// as devices would: one QoS 1 message per reading, the reading message v1 itself, on
    /// <--mqtt-prefix>/{device}/{sensor}. `sentio bridge mqtt` with a subscription of that topic
    /// template and format "reading" takes them to the bus.
    #[arg(long)]
    mqtt: bool,
    /// The topic prefix of --mqtt.
    #[arg(long, default_value = "sentio/sim", value_name = "PREFIX", requires = "mqtt")]
    mqtt_prefix: String,
    /// Do not write raw .pickle batches to object storage.
    #[arg(long)]
    no_archive: bool,
}

pub async fn run(mut config: Config, args: Args) -> anyhow::Result<()> {
    if args.devices.is_some() && !config.demo.profiles.is_empty() {
        let counts: Vec<String> =
            config.demo.profiles.iter().map(|(name, n)| format!("{name}={n}")).collect();
        bail!(
            "--devices sets the number of pumps of a fleet of pumps only (simulator.devices), but \
             this configuration sets its fleet in demo.profiles: give the counts with --profiles, \
             such as --profiles {}",
            counts.join(",")
        );
    }
    if !args.profiles.is_empty() {
        config.demo.profiles = args.profiles.into_iter().collect();
    }
    let sim = &mut config.simulator;
    sim.seed = args.seed.unwrap_or(sim.seed);
    sim.devices = args.devices.unwrap_or(sim.devices);
    sim.cadence = args.cadence.unwrap_or(sim.cadence);
    sim.speedup = args.speedup.unwrap_or(sim.speedup);
    if args.no_archive {
        config.archive.enabled = false;
    }
    config.validate()?;

    let output = if args.stdout {
        Output::Lines(Box::new(std::io::BufWriter::with_capacity(1 << 16, std::io::stdout())))
    } else if args.mqtt {
        let m = &config.bridge.mqtt;
        let prefix = args.mqtt_prefix.trim_end_matches('/');
        sentio_config::TopicTemplate::parse(&format!("{prefix}/{{device}}/{{sensor}}"))
            .map_err(|why| anyhow::anyhow!("--mqtt-prefix {prefix:?}: expected {why}"))?;
        let client = format!("sentio-sim-{}", std::process::id());
        let publisher = sentio_bridge::MqttPublisher::connect(m, &client, prefix).await?;
        say!(
            "publishing to mqtt://{}:{} on {prefix}/{{device}}/{{sensor}} (QoS 1, reading \
             messages); bridge them with\n  [[bridge.mqtt.subscriptions]]\n  topic = \
             \"{prefix}/{{device}}/{{sensor}}\"\n  format = \"reading\"",
            m.host,
            m.port
        );
        Output::Sink(Box::new(super::bridge::MqttSink(publisher)))
    } else {
        if config.bus.kind == BusKind::Memory {
            bail!(
                "bus.kind = \"memory\" lives inside one process, so readings published by \
                 `sentio simulate` alone would reach nobody. Run `sentio demo` for the whole \
                 pipeline in one process, or pipe: `sentio simulate --stdout | sentio ingest --stdin`"
            );
        }
        // The simulator needs no store: it only produces.
        Output::Bus {
            bus: wiring::open_bus(&config, None).await?,
            topic: config.topics.readings.clone(),
        }
    };
    let mut simulator = wiring::simulator(&config, output, wiring::archiver(&config).await?)?;
    tracing::info!(fleet = %simulator.describe_fleet(), "simulating");
    let shutdown = Shutdown::new();
    shutdown.cancel_on_signals();
    let stop = shutdown.token();

    let now = now_ns();
    let (from, to, then_real_time) = match (args.from, args.to, args.backfill) {
        (Some(from), Some(to), _) => (from, to, false),
        (_, _, Some(back)) => (now - i64::try_from(back.as_nanos())?, now, true),
        _ => (now, now, true),
    };
    if to < from {
        bail!("--to {} is before --from {}", format_rfc3339(to), format_rfc3339(from));
    }
    let total = simulator.ticks_between(from, to);
    let next = if total > 0 {
        let bar = ProgressBar::new(total).with_style(
            ProgressStyle::with_template(
                "backfill {bar:40} {percent:>3}% {pos}/{len} ticks, eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let next = simulator.backfill(from, to, &stop, |done| bar.set_position(done)).await?;
        bar.finish_and_clear();
        next
    } else {
        from
    };
    if then_real_time {
        tracing::info!(from = %format_rfc3339(next), "real time; Ctrl-C stops");
        simulator.real_time(next, &stop).await?;
    }
    simulator.finish().await?;
    let stats = simulator.stats();
    tracing::info!(
        published = stats.published.load(std::sync::atomic::Ordering::Relaxed),
        pickles = stats.pickles_written.load(std::sync::atomic::Ordering::Relaxed),
        "simulation done"
    );
    shutdown.cancel();
    Ok(())
}

/// `compressor=2`: a profile name and its device count.
fn parse_profile_count(s: &str) -> Result<(String, u32), String> {
    let (name, count) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=COUNT, such as compressor=2"))?;
    let count = count
        .trim()
        .parse::<u32>()
        .map_err(|_| format!("{s:?}: the count {count:?} is not a whole number from 0 up"))?;
    Ok((name.trim().to_owned(), count))
}
