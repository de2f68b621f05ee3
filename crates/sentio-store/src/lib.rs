//! The reading store: where the ETL lands readings and where training reads them back.
//!
//! - [`ReadingStore`]: the port every backend implements.
//! - `sqlite`: the embedded backend (one file, the default).
//! - `postgres`: PostgreSQL (tokio-postgres, a connection pool, binary COPY), for production.
//! - `migrations`: versioned schema changes, applied by `sentio migrate` and at start.
//! - `contract` (feature `testkit`): the suite every backend must pass, written once.
//! - `row`: how domain values map to columns and back, shared by backends ([`InvalidValue`]).
//!
//! Besides readings, the store keeps what the detector finds: alerts (`anomalies`, one row per
//! alert) and the score of every scored window (`anomaly_scores`, [`ScorePoint`]), which the
//! dashboard charts next to the newest readings ([`ReadingStore::latest_readings`]).
//!
//! Readings are of any channel of any machine, each with its unit: the pump's four and whatever
//! else a device reports. A catalog of the channels each device has ever reported
//! ([`ReadingStore::channels`], written in the same transaction as the readings) tells the reads
//! which (device, channel) to look for, so that "the newest of each" never scans the readings.
//!
//! Exactly-once ingestion rests on [`ReadingStore::write_batch`]: the rows of a batch and the
//! consumer offsets that cover them commit in one transaction, and rows from offsets the store has
//! already passed are skipped inside that same transaction. A crash at any point therefore neither
//! loses nor duplicates a row, whatever the bus redelivers.

use std::collections::BTreeMap;

use sentio_core::{Alert, Channel, DeviceId, Reading, Unit};

/// Where a message came from on the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceOffset {
    pub partition: u32,
    pub offset: u64,
}

/// A message the ETL could not decode, kept with its reason.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub source: SourceOffset,
    /// Short stable code, e.g. `missing_field` (see `sentio_core::DecodeError::code`).
    pub code: String,
    /// The full human-readable reason.
    pub reason: String,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

/// One unit of ETL work: the decoded readings and dead letters of a run of messages from one topic,
/// and the offsets to resume from once they are stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestBatch {
    pub group: String,
    pub topic: String,
    pub readings: Vec<(SourceOffset, Reading)>,
    pub dead_letters: Vec<DeadLetter>,
    /// Per partition, the offset after the last message this batch covers.
    pub next_offsets: BTreeMap<u32, u64>,
}

/// What [`ReadingStore::write_batch`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub readings_inserted: u64,
    pub dead_letters_inserted: u64,
    /// Readings and dead letters skipped because the store already held their offsets (replays).
    pub replayed_skipped: u64,
    /// Readings skipped as exact copies (device, channel, timestamp and value) of one already
    /// stored or of an earlier one of the same write: the same message sent twice, such as an
    /// MQTT broker's redelivery after a bridge restart ([`row::Copies`]).
    pub copies_skipped: u64,
}

/// The range query training uses. Empty `devices` or `sensors` mean all of them; either may list
/// any number of names (a channel no device has simply matches nothing).
#[derive(Debug, Clone, PartialEq)]
pub struct RangeQuery {
    pub devices: Vec<DeviceId>,
    pub sensors: Vec<Channel>,
    /// Inclusive start, nanoseconds since the epoch.
    pub from_ns: i64,
    /// Exclusive end.
    pub to_ns: i64,
}

/// Which stored anomalies to read: those whose window overlaps `[from_ns, to_ns)`, of one
/// device or of all.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyQuery {
    pub device: Option<DeviceId>,
    pub from_ns: i64,
    pub to_ns: i64,
}

impl AnomalyQuery {
    /// Every stored anomaly.
    pub fn all() -> AnomalyQuery {
        AnomalyQuery { device: None, from_ns: i64::MIN, to_ns: i64::MAX }
    }
}

/// One scored window of one device, as the dashboard charts it: a row of `anomaly_scores`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScorePoint {
    pub device: DeviceId,
    /// End of the scored window (exclusive), nanoseconds since the epoch.
    pub ts_ns: i64,
    pub score: f64,
    /// The threshold the score was compared with (the model's, times the device's factor).
    pub threshold: f64,
    /// The channel with the largest share of the window's error.
    pub top_sensor: Channel,
    pub model_version: String,
}

/// Which stored scores to read: those of one device or of all with `from_ns <= ts_ns < to_ns`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreQuery {
    pub device: Option<DeviceId>,
    /// Inclusive start, nanoseconds since the epoch.
    pub from_ns: i64,
    /// Exclusive end.
    pub to_ns: i64,
}

impl ScoreQuery {
    /// Every stored score (but one at `ts_ns = i64::MAX`, which no half-open range reaches).
    pub fn all() -> ScoreQuery {
        ScoreQuery { device: None, from_ns: i64::MIN, to_ns: i64::MAX }
    }
}

