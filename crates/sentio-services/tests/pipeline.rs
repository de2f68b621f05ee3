#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The embedded pipeline end to end: simulator → memory bus → ETL → SQLite, plus the .pickle
//! archive, with malformed messages mixed into the stream and an ETL crash in the middle.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{START, simulate_until};
use futures::TryStreamExt;
use object_store::ObjectStore;
use sentio_bus::Bus;
use sentio_bus::contract::poll_n;
use sentio_bus::memory::MemoryBus;
use sentio_config::{Config, IngestConfig};
use sentio_core::Reading;
use sentio_core::time::NANOS_PER_SEC;
use sentio_objects::{Archiver, RawBatch};
use sentio_services::etl::Etl;
use sentio_services::etl::dead_letter::DeadLetterV1;
use sentio_services::simulator::{Output, Simulator};
use sentio_store::sqlite::SqliteStore;
use sentio_store::{RangeQuery, ReadingStore};
use tokio_util::sync::CancellationToken;

const READINGS: &str = "sensor-data";
const DLQ: &str = "sensor-data.dlq";

fn config() -> Config {
    let mut c = Config::load(None).unwrap();
    c.simulator.seed = 7;
    c.simulator.anomalies.rate_per_hour = 6.0;
    c.ingest.batch_size = 2000;
    c.ingest.batch_linger = Duration::from_millis(20);
    c
}

/// Order-independent fingerprint of a multiset of readings: (count, wrapping sum of row hashes).
fn checksum<'a>(readings: impl IntoIterator<Item = &'a Reading>) -> (u64, u64) {
    let mut count = 0u64;
    let mut sum = 0u64;
    for r in readings {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for b in bytes {
                h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
            }
        };
        eat(r.device.as_str().as_bytes());
        eat(r.sensor.as_str().as_bytes());
        eat(&r.ts_ns.to_le_bytes());
        eat(&r.value.to_bits().to_le_bytes());
        eat(&r.seq.to_le_bytes());
        eat(r.injected.map_or("-", |k| k.as_str()).as_bytes());
        count += 1;
        sum = sum.wrapping_add(h);
    }
    (count, sum)
}

/// One malformed message per rejection class, made distinct by `i`, with the code it must get.
fn malformed(i: usize) -> (Bytes, &'static str) {
    let ts = "2026-11-24T00:00:00Z";
    let (text, code): (Vec<u8>, &str) = match i % 12 {
        0 => (format!("{{\"v\":1,\"device\":\"bad-{i}\"").into_bytes(), "malformed_json"),
        1 => (format!("{{\"v\":1,\"device\":\"bad-{i}\",\"sensor\":\"pressure\",\"ts\":\"{ts}\",\"value\":NaN,\"unit\":\"bar\",\"seq\":{i}}}").into_bytes(), "non_finite"),
        2 => (format!("{{\"v\":1,\"sensor\":\"pressure\",\"ts\":\"{ts}\",\"value\":1.0,\"unit\":\"bar\",\"seq\":{i}}}").into_bytes(), "missing_field"),
        3 => (format!("{{\"v\":1,\"device\":\"bad-{i}\",\"sensor\":\"pressure\",\"ts\":\"{ts}\",\"value\":\"1.0\",\"unit\":\"bar\",\"seq\":{i}}}").into_bytes(), "wrong_type"),
        4 => (format!("{{\"v\":1,\"device\":\"bad-{i}\",\"sensor\":\"Voltage\",\"ts\":\"{ts}\",\"value\":1.0,\"unit\":\"V\",\"seq\":{i}}}").into_bytes(), "bad_sensor"),
        5 => (format!("{{\"v\":2,\"device\":\"bad-{i}\",\"sensor\":\"pressure\",\"ts\":\"{ts}\",\"value\":1.0,\"unit\":\"bar\",\"seq\":{i}}}").into_bytes(), "unknown_version"),
        6 => (format!("{{\"v\":1,\"device\":\"bad-{i}\",\"sensor\":\"pressure\",\"ts\":\"1970-01-01T00:00:00Z\",\"value\":1.0,\"unit\":\"bar\",\"seq\":{i}}}").into_bytes(), "timestamp_out_of_range"),
        7 => (format!("{{\"v\":1,\"device\":\"bad-{i}\",\"pad\":\"{}\"}}", "x".repeat(5000)).into_bytes(), "oversize"),
        8 => ([b"{\"v\":1,\"device\":\"".as_slice(), &[0xff, 0xfe], i.to_string().as_bytes()].concat(), "not_utf8"),
        9 => (format!("[{i}]").into_bytes(), "not_an_object"),
        // The built-in pump profile claims every device: its pressure is in bar.
        10 => (format!("{{\"v\":1,\"device\":\"bad-{i}\",\"sensor\":\"pressure\",\"ts\":\"{ts}\",\"value\":1.0,\"unit\":\"psi\",\"seq\":{i}}}").into_bytes(), "unit_mismatch"),
        _ => (format!("{{\"v\":1,\"device\":\"bad-{i}\",\"sensor\":\"pressure\",\"ts\":\"{ts}\",\"value\":1.0,\"unit\":\"{}\",\"seq\":{i}}}", "u".repeat(40)).into_bytes(), "bad_unit"),
    };
    (Bytes::from(text), code)
}

