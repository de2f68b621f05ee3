#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `POST /api/v1/readings` served on a loopback port and driven by curl (an independent client):
//! every format, every malformed class with its line number and dead letter, the token, the size
//! and the rate bounds.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use sentio_bridge::{HttpIngest, Topics};
use sentio_bus::Bus;
use sentio_bus::memory::MemoryBus;
use sentio_config::Config;
use sentio_core::message::{DecodeLimits, decode_reading};
use sentio_core::{Channel, DeviceId, Reading, Unit, encode_reading};
use serde_json::Value;

const READINGS: &str = "sensor-data";
const DLQ: &str = "sensor-data.dlq";
const TOKEN: &str = "test-token-0123456789";

struct Server {
    url: String,
    bus: Arc<MemoryBus>,
    _task: tokio::task::JoinHandle<()>,
}

async fn serve(tune: impl FnOnce(&mut sentio_config::HttpBridgeConfig)) -> Server {
    let bus = Arc::new(MemoryBus::new(1 << 20));
    bus.create_topic(READINGS, 2).await.unwrap();
    bus.create_topic(DLQ, 1).await.unwrap();
    let mut config = Config::defaults().unwrap().bridge.http;
    config.token = sentio_config::Secret::new(TOKEN);
    tune(&mut config);
    let topics = Topics { readings: READINGS.into(), dead_letters: DLQ.into() };
    let ingest = HttpIngest::new(config, bus.clone(), topics, DecodeLimits::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}{}", listener.local_addr().unwrap(), sentio_bridge::http::PATH);
    let router = Arc::new(ingest).router();
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    Server { url, bus, _task: task }
}

/// What curl got: the status, the response headers (lower-case names) and the JSON body.
struct Answer {
    status: u16,
    headers: String,
    body: Value,
}

/// `curl -X POST` of `body` to `url` with `args` before it, in a blocking thread.
async fn curl(url: String, args: Vec<String>, body: Vec<u8>) -> Answer {
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let (out, head) = (dir.path().join("body"), dir.path().join("headers"));
        let mut child = Command::new("curl")
            .args(["-s", "-X", "POST", "--data-binary", "@-", "-o"])
            .arg(&out)
            .arg("-D")
            .arg(&head)
            .args(["-w", "%{http_code}"])
            .args(&args)
            .arg(&url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("curl");
        let mut stdin = child.stdin.take().unwrap();
        // The server may answer (413) and close before the whole body is sent.
        let _ = stdin.write_all(&body);
        drop(stdin);
        let output = child.wait_with_output().unwrap();
        let status: u16 = String::from_utf8_lossy(&output.stdout).trim().parse().unwrap();
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        Answer {
            status,
            headers: std::fs::read_to_string(&head).unwrap_or_default().to_ascii_lowercase(),
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        }
    })
    .await
    .unwrap()
}

fn bearer() -> Vec<String> {
    vec!["-H".into(), format!("Authorization: Bearer {TOKEN}")]
}

/// Every record on `topic` so far.
async fn drain(bus: &MemoryBus, topic: &str) -> Vec<bytes::Bytes> {
    let mut consumer = bus.subscribe(topic, &format!("check-{}", rand_id())).await.unwrap();
    let mut out = Vec::new();
    loop {
        let got = consumer.poll(10_000, Duration::from_millis(200)).await.unwrap();
        if got.is_empty() {
            return out;
        }
        out.extend(got.into_iter().map(|r| r.payload));
    }
}

fn rand_id() -> u64 {
    sentio_core::time::now_ns() as u64
}

fn readings(payloads: &[bytes::Bytes]) -> Vec<Reading> {
    let now = sentio_core::time::now_ns();
    payloads.iter().map(|p| decode_reading(p, &DecodeLimits::default(), now).unwrap()).collect()
}