/// One row of the channel catalog: a (device, channel) the store holds readings of.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelInfo {
    pub device: DeviceId,
    pub sensor: Channel,
    /// The unit of the channel's newest reading (of the newest written, on a tie). Readings
    /// stored before units were (schema 2 and older) count as the pump default unit of a pump
    /// channel, and as `""` for any other name.
    pub unit: Unit,
    /// The oldest and newest timestamps of the channel's readings, nanoseconds since the epoch
    /// (both inclusive).
    pub first_ts_ns: i64,
    pub last_ts_ns: i64,
}

/// Summary statistics of one (device, channel, unit) over a time range.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelStats {
    pub device: DeviceId,
    pub sensor: Channel,
    pub unit: Unit,
    /// Readings in the range (at least 1).
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
}

/// A migration known to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub version: u32,
    pub name: String,
}

/// Counts for summaries and consistency checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub readings: u64,
    pub dead_letters: u64,
    /// Sum over all consumer-offset rows of the next offset: with one group and a bus that starts
    /// at zero, this equals `readings + dead_letters`. Saturates at `u64::MAX`.
    pub committed_offsets_total: u64,
    /// The newest reading's timestamp, if any (where a restarted simulation resumes).
    pub latest_ts_ns: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at {location}")]
    Open {
        location: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("migration {version} ({name}) failed")]
    Migration {
        version: u32,
        name: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "the store's schema is at version {found}, newer than this build knows ({known}); upgrade sentio"
    )]
    SchemaTooNew { found: u32, known: u32 },
    #[error("store query failed: {operation}")]
    Query {
        operation: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("stored data is invalid: {detail}")]
    Corrupt { detail: String },
    #[error("the store's worker stopped")]
    WorkerGone,
}

impl StoreError {
    /// Whether retrying the same call may succeed: a busy SQLite database; for PostgreSQL a lost
    /// or refused connection, a pool timeout, a server shutting down or starting, a serialization
    /// failure or a deadlock (see `postgres::is_transient` for the SQLSTATEs).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Query { source, .. } => {
                let busy = source
                    .downcast_ref::<rusqlite::Error>()
                    .and_then(rusqlite::Error::sqlite_error_code)
                    .is_some_and(|c| {
                        matches!(
                            c,
                            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                        )
                    });
                busy || postgres::is_transient(source.as_ref())
            }
            // A server that is down or restarting, at connect time or mid-migration.
            StoreError::Open { source, .. } | StoreError::Migration { source, .. } => {
                postgres::is_transient(source.as_ref())
            }
            _ => false,
        }
    }
}

/// The store port.
#[async_trait::async_trait]
pub trait ReadingStore: Send + Sync {
    /// Applies every pending migration, in order; returns the ones it applied.
    async fn migrate(&self) -> Result<Vec<Migration>, StoreError>;

    /// The migrations already applied, in order.
    async fn applied_migrations(&self) -> Result<Vec<Migration>, StoreError>;

    /// In one transaction: inserts the batch's readings and dead letters whose offsets are at or
    /// past the stored offset of their partition, and advances the stored offsets (never backwards).
    ///
    /// SQL integers are signed, so a `seq`, offset or next offset above `i64::MAX` (and a
    /// non-finite value) is refused with [`StoreError::Query`] whose source is an
    /// [`InvalidValue`]; nothing of a refused batch is written.
    async fn write_batch(&self, batch: &IngestBatch) -> Result<BatchOutcome, StoreError>;

