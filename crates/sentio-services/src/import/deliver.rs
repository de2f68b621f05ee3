//! An import's readings onto the bus, and the wait until the ETL has settled them (stored each,
//! or made it a dead letter).
//!
//! "Settled" is read from the store, not from an ETL's counters: the store records, with the rows,
//! the offset after the last message the ETL group handled on each partition, so a published
//! message at an offset below it is stored or dead-lettered, whichever ETL process of the group
//! handled it. That holds on the embedded bus and on Kafka alike.
//!
//! The embedded bus keeps only its newest `bus.memory.capacity` records per partition of a topic
//! that no consumer group has joined yet. So that none is dropped while the in-process ETL is
//! still starting, the first batch (no larger than that) goes out alone, and the rest only once
//! it is settled.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use sentio_bus::{Bus, BusError, Delivery};
use sentio_core::{Channel, DeviceId, Reading, encode_reading};
use sentio_store::{DeadLetter, ReadingStore, SourceOffset, StoreError};

use super::plan::DevicePlan;

/// Where the published readings landed: per partition, their offsets in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    offsets: BTreeMap<u32, Vec<u64>>,
    count: u64,
}

impl Published {
    pub fn count(&self) -> u64 {
        self.count
    }

    fn record(&mut self, deliveries: &[Delivery]) {
        for d in deliveries {
            self.offsets.entry(d.partition).or_default().push(d.offset);
        }
        // A producer's records on one partition get increasing offsets; keep the search valid
        // even if a backend returned them otherwise.
        for offsets in self.offsets.values_mut() {
            if !offsets.is_sorted() {
                offsets.sort_unstable();
            }
        }
        self.count += deliveries.len() as u64;
    }

    /// How many lie below `committed` (per partition, the offset after the last one settled).
    pub fn settled(&self, committed: &BTreeMap<u32, u64>) -> u64 {
        self.offsets
            .iter()
            .map(|(p, offsets)| {
                let next = committed.get(p).copied().unwrap_or(0);
                offsets.partition_point(|&o| o < next) as u64
            })
            .sum()
    }

    pub fn contains(&self, source: SourceOffset) -> bool {
        self.offsets.get(&source.partition).is_some_and(|o| o.binary_search(&source.offset).is_ok())
    }
}

/// How to publish and how long to wait.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliverSettings {
    pub topic: String,
    /// The ETL's consumer group (`ingest.group`), whose stored offsets say what is settled.
    pub group: String,
    /// Readings per `publish_batch`.
    pub batch: usize,
    /// Publish this many first and wait until they are settled before the rest (the embedded
    /// bus: at most `bus.memory.capacity`); `None` publishes straight on.
    pub first_batch: Option<usize>,
    /// Wait until everything is settled; `None` only publishes.
    pub wait: Option<Wait>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wait {
    /// How often the store's offsets are read.
    pub poll: Duration,
    /// Give up when nothing more is settled for this long.
    pub stall: Duration,
}

/// What [`deliver`] reports as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Readings on the bus so far, of `total`.
    Published { done: u64, total: u64 },
    /// Readings settled so far, of those published.
    Settled { done: u64, total: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error("publishing to topic {topic:?}")]
    Publish {
        topic: String,
        #[source]
        source: BusError,
    },
    #[error("reading the offsets the ETL stored for group {group:?}")]
    Offsets {
        group: String,
        #[source]
        source: StoreError,
    },
    #[error(
        "{settled} of {published} published readings are stored and nothing more was for {}: is \
         an ETL of group {group:?} consuming topic {topic:?}? Run `sentio ingest`; what is \
         published stays on the bus and is stored once it runs",
        humantime::format_duration(*stall)
    )]
    Stalled { settled: u64, published: u64, stall: Duration, group: String, topic: String },
}

