//! The contract every [`ReadingStore`] backend must pass, written once.
//!
//! Run [`check_store`] on a fresh, migrated, empty store: SQLite in this crate's tests, PostgreSQL
//! (on a fresh database) in the integration tests. Each `check_*` function tests one promise and
//! uses its own group, topic and device names, so the checks do not see each other's rows and a
//! failure names the promise that broke.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::ops::Range;

use sentio_core::{
    Alert, AlertState, AnomalyKind, Channel, DeviceId, Reading, SensorKind, Severity, TsSource,
    Unit,
};

use crate::{
    AnomalyQuery, BatchOutcome, ChannelInfo, ChannelStats, DeadLetter, IngestBatch, InvalidValue,
    Migration, RangeQuery, ReadingStore, ScorePoint, ScoreQuery, SourceOffset, StoreError,
    channel_order,
};

/// What a backend gives [`check_upgrade_from_schema_2`] besides the store: a way to stop
/// migrating at an older version, and to write rows as an older build did, with raw SQL.
#[async_trait::async_trait]
pub trait OlderSchema: ReadingStore {
    /// Applies the pending migrations up to version `version` only, as an older build would
    /// have; [`ReadingStore::migrate`] applies the rest.
    async fn migrate_to(&self, version: u32) -> Result<Vec<Migration>, StoreError>;

    /// Runs `sql` (statements without parameters) on the store's database.
    async fn execute_batch(&self, sql: &str) -> Result<(), StoreError>;
}

/// Runs every check, in order. Panics, naming the check, on the first broken promise.
pub async fn check_store(store: &dyn ReadingStore) {
    check_migrate_is_idempotent(store).await;
    check_an_empty_store_reads_empty(store).await;
    check_write_batch_stores_rows_and_offsets(store).await;
    check_replay_inserts_nothing(store).await;
    check_overlapping_batch_inserts_only_the_new_part(store).await;
    check_copies_are_stored_once(store).await;
    check_offsets_never_go_backwards(store).await;
    check_offsets_are_per_group_and_topic(store).await;
    check_dead_letters(store).await;
    check_query_range_filters_and_orders(store).await;
    check_injected_round_trips(store).await;
    check_arrival_time_is_marked(store).await;
    check_extreme_values_round_trip(store).await;
    check_out_of_range_values_are_rejected(store).await;
    check_insert_readings(store).await;
    check_stats_agree(store).await;
    check_large_batch_round_trips(store).await;
    check_alerts_keep_their_latest_state(store).await;
    check_scores_round_trip_in_order(store).await;
    check_scores_filter_by_device_and_half_open_range(store).await;
    check_scores_upsert_overwrites(store).await;
    check_non_finite_scores_are_refused_whole(store).await;
    check_channels_of_any_machine_round_trip(store).await;
    check_channel_filters_take_any_number_of_channels(store).await;
    check_catalog_keeps_span_and_newest_unit(store).await;
    check_replays_leave_the_catalog_alone(store).await;
    check_channel_stats_of_a_known_set(store).await;
    check_bridge_status_keeps_each_bridges_newest(store).await;
    // Last: these read every device the checks above wrote.
    check_latest_readings_newest_per_device_and_sensor(store).await;
    check_latest_readings_of_every_channel(store).await;
    check_latest_readings_agree_with_the_readings(store).await;
    check_catalog_agrees_with_the_readings(store).await;
    check_channel_stats_agree_with_the_readings(store).await;
    check_devices_are_sorted_and_distinct(store).await;
}

// ---- helpers ----------------------------------------------------------------------------------

fn dev(name: &str) -> DeviceId {
    DeviceId::new(name).unwrap()
}

/// A reading of one of the pump's channels, in the pump's unit.
fn reading(device: &str, sensor: SensorKind, ts_ns: i64, seq: u64, value: f64) -> Reading {
    Reading::pump(dev(device), sensor, ts_ns, value, seq)
}

fn channel(name: &str) -> Channel {
    Channel::new(name).unwrap()
}

fn unit(name: &str) -> Unit {
    Unit::new(name).unwrap()
}

/// A reading of any channel, in any unit.
fn channel_reading(
    device: &str,
    sensor: &str,
    in_unit: &str,
    ts_ns: i64,
    seq: u64,
    value: f64,
) -> Reading {
    Reading {
        device: dev(device),
        sensor: channel(sensor),
        unit: unit(in_unit),
        ts_ns,
        value,
        seq,
        injected: None,
        ts_source: TsSource::Event,
    }
}

/// One reading per offset of `offsets` on `partition`, as the ETL would decode them: the sensors
/// take turns, the timestamp and sequence number follow the offset.
fn readings_at(device: &str, partition: u32, offsets: Range<u64>) -> Vec<(SourceOffset, Reading)> {
    offsets
        .map(|o| {
            let sensor = SensorKind::ALL[(o % 4) as usize];
            let ts = 1_700_000_000_000_000_000 + (o / 4) as i64 * 1_000_000_000;
            (
                SourceOffset { partition, offset: o },
                reading(device, sensor, ts, o / 4, o as f64 * 0.25),
            )
        })
        .collect()
}

fn batch(
    group: &str,
    topic: &str,
    readings: Vec<(SourceOffset, Reading)>,
    next_offsets: &[(u32, u64)],
) -> IngestBatch {
    IngestBatch {
        group: group.to_owned(),
        topic: topic.to_owned(),
        readings,
        dead_letters: Vec::new(),
        next_offsets: next_offsets.iter().copied().collect(),
    }
}

/// Everything a device holds that a range query can return (`to_ns` is exclusive, so a reading
/// at `i64::MAX` is out of reach of any query).
fn everything_of(devices: &[&str]) -> RangeQuery {
    RangeQuery {
        devices: devices.iter().map(|d| dev(d)).collect(),
        sensors: Vec::new(),
        from_ns: i64::MIN,
        to_ns: i64::MAX,
    }
}

/// The order `query_range` promises: device, timestamp, sensor name, sequence number.
fn sorted(mut readings: Vec<Reading>) -> Vec<Reading> {
    readings.sort_by(|a, b| {
        (a.device.as_str(), a.ts_ns, a.sensor.as_str(), a.seq).cmp(&(
            b.device.as_str(),
            b.ts_ns,
            b.sensor.as_str(),
            b.seq,
        ))
    });
    readings
}

fn only_readings(pairs: &[(SourceOffset, Reading)]) -> Vec<Reading> {
    pairs.iter().map(|(_, r)| r.clone()).collect()
}

fn offsets(pairs: &[(u32, u64)]) -> BTreeMap<u32, u64> {
    pairs.iter().copied().collect()
}

fn dead_letter(partition: u32, offset: u64, payload: &[u8]) -> DeadLetter {
    DeadLetter {
        source: SourceOffset { partition, offset },
        code: "invalid_json".to_owned(),
        reason: format!("expected value at line 1 column 1 (offset {offset}) — ünïcödé"),
        key: format!("key-{offset}").into_bytes(),
        payload: payload.to_vec(),
    }
}

fn assert_rejected(result: Result<impl std::fmt::Debug, StoreError>, what: &str) {
    match result {
        Err(StoreError::Query { source, .. }) => {
            assert!(
                source.downcast_ref::<InvalidValue>().is_some(),
                "{what}: expected an InvalidValue as the cause, got {source:?}"
            );
        }
        other => panic!("{what}: expected a rejection, got {other:?}"),
    }
}

// ---- checks -----------------------------------------------------------------------------------

/// `migrate` on a migrated store applies nothing; the history is listed in version order.
pub async fn check_migrate_is_idempotent(store: &dyn ReadingStore) {
    let again = store.migrate().await.unwrap();
    assert!(again.is_empty(), "a second migrate applied {again:?}");
    let applied = store.applied_migrations().await.unwrap();
    assert!(!applied.is_empty(), "a migrated store lists no migrations");
    for (i, m) in applied.iter().enumerate() {
        assert_eq!(m.version as usize, i + 1, "migrations out of order or with holes: {applied:?}");
        assert!(!m.name.is_empty(), "migration {} has no name", m.version);
    }
    assert!(store.migrate().await.unwrap().is_empty());
    assert_eq!(store.applied_migrations().await.unwrap(), applied);
}

/// On a fresh store, before any other check writes, every read answers empty.
pub async fn check_an_empty_store_reads_empty(store: &dyn ReadingStore) {
    assert_eq!(store.scores(&ScoreQuery::all()).await.unwrap(), Vec::new(), "scores");
    assert_eq!(store.latest_readings(i64::MIN).await.unwrap(), Vec::new(), "latest_readings");
    assert_eq!(store.devices().await.unwrap(), Vec::<DeviceId>::new(), "devices");
    assert_eq!(store.channels().await.unwrap(), Vec::new(), "channels");
    assert_eq!(store.channel_stats(i64::MIN, i64::MAX).await.unwrap(), Vec::new(), "stats");
    assert_eq!(store.save_scores(&[]).await.unwrap(), 0);
    assert_eq!(store.scores(&ScoreQuery::all()).await.unwrap(), Vec::new());
}

/// A batch's rows and its offsets are stored together.
pub async fn check_write_batch_stores_rows_and_offsets(store: &dyn ReadingStore) {
    let (group, topic) = ("basic-group", "basic-topic");
    assert!(store.committed_offsets(group, topic).await.unwrap().is_empty());
    let mut rows = readings_at("basic-a", 0, 0..10);
    rows.extend(readings_at("basic-b", 1, 0..6));
    let b = batch(group, topic, rows.clone(), &[(0, 10), (1, 6)]);
    let out = store.write_batch(&b).await.unwrap();
    assert_eq!(
        out,
        BatchOutcome {
            readings_inserted: 16,
            dead_letters_inserted: 0,
            replayed_skipped: 0,
            copies_skipped: 0
        }
    );
    assert_eq!(store.committed_offsets(group, topic).await.unwrap(), offsets(&[(0, 10), (1, 6)]));
    let back = store.query_range(&everything_of(&["basic-a", "basic-b"])).await.unwrap();
    assert_eq!(back, sorted(only_readings(&rows)));

    // An empty batch that only moves an offset is fine too.
    let out = store.write_batch(&batch(group, topic, Vec::new(), &[(2, 3)])).await.unwrap();
    assert_eq!(out, BatchOutcome::default());
    assert_eq!(
        store.committed_offsets(group, topic).await.unwrap(),
        offsets(&[(0, 10), (1, 6), (2, 3)])
    );
}

