//! `sentio bench train`: the LSTM autoencoder engine's training and inference throughput
//! (`sentio_model::bench`) against PyTorch's for the identical model, data shape, step counts and
//! thread count (`scripts/bench_torch.py`), measured in one run so the ratios mean something.
//!
//! Rust and PyTorch alternate within each round (Rust 1 thread, torch 1 thread, Rust 2 threads, …)
//! so that a burst of load from elsewhere on the machine hits both sides alike; each cell is the
//! median over the rounds.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sentio_model::BenchResult;

/// The PyTorch side, embedded so that the command runs from any directory; it imports the model
/// from its neighbour `torch_reference.py`, so both are written to a temporary directory.
const BENCH_TORCH_PY: &str = include_str!("../../../scripts/bench_torch.py");
const TORCH_REFERENCE_PY: &str = include_str!("../../../scripts/torch_reference.py");

/// Where `scripts/torch-env.sh` puts the venv, under `$HOME`.
const TORCH_VENV_PYTHON: &str = ".cache/sentio/torch-venv/bin/python";

pub struct Options {
    /// Thread counts to measure, each on both sides.
    pub threads: Vec<usize>,
    /// Timed training steps and timed inference calls, per measurement.
    pub steps: usize,
    /// Rounds of measurements; the median is reported.
    pub rounds: usize,
    /// The Python with torch; `None` for the venv of `scripts/torch-env.sh`.
    pub python: Option<PathBuf>,
    /// Channels per frame (the model's features).
    pub features: usize,
}

/// One side's rates for one thread count in one round.
#[derive(Clone, Copy, Debug)]
struct Rates {
    train: f64,
    infer: f64,
    train_cpu: Option<f64>,
    infer_cpu: Option<f64>,
}

impl From<&BenchResult> for Rates {
    fn from(r: &BenchResult) -> Self {
        Rates {
            train: r.train_windows_per_s,
            infer: r.infer_windows_per_s,
            train_cpu: r.train_windows_per_cpu_s,
            infer_cpu: r.infer_windows_per_cpu_s,
        }
    }
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    if options.threads.is_empty() || options.threads.contains(&0) {
        bail!("--threads needs one or more thread counts, each at least 1");
    }
    if options.steps == 0 || options.rounds == 0 {
        bail!("--steps and --rounds must be at least 1");
    }
    let python = resolve_python(options.python)?;
    let scripts = tempfile::Builder::new()
        .prefix("sentio-bench-torch-")
        .tempdir()
        .context("creating a temporary directory for the PyTorch script")?;
    let script = scripts.path().join("bench_torch.py");
    std::fs::write(&script, BENCH_TORCH_PY)
        .and_then(|()| {
            std::fs::write(scripts.path().join("torch_reference.py"), TORCH_REFERENCE_PY)
        })
        .with_context(|| format!("writing the PyTorch script to {}", scripts.path().display()))?;

    if cfg!(debug_assertions) {
        let _ = writeln!(
            std::io::stderr(),
            "warning: this sentio is a debug build, so the Rust engine runs unoptimized and its \
             numbers mean nothing; build with `cargo build --release -p sentio`"
        );
    }
    say!(
        "sentio bench train: LSTM autoencoder T=64 F={} H=64, {} steps (train batch 64, inference \
         batch 256) per measurement, threads {:?}, {} round(s), {} cores",
        options.features,
        options.steps,
        options.threads,
        options.rounds,
        std::thread::available_parallelism().map_or(1, usize::from)
    );

    // measured[i] = (Rust, torch) rates for options.threads[i], one entry per round.
    let mut measured: Vec<Vec<(Rates, Rates)>> = vec![Vec::new(); options.threads.len()];
    let mut torch_version = String::new();
    for round in 1..=options.rounds {
        for (i, &threads) in options.threads.iter().enumerate() {
            let (steps, features) = (options.steps, options.features);
            let rust = tokio::task::spawn_blocking(move || {
                let defaults = sentio_model::BenchConfig::default();
                let spec = sentio_model::ModelSpec { features, ..defaults.spec };
                sentio_model::bench::bench(&sentio_model::BenchConfig {
                    threads,
                    steps,
                    spec,
                    ..defaults
                })
            })
            .await
            .context("the Rust benchmark thread")?
            .with_context(|| format!("Rust engine, {threads} thread(s)"))?;
            let (torch, version) = run_torch(&python, &script, threads, steps, features).await?;
            torch_version = version;
            say!(
                "round {round}, {threads} thread(s): train {:.0} vs {:.0} windows/s, inference \
                 {:.0} vs {:.0} windows/s (Rust vs torch; Rust's last loss {:.4})",
                rust.train_windows_per_s,
                torch.train,
                rust.infer_windows_per_s,
                torch.infer,
                rust.last_loss
            );
            measured[i].push((Rates::from(&rust), torch));
        }
    }

    say!("\ntorch {torch_version} ({}); median of {} round(s)", python.display(), options.rounds);
    table(&options.threads, &measured, "windows/s", |r| Some(r.train), |r| Some(r.infer));
    // Per CPU-second: steadier than wall-clock time on a busy machine, and at 1 thread the fair
    // comparison. Shown only where both sides could tell in every round.
    let complete = measured.iter().flatten().all(|(r, t)| {
        r.train_cpu.is_some()
            && r.infer_cpu.is_some()
            && t.train_cpu.is_some()
            && t.infer_cpu.is_some()
    });
    if complete {
        table(&options.threads, &measured, "windows/CPU-s", |r| r.train_cpu, |r| r.infer_cpu);
    }
    say!("\nratio = Rust / torch (above 1: the Rust engine is faster)");
    Ok(())
}

