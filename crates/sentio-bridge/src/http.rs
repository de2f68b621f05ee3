//! `POST /api/v1/readings`: readings over HTTP, for devices and scripts that do not speak MQTT
//! (docs/api.md).
//!
//! - The body is JSON lines (one item per line) or one JSON array, each item in the format the
//!   query names (`?format=reading|value|object|number`, with `device`, `sensor` and `unit` where
//!   the format needs them, as an MQTT topic's levels would give them).
//! - A bearer token is required. The body is bounded while it is read (413), the readings per
//!   second over all clients too (429 with a Retry-After), and so are the requests handled at
//!   once (more wait their turn).
//! - The answer comes once the bus has acknowledged the readings (on the embedded bus, once the
//!   store holds them, see [`Settle`]): a 200 means stored. Lines that carry no reading are
//!   answered in a 400 with their line numbers and reasons and go to the dead-letter topic; the
//!   request's other lines are stored all the same. A request refused whole (no token, a bad
//!   query, too large, not a JSON array, too fast) stores nothing and dead-letters nothing: the
//!   client still has it and was told why.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use sentio_bus::Bus;
use sentio_config::{HttpBridgeConfig, PayloadFormat, TopicMatch};
use sentio_core::message::DecodeLimits;
use sentio_core::{DeviceId, Unit, encode_reading};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::mqtt::{Settle, Topics};
use crate::payload::{Decoder, Rejected};

/// The path the endpoint answers on.
pub const PATH: &str = "/api/v1/readings";

/// Line errors listed in one answer; the rest are counted.
const MAX_LISTED_ERRORS: usize = 100;

/// How long a request waits for the bus before it is answered 503.
const BUS_DEADLINE: Duration = Duration::from_secs(30);

/// Counters a caller (the CLI, the pipeline page) reads while the endpoint serves.
#[derive(Debug, Default)]
pub struct HttpStats {
    /// Requests answered (any status).
    pub requests: AtomicU64,
    /// Requests refused whole: 401, 400 for the query or the body's shape, 413, 429, 503.
    pub refused: AtomicU64,
    /// Readings published on the bus.
    pub readings: AtomicU64,
    /// Readings that carried no timestamp (stamped with their arrival time).
    pub arrival_time: AtomicU64,
    /// Lines sent to the dead-letter topic.
    pub dead_letters: AtomicU64,
}

/// A dead letter of the HTTP endpoint: one line (or array item) that carried no reading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpDeadLetter {
    pub v: u32,
    pub source: &'static str,
    pub code: String,
    pub reason: String,
    /// The line of a JSON-lines body (from 1), or the item of an array (from 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<u64>,
    /// The request's query: its format and what it named.
    pub query: String,
    pub received_at: String,
    pub payload_base64: String,
}

/// The readings per second over all clients: a bucket of one second's worth, refilled at that
/// rate. A request is let in while the bucket is not empty and then takes what it carried, so a
/// large one may leave it in debt, which the next ones wait out.
struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: u32) -> Bucket {
        Bucket { rate: f64::from(rate), tokens: f64::from(rate), at: Instant::now() }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.at = now;
    }

    /// `Err(wait)` while the bucket is empty: how long until it is not.
    fn admit(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens > 0.0 {
            Ok(())
        } else {
            Err(Duration::from_secs_f64((-self.tokens + 1.0) / self.rate))
        }
    }

    fn take(&mut self, readings: u64, now: Instant) {
        self.refill(now);
        self.tokens -= readings as f64;
    }
}

/// The endpoint: where readings go and what bounds a request.
pub struct HttpIngest {
    bus: Arc<dyn Bus>,
    topics: Topics,
    settle: Option<Arc<dyn Settle>>,
    token: String,
    config: HttpBridgeConfig,
    limits: DecodeLimits,
    profiles: Arc<sentio_core::Profiles>,
    stats: Arc<HttpStats>,
    bucket: Mutex<Bucket>,
    turns: Semaphore,
    stop: CancellationToken,
}

