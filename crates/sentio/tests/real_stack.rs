#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Every role of the binary on the real servers (Kafka protocol, PostgreSQL, S3), as separate
//! processes, checked by independent clients. Servers: `scripts/services.sh up`.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use bytes::Bytes;
use common::*;
use futures::TryStreamExt;
use sentio_bus::Bus;
use sentio_bus::kafka::KafkaBus;
use sentio_objects::RawBatch;
use sentio_store::ReadingStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_run_on_the_real_stack_and_independent_clients_read_the_results() {
    let stack = Stack::new("roles");
    let migrate = stack.run(&["migrate"]);
    assert!(migrate.contains("topics ready"), "{migrate}");
    stack.simulate(11, 150);
    let expected = stack.expected(11, 150);
    assert_eq!(expected.len(), 4_800);

    let ingest = stack.spawn_ingest();
    let store = stack.store().await;
    stack.wait_store(&store, "4,800 rows", |s| s.readings >= 4_800).await;
    stack.stop(ingest);
    let rows = stored(&store).await;
    assert_eq!(checksum(&rows), checksum(&expected));

    // psql, the database's own client, sees the rows.
    let psql = Command::new("psql")
        .args([
            "-h",
            &sentio_it::setting("SENTIO_TEST_PG_HOST"),
            "-U",
            &sentio_it::setting("SENTIO_TEST_PG_USER"),
        ])
        .args([
            "-d",
            &stack.dbname(),
            "-Atc",
            "select count(*), count(distinct device) from sensor_readings",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&psql.stdout).trim(),
        "4800|8",
        "{}",
        String::from_utf8_lossy(&psql.stderr)
    );

    // Python's confluent-kafka reads valid v1 JSON, keyed by device, from the topic.
    let out = Command::new(python())
        .arg(repo().join("scripts/kafka_read.py"))
        .args([&sentio_it::setting("SENTIO_TEST_KAFKA_BROKERS"), &stack.topic(), "4800"])
        .arg(repo().join("docs/schema/reading.v1.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Debian's kcat (librdkafka 2.0, no consumer group) reads the same 4,800 messages, each keyed
    // by the device its payload names.
    let kcat = Command::new("kcat")
        .args(["-b", &sentio_it::setting("SENTIO_TEST_KAFKA_BROKERS"), "-C", "-t", &stack.topic()])
        .args(["-o", "beginning", "-e", "-q", "-f", "%k\\t%s\\n"])
        .output()
        .unwrap();
    assert!(kcat.status.success(), "kcat: {}", String::from_utf8_lossy(&kcat.stderr));
    let lines: Vec<String> =
        String::from_utf8_lossy(&kcat.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 4_800, "kcat read {} messages", lines.len());
    for line in &lines {
        let (key, payload) = line.split_once('\t').unwrap();
        let reading: serde_json::Value = serde_json::from_str(payload).unwrap();
        assert_eq!(reading["device"], key, "{line}");
    }

    // The raw archive in S3 holds the same readings.
    let objects = sentio_objects::s3(&sentio_it::s3(&stack.var("SENTIO__OBJECTS__S3__BUCKET")))
        .await
        .unwrap();
    let metas: Vec<_> = objects.list(Some(&"raw".into())).try_collect().await.unwrap();
    assert!(!metas.is_empty());
    let mut archived = Vec::new();
    for meta in metas {
        let bytes = objects.get(&meta.location).await.unwrap().bytes().await.unwrap();
        archived.extend(RawBatch::from_pickle(&bytes).unwrap().readings().unwrap());
    }
    assert_eq!(checksum(&archived), checksum(&expected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_on_the_real_stack() {
    let stack = Stack::new("demo");
    let out =
        stack.sentio().args(["demo", "--backfill", "5m", "--duration", "3s"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("(consistent)"), "{stdout}");
    let stats = stack.store().await.stats().await.unwrap();
    assert!(stats.readings >= 9_600, "{stats:?}");
}

/// Exactly once across crashes: ingest killed with SIGKILL at random points, restarted each time.
/// CI runs the short form; `scripts/crash-test.sh` runs 1,000,000 readings and 20 kills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_killed_at_random_points_neither_loses_nor_duplicates() {
    let readings: i64 =
        std::env::var("SENTIO_CRASH_READINGS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let kills: usize =
        std::env::var("SENTIO_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let seconds = (readings + 31) / 32;
    let stack = Stack::new("crash");
    stack.run(&["migrate"]);
    stack.simulate(5, seconds);
    let expected = stack.expected(5, seconds);
    let store = stack.store().await;

    // Kill points spread over the whole run: row counts drawn at random, in order; each ingest
    // process is killed (SIGKILL) once the store has passed its point, wherever it is then.
    let mut rng = rand::rng();
    let total = expected.len() as u64;
    let mut points: Vec<u64> =
        (0..kills).map(|_| rand::Rng::random_range(&mut rng, 1..total)).collect();
    points.sort_unstable();
    for (kill, point) in points.into_iter().enumerate() {
        let mut child = stack.spawn_ingest();
        stack.wait_store(&store, "the next kill point", |s| s.readings >= point).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let now = store.stats().await.unwrap();
        eprintln!("kill {}/{kills} at >= {point}: {} rows stored", kill + 1, now.readings);
    }
    let last = stack.spawn_ingest();
    stack.wait_store(&store, "every reading", |s| s.readings >= expected.len() as u64).await;
    stack.stop(last);
    let rows = stored(&store).await;
    assert_no_duplicates(&rows);
    assert_eq!(checksum(&rows), checksum(&expected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_ingesters_share_the_partitions_and_survive_losing_one() {
    let mut stack = Stack::new("shared");
    stack.run(&["migrate"]);
    stack.simulate(3, 1_250);
    let mut expected = stack.expected(3, 1_250);
    let store = stack.store().await;
    let mut members: Vec<_> = (0..3).map(|_| stack.spawn_ingest()).collect();
    // Lose a member of a settled group.
    let bus = KafkaBus::connect(&sentio_it::kafka()).unwrap();
    let partitions = bus.partition_count(&stack.topic()).await.unwrap().unwrap();
    stack.wait_balanced(&members, partitions);
    stack.wait_store(&store, "a quarter", |s| s.readings >= expected.len() as u64 / 4).await;
    let mut victim = members.remove(1);
    victim.kill().unwrap();
    victim.wait().unwrap();
    // The survivors take the victim's partitions over by themselves...
    stack.wait_balanced(&members, partitions);
    // ...and store what arrives on them from now on: the victim may have drained its partitions
    // before it died (the pump devices leave partition 1 empty), but valve-01..08 hash to all four.
    stack.env.push(("SENTIO__SIMULATOR__DEVICE_PREFIX".into(), "valve".into()));
    stack.simulate(4, 250);
    expected.extend(stack.expected(4, 250));
    stack.wait_store(&store, "every reading", |s| s.readings >= expected.len() as u64).await;
    let group = stack.var("SENTIO__INGEST__GROUP");
    let offsets = store.committed_offsets(&group, &stack.topic()).await.unwrap();
    assert_eq!(offsets.len(), partitions as usize, "partitions that carried readings: {offsets:?}");
    for m in members {
        stack.stop(m);
    }
    let rows = stored(&store).await;
    assert_no_duplicates(&rows);
    assert_eq!(checksum(&rows), checksum(&expected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_land_in_the_dead_letter_topic_and_nothing_exits() {
    let stack = Stack::new("malformed");
    stack.run(&["migrate"]);
    let bus = KafkaBus::connect(&sentio_it::kafka()).unwrap();
    let mut dlq = bus.subscribe(&stack.var("SENTIO__TOPICS__DEAD_LETTERS"), "audit").await.unwrap();
    let mut ingest = stack.spawn_ingest();

    // 10,000 malformed messages of every class, interleaved with the simulator's valid ones.
    let bad: Vec<(Bytes, Bytes)> =
        (0..10_000).map(|i| (Bytes::from(format!("bad-{}", i % 50)), malformed(i))).collect();
    let feeder = {
        let topic = stack.topic();
        tokio::spawn(async move {
            for chunk in bad.chunks(500) {
                bus.publish_batch(&topic, chunk.to_vec()).await.unwrap();
            }
        })
    };
    stack.simulate(9, 625);
    feeder.await.unwrap();
    let expected = stack.expected(9, 625);
    let store = stack.store().await;
    let stats = stack
        .wait_store(&store, "rows and dead letters", |s| {
            s.readings >= 20_000 && s.dead_letters >= 10_000
        })
        .await;
    assert_eq!((stats.readings, stats.dead_letters), (20_000, 10_000));
    assert!(ingest.try_wait().unwrap().is_none(), "ingest exited on bad input");
    stack.stop(ingest);
    assert_eq!(checksum(&stored(&store).await), checksum(&expected));

    let letters = store.dead_letters(&stack.topic()).await.unwrap();
    let codes: BTreeSet<&str> = letters.iter().map(|d| d.code.as_str()).collect();
    assert_eq!(codes.len(), 10, "{codes:?}");
    assert!(letters.iter().all(|d| !d.reason.is_empty()));
    let on_topic = sentio_bus::contract::poll_n(dlq.as_mut(), 10_000).await;
    let unique: BTreeSet<(u32, u64)> = on_topic
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
            (v["partition"].as_u64().unwrap() as u32, v["offset"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(unique.len(), 10_000);
}

/// One malformed message per rejection class, distinct by `i`.
fn malformed(i: usize) -> Bytes {
    let ts = "2026-11-24T00:00:00Z";
    let text = match i % 10 {
        0 => format!("{{\"v\":1,\"device\":\"bad-{i}\""),
        1 => format!(
            "{{\"v\":1,\"device\":\"bad-{i}\",\"sensor\":\"pressure\",\"ts\":\"{ts}\",\"value\":NaN,\"unit\":\"bar\",\"seq\":{i}}}"
        ),
        2 => format!(
            "{{\"v\":1,\"sensor\":\"pressure\",\"ts\":\"{ts}\",\"value\":1.0,\"unit\":\"bar\",\"seq\":{i}}}"
        ),
        3 => format!(
            "{{\"v\":1,\"device\":\"bad-{i}\",\"sensor\":\"pressure\",\"ts\":\"{ts}\",\"value\":\"1\",\"unit\":\"bar\",\"seq\":{i}}}"
        ),
        4 => format!(
            "{{\"v\":1,\"device\":\"bad-{i}\",\"sensor\":\"Voltage\",\"ts\":\"{ts}\",\"value\":1.0,\"unit\":\"V\",\"seq\":{i}}}"
        ),
        5 => format!(
            "{{\"v\":2,\"device\":\"bad-{i}\",\"sensor\":\"pressure\",\"ts\":\"{ts}\",\"value\":1.0,\"unit\":\"bar\",\"seq\":{i}}}"
        ),
        6 => format!(
            "{{\"v\":1,\"device\":\"bad-{i}\",\"sensor\":\"pressure\",\"ts\":\"1970-01-01T00:00:00Z\",\"value\":1.0,\"unit\":\"bar\",\"seq\":{i}}}"
        ),
        7 => format!("{{\"v\":1,\"device\":\"bad-{i}\",\"pad\":\"{}\"}}", "x".repeat(5000)),
        8 => {
            return Bytes::from(
                [b"{\"v\":1,\"device\":\"".as_slice(), &[0xff, 0xfe], i.to_string().as_bytes()]
                    .concat(),
            );
        }
        _ => format!("[{i}]"),
    };
    Bytes::from(text)
}

/// `sentio bench --real` runs every stage against Apache Kafka and PostgreSQL (small sizes: the
/// figures are not checked here, only that each stage ran, on scratch topics and a scratch
/// database it removes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_real_measures_every_stage_against_the_real_servers() {
    let stack = Stack::new("bench");
    let out = stack
        .sentio()
        .args(["bench", "--real", "--readings", "20000", "--kafka-messages", "20000"])
        .arg("--python")
        .arg(python())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for stage in ["(a)", "(b)", "(c)", "(d)", "(e)", "(f)", "(g)"] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&format!("| {stage}")))
            .unwrap_or_else(|| panic!("no row {stage} in\n{stdout}"));
        assert!(row.contains(" | 20,000 | ") && row.contains(" s | "), "{row}");
        assert!(!row.contains("not measured"), "{row}");
    }
}
