//! The CSV detection path: per labelled file, train an LSTM autoencoder on its leading normal
//! part (or on a separate anomaly-free file), score the rest, and compare with the labels.
//!
//! For each file, with the same [`FileSettings`] for every file:
//!
//! 1. The training part is the first `train_rows` rows (SKAB's protocol: 400), or all of the
//!    `--train-file`. The columns that wander on the training part are detrended ([`Features`]),
//!    then each feature is standardized with the training part's mean and standard deviation
//!    only.
//! 2. An autoencoder (`features` = the file's columns) trains on every window of `window` rows of
//!    the training part: `epochs` passes of shuffled mini-batches, Adam; seeded, one thread per
//!    model, so a file's result does not depend on how many files run at once.
//! 3. Each point gets a score from the windows' reconstruction errors ([`PointScore`]), smoothed
//!    by a trailing moving average of `smooth` points.
//! 4. The threshold is the `quantile` of the training part's smoothed point scores (windows
//!    inside the training part only) times `factor`. Points above it are predicted anomalous;
//!    predicted runs closer than `merge_gap` points are joined. Nothing about the test part's
//!    labels is used.
//! 5. The metrics ([`super::metrics`]) are computed on the rows after the training part (the
//!    whole file with `--train-file`; its first `window - 1` rows have no full window and count
//!    as predicted normal).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use sentio_model::{Adam, Autoencoder, ModelSpec};
use serde::Serialize;

use super::csv::{Table, read_table};
use super::metrics::{Scores, Tally, evaluate};
use crate::train::calibrate::percentile;

/// How a point's score comes from the windows' reconstruction errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PointScore {
    /// The mean squared error of the window that ends at the point (causal: what a streaming
    /// detector knows at that time).
    WindowEnd,
    /// The mean, over every window covering the point, of the squared error at that point
    /// (looks up to `window - 1` points ahead: offline only).
    Covering,
}

/// What the model sees of each column. Detrended columns are causal (row `t` depends on rows
/// `..=t` only), computed on the whole file before standardization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Features {
    /// The values as read.
    Raw,
    /// Every column minus the mean of the `trend` rows before it (fewer at the start; row 0: 0):
    /// drift slower than `trend` rows is removed, but so is a lasting level shift, over `trend`
    /// rows.
    Detrend,
    /// Only the slow columns detrended: those whose training part's variance is more than `slow`
    /// times half the variance of their first differences (they wander, e.g. temperatures
    /// warming up); the others stay raw, so a level shift in them lasts.
    DetrendSlow,
}

/// The detection settings, the same for every file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileSettings {
    /// What the model sees of each column.
    pub features: Features,
    /// Rows of the trailing mean that detrended columns subtract.
    pub trend: usize,
    /// The slowness above which [`Features::DetrendSlow`] detrends a column.
    pub slow: f64,
    /// Leading rows of each file that train (SKAB: 400); ignored with a training file.
    pub train_rows: usize,
    /// Rows per window.
    pub window: usize,
    /// LSTM width.
    pub hidden: usize,
    /// Bottleneck width (0: none).
    pub bottleneck: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// Early stopping (0: off): the last `holdout` fraction of the training windows (in time)
    /// does not train; training stops after `patience` epochs without a lower loss on them and
    /// keeps the epoch with the lowest.
    pub patience: usize,
    /// Fraction of the training windows held out for early stopping, 0..1.
    pub holdout: f64,
    pub seed: u64,
    pub point_score: PointScore,
    /// Trailing moving average of the point scores, in points (1: none).
    pub smooth: usize,
    /// Quantile of the training scores, 0..=1.
    pub quantile: f64,
    /// The threshold is `factor` times that quantile.
    pub factor: f64,
    /// Predicted runs separated by at most this many normal points are joined (0: none).
    pub merge_gap: usize,
    /// Drift tracking, in points (0: none): the scores are divided by a baseline, an exponential
    /// average with this time constant of the scores of points predicted normal, so slow drift
    /// raises the threshold while an anomaly (predicted points) does not.
    pub drift: usize,
    /// Files evaluated at once (0: every core); each model uses one thread.
    pub threads: usize,
}

