#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Every route of the dashboard, through the router (`oneshot`), over a real SQLite store, a local
//! model registry and the in-memory bus.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use bytes::Bytes;
use http_body_util::BodyExt;
use sentio_bus::Bus;
use sentio_bus::memory::MemoryBus;
use sentio_core::time::{NANOS_PER_SEC, now_ns};
use sentio_core::{
    Alert, AlertState, Channel, DeviceId, Reading, SensorKind, Severity, TsSource, Unit,
};
use sentio_store::sqlite::SqliteStore;
use sentio_store::{DeadLetter, IngestBatch, ReadingStore, ScorePoint, SourceOffset};
use sentio_tracking::{LocalTracking, Metric, Tracking};
use sentio_web::{Web, WebSettings};
use serde_json::Value;
use tower::ServiceExt;

const S: i64 = NANOS_PER_SEC;
const TOKEN: &str = "s3cret-token-for-tests";
const MODEL: &str = "sentio-lstm-ae";

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<dyn ReadingStore>,
    web: Web,
    /// The newest reading's time.
    t0: i64,
}

fn dev(id: &str) -> DeviceId {
    DeviceId::new(id).unwrap()
}

fn settings(token: Option<&str>) -> WebSettings {
    WebSettings {
        model_name: MODEL.into(),
        profile_models: [
            ("pump".to_owned(), MODEL.to_owned()),
            ("comp".to_owned(), "sentio-comp".to_owned()),
        ]
        .into(),
        alias: "champion".into(),
        readings_topic: "sensor-data".into(),
        dead_letter_topic: "sensor-data.dlq".into(),
        ingest_group: "sentio-ingest".into(),
        history: Duration::from_secs(3_600),
        max_range: Duration::from_secs(86_400),
        token: token.map(str::to_owned),
        poll: Duration::from_millis(50),
    }
}

fn alert(
    id: &str,
    device: &str,
    state: AlertState,
    severity: Severity,
    share: [f64; 4],
    end: i64,
) -> Alert {
    Alert {
        alert_id: id.into(),
        device: dev(device),
        state,
        window_start_ns: end - 70 * S,
        window_end_ns: end,
        score: 2.5,
        threshold: 1.0,
        severity,
        sensor_share: SensorKind::ALL.into_iter().map(Channel::from).zip(share).collect(),
        model_name: MODEL.into(),
        model_version: "1".into(),
        detected_at_ns: end + S / 2,
    }
}

