//! Resuming a simulation exactly where each device stopped, after a clean stop or a `kill -9`.
//!
//! The simulator keeps a small state file beside the store (`<store>.simulator.json`): each
//! device's stream origin, and the last [`SNAPSHOTS_KEPT`] snapshots of every device's model
//! (levels, load, duty cycle, `seq`, the anomaly schedule and the random streams' positions),
//! written atomically (a temporary file, then a rename) after a publish. On restart the **store**
//! says where each device stopped (its newest stored reading of each channel), and the file says
//! how the device's model stood there: the newest snapshot at or before that point is restored
//! and sampled forward to it (or, when the bus lost more than the snapshots span, the model is
//! replayed from its origin). So the readings a crash lost are published again, identical, and
//! the stream continues as if the process had never stopped: no gap, no duplicate, no jump.
//!
//! The raw archive is reconciled the same way. The file records, per device, `archived_through`:
//! every slice of it ending at or before that is written. On restart each device's objects from
//! that slice on (from its origin, when none is recorded) are deleted (a crash can leave objects
//! holding readings never stored, or miss slices whose readings were stored; a stop leaves a
//! slice cut short) and rewritten from the store up to the device's resume point; the
//! regenerated readings complete the rest. Archive and store then hold the same readings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sentio_core::Channel;
use sentio_store::{RangeQuery, ReadingStore};
use serde::{Deserialize, Serialize};

use super::Simulator;
use super::generic::GenericSnapshot;
use super::machine::Machine;
use super::model::DeviceSnapshot;

/// Version of the state file's layout.
const STATE_FORMAT: u32 = 1;
/// Snapshots kept. One is taken per [`snapshot_every`] messages published (or every few seconds
/// live), so the oldest kept lies at least 7 x 16,384 messages back: more than the embedded bus
/// holds in flight by default (8 partitions x 8,192) plus a batch being written, which is as far
/// as the store can lag. A store further behind (a larger `bus.memory.capacity`) is caught up
/// from the device's origin instead: slower, just as exact.
pub const SNAPSHOTS_KEPT: usize = 8;

/// Messages between snapshots: a backfill chunk, or 64 ticks of the fleet for a large one, so
/// the file (about 400 bytes per device per snapshot) is rewritten a few times a second at most.
pub fn snapshot_every(devices: usize, chunk: usize) -> u64 {
    chunk.max(devices.saturating_mul(4 * 64)) as u64
}

/// The state file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct StateFile {
    format: u32,
    seed: u64,
    cadence_ns: i64,
    /// Where each device's stream starts: its model's initial state is sampled first there.
    origins: BTreeMap<String, Origin>,
    /// Per device: every archive slice of it ending at or before this is written. Per device,
    /// because a device that joins a fleet backfills its history far behind the others.
    #[serde(default)]
    archived_through: BTreeMap<String, i64>,
    /// When the file was last written (wall clock): whether the simulator ran recently.
    #[serde(default)]
    saved_at_ns: Option<i64>,
    /// Oldest first.
    snapshots: Vec<Snapshot>,
}

/// The first sample of a device's stream: a model fresh from the seed, numbered from `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Origin {
    ts_ns: i64,
    seq: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Snapshot {
    /// The timestamp every device samples next.
    next_ns: i64,
    /// The pumps'.
    devices: BTreeMap<String, DeviceSnapshot>,
    /// The other profiles' devices' (absent from files written before there were any).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    generic: BTreeMap<String, GenericSnapshot>,
}

impl Snapshot {
    /// Restores `model` from its snapshot in this one; false when there is none that fits.
    fn restore(&self, model: &mut Machine) -> bool {
        let name = model.device().as_str().to_owned();
        match model {
            Machine::Pump(m) => self.devices.get(&name).map(|d| m.restore(d)).is_some(),
            Machine::Generic(m) => self.generic.get(&name).is_some_and(|d| m.restore(d)),
        }
    }
}