/// The defaults are the settings chosen on SKAB valve1 files 0-7 (docs/quality.md).
impl Default for FileSettings {
    fn default() -> Self {
        FileSettings {
            features: Features::DetrendSlow,
            trend: 400,
            slow: 3.0,
            train_rows: 400,
            window: 10,
            hidden: 16,
            bottleneck: 0,
            epochs: 30,
            batch_size: 32,
            learning_rate: 0.005,
            patience: 0,
            holdout: 0.2,
            seed: 7,
            point_score: PointScore::WindowEnd,
            smooth: 30,
            quantile: 0.99,
            factor: 1.3,
            merge_gap: 0,
            drift: 0,
            threads: 0,
        }
    }
}

/// One file's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub path: String,
    pub rows: usize,
    /// Rows that trained (of this file, or of the training file).
    pub train_rows: usize,
    /// Rows evaluated.
    pub test_rows: usize,
    pub threshold: f64,
    /// Mean squared error of the training windows after training.
    pub train_loss: f64,
    /// The columns detrended ([`Features`]).
    pub detrended: Vec<String>,
    /// Epochs the kept model trained (fewer than the setting with early stopping).
    pub epochs: usize,
    pub scores: Scores,
    #[serde(skip)]
    pub tally: Tally,
}

/// The outcome over all files.
#[derive(Debug, Clone, Serialize)]
pub struct CsvEvaluation {
    pub settings: FileSettings,
    pub train_file: Option<String>,
    /// Confusion counts summed over the files, then the ratios (SKAB's aggregation).
    pub pooled: Scores,
    pub files: Vec<FileReport>,
    pub seconds: f64,
}

/// The labelled CSV files named by `inputs`: files as given, directories as their `*.csv` files
/// in natural order (`2.csv` before `10.csv`).
pub fn list_inputs(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .with_context(|| format!("listing {}", input.display()))?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<_, _>>()
                .with_context(|| format!("listing {}", input.display()))?;
            found.retain(|p| p.is_file() && p.extension().is_some_and(|e| e == "csv"));
            found.sort_by_key(|p| natural_key(p));
            anyhow::ensure!(!found.is_empty(), "{} holds no .csv files", input.display());
            out.extend(found);
        } else {
            out.push(input.clone());
        }
    }
    Ok(out)
}

fn natural_key(path: &Path) -> (String, u64, String) {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let digits: String = stem.chars().rev().take_while(char::is_ascii_digit).collect();
    let digits: String = digits.chars().rev().collect();
    let prefix = stem[..stem.len() - digits.len()].to_owned();
    (prefix, digits.parse().unwrap_or(0), stem)
}

