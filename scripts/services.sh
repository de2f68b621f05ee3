#!/usr/bin/env bash
# The real servers Sentio's integration tests (and a local production-like run) use, on loopback.
# It installs what is missing and starts what is down; a server that already answers is used as it
# is. Everything it builds or downloads is cached under ~/.cache/sentio.
#   - Apache Kafka 4.1.2, single-node KRaft (broker + controller in one JVM): 127.0.0.1:9092,
#     controller 9093. Jars from Maven Central (deploy/kafka/pom.xml), resolved once.
#   - PostgreSQL: the machine's own server when one answers on 127.0.0.1:5432; otherwise Debian's
#     `postgresql` package (installed when missing) running a cluster this script owns.
#   - S3 (checks SigV4): s3s-fs 0.14.1 from crates.io, built once, on 127.0.0.1:9000.
#   - MQTT: Debian's `mosquitto`, on 127.0.0.1:1883, and over TLS on 127.0.0.1:8883 (a test CA).
#   - MLflow 3.17.2 from PyPI (venv by scripts/mlflow-env.sh), on 127.0.0.1:5000.
#
#   scripts/services.sh up                install what is missing, start what is down, wait until
#                                         healthy, write the settings to ~/.cache/sentio/services.env
#   scripts/services.sh down              stop the servers this script started
#   scripts/services.sh env               print the settings (`. <(scripts/services.sh env)`)
#   scripts/services.sh restart-kafka     stop the broker and start it on its storage
#   scripts/services.sh restart-postgres  restart PostgreSQL (fast shutdown) on its data
#   scripts/services.sh cluster-up        a three-node Kafka cluster on 127.0.0.1:19092,19094,19096
#                                         (replication 3, min.insync.replicas 2), for failover tests
#   scripts/services.sh cluster-kill N    kill -9 node N (1-3) of that cluster
#   scripts/services.sh cluster-start N   start node N again on its storage
#   scripts/services.sh cluster-down      stop the cluster and delete its storage
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "${HERE}")"
CACHE="${HOME}/.cache/sentio"
TOOLS="${CACHE}/tools"
RUN="${CACHE}/run"
ENV_FILE="${CACHE}/services.env"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "${REPO}/deploy/kafka/pom.xml")"
KAFKA_HOME="${TOOLS}/kafka-${KAFKA_VERSION}"
KAFKA_PORT=9092
KAFKA_CONTROLLER_PORT=9093
# The failover cluster: node N's broker on 19090+2N, its controller on 19091+2N.
CLUSTER_NODES=(1 2 3)
S3_PORT=9000
S3_ACCESS_KEY="sentio-test"
S3_SECRET_KEY="sentio-test-secret-key"
PG_HOST=127.0.0.1
PG_PORT=5432
PG_USER=postgres
MQTT_PORT=1883
MQTT_TLS_PORT=8883
MLFLOW_PORT=5000

log() { echo "services: $*" >&2; }

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

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

