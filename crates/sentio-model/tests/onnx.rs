//! ONNX export: the bytes decode as the documented graph, the export is deterministic and checks
//! its weights, and onnxruntime agrees with a NumPy forward of the PyTorch module
//! (`scripts/onnx_check.py`) when a Python with onnxruntime is available.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use sentio_model::onnx::{
    BATCH_DIM, INPUT_NAME, IR_VERSION, OPSET, OUTPUT_NAME, OnnxError, OnnxSpec, export_autoencoder,
};

const F: usize = 4;
const H: usize = 8;
const T: usize = 6;

fn spec(bottleneck: usize) -> OnnxSpec {
    OnnxSpec {
        features: F,
        hidden: H,
        bottleneck,
        window: T,
        producer_version: "0.1.0-test".to_owned(),
    }
}

/// SplitMix64, mapped to uniform floats in [-0.5, 0.5).
struct Rng(u64);

impl Rng {
    fn next_f32(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }
}

/// Random weights for every tensor the spec needs, by PyTorch name.
fn random_weights(spec: &OnnxSpec, seed: u64) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let mut rng = Rng(seed);
    spec.expected_tensors()
        .into_iter()
        .map(|(name, shape)| {
            let data = (0..shape.iter().product()).map(|_| rng.next_f32()).collect();
            (name.to_owned(), (shape, data))
        })
        .collect()
}

fn export(spec: &OnnxSpec, weights: &BTreeMap<String, (Vec<usize>, Vec<f32>)>) -> Vec<u8> {
    export_autoencoder(spec, |name| weights.get(name).cloned()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// A tiny protobuf decoder: enough to read back what the export wrote.

#[derive(Debug, Clone)]
enum Field {
    Varint(u64),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone, Default)]
struct Msg(Vec<(u64, Field)>);

fn varint(bytes: &[u8], pos: &mut usize) -> u64 {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = bytes[*pos];
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return value;
        }
    }
    panic!("varint longer than 10 bytes");
}

fn decode(bytes: &[u8]) -> Msg {
    let mut pos = 0;
    let mut fields = Vec::new();
    while pos < bytes.len() {
        let key = varint(bytes, &mut pos);
        let field = match key & 7 {
            0 => Field::Varint(varint(bytes, &mut pos)),
            2 => {
                let len = usize::try_from(varint(bytes, &mut pos)).unwrap();
                let value = bytes[pos..pos + len].to_vec();
                pos += len;
                Field::Bytes(value)
            }
            wire => panic!("unexpected wire type {wire} for field {}", key >> 3),
        };
        fields.push((key >> 3, field));
    }
    assert_eq!(pos, bytes.len(), "message overruns its bytes");
    Msg(fields)
}

impl Msg {
    fn all(&self, number: u64) -> impl Iterator<Item = &Field> {
        self.0.iter().filter(move |(n, _)| *n == number).map(|(_, f)| f)
    }
    fn ints(&self, number: u64) -> Vec<u64> {
        self.all(number)
            .map(|f| match f {
                Field::Varint(v) => *v,
                Field::Bytes(_) => panic!("field {number} is not a varint"),
            })
            .collect()
    }
    fn int(&self, number: u64) -> u64 {
        let ints = self.ints(number);
        assert_eq!(ints.len(), 1, "field {number}: {ints:?}");
        ints[0]
    }
    fn bytes(&self, number: u64) -> Vec<&[u8]> {
        self.all(number)
            .map(|f| match f {
                Field::Bytes(b) => b.as_slice(),
                Field::Varint(_) => panic!("field {number} is not length-delimited"),
            })
            .collect()
    }
    fn strings(&self, number: u64) -> Vec<String> {
        self.bytes(number).into_iter().map(|b| String::from_utf8(b.to_vec()).unwrap()).collect()
    }
    fn string(&self, number: u64) -> String {
        let strings = self.strings(number);
        assert_eq!(strings.len(), 1, "field {number}: {strings:?}");
        strings[0].clone()
    }
    fn messages(&self, number: u64) -> Vec<Msg> {
        self.bytes(number).into_iter().map(decode).collect()
    }
    fn message(&self, number: u64) -> Msg {
        let messages = self.messages(number);
        assert_eq!(messages.len(), 1, "field {number}");
        messages[0].clone()
    }
}

struct Initializer {
    dims: Vec<u64>,
    data_type: u64,
    raw: Vec<u8>,
}

impl Initializer {
    fn floats(&self) -> Vec<f32> {
        assert_eq!(self.data_type, 1);
        self.raw.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
    }
    fn int64s(&self) -> Vec<i64> {
        assert_eq!(self.data_type, 7);
        self.raw.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect()
    }
}

fn initializers(graph: &Msg) -> BTreeMap<String, Initializer> {
    graph
        .messages(5)
        .into_iter()
        .map(|t| {
            let init =
                Initializer { dims: t.ints(1), data_type: t.int(2), raw: t.bytes(9)[0].to_vec() };
            assert_eq!(
                init.raw.len() as u64,
                init.dims.iter().product::<u64>() * 4 * (1 + u64::from(init.data_type == 7))
            );
            (t.string(8), init)
        })
        .collect()
}

