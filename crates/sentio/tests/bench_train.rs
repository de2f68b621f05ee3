#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `sentio bench train`: the Rust engine against PyTorch, or, without the PyTorch venv, an error
//! that says how to get it.

use std::path::PathBuf;
use std::process::{Command, Output};

const SENTIO: &str = env!("CARGO_BIN_EXE_sentio");

/// The venv of scripts/torch-env.sh, where it exists.
fn torch_python() -> Option<PathBuf> {
    let python =
        PathBuf::from(std::env::var_os("HOME")?).join(".cache/sentio/torch-venv/bin/python");
    python.exists().then_some(python)
}

/// `sentio bench train ARGS` in a scratch directory, with no SENTIO variables from the caller.
fn bench_train(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(SENTIO);
    cmd.current_dir(dir.path()).args(["bench", "train"]).args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("SENTIO") {
            cmd.env_remove(key);
        }
    }
    cmd.output().unwrap()
}

#[test]
fn bench_train_compares_with_pytorch_or_names_the_setup_script() {
    if torch_python().is_some() {
        let out = bench_train(&["--steps", "2", "--rounds", "1", "--threads", "1"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "sentio bench train failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let row = stdout
            .lines()
            .find(|l| l.starts_with("| 1 |"))
            .unwrap_or_else(|| panic!("no row for 1 thread in:\n{stdout}"));
        let ratios = row.matches('×').count();
        assert_eq!(ratios, 2, "a train and an inference ratio in {row:?}");
    } else {
        let out = bench_train(&[
            "--steps",
            "2",
            "--rounds",
            "1",
            "--threads",
            "1",
            "--python",
            "/nonexistent",
        ]);
        assert!(!out.status.success(), "a missing Python succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("scripts/torch-env.sh"),
            "the error does not name the setup script:\n{stderr}"
        );
    }
}

#[test]
fn a_missing_python_is_a_clear_error() {
    let out = bench_train(&["--steps", "1", "--rounds", "1", "--python", "/nonexistent/python"]);
    assert!(!out.status.success(), "a missing Python succeeded");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/python"), "{stderr}");
    assert!(
        stderr.contains("scripts/torch-env.sh"),
        "the error does not name the setup script:\n{stderr}"
    );
}
