//! `sentio bridge`: devices in.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use std::collections::BTreeMap;

use sentio_bridge::report::{Counters, Identity, Reporter};
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
    /// configured store, so `sentio serve` on the same store shows the readings.
    ///
    /// Every bridge.report_every (5 s) the bridge publishes its counters and connection state on
    /// topics.status; `sentio ingest` keeps them in the store, and the pipeline page of any
    /// `sentio serve` shows the bridge (running, stale or stopped). See docs/bridge.md.
    Mqtt,
    /// Serve POST /api/v1/readings (bridge.http): devices and scripts send readings over HTTP,
    /// as JSON lines or a JSON array, in the formats above (?format=reading|value|object|number,
    /// with device=, sensor= and unit= where the format needs them).
    ///
    /// Every request needs `Authorization: Bearer <token>` (bridge.http.token or
    /// SENTIO__BRIDGE__HTTP__TOKEN, required). A 200 comes once the bus holds the readings (on
    /// the embedded bus, the store); lines that carry none are answered with their line numbers
    /// in a 400 and go to the dead-letter topic, the other lines stored. Bodies past
    /// bridge.http.max_request_bytes get 413, clients past max_readings_per_second 429. With
    /// bus.kind = "memory" the ETL runs in this process, into the configured store. It reports
    /// its counters on topics.status as the MQTT bridge does. See docs/api.md.
    Http(HttpArgs),
}

#[derive(clap::Args)]
struct HttpArgs {
    /// Address and port to listen on [default: bridge.http.bind, 127.0.0.1:8081].
    #[arg(long, value_name = "ADDR:PORT")]
    bind: Option<String>,
}

pub async fn run(config: Config, args: Args) -> anyhow::Result<()> {
    match args.command {
        Bridge::Mqtt => mqtt(config).await,
        Bridge::Http(args) => http(config, args).await,
    }
}

/// What a bridge checks each reading against (as the ETL will), and where it publishes.
pub(crate) fn limits_and_topics(config: &Config) -> (DecodeLimits, Topics) {
    let limits = DecodeLimits {
        max_future_ns: i64::try_from(config.ingest.max_future.as_nanos()).unwrap_or(i64::MAX),
        ..DecodeLimits::default()
    };
    let topics = Topics {
        readings: config.topics.readings.clone(),
        dead_letters: config.topics.dead_letters.clone(),
    };
    (limits, topics)
}

/// The bus a bridge publishes to and, on the embedded bus, the store and the ETL that fills it
/// in this process.
struct Plumbing {
    bus: Arc<dyn sentio_bus::Bus>,
    embedded: bool,
    /// On the embedded bus: a message is settled once stored.
    settle: Option<Arc<Stored>>,
    etl: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    etl_stop: tokio_util::sync::CancellationToken,
    limits: DecodeLimits,
    topics: Topics,
    /// Where and how often the bridge publishes its status reports.
    reports: (String, Duration),
}

impl Plumbing {
    fn reporter(&self, identity: Identity) -> Reporter {
        Reporter::new(self.bus.clone(), &self.reports.0, identity, self.reports.1)
    }

    async fn open(config: &Config, shutdown: &Shutdown) -> anyhow::Result<Plumbing> {
        let embedded = config.bus.kind == BusKind::Memory;
        let store = if embedded {
            wiring::own_embedded_store(config)?;
            Some(wiring::open_store(config).await?)
        } else {
            None
        };
        let bus = wiring::open_bus(config, store.as_deref()).await?;
        let (limits, topics) = limits_and_topics(config);
        let reports = (config.topics.status.clone(), config.bridge.report_every);
        let etl_stop = tokio_util::sync::CancellationToken::new();
        let (settle, etl) = match &store {
            Some(store) => {
                // The embedded bus dies with the process: a message is acknowledged (a request
                // answered) once stored. The in-process ETL writes within 20 ms (or the
                // configured linger, if shorter), not after a long linger.
                let settle = Arc::new(Stored::new(config, store));
                let mut quick = config.clone();
                quick.ingest.batch_linger =
                    quick.ingest.batch_linger.min(Duration::from_millis(20));
                let etl = wiring::etl(&quick, &bus, store)?;
                // The bridge's own status reports and dead letters, into the store too (for
                // `sentio serve`; the embedded dead-letter topic dies with the process).
                let keepers = wiring::run_keepers(config, &bus, store, etl_stop.clone());
                let etl = etl.run(etl_stop.clone());
                let both = async move {
                    let (etl, keepers) = tokio::join!(etl, keepers);
                    etl.and(keepers)
                };
                (Some(settle), Some(shutdown.spawn("ingest", both)))
            }
            None => (None, None),
        };
        Ok(Plumbing { bus, embedded, settle, etl, etl_stop, limits, topics, reports })
    }

