//! Detection quality from per-point predictions and labels in time order.
//!
//! - **Point-wise**: the confusion counts over points, precision `TP/(TP+FP)`, recall
//!   `TP/(TP+FN)`, F1 (their harmonic mean), and SKAB's false alarm rate `FAR = FP/(FP+TN)` and
//!   missed alarm rate `MAR = FN/(FN+TP)`. A ratio whose denominator is zero is 0.
//! - **Events**: an event is a maximal run of labelled points. It is *detected* when at least one
//!   predicted point falls inside it; its *delay* is the time of its first predicted point minus
//!   the time of its first point. Event recall is detected events over events.
//! - **Alarms**: a maximal run of predicted points; it is *true* when it overlaps an event. Event
//!   precision is true alarms over alarms.
//!
//! Several files (or devices) are pooled as SKAB does: their counts are summed ([`Tally::add`])
//! and the ratios computed once from the sums, so a long file weighs more than a short one.

use std::ops::Range;

use serde::Serialize;

use sentio_core::time::NANOS_PER_SEC;

/// Point-wise confusion counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Confusion {
    pub tp: u64,
    pub fp: u64,
    pub tn: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
}

/// `num / den`, or 0 when `den` is 0.
fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 { 0.0 } else { num as f64 / den as f64 }
}

impl Confusion {
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }

    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }

    pub fn f1(&self) -> f64 {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }

    /// False alarm rate, a fraction (SKAB reports it in %).
    pub fn far(&self) -> f64 {
        ratio(self.fp, self.fp + self.tn)
    }

    /// Missed alarm rate, a fraction.
    pub fn mar(&self) -> f64 {
        ratio(self.fn_, self.fn_ + self.tp)
    }

    pub fn add(&mut self, other: &Confusion) {
        self.tp += other.tp;
        self.fp += other.fp;
        self.tn += other.tn;
        self.fn_ += other.fn_;
    }
}

/// One labelled event and whether it was caught.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventOutcome {
    /// Its points, as indices into the evaluated sequence.
    #[serde(skip)]
    pub points: Range<usize>,
    pub start_ns: i64,
    pub end_ns: i64,
    pub detected: bool,
    /// Seconds from the event's first point to its first predicted point.
    pub delay_s: Option<f64>,
}

/// Everything needed to compute the scores, summable over files.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub confusion: Confusion,
    pub events: u64,
    pub detected: u64,
    pub alarms: u64,
    pub true_alarms: u64,
    /// Detection delay of each detected event, seconds.
    pub delays_s: Vec<f64>,
}

/// The scores of a [`Tally`], rates as fractions except `far_pct` and `mar_pct`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub far_pct: f64,
    pub mar_pct: f64,
    #[serde(flatten)]
    pub confusion: Confusion,
    pub events: u64,
    pub events_detected: u64,
    pub event_recall: f64,
    pub alarms: u64,
    pub true_alarms: u64,
    pub event_precision: f64,
    pub delay_mean_s: Option<f64>,
    pub delay_median_s: Option<f64>,
    pub delay_max_s: Option<f64>,
}

impl Tally {
    /// Pools `other` into `self` (SKAB's aggregation over files).
    pub fn add(&mut self, other: &Tally) {
        self.confusion.add(&other.confusion);
        self.events += other.events;
        self.detected += other.detected;
        self.alarms += other.alarms;
        self.true_alarms += other.true_alarms;
        self.delays_s.extend_from_slice(&other.delays_s);
    }

    pub fn scores(&self) -> Scores {
        let c = &self.confusion;
        let mut delays = self.delays_s.clone();
        delays.sort_by(f64::total_cmp);
        let n = delays.len();
        let median = match n {
            0 => None,
            _ if n % 2 == 1 => Some(delays[n / 2]),
            _ => Some((delays[n / 2 - 1] + delays[n / 2]) / 2.0),
        };
        Scores {
            precision: c.precision(),
            recall: c.recall(),
            f1: c.f1(),
            far_pct: 100.0 * c.far(),
            mar_pct: 100.0 * c.mar(),
            confusion: *c,
            events: self.events,
            events_detected: self.detected,
            event_recall: ratio(self.detected, self.events),
            alarms: self.alarms,
            true_alarms: self.true_alarms,
            event_precision: ratio(self.true_alarms, self.alarms),
            delay_mean_s: (n > 0).then(|| delays.iter().sum::<f64>() / n as f64),
            delay_median_s: median,
            delay_max_s: delays.last().copied(),
        }
    }
}

/// The maximal runs of `true` in `flags`.
pub fn runs(flags: &[bool]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &f) in flags.iter().enumerate() {
        match (f, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push(s..i);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(s..flags.len());
    }
    out
}

