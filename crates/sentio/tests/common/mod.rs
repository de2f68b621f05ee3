//! Helpers shared by the tests that run the `sentio` binary against the real servers.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sentio_core::{DecodeLimits, Reading, decode_reading};
use sentio_store::postgres::PostgresStore;
use sentio_store::{RangeQuery, ReadingStore};

pub const SENTIO: &str = env!("CARGO_BIN_EXE_sentio");
/// 2026-11-24T00:00:00Z
pub const START_NS: i64 = 1_795_478_400_000_000_000;
pub const START: &str = "2026-11-24T00:00:00Z";

pub use sentio_it::repo_root as repo;

/// `sentio` in `dir` on the embedded defaults: no SENTIO variable leaks in from the caller's
/// environment (the real-server settings of `scripts/test.sh`, say).
pub fn sentio_in(dir: &Path) -> Command {
    let mut cmd = Command::new(SENTIO);
    cmd.current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("SENTIO") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Runs `cmd`, which must succeed; its output.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// A test's own topics, group, database and bucket on the real servers.
pub struct Stack {
    pub name: String,
    pub env: Vec<(String, String)>,
    pub dir: tempfile::TempDir,
    /// The log file of each ingest process, by pid.
    logs: std::sync::Mutex<std::collections::HashMap<u32, PathBuf>>,
}

impl Stack {
    pub fn new(prefix: &str) -> Stack {
        let name = sentio_it::unique(prefix);
        Stack {
            env: sentio_it::stack_env(&name),
            name,
            dir: tempfile::tempdir().unwrap(),
            logs: Default::default(),
        }
    }

    pub fn var(&self, key: &str) -> String {
        self.env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap()
    }

    pub fn topic(&self) -> String {
        self.var("SENTIO__TOPICS__READINGS")
    }

    pub fn dbname(&self) -> String {
        self.var("SENTIO__STORE__POSTGRES__DBNAME")
    }

    /// `sentio` with only this stack's settings.
    pub fn sentio(&self) -> Command {
        let mut cmd = Command::new(SENTIO);
        cmd.current_dir(self.dir.path()).env_clear().envs(self.env.iter().cloned());
        for keep in ["PATH", "HOME"] {
            if let Some(v) = std::env::var_os(keep) {
                cmd.env(keep, v);
            }
        }
        cmd.env("RUST_LOG", "warn");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> String {
        let out = self.sentio().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "sentio {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Publishes the seeded readings of `seconds` seconds from START (8 devices x 4 sensors each).
    pub fn simulate(&self, seed: u64, seconds: i64) {
        let to = sentio_core::time::format_rfc3339(START_NS + seconds * 1_000_000_000);
        self.run(&["simulate", "--seed", &seed.to_string(), "--from", START, "--to", &to]);
    }

    /// What `simulate(seed, seconds)` publishes, from the same command writing to stdout.
    pub fn expected(&self, seed: u64, seconds: i64) -> Vec<Reading> {
        let to = sentio_core::time::format_rfc3339(START_NS + seconds * 1_000_000_000);
        let out = self.run_bytes(&[
            "simulate",
            "--seed",
            &seed.to_string(),
            "--from",
            START,
            "--to",
            &to,
            "--stdout",
            "--no-archive",
        ]);
        let limits = DecodeLimits { max_future_ns: i64::MAX / 4, ..DecodeLimits::default() };
        out.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| decode_reading(l, &limits, START_NS).unwrap())
            .collect()
    }

    fn run_bytes(&self, args: &[&str]) -> Vec<u8> {
        let out = self.sentio().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "sentio {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Starts `sentio ingest`; its log goes to `ingest-<pid>.log` in the stack's directory, and is
    /// printed by [`Stack::logs`] when a test fails.
    pub fn spawn_ingest(&self) -> Child {
        let log = tempfile::Builder::new()
            .prefix("ingest-")
            .suffix(".log")
            .tempfile_in(self.dir.path())
            .unwrap();
        let (file, path) = log.keep().unwrap();
        let child = self
            .sentio()
            .arg("ingest")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        self.logs.lock().unwrap().insert(child.id(), path);
        child
    }

    /// Waits until `done(stats)` holds for the store, with a deadline; returns the last stats. On
    /// timeout the failure shows the ingest logs.
    pub async fn wait_store(
        &self,
        store: &dyn ReadingStore,
        what: &str,
        done: impl Fn(&sentio_store::StoreStats) -> bool,
    ) -> sentio_store::StoreStats {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            // A restarting server answers with errors for a while: keep asking.
            let stats = store.stats().await.ok();
            if let Some(stats) = stats.filter(|s| done(s)) {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; store at {stats:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops an ingest process the way an operator would (SIGINT) and checks it exits cleanly.
    pub fn stop(&self, mut child: Child) {
        // An operator stops a running service: wait until this one has started.
        let log = self.logs.lock().unwrap().get(&child.id()).cloned().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !std::fs::read_to_string(&log).unwrap_or_default().contains("ingest started") {
            assert!(child.try_wait().unwrap().is_none(), "ingest exited early\n{}", self.logs());
            assert!(Instant::now() < deadline, "ingest never started\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "ingest exited with {status}\n{}", self.logs());
                return;
            }
            assert!(
                Instant::now() < deadline,
                "ingest did not stop within 30 s of SIGINT\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The partitions `child` last logged as its assignment (`None` before its first one).
    pub fn assignment(&self, child: &Child) -> Option<BTreeSet<u32>> {
        let log = self.logs.lock().unwrap().get(&child.id()).cloned()?;
        let text = std::fs::read_to_string(log).ok()?;
        let line = text.lines().rev().find(|l| l.contains("assignment changed"))?;
        let set = &line[line.rfind('{')? + 1..line.rfind('}')?];
        Some(set.split(',').filter_map(|p| p.trim().parse().ok()).collect())
    }

    /// Waits until `members` hold disjoint, non-empty assignments that cover all `partitions`:
    /// the group has settled on one generation that every member took part in.
    pub fn wait_balanced(&self, members: &[Child], partitions: u32) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let sets: Vec<_> = members.iter().map(|m| self.assignment(m)).collect();
            let settled = sets.iter().all(|s| s.as_ref().is_some_and(|s| !s.is_empty()))
                && sets.iter().flatten().map(BTreeSet::len).sum::<usize>() == partitions as usize
                && sets.iter().flatten().flatten().collect::<BTreeSet<_>>().len()
                    == partitions as usize;
            if settled {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the group never settled: {sets:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The tail of every ingest log of this stack, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(self.dir.path()).unwrap().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                out.push_str(&format!("--- {}\n", path.display()));
                for line in tail.into_iter().rev() {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }

    pub async fn store(&self) -> PostgresStore {
        PostgresStore::connect(&sentio_it::postgres(&self.dbname())).await.unwrap()
    }
}

impl Drop for Stack {
    /// Drops the test's database, so runs do not pile up databases on the shared server (topics and
    /// bucket prefixes stay: the broker and the S3 server are the test's own, under ~/.cache).
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                "-h",
                &sentio_it::setting("SENTIO_TEST_PG_HOST"),
                "-p",
                &sentio_it::setting("SENTIO_TEST_PG_PORT"),
            ])
            .args(["-U", &sentio_it::setting("SENTIO_TEST_PG_USER"), "-d", "postgres", "-qAtc"])
            .arg(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.dbname()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `scripts/services.sh` with `args` (restarts, the failover cluster); returns its standard
/// output.
pub fn services(args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(repo().join("scripts/services.sh"))
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "scripts/services.sh {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every stored reading, in a stable order.
pub async fn stored(store: &dyn ReadingStore) -> Vec<Reading> {
    store
        .query_range(&RangeQuery { devices: vec![], sensors: vec![], from_ns: 0, to_ns: i64::MAX })
        .await
        .unwrap()
}

/// Order-independent fingerprint: (count, wrapping sum of row hashes).
pub fn checksum<'a>(readings: impl IntoIterator<Item = &'a Reading>) -> (u64, u64) {
    let mut count = 0u64;
    let mut sum = 0u64;
    for r in readings {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in r
            .device
            .as_str()
            .bytes()
            .chain(r.sensor.as_str().bytes())
            .chain(r.ts_ns.to_le_bytes())
            .chain(r.value.to_bits().to_le_bytes())
            .chain(r.seq.to_le_bytes())
            .chain(r.injected.map_or("-", |k| k.as_str()).bytes())
        {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        count += 1;
        sum = sum.wrapping_add(h);
    }
    (count, sum)
}

/// Fails on any (device, sensor, seq) stored twice.
pub fn assert_no_duplicates(readings: &[Reading]) {
    let mut keys: Vec<(&str, &str, u64)> =
        readings.iter().map(|r| (r.device.as_str(), r.sensor.as_str(), r.seq)).collect();
    keys.sort_unstable();
    let before = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), before, "{} duplicate (device, sensor, seq) rows", before - keys.len());
}

pub fn python() -> PathBuf {
    let path = std::env::var_os("SENTIO_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/sentio/venv/bin/python")
    });
    assert!(path.exists(), "no Python venv at {}: run scripts/python-env.sh", path.display());
    path
}

/// `${NAME:-default}` → `default`, as Compose interpolates with an empty environment.
pub fn interpolate(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').map(|e| start + e).expect("unclosed ${");
        let inner = &rest[start + 2..end];
        out.push_str(inner.split_once(":-").map_or("", |(_, default)| default));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

pub fn scalar(v: &serde_yaml::Value) -> String {
    match v {
        serde_yaml::Value::String(s) => s.clone(),
        serde_yaml::Value::Number(n) => n.to_string(),
        serde_yaml::Value::Bool(b) => b.to_string(),
        other => panic!("non-scalar environment value {other:?}"),
    }
}

/// The MQTT broker of `scripts/services.sh`: (host, port).
pub fn mqtt_broker() -> (String, String) {
    let url = sentio_it::setting("SENTIO_TEST_MQTT_URL");
    let rest = url.strip_prefix("mqtt://").unwrap();
    let (host, port) = rest.rsplit_once(':').unwrap();
    (host.to_owned(), port.to_owned())
}

/// A `bridge.toml` in `dir`: the test broker, `client`'s session, one `value` subscription
/// `prefix/{device}/{sensor}` in bar.
pub fn write_bridge_config(dir: &Path, prefix: &str, client: &str) {
    let (host, port) = mqtt_broker();
    std::fs::write(
        dir.join("bridge.toml"),
        format!(
            "[bridge.mqtt]\nhost = \"{host}\"\nport = {port}\nclient_id = \"{client}\"\n\n\
             [[bridge.mqtt.subscriptions]]\ntopic = \"{prefix}/{{device}}/{{sensor}}\"\n\
             format = \"value\"\nunit = \"bar\"\n"
        ),
    )
    .unwrap();
}

/// Makes the bridge of `dir/bridge.toml` speak MQTT `version` ("3.1.1" or "5").
pub fn set_mqtt_version(dir: &Path, version: &str) {
    let path = dir.join("bridge.toml");
    let config = std::fs::read_to_string(&path).unwrap();
    let config =
        config.replace("[bridge.mqtt]\n", &format!("[bridge.mqtt]\nversion = \"{version}\"\n"));
    assert!(config.contains(&format!("version = \"{version}\"")), "{config}");
    std::fs::write(path, config).unwrap();
}

/// `mosquitto_pub`'s name for MQTT `version`.
pub fn mosquitto_protocol(version: &str) -> &'static str {
    if version == "5" { "mqttv5" } else { "mqttv311" }
}

/// Starts `cmd` (a `sentio ... bridge mqtt`), its log appended to `log`, and waits until it has
/// subscribed; its stdout lines keep coming on the receiver.
pub fn spawn_bridge(mut cmd: Command, log: &Path) -> (Child, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader};
    let file = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(file)
        .env("RUST_LOG", "info,sentio_bridge=debug")
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    // Reads to the end whether or not anyone listens, so that the bridge never blocks on a pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains("subscribed:") => return (child, rx),
            Ok(_) => {}
            Err(e) => {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                panic!(
                    "not subscribed ({e:?}); its log ends:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            }
        }
    }
}