    /// Stops the in-process ETL, once the bridge has stopped.
    async fn close(self) -> anyhow::Result<()> {
        self.etl_stop.cancel();
        if let Some(etl) = self.etl {
            etl.await.context("the ingest task panicked")??;
        }
        Ok(())
    }
}

async fn mqtt(config: Config) -> anyhow::Result<()> {
    let shutdown = Shutdown::new();
    shutdown.cancel_on_signals();
    let plumbing = Plumbing::open(&config, &shutdown).await?;
    let mut bridge = MqttBridge::new(
        config.bridge.mqtt.clone(),
        plumbing.bus.clone(),
        plumbing.topics.clone(),
        plumbing.limits,
    )?
    .with_profiles(config.profiles()?);
    if let Some(settle) = &plumbing.settle {
        bridge = bridge.with_settle(settle.clone());
    }
    let stats = bridge.stats();
    let m = &config.bridge.mqtt;
    say!(
        "bridging mqtt://{}:{} ({}) to {}{}; Ctrl-C stops",
        m.host,
        m.port,
        m.subscriptions.iter().map(|s| s.topic.as_str()).collect::<Vec<_>>().join(", "),
        config.topics.readings,
        if plumbing.embedded { " and the store" } else { "" }
    );
    let report = tokio::spawn(report_every(
        stats.clone(),
        m.subscriptions.len() as u64,
        Duration::from_secs(30),
        shutdown.token(),
    ));
    let reporter = plumbing.reporter(Identity::mqtt(&m.client_id, &m.host, m.port));
    // The last report, with the final counters, once the bridge has stopped (also on an error of
    // its own), before the in-process ETL (if any) stops.
    let done = tokio_util::sync::CancellationToken::new();
    let bridged = async {
        let ran = bridge.run(shutdown.token()).await;
        done.cancel();
        ran
    };
    let (ran, ()) = tokio::join!(bridged, reporter.run(|| Counters::of_mqtt(&stats), done.clone()));
    report.abort();
    ran?;
    plumbing.close().await?;
    say!("{}", summary(&stats));
    Ok(())
}

async fn http(mut config: Config, args: HttpArgs) -> anyhow::Result<()> {
    if let Some(bind) = args.bind {
        config.bridge.http.bind = bind;
    }
    let addr = config.bridge.http.socket_addr()?;
    let shutdown = Shutdown::new();
    shutdown.cancel_on_signals();
    let plumbing = Plumbing::open(&config, &shutdown).await?;
    let mut ingest = sentio_bridge::HttpIngest::new(
        config.bridge.http.clone(),
        plumbing.bus.clone(),
        plumbing.topics.clone(),
        plumbing.limits,
    )?
    .with_profiles(config.profiles()?)
    .with_stop(shutdown.token());
    if let Some(settle) = &plumbing.settle {
        ingest = ingest.with_settle(settle.clone());
    }
    let ingest = Arc::new(ingest);
    let stats = ingest.stats();
    let listener = sentio_web::bind(addr).await.map_err(|e| {
        anyhow::anyhow!("{e:#}")
            .context("(for the ingest endpoint, set bridge.http.bind or --bind)")
    })?;
    let addr = listener.local_addr()?;
    say!(
        "ingest endpoint: POST http://{addr}{} to {}{}; Ctrl-C stops. For example:\n  curl -H \
         \"Authorization: Bearer $SENTIO__BRIDGE__HTTP__TOKEN\" --data-binary \
         '{{\"value\": 21.5}}' 'http://{addr}{}?format=value&device=pump-01&sensor=temperature'",
        sentio_bridge::http::PATH,
        config.topics.readings,
        if plumbing.embedded { " and the store" } else { "" },
        sentio_bridge::http::PATH,
    );
    let report = {
        let (stats, stop) = (stats.clone(), shutdown.token());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(30)) => {}
                    () = stop.cancelled() => return,
                }
                tracing::info!("{}", http_summary(&stats));
            }
        })
    };
    let reporter = plumbing.reporter(Identity::http(addr));
    let done = tokio_util::sync::CancellationToken::new();
    let served = async {
        sentio_web::server::serve(
            listener,
            ingest.router(),
            sentio_web::server::HEADER_TIMEOUT,
            shutdown.token(),
        )
        .await;
        done.cancel();
    };
    tokio::join!(served, reporter.run(|| Counters::of_http(&stats), done.clone()));
    report.abort();
    plumbing.close().await?;
    say!("{}", http_summary(&stats));
    Ok(())
}

