//! The JSON API behind the pages (`docs/api.md`). Times are milliseconds since the epoch (what
//! charts and `Date` take); ranges are `[from, to)`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use sentio_core::time::{NANOS_PER_SEC, now_ns};
use sentio_core::{Alert, AlertState, Channel, DeviceId, Reading, SensorKind, Unit};
use sentio_store::{AnomalyQuery, RangeQuery, ScorePoint, ScoreQuery};
use serde::Serialize;
use serde_json::{Value, json};

use crate::Web;
use crate::params::{ApiError, Params, device_id, ms, nanos, range};

type Answer = Result<Json<Value>, ApiError>;
type RawParams = Query<BTreeMap<String, String>>;

/// A device with no reading for this long is shown as stale.
const STALE_AFTER: Duration = Duration::from_secs(600);

pub fn routes() -> Router<Web> {
    Router::new()
        .route("/api/overview", get(overview))
        .route("/api/devices/{device}/series", get(series))
        .route("/api/alerts", get(alerts))
        .route("/api/models", get(models))
        .route("/api/pipeline", get(pipeline))
        .route("/api/events", get(crate::feed::events))
}

impl Web {
    /// The newest reading of each (device, sensor) in the last [`STALE_AFTER`] (and any stamped
    /// ahead of the clock, as a sped-up simulation writes).
    async fn latest(&self) -> Result<Vec<Reading>, ApiError> {
        self.store
            .latest_readings(
                crate::clock_ns(self.probe.as_ref()).saturating_sub(nanos(STALE_AFTER)),
            )
            .await
            .map_err(|e| ApiError::backend("the latest readings", &e))
    }

    /// The newest event time in the store (of one device, or of all), or now when it is empty:
    /// where a default range ends, so a store of old data (or a sped-up simulation ahead of the
    /// clock) still shows its newest hour.
    async fn newest_ns(&self, device: Option<&DeviceId>) -> Result<i64, ApiError> {
        let newest = |rows: &[Reading]| {
            rows.iter().filter(|r| device.is_none_or(|d| &r.device == d)).map(|r| r.ts_ns).max()
        };
        let mut found = newest(&self.latest().await?);
        if found.is_none() {
            // Nothing recent: one walk back from each device's newest reading.
            let all = self
                .store
                .latest_readings(i64::MIN)
                .await
                .map_err(|e| ApiError::backend("the latest readings", &e))?;
            found = newest(&all);
        }
        Ok(found.map_or_else(now_ns, |t| t.saturating_add(1)))
    }
}

fn params(q: RawParams, accepted: &[&str]) -> Result<Params, ApiError> {
    Params::new(q.0, accepted)
}

/// `GET /api/overview`: every device with its state and latest reading of each sensor.
async fn overview(State(web): State<Web>, q: RawParams) -> Answer {
    params(q, &[])?;
    let devices =
        web.store.devices().await.map_err(|e| ApiError::backend("the list of devices", &e))?;
    let latest = web.latest().await?;
    let mut newest: HashMap<&DeviceId, i64> = HashMap::new();
    for r in &latest {
        let t = newest.entry(&r.device).or_insert(r.ts_ns);
        *t = (*t).max(r.ts_ns);
    }
    // One query for the newest score of every live device.
    let scores = match newest.values().min() {
        Some(&oldest) => web
            .store
            .scores(&ScoreQuery {
                device: None,
                from_ns: oldest.saturating_sub(30 * NANOS_PER_SEC),
                to_ns: i64::MAX,
            })
            .await
            .map_err(|e| ApiError::backend("the anomaly scores", &e))?,
        None => vec![],
    };
    let mut last_score: HashMap<&DeviceId, &ScorePoint> = HashMap::new();
    for s in &scores {
        last_score.insert(&s.device, s);
    }
    let to = newest.values().max().copied().unwrap_or_else(now_ns);
    let open = open_alerts(&web, to).await?;
    let out: Vec<Value> = devices
        .iter()
        .map(|d| {
            let mine: Vec<&Reading> = latest.iter().filter(|r| &r.device == d).collect();
            // The store's order: the pump's four, then the device's other channels by name.
            let channels: Vec<&str> = mine.iter().map(|r| r.sensor.as_str()).collect();
            let readings: serde_json::Map<String, Value> = mine
                .iter()
                .map(|r| {
                    (
                        r.sensor.as_str().to_owned(),
                        json!({
                            "value": r.value,
                            "unit": r.unit.as_str(),
                            "ts": ms(r.ts_ns),
                            "ts_source": r.ts_source.as_str(),
                        }),
                    )
                })
                .collect();
            let alert = open.iter().find(|a| &a.device == d);
            let state = match (alert, newest.get(d)) {
                (Some(_), _) => "alerting",
                (None, Some(_)) => "normal",
                (None, None) => "stale",
            };
            json!({
                "device": d.as_str(),
                "state": state,
                "channels": channels,
                "latest": newest.get(d).map(|t| ms(*t)),
                "readings": readings,
                "score": last_score.get(d).map(|s| json!({
                    "ts": ms(s.ts_ns), "score": s.score, "threshold": s.threshold,
                    "top_sensor": s.top_sensor.as_str(),
                })),
                "open_alert": alert.map(alert_json),
            })
        })
        .collect();
    Ok(Json(json!({ "as_of": ms(crate::clock_ns(web.probe.as_ref())), "devices": out })))
}

