package io.sluice.e2e;

import java.util.Properties;
import java.util.concurrent.CountDownLatch;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse;

/**
 * What the e2e suite's Streams applications share: they print RUNNING when
 * the application reaches that state, "STATE s" when it stops and "ERROR e"
 * for an uncaught exception, and run until killed (or exit 1 if they stop).
 */
final class StreamsMain {
    private StreamsMain() {}

    /**
     * The settings both applications run with: frequent commits, one
     * stream thread, and the shortest session timeout the broker allows by
     * default, so that a killed instance leaves its group and the restart
     * is quick.
     */
    static void testDefaults(Properties p) {
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, "100");
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, "1");
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), "6000");
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG), "1000");
    }

    static void runUntilDead(KafkaStreams streams) throws InterruptedException {
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
            return StreamThreadExceptionResponse.SHUTDOWN_APPLICATION;
        });
        streams.start();
        dead.await();
        streams.close();
        System.exit(1);
    }
}
