#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `sentio bridge http` as a user runs it on the embedded stack, driven by curl: a 200 means the
//! store holds the readings.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;

use common::sentio_in as sentio;
use sentio_store::ReadingStore;

const TOKEN: &str = "cli-test-token-42";

#[test]
fn without_a_token_bridge_http_says_how_to_set_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = sentio(dir.path()).args(["bridge", "http"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bridge.http.token is empty") && err.contains("SENTIO__BRIDGE__HTTP__TOKEN"),
        "{err}"
    );
    // A bad address names its key.
    let out = sentio(dir.path())
        .env("SENTIO__BRIDGE__HTTP__TOKEN", TOKEN)
        .args(["bridge", "http", "--bind", "localhost"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("bridge.http.bind"), "{err}");
}

/// Starts `sentio bridge http` in `dir` on a free port (its log in `http.log`): the process, the
/// rest of its stdout and the endpoint's URL, from its first line.
fn start_http(
    dir: &std::path::Path,
) -> (std::process::Child, BufReader<std::process::ChildStdout>, String) {
    let log = std::fs::File::create(dir.join("http.log")).unwrap();
    let mut child = sentio(dir)
        .env("SENTIO__BRIDGE__HTTP__TOKEN", TOKEN)
        .args(["bridge", "http", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    // "ingest endpoint: POST http://127.0.0.1:PORT/api/v1/readings to ..."
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_owned();
    (child, stdout, url)
}

fn curl(url: &str, token: &str, body: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "-H", &format!("Authorization: Bearer {token}")])
        .args(["--data-binary", body, url])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.trim().parse().unwrap(), body.to_owned())
}

fn stored(db: &std::path::Path, runtime: &tokio::runtime::Runtime) -> u64 {
    runtime.block_on(async {
        let store = sentio_store::sqlite::SqliteStore::open(db).unwrap();
        store.stats().await.unwrap().readings
    })
}

#[test]
fn readings_curl_sends_are_stored_before_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, stdout, url) = start_http(dir.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = dir.path().join("data/sentio.db");

    let q = format!("{url}?format=value&device=press-01&sensor=pressure");
    let body = r#"[{"value": 2.5, "ts": "2026-12-01T00:00:00Z"}, {"value": 2.75, "ts": "2026-12-01T00:00:01Z"}]"#;
    let (status, answer) = curl(&q, TOKEN, body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(stored(&db, &runtime), 2, "a 200 comes once the store holds the readings");

    // The same request again (a client retrying after a lost answer): stored once. A bad line
    // is answered with its number; the good line beside it is stored.
    let (status, answer) = curl(&q, TOKEN, body);
    assert_eq!(status, 200, "{answer}");
    let lines = "{\"value\": 3.0, \"ts\": \"2026-12-01T00:00:02Z\"}\n{\"value\": \"high\"}\n";
    let (status, answer) = curl(&q, TOKEN, lines);
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("\"line\":2") && answer.contains("wrong_type"), "{answer}");
    assert_eq!(stored(&db, &runtime), 3);
    // Without the token: refused, nothing stored.
    let (status, _) = curl(&q, "wrong", body);
    assert_eq!(status, 401);

    let killed = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    let rest: Vec<String> = stdout.lines().map_while(Result::ok).collect();
    let rest = rest.join("\n");
    assert!(status.success(), "{rest}; see {}", dir.path().join("http.log").display());
    assert!(
        rest.contains("4 requests (1 refused whole): 5 readings published, 1 dead letters"),
        "{rest}"
    );
    std::thread::sleep(Duration::from_millis(10));
    assert_eq!(stored(&db, &runtime), 3);
    // Its last status report, kept for the pipeline page of a `sentio serve` on this store.
    let status = runtime.block_on(async {
        sentio_store::sqlite::SqliteStore::open(&db).unwrap().bridge_status().await.unwrap()
    });
    let port = url.trim_start_matches("http://127.0.0.1:").split('/').next().unwrap();
    assert_eq!(status.len(), 1, "{status:?}");
    assert!(
        status[0].bridge.starts_with("http:")
            && status[0].bridge.ends_with(&format!("@127.0.0.1:{port}")),
        "{status:?}"
    );
    let (last, _) = sentio_core::BridgeReport::decode(status[0].report.as_bytes()).unwrap();
    assert!(last.stopped, "{last:?}");
    assert_eq!((last.messages, last.refused, last.readings, last.dead_letters), (4, Some(1), 5, 1));
}

/// A reading sent without a timestamp is stored with its arrival time and marked so; one with a
/// timestamp is not.
#[test]
fn a_reading_without_a_timestamp_is_stored_marked_as_arrival_time() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _stdout, url) = start_http(dir.path());
    let q = format!("{url}?format=value&device=press-02&sensor=pressure");
    let before = sentio_core::time::now_ns();
    let body = "{\"value\": 2.5, \"ts\": \"2026-12-01T00:00:00Z\"}\n{\"value\": 2.75}\n";
    let (status, answer) = curl(&q, TOKEN, body);
    assert_eq!(status, 200, "{answer}");
    let killed = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    assert!(child.wait().unwrap().success());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stored = runtime.block_on(async {
        let store =
            sentio_store::sqlite::SqliteStore::open(&dir.path().join("data/sentio.db")).unwrap();
        let query = sentio_store::RangeQuery {
            devices: vec![],
            sensors: vec![],
            from_ns: i64::MIN,
            to_ns: i64::MAX,
        };
        store.query_range(&query).await.unwrap()
    });
    let got: Vec<(f64, sentio_core::TsSource)> =
        stored.iter().map(|r| (r.value, r.ts_source)).collect();
    assert_eq!(
        got,
        [(2.5, sentio_core::TsSource::Event), (2.75, sentio_core::TsSource::Arrival)],
        "{stored:?}"
    );
    assert!(stored[1].ts_ns >= before, "stamped on arrival");
}
