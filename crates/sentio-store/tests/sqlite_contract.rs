//! The store contract on SQLite (a file and in memory), and what only SQLite must show: reopening
//! a file, refusing a newer schema, exactly-once when several writers race.
// Helpers shared by the tests below are not `#[test]` functions themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use sentio_core::DeviceId;
use sentio_store::contract::{everything, partition_batch};
use sentio_store::sqlite::SqliteStore;
use sentio_store::{ReadingStore, StoreError, contract};

#[tokio::test]
async fn contract_on_a_file() {
    let dir = tempfile::tempdir().unwrap();
    // Parent directories are created.
    let store = SqliteStore::open(&dir.path().join("a/b/store.db")).unwrap();
    assert!(!store.migrate().await.unwrap().is_empty());
    contract::check_store(&store).await;
}

#[tokio::test]
async fn contract_in_memory() {
    let store = SqliteStore::open_in_memory().unwrap();
    assert!(!store.migrate().await.unwrap().is_empty());
    contract::check_store(&store).await;
}

#[tokio::test]
async fn upgrade_from_schema_2_in_memory() {
    contract::check_upgrade_from_schema_2(&SqliteStore::open_in_memory().unwrap()).await;
}

#[tokio::test]
async fn upgrade_from_schema_2_on_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    contract::check_upgrade_from_schema_2(&SqliteStore::open(&path).unwrap()).await;
    // And another process (a second handle) sees the upgraded file as it is.
    let store = SqliteStore::open(&path).unwrap();
    assert!(store.migrate().await.unwrap().is_empty());
    assert_eq!(store.channels().await.unwrap().len(), 6);
}

#[tokio::test]
async fn a_reopened_file_keeps_its_data_and_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let device = DeviceId::new("pump-01").unwrap();
    let (applied, stats, rows) = {
        let store = SqliteStore::open(&path).unwrap();
        let applied = store.migrate().await.unwrap();
        assert_eq!(store.applied_migrations().await.unwrap(), applied);
        store.write_batch(&partition_batch("g", &device, 0, 0..100)).await.unwrap();
        (applied, store.stats().await.unwrap(), store.query_range(&everything()).await.unwrap())
    };
    assert_eq!(rows.len(), 100);

    let store = SqliteStore::open(&path).unwrap();
    assert!(store.migrate().await.unwrap().is_empty(), "migrations applied twice");
    assert_eq!(store.applied_migrations().await.unwrap(), applied);
    assert_eq!(store.stats().await.unwrap(), stats);
    assert_eq!(store.query_range(&everything()).await.unwrap(), rows);
    assert_eq!(
        store.committed_offsets("g", "sensor-data").await.unwrap(),
        BTreeMap::from([(0, 100)])
    );
    // And it resumes where it stopped.
    let out = store.write_batch(&partition_batch("g", &device, 0, 50..150)).await.unwrap();
    assert_eq!((out.readings_inserted, out.replayed_skipped), (50, 50));
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = SqliteStore::open(&path).unwrap();
    let applied = store.migrate().await.unwrap();
    let known = applied.last().unwrap().version;

    // A newer sentio migrated this file.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO schema_migrations (version, name) VALUES (?1, 'from_the_future')",
        [known + 7],
    )
    .unwrap();
    drop(conn);

    match store.migrate().await {
        Err(StoreError::SchemaTooNew { found, known: k }) => {
            assert_eq!((found, k), (known + 7, known));
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    let reopened = SqliteStore::open(&path).unwrap();
    let err = reopened.migrate().await.unwrap_err();
    assert!(matches!(err, StoreError::SchemaTooNew { .. }), "{err:?}");
    assert!(err.to_string().contains("upgrade sentio"), "{err}");
}

#[tokio::test]
async fn a_corrupt_row_reads_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = SqliteStore::open(&path).unwrap();
    store.migrate().await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO sensor_readings (device, sensor, ts_ns, value, seq) VALUES ('d', 'pressure', 0, 1.0, -1)",
        [],
    )
    .unwrap();
    drop(conn);
    let err = store.query_range(&everything()).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
}

