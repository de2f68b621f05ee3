//! `sentio bench --real`: the real stack (Kafka and PostgreSQL) next to bare peers that skip
//! Sentio's code, measured in one run on the same machine so the ratios mean something.
//!
//! Everything happens on a fresh database and fresh topics with unique names, dropped at the end
//! (unless `--keep`), so the benchmark never touches real data. The raw archive is turned off: it
//! is not part of either path measured here (`sentio bench` measures it).
//!
//! The peers are deliberately independent of Sentio's crates: the raw `COPY` talks to PostgreSQL
//! with `tokio-postgres` directly, the bare producer is an rdkafka `FutureProducer` given the same
//! properties as `KafkaBus`, and the Python producer is confluent-kafka (`scripts/kafka_produce.py`).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use sentio_bus::Bus;
use sentio_bus::memory::MemoryBus;
use sentio_config::{BusKind, Config, KafkaConfig, PostgresConfig, StoreKind};
use sentio_core::time::{NANOS_PER_SEC, now_ns};
use sentio_core::{AnomalyKind, DecodeLimits, Reading, decode_reading, encode_reading};
use sentio_services::simulator::model::DeviceModel;
use sentio_services::simulator::{Output, Simulator, device_ids};
use sentio_store::ReadingStore;
use sentio_store::postgres::COPY_READINGS;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::{Client, NoTls};
use tokio_util::sync::CancellationToken;

use sentio_app::wiring;

/// The independent producer, compiled in so the binary runs from any directory.
const PYTHON_PRODUCER: &str = include_str!("../../../scripts/kafka_produce.py");

/// How long an ETL may go without storing a row before the benchmark gives up on it.
const STALL_LIMIT: Duration = Duration::from_secs(60);
/// Messages the simulator's chunks and the memory bus pre-fill hand over per call.
const PREFILL_CHUNK: usize = 4096;

/// What `sentio bench --real` was asked for.
pub struct Options {
    pub readings: u64,
    pub kafka_messages: u64,
    pub keep: bool,
    pub python: PathBuf,
}

/// One row of the report.
struct Row {
    name: String,
    count: u64,
    time: Option<Duration>,
    /// The row this one is compared with: its letter and its rate; `None` for a peer.
    versus: Option<(char, f64)>,
    note: String,
}

