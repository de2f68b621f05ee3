//! The pump's anomaly injector: turns one pump's healthy readings into labelled faults (the
//! mission's table below; the generic kinds of every other profile are
//! [`super::generic_anomaly`]'s).
//!
//! Episodes start at random, at most one at a time per device. The gap from the end of one
//! episode to the start of the next is exponential with mean `1 / rate - mean duration` (at least
//! one cadence), so the long-run number of episodes per hour is `rate_per_hour` even though
//! episodes never overlap; at rates where episodes would have to overlap, they follow each other
//! with about one cadence between them. Each episode's kind is drawn by the mix weights and its
//! length uniformly in `[min_duration, max_duration]`; it alters only its own sensor, and every
//! reading it alters carries `injected = Some(kind)`.
//!
//! What each kind does while active (values rounded to the sensor's resolution):
//!
//! | kind | value |
//! | --- | --- |
//! | temperature_spike | ramps from 51 °C to a peak of 52-70 °C within 2-5 samples, holds it with noise, never below 51 |
//! | temperature_drop | ramps from -1 °C to -2..-15 °C within 2-5 samples, holds it with noise, never above -1 |
//! | vibration_spike | 120-180 RMS with 4 % noise, never below 110 |
//! | vibration_noise | the healthy value + N(0, 30-45), absolute value |
//! | pressure_drop | 0.05-0.5 bar at once, noise 0.02, kept within 0-0.6 |
//! | pressure_flat | exactly the last healthy value before the episode, every sample |
//! | humidity_high | 96.5-99.5 % with noise 0.3, kept within 95.5-100 |
//! | humidity_low | 2-8 % with noise 0.5, kept within 0-9.5 |

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use sentio_config::SimulatorConfig;
use sentio_core::{AnomalyKind, SensorKind};
use serde::{Deserialize, Serialize};

use super::model::{device_rng, round_to_resolution};

/// Key domain of the anomaly random stream ("SENTIO/A").
const ANOMALY_DOMAIN: u64 = 0x5345_4e54_494f_2f41;

const RAMP_SAMPLES: (u32, u32) = (2, 5);
const SPIKE_PEAK: (f64, f64) = (52.0, 70.0);
const SPIKE_FLOOR: f64 = 51.0;
const DROP_LOW: (f64, f64) = (-15.0, -2.0);
const DROP_CEILING: f64 = -1.0;
const TEMP_HOLD_NOISE: f64 = 0.6;
const VIB_SPIKE: (f64, f64) = (120.0, 180.0);
const VIB_SPIKE_FLOOR: f64 = 110.0;
const VIB_SPIKE_NOISE_REL: f64 = 0.04;
const VIB_NOISE_SIGMA: (f64, f64) = (30.0, 45.0);
const PRESSURE_DROP: (f64, f64) = (0.05, 0.5);
const PRESSURE_DROP_NOISE: f64 = 0.02;
const PRESSURE_DROP_BOUNDS: (f64, f64) = (0.0, 0.6);
const HUMIDITY_HIGH: (f64, f64) = (96.5, 99.5);
const HUMIDITY_HIGH_BOUNDS: (f64, f64) = (95.5, 100.0);
const HUMIDITY_HIGH_NOISE: f64 = 0.3;
const HUMIDITY_LOW: (f64, f64) = (2.0, 8.0);
const HUMIDITY_LOW_BOUNDS: (f64, f64) = (0.0, 9.5);
const HUMIDITY_LOW_NOISE: f64 = 0.5;

fn uniform(rng: &mut ChaCha8Rng, (lo, hi): (f64, f64)) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    rng.sample(StandardNormal)
}

