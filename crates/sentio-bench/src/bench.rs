//! `sentio bench`: the embedded pipeline's throughput, next to the parts it is built from, measured
//! in the same run on the same machine so the ratios mean something. `sentio bench train` measures
//! the model engine against PyTorch instead (bench_train.rs), and `sentio bench detect` the
//! detection path against PyTorch's inference and the streaming detector's latency
//! (bench_detect.rs).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sentio_config::Config;
use sentio_core::time::NANOS_PER_SEC;
use sentio_core::{DecodeLimits, decode_reading, encode_reading};
use sentio_objects::Archiver;
use sentio_services::simulator::model::DeviceModel;
use sentio_services::simulator::{Output, Simulator, device_ids};
use tokio_util::sync::CancellationToken;

use sentio_app::time_arg::parse_duration;
use sentio_app::wiring;

/// What `sentio bench` measures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum What {
    /// The embedded pipeline against its parts (or, with --real, the real stack).
    #[default]
    Pipeline,
    /// The LSTM autoencoder engine's training and inference against PyTorch's, same model, data
    /// shape and threads (needs the venv of scripts/torch-env.sh, or --python).
    Train,
    /// Detection: windows scored per second against PyTorch's inference of the same model, and
    /// the streaming detector's end-to-end latency at --rate readings/s (needs the torch venv).
    Detect,
    /// The MQTT bridge: readings/s from a broker's backlog into Kafka, against `mosquitto_sub`
    /// draining the same backlog (bridge.mqtt names the broker; bus.kind must be "kafka").
    Bridge,
    /// The HTTP ingest endpoint: readings/s at 1,000 readings per request into the bus, against
    /// the bus taking the same readings directly in batches of 1,000 (bus.kind must be "kafka").
    Http,
}

/// Runs the whole embedded pipeline (simulator → memory bus → ETL → SQLite, plus the .pickle
/// archive) on a fresh temporary store, then the store's bulk insert and the message codec alone,
/// and prints readings per second with the pipeline's ratio to each part.
///
/// With --real, measures the real stack instead (the configuration must name bus.kind = "kafka"
/// and store.kind = "postgres"): the ETL into PostgreSQL against a raw binary COPY, and Sentio's
/// Kafka producer path against a bare rdkafka producer and Python's confluent-kafka, on a scratch
/// database and scratch topics.
///
/// `sentio bench train` measures the LSTM autoencoder engine's training and inference throughput
/// against PyTorch's (scripts/bench_torch.py) for the same model, data shape and thread counts,
/// interleaved over --rounds rounds, and prints the ratios.
///
/// `sentio bench detect` measures the detection path's windows per second against PyTorch's
/// inference of the same weights on the same windows, and the streaming detector's end-to-end
/// latency on the embedded bus at --rate readings/s (bench_detect.rs).
#[derive(clap::Args)]
pub struct Args {
    /// What to measure.
    #[arg(value_enum, default_value_t = What::Pipeline)]
    what: What,
    /// Readings to push through the pipeline (rounded up to whole ticks of all devices); with
    /// --real, through the store path. With http: readings each side sends per round.
    #[arg(long, default_value_t = 1_000_000)]
    readings: u64,
    /// Keep the temporary store and archive (their path is printed); with --real, the scratch
    /// database and topics.
    #[arg(long)]
    keep: bool,
    /// Measure the real stack (Kafka and PostgreSQL, as configured) instead of the embedded one.
    #[arg(long)]
    real: bool,
    /// With --real: messages sent through the Kafka broker by each producer (rounded up to whole
    /// ticks of all devices); 0 measures the store path alone, with no broker. Apache Kafka takes
    /// 100,000 in a fifth of a second on 2 cores, too short to time well.
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    kafka_messages: u64,
    /// With --real: the Python with confluent-kafka that runs the independent producer
    /// [default: python3]. With train and detect: the Python with torch [default: the venv of
    /// scripts/torch-env.sh, ~/.cache/sentio/torch-venv/bin/python].
    #[arg(long, env = "SENTIO_PYTHON", value_name = "PATH")]
    python: Option<std::path::PathBuf>,
    /// With train and detect: the thread counts to measure, each on both sides.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2], value_name = "N,..")]
    threads: Vec<usize>,
    /// With train: timed training steps (batches of 64 windows) and timed inference calls
    /// (batches of 256) per measurement [default: 30]. With detect: timed scoring calls (batches
    /// of detect.batch_windows) per measurement [default: 16].
    #[arg(long)]
    steps: Option<usize>,
    /// With train and detect: rounds, Rust and PyTorch interleaved in each; the median is
    /// reported [default: 3 for train, 5 for detect]. With bridge and http: rounds of both sides
    /// [default: 3].
    #[arg(long)]
    rounds: Option<usize>,
    /// With train: the model's channels (features per frame), the same on both sides: 4 is the
    /// pump, 8 SKAB's valve rig.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    features: u16,
    /// With detect: readings per second the simulator publishes in the latency run.
    #[arg(long, default_value_t = 20_000)]
    rate: u32,
    /// With detect: simulated devices (4 sensors each) in the latency run; with --rate it sets
    /// the cadence of the simulator and of the model (devices x 4 / rate seconds).
    #[arg(long, default_value_t = 500)]
    devices: u32,
    /// With detect: how long the latency run is measured, after a warm-up of one window span
    /// plus 2 s.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    duration: Duration,
    /// With bridge: MQTT messages (one reading each) each side drains per round.
    #[arg(long, default_value_t = 200_000, value_name = "N")]
    mqtt_messages: u64,
}

