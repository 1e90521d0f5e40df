#!/usr/bin/env python3
"""One confluent-kafka (librdkafka) consumer-group member for
test/groups/librdkafka_test.go.

It subscribes to --topic in --group, processes records one by one, commits
what it processed synchronously after every batch and before giving
partitions up, and reports on stdout, one JSON object a line:

    {"ev": "assigned", "t": ns, "partitions": [..]}  (what it owns from now)
    {"ev": "revoked",  "t": ns, "partitions": [..]}  (what it no longer owns)
    {"ev": "lost",     "t": ns, "partitions": [..]}  (taken without a revoke)
    {"ev": "rec",      "t": ns, "p": P, "o": O}
    {"ev": "committed", "t": ns, "p": P, "o": O}     (one per partition committed)
    {"ev": "commit_failed", "t": ns, "error": "..."}
    {"ev": "closed",   "t": ns}                      (committed and left the group)

Processing a record takes --delay-ms, so that members can join and leave
while records flow. It stops after --max records (exactly: the rest of a
fetched batch is neither processed nor committed), once it has owned
partitions and seen no record for --idle-ms, on SIGTERM, or after
--timeout-s; then it commits and closes, which leaves the group. With
cooperative-sticky, assigned and revoked are the increments.
"""

import argparse
import json
import signal
import sys
import time

from confluent_kafka import Consumer, KafkaException, TopicPartition


def emit(ev, **kw):
    kw["ev"] = ev
    kw["t"] = time.time_ns()
    sys.stdout.write(json.dumps(kw, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--strategy", default="range")
    ap.add_argument("--max", type=int, default=0)
    ap.add_argument("--idle-ms", type=int, default=3000)
    ap.add_argument("--client-id", default="librdkafka-member")
    ap.add_argument("--timeout-s", type=float, default=60)
    ap.add_argument("--delay-ms", type=float, default=0, help="processing time per record")
    ap.add_argument("--batch", type=int, default=100, help="records per consume() call")
    args = ap.parse_args()

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))

    c = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "client.id": args.client_id,
        "partition.assignment.strategy": args.strategy,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 300,
        "fetch.wait.max.ms": 100,
        "topic.metadata.refresh.interval.ms": 1000,
    })
    owned = set()
    processed = {}  # partition -> next offset to commit (last processed + 1)
    dirty = set()  # partitions processed since their last commit
    last = [time.monotonic()]  # when a record or an assignment last came

    def commit(partitions):
        offs = [TopicPartition(args.topic, p, processed[p]) for p in sorted(partitions) if p in processed]
        if not offs:
            return
        try:
            res = c.commit(offsets=offs, asynchronous=False)
        except KafkaException as e:
            emit("commit_failed", error=str(e))
            return
        for tp in res:
            if tp.error is not None:
                emit("commit_failed", error=str(tp.error), p=tp.partition)
            else:
                dirty.discard(tp.partition)
                emit("committed", p=tp.partition, o=tp.offset)

    def on_assign(consumer, tps):
        ps = sorted(tp.partition for tp in tps)
        owned.update(ps)
        last[0] = time.monotonic()
        emit("assigned", partitions=ps)
        if args.strategy == "cooperative-sticky":
            consumer.incremental_assign(tps)
        else:
            consumer.assign(tps)

    def on_revoke(consumer, tps):
        ps = sorted(tp.partition for tp in tps)
        commit([p for p in ps if p in dirty])
        for p in ps:
            owned.discard(p)
            processed.pop(p, None)
            dirty.discard(p)
        emit("revoked", partitions=ps)
        if args.strategy == "cooperative-sticky":
            consumer.incremental_unassign(tps)
        else:
            consumer.unassign()

    def on_lost(consumer, tps):
        ps = sorted(tp.partition for tp in tps)
        for p in ps:
            owned.discard(p)
            processed.pop(p, None)
            dirty.discard(p)
        emit("lost", partitions=ps)
        if args.strategy == "cooperative-sticky":
            consumer.incremental_unassign(tps)
        else:
            consumer.unassign()

    c.subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
    count = 0
    ever_owned = False
    deadline = time.monotonic() + args.timeout_s
    while not stop and time.monotonic() < deadline:
        msgs = c.consume(num_messages=args.batch, timeout=0.2)
        if owned:
            ever_owned = True
        done = False
        for m in msgs:
            if m.error() is not None:
                if not m.error().is_fatal():
                    continue
                raise KafkaException(m.error())
            emit("rec", p=m.partition(), o=m.offset())
            if args.delay_ms:
                time.sleep(args.delay_ms / 1000)
            processed[m.partition()] = m.offset() + 1
            dirty.add(m.partition())
            count += 1
            last[0] = time.monotonic()
            if args.max and count >= args.max:
                done = True
                break
        commit(list(dirty))
        if done:
            break
        if not msgs and ever_owned and (time.monotonic() - last[0]) * 1000 >= args.idle_ms:
            break
    commit(list(dirty))
    c.close()
    emit("closed")


if __name__ == "__main__":
    main()
