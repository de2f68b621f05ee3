//! One sensor value.

use serde::{Deserialize, Serialize};

use crate::{AnomalyKind, Channel, DeviceId, SensorKind, Unit};

/// One value of one channel of one device at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub device: DeviceId,
    /// The channel (the wire's `sensor` field).
    pub sensor: Channel,
    /// The unit `value` is in, as the producer sent it.
    pub unit: Unit,
    /// Event time, nanoseconds since the Unix epoch (UTC).
    pub ts_ns: i64,
    /// Always finite.
    pub value: f64,
    /// Per (device, sensor) sequence number, starting at 0 when the producer starts.
    pub seq: u64,
    /// The anomaly the simulator injected into this reading, if any (ground truth).
    pub injected: Option<AnomalyKind>,
}

impl Reading {
    /// A reading of one of the pump profile's four channels, in its unit.
    pub fn pump(device: DeviceId, kind: SensorKind, ts_ns: i64, value: f64, seq: u64) -> Self {
        Self { device, sensor: kind.into(), unit: kind.into(), ts_ns, value, seq, injected: None }
    }
}
