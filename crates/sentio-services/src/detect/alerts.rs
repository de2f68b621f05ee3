//! From window scores to alerts: open after the score has stayed above the threshold for a while,
//! update when the alert escalates, resolve after a quiet cooldown.
//!
//! One [`AlertTracker`] per device consumes that device's scored windows in event-time order. An
//! alert's life is one `opened`, any number of `updated` (severity rose), one `resolved`, all
//! with the same id, so a consumer can deduplicate and a dashboard can show what is open.

use std::time::Duration;

use sentio_core::{Alert, AlertState, Channel, DeviceId, Severity};

use crate::features::Columns;

/// How scores become alerts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlertSettings {
    /// The score must stay above the threshold this long (by window end time) before an alert
    /// opens; zero opens on the first window above it.
    pub open_after: Duration,
    /// An open alert resolves once no window has been above the threshold for this long.
    pub cooldown: Duration,
    /// A peak score at or above `critical_factor × threshold` makes the alert critical.
    pub critical_factor: f64,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            open_after: Duration::from_secs(5),
            cooldown: Duration::from_secs(30),
            critical_factor: 3.0,
        }
    }
}

/// One scored window of one device.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredWindow {
    pub start_ns: i64,
    /// End of the window (exclusive): the event time the score belongs to.
    pub end_ns: i64,
    pub score: f64,
    /// Each column's mean squared error relative to its normal level (its mean over the
    /// calibration windows), in the model's column order: the alert's `sensor_share` comes
    /// from it.
    pub sensor_error: Vec<f64>,
}

/// The model an alert names, and the channels its windows' columns are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    pub name: String,
    pub version: String,
    pub sensors: Columns,
}

/// An alert in progress.
#[derive(Debug, Clone)]
struct Open {
    id: String,
    first_start_ns: i64,
    peak: ScoredWindow,
    severity: Severity,
    /// End of the latest window above the threshold: the alert's window ends there.
    last_above_ns: i64,
}

/// The alert state of one device.
#[derive(Debug, Clone)]
pub struct AlertTracker {
    device: DeviceId,
    settings: AlertSettings,
    /// Before an alert opens: the first and the highest window of the current run above the
    /// threshold.
    pending: Option<(ScoredWindow, ScoredWindow)>,
    open: Option<Open>,
}

impl AlertTracker {
    pub fn new(device: DeviceId, settings: AlertSettings) -> AlertTracker {
        AlertTracker { device, settings, pending: None, open: None }
    }

    /// Whether an alert is open.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Feeds one window (in event-time order); returns the alert messages it causes.
    /// `detected_at_ns` is the wall-clock time of scoring.
    pub fn observe(
        &mut self,
        w: &ScoredWindow,
        threshold: f64,
        model: &ModelRef,
        detected_at_ns: i64,
    ) -> Vec<Alert> {
        let mut out = Vec::new();
        let cooldown = duration_ns(self.settings.cooldown);
        let above = w.score > threshold;
        // Quiet for the whole cooldown (or a gap in the data as long): the alert is over. A zero
        // cooldown ends it at the first window not above the threshold, never at one above it.
        if self.open.as_ref().is_some_and(|open| {
            w.end_ns - open.last_above_ns >= cooldown && (!above || cooldown > 0)
        }) {
            out.extend(self.resolve(threshold, model, detected_at_ns));
        }
        if !above {
            self.pending = None;
            return out;
        }
        if let Some(open) = &mut self.open {
            open.last_above_ns = w.end_ns;
            if w.score > open.peak.score {
                open.peak = w.clone();
            }
            let severity = severity(open.peak.score, threshold, self.settings);
            if severity > open.severity {
                open.severity = severity;
                out.push(self.message(AlertState::Updated, threshold, model, detected_at_ns));
            }
            return out;
        }
        let (first, mut peak) = self.pending.take().unwrap_or_else(|| (w.clone(), w.clone()));
        if w.score > peak.score {
            peak = w.clone();
        }
        if w.end_ns - first.end_ns < duration_ns(self.settings.open_after) {
            self.pending = Some((first, peak));
            return out;
        }
        self.pending = None;
        self.open = Some(Open {
            id: format!("{}-{}-{}", self.device, model.version, first.end_ns),
            first_start_ns: first.start_ns,
            severity: severity(peak.score, threshold, self.settings),
            peak,
            last_above_ns: w.end_ns,
        });
        out.push(self.message(AlertState::Opened, threshold, model, detected_at_ns));
        out
    }

