package io.sluice.e2e;

import java.time.Duration;
import java.util.Map;
import java.util.Properties;

import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.processor.StateRestoreListener;
import org.apache.kafka.streams.state.Stores;

/**
 * A stateful Kafka Streams application for sluice's e2e suite, run by
 * test/e2e/streams_test.go:
 *
 *   SluiceStatefulStreams --bootstrap HOST:PORT --app-id ID --state-dir DIR
 *       --in IN --tiers TIERS --counts COUNTS --windowed WINDOWED --joined JOINED
 *
 * IN holds (user, anything) records, TIERS a table of (user, tier). The
 * topology counts IN's records per user (a key-value store, written to
 * COUNTS as "user count"), per user and one-minute window (a window store,
 * to WINDOWED as "user@windowStart count"), and joins IN with TIERS (to
 * JOINED as "value/tier"). The stores are in memory (the cached Streams
 * jars carry no RocksDB), so every start restores them from their
 * changelogs. Both counts' changelogs get small segments, so
 * that sluice's log cleaner compacts them while the application runs. It
 * prints RUNNING when the application reaches that state and "RESTORED
 * store partition records" when a store's partition finishes restoring
 * from its changelog; the
 * test kills it and starts it again with an empty state directory.
 */
public final class SluiceStatefulStreams {
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        String in = null, tiers = null, counts = null, windowed = null, joined = null;
        for (int i = 0; i + 1 < args.length; i += 2) {
            switch (args[i]) {
                case "--bootstrap": p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[i + 1]); break;
                case "--app-id": p.put(StreamsConfig.APPLICATION_ID_CONFIG, args[i + 1]); break;
                case "--state-dir": p.put(StreamsConfig.STATE_DIR_CONFIG, args[i + 1]); break;
                case "--in": in = args[i + 1]; break;
                case "--tiers": tiers = args[i + 1]; break;
                case "--counts": counts = args[i + 1]; break;
                case "--windowed": windowed = args[i + 1]; break;
                case "--joined": joined = args[i + 1]; break;
                default: throw new IllegalArgumentException("unknown flag " + args[i]);
            }
        }
        StreamsMain.testDefaults(p);
        p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, "0"); // every update reaches the changelog
        // Batches within the changelogs' tiny segments (a record set larger
        // than segment.bytes is refused, as in Kafka).
        p.put(StreamsConfig.producerPrefix(ProducerConfig.BATCH_SIZE_CONFIG), "512");
        // Changelogs whose segments roll every KiB or 100 ms (the active
        // one, never cleaned, holds a few dozen records at most) and are
        // cleaned as soon as anything is dirty.
        Map<String, String> changelog = Map.of(
            "segment.bytes", "1024",
            "segment.ms", "100",
            "min.cleanable.dirty.ratio", "0.01",
            "delete.retention.ms", "1000");

        StreamsBuilder b = new StreamsBuilder();
        KStream<String, String> events = b.stream(in, Consumed.with(Serdes.String(), Serdes.String()));
        events.groupByKey()
            .count(Materialized.<String, Long>as(Stores.inMemoryKeyValueStore("counts")).withLoggingEnabled(changelog))
            .toStream()
            .map((user, n) -> KeyValue.pair(user, user + " " + n))
            .to(counts, Produced.with(Serdes.String(), Serdes.String()));
        events.groupByKey()
            .windowedBy(TimeWindows.ofSizeWithNoGrace(Duration.ofMinutes(1)))
            .count(Materialized.<String, Long>as(Stores.inMemoryWindowStore("windowed", Duration.ofHours(1), Duration.ofMinutes(1), false)).withLoggingEnabled(changelog))
            .toStream()
            .map((w, n) -> KeyValue.pair(w.key(), w.key() + "@" + w.window().start() + " " + n))
            .to(windowed, Produced.with(Serdes.String(), Serdes.String()));
        KTable<String, String> tierTable = b.table(tiers, Consumed.with(Serdes.String(), Serdes.String()),
            Materialized.<String, String>as(Stores.inMemoryKeyValueStore("tiers")).withKeySerde(Serdes.String()).withValueSerde(Serdes.String()));
        events.join(tierTable, (v, tier) -> v + "/" + tier)
            .to(joined, Produced.with(Serdes.String(), Serdes.String()));

        KafkaStreams streams = new KafkaStreams(b.build(), p);
        streams.setGlobalStateRestoreListener(new StateRestoreListener() {
            @Override public void onRestoreStart(TopicPartition tp, String store, long start, long end) {}
            @Override public void onBatchRestored(TopicPartition tp, String store, long end, long n) {}
            @Override public void onRestoreEnd(TopicPartition tp, String store, long total) {
                System.out.println("RESTORED " + store + " " + tp.partition() + " " + total);
                System.out.flush();
            }
        });
        StreamsMain.runUntilDead(streams);
    }
}