impl HttpIngest {
    /// An endpoint for `config` (whose token must be set); `limits` bound each reading as the
    /// ETL does (their `max_bytes` becomes `max_line_bytes`).
    pub fn new(
        config: HttpBridgeConfig,
        bus: Arc<dyn Bus>,
        topics: Topics,
        limits: DecodeLimits,
    ) -> anyhow::Result<HttpIngest> {
        let token = config.token.expose().to_owned();
        anyhow::ensure!(
            !token.trim().is_empty(),
            "bridge.http.token is empty: the ingest endpoint needs a bearer token. Set \
             SENTIO__BRIDGE__HTTP__TOKEN=<a long random string> (for one: `openssl rand -hex \
             32`), or bridge.http.token_file to a file holding it"
        );
        let limits = DecodeLimits { max_bytes: config.max_line_bytes, ..limits };
        Ok(HttpIngest {
            bus,
            topics,
            settle: None,
            token,
            bucket: Mutex::new(Bucket::new(config.max_readings_per_second)),
            turns: Semaphore::new(usize::from(config.max_concurrent_requests)),
            limits,
            profiles: Arc::new(sentio_core::Profiles::builtin()),
            config,
            stats: Arc::default(),
            stop: CancellationToken::new(),
        })
    }

    /// The profiles that give a value sent without a unit its channel's unit (the built-in pump
    /// profile by default).
    pub fn with_profiles(mut self, profiles: sentio_core::Profiles) -> HttpIngest {
        self.profiles = Arc::new(profiles);
        self
    }

    /// Answers a request only once `settle` says its records are settled (see [`Settle`]).
    pub fn with_settle(mut self, settle: Arc<dyn Settle>) -> HttpIngest {
        self.settle = Some(settle);
        self
    }

    /// Requests still waiting for the bus when `stop` fires are answered 503.
    pub fn with_stop(mut self, stop: CancellationToken) -> HttpIngest {
        self.stop = stop;
        self
    }

    pub fn stats(&self) -> Arc<HttpStats> {
        self.stats.clone()
    }

    /// `POST /api/v1/readings`, to serve alone or merged into another router.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route(
                PATH,
                axum::routing::post(ingest).fallback(|| async {
                    let mut response = error(
                        StatusCode::METHOD_NOT_ALLOWED,
                        format!("{PATH} takes POST only (readings in the body; docs/api.md)"),
                    );
                    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
                    response
                }),
            )
            .with_state(self)
    }
}

/// What the query asks for.
struct Asked {
    decoder: Decoder,
    device: Option<String>,
    sensor: Option<String>,
    query: String,
}

async fn ingest(
    State(ingest): State<Arc<HttpIngest>>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    body: Body,
) -> Response {
    let mut response = handle(&ingest, &headers, query, body).await;
    ingest.stats.requests.fetch_add(1, Ordering::Relaxed);
    if response.headers_mut().remove(REFUSED).is_some() {
        ingest.stats.refused.fetch_add(1, Ordering::Relaxed);
    }
    response
}

async fn handle(
    ingest: &HttpIngest,
    headers: &HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    body: Body,
) -> Response {
    if !authorized(headers, &ingest.token) {
        let mut response = refused(
            StatusCode::UNAUTHORIZED,
            "this endpoint needs the ingest token: send `Authorization: Bearer <token>` (the \
             token is bridge.http.token / SENTIO__BRIDGE__HTTP__TOKEN on the server)"
                .into(),
        );
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"sentio\""));
        return response;
    }
    let asked = match query.map_err(|e| e.body_text()).and_then(|Query(q)| ingest.asked(&q)) {
        Ok(asked) => asked,
        Err(why) => return refused(StatusCode::BAD_REQUEST, why),
    };
    if let Err(wait) = ingest.bucket.lock().await.admit(Instant::now()) {
        let mut response = refused(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "more than bridge.http.max_readings_per_second ({}) readings per second: send \
                 this again after the Retry-After header's seconds",
                ingest.config.max_readings_per_second
            ),
        );
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return response;
    }
    let limit = ingest.config.max_request_bytes;
    if let Some(length) = content_length(headers)
        && length > limit as u64
    {
        return too_large(length, limit);
    }
    // A turn bounds the bodies in memory at once; the semaphore is never closed.
    let Ok(_turn) = ingest.turns.acquire().await else {
        return refused(StatusCode::SERVICE_UNAVAILABLE, "shutting down".into());
    };
    let body = match read_body(body, limit).await {
        Ok(body) => body,
        Err(Read::TooLarge(seen)) => return too_large(seen as u64, limit),
        Err(Read::Failed(e)) => {
            return refused(StatusCode::BAD_REQUEST, format!("reading the body failed: {e}"));
        }
    };
    let items = match split(&body) {
        Ok(items) if items.items.is_empty() => {
            return refused(
                StatusCode::BAD_REQUEST,
                "the body holds no readings: send JSON lines (one item per line) or a JSON array"
                    .into(),
            );
        }
        Ok(items) => items,
        Err(why) => return refused(StatusCode::BAD_REQUEST, why),
    };
    ingest.take(&asked, &items).await
}

