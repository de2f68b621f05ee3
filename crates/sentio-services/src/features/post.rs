//! What the scorer does around the model, recorded in the model card so that training, the batch
//! replay and the streaming detector do exactly the same:
//!
//! - **Detrending** ([`Detrender`]): the chosen columns enter the model as their value minus the
//!   mean of the `detrend_frames` frames before it (slots `t - detrend_frames .. t`, holes left
//!   out; 0 when there is none yet). Causal: a frame's input depends on earlier frames only, so a
//!   live device and a replay of the same history give the same inputs. Which columns: decided at
//!   training ([`slowness`]).
//! - **Weighing** ([`PostProcess::weigh`]): a window's score is the mean of its columns' errors,
//!   each times the column's weight (all 1 unless `train.detrend_weight` lowers the detrended
//!   ones). The threshold is calibrated on the same weighted scores.
//! - **Smoothing** ([`Smoother`]): a window's score is the mean of the scores of the windows that
//!   end within `smooth` strides of it (itself included): a trailing mean over time, so a gap in
//!   the data shortens it rather than reaching back across the gap. The threshold is calibrated on
//!   the same means.
//!
//! Both keep per-device state; [`PostProcess::warmup_frames`] says how much history before a
//! range a replay reads so that its first windows see the state a running detector would have.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::Series;

/// The scorer's pre- and post-processing, part of the model card. The default (a model trained
/// before it existed) does neither.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostProcess {
    /// The columns (by index in the card's `sensors`) the model sees detrended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detrend: Vec<usize>,
    /// Frames of the trailing mean detrended columns subtract.
    #[serde(default)]
    pub detrend_frames: usize,
    /// Windows (at the training stride) of the trailing mean of the scores; 1: none.
    #[serde(default = "one")]
    pub smooth: usize,
    /// Frames between the starts of two training windows: the smoothing's unit.
    #[serde(default = "one")]
    pub stride: usize,
    /// Each column's weight in the window score (the card's `sensors` order); empty: every
    /// column counts 1 and the score is the model's own mean squared error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weights: Vec<f64>,
}

fn one() -> usize {
    1
}

impl Default for PostProcess {
    fn default() -> Self {
        PostProcess {
            detrend: Vec::new(),
            detrend_frames: 0,
            smooth: 1,
            stride: 1,
            weights: Vec::new(),
        }
    }
}

impl PostProcess {
    /// Whether the model's inputs differ from the measured values.
    pub fn detrends(&self) -> bool {
        !self.detrend.is_empty() && self.detrend_frames > 0
    }

    /// Frames before a frame that its model input depends on: the detrending's trailing mean
    /// (0 without detrending).
    pub fn detrend_history(&self) -> usize {
        if self.detrends() { self.detrend_frames } else { 0 }
    }

    /// Whether `other` gives the model the same inputs (the same columns detrended over the same
    /// frames, or none): frames built for one serve the other.
    pub fn same_inputs(&self, other: &PostProcess) -> bool {
        fn key(p: &PostProcess) -> Option<(&[usize], usize)> {
            p.detrends().then_some((&p.detrend, p.detrend_frames))
        }
        key(self) == key(other)
    }

    /// Frames of history the state needs before a window's first frame: the detrending's
    /// trailing mean, and the windows the smoothing averages.
    pub fn warmup_frames(&self) -> usize {
        self.detrend_history() + (self.smooth.max(1) - 1) * self.stride.max(1)
    }

    /// A window's score from the model's `score` (its mean squared error) and its columns'
    /// `errors`: the mean of the errors each times its weight, or `score` itself when every
    /// column counts 1.
    pub fn weigh(&self, score: f64, errors: &[f64]) -> f64 {
        if self.weights.is_empty() {
            return score;
        }
        let sum: f64 = errors.iter().zip(&self.weights).map(|(e, w)| e * w).sum();
        sum / errors.len().max(1) as f64
    }

    /// Whether column `c`'s error counts in the score at all (a profile's `score_weight` of 0
    /// models a channel without alarming on it).
    pub fn scores(&self, c: usize) -> bool {
        self.weights.get(c).is_none_or(|&w| w > 0.0)
    }