apt_install() { # package...: Debian's packages, installed once
    log "installing $* from Debian's packages"
    mkdir -p "${RUN}"
    { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"; } \
        >"${RUN}/apt.log" 2>&1 || { cat "${RUN}/apt.log" >&2; return 1; }
}

install_tool() { # name version features binary: a server from crates.io, built once
    local name=$1 version=$2 features=$3 bin=$4
    if [[ -x "${TOOLS}/bin/${bin}" ]]; then return; fi
    log "building ${name} ${version} (once; cached in ${TOOLS}; this takes a while on 2 cores)"
    CARGO_TARGET_DIR="${CACHE}/tools-target-${name}" \
        cargo install "${name}" --version "${version}" --locked --features "${features}" --root "${TOOLS}" >&2
}

# ---------------------------------------------------------------------------------------------
# Apache Kafka

install_kafka() {
    if [[ -f "${KAFKA_HOME}/libs/.complete" ]]; then return; fi
    command -v java >/dev/null 2>&1 || apt_install default-jre-headless
    command -v mvn >/dev/null 2>&1 || apt_install maven
    log "fetching Apache Kafka ${KAFKA_VERSION}'s jars from Maven Central (once, into ${KAFKA_HOME})"
    rm -rf "${KAFKA_HOME}/libs"
    mkdir -p "${KAFKA_HOME}"
    mvn -q -B -f "${REPO}/deploy/kafka/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="${KAFKA_HOME}/libs" >"${KAFKA_HOME}/mvn.log" 2>&1 ||
        { cat "${KAFKA_HOME}/mvn.log" >&2; return 1; }
    touch "${KAFKA_HOME}/libs/.complete"
}

# A Kafka tool or the broker, on the jars from Maven Central. It execs, so it replaces the shell it
# runs in: call it in a subshell, ( ) or $( ), whose PID then is the JVM's.
kafka_java() { # main-class args...
    exec java -Xms512m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="${REPO}/deploy/kafka/log4j2.properties" \
        -cp "${KAFKA_HOME}/libs/*" "$@"
}

kafka_ready() { # port: it answers a metadata request and lists itself as a broker
    port_open "$1" && kcat -b "127.0.0.1:$1" -L -m 3 2>/dev/null | grep -q "at 127.0.0.1:$1"
}

# Writes node's server.properties from deploy/kafka/server.properties.
kafka_properties() { # dir node-id broker-port controller-port quorum-line replication min-isr
    local dir=$1
    mkdir -p "${dir}"
    sed -e "s|@NODE_ID@|$2|" -e "s|@BROKER_PORT@|$3|g" -e "s|@CONTROLLER_PORT@|$4|g" \
        -e "s|@QUORUM@|$5|" -e "s|@REPLICATION@|$6|g" -e "s|@MIN_ISR@|$7|g" \
        -e "s|@LOG_DIR@|${dir}/data|" \
        "${REPO}/deploy/kafka/server.properties" >"${dir}/server.properties"
}

# Starts the node whose configuration is in dir (formatting its storage first if it has none) and
# waits until its broker answers.
kafka_start_node() { # name dir broker-port format-args...
    local name=$1 dir=$2 port=$3
    shift 3
    if [[ ! -f "${dir}/data/meta.properties" ]]; then
        (kafka_java kafka.tools.StorageTool format --ignore-formatted -c "${dir}/server.properties" "$@") \
            >"${dir}/format.log" 2>&1 || { cat "${dir}/format.log" >&2; return 1; }
    fi
    log "starting ${name} (Apache Kafka ${KAFKA_VERSION}) on 127.0.0.1:${port}"
    # Ignoring SIGHUP, as nohup would: the JVM outlives the shell that started it.
    (cd "${dir}" && trap '' HUP && kafka_java kafka.Kafka "${dir}/server.properties" \
        >"${RUN}/${name}.log" 2>&1) &
    echo $! >"${RUN}/${name}.pid"
    wait_until "${name}" 120 kafka_ready "${port}"
}

start_kafka() { # [keep]: reuse the broker's storage (restart tests); otherwise start empty
    if port_open "${KAFKA_PORT}"; then
        wait_until kafka 60 kafka_ready "${KAFKA_PORT}"
        return
    fi
    install_kafka
    command -v kcat >/dev/null 2>&1 || apt_install kcat
    local dir="${RUN}/kafka"
    # Tests use topics and groups of their own, so a fresh start loses nothing, and it keeps a
    # broker whose storage an earlier crash left inconsistent from poisoning later runs.
    if [[ "${1:-}" != keep ]]; then rm -rf "${dir}"; fi
    kafka_properties "${dir}" 1 "${KAFKA_PORT}" "${KAFKA_CONTROLLER_PORT}" \
        "controller.quorum.bootstrap.servers=127.0.0.1:${KAFKA_CONTROLLER_PORT}" 1 1
    kafka_start_node kafka "${dir}" "${KAFKA_PORT}" --standalone \
        -t "$( (kafka_java kafka.tools.StorageTool random-uuid) 2>/dev/null | tail -n 1)"
}

cluster_dir() { echo "${RUN}/kafka-cluster/node-$1"; }
cluster_port() { echo $((19090 + 2 * $1)); }

cluster_start_node() { # node
    local n=$1
    kafka_start_node "kafka-node-${n}" "$(cluster_dir "${n}")" "$(cluster_port "${n}")" \
        -t "$(cat "${RUN}/kafka-cluster/cluster.id")"
}

cluster_up() {
    install_kafka
    command -v kcat >/dev/null 2>&1 || apt_install kcat
    local voters="" n
    for n in "${CLUSTER_NODES[@]}"; do
        voters+="${voters:+,}${n}@127.0.0.1:$(($(cluster_port "${n}") + 1))"
    done
    mkdir -p "${RUN}/kafka-cluster"
    [[ -f "${RUN}/kafka-cluster/cluster.id" ]] ||
        (kafka_java kafka.tools.StorageTool random-uuid) 2>/dev/null | tail -n 1 >"${RUN}/kafka-cluster/cluster.id"
    for n in "${CLUSTER_NODES[@]}"; do
        kafka_properties "$(cluster_dir "${n}")" "${n}" "$(cluster_port "${n}")" \
            "$(($(cluster_port "${n}") + 1))" "controller.quorum.voters=${voters}" 3 2
    done
    # A static quorum elects its first leader only once a majority runs: start all three, then
    # wait for each.
    for n in "${CLUSTER_NODES[@]}"; do
        port_open "$(cluster_port "${n}")" || cluster_start_node "${n}" &
    done
    wait
    for n in "${CLUSTER_NODES[@]}"; do
        wait_until "kafka-node-${n}" 120 kafka_ready "$(cluster_port "${n}")"
    done
    local brokers=""
    for n in "${CLUSTER_NODES[@]}"; do brokers+="${brokers:+,}127.0.0.1:$(cluster_port "${n}")"; done
    log "cluster ready: ${brokers}"
    echo "${brokers}"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL

pg_answers() {
    psql -h "${PG_HOST}" -p "${PG_PORT}" -U "${PG_USER}" -d postgres -Atc 'select 1' >/dev/null 2>&1
}

pg_bin() { # the newest installed server's bin directory
    local initdb
    initdb=$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1)
    [[ -n "${initdb}" ]] && dirname "${initdb}"
}

# The cluster this script owns. PostgreSQL refuses to run as root, so under root it runs as the
# `postgres` user that Debian's package creates, in that user's home; otherwise as the caller.
pg_data() {
    if [[ $(id -u) -eq 0 ]]; then echo "/var/lib/postgresql/sentio-test"; else echo "${RUN}/postgres"; fi
}

as_pg() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

start_postgres() {
    if pg_answers; then return; fi
    if port_open "${PG_PORT}"; then
        log "something answers on ${PG_HOST}:${PG_PORT} but does not let ${PG_USER} in without a"
        log "password: stop it, or let ${PG_USER} connect from 127.0.0.1 (pg_hba.conf 'trust')"
        return 1
    fi
    [[ -n "$(pg_bin)" ]] && command -v psql >/dev/null 2>&1 || apt_install postgresql
    local bin data
    bin=$(pg_bin)
    data=$(pg_data)
    if [[ ! -f "${data}/PG_VERSION" ]]; then
        log "creating a PostgreSQL cluster in ${data}"
        as_root mkdir -p "${data}"
        [[ $(id -u) -ne 0 ]] || chown postgres: "${data}"
        as_pg "${bin}/initdb" -D "${data}" -U "${PG_USER}" -A trust -E UTF8 --no-locale >"${RUN}/postgres-initdb.log"
        # Loopback only, sockets in the data directory (no /run/postgresql needed), and room for
        # the tests' parallel pools.
        as_pg tee -a "${data}/postgresql.conf" >/dev/null <<CONF
listen_addresses = '${PG_HOST}'
port = ${PG_PORT}
unix_socket_directories = '${data}'
max_connections = 300
shared_buffers = 256MB
logging_collector = off
CONF
    fi
    # A server killed without a shutdown (the machine's processes ended) leaves its lock file; one
    # whose PID now belongs to another process would keep PostgreSQL from starting.
    if [[ -f "${data}/postmaster.pid" ]] &&
        ! ps -p "$(head -n 1 "${data}/postmaster.pid")" -o comm= 2>/dev/null | grep -q postgres; then
        as_pg rm -f "${data}/postmaster.pid"
    fi
    log "starting PostgreSQL ($("${bin}/postgres" --version | awk '{print $3}')) on ${PG_HOST}:${PG_PORT}"
    as_pg "${bin}/pg_ctl" -D "${data}" -l "${data}/server.log" -w -t 60 start >/dev/null
    echo "${data}" >"${RUN}/postgres.data"
    wait_until postgres 60 pg_answers
}

restart_postgres() {
    if [[ -f "${RUN}/postgres.data" ]]; then
        as_pg "$(pg_bin)/pg_ctl" -D "$(cat "${RUN}/postgres.data")" -m fast -w -t 60 restart >/dev/null
    elif command -v pg_lsclusters >/dev/null 2>&1 &&
        pg_lsclusters -h | awk -v p="${PG_PORT}" '$3 == p && $4 == "online"' | grep -q .; then
        # The machine's own Debian cluster.
        read -r version cluster _ < <(pg_lsclusters -h | awk -v p="${PG_PORT}" '$3 == p')
        as_root pg_ctlcluster --skip-systemctl-redirect "${version}" "${cluster}" restart
    else
        log "the PostgreSQL on ${PG_PORT} was not started by this script and is no Debian cluster:"
        log "restart it yourself"
        return 1
    fi
    wait_until postgres 60 pg_answers
    log "restarted PostgreSQL"
}

stop_postgres() {
    if [[ -f "${RUN}/postgres.data" ]]; then
        as_pg "$(pg_bin)/pg_ctl" -D "$(cat "${RUN}/postgres.data")" -m fast -w stop >/dev/null || true
        rm -f "${RUN}/postgres.data"
        log "stopped postgres"
    fi
}

# ---------------------------------------------------------------------------------------------
# S3, MQTT, MLflow

s3_ready() { [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${S3_PORT}/")" =~ ^(200|403)$ ]]; }

