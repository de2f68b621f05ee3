//! The generic anomaly injector: the faults of any channel, for devices of every profile but the
//! pump (whose table is [`super::anomaly`]'s, unchanged).
//!
//! Episodes are scheduled as the pump's are (`simulator.anomalies`: at most one at a time per
//! device, `rate_per_hour` of them per hour in the long run, each `min_duration` to
//! `max_duration` long); each one's kind is drawn by `simulator.anomalies.generic_mix`, and its
//! channel uniformly among the profile's. It alters that channel only, and every reading it alters
//! carries `injected = Some(kind)`.
//!
//! What each kind does to its channel, whose healthy range is `lo .. hi` (span `w`), while active
//! (values rounded to the channel's resolution):
//!
//! | kind | value |
//! | --- | --- |
//! | spike | `hi` + 50-100 % of `w`, noise 3 % of `w`, never below `hi + 0.25 w`; short: its length is drawn from the first quarter of the duration range |
//! | drop | `lo` - 50-100 % of `w`, noise 3 % of `w`, never above `lo - 0.25 w` |
//! | flat | exactly the channel's last healthy value before the episode, every sample |
//! | noise | the healthy value + N(0, 25-40 % of `w`) |
//! | level_shift | the healthy value + an offset of 40-60 % of `w`, up or down, the same for the whole episode |

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use sentio_config::SimulatorConfig;
use sentio_core::AnomalyKind;
use serde::{Deserialize, Serialize};

use super::anomaly::{cumulative, draw_gap_ns, draw_kind, duration_ns};
use super::generic::{Span, domain};
use super::model::{device_rng, normal, uniform};

/// A spike's length is drawn from this first share of `[min_duration, max_duration]`.
const SPIKE_SHARE: f64 = 0.25;
/// Spike and drop: how far outside the range the level lies, and the bound the value never
/// crosses back over (fractions of the span).
const OUTSIDE: (f64, f64) = (0.5, 1.0);
const OUTSIDE_BOUND: f64 = 0.25;
const OUTSIDE_NOISE: f64 = 0.03;
const NOISE_SIGMA: (f64, f64) = (0.25, 0.4);
const SHIFT: (f64, f64) = (0.4, 0.6);

/// One episode in progress.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Episode {
    kind: AnomalyKind,
    /// The channel it alters, by its position in the profile.
    channel: usize,
    /// The first timestamp no longer in the episode.
    end_ns: i64,
    /// The kind's level: the spike's or drop's, the noise sigma, the stuck value or the offset.
    level: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum State {
    /// Injection is off (rate 0 or no generic kind with a positive weight).
    Off,
    /// Waiting for the first sample to schedule the first episode.
    Unscheduled,
    Idle {
        next_start_ns: i64,
    },
    Active(Episode),
}

/// Injects generic anomaly episodes into one device's channels.
#[derive(Debug, Clone)]
pub struct GenericInjector {
    rng: ChaCha8Rng,
    mean_gap_ns: f64,
    min_gap_ns: i64,
    min_duration_ns: i64,
    max_duration_ns: i64,
    /// Cumulative mix weights in `AnomalyKind::GENERIC` order.
    cumulative: [f64; 5],
    spans: Vec<Span>,
    state: State,
    /// The healthy values of the previous sample (what `flat` sticks to).
    last_healthy: Option<Vec<f64>>,
}

/// What a [`GenericInjector`] carries from one sample to the next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenericInjectorSnapshot {
    word_pos: u128,
    state: State,
    last_healthy: Option<Vec<f64>>,
}

impl GenericInjector {
    /// Seeded from `(seed, profile, index)` on a stream of its own, independent of the healthy
    /// signal; `spans` are the channels' ranges, in the profile's order.
    pub fn new(
        seed: u64,
        profile: &str,
        index: u32,
        config: &SimulatorConfig,
        spans: Vec<Span>,
    ) -> Self {
        let a = &config.anomalies;
        let (cumulative, total) = cumulative(a.generic_mix.weights());
        let min_duration_ns = duration_ns(a.min_duration).max(1);
        let max_duration_ns = duration_ns(a.max_duration).max(min_duration_ns);
        let min_gap_ns = duration_ns(config.cadence).max(1);
        let on = a.rate_per_hour.is_finite()
            && a.rate_per_hour > 0.0
            && total > 0.0
            && !spans.is_empty();
        let mean_cycle_ns = if on { 3.6e12 / a.rate_per_hour } else { 0.0 };
        // The mean length under the mix (spikes are shorter), so the rate holds.
        let (min, span) = (min_duration_ns as f64, (max_duration_ns - min_duration_ns) as f64);
        let spike_weight = cumulative[0];
        let mean_duration_ns = if total > 0.0 {
            let spikes = spike_weight * (min + span * SPIKE_SHARE / 2.0);
            let others = (total - spike_weight) * (min + span / 2.0);
            (spikes + others) / total
        } else {
            min + span / 2.0
        };
        Self {
            rng: device_rng(seed, index, domain("SENTIO/X", profile)),
            mean_gap_ns: (mean_cycle_ns - mean_duration_ns).max(min_gap_ns as f64),
            min_gap_ns,
            min_duration_ns,
            max_duration_ns,
            cumulative,
            spans,
            state: if on { State::Unscheduled } else { State::Off },
            last_healthy: None,
        }
    }