async fn open_alerts(web: &Web, to_ns: i64) -> Result<Vec<Alert>, ApiError> {
    let from = to_ns.saturating_sub(nanos(web.settings.max_range));
    let all = web
        .store
        .anomalies(&AnomalyQuery { device: None, from_ns: from, to_ns: i64::MAX })
        .await
        .map_err(|e| ApiError::backend("the alerts", &e))?;
    Ok(all.into_iter().filter(|a| a.state != AlertState::Resolved).collect())
}

pub fn alert_json(a: &Alert) -> Value {
    let share: serde_json::Map<String, Value> =
        a.sensor_share.iter().map(|(s, v)| (s.as_str().to_owned(), json!(v))).collect();
    // The JSON object keeps no order; the list does (display order: the pump's four first).
    let sensors: Vec<&str> = a.sensor_share.iter().map(|(s, _)| s.as_str()).collect();
    json!({
        "alert_id": a.alert_id,
        "device": a.device.as_str(),
        "state": a.state.as_str(),
        "open": a.state != AlertState::Resolved,
        "severity": a.severity.as_str(),
        "score": a.score,
        "threshold": a.threshold,
        "top_sensor": a.top_sensor().map(Channel::as_str),
        "sensor_share": share,
        "sensors": sensors,
        "window_start": ms(a.window_start_ns),
        "window_end": ms(a.window_end_ns),
        "detected_at": ms(a.detected_at_ns),
        "model": format!("{} v{}", a.model_name, a.model_version),
    })
}

/// `GET /api/devices/{device}/series?from&to&last&points`: the four sensors on one time axis, the
/// anomaly score and threshold, and the alerts in the range. Longer series are reduced to the
/// minimum and maximum of each of `points / 2` buckets, so spikes survive.
async fn series(State(web): State<Web>, Path(device): Path<String>, q: RawParams) -> Answer {
    let p = params(q, &["from", "to", "last", "points"])?;
    let device = device_id(&device)?;
    let points = p.count("points", 100, 1_000_000)?.unwrap_or(20_000);
    let default_to = web.newest_ns(Some(&device)).await?;
    let (from, to) = range(&p, default_to, web.settings.history, web.settings.max_range)?;
    let query =
        RangeQuery { devices: vec![device.clone()], sensors: vec![], from_ns: from, to_ns: to };
    let readings =
        web.store.query_range(&query).await.map_err(|e| ApiError::backend("the readings", &e))?;
    let scores = web
        .store
        .scores(&ScoreQuery { device: Some(device.clone()), from_ns: from, to_ns: to })
        .await
        .map_err(|e| ApiError::backend("the anomaly scores", &e))?;
    let alerts = web
        .store
        .anomalies(&AnomalyQuery { device: Some(device.clone()), from_ns: from, to_ns: to })
        .await
        .map_err(|e| ApiError::backend("the alerts", &e))?;
    if readings.is_empty() && scores.is_empty() {
        let known =
            web.store.devices().await.map_err(|e| ApiError::backend("the list of devices", &e))?;
        if !known.contains(&device) {
            return Err(ApiError::not_found(format!(
                "no device {:?} in the store; /api/overview lists the devices",
                device.as_str()
            )));
        }
    }
    let channels = channels_of(&readings);
    let frames = Frames::align(&readings, &channels);
    let raw_frames = frames.ts.len();
    let frames = frames.reduce(points);
    let score_frames = Frames::scores(&scores).reduce(points);
    let mut spans = Vec::new();
    for a in &alerts {
        let mut j = alert_json(a);
        j["span_start"] = json!(ms(web.models.span_start(&web, a).await));
        spans.push(j);
    }
    Ok(Json(json!({
        "device": device.as_str(),
        "from": ms(from),
        "to": ms(to),
        "raw_frames": raw_frames,
        "reduced": frames.ts.len() < raw_frames,
        "units": channels.iter().map(|(_, u)| u.as_str()).collect::<Vec<_>>(),
        "sensors": channels.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(),
        "ts": frames.ts,
        "values": frames.columns,
        "scores": { "ts": score_frames.ts, "score": score_frames.columns[0], "threshold": score_frames.columns[1] },
        "alerts": spans,
    })))
}

