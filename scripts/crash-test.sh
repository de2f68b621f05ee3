#!/usr/bin/env bash
# The full crash and failover tests against Apache Kafka and PostgreSQL (CI runs each in a short
# form as part of scripts/test.sh):
#   1. the exactly-once crash loop: 1,000,000 seeded readings through the broker into PostgreSQL
#      while `sentio ingest` is killed with SIGKILL at random points 20 times (and restarted each
#      time); the stored rows must equal the produced readings by count and checksum, with no
#      duplicate (device, sensor, seq). CI: 100,000 readings, 3 kills.
#   2. the three-broker failover: 1,000,000 readings through a three-node KRaft cluster
#      (replication 3, min.insync.replicas 2) whose partition leaders' broker is killed with
#      SIGKILL mid-stream and restarted; nothing lost or duplicated. CI: 400,000 readings.
#   3. the embedded fault injection: `sentio demo` on 8 pumps and 3 hours of history killed with
#      SIGKILL 20 times at random points of its backfill, training, replay and live phases, and a
#      second process started on its directory; the store must hold exactly the seeded stream,
#      the archive exactly the store. CI: 2 pumps, 40 minutes, 20 kills.
#   4. the MQTT bridge's crash loop: 1,000,000 readings published to Mosquitto over QoS 1 by four
#      `mosquitto_pub` processes (20,000 readings/s) while `sentio bridge mqtt` (to Kafka, with
#      `sentio ingest` into PostgreSQL) is killed with SIGKILL 10 times at random points and
#      restarted; every reading stored exactly once (count, checksum, no duplicate device,
#      channel and timestamp), those published while it was down included; in MQTT 3.1.1, then
#      in MQTT 5 (bridge and publishers), one after the other. CI: 20,000 readings, 3 kills, each.
# Override with SENTIO_CRASH_READINGS / SENTIO_CRASH_KILLS / SENTIO_FAILOVER_READINGS and
# SENTIO_FAULT_KILLS / SENTIO_FAULT_DEVICES / SENTIO_FAULT_BACKFILL_MIN / SENTIO_FAULT_SEED, and
# SENTIO_BRIDGE_CRASH_READINGS / SENTIO_BRIDGE_CRASH_KILLS / SENTIO_BRIDGE_CRASH_RATE.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sentio/target}"
scripts/services.sh up
set -a
source "$HOME/.cache/sentio/services.env"
set +a
export SENTIO_CRASH_READINGS="${SENTIO_CRASH_READINGS:-1000000}"
export SENTIO_CRASH_KILLS="${SENTIO_CRASH_KILLS:-20}"
export SENTIO_FAILOVER_READINGS="${SENTIO_FAILOVER_READINGS:-1000000}"
cargo test --locked -p sentio --test real_stack ingest_killed_at_random_points -- --nocapture
cargo test --locked -p sentio --test failover -- --nocapture
SENTIO_FAULT_KILLS="${SENTIO_FAULT_KILLS:-20}" SENTIO_FAULT_DEVICES="${SENTIO_FAULT_DEVICES:-8}" \
    SENTIO_FAULT_BACKFILL_MIN="${SENTIO_FAULT_BACKFILL_MIN:-180}" \
    cargo test --locked -p sentio --test faults -- --nocapture
SENTIO_BRIDGE_CRASH_READINGS="${SENTIO_BRIDGE_CRASH_READINGS:-1000000}" \
    SENTIO_BRIDGE_CRASH_KILLS="${SENTIO_BRIDGE_CRASH_KILLS:-10}" \
    SENTIO_BRIDGE_CRASH_RATE="${SENTIO_BRIDGE_CRASH_RATE:-20000}" \
    cargo test --locked -p sentio --test bridge_kafka -- --nocapture --test-threads 1
