#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The JSON Schemas in docs/schema agree with what the code writes and rejects, checked by an
//! independent validator (Python's `jsonschema`, from scripts/python-env.sh).

use std::io::Write;

use std::process::{Command, Stdio};

use sentio_core::{Alert, AlertState, Channel, DeviceId, SensorKind, Severity};
use sentio_services::detect::AlertV1;
use sentio_services::detect::message::SensorShareV1;
use sentio_services::etl::dead_letter::DeadLetterV1;
use sentio_store::{DeadLetter, SourceOffset};

fn check(schema: &str, valid: &[String], invalid: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let (v, i) = (dir.path().join("valid.jsonl"), dir.path().join("invalid.jsonl"));
    std::fs::write(&v, valid.join("\n")).unwrap();
    std::fs::write(&i, invalid.join("\n")).unwrap();
    let out = Command::new(sentio_it::python())
        .arg(sentio_it::repo_root().join("scripts/check_schema.py"))
        .arg(sentio_it::repo_root().join("docs/schema").join(schema))
        .args([&v, &i])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{schema}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Messages that break the schema and that the ETL rejects too.
const INVALID_READINGS: &[&str] = &[
    r#"{"device":"pump-01","sensor":"pressure","ts":"2026-11-24T00:00:00Z","value":2.5,"unit":"bar","seq":1}"#,
    r#"{"v":2,"device":"pump-01","sensor":"pressure","ts":"2026-11-24T00:00:00Z","value":2.5,"unit":"bar","seq":1}"#,
    r#"{"v":1,"device":"pump 01","sensor":"pressure","ts":"2026-11-24T00:00:00Z","value":2.5,"unit":"bar","seq":1}"#,
    r#"{"v":1,"device":"pump-01","sensor":"Voltage","ts":"2026-11-24T00:00:00Z","value":2.5,"unit":"V","seq":1}"#,
    r#"{"v":1,"device":"pump-01","sensor":"pressure","ts":"2026-11-24T00:00:00Z","value":2.5,"unit":"bar\u0007","seq":1}"#,
    r#"{"v":1,"device":"pump-01","sensor":"pressure","ts":1795478400,"value":2.5,"unit":"bar","seq":1}"#,
    r#"{"v":1,"device":"pump-01","sensor":"pressure","ts":"2026-11-24T00:00:00Z","value":"2.5","unit":"bar","seq":1}"#,
    r#"{"v":1,"device":"pump-01","sensor":"pressure","ts":"2026-11-24T00:00:00Z","value":2.5,"unit":"bar","seq":-1}"#,
    r#"{"v":1,"device":"pump-01","sensor":"pressure","ts":"2026-11-24T00:00:00Z","value":2.5,"unit":"bar","seq":1,"injected":"gremlins"}"#,
    r#"{"v":1,"device":"pump-01","sensor":"pressure","ts":"2026-11-24T00:00:00Z","ts_source":"gps","value":2.5,"unit":"bar","seq":1}"#,
    r#"["v",1]"#,
];

#[test]
fn simulated_readings_match_the_schema_and_rejected_ones_break_it() {
    let sentio = env!("CARGO_BIN_EXE_sentio");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(sentio)
        .current_dir(dir.path())
        .args([
            "simulate",
            "--seed",
            "3",
            "--from",
            "2026-11-24T00:00:00Z",
            "--to",
            "2026-11-24T02:00:00Z",
            "--stdout",
            "--no-archive",
        ])
        .env("SENTIO__SIMULATOR__ANOMALIES__RATE_PER_HOUR", "30")
        .output()
        .unwrap();
    assert!(out.status.success());
    let all: Vec<String> =
        String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect();
    let mut valid: Vec<String> = all.iter().step_by(37).cloned().collect();
    valid.extend(all.iter().filter(|l| !l.contains("\"injected\":null")).take(200).cloned());
    assert!(
        valid.iter().any(|l| !l.contains("\"injected\":null")),
        "no injected reading in the sample"
    );
    // Another machine's channels, in their own units, are valid too.
    valid.push(r#"{"v":1,"device":"comp-1","sensor":"current","ts":"2026-11-24T00:00:00Z","value":7.5,"unit":"A","seq":1}"#.into());
    valid.push(r#"{"v":1,"device":"comp-1","sensor":"flow.rate","ts":"2026-11-24T00:00:00Z","value":3.0,"unit":"m³/h","seq":1}"#.into());
    // A reading stamped with its arrival time, as the bridges write it, and the explicit forms.
    let arrival = sentio_core::Reading {
        ts_source: sentio_core::TsSource::Arrival,
        ..sentio_core::Reading::pump(
            DeviceId::new("pump-01").unwrap(),
            SensorKind::Pressure,
            sentio_core::time::parse_rfc3339("2026-11-24T00:00:00Z").unwrap(),
            2.5,
            1,
        )
    };
    let arrival = String::from_utf8(sentio_core::encode_reading(&arrival)).unwrap();
    assert!(arrival.contains(r#""ts_source":"arrival""#), "{arrival}");
    valid.push(arrival);
    valid.push(r#"{"v":1,"device":"comp-1","sensor":"current","ts":"2026-11-24T00:00:00Z","ts_source":"event","value":7.5,"unit":"A","seq":1}"#.into());
    check("reading.v1.json", &valid, INVALID_READINGS);

    // The ETL turns every one of them into a dead letter.
    let mut child = Command::new(sentio)
        .current_dir(dir.path())
        .args(["ingest", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(INVALID_READINGS.join("\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("0 rows stored, {} dead letters", INVALID_READINGS.len())),
        "{text}"
    );
}

#[test]
fn dead_letters_match_their_schema() {
    let letter = |payload: &[u8]| {
        let d = DeadLetter {
            source: SourceOffset { partition: 3, offset: 1742 },
            code: "missing_field".into(),
            reason: "missing field `device`".into(),
            key: b"pump-07".to_vec(),
            payload: payload.to_vec(),
        };
        String::from_utf8(
            DeadLetterV1::new("sensor-data", "sentio-ingest", &d).to_record().1.to_vec(),
        )
        .unwrap()
    };
    let valid = vec![letter(b"{\"v\":1}"), letter(&[0xff, 0x00, 0x7b])];
    check(
        "dead-letter.v1.json",
        &valid,
        &[
            r#"{"v":1,"code":"missing_field","reason":"r","topic":"t","partition":0,"offset":0,"group":"g","key_base64":""}"#,
            r#"{"v":1,"code":"gremlins","reason":"r","topic":"t","partition":0,"offset":0,"group":"g","key_base64":"","payload_base64":""}"#,
        ],
    );
}

#[test]
fn alerts_match_their_schema() {
    let pump = |shares: [f64; 4]| -> Vec<(Channel, f64)> {
        SensorKind::ALL.into_iter().map(Channel::from).zip(shares).collect()
    };
    let alert = |state: AlertState, severity: Severity, detected_at_ns: i64| {
        let a = Alert {
            alert_id: "pump-07-3-1795478464000000000".into(),
            device: DeviceId::new("pump-07").unwrap(),
            state,
            window_start_ns: 1_795_478_400_000_000_000,
            window_end_ns: 1_795_478_464_000_000_000,
            score: 0.42,
            threshold: 0.008,
            severity,
            sensor_share: pump([0.05, 0.8, 0.1, 0.05]),
            model_name: "sentio-lstm-ae".into(),
            model_version: "3".into(),
            detected_at_ns,
        };
        String::from_utf8(AlertV1::from(&a).to_record().1.to_vec()).unwrap()
    };
    // Another profile's alert names its own channels.
    let mut compressor: AlertV1 =
        serde_json::from_str(&alert(AlertState::Opened, Severity::Warning, 1)).unwrap();
    compressor.sensors = ["current", "flow", "vibration_x", "discharge.temp-2"]
        .iter()
        .zip([0.4, 0.3, 0.2, 0.1])
        .map(|(c, share)| SensorShareV1 { sensor: Channel::new(c).unwrap(), share })
        .collect();
    let valid = vec![
        serde_json::to_string(&compressor).unwrap(),
        alert(AlertState::Opened, Severity::Warning, 1_795_478_465_000_000_000),
        alert(AlertState::Updated, Severity::Critical, 1_795_478_470_123_456_789),
        alert(AlertState::Resolved, Severity::Critical, 1_795_478_530_000_000_000),
    ];
    let good = &valid[1];
    let broken = [
        good.replace("\"v\":1", "\"v\":2"),
        good.replace("\"opened\"", "\"escalated\""),
        good.replace("\"warning\"", "\"info\""),
        good.replace("\"vibration\"", "\"Vibration X\""),
        good.replace("\"2026-11-24T00:00:00Z\"", "1795478400"),
        good.replace("\"version\":\"3\"", "\"version\":3"),
        {
            let start = good.find("\"sensors\":[").unwrap() + "\"sensors\":[".len();
            let end = start + good[start..].find(']').unwrap();
            format!("{}{}", &good[..start], &good[end..])
        },
    ];
    for b in &broken {
        assert_ne!(b, good, "a replacement did not apply: {good}");
    }
    let broken: Vec<&str> = broken.iter().map(String::as_str).collect();
    check("alert.v1.json", &valid, &broken);
}

#[test]
fn bridge_dead_letters_match_their_schema() {
    let mqtt = sentio_bridge::MqttDeadLetter {
        v: 1,
        source: "mqtt",
        code: "not_a_number".into(),
        reason: "payload is \"warm\", expected a plain number such as 21.3".into(),
        mqtt_topic: "plant/pump-01/temperature".into(),
        client_id: "sentio-bridge".into(),
        received_at: "2026-12-03T10:00:00.123Z".into(),
        payload_base64: "d2FybQ==".into(),
    };
    let http = |line: Option<u64>, item: Option<u64>| sentio_bridge::HttpDeadLetter {
        v: 1,
        source: "http",
        code: "wrong_type".into(),
        reason: "field `value` is a string, expected a number".into(),
        line,
        item,
        query: "format=value&device=press-01&sensor=pressure".into(),
        received_at: "2026-12-03T10:00:00Z".into(),
        payload_base64: "eyJ2YWx1ZSI6ICJoaWdoIn0=".into(),
    };
    let valid = vec![
        serde_json::to_string(&mqtt).unwrap(),
        serde_json::to_string(&http(Some(2), None)).unwrap(),
        serde_json::to_string(&http(None, Some(7))).unwrap(),
    ];
    check(
        "bridge-dead-letter.v1.json",
        &valid,
        &[
            // An MQTT letter without its topic; an HTTP one naming neither line nor item, or
            // both; an unknown code; a mix of the two sources' fields.
            r#"{"v":1,"source":"mqtt","code":"oversize","reason":"r","client_id":"c","received_at":"2026-12-03T10:00:00Z","payload_base64":""}"#,
            r#"{"v":1,"source":"http","code":"oversize","reason":"r","query":"","received_at":"2026-12-03T10:00:00Z","payload_base64":""}"#,
            r#"{"v":1,"source":"http","code":"oversize","reason":"r","query":"","line":1,"item":1,"received_at":"2026-12-03T10:00:00Z","payload_base64":""}"#,
            r#"{"v":1,"source":"http","code":"gremlins","reason":"r","query":"","line":1,"received_at":"2026-12-03T10:00:00Z","payload_base64":""}"#,
            r#"{"v":1,"source":"http","code":"oversize","reason":"r","query":"","line":1,"mqtt_topic":"t","received_at":"2026-12-03T10:00:00Z","payload_base64":""}"#,
        ],
    );
}

#[test]
fn bridge_status_reports_match_their_schema() {
    let mqtt = sentio_core::BridgeReport {
        v: 1,
        bridge: "mqtt:sentio-bridge@127.0.0.1:1883".into(),
        kind: "mqtt".into(),
        endpoint: "mqtt://127.0.0.1:1883".into(),
        host: "gateway-3".into(),
        pid: 4711,
        started_at: sentio_core::time::format_rfc3339(1_795_514_000_000_000_000),
        at: sentio_core::time::format_rfc3339(1_795_514_300_123_000_000),
        every_s: 5.0,
        stopped: false,
        connected: Some(true),
        messages: 1200,
        readings: 1200,
        readings_per_s: 4.0,
        arrival_time: 3,
        dead_letters: 2,
        refused: None,
    };
    let http = sentio_core::BridgeReport {
        bridge: "http:gateway-3@0.0.0.0:8081".into(),
        kind: "http".into(),
        endpoint: "http://0.0.0.0:8081/api/v1/readings".into(),
        stopped: true,
        connected: None,
        refused: Some(7),
        ..mqtt.clone()
    };
    let text = |r: &sentio_core::BridgeReport| String::from_utf8(r.encode()).unwrap();
    check(
        "bridge-status.v1.json",
        &[text(&mqtt), text(&http)],
        &[
            // Another version; a kind of bridge there is none of; a count below zero; a
            // report without its time.
            &text(&mqtt).replace(r#""v":1"#, r#""v":2"#),
            &text(&mqtt).replace(r#""kind":"mqtt""#, r#""kind":"coap""#),
            &text(&mqtt).replace(r#""readings":1200"#, r#""readings":-1"#),
            &text(&mqtt).replace(r#""at":"2026"#, r#""when":"2026"#),
        ],
    );
}