/// Writing the same batch again (the bus redelivered it after a crash) inserts nothing.
pub async fn check_replay_inserts_nothing(store: &dyn ReadingStore) {
    let (group, topic) = ("replay-group", "replay-topic");
    let rows = readings_at("replay-a", 3, 100..140);
    let b = batch(group, topic, rows.clone(), &[(3, 140)]);
    assert_eq!(store.write_batch(&b).await.unwrap().readings_inserted, 40);
    for _ in 0..2 {
        let out = store.write_batch(&b).await.unwrap();
        assert_eq!(
            out,
            BatchOutcome {
                readings_inserted: 0,
                dead_letters_inserted: 0,
                replayed_skipped: 40,
                copies_skipped: 0
            }
        );
    }
    assert_eq!(store.query_range(&everything_of(&["replay-a"])).await.unwrap().len(), 40);
    assert_eq!(store.committed_offsets(group, topic).await.unwrap(), offsets(&[(3, 140)]));
}

/// A reading sent again (new offsets, the same device, channel, timestamp and value: an MQTT
/// broker's redelivery) is stored once, whether its first copy was stored by an earlier write or
/// comes earlier in the same one; a reading at a stored timestamp with another value, or older
/// than anything stored, is new.
pub async fn check_copies_are_stored_once(store: &dyn ReadingStore) {
    let (group, topic) = ("copies-group", "copies-topic");
    let first = readings_at("copies-a", 0, 0..20);
    store.write_batch(&batch(group, topic, first.clone(), &[(0, 20)])).await.unwrap();

    let at = |offset: u64, r: Reading| (SourceOffset { partition: 0, offset }, r);
    let t0 = 1_700_000_000_000_000_000;
    let mut second: Vec<(SourceOffset, Reading)> = Vec::new();
    // Copies of five stored readings.
    for (i, (_, r)) in first[5..10].iter().enumerate() {
        second.push(at(20 + i as u64, r.clone()));
    }
    // The same channel and timestamp as a stored one, another value: a correction, kept.
    let mut corrected = first[12].1.clone();
    corrected.value += 1.0;
    second.push(at(25, corrected));
    // A new reading twice in one write, then once more new, and one older than anything stored.
    let new = reading("copies-a", SensorKind::Temperature, t0 + 100_000_000_000, 9, 7.5);
    second.push(at(26, new.clone()));
    second.push(at(27, new.clone()));
    second
        .push(at(28, reading("copies-a", SensorKind::Temperature, t0 + 101_000_000_000, 10, 8.0)));
    second.push(at(29, reading("copies-a", SensorKind::Humidity, t0 - 5_000_000_000, 0, 50.0)));
    let out = store.write_batch(&batch(group, topic, second, &[(0, 30)])).await.unwrap();
    assert_eq!(
        out,
        BatchOutcome {
            readings_inserted: 4,
            dead_letters_inserted: 0,
            replayed_skipped: 0,
            copies_skipped: 6
        }
    );
    let back = store.query_range(&everything_of(&["copies-a"])).await.unwrap();
    assert_eq!(back.len(), 24);
    let copies_of_new = back.iter().filter(|r| r.ts_ns == new.ts_ns && r.value == 7.5).count();
    assert_eq!(copies_of_new, 1);
    assert_eq!(store.committed_offsets(group, topic).await.unwrap(), offsets(&[(0, 30)]));
}

/// A batch that starts before the stored offset inserts only what lies at or past it.
pub async fn check_overlapping_batch_inserts_only_the_new_part(store: &dyn ReadingStore) {
    let (group, topic) = ("overlap-group", "overlap-topic");
    let first = readings_at("overlap-a", 0, 0..10);
    store.write_batch(&batch(group, topic, first, &[(0, 10)])).await.unwrap();

    let second = readings_at("overlap-a", 0, 5..15);
    let out = store.write_batch(&batch(group, topic, second, &[(0, 15)])).await.unwrap();
    assert_eq!(
        out,
        BatchOutcome {
            readings_inserted: 5,
            dead_letters_inserted: 0,
            replayed_skipped: 5,
            copies_skipped: 0
        }
    );
    let back = store.query_range(&everything_of(&["overlap-a"])).await.unwrap();
    assert_eq!(back, sorted(only_readings(&readings_at("overlap-a", 0, 0..15))));
    assert_eq!(store.committed_offsets(group, topic).await.unwrap(), offsets(&[(0, 15)]));

    // Partitions are independent: an old offset on one does not hide new rows on another.
    let mut mixed = readings_at("overlap-a", 0, 12..16);
    mixed.extend(readings_at("overlap-b", 1, 0..4));
    let out = store.write_batch(&batch(group, topic, mixed, &[(0, 16), (1, 4)])).await.unwrap();
    assert_eq!(
        out,
        BatchOutcome {
            readings_inserted: 5,
            dead_letters_inserted: 0,
            replayed_skipped: 3,
            copies_skipped: 0
        }
    );
    assert_eq!(store.committed_offsets(group, topic).await.unwrap(), offsets(&[(0, 16), (1, 4)]));
}

/// A stale batch (an older consumer finishing late) never moves an offset back.
pub async fn check_offsets_never_go_backwards(store: &dyn ReadingStore) {
    let (group, topic) = ("backwards-group", "backwards-topic");
    store.write_batch(&batch(group, topic, Vec::new(), &[(0, 100), (1, 50)])).await.unwrap();
    let stale = readings_at("backwards-a", 0, 40..60);
    let out = store.write_batch(&batch(group, topic, stale, &[(0, 60), (1, 7)])).await.unwrap();
    assert_eq!(
        out,
        BatchOutcome {
            readings_inserted: 0,
            dead_letters_inserted: 0,
            replayed_skipped: 20,
            copies_skipped: 0
        }
    );
    assert_eq!(store.committed_offsets(group, topic).await.unwrap(), offsets(&[(0, 100), (1, 50)]));
    assert!(store.query_range(&everything_of(&["backwards-a"])).await.unwrap().is_empty());

    // Offsets up to i64::MAX are kept exactly.
    let top = i64::MAX as u64;
    store.write_batch(&batch(group, topic, Vec::new(), &[(2, top)])).await.unwrap();
    assert_eq!(store.committed_offsets(group, topic).await.unwrap()[&2], top);
}

/// Offsets belong to a (group, topic): other groups and topics start from zero.
pub async fn check_offsets_are_per_group_and_topic(store: &dyn ReadingStore) {
    let (g1, g2, t1, t2) = ("per-group-1", "per-group-2", "per-topic-1", "per-topic-2");
    let rows = readings_at("per-a", 0, 0..8);
    store.write_batch(&batch(g1, t1, rows.clone(), &[(0, 8)])).await.unwrap();
    assert_eq!(store.committed_offsets(g1, t1).await.unwrap(), offsets(&[(0, 8)]));
    assert!(store.committed_offsets(g2, t1).await.unwrap().is_empty());
    assert!(store.committed_offsets(g1, t2).await.unwrap().is_empty());

    // The same offsets under another group are that group's first delivery, not a replay: its
    // readings are stored, and those that copy the first group's exactly are stored once.
    let mut theirs = readings_at("per-a2", 0, 0..8);
    theirs.extend(
        rows.iter().cloned().map(|(src, r)| (SourceOffset { offset: src.offset + 8, ..src }, r)),
    );
    let out = store.write_batch(&batch(g2, t1, theirs, &[(0, 16)])).await.unwrap();
    assert_eq!((out.readings_inserted, out.replayed_skipped, out.copies_skipped), (8, 0, 8));
    let b = batch(g1, t2, readings_at("per-b", 0, 0..3), &[(0, 3)]);
    assert_eq!(store.write_batch(&b).await.unwrap().readings_inserted, 3);

    assert_eq!(store.committed_offsets(g1, t1).await.unwrap(), offsets(&[(0, 8)]));
    assert_eq!(store.committed_offsets(g2, t1).await.unwrap(), offsets(&[(0, 16)]));
    assert_eq!(store.committed_offsets(g1, t2).await.unwrap(), offsets(&[(0, 3)]));
    assert_eq!(store.query_range(&everything_of(&["per-a"])).await.unwrap().len(), 8);
    assert_eq!(store.query_range(&everything_of(&["per-a2"])).await.unwrap().len(), 8);
}

/// Dead letters keep their bytes, code and reason; replays do not duplicate them.
pub async fn check_dead_letters(store: &dyn ReadingStore) {
    let (group, topic) = ("dlq-group", "dlq-topic");
    let all_bytes: Vec<u8> = (0..=255).collect();
    let mut dl = vec![
        dead_letter(1, 4, b"{\"device\": "),
        dead_letter(0, 2, &all_bytes),
        dead_letter(0, 0, b""),
    ];
    dl[2].key = Vec::new();
    dl[1].key = vec![0, 0xff, 0, 0x80];

    let mut b = batch(group, topic, readings_at("dlq-a", 0, 1..2), &[(0, 3), (1, 5)]);
    b.dead_letters = dl.clone();
    let out = store.write_batch(&b).await.unwrap();
    assert_eq!(
        out,
        BatchOutcome {
            readings_inserted: 1,
            dead_letters_inserted: 3,
            replayed_skipped: 0,
            copies_skipped: 0
        }
    );
    let mut expected = dl.clone();
    expected.sort_by_key(|d| d.source);
    assert_eq!(store.dead_letters(topic).await.unwrap(), expected);

    let out = store.write_batch(&b).await.unwrap();
    assert_eq!(
        out,
        BatchOutcome {
            readings_inserted: 0,
            dead_letters_inserted: 0,
            replayed_skipped: 4,
            copies_skipped: 0
        }
    );
    assert_eq!(store.dead_letters(topic).await.unwrap(), expected);

    // Only the topic asked for.
    assert!(store.dead_letters("dlq-other-topic").await.unwrap().is_empty());
    let mut other = batch(group, "dlq-other-topic", Vec::new(), &[(0, 1)]);
    other.dead_letters = vec![dead_letter(0, 0, b"x")];
    store.write_batch(&other).await.unwrap();
    assert_eq!(store.dead_letters(topic).await.unwrap(), expected);
    assert_eq!(store.dead_letters("dlq-other-topic").await.unwrap().len(), 1);
}

