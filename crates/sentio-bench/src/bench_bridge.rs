//! `sentio bench bridge`: the MQTT bridge's readings/s from the broker into the bus, against
//! `mosquitto_sub` draining the same backlog with its output discarded (the broker's own limit).
//!
//! Each round, for each side in turn: a persistent QoS 1 session is made for a fresh client id
//! (`mosquitto_sub -c -E`), `mosquitto_pub` queues the messages for it while it is away, and then
//! the side connects and drains them: `mosquitto_sub -C N > /dev/null`, which acknowledges each
//! message on arrival, or `MqttBridge`, which acknowledges a message only once the bus (Kafka, on
//! the real stack) has acknowledged its readings. The clock runs from the connection to the last
//! message (`mosquitto_sub`'s exit; the bridge's Nth acknowledgement). Both drain the same broker,
//! the same number of messages of the same payloads; the median of the rounds is reported.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sentio_bridge::{MqttBridge, Topics};
use sentio_config::{Config, MqttBridgeConfig, PayloadFormat, Subscription};
use sentio_core::DecodeLimits;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use sentio_app::wiring;

pub struct Options {
    pub messages: u64,
    pub rounds: usize,
}

/// Devices the messages are spread over (one MQTT topic each).
const DEVICES: u64 = 8;

pub async fn run(config: Config, options: Options) -> anyhow::Result<()> {
    let m = &config.bridge.mqtt;
    let run_id = format!("{}-{}", std::process::id(), sentio_core::time::now_ns() % 1_000_000);
    let prefix = format!("sentio-bench-{run_id}");
    let topics = Topics {
        readings: format!("{}.bench-bridge-{run_id}", config.topics.readings),
        dead_letters: format!("{}.bench-bridge-{run_id}", config.topics.dead_letters),
    };
    let mut bus_config = config.clone();
    bus_config.topics.readings = topics.readings.clone();
    bus_config.topics.dead_letters = topics.dead_letters.clone();
    let bus = wiring::open_bus(&bus_config, None).await?;
    say!(
        "sentio bench bridge: {} QoS 1 messages (one reading each, {DEVICES} devices) queued on \
         mqtt://{}:{} for a persistent session, drained by mosquitto_sub and by the bridge into \
         the {:?} bus, {} rounds, {} cores",
        options.messages,
        m.host,
        m.port,
        config.bus.kind,
        options.rounds,
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    let payloads = payloads(options.messages);
    let (mut sub_rates, mut bridge_rates, mut bridge_cpu) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..options.rounds {
        let filter = format!("{prefix}/r{round}/#");
        let sub_id = format!("{prefix}-sub-{round}");
        session(m, &sub_id, &filter).await?;
        publish(m, &prefix, round, &payloads).await?;
        let took = mosquitto_sub(m, &sub_id, &filter, options.messages).await?;
        forget(m, &sub_id).await?;
        sub_rates.push(options.messages as f64 / took.as_secs_f64());

        let bridge_id = format!("{prefix}-bridge-{round}");
        session(m, &bridge_id, &filter).await?;
        publish(m, &prefix, round, &payloads).await?;
        let mut bridge_config = m.clone();
        bridge_config.client_id = bridge_id;
        bridge_config.subscriptions = vec![Subscription {
            topic: format!("{prefix}/r{round}/{{device}}/{{sensor}}"),
            format: PayloadFormat::Value,
            unit: "bar".into(),
        }];
        let cpu = cpu_seconds();
        let took = bridge(bridge_config, &bus, &topics, options.messages).await?;
        let cpu = cpu_seconds() - cpu;
        forget(m, &format!("{prefix}-bridge-{round}")).await?;
        bridge_cpu.push(cpu * 1e6 / options.messages as f64);
        bridge_rates.push(options.messages as f64 / took.as_secs_f64());
        say!(
            "  round {}: mosquitto_sub {:>9.0} msg/s, bridge {:>9.0} readings/s ({:.2}x), the \
             bridge's process {:.1} µs CPU per reading (Kafka client included)",
            round + 1,
            sub_rates[round],
            bridge_rates[round],
            bridge_rates[round] / sub_rates[round],
            bridge_cpu[round]
        );
    }
    let (sub, bridge) = (median(&mut sub_rates), median(&mut bridge_rates));
    say!(
        "median: mosquitto_sub {sub:.0} msg/s, bridge → {:?} {bridge:.0} readings/s: bridge / \
         mosquitto_sub {:.2}",
        config.bus.kind,
        bridge / sub
    );
    Ok(())
}

/// This process's CPU time so far (user and system, all threads), from /proc; 0 elsewhere.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: f64 =
        rest.split_whitespace().skip(11).take(2).filter_map(|t| t.parse::<f64>().ok()).sum();
    ticks / 100.0
}

