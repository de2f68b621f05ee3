#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `sentio bridge mqtt` as a user runs it, against the real Mosquitto of `scripts/services.sh`,
//! fed by Debian's `mosquitto_pub`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::sentio_in as sentio;
use sentio_store::ReadingStore;

fn mosquitto_pub(topic: &str, message: &str) {
    let (host, port) = common::mqtt_broker();
    let status = Command::new("mosquitto_pub")
        .args(["-h", &host, "-p", &port, "-q", "1", "-t", topic, "-m", message])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn without_subscriptions_the_bridge_says_how_to_add_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = sentio(dir.path()).args(["bridge", "mqtt"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bridge.mqtt.subscriptions is empty")
            && err.contains("[[bridge.mqtt.subscriptions]]")
            && err.contains("docs/bridge.md"),
        "{err}"
    );
    // A bad template names its key and says what is expected.
    std::fs::write(
        dir.path().join("bad.toml"),
        "[[bridge.mqtt.subscriptions]]\ntopic = \"plant/{sensor}\"\nformat = \"number\"\n",
    )
    .unwrap();
    let out = sentio(dir.path()).args(["--config", "bad.toml", "bridge", "mqtt"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("bridge.mqtt.subscriptions[0].topic") && err.contains("{device}"),
        "{err}"
    );
}

#[test]
fn the_bridge_stores_what_mosquitto_pub_sends_on_the_embedded_stack() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = sentio_it::unique("it-cli-bridge");
    let client = sentio_it::unique("cli-bridge").replace('_', "-");
    common::write_bridge_config(dir.path(), &prefix, &client);
    let (mut child, lines) = start_bridge(dir.path());
    let first = r#"{"value": 2.5, "ts": "2026-12-01T00:00:00Z"}"#;
    mosquitto_pub(&format!("{prefix}/press-01/pressure"), first);
    // The same message again (as a broker redelivers one the bridge took but did not
    // acknowledge): the same reading, stored once.
    mosquitto_pub(&format!("{prefix}/press-01/pressure"), first);
    mosquitto_pub(
        &format!("{prefix}/press-01/pressure"),
        r#"{"value": 2.75, "ts": "2026-12-01T00:00:01Z"}"#,
    );
    mosquitto_pub(&format!("{prefix}/press-01/pressure"), r#"{"value": "high"}"#);
    // The ETL stores them: the store's count is the proof, read after a clean stop.
    std::thread::sleep(Duration::from_secs(2));
    let killed = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    assert!(child.wait().unwrap().success(), "see {}", dir.path().join("bridge.log").display());
    let rest: Vec<String> = lines.iter().collect();
    let rest = rest.join("\n");
    assert!(rest.contains("4 MQTT messages: 3 readings published, 1 dead letters"), "{rest}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stored = runtime.block_on(async {
        let store =
            sentio_store::sqlite::SqliteStore::open(&dir.path().join("data/sentio.db")).unwrap();
        store.stats().await.unwrap().readings
    });
    assert_eq!(stored, 2);
}

/// Starts `sentio bridge mqtt` in `dir` with `bridge.toml` (its log in `bridge.log`) and waits
/// until it has subscribed.
fn start_bridge(dir: &std::path::Path) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut cmd = sentio(dir);
    cmd.args(["--config", "bridge.toml", "bridge", "mqtt"]);
    common::spawn_bridge(cmd, &dir.join("bridge.log"))
}

/// The short form of the crash test: readings published while the bridge is SIGKILLed and
/// restarted, again and again, are all stored, each once. (On the embedded stack a message is
/// acknowledged to the broker once stored; a message taken in but not acknowledged comes again,
/// and its copy is not stored twice.) Each kill comes while readings flow, and each restart
/// finds a backlog the broker kept meanwhile: a restarted bridge once deadlocked on one, its
/// acknowledgements waiting for an event loop that nothing polled.
#[test]
fn killing_the_bridge_loses_no_reading_and_stores_none_twice() {
    use std::io::Write;
    const KILLS: u64 = 5;
    // Per kill: a slice published while the bridge runs, then one while it is down.
    const SLICE: u64 = 400;
    const N: u64 = 2 * KILLS * SLICE + SLICE;
    let dir = tempfile::tempdir().unwrap();
    let (host, port) = common::mqtt_broker();
    let prefix = sentio_it::unique("it-crash-bridge");
    let client = sentio_it::unique("crash-bridge").replace('_', "-");
    common::write_bridge_config(dir.path(), &prefix, &client);
    let (mut bridge, _) = start_bridge(dir.path());

    // One publisher, QoS 1, N messages with their own timestamps (1 ms apart).
    let t0 = 1_796_000_000_000u64;
    let mut publisher = Command::new("mosquitto_pub")
        .args(["-h", &host, "-p", &port, "-q", "1", "-l"])
        .args(["-t", &format!("{prefix}/press-07/pressure")])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = publisher.stdin.take().unwrap();
    let mut next = 0u64;
    let mut publish = |count: u64| {
        for i in next..next + count {
            writeln!(stdin, "{{\"value\": {}, \"ts\": {}}}", i as f64 / 4.0, t0 + i).unwrap();
        }
        stdin.flush().unwrap();
        next += count;
    };
    for kill in 0..KILLS {
        publish(SLICE);
        std::thread::sleep(Duration::from_millis(150));
        bridge.kill().unwrap(); // SIGKILL, mid-stream
        bridge.wait().unwrap();
        publish(SLICE);
        std::thread::sleep(Duration::from_millis(150));
        (bridge, _) = start_bridge(dir.path());
        eprintln!("kill {}/{KILLS}: restarted", kill + 1);
    }
    publish(SLICE);
    drop(stdin);
    assert!(publisher.wait().unwrap().success());
    // The last one takes in the rest (the broker kept it): wait until the store holds N rows or
    // nothing more comes for 10 s, then stop it cleanly.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = dir.path().join("data/sentio.db");
    let count = || {
        runtime.block_on(async {
            let store = sentio_store::sqlite::SqliteStore::open(&db).unwrap();
            store.stats().await.unwrap().readings
        })
    };
    let (mut last, mut since) = (0, Instant::now());
    while since.elapsed() < Duration::from_secs(10) {
        let now = count();
        if now >= N {
            break;
        }
        if now > last {
            (last, since) = (now, Instant::now());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        Command::new("kill").args(["-INT", &bridge.id().to_string()]).status().unwrap().success()
    );
    assert!(bridge.wait().unwrap().success());

    let stored = runtime.block_on(async {
        let store = sentio_store::sqlite::SqliteStore::open(&db).unwrap();
        let query = sentio_store::RangeQuery {
            devices: vec![sentio_core::DeviceId::new("press-07").unwrap()],
            sensors: Vec::new(),
            from_ns: 0,
            to_ns: i64::MAX,
        };
        store.query_range(&query).await.unwrap()
    });
    let mut values: Vec<u64> = stored.iter().map(|r| (r.value * 4.0) as u64).collect();
    values.sort_unstable();
    let distinct = {
        let mut v = values.clone();
        v.dedup();
        v.len()
    };
    assert_eq!(distinct as u64, N, "every reading stored ({} rows)", stored.len());
    assert_eq!(values.len() as u64, N, "none stored twice");
    assert!(stored.iter().all(|r| r.ts_ns == ((t0 + (r.value * 4.0) as u64) * 1_000_000) as i64));
}