pub async fn run(mut config: Config, options: Options) -> anyhow::Result<()> {
    let needs_kafka = options.kafka_messages > 0;
    if (needs_kafka && config.bus.kind != BusKind::Kafka)
        || config.store.kind != StoreKind::Postgres
    {
        bail!(
            "`sentio bench --real` measures the real stack: it needs bus.kind = \"kafka\" and \
             store.kind = \"postgres\", but the configuration says bus.kind = \"{}\" and \
             store.kind = \"{}\" (set e.g. SENTIO__BUS__KIND=kafka SENTIO__STORE__KIND=postgres, \
             or run `sentio bench` without --real for the embedded pipeline; with \
             --kafka-messages 0 only the store has to be PostgreSQL)",
            format!("{:?}", config.bus.kind).to_lowercase(),
            format!("{:?}", config.store.kind).to_lowercase()
        );
    }
    config.archive.enabled = false;
    let run_id = format!(
        "{}_{}",
        std::process::id(),
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
    );
    config.store.postgres.dbname = format!("sentio_bench_{run_id}");
    let topic_prefix = format!("sentio-bench-{}", run_id.replace('_', "-"));

    let per_tick = u64::from(config.simulator.devices) * 4;
    if per_tick == 0 {
        bail!("simulator.devices is 0: there is nothing to measure");
    }
    let ticks_store = options.readings.div_ceil(per_tick);
    let ticks_kafka = options.kafka_messages.div_ceil(per_tick);
    let cadence_ns = i64::try_from(config.simulator.cadence.as_nanos())?;
    let to = 1_764_000_000 * NANOS_PER_SEC;
    let from = to - i64::try_from(ticks_store.max(ticks_kafka))? * cadence_ns;
    let plan = Plan {
        readings: ticks_store * per_tick,
        kafka_messages: ticks_kafka * per_tick,
        from,
        kafka_to: from + i64::try_from(ticks_kafka)? * cadence_ns,
        topic_prefix,
        keep: options.keep,
        python: options.python,
    };

    let pg = &config.store.postgres;
    let admin = connect_pg(pg, "postgres").await.with_context(|| {
        format!("connecting to PostgreSQL at {}:{} (store.postgres)", pg.host, pg.port)
    })?;
    let server = admin
        .query_one(
            "SELECT current_setting('server_version'), current_setting('synchronous_commit')",
            &[],
        )
        .await
        .context("reading the server's settings")?;
    let (version, sync_commit): (String, String) = (server.try_get(0)?, server.try_get(1)?);
    drop(admin);
    say!(
        "sentio bench --real: {} readings through the store path, {} messages through Kafka at {}; \
         {} devices x 4 sensors, batch {}, linger {:?}, {} cores",
        plan.readings,
        plan.kafka_messages,
        config.bus.kafka.brokers,
        config.simulator.devices,
        config.ingest.batch_size,
        config.bus.kafka.linger,
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    say!(
        "PostgreSQL {version} at {}:{} (synchronous_commit = {sync_commit}), scratch database {}, \
         topics {}.*; raw archive off",
        pg.host,
        pg.port,
        pg.dbname,
        plan.topic_prefix
    );

    let mut topics = Vec::new();
    let measured = measure(&config, &plan, &mut topics).await;

    // Clean up whether or not the measurement succeeded.
    if plan.keep {
        say!("kept database {} and topics {}", config.store.postgres.dbname, topics.join(", "));
    } else {
        if let Err(e) = drop_database(pg).await {
            eprintln!("warning: could not drop the scratch database {}: {e:#}", pg.dbname);
        }
        if let Err(e) = delete_topics(&config.bus.kafka, &topics).await {
            eprintln!("warning: could not delete the scratch topics {}: {e:#}", topics.join(", "));
        }
    }
    let rows = measured?;

    say!();
    say!("| stage | messages | time | per second | ratio |");
    say!("| --- | ---: | ---: | ---: | ---: |");
    for row in &rows {
        let Some(time) = row.time else {
            say!("| {} | {} | — | not measured | — |", row.name, thousands(row.count as f64));
            continue;
        };
        let rate = row.count as f64 / time.as_secs_f64();
        let ratio = match row.versus {
            None => "peer".to_owned(),
            Some((letter, peer_rate)) => format!("{:.2} × ({letter})", rate / peer_rate),
        };
        say!(
            "| {} | {} | {:.2} s | {} | {ratio} |",
            row.name,
            thousands(row.count as f64),
            time.as_secs_f64(),
            thousands(rate)
        );
    }
    for row in rows.iter().filter(|r| !r.note.is_empty()) {
        say!("\n{}: {}", row.name.split(' ').next().unwrap_or_default(), row.note);
    }
    Ok(())
}

/// The sizes, time range and names of one run.
struct Plan {
    readings: u64,
    kafka_messages: u64,
    from: i64,
    kafka_to: i64,
    topic_prefix: String,
    keep: bool,
    python: PathBuf,
}

/// Runs every measurement, recording each Kafka topic it creates in `topics`.
async fn measure(
    config: &Config,
    plan: &Plan,
    topics: &mut Vec<String>,
) -> anyhow::Result<Vec<Row>> {
    let readings = generate(config, plan)?;
    let store_rows = &readings[..usize::try_from(plan.readings)?];
    let kafka_rows = &readings[..usize::try_from(plan.kafka_messages)?];
    let messages: Vec<(Bytes, Bytes)> = readings
        .iter()
        .map(|r| {
            (Bytes::copy_from_slice(r.device.as_str().as_bytes()), Bytes::from(encode_reading(r)))
        })
        .collect();
    let store_messages = &messages[..store_rows.len()];
    let kafka_messages = &messages[..kafka_rows.len()];

    // A fresh, migrated database, opened as every role opens it.
    let store = wiring::open_store(config).await?;
    let db = connect_pg(&config.store.postgres, &config.store.postgres.dbname)
        .await
        .context("connecting to the scratch database")?;
    let mut rows = Vec::new();

    // (a) The peer: raw binary COPY of exactly these rows, one COPY per ETL batch.
    let bar = progress("(a) raw COPY", plan.readings);
    let started = Instant::now();
    raw_copy(&db, store_rows, config.ingest.batch_size, &bar).await?;
    let raw = started.elapsed();
    let raw_rate = plan.readings as f64 / raw.as_secs_f64();
    bar.finish();
    expect_rows(&db, plan.readings).await?;
    rows.push(Row {
        name: format!(
            "(a) raw binary COPY into PostgreSQL (tokio-postgres, {} rows per COPY)",
            thousands(config.ingest.batch_size as f64)
        ),
        count: plan.readings,
        time: Some(raw),
        versus: None,
        note: String::new(),
    });
    reset(&db).await?;

    // (b) The ETL from the embedded bus, pre-filled before the clock starts.
    let etl_config = stage_config(config, plan, "memory");
    // Every record fits: no backpressure, and no trimming before the group joins.
    let memory = MemoryBus::new(usize::try_from(plan.readings)?.max(1));
    let partitions = config.bus.memory.partitions;
    memory.create_topic(&etl_config.topics.readings, partitions).await?;
    memory.create_topic(&etl_config.topics.dead_letters, partitions).await?;
    for chunk in store_messages.chunks(PREFILL_CHUNK) {
        memory.publish_batch(&etl_config.topics.readings, chunk.to_vec()).await?;
    }
    let bus: Arc<dyn Bus> = Arc::new(memory);
    let bar = progress("(b) ETL memory → PG", plan.readings);
    let timing = etl_until(&etl_config, &bus, &store, plan.readings, &bar).await?;
    bar.finish();
    drop(bus);
    expect_rows(&db, plan.readings).await?;
    rows.push(Row {
        name: format!(
            "(b) Sentio ETL: memory bus → PostgreSQL (decode, batches of {}, rows + offsets in one transaction)",
            thousands(config.ingest.batch_size as f64)
        ),
        count: plan.readings,
        time: Some(timing.last),
        versus: Some(('a', raw_rate)),
        note: {
            let decode = decode_alone(config, store_messages)?;
            format!(
                "decoding the same messages alone (strict `decode_reading`, one core) takes \
                 {:.2} s; (a) + that = {:.2} s, against (b)'s {:.2} s",
                decode.as_secs_f64(),
                (raw + decode).as_secs_f64(),
                timing.last.as_secs_f64()
            )
        },
    });
    reset(&db).await?;
    if plan.kafka_messages == 0 {
        return Ok(rows);
    }

    // Every producer first sends one message to this topic and waits for it, so that connecting,
    // getting a producer id and learning the leaders happen before its clock starts.
    let k = &config.bus.kafka;
    let kafka =
        sentio_bus::kafka::KafkaBus::connect(k).context("connecting to Kafka (bus.kafka)")?;
    let warmup = format!("{}.warmup", plan.topic_prefix);
    let bare_topic = format!("{}.bare", plan.topic_prefix);
    let python_topic = format!("{}.python", plan.topic_prefix);
    for topic in [&warmup, &bare_topic, &python_topic] {
        topics.push(topic.clone());
        kafka
            .create_topic(topic, k.partitions)
            .await
            .with_context(|| format!("creating topic {topic:?} on {} (bus.kafka)", k.brokers))?;
    }
    let (warmup_key, warmup_payload) = kafka_messages.first().cloned().unwrap_or_default();

    // (e) The producer peer: a bare FutureProducer, every message in flight at once.
    let bar = progress("(e) bare rdkafka", plan.kafka_messages);
    let bare = bare_produce(k, &warmup, &bare_topic, kafka_messages, &bar).await?;
    let bare_rate = plan.kafka_messages as f64 / bare.as_secs_f64();
    bar.finish();

    // (d) Sentio's producer path: the simulator backfilling through KafkaBus.
    let sim_config = stage_config(config, plan, "sim");
    let (kafka_bus, mut sim) =
        kafka_simulator(&sim_config, topics, &warmup, &warmup_key, warmup_payload.clone()).await?;
    let sim_stats = sim.stats();
    let per_tick = u64::from(config.simulator.devices) * 4;
    let bar = progress("(d) simulator → Kafka", plan.kafka_messages);
    let started = Instant::now();
    sim.backfill(plan.from, plan.kafka_to, &CancellationToken::new(), |ticks| {
        bar.set_position(ticks * per_tick)
    })
    .await?;
    sim.finish().await?;
    let simulated = started.elapsed();
    bar.finish();
    let published = sim_stats.published.load(std::sync::atomic::Ordering::Relaxed);
    if published != plan.kafka_messages {
        bail!("the simulator published {published} of {} readings", plan.kafka_messages);
    }

    // (f) Python confluent-kafka, the same payloads and keys.
    let bar = ProgressBar::new_spinner().with_message("(f) Python confluent-kafka");
    bar.enable_steady_tick(Duration::from_millis(200));
    let python = python_produce(k, &plan.python, &warmup, &python_topic, kafka_messages).await;
    bar.finish_and_clear();
    let (python_time, python_note) = match python {
        Ok(time) => (Some(time), String::new()),
        Err(e) => {
            eprintln!("warning: the Python producer was not measured: {e:#}");
            (None, format!("not measured: {e:#}"))
        }
    };

    // (c) The ETL consuming the topic the simulator filled (nobody has read it yet).
    let bar = progress("(c) ETL Kafka → PG", plan.kafka_messages);
    let timing = etl_until(&sim_config, &kafka_bus, &store, plan.kafka_messages, &bar).await?;
    bar.finish();
    expect_rows(&db, plan.kafka_messages).await?;
    let after_first = timing.last.saturating_sub(timing.first);
    let first_batch = timing.first_batch;
    rows.push(Row {
        name:
            "(c) Sentio ETL: Kafka → PostgreSQL (the topic (d) filled, consumer group from scratch)"
                .to_owned(),
        count: plan.kafka_messages,
        time: Some(timing.last),
        versus: Some(('a', raw_rate)),
        note: if first_batch < plan.kafka_messages {
            format!(
                "the first batch ({} rows) was committed {:.2} s after the ETL started (joining \
                 the group, first fetch); the rest went at {} rows/s",
                thousands(first_batch as f64),
                timing.first.as_secs_f64(),
                thousands(
                    (plan.kafka_messages - first_batch) as f64
                        / after_first.as_secs_f64().max(1e-9)
                )
            )
        } else {
            String::new()
        },
    });
    reset(&db).await?;

    // (g) The whole path at once: the simulator backfilling a fresh topic while the ETL (in a
    // consumer group of its own) stores what arrives, from the first reading sampled to the last
    // row committed.
    let e2e_config = stage_config(config, plan, "e2e");
    let (e2e_bus, mut sim) =
        kafka_simulator(&e2e_config, topics, &warmup, &warmup_key, warmup_payload).await?;
    let bar = progress("(g) simulator → Kafka → PG", plan.kafka_messages);
    let started = Instant::now();
    let produce = async {
        sim.backfill(plan.from, plan.kafka_to, &CancellationToken::new(), |_| {}).await?;
        sim.finish().await?;
        anyhow::Ok(started.elapsed())
    };
    let consume = etl_until(&e2e_config, &e2e_bus, &store, plan.kafka_messages, &bar);
    let (produced_in, _) = tokio::try_join!(produce, consume)?;
    let end_to_end = started.elapsed();
    bar.finish();
    expect_rows(&db, plan.kafka_messages).await?;
    let e2e_row = Row {
        name: "(g) simulator → Kafka → ETL → PostgreSQL, at once (end to end)".to_owned(),
        count: plan.kafka_messages,
        time: Some(end_to_end),
        versus: Some(('e', bare_rate)),
        note: format!(
            "the simulator had published everything {:.2} s after the start; the last row was \
             committed {:.2} s after it",
            produced_in.as_secs_f64(),
            end_to_end.saturating_sub(produced_in).as_secs_f64()
        ),
    };
    rows.push(Row {
        name: "(d) Sentio simulator → `KafkaBus` → Kafka (backfill, end to end)".to_owned(),
        count: plan.kafka_messages,
        time: Some(simulated),
        versus: Some(('e', bare_rate)),
        note: String::new(),
    });
    rows.push(Row {
        name: "(e) bare rdkafka `FutureProducer` → Kafka (same payloads, keys and settings)"
            .to_owned(),
        count: plan.kafka_messages,
        time: Some(bare),
        versus: None,
        note: String::new(),
    });
    rows.push(Row {
        name: "(f) Python confluent-kafka → Kafka (same payloads, keys and settings)".to_owned(),
        count: plan.kafka_messages,
        time: python_time,
        versus: Some(('e', bare_rate)),
        note: python_note,
    });
    rows.push(e2e_row);
    Ok(rows)
}

/// `config` with a readings topic, dead-letter topic and ingest group of the stage's own
/// (`<prefix>.<stage>`).
fn stage_config(config: &Config, plan: &Plan, stage: &str) -> Config {
    let mut c = config.clone();
    c.topics.readings = format!("{}.{stage}", plan.topic_prefix);
    c.topics.dead_letters = format!("{}.{stage}.dlq", plan.topic_prefix);
    c.ingest.group = format!("{}.{stage}.ingest", plan.topic_prefix);
    c
}

/// A simulator publishing to `config`'s readings topic (created, and recorded in `topics` with its
/// dead-letter topic), through a `KafkaBus` that has delivered one message to `warmup`.
async fn kafka_simulator(
    config: &Config,
    topics: &mut Vec<String>,
    warmup: &str,
    key: &[u8],
    payload: Bytes,
) -> anyhow::Result<(Arc<dyn Bus>, Simulator)> {
    topics.push(config.topics.readings.clone());
    topics.push(config.topics.dead_letters.clone());
    let bus = wiring::open_bus(config, None).await?;
    let output = Output::Bus { bus: bus.clone(), topic: config.topics.readings.clone() };
    let sim = Simulator::new(&config.simulator, output, None)?;
    bus.publish(warmup, key, payload).await.context("warming up")?;
    Ok((bus, sim))
}

/// How long the ETL's decoding of `messages` takes alone, with the ETL's limits.
fn decode_alone(config: &Config, messages: &[(Bytes, Bytes)]) -> anyhow::Result<Duration> {
    let limits = DecodeLimits {
        max_bytes: config.ingest.max_message_bytes,
        max_future_ns: i64::try_from(config.ingest.max_future.as_nanos()).unwrap_or(i64::MAX),
        ..DecodeLimits::default()
    };
    let now = now_ns();
    let started = Instant::now();
    let mut checksum = 0.0;
    for (_, payload) in messages {
        checksum += decode_reading(payload, &limits, now)?.value;
    }
    let elapsed = started.elapsed();
    std::hint::black_box(checksum);
    Ok(elapsed)
}

/// The readings of both paths, as the simulator makes them (the Kafka path takes the first ones).
fn generate(config: &Config, plan: &Plan) -> anyhow::Result<Vec<Reading>> {
    let mut models: Vec<DeviceModel> = device_ids(&config.simulator)?
        .into_iter()
        .zip(0u32..)
        .map(|(d, i)| DeviceModel::new(d, i, &config.simulator))
        .collect();
    let cadence_ns = i64::try_from(config.simulator.cadence.as_nanos())?;
    let total = plan.readings.max(plan.kafka_messages);
    let mut all = Vec::with_capacity(usize::try_from(total)?);
    let mut ts = plan.from;
    while (all.len() as u64) < total {
        for m in &mut models {
            all.extend(m.sample(ts));
        }
        ts += cadence_ns;
    }
    Ok(all)
}

fn progress(label: &str, total: u64) -> ProgressBar {
    ProgressBar::new(total).with_prefix(label.to_owned()).with_style(
        ProgressStyle::with_template(
            "{prefix:<28} {bar:30.cyan/blue} {pos:>9}/{len:9} {per_sec:>14}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    )
}

/// A plain connection to database `dbname` of the configured server.
async fn connect_pg(config: &PostgresConfig, dbname: &str) -> anyhow::Result<Client> {
    let mut pg = tokio_postgres::Config::new();
    pg.host(&config.host)
        .port(config.port)
        .user(&config.user)
        .dbname(dbname)
        .application_name("sentio-bench")
        .connect_timeout(config.connect_timeout);
    if !config.password.expose().is_empty() {
        pg.password(config.password.expose());
    }
    let (client, connection) = pg.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "benchmark connection ended");
        }
    });
    Ok(client)
}

