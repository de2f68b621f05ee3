//! The store path: replay a stored range through a registered model and compare what it raised
//! with the simulator's ground truth (the anomaly kind every injected reading carries).
//!
//! - **Points** are the frames (one per device and cadence slot holding a reading). A frame is
//!   labelled when any of its readings carries an injected kind. It is predicted anomalous while
//!   an alert is open: from the window that opened the alert to the last window above the
//!   threshold. Point and event metrics then follow [`super::metrics`], pooled over devices.
//! - **Alerts** are judged as the detection tests judge them: an alert is true when its span
//!   (first window start to last window end) overlaps a fault of its device, the fault extended
//!   by one model window (the windows that still hold the fault's last frame). A fault is caught
//!   when a true alert overlaps it; its delay is the time from its first frame to the opening of
//!   the first such alert (0 when the alert was already open). Per anomaly kind: faults, caught,
//!   recall, mean delay, and how many of the caught faults' first alerts named the kind's sensor
//!   as the top contributor. False alerts are counted by the sensor they named.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use sentio_core::time::NANOS_PER_SEC;
use sentio_core::{AlertState, AnomalyKind, Channel, DeviceId};
use sentio_store::{RangeQuery, ReadingStore};
use serde::Serialize;

use super::metrics::{Scores, Tally, evaluate, runs};
use crate::detect::{AlertSettings, Scorer, replay};
use crate::features::align::slot_of;

/// The store is read in slices of this length.
const QUERY_SLICE_NS: i64 = 3_600 * NANOS_PER_SEC;

/// One anomaly kind's faults and how many alerts caught.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KindReport {
    pub kind: AnomalyKind,
    pub events: u64,
    pub detected: u64,
    pub recall: f64,
    pub delay_mean_s: Option<f64>,
    /// Caught faults whose first alert names the kind's sensor as the top contributor.
    pub top_sensor_right: u64,
}

/// Alerts against faults.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertReport {
    pub alerts: u64,
    pub true_alerts: u64,
    /// True alerts over alerts (event-level precision of the alerts).
    pub precision: f64,
    pub events: u64,
    pub detected: u64,
    pub recall: f64,
    pub delay_mean_s: Option<f64>,
    pub delay_median_s: Option<f64>,
    pub delay_max_s: Option<f64>,
    /// Alerts over no fault, by the sensor they named as the top contributor.
    pub false_by_sensor: BTreeMap<String, u64>,
}

/// What the store path found.
#[derive(Debug, Clone, Serialize)]
pub struct StoreEvaluation {
    pub model_name: String,
    pub model_version: String,
    pub threshold: f64,
    pub from_ns: i64,
    pub to_ns: i64,
    pub readings: u64,
    pub devices: usize,
    pub windows: usize,
    /// Point-wise and event metrics over frames, pooled over devices.
    pub points: Scores,
    /// The counts behind `points`, to pool several evaluations.
    #[serde(skip)]
    pub tally: Tally,
    pub alerts: AlertReport,
    /// Per anomaly kind, in [`AnomalyKind::ALL`] order (kinds with no fault left out).
    pub kinds: Vec<KindReport>,
}

/// A fault: a run of labelled frames of one device.
struct Fault {
    device: DeviceId,
    kind: AnomalyKind,
    /// The channel the fault was injected on; `None` for an imported label, which names none.
    channel: Option<Channel>,
    from_ns: i64,
    to_ns: i64,
}

/// An alert's life: opened at `opened_ns`, spanning `start_ns..=end_ns`.
struct Life {
    device: DeviceId,
    opened_ns: i64,
    start_ns: i64,
    end_ns: i64,
    /// The channel the alert named first (at its peak).
    top: Option<Channel>,
}

