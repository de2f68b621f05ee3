//! The object storage contract, written once and run against every backend: the local directory in
//! this crate's tests, an S3 server in the integration tests.
//!
//! Everything happens under `prefix` (give each run its own) and is deleted at the end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, PutPayload};
use sentio_core::{AnomalyKind, DeviceId, Reading, SensorKind};

use crate::{ArchiveReport, Archiver, RawBatch, parse_raw_key};

/// Keys in the listing check: more than one S3 `ListObjectsV2` page (1000 keys).
const LIST_KEYS: usize = 1050;
const MIB: usize = 1024 * 1024;

/// Runs every check against `store`, under `prefix` (a path such as `contract/run-1234`).
pub async fn check_objects(store: Arc<dyn ObjectStore>, prefix: &str) {
    let prefix = Path::from(prefix);
    assert!(prefix.parts().count() > 0, "check_objects needs a non-empty prefix");
    let scoped: Arc<dyn ObjectStore> =
        Arc::new(PrefixStore::new(Arc::clone(&store), prefix.clone()));

    round_trips_bytes(scoped.as_ref()).await;
    overwrites(scoped.as_ref()).await;
    lists_by_prefix(scoped.as_ref()).await;
    heads_and_deletes(scoped.as_ref()).await;
    missing_keys_are_not_found(scoped.as_ref()).await;
    archiver_round_trip(Arc::clone(&scoped)).await;

    // Everything written is under the prefix, seen from the unscoped store too.
    let all: Vec<Path> =
        store.list(Some(&prefix)).map_ok(|m| m.location).try_collect().await.unwrap();
    assert!(!all.is_empty());
    assert!(
        all.iter().all(|p| p.prefix_matches(&prefix)),
        "listing {prefix} returned foreign keys"
    );

    // Clean up, and check that nothing is left.
    let deleted: Vec<Path> = store
        .delete_stream(futures::stream::iter(all.into_iter().map(Ok)).boxed())
        .try_collect()
        .await
        .unwrap();
    assert!(!deleted.is_empty());
    let left: Vec<_> = store.list(Some(&prefix)).try_collect().await.unwrap();
    assert!(left.is_empty(), "{} objects left under {prefix} after cleanup", left.len());
}

async fn get_bytes(store: &dyn ObjectStore, key: &Path) -> Vec<u8> {
    store
        .get(key)
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e}"))
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("read body of {key}: {e}"))
        .to_vec()
}

async fn put(store: &dyn ObjectStore, key: &Path, bytes: Vec<u8>) {
    store.put(key, PutPayload::from(bytes)).await.unwrap_or_else(|e| panic!("put {key}: {e}"));
}

/// Deterministic bytes that are not all alike, so that a shifted or truncated body shows.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

async fn round_trips_bytes(store: &dyn ObjectStore) {
    for (name, bytes) in [
        ("empty", Vec::new()),
        ("small", b"hello, sentio".to_vec()),
        ("binary", (0..=255u8).collect()),
        ("five-mib", pattern(5 * MIB + 3, 1)),
    ] {
        let key = Path::from(format!("bytes/{name}.bin"));
        put(store, &key, bytes.clone()).await;
        let got = get_bytes(store, &key).await;
        assert_eq!(got.len(), bytes.len(), "length of {key}");
        assert!(got == bytes, "content of {key} differs");
        let meta = store.head(&key).await.unwrap();
        assert_eq!(meta.size, bytes.len() as u64, "head size of {key}");
        assert_eq!(meta.location, key);
    }
    // A range of the large object.
    let key = Path::from("bytes/five-mib.bin");
    let range = store.get_range(&key, 1_000_000..1_000_100).await.unwrap();
    assert_eq!(range.as_ref(), &pattern(5 * MIB + 3, 1)[1_000_000..1_000_100]);
}

async fn overwrites(store: &dyn ObjectStore) {
    let key = Path::from("overwrite/object.bin");
    put(store, &key, pattern(10_000, 2)).await;
    put(store, &key, b"second".to_vec()).await;
    assert_eq!(get_bytes(store, &key).await, b"second");
    assert_eq!(store.head(&key).await.unwrap().size, 6);
}

