#!/usr/bin/env python3
"""The confluent-kafka (librdkafka) side of sluice's end-to-end suite.

test/e2e/python_test.go runs one sub-command per invocation and parses the JSON
lines this prints, one object a line. A failure of the command itself ends with
{"error": ...} and exit status 1; a Kafka error that is the expected outcome of
an operation (an invalid config, say) is reported in that operation's line with
its Kafka error code, and the exit status stays 0.

Records cross the process boundary as hex, so any bytes survive. The input file
of "produce" has one record a line:
    timestampMs TAB keyHex TAB valueHex TAB headers
where headers is empty or nameHex:valueHex pairs joined by commas.

The producer uses partitioner=murmur2_random, the Java client's partitioner for
keyed records, so the Go test knows each record's partition. librdkafka sends a
batch uncompressed when the codec would not make it smaller; "produce" reports
the records it sent so, from librdkafka's msg debug log, in lines
    {"sentUncompressed": {"p": P, "first": F, "last": L, ...}}
(offsets F to L, L exclusive), and {"note": ...} lines, which the Go test takes
out before the acks.
"""

import argparse
import json
import logging
import re
import sys
import time

import confluent_kafka
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    OffsetSpec,
    ResourceType,
)


def emit(obj):
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")


def fail(msg):
    emit({"error": msg})
    sys.stdout.flush()
    sys.exit(1)


