//! One sensor value.

use serde::{Deserialize, Serialize};

use crate::{AnomalyKind, DeviceId, SensorKind};

/// One value of one sensor of one device at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub device: DeviceId,
    pub sensor: SensorKind,
    /// Event time, nanoseconds since the Unix epoch (UTC).
    pub ts_ns: i64,
    /// Always finite.
    pub value: f64,
    /// Per (device, sensor) sequence number, starting at 0 when the producer starts.
    pub seq: u64,
    /// The anomaly the simulator injected into this reading, if any (ground truth).
    pub injected: Option<AnomalyKind>,
}
