//! The production backend: PostgreSQL through `tokio-postgres` and a `deadpool-postgres` pool.
//!
//! - [`PostgresStore::connect`] creates the database when it is missing, then opens the pool.
//! - Readings go in with binary `COPY` (`insert_readings` and `write_batch`), by far the fastest
//!   way into PostgreSQL; dead letters and offsets, a handful per batch, with prepared statements;
//!   the channel catalog with one `INSERT … SELECT FROM unnest(…) … ON CONFLICT` per write, its
//!   rows in (device, sensor) order so that concurrent writers lock shared rows in one order.
//! - `write_batch` serializes writers of one (group, topic, partition) with a transaction-scoped
//!   advisory lock per partition, taken in partition order (so two batches never deadlock), then
//!   reads the stored offsets, advances them, filters the batch in Rust, copies the rows and
//!   records their channels, all in one transaction: SQLite's semantics, with writers of
//!   different partitions in parallel. Two round trips: `BEGIN`, the lock, the read, the offsets'
//!   upsert and the `COPY`'s start, pipelined; then the `COPY`'s data, its end, the catalog's
//!   upsert and `COMMIT`, pipelined (dead letters, when a batch has any, go between, one round
//!   trip each). The `COPY`'s data is encoded here into one buffer and sent as one message, so
//!   the connection's task streams it to the server by itself.
//!   A connection whose transaction did not commit is closed, never returned to the pool.
//!   (An advisory lock rather than `SELECT … FOR UPDATE` on the offsets rows: a partition seen for
//!   the first time has no row to lock, and a placeholder row would show in `committed_offsets`.)
//! - One index, `(device, ts_ns)`, serves every read: a range per device; by a loose index scan
//!   (one probe per device) the list of devices and the newest timestamp; and, walking the channel
//!   catalog, the newest reading of each (device, channel).
//! - Anomaly scores go in with one `INSERT … SELECT FROM unnest(…)` per call (the points as six
//!   arrays), an upsert on the primary key `(device, ts_ns)`.
//! - Migrations run one transaction each under `pg_advisory_xact_lock`, so processes starting
//!   together apply each script once.
//!
//! Failures: a lost connection, a pool timeout, a restarting server, a serialization failure or a
//! deadlock is transient ([`StoreError::is_transient`]). Every call retries transient failures
//! with exponential backoff for up to [`PostgresStore::with_retry_for`] (30 s by default) on a
//! fresh connection from the pool, which drops connections it finds closed: a server restart or
//! `pg_terminate_backend` costs a retry, never a row. Retrying is safe because every call is
//! idempotent or atomic: `write_batch` skips what its offsets already cover, reads are reads, and
//! `insert_readings` is retried only when the server cannot have committed it (a connection lost
//! once its `COMMIT` was sent is reported as not transient, since retrying could duplicate).
//!
//! TLS: not supported yet (`sslmode = "disable"` is the only mode; no TLS stack is compiled in).
//! Adding it needs a connector such as `tokio-postgres-rustls`.

use std::collections::BTreeMap;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use futures::future::BoxFuture;
use futures::{SinkExt, TryStreamExt};
use sentio_config::{PostgresConfig, SslMode};
use sentio_core::{Alert, DeviceId, Reading};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{IsolationLevel, NoTls, Row, Statement};

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

const MIGRATIONS: &[Script] = migrations::POSTGRES;

/// The key of the advisory lock migrations hold (any constant; advisory locks are per database).
const MIGRATION_LOCK: i64 = 0x5e47_1000_0000_0001;

/// How long calls retry transient failures unless [`PostgresStore::with_retry_for`] says otherwise.
pub const DEFAULT_RETRY_FOR: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How long a call waits for a free connection when all of the pool's are busy (a writer may hold
/// one while it waits for another writer's partition lock).
const POOL_WAIT: Duration = Duration::from_secs(30);

const CREATE_SCHEMA_MIGRATIONS: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER     NOT NULL PRIMARY KEY,
    name       TEXT        NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)";
const LOCK_MIGRATIONS: &str = "SELECT pg_advisory_xact_lock($1)";
const HAS_SCHEMA_MIGRATIONS: &str = "SELECT to_regclass('schema_migrations') IS NOT NULL";
const SELECT_APPLIED: &str = "SELECT version, name FROM schema_migrations ORDER BY version";
const INSERT_APPLIED: &str = "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)";

/// The one `COPY` of readings in the codebase (the benchmarks' raw peer uses it too): binary
/// format, these eight columns in this order.
pub const COPY_READINGS: &str =
    "COPY sensor_readings (device, sensor, ts_ns, value, seq, injected, unit, ts_source)
    FROM STDIN (FORMAT binary)";
/// The column types of [`COPY_READINGS`], for a client-side binary encoder (the benchmarks' raw
/// peer and example use tokio-postgres's `BinaryCopyInWriter` with them).
pub const COPY_TYPES: [tokio_postgres::types::Type; 8] = {
    use tokio_postgres::types::Type;
    [
        Type::TEXT,
        Type::TEXT,
        Type::INT8,
        Type::FLOAT8,
        Type::INT8,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
    ]
};
// The channels of a write, one row per (device, sensor), in that order (the order rows are
// locked in). The span only grows; the unit is the newer side's (the write's on a tie: it was
// written last). The WHERE skips a write that changes nothing (late readings inside the known
// span), sparing a dead row version.
const UPSERT_CHANNELS: &str = "INSERT INTO channels (device, sensor, unit, first_ts_ns, last_ts_ns)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
    ON CONFLICT (device, sensor) DO UPDATE SET
        unit = CASE WHEN excluded.last_ts_ns >= channels.last_ts_ns
            THEN excluded.unit ELSE channels.unit END,
        first_ts_ns = LEAST(channels.first_ts_ns, excluded.first_ts_ns),
        last_ts_ns = GREATEST(channels.last_ts_ns, excluded.last_ts_ns)
    WHERE excluded.first_ts_ns < channels.first_ts_ns
        OR excluded.last_ts_ns >= channels.last_ts_ns";
// One lock per (group, topic, partition), in the order of the (sorted) array. A hash collision
// only makes two unrelated partitions wait for each other.
const LOCK_PARTITIONS: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, p))
    FROM unnest($3::bigint[]) AS p";
const SELECT_BATCH_OFFSETS: &str = "SELECT partition, next_offset FROM consumer_offsets
    WHERE group_id = $1 AND topic = $2 AND partition = ANY($3)";
// Every partition of a batch in one statement (one round trip instead of one per partition).
const UPSERT_OFFSETS: &str =
    "INSERT INTO consumer_offsets (group_id, topic, partition, next_offset)
    SELECT $1, $2, p, o FROM unnest($3::bigint[], $4::bigint[]) AS t(p, o)
    ON CONFLICT (group_id, topic, partition) DO UPDATE
    SET next_offset = excluded.next_offset, updated_at = now()
    WHERE consumer_offsets.next_offset < excluded.next_offset";
// The newest timestamp of each of a write's channels (the copies check, `row::Copies`).
const SELECT_CHANNELS_LAST: &str = "SELECT c.device, c.sensor, c.last_ts_ns FROM channels c
    JOIN unnest($1::text[], $2::text[]) AS k(device, sensor)
        ON c.device = k.device COLLATE \"C\" AND c.sensor = k.sensor COLLATE \"C\"";
// The stored readings at the candidates' (device, channel, timestamp), with their values.
const SELECT_COPIES: &str = "SELECT r.device, r.sensor, r.ts_ns, r.value FROM sensor_readings r
    JOIN unnest($1::text[], $2::text[], $3::bigint[]) AS k(device, sensor, ts_ns)
        ON r.device = k.device COLLATE \"C\" AND r.ts_ns = k.ts_ns
        AND r.sensor = k.sensor COLLATE \"C\"";
