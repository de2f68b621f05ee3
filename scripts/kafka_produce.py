#!/usr/bin/env python3
"""An independent Kafka producer (confluent-kafka / librdkafka) for `sentio bench --real`: reads
KEY<TAB>PAYLOAD lines from FILE, produces them to TOPIC with the producer settings of Sentio's
KafkaBus (idempotent, acks=all, lz4, murmur2 partitioner, the given linger), waits until every
message is acknowledged, and prints one JSON object: {"messages", "seconds", "per_second"}.

Usage: kafka_produce.py BROKERS WARMUP_TOPIC TOPIC FILE LINGER_MS DELIVERY_TIMEOUT_MS

Only the produce loop and the final flush are timed. Before the clock starts it reads the file,
creates the producer, delivers the first message to WARMUP_TOPIC (connecting, getting a producer id)
and fetches TOPIC's metadata, as the Rust producers it is compared with do."""
import json
import sys
import time

from confluent_kafka import KafkaException, Producer


def main():
    if len(sys.argv) != 7:
        sys.exit(__doc__)
    brokers, warmup, topic, path = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    linger_ms, delivery_timeout_ms = int(sys.argv[5]), int(sys.argv[6])
    with open(path, "rb") as f:
        records = [line.rstrip(b"\n").split(b"\t", 1) for line in f if line.strip()]
    producer = Producer({
        "bootstrap.servers": brokers,
        "client.id": "sentio-bench-python",
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": "murmur2_random",
        "linger.ms": linger_ms,
        "delivery.timeout.ms": delivery_timeout_ms,
        "compression.type": "lz4",
    })
    if records:
        producer.produce(warmup, value=records[0][1], key=records[0][0])
        if producer.flush(30):
            sys.exit(f"the warm-up message to {warmup} was not acknowledged")
    metadata = producer.list_topics(topic, timeout=30)
    if metadata.topics[topic].error is not None:
        sys.exit(f"topic {topic}: {metadata.topics[topic].error}")

    failed = []

    def on_delivery(err, _msg):
        if err is not None:
            failed.append(err)

    started = time.perf_counter()
    for key, payload in records:
        while True:
            try:
                producer.produce(topic, value=payload, key=key, on_delivery=on_delivery)
                break
            except BufferError:
                # The local queue is full: serve delivery reports until there is room.
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(120)
    seconds = time.perf_counter() - started
    if remaining:
        sys.exit(f"{remaining} messages still unacknowledged after the flush timeout")
    if failed:
        sys.exit(f"{len(failed)} deliveries failed, first: {failed[0]}")
    print(json.dumps({
        "messages": len(records),
        "seconds": seconds,
        "per_second": len(records) / seconds,
    }))


if __name__ == "__main__":
    try:
        main()
    except KafkaException as e:
        sys.exit(f"kafka error: {e}")