/// Replays `[from_ns, to_ns)` of `devices` (all when empty) through `scorer` with the alert
/// `settings`, and scores the alerts against the ground truth stored with the readings.
pub async fn evaluate_store(
    store: &dyn ReadingStore,
    scorer: Arc<Scorer>,
    devices: &[DeviceId],
    from_ns: i64,
    to_ns: i64,
    stride: usize,
    settings: AlertSettings,
) -> anyhow::Result<StoreEvaluation> {
    let found = replay(store, scorer.clone(), devices, from_ns, to_ns, stride, settings).await?;
    let cadence = scorer.align().cadence_ns;
    let truth =
        ground_truth(store, devices, scorer.columns().channels(), from_ns, to_ns, cadence).await?;
    anyhow::ensure!(
        truth.values().flatten().any(|(_, k)| k.is_some()),
        "no reading between {} and {} carries a ground-truth label: the store path evaluates \
         simulated data (`sentio simulate`), whose readings name the anomaly injected",
        sentio_core::time::format_rfc3339(from_ns),
        sentio_core::time::format_rfc3339(to_ns)
    );
    let lives = lives(&found.alerts)?;

    let mut points = Tally::default();
    let mut faults = Vec::new();
    for (device, frames) in &truth {
        let ts: Vec<i64> = frames.iter().map(|(slot, _)| slot * cadence).collect();
        let labels: Vec<bool> = frames.iter().map(|(_, k)| k.is_some()).collect();
        // The frame at `t` is last in the window ending at `t + cadence`.
        let mine: Vec<&Life> = lives.iter().filter(|l| l.device == *device).collect();
        let predicted: Vec<bool> = ts
            .iter()
            .map(|&t| mine.iter().any(|l| l.opened_ns <= t + cadence && t + cadence <= l.end_ns))
            .collect();
        let (tally, _) = evaluate(&predicted, &labels, &ts)?;
        points.add(&tally);
        for run in runs(&labels) {
            let (kind, channel) =
                frames[run.start].1.clone().context("a labelled frame without a kind")?;
            faults.push(Fault {
                device: device.clone(),
                kind,
                channel: (kind != AnomalyKind::Labelled).then_some(channel),
                from_ns: ts[run.start],
                to_ns: ts[run.end - 1],
            });
        }
    }

    let span = scorer.card().window as i64 * cadence;
    let overlaps = |l: &Life, f: &Fault| {
        l.device == f.device && l.start_ns <= f.to_ns + span && l.end_ns >= f.from_ns
    };
    let true_alerts = lives.iter().filter(|l| faults.iter().any(|f| overlaps(l, f))).count();
    let mut false_by_sensor: BTreeMap<String, u64> = BTreeMap::new();
    for l in lives.iter().filter(|l| !faults.iter().any(|f| overlaps(l, f))) {
        let top = l.top.as_ref().map_or("-", Channel::as_str);
        *false_by_sensor.entry(top.to_owned()).or_default() += 1;
    }
    let mut delays = Vec::new();
    let mut per_kind: BTreeMap<AnomalyKind, (u64, u64, Vec<f64>, u64)> = BTreeMap::new();
    for f in &faults {
        let entry = per_kind.entry(f.kind).or_default();
        entry.0 += 1;
        let first = lives.iter().filter(|l| overlaps(l, f)).min_by_key(|l| l.opened_ns);
        if let Some(first) = first {
            let delay = (first.opened_ns - f.from_ns).max(0) as f64 / NANOS_PER_SEC as f64;
            entry.1 += 1;
            entry.2.push(delay);
            entry.3 += u64::from(f.channel.is_some() && first.top == f.channel);
            delays.push(delay);
        }
    }
    let kinds = per_kind
        .into_iter()
        .map(|(kind, (events, detected, d, right))| KindReport {
            kind,
            events,
            detected,
            recall: ratio(detected, events),
            delay_mean_s: mean(&d),
            top_sensor_right: right,
        })
        .collect();
    delays.sort_by(f64::total_cmp);
    let detected = delays.len() as u64;
    let alerts = AlertReport {
        alerts: lives.len() as u64,
        true_alerts: true_alerts as u64,
        precision: ratio(true_alerts as u64, lives.len() as u64),
        events: faults.len() as u64,
        detected,
        recall: ratio(detected, faults.len() as u64),
        delay_mean_s: mean(&delays),
        delay_median_s: (!delays.is_empty()).then(|| {
            let n = delays.len();
            if n % 2 == 1 { delays[n / 2] } else { (delays[n / 2 - 1] + delays[n / 2]) / 2.0 }
        }),
        delay_max_s: delays.last().copied(),
        false_by_sensor,
    };
    Ok(StoreEvaluation {
        model_name: scorer.model().name.clone(),
        model_version: scorer.model().version.clone(),
        threshold: scorer.threshold(),
        from_ns,
        to_ns,
        readings: found.readings,
        devices: truth.len(),
        windows: found.scores.values().map(Vec::len).sum(),
        points: points.scores(),
        tally: points,
        alerts,
        kinds,
    })
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 { 0.0 } else { num as f64 / den as f64 }
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// A slot's ground truth: the kind injected into one of its readings, and that reading's channel.
type Truth = Option<(AnomalyKind, Channel)>;

/// Per device, each slot holding a reading of `channels` in time order, with the kind injected
/// into any of the slot's readings.
async fn ground_truth(
    store: &dyn ReadingStore,
    devices: &[DeviceId],
    channels: &[Channel],
    from_ns: i64,
    to_ns: i64,
    cadence_ns: i64,
) -> anyhow::Result<BTreeMap<DeviceId, Vec<(i64, Truth)>>> {
    let mut slots: BTreeMap<DeviceId, BTreeMap<i64, Truth>> = BTreeMap::new();
    let mut at = from_ns;
    while at < to_ns {
        let end = at.saturating_add(QUERY_SLICE_NS).min(to_ns);
        // The modelled channels' ground truth: other channels' readings are not scored.
        let query = RangeQuery {
            devices: devices.to_vec(),
            sensors: channels.to_vec(),
            from_ns: at,
            to_ns: end,
        };
        let rows = store.query_range(&query).await.context("reading the ground truth")?;
        for r in rows {
            let cell = slots
                .entry(r.device.clone())
                .or_default()
                .entry(slot_of(r.ts_ns, cadence_ns))
                .or_insert(None);
            if cell.is_none() {
                *cell = r.injected.map(|kind| (kind, r.sensor.clone()));
            }
        }
        at = end;
    }
    Ok(slots.into_iter().map(|(d, s)| (d, s.into_iter().collect())).collect())
}

/// Pairs each resolved alert with its opening message.
fn lives(alerts: &[sentio_core::Alert]) -> anyhow::Result<Vec<Life>> {
    let mut opened: BTreeMap<&str, i64> = BTreeMap::new();
    let mut out = Vec::new();
    for a in alerts {
        match a.state {
            AlertState::Opened => {
                opened.insert(&a.alert_id, a.window_end_ns);
            }
            AlertState::Updated => {}
            AlertState::Resolved => {
                let opened_ns = *opened
                    .get(a.alert_id.as_str())
                    .with_context(|| format!("alert {} resolved but never opened", a.alert_id))?;
                out.push(Life {
                    device: a.device.clone(),
                    opened_ns,
                    start_ns: a.window_start_ns,
                    end_ns: a.window_end_ns,
                    top: a.top_sensor().cloned(),
                });
            }
        }
    }
    Ok(out)
}
