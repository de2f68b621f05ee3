#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Another kind of machine beside the pump: a profile with its own channels trains its own
//! registered model on its own devices, a replay names its channels, and one streaming detector
//! serves both profiles, each device with its own profile's model.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::{HOURS, START, config, simulate, train_once};
use sentio_bus::Bus;
use sentio_bus::memory::MemoryBus;
use sentio_core::time::NANOS_PER_SEC;
use sentio_core::{
    AnomalyKind, Channel, ChannelSpec, DecodeLimits, DeviceId, Profile, Profiles, Reading,
    SensorKind, Unit, encode_reading,
};
use sentio_services::detect::service::{DetectEvent, Detector, StreamSettings};
use sentio_services::detect::{AlertSettings, Scorer, replay};
use sentio_services::train::{CHAMPION, TrainRequest};
use sentio_store::ReadingStore;
use sentio_store::sqlite::SqliteStore;
use sentio_tracking::{LocalTracking, Tracking};
use tokio_util::sync::CancellationToken;

const S: i64 = NANOS_PER_SEC;
const COMPRESSOR: &str = "compressor";
/// The compressor's channels with their units, in the profile's (the model's) order.
const CHANNELS: [(&str, &str); 3] = [("flow", "m3/h"), ("current", "A"), ("vibration_x", "mm/s")];
/// A flow spike on comp-1 at this second of the history, for `SPIKE_S` seconds.
const SPIKE_AT_S: i64 = 2 * 3_600 + 40 * 60;
const SPIKE_S: i64 = 90;

fn profiles() -> Profiles {
    let compressor = Profile {
        name: COMPRESSOR.into(),
        channels: CHANNELS
            .iter()
            .map(|(name, unit)| ChannelSpec {
                name: Channel::new(name).unwrap(),
                unit: Unit::new(unit).unwrap(),
                range: None,
                score_weight: sentio_core::profile::DEFAULT_SCORE_WEIGHT,
            })
            .collect(),
        devices: vec!["comp-*".into()],
    };
    Profiles::new(vec![Profile::pump(vec!["*".into()]), compressor]).unwrap()
}