/// Evaluates every file of `paths` (each must have the `label_column`), training on each file's
/// leading rows, or once on `train_file` when given.
pub fn evaluate_files(
    paths: &[PathBuf],
    train_file: Option<&Path>,
    label_column: &str,
    settings: &FileSettings,
) -> anyhow::Result<CsvEvaluation> {
    let started = Instant::now();
    anyhow::ensure!(!paths.is_empty(), "no files to evaluate");
    anyhow::ensure!(settings.window >= 1 && settings.hidden >= 1, "window and hidden must be > 0");
    anyhow::ensure!(settings.epochs >= 1 && settings.batch_size >= 1, "epochs and batch size > 0");
    anyhow::ensure!(
        (0.0..=1.0).contains(&settings.quantile),
        "the quantile must be within 0..=1, not {}",
        settings.quantile
    );
    anyhow::ensure!(
        settings.features == Features::Raw || settings.trend >= 1,
        "the detrending window must be > 0"
    );
    anyhow::ensure!(
        settings.patience == 0 || (settings.holdout > 0.0 && settings.holdout < 1.0),
        "the held-out fraction must be within 0..1 (exclusive), not {}",
        settings.holdout
    );
    let tables: Vec<Table> =
        paths.iter().map(|p| read_table(p, label_column)).collect::<Result<_, _>>()?;
    for t in &tables {
        anyhow::ensure!(
            t.labels.is_some(),
            "{} has no {label_column:?} column to evaluate against (an anomaly-free file \
             goes to --train-file)",
            t.path.display()
        );
    }
    let shared = match train_file {
        Some(path) => {
            let table = read_table(path, label_column)?;
            for t in &tables {
                anyhow::ensure!(
                    t.features == table.features,
                    "{} has the columns {:?}, the training file {} has {:?}",
                    t.path.display(),
                    t.features,
                    path.display(),
                    table.features
                );
            }
            Some(Trained::fit(&table, table.rows(), settings)?)
        }
        None => None,
    };
    let files = parallel(&tables, settings.threads, |table| match &shared {
        Some(trained) => trained.evaluate(table, 0, settings),
        None => {
            let n = settings.train_rows;
            anyhow::ensure!(
                table.rows() > n,
                "{} has {} rows, not more than the {n} training rows",
                table.path.display(),
                table.rows()
            );
            Trained::fit(table, n, settings)?.evaluate(table, n, settings)
        }
    })?;
    let mut pooled = Tally::default();
    for f in &files {
        pooled.add(&f.tally);
    }
    Ok(CsvEvaluation {
        settings: settings.clone(),
        train_file: train_file.map(|p| p.display().to_string()),
        pooled: pooled.scores(),
        files,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// `job` over `items` on up to `threads` threads (0: every core), results in item order.
fn parallel<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    job: impl Fn(&T) -> anyhow::Result<R> + Sync,
) -> anyhow::Result<Vec<R>> {
    let threads = crate::train::fit::threads_or_all(threads).min(items.len()).max(1);
    let next = AtomicUsize::new(0);
    let mut results: Vec<(usize, anyhow::Result<R>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        done.push((i, job(item)));
                    }
                    done
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap_or_default()).collect()
    });
    anyhow::ensure!(results.len() == items.len(), "an evaluation thread panicked");
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// The columns that [`Features`] detrends, decided on the first `rows` rows only.
fn detrended_columns(table: &Table, rows: usize, s: &FileSettings) -> Vec<bool> {
    let f = table.features.len();
    match s.features {
        Features::Raw => vec![false; f],
        Features::Detrend => vec![true; f],
        Features::DetrendSlow => (0..f).map(|j| slowness(table, rows, j) > s.slow).collect(),
    }
}

/// How slowly column `j` moves over the first `rows` rows: its variance over half the variance of
/// its first differences. Noise around a level scores about 1 (the ratio is
/// `1 / (1 - lag-1 autocorrelation)`); a column that drifts or wanders scores far higher (a
/// straight ramp: infinity). A constant column scores 0.
fn slowness(table: &Table, rows: usize, j: usize) -> f64 {
    let x: Vec<f64> = (0..rows.min(table.rows())).map(|i| table.row(i)[j]).collect();
    let d: Vec<f64> = x.windows(2).map(|w| w[1] - w[0]).collect();
    let variance = |v: &[f64]| {
        let n = v.len().max(1) as f64;
        let mean = v.iter().sum::<f64>() / n;
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n
    };
    let (var, half_diff) = (variance(&x), variance(&d) / 2.0);
    if var <= MIN_STD * MIN_STD {
        0.0
    } else if half_diff <= MIN_STD * MIN_STD {
        f64::INFINITY // a straight ramp
    } else {
        var / half_diff
    }
}

/// `table` with the columns marked in `detrend` replaced by their [`detrended`] values (renamed
/// `detrend(name)`).
fn derive_features(table: &Table, detrend: &[bool], trend: usize) -> Table {
    if !detrend.contains(&true) {
        return table.clone();
    }
    let f = table.features.len();
    let d = detrended(&table.values, f, trend);
    let values = table
        .values
        .iter()
        .zip(d)
        .enumerate()
        .map(|(i, (&x, d))| if detrend[i % f] { d } else { x })
        .collect();
    let features = table
        .features
        .iter()
        .zip(detrend)
        .map(|(c, &d)| if d { format!("detrend({c})") } else { c.clone() })
        .collect();
    Table { features, values, ..table.clone() }
}

