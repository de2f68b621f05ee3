//! A device of any profile but the pump: one generic signal per channel, derived from the
//! channel's healthy range.
//!
//! The machine is the pump's: the same duty cycle (runs 20-90 min, rests 5-30 min, a new load
//! target every 5-20 min while it runs) with `spin` and `load` following it through lags, so a
//! compressor starts, stops and changes load as a pump does. Each channel, over its healthy range
//! `lo .. hi` (span `w`; `0 .. 100` when the profile gives none):
//!
//! - **level**: the middle of the range, plus a per-device offset of up to ±4 % of `w`;
//! - **load coupling**: `± swing` as the machine goes from stopped to full load, where `swing` is
//!   9-27 % of `w`, through a first-order lag of 10-90 s, so channels move together but not in
//!   lockstep;
//! - **drift**: mean-reverting (Ornstein-Uhlenbeck), sigma 3 % of `w`, time constant 2-6 h;
//! - **noise**: Gaussian, sigma 0.8-1.5 % of `w`.
//!
//! How strongly and how fast a channel follows the load (its coupling, lag and drift time) is the
//! profile's: drawn from the seed and the profile's name, the same for every device of the
//! profile. Level offsets and noise are each device's. Values are softly clamped into the range
//! and rounded to about five significant digits of the span (`w / 10^4` rounded down to a power
//! of ten). The [`GenericInjector`] then alters at most one channel; as for the pump, the healthy
//! signal and the injector draw from separate random streams.

use rand_chacha::ChaCha8Rng;
use sentio_config::SimulatorConfig;
use sentio_core::{AnomalyKind, Channel, ChannelSpec, DeviceId, Profile, Reading, Unit};
use serde::{Deserialize, Serialize};

use super::generic_anomaly::{GenericInjector, GenericInjectorSnapshot};
use super::model::{DutyCycle, LOAD_TAU_S, SPIN_TAU_S, device_rng, normal, soft_clamp, uniform};

/// The healthy range assumed for a channel whose profile gives none.
pub const DEFAULT_RANGE: (f64, f64) = (0.0, 100.0);

const DAY_NS: i64 = 86_400_000_000_000;

// Per channel, the profile's.
/// Share of the half-span the load moves a channel by (stopped to full load).
const COUPLING: (f64, f64) = (0.3, 0.9);
const SWING_OF_SPAN: f64 = 0.3;
const LAG_TAU_S: (f64, f64) = (10.0, 90.0);
const DRIFT_TAU_S: (f64, f64) = (2.0 * 3600.0, 6.0 * 3600.0);
// Per channel, each device's (fractions of the span).
const OFFSET: (f64, f64) = (-0.04, 0.04);
const NOISE: (f64, f64) = (0.008, 0.015);
const DRIFT_SIGMA: f64 = 0.03;
/// The soft clamp's margin inside the range.
const CLAMP_MARGIN: f64 = 0.02;

/// A channel's healthy range and the resolution its values are rounded to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    pub lo: f64,
    pub hi: f64,
    /// Values are multiples of `10^-decimals`.
    decimals: i32,
}

impl Span {
    /// The channel's declared range, or [`DEFAULT_RANGE`].
    pub fn of(spec: &ChannelSpec) -> Self {
        let (lo, hi) = spec.range.unwrap_or(DEFAULT_RANGE);
        let width = hi - lo;
        // Profiles check that a range is finite with lo < hi; a degenerate one rounds to 1e-4.
        let decimals =
            if width.is_finite() && width > 0.0 { 4 - width.log10().floor() as i32 } else { 4 };
        Self { lo, hi, decimals: decimals.clamp(-15, 15) }
    }

    pub fn width(&self) -> f64 {
        self.hi - self.lo
    }

    /// The resolution: values are multiples of it.
    pub fn step(&self) -> f64 {
        10f64.powi(-self.decimals)
    }

    /// `value` rounded to the channel's resolution. As for the pump, a rounded integer divided by
    /// a power of ten gives the f64 nearest the decimal, which prints in the fewest digits.
    pub fn round(&self, value: f64) -> f64 {
        if self.decimals >= 0 {
            let scale = 10f64.powi(self.decimals);
            (value * scale).round() / scale
        } else {
            let step = 10f64.powi(-self.decimals);
            (value / step).round() * step
        }
    }