const INSERT_DEAD_LETTER: &str = "INSERT INTO dead_letters
    (topic, partition, \"offset\", group_id, code, reason, key, payload)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (topic, partition, \"offset\", group_id) DO NOTHING";
const SELECT_OFFSETS: &str = "SELECT partition, next_offset FROM consumer_offsets
    WHERE group_id = $1 AND topic = $2 ORDER BY partition";
const SELECT_DEAD_LETTERS: &str = "SELECT partition, \"offset\", code, reason, key, payload
    FROM dead_letters WHERE topic = $1 ORDER BY partition, \"offset\", group_id";
// `device` and `sensor` are COLLATE "C" in the schema: byte order, as SQLite sorts. The channel
// filter is one array of any length, empty for every channel.
const SELECT_RANGE_ONE_DEVICE: &str = "SELECT device, sensor, ts_ns, value, seq, injected, unit,
        ts_source
    FROM sensor_readings
    WHERE device = $1 AND ts_ns >= $2 AND ts_ns < $3
        AND (cardinality($4::text[]) = 0 OR sensor = ANY($4))
    ORDER BY ts_ns, sensor, seq";

/// `devices`: the distinct devices of `$table`, by a loose scan of the index that leads with
/// `device` (`sensor_readings_device_ts`, the primary key of `anomaly_scores`): one index probe
/// per device instead of a scan of every row. In the column's collation: byte order for
/// `sensor_readings`.
macro_rules! with_devices_of {
    ($table:literal, $select:literal) => {
        concat!(
            "WITH RECURSIVE devices AS (
                (SELECT device FROM ",
            $table,
            " ORDER BY device LIMIT 1)
                UNION ALL
                SELECT (SELECT s.device FROM ",
            $table,
            " s WHERE s.device > d.device ORDER BY s.device LIMIT 1)
                FROM devices d WHERE d.device IS NOT NULL
            ) ",
            $select
        )
    };
}
macro_rules! with_devices {
    ($select:literal) => {
        with_devices_of!("sensor_readings", $select)
    };
}
const SELECT_DEVICES: &str =
    with_devices!("SELECT device FROM devices WHERE device IS NOT NULL ORDER BY device");
// Per (device, channel) of the catalog reported since $1, the newest reading since then: a
// backward scan of the device's index range that stops at the first entry of that channel (the
// channels interleave, so a few entries). The catalog is read whole (one row per device and
// channel); a channel whose newest reading is older than $1 is skipped there, without touching
// the readings. No ORDER BY: the rows are put in channel order in Rust (the pump's first).
const SELECT_LATEST: &str =
    "SELECT r.device, r.sensor, r.ts_ns, r.value, r.seq, r.injected, r.unit,
        r.ts_source
    FROM channels c
    CROSS JOIN LATERAL (
        SELECT x.device, x.sensor, x.ts_ns, x.value, x.seq, x.injected, x.unit, x.ts_source
        FROM sensor_readings x
        WHERE x.device = c.device AND x.sensor = c.sensor AND x.ts_ns >= $1
        ORDER BY x.ts_ns DESC, x.seq DESC LIMIT 1
    ) r
    WHERE c.last_ts_ns >= $1";
// Put in channel order in Rust, as above.
const SELECT_CHANNELS: &str = "SELECT device, sensor, unit, first_ts_ns, last_ts_ns FROM channels";
// A scan of the range (a one-off command's read). NULL units form their own group, merged in
// Rust with the pump default unit's. The sum, not avg(): see row::StatsGroup.
const SELECT_CHANNEL_STATS: &str =
    "SELECT device, sensor, unit, count(*), min(value), max(value), sum(value)
    FROM sensor_readings WHERE ts_ns >= $1 AND ts_ns < $2
    GROUP BY device, sensor, unit";
// Every point of a call in one statement (one round trip, one transaction); the points are
// deduplicated on (device, ts_ns) first, since one INSERT cannot update a row twice.
const UPSERT_SCORES: &str =
    "INSERT INTO anomaly_scores (device, ts_ns, score, threshold, top_sensor, model_version)
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::float8[], $4::float8[], $5::text[],
        $6::text[])
    ON CONFLICT (device, ts_ns) DO UPDATE SET score = excluded.score,
        threshold = excluded.threshold, top_sensor = excluded.top_sensor,
        model_version = excluded.model_version";
const UPSERT_BRIDGE_STATUS: &str = "INSERT INTO bridge_status (bridge, reported_ns, report)
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[])
    ON CONFLICT (bridge) DO UPDATE SET reported_ns = excluded.reported_ns, report = excluded.report
    WHERE excluded.reported_ns >= bridge_status.reported_ns";
// `bridge` has the database's collation: the ids are sorted in Rust.
const SELECT_BRIDGE_STATUS: &str = "SELECT bridge, reported_ns, report FROM bridge_status";
// `anomaly_scores.device` has the database's collation: the names are sorted in Rust.
const SELECT_SCORE_DEVICES: &str =
    with_devices_of!("anomaly_scores", "SELECT device FROM devices WHERE device IS NOT NULL");
// One device's range of the primary key (device, ts_ns), already in order.
const SELECT_SCORES_ONE_DEVICE: &str =
    "SELECT device, ts_ns, score, threshold, top_sensor, model_version
    FROM anomaly_scores WHERE device = $1 AND ts_ns >= $2 AND ts_ns < $3 ORDER BY ts_ns";
// One statement, one snapshot. The newest timestamp is the largest of each device's newest, one
// index probe each. Offsets are summed in Rust: SQL's sum of BIGINTs is NUMERIC.
const SELECT_STATS: &str = with_devices!(
    "SELECT
        (SELECT count(*) FROM sensor_readings),
        (SELECT count(*) FROM dead_letters),
        (SELECT max((SELECT max(s.ts_ns) FROM sensor_readings s WHERE s.device = d.device))
            FROM devices d WHERE d.device IS NOT NULL),
        (SELECT coalesce(array_agg(next_offset), '{}') FROM consumer_offsets)"
);

/// The PostgreSQL store. Cloning is cheap and shares the pool.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// `postgres://user@host:port/dbname`, for messages (never the password).
    location: Arc<str>,
    retry_for: Duration,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("location", &self.location)
            .field("retry_for", &self.retry_for)
            .finish_non_exhaustive()
    }
}

/// The server may have committed: the connection was lost while `COPY` was completing. Not
/// transient, because retrying could store the rows twice.
#[derive(Debug, thiserror::Error)]
#[error(
    "the connection was lost while the server was committing; the rows may or may not be stored"
)]
pub struct OutcomeUnknown(#[source] tokio_postgres::Error);

impl PostgresStore {
    /// Connects to the database `config` names, creating it first when it is missing (connected to
    /// the `postgres` database as the same user, who then needs the CREATEDB privilege), and opens
    /// a pool of `pool_size` connections. It does not migrate: call [`ReadingStore::migrate`].
    ///
    /// Fails with [`StoreError::Open`]; a server that is down or restarting is transient.
    pub async fn connect(config: &PostgresConfig) -> Result<PostgresStore, StoreError> {
        let location =
            format!("postgres://{}@{}:{}/{}", config.user, config.host, config.port, config.dbname);
        let open_err = |source: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
            location: location.clone(),
            source,
        };
        let manager = Manager::from_config(
            client_config(config, &config.dbname),
            NoTls,
            // `is_closed()` on checkout: a connection the server dropped is replaced; one whose
            // loss the client has not noticed yet fails its first statement, and the call retries.
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.connect_timeout))
            .build()
            .map_err(|e| open_err(Box::new(e)))?;
        // Open one connection now: a bad password fails here rather than on first use, and a
        // missing database is created.
        match pool.get().await {
            Ok(client) => drop(client),
            Err(PoolError::Backend(e)) if e.code() == Some(&SqlState::INVALID_CATALOG_NAME) => {
                create_database(config).await.map_err(|e| open_err(Box::new(e)))?;
                drop(pool.get().await.map_err(|e| open_err(pool_source(e)))?);
            }
            Err(e) => return Err(open_err(pool_source(e))),
        }
        tracing::debug!(location, pool_size = config.pool_size, "opened postgres store");
        Ok(PostgresStore { pool, location: location.into(), retry_for: DEFAULT_RETRY_FOR })
    }

    /// How long each call keeps retrying transient failures (zero: fail on the first).
    pub fn with_retry_for(mut self, retry_for: Duration) -> Self {
        self.retry_for = retry_for;
        self
    }

    /// Runs `attempt` until it succeeds, fails for good, or transient failures have gone on for
    /// `retry_for`, sleeping with exponential backoff between attempts.
    async fn retry<'a, T>(
        &self,
        operation: &'static str,
        attempt: impl Fn() -> BoxFuture<'a, Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        let mut attempts = 1u32;
        loop {
            match attempt().await {
                Err(e) if e.is_transient() && started.elapsed() + backoff <= self.retry_for => {
                    tracing::warn!(
                        operation,
                        attempts,
                        backoff_ms = backoff.as_millis() as u64,
                        error = %chain(&e),
                        "transient store failure; retrying"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    attempts += 1;
                }
                other => return other,
            }
        }
    }
}

