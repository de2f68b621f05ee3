-- 0003 channels: readings of any channel, each with its unit, and a catalog of the channels.
--
-- The same column, table and names as migrations/sqlite/0003_channels.sql, with PostgreSQL's
-- types. Until now every reading was one of the pump's four sensors, in the unit the pump profile
-- fixes; from here on `sensor` holds the name of any channel a device reports (`current`,
-- `vibration_x`, ...), in the unit its producer sent.

-- The unit `value` is in, as the producer sent it ('' for a dimensionless value). NULL in the rows
-- written before this migration, which are all of pump channels in the pump profile's units: the
-- store reads NULL as the pump default unit of a pump channel ('' for any other name) instead of
-- this migration rewriting every row. A nullable column without a default: adding it rewrites
-- nothing, however large the table. The binary COPY writes it as the seventh column.
ALTER TABLE sensor_readings ADD COLUMN unit TEXT;

-- One row per (device, channel) that has readings: the unit it reads in and the span of its
-- timestamps. Written in the same transaction as the readings, by one INSERT ... SELECT FROM
-- unnest(...) ... ON CONFLICT per write, with the channels in (device, sensor) order so that
-- concurrent writers lock shared rows in one order; readings a replay skips do not touch it. It
-- is what keeps "the newest reading of every channel" cheap: the reads walk these few rows and
-- probe the (device, ts_ns) index once per row, instead of discovering the channels from the
-- readings. COLLATE "C" as in sensor_readings: byte order, as SQLite sorts.
CREATE TABLE channels (
    device      TEXT COLLATE "C" NOT NULL,
    sensor      TEXT COLLATE "C" NOT NULL,
    -- The unit of the newest reading (by ts_ns; of equal ones, the last written). NULL, read as in
    -- sensor_readings, when that reading predates this migration.
    unit        TEXT,
    -- The oldest and newest ts_ns of the channel's readings, both inclusive.
    first_ts_ns BIGINT           NOT NULL,
    last_ts_ns  BIGINT           NOT NULL,
    PRIMARY KEY (device, sensor)
);

-- The channels of the readings stored so far, in one pass over the table (a migration may read it
-- all; the reads never do). No reading has a unit yet, so neither does any channel.
INSERT INTO channels (device, sensor, unit, first_ts_ns, last_ts_ns)
SELECT device, sensor, NULL, min(ts_ns), max(ts_ns)
FROM sensor_readings
GROUP BY device, sensor;