/// Ends `id`'s persistent session (a clean-session connection drops it), so that runs leave no
/// sessions behind on the broker.
async fn forget(m: &MqttBridgeConfig, id: &str) -> anyhow::Result<()> {
    let status = Command::new("mosquitto_sub")
        .args(host_port(m))
        .args(["-i", id, "-q", "1", "-t", "sentio-bench/none", "-E"])
        .status()
        .await
        .context("running mosquitto_sub")?;
    if !status.success() {
        bail!("mosquitto_sub could not end the session {id} ({status})");
    }
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// One payload per message: `{"value": ..., "ts": ...}`, timestamps 1 ms apart.
fn payloads(n: u64) -> Vec<String> {
    let t0 = 1_796_083_200_000u64;
    (0..n)
        .map(|i| format!("{{\"value\": {}, \"ts\": {}}}", 1.0 + (i % 400) as f64 / 100.0, t0 + i))
        .collect()
}

fn host_port(m: &MqttBridgeConfig) -> [String; 4] {
    ["-h".into(), m.host.clone(), "-p".into(), m.port.to_string()]
}

/// Makes a persistent QoS 1 session for `id` subscribed to `filter`, and leaves it.
async fn session(m: &MqttBridgeConfig, id: &str, filter: &str) -> anyhow::Result<()> {
    let status = Command::new("mosquitto_sub")
        .args(host_port(m))
        .args(["-i", id, "-c", "-q", "1", "-t", filter, "-E"])
        .status()
        .await
        .context("running mosquitto_sub (Debian's mosquitto-clients)")?;
    if !status.success() {
        bail!("mosquitto_sub -E for the session {id} failed ({status})");
    }
    Ok(())
}

/// Queues `payloads` (spread over the devices) for the round's sessions, QoS 1.
async fn publish(
    m: &MqttBridgeConfig,
    prefix: &str,
    round: usize,
    payloads: &[String],
) -> anyhow::Result<()> {
    let mut publishers = Vec::new();
    for d in 0..DEVICES {
        let mut child = Command::new("mosquitto_pub")
            .args(host_port(m))
            .args(["-q", "1", "-l", "-t", &format!("{prefix}/r{round}/bench-{d:02}/pressure")])
            .stdin(Stdio::piped())
            .spawn()
            .context("running mosquitto_pub (Debian's mosquitto-clients)")?;
        let mut lines = String::new();
        for p in payloads.iter().skip(d as usize).step_by(DEVICES as usize) {
            lines.push_str(p);
            lines.push('\n');
        }
        let mut stdin = child.stdin.take().context("mosquitto_pub's stdin")?;
        publishers.push(tokio::spawn(async move {
            stdin.write_all(lines.as_bytes()).await?;
            drop(stdin);
            child.wait().await
        }));
    }
    for p in publishers {
        let status = p.await.context("publisher task")??;
        if !status.success() {
            bail!("mosquitto_pub failed ({status})");
        }
    }
    Ok(())
}

/// `mosquitto_sub` resuming `id`'s session until `n` messages arrived; the time it took.
async fn mosquitto_sub(
    m: &MqttBridgeConfig,
    id: &str,
    filter: &str,
    n: u64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let status = Command::new("mosquitto_sub")
        .args(host_port(m))
        .args(["-i", id, "-c", "-q", "1", "-t", filter, "-C", &n.to_string(), "-W", "300"])
        .stdout(Stdio::null())
        .status()
        .await
        .context("running mosquitto_sub")?;
    let took = started.elapsed();
    if !status.success() {
        bail!(
            "mosquitto_sub did not receive {n} messages within 300 s ({status}): does the broker \
             queue that many for a disconnected client (max_queued_messages 0)?"
        );
    }
    Ok(took)
}

/// The bridge resuming its session until it has acknowledged `n` messages, each once the bus
/// had its reading; the time it took.
async fn bridge(
    config: MqttBridgeConfig,
    bus: &Arc<dyn sentio_bus::Bus>,
    topics: &Topics,
    n: u64,
) -> anyhow::Result<Duration> {
    let bridge = MqttBridge::new(config, bus.clone(), topics.clone(), DecodeLimits::default())?;
    let stats = bridge.stats();
    let stop = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn(bridge.run(stop.clone()));
    let deadline = started + Duration::from_secs(300);
    while stats.acknowledged.load(Ordering::Relaxed) < n {
        if Instant::now() > deadline || task.is_finished() {
            stop.cancel();
            let _ = task.await;
            bail!(
                "the bridge acknowledged {} of {n} messages in 300 s",
                stats.acknowledged.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = started.elapsed();
    stop.cancel();
    task.await.context("the bridge task panicked")??;
    let (readings, letters) =
        (stats.readings.load(Ordering::Relaxed), stats.dead_letters.load(Ordering::Relaxed));
    if readings < n || letters > 0 {
        bail!(
            "the bridge published {readings} readings and {letters} dead letters for {n} messages"
        );
    }
    Ok(took)
}