/// Each value of `values` (`rows × f`) minus the mean of the up to `trend` rows before it (row 0:
/// 0).
fn detrended(values: &[f64], f: usize, trend: usize) -> Vec<f64> {
    let rows = values.len() / f;
    let mut sum = vec![0.0; f];
    let mut out = Vec::with_capacity(values.len());
    for i in 0..rows {
        let n = i.min(trend);
        let row = &values[i * f..(i + 1) * f];
        for (x, s) in row.iter().zip(&sum) {
            out.push(if n == 0 { 0.0 } else { x - s / n as f64 });
        }
        // Slide: row i enters, row i - trend leaves.
        for (k, (s, x)) in sum.iter_mut().zip(row).enumerate() {
            *s += x;
            if i >= trend {
                *s -= values[(i - trend) * f + k];
            }
        }
    }
    out
}

/// Per-feature standardization fitted on the training rows.
struct Standardizer {
    mean: Vec<f64>,
    std: Vec<f64>,
}

/// A standard deviation below this (a constant column) scales by 1 instead.
const MIN_STD: f64 = 1e-9;

impl Standardizer {
    fn fit(table: &Table, rows: usize) -> Standardizer {
        let f = table.features.len();
        let n = rows.max(1) as f64;
        let mut mean = vec![0.0; f];
        for i in 0..rows {
            for (m, x) in mean.iter_mut().zip(table.row(i)) {
                *m += x / n;
            }
        }
        let mut var = vec![0.0; f];
        for i in 0..rows {
            for ((v, x), m) in var.iter_mut().zip(table.row(i)).zip(&mean) {
                *v += (x - m) * (x - m) / (n - 1.0).max(1.0);
            }
        }
        let std = var.iter().map(|v| if v.sqrt() > MIN_STD { v.sqrt() } else { 1.0 }).collect();
        Standardizer { mean, std }
    }

    /// The whole table standardized, `rows × features`.
    fn transform(&self, table: &Table) -> Vec<f32> {
        (0..table.rows())
            .flat_map(|i| {
                table
                    .row(i)
                    .iter()
                    .zip(&self.mean)
                    .zip(&self.std)
                    .map(|((x, m), s)| ((x - m) / s) as f32)
            })
            .collect()
    }
}

/// A model trained on one table's leading rows, with its threshold.
struct Trained {
    /// The columns detrended ([`Features`]).
    detrend: Vec<bool>,
    model: Autoencoder,
    scaler: Standardizer,
    threshold: f64,
    /// Mean smoothed training score: where drift tracking starts.
    baseline: f64,
    train_rows: usize,
    train_loss: f64,
    epochs: usize,
}

/// Windows per forward pass when scoring.
const SCORE_CHUNK: usize = 256;

impl Trained {
    fn fit(table: &Table, rows: usize, s: &FileSettings) -> anyhow::Result<Trained> {
        let detrend = detrended_columns(table, rows, s);
        let table = &derive_features(table, &detrend, s.trend);
        let f = table.features.len();
        let t = s.window;
        anyhow::ensure!(
            rows > t,
            "{}: {rows} training rows are too few for windows of {t}",
            table.path.display()
        );
        let scaler = Standardizer::fit(table, rows);
        let z = scaler.transform(table);
        let train = &z[..rows * f];
        let spec = ModelSpec { features: f, hidden: s.hidden, bottleneck: s.bottleneck, window: t };
        let mut model = Autoencoder::new(spec, s.seed)?.with_threads(1);
        let mut adam = Adam::new(s.learning_rate as f32);
        let mut rng = ChaCha8Rng::seed_from_u64(s.seed ^ 0x5e47_10a3);
        let windows = rows + 1 - t;
        // Early stopping holds out the last windows (in time); they must not overlap the rows of
        // the training windows, so the first held-out window starts after the last training row.
        let (fit_windows, held_out) = if s.patience > 0 {
            let held = ((windows as f64 * s.holdout).round() as usize).max(1);
            anyhow::ensure!(
                held + t <= windows,
                "{}: {rows} training rows are too few to hold out {held} windows",
                table.path.display()
            );
            let first_held = windows - held;
            (first_held + 1 - t, Some(&train[first_held * f..]))
        } else {
            (windows, None)
        };
        let mut order: Vec<usize> = (0..fit_windows).collect();
        let mut batch = Vec::with_capacity(s.batch_size * t * f);
        let mut best: Option<(f64, usize, Autoencoder)> = None;
        let mut epochs = s.epochs;
        let mut since_best = 0;
        for epoch in 0..s.epochs {
            order.shuffle(&mut rng);
            for ids in order.chunks(s.batch_size) {
                batch.clear();
                for &i in ids {
                    batch.extend_from_slice(&train[i * f..(i + t) * f]);
                }
                let loss = model.train_step(&batch, &mut adam)?;
                anyhow::ensure!(
                    loss.is_finite(),
                    "{}: training diverged in epoch {}: lower the learning rate",
                    table.path.display(),
                    epoch + 1
                );
            }
            if let Some(held) = held_out {
                let (_, loss) = point_scores(&model, held, f, s)?;
                if best.as_ref().is_none_or(|(b, _, _)| loss < *b) {
                    best = Some((loss, epoch + 1, model.clone()));
                    since_best = 0;
                } else {
                    since_best += 1;
                    if since_best >= s.patience {
                        break;
                    }
                }
            }
        }
        if let Some((_, epoch, kept)) = best {
            (epochs, model) = (epoch, kept);
        }
        let (train_scores, train_loss) = point_scores(&model, train, f, s)?;
        let train_scores = smoothed(&train_scores, s.smooth);
        let baseline = train_scores.iter().sum::<f64>() / train_scores.len().max(1) as f64;
        // The training part is normal: the baseline follows every point of it.
        let relative = Drift::new(baseline, s.drift).relative(&train_scores, f64::INFINITY).0;
        let threshold = percentile(&relative, s.quantile * 100.0) * s.factor;
        Ok(Trained {
            detrend,
            model,
            scaler,
            threshold,
            baseline,
            train_rows: rows,
            train_loss,
            epochs,
        })
    }

