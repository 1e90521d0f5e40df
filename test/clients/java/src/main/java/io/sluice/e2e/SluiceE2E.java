package io.sluice.e2e;

import java.io.BufferedReader;
import java.io.FileInputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.AlterConfigsOptions;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.DeletedRecords;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.protocol.Errors;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * The Java-client side of sluice's end-to-end suite (test/e2e/java_test.go).
 *
 * One sub-command per invocation; results are JSON lines on stdout, one object
 * a line, that the Go test parses. A failure of the command itself ends with
 * {"error":...} and exit status 1; a Kafka error that is the expected outcome
 * of an operation (say, an invalid config) is reported in that operation's
 * line with its Kafka error code, and the exit status stays 0.
 *
 * Records cross the process boundary as hex, so any bytes survive:
 * the input file of "produce" has one record a line,
 *   timestampMs TAB keyHex TAB valueHex TAB headers
 * where headers is empty or nameHex:valueHex pairs joined by commas.
 *
 * The producer and consumer run with the client's DEFAULT settings (so the
 * producer is idempotent with acks=all) except those a test must pin:
 * bootstrap servers, serializers and compression.type.
 */
public final class SluiceE2E {
    private static final PrintStream OUT = new PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.out), false, StandardCharsets.UTF_8);

    public static void main(String[] args) {
        if (args.length < 1) {
            fail("usage: SluiceE2E COMMAND --bootstrap HOST:PORT [options]");
        }
        Args a = new Args(args);
        try {
            switch (args[0]) {
                case "produce": produce(a); break;
                case "produce-steady": produceSteady(a); break;
                case "consume": consume(a); break;
                case "create-topic": createTopic(a); break;
                case "describe-configs": describeConfigs(a); break;
                case "alter-configs": alterConfigs(a); break;
                case "list-offsets": listOffsets(a); break;
                case "delete-records": deleteRecords(a); break;
                case "describe-cluster": describeCluster(a); break;
                case "txn-copy": txnCopy(a); break;
                default: fail("unknown command " + args[0]);
            }
        } catch (Throwable e) {
            fail(e.getClass().getName() + ": " + e.getMessage());
        }
        OUT.flush();
        System.exit(0);
    }

    // txn-copy --bootstrap B --in IN --out OUT --group G --id TXNID --count N
    //
    // Consume-transform-produce with the Java client's transactions: a
    // read_committed consumer of group G on IN, a producer with
    // transactional.id TXNID; each poll's records are written to OUT as
    // "java copy of VALUE" and the consumer's offsets sent to the same
    // transaction (sendOffsetsToTransaction). The first transaction is
    // aborted (and the consumer rewound to its committed offsets), the
    // rest committed, until N records were copied in committed
    // transactions. Prints {"copied":N,"aborted":K}.
    static void txnCopy(Args a) throws Exception {
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, a.get("bootstrap"));
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        c.put(ConsumerConfig.GROUP_ID_CONFIG, a.get("group"));
        c.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, a.get("bootstrap"));
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, a.get("id"));
        String out = a.get("out");
        int want = Integer.parseInt(a.get("count"));
        int copied = 0, aborted = 0;
        long deadline = System.currentTimeMillis() + 90_000;
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(c);
             KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
            producer.initTransactions();
            consumer.subscribe(Collections.singletonList(a.get("in")));
            while (copied < want && System.currentTimeMillis() < deadline) {
                ConsumerRecords<byte[], byte[]> recs = consumer.poll(Duration.ofMillis(500));
                if (recs.isEmpty()) {
                    continue;
                }
                producer.beginTransaction();
                Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
                for (ConsumerRecord<byte[], byte[]> r : recs) {
                    byte[] v = ("java copy of " + new String(r.value(), StandardCharsets.UTF_8)).getBytes(StandardCharsets.UTF_8);
                    producer.send(new ProducerRecord<>(out, v));
                    offsets.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                }
                producer.sendOffsetsToTransaction(offsets, consumer.groupMetadata());
                if (aborted == 0) {
                    producer.abortTransaction();
                    aborted += recs.count();
                    Map<TopicPartition, OffsetAndMetadata> committed = consumer.committed(consumer.assignment());
                    for (TopicPartition tp : consumer.assignment()) {
                        OffsetAndMetadata om = committed.get(tp);
                        if (om == null) {
                            consumer.seekToBeginning(Collections.singletonList(tp));
                        } else {
                            consumer.seek(tp, om.offset());
                        }
                    }
                    continue;
                }
                producer.commitTransaction();
                copied += recs.count();
            }
        }
        OUT.println("{\"copied\":" + copied + ",\"aborted\":" + aborted + "}");
    }

    // produce-steady --bootstrap B1,B2 --topic T --rate N --seconds S
    //
    // Produces values v000000, v000001, ... at about N a second for S
    // seconds with the client's defaults (acks=all, idempotent), through
    // whatever happens to the brokers meanwhile (a hand-over, a failover),
    // and prints one line per acknowledged record:
    // {"p":P,"o":O,"v":"v000123","t":MS}, MS when the ack arrived. Failed
    // records print {"failed":"v000124","message":...}.
    static void produceSteady(Args a) throws Exception {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, a.get("bootstrap"));
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.LINGER_MS_CONFIG, "0");
        String topic = a.get("topic");
        int rate = Integer.parseInt(a.get("rate"));
        long end = System.nanoTime() + Long.parseLong(a.get("seconds")) * 1_000_000_000L;
        long period = 1_000_000_000L / rate;
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
            long next = System.nanoTime();
            for (int i = 0; System.nanoTime() < end; i++) {
                final String v = String.format("v%06d", i);
                producer.send(new ProducerRecord<>(topic, v.getBytes(StandardCharsets.UTF_8)), (RecordMetadata md, Exception e) -> {
                    synchronized (OUT) {
                        if (e != null) {
                            OUT.println("{\"failed\":\"" + v + "\",\"message\":" + str(e.toString()) + "}");
                        } else {
                            OUT.println("{\"p\":" + md.partition() + ",\"o\":" + md.offset() + ",\"v\":\"" + v + "\",\"t\":" + System.currentTimeMillis() + "}");
                        }
                    }
                });
                next += period;
                long wait = next - System.nanoTime();
                if (wait > 0) {
                    Thread.sleep(wait / 1_000_000L, (int) (wait % 1_000_000L));
                }
            }
            producer.flush();
        }
    }

    // produce --bootstrap B --topic T --codec C --input FILE
    static void produce(Args a) throws Exception {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, a.get("bootstrap"));
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, a.get("codec"));
        String topic = a.get("topic");

        List<String[]> lines = new ArrayList<>();
        try (BufferedReader r = new BufferedReader(new InputStreamReader(new FileInputStream(a.get("input")), StandardCharsets.UTF_8))) {
            String line;
            while ((line = r.readLine()) != null) {
                if (!line.isEmpty()) {
                    lines.add(line.split("\t", -1));
                }
            }
        }
        int n = lines.size();
        int[] partitions = new int[n];
        long[] offsets = new long[n];
        AtomicReference<Exception> firstError = new AtomicReference<>();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
            for (int i = 0; i < n; i++) {
                String[] f = lines.get(i);
                long ts = Long.parseLong(f[0]);
                List<Header> headers = new ArrayList<>();
                if (!f[3].isEmpty()) {
                    for (String pair : f[3].split(",", -1)) {
                        int colon = pair.indexOf(':');
                        headers.add(new RecordHeader(new String(unhex(pair.substring(0, colon)), StandardCharsets.UTF_8), unhex(pair.substring(colon + 1))));
                    }
                }
                ProducerRecord<byte[], byte[]> rec = new ProducerRecord<>(topic, null, ts, unhex(f[1]), unhex(f[2]), headers);
                final int index = i;
                producer.send(rec, (RecordMetadata md, Exception e) -> {
                    if (e != null) {
                        firstError.compareAndSet(null, e);
                        partitions[index] = -1;
                        return;
                    }
                    partitions[index] = md.partition();
                    offsets[index] = md.offset();
                });
            }
            producer.flush();
        }
        if (firstError.get() != null) {
            Exception e = firstError.get();
            fail("produce: " + e.getClass().getName() + ": " + e.getMessage());
        }
        for (int i = 0; i < n; i++) {
            OUT.println("{\"i\":" + i + ",\"p\":" + partitions[i] + ",\"o\":" + offsets[i] + "}");
        }
        OUT.println("{\"done\":\"produce\",\"count\":" + n + "}");
    }

    // consume --bootstrap B --topic T --partitions N [--from p:offset ...]
    // Reads every partition from its start (or the given offset) up to the end
    // offset it had when the command started.
    static void consume(Args a) throws Exception {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, a.get("bootstrap"));
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        String topic = a.get("topic");
        int np = Integer.parseInt(a.get("partitions"));
        List<TopicPartition> tps = new ArrayList<>();
        for (int i = 0; i < np; i++) {
            tps.add(new TopicPartition(topic, i));
        }
        long timeoutMs = Long.parseLong(a.getOr("timeout-ms", "60000"));
        int count = 0;
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(p)) {
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            for (String from : a.all("from")) {
                String[] f = from.split(":");
                consumer.seek(new TopicPartition(topic, Integer.parseInt(f[0])), Long.parseLong(f[1]));
            }
            Map<TopicPartition, Long> end = consumer.endOffsets(tps);
            long deadline = System.currentTimeMillis() + timeoutMs;
            StringBuilder sb = new StringBuilder();
            while (true) {
                boolean done = true;
                for (TopicPartition tp : tps) {
                    if (consumer.position(tp) < end.get(tp)) {
                        done = false;
                        break;
                    }
                }
                if (done) {
                    break;
                }
                if (System.currentTimeMillis() > deadline) {
                    fail("consume: timed out before reaching the end offsets " + end);
                }
                ConsumerRecords<byte[], byte[]> recs = consumer.poll(Duration.ofMillis(500));
                for (ConsumerRecord<byte[], byte[]> r : recs) {
                    if (r.offset() >= end.get(new TopicPartition(r.topic(), r.partition()))) {
                        continue;
                    }
                    sb.setLength(0);
                    sb.append("{\"p\":").append(r.partition())
                        .append(",\"o\":").append(r.offset())
                        .append(",\"ts\":").append(r.timestamp())
                        .append(",\"k\":").append(r.key() == null ? "null" : "\"" + hex(r.key()) + "\"")
                        .append(",\"v\":").append(r.value() == null ? "null" : "\"" + hex(r.value()) + "\"")
                        .append(",\"h\":[");
                    boolean first = true;
                    for (Header h : r.headers()) {
                        if (!first) {
                            sb.append(',');
                        }
                        first = false;
                        sb.append("[\"").append(hex(h.key().getBytes(StandardCharsets.UTF_8))).append("\",")
                            .append(h.value() == null ? "null" : "\"" + hex(h.value()) + "\"").append(']');
                    }
                    sb.append("]}");
                    OUT.println(sb);
                    count++;
                }
            }
        }
        OUT.println("{\"done\":\"consume\",\"count\":" + count + "}");
    }

    // create-topic --bootstrap B --topic T --partitions N [--config k=v ...]
    static void createTopic(Args a) throws Exception {
        try (Admin admin = admin(a)) {
            Map<String, String> configs = new HashMap<>();
            for (String kv : a.all("config")) {
                int eq = kv.indexOf('=');
                configs.put(kv.substring(0, eq), kv.substring(eq + 1));
            }
            NewTopic nt = new NewTopic(a.get("topic"), Integer.parseInt(a.get("partitions")), (short) 1).configs(configs);
            short code = 0;
            String msg = "";
            try {
                admin.createTopics(Collections.singleton(nt)).all().get();
            } catch (ExecutionException e) {
                code = Errors.forException(e.getCause()).code();
                msg = String.valueOf(e.getCause().getMessage());
            }
            OUT.println("{\"op\":\"create-topic\",\"code\":" + code + ",\"message\":" + str(msg) + "}");
        }
    }

    // describe-configs --bootstrap B --topic T
    static void describeConfigs(Args a) throws Exception {
        try (Admin admin = admin(a)) {
            ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, a.get("topic"));
            Config cfg = admin.describeConfigs(Collections.singleton(res)).all().get().get(res);
            for (ConfigEntry e : cfg.entries()) {
                OUT.println("{\"name\":" + str(e.name()) + ",\"value\":" + str(e.value())
                    + ",\"source\":" + str(e.source().name()) + ",\"readOnly\":" + e.isReadOnly()
                    + ",\"sensitive\":" + e.isSensitive() + "}");
            }
        }
    }

    // alter-configs --bootstrap B --topic T [--set k=v ...] [--delete k ...] [--validate-only true]
    static void alterConfigs(Args a) throws Exception {
        try (Admin admin = admin(a)) {
            ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, a.get("topic"));
            List<AlterConfigOp> ops = new ArrayList<>();
            for (String kv : a.all("set")) {
                int eq = kv.indexOf('=');
                ops.add(new AlterConfigOp(new ConfigEntry(kv.substring(0, eq), kv.substring(eq + 1)), AlterConfigOp.OpType.SET));
            }
            for (String k : a.all("delete")) {
                ops.add(new AlterConfigOp(new ConfigEntry(k, null), AlterConfigOp.OpType.DELETE));
            }
            AlterConfigsOptions opts = new AlterConfigsOptions().validateOnly(Boolean.parseBoolean(a.getOr("validate-only", "false")));
            short code = 0;
            String msg = "";
            try {
                admin.incrementalAlterConfigs(Collections.singletonMap(res, ops), opts).all().get();
            } catch (ExecutionException e) {
                code = Errors.forException(e.getCause()).code();
                msg = String.valueOf(e.getCause().getMessage());
            }
            OUT.println("{\"op\":\"alter-configs\",\"code\":" + code + ",\"message\":" + str(msg) + "}");
        }
    }

    // list-offsets --bootstrap B --topic T --partitions N --spec S [--spec S ...]
    // where S is earliest, latest, max-timestamp or timestamp:MS; one line per
    // spec and partition.
    static void listOffsets(Args a) throws Exception {
        try (Admin admin = admin(a)) {
            int np = Integer.parseInt(a.get("partitions"));
            String topic = a.get("topic");
            for (String spec : a.all("spec")) {
                OffsetSpec os;
                if (spec.equals("earliest")) {
                    os = OffsetSpec.earliest();
                } else if (spec.equals("latest")) {
                    os = OffsetSpec.latest();
                } else if (spec.equals("max-timestamp")) {
                    os = OffsetSpec.maxTimestamp();
                } else if (spec.startsWith("timestamp:")) {
                    os = OffsetSpec.forTimestamp(Long.parseLong(spec.substring("timestamp:".length())));
                } else {
                    throw new IllegalArgumentException("unknown spec " + spec);
                }
                Map<TopicPartition, OffsetSpec> req = new HashMap<>();
                for (int i = 0; i < np; i++) {
                    req.put(new TopicPartition(topic, i), os);
                }
                Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> res = admin.listOffsets(req).all().get();
                for (int i = 0; i < np; i++) {
                    ListOffsetsResult.ListOffsetsResultInfo info = res.get(new TopicPartition(topic, i));
                    OUT.println("{\"spec\":" + str(spec) + ",\"p\":" + i + ",\"o\":" + info.offset() + ",\"ts\":" + info.timestamp() + "}");
                }
            }
        }
    }

    // delete-records --bootstrap B --topic T --partition P --before OFFSET
    static void deleteRecords(Args a) throws Exception {
        try (Admin admin = admin(a)) {
            TopicPartition tp = new TopicPartition(a.get("topic"), Integer.parseInt(a.get("partition")));
            Map<TopicPartition, RecordsToDelete> req = Collections.singletonMap(tp, RecordsToDelete.beforeOffset(Long.parseLong(a.get("before"))));
            short code = 0;
            long low = -1;
            try {
                DeletedRecords dr = admin.deleteRecords(req).lowWatermarks().get(tp).get();
                low = dr.lowWatermark();
            } catch (ExecutionException e) {
                code = Errors.forException(e.getCause()).code();
            }
            OUT.println("{\"op\":\"delete-records\",\"code\":" + code + ",\"low\":" + low + "}");
        }
    }

    // describe-cluster --bootstrap B
    static void describeCluster(Args a) throws Exception {
        try (Admin admin = admin(a)) {
            DescribeClusterResult r = admin.describeCluster();
            Collection<Node> nodes = r.nodes().get();
            Node controller = r.controller().get();
            StringBuilder sb = new StringBuilder();
            sb.append("{\"clusterId\":").append(str(r.clusterId().get()))
                .append(",\"controller\":").append(controller == null ? -1 : controller.id())
                .append(",\"nodes\":[");
            boolean first = true;
            for (Node n : nodes) {
                if (!first) {
                    sb.append(',');
                }
                first = false;
                sb.append("{\"id\":").append(n.id()).append(",\"host\":").append(str(n.host())).append(",\"port\":").append(n.port()).append('}');
            }
            sb.append("]}");
            OUT.println(sb);
        }
    }

    static Admin admin(Args a) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, a.get("bootstrap"));
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        return Admin.create(p);
    }

    static void fail(String msg) {
        OUT.println("{\"error\":" + str(msg) + "}");
        OUT.flush();
        System.exit(1);
    }

    static String str(String s) {
        if (s == null) {
            return "null";
        }
        StringBuilder sb = new StringBuilder("\"");
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '"' || c == '\\') {
                sb.append('\\').append(c);
            } else if (c < 0x20) {
                sb.append(String.format("\\u%04x", (int) c));
            } else {
                sb.append(c);
            }
        }
        return sb.append('"').toString();
    }

    private static final char[] HEX = "0123456789abcdef".toCharArray();

    static String hex(byte[] b) {
        char[] out = new char[b.length * 2];
        for (int i = 0; i < b.length; i++) {
            out[2 * i] = HEX[(b[i] >> 4) & 0xf];
            out[2 * i + 1] = HEX[b[i] & 0xf];
        }
        return new String(out);
    }

    static byte[] unhex(String s) {
        byte[] out = new byte[s.length() / 2];
        for (int i = 0; i < out.length; i++) {
            out[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        }
        return out;
    }

    /** --key value pairs after the command; a key may repeat. */
    static final class Args {
        private final Map<String, List<String>> values = new HashMap<>();

        Args(String[] args) {
            for (int i = 1; i + 1 < args.length; i += 2) {
                if (!args[i].startsWith("--")) {
                    fail("expected --option, got " + args[i]);
                }
                values.computeIfAbsent(args[i].substring(2), k -> new ArrayList<>()).add(args[i + 1]);
            }
        }

        String get(String key) {
            List<String> v = values.get(key);
            if (v == null) {
                fail("missing --" + key);
            }
            return v.get(0);
        }

        String getOr(String key, String def) {
            List<String> v = values.get(key);
            return v == null ? def : v.get(0);
        }

        List<String> all(String key) {
            return values.getOrDefault(key, Collections.emptyList());
        }
    }
}