    /// Resolves an open alert (at the end of a replay, or when the detector stops).
    pub fn resolve(
        &mut self,
        threshold: f64,
        model: &ModelRef,
        detected_at_ns: i64,
    ) -> Option<Alert> {
        self.open.as_ref()?;
        let alert = self.message(AlertState::Resolved, threshold, model, detected_at_ns);
        self.open = None;
        Some(alert)
    }

    fn message(
        &self,
        state: AlertState,
        threshold: f64,
        model: &ModelRef,
        detected_at_ns: i64,
    ) -> Alert {
        let Some(open) = &self.open else {
            unreachable!("message() is only called with an open alert")
        };
        Alert {
            alert_id: open.id.clone(),
            device: self.device.clone(),
            state,
            window_start_ns: open.first_start_ns,
            window_end_ns: open.last_above_ns,
            score: open.peak.score,
            threshold,
            severity: open.severity,
            sensor_share: named_shares(&model.sensors, &open.peak.sensor_error),
            model_name: model.name.clone(),
            model_version: model.version.clone(),
            detected_at_ns,
        }
    }
}

fn duration_ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn severity(peak: f64, threshold: f64, settings: AlertSettings) -> Severity {
    if peak >= settings.critical_factor * threshold {
        Severity::Critical
    } else {
        Severity::Warning
    }
}

/// Each column's share of the reconstruction error (sums to 1; equal shares when all are 0).
pub fn shares(error: &[f64]) -> Vec<f64> {
    let total: f64 = error.iter().sum();
    if total > 0.0 && total.is_finite() {
        error.iter().map(|e| e / total).collect()
    } else {
        vec![1.0 / error.len().max(1) as f64; error.len()]
    }
}

/// The index of the column with the largest share, the first on ties.
pub fn top_sensor(share: &[f64]) -> usize {
    (0..share.len()).fold(0, |best, s| if share[s] > share[best] { s } else { best })
}

/// The shares of `error` named by the model's channels, in display order (as an [`Alert`] keeps
/// them).
pub fn named_shares(columns: &Columns, error: &[f64]) -> Vec<(Channel, f64)> {
    let mut named: Vec<(Channel, f64)> =
        columns.channels().iter().cloned().zip(shares(error)).collect();
    named.sort_by(|a, b| a.0.display_cmp(&b.0));
    named
}