/// Device and sensor filters, the half-open time range, and the promised order.
pub async fn check_query_range_filters_and_orders(store: &dyn ReadingStore) {
    use SensorKind::{Humidity, Pressure, Temperature, Vibration};
    let t0 = 1_000_000;
    // Written out of order, with ties on timestamp (several sensors) and on timestamp and sensor
    // (two sequence numbers), to test the ordering rather than the insertion order.
    let rows = vec![
        reading("range-b", Temperature, t0 + 10, 1, 1.0),
        reading("range-a", Vibration, t0 + 10, 2, 2.0),
        reading("range-a", Humidity, t0 + 10, 3, 3.0),
        reading("range-a", Humidity, t0 + 10, 1, 4.0),
        reading("range-a", Pressure, t0, 4, 5.0),
        reading("range-c", Pressure, t0 + 5, 5, 6.0),
        reading("range-a", Temperature, t0 + 20, 6, 7.0),
        reading("range-b", Humidity, t0 - 1, 7, 8.0),
        reading("range-a", Temperature, t0 + 30, 8, 9.0),
    ];
    let pairs = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (SourceOffset { partition: 0, offset: i as u64 }, r.clone()));
    let b = batch("range-group", "range-topic", pairs.collect(), &[(0, rows.len() as u64)]);
    store.write_batch(&b).await.unwrap();

    let query = |devices: &[&str], sensors: &[SensorKind], from_ns: i64, to_ns: i64| RangeQuery {
        devices: devices.iter().map(|d| dev(d)).collect(),
        sensors: sensors.iter().map(|&s| Channel::from(s)).collect(),
        from_ns,
        to_ns,
    };
    let expect =
        |f: &dyn Fn(&Reading) -> bool| sorted(rows.iter().filter(|r| f(r)).cloned().collect());
    let ours = |r: &Reading| r.device.as_str().starts_with("range-");

    // All three devices (listed out of order and twice), whole range.
    let all = store
        .query_range(&query(&["range-c", "range-a", "range-b", "range-a"], &[], t0 - 100, t0 + 100))
        .await
        .unwrap();
    assert_eq!(all, expect(&ours), "ordered by device, ts_ns, sensor, seq");

    // No device filter: every device, including other checks' rows, in the same order.
    let every = store.query_range(&query(&[], &[], t0 - 100, t0 + 100)).await.unwrap();
    assert_eq!(every.iter().filter(|r| ours(r)).cloned().collect::<Vec<_>>(), expect(&ours));
    assert_eq!(every, sorted(every.clone()));

    // One device.
    let a = store.query_range(&query(&["range-a"], &[], t0 - 100, t0 + 100)).await.unwrap();
    assert_eq!(a, expect(&|r| r.device.as_str() == "range-a"));

    // Sensors.
    let hp = store
        .query_range(&query(
            &["range-a", "range-b", "range-c"],
            &[Humidity, Pressure],
            t0 - 100,
            t0 + 100,
        ))
        .await
        .unwrap();
    assert_eq!(hp, expect(&|r| ours(r) && (r.sensor == Humidity || r.sensor == Pressure)));
    let t = store.query_range(&query(&[], &[Temperature], t0 - 100, t0 + 100)).await.unwrap();
    assert!(t.iter().all(|r| r.sensor == Temperature));
    assert_eq!(
        t.iter().filter(|r| ours(r)).cloned().collect::<Vec<_>>(),
        expect(&|r| ours(r) && r.sensor == Temperature)
    );

    // Half-open: from is inclusive, to is exclusive.
    let window = store.query_range(&query(&["range-a"], &[], t0, t0 + 20)).await.unwrap();
    assert_eq!(
        window,
        expect(&|r| r.device.as_str() == "range-a" && (t0..t0 + 20).contains(&r.ts_ns))
    );
    assert_eq!(window.first().map(|r| r.ts_ns), Some(t0));
    assert!(window.iter().all(|r| r.ts_ns != t0 + 20));

    // Empty answers.
    assert!(
        store.query_range(&query(&["range-a"], &[], t0 + 31, t0 + 100)).await.unwrap().is_empty()
    );
    assert!(
        store.query_range(&query(&["range-a"], &[], t0 + 20, t0 + 20)).await.unwrap().is_empty()
    );
    assert!(store.query_range(&query(&["range-a"], &[], t0 + 20, t0)).await.unwrap().is_empty());
    assert!(
        store
            .query_range(&query(&["range-none"], &[], i64::MIN, i64::MAX))
            .await
            .unwrap()
            .is_empty()
    );
}

/// The simulator's ground truth survives the store, and so does its absence.
pub async fn check_injected_round_trips(store: &dyn ReadingStore) {
    let mut rows: Vec<Reading> = AnomalyKind::EVERY
        .into_iter()
        .enumerate()
        .map(|(i, kind)| Reading {
            injected: Some(kind),
            ..reading(
                "injected-a",
                kind.sensor().unwrap_or(SensorKind::Pressure),
                i as i64,
                i as u64,
                60.0,
            )
        })
        .collect();
    rows.push(reading("injected-a", SensorKind::Temperature, 100, 100, 20.0));
    let pairs = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (SourceOffset { partition: 0, offset: i as u64 }, r.clone()))
        .collect();
    let b = batch("injected-group", "injected-topic", pairs, &[(0, rows.len() as u64)]);
    store.write_batch(&b).await.unwrap();
    let back = store.query_range(&everything_of(&["injected-a"])).await.unwrap();
    assert_eq!(back, sorted(rows));
    assert_eq!(back.iter().filter(|r| r.injected.is_none()).count(), 1);
}

/// A reading a bridge stamped with its arrival time comes back marked, from every read and both
/// writes; one with the producer's time does not.
pub async fn check_arrival_time_is_marked(store: &dyn ReadingStore) {
    let arrival = |r: Reading| Reading { ts_source: TsSource::Arrival, ..r };
    let rows = vec![
        arrival(reading("arrival-a", SensorKind::Temperature, 10, 0, 20.5)),
        reading("arrival-a", SensorKind::Temperature, 20, 1, 21.5),
        arrival(channel_reading("arrival-a", "current", "A", 30, 0, 7.5)),
    ];
    let b = batch("arrival-group", "arrival-topic", at_offsets(&rows), &[(0, rows.len() as u64)]);
    store.write_batch(&b).await.unwrap();
    let more = [arrival(reading("arrival-b", SensorKind::Pressure, 5, 0, 2.5))];
    store.insert_readings(&more).await.unwrap();
    let back = store.query_range(&everything_of(&["arrival-a", "arrival-b"])).await.unwrap();
    let mut expected = rows.clone();
    expected.extend(more);
    assert_eq!(back, sorted(expected));
    let marks: Vec<(i64, TsSource)> = back.iter().map(|r| (r.ts_ns, r.ts_source)).collect();
    assert_eq!(
        marks,
        [
            (10, TsSource::Arrival),
            (20, TsSource::Event),
            (30, TsSource::Arrival),
            (5, TsSource::Arrival)
        ]
    );
    let latest = store.latest_readings(i64::MIN).await.unwrap();
    let of_a: Vec<(&str, TsSource)> = latest
        .iter()
        .filter(|r| r.device.as_str() == "arrival-a")
        .map(|r| (r.sensor.as_str(), r.ts_source))
        .collect();
    assert_eq!(of_a, [("temperature", TsSource::Event), ("current", TsSource::Arrival)]);
}

/// Values at the edges of their types come back exactly.
pub async fn check_extreme_values_round_trip(store: &dyn ReadingStore) {
    let values = [
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        f64::EPSILON,
        5e-324, // the smallest subnormal
        -5e-324,
        0.1 + 0.2,
        1.0 / 3.0,
        -273.15,
        1e300,
        -1e-300,
        // Whole numbers, which SQLite stores as integers on disk and must turn back exactly.
        9_007_199_254_740_992.0,
        -123_456_789.0,
        1e18,
        0.0,
    ];
    let long_name = "x".repeat(sentio_core::device::MAX_DEVICE_ID_LEN);
    let mut rows: Vec<Reading> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| reading("extreme-a", SensorKind::Vibration, i as i64, i as u64, v))
        .collect();
    rows.push(reading("extreme-a", SensorKind::Pressure, i64::MIN, 0, 1.0));
    rows.push(reading("extreme-a", SensorKind::Pressure, i64::MAX - 1, i64::MAX as u64, 2.0));
    rows.push(reading("extreme-a", SensorKind::Pressure, -1, u64::from(u32::MAX) + 1, 3.0));
    rows.push(reading(&long_name, SensorKind::Humidity, 0, 0, 50.0));
    let pairs = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (SourceOffset { partition: 7, offset: i as u64 }, r.clone()))
        .collect();
    let b = batch("extreme-group", "extreme-topic", pairs, &[(7, rows.len() as u64)]);
    store.write_batch(&b).await.unwrap();

    let back = store.query_range(&everything_of(&["extreme-a", &long_name])).await.unwrap();
    let expected = sorted(rows);
    assert_eq!(back, expected);
    for (got, want) in back.iter().zip(&expected) {
        assert_eq!(got.value.to_bits(), want.value.to_bits(), "{got:?} != {want:?} bit for bit");
    }

    // -0.0 may lose its sign (SQLite stores whole REAL values as integers) but stays zero.
    let neg_zero = reading("extreme-z", SensorKind::Humidity, 0, 0, -0.0);
    store.insert_readings(&[neg_zero]).await.unwrap();
    let back = store.query_range(&everything_of(&["extreme-z"])).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].value, 0.0);

    // A reading at i64::MAX is stored, but no half-open range reaches it.
    let top = reading("extreme-top", SensorKind::Humidity, i64::MAX, 1, 1.0);
    assert_eq!(store.insert_readings(&[top]).await.unwrap(), 1);
    assert!(store.query_range(&everything_of(&["extreme-top"])).await.unwrap().is_empty());
}

/// What a column cannot hold is refused with a clear error, and the whole batch with it.
///
/// `seq` and offsets are `u64` in Rust and signed 64-bit integers in SQL, so the store keeps
/// values up to `i64::MAX` and refuses larger ones (they would otherwise wrap to negatives).
/// Values must be finite.
pub async fn check_out_of_range_values_are_rejected(store: &dyn ReadingStore) {
    let (group, topic) = ("reject-group", "reject-topic");
    let before = store.stats().await.unwrap();
    let ok = readings_at("reject-a", 0, 0..3);

    let mut too_big_seq = ok.clone();
    too_big_seq[1].1.seq = i64::MAX as u64 + 1;
    let res = store.write_batch(&batch(group, topic, too_big_seq, &[(0, 3)])).await;
    assert_rejected(res, "seq above i64::MAX");
    if let Err(e) = store.write_batch(&batch(group, topic, ok.clone(), &[(0, 3)])).await {
        panic!("a valid batch after a refused one failed: {e:?}");
    }
    // Nothing of the refused batch was written, so the valid one was stored whole.
    assert_eq!(store.query_range(&everything_of(&["reject-a"])).await.unwrap().len(), 3);

    let mut big_seq = ok[0].1.clone();
    big_seq.seq = u64::MAX;
    assert_rejected(
        store.insert_readings(&[ok[1].1.clone(), big_seq]).await,
        "insert u64::MAX seq",
    );

    let mut big_offset = readings_at("reject-b", 0, 0..1);
    big_offset[0].0.offset = u64::MAX;
    assert_rejected(
        store.write_batch(&batch(group, topic, big_offset, &[(0, 4)])).await,
        "offset above i64::MAX",
    );
    assert_rejected(
        store.write_batch(&batch(group, topic, Vec::new(), &[(0, i64::MAX as u64 + 1)])).await,
        "next offset above i64::MAX",
    );
    for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut r = readings_at("reject-b", 0, 3..4);
        r[0].1.value = v;
        assert_rejected(store.write_batch(&batch(group, topic, r, &[(0, 4)])).await, "non-finite");
        let bad = reading("reject-b", SensorKind::Pressure, 0, 0, v);
        assert_rejected(store.insert_readings(&[bad]).await, "non-finite insert");
    }

    assert_eq!(store.committed_offsets(group, topic).await.unwrap(), offsets(&[(0, 3)]));
    assert!(store.query_range(&everything_of(&["reject-b"])).await.unwrap().is_empty());
    let after = store.stats().await.unwrap();
    assert_eq!(after.readings, before.readings + 3);
    assert_eq!(after.committed_offsets_total, before.committed_offsets_total + 3);
}

