//! Readings to frames at a fixed cadence, with explicit filling of missing values.

use sentio_core::{DeviceId, Reading, SensorKind};

/// How readings become frames.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlignSettings {
    /// Slot length, nanoseconds (> 0).
    pub cadence_ns: i64,
    /// A missing sensor repeats its last value for at most this many consecutive slots.
    pub fill_limit: u32,
}

/// One device's frames over a range of slots: row `i` is slot `first_slot + i`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub device: DeviceId,
    /// Slot index of the first row (slot `k` starts at `k * cadence_ns`).
    pub first_slot: i64,
    pub cadence_ns: i64,
    /// Row-major `[rows][4]` in [`SensorKind::ALL`] order, raw units; NaN marks a hole.
    pub values: Vec<[f64; 4]>,
    /// Per row, bit `s` set when sensor `s` was filled from an earlier slot.
    pub filled: Vec<u8>,
    /// Per row, whether any reading in the slot carried a ground-truth anomaly label.
    pub labelled: Vec<bool>,
}

impl Series {
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Start of row `i`, nanoseconds since the epoch.
    pub fn ts_ns(&self, row: usize) -> i64 {
        (self.first_slot + row as i64).saturating_mul(self.cadence_ns)
    }

    /// Whether row `i` has a hole (a sensor with no value, observed or filled).
    pub fn has_hole(&self, row: usize) -> bool {
        self.values[row].iter().any(|v| v.is_nan())
    }
}

/// Fills missing sensors of consecutive frames from the last observed value, within a limit.
#[derive(Debug, Clone, Default)]
pub struct Filler {
    last: [Option<f64>; 4],
    /// Consecutive slots each sensor has been filled for.
    age: [u32; 4],
}

impl Filler {
    /// Completes one slot's raw values: returns the frame (NaN for a hole) and the filled mask.
    pub fn fill(&mut self, raw: [Option<f64>; 4], limit: u32) -> ([f64; 4], u8) {
        let mut out = [f64::NAN; 4];
        let mut filled = 0u8;
        for s in 0..4 {
            match raw[s] {
                Some(v) => {
                    out[s] = v;
                    self.last[s] = Some(v);
                    self.age[s] = 0;
                }
                None => {
                    self.age[s] = self.age[s].saturating_add(1);
                    if let Some(v) = self.last[s].filter(|_| self.age[s] <= limit) {
                        out[s] = v;
                        filled |= 1 << s;
                    }
                }
            }
        }
        (out, filled)
    }
}

/// The slot holding `ts_ns`.
pub fn slot_of(ts_ns: i64, cadence_ns: i64) -> i64 {
    ts_ns.div_euclid(cadence_ns)
}

/// Builds one device's series from readings given in time order (later readings of a sensor in
/// a slot replace earlier ones), over a fixed range of slots.
#[derive(Debug, Clone)]
pub struct SeriesBuilder {
    device: DeviceId,
    first_slot: i64,
    cadence_ns: i64,
    from_ns: i64,
    to_ns: i64,
    raw: Vec<[f64; 4]>,
    labelled: Vec<bool>,
}

impl SeriesBuilder {
    /// Covers the slots of `[from_ns, to_ns)`.
    pub fn new(device: DeviceId, from_ns: i64, to_ns: i64, cadence_ns: i64) -> SeriesBuilder {
        let c = cadence_ns.max(1);
        let first = slot_of(from_ns, c);
        let end = if to_ns > from_ns { slot_of(to_ns - 1, c) + 1 } else { first };
        let rows = usize::try_from(end - first).unwrap_or(0);
        SeriesBuilder {
            device,
            first_slot: first,
            cadence_ns: c,
            from_ns,
            to_ns,
            raw: vec![[f64::NAN; 4]; rows],
            labelled: vec![false; rows],
        }
    }

