-- 0001 init: readings, consumer offsets, dead letters and anomalies.
--
-- Kept portable in spirit: migrations/postgres/0001_init.sql creates the same tables with the same
-- column names, with PostgreSQL's types (BIGINT, DOUBLE PRECISION, BYTEA, TIMESTAMPTZ).
-- Timestamps of events are INTEGER nanoseconds since the Unix epoch; bookkeeping times
-- (updated_at, stored_at) are ISO-8601 UTC text.

-- One row per reading. No unique index: inserts must stay fast, and exactly-once comes from the
-- consumer offsets written in the same transaction, not from deduplicating rows.
CREATE TABLE sensor_readings (
    device   TEXT    NOT NULL,
    sensor   TEXT    NOT NULL,
    ts_ns    INTEGER NOT NULL,
    value    REAL    NOT NULL,
    -- u64 on the Rust side, stored as a signed 64-bit INTEGER: values above i64::MAX are rejected.
    seq      INTEGER NOT NULL,
    -- The anomaly kind the simulator injected (ground truth), NULL for normal readings.
    injected TEXT
);

-- Serves the range query: one device, a time range.
CREATE INDEX sensor_readings_device_ts ON sensor_readings (device, ts_ns);

-- Where each consumer group resumes, per topic and partition. Written in the same transaction as
-- the rows it covers.
CREATE TABLE consumer_offsets (
    group_id    TEXT    NOT NULL,
    topic       TEXT    NOT NULL,
    partition   INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    updated_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (group_id, topic, partition)
);

-- Messages the ETL could not decode: the original bytes and why.
CREATE TABLE dead_letters (
    topic     TEXT    NOT NULL,
    partition INTEGER NOT NULL,
    "offset"  INTEGER NOT NULL,
    group_id  TEXT    NOT NULL,
    code      TEXT    NOT NULL,
    reason    TEXT    NOT NULL,
    key       BLOB    NOT NULL,
    payload   BLOB    NOT NULL,
    stored_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (topic, partition, "offset", group_id)
);

-- What the detector finds (written by a later release; no store methods yet).
CREATE TABLE anomalies (
    id              TEXT    NOT NULL PRIMARY KEY,
    device          TEXT    NOT NULL,
    window_start_ns INTEGER NOT NULL,
    window_end_ns   INTEGER NOT NULL,
    score           REAL    NOT NULL,
    threshold       REAL    NOT NULL,
    severity        TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    -- JSON object: sensor name -> share of the reconstruction error.
    sensor_share    TEXT    NOT NULL,
    model_name      TEXT    NOT NULL,
    model_version   TEXT    NOT NULL,
    detected_at_ns  INTEGER NOT NULL
);

CREATE INDEX anomalies_device_window ON anomalies (device, window_start_ns);
