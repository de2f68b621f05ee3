//! One simulated device: a machine with a duty cycle whose four sensors follow its load, the time
//! of day and slow drifts.
//!
//! The healthy signal is a small state machine advanced once per sample:
//!
//! - **duty cycle**: the machine runs for 20-90 min, rests for 5-30 min; while it runs its load
//!   target changes every 5-20 min (0.3-1.0). `spin` (how far the machine is running) and `load`
//!   follow their targets through first-order lags, so switching is smooth.
//! - **temperature** = per-device base + daily cycle (peak mid-afternoon UTC, from the absolute
//!   timestamp) + mean-reverting drift (Ornstein-Uhlenbeck) + lagged load heating + noise.
//! - **vibration** RMS: idle level when off, `15 + 55 * load` when running, noise proportional.
//! - **pressure** follows `spin * load` (about 1.3 bar idle to 4.2 bar at full load) with a lag.
//! - **humidity** = base - 1.5 * (temperature - 25) + slow drift + noise.
//!
//! Values are softly clamped into each sensor's typical range and rounded to its resolution. The
//! [`AnomalyInjector`] then alters at most one sensor. The healthy state and the injector draw
//! from separate random streams, so turning anomalies on or off never changes a healthy reading.

use std::f64::consts::TAU;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use sentio_config::SimulatorConfig;
use sentio_core::{AnomalyKind, DeviceId, Reading, SensorKind};

use serde::{Deserialize, Serialize};

use super::anomaly::{AnomalyInjector, InjectorSnapshot};

const DAY_NS: i64 = 86_400_000_000_000;
/// Steps longer than this (a gap in the caller's timestamps) are simulated as this long.
const MAX_STEP_NS: i64 = DAY_NS;

/// Key domain of the healthy-signal random stream ("SENTIO/H").
const HEALTHY_DOMAIN: u64 = 0x5345_4e54_494f_2f48;

// Duty cycle (seconds, load fraction); the generic model runs the same machine.
const ON_S: (f64, f64) = (20.0 * 60.0, 90.0 * 60.0);
const OFF_S: (f64, f64) = (5.0 * 60.0, 30.0 * 60.0);
const LOAD_CHANGE_S: (f64, f64) = (5.0 * 60.0, 20.0 * 60.0);
const LOAD: (f64, f64) = (0.3, 1.0);
pub(crate) const SPIN_TAU_S: f64 = 20.0;
pub(crate) const LOAD_TAU_S: f64 = 60.0;

// Temperature (°C).
const TEMP_BASE: (f64, f64) = (22.0, 27.0);
const TEMP_DAILY_AMP: (f64, f64) = (2.5, 3.5);
/// Daily peak at 15:00 UTC, give or take half an hour per device.
const TEMP_PEAK_S: (f64, f64) = (14.5 * 3600.0, 15.5 * 3600.0);
const TEMP_DRIFT_SIGMA: f64 = 0.8;
const TEMP_DRIFT_TAU_S: f64 = 6.0 * 3600.0;
const HEAT_GAIN: (f64, f64) = (2.0, 5.0);
const HEAT_TAU_S: f64 = 15.0 * 60.0;
const TEMP_NOISE: f64 = 0.12;

// Vibration (RMS).
const VIB_IDLE: (f64, f64) = (1.5, 3.5);
const VIB_RUN_BASE: f64 = 15.0;
const VIB_RUN_SPAN: f64 = 55.0;
const VIB_NOISE_REL: f64 = 0.04;
const VIB_NOISE_ABS: f64 = 0.15;

// Pressure (bar).
const PRESSURE_IDLE: (f64, f64) = (1.2, 1.4);
const PRESSURE_SPAN: (f64, f64) = (2.7, 3.0);
const PRESSURE_TAU_S: f64 = 30.0;
const PRESSURE_NOISE: f64 = 0.02;

// Humidity (%).
const HUMIDITY_BASE: (f64, f64) = (52.0, 58.0);
const HUMIDITY_PER_DEGREE: f64 = -1.5;
const HUMIDITY_REF_TEMP: f64 = 25.0;
const HUMIDITY_DRIFT_SIGMA: f64 = 2.5;
const HUMIDITY_DRIFT_TAU_S: f64 = 3.0 * 3600.0;
const HUMIDITY_NOISE: f64 = 0.3;