/// Binary `COPY` of `rows` in chunks of `chunk`, each its own transaction, as the ETL commits.
async fn raw_copy(
    client: &Client,
    rows: &[Reading],
    chunk: usize,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let copy = client.prepare(COPY_READINGS).await.context("preparing the COPY")?;
    for part in rows.chunks(chunk.max(1)) {
        let sink = client.copy_in(&copy).await.context("starting a COPY")?;
        let mut writer = pin!(BinaryCopyInWriter::new(sink, &sentio_store::postgres::COPY_TYPES));
        for r in part {
            let seq = i64::try_from(r.seq)?;
            let injected = r.injected.map(AnomalyKind::as_str);
            let ts_source = r.ts_source.written();
            writer
                .as_mut()
                .write(&[
                    &r.device.as_str(),
                    &r.sensor.as_str(),
                    &r.ts_ns,
                    &r.value,
                    &seq,
                    &injected,
                    &r.unit.as_str(),
                    &ts_source,
                ])
                .await
                .context("writing COPY rows")?;
        }
        writer.finish().await.context("finishing a COPY")?;
        bar.inc(part.len() as u64);
    }
    Ok(())
}

async fn expect_rows(db: &Client, expected: u64) -> anyhow::Result<()> {
    let count: i64 = db
        .query_one("SELECT count(*) FROM sensor_readings", &[])
        .await
        .context("counting the stored rows")?
        .try_get(0)?;
    if u64::try_from(count).ok() != Some(expected) {
        bail!("sensor_readings holds {count} rows, {expected} expected");
    }
    Ok(())
}

