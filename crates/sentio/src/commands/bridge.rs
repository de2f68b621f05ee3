//! `sentio bridge`: devices in.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use sentio_bridge::{BridgeStats, MqttBridge, Topics};
use sentio_config::{BusKind, Config};
use sentio_core::DecodeLimits;
use sentio_services::shutdown::Shutdown;

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
    let bridge = MqttBridge::new(config.bridge.mqtt.clone(), bus.clone(), topics, limits)?;
    let stats = bridge.stats();

    let etl_stop = tokio_util::sync::CancellationToken::new();
    let etl = match &store {
        Some(store) => {
            let etl = wiring::etl(&config, &bus, store)?;
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
