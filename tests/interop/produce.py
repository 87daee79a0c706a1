"""Produce N JSON messages to a topic with confluent-kafka (an independent
client), keyed k<i % 7>, idempotent and acks=all, and wait for every ack.

usage: produce.py BOOTSTRAP TOPIC N
"""
import json
import sys

from confluent_kafka import Producer


def main():
    bootstrap, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                  "acks": "all", "compression.type": "zstd"})
    failures = []

    def done(err, _msg):
        if err is not None:
            failures.append(str(err))

    for i in range(n):
        p.produce(topic, key=f"k{i % 7}", value=json.dumps({"seq": i}), on_delivery=done)
        p.poll(0)
    left = p.flush(30)
    if left or failures:
        sys.exit(f"{left} unflushed, failures: {failures[:5]}")
    print(n)


if __name__ == "__main__":
    main()