/// The plain bulk insert stores readings with no offsets.
pub async fn check_insert_readings(store: &dyn ReadingStore) {
    let rows = only_readings(&readings_at("bulk-a", 0, 0..100));
    let before = store.stats().await.unwrap();
    assert_eq!(store.insert_readings(&rows).await.unwrap(), 100);
    assert_eq!(store.insert_readings(&[]).await.unwrap(), 0);
    assert_eq!(store.query_range(&everything_of(&["bulk-a"])).await.unwrap(), sorted(rows));
    let after = store.stats().await.unwrap();
    assert_eq!(after.readings, before.readings + 100);
    assert_eq!(after.committed_offsets_total, before.committed_offsets_total);
}

/// `stats` counts what the batches reported.
pub async fn check_stats_agree(store: &dyn ReadingStore) {
    let (group, topic) = ("stats-group", "stats-topic");
    let before = store.stats().await.unwrap();
    let mut b = batch(group, topic, readings_at("stats-a", 0, 0..30), &[(0, 32), (1, 1)]);
    b.readings.extend(readings_at("stats-b", 1, 0..1));
    b.dead_letters = vec![dead_letter(0, 30, b"a"), dead_letter(0, 31, b"b")];
    let out = store.write_batch(&b).await.unwrap();
    assert_eq!(
        out,
        BatchOutcome {
            readings_inserted: 31,
            dead_letters_inserted: 2,
            replayed_skipped: 0,
            copies_skipped: 0
        }
    );
    store.write_batch(&b).await.unwrap();
    let after = store.stats().await.unwrap();
    assert_eq!(after.readings - before.readings, 31);
    assert_eq!(after.dead_letters - before.dead_letters, 2);
    // One group, a bus starting at zero: the offsets cover exactly the rows and dead letters.
    assert_eq!(after.committed_offsets_total - before.committed_offsets_total, 31 + 2);
    let newest = b.readings.iter().map(|(_, r)| r.ts_ns).max();
    assert!(
        after.latest_ts_ns >= newest && newest.is_some(),
        "latest_ts_ns {:?} < {newest:?}",
        after.latest_ts_ns
    );
}

/// A big batch goes in whole and comes back whole.
pub async fn check_large_batch_round_trips(store: &dyn ReadingStore) {
    const N: u64 = 20_000;
    let (group, topic) = ("large-group", "large-topic");
    let mut rows = readings_at("large-a", 0, 0..N / 2);
    rows.extend(readings_at("large-b", 1, 0..N / 2));
    let b = batch(group, topic, rows.clone(), &[(0, N / 2), (1, N / 2)]);
    let out = store.write_batch(&b).await.unwrap();
    assert_eq!(out.readings_inserted, N);
    assert_eq!(
        store.query_range(&everything_of(&["large-a", "large-b"])).await.unwrap(),
        sorted(only_readings(&rows))
    );
    let out = store.write_batch(&b).await.unwrap();
    assert_eq!(out.replayed_skipped, N);
    assert_eq!(out.readings_inserted, 0);
    assert_eq!(
        store.query_range(&everything_of(&["large-a", "large-b"])).await.unwrap().len() as u64,
        N
    );
}

// ---- channels of any machine -------------------------------------------------------------------

/// `pairs` with consecutive offsets from 0 on partition 0, for `write_batch`.
fn at_offsets(rows: &[Reading]) -> Vec<(SourceOffset, Reading)> {
    rows.iter()
        .enumerate()
        .map(|(i, r)| (SourceOffset { partition: 0, offset: i as u64 }, r.clone()))
        .collect()
}

/// The catalog rows of the devices whose name starts with `prefix`.
async fn channels_of(store: &dyn ReadingStore, prefix: &str) -> Vec<ChannelInfo> {
    let all = store.channels().await.unwrap();
    all.into_iter().filter(|c| c.device.as_str().starts_with(prefix)).collect()
}

fn info(
    device: &str,
    sensor: &str,
    in_unit: &str,
    first_ts_ns: i64,
    last_ts_ns: i64,
) -> ChannelInfo {
    ChannelInfo {
        device: dev(device),
        sensor: channel(sensor),
        unit: unit(in_unit),
        first_ts_ns,
        last_ts_ns,
    }
}

/// Readings of channels no profile knows (`current` in A, `vibration_x` in g, a dimensionless
/// `state`), and a pump channel in another unit than the pump's, come back with their channel
/// and unit, mixed with pump readings, through both write paths.
pub async fn check_channels_of_any_machine_round_trip(store: &dyn ReadingStore) {
    use SensorKind::{Pressure, Temperature};
    let t0 = 3_000_000;
    let batch_rows = vec![
        channel_reading("anych-m", "current", "A", t0, 0, 12.5),
        reading("anych-m", Temperature, t0, 0, 61.0),
        channel_reading("anych-m", "vibration_x", "g", t0 + 1, 1, 0.25),
        reading("anych-p", Pressure, t0, 0, 2.5),
        channel_reading("anych-m", "state", "", t0 + 2, 2, 1.0),
        channel_reading("anych-m", "vibration_x", "m/s²", t0 + 3, 3, 2.45),
    ];
    let out = store
        .write_batch(&batch("anych-group", "anych-topic", at_offsets(&batch_rows), &[(0, 6)]))
        .await
        .unwrap();
    assert_eq!(out.readings_inserted, 6);
    let bulk_rows = vec![
        channel_reading("anych-m", "current", "A", t0 + 4, 4, 13.0),
        // The pump's channel, in kelvin: the unit is stored, not derived from the name.
        channel_reading("anych-p", "temperature", "K", t0 + 4, 4, 300.15),
        channel_reading("anych-m", "flow.rate", "m³/h", t0 + 5, 5, 4.0),
        reading("anych-p", Temperature, t0 + 5, 5, 27.0),
    ];
    assert_eq!(store.insert_readings(&bulk_rows).await.unwrap(), 4);

    let mut all = batch_rows;
    all.extend(bulk_rows);
    let back = store.query_range(&everything_of(&["anych-m", "anych-p"])).await.unwrap();
    assert_eq!(back, sorted(all.clone()), "every channel and unit comes back");
    let units: Vec<&str> = back.iter().map(|r| r.unit.as_str()).collect();
    assert!(units.contains(&"g") && units.contains(&"K") && units.contains(&""), "{units:?}");
    let pump = back.iter().find(|r| r.sensor == Pressure).unwrap();
    assert_eq!(pump.unit, Unit::from(Pressure));
    assert_eq!(pump.sensor.kind(), Some(Pressure));

    // The whole store, unfiltered, holds them too (the all-devices statement).
    let every = store.query_range(&everything()).await.unwrap();
    let ours: Vec<Reading> =
        every.into_iter().filter(|r| r.device.as_str().starts_with("anych-")).collect();
    assert_eq!(ours, sorted(all));
}

/// A filter on one channel returns that channel only, on one device and on all; a filter on six
/// (pump and others, one that no device has) returns exactly those.
pub async fn check_channel_filters_take_any_number_of_channels(store: &dyn ReadingStore) {
    let t0 = 4_000_000;
    let names = [
        ("temperature", "°C"),
        ("vibration", "mm/s"),
        ("pressure", "bar"),
        ("humidity", "%"),
        ("current", "A"),
        ("vibration_x", "g"),
        ("vibration_y", "g"),
        ("speed", "rpm"),
    ];
    let rows: Vec<Reading> = (0..32u64)
        .map(|i| {
            let (sensor, u) = names[i as usize % names.len()];
            let device = if i % 3 == 0 { "filter-b" } else { "filter-a" };
            channel_reading(device, sensor, u, t0 + i as i64, i, i as f64)
        })
        .collect();
    let out = store
        .write_batch(&batch("filter-group", "filter-topic", at_offsets(&rows), &[(0, 32)]))
        .await
        .unwrap();
    assert_eq!(out.readings_inserted, 32);
    let query = |devices: &[&str], sensors: &[&str]| RangeQuery {
        devices: devices.iter().map(|d| dev(d)).collect(),
        sensors: sensors.iter().map(|s| channel(s)).collect(),
        from_ns: t0,
        to_ns: t0 + 100,
    };
    let expect = |devices: &[&str], sensors: &[&str]| {
        sorted(
            rows.iter()
                .filter(|r| devices.contains(&r.device.as_str()))
                .filter(|r| sensors.contains(&r.sensor.as_str()))
                .cloned()
                .collect(),
        )
    };
    let ours = |all: Vec<Reading>| -> Vec<Reading> {
        all.into_iter().filter(|r| r.device.as_str().starts_with("filter-")).collect()
    };
    let both = ["filter-a", "filter-b"];

    let current = store.query_range(&query(&["filter-a"], &["current"])).await.unwrap();
    assert!(!current.is_empty());
    assert_eq!(current, expect(&["filter-a"], &["current"]), "one channel, one device");
    let current = ours(store.query_range(&query(&[], &["current"])).await.unwrap());
    assert_eq!(current, expect(&both, &["current"]), "one channel, every device");

    let six = ["temperature", "pressure", "current", "vibration_x", "speed", "no_such_channel"];
    let got = store.query_range(&query(&both, &six)).await.unwrap();
    assert_eq!(got, expect(&both, &six), "six channels");
    assert_eq!(got.len(), 20, "all but vibration, humidity and vibration_y");
    let got = ours(store.query_range(&query(&[], &six)).await.unwrap());
    assert_eq!(got, expect(&both, &six), "six channels, every device");

    let none = store.query_range(&query(&both, &["no_such_channel"])).await.unwrap();
    assert!(none.is_empty(), "{none:?}");
}

