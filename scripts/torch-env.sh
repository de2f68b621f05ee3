#!/usr/bin/env bash
# Creates (once) the Python venv with PyTorch that the model's parity tests and the PyTorch
# benchmark use, and prints the interpreter's path on its last line. Safe to run again: it only
# installs what is missing.
#
# The default Linux wheel of torch pulls the CUDA runtime packages (about 5 GB); only the CPU is
# used. PyPI is the only index reachable here, so the CPU-only wheel index is not an option.
set -euo pipefail

VENV="${HOME}/.cache/sentio/torch-venv"
# The reference implementation of the LSTM autoencoder (scripts/torch_reference.py). Bump
# deliberately: the stored fixture was generated with this version.
TORCH_VERSION="2.9.1"
SAFETENSORS_VERSION="0.7.0"
NUMPY_VERSION="2.3.5"
# safetensors.torch imports it, and the safetensors wheel does not declare it.
PACKAGING_VERSION="25.0"

if [[ ! -x "${VENV}/bin/python" ]]; then
    mkdir -p "$(dirname "${VENV}")"
    python3 -m venv "${VENV}"
fi

# Install only when the pinned versions are not already there.
if ! "${VENV}/bin/python" - 2>/dev/null <<PY
import sys, importlib.metadata as m
sys.exit(m.version("torch") != "${TORCH_VERSION}" or m.version("safetensors") != "${SAFETENSORS_VERSION}"
         or m.version("numpy") != "${NUMPY_VERSION}" or m.version("packaging") != "${PACKAGING_VERSION}")
PY
then
    "${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check \
        "torch==${TORCH_VERSION}" "safetensors==${SAFETENSORS_VERSION}" "numpy==${NUMPY_VERSION}" \
        "packaging==${PACKAGING_VERSION}"
fi

echo "${VENV}/bin/python"
