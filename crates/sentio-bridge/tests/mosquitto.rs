#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The MQTT bridge against the real Mosquitto that `scripts/services.sh up` starts, driven by
//! Debian's `mosquitto_pub` (an independent client).

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use sentio_bridge::{BridgeStats, MqttBridge, MqttPublisher, Topics};
use sentio_bus::memory::MemoryBus;
use sentio_bus::{Bus, BusError, Consumer, Delivery};
use sentio_config::{Config, MqttVersion, PayloadFormat, Secret, Subscription};
use sentio_core::Reading;
use sentio_core::message::{DecodeLimits, decode_reading};
use tokio_util::sync::CancellationToken;

const READINGS: &str = "sensor-data";
const DLQ: &str = "sensor-data.dlq";

fn broker() -> (String, u16) {
    let url = sentio_it::setting("SENTIO_TEST_MQTT_URL");
    let rest = url.strip_prefix("mqtt://").expect("SENTIO_TEST_MQTT_URL is mqtt://host:port");
    let (host, port) = rest.rsplit_once(':').unwrap();
    (host.to_owned(), port.parse().unwrap())
}

fn publish(topic: &str, message: &str) {
    let (host, port) = broker();
    let status = Command::new("mosquitto_pub")
        .args(["-h", &host, "-p", &port.to_string(), "-q", "1", "-t", topic, "-m", message])
        .status()
        .expect("mosquitto_pub (Debian's mosquitto-clients; scripts/services.sh installs it)");
    assert!(status.success(), "mosquitto_pub -t {topic} -m {message}");
}

/// Publishes each line of `lines` as one message (`mosquitto_pub -l`).
fn publish_lines(topic: &str, lines: &[String]) {
    let (host, port) = broker();
    publish_lines_to(&host, port, topic, lines);
}

/// The same to the broker at `host:port`.
fn publish_lines_to(host: &str, port: u16, topic: &str, lines: &[String]) {
    publish_lines_with(&["-h", host, "-p", &port.to_string()], topic, lines);
}