/// Competing consumers of one partition (a rebalance that hands it over while the old owner is
/// still writing) each write every batch from offset 0 on, in their own batch sizes. Whatever the
/// interleaving, every offset is stored exactly once.
async fn race(stores: Vec<SqliteStore>) {
    const N: u64 = 3_000;
    const WRITERS: u64 = 6;
    let device = DeviceId::new("race-01").unwrap();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = stores[w as usize % stores.len()].clone();
        let device = device.clone();
        tasks.push(tokio::spawn(async move {
            let size = 97 + w * 61;
            let (mut inserted, mut skipped, mut start) = (0, 0, 0);
            while start < N {
                let end = (start + size).min(N);
                let out = store
                    .write_batch(&partition_batch("race", &device, 0, start..end))
                    .await
                    .unwrap();
                assert_eq!(out.readings_inserted + out.replayed_skipped, end - start);
                inserted += out.readings_inserted;
                skipped += out.replayed_skipped;
                start = end;
            }
            (inserted, skipped)
        }));
    }
    let (mut inserted, mut skipped) = (0, 0);
    for t in tasks {
        let (i, s) = t.await.unwrap();
        inserted += i;
        skipped += s;
    }
    assert_eq!(inserted, N, "rows inserted over all writers");
    assert_eq!(skipped, N * (WRITERS - 1));
    let store = &stores[0];
    let seqs: Vec<u64> =
        store.query_range(&everything()).await.unwrap().iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (0..N).collect::<Vec<_>>(), "each offset exactly once");
    assert_eq!(
        store.committed_offsets("race", "sensor-data").await.unwrap(),
        BTreeMap::from([(0, N)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_on_one_handle_never_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("store.db")).unwrap();
    store.migrate().await.unwrap();
    race(vec![store]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_on_separate_connections_never_duplicate() {
    // Separate handles are separate connections, as separate processes would be: they serialize
    // on the file's write lock, not on our mutex.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let stores: Vec<SqliteStore> = (0..3).map(|_| SqliteStore::open(&path).unwrap()).collect();
    stores[0].migrate().await.unwrap();
    race(stores).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_apply_each_script_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let stores: Vec<Arc<SqliteStore>> =
        (0..4).map(|_| Arc::new(SqliteStore::open(&path).unwrap())).collect();
    let tasks: Vec<_> = stores
        .iter()
        .map(|s| {
            let s = Arc::clone(s);
            tokio::spawn(async move { s.migrate().await.unwrap() })
        })
        .collect();
    let mut applied = Vec::new();
    for t in tasks {
        applied.extend(t.await.unwrap());
    }
    assert_eq!(applied, stores[0].applied_migrations().await.unwrap());
}

/// Times `write_batch` of 5,000 readings (50 devices) on a file and in memory, where no fsync
/// hides the statements' own cost (run with
/// `cargo test --release -p sentio-store --test sqlite_contract -- --ignored --nocapture`).
#[tokio::test]
#[ignore = "timing, not a test"]
async fn time_write_batch_of_5000() {
    let dir = tempfile::tempdir().unwrap();
    let on_file = SqliteStore::open(&dir.path().join("store.db")).unwrap();
    time_write_batch("on a file", &on_file, 20).await;
    time_write_batch("in memory", &SqliteStore::open_in_memory().unwrap(), 200).await;
}

async fn time_write_batch(label: &str, store: &SqliteStore, rounds: u64) {
    store.migrate().await.unwrap();
    let devices: Vec<DeviceId> =
        (0..50).map(|i| DeviceId::new(&format!("pump-{i:02}")).unwrap()).collect();
    let mut times = Vec::new();
    for round in 0..rounds {
        let mut b = partition_batch("bench", &devices[0], 0, round * 5_000..(round + 1) * 5_000);
        for (i, (_, r)) in b.readings.iter_mut().enumerate() {
            r.device = devices[i % devices.len()].clone();
        }
        let started = Instant::now();
        let out = store.write_batch(&b).await.unwrap();
        times.push(started.elapsed().as_secs_f64() * 1e3);
        assert_eq!(out.readings_inserted, 5_000);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "write_batch(5000) {label}, {rounds} rounds: min {:.2} ms, median {median:.2} ms \
         ({:.0} readings/s), max {:.2} ms",
        times[0],
        5_000.0 / median * 1e3,
        times[times.len() - 1]
    );
}
