//! The embedded backend: one SQLite file (rusqlite, bundled).
//!
//! rusqlite is blocking, so every call runs in `spawn_blocking` with the connection behind a
//! `std::sync::Mutex` that is locked only inside the blocking closure, never across an `.await`.
//! A file store keeps two connections: a writer, and a reader that WAL mode lets run beside it, so
//! that a long range query does not stall ingestion. An in-memory store shares one connection.
//!
//! Durability: WAL with `synchronous=FULL`, so a batch is on disk when `write_batch` returns.
//! Writes open their transaction with `BEGIN IMMEDIATE`: two processes (or two handles) writing
//! the same file serialize at the start of the transaction, so the offsets a batch reads cannot
//! change before it commits, and a busy database is waited on (`busy_timeout`) rather than failing
//! half-way.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use sentio_core::{Alert, DeviceId, Reading};

use crate::migrations::{self, Script};
use crate::row::{
    self, AlertRow, AlertRowOwned, CatalogRow, EncodedBatch, InvalidValue, ReadingRow, ScoreRow,
    StatsBuilder, StatsGroup,
};
use crate::{
    AnomalyQuery, BatchOutcome, BridgeStatusRow, ChannelInfo, ChannelStats, DeadLetter,
    IngestBatch, Migration, RangeQuery, ReadingStore, ScorePoint, ScoreQuery, SourceOffset,
    StoreError, StoreStats,
};

/// How long a statement waits for another writer before failing with "database is busy".
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Enough for every statement below.
const STATEMENT_CACHE: usize = 32;

const MIGRATIONS: &[Script] = migrations::SQLITE;

const CREATE_SCHEMA_MIGRATIONS: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
)";
const SELECT_APPLIED: &str = "SELECT version, name FROM schema_migrations ORDER BY version";
const INSERT_APPLIED: &str = "INSERT INTO schema_migrations (version, name) VALUES (?1, ?2)";

const INSERT_READING: &str =
    "INSERT INTO sensor_readings (device, sensor, ts_ns, value, seq, injected, unit, ts_source)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
// One per (device, channel) of a write, in key order, after its readings. The span only grows;
// the unit is the newer side's (the write's on a tie: it was written last). The WHERE skips a
// write that changes nothing (late readings inside the known span).
const UPSERT_CHANNEL: &str = "INSERT INTO channels (device, sensor, unit, first_ts_ns, last_ts_ns)
    VALUES (?1, ?2, ?3, ?4, ?5)
    ON CONFLICT (device, sensor) DO UPDATE SET
        unit = CASE WHEN excluded.last_ts_ns >= channels.last_ts_ns
            THEN excluded.unit ELSE channels.unit END,
        first_ts_ns = MIN(channels.first_ts_ns, excluded.first_ts_ns),
        last_ts_ns = MAX(channels.last_ts_ns, excluded.last_ts_ns)
    WHERE excluded.first_ts_ns < channels.first_ts_ns
        OR excluded.last_ts_ns >= channels.last_ts_ns";
// The newest timestamp of a channel's stored readings (the copies check, `row::Copies`).
const SELECT_CHANNEL_LAST: &str =
    "SELECT last_ts_ns FROM channels WHERE device = ?1 AND sensor = ?2";
// Whether a reading with this device, timestamp, channel and value is stored (the index on
// (device, ts_ns) finds it).
const SELECT_COPY: &str = "SELECT 1 FROM sensor_readings
    WHERE device = ?1 AND ts_ns = ?2 AND sensor = ?3 AND value = ?4 LIMIT 1";
const SELECT_OFFSET: &str = "SELECT next_offset FROM consumer_offsets
    WHERE group_id = ?1 AND topic = ?2 AND partition = ?3";
const UPSERT_OFFSET: &str = "INSERT INTO consumer_offsets (group_id, topic, partition, next_offset)
    VALUES (?1, ?2, ?3, ?4)
    ON CONFLICT (group_id, topic, partition) DO UPDATE
    SET next_offset = excluded.next_offset,
        updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";
const SELECT_OFFSETS: &str = "SELECT partition, next_offset FROM consumer_offsets
    WHERE group_id = ?1 AND topic = ?2 ORDER BY partition";