/// The catalog holds each (device, channel) once, with the span of its timestamps and the unit
/// of its newest reading (the last written of equal ones), whatever the order readings arrive
/// in, through both write paths; listed pump channels first, then the others by name.
pub async fn check_catalog_keeps_span_and_newest_unit(store: &dyn ReadingStore) {
    let first = vec![
        channel_reading("catalog-a", "current", "A", 100, 0, 1.0),
        channel_reading("catalog-a", "current", "mA", 300, 1, 2.0),
        channel_reading("catalog-a", "current", "A", 200, 2, 3.0),
        reading("catalog-a", SensorKind::Humidity, 150, 0, 40.0),
        channel_reading("catalog-a", "aaa", "", 120, 0, 0.0),
        reading("catalog-a", SensorKind::Temperature, 110, 0, 20.0),
        reading("catalog-b", SensorKind::Temperature, -50, 0, 20.0),
    ];
    store
        .write_batch(&batch("catalog-group", "catalog-topic", at_offsets(&first), &[(0, 7)]))
        .await
        .unwrap();
    assert_eq!(
        channels_of(store, "catalog-").await,
        [
            info("catalog-a", "temperature", "°C", 110, 110),
            info("catalog-a", "humidity", "%", 150, 150),
            info("catalog-a", "aaa", "", 120, 120),
            info("catalog-a", "current", "mA", 100, 300),
            info("catalog-b", "temperature", "°C", -50, -50),
        ],
        "pump channels first, then by name; the newest reading's unit"
    );

    // Older readings widen the span and leave the unit; a newer one brings its unit; a tie with
    // the newest takes the later write's.
    store
        .insert_readings(&[
            channel_reading("catalog-a", "current", "kA", 50, 3, 4.0),
            channel_reading("catalog-a", "current", "µA", 250, 4, 5.0),
            reading("catalog-b", SensorKind::Temperature, -60, 1, 20.0),
        ])
        .await
        .unwrap();
    let current = |got: Vec<ChannelInfo>| {
        got.into_iter().find(|c| c.device.as_str() == "catalog-a" && c.sensor.as_str() == "current")
    };
    assert_eq!(
        current(channels_of(store, "catalog-").await),
        Some(info("catalog-a", "current", "mA", 50, 300))
    );
    store
        .insert_readings(&[channel_reading("catalog-a", "current", "A", 300, 5, 6.0)])
        .await
        .unwrap();
    assert_eq!(
        current(channels_of(store, "catalog-").await),
        Some(info("catalog-a", "current", "A", 50, 300))
    );
    let b2 = vec![channel_reading("catalog-a", "current", "kA", 400, 6, 7.0)];
    store
        .write_batch(&batch("catalog-group", "catalog-topic", at_offsets_from(&b2, 7), &[(0, 8)]))
        .await
        .unwrap();
    let got = channels_of(store, "catalog-").await;
    assert_eq!(current(got.clone()), Some(info("catalog-a", "current", "kA", 50, 400)));
    assert_eq!(got.len(), 5, "one row per (device, channel): {got:#?}");
    assert_eq!(got[4], info("catalog-b", "temperature", "°C", -60, -50));
}

/// `pairs` with consecutive offsets from `start` on partition 0.
fn at_offsets_from(rows: &[Reading], start: u64) -> Vec<(SourceOffset, Reading)> {
    at_offsets(rows)
        .into_iter()
        .map(|(o, r)| (SourceOffset { offset: o.offset + start, ..o }, r))
        .collect()
}

/// Readings a replay skips (their offsets are stored already) do not touch the catalog, even
/// when they would widen a span, change a unit or add a channel; the new part of an overlapping
/// batch does.
pub async fn check_replays_leave_the_catalog_alone(store: &dyn ReadingStore) {
    let (group, topic) = ("recat-group", "recat-topic");
    let rows = vec![
        channel_reading("recat-a", "current", "A", 1_000, 0, 1.0),
        channel_reading("recat-a", "current", "A", 2_000, 1, 2.0),
    ];
    store.write_batch(&batch(group, topic, at_offsets(&rows), &[(0, 2)])).await.unwrap();
    let before = channels_of(store, "recat-").await;
    assert_eq!(before, [info("recat-a", "current", "A", 1_000, 2_000)]);

    // The same offsets again, with other contents: a newer unit, a wider span, a new channel.
    let replay = vec![
        channel_reading("recat-a", "current", "mA", 9_000, 0, 1.0),
        channel_reading("recat-a", "voltage", "V", 10, 1, 230.0),
    ];
    for _ in 0..2 {
        let out =
            store.write_batch(&batch(group, topic, at_offsets(&replay), &[(0, 2)])).await.unwrap();
        assert_eq!(out.replayed_skipped, 2);
        assert_eq!(out.readings_inserted, 0);
        assert_eq!(channels_of(store, "recat-").await, before, "a replay changed the catalog");
    }
    // Overlapping: offset 1 is skipped, offset 2 is new.
    let mut overlap = at_offsets(&replay);
    overlap.push((
        SourceOffset { partition: 0, offset: 2 },
        channel_reading("recat-a", "current", "mA", 3_000, 2, 3.0),
    ));
    let out = store.write_batch(&batch(group, topic, overlap[1..].to_vec(), &[(0, 3)])).await;
    assert_eq!(out.unwrap().readings_inserted, 1);
    assert_eq!(
        channels_of(store, "recat-").await,
        [info("recat-a", "current", "mA", 1_000, 3_000)]
    );
}

/// Count, minimum, maximum and mean per (device, channel, unit) over a half-open range, in
/// channel order, then by unit.
pub async fn check_channel_stats_of_a_known_set(store: &dyn ReadingStore) {
    // A time range no other check writes in.
    let t0 = 2_000_000_000_000_000_000;
    let rows = vec![
        channel_reading("chstats-a", "current", "A", t0, 0, 1.0),
        channel_reading("chstats-a", "current", "A", t0 + 1, 1, 6.0),
        channel_reading("chstats-a", "current", "A", t0 + 2, 2, 2.0),
        channel_reading("chstats-a", "current", "A", t0 + 3, 3, 3.0),
        // The same channel in another unit is another group.
        channel_reading("chstats-a", "current", "mA", t0 + 4, 4, 1_500.0),
        reading("chstats-a", SensorKind::Temperature, t0 + 5, 0, 20.0),
        reading("chstats-a", SensorKind::Temperature, t0 + 6, 1, 23.5),
        reading("chstats-b", SensorKind::Humidity, t0 + 7, 0, -4.25),
        // At `to_ns`: out of the range.
        reading("chstats-b", SensorKind::Humidity, t0 + 8, 1, 1e6),
    ];
    store.insert_readings(&rows[..5]).await.unwrap();
    store
        .write_batch(&batch("chstats-group", "chstats-topic", at_offsets(&rows[5..]), &[(0, 4)]))
        .await
        .unwrap();
    let stats = |device: &str, sensor: &str, u: &str, count, min, max, mean| ChannelStats {
        device: dev(device),
        sensor: channel(sensor),
        unit: unit(u),
        count,
        min,
        max,
        mean,
    };
    let got = store.channel_stats(t0, t0 + 8).await.unwrap();
    assert_eq!(
        got,
        [
            stats("chstats-a", "temperature", "°C", 2, 20.0, 23.5, 21.75),
            stats("chstats-a", "current", "A", 4, 1.0, 6.0, 3.0),
            stats("chstats-a", "current", "mA", 1, 1_500.0, 1_500.0, 1_500.0),
            stats("chstats-b", "humidity", "%", 1, -4.25, -4.25, -4.25),
        ]
    );
    // From is inclusive, to exclusive.
    let got = store.channel_stats(t0 + 1, t0 + 3).await.unwrap();
    assert_eq!(got, [stats("chstats-a", "current", "A", 2, 2.0, 6.0, 4.0)]);
    let got = store.channel_stats(t0 + 8, t0 + 9).await.unwrap();
    assert_eq!(got, [stats("chstats-b", "humidity", "%", 1, 1e6, 1e6, 1e6)]);
    assert!(store.channel_stats(t0 + 9, t0 + 100).await.unwrap().is_empty());
    assert!(store.channel_stats(t0 + 5, t0 + 5).await.unwrap().is_empty());
    assert!(store.channel_stats(t0 + 5, t0).await.unwrap().is_empty());
}

// ---- builders for backend-specific tests ------------------------------------------------------

/// Reading number `offset` of `device`: the four sensors in turn, four readings a second.
pub fn offset_reading(device: &DeviceId, offset: u64) -> Reading {
    Reading::pump(
        device.clone(),
        SensorKind::ALL[(offset % 4) as usize],
        1_700_000_000_000_000_000 + offset as i64 * 250_000_000,
        20.0 + (offset % 100) as f64 * 0.125,
        offset,
    )
}

/// The batch an ETL consumer would write for `offsets` of one partition of `sensor-data`.
pub fn partition_batch(
    group: &str,
    device: &DeviceId,
    partition: u32,
    offsets: Range<u64>,
) -> IngestBatch {
    IngestBatch {
        group: group.to_owned(),
        topic: "sensor-data".to_owned(),
        readings: offsets
            .clone()
            .map(|o| (SourceOffset { partition, offset: o }, offset_reading(device, o)))
            .collect(),
        dead_letters: Vec::new(),
        next_offsets: BTreeMap::from([(partition, offsets.end)]),
    }
}

/// Every reading of every device.
pub fn everything() -> RangeQuery {
    RangeQuery { devices: Vec::new(), sensors: Vec::new(), from_ns: i64::MIN, to_ns: i64::MAX }
}

fn alert(id: &str, device: &str, state: AlertState, start_s: i64, end_s: i64, score: f64) -> Alert {
    Alert {
        alert_id: id.to_owned(),
        device: dev(device),
        state,
        window_start_ns: start_s * 1_000_000_000,
        window_end_ns: end_s * 1_000_000_000,
        score,
        threshold: 0.0081,
        severity: if score > 0.03 { Severity::Critical } else { Severity::Warning },
        sensor_share: SensorKind::ALL
            .into_iter()
            .map(Channel::from)
            .zip([0.05, 0.8, 0.125, 0.025])
            .collect(),
        model_name: "sentio-lstm-ae".to_owned(),
        model_version: "3".to_owned(),
        detected_at_ns: end_s * 1_000_000_000 + 1,
    }
}