/// A `ValueInfoProto`'s dims: `Ok(value)` or `Err(param)`.
fn io_dims(info: &Msg) -> Vec<Result<u64, String>> {
    let tensor = info.message(2).message(1);
    assert_eq!(tensor.int(1), 1, "elem_type FLOAT");
    tensor
        .message(2)
        .messages(1)
        .into_iter()
        .map(|d| if d.ints(1).is_empty() { Err(d.string(2)) } else { Ok(d.int(1)) })
        .collect()
}

// ---------------------------------------------------------------------------------------------

#[test]
fn the_bytes_decode_as_the_documented_graph() {
    for z in [0, 3] {
        let spec = spec(z);
        let weights = random_weights(&spec, 7);
        let model = decode(&export(&spec, &weights));

        assert_eq!(model.int(1), IR_VERSION);
        assert_eq!(model.string(2), "sentio");
        assert_eq!(model.string(3), "0.1.0-test");
        let opset = model.message(8);
        assert_eq!(opset.string(1), "");
        assert_eq!(opset.int(2), OPSET);
        let props: BTreeMap<String, String> =
            model.messages(14).iter().map(|e| (e.string(1), e.string(2))).collect();
        assert_eq!(props["sentio.bottleneck"], z.to_string());
        assert_eq!(props["sentio.window"], T.to_string());

        let graph = model.message(7);
        let ops: Vec<String> = graph.messages(1).iter().map(|n| n.string(4)).collect();
        let mut want = vec!["Transpose", "LSTM", "Squeeze"];
        if z != 0 {
            want.push("Gemm");
        }
        want.extend(["Unsqueeze", "Expand", "LSTM", "Squeeze", "MatMul", "Add", "Transpose"]);
        assert_eq!(ops, want);
        // Every node input is the graph input, an initializer, an earlier output, or unused.
        let inits = initializers(&graph);
        let mut known: Vec<String> = vec![INPUT_NAME.to_owned()];
        known.extend(inits.keys().cloned());
        for node in graph.messages(1) {
            for input in node.strings(1) {
                assert!(known.contains(&input), "{} reads unknown {input:?}", node.string(3));
            }
            known.extend(node.strings(2).into_iter().filter(|o| !o.is_empty()));
        }
        assert!(known.contains(&OUTPUT_NAME.to_owned()));

        let [input] = graph.messages(11).try_into().unwrap();
        let [output] = graph.messages(12).try_into().unwrap();
        assert_eq!(input.string(1), INPUT_NAME);
        assert_eq!(output.string(1), OUTPUT_NAME);
        let batch_major = vec![Err(BATCH_DIM.to_owned()), Ok(T as u64), Ok(F as u64)];
        assert_eq!(io_dims(&input), batch_major);
        assert_eq!(io_dims(&output), batch_major);

        let code = if z == 0 { H } else { z };
        let h = H as u64;
        assert_eq!(inits["encoder_W"].dims, [1, 4 * h, F as u64]);
        assert_eq!(inits["encoder_R"].dims, [1, 4 * h, h]);
        assert_eq!(inits["encoder_B"].dims, [1, 8 * h]);
        assert_eq!(inits["decoder_W"].dims, [1, 4 * h, code as u64]);
        assert_eq!(inits["output_Wt"].dims, [h, F as u64]);
        assert_eq!(inits["repeat_shape"].int64s(), [T as i64, 1, 1]);
        assert_eq!(inits.contains_key("bottleneck_W"), z != 0);

        // Gate blocks: ONNX i, o, f, c from PyTorch i, f, g, o.
        let torch = &weights["encoder.weight_hh_l0"].1;
        let onnx = inits["encoder_R"].floats();
        let block = H * H;
        for (onnx_gate, torch_gate) in [(0, 0), (1, 3), (2, 1), (3, 2)] {
            assert_eq!(
                onnx[onnx_gate * block..][..block],
                torch[torch_gate * block..][..block],
                "ONNX gate {onnx_gate}"
            );
        }
        // B = concat(bias_ih, bias_hh), each reordered.
        let bias = inits["decoder_B"].floats();
        let (b_ih, b_hh) = (&weights["decoder.bias_ih_l0"].1, &weights["decoder.bias_hh_l0"].1);
        assert_eq!(bias[H..2 * H], b_ih[3 * H..4 * H]); // o
        assert_eq!(bias[4 * H + 2 * H..4 * H + 3 * H], b_hh[H..2 * H]); // f
        // The output layer is stored transposed for MatMul.
        let w = &weights["output.weight"].1;
        let wt = inits["output_Wt"].floats();
        assert_eq!(wt[2 * F + 1], w[H + 2]);
    }
}

