//! Helpers shared by the training and detection tests: a small, fast configuration and simulated
//! history in a store; a bus whose first group members are never assigned anything; and a store
//! that writes slowly and watches how it is written to.
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
        profiles: config.profiles().unwrap(),
        profile: sentio_core::profile::PUMP.into(),
        experiment: experiment.into(),
        from_ns: Some(START),
        to_ns: Some(START + HOURS * 3_600 * NANOS_PER_SEC),
    };
    train_once(&store, &tracking, request).await.unwrap();
    (config, tracking)
}

/// A bus like the memory bus it wraps, except that the first `stalled` subscriptions give a member
/// that is never assigned a partition (as a broker that formed a generation with an empty
/// assignment would), however long it waits. With [`StallingBus::revoking`], the first such
/// member is assigned the partitions of some records, hands them out once, then loses them all.
pub struct StallingBus {
    pub inner: Arc<sentio_bus::memory::MemoryBus>,
    stalled: std::sync::atomic::AtomicUsize,
    first: Mutex<Vec<sentio_bus::Record>>,
    /// Subscriptions so far.
    pub subscribes: std::sync::atomic::AtomicUsize,
    /// Stalled members that were dropped (left the group).
    pub departed: Arc<std::sync::atomic::AtomicUsize>,
}

impl StallingBus {
    pub fn new(inner: Arc<sentio_bus::memory::MemoryBus>, stalled: usize) -> Self {
        StallingBus {
            inner,
            stalled: stalled.into(),
            first: Mutex::default(),
            subscribes: 0.into(),
            departed: Arc::default(),
        }
    }

    /// The first stalled member delivers `records` (taken from the wrapped bus, so that they
    /// agree with it) on its first poll, then holds nothing.
    pub fn revoking(self, records: Vec<sentio_bus::Record>) -> Self {
        *self.first.lock().unwrap() = records;
        self
    }

