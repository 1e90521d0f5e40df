package e2e

import (
	"fmt"
	"strconv"
	"testing"
	"time"
)

// The scenario every real client runs (issue text): "create a 3-partition
// topic, produce 10,000 keyed records with headers under every compression
// codec (none, gzip, snappy, lz4, zstd), fetch them back byte for byte, list
// offsets (earliest, latest, by timestamp), delete records, describe and
// alter topic configs." Each client implements scenarioClient with its own
// producer, consumer and admin calls; where a tool cannot do a step (kcat has
// no admin API) its driver uses kadm and says so.

// listedOffset is one partition's answer to ListOffsets.
type listedOffset struct {
	Offset    int64 `json:"o"`
	Timestamp int64 `json:"ts"`
}

// configEntry is one described topic config.
type configEntry struct {
	Value    *string
	Source   string // Kafka's ConfigSource name, e.g. DEFAULT_CONFIG
	ReadOnly bool
}

type scenarioClient interface {
	// Name names the client in failure messages.
	Name() string
	// DatasetOptions are the limits of what the client can produce.
	DatasetOptions() datasetOptions
	// SetsTimestamps reports whether the producer sends the dataset's
	// timestamps (otherwise the broker sees the client's clock).
	SetsTimestamps() bool
	// SupportsMaxTimestamp reports whether ListOffsets can ask for the
	// record with the largest timestamp (KIP-734).
	SupportsMaxTimestamp() bool

	CreateTopic(t *testing.T, topic string, partitions int, configs map[string]string)
	// Produce sends recs with the codec and returns where each was
	// acknowledged, or nil if the client does not report it.
	Produce(t *testing.T, topic, codec string, recs []testRecord) []acked
	// Consume reads every partition from its start (or from[p]) to the end
	// offset it has when the call begins.
	Consume(t *testing.T, topic string, partitions int, from map[int32]int64) []fetched
	// ListOffsets asks for each spec ("earliest", "latest", "max-timestamp"
	// or "timestamp:MS") and returns the answers in the same order.
	ListOffsets(t *testing.T, topic string, partitions int, specs ...string) []map[int32]listedOffset
	// DeleteRecords deletes the records before offset; it returns the new
	// low watermark and the Kafka error code.
	DeleteRecords(t *testing.T, topic string, partition int32, before int64) (int64, int16)
	DescribeConfigs(t *testing.T, topic string) map[string]configEntry
	// AlterConfigs is an incremental alter (SET and DELETE) returning the
	// Kafka error code.
	AlterConfigs(t *testing.T, topic string, set map[string]string, del []string, validateOnly bool) int16
}

// Kafka's defaults for topic configs the scenario checks.
const (
	defaultRetentionMs     = "604800000"  // log.retention.hours=168
	defaultMaxMessageBytes = "1048588"    // message.max.bytes
	defaultSegmentBytes    = "1073741824" // log.segment.bytes
)

// Kafka error codes the suite expects.
const (
	errNone                        int16 = 0
	errOffsetOutOfRange            int16 = 1
	errCorruptMessage              int16 = 2
	errUnknownTopicOrPartition     int16 = 3
	errMessageTooLarge             int16 = 10
	errRecordListTooLarge          int16 = 18
	errTopicAlreadyExists          int16 = 36
	errUnsupportedVersion          int16 = 35
	errInvalidPartitions           int16 = 37
	errInvalidConfig               int16 = 40
	errUnsupportedForMessageFormat int16 = 43
	errInvalidRecord               int16 = 87
)

const scenarioPartitions = 3

// runClientScenario runs the scenario for one client: a subtest per codec,
// then the topic-config steps.
func runClientScenario(t *testing.T, c scenarioClient) {
	b := Shared(t)
	seed := testSeed(t)
	n := recordsPerCodec(t)
	for i, codec := range codecs {
		t.Run(codec, func(t *testing.T) {
			runCodecScenario(t, b, c, codec, seed+uint64(i), n)
		})
	}
	t.Run("configs", func(t *testing.T) { runConfigScenario(t, c) })
}

