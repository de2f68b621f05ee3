//! The sensor simulator: a fleet of devices of one or more profiles, every channel at a fixed
//! cadence, with injected anomalies.
//!
//! - [`model`]: one pump's four signals (duty cycle, load, daily cycle, drift, noise).
//! - [`anomaly`]: the pump's injector, which turns its healthy signals into each kind of fault.
//! - [`generic`]: one device of any other profile: a signal per channel from its healthy range
//!   (level, load coupling, drift, noise).
//! - [`generic_anomaly`]: the generic faults (spike, drop, flat, noise, level shift) on any
//!   channel.
//! - [`machine`]: a fleet device, either kind.
//! - [`resume`]: continuing each device where the store says it stopped.
//! - this module: the clock. Backfill simulates a past range as fast as the bus accepts it; real
//!   time ticks with the wall clock (times a speed-up). Both publish readings keyed by device and
//!   hand every published reading to the raw archive.
//!
//! The stream depends only on the seed, the device list, the cadence and the time range, so two
//! runs over the same range produce the same bytes. A device's signals depend on its profile and
//! its number within the profile only, so a pump's stream is the same in a mixed fleet as alone.

pub mod anomaly;
pub mod generic;
pub mod generic_anomaly;
pub mod machine;
pub mod model;
pub mod resume;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use sentio_bus::Bus;
use sentio_config::{FleetDevice, SimulatorConfig};
use sentio_core::time::now_ns;
use sentio_core::{DeviceId, Profile, encode_reading};
use sentio_objects::Archiver;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use self::machine::Machine;

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
    /// Handed to a sink of another protocol (`sentio simulate --mqtt`: one MQTT message each).
    Sink(Box<dyn Sink>),
}

/// Where readings go when not on a bus: each batch of (device key, reading message v1) pairs is
/// sent, and `send` returns once the other side has them (acknowledged, for MQTT QoS 1), as the
/// bus's `publish_batch` does.
#[async_trait::async_trait]
pub trait Sink: Send {
    async fn send(&mut self, batch: Vec<(Bytes, Bytes)>) -> anyhow::Result<()>;
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
    /// Who each device is (its model is rebuilt from this on a resume).
    fleet: Vec<FleetDevice>,
    models: Vec<Machine>,
    keys: Vec<Bytes>,
    /// Per device: the first timestamp it samples (set by [`Simulator::resume`]; earlier ticks
    /// pass it by).
    start_ns: Vec<i64>,
    /// Per device and channel (the model's order): the newest stored timestamp, at or before
    /// which the channel's readings are not published again (a tick the store holds half of).
    skip_through: Vec<Vec<i64>>,
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
    /// `config.devices` pumps named `<device_prefix>-01`, ...: the fleet before profiles.
    pub fn new(
        config: &SimulatorConfig,
        output: Output,
        archiver: Option<Archiver>,
    ) -> anyhow::Result<Self> {
        Self::with_fleet(config, pump_fleet(config)?, output, archiver)
    }

