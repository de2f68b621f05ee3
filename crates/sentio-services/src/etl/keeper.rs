//! Keepers of the ETL's side topics: each reads one topic in a consumer group of its own and
//! keeps what it finds in the store, beside the ETL (`sentio ingest`, the ETL a `sentio bridge`
//! runs on the embedded bus, `sentio demo`).
//!
//! - [`StatusKeeper`]: the bridges' status reports (`topics.status`), each bridge's newest in the
//!   `bridge_status` table, where the dashboard's pipeline page reads them, so a `sentio serve`
//!   anywhere sees every bridge without a connection to the bus. A report is a status, not data:
//!   at least once is enough (the store keeps the newest per bridge).
//! - [`BridgeDeadLetterKeeper`]: the bridges' dead letters (`source` mqtt or http on
//!   `topics.dead_letters`), into the `dead_letters` table with their offsets on that topic, once
//!   each. On the embedded bus, which dies with its process, this is what keeps them; the ETL's own
//!   dead letters on that topic are stored by the ETL already, and skipped.
//!
//! A message a keeper cannot read is logged and skipped, and a failing store or bus is retried:
//! a keeper never fails and never stops the ETL beside it. At a stop it keeps what the topic
//! still holds (a bridge's last report, sent as it stopped) before it returns.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use sentio_bus::{Bus, Consumer, Record};
use sentio_core::BridgeReport;
use sentio_store::{BridgeStatusRow, DeadLetter, IngestBatch, ReadingStore, SourceOffset};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// Records read per poll.
const BATCH: usize = 256;
/// How long a poll waits for records.
const POLL: Duration = Duration::from_millis(500);
/// How long a poll waits at the stop, for what is still on the topic.
const DRAIN: Duration = Duration::from_millis(200);
/// The pause after a failure, before trying again.
const RETRY: Duration = Duration::from_secs(2);

/// What a keeper does with the records of its topic.
#[async_trait::async_trait]
pub trait Keep: Send + Sync {
    /// For the log: what the topic carries.
    fn what(&self) -> &'static str;
    /// Keeps what `records` carry (skipping, logged, what it cannot read); an error means
    /// nothing was kept, and the same records come again.
    async fn keep(&self, topic: &str, group: &str, records: &[Record]) -> anyhow::Result<()>;
}

/// One side topic's keeper: reads `topic` in `group` and hands each poll to its [`Keep`].
pub struct Keeper<K> {
    bus: Arc<dyn Bus>,
    topic: String,
    group: String,
    keep: K,
}

/// The bridges' status reports, each bridge's newest in the store.
pub type StatusKeeper = Keeper<KeepStatus>;
/// The bridges' dead letters, each once in the store.
pub type BridgeDeadLetterKeeper = Keeper<KeepBridgeDeadLetters>;

impl StatusKeeper {
    /// Keeps the reports of `topic`, consumed in `group`.
    pub fn new(
        bus: Arc<dyn Bus>,
        store: Arc<dyn ReadingStore>,
        topic: &str,
        group: &str,
    ) -> StatusKeeper {
        Keeper::with(bus, topic, group, KeepStatus { store })
    }
}

impl BridgeDeadLetterKeeper {
    /// Keeps the bridges' dead letters of `topic` (the dead-letter topic), consumed in `group`,
    /// under which the store records their offsets.
    pub fn new(
        bus: Arc<dyn Bus>,
        store: Arc<dyn ReadingStore>,
        topic: &str,
        group: &str,
    ) -> BridgeDeadLetterKeeper {
        Keeper::with(bus, topic, group, KeepBridgeDeadLetters { store })
    }
}

impl<K: Keep> Keeper<K> {
    pub fn with(bus: Arc<dyn Bus>, topic: &str, group: &str, keep: K) -> Keeper<K> {
        Keeper { bus, topic: topic.to_owned(), group: group.to_owned(), keep }
    }