func runCodecScenario(t *testing.T, b *Broker, c scenarioClient, codec string, seed uint64, n int) {
	start := time.Now()
	topic := topicName(t, "")
	c.CreateTopic(t, topic, scenarioPartitions, nil)
	waitForTopic(t, b, topic, scenarioPartitions)

	recs := makeDataset(seed, n, c.DatasetOptions())
	l := layoutOf(recs, scenarioPartitions)
	who := c.Name() + " " + codec

	if acks := c.Produce(t, topic, codec, recs); acks != nil {
		checkAcks(t, who+" producer", l, acks)
	}
	produced := time.Since(start)

	// Read back with the client itself, then with franz-go as the
	// independent reader, which also sees each batch's codec.
	got := c.Consume(t, topic, scenarioPartitions, nil)
	verifyFetched(t, who+" consumer", recs, l, got, verifyOptions{timestamps: c.SetsTimestamps(), nullHeaderIsEmpty: c.DatasetOptions().Text})
	oracle := consumeWithFranz(t, b, topic, scenarioPartitions, nil)
	verifyFetched(t, who+" (read by franz-go)", recs, l, oracle, verifyOptions{timestamps: c.SetsTimestamps(), codec: codec, nullHeaderIsEmpty: c.DatasetOptions().Text})
	if len(oracle) == len(got) {
		for i := range got {
			if got[i].Partition == oracle[i].Partition && got[i].Offset == oracle[i].Offset && got[i].Timestamp != oracle[i].Timestamp {
				t.Fatalf("%s: partition %d offset %d: timestamp %d, franz-go read %d", who, got[i].Partition, got[i].Offset, got[i].Timestamp, oracle[i].Timestamp)
			}
		}
	}

	// ListOffsets: earliest, latest, by timestamp.
	listed := c.ListOffsets(t, topic, scenarioPartitions, "earliest", "latest")
	earliest, latest := listed[0], listed[1]
	for p := range int32(scenarioPartitions) {
		if earliest[p].Offset != 0 {
			t.Errorf("%s: earliest offset of partition %d is %d, want 0", who, p, earliest[p].Offset)
		}
		if want := int64(len(l.byPartition[p])); latest[p].Offset != want {
			t.Errorf("%s: latest offset of partition %d is %d, want %d", who, p, latest[p].Offset, want)
		}
	}
	checkTimestampLookups(t, c, who, topic, oracle)
	if c.SupportsMaxTimestamp() {
		maxTS := c.ListOffsets(t, topic, scenarioPartitions, "max-timestamp")[0]
		for p := range int32(scenarioPartitions) {
			recs := partitionRecords(oracle, p)
			want := listedOffset{Offset: -1, Timestamp: -1}
			for _, r := range recs {
				// The first record with the largest timestamp.
				if r.Timestamp > want.Timestamp {
					want = listedOffset{Offset: r.Offset, Timestamp: r.Timestamp}
				}
			}
			if maxTS[p] != want {
				t.Errorf("%s: max-timestamp of partition %d is offset %d timestamp %d, want offset %d timestamp %d",
					who, p, maxTS[p].Offset, maxTS[p].Timestamp, want.Offset, want.Timestamp)
			}
		}
	}

	// DeleteRecords on the fullest partition, then the low watermark moves
	// and a consumer from the beginning starts there.
	var full int32
	for p := range int32(scenarioPartitions) {
		if len(l.byPartition[p]) > len(l.byPartition[full]) {
			full = p
		}
	}
	before := int64(len(l.byPartition[full]) / 3)
	low, code := c.DeleteRecords(t, topic, full, before)
	if code != errNone || low != before {
		t.Fatalf("%s: DeleteRecords(partition %d, before %d) = low watermark %d, error %d; want %d, error 0", who, full, before, low, code, before)
	}
	earliest = c.ListOffsets(t, topic, scenarioPartitions, "earliest")[0]
	for p := range int32(scenarioPartitions) {
		want := int64(0)
		if p == full {
			want = before
		}
		if earliest[p].Offset != want {
			t.Errorf("%s: after DeleteRecords, earliest offset of partition %d is %d, want %d", who, p, earliest[p].Offset, want)
		}
	}
	afterDelete := c.Consume(t, topic, scenarioPartitions, nil)
	verifyFetched(t, who+" consumer after DeleteRecords", recs, l, afterDelete,
		verifyOptions{start: map[int32]int64{full: before}, timestamps: c.SetsTimestamps(), nullHeaderIsEmpty: c.DatasetOptions().Text})
	// Deleting up to the high watermark is allowed; past it is
	// OFFSET_OUT_OF_RANGE.
	if _, code := c.DeleteRecords(t, topic, full, int64(len(l.byPartition[full]))+10); code != errOffsetOutOfRange {
		t.Errorf("%s: DeleteRecords past the high watermark: error %d, want %d (OFFSET_OUT_OF_RANGE)", who, code, errOffsetOutOfRange)
	}
	t.Logf("%s: %d records in %v (produce %v)", who, n, time.Since(start).Round(time.Millisecond), produced.Round(time.Millisecond))
}

