//! The bridge status keeper: reads the status topic (`topics.status`) and keeps each bridge's
//! newest report in the store, where the dashboard's pipeline page reads it.
//!
//! It runs beside the ETL (`sentio ingest`, and the ETL a `sentio bridge` runs on the embedded
//! bus), so a `sentio serve` anywhere sees every bridge without a connection to the bus. A report
//! is a status, not data: at least once is enough (the store keeps the newest per bridge, so a
//! redelivered one changes nothing), a message that is not a report is logged and skipped, and a
//! failing store or bus is retried without ever stopping the ETL beside it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sentio_bus::{Bus, Consumer};
use sentio_core::BridgeReport;
use sentio_store::{BridgeStatusRow, ReadingStore};
use tokio_util::sync::CancellationToken;

/// Reports read per poll.
const BATCH: usize = 256;
/// How long a poll waits for reports.
const POLL: Duration = Duration::from_millis(500);
/// How long a poll waits at the stop, for what is still on the topic.
const DRAIN: Duration = Duration::from_millis(200);
/// The pause after a failure, before trying again.
const RETRY: Duration = Duration::from_secs(2);

pub struct StatusKeeper {
    bus: Arc<dyn Bus>,
    store: Arc<dyn ReadingStore>,
    topic: String,
    group: String,
}

impl StatusKeeper {
    /// Keeps the reports of `topic`, consumed in `group`.
    pub fn new(
        bus: Arc<dyn Bus>,
        store: Arc<dyn ReadingStore>,
        topic: &str,
        group: &str,
    ) -> StatusKeeper {
        StatusKeeper { bus, store, topic: topic.to_owned(), group: group.to_owned() }
    }

    /// Runs until `stop`, then stores what the topic still holds (a bridge's last report, sent
    /// as it stopped) and returns. Never fails: what goes wrong is logged and tried again.
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        let mut consumer: Option<Box<dyn Consumer>> = None;
        let mut pending: Vec<BridgeStatusRow> = Vec::new();
        let mut next: BTreeMap<u32, u64> = BTreeMap::new();
        loop {
            let draining = stop.is_cancelled();
            let c = match &mut consumer {
                Some(c) => c,
                None => match self.bus.subscribe(&self.topic, &self.group).await {
                    Ok(c) => consumer.insert(c),
                    Err(e) if draining => {
                        tracing::debug!(error = %e, "bridge status: not subscribed at the stop");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(topic = %self.topic, error = %e, "bridge status: cannot subscribe; trying again");
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
                    tracing::warn!(topic = %self.topic, error = %e, "bridge status: poll failed; subscribing again");
                    if draining {
                        break;
                    }
                    consumer = None;
                    pause(&stop).await;
                    continue;
                }
            };
            let empty = records.is_empty();
            for r in records {
                next.insert(r.partition, r.offset + 1);
                match BridgeReport::decode(&r.payload) {
                    Ok((report, at)) => pending.push(BridgeStatusRow {
                        bridge: report.bridge.clone(),
                        reported_ns: at,
                        // Written again from what was read: valid JSON, whatever came.
                        report: String::from_utf8(report.encode()).unwrap_or_default(),
                    }),
                    Err(e) => tracing::warn!(
                        topic = %self.topic,
                        partition = r.partition,
                        offset = r.offset,
                        error = %e,
                        "bridge status: skipped a message that is not a report"
                    ),
                }
            }
            if !next.is_empty() {
                if let Err(e) = self.store.save_bridge_status(&pending).await {
                    // Kept, and written with the next poll's.
                    tracing::warn!(error = %e, "bridge status: the store refused the reports; trying again");
                    if draining {
                        break;
                    }
                    pause(&stop).await;
                    continue;
                }
                pending.clear();
                if let Err(e) = c.commit(&next).await {
                    // The reports are stored; at worst they are read and stored again.
                    tracing::warn!(error = %e, "bridge status: commit failed");
                }
                next.clear();
            }
            if draining && empty {
                break;
            }
        }
        Ok(())
    }
}

async fn pause(stop: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(RETRY) => {}
        () = stop.cancelled() => {}
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
}