/// `save_alerts` keeps each alert's latest state, never moving one back (a redelivered `opened`
/// after `resolved` changes nothing); `anomalies` filters by device and window overlap, in
/// window order; non-finite values are refused with nothing written.
pub async fn check_alerts_keep_their_latest_state(store: &dyn ReadingStore) {
    use AlertState::{Opened, Resolved, Updated};
    let a_open = alert("a-1", "alert-a", Opened, 100, 110, 0.01);
    let a_up = alert("a-1", "alert-a", Updated, 100, 120, 0.05);
    let a_done = alert("a-1", "alert-a", Resolved, 100, 130, 0.05);
    let b_open = alert("b-1", "alert-b", Opened, 50, 60, 0.02);
    assert_eq!(store.save_alerts(&[a_open.clone(), b_open.clone()]).await.unwrap(), 2);
    assert_eq!(store.save_alerts(&[a_up.clone(), a_done.clone()]).await.unwrap(), 2);
    // Redelivered earlier states are ignored.
    assert_eq!(store.save_alerts(&[a_open.clone(), a_up]).await.unwrap(), 0);
    assert_eq!(store.save_alerts(&[]).await.unwrap(), 0);

    let all = store.anomalies(&AnomalyQuery::all()).await.unwrap();
    let ours: Vec<&Alert> =
        all.iter().filter(|a| a.device.as_str().starts_with("alert-")).collect();
    assert_eq!(ours, [&b_open, &a_done], "window order, latest state, every field round-trips");

    let only_a = AnomalyQuery { device: Some(dev("alert-a")), ..AnomalyQuery::all() };
    assert_eq!(store.anomalies(&only_a).await.unwrap(), std::slice::from_ref(&a_done));
    let overlap = |from_s: i64, to_s: i64| AnomalyQuery {
        device: None,
        from_ns: from_s * 1_000_000_000,
        to_ns: to_s * 1_000_000_000,
    };
    let ids = |alerts: Vec<Alert>| -> Vec<String> {
        alerts
            .into_iter()
            .filter(|a| a.device.as_str().starts_with("alert-"))
            .map(|a| a.alert_id)
            .collect()
    };
    assert_eq!(ids(store.anomalies(&overlap(61, 100)).await.unwrap()), Vec::<String>::new());
    assert_eq!(ids(store.anomalies(&overlap(60, 101)).await.unwrap()), ["b-1", "a-1"]);
    assert_eq!(ids(store.anomalies(&overlap(125, 200)).await.unwrap()), ["a-1"]);

    let mut bad = alert("c-1", "alert-c", Opened, 1, 2, 0.01);
    bad.sensor_share[2].1 = f64::NAN;
    let good = alert("c-2", "alert-c", Opened, 1, 2, 0.01);
    assert_rejected(store.save_alerts(&[good, bad]).await, "NaN share");
    let mut bad = alert("c-3", "alert-c", Opened, 1, 2, 0.01);
    bad.score = f64::INFINITY;
    assert_rejected(store.save_alerts(&[bad]).await, "infinite score");
    let c = AnomalyQuery { device: Some(dev("alert-c")), ..AnomalyQuery::all() };
    assert!(store.anomalies(&c).await.unwrap().is_empty(), "nothing of a refused call is written");

    // Another machine's alert names its own channels, in display order (a pump's first, then by
    // name), whatever order the backend keeps JSON keys in.
    let mut other = alert("d-1", "alert-d", Opened, 1, 2, 0.01);
    other.sensor_share = [("current", 0.5), ("flow", 0.125), ("vibration_x", 0.375)]
        .map(|(c, v)| (Channel::new(c).unwrap(), v))
        .to_vec();
    store.save_alerts(std::slice::from_ref(&other)).await.unwrap();
    let d = AnomalyQuery { device: Some(dev("alert-d")), ..AnomalyQuery::all() };
    assert_eq!(store.anomalies(&d).await.unwrap(), [other]);
}

// ---- anomaly scores ---------------------------------------------------------------------------

fn score(device: &str, ts_ns: i64, value: f64, top: SensorKind, version: &str) -> ScorePoint {
    ScorePoint {
        device: dev(device),
        ts_ns,
        score: value,
        threshold: 0.0081,
        top_sensor: top.into(),
        model_version: version.to_owned(),
    }
}

/// The order `scores` promises: device (bytes), then ts_ns.
fn sorted_scores(mut points: Vec<ScorePoint>) -> Vec<ScorePoint> {
    points.sort_by(|a, b| (a.device.as_str(), a.ts_ns).cmp(&(b.device.as_str(), b.ts_ns)));
    points
}

/// The stored scores of the devices whose name starts with `prefix`.
async fn scores_of(store: &dyn ReadingStore, prefix: &str, query: ScoreQuery) -> Vec<ScorePoint> {
    let all = store.scores(&query).await.unwrap();
    all.into_iter().filter(|p| p.device.as_str().starts_with(prefix)).collect()
}

/// Every field comes back (values bit for bit), ordered by device name in byte order ("B" before
/// "a"), then by window end, whatever the order of the call.
pub async fn check_scores_round_trip_in_order(store: &dyn ReadingStore) {
    use SensorKind::{Humidity, Pressure, Temperature, Vibration};
    let points = vec![
        score("scores-b", 30, 0.5, Vibration, "3"),
        score("scores-a", 20, 1.0 / 3.0, Temperature, "3"),
        score("scores-B", 10, 0.1 + 0.2, Pressure, "3"),
        score("scores-a", -5, f64::MIN_POSITIVE, Humidity, "2"),
        score("scores-a", 10, 5e-324, Vibration, "2"),
        score("scores-b", i64::MIN, f64::MAX, Temperature, "10"),
        ScorePoint { threshold: 1e300, ..score("scores-b", 1, 7.0, Pressure, "") },
    ];
    assert_eq!(store.save_scores(&points).await.unwrap(), points.len() as u64);
    let back = scores_of(store, "scores-", ScoreQuery::all()).await;
    let expected = sorted_scores(points);
    assert_eq!(back, expected);
    assert_eq!(back.first().map(|p| p.device.as_str()), Some("scores-B"), "byte order");
    for (got, want) in back.iter().zip(&expected) {
        assert_eq!(got.score.to_bits(), want.score.to_bits(), "{got:?} != {want:?} bit for bit");
        assert_eq!(got.threshold.to_bits(), want.threshold.to_bits());
    }
    // The whole answer is in order too, other checks' devices included.
    let all = store.scores(&ScoreQuery::all()).await.unwrap();
    assert_eq!(all, sorted_scores(all.clone()));
    // Scores are not readings: these devices have none.
    let devices = store.devices().await.unwrap();
    assert!(!devices.iter().any(|d| d.as_str().starts_with("scores-")), "{devices:?}");
}

/// One device or all; `from_ns` inclusive, `to_ns` exclusive.
pub async fn check_scores_filter_by_device_and_half_open_range(store: &dyn ReadingStore) {
    let points: Vec<ScorePoint> = (0..10)
        .flat_map(|i| {
            ["window-x", "window-y"]
                .map(|d| score(d, 1_000 + i * 100, i as f64, SensorKind::ALL[i as usize % 4], "1"))
        })
        .collect();
    assert_eq!(store.save_scores(&points).await.unwrap(), 20);
    let query = |device: Option<&str>, from_ns: i64, to_ns: i64| ScoreQuery {
        device: device.map(dev),
        from_ns,
        to_ns,
    };
    let expect = |f: &dyn Fn(&ScorePoint) -> bool| {
        sorted_scores(points.iter().filter(|p| f(p)).cloned().collect())
    };

    let x = store.scores(&query(Some("window-x"), i64::MIN, i64::MAX)).await.unwrap();
    assert_eq!(x, expect(&|p| p.device.as_str() == "window-x"));

    // [1200, 1500): 1200, 1300, 1400 of both devices; not 1500.
    let both = scores_of(store, "window-", query(None, 1_200, 1_500)).await;
    assert_eq!(both, expect(&|p| (1_200..1_500).contains(&p.ts_ns)));
    assert_eq!(both.len(), 6);
    let y = store.scores(&query(Some("window-y"), 1_200, 1_500)).await.unwrap();
    assert_eq!(
        y,
        expect(&|p| p.device.as_str() == "window-y" && (1_200..1_500).contains(&p.ts_ns))
    );
    assert_eq!(y.first().map(|p| p.ts_ns), Some(1_200), "from is inclusive");
    assert_eq!(y.last().map(|p| p.ts_ns), Some(1_400), "to is exclusive");
    // Between two points, empty and reversed ranges.
    assert!(store.scores(&query(Some("window-x"), 1_201, 1_300)).await.unwrap().is_empty());
    assert!(store.scores(&query(Some("window-x"), 1_200, 1_200)).await.unwrap().is_empty());
    assert!(store.scores(&query(None, 1_500, 1_200)).await.unwrap().is_empty());
    assert!(
        store.scores(&query(Some("window-none"), i64::MIN, i64::MAX)).await.unwrap().is_empty()
    );
}

/// A window saved again replaces its row, every field; within one call the last point wins.
pub async fn check_scores_upsert_overwrites(store: &dyn ReadingStore) {
    let first = vec![
        score("upsert-a", 100, 0.25, SensorKind::Temperature, "1"),
        score("upsert-a", 200, 0.5, SensorKind::Temperature, "1"),
    ];
    assert_eq!(store.save_scores(&first).await.unwrap(), 2);
    let mut again = score("upsert-a", 200, 4.0, SensorKind::Humidity, "2");
    again.threshold = 0.02;
    assert_eq!(store.save_scores(std::slice::from_ref(&again)).await.unwrap(), 1);
    let all = || ScoreQuery { device: Some(dev("upsert-a")), ..ScoreQuery::all() };
    assert_eq!(store.scores(&all()).await.unwrap(), [first[0].clone(), again.clone()]);

    // The same key twice in one call (a replay overlapping the stream): one row, the last point.
    let twice = [
        score("upsert-a", 100, 9.0, SensorKind::Pressure, "3"),
        score("upsert-a", 300, 1.0, SensorKind::Pressure, "3"),
        score("upsert-a", 100, 8.0, SensorKind::Vibration, "4"),
    ];
    assert_eq!(store.save_scores(&twice).await.unwrap(), 2, "rows written, one per key");
    assert_eq!(
        store.scores(&all()).await.unwrap(),
        [twice[2].clone(), again, twice[1].clone()],
        "the last point of a key wins"
    );
}

/// A NaN or infinite score or threshold refuses the whole call: nothing written, nothing
/// overwritten.
pub async fn check_non_finite_scores_are_refused_whole(store: &dyn ReadingStore) {
    let kept = score("finite-a", 100, 0.5, SensorKind::Vibration, "1");
    store.save_scores(std::slice::from_ref(&kept)).await.unwrap();
    for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let overwrite = score("finite-a", 100, 0.75, SensorKind::Pressure, "2");
        let new = score("finite-a", 200, 0.75, SensorKind::Pressure, "2");
        let bad_score = score("finite-b", 300, v, SensorKind::Pressure, "2");
        let res = store.save_scores(&[overwrite.clone(), new.clone(), bad_score]).await;
        assert_rejected(res, "non-finite score");
        let bad_threshold = ScorePoint { threshold: v, ..new.clone() };
        assert_rejected(store.save_scores(&[overwrite, bad_threshold]).await, "threshold");
    }
    assert_eq!(scores_of(store, "finite-", ScoreQuery::all()).await, [kept]);
}