/// The channels of `readings` with the unit of each one's newest reading, in the order the
/// dashboard draws them: the pump's four (all of them, when the readings have any) in
/// `SensorKind::ALL` order, then every other channel by name.
pub fn channels_of(readings: &[Reading]) -> Vec<(Channel, Unit)> {
    // Later readings overwrite earlier ones: the newest unit of each channel.
    let mut units: BTreeMap<&Channel, &Unit> = BTreeMap::new();
    for r in readings {
        units.insert(&r.sensor, &r.unit);
    }
    let mut out: Vec<(Channel, Unit)> = Vec::new();
    if units.keys().any(|c| c.kind().is_some()) {
        // A pump channel not in the range still gets its chart, in the pump's unit.
        out.extend(SensorKind::ALL.map(|k| {
            let channel = Channel::from(k);
            let unit = units.get(&channel).map_or_else(|| Unit::from(k), |u| (*u).clone());
            (channel, unit)
        }));
    }
    out.extend(
        units.into_iter().filter(|(c, _)| c.kind().is_none()).map(|(c, u)| (c.clone(), u.clone())),
    );
    out
}

/// Columns on one time axis (milliseconds); `None` where a sensor has no reading at that time.
#[derive(Debug, Default, PartialEq)]
pub struct Frames {
    pub ts: Vec<f64>,
    pub columns: Vec<Vec<Option<f64>>>,
}

impl Frames {
    /// Readings ordered by time (as the store returns one device's) to one row per timestamp,
    /// one column per channel of `channels` (see [`channels_of`]); readings of other channels are
    /// left out.
    pub fn align(readings: &[Reading], channels: &[(Channel, Unit)]) -> Frames {
        let mut f = Frames { ts: vec![], columns: vec![vec![]; channels.len()] };
        let mut last = None;
        for r in readings {
            if last != Some(r.ts_ns) {
                last = Some(r.ts_ns);
                f.ts.push(ms(r.ts_ns));
                for c in &mut f.columns {
                    c.push(None);
                }
            }
            let Some(column) = channels.iter().position(|(c, _)| *c == r.sensor) else { continue };
            if let Some(cell) = f.columns[column].last_mut() {
                *cell = Some(r.value);
            }
        }
        f
    }

    /// Score and threshold columns.
    pub fn scores(scores: &[ScorePoint]) -> Frames {
        Frames {
            ts: scores.iter().map(|s| ms(s.ts_ns)).collect(),
            columns: vec![
                scores.iter().map(|s| Some(s.score)).collect(),
                scores.iter().map(|s| Some(s.threshold)).collect(),
            ],
        }
    }