#[test]
fn the_export_is_deterministic() {
    let spec = spec(3);
    let weights = random_weights(&spec, 11);
    assert_eq!(export(&spec, &weights), export(&spec, &weights));
    assert_ne!(export(&spec, &weights), export(&spec, &random_weights(&spec, 12)));
}

#[test]
fn a_model_without_bottleneck_never_asks_for_one() {
    let spec = spec(0);
    let weights = random_weights(&spec, 3);
    let mut asked = Vec::new();
    export_autoencoder(&spec, |name| {
        asked.push(name.to_owned());
        weights.get(name).cloned()
    })
    .unwrap();
    assert_eq!(asked.len(), 10);
    assert!(asked.iter().all(|n| !n.starts_with("bottleneck")));
}

#[test]
fn bad_weights_are_reported_by_name() {
    let spec = spec(3);
    let weights = random_weights(&spec, 5);
    let without = |missing: &str| {
        export_autoencoder(&spec, |n| if n == missing { None } else { weights.get(n).cloned() })
    };
    assert_eq!(
        without("bottleneck.bias").unwrap_err(),
        OnnxError::MissingTensor { name: "bottleneck.bias" }
    );

    let err = export_autoencoder(&spec, |n| {
        let (shape, data) = weights.get(n).cloned()?;
        Some(if n == "decoder.weight_ih_l0" { (vec![4 * H, H], data) } else { (shape, data) })
    })
    .unwrap_err();
    assert_eq!(
        err,
        OnnxError::ShapeMismatch {
            name: "decoder.weight_ih_l0",
            expected: vec![4 * H, 3],
            actual: vec![4 * H, H]
        }
    );
    assert!(err.to_string().contains("decoder.weight_ih_l0"), "{err}");

    let err = export_autoencoder(&spec, |n| {
        let (shape, mut data) = weights.get(n).cloned()?;
        if n == "output.bias" {
            data.pop();
        }
        Some((shape, data))
    })
    .unwrap_err();
    assert_eq!(err, OnnxError::DataLength { name: "output.bias", shape: vec![F], len: F - 1 });

    let zero = OnnxSpec { window: 0, ..spec.clone() };
    assert!(matches!(
        export_autoencoder(&zero, |n| weights.get(n).cloned()),
        Err(OnnxError::InvalidSpec { field: "window", .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// onnxruntime against the NumPy reference.

/// A Python that imports onnx, onnxruntime, numpy and safetensors: the MLflow venv first, then
/// `SENTIO_ONNX_PYTHON`.
fn onnx_python() -> Option<PathBuf> {
    let venv = std::env::var_os("HOME")
        .map(|home| Path::new(&home).join(".cache/sentio/mlflow-venv/bin/python"));
    let explicit = std::env::var_os("SENTIO_ONNX_PYTHON").map(PathBuf::from);
    [venv, explicit].into_iter().flatten().find(|python| {
        Command::new(python)
            .args(["-c", "import onnx, onnxruntime, numpy, safetensors"])
            .output()
            .is_ok_and(|out| out.status.success())
    })
}

/// The safetensors format: u64 LE header length, a JSON header, the raw little-endian data.
fn write_safetensors(path: &Path, tensors: &BTreeMap<String, (Vec<usize>, Vec<f32>)>) {
    let mut entries = Vec::new();
    let mut data = Vec::new();
    for (name, (shape, values)) in tensors {
        let start = data.len();
        data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        let shape: Vec<String> = shape.iter().map(ToString::to_string).collect();
        entries.push(format!(
            "\"{name}\":{{\"dtype\":\"F32\",\"shape\":[{}],\"data_offsets\":[{start},{}]}}",
            shape.join(","),
            data.len()
        ));
    }
    let mut header = format!("{{{}}}", entries.join(",")).into_bytes();
    while header.len() % 8 != 0 {
        header.push(b' ');
    }
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend(header);
    file.extend(data);
    std::fs::write(path, file).unwrap();
}

#[test]
fn onnxruntime_matches_the_numpy_reference() {
    let Some(python) = onnx_python() else {
        eprintln!(
            "SKIPPED onnxruntime_matches_the_numpy_reference: no Python with onnx, onnxruntime, \
             numpy and safetensors at ~/.cache/sentio/mlflow-venv/bin/python or in \
             SENTIO_ONNX_PYTHON"
        );
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/onnx_check.py");
    let dir = std::env::temp_dir().join(format!("sentio-onnx-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for z in [3, 0] {
        let spec = spec(z);
        let weights = random_weights(&spec, 42 + z as u64);
        let model = dir.join(format!("autoencoder-z{z}.onnx"));
        let tensors = dir.join(format!("autoencoder-z{z}.safetensors"));
        std::fs::write(&model, export(&spec, &weights)).unwrap();
        write_safetensors(&tensors, &weights);

        let out = Command::new(&python)
            .arg(&script)
            .args([&model, &tensors])
            .args(["--batch", "1", "5"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!("bottleneck {z}:\n{stdout}{stderr}");
        assert!(out.status.success(), "onnx_check.py failed for bottleneck {z}:\n{stdout}{stderr}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
