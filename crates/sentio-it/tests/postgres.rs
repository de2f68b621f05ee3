#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The PostgreSQL store against the test PostgreSQL (settings from `scripts/services.sh up`).
//!
//! Each test creates its own database (the store creates it on connect) and drops it at the end,
//! even when it fails. A server that does not answer fails the test and names the script.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sentio_config::PostgresConfig;
use sentio_core::{Channel, DeviceId, Reading, SensorKind, Unit};
use sentio_it::{postgres, unique};
use sentio_store::contract::{everything, offset_reading, partition_batch};
use sentio_store::postgres::PostgresStore;
use sentio_store::{RangeQuery, ReadingStore, ScorePoint, StoreError, contract};
use tokio_postgres::NoTls;

/// A database of its own for one test, dropped (with its connections) when the test ends.
struct TestDb {
    config: PostgresConfig,
}

impl TestDb {
    fn new(prefix: &str) -> TestDb {
        TestDb { config: postgres(&unique(prefix)) }
    }

    fn named(dbname: &str) -> TestDb {
        TestDb { config: postgres(dbname) }
    }

    fn name(&self) -> &str {
        &self.config.dbname
    }

    /// A store on this database (created when missing), or a failure that names the script.
    async fn store(&self) -> PostgresStore {
        match PostgresStore::connect(&self.config).await {
            Ok(store) => store,
            Err(e) => panic!(
                "cannot open PostgreSQL at {}:{} as {}: {}\nstart the test servers with \
                 `scripts/services.sh up`",
                self.config.host,
                self.config.port,
                self.config.user,
                chain(&e)
            ),
        }
    }

    async fn migrated_store(&self) -> PostgresStore {
        let store = self.store().await;
        store.migrate().await.unwrap();
        store
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let config = self.config.clone();
        // Drop runs inside the test's runtime, which cannot block on itself: use a thread.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let admin = admin(&config, "postgres").await;
                let name = format!("\"{}\"", config.dbname.replace('"', "\"\""));
                admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test database {}: {e}", self.config.dbname),
            Err(_) => eprintln!("could not drop test database {}", self.config.dbname),
        }
    }
}