/// Two devices with 10 minutes of 1 s readings ending just now, scores, two alerts (pump-02's
/// open), 30 ingested messages and one dead letter on the bus, and a registered champion.
async fn fixture(token: Option<&str>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ReadingStore> =
        Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap());
    store.migrate().await.unwrap();
    let t0 = now_ns() / S * S;
    let mut readings = vec![];
    let mut scores = vec![];
    for d in ["pump-01", "pump-02"] {
        for i in 0..600 {
            let ts = t0 - (599 - i) * S;
            for (k, sensor) in SensorKind::ALL.into_iter().enumerate() {
                readings.push(Reading::pump(
                    dev(d),
                    sensor,
                    ts,
                    10.0 * k as f64 + i as f64 / 100.0,
                    i as u64,
                ));
            }
            scores.push(ScorePoint {
                device: dev(d),
                ts_ns: ts,
                score: 0.1 + i as f64 / 1000.0,
                threshold: 1.0,
                top_sensor: SensorKind::Pressure.into(),
                model_version: "1".into(),
            });
        }
    }
    store.insert_readings(&readings).await.unwrap();
    store.save_scores(&scores).await.unwrap();
    store
        .save_alerts(&[
            alert(
                "a-1",
                "pump-01",
                AlertState::Resolved,
                Severity::Warning,
                [0.7, 0.1, 0.1, 0.1],
                t0 - 300 * S,
            ),
            alert(
                "a-2",
                "pump-02",
                AlertState::Opened,
                Severity::Critical,
                [0.1, 0.1, 0.7, 0.1],
                t0 - 10 * S,
            ),
        ])
        .await
        .unwrap();

    // The bus holds 30 messages; the ETL stored 20 of them (19 readings' worth and a dead letter).
    let bus = MemoryBus::new(1024);
    bus.create_topic("sensor-data", 2).await.unwrap();
    for i in 0..30u8 {
        bus.publish("sensor-data", &[i % 2], Bytes::from_static(b"{}")).await.unwrap();
    }
    let mut batch = IngestBatch {
        group: "sentio-ingest".into(),
        topic: "sensor-data".into(),
        ..Default::default()
    };
    batch.dead_letters.push(DeadLetter {
        source: SourceOffset { partition: 0, offset: 3 },
        code: "missing_field".into(),
        reason: "missing field `value`".into(),
        key: vec![],
        payload: b"{}".to_vec(),
    });
    batch.next_offsets = BTreeMap::from([(0, 10), (1, 10)]);
    store.write_batch(&batch).await.unwrap();

    let tracking = LocalTracking::open(&dir.path().join("tracking")).unwrap();
    let exp = tracking.experiment("sentio").await.unwrap();
    let run = tracking.create_run(&exp, "train", &[]).await.unwrap();
    let params: Vec<(String, String)> = [
        ("window", "64"),
        ("cadence", "1s"),
        ("threshold_method", "pot"),
        ("data_from", "2026-11-24T00:00:00Z"),
        ("data_to", "2026-11-24T06:00:00Z"),
        ("devices", "pump-01,pump-02"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    tracking.log_params(&run, &params).await.unwrap();
    let mut metrics =
        vec![Metric::new("threshold", 1.0, 0, 1), Metric::new("best_validation_loss", 0.02, 0, 1)];
    for e in 0..3 {
        metrics.push(Metric::new("train_loss", 0.5 / (e + 1) as f64, e, 1));
        metrics.push(Metric::new("validation_loss", 0.6 / (e + 1) as f64, e, 1));
    }
    tracking.log_metrics(&run, &metrics).await.unwrap();
    tracking.create_registered_model(MODEL).await.unwrap();
    let source = format!("runs:/{}/model", run.as_str());
    let v = tracking.create_model_version(MODEL, &source, Some(&run), None).await.unwrap();
    tracking.set_alias(MODEL, "champion", v.version).await.unwrap();

    let web = Web::new(store.clone(), Arc::new(tracking), settings(token)).with_bus(Arc::new(bus));
    Fixture { _dir: dir, store, web, t0 }
}

async fn call(app: &Router, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

async fn get(app: &Router, uri: &str) -> (StatusCode, String) {
    let (status, _, body) = call(app, Request::get(uri).body(Body::empty()).unwrap()).await;
    (status, body)
}

async fn json(app: &Router, uri: &str) -> Value {
    let (status, body) = get(app, uri).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn overview_lists_every_device_with_its_state_latest_readings_and_score() {
    let f = fixture(None).await;
    let app = f.web.router();
    let o = json(&app, "/api/overview").await;
    let devices = o["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2);
    assert_eq!(devices[0]["device"], "pump-01");
    assert_eq!(devices[0]["state"], "normal");
    assert_eq!(devices[1]["state"], "alerting");
    assert_eq!(devices[1]["open_alert"]["alert_id"], "a-2");
    assert_eq!(devices[1]["open_alert"]["top_sensor"], "pressure");
    let t = devices[0]["readings"]["pressure"].clone();
    assert_eq!(t["value"], 20.0 + 5.99);
    assert_eq!(t["unit"], "bar");
    assert_eq!(t["ts"], (f.t0 / 1_000_000) as f64);
    assert_eq!(t["ts_source"], "event");
    assert_eq!(devices[0]["score"]["score"], 0.1 + 599.0 / 1000.0);
}

#[tokio::test]
async fn series_aligns_the_sensors_and_carries_scores_and_alert_spans() {
    let f = fixture(None).await;
    let app = f.web.router();
    let d = json(&app, "/api/devices/pump-01/series?last=5m").await;
    assert_eq!(d["raw_frames"], 300);
    assert_eq!(d["reduced"], false);
    let ts = d["ts"].as_array().unwrap();
    assert_eq!(ts.len(), 300);
    assert_eq!(ts[299], (f.t0 / 1_000_000) as f64);
    assert_eq!(d["values"][1][299], 10.0 + 5.99);
    assert_eq!(d["scores"]["ts"].as_array().unwrap().len(), 300);
    assert_eq!(d["scores"]["threshold"][0], 1.0);
    // The resolved alert ended 300 s before the newest reading: inside a 10-minute range, and
    // marked from the end of its first window (63 frames after its start).
    let d = json(&app, "/api/devices/pump-01/series?last=10m").await;
    let a = &d["alerts"][0];
    assert_eq!(a["alert_id"], "a-1");
    assert_eq!(a["span_start"].as_f64().unwrap(), a["window_start"].as_f64().unwrap() + 63_000.0);
    // A day of data would be reduced: ask for fewer points than frames.
    let d = json(&app, "/api/devices/pump-01/series?last=10m&points=100").await;
    assert_eq!(d["reduced"], true);
    assert_eq!(d["ts"].as_array().unwrap().len(), 100);
    // An explicit range in milliseconds.
    let to = f.t0 / 1_000_000 + 1;
    let d = json(&app, &format!("/api/devices/pump-02/series?from={}&to={to}", to - 10_000)).await;
    assert_eq!(d["raw_frames"], 10);
}

/// Another machine's channels, which no profile models, are shown with their units: on the
/// overview and as one chart each on the device page; a pump's extra channel is drawn after its four.
#[tokio::test]
async fn channels_no_profile_models_are_shown() {
    let f = fixture(None).await;
    let mut readings = Vec::new();
    for i in 0..60 {
        let ts = f.t0 - (59 - i) * S;
        for (channel, unit, value) in
            [("current", "A", 7.5), ("flow", "m³/h", 3.0), ("vibration_x", "g", 0.25)]
        {
            readings.push(Reading {
                sensor: Channel::new(channel).unwrap(),
                unit: Unit::new(unit).unwrap(),
                // A device that sends no timestamps: its bridge stamped the flow on arrival.
                ts_source: if channel == "flow" { TsSource::Arrival } else { TsSource::Event },
                ..Reading::pump(dev("comp-1"), SensorKind::Temperature, ts, value, i as u64)
            });
        }
        readings.push(Reading {
            sensor: Channel::new("voltage").unwrap(),
            unit: Unit::new("V").unwrap(),
            ..Reading::pump(dev("pump-01"), SensorKind::Temperature, ts, 230.0, i as u64)
        });
    }
    f.store.insert_readings(&readings).await.unwrap();
    let app = f.web.router();

    let o = json(&app, "/api/overview").await;
    let comp = o["devices"].as_array().unwrap().iter().find(|d| d["device"] == "comp-1").unwrap();
    assert_eq!(comp["channels"], serde_json::json!(["current", "flow", "vibration_x"]));
    assert_eq!(comp["readings"]["flow"]["unit"], "m³/h");
    assert_eq!(comp["readings"]["flow"]["ts_source"], "arrival");
    assert_eq!(comp["readings"]["current"]["ts_source"], "event");
    assert_eq!(comp["readings"]["vibration_x"]["value"], 0.25);
    let pump = &o["devices"][1];
    assert_eq!(pump["device"], "pump-01");
    assert_eq!(
        pump["channels"],
        serde_json::json!(["temperature", "vibration", "pressure", "humidity", "voltage"])
    );

    let d = json(&app, "/api/devices/comp-1/series?last=5m").await;
    assert_eq!(d["sensors"], serde_json::json!(["current", "flow", "vibration_x"]));
    assert_eq!(d["units"], serde_json::json!(["A", "m³/h", "g"]));
    assert_eq!(d["raw_frames"], 60);
    assert_eq!(d["values"][1][59], 3.0);
    let d = json(&app, "/api/devices/pump-01/series?last=5m").await;
    assert_eq!(d["sensors"][4], "voltage");
    assert_eq!(d["values"][4][299], 230.0);
    assert_eq!(d["values"][1][299], 10.0 + 5.99);
}

#[tokio::test]
async fn alerts_filter_by_device_sensor_severity_and_state_newest_first() {
    let f = fixture(None).await;
    let app = f.web.router();
    let all = json(&app, "/api/alerts").await;
    let ids: Vec<&str> =
        all["alerts"].as_array().unwrap().iter().map(|a| a["alert_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a-2", "a-1"]);
    for (query, expect) in [
        ("device=pump-01", vec!["a-1"]),
        ("sensor=pressure", vec!["a-2"]),
        ("sensor=temperature", vec!["a-1"]),
        ("severity=critical", vec!["a-2"]),
        ("state=open", vec!["a-2"]),
        ("state=resolved", vec!["a-1"]),
        ("device=pump-01&state=open", vec![]),
        ("limit=1", vec!["a-2"]),
    ] {
        let r = json(&app, &format!("/api/alerts?{query}")).await;
        let got: Vec<&str> = r["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["alert_id"].as_str().unwrap())
            .collect();
        assert_eq!(got, expect, "{query}");
    }
    let a = &all["alerts"][0];
    assert_eq!(a["sensor_share"]["pressure"], 0.7);
    assert_eq!(a["model"], "sentio-lstm-ae v1");
}

#[tokio::test]
async fn models_show_versions_the_champion_threshold_data_range_and_loss_curves() {
    let f = fixture(None).await;
    let app = f.web.router();
    let m = json(&app, "/api/models").await;
    assert_eq!(m["champion"], 1);
    let v = &m["versions"][0];
    assert_eq!(v["version"], 1);
    assert_eq!(v["champion"], true);
    assert_eq!(v["threshold"], 1.0);
    assert_eq!(v["threshold_method"], "pot");
    assert_eq!(v["data_from"], "2026-11-24T00:00:00Z");
    assert_eq!(v["train_loss"].as_array().unwrap().len(), 3);
    assert_eq!(v["validation_loss"][2], 0.6 / 3.0);
    assert_eq!(m["profiles"], serde_json::json!(["comp", "pump"]));

    // Another profile's model, by its profile; none is registered for it here.
    let comp = json(&app, "/api/models?profile=comp").await;
    assert_eq!(
        (comp["name"].as_str(), comp["profile"].as_str()),
        (Some("sentio-comp"), Some("comp"))
    );
    assert_eq!(comp["versions"].as_array().unwrap().len(), 0);
    let (status, body) = get(&app, "/api/models?profile=boiler").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("one of comp, pump"), "{body}");
}

#[tokio::test]
async fn models_without_a_registered_model_say_how_to_get_one() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ReadingStore> = Arc::new(SqliteStore::open_in_memory().unwrap());
    store.migrate().await.unwrap();
    let tracking = LocalTracking::open(dir.path()).unwrap();
    let app = Web::new(store, Arc::new(tracking), settings(None)).router();
    let m = json(&app, "/api/models").await;
    assert_eq!(m["versions"].as_array().unwrap().len(), 0);
    assert!(m["hint"].as_str().unwrap().contains("sentio train"));
    let o = json(&app, "/api/overview").await;
    assert_eq!(o["devices"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn pipeline_reports_rows_dead_letters_and_consumer_lag_from_the_bus() {
    let f = fixture(None).await;
    let app = f.web.router();
    let p = json(&app, "/api/pipeline").await;
    assert_eq!(p["readings"], 2 * 600 * 4);
    assert_eq!(p["dead_letters"], 1);
    assert_eq!(p["consumer_lag"]["total"], 10);
    assert_eq!(p["consumer_lag"]["partitions"]["0"], 5);
    assert_eq!(p["alert_delay"]["alerts"], 2);
    assert_eq!(p["alert_delay"]["p50_ms"], 500.0);
    assert!(p["detection"].is_null(), "no detector in this process");
    let _ = f.store;
}

struct FakeBridge;

impl sentio_web::BridgeProbe for FakeBridge {
    fn status(&self) -> sentio_web::BridgeStatus {
        sentio_web::BridgeStatus {
            kind: "mqtt",
            endpoint: "mqtt://127.0.0.1:1883".into(),
            connected: Some(false),
            messages: 12,
            readings: 20,
            arrival_time: 3,
            dead_letters: 2,
            refused: None,
        }
    }
}

#[tokio::test]
async fn pipeline_reports_the_bridges_of_this_process() {
    let f = fixture(None).await;
    let p = json(&f.web.router(), "/api/pipeline").await;
    assert_eq!(p["bridges"], serde_json::json!([]), "none by default");
    let app = f.web.clone().with_bridge(Arc::new(FakeBridge)).router();
    let p = json(&app, "/api/pipeline").await;
    let b = &p["bridges"][0];
    assert_eq!((b["kind"].as_str(), b["connected"].as_bool()), (Some("mqtt"), Some(false)));
    assert_eq!((b["messages"].as_u64(), b["readings"].as_u64()), (Some(12), Some(20)));
    assert_eq!((b["arrival_time"].as_u64(), b["dead_letters"].as_u64()), (Some(3), Some(2)));
    assert!(b["refused"].is_null() && b["readings_per_s"].is_null(), "{b}");
}

#[tokio::test]
async fn bad_parameters_get_a_400_that_names_them() {
    let f = fixture(None).await;
    let app = f.web.router();
    for (uri, words) in [
        ("/api/devices/pump-01/series?last=forever", "last=\"forever\""),
        ("/api/devices/pump-01/series?from=yesterday", "from=\"yesterday\""),
        ("/api/devices/pump-01/series?last=30d", "web.max_range"),
        ("/api/devices/pump-01/series?points=5", "points=\"5\""),
        ("/api/devices/pump-01/series?lsat=1h", "\"lsat\""),
        ("/api/devices/pump%2001/series", "not a device id"),
        ("/api/alerts?severity=urgent", "warning or critical"),
        // Any profile's channel may be an alert's top sensor; only a malformed name is refused.
        ("/api/alerts?sensor=Speed%21", "not a channel name"),
        ("/api/alerts?state=closed", "open or resolved or all"),
        ("/api/alerts?limit=0", "limit=\"0\""),
        ("/api/overview?x=1", "takes none"),
    ] {
        let (status, body) = get(&app, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v["error"].as_str().unwrap().contains(words), "{uri}: {body}");
    }
    let (status, body) = get(&app, "/api/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("docs/api.md"));
    let (status, body) = get(&app, "/api/devices/pump-99/series").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("pump-99") && body.contains("/api/overview"), "{body}");
    // Read-only: other methods get a JSON 405.
    let (status, _, body) =
        call(&app, Request::post("/api/alerts").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(body.contains("read-only"), "{body}");
}

#[tokio::test]
async fn pages_and_assets_are_served_from_the_binary_with_a_strict_policy() {
    let f = fixture(None).await;
    let app = f.web.router();
    let (status, headers, body) = call(&app, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("/vendor/uPlot.iife.min.js") && !body.contains("http"),
        "no external URL"
    );
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("connect-src 'self'"));
    for (path, kind) in [
        ("/app.js", "javascript"),
        ("/app.css", "css"),
        ("/vendor/uPlot.iife.min.js", "javascript"),
        ("/vendor/uPlot.min.css", "css"),
    ] {
        let (status, headers, body) =
            call(&app, Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(headers[header::CONTENT_TYPE].to_str().unwrap().contains(kind));
        assert!(body.len() > 1_000, "{path}");
    }
    // Big answers are compressed for browsers that ask.
    let request = Request::get("/vendor/uPlot.iife.min.js")
        .header(header::ACCEPT_ENCODING, "gzip")
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
}

#[tokio::test]
async fn a_token_guards_every_route_and_never_appears_in_a_response() {
    let f = fixture(Some(TOKEN)).await;
    let app = f.web.router();
    let routes = [
        "/",
        "/app.js",
        "/api/overview",
        "/api/devices/pump-01/series",
        "/api/alerts",
        "/api/models",
        "/api/pipeline",
        "/api/events",
    ];
    for uri in routes {
        let (status, headers, body) =
            call(&app, Request::get(uri).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        assert!(headers.contains_key(header::WWW_AUTHENTICATE));
        assert!(body.contains("?token=") && !body.contains(TOKEN), "{uri}: {body}");
        let wrong = Request::get(uri)
            .header(header::AUTHORIZATION, "Bearer nope")
            .body(Body::empty())
            .unwrap();
        assert_eq!(call(&app, wrong).await.0, StatusCode::UNAUTHORIZED, "{uri}");
    }
    for uri in &routes[..7] {
        let ok = Request::get(*uri)
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap();
        let (status, _, body) = call(&app, ok).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert!(!body.contains(TOKEN), "{uri} leaks the token");
        let cookie = Request::get(*uri)
            .header(header::COOKIE, format!("a=b; sentio_token={TOKEN}"))
            .body(Body::empty())
            .unwrap();
        assert_eq!(call(&app, cookie).await.0, StatusCode::OK, "{uri}");
    }
    // The login link sets the cookie and drops the token from the address; not on the API.
    let (status, headers, _) =
        call(&app, Request::get(format!("/?token={TOKEN}&x=1")).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/?x=1");
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.starts_with(&format!("sentio_token={TOKEN};")) && cookie.contains("HttpOnly"));
    let (status, _, _) = call(
        &app,
        Request::get(format!("/api/overview?token={TOKEN}")).body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// The login link redirects to a path on this server only: `//evil.com/` (or a backslash that
/// browsers read as a slash) must not become a protocol-relative address of another host.
#[tokio::test]
async fn the_login_redirect_never_leaves_the_server() {
    let f = fixture(Some(TOKEN)).await;
    let app = f.web.router();
    for (uri, want) in [
        (format!("//evil.com/?token={TOKEN}"), "/evil.com/"),
        (format!("///evil.com?token={TOKEN}&x=1"), "/evil.com?x=1"),
        (format!("/%5Cevil.com?token={TOKEN}"), "/%5Cevil.com"),
    ] {
        let (status, headers, _) =
            call(&app, Request::get(uri.as_str()).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{uri}");
        assert_eq!(headers[header::LOCATION], want, "{uri}");
    }
}

#[tokio::test]
async fn the_event_stream_sends_new_readings_scores_and_alert_changes() {
    let f = fixture(None).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(f.web.clone().serve(listener, stop.clone()));

    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /api/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    // Let the poller note where things stand, then add a reading, a score and an alert change.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = f.t0 + S;
    let fresh = Reading::pump(dev("pump-01"), SensorKind::Humidity, t, 97.5, 600);
    f.store.insert_readings(&[fresh]).await.unwrap();
    f.store
        .save_scores(&[ScorePoint {
            device: dev("pump-01"),
            ts_ns: t,
            score: 4.0,
            threshold: 1.0,
            top_sensor: SensorKind::Humidity.into(),
            model_version: "1".into(),
        }])
        .await
        .unwrap();
    f.store
        .save_alerts(&[alert(
            "a-2",
            "pump-02",
            AlertState::Resolved,
            Severity::Critical,
            [0.1, 0.1, 0.7, 0.1],
            f.t0,
        )])
        .await
        .unwrap();

    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 8192];
    while !(seen.contains("event: readings")
        && seen.contains("event: scores")
        && seen.contains("event: alert"))
    {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .expect("events within 10 s")
            .unwrap();
        assert!(n > 0, "stream closed: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.contains("text/event-stream"));
    assert!(seen.contains("97.5"), "{seen}");
    assert!(seen.contains("\"state\":\"resolved\"") && seen.contains("a-2"), "{seen}");
    assert!(!seen.contains("\"ts\":[]"), "only what is new: {seen}");
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap().unwrap();
}

/// Any query string on any endpoint: an answer, never a panic or a 500; every refusal is JSON
/// with an error message.
#[test]
fn no_query_string_makes_an_endpoint_fail() {
    use proptest::prelude::*;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let f = rt.block_on(fixture(None));
    let app = f.web.router();
    let names = prop::sample::select(vec![
        "from", "to", "last", "points", "device", "sensor", "severity", "state", "limit", "x",
    ]);
    let value = "[ -~]{0,24}";
    let paths = prop::sample::select(vec![
        "/api/overview",
        "/api/devices/pump-01/series",
        "/api/alerts",
        "/api/models",
        "/api/pipeline",
    ]);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(300));
    runner
        .run(&(paths, prop::collection::vec((names, value), 0..4)), |(path, pairs)| {
            let query: Vec<String> = pairs
                .iter()
                .map(|(k, v)| {
                    let v: String = v.bytes().map(|b| format!("%{b:02X}")).collect();
                    format!("{k}={v}")
                })
                .collect();
            let uri = format!("{path}?{}", query.join("&"));
            let (status, body) = rt.block_on(get(&app, &uri));
            prop_assert!(
                [StatusCode::OK, StatusCode::BAD_REQUEST].contains(&status),
                "{uri}: {status} {body}"
            );
            let v: Value = serde_json::from_str(&body)
                .map_err(|e| TestCaseError::fail(format!("{uri}: {e}")))?;
            if status != StatusCode::OK {
                prop_assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{uri}: {body}");
            }
            Ok(())
        })
        .unwrap();
}
