//! The sensor simulator: N devices, four sensors each, at a fixed cadence, with injected anomalies.
//!
//! - [`model`]: one device's signals (duty cycle, load, daily cycle, drift, noise).
//! - [`anomaly`]: the injector that turns healthy signals into each kind of fault.
//! - this module: the clock. Backfill simulates a past range as fast as the bus accepts it; real
//!   time ticks with the wall clock (times a speed-up). Both publish readings keyed by device and
//!   hand every published reading to the raw archive.
//!
//! The stream depends only on the seed, the device list, the cadence and the time range, so two
//! runs over the same range produce the same bytes.

pub mod anomaly;
pub mod model;
pub mod resume;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use sentio_bus::Bus;
use sentio_config::SimulatorConfig;
use sentio_core::time::now_ns;
use sentio_core::{DeviceId, encode_reading};
use sentio_objects::Archiver;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use self::model::DeviceModel;

/// Messages handed to the bus in one call during backfill. Each call waits for every delivery, so
/// the producer's pipeline drains once per chunk: at 4,096 the simulator reached 0.7 x a bare
/// rdkafka producer on Apache Kafka, at 16,384 1.2 x (docs/benchmarks.md).
const BACKFILL_CHUNK: usize = 16384;

/// Where readings go.
pub enum Output {
    /// Published to `topic`, keyed by device id.
    Bus { bus: Arc<dyn Bus>, topic: String },
    /// Written as JSON lines (one message per line), e.g. to stdout for inspection or diffing.
    Lines(Box<dyn Write + Send>),
}

/// Running totals, shared with whoever displays them.
#[derive(Debug, Default)]
pub struct SimStats {
    pub published: AtomicU64,
    pub injected: AtomicU64,
    pub pickles_written: AtomicU64,
    /// Simulated time of the last published tick, nanoseconds since the epoch.
    pub sim_time_ns: AtomicI64,
}

pub struct Simulator {
    config: SimulatorConfig,
    seed: u64,
    models: Vec<DeviceModel>,
    keys: Vec<Bytes>,
    /// Per device: the first timestamp it samples (set by [`Simulator::resume`]; earlier ticks
    /// pass it by).
    start_ns: Vec<i64>,
    /// Per device and sensor: the newest stored timestamp, at or before which the sensor's
    /// readings are not published again (a tick the store holds half of).
    skip_through: Vec<[i64; 4]>,
    state: Option<resume::StateKeeper>,
    /// The timestamp sampled next, once something was sent.
    next_ns: Option<i64>,
    /// Cancelled when another role failed: a publish waiting for room gives up.
    abort: Option<CancellationToken>,
    cadence_ns: i64,
    speedup: f64,
    output: Output,
    archiver: Option<Archiver>,
    stats: Arc<SimStats>,
    pending: Vec<(Bytes, Bytes)>,
}

impl Simulator {
    pub fn new(
        config: &SimulatorConfig,
        output: Output,
        archiver: Option<Archiver>,
    ) -> anyhow::Result<Self> {
        let devices = device_ids(config)?;
        let keys = devices.iter().map(|d| Bytes::copy_from_slice(d.as_str().as_bytes())).collect();
        let models: Vec<DeviceModel> = devices
            .into_iter()
            .zip(0u32..)
            .map(|(device, index)| DeviceModel::new(device, index, config))
            .collect();
        let cadence_ns =
            i64::try_from(config.cadence.as_nanos()).context("simulator.cadence is too long")?;
        let n = models.len();
        Ok(Self {
            config: config.clone(),
            seed: config.seed,
            models,
            keys,
            start_ns: vec![i64::MIN; n],
            skip_through: vec![[i64::MIN; 4]; n],
            state: None,
            next_ns: None,
            abort: None,
            cadence_ns,
            speedup: config.speedup,
            output,
            archiver,
            stats: Arc::default(),
            pending: Vec::with_capacity(BACKFILL_CHUNK + 64),
        })
    }

    /// Gives up a publish waiting for room on the bus once `abort` is cancelled (the consumer
    /// failed, so room would never come).
    pub fn with_abort(mut self, abort: CancellationToken) -> Self {
        self.abort = Some(abort);
        self
    }

    pub fn stats(&self) -> Arc<SimStats> {
        self.stats.clone()
    }

    pub fn cadence_ns(&self) -> i64 {
        self.cadence_ns
    }

    /// `ts_ns` rounded down to a multiple of the cadence, so ticks fall on round instants.
    pub fn align(&self, ts_ns: i64) -> i64 {
        ts_ns.div_euclid(self.cadence_ns) * self.cadence_ns
    }

    /// Number of ticks in `[from_ns, to_ns)`.
    pub fn ticks_between(&self, from_ns: i64, to_ns: i64) -> u64 {
        let first = self.align(from_ns + self.cadence_ns - 1);
        u64::try_from((to_ns - first + self.cadence_ns - 1).div_euclid(self.cadence_ns))
            .unwrap_or(0)
    }

    /// Simulates the ticks in `[from_ns, to_ns)` as fast as the output accepts them; calls
    /// `progress(ticks_done)` after every chunk. Returns the next tick's timestamp (where real time
    /// can continue).
    pub async fn backfill(
        &mut self,
        from_ns: i64,
        to_ns: i64,
        stop: &CancellationToken,
        mut progress: impl FnMut(u64),
    ) -> anyhow::Result<i64> {
        let mut ts = self.align(from_ns + self.cadence_ns - 1);
        let mut done = 0u64;
        while ts < to_ns && !stop.is_cancelled() {
            self.tick(ts);
            ts += self.cadence_ns;
            done += 1;
            if self.pending.len() >= BACKFILL_CHUNK {
                self.emit(ts).await?;
                progress(done);
            }
        }
        self.emit(ts).await?;
        progress(done);
        Ok(ts)
    }

