//! Weights on disk as safetensors, under PyTorch's `state_dict` names.
//!
//! The file holds exactly the model's tensors (little-endian f32, row-major), so PyTorch loads
//! it strictly: `model.load_state_dict(safetensors.torch.load_file(path), strict=True)`. The
//! header's metadata carries `format = "pt"` (what `safetensors.torch` writes) and the
//! [`ModelSpec`] as JSON under `sentio.spec`. Loading checks every name, dtype and shape
//! against the spec and rejects extra tensors.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::params::Params;
use crate::{ModelError, ModelSpec};

/// The metadata key holding the spec as JSON.
pub const SPEC_METADATA_KEY: &str = "sentio.spec";

/// Writes `params` to `path`.
pub(crate) fn save(path: &Path, spec: &ModelSpec, params: &Params) -> Result<(), ModelError> {
    let safetensors_error = |source| ModelError::Safetensors { path: path.to_owned(), source };
    let tensors = params.tensors();
    let bytes: Vec<Vec<u8>> =
        tensors.iter().map(|t| t.data.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| TensorView::new(Dtype::F32, t.shape(), b).map(|v| (t.name, v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(safetensors_error)?;
    let mut metadata = HashMap::from([("format".to_owned(), "pt".to_owned())]);
    // A plain struct of integers always serializes.
    if let Ok(json) = serde_json::to_string(spec) {
        metadata.insert(SPEC_METADATA_KEY.to_owned(), json);
    }
    let file = safetensors::serialize(views, Some(metadata)).map_err(safetensors_error)?;
    let file = canonical(file);
    std::fs::write(path, file).map_err(|source| ModelError::Io { path: path.to_owned(), source })
}

/// The same file with its JSON header's keys sorted. safetensors writes the metadata map in
/// `HashMap` order, which differs from process to process, so equal weights could give different
/// bytes; sorted, a seed reproduces the file bit for bit. Tensor offsets are relative to the end
/// of the header, so only the header (padded with spaces to 8 bytes, as safetensors does) changes.
fn canonical(file: Vec<u8>) -> Vec<u8> {
    let Some(len) = file.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes) else {
        return file;
    };
    let Some(end) = usize::try_from(len).ok().and_then(|l| l.checked_add(8)) else {
        return file;
    };
    // serde_json's map is a BTreeMap (no `preserve_order`): re-serializing sorts every object.
    let Some(header) = file
        .get(8..end)
        .and_then(|h| serde_json::from_slice::<serde_json::Value>(h).ok())
        .and_then(|v| serde_json::to_vec(&v).ok())
    else {
        return file;
    };
    let mut header = header;
    header.resize(header.len().div_ceil(8) * 8, b' ');
    let mut out = Vec::with_capacity(8 + header.len() + file.len() - end);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&file[end..]);
    out
}

/// Reads the weights for `spec` from `path`.
pub(crate) fn load(path: &Path, spec: &ModelSpec) -> Result<Params, ModelError> {
    let bytes =
        std::fs::read(path).map_err(|source| ModelError::Io { path: path.to_owned(), source })?;
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|source| ModelError::Safetensors { path: path.to_owned(), source })?;
    let expected = Params::zeros(spec);
    for name in file.names() {
        if expected.get(name).is_none() {
            return Err(ModelError::UnexpectedTensor { name: name.to_owned() });
        }
    }
    let mut dtype_error = None;
    let params = Params::from_lookup(spec, |name| {
        let view = file.tensor(name).ok()?;
        if view.dtype() != Dtype::F32 {
            dtype_error = Some(ModelError::TensorDtype {
                name: name.to_owned(),
                dtype: format!("{:?}", view.dtype()),
            });
            return None;
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Some((view.shape().to_vec(), data))
    });
    match (params, dtype_error) {
        (_, Some(error)) => Err(error),
        (params, None) => params,
    }
}

/// The spec stored in a file's metadata by [`save`], if there is one.
pub fn read_spec(path: &Path) -> Result<Option<ModelSpec>, ModelError> {
    let bytes =
        std::fs::read(path).map_err(|source| ModelError::Io { path: path.to_owned(), source })?;
    let (_, metadata) = SafeTensors::read_metadata(&bytes)
        .map_err(|source| ModelError::Safetensors { path: path.to_owned(), source })?;
    Ok(metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get(SPEC_METADATA_KEY))
        .and_then(|json| serde_json::from_str(json).ok()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_header_is_written_with_sorted_keys() {
        let spec = ModelSpec { features: 4, hidden: 3, bottleneck: 2, window: 5 };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        save(&path, &spec, &Params::zeros(&spec)).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(len % 8, 0);
        let header = std::str::from_utf8(&bytes[8..8 + len]).unwrap();
        let start = format!("{{\"__metadata__\":{{\"format\":\"pt\",\"{SPEC_METADATA_KEY}\"");
        assert!(header.starts_with(&start), "{header}");
        load(&path, &spec).unwrap();
        assert_eq!(read_spec(&path).unwrap(), Some(spec));
    }
}
