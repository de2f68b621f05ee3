//! The streaming detector: consumes `sensor-data` in a consumer group, assembles each device's
//! frames in event time ([`super::frames`]), scores the windows that complete in batches across
//! devices, and turns the scores into alerts, published to `anomaly-alerts` (keyed by device) and
//! saved in the `anomalies` table. Every scored window's score is saved in `anomaly_scores` too
//! (`detect.save_scores`), in the same batch step, for the dashboard.
//!
//! One process serves every asset profile: each device's readings go to the model of its profile
//! (the most specific device pattern that matches it), whose channels are the frame's columns;
//! a device whose profile has no model yet is not scored.
//!
//! Each profile's model follows its alias on its own: a watcher polls the tracking backend every
//! `poll_interval` for every profile's registered model, loads a newly promoted version (or a
//! profile's first) in the background and hands it over; the swap happens between two scoring
//! batches, so every window is scored exactly once, by the old model or by the new one. A new
//! version with another cadence, window length, fill rule or channels restarts the windows of
//! that profile's devices (their frames mean something else); the same architecture keeps them.
//!
//! Offsets are committed on the bus after each batch's alerts and scores are out (so a member that
//! leaves the group and joins again, see [`crate::rejoin`], resumes where it was). Frames still
//! waiting and the last window of each device live in memory only: after a restart a device's
//! first window is scored one window span after its first reading, and an alert open at the stop
//! stays open in the table (its tracker is gone); a new excess opens a new one.
//!
//! Where the model card detrends channels or smooths scores, each device also keeps the recent
//! frames of its detrended channels and its recent scores (`features::post`). A device seen for
//! the first time reads back the stored frames the detrending needs, so its inputs are those of a
//! replay at once; its score smoothing starts with its first window here.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use sentio_bus::{Bus, Consumer, Record};
use sentio_core::time::now_ns;
use sentio_core::{Alert, Channel, DecodeLimits, DeviceId, Profiles, Reading, decode_reading};
use sentio_store::{RangeQuery, ReadingStore, ScorePoint};
use sentio_tracking::Tracking;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::flat::FlatCheck;
use super::frames::{DeviceFrames, FrameSettings, Pushed, ReadyWindow};
use super::latency::Histogram;
use super::{AlertSettings, AlertTracker, AlertV1, ModelRef, ScoredWindow, Scorer, score_point};
use crate::features::post::Smoother;
use crate::rejoin::{self, RejoinWatch};

/// Records per poll.
const POLL_MAX: usize = 4_096;
/// How long one poll waits for records.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// Retries of a failed alert publish, alert save or score save before the detector gives up.
const SINK_RETRIES: u32 = 8;

/// How the streaming detector runs (from `[topics]`, `[detect]` and `[ingest]`).
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub readings_topic: String,
    pub alerts_topic: String,
    pub group: String,
    pub grace: Duration,
    pub stride: usize,
    pub batch_windows: usize,
    pub alerts: AlertSettings,
    /// Which device is which kind of machine: the profile whose model scores it.
    pub profiles: Profiles,
    /// Weight of a channel's error in the score (1 for a channel not listed).
    pub sensor_weights: BTreeMap<Channel, f64>,
    /// Per-device factor on the model's threshold.
    pub device_threshold_factor: BTreeMap<DeviceId, f64>,
    pub limits: DecodeLimits,
    /// The alias to follow; `None` keeps the models the detector starts with.
    pub follow: Option<Follow>,
    /// Save every scored window in the store's `anomaly_scores` (for the dashboard).
    pub save_scores: bool,
    /// How long the member may hold no partitions before it joins the group again (doubling);
    /// zero never (`ingest.rejoin_after`).
    pub rejoin_after: Duration,
}

/// Following a model alias.
#[derive(Clone)]
pub struct Follow {
    pub tracking: Arc<dyn Tracking>,
    /// Per profile, the registered model to follow.
    pub names: BTreeMap<String, String>,
    pub alias: String,
    pub cache: std::path::PathBuf,
    pub threads: usize,
    pub interval: Duration,
}