fn http_summary(s: &sentio_bridge::HttpStats) -> String {
    let arrival = s.arrival_time.load(Ordering::Relaxed);
    format!(
        "{} requests ({} refused whole): {} readings published{}, {} dead letters (lines that \
         carried no reading, to the dead-letter topic)",
        s.requests.load(Ordering::Relaxed),
        s.refused.load(Ordering::Relaxed),
        s.readings.load(Ordering::Relaxed),
        stamped(arrival),
        s.dead_letters.load(Ordering::Relaxed),
    )
}

/// The simulator's readings out to an MQTT broker (`sentio simulate --mqtt`, `demo --mqtt`).
pub(crate) struct MqttSink(pub(crate) sentio_bridge::MqttPublisher);

#[async_trait::async_trait]
impl sentio_services::simulator::Sink for MqttSink {
    async fn send(&mut self, batch: Vec<(bytes::Bytes, bytes::Bytes)>) -> anyhow::Result<()> {
        self.0.publish(batch).await
    }
}

/// Settled means stored: the ETL group's committed offsets, which the store writes with the rows,
/// have passed every delivery on the readings topic, or the bridge dead-letter keeper's every
/// delivery on the dead-letter topic.
pub(crate) struct Stored {
    store: Arc<dyn ReadingStore>,
    /// Per topic, the group whose stored offsets say it is stored: the readings topic's ETL, the
    /// dead-letter topic's bridge dead-letter keeper.
    groups: Vec<(String, String)>,
}

impl Stored {
    pub(crate) fn new(config: &Config, store: &Arc<dyn ReadingStore>) -> Stored {
        Stored {
            store: store.clone(),
            groups: vec![
                (config.topics.readings.clone(), config.ingest.group.clone()),
                (config.topics.dead_letters.clone(), wiring::bridge_dead_letter_group(config)),
            ],
        }
    }
}

#[async_trait::async_trait]
impl Settle for Stored {
    async fn settled(
        &self,
        topic: &str,
        deliveries: &[Delivery],
        stop: &tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<()> {
        let Some((_, group)) = self.groups.iter().find(|(t, _)| t == topic) else {
            return Ok(());
        };
        let mut need: BTreeMap<u32, u64> = BTreeMap::new();
        for d in deliveries {
            let next = need.entry(d.partition).or_insert(0);
            *next = (*next).max(d.offset + 1);
        }
        loop {
            let committed = self.store.committed_offsets(group, topic).await?;
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

/// " (n stamped with their arrival time)", or nothing when none was.
fn stamped(arrival: u64) -> String {
    if arrival > 0 {
        format!(" ({arrival} stamped with their arrival time)")
    } else {
        String::new()
    }
}

pub(crate) fn summary(s: &BridgeStats) -> String {
    let arrival = s.arrival_time.load(Ordering::Relaxed);
    format!(
        "{} MQTT messages: {} readings published{}, {} dead letters (to the dead-letter topic), {} acknowledged",
        s.messages.load(Ordering::Relaxed),
        s.readings.load(Ordering::Relaxed),
        stamped(arrival),
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
