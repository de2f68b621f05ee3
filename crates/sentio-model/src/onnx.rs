//! ONNX export of the LSTM autoencoder, written by hand: no protobuf or ONNX crate.
//!
//! [`export_autoencoder`] takes the weights under their PyTorch `state_dict` names and layouts
//! and returns the bytes of an ONNX `ModelProto` (IR version [`IR_VERSION`], default-domain
//! opset [`OPSET`]) that computes the same function as the PyTorch reference:
//!
//! ```python
//! _, (h, _) = self.encoder(x)                        # x: [B, T, F], zero initial state
//! code = h[-1]                                       # [B, H]
//! if self.bottleneck is not None: code = self.bottleneck(code)
//! y, _ = self.decoder(code.unsqueeze(1).expand(-1, x.shape[1], -1))
//! return self.output(y)                              # [B, T, F]
//! ```
//!
//! # The graph
//!
//! Input [`INPUT_NAME`] is `float[batch, T, F]` (`batch` symbolic, `T` and `F` fixed); output
//! [`OUTPUT_NAME`] is `float[batch, T, F]`. ONNX's `LSTM` runs time-major (`layout = 0`,
//! `X: [T, B, in]`), the layout every runtime implements, so the graph transposes on the way in
//! and back on the way out:
//!
//! | node | computes | shape |
//! | --- | --- | --- |
//! | `Transpose` perm `[1, 0, 2]` | `x_tm` | `[T, B, F]` |
//! | `LSTM` (encoder) | only `Y_h` is kept | `[1, B, H]` |
//! | `Squeeze` axes `[0]` | `code` = `h[-1]` | `[B, H]` |
//! | `Gemm` `transB = 1` (only with a bottleneck) | `code · Wᵀ + b` | `[B, Z]` |
//! | `Unsqueeze` axes `[0]` | | `[1, B, Z]` |
//! | `Expand` to `[T, 1, 1]` | the code repeated at every step | `[T, B, Z]` |
//! | `LSTM` (decoder) | `Y` | `[T, 1, B, H]` |
//! | `Squeeze` axes `[1]` | drops `num_directions` | `[T, B, H]` |
//! | `MatMul` by `output.weightᵀ`, `Add` `output.bias` | the output layer | `[T, B, F]` |
//! | `Transpose` perm `[1, 0, 2]` | `reconstruction` | `[B, T, F]` |
//!
//! `T` is a constant of the exported model (the window the model was trained on), so the
//! `Expand` shape is an initializer; the batch dimension is never written down and follows the
//! input.
//!
//! # Gate order
//!
//! PyTorch stacks the four gate blocks of `weight_ih`, `weight_hh`, `bias_ih` and `bias_hh`
//! (each `H` rows) as **i, f, g, o**; ONNX stacks them as **i, o, f, c** (its `c` is PyTorch's
//! cell candidate `g`). The export moves whole row blocks, `onnx[k] = torch[ONNX_FROM_TORCH[k]]`,
//! and adds the `num_directions = 1` axis: `W: [1, 4H, in]`, `R: [1, 4H, H]`, and
//! `B: [1, 8H] = concat(bias_ih, bias_hh)`, each reordered. ONNX's default activations (sigmoid,
//! tanh, tanh), zero initial state and absent peepholes are PyTorch's LSTM exactly.
//!
//! The encoding is deterministic: the same spec and weights give the same bytes.

use std::fmt;

/// The ONNX IR version written into the model (ONNX 1.13 and later; onnxruntime 1.14+).
pub const IR_VERSION: u64 = 8;
/// The opset of the default (`ai.onnx`) domain the graph uses.
pub const OPSET: u64 = 17;
/// The model's `producer_name`.
pub const PRODUCER_NAME: &str = "sentio";
/// The name of the graph's input, `float[batch, T, F]`.
pub const INPUT_NAME: &str = "window";
/// The name of the graph's output, `float[batch, T, F]`.
pub const OUTPUT_NAME: &str = "reconstruction";
/// The symbolic name of the batch dimension of the input and the output.
pub const BATCH_DIM: &str = "batch";

/// The largest `features`, `hidden`, `bottleneck` or `window` the export accepts.
pub const MAX_SIZE: usize = 1 << 20;

