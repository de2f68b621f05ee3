//! Live readings to frames and windows, per device, in event time: the streaming counterpart of
//! `features::align` and `features::window::cut_windows`, giving the same frames and windows for
//! the same readings (tested against them).
//!
//! A frame (one slot of the model's cadence) is complete as soon as every channel of the model
//! has a reading in it. One still missing a sensor waits until the device's newest reading is
//! `grace` past the end of its slot, and is then completed without it: filled from the sensor's
//! last value within the fill limit, as in training, or left with a hole (no window covering it is
//! scored). Frames are released strictly in slot order. A reading for a slot already released is
//! *late*: it is counted and not scored (the store still has it, so a replay sees it).
//!
//! Where the model card detrends columns, each released frame also gets the model's input
//! ([`Detrender`]), from the frames released before it, as the batch path computes it.

use std::collections::{BTreeMap, VecDeque};

use sentio_core::Reading;

use crate::features::Columns;
use crate::features::align::{Filler, slot_of};
use crate::features::post::Detrender;

/// How readings become frames and windows (from the model card and `[detect]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameSettings {
    pub cadence_ns: i64,
    pub fill_limit: u32,
    /// Event time a frame missing a sensor waits for it.
    pub grace_ns: i64,
    /// Frames per window.
    pub window: usize,
    /// Frames between the starts of consecutive scored windows.
    pub stride: usize,
    /// Windows with more than this share of filled cells are not scored.
    pub max_filled_fraction: f64,
}

/// One slot's readings so far.
#[derive(Debug, Clone)]
struct Slot {
    /// NaN: no reading yet.
    cells: Vec<f64>,
    missing: usize,
    /// Event time of the newest reading in the slot.
    newest_ns: i64,
}

impl Slot {
    fn empty(width: usize) -> Slot {
        Slot { cells: vec![f64::NAN; width], missing: width, newest_ns: i64::MIN }
    }
}

/// A released frame.
#[derive(Debug, Clone, PartialEq)]
struct Frame {
    slot: i64,
    values: Vec<f64>,
    /// The model's input, when it differs from `values` (detrended columns); empty otherwise.
    inputs: Vec<f64>,
    filled: u64,
    newest_ns: i64,
}

/// A window ready to score: raw values, `[window][columns]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadyWindow {
    pub start_ns: i64,
    /// End of the window (exclusive), as in `ScoredWindow::end_ns`.
    pub end_ns: i64,
    /// Event time of the newest reading in the window (detection latency counts from it).
    pub newest_ns: i64,
    /// The measured values (the stuck-sensor check reads them).
    pub values: Vec<f64>,
    /// The model's input, same layout, when the card detrends columns; empty otherwise (the
    /// input is `values`).
    pub inputs: Vec<f64>,
}

/// What [`DeviceFrames::push`] did with a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Accepted,
    /// Its slot was already released.
    Late,
}

/// One device's frames in progress and its window of recent frames.
#[derive(Debug, Clone)]
pub struct DeviceFrames {
    settings: FrameSettings,
    columns: Columns,
    /// The next slot to release; `None` before the first reading.
    next_slot: Option<i64>,
    pending: BTreeMap<i64, Slot>,
    newest_ns: i64,
    filler: Filler,
    detrender: Detrender,
    recent: VecDeque<Frame>,
    /// Frames released since the window was last full and due, for the stride.
    since_window: usize,
}

impl DeviceFrames {
    /// `detrender` (the model card's, `PostProcess::detrender`) gives the model's inputs.
    pub fn new(settings: FrameSettings, columns: Columns, detrender: Detrender) -> DeviceFrames {
        DeviceFrames {
            settings,
            filler: Filler::new(columns.len()),
            detrender,
            columns,
            next_slot: None,
            pending: BTreeMap::new(),
            newest_ns: i64::MIN,
            recent: VecDeque::with_capacity(settings.window + 1),
            since_window: 0,
        }
    }