/// Readings per unit: values are rounded to `1 / scale` (0.01, or 0.001 bar for pressure).
pub fn resolution_scale(sensor: SensorKind) -> f64 {
    match sensor {
        SensorKind::Pressure => 1000.0,
        _ => 100.0,
    }
}

/// `value` rounded to the sensor's resolution. Dividing the rounded integer (rather than
/// multiplying by 0.01) gives the f64 nearest the decimal, which prints in the fewest digits.
pub fn round_to_resolution(sensor: SensorKind, value: f64) -> f64 {
    let scale = resolution_scale(sensor);
    (value * scale).round() / scale
}

/// A ChaCha8 stream keyed by `(seed, domain)` and numbered by the device index: the same inputs
/// give the same numbers on every platform and in every version of `rand_chacha` 0.9.
pub(crate) fn device_rng(seed: u64, index: u32, domain: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&domain.to_le_bytes());
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(u64::from(index));
    rng
}

/// Maps `x` into `[lo, hi]`: unchanged in the middle, compressed smoothly (tanh) within `margin`
/// of either bound (which only far-out values reach, once tanh rounds to 1).
pub(crate) fn soft_clamp(x: f64, lo: f64, hi: f64, margin: f64) -> f64 {
    let upper = hi - margin;
    let lower = lo + margin;
    if x > upper {
        upper + margin * ((x - upper) / margin).tanh()
    } else if x < lower {
        lower - margin * ((lower - x) / margin).tanh()
    } else {
        x
    }
}

/// The healthy value of `sensor`, softly clamped into its typical range and rounded.
fn finish(sensor: SensorKind, raw: f64) -> f64 {
    let range = sensor.typical_range();
    let (lo, hi) = (*range.start(), *range.end());
    // A NaN cannot arise from the model's arithmetic; map it to the middle all the same.
    let raw = if raw.is_finite() { raw } else { (lo + hi) / 2.0 };
    round_to_resolution(sensor, soft_clamp(raw, lo, hi, (hi - lo) * 0.02))
}

pub(crate) fn uniform(rng: &mut ChaCha8Rng, (lo, hi): (f64, f64)) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

pub(crate) fn normal(rng: &mut ChaCha8Rng) -> f64 {
    rng.sample(StandardNormal)
}

/// A device's fixed parameters, drawn once from its seed.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceParams {
    pub temp_base: f64,
    pub temp_daily_amp: f64,
    /// Second of the UTC day at which the daily cycle peaks.
    pub temp_peak_s: f64,
    /// Degrees the machine heats up at full load.
    pub heat_gain: f64,
    pub vib_idle: f64,
    pub pressure_idle: f64,
    /// Pressure above idle at full load.
    pub pressure_span: f64,
    pub humidity_base: f64,
}

/// Lag and Ornstein-Uhlenbeck coefficients for one step length, cached because the step is
/// almost always the cadence.
#[derive(Debug, Clone, Copy)]
struct StepCoefficients {
    dt_ns: i64,
    dt_s: f64,
    spin: f64,
    load: f64,
    heat: f64,
    pressure: f64,
    temp_rho: f64,
    temp_sigma: f64,
    humidity_rho: f64,
    humidity_sigma: f64,
}

impl StepCoefficients {
    fn new(dt_ns: i64) -> Self {
        let dt_s = dt_ns as f64 / 1e9;
        let lag = |tau: f64| 1.0 - (-dt_s / tau).exp();
        let ou = |tau: f64, sigma: f64| {
            let rho = (-dt_s / tau).exp();
            (rho, sigma * (1.0 - rho * rho).max(0.0).sqrt())
        };
        let (temp_rho, temp_sigma) = ou(TEMP_DRIFT_TAU_S, TEMP_DRIFT_SIGMA);
        let (humidity_rho, humidity_sigma) = ou(HUMIDITY_DRIFT_TAU_S, HUMIDITY_DRIFT_SIGMA);
        Self {
            dt_ns,
            dt_s,
            spin: lag(SPIN_TAU_S),
            load: lag(LOAD_TAU_S),
            heat: lag(HEAT_TAU_S),
            pressure: lag(PRESSURE_TAU_S),
            temp_rho,
            temp_sigma,
            humidity_rho,
            humidity_sigma,
        }
    }
}