/// For each ONNX gate block (i, o, f, c), the PyTorch gate block (i, f, g, o) it comes from.
const ONNX_FROM_TORCH: [usize; 4] = [0, 3, 1, 2];

/// The sizes of the model to export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnnxSpec {
    /// `F`: features per time step (input and output).
    pub features: usize,
    /// `H`: hidden size of both LSTMs.
    pub hidden: usize,
    /// `Z`: width of the bottleneck layer; 0 when the model has none.
    pub bottleneck: usize,
    /// `T`: time steps per window, fixed in the exported model.
    pub window: usize,
    /// Written as the model's `producer_version` (usually the crate version).
    pub producer_version: String,
}

impl OnnxSpec {
    /// The decoder's input width: `Z` with a bottleneck, `H` without.
    pub fn code_width(&self) -> usize {
        if self.bottleneck == 0 { self.hidden } else { self.bottleneck }
    }

    /// Every tensor the export reads, with the shape it must have, in PyTorch's names.
    pub fn expected_tensors(&self) -> Vec<(&'static str, Vec<usize>)> {
        let (f, h, z) = (self.features, self.hidden, self.bottleneck);
        let mut tensors = vec![
            ("encoder.weight_ih_l0", vec![4 * h, f]),
            ("encoder.weight_hh_l0", vec![4 * h, h]),
            ("encoder.bias_ih_l0", vec![4 * h]),
            ("encoder.bias_hh_l0", vec![4 * h]),
        ];
        if z != 0 {
            tensors.push(("bottleneck.weight", vec![z, h]));
            tensors.push(("bottleneck.bias", vec![z]));
        }
        tensors.extend([
            ("decoder.weight_ih_l0", vec![4 * h, self.code_width()]),
            ("decoder.weight_hh_l0", vec![4 * h, h]),
            ("decoder.bias_ih_l0", vec![4 * h]),
            ("decoder.bias_hh_l0", vec![4 * h]),
            ("output.weight", vec![f, h]),
            ("output.bias", vec![f]),
        ]);
        tensors
    }

    fn validate(&self) -> Result<(), OnnxError> {
        let sizes = [
            ("features", self.features),
            ("hidden", self.hidden),
            ("bottleneck", self.bottleneck),
            ("window", self.window),
        ];
        for (field, size) in sizes {
            if size == 0 && field != "bottleneck" {
                return Err(OnnxError::InvalidSpec { field, reason: "must be at least 1" });
            }
            // Keeps every element count (at most 8H·max(F, H, Z) < 2^44) exact in `usize`.
            if size > MAX_SIZE {
                return Err(OnnxError::InvalidSpec { field, reason: "exceeds 2^20" });
            }
        }
        Ok(())
    }
}

/// Why an export failed.
#[derive(Debug, Clone, PartialEq)]
pub enum OnnxError {
    /// A size in the spec cannot be exported.
    InvalidSpec { field: &'static str, reason: &'static str },
    /// The weights lack a tensor the model needs.
    MissingTensor { name: &'static str },
    /// A tensor has another shape than the spec implies.
    ShapeMismatch { name: &'static str, expected: Vec<usize>, actual: Vec<usize> },
    /// A tensor's data does not hold as many values as its shape says.
    DataLength { name: &'static str, shape: Vec<usize>, len: usize },
}

impl fmt::Display for OnnxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidSpec { field, reason } => write!(f, "ONNX export: `{field}` {reason}"),
            Self::MissingTensor { name } => write!(f, "ONNX export: tensor `{name}` is missing"),
            Self::ShapeMismatch { name, expected, actual } => write!(
                f,
                "ONNX export: tensor `{name}` has shape {actual:?}, the spec needs {expected:?}"
            ),
            Self::DataLength { name, shape, len } => {
                write!(f, "ONNX export: tensor `{name}` of shape {shape:?} holds {len} values")
            }
        }
    }
}

impl std::error::Error for OnnxError {}