const INSERT_DEAD_LETTER: &str = "INSERT INTO dead_letters
    (topic, partition, \"offset\", group_id, code, reason, key, payload)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
    ON CONFLICT (topic, partition, \"offset\", group_id) DO NOTHING";
const SELECT_DEAD_LETTERS: &str = "SELECT partition, \"offset\", code, reason, key, payload
    FROM dead_letters WHERE topic = ?1 ORDER BY partition, \"offset\", group_id";
// The channel filter is one bound value, whatever its length: NULL for every channel, else a
// JSON array of the names, which `json_each` turns into the set `IN` tests (built once per
// statement). One statement serves every filter and none is built from data.
const SELECT_RANGE_ONE_DEVICE: &str = "SELECT device, sensor, ts_ns, value, seq, injected, unit,
        ts_source
    FROM sensor_readings
    WHERE device = ?1 AND ts_ns >= ?2 AND ts_ns < ?3
        AND (?4 IS NULL OR sensor IN (SELECT value FROM json_each(?4)))
    ORDER BY ts_ns, sensor, seq";
const SELECT_RANGE_ALL_DEVICES: &str = "SELECT device, sensor, ts_ns, value, seq, injected, unit,
        ts_source
    FROM sensor_readings
    WHERE ts_ns >= ?1 AND ts_ns < ?2
        AND (?3 IS NULL OR sensor IN (SELECT value FROM json_each(?3)))
    ORDER BY device, ts_ns, sensor, seq";
const SELECT_COUNTS: &str =
    "SELECT (SELECT COUNT(*) FROM sensor_readings), (SELECT COUNT(*) FROM dead_letters)";
const SELECT_LATEST_TS: &str = "SELECT MAX(ts_ns) FROM sensor_readings";
// Summed in Rust: offsets up to i64::MAX would overflow SQL's SUM. The table is small (one row
// per group, topic and partition).
const SELECT_ALL_OFFSETS: &str = "SELECT next_offset FROM consumer_offsets";

/// `devices(device)`: the distinct devices of `$table`, by a loose scan of the index that leads
/// with `device` (each step one `MIN` probe past the previous name), then `$select`. SQLite does
/// not skip through an index for `DISTINCT` by itself: it would read every entry.
macro_rules! with_devices_of {
    ($table:literal, $select:literal) => {
        concat!(
            "WITH RECURSIVE devices(device) AS (
                SELECT MIN(device) FROM ",
            $table,
            "
                UNION ALL
                SELECT (SELECT MIN(t.device) FROM ",
            $table,
            " AS t WHERE t.device > d.device)
                FROM devices AS d WHERE d.device IS NOT NULL
            ) ",
            $select
        )
    };
}
const SELECT_DEVICES: &str = with_devices_of!(
    "sensor_readings",
    "SELECT device FROM devices WHERE device IS NOT NULL ORDER BY device"
);
// Per (device, channel) of the catalog reported since ?1, the newest reading since then: a
// backward walk of the device's index range that stops at the first entry of that channel (the
// channels interleave, so a few entries). The catalog is read whole (one row per device and
// channel, in key order); a channel whose newest reading is older than ?1 is skipped there,
// without touching the readings. In Rust, the pump's channels move ahead of the others.
const SELECT_LATEST: &str =
    "SELECT r.device, r.sensor, r.ts_ns, r.value, r.seq, r.injected, r.unit,
        r.ts_source
    FROM channels AS c
    CROSS JOIN sensor_readings AS r ON r.rowid = (
        SELECT x.rowid FROM sensor_readings AS x
        WHERE x.device = c.device AND x.sensor = c.sensor AND x.ts_ns >= ?1
        ORDER BY x.ts_ns DESC, x.seq DESC LIMIT 1)
    WHERE c.last_ts_ns >= ?1
    ORDER BY c.device, c.sensor";
const SELECT_CHANNELS: &str = "SELECT device, sensor, unit, first_ts_ns, last_ts_ns
    FROM channels ORDER BY device, sensor";
// A scan of the range (a one-off command's read). NULL units form their own group, merged in
// Rust with the pump default unit's. TOTAL rather than SUM: always a REAL.
const SELECT_CHANNEL_STATS: &str =
    "SELECT device, sensor, unit, COUNT(*), MIN(value), MAX(value), TOTAL(value)
    FROM sensor_readings WHERE ts_ns >= ?1 AND ts_ns < ?2
    GROUP BY device, sensor, unit";
const UPSERT_SCORE: &str = "INSERT INTO anomaly_scores
    (device, ts_ns, score, threshold, top_sensor, model_version)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6)
    ON CONFLICT (device, ts_ns) DO UPDATE SET score = excluded.score,
        threshold = excluded.threshold, top_sensor = excluded.top_sensor,
        model_version = excluded.model_version";
const UPSERT_BRIDGE_STATUS: &str = "INSERT INTO bridge_status (bridge, reported_ns, report)
    VALUES (?1, ?2, ?3)
    ON CONFLICT (bridge) DO UPDATE SET reported_ns = excluded.reported_ns, report = excluded.report
    WHERE excluded.reported_ns >= bridge_status.reported_ns";
const SELECT_BRIDGE_STATUS: &str =
    "SELECT bridge, reported_ns, report FROM bridge_status ORDER BY bridge";

const SELECT_SCORE_DEVICES: &str = with_devices_of!(
    "anomaly_scores",
    "SELECT device FROM devices WHERE device IS NOT NULL ORDER BY device"
);
// One device's range of the primary key (device, ts_ns), already in order.
const SELECT_SCORES_ONE_DEVICE: &str =
    "SELECT device, ts_ns, score, threshold, top_sensor, model_version
    FROM anomaly_scores WHERE device = ?1 AND ts_ns >= ?2 AND ts_ns < ?3 ORDER BY ts_ns";

type Shared = Arc<Mutex<Connection>>;

/// The SQLite store. Cloning is cheap and shares the connections.
#[derive(Clone)]
pub struct SqliteStore {
    location: Arc<str>,
    writer: Shared,
    /// The same connection as `writer` for an in-memory store.
    reader: Shared,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("location", &self.location).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating it and its parent directories if needed) the store file at `path`. It does
    /// not migrate: call [`ReadingStore::migrate`].
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let location = path.display().to_string();
        let open_err = |source: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
            location: location.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_err(Box::new(e)))?;
        }
        let writer = Connection::open(path).map_err(|e| open_err(Box::new(e)))?;
        configure(&writer, true).map_err(|e| open_err(Box::new(e)))?;
        let reader = Connection::open(path).map_err(|e| open_err(Box::new(e)))?;
        configure(&reader, false).map_err(|e| open_err(Box::new(e)))?;
        reader.pragma_update(None, "query_only", true).map_err(|e| open_err(Box::new(e)))?;
        tracing::debug!(path = %location, "opened sqlite store");
        Ok(SqliteStore {
            location: location.into(),
            writer: Arc::new(Mutex::new(writer)),
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    /// A private store in memory, gone when the last clone is dropped (tests).
    pub fn open_in_memory() -> Result<SqliteStore, StoreError> {
        let open_err = |e: rusqlite::Error| StoreError::Open {
            location: ":memory:".to_owned(),
            source: Box::new(e),
        };
        let conn = Connection::open_in_memory().map_err(open_err)?;
        configure(&conn, false).map_err(open_err)?;
        let conn = Arc::new(Mutex::new(conn));
        Ok(SqliteStore { location: ":memory:".into(), writer: Arc::clone(&conn), reader: conn })
    }
}

/// Per-connection settings.
fn configure(conn: &Connection, set_wal: bool) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    if set_wal {
        // WAL is a property of the file: setting it once, on the writer, is enough.
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(mode, "sqlite refused WAL mode; readers will block the writer");
        }
    }
    // FULL: a committed transaction survives a power loss, which exactly-once ingestion needs.
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