async fn lists_by_prefix(store: &dyn ObjectStore) {
    // Hive-style partitions, and a sibling whose name starts like the listed folder.
    let inside: Vec<Path> = (0..LIST_KEYS)
        .map(|i| {
            Path::from(format!("list/raw/date=2026-11-24/device=pump-{:02}/{i:05}.pickle", i % 7))
        })
        .collect();
    let outside = [
        Path::from("list/raw/date=2026-11-25/device=pump-00/x.pickle"),
        Path::from("list/raw/date=2026-11-24x/device=pump-00/x.pickle"),
        Path::from("list/other/y.bin"),
    ];
    futures::stream::iter(inside.iter().chain(&outside))
        .map(|key| async move { put(store, key, key.to_string().into_bytes()).await })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;

    let listed = |p: &'static str| async move {
        let mut keys: Vec<Path> =
            store.list(Some(&Path::from(p))).map_ok(|m| m.location).try_collect().await.unwrap();
        keys.sort();
        keys
    };
    let mut expected = inside.clone();
    expected.sort();
    assert_eq!(listed("list/raw/date=2026-11-24").await, expected, "list of one date partition");

    let pump_03: Vec<Path> =
        expected.iter().filter(|k| k.as_ref().contains("device=pump-03/")).cloned().collect();
    assert_eq!(pump_03.len(), LIST_KEYS / 7);
    assert_eq!(listed("list/raw/date=2026-11-24/device=pump-03").await, pump_03);
    assert_eq!(listed("list/raw").await.len(), LIST_KEYS + 2);
    assert!(listed("list/raw/date=2026-11-26").await.is_empty());

    // Listing with a delimiter gives the partitions.
    let result = store.list_with_delimiter(Some(&Path::from("list/raw"))).await.unwrap();
    assert!(result.objects.is_empty());
    let mut partitions: Vec<String> = result.common_prefixes.iter().map(Path::to_string).collect();
    partitions.sort();
    assert_eq!(
        partitions,
        ["list/raw/date=2026-11-24", "list/raw/date=2026-11-24x", "list/raw/date=2026-11-25"]
    );
    let devices =
        store.list_with_delimiter(Some(&Path::from("list/raw/date=2026-11-24"))).await.unwrap();
    assert_eq!(devices.common_prefixes.len(), 7);

    // Every listed object reports its size.
    let sizes: BTreeMap<Path, u64> = store
        .list(Some(&Path::from("list/other")))
        .map_ok(|m| (m.location, m.size))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(sizes, BTreeMap::from([(Path::from("list/other/y.bin"), 16)]));
}

async fn heads_and_deletes(store: &dyn ObjectStore) {
    let key = Path::from("delete/date=2026-11-24/device=pump-07/object.bin");
    put(store, &key, pattern(1234, 3)).await;
    assert_eq!(store.head(&key).await.unwrap().size, 1234);
    store.delete(&key).await.unwrap();
    assert!(matches!(store.head(&key).await, Err(object_store::Error::NotFound { .. })));
    assert!(matches!(store.get(&key).await, Err(object_store::Error::NotFound { .. })));
    let left: Vec<_> = store.list(Some(&Path::from("delete"))).try_collect().await.unwrap();
    assert!(left.is_empty(), "deleted object still listed");
}

async fn missing_keys_are_not_found(store: &dyn ObjectStore) {
    let key = Path::from("missing/date=2026-11-24/nothing.pickle");
    match store.get(&key).await {
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => panic!("get of a missing key: expected NotFound, got {e:?}"),
        Ok(_) => panic!("get of a missing key succeeded"),
    }
    assert!(matches!(store.head(&key).await, Err(object_store::Error::NotFound { .. })));
}