// ---- the newest readings and the device list ---------------------------------------------------

/// The newest reading of each (device, sensor) since a time: the newest by timestamp, then by
/// sequence number; `since_ns` inclusive; a device or sensor with nothing since then absent;
/// ordered by device (bytes), then sensor in `SensorKind::ALL` order.
/// Each bridge's newest report is kept, whatever order reports come in (a redelivered older one
/// moves nothing); of several for one bridge in one call the latest wins; the ids come back in
/// byte order.
pub async fn check_bridge_status_keeps_each_bridges_newest(store: &dyn ReadingStore) {
    use crate::BridgeStatusRow;
    let row = |bridge: &str, reported_ns: i64| BridgeStatusRow {
        bridge: bridge.to_owned(),
        reported_ns,
        report: format!(r#"{{"bridge":"{bridge}","at":{reported_ns},"note":"é \" ✓"}}"#),
    };
    assert_eq!(store.bridge_status().await.unwrap(), [], "no bridge has reported");
    assert_eq!(store.save_bridge_status(&[]).await.unwrap(), 0);
    let first = [row("mqtt:b@broker:1883", 100), row("http:gw@0.0.0.0:8081", 50)];
    assert_eq!(store.save_bridge_status(&first).await.unwrap(), 2);
    // One call: an older and a newer report of one bridge, and a third bridge ("Z" sorts before
    // "h" in bytes, not in every collation).
    let next = [row("mqtt:b@broker:1883", 300), row("mqtt:b@broker:1883", 200), row("Zeta", 7)];
    assert_eq!(store.save_bridge_status(&next).await.unwrap(), 2);
    // A redelivered older report of the HTTP bridge changes nothing.
    assert_eq!(store.save_bridge_status(&[row("http:gw@0.0.0.0:8081", 40)]).await.unwrap(), 0);
    assert_eq!(
        store.bridge_status().await.unwrap(),
        [row("Zeta", 7), row("http:gw@0.0.0.0:8081", 50), row("mqtt:b@broker:1883", 300)]
    );
    // The same report again (a replay of the status topic) is written, and changes nothing.
    store.save_bridge_status(&[row("Zeta", 7)]).await.unwrap();
    assert_eq!(store.bridge_status().await.unwrap().len(), 3);
}

pub async fn check_latest_readings_newest_per_device_and_sensor(store: &dyn ReadingStore) {
    use SensorKind::{Humidity, Pressure, Temperature, Vibration};
    let since = 5_000_000;
    let newest_a_temp = reading("latest-a", Temperature, since + 10, 5, 21.0);
    let newest_a_vib = reading("latest-a", Vibration, since + 5, 2, 0.5);
    let at_since = reading("latest-c", Humidity, since, 9, 55.0);
    let newest_upper = reading("latest-B", Pressure, since + 1, 0, 3.0);
    let rows = vec![
        reading("latest-a", Temperature, since + 10, 3, 20.5), // same time, smaller seq
        newest_a_vib.clone(),
        reading("latest-a", Temperature, since, 1, 20.0),
        newest_a_temp.clone(),
        reading("latest-a", Pressure, since - 100, 1, 2.0), // older: no pressure for latest-a
        reading("latest-a", Vibration, since + 1, 1, 0.4),
        // Every reading of latest-b is older than `since`: the device is absent.
        reading("latest-b", Temperature, since - 1, 1, 19.0),
        reading("latest-b", Vibration, since - 2, 1, 0.3),
        reading("latest-b", Pressure, since - 3, 1, 2.5),
        reading("latest-b", Humidity, since - 4, 1, 45.0),
        at_since.clone(),
        reading("latest-c", Temperature, since - 1, 8, 18.0),
        newest_upper.clone(),
    ];
    // Through both write paths.
    store.insert_readings(&rows[..6]).await.unwrap();
    let pairs: Vec<(SourceOffset, Reading)> = rows[6..]
        .iter()
        .enumerate()
        .map(|(i, r)| (SourceOffset { partition: 0, offset: i as u64 }, r.clone()))
        .collect();
    let n = pairs.len() as u64;
    store.write_batch(&batch("latest-group", "latest-topic", pairs, &[(0, n)])).await.unwrap();

    let ours = |all: Vec<Reading>| -> Vec<Reading> {
        all.into_iter().filter(|r| r.device.as_str().starts_with("latest-")).collect()
    };
    let got = ours(store.latest_readings(since).await.unwrap());
    assert_eq!(got, [newest_upper, newest_a_temp.clone(), newest_a_vib.clone(), at_since.clone()]);

    // From the beginning: latest-b and the older sensors come in.
    let got = ours(store.latest_readings(i64::MIN).await.unwrap());
    let b = |sensor: SensorKind| {
        rows.iter().find(|r| r.device.as_str() == "latest-b" && r.sensor == sensor).unwrap().clone()
    };
    let expected = vec![
        rows[12].clone(),
        newest_a_temp.clone(),
        newest_a_vib,
        rows[4].clone(),
        b(Temperature),
        b(Vibration),
        b(Pressure),
        b(Humidity),
        rows[11].clone(),
        at_since,
    ];
    assert_eq!(got, expected);

    // Past the newest reading: nothing of ours.
    assert!(ours(store.latest_readings(since + 11).await.unwrap()).is_empty());
    let late = ours(store.latest_readings(since + 10).await.unwrap());
    assert_eq!(late, [newest_a_temp], "since is inclusive");
}

/// Over every device the checks wrote: `latest_readings` holds, per (device, sensor), the last
/// reading in `query_range` order (newest timestamp, then largest sequence number), in order.
pub async fn check_latest_readings_agree_with_the_readings(store: &dyn ReadingStore) {
    let latest = store.latest_readings(i64::MIN).await.unwrap();
    let key = |r: &Reading| {
        let (rank, name) = channel_order(&r.sensor);
        (r.device.as_str().to_owned(), rank, name.to_owned())
    };
    let keys: Vec<_> = latest.iter().map(key).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "ordered by device, then sensor, each once");

    // `query_range` cannot reach a reading stamped i64::MAX: leave those (device, sensor) out.
    let unreachable: Vec<_> = latest.iter().filter(|r| r.ts_ns == i64::MAX).map(key).collect();
    let mut newest: BTreeMap<(String, usize, String), Reading> = BTreeMap::new();
    for r in store.query_range(&everything()).await.unwrap() {
        newest.insert(key(&r), r);
    }
    let expected: Vec<Reading> =
        newest.into_iter().filter(|(k, _)| !unreachable.contains(k)).map(|(_, r)| r).collect();
    let got: Vec<Reading> = latest.into_iter().filter(|r| r.ts_ns != i64::MAX).collect();
    assert_eq!(got.len(), expected.len());
    assert_eq!(got, expected);
}

/// The newest reading of every channel a device has, not only the pump's: a machine with six
/// channels reported since `since` (and a seventh, not since then: absent) and a pump, each
/// channel in its unit, the pump's channels first, then the others by name.
pub async fn check_latest_readings_of_every_channel(store: &dyn ReadingStore) {
    use SensorKind::{Humidity, Pressure, Temperature, Vibration};
    let since = 6_000_000;
    let m = |sensor: &str, u: &str, dt: i64, seq: u64, value: f64| {
        channel_reading("latestch-m", sensor, u, since + dt, seq, value)
    };
    let p = |kind: SensorKind, dt: i64, seq: u64, value: f64| {
        reading("latestch-p", kind, since + dt, seq, value)
    };
    let rows = vec![
        m("vibration_x", "g", 1, 0, 0.1),
        m("current", "A", 2, 0, 10.0),
        m("vibration_x", "g", 3, 1, 0.2),
        m("humidity", "%", 0, 0, 41.0),
        m("spare", "V", -1, 0, 5.0), // before `since`: absent from the answer
        m("temperature", "°C", 4, 0, 55.0),
        m("current", "mA", 5, 1, 10_500.0),
        m("pressure", "bar", 1, 0, 3.0),
        m("vibration", "mm/s", 2, 0, 1.5),
        m("temperature", "°C", 3, 1, 54.0),
        p(Humidity, 2, 0, 50.0),
        p(Temperature, 1, 0, 20.0),
        p(Pressure, 3, 0, 2.0),
        p(Vibration, 4, 0, 0.5),
        p(Temperature, 5, 1, 20.5),
        p(Temperature, -10, 2, 19.0),
    ];
    store.insert_readings(&rows[..8]).await.unwrap();
    let pairs = at_offsets(&rows[8..]);
    store.write_batch(&batch("latestch-group", "latestch-topic", pairs, &[(0, 8)])).await.unwrap();

    let ours = |all: Vec<Reading>| -> Vec<Reading> {
        all.into_iter().filter(|r| r.device.as_str().starts_with("latestch-")).collect()
    };
    let got = ours(store.latest_readings(since).await.unwrap());
    let expected = vec![
        rows[5].clone(),  // temperature, newest of two
        rows[8].clone(),  // vibration
        rows[7].clone(),  // pressure
        rows[3].clone(),  // humidity, at `since` exactly
        rows[6].clone(),  // current, in mA now
        rows[2].clone(),  // vibration_x
        rows[14].clone(), // the pump: temperature, vibration, pressure, humidity
        rows[13].clone(),
        rows[12].clone(),
        rows[10].clone(),
    ];
    assert_eq!(got, expected);
    let names: Vec<&str> = got[..6].iter().map(|r| r.sensor.as_str()).collect();
    assert_eq!(
        names,
        ["temperature", "vibration", "pressure", "humidity", "current", "vibration_x"]
    );

    // From the beginning, the channel not reported since then is there too, in name order.
    let got = ours(store.latest_readings(i64::MIN).await.unwrap());
    assert_eq!(got.len(), 11);
    assert_eq!((got[4].sensor.as_str(), &got[5]), ("current", &rows[4]), "{got:#?}");
    // Past the machine's newest reading but not the pump's.
    let got = ours(store.latest_readings(since + 5).await.unwrap());
    assert_eq!(got, [rows[6].clone(), rows[14].clone()]);
}

