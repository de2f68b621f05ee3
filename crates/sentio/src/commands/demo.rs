//! `sentio demo`: every role in one process, on the embedded backends: simulate, ingest, archive,
//! train, detect.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use sentio_config::Config;
use sentio_core::time::{NANOS_PER_SEC, format_rfc3339, now_ns};
use sentio_core::{Alert, AlertState, DeviceId};
use sentio_services::detect::alerts::resolve_orphaned;
use sentio_services::detect::service::{DetectEvent, DetectStats, Detector};
use sentio_services::detect::{replay, save_replay_scores};
use sentio_services::etl::EtlStats;
use sentio_services::shutdown::Shutdown;
use sentio_services::simulator::resume::state_path;
use sentio_services::simulator::{Output, SimStats};
use sentio_services::train::TrainRequest;
use sentio_store::ReadingStore;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use super::time_arg::parse_duration;
use sentio_bridge::report::Counters;

use crate::wiring;

/// Backfills simulated history (with a progress bar) through the embedded bus into SQLite and the
/// raw .pickle archive; trains the LSTM autoencoder on it unless a champion model exists (and
/// promotes it); replays the backfill through the detector; then streams live readings, scoring
/// them as they come and raising alerts, with a live summary line. Ctrl-C drains the bus, writes
/// the last batch and archive slices, and exits within a few seconds.
#[derive(clap::Args)]
pub struct Args {
    /// Only simulate, ingest and archive: no training, no detection.
    #[arg(long)]
    no_detect: bool,
    /// Train a new model even when a champion exists (it is promoted only if better).
    #[arg(long)]
    retrain: bool,
    /// Simulated time per real second in the live phase (overrides simulator.speedup), e.g. 60
    /// to see an hour of plant life per minute. Sped up, the live phase replays the second half of
    /// what this run simulates (or what --duration shows at that speed, if less), then keeps pace
    /// with the clock: no reading is ever stamped in the future.
    #[arg(long)]
    speedup: Option<f64>,
    /// History to simulate before going live (overrides demo.backfill), e.g. 2h; 0s skips it.
    #[arg(long, value_parser = parse_duration)]
    backfill: Option<Duration>,
    /// Stop after this much real time instead of waiting for Ctrl-C, e.g. 30s.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Do not start the dashboard.
    #[arg(long)]
    no_serve: bool,
    /// Where the dashboard listens (overrides web.bind), e.g. 127.0.0.1:9090.
    #[arg(long, value_name = "ADDR:PORT")]
    bind: Option<String>,
    /// Send the simulated readings through the MQTT broker of bridge.mqtt (the system's
    /// Mosquitto, 127.0.0.1:1883 by default), as devices would: the simulator publishes each
    /// reading (QoS 1) on sentio/demo/{device}/{sensor}, and an MQTT bridge in this process takes
    /// them to the bus and the ETL (acknowledging each once stored).
    #[arg(long)]
    mqtt: bool,
}

/// The topic prefix of `demo --mqtt`.
const MQTT_PREFIX: &str = "sentio/demo";

