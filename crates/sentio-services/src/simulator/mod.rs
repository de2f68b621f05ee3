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
    models: Vec<DeviceModel>,
    keys: Vec<Bytes>,
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
        let models = devices
            .into_iter()
            .zip(0u32..)
            .map(|(device, index)| DeviceModel::new(device, index, config))
            .collect();
        let cadence_ns =
            i64::try_from(config.cadence.as_nanos()).context("simulator.cadence is too long")?;
        Ok(Self {
            models,
            keys,
            cadence_ns,
            speedup: config.speedup,
            output,
            archiver,
            stats: Arc::default(),
            pending: Vec::with_capacity(BACKFILL_CHUNK + 64),
        })
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
    /// A `from_ns` behind the clock (the demo trains and replays between its backfill and going
    /// live) is caught up at once, as devices that kept sending meanwhile would be: otherwise every
    /// live reading would carry that gap as a delay, and a detector's latency with it.
    pub async fn real_time(
        &mut self,
        from_ns: i64,
        stop: &CancellationToken,
    ) -> anyhow::Result<()> {
        let period =
            Duration::from_nanos(((self.cadence_ns as f64) / self.speedup).max(1.0) as u64);
        let behind = Duration::from_nanos(
            (now_ns().saturating_sub(from_ns).max(0) as f64 / self.speedup) as u64,
        );
        let now = tokio::time::Instant::now();
        let start = now.checked_sub(behind).unwrap_or(now);
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
            self.tick(ts);
            ts += self.cadence_ns;
            self.emit(ts).await?;
        }
    }

    /// Writes what the archive still buffers and flushes the output.
    pub async fn finish(&mut self) -> anyhow::Result<()> {
        if let Some(archiver) = &mut self.archiver {
            archiver.flush_all().await.context("writing the last raw batches")?;
            self.stats.pickles_written.store(archiver.objects_written(), Ordering::Relaxed);
        }
        if let Output::Lines(out) = &mut self.output {
            out.flush().context("flushing the output")?;
        }
        Ok(())
    }

    /// Samples every device at `ts` into the pending messages and the archive buffer.
    fn tick(&mut self, ts: i64) {
        for (model, key) in self.models.iter_mut().zip(&self.keys) {
            for reading in model.sample(ts) {
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
                bus.publish_batch(topic, batch)
                    .await
                    .with_context(|| format!("publishing readings to {topic:?}"))?;
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
        if let Some(archiver) = &mut self.archiver {
            archiver.flush_before(watermark).await.context("writing raw batches")?;
            self.stats.pickles_written.store(archiver.objects_written(), Ordering::Relaxed);
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
