#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A simulation killed at any point resumes exactly where each device stopped: the stored
//! readings end up identical to one uninterrupted run of the seeded stream (no gap, no
//! duplicate, no jump in the signals or `seq`), and the raw archive holds each stored reading
//! exactly once.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::memory::InMemory;
use sentio_config::Config;
use sentio_core::{Channel, DecodeLimits, Reading, decode_reading};
use sentio_objects::{Archiver, RawBatch};
use sentio_services::simulator::model::DeviceModel;
use sentio_services::simulator::{Output, Simulator, device_ids};
use sentio_store::sqlite::SqliteStore;
use sentio_store::{RangeQuery, ReadingStore};
use tokio_util::sync::CancellationToken;

/// 2026-01-01T00:00:00Z.
const ORIGIN: i64 = 1_767_225_600_000_000_000;
const SEC: i64 = 1_000_000_000;
const TICKS: i64 = 3600;

/// Where the simulator writes its messages (JSON lines), for the test to read back.
type Lines = common::Shared;

/// The readings written to `lines` since the last call.
fn take(lines: &Lines) -> Vec<Reading> {
    let bytes = std::mem::take(&mut *lines.0.lock().unwrap());
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| decode_reading(l, &DecodeLimits::default(), ORIGIN + 10 * TICKS * SEC).unwrap())
        .collect()
}

fn config() -> sentio_config::SimulatorConfig {
    let mut c = Config::defaults().unwrap().simulator;
    c.devices = 3;
    c.cadence = Duration::from_secs(1);
    c.seed = 11;
    c.anomalies.rate_per_hour = 20.0;
    c
}

fn simulator(archive: &Arc<InMemory>, lines: &Lines) -> Simulator {
    let archiver = Archiver::new(archive.clone(), Duration::from_secs(60));
    Simulator::new(&config(), Output::Lines(Box::new(lines.clone())), Some(archiver)).unwrap()
}

/// One uninterrupted run of every device from the origin: what the store must end up holding.
fn expected() -> Vec<Reading> {
    let cfg = config();
    let mut all = Vec::new();
    for (i, device) in device_ids(&cfg).unwrap().into_iter().enumerate() {
        let mut model = DeviceModel::new(device, i as u32, &cfg);
        for t in 0..TICKS {
            all.extend(model.sample(ORIGIN + t * SEC));
        }
    }
    sorted(all)
}

