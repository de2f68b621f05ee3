//! The model's weights as named tensors in PyTorch's `state_dict` layout, and their seeded
//! initialization.
//!
//! | name | shape |
//! | --- | --- |
//! | `encoder.weight_ih_l0` | `[4H, F]` |
//! | `encoder.weight_hh_l0` | `[4H, H]` |
//! | `encoder.bias_ih_l0`, `encoder.bias_hh_l0` | `[4H]` |
//! | `bottleneck.weight` (when `Z > 0`) | `[Z, H]` |
//! | `bottleneck.bias` (when `Z > 0`) | `[Z]` |
//! | `decoder.weight_ih_l0` | `[4H, Z or H]` |
//! | `decoder.weight_hh_l0` | `[4H, H]` |
//! | `decoder.bias_ih_l0`, `decoder.bias_hh_l0` | `[4H]` |
//! | `output.weight` | `[F, H]` |
//! | `output.bias` | `[F]` |
//!
//! Gate rows are stacked `[i | f | g | o]`; every tensor is row-major `f32`. Initialization
//! follows PyTorch's distributions (every LSTM tensor `U(−1/√H, 1/√H)`, a Linear's weight and
//! bias `U(−1/√in, 1/√in)`, and both Linears here read `H` inputs), drawn in the table's order from ChaCha8 seeded with the seed, so a
//! seed gives the same weights bit for bit on every machine. (The draws are not PyTorch's own:
//! its generator is a different one.)

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{ModelError, ModelSpec};

/// One LSTM layer's weights (`nn.LSTM` with one layer, `batch_first`).
#[derive(Clone, Debug, PartialEq)]
pub struct LstmParams {
    /// Input width.
    pub input: usize,
    /// Hidden width `H`.
    pub hidden: usize,
    /// `[4H, input]`.
    pub weight_ih: Vec<f32>,
    /// `[4H, H]`.
    pub weight_hh: Vec<f32>,
    /// `[4H]`.
    pub bias_ih: Vec<f32>,
    /// `[4H]`.
    pub bias_hh: Vec<f32>,
}

/// One `nn.Linear`'s weights.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearParams {
    /// Input width.
    pub input: usize,
    /// Output width.
    pub output: usize,
    /// `[output, input]`.
    pub weight: Vec<f32>,
    /// `[output]`.
    pub bias: Vec<f32>,
}

/// Every weight of the autoencoder. Gradients and Adam's moments use the same type.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    pub encoder: LstmParams,
    pub bottleneck: Option<LinearParams>,
    pub decoder: LstmParams,
    pub output: LinearParams,
}

/// A borrowed tensor: its PyTorch name, shape and data.
#[derive(Clone, Copy, Debug)]
pub struct TensorRef<'a> {
    pub name: &'static str,
    pub shape: [usize; 2],
    /// 1 for a bias (shape `[shape[0]]`), 2 for a weight.
    pub rank: usize,
    pub data: &'a [f32],
}

impl TensorRef<'_> {
    /// The shape as PyTorch reports it.
    pub fn shape(&self) -> Vec<usize> {
        self.shape[..self.rank].to_vec()
    }
}

impl LstmParams {
    fn zeros(input: usize, hidden: usize) -> Self {
        LstmParams {
            input,
            hidden,
            weight_ih: vec![0.0; 4 * hidden * input],
            weight_hh: vec![0.0; 4 * hidden * hidden],
            bias_ih: vec![0.0; 4 * hidden],
            bias_hh: vec![0.0; 4 * hidden],
        }
    }
}

impl LinearParams {
    fn zeros(input: usize, output: usize) -> Self {
        LinearParams { input, output, weight: vec![0.0; output * input], bias: vec![0.0; output] }
    }
}

impl Params {
    /// All zeros, shaped for `spec`.
    pub fn zeros(spec: &ModelSpec) -> Self {
        let (f, h, z) = (spec.features, spec.hidden, spec.bottleneck);
        Params {
            encoder: LstmParams::zeros(f, h),
            bottleneck: (z > 0).then(|| LinearParams::zeros(h, z)),
            decoder: LstmParams::zeros(spec.code_width(), h),
            output: LinearParams::zeros(h, f),
        }
    }