    /// A healthy value: softly clamped into the range and rounded.
    fn finish(&self, raw: f64) -> f64 {
        let (lo, hi) = (self.lo, self.hi);
        let raw = if raw.is_finite() { raw } else { (lo + hi) / 2.0 };
        self.round(soft_clamp(raw, lo, hi, self.width() * CLAMP_MARGIN))
    }
}

/// FNV-1a over `tag/name`: a random-stream key domain of its own per profile, so two profiles'
/// device 0 never share a stream, and the value never changes between versions or platforms.
pub(crate) fn domain(tag: &str, profile: &str) -> u64 {
    tag.bytes()
        .chain(std::iter::once(b'/'))
        .chain(profile.bytes())
        .fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// One channel's fixed parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelParams {
    pub name: Channel,
    pub unit: Unit,
    pub span: Span,
    /// The value at half load, before drift and noise.
    pub level: f64,
    /// How far the load moves the value either side of `level` (stopped: `level - swing`).
    pub swing: f64,
    pub lag_tau_s: f64,
    pub noise: f64,
    pub drift_sigma: f64,
    pub drift_tau_s: f64,
}

/// Lag and Ornstein-Uhlenbeck coefficients for one step length.
#[derive(Debug, Clone)]
struct Coefficients {
    dt_ns: i64,
    dt_s: f64,
    spin: f64,
    load: f64,
    /// Per channel: (lag, OU rho, OU step sigma).
    channels: Vec<(f64, f64, f64)>,
}

impl Coefficients {
    fn new(dt_ns: i64, params: &[ChannelParams]) -> Self {
        let dt_s = dt_ns as f64 / 1e9;
        let lag = |tau: f64| 1.0 - (-dt_s / tau).exp();
        let channels = params
            .iter()
            .map(|p| {
                let rho = (-dt_s / p.drift_tau_s).exp();
                (lag(p.lag_tau_s), rho, p.drift_sigma * (1.0 - rho * rho).max(0.0).sqrt())
            })
            .collect();
        Self { dt_ns, dt_s, spin: lag(SPIN_TAU_S), load: lag(LOAD_TAU_S), channels }
    }
}

/// The evolving healthy state of one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct GenericState {
    duty: DutyCycle,
    spin: f64,
    load: f64,
    /// Per channel: the load as the channel sees it (lagged).
    follow: Vec<f64>,
    /// Per channel: the drift, in the channel's unit.
    drift: Vec<f64>,
}

/// What a [`GenericModel`] carries from one sample to the next. Restored into a model of the same
/// device, profile, seed and settings, it continues the stream exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenericSnapshot {
    /// The profile's channels when it was taken: a snapshot of other channels is not restored.
    channels: Vec<String>,
    word_pos: u128,
    state: GenericState,
    last_ts_ns: Option<i64>,
    seq: u64,
    injector: GenericInjectorSnapshot,
}

