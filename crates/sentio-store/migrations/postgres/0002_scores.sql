-- 0002 scores: the anomaly score of every scored window, for the dashboard and Grafana.
--
-- The same table, columns and names as migrations/sqlite/0002_scores.sql, with PostgreSQL's types.
-- ts_ns is the end of the scored window (exclusive), BIGINT nanoseconds since the Unix epoch, as
-- sensor_readings.ts_ns.
--
-- `device` is plain TEXT in the database's default collation (Grafana queries the table as is):
-- the store lists the devices by a loose scan of the primary key and sorts their names itself,
-- in byte order as SQLite does, then reads each device's range of the key.

-- One row per device and window end. The detector writes every window it scores (the streaming
-- detector per batch, `sentio demo` and `sentio detect --from/--to` for the history they replay);
-- a window scored again (a redelivered batch, a replay over the same range, another model
-- version) replaces its row, so the table holds the latest score of each window. Rows go in with
-- one INSERT ... SELECT FROM unnest(...) per call.
CREATE TABLE anomaly_scores (
    device        TEXT             NOT NULL,
    ts_ns         BIGINT           NOT NULL,
    -- The window's mean squared reconstruction error (standardized units, sensor weights applied).
    score         DOUBLE PRECISION NOT NULL,
    -- The threshold the score was compared with: the model's, times the device's factor.
    threshold     DOUBLE PRECISION NOT NULL,
    -- The sensor with the largest share of the window's error (a SensorKind name).
    top_sensor    TEXT             NOT NULL,
    model_version TEXT             NOT NULL,
    -- Also serves the reads: one device over a time range.
    PRIMARY KEY (device, ts_ns)
);