pub(crate) fn duration_ns(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Running sums of the finite, positive weights (others count as 0), and their total.
pub(crate) fn cumulative<const N: usize>(weights: [(&str, f64); N]) -> ([f64; N], f64) {
    let mut cumulative = [0.0; N];
    let mut total = 0.0;
    for (slot, (_, weight)) in cumulative.iter_mut().zip(weights) {
        if weight.is_finite() && weight > 0.0 {
            total += weight;
        }
        *slot = total;
    }
    (cumulative, total)
}

/// An exponential gap with mean `mean_ns`, at least `min_ns`.
pub(crate) fn draw_gap_ns(rng: &mut ChaCha8Rng, mean_ns: f64, min_ns: i64) -> i64 {
    // 1 - U lies in (0, 1], so the logarithm is finite.
    let u = 1.0 - rng.random::<f64>();
    let gap = -mean_ns * u.ln();
    if gap >= i64::MAX as f64 { i64::MAX } else { (gap as i64).max(min_ns) }
}

/// One of `kinds`, by the weights whose running sums are `cumulative` (the last one, their total,
/// above 0).
pub(crate) fn draw_kind<const N: usize>(
    rng: &mut ChaCha8Rng,
    kinds: [AnomalyKind; N],
    cumulative: &[f64; N],
) -> AnomalyKind {
    let total = cumulative[N - 1];
    let u = rng.random::<f64>() * total;
    let mut chosen = kinds[0];
    let mut below = 0.0;
    for (kind, &upto) in kinds.into_iter().zip(cumulative) {
        if upto > below {
            // The last kind with a positive weight catches rounding at the top.
            chosen = kind;
            if u < upto {
                break;
            }
        }
        below = upto;
    }
    chosen
}

/// One episode in progress.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Episode {
    kind: AnomalyKind,
    /// The first timestamp no longer in the episode.
    end_ns: i64,
    /// Samples altered so far.
    step: u32,
    /// Samples the temperature ramps take.
    ramp: u32,
    /// The kind's level: the peak, the floor, the noise sigma or the stuck value.
    level: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum State {
    /// Injection is off (rate 0 or no kind with a positive weight).
    Off,
    /// Waiting for the first sample to schedule the first episode.
    Unscheduled,
    Idle {
        next_start_ns: i64,
    },
    Active(Episode),
}

/// Injects anomaly episodes into one device's readings.
#[derive(Debug, Clone)]
pub struct AnomalyInjector {
    rng: ChaCha8Rng,
    /// Mean gap between the end of an episode and the start of the next, in nanoseconds.
    mean_gap_ns: f64,
    min_gap_ns: i64,
    min_duration_ns: i64,
    max_duration_ns: i64,
    /// Cumulative mix weights in `AnomalyKind::ALL` order.
    cumulative: [f64; 8],
    state: State,
    /// The healthy values of the previous sample (what `pressure_flat` sticks to).
    last_healthy: Option<[f64; 4]>,
}

/// What an [`AnomalyInjector`] carries from one sample to the next; its settings come from the
/// configuration. Restoring it continues the anomaly schedule exactly where it stood.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InjectorSnapshot {
    /// Position in the injector's random stream.
    word_pos: u128,
    state: State,
    last_healthy: Option<[f64; 4]>,
}

impl AnomalyInjector {
    pub fn snapshot(&self) -> InjectorSnapshot {
        InjectorSnapshot {
            word_pos: self.rng.get_word_pos(),
            state: self.state,
            last_healthy: self.last_healthy,
        }
    }

    /// Continues from `snapshot` (taken from an injector of the same seed, index and settings).
    pub fn restore(&mut self, snapshot: &InjectorSnapshot) {
        self.rng.set_word_pos(snapshot.word_pos);
        self.state = snapshot.state;
        self.last_healthy = snapshot.last_healthy;
    }

    /// Seeded from `(seed, index)` on a stream of its own, independent of the healthy signal.
    pub fn new(seed: u64, index: u32, config: &SimulatorConfig) -> Self {
        let a = &config.anomalies;
        let (cumulative, total) = cumulative(a.mix.weights());
        let min_duration_ns = duration_ns(a.min_duration).max(1);
        let max_duration_ns = duration_ns(a.max_duration).max(min_duration_ns);
        let min_gap_ns = duration_ns(config.cadence).max(1);
        let on = a.rate_per_hour.is_finite() && a.rate_per_hour > 0.0 && total > 0.0;
        let mean_cycle_ns = if on { 3.6e12 / a.rate_per_hour } else { 0.0 };
        let mean_duration_ns = (min_duration_ns as f64 + max_duration_ns as f64) / 2.0;
        Self {
            rng: device_rng(seed, index, ANOMALY_DOMAIN),
            mean_gap_ns: (mean_cycle_ns - mean_duration_ns).max(min_gap_ns as f64),
            min_gap_ns,
            min_duration_ns,
            max_duration_ns,
            cumulative,
            state: if on { State::Unscheduled } else { State::Off },
            last_healthy: None,
        }
    }

    /// The episode in progress after the last sample, if any.
    pub fn active(&self) -> Option<AnomalyKind> {
        match self.state {
            State::Active(episode) => Some(episode.kind),
            _ => None,
        }
    }