/// A deterministic pseudo-random number in [-1, 1) for (device, channel, second).
fn noise(d: i64, c: usize, t: i64) -> f64 {
    let mut x = (d as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ (c as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9)
        ^ (t as u64).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    x = x.wrapping_mul(0xd6e8_feb8_6659_fd93);
    x ^= x >> 32;
    (x >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

/// Two compressors over `[START, START + seconds)`, one reading per channel a second: flow,
/// current and vibration follow one load cycle. comp-1's flow spikes at [`SPIKE_AT_S`], tagged.
fn compressors(seconds: i64) -> Vec<Reading> {
    let mut out = Vec::new();
    for d in 1..=2i64 {
        let device = DeviceId::new(&format!("comp-{d}")).unwrap();
        for t in 0..seconds {
            let load = (2.0 * std::f64::consts::PI * t as f64 / 600.0 + d as f64).sin();
            let spike = d == 1 && (SPIKE_AT_S..SPIKE_AT_S + SPIKE_S).contains(&t);
            for (c, (name, unit)) in CHANNELS.iter().enumerate() {
                let (level, swing, jitter) =
                    [(100.0, 30.0, 1.0), (20.0, 5.0, 0.2), (2.0, 0.5, 0.05)][c];
                let mut value = level + swing * load + jitter * noise(d, c, t);
                if spike && *name == "flow" {
                    value += 120.0;
                }
                out.push(Reading {
                    device: device.clone(),
                    sensor: Channel::new(name).unwrap(),
                    unit: Unit::new(unit).unwrap(),
                    ts_ns: START + t * S,
                    value,
                    seq: t as u64,
                    injected: (spike && *name == "flow").then_some(AnomalyKind::Spike),
                    ts_source: sentio_core::TsSource::Event,
                });
            }
        }
    }
    out
}

fn request(config: &sentio_config::Config, profile: &str) -> TrainRequest {
    TrainRequest {
        config: config.train.clone(),
        profiles: profiles(),
        profile: profile.into(),
        experiment: "profiles".into(),
        from_ns: Some(START),
        to_ns: Some(START + 2 * 3_600 * S),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_profile_has_its_own_model_and_one_detector_serves_both() {
    let dir = tempfile::tempdir().unwrap();
    let config = config();
    let store = SqliteStore::open(&dir.path().join("store.db")).unwrap();
    store.migrate().await.unwrap();
    let pumps = simulate(&config, HOURS).await;
    let comps = compressors(HOURS * 3_600);
    store.insert_readings(&pumps).await.unwrap();
    store.insert_readings(&comps).await.unwrap();
    let tracking: Arc<dyn Tracking> = Arc::new(LocalTracking::open(&dir.path().join("t")).unwrap());

    // Each profile trains on its own devices and channels, into its own registered model.
    let pump = train_once(&store, &tracking, request(&config, "pump")).await.unwrap();
    assert_eq!(pump.model_name, config.train.model_name);
    assert_eq!(pump.card.profile, "pump");
    assert_eq!(pump.card.sensors, SensorKind::ALL.map(|k| k.as_str().to_owned()));
    assert!(pump.card.data.devices.iter().all(|d| !d.starts_with("comp-")), "{:?}", pump.card.data);
    let comp = train_once(&store, &tracking, request(&config, COMPRESSOR)).await.unwrap();
    assert_eq!(comp.model_name, "sentio-compressor");
    assert_eq!((comp.card.profile.as_str(), comp.card.features), (COMPRESSOR, 3));
    assert_eq!(comp.card.sensors, CHANNELS.map(|(c, _)| c.to_owned()));
    assert_eq!(comp.card.data.devices, ["comp-1", "comp-2"]);
    assert_eq!(comp.card.calibration.sensor_mean.len(), 3);
    for name in [&pump.model_name, &comp.model_name] {
        assert_eq!(tracking.get_alias(name, CHAMPION).await.unwrap().unwrap().version, 1);
    }

    // A replay of the unseen hour finds the spike and names the channel it was on.
    let cache = dir.path().join("models");
    let load = |name: String| {
        let (tracking, cache) = (tracking.clone(), cache.clone());
        async move {
            Arc::new(Scorer::resolve(tracking.as_ref(), &name, CHAMPION, &cache, 2).await.unwrap())
        }
    };
    let comp_scorer = load(comp.model_name.clone()).await;
    let pump_scorer = load(pump.model_name.clone()).await;
    assert_eq!(comp_scorer.profile(), COMPRESSOR);
    let (from, to) = (START + 2 * 3_600 * S, START + HOURS * 3_600 * S);
    let devices: Vec<DeviceId> = ["comp-1", "comp-2"].map(|d| DeviceId::new(d).unwrap()).to_vec();
    let settings = AlertSettings { open_after: Duration::ZERO, ..AlertSettings::default() };
    let found = replay(&store, comp_scorer.clone(), &devices, from, to, 1, settings).await.unwrap();
    let spike = (START + SPIKE_AT_S * S, START + (SPIKE_AT_S + SPIKE_S) * S);
    let over_spike: Vec<_> = found
        .alerts
        .iter()
        .filter(|a| a.device.as_str() == "comp-1")
        .filter(|a| a.window_start_ns <= spike.1 && a.window_end_ns >= spike.0)
        .collect();
    assert!(!over_spike.is_empty(), "no alert over the flow spike: {:?}", found.alerts);
    for a in &over_spike {
        let names: Vec<&str> = a.sensor_share.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(names, ["current", "flow", "vibration_x"], "display order");
        assert_eq!(a.top_sensor().map(Channel::as_str), Some("flow"), "{a:?}");
        assert_eq!(a.model_name, "sentio-compressor");
    }

    // One detector, both models: each device is scored by its own profile's model.
    let bus = Arc::new(MemoryBus::new(1 << 20));
    bus.create_topic("sensor-data", 4).await.unwrap();
    bus.create_topic("anomaly-alerts", 4).await.unwrap();
    let live = Arc::new(SqliteStore::open(&dir.path().join("live.db")).unwrap());
    live.migrate().await.unwrap();
    let stream_settings = StreamSettings {
        readings_topic: "sensor-data".into(),
        alerts_topic: "anomaly-alerts".into(),
        group: "detect".into(),
        grace: Duration::from_secs(2),
        stride: 1,
        batch_windows: 256,
        alerts: settings,
        profiles: profiles(),
        sensor_weights: BTreeMap::new(),
        device_threshold_factor: BTreeMap::new(),
        limits: DecodeLimits { max_future_ns: i64::MAX / 4, ..DecodeLimits::default() },
        follow: None,
        save_scores: false,
        rejoin_after: Duration::from_secs(60),
    };
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let detector = Detector::new(bus.clone(), live, stream_settings).with_observer(tx);
    let stats = detector.stats();
    let stop = CancellationToken::new();
    let task = tokio::spawn(detector.run(vec![pump_scorer, comp_scorer], stop.clone()));
    let window = START + (SPIKE_AT_S - 300) * S..START + (SPIKE_AT_S + 600) * S;
    let mut live_readings: Vec<&Reading> =
        pumps.iter().chain(&comps).filter(|r| window.contains(&r.ts_ns)).collect();
    live_readings.sort_by_key(|r| r.ts_ns);
    let records: Vec<(Bytes, Bytes)> = live_readings
        .iter()
        .map(|r| (Bytes::from(r.device.to_string()), Bytes::from(encode_reading(r))))
        .collect();
    for chunk in records.chunks(4096) {
        bus.publish_batch("sensor-data", chunk.to_vec()).await.unwrap();
    }
    for _ in 0..600 {
        if stats.readings.load(Ordering::Relaxed) >= records.len() as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    task.await.unwrap().unwrap();

    let models = stats.models();
    assert_eq!(models.keys().map(String::as_str).collect::<Vec<_>>(), ["compressor", "pump"]);
    let mut scored_by: BTreeMap<(bool, String), u64> = BTreeMap::new();
    let mut live_alerts = Vec::new();
    while let Ok(e) = events.try_recv() {
        match e {
            DetectEvent::Scored { device, model, window, .. } => {
                assert_eq!(window.sensor_error.len(), model.sensors.len());
                *scored_by
                    .entry((device.as_str().starts_with("comp-"), model.name))
                    .or_default() += 1;
            }
            DetectEvent::Alert(a) => live_alerts.push(a),
        }
    }
    let names: Vec<&(bool, String)> = scored_by.keys().collect();
    assert_eq!(
        names,
        [&(false, config.train.model_name.clone()), &(true, "sentio-compressor".to_owned())],
        "pumps by the pump's model, compressors by theirs: {scored_by:?}"
    );
    let spike_alert = live_alerts
        .iter()
        .find(|a| a.device.as_str() == "comp-1" && a.window_end_ns >= spike.0)
        .unwrap_or_else(|| panic!("no live alert over the spike: {live_alerts:?}"));
    assert_eq!(spike_alert.top_sensor().map(Channel::as_str), Some("flow"));
}