impl GenericSnapshot {
    /// The sequence number of the next sample.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

/// One simulated device of a generic profile: its channels' signals plus its anomaly injector.
pub struct GenericModel {
    device: DeviceId,
    profile: String,
    params: Vec<ChannelParams>,
    rng: ChaCha8Rng,
    state: GenericState,
    coefficients: Coefficients,
    cadence_ns: i64,
    last_ts_ns: Option<i64>,
    seq: u64,
    injector: GenericInjector,
}

impl GenericModel {
    /// Device number `index` (from 0) of `profile`. Its random streams are keyed by
    /// `(config.seed, profile name, index)` with ChaCha8, so the same seed gives the same stream
    /// byte for byte, whatever the rest of the fleet.
    pub fn new(device: DeviceId, profile: &Profile, index: u32, config: &SimulatorConfig) -> Self {
        let mut shape = device_rng(config.seed, 0, domain("SENTIO/P", &profile.name));
        let mut rng = device_rng(config.seed, index, domain("SENTIO/G", &profile.name));
        let params: Vec<ChannelParams> = profile
            .channels
            .iter()
            .map(|spec| {
                let span = Span::of(spec);
                let w = span.width();
                let coupling = uniform(&mut shape, COUPLING);
                let lag_tau_s = uniform(&mut shape, LAG_TAU_S);
                let drift_tau_s = uniform(&mut shape, DRIFT_TAU_S);
                ChannelParams {
                    name: spec.name.clone(),
                    unit: spec.unit.clone(),
                    span,
                    level: (span.lo + span.hi) / 2.0 + w * uniform(&mut rng, OFFSET),
                    swing: w * SWING_OF_SPAN * coupling,
                    lag_tau_s,
                    noise: w * uniform(&mut rng, NOISE),
                    drift_sigma: w * DRIFT_SIGMA,
                    drift_tau_s,
                }
            })
            .collect();
        let duty = DutyCycle::initial(&mut rng);
        let spin = if duty.on { 1.0 } else { 0.0 };
        let load = duty.load_target;
        let drift = params.iter().map(|p| p.drift_sigma * normal(&mut rng)).collect();
        let state =
            GenericState { duty, spin, load, follow: vec![spin * load; params.len()], drift };
        let cadence_ns =
            i64::try_from(config.cadence.as_nanos()).unwrap_or(DAY_NS).clamp(1, DAY_NS);
        let spans: Vec<Span> = params.iter().map(|p| p.span).collect();
        Self {
            device,
            profile: profile.name.clone(),
            coefficients: Coefficients::new(cadence_ns, &params),
            params,
            rng,
            state,
            cadence_ns,
            last_ts_ns: None,
            seq: 0,
            injector: GenericInjector::new(config.seed, &profile.name, index, config, spans),
        }
    }

    pub fn device(&self) -> &DeviceId {
        &self.device
    }

    pub fn profile(&self) -> &str {
        &self.profile
    }

    /// The channels in the profile's order, with their parameters.
    pub fn params(&self) -> &[ChannelParams] {
        &self.params
    }

    pub fn channels(&self) -> impl Iterator<Item = &Channel> {
        self.params.iter().map(|p| &p.name)
    }

    pub fn snapshot(&self) -> GenericSnapshot {
        GenericSnapshot {
            channels: self.params.iter().map(|p| p.name.as_str().to_owned()).collect(),
            word_pos: self.rng.get_word_pos(),
            state: self.state.clone(),
            last_ts_ns: self.last_ts_ns,
            seq: self.seq,
            injector: self.injector.snapshot(),
        }
    }

