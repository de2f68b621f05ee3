//! The kinds of anomaly the mission names, one per example in its table.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::SensorKind;

/// A kind of fault. The simulator injects them and tags every affected reading with its kind, which
/// is the ground truth for evaluation (real devices never send it; training never reads it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// Temperature jumps above 50 °C.
    TemperatureSpike,
    /// Temperature falls below 0 °C.
    TemperatureDrop,
    /// Vibration RMS stays far above its range for a while.
    VibrationSpike,
    /// Vibration RMS becomes strong random noise.
    VibrationNoise,
    /// Pressure falls suddenly towards zero.
    PressureDrop,
    /// Pressure freezes at one value: a stuck sensor.
    PressureFlat,
    /// Humidity jumps above 95 %.
    HumidityHigh,
    /// Humidity drops below 10 %.
    HumidityLow,
}

impl AnomalyKind {
    pub const ALL: [AnomalyKind; 8] = [
        AnomalyKind::TemperatureSpike,
        AnomalyKind::TemperatureDrop,
        AnomalyKind::VibrationSpike,
        AnomalyKind::VibrationNoise,
        AnomalyKind::PressureDrop,
        AnomalyKind::PressureFlat,
        AnomalyKind::HumidityHigh,
        AnomalyKind::HumidityLow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::TemperatureSpike => "temperature_spike",
            AnomalyKind::TemperatureDrop => "temperature_drop",
            AnomalyKind::VibrationSpike => "vibration_spike",
            AnomalyKind::VibrationNoise => "vibration_noise",
            AnomalyKind::PressureDrop => "pressure_drop",
            AnomalyKind::PressureFlat => "pressure_flat",
            AnomalyKind::HumidityHigh => "humidity_high",
            AnomalyKind::HumidityLow => "humidity_low",
        }
    }

    /// The sensor this fault shows on.
    pub fn sensor(self) -> SensorKind {
        match self {
            AnomalyKind::TemperatureSpike | AnomalyKind::TemperatureDrop => SensorKind::Temperature,
            AnomalyKind::VibrationSpike | AnomalyKind::VibrationNoise => SensorKind::Vibration,
            AnomalyKind::PressureDrop | AnomalyKind::PressureFlat => SensorKind::Pressure,
            AnomalyKind::HumidityHigh | AnomalyKind::HumidityLow => SensorKind::Humidity,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sensor_has_two_kinds_and_names_round_trip() {
        for s in SensorKind::ALL {
            assert_eq!(AnomalyKind::ALL.iter().filter(|k| k.sensor() == s).count(), 2);
        }
        for k in AnomalyKind::ALL {
            assert_eq!(AnomalyKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_string(&k).ok(), Some(format!("\"{k}\"")));
        }
    }
}
