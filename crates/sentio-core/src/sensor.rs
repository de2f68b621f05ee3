//! The four signals every device reports.

use std::fmt;
use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

/// A kind of sensor. The order of [`SensorKind::ALL`] is the column order of a [`crate::Frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SensorKind {
    /// Temperature in degrees Celsius.
    Temperature,
    /// Vibration RMS.
    Vibration,
    /// Pressure in bar.
    Pressure,
    /// Relative humidity in percent.
    Humidity,
}

impl SensorKind {
    pub const ALL: [SensorKind; 4] = [
        SensorKind::Temperature,
        SensorKind::Vibration,
        SensorKind::Pressure,
        SensorKind::Humidity,
    ];

    /// The name used on the wire, in tables and in files.
    pub fn as_str(self) -> &'static str {
        match self {
            SensorKind::Temperature => "temperature",
            SensorKind::Vibration => "vibration",
            SensorKind::Pressure => "pressure",
            SensorKind::Humidity => "humidity",
        }
    }

    /// The unit written in every message.
    pub fn unit(self) -> &'static str {
        match self {
            SensorKind::Temperature => "°C",
            SensorKind::Vibration => "RMS",
            SensorKind::Pressure => "bar",
            SensorKind::Humidity => "%",
        }
    }

    /// The range a healthy machine stays in (the mission's table).
    pub fn typical_range(self) -> RangeInclusive<f64> {
        match self {
            SensorKind::Temperature => 15.0..=40.0,
            SensorKind::Vibration => 0.0..=100.0,
            SensorKind::Pressure => 1.0..=5.0,
            SensorKind::Humidity => 30.0..=80.0,
        }
    }

    /// Position in [`SensorKind::ALL`] and in a frame.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The sensor whose value in `values` (in [`SensorKind::ALL`] order) is largest, the first
    /// on ties: e.g. the one with the largest share of a reconstruction error.
    pub fn largest(values: &[f64; 4]) -> SensorKind {
        Self::ALL[(0..4).fold(0, |best, s| if values[s] > values[best] { s } else { best })]
    }
}

impl fmt::Display for SensorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_index_matches_all() {
        for (i, k) in SensorKind::ALL.into_iter().enumerate() {
            assert_eq!(SensorKind::parse(k.as_str()), Some(k));
            assert_eq!(k.index(), i);
            assert!(k.typical_range().start() < k.typical_range().end());
        }
        assert_eq!(SensorKind::parse("voltage"), None);
    }
}