/// Empties the table and writes its pages out, so the next stage starts as the previous did.
async fn reset(db: &Client) -> anyhow::Result<()> {
    db.batch_execute("TRUNCATE sensor_readings").await.context("emptying sensor_readings")?;
    // Needs superuser or pg_checkpoint; without it the next stage may pay for this one's pages.
    if let Err(e) = db.batch_execute("CHECKPOINT").await {
        tracing::warn!(error = %e, "CHECKPOINT between stages failed");
    }
    Ok(())
}

struct EtlTiming {
    /// From the start to the first committed batch.
    first: Duration,
    /// Rows that first batch held.
    first_batch: u64,
    /// From the start to the last committed row.
    last: Duration,
}

/// Runs the ETL of `config` until it has stored `expected` rows.
async fn etl_until(
    config: &Config,
    bus: &Arc<dyn Bus>,
    store: &Arc<dyn ReadingStore>,
    expected: u64,
    bar: &ProgressBar,
) -> anyhow::Result<EtlTiming> {
    let etl = wiring::etl(config, bus, store)?;
    let stats = etl.stats();
    let stop = CancellationToken::new();
    let started = Instant::now();
    let mut task = tokio::spawn(etl.run(stop.clone()));
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    let mut first = None;
    let mut last_progress = (0, Instant::now());
    let last = loop {
        tokio::select! {
            ended = &mut task => {
                ended.context("ingest task")??;
                bail!("the ETL stopped after storing {} of {expected} rows", stats.snapshot().rows_stored);
            }
            _ = tick.tick() => {}
        }
        let stored = stats.snapshot().rows_stored;
        if stored > 0 && first.is_none() {
            first = Some((started.elapsed(), stored));
        }
        if stored >= expected {
            break started.elapsed();
        }
        if stored != last_progress.0 {
            bar.set_position(stored);
            last_progress = (stored, Instant::now());
        } else if last_progress.1.elapsed() > STALL_LIMIT {
            stop.cancel();
            bail!("the ETL stored nothing for {STALL_LIMIT:?} ({stored} of {expected} rows)");
        }
    };
    bar.set_position(expected);
    stop.cancel();
    task.await.context("ingest task")??;
    let snapshot = stats.snapshot();
    if snapshot.rows_stored != expected || snapshot.dead_letters != 0 {
        bail!(
            "the ETL stored {} rows and {} dead letters; {expected} rows expected",
            snapshot.rows_stored,
            snapshot.dead_letters
        );
    }
    let (first, first_batch) = first.unwrap_or((last, expected));
    Ok(EtlTiming { first, first_batch, last })
}

