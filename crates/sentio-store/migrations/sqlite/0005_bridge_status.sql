-- 0005 bridge_status: the newest status report of every bridge, for the pipeline page.
--
-- The same table, columns and names as migrations/postgres/0005_bridge_status.sql, with SQLite's
-- types. A `sentio bridge` in a process of its own publishes a report on topics.status every
-- bridge.report_every; the ETL keeps each bridge's newest here (docs/messages.md, bridge status
-- v1), so `sentio serve`, wherever it runs, shows every bridge without a connection to the bus.

-- One row per bridge id (`mqtt:<client id>@<broker>`, `http:<host>@<bind>`). A report replaces
-- the row only when it is newer (reported_ns, the bridge's own clock), so a redelivered or
-- replayed report never moves a bridge back.
CREATE TABLE bridge_status (
    bridge      TEXT    NOT NULL PRIMARY KEY,
    -- The report's `at`: INTEGER nanoseconds since the Unix epoch, as sensor_readings.ts_ns.
    reported_ns INTEGER NOT NULL,
    -- The report as the bridge sent it (bridge status v1 JSON).
    report      TEXT    NOT NULL
);