    /// At most `points` rows: consecutive rows in `points / 2` buckets, each bucket drawn as two
    /// rows at its first and last timestamp holding each column's minimum and maximum in the
    /// order they occurred, so a one-second spike in a day stays (shifted by at most a bucket).
    pub fn reduce(self, points: usize) -> Frames {
        let n = self.ts.len();
        let buckets = (points / 2).max(1);
        if n <= points {
            return self;
        }
        let mut out = Frames { ts: vec![], columns: vec![vec![]; self.columns.len()] };
        for b in 0..buckets {
            let (lo, hi) = (b * n / buckets, (b + 1) * n / buckets);
            out.ts.push(self.ts[lo]);
            out.ts.push(self.ts[hi - 1]);
            for (c, col) in self.columns.iter().enumerate() {
                // (position in the bucket, value)
                let mut min: Option<(usize, f64)> = None;
                let mut max: Option<(usize, f64)> = None;
                for (i, v) in col[lo..hi].iter().enumerate() {
                    let Some(v) = *v else { continue };
                    if min.is_none_or(|(_, m)| v < m) {
                        min = Some((i, v));
                    }
                    if max.is_none_or(|(_, m)| v > m) {
                        max = Some((i, v));
                    }
                }
                let (first, second) = match (min, max) {
                    (Some(a), Some(b)) if b.0 < a.0 => (Some(b.1), Some(a.1)),
                    (a, b) => (a.map(|x| x.1), b.map(|x| x.1)),
                };
                out.columns[c].push(first);
                out.columns[c].push(second);
            }
        }
        out
    }
}

/// `GET /api/alerts?device&sensor&severity&state&from&to&last&limit`: newest first. `sensor`
/// keeps alerts whose top contributing sensor is that one; `state` is `open`, `resolved` or
/// `all` (the default).
async fn alerts(State(web): State<Web>, q: RawParams) -> Answer {
    let p = params(q, &["device", "sensor", "severity", "state", "from", "to", "last", "limit"])?;
    let device = p.device("device")?;
    let sensor = p.sensor("sensor")?;
    let severity = p.severity("severity")?;
    let state = p.choice("state", &["open", "resolved", "all"])?.unwrap_or("all");
    let limit = p.count("limit", 1, 10_000)?.unwrap_or(500);
    let default_to = web.newest_ns(device.as_ref()).await?;
    let (from, to) = range(
        &p,
        default_to,
        Duration::from_secs(86_400).min(web.settings.max_range),
        web.settings.max_range,
    )?;
    let mut all = web
        .store
        .anomalies(&AnomalyQuery { device, from_ns: from, to_ns: to })
        .await
        .map_err(|e| ApiError::backend("the alerts", &e))?;
    all.retain(|a| {
        sensor.as_ref().is_none_or(|s| a.top_sensor() == Some(s))
            && severity.is_none_or(|s| a.severity == s)
            && match state {
                "open" => a.state != AlertState::Resolved,
                "resolved" => a.state == AlertState::Resolved,
                _ => true,
            }
    });
    all.sort_by(|a, b| b.window_start_ns.cmp(&a.window_start_ns).then(a.alert_id.cmp(&b.alert_id)));
    let total = all.len();
    all.truncate(limit);
    Ok(Json(json!({
        "from": ms(from),
        "to": ms(to),
        "total": total,
        "alerts": all.iter().map(alert_json).collect::<Vec<_>>(),
    })))
}

/// What the dashboard shows of one model version; versions do not change once trained, so
/// they are read from the registry once.
#[derive(Debug, Clone, Serialize)]
pub struct VersionInfo {
    pub version: u64,
    pub created: f64,
    pub run_id: Option<String>,
    pub status: String,
    pub threshold: Option<f64>,
    pub threshold_method: Option<String>,
    pub best_validation_loss: Option<f64>,
    pub data_from: Option<String>,
    pub data_to: Option<String>,
    pub devices: Option<String>,
    pub window: Option<u64>,
    pub cadence: Option<String>,
    pub train_windows: Option<String>,
    pub train_loss: Vec<f64>,
    pub validation_loss: Vec<f64>,
    #[serde(skip)]
    pub window_span_ns: Option<i64>,
}

#[derive(Default)]
pub struct ModelCache {
    versions: Mutex<HashMap<(String, u64), VersionInfo>>,
}