impl HttpIngest {
    /// The query's format and names, checked before the body is read.
    fn asked(&self, query: &[(String, String)]) -> Result<Asked, String> {
        let (mut format, mut device, mut sensor, mut unit) = (None, None, None, None);
        for (key, value) in query {
            let slot = match key.as_str() {
                "format" => &mut format,
                "device" => &mut device,
                "sensor" | "channel" => &mut sensor,
                "unit" => &mut unit,
                other => {
                    return Err(format!(
                        "unknown query parameter `{other}`: expected format, device, sensor and \
                         unit"
                    ));
                }
            };
            if slot.replace(value.clone()).is_some() {
                return Err(format!("query parameter `{key}` given twice"));
            }
        }
        let format = match format.as_deref() {
            None | Some("reading") => PayloadFormat::Reading,
            Some("value") => PayloadFormat::Value,
            Some("object") => PayloadFormat::Object,
            Some("number") => PayloadFormat::Number,
            Some(other) => {
                return Err(format!(
                    "format={other:?}: expected reading (the default), value, object or number"
                ));
            }
        };
        if let Some(d) = &device {
            DeviceId::new(d).map_err(|e| format!("device={d:?}: {e}"))?;
        }
        let needs_sensor = matches!(format, PayloadFormat::Number | PayloadFormat::Value);
        match (format, &device, &sensor) {
            (PayloadFormat::Reading, _, Some(_)) | (PayloadFormat::Object, _, Some(_)) => {
                return Err(
                    "sensor= is for format=value and format=number only (a reading, or an \
                     object's members, name their channels)"
                        .into(),
                );
            }
            (PayloadFormat::Reading, _, _) => {}
            (_, None, _) => {
                return Err(format!(
                    "format={} needs device=<the device's id> (e.g. ?format=value&device=pump-01\
                     &sensor=temperature)",
                    format_name(format)
                ));
            }
            (_, Some(_), None) if needs_sensor => {
                return Err(format!(
                    "format={} needs sensor=<the channel> (e.g. ?format=value&device=pump-01\
                     &sensor=temperature)",
                    format_name(format)
                ));
            }
            _ => {}
        }
        let unit = Unit::new(unit.as_deref().unwrap_or(""))
            .map_err(|e| format!("unit={:?}: {e}", unit.unwrap_or_default()))?;
        let query = query.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
        Ok(Asked {
            decoder: Decoder { format, unit, limits: self.limits, profiles: self.profiles.clone() },
            device,
            sensor,
            query,
        })
    }

