//! The LSTM autoencoder: forward, MSE loss, backward to every weight, and the inference helpers.
//!
//! ```text
//! x [B, T, F] ──encoder LSTM──► h₍T−1₎ [B, H] ──bottleneck (linear, optional)──► code [B, Z]
//!   code repeated over T steps ──decoder LSTM──► y [B, T, H] ──output linear──► x̂ [B, T, F]
//! L = mean over B·T·F of (x̂ − x)²
//! ```
//!
//! Backward runs the same chain in reverse: `∂L/∂x̂ = 2(x̂ − x)/(B·T·F)`; the output layer gives
//! `∂L/∂y` at every step; the decoder's BPTT gives `∂L/∂code` (its input is the same code at
//! every step, so the step gradients add up); the bottleneck gives `∂L/∂h₍T−1₎`; the encoder's
//! BPTT starts from that last step alone. Each layer's math is in its own file (`sequence.rs`,
//! `cell.rs`, `linear.rs`).
//!
//! A batch is split into shards, one per thread (`parallel.rs`); a shard is forward and backward
//! over its windows with its own [`Workspace`] and gradient buffer, scaled by the whole batch's
//! size so the shard gradients simply add up.

use std::ops::Range;
use std::path::Path;

use crate::activation::Activation;
use crate::linear;
use crate::optimizer::Adam;
use crate::parallel;
use crate::params::Params;
use crate::sequence::{self, InferState, Input, OutputGrad, Tape};

use pulp::Arch;

/// Windows per inference pass: a shard is scored this many windows at a time, so that one
/// step's buffers (`[C, 4H]` gates, `[C, H]` states) and `W_hh` stay in the core's L2 cache.
const INFER_CHUNK: usize = 128;
use crate::{ModelError, ModelSpec, checkpoint};

/// The model: its spec, weights and run settings.
#[derive(Clone, Debug)]
pub struct Autoencoder {
    spec: ModelSpec,
    params: Params,
    threads: usize,
    activation: Activation,
    /// Per-shard scratch and gradients kept between training steps.
    scratch: Vec<Shard>,
    /// Workspaces kept between inference calls (which take `&self`).
    pool: Pool,
}

/// Inference workspaces for reuse. A call that finds the pool busy (another thread is
/// inferring with the same model) allocates its own; a clone starts empty.
#[derive(Debug, Default)]
struct Pool(std::sync::Mutex<Vec<Workspace>>);

impl Clone for Pool {
    fn clone(&self) -> Self {
        Pool::default()
    }
}

impl Pool {
    fn take(&self, n: usize) -> Vec<Workspace> {
        let mut works =
            self.0.try_lock().map(|mut pool| std::mem::take(&mut *pool)).unwrap_or_default();
        works.resize_with(n, Workspace::default);
        works
    }

    fn give_back(&self, works: Vec<Workspace>) {
        if let Ok(mut pool) = self.0.try_lock() {
            *pool = works;
        }
    }
}

/// Squared reconstruction errors of each window of a batch.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowErrors {
    /// `[B]`: the mean over `T·F` of `(x̂ − x)²`.
    pub per_window: Vec<f32>,
    /// `[B, F]`: the mean over `T` of `(x̂ − x)²`, feature by feature.
    pub per_feature: Vec<f32>,
}

#[derive(Clone, Debug)]
struct Shard {
    work: Workspace,
    grads: Params,
}

/// One shard's buffers: the layers' tapes and the activations between them, reused.
#[derive(Clone, Debug, Default)]
pub(crate) struct Workspace {
    batch: usize,
    /// `[T, B, F]`: the input, time-major.
    x: Vec<f32>,
    encoder: Tape,
    /// `[B, Z]`, with a bottleneck.
    code: Vec<f32>,
    decoder: Tape,
    /// Inference: the two layers' one-step state.
    encoder_infer: InferState,
    decoder_infer: InferState,
    /// `[T, B, F]`: the reconstruction, then `∂L/∂x̂`.
    out: Vec<f32>,
    /// `[T, B, H]`: `∂L/∂y`.
    d_hidden: Vec<f32>,
    /// `[B, Z or H]`.
    d_code: Vec<f32>,
    /// `[B, H]`: `∂L/∂h₍T−1₎` through the bottleneck.
    d_last: Vec<f32>,
    bias: Vec<f32>,
}

impl Autoencoder {
    /// A model with PyTorch-style initial weights drawn from `seed` (see [`Params::init`]).
    pub fn new(spec: ModelSpec, seed: u64) -> Result<Self, ModelError> {
        spec.validate()?;
        Ok(Autoencoder::assemble(spec, Params::init(&spec, seed)))
    }