    /// Continues from `snapshot`, taken from a model of the same device, profile, seed and
    /// settings. Returns false, and changes nothing, when the snapshot holds other channels.
    pub fn restore(&mut self, snapshot: &GenericSnapshot) -> bool {
        let same = snapshot.channels.len() == self.params.len()
            && snapshot.channels.iter().zip(&self.params).all(|(a, p)| a == p.name.as_str())
            && snapshot.state.follow.len() == self.params.len()
            && snapshot.state.drift.len() == self.params.len();
        if !same || !self.injector.restore(&snapshot.injector) {
            return false;
        }
        self.rng.set_word_pos(snapshot.word_pos);
        self.state = snapshot.state.clone();
        self.last_ts_ns = snapshot.last_ts_ns;
        self.seq = snapshot.seq;
        true
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn set_seq(&mut self, seq: u64) {
        self.seq = seq;
    }

    pub fn last_ts_ns(&self) -> Option<i64> {
        self.last_ts_ns
    }

    /// The anomaly episode in progress after the last sample, if any, and its channel.
    pub fn active_anomaly(&self) -> Option<(AnomalyKind, &Channel)> {
        self.injector.active().map(|(kind, i)| (kind, &self.params[i].name))
    }

    /// One reading per channel (the profile's order) at `ts_ns`, as [`super::model::DeviceModel::sample`]
    /// does for the pump: the state advances by the elapsed time (at most a day), sequence
    /// numbers start at 0 and increase by 1 each call, and only the channel an anomaly alters
    /// carries `injected`.
    pub fn sample(&mut self, ts_ns: i64) -> Vec<Reading> {
        let dt_ns = match self.last_ts_ns {
            Some(prev) => ts_ns.saturating_sub(prev).clamp(0, DAY_NS),
            None => self.cadence_ns,
        };
        self.last_ts_ns = Some(ts_ns);
        if dt_ns != self.coefficients.dt_ns {
            self.coefficients = Coefficients::new(dt_ns, &self.params);
        }
        let mut values = self.step();
        let injected = self.injector.apply(ts_ns, &mut values);
        let seq = self.seq;
        self.seq += 1;
        self.params
            .iter()
            .zip(values)
            .enumerate()
            .map(|(i, (p, value))| Reading {
                device: self.device.clone(),
                sensor: p.name.clone(),
                unit: p.unit.clone(),
                ts_ns,
                value,
                seq,
                injected: injected.filter(|(_, channel)| *channel == i).map(|(kind, _)| kind),
                ts_source: sentio_core::TsSource::Event,
            })
            .collect()
    }

    /// Advances the healthy state by one step; the healthy values, clamped and rounded.
    fn step(&mut self) -> Vec<f64> {
        let (rng, c, s) = (&mut self.rng, &self.coefficients, &mut self.state);
        s.duty.advance(rng, c.dt_s);
        let spin_target = if s.duty.on { 1.0 } else { 0.0 };
        s.spin += c.spin * (spin_target - s.spin);
        s.load += c.load * (s.duty.load_target - s.load);
        let mech = s.spin * s.load;
        let channels = self.params.iter().zip(&c.channels);
        channels
            .zip(s.follow.iter_mut().zip(s.drift.iter_mut()))
            .map(|((p, &(lag, rho, sigma)), (follow, drift))| {
                *follow += lag * (mech - *follow);
                *drift = rho * *drift + sigma * normal(rng);
                let raw =
                    p.level + p.swing * (2.0 * *follow - 1.0) + *drift + p.noise * normal(rng);
                p.span.finish(raw)
            })
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use proptest::prelude::*;
    use sentio_core::ChannelSpec;

    use super::super::model::tests::{START_NS, config};
    use super::*;

    /// The compressor of `examples/mixed-fleet.toml`: six channels, the last without a range.
    pub(crate) fn compressor() -> Profile {
        let spec = |name: &str, unit: &str, range: Option<(f64, f64)>| ChannelSpec {
            name: Channel::new(name).unwrap(),
            unit: Unit::new(unit).unwrap(),
            range,
            score_weight: sentio_core::profile::DEFAULT_SCORE_WEIGHT,
        };
        Profile {
            name: "compressor".into(),
            channels: vec![
                spec("current", "A", Some((0.0, 60.0))),
                spec("flow", "m³/h", Some((0.0, 400.0))),
                spec("discharge_pressure", "bar", Some((4.0, 10.0))),
                spec("discharge_temperature", "°C", Some((40.0, 110.0))),
                spec("vibration_x", "mm/s", Some((0.0, 12.0))),
                spec("vibration_y", "mm/s", None),
            ],
            devices: vec!["compressor-*".into()],
        }
    }

    pub(crate) fn model(index: u32, config: &SimulatorConfig) -> GenericModel {
        let device = DeviceId::new(&format!("compressor-{:02}", index + 1)).unwrap();
        GenericModel::new(device, &compressor(), index, config)
    }

    /// `n` samples, cadence apart from `START_NS`: one row of readings per sample.
    pub(crate) fn run(model: &mut GenericModel, cadence: Duration, n: usize) -> Vec<Vec<Reading>> {
        let step = cadence.as_nanos() as i64;
        (0..n).map(|i| model.sample(START_NS + i as i64 * step)).collect()
    }

    pub(crate) fn in_range(model: &GenericModel, r: &Reading) -> bool {
        let p = model.params().iter().find(|p| p.name == r.sensor).unwrap();
        (p.span.lo..=p.span.hi).contains(&r.value)
    }

    fn pearson(xs: &[f64], ys: &[f64]) -> f64 {
        let n = xs.len() as f64;
        let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
        let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
        for (x, y) in xs.iter().zip(ys) {
            sxy += (x - mx) * (y - my);
            sxx += (x - mx) * (x - mx);
            syy += (y - my) * (y - my);
        }
        sxy / (sxx * syy).sqrt()
    }

    const TEN_S: Duration = Duration::from_secs(10);
    const THREE_DAYS_AT_10S: usize = 3 * 8640;

    #[test]
    fn ranges_set_the_level_noise_and_resolution() {
        let c = compressor();
        let spans: Vec<Span> = c.channels.iter().map(Span::of).collect();
        assert_eq!((spans[5].lo, spans[5].hi), DEFAULT_RANGE, "no range: 0 .. 100");
        // Five significant digits of the span: 60 A to 0.001, 400 m³/h to 0.01, 6 bar to 0.0001.
        assert_eq!(spans[0].round(12.345_678), 12.346);
        assert_eq!(spans[1].round(123.456_7), 123.46);
        assert_eq!(spans[2].round(7.123_456), 7.1235);
        let big = Span::of(&ChannelSpec { range: Some((0.0, 2.0e6)), ..c.channels[0].clone() });
        assert_eq!(big.round(123_456.7), 123_500.0);
        let m = model(0, &config(1, TEN_S, 0.0, None));
        for (p, s) in m.params().iter().zip(&spans) {
            let w = s.width();
            let mid = (s.lo + s.hi) / 2.0;
            assert!((p.level - mid).abs() <= 0.04 * w + 1e-9, "{p:?}");
            assert!((0.008 * w..=0.015 * w).contains(&p.noise), "{p:?}");
            assert!((0.09 * w..=0.27 * w).contains(&p.swing), "{p:?}");
        }
    }

    #[test]
    fn healthy_values_stay_in_range_follow_the_load_and_drift() {
        let cfg = config(42, TEN_S, 0.0, None);
        for index in 0..3 {
            let mut m = model(index, &cfg);
            let rows = run(&mut m, TEN_S, THREE_DAYS_AT_10S);
            for r in rows.iter().flatten() {
                assert!(r.injected.is_none() && r.value.is_finite());
                assert!(in_range(&m, r), "{r:?}");
                let p = m.params().iter().find(|p| p.name == r.sensor).unwrap();
                assert_eq!(r.value, p.span.round(r.value), "{r:?}");
            }
            let column = |i: usize| -> Vec<f64> { rows.iter().map(|row| row[i].value).collect() };
            // Every channel follows the machine's load: any two move together.
            for (a, b) in [(0, 1), (2, 3), (4, 5), (0, 5)] {
                let r = pearson(&column(a), &column(b));
                assert!(r > 0.5, "device {index}: corr(channel {a}, channel {b}) = {r}");
            }
            // The machine runs and rests: the current spends time near both ends of its swing.
            let p = &m.params()[0];
            let current = column(0);
            let low = current.iter().filter(|&&x| x < p.level - 0.6 * p.swing).count();
            let high = current.iter().filter(|&&x| x > p.level + 0.2 * p.swing).count();
            let n = current.len() as f64;
            assert!(low as f64 / n > 0.05 && high as f64 / n > 0.3, "{low} low, {high} high");
        }
    }

    #[test]
    fn same_seed_profile_and_index_give_identical_streams() {
        let cfg = config(7, Duration::from_secs(1), 5.0, None);
        let a = run(&mut model(3, &cfg), Duration::from_secs(1), 10_000);
        let b = run(&mut model(3, &cfg), Duration::from_secs(1), 10_000);
        assert_eq!(a, b);
        assert!(a.iter().flatten().any(|r| r.injected.is_some()), "the run injects anomalies");
        let values = |rows: &[Vec<Reading>]| -> Vec<f64> {
            rows.iter().flatten().map(|r| r.value).collect()
        };
        let other_index = run(&mut model(4, &cfg), Duration::from_secs(1), 10_000);
        assert_ne!(values(&a), values(&other_index));
        let other_seed = config(8, Duration::from_secs(1), 5.0, None);
        let c = run(&mut model(3, &other_seed), Duration::from_secs(1), 10_000);
        assert_ne!(values(&a), values(&c));
        let mut renamed = compressor();
        renamed.name = "blower".into();
        let device = DeviceId::new("compressor-04").unwrap();
        let mut blower = GenericModel::new(device, &renamed, 3, &cfg);
        let d = run(&mut blower, Duration::from_secs(1), 10_000);
        assert_ne!(values(&a), values(&d), "another profile's device 3 has streams of its own");
    }

    #[test]
    fn readings_carry_device_channel_unit_timestamp_and_sequence() {
        let cfg = config(1, TEN_S, 0.0, None);
        let profile = compressor();
        let rows = run(&mut model(0, &cfg), TEN_S, 100);
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row.len(), 6);
            for (spec, r) in profile.channels.iter().zip(row) {
                assert_eq!(r.device.as_str(), "compressor-01");
                assert_eq!((&r.sensor, &r.unit), (&spec.name, &spec.unit));
                assert_eq!(r.seq, i as u64);
                assert_eq!(r.ts_ns, START_NS + i as i64 * 10_000_000_000);
            }
        }
    }