/// The machine's schedule: running or resting, and while running, the load it is asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DutyCycle {
    pub(crate) on: bool,
    /// Seconds left in the current on or off period.
    phase_left_s: f64,
    pub(crate) load_target: f64,
    /// Seconds until the load target changes (while on).
    load_left_s: f64,
}

impl DutyCycle {
    /// A schedule drawn from its long-run behaviour, so no warm-up is visible.
    pub(crate) fn initial(rng: &mut ChaCha8Rng) -> Self {
        let mean_on = (ON_S.0 + ON_S.1) / 2.0;
        let mean_off = (OFF_S.0 + OFF_S.1) / 2.0;
        let on = rng.random::<f64>() < mean_on / (mean_on + mean_off);
        let phase_left_s = uniform(rng, if on { ON_S } else { OFF_S }) * rng.random::<f64>();
        let load_target = uniform(rng, LOAD);
        let load_left_s = uniform(rng, LOAD_CHANGE_S) * rng.random::<f64>();
        Self { on, phase_left_s, load_target, load_left_s }
    }

    /// Advances the on/off periods and the load schedule by `dt_s`.
    pub(crate) fn advance(&mut self, rng: &mut ChaCha8Rng, dt_s: f64) {
        self.phase_left_s -= dt_s;
        while self.phase_left_s <= 0.0 {
            self.on = !self.on;
            self.phase_left_s += uniform(rng, if self.on { ON_S } else { OFF_S });
            if self.on {
                self.load_target = uniform(rng, LOAD);
                self.load_left_s = uniform(rng, LOAD_CHANGE_S);
            }
        }
        if self.on {
            self.load_left_s -= dt_s;
            while self.load_left_s <= 0.0 {
                self.load_target = uniform(rng, LOAD);
                self.load_left_s += uniform(rng, LOAD_CHANGE_S);
            }
        }
    }
}

/// The evolving healthy state of one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct HealthyState {
    /// Flattened: the snapshot's JSON keeps the fields it had before the schedule was shared.
    #[serde(flatten)]
    duty: DutyCycle,
    /// 0 (stopped) to 1 (running), lagging `on`.
    spin: f64,
    /// Lagging `load_target`.
    load: f64,
    /// Degrees of load heating, lagging `heat_gain * spin * load`.
    heat: f64,
    /// Pressure before noise, lagging its load-driven target.
    pressure: f64,
    temp_drift: f64,
    humidity_drift: f64,
}

impl HealthyState {
    /// A state drawn from the model's long-run behaviour, so no warm-up is visible.
    fn initial(rng: &mut ChaCha8Rng, p: &DeviceParams) -> Self {
        let duty = DutyCycle::initial(rng);
        let spin = if duty.on { 1.0 } else { 0.0 };
        let load_target = duty.load_target;
        let mech = spin * load_target;
        Self {
            duty,
            spin,
            load: load_target,
            heat: p.heat_gain * mech,
            pressure: p.pressure_idle + p.pressure_span * mech,
            temp_drift: TEMP_DRIFT_SIGMA * normal(rng),
            humidity_drift: HUMIDITY_DRIFT_SIGMA * normal(rng),
        }
    }

