#!/usr/bin/env python3
"""An independent Kafka client (confluent-kafka / librdkafka) for the integration tests: reads
COUNT messages of TOPIC from the beginning, checks each one against a JSON Schema and that its key
is the device id, and prints a summary (and, with --print, every message as a JSON line first).
Usage: kafka_read.py BROKERS TOPIC COUNT SCHEMA [--print]"""
import json
import sys
import time
import uuid

import jsonschema
from confluent_kafka import Consumer


def main():
    brokers, topic, count, schema_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    echo = "--print" in sys.argv[5:]
    with open(schema_path, encoding="utf-8") as f:
        validator = jsonschema.Draft202012Validator(json.load(f))
    consumer = Consumer({
        "bootstrap.servers": brokers,
        "group.id": f"independent-{uuid.uuid4()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
    })
    consumer.subscribe([topic])
    seen, devices, deadline = 0, set(), time.time() + 120
    try:
        while seen < count:
            if time.time() > deadline:
                sys.exit(f"only {seen} of {count} messages arrived from {topic}")
            for msg in consumer.consume(num_messages=1000, timeout=1.0):
                if msg.error():
                    sys.exit(f"consumer error: {msg.error()}")
                body = json.loads(msg.value())
                errors = list(validator.iter_errors(body))
                if errors:
                    sys.exit(f"invalid message at {msg.partition()}/{msg.offset()}: {errors[0].message}: {body}")
                if msg.key().decode() != body["device"]:
                    sys.exit(f"key {msg.key()!r} is not the device {body['device']!r}")
                devices.add(body["device"])
                if echo:
                    print(json.dumps(body))
                seen += 1
    finally:
        consumer.close()
    print(f"ok: {seen} valid v1 messages from {len(devices)} devices")


if __name__ == "__main__":
    main()
