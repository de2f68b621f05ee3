//! Live updates as server-sent events (`GET /api/events`).
//!
//! One poller per server reads what is new in the store (readings, scores, alert changes) every
//! `poll` while at least one client listens, and broadcasts it; each client gets the same events.
//! Polling the store, rather than listening to the detector, makes `serve` on its own show exactly
//! what `demo` shows. A client that falls behind gets a `resync` event and reloads its data.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use sentio_core::time::NANOS_PER_SEC;
use sentio_core::{AlertState, DeviceId};
use sentio_store::{AnomalyQuery, RangeQuery, ReadingStore, ScoreQuery, StoreError};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::Web;
use crate::api::{Frames, alert_json, channels_of};
use crate::params::{ApiError, Params};

/// Events buffered per client before it counts as behind.
const BUFFER: usize = 256;
/// How far behind the newest reading a device's feed position may fall.
const LATE_LIMIT_NS: i64 = 600 * NANOS_PER_SEC;
/// How often the device list is re-read (new devices appear within this).
const DEVICES_EVERY: Duration = Duration::from_secs(15);

/// One message to every client: the event name and its JSON.
#[derive(Debug, Clone)]
pub struct FeedEvent {
    pub kind: &'static str,
    pub data: Arc<str>,
}

#[derive(Clone)]
pub struct Feed {
    store: Arc<dyn ReadingStore>,
    poll: Duration,
    tx: broadcast::Sender<FeedEvent>,
    /// Ends every client's stream (so a graceful shutdown does not wait for browsers).
    closed: CancellationToken,
    /// Where "now" comes from (see [`crate::LiveProbe::event_clock_ns`]).
    probe: Option<Arc<dyn crate::LiveProbe>>,
}

impl Feed {
    pub fn new(store: Arc<dyn ReadingStore>, poll: Duration) -> Feed {
        Feed {
            store,
            poll,
            tx: broadcast::channel(BUFFER).0,
            closed: CancellationToken::new(),
            probe: None,
        }
    }

    pub fn with_probe(mut self, probe: Arc<dyn crate::LiveProbe>) -> Feed {
        self.probe = Some(probe);
        self
    }

    pub fn subscribe(&self) -> broadcast::Receiver<FeedEvent> {
        self.tx.subscribe()
    }