/// Runs `f` on the connection in the blocking pool.
async fn blocking<T, F>(conn: &Shared, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
{
    let conn = Arc::clone(conn);
    tokio::task::spawn_blocking(move || {
        // A poisoned lock means a call panicked while holding the connection: refuse to go on
        // with it rather than guess at its state.
        let mut guard = conn.lock().map_err(|_| StoreError::WorkerGone)?;
        f(&mut guard)
    })
    .await
    .map_err(|_| StoreError::WorkerGone)?
}

fn query_err(operation: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::Query { operation, source: Box::new(e) }
}

fn invalid(operation: &'static str) -> impl Fn(InvalidValue) -> StoreError {
    move |e| StoreError::Query { operation, source: Box::new(e) }
}

/// A stored value of the wrong type reads as corrupt data, not as a failed query.
fn row_err(operation: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| match e {
        rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::Utf8Error(..) => {
            StoreError::Corrupt { detail: format!("{operation}: {e}") }
        }
        e => StoreError::Query { operation, source: Box::new(e) },
    }
}

// ---- migrations -------------------------------------------------------------------------------

fn read_applied(conn: &Connection) -> Result<Vec<Migration>, StoreError> {
    let mut stmt = conn.prepare_cached(SELECT_APPLIED).map_err(query_err("read migrations"))?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .map_err(query_err("read migrations"))?;
    let mut out = Vec::new();
    for row in rows {
        let (version, name) = row.map_err(row_err("read migrations"))?;
        let version = u32::try_from(version).map_err(|_| StoreError::Corrupt {
            detail: format!("schema_migrations holds version {version}"),
        })?;
        out.push(Migration { version, name });
    }
    Ok(out)
}

fn applied_migrations(conn: &mut Connection) -> Result<Vec<Migration>, StoreError> {
    conn.execute_batch(CREATE_SCHEMA_MIGRATIONS).map_err(query_err("create schema_migrations"))?;
    read_applied(conn)
}

/// Applies pending migrations up to version `up_to`, one transaction each, re-reading the history
/// inside every transaction so that two processes migrating at once apply each script once.
fn migrate(conn: &mut Connection, up_to: u32) -> Result<Vec<Migration>, StoreError> {
    conn.execute_batch(CREATE_SCHEMA_MIGRATIONS).map_err(query_err("create schema_migrations"))?;
    let mut done = Vec::new();
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(query_err("begin migration"))?;
        let applied = read_applied(&tx)?;
        let pending = migrations::pending(MIGRATIONS, &applied)?;
        let Some(script) = pending.first().copied().filter(|s| s.version <= up_to) else {
            return Ok(done);
        };
        let failed = |e: rusqlite::Error| StoreError::Migration {
            version: script.version,
            name: script.name.to_owned(),
            source: Box::new(e),
        };
        tx.execute_batch(script.sql).map_err(failed)?;
        tx.execute(INSERT_APPLIED, params![script.version, script.name]).map_err(failed)?;
        tx.commit().map_err(failed)?;
        tracing::info!(version = script.version, name = script.name, "applied migration");
        done.push(script.migration());
    }
}

// ---- writes -----------------------------------------------------------------------------------

fn insert_reading(
    stmt: &mut rusqlite::CachedStatement<'_>,
    r: &ReadingRow,
) -> rusqlite::Result<()> {
    stmt.execute(params![
        r.device.as_str(),
        r.sensor.as_str(),
        r.ts_ns,
        r.value,
        r.seq,
        r.injected,
        r.stored_unit(),
        r.ts_source
    ])?;
    Ok(())
}

/// Records the channels of readings just inserted, in the same transaction.
fn upsert_channels(
    tx: &rusqlite::Transaction<'_>,
    rows: &[CatalogRow<'_>],
) -> rusqlite::Result<()> {
    let mut upsert = tx.prepare_cached(UPSERT_CHANNEL)?;
    for c in rows {
        upsert.execute(params![c.device, c.sensor, c.unit, c.first_ts_ns, c.last_ts_ns])?;
    }
    Ok(())
}

/// `rows` without the exact copies of stored readings or of earlier ones of `rows`
/// ([`row::Copies`]), counted in `outcome`, and the catalog rows of what is left.
fn without_copies<'a>(
    tx: &rusqlite::Transaction<'_>,
    rows: Vec<&'a ReadingRow>,
    outcome: &mut BatchOutcome,
) -> rusqlite::Result<(Vec<&'a ReadingRow>, Vec<CatalogRow<'a>>)> {
    let catalog = row::catalog_rows(rows.iter().copied());
    let mut last = std::collections::HashMap::new();
    {
        let mut select = tx.prepare_cached(SELECT_CHANNEL_LAST)?;
        for c in &catalog {
            let ts: Option<i64> =
                select.query_row(params![c.device, c.sensor], |r| r.get(0)).optional()?;
            if let Some(ts) = ts {
                last.insert((c.device, c.sensor), ts);
            }
        }
    }
    let copies = row::Copies::find(&rows, &last);
    if !copies.any() {
        return Ok((rows, catalog));
    }
    let mut stored = std::collections::HashSet::new();
    {
        let mut select = tx.prepare_cached(SELECT_COPY)?;
        for r in copies.rows(&rows) {
            if select.exists(params![r.device.as_str(), r.ts_ns, r.sensor.as_str(), r.value])? {
                stored.insert(row::copy_key(r));
            }
        }
    }
    let (kept, copied) = copies.keep(&rows, &stored);
    if copied == 0 {
        return Ok((rows, catalog));
    }
    outcome.copies_skipped += copied;
    let mut out = copies.others(&rows);
    out.extend(kept);
    let catalog = row::catalog_rows(out.iter().copied());
    Ok((out, catalog))
}

