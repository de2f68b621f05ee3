//! Sliding windows over aligned series, and the time-ordered train / validation / calibration split.

use super::{Scaler, Series};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowSettings {
    /// Frames per window.
    pub window: usize,
    /// Frames between the starts of consecutive windows.
    pub stride: usize,
    /// Windows with more than this share of filled cells are dropped.
    pub max_filled_fraction: f64,
}

/// One window: `window` rows of series `series` from row `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowRef {
    pub series: usize,
    pub start: usize,
    /// Whether a frame of the window carries a ground-truth label.
    pub labelled: bool,
}

/// Which part of the time range a window belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Validation,
    Calibration,
}

/// The time boundaries of the split: `[from, validation)` trains, `[validation, calibration)`
/// validates, `[calibration, to)` calibrates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitPoints {
    pub from_ns: i64,
    pub validation_ns: i64,
    pub calibration_ns: i64,
    pub to_ns: i64,
}

impl SplitPoints {
    pub fn new(from_ns: i64, to_ns: i64, validation: f64, calibration: f64) -> SplitPoints {
        let span = (to_ns - from_ns) as f64;
        let calibration_ns = to_ns - (span * calibration) as i64;
        let validation_ns = calibration_ns - (span * validation) as i64;
        SplitPoints { from_ns, validation_ns, calibration_ns, to_ns }
    }

    /// The split holding all of `[start_ns, end_ns)`, or `None` when it straddles a boundary.
    pub fn of(&self, start_ns: i64, end_ns: i64) -> Option<Split> {
        let within = |a: i64, b: i64| start_ns >= a && end_ns <= b;
        if within(self.from_ns, self.validation_ns) {
            Some(Split::Train)
        } else if within(self.validation_ns, self.calibration_ns) {
            Some(Split::Validation)
        } else if within(self.calibration_ns, self.to_ns) {
            Some(Split::Calibration)
        } else {
            None
        }
    }

    /// Row range of `series` that falls in the training part (for fitting the scaler).
    pub fn train_rows(&self, series: &Series) -> std::ops::Range<usize> {
        let end = (0..series.len()).take_while(|&r| series.ts_ns(r) < self.validation_ns).count();
        0..end
    }
}

/// Every usable window of every series: no hole, not too filled. Labelled windows are returned
/// too (marked), for evaluation; training must skip them.
pub fn cut_windows(all: &[Series], settings: WindowSettings) -> Vec<WindowRef> {
    let t = settings.window;
    let mut out = Vec::new();
    for (si, series) in all.iter().enumerate() {
        let max_filled =
            (settings.max_filled_fraction * (t * series.width) as f64).floor() as usize;
        if series.len() < t {
            continue;
        }
        // Prefix sums make each window's hole, fill and label counts O(1).
        let n = series.len();
        let mut holes = vec![0usize; n + 1];
        let mut filled = vec![0usize; n + 1];
        let mut labels = vec![0usize; n + 1];
        for r in 0..n {
            holes[r + 1] = holes[r] + usize::from(series.has_hole(r));
            filled[r + 1] = filled[r] + series.filled[r].count_ones() as usize;
            labels[r + 1] = labels[r] + usize::from(series.labelled[r]);
        }
        let mut start = 0;
        while start + t <= n {
            let end = start + t;
            if holes[end] == holes[start] && filled[end] - filled[start] <= max_filled {
                out.push(WindowRef { series: si, start, labelled: labels[end] > labels[start] });
            }
            start += settings.stride;
        }
    }
    out
}

/// Copies the windows, standardized, into one `[windows][t][columns]` f32 buffer.
pub fn gather(all: &[Series], windows: &[WindowRef], t: usize, scaler: &Scaler) -> Vec<f32> {
    let mut out = Vec::with_capacity(windows.len() * t * scaler.width());
    for w in windows {
        let series = &all[w.series];
        for row in w.start..w.start + t {
            scaler.transform_into(series.row(row), &mut out);
        }
    }
    out
}

/// Keeps at most `max` of `items`, evenly spaced (all of them when `max` is 0).
pub fn thin<T: Copy>(items: &[T], max: usize) -> Vec<T> {
    if max == 0 || items.len() <= max {
        return items.to_vec();
    }
    (0..max).map(|i| items[i * items.len() / max]).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use sentio_core::DeviceId;

    use super::*;

    fn series(rows: usize) -> Series {
        Series {
            device: DeviceId::new("d").unwrap(),
            first_slot: 0,
            cadence_ns: 10,
            width: 4,
            values: vec![0.0; rows * 4],
            filled: vec![0; rows],
            labelled: vec![false; rows],
        }
    }

    #[test]
    fn windows_skip_holes_and_overfilled_spans_and_mark_labels() {
        let mut s = series(20);
        s.values[5 * 4 + 2] = f64::NAN;
        s.filled[12] = 0b1111;
        s.labelled[17] = true;
        let settings = WindowSettings { window: 4, stride: 2, max_filled_fraction: 0.2 };
        let w = cut_windows(&[s], settings);
        let starts: Vec<_> = w.iter().map(|w| (w.start, w.labelled)).collect();
        // 2..6 and 4..8 hold the hole; 10..14 and 12..16 hold 4 of 16 filled cells (> 3).
        assert_eq!(starts, vec![(0, false), (6, false), (8, false), (14, true), (16, true)]);
    }

    #[test]
    fn split_is_time_ordered_and_drops_straddlers() {
        let p = SplitPoints::new(0, 100, 0.2, 0.1);
        assert_eq!((p.validation_ns, p.calibration_ns), (70, 90));
        assert_eq!(p.of(0, 70), Some(Split::Train));
        assert_eq!(p.of(60, 80), None);
        assert_eq!(p.of(70, 90), Some(Split::Validation));
        assert_eq!(p.of(90, 100), Some(Split::Calibration));
        assert_eq!(p.train_rows(&series(10)), 0..7);
    }

    #[test]
    fn thin_spaces_evenly() {
        assert_eq!(thin(&[0, 1, 2, 3, 4, 5, 6, 7], 4), vec![0, 2, 4, 6]);
        assert_eq!(thin(&[1, 2], 0), vec![1, 2]);
    }
}