    /// Polls while anyone listens, until `stop` fires. Store errors are logged and retried on
    /// the next tick: a database restart pauses the feed, it does not end it.
    pub async fn run(self, stop: CancellationToken) {
        let _close = self.closed.clone().drop_guard();
        let mut cursor = Cursor::default();
        let mut tick = tokio::time::interval(self.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if self.tx.receiver_count() == 0 {
                // Nobody listens: start from "now" when someone does.
                cursor = Cursor::default();
                continue;
            }
            let now = crate::clock_ns(self.probe.as_ref());
            match cursor.poll(self.store.as_ref(), now).await {
                Ok(events) => {
                    for e in events {
                        let _ = self.tx.send(e);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the dashboard's live feed could not read the store")
                }
            }
        }
    }
}

/// What the poller has already sent.
#[derive(Default)]
pub struct Cursor {
    started: bool,
    devices: Vec<DeviceId>,
    devices_read: Option<Instant>,
    /// Per device, the newest reading and score sent.
    readings: HashMap<DeviceId, i64>,
    scores: HashMap<DeviceId, i64>,
    /// Per alert id, the state and detection time sent.
    alerts: HashMap<String, (AlertState, i64)>,
}

impl Cursor {
    /// Reads what is new since the last call. The first call only notes where things stand.
    /// `now_ns` is the dashboard's clock ([`crate::clock_ns`]).
    pub async fn poll(
        &mut self,
        store: &dyn ReadingStore,
        now_ns: i64,
    ) -> Result<Vec<FeedEvent>, StoreError> {
        if self.devices_read.is_none_or(|t| t.elapsed() >= DEVICES_EVERY) {
            self.devices = store.devices().await?;
            self.devices_read = Some(Instant::now());
        }
        let first = !self.started;
        if first {
            self.started = true;
            for r in store.latest_readings(now_ns - 600 * NANOS_PER_SEC).await? {
                let t = self.readings.entry(r.device.clone()).or_insert(r.ts_ns);
                *t = (*t).max(r.ts_ns);
            }
        }
        // Devices not seen yet start from now.
        let now = now_ns;
        for d in &self.devices {
            self.readings.entry(d.clone()).or_insert(now);
        }
        let mut events = Vec::new();
        let Some(&from) = self.readings.values().min() else { return Ok(events) };
        let rows = store
            .query_range(&RangeQuery {
                devices: self.devices.clone(),
                sensors: vec![],
                from_ns: from.saturating_add(1),
                to_ns: i64::MAX,
            })
            .await?;
        let mut by_device: BTreeMap<&DeviceId, Vec<sentio_core::Reading>> = BTreeMap::new();
        for r in &rows {
            if self.readings.get(&r.device).is_some_and(|&seen| r.ts_ns > seen) {
                by_device.entry(&r.device).or_default().push(r.clone());
            }
        }
        let mut readings = serde_json::Map::new();
        for (device, rs) in by_device {
            if let Some(newest) = rs.iter().map(|r| r.ts_ns).max() {
                self.readings.insert(device.clone(), newest);
            }
            let channels = channels_of(&rs);
            let f = Frames::align(&rs, &channels);
            let sensors: Vec<&str> = channels.iter().map(|(c, _)| c.as_str()).collect();
            readings.insert(
                device.as_str().to_owned(),
                json!({ "sensors": sensors, "ts": f.ts, "values": f.columns }),
            );
        }
        if !readings.is_empty() {
            events.push(event("readings", Value::Object(readings)));
        }

        let score_from = self.scores.values().min().copied().unwrap_or(from);
        let scores = store
            .scores(&ScoreQuery {
                device: None,
                from_ns: score_from.saturating_add(1),
                to_ns: i64::MAX,
            })
            .await?;
        let mut by_device: BTreeMap<&DeviceId, Vec<&sentio_store::ScorePoint>> = BTreeMap::new();
        for s in &scores {
            let seen = *self.scores.entry(s.device.clone()).or_insert(score_from);
            if s.ts_ns > seen {
                by_device.entry(&s.device).or_default().push(s);
            }
        }
        let mut out = serde_json::Map::new();
        for (device, ss) in by_device {
            if let Some(newest) = ss.iter().map(|s| s.ts_ns).max() {
                self.scores.insert(device.clone(), newest);
            }
            if !first {
                out.insert(
                    device.as_str().to_owned(),
                    json!({
                        "ts": ss.iter().map(|s| crate::params::ms(s.ts_ns)).collect::<Vec<_>>(),
                        "score": ss.iter().map(|s| s.score).collect::<Vec<_>>(),
                        "threshold": ss.iter().map(|s| s.threshold).collect::<Vec<_>>(),
                    }),
                );
            }
        }
        if !out.is_empty() {
            events.push(event("scores", Value::Object(out)));
        }

        // A device silent for long does not hold every poll back to its last reading (a reading
        // that late shows on the next reload, not live).
        let newest = self.readings.values().max().copied().unwrap_or(now);
        let floor = newest.saturating_sub(LATE_LIMIT_NS);
        for seen in self.readings.values_mut().chain(self.scores.values_mut()) {
            *seen = (*seen).max(floor);
        }
        let alerts = store
            .anomalies(&AnomalyQuery {
                device: None,
                from_ns: newest.saturating_sub(3_600 * NANOS_PER_SEC),
                to_ns: i64::MAX,
            })
            .await?;
        // Only the alerts of the last hour are remembered.
        let mut seen_now = HashMap::with_capacity(alerts.len());
        for a in alerts {
            let seen = (a.state, a.detected_at_ns);
            if self.alerts.get(&a.alert_id) != Some(&seen) && !first {
                events.push(event("alert", alert_json(&a)));
            }
            seen_now.insert(a.alert_id, seen);
        }
        self.alerts = seen_now;
        Ok(events)
    }
}

fn event(kind: &'static str, data: Value) -> FeedEvent {
    FeedEvent { kind, data: data.to_string().into() }
}

/// `GET /api/events`: `readings`, `scores` and `alert` events as they arrive, `resync` when this
/// client fell behind.
pub async fn events(
    State(web): State<Web>,
    q: Query<BTreeMap<String, String>>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    Params::new(q.0, &[])?;
    let rx = web.feed.subscribe();
    let closed = web.feed.closed.clone();
    let stream = futures::stream::unfold(rx, move |mut rx| {
        let closed = closed.clone();
        async move {
            let next = tokio::select! {
                _ = closed.cancelled() => return None,
                next = rx.recv() => next,
            };
            let event = match next {
                Ok(e) => Event::default().event(e.kind).data(&*e.data),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    Event::default().event("resync").data("{}")
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((Ok(event), rx))
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