// checkTimestampLookups asks ListOffsets for timestamps inside, before and
// after each partition's records and compares with Kafka's rule: the first
// offset whose timestamp is >= the target, -1 when there is none.
func checkTimestampLookups(t *testing.T, c scenarioClient, who, topic string, all []fetched) {
	type lookup struct {
		spec string
		want map[int32]int64
	}
	var lookups []lookup
	// A target per partition: the timestamp of its middle record, then
	// one millisecond after it (the next record with a larger timestamp).
	for _, delta := range []int64{0, 1} {
		for p := range int32(scenarioPartitions) {
			recs := partitionRecords(all, p)
			if len(recs) == 0 {
				continue
			}
			target := recs[len(recs)/2].Timestamp + delta
			want := map[int32]int64{}
			for q := range int32(scenarioPartitions) {
				want[q] = expectedTimestampOffset(all, q, target)
			}
			lookups = append(lookups, lookup{"timestamp:" + strconv.FormatInt(target, 10), want})
		}
	}
	// Before everything: offset 0 everywhere. After everything: -1.
	minTS, maxTS := all[0].Timestamp, all[0].Timestamp
	for _, f := range all {
		minTS = min(minTS, f.Timestamp)
		maxTS = max(maxTS, f.Timestamp)
	}
	lookups = append(lookups,
		lookup{"timestamp:" + strconv.FormatInt(minTS-1000, 10), map[int32]int64{0: 0, 1: 0, 2: 0}},
		lookup{"timestamp:" + strconv.FormatInt(maxTS+1000, 10), map[int32]int64{0: -1, 1: -1, 2: -1}},
	)
	var specs []string
	for _, lk := range lookups {
		specs = append(specs, lk.spec)
	}
	answers := c.ListOffsets(t, topic, scenarioPartitions, specs...)
	for i, lk := range lookups {
		got := answers[i]
		for p := range int32(scenarioPartitions) {
			if len(partitionRecords(all, p)) == 0 {
				continue // an empty partition answers -1 for any timestamp
			}
			if got[p].Offset != lk.want[p] {
				t.Errorf("%s: ListOffsets %s, partition %d: offset %d, want %d", who, lk.spec, p, got[p].Offset, lk.want[p])
			}
		}
	}
}

