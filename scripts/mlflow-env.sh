#!/usr/bin/env bash
# Creates (once) the Python venv that runs the MLflow tracking server for the integration tests and
# the Python interop checks (mlflow.pyfunc loading an ONNX model that Sentio registered), and prints
# the interpreter's path on its last line. Safe to run again: it only installs what is missing.
set -euo pipefail

VENV="${HOME}/.cache/sentio/mlflow-venv"
# The server the `mlflow` tracking backend is tested against (REST API of MLflow 3.x).
MLFLOW_VERSION="3.17.2"
# The ONNX flavour's dependencies: `mlflow.pyfunc.load_model("models:/<name>@champion")` on a
# model that Sentio wrote.
ONNX_VERSION="1.23.2"
ONNXRUNTIME_VERSION="1.32.0"

if [[ ! -x "${VENV}/bin/python" ]]; then
    mkdir -p "$(dirname "${VENV}")"
    python3 -m venv "${VENV}"
fi

# Install only when a pinned version is not already there.
if ! "${VENV}/bin/python" - 2>/dev/null <<PY
import sys, importlib.metadata as m
sys.exit(m.version("mlflow") != "${MLFLOW_VERSION}" or m.version("onnx") != "${ONNX_VERSION}"
         or m.version("onnxruntime") != "${ONNXRUNTIME_VERSION}")
PY
then
    "${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check \
        "mlflow==${MLFLOW_VERSION}" "onnx==${ONNX_VERSION}" "onnxruntime==${ONNXRUNTIME_VERSION}" >&2
fi

echo "${VENV}/bin/python"