    /// Runs until `stop`, then keeps what the topic still holds and returns. Never fails: what
    /// goes wrong is logged and tried again.
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        let what = self.keep.what();
        let mut consumer: Option<Box<dyn Consumer>> = None;
        // Read, not yet kept: kept with the next poll's after a failure.
        let mut pending: Vec<Record> = Vec::new();
        loop {
            let draining = stop.is_cancelled();
            let c = match &mut consumer {
                Some(c) => c,
                None => match self.bus.subscribe(&self.topic, &self.group).await {
                    Ok(c) => consumer.insert(c),
                    Err(e) if draining => {
                        tracing::debug!(error = %e, "{what}: not subscribed at the stop");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(topic = %self.topic, error = %e, "{what}: cannot subscribe; trying again");
                        pause(&stop).await;
                        continue;
                    }
                },
            };
            let polled = if draining {
                c.poll(BATCH, DRAIN).await
            } else {
                tokio::select! {
                    polled = c.poll(BATCH, POLL) => polled,
                    // Drain from the next turn on.
                    () = stop.cancelled() => continue,
                }
            };
            let records = match polled {
                Ok(records) => records,
                Err(e) => {
                    tracing::warn!(topic = %self.topic, error = %e, "{what}: poll failed; subscribing again");
                    if draining {
                        break;
                    }
                    consumer = None;
                    pause(&stop).await;
                    continue;
                }
            };
            let empty = records.is_empty();
            pending.extend(records);
            if !pending.is_empty() {
                if let Err(e) = self.keep.keep(&self.topic, &self.group, &pending).await {
                    tracing::warn!(error = format!("{e:#}"), "{what}: not kept; trying again");
                    if draining {
                        break;
                    }
                    pause(&stop).await;
                    continue;
                }
                let mut next: BTreeMap<u32, u64> = BTreeMap::new();
                for r in pending.drain(..) {
                    next.insert(r.partition, r.offset + 1);
                }
                if let Err(e) = c.commit(&next).await {
                    // Kept; at worst read and kept again, which changes nothing.
                    tracing::warn!(error = %e, "{what}: commit failed");
                }
            }
            if draining && empty {
                break;
            }
        }
        Ok(())
    }
}

/// Runs both keepers until `stop` (and their drain).
pub async fn run_together(
    status: StatusKeeper,
    letters: BridgeDeadLetterKeeper,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let (status, letters) = tokio::join!(status.run(stop.clone()), letters.run(stop));
    status.and(letters)
}

async fn pause(stop: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(RETRY) => {}
        () = stop.cancelled() => {}
    }
}

pub struct KeepStatus {
    store: Arc<dyn ReadingStore>,
}

#[async_trait::async_trait]
impl Keep for KeepStatus {
    fn what(&self) -> &'static str {
        "bridge status"
    }

    async fn keep(&self, topic: &str, _group: &str, records: &[Record]) -> anyhow::Result<()> {
        let rows: Vec<BridgeStatusRow> = records
            .iter()
            .filter_map(|r| match BridgeReport::decode(&r.payload) {
                Ok((report, at)) => Some(BridgeStatusRow {
                    bridge: report.bridge.clone(),
                    reported_ns: at,
                    // Written again from what was read: valid JSON, whatever came.
                    report: String::from_utf8(report.encode()).unwrap_or_default(),
                }),
                Err(e) => {
                    tracing::warn!(%topic, partition = r.partition, offset = r.offset, error = %e,
                        "bridge status: skipped a message that is not a report");
                    None
                }
            })
            .collect();
        self.store.save_bridge_status(&rows).await?;
        Ok(())
    }
}

pub struct KeepBridgeDeadLetters {
    store: Arc<dyn ReadingStore>,
}

/// The fields of a bridge's dead letter (docs/schema/bridge-dead-letter.v1.json) that the store
/// keeps; the ETL's own dead letters have no `source`.
#[derive(Deserialize)]
struct BridgeLetter {
    source: Option<String>,
    #[serde(default)]
    code: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    payload_base64: String,
    mqtt_topic: Option<String>,
    client_id: Option<String>,
    line: Option<u64>,
    item: Option<u64>,
    query: Option<String>,
}

