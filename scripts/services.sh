#!/usr/bin/env bash
# The real servers Sentio's integration tests (and a local production-like run) use, on loopback:
#   - a Kafka-protocol broker: Tansu 0.6.0 with SQLite storage, on 127.0.0.1:9092
#   - an S3 server that checks SigV4 signatures: s3s-fs 0.14.1, on 127.0.0.1:9000
#   - PostgreSQL: the machine's own server on 127.0.0.1:5432 (this script only checks it)
#   - an MLflow tracking server (mlflow 3.17.2 from PyPI, venv by scripts/mlflow-env.sh), on
#     127.0.0.1:5000, with SQLite metadata and proxied artifacts under ~/.cache/sentio/run/mlflow
# Brokers and S3 servers are built once with `cargo install` into ~/.cache/sentio/tools.
#
#   scripts/services.sh up     install what is missing, start what is down, wait until healthy,
#                              and write the connection settings to ~/.cache/sentio/services.env
#   scripts/services.sh down   stop the servers this script started
#   scripts/services.sh env    print the connection settings (source it: `. <(scripts/services.sh env)`)
#   scripts/services.sh restart-kafka   stop and start the broker on its storage (restart tests)
set -euo pipefail

CACHE="${HOME}/.cache/sentio"
TOOLS="${CACHE}/tools"
RUN="${CACHE}/run"
ENV_FILE="${CACHE}/services.env"
KAFKA_PORT=9092
S3_PORT=9000
S3_ACCESS_KEY="sentio-test"
S3_SECRET_KEY="sentio-test-secret-key"
PG_HOST=127.0.0.1
PG_PORT=5432
PG_USER=postgres
MLFLOW_PORT=5000

log() { echo "services: $*" >&2; }

install_tool() { # name version features binary
    local name=$1 version=$2 features=$3 bin=$4
    if [[ -x "${TOOLS}/bin/${bin}" ]]; then return; fi
    log "building ${name} ${version} (once; cached in ${TOOLS}; this takes a while on 2 cores)"
    CARGO_TARGET_DIR="${CACHE}/tools-target-${name}" \
        cargo install "${name}" --version "${version}" --locked --features "${features}" --root "${TOOLS}" >&2
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_until() { # description seconds command...
    local what=$1 limit=$2
    shift 2
    local deadline=$((SECONDS + limit))
    until "$@"; do
        if ((SECONDS > deadline)); then
            log "${what} did not become healthy within ${limit}s; see ${RUN}/*.log"
            return 1
        fi
        sleep 0.3
    done
}

start_kafka() { # [keep]: reuse the broker's storage (restart tests); otherwise start empty
    if port_open "${KAFKA_PORT}"; then return; fi
    install_tool tansu 0.6.0 libsql tansu
    # Tests use topics and groups of their own, so a fresh start loses nothing, and it keeps a
    # broker whose storage an earlier crash left inconsistent from poisoning later runs.
    if [[ "${1:-}" != keep ]]; then rm -rf "${RUN}/tansu"; fi
    mkdir -p "${RUN}/tansu"
    log "starting tansu on 127.0.0.1:${KAFKA_PORT}"
    # SQLite storage: Tansu 0.6.0's memory storage loses messages when a consumer resumes from a
    # committed offset in the middle of a batch.
    # Tansu reads the path of a sqlite:// URL relative to its working directory.
    (cd "${RUN}/tansu" && exec nohup "${TOOLS}/bin/tansu" broker \
        --listener-url "tcp://127.0.0.1:${KAFKA_PORT}" \
        --advertised-listener-url "tcp://127.0.0.1:${KAFKA_PORT}" \
        --storage-engine "sqlite://tansu.db" \
        >"${RUN}/tansu.log" 2>&1) &
    echo $! >"${RUN}/tansu.pid"
    wait_until tansu 60 port_open "${KAFKA_PORT}"
}

s3_ready() { [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${S3_PORT}/")" =~ ^(200|403)$ ]]; }

start_s3() {
    if s3_ready; then return; fi
    install_tool s3s-fs 0.14.1 binary s3s-fs
    mkdir -p "${RUN}/s3"
    log "starting s3s-fs on 127.0.0.1:${S3_PORT}"
    nohup "${TOOLS}/bin/s3s-fs" --host 127.0.0.1 --port "${S3_PORT}" \
        --access-key "${S3_ACCESS_KEY}" --secret-key "${S3_SECRET_KEY}" "${RUN}/s3" \
        >"${RUN}/s3s-fs.log" 2>&1 &
    echo $! >"${RUN}/s3s-fs.pid"
    wait_until s3s-fs 30 s3_ready
}