    /// Puts one reading in its slot; readings outside the range are ignored.
    pub fn push(&mut self, r: &Reading) {
        if r.ts_ns < self.from_ns || r.ts_ns >= self.to_ns {
            return;
        }
        let Ok(row) = usize::try_from(slot_of(r.ts_ns, self.cadence_ns) - self.first_slot) else {
            return;
        };
        // Another machine's channel has no column in the pump's frame (not modelled).
        let Some(kind) = r.sensor.kind() else {
            return;
        };
        if let Some(cells) = self.raw.get_mut(row) {
            cells[kind.index()] = r.value;
            self.labelled[row] |= r.injected.is_some();
        }
    }

    /// Fills short gaps (see [`Filler`]) and returns the series.
    pub fn finish(self, fill_limit: u32) -> Series {
        let mut filler = Filler::default();
        let mut values = Vec::with_capacity(self.raw.len());
        let mut filled = Vec::with_capacity(self.raw.len());
        for cells in &self.raw {
            let (frame, mask) = filler.fill(cells.map(|v| (!v.is_nan()).then_some(v)), fill_limit);
            values.push(frame);
            filled.push(mask);
        }
        Series {
            device: self.device,
            first_slot: self.first_slot,
            cadence_ns: self.cadence_ns,
            values,
            filled,
            labelled: self.labelled,
        }
    }
}

/// Aligns one device's readings (any order) over the slots covering `[from_ns, to_ns)`.
pub fn align(
    device: DeviceId,
    readings: &[Reading],
    from_ns: i64,
    to_ns: i64,
    settings: AlignSettings,
) -> Series {
    let mut order: Vec<&Reading> = readings.iter().collect();
    order.sort_by_key(|r| r.ts_ns);
    let mut builder = SeriesBuilder::new(device, from_ns, to_ns, settings.cadence_ns);
    for r in order {
        builder.push(r);
    }
    builder.finish(settings.fill_limit)
}

/// The sensor order of every frame, for the model artifact.
pub fn sensor_order() -> [&'static str; 4] {
    SensorKind::ALL.map(SensorKind::as_str)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn reading(sensor: SensorKind, ts_s: i64, value: f64, label: bool) -> Reading {
        Reading {
            injected: label.then_some(sentio_core::AnomalyKind::TemperatureSpike),
            ..Reading::pump(DeviceId::new("d").unwrap(), sensor, ts_s * 1_000_000_000, value, 0)
        }
    }

    #[test]
    fn fills_within_the_limit_then_leaves_a_hole() {
        let mut rs = vec![];
        for s in SensorKind::ALL {
            rs.push(reading(s, 0, 1.0, false));
        }
        // Temperature alone continues; the others go silent.
        for t in 1..6 {
            rs.push(reading(SensorKind::Temperature, t, t as f64, t == 2));
        }
        let settings = AlignSettings { cadence_ns: 1_000_000_000, fill_limit: 2 };
        let s = align(DeviceId::new("d").unwrap(), &rs, 0, 6_000_000_000, settings);
        assert_eq!(s.len(), 6);
        assert_eq!(s.values[1][1], 1.0);
        assert_eq!(s.filled[1], 0b1110);
        assert!(!s.has_hole(2));
        assert!(s.has_hole(3));
        assert_eq!(s.values[5][0], 5.0);
        assert_eq!(s.labelled, vec![false, false, true, false, false, false]);
    }

    #[test]
    fn the_latest_reading_in_a_slot_wins() {
        let mut a = reading(SensorKind::Pressure, 0, 1.0, false);
        a.ts_ns = 100;
        let mut b = reading(SensorKind::Pressure, 0, 2.0, false);
        b.ts_ns = 900;
        let settings = AlignSettings { cadence_ns: 1_000, fill_limit: 0 };
        let s = align(DeviceId::new("d").unwrap(), &[b, a], 0, 1_000, settings);
        assert_eq!(s.values[0][2], 2.0);
    }
}