fn write_batch(conn: &mut Connection, batch: &EncodedBatch) -> Result<BatchOutcome, StoreError> {
    const OP: &str = "write_batch";
    let q = query_err(OP);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&q)?;

    // Where each partition stands now; `None` when the group never committed it.
    let mut stored: BTreeMap<i64, Option<i64>> = BTreeMap::new();
    {
        let mut select = tx.prepare_cached(SELECT_OFFSET).map_err(&q)?;
        for &p in &batch.partitions {
            let next: Option<i64> = select
                .query_row(params![batch.group, batch.topic, p], |r| r.get(0))
                .optional()
                .map_err(&q)?;
            stored.insert(p, next);
        }
    }
    let from = |p: i64| stored.get(&p).copied().flatten().unwrap_or(0);

    let mut outcome = BatchOutcome::default();
    {
        let mut fresh = Vec::with_capacity(batch.readings.len());
        for (p, offset, r) in &batch.readings {
            if *offset < from(*p) {
                outcome.replayed_skipped += 1;
                continue;
            }
            fresh.push(r);
        }
        let (fresh, catalog) = without_copies(&tx, fresh, &mut outcome).map_err(&q)?;
        let mut insert = tx.prepare_cached(INSERT_READING).map_err(&q)?;
        for r in &fresh {
            insert_reading(&mut insert, r).map_err(&q)?;
        }
        outcome.readings_inserted = fresh.len() as u64;
        // Only what was inserted: a replay leaves the catalog as it is.
        upsert_channels(&tx, &catalog).map_err(&q)?;
    }
    {
        let mut insert = tx.prepare_cached(INSERT_DEAD_LETTER).map_err(&q)?;
        for (p, offset, d) in &batch.dead_letters {
            if *offset < from(*p) {
                outcome.replayed_skipped += 1;
                continue;
            }
            let n = insert
                .execute(params![
                    batch.topic,
                    p,
                    offset,
                    batch.group,
                    d.code,
                    d.reason,
                    d.key,
                    d.payload
                ])
                .map_err(&q)?;
            // 0 when the same message is already stored (a batch that repeats it).
            if n == 0 {
                outcome.replayed_skipped += 1;
            } else {
                outcome.dead_letters_inserted += 1;
            }
        }
    }
    {
        let mut upsert = tx.prepare_cached(UPSERT_OFFSET).map_err(&q)?;
        for &(p, next) in &batch.next_offsets {
            match stored.get(&p).copied().flatten() {
                // Never backwards, and no write when nothing moves.
                Some(current) if current >= next => {}
                _ => {
                    upsert.execute(params![batch.group, batch.topic, p, next]).map_err(&q)?;
                }
            }
        }
    }
    tx.commit().map_err(&q)?;
    Ok(outcome)
}

fn insert_readings(conn: &mut Connection, rows: &[ReadingRow]) -> Result<u64, StoreError> {
    let q = query_err("insert_readings");
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&q)?;
    {
        let mut insert = tx.prepare_cached(INSERT_READING).map_err(&q)?;
        for r in rows {
            insert_reading(&mut insert, r).map_err(&q)?;
        }
        upsert_channels(&tx, &row::catalog_rows(rows)).map_err(&q)?;
    }
    tx.commit().map_err(&q)?;
    Ok(rows.len() as u64)
}

// ---- reads ------------------------------------------------------------------------------------

fn committed_offsets(
    conn: &mut Connection,
    group: &str,
    topic: &str,
) -> Result<BTreeMap<u32, u64>, StoreError> {
    const OP: &str = "committed_offsets";
    let mut stmt = conn.prepare_cached(SELECT_OFFSETS).map_err(query_err(OP))?;
    let rows = stmt
        .query_map(params![group, topic], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
        .map_err(query_err(OP))?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (p, next) = row.map_err(row_err(OP))?;
        out.insert(row::from_sql_partition(p)?, row::from_sql_u64("next_offset", next)?);
    }
    Ok(out)
}

/// The value bound to the channel filter: NULL for every channel, else the names as a JSON array.
fn channel_filter(query: &RangeQuery) -> Option<String> {
    if query.sensors.is_empty() {
        return None;
    }
    let names: Vec<&str> = query.sensors.iter().map(|c| c.as_str()).collect();
    Some(serde_json::Value::from(names).to_string())
}

