#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Fault injection on the embedded path: `sentio demo` is killed with SIGKILL at random points of
//! its backfill, training, replay and live phases, again and again, and a second process is
//! started on the same data directory. Then the data directory must hold exactly the simulator's
//! seeded stream (every device and sensor, every tick once, from the first run's start to the
//! last reading), the raw archive must hold exactly what the store holds, no alert may be left
//! open without a detector, and the champion must be a training that ran to its end.
//!
//! Every fourth run, a pump joins the fleet, so that its whole history is backfilled while the
//! others resume: the backfill kills land in real backfills.
//!
//! CI runs `SENTIO_FAULT_KILLS` (default 20) kills on two pumps (and the five that join) with
//! 40 minutes of history; `scripts/crash-test.sh` runs 8 pumps and 3 hours.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::ObjectStore;
use rand::{Rng, SeedableRng};
use sentio_core::{AlertState, DecodeLimits, Reading, decode_reading};
use sentio_objects::RawBatch;
use sentio_store::sqlite::SqliteStore;
use sentio_store::{AnomalyQuery, RangeQuery, ReadingStore};

const SENTIO: &str = env!("CARGO_BIN_EXE_sentio");

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `sentio` in `dir` with the test's settings and nothing leaking in from the caller.
fn sentio(dir: &Path, devices: u64) -> Command {
    let mut cmd = Command::new(SENTIO);
    cmd.current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("SENTIO") {
            cmd.env_remove(key);
        }
    }
    cmd.env("SENTIO__SIMULATOR__DEVICES", devices.to_string())
        .env("SENTIO__TRAIN__EPOCHS", "3")
        .env("SENTIO__TRAIN__HIDDEN", "32");
    cmd
}

