#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `sentio bridge mqtt` as a user runs it, against the real Mosquitto of `scripts/services.sh`,
//! fed by Debian's `mosquitto_pub`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::sentio_in as sentio;
use sentio_store::ReadingStore;

fn broker() -> (String, String) {
    let url = sentio_it::setting("SENTIO_TEST_MQTT_URL");
    let rest = url.strip_prefix("mqtt://").unwrap();
    let (host, port) = rest.rsplit_once(':').unwrap();
    (host.to_owned(), port.to_owned())
}

fn mosquitto_pub(topic: &str, message: &str) {
    let (host, port) = broker();
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
    let (host, port) = broker();
    let prefix = sentio_it::unique("it-cli-bridge");
    let client = sentio_it::unique("cli-bridge").replace('_', "-");
    std::fs::write(
        dir.path().join("bridge.toml"),
        format!(
            "[bridge.mqtt]\nhost = \"{host}\"\nport = {port}\nclient_id = \"{client}\"\n\n\
             [[bridge.mqtt.subscriptions]]\ntopic = \"{prefix}/{{device}}/{{sensor}}\"\n\
             format = \"value\"\nunit = \"bar\"\n"
        ),
    )
    .unwrap();
    let mut child = sentio(dir.path())
        .args(["--config", "bridge.toml", "bridge", "mqtt"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = String::new();
    while !seen.contains("subscribed:") {
        assert!(Instant::now() < deadline, "not subscribed: {seen}");
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the bridge exited: {seen}");
        seen.push_str(&line);
    }
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
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{seen}{rest}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(rest.contains("4 MQTT messages: 3 readings published, 1 dead letters"), "{seen}{rest}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stored = runtime.block_on(async {
        let store =
            sentio_store::sqlite::SqliteStore::open(&dir.path().join("data/sentio.db")).unwrap();
        store.stats().await.unwrap().readings
    });
    assert_eq!(stored, 2);
}