    /// Decodes the items, publishes their readings and dead letters, and answers.
    async fn take(&self, asked: &Asked, items: &Items<'_>) -> Response {
        let now = sentio_core::time::now_ns();
        let names = TopicMatch { device: asked.device.as_deref(), sensor: asked.sensor.as_deref() };
        let (mut records, mut letters, mut errors) = (Vec::new(), Vec::new(), Vec::new());
        let (mut accepted, mut arrival) = (0u64, 0u64);
        for (n, item) in items.items.iter().enumerate() {
            match asked.decoder.decode(names, item.bytes, now) {
                Ok(decoded) => {
                    accepted += 1;
                    if decoded.arrival_time {
                        arrival += decoded.readings.len() as u64;
                    }
                    for r in &decoded.readings {
                        let key = Bytes::copy_from_slice(r.device.as_str().as_bytes());
                        records.push((key, Bytes::from(encode_reading(r))));
                    }
                }
                Err(Rejected { code, reason }) => {
                    let (line, position) = if items.array {
                        (None, Some(n as u64 + 1))
                    } else {
                        (Some(item.line), None)
                    };
                    let letter = HttpDeadLetter {
                        v: 1,
                        source: "http",
                        code: code.to_owned(),
                        reason: reason.clone(),
                        line,
                        item: position,
                        query: asked.query.clone(),
                        received_at: sentio_core::time::format_rfc3339(now),
                        payload_base64: base64::engine::general_purpose::STANDARD
                            .encode(item.bytes),
                    };
                    let json = serde_json::to_vec(&letter).unwrap_or_default();
                    letters.push((Bytes::from_static(b"http"), Bytes::from(json)));
                    if errors.len() < MAX_LISTED_ERRORS {
                        let mut e = json!({ "code": code, "reason": reason });
                        match (line, position) {
                            (Some(l), _) => e["line"] = json!(l),
                            (_, Some(i)) => e["item"] = json!(i),
                            _ => {}
                        }
                        errors.push(e);
                    }
                }
            }
        }
        let readings = records.len() as u64;
        let rejected = letters.len() as u64;
        self.bucket.lock().await.take(readings + rejected, Instant::now());
        for (topic, batch) in
            [(&self.topics.readings, records), (&self.topics.dead_letters, letters)]
        {
            if batch.is_empty() {
                continue;
            }
            if let Err(why) = self.publish(topic, batch).await {
                return refused(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "{why}; send the request again (readings with a timestamp that were \
                         stored already are stored once)"
                    ),
                );
            }
        }
        self.stats.readings.fetch_add(readings, Ordering::Relaxed);
        self.stats.arrival_time.fetch_add(arrival, Ordering::Relaxed);
        self.stats.dead_letters.fetch_add(rejected, Ordering::Relaxed);
        let what = if items.array { "items" } else { "lines" };
        let mut answer = json!({ "accepted": accepted, "readings": readings });
        if arrival > 0 {
            answer["arrival_time"] = json!(arrival);
        }
        if rejected == 0 {
            return (StatusCode::OK, axum::Json(answer)).into_response();
        }
        let first = errors.first().cloned().unwrap_or(Value::Null);
        let at = first
            .get("line")
            .map(|l| format!("line {l}"))
            .or_else(|| first.get("item").map(|i| format!("item {i}")))
            .unwrap_or_default();
        answer["error"] = json!(format!(
            "{rejected} of {} {what} carry no reading (the first, {at}: {}); those went to the \
             dead-letter topic and the other {accepted} are stored: send the rejected ones again \
             once fixed",
            accepted + rejected,
            first.get("reason").and_then(Value::as_str).unwrap_or("")
        ));
        answer["rejected"] = json!(rejected);
        answer["errors"] = Value::Array(errors);
        if rejected as usize > MAX_LISTED_ERRORS {
            answer["errors_truncated"] = json!(true);
        }
        (StatusCode::BAD_REQUEST, axum::Json(answer)).into_response()
    }

    /// Puts `records` on `topic` (and, with a [`Settle`], waits until they are settled),
    /// retrying the bus for up to [`BUS_DEADLINE`].
    async fn publish(&self, topic: &str, records: Vec<(Bytes, Bytes)>) -> Result<(), String> {
        let deadline = Instant::now() + BUS_DEADLINE;
        let mut pause = Duration::from_millis(100);
        loop {
            match self.bus.publish_batch(topic, records.clone()).await {
                Ok(deliveries) => {
                    if let Some(settle) = &self.settle {
                        settle
                            .settled(topic, &deliveries, &self.stop)
                            .await
                            .map_err(|e| format!("storing the readings failed: {e:#}"))?;
                    }
                    if self.stop.is_cancelled() {
                        return Err("the server is shutting down".into());
                    }
                    return Ok(());
                }
                Err(e) if Instant::now() + pause < deadline && !self.stop.is_cancelled() => {
                    tracing::warn!(error = %e, topic = %topic, "the bus refused readings; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = self.stop.cancelled() => {}
                    }
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(format!("the bus did not take the readings: {e}")),
            }
        }
    }
}

fn format_name(format: PayloadFormat) -> &'static str {
    match format {
        PayloadFormat::Number => "number",
        PayloadFormat::Value => "value",
        PayloadFormat::Object => "object",
        PayloadFormat::Reading => "reading",
    }
}

/// One item of the body: its bytes and the line it starts on.
struct Item<'a> {
    bytes: &'a [u8],
    line: u64,
}

