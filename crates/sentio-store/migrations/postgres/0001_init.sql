-- 0001 init: readings, consumer offsets, dead letters and anomalies.
--
-- The same tables, columns and names as migrations/sqlite/0001_init.sql, with PostgreSQL's types.
-- Timestamps of events are BIGINT nanoseconds since the Unix epoch; bookkeeping times (updated_at,
-- stored_at) are TIMESTAMPTZ.
--
-- Text that the store orders by (device, sensor) is COLLATE "C": byte order, as in SQLite, so that
-- both backends return a range in the same order whatever the database's default collation, and
-- the (device, ts_ns) index serves ORDER BY device without a sort.

-- One row per reading. No unique index: inserts must stay fast (binary COPY), and exactly-once
-- comes from the consumer offsets written in the same transaction, not from deduplicating rows.
CREATE TABLE sensor_readings (
    device   TEXT COLLATE "C" NOT NULL,
    sensor   TEXT COLLATE "C" NOT NULL,
    ts_ns    BIGINT           NOT NULL,
    value    DOUBLE PRECISION NOT NULL,
    -- u64 on the Rust side, stored as a signed BIGINT: values above i64::MAX are rejected.
    seq      BIGINT           NOT NULL,
    -- The anomaly kind the simulator injected (ground truth), NULL for normal readings.
    injected TEXT
);

-- Serves the range query: one device, a time range. The only index: a second one on ts_ns alone
-- cost a quarter of the COPY throughput (measured: 620k -> 470k rows/s). What it would serve, the
-- newest timestamp and the list of devices, this one serves too, with a loose index scan that
-- hops from device to device (see postgres.rs).
CREATE INDEX sensor_readings_device_ts ON sensor_readings (device, ts_ns);

-- Where each consumer group resumes, per topic and partition. Written in the same transaction as
-- the rows it covers; write_batch holds a transaction-scoped advisory lock per (group, topic,
-- partition) while it reads and advances them, which serializes concurrent writers of one partition.
CREATE TABLE consumer_offsets (
    group_id    TEXT        NOT NULL,
    topic       TEXT        NOT NULL,
    -- BIGINT: partitions are u32 on the Rust side (SQLite's INTEGER is 64-bit too).
    partition   BIGINT      NOT NULL,
    next_offset BIGINT      NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);

-- Messages the ETL could not decode: the original bytes and why.
CREATE TABLE dead_letters (
    topic     TEXT        NOT NULL,
    partition BIGINT      NOT NULL,
    "offset"  BIGINT      NOT NULL,
    group_id  TEXT        NOT NULL,
    code      TEXT        NOT NULL,
    reason    TEXT        NOT NULL,
    key       BYTEA       NOT NULL,
    payload   BYTEA       NOT NULL,
    stored_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (topic, partition, "offset", group_id)
);

-- What the detector finds (written by a later release; no store methods yet).
CREATE TABLE anomalies (
    id              TEXT             NOT NULL PRIMARY KEY,
    device          TEXT COLLATE "C" NOT NULL,
    window_start_ns BIGINT           NOT NULL,
    window_end_ns   BIGINT           NOT NULL,
    score           DOUBLE PRECISION NOT NULL,
    threshold       DOUBLE PRECISION NOT NULL,
    severity        TEXT             NOT NULL,
    state           TEXT             NOT NULL,
    -- JSON object: sensor name -> share of the reconstruction error. TEXT as in SQLite: the store
    -- reads it back whole, and JSONB would parse it on every insert for nothing.
    sensor_share    TEXT             NOT NULL,
    model_name      TEXT             NOT NULL,
    model_version   TEXT             NOT NULL,
    detected_at_ns  BIGINT           NOT NULL
);

CREATE INDEX anomalies_device_window ON anomalies (device, window_start_ns);