    /// PyTorch's initialization distributions, drawn reproducibly from `seed` (module docs).
    pub fn init(spec: &ModelSpec, seed: u64) -> Self {
        let mut params = Params::zeros(spec);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // Every tensor's fan-in is H: the LSTMs use 1/√H, and both Linears read H inputs.
        let bound = 1.0 / (spec.hidden as f32).sqrt();
        for (_, data) in params.tensors_mut() {
            for x in data.iter_mut() {
                // 24 random bits → a uniform float in [0, 1), exactly representable.
                let unit = (rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32;
                *x = (2.0 * unit - 1.0) * bound;
            }
        }
        params
    }

    /// Every tensor in `state_dict` order.
    pub fn tensors(&self) -> Vec<TensorRef<'_>> {
        let mut out = Vec::with_capacity(12);
        lstm_tensors(&mut out, "encoder", &self.encoder);
        if let Some(b) = &self.bottleneck {
            linear_tensors(&mut out, "bottleneck", b);
        }
        lstm_tensors(&mut out, "decoder", &self.decoder);
        linear_tensors(&mut out, "output", &self.output);
        out
    }

    /// Every tensor's name and data, mutably, in `state_dict` order.
    pub fn tensors_mut(&mut self) -> Vec<(&'static str, &mut [f32])> {
        let mut out: Vec<(&'static str, &mut [f32])> = Vec::with_capacity(12);
        let e = &mut self.encoder;
        out.push(("encoder.weight_ih_l0", &mut e.weight_ih));
        out.push(("encoder.weight_hh_l0", &mut e.weight_hh));
        out.push(("encoder.bias_ih_l0", &mut e.bias_ih));
        out.push(("encoder.bias_hh_l0", &mut e.bias_hh));
        if let Some(b) = &mut self.bottleneck {
            out.push(("bottleneck.weight", &mut b.weight));
            out.push(("bottleneck.bias", &mut b.bias));
        }
        let d = &mut self.decoder;
        out.push(("decoder.weight_ih_l0", &mut d.weight_ih));
        out.push(("decoder.weight_hh_l0", &mut d.weight_hh));
        out.push(("decoder.bias_ih_l0", &mut d.bias_ih));
        out.push(("decoder.bias_hh_l0", &mut d.bias_hh));
        out.push(("output.weight", &mut self.output.weight));
        out.push(("output.bias", &mut self.output.bias));
        out
    }

    /// The tensor called `name`, if the model has it.
    pub fn get(&self, name: &str) -> Option<TensorRef<'_>> {
        self.tensors().into_iter().find(|t| t.name == name)
    }

    /// The tensor called `name` as `(shape, data)`: the form `onnx::export_autoencoder` asks for.
    pub fn tensor(&self, name: &str) -> Option<(Vec<usize>, Vec<f32>)> {
        self.get(name).map(|t| (t.shape(), t.data.to_vec()))
    }

    /// Builds the weights for `spec` from a lookup by name, checking that every tensor is there
    /// with its shape. Tensors the lookup has beyond these are the caller's to reject.
    pub fn from_lookup<L>(spec: &ModelSpec, mut lookup: L) -> Result<Self, ModelError>
    where
        L: FnMut(&str) -> Option<(Vec<usize>, Vec<f32>)>,
    {
        let mut params = Params::zeros(spec);
        let shapes: Vec<Vec<usize>> = params.tensors().iter().map(TensorRef::shape).collect();
        for ((name, data), shape) in params.tensors_mut().into_iter().zip(shapes) {
            let (found_shape, found) =
                lookup(name).ok_or(ModelError::MissingTensor { name: name.to_owned() })?;
            if found_shape != shape || found.len() != data.len() {
                return Err(ModelError::TensorShape {
                    name: name.to_owned(),
                    expected: shape,
                    found: found_shape,
                });
            }
            data.copy_from_slice(&found);
        }
        Ok(params)
    }

    /// The number of scalars.
    pub fn len(&self) -> usize {
        self.tensors().iter().map(|t| t.data.len()).sum()
    }

    /// Whether there are no scalars (never, for a valid spec).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets every scalar to zero.
    pub fn fill_zero(&mut self) {
        for (_, data) in self.tensors_mut() {
            data.fill(0.0);
        }
    }

