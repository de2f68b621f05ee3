//! The stuck-sensor check: a sensor that repeats exactly the same value for much longer than it
//! ever did in the training data has stopped measuring.
//!
//! An autoencoder cannot see this: a pressure sensor stuck at 2.5 bar reports a perfectly normal
//! value, and the window it ends reconstructs well. So beside the reconstruction error, each
//! window is checked for runs of identical values at its end. What is "much longer" is learned:
//! training records each sensor's longest run of identical consecutive values in its normal
//! windows (a coarse sensor repeats itself often, a noisy one almost never), and a run counts as
//! stuck from
//!
//! `limit = max(2 × longest, longest + fill_limit + 2)` frames
//!
//! (twice the longest normal run, and never within reach of the frames the aligner fills in by
//! repeating a value). A sensor whose limit does not fit in one window is not checked: its
//! training data repeats itself too much to tell.
//!
//! A stuck window scores `threshold × (1 + run / limit)` (twice the threshold when the run just
//! reached the limit, growing with it; capped by the window length) if that is more than its
//! reconstruction score, and the stuck sensor is named first, with at least half of the error
//! share: a stuck sensor is a certainty, while the reconstruction error of a window around it
//! often lands on its neighbours (a pressure stuck while the load changes looks to the
//! autoencoder like vibration that does not fit the pressure).

/// The longest run of identical consecutive values of each column in `frames` (row-major,
/// `width` columns; 1 for a column that changes every frame, 0 for no frames). NaN (a hole)
/// breaks a run.
pub fn longest_runs(frames: &[f64], width: usize) -> Vec<u32> {
    let mut longest = vec![0u32; width];
    let mut run = vec![0u32; width];
    let mut previous: Option<&[f64]> = None;
    for frame in frames.chunks_exact(width.max(1)) {
        for s in 0..width {
            let same = previous.is_some_and(|p| frame[s] == p[s]);
            run[s] = if same { run[s] + 1 } else { 1 };
            longest[s] = longest[s].max(run[s]);
        }
        previous = Some(frame);
    }
    longest
}

/// The run of identical values of each column that ends at the last frame.
pub fn trailing_runs(frames: &[f64], width: usize) -> Vec<u32> {
    let rows: Vec<&[f64]> = frames.chunks_exact(width.max(1)).collect();
    let Some(last) = rows.last() else {
        return vec![0; width];
    };
    (0..width)
        .map(|s| {
            rows.iter().rev().take_while(|f| f[s] == last[s]).count().try_into().unwrap_or(u32::MAX)
        })
        .collect()
}

/// Per-column run limits learned from training; 0 turns the check off for a column.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlatCheck {
    pub limit: Vec<u32>,
}

impl FlatCheck {
    /// From the longest normal runs seen in training; `None` (a model trained before the check
    /// existed) turns it off.
    pub fn new(longest: Option<&[u32]>, window: usize, fill_limit: u32) -> FlatCheck {
        let Some(longest) = longest else {
            return FlatCheck::default();
        };
        let window = u32::try_from(window).unwrap_or(u32::MAX);
        let limit = longest
            .iter()
            .map(|&l| {
                let limit = (2 * l).max(l + fill_limit + 2);
                if limit < window { limit } else { 0 }
            })
            .collect();
        FlatCheck { limit }
    }

    /// The check without the columns whose weight is zero (`detect.sensor_weights`: a sensor
    /// known to be broken is ignored by this check too).
    pub fn weighted(&self, weights: &[f64]) -> FlatCheck {
        FlatCheck {
            limit: self
                .limit
                .iter()
                .zip(weights)
                .map(|(&l, &w)| if w > 0.0 { l } else { 0 })
                .collect(),
        }
    }

