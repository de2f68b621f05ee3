//! `sentio bridge`: devices in.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use std::collections::BTreeMap;

use sentio_bridge::{BridgeStats, MqttBridge, Settle, Topics};
use sentio_bus::Delivery;
use sentio_config::{BusKind, Config};
use sentio_core::DecodeLimits;
use sentio_services::shutdown::Shutdown;
use sentio_store::ReadingStore;

use crate::wiring;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Bridge,
}

#[derive(clap::Subcommand)]
enum Bridge {
    /// Subscribe to an MQTT broker (bridge.mqtt) and publish what devices send there as readings
    /// on the readings topic.
    ///
    /// Each [[bridge.mqtt.subscriptions]] entry is a topic template, such as
    /// `plant/{device}/{sensor}`, and a payload format: "number" (a plain number), "value"
    /// ({"value": 21.3, "ts": ...}), "object" ({"ts": ..., "temperature": 21.3, ...}) or
    /// "reading" (Sentio's reading message v1). QoS 1 with a persistent session: readings sent
    /// while the bridge is down arrive when it is back, and a message is acknowledged to the
    /// broker only once the bus holds its readings. A message that carries no reading goes to
    /// the dead-letter topic with its MQTT topic and the reason.
    ///
    /// With bus.kind = "memory" the bridge also runs the ETL in this process, into the
    /// configured store, so `sentio serve` on the same store shows the readings. See
    /// docs/bridge.md.
    Mqtt,
}

pub async fn run(config: Config, args: Args) -> anyhow::Result<()> {
    match args.command {
        Bridge::Mqtt => mqtt(config).await,
    }
}

async fn mqtt(config: Config) -> anyhow::Result<()> {
    let shutdown = Shutdown::new();
    shutdown.cancel_on_signals();
    let embedded = config.bus.kind == BusKind::Memory;
    let store = if embedded {
        wiring::own_embedded_store(&config)?;
        Some(wiring::open_store(&config).await?)
    } else {
        None
    };
    let bus = wiring::open_bus(&config, store.as_deref()).await?;
    let limits = DecodeLimits {
        max_future_ns: i64::try_from(config.ingest.max_future.as_nanos()).unwrap_or(i64::MAX),
        ..DecodeLimits::default()
    };
    let topics = Topics {
        readings: config.topics.readings.clone(),
        dead_letters: config.topics.dead_letters.clone(),
    };
    let mut bridge = MqttBridge::new(config.bridge.mqtt.clone(), bus.clone(), topics, limits)?;
    if let Some(store) = &store {
        // The embedded bus dies with the process: a message is acknowledged once stored.
        bridge = bridge.with_settle(Arc::new(Stored {
            store: store.clone(),
            group: config.ingest.group.clone(),
            readings: config.topics.readings.clone(),
        }));
    }
    let stats = bridge.stats();

    let etl_stop = tokio_util::sync::CancellationToken::new();
    let etl = match &store {
        Some(store) => {
            // The broker sends no more than its in-flight limit of unacknowledged messages, and
            // the bridge acknowledges them once stored: the in-process ETL writes within 20 ms
            // (or the configured linger, if shorter), not after a long linger.
            let mut quick = config.clone();
            quick.ingest.batch_linger = quick.ingest.batch_linger.min(Duration::from_millis(20));
            let etl = wiring::etl(&quick, &bus, store)?;
            Some(shutdown.spawn("ingest", etl.run(etl_stop.clone())))
        }
        None => None,
    };
    let m = &config.bridge.mqtt;
    say!(
        "bridging mqtt://{}:{} ({}) to {}{}; Ctrl-C stops",
        m.host,
        m.port,
        m.subscriptions.iter().map(|s| s.topic.as_str()).collect::<Vec<_>>().join(", "),
        config.topics.readings,
        if embedded { " and the store" } else { "" }
    );
    let report = tokio::spawn(report_every(
        stats.clone(),
        m.subscriptions.len() as u64,
        Duration::from_secs(30),
        shutdown.token(),
    ));
    bridge.run(shutdown.token()).await?;
    report.abort();
    etl_stop.cancel();
    if let Some(etl) = etl {
        etl.await.context("the ingest task panicked")??;
    }
    say!("{}", summary(&stats));
    Ok(())
}

/// Settled means stored: the ETL group's committed offsets, which the store writes with the rows,
/// have passed every delivery on the readings topic. (The bridge's dead letters stay on the
/// in-process dead-letter topic, logged.)
struct Stored {
    store: Arc<dyn ReadingStore>,
    group: String,
    readings: String,
}

#[async_trait::async_trait]
impl Settle for Stored {
    async fn settled(
        &self,
        topic: &str,
        deliveries: &[Delivery],
        stop: &tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<()> {
        if topic != self.readings {
            return Ok(());
        }
        let mut need: BTreeMap<u32, u64> = BTreeMap::new();
        for d in deliveries {
            let next = need.entry(d.partition).or_insert(0);
            *next = (*next).max(d.offset + 1);
        }
        loop {
            let committed = self.store.committed_offsets(&self.group, &self.readings).await?;
            if need.iter().all(|(p, next)| committed.get(p).copied().unwrap_or(0) >= *next) {
                return Ok(());
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
                () = stop.cancelled() => return Ok(()),
            }
        }
    }
}

fn summary(s: &BridgeStats) -> String {
    let arrival = s.arrival_time.load(Ordering::Relaxed);
    format!(
        "{} MQTT messages: {} readings published{}, {} dead letters (to the dead-letter topic), {} acknowledged",
        s.messages.load(Ordering::Relaxed),
        s.readings.load(Ordering::Relaxed),
        if arrival > 0 {
            format!(" ({arrival} stamped with their arrival time)")
        } else {
            String::new()
        },
        s.dead_letters.load(Ordering::Relaxed),
        s.acknowledged.load(Ordering::Relaxed),
    )
}

/// Says when the broker has confirmed the `subscriptions`, then logs the counters `every` so
/// long.
async fn report_every(
    stats: Arc<BridgeStats>,
    subscriptions: u64,
    every: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    while stats.subscribed.load(Ordering::Relaxed) < subscriptions {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
            () = stop.cancelled() => return,
        }
    }
    say!(
        "subscribed: the broker delivers from here on, and keeps what arrives while the bridge \
         is away"
    );
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
        tracing::info!(connected = stats.connected.load(Ordering::Relaxed), "{}", summary(&stats));
    }
}