    pub fn snapshot(&self) -> GenericInjectorSnapshot {
        GenericInjectorSnapshot {
            word_pos: self.rng.get_word_pos(),
            state: self.state,
            last_healthy: self.last_healthy.clone(),
        }
    }

    /// Continues from `snapshot`; false (nothing changed) when it is of another channel count.
    pub fn restore(&mut self, snapshot: &GenericInjectorSnapshot) -> bool {
        let n = self.spans.len();
        let fits = snapshot.last_healthy.as_ref().is_none_or(|v| v.len() == n)
            && match snapshot.state {
                State::Active(e) => e.channel < n,
                _ => true,
            };
        if fits {
            self.rng.set_word_pos(snapshot.word_pos);
            self.state = snapshot.state;
            self.last_healthy = snapshot.last_healthy.clone();
        }
        fits
    }

    /// The episode in progress after the last sample, if any: its kind and channel.
    pub fn active(&self) -> Option<(AnomalyKind, usize)> {
        match self.state {
            State::Active(e) => Some((e.kind, e.channel)),
            _ => None,
        }
    }

    /// Takes the healthy values at `ts_ns` (the profile's channel order), alters the affected
    /// one if an episode is active, and returns the episode's kind and channel.
    pub fn apply(&mut self, ts_ns: i64, values: &mut [f64]) -> Option<(AnomalyKind, usize)> {
        let previous = self.last_healthy.replace(values.to_vec());
        loop {
            match self.state {
                State::Off => return None,
                State::Unscheduled => {
                    let gap = draw_gap_ns(&mut self.rng, self.mean_gap_ns, self.min_gap_ns);
                    self.state = State::Idle { next_start_ns: ts_ns.saturating_add(gap) };
                    return None;
                }
                State::Idle { next_start_ns } => {
                    if ts_ns < next_start_ns {
                        return None;
                    }
                    let before = previous.as_deref().unwrap_or(values);
                    self.state = State::Active(self.start(next_start_ns, ts_ns, before));
                }
                State::Active(episode) if ts_ns >= episode.end_ns => {
                    // This sample is healthy, so a sample always separates two episodes.
                    let gap = draw_gap_ns(&mut self.rng, self.mean_gap_ns, self.min_gap_ns);
                    let next_start_ns =
                        episode.end_ns.saturating_add(gap).max(ts_ns.saturating_add(1));
                    self.state = State::Idle { next_start_ns };
                    return None;
                }
                State::Active(episode) => {
                    let span = self.spans[episode.channel];
                    let slot = &mut values[episode.channel];
                    *slot = span.round(self.alter(&episode, span, *slot));
                    return Some((episode.kind, episode.channel));
                }
            }
        }
    }

    /// Starts an episode scheduled at `scheduled_ns` with the sample at `ts_ns`; `before` holds
    /// the healthy values of the sample before.
    fn start(&mut self, scheduled_ns: i64, ts_ns: i64, before: &[f64]) -> Episode {
        let kind = draw_kind(&mut self.rng, AnomalyKind::GENERIC, &self.cumulative);
        let channel = self.rng.random_range(0..self.spans.len());
        let mut span_ns = (self.max_duration_ns - self.min_duration_ns) as f64;
        if kind == AnomalyKind::Spike {
            span_ns *= SPIKE_SHARE;
        }
        let duration_ns = self.min_duration_ns + (span_ns * self.rng.random::<f64>()) as i64;
        // After a gap in the caller's timestamps, start the episode here rather than lose it.
        let from_ns =
            if ts_ns >= scheduled_ns.saturating_add(duration_ns) { ts_ns } else { scheduled_ns };
        let s = self.spans[channel];
        let w = s.width();
        let rng = &mut self.rng;
        let level = match kind {
            AnomalyKind::Spike => s.hi + w * uniform(rng, OUTSIDE),
            AnomalyKind::Drop => s.lo - w * uniform(rng, OUTSIDE),
            AnomalyKind::Flat => before[channel],
            AnomalyKind::Noise => w * uniform(rng, NOISE_SIGMA),
            AnomalyKind::LevelShift => {
                let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
                sign * w * uniform(rng, SHIFT)
            }
            // Never drawn: the draw is from `AnomalyKind::GENERIC`.
            _ => 0.0,
        };
        Episode { kind, channel, end_ns: from_ns.saturating_add(duration_ns), level }
    }