impl StateFile {
    /// Reads the file; `None` when there is none, or when it belongs to another seed or cadence
    /// or cannot be read (said in the log: the signals then restart at the resume point).
    fn load(path: &Path, seed: u64, cadence_ns: i64) -> Option<Self> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the simulator state; the signals restart");
                return None;
            }
        };
        match serde_json::from_slice::<StateFile>(&bytes) {
            Ok(f) if f.format == STATE_FORMAT && f.seed == seed && f.cadence_ns == cadence_ns => {
                Some(f)
            }
            Ok(_) => {
                tracing::warn!(path = %path.display(), "the simulator state is for another seed or cadence; the signals restart");
                None
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "the simulator state is unreadable; the signals restart");
                None
            }
        }
    }

    /// Writes the file atomically: a reader (or a crash) sees the old file or the new one.
    fn save(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(self).context("encoding the simulator state")?;
        std::fs::write(&tmp, bytes)
            .with_context(|| format!("writing the simulator state {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("replacing the simulator state {}", path.display()))
    }
}

/// Where the simulator keeps its state, and what it has recorded so far.
pub(crate) struct StateKeeper {
    path: PathBuf,
    file: StateFile,
    /// Messages published since the last snapshot.
    since_snapshot: u64,
    last_snapshot: std::time::Instant,
}

impl StateKeeper {
    /// Takes a snapshot when enough was published or enough time passed since the last one.
    pub(crate) fn due(&self, chunk: u64) -> bool {
        self.since_snapshot >= chunk
            || self.last_snapshot.elapsed() >= std::time::Duration::from_secs(5)
    }

    pub(crate) fn published(&mut self, n: u64) {
        self.since_snapshot += n;
    }

    /// Records every model's state before sampling `next_ns`, and how far the archive is
    /// written, and saves the file.
    pub(crate) fn record(
        &mut self,
        models: &[Machine],
        next_ns: i64,
        archived_through_ns: Option<i64>,
    ) -> anyhow::Result<()> {
        let (mut devices, mut generic) = (BTreeMap::new(), BTreeMap::new());
        for m in models {
            let name = m.device().as_str().to_owned();
            match m {
                Machine::Pump(p) => drop(devices.insert(name, p.snapshot())),
                Machine::Generic(g) => drop(generic.insert(name, g.snapshot())),
            }
        }
        let snapshots = &mut self.file.snapshots;
        snapshots.retain(|s| s.next_ns < next_ns);
        snapshots.push(Snapshot { next_ns, devices, generic });
        if snapshots.len() > SNAPSHOTS_KEPT {
            snapshots.drain(..snapshots.len() - SNAPSHOTS_KEPT);
        }
        if let Some(through) = archived_through_ns {
            for m in models {
                self.file.archived_through.insert(m.device().as_str().to_owned(), through);
            }
        }
        self.since_snapshot = 0;
        self.last_snapshot = std::time::Instant::now();
        self.file.saved_at_ns = Some(sentio_core::time::now_ns());
        self.file.save(&self.path)
    }
}

/// What [`Simulator::resume`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resumed {
    /// The earliest timestamp any device samples next: where the backfill starts.
    pub from_ns: i64,
    /// Devices continuing a stored stream.
    pub continued: usize,
    /// Devices with no stored reading since the wanted start (they start there).
    pub fresh: usize,
    /// Devices whose stored readings had no matching simulator state: their signals restart at
    /// the resume point (their `seq` goes on).
    pub restarted: Vec<String>,
    /// Archive objects deleted and readings pushed again from the store.
    pub archive_deleted: usize,
    pub archive_refilled: usize,
    /// Samples computed to bring restored models up to their resume points.
    pub fast_forwarded: u64,
}

/// The state file beside a SQLite store: `data/sentio.db` keeps `data/sentio.simulator.json`.
pub fn state_path(store_path: &Path) -> PathBuf {
    let stem = store_path
        .file_stem()
        .map_or_else(|| "sentio".to_owned(), |s| s.to_string_lossy().into_owned());
    store_path.with_file_name(format!("{stem}.simulator.json"))
}

