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
    /// Where `ts_ns` came from: the producer (event time), or a bridge's clock because the
    /// device's payload had no timestamp (arrival time). Absent from older messages and rows,
    /// which are event time.
    #[serde(default)]
    pub ts_source: TsSource,
}

/// Where a reading's timestamp came from (the wire's and the store's `ts_source`).
///
/// Only [`TsSource::Arrival`] is ever written out (`"ts_source": "arrival"` in a reading message,
/// `'arrival'` in the `ts_source` column); event time is the absence of the field (NULL in the
/// store), so messages and rows from before the field existed, and every producer that never
/// heard of it, read as event time, and the common case costs nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TsSource {
    /// The event time the producer sent.
    #[default]
    Event,
    /// The time a bridge (MQTT or HTTP) received a payload that carried no timestamp.
    Arrival,
}

impl TsSource {
    /// Both, in order.
    pub const ALL: [TsSource; 2] = [TsSource::Event, TsSource::Arrival];

    /// The name on the wire and in the store: `"event"`, `"arrival"`.
    pub fn as_str(self) -> &'static str {
        match self {
            TsSource::Event => "event",
            TsSource::Arrival => "arrival",
        }
    }

    /// The source of that name, if it is one.
    pub fn parse(name: &str) -> Option<TsSource> {
        TsSource::ALL.into_iter().find(|s| s.as_str() == name)
    }

    pub fn is_arrival(self) -> bool {
        self == TsSource::Arrival
    }

    /// What a message or row writes: `None` for event time (the field is left out), the name for
    /// arrival time.
    pub fn written(self) -> Option<&'static str> {
        self.is_arrival().then_some(self.as_str())
    }
}

impl std::fmt::Display for TsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Reading {
    /// A reading of one of the pump profile's four channels, in its unit.
    pub fn pump(device: DeviceId, kind: SensorKind, ts_ns: i64, value: f64, seq: u64) -> Self {
        Self {
            device,
            sensor: kind.into(),
            unit: kind.into(),
            ts_ns,
            value,
            seq,
            injected: None,
            ts_source: TsSource::Event,
        }
    }
}