/// The client settings for database `dbname`.
fn client_config(config: &PostgresConfig, dbname: &str) -> tokio_postgres::Config {
    let mut pg = tokio_postgres::Config::new();
    pg.host(&config.host)
        .port(config.port)
        .dbname(dbname)
        .user(&config.user)
        .application_name("sentio")
        .connect_timeout(config.connect_timeout)
        // Notice a dead server on an idle connection within a minute or so, not two hours.
        .keepalives_idle(Duration::from_secs(30))
        .ssl_mode(match config.sslmode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        });
    if !config.password.is_empty() {
        pg.password(config.password.expose());
    }
    pg
}

/// `CREATE DATABASE` for `config.dbname`, connected to the `postgres` database. Another process
/// creating it at the same time is fine.
async fn create_database(config: &PostgresConfig) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = client_config(config, "postgres").connect(NoTls).await?;
    let mut connection = pin!(connection);
    // Identifiers cannot be bound as parameters: the name is quoted, never spliced in raw.
    let create = format!("CREATE DATABASE {}", quote_identifier(&config.dbname));
    let mut connection_ended = false;
    let created = {
        let mut create = pin!(client.batch_execute(&create));
        loop {
            tokio::select! {
                created = &mut create => break created,
                // The connection drives the statement; it ends early only if the server goes.
                ended = &mut connection, if !connection_ended => {
                    ended?;
                    connection_ended = true;
                }
            }
        }
    };
    // Dropping the client ends the connection politely (a Terminate message, no EOF in the log).
    drop(client);
    if !connection_ended && let Err(e) = connection.await {
        tracing::debug!(error = %e, "closing the connection that created the database");
    }
    match created {
        Ok(()) => {
            tracing::info!(dbname = %config.dbname, "created database");
            Ok(())
        }
        // Created meanwhile by another process (the catalog's unique index catches the race).
        Err(e)
            if e.code() == Some(&SqlState::DUPLICATE_DATABASE)
                || e.code() == Some(&SqlState::UNIQUE_VIOLATION) =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// A double-quoted SQL identifier: embedded quotes are doubled, so any name stays one identifier.
/// (PostgreSQL refuses a NUL in a query, so a name holding one fails to create, harmlessly.)
pub(crate) fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `error: cause: cause` on one line, for logs.
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

// ---- errors -----------------------------------------------------------------------------------

/// Whether `source`, the cause of a [`StoreError`], comes from a PostgreSQL failure that a retry on
/// a fresh connection may get past.
pub(crate) fn is_transient(source: &(dyn std::error::Error + 'static)) -> bool {
    if let Some(e) = source.downcast_ref::<tokio_postgres::Error>() {
        return pg_is_transient(e);
    }
    match source.downcast_ref::<PoolError>() {
        Some(PoolError::Timeout(_)) => true,
        Some(PoolError::Backend(e)) => pg_is_transient(e),
        _ => false,
    }
}

fn pg_is_transient(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        return transient_sqlstate(code.code());
    }
    // No SQLSTATE: the server did not answer. An I/O failure (refused, reset, timed out, a name
    // that does not resolve now) may pass; a bad configuration or a protocol error will not.
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// SQLSTATEs that mean "try again": class 08 (connection exception), 40001 (serialization
/// failure), 40P01 (deadlock), 57P01..57P03 (the server is shutting down, crashed or is not
/// accepting connections yet), 53300 (too many connections), 55P03 (lock not available).
fn transient_sqlstate(code: &str) -> bool {
    code.starts_with("08")
        || matches!(code, "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300" | "55P03")
}

fn query_err(operation: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |e| StoreError::Query { operation, source: Box::new(e) }
}

fn invalid(operation: &'static str) -> impl Fn(InvalidValue) -> StoreError {
    move |e| StoreError::Query { operation, source: Box::new(e) }
}

/// A stored value that does not convert to its Rust type reads as corrupt data.
fn row_err(operation: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |e| StoreError::Corrupt { detail: format!("{operation}: {}", chain(&e)) }
}

/// The pool's error, with a backend's own error as the cause (so that it downcasts).
fn pool_source(e: PoolError) -> Box<dyn std::error::Error + Send + Sync> {
    match e {
        PoolError::Backend(e) => Box::new(e),
        e => Box::new(e),
    }
}

/// A read-only transaction at one snapshot, as one SQLite read transaction gives.
async fn snapshot(
    client: &mut Object,
) -> Result<deadpool_postgres::Transaction<'_>, tokio_postgres::Error> {
    client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
}

async fn get(pool: &Pool, operation: &'static str) -> Result<Object, StoreError> {
    pool.get().await.map_err(|e| StoreError::Query { operation, source: pool_source(e) })
}

// ---- migrations -------------------------------------------------------------------------------

async fn read_applied(
    client: &impl tokio_postgres::GenericClient,
) -> Result<Vec<Migration>, StoreError> {
    const OP: &str = "read migrations";
    let rows = client.query(SELECT_APPLIED, &[]).await.map_err(query_err(OP))?;
    rows.iter()
        .map(|r| {
            let version: i32 = r.try_get(0).map_err(row_err(OP))?;
            let version = u32::try_from(version).map_err(|_| StoreError::Corrupt {
                detail: format!("schema_migrations holds version {version}"),
            })?;
            Ok(Migration { version, name: r.try_get(1).map_err(row_err(OP))? })
        })
        .collect()
}

async fn applied_migrations(pool: &Pool) -> Result<Vec<Migration>, StoreError> {
    const OP: &str = "read migrations";
    let client = get(pool, OP).await?;
    let exists: bool =
        client.query_one(HAS_SCHEMA_MIGRATIONS, &[]).await.map_err(query_err(OP))?.get(0);
    if !exists {
        return Ok(Vec::new());
    }
    read_applied(&**client).await
}

/// Applies pending migrations up to version `up_to`, one transaction each, each under the
/// migration lock and re-reading the history inside it, so that two processes migrating at once
/// apply each script once.
async fn migrate(pool: &Pool, up_to: u32) -> Result<Vec<Migration>, StoreError> {
    let mut client = get(pool, "migrate").await?;
    let mut done = Vec::new();
    loop {
        let q = query_err("migrate");
        let tx = client.transaction().await.map_err(&q)?;
        tx.execute(LOCK_MIGRATIONS, &[&MIGRATION_LOCK]).await.map_err(&q)?;
        tx.batch_execute(CREATE_SCHEMA_MIGRATIONS).await.map_err(&q)?;
        let applied = read_applied(&*tx).await?;
        let pending = migrations::pending(MIGRATIONS, &applied)?;
        let Some(script) = pending.first().copied().filter(|s| s.version <= up_to) else {
            tx.commit().await.map_err(&q)?;
            return Ok(done);
        };
        let failed = |e: tokio_postgres::Error| StoreError::Migration {
            version: script.version,
            name: script.name.to_owned(),
            source: Box::new(e),
        };
        let version = i32::try_from(script.version).map_err(|_| StoreError::Corrupt {
            detail: format!("migration version {} does not fit the history", script.version),
        })?;
        tx.batch_execute(script.sql).await.map_err(failed)?;
        tx.execute(INSERT_APPLIED, &[&version, &script.name]).await.map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        tracing::info!(version = script.version, name = script.name, "applied migration");
        done.push(script.migration());
    }
}

// ---- writes -----------------------------------------------------------------------------------

/// The start of PostgreSQL's binary `COPY` format: the signature, the flags (none) and the length
/// of the header extension (none).
const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The end of it: a tuple with -1 fields.
const COPY_TRAILER: i16 = -1;
/// Columns per row of [`COPY_READINGS`].
const COPY_COLUMNS: i16 = 8;

/// Encodes `rows` as one whole binary `COPY` stream (header, one tuple per row in the columns and
/// types of [`COPY_READINGS`], trailer), the bytes `BinaryCopyInWriter` would send, in one buffer.
/// Sent as one message, it goes to the server as fast as the server reads, by the connection's
/// own task: the caller is free meanwhile (the ETL decodes the next batch), where the writer has
/// to be driven 4 KiB at a time.
fn encode_copy<'r>(rows: impl ExactSizeIterator<Item = &'r ReadingRow>) -> Bytes {
    // Lengths are bounded: a device id is at most MAX_DEVICE_ID_LEN bytes, a channel
    // MAX_CHANNEL_LEN, a unit MAX_UNIT_LEN, the other texts are names of this crate.
    fn text(buf: &mut BytesMut, s: &str) {
        buf.put_i32(i32::try_from(s.len()).unwrap_or(i32::MAX));
        buf.put_slice(s.as_bytes());
    }
    let mut buf = BytesMut::with_capacity(COPY_HEADER.len() + rows.len() * 96 + 2);
    buf.put_slice(COPY_HEADER);
    for r in rows {
        buf.put_i16(COPY_COLUMNS);
        text(&mut buf, r.device.as_str());
        text(&mut buf, r.sensor.as_str());
        buf.put_i32(8);
        buf.put_i64(r.ts_ns);
        buf.put_i32(8);
        buf.put_f64(r.value);
        buf.put_i32(8);
        buf.put_i64(r.seq);
        match r.injected {
            Some(kind) => text(&mut buf, kind),
            None => buf.put_i32(-1),
        }
        match r.stored_unit() {
            Some(unit) => text(&mut buf, unit),
            None => buf.put_i32(-1),
        }
        match r.ts_source {
            Some(source) => text(&mut buf, source),
            None => buf.put_i32(-1),
        }
    }
    buf.put_i16(COPY_TRAILER);
    buf.freeze()
}