impl ModelCache {
    fn get(&self, name: &str, version: u64) -> Option<VersionInfo> {
        self.versions.lock().ok()?.get(&(name.to_owned(), version)).cloned()
    }

    async fn load(&self, web: &Web, name: &str, version: u64) -> Result<VersionInfo, ApiError> {
        if let Some(v) = self.get(name, version) {
            return Ok(v);
        }
        let tracking = &web.tracking;
        let mv = tracking
            .get_model_version(name, version)
            .await
            .map_err(|e| ApiError::backend("a model version", &e))?;
        let mut info = VersionInfo {
            version,
            created: mv.creation_timestamp_ms as f64,
            run_id: mv.run_id.as_ref().map(|r| r.to_string()),
            status: mv.status.clone(),
            threshold: None,
            threshold_method: None,
            best_validation_loss: None,
            data_from: None,
            data_to: None,
            devices: None,
            window: None,
            cadence: None,
            train_windows: None,
            train_loss: vec![],
            validation_loss: vec![],
            window_span_ns: None,
        };
        if let Some(run) = &mv.run_id {
            let r =
                tracking.get_run(run).await.map_err(|e| ApiError::backend("a training run", &e))?;
            let param = |k: &str| r.params.get(k).cloned();
            let metric = |k: &str| r.metrics.get(k).map(|m| m.value);
            info.threshold = metric("threshold");
            info.best_validation_loss = metric("best_validation_loss");
            info.threshold_method = param("threshold_method");
            info.data_from = param("data_from");
            info.data_to = param("data_to");
            info.devices = param("devices");
            info.window = param("window").and_then(|w| w.parse().ok());
            info.cadence = param("cadence");
            info.train_windows = param("train_windows");
            let cadence = info.cadence.as_deref().and_then(parse_cadence);
            info.window_span_ns = info
                .window
                .zip(cadence)
                .map(|(w, c)| i64::try_from(w.saturating_sub(1)).unwrap_or(0).saturating_mul(c));
            for (key, out) in [
                ("train_loss", &mut info.train_loss),
                ("validation_loss", &mut info.validation_loss),
            ] {
                *out = tracking
                    .metric_history(run, key)
                    .await
                    .map_err(|e| ApiError::backend("the loss curves", &e))?
                    .into_iter()
                    .map(|m| m.value)
                    .collect();
            }
        }
        if let Ok(mut cache) = self.versions.lock() {
            cache.insert((name.to_owned(), version), info.clone());
        }
        Ok(info)
    }

    /// Where an alert's anomaly shows on a chart: the end of its first window above the
    /// threshold (the window's start is one window span earlier, before the anomaly began).
    async fn span_start(&self, web: &Web, a: &Alert) -> i64 {
        let span = match a.model_version.parse::<u64>() {
            Ok(v) => self.load(web, &a.model_name, v).await.ok().and_then(|i| i.window_span_ns),
            Err(_) => None,
        };
        span.map_or(a.window_start_ns, |s| a.window_start_ns.saturating_add(s).min(a.window_end_ns))
    }
}

/// `1s`, `100ms`, `1m` as the training run logs its cadence.
fn parse_cadence(s: &str) -> Option<i64> {
    crate::params::parse_duration(s).map(nanos)
}

