"""Produce every line of the given files as one message each, with
confluent-kafka (an independent client), keyed by the record's user_id (so
one principal's events stay ordered) when it has one; wait for every ack.

usage: produce_lines.py BOOTSTRAP TOPIC FILE [FILE...]
prints the number of messages produced.
"""
import json
import sys

from confluent_kafka import Producer


def main():
    bootstrap, topic, files = sys.argv[1], sys.argv[2], sys.argv[3:]
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                  "acks": "all", "compression.type": "lz4", "linger.ms": 20})
    failures = []

    def done(err, _msg):
        if err is not None:
            failures.append(str(err))

    n = 0
    for path in files:
        with open(path, "rb") as f:
            for line in f:
                line = line.rstrip(b"\n")
                if not line:
                    continue
                key = None
                try:
                    user = json.loads(line).get("user_id")
                    key = user.encode() if isinstance(user, str) else None
                except (ValueError, AttributeError):
                    pass
                p.produce(topic, key=key, value=line, on_delivery=done)
                p.poll(0)
                n += 1
    left = p.flush(60)
    if left or failures:
        sys.exit(f"{left} unflushed, failures: {failures[:5]}")
    print(n)


if __name__ == "__main__":
    main()