/// The catalog rows of a write as the five arrays [`UPSERT_CHANNELS`] binds.
struct CatalogColumns<'a> {
    devices: Vec<&'a str>,
    sensors: Vec<&'a str>,
    units: Vec<Option<&'a str>>,
    first: Vec<i64>,
    last: Vec<i64>,
}

impl<'a> CatalogColumns<'a> {
    fn of(rows: &[CatalogRow<'a>]) -> Self {
        Self {
            devices: rows.iter().map(|c| c.device).collect(),
            sensors: rows.iter().map(|c| c.sensor).collect(),
            units: rows.iter().map(|c| c.unit).collect(),
            first: rows.iter().map(|c| c.first_ts_ns).collect(),
            last: rows.iter().map(|c| c.last_ts_ns).collect(),
        }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 5] {
        [&self.devices, &self.sensors, &self.units, &self.first, &self.last]
    }
}

/// Ends a write's transaction: `finish` (what completes the rows: the end of their `COPY`, or
/// nothing), the catalog's upsert (skipped when the write stored no readings) and `COMMIT`, sent
/// together and answered in one round trip. Returns `finish`'s output.
///
/// Polled in this order (`biased`), each statement goes to the connection only once the one
/// before it has: a statement that fails before it is sent (its parameters do not encode) fails
/// the call with nothing after it sent, so `COMMIT` never commits rows without their catalog.
/// A statement the server refuses aborts the transaction, and the `COMMIT` behind it rolls back.
/// The connection queues requests behind an unfinished `COPY`, so they reach the server after it.
async fn record_and_commit<T>(
    client: &Object,
    finish: impl Future<Output = Result<T, tokio_postgres::Error>>,
    upsert: &Statement,
    catalog: &[CatalogRow<'_>],
) -> Result<T, tokio_postgres::Error> {
    let columns = CatalogColumns::of(catalog);
    let record = async {
        if catalog.is_empty() { Ok(0) } else { client.execute(upsert, &columns.params()).await }
    };
    let (out, _, ()) = tokio::try_join!(biased; finish, record, client.batch_execute("COMMIT"))?;
    Ok(out)
}

/// A pooled connection in a transaction begun by hand (`BEGIN` sent with the statements after
/// it, saving the round trip `Client::transaction` waits for). Unless [`committed`] is called,
/// the connection is closed when this is dropped instead of going back to the pool in the middle
/// of the transaction, and the server rolls the transaction back.
///
/// [`committed`]: InTransaction::committed
struct InTransaction(Option<Object>);

impl InTransaction {
    fn client(&self) -> &Object {
        // Only `committed` (which consumes self) and `drop` take the connection out.
        self.0.as_ref().unwrap_or_else(|| unreachable!("the connection is held until dropped"))
    }

    /// The transaction ended (`COMMIT` answered): the connection may go back to the pool.
    fn committed(mut self) {
        drop(self.0.take());
    }
}

impl Drop for InTransaction {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            drop(Object::take(client));
        }
    }
}

async fn write_batch(pool: &Pool, batch: &EncodedBatch) -> Result<BatchOutcome, StoreError> {
    const OP: &str = "write_batch";
    let q = query_err(OP);
    let tx = InTransaction(Some(get(pool, OP).await?));
    let client = tx.client();
    // Prepared once per connection, in one round trip.
    let (lock, select, upsert, spans, copy, channels) = tokio::try_join!(
        client.prepare_cached(LOCK_PARTITIONS),
        client.prepare_cached(SELECT_BATCH_OFFSETS),
        client.prepare_cached(UPSERT_OFFSETS),
        client.prepare_cached(SELECT_CHANNELS_LAST),
        client.prepare_cached(COPY_READINGS),
        client.prepare_cached(UPSERT_CHANNELS),
    )
    .map_err(&q)?;

    // Six statements in one round trip; the connection sends them in this order and the server
    // runs them in order (after a failed one, the rest fail: the transaction is aborted):
    // 1. `BEGIN`;
    // 2. the partitions' locks, held until commit: a concurrent writer of one of them waits
    //    here, then reads the offsets this batch committed;
    // 3. where each partition stood, under the lock (absent when the group never committed it);
    // 4. the offsets after this batch, never moved backwards (a partition already past them keeps
    //    its offset), in the same transaction as the rows;
    // 5. the newest stored timestamp of each channel of the batch, under the lock (the copies
    //    check: live data has none to look up);
    // 6. the start of the rows' COPY, whose data follows once the rows are filtered.
    let key: [&(dyn ToSql + Sync); 3] = [&batch.group, &batch.topic, &batch.partitions];
    let (partitions, next): (Vec<i64>, Vec<i64>) = batch.next_offsets.iter().copied().unzip();
    let offsets: [&(dyn ToSql + Sync); 4] = [&batch.group, &batch.topic, &partitions, &next];
    let all = row::catalog_rows(batch.readings.iter().map(|(.., r)| r));
    let (devices, sensors): (Vec<&str>, Vec<&str>) =
        all.iter().map(|c| (c.device, c.sensor)).unzip();
    let span_keys: [&(dyn ToSql + Sync); 2] = [&devices, &sensors];
    let (_, _, rows, _, newest, sink) = tokio::try_join!(
        client.batch_execute("BEGIN"),
        client.execute(&lock, &key),
        client.query(&select, &key),
        client.execute(&upsert, &offsets),
        client.query(&spans, &span_keys),
        client.copy_in::<_, Bytes>(&copy),
    )
    .map_err(&q)?;
    let mut stored: BTreeMap<i64, i64> = BTreeMap::new();
    for r in rows {
        stored.insert(r.try_get(0).map_err(row_err(OP))?, r.try_get(1).map_err(row_err(OP))?);
    }
    let from = |p: i64| stored.get(&p).copied().unwrap_or(0);

    let mut outcome = BatchOutcome::default();
    let fresh: Vec<&ReadingRow> = batch
        .readings
        .iter()
        .filter(|(p, offset, _)| *offset >= from(*p))
        .map(|(.., r)| r)
        .collect();
    outcome.replayed_skipped += (batch.readings.len() - fresh.len()) as u64;
    let mut last = std::collections::HashMap::new();
    for r in &newest {
        let (device, sensor): (&str, &str) =
            (r.try_get(0).map_err(row_err(OP))?, r.try_get(1).map_err(row_err(OP))?);
        last.insert((device, sensor), r.try_get::<_, i64>(2).map_err(row_err(OP))?);
    }
    let copies = row::Copies::find(&fresh, &last);
    let mut sink = pin!(sink);
    if copies.any() {
        return write_with_copies(tx, batch, (&fresh, &copies), &stored, sink, outcome).await;
    }
    // Only what is inserted: a replay leaves the catalog as it is (without one, the batch's).
    let catalog = if fresh.len() == batch.readings.len() {
        all
    } else {
        row::catalog_rows(fresh.iter().copied())
    };
    // The whole COPY in one message (see `encode_copy`); none at all is a COPY of no rows.
    sink.send(encode_copy(fresh.iter().copied())).await.map_err(&q)?;

    // The common case, a batch without dead letters, ends in one round trip: the COPY's end,
    // the catalog and COMMIT.
    if batch.dead_letters.is_empty() {
        // A commit whose answer is lost may have happened: retrying is still safe, since the
        // retry finds the offsets advanced and skips the rows.
        outcome.readings_inserted =
            record_and_commit(client, sink.finish(), &channels, &catalog).await.map_err(&q)?;
        tx.committed();
        return Ok(outcome);
    }
    outcome.readings_inserted = sink.finish().await.map_err(&q)?;
    insert_dead_letters(client, batch, &stored, &mut outcome).await.map_err(&q)?;

    // As above: safe to retry whatever happened to the COMMIT.
    record_and_commit(client, async { Ok(()) }, &channels, &catalog).await.map_err(&q)?;
    tx.committed();
    Ok(outcome)
}