/// Publishes `readings` (keyed by device, so a device's readings stay in order on one partition)
/// and, with `settings.wait`, waits until all are settled. `total` is how many there are, for
/// `progress`.
pub async fn deliver(
    bus: &dyn Bus,
    store: &dyn ReadingStore,
    readings: impl Iterator<Item = Reading>,
    total: u64,
    settings: &DeliverSettings,
    mut progress: impl FnMut(Progress),
) -> Result<Published, DeliverError> {
    let mut readings = readings.peekable();
    let mut published = Published::default();
    let batch = settings.batch.max(1);
    if let Some(first) = settings.first_batch {
        publish(
            bus,
            &settings.topic,
            readings.by_ref().take(first.max(1)),
            batch,
            &mut published,
            total,
            &mut progress,
        )
        .await?;
        if readings.peek().is_some()
            && let Some(wait) = settings.wait
        {
            wait_settled(store, settings, &published, wait, &mut progress).await?;
        }
    }
    publish(bus, &settings.topic, readings, batch, &mut published, total, &mut progress).await?;
    if let Some(wait) = settings.wait {
        wait_settled(store, settings, &published, wait, &mut progress).await?;
    }
    Ok(published)
}

async fn publish(
    bus: &dyn Bus,
    topic: &str,
    mut readings: impl Iterator<Item = Reading>,
    batch: usize,
    published: &mut Published,
    total: u64,
    progress: &mut impl FnMut(Progress),
) -> Result<(), DeliverError> {
    let mut key: Option<(DeviceId, Bytes)> = None;
    loop {
        let mut records = Vec::with_capacity(batch);
        for r in readings.by_ref().take(batch) {
            let k = match &key {
                Some((device, k)) if *device == r.device => k.clone(),
                _ => {
                    let k = Bytes::copy_from_slice(r.device.as_str().as_bytes());
                    key = Some((r.device.clone(), k.clone()));
                    k
                }
            };
            records.push((k, Bytes::from(encode_reading(&r))));
        }
        if records.is_empty() {
            return Ok(());
        }
        let deliveries = bus
            .publish_batch(topic, records)
            .await
            .map_err(|source| DeliverError::Publish { topic: topic.to_owned(), source })?;
        published.record(&deliveries);
        progress(Progress::Published { done: published.count(), total });
    }
}

/// Waits until the store's offsets for the group cover every published reading.
async fn wait_settled(
    store: &dyn ReadingStore,
    settings: &DeliverSettings,
    published: &Published,
    wait: Wait,
    progress: &mut impl FnMut(Progress),
) -> Result<(), DeliverError> {
    let total = published.count();
    let mut last = None;
    let mut since = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(wait.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let committed = store
            .committed_offsets(&settings.group, &settings.topic)
            .await
            .map_err(|source| DeliverError::Offsets { group: settings.group.clone(), source })?;
        let settled = published.settled(&committed);
        if last != Some(settled) {
            progress(Progress::Settled { done: settled, total });
            last = Some(settled);
            since = tokio::time::Instant::now();
        }
        if settled >= total {
            return Ok(());
        }
        if since.elapsed() >= wait.stall {
            return Err(DeliverError::Stalled {
                settled,
                published: total,
                stall: wait.stall,
                group: settings.group.clone(),
                topic: settings.topic.clone(),
            });
        }
    }
}

/// The dead letters the ETL made of the published readings.
pub async fn dead_letters_of(
    store: &dyn ReadingStore,
    topic: &str,
    published: &Published,
) -> Result<Vec<DeadLetter>, StoreError> {
    let mut dead = store.dead_letters(topic).await?;
    dead.retain(|d| published.contains(d.source));
    Ok(dead)
}

/// A channel of a device the store already holds readings of, in a span that overlaps the one
/// being imported: importing again would store those readings a second time.
#[derive(Debug, Clone, PartialEq)]
pub struct Overlap {
    pub device: DeviceId,
    pub channel: Channel,
    /// The stored readings' first and last timestamps.
    pub stored: (i64, i64),
    /// The import's.
    pub importing: (i64, i64),
}