/// Exports the autoencoder as ONNX bytes (see the [module docs](self) for the graph).
///
/// `tensor` returns a weight by its PyTorch `state_dict` name as `(shape, row-major f32 data)`,
/// or `None` when it is absent; [`OnnxSpec::expected_tensors`] lists the names and shapes read.
/// Tensors the spec does not use (say, a bottleneck when `spec.bottleneck == 0`) are not asked for.
pub fn export_autoencoder<W>(spec: &OnnxSpec, mut tensor: W) -> Result<Vec<u8>, OnnxError>
where
    W: FnMut(&str) -> Option<(Vec<usize>, Vec<f32>)>,
{
    spec.validate()?;
    let mut weights = Weights::default();
    for (name, expected) in spec.expected_tensors() {
        let (shape, data) = tensor(name).ok_or(OnnxError::MissingTensor { name })?;
        if shape != expected {
            return Err(OnnxError::ShapeMismatch { name, expected, actual: shape });
        }
        if data.len() != expected.iter().product::<usize>() {
            return Err(OnnxError::DataLength { name, shape, len: data.len() });
        }
        weights.0.push((name, data));
    }
    Ok(build_model(spec, &weights).0)
}

/// The checked weights, by PyTorch name.
#[derive(Default)]
struct Weights(Vec<(&'static str, Vec<f32>)>);

impl Weights {
    fn get(&self, name: &str) -> &[f32] {
        // `export_autoencoder` fetched every name of `expected_tensors`, the only names asked for.
        self.0.iter().find(|(n, _)| *n == name).map_or(&[], |(_, data)| data.as_slice())
    }
}

/// Reorders the 4 gate blocks of a PyTorch LSTM tensor (`4H` rows of `row` values each) from
/// PyTorch's i, f, g, o to ONNX's i, o, f, c.
fn onnx_gate_order(torch: &[f32], hidden: usize, row: usize) -> Vec<f32> {
    let block = hidden * row;
    ONNX_FROM_TORCH
        .iter()
        .flat_map(|&gate| &torch[gate * block..(gate + 1) * block])
        .copied()
        .collect()
}

/// The row-major transpose of a `rows × cols` matrix.
fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols).flat_map(|c| (0..rows).map(move |r| data[r * cols + c])).collect()
}

/// Adds one LSTM node named `torch` (`encoder` or `decoder`) reading `input` and its
/// initializers `{torch}_W`, `{torch}_R` and `{torch}_B`, converted from `{torch}.weight_ih_l0`
/// and the rest. An empty name in `outputs` (`Y`, `Y_h`) leaves that output unused.
fn lstm(
    graph: &mut Graph,
    weights: &Weights,
    torch: &str,
    input_width: usize,
    hidden: usize,
    input: &str,
    outputs: [&str; 2],
) {
    let name = |suffix: &str| weights.get(&format!("{torch}.{suffix}"));
    let (w, r, b) = (format!("{torch}_W"), format!("{torch}_R"), format!("{torch}_B"));
    graph.float(
        &w,
        &[1, 4 * hidden, input_width],
        &onnx_gate_order(name("weight_ih_l0"), hidden, input_width),
    );
    graph.float(
        &r,
        &[1, 4 * hidden, hidden],
        &onnx_gate_order(name("weight_hh_l0"), hidden, hidden),
    );
    let mut bias = onnx_gate_order(name("bias_ih_l0"), hidden, 1);
    bias.extend(onnx_gate_order(name("bias_hh_l0"), hidden, 1));
    graph.float(&b, &[1, 8 * hidden], &bias);
    graph.node(
        "LSTM",
        torch,
        &[input, &w, &r, &b],
        &outputs,
        &[Attribute::Int("hidden_size", hidden as i64), Attribute::Str("direction", "forward")],
    );
}