    /// Takes the healthy values at `ts_ns` (`SensorKind::ALL` order), alters the affected one if
    /// an episode is active, and returns the episode's kind.
    pub fn apply(&mut self, ts_ns: i64, values: &mut [f64; 4]) -> Option<AnomalyKind> {
        let healthy = *values;
        let previous = self.last_healthy.replace(healthy);
        loop {
            match self.state {
                State::Off => return None,
                State::Unscheduled => {
                    let next_start_ns = ts_ns.saturating_add(self.draw_gap_ns());
                    self.state = State::Idle { next_start_ns };
                    return None;
                }
                State::Idle { next_start_ns } => {
                    if ts_ns < next_start_ns {
                        return None;
                    }
                    let stuck = previous.unwrap_or(healthy)[SensorKind::Pressure.index()];
                    self.state = State::Active(self.start(next_start_ns, ts_ns, stuck));
                }
                State::Active(episode) if ts_ns >= episode.end_ns => {
                    // This sample is healthy, so a sample always separates two episodes.
                    let gap = self.draw_gap_ns();
                    let next_start_ns =
                        episode.end_ns.saturating_add(gap).max(ts_ns.saturating_add(1));
                    self.state = State::Idle { next_start_ns };
                    return None;
                }
                State::Active(mut episode) => {
                    // The pump injector draws the pump's kinds only, each with its sensor.
                    if let Some(sensor) = episode.kind.sensor() {
                        let slot = &mut values[sensor.index()];
                        *slot = round_to_resolution(sensor, self.alter(&episode, *slot));
                    }
                    episode.step += 1;
                    self.state = State::Active(episode);
                    return Some(episode.kind);
                }
            }
        }
    }

    fn draw_gap_ns(&mut self) -> i64 {
        draw_gap_ns(&mut self.rng, self.mean_gap_ns, self.min_gap_ns)
    }

    fn draw_kind(&mut self) -> AnomalyKind {
        draw_kind(&mut self.rng, AnomalyKind::ALL, &self.cumulative)
    }

    /// Starts an episode scheduled at `scheduled_ns` with the sample at `ts_ns`.
    fn start(&mut self, scheduled_ns: i64, ts_ns: i64, stuck_pressure: f64) -> Episode {
        let kind = self.draw_kind();
        let span = self.max_duration_ns - self.min_duration_ns;
        let duration_ns = self.min_duration_ns + (span as f64 * self.rng.random::<f64>()) as i64;
        // After a gap in the caller's timestamps, start the episode here rather than lose it.
        let from_ns =
            if ts_ns >= scheduled_ns.saturating_add(duration_ns) { ts_ns } else { scheduled_ns };
        let rng = &mut self.rng;
        let level = match kind {
            AnomalyKind::TemperatureSpike => uniform(rng, SPIKE_PEAK),
            AnomalyKind::TemperatureDrop => uniform(rng, DROP_LOW),
            AnomalyKind::VibrationSpike => uniform(rng, VIB_SPIKE),
            AnomalyKind::VibrationNoise => uniform(rng, VIB_NOISE_SIGMA),
            AnomalyKind::PressureDrop => uniform(rng, PRESSURE_DROP),
            AnomalyKind::PressureFlat => stuck_pressure,
            AnomalyKind::HumidityHigh => uniform(rng, HUMIDITY_HIGH),
            AnomalyKind::HumidityLow => uniform(rng, HUMIDITY_LOW),
            AnomalyKind::Spike
            | AnomalyKind::Drop
            | AnomalyKind::Flat
            | AnomalyKind::Noise
            | AnomalyKind::LevelShift
            | AnomalyKind::Labelled => 0.0,
        };
        Episode {
            kind,
            end_ns: from_ns.saturating_add(duration_ns),
            step: 0,
            ramp: rng.random_range(RAMP_SAMPLES.0..=RAMP_SAMPLES.1),
            level,
        }
    }