async fn list_pickles(objects: &Arc<dyn ObjectStore>) -> Vec<Reading> {
    let metas: Vec<_> = objects.list(Some(&"raw".into())).try_collect().await.unwrap();
    let mut out = Vec::new();
    for meta in metas {
        assert!(meta.location.as_ref().ends_with(".pickle"), "{}", meta.location);
        let bytes = objects.get(&meta.location).await.unwrap().bytes().await.unwrap();
        out.extend(RawBatch::from_pickle(&bytes).unwrap().readings().unwrap());
    }
    out
}

/// Waits (with a deadline) until `done` holds.
/// Every reading the store holds.
async fn stored(store: &dyn ReadingStore) -> Vec<Reading> {
    store
        .query_range(&RangeQuery { devices: vec![], sensors: vec![], from_ns: 0, to_ns: i64::MAX })
        .await
        .unwrap()
}

async fn wait_until(done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_run_stores_exactly_the_valid_readings_and_dead_letters_the_rest() {
    let config = config();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ReadingStore> =
        Arc::new(SqliteStore::open(&dir.path().join("sentio.db")).unwrap());
    store.migrate().await.unwrap();
    let memory = Arc::new(MemoryBus::new(4096));
    memory.create_topic(READINGS, 8).await.unwrap();
    memory.create_topic(DLQ, 8).await.unwrap();
    let bus: Arc<dyn Bus> = memory.clone();
    let objects = sentio_objects::local(&dir.path().join("objects")).unwrap();
    let mut dlq_audit = bus.subscribe(DLQ, "audit").await.unwrap();

    // 8 devices x 4 sensors x 3,200 ticks = 102,400 readings.
    let to = START + 3_200 * NANOS_PER_SEC;
    let etl = Etl::new(bus.clone(), store.clone(), READINGS, DLQ, &config.ingest);
    let stats = etl.stats();
    let stop = CancellationToken::new();
    let etl_task = tokio::spawn(etl.run(stop.clone()));

    // Malformed messages arrive while the simulator publishes.
    let bad: Vec<(Bytes, &str)> = (0..300).map(malformed).collect();
    let feeder = {
        let bus = bus.clone();
        let payloads: Vec<Bytes> = bad.iter().map(|(b, _)| b.clone()).collect();
        tokio::spawn(async move {
            for (i, chunk) in payloads.chunks(7).enumerate() {
                let records =
                    chunk.iter().map(|p| (Bytes::from(format!("bad-{i}")), p.clone())).collect();
                bus.publish_batch(READINGS, records).await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let archiver = Archiver::new(objects.clone(), config.archive.slice);
    let mut sim = Simulator::new(
        &config.simulator,
        Output::Bus { bus: bus.clone(), topic: READINGS.into() },
        Some(archiver),
    )
    .unwrap();
    sim.backfill(START, to, &CancellationToken::new(), |_| {}).await.unwrap();
    sim.finish().await.unwrap();
    feeder.await.unwrap();
    wait_until(|| stats.snapshot().consumed == 102_700).await;
    stop.cancel();
    etl_task.await.unwrap().unwrap();

    let expected = simulate_until(&config, to).await;
    assert_eq!(expected.len(), 102_400);
    assert!(expected.iter().any(|r| r.injected.is_some()), "the run injected no anomaly");

    // The store holds exactly the valid readings.
    let stored = stored(store.as_ref()).await;
    assert_eq!(checksum(&stored), checksum(&expected));
    let totals = store.stats().await.unwrap();
    assert_eq!(totals.readings, 102_400);
    assert_eq!(totals.dead_letters, 300);
    assert_eq!(totals.committed_offsets_total, 102_700, "offsets cover every message once");
    assert_eq!(stats.snapshot().rows_stored, 102_400);

    // Exactly the malformed messages are dead letters, each with its reason. A dead letter keeps
    // a payload whole, or the first ingest.max_message_bytes of a larger one.
    let max = config.ingest.max_message_bytes;
    let mut want: BTreeMap<Vec<u8>, &str> =
        bad.iter().map(|(b, c)| (b[..b.len().min(max)].to_vec(), *c)).collect();
    assert_eq!(want.len(), 300, "malformed payloads are distinct");
    let stored_dl = store.dead_letters(READINGS).await.unwrap();
    assert_eq!(stored_dl.len(), 300);
    for d in &stored_dl {
        assert_eq!(want.get(&d.payload).copied(), Some(d.code.as_str()), "{}", d.reason);
        assert!(!d.reason.is_empty());
    }
    let on_topic = poll_n(dlq_audit.as_mut(), 300).await;
    assert!(
        dlq_audit.poll(10, Duration::from_millis(200)).await.unwrap().is_empty(),
        "extra dead letters"
    );
    for record in on_topic {
        let letter: DeadLetterV1 = serde_json::from_slice(&record.payload).unwrap();
        let original = letter.payload().unwrap();
        let code =
            want.remove(&original).unwrap_or_else(|| panic!("unexpected dead letter {letter:?}"));
        assert_eq!(letter.code, code);
        assert_eq!(letter.topic, READINGS);
        assert!(stored_dl.iter().any(|d| d.source.partition == letter.partition
            && d.source.offset == letter.offset
            && d.reason == letter.reason));
    }
    assert!(want.is_empty());

    // The pickles hold the same readings.
    let archived = list_pickles(&objects).await;
    assert_eq!(checksum(&archived), checksum(&expected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etl_killed_mid_stream_resumes_without_loss_or_duplicates() {
    let config = config();
    let store: Arc<dyn ReadingStore> = Arc::new(SqliteStore::open_in_memory().unwrap());
    store.migrate().await.unwrap();
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new(1 << 20));
    bus.create_topic(READINGS, 4).await.unwrap();
    bus.create_topic(DLQ, 4).await.unwrap();
    let to = START + 1_000 * NANOS_PER_SEC;
    let mut sim = Simulator::new(
        &config.simulator,
        Output::Bus { bus: bus.clone(), topic: READINGS.into() },
        None,
    )
    .unwrap();
    sim.backfill(START, to, &CancellationToken::new(), |_| {}).await.unwrap();

    let ingest = IngestConfig { batch_size: 300, ..config.ingest.clone() };
    // Kill the ETL three times at arbitrary points (possibly mid-transaction), then let one finish.
    for _ in 0..3 {
        let etl = Etl::new(bus.clone(), store.clone(), READINGS, DLQ, &ingest);
        let stats = etl.stats();
        let task = tokio::spawn(etl.run(CancellationToken::new()));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while stats.snapshot().rows_stored < 3_000 {
            assert!(tokio::time::Instant::now() < deadline, "the ETL made no progress");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        task.abort();
        let _ = task.await;
    }
    let etl = Etl::new(bus.clone(), store.clone(), READINGS, DLQ, &ingest);
    let stop = CancellationToken::new();
    let task = tokio::spawn(etl.run(stop.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while store.stats().await.unwrap().committed_offsets_total < 32_000 {
        assert!(tokio::time::Instant::now() < deadline, "the last ETL never caught up");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.cancel();
    task.await.unwrap().unwrap();

    let expected = simulate_until(&config, to).await;
    let stored = stored(store.as_ref()).await;
    assert_eq!(stored.len(), 32_000);
    assert_eq!(checksum(&stored), checksum(&expected));
    assert_eq!(store.stats().await.unwrap().committed_offsets_total, 32_000);
}

/// 100 s of the seeded simulator (3,200 readings) on a fresh memory bus with 4 partitions.
async fn published_bus(config: &Config) -> (Arc<MemoryBus>, Vec<Reading>) {
    let memory = Arc::new(MemoryBus::new(1 << 20));
    memory.create_topic(READINGS, 4).await.unwrap();
    memory.create_topic(DLQ, 4).await.unwrap();
    let to = START + 100 * NANOS_PER_SEC;
    let bus: Arc<dyn Bus> = memory.clone();
    let mut sim =
        Simulator::new(&config.simulator, Output::Bus { bus, topic: READINGS.into() }, None)
            .unwrap();
    sim.backfill(START, to, &CancellationToken::new(), |_| {}).await.unwrap();
    (memory, simulate_until(config, to).await)
}

/// The ETL writes one batch at a time, each starting where the one before ended, and decodes the
/// next batch while one is being written: with every write 20 ms slow, the ETL has consumed more
/// by the end of a write than at its start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etl_decodes_the_next_batch_while_one_is_written_one_write_at_a_time() {
    let config = config();
    let (memory, expected) = published_bus(&config).await;
    let sqlite: Arc<dyn ReadingStore> = Arc::new(SqliteStore::open_in_memory().unwrap());
    sqlite.migrate().await.unwrap();
    let store = Arc::new(common::SlowStore::new(sqlite, Duration::from_millis(20)));
    let ingest = IngestConfig {
        batch_size: 200,
        batch_linger: Duration::from_secs(3_600),
        ..config.ingest.clone()
    };
    let bus: Arc<dyn Bus> = memory;
    let etl = Etl::new(bus, store.clone(), READINGS, DLQ, &ingest);
    let stats = etl.stats();
    store.etl.set(stats.clone()).unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(etl.run(stop.clone()));
    wait_until(|| stats.snapshot().rows_stored >= expected.len() as u64).await;
    stop.cancel();
    task.await.unwrap().unwrap();

    let stored = stored(store.as_ref()).await;
    assert_eq!(checksum(&stored), checksum(&expected));
    assert_eq!(store.overlapping.load(std::sync::atomic::Ordering::SeqCst), 0, "one at a time");
    let writes = store.writes.lock().unwrap().clone();
    assert_eq!(writes.len(), expected.len() / 200);
    // Per partition, each write starts at the offset the one before it ended at.
    let mut next: BTreeMap<u32, u64> = BTreeMap::new();
    for w in &writes {
        for (p, (first, end)) in &w.offsets {
            assert_eq!(*first, next.get(p).copied().unwrap_or(0), "partition {p} in {w:?}");
            next.insert(*p, *end);
        }
    }
    // All but the last write had the next batch to decode while it ran.
    let decoding = writes.iter().filter(|w| w.consumed.1 > w.consumed.0).count();
    assert!(decoding >= writes.len() / 2, "decoded during {decoding} of {} writes", writes.len());
}

/// A broker can keep a member in its group with nothing assigned for good (Tansu 0.6 after the
/// group's only member was killed): past `rejoin_after` the ETL leaves and joins again, twice
/// here (the second wait twice as long), and the member it ends up as stores every reading once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etl_never_assigned_partitions_joins_again_and_then_stores_every_reading_once() {
    let config = config();
    let (memory, expected) = published_bus(&config).await;
    let bus = Arc::new(common::StallingBus::new(memory, 2));
    let store: Arc<dyn ReadingStore> = Arc::new(SqliteStore::open_in_memory().unwrap());
    store.migrate().await.unwrap();
    let ingest = IngestConfig { rejoin_after: Duration::from_millis(200), ..config.ingest.clone() };
    let etl = Etl::new(bus.clone(), store.clone(), READINGS, DLQ, &ingest);
    let stop = CancellationToken::new();
    let started = tokio::time::Instant::now();
    let task = tokio::spawn(etl.run(stop.clone()));
    let deadline = started + Duration::from_secs(60);
    while store.stats().await.unwrap().readings < expected.len() as u64 {
        assert!(tokio::time::Instant::now() < deadline, "the ETL never stored everything");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // 200 ms with the first member, then 400 ms with the second.
    assert!(started.elapsed() >= Duration::from_millis(600), "{:?}", started.elapsed());
    assert_eq!((bus.subscribes(), bus.departed()), (3, 2), "joined thrice, left the stalled two");
    stop.cancel();
    task.await.unwrap().unwrap();
    let stored = stored(store.as_ref()).await;
    assert_eq!(checksum(&stored), checksum(&expected));
    assert_eq!(store.stats().await.unwrap().committed_offsets_total, expected.len() as u64);
}

/// A member that lost all its partitions in a rebalance joins again too, and writes its open batch
/// (rows and offsets) before its consumer goes; the member it becomes resumes after that batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etl_that_lost_its_partitions_writes_its_open_batch_before_joining_again() {
    let config = config();
    let (memory, expected) = published_bus(&config).await;
    // The records the first member reads before a rebalance takes its partitions: the head of the
    // topic, as any member of the group would read it.
    let mut peek = memory.subscribe(READINGS, "peek").await.unwrap();
    let head = poll_n(peek.as_mut(), 10).await;
    drop(peek);
    let bus = Arc::new(common::StallingBus::new(memory, 1).revoking(head.clone()));
    let store: Arc<dyn ReadingStore> = Arc::new(SqliteStore::open_in_memory().unwrap());
    store.migrate().await.unwrap();
    // Neither full nor due for an hour: only the rejoin writes the batch.
    let ingest = IngestConfig {
        rejoin_after: Duration::from_millis(200),
        batch_size: 100_000,
        batch_linger: Duration::from_secs(3_600),
        ..config.ingest.clone()
    };
    let etl = Etl::new(bus.clone(), store.clone(), READINGS, DLQ, &ingest);
    let stats = etl.stats();
    let stop = CancellationToken::new();
    let task = tokio::spawn(etl.run(stop.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while bus.subscribes() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the ETL never joined again");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The rejoin came after the flush.
    let totals = store.stats().await.unwrap();
    assert_eq!((totals.readings, totals.committed_offsets_total), (10, 10));
    assert_eq!(bus.departed(), 1);
    wait_until(|| stats.snapshot().consumed >= expected.len() as u64).await;
    stop.cancel();
    task.await.unwrap().unwrap();
    let stored = stored(store.as_ref()).await;
    assert_eq!(checksum(&stored), checksum(&expected));
    assert_eq!(store.stats().await.unwrap().committed_offsets_total, expected.len() as u64);
    assert_eq!(stats.snapshot().consumed, expected.len() as u64, "the new member skipped the head");
}

/// Going live from a simulated time behind the clock (the demo trains between its backfill and
/// the live phase) catches up at once, so live readings are stamped with the wall clock and not a
/// fixed delay behind it.
#[tokio::test]
async fn real_time_catches_up_a_start_behind_the_clock_at_once() {
    let config = Config::defaults().unwrap();
    let out = common::Shared::default();
    let mut sim =
        Simulator::new(&config.simulator, Output::Lines(Box::new(out.clone())), None).unwrap();
    let now = sentio_core::time::now_ns();
    let from = sim.align(now - 5 * NANOS_PER_SEC);
    let stop = CancellationToken::new();
    let stopper = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            stop.cancel();
        })
    };
    sim.real_time(from, &stop).await.unwrap();
    sim.finish().await.unwrap();
    stopper.await.unwrap();
    let stamps: Vec<i64> = {
        let bytes = out.0.lock().unwrap().clone();
        let limits = sentio_core::DecodeLimits::default();
        bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| sentio_core::decode_reading(l, &limits, now + NANOS_PER_SEC).unwrap().ts_ns)
            .collect()
    };
    let ticks = stamps.len() / (config.simulator.devices as usize * 4);
    assert!(ticks >= 5, "the 5 s behind were sent within 400 ms: {ticks} ticks");
    let newest = stamps.iter().max().copied().unwrap();
    assert!(
        newest >= now - NANOS_PER_SEC,
        "the newest reading is {} ms behind",
        (now - newest) / 1_000_000
    );
}