    /// The faulty value for one sample of `episode`, given the healthy one.
    fn alter(&mut self, episode: &Episode, s: Span, healthy: f64) -> f64 {
        let w = s.width();
        let rng = &mut self.rng;
        match episode.kind {
            AnomalyKind::Spike => {
                (episode.level + OUTSIDE_NOISE * w * normal(rng)).max(s.hi + OUTSIDE_BOUND * w)
            }
            AnomalyKind::Drop => {
                (episode.level + OUTSIDE_NOISE * w * normal(rng)).min(s.lo - OUTSIDE_BOUND * w)
            }
            AnomalyKind::Flat => episode.level,
            AnomalyKind::Noise => healthy + episode.level * normal(rng),
            AnomalyKind::LevelShift => healthy + episode.level,
            _ => healthy,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sentio_core::Reading;

    use super::super::generic::GenericModel;
    use super::super::generic::tests::{in_range, model, run};
    use super::super::model::tests::config;
    use super::*;

    const TEN_S: Duration = Duration::from_secs(10);

    /// Runs of consecutive samples with a tagged reading: (first index, length, kind, channel).
    /// A run still open at the end of `rows` is left out.
    fn episodes(rows: &[Vec<Reading>]) -> Vec<(usize, usize, AnomalyKind, usize)> {
        let mut out = Vec::new();
        let mut open: Option<(usize, AnomalyKind, usize)> = None;
        for (i, row) in rows.iter().enumerate() {
            let tags: Vec<(AnomalyKind, usize)> =
                row.iter().enumerate().filter_map(|(c, r)| r.injected.map(|k| (k, c))).collect();
            assert!(tags.len() <= 1, "one channel at most: {row:?}");
            match (open, tags.first().copied()) {
                (None, Some((kind, c))) => open = Some((i, kind, c)),
                (Some((start, kind, c)), None) => {
                    out.push((start, i - start, kind, c));
                    open = None;
                }
                (Some((_, kind, c)), Some(now)) => {
                    assert_eq!((kind, c), now, "kind or channel changed mid-episode")
                }
                (None, None) => {}
            }
        }
        out
    }

    /// The definition of each kind on a channel of range `s`, for one altered value.
    fn satisfies(kind: AnomalyKind, s: Span, value: f64) -> bool {
        let w = s.width();
        match kind {
            AnomalyKind::Spike => value > s.hi + 0.2 * w,
            AnomalyKind::Drop => value < s.lo - 0.2 * w,
            AnomalyKind::Flat | AnomalyKind::Noise | AnomalyKind::LevelShift => value.is_finite(),
            _ => false,
        }
    }

    /// RMS of the step from one sample to the next on channel `c`, over pairs where `keep` holds
    /// for both.
    fn roughness(rows: &[Vec<Reading>], c: usize, keep: impl Fn(&Reading) -> bool) -> f64 {
        let steps: Vec<f64> = rows
            .windows(2)
            .filter(|w| keep(&w[0][c]) && keep(&w[1][c]))
            .map(|w| w[1][c].value - w[0][c].value)
            .collect();
        (steps.iter().map(|d| d * d).sum::<f64>() / steps.len() as f64).sqrt()
    }

    #[test]
    fn every_generic_kind_satisfies_its_definition_on_its_own_channel() {
        let n = 2 * 8640; // two days at 10 s
        for kind in AnomalyKind::GENERIC {
            let cfg = config(99, TEN_S, 12.0, Some(kind));
            let mut m = model(0, &cfg);
            let rows = run(&mut m, TEN_S, n);
            let calm = run(&mut model(0, &config(99, TEN_S, 0.0, None)), TEN_S, n);
            let spans: Vec<Span> = m.params().iter().map(|p| p.span).collect();
            let eps = episodes(&rows);
            assert!(eps.len() > 10, "{kind}: {} episodes", eps.len());
            let mut channels: Vec<usize> = eps.iter().map(|e| e.3).collect();
            channels.sort();
            channels.dedup();
            assert_eq!(channels.len(), spans.len(), "{kind}: every channel gets some");
            for row in &rows {
                for (c, r) in row.iter().enumerate() {
                    match r.injected {
                        Some(tag) => {
                            assert_eq!(tag, kind);
                            assert!(satisfies(kind, spans[c], r.value), "{r:?}");
                            assert_eq!(r.value, spans[c].round(r.value), "{r:?}");
                        }
                        None => assert!(in_range(&m, r), "{r:?}"),
                    }
                }
            }
            let cadence_s = 10;
            for &(start, len, _, c) in &eps {
                let w = spans[c].width();
                let altered = &rows[start..start + len];
                let healthy = &calm[start..start + len];
                match kind {
                    AnomalyKind::Spike => {
                        // Short: from the first quarter of 30 s .. 180 s.
                        let longest = 30.0 + 150.0 * SPIKE_SHARE;
                        assert!(
                            (len * cadence_s) as f64 <= longest + 10.0,
                            "spike of {len} samples"
                        );
                    }
                    AnomalyKind::Flat => {
                        // Stuck at the last healthy value, which the sample before shows.
                        let stuck = rows[start - 1][c].value;
                        assert!(
                            altered.iter().all(|row| row[c].value == stuck),
                            "{kind} at {start}"
                        );
                    }
                    AnomalyKind::LevelShift => {
                        // The healthy signal goes on underneath, a fixed offset away.
                        let offsets: Vec<f64> = altered
                            .iter()
                            .zip(healthy)
                            .map(|(a, h)| a[c].value - h[c].value)
                            .collect();
                        let first = offsets[0];
                        assert!(
                            first.abs() >= 0.4 * w - 1e-6 && first.abs() <= 0.6 * w + 1e-6,
                            "{offsets:?}"
                        );
                        let step = spans[c].step();
                        assert!(
                            offsets.iter().all(|o| (o - first).abs() <= step * 1.01),
                            "{offsets:?}"
                        );
                    }
                    _ => {}
                }
            }
            if kind == AnomalyKind::Noise {
                for c in 0..spans.len() {
                    let healthy = roughness(&rows, c, |r| r.injected.is_none());
                    let noisy = roughness(&rows, c, |r| r.injected.is_some());
                    assert!(
                        noisy > 10.0 * healthy,
                        "channel {c}: noisy {noisy} vs healthy {healthy}"
                    );
                }
            }
        }
    }

    #[test]
    fn episodes_follow_the_rate_and_the_mix() {
        let (rate, days) = (6.0, 20);
        let n = days * 8640;
        let (mut count, mut kinds) = (0, std::collections::BTreeMap::new());
        for index in 0..3 {
            let cfg = config(5, TEN_S, rate, None);
            let eps = episodes(&run(&mut model(index, &cfg), TEN_S, n));
            count += eps.len();
            for &(_, len, kind, _) in &eps {
                let (lo, hi) = if kind == AnomalyKind::Spike { (30, 68) } else { (30, 180) };
                assert!((lo - 10..=hi + 10).contains(&(len * 10)), "{kind} of {} s", len * 10);
                *kinds.entry(kind).or_insert(0usize) += 1;
            }
        }
        let expected = rate * 24.0 * days as f64 * 3.0;
        assert!(
            (count as f64 / expected - 1.0).abs() < 0.1,
            "{count} episodes, expected {expected}"
        );
        // Equal weights: each kind about a fifth.
        assert_eq!(kinds.len(), 5, "{kinds:?}");
        for (kind, k) in &kinds {
            assert!((*k as f64 / (count as f64 / 5.0) - 1.0).abs() < 0.2, "{kind}: {kinds:?}");
        }
    }

    #[test]
    fn zero_rate_or_zero_generic_weights_inject_nothing() {
        let mut cfg = config(1, TEN_S, 0.0, None);
        assert!(
            run(&mut model(0, &cfg), TEN_S, 20_000).iter().flatten().all(|r| r.injected.is_none())
        );
        cfg.anomalies.rate_per_hour = 100.0;
        cfg.anomalies.generic_mix = sentio_config::GenericMix {
            spike: 0.0,
            drop: 0.0,
            flat: 0.0,
            noise: 0.0,
            level_shift: 0.0,
        };
        let mut m: GenericModel = model(0, &cfg);
        assert!(run(&mut m, TEN_S, 20_000).iter().flatten().all(|r| r.injected.is_none()));
    }
}