impl std::fmt::Debug for Follow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follow")
            .field("names", &self.names)
            .field("alias", &self.alias)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// Running totals, shared with whoever displays them.
#[derive(Debug, Default)]
pub struct DetectStats {
    pub records: AtomicU64,
    pub readings: AtomicU64,
    /// Records that are not valid readings (the ETL dead-letters them; the detector skips them).
    pub undecodable: AtomicU64,
    /// Readings for a frame already scored (later than the grace period).
    pub late: AtomicU64,
    pub windows_scored: AtomicU64,
    pub batches: AtomicU64,
    pub alerts_published: AtomicU64,
    pub alerts_open: AtomicU64,
    /// Rows written to `anomaly_scores` (one per scored window with a finite score).
    pub scores_saved: AtomicU64,
    pub model_swaps: AtomicU64,
    /// Event time of the newest reading of a scored window to the moment its score was known
    /// (and, for a window that raised an alert message, the message was published and saved).
    pub latency: Histogram,
    /// Like `latency`, for the windows that raised an alert message only.
    pub alert_latency: Histogram,
    /// Readings of devices whose profile has no model (yet): not scored.
    pub unmodelled: AtomicU64,
    models: Mutex<BTreeMap<String, ModelRef>>,
}

impl DetectStats {
    /// The model version in use for the pump profile, or else the first profile that has one.
    pub fn model(&self) -> Option<ModelRef> {
        let models = self.models.lock().ok()?;
        models.get(sentio_core::profile::PUMP).or_else(|| models.values().next()).cloned()
    }

    /// The model version in use per profile.
    pub fn models(&self) -> BTreeMap<String, ModelRef> {
        self.models.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn set_model(&self, profile: &str, model: &ModelRef) {
        if let Ok(mut m) = self.models.lock() {
            m.insert(profile.to_owned(), model.clone());
        }
    }
}

/// What the detector reports to an observer (a dashboard, the demo, a test).
#[derive(Debug, Clone, PartialEq)]
pub enum DetectEvent {
    /// A window was scored.
    Scored { device: DeviceId, window: ScoredWindow, threshold: f64, model: ModelRef },
    /// An alert message was published and saved.
    Alert(Alert),
}

/// Sees every scored window and alert message.
pub type Observer = tokio::sync::mpsc::UnboundedSender<DetectEvent>;

struct DeviceState {
    /// The device's profile, and its frames and score smoothing when that profile has a model.
    profile: Option<Arc<str>>,
    frames: Option<DeviceFrames>,
    smoother: Option<Smoother>,
    tracker: AlertTracker,
}

/// The streaming detector.
pub struct Detector {
    bus: Arc<dyn Bus>,
    store: Arc<dyn ReadingStore>,
    settings: StreamSettings,
    stats: Arc<DetectStats>,
    observer: Option<Observer>,
}

impl Detector {
    pub fn new(bus: Arc<dyn Bus>, store: Arc<dyn ReadingStore>, settings: StreamSettings) -> Self {
        Detector { bus, store, settings, stats: Arc::default(), observer: None }
    }

    pub fn stats(&self) -> Arc<DetectStats> {
        self.stats.clone()
    }