/// Reads rows of `SELECT device, sensor, ts_ns, value, seq, injected, unit, ts_source` into
/// `out`.
fn collect_readings(
    mut rows: rusqlite::Rows<'_>,
    out: &mut Vec<Reading>,
) -> Result<(), StoreError> {
    const OP: &str = "query_range";
    let bad = row_err(OP);
    // Runs of one device are long: validate its name once per run.
    let mut last: Option<DeviceId> = None;
    while let Some(r) = rows.next().map_err(&bad)? {
        let name = r.get_ref(0).and_then(|v| Ok(v.as_str()?)).map_err(&bad)?;
        let device = match &last {
            Some(d) if d.as_str() == name => d.clone(),
            _ => {
                let d = row::decode_device(name)?;
                last = Some(d.clone());
                d
            }
        };
        let sensor = r.get_ref(1).and_then(|v| Ok(v.as_str()?)).map_err(&bad)?;
        let injected = r.get_ref(5).and_then(|v| Ok(v.as_str_or_null()?)).map_err(&bad)?;
        let unit = r.get_ref(6).and_then(|v| Ok(v.as_str_or_null()?)).map_err(&bad)?;
        let ts_source = r.get_ref(7).and_then(|v| Ok(v.as_str_or_null()?)).map_err(&bad)?;
        let mut reading = row::decode_reading(
            device,
            sensor,
            unit,
            r.get(2).map_err(&bad)?,
            r.get(3).map_err(&bad)?,
            r.get(4).map_err(&bad)?,
            injected,
        )?;
        reading.ts_source = row::decode_ts_source(ts_source)?;
        out.push(reading);
    }
    Ok(())
}

fn query_range(conn: &mut Connection, query: &RangeQuery) -> Result<Vec<Reading>, StoreError> {
    let q = query_err("query_range");
    let mut out = Vec::new();
    if query.from_ns >= query.to_ns {
        return Ok(out);
    }
    let channels = channel_filter(query);
    if query.devices.is_empty() {
        let mut stmt = conn.prepare_cached(SELECT_RANGE_ALL_DEVICES).map_err(&q)?;
        let rows = stmt.query(params![query.from_ns, query.to_ns, channels]).map_err(&q)?;
        collect_readings(rows, &mut out)?;
    } else {
        // One index range scan per device, in device order, gives the required order.
        let mut devices: Vec<&DeviceId> = query.devices.iter().collect();
        devices.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        devices.dedup();
        let mut stmt = conn.prepare_cached(SELECT_RANGE_ONE_DEVICE).map_err(&q)?;
        for device in devices {
            let rows = stmt
                .query(params![device.as_str(), query.from_ns, query.to_ns, channels])
                .map_err(&q)?;
            collect_readings(rows, &mut out)?;
        }
    }
    Ok(out)
}

fn dead_letters(conn: &mut Connection, topic: &str) -> Result<Vec<DeadLetter>, StoreError> {
    const OP: &str = "dead_letters";
    let mut stmt = conn.prepare_cached(SELECT_DEAD_LETTERS).map_err(query_err(OP))?;
    let rows = stmt
        .query_map(params![topic], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Vec<u8>>(4)?,
                r.get::<_, Vec<u8>>(5)?,
            ))
        })
        .map_err(query_err(OP))?;
    let mut out = Vec::new();
    for row in rows {
        let (partition, offset, code, reason, key, payload) = row.map_err(row_err(OP))?;
        out.push(DeadLetter {
            source: SourceOffset {
                partition: row::from_sql_partition(partition)?,
                offset: row::from_sql_u64("offset", offset)?,
            },
            code,
            reason,
            key,
            payload,
        });
    }
    Ok(out)
}

