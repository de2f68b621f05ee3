//! Training data: history from the store, aligned, split in time, standardized and windowed.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use sentio_config::{DetrendChannels, TrainConfig, TrainSplit};
use sentio_core::DeviceId;
use sentio_store::{RangeQuery, ReadingStore};
use serde::{Deserialize, Serialize};

use crate::features::window::{gather, thin};
use crate::features::{
    AlignSettings, Columns, PostProcess, Scaler, Series, SeriesBuilder, Split, SplitPoints,
    WindowRef, WindowSettings,
};

/// The store is read in slices of this length, all devices at once, so memory holds one slice of
/// readings plus the frames.
const QUERY_SLICE_NS: i64 = 3_600 * 1_000_000_000;

/// What went into the data set, for the run's parameters and the user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DataReport {
    /// The span of the data: from the first slot with a reading to the end of the last one,
    /// within the range asked for. The split divides this span.
    pub from_ns: i64,
    pub to_ns: i64,
    pub devices: Vec<String>,
    pub readings: u64,
    pub frames: u64,
    /// Windows with no hole and few enough filled cells.
    pub usable_windows: u64,
    /// Usable windows that hold a ground-truth label: never trained, validated or calibrated on.
    pub labelled_windows: u64,
    /// Usable windows that straddle a split boundary.
    pub straddling_windows: u64,
    pub train_windows: u64,
    /// Training windows dropped by `train.max_train_windows`.
    pub thinned_windows: u64,
    pub validation_windows: u64,
    pub calibration_windows: u64,
    pub validation_from_ns: i64,
    pub calibration_from_ns: i64,
}

/// Windows of one split, standardized: `len × window × columns` f32, row-major.
#[derive(Debug, Clone, Default)]
pub struct Windows {
    pub data: Vec<f32>,
    pub refs: Vec<WindowRef>,
}

impl Windows {
    pub fn len(&self) -> usize {
        self.refs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.refs.is_empty()
    }
}

/// Everything training needs, prepared.
pub struct Prepared {
    pub columns: Columns,
    /// The frames as measured (the stuck-sensor check's yardstick comes from them).
    pub series: Vec<Series>,
    /// The frames as the model sees them ([`PostProcess::model_input`]), when they differ.
    pub inputs: Option<Vec<Series>>,
    pub post: PostProcess,
    /// Each column's slowness on the training part (`features::post::slowness`), with
    /// `train.detrend = "slow"`; empty otherwise.
    pub slowness: Vec<f64>,
    pub points: SplitPoints,
    pub scaler: Scaler,
    pub train: Windows,
    pub validation: Windows,
    /// With `train.split = "none"`: the training windows (all of them, before thinning).
    pub calibration: Windows,
    pub report: DataReport,
}

impl Prepared {
    /// The series as the model sees them.
    pub fn inputs(&self) -> &[Series] {
        self.inputs.as_deref().unwrap_or(&self.series)
    }
}

/// Reads the `columns` of `[from_ns, to_ns)` from the store (the devices of `config.devices`, or
/// all) into one aligned series per device. `progress(done_ns, total_ns)` is called after each
/// slice.
pub async fn load_series(
    store: &dyn ReadingStore,
    config: &TrainConfig,
    columns: &Columns,
    from_ns: i64,
    to_ns: i64,
    progress: impl FnMut(i64, i64, u64),
) -> anyhow::Result<(Vec<Series>, u64)> {
    let cadence_ns = i64::try_from(config.cadence.as_nanos()).unwrap_or(i64::MAX);
    let devices: Vec<DeviceId> = config
        .devices
        .iter()
        .map(|d| DeviceId::new(d).with_context(|| format!("train.devices: {d:?}")))
        .collect::<anyhow::Result<_>>()?;
    let align = AlignSettings { cadence_ns, fill_limit: config.fill_limit };
    read_series(store, &devices, columns, align, from_ns, to_ns, progress).await
}