    /// Reports every scored window and alert message to `observer`.
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Scores with `scorers` (one per profile; a later one for the same profile wins) and their
    /// successors, when following an alias, until `stop` fires.
    pub async fn run(
        self,
        scorers: Vec<Arc<Scorer>>,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        let s = &self.settings;
        let consumer =
            self.bus.subscribe(&s.readings_topic, &s.group).await.with_context(|| {
                format!("joining group {:?} on topic {:?}", s.group, s.readings_topic)
            })?;
        let (tx, mut models) = mpsc::unbounded_channel();
        let current: BTreeMap<String, String> =
            scorers.iter().map(|s| (s.profile().to_owned(), s.model().version.clone())).collect();
        let watcher = s.follow.clone().map(|follow| {
            let stop = stop.clone();
            tokio::spawn(watch_alias(follow, current, tx, stop))
        });
        let mut engine = Engine::new(&self.settings, self.stats.clone());
        for scorer in scorers {
            tracing::info!(
                profile = %scorer.profile(),
                model = %scorer.model().name,
                version = %scorer.model().version,
                threshold = scorer.threshold(),
                "model loaded"
            );
            engine.swap(scorer);
        }
        tracing::info!(topic = %s.readings_topic, group = %s.group, "detect started");
        let result = self.consume(consumer, &mut engine, &mut models, &stop).await;
        if let Some(w) = watcher {
            w.abort();
        }
        let open = engine.devices.values().filter(|d| d.tracker.is_open()).count();
        tracing::info!(open_alerts = open, stats = ?self.stats.windows_scored, "detect stopped");
        result
    }

    async fn consume(
        &self,
        mut consumer: Box<dyn Consumer>,
        engine: &mut Engine,
        models: &mut mpsc::UnboundedReceiver<Arc<Scorer>>,
        stop: &CancellationToken,
    ) -> anyhow::Result<()> {
        let s = &self.settings;
        let mut rejoin_watch = RejoinWatch::new(s.rejoin_after, tokio::time::Instant::now());
        loop {
            // Between two polls, every record polled so far is scored and its offset committed:
            // a fresh member resumes from there.
            let holds = !consumer.assignment().is_empty();
            if let Some(overdue) = rejoin_watch.observe(holds, tokio::time::Instant::now()) {
                overdue.warn(&s.group);
                let fresh = rejoin::subscribe_again(
                    self.bus.as_ref(),
                    consumer,
                    &s.readings_topic,
                    &s.group,
                    stop,
                )
                .await
                .with_context(|| {
                    format!("joining group {:?} on topic {:?} again", s.group, s.readings_topic)
                })?;
                let Some(fresh) = fresh else { return Ok(()) };
                consumer = fresh;
                rejoin_watch.rejoined(tokio::time::Instant::now());
            }
            let records = tokio::select! {
                biased;
                _ = stop.cancelled() => return Ok(()),
                polled = consumer.poll(POLL_MAX, POLL_WAIT) => polled.context("polling the bus")?,
            };
            while let Ok(next) = models.try_recv() {
                engine.swap(next);
            }
            if records.is_empty() {
                continue;
            }
            let next_offsets = next_offsets(&records);
            let readings = engine.decode(&records, &self.settings.limits);
            self.prime_new_devices(engine, &readings).await;
            let ready = engine.take(readings);
            let mut chunks: Vec<(Arc<str>, Batch)> = Vec::new();
            for (profile, windows) in ready {
                for chunk in windows.chunks(self.settings.batch_windows.max(1)) {
                    chunks.push((profile.clone(), chunk.to_vec()));
                }
            }
            for (profile, chunk) in chunks {
                let Scored { alerts, points } =
                    engine.score(&profile, chunk, self.observer.as_ref()).await?;
                if !alerts.is_empty() {
                    self.publish(&alerts).await?;
                    let now = now_ns();
                    for (_, newest_ns) in &alerts {
                        self.stats.alert_latency.record(latency(*newest_ns, now));
                    }
                }
                // After the alerts, which are the urgent part; before the offsets, so that a
                // crash scores the batch again and the upsert overwrites what was saved.
                if self.settings.save_scores && !points.is_empty() {
                    self.save_scores(&points).await?;
                }
            }
            if let Err(e) = consumer.commit(&next_offsets).await {
                tracing::warn!(error = %e, "committing the detector's offsets failed");
            }
        }
    }