    /// Advances by one step and returns the healthy readings at `ts_ns`, in `SensorKind::ALL`
    /// order, clamped and rounded.
    fn step(
        &mut self,
        rng: &mut ChaCha8Rng,
        p: &DeviceParams,
        c: &StepCoefficients,
        ts_ns: i64,
    ) -> [f64; 4] {
        self.duty.advance(rng, c.dt_s);
        let spin_target = if self.duty.on { 1.0 } else { 0.0 };
        self.spin += c.spin * (spin_target - self.spin);
        self.load += c.load * (self.duty.load_target - self.load);
        let mech = self.spin * self.load;
        self.heat += c.heat * (p.heat_gain * mech - self.heat);
        let pressure_target = p.pressure_idle + p.pressure_span * mech;
        self.pressure += c.pressure * (pressure_target - self.pressure);
        self.temp_drift = c.temp_rho * self.temp_drift + c.temp_sigma * normal(rng);
        self.humidity_drift = c.humidity_rho * self.humidity_drift + c.humidity_sigma * normal(rng);

        let second_of_day = ts_ns.rem_euclid(DAY_NS) as f64 / 1e9;
        let daily = p.temp_daily_amp * (TAU * (second_of_day - p.temp_peak_s) / 86_400.0).cos();
        let temp_clean = p.temp_base + daily + self.temp_drift + self.heat;
        let temperature = temp_clean + TEMP_NOISE * normal(rng);

        let vib_mean =
            p.vib_idle * (1.0 - self.spin) + self.spin * (VIB_RUN_BASE + VIB_RUN_SPAN * self.load);
        let vibration = vib_mean + (VIB_NOISE_REL * vib_mean + VIB_NOISE_ABS) * normal(rng);

        let pressure = self.pressure + PRESSURE_NOISE * normal(rng);

        let humidity = p.humidity_base
            + HUMIDITY_PER_DEGREE * (temp_clean - HUMIDITY_REF_TEMP)
            + self.humidity_drift
            + HUMIDITY_NOISE * normal(rng);

        [
            finish(SensorKind::Temperature, temperature),
            finish(SensorKind::Vibration, vibration),
            finish(SensorKind::Pressure, pressure),
            finish(SensorKind::Humidity, humidity),
        ]
    }
}

/// What a [`DeviceModel`] carries from one sample to the next (its parameters and settings come
/// from the seed and the configuration). A model restored from the snapshot taken after sample `n`
/// produces sample `n + 1` onwards exactly as the original would have: the same levels, load,
/// duty cycle, `seq` and anomaly schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceSnapshot {
    /// Position in the healthy signal's random stream.
    word_pos: u128,
    state: HealthyState,
    last_ts_ns: Option<i64>,
    seq: u64,
    injector: InjectorSnapshot,
}

impl DeviceSnapshot {
    /// The sequence number of the next sample.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

/// One simulated device: its healthy signal model plus its anomaly injector.
pub struct DeviceModel {
    device: DeviceId,
    rng: ChaCha8Rng,
    params: DeviceParams,
    state: HealthyState,
    coefficients: StepCoefficients,
    cadence_ns: i64,
    last_ts_ns: Option<i64>,
    seq: u64,
    injector: AnomalyInjector,
}

impl DeviceModel {
    /// `index` is the device's position (0-based); the random streams are seeded from
    /// `(config.seed, index)` only, with ChaCha8 (stable across platforms and versions), so the
    /// same seed gives the same stream byte for byte.
    pub fn new(device: DeviceId, index: u32, config: &SimulatorConfig) -> Self {
        let mut rng = device_rng(config.seed, index, HEALTHY_DOMAIN);
        let params = DeviceParams {
            temp_base: uniform(&mut rng, TEMP_BASE),
            temp_daily_amp: uniform(&mut rng, TEMP_DAILY_AMP),
            temp_peak_s: uniform(&mut rng, TEMP_PEAK_S),
            heat_gain: uniform(&mut rng, HEAT_GAIN),
            vib_idle: uniform(&mut rng, VIB_IDLE),
            pressure_idle: uniform(&mut rng, PRESSURE_IDLE),
            pressure_span: uniform(&mut rng, PRESSURE_SPAN),
            humidity_base: uniform(&mut rng, HUMIDITY_BASE),
        };
        let state = HealthyState::initial(&mut rng, &params);
        let cadence_ns = i64::try_from(config.cadence.as_nanos()).unwrap_or(MAX_STEP_NS);
        let cadence_ns = cadence_ns.clamp(1, MAX_STEP_NS);
        Self {
            device,
            rng,
            params,
            state,
            coefficients: StepCoefficients::new(cadence_ns),
            cadence_ns,
            last_ts_ns: None,
            seq: 0,
            injector: AnomalyInjector::new(config.seed, index, config),
        }
    }