pub async fn run(mut config: Config, args: Args) -> anyhow::Result<()> {
    config.demo.backfill = args.backfill.unwrap_or(config.demo.backfill);
    config.simulator.speedup = args.speedup.unwrap_or(config.simulator.speedup);
    if let Some(bind) = &args.bind {
        config.web.bind = bind.clone();
    }
    if args.mqtt {
        // Each message is acknowledged to the broker once stored: the ETL writes within 20 ms.
        config.ingest.batch_linger = config.ingest.batch_linger.min(Duration::from_millis(20));
    }
    config.validate()?;

    // One process at a time on an embedded store (its bus lives in this process).
    wiring::own_embedded_store(&config)?;
    let store = wiring::open_store(&config).await?;
    let bus = wiring::open_bus(&config, Some(store.as_ref())).await?;
    let before = store.stats().await?;
    let archiver = wiring::archiver(&config).await?;

    let shutdown = Shutdown::new();
    shutdown.cancel_on_signals();
    let stop = shutdown.token();
    let bridge_stop = CancellationToken::new();
    let (output, bridge) = if args.mqtt {
        let (output, bridge) = through_mqtt(&config, &bus, &store, &shutdown, &bridge_stop).await?;
        (output, Some(bridge))
    } else {
        (Output::Bus { bus: bus.clone(), topic: config.topics.readings.clone() }, None)
    };
    let mut simulator = wiring::simulator(&config, output, archiver)?.with_abort(shutdown.failed());
    let sim_stats = simulator.stats();
    if let Some(limit) = args.duration {
        let stop = stop.clone();
        shutdown.spawn("timer", async move {
            tokio::select! {
                _ = tokio::time::sleep(limit) => stop.cancel(),
                _ = stop.cancelled() => {}
            }
            Ok(())
        });
    }

    // The ETL stops only after the simulator has, so it can drain what the simulator published.
    let etl_stop = CancellationToken::new();
    let etl = wiring::etl(&config, &bus, &store)?;
    let etl_stats = etl.stats();
    let etl_task = shutdown.spawn("ingest", etl.run(etl_stop.clone()));
    // The bridges' dead letters (the embedded dead-letter topic dies with the process).
    let keepers = shutdown
        .spawn("bridge dead letters", wiring::run_keepers(&config, &bus, &store, etl_stop.clone()));
    let probe = Arc::new(Probe {
        stats: std::sync::OnceLock::new(),
        real_time: config.simulator.speedup <= 1.0,
        sim: sim_stats.clone(),
    });
    if !args.no_serve {
        let mqtt = bridge.as_ref().map(|(_, stats)| {
            let m = &config.bridge.mqtt;
            let scheme = if m.tls { "mqtts" } else { "mqtt" };
            let endpoint = format!("{scheme}://{}:{}", m.host, m.port);
            Arc::new(MqttProbe { stats: stats.clone(), endpoint })
                as Arc<dyn sentio_web::BridgeProbe>
        });
        serve(&config, &store, &bus, probe.clone(), mqtt, &shutdown).await?;
    }

    say!(
        "sentio demo: {}, store {}, archive {}",
        simulator.describe_fleet(),
        config.store.sqlite.path.display(),
        if config.archive.enabled {
            config.objects.local.root.display().to_string()
        } else {
            "off".into()
        }
    );
    // Alerts a killed run left open have no detector behind them any more.
    close_open_alerts(store.as_ref(), "the previous run left open (its detector had stopped)")
        .await?;
    let now = simulator.align(now_ns());
    let wanted = now - i64::try_from(config.demo.backfill.as_nanos()).unwrap_or(i64::MAX / 2);
    let resumed = simulator
        .resume(store.as_ref(), &state_path(&config.store.sqlite.path), wanted, now)
        .await
        .context("resuming the simulation")?;
    let from = resumed.from_ns.min(now);
    if resumed.continued > 0 {
        say!(
            "resuming {} devices where each stopped (from {}){}",
            resumed.continued,
            format_rfc3339(from),
            if resumed.restarted.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} had no saved state and restart their signals",
                    resumed.restarted.len()
                )
            }
        );
    }
    // A sped-up live phase replays the end of the history, then keeps pace with the clock: it
    // never stamps a reading in the future.
    let live_from = live_start(&config, args.duration, from, now, simulator.cadence_ns());
    let total = simulator.ticks_between(from, live_from);
    let next = if total > 0 {
        say!("backfilling {} to {}", format_rfc3339(from), format_rfc3339(live_from));
        let bar = ProgressBar::new(total).with_style(
            ProgressStyle::with_template("{bar:40.cyan/blue} {percent:>3}%  {msg}  eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let started = Instant::now();
        let next = simulator
            .backfill(from, live_from, &stop, |done| {
                bar.set_position(done);
                bar.set_message(summary(&sim_stats, &etl_stats, started.elapsed()));
            })
            .await;
        bar.finish_and_clear();
        let next = fatal_first(next, &etl_task).await?;
        say!("backfill done: {}", summary(&sim_stats, &etl_stats, started.elapsed()));
        next
    } else {
        live_from
    };

    let detect_stop = CancellationToken::new();
    let detection = if args.no_detect || stop.is_cancelled() {
        None
    } else {
        wait_stored(&sim_stats, &etl_stats, &stop).await;
        match start_detection(&config, &args, &bus, &store, (from, next), &detect_stop, &stop).await
        {
            Ok(d) => d.map(|(run, stats, events)| (shutdown.spawn("detect", run), stats, events)),
            // The pipeline still runs; say why there is no detection and what to do.
            Err(e) => {
                say!(
                    "detection is off: {e:#}\n  (the default model needs about 30 minutes of \
                     history: run with a longer --backfill, or train with `sentio train`)"
                );
                None
            }
        }
    };
    let (detect_task, detect_stats, events) = match detection {
        Some((task, stats, events)) => (Some(task), Some(stats), Some(events)),
        None => (None, None, None),
    };
    if let Some(stats) = &detect_stats {
        let _ = probe.stats.set(stats.clone());
    }

    let live = ProgressBar::new_spinner();
    live.enable_steady_tick(Duration::from_millis(250));
    let ticker = {
        let (live, sim_stats, etl_stats, stop) =
            (live.clone(), sim_stats.clone(), etl_stats.clone(), stop.clone());
        let detect_stats = detect_stats.clone();
        tokio::spawn(async move {
            live_summary(live, sim_stats, etl_stats, detect_stats, events, stop).await
        })
    };
    let live_started = Instant::now();
    if !stop.is_cancelled() {
        let line = if next < now {
            format!(
                "live: replaying from {} at {}x until it meets the clock, then in real time; Ctrl-C stops",
                format_rfc3339(next),
                config.simulator.speedup
            )
        } else {
            "live: streaming in real time; Ctrl-C stops".to_owned()
        };
        if live.is_hidden() {
            say!("{line}");
        } else {
            live.println(line);
        }
        let ran = simulator.real_time(next, &stop).await;
        fatal_first(ran, &etl_task).await?;
    }
    let _ = ticker.await;
    live.finish_and_clear();

    // Drain: the simulator has stopped; write its last archive slices, then let the ETL store what
    // the bus still holds.
    let drain_started = Instant::now();
    simulator.finish().await?;
    if let Some((task, stats)) = bridge {
        // What the broker still holds for the bridge comes in first (or on the next run: the
        // session keeps it).
        let deadline = Instant::now() + Duration::from_secs(30);
        while stats.acknowledged.load(Ordering::Relaxed)
            < sim_stats.published.load(Ordering::Relaxed)
            && Instant::now() < deadline
            && !task.is_finished()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bridge_stop.cancel();
        task.await.context("the MQTT bridge task panicked")??;
        say!("mqtt: {}", super::bridge::summary(&stats));
    }
    etl_stop.cancel();
    etl_task.await.context("the ingest task panicked")??;
    keepers.await.context("the bridge dead-letter task panicked")??;
    detect_stop.cancel();
    if let Some(task) = detect_task {
        task.await.context("the detect task panicked")??;
    }
    // This process was the store's only detector: what it leaves open nobody would close.
    close_open_alerts(store.as_ref(), "still open at the stop (the detector stopped with it)")
        .await?;
    shutdown.wait(Duration::from_secs(2)).await;

    let after = store.stats().await?;
    say!(
        "stopped after a {:.1}s drain: {}",
        drain_started.elapsed().as_secs_f64(),
        final_line(&sim_stats, &etl_stats)
    );
    // What this run added: every message it consumed became exactly one row or dead letter (or
    // was the exact copy of a stored reading, stored once).
    let rows = after.readings - before.readings;
    let letters = after.dead_letters - before.dead_letters;
    let offsets = after.committed_offsets_total - before.committed_offsets_total;
    let copies = etl_stats.snapshot().copies_skipped;
    let consistent = rows + letters + copies == offsets;
    let copies_text =
        if copies > 0 { format!(" + {copies} copies stored once") } else { String::new() };
    say!(
        "store: +{rows} rows + {letters} dead letters{copies_text} {} +{offsets} committed offsets{}; it holds {} rows",
        if consistent { "=" } else { "!=" },
        if consistent { " (consistent)" } else { "" },
        after.readings,
    );
    if let Some(stats) = &detect_stats {
        let rate = stats.windows_scored.load(Ordering::Relaxed) as f64
            / live_started.elapsed().as_secs_f64();
        let real_time = config.simulator.speedup <= 1.0;
        say!("detect: {}", super::detect::summary(stats, rate, real_time));
    }
    if !consistent {
        bail!("the store's rows and offsets disagree; please report this with the store file");
    }
    Ok(())
}

/// The dashboard's view of the detector in this process (set once detection starts).
/// Latency is `None` when the simulation runs sped up (its event time runs ahead of the clock).
struct Probe {
    stats: std::sync::OnceLock<Arc<DetectStats>>,
    real_time: bool,
    sim: Arc<SimStats>,
}

impl sentio_web::LiveProbe for Probe {
    fn scoring_latency_ms(&self) -> Option<(f64, f64, u64)> {
        if !self.real_time {
            return None;
        }
        let h = &self.stats.get()?.latency;
        let ms = |q| h.quantile(q).map(|d: Duration| d.as_secs_f64() * 1e3);
        Some((ms(0.5)?, ms(0.99)?, h.count()))
    }

    fn windows_scored(&self) -> u64 {
        self.stats.get().map_or(0, |s| s.windows_scored.load(Ordering::Relaxed))
    }

    /// Sped up, the live phase replays the end of the history: the dashboard follows its clock.
    fn event_clock_ns(&self) -> Option<i64> {
        let t = self.sim.sim_time_ns.load(Ordering::Relaxed);
        (!self.real_time && t > 0).then_some(t)
    }
}

/// The MQTT bridge of `demo --mqtt`, for the pipeline page.
struct MqttProbe {
    stats: Arc<sentio_bridge::BridgeStats>,
    endpoint: String,
}

impl sentio_web::BridgeProbe for MqttProbe {
    fn status(&self) -> sentio_web::BridgeStatus {
        bridge_status("mqtt", &self.endpoint, Counters::of_mqtt(&self.stats))
    }
}

/// The demo's HTTP ingest endpoint, for the pipeline page.
struct HttpProbe {
    stats: Arc<sentio_bridge::HttpStats>,
}

impl sentio_web::BridgeProbe for HttpProbe {
    fn status(&self) -> sentio_web::BridgeStatus {
        bridge_status("http", sentio_bridge::http::PATH, Counters::of_http(&self.stats))
    }
}

/// What the pipeline page shows of a bridge of this process: its counters, as it reports them.
fn bridge_status(kind: &'static str, endpoint: &str, c: Counters) -> sentio_web::BridgeStatus {
    sentio_web::BridgeStatus {
        kind,
        endpoint: endpoint.to_owned(),
        connected: c.connected,
        messages: c.messages,
        readings: c.readings,
        arrival_time: c.arrival_time,
        dead_letters: c.dead_letters,
        refused: c.refused,
    }
}

/// `demo --mqtt`: the simulator's output is the MQTT broker, and a bridge in this process,
/// subscribed once it returns, takes the readings to the bus (acknowledging each once stored).
async fn through_mqtt(
    config: &Config,
    bus: &Arc<dyn sentio_bus::Bus>,
    store: &Arc<dyn ReadingStore>,
    shutdown: &Shutdown,
    bridge_stop: &CancellationToken,
) -> anyhow::Result<(
    Output,
    (tokio::task::JoinHandle<anyhow::Result<()>>, Arc<sentio_bridge::BridgeStats>),
)> {
    let mut m = config.bridge.mqtt.clone();
    // One session per store: a demo started again on it gets what its broker kept meanwhile,
    // and a demo in another directory does not.
    m.client_id = format!("sentio-demo-{:08x}", fnv1a(&config.store.sqlite.path));
    m.subscriptions = vec![sentio_config::Subscription {
        topic: format!("{MQTT_PREFIX}/{{device}}/{{sensor}}"),
        format: sentio_config::PayloadFormat::Reading,
        unit: String::new(),
    }];
    let publisher = sentio_bridge::MqttPublisher::connect(
        &m,
        &format!("sentio-demo-sim-{}", std::process::id()),
        MQTT_PREFIX,
    )
    .await?;
    let (limits, topics) = super::bridge::limits_and_topics(config);
    let bridge = sentio_bridge::MqttBridge::new(m.clone(), bus.clone(), topics, limits)?
        .with_profiles(config.profiles()?)
        .with_settle(Arc::new(super::bridge::Stored::new(config, store)));
    let stats = bridge.stats();
    let task = shutdown.spawn("mqtt bridge", bridge.run(bridge_stop.clone()));
    // Readings published before the subscription stands would reach nobody.
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats.subscribed.load(Ordering::Relaxed) < 1 {
        if Instant::now() > deadline || task.is_finished() {
            bail!(
                "the MQTT bridge did not subscribe at mqtt://{}:{} within 10 s (the log says why)",
                m.host,
                m.port
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    say!(
        "mqtt: the simulator publishes to mqtt://{}:{} on {MQTT_PREFIX}/{{device}}/{{sensor}}; \
         the bridge (client id {}) takes them to the store",
        m.host,
        m.port,
        m.client_id
    );
    Ok((Output::Sink(Box::new(super::bridge::MqttSink(publisher))), (task, stats)))
}

/// A hash of `path` as given and, where it exists, as the file system resolves it, that stays
/// the same across builds (FNV-1a, 32 bits).
fn fnv1a(path: &std::path::Path) -> u32 {
    let path = std::fs::canonicalize(path.parent().unwrap_or(path))
        .map(|p| p.join(path.file_name().unwrap_or_default()))
        .unwrap_or_else(|_| path.to_path_buf());
    path.to_string_lossy()
        .bytes()
        .fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// Starts the dashboard; a taken port turns it off with a message instead of stopping the demo.
async fn serve(
    config: &Config,
    store: &Arc<dyn ReadingStore>,
    bus: &Arc<dyn sentio_bus::Bus>,
    probe: Arc<Probe>,
    mqtt: Option<Arc<dyn sentio_web::BridgeProbe>>,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let addr = config.web.socket_addr()?;
    let listener = match sentio_web::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            say!("dashboard is off: {e:#}");
            return Ok(());
        }
    };
    let tracking = wiring::open_tracking(config)?;
    let (ingest, token_file) = ingest(config, store, bus, shutdown)?;
    let mut web = wiring::web(config, store.clone(), tracking, Some(bus.clone()))
        .with_probe(probe)
        .with_bridge(Arc::new(HttpProbe { stats: ingest.stats() }))
        .with_routes(ingest.clone().router());
    if let Some(mqtt) = mqtt {
        web = web.with_bridge(mqtt);
    }
    let addr = listener.local_addr()?;
    say!("dashboard: {}", super::serve::url(config, addr));
    let token = match &token_file {
        Some(path) => format!("$(cat {})", path.display()),
        None => "$SENTIO__BRIDGE__HTTP__TOKEN".into(),
    };
    say!(
        "readings in: curl -H \"Authorization: Bearer {token}\" --data-binary '{{\"value\": \
         21.5}}' 'http://{addr}{}?format=value&device=lab-01&sensor=temperature'",
        sentio_bridge::http::PATH
    );
    shutdown.spawn("dashboard", web.serve(listener, shutdown.token()));
    Ok(())
}

/// The ingest endpoint on the dashboard's port, answering once the store holds a request's
/// readings. Its token is bridge.http.token, or, when that is empty, one made here and kept in
/// the data directory (its path is returned), so that it stays the same across runs.
fn ingest(
    config: &Config,
    store: &Arc<dyn ReadingStore>,
    bus: &Arc<dyn sentio_bus::Bus>,
    shutdown: &Shutdown,
) -> anyhow::Result<(Arc<sentio_bridge::HttpIngest>, Option<std::path::PathBuf>)> {
    let mut http = config.bridge.http.clone();
    let mut token_file = None;
    if http.token.expose().is_empty() {
        let dir = config.store.sqlite.path.parent().unwrap_or(std::path::Path::new("."));
        let path = dir.join("ingest-token");
        let token = match std::fs::read_to_string(&path) {
            Ok(t) if !t.trim().is_empty() => t.trim().to_owned(),
            _ => {
                let token: String =
                    (0..32).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
                write_private(&path, &token)
                    .with_context(|| format!("writing the ingest token to {}", path.display()))?;
                token
            }
        };
        http.token = sentio_config::Secret::new(token);
        token_file = Some(path);
    }
    let (limits, topics) = super::bridge::limits_and_topics(config);
    let ingest = sentio_bridge::HttpIngest::new(http, bus.clone(), topics, limits)?
        .with_profiles(config.profiles()?)
        .with_settle(Arc::new(super::bridge::Stored::new(config, store)))
        .with_stop(shutdown.token());
    Ok((Arc::new(ingest), token_file))
}

/// Writes `text` to a file only its owner may read.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

/// Waits (briefly) until the ETL has stored what the backfill published, so training sees it.
async fn wait_stored(sim: &SimStats, etl: &EtlStats, stop: &CancellationToken) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && !stop.is_cancelled() {
        let s = etl.snapshot();
        if s.rows_stored + s.dead_letters + s.copies_skipped
            >= sim.published.load(Ordering::Relaxed)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

type DetectRun = futures::future::BoxFuture<'static, anyhow::Result<()>>;

/// Makes sure each profile with stored devices has a champion (training one on the last
/// `demo.backfill` of history when there is none, or when --retrain), replays `backfill` through
/// each (alerts saved), and starts the streaming detector over every profile. `None` when Ctrl-C
/// came first.
async fn start_detection(
    config: &Config,
    args: &Args,
    bus: &Arc<dyn sentio_bus::Bus>,
    store: &Arc<dyn ReadingStore>,
    backfill: (i64, i64),
    detect_stop: &CancellationToken,
    stop: &CancellationToken,
) -> anyhow::Result<Option<(DetectRun, Arc<DetectStats>, UnboundedReceiver<DetectEvent>)>> {
    let tracking = wiring::open_tracking(config)?;
    let profiles = config.profiles()?;
    for profile in sentio_services::train::stored_profiles(store.as_ref(), &profiles).await? {
        let name = wiring::profile_model_name(config, &profile);
        let champion = match tracking.get_alias(&name, &config.detect.alias).await {
            Ok(found) => found,
            // No such registered model yet: the first run.
            Err(e) if e.is_not_found() => None,
            Err(e) => {
                return Err(anyhow::Error::new(e))
                    .with_context(|| format!("looking up {name}@{}", config.detect.alias));
            }
        };
        if champion.is_some() && !args.retrain {
            continue;
        }
        say!(
            "{}: training {name} on the stored history of profile {profile}",
            if champion.is_none() { "no champion model yet" } else { "--retrain" }
        );
        let request = TrainRequest {
            config: config.train.clone(),
            profiles: profiles.clone(),
            profile,
            experiment: config.tracking.experiment.clone(),
            // The demo's history: what the backfill covers (also when a resumed run backfilled
            // only the part since the previous one).
            from_ns: Some(backfill.1 - i64::try_from(config.demo.backfill.as_nanos()).unwrap_or(0)),
            to_ns: Some(backfill.1),
        };
        let outcome = super::train::train_and_report(
            config,
            store.as_ref(),
            tracking.clone(),
            request,
            stop.clone(),
        )
        .await?;
        if stop.is_cancelled() {
            return Ok(None);
        }
        if champion.is_none() && !outcome.promotion.promote {
            bail!(
                "the trained model was not promoted (train.promote = {:?}); promote it with \
                 `sentio model promote {} --name {}` and run the demo again",
                config.train.promote,
                outcome.version,
                outcome.model_name
            );
        }
    }
    let models = config.tracking.local.root.join(".detect-cache");
    let scorers = wiring::profile_scorers(config, tracking.as_ref(), &models).await?;
    let (from, to) = backfill;
    for scorer in scorers.iter().filter(|_| to > from) {
        let profile = profiles.get(scorer.profile()).context("the model's profile is gone")?;
        let devices: Vec<DeviceId> =
            sentio_services::train::profile_devices(store.as_ref(), &profiles, profile)
                .await
                .unwrap_or_default()
                .iter()
                .filter_map(|d| DeviceId::new(d).ok())
                .collect();
        if devices.is_empty() {
            continue;
        }
        let found = replay(
            store.as_ref(),
            scorer.clone(),
            &devices,
            from,
            to,
            config.detect.stride,
            wiring::alert_settings(config),
        )
        .await?;
        store.save_alerts(&found.alerts).await.context("saving the backfill's alerts")?;
        if config.detect.save_scores {
            // The dashboard's score chart starts with the history, not at the first live window.
            let saved = save_replay_scores(store.as_ref(), &found.scores, scorer).await?;
            tracing::info!(scores = saved, "saved the backfill's scores");
        }
        let resolved: Vec<&Alert> =
            found.alerts.iter().filter(|a| a.state == AlertState::Resolved).collect();
        say!(
            "detect: {} v{} (threshold {:.5}) found {} alerts in the backfill{}",
            scorer.model().name,
            scorer.model().version,
            scorer.threshold(),
            resolved.len(),
            top_sensors(&resolved)
        );
    }
    let settings = wiring::stream_settings(config, Some((tracking, models)))?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    // Each device's window starts from the stored readings just before its first live one (the
    // detector reads them), so live scoring goes on where the replay stopped.
    let detector = Detector::new(bus.clone(), store.clone(), settings).with_observer(tx);
    let stats = detector.stats();
    Ok(Some((Box::pin(detector.run(scorers, detect_stop.clone())), stats, rx)))
}

/// ": 5 temperature, 3 vibration" — alerts per top sensor.
fn top_sensors(alerts: &[&Alert]) -> String {
    let mut per: Vec<(&sentio_core::Channel, usize)> = Vec::new();
    for a in alerts {
        let Some(top) = a.top_sensor() else { continue };
        match per.iter_mut().find(|(c, _)| *c == top) {
            Some((_, n)) => *n += 1,
            None => per.push((top, 1)),
        }
    }
    per.sort_by(|a, b| a.0.display_cmp(b.0));
    let parts: Vec<String> = per.iter().map(|(c, n)| format!("{n} {}", c.as_str())).collect();
    if parts.is_empty() { String::new() } else { format!(" (top sensor: {})", parts.join(", ")) }
}

/// Where the live phase starts. In real time (speedup 1 or less), at `now`: the backfill covers
/// the history. Sped up, the live phase replays the end of the history at the speedup (half of
/// what this run simulates, or what `--duration` shows at that speed if less), then keeps pace
/// with the clock, so no reading is ever stamped in the future (ingest would refuse it).
fn live_start(
    config: &Config,
    duration: Option<Duration>,
    from: i64,
    now: i64,
    cadence_ns: i64,
) -> i64 {
    let speedup = config.simulator.speedup;
    if speedup <= 1.0 || now <= from {
        return now;
    }
    let mut lead = (now - from) / 2;
    if let Some(d) = duration {
        lead = lead
            .min((d.as_secs_f64() * speedup * NANOS_PER_SEC as f64).min(i64::MAX as f64) as i64);
    }
    let start = now - lead;
    start.div_euclid(cadence_ns.max(1)) * cadence_ns.max(1)
}

/// Resolves the store's open alerts (see [`resolve_orphaned`]) and says how many, and why.
async fn close_open_alerts(store: &dyn ReadingStore, why: &str) -> anyhow::Result<()> {
    let closed = resolve_orphaned(store, now_ns()).await.context("resolving open alerts")?;
    if !closed.is_empty() {
        say!("resolved {} alerts {why}", closed.len());
    }
    Ok(())
}

/// `result`, unless the ingest task has already failed: then its error, which is the cause (a
/// publish gives up once the ETL is gone, and would otherwise hide why).
async fn fatal_first<T>(
    result: anyhow::Result<T>,
    etl_task: &tokio::task::JoinHandle<anyhow::Result<()>>,
) -> anyhow::Result<T> {
    match result {
        Ok(v) => Ok(v),
        Err(e) if etl_task.is_finished() => {
            Err(e.context("the ingest task failed first; see its error above"))
        }
        Err(e) => Err(e),
    }
}

async fn live_summary(
    bar: ProgressBar,
    sim: Arc<SimStats>,
    etl: Arc<EtlStats>,
    detect: Option<Arc<DetectStats>>,
    mut events: Option<UnboundedReceiver<DetectEvent>>,
    stop: CancellationToken,
) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    let mut last = (Instant::now(), etl.rows_stored.load(Ordering::Relaxed));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        while let Some(event) = events.as_mut().and_then(|rx| rx.try_recv().ok()) {
            if let DetectEvent::Alert(a) = event
                && a.state != AlertState::Updated
            {
                let line = alert_line(&a);
                if bar.is_hidden() {
                    say!("{line}");
                } else {
                    bar.println(line);
                }
            }
        }
        let detected = detect.as_ref().map_or(String::new(), |d| {
            format!(
                " | {} windows scored, {} alerts open",
                d.windows_scored.load(Ordering::Relaxed),
                d.alerts_open.load(Ordering::Relaxed)
            )
        });
        let rows = etl.rows_stored.load(Ordering::Relaxed);
        let rate = (rows - last.1) as f64 / last.0.elapsed().as_secs_f64().max(1e-3);
        last = (Instant::now(), rows);
        bar.set_message(format!(
            "{rate:>6.0} readings/s | {rows} rows stored | {} pickles | {} dead letters | {} injected{detected} | sim time {}",
            sim.pickles_written.load(Ordering::Relaxed),
            etl.dead_letters.load(Ordering::Relaxed),
            sim.injected.load(Ordering::Relaxed),
            format_rfc3339(sim.sim_time_ns.load(Ordering::Relaxed)),
        ));
    }
}

/// "alert opened pump-03: critical, 4.2x threshold, vibration 91% (sim time ...)".
fn alert_line(a: &Alert) -> String {
    let (top, share) = a
        .sensor_share
        .iter()
        .find(|(c, _)| Some(c) == a.top_sensor())
        .map_or(("-", 0.0), |(c, s)| (c.as_str(), *s));
    format!(
        "alert {} {}: {}, {:.1}x threshold, {} {:.0}% ({} .. {})",
        a.state.as_str(),
        a.device,
        a.severity.as_str(),
        a.score / a.threshold,
        top,
        share * 100.0,
        format_rfc3339(a.window_start_ns),
        format_rfc3339(a.window_end_ns),
    )
}

fn summary(sim: &SimStats, etl: &EtlStats, elapsed: Duration) -> String {
    let published = sim.published.load(Ordering::Relaxed);
    format!(
        "{published} readings ({:.0}/s), {} rows stored, {} pickles",
        published as f64 / elapsed.as_secs_f64().max(1e-3),
        etl.rows_stored.load(Ordering::Relaxed),
        sim.pickles_written.load(Ordering::Relaxed),
    )
}

fn final_line(sim: &SimStats, etl: &EtlStats) -> String {
    let s = etl.snapshot();
    format!(
        "{} readings published, {} rows stored, {} pickles written, {} dead letters",
        sim.published.load(Ordering::Relaxed),
        s.rows_stored,
        sim.pickles_written.load(Ordering::Relaxed),
        s.dead_letters
    )
}
