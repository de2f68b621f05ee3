//! Threshold calibration on held-out normal windows.
//!
//! The anomaly score of a window is its mean squared reconstruction error in standardized units.
//! Two ways to turn the calibration split's scores into a threshold:
//!
//! - **percentile**: the `p`-th percentile (linear interpolation between order statistics, as
//!   NumPy's default).
//! - **peaks over threshold** (Siffer et al., KDD 2017): scores above an initial high quantile `u`
//!   follow a generalized Pareto distribution (GPD) by extreme value theory. With the excesses
//!   `y = s - u` (`N_t` of them out of `n` scores) fitted to GPD(σ, ξ), the score exceeded with
//!   probability `q` is
//!
//!   `z_q = u + (σ/ξ)·((q·n/N_t)^(-ξ) - 1)`  (and `u - σ·ln(q·n/N_t)` when ξ = 0).
//!
//!   σ and ξ come from the method of moments on the excesses (mean `m`, variance `v`):
//!   `ξ = (1 - m²/v)/2`, `σ = m·(1 + m²/v)/2`. It needs no optimizer and is stable for the
//!   few hundred excesses a calibration split holds; with fewer than 10 excesses, or excesses with
//!   no spread, it falls back to the percentile method at `1 - q`.
//!
//! Per-sensor statistics (mean, standard deviation and the same percentile of each sensor's own
//! error share) let the detector say which sensor deviated.

use serde::{Deserialize, Serialize};

use sentio_config::ThresholdMethod;

/// What calibration produced; stored with the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// The method that set `threshold` (`percentile` also when POT fell back to it).
    pub method: String,
    /// Window scores above this are anomalous.
    pub threshold: f64,
    /// Calibration windows the threshold was fitted on.
    pub windows: usize,
    /// Share of calibration windows above the threshold.
    pub exceed_fraction: f64,
    /// Score statistics of the calibration windows.
    pub score_mean: f64,
    pub score_std: f64,
    /// Per column (the card's `sensors` order): mean and standard deviation of the column's mean
    /// squared error per window, and its own threshold at the same level.
    pub sensor_mean: Vec<f64>,
    pub sensor_std: Vec<f64>,
    pub sensor_threshold: Vec<f64>,
    /// GPD fit when POT was used: initial threshold u, σ, ξ.
    pub pot: Option<PotFit>,
    /// Per sensor, the longest run of identical consecutive values in the normal windows (the
    /// stuck-sensor check's yardstick, `detect::flat`); absent in models trained before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longest_flat_run: Option<Vec<u32>>,
    /// The factor `threshold` is of the calibrated level (`train.threshold_factor`; 1 for models
    /// trained before it).
    #[serde(default = "one")]
    pub factor: f64,
}

fn one() -> f64 {
    1.0
}