    /// A model with the given weights, checked against `spec`.
    pub fn from_params(spec: ModelSpec, params: Params) -> Result<Self, ModelError> {
        spec.validate()?;
        let params = Params::from_lookup(&spec, |name| params.tensor(name))?;
        Ok(Autoencoder::assemble(spec, params))
    }

    fn assemble(spec: ModelSpec, params: Params) -> Self {
        Autoencoder {
            spec,
            params,
            threads: 1,
            activation: Activation::default(),
            scratch: Vec::new(),
            pool: Pool::default(),
        }
    }

    /// Loads weights saved by [`Autoencoder::save_safetensors`] or by PyTorch
    /// (`safetensors.torch.save_file(model.state_dict(), path)`).
    pub fn load_safetensors(path: &Path, spec: ModelSpec) -> Result<Self, ModelError> {
        spec.validate()?;
        let params = checkpoint::load(path, &spec)?;
        Ok(Autoencoder::assemble(spec, params))
    }

    /// Saves the weights under their PyTorch names, with the spec as metadata.
    pub fn save_safetensors(&self, path: &Path) -> Result<(), ModelError> {
        checkpoint::save(path, &self.spec, &self.params)
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The weights, to change in place (tests, custom optimizers).
    pub fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }

    /// How many threads a batch is split across.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Splits each batch across `threads` threads (at least 1). The result is reproducible for
    /// a fixed thread count.
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
    }

    pub fn with_threads(mut self, threads: usize) -> Self {
        self.set_threads(threads);
        self
    }

    pub fn activation(&self) -> Activation {
        self.activation
    }

    pub fn set_activation(&mut self, activation: Activation) {
        self.activation = activation;
    }

    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// The number of windows in `batch` (row-major `[B, T, F]`).
    pub fn windows_in(&self, batch: &[f32]) -> Result<usize, ModelError> {
        let window_len = self.spec.window_len();
        if batch.is_empty() || !batch.len().is_multiple_of(window_len) {
            return Err(ModelError::BatchShape { len: batch.len(), window_len });
        }
        Ok(batch.len() / window_len)
    }

    /// The MSE of the reconstruction of `batch`, without gradients.
    pub fn loss(&self, batch: &[f32]) -> Result<f32, ModelError> {
        let b = self.windows_in(batch)?;
        let sums = self.run_forward(batch, b, |_, _| ());
        let total: f64 = sums.iter().map(|(s, ())| s).sum();
        Ok((total / (b * self.spec.window_len()) as f64) as f32)
    }

    /// Writes the reconstruction of `batch` into `out` (same layout and length).
    pub fn reconstruct(&self, batch: &[f32], out: &mut [f32]) -> Result<(), ModelError> {
        let b = self.windows_in(batch)?;
        if out.len() != batch.len() {
            return Err(ModelError::OutputShape { len: out.len(), expected: batch.len() });
        }
        let (t, f) = (self.spec.window, self.spec.features);
        let parts = self.run_forward(batch, b, |work, shard| {
            let mut rec = vec![0.0; shard.len() * t * f];
            for_each_cell(work, t, f, |bi, ti, xhat, _| {
                rec[(bi * t + ti) * f..][..f].copy_from_slice(xhat);
            });
            rec
        });
        let mut at = 0;
        for (_, rec) in parts {
            out[at..at + rec.len()].copy_from_slice(&rec);
            at += rec.len();
        }
        Ok(())
    }

    /// Each window's mean squared error, overall and per feature.
    pub fn window_errors(&self, batch: &[f32]) -> Result<WindowErrors, ModelError> {
        let b = self.windows_in(batch)?;
        let (t, f) = (self.spec.window, self.spec.features);
        let parts = self.run_forward(batch, b, |work, shard| {
            let mut per_feature = vec![0.0f32; shard.len() * f];
            for_each_cell(work, t, f, |bi, _, xhat, x| {
                let acc = &mut per_feature[bi * f..][..f];
                for ((a, p), q) in acc.iter_mut().zip(xhat).zip(x) {
                    *a += (p - q) * (p - q);
                }
            });
            per_feature
        });
        let mut errors = WindowErrors {
            per_window: Vec::with_capacity(b),
            per_feature: Vec::with_capacity(b * f),
        };
        for (_, per_feature) in parts {
            for window in per_feature.chunks_exact(f) {
                errors.per_window.push(window.iter().sum::<f32>() / (t * f) as f32);
                errors.per_feature.extend(window.iter().map(|e| e / t as f32));
            }
        }
        Ok(errors)
    }

    /// The loss of `batch` and the gradient of every weight (same names and shapes as
    /// [`Autoencoder::params`]).
    pub fn loss_and_gradients(&mut self, batch: &[f32]) -> Result<(f32, Params), ModelError> {
        let loss = self.accumulate_gradients(batch)?;
        let grads = self
            .scratch
            .first()
            .map(|s| s.grads.clone())
            .unwrap_or_else(|| Params::zeros(&self.spec));
        Ok((loss, grads))
    }

    /// One training step on `batch`: forward, backward, an Adam update. Returns the loss before
    /// the update.
    pub fn train_step(&mut self, batch: &[f32], adam: &mut Adam) -> Result<f32, ModelError> {
        let loss = self.accumulate_gradients(batch)?;
        if let Some(first) = self.scratch.first_mut() {
            adam.step(&mut self.params, &mut first.grads);
        }
        Ok(loss)
    }

    /// Forward and backward over every shard; the summed gradients end in `scratch[0].grads`.
    fn accumulate_gradients(&mut self, batch: &[f32]) -> Result<f32, ModelError> {
        let b = self.windows_in(batch)?;
        let shards = parallel::shards(b, self.threads);
        let spec = self.spec;
        if self.scratch.len() < shards.len() {
            self.scratch.resize_with(shards.len(), || Shard {
                work: Workspace::default(),
                grads: Params::zeros(&spec),
            });
        }
        let n = (b * spec.window_len()) as f64;
        let scale = (2.0 / n) as f32;
        let (params, act, window_len) = (&self.params, self.activation, spec.window_len());
        let arch = Arch::new();
        let sums = parallel::run(&mut self.scratch[..shards.len()], &shards, |shard, range| {
            let windows = &batch[range.start * window_len..range.end * window_len];
            let sum = forward(params, &spec, arch, act, windows, &mut shard.work);
            shard.grads.fill_zero();
            backward(params, &spec, arch, scale, &mut shard.work, &mut shard.grads);
            sum
        });
        if let Some((first, rest)) = self.scratch[..shards.len()].split_first_mut() {
            for other in rest {
                first.grads.add_assign(&other.grads);
            }
        }
        Ok((sums.iter().sum::<f64>() / n) as f32)
    }

    /// Inference over every shard, [`INFER_CHUNK`] windows at a time; `then` reads the workspace
    /// after each chunk (its windows' range within the batch). Results come in batch order.
    fn run_forward<R, F>(&self, batch: &[f32], b: usize, then: F) -> Vec<(f64, R)>
    where
        R: Send,
        F: Fn(&Workspace, Range<usize>) -> R + Sync,
    {
        let shards = parallel::shards(b, self.threads);
        let mut works = self.pool.take(shards.len());
        let window_len = self.spec.window_len();
        let arch = Arch::new();
        let results = parallel::run(&mut works, &shards, |work, range| {
            let mut parts = Vec::with_capacity(range.len().div_ceil(INFER_CHUNK));
            for start in range.clone().step_by(INFER_CHUNK) {
                let chunk = start..(start + INFER_CHUNK).min(range.end);
                let windows = &batch[chunk.start * window_len..chunk.end * window_len];
                let sum = infer(&self.params, &self.spec, arch, self.activation, windows, work);
                parts.push((sum, then(work, chunk)));
            }
            parts
        });
        self.pool.give_back(works);
        results.into_iter().flatten().collect()
    }
}

