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
    let (stored, letters) = runtime.block_on(async {
        let store =
            sentio_store::sqlite::SqliteStore::open(&dir.path().join("data/sentio.db")).unwrap();
        (
            store.stats().await.unwrap().readings,
            store.dead_letters("sensor-data.dlq").await.unwrap(),
        )
    });
    assert_eq!(stored, 2);
    // The dead letter outlives the embedded bus: stored with its MQTT topic and reason.
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].key, format!("{prefix}/press-01/pressure").into_bytes());
    assert_eq!(letters[0].payload, br#"{"value": "high"}"#);
    assert_eq!(letters[0].code, "wrong_type");
    assert!(
        letters[0].reason.contains(&format!("MQTT topic \"{prefix}/press-01/pressure\"")),
        "{}",
        letters[0].reason
    );
}

/// A payload without a timestamp is stored with its arrival time, marked so; one with a
/// timestamp is not (`ts_source` in the store).
#[test]
fn a_reading_without_a_timestamp_is_stored_marked_as_arrival_time() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = sentio_it::unique("it-cli-arrival");
    let client = sentio_it::unique("cli-arrival").replace('_', "-");
    common::write_bridge_config(dir.path(), &prefix, &client);
    let (mut child, lines) = start_bridge(dir.path());
    let before = sentio_core::time::now_ns();
    mosquitto_pub(
        &format!("{prefix}/press-03/pressure"),
        r#"{"value": 2.5, "ts": "2026-12-01T00:00:00Z"}"#,
    );
    mosquitto_pub(&format!("{prefix}/press-03/pressure"), r#"{"value": 2.75}"#);
    let db = dir.path().join("data/sentio.db");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let read = || {
        runtime.block_on(async {
            let store = sentio_store::sqlite::SqliteStore::open(&db).unwrap();
            let query = sentio_store::RangeQuery {
                devices: vec![sentio_core::DeviceId::new("press-03").unwrap()],
                sensors: Vec::new(),
                from_ns: 0,
                to_ns: i64::MAX,
            };
            store.query_range(&query).await.unwrap()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while read().len() < 2 {
        assert!(Instant::now() < deadline, "not stored in 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let killed = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    assert!(child.wait().unwrap().success(), "see {}", dir.path().join("bridge.log").display());
    let rest: Vec<String> = lines.iter().collect();
    assert!(rest.join("\n").contains("stamped with their arrival time"), "{rest:?}");
    let stored = read();
    let got: Vec<(f64, sentio_core::TsSource)> =
        stored.iter().map(|r| (r.value, r.ts_source)).collect();
    assert_eq!(
        got,
        [(2.5, sentio_core::TsSource::Event), (2.75, sentio_core::TsSource::Arrival)],
        "{stored:?}"
    );
    assert!(stored[1].ts_ns >= before, "stamped on arrival");
}

/// `sentio serve` in another process shows a running `sentio bridge mqtt` on the pipeline page,
/// with its counters and connection, from the status reports its ETL keeps in the store; once
/// the bridge stops, its last report says so.
#[test]
fn sentio_serve_shows_a_bridge_of_another_process_on_the_pipeline_page() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let prefix = sentio_it::unique("it-cli-status");
    let client = sentio_it::unique("cli-status").replace('_', "-");
    common::write_bridge_config(dir.path(), &prefix, &client);
    let config = std::fs::read_to_string(dir.path().join("bridge.toml")).unwrap();
    std::fs::write(
        dir.path().join("bridge.toml"),
        format!("[bridge]\nreport_every = \"1s\"\n\n{config}"),
    )
    .unwrap();
    let (mut bridge, lines) = start_bridge(dir.path());
    mosquitto_pub(
        &format!("{prefix}/press-05/pressure"),
        r#"{"value": 2.5, "ts": "2026-12-01T00:00:00Z"}"#,
    );
    mosquitto_pub(&format!("{prefix}/press-05/pressure"), r#"{"value": 2.75}"#);
    mosquitto_pub(&format!("{prefix}/press-05/pressure"), "not json");
    let mut serve = sentio(dir.path())
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(serve.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .trim_end_matches('/')
        .to_owned();
    let id = format!("mqtt:{client}@{}:{}", common::mqtt_broker().0, common::mqtt_broker().1);
    let bridge_on_page = || -> Option<serde_json::Value> {
        let out =
            Command::new("curl").args(["-sf", &format!("{url}/api/pipeline")]).output().unwrap();
        let page: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        page["bridges"].as_array()?.iter().find(|b| b["bridge"] == id.as_str()).cloned()
    };
    let wait = |what: &str, done: &dyn Fn(&serde_json::Value) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(b) = bridge_on_page().filter(|b| done(b)) {
                return b;
            }
            assert!(Instant::now() < deadline, "{what}: {:?}", bridge_on_page());
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let running = wait("the running bridge", &|b| b["readings"] == 2);
    assert_eq!(running["process"], "reported");
    assert_eq!(running["state"], "running");
    assert_eq!(running["connected"], true);
    assert_eq!(running["kind"], "mqtt");
    assert_eq!(running["messages"], 3);
    assert_eq!(running["dead_letters"], 1);
    assert_eq!(running["arrival_time"], 1);
    assert_eq!(running["pid"], bridge.id());
    let killed = Command::new("kill").args(["-INT", &bridge.id().to_string()]).status().unwrap();
    assert!(killed.success());
    assert!(bridge.wait().unwrap().success(), "see {}", dir.path().join("bridge.log").display());
    drop(lines);
    let stopped = wait("the stopped bridge", &|b| b["state"] == "stopped");
    assert_eq!(stopped["connected"], false);
    assert_eq!(stopped["readings"], 2);
    assert_eq!(stopped["readings_per_s"], 0.0);
    serve.kill().unwrap();
    serve.wait().unwrap();
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
    kill_the_bridge_again_and_again("3.1.1");
}

/// The same in MQTT 5 (its session kept by a session expiry interval, not by clean_session),
/// with a publisher speaking MQTT 5 too.
#[test]
fn killing_the_mqtt_5_bridge_loses_no_reading_and_stores_none_twice() {
    kill_the_bridge_again_and_again("5");
}

fn kill_the_bridge_again_and_again(version: &str) {
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
    common::set_mqtt_version(dir.path(), version);
    let (mut bridge, _) = start_bridge(dir.path());

    // One publisher, QoS 1, N messages with their own timestamps (1 ms apart).
    let t0 = 1_796_000_000_000u64;
    let protocol = common::mosquitto_protocol(version);
    let mut publisher = Command::new("mosquitto_pub")
        .args(["-h", &host, "-p", &port, "-V", protocol, "-q", "1", "-l"])
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

/// Ends the persistent session of `client` on the test broker (a clean-session connection drops
/// it), so that it does not keep queueing what later tests publish.
fn forget_session(client: &str) {
    let (host, port) = common::mqtt_broker();
    let status = Command::new("mosquitto_sub")
        .args(["-h", &host, "-p", &port, "-i", client, "-t", "sentio/none", "-E"])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Device → MQTT → bridge → store, in two processes: `sentio simulate --mqtt` publishes a
/// backfill to Mosquitto as devices would, `sentio bridge mqtt` (subscribed to its topics,
/// format "reading") stores every reading, with its unit and ground truth.
#[test]
fn simulate_mqtt_through_bridge_mqtt_stores_every_reading() {
    let dir = tempfile::tempdir().unwrap();
    let (host, port) = common::mqtt_broker();
    let prefix = sentio_it::unique("it-sim-mqtt");
    let client = sentio_it::unique("sim-bridge").replace('_', "-");
    std::fs::write(
        dir.path().join("bridge.toml"),
        format!(
            "[bridge.mqtt]\nhost = \"{host}\"\nport = {port}\nclient_id = \"{client}\"\n\n\
             [[bridge.mqtt.subscriptions]]\ntopic = \"{prefix}/{{device}}/{{sensor}}\"\n\
             format = \"reading\"\n"
        ),
    )
    .unwrap();
    let (mut bridge, lines) = start_bridge(dir.path());
    // 10 minutes of 8 pumps at 1 s: 4,800 ticks of 4 channels.
    let out = sentio(dir.path())
        .args(["--config", "bridge.toml", "simulate", "--mqtt", "--mqtt-prefix", &prefix])
        .args(["--from", "2026-12-01T00:00:00Z", "--to", "2026-12-01T00:10:00Z", "--no-archive"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("topic = \"{prefix}/{{device}}/{{sensor}}\"")), "{stdout}");
    const N: u64 = 600 * 8 * 4;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = dir.path().join("data/sentio.db");
    let count = || {
        runtime.block_on(async {
            let store = sentio_store::sqlite::SqliteStore::open(&db).unwrap();
            store.stats().await.unwrap().readings
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while count() < N && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let killed = Command::new("kill").args(["-INT", &bridge.id().to_string()]).status().unwrap();
    assert!(killed.success());
    assert!(bridge.wait().unwrap().success());
    let rest: Vec<String> = lines.iter().collect();
    // Every message taken in, none a dead letter. (Those stored but not yet acknowledged when
    // the stop came are not counted as published: the broker sends them again, stored once.)
    let summary = rest.join("\n");
    assert!(
        summary.contains(&format!("{N} MQTT messages:")) && summary.contains(" 0 dead letters"),
        "{rest:?}"
    );
    assert_eq!(count(), N);
    // The simulator's ground truth and the units came through the reading messages.
    let rows = runtime.block_on(async {
        let store = sentio_store::sqlite::SqliteStore::open(&db).unwrap();
        let q = sentio_store::RangeQuery {
            devices: vec![],
            sensors: vec![],
            from_ns: i64::MIN,
            to_ns: i64::MAX,
        };
        store.query_range(&q).await.unwrap()
    });
    assert_eq!(rows.len() as u64, N);
    assert!(rows.iter().all(|r| !r.unit.as_str().is_empty()), "every reading kept its unit");
    let injected = rows.iter().filter(|r| r.injected.is_some()).count();
    assert!(injected > 0, "no reading marked injected among {N}");
    forget_session(&client);
}

/// `sentio demo --mqtt`: the simulator's readings go through the system's Mosquitto and the
/// bridge in the demo's process; every one is stored, and the demo's store stays consistent.
#[test]
fn demo_mqtt_goes_through_mosquitto() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let (host, port) = common::mqtt_broker();
    let mut child = sentio(dir.path())
        .args(["demo", "--mqtt", "--backfill", "10m", "--duration", "6s", "--no-detect"])
        .args(["--bind", "127.0.0.1:0"])
        .envs([
            ("SENTIO__BRIDGE__MQTT__HOST", host.as_str()),
            ("SENTIO__BRIDGE__MQTT__PORT", &port),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // While it runs, the pipeline page reports the bridge, connected, with what it took in.
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    let mut dashboard = None;
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "no backfill in {seen}");
        seen.push_str(&line);
        if let Some(url) = line.strip_prefix("dashboard: ") {
            dashboard = Some(url.trim().to_owned());
        }
        if line.starts_with("backfill done") {
            break;
        }
    }
    let dashboard = dashboard.unwrap_or_else(|| panic!("no dashboard line in {seen}"));
    let pipeline = Command::new("curl").args(["-s", &format!("{dashboard}/api/pipeline")]).output();
    let p: serde_json::Value = serde_json::from_slice(&pipeline.unwrap().stdout).unwrap();
    let bridges = p["bridges"].as_array().unwrap();
    let mqtt = bridges.iter().find(|b| b["kind"] == "mqtt").unwrap();
    assert_eq!(mqtt["connected"], true, "{p}");
    // (The backfill is done once the broker has it; the bridge is still taking it in.)
    assert!(mqtt["readings"].as_u64().unwrap() > 0, "{p}");
    assert!(mqtt["messages"].as_u64() >= mqtt["readings"].as_u64(), "{p}");
    assert_eq!(mqtt["endpoint"], format!("mqtt://{host}:{port}"));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = format!("{seen}{rest}");
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("(consistent)"), "{stdout}");
    let line = stdout.lines().find(|l| l.starts_with("mqtt: ") && l.contains("MQTT messages"));
    let line = line.unwrap_or_else(|| panic!("no bridge summary in {stdout}"));
    // "mqtt: N MQTT messages: N readings published, 0 dead letters ..., N acknowledged"
    let n: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(n >= 600 * 8 * 4, "{line}");
    assert!(line.contains(&format!("{n} readings published, 0 dead letters")), "{line}");
    let stored = stdout.lines().find(|l| l.starts_with("store: +")).unwrap();
    assert!(stored.contains(&format!("+{n} rows")), "{stored} vs {line}");
    let client = stdout
        .split("client id ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap_or_else(|| panic!("no client id in {stdout}"));
    forget_session(client);
}