    /// The stuck column of the window ending at the last of `frames` and how far past its limit
    /// the run is (run / limit ≥ 1), the longest relative run if several are stuck.
    pub fn stuck(&self, frames: &[f64]) -> Option<(usize, f64)> {
        if self.limit.iter().all(|&l| l == 0) {
            return None;
        }
        let runs = trailing_runs(frames, self.limit.len());
        (0..self.limit.len())
            .filter(|&s| self.limit[s] > 0 && runs[s] >= self.limit[s])
            .map(|s| (s, f64::from(runs[s]) / f64::from(self.limit[s])))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// Applies the check to one scored window: raises the score and names the stuck column.
    pub fn apply(
        &self,
        frames: &[f64],
        threshold: f64,
        score: f64,
        mut sensor_error: Vec<f64>,
    ) -> (f64, Vec<f64>) {
        let Some((s, ratio)) = self.stuck(frames) else {
            return (score, sensor_error);
        };
        let others: f64 =
            sensor_error.iter().enumerate().filter(|&(o, _)| o != s).map(|(_, e)| e).sum();
        sensor_error[s] = sensor_error[s].max(others).max(f64::MIN_POSITIVE);
        (score.max(threshold * (1.0 + ratio)), sensor_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(pressure: &[f64]) -> Vec<f64> {
        pressure
            .iter()
            .enumerate()
            .flat_map(|(i, &p)| [i as f64, i as f64 * 2.0, p, 50.0])
            .collect()
    }

    #[test]
    fn runs_count_identical_neighbours() {
        let f = frames(&[1.0, 2.0, 2.0, 2.0, 3.0, 3.0]);
        assert_eq!(longest_runs(&f, 4), [1, 1, 3, 6]);
        assert_eq!(trailing_runs(&f, 4), [1, 1, 2, 6]);
        assert_eq!(longest_runs(&[], 4), [0; 4]);
        assert_eq!(trailing_runs(&[], 4), [0; 4]);
        let hole = frames(&[f64::NAN, f64::NAN]);
        assert_eq!(longest_runs(&hole, 4)[2], 1, "a hole never repeats");
        // Any width: two columns, the second stuck.
        assert_eq!(longest_runs(&[1.0, 5.0, 2.0, 5.0, 3.0, 5.0], 2), [1, 3]);
    }

    #[test]
    fn limits_follow_the_training_runs_and_leave_out_what_repeats_too_much() {
        let check = FlatCheck::new(Some(&[1, 3, 10, 40]), 64, 3);
        assert_eq!(check.limit, [6, 8, 20, 0]);
        assert!(FlatCheck::new(None, 64, 3).stuck(&frames(&[2.0; 64])).is_none());
    }

    #[test]
    fn a_stuck_sensor_raises_the_score_and_takes_the_share() {
        let check = FlatCheck { limit: vec![0, 0, 8, 0] };
        let mut p: Vec<f64> = (0..56).map(|i| 2.0 + 0.01 * f64::from(i % 7)).collect();
        p.extend([2.5; 7]);
        let normal = vec![0.25, 0.5, 0.3, 0.25];
        // Seven equal values: one short of the limit, nothing changes.
        assert_eq!(check.apply(&frames(&p), 1.0, 0.5, normal.clone()), (0.5, normal.clone()));
        p.push(2.5);
        let (score, error) = check.apply(&frames(&p), 1.0, 0.5, normal.clone());
        assert_eq!(
            (score, error),
            (2.0, vec![0.25, 0.5, 1.0, 0.25]),
            "named first, half the share"
        );
        p.extend([2.5; 8]);
        assert_eq!(check.apply(&frames(&p), 1.0, 0.5, normal).0, 3.0, "twice the limit");
        // A reconstruction score above the flat one stays; the stuck sensor is still named first.
        let loud = vec![0.25, 9.0, 0.3, 0.25];
        assert_eq!(check.apply(&frames(&p), 1.0, 7.0, loud), (7.0, vec![0.25, 9.0, 9.5, 0.25]));
        // A sensor whose own error is already the larger half keeps it.
        let own = vec![0.25, 0.5, 5.0, 0.25];
        assert_eq!(check.apply(&frames(&p), 1.0, 0.5, own.clone()).1, own);
    }
}