fn build_model(spec: &OnnxSpec, weights: &Weights) -> Message {
    let (f, h, z, t) = (spec.features, spec.hidden, spec.bottleneck, spec.window);
    let mut graph = Graph::default();
    let time_major = Attribute::Ints("perm", &[1, 0, 2]);

    graph.int64("axes_0", &[1], &[0]);
    graph.int64("axes_1", &[1], &[1]);
    graph.int64("repeat_shape", &[3], &[t as i64, 1, 1]);

    graph.node("Transpose", "to_time_major", &[INPUT_NAME], &["x_tm"], &[time_major]);
    lstm(&mut graph, weights, "encoder", f, h, "x_tm", ["", "encoder_h"]);
    graph.node("Squeeze", "last_hidden", &["encoder_h", "axes_0"], &["code"], &[]);
    let code = if z == 0 {
        "code"
    } else {
        graph.float("bottleneck_W", &[z, h], weights.get("bottleneck.weight"));
        graph.float("bottleneck_b", &[z], weights.get("bottleneck.bias"));
        graph.node(
            "Gemm",
            "bottleneck",
            &["code", "bottleneck_W", "bottleneck_b"],
            &["bottleneck_code"],
            &[Attribute::Int("transB", 1)],
        );
        "bottleneck_code"
    };
    graph.node("Unsqueeze", "code_step", &[code, "axes_0"], &["code_tm"], &[]);
    graph.node("Expand", "repeat", &["code_tm", "repeat_shape"], &["repeated"], &[]);
    lstm(&mut graph, weights, "decoder", spec.code_width(), h, "repeated", ["decoder_y", ""]);
    graph.node("Squeeze", "one_direction", &["decoder_y", "axes_1"], &["decoded"], &[]);
    graph.float("output_Wt", &[h, f], &transpose(weights.get("output.weight"), f, h));
    graph.float("output_b", &[f], weights.get("output.bias"));
    graph.node("MatMul", "output_matmul", &["decoded", "output_Wt"], &["projected"], &[]);
    graph.node("Add", "output_bias", &["projected", "output_b"], &["output_tm"], &[]);
    graph.node("Transpose", "to_batch_major", &["output_tm"], &[OUTPUT_NAME], &[time_major]);

    let io = |name: &str| value_info(name, &[Dim::Param(BATCH_DIM), Dim::Value(t), Dim::Value(f)]);
    let mut g = graph.proto;
    g.string(2, "lstm_autoencoder");
    g.message(11, &io(INPUT_NAME));
    g.message(12, &io(OUTPUT_NAME));
    g.string(10, "LSTM autoencoder: window [batch, T, F] -> reconstruction [batch, T, F]");

    let mut opset = Message::default();
    opset.string(1, "");
    opset.varint(2, OPSET);

    let mut model = Message::default();
    model.varint(1, IR_VERSION);
    model.string(2, PRODUCER_NAME);
    model.string(3, &spec.producer_version);
    model.varint(5, 1);
    model.message(7, &g);
    model.message(8, &opset);
    let props = [
        ("sentio.features", f),
        ("sentio.hidden", h),
        ("sentio.bottleneck", z),
        ("sentio.window", t),
    ];
    for (key, value) in props {
        let mut entry = Message::default();
        entry.string(1, key);
        entry.string(2, &value.to_string());
        model.message(14, &entry);
    }
    model
}

// ---------------------------------------------------------------------------------------------
// ONNX messages (field numbers from onnx/onnx.proto).

/// `TensorProto.DataType`.
const FLOAT: u64 = 1;
const INT64: u64 = 7;

#[derive(Clone, Copy)]
enum Attribute<'a> {
    Int(&'a str, i64),
    Ints(&'a str, &'a [i64]),
    Str(&'a str, &'a str),
}

impl Attribute<'_> {
    /// An `AttributeProto`: name 1, i 3, s 4, ints 8, type 20 (`INT` 2, `STRING` 3, `INTS` 7).
    fn proto(&self) -> Message {
        let mut m = Message::default();
        match self {
            Self::Int(name, value) => {
                m.string(1, name);
                m.int64(3, *value);
                m.varint(20, 2);
            }
            Self::Str(name, value) => {
                m.string(1, name);
                m.bytes(4, value.as_bytes());
                m.varint(20, 3);
            }
            Self::Ints(name, values) => {
                m.string(1, name);
                for value in *values {
                    m.int64(8, *value);
                }
                m.varint(20, 7);
            }
        }
        m
    }
}

enum Dim<'a> {
    Value(usize),
    Param(&'a str),
}