/// Over every device the checks wrote: the catalog lists each (device, channel) that has
/// readings, once, in channel order, with the span of its readings and the unit of its newest.
pub async fn check_catalog_agrees_with_the_readings(store: &dyn ReadingStore) {
    let catalog = store.channels().await.unwrap();
    let key = |device: &DeviceId, sensor: &Channel| {
        let (rank, name) = channel_order(sensor);
        (device.as_str().to_owned(), rank, name.to_owned())
    };
    let keys: Vec<_> = catalog.iter().map(|c| key(&c.device, &c.sensor)).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "ordered by device, then channel, each once");

    // What the readings say, but for channels with a reading at i64::MAX (out of a range's reach).
    let mut expected: BTreeMap<_, ChannelInfo> = BTreeMap::new();
    // Of the readings at a channel's newest timestamp, any unit may be the last written.
    let mut units_at_newest: BTreeMap<_, Vec<Unit>> = BTreeMap::new();
    for r in store.query_range(&everything()).await.unwrap() {
        let k = key(&r.device, &r.sensor);
        let e = expected.entry(k.clone()).or_insert_with(|| ChannelInfo {
            device: r.device.clone(),
            sensor: r.sensor.clone(),
            unit: r.unit.clone(),
            first_ts_ns: r.ts_ns,
            last_ts_ns: r.ts_ns,
        });
        e.first_ts_ns = e.first_ts_ns.min(r.ts_ns);
        if r.ts_ns > e.last_ts_ns {
            units_at_newest.remove(&k);
        }
        if r.ts_ns >= e.last_ts_ns {
            e.last_ts_ns = r.ts_ns;
            e.unit = r.unit.clone();
            units_at_newest.entry(k).or_default().push(r.unit.clone());
        }
    }
    let reachable: Vec<&ChannelInfo> =
        catalog.iter().filter(|c| c.last_ts_ns != i64::MAX).collect();
    assert_eq!(reachable.len(), expected.len(), "one catalog row per channel with readings");
    for c in reachable {
        let k = key(&c.device, &c.sensor);
        let want = &expected[&k];
        assert_eq!(
            (c.first_ts_ns, c.last_ts_ns),
            (want.first_ts_ns, want.last_ts_ns),
            "span of {}/{}",
            c.device,
            c.sensor
        );
        assert!(units_at_newest[&k].contains(&c.unit), "unit of {c:?}: {:?}", units_at_newest[&k]);
    }
    // The devices of the catalog are the devices with readings.
    let mut devices: Vec<DeviceId> = catalog.iter().map(|c| c.device.clone()).collect();
    devices.dedup();
    assert_eq!(devices, store.devices().await.unwrap());
}

/// Over every reading the checks wrote from `1_000_000` on (before that lie the extreme values,
/// whose sums overflow): per (device, channel, unit), `channel_stats` agrees with the readings.
pub async fn check_channel_stats_agree_with_the_readings(store: &dyn ReadingStore) {
    let (from_ns, to_ns) = (1_000_000, i64::MAX);
    let got = store.channel_stats(from_ns, to_ns).await.unwrap();
    let query = RangeQuery { from_ns, to_ns, ..everything() };
    let mut expected: BTreeMap<(String, usize, String, String), (ChannelStats, f64)> =
        BTreeMap::new();
    for r in store.query_range(&query).await.unwrap() {
        let (rank, name) = channel_order(&r.sensor);
        let k = (r.device.as_str().to_owned(), rank, name.to_owned(), r.unit.as_str().to_owned());
        let (s, sum) = expected.entry(k).or_insert_with(|| {
            let s = ChannelStats {
                device: r.device.clone(),
                sensor: r.sensor.clone(),
                unit: r.unit.clone(),
                count: 0,
                min: r.value,
                max: r.value,
                mean: 0.0,
            };
            (s, 0.0)
        });
        s.count += 1;
        s.min = s.min.min(r.value);
        s.max = s.max.max(r.value);
        *sum += r.value;
    }
    assert_eq!(got.len(), expected.len(), "one group per (device, channel, unit)");
    for (g, (want, sum)) in got.iter().zip(expected.values()) {
        assert_eq!(
            (&g.device, &g.sensor, &g.unit, g.count, g.min, g.max),
            (&want.device, &want.sensor, &want.unit, want.count, want.min, want.max)
        );
        // Summation order differs between databases: equal up to rounding.
        let mean = sum / want.count as f64;
        let scale = want.min.abs().max(want.max.abs()).max(1.0);
        assert!((g.mean - mean).abs() <= scale * 1e-12, "mean of {g:?}: expected {mean}");
    }
}

/// `devices` lists each device that has readings once, in byte order; devices with only scores
/// or alerts are not in it.
pub async fn check_devices_are_sorted_and_distinct(store: &dyn ReadingStore) {
    let devices = store.devices().await.unwrap();
    let names: Vec<&str> = devices.iter().map(DeviceId::as_str).collect();
    assert!(names.windows(2).all(|w| w[0] < w[1]), "sorted and distinct: {names:?}");
    let mut with_readings: Vec<&str> = Vec::new();
    let latest = store.latest_readings(i64::MIN).await.unwrap();
    for r in &latest {
        if with_readings.last() != Some(&r.device.as_str()) {
            with_readings.push(r.device.as_str());
        }
    }
    assert_eq!(names, with_readings);
    for d in ["latest-B", "latest-a", "latest-b", "latest-c", "large-a", "extreme-top"] {
        assert!(names.contains(&d), "{d} missing from {names:?}");
    }
    for d in ["scores-a", "upsert-a", "alert-a"] {
        assert!(!names.contains(&d), "{d} has no readings but is listed");
    }
}

// ---- upgrades ---------------------------------------------------------------------------------

/// Rows as a build at schema 2 wrote them: the pump's four sensors, no unit column. (Plus a
/// channel such a build never wrote, `current`, to show what a NULL unit of any other name reads
/// as.)
const SCHEMA_2_READINGS: &str = "INSERT INTO sensor_readings
        (device, sensor, ts_ns, value, seq, injected) VALUES
    ('old-a', 'temperature', 100, 20.5, 0, NULL),
    ('old-a', 'vibration', 100, 0.25, 0, NULL),
    ('old-a', 'pressure', 100, 2.5, 0, 'pressure_flat'),
    ('old-a', 'humidity', 100, 45.0, 0, NULL),
    ('old-a', 'temperature', 200, 21.5, 1, NULL),
    ('old-a', 'temperature', 50, 19.5, 2, NULL),
    ('old-b', 'pressure', 300, 3.5, 0, NULL),
    ('old-b', 'current', 300, 7.0, 0, NULL)";

/// A store migrated by an older build to schema 2 and holding its rows, then migrated by this
/// one: the old rows read back with the pump's default units, the catalog holds their channels,
/// and the reads that rest on it (`latest_readings`) see them. Run on a fresh store that is not
/// migrated yet.
pub async fn check_upgrade_from_schema_2(store: &dyn OlderSchema) {
    let applied = store.migrate_to(2).await.unwrap();
    assert_eq!(applied.iter().map(|m| m.version).collect::<Vec<_>>(), [1, 2]);
    store.execute_batch(SCHEMA_2_READINGS).await.unwrap();
    let applied = store.migrate().await.unwrap();
    assert!(applied.iter().any(|m| m.version == 3 && m.name == "channels"), "{applied:?}");
    assert!(applied.iter().any(|m| m.version == 4 && m.name == "ts_source"), "{applied:?}");
    assert!(applied.iter().any(|m| m.version == 5 && m.name == "bridge_status"), "{applied:?}");
    let store: &dyn ReadingStore = store;

    let old = |device: &str, kind: SensorKind, ts_ns: i64, seq: u64, value: f64| {
        reading(device, kind, ts_ns, seq, value)
    };
    use SensorKind::{Humidity, Pressure, Temperature, Vibration};
    let expected = sorted(vec![
        old("old-a", Temperature, 100, 0, 20.5),
        old("old-a", Vibration, 100, 0, 0.25),
        Reading {
            injected: Some(AnomalyKind::PressureFlat),
            ..old("old-a", Pressure, 100, 0, 2.5)
        },
        old("old-a", Humidity, 100, 0, 45.0),
        old("old-a", Temperature, 200, 1, 21.5),
        old("old-a", Temperature, 50, 2, 19.5),
        old("old-b", Pressure, 300, 0, 3.5),
        channel_reading("old-b", "current", "", 300, 0, 7.0),
    ]);
    let back = store.query_range(&everything()).await.unwrap();
    assert_eq!(back, expected, "pump default units");
    assert!(back.iter().all(|r| r.ts_source == TsSource::Event), "older rows are event time");
    assert_eq!(
        store.channels().await.unwrap(),
        [
            info("old-a", "temperature", Temperature.unit(), 50, 200),
            info("old-a", "vibration", Vibration.unit(), 100, 100),
            info("old-a", "pressure", Pressure.unit(), 100, 100),
            info("old-a", "humidity", Humidity.unit(), 100, 100),
            info("old-b", "pressure", Pressure.unit(), 300, 300),
            info("old-b", "current", "", 300, 300),
        ],
        "the catalog filled from the old rows"
    );
    let latest = store.latest_readings(i64::MIN).await.unwrap();
    let at: Vec<(&str, &str, i64)> =
        latest.iter().map(|r| (r.device.as_str(), r.sensor.as_str(), r.ts_ns)).collect();
    assert_eq!(
        at,
        [
            ("old-a", "temperature", 200),
            ("old-a", "vibration", 100),
            ("old-a", "pressure", 100),
            ("old-a", "humidity", 100),
            ("old-b", "pressure", 300),
            ("old-b", "current", 300),
        ]
    );

    // New writes on top: an explicit pump unit joins the old rows' group; another unit is its
    // own and, being newer, becomes the channel's.
    store
        .insert_readings(&[
            old("old-a", Temperature, 150, 3, 22.5),
            channel_reading("old-a", "temperature", "K", 400, 4, 300.0),
        ])
        .await
        .unwrap();
    let temperature = store.channels().await.unwrap().remove(0);
    assert_eq!(temperature, info("old-a", "temperature", "K", 50, 400));
    let stats = store.channel_stats(i64::MIN, i64::MAX).await.unwrap();
    let of_temperature: Vec<(&str, u64, f64, f64, f64)> = stats
        .iter()
        .filter(|s| s.device.as_str() == "old-a" && s.sensor == Temperature)
        .map(|s| (s.unit.as_str(), s.count, s.min, s.max, s.mean))
        .collect();
    assert_eq!(
        of_temperature,
        [("K", 1, 300.0, 300.0, 300.0), (Temperature.unit(), 4, 19.5, 22.5, 21.0)],
        "{stats:#?}"
    );
    let current = stats.iter().find(|s| s.sensor.as_str() == "current").unwrap();
    assert_eq!((current.unit.as_str(), current.count, current.mean), ("", 1, 7.0));
    assert!(store.migrate().await.unwrap().is_empty());
}
