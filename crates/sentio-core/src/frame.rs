//! Readings of one device aligned on one timestamp.

use serde::{Deserialize, Serialize};

use crate::{DeviceId, Reading, SensorKind};

/// The four sensors of one device at one timestamp, in [`SensorKind::ALL`] order. A sensor that did
/// not report in the frame's slot is `None`: the model decides how to fill it, the frame does not
/// guess.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    pub device: DeviceId,
    /// Start of the slot, nanoseconds since the Unix epoch.
    pub ts_ns: i64,
    pub values: [Option<f64>; 4],
}

impl Frame {
    pub fn empty(device: DeviceId, ts_ns: i64) -> Self {
        Self { device, ts_ns, values: [None; 4] }
    }

    pub fn get(&self, sensor: SensorKind) -> Option<f64> {
        self.values[sensor.index()]
    }

    /// Puts a reading in its column; a later reading for the same slot replaces an earlier one.
    /// A reading of a channel that is not one of the four has no column and is left out.
    pub fn set(&mut self, reading: &Reading) {
        if let Some(kind) = reading.sensor.kind() {
            self.values[kind.index()] = Some(reading.value);
        }
    }

    pub fn is_complete(&self) -> bool {
        self.values.iter().all(Option::is_some)
    }
}