    /// Gives each device seen for the first time the window of stored readings just before its
    /// first one here, so that a restarted detector (resuming from its committed offsets), or one
    /// started after a replay (the demo), scores from its first frame on instead of a window span
    /// later. Readings before that were scored already. A store that cannot answer only costs the
    /// head start.
    async fn prime_new_devices(&self, engine: &mut Engine, readings: &[Reading]) {
        let mut first: BTreeMap<DeviceId, i64> = BTreeMap::new();
        for r in readings.iter().filter(|r| !engine.devices.contains_key(&r.device)) {
            let ts = first.entry(r.device.clone()).or_insert(r.ts_ns);
            *ts = (*ts).min(r.ts_ns);
        }
        let (Some(from), Some(to)) = (first.values().min(), first.values().max()) else {
            return;
        };
        // The window, and the trailing mean of the detrended columns.
        let span = engine
            .models
            .values()
            .map(|m| {
                let card = m.scorer.card();
                let frames = card.window + 1 + card.post.detrend_history();
                card.cadence_ns.saturating_mul(i64::try_from(frames).unwrap_or(i64::MAX))
            })
            .max()
            .unwrap_or(0);
        let query = RangeQuery {
            devices: first.keys().cloned().collect(),
            sensors: vec![],
            from_ns: from.saturating_sub(span),
            to_ns: *to,
        };
        let stored = match self.store.query_range(&query).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "reading the devices' recent history failed; their windows start empty");
                vec![]
            }
        };
        let history: Vec<Reading> = stored
            .into_iter()
            .filter(|r| first.get(&r.device).is_some_and(|&t| r.ts_ns < t && r.ts_ns >= t - span))
            .collect();
        engine.prime(&history);
    }

    /// Publishes alert messages to the alerts topic and saves them in the store, retrying
    /// transient failures.
    async fn publish(&self, alerts: &[(Alert, i64)]) -> anyhow::Result<()> {
        let records: Vec<(Bytes, Bytes)> =
            alerts.iter().map(|(a, _)| AlertV1::from(a).to_record()).collect();
        let only: Vec<Alert> = alerts.iter().map(|(a, _)| a.clone()).collect();
        let topic = &self.settings.alerts_topic;
        retry("publishing alerts", || async {
            self.bus.publish_batch(topic, records.clone()).await.map(|_| ()).map_err(|e| {
                let transient = e.is_transient();
                (anyhow::Error::new(e).context(format!("publishing to {topic:?}")), transient)
            })
        })
        .await?;
        retry("saving alerts", || async {
            self.store.save_alerts(&only).await.map(|_| ()).map_err(|e| {
                let transient = e.is_transient();
                (anyhow::Error::new(e).context("saving to the anomalies table"), transient)
            })
        })
        .await?;
        self.stats.alerts_published.fetch_add(alerts.len() as u64, Ordering::Relaxed);
        for (a, _) in alerts {
            if let Some(tx) = &self.observer {
                let _ = tx.send(DetectEvent::Alert(a.clone()));
            }
            tracing::info!(
                alert = %a.alert_id,
                state = a.state.as_str(),
                severity = a.severity.as_str(),
                score = a.score,
                "alert"
            );
        }
        Ok(())
    }

    /// Saves a batch's scores in `anomaly_scores`, retrying transient failures.
    async fn save_scores(&self, points: &[ScorePoint]) -> anyhow::Result<()> {
        let written = retry("saving scores", || async {
            self.store.save_scores(points).await.map_err(|e| {
                let transient = e.is_transient();
                (anyhow::Error::new(e).context("saving to anomaly_scores"), transient)
            })
        })
        .await?;
        self.stats.scores_saved.fetch_add(written, Ordering::Relaxed);
        Ok(())
    }
}

