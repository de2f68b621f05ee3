//! A lock-free latency histogram: log-scaled buckets (8 per doubling, so a quantile is within
//! 9 % of the truth) from 1 µs to about 2.3 hours, shared between the detector and its readers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Buckets per doubling.
const PER_OCTAVE: usize = 8;
/// 1 µs .. 2^33 µs.
const OCTAVES: usize = 33;
const BUCKETS: usize = PER_OCTAVE * OCTAVES + 2;

#[derive(Debug)]
pub struct Histogram {
    counts: Box<[AtomicU64]>,
    total: AtomicU64,
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            total: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }
}

/// Bucket `i` (for `i >= 1`) holds values in `[lower(i), lower(i + 1))`; bucket 0 is below 1 µs.
fn bucket(us: f64) -> usize {
    if us < 1.0 {
        return 0;
    }
    let i = (us.log2() * PER_OCTAVE as f64).floor() as usize + 1;
    i.min(BUCKETS - 1)
}

fn lower_us(i: usize) -> f64 {
    if i == 0 { 0.0 } else { 2f64.powf((i - 1) as f64 / PER_OCTAVE as f64) }
}

impl Histogram {
    pub fn record(&self, latency: Duration) {
        let us = latency.as_secs_f64() * 1e6;
        self.counts[bucket(us)].fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    pub fn mean(&self) -> Option<Duration> {
        let n = self.count();
        (n > 0).then(|| Duration::from_micros(self.sum_us.load(Ordering::Relaxed) / n))
    }

    /// The `q` quantile (0..=1), as the geometric middle of its bucket; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let mid = if i == 0 { 0.5 } else { (lower_us(i) * lower_us(i + 1)).sqrt() };
                return Some(Duration::from_secs_f64(mid / 1e6));
            }
        }
        None
    }

    /// Non-empty buckets as (upper bound, count), for display.
    pub fn buckets(&self) -> Vec<(Duration, u64)> {
        self.counts
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let n = c.load(Ordering::Relaxed);
                (n > 0).then(|| (Duration::from_secs_f64(lower_us(i + 1) / 1e6), n))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn quantiles_are_within_a_bucket() {
        let h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        for ms in 1..=1000u64 {
            h.record(Duration::from_millis(ms));
        }
        let within = |got: Duration, want_ms: f64| {
            let r = got.as_secs_f64() * 1e3 / want_ms;
            assert!((0.91..1.1).contains(&r), "{got:?} vs {want_ms} ms");
        };
        within(h.quantile(0.5).unwrap(), 500.0);
        within(h.quantile(0.99).unwrap(), 990.0);
        within(h.quantile(0.0).unwrap(), 1.0);
        assert_eq!(h.count(), 1000);
        assert_eq!(h.buckets().iter().map(|b| b.1).sum::<u64>(), 1000);
        within(h.mean().unwrap(), 500.5);
    }

    #[test]
    fn extremes_land_in_the_end_buckets() {
        let h = Histogram::default();
        h.record(Duration::ZERO);
        h.record(Duration::from_secs(1_000_000));
        assert_eq!(h.count(), 2);
        assert!(h.quantile(0.0).unwrap() < Duration::from_micros(1));
        assert!(h.quantile(1.0).unwrap() > Duration::from_secs(3_600));
    }
}