    /// Scores `table` and evaluates its rows from `from` on.
    fn evaluate(&self, table: &Table, from: usize, s: &FileSettings) -> anyhow::Result<FileReport> {
        let table = &derive_features(table, &self.detrend, s.trend);
        let f = table.features.len();
        let z = self.scaler.transform(table);
        let (scores, _) = point_scores(&self.model, &z, f, s)?;
        let scores = smoothed(&scores, s.smooth);
        let (_, above) = Drift::new(self.baseline, s.drift).relative(&scores, self.threshold);
        // Points before the first full window have no score: predicted normal.
        let mut predicted = vec![false; table.rows()];
        let first = table.rows() - scores.len();
        predicted[first..].copy_from_slice(&above);
        merge_gaps(&mut predicted, s.merge_gap);
        let labels = table.labels.as_deref().context("the table has no labels")?;
        let (tally, _) = evaluate(&predicted[from..], &labels[from..], &table.ts_ns[from..])?;
        Ok(FileReport {
            path: table.path.display().to_string(),
            rows: table.rows(),
            train_rows: self.train_rows,
            test_rows: table.rows() - from,
            threshold: self.threshold,
            train_loss: self.train_loss,
            detrended: table
                .features
                .iter()
                .zip(&self.detrend)
                .filter(|(_, d)| **d)
                .map(|(c, _)| c.clone())
                .collect(),
            epochs: self.epochs,
            scores: tally.scores(),
            tally,
        })
    }
}