fn sorted(mut r: Vec<Reading>) -> Vec<Reading> {
    r.sort_by(|a, b| {
        (a.device.as_str(), a.ts_ns, a.sensor.kind(), a.seq).cmp(&(
            b.device.as_str(),
            b.ts_ns,
            b.sensor.kind(),
            b.seq,
        ))
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

/// Resumes `sim` on the store (wanting the history from `wanted`) and backfills to `to`, as the
/// demo does; returns what the resume found.
async fn resume_and_backfill(
    sim: &mut Simulator,
    store: &SqliteStore,
    state: &std::path::Path,
    wanted: i64,
    to: i64,
) -> sentio_services::simulator::resume::Resumed {
    let resumed = sim.resume(store, state, wanted, ORIGIN + TICKS * SEC).await.unwrap();
    sim.backfill(resumed.from_ns, to, &CancellationToken::new(), |_| {}).await.unwrap();
    resumed
}

/// A store in a temporary directory (which also holds the state file) and an empty archive.
async fn setup() -> (tempfile::TempDir, SqliteStore, Arc<InMemory>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("sentio.db")).unwrap();
    store.migrate().await.unwrap();
    (dir, store, Arc::new(InMemory::new()))
}

#[tokio::test]
async fn a_killed_simulation_resumes_each_device_exactly_where_the_store_stopped() {
    let (dir, store, archive) = setup().await;
    let state = dir.path().join("sentio.simulator.json");

    // Run 1 publishes 3,000 ticks, takes snapshots and archives as it goes, then is killed (no
    // finish). The store got a different prefix of each device, as a lagging ETL leaves it:
    // pump-1 up to tick 2,000, pump-2 up to tick 1,000 and half of tick 1,000, pump-3 nothing.
    let lines = Lines::default();
    let mut first = simulator(&archive, &lines);
    let resumed =
        resume_and_backfill(&mut first, &store, &state, ORIGIN, ORIGIN + 3000 * SEC).await;
    assert_eq!((resumed.fresh, resumed.continued, resumed.from_ns), (3, 0, ORIGIN));
    drop(first);
    let published = take(&lines);
    assert_eq!(published.len(), 3 * 3000 * 4);
    let kept: Vec<Reading> = published
        .into_iter()
        .filter(|r| match r.device.as_str() {
            "pump-01" => r.ts_ns < ORIGIN + 2000 * SEC,
            "pump-02" => {
                r.ts_ns < ORIGIN + 1000 * SEC
                    || (r.ts_ns == ORIGIN + 1000 * SEC
                        && r.sensor.kind().is_some_and(|k| k.index() < 2))
            }
            _ => false,
        })
        .collect();
    store.insert_readings(&kept).await.unwrap();
    // The archive holds slices of readings that were never stored.
    assert!(archived(&archive).await.len() > kept.len());

    // Run 2 resumes and runs to the end; everything it publishes is stored.
    let mut second = simulator(&archive, &lines);
    let resumed =
        resume_and_backfill(&mut second, &store, &state, ORIGIN, ORIGIN + TICKS * SEC).await;
    assert_eq!((resumed.continued, resumed.fresh), (2, 1), "{resumed:?}");
    assert!(resumed.restarted.is_empty(), "{resumed:?}");
    assert_eq!(resumed.from_ns, ORIGIN);
    assert!(resumed.archive_deleted > 0, "{resumed:?}");
    // pump-1 came from a snapshot (taken every 16,384 messages), not from the origin.
    assert!(resumed.fast_forwarded < 2000 + 1000, "{resumed:?}");
    second.finish().await.unwrap();
    store.insert_readings(&take(&lines)).await.unwrap();

    let want = expected();
    let got = stored(&store).await;
    assert_eq!(got.len(), want.len(), "no reading lost or stored twice");
    assert!(got == want, "the stored stream is the uninterrupted seeded stream");
    assert!(archived(&archive).await == got, "archive = store, each reading once");
}

#[tokio::test]
async fn without_saved_state_the_signals_restart_but_nothing_is_lost_or_repeated() {
    let (dir, store, archive) = setup().await;
    let state = dir.path().join("sentio.simulator.json");

    let lines = Lines::default();
    let mut first = simulator(&archive, &lines);
    resume_and_backfill(&mut first, &store, &state, ORIGIN, ORIGIN + 600 * SEC).await;
    first.finish().await.unwrap();
    store.insert_readings(&take(&lines)).await.unwrap();
    // A data directory from before the state file.
    std::fs::remove_file(&state).unwrap();

    let mut second = simulator(&archive, &lines);
    let resumed =
        resume_and_backfill(&mut second, &store, &state, ORIGIN, ORIGIN + 1200 * SEC).await;
    assert_eq!(resumed.restarted.len(), 3, "{resumed:?}");
    assert_eq!(resumed.from_ns, ORIGIN + 600 * SEC);
    second.finish().await.unwrap();
    store.insert_readings(&take(&lines)).await.unwrap();

    let got = stored(&store).await;
    let mut per: BTreeMap<(String, Channel), Vec<(i64, u64)>> = BTreeMap::new();
    for r in &got {
        per.entry((r.device.as_str().to_owned(), r.sensor.clone()))
            .or_default()
            .push((r.ts_ns, r.seq));
    }
    assert_eq!(per.len(), 12);
    for ((device, sensor), points) in per {
        let want: Vec<(i64, u64)> = (0..1200).map(|t| (ORIGIN + t * SEC, t as u64)).collect();
        assert_eq!(points, want, "{device} sensor {sensor}: every second once, seq going on");
    }
    assert!(archived(&archive).await == got, "archive = store, each reading once");
}

/// The window a restart wants (the last `demo.backfill` before now) moves with the clock. A run
/// killed before the store got a device's first readings must still publish them again: found
/// by the fault suite, where a pump joining the fleet lost its first second.
#[tokio::test]
async fn a_restart_soon_after_goes_back_before_its_window_for_what_was_lost_in_flight() {
    let (dir, store, archive) = setup().await;
    let state = dir.path().join("sentio.simulator.json");
    let lines = Lines::default();

    let mut first = simulator(&archive, &lines);
    resume_and_backfill(&mut first, &store, &state, ORIGIN, ORIGIN + 100 * SEC).await;
    drop(first);
    assert_eq!(take(&lines).len(), 3 * 100 * 4, "published, and lost with the process");

    let mut second = simulator(&archive, &lines);
    let resumed =
        resume_and_backfill(&mut second, &store, &state, ORIGIN + 50 * SEC, ORIGIN + TICKS * SEC)
            .await;
    assert_eq!(resumed.from_ns, ORIGIN, "{resumed:?}");
    second.finish().await.unwrap();
    store.insert_readings(&take(&lines)).await.unwrap();
    assert!(stored(&store).await == expected(), "the uninterrupted seeded stream");
}

/// A pump that joins the fleet backfills its history far behind the others' archive: a crash
/// between a publish and the archive write of its slices must still leave archive = store (found
/// by the fault suite: the archive's progress was one figure for the whole fleet).
#[tokio::test]
async fn a_pump_joining_the_fleet_gets_its_own_archive_progress() {
    let (dir, store, archive) = setup().await;
    let state = dir.path().join("sentio.simulator.json");
    let lines = Lines::default();
    let fleet = |devices: u32| {
        let mut c = config();
        c.devices = devices;
        let archiver = Archiver::new(archive.clone(), Duration::from_secs(60));
        Simulator::new(&c, Output::Lines(Box::new(lines.clone())), Some(archiver)).unwrap()
    };

    // Two pumps run 3,000 s (a snapshot records their archive progress at about 2,048 s).
    let mut first = fleet(2);
    resume_and_backfill(&mut first, &store, &state, ORIGIN, ORIGIN + 3000 * SEC).await;
    first.finish().await.unwrap();
    store.insert_readings(&take(&lines)).await.unwrap();

    // A third joins, its history starting at 1,000 s; killed after its readings to 2,500 s were
    // stored but before its slices were archived.
    let mut second = fleet(3);
    resume_and_backfill(&mut second, &store, &state, ORIGIN + 1000 * SEC, ORIGIN + 2500 * SEC)
        .await;
    drop(second);
    store.insert_readings(&take(&lines)).await.unwrap();
    let metas: Vec<_> = archive.list(None).try_collect().await.unwrap();
    for m in metas.iter().filter(|m| m.location.as_ref().contains("device=pump-03")) {
        archive.delete(&m.location).await.unwrap();
    }

    let mut third = fleet(3);
    resume_and_backfill(&mut third, &store, &state, ORIGIN + 1000 * SEC, ORIGIN + TICKS * SEC)
        .await;
    third.finish().await.unwrap();
    store.insert_readings(&take(&lines)).await.unwrap();
    assert!(archived(&archive).await == stored(&store).await, "archive = store, each reading once");
}