    pub fn device(&self) -> &DeviceId {
        &self.device
    }

    pub fn params(&self) -> &DeviceParams {
        &self.params
    }

    pub fn snapshot(&self) -> DeviceSnapshot {
        DeviceSnapshot {
            word_pos: self.rng.get_word_pos(),
            state: self.state.clone(),
            last_ts_ns: self.last_ts_ns,
            seq: self.seq,
            injector: self.injector.snapshot(),
        }
    }

    /// Continues from `snapshot`, taken from a model of the same device index, seed and settings.
    pub fn restore(&mut self, snapshot: &DeviceSnapshot) {
        self.rng.set_word_pos(snapshot.word_pos);
        self.state = snapshot.state.clone();
        self.last_ts_ns = snapshot.last_ts_ns;
        self.seq = snapshot.seq;
        self.injector.restore(&snapshot.injector);
    }

    /// The sequence number the next sample gets.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Numbers the next sample `seq` (a device whose earlier state is lost keeps its numbering).
    pub fn set_seq(&mut self, seq: u64) {
        self.seq = seq;
    }

    /// The timestamp of the last sample, if any.
    pub fn last_ts_ns(&self) -> Option<i64> {
        self.last_ts_ns
    }

    /// The anomaly episode in progress after the last sample, if any.
    pub fn active_anomaly(&self) -> Option<AnomalyKind> {
        self.injector.active()
    }