/// The point scores of the rows of `z` (`rows × f`) from row `window - 1` on, and the mean
/// squared error over all windows.
fn point_scores(
    model: &Autoencoder,
    z: &[f32],
    f: usize,
    s: &FileSettings,
) -> anyhow::Result<(Vec<f64>, f64)> {
    let t = s.window;
    let rows = z.len() / f;
    let windows = rows + 1 - t;
    // step_error[w][k]: the squared error of window w at its step k, mean over features.
    let mut step_error = vec![0.0f64; windows * t];
    let mut batch = Vec::with_capacity(SCORE_CHUNK * t * f);
    let mut out = Vec::new();
    for start in (0..windows).step_by(SCORE_CHUNK) {
        let end = (start + SCORE_CHUNK).min(windows);
        batch.clear();
        for w in start..end {
            batch.extend_from_slice(&z[w * f..(w + t) * f]);
        }
        out.resize(batch.len(), 0.0);
        model.reconstruct(&batch, &mut out)?;
        for (cell, (x, y)) in step_error[start * t..end * t]
            .iter_mut()
            .zip(batch.chunks_exact(f).zip(out.chunks_exact(f)))
        {
            *cell = x.iter().zip(y).map(|(a, b)| f64::from(a - b).powi(2)).sum::<f64>() / f as f64;
        }
    }
    let loss = step_error.iter().sum::<f64>() / step_error.len().max(1) as f64;
    let scores = match s.point_score {
        PointScore::WindowEnd => {
            step_error.chunks_exact(t).map(|w| w.iter().sum::<f64>() / t as f64).collect()
        }
        PointScore::Covering => {
            // Row r is step r - w of window w, for the windows w in r+1-t ..= r.
            (t - 1..rows)
                .map(|r| {
                    let ws = r + 1 - t..=r.min(windows - 1);
                    let n = ws.clone().count();
                    ws.map(|w| step_error[w * t + (r - w)]).sum::<f64>() / n as f64
                })
                .collect()
        }
    };
    Ok((scores, loss))
}

/// Scores relative to a baseline that follows slow drift.
struct Drift {
    baseline: f64,
    /// Time constant in points; 0 keeps the baseline fixed.
    tau: usize,
}

impl Drift {
    fn new(baseline: f64, tau: usize) -> Drift {
        Drift { baseline: baseline.max(f64::MIN_POSITIVE), tau }
    }

    /// Each score over the baseline, and whether that ratio is above `threshold`; the baseline
    /// moves towards the scores of the points below it only.
    fn relative(mut self, scores: &[f64], threshold: f64) -> (Vec<f64>, Vec<bool>) {
        let mut ratios = Vec::with_capacity(scores.len());
        let mut above = Vec::with_capacity(scores.len());
        for &x in scores {
            let r = x / self.baseline;
            ratios.push(r);
            above.push(r > threshold);
            if self.tau > 0 && r <= threshold {
                self.baseline += (x - self.baseline) / self.tau as f64;
                self.baseline = self.baseline.max(f64::MIN_POSITIVE);
            }
        }
        (ratios, above)
    }
}

/// Trailing moving average over `n` points (the first points average what there is).
fn smoothed(scores: &[f64], n: usize) -> Vec<f64> {
    let n = n.max(1);
    let mut sum = 0.0;
    scores
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            sum += x;
            if i >= n {
                sum -= scores[i - n];
            }
            sum / (i + 1).min(n) as f64
        })
        .collect()
}

