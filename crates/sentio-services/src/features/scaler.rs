//! Per-sensor standardization, fitted on the training split only.

use serde::{Deserialize, Serialize};

use super::Series;

/// `z = (x - mean) / std` per sensor, in [`sentio_core::SensorKind::ALL`] order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaler {
    pub mean: [f64; 4],
    pub std: [f64; 4],
}

/// A standard deviation below this (a sensor that never moved) scales by 1 instead.
const MIN_STD: f64 = 1e-9;

impl Scaler {
    /// Fits on the observed (not filled), unlabelled values of `rows` in each series, where
    /// `rows(series_index)` gives the row range of the training split. Welford's algorithm, so
    /// millions of values lose no precision.
    pub fn fit<'a>(
        parts: impl IntoIterator<Item = (&'a Series, std::ops::Range<usize>)>,
    ) -> Option<Scaler> {
        let mut n = [0u64; 4];
        let mut mean = [0.0f64; 4];
        let mut m2 = [0.0f64; 4];
        for (series, rows) in parts {
            for row in rows {
                if series.labelled[row] {
                    continue;
                }
                for s in 0..4 {
                    let x = series.values[row][s];
                    if x.is_nan() || series.filled[row] & (1 << s) != 0 {
                        continue;
                    }
                    n[s] += 1;
                    let d = x - mean[s];
                    mean[s] += d / n[s] as f64;
                    m2[s] += d * (x - mean[s]);
                }
            }
        }
        if n.iter().any(|&k| k < 2) {
            return None;
        }
        let std = std::array::from_fn(|s| {
            let sd = (m2[s] / (n[s] - 1) as f64).sqrt();
            if sd.is_finite() && sd > MIN_STD { sd } else { 1.0 }
        });
        Some(Scaler { mean, std })
    }

    pub fn transform(&self, frame: &[f64; 4]) -> [f32; 4] {
        std::array::from_fn(|s| ((frame[s] - self.mean[s]) / self.std[s]) as f32)
    }

    pub fn inverse(&self, z: &[f32; 4]) -> [f64; 4] {
        std::array::from_fn(|s| f64::from(z[s]) * self.std[s] + self.mean[s])
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use sentio_core::DeviceId;

    use super::*;

    #[test]
    fn fits_observed_normal_values_only() {
        let series = Series {
            device: DeviceId::new("d").unwrap(),
            first_slot: 0,
            cadence_ns: 1,
            values: vec![[1.0; 4], [3.0; 4], [100.0; 4], [1000.0; 4], [5.0, 5.0, 5.0, 2.0]],
            filled: vec![0, 0, 0b1111, 0, 0],
            labelled: vec![false, false, false, true, false],
        };
        let s = Scaler::fit([(&series, 0..5)]).unwrap();
        assert_eq!(s.mean, [3.0, 3.0, 3.0, 2.0]);
        assert_eq!(s.std[0], 2.0);
        let z = s.transform(&[5.0; 4]);
        assert_eq!(z[0], 1.0);
        assert_eq!(s.inverse(&z)[0], 5.0);
    }
}