/// One Markdown table: per thread count, the median (and range) of Rust's and torch's training
/// and inference rates as `train` and `infer` read them, and their ratios.
fn table(
    threads: &[usize],
    measured: &[Vec<(Rates, Rates)>],
    unit: &str,
    train: fn(&Rates) -> Option<f64>,
    infer: fn(&Rates) -> Option<f64>,
) {
    say!();
    say!("| threads | Rust train {unit} | torch | ratio | Rust inference {unit} | torch | ratio |");
    say!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (&threads, rounds) in threads.iter().zip(measured) {
        let rust = |pick: fn(&Rates) -> Option<f64>| -> Vec<f64> {
            rounds.iter().filter_map(|(r, _)| pick(r)).collect()
        };
        let torch = |pick: fn(&Rates) -> Option<f64>| -> Vec<f64> {
            rounds.iter().filter_map(|(_, t)| pick(t)).collect()
        };
        say!(
            "| {threads} | {} | {} | {} | {} | {} | {} |",
            cell(&rust(train)),
            cell(&torch(train)),
            ratio(&rust(train), &torch(train)),
            cell(&rust(infer)),
            cell(&torch(infer)),
            ratio(&rust(infer), &torch(infer)),
        );
    }
}

/// `--python` if given, else the venv of `scripts/torch-env.sh`; either must exist.
pub(super) fn resolve_python(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let python = match given {
        Some(p) => p,
        None => match std::env::home_dir() {
            Some(home) => home.join(TORCH_VENV_PYTHON),
            None => bail!(
                "no home directory to find the PyTorch venv (~/{TORCH_VENV_PYTHON}) in: pass \
                 --python PATH, a Python with torch"
            ),
        },
    };
    if !python.exists() {
        bail!(
            "no Python with PyTorch at {}: run scripts/torch-env.sh to create the venv (a ~5 GB \
             download, once), or pass --python PATH, a Python with torch",
            python.display()
        );
    }
    Ok(python)
}

/// Runs the PyTorch side once; returns its rates and torch's version.
async fn run_torch(
    python: &Path,
    script: &Path,
    threads: usize,
    steps: usize,
    features: usize,
) -> anyhow::Result<(Rates, String)> {
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(script).args(["--threads", &threads.to_string(), "--steps", &steps.to_string()]);
    cmd.args(["--features", &features.to_string()]);
    let (json, line) = torch_json(cmd, python).await?;
    let rate = |key: &str| json.get(key).and_then(serde_json::Value::as_f64);
    let (Some(train), Some(infer)) = (rate("train_windows_per_s"), rate("infer_windows_per_s"))
    else {
        bail!("the PyTorch benchmark's output lacks the windows/s rates: {line}");
    };
    let version = json.get("torch_version").and_then(|v| v.as_str()).unwrap_or("?").to_owned();
    let rates = Rates {
        train,
        infer,
        train_cpu: rate("train_windows_per_cpu_s"),
        infer_cpu: rate("infer_windows_per_cpu_s"),
    };
    Ok((rates, version))
}

/// Runs a PyTorch benchmark script and reads the JSON line it prints last (and the line itself,
/// for error messages); a failure names the Python and how to get torch.
pub(super) async fn torch_json(
    mut cmd: tokio::process::Command,
    python: &Path,
) -> anyhow::Result<(serde_json::Value, String)> {
    let out = cmd
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        bail!(
            "the PyTorch benchmark failed ({}) with {}:\n{}\n(is torch installed there? \
             scripts/torch-env.sh creates a venv with it, or pass --python PATH)",
            out.status,
            python.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find(|l| l.trim_start().starts_with('{')).unwrap_or("");
    let json: serde_json::Value = serde_json::from_str(line)
        .with_context(|| format!("reading the PyTorch benchmark's output {stdout:?}"))?;
    Ok((json, line.to_owned()))
}

fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// The median, with the range in brackets when there is more than one value.
pub(super) fn cell(values: &[f64]) -> String {
    let Some(m) = median(values) else { return "–".to_owned() };
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if values.len() > 1 {
        format!("{} ({}–{})", thousands(m), thousands(lo), thousands(hi))
    } else {
        thousands(m)
    }
}

/// The ratio of the medians.
pub(super) fn ratio(rust: &[f64], torch: &[f64]) -> String {
    match median(rust).zip(median(torch)) {
        Some((r, t)) if t > 0.0 => format!("{:.2}×", r / t),
        _ => "–".to_owned(),
    }
}

/// `12345.6` → `"12,346"`.
pub(super) fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 && digits != "0" { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_cells() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(cell(&[3704.2, 3376.0, 3762.0]), "3,704 (3,376–3,762)");
        assert_eq!(cell(&[999.6]), "1,000");
        assert_eq!(ratio(&[3.0], &[2.0]), "1.50×");
        assert_eq!(ratio(&[3.0], &[]), "–");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
        assert_eq!(thousands(12.0), "12");
    }

    #[test]
    fn a_missing_python_names_the_setup_script() {
        let err = resolve_python(Some(PathBuf::from("/nonexistent/python"))).unwrap_err();
        assert!(format!("{err:#}").contains("scripts/torch-env.sh"), "{err:#}");
    }
}
