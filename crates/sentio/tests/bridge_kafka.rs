#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The MQTT bridge on the real stack: Debian's `mosquitto_pub` publishes to the Mosquitto of
//! `scripts/services.sh`, `sentio bridge mqtt` forwards to Apache Kafka, `sentio ingest` stores
//! in PostgreSQL, and the bridge is killed with SIGKILL again and again on the way.

mod common;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use sentio_core::{Channel, DeviceId, Reading, Unit};
use sentio_store::ReadingStore;

/// Devices, each with its own `mosquitto_pub` (QoS 1) and topic.
const DEVICES: u64 = 4;
/// 2026-12-01T00:00:00Z in ms; reading i is at T0 + i ms, of device i % DEVICES.
const T0_MS: u64 = 1_796_083_200_000;

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Reading `i` as the bridge makes it from its message: device, channel and unit from the topic
/// and the subscription, seq = the timestamp.
fn reading(i: u64) -> Reading {
    let ts_ns = ((T0_MS + i) * 1_000_000) as i64;
    Reading {
        device: DeviceId::new(&format!("crash-{:02}", i % DEVICES)).unwrap(),
        sensor: Channel::new("pressure").unwrap(),
        unit: Unit::new("bar").unwrap(),
        ts_ns,
        value: value(i),
        seq: ts_ns as u64,
        injected: None,
        ts_source: sentio_core::TsSource::Event,
    }
}

fn value(i: u64) -> f64 {
    1.0 + (i % 4_000) as f64 / 1_000.0
}

/// Every reading published to Mosquitto is stored in PostgreSQL exactly once (count, checksum, no
/// duplicate device, channel and timestamp) while the bridge is SIGKILLed at random points and
/// restarted, the readings published while it was down included. CI runs this short form;
/// `scripts/crash-test.sh` runs 1,000,000 readings and 10 kills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_killed_at_random_points_on_kafka_loses_nothing_and_stores_each_reading_once() {
    crash_loop("3.1.1").await;
}

/// The same in MQTT 5, the bridge's and the publishers'.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mqtt_5_bridge_killed_at_random_points_on_kafka_loses_nothing() {
    crash_loop("5").await;
}

async fn crash_loop(version: &str) {
    let readings = env_or("SENTIO_BRIDGE_CRASH_READINGS", 20_000);
    let kills = env_or("SENTIO_BRIDGE_CRASH_KILLS", 3);
    // Paced so that the kills fall while readings flow, not after.
    let per_second = env_or("SENTIO_BRIDGE_CRASH_RATE", 8_000);
    let stack = Stack::new("bridgecrash");
    stack.run(&["migrate"]);
    let prefix = sentio_it::unique("it-bridge-kafka");
    let client = sentio_it::unique("bridge-kafka").replace('_', "-");
    write_bridge_config(stack.dir.path(), &prefix, &client);
    set_mqtt_version(stack.dir.path(), version);
    let store = stack.store().await;
    let ingest = stack.spawn_ingest();
    let log = stack.dir.path().join("bridge.log");
    let start_bridge = || {
        let mut cmd = stack.sentio();
        cmd.args(["--config", "bridge.toml", "bridge", "mqtt"]);
        spawn_bridge(cmd, &log).0
    };
    let mut bridge = start_bridge();

    let written = Arc::new(AtomicU64::new(0));
    let feeders: Vec<_> = (0..DEVICES)
        .map(|d| feeder(&prefix, version, d, readings, per_second, written.clone()))
        .collect();

    // Kill points spread over the publishing: published-reading counts drawn at random, in
    // order. Each bridge is killed once the publishers have passed its point, stays down for up
    // to half a second while they go on, and is started again.
    let mut rng = rand::rng();
    let mut points: Vec<u64> =
        (0..kills).map(|_| rand::Rng::random_range(&mut rng, 1..readings)).collect();
    points.sort_unstable();
    for (kill, point) in points.into_iter().enumerate() {
        while written.load(Ordering::Relaxed) < point {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        bridge.kill().unwrap(); // SIGKILL
        bridge.wait().unwrap();
        let down = rand::Rng::random_range(&mut rng, 0..500);
        tokio::time::sleep(Duration::from_millis(down)).await;
        let stored = store.stats().await.unwrap().readings;
        eprintln!(
            "kill {}/{kills} at {point} published ({stored} stored {down} ms later)",
            kill + 1
        );
        bridge = start_bridge();
    }
    for f in feeders {
        let mut publisher = f.join().unwrap();
        assert!(publisher.wait().unwrap().success(), "mosquitto_pub failed");
    }
    let started = Instant::now();
    stack.wait_store(&store, "every reading", |s| s.readings >= readings).await;
    eprintln!("the last bridge caught up {:?} after the last publish", started.elapsed());
    let out = Command::new("kill").args(["-INT", &bridge.id().to_string()]).status().unwrap();
    assert!(out.success());
    assert!(bridge.wait().unwrap().success(), "see {}", log.display());
    stack.stop(ingest);

    // Its status reports went through Kafka to the ETL, which kept the last in PostgreSQL: the
    // bridge that stopped cleanly, with every reading counted by the bridges since their start.
    let status = store.bridge_status().await.unwrap();
    let id = format!("mqtt:{client}@{}:{}", mqtt_broker().0, mqtt_broker().1);
    assert_eq!(status.iter().map(|r| r.bridge.as_str()).collect::<Vec<_>>(), [id.as_str()]);
    let (last, _) = sentio_core::BridgeReport::decode(status[0].report.as_bytes()).unwrap();
    assert!(last.stopped && last.connected == Some(false), "{last:?}");
    assert_eq!(last.pid, bridge.id());

    let rows = stored(&store).await;
    assert_eq!(rows.len() as u64, readings, "stored rows");
    let mut keys: Vec<(&str, &str, i64)> =
        rows.iter().map(|r| (r.device.as_str(), r.sensor.as_str(), r.ts_ns)).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len() as u64, readings, "a (device, channel, timestamp) stored twice");
    let expected: Vec<Reading> = (0..readings).map(reading).collect();
    assert_eq!(checksum(&rows), checksum(&expected));
}

/// `mosquitto_pub -l -q 1` for device `d`'s share of `n` readings, fed at `per_second` readings/s
/// in all (of the `DEVICES` feeders); returns the publisher once its input is written.
fn feeder(
    prefix: &str,
    version: &str,
    d: u64,
    n: u64,
    per_second: u64,
    written: Arc<AtomicU64>,
) -> std::thread::JoinHandle<Child> {
    let (host, port) = mqtt_broker();
    let topic = format!("{prefix}/crash-{d:02}/pressure");
    let mut publisher = Command::new("mosquitto_pub")
        .args(["-h", &host, "-p", &port, "-V", mosquitto_protocol(version), "-q", "1", "-l"])
        .args(["-t", &topic])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::spawn(move || {
        let mut stdin = std::io::BufWriter::new(publisher.stdin.take().unwrap());
        let started = Instant::now();
        let step = 100u64;
        let mut mine = 0u64;
        for i in (d..n).step_by(DEVICES as usize) {
            writeln!(stdin, "{{\"value\": {}, \"ts\": {}}}", value(i), T0_MS + i).unwrap();
            mine += 1;
            if mine.is_multiple_of(step) {
                stdin.flush().unwrap();
                written.fetch_add(step, Ordering::Relaxed);
                // Device d's share of the pace.
                let due = Duration::from_secs_f64((mine * DEVICES) as f64 / per_second as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
        stdin.flush().unwrap();
        written.fetch_add(mine % step, Ordering::Relaxed);
        drop(stdin);
        publisher
    })
}