start_s3() {
    if s3_ready; then return; fi
    install_tool s3s-fs 0.14.1 binary s3s-fs
    mkdir -p "${RUN}/s3"
    log "starting s3s-fs on 127.0.0.1:${S3_PORT}"
    # From a directory that outlives the caller: s3s-fs resolves object paths against its working
    # directory, and answers 500 to everything once that is gone (a deleted checkout).
    (cd "${RUN}" && exec nohup "${TOOLS}/bin/s3s-fs" --host 127.0.0.1 --port "${S3_PORT}" \
        --access-key "${S3_ACCESS_KEY}" --secret-key "${S3_SECRET_KEY}" "${RUN}/s3" \
        >"${RUN}/s3s-fs.log" 2>&1) &
    echo $! >"${RUN}/s3s-fs.pid"
    wait_until s3s-fs 30 s3_ready
}

# A throw-away CA and a server certificate for 127.0.0.1 and localhost, for the TLS listener
# (the bridge's TLS test trusts the CA through bridge.mqtt.ca_file).
mqtt_certificates() {
    local dir="${RUN}/mosquitto/tls"
    [[ -s "${dir}/server.pem" ]] && return
    command -v openssl >/dev/null 2>&1 || apt_install openssl
    mkdir -p "${dir}"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=sentio test CA" \
        -keyout "${dir}/ca.key" -out "${dir}/ca.pem" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
        -keyout "${dir}/server.key" -out "${dir}/server.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' >"${dir}/ext.cnf"
    openssl x509 -req -in "${dir}/server.csr" -CA "${dir}/ca.pem" -CAkey "${dir}/ca.key" \
        -CAcreateserial -days 3650 -extfile "${dir}/ext.cnf" -out "${dir}/server.pem" 2>/dev/null
}