/// A running demo whose stdout lines arrive on a channel.
struct Demo {
    child: Child,
    log: std::path::PathBuf,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Demo {
    fn start(dir: &Path, devices: u64, args: &[&str]) -> Demo {
        // stderr to a file: a pipe nobody reads while the demo runs could fill and block it.
        let log = dir.join("stderr.log");
        let _ = std::fs::remove_file(&log);
        let mut child = sentio(dir, devices)
            .arg("demo")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Demo { child, log, lines, seen: Vec::new() }
    }

    /// Waits (up to `limit`) for a line containing one of `markers`; false if the demo ended
    /// first.
    fn wait_for(&mut self, markers: &[&str], limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = markers.iter().any(|m| line.contains(m));
                    self.seen.push(line);
                    if hit {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
        false
    }

    /// The phase the demo was in, from the last line it printed.
    fn phase(&mut self) -> &'static str {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        let last = |m: &str| self.seen.iter().rposition(|l| l.contains(m));
        let marks = [
            ("live", last("live:")),
            ("detector start", last("alerts in the backfill")),
            ("train or replay", last("training")),
            ("backfill", last("backfilling")),
        ];
        marks.iter().filter_map(|(p, at)| at.map(|i| (i, *p))).max().map_or("start", |(_, p)| p)
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn finish(mut self) -> (bool, String, String) {
        let status = self.child.wait().unwrap();
        let err = std::fs::read_to_string(&self.log).unwrap_or_default();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(1)) {
            self.seen.push(line);
        }
        (status.success(), self.seen.join("\n"), err)
    }
}

#[test]
fn the_demo_survives_kill_9_anywhere_and_a_second_process() {
    let kills = env_or("SENTIO_FAULT_KILLS", 20);
    let devices = env_or("SENTIO_FAULT_DEVICES", 2);
    let backfill = format!("{}m", env_or("SENTIO_FAULT_BACKFILL_MIN", 40));
    let seed = env_or("SENTIO_FAULT_SEED", rand::random::<u32>() as u64);
    eprintln!(
        "fault injection: {kills} kills, {devices} devices, backfill {backfill}, seed {seed}"
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();

    // Every fourth run a pump joins the fleet: its whole history is backfilled (while the others
    // resume where they stopped), so the backfill kills land in a real backfill, not only the
    // first run's.
    let fleet = |i: u64| devices + i / 4;
    let mut phases: BTreeMap<&str, u32> = BTreeMap::new();
    for i in 0..kills {
        // Aim at each phase in turn; the kill lands a random moment after its marker (or after
        // going live, when this run has no such phase: a restart right after a kill has almost
        // nothing to backfill or replay).
        let (marker, args, delay_ms): (&str, &[&str], u64) = match i % 4 {
            0 => ("backfilling", &[], rng.random_range(0..400)),
            1 => ("training", &["--retrain"], rng.random_range(0..300)),
            2 => ("alerts in the backfill", &[], rng.random_range(0..300)),
            _ => ("live:", &[], rng.random_range(0..3000)),
        };
        let markers = [marker, "live:"];
        let mut args: Vec<&str> = args.to_vec();
        args.extend(["--backfill", &backfill, "--duration", "60s", "--no-serve"]);
        let mut demo = Demo::start(dir.path(), fleet(i), &args);
        assert!(
            demo.wait_for(&markers, Duration::from_secs(120)),
            "run {i} ended before {markers:?}: {:?}",
            demo.seen
        );
        if i == kills / 2 {
            // A second process on the same directory fails at once, naming the first.
            let pid = demo.child.id();
            let second_dir = dir.path().join("second");
            std::fs::create_dir_all(&second_dir).unwrap();
            std::os::unix::fs::symlink(dir.path().join("data"), second_dir.join("data")).unwrap();
            let second = Demo::start(&second_dir, fleet(i), &["--duration", "5s", "--no-serve"]);
            let (ok, out, err) = second.finish();
            let first_alive = demo.child.try_wait().unwrap().is_none();
            assert!(
                !ok,
                "a second demo on the same data directory started (first alive: {first_alive}):\n{out}\n{err}\nfirst: {:?}",
                demo.seen
            );
            assert!(err.contains("is in use by") && err.contains(&format!("PID {pid}")), "{err}");
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        let phase = demo.phase();
        *phases.entry(phase).or_default() += 1;
        demo.kill();
    }
    eprintln!("killed {kills} times in {:.0?}: {phases:?}", started.elapsed());
    if kills >= 8 {
        assert!(phases.len() >= 3, "the kills hit too few phases: {phases:?}");
    }

    // A last, clean run: it resumes, detects and exits consistent.
    let devices = fleet(kills.saturating_sub(1));
    let (ok, out, err) = Demo::start(
        dir.path(),
        devices,
        &["--backfill", &backfill, "--duration", "8s", "--no-serve"],
    )
    .finish();
    assert!(ok, "the final demo failed:\n{out}\n{err}");
    assert!(out.contains("(consistent)"), "{out}");
    assert!(out.contains("windows scored"), "detection did not run:\n{out}\n{err}");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(check(dir.path(), devices));
}

async fn check(dir: &Path, devices: u64) {
    let data = dir.join("data");
    let store = SqliteStore::open(&data.join("sentio.db")).unwrap();
    let q = RangeQuery { devices: vec![], sensors: vec![], from_ns: i64::MIN, to_ns: i64::MAX };
    let stored = store.query_range(&q).await.unwrap();
    assert!(!stored.is_empty());

    // The seeded stream of each pump, from the start of the run that first simulated it to its
    // last stored reading.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("sentio.simulator.json")).unwrap())
            .unwrap();
    let origins: BTreeMap<String, i64> = state["origins"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(d, o)| (d.clone(), o["ts_ns"].as_i64().unwrap()))
        .collect();
    assert_eq!(origins.len() as u64, devices, "{origins:?}");
    let mut device_last: BTreeMap<&str, i64> = BTreeMap::new();
    for r in &stored {
        let last = device_last.entry(r.device.as_str()).or_insert(r.ts_ns);
        *last = (*last).max(r.ts_ns);
    }
    let last = stored.iter().map(|r| r.ts_ns).max().unwrap();
    let fmt = |ns: i64| sentio_core::time::format_rfc3339(ns);
    let mut want: Vec<Reading> = Vec::new();
    let starts: std::collections::BTreeSet<i64> = origins.values().copied().collect();
    for start in starts {
        let out = sentio(dir, devices)
            .args([
                "simulate",
                "--from",
                &fmt(start),
                "--to",
                &fmt(last + 1),
                "--stdout",
                "--no-archive",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        want.extend(
            out.stdout
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| decode_reading(l, &DecodeLimits::default(), i64::MAX / 2).unwrap())
                .filter(|r| {
                    let d = r.device.as_str();
                    origins.get(d) == Some(&start)
                        && device_last.get(d).is_some_and(|l| r.ts_ns <= *l)
                }),
        );
    }
    let key = |r: &Reading| (r.device.as_str().to_owned(), r.ts_ns, r.sensor.clone(), r.seq);
    let mut got = stored.clone();
    got.sort_by_key(key);
    want.sort_by_key(key);
    let (got_n, want_n) = (got.len(), want.len());
    if got != want {
        let first = got.iter().zip(&want).position(|(a, b)| a != b);
        panic!(
            "the store ({got_n} readings) is not the seeded stream ({want_n}); first difference at {first:?}: {:?} vs {:?}",
            first.map(|i| &got[i]),
            first.map(|i| &want[i])
        );
    }

    // Archive = store, each reading once.
    let objects = sentio_objects::local(&data.join("objects")).unwrap();
    let metas: Vec<_> = objects.list(None).try_collect().await.unwrap();
    let mut archived = Vec::new();
    for m in metas {
        let bytes = objects.get(&m.location).await.unwrap().bytes().await.unwrap();
        archived.extend(RawBatch::from_pickle(&bytes).unwrap().readings().unwrap());
    }
    archived.sort_by_key(key);
    if archived != got {
        // Which readings of which device, over which times, one side lacks.
        let (a, s): (std::collections::BTreeSet<_>, std::collections::BTreeSet<_>) =
            (archived.iter().map(key).collect(), got.iter().map(key).collect());
        let spans = |only: Vec<&(String, i64, sentio_core::Channel, u64)>| {
            let mut per: BTreeMap<&str, (i64, i64, usize)> = BTreeMap::new();
            for (d, ts, _, _) in only {
                let e = per.entry(d.as_str()).or_insert((*ts, *ts, 0));
                *e = (e.0.min(*ts), e.1.max(*ts), e.2 + 1);
            }
            per.into_iter()
                .map(|(d, (from, to, n))| format!("{d}: {n} from {} to {}", fmt(from), fmt(to)))
                .collect::<Vec<_>>()
        };
        panic!(
            "archive ({}) and store ({}) differ; only in the store: {:?}; only in the archive: {:?}; {} objects",
            archived.len(),
            got.len(),
            spans(s.difference(&a).collect()),
            spans(a.difference(&s).collect()),
            objects.list(None).try_collect::<Vec<_>>().await.unwrap().len()
        );
    }

    // No alert open without a detector (the last run stopped cleanly).
    let open: Vec<_> = store
        .anomalies(&AnomalyQuery::all())
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.state != AlertState::Resolved)
        .collect();
    assert!(open.is_empty(), "alerts left open: {open:?}");

    // The champion ran to its end.
    let out = sentio(dir, devices).args(["model", "show"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("cancelled"), "a cancelled training is champion:\n{text}");
}