/// The properties `KafkaBus` gives its clients (`sentio_bus::kafka::base_config`, the one set in
/// the codebase), under a client id of the benchmark's own.
fn client_properties(k: &KafkaConfig, client_id: &str) -> ClientConfig {
    let mut c = sentio_bus::kafka::base_config(k);
    c.set("client.id", client_id);
    c
}

/// The producer properties of `KafkaBus` (`sentio_bus::kafka::producer_config`): idempotent,
/// acks=all, murmur2, lz4, linger. The peer differs from the bus in its code, not its settings.
fn producer_properties(k: &KafkaConfig) -> ClientConfig {
    let mut c = sentio_bus::kafka::producer_config(k);
    c.set("client.id", format!("{}-bench-peer", k.client_id));
    c
}

/// Sends every message with a bare `FutureProducer` and waits for every acknowledgement; the
/// clock starts once the producer has delivered one message to `warmup` and has the metadata of
/// `topic`.
async fn bare_produce(
    k: &KafkaConfig,
    warmup: &str,
    topic: &str,
    messages: &[(Bytes, Bytes)],
    bar: &ProgressBar,
) -> anyhow::Result<Duration> {
    let producer: FutureProducer =
        producer_properties(k).create().context("creating the bare producer")?;
    let metadata_producer = producer.clone();
    let name = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        metadata_producer.client().fetch_metadata(Some(&name), Duration::from_secs(30))
    })
    .await?
    .context("fetching the topic's metadata")?;
    if let Some((key, payload)) = messages.first() {
        let record = FutureRecord::to(warmup).key(&key[..]).payload(&payload[..]);
        let delivery = producer.send_result(record).map_err(|(e, _)| e).context("warming up")?;
        delivered(delivery.await)?;
    }

    let started = Instant::now();
    let mut pending = VecDeque::with_capacity(messages.len());
    let mut acknowledged = 0u64;
    for (key, payload) in messages {
        loop {
            let record = FutureRecord::to(topic).key(&key[..]).payload(&payload[..]);
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push_back(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    // The local queue is full: wait for the oldest message in flight.
                    match pending.pop_front() {
                        Some(oldest) => {
                            delivered(oldest.await)?;
                            acknowledged += 1;
                        }
                        None => tokio::time::sleep(Duration::from_millis(1)).await,
                    }
                }
                Err((e, _)) => return Err(e).context("queueing a message"),
            }
        }
    }
    for delivery in pending {
        delivered(delivery.await)?;
        acknowledged += 1;
        if acknowledged.is_multiple_of(1024) {
            bar.set_position(acknowledged);
        }
    }
    let elapsed = started.elapsed();
    bar.set_position(acknowledged);
    Ok(elapsed)
}