mqtt_ready() { mosquitto_pub -h 127.0.0.1 -p "${MQTT_PORT}" -q 1 -t sentio/health -n 2>/dev/null; }

start_mosquitto() {
    if port_open "${MQTT_PORT}"; then
        wait_until mosquitto 30 mqtt_ready
        return
    fi
    command -v mosquitto >/dev/null 2>&1 && command -v mosquitto_pub >/dev/null 2>&1 ||
        apt_install mosquitto mosquitto-clients
    local bin
    bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
    mkdir -p "${RUN}/mosquitto"
    # A fresh broker each `up`: the saved sessions of earlier runs (a killed test's backlog, seen
    # here at 1.8 million messages in a 400 MB file) would be loaded, kept and fanned out to, and
    # slow every test and benchmark after them. Within a run, restarts keep the file.
    rm -f "${RUN}/mosquitto/mosquitto.db"
    mqtt_certificates
    # Persistence on, so QoS 1 messages for a disconnected persistent session survive a restart
    # (saved on a clean stop, and every 5 minutes: saving every second rewrote a 160 MB file
    # every second once test sessions had queued a million messages, and slowed everything);
    # sessions nobody resumes for a day go. Run as the caller (as root, mosquitto would switch
    # to a user that cannot write the cache).
    cat >"${RUN}/mosquitto/mosquitto.conf" <<CONF
user $(id -un)
listener ${MQTT_PORT} 127.0.0.1
allow_anonymous true
persistence true
persistence_location ${RUN}/mosquitto/
autosave_interval 300
persistent_client_expiration 1d
max_queued_messages 0
max_inflight_messages 100

# The same broker over TLS, with a certificate of a test CA (mqtt_certificates).
listener ${MQTT_TLS_PORT} 127.0.0.1
allow_anonymous true
cafile ${RUN}/mosquitto/tls/ca.pem
certfile ${RUN}/mosquitto/tls/server.pem
keyfile ${RUN}/mosquitto/tls/server.key
CONF
    log "starting mosquitto on 127.0.0.1:${MQTT_PORT}"
    (cd "${RUN}" && exec nohup "${bin}" -c "${RUN}/mosquitto/mosquitto.conf" >"${RUN}/mosquitto.log" 2>&1) &
    echo $! >"${RUN}/mosquitto.pid"
    wait_until mosquitto 30 mqtt_ready
}