impl Simulator {
    /// Positions every device where the store says it stopped, restoring its model from the state
    /// file at `state` (see the module docs), reconciles the raw archive with the store, and
    /// keeps the state file up to date from then on. `wanted_ns` is where a history should start
    /// (the demo's backfill window): a device new to the file starts there, and so does one whose
    /// stored readings end before it when the simulator has not run since then (the gap is the
    /// downtime). `now_ns` bounds the archive listing.
    pub async fn resume(
        &mut self,
        store: &dyn ReadingStore,
        state: &Path,
        wanted_ns: i64,
        now_ns: i64,
    ) -> anyhow::Result<Resumed> {
        let cadence = self.cadence_ns;
        let wanted_ns = self.align(wanted_ns + cadence - 1);
        let mut file = StateFile::load(state, self.seed, cadence).unwrap_or_else(|| StateFile {
            format: STATE_FORMAT,
            seed: self.seed,
            cadence_ns: cadence,
            ..StateFile::default()
        });
        // Each device's newest stored reading per channel.
        let mut newest: BTreeMap<String, BTreeMap<Channel, (i64, u64)>> = BTreeMap::new();
        for r in store.latest_readings(i64::MIN).await.context("reading where devices stopped")? {
            let channels = newest.entry(r.device.as_str().to_owned()).or_default();
            let slot = channels.entry(r.sensor).or_insert((r.ts_ns, r.seq));
            if r.ts_ns > slot.0 {
                *slot = (r.ts_ns, r.seq);
            }
        }

        let mut out = Resumed::default();
        // Within the wanted range of wall time: the file is written while the simulator runs.
        let ran_recently = file.saved_at_ns.is_some_and(|at| at >= wanted_ns);
        for i in 0..self.models.len() {
            let name = self.models[i].device().as_str().to_owned();
            // Only the channels the device's model simulates; another producer's are none of its
            // business.
            let stored: Vec<Option<(i64, u64)>> = self.models[i]
                .channels()
                .iter()
                .map(|c| newest.get(&name).and_then(|per| per.get(c)).copied())
                .collect();
            let resume_at = stored.iter().flatten().map(|(ts, _)| *ts).min().map(|t| t + cadence);
            let start = match file.origins.get(&name) {
                // The simulator ran within the wanted range (a crash, a restart): it goes on
                // exactly where the store stopped, however far back (what it had published
                // beyond is lost from the bus, and is published again), or from the stream's
                // origin when nothing of it was stored.
                Some(origin) if ran_recently => resume_at.unwrap_or(origin.ts_ns),
                // It was off for longer than the wanted range: a device that stopped before the
                // range continues at its start, its model running through the gap as the
                // machine did.
                _ => resume_at.map_or(wanted_ns, |r| r.max(wanted_ns)),
            };
            self.skip_through[i] =
                stored.iter().map(|s| s.map_or(i64::MIN, |(ts, _)| ts)).collect();
            self.start_ns[i] = start;
            let any_stored = resume_at.is_some();
            match self.position(i, &file, start) {
                Some(samples) if seq_matches(&self.models[i], &stored, start, cadence) => {
                    out.fast_forwarded += samples;
                    if any_stored {
                        out.continued += 1;
                    } else {
                        out.fresh += 1;
                    }
                }
                _ if !any_stored => {
                    self.models[i] = self.fresh_model(i);
                    file.origins.insert(name.clone(), Origin { ts_ns: start, seq: 0 });
                    out.fresh += 1;
                }
                _ => {
                    // Stored readings with no state to continue them (a data directory from
                    // before the state file, or one it does not match): the signals restart
                    // here and the numbering goes on.
                    let next_seq = stored
                        .iter()
                        .flatten()
                        .filter(|(ts, _)| *ts < start)
                        .map(|(_, seq)| seq + 1)
                        .max()
                        .unwrap_or(0);
                    let mut model = self.fresh_model(i);
                    model.set_seq(next_seq);
                    self.models[i] = model;
                    file.origins.insert(name.clone(), Origin { ts_ns: start, seq: next_seq });
                    out.restarted.push(name.clone());
                }
            }

            if let Some(archiver) = &mut self.archiver {
                let slice_of = |ts: i64| ts.div_euclid(archiver.slice_ns()) * archiver.slice_ns();
                // From the first slice not known written (the stream's origin for a device
                // never recorded as archived), or the resume point's, if earlier.
                let known = file.archived_through.get(&name).copied();
                let origin = file.origins.get(&name).map(|o| o.ts_ns);
                let from = slice_of(known.or(origin).unwrap_or(start).min(start));
                let device = self.models[i].device().clone();
                out.archive_deleted += archiver
                    .delete_from(&device, from, now_ns.max(start))
                    .await
                    .with_context(|| format!("reconciling the raw archive of {device}"))?;
                let readings = store
                    .query_range(&RangeQuery {
                        devices: vec![device.clone()],
                        sensors: vec![],
                        from_ns: from,
                        to_ns: start.saturating_add(cadence),
                    })
                    .await
                    .with_context(|| format!("reading {device}'s stored readings to re-archive"))?;
                for r in &readings {
                    archiver.push(r);
                }
                out.archive_refilled += readings.len();
            }
        }
        out.from_ns = self.start_ns.iter().copied().min().unwrap_or(wanted_ns);
        if !out.restarted.is_empty() {
            tracing::warn!(devices = ?out.restarted, "no simulator state matches these devices' stored readings; their signals restart where they stopped");
        }
        // Even a run killed before its first snapshot counts as having run.
        file.saved_at_ns = Some(sentio_core::time::now_ns());
        file.save(state)?;
        self.state = Some(StateKeeper {
            path: state.to_owned(),
            file,
            since_snapshot: 0,
            last_snapshot: std::time::Instant::now(),
        });
        Ok(out)
    }