/// `GET /api/models[?profile=P]`: every version of the model the detector follows for the
/// profile (the pump's by default), which one the alias points at, and each version's threshold,
/// data range and loss curves.
async fn models(State(web): State<Web>, q: RawParams) -> Answer {
    let p = params(q, &["profile"])?;
    let profiles = &web.settings.profile_models;
    let (profile, name) = match p.get("profile") {
        Some(asked) => match profiles.get(asked) {
            Some(name) => (Some(asked), name),
            None => {
                let known: Vec<&str> = profiles.keys().map(String::as_str).collect();
                return Err(ApiError::bad_request(format!(
                    "profile={asked:?} is not a profile of the configuration; use one of {}",
                    known.join(", ")
                )));
            }
        },
        None => (None, &web.settings.model_name),
    };
    let versions = match web.tracking.list_model_versions(name).await {
        Ok(v) => v,
        Err(e) if e.is_not_found() => vec![],
        Err(e) => return Err(ApiError::backend("the model registry", &e)),
    };
    let champion = versions
        .iter()
        .find(|v| v.aliases.iter().any(|a| a == &web.settings.alias))
        .map(|v| v.version);
    let mut out = Vec::new();
    for v in versions.iter().rev() {
        // One unreadable version (its run deleted, say) does not hide the others.
        let mut j = match web.models.load(&web, name, v.version).await {
            Ok(info) => serde_json::to_value(&info).unwrap_or(Value::Null),
            Err(e) => json!({ "version": v.version, "error": e.message }),
        };
        j["aliases"] = json!(v.aliases);
        j["champion"] = json!(Some(v.version) == champion);
        out.push(j);
    }
    Ok(Json(json!({
        "name": name,
        "profile": profile,
        "profiles": profiles.keys().collect::<Vec<_>>(),
        "alias": web.settings.alias,
        "champion": champion,
        "backend": web.tracking.backend(),
        "versions": out,
        "hint": versions.is_empty().then_some("no model is registered yet: run `sentio train` (sentio demo trains one on its backfill)"),
    })))
}

/// When a total was sampled, its value, and the rate computed then.
type Sample = (Instant, u64, Option<f64>);

/// Rates from successive samples of running totals.
#[derive(Default)]
pub struct RateMeter {
    samples: Mutex<HashMap<&'static str, Sample>>,
}

impl RateMeter {
    /// Per second since the previous sample at least a second old (the last rate in between).
    pub fn rate(&self, name: &'static str, total: u64) -> Option<f64> {
        let now = Instant::now();
        let mut samples = self.samples.lock().ok()?;
        match samples.get(name).copied() {
            Some((at, before, last)) => {
                let dt = now.duration_since(at).as_secs_f64();
                if dt < 1.0 {
                    return last;
                }
                let rate = total.saturating_sub(before) as f64 / dt;
                samples.insert(name, (now, total, Some(rate)));
                Some(rate)
            }
            None => {
                samples.insert(name, (now, total, None));
                None
            }
        }
    }
}

/// An alert raised more than this after its window's newest reading is taken for one from a
/// replay of stored history (`sentio detect --from`, the demo's backfill), not a live delay.
const LIVE_ALERT_MS: f64 = 120_000.0;

/// `GET /api/pipeline`: ingestion rate, consumer lag, dead letters, detection latency.
/// A bridge is stale after this many of its report periods without a report...
const STALE_AFTER_PERIODS: f64 = 3.0;
/// ...and left off the page after this long without one.
const FORGET_BRIDGE_AFTER_NS: i64 = 24 * 3_600 * NANOS_PER_SEC;

/// The bridges of other processes, from the newest report of each that the ETL stored: running,
/// stale (no report for three periods) or stopped. A store that fails here costs the page its
/// bridges (logged), not the rest of it.
async fn reported_bridges(web: &Web) -> Vec<Value> {
    let rows = match web.store.bridge_status().await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "reading the bridges' status reports failed");
            return Vec::new();
        }
    };
    let now = now_ns();
    rows.iter()
        .filter(|r| now.saturating_sub(r.reported_ns) < FORGET_BRIDGE_AFTER_NS)
        .filter_map(|r| match sentio_core::BridgeReport::decode(r.report.as_bytes()) {
            Ok((b, at)) => Some((b, at)),
            Err(e) => {
                tracing::warn!(bridge = %r.bridge, error = %e, "a stored bridge report does not read");
                None
            }
        })
        .map(|(b, at)| {
            let silent_s = now.saturating_sub(at) as f64 / 1e9;
            let state = if b.stopped {
                "stopped"
            } else if silent_s > STALE_AFTER_PERIODS * b.every_s {
                "stale"
            } else {
                "running"
            };
            let running = state == "running";
            json!({
                "kind": b.kind,
                "endpoint": b.endpoint,
                "connected": b.connected.map(|c| c && running),
                "messages": b.messages,
                "readings": b.readings,
                "readings_per_s": if running { b.readings_per_s } else { 0.0 },
                "arrival_time": b.arrival_time,
                "dead_letters": b.dead_letters,
                "refused": b.refused,
                "process": "reported",
                "bridge": b.bridge,
                "host": b.host,
                "pid": b.pid,
                "state": state,
                "reported_at": ms(at),
                "started_at": sentio_core::time::parse_rfc3339(&b.started_at).map(ms),
            })
        })
        .collect()
}