/// Readings for 2 devices over 3 one-minute slices that cross midnight UTC.
fn archive_readings() -> Vec<Reading> {
    const SEC: i64 = 1_000_000_000;
    // 2026-11-24T23:58:00Z: the slices are 23:58, 23:59 and 00:00 (the next day).
    let start = (1_795_478_400 + 86_400 - 120) * SEC;
    let mut out = Vec::new();
    for device in ["pump-07", "fan.2"] {
        let device = DeviceId::new(device).unwrap();
        for step in 0..36i64 {
            for (i, sensor) in SensorKind::ALL.into_iter().enumerate() {
                let n = step * 4 + i as i64;
                out.push(Reading {
                    device: device.clone(),
                    sensor: sensor.into(),
                    unit: sensor.into(),
                    // Every 5 s, with a sub-millisecond jitter per sensor.
                    ts_ns: start + step * 5 * SEC + n * 1_237,
                    value: (n as f64 * 0.37).sin() * 100.0 - 20.0,
                    seq: step as u64,
                    injected: (step % 11 == 3)
                        .then(|| AnomalyKind::ALL.into_iter().find(|k| k.sensor() == Some(sensor)))
                        .flatten(),
                    // Some stamped on arrival at a bridge: the mark survives the archive.
                    ts_source: if step % 7 == 2 {
                        sentio_core::TsSource::Arrival
                    } else {
                        sentio_core::TsSource::Event
                    },
                });
            }
        }
    }
    out
}

async fn archiver_round_trip(store: Arc<dyn ObjectStore>) {
    const MINUTE: i64 = 60_000_000_000;
    let pushed = archive_readings();
    let mut archiver = Archiver::new(Arc::clone(&store), Duration::from_secs(60));
    for r in &pushed {
        archiver.push(r);
    }
    let first_slice = archiver.slice_start(pushed[0].ts_ns);

    // A watermark inside the third slice writes the first two slices of both devices.
    let report = archiver.flush_before(first_slice + 2 * MINUTE + 1).await.unwrap();
    assert_eq!(report, ArchiveReport { objects: 4, readings: 2 * 2 * 12 * 4 });
    let report = archiver.flush_all().await.unwrap();
    assert_eq!(report, ArchiveReport { objects: 2, readings: 2 * 12 * 4 });
    assert_eq!(archiver.objects_written(), 6);
    assert_eq!(archiver.readings_written(), pushed.len() as u64);
    assert_eq!(archiver.buffered_readings(), 0);

    let keys: Vec<Path> =
        store.list(Some(&Path::from("raw"))).map_ok(|m| m.location).try_collect().await.unwrap();
    assert_eq!(keys.len(), 6, "objects in the archive: {keys:?}");
    let dates: std::collections::BTreeSet<String> =
        keys.iter().map(|k| parse_raw_key(k).unwrap().date.to_string()).collect();
    assert_eq!(dates.into_iter().collect::<Vec<_>>(), ["2026-11-24", "2026-11-25"]);

    let mut read_back = Vec::new();
    for key in &keys {
        let parsed = parse_raw_key(key).unwrap_or_else(|e| panic!("{key}: {e}"));
        let batch = RawBatch::from_pickle(&get_bytes(store.as_ref(), key).await).unwrap();
        let readings = batch.readings().unwrap();
        assert!(!readings.is_empty());
        assert!(readings.iter().all(|r| r.device == parsed.device), "{key} holds another device");
        let slice = archiver.slice_start(readings[0].ts_ns);
        assert!(
            readings.iter().all(|r| archiver.slice_start(r.ts_ns) == slice),
            "{key} spans slices"
        );
        assert_eq!(crate::layout::truncate_to_millis(batch.first_ts().unwrap()), parsed.first_ns);
        assert_eq!(crate::layout::truncate_to_millis(batch.last_ts().unwrap()), parsed.last_ns);
        read_back.extend(readings);
    }
    let order = |a: &Reading, b: &Reading| {
        (&a.device, a.ts_ns, &a.sensor).cmp(&(&b.device, b.ts_ns, &b.sensor))
    };
    let mut expected = pushed;
    expected.sort_by(order);
    read_back.sort_by(order);
    assert_eq!(read_back.len(), expected.len());
    assert!(read_back == expected, "readings read back differ from those pushed");
}