/// Resolves every stored alert still open (opened or updated), as it last stood, stamped
/// `now_ns`, and returns them. The process that is its store's only detector calls this when it
/// starts: an alert left open by a process that was killed has no detector behind it any more,
/// and would stay open for good. If the anomaly goes on, the new detector opens a new alert.
pub async fn resolve_orphaned(
    store: &dyn sentio_store::ReadingStore,
    now_ns: i64,
) -> Result<Vec<Alert>, sentio_store::StoreError> {
    let open: Vec<Alert> = store
        .anomalies(&sentio_store::AnomalyQuery::all())
        .await?
        .into_iter()
        .filter(|a| a.state != AlertState::Resolved)
        .map(|a| Alert { state: AlertState::Resolved, detected_at_ns: now_ns, ..a })
        .collect();
    if !open.is_empty() {
        store.save_alerts(&open).await?;
    }
    Ok(open)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Before, an alert open at a kill -9 stayed open forever: the dashboard showed the device
    /// alerting with no detector behind it.
    #[tokio::test]
    async fn alerts_left_open_are_resolved_as_they_stood() {
        #![allow(clippy::unwrap_used)]
        use sentio_store::ReadingStore;
        let store = sentio_store::sqlite::SqliteStore::open_in_memory().unwrap();
        store.migrate().await.unwrap();
        let alert = |id: &str, state| Alert {
            alert_id: id.into(),
            device: DeviceId::new("pump-01").unwrap(),
            state,
            window_start_ns: 10 * S,
            window_end_ns: 70 * S,
            score: 2.0,
            threshold: 1.0,
            severity: Severity::Warning,
            sensor_share: named_shares(&Columns::pump(), &[0.7, 0.1, 0.1, 0.1]),
            model_name: "m".into(),
            model_version: "1".into(),
            detected_at_ns: 70 * S,
        };
        let saved = [alert("a", AlertState::Updated), alert("b", AlertState::Resolved)];
        store.save_alerts(&saved).await.unwrap();
        let resolved = resolve_orphaned(&store, 99 * S).await.unwrap();
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].alert_id, "a");
        let all = store.anomalies(&sentio_store::AnomalyQuery::all()).await.unwrap();
        assert!(all.iter().all(|a| a.state == AlertState::Resolved), "{all:?}");
        let a = all.iter().find(|a| a.alert_id == "a").unwrap();
        assert_eq!((a.score, a.window_end_ns, a.detected_at_ns), (2.0, 70 * S, 99 * S));
        assert!(resolve_orphaned(&store, 100 * S).await.unwrap().is_empty());
    }

    const S: i64 = 1_000_000_000;

    fn model() -> ModelRef {
        ModelRef { name: "m".into(), version: "3".into(), sensors: Columns::pump() }
    }

    fn window(end_s: i64, score: f64) -> ScoredWindow {
        ScoredWindow {
            start_ns: (end_s - 64) * S,
            end_ns: end_s * S,
            score,
            sensor_error: vec![score * 0.1, score * 0.7, score * 0.1, score * 0.1],
        }
    }

    fn run(scores: &[(i64, f64)], settings: AlertSettings) -> Vec<Alert> {
        let mut t = AlertTracker::new(DeviceId::new("pump-01").unwrap(), settings);
        let mut out = Vec::new();
        for &(end, score) in scores {
            out.extend(t.observe(&window(end, score), 1.0, &model(), 0));
        }
        out.extend(t.resolve(1.0, &model(), 0));
        out
    }

    fn states(alerts: &[Alert]) -> Vec<AlertState> {
        alerts.iter().map(|a| a.state).collect()
    }

    #[test]
    fn a_short_blip_opens_nothing() {
        let s = AlertSettings { open_after: Duration::from_secs(5), ..AlertSettings::default() };
        let alerts = run(&[(100, 0.5), (104, 2.0), (108, 0.5), (112, 0.5)], s);
        assert!(alerts.is_empty(), "{alerts:?}");
    }

    #[test]
    fn a_sustained_excess_opens_once_escalates_and_resolves_after_the_cooldown() {
        let s = AlertSettings {
            open_after: Duration::from_secs(4),
            cooldown: Duration::from_secs(10),
            critical_factor: 3.0,
        };
        let mut scores = vec![(100, 0.5), (104, 1.5), (108, 1.6), (112, 1.2), (116, 4.0)];
        // Below the threshold, but not for the whole cooldown: still the same alert.
        scores.extend([(120, 0.5), (124, 1.1), (128, 0.4), (132, 0.4), (136, 0.4)]);
        let alerts = run(&scores, s);
        assert_eq!(
            states(&alerts),
            [AlertState::Opened, AlertState::Updated, AlertState::Resolved]
        );
        assert!(alerts.iter().all(|a| a.alert_id == alerts[0].alert_id));
        assert_eq!(alerts[0].severity, Severity::Warning);
        assert_eq!(alerts[0].window_start_ns, (104 - 64) * S);
        assert_eq!(alerts[1].severity, Severity::Critical);
        let resolved = &alerts[2];
        assert_eq!(resolved.score, 4.0);
        assert_eq!(resolved.window_end_ns, 124 * S, "the last window above the threshold");
        assert_eq!(resolved.top_sensor().map(Channel::as_str), Some("vibration"));
        assert!((resolved.sensor_share.iter().map(|s| s.1).sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn zero_open_after_opens_on_the_first_window_and_two_episodes_get_two_ids() {
        let s = AlertSettings {
            open_after: Duration::ZERO,
            cooldown: Duration::from_secs(4),
            critical_factor: 3.0,
        };
        let alerts =
            run(&[(100, 2.0), (104, 0.1), (108, 0.1), (112, 2.0), (116, 0.1), (120, 0.1)], s);
        assert_eq!(
            states(&alerts),
            [AlertState::Opened, AlertState::Resolved, AlertState::Opened, AlertState::Resolved]
        );
        assert_ne!(alerts[0].alert_id, alerts[2].alert_id);
    }

    #[test]
    fn a_zero_cooldown_keeps_one_alert_over_a_run_of_windows_and_ends_it_at_the_first_below() {
        // Every window above the threshold was once an alert of its own (resolved by the next
        // window), and with open_after above zero no alert ever opened inside a long run.
        for open_after in [0, 8] {
            let s = AlertSettings {
                open_after: Duration::from_secs(open_after),
                cooldown: Duration::ZERO,
                critical_factor: 3.0,
            };
            let mut scores: Vec<(i64, f64)> = (0..10).map(|i| (100 + 4 * i, 2.0)).collect();
            scores.extend([(140, 0.5), (144, 2.0), (148, 2.0), (152, 2.0), (156, 0.5)]);
            let alerts = run(&scores, s);
            // The second run lasts 8 s (144 to 152): long enough for open_after 8 too.
            let want = [
                AlertState::Opened,
                AlertState::Resolved,
                AlertState::Opened,
                AlertState::Resolved,
            ];
            assert_eq!(states(&alerts), want, "open_after {open_after}");
            let first_opened = (100 + open_after as i64) * S;
            assert_eq!(alerts[1].window_end_ns, 136 * S, "open_after {open_after}");
            assert_eq!(alerts[1].window_start_ns, (100 - 64) * S);
            assert!(alerts[0].window_end_ns >= first_opened, "open_after {open_after}");
            assert_eq!(alerts[3].window_end_ns, 152 * S);
            assert_ne!(alerts[0].alert_id, alerts[2].alert_id);
        }
    }

    #[test]
    fn a_gap_longer_than_the_cooldown_ends_the_alert() {
        let s = AlertSettings {
            open_after: Duration::ZERO,
            cooldown: Duration::from_secs(10),
            critical_factor: 3.0,
        };
        let alerts = run(&[(100, 2.0), (104, 2.0), (500, 0.1)], s);
        assert_eq!(states(&alerts), [AlertState::Opened, AlertState::Resolved]);
    }

    #[test]
    fn shares_of_nothing_are_equal() {
        assert_eq!(shares(&[0.0; 4]), [0.25; 4]);
        assert_eq!(shares(&[0.0; 8]), [0.125; 8]);
        assert_eq!(top_sensor(&[0.1, 0.2, 0.6, 0.1]), 2);
        assert_eq!(top_sensor(&[0.1, 0.2, 0.1, 0.1, 0.1, 0.9]), 5);
    }

    #[test]
    fn another_profile_s_alert_names_its_channels_in_display_order() {
        let columns = Columns::new(
            ["vibration_x", "current", "flow"].map(|c| Channel::new(c).unwrap()).to_vec(),
        );
        let named = named_shares(&columns, &[1.0, 2.0, 5.0]);
        let names: Vec<&str> = named.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(names, ["current", "flow", "vibration_x"]);
        assert_eq!(named[1].1, 0.625);
    }
}