/// Retries `attempt` with backoff while its error is transient.
async fn retry<T, F, Fut>(what: &str, attempt: F) -> anyhow::Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, (anyhow::Error, bool)>>,
{
    let mut delay = Duration::from_millis(50);
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Ok(value) => return Ok(value),
            Err((e, true)) if tries < SINK_RETRIES => {
                tracing::warn!(error = %format!("{e:#}"), tries, "{what} failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Per partition, the offset after the last record.
fn next_offsets(records: &[Record]) -> BTreeMap<u32, u64> {
    let mut out = BTreeMap::new();
    for r in records {
        let next = out.entry(r.partition).or_insert(0);
        *next = (*next).max(r.offset + 1);
    }
    out
}

fn latency(event_ns: i64, now_ns: i64) -> Duration {
    Duration::from_nanos(u64::try_from(now_ns.saturating_sub(event_ns)).unwrap_or(0))
}

/// What scoring one batch gives.
struct Scored {
    /// The alert messages, each with the event time of the newest reading of the window that
    /// raised it.
    alerts: Vec<(Alert, i64)>,
    /// One per window with a finite score, for `anomaly_scores`.
    points: Vec<ScorePoint>,
}

/// Windows ready to score, each with its device.
type Batch = Vec<(DeviceId, ReadyWindow)>;

/// One profile's model and how its frames are built.
struct ProfileModel {
    scorer: Arc<Scorer>,
    frames: FrameSettings,
    /// Per column, the weight of its error in the score.
    weights: Vec<f64>,
    /// The stuck-sensor check, without the columns of weight 0.
    flat: FlatCheck,
}

/// The detector's state without I/O: devices' frames and alert trackers, and each profile's
/// model.
struct Engine {
    models: BTreeMap<Arc<str>, ProfileModel>,
    profiles: Profiles,
    devices: HashMap<DeviceId, DeviceState>,
    alerts: AlertSettings,
    weights: BTreeMap<Channel, f64>,
    factors: BTreeMap<DeviceId, f64>,
    grace_ns: i64,
    stride: usize,
    stats: Arc<DetectStats>,
}

impl Engine {
    fn new(s: &StreamSettings, stats: Arc<DetectStats>) -> Engine {
        Engine {
            models: BTreeMap::new(),
            profiles: s.profiles.clone(),
            devices: HashMap::new(),
            alerts: s.alerts,
            weights: s.sensor_weights.clone(),
            factors: s.device_threshold_factor.clone(),
            grace_ns: i64::try_from(s.grace.as_nanos()).unwrap_or(i64::MAX),
            stride: s.stride,
            stats,
        }
    }

    /// Takes over with another model version (or a profile's first), between two batches.
    fn swap(&mut self, next: Arc<Scorer>) {
        let profile: Arc<str> = Arc::from(next.profile());
        if self.profiles.get(&profile).is_none() {
            tracing::warn!(
                profile = %profile,
                model = %next.model().name,
                "the model is for a profile the configuration does not declare; it scores no device"
            );
        }
        let frames = next.frame_settings(self.grace_ns, self.stride);
        let weights: Vec<f64> = next
            .columns()
            .channels()
            .iter()
            .map(|c| self.weights.get(c).copied().unwrap_or(1.0))
            .collect();
        let flat = next.flat_check(&weights);
        let previous = self.models.get(&profile);
        if previous.is_some_and(|p| p.scorer.model() == next.model()) {
            return;
        }
        let restart = previous.is_none_or(|p| {
            p.frames != frames
                || p.scorer.columns() != next.columns()
                || !p.scorer.post().same_inputs(next.post())
        });
        if let Some(p) = previous {
            if restart {
                tracing::warn!(
                    profile = %profile,
                    version = %next.model().version,
                    "the new model frames readings differently; the profile's windows restart"
                );
            }
            tracing::info!(
                profile = %profile,
                from = %p.scorer.model().version,
                to = %next.model().version,
                threshold = next.threshold(),
                "model swapped"
            );
            self.stats.model_swaps.fetch_add(1, Ordering::Relaxed);
        }
        for d in self.devices.values_mut().filter(|d| d.profile.as_ref() == Some(&profile)) {
            if restart {
                let detrender = next.post().detrender();
                d.frames = Some(DeviceFrames::new(frames, next.columns().clone(), detrender));
            }
            // Another model's scores are on another scale: its smoothing starts afresh.
            d.smoother = Some(next.smoother());
        }
        self.stats.set_model(&profile, next.model());
        self.models.insert(profile, ProfileModel { scorer: next, frames, weights, flat });
    }

    /// Builds frames from readings that were already scored, dropping the windows they complete.
    fn prime(&mut self, history: &[Reading]) {
        let mut order: Vec<&Reading> = history.iter().collect();
        order.sort_by_key(|r| r.ts_ns);
        let mut dropped = Vec::new();
        let mut primed = BTreeSet::new();
        for reading in order {
            if let Some(frames) = &mut self.device(&reading.device).frames {
                frames.push(reading);
            }
            primed.insert(&reading.device);
        }
        for id in primed {
            if let Some(frames) = self.devices.get_mut(id).and_then(|d| d.frames.as_mut()) {
                frames.release(&mut dropped);
                dropped.clear();
            }
        }
    }

    fn device(&mut self, id: &DeviceId) -> &mut DeviceState {
        let (profiles, models, alerts) = (&self.profiles, &self.models, self.alerts);
        self.devices.entry(id.clone()).or_insert_with(|| {
            let profile: Option<Arc<str>> =
                profiles.for_device(id.as_str()).map(|p| Arc::from(p.name.as_str()));
            let model = profile.as_ref().and_then(|p| models.get(p));
            let frames = model.map(|m| {
                DeviceFrames::new(m.frames, m.scorer.columns().clone(), m.scorer.post().detrender())
            });
            let smoother = model.map(|m| m.scorer.smoother());
            let tracker = AlertTracker::new(id.clone(), alerts);
            DeviceState { profile, frames, smoother, tracker }
        })
    }

    /// Decodes `records`, counting what cannot be decoded.
    fn decode(&self, records: &[Record], limits: &DecodeLimits) -> Vec<Reading> {
        let now = now_ns();
        let stats = &self.stats;
        stats.records.fetch_add(records.len() as u64, Ordering::Relaxed);
        let readings: Vec<Reading> =
            records.iter().filter_map(|r| decode_reading(&r.payload, limits, now).ok()).collect();
        stats.undecodable.fetch_add((records.len() - readings.len()) as u64, Ordering::Relaxed);
        stats.readings.fetch_add(readings.len() as u64, Ordering::Relaxed);
        readings
    }

    /// Assembles frames from `readings` and returns the windows they complete, per profile, in
    /// arrival order per device.
    fn take(&mut self, readings: Vec<Reading>) -> Vec<(Arc<str>, Batch)> {
        let stats = self.stats.clone();
        let mut touched: BTreeSet<DeviceId> = BTreeSet::new();
        let mut unmodelled = 0u64;
        for reading in readings {
            match &mut self.device(&reading.device).frames {
                Some(frames) => {
                    if frames.push(&reading) == Pushed::Late {
                        stats.late.fetch_add(1, Ordering::Relaxed);
                    }
                }
                None => unmodelled += 1,
            }
            if !touched.contains(&reading.device) {
                touched.insert(reading.device);
            }
        }
        stats.unmodelled.fetch_add(unmodelled, Ordering::Relaxed);
        let mut ready: BTreeMap<Arc<str>, Batch> = BTreeMap::new();
        let mut windows = Vec::new();
        for id in touched {
            let Some(d) = self.devices.get_mut(&id) else { continue };
            let (Some(frames), Some(profile)) = (&mut d.frames, &d.profile) else { continue };
            frames.release(&mut windows);
            if !windows.is_empty() {
                let list = ready.entry(profile.clone()).or_default();
                list.extend(windows.drain(..).map(|w| (id.clone(), w)));
            }
        }
        ready.into_iter().collect()
    }

    /// Scores one batch of `profile`'s windows and runs the alert trackers; returns the alert
    /// messages and the windows' score points.
    async fn score(
        &mut self,
        profile: &Arc<str>,
        batch: Vec<(DeviceId, ReadyWindow)>,
        observer: Option<&Observer>,
    ) -> anyhow::Result<Scored> {
        let Some(m) = self.models.get(profile) else {
            return Ok(Scored { alerts: vec![], points: vec![] });
        };
        let scorer = m.scorer.clone();
        let weights = m.weights.clone();
        let flat = m.flat.clone();
        let scoring = scorer.clone();
        let (batch, scored) = tokio::task::spawn_blocking(move || {
            let windows: Vec<ReadyWindow> = batch.iter().map(|(_, w)| w.clone()).collect();
            let scored = scoring.score_windows(&windows, &weights);
            (batch, scored)
        })
        .await
        .context("the scoring thread failed")?;
        let scored = scored?;
        let now = now_ns();
        let model = scorer.model().clone();
        let base = scorer.threshold();
        let mut out = Vec::new();
        let mut points = Vec::with_capacity(batch.len());
        let mut not_finite = 0usize;
        for ((device, w), scored) in batch.iter().zip(scored) {
            let Some(d) = self.devices.get_mut(device) else { continue };
            let Some(smoother) = d.smoother.as_mut() else { continue };
            let (score, sensor_error) =
                scorer.post_window(&flat, smoother, w.end_ns, &w.values, scored);
            let window =
                ScoredWindow { start_ns: w.start_ns, end_ns: w.end_ns, score, sensor_error };
            let threshold = base * self.factors.get(device).copied().unwrap_or(1.0);
            match score_point(device, &window, threshold, &model) {
                Some(p) => points.push(p),
                None => not_finite += 1,
            }
            self.stats.latency.record(latency(w.newest_ns, now));
            let was_open = d.tracker.is_open();
            let messages = d.tracker.observe(&window, threshold, &model, now);
            match (was_open, d.tracker.is_open()) {
                (false, true) => self.stats.alerts_open.fetch_add(1, Ordering::Relaxed),
                (true, false) => self.stats.alerts_open.fetch_sub(1, Ordering::Relaxed),
                _ => 0,
            };
            out.extend(messages.into_iter().map(|a| (a, w.newest_ns)));
            if let Some(tx) = observer {
                let _ = tx.send(DetectEvent::Scored {
                    device: device.clone(),
                    window,
                    threshold,
                    model: model.clone(),
                });
            }
        }
        if not_finite > 0 {
            tracing::warn!(
                windows = not_finite,
                "windows scored NaN or infinite; their scores are not saved"
            );
        }
        self.stats.windows_scored.fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        Ok(Scored { alerts: out, points })
    }
}

/// Polls where each profile's alias points and sends each newly promoted version (and each
/// profile's first), loaded, to the detector. Failures (the tracking server down, a download cut
/// off) are logged and retried next time.
async fn watch_alias(
    follow: Follow,
    mut current: BTreeMap<String, String>,
    tx: mpsc::UnboundedSender<Arc<Scorer>>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(follow.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        for (profile, name) in &follow.names {
            let version = match follow.tracking.get_alias(name, &follow.alias).await {
                Ok(Some(v)) => v.version.to_string(),
                Ok(None) => {
                    if current.contains_key(profile) {
                        tracing::warn!(name = %name, alias = %follow.alias, "the alias is not set; keeping the current model");
                    }
                    continue;
                }
                // A profile with no model registered yet: nothing to follow so far.
                Err(e) if e.is_not_found() && !current.contains_key(profile) => continue,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), name = %name, "polling the model alias failed; keeping the current model");
                    continue;
                }
            };
            if current.get(profile) == Some(&version) {
                continue;
            }
            match Scorer::resolve(
                follow.tracking.as_ref(),
                name,
                &version,
                &follow.cache,
                follow.threads,
            )
            .await
            {
                Ok(scorer) if scorer.profile() != profile => {
                    tracing::warn!(name = %name, version = %version, model_profile = %scorer.profile(), profile = %profile, "the model version is for another profile; not used");
                    current.insert(profile.clone(), version);
                }
                Ok(scorer) => {
                    tracing::info!(name = %name, alias = %follow.alias, version = %version, "new model version loaded");
                    current.insert(profile.clone(), version);
                    if tx.send(Arc::new(scorer)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), version = %version, "loading the new model version failed; keeping the current one");
                }
            }
        }
    }
}