    /// As the pump's: the model restored from a snapshot (through JSON, as the state file keeps
    /// it) continues exactly as the uninterrupted one, anomalies included.
    #[test]
    fn a_restored_snapshot_continues_the_stream_exactly() {
        let cfg = config(7, Duration::from_secs(1), 30.0, None);
        let whole = run(&mut model(2, &cfg), Duration::from_secs(1), 20_000);
        assert!(whole.iter().flatten().any(|r| r.injected.is_some()));
        let mut first = model(2, &cfg);
        let head = run(&mut first, Duration::from_secs(1), 7_777);
        let json = serde_json::to_string(&first.snapshot()).unwrap();
        let snapshot: GenericSnapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(snapshot, first.snapshot());
        assert_eq!(snapshot.seq(), 7_777);
        let mut resumed = model(2, &cfg);
        assert!(resumed.restore(&snapshot));
        let tail: Vec<Vec<Reading>> =
            (7_777..20_000).map(|i| resumed.sample(START_NS + i * 1_000_000_000)).collect();
        assert_eq!(head, whole[..7_777]);
        assert_eq!(tail, whole[7_777..]);

        // A profile whose channels changed does not take it.
        let mut fewer = compressor();
        fewer.channels.pop();
        let device = DeviceId::new("compressor-03").unwrap();
        let mut other = GenericModel::new(device, &fewer, 2, &cfg);
        assert!(!other.restore(&snapshot));
        assert_eq!(other.seq(), 0);
    }

