#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The streaming detector on the embedded bus: it scores the same windows as a replay of the same
//! readings, publishes every alert message to the alerts topic and saves each alert's latest
//! state in the store, saves every window's score (unless told not to), and swaps to a newly
//! promoted model without skipping or re-scoring a window.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::{HOURS, START, config, history, simulate_until, train_once};
use sentio_bus::Bus;
use sentio_bus::memory::MemoryBus;
use sentio_config::Config;
use sentio_core::time::NANOS_PER_SEC;
use sentio_core::{Alert, AlertState, DecodeLimits, DeviceId, Reading, SensorKind, encode_reading};
use sentio_services::detect::service::{
    DetectEvent, DetectStats, Detector, Follow, StreamSettings,
};
use sentio_services::detect::{
    AlertSettings, AlertV1, SCORES_PER_CALL, Scorer, replay, save_replay_scores, score_point,
    top_sensor,
};
use sentio_services::train::{CHAMPION, TrainRequest};
use sentio_store::sqlite::SqliteStore;
use sentio_store::{AnomalyQuery, ReadingStore, ScorePoint, ScoreQuery};
use sentio_tracking::{LocalTracking, Tracking};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

const READINGS: &str = "sensor-data";
const ALERTS: &str = "anomaly-alerts";
const MINUTES: i64 = 90;

/// A store, a tracking directory and a model trained on `HOURS` of seed 11 (version 1, champion).
struct Setup {
    dir: tempfile::TempDir,
    config: Config,
    tracking: Arc<dyn Tracking>,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let config = config();
    let store = SqliteStore::open(&dir.path().join("train.db")).unwrap();
    store.migrate().await.unwrap();
    history(&store, &config).await;
    let tracking: Arc<dyn Tracking> = Arc::new(LocalTracking::open(&dir.path().join("t")).unwrap());
    train_once(&store, &tracking, request(&config, config.train.seed)).await.unwrap();
    Setup { dir, config, tracking }
}

impl Setup {
    /// `version` (a number or an alias) of the trained model, loaded for scoring.
    async fn scorer(&self, version: &str) -> Arc<Scorer> {
        let name = &self.config.train.model_name;
        let models = self.dir.path().join("models");
        Arc::new(Scorer::resolve(self.tracking.as_ref(), name, version, &models, 2).await.unwrap())
    }

    /// The detector's own (empty, migrated) store.
    async fn live_store(&self) -> Arc<SqliteStore> {
        let store = Arc::new(SqliteStore::open(&self.dir.path().join("live.db")).unwrap());
        store.migrate().await.unwrap();
        store
    }
}

/// Runs `detector` with `scorer` until it has taken every one of `readings`, published on `bus`.
async fn stream(
    detector: Detector,
    scorer: Arc<Scorer>,
    bus: &MemoryBus,
    readings: &[Reading],
) -> Arc<DetectStats> {
    let stats = detector.stats();
    let stop = CancellationToken::new();
    let task = tokio::spawn(detector.run(vec![scorer], stop.clone()));
    publish(bus, readings).await;
    wait_for(&stats, readings.len() as u64).await;
    stop.cancel();
    task.await.unwrap().unwrap();
    stats
}

fn request(config: &Config, seed: u64) -> TrainRequest {
    let mut train = config.train.clone();
    train.seed = seed;
    TrainRequest {
        config: train,
        profiles: sentio_core::Profiles::builtin(),
        profile: sentio_core::profile::PUMP.into(),
        experiment: "stream".into(),
        from_ns: Some(START),
        to_ns: Some(START + HOURS * 3_600 * NANOS_PER_SEC),
    }
}

/// `MINUTES` of seed 12 with many faults: data the model never saw.
async fn unseen(config: &Config) -> Vec<Reading> {
    let mut c = config.clone();
    c.simulator.seed = 12;
    c.simulator.anomalies.rate_per_hour = 8.0;
    simulate_until(&c, START + MINUTES * 60 * NANOS_PER_SEC).await
}

fn settings(follow: Option<Follow>) -> StreamSettings {
    StreamSettings {
        readings_topic: READINGS.into(),
        alerts_topic: ALERTS.into(),
        group: "detect".into(),
        grace: Duration::from_secs(2),
        stride: 1,
        batch_windows: 256,
        alerts: AlertSettings::default(),
        profiles: sentio_core::Profiles::builtin(),
        sensor_weights: BTreeMap::new(),
        device_threshold_factor: BTreeMap::new(),
        limits: DecodeLimits { max_future_ns: i64::MAX / 4, ..DecodeLimits::default() },
        follow,
        save_scores: true,
        rejoin_after: Duration::from_secs(60),
    }
}