async fn pipeline(State(web): State<Web>, q: RawParams) -> Answer {
    params(q, &[])?;
    let s = &web.settings;
    let stats = web.store.stats().await.map_err(|e| ApiError::backend("the store's totals", &e))?;
    let committed = web
        .store
        .committed_offsets(&s.ingest_group, &s.readings_topic)
        .await
        .map_err(|e| ApiError::backend("the consumer offsets", &e))?;
    let lag = match &web.bus {
        Some(bus) => match bus.end_offsets(&s.readings_topic).await {
            Ok(ends) => {
                let partitions: BTreeMap<u32, u64> = ends
                    .iter()
                    .map(|(p, end)| {
                        (*p, end.saturating_sub(committed.get(p).copied().unwrap_or(0)))
                    })
                    .collect();
                json!({ "total": partitions.values().sum::<u64>(), "partitions": partitions })
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the bus's end offsets failed");
                json!({ "error": "the bus did not answer; the server log says why" })
            }
        },
        None => Value::Null,
    };
    let detection = web.probe.as_ref().map(|p| {
        let latency = p.scoring_latency_ms();
        json!({
            "windows_scored": p.windows_scored(),
            "windows_per_s": web.rates.rate("windows", p.windows_scored()),
            "latency_p50_ms": latency.map(|l| l.0),
            "latency_p99_ms": latency.map(|l| l.1),
        })
    });
    let bridges: Vec<Value> = web
        .bridges
        .iter()
        .map(|b| {
            let b = b.status();
            let rate_name = if b.kind == "mqtt" { "bridge-mqtt" } else { "bridge-http" };
            json!({
                "kind": b.kind,
                "endpoint": b.endpoint,
                "connected": b.connected,
                "messages": b.messages,
                "readings": b.readings,
                "readings_per_s": web.rates.rate(rate_name, b.readings),
                "arrival_time": b.arrival_time,
                "dead_letters": b.dead_letters,
                "refused": b.refused,
                "process": "this",
            })
        })
        .chain(reported_bridges(&web).await)
        .collect();
    let to = stats.latest_ts_ns.unwrap_or_else(now_ns).saturating_add(1);
    let recent = web
        .store
        .anomalies(&AnomalyQuery {
            device: None,
            from_ns: to.saturating_sub(3_600 * NANOS_PER_SEC),
            to_ns: to,
        })
        .await
        .map_err(|e| ApiError::backend("the alerts", &e))?;
    let mut delays: Vec<f64> = recent
        .iter()
        .map(|a| a.detected_at_ns.saturating_sub(a.window_end_ns) as f64 / 1e6)
        // Live alerts only: a replay of stored history raises alerts long after their data, and
        // a sped-up simulation stamps readings ahead of the clock.
        .filter(|d| (0.0..=LIVE_ALERT_MS).contains(d))
        .collect();
    delays.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        (!delays.is_empty()).then(|| delays[((delays.len() - 1) as f64 * q).round() as usize])
    };
    Ok(Json(json!({
        "readings": stats.readings,
        "readings_per_s": web.rates.rate("readings", stats.readings),
        "latest_reading": stats.latest_ts_ns.map(ms),
        "dead_letters": stats.dead_letters,
        "dead_letter_topic": s.dead_letter_topic,
        "consumer_group": s.ingest_group,
        "consumer_lag": lag,
        "detection": detection,
        "bridges": bridges,
        "alert_delay": {
            "alerts": delays.len(),
            "p50_ms": quantile(0.5),
            "p99_ms": quantile(0.99),
        },
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(sensor: SensorKind, t: i64, value: f64) -> Reading {
        Reading::pump(DeviceId::new("pump-01").unwrap(), sensor, t * NANOS_PER_SEC, value, 0)
    }

    fn other(channel: &str, unit: &str, t: i64, value: f64) -> Reading {
        Reading {
            sensor: Channel::new(channel).unwrap(),
            unit: Unit::new(unit).unwrap(),
            ..reading(SensorKind::Temperature, t, value)
        }
    }

    #[test]
    fn readings_align_on_one_axis_with_gaps_where_a_sensor_is_missing() {
        use SensorKind::*;
        let readings = [
            reading(Temperature, 1, 20.0),
            reading(Pressure, 1, 2.0),
            other("oil_level", "%", 1, 80.0),
            reading(Temperature, 2, 21.0),
            reading(Humidity, 2, 50.0),
            other("current", "A", 2, 7.5),
        ];
        let channels = channels_of(&readings);
        let names: Vec<(&str, &str)> =
            channels.iter().map(|(c, u)| (c.as_str(), u.as_str())).collect();
        assert_eq!(
            names,
            [
                ("temperature", "°C"),
                ("vibration", "RMS"),
                ("pressure", "bar"),
                ("humidity", "%"),
                ("current", "A"),
                ("oil_level", "%")
            ]
        );
        let f = Frames::align(&readings, &channels);
        assert_eq!(f.ts, [1000.0, 2000.0]);
        assert_eq!(f.columns[0], [Some(20.0), Some(21.0)]);
        assert_eq!(f.columns[1], [None, None]);
        assert_eq!(f.columns[2], [Some(2.0), None]);
        assert_eq!(f.columns[3], [None, Some(50.0)]);
        assert_eq!(f.columns[4], [None, Some(7.5)]);
        assert_eq!(f.columns[5], [Some(80.0), None]);
    }

    /// A machine with none of the pump's channels gets only its own.
    #[test]
    fn another_machine_has_only_its_channels() {
        let readings = [other("flow", "m³/h", 1, 3.0), other("current", "A", 1, 7.0)];
        let channels = channels_of(&readings);
        let names: Vec<&str> = channels.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(names, ["current", "flow"]);
        // A channel named like the pump's keeps the unit its device sends.
        let channels = channels_of(&[other("pressure", "psi", 1, 30.0)]);
        assert_eq!((channels[2].0.as_str(), channels[2].1.as_str()), ("pressure", "psi"));
        assert_eq!(channels[0].1.as_str(), "°C");
    }

    #[test]
    fn reducing_keeps_each_buckets_extremes() {
        let n = 86_400;
        let mut col: Vec<Option<f64>> = (0..n).map(|i| Some((i % 7) as f64)).collect();
        col[40_000] = Some(99.0);
        col[50_000] = Some(-5.0);
        let f = Frames { ts: (0..n).map(|i| i as f64).collect(), columns: vec![col] };
        let r = f.reduce(2_000);
        assert_eq!(r.ts.len(), 2_000);
        assert!(r.ts.windows(2).all(|w| w[0] < w[1]), "time stays ordered");
        let vals: Vec<f64> = r.columns[0].iter().flatten().copied().collect();
        assert!(vals.contains(&99.0) && vals.contains(&-5.0));
        let small = Frames { ts: vec![1.0], columns: vec![vec![Some(1.0)]] };
        assert_eq!(small.reduce(100).ts, [1.0]);
        // Within a bucket the extremes keep their order: a drop then a spike stays so.
        let col = vec![Some(1.0), Some(-3.0), Some(1.0), Some(8.0), Some(1.0), Some(1.0)];
        let f = Frames {
            ts: (0..6).map(f64::from).collect(),
            columns: vec![col.clone(), col.into_iter().rev().collect()],
        };
        let r = f.reduce(2);
        assert_eq!(r.ts, [0.0, 5.0]);
        assert_eq!(r.columns[0], [Some(-3.0), Some(8.0)]);
        assert_eq!(r.columns[1], [Some(8.0), Some(-3.0)]);
    }

    #[test]
    fn cadences_parse_as_training_logs_them() {
        assert_eq!(parse_cadence("1s"), Some(NANOS_PER_SEC));
        assert_eq!(parse_cadence("100ms"), Some(100_000_000));
        assert_eq!(parse_cadence("1m"), Some(60 * NANOS_PER_SEC));
        assert_eq!(parse_cadence("1m 30s"), None);
    }
}