/// `mosquitto_pub -q 1 -l` with `args` (broker, protocol version, TLS, credentials).
fn publish_lines_with(args: &[&str], topic: &str, lines: &[String]) {
    use std::io::Write;
    let mut child = Command::new("mosquitto_pub")
        .args(args)
        .args(["-q", "1", "-t", topic, "-l"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for line in lines {
        writeln!(stdin, "{line}").unwrap();
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

fn config(prefix: &str, client_id: &str) -> sentio_config::MqttBridgeConfig {
    let (host, port) = broker();
    let mut m = Config::defaults().unwrap().bridge.mqtt;
    m.host = host;
    m.port = port;
    m.client_id = client_id.to_owned();
    m.subscriptions = vec![
        Subscription {
            topic: format!("{prefix}/num/{{device}}/{{sensor}}"),
            format: PayloadFormat::Number,
            unit: "°C".into(),
        },
        Subscription {
            topic: format!("{prefix}/obj/+/{{device}}/#"),
            format: PayloadFormat::Object,
            unit: String::new(),
        },
    ];
    m
}

async fn bus() -> Arc<MemoryBus> {
    let bus = Arc::new(MemoryBus::new(1 << 20));
    bus.create_topic(READINGS, 2).await.unwrap();
    bus.create_topic(DLQ, 1).await.unwrap();
    bus
}

/// Starts a bridge and waits until the broker has confirmed its subscriptions.
async fn start(
    config: sentio_config::MqttBridgeConfig,
    bus: Arc<MemoryBus>,
) -> (tokio::task::JoinHandle<anyhow::Result<()>>, CancellationToken, Arc<BridgeStats>) {
    let subscriptions = config.subscriptions.len() as u64;
    let topics = Topics { readings: READINGS.into(), dead_letters: DLQ.into() };
    let bridge = MqttBridge::new(config, bus, topics, DecodeLimits::default()).unwrap();
    let stats = bridge.stats();
    let stop = CancellationToken::new();
    let task = tokio::spawn(bridge.run(stop.clone()));
    wait_for(&stats.subscribed, subscriptions, 20, "the bridge did not subscribe in 20 s").await;
    (task, stop, stats)
}

/// Waits up to `secs` seconds for `counter` to reach `n`, else fails saying `what`.
async fn wait_for(counter: &AtomicU64, n: u64, secs: u64, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while counter.load(Ordering::Relaxed) < n {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Everything on `topic` so far, waiting until there are `n`.
async fn drain(bus: &MemoryBus, topic: &str, group: &str, n: usize) -> Vec<bytes::Bytes> {
    let mut consumer = bus.subscribe(topic, group).await.unwrap();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while out.len() < n && tokio::time::Instant::now() < deadline {
        for record in consumer.poll(10_000, Duration::from_millis(200)).await.unwrap() {
            out.push(record.payload);
        }
    }
    out
}

fn readings(payloads: &[bytes::Bytes]) -> Vec<Reading> {
    let now = sentio_core::time::now_ns();
    payloads.iter().map(|p| decode_reading(p, &DecodeLimits::default(), now).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_pub_readings_arrive_and_bad_ones_are_dead_letters() {
    let prefix = sentio_it::unique("it-bridge");
    let client = sentio_it::unique("bridge").replace('_', "-");
    let bus = bus().await;
    let (task, stop, stats) = start(config(&prefix, &client), bus.clone()).await;

    publish(&format!("{prefix}/num/pump-01/temperature"), "21.5");
    publish(
        &format!("{prefix}/obj/site-a/comp-7/telemetry"),
        r#"{"ts": "2026-11-24T10:00:00Z", "current": 12.5, "flow": 3.25}"#,
    );
    // Malformed: not a number; a device id with a space; an object with a string value.
    publish(&format!("{prefix}/num/pump-01/temperature"), "warm");
    publish(&format!("{prefix}/num/pump 01/temperature"), "20");
    publish(&format!("{prefix}/obj/site-a/comp-7/x"), r#"{"current": "high"}"#);

    let got = readings(&drain(&bus, READINGS, "check", 3).await);
    let mut seen: Vec<_> =
        got.iter().map(|r| (r.device.to_string(), r.sensor.to_string(), r.value)).collect();
    seen.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(
        seen,
        [
            ("comp-7".into(), "current".into(), 12.5),
            ("comp-7".into(), "flow".into(), 3.25),
            ("pump-01".into(), "temperature".into(), 21.5),
        ]
    );
    let temperature = got.iter().find(|r| r.sensor.as_str() == "temperature").unwrap();
    assert_eq!(temperature.unit.as_str(), "°C");
    let dead = drain(&bus, DLQ, "check", 3).await;
    let letters: Vec<serde_json::Value> =
        dead.iter().map(|d| serde_json::from_slice(d).unwrap()).collect();
    let codes: Vec<&str> = letters.iter().map(|l| l["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["not_a_number", "bad_device", "wrong_type"], "{letters:?}");
    assert_eq!(letters[1]["mqtt_topic"], format!("{prefix}/num/pump 01/temperature"));
    assert_eq!(letters[0]["payload_base64"], "d2FybQ==", "the original bytes, base64");
    assert!(letters[2]["reason"].as_str().unwrap().contains("member `current`"));

    // The bridge acknowledged all five.
    wait_for(&stats.acknowledged, 5, 10, "not all acknowledged").await;
    assert_eq!(stats.dead_letters.load(Ordering::Relaxed), 3);
    assert_eq!(stats.arrival_time.load(Ordering::Relaxed), 1, "the plain number has no time");
    stop.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_sent_while_the_bridge_is_down_arrive_when_it_is_back() {
    let prefix = sentio_it::unique("it-bridge");
    let client = sentio_it::unique("bridge").replace('_', "-");
    let bus = bus().await;
    let (task, stop, _) = start(config(&prefix, &client), bus.clone()).await;
    let topic = format!("{prefix}/num/pump-02/pressure");
    let first: Vec<String> = (0..100).map(|i| format!("{}", 1.0 + f64::from(i) / 100.0)).collect();
    publish_lines(&topic, &first);
    assert_eq!(drain(&bus, READINGS, "first", 100).await.len(), 100);
    stop.cancel();
    task.await.unwrap().unwrap();

    // Down: the broker keeps the session's QoS 1 messages.
    let second: Vec<String> =
        (0..200).map(|i| format!("{}", 3.0 + f64::from(i) / 1000.0)).collect();
    publish_lines(&topic, &second);

    let (task, stop, stats) = start(config(&prefix, &client), bus.clone()).await;
    let all = readings(&drain(&bus, READINGS, "all", 300).await);
    assert_eq!(all.len(), 300, "every reading, those sent while down too");
    let mut values: Vec<f64> = all.iter().map(|r| r.value).collect();
    values.sort_by(f64::total_cmp);
    let mut expected: Vec<f64> = first.iter().chain(&second).map(|v| v.parse().unwrap()).collect();
    expected.sort_by(f64::total_cmp);
    assert_eq!(values, expected);
    assert!(stats.connections.load(Ordering::Relaxed) >= 1);
    stop.cancel();
    task.await.unwrap().unwrap();
}

/// A Mosquitto of the test's own (Debian's binary, persistence on), on a free loopback port, so
/// that the test may stop and restart it.
struct OwnBroker {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<std::process::Child>,
}

impl OwnBroker {
    fn start() -> OwnBroker {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut broker = OwnBroker { dir: tempfile::tempdir().unwrap(), port, child: None };
        broker.restart();
        broker
    }

    fn restart(&mut self) {
        let dir = self.dir.path();
        let user =
            String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
        std::fs::write(
            dir.join("mosquitto.conf"),
            format!(
                "user {}\nlistener {} 127.0.0.1\nallow_anonymous true\npersistence true\n\
                 persistence_location {}/\nautosave_interval 1\nmax_queued_messages 0\n",
                user.trim(),
                self.port,
                dir.display()
            ),
        )
        .unwrap();
        let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("Debian's mosquitto (scripts/services.sh installs it)");
        let child = Command::new(bin)
            .args(["-c", &dir.join("mosquitto.conf").display().to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "mosquitto did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it as a service manager would (SIGTERM: it saves its persistence file and exits).
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
            child.wait().unwrap();
        }
    }

    fn publish_lines(&self, topic: &str, lines: &[String]) {
        publish_lines_to("127.0.0.1", self.port, topic, lines);
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_stream_loses_nothing_and_the_bridge_reconnects_by_itself() {
    let mut broker = OwnBroker::start();
    let client = sentio_it::unique("bridge").replace('_', "-");
    let mut config = config("it-restart", &client);
    config.host = "127.0.0.1".into();
    config.port = broker.port;
    let bus = bus().await;
    let (task, stop, stats) = start(config.clone(), bus.clone()).await;
    let topic = "it-restart/num/pump-03/temperature";
    let values = |from: u32, n: u32| {
        (from..from + n).map(|i| format!("{}", f64::from(i) / 8.0)).collect::<Vec<_>>()
    };

    // The broker restarts right after accepting 1,000 readings (some still on their way to the
    // bridge); the bridge reconnects by itself and more follow.
    broker.publish_lines(topic, &values(0, 1_000));
    broker.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    broker.restart();
    wait_for(&stats.connections, 2, 30, "the bridge did not reconnect").await;
    broker.publish_lines(topic, &values(1_000, 1_000));
    // Then the bridge is away while 1,000 more arrive, and the broker restarts before it is back:
    // its persistence keeps the session's queue.
    wait_for(&stats.acknowledged, 2_000, 30, "not all acknowledged").await;
    stop.cancel();
    task.await.unwrap().unwrap();
    broker.publish_lines(topic, &values(2_000, 1_000));
    broker.stop();
    broker.restart();
    let (task, stop, _) = start(config, bus.clone()).await;

    // At least once: a message the broker delivers again is a repeat; none may be missing.
    let mut consumer = bus.subscribe(READINGS, "check").await.unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let mut messages = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < 3_000 && tokio::time::Instant::now() < deadline {
        for record in consumer.poll(10_000, Duration::from_millis(200)).await.unwrap() {
            messages += 1;
            seen.insert(readings(&[record.payload])[0].value.to_bits());
        }
    }
    let expected: std::collections::BTreeSet<u64> =
        values(0, 3_000).iter().map(|v| v.parse::<f64>().unwrap().to_bits()).collect();
    let missing = expected.difference(&seen).count();
    assert_eq!(
        missing, 0,
        "{missing} of 3,000 readings never arrived ({messages} messages in all)"
    );
    assert_eq!(seen.len(), 3_000, "only the readings sent");
    stop.cancel();
    task.await.unwrap().unwrap();
}

/// Over TLS: the bridge checks the broker's certificate against `ca_file` (the test CA of
/// `scripts/services.sh`) and takes readings from Debian's `mosquitto_pub --cafile`; without the
/// CA (the system's roots) it never connects; a bad CA file stops it before it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_broker_certificate_is_checked() {
    let url = sentio_it::setting("SENTIO_TEST_MQTT_TLS_URL");
    let (host, port) = url.strip_prefix("mqtts://").unwrap().rsplit_once(':').unwrap();
    let ca = sentio_it::setting("SENTIO_TEST_MQTT_CA");
    let prefix = sentio_it::unique("it-tls");
    let client = sentio_it::unique("tls").replace('_', "-");
    let mut c = config(&prefix, &client);
    c.port = port.parse().unwrap();
    c.tls = true;
    c.ca_file = ca.clone().into();
    let bus = bus().await;
    let (task, stop, stats) = start(c.clone(), bus.clone()).await;
    assert!(stats.connected.load(Ordering::Relaxed));
    let status = Command::new("mosquitto_pub")
        .args(["-h", host, "-p", port, "--cafile", &ca, "-q", "1"])
        .args(["-t", &format!("{prefix}/num/pump-01/temperature"), "-m", "22.5"])
        .status()
        .unwrap();
    assert!(status.success());
    let got = readings(&drain(&bus, READINGS, "check", 1).await);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].device.as_str(), got[0].value), ("pump-01", 22.5));
    stop.cancel();
    task.await.unwrap().unwrap();

    // The system's roots do not know the test CA: no connection, the reason in the log.
    let mut untrusted = c.clone();
    untrusted.ca_file = Default::default();
    untrusted.client_id = format!("{client}-untrusted");
    let topics = Topics { readings: READINGS.into(), dead_letters: DLQ.into() };
    let bridge =
        MqttBridge::new(untrusted, bus.clone(), topics.clone(), DecodeLimits::default()).unwrap();
    let stats = bridge.stats();
    let stop = CancellationToken::new();
    let task = tokio::spawn(bridge.run(stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stats.connections.load(Ordering::Relaxed), 0, "connected to an unknown CA's broker");
    stop.cancel();
    task.await.unwrap().unwrap();

    // A CA file that holds no certificate is refused up front, naming the key.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("ca.pem");
    std::fs::write(&bad, "not a certificate\n").unwrap();
    let mut broken = c;
    broken.ca_file = bad;
    let err = MqttBridge::new(broken, bus, topics, DecodeLimits::default()).err().unwrap();
    assert!(format!("{err:#}").contains("bridge.mqtt.ca_file"), "{err:#}");
}

/// `mosquitto_pub`'s name for `version` (`-V`).
fn pub_version(version: MqttVersion) -> &'static str {
    match version {
        MqttVersion::V311 => "mqttv311",
        MqttVersion::V5 => "mqttv5",
    }
}

/// Publishes `lines` to the services' Mosquitto in MQTT `version`.
fn publish_lines_in(version: MqttVersion, topic: &str, lines: &[String]) {
    let (host, port) = broker();
    let port = port.to_string();
    publish_lines_with(&["-h", &host, "-p", &port, "-V", pub_version(version)], topic, lines);
}

/// In MQTT 5: readings arrive, a bad payload is a dead letter, and what is published while the
/// bridge is away arrives when it is back (the session outlives the connection only because the
/// bridge sets a session expiry interval: without one a v5 broker drops it at the disconnect).
/// `mosquitto_pub -V mqttv5` is the independent client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_mqtt_5_readings_arrive_and_the_session_outlives_the_bridge() {
    let prefix = sentio_it::unique("it-v5");
    let client = sentio_it::unique("v5").replace('_', "-");
    let mut c = config(&prefix, &client);
    c.version = MqttVersion::V5;
    let bus = bus().await;
    let (task, stop, stats) = start(c.clone(), bus.clone()).await;
    assert!(stats.connected.load(Ordering::Relaxed));
    publish_lines_in(
        MqttVersion::V5,
        &format!("{prefix}/num/pump-05/temperature"),
        &["21.5".into(), "warm".into()],
    );
    publish_lines_in(
        MqttVersion::V5,
        &format!("{prefix}/obj/site-a/comp-5/telemetry"),
        &[r#"{"ts": "2026-11-24T10:00:00Z", "current": 12.5}"#.into()],
    );
    let got = readings(&drain(&bus, READINGS, "first", 2).await);
    let mut seen: Vec<_> = got.iter().map(|r| (r.device.to_string(), r.value)).collect();
    seen.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(seen, [("comp-5".into(), 12.5), ("pump-05".into(), 21.5)]);
    let dead = drain(&bus, DLQ, "first", 1).await;
    let letter: serde_json::Value = serde_json::from_slice(&dead[0]).unwrap();
    assert_eq!(letter["code"], "not_a_number");
    wait_for(&stats.acknowledged, 3, 10, "not all acknowledged").await;
    stop.cancel();
    task.await.unwrap().unwrap();

    // Away: the broker keeps the session's QoS 1 messages.
    let topic = format!("{prefix}/num/pump-06/pressure");
    let away: Vec<String> = (0..200).map(|i| format!("{}", 3.0 + f64::from(i) / 1000.0)).collect();
    publish_lines_in(MqttVersion::V5, &topic, &away);
    let (task, stop, _) = start(c, bus.clone()).await;
    let all = readings(&drain(&bus, READINGS, "all", 202).await);
    let mut values: Vec<f64> =
        all.iter().filter(|r| r.device.as_str() == "pump-06").map(|r| r.value).collect();
    values.sort_by(f64::total_cmp);
    let expected: Vec<f64> = away.iter().map(|v| v.parse().unwrap()).collect();
    assert_eq!(values, expected, "every reading sent while the bridge was away");
    stop.cancel();
    task.await.unwrap().unwrap();
}

/// A bus that refuses every record while `refusing` is set (the bridge retries), else a
/// [`MemoryBus`] that takes `delay` over each batch.
struct RefusingBus {
    inner: Arc<MemoryBus>,
    refusing: std::sync::atomic::AtomicBool,
    delay: Duration,
}

#[async_trait::async_trait]
impl Bus for RefusingBus {
    async fn create_topic(&self, topic: &str, partitions: u32) -> Result<(), BusError> {
        self.inner.create_topic(topic, partitions).await
    }

    async fn publish_batch(
        &self,
        topic: &str,
        records: Vec<(Bytes, Bytes)>,
    ) -> Result<Vec<Delivery>, BusError> {
        if self.refusing.load(Ordering::Relaxed) {
            return Err(BusError::Closed);
        }
        tokio::time::sleep(self.delay).await;
        self.inner.publish_batch(topic, records).await
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Consumer>, BusError> {
        self.inner.subscribe(topic, group).await
    }

    async fn end_offsets(
        &self,
        topic: &str,
    ) -> Result<std::collections::BTreeMap<u32, u64>, BusError> {
        self.inner.end_offsets(topic).await
    }
}

/// In both versions a message is acknowledged only once the bus has its readings: a bridge that
/// stops while the bus refuses them has acknowledged none, and the broker delivers them again to
/// the next bridge of the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_both_versions_a_message_the_bus_has_not_taken_is_not_acknowledged() {
    for version in [MqttVersion::V311, MqttVersion::V5] {
        let prefix = sentio_it::unique("it-ack");
        let client = sentio_it::unique("ack").replace('_', "-");
        let mut c = config(&prefix, &client);
        c.version = version;
        let memory = bus().await;
        let refusing = Arc::new(RefusingBus {
            inner: memory.clone(),
            refusing: true.into(),
            delay: Duration::ZERO,
        });
        let topics = Topics { readings: READINGS.into(), dead_letters: DLQ.into() };
        let bridge = MqttBridge::new(c.clone(), refusing, topics, DecodeLimits::default()).unwrap();
        let stats = bridge.stats();
        let stop = CancellationToken::new();
        let task = tokio::spawn(bridge.run(stop.clone()));
        wait_for(&stats.subscribed, 2, 20, &format!("{version}: did not subscribe")).await;
        let topic = format!("{prefix}/num/pump-07/temperature");
        let values: Vec<String> = (0..10).map(|i| format!("{}.5", 20 + i)).collect();
        publish_lines_in(version, &topic, &values);
        wait_for(&stats.messages, 10, 20, &format!("{version}: messages not taken in")).await;
        // Long enough for an acknowledgement to leave, were one sent.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(stats.acknowledged.load(Ordering::Relaxed), 0, "{version}");
        stop.cancel();
        task.await.unwrap().unwrap();

        let (task, stop, stats) = start(c, memory.clone()).await;
        let got = readings(&drain(&memory, READINGS, "check", 10).await);
        let mut seen: Vec<f64> = got.iter().map(|r| r.value).collect();
        seen.sort_by(f64::total_cmp);
        seen.dedup();
        let expected: Vec<f64> = values.iter().map(|v| v.parse().unwrap()).collect();
        assert_eq!(seen, expected, "{version}: delivered again to the next bridge");
        wait_for(&stats.acknowledged, 10, 10, &format!("{version}: not acknowledged")).await;
        stop.cancel();
        task.await.unwrap().unwrap();
    }
}

/// Backpressure: a backlog of 10,000 messages queued while the bridge was away, and a bus that
/// takes 20 ms over each batch, with a `max_inflight` of 100 (in MQTT 5, a bus without the delay,
/// so that acknowledgements come faster than rumqttc's request queue takes them). In both
/// versions every reading arrives and the broker has every acknowledgement: the session's next
/// bridge gets nothing again (one that dropped those a full queue refused got 7,274 messages
/// again). In 3.1.1 the bridge never
/// holds more than four times its `max_inflight` (waiting for the forwarding task, in its
/// channel, on the bus, and on their way to being acknowledged), however much the broker has for
/// it; before, it kept reading while any acknowledgement was owed, which on a slow bus was nearly
/// always, and held most of the backlog at once. In MQTT 5 it still reads while
/// acknowledgements are owed (rumqttc's v5 client sends them only as it polls), and Mosquitto
/// 2.0.11 sent the backlog past the bridge's Receive Maximum: docs/bridge.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_slow_bus_the_bridge_holds_no_more_than_its_max_inflight() {
    const BACKLOG: u64 = 10_000;
    const INFLIGHT: u16 = 100;
    for version in [MqttVersion::V311, MqttVersion::V5] {
        let prefix = sentio_it::unique("it-slow");
        let client = sentio_it::unique("slow").replace('_', "-");
        let mut c = config(&prefix, &client);
        c.version = version;
        c.max_inflight = INFLIGHT;
        let memory = bus().await;
        // The session, with its subscriptions, then the backlog while the bridge is away.
        let (task, stop, _) = start(c.clone(), memory.clone()).await;
        stop.cancel();
        task.await.unwrap().unwrap();
        let topic = format!("{prefix}/num/pump-03/temperature");
        let values: Vec<String> = (0..BACKLOG).map(|i| format!("{i}.25")).collect();
        publish_lines_in(version, &topic, &values);

        // MQTT 5 on a bus without the delay: acknowledgements then come faster than the request
        // queue takes them.
        let delay = if version == MqttVersion::V311 { 20 } else { 0 };
        let slow = Arc::new(RefusingBus {
            inner: memory.clone(),
            refusing: false.into(),
            delay: Duration::from_millis(delay),
        });
        let topics = Topics { readings: READINGS.into(), dead_letters: DLQ.into() };
        let bridge = MqttBridge::new(c.clone(), slow, topics, DecodeLimits::default()).unwrap();
        let stats = bridge.stats();
        let stop = CancellationToken::new();
        let task = tokio::spawn(bridge.run(stop.clone()));
        let mut held_most = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while stats.acknowledged.load(Ordering::Relaxed) < BACKLOG {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{version}: {} of {BACKLOG} acknowledged in 60 s",
                stats.acknowledged.load(Ordering::Relaxed)
            );
            let taken = stats.messages.load(Ordering::Relaxed);
            let held = taken.saturating_sub(stats.acknowledged.load(Ordering::Relaxed));
            held_most = held_most.max(held);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        stop.cancel();
        task.await.unwrap().unwrap();
        if version == MqttVersion::V311 {
            assert!(
                held_most <= 4 * u64::from(INFLIGHT),
                "{version}: the bridge held {held_most} messages at once"
            );
        }
        let got = readings(&drain(&memory, READINGS, "check", BACKLOG as usize).await);
        assert_eq!(got.len() as u64, BACKLOG, "{version}: every reading once");
        // The broker has every acknowledgement: the session's next bridge gets nothing again.
        let (task, stop, stats) = start(c, memory.clone()).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let again = stats.messages.load(Ordering::Relaxed);
        assert_eq!(again, 0, "{version}: {again} messages delivered again");
        stop.cancel();
        task.await.unwrap().unwrap();
    }
}

/// A Mosquitto of the test's own over TLS (the services' test CA and server certificate) that
/// wants a user name and password, on a free loopback port.
struct SecureBroker {
    _dir: tempfile::TempDir,
    port: u16,
    ca: String,
    child: std::process::Child,
}

impl SecureBroker {
    const USER: &str = "sentio";
    const PASSWORD: &str = "s3cret-pw";

    fn start() -> SecureBroker {
        let ca = sentio_it::setting("SENTIO_TEST_MQTT_CA");
        let tls = std::path::Path::new(&ca).parent().unwrap().to_owned();
        let dir = tempfile::tempdir().unwrap();
        let passwd = dir.path().join("passwd");
        let status = Command::new("mosquitto_passwd")
            .args(["-b", "-c", &passwd.display().to_string(), Self::USER, Self::PASSWORD])
            .status()
            .expect("mosquitto_passwd (Debian's mosquitto; scripts/services.sh installs it)");
        assert!(status.success());
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let user =
            String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "user {}\nlistener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\n\
                 cafile {ca}\ncertfile {}\nkeyfile {}\n",
                user.trim(),
                passwd.display(),
                tls.join("server.pem").display(),
                tls.join("server.key").display()
            ),
        )
        .unwrap();
        let child = Command::new("/usr/sbin/mosquitto")
            .args(["-c", &conf.display().to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("Debian's mosquitto (scripts/services.sh installs it)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "mosquitto did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        SecureBroker { _dir: dir, port, ca, child }
    }
}

impl Drop for SecureBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// TLS and a user name and password, in both versions: the bridge with the right ones takes
/// readings from `mosquitto_pub --cafile -u -P -V`, the simulator's publisher gets them to it in
/// the same version, and with a wrong password the bridge never connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_a_password_work_in_both_versions() {
    let broker = SecureBroker::start();
    for version in [MqttVersion::V311, MqttVersion::V5] {
        let prefix = sentio_it::unique("it-secure");
        let client = sentio_it::unique("secure").replace('_', "-");
        let mut c = config(&prefix, &client);
        c.version = version;
        c.host = "127.0.0.1".into();
        c.port = broker.port;
        c.tls = true;
        c.ca_file = broker.ca.clone().into();
        c.username = SecureBroker::USER.into();
        c.password = Secret::new(SecureBroker::PASSWORD);
        c.subscriptions.push(Subscription {
            topic: format!("{prefix}/sim/{{device}}/{{sensor}}"),
            format: PayloadFormat::Reading,
            unit: String::new(),
        });
        let bus = bus().await;
        let (task, stop, stats) = start(c.clone(), bus.clone()).await;
        let port = broker.port.to_string();
        let args = [
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "--cafile",
            &broker.ca,
            "-u",
            SecureBroker::USER,
            "-P",
            SecureBroker::PASSWORD,
            "-V",
            pub_version(version),
        ];
        publish_lines_with(&args, &format!("{prefix}/num/pump-08/temperature"), &["22.5".into()]);
        let got = readings(&drain(&bus, READINGS, "first", 1).await);
        assert_eq!(got.len(), 1, "{version}");
        assert_eq!((got[0].device.as_str(), got[0].value), ("pump-08", 22.5), "{version}");

        // The simulator's publisher, in the same version, over the same TLS and credentials.
        let sent = sentio_core::Reading::pump(
            sentio_core::DeviceId::new("pump-09").unwrap(),
            sentio_core::SensorKind::Pressure,
            sentio_core::time::parse_rfc3339("2026-11-24T10:00:00Z").unwrap(),
            4.25,
            3,
        );
        let payload = Bytes::from(sentio_core::encode_reading(&sent));
        let mut publisher =
            MqttPublisher::connect(&c, &format!("{client}-pub"), &format!("{prefix}/sim"))
                .await
                .unwrap();
        publisher.publish(vec![(Bytes::from_static(b"pump-09"), payload)]).await.unwrap();
        drop(publisher);
        let got = readings(&drain(&bus, READINGS, "second", 2).await);
        assert!(got.contains(&sent), "{version}: {got:?}");
        assert!(stats.connected.load(Ordering::Relaxed));
        stop.cancel();
        task.await.unwrap().unwrap();

        // A wrong password: refused, retried, never connected.
        let mut wrong = c.clone();
        wrong.password = Secret::new("not-it");
        wrong.client_id = format!("{client}-wrong");
        let topics = Topics { readings: READINGS.into(), dead_letters: DLQ.into() };
        let bridge = MqttBridge::new(wrong, bus.clone(), topics, DecodeLimits::default()).unwrap();
        let stats = bridge.stats();
        let stop = CancellationToken::new();
        let task = tokio::spawn(bridge.run(stop.clone()));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(stats.connections.load(Ordering::Relaxed), 0, "{version}: a wrong password");
        stop.cancel();
        task.await.unwrap().unwrap();
    }
}