async fn bus() -> Arc<MemoryBus> {
    let bus = Arc::new(MemoryBus::new(1 << 20));
    bus.create_topic(READINGS, 4).await.unwrap();
    bus.create_topic(ALERTS, 4).await.unwrap();
    bus
}

async fn publish(bus: &MemoryBus, readings: &[Reading]) {
    let records: Vec<(Bytes, Bytes)> = readings
        .iter()
        .map(|r| (Bytes::from(r.device.to_string()), Bytes::from(encode_reading(r))))
        .collect();
    for chunk in records.chunks(4096) {
        bus.publish_batch(READINGS, chunk.to_vec()).await.unwrap();
    }
}

/// Waits until the detector has taken `n` readings and scored what they complete.
async fn wait_for(stats: &DetectStats, n: u64) {
    for _ in 0..600 {
        if stats.readings.load(Ordering::Relaxed) >= n {
            // The batch that took the last readings is scored before the next poll.
            tokio::time::sleep(Duration::from_millis(300)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the detector took {} of {n} readings", stats.readings.load(Ordering::Relaxed));
}

/// Scored windows per device: (end, score, model version), in scoring order.
type Scores = BTreeMap<DeviceId, Vec<(i64, f64, String)>>;

fn drain(events: &mut UnboundedReceiver<DetectEvent>) -> (Scores, Vec<Alert>) {
    let (scores, alerts, _) = drain_points(events);
    (scores, alerts)
}

/// Like [`drain`], with the score point each scored window should be stored as.
fn drain_points(
    events: &mut UnboundedReceiver<DetectEvent>,
) -> (Scores, Vec<Alert>, Vec<ScorePoint>) {
    let mut scores = Scores::new();
    let mut alerts = Vec::new();
    let mut points = Vec::new();
    while let Ok(e) = events.try_recv() {
        match e {
            DetectEvent::Scored { device, window, model, threshold } => {
                points.push(ScorePoint {
                    device: device.clone(),
                    ts_ns: window.end_ns,
                    score: window.score,
                    threshold,
                    top_sensor: model.sensors.channels()[top_sensor(&window.sensor_error)].clone(),
                    model_version: model.version.clone(),
                });
                scores.entry(device).or_default().push((
                    window.end_ns,
                    window.score,
                    model.version,
                ));
            }
            DetectEvent::Alert(a) => alerts.push(a),
        }
    }
    (scores, alerts, points)
}

/// The replay's windows of the same readings, per device: (end, score).
async fn replayed(
    dir: &std::path::Path,
    scorer: Arc<Scorer>,
    readings: &[Reading],
) -> (BTreeMap<DeviceId, Vec<(i64, f64)>>, Vec<Alert>) {
    let store =
        SqliteStore::open(&dir.join(format!("replay-{}.db", scorer.model().version))).unwrap();
    store.migrate().await.unwrap();
    store.insert_readings(readings).await.unwrap();
    let end = START + MINUTES * 60 * NANOS_PER_SEC;
    let found = replay(&store, scorer, &[], START, end, 1, AlertSettings::default()).await.unwrap();
    let scores = found
        .scores
        .into_iter()
        .map(|(d, ws)| (d, ws.into_iter().map(|w| (w.end_ns, w.score)).collect()))
        .collect();
    (scores, found.alerts)
}

/// Every streamed window is the replay's window with the same end, in order and each once; the
/// replay may have up to two more at the end per device (their frames still wait for a later
/// reading in the stream).
fn assert_same_windows(
    streamed: &Scores,
    replayed: &BTreeMap<DeviceId, Vec<(i64, f64)>>,
    score_of: impl Fn(&str, usize, &DeviceId) -> f64,
) {
    assert_eq!(streamed.keys().collect::<Vec<_>>(), replayed.keys().collect::<Vec<_>>());
    for (device, live) in streamed {
        let batch = &replayed[device];
        assert!(
            live.len() <= batch.len() && live.len() + 2 >= batch.len(),
            "{device}: {} windows streamed, {} replayed",
            live.len(),
            batch.len()
        );
        for (i, ((end, score, version), (want_end, _))) in live.iter().zip(batch).enumerate() {
            assert_eq!(end, want_end, "{device}: window {i}");
            let want = score_of(version, i, device);
            assert!(
                (score - want).abs() <= 1e-9 * want.abs().max(1e-12),
                "{device} window {i} (v{version}): streamed {score}, replayed {want}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_scores_the_replays_windows_and_publishes_and_saves_its_alerts() {
    let s = setup().await;
    let readings = unseen(&s.config).await;
    let scorer = s.scorer(CHAMPION).await;
    let bus = bus().await;
    let store = s.live_store().await;
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let detector = Detector::new(bus.clone(), store.clone(), settings(None)).with_observer(tx);
    let stats = stream(detector, scorer.clone(), &bus, &readings).await;

    let (streamed, alerts, points) = drain_points(&mut events);
    // Every scored window is in anomaly_scores: its end, score, threshold, top sensor, version.
    let windows = stats.windows_scored.load(Ordering::Relaxed);
    assert_eq!(points.len() as u64, windows);
    assert_eq!(stats.scores_saved.load(Ordering::Relaxed), windows);
    let mut expected = points;
    expected.sort_by(|a, b| (a.device.as_str(), a.ts_ns).cmp(&(b.device.as_str(), b.ts_ns)));
    assert_eq!(store.scores(&ScoreQuery::all()).await.unwrap(), expected);
    assert!(expected.iter().all(|p| p.model_version == "1" && p.threshold == scorer.threshold()));
    assert!(expected.iter().any(|p| p.top_sensor != expected[0].top_sensor), "top sensors vary");
    assert!(expected.iter().any(|p| p.score > p.threshold), "some windows above the threshold");

    let (batch, replay_alerts) = replayed(s.dir.path(), scorer, &readings).await;
    assert_same_windows(&streamed, &batch, |_, i, device| batch[device][i].1);
    assert_eq!(stats.late.load(Ordering::Relaxed), 0);
    assert_eq!(stats.undecodable.load(Ordering::Relaxed), 0);
    assert_eq!(stats.model_swaps.load(Ordering::Relaxed), 0);
    assert!(stats.latency.count() > 0);

    // The same alerts as the replay, except that the replay resolves what is open at its end.
    assert!(alerts.len() >= 10, "{} alert messages", alerts.len());
    let key = |a: &Alert| (a.alert_id.clone(), a.state, a.window_end_ns, a.score.to_bits());
    let replay_keys: Vec<_> = replay_alerts.iter().map(key).collect();
    for a in &alerts {
        assert!(replay_keys.contains(&key(a)), "not in the replay: {a:?}");
    }
    let open_at_end = replay_alerts.len() - alerts.len();
    assert!(open_at_end <= 3, "{open_at_end} alert messages of the replay missing");

    // Every message is on the alerts topic, keyed by device, as alert v1.
    let mut consumer = bus.subscribe(ALERTS, "check").await.unwrap();
    let mut on_topic = Vec::new();
    while on_topic.len() < alerts.len() {
        let records = consumer.poll(1024, Duration::from_secs(2)).await.unwrap();
        assert!(!records.is_empty(), "{} of {} on the topic", on_topic.len(), alerts.len());
        for r in records {
            let m: AlertV1 = serde_json::from_slice(&r.payload).unwrap();
            assert_eq!(&r.key[..], m.device.as_bytes());
            on_topic.push(m);
        }
    }
    let mut want: Vec<AlertV1> = alerts.iter().map(AlertV1::from).collect();
    let order = |m: &AlertV1| (m.alert_id.clone(), m.state as u8, m.detected_at.clone());
    want.sort_by_key(order);
    on_topic.sort_by_key(order);
    assert_eq!(on_topic, want);

    // The table holds each alert's latest state.
    let stored = store.anomalies(&AnomalyQuery::all()).await.unwrap();
    let mut latest: BTreeMap<String, &Alert> = BTreeMap::new();
    for a in &alerts {
        latest.insert(a.alert_id.clone(), a);
    }
    assert_eq!(stored.len(), latest.len());
    for a in &stored {
        assert_eq!(a, latest[&a.alert_id]);
    }
    assert!(stored.iter().any(|a| a.state == AlertState::Resolved));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promoting_a_new_version_swaps_the_model_between_batches_with_no_window_lost_or_repeated() {
    let s = setup().await;
    // Version 2: another seed, so its scores differ from version 1's.
    let train_store = SqliteStore::open(&s.dir.path().join("train.db")).unwrap();
    let mut second = request(&s.config, 99);
    second.config.promote = sentio_config::Promote::Never;
    let v2 = train_once(&train_store, &s.tracking, second).await.unwrap();
    assert_eq!(v2.version, 2);
    let name = s.config.train.model_name.clone();
    assert_eq!(s.tracking.get_alias(&name, CHAMPION).await.unwrap().unwrap().version, 1);

    let readings = unseen(&s.config).await;
    let half = readings.len() / 2;
    let models = s.dir.path().join("models");
    let v1 = s.scorer(CHAMPION).await;
    let follow = Follow {
        tracking: s.tracking.clone(),
        names: [(sentio_core::profile::PUMP.to_owned(), name.clone())].into(),
        alias: CHAMPION.into(),
        cache: models.clone(),
        threads: 2,
        interval: Duration::from_millis(200),
    };
    let bus = bus().await;
    let store = s.live_store().await;
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let detector =
        Detector::new(bus.clone(), store.clone(), settings(Some(follow))).with_observer(tx);
    let stats = detector.stats();
    let stop = CancellationToken::new();
    let task = tokio::spawn(detector.run(vec![v1.clone()], stop.clone()));

    publish(&bus, &readings[..half]).await;
    wait_for(&stats, half as u64).await;
    let (before, _) = drain(&mut events);
    s.tracking.set_alias(&name, CHAMPION, 2).await.unwrap();
    for _ in 0..300 {
        if stats.model_swaps.load(Ordering::Relaxed) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stats.model_swaps.load(Ordering::Relaxed), 1, "the detector took version 2");
    assert_eq!(stats.model().unwrap().version, "2");
    publish(&bus, &readings[half..]).await;
    wait_for(&stats, readings.len() as u64).await;
    stop.cancel();
    task.await.unwrap().unwrap();
    let (after, _) = drain(&mut events);

    assert!(before.values().flatten().all(|w| w.1.is_finite() && w.2 == "1"));
    assert!(after.values().flatten().all(|w| w.2 == "2"), "only version 2 after the swap");
    let mut streamed = before.clone();
    for (device, ws) in after {
        streamed.entry(device).or_default().extend(ws);
    }
    let v2 = s.scorer("2").await;
    let (by_v1, _) = replayed(s.dir.path(), v1, &readings).await;
    let (by_v2, _) = replayed(s.dir.path(), v2, &readings).await;
    // Each window once, in order, scored by the model in use when it completed.
    assert_same_windows(&streamed, &by_v1, |version, i, device| {
        if version == "1" { by_v1[device][i].1 } else { by_v2[device][i].1 }
    });
    assert!(before.values().map(Vec::len).sum::<usize>() > 1_000);
    assert!(streamed.values().map(Vec::len).sum::<usize>() > 2 * 1_000);
}

/// With the readings of an already scored first part in the store (as after a restart, or after
/// the demo's replay), the stream scores from the first live frame on: exactly the replay's
/// windows that end after that part, none of the part's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_detector_reads_the_window_before_its_first_reading_from_the_store() {
    let s = setup().await;
    let readings = unseen(&s.config).await;
    let scorer = s.scorer(CHAMPION).await;
    let split = START + 30 * 60 * NANOS_PER_SEC;
    let (before, live): (Vec<Reading>, Vec<Reading>) =
        readings.iter().cloned().partition(|r| r.ts_ns < split);
    let bus = bus().await;
    let store = s.live_store().await;
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    store.insert_readings(&before).await.unwrap();
    let detector = Detector::new(bus.clone(), store.clone(), settings(None)).with_observer(tx);
    let stats = stream(detector, scorer.clone(), &bus, &live).await;

    let (streamed, _) = drain(&mut events);
    let (batch, _) = replayed(s.dir.path(), scorer, &readings).await;
    // The first frame after the split completes the window ending one cadence after it.
    let after: BTreeMap<DeviceId, Vec<(i64, f64)>> = batch
        .into_iter()
        .map(|(d, ws)| (d, ws.into_iter().filter(|(end, _)| *end > split).collect()))
        .collect();
    for (device, ws) in &after {
        assert_eq!(ws[0].0, split + NANOS_PER_SEC, "{device}: the replay's first live window");
        assert_eq!(streamed[device][0].0, ws[0].0, "{device}: the stream's first window");
    }
    assert_same_windows(&streamed, &after, |_, i, device| after[device][i].1);
    assert_eq!(stats.late.load(Ordering::Relaxed), 0);
}

/// With `save_scores = false` the stream saves no score; a replay's scores are saved (in calls of
/// `SCORES_PER_CALL`) and overwrite what is stored for the same windows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scores_are_saved_only_when_asked_and_a_replay_saves_its_own() {
    let s = setup().await;
    let readings = unseen(&s.config).await;
    let scorer = s.scorer(CHAMPION).await;
    let bus = bus().await;
    let store = s.live_store().await;
    let quiet = StreamSettings { save_scores: false, ..settings(None) };
    let detector = Detector::new(bus.clone(), store.clone(), quiet);
    let stats = stream(detector, scorer.clone(), &bus, &readings).await;
    assert!(stats.windows_scored.load(Ordering::Relaxed) > 1_000);
    assert_eq!(stats.scores_saved.load(Ordering::Relaxed), 0);
    assert!(store.scores(&ScoreQuery::all()).await.unwrap().is_empty());

    // A stale row for a window the replay scores: the replay overwrites it.
    store.insert_readings(&readings).await.unwrap();
    let end = START + MINUTES * 60 * NANOS_PER_SEC;
    let found =
        replay(store.as_ref(), scorer.clone(), &[], START, end, 1, AlertSettings::default())
            .await
            .unwrap();
    let (device, first) =
        found.scores.iter().next().map(|(d, w)| (d.clone(), w[0].clone())).unwrap();
    let stale = ScorePoint {
        device: device.clone(),
        ts_ns: first.end_ns,
        score: 1e6,
        threshold: 1.0,
        top_sensor: SensorKind::Humidity.into(),
        model_version: "0".into(),
    };
    store.save_scores(&[stale]).await.unwrap();

    let windows: usize = found.scores.values().map(Vec::len).sum();
    assert!(windows > SCORES_PER_CALL, "{windows} windows: more than one call");
    let saved = save_replay_scores(store.as_ref(), &found.scores, &scorer).await.unwrap();
    assert_eq!(saved, windows as u64);
    let expected: Vec<ScorePoint> = found
        .scores
        .iter()
        .flat_map(|(d, ws)| ws.iter().map(move |w| (d, w)))
        .map(|(d, w)| score_point(d, w, scorer.threshold(), scorer.model()).unwrap())
        .collect();
    assert_eq!(store.scores(&ScoreQuery::all()).await.unwrap(), expected);
    assert_eq!(expected[0].ts_ns, first.end_ns);
    assert_eq!(expected[0].model_version, "1");
}

/// A detector whose first group member is never assigned anything leaves and joins again after
/// `rejoin_after`, then scores the same windows as the replay, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detector_never_assigned_partitions_joins_again_and_scores_every_window() {
    let s = setup().await;
    let readings = unseen(&s.config).await;
    let scorer = s.scorer(CHAMPION).await;
    let memory = bus().await;
    let stalling = Arc::new(common::StallingBus::new(memory.clone(), 1));
    let store = s.live_store().await;
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let quick = StreamSettings { rejoin_after: Duration::from_millis(200), ..settings(None) };
    let detector = Detector::new(stalling.clone(), store, quick).with_observer(tx);
    let stats = stream(detector, scorer.clone(), &memory, &readings).await;
    assert_eq!((stalling.subscribes(), stalling.departed()), (2, 1));
    let (streamed, _) = drain(&mut events);
    let (batch, _) = replayed(s.dir.path(), scorer, &readings).await;
    assert_same_windows(&streamed, &batch, |_, i, device| batch[device][i].1);
    assert_eq!(stats.readings.load(Ordering::Relaxed), readings.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_detrends_and_smooths_scores_the_same_live_as_in_a_replay() {
    // Every channel detrended over two minutes, scores smoothed over 5 training strides (40
    // frames): per-device state in the stream, the same computation in the replay.
    let dir = tempfile::tempdir().unwrap();
    let mut config = config();
    config.train.detrend = sentio_config::DetrendChannels::All;
    config.train.detrend_window = 120;
    config.train.smooth = 5;
    let store = SqliteStore::open(&dir.path().join("train.db")).unwrap();
    store.migrate().await.unwrap();
    history(&store, &config).await;
    let tracking: Arc<dyn Tracking> = Arc::new(LocalTracking::open(&dir.path().join("t")).unwrap());
    train_once(&store, &tracking, request(&config, config.train.seed)).await.unwrap();
    let name = &config.train.model_name;
    let models = dir.path().join("models");
    let scorer =
        Arc::new(Scorer::resolve(tracking.as_ref(), name, CHAMPION, &models, 2).await.unwrap());
    let post = scorer.post();
    assert_eq!((post.detrend.len(), post.detrend_frames, post.smooth), (4, 120, 5));

    let readings = unseen(&config).await;
    let bus = bus().await;
    let live = Arc::new(SqliteStore::open(&dir.path().join("live.db")).unwrap());
    live.migrate().await.unwrap();
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let detector = Detector::new(bus.clone(), live, settings(None)).with_observer(tx);
    stream(detector, scorer.clone(), &bus, &readings).await;
    let (streamed, alerts) = drain(&mut events);
    let (batch, replay_alerts) = replayed(dir.path(), scorer.clone(), &readings).await;
    assert_same_windows(&streamed, &batch, |_, i, device| batch[device][i].1);
    assert!(!alerts.is_empty(), "the unseen faults raise alerts");
    let key = |a: &Alert| (a.alert_id.clone(), a.state, a.window_end_ns, a.score.to_bits());
    let replay_keys: Vec<_> = replay_alerts.iter().map(key).collect();
    for a in &alerts {
        assert!(replay_keys.contains(&key(a)), "not in the replay: {a:?}");
    }

    // Smoothing is on: the same model with its card's smoothing taken out scores the windows
    // differently.
    let edited = |what: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let copy = dir.path().join(what);
        std::fs::create_dir_all(&copy).unwrap();
        for entry in std::fs::read_dir(models.join(format!("{name}-1"))).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
        }
        let card_path = copy.join("sentio-model.json");
        let mut card: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&card_path).unwrap()).unwrap();
        edit(&mut card);
        std::fs::write(&card_path, serde_json::to_vec(&card).unwrap()).unwrap();
        Arc::new(Scorer::load(&copy, name, what, 2).unwrap())
    };
    let plain = edited("unsmoothed", &|card| {
        assert_eq!(card["post"]["smooth"], 5);
        card["post"]["smooth"] = 1.into();
    });
    let (unsmoothed, _) = replayed(dir.path(), plain, &readings).await;
    let device = batch.keys().next().unwrap();
    let differ = batch[device].iter().zip(&unsmoothed[device]).filter(|(a, b)| a.1 != b.1).count();
    assert!(differ > batch[device].len() / 2, "{differ} of {} windows differ", batch[device].len());

    // Column weights (`train.detrend_weight` times the profile's `score_weight`) are applied
    // alike live and in the replay, and change the scores. A column of weight 0 (pressure) has
    // no share in any alert, live or replayed.
    let weighted = edited("weighted", &|card| {
        assert!(card["post"].get("weights").is_none(), "weight 1 writes no weights");
        card["post"]["weights"] = serde_json::json!([1.0, 0.25, 0.0, 0.5]);
    });
    let bus = self::bus().await;
    let live = Arc::new(SqliteStore::open(&dir.path().join("weighted.db")).unwrap());
    live.migrate().await.unwrap();
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let detector = Detector::new(bus.clone(), live, settings(None)).with_observer(tx);
    stream(detector, weighted.clone(), &bus, &readings).await;
    let (streamed, weighted_alerts) = drain(&mut events);
    let (weighed, replayed_alerts) = replayed(dir.path(), weighted, &readings).await;
    assert_same_windows(&streamed, &weighed, |_, i, device| weighed[device][i].1);
    assert!(!weighted_alerts.is_empty() && !replayed_alerts.is_empty());
    let pressure = sentio_core::Channel::from(sentio_core::SensorKind::Pressure);
    for a in weighted_alerts.iter().chain(&replayed_alerts) {
        let share = a.sensor_share.iter().find(|(c, _)| c == &pressure).map_or(0.0, |s| s.1);
        assert_eq!(share, 0.0, "an unscored channel named in {a:?}");
    }
    let differ = batch[device].iter().zip(&weighed[device]).filter(|(a, b)| a.1 != b.1).count();
    assert!(differ > batch[device].len() / 2, "{differ} of {} windows differ", batch[device].len());
}
