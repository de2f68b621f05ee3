//! A bridge's status reports on the status topic (`topics.status`): its counters and connection
//! state every `bridge.report_every`, and a last one when it stops, for the pipeline page of a
//! `sentio serve` in another process (the ETL keeps each bridge's newest in the store).
//!
//! A report that cannot be published is logged and the next one tried: reporting never holds up
//! or stops the bridge.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sentio_bus::Bus;
use sentio_core::BridgeReport;
use sentio_core::time::{format_rfc3339, now_ns};
use tokio_util::sync::CancellationToken;

use crate::{BridgeStats, HttpStats};

/// How long one report may take to publish before it is given up (the next one follows).
const PUBLISH_DEADLINE: Duration = Duration::from_secs(10);

/// What a bridge counts, read for each report.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Counters {
    pub connected: Option<bool>,
    pub messages: u64,
    pub readings: u64,
    pub arrival_time: u64,
    pub dead_letters: u64,
    pub refused: Option<u64>,
}

impl Counters {
    pub fn of_mqtt(s: &BridgeStats) -> Counters {
        Counters {
            connected: Some(s.connected.load(Ordering::Relaxed)),
            messages: s.messages.load(Ordering::Relaxed),
            readings: s.readings.load(Ordering::Relaxed),
            arrival_time: s.arrival_time.load(Ordering::Relaxed),
            dead_letters: s.dead_letters.load(Ordering::Relaxed),
            refused: None,
        }
    }

    pub fn of_http(s: &HttpStats) -> Counters {
        Counters {
            connected: None,
            messages: s.requests.load(Ordering::Relaxed),
            readings: s.readings.load(Ordering::Relaxed),
            arrival_time: s.arrival_time.load(Ordering::Relaxed),
            dead_letters: s.dead_letters.load(Ordering::Relaxed),
            refused: Some(s.refused.load(Ordering::Relaxed)),
        }
    }
}

/// Who reports: the fields of a report that do not change while the bridge runs.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The bridge's id, and the key of its reports: see [`Identity::mqtt`], [`Identity::http`].
    pub bridge: String,
    pub kind: &'static str,
    pub endpoint: String,
    pub host: String,
    pub pid: u32,
    pub started_ns: i64,
}

impl Identity {
    /// `mqtt:<client id>@<broker host>:<port>`: one session on one broker is one bridge.
    pub fn mqtt(client_id: &str, broker_host: &str, port: u16) -> Identity {
        Identity::new(
            format!("mqtt:{client_id}@{broker_host}:{port}"),
            "mqtt",
            format!("mqtt://{broker_host}:{port}"),
            host_name(),
        )
    }

    /// `http:<host>@<bound address>`.
    pub fn http(bound: std::net::SocketAddr) -> Identity {
        let host = host_name();
        Identity::new(
            format!("http:{host}@{bound}"),
            "http",
            format!("http://{bound}{}", crate::http::PATH),
            host,
        )
    }

    fn new(bridge: String, kind: &'static str, endpoint: String, host: String) -> Identity {
        Identity { bridge, kind, endpoint, host, pid: std::process::id(), started_ns: now_ns() }
    }
}

/// The machine's name (the kernel's host name), or `"unknown"`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Publishes `counters()` as a report every `every`, and a last one marked stopped once the
/// bridge is done (see [`Reporter::run`]).
pub struct Reporter {
    bus: Arc<dyn Bus>,
    topic: String,
    identity: Identity,
    every: Duration,
}

impl Reporter {
    pub fn new(bus: Arc<dyn Bus>, topic: &str, identity: Identity, every: Duration) -> Reporter {
        Reporter { bus, topic: topic.to_owned(), identity, every }
    }