    /// A fresh detrender for one device's frames.
    pub fn detrender(&self) -> Detrender {
        Detrender::new(
            if self.detrends() { self.detrend.clone() } else { Vec::new() },
            self.detrend_frames,
        )
    }

    /// A fresh smoother for one device's scores, for frames of `cadence_ns`.
    pub fn smoother(&self, cadence_ns: i64) -> Smoother {
        let span = (self.smooth.max(1) * self.stride.max(1)) as i64;
        Smoother::new(self.smooth.max(1), span.saturating_mul(cadence_ns))
    }

    /// `series` as the model sees it: the detrended columns replaced (holes stay holes). `None`
    /// when nothing is detrended (the series is the input as it is).
    pub fn model_input(&self, series: &Series) -> Option<Series> {
        if !self.detrends() {
            return None;
        }
        let mut detrender = self.detrender();
        let mut values = Vec::with_capacity(series.values.len());
        for row in 0..series.len() {
            detrender.apply(series.first_slot + row as i64, series.row(row), &mut values);
        }
        Some(Series { values, ..series.clone() })
    }

    /// Every series as the model sees it ([`PostProcess::model_input`]); `None` when nothing is
    /// detrended.
    pub fn model_inputs(&self, series: &[Series]) -> Option<Vec<Series>> {
        self.detrends().then(|| series.iter().filter_map(|s| self.model_input(s)).collect())
    }
}

/// One device's trailing means of its detrended columns.
#[derive(Debug, Clone)]
pub struct Detrender {
    columns: Vec<usize>,
    frames: i64,
    /// The detrended columns' values of recent frames (NaN: a hole), by slot, oldest first.
    history: VecDeque<(i64, Vec<f64>)>,
}

impl Detrender {
    fn new(columns: Vec<usize>, frames: usize) -> Detrender {
        Detrender {
            columns,
            frames: i64::try_from(frames).unwrap_or(i64::MAX),
            history: VecDeque::new(),
        }
    }

    /// Whether it changes any column.
    pub fn is_active(&self) -> bool {
        !self.columns.is_empty()
    }

    /// Appends the model's input for the frame of `slot` (`raw`, one value per column) to `out`,
    /// then remembers the frame. Slots come in increasing order.
    pub fn apply(&mut self, slot: i64, raw: &[f64], out: &mut Vec<f64>) {
        let start = out.len();
        out.extend_from_slice(raw);
        if self.columns.is_empty() {
            return;
        }
        let oldest = slot.saturating_sub(self.frames);
        while self.history.front().is_some_and(|(s, _)| *s < oldest) {
            self.history.pop_front();
        }
        for (k, &c) in self.columns.iter().enumerate() {
            let Some(&x) = raw.get(c) else { continue };
            if x.is_nan() {
                continue;
            }
            // Summed afresh each time, so that the input depends on the frames in the window
            // only, not on how long the device has been running.
            let (mut sum, mut n) = (0.0, 0u32);
            for (_, v) in &self.history {
                if !v[k].is_nan() {
                    sum += v[k];
                    n += 1;
                }
            }
            out[start + c] = if n == 0 { 0.0 } else { x - sum / f64::from(n) };
        }
        let kept: Vec<f64> =
            self.columns.iter().map(|&c| raw.get(c).copied().unwrap_or(f64::NAN)).collect();
        if kept.iter().any(|v| !v.is_nan()) {
            self.history.push_back((slot, kept));
        }
    }
}

/// One device's trailing mean of scores.
#[derive(Debug, Clone)]
pub struct Smoother {
    n: usize,
    span_ns: i64,
    /// Recent windows' end times and scores, oldest first.
    recent: VecDeque<(i64, f64)>,
}

impl Smoother {
    fn new(n: usize, span_ns: i64) -> Smoother {
        Smoother { n, span_ns, recent: VecDeque::with_capacity(n + 1) }
    }