/// Reads the `columns` of `[from_ns, to_ns)` of `devices` (all when empty) into one aligned
/// series per device with any of them, slice by slice; `progress(done_ns, total_ns, readings)` is
/// called after each slice.
pub async fn read_series(
    store: &dyn ReadingStore,
    devices: &[DeviceId],
    columns: &Columns,
    align: AlignSettings,
    from_ns: i64,
    to_ns: i64,
    mut progress: impl FnMut(i64, i64, u64),
) -> anyhow::Result<(Vec<Series>, u64)> {
    let mut builders: BTreeMap<DeviceId, SeriesBuilder> = BTreeMap::new();
    let mut readings = 0u64;
    let mut at = from_ns;
    while at < to_ns {
        let end = at.saturating_add(QUERY_SLICE_NS).min(to_ns);
        // Only the channels the model reads: others are stored, not modelled.
        let query = RangeQuery {
            devices: devices.to_vec(),
            sensors: columns.channels().to_vec(),
            from_ns: at,
            to_ns: end,
        };
        let rows = store.query_range(&query).await.context("reading history from the store")?;
        readings += rows.len() as u64;
        for r in &rows {
            builders
                .entry(r.device.clone())
                .or_insert_with(|| {
                    SeriesBuilder::new(
                        r.device.clone(),
                        columns.clone(),
                        from_ns,
                        to_ns,
                        align.cadence_ns,
                    )
                })
                .push(r);
        }
        progress(end - from_ns, to_ns - from_ns, readings);
        at = end;
    }
    let series = builders.into_values().map(|b| b.finish(align.fill_limit)).collect();
    Ok((series, readings))
}

/// From the start of the first slot holding a reading (a value not filled in) of any series to
/// the end of the last such slot, clamped to `[from_ns, to_ns)`; `None` when no slot holds one.
fn data_span(series: &[Series], from_ns: i64, to_ns: i64) -> Option<(i64, i64)> {
    let observed = |s: &Series, row: usize| {
        s.row(row).iter().enumerate().any(|(i, v)| !v.is_nan() && s.filled[row] & (1 << i) == 0)
    };
    let mut span: Option<(i64, i64)> = None;
    for s in series {
        let Some(first) = (0..s.len()).find(|&r| observed(s, r)) else { continue };
        let last = (first..s.len()).rev().find(|&r| observed(s, r)).unwrap_or(first);
        let (start, end) = (s.ts_ns(first).max(from_ns), s.ts_ns(last + 1).min(to_ns));
        span = Some(span.map_or((start, end), |(a, b)| (a.min(start), b.max(end))));
    }
    span.filter(|(a, b)| a < b)
}

