//! What the detector reports on `anomaly-alerts`.

use serde::{Deserialize, Serialize};

use crate::{Channel, DeviceId};

/// How bad an alert is, from how far the score is above the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Critical,
}

/// Where an alert is in its life, so consumers can deduplicate: one `opened`, any number of
/// `updated`, one `resolved`, all with the same `alert_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Opened,
    Updated,
    Resolved,
}

/// An anomaly found on one device over one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub alert_id: String,
    pub device: DeviceId,
    pub state: AlertState,
    pub window_start_ns: i64,
    pub window_end_ns: i64,
    pub score: f64,
    pub threshold: f64,
    pub severity: Severity,
    /// Share of the reconstruction error per channel of the model, in
    /// [`Channel::display_cmp`] order (the pump's four first); sums to 1.
    pub sensor_share: Vec<(Channel, f64)>,
    pub model_name: String,
    pub model_version: String,
    pub detected_at_ns: i64,
}

impl Alert {
    /// The channel with the largest share of the error, the first in display order on ties.
    pub fn top_sensor(&self) -> Option<&Channel> {
        let mut best: Option<&(Channel, f64)> = None;
        for share in &self.sensor_share {
            if best.is_none_or(|b| share.1 > b.1) {
                best = Some(share);
            }
        }
        best.map(|(c, _)| c)
    }
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// The inverse of [`Severity::as_str`].
    pub fn parse(s: &str) -> Option<Severity> {
        [Severity::Warning, Severity::Critical].into_iter().find(|v| v.as_str() == s)
    }
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Opened => "opened",
            AlertState::Updated => "updated",
            AlertState::Resolved => "resolved",
        }
    }

    /// The inverse of [`AlertState::as_str`].
    pub fn parse(s: &str) -> Option<AlertState> {
        [AlertState::Opened, AlertState::Updated, AlertState::Resolved]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for s in [Severity::Warning, Severity::Critical] {
            assert_eq!(Severity::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).ok(), Some(format!("\"{}\"", s.as_str())));
        }
        for s in [AlertState::Opened, AlertState::Updated, AlertState::Resolved] {
            assert_eq!(AlertState::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).ok(), Some(format!("\"{}\"", s.as_str())));
        }
        assert_eq!(Severity::parse("fatal"), None);
    }
}