    /// `self += other`, tensor by tensor (the shapes must match).
    pub fn add_assign(&mut self, other: &Params) {
        let theirs = other.tensors();
        for ((_, mine), theirs) in self.tensors_mut().into_iter().zip(theirs) {
            mine.iter_mut().zip(theirs.data).for_each(|(a, b)| *a += b);
        }
    }

    /// The Euclidean norm of all scalars together, accumulated in f64.
    pub fn norm(&self) -> f64 {
        self.tensors()
            .iter()
            .flat_map(|t| t.data.iter())
            .map(|&x| f64::from(x) * f64::from(x))
            .sum::<f64>()
            .sqrt()
    }
}

fn lstm_tensors<'a>(out: &mut Vec<TensorRef<'a>>, layer: &'static str, p: &'a LstmParams) {
    let (names, h4) = match layer {
        "encoder" => (
            [
                "encoder.weight_ih_l0",
                "encoder.weight_hh_l0",
                "encoder.bias_ih_l0",
                "encoder.bias_hh_l0",
            ],
            4 * p.hidden,
        ),
        _ => (
            [
                "decoder.weight_ih_l0",
                "decoder.weight_hh_l0",
                "decoder.bias_ih_l0",
                "decoder.bias_hh_l0",
            ],
            4 * p.hidden,
        ),
    };
    out.push(TensorRef { name: names[0], shape: [h4, p.input], rank: 2, data: &p.weight_ih });
    out.push(TensorRef { name: names[1], shape: [h4, p.hidden], rank: 2, data: &p.weight_hh });
    out.push(TensorRef { name: names[2], shape: [h4, 0], rank: 1, data: &p.bias_ih });
    out.push(TensorRef { name: names[3], shape: [h4, 0], rank: 1, data: &p.bias_hh });
}

fn linear_tensors<'a>(out: &mut Vec<TensorRef<'a>>, layer: &'static str, p: &'a LinearParams) {
    let names = match layer {
        "bottleneck" => ["bottleneck.weight", "bottleneck.bias"],
        _ => ["output.weight", "output.bias"],
    };
    out.push(TensorRef { name: names[0], shape: [p.output, p.input], rank: 2, data: &p.weight });
    out.push(TensorRef { name: names[1], shape: [p.output, 0], rank: 1, data: &p.bias });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(bottleneck: usize) -> ModelSpec {
        ModelSpec { features: 4, hidden: 8, bottleneck, window: 5 }
    }

    #[test]
    fn names_and_shapes_follow_pytorch() {
        let mut p = Params::zeros(&spec(3));
        let got: Vec<(&str, Vec<usize>)> =
            p.tensors().iter().map(|t| (t.name, t.shape())).collect();
        assert_eq!(
            got,
            vec![
                ("encoder.weight_ih_l0", vec![32, 4]),
                ("encoder.weight_hh_l0", vec![32, 8]),
                ("encoder.bias_ih_l0", vec![32]),
                ("encoder.bias_hh_l0", vec![32]),
                ("bottleneck.weight", vec![3, 8]),
                ("bottleneck.bias", vec![3]),
                ("decoder.weight_ih_l0", vec![32, 3]),
                ("decoder.weight_hh_l0", vec![32, 8]),
                ("decoder.bias_ih_l0", vec![32]),
                ("decoder.bias_hh_l0", vec![32]),
                ("output.weight", vec![4, 8]),
                ("output.bias", vec![4]),
            ]
        );
        let names: Vec<&str> = p.tensors_mut().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, got.iter().map(|(n, _)| *n).collect::<Vec<_>>());
        let p = Params::zeros(&spec(0));
        assert!(p.get("bottleneck.weight").is_none());
        assert_eq!(p.get("decoder.weight_ih_l0").map(|t| t.shape()), Some(vec![32, 8]));
    }

    #[test]
    fn init_is_seeded_and_bounded() {
        let a = Params::init(&spec(3), 7);
        assert_eq!(a, Params::init(&spec(3), 7));
        assert_ne!(a, Params::init(&spec(3), 8));
        let bound = 1.0 / 8f32.sqrt();
        for t in a.tensors() {
            assert!(t.data.iter().all(|x| x.abs() <= bound), "{}", t.name);
            assert!(t.data.iter().any(|&x| x != 0.0), "{}", t.name);
        }
    }
}