/// Calls `visit(window, step, x̂[F], x[F])` for every cell of a forward-run workspace.
fn for_each_cell<V: FnMut(usize, usize, &[f32], &[f32])>(
    work: &Workspace,
    t: usize,
    f: usize,
    mut visit: V,
) {
    let b = work.batch;
    for ti in 0..t {
        for bi in 0..b {
            let at = (ti * b + bi) * f;
            visit(bi, ti, &work.out[at..at + f], &work.x[at..at + f]);
        }
    }
}

/// Forward over `windows` (`[B, T, F]`), leaving the activations in `work`. Returns the sum of
/// squared errors, accumulated in f64.
pub(crate) fn forward(
    p: &Params,
    spec: &ModelSpec,
    arch: Arch,
    act: Activation,
    windows: &[f32],
    work: &mut Workspace,
) -> f64 {
    let (t, f, h) = (spec.window, spec.features, spec.hidden);
    let b = time_major(spec, windows, work);
    sequence::forward(&p.encoder, arch, act, Input::Sequence(&work.x), t, b, &mut work.encoder);
    let code = encode(p, spec, work.encoder.last(), b, &mut work.code);
    sequence::forward(&p.decoder, arch, act, Input::Repeated(code), t, b, &mut work.decoder);
    work.out.resize(t * b * f, 0.0);
    linear::forward(&p.output, work.decoder.outputs(), t * b, &mut work.out);
    debug_assert_eq!(work.decoder.outputs().len(), t * b * h);
    squared_error(work)
}