impl Calibration {
    /// The threshold at `factor` times the calibrated level, with the share of the calibration
    /// `scores` above it.
    pub fn scaled(mut self, factor: f64, scores: &[f64]) -> Calibration {
        if factor == self.factor {
            return self;
        }
        self.threshold *= factor / self.factor;
        self.factor = factor;
        let above = scores.iter().filter(|&&s| s > self.threshold).count();
        self.exceed_fraction = above as f64 / scores.len().max(1) as f64;
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PotFit {
    pub initial: f64,
    pub sigma: f64,
    pub xi: f64,
    pub excesses: usize,
    pub risk: f64,
}

/// The `p`-th percentile (0..=100) of `values`, linear interpolation; NaN when empty.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = (p / 100.0).clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (rank - lo as f64)
}

fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

/// Fits the GPD tail above the `quantile` of `scores` and returns the threshold exceeded with
/// probability `risk`, or `None` when the tail is too thin to fit.
pub fn pot(scores: &[f64], quantile: f64, risk: f64) -> Option<(f64, PotFit)> {
    let u = percentile(scores, quantile * 100.0);
    let excesses: Vec<f64> = scores.iter().filter(|&&s| s > u).map(|s| s - u).collect();
    if excesses.len() < 10 {
        return None;
    }
    let (m, sd) = mean_std(&excesses);
    let v = sd * sd;
    if !(v > 0.0 && m > 0.0) {
        return None;
    }
    let r = m * m / v;
    let xi = 0.5 * (1.0 - r);
    let sigma = 0.5 * m * (1.0 + r);
    let ratio = risk * scores.len() as f64 / excesses.len() as f64;
    let z = if xi.abs() < 1e-9 {
        u - sigma * ratio.ln()
    } else {
        u + sigma / xi * (ratio.powf(-xi) - 1.0)
    };
    let fit = PotFit { initial: u, sigma, xi, excesses: excesses.len(), risk };
    z.is_finite().then_some((z.max(u), fit))
}

/// Calibrates on the window scores and per-column errors (`sensor[i]` for window `i`, each of
/// `width` columns).
pub fn calibrate(
    scores: &[f64],
    sensor: &[Vec<f64>],
    width: usize,
    method: ThresholdMethod,
    percentile_level: f64,
    pot_quantile: f64,
    pot_risk: f64,
) -> Calibration {
    let (threshold, method_name, fit, level) = match method {
        ThresholdMethod::Pot => match pot(scores, pot_quantile, pot_risk) {
            Some((z, fit)) => (z, "pot", Some(fit), 100.0 * (1.0 - pot_risk)),
            None => {
                let level = 100.0 * (1.0 - pot_risk);
                (percentile(scores, level), "percentile", None, level)
            }
        },
        ThresholdMethod::Percentile => {
            (percentile(scores, percentile_level), "percentile", None, percentile_level)
        }
    };
    let (score_mean, score_std) = mean_std(scores);
    let mut sensor_mean = vec![0.0; width];
    let mut sensor_std = vec![0.0; width];
    let mut sensor_threshold = vec![0.0; width];
    for s in 0..width {
        let column: Vec<f64> = sensor.iter().map(|e| e[s]).collect();
        (sensor_mean[s], sensor_std[s]) = mean_std(&column);
        sensor_threshold[s] = percentile(&column, level);
    }
    let above = scores.iter().filter(|&&s| s > threshold).count();
    Calibration {
        method: method_name.to_owned(),
        threshold,
        windows: scores.len(),
        exceed_fraction: above as f64 / scores.len().max(1) as f64,
        score_mean,
        score_std,
        sensor_mean,
        sensor_std,
        sensor_threshold,
        pot: fit,
        longest_flat_run: None,
        factor: 1.0,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn percentile_interpolates_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 50.0), 2.5);
        assert_eq!(percentile(&v, 100.0), 4.0);
        assert!((percentile(&v, 90.0) - 3.7).abs() < 1e-12);
    }

    #[test]
    fn pot_recovers_an_exponential_tail() {
        // Scores with an exponential distribution (ξ = 0, σ = 1): P(S > z) = e^-z, so the score
        // exceeded with probability 1e-4 is ln(1e4) ≈ 9.21.
        let n = 200_000;
        let scores: Vec<f64> =
            (0..n).map(|i| -((1.0 - (i as f64 + 0.5) / n as f64).ln())).collect();
        let (z, fit) = pot(&scores, 0.98, 1e-4).unwrap();
        assert!(fit.xi.abs() < 0.05, "xi {}", fit.xi);
        assert!((z - 1e4f64.ln()).abs() < 0.2, "z {z}");
    }

    #[test]
    fn calibration_reports_per_sensor_levels() {
        let scores: Vec<f64> = (0..1000).map(f64::from).collect();
        let sensor: Vec<Vec<f64>> = scores.iter().map(|&s| vec![s, 0.0, 1.0, s / 2.0]).collect();
        let c = calibrate(&scores, &sensor, 4, ThresholdMethod::Percentile, 99.0, 0.98, 1e-3);
        assert!((c.threshold - 989.01).abs() < 1e-9);
        assert_eq!(c.sensor_std[1], 0.0);
        assert!((c.sensor_threshold[3] - 494.505).abs() < 1e-9);
        assert!((c.exceed_fraction - 0.010).abs() < 1e-9);
    }
}