    /// Takes one reading (any order within the grace period).
    pub fn push(&mut self, r: &Reading) -> Pushed {
        let slot = slot_of(r.ts_ns, self.settings.cadence_ns);
        if self.next_slot.is_some_and(|next| slot < next) {
            return Pushed::Late;
        }
        // A channel the model does not read has no column (stored, not modelled).
        let Some(column) = self.columns.index(&r.sensor) else {
            return Pushed::Accepted;
        };
        let width = self.columns.len();
        let cell = self.pending.entry(slot).or_insert_with(|| Slot::empty(width));
        if cell.cells[column].is_nan() {
            cell.missing -= 1;
        }
        cell.cells[column] = r.value;
        cell.newest_ns = cell.newest_ns.max(r.ts_ns);
        self.newest_ns = self.newest_ns.max(r.ts_ns);
        Pushed::Accepted
    }

    /// Releases every frame that is complete or past its grace period, in slot order, and
    /// appends the windows they complete to `out`.
    pub fn release(&mut self, out: &mut Vec<ReadyWindow>) {
        let s = self.settings;
        loop {
            let next = match self.next_slot {
                Some(next) => next,
                None => match self.pending.keys().next() {
                    Some(&first) => first,
                    None => return,
                },
            };
            let complete = self.pending.get(&next).is_some_and(|slot| slot.missing == 0);
            let slot_end = (next + 1).saturating_mul(s.cadence_ns);
            let expired = slot_end.saturating_add(s.grace_ns) <= self.newest_ns;
            if !complete && !expired {
                return;
            }
            // A long silence: no window can span it, so jump ahead rather than releasing every
            // empty slot in between; not past a slot that may still get readings in its grace.
            if !self.pending.contains_key(&next)
                && let Some(&first) = self.pending.keys().next()
            {
                let open = slot_of(self.newest_ns.saturating_sub(s.grace_ns), s.cadence_ns);
                let target = first.min(open).max(next);
                if target - next > s.window as i64 + i64::from(s.fill_limit) {
                    self.recent.clear();
                    self.since_window = 0;
                    self.filler = Filler::new(self.columns.len());
                    self.next_slot = Some(target);
                    continue;
                }
            }
            let slot =
                self.pending.remove(&next).unwrap_or_else(|| Slot::empty(self.columns.len()));
            let mut values = Vec::with_capacity(self.columns.len());
            let filled = self.filler.fill(&slot.cells, s.fill_limit, &mut values);
            let mut inputs = Vec::new();
            if self.detrender.is_active() {
                self.detrender.apply(next, &values, &mut inputs);
            }
            self.next_slot = Some(next + 1);
            let newest_ns = slot.newest_ns;
            self.recent.push_back(Frame { slot: next, values, inputs, filled, newest_ns });
            if self.recent.len() > s.window {
                self.recent.pop_front();
            }
            self.since_window += 1;
            // Windows start every `stride` frames, the first one when the window first fills.
            if self.recent.len() == s.window
                && self.since_window >= s.window
                && (self.since_window - s.window).is_multiple_of(s.stride)
                && let Some(w) = self.window()
            {
                out.push(w);
            }
        }
    }

    /// The current window, unless it has a hole or too many filled cells.
    fn window(&self) -> Option<ReadyWindow> {
        let s = self.settings;
        let max_filled =
            (s.max_filled_fraction * (s.window * self.columns.len()) as f64).floor() as usize;
        let mut filled = 0usize;
        for f in &self.recent {
            if f.values.iter().any(|v| v.is_nan()) {
                return None;
            }
            filled += f.filled.count_ones() as usize;
        }
        if filled > max_filled {
            return None;
        }
        let first = self.recent.front()?;
        let last = self.recent.back()?;
        Some(ReadyWindow {
            start_ns: first.slot.saturating_mul(s.cadence_ns),
            end_ns: (last.slot + 1).saturating_mul(s.cadence_ns),
            newest_ns: self.recent.iter().map(|f| f.newest_ns).max().unwrap_or(i64::MIN),
            values: self.recent.iter().flat_map(|f| f.values.iter().copied()).collect(),
            inputs: self.recent.iter().flat_map(|f| f.inputs.iter().copied()).collect(),
        })
    }