/// Joins predicted runs separated by at most `gap` unpredicted points.
fn merge_gaps(predicted: &mut [bool], gap: usize) {
    if gap == 0 {
        return;
    }
    let mut last: Option<usize> = None;
    for i in 0..predicted.len() {
        if predicted[i] {
            if let Some(l) = last
                && i - l - 1 <= gap
            {
                predicted[l + 1..i].iter_mut().for_each(|p| *p = true);
            }
            last = Some(i);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn smoothing_is_a_trailing_mean() {
        assert_eq!(smoothed(&[1.0, 3.0, 5.0, 7.0], 2), [1.0, 2.0, 4.0, 6.0]);
        assert_eq!(smoothed(&[1.0, 3.0], 1), [1.0, 3.0]);
    }

    #[test]
    fn merging_fills_short_gaps_only() {
        let mut p: Vec<bool> = "1001000011".bytes().map(|b| b == b'1').collect();
        merge_gaps(&mut p, 2);
        let s: String = p.iter().map(|&b| if b { '1' } else { '0' }).collect();
        assert_eq!(s, "1111000011");
    }

    fn table(features: &[&str], values: &[f64]) -> Table {
        let rows = values.len() / features.len();
        Table {
            path: PathBuf::from("t.csv"),
            features: features.iter().map(|&c| c.to_owned()).collect(),
            ts_ns: (0..rows as i64).collect(),
            values: values.to_vec(),
            labels: None,
        }
    }

    #[test]
    fn detrending_subtracts_the_mean_of_the_rows_before() {
        // Columns a = 1, 2, 3, 10, 10 and b = 5 throughout; trend 2.
        let t = table(&["a", "b"], &[1.0, 5.0, 2.0, 5.0, 3.0, 5.0, 10.0, 5.0, 10.0, 5.0]);
        let d = derive_features(&t, &[true, true], 2);
        assert_eq!(d.features, ["detrend(a)", "detrend(b)"]);
        // Row 0 has nothing before it; row 1: 2 - 1; row 2: 3 - (1+2)/2; row 3: 10 - (2+3)/2;
        // row 4: 10 - (3+10)/2.
        assert_eq!(d.values, [0.0, 0.0, 1.0, 0.0, 1.5, 0.0, 7.5, 0.0, 3.5, 0.0]);
        let only_a = derive_features(&t, &[true, false], 2);
        assert_eq!(only_a.features, ["detrend(a)", "b"]);
        assert_eq!(only_a.row(3), [7.5, 5.0]);
        assert_eq!(derive_features(&t, &[false, false], 2), t);
    }

    #[test]
    fn slow_columns_are_told_from_noise_on_the_training_rows_only() {
        // a: a ramp (slow); b: alternating noise (fast); c: constant. Rows 6.. are not training
        // rows: b ramps there, which must not matter.
        let mut v = Vec::new();
        for i in 0..10 {
            let b = if i < 6 { [1.0, -1.0][i % 2] } else { 10.0 * i as f64 };
            v.extend([i as f64, b, 4.0]);
        }
        let t = table(&["a", "b", "c"], &v);
        assert_eq!(slowness(&t, 6, 0), f64::INFINITY);
        // b: variance 1; differences -2, 2, -2, 2, -2 (mean -0.4, variance 3.84, half 1.92):
        // 1 / 1.92.
        assert!((slowness(&t, 6, 1) - 1.0 / 1.92).abs() < 1e-12);
        assert_eq!(slowness(&t, 6, 2), 0.0);
        // a with row 1 at 1.5: 0, 1.5, 2, 3, 4, 5 (variance 2.70139), differences 1.5, 0.5, 1,
        // 1, 1 (variance 0.1, half 0.05): 54.03.
        let mut v2 = v.clone();
        v2[3] = 1.5;
        let t2 = table(&["a", "b", "c"], &v2);
        assert!((slowness(&t2, 6, 0) - 54.0278).abs() < 1e-3, "{}", slowness(&t2, 6, 0));
        let s = FileSettings { features: Features::DetrendSlow, slow: 3.0, ..Default::default() };
        assert_eq!(detrended_columns(&t2, 6, &s), [true, false, false]);
        let all = FileSettings { features: Features::Detrend, ..s.clone() };
        assert_eq!(detrended_columns(&t2, 6, &all), [true, true, true]);
        let raw = FileSettings { features: Features::Raw, ..s };
        assert_eq!(detrended_columns(&t2, 6, &raw), [false, false, false]);
    }

    #[test]
    fn early_stopping_keeps_the_best_epoch_on_held_out_windows() {
        // Noise: nothing to learn that carries over to the held-out windows, so the held-out loss
        // stops falling long before 200 epochs.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let values: Vec<f64> = (0..2 * 120).map(|_| rand::Rng::random::<f64>(&mut rng)).collect();
        let t = table(&["a", "b"], &values);
        let s =
            FileSettings { window: 5, hidden: 4, epochs: 200, patience: 3, ..Default::default() };
        let trained = Trained::fit(&t, 120, &s).unwrap();
        assert!(trained.epochs < 200 - 3, "stopped after {} epochs", trained.epochs);
        let off = Trained::fit(&t, 120, &FileSettings { patience: 0, epochs: 4, ..s.clone() });
        assert_eq!(off.unwrap().epochs, 4);
        // Too few rows to hold out a window that does not overlap the training windows.
        let tiny = FileSettings { holdout: 0.99, ..s };
        assert!(Trained::fit(&t, 120, &tiny).is_err());
    }

    #[test]
    fn directories_list_in_natural_order() {
        let mut v = vec![PathBuf::from("d/10.csv"), PathBuf::from("d/2.csv"), "d/a.csv".into()];
        v.sort_by_key(|p| natural_key(p));
        assert_eq!(v, [PathBuf::from("d/2.csv"), "d/10.csv".into(), "d/a.csv".into()]);
    }
}
