//! Per-sensor standardization, fitted on the training split only.

use serde::{Deserialize, Serialize};

use super::Series;

/// `z = (x - mean) / std` per column, in the frame's column order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaler {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

/// A standard deviation below this (a sensor that never moved) scales by 1 instead.
const MIN_STD: f64 = 1e-9;

impl Scaler {
    /// Fits on the observed (not filled), unlabelled values of `rows` in each series, where
    /// `rows(series_index)` gives the row range of the training split. Welford's algorithm, so
    /// millions of values lose no precision. `None` when a column has fewer than two values.
    pub fn fit<'a>(
        parts: impl IntoIterator<Item = (&'a Series, std::ops::Range<usize>)>,
    ) -> Option<Scaler> {
        let mut n: Vec<u64> = Vec::new();
        let mut mean: Vec<f64> = Vec::new();
        let mut m2: Vec<f64> = Vec::new();
        for (series, rows) in parts {
            let width = series.width;
            if n.len() < width {
                n.resize(width, 0);
                mean.resize(width, 0.0);
                m2.resize(width, 0.0);
            }
            for row in rows {
                if series.labelled[row] {
                    continue;
                }
                for (s, &x) in series.row(row).iter().enumerate() {
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
        if n.is_empty() || n.iter().any(|&k| k < 2) {
            return None;
        }
        let std = (0..n.len())
            .map(|s| {
                let sd = (m2[s] / (n[s] - 1) as f64).sqrt();
                if sd.is_finite() && sd > MIN_STD { sd } else { 1.0 }
            })
            .collect();
        Some(Scaler { mean, std })
    }

    /// Columns it scales.
    pub fn width(&self) -> usize {
        self.mean.len()
    }

    /// Appends the standardized `frame` to `out`.
    pub fn transform_into(&self, frame: &[f64], out: &mut Vec<f32>) {
        out.extend(
            frame
                .iter()
                .zip(self.mean.iter().zip(&self.std))
                .map(|(x, (m, s))| ((x - m) / s) as f32),
        );
    }

    pub fn transform(&self, frame: &[f64]) -> Vec<f32> {
        let mut out = Vec::with_capacity(frame.len());
        self.transform_into(frame, &mut out);
        out
    }

    pub fn inverse(&self, z: &[f32]) -> Vec<f64> {
        z.iter()
            .zip(self.mean.iter().zip(&self.std))
            .map(|(z, (m, s))| f64::from(*z) * s + m)
            .collect()
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
            width: 4,
            values: [[1.0; 4], [3.0; 4], [100.0; 4], [1000.0; 4], [5.0, 5.0, 5.0, 2.0]].concat(),
            filled: vec![0, 0, 0b1111, 0, 0],
            labelled: vec![false, false, false, true, false],
        };
        let s = Scaler::fit([(&series, 0..5)]).unwrap();
        assert_eq!(s.mean, [3.0, 3.0, 3.0, 2.0]);
        assert_eq!(s.std[0], 2.0);
        let z = s.transform(&[5.0; 4]);
        assert_eq!(z.len(), 4);
        assert_eq!(z[0], 1.0);
        assert_eq!(s.inverse(&z)[0], 5.0);
    }
}