    /// The devices of `fleet` (see `sentio_config::Config::fleet`), each simulated as its profile
    /// says: a pump with the pump's model, any other profile with the generic one.
    pub fn with_fleet(
        config: &SimulatorConfig,
        fleet: Vec<FleetDevice>,
        output: Output,
        archiver: Option<Archiver>,
    ) -> anyhow::Result<Self> {
        let keys =
            fleet.iter().map(|d| Bytes::copy_from_slice(d.device.as_str().as_bytes())).collect();
        let models: Vec<Machine> = fleet.iter().map(|d| Machine::new(d, config)).collect();
        let cadence_ns =
            i64::try_from(config.cadence.as_nanos()).context("simulator.cadence is too long")?;
        let n = models.len();
        let skip_through = models.iter().map(|m| vec![i64::MIN; m.channel_count()]).collect();
        Ok(Self {
            config: config.clone(),
            seed: config.seed,
            fleet,
            models,
            keys,
            start_ns: vec![i64::MIN; n],
            skip_through,
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

    /// The devices simulated.
    pub fn fleet(&self) -> &[FleetDevice] {
        &self.fleet
    }

    /// "8 devices (6 pump, 2 compressor)", or "8 devices" of one profile.
    pub fn describe_fleet(&self) -> String {
        let mut per: Vec<(&str, usize)> = Vec::new();
        for d in &self.fleet {
            match per.iter_mut().find(|(name, _)| *name == d.profile.name) {
                Some((_, n)) => *n += 1,
                None => per.push((&d.profile.name, 1)),
            }
        }
        let total = self.fleet.len();
        if per.len() <= 1 {
            return format!("{total} devices");
        }
        let parts: Vec<String> = per.iter().map(|(name, n)| format!("{n} {name}")).collect();
        format!("{total} devices ({})", parts.join(", "))
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
        let Self { models, keys, start_ns, skip_through, stats, pending, archiver, .. } = self;
        let devices = models.iter_mut().zip(keys.iter()).zip(start_ns.iter());
        for (((model, key), start), skip) in devices.zip(skip_through.iter()) {
            if ts < *start {
                continue;
            }
            // In the model's channel order, as `skip` is.
            model.sample_each(ts, |channel, reading| {
                if reading.ts_ns <= skip[channel] {
                    return;
                }
                if reading.injected.is_some() {
                    stats.injected.fetch_add(1, Ordering::Relaxed);
                }
                pending.push((key.clone(), Bytes::from(encode_reading(&reading))));
                if let Some(archiver) = archiver.as_mut() {
                    archiver.push(&reading);
                }
            });
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
            Output::Sink(sink) => {
                let send = sink.send(batch);
                match &self.abort {
                    Some(abort) => tokio::select! {
                        r = send => r,
                        _ = abort.cancelled() => anyhow::bail!("stopped publishing: another role failed"),
                    },
                    None => send.await,
                }?;
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

/// `config.devices` pumps: [`device_ids`], each the built-in pump.
pub fn pump_fleet(config: &SimulatorConfig) -> anyhow::Result<Vec<FleetDevice>> {
    let pump = Profile::pump(vec!["*".to_owned()]);
    Ok(device_ids(config)?
        .into_iter()
        .zip(0u32..)
        .map(|(device, index)| FleetDevice { device, profile: pump.clone(), index })
        .collect())
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

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use std::collections::{BTreeMap, BTreeSet};

    use sentio_config::{ChannelConfig, Config, ProfileConfig};
    use sentio_core::{AnomalyKind, DecodeLimits, Reading, decode_reading};

    use super::model::tests::{START_NS, config};
    use super::*;

    /// An in-memory `Write` the test reads back.
    #[derive(Clone, Default)]
    pub(crate) struct Shared(pub(crate) Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        /// What was written since the last call.
        pub(crate) fn take(&self) -> Vec<u8> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    /// FNV-1a, 64 bits: a hash that needs no dependency and never changes.
    fn fnv1a(bytes: &[u8]) -> u64 {
        bytes
            .iter()
            .fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
    }

    /// The JSON lines `fleet` writes for `[START_NS, START_NS + hours)`.
    async fn lines(config: &SimulatorConfig, fleet: Vec<FleetDevice>, hours: i64) -> Vec<u8> {
        let out = Shared::default();
        let mut sim =
            Simulator::with_fleet(config, fleet, Output::Lines(Box::new(out.clone())), None)
                .unwrap();
        let to = START_NS + hours * 3_600_000_000_000;
        sim.backfill(START_NS, to, &CancellationToken::new(), |_| {}).await.unwrap();
        sim.finish().await.unwrap();
        out.take()
    }

    /// Lines, bytes, lines with an injected kind, and the hash of the bytes.
    fn fingerprint(bytes: &[u8]) -> (usize, usize, usize, u64) {
        let lines = bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty());
        let tagged = lines.clone().filter(|l| l.windows(12).any(|w| w == b"\"injected\":\""));
        (lines.count(), bytes.len(), tagged.count(), fnv1a(bytes))
    }

    fn decode(bytes: &[u8]) -> Vec<Reading> {
        let limits = DecodeLimits { max_future_ns: i64::MAX / 4, ..DecodeLimits::default() };
        bytes
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| decode_reading(l, &limits, START_NS).unwrap())
            .collect()
    }

    /// The pump's stream is exactly what it was before profiles reached the simulator. The
    /// expected figures were produced by the code of commit 3dbc862 (the last before the simulator
    /// took profiles), from a `git archive` of it with this test's `lines` and `fingerprint`
    /// written against its API (`Simulator::new`) and printed; they are not computed here.
    #[tokio::test]
    async fn the_pump_stream_is_byte_for_byte_what_it_was() {
        // 4 pumps, seed 7, 1 s, 30 episodes per hour of every pump kind, 30 s to 3 min; 2 hours.
        let busy = config(7, Duration::from_secs(1), 30.0, None);
        let got = fingerprint(&lines(&busy, pump_fleet(&busy).unwrap(), 2).await);
        assert_eq!(got, (115_200, 15_193_133, 25_207, 0xafca_9117_27e9_64fa));
        // The defaults (8 pumps, seed 42, 1 episode per hour); 1 hour.
        let defaults = Config::defaults().unwrap().simulator;
        let got = fingerprint(&lines(&defaults, pump_fleet(&defaults).unwrap(), 1).await);
        assert_eq!(got, (115_200, 14_870_529, 593, 0x7a1c_e0ab_230f_4f73));
    }

    /// `demo.profiles = { pump = 8 }` is the same fleet as `simulator.devices = 8`, through the
    /// configuration's fleet: the same bytes as before.
    #[tokio::test]
    async fn a_fleet_of_only_pumps_from_demo_profiles_streams_the_same_bytes() {
        let mut c = Config::defaults().unwrap();
        c.demo.profiles.insert("pump".into(), 8);
        c.validate().unwrap();
        let got = fingerprint(&lines(&c.simulator, c.fleet().unwrap(), 1).await);
        assert_eq!(got, (115_200, 14_870_529, 593, 0x7a1c_e0ab_230f_4f73));
    }

    /// A six-channel compressor, as `examples/mixed-fleet.toml` declares it (one channel without
    /// a range), and a fleet of 3 pumps and 2 compressors.
    pub(crate) fn mixed(seed: u64, rate_per_hour: f64) -> Config {
        let mut c = Config::defaults().unwrap();
        let channel = |name: &str, unit: &str, range: Option<[f64; 2]>| ChannelConfig {
            name: name.into(),
            unit: unit.into(),
            range,
            score_weight: None,
        };
        let profile = ProfileConfig {
            devices: vec!["compressor-*".into()],
            channels: Some(vec![
                channel("current", "A", Some([0.0, 60.0])),
                channel("flow", "m³/h", Some([0.0, 400.0])),
                channel("discharge_pressure", "bar", Some([4.0, 10.0])),
                channel("discharge_temperature", "°C", Some([40.0, 110.0])),
                channel("vibration_x", "mm/s", Some([0.0, 12.0])),
                channel("vibration_y", "mm/s", None),
            ]),
        };
        c.profiles.0.insert("compressor".into(), profile);
        c.demo.profiles = [("pump".to_owned(), 3), ("compressor".to_owned(), 2)].into();
        c.simulator.seed = seed;
        c.simulator.anomalies.rate_per_hour = rate_per_hour;
        c.validate().unwrap();
        c
    }

    #[tokio::test]
    async fn pumps_stream_the_same_in_a_mixed_fleet() {
        let c = mixed(42, 6.0);
        let both = decode(&lines(&c.simulator, c.fleet().unwrap(), 1).await);
        let mut alone = c.clone();
        alone.demo.profiles.remove("compressor");
        let pumps = decode(&lines(&alone.simulator, alone.fleet().unwrap(), 1).await);
        let in_mixed: Vec<&Reading> =
            both.iter().filter(|r| r.device.as_str().starts_with("pump-")).collect();
        assert_eq!(in_mixed, pumps.iter().collect::<Vec<_>>());
        assert_eq!(pumps.len(), 3 * 3600 * 4);
        assert_eq!(both.len(), 3 * 3600 * 4 + 2 * 3600 * 6);
    }

    /// Each compressor reading is of a channel its profile declares, in its unit (so the ETL
    /// models it), numbered per channel, tagged on the altered channel only.
    #[tokio::test]
    async fn a_mixed_fleet_sends_every_profile_channel_in_its_unit() {
        let c = mixed(5, 20.0);
        let profiles = c.profiles().unwrap();
        let readings = decode(&lines(&c.simulator, c.fleet().unwrap(), 2).await);
        let mut per: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
        let mut injected = BTreeMap::<AnomalyKind, usize>::new();
        for r in &readings {
            assert_eq!(profiles.check(r), Ok(true), "{r:?}");
            per.entry((r.device.as_str().to_owned(), r.sensor.as_str().to_owned()))
                .or_default()
                .push(r.seq);
            if let Some(kind) = r.injected {
                *injected.entry(kind).or_default() += 1;
                let generic = AnomalyKind::GENERIC.contains(&kind);
                assert_eq!(generic, r.device.as_str().starts_with("compressor-"), "{r:?}");
            }
        }
        let devices: BTreeSet<&str> = per.keys().map(|(d, _)| d.as_str()).collect();
        assert_eq!(
            devices.into_iter().collect::<Vec<_>>(),
            ["compressor-01", "compressor-02", "pump-01", "pump-02", "pump-03"]
        );
        assert_eq!(per.len(), 3 * 4 + 2 * 6);
        for (key, seqs) in &per {
            assert!(seqs.iter().copied().eq(0..7200), "{key:?}");
        }
        for kind in AnomalyKind::GENERIC {
            assert!(injected.get(&kind).is_some_and(|&n| n > 0), "{kind}: {injected:?}");
        }
    }
}
