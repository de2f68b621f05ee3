#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `sentio detect` streaming on the real stack (Apache Kafka, PostgreSQL): a model
//! trained on stored history scores live readings with injected faults; the alert messages reach
//! the alerts topic, where Python's confluent-kafka reads them and checks them against the alert
//! JSON Schema, and each alert's latest state is in PostgreSQL's anomalies table.
//! Servers: `scripts/services.sh up`.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{START, START_NS, Stack, python, repo};
use sentio_core::AlertState;
use sentio_store::{AnomalyQuery, ReadingStore};

const SECOND: i64 = 1_000_000_000;

/// A small, fast model, and a detector that opens alerts quickly.
const SETTINGS: [(&str, &str); 11] = [
    ("SENTIO__TRAIN__WINDOW", "16"),
    ("SENTIO__TRAIN__STRIDE", "8"),
    ("SENTIO__TRAIN__HIDDEN", "12"),
    ("SENTIO__TRAIN__BOTTLENECK", "4"),
    ("SENTIO__TRAIN__EPOCHS", "4"),
    ("SENTIO__TRAIN__THREADS", "2"),
    ("SENTIO__TRAIN__LEARNING_RATE", "0.005"),
    ("SENTIO__DETECT__THREADS", "2"),
    ("SENTIO__DETECT__POLL_INTERVAL", "1s"),
    ("SENTIO__SIMULATOR__ANOMALIES__RATE_PER_HOUR", "6"),
    ("SENTIO__SIMULATOR__DEVICES", "4"),
];

fn at(seconds: i64) -> String {
    sentio_core::time::format_rfc3339(START_NS + seconds * SECOND)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_alerts_reach_the_alerts_topic_and_the_anomalies_table() {
    let stack = Stack::new("detect");
    let sentio = || {
        let mut c = stack.sentio();
        c.envs(SETTINGS);
        c
    };
    let run = |mut c: Command| {
        let out = c.output().unwrap();
        assert!(out.status.success(), "{c:?}:\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    // One hour of history into PostgreSQL (through the embedded bus: fast), and a model.
    run({
        let mut c = sentio();
        c.arg("migrate");
        c
    });
    let mut simulate = sentio();
    simulate.args(["simulate", "--from", START, "--to", &at(3_600), "--stdout", "--no-archive"]);
    let mut lines = simulate.stdout(Stdio::piped()).spawn().unwrap();
    let mut ingest = sentio();
    ingest.env("SENTIO__BUS__KIND", "memory").arg("ingest").arg("--stdin");
    ingest.stdin(lines.stdout.take().unwrap());
    run(ingest);
    assert!(lines.wait().unwrap().success());
    let trained = run({
        let mut c = sentio();
        c.args(["train", "--from", START, "--to", &at(3_600)]);
        c
    });
    assert!(trained.contains("champion -> version 1"), "{trained}");

    // The detector, then 30 minutes of another seed, with faults, through the broker.
    let log_path = stack.dir.path().join("detect.log");
    let mut detect = sentio()
        .arg("detect")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !log().contains("detect started") {
        assert!(detect.try_wait().unwrap().is_none(), "detect exited:\n{}", log());
        assert!(Instant::now() < deadline, "detect never started:\n{}", log());
        std::thread::sleep(Duration::from_millis(100));
    }
    run({
        let mut c = sentio();
        c.args(["simulate", "--seed", "12", "--from", &at(3_600), "--to", &at(5_400)]);
        c.arg("--no-archive");
        c
    });

    // Wait until the detector has scored the half hour (4 devices x 1,785 windows of 16 s; its
    // status line comes every 10 s) and resolved alerts are stored.
    let store = stack.store().await;
    let deadline = Instant::now() + Duration::from_secs(180);
    let stored = loop {
        let stored = store.anomalies(&AnomalyQuery::all()).await.unwrap();
        let resolved = stored.iter().filter(|a| a.state == AlertState::Resolved).count();
        if resolved >= 3 && windows_scored(&log()) >= 7_100 {
            break stored;
        }
        assert!(detect.try_wait().unwrap().is_none(), "detect exited:\n{}", log());
        assert!(Instant::now() < deadline, "{} alerts stored so far:\n{}", stored.len(), log());
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // Let the last batch's messages out, then stop it as an operator would.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = Command::new("kill").args(["-INT", &detect.id().to_string()]).status().unwrap();
    assert!(status.success());
    assert!(detect.wait().unwrap().success(), "{}", log());
    let text = log();
    let summary = text.lines().rev().find(|l| l.contains("alert messages")).unwrap_or_default();
    let published: usize = summary
        .split(", ")
        .find_map(|part| part.strip_suffix(" alert messages"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no alert count in the summary:\n{text}"));
    let stored = {
        let again = store.anomalies(&AnomalyQuery::all()).await.unwrap();
        assert!(again.len() >= stored.len());
        again
    };

    // Python reads every message from the topic; each is a valid alert v1 keyed by device.
    let out = Command::new(python())
        .arg(repo().join("scripts/kafka_read.py"))
        .arg(sentio_it::setting("SENTIO_TEST_KAFKA_BROKERS"))
        .arg(stack.var("SENTIO__TOPICS__ALERTS"))
        .arg(published.to_string())
        .arg(repo().join("docs/schema/alert.v1.json"))
        .arg("--print")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    // The last message of each alert on the topic is the state the table holds.
    let mut latest: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for line in stdout.lines().filter(|l| l.starts_with('{')) {
        let m: serde_json::Value = serde_json::from_str(line).unwrap();
        latest.insert(m["alert_id"].as_str().unwrap().to_owned(), m);
    }
    assert_eq!(latest.len(), stored.len(), "alerts on the topic and in the table");
    for a in &stored {
        let m = &latest[&a.alert_id];
        assert_eq!(m["state"], a.state.as_str(), "{}", a.alert_id);
        assert_eq!(m["device"], a.device.as_str());
        assert_eq!(m["model"]["version"], "1");
        assert_eq!(m["score"].as_f64().unwrap(), a.score);
    }
}

/// The windows scored according to the detector's latest status line.
fn windows_scored(log: &str) -> u64 {
    log.lines()
        .rev()
        .find_map(|l| {
            let before = &l[..l.find(" windows scored")?];
            before.rsplit(' ').next()?.parse().ok()
        })
        .unwrap_or(0)
}
