//! Helpers shared by the training and detection tests: a small, fast configuration and simulated
//! history in a store.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use sentio_config::Config;
use sentio_core::time::NANOS_PER_SEC;
use sentio_core::{DecodeLimits, Reading, decode_reading};
use sentio_services::simulator::{Output, Simulator};
use sentio_services::train::fit::Silent;
use sentio_services::train::{TrainOutcome, TrainRequest, train};
use sentio_store::ReadingStore;
use sentio_store::sqlite::SqliteStore;
use sentio_tracking::Tracking;
use tokio_util::sync::CancellationToken;

/// 2026-11-24T00:00:00Z
pub const START: i64 = 1_795_478_400 * NANOS_PER_SEC;
pub const HOURS: i64 = 3;

/// An in-memory `Write` the test can read back.
#[derive(Clone, Default)]
pub struct Shared(pub Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// 3 devices, a small model (window 16, hidden 12, bottleneck 4), 3 epochs.
pub fn config() -> Config {
    let mut c = Config::defaults().unwrap();
    c.simulator.devices = 3;
    c.simulator.seed = 11;
    c.simulator.anomalies.rate_per_hour = 2.0;
    let t = &mut c.train;
    t.window = 16;
    t.stride = 8;
    t.hidden = 12;
    t.bottleneck = 4;
    t.epochs = 3;
    t.patience = 2;
    t.batch_size = 32;
    t.max_train_windows = 600;
    t.threads = 2;
    t.learning_rate = 0.005;
    c
}

/// The simulator's readings of `[START, START + hours)` with `config.simulator`.
pub async fn simulate(config: &Config, hours: i64) -> Vec<Reading> {
    simulate_until(config, START + hours * 3_600 * NANOS_PER_SEC).await
}

/// The simulator's readings of `[START, to)` with `config.simulator`, written as lines and
/// decoded back, as a consumer would see them.
pub async fn simulate_until(config: &Config, to: i64) -> Vec<Reading> {
    let out = Shared::default();
    let mut sim =
        Simulator::new(&config.simulator, Output::Lines(Box::new(out.clone())), None).unwrap();
    sim.backfill(START, to, &CancellationToken::new(), |_| {}).await.unwrap();
    sim.finish().await.unwrap();
    let bytes = out.0.lock().unwrap().clone();
    let limits = DecodeLimits { max_future_ns: i64::MAX / 4, ..DecodeLimits::default() };
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| decode_reading(l, &limits, to).unwrap())
        .collect()
}

/// [`HOURS`] of simulated history, with injected anomalies, in `store`.
pub async fn history(store: &SqliteStore, config: &Config) {
    let readings = simulate(config, HOURS).await;
    assert!(readings.iter().any(|r| r.injected.is_some()), "the history has injected anomalies");
    store.insert_readings(&readings).await.unwrap();
}

/// `train` with a fresh cancellation token and no progress output.
pub async fn train_once(
    store: &SqliteStore,
    tracking: &Arc<dyn Tracking>,
    request: TrainRequest,
) -> anyhow::Result<TrainOutcome> {
    train(store, tracking.clone(), request, CancellationToken::new(), Box::new(Silent)).await
}

/// A model trained on all of [`HOURS`] of seed-11 history (12 epochs, no window cap), registered
/// and promoted in a local tracking directory under `dir`; returns its configuration and tracking.
pub async fn trained_model(dir: &std::path::Path, experiment: &str) -> (Config, Arc<dyn Tracking>) {
    let mut config = config();
    config.train.epochs = 12;
    config.train.patience = 12;
    config.train.max_train_windows = 0;
    let store = SqliteStore::open(&dir.join("train.db")).unwrap();
    store.migrate().await.unwrap();
    history(&store, &config).await;
    let tracking: Arc<dyn Tracking> =
        Arc::new(sentio_tracking::LocalTracking::open(&dir.join("t")).unwrap());
    let request = TrainRequest {
        config: config.train.clone(),
        experiment: experiment.into(),
        from_ns: Some(START),
        to_ns: Some(START + HOURS * 3_600 * NANOS_PER_SEC),
    };
    train_once(&store, &tracking, request).await.unwrap();
    (config, tracking)
}