struct Items<'a> {
    items: Vec<Item<'a>>,
    /// A JSON array (errors name items), else JSON lines (errors name lines).
    array: bool,
}

/// JSON lines, or one JSON array when the body starts with `[`. Blank lines are skipped.
fn split(body: &[u8]) -> Result<Items<'_>, String> {
    let start = body.iter().position(|b| !b.is_ascii_whitespace());
    if start.and_then(|i| body.get(i)) == Some(&b'[') {
        let raw: Vec<&serde_json::value::RawValue> = serde_json::from_slice(body).map_err(|e| {
            format!(
                "the body starts with `[` but is not a JSON array: {e}; send one array, or JSON \
                 lines (one item per line)"
            )
        })?;
        let items = raw.iter().map(|r| Item { bytes: r.get().as_bytes(), line: 0 }).collect();
        return Ok(Items { items, array: true });
    }
    let items = body
        .split(|b| *b == b'\n')
        .enumerate()
        .map(|(i, line)| Item { bytes: line.trim_ascii(), line: i as u64 + 1 })
        .filter(|item| !item.bytes.is_empty())
        .collect();
    Ok(Items { items, array: false })
}

enum Read {
    TooLarge(usize),
    Failed(axum::Error),
}

/// The whole body, refused as soon as it passes `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<Vec<u8>, Read> {
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(Read::Failed)?;
        if out.len() + chunk.len() > limit {
            return Err(Read::TooLarge(out.len() + chunk.len()));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

fn too_large(seen: u64, limit: usize) -> Response {
    refused(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the body is larger than bridge.http.max_request_bytes ({limit} bytes; {seen} seen): \
             send fewer readings per request"
        ),
    )
}

/// Whether `headers` carry `Authorization: Bearer <token>`.
fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    given.is_some_and(|given| same(given, token))
}

/// Compares digests, so the time taken does not depend on where the strings differ.
fn same(given: &str, expected: &str) -> bool {
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

/// Marks a response as a request refused whole, for the counters (removed before it is sent).
const REFUSED: &str = "x-sentio-refused";

fn refused(status: StatusCode, message: String) -> Response {
    let mut response = error(status, message);
    response.headers_mut().insert(REFUSED, HeaderValue::from_static("1"));
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_body_is_json_lines_or_one_array() {
        let lines = split(b"{\"a\":1}\n\n  {\"b\":2}\r\n").unwrap();
        assert!(!lines.array);
        let got: Vec<_> = lines.items.iter().map(|i| (i.bytes, i.line)).collect();
        assert_eq!(got, vec![(&b"{\"a\":1}"[..], 1), (&b"{\"b\":2}"[..], 3)]);
        let array = split(b" [ {\"a\": 1}, 2.5 ,\n{\"c\":[1,2]} ]").unwrap();
        assert!(array.array);
        let got: Vec<_> = array.items.iter().map(|i| i.bytes).collect();
        assert_eq!(got, vec![&b"{\"a\": 1}"[..], b"2.5", b"{\"c\":[1,2]}"]);
        let err = split(b"[{\"a\": 1},").err().unwrap();
        assert!(err.contains("not a JSON array") && err.contains("line 1"), "{err}");
        assert!(split(b"\n \n").unwrap().items.is_empty());
    }

    #[test]
    fn the_bucket_lets_a_second_through_then_asks_to_wait() {
        let mut bucket = Bucket::new(1000);
        let t0 = Instant::now();
        assert!(bucket.admit(t0).is_ok());
        bucket.take(1500, t0);
        let wait = bucket.admit(t0).unwrap_err();
        assert!(wait > Duration::from_millis(400) && wait < Duration::from_millis(600), "{wait:?}");
        assert!(bucket.admit(t0 + Duration::from_millis(600)).is_ok());
        // It never holds more than a second's worth.
        bucket.refill(t0 + Duration::from_secs(60));
        assert_eq!(bucket.tokens, 1000.0);
    }

    #[test]
    fn only_the_bearer_token_opens_it() {
        let mut headers = HeaderMap::new();
        assert!(!authorized(&headers, "s3cret"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer s3cret"));
        assert!(authorized(&headers, "s3cret"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer s3cre"));
        assert!(!authorized(&headers, "s3cret"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic s3cret"));
        assert!(!authorized(&headers, "s3cret"));
    }
}