/// `Σ (x̂ − x)²` over the workspace's reconstruction, in f64.
fn squared_error(work: &Workspace) -> f64 {
    work.out.iter().zip(&work.x).map(|(y, x)| f64::from(y - x) * f64::from(y - x)).sum()
}

/// The code the decoder reads: the encoder's last output `[B, H]` through the bottleneck into
/// `buffer` (`[B, Z]`), or that output itself without one.
fn encode<'a>(
    p: &Params,
    spec: &ModelSpec,
    last: &'a [f32],
    b: usize,
    buffer: &'a mut Vec<f32>,
) -> &'a [f32] {
    match &p.bottleneck {
        Some(bottleneck) => {
            buffer.resize(b * spec.bottleneck, 0.0);
            linear::forward(bottleneck, last, b, buffer);
            buffer
        }
        None => last,
    }
}

/// Copies `windows` (`[B, T, F]`) into `work.x` time-major (`[T, B, F]`) and returns `B`.
fn time_major(spec: &ModelSpec, windows: &[f32], work: &mut Workspace) -> usize {
    let (t, f) = (spec.window, spec.features);
    let b = windows.len() / (t * f);
    work.batch = b;
    work.x.resize(t * b * f, 0.0);
    for bi in 0..b {
        for ti in 0..t {
            work.x[(ti * b + bi) * f..][..f].copy_from_slice(&windows[(bi * t + ti) * f..][..f]);
        }
    }
    b
}

/// Forward without recording anything for backward: the encoder keeps only its state, and the
/// decoder's output layer runs step by step. Leaves `x` and the reconstruction `out`
/// (`[T, B, F]`) in `work`; returns the sum of squared errors, accumulated in f64.
fn infer(
    p: &Params,
    spec: &ModelSpec,
    arch: Arch,
    act: Activation,
    windows: &[f32],
    work: &mut Workspace,
) -> f64 {
    let (t, f) = (spec.window, spec.features);
    let b = time_major(spec, windows, work);
    let x = Input::Sequence(&work.x);
    sequence::infer(&p.encoder, arch, act, x, t, b, &mut work.encoder_infer, |_, _| ());
    let code = encode(p, spec, work.encoder_infer.last(), b, &mut work.code);
    work.out.resize(t * b * f, 0.0);
    let out = &mut work.out;
    sequence::infer(
        &p.decoder,
        arch,
        act,
        Input::Repeated(code),
        t,
        b,
        &mut work.decoder_infer,
        |s, h| linear::forward(&p.output, h, b, &mut out[s * b * f..(s + 1) * b * f]),
    );
    squared_error(work)
}

/// Backward after [`forward`]: adds every weight's gradient into `g`, with
/// `∂L/∂x̂ = scale·(x̂ − x)`
/// (`scale = 2 / (B·T·F)` of the whole batch).
pub(crate) fn backward(
    p: &Params,
    spec: &ModelSpec,
    arch: Arch,
    scale: f32,
    work: &mut Workspace,
    g: &mut Params,
) {
    let (t, h) = (spec.window, spec.hidden);
    let b = work.batch;
    for (y, x) in work.out.iter_mut().zip(&work.x) {
        *y = scale * (*y - x);
    }
    work.d_hidden.resize(t * b * h, 0.0);
    linear::backward(
        &p.output,
        work.decoder.outputs(),
        &work.out,
        t * b,
        &mut g.output,
        Some(&mut work.d_hidden),
        &mut work.bias,
    );
    work.d_code.resize(b * spec.code_width(), 0.0);
    let code: &[f32] = if p.bottleneck.is_some() { &work.code } else { work.encoder.last() };
    sequence::backward(
        &p.decoder,
        arch,
        Input::Repeated(code),
        OutputGrad::All(&work.d_hidden),
        &mut work.decoder,
        &mut g.decoder,
        Some(&mut work.d_code),
    );
    let d_last: &[f32] = match (&p.bottleneck, &mut g.bottleneck) {
        (Some(bottleneck), Some(g_bottleneck)) => {
            work.d_last.resize(b * h, 0.0);
            linear::backward(
                bottleneck,
                work.encoder.last(),
                &work.d_code,
                b,
                g_bottleneck,
                Some(&mut work.d_last),
                &mut work.bias,
            );
            &work.d_last
        }
        _ => &work.d_code,
    };
    sequence::backward(
        &p.encoder,
        arch,
        Input::Sequence(&work.x),
        OutputGrad::Last(d_last),
        &mut work.encoder,
        &mut g.encoder,
        None,
    );
}