mlflow_ready() { [[ "$(curl -s -m 2 "http://127.0.0.1:${MLFLOW_PORT}/health")" == OK ]]; }

start_mlflow() {
    if mlflow_ready; then return; fi
    local python
    python="$("${HERE}/mlflow-env.sh" | tail -n 1)"
    mkdir -p "${RUN}/mlflow/artifacts"
    log "starting mlflow on 127.0.0.1:${MLFLOW_PORT}"
    # Lean: one worker, no job runner. Artifacts go through the server (mlflow-artifacts:/ URIs),
    # so clients need nothing but HTTP. Its own process group: `mlflow server` runs uvicorn as a
    # child, and stopping the group stops both.
    (cd "${RUN}" && MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false exec setsid nohup "$(dirname "${python}")/mlflow" server \
        --host 127.0.0.1 --port "${MLFLOW_PORT}" --workers 1 \
        --backend-store-uri "sqlite:///${RUN}/mlflow/mlflow.db" \
        --artifacts-destination "${RUN}/mlflow/artifacts" \
        >"${RUN}/mlflow.log" 2>&1) &
    echo $! >"${RUN}/mlflow.pid"
    wait_until mlflow 120 mlflow_ready
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
SENTIO_TEST_MQTT_URL=mqtt://127.0.0.1:${MQTT_PORT}
SENTIO_TEST_MQTT_TLS_URL=mqtts://127.0.0.1:${MQTT_TLS_PORT}
SENTIO_TEST_MQTT_CA=${RUN}/mosquitto/tls/ca.pem
SENTIO_TEST_MLFLOW_URI=http://127.0.0.1:${MLFLOW_PORT}
SENTIO_TEST_MLFLOW_PYTHON=${HOME}/.cache/sentio/mlflow-venv/bin/python
ENV
}

stop() { # name [signal]
    local name=$1 signal=${2:-TERM}
    if [[ -f "${RUN}/${name}.pid" ]]; then
        local pid
        pid=$(cat "${RUN}/${name}.pid")
        kill "-${signal}" "${pid}" 2>/dev/null || true
        # Wait for it to exit (a later `up` must not find its port still open), then insist.
        for _ in $(seq 300); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.1; done
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
        start_postgres
        start_kafka
        start_s3
        start_mosquitto
        start_mlflow
        write_env
        log "ready; settings in ${ENV_FILE}"
        ;;
    down)
        stop kafka
        stop s3s-fs
        stop mosquitto
        stop_group mlflow
        stop_postgres
        ;;
    restart-kafka)
        # For the broker-restart test: a clean stop (the broker flushes and hands over), wait
        # until its port closes, start it again on the same storage.
        mkdir -p "${RUN}"
        stop kafka
        wait_until "kafka shutdown" 60 bash -c "! (exec 3<>/dev/tcp/127.0.0.1/${KAFKA_PORT}) 2>/dev/null"
        start_kafka keep
        ;;
    restart-postgres)
        restart_postgres
        ;;
    cluster-up)
        mkdir -p "${RUN}"
        cluster_up
        ;;
    cluster-kill)
        [[ "${2:-}" =~ ^[123]$ ]] || { echo "usage: scripts/services.sh cluster-kill 1|2|3" >&2; exit 2; }
        stop "kafka-node-$2" KILL
        ;;
    cluster-start)
        [[ "${2:-}" =~ ^[123]$ ]] || { echo "usage: scripts/services.sh cluster-start 1|2|3" >&2; exit 2; }
        cluster_start_node "$2"
        ;;
    cluster-down)
        # Its storage goes too, so there is nothing to shut down cleanly for.
        for n in "${CLUSTER_NODES[@]}"; do stop "kafka-node-${n}" KILL; done
        rm -rf "${RUN}/kafka-cluster"
        ;;
    env)
        [[ -f "${ENV_FILE}" ]] || { log "no settings yet: run scripts/services.sh up"; exit 1; }
        sed 's/^/export /' "${ENV_FILE}"
        ;;
    *)
        echo "usage: scripts/services.sh up|down|env|restart-kafka|restart-postgres|cluster-up|cluster-kill N|cluster-start N|cluster-down" >&2
        exit 2
        ;;
esac
