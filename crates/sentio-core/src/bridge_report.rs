//! The bridge status report v1, on `topics.status` (`sentio-status`), keyed by the bridge's id.
//!
//! A `sentio bridge` in a process of its own publishes one every `bridge.report_every` (and a
//! last one, `"stopped": true`, when it stops); the ETL keeps each bridge's newest in the store,
//! and the dashboard's pipeline page shows it. `docs/messages.md` and
//! `docs/schema/bridge-status.v1.json` describe it.
//!
//! ```json
//! {"v":1,"bridge":"mqtt:sentio-bridge@127.0.0.1:1883","kind":"mqtt","endpoint":"mqtt://127.0.0.1:1883",
//!  "host":"gateway-3","pid":4711,"started_at":"2026-12-03T10:00:00Z","at":"2026-12-03T10:05:00Z",
//!  "every_s":5.0,"stopped":false,"connected":true,"messages":1200,"readings":1200,
//!  "readings_per_s":4.0,"arrival_time":0,"dead_letters":2,"refused":null}
//! ```

use serde::{Deserialize, Serialize};

use crate::time;

/// One bridge's counters at one instant, as it reports them. Fields a later version adds are
/// ignored, so an older ETL keeps a newer bridge's reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BridgeReport {
    /// Schema version: 1.
    pub v: u32,
    /// Which bridge: `mqtt:<client id>@<broker host>:<port>` or `http:<host>@<bind address>`.
    pub bridge: String,
    /// `"mqtt"` or `"http"`.
    pub kind: String,
    /// Where it takes readings from: the broker's URL, or the endpoint's.
    pub endpoint: String,
    /// The machine it runs on, and its process id.
    pub host: String,
    pub pid: u32,
    /// When it started and when it made this report (RFC 3339, its own clock).
    pub started_at: String,
    pub at: String,
    /// How often it reports, in seconds: a report older than a few of these is stale.
    pub every_s: f64,
    /// This is its last report: it stopped.
    pub stopped: bool,
    /// MQTT: whether the broker connection is up. `null` for HTTP.
    pub connected: Option<bool>,
    /// MQTT messages taken in, or HTTP requests answered, since it started.
    pub messages: u64,
    /// Readings published on the bus since it started.
    pub readings: u64,
    /// Readings per second since its previous report.
    pub readings_per_s: f64,
    /// Readings without a timestamp, stamped on arrival.
    pub arrival_time: u64,
    /// Messages (MQTT) or lines (HTTP) sent to the dead-letter topic.
    pub dead_letters: u64,
    /// HTTP: requests refused whole (401, 413, 429, ...). `null` for MQTT.
    pub refused: Option<u64>,
}

/// Why a status message was not a report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadReport {
    #[error("not a bridge status report v1: {0}")]
    Malformed(String),
    #[error("bridge status report has version {0}, this build reads 1")]
    Version(u32),
    #[error("field `at` is {0:?}, expected an RFC 3339 timestamp")]
    BadTime(String),
    #[error("field `bridge` is empty")]
    NoBridge,
}

impl BridgeReport {
    /// The message's bytes (its key is [`BridgeReport::bridge`]).
    pub fn encode(&self) -> Vec<u8> {
        // Strings, numbers and options always serialize.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// A report, and its `at` in nanoseconds, from a message's bytes.
    pub fn decode(bytes: &[u8]) -> Result<(BridgeReport, i64), BadReport> {
        let report: BridgeReport =
            serde_json::from_slice(bytes).map_err(|e| BadReport::Malformed(e.to_string()))?;
        if report.v != 1 {
            return Err(BadReport::Version(report.v));
        }
        if report.bridge.is_empty() {
            return Err(BadReport::NoBridge);
        }
        let at =
            time::parse_rfc3339(&report.at).ok_or_else(|| BadReport::BadTime(report.at.clone()))?;
        Ok((report, at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BridgeReport {
        BridgeReport {
            v: 1,
            bridge: "mqtt:sentio-bridge@127.0.0.1:1883".into(),
            kind: "mqtt".into(),
            endpoint: "mqtt://127.0.0.1:1883".into(),
            host: "gateway-3".into(),
            pid: 4711,
            started_at: "2026-12-03T10:00:00Z".into(),
            at: "2026-12-03T10:05:00Z".into(),
            every_s: 5.0,
            stopped: false,
            connected: Some(true),
            messages: 1200,
            readings: 1200,
            readings_per_s: 4.0,
            arrival_time: 0,
            dead_letters: 2,
            refused: None,
        }
    }

    #[test]
    fn a_report_round_trips_with_its_time() {
        let (back, at) = BridgeReport::decode(&sample().encode()).unwrap();
        assert_eq!(back, sample());
        assert_eq!(at, time::parse_rfc3339("2026-12-03T10:05:00Z").unwrap());
    }

    #[test]
    fn anything_else_is_refused_with_the_reason_and_new_fields_are_ignored() {
        assert!(matches!(BridgeReport::decode(b"not json"), Err(BadReport::Malformed(_))));
        let v2 = BridgeReport { v: 2, ..sample() };
        assert_eq!(BridgeReport::decode(&v2.encode()), Err(BadReport::Version(2)));
        let late = BridgeReport { at: "yesterday".into(), ..sample() };
        assert_eq!(
            BridgeReport::decode(&late.encode()),
            Err(BadReport::BadTime("yesterday".into()))
        );
        let anonymous = BridgeReport { bridge: String::new(), ..sample() };
        assert_eq!(BridgeReport::decode(&anonymous.encode()), Err(BadReport::NoBridge));
        let mut extra: serde_json::Value = serde_json::from_slice(&sample().encode()).unwrap();
        extra["color"] = "red".into();
        assert_eq!(BridgeReport::decode(extra.to_string().as_bytes()).unwrap().0, sample());
        let mut missing: serde_json::Value = serde_json::from_slice(&sample().encode()).unwrap();
        missing.as_object_mut().unwrap().remove("readings");
        let err = BridgeReport::decode(missing.to_string().as_bytes()).unwrap_err();
        assert!(err.to_string().contains("readings"), "{err}");
    }
}
