//! The kinds of anomaly: the pump's, one per example in the mission's table; the generic ones the
//! simulator injects on any channel; and `labelled`, ground truth imported with real data.

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
    /// Any channel jumps far above its range for a short while.
    Spike,
    /// Any channel falls far below its range.
    Drop,
    /// Any channel freezes at one value: a stuck sensor.
    Flat,
    /// Any channel becomes strong random noise around its level.
    Noise,
    /// Any channel's level moves to a new, wrong operating point and stays there.
    LevelShift,
    /// A period marked anomalous by an imported label column (`sentio import --label-column`):
    /// the kind and the channel are not known.
    Labelled,
}

impl AnomalyKind {
    /// The pump's kinds, the mission's table, in the order of `simulator.anomaly_mix`.
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

    /// The kinds the simulator can inject on any channel of any profile.
    pub const GENERIC: [AnomalyKind; 5] = [
        AnomalyKind::Spike,
        AnomalyKind::Drop,
        AnomalyKind::Flat,
        AnomalyKind::Noise,
        AnomalyKind::LevelShift,
    ];

    /// Every kind: the pump's ([`AnomalyKind::ALL`]), the generic ones, then `labelled`.
    pub const EVERY: [AnomalyKind; 14] = {
        let mut every = [AnomalyKind::Labelled; 14];
        let mut i = 0;
        while i < Self::ALL.len() {
            every[i] = Self::ALL[i];
            i += 1;
        }
        let mut j = 0;
        while j < Self::GENERIC.len() {
            every[Self::ALL.len() + j] = Self::GENERIC[j];
            j += 1;
        }
        every
    };

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
            AnomalyKind::Spike => "spike",
            AnomalyKind::Drop => "drop",
            AnomalyKind::Flat => "flat",
            AnomalyKind::Noise => "noise",
            AnomalyKind::LevelShift => "level_shift",
            AnomalyKind::Labelled => "labelled",
        }
    }

    /// The pump sensor a pump fault shows on; `None` for the generic and labelled kinds, whose
    /// channel is the tagged reading's own (or, for `labelled`, unknown).
    pub fn sensor(self) -> Option<SensorKind> {
        match self {
            AnomalyKind::TemperatureSpike | AnomalyKind::TemperatureDrop => {
                Some(SensorKind::Temperature)
            }
            AnomalyKind::VibrationSpike | AnomalyKind::VibrationNoise => {
                Some(SensorKind::Vibration)
            }
            AnomalyKind::PressureDrop | AnomalyKind::PressureFlat => Some(SensorKind::Pressure),
            AnomalyKind::HumidityHigh | AnomalyKind::HumidityLow => Some(SensorKind::Humidity),
            AnomalyKind::Spike
            | AnomalyKind::Drop
            | AnomalyKind::Flat
            | AnomalyKind::Noise
            | AnomalyKind::LevelShift
            | AnomalyKind::Labelled => None,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::EVERY.into_iter().find(|k| k.as_str() == s)
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
            assert_eq!(AnomalyKind::ALL.iter().filter(|k| k.sensor() == Some(s)).count(), 2);
        }
        assert!(AnomalyKind::GENERIC.iter().all(|k| k.sensor().is_none()));
        for k in AnomalyKind::EVERY {
            assert_eq!(AnomalyKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_string(&k).ok(), Some(format!("\"{k}\"")));
        }
    }
}