    /// The smoothed score of the window ending at `end_ns` with `score` (windows in end order):
    /// the mean over it and the earlier windows ending less than the span before it. A NaN score
    /// stays NaN and is not remembered.
    pub fn smooth(&mut self, end_ns: i64, score: f64) -> f64 {
        if self.n <= 1 || score.is_nan() {
            return score;
        }
        let oldest = end_ns.saturating_sub(self.span_ns);
        while self.recent.front().is_some_and(|(t, _)| *t <= oldest) || self.recent.len() >= self.n
        {
            self.recent.pop_front();
        }
        self.recent.push_back((end_ns, score));
        self.recent.iter().map(|(_, s)| s).sum::<f64>() / self.recent.len() as f64
    }
}

/// A standard deviation below this counts as none.
const MIN_STD: f64 = 1e-9;

/// How slowly each column moves over `rows` of each series: pooled over the series, its variance
/// over half the variance of its frame-to-frame differences. Noise around a level scores about 1
/// (the ratio is `1 / (1 - lag-1 autocorrelation)`); a column that drifts or wanders scores far
/// higher (a straight ramp: infinity). A constant column scores 0. Holes and filled cells are
/// left out (a difference needs two observed neighbours).
pub fn slowness<'a>(
    parts: impl IntoIterator<Item = (&'a Series, std::ops::Range<usize>)>,
    width: usize,
) -> Vec<f64> {
    // Per column: sums over the series of (n, sum of squared deviations) for values and
    // differences, each series about its own mean.
    let mut values = vec![(0.0f64, 0.0f64); width];
    let mut diffs = vec![(0.0f64, 0.0f64); width];
    for (series, rows) in parts {
        for c in 0..width.min(series.width) {
            let observed = |r: usize| {
                let x = series.row(r)[c];
                (!x.is_nan() && series.filled[r] & (1 << c) == 0).then_some(x)
            };
            let x: Vec<f64> = rows.clone().filter_map(observed).collect();
            let d: Vec<f64> = rows
                .clone()
                .zip(rows.clone().skip(1))
                .filter_map(|(a, b)| Some(observed(b)? - observed(a)?))
                .collect();
            for (acc, v) in [(&mut values[c], &x), (&mut diffs[c], &d)] {
                let n = v.len() as f64;
                if n == 0.0 {
                    continue;
                }
                let mean = v.iter().sum::<f64>() / n;
                acc.0 += n;
                acc.1 += v.iter().map(|x| (x - mean).powi(2)).sum::<f64>();
            }
        }
    }
    (0..width)
        .map(|c| {
            let var = values[c].1 / values[c].0.max(1.0);
            let half_diff = diffs[c].1 / diffs[c].0.max(1.0) / 2.0;
            if var <= MIN_STD * MIN_STD {
                0.0
            } else if half_diff <= MIN_STD * MIN_STD {
                f64::INFINITY
            } else {
                var / half_diff
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use sentio_core::DeviceId;

    use super::*;

    fn series(width: usize, values: &[f64]) -> Series {
        let rows = values.len() / width;
        Series {
            device: DeviceId::new("d").unwrap(),
            first_slot: 100,
            cadence_ns: 1,
            width,
            values: values.to_vec(),
            filled: vec![0; rows],
            labelled: vec![false; rows],
        }
    }

    #[test]
    fn detrending_subtracts_the_mean_of_the_frames_before() {
        // Columns a = 1, 2, 3, 10, 10 and b = 5 throughout; two frames of trailing mean.
        let s = series(2, &[1.0, 5.0, 2.0, 5.0, 3.0, 5.0, 10.0, 5.0, 10.0, 5.0]);
        let both = PostProcess { detrend: vec![0, 1], detrend_frames: 2, ..Default::default() };
        // Row 0 has nothing before it; row 1: 2 - 1; row 2: 3 - (1+2)/2; row 3: 10 - (2+3)/2;
        // row 4: 10 - (3+10)/2.
        assert_eq!(
            both.model_input(&s).unwrap().values,
            [0.0, 0.0, 1.0, 0.0, 1.5, 0.0, 7.5, 0.0, 3.5, 0.0]
        );
        let only_a = PostProcess { detrend: vec![0], ..both.clone() };
        assert_eq!(only_a.model_input(&s).unwrap().row(3), [7.5, 5.0]);
        assert!(PostProcess::default().model_input(&s).is_none());
    }

    #[test]
    fn detrending_reaches_back_in_time_not_in_frames() {
        // A hole (row 1) is left out of the mean, and a gap in the slots (a live device that went
        // quiet) counts as time: the frame of slot 7 has only slot 6 within 2 slots before it.
        let post = PostProcess { detrend: vec![0], detrend_frames: 2, ..Default::default() };
        let mut d = post.detrender();
        let mut out = Vec::new();
        for (slot, x) in [(0, 1.0), (1, f64::NAN), (2, 3.0), (6, 5.0), (7, 9.0)] {
            d.apply(slot, &[x], &mut out);
        }
        // Slot 2: only slot 0 (1.0) is within reach and observed; slot 6: nothing; slot 7: 5.
        assert_eq!(out[0], 0.0);
        assert!(out[1].is_nan());
        assert_eq!(&out[2..], [2.0, 0.0, 4.0]);
    }

    #[test]
    fn smoothing_is_a_trailing_mean_over_time() {
        let post = PostProcess { smooth: 2, stride: 1, ..Default::default() };
        let mut s = post.smoother(10);
        let got: Vec<f64> = [(10, 1.0), (20, 3.0), (30, 5.0), (40, 7.0)]
            .iter()
            .map(|&(t, x)| s.smooth(t, x))
            .collect();
        assert_eq!(got, [1.0, 2.0, 4.0, 6.0]);
        // A gap longer than the span starts afresh.
        assert_eq!(s.smooth(100, 1.0), 1.0);
        assert!(s.smooth(110, f64::NAN).is_nan());
        assert_eq!(s.smooth(120, 3.0), 3.0, "the NaN is not remembered, and 100 is out of reach");
        let mut off = PostProcess::default().smoother(10);
        assert_eq!(off.smooth(10, 4.0), 4.0);
        assert_eq!(PostProcess { smooth: 30, stride: 1, ..post }.warmup_frames(), 29);
    }

    #[test]
    fn weighing_scales_each_column_and_leaves_an_unweighted_card_alone() {
        let errors = [1.0, 2.0, 4.0, 8.0];
        // No weights: the model's own score, bit for bit (not the mean recomputed).
        assert_eq!(PostProcess::default().weigh(3.75 + 1e-9, &errors), 3.75 + 1e-9);
        let post = PostProcess { weights: vec![1.0, 0.5, 0.25, 0.0], ..Default::default() };
        assert_eq!(post.weigh(3.75, &errors), (1.0 + 1.0 + 1.0 + 0.0) / 4.0);
        // The card keeps no weights when it has none, and reads a card without them.
        let json = serde_json::to_string(&PostProcess::default()).unwrap();
        assert!(!json.contains("weights"), "{json}");
        let read: PostProcess = serde_json::from_str(r#"{"smooth": 3}"#).unwrap();
        assert!(read.weights.is_empty());
    }

    #[test]
    fn slow_columns_are_told_from_noise_on_the_given_rows_only() {
        // a: a ramp (slow); b: alternating noise (fast); c: constant. Rows 6.. are not looked
        // at: b ramps there, which must not matter.
        let mut v = Vec::new();
        for i in 0..10 {
            let b = if i < 6 { [1.0, -1.0][i % 2] } else { 10.0 * i as f64 };
            v.extend([i as f64, b, 4.0]);
        }
        let s = series(3, &v);
        let got = slowness([(&s, 0..6)], 3);
        assert_eq!(got[0], f64::INFINITY);
        // b: variance 1; differences -2, 2, -2, 2, -2 (mean -0.4, variance 3.84, half 1.92).
        assert!((got[1] - 1.0 / 1.92).abs() < 1e-12, "{}", got[1]);
        assert_eq!(got[2], 0.0);
        // a with row 1 at 1.5: 0, 1.5, 2, 3, 4, 5 (variance 2.70139), differences 1.5, 0.5, 1,
        // 1, 1 (variance 0.1, half 0.05): 54.03.
        let mut v2 = v.clone();
        v2[3] = 1.5;
        let a = slowness([(&series(3, &v2), 0..6)], 3)[0];
        assert!((a - 54.0278).abs() < 1e-3, "{a}");
    }
}