    /// The faulty value for one sample of `episode`, given the healthy one.
    fn alter(&mut self, episode: &Episode, healthy: f64) -> f64 {
        let rng = &mut self.rng;
        // Fraction of the temperature ramp done at this sample: 1/ramp at the first.
        let ramp = (f64::from(episode.step + 1) / f64::from(episode.ramp)).min(1.0);
        match episode.kind {
            AnomalyKind::TemperatureSpike => {
                let target = SPIKE_FLOOR + (episode.level - SPIKE_FLOOR) * ramp;
                (target + TEMP_HOLD_NOISE * normal(rng)).max(SPIKE_FLOOR)
            }
            AnomalyKind::TemperatureDrop => {
                let target = DROP_CEILING + (episode.level - DROP_CEILING) * ramp;
                (target + TEMP_HOLD_NOISE * normal(rng)).min(DROP_CEILING)
            }
            AnomalyKind::VibrationSpike => {
                let noisy = episode.level * (1.0 + VIB_SPIKE_NOISE_REL * normal(rng));
                noisy.max(VIB_SPIKE_FLOOR)
            }
            AnomalyKind::VibrationNoise => (healthy + episode.level * normal(rng)).abs(),
            AnomalyKind::PressureDrop => {
                let (lo, hi) = PRESSURE_DROP_BOUNDS;
                (episode.level + PRESSURE_DROP_NOISE * normal(rng)).clamp(lo, hi)
            }
            AnomalyKind::PressureFlat => episode.level,
            AnomalyKind::HumidityHigh => {
                let (lo, hi) = HUMIDITY_HIGH_BOUNDS;
                (episode.level + HUMIDITY_HIGH_NOISE * normal(rng)).clamp(lo, hi)
            }
            AnomalyKind::HumidityLow => {
                let (lo, hi) = HUMIDITY_LOW_BOUNDS;
                (episode.level + HUMIDITY_LOW_NOISE * normal(rng)).clamp(lo, hi)
            }
            AnomalyKind::Spike
            | AnomalyKind::Drop
            | AnomalyKind::Flat
            | AnomalyKind::Noise
            | AnomalyKind::LevelShift
            | AnomalyKind::Labelled => healthy,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sentio_core::Reading;

    use super::super::model::tests::{START_NS, config, model, run};
    use super::*;

    const TEN_S: Duration = Duration::from_secs(10);

    /// Runs of consecutive samples tagged with an anomaly: (first index, length, kind). A run
    /// still open at the end of `rows` is left out.
    fn episodes(rows: &[[Reading; 4]]) -> Vec<(usize, usize, AnomalyKind)> {
        let mut out = Vec::new();
        let mut open: Option<(usize, AnomalyKind)> = None;
        for (i, row) in rows.iter().enumerate() {
            let tags: Vec<AnomalyKind> = row.iter().filter_map(|r| r.injected).collect();
            assert!(tags.len() <= 1, "one sensor at most: {row:?}");
            let tag = tags.first().copied();
            match (open, tag) {
                (None, Some(kind)) => open = Some((i, kind)),
                (Some((start, kind)), None) => {
                    out.push((start, i - start, kind));
                    open = None;
                }
                (Some((_, kind)), Some(now)) => assert_eq!(kind, now, "kind changed mid-episode"),
                (None, None) => {}
            }
        }
        out
    }

    fn satisfies(kind: AnomalyKind, value: f64) -> bool {
        match kind {
            AnomalyKind::TemperatureSpike => value > 50.0,
            AnomalyKind::TemperatureDrop => value < 0.0,
            AnomalyKind::VibrationSpike => value > 100.0,
            AnomalyKind::VibrationNoise => value >= 0.0,
            AnomalyKind::PressureDrop => value < 1.0,
            AnomalyKind::PressureFlat => (1.0..=5.0).contains(&value),
            AnomalyKind::HumidityHigh => value > 95.0,
            AnomalyKind::HumidityLow => value < 10.0,
            _ => false,
        }
    }

    /// RMS of the step from one sample to the next, over pairs where `keep` holds for both.
    fn roughness(rows: &[[Reading; 4]], keep: impl Fn(&Reading) -> bool) -> f64 {
        let v = SensorKind::Vibration.index();
        let steps: Vec<f64> = rows
            .windows(2)
            .filter(|w| keep(&w[0][v]) && keep(&w[1][v]))
            .map(|w| w[1][v].value - w[0][v].value)
            .collect();
        (steps.iter().map(|d| d * d).sum::<f64>() / steps.len() as f64).sqrt()
    }

    #[test]
    fn every_kind_satisfies_its_definition_on_its_own_sensor() {
        let n = 2 * 8640; // two days at 10 s
        for kind in AnomalyKind::ALL {
            let cfg = config(99, TEN_S, 12.0, Some(kind));
            let mut m = model(0, &cfg);
            let rows = run(&mut m, TEN_S, n);
            let eps = episodes(&rows);
            assert!(eps.len() > 10, "{kind}: {} episodes", eps.len());
            for row in &rows {
                for r in row {
                    if let Some(tag) = r.injected {
                        assert_eq!(tag, kind);
                        assert_eq!(r.sensor.kind(), kind.sensor(), "{r:?}");
                        assert!(satisfies(kind, r.value), "{r:?}");
                        assert_eq!(r.value, round_to_resolution(r.sensor.kind().unwrap(), r.value));
                    } else {
                        assert!(
                            r.sensor.kind().unwrap().typical_range().contains(&r.value),
                            "{r:?}"
                        );
                    }
                }
            }
            let s = kind.sensor().unwrap().index();
            match kind {
                AnomalyKind::PressureFlat => {
                    for &(start, len, _) in &eps {
                        // Stuck at the last healthy value, which the sample before shows.
                        let stuck = rows[start - 1][s].value;
                        assert!(rows[start..start + len].iter().all(|row| row[s].value == stuck));
                    }
                }
                AnomalyKind::VibrationNoise => {
                    let healthy = roughness(&rows, |r| r.injected.is_none());
                    let noisy = roughness(&rows, |r| r.injected.is_some());
                    assert!(noisy > 10.0 * healthy, "noisy {noisy} vs healthy {healthy}");
                }
                _ => {}
            }
        }
    }

    #[test]
    fn episode_lengths_and_rate_follow_the_config() {
        let cadence = TEN_S;
        let rate = 6.0;
        let days = 20;
        let n = days * 8640;
        let mut lengths = Vec::new();
        let mut count = 0;
        for index in 0..3 {
            let cfg = config(5, cadence, rate, None);
            let rows = run(&mut model(index, &cfg), cadence, n);
            let eps = episodes(&rows);
            count += eps.len();
            lengths.extend(eps.iter().map(|&(_, len, _)| len as u64 * 10));
            let mut kinds: Vec<AnomalyKind> = eps.iter().map(|&(_, _, k)| k).collect();
            kinds.sort();
            kinds.dedup();
            assert_eq!(kinds.len(), 8, "every kind appears");
        }
        let (min, max) = (30, 180);
        for &len in &lengths {
            assert!((min - 10..=max + 10).contains(&len), "episode of {len} s");
        }
        let mean = lengths.iter().sum::<u64>() as f64 / lengths.len() as f64;
        assert!((mean - 105.0).abs() < 8.0, "mean episode length {mean} s");
        let expected = rate * 24.0 * days as f64 * 3.0;
        let observed = count as f64;
        assert!(
            (observed / expected - 1.0).abs() < 0.1,
            "{observed} episodes, expected {expected}"
        );
    }

    #[test]
    fn saturated_rate_still_separates_episodes() {
        let cfg = config(8, TEN_S, 3600.0, None);
        let rows = run(&mut model(0, &cfg), TEN_S, 5_000);
        let eps = episodes(&rows);
        assert!(eps.len() > 100, "{} episodes", eps.len());
        for w in eps.windows(2) {
            assert!(w[1].0 > w[0].0 + w[0].1, "a healthy sample between episodes");
        }
    }

    #[test]
    fn zero_rate_or_zero_weights_inject_nothing() {
        let mut cfg = config(1, TEN_S, 0.0, None);
        let rows = run(&mut model(0, &cfg), TEN_S, 20_000);
        assert!(rows.iter().flatten().all(|r| r.injected.is_none()));
        cfg.anomalies.rate_per_hour = 100.0;
        cfg.anomalies.mix.temperature_spike = 0.0;
        cfg.anomalies.mix.temperature_drop = 0.0;
        cfg.anomalies.mix.vibration_spike = 0.0;
        cfg.anomalies.mix.vibration_noise = 0.0;
        cfg.anomalies.mix.pressure_drop = 0.0;
        cfg.anomalies.mix.pressure_flat = 0.0;
        cfg.anomalies.mix.humidity_high = 0.0;
        cfg.anomalies.mix.humidity_low = 0.0;
        let mut m = model(0, &cfg);
        assert!(
            (0..20_000).all(|i| m
                .sample(START_NS + i * 10_000_000_000)
                .iter()
                .all(|r| r.injected.is_none()))
        );
    }

    #[test]
    fn kinds_follow_the_mix_weights() {
        let mut cfg = config(21, TEN_S, 1.0, None);
        cfg.anomalies.mix.temperature_spike = 3.0;
        cfg.anomalies.mix.pressure_flat = 0.0;
        let mut injector = AnomalyInjector::new(21, 0, &cfg);
        let mut counts = [0usize; 8];
        for _ in 0..90_000 {
            let kind = injector.draw_kind();
            counts[AnomalyKind::ALL.iter().position(|&k| k == kind).unwrap_or(0)] += 1;
        }
        // Weights 3,1,1,1,1,0,1,1 out of 9.
        assert_eq!(counts[5], 0);
        assert!((counts[0] as f64 / 30_000.0 - 1.0).abs() < 0.05, "{counts:?}");
        for i in [1, 2, 3, 4, 6, 7] {
            assert!((counts[i] as f64 / 10_000.0 - 1.0).abs() < 0.08, "{counts:?}");
        }
    }
}