fn stats(conn: &mut Connection) -> Result<StoreStats, StoreError> {
    const OP: &str = "stats";
    let (readings, dead_letters) = conn
        .prepare_cached(SELECT_COUNTS)
        .map_err(query_err(OP))?
        .query_row([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
        .map_err(row_err(OP))?;
    let mut committed_offsets_total: u64 = 0;
    let mut stmt = conn.prepare_cached(SELECT_ALL_OFFSETS).map_err(query_err(OP))?;
    let mut rows = stmt.query([]).map_err(query_err(OP))?;
    while let Some(r) = rows.next().map_err(row_err(OP))? {
        let next = row::from_sql_u64("next_offset", r.get(0).map_err(row_err(OP))?)?;
        committed_offsets_total = committed_offsets_total.saturating_add(next);
    }
    let latest_ts_ns = conn
        .prepare_cached(SELECT_LATEST_TS)
        .map_err(query_err(OP))?
        .query_row([], |r| r.get::<_, Option<i64>>(0))
        .map_err(row_err(OP))?;
    Ok(StoreStats {
        latest_ts_ns,
        readings: row::from_sql_u64("reading count", readings)?,
        dead_letters: row::from_sql_u64("dead letter count", dead_letters)?,
        committed_offsets_total,
    })
}

fn save_alerts(conn: &mut Connection, rows: &[AlertRow]) -> Result<u64, StoreError> {
    const OP: &str = "save_alerts";
    let tx =
        conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(query_err(OP))?;
    let mut written = 0u64;
    {
        let mut stmt = tx.prepare_cached(row::UPSERT_ANOMALY).map_err(query_err(OP))?;
        for a in rows {
            written += stmt
                .execute(params![
                    a.id,
                    a.device,
                    a.window_start_ns,
                    a.window_end_ns,
                    a.score,
                    a.threshold,
                    a.severity,
                    a.state,
                    a.sensor_share,
                    a.model_name,
                    a.model_version,
                    a.detected_at_ns
                ])
                .map_err(query_err(OP))? as u64;
        }
    }
    tx.commit().map_err(query_err(OP))?;
    Ok(written)
}

fn anomalies(conn: &mut Connection, query: &AnomalyQuery) -> Result<Vec<Alert>, StoreError> {
    const OP: &str = "anomalies";
    let sql = format!(
        "SELECT {} FROM anomalies WHERE (?1 IS NULL OR device = ?1) AND window_end_ns >= ?2 \
         AND window_start_ns < ?3 ORDER BY window_start_ns, id",
        row::ANOMALY_COLUMNS
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(query_err(OP))?;
    let device = query.device.as_ref().map(ToString::to_string);
    let rows = stmt
        .query_map(params![device, query.from_ns, query.to_ns], |r| {
            Ok(AlertRowOwned {
                id: r.get(0)?,
                device: r.get(1)?,
                window_start_ns: r.get(2)?,
                window_end_ns: r.get(3)?,
                score: r.get(4)?,
                threshold: r.get(5)?,
                severity: r.get(6)?,
                state: r.get(7)?,
                sensor_share: r.get(8)?,
                model_name: r.get(9)?,
                model_version: r.get(10)?,
                detected_at_ns: r.get(11)?,
            })
        })
        .map_err(query_err(OP))?;
    let mut out = Vec::new();
    for r in rows {
        out.push(row::decode_alert(r.map_err(row_err(OP))?)?);
    }
    Ok(out)
}

fn save_scores(conn: &mut Connection, rows: &[ScoreRow]) -> Result<u64, StoreError> {
    let q = query_err("save_scores");
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&q)?;
    {
        let mut stmt = tx.prepare_cached(UPSERT_SCORE).map_err(&q)?;
        for r in rows {
            stmt.execute(params![
                r.device,
                r.ts_ns,
                r.score,
                r.threshold,
                r.top_sensor,
                r.model_version
            ])
            .map_err(&q)?;
        }
    }
    tx.commit().map_err(&q)?;
    Ok(rows.len() as u64)
}

fn save_bridge_status(conn: &mut Connection, rows: &[BridgeStatusRow]) -> Result<u64, StoreError> {
    let q = query_err("save_bridge_status");
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&q)?;
    let mut written = 0;
    {
        let mut stmt = tx.prepare_cached(UPSERT_BRIDGE_STATUS).map_err(&q)?;
        for r in crate::latest_per_bridge(rows) {
            written += stmt.execute(params![r.bridge, r.reported_ns, r.report]).map_err(&q)? as u64;
        }
    }
    tx.commit().map_err(&q)?;
    Ok(written)
}

fn bridge_status(conn: &mut Connection) -> Result<Vec<BridgeStatusRow>, StoreError> {
    const OP: &str = "bridge_status";
    let bad = row_err(OP);
    let mut stmt = conn.prepare_cached(SELECT_BRIDGE_STATUS).map_err(query_err(OP))?;
    let mut rows = stmt.query([]).map_err(query_err(OP))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(&bad)? {
        out.push(BridgeStatusRow {
            bridge: r.get(0).map_err(&bad)?,
            reported_ns: r.get(1).map_err(&bad)?,
            report: r.get(2).map_err(&bad)?,
        });
    }
    Ok(out)
}

/// The device names a `SELECT device FROM devices ...` statement lists.
fn device_names(
    conn: &Connection,
    sql: &str,
    operation: &'static str,
) -> Result<Vec<DeviceId>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(query_err(operation))?;
    let mut rows = stmt.query([]).map_err(query_err(operation))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(row_err(operation))? {
        let name = r.get_ref(0).and_then(|v| Ok(v.as_str()?)).map_err(row_err(operation))?;
        out.push(row::decode_device(name)?);
    }
    Ok(out)
}

fn scores(conn: &mut Connection, query: &ScoreQuery) -> Result<Vec<ScorePoint>, StoreError> {
    const OP: &str = "scores";
    let (q, bad) = (query_err(OP), row_err(OP));
    let mut out = Vec::new();
    if query.from_ns >= query.to_ns {
        return Ok(out);
    }
    // One range of the primary key per device, in device order, gives the promised order.
    let devices = match &query.device {
        Some(d) => vec![d.clone()],
        None => device_names(conn, SELECT_SCORE_DEVICES, OP)?,
    };
    let mut stmt = conn.prepare_cached(SELECT_SCORES_ONE_DEVICE).map_err(&q)?;
    for device in devices {
        let mut rows =
            stmt.query(params![device.as_str(), query.from_ns, query.to_ns]).map_err(&q)?;
        while let Some(r) = rows.next().map_err(&bad)? {
            let top = r.get_ref(4).and_then(|v| Ok(v.as_str()?)).map_err(&bad)?;
            out.push(row::decode_score(
                device.clone(),
                r.get(1).map_err(&bad)?,
                r.get(2).map_err(&bad)?,
                r.get(3).map_err(&bad)?,
                top,
                r.get(5).map_err(&bad)?,
            )?);
        }
    }
    Ok(out)
}

fn latest_readings(conn: &mut Connection, since_ns: i64) -> Result<Vec<Reading>, StoreError> {
    let mut stmt = conn.prepare_cached(SELECT_LATEST).map_err(query_err("latest_readings"))?;
    let rows = stmt.query(params![since_ns]).map_err(query_err("latest_readings"))?;
    let mut out = Vec::new();
    collect_readings(rows, &mut out)?;
    row::sort_by_channel(&mut out, |r| (&r.device, &r.sensor));
    Ok(out)
}

fn channels(conn: &mut Connection) -> Result<Vec<ChannelInfo>, StoreError> {
    const OP: &str = "channels";
    let bad = row_err(OP);
    let mut stmt = conn.prepare_cached(SELECT_CHANNELS).map_err(query_err(OP))?;
    let mut rows = stmt.query([]).map_err(query_err(OP))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(&bad)? {
        let text = |i| r.get_ref(i).and_then(|v| Ok(v.as_str()?)).map_err(&bad);
        let unit = r.get_ref(2).and_then(|v| Ok(v.as_str_or_null()?)).map_err(&bad)?;
        out.push(row::decode_channel_info(
            text(0)?,
            text(1)?,
            unit,
            r.get(3).map_err(&bad)?,
            r.get(4).map_err(&bad)?,
        )?);
    }
    row::sort_by_channel(&mut out, |c| (&c.device, &c.sensor));
    Ok(out)
}

