// GroupConsumer is a KafkaConsumer in a consumer group, started by the
// test/groups suite (fleet.start with client "java"). It reads its settings
// from the environment (CHILD_BROKER, CHILD_GROUP, CHILD_TOPIC,
// CHILD_BALANCER: range, cooperative-sticky or server for
// group.protocol=consumer; CHILD_INSTANCE: group.instance.id) and reports on
// stdout, one "EV <unix nanos> <event> ..." line per event, what the Go
// consumer processes report: assigned, revoked, lost, rec, committed,
// closed. SIGTERM closes it cleanly (leaving the group); SIGKILL is a crash.
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;

import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public final class GroupConsumer {
    private static synchronized void emit(String event) {
        Instant now = Instant.now();
        System.out.println("EV " + (now.getEpochSecond() * 1_000_000_000L + now.getNano()) + " " + event);
        System.out.flush();
    }

    private static String partitions(Collection<TopicPartition> tps) {
        List<Integer> ps = new ArrayList<>();
        for (TopicPartition tp : tps) {
            ps.add(tp.partition());
        }
        if (ps.isEmpty()) {
            return "-";
        }
        Collections.sort(ps);
        StringBuilder b = new StringBuilder();
        for (int p : ps) {
            if (b.length() > 0) {
                b.append(',');
            }
            b.append(p);
        }
        return b.toString();
    }

    public static void main(String[] args) throws Exception {
        String topic = System.getenv("CHILD_TOPIC");
        String balancer = System.getenv("CHILD_BALANCER");
        Properties props = new Properties();
        props.put("bootstrap.servers", System.getenv("CHILD_BROKER"));
        props.put("group.id", System.getenv("CHILD_GROUP"));
        props.put("client.id", "java-" + System.getenv("CHILD_NAME"));
        props.put("key.deserializer", ByteArrayDeserializer.class.getName());
        props.put("value.deserializer", ByteArrayDeserializer.class.getName());
        props.put("auto.offset.reset", "earliest");
        props.put("enable.auto.commit", "false");
        props.put("max.poll.interval.ms", "20000");
        if ("server".equals(balancer)) {
            props.put("group.protocol", "consumer");
        } else {
            props.put("group.protocol", "classic");
            props.put("session.timeout.ms", "3000");
            props.put("heartbeat.interval.ms", "300");
            props.put("partition.assignment.strategy", "cooperative-sticky".equals(balancer)
                ? "org.apache.kafka.clients.consumer.CooperativeStickyAssignor"
                : "org.apache.kafka.clients.consumer.RangeAssignor");
        }
        String instance = System.getenv("CHILD_INSTANCE");
        if (instance != null && !instance.isEmpty()) {
            props.put("group.instance.id", instance);
        }

        KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props);
        CountDownLatch done = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            consumer.wakeup();
            try {
                done.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }));
        consumer.subscribe(Collections.singletonList(topic), new ConsumerRebalanceListener() {
            @Override
            public void onPartitionsAssigned(Collection<TopicPartition> tps) {
                emit("assigned " + partitions(tps));
            }

            @Override
            public void onPartitionsRevoked(Collection<TopicPartition> tps) {
                // Offsets are committed after every poll: nothing is pending.
                emit("revoked " + partitions(tps));
            }

            @Override
            public void onPartitionsLost(Collection<TopicPartition> tps) {
                emit("lost " + partitions(tps));
            }
        });
        try {
            while (true) {
                ConsumerRecords<byte[], byte[]> records = consumer.poll(Duration.ofMillis(200));
                if (records.isEmpty()) {
                    continue;
                }
                Map<TopicPartition, OffsetAndMetadata> next = new HashMap<>();
                for (ConsumerRecord<byte[], byte[]> r : records) {
                    emit("rec " + r.partition() + " " + r.offset() + " " + new String(r.key(), StandardCharsets.UTF_8));
                    next.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                }
                try {
                    consumer.commitSync(next);
                    for (Map.Entry<TopicPartition, OffsetAndMetadata> e : next.entrySet()) {
                        emit("committed " + e.getKey().partition() + " " + e.getValue().offset());
                    }
                } catch (WakeupException e) {
                    throw e;
                } catch (KafkaException e) {
                    // A rebalance took the partitions: another member
                    // processes those records again (at least once).
                    System.err.println("commit failed: " + e);
                }
            }
        } catch (WakeupException e) {
            // closing
        } finally {
            consumer.close(Duration.ofSeconds(20));
            emit("closed -");
            done.countDown();
        }
    }
}