/// A plain tokio-postgres connection to `dbname` with the test settings (trust auth).
async fn admin(config: &PostgresConfig, dbname: &str) -> tokio_postgres::Client {
    let mut pg = tokio_postgres::Config::new();
    pg.host(&config.host).port(config.port).user(&config.user).dbname(dbname);
    let (client, connection) = pg.connect(NoTls).await.unwrap_or_else(|e| {
        panic!(
            "cannot reach PostgreSQL ({e}): start the test servers with `scripts/services.sh up`"
        )
    });
    tokio::spawn(connection);
    client
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Every offset in `0..n` stored exactly once, and the group's offset at `n`.
async fn assert_exactly_once(store: &PostgresStore, group: &str, n: u64) {
    let seqs: Vec<u64> =
        store.query_range(&everything()).await.unwrap().iter().map(|r| r.seq).collect();
    assert_eq!(seqs.len() as u64, n, "row count");
    assert_eq!(seqs, (0..n).collect::<Vec<_>>(), "each offset exactly once");
    assert_eq!(
        store.committed_offsets(group, "sensor-data").await.unwrap(),
        BTreeMap::from([(0, n)])
    );
}

// ---- the contract and migrations --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_on_a_fresh_database() {
    let db = TestDb::new("sentio_it_contract");
    let store = db.store().await;
    assert_eq!(store.applied_migrations().await.unwrap(), Vec::new(), "a fresh database");
    assert!(!store.migrate().await.unwrap().is_empty());
    contract::check_store(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_from_schema_2() {
    let db = TestDb::new("sentio_it_upgrade");
    contract::check_upgrade_from_schema_2(&db.store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_applied_once_across_connects() {
    let db = TestDb::new("sentio_it_migrate");
    let device = DeviceId::new("pump-01").unwrap();
    let (applied, stats) = {
        let store = db.store().await;
        let applied = store.migrate().await.unwrap();
        assert!(!applied.is_empty());
        assert_eq!(store.applied_migrations().await.unwrap(), applied);
        store.write_batch(&partition_batch("g", &device, 0, 0..100)).await.unwrap();
        (applied, store.stats().await.unwrap())
    };
    // A second process (a second pool) on the same, existing database.
    let store = db.store().await;
    assert!(store.migrate().await.unwrap().is_empty(), "migrations applied twice");
    assert_eq!(store.applied_migrations().await.unwrap(), applied);
    assert_eq!(store.stats().await.unwrap(), stats);
    let out = store.write_batch(&partition_batch("g", &device, 0, 50..150)).await.unwrap();
    assert_eq!((out.readings_inserted, out.replayed_skipped), (50, 50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_connects_and_migrations_apply_each_script_once() {
    // Four processes start at once on a database that does not exist yet: they all create it
    // (one wins) and all migrate (each script once, under the advisory lock).
    let db = TestDb::new("sentio_it_concurrent_migrate");
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let config = db.config.clone();
            tokio::spawn(async move {
                let store = PostgresStore::connect(&config).await.unwrap();
                let applied = store.migrate().await.unwrap();
                (store, applied)
            })
        })
        .collect();
    let mut applied = Vec::new();
    let mut stores = Vec::new();
    for t in tasks {
        let (store, a) = t.await.unwrap();
        applied.extend(a);
        stores.push(store);
    }
    applied.sort_by_key(|m| m.version);
    assert_eq!(applied, stores[0].applied_migrations().await.unwrap());
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let db = TestDb::new("sentio_it_too_new");
    let store = db.migrated_store().await;
    let known = store.applied_migrations().await.unwrap().last().unwrap().version;
    let admin = admin(&db.config, db.name()).await;
    admin
        .execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, 'from_the_future')",
            &[&i32::try_from(known + 7).unwrap()],
        )
        .await
        .unwrap();
    match store.migrate().await {
        Err(StoreError::SchemaTooNew { found, known: k }) => {
            assert_eq!((found, k), (known + 7, known))
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[tokio::test]
async fn a_corrupt_row_reads_as_corrupt() {
    let db = TestDb::new("sentio_it_corrupt");
    let store = db.migrated_store().await;
    let admin = admin(&db.config, db.name()).await;
    admin
        .batch_execute(
            "INSERT INTO sensor_readings (device, sensor, ts_ns, value, seq)
             VALUES ('d', 'pressure', 0, 1.0, -1)",
        )
        .await
        .unwrap();
    let err = store.query_range(&everything()).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn a_database_name_that_needs_quoting_is_created_whole() {
    let name = format!("{} Odd \"Name\"; --", unique("sentio_it"));
    let db = TestDb::named(&name);
    let store = db.migrated_store().await;
    store.insert_readings(&[offset_reading(&DeviceId::new("q").unwrap(), 0)]).await.unwrap();
    let admin = admin(&db.config, "postgres").await;
    let found: i64 = admin
        .query_one("SELECT count(*) FROM pg_database WHERE datname = $1", &[&name])
        .await
        .unwrap()
        .get(0);
    assert_eq!(found, 1);
}

#[tokio::test]
async fn range_queries_order_device_names_by_bytes() {
    // A database whose default collation sorts like a dictionary (ICU en-US: "a-3" < "A-4" <
    // "B-2"); the store still promises byte order, as SQLite sorts.
    let db = TestDb::new("sentio_it_collation");
    let admin = admin(&db.config, "postgres").await;
    admin
        .batch_execute(&format!(
            "CREATE DATABASE \"{}\" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' \
             LOCALE 'C.UTF-8'",
            db.name()
        ))
        .await
        .unwrap();
    let store = db.migrated_store().await;
    let in_db = default_order_is_bytewise(&db).await;
    assert!(!in_db, "the database should sort 'B-2' after 'a-3' by default");
    let names = ["b-1", "B-2", "a-3", "A-4", "_5", "a_6", "a-6", "z"];
    let rows: Vec<Reading> =
        names.iter().map(|n| offset_reading(&DeviceId::new(n).unwrap(), 0)).collect();
    store.insert_readings(&rows).await.unwrap();
    let mut expected: Vec<&str> = names.to_vec();
    expected.sort_unstable();
    let all = store.query_range(&everything()).await.unwrap();
    assert_eq!(all.iter().map(|r| r.device.as_str()).collect::<Vec<_>>(), expected);
    let query =
        RangeQuery { devices: rows.iter().map(|r| r.device.clone()).collect(), ..everything() };
    let listed = store.query_range(&query).await.unwrap();
    assert_eq!(listed, all);
}

/// The reads a dashboard polls probe `sensor_readings_device_ts` and the primary key of
/// `anomaly_scores` (a loose index scan over the devices, then per device a time range; for the
/// newest readings, the channel catalog, then per channel reported since then a backward probe)
/// and scan neither table, on tables large enough, and analyzed, for the planner to choose by
/// cost.
#[tokio::test]
async fn dashboard_reads_probe_the_indexes_and_scan_no_table() {
    let db = TestDb::new("sentio_it_explain");
    let store = db.migrated_store().await;
    const DEVICES: usize = 20;
    const PER_DEVICE: u64 = 4_000;
    let devices: Vec<DeviceId> =
        (0..DEVICES).map(|i| DeviceId::new(&format!("pump-{i:02}")).unwrap()).collect();
    let mut rows: Vec<Reading> =
        devices.iter().flat_map(|d| (0..PER_DEVICE).map(|o| offset_reading(d, o))).collect();
    // Five machines report a fifth channel, and had a sixth that stopped before `since`: the
    // catalog skips that one without probing the readings.
    const MORE: usize = 5;
    for d in &devices[..MORE] {
        let channel = |name: &str, unit: &str, offset: u64| Reading {
            sensor: Channel::new(name).unwrap(),
            unit: Unit::new(unit).unwrap(),
            ..offset_reading(d, offset)
        };
        rows.extend((0..PER_DEVICE).step_by(4).map(|o| channel("current", "A", o)));
        rows.extend((0..100).map(|o| channel("spare", "", o)));
    }
    store.insert_readings(&rows).await.unwrap();
    let points: Vec<ScorePoint> = rows
        .iter()
        .filter(|r| r.sensor == SensorKind::Humidity)
        .map(|r| ScorePoint {
            device: r.device.clone(),
            ts_ns: r.ts_ns,
            score: r.value / 100.0,
            threshold: 0.4,
            top_sensor: SensorKind::Pressure.into(),
            model_version: "1".to_owned(),
        })
        .collect();
    let started = Instant::now();
    assert_eq!(store.save_scores(&points).await.unwrap(), points.len() as u64);
    eprintln!("save_scores of {} points: {:?}", points.len(), started.elapsed());
    admin(&db.config, db.name()).await.batch_execute("ANALYZE").await.unwrap();

    // The last 100 readings of each device.
    let since = offset_reading(&devices[0], PER_DEVICE - 100).ts_ns;
    let latest = store.latest_readings(since).await.unwrap();
    assert_eq!(latest.len(), DEVICES * 4 + MORE);
    assert!(latest.iter().all(|r| r.seq >= PER_DEVICE - 4), "the newest of each channel");
    assert!(latest.iter().all(|r| r.sensor.as_str() != "spare"));
    assert_eq!(store.devices().await.unwrap(), devices);
    assert_eq!(store.channels().await.unwrap().len(), DEVICES * 4 + 2 * MORE);

    for (read, plan) in store.explain_reads(since, devices[3].as_str()).await.unwrap() {
        let text = plan.join("\n");
        eprintln!("{read}:\n{text}\n");
        for table in ["sensor_readings", "anomaly_scores"] {
            assert!(!text.contains(&format!("Seq Scan on {table}")), "{read} scans:\n{text}");
        }
        if read == "channels" {
            assert!(!text.contains("sensor_readings"), "{read}:\n{text}");
            continue;
        }
        if read == "latest_readings" {
            // The catalog (a row per device and channel) read whole, the channels not reported
            // since then filtered out there; per channel left, the newest entries of the
            // device's range, read backwards.
            assert!(text.contains("on channels c"), "{read}:\n{text}");
            let probe = "Index Scan Backward using sensor_readings_device_ts on sensor_readings x";
            assert!(text.contains(probe), "{read}:\n{text}");
            assert!(text.contains(&format!("loops={})", DEVICES * 4 + MORE)), "{read}:\n{text}");
            continue;
        }
        let index = if read.starts_with("scores") {
            "anomaly_scores_pkey"
        } else {
            "sensor_readings_device_ts"
        };
        assert!(text.contains(&format!("Scan using {index}")), "{read}:\n{text}");
        if read != "scores: one device" {
            // The loose index scan: one probe past the previous device, once per device.
            assert!(text.contains("Index Cond: (device > d"), "{read}:\n{text}");
            assert!(text.contains(&format!("loops={DEVICES})")), "{read}:\n{text}");
        }
    }
}

/// Whether the database's default collation sorts 'B-2' before 'a-3' (byte order does).
async fn default_order_is_bytewise(db: &TestDb) -> bool {
    let client = admin(&db.config, db.name()).await;
    client.query_one("SELECT 'B-2' < 'a-3'", &[]).await.unwrap().get(0)
}

// ---- concurrency ------------------------------------------------------------------------------

/// Competing consumers of one partition (a rebalance that hands it over while the old owner is
/// still writing) each write every batch from offset 0 on, in their own batch sizes, through
/// separate pools (as separate processes would). Every offset is stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_never_duplicate() {
    const N: u64 = 3_000;
    const WRITERS: u64 = 6;
    let db = TestDb::new("sentio_it_race");
    let mut stores = vec![db.migrated_store().await];
    for _ in 0..2 {
        stores.push(db.store().await);
    }
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
    assert_exactly_once(&stores[0], "race", N).await;
}

/// Writers of different partitions whose batches share channels (here every writer writes every
/// device, half of them in the opposite order) lock the shared catalog rows in one order, so they
/// wait for each other but never deadlock: with retries off, a deadlock would fail a batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_sharing_channels_never_deadlock() {
    const WRITERS: u32 = 4;
    const BATCHES: u64 = 25;
    const DEVICES: usize = 40;
    let db = TestDb::new("sentio_it_catalog_locks");
    let store = db.migrated_store().await.with_retry_for(Duration::ZERO);
    let devices: Vec<DeviceId> =
        (0..DEVICES).map(|i| DeviceId::new(&format!("lock-{i:02}")).unwrap()).collect();
    let per_batch = (DEVICES * 4) as u64;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, mut devices) = (store.clone(), devices.clone());
            if w % 2 == 1 {
                devices.reverse();
            }
            tokio::spawn(async move {
                for b in 0..BATCHES {
                    let mut batch = partition_batch("g", &devices[0], w, 0..0);
                    let start = b * per_batch;
                    for (i, (d, kind)) in
                        devices.iter().flat_map(|d| SensorKind::ALL.map(|k| (d, k))).enumerate()
                    {
                        let offset = start + i as u64;
                        let r = Reading::pump(d.clone(), kind, b as i64 * 1_000 + w as i64, 1.0, b);
                        batch
                            .readings
                            .push((sentio_store::SourceOffset { partition: w, offset }, r));
                    }
                    batch.next_offsets = BTreeMap::from([(w, start + per_batch)]);
                    let out = store
                        .write_batch(&batch)
                        .await
                        .unwrap_or_else(|e| panic!("writer {w}, batch {b}: {}", chain(&e)));
                    assert_eq!(out.readings_inserted, per_batch);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let catalog = store.channels().await.unwrap();
    assert_eq!(catalog.len(), DEVICES * 4);
    let last = (BATCHES as i64 - 1) * 1_000 + WRITERS as i64 - 1;
    assert!(catalog.iter().all(|c| (c.first_ts_ns, c.last_ts_ns) == (0, last)), "{catalog:#?}");
    assert_eq!(store.stats().await.unwrap().readings, u64::from(WRITERS) * BATCHES * per_batch);
}

/// Writers of different partitions do not wait for each other: one holds partition 0 (its lock
/// taken from outside), and a batch for partition 1 still commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_partitions_are_not_blocked() {
    let db = TestDb::new("sentio_it_partitions");
    let store = db.migrated_store().await;
    let device = DeviceId::new("p").unwrap();
    let mut admin = admin(&db.config, db.name()).await;
    let tx = admin.transaction().await.unwrap();
    lock_partition(&tx, "g", 0).await;
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        store.write_batch(&partition_batch("g", &device, 1, 0..10)),
    )
    .await
    .expect("partition 1 waited for partition 0")
    .unwrap();
    assert_eq!(out.readings_inserted, 10);
    tx.rollback().await.unwrap();
}

// ---- lost connections -------------------------------------------------------------------------

/// Takes the lock `write_batch` takes for (`group`, sensor-data, `partition`), until `tx` ends.
async fn lock_partition(tx: &tokio_postgres::Transaction<'_>, group: &str, partition: i64) {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, $3))",
        &[&group, &"sensor-data", &partition],
    )
    .await
    .unwrap();
}

/// Waits (30 s at most) until a backend of the store's database, other than `admin`'s, waits for
/// an advisory lock; returns its pid.
async fn waiting_backend(admin: &tokio_postgres::Client, dbname: &str, not: Option<i32>) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let row = admin
            .query_opt(
                "SELECT pid FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid() AND application_name = 'sentio'
                   AND wait_event_type = 'Lock' AND wait_event = 'advisory'
                   AND pid IS DISTINCT FROM $2
                 LIMIT 1",
                &[&dbname, &not],
            )
            .await
            .unwrap();
        if let Some(row) = row {
            return row.get(0);
        }
        assert!(Instant::now() < deadline, "no store connection came to wait on the lock");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Terminates every connection the store holds to `dbname`; returns how many.
async fn terminate_store_connections(admin: &tokio_postgres::Client, dbname: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid() AND application_name = 'sentio'",
            &[&dbname],
        )
        .await
        .unwrap()
        .get(0)
}

/// A connection killed in the middle of a batch's transaction: the store reconnects and writes
/// the batch once, by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_killed_mid_batch_is_retried_without_loss() {
    let db = TestDb::new("sentio_it_kill_mid_batch");
    let store = Arc::new(db.migrated_store().await);
    let device = DeviceId::new("kill-01").unwrap();
    store.write_batch(&partition_batch("g", &device, 0, 0..1_000)).await.unwrap();

    // One connection holds the lock; another watches and kills (pg_stat_activity is a snapshot
    // for the length of a transaction, so it must not be the lock holder's).
    let mut admin_conn = admin(&db.config, db.name()).await;
    let admin_tx = admin_conn.transaction().await.unwrap();
    let monitor = admin(&db.config, db.name()).await;
    lock_partition(&admin_tx, "g", 0).await;
    let writer = {
        let (store, device) = (Arc::clone(&store), device.clone());
        tokio::spawn(async move {
            store.write_batch(&partition_batch("g", &device, 0, 1_000..2_000)).await
        })
    };
    // The batch's transaction is open and waits for the partition: kill its connection.
    let first = waiting_backend(&monitor, db.name(), None).await;
    let killed = terminate_store_connections(&monitor, db.name()).await;
    assert!(killed >= 1);
    // The store retries on a new connection, which waits for the lock again.
    let second = waiting_backend(&monitor, db.name(), Some(first)).await;
    assert_ne!(first, second);
    admin_tx.commit().await.unwrap();

    let out = writer.await.unwrap().unwrap();
    assert_eq!((out.readings_inserted, out.replayed_skipped), (1_000, 0));
    assert_exactly_once(&store, "g", 2_000).await;
}

/// With retries off, a killed connection surfaces as a transient error, nothing of the batch is
/// written, and the next call gets a fresh connection from the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_retries_a_killed_connection_is_a_transient_error() {
    let db = TestDb::new("sentio_it_kill_transient");
    let mut config = db.config.clone();
    config.pool_size = 1;
    let store =
        Arc::new(PostgresStore::connect(&config).await.unwrap().with_retry_for(Duration::ZERO));
    store.migrate().await.unwrap();
    let device = DeviceId::new("kill-02").unwrap();
    store.write_batch(&partition_batch("g", &device, 0, 0..500)).await.unwrap();

    // One connection holds the lock; another watches and kills (pg_stat_activity is a snapshot
    // for the length of a transaction, so it must not be the lock holder's).
    let mut admin_conn = admin(&db.config, db.name()).await;
    let admin_tx = admin_conn.transaction().await.unwrap();
    let monitor = admin(&db.config, db.name()).await;
    lock_partition(&admin_tx, "g", 0).await;
    let writer = {
        let (store, device) = (Arc::clone(&store), device.clone());
        tokio::spawn(async move {
            store.write_batch(&partition_batch("g", &device, 0, 500..1_000)).await
        })
    };
    waiting_backend(&monitor, db.name(), None).await;
    assert!(terminate_store_connections(&monitor, db.name()).await >= 1);
    let err = writer.await.unwrap().unwrap_err();
    assert!(err.is_transient(), "a killed connection must be transient: {}", chain(&err));
    admin_tx.commit().await.unwrap();

    // Nothing of the failed batch is stored; the caller's retry (what a service loop does on a
    // transient error) writes it whole. The pool may hand out the dead connection once more
    // before it notices; that too is transient.
    let deadline = Instant::now() + Duration::from_secs(30);
    let out = loop {
        match store.write_batch(&partition_batch("g", &device, 0, 500..1_000)).await {
            Ok(out) => break out,
            Err(e) if e.is_transient() && Instant::now() < deadline => continue,
            Err(e) => panic!("the store did not recover: {}", chain(&e)),
        }
    };
    assert_eq!((out.readings_inserted, out.replayed_skipped), (500, 0));
    assert_exactly_once(&store, "g", 1_000).await;
}

/// A series of writes while every connection is terminated, again and again, between and during
/// batches: no batch fails, no row is lost or duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_survive_repeated_terminations() {
    const BATCHES: u64 = 60;
    const SIZE: u64 = 500;
    let db = TestDb::new("sentio_it_terminate");
    let store = Arc::new(db.migrated_store().await);
    let device = DeviceId::new("term-01").unwrap();
    let (progress_tx, mut progress) = tokio::sync::mpsc::channel::<u64>(BATCHES as usize);
    let writer = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for b in 0..BATCHES {
                let out = store
                    .write_batch(&partition_batch("g", &device, 0, b * SIZE..(b + 1) * SIZE))
                    .await
                    .unwrap_or_else(|e| panic!("batch {b} failed: {}", chain(&e)));
                // A retry after a commit whose answer was lost skips instead of inserting.
                assert_eq!(out.readings_inserted + out.replayed_skipped, SIZE);
                progress_tx.send(b).await.unwrap();
            }
        })
    };
    let admin = admin(&db.config, db.name()).await;
    let mut terminated = 0;
    while let Some(b) = progress.recv().await {
        if b % 10 == 5 {
            terminated += terminate_store_connections(&admin, db.name()).await;
        }
    }
    writer.await.unwrap();
    assert!(terminated >= 1, "no connection was terminated");
    assert_exactly_once(&store, "g", BATCHES * SIZE).await;
    assert_eq!(store.stats().await.unwrap().readings, BATCHES * SIZE);
}

#[tokio::test]
async fn a_server_that_does_not_answer_is_a_transient_open_error() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut config = postgres("sentio_nowhere");
    config.host = "127.0.0.1".to_owned();
    config.port = port;
    let err = PostgresStore::connect(&config).await.unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert!(err.is_transient(), "{}", chain(&err));
    assert!(!err.to_string().contains("password"), "{err}");
}