/// The batch's dead letters, those at or past the partitions' `stored` offsets (the others are
/// replays, counted in `outcome`).
async fn insert_dead_letters(
    client: &Object,
    batch: &EncodedBatch,
    stored: &BTreeMap<i64, i64>,
    outcome: &mut BatchOutcome,
) -> Result<(), tokio_postgres::Error> {
    if batch.dead_letters.is_empty() {
        return Ok(());
    }
    let insert = client.prepare_cached(INSERT_DEAD_LETTER).await?;
    for (p, offset, d) in &batch.dead_letters {
        if *offset < stored.get(p).copied().unwrap_or(0) {
            outcome.replayed_skipped += 1;
            continue;
        }
        let n = client
            .execute(
                &insert,
                &[&batch.topic, p, offset, &batch.group, &d.code, &d.reason, &d.key, &d.payload],
            )
            .await?;
        // 0 when the same message is already stored (a batch that repeats it).
        if n == 0 {
            outcome.replayed_skipped += 1;
        } else {
            outcome.dead_letters_inserted += 1;
        }
    }
    Ok(())
}

/// The rest of a write with copy candidates ([`row::Copies`]; rare: a device's messages sent
/// again): the rows that are certainly new go out in the COPY already begun; the candidates are
/// looked up, and those that copy nothing follow in a second COPY; then the dead letters, the
/// catalog of what was inserted, and COMMIT.
async fn write_with_copies(
    tx: InTransaction,
    batch: &EncodedBatch,
    (fresh, copies): (&[&ReadingRow], &row::Copies),
    stored: &BTreeMap<i64, i64>,
    mut sink: std::pin::Pin<&mut tokio_postgres::CopyInSink<Bytes>>,
    mut outcome: BatchOutcome,
) -> Result<BatchOutcome, StoreError> {
    const OP: &str = "write_batch";
    let q = query_err(OP);
    let client = tx.client();
    let others = copies.others(fresh);
    sink.send(encode_copy(others.iter().copied())).await.map_err(&q)?;
    let mut inserted = sink.finish().await.map_err(&q)?;

    let candidates = copies.rows(fresh);
    let devices: Vec<&str> = candidates.iter().map(|r| r.device.as_str()).collect();
    let sensors: Vec<&str> = candidates.iter().map(|r| r.sensor.as_str()).collect();
    let ts: Vec<i64> = candidates.iter().map(|r| r.ts_ns).collect();
    let select = client.prepare_cached(SELECT_COPIES).await.map_err(&q)?;
    let found = client.query(&select, &[&devices, &sensors, &ts]).await.map_err(&q)?;
    let mut owned: Vec<(String, String, i64, f64)> = Vec::with_capacity(found.len());
    for r in &found {
        owned.push((
            r.try_get(0).map_err(row_err(OP))?,
            r.try_get(1).map_err(row_err(OP))?,
            r.try_get(2).map_err(row_err(OP))?,
            r.try_get(3).map_err(row_err(OP))?,
        ));
    }
    let stored_keys: std::collections::HashSet<row::CopyKey<'_>> =
        owned.iter().map(|(d, s, t, v)| (d.as_str(), s.as_str(), *t, v.to_bits())).collect();
    let (kept, copied) = copies.keep(fresh, &stored_keys);
    outcome.copies_skipped += copied;
    if !kept.is_empty() {
        let copy = client.prepare_cached(COPY_READINGS).await.map_err(&q)?;
        let more = client.copy_in::<_, Bytes>(&copy).await.map_err(&q)?;
        let mut more = pin!(more);
        more.send(encode_copy(kept.iter().copied())).await.map_err(&q)?;
        inserted += more.finish().await.map_err(&q)?;
    }
    outcome.readings_inserted = inserted;
    insert_dead_letters(client, batch, stored, &mut outcome).await.map_err(&q)?;

    let written: Vec<&ReadingRow> = others.into_iter().chain(kept).collect();
    let catalog = row::catalog_rows(written.iter().copied());
    let channels = client.prepare_cached(UPSERT_CHANNELS).await.map_err(&q)?;
    record_and_commit(client, async { Ok(()) }, &channels, &catalog).await.map_err(&q)?;
    tx.committed();
    Ok(outcome)
}

async fn insert_readings(pool: &Pool, rows: &[ReadingRow]) -> Result<u64, StoreError> {
    const OP: &str = "insert_readings";
    let q = query_err(OP);
    let tx = InTransaction(Some(get(pool, OP).await?));
    let client = tx.client();
    let (copy, channels) = tokio::try_join!(
        client.prepare_cached(COPY_READINGS),
        client.prepare_cached(UPSERT_CHANNELS),
    )
    .map_err(&q)?;
    // The rows and their catalog in one transaction: `BEGIN` and the COPY's start in one round
    // trip, then the data, its end, the catalog and `COMMIT` in another.
    let (_, sink) =
        tokio::try_join!(client.batch_execute("BEGIN"), client.copy_in::<_, Bytes>(&copy))
            .map_err(&q)?;
    let mut sink = pin!(sink);
    sink.send(encode_copy(rows.iter())).await.map_err(&q)?;
    let catalog = row::catalog_rows(rows);
    // Until `COMMIT` is sent the server cannot commit, so a failure before it is safe to retry.
    // Once it is, a lost connection leaves the outcome unknown; a statement the server refused
    // (an error with a SQLSTATE) rolled the whole transaction back.
    let inserted =
        record_and_commit(client, sink.finish(), &channels, &catalog).await.map_err(|e| {
            if e.code().is_none() {
                StoreError::Query { operation: OP, source: Box::new(OutcomeUnknown(e)) }
            } else {
                q(e)
            }
        })?;
    tx.committed();
    Ok(inserted)
}

// ---- reads ------------------------------------------------------------------------------------

async fn committed_offsets(
    pool: &Pool,
    group: &str,
    topic: &str,
) -> Result<BTreeMap<u32, u64>, StoreError> {
    const OP: &str = "committed_offsets";
    let client = get(pool, OP).await?;
    let stmt = client.prepare_cached(SELECT_OFFSETS).await.map_err(query_err(OP))?;
    let mut out = BTreeMap::new();
    for r in client.query(&stmt, &[&group, &topic]).await.map_err(query_err(OP))? {
        let p: i64 = r.try_get(0).map_err(row_err(OP))?;
        let next: i64 = r.try_get(1).map_err(row_err(OP))?;
        out.insert(row::from_sql_partition(p)?, row::from_sql_u64("next_offset", next)?);
    }
    Ok(out)
}