mlflow_ready() { [[ "$(curl -s -m 2 "http://127.0.0.1:${MLFLOW_PORT}/health")" == OK ]]; }

start_mlflow() {
    if mlflow_ready; then return; fi
    local python
    python="$("$(dirname "${BASH_SOURCE[0]}")/mlflow-env.sh" | tail -n 1)"
    mkdir -p "${RUN}/mlflow/artifacts"
    log "starting mlflow on 127.0.0.1:${MLFLOW_PORT}"
    # Lean: one worker, no job runner. Artifacts go through the server (mlflow-artifacts:/ URIs),
    # so clients need nothing but HTTP. Its own process group: `mlflow server` runs uvicorn as a
    # child, and stopping the group stops both.
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid nohup "$(dirname "${python}")/mlflow" server \
        --host 127.0.0.1 --port "${MLFLOW_PORT}" --workers 1 \
        --backend-store-uri "sqlite:///${RUN}/mlflow/mlflow.db" \
        --artifacts-destination "${RUN}/mlflow/artifacts" \
        >"${RUN}/mlflow.log" 2>&1 &
    echo $! >"${RUN}/mlflow.pid"
    wait_until mlflow 120 mlflow_ready
}

check_postgres() {
    if ! psql -h "${PG_HOST}" -p "${PG_PORT}" -U "${PG_USER}" -d postgres -Atc 'select 1' >/dev/null 2>&1; then
        log "PostgreSQL does not answer on ${PG_HOST}:${PG_PORT} as ${PG_USER}; start it, e.g."
        log "  pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start"
        return 1
    fi
}

write_env() {
    mkdir -p "${CACHE}"
    cat >"${ENV_FILE}" <<ENV
SENTIO_TEST_KAFKA_BROKERS=127.0.0.1:${KAFKA_PORT}
SENTIO_TEST_PG_HOST=${PG_HOST}
SENTIO_TEST_PG_PORT=${PG_PORT}
SENTIO_TEST_PG_USER=${PG_USER}
SENTIO_TEST_S3_ENDPOINT=http://127.0.0.1:${S3_PORT}
SENTIO_TEST_S3_REGION=us-east-1
SENTIO_TEST_S3_ACCESS_KEY=${S3_ACCESS_KEY}
SENTIO_TEST_S3_SECRET_KEY=${S3_SECRET_KEY}
SENTIO_TEST_MLFLOW_URI=http://127.0.0.1:${MLFLOW_PORT}
SENTIO_TEST_MLFLOW_PYTHON=${HOME}/.cache/sentio/mlflow-venv/bin/python
ENV
}

stop() {
    local name=$1
    if [[ -f "${RUN}/${name}.pid" ]]; then
        local pid
        pid=$(cat "${RUN}/${name}.pid")
        kill "${pid}" 2>/dev/null || true
        # Wait for it to exit (a later `up` must not find its port still open), then insist.
        for _ in $(seq 100); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.1; done
        kill -9 "${pid}" 2>/dev/null || true
        rm -f "${RUN}/${name}.pid"
        log "stopped ${name}"
    fi
}

stop_group() { # a server started with setsid: stop its whole process group
    local name=$1
    if [[ -f "${RUN}/${name}.pid" ]]; then
        kill -- "-$(cat "${RUN}/${name}.pid")" 2>/dev/null || true
        rm -f "${RUN}/${name}.pid"
        log "stopped ${name}"
    fi
}

case "${1:-}" in
    up)
        mkdir -p "${RUN}"
        check_postgres
        start_kafka
        start_s3
        start_mlflow
        write_env
        log "ready; settings in ${ENV_FILE}"
        ;;
    down)
        stop tansu
        stop s3s-fs
        stop_group mlflow
        ;;
    restart-kafka)
        # For the broker-restart test: stop Tansu, wait until its port closes, start it again
        # on the same storage.
        stop tansu
        wait_until "tansu shutdown" 30 bash -c "! (exec 3<>/dev/tcp/127.0.0.1/${KAFKA_PORT}) 2>/dev/null"
        start_kafka keep
        ;;
    env)
        [[ -f "${ENV_FILE}" ]] || { log "no settings yet: run scripts/services.sh up"; exit 1; }
        sed 's/^/export /' "${ENV_FILE}"
        ;;
    *)
        echo "usage: scripts/services.sh up|down|env|restart-kafka" >&2
        exit 2
        ;;
esac