    /// Ticks with the wall clock (sped up by `speedup`) from simulated time `from_ns` until `stop`.
    ///
    /// In real time, a `from_ns` behind the clock (the demo trains and replays between its
    /// backfill and going live) is caught up at once, as devices that kept sending meanwhile
    /// would be: otherwise every live reading would carry that gap as a delay, and a detector's
    /// latency with it. Sped up, the ticks from `from_ns` come `speedup` times faster than the
    /// clock until they meet it, and from then on no faster than the clock: a reading is never
    /// stamped in the future, which ingest would refuse (`ingest.max_future`).
    pub async fn real_time(
        &mut self,
        from_ns: i64,
        stop: &CancellationToken,
    ) -> anyhow::Result<()> {
        let period =
            Duration::from_nanos(((self.cadence_ns as f64) / self.speedup).max(1.0) as u64);
        let now = tokio::time::Instant::now();
        let start = if self.speedup <= 1.0 {
            let behind = Duration::from_nanos(
                (now_ns().saturating_sub(from_ns).max(0) as f64 / self.speedup) as u64,
            );
            now.checked_sub(behind).unwrap_or(now)
        } else {
            now
        };
        let mut clock = tokio::time::interval_at(start, period);
        // After a stall, catch up: the simulated devices did not stop sending.
        clock.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let mut ts = self.align(from_ns + self.cadence_ns - 1);
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return Ok(()),
                _ = clock.tick() => {}
            }
            let ahead = ts.saturating_sub(now_ns());
            if ahead > 0 {
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_nanos(ahead.unsigned_abs())) => {}
                }
            }
            self.tick(ts);
            ts += self.cadence_ns;
            self.emit(ts).await?;
        }
    }

    /// Writes what the archive still buffers, records the simulator's state and flushes the
    /// output.
    pub async fn finish(&mut self) -> anyhow::Result<()> {
        if let Some(archiver) = &mut self.archiver {
            archiver.flush_all().await.context("writing the last raw batches")?;
            self.stats.pickles_written.store(archiver.objects_written(), Ordering::Relaxed);
        }
        if let (Some(state), Some(next)) = (&mut self.state, self.next_ns) {
            // A slice cut short by the stop is rewritten whole by the next run, so the archive
            // is only known complete up to the last full watermark.
            state.record(&self.models, next, None)?;
        }
        if let Output::Lines(out) = &mut self.output {
            out.flush().context("flushing the output")?;
        }
        Ok(())
    }

    /// Samples every device at `ts` into the pending messages and the archive buffer (a device
    /// resumed later than `ts` sits it out; a reading the store already holds is not sent again).
    fn tick(&mut self, ts: i64) {
        let devices = self.models.iter_mut().zip(&self.keys).zip(&self.start_ns);
        for (((model, key), start), skip) in devices.zip(&self.skip_through) {
            if ts < *start {
                continue;
            }
            // In `SensorKind::ALL` order, as `skip` is.
            for (sensor, reading) in model.sample(ts).into_iter().enumerate() {
                if reading.ts_ns <= skip[sensor] {
                    continue;
                }
                if reading.injected.is_some() {
                    self.stats.injected.fetch_add(1, Ordering::Relaxed);
                }
                self.pending.push((key.clone(), Bytes::from(encode_reading(&reading))));
                if let Some(archiver) = &mut self.archiver {
                    archiver.push(&reading);
                }
            }
        }
    }

    /// Sends the pending messages; then archives every slice that ends at or before `watermark`.
    async fn emit(&mut self, watermark: i64) -> anyhow::Result<()> {
        let batch = std::mem::take(&mut self.pending);
        let n = batch.len() as u64;
        match &mut self.output {
            Output::Bus { bus, topic } => {
                let publish = bus.publish_batch(topic, batch);
                let published = match &self.abort {
                    Some(abort) => tokio::select! {
                        r = publish => r,
                        _ = abort.cancelled() => anyhow::bail!("stopped publishing: another role failed"),
                    },
                    None => publish.await,
                };
                published.with_context(|| format!("publishing readings to {topic:?}"))?;
            }
            Output::Lines(out) => {
                for (_, payload) in &batch {
                    out.write_all(payload).context("writing readings")?;
                    out.write_all(b"\n").context("writing readings")?;
                }
            }
        }
        self.stats.published.fetch_add(n, Ordering::Relaxed);
        self.stats.sim_time_ns.store(watermark - self.cadence_ns, Ordering::Relaxed);
        self.next_ns = Some(watermark);
        if let Some(archiver) = &mut self.archiver {
            archiver.flush_before(watermark).await.context("writing raw batches")?;
            self.stats.pickles_written.store(archiver.objects_written(), Ordering::Relaxed);
        }
        if let Some(state) = &mut self.state {
            state.published(n);
            // Only once every device samples in step (after a resume, some start later).
            let started = self.start_ns.iter().all(|s| *s < watermark);
            if started && state.due(resume::snapshot_every(self.models.len(), BACKFILL_CHUNK)) {
                let archived = self.archiver.as_ref().map(|a| a.slice_start(watermark));
                state.record(&self.models, watermark, archived)?;
            }
        }
        Ok(())
    }
}

/// `pump-01`, `pump-02`, ... zero-padded to at least two digits.
pub fn device_ids(config: &SimulatorConfig) -> anyhow::Result<Vec<DeviceId>> {
    let width = config.devices.to_string().len().max(2);
    (1..=config.devices)
        .map(|i| {
            let name = format!("{}-{i:0width$}", config.device_prefix);
            DeviceId::new(&name).with_context(|| format!("device name {name:?}"))
        })
        .collect()
}