/// Decodes the rows of `SELECT device, sensor, ts_ns, value, seq, injected, unit, ts_source` as
/// they stream in.
async fn collect_readings(
    rows: tokio_postgres::RowStream,
    out: &mut Vec<Reading>,
) -> Result<(), StoreError> {
    const OP: &str = "query_range";
    let bad = row_err(OP);
    let mut rows = pin!(rows);
    // Runs of one device are long: validate its name once per run.
    let mut last: Option<DeviceId> = None;
    while let Some(r) = rows.try_next().await.map_err(query_err(OP))? {
        let r: Row = r;
        let name: &str = r.try_get(0).map_err(&bad)?;
        let device = match &last {
            Some(d) if d.as_str() == name => d.clone(),
            _ => {
                let d = row::decode_device(name)?;
                last = Some(d.clone());
                d
            }
        };
        let mut reading = row::decode_reading(
            device,
            r.try_get(1).map_err(&bad)?,
            r.try_get(6).map_err(&bad)?,
            r.try_get(2).map_err(&bad)?,
            r.try_get(3).map_err(&bad)?,
            r.try_get(4).map_err(&bad)?,
            r.try_get(5).map_err(&bad)?,
        )?;
        reading.ts_source = row::decode_ts_source(r.try_get(7).map_err(&bad)?)?;
        out.push(reading);
    }
    Ok(())
}

async fn query_range(pool: &Pool, query: &RangeQuery) -> Result<Vec<Reading>, StoreError> {
    const OP: &str = "query_range";
    let q = query_err(OP);
    let mut out = Vec::new();
    if query.from_ns >= query.to_ns {
        return Ok(out);
    }
    // Empty: every channel.
    let sensors: Vec<&str> = query.sensors.iter().map(|s| s.as_str()).collect();
    let mut client = get(pool, OP).await?;
    // One snapshot for every statement below, as one SQLite read transaction would give.
    let tx = snapshot(&mut client).await.map_err(&q)?;
    // One index range scan per device, in byte order of the names, gives the promised order.
    // Every device: listed by the index too, rather than sorting a scan of the whole table.
    let devices: Vec<String> = if query.devices.is_empty() {
        let stmt = tx.prepare_cached(SELECT_DEVICES).await.map_err(&q)?;
        let rows = tx.query(&stmt, &[]).await.map_err(&q)?;
        rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>().map_err(row_err(OP))?
    } else {
        let mut devices: Vec<String> =
            query.devices.iter().map(|d| d.as_str().to_owned()).collect();
        devices.sort_unstable();
        devices.dedup();
        devices
    };
    let stmt = tx.prepare_cached(SELECT_RANGE_ONE_DEVICE).await.map_err(&q)?;
    for device in &devices {
        let params: [&(dyn ToSql + Sync); 4] = [device, &query.from_ns, &query.to_ns, &sensors];
        let rows = tx.query_raw(&stmt, params).await.map_err(&q)?;
        collect_readings(rows, &mut out).await?;
    }
    tx.commit().await.map_err(&q)?;
    Ok(out)
}

async fn dead_letters(pool: &Pool, topic: &str) -> Result<Vec<DeadLetter>, StoreError> {
    const OP: &str = "dead_letters";
    let client = get(pool, OP).await?;
    let stmt = client.prepare_cached(SELECT_DEAD_LETTERS).await.map_err(query_err(OP))?;
    let bad = row_err(OP);
    let mut out = Vec::new();
    for r in client.query(&stmt, &[&topic]).await.map_err(query_err(OP))? {
        let partition: i64 = r.try_get(0).map_err(&bad)?;
        let offset: i64 = r.try_get(1).map_err(&bad)?;
        out.push(DeadLetter {
            source: SourceOffset {
                partition: row::from_sql_partition(partition)?,
                offset: row::from_sql_u64("offset", offset)?,
            },
            code: r.try_get(2).map_err(&bad)?,
            reason: r.try_get(3).map_err(&bad)?,
            key: r.try_get(4).map_err(&bad)?,
            payload: r.try_get(5).map_err(&bad)?,
        });
    }
    Ok(out)
}

async fn stats(pool: &Pool) -> Result<StoreStats, StoreError> {
    const OP: &str = "stats";
    let client = get(pool, OP).await?;
    let stmt = client.prepare_cached(SELECT_STATS).await.map_err(query_err(OP))?;
    let r = client.query_one(&stmt, &[]).await.map_err(query_err(OP))?;
    let bad = row_err(OP);
    let readings: i64 = r.try_get(0).map_err(&bad)?;
    let dead_letters: i64 = r.try_get(1).map_err(&bad)?;
    let latest_ts_ns: Option<i64> = r.try_get(2).map_err(&bad)?;
    let offsets: Vec<i64> = r.try_get(3).map_err(&bad)?;
    let mut committed_offsets_total: u64 = 0;
    for next in offsets {
        committed_offsets_total =
            committed_offsets_total.saturating_add(row::from_sql_u64("next_offset", next)?);
    }
    Ok(StoreStats {
        readings: row::from_sql_u64("reading count", readings)?,
        dead_letters: row::from_sql_u64("dead letter count", dead_letters)?,
        committed_offsets_total,
        latest_ts_ns,
    })
}

async fn save_alerts(pool: &Pool, rows: &[AlertRow]) -> Result<u64, StoreError> {
    const OP: &str = "save_alerts";
    let q = query_err(OP);
    let mut client = get(pool, OP).await?;
    let tx = client.transaction().await.map_err(&q)?;
    let stmt = tx.prepare_cached(row::UPSERT_ANOMALY).await.map_err(&q)?;
    let mut written = 0u64;
    for a in rows {
        written += tx
            .execute(
                &stmt,
                &[
                    &a.id,
                    &a.device,
                    &a.window_start_ns,
                    &a.window_end_ns,
                    &a.score,
                    &a.threshold,
                    &a.severity,
                    &a.state,
                    &a.sensor_share,
                    &a.model_name,
                    &a.model_version,
                    &a.detected_at_ns,
                ],
            )
            .await
            .map_err(&q)?;
    }
    tx.commit().await.map_err(&q)?;
    Ok(written)
}

async fn anomalies(pool: &Pool, query: &AnomalyQuery) -> Result<Vec<Alert>, StoreError> {
    const OP: &str = "anomalies";
    let q = query_err(OP);
    let client = get(pool, OP).await?;
    let sql = format!(
        "SELECT {} FROM anomalies WHERE ($1::text IS NULL OR device = $1) \
         AND window_end_ns >= $2 AND window_start_ns < $3 ORDER BY window_start_ns, id",
        row::ANOMALY_COLUMNS
    );
    let stmt = client.prepare_cached(&sql).await.map_err(&q)?;
    let device = query.device.as_ref().map(ToString::to_string);
    let bad = row_err(OP);
    let mut out = Vec::new();
    for r in client.query(&stmt, &[&device, &query.from_ns, &query.to_ns]).await.map_err(&q)? {
        out.push(row::decode_alert(AlertRowOwned {
            id: r.try_get(0).map_err(&bad)?,
            device: r.try_get(1).map_err(&bad)?,
            window_start_ns: r.try_get(2).map_err(&bad)?,
            window_end_ns: r.try_get(3).map_err(&bad)?,
            score: r.try_get(4).map_err(&bad)?,
            threshold: r.try_get(5).map_err(&bad)?,
            severity: r.try_get(6).map_err(&bad)?,
            state: r.try_get(7).map_err(&bad)?,
            sensor_share: r.try_get(8).map_err(&bad)?,
            model_name: r.try_get(9).map_err(&bad)?,
            model_version: r.try_get(10).map_err(&bad)?,
            detected_at_ns: r.try_get(11).map_err(&bad)?,
        })?);
    }
    Ok(out)
}

async fn save_scores(pool: &Pool, rows: &[ScoreRow]) -> Result<u64, StoreError> {
    const OP: &str = "save_scores";
    let q = query_err(OP);
    let devices: Vec<&str> = rows.iter().map(|r| r.device.as_str()).collect();
    let ts: Vec<i64> = rows.iter().map(|r| r.ts_ns).collect();
    let scores: Vec<f64> = rows.iter().map(|r| r.score).collect();
    let thresholds: Vec<f64> = rows.iter().map(|r| r.threshold).collect();
    let top: Vec<&str> = rows.iter().map(|r| r.top_sensor.as_str()).collect();
    let versions: Vec<&str> = rows.iter().map(|r| r.model_version.as_str()).collect();
    let client = get(pool, OP).await?;
    let stmt = client.prepare_cached(UPSERT_SCORES).await.map_err(&q)?;
    // One statement: its own transaction, all or nothing.
    client.execute(&stmt, &[&devices, &ts, &scores, &thresholds, &top, &versions]).await.map_err(&q)
}