/// A `ValueInfoProto` of a float tensor: name 1, type 2 → `TypeProto.tensor_type` 1 →
/// elem_type 1, shape 2 → `TensorShapeProto.dim` 1 → dim_value 1 | dim_param 2.
fn value_info(name: &str, dims: &[Dim<'_>]) -> Message {
    let mut shape = Message::default();
    for dim in dims {
        let mut d = Message::default();
        match dim {
            Dim::Value(value) => d.varint(1, *value as u64),
            Dim::Param(param) => d.string(2, param),
        }
        shape.message(1, &d);
    }
    let mut tensor = Message::default();
    tensor.varint(1, FLOAT);
    tensor.message(2, &shape);
    let mut ty = Message::default();
    ty.message(1, &tensor);
    let mut info = Message::default();
    info.string(1, name);
    info.message(2, &ty);
    info
}

/// A `GraphProto` under construction: nodes (field 1) and initializers (field 5), in the order
/// they are added.
#[derive(Default)]
struct Graph {
    proto: Message,
}

impl Graph {
    /// A `NodeProto`: input 1, output 2, name 3, op_type 4, attribute 5. An empty output name
    /// leaves an optional output unused.
    fn node(
        &mut self,
        op_type: &str,
        name: &str,
        inputs: &[&str],
        outputs: &[&str],
        attributes: &[Attribute<'_>],
    ) {
        let mut node = Message::default();
        for input in inputs {
            node.string(1, input);
        }
        for output in outputs {
            node.string(2, output);
        }
        node.string(3, name);
        node.string(4, op_type);
        for attribute in attributes {
            node.message(5, &attribute.proto());
        }
        self.proto.message(1, &node);
    }

    /// A float `TensorProto` initializer with little-endian `raw_data`.
    fn float(&mut self, name: &str, dims: &[usize], data: &[f32]) {
        let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(name, dims, FLOAT, &raw);
    }

    /// An int64 `TensorProto` initializer with little-endian `raw_data`.
    fn int64(&mut self, name: &str, dims: &[usize], data: &[i64]) {
        let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(name, dims, INT64, &raw);
    }

    /// A `TensorProto`: dims 1, data_type 2, name 8, raw_data 9.
    fn initializer(&mut self, name: &str, dims: &[usize], data_type: u64, raw: &[u8]) {
        let mut tensor = Message::default();
        for dim in dims {
            tensor.varint(1, *dim as u64);
        }
        tensor.varint(2, data_type);
        tensor.string(8, name);
        tensor.bytes(9, raw);
        self.proto.message(5, &tensor);
    }
}

// ---------------------------------------------------------------------------------------------
// Protobuf wire format: just what ONNX needs. Repeated scalars are written unpacked (one tag
// per value), which every protobuf parser accepts for proto2's `repeated int64`.

/// An encoded protobuf message.
#[derive(Default)]
struct Message(Vec<u8>);

const VARINT: u64 = 0;
const LEN: u64 = 2;

impl Message {
    fn raw_varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.0.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }

    fn key(&mut self, field: u64, wire_type: u64) {
        self.raw_varint(field << 3 | wire_type);
    }

    fn varint(&mut self, field: u64, value: u64) {
        self.key(field, VARINT);
        self.raw_varint(value);
    }

    /// An `int64`: negative values are their 64-bit two's complement (ten bytes).
    fn int64(&mut self, field: u64, value: i64) {
        self.varint(field, value as u64);
    }

    fn bytes(&mut self, field: u64, value: &[u8]) {
        self.key(field, LEN);
        self.raw_varint(value.len() as u64);
        self.0.extend_from_slice(value);
    }

    fn string(&mut self, field: u64, value: &str) {
        self.bytes(field, value.as_bytes());
    }

    fn message(&mut self, field: u64, value: &Message) {
        self.bytes(field, &value.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_follow_the_wire_format() {
        let mut m = Message::default();
        m.varint(1, 300);
        m.int64(2, -1);
        assert_eq!(
            m.0,
            [0x08, 0xac, 0x02, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
        let mut m = Message::default();
        m.string(20, "ab");
        assert_eq!(m.0, [0xa2, 0x01, 0x02, b'a', b'b']);
    }

    #[test]
    fn gate_blocks_move_from_ifgo_to_iofc() {
        // H = 1, two values per row: block k of PyTorch holds k*10, k*10 + 1.
        let torch = [0.0, 1.0, 10.0, 11.0, 20.0, 21.0, 30.0, 31.0];
        // i, o, f, g(c).
        assert_eq!(onnx_gate_order(&torch, 1, 2), [0.0, 1.0, 30.0, 31.0, 10.0, 11.0, 20.0, 21.0]);
    }

    #[test]
    fn transpose_swaps_rows_and_columns() {
        assert_eq!(
            transpose(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3),
            [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
    }
}
