#!/usr/bin/env bash
# Creates (once) the Python venv the tests use to read the raw archive with pandas, and prints
# the interpreter's path on its last line. Safe to run again: it only installs what is missing.
set -euo pipefail

VENV="${HOME}/.cache/sentio/venv"
# pandas 2.3.x keeps string columns as `object` with None intact; pandas 3 infers the `str`
# dtype and turns None into NaN. Bump deliberately.
PANDAS_VERSION="2.3.3"
# Validates messages against the JSON Schemas in docs/schema.
JSONSCHEMA_VERSION="4.26.0"
# The independent Kafka client of the integration tests (bundles librdkafka 2.x).
CONFLUENT_KAFKA_VERSION="2.16.1"

if [[ ! -x "${VENV}/bin/python" ]]; then
    mkdir -p "$(dirname "${VENV}")"
    python3 -m venv "${VENV}"
fi

# Install only when the pinned version is not already there.
if ! "${VENV}/bin/python" - 2>/dev/null <<PY
import sys, importlib.metadata as m
sys.exit(m.version("pandas") != "${PANDAS_VERSION}" or m.version("jsonschema") != "${JSONSCHEMA_VERSION}"
         or m.version("confluent-kafka") != "${CONFLUENT_KAFKA_VERSION}")
PY
then
    "${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check \
        "pandas==${PANDAS_VERSION}" "jsonschema==${JSONSCHEMA_VERSION}" \
        "confluent-kafka==${CONFLUENT_KAFKA_VERSION}"
fi

echo "${VENV}/bin/python"