/// Splits, fits the scaler on the training part, cuts and standardizes the windows.
///
/// The split is over the data that is there: the time span from the first to the last reading
/// in `[from_ns, to_ns)`, not the range itself. A range longer than the history (the default
/// `train.lookback` before a short `sentio demo`, or a wide `--from/--to`) would otherwise leave
/// the training part empty or the calibration part in the future.
pub fn prepare(
    columns: Columns,
    score_weights: &[f64],
    series: Vec<Series>,
    readings: u64,
    config: &TrainConfig,
    from_ns: i64,
    to_ns: i64,
) -> anyhow::Result<Prepared> {
    if series.is_empty() {
        bail!(
            "the store holds no readings between {} and {}: ingest some first \
             (`sentio simulate --backfill` and `sentio ingest`, or `sentio demo`)",
            sentio_core::time::format_rfc3339(from_ns),
            sentio_core::time::format_rfc3339(to_ns)
        );
    }
    let Some((from_ns, to_ns)) = data_span(&series, from_ns, to_ns) else {
        bail!(
            "the store holds no sensor values between {} and {}",
            sentio_core::time::format_rfc3339(from_ns),
            sentio_core::time::format_rfc3339(to_ns)
        );
    };
    let points = match config.split {
        TrainSplit::Time => SplitPoints::new(
            from_ns,
            to_ns,
            config.validation_fraction,
            config.calibration_fraction,
        ),
        TrainSplit::None => SplitPoints::new(from_ns, to_ns, 0.0, 0.0),
    };
    let width = columns.len();
    let slowness = match config.detrend {
        DetrendChannels::Slow => {
            crate::features::post::slowness(series.iter().map(|s| (s, points.train_rows(s))), width)
        }
        DetrendChannels::None | DetrendChannels::All => Vec::new(),
    };
    let detrend: Vec<usize> = match config.detrend {
        DetrendChannels::None => Vec::new(),
        DetrendChannels::All => (0..width).collect(),
        DetrendChannels::Slow => {
            (0..width).filter(|&c| slowness[c] > config.detrend_slowness).collect()
        }
    };
    // Each column's weight: the profile's score weight, times `train.detrend_weight` where the
    // column is detrended. Kept only when one differs from 1, so that such a card scores as
    // before.
    anyhow::ensure!(
        score_weights.len() == width,
        "{} score weights for {width} channels",
        score_weights.len()
    );
    anyhow::ensure!(
        score_weights.iter().any(|&w| w > 0.0),
        "every channel's score_weight is 0: give at least one channel of the profile a weight \
         above 0"
    );
    let weights: Vec<f64> = (0..width)
        .map(|c| {
            let detrended = if detrend.contains(&c) { config.detrend_weight } else { 1.0 };
            score_weights[c] * detrended
        })
        .collect();
    let weights = if weights.iter().all(|&w| w == 1.0) { Vec::new() } else { weights };
    let post = PostProcess {
        detrend,
        detrend_frames: config.detrend_window,
        smooth: config.smooth,
        stride: config.stride,
        weights,
    };
    let inputs = post.model_inputs(&series);
    let model_series = inputs.as_deref().unwrap_or(&series);
    let scaler = Scaler::fit(model_series.iter().map(|s| (s, points.train_rows(s)))).context(
        "the training part of the range holds fewer than two normal readings of some sensor; \
         widen the range (--from/--to or train.lookback)",
    )?;
    let settings = WindowSettings {
        window: config.window,
        stride: config.stride,
        max_filled_fraction: config.max_filled_fraction,
    };
    let usable = crate::features::cut_windows(&series, settings);
    let mut report = DataReport {
        from_ns,
        to_ns,
        devices: series.iter().map(|s| s.device.to_string()).collect(),
        readings,
        frames: series.iter().map(|s| s.len() as u64).sum(),
        usable_windows: usable.len() as u64,
        validation_from_ns: points.validation_ns,
        calibration_from_ns: points.calibration_ns,
        ..DataReport::default()
    };
    let mut parts: [Vec<WindowRef>; 3] = Default::default();
    for w in usable {
        if w.labelled {
            report.labelled_windows += 1;
            continue;
        }
        let s = &series[w.series];
        let start = s.ts_ns(w.start);
        let end = s.ts_ns(w.start + config.window);
        match points.of(start, end) {
            Some(Split::Train) => parts[0].push(w),
            Some(Split::Validation) => parts[1].push(w),
            Some(Split::Calibration) => parts[2].push(w),
            None => report.straddling_windows += 1,
        }
    }
    let [train, validation, calibration] = parts;
    let kept = thin(&train, config.max_train_windows);
    report.thinned_windows = (train.len() - kept.len()) as u64;
    report.train_windows = kept.len() as u64;
    report.validation_windows = validation.len() as u64;
    report.calibration_windows = calibration.len() as u64;
    let need = |n: usize, what: &str| -> anyhow::Result<()> {
        if n == 0 {
            bail!(
                "no usable {what} windows ({} frames per window, {} usable windows in all, {} \
                 with ground-truth labels): train on a longer range or a shorter train.window",
                config.window,
                report.usable_windows,
                report.labelled_windows
            );
        }
        Ok(())
    };
    need(kept.len(), "training")?;
    let calibration = match config.split {
        TrainSplit::Time => {
            need(validation.len(), "validation")?;
            need(calibration.len(), "calibration")?;
            calibration
        }
        // Every window trained: the threshold comes from them all.
        TrainSplit::None => train,
    };
    report.calibration_windows = calibration.len() as u64;
    let t = config.window;
    let windows = |refs: Vec<WindowRef>| Windows {
        data: gather(inputs.as_deref().unwrap_or(&series), &refs, t, &scaler),
        refs,
    };
    Ok(Prepared {
        columns,
        train: windows(kept),
        validation: windows(validation),
        calibration: windows(calibration),
        series,
        inputs,
        post,
        slowness,
        points,
        scaler,
        report,
    })
}
