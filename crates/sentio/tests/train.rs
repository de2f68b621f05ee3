#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `sentio train` and `sentio model list|show|promote` as a user runs them: on the embedded
//! defaults (SQLite, the local registry), and on the real stack (PostgreSQL, an MLflow server),
//! where Python then loads the champion through `mlflow.pyfunc` and must reconstruct windows
//! within 1e-4 of the Rust engine. Servers: `scripts/services.sh up`.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{SENTIO, START, START_NS, Stack, repo};
use rand::{Rng, SeedableRng};
use sentio_model::Autoencoder;
use sentio_tracking::MlflowSettings;

/// Two hours of 8 simulated devices: enough windows for a small model to learn something.
const HOURS: i64 = 2;

/// A small, fast model: the test is about the workflow, not about accuracy.
const SMALL: [(&str, &str); 8] = [
    ("SENTIO__TRAIN__WINDOW", "16"),
    ("SENTIO__TRAIN__STRIDE", "8"),
    ("SENTIO__TRAIN__HIDDEN", "12"),
    ("SENTIO__TRAIN__BOTTLENECK", "4"),
    ("SENTIO__TRAIN__EPOCHS", "3"),
    ("SENTIO__TRAIN__MAX_TRAIN_WINDOWS", "800"),
    ("SENTIO__TRAIN__THREADS", "2"),
    ("SENTIO__TRAIN__LEARNING_RATE", "0.005"),
];

fn to() -> String {
    sentio_core::time::format_rfc3339(START_NS + HOURS * 3_600_000_000_000)
}

