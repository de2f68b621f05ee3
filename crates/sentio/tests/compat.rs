#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A data directory written by an earlier release still works: `tests/fixtures/release-2026-12-02`
//! (how it was made is in its README), copied to a new place as a user moving their data would.

use std::path::Path;
use std::process::{Command, Output};

const SENTIO: &str = env!("CARGO_BIN_EXE_sentio");
const FROM: &str = "2026-12-02T11:44:00Z";
const TO: &str = "2026-12-02T12:00:00Z";

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != "README.md" {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A scratch directory holding a copy of the fixture as `data/`.
fn old_data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/release-2026-12-02");
    // Without the old store every later check would run on a fresh, empty one.
    assert!(
        fixture.join("sentio.db").is_file(),
        "the fixture's sentio.db is missing: is it committed?"
    );
    copy_dir(&fixture, &dir.path().join("data"));
    dir
}

fn sentio(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(SENTIO);
    cmd.current_dir(dir).args(args).env("RUST_LOG", "warn");
    for (key, _) in std::env::vars() {
        if key.starts_with("SENTIO") {
            cmd.env_remove(key);
        }
    }
    // The fixture's model is small; so is the training here.
    for (key, value) in [
        ("SENTIO__TRAIN__HIDDEN", "8"),
        ("SENTIO__TRAIN__BOTTLENECK", "4"),
        ("SENTIO__TRAIN__EPOCHS", "2"),
        ("SENTIO__TRAIN__WINDOW", "16"),
    ] {
        cmd.env(key, value);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "sentio {args:?} failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn an_old_store_and_registry_are_read_scored_and_trained_on() {
    let dir = old_data_dir();
    let dir = dir.path();

    let listed = stdout(&sentio(dir, &["model", "list"]));
    assert!(listed.contains("version   1") && listed.contains("@champion"), "{listed}");

    // The store migrates itself to the schema with units and the channel catalog; its pumps are
    // the built-in pump profile's, with nothing left unmodelled.
    let migrated = stdout(&sentio(dir, &["migrate"]));
    assert!(
        migrated.contains("migration    5  bridge_status\nstore schema at version 5"),
        "{migrated}"
    );
    let profiles = stdout(&sentio(dir, &["profile", "list"]));
    assert!(profiles.contains("stored: pump-01, pump-02\n"), "{profiles}");
    assert!(!profiles.contains("not modelled"), "{profiles}");
    let suggested = stdout(&sentio(dir, &["profile", "suggest"]));
    assert!(
        suggested.contains("# pump-01, pump-02: every channel is declared by profile pump already"),
        "{suggested}"
    );

    // The old champion scores the old readings.
    let detected = sentio(dir, &["detect", "--from", FROM, "--to", TO, "--dry-run"]);
    let text = format!("{}{}", stdout(&detected), String::from_utf8_lossy(&detected.stderr));
    assert!(text.contains("sentio-lstm-ae version 1: 7232 readings, 2 devices"), "{text}");

    // The stored range evaluates against its ground truth.
    let evaluated = stdout(&sentio(dir, &["evaluate", "--from", FROM, "--to", TO, "--json"]));
    let report: serde_json::Value = serde_json::from_str(evaluated.trim()).unwrap();
    assert!(report.is_object(), "{evaluated}");

    // A new training on the old readings registers the next version.
    sentio(dir, &["train", "--from", FROM, "--to", TO]);
    let listed = stdout(&sentio(dir, &["model", "list"]));
    assert!(listed.contains("version   2"), "{listed}");
}