// runConfigScenario: describe a topic created with configs, then alter
// incrementally (set, validate-only, delete, invalid values).
func runConfigScenario(t *testing.T, c scenarioClient) {
	b := Shared(t)
	who := c.Name()
	topic := topicName(t, "")
	c.CreateTopic(t, topic, 1, map[string]string{"retention.ms": "86400000", "cleanup.policy": "delete"})
	waitForTopic(t, b, topic, 1)

	expect := func(step string, cfg map[string]configEntry, name, value, source string) {
		t.Helper()
		e, ok := cfg[name]
		switch {
		case !ok:
			t.Errorf("%s %s: config %s not described", who, step, name)
		case e.Value == nil || *e.Value != value:
			t.Errorf("%s %s: %s = %s, want %q", who, step, name, ptrString(e.Value), value)
		case source != "" && e.Source != source:
			t.Errorf("%s %s: %s has source %s, want %s", who, step, name, e.Source, source)
		}
	}
	cfg := c.DescribeConfigs(t, topic)
	expect("after create", cfg, "retention.ms", "86400000", "DYNAMIC_TOPIC_CONFIG")
	expect("after create", cfg, "cleanup.policy", "delete", "DYNAMIC_TOPIC_CONFIG")
	expect("after create", cfg, "compression.type", "producer", "DEFAULT_CONFIG")
	expect("after create", cfg, "max.message.bytes", defaultMaxMessageBytes, "")
	expect("after create", cfg, "segment.bytes", defaultSegmentBytes, "")
	for name, e := range cfg {
		if e.ReadOnly {
			t.Errorf("%s: topic config %s is described read-only; Kafka's topic configs are all alterable", who, name)
		}
	}

	if code := c.AlterConfigs(t, topic, map[string]string{"retention.ms": "3600000", "max.message.bytes": "2097152"}, nil, false); code != errNone {
		t.Fatalf("%s: incremental alter (SET retention.ms, max.message.bytes): error %d", who, code)
	}
	cfg = c.DescribeConfigs(t, topic)
	expect("after SET", cfg, "retention.ms", "3600000", "DYNAMIC_TOPIC_CONFIG")
	expect("after SET", cfg, "max.message.bytes", "2097152", "DYNAMIC_TOPIC_CONFIG")
	expect("after SET", cfg, "cleanup.policy", "delete", "DYNAMIC_TOPIC_CONFIG")

	if code := c.AlterConfigs(t, topic, map[string]string{"retention.ms": "1234"}, nil, true); code != errNone {
		t.Fatalf("%s: validate-only alter: error %d", who, code)
	}
	cfg = c.DescribeConfigs(t, topic)
	expect("after validate-only SET", cfg, "retention.ms", "3600000", "DYNAMIC_TOPIC_CONFIG")

	if code := c.AlterConfigs(t, topic, nil, []string{"retention.ms"}, false); code != errNone {
		t.Fatalf("%s: incremental alter (DELETE retention.ms): error %d", who, code)
	}
	cfg = c.DescribeConfigs(t, topic)
	expect("after DELETE", cfg, "retention.ms", defaultRetentionMs, "DEFAULT_CONFIG")
	expect("after DELETE", cfg, "max.message.bytes", "2097152", "DYNAMIC_TOPIC_CONFIG")

	// Invalid requests change nothing: Kafka answers INVALID_CONFIG (40)
	// for a value of the wrong type and for an unknown topic config name.
	if code := c.AlterConfigs(t, topic, map[string]string{"retention.ms": "soon"}, nil, false); code != errInvalidConfig {
		t.Errorf("%s: SET retention.ms=soon: error %d, want %d (INVALID_CONFIG)", who, code, errInvalidConfig)
	}
	if code := c.AlterConfigs(t, topic, map[string]string{"no.such.config": "1"}, nil, false); code != errInvalidConfig {
		t.Errorf("%s: SET no.such.config=1: error %d, want %d (INVALID_CONFIG)", who, code, errInvalidConfig)
	}
	if code := c.AlterConfigs(t, topic, map[string]string{"cleanup.policy": "shred"}, nil, false); code != errInvalidConfig {
		t.Errorf("%s: SET cleanup.policy=shred: error %d, want %d (INVALID_CONFIG)", who, code, errInvalidConfig)
	}
	cfg = c.DescribeConfigs(t, topic)
	expect("after invalid alters", cfg, "retention.ms", defaultRetentionMs, "DEFAULT_CONFIG")
	expect("after invalid alters", cfg, "cleanup.policy", "delete", "DYNAMIC_TOPIC_CONFIG")
	if _, ok := cfg["no.such.config"]; ok {
		t.Errorf("%s: an invalid alter added no.such.config", who)
	}
}

func ptrString(s *string) string {
	if s == nil {
		return "null"
	}
	return fmt.Sprintf("%q", *s)
}