fn channel_stats(
    conn: &mut Connection,
    from_ns: i64,
    to_ns: i64,
) -> Result<Vec<ChannelStats>, StoreError> {
    const OP: &str = "channel_stats";
    let bad = row_err(OP);
    let mut out = StatsBuilder::default();
    if from_ns >= to_ns {
        return Ok(out.finish());
    }
    let mut stmt = conn.prepare_cached(SELECT_CHANNEL_STATS).map_err(query_err(OP))?;
    let mut rows = stmt.query(params![from_ns, to_ns]).map_err(query_err(OP))?;
    while let Some(r) = rows.next().map_err(&bad)? {
        let text = |i| r.get_ref(i).and_then(|v| Ok(v.as_str()?)).map_err(&bad);
        out.push(StatsGroup {
            device: text(0)?,
            sensor: text(1)?,
            unit: r.get_ref(2).and_then(|v| Ok(v.as_str_or_null()?)).map_err(&bad)?,
            count: r.get(3).map_err(&bad)?,
            min: r.get(4).map_err(&bad)?,
            max: r.get(5).map_err(&bad)?,
            sum: r.get(6).map_err(&bad)?,
        })?;
    }
    Ok(out.finish())
}

#[async_trait::async_trait]
impl ReadingStore for SqliteStore {
    async fn migrate(&self) -> Result<Vec<Migration>, StoreError> {
        blocking(&self.writer, |c| migrate(c, u32::MAX)).await
    }

    async fn applied_migrations(&self) -> Result<Vec<Migration>, StoreError> {
        blocking(&self.writer, applied_migrations).await
    }

    async fn write_batch(&self, batch: &IngestBatch) -> Result<BatchOutcome, StoreError> {
        let encoded = EncodedBatch::encode(batch).map_err(invalid("write_batch"))?;
        let started = Instant::now();
        let outcome = blocking(&self.writer, move |c| write_batch(c, &encoded)).await?;
        tracing::debug!(
            group = %batch.group,
            topic = %batch.topic,
            inserted = outcome.readings_inserted,
            dead_letters = outcome.dead_letters_inserted,
            skipped = outcome.replayed_skipped,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "batch written"
        );
        Ok(outcome)
    }

    async fn committed_offsets(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<BTreeMap<u32, u64>, StoreError> {
        let (group, topic) = (group.to_owned(), topic.to_owned());
        blocking(&self.reader, move |c| committed_offsets(c, &group, &topic)).await
    }

    async fn insert_readings(&self, readings: &[Reading]) -> Result<u64, StoreError> {
        let rows = readings
            .iter()
            .map(ReadingRow::encode)
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid("insert_readings"))?;
        blocking(&self.writer, move |c| insert_readings(c, &rows)).await
    }

    async fn query_range(&self, query: &RangeQuery) -> Result<Vec<Reading>, StoreError> {
        let query = query.clone();
        blocking(&self.reader, move |c| query_range(c, &query)).await
    }

    async fn dead_letters(&self, topic: &str) -> Result<Vec<DeadLetter>, StoreError> {
        let topic = topic.to_owned();
        blocking(&self.reader, move |c| dead_letters(c, &topic)).await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        blocking(&self.reader, stats).await
    }

    async fn save_alerts(&self, alerts: &[Alert]) -> Result<u64, StoreError> {
        let rows = alerts
            .iter()
            .map(AlertRow::encode)
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid("save_alerts"))?;
        if rows.is_empty() {
            return Ok(0);
        }
        blocking(&self.writer, move |c| save_alerts(c, &rows)).await
    }

    async fn anomalies(&self, query: &AnomalyQuery) -> Result<Vec<Alert>, StoreError> {
        let query = query.clone();
        blocking(&self.reader, move |c| anomalies(c, &query)).await
    }

    async fn save_scores(&self, points: &[ScorePoint]) -> Result<u64, StoreError> {
        let rows = ScoreRow::encode_all(points).map_err(invalid("save_scores"))?;
        if rows.is_empty() {
            return Ok(0);
        }
        blocking(&self.writer, move |c| save_scores(c, &rows)).await
    }

    async fn scores(&self, query: &ScoreQuery) -> Result<Vec<ScorePoint>, StoreError> {
        let query = query.clone();
        blocking(&self.reader, move |c| scores(c, &query)).await
    }

    async fn latest_readings(&self, since_ns: i64) -> Result<Vec<Reading>, StoreError> {
        blocking(&self.reader, move |c| latest_readings(c, since_ns)).await
    }

    async fn devices(&self) -> Result<Vec<DeviceId>, StoreError> {
        blocking(&self.reader, |c| device_names(c, SELECT_DEVICES, "devices")).await
    }

    async fn channels(&self) -> Result<Vec<ChannelInfo>, StoreError> {
        blocking(&self.reader, channels).await
    }

    async fn channel_stats(
        &self,
        from_ns: i64,
        to_ns: i64,
    ) -> Result<Vec<ChannelStats>, StoreError> {
        blocking(&self.reader, move |c| channel_stats(c, from_ns, to_ns)).await
    }

    async fn save_bridge_status(&self, reports: &[BridgeStatusRow]) -> Result<u64, StoreError> {
        if reports.is_empty() {
            return Ok(0);
        }
        let reports = reports.to_vec();
        blocking(&self.writer, move |c| save_bridge_status(c, &reports)).await
    }

    async fn bridge_status(&self) -> Result<Vec<BridgeStatusRow>, StoreError> {
        blocking(&self.reader, bridge_status).await
    }
}