    #[test]
    fn anomalies_leave_the_healthy_signal_untouched() {
        let calm = config(11, TEN_S, 0.0, None);
        let busy = config(11, TEN_S, 20.0, None);
        let a = run(&mut model(2, &calm), TEN_S, 20_000);
        let b = run(&mut model(2, &busy), TEN_S, 20_000);
        let mut injected = 0;
        for (ra, rb) in a.iter().flatten().zip(b.iter().flatten()) {
            if rb.injected.is_some() {
                injected += 1;
            } else {
                assert_eq!(ra, rb);
            }
        }
        assert!(injected > 100, "{injected} injected readings");
    }

    #[test]
    fn irregular_steps_stay_in_range() {
        let cfg = config(5, TEN_S, 0.0, None);
        let mut m = model(1, &cfg);
        let mut ts = START_NS;
        for i in 0..5_000i64 {
            ts += [0, 1_000_000, 10_000_000_000, 3_600_000_000_000, 400_000_000_000_000]
                [(i % 97 % 5) as usize];
            for r in m.sample(ts) {
                assert!(in_range(&m, &r), "{r:?}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn non_injected_readings_are_finite_and_in_range(seed in any::<u64>(), index in 0u32..100_000) {
            let cfg = config(seed, Duration::from_secs(30), 6.0, None);
            let mut m = model(index, &cfg);
            for i in 0..2_880i64 {
                for r in m.sample(START_NS + i * 30_000_000_000) {
                    prop_assert!(r.value.is_finite());
                    if r.injected.is_none() {
                        prop_assert!(in_range(&m, &r), "{:?}", r);
                    }
                }
            }
        }
    }
}