/// The overlaps between `plans` and what the store holds (from its channel catalog, one row per
/// device and channel: no scan of the readings).
pub async fn overlaps(
    store: &dyn ReadingStore,
    plans: &[DevicePlan],
) -> Result<Vec<Overlap>, StoreError> {
    let catalog = store.channels().await?;
    let mut out = Vec::new();
    for plan in plans {
        let Some((from, to)) = plan.span else { continue };
        for info in catalog.iter().filter(|i| i.device == plan.device) {
            if plan.channels.iter().any(|c| c.channel == info.sensor)
                && info.first_ts_ns <= to
                && from <= info.last_ts_ns
            {
                out.push(Overlap {
                    device: info.device.clone(),
                    channel: info.sensor.clone(),
                    stored: (info.first_ts_ns, info.last_ts_ns),
                    importing: (from, to),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::path::Path;
    use std::sync::Arc;

    use sentio_bus::memory::MemoryBus;
    use sentio_config::Config;
    use sentio_core::{AnomalyKind, Profiles};
    use sentio_store::RangeQuery;
    use sentio_store::sqlite::SqliteStore;
    use tokio_util::sync::CancellationToken;

    use super::super::sheet::{ReadOptions, parse_sheet};
    use super::*;
    use crate::etl::Etl;

    /// 300 rows of two channels, labelled from row 200 on; the first row's timestamp is in 1970,
    /// which the ETL refuses.
    fn plan(device: &str) -> DevicePlan {
        let mut text = String::from("ts,flow,level,anomaly\n100,1,1,0\n");
        for i in 1..300 {
            text += &format!("{},{i},{},{}\n", 1_583_748_873 + i, i * 2, u8::from(i >= 200));
        }
        let options =
            ReadOptions { label_column: Some("anomaly".into()), ..ReadOptions::default() };
        let sheet = parse_sheet(Path::new("t.csv"), text.as_bytes(), &options).unwrap();
        let id = DeviceId::new(device).unwrap();
        let profiles = Profiles::builtin();
        DevicePlan::new(id, vec![sheet], profiles.for_device(device), true)
    }

    /// On a bus that holds 16 records per partition, 600 readings published from before the ETL
    /// has joined are all settled: after the first batch the import waits for the ETL. The readings land with
    /// their labels, the 1970 ones as dead letters, and a second import of the same rows is
    /// seen as an overlap.
    #[tokio::test]
    async fn every_published_reading_is_settled_and_none_is_lost_to_a_late_etl() {
        let config = Config::defaults().unwrap();
        let (topic, dlq) = (&config.topics.readings, &config.topics.dead_letters);
        let mem = MemoryBus::new(16);
        mem.create_topic(topic, 2).await.unwrap();
        mem.create_topic(dlq, 2).await.unwrap();
        let bus: Arc<dyn Bus> = Arc::new(mem);
        let sqlite = SqliteStore::open_in_memory().unwrap();
        sqlite.migrate().await.unwrap();
        let store: Arc<dyn ReadingStore> = Arc::new(sqlite);
        let plans = vec![plan("imp-1")];
        let total: u64 = plans.iter().map(DevicePlan::reading_count).sum();
        assert_eq!(total, 600);

        let settings = DeliverSettings {
            topic: topic.clone(),
            group: config.ingest.group.clone(),
            batch: 64,
            first_batch: Some(16),
            wait: Some(Wait { poll: Duration::from_millis(10), stall: Duration::from_secs(30) }),
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let delivering = {
            let (bus, store) = (bus.clone(), store.clone());
            let readings: Vec<Reading> = plans.iter().flat_map(DevicePlan::readings).collect();
            tokio::spawn(async move {
                let report = |p| tx.send(p).unwrap_or_default();
                let readings = readings.into_iter();
                deliver(bus.as_ref(), store.as_ref(), readings, total, &settings, report).await
            })
        };
        // The ETL joins only once the first batch is on the bus, which holds 16 of them.
        assert_eq!(rx.recv().await, Some(Progress::Published { done: 16, total }));
        let etl = Etl::new(bus.clone(), store.clone(), topic, dlq, &config.ingest);
        let stop = CancellationToken::new();
        let etl_task = tokio::spawn(etl.run(stop.clone()));
        let published = tokio::time::timeout(Duration::from_secs(60), delivering)
            .await
            .expect("delivered in time")
            .unwrap()
            .unwrap();
        stop.cancel();
        etl_task.await.unwrap().unwrap();
        let mut last = None;
        while let Ok(p) = rx.try_recv() {
            last = Some(p);
        }
        assert_eq!(last, Some(Progress::Settled { done: 600, total: 600 }));

        assert_eq!(published.count(), 600);
        let dead = dead_letters_of(store.as_ref(), topic, &published).await.unwrap();
        assert_eq!(dead.len(), 2, "flow and level of the 1970 row");
        assert!(dead.iter().all(|d| d.code == "timestamp_out_of_range"), "{dead:?}");
        let stored = store
            .query_range(&RangeQuery {
                devices: vec![DeviceId::new("imp-1").unwrap()],
                sensors: vec![],
                from_ns: i64::MIN,
                to_ns: i64::MAX,
            })
            .await
            .unwrap();
        assert_eq!(stored.len(), 598);
        let labelled = stored.iter().filter(|r| r.injected == Some(AnomalyKind::Labelled)).count();
        assert_eq!(labelled, 200);

        let again = overlaps(store.as_ref(), &plans).await.unwrap();
        let channels: Vec<&str> = again.iter().map(|o| o.channel.as_str()).collect();
        assert_eq!(channels, ["flow", "level"]);
        assert!(overlaps(store.as_ref(), &[plan("imp-2")]).await.unwrap().is_empty());
    }

    /// With no ETL at all, the wait ends with a message that names the group and the way out.
    #[tokio::test(start_paused = true)]
    async fn a_wait_with_no_etl_stalls_with_a_way_forward() {
        let mem = MemoryBus::new(1024);
        mem.create_topic("t", 1).await.unwrap();
        let sqlite = SqliteStore::open_in_memory().unwrap();
        sqlite.migrate().await.unwrap();
        let settings = DeliverSettings {
            topic: "t".into(),
            group: "g".into(),
            batch: 10,
            first_batch: None,
            wait: Some(Wait { poll: Duration::from_millis(100), stall: Duration::from_secs(5) }),
        };
        let p = plan("imp-1");
        let err = deliver(&mem, &sqlite, p.readings(), p.reading_count(), &settings, |_| {})
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("0 of 600 published readings are stored"), "{text}");
        assert!(text.contains("group \"g\" consuming topic \"t\"? Run `sentio ingest`"), "{text}");

        // Publishing only does not wait.
        let only = DeliverSettings { wait: None, ..settings };
        let published = deliver(&mem, &sqlite, p.readings(), 600, &only, |_| {}).await.unwrap();
        assert_eq!(published.count(), 600);
    }

    #[test]
    fn settled_counts_the_offsets_below_the_committed_ones() {
        let mut p = Published::default();
        let d = |partition, offset| Delivery { partition, offset };
        p.record(&[d(0, 5), d(0, 6), d(1, 0), d(0, 9)]);
        assert_eq!(p.settled(&BTreeMap::new()), 0);
        assert_eq!(p.settled(&BTreeMap::from([(0, 7)])), 2);
        assert_eq!(p.settled(&BTreeMap::from([(0, 10), (1, 1)])), 4);
        assert!(p.contains(SourceOffset { partition: 0, offset: 9 }));
        assert!(!p.contains(SourceOffset { partition: 0, offset: 7 }));
    }
}
