package io.sluice.e2e;

import java.util.Properties;
import java.util.concurrent.CountDownLatch;

import org.apache.kafka.clients.consumer.ConsumerConfig;
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
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, "100");
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, "1");
        // A killed instance leaves the group after its session timeout: the
        // shortest the broker allows by default, so the restart is quick.
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), "6000");
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG), "1000");
        StreamsBuilder b = new StreamsBuilder();
        b.stream(in, Consumed.with(Serdes.ByteArray(), Serdes.String()))
            .mapValues(v -> "streamed " + v)
            .to(out, Produced.with(Serdes.ByteArray(), Serdes.String()));
        KafkaStreams streams = new KafkaStreams(b.build(), p);
        CountDownLatch dead = new CountDownLatch(1);
        streams.setStateListener((now, before) -> {
            if (now == KafkaStreams.State.RUNNING) {
                System.out.println("RUNNING");
                System.out.flush();
            }
            if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) {
                System.out.println("STATE " + now);
                System.out.flush();
                dead.countDown();
            }
        });
        streams.setUncaughtExceptionHandler(e -> {
            System.out.println("ERROR " + e);
            System.out.flush();
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_APPLICATION;
        });
        streams.start();
        dead.await();
        streams.close();
        System.exit(1);
    }
}