    /// Brings model `i` to just before sampling `start`: from the newest snapshot at or before
    /// `start`, else from the device's origin. Returns the samples it took, or `None` when the
    /// file has neither for this device (or `start` is before its origin).
    fn position(&mut self, i: usize, file: &StateFile, start: i64) -> Option<u64> {
        let name = self.models[i].device().as_str();
        let origin = *file.origins.get(name)?;
        if start < origin.ts_ns {
            return None;
        }
        let mut model = self.fresh_model(i);
        model.set_seq(origin.seq);
        let mut next = origin.ts_ns;
        if let Some(at) = file
            .snapshots
            .iter()
            .rev()
            .filter(|s| s.next_ns <= start && s.next_ns >= origin.ts_ns)
            .find_map(|s| s.restore(&mut model).then_some(s.next_ns))
        {
            next = at;
        }
        let mut samples = 0;
        while next < start {
            model.skip(next);
            next += self.cadence_ns;
            samples += 1;
        }
        self.models[i] = model;
        Some(samples)
    }

    fn fresh_model(&self, i: usize) -> Machine {
        Machine::new(&self.fleet[i], &self.config)
    }
}

/// Whether `model`, about to sample `start`, numbers its readings as the stored ones say: each
/// sensor's newest stored reading `k` ticks before `start` must be `k` before the model's next
/// (and one at `start`, a tick half stored, the model's next itself).
fn seq_matches(
    model: &Machine,
    stored: &[Option<(i64, u64)>],
    start: i64,
    cadence_ns: i64,
) -> bool {
    let next = model.seq();
    stored.iter().flatten().all(|&(ts, seq)| {
        if ts >= start {
            return seq == next;
        }
        let ticks = u64::try_from((start - ts) / cadence_ns.max(1)).unwrap_or(u64::MAX);
        seq.checked_add(ticks) == Some(next)
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use futures::TryStreamExt;
    use object_store::ObjectStore;
    use object_store::memory::InMemory;
    use sentio_config::Config;
    use sentio_core::{DecodeLimits, Reading, decode_reading};
    use sentio_objects::{Archiver, RawBatch};
    use sentio_store::sqlite::SqliteStore;
    use tokio_util::sync::CancellationToken;

    use super::super::Output;
    use super::super::model::tests::START_NS as ORIGIN;
    use super::super::tests::{Shared, mixed};
    use super::*;

    const SEC: i64 = 1_000_000_000;
    const TICKS: i64 = 1200;

    fn config() -> Config {
        let mut c = mixed(11, 20.0);
        c.simulator.cadence = Duration::from_secs(1);
        c
    }

    fn simulator(archive: &Arc<InMemory>, lines: &Shared) -> Simulator {
        let c = config();
        let archiver = Archiver::new(archive.clone(), Duration::from_secs(60));
        let out = Output::Lines(Box::new(lines.clone()));
        Simulator::with_fleet(&c.simulator, c.fleet().unwrap(), out, Some(archiver)).unwrap()
    }

    fn take(lines: &Shared) -> Vec<Reading> {
        let limits = DecodeLimits { max_future_ns: i64::MAX / 4, ..DecodeLimits::default() };
        lines
            .take()
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| decode_reading(l, &limits, ORIGIN).unwrap())
            .collect()
    }

    fn sorted(mut r: Vec<Reading>) -> Vec<Reading> {
        r.sort_by(|a, b| {
            let key =
                |r: &Reading| (r.device.as_str().to_owned(), r.ts_ns, r.sensor.clone(), r.seq);
            key(a).cmp(&key(b))
        });
        r
    }

    async fn stored(store: &SqliteStore) -> Vec<Reading> {
        let q = RangeQuery { devices: vec![], sensors: vec![], from_ns: i64::MIN, to_ns: i64::MAX };
        sorted(store.query_range(&q).await.unwrap())
    }

    async fn archived(archive: &InMemory) -> Vec<Reading> {
        let metas: Vec<_> = archive.list(None).try_collect().await.unwrap();
        let mut all = Vec::new();
        for m in metas {
            let bytes = archive.get(&m.location).await.unwrap().bytes().await.unwrap();
            all.extend(RawBatch::from_pickle(&bytes).unwrap().readings().unwrap());
        }
        sorted(all)
    }

    async fn resume_and_backfill(
        sim: &mut Simulator,
        store: &SqliteStore,
        state: &Path,
        to: i64,
    ) -> Resumed {
        let resumed = sim.resume(store, state, ORIGIN, ORIGIN + TICKS * SEC).await.unwrap();
        sim.backfill(resumed.from_ns, to, &CancellationToken::new(), |_| {}).await.unwrap();
        resumed
    }

    async fn setup() -> (tempfile::TempDir, SqliteStore, Arc<InMemory>) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("sentio.db")).unwrap();
        store.migrate().await.unwrap();
        (dir, store, Arc::new(InMemory::new()))
    }

    /// The pumps' resume (tests/resume.rs) holds for every profile: a killed mixed fleet, its
    /// store holding a different prefix of each device (a compressor half of one tick), resumes
    /// to the uninterrupted seeded stream of every channel, and archive = store.
    #[tokio::test]
    async fn a_killed_mixed_fleet_resumes_every_channel_where_the_store_stopped() {
        let lines = Shared::default();
        let mut whole = simulator(&Arc::new(InMemory::new()), &lines);
        whole
            .backfill(ORIGIN, ORIGIN + TICKS * SEC, &CancellationToken::new(), |_| {})
            .await
            .unwrap();
        whole.finish().await.unwrap();
        let want = sorted(take(&lines));
        assert_eq!(want.len() as i64, TICKS * (3 * 4 + 2 * 6));

        let (dir, store, archive) = setup().await;
        let state = dir.path().join("sentio.simulator.json");
        let mut first = simulator(&archive, &lines);
        let resumed = resume_and_backfill(&mut first, &store, &state, ORIGIN + 900 * SEC).await;
        assert_eq!((resumed.fresh, resumed.continued), (5, 0));
        drop(first);
        let half = ["current", "flow", "discharge_pressure"];
        let kept: Vec<Reading> = take(&lines)
            .into_iter()
            .filter(|r| match r.device.as_str() {
                "compressor-01" => {
                    r.ts_ns < ORIGIN + 800 * SEC
                        || (r.ts_ns == ORIGIN + 800 * SEC && half.contains(&r.sensor.as_str()))
                }
                "compressor-02" => r.ts_ns < ORIGIN + 300 * SEC,
                "pump-01" => r.ts_ns < ORIGIN + 500 * SEC,
                _ => false,
            })
            .collect();
        store.insert_readings(&kept).await.unwrap();

        let mut second = simulator(&archive, &lines);
        let resumed = resume_and_backfill(&mut second, &store, &state, ORIGIN + TICKS * SEC).await;
        assert_eq!((resumed.continued, resumed.fresh), (3, 2), "{resumed:?}");
        assert!(resumed.restarted.is_empty(), "{resumed:?}");
        assert_eq!(resumed.from_ns, ORIGIN);
        // compressor-01 came from the snapshot taken at about 680 ticks, not from the origin.
        assert!(resumed.fast_forwarded < 800 + 300 + 500, "{resumed:?}");
        second.finish().await.unwrap();
        store.insert_readings(&take(&lines)).await.unwrap();

        let got = stored(&store).await;
        assert_eq!(got.len(), want.len(), "no reading lost or stored twice");
        assert!(got == want, "the stored stream is the uninterrupted seeded stream");
        assert!(archived(&archive).await == got, "archive = store, each reading once");
    }

    /// Without the state file, a compressor's signals restart where it stopped and each of its
    /// channels' numbering goes on.
    #[tokio::test]
    async fn without_saved_state_a_compressor_restarts_and_its_numbering_goes_on() {
        let (dir, store, archive) = setup().await;
        let state = dir.path().join("sentio.simulator.json");
        let lines = Shared::default();
        let mut first = simulator(&archive, &lines);
        resume_and_backfill(&mut first, &store, &state, ORIGIN + 600 * SEC).await;
        first.finish().await.unwrap();
        store.insert_readings(&take(&lines)).await.unwrap();
        std::fs::remove_file(&state).unwrap();

        let mut second = simulator(&archive, &lines);
        let resumed = resume_and_backfill(&mut second, &store, &state, ORIGIN + TICKS * SEC).await;
        assert_eq!(resumed.restarted.len(), 5, "{resumed:?}");
        assert_eq!(resumed.from_ns, ORIGIN + 600 * SEC);
        second.finish().await.unwrap();
        store.insert_readings(&take(&lines)).await.unwrap();

        let mut per: BTreeMap<(String, Channel), Vec<(i64, u64)>> = BTreeMap::new();
        for r in stored(&store).await {
            per.entry((r.device.as_str().to_owned(), r.sensor.clone()))
                .or_default()
                .push((r.ts_ns, r.seq));
        }
        assert_eq!(per.len(), 3 * 4 + 2 * 6);
        for ((device, channel), points) in per {
            let want: Vec<(i64, u64)> = (0..TICKS).map(|t| (ORIGIN + t * SEC, t as u64)).collect();
            assert_eq!(points, want, "{device} {channel}: every second once, seq going on");
        }
    }
}