    /// One report of `now`'s counters; `previous` is the last report's readings and time, for
    /// the rate.
    fn report(&self, c: Counters, previous: (u64, Instant), stopped: bool) -> BridgeReport {
        let seconds = previous.1.elapsed().as_secs_f64();
        let rate = if seconds > 0.0 {
            c.readings.saturating_sub(previous.0) as f64 / seconds
        } else {
            0.0
        };
        let id = &self.identity;
        BridgeReport {
            v: 1,
            bridge: id.bridge.clone(),
            kind: id.kind.to_owned(),
            endpoint: id.endpoint.clone(),
            host: id.host.clone(),
            pid: id.pid,
            started_at: format_rfc3339(id.started_ns),
            at: format_rfc3339(now_ns()),
            every_s: self.every.as_secs_f64(),
            stopped,
            connected: if stopped { c.connected.map(|_| false) } else { c.connected },
            messages: c.messages,
            readings: c.readings,
            readings_per_s: rate,
            arrival_time: c.arrival_time,
            dead_letters: c.dead_letters,
            refused: c.refused,
        }
    }

    async fn send(&self, report: &BridgeReport) {
        let publish =
            self.bus.publish(&self.topic, report.bridge.as_bytes(), Bytes::from(report.encode()));
        match tokio::time::timeout(PUBLISH_DEADLINE, publish).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(topic = %self.topic, error = %e, "publishing the bridge's status report failed")
            }
            Err(_) => {
                tracing::warn!(topic = %self.topic, "publishing the bridge's status report timed out")
            }
        }
    }

    /// Reports every period (the first at once) until `done`, then once more with the final
    /// counters, marked stopped: cancel `done` once the bridge has stopped.
    pub async fn run(&self, counters: impl Fn() -> Counters, done: CancellationToken) {
        let mut previous = (0, Instant::now());
        loop {
            let stopped = done.is_cancelled();
            let c = counters();
            self.send(&self.report(c, previous, stopped)).await;
            if stopped {
                return;
            }
            previous = (c.readings, Instant::now());
            tokio::select! {
                () = tokio::time::sleep(self.every) => {}
                () = done.cancelled() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentio_bus::memory::MemoryBus;
    use std::sync::atomic::AtomicU64;

    /// Reports come at once and then every period, keyed by the bridge, with counters and a rate;
    /// the last says stopped and disconnected.
    #[tokio::test]
    async fn reports_every_period_and_once_more_when_stopped() {
        let bus = Arc::new(MemoryBus::new(64));
        bus.create_topic("status", 1).await.unwrap();
        let mut consumer = bus.subscribe("status", "t").await.unwrap();
        let id = Identity::mqtt("sentio-bridge", "broker", 1883);
        assert_eq!(id.bridge, "mqtt:sentio-bridge@broker:1883");
        let reporter = Reporter::new(bus.clone(), "status", id, Duration::from_millis(100));
        let readings = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let counters = {
            let (readings, stop) = (readings.clone(), stop.clone());
            // The bridge's final count once it has stopped.
            move || Counters {
                connected: Some(true),
                readings: if stop.is_cancelled() {
                    1000
                } else {
                    readings.fetch_add(50, Ordering::Relaxed) + 50
                },
                ..Counters::default()
            }
        };
        let run = reporter.run(counters, stop.clone());
        let stopper = async {
            tokio::time::sleep(Duration::from_millis(350)).await;
            stop.cancel();
        };
        tokio::join!(run, stopper);
        let mut reports = Vec::new();
        while let Ok(records) = consumer.poll(64, Duration::from_millis(100)).await {
            if records.is_empty() {
                break;
            }
            for r in records {
                assert_eq!(&r.key[..], b"mqtt:sentio-bridge@broker:1883");
                reports.push(BridgeReport::decode(&r.payload).unwrap().0);
            }
        }
        assert!((4..=6).contains(&reports.len()), "{reports:?}");
        let (last, before) = reports.split_last().unwrap();
        assert!(before.iter().all(|r| !r.stopped && r.connected == Some(true) && r.kind == "mqtt"));
        assert_eq!(before.iter().map(|r| r.readings).collect::<Vec<_>>()[..3], [50, 100, 150]);
        assert!(before[1].readings_per_s > 100.0, "50 readings in about 0.1 s: {:?}", before[1]);
        assert!(last.stopped && last.connected == Some(false) && last.readings == 1000, "{last:?}");
        assert_eq!(last.endpoint, "mqtt://broker:1883");
    }
}