    pub fn subscribes(&self) -> usize {
        self.subscribes.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn departed(&self) -> usize {
        self.departed.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl sentio_bus::Bus for StallingBus {
    async fn create_topic(&self, topic: &str, partitions: u32) -> Result<(), sentio_bus::BusError> {
        self.inner.create_topic(topic, partitions).await
    }

    async fn publish_batch(
        &self,
        topic: &str,
        records: Vec<(bytes::Bytes, bytes::Bytes)>,
    ) -> Result<Vec<sentio_bus::Delivery>, sentio_bus::BusError> {
        self.inner.publish_batch(topic, records).await
    }

    async fn subscribe(
        &self,
        topic: &str,
        group: &str,
    ) -> Result<Box<dyn sentio_bus::Consumer>, sentio_bus::BusError> {
        use std::sync::atomic::Ordering::SeqCst;
        self.subscribes.fetch_add(1, SeqCst);
        let stall = self.stalled.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1)).is_ok();
        if stall {
            return Ok(Box::new(Unassigned {
                topic: topic.to_owned(),
                pending: std::mem::take(&mut *self.first.lock().unwrap()),
                held: vec![],
                departed: self.departed.clone(),
            }));
        }
        self.inner.subscribe(topic, group).await
    }

    async fn end_offsets(
        &self,
        topic: &str,
    ) -> Result<std::collections::BTreeMap<u32, u64>, sentio_bus::BusError> {
        self.inner.end_offsets(topic).await
    }
}

/// A group member that holds no partition, except those of `pending` until the poll after the one
/// that hands them out (a rebalance then takes them all).
struct Unassigned {
    topic: String,
    pending: Vec<sentio_bus::Record>,
    held: Vec<u32>,
    departed: Arc<std::sync::atomic::AtomicUsize>,
}

impl Drop for Unassigned {
    fn drop(&mut self) {
        self.departed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl sentio_bus::Consumer for Unassigned {
    async fn poll(
        &mut self,
        _max: usize,
        timeout: std::time::Duration,
    ) -> Result<Vec<sentio_bus::Record>, sentio_bus::BusError> {
        if self.pending.is_empty() {
            self.held.clear();
            tokio::time::sleep(timeout).await;
            return Ok(vec![]);
        }
        self.held = self.assignment();
        Ok(std::mem::take(&mut self.pending))
    }

    async fn commit(
        &mut self,
        next_offsets: &std::collections::BTreeMap<u32, u64>,
    ) -> Result<(), sentio_bus::BusError> {
        match next_offsets.keys().next() {
            None => Ok(()),
            Some(&partition) => {
                Err(sentio_bus::BusError::NotAssigned { topic: self.topic.clone(), partition })
            }
        }
    }

    async fn seek(&mut self, partition: u32, _offset: u64) -> Result<(), sentio_bus::BusError> {
        Err(sentio_bus::BusError::NotAssigned { topic: self.topic.clone(), partition })
    }

    fn assignment(&self) -> Vec<u32> {
        let mut partitions: Vec<u32> =
            self.pending.iter().map(|r| r.partition).chain(self.held.iter().copied()).collect();
        partitions.sort_unstable();
        partitions.dedup();
        partitions
    }
}

/// A store like the one it wraps, except that every `write_batch` takes `delay` longer and is
/// watched: how many ran at once, which offsets each covered, and how far the ETL of `etl` had
/// consumed when each began and ended.
pub struct SlowStore {
    pub inner: Arc<dyn ReadingStore>,
    delay: std::time::Duration,
    writing: std::sync::atomic::AtomicBool,
    /// Writes that began while another was running.
    pub overlapping: std::sync::atomic::AtomicUsize,
    /// Per write: the batch's first offset and next offset per partition, and the ETL's
    /// `consumed` count at its start and end.
    pub writes: Mutex<Vec<SlowWrite>>,
    pub etl: std::sync::OnceLock<Arc<sentio_services::etl::EtlStats>>,
}

#[derive(Debug, Clone)]
pub struct SlowWrite {
    pub offsets: std::collections::BTreeMap<u32, (u64, u64)>,
    pub consumed: (u64, u64),
}

impl SlowStore {
    pub fn new(inner: Arc<dyn ReadingStore>, delay: std::time::Duration) -> Self {
        SlowStore {
            inner,
            delay,
            writing: false.into(),
            overlapping: 0.into(),
            writes: Mutex::default(),
            etl: std::sync::OnceLock::new(),
        }
    }

    fn consumed(&self) -> u64 {
        self.etl.get().map_or(0, |s| s.snapshot().consumed)
    }
}

#[async_trait::async_trait]
impl ReadingStore for SlowStore {
    async fn migrate(&self) -> Result<Vec<sentio_store::Migration>, sentio_store::StoreError> {
        self.inner.migrate().await
    }

    async fn applied_migrations(
        &self,
    ) -> Result<Vec<sentio_store::Migration>, sentio_store::StoreError> {
        self.inner.applied_migrations().await
    }

    async fn write_batch(
        &self,
        batch: &sentio_store::IngestBatch,
    ) -> Result<sentio_store::BatchOutcome, sentio_store::StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.writing.swap(true, SeqCst) {
            self.overlapping.fetch_add(1, SeqCst);
        }
        let before = self.consumed();
        tokio::time::sleep(self.delay).await;
        let outcome = self.inner.write_batch(batch).await;
        let mut offsets = std::collections::BTreeMap::new();
        let sources = batch
            .readings
            .iter()
            .map(|(s, _)| *s)
            .chain(batch.dead_letters.iter().map(|d| d.source));
        for s in sources {
            let first = &mut offsets.entry(s.partition).or_insert((s.offset, 0)).0;
            *first = (*first).min(s.offset);
        }
        for (p, next) in &batch.next_offsets {
            offsets.entry(*p).or_insert((*next, 0)).1 = *next;
        }
        self.writes
            .lock()
            .unwrap()
            .push(SlowWrite { offsets, consumed: (before, self.consumed()) });
        self.writing.store(false, SeqCst);
        outcome
    }

    async fn committed_offsets(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<std::collections::BTreeMap<u32, u64>, sentio_store::StoreError> {
        self.inner.committed_offsets(group, topic).await
    }

    async fn insert_readings(&self, readings: &[Reading]) -> Result<u64, sentio_store::StoreError> {
        self.inner.insert_readings(readings).await
    }

    async fn query_range(
        &self,
        query: &sentio_store::RangeQuery,
    ) -> Result<Vec<Reading>, sentio_store::StoreError> {
        self.inner.query_range(query).await
    }

    async fn channels(&self) -> Result<Vec<sentio_store::ChannelInfo>, sentio_store::StoreError> {
        self.inner.channels().await
    }

    async fn channel_stats(
        &self,
        from_ns: i64,
        to_ns: i64,
    ) -> Result<Vec<sentio_store::ChannelStats>, sentio_store::StoreError> {
        self.inner.channel_stats(from_ns, to_ns).await
    }

    async fn dead_letters(
        &self,
        topic: &str,
    ) -> Result<Vec<sentio_store::DeadLetter>, sentio_store::StoreError> {
        self.inner.dead_letters(topic).await
    }

    async fn stats(&self) -> Result<sentio_store::StoreStats, sentio_store::StoreError> {
        self.inner.stats().await
    }

    async fn save_alerts(
        &self,
        alerts: &[sentio_core::Alert],
    ) -> Result<u64, sentio_store::StoreError> {
        self.inner.save_alerts(alerts).await
    }

    async fn anomalies(
        &self,
        query: &sentio_store::AnomalyQuery,
    ) -> Result<Vec<sentio_core::Alert>, sentio_store::StoreError> {
        self.inner.anomalies(query).await
    }

    async fn save_scores(
        &self,
        points: &[sentio_store::ScorePoint],
    ) -> Result<u64, sentio_store::StoreError> {
        self.inner.save_scores(points).await
    }

    async fn scores(
        &self,
        query: &sentio_store::ScoreQuery,
    ) -> Result<Vec<sentio_store::ScorePoint>, sentio_store::StoreError> {
        self.inner.scores(query).await
    }

    async fn latest_readings(
        &self,
        since_ns: i64,
    ) -> Result<Vec<Reading>, sentio_store::StoreError> {
        self.inner.latest_readings(since_ns).await
    }

    async fn devices(&self) -> Result<Vec<sentio_core::DeviceId>, sentio_store::StoreError> {
        self.inner.devices().await
    }

    async fn save_bridge_status(
        &self,
        reports: &[sentio_store::BridgeStatusRow],
    ) -> Result<u64, sentio_store::StoreError> {
        self.inner.save_bridge_status(reports).await
    }

    async fn bridge_status(
        &self,
    ) -> Result<Vec<sentio_store::BridgeStatusRow>, sentio_store::StoreError> {
        self.inner.bridge_status().await
    }
}