    /// The four readings (`SensorKind::ALL` order) at `ts_ns`. Successive calls are expected
    /// `cadence` apart (other steps work too: the state advances by the elapsed time, at most a
    /// day). Sequence numbers per sensor start at 0 and increase by 1 each call.
    pub fn sample(&mut self, ts_ns: i64) -> [Reading; 4] {
        let dt_ns = match self.last_ts_ns {
            Some(prev) => ts_ns.saturating_sub(prev).clamp(0, MAX_STEP_NS),
            None => self.cadence_ns,
        };
        self.last_ts_ns = Some(ts_ns);
        if dt_ns != self.coefficients.dt_ns {
            self.coefficients = StepCoefficients::new(dt_ns);
        }
        let mut values = self.state.step(&mut self.rng, &self.params, &self.coefficients, ts_ns);
        let injected = self.injector.apply(ts_ns, &mut values);
        let seq = self.seq;
        self.seq += 1;
        SensorKind::ALL.map(|sensor| Reading {
            device: self.device.clone(),
            sensor: sensor.into(),
            unit: sensor.into(),
            ts_ns,
            value: values[sensor.index()],
            seq,
            injected: injected.filter(|kind| kind.sensor() == Some(sensor)),
            ts_source: sentio_core::TsSource::Event,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use proptest::prelude::*;
    use sentio_config::{AnomalyConfig, AnomalyMix, GenericMix};

    use super::*;

    /// 2026-01-01T00:00:00Z.
    pub(crate) const START_NS: i64 = 1_767_225_600_000_000_000;

    /// A config with `rate_per_hour` and, when `only` is set, that kind alone in the mix.
    pub(crate) fn config(
        seed: u64,
        cadence: Duration,
        rate_per_hour: f64,
        only: Option<AnomalyKind>,
    ) -> SimulatorConfig {
        let w = |kind: AnomalyKind| match only {
            Some(k) if k != kind => 0.0,
            _ => 1.0,
        };
        SimulatorConfig {
            devices: 4,
            device_prefix: "pump".into(),
            cadence,
            seed,
            speedup: 1.0,
            anomalies: AnomalyConfig {
                rate_per_hour,
                min_duration: Duration::from_secs(30),
                max_duration: Duration::from_secs(180),
                mix: AnomalyMix {
                    temperature_spike: w(AnomalyKind::TemperatureSpike),
                    temperature_drop: w(AnomalyKind::TemperatureDrop),
                    vibration_spike: w(AnomalyKind::VibrationSpike),
                    vibration_noise: w(AnomalyKind::VibrationNoise),
                    pressure_drop: w(AnomalyKind::PressureDrop),
                    pressure_flat: w(AnomalyKind::PressureFlat),
                    humidity_high: w(AnomalyKind::HumidityHigh),
                    humidity_low: w(AnomalyKind::HumidityLow),
                },
                generic_mix: GenericMix {
                    spike: w(AnomalyKind::Spike),
                    drop: w(AnomalyKind::Drop),
                    flat: w(AnomalyKind::Flat),
                    noise: w(AnomalyKind::Noise),
                    level_shift: w(AnomalyKind::LevelShift),
                },
            },
        }
    }

    pub(crate) fn model(index: u32, config: &SimulatorConfig) -> DeviceModel {
        let device = DeviceId::new(&format!("pump-{:02}", index + 1)).unwrap();
        DeviceModel::new(device, index, config)
    }

    /// `n` samples, cadence apart from `START_NS`, as `[temperature, vibration, pressure,
    /// humidity]` rows of full readings.
    pub(crate) fn run(model: &mut DeviceModel, cadence: Duration, n: usize) -> Vec<[Reading; 4]> {
        let step = cadence.as_nanos() as i64;
        (0..n).map(|i| model.sample(START_NS + i as i64 * step)).collect()
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

    fn column(rows: &[[Reading; 4]], sensor: SensorKind) -> Vec<f64> {
        rows.iter().map(|r| r[sensor.index()].value).collect()
    }

    const TEN_S: Duration = Duration::from_secs(10);
    const THREE_DAYS_AT_10S: usize = 3 * 8640;

    #[test]
    fn same_seed_and_index_give_identical_streams() {
        let cfg = config(7, Duration::from_secs(1), 5.0, None);
        let a = run(&mut model(3, &cfg), Duration::from_secs(1), 10_000);
        let b = run(&mut model(3, &cfg), Duration::from_secs(1), 10_000);
        assert_eq!(a, b);
        assert!(a.iter().flatten().any(|r| r.injected.is_some()), "the run injects anomalies");

        let other_index = run(&mut model(4, &cfg), Duration::from_secs(1), 10_000);
        let values = |rows: &[[Reading; 4]]| -> Vec<f64> {
            rows.iter().flatten().map(|r| r.value).collect()
        };
        assert_ne!(values(&a), values(&other_index));
        let other_seed = config(8, Duration::from_secs(1), 5.0, None);
        let c = run(&mut model(3, &other_seed), Duration::from_secs(1), 10_000);
        assert_ne!(values(&a), values(&c));
    }

    /// A restart resumes the signals: the model restored from a snapshot (through its JSON form,
    /// as the demo stores it) continues exactly as the uninterrupted one, anomalies included.
    #[test]
    fn a_restored_snapshot_continues_the_stream_exactly() {
        let cfg = config(7, Duration::from_secs(1), 30.0, None);
        let whole = run(&mut model(2, &cfg), Duration::from_secs(1), 20_000);
        assert!(whole.iter().flatten().any(|r| r.injected.is_some()));

        let mut first = model(2, &cfg);
        let head = run(&mut first, Duration::from_secs(1), 7_777);
        let json = serde_json::to_string(&first.snapshot()).unwrap();
        let snapshot: DeviceSnapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(snapshot, first.snapshot());
        assert_eq!(snapshot.seq(), 7_777);

        let mut resumed = model(2, &cfg);
        resumed.restore(&snapshot);
        let tail: Vec<[Reading; 4]> =
            (7_777..20_000).map(|i| resumed.sample(START_NS + i * 1_000_000_000)).collect();
        assert_eq!(head, whole[..7_777]);
        assert_eq!(tail, whole[7_777..]);
    }

    #[test]
    fn readings_carry_device_sensor_timestamp_and_sequence() {
        let cfg = config(1, TEN_S, 0.0, None);
        let rows = run(&mut model(0, &cfg), TEN_S, 100);
        for (i, row) in rows.iter().enumerate() {
            for (sensor, r) in SensorKind::ALL.into_iter().zip(row) {
                assert_eq!(r.device.as_str(), "pump-01");
                assert_eq!(r.sensor, sensor);
                assert_eq!(r.seq, i as u64);
                assert_eq!(r.ts_ns, START_NS + i as i64 * 10_000_000_000);
                assert_eq!(r.injected, None);
                assert_eq!(r.value, round_to_resolution(sensor, r.value));
            }
        }
    }

    #[test]
    fn healthy_signal_is_in_range_correlated_and_cyclic() {
        let cfg = config(42, TEN_S, 0.0, None);
        let (mut afternoon, mut night) = (Vec::new(), Vec::new());
        for index in 0..4 {
            let rows = run(&mut model(index, &cfg), TEN_S, THREE_DAYS_AT_10S);
            for row in &rows {
                for r in row {
                    assert!(r.injected.is_none());
                    assert!(r.sensor.kind().unwrap().typical_range().contains(&r.value), "{r:?}");
                }
            }
            let t = column(&rows, SensorKind::Temperature);
            let v = column(&rows, SensorKind::Vibration);
            let p = column(&rows, SensorKind::Pressure);
            let h = column(&rows, SensorKind::Humidity);
            let r_ht = pearson(&h, &t);
            let r_pv = pearson(&p, &v);
            assert!(r_ht < -0.5, "device {index}: corr(humidity, temperature) = {r_ht}");
            assert!(r_pv > 0.8, "device {index}: corr(pressure, vibration) = {r_pv}");

            // Both running and resting periods, each a sizeable share of the time.
            let off = v.iter().filter(|&&x| x < 6.0).count() as f64 / v.len() as f64;
            let on = v.iter().filter(|&&x| x > 15.0).count() as f64 / v.len() as f64;
            assert!(off > 0.05 && on > 0.4, "device {index}: off {off}, on {on}");

            // An hour around 15:00 UTC and around 03:00 UTC, every day.
            for (row, temp) in rows.iter().zip(&t) {
                let hour = (row[0].ts_ns.rem_euclid(DAY_NS) as f64 / 1e9 - 1800.0) / 3600.0;
                match hour.floor() as i64 {
                    14 => afternoon.push(*temp),
                    2 => night.push(*temp),
                    _ => {}
                }
            }
        }
        let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
        let (day, night) = (mean(&afternoon), mean(&night));
        assert!(day > night + 2.0, "15:00 mean {day} vs 03:00 mean {night}");
    }

    #[test]
    fn machine_changes_state_smoothly() {
        // Pressure follows load through a lag: no jump from idle to full load between samples.
        let cfg = config(3, Duration::from_secs(1), 0.0, None);
        let rows = run(&mut model(0, &cfg), Duration::from_secs(1), 20_000);
        let p = column(&rows, SensorKind::Pressure);
        let max_jump = p.windows(2).map(|w| (w[1] - w[0]).abs()).fold(0.0, f64::max);
        assert!(max_jump < 0.5, "largest one-second pressure step {max_jump}");
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
            // Repeated timestamps, small and large steps, and gaps of several days.
            ts += [0, 1_000_000, 10_000_000_000, 3_600_000_000_000, 400_000_000_000_000]
                [(i % 97 % 5) as usize];
            for r in m.sample(ts) {
                assert!(r.sensor.kind().unwrap().typical_range().contains(&r.value), "{r:?}");
            }
        }
    }

    #[test]
    fn soft_clamp_is_monotonic_and_stays_inside() {
        let mut prev = f64::NEG_INFINITY;
        for i in -2000..2000 {
            let x = i as f64 * 0.05;
            let y = soft_clamp(x, 0.0, 10.0, 0.5);
            assert!((0.0..=10.0).contains(&y) && y >= prev, "{x} -> {y}");
            if (0.5..=9.5).contains(&x) {
                assert_eq!(x, y);
            }
            prev = y;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn non_injected_readings_are_finite_and_in_range(seed in any::<u64>(), index in 0u32..100_000) {
            let cfg = config(seed, Duration::from_secs(30), 6.0, None);
            let mut m = model(index, &cfg);
            for i in 0..2_880i64 {
                for r in m.sample(START_NS + i * 30_000_000_000) {
                    prop_assert!(r.value.is_finite());
                    if r.injected.is_none() {
                        prop_assert!(r.sensor.kind().unwrap().typical_range().contains(&r.value), "{:?}", r);
                    }
                }
            }
        }
    }
}