    /// The next offset to consume per partition for `group` on `topic`.
    async fn committed_offsets(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<BTreeMap<u32, u64>, StoreError>;

    /// Inserts readings with no offsets (bulk loads, benchmarks), in one transaction. Refuses what
    /// `write_batch` refuses.
    async fn insert_readings(&self, readings: &[Reading]) -> Result<u64, StoreError>;

    /// Readings in the range, ordered by device, timestamp, sensor name and sequence number.
    /// (`to_ns` is exclusive, so a reading stamped `i64::MAX` is stored but never returned.)
    async fn query_range(&self, query: &RangeQuery) -> Result<Vec<Reading>, StoreError>;

    /// The dead letters stored for `topic` (any group), ordered by partition and offset.
    async fn dead_letters(&self, topic: &str) -> Result<Vec<DeadLetter>, StoreError>;

    async fn stats(&self) -> Result<StoreStats, StoreError>;

    /// Saves alert messages in one transaction, in order: each becomes the row of its alert id,
    /// unless that row is already at a later state (opened, then updated, then resolved), so a
    /// redelivered or replayed message never moves an alert back. Returns the rows written.
    /// Non-finite scores, thresholds or shares are refused like non-finite readings.
    async fn save_alerts(&self, alerts: &[Alert]) -> Result<u64, StoreError>;

    /// The stored anomalies (each alert's latest state) whose window overlaps the query's range,
    /// ordered by window start, then id.
    async fn anomalies(&self, query: &AnomalyQuery) -> Result<Vec<Alert>, StoreError>;

    /// Saves scored windows in one transaction: each becomes the row of its (device, ts_ns),
    /// replacing what is there (a window scored again, by a replay or another model version,
    /// overwrites its row; of several points with the same key in one call, the last wins).
    /// Returns the rows written, one per distinct (device, ts_ns).
    ///
    /// A non-finite score or threshold is refused with [`StoreError::Query`] whose source is an
    /// [`InvalidValue`]; nothing of a refused call is written.
    async fn save_scores(&self, points: &[ScorePoint]) -> Result<u64, StoreError>;

    /// The stored scores in the query's range, ordered by device (byte order of the names), then
    /// `ts_ns`.
    async fn scores(&self, query: &ScoreQuery) -> Result<Vec<ScorePoint>, StoreError>;

    /// The newest reading of every channel of every device among the readings stamped at or
    /// after `since_ns`, in [channel order](channel_order): by device (byte order of the names),
    /// then the pump's four channels in [`SensorKind::ALL`] order, then any other channel by
    /// name. A device or channel with no reading since then is absent. Of readings with the same
    /// newest timestamp, the one with the largest sequence number wins.
    ///
    /// Served by the channel catalog and the `(device, ts_ns)` index: the catalog's rows (one per
    /// device and channel; those whose newest reading is older than `since_ns` are skipped
    /// there), then per row a backward walk of the device's entries since `since_ns` that stops
    /// at the channel's newest (a few entries, as the channels interleave). Never a scan of the
    /// readings.
    async fn latest_readings(&self, since_ns: i64) -> Result<Vec<Reading>, StoreError>;

    /// The channel catalog: every (device, channel) the store holds readings of, with the unit
    /// of its newest reading and the span of its timestamps, in [channel order](channel_order).
    /// A read of the catalog only (one row per device and channel), never of the readings.
    async fn channels(&self) -> Result<Vec<ChannelInfo>, StoreError>;

    /// Count, minimum, maximum and mean of `value` per (device, channel, unit) over the readings
    /// stamped in `[from_ns, to_ns)`, in [channel order](channel_order), then by unit. Readings
    /// stored without a unit (schema 2 and older) count under the pump default unit of a pump
    /// channel and `""` for any other name, together with the readings that name that unit.
    ///
    /// For one-off commands (`sentio profile suggest`): it reads every reading of the range (a
    /// scan of that part of the table, or of the table for a wide range), so do not poll it.
    async fn channel_stats(
        &self,
        from_ns: i64,
        to_ns: i64,
    ) -> Result<Vec<ChannelStats>, StoreError>;

    /// The distinct devices that have readings, in byte order of their names (one index probe
    /// per device).
    async fn devices(&self) -> Result<Vec<DeviceId>, StoreError>;

    /// Keeps each bridge's newest status report, in one transaction: a report replaces its
    /// bridge's row only when its `reported_ns` is later (of several for one bridge in one call,
    /// the latest wins), so a redelivered report never moves a bridge back. Returns the rows
    /// written or replaced.
    async fn save_bridge_status(&self, reports: &[BridgeStatusRow]) -> Result<u64, StoreError>;

    /// Every bridge's newest report, in byte order of the bridge ids.
    async fn bridge_status(&self) -> Result<Vec<BridgeStatusRow>, StoreError>;
}

/// A bridge's status report as the store keeps it: the report's JSON is the bridge's own
/// (`sentio_core::BridgeReport`), kept as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeStatusRow {
    pub bridge: String,
    /// The report's time (its `at`), in nanoseconds since the Unix epoch.
    pub reported_ns: i64,
    pub report: String,
}

/// Of several reports per bridge, the latest of each (by `reported_ns`, then the last given),
/// in byte order of the ids: what a backend writes.
pub(crate) fn latest_per_bridge(reports: &[BridgeStatusRow]) -> Vec<&BridgeStatusRow> {
    let mut latest: BTreeMap<&str, &BridgeStatusRow> = BTreeMap::new();
    for r in reports {
        match latest.get(r.bridge.as_str()) {
            Some(have) if have.reported_ns > r.reported_ns => {}
            _ => {
                latest.insert(&r.bridge, r);
            }
        }
    }
    latest.into_values().collect()
}

#[cfg(feature = "testkit")]
pub mod contract;
pub mod migrations;
pub mod postgres;
mod row;
pub mod sqlite;

pub use row::{InvalidValue, channel_order};