#[cfg(feature = "testkit")]
#[async_trait::async_trait]
impl crate::contract::OlderSchema for SqliteStore {
    async fn migrate_to(&self, version: u32) -> Result<Vec<Migration>, StoreError> {
        blocking(&self.writer, move |c| migrate(c, version)).await
    }

    async fn execute_batch(&self, sql: &str) -> Result<(), StoreError> {
        let sql = sql.to_owned();
        blocking(&self.writer, move |c| c.execute_batch(&sql).map_err(query_err("execute_batch")))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use sentio_core::{Channel, SensorKind};

    #[test]
    fn channel_filter_is_null_for_all_and_a_json_array_otherwise() {
        let query = |names: &[&str]| RangeQuery {
            devices: vec![],
            sensors: names.iter().map(|n| Channel::new(n).unwrap()).collect(),
            from_ns: 0,
            to_ns: 1,
        };
        assert_eq!(channel_filter(&query(&[])), None);
        assert_eq!(channel_filter(&query(&["pressure"])).as_deref(), Some(r#"["pressure"]"#));
        assert_eq!(
            channel_filter(&query(&["current", "vibration_x", "t.1"])).as_deref(),
            Some(r#"["current","vibration_x","t.1"]"#)
        );
    }

    #[tokio::test]
    async fn zero_reads_back_as_zero() {
        // SQLite keeps whole REAL values as integers on disk, which loses the sign of -0.0: the
        // contract therefore compares zeros by value, not by bits.
        let store = SqliteStore::open_in_memory().unwrap();
        store.migrate().await.unwrap();
        let r = Reading::pump(DeviceId::new("z").unwrap(), SensorKind::Humidity, 0, -0.0, 0);
        store.insert_readings(&[r]).await.unwrap();
        let q = RangeQuery { devices: vec![], sensors: vec![], from_ns: 0, to_ns: 1 };
        let back = store.query_range(&q).await.unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].value, 0.0);
    }

    #[tokio::test]
    async fn range_reads_search_the_device_index_whatever_the_channel_filter() {
        let store = SqliteStore::open_in_memory().unwrap();
        store.migrate().await.unwrap();
        let six = r#"["temperature","vibration","pressure","humidity","current","vibration_x"]"#;
        for filter in [None, Some(r#"["current"]"#), Some(six)] {
            let plan = plan(&store, SELECT_RANGE_ONE_DEVICE, params!["d", 0, 1, filter]);
            assert!(!scans_a_table(&plan), "{filter:?}: {plan:#?}");
            assert!(
                plan.iter().any(|l| l.starts_with(
                    "SEARCH sensor_readings USING INDEX sensor_readings_device_ts \
                     (device=? AND ts_ns>? AND ts_ns<?)"
                )),
                "{filter:?}: {plan:#?}"
            );
        }
    }

    /// The detail lines of `EXPLAIN QUERY PLAN sql` bound to `params`.
    fn plan(store: &SqliteStore, sql: &str, params: impl rusqlite::Params) -> Vec<String> {
        let conn = store.reader.lock().unwrap();
        conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map(params, |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Whether a plan reads a table whole: `SCAN <table or its alias>`, with or without an
    /// index (a `SCAN ... USING COVERING INDEX` reads every entry of it). The other scans are of
    /// the `devices` CTE (`d`), the channel catalog (`c`, a row per device and channel) and the
    /// channel filter (`json_each`).
    fn scans_a_table(plan: &[String]) -> bool {
        plan.iter().any(|line| {
            let mut words = line.split_whitespace();
            words.next() == Some("SCAN")
                && words.next().is_some_and(|t| {
                    ["sensor_readings", "anomaly_scores", "r", "x", "t"].contains(&t)
                })
        })
    }

    #[tokio::test]
    async fn dashboard_reads_probe_the_indexes_and_scan_no_table() {
        let store = SqliteStore::open_in_memory().unwrap();
        store.migrate().await.unwrap();
        let latest = plan(&store, SELECT_LATEST, params![0]);
        assert!(!scans_a_table(&latest), "{latest:#?}");
        // The catalog walked in key order (no sort), then per row the newest reading of the
        // channel by a search of the device's time range, and that reading by its rowid.
        assert!(latest.iter().any(|l| l == "SCAN c"), "{latest:#?}");
        assert!(!latest.iter().any(|l| l.contains("TEMP B-TREE FOR ORDER BY")), "{latest:#?}");
        assert!(
            latest.iter().any(|l| l.starts_with(
                "SEARCH x USING INDEX sensor_readings_device_ts (device=? AND ts_ns>?)"
            )),
            "{latest:#?}"
        );
        assert!(
            latest.iter().any(|l| l.starts_with("SEARCH r USING INTEGER PRIMARY KEY (rowid=?)")),
            "{latest:#?}"
        );

        let channels = plan(&store, SELECT_CHANNELS, []);
        assert!(!scans_a_table(&channels), "{channels:#?}");
        assert!(!channels.iter().any(|l| l.contains("sensor_readings")), "{channels:#?}");

        let devices = plan(&store, SELECT_DEVICES, []);
        assert!(!scans_a_table(&devices), "{devices:#?}");
        assert!(devices.iter().any(|l| l.contains("sensor_readings_device_ts (device>?)")));

        let score_devices = plan(&store, SELECT_SCORE_DEVICES, []);
        assert!(!scans_a_table(&score_devices), "{score_devices:#?}");
        let scores = plan(&store, SELECT_SCORES_ONE_DEVICE, params!["d", 0, 1]);
        assert!(!scans_a_table(&scores), "{scores:#?}");
        assert!(
            scores.iter().any(|l| l.contains("(device=? AND ts_ns>? AND ts_ns<?)")),
            "{scores:#?}"
        );
    }
}
