//! The alert message, version 1, for `anomaly-alerts` and `sentio detect --json` (see
//! docs/messages.md and docs/schema/alert.v1.json).

use bytes::Bytes;
use sentio_core::time::format_rfc3339;
use sentio_core::{Alert, AlertState, Channel, Severity};
use serde::{Deserialize, Serialize};

/// One step of an alert's life (`opened`, `updated`, `resolved`; same `alert_id` throughout),
/// keyed by device. Times are RFC 3339 UTC; `sensors` lists every channel of the model (the
/// pump's four, or another profile's), the largest share of the reconstruction error (relative
/// to each channel's normal level) first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertV1 {
    pub v: u32,
    pub alert_id: String,
    pub state: AlertState,
    pub device: String,
    pub window: WindowV1,
    pub score: f64,
    pub threshold: f64,
    pub severity: Severity,
    pub sensors: Vec<SensorShareV1>,
    pub model: ModelV1,
    pub detected_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowV1 {
    pub start: String,
    pub end: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorShareV1 {
    pub sensor: Channel,
    pub share: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelV1 {
    pub name: String,
    pub version: String,
}

impl From<&Alert> for AlertV1 {
    fn from(a: &Alert) -> Self {
        let mut sensors: Vec<SensorShareV1> = a
            .sensor_share
            .iter()
            .map(|(sensor, share)| SensorShareV1 { sensor: sensor.clone(), share: *share })
            .collect();
        // Stable: equal shares keep display order.
        sensors.sort_by(|x, y| y.share.total_cmp(&x.share));
        AlertV1 {
            v: 1,
            alert_id: a.alert_id.clone(),
            state: a.state,
            device: a.device.to_string(),
            window: WindowV1 {
                start: format_rfc3339(a.window_start_ns),
                end: format_rfc3339(a.window_end_ns),
            },
            score: a.score,
            threshold: a.threshold,
            severity: a.severity,
            sensors,
            model: ModelV1 { name: a.model_name.clone(), version: a.model_version.clone() },
            detected_at: format_rfc3339(a.detected_at_ns),
        }
    }
}

impl AlertV1 {
    /// (key, payload) for the bus: keyed by device, so one device's alerts stay in order.
    pub fn to_record(&self) -> (Bytes, Bytes) {
        // Strings and finite numbers always serialize (scores are finite: the engine's
        // errors of finite inputs).
        let payload = serde_json::to_vec(self).unwrap_or_default();
        (Bytes::from(self.device.clone()), Bytes::from(payload))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sentio_core::{DeviceId, SensorKind};

    #[test]
    fn the_top_sensor_comes_first_and_times_are_rfc3339() {
        let alert = Alert {
            alert_id: "pump-01-3-1795478464000000000".into(),
            device: DeviceId::new("pump-01").unwrap(),
            state: AlertState::Opened,
            window_start_ns: 1_795_478_400_000_000_000,
            window_end_ns: 1_795_478_464_000_000_000,
            score: 0.5,
            threshold: 0.01,
            severity: Severity::Critical,
            sensor_share: SensorKind::ALL
                .into_iter()
                .map(Channel::from)
                .zip([0.1, 0.6, 0.2, 0.1])
                .collect(),
            model_name: "sentio-lstm-ae".into(),
            model_version: "3".into(),
            detected_at_ns: 1_795_478_465_000_000_000,
        };
        let m = AlertV1::from(&alert);
        assert_eq!(m.sensors[0].sensor, SensorKind::Vibration);
        assert_eq!(m.sensors[1].sensor, SensorKind::Pressure);
        assert_eq!(m.window.start, "2026-11-24T00:00:00Z");
        let (key, payload) = m.to_record();
        assert_eq!(&key[..], b"pump-01");
        let back: AlertV1 = serde_json::from_slice(&payload).unwrap();
        assert_eq!(back, m);
    }
}