/// Runs `cmd`, failing the test with its stderr unless it succeeds; returns stdout.
fn run(mut cmd: Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `simulate --stdout | ingest --stdin`: the backfill a user runs to get history quickly.
fn backfill(sentio: &dyn Fn() -> Command) {
    let mut simulate = sentio();
    simulate.args(["simulate", "--from", START, "--to", &to(), "--stdout", "--no-archive"]);
    let mut lines = simulate.stdout(Stdio::piped()).spawn().unwrap();
    let mut ingest = sentio();
    ingest.args(["ingest", "--stdin"]).stdin(lines.stdout.take().unwrap());
    let out = run(ingest);
    assert!(lines.wait().unwrap().success(), "sentio simulate failed");
    assert!(out.contains("0 dead letters"), "{out}");
}

/// Trains twice (the second not promoted), lists, shows and promotes: the whole CLI workflow.
/// Returns the champion's version at the end.
fn train_and_manage(sentio: &dyn Fn() -> Command, model: &str) -> u64 {
    let cmd = |args: &[&str]| {
        let mut c = sentio();
        c.args(args);
        run(c)
    };
    cmd(&["migrate"]);
    backfill(sentio);
    let train = ["train", "--from", START, "--to", &to()];

    let first = cmd(&train);
    assert!(first.contains(&format!("registered {model} version 1")), "{first}");
    assert!(first.contains("champion -> version 1"), "{first}");
    assert!(first.contains("threshold"), "{first}");

    let second = cmd(&[&train[..], &["--no-promote"]].concat());
    assert!(second.contains(&format!("registered {model} version 2")), "{second}");
    assert!(!second.contains("champion -> version 2"), "{second}");

    let list = cmd(&["model", "list"]);
    let ours: Vec<&str> = list
        .lines()
        .skip_while(|l| *l != model)
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .collect();
    assert_eq!(ours.len(), 2, "{list}");
    assert!(ours[0].contains("version   1") && ours[0].ends_with("@champion"), "{list}");
    assert!(!ours[1].contains('@'), "{list}");

    let show = cmd(&["model", "show"]);
    assert!(show.contains(&format!("{model} version 1 (aliases: champion)")), "{show}");
    for sensor in ["temperature", "vibration", "pressure", "humidity"] {
        assert!(show.contains(sensor), "{show}");
    }
    assert!(show.contains("8 devices"), "{show}");

    let promoted = cmd(&["model", "promote", "2"]);
    assert!(promoted.contains(&format!("{model}@champion -> version 2")), "{promoted}");
    let show = cmd(&["model", "show", "champion"]);
    assert!(show.contains(&format!("{model} version 2 (aliases: champion)")), "{show}");

    // The champion replays the range and reports what it finds, as a table and as JSON lines.
    let table = cmd(&["detect", "--from", START, "--to", &to()]);
    assert!(table.contains(&format!("{model} version 2:")), "{table}");
    assert!(table.contains("8 devices") && table.contains("windows scored"), "{table}");
    let json = cmd(&["detect", "--from", START, "--to", &to(), "--model", "1", "--json"]);
    for line in json.lines() {
        let alert: sentio_services::detect::AlertV1 = serde_json::from_str(line).unwrap();
        assert_eq!((alert.model.name.as_str(), alert.model.version.as_str()), (model, "1"));
        assert!((alert.sensors.iter().map(|s| s.share).sum::<f64>() - 1.0).abs() < 1e-9, "{line}");
        assert!(alert.sensors.windows(2).all(|w| w[0].share >= w[1].share), "{line}");
    }
    let opened = json.lines().filter(|l| l.contains("\"state\":\"opened\"")).count();
    let resolved = json.lines().filter(|l| l.contains("\"state\":\"resolved\"")).count();
    assert_eq!(opened, resolved, "every alert of a replay is resolved:\n{json}");

    // A version that does not exist is a clear error that says where to look.
    let mut missing = sentio();
    missing.args(["model", "promote", "9"]);
    let out = missing.output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no version 9") && stderr.contains("sentio model list"), "{stderr}");
    2
}

#[test]
fn train_and_model_commands_on_the_embedded_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let sentio = || {
        let mut c = Command::new(SENTIO);
        c.current_dir(dir.path()).env_clear().envs(SMALL).env("RUST_LOG", "warn");
        if let Some(path) = std::env::var_os("PATH") {
            c.env("PATH", path);
        }
        c
    };
    assert_eq!(train_and_manage(&sentio, "sentio-lstm-ae"), 2);
    // The local registry keeps MLflow's file-store layout, with the alias moved to version 2.
    let models = dir.path().join("data/tracking/models/sentio-lstm-ae");
    assert!(
        models.join("version-1/meta.yaml").is_file()
            && models.join("version-2/meta.yaml").is_file()
    );
    assert_eq!(std::fs::read_to_string(models.join("aliases/champion")).unwrap().trim(), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn train_registers_in_mlflow_and_python_loads_the_champion() {
    let mut stack = Stack::new("train");
    let uri = sentio_it::setting("SENTIO_TEST_MLFLOW_URI");
    let model = stack.name.replace('_', "-");
    stack.env.extend(SMALL.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    stack.env.extend([
        ("SENTIO__TRACKING__KIND".to_owned(), "mlflow".to_owned()),
        ("SENTIO__TRACKING__MLFLOW__URI".to_owned(), uri.clone()),
        ("SENTIO__TRACKING__EXPERIMENT".to_owned(), model.clone()),
        ("SENTIO__TRAIN__MODEL_NAME".to_owned(), model.clone()),
    ]);
    let champion = train_and_manage(&|| stack.sentio(), &model);

    // The server holds the run with its params and one validation loss per epoch.
    let tracking = MlflowSettings::new(&uri).connect().unwrap();
    let version = tracking.get_alias(&model, "champion").await.unwrap().unwrap();
    assert_eq!(version.version, champion);
    let run = version.run_id.clone().unwrap();
    let info = tracking.get_run(&run).await.unwrap();
    assert_eq!(info.params["window"], "16");
    assert_eq!(info.params["devices"].split(',').count(), 8, "{:?}", info.params);
    let history = tracking.metric_history(&run, "validation_loss").await.unwrap();
    assert_eq!(history.iter().map(|m| m.step).collect::<Vec<_>>(), [1, 2, 3]);

    // The run page links the logged model (the run's outputs), as for a model logged from Python.
    let out = Command::new("curl")
        .args(["-sf", &format!("{uri}/api/2.0/mlflow/runs/get?run_id={run}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "curl runs/get failed");
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let outputs = &got["run"]["outputs"]["model_outputs"];
    assert_eq!(outputs.as_array().map(Vec::len), Some(1), "{got}");
    assert!(version.source.ends_with(outputs[0]["model_id"].as_str().unwrap()), "{got}");

    // Python loads the champion through MLflow and reconstructs like the Rust engine.
    let dir = tempfile::tempdir().unwrap();
    tracking.download_model_version(&model, champion, dir.path()).await.unwrap();
    let cases = reconstruction_cases(dir.path());
    let cases_path = dir.path().join("cases.json");
    std::fs::write(&cases_path, cases.to_string()).unwrap();
    let out = Command::new(sentio_it::setting("SENTIO_TEST_MLFLOW_PYTHON"))
        .arg(repo().join("scripts/pyfunc_check.py"))
        .arg(format!("models:/{model}@champion"))
        .arg(&cases_path)
        .env("MLFLOW_TRACKING_URI", &uri)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the Python check failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("largest difference from Rust"), "{said}");
    println!("{said}");
}

/// Seeded windows in standardized units and the Rust engine's reconstruction of them, from the
/// weights in a downloaded model directory.
fn reconstruction_cases(model_dir: &Path) -> serde_json::Value {
    let weights = model_dir.join("weights.safetensors");
    let spec = sentio_model::checkpoint::read_spec(&weights).unwrap().unwrap();
    let engine = Autoencoder::load_safetensors(&weights, spec).unwrap();
    let (batch, steps, features) = (12, spec.window, spec.features);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let windows: Vec<f32> =
        (0..batch * steps * features).map(|_| rng.random_range(-3.0f32..3.0)).collect();
    let mut out = vec![0.0f32; windows.len()];
    engine.reconstruct(&windows, &mut out).unwrap();
    let nest = |flat: &[f32]| {
        flat.chunks(steps * features)
            .map(|w| w.chunks(features).map(<[f32]>::to_vec).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    };
    serde_json::json!({ "windows": nest(&windows), "reconstruction": nest(&out) })
}
