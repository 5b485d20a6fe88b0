package dev.weir.bench;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Repartitioned;
import org.apache.kafka.streams.processor.StateRestoreListener;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;
import org.apache.kafka.streams.state.WindowStore;

/**
 * Weir's example workloads as a Kafka Streams application. Runs until the
 * expected number of records was processed (or, with --mode restore, until
 * the application is RUNNING after restoring its stores), closes, and prints
 * one JSON line with its timings; with --mode member, runs as one instance
 * of a group until its standard input closes. CPU time and peak RSS are measured by the
 * runner from outside.
 *
 * filter-map: keep values that are multiples of 3, doubled (stateless).
 * word-count: split lines, re-key each lowercase word through a repartition
 * topic, count it in a logged RocksDB store (record cache on), forward
 * word -> count for every word, as examples/word-count does.
 */
public final class Bench {
    private static String arg(String[] args, String name, String fallback) {
        for (int i = 0; i + 1 < args.length; i++) {
            if (args[i].equals("--" + name)) {
                return args[i + 1];
            }
        }
        if (fallback == null) {
            throw new IllegalArgumentException("missing --" + name);
        }
        return fallback;
    }

    /** Counts words in the "counts" store and forwards every new count. */
    static final class Count implements Processor<String, String, String, String> {
        private final AtomicLong processed;
        private KeyValueStore<String, Long> counts;
        private ProcessorContext<String, String> context;

        Count(AtomicLong processed) {
            this.processed = processed;
        }

        @Override
        public void init(ProcessorContext<String, String> context) {
            this.context = context;
            this.counts = context.getStateStore("counts");
        }

        @Override
        public void process(Record<String, String> record) {
            Long old = counts.get(record.key());
            long count = old == null ? 1 : old + 1;
            counts.put(record.key(), count);
            context.forward(record.withValue(Long.toString(count)));
            processed.incrementAndGet();
        }
    }

    public static void main(String[] args) throws Exception {
        String workload = arg(args, "workload", null);
        String mode = arg(args, "mode", "run");
        long expected = Long.parseLong(arg(args, "expected", "0"));
        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, arg(args, "application-id", null));
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, arg(args, "bootstrap", null));
        props.put(StreamsConfig.STATE_DIR_CONFIG, arg(args, "state-dir", null));
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, arg(args, "commit-interval-ms", "1000"));
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        props.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        props.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        props.put(StreamsConfig.NUM_STANDBY_REPLICAS_CONFIG, Integer.parseInt(arg(args, "standbys", "0")));
        String session = arg(args, "session-timeout-ms", "45000");
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), session);
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG),
            Integer.toString(Math.min(3000, Integer.parseInt(session) / 3)));

        AtomicLong processed = new AtomicLong();
        StreamsBuilder builder = new StreamsBuilder();
        String input = arg(args, "input", null);
        String output = arg(args, "output", null);
        var lines = builder.stream(input, Consumed.with(Serdes.String(), Serdes.String()));
        if (workload.equals("filter-map")) {
            lines.peek((k, v) -> processed.incrementAndGet())
                .filter((k, v) -> {
                    try {
                        return Long.parseLong(v.trim()) % 3 == 0;
                    } catch (NumberFormatException e) {
                        return false;
                    }
                })
                .mapValues(v -> Long.toString(Long.parseLong(v.trim()) * 2))
                .to(output, Produced.with(Serdes.String(), Serdes.String()));
        } else if (workload.equals("word-count")) {
            builder.addStateStore(Stores.keyValueStoreBuilder(
                    Stores.persistentKeyValueStore("counts"), Serdes.String(), Serdes.Long())
                .withCachingEnabled());
            lines.flatMap((k, line) -> {
                    List<KeyValue<String, String>> words = new ArrayList<>();
                    for (String w : line.split("\\s+")) {
                        if (!w.isEmpty()) {
                            words.add(KeyValue.pair(w.toLowerCase(Locale.ROOT), ""));
                        }
                    }
                    return words;
                })
                .repartition(Repartitioned.<String, String>as("words").withKeySerde(Serdes.String()).withValueSerde(Serdes.String()))
                .process(() -> new Count(processed), "counts")
                .to(output, Produced.with(Serdes.String(), Serdes.String()));
        } else if (workload.equals("windowed-count")) {
            // examples/windowed-count: 1-minute tumbling windows, 10 s grace,
            // final counts only (suppress until the window closes).
            lines.peek((k, v) -> processed.incrementAndGet())
                .groupByKey()
                .windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofMinutes(1), Duration.ofSeconds(10)))
                .count(Materialized.<String, Long, WindowStore<Bytes, byte[]>>as("counts")
                    .withRetention(Duration.ofMinutes(5)))
                .suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()))
                .toStream()
                .map((w, n) -> KeyValue.pair(w.key() + "@" + w.window().start(), Long.toString(n)))
                .to(output, Produced.with(Serdes.String(), Serdes.String()));
        } else {
            throw new IllegalArgumentException("unknown workload " + workload);
        }

        AtomicLong restored = new AtomicLong();
        long[] restoreStart = {0};
        KafkaStreams streams = new KafkaStreams(builder.build(), props);
        streams.setGlobalStateRestoreListener(new StateRestoreListener() {
            @Override
            public void onRestoreStart(TopicPartition tp, String store, long start, long end) {
                if (restoreStart[0] == 0) {
                    restoreStart[0] = System.nanoTime();
                }
            }

            @Override
            public void onBatchRestored(TopicPartition tp, String store, long end, long n) {
                restored.addAndGet(n);
            }

            @Override
            public void onRestoreEnd(TopicPartition tp, String store, long total) {
            }
        });
        CountDownLatch running = new CountDownLatch(1);
        long started = System.nanoTime();
        long[] runningAt = {0};
        streams.setStateListener((next, old) -> {
            if (next == KafkaStreams.State.RUNNING && runningAt[0] == 0) {
                runningAt[0] = System.nanoTime();
                running.countDown();
            }
        });
        streams.start();
        if (!running.await(10, TimeUnit.MINUTES)) {
            throw new IllegalStateException("not RUNNING after 10 minutes");
        }
        if (mode.equals("member")) {
            // One instance of a group (weir bench --rebalance): runs until
            // the runner closes stdin.
            while (System.in.read() != -1) {
                Thread.onSpinWait();
            }
            streams.close(Duration.ofMinutes(1));
            return;
        }
        if (mode.equals("restore")) {
            streams.close(Duration.ofMinutes(1));
            double seconds = (runningAt[0] - (restoreStart[0] == 0 ? started : restoreStart[0])) / 1e9;
            System.out.printf(Locale.ROOT, "{\"restored\": %d, \"restore_seconds\": %.3f}%n", restored.get(), seconds);
            return;
        }
        while (processed.get() < expected) {
            Thread.sleep(2);
        }
        streams.close(Duration.ofMinutes(2));
        double seconds = (System.nanoTime() - runningAt[0]) / 1e9;
        System.out.printf(Locale.ROOT, "{\"processed\": %d, \"seconds\": %.3f}%n", processed.get(), seconds);
    }
}