impl BridgeLetter {
    /// Where the letter came from, for its stored reason.
    fn origin(&self) -> String {
        match (&self.mqtt_topic, &self.query) {
            (Some(topic), _) => format!(
                "MQTT topic {topic:?}, client {:?}",
                self.client_id.as_deref().unwrap_or("")
            ),
            (None, query) => {
                let place = match (self.line, self.item) {
                    (Some(n), _) => format!("line {n}"),
                    (None, Some(n)) => format!("item {n}"),
                    (None, None) => "a request".to_owned(),
                };
                format!("HTTP {place}, query {:?}", query.as_deref().unwrap_or(""))
            }
        }
    }
}

#[async_trait::async_trait]
impl Keep for KeepBridgeDeadLetters {
    fn what(&self) -> &'static str {
        "bridge dead letters"
    }

    async fn keep(&self, topic: &str, group: &str, records: &[Record]) -> anyhow::Result<()> {
        let mut batch = IngestBatch {
            group: group.to_owned(),
            topic: topic.to_owned(),
            ..IngestBatch::default()
        };
        for r in records {
            batch.next_offsets.insert(r.partition, r.offset + 1);
            let letter = match serde_json::from_slice::<BridgeLetter>(&r.payload) {
                Ok(l) if matches!(l.source.as_deref(), Some("mqtt" | "http")) => l,
                // The ETL's own (stored by the ETL), or another producer's.
                _ => continue,
            };
            let payload = base64::engine::general_purpose::STANDARD
                .decode(&letter.payload_base64)
                .unwrap_or_else(|_| letter.payload_base64.clone().into_bytes());
            batch.dead_letters.push(DeadLetter {
                source: SourceOffset { partition: r.partition, offset: r.offset },
                reason: format!("{} ({})", letter.reason, letter.origin()),
                code: letter.code,
                key: r.key.to_vec(),
                payload,
            });
        }
        // The offsets go with the letters, in one transaction: each is stored once.
        self.store.write_batch(&batch).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentio_bus::memory::MemoryBus;
    use sentio_store::sqlite::SqliteStore;

    fn report(bridge: &str, at: &str, readings: u64) -> BridgeReport {
        BridgeReport {
            v: 1,
            bridge: bridge.into(),
            kind: "mqtt".into(),
            endpoint: "mqtt://127.0.0.1:1883".into(),
            host: "gw".into(),
            pid: 1,
            started_at: "2026-12-03T10:00:00Z".into(),
            at: at.into(),
            every_s: 5.0,
            stopped: false,
            connected: Some(true),
            messages: readings,
            readings,
            readings_per_s: 1.0,
            arrival_time: 0,
            dead_letters: 0,
            refused: None,
        }
    }

    /// Each bridge's newest report reaches the store, an older one published after it does not
    /// move it back, and a message that is not a report is skipped without stopping the keeper.
    #[tokio::test]
    async fn keeps_each_bridges_newest_report_and_skips_garbage() {
        let bus = Arc::new(MemoryBus::new(1024));
        bus.create_topic("status", 1).await.unwrap();
        let store = Arc::new(SqliteStore::open_in_memory().unwrap());
        store.migrate().await.unwrap();
        let keeper = StatusKeeper::new(bus.clone(), store.clone(), "status", "keeper");
        let stop = CancellationToken::new();
        let task = tokio::spawn(keeper.run(stop.clone()));
        let records = vec![
            ("a", report("a", "2026-12-03T10:00:10Z", 10).encode()),
            ("a", b"{\"v\": 1, not json".to_vec()),
            ("b", report("b", "2026-12-03T10:00:05Z", 3).encode()),
            ("a", report("a", "2026-12-03T10:00:05Z", 5).encode()),
        ];
        bus.publish_batch(
            "status",
            records.into_iter().map(|(k, v)| (k.as_bytes().to_vec().into(), v.into())).collect(),
        )
        .await
        .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let rows = loop {
            let rows = store.bridge_status().await.unwrap();
            if rows.len() == 2 || tokio::time::Instant::now() > deadline {
                break rows;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(rows.len(), 2, "{rows:?}");
        // A bridge's last report, published as the keeper is told to stop, is still kept.
        let last = report("b", "2026-12-03T10:00:20Z", 4).encode();
        bus.publish("status", b"b", last.into()).await.unwrap();
        stop.cancel();
        task.await.unwrap().unwrap();
        let rows = store.bridge_status().await.unwrap();
        let kept: Vec<(String, u64)> = rows
            .iter()
            .map(|r| {
                let (report, at) = BridgeReport::decode(r.report.as_bytes()).unwrap();
                assert_eq!(at, r.reported_ns);
                (report.bridge, report.readings)
            })
            .collect();
        assert_eq!(kept, [("a".to_owned(), 10), ("b".to_owned(), 4)]);
    }

    /// A bridge's dead letters (MQTT and HTTP) are stored once each with where they came from;
    /// the ETL's own on the same topic, and what is not a dead letter, are not; the same letters
    /// read again (a topic replayed, a keeper restarted) are not stored twice.
    #[tokio::test]
    async fn stores_each_bridge_dead_letter_once_and_skips_the_etls() {
        let store: Arc<dyn ReadingStore> = Arc::new(SqliteStore::open_in_memory().unwrap());
        store.migrate().await.unwrap();
        let mqtt = r#"{"v":1,"source":"mqtt","code":"not_a_number","reason":"payload is \"warm\", expected a plain number such as 21.3","mqtt_topic":"plant/pump-01/temperature","client_id":"sentio-bridge","received_at":"2026-12-02T22:10:00Z","payload_base64":"d2FybQ=="}"#;
        let http = r#"{"v":1,"source":"http","code":"wrong_type","reason":"field `value` is a string, expected a number","line":2,"query":"format=value&device=press-01&sensor=pressure","received_at":"2026-12-03T10:00:00Z","payload_base64":"eyJ2YWx1ZSI6ICJoaWdoIn0="}"#;
        let etl = r#"{"v":1,"code":"missing_field","reason":"missing field `device`","topic":"sensor-data","partition":0,"offset":1,"group":"sentio-ingest","key_base64":"","payload_base64":"e30="}"#;
        let records = || -> Vec<(bytes::Bytes, bytes::Bytes)> {
            [("plant/pump-01/temperature", mqtt), ("x", etl), ("y", "not json"), ("http", http)]
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec().into(), v.as_bytes().to_vec().into()))
                .collect()
        };
        for _ in 0..2 {
            // A fresh embedded bus each time (as a process restart), the topic at offset 0 again.
            let bus = Arc::new(MemoryBus::new(64));
            bus.create_topic("dlq", 1).await.unwrap();
            bus.publish_batch("dlq", records()).await.unwrap();
            let stop = CancellationToken::new();
            let keeper = BridgeDeadLetterKeeper::new(bus.clone(), store.clone(), "dlq", "k");
            stop.cancel();
            // Cancelled before it starts: it still keeps what the topic holds.
            keeper.run(stop).await.unwrap();
        }
        let kept = store.dead_letters("dlq").await.unwrap();
        let got: Vec<(u64, &str, &[u8], &[u8])> = kept
            .iter()
            .map(|d| (d.source.offset, d.code.as_str(), d.key.as_slice(), d.payload.as_slice()))
            .collect();
        assert_eq!(
            got,
            [
                (0, "not_a_number", &b"plant/pump-01/temperature"[..], &b"warm"[..]),
                (3, "wrong_type", &b"http"[..], &br#"{"value": "high"}"#[..]),
            ]
        );
        assert!(
            kept[0]
                .reason
                .ends_with(r#"(MQTT topic "plant/pump-01/temperature", client "sentio-bridge")"#),
            "{}",
            kept[0].reason
        );
        assert!(
            kept[1].reason.contains("expected a number (HTTP line 2, query \"format=value"),
            "{}",
            kept[1].reason
        );
        assert_eq!(store.committed_offsets("k", "dlq").await.unwrap(), BTreeMap::from([(0, 4)]));
    }
}
