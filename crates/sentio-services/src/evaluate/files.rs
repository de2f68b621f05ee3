//! The CSV detection path: per labelled file, train an LSTM autoencoder on its leading normal
//! part (or on a separate anomaly-free file), score the rest, and compare with the labels.
//!
//! For each file, with the same [`FileSettings`] for every file:
//!
//! 1. The training part is the first `train_rows` rows (SKAB's protocol: 400), or all of the
//!    `--train-file`. Each feature is standardized with the training part's mean and standard
//!    deviation only.
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

/// The detection settings, the same for every file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileSettings {
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
            train_rows: 400,
            window: 10,
            hidden: 16,
            bottleneck: 0,
            epochs: 30,
            batch_size: 32,
            learning_rate: 0.005,
            seed: 7,
            point_score: PointScore::WindowEnd,
            smooth: 30,
            quantile: 0.99,
            factor: 1.5,
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
    model: Autoencoder,
    scaler: Standardizer,
    threshold: f64,
    /// Mean smoothed training score: where drift tracking starts.
    baseline: f64,
    train_rows: usize,
    train_loss: f64,
}

/// Windows per forward pass when scoring.
const SCORE_CHUNK: usize = 256;

impl Trained {
    fn fit(table: &Table, rows: usize, s: &FileSettings) -> anyhow::Result<Trained> {
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
        let mut order: Vec<usize> = (0..=rows - t).collect();
        let mut batch = Vec::with_capacity(s.batch_size * t * f);
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
        }
        let (train_scores, train_loss) = point_scores(&model, train, f, s)?;
        let train_scores = smoothed(&train_scores, s.smooth);
        let baseline = train_scores.iter().sum::<f64>() / train_scores.len().max(1) as f64;
        // The training part is normal: the baseline follows every point of it.
        let relative = Drift::new(baseline, s.drift).relative(&train_scores, f64::INFINITY).0;
        let threshold = percentile(&relative, s.quantile * 100.0) * s.factor;
        Ok(Trained { model, scaler, threshold, baseline, train_rows: rows, train_loss })
    }

    /// Scores `table` and evaluates its rows from `from` on.
    fn evaluate(&self, table: &Table, from: usize, s: &FileSettings) -> anyhow::Result<FileReport> {
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

    #[test]
    fn directories_list_in_natural_order() {
        let mut v = vec![PathBuf::from("d/10.csv"), PathBuf::from("d/2.csv"), "d/a.csv".into()];
        v.sort_by_key(|p| natural_key(p));
        assert_eq!(v, [PathBuf::from("d/2.csv"), "d/10.csv".into(), "d/a.csv".into()]);
    }
}