/// Scores `predicted` against `labels`, point `i` being at `ts_ns[i]` (time order). The three
/// slices must have the same length.
pub fn evaluate(
    predicted: &[bool],
    labels: &[bool],
    ts_ns: &[i64],
) -> anyhow::Result<(Tally, Vec<EventOutcome>)> {
    anyhow::ensure!(
        predicted.len() == labels.len() && labels.len() == ts_ns.len(),
        "predictions ({}), labels ({}) and timestamps ({}) differ in length",
        predicted.len(),
        labels.len(),
        ts_ns.len()
    );
    let mut tally = Tally::default();
    for (&p, &l) in predicted.iter().zip(labels) {
        let c = &mut tally.confusion;
        match (p, l) {
            (true, true) => c.tp += 1,
            (true, false) => c.fp += 1,
            (false, false) => c.tn += 1,
            (false, true) => c.fn_ += 1,
        }
    }
    let mut outcomes = Vec::new();
    for event in runs(labels) {
        let first = event.clone().find(|&i| predicted[i]);
        let start_ns = ts_ns[event.start];
        let delay_s = first.map(|i| (ts_ns[i] - start_ns) as f64 / NANOS_PER_SEC as f64);
        tally.events += 1;
        if let Some(d) = delay_s {
            tally.detected += 1;
            tally.delays_s.push(d);
        }
        outcomes.push(EventOutcome {
            end_ns: ts_ns[event.end - 1],
            points: event,
            start_ns,
            detected: first.is_some(),
            delay_s,
        });
    }
    for alarm in runs(predicted) {
        tally.alarms += 1;
        if labels[alarm].iter().any(|&l| l) {
            tally.true_alarms += 1;
        }
    }
    Ok((tally, outcomes))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn bits(s: &str) -> Vec<bool> {
        s.bytes().map(|b| b == b'1').collect()
    }

    /// One point per second from 0.
    fn seconds(n: usize) -> Vec<i64> {
        (0..n as i64).map(|i| i * NANOS_PER_SEC).collect()
    }

    #[test]
    fn point_counts_and_rates_by_hand() {
        //            labels  0011110000111
        //         predicted  0001100110011
        let labels = bits("0011110000111");
        let predicted = bits("0001100110011");
        let (t, events) = evaluate(&predicted, &labels, &seconds(13)).unwrap();
        // TP: 3,4,11,12 = 4; FP: 7,8 = 2; FN: 2,5,10 = 3; TN: 0,1,6,9 = 4.
        assert_eq!(t.confusion, Confusion { tp: 4, fp: 2, tn: 4, fn_: 3 });
        let s = t.scores();
        assert!((s.precision - 4.0 / 6.0).abs() < 1e-12);
        assert!((s.recall - 4.0 / 7.0).abs() < 1e-12);
        assert!((s.f1 - 8.0 / 13.0).abs() < 1e-12);
        assert!((s.far_pct - 100.0 * 2.0 / 6.0).abs() < 1e-9);
        assert!((s.mar_pct - 100.0 * 3.0 / 7.0).abs() < 1e-9);
        // Events 2..6 (caught at 3: 1 s late) and 10..13 (caught at 11: 1 s late).
        assert_eq!((s.events, s.events_detected), (2, 2));
        assert_eq!(events[0].points, 2..6);
        assert_eq!(events[1].delay_s, Some(1.0));
        // Alarms 3..5 (true), 7..9 (false), 11..13 (true).
        assert_eq!((s.alarms, s.true_alarms), (3, 2));
        assert!((s.event_precision - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(s.delay_mean_s, Some(1.0));
        assert_eq!(s.delay_max_s, Some(1.0));
    }

    #[test]
    fn a_missed_event_has_no_delay_and_delays_use_timestamps() {
        let labels = bits("0111000111110");
        let predicted = bits("0000000000110");
        // Irregular time: the second event starts at 70 s, its first predicted point is at 100 s.
        let ts: Vec<i64> = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120]
            .iter()
            .map(|s| s * NANOS_PER_SEC)
            .collect();
        let (t, events) = evaluate(&predicted, &labels, &ts).unwrap();
        assert!(!events[0].detected);
        assert_eq!(events[0].delay_s, None);
        assert_eq!(events[1].delay_s, Some(30.0));
        let s = t.scores();
        assert_eq!(s.event_recall, 0.5);
        assert_eq!(s.event_precision, 1.0);
        assert_eq!((s.delay_mean_s, s.delay_median_s), (Some(30.0), Some(30.0)));
    }

    #[test]
    fn all_ones_and_all_zeros_predictors() {
        let labels = bits("0001111000");
        let (ones, _) = evaluate(&[true; 10], &labels, &seconds(10)).unwrap();
        let s = ones.scores();
        assert_eq!((s.precision, s.recall, s.far_pct, s.mar_pct), (0.4, 1.0, 100.0, 0.0));
        assert!((s.f1 - 2.0 * 0.4 / 1.4).abs() < 1e-12);
        assert_eq!((s.alarms, s.true_alarms), (1, 1));
        let (zeros, _) = evaluate(&[false; 10], &labels, &seconds(10)).unwrap();
        let s = zeros.scores();
        assert_eq!(
            (s.precision, s.recall, s.f1, s.far_pct, s.mar_pct),
            (0.0, 0.0, 0.0, 0.0, 100.0)
        );
        assert_eq!((s.event_precision, s.delay_mean_s), (0.0, None));
    }

    #[test]
    fn pooling_sums_counts_before_the_ratios() {
        // File a: TP 1, FP 3. File b: TP 3, FN 1. Pooled precision 4/7, not the mean of 1/4, 1.
        let (a, _) = evaluate(&bits("1111"), &bits("0001"), &seconds(4)).unwrap();
        let (b, _) = evaluate(&bits("0111"), &bits("1111"), &seconds(4)).unwrap();
        let mut pooled = Tally::default();
        pooled.add(&a);
        pooled.add(&b);
        assert_eq!(pooled.confusion, Confusion { tp: 4, fp: 3, tn: 0, fn_: 1 });
        let s = pooled.scores();
        assert!((s.precision - 4.0 / 7.0).abs() < 1e-12);
        assert_eq!((s.events, s.events_detected), (2, 2));
        // Delays 0 s (file a) and 1 s (file b): median of an even count is the midpoint.
        assert_eq!(s.delay_median_s, Some(0.5));
        assert_eq!(s.delay_max_s, Some(1.0));
    }

    #[test]
    fn lengths_must_agree() {
        assert!(evaluate(&[true], &[true, false], &seconds(2)).is_err());
    }

    #[test]
    fn runs_find_maximal_stretches() {
        assert_eq!(runs(&bits("0110111")), vec![1..3, 4..7]);
        assert_eq!(runs(&bits("")), Vec::<Range<usize>>::new());
    }
}
