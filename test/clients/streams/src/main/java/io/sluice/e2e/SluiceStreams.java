package io.sluice.e2e;

import java.util.Properties;

import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Produced;

/**
 * A Kafka Streams application for sluice's e2e suite, run by
 * test/e2e/streams_test.go:
 *
 *   SluiceStreams --bootstrap HOST:PORT --app-id ID --in IN --out OUT --state-dir DIR
 *
 * Its topology copies every record of IN to OUT as "streamed VALUE" with
 * processing.guarantee=exactly_once_v2 (transactions, read_committed,
 * offsets committed in the transactions). It prints RUNNING when the
 * application reaches that state and runs until killed; the test kills it
 * mid-run and starts it again, then checks that OUT holds every input
 * record exactly once.
 */
public final class SluiceStreams {
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        String in = null, out = null;
        for (int i = 0; i + 1 < args.length; i += 2) {
            switch (args[i]) {
                case "--bootstrap": p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[i + 1]); break;
                case "--app-id": p.put(StreamsConfig.APPLICATION_ID_CONFIG, args[i + 1]); break;
                case "--state-dir": p.put(StreamsConfig.STATE_DIR_CONFIG, args[i + 1]); break;
                case "--in": in = args[i + 1]; break;
                case "--out": out = args[i + 1]; break;
                default: throw new IllegalArgumentException("unknown flag " + args[i]);
            }
        }
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        StreamsMain.testDefaults(p);
        StreamsBuilder b = new StreamsBuilder();
        b.stream(in, Consumed.with(Serdes.ByteArray(), Serdes.String()))
            .mapValues(v -> "streamed " + v)
            .to(out, Produced.with(Serdes.ByteArray(), Serdes.String()));
        KafkaStreams streams = new KafkaStreams(b.build(), p);
        StreamsMain.runUntilDead(streams);
    }
}