def error_code(exc):
    """The Kafka error code inside a confluent-kafka exception (librdkafka's
    codes for broker errors are Kafka's)."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0].code()
    return -1


class BatchLog(logging.Handler):
    """Takes librdkafka's msg debug log (served by poll and flush): the
    batches it built for the topic and any sign that it did not compress a
    batch for another reason than size."""

    # librdkafka's facilities for compression trouble in a producer: the
    # broker does not support the codec (COMPRESSION), or compressing failed
    # (the others); either way it sends the batch uncompressed.
    TROUBLE = ("COMPRESSION", "GZIP", "SNAPPY", "LZ4COMPR", "ZSTDCOMPR")

    def __init__(self, topic):
        super().__init__(logging.DEBUG)
        # rd_kafka_msgset_writer_finalize's line for each batch it builds,
        # a retry's too: partition, message count, size, the first message's
        # msgid and the codec, "uncompressed" when it sends none.
        self.line = re.compile(
            r": " + re.escape(topic) + r" \[(\d+)\]: Produce MessageSet with (\d+) message\(s\) "
            r"\((\d+) bytes, .*MsgId (\d+), BaseSeq -?\d+, .*, (\w+)\)$"
        )
        self.batches = []  # (partition, msgid, count, bytes, codec)
        self.trouble = []

    def emit(self, record):
        text = record.getMessage()
        facility = text.split(" ", 1)[0]
        if facility in self.TROUBLE or "not compressing batch" in text or "sending uncompressed" in text:
            self.trouble.append(text)
        m = self.line.search(text)
        if m:
            self.batches.append((int(m[1]), int(m[4]), int(m[2]), int(m[3]), m[5]))


def sent_uncompressed(codec, batch_log, results):
    """The records librdkafka sent in uncompressed batches, as lines
    {"sentUncompressed": {"p", "first", "last", ...}} (last exclusive).

    librdkafka numbers a partition's messages 1, 2, ... (msgid) as it queues
    them, and the idempotent producer appends them in that order: a
    partition's k-th offset (delivery reports give each record's) is msgid
    k. A batch's debug line names its first msgid and message count, so its
    offsets. Anything that does not add up fails the command."""
    if batch_log.trouble:
        fail(f"produce: librdkafka did not compress for another reason than size: {batch_log.trouble[0]}")
    offsets = {}  # partition -> offsets in order: msgid k is offsets[p][k-1]
    for part, off in results.values():
        offsets.setdefault(part, []).append(off)
    for offs in offsets.values():
        offs.sort()
    # The codecs each message was sent with; a retried batch is built (and
    # logged) again.
    codecs = {}
    for part, msgid, count, size, c in batch_log.batches:
        if c not in (codec, "uncompressed"):
            fail(f"produce: librdkafka built a batch with codec {c}, asked for {codec}")
        offs = offsets.get(part, [])
        if msgid < 1 or msgid + count - 1 > len(offs):
            fail(f"produce: librdkafka logged partition {part} msgids {msgid}..{msgid + count - 1}, but {len(offs)} records were delivered there")
        first, last = offs[msgid - 1], offs[msgid + count - 2]
        if last - first != count - 1:
            fail(f"produce: librdkafka's batch of partition {part} msgids {msgid}..{msgid + count - 1} landed at offsets {first}..{last}, not contiguous")
        for k in range(msgid, msgid + count):
            codecs.setdefault((part, k), set()).add(c)
    for part, offs in offsets.items():
        for k in range(1, len(offs) + 1):
            if (part, k) not in codecs:
                fail(f"produce: librdkafka's msg debug log has no batch with partition {part} msgid {k} (offset {offs[k - 1]})")
    out = []
    notes = []
    seen = set()
    for part, msgid, count, size, c in batch_log.batches:
        if c != "uncompressed" or (part, msgid, count) in seen:
            continue
        seen.add((part, msgid, count))
        # Messages some build of a batch did compress are left out: which
        # build the broker kept is unknown, so the Go test stays strict.
        run = None
        for k in range(msgid, msgid + count):
            off = offsets[part][k - 1]
            if codecs[(part, k)] == {"uncompressed"}:
                if run is None:
                    run = [off, off + 1]
                else:
                    run[1] = off + 1
            else:
                notes.append({"note": f"partition {part} offset {off} was sent both uncompressed and with {codec}: not reported"})
                if run is not None:
                    out.append((part, run, msgid, count, size))
                run = None
        if run is not None:
            out.append((part, run, msgid, count, size))
    return notes + [
        {"sentUncompressed": {"p": part, "first": run[0], "last": run[1], "msgid": msgid, "count": count, "bytes": size}}
        for part, run, msgid, count, size in out
    ]


def produce(args):
    conf = {
        "bootstrap.servers": args.bootstrap,
        "compression.type": args.codec,
        "partitioner": "murmur2_random",
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
    }
    batch_log = None
    if args.codec != "none":
        batch_log = BatchLog(args.topic)
        logger = logging.getLogger("sluice_e2e.librdkafka")
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        logger.addHandler(batch_log)
        conf["debug"] = "msg"
        conf["logger"] = logger
    p = Producer(conf)
    results = {}
    errors = []

    def on_delivery(index):
        def cb(err, msg):
            if err is not None:
                errors.append(str(err))
                results[index] = (-1, -1)
            else:
                results[index] = (msg.partition(), msg.offset())

        return cb

    n = 0
    with open(args.input, "r", encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            ts, key, value, headers = line.split("\t")
            hdrs = []
            if headers:
                for pair in headers.split(","):
                    name, val = pair.split(":")
                    hdrs.append((bytes.fromhex(name).decode("utf-8"), bytes.fromhex(val)))
            while True:
                try:
                    p.produce(
                        args.topic,
                        value=bytes.fromhex(value),
                        key=bytes.fromhex(key),
                        headers=hdrs,
                        timestamp=int(ts),
                        on_delivery=on_delivery(n),
                    )
                    break
                except BufferError:
                    p.poll(0.1)
            p.poll(0)
            n += 1
    remaining = p.flush(60)
    if remaining:
        fail(f"produce: {remaining} records still undelivered after 60 s")
    if errors:
        fail(f"produce: {len(errors)} delivery errors, first: {errors[0]}")
    if batch_log is not None:
        for line in sent_uncompressed(args.codec, batch_log, results):
            emit(line)
    for i in range(n):
        part, off = results[i]
        emit({"i": i, "p": part, "o": off})
    emit({"done": "produce", "count": n})


def produce_steady(args):
    """Values v000000, v000001, ... at about --rate a second for --seconds,
    acks=all and idempotent, through whatever happens to the brokers
    meanwhile; one line per acknowledged record, {"p","o","v","t"} (t: when
    the ack arrived, ms), or {"failed","message"}."""
    p = Producer({
        "bootstrap.servers": args.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 0,
    })

    def cb(err, msg):
        v = msg.value().decode()
        if err is not None:
            emit({"failed": v, "message": str(err)})
        else:
            emit({"p": msg.partition(), "o": msg.offset(), "v": v, "t": int(time.time() * 1000)})

    period = 1.0 / args.rate
    end = time.monotonic() + args.seconds
    nxt = time.monotonic()
    i = 0
    while time.monotonic() < end:
        while True:
            try:
                p.produce(args.topic, value=f"v{i:06d}".encode(), on_delivery=cb)
                break
            except BufferError:
                p.poll(0.05)
        i += 1
        nxt += period
        while (wait := nxt - time.monotonic()) > 0:
            p.poll(wait)  # returns early when a delivery report runs
    remaining = p.flush(60)
    if remaining:
        fail(f"produce-steady: {remaining} records still undelivered after 60 s")


def consume(args):
    c = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            # confluent-kafka's Consumer requires a group id; with assign() and
            # no commits it never joins the group.
            "group.id": "sluice-e2e-python-assign",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
        }
    )
    starts = {}
    for spec in args.from_ or []:
        part, off = spec.split(":")
        starts[int(part)] = int(off)
    tps = [
        TopicPartition(args.topic, p, starts.get(p, confluent_kafka.OFFSET_BEGINNING))
        for p in range(args.partitions)
    ]
    end = {}
    for p in range(args.partitions):
        low, high = c.get_watermark_offsets(TopicPartition(args.topic, p), timeout=30)
        end[p] = high
    c.assign(tps)
    done = {p for p in range(args.partitions) if end[p] == 0 or starts.get(p, -2) >= end[p]}
    count = 0
    deadline = time.monotonic() + args.timeout_ms / 1000.0
    while len(done) < args.partitions:
        if time.monotonic() > deadline:
            fail(f"consume: timed out; partitions done {sorted(done)}, end offsets {end}")
        msgs = c.consume(num_messages=1000, timeout=0.5)
        for m in msgs:
            if m.error() is not None:
                if m.error().code() == KafkaError._PARTITION_EOF:
                    if m.offset() >= end[m.partition()]:
                        done.add(m.partition())
                    continue
                fail(f"consume: {m.error()}")
            if m.offset() >= end[m.partition()]:
                done.add(m.partition())
                continue
            ts_type, ts = m.timestamp()
            emit(
                {
                    "p": m.partition(),
                    "o": m.offset(),
                    "ts": ts,
                    "k": None if m.key() is None else m.key().hex(),
                    "v": None if m.value() is None else m.value().hex(),
                    "h": [
                        [name.encode("utf-8").hex(), None if val is None else val.hex()]
                        for name, val in (m.headers() or [])
                    ],
                }
            )
            count += 1
            if m.offset() + 1 >= end[m.partition()]:
                done.add(m.partition())
    c.close()
    emit({"done": "consume", "count": count})


def admin(args):
    # Callers keep the client referenced until its futures resolve: a
    # collected AdminClient destroys its handle and fails them.
    return AdminClient({"bootstrap.servers": args.bootstrap})


def create_topic(args):
    config = dict(kv.split("=", 1) for kv in (args.config or []))
    a = admin(args)
    fs = a.create_topics(
        [NewTopic(args.topic, num_partitions=args.partitions, replication_factor=1, config=config)],
        operation_timeout=30,
    )
    code, msg = 0, ""
    try:
        fs[args.topic].result()
    except KafkaException as e:
        code, msg = error_code(e), str(e)
    emit({"op": "create-topic", "code": code, "message": msg})


def describe_configs(args):
    res = ConfigResource(ResourceType.TOPIC, args.topic)
    a = admin(args)
    fs = a.describe_configs([res])
    entries = list(fs.values())[0].result()
    for name, e in sorted(entries.items()):
        emit(
            {
                "name": name,
                "value": e.value,
                "source": confluent_kafka.admin.ConfigSource(e.source).name,
                "readOnly": bool(e.is_read_only),
                "sensitive": bool(e.is_sensitive),
            }
        )


def alter_configs(args):
    entries = []
    for kv in args.set or []:
        name, value = kv.split("=", 1)
        entries.append(ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET))
    for name in args.delete or []:
        entries.append(ConfigEntry(name, None, incremental_operation=AlterConfigOpType.DELETE))
    res = ConfigResource(ResourceType.TOPIC, args.topic, incremental_configs=entries)
    a = admin(args)
    fs = a.incremental_alter_configs([res], validate_only=args.validate_only)
    code, msg = 0, ""
    try:
        list(fs.values())[0].result()
    except KafkaException as e:
        code, msg = error_code(e), str(e)
    emit({"op": "alter-configs", "code": code, "message": msg})


def offset_spec(spec):
    if spec == "earliest":
        return OffsetSpec.earliest()
    if spec == "latest":
        return OffsetSpec.latest()
    if spec == "max-timestamp":
        return OffsetSpec.max_timestamp()
    if spec.startswith("timestamp:"):
        return OffsetSpec.for_timestamp(int(spec[len("timestamp:"):]))
    fail(f"unknown spec {spec}")


def list_offsets(args):
    """One line per spec and partition: {"spec":S,"p":P,"o":O,"ts":T}."""
    a = admin(args)
    for spec in args.spec or ["latest"]:
        req = {TopicPartition(args.topic, p): offset_spec(spec) for p in range(args.partitions)}
        fs = a.list_offsets(req, request_timeout=30)
        out = {}
        for tp, f in fs.items():
            info = f.result()
            out[tp.partition] = (info.offset, info.timestamp)
        for p in range(args.partitions):
            emit({"spec": spec, "p": p, "o": out[p][0], "ts": out[p][1]})


def delete_records(args):
    a = admin(args)
    if not hasattr(a, "delete_records"):
        fail("this confluent-kafka has no AdminClient.delete_records")
    fs = a.delete_records([TopicPartition(args.topic, args.partition, args.before)])
    code, low = 0, -1
    try:
        res = list(fs.values())[0].result()
        low = res.low_watermark
    except KafkaException as e:
        code = error_code(e)
    emit({"op": "delete-records", "code": code, "low": low})


def describe_cluster(args):
    a = admin(args)
    d = a.describe_cluster(request_timeout=30).result()
    emit(
        {
            "clusterId": d.cluster_id,
            "controller": -1 if d.controller is None else d.controller.id,
            "nodes": [{"id": n.id, "host": n.host, "port": n.port} for n in d.nodes],
        }
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("command")
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic")
    ap.add_argument("--codec", default="none")
    ap.add_argument("--input")
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--partition", type=int, default=0)
    ap.add_argument("--before", type=int, default=0)
    ap.add_argument("--from", dest="from_", action="append")
    ap.add_argument("--config", action="append")
    ap.add_argument("--set", action="append")
    ap.add_argument("--delete", action="append")
    ap.add_argument("--validate-only", type=lambda s: s == "true", default=False)
    ap.add_argument("--spec", action="append")
    ap.add_argument("--timeout-ms", type=int, default=60000)
    ap.add_argument("--rate", type=int, default=100)
    ap.add_argument("--seconds", type=int, default=5)
    args = ap.parse_args()
    commands = {
        "produce": produce,
        "produce-steady": produce_steady,
        "consume": consume,
        "create-topic": create_topic,
        "describe-configs": describe_configs,
        "alter-configs": alter_configs,
        "list-offsets": list_offsets,
        "delete-records": delete_records,
        "describe-cluster": describe_cluster,
    }
    if args.command not in commands:
        fail(f"unknown command {args.command}")
    try:
        commands[args.command](args)
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - reported to the Go test
        fail(f"{type(e).__name__}: {e}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
