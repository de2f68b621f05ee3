//! The LSTM autoencoder engine: a small, purpose-built implementation of one model — forward,
//! backpropagation through time and Adam — on matrixmultiply's sgemm, with weights that load
//! into (and from) the equivalent PyTorch module by name.
//!
//! ```text
//! x [B,T,F] → encoder LSTM → h_T [B,H] → bottleneck Linear [B,Z] (optional)
//!           → repeated T times → decoder LSTM [B,T,H] → output Linear → x̂ [B,T,F]
//! ```
//!
//! | module | what it holds |
//! | --- | --- |
//! | [`spec`] | [`ModelSpec`]: `features`, `hidden`, `bottleneck` (0 = none), `window` |
//! | [`params`] | [`Params`]: the weights by PyTorch `state_dict` name, seeded init |
//! | [`autoencoder`] | [`Autoencoder`]: loss, gradients, `train_step`, `reconstruct`, `window_errors` |
//! | `sequence` | one LSTM layer over a sequence: one GEMM for all input projections, BPTT |
//! | `cell` | one LSTM step on the fused `[i|f|g|o]` gate matrix, forward and backward |
//! | `fused` | the inference step as one SIMD kernel: recurrent GEMM, input projection and cell |
//! | `linear` | the dense layers (bottleneck, output) |
//! | [`activation`] | sigmoid and tanh, exact or a vectorized rational approximation |
//! | [`optimizer`] | [`Adam`] as `torch.optim.Adam`, optional gradient-norm clipping |
//! | `parallel` | batch sharding across threads, deterministic for a thread count |
//! | [`checkpoint`] | safetensors save and load (`load_state_dict(..., strict=True)` works) |
//! | [`bench`] | training and inference throughput ([`bench::bench_train`]) |
//! | [`onnx`] | ONNX export of the same model |
//!
//! ```no_run
//! use sentio_model::{Adam, Autoencoder, ModelSpec};
//! # fn main() -> Result<(), sentio_model::ModelError> {
//! let spec = ModelSpec { features: 4, hidden: 64, bottleneck: 0, window: 64 };
//! let mut model = Autoencoder::new(spec, 7)?.with_threads(2);
//! let mut adam = Adam::new(1e-3);
//! let batch = vec![0.0f32; 32 * spec.window_len()]; // 32 windows, [B, T, F] row-major
//! let loss = model.train_step(&batch, &mut adam)?;
//! let errors = model.window_errors(&batch)?; // per window, and per window and feature
//! model.save_safetensors(std::path::Path::new("model.safetensors"))?;
//! # let _ = (loss, errors);
//! # Ok(())
//! # }
//! ```

pub mod activation;
pub mod autoencoder;
pub mod bench;
mod cell;
pub mod checkpoint;
mod error;
mod fused;
mod gemm;
mod linear;
pub mod onnx;
pub mod optimizer;
mod parallel;
pub mod params;
mod sequence;
pub mod spec;

pub use activation::Activation;
pub use autoencoder::{Autoencoder, WindowErrors};
pub use bench::{BenchConfig, BenchResult, bench_train};
pub use error::ModelError;
pub use optimizer::{Adam, AdamConfig};
pub use params::Params;
pub use spec::ModelSpec;