pub async fn run(mut config: Config, args: Args) -> anyhow::Result<()> {
    if args.what != What::Pipeline && args.real {
        bail!(
            "--real measures the pipeline; `sentio bench train` and `bench detect` take no --real"
        );
    }
    if args.what == What::Train {
        let options = super::bench_train::Options {
            threads: args.threads,
            steps: args.steps.unwrap_or(30),
            rounds: args.rounds.unwrap_or(3),
            python: args.python,
            features: usize::from(args.features),
        };
        return super::bench_train::run(options).await;
    }
    if args.what == What::Detect {
        let options = super::bench_detect::Options {
            threads: args.threads,
            steps: args.steps.unwrap_or(16),
            rounds: args.rounds.unwrap_or(5),
            python: args.python,
            rate: args.rate,
            devices: args.devices,
            duration: args.duration,
        };
        return super::bench_detect::run(config, options).await;
    }
    if args.what == What::Bridge {
        if config.bus.kind != sentio_config::BusKind::Kafka {
            bail!(
                "`sentio bench bridge` measures the bridge into Kafka: set bus.kind = \"kafka\" \
                 (and bus.kafka.brokers) in the --config file or SENTIO__BUS__KIND=kafka"
            );
        }
        let options = super::bench_bridge::Options {
            messages: args.mqtt_messages,
            rounds: args.rounds.unwrap_or(3),
        };
        return super::bench_bridge::run(config, options).await;
    }
    if args.what == What::Http {
        if config.bus.kind != sentio_config::BusKind::Kafka {
            bail!(
                "`sentio bench http` measures the endpoint into Kafka: set bus.kind = \"kafka\" \
                 (and bus.kafka.brokers) in the --config file or SENTIO__BUS__KIND=kafka"
            );
        }
        let options = super::bench_http::Options {
            readings: args.readings,
            rounds: args.rounds.unwrap_or(3),
        };
        return super::bench_http::run(config, options).await;
    }
    if args.real {
        let options = super::bench_real::Options {
            readings: args.readings,
            kafka_messages: args.kafka_messages,
            keep: args.keep,
            python: args.python.unwrap_or_else(|| "python3".into()),
        };
        return super::bench_real::run(config, options).await;
    }
    let dir = tempfile::Builder::new()
        .prefix("sentio-bench-")
        .tempdir()
        .context("creating a temporary directory")?;
    config.store.sqlite.path = dir.path().join("bench.db");
    config.objects.local.root = dir.path().join("objects");
    let per_tick = u64::from(config.simulator.devices) * 4;
    let ticks = args.readings.div_ceil(per_tick);
    let readings = ticks * per_tick;
    let cadence_ns = i64::try_from(config.simulator.cadence.as_nanos())?;
    let to = 1_764_000_000 * NANOS_PER_SEC;
    let from = to - i64::try_from(ticks)? * cadence_ns;
    say!(
        "sentio bench: {readings} readings ({} devices x 4 sensors x {ticks} ticks), batch {}, {} cores",
        config.simulator.devices,
        config.ingest.batch_size,
        std::thread::available_parallelism().map_or(1, usize::from)
    );

    // 1. The pipeline, end to end: from the first simulated reading to the last row committed.
    let store = wiring::open_store(&config).await?;
    let bus = wiring::open_bus(&config, Some(store.as_ref())).await?;
    let started = Instant::now();
    let etl = wiring::etl(&config, &bus, &store)?;
    let etl_stats = etl.stats();
    let etl_stop = CancellationToken::new();
    let etl_task = tokio::spawn(etl.run(etl_stop.clone()));
    let output = Output::Bus { bus, topic: config.topics.readings.clone() };
    let mut sim = Simulator::new(&config.simulator, output, wiring::archiver(&config).await?)?;
    sim.backfill(from, to, &CancellationToken::new(), |_| {}).await?;
    sim.finish().await?;
    etl_stop.cancel();
    etl_task.await.context("ingest task")??;
    let pipeline = started.elapsed();
    let stored = etl_stats.snapshot().rows_stored;
    if stored != readings {
        bail!("the pipeline stored {stored} of {readings} readings");
    }

    // The same readings, generated up front for the parts measured alone.
    let devices = device_ids(&config.simulator)?;
    let mut models: Vec<DeviceModel> = devices
        .into_iter()
        .zip(0u32..)
        .map(|(d, i)| DeviceModel::new(d, i, &config.simulator))
        .collect();
    let mut all = Vec::with_capacity(usize::try_from(readings)?);
    let started = Instant::now();
    for k in 0..i64::try_from(ticks)? {
        for m in &mut models {
            all.extend(m.sample(from + k * cadence_ns));
        }
    }
    let signals = started.elapsed();

    // The raw archive alone: buffer every reading, write every slice as a pickle.
    let started = Instant::now();
    let mut archiver = Archiver::new(
        sentio_objects::local(&dir.path().join("archive-only"))?,
        config.archive.slice,
    );
    for r in &all {
        archiver.push(r);
    }
    archiver.flush_all().await?;
    let archive = started.elapsed();

    // 2. The store's bulk insert alone (a fresh file), in the ETL's batch size.
    config.store.sqlite.path = dir.path().join("bulk.db");
    let bulk_store = wiring::open_store(&config).await?;
    let started = Instant::now();
    for chunk in all.chunks(config.ingest.batch_size) {
        bulk_store.insert_readings(chunk).await?;
    }
    let bulk = started.elapsed();

    // 3. The message codec alone: encode and strictly decode every reading.
    let started = Instant::now();
    let limits = DecodeLimits { max_future_ns: i64::MAX / 4, ..DecodeLimits::default() };
    let mut checksum = 0.0;
    for r in &all {
        checksum += decode_reading(&encode_reading(r), &limits, to)?.value;
    }
    let codec = started.elapsed();
    std::hint::black_box(checksum);

    let rate = |d: Duration| readings as f64 / d.as_secs_f64();
    say!();
    say!("| stage | time | readings/s | pipeline / stage |");
    say!("| --- | ---: | ---: | ---: |");
    for (name, d) in [
        ("embedded pipeline (simulate → memory bus → ETL → SQLite + .pickle archive)", pipeline),
        ("simulator signal model alone (`DeviceModel::sample`)", signals),
        ("message v1 encode + strict decode alone", codec),
        ("SQLite bulk insert alone (`insert_readings`)", bulk),
        (".pickle archive alone (`Archiver`, local files)", archive),
    ] {
        say!(
            "| {name} | {:.2} s | {:.0} | {:.2} |",
            d.as_secs_f64(),
            rate(d),
            rate(pipeline) / rate(d)
        );
    }
    let on_disk = std::fs::metadata(dir.path().join("bench.db")).map(|m| m.len()).unwrap_or(0);
    say!(
        "\nstore file: {:.1} MiB ({:.0} bytes/reading)",
        on_disk as f64 / 1048576.0,
        on_disk as f64 / readings as f64
    );
    if args.keep {
        let kept = dir.keep();
        say!("kept {}", kept.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use clap::Parser as _;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn bench_detect_arguments_parse() {
        let cli = Cli::try_parse_from(["bench", "detect"]).unwrap();
        let a = cli.args;
        assert_eq!(a.what, What::Detect);
        assert_eq!((a.rate, a.devices, a.duration), (20_000, 500, Duration::from_secs(30)));
        assert_eq!((a.steps, a.rounds, a.threads), (None, None, vec![1, 2]));

        let cli = Cli::try_parse_from([
            "bench",
            "detect",
            "--rate",
            "8000",
            "--devices",
            "200",
            "--duration",
            "1m",
            "--threads",
            "2",
            "--rounds",
            "3",
            "--steps",
            "5",
            "--python",
            "/usr/bin/python3",
        ])
        .unwrap();
        let a = cli.args;
        assert_eq!((a.rate, a.devices, a.duration), (8_000, 200, Duration::from_secs(60)));
        assert_eq!((a.steps, a.rounds, a.threads), (Some(5), Some(3), vec![2]));
        assert!(Cli::try_parse_from(["bench", "detect", "--duration", "soon"]).is_err());
    }
}