fn reading(device: &str, sensor: &str, unit: &str, ts_ns: i64, value: f64) -> Reading {
    Reading {
        device: DeviceId::new(device).unwrap(),
        sensor: Channel::new(sensor).unwrap(),
        unit: Unit::new(unit).unwrap(),
        ts_ns,
        value,
        seq: 1,
        injected: None,
        ts_source: sentio_core::TsSource::Event,
    }
}

const T0_S: i64 = 1_796_256_000; // 2026-12-03T00:00:00Z

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_arrives_over_curl() {
    let server = serve(|_| {}).await;
    let url = |q: &str| format!("{}{q}", server.url);
    let ns = |s: i64| s * 1_000_000_000;

    // Sentio's reading v1, as JSON lines (the default format).
    let lines = [
        reading("pump-01", "temperature", "°C", ns(T0_S), 21.5),
        reading("pump-01", "vibration", "RMS", ns(T0_S), 4.25),
    ]
    .iter()
    .map(|r| String::from_utf8(encode_reading(r)).unwrap())
    .collect::<Vec<_>>()
    .join("\n");
    let a = curl(url(""), bearer(), lines.into_bytes()).await;
    assert_eq!((a.status, a.body["readings"].as_u64()), (200, Some(2)), "{}", a.body);

    // `value` objects as one JSON array; the unit from the item, the query or the profile.
    let body = format!(
        r#"[{{"value": 1.5, "ts": {}}}, {{"value": 2.5, "ts": "2026-12-03T00:00:02Z"}}]"#,
        T0_S + 1
    );
    let a = curl(url("?format=value&device=press-01&sensor=pressure"), bearer(), body.into()).await;
    assert_eq!((a.status, a.body["accepted"].as_u64()), (200, Some(2)), "{}", a.body);

    // `object`: several channels per line, timestamps in ms.
    let body = format!(
        "{{\"ts\": {}, \"temperature\": 30.5, \"humidity\": 55}}\n\n{{\"ts\": {}, \"current\": \
         12.5}}\n",
        T0_S * 1000 + 3000,
        T0_S * 1000 + 4000
    );
    let a = curl(url("?format=object&device=comp-01"), bearer(), body.into()).await;
    assert_eq!((a.status, a.body["readings"].as_u64()), (200, Some(3)), "{}", a.body);

    // `number`: a plain value, stamped with its arrival time (and said so).
    let a = curl(url("?format=number&device=lab-01&sensor=temperature"), bearer(), b"19.75".into())
        .await;
    assert_eq!((a.status, a.body["arrival_time"].as_u64()), (200, Some(1)), "{}", a.body);

    let got = readings(&drain(&server.bus, READINGS).await);
    let mut seen: Vec<(String, String, String, f64)> = got
        .iter()
        .map(|r| (r.device.to_string(), r.sensor.to_string(), r.unit.to_string(), r.value))
        .collect();
    seen.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let expected = [
        // No unit sent: the profile's (the built-in pump profile claims every device here),
        // none for a channel it does not declare.
        ("comp-01", "current", "", 12.5),
        ("comp-01", "humidity", "%", 55.0),
        ("comp-01", "temperature", "°C", 30.5),
        ("lab-01", "temperature", "°C", 19.75),
        ("press-01", "pressure", "bar", 1.5),
        ("press-01", "pressure", "bar", 2.5),
        ("pump-01", "temperature", "°C", 21.5),
        ("pump-01", "vibration", "RMS", 4.25),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(d, s, u, v)| (d.to_string(), s.to_string(), u.to_string(), *v))
        .collect();
    assert_eq!(seen, expected);
    let ts: Vec<i64> =
        got.iter().filter(|r| r.device.as_str() == "press-01").map(|r| r.ts_ns).collect();
    assert_eq!(ts, vec![ns(T0_S + 1), ns(T0_S + 2)]);
    assert!(drain(&server.bus, DLQ).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lines_get_their_line_numbers_and_go_to_the_dead_letter_topic() {
    let server = serve(|c| c.max_line_bytes = 256).await;
    let url = |q: &str| format!("{}{q}", server.url);

    let long = format!("{{\"value\": 1.0, \"ts\": {T0_S}, \"unit\": \"{}\"}}", "x".repeat(300));
    let lines = [
        format!("{{\"value\": 1.0, \"ts\": {T0_S}}}"), // 1: stored
        "not json".to_owned(),                         // 2: not JSON
        format!("{{\"value\": \"hot\", \"ts\": {T0_S}}}"), // 3: wrong type
        "[1, 2]".to_owned(),                           // 4: not an object
        format!("{{\"value\": 1e999, \"ts\": {T0_S}}}"), // 5: out of range (no NaN in JSON)
        long,                                          // 6: oversize
        format!("{{\"value\": 2.0, \"ts\": {}}}", T0_S + 1), // 7: stored
        r#"{"value": 2.0, "ts": "yesterday"}"#.to_owned(), // 8: bad timestamp
        format!("{{\"value\": 2.0, \"ts\": {T0_S}, \"x\": 1}}"), // 9: unknown field
    ];
    let body = lines.join("\n");
    let a = curl(url("?format=value&device=press-01&sensor=pressure"), bearer(), body.into()).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!((a.body["accepted"].as_u64(), a.body["rejected"].as_u64()), (Some(2), Some(7)));
    let errors: Vec<(u64, String)> = a.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["line"].as_u64().unwrap(), e["code"].as_str().unwrap().to_owned()))
        .collect();
    let expected: Vec<(u64, String)> = [
        (2, "malformed_json"),
        (3, "wrong_type"),
        (4, "not_an_object"),
        (5, "malformed_json"),
        (6, "oversize"),
        (8, "bad_timestamp"),
        (9, "unknown_field"),
    ]
    .iter()
    .map(|(l, c)| (*l, c.to_string()))
    .collect();
    assert_eq!(errors, expected, "{}", a.body);
    let message = a.body["error"].as_str().unwrap();
    assert!(message.contains("line 2") && message.contains("dead-letter"), "{message}");

    // NaN and infinities as plain numbers; a device id with a space inside a reading message;
    // a reading of another device than the query names: all as array items.
    let good = String::from_utf8(encode_reading(&reading(
        "pump-01",
        "temperature",
        "°C",
        T0_S * 1_000_000_000,
        20.0,
    )))
    .unwrap();
    let bad_device = good.replace("pump-01", "pump 01");
    let a = curl(
        url("?format=number&device=lab-01&sensor=temperature"),
        bearer(),
        b"NaN\ninf\n".into(),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    let codes: Vec<_> =
        a.body["errors"].as_array().unwrap().iter().map(|e| e["code"].clone()).collect();
    assert_eq!(codes, ["non_finite", "non_finite"]);
    let body = format!("[{good}, {bad_device}]");
    let a = curl(url("?device=pump-02"), bearer(), body.into()).await;
    assert_eq!(a.status, 400, "{}", a.body);
    let errors: Vec<(u64, String)> = a.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["item"].as_u64().unwrap(), e["code"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(errors[0], (1, "device_mismatch".to_owned()), "{}", a.body);
    assert_eq!(errors[1].0, 2);
    assert!(errors[1].1.contains("device"), "{}", a.body);

    // The two good lines are stored; each bad one is a dead letter with its line, its reason
    // and its bytes.
    assert_eq!(readings(&drain(&server.bus, READINGS).await).len(), 2);
    let letters: Vec<Value> =
        drain(&server.bus, DLQ).await.iter().map(|p| serde_json::from_slice(p).unwrap()).collect();
    assert_eq!(letters.len(), 7 + 2 + 2);
    for letter in &letters[..7] {
        assert_eq!(letter["source"], "http");
        let line = letter["line"].as_u64().unwrap() as usize;
        let payload = base64::engine::general_purpose::STANDARD
            .decode(letter["payload_base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(payload, lines[line - 1].as_bytes(), "{letter}");
        assert!(!letter["reason"].as_str().unwrap().is_empty());
        assert!(letter["query"].as_str().unwrap().contains("press-01"), "{letter}");
    }
    assert_eq!(letters[10]["item"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_the_size_the_rate_and_the_query_are_enforced_and_nothing_is_stored() {
    let server = serve(|c| {
        c.max_request_bytes = 4096;
        c.max_readings_per_second = 10;
    })
    .await;
    let url = |q: &str| format!("{}{q}", server.url);
    let one = format!("{{\"value\": 1.0, \"ts\": {T0_S}}}");
    let q = "?format=value&device=press-01&sensor=pressure";

    // No token, a wrong one, another scheme: 401, with the challenge.
    for args in [
        vec![],
        vec!["-H".into(), "Authorization: Bearer nope".into()],
        vec!["-H".into(), format!("Authorization: Basic {TOKEN}")],
    ] {
        let a = curl(url(q), args, one.clone().into()).await;
        assert_eq!(a.status, 401, "{}", a.body);
        assert!(a.headers.contains("www-authenticate: bearer"), "{}", a.headers);
        assert!(a.body["error"].as_str().unwrap().contains("SENTIO__BRIDGE__HTTP__TOKEN"));
    }

    // Too large: refused on its Content-Length, and while reading a chunked body.
    let big = format!("{one}\n").repeat(200).into_bytes();
    assert!(big.len() > 4096);
    let a = curl(url(q), bearer(), big.clone()).await;
    assert_eq!(a.status, 413, "{}", a.body);
    assert!(a.body["error"].as_str().unwrap().contains("max_request_bytes"), "{}", a.body);
    let mut chunked = bearer();
    chunked.extend(["-H".into(), "Transfer-Encoding: chunked".into()]);
    let a = curl(url(q), chunked, big).await;
    assert_eq!(a.status, 413, "{}", a.body);

    // The query: unknown parameters, formats, missing names, bad device ids.
    for (query, says) in [
        ("?format=value&device=press-01&sensor=pressure&colour=red", "colour"),
        ("?format=csv", "format"),
        ("?format=value&device=press-01", "sensor"),
        ("?format=object", "device"),
        ("?format=object&device=bad%20id", "device"),
        ("?format=reading&sensor=pressure", "sensor"),
    ] {
        let a = curl(url(query), bearer(), one.clone().into()).await;
        assert_eq!(a.status, 400, "{query}: {}", a.body);
        assert!(a.body["error"].as_str().unwrap().contains(says), "{query}: {}", a.body);
    }
    // A body that is not one array, and an empty one.
    for body in ["[1, 2", "\n \n"] {
        let a = curl(url("?format=number&device=a&sensor=b"), bearer(), body.into()).await;
        assert_eq!(a.status, 400, "{body:?}: {}", a.body);
    }
    // GET is not it.
    let a = tokio::task::spawn_blocking({
        let u = url("");
        move || Command::new("curl").args(["-s", "-i", &u]).output().unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&a.stdout).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 405") && text.contains("allow: post"), "{text}");
    assert!(
        drain(&server.bus, READINGS).await.is_empty() && drain(&server.bus, DLQ).await.is_empty()
    );

    // The rate: 10 readings per second. 30 in one request pass (the bucket was full) and leave
    // it 20 in debt: the next request is told to wait about 2 s.
    let thirty: String =
        (0..30).map(|i| format!("{{\"value\": {i}, \"ts\": {}}}\n", T0_S + i)).collect();
    let a = curl(url(q), bearer(), thirty.into()).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = curl(url(q), bearer(), one.clone().into()).await;
    assert_eq!(a.status, 429, "{}", a.body);
    let retry: u64 = a
        .headers
        .lines()
        .find_map(|l| l.strip_prefix("retry-after:"))
        .expect("a Retry-After header")
        .trim()
        .parse()
        .unwrap();
    assert!((2..=3).contains(&retry), "Retry-After {retry}");
    assert!(a.body["error"].as_str().unwrap().contains("max_readings_per_second"));
    assert_eq!(readings(&drain(&server.bus, READINGS).await).len(), 30);
}