fn delivered(
    result: Result<
        rdkafka::producer::future_producer::OwnedDeliveryResult,
        futures::channel::oneshot::Canceled,
    >,
) -> anyhow::Result<()> {
    match result {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(e).context("delivering a message"),
        Err(_) => bail!("the producer dropped a message"),
    }
}

/// Runs `scripts/kafka_produce.py` on the same keys and payloads; returns the time it measured.
async fn python_produce(
    k: &KafkaConfig,
    python: &PathBuf,
    warmup: &str,
    topic: &str,
    messages: &[(Bytes, Bytes)],
) -> anyhow::Result<Duration> {
    let dir = tempfile::Builder::new().prefix("sentio-bench-").tempdir()?;
    let script = dir.path().join("kafka_produce.py");
    std::fs::write(&script, PYTHON_PRODUCER)?;
    let mut lines = Vec::with_capacity(messages.iter().map(|(k, p)| k.len() + p.len() + 2).sum());
    for (key, payload) in messages {
        if key.iter().chain(payload.iter()).any(|b| matches!(b, b'\t' | b'\n')) {
            bail!("a key or payload holds a tab or newline; they cannot go on one line");
        }
        lines.extend_from_slice(key);
        lines.push(b'\t');
        lines.extend_from_slice(payload);
        lines.push(b'\n');
    }
    let data = dir.path().join("messages.tsv");
    std::fs::write(&data, lines)?;
    let output = tokio::process::Command::new(python)
        .arg(&script)
        .arg(&k.brokers)
        .arg(warmup)
        .arg(topic)
        .arg(&data)
        .arg(k.linger.as_millis().to_string())
        .arg(k.delivery_timeout.as_millis().to_string())
        .output()
        .await
        .with_context(|| format!("running {} (set --python or SENTIO_PYTHON)", python.display()))?;
    if !output.status.success() {
        bail!(
            "{} kafka_produce.py failed ({}): {} (it needs confluent-kafka: scripts/python-env.sh \
             installs it, then pass --python or SENTIO_PYTHON)",
            python.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("reading {:?}", String::from_utf8_lossy(&output.stdout)))?;
    let sent = report["messages"].as_u64();
    if sent != Some(messages.len() as u64) {
        bail!("the Python producer sent {sent:?} of {} messages", messages.len());
    }
    let seconds = report["seconds"].as_f64().context("the Python report has no seconds")?;
    Ok(Duration::try_from_secs_f64(seconds)?)
}

/// Deletes the scratch topics.
async fn delete_topics(k: &KafkaConfig, topics: &[String]) -> anyhow::Result<()> {
    if topics.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> =
        client_properties(k, &format!("{}-bench-admin", k.client_id)).create()?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.delete_topics(&names, &options).await? {
        if let Err((name, code)) = result
            && code != RDKafkaErrorCode::UnknownTopicOrPartition
        {
            bail!("deleting topic {name:?}: {code}");
        }
    }
    Ok(())
}

/// Drops the scratch database on a fresh connection (the first one may be long gone after a run
/// this long), closing whatever connections to it are left.
async fn drop_database(pg: &PostgresConfig) -> anyhow::Result<()> {
    let admin = connect_pg(pg, "postgres").await?;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote(&pg.dbname)))
        .await?;
    Ok(())
}

/// A double-quoted SQL identifier (identifiers cannot be bound as parameters).
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `1234567.8` as `1,234,568`.
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1_234_567.8), "1,234,568");
    }

    #[test]
    fn quote_doubles_embedded_quotes() {
        assert_eq!(quote("sentio_bench_1_2"), "\"sentio_bench_1_2\"");
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
    }
}