    /// Slots waiting for readings.
    pub fn pending_slots(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use sentio_core::{DeviceId, SensorKind};

    use super::*;
    use crate::features::{AlignSettings, PostProcess, WindowSettings, align, cut_windows};

    const S: i64 = 1_000_000_000;

    fn settings(window: usize, stride: usize) -> FrameSettings {
        FrameSettings {
            cadence_ns: S,
            fill_limit: 2,
            grace_ns: 2 * S,
            window,
            stride,
            max_filled_fraction: 0.1,
        }
    }

    fn reading(sensor: SensorKind, ts_ns: i64, value: f64) -> Reading {
        Reading::pump(DeviceId::new("d").unwrap(), sensor, ts_ns, value, 0)
    }

    /// `n` seconds of readings, with some missing and some out of order (within the grace).
    fn stream(n: i64) -> Vec<Reading> {
        let mut out = Vec::new();
        for t in 0..n {
            for s in SensorKind::ALL {
                // A sensor silent for a slot now and then, and a longer outage that leaves holes.
                if (t % 13 == 5 && s == SensorKind::Pressure)
                    || (40..45).contains(&t) && s.index() == 3
                {
                    continue;
                }
                out.push(reading(
                    s,
                    t * S + 10 * s.index() as i64,
                    (t * 4 + s.index() as i64) as f64,
                ));
            }
        }
        // Swap neighbours: arrival order differs from event order by one slot at most.
        for i in (0..out.len() - 8).step_by(11) {
            out.swap(i, i + 5);
        }
        out
    }

    fn none() -> Detrender {
        PostProcess::default().detrender()
    }

    fn run(readings: &[Reading], settings: FrameSettings) -> (Vec<ReadyWindow>, usize) {
        run_with(readings, settings, &PostProcess::default())
    }

    fn run_with(
        readings: &[Reading],
        settings: FrameSettings,
        post: &PostProcess,
    ) -> (Vec<ReadyWindow>, usize) {
        let mut frames = DeviceFrames::new(settings, Columns::pump(), post.detrender());
        let mut out = Vec::new();
        let mut late = 0;
        for r in readings {
            if frames.push(r) == Pushed::Late {
                late += 1;
            }
            frames.release(&mut out);
        }
        (out, late)
    }

    #[test]
    fn gives_the_windows_of_the_batch_path() {
        let readings = stream(120);
        for stride in [1, 3] {
            let (live, late) = run(&readings, settings(16, stride));
            assert_eq!(late, 0);
            let align_settings = AlignSettings { cadence_ns: S, fill_limit: 2 };
            let series = align(
                DeviceId::new("d").unwrap(),
                &Columns::pump(),
                &readings,
                0,
                120 * S,
                align_settings,
            );
            let wanted = cut_windows(
                std::slice::from_ref(&series),
                WindowSettings { window: 16, stride, max_filled_fraction: 0.1 },
            );
            assert!(wanted.len() > 20, "{}", wanted.len());
            // The batch path sees the last slots too; live, the newest may still wait.
            assert!(
                live.len() <= wanted.len() && live.len() + 2 >= wanted.len(),
                "stride {stride}"
            );
            for (l, w) in live.iter().zip(&wanted) {
                assert_eq!(l.start_ns, series.ts_ns(w.start));
                assert_eq!(l.end_ns, series.ts_ns(w.start + 16));
                assert_eq!(l.values, series.rows(w.start..w.start + 16).to_vec());
            }
        }
    }

    #[test]
    fn detrended_inputs_are_those_of_the_batch_path() {
        // Pressure and humidity detrended over 7 frames; a missing sensor now and then, holes,
        // out-of-order arrival within the grace, and a long silence.
        let mut readings = stream(120);
        readings.extend(stream(60).into_iter().map(|mut r| {
            r.ts_ns += 600 * S;
            r
        }));
        let post = PostProcess { detrend: vec![2, 3], detrend_frames: 7, ..Default::default() };
        let (live, _) = run_with(&readings, settings(16, 1), &post);
        let mut ordered = readings.clone();
        ordered.sort_by_key(|r| r.ts_ns);
        let align_settings = AlignSettings { cadence_ns: S, fill_limit: 2 };
        let series = align(
            DeviceId::new("d").unwrap(),
            &Columns::pump(),
            &ordered,
            0,
            660 * S,
            align_settings,
        );
        let inputs = post.model_input(&series).unwrap();
        assert!(live.len() > 100, "{}", live.len());
        for l in &live {
            let start = usize::try_from(l.start_ns / S).unwrap();
            assert_eq!(l.values, series.rows(start..start + 16).to_vec());
            assert_eq!(l.inputs, inputs.rows(start..start + 16).to_vec(), "window at {start}");
            assert_ne!(l.inputs, l.values);
        }
        let (plain, _) = run(&readings, settings(16, 1));
        assert!(plain.iter().all(|w| w.inputs.is_empty()), "no detrending, no second copy");
    }

    #[test]
    fn a_frame_waits_for_a_missing_sensor_only_for_the_grace_period() {
        let mut frames = DeviceFrames::new(settings(1, 1), Columns::pump(), none());
        let mut out = Vec::new();
        for s in [SensorKind::Temperature, SensorKind::Vibration, SensorKind::Pressure] {
            frames.push(&reading(s, 0, 1.0));
        }
        frames.release(&mut out);
        assert!(out.is_empty(), "humidity may still come");
        frames.push(&reading(SensorKind::Temperature, 2 * S + 5, 1.0));
        frames.release(&mut out);
        assert!(out.is_empty(), "1 s past the slot, within the 2 s grace");
        frames.push(&reading(SensorKind::Humidity, 3 * S, 1.0));
        frames.release(&mut out);
        // Slot 0 expired with a hole (nothing to fill from): no window; slot 1 and 2 too.
        assert!(out.is_empty());
        assert_eq!(frames.push(&reading(SensorKind::Humidity, 10, 1.0)), Pushed::Late);
        // Slots 1 and 2 expire (holes: no window); slot 3 has humidity only and may still fill.
        frames.push(&reading(SensorKind::Temperature, 5 * S, 1.0));
        frames.release(&mut out);
        assert!(out.is_empty());
        for s in [SensorKind::Temperature, SensorKind::Vibration, SensorKind::Pressure] {
            frames.push(&reading(s, 3 * S + 1, 2.0));
        }
        frames.release(&mut out);
        assert_eq!(out.len(), 1, "a complete frame is released at once");
        assert_eq!(out[0].start_ns, 3 * S);
        assert_eq!(out[0].newest_ns, 3 * S + 1);
    }

    #[test]
    fn any_profile_s_frame_is_complete_once_each_of_its_channels_reported() {
        let columns = Columns::new(
            ["current", "flow"].map(|c| sentio_core::Channel::new(c).unwrap()).to_vec(),
        );
        let mut frames = DeviceFrames::new(settings(2, 1), columns, none());
        let at = |sensor: &str, ts_ns: i64, value: f64| Reading {
            sensor: sentio_core::Channel::new(sensor).unwrap(),
            ..reading(SensorKind::Temperature, ts_ns, value)
        };
        let mut out = Vec::new();
        for t in 0..2 {
            frames.push(&at("current", t * S, 1.0 + t as f64));
            // A pump channel of this device is not one of the model's: it completes nothing.
            frames.push(&at("temperature", t * S, 20.0));
            frames.release(&mut out);
            assert!(out.is_empty(), "flow may still come");
            frames.push(&at("flow", t * S + 1, 5.0));
            frames.release(&mut out);
        }
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].values, [1.0, 5.0, 2.0, 5.0]);
    }

    #[test]
    fn a_long_silence_restarts_the_window() {
        let mut readings = stream(30);
        readings.extend(stream(30).into_iter().map(|mut r| {
            r.ts_ns += 3_600 * S;
            r
        }));
        let (live, late) = run(&readings, settings(8, 1));
        assert_eq!(late, 0);
        assert!(live.iter().all(|w| w.end_ns - w.start_ns == 8 * S), "no window spans the gap");
        assert!(live.iter().any(|w| w.start_ns >= 3_600 * S));
    }
}