async fn save_bridge_status(pool: &Pool, rows: &[BridgeStatusRow]) -> Result<u64, StoreError> {
    const OP: &str = "save_bridge_status";
    let q = query_err(OP);
    let latest = crate::latest_per_bridge(rows);
    let bridges: Vec<&str> = latest.iter().map(|r| r.bridge.as_str()).collect();
    let reported: Vec<i64> = latest.iter().map(|r| r.reported_ns).collect();
    let reports: Vec<&str> = latest.iter().map(|r| r.report.as_str()).collect();
    let client = get(pool, OP).await?;
    let stmt = client.prepare_cached(UPSERT_BRIDGE_STATUS).await.map_err(&q)?;
    // One statement: its own transaction, all or nothing.
    client.execute(&stmt, &[&bridges, &reported, &reports]).await.map_err(&q)
}

async fn bridge_status(pool: &Pool) -> Result<Vec<BridgeStatusRow>, StoreError> {
    const OP: &str = "bridge_status";
    let (q, bad) = (query_err(OP), row_err(OP));
    let client = get(pool, OP).await?;
    let stmt = client.prepare_cached(SELECT_BRIDGE_STATUS).await.map_err(&q)?;
    let mut out = client
        .query(&stmt, &[])
        .await
        .map_err(&q)?
        .iter()
        .map(|r| {
            Ok(BridgeStatusRow {
                bridge: r.try_get(0).map_err(&bad)?,
                reported_ns: r.try_get(1).map_err(&bad)?,
                report: r.try_get(2).map_err(&bad)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    out.sort_by(|a, b| a.bridge.as_bytes().cmp(b.bridge.as_bytes()));
    Ok(out)
}

/// The devices a `SELECT device FROM devices ...` statement lists, validated.
async fn device_names(
    client: &impl deadpool_postgres::GenericClient,
    sql: &str,
    operation: &'static str,
) -> Result<Vec<DeviceId>, StoreError> {
    let stmt = client.prepare_cached(sql).await.map_err(query_err(operation))?;
    let rows = client.query(&stmt, &[]).await.map_err(query_err(operation))?;
    let bad = row_err(operation);
    rows.iter()
        .map(|r| row::decode_device(r.try_get(0).map_err(&bad)?))
        .collect::<Result<Vec<_>, _>>()
}

async fn scores(pool: &Pool, query: &ScoreQuery) -> Result<Vec<ScorePoint>, StoreError> {
    const OP: &str = "scores";
    let (q, bad) = (query_err(OP), row_err(OP));
    let mut out = Vec::new();
    if query.from_ns >= query.to_ns {
        return Ok(out);
    }
    let mut client = get(pool, OP).await?;
    // One snapshot for the device list and the ranges.
    let tx = snapshot(&mut client).await.map_err(&q)?;
    // One range of the primary key per device, in byte order of the names, gives the promised
    // order without sorting the rows.
    let devices = match &query.device {
        Some(d) => vec![d.clone()],
        None => {
            let mut devices = device_names(&tx, SELECT_SCORE_DEVICES, OP).await?;
            devices.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
            devices
        }
    };
    let stmt = tx.prepare_cached(SELECT_SCORES_ONE_DEVICE).await.map_err(&q)?;
    for device in devices {
        let name = device.as_str();
        for r in tx.query(&stmt, &[&name, &query.from_ns, &query.to_ns]).await.map_err(&q)? {
            out.push(row::decode_score(
                device.clone(),
                r.try_get(1).map_err(&bad)?,
                r.try_get(2).map_err(&bad)?,
                r.try_get(3).map_err(&bad)?,
                r.try_get(4).map_err(&bad)?,
                r.try_get(5).map_err(&bad)?,
            )?);
        }
    }
    tx.commit().await.map_err(&q)?;
    Ok(out)
}

async fn latest_readings(pool: &Pool, since_ns: i64) -> Result<Vec<Reading>, StoreError> {
    const OP: &str = "latest_readings";
    let q = query_err(OP);
    let client = get(pool, OP).await?;
    let stmt = client.prepare_cached(SELECT_LATEST).await.map_err(&q)?;
    let params: [&(dyn ToSql + Sync); 1] = [&since_ns];
    let rows = client.query_raw(&stmt, params).await.map_err(&q)?;
    let mut out = Vec::new();
    collect_readings(rows, &mut out).await?;
    row::sort_by_channel(&mut out, |r| (&r.device, &r.sensor));
    Ok(out)
}

async fn channels(pool: &Pool) -> Result<Vec<ChannelInfo>, StoreError> {
    const OP: &str = "channels";
    let (q, bad) = (query_err(OP), row_err(OP));
    let client = get(pool, OP).await?;
    let stmt = client.prepare_cached(SELECT_CHANNELS).await.map_err(&q)?;
    let mut out = Vec::new();
    for r in client.query(&stmt, &[]).await.map_err(&q)? {
        out.push(row::decode_channel_info(
            r.try_get(0).map_err(&bad)?,
            r.try_get(1).map_err(&bad)?,
            r.try_get(2).map_err(&bad)?,
            r.try_get(3).map_err(&bad)?,
            r.try_get(4).map_err(&bad)?,
        )?);
    }
    row::sort_by_channel(&mut out, |c| (&c.device, &c.sensor));
    Ok(out)
}

async fn channel_stats(
    pool: &Pool,
    from_ns: i64,
    to_ns: i64,
) -> Result<Vec<ChannelStats>, StoreError> {
    const OP: &str = "channel_stats";
    let (q, bad) = (query_err(OP), row_err(OP));
    let mut out = StatsBuilder::default();
    if from_ns >= to_ns {
        return Ok(out.finish());
    }
    let client = get(pool, OP).await?;
    let stmt = client.prepare_cached(SELECT_CHANNEL_STATS).await.map_err(&q)?;
    for r in client.query(&stmt, &[&from_ns, &to_ns]).await.map_err(&q)? {
        out.push(StatsGroup {
            device: r.try_get(0).map_err(&bad)?,
            sensor: r.try_get(1).map_err(&bad)?,
            unit: r.try_get(2).map_err(&bad)?,
            count: r.try_get(3).map_err(&bad)?,
            min: r.try_get(4).map_err(&bad)?,
            max: r.try_get(5).map_err(&bad)?,
            sum: r.try_get(6).map_err(&bad)?,
        })?;
    }
    Ok(out.finish())
}

async fn devices(pool: &Pool) -> Result<Vec<DeviceId>, StoreError> {
    let client = get(pool, "devices").await?;
    device_names(&client, SELECT_DEVICES, "devices").await
}

#[async_trait::async_trait]
impl ReadingStore for PostgresStore {
    async fn migrate(&self) -> Result<Vec<Migration>, StoreError> {
        self.retry("migrate", || Box::pin(migrate(&self.pool, u32::MAX))).await
    }

    async fn applied_migrations(&self) -> Result<Vec<Migration>, StoreError> {
        self.retry("applied_migrations", || Box::pin(applied_migrations(&self.pool))).await
    }

    async fn write_batch(&self, batch: &IngestBatch) -> Result<BatchOutcome, StoreError> {
        let encoded = EncodedBatch::encode(batch).map_err(invalid("write_batch"))?;
        let started = Instant::now();
        let outcome =
            self.retry("write_batch", || Box::pin(write_batch(&self.pool, &encoded))).await?;
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
        self.retry("committed_offsets", || Box::pin(committed_offsets(&self.pool, group, topic)))
            .await
    }

    async fn insert_readings(&self, readings: &[Reading]) -> Result<u64, StoreError> {
        if readings.is_empty() {
            return Ok(0);
        }
        let rows = readings
            .iter()
            .map(ReadingRow::encode)
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid("insert_readings"))?;
        self.retry("insert_readings", || Box::pin(insert_readings(&self.pool, &rows))).await
    }

    async fn query_range(&self, query: &RangeQuery) -> Result<Vec<Reading>, StoreError> {
        self.retry("query_range", || Box::pin(query_range(&self.pool, query))).await
    }

    async fn dead_letters(&self, topic: &str) -> Result<Vec<DeadLetter>, StoreError> {
        self.retry("dead_letters", || Box::pin(dead_letters(&self.pool, topic))).await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.retry("stats", || Box::pin(stats(&self.pool))).await
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
        // Safe to retry: the upsert never moves a row back, so a replayed prefix changes nothing.
        self.retry("save_alerts", || Box::pin(save_alerts(&self.pool, &rows))).await
    }

    async fn anomalies(&self, query: &AnomalyQuery) -> Result<Vec<Alert>, StoreError> {
        self.retry("anomalies", || Box::pin(anomalies(&self.pool, query))).await
    }

    async fn save_scores(&self, points: &[ScorePoint]) -> Result<u64, StoreError> {
        let rows = ScoreRow::encode_all(points).map_err(invalid("save_scores"))?;
        if rows.is_empty() {
            return Ok(0);
        }
        // Safe to retry: an upsert of the same rows writes the same table.
        self.retry("save_scores", || Box::pin(save_scores(&self.pool, &rows))).await
    }

    async fn scores(&self, query: &ScoreQuery) -> Result<Vec<ScorePoint>, StoreError> {
        self.retry("scores", || Box::pin(scores(&self.pool, query))).await
    }

    async fn latest_readings(&self, since_ns: i64) -> Result<Vec<Reading>, StoreError> {
        self.retry("latest_readings", || Box::pin(latest_readings(&self.pool, since_ns))).await
    }

    async fn devices(&self) -> Result<Vec<DeviceId>, StoreError> {
        self.retry("devices", || Box::pin(devices(&self.pool))).await
    }

    async fn channels(&self) -> Result<Vec<ChannelInfo>, StoreError> {
        self.retry("channels", || Box::pin(channels(&self.pool))).await
    }

    async fn channel_stats(
        &self,
        from_ns: i64,
        to_ns: i64,
    ) -> Result<Vec<ChannelStats>, StoreError> {
        self.retry("channel_stats", || Box::pin(channel_stats(&self.pool, from_ns, to_ns))).await
    }

    async fn save_bridge_status(&self, reports: &[BridgeStatusRow]) -> Result<u64, StoreError> {
        if reports.is_empty() {
            return Ok(0);
        }
        // Safe to retry: the upsert keeps the newest report whatever ran before.
        self.retry("save_bridge_status", || Box::pin(save_bridge_status(&self.pool, reports))).await
    }

    async fn bridge_status(&self) -> Result<Vec<BridgeStatusRow>, StoreError> {
        self.retry("bridge_status", || Box::pin(bridge_status(&self.pool))).await
    }
}

#[cfg(feature = "testkit")]
#[async_trait::async_trait]
impl crate::contract::OlderSchema for PostgresStore {
    async fn migrate_to(&self, version: u32) -> Result<Vec<Migration>, StoreError> {
        self.retry("migrate", || Box::pin(migrate(&self.pool, version))).await
    }

    async fn execute_batch(&self, sql: &str) -> Result<(), StoreError> {
        const OP: &str = "execute_batch";
        let client = get(&self.pool, OP).await?;
        client.batch_execute(sql).await.map_err(query_err(OP))
    }
}

#[cfg(feature = "testkit")]
impl PostgresStore {
    /// The plans (`EXPLAIN ANALYZE`, one string per line: the statements run) of the reads a
    /// dashboard polls, named by the method that runs them: `latest_readings(since_ns)`,
    /// `channels`, `devices`, and `scores` (the device list, then `device`'s range). For tests
    /// that check they probe the indexes rather than scan the tables. (`ANALYZE`, because a
    /// plain `EXPLAIN` leaves out the subplan of the loose index scan's recursive step.)
    pub async fn explain_reads(
        &self,
        since_ns: i64,
        device: &str,
    ) -> Result<Vec<(&'static str, Vec<String>)>, StoreError> {
        const OP: &str = "explain";
        let q = query_err(OP);
        let client = get(&self.pool, OP).await?;
        let reads: [(&'static str, &str, Vec<&(dyn ToSql + Sync)>); 5] = [
            ("latest_readings", SELECT_LATEST, vec![&since_ns]),
            ("channels", SELECT_CHANNELS, vec![]),
            ("devices", SELECT_DEVICES, vec![]),
            ("scores: devices", SELECT_SCORE_DEVICES, vec![]),
            ("scores: one device", SELECT_SCORES_ONE_DEVICE, vec![&device, &since_ns, &i64::MAX]),
        ];
        let mut out = Vec::new();
        for (name, sql, params) in reads {
            let explain = format!("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {sql}");
            let rows = client.query(&explain, &params).await.map_err(&q)?;
            let lines =
                rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>().map_err(row_err(OP))?;
            out.push((name, lines));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout PostgreSQL documents for `COPY … (FORMAT binary)`, byte by byte; that the server
    /// takes it is shown by the store contract suite against PostgreSQL.
    #[test]
    fn copy_data_is_postgres_binary_copy_format() {
        let row = |sensor, unit, injected, ts_source| ReadingRow {
            device: DeviceId::new("pump-7").unwrap(),
            sensor: sentio_core::Channel::new(sensor).unwrap(),
            unit: sentio_core::Unit::new(unit).unwrap(),
            ts_ns: -2,
            value: 1.5,
            seq: 258,
            injected,
            ts_source,
        };
        let cases = [
            ("pressure", "bar", None, None),
            ("vibration_x", "m/s²", Some("pressure_flat"), Some("arrival")),
        ];
        let rows =
            cases.map(|(sensor, unit, injected, source)| row(sensor, unit, injected, source));
        let data = encode_copy(rows.iter());
        let mut want: Vec<u8> = b"PGCOPY\n\xff\r\n\0".to_vec();
        want.extend([0, 0, 0, 0, 0, 0, 0, 0]); // flags, header extension length
        for (sensor, unit, injected, ts_source) in cases {
            want.extend(8i16.to_be_bytes());
            for text in ["pump-7", sensor] {
                want.extend((text.len() as i32).to_be_bytes());
                want.extend(text.as_bytes());
            }
            for number in [(-2i64).to_be_bytes(), 1.5f64.to_be_bytes(), 258i64.to_be_bytes()] {
                want.extend(8i32.to_be_bytes());
                want.extend(number);
            }
            match injected {
                None => want.extend((-1i32).to_be_bytes()),
                Some(kind) => {
                    want.extend((kind.len() as i32).to_be_bytes());
                    want.extend(kind.as_bytes());
                }
            }
            // A pump channel in the pump's unit is stored as NULL (see `ReadingRow::stored_unit`).
            if sensor == "pressure" && unit == "bar" {
                want.extend((-1i32).to_be_bytes());
            } else {
                want.extend((unit.len() as i32).to_be_bytes());
                want.extend(unit.as_bytes());
            }
            // Event time is NULL.
            match ts_source {
                None => want.extend((-1i32).to_be_bytes()),
                Some(source) => {
                    want.extend((source.len() as i32).to_be_bytes());
                    want.extend(source.as_bytes());
                }
            }
        }
        want.extend((-1i16).to_be_bytes());
        assert_eq!(&data[..], &want[..]);
        assert_eq!(&encode_copy([].iter())[..], &[&want[..19], &[0xff, 0xff][..]].concat()[..]);
    }

    #[test]
    fn identifiers_are_quoted_whole() {
        assert_eq!(quote_identifier("sentio"), "\"sentio\"");
        assert_eq!(quote_identifier("a\"; DROP DATABASE x; --"), "\"a\"\"; DROP DATABASE x; --\"");
        assert_eq!(quote_identifier("Mixed Case"), "\"Mixed Case\"");
    }

    #[test]
    fn transient_sqlstates() {
        for code in
            ["08000", "08006", "08P01", "40001", "40P01", "57P01", "57P02", "57P03", "53300"]
        {
            assert!(transient_sqlstate(code), "{code}");
        }
        for code in ["23505", "42P01", "28P01", "3D000", "22021", "57014"] {
            assert!(!transient_sqlstate(code), "{code}");
        }
    }

    #[test]
    fn unrelated_errors_are_not_transient() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        // A bare I/O error is not ours to judge; only one inside a tokio-postgres error is.
        assert!(!is_transient(&io));
        assert!(!is_transient(&InvalidValue::NotFinite { value: f64::NAN }));
    }
}
