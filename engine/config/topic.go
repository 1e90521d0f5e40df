// Package config holds sluice's configuration: the broker settings read from
// flags and a Kafka-style server.properties file, and the per-topic settings
// (Kafka's topic configs) with their defaults, types, broker-level synonyms and
// validation. Apache Kafka's names and defaults are the specification.
package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Type is a config's value type, numbered as in DescribeConfigs (v3+).
type Type int8

// Config types as DescribeConfigs numbers them.
const (
	TypeBoolean Type = 1
	TypeString  Type = 2
	TypeInt     Type = 3
	TypeShort   Type = 4
	TypeLong    Type = 5
	TypeDouble  Type = 6
	TypeList    Type = 7
)

// Source says where a config's effective value came from, numbered as in
// DescribeConfigs.
type Source int8

// Config sources as DescribeConfigs numbers them.
const (
	SourceUnknown      Source = 0
	SourceDynamicTopic Source = 1
	SourceStaticBroker Source = 4
	SourceDefault      Source = 5
)

// TopicKey describes one topic-level config.
type TopicKey struct {
	Name          string
	Type          Type
	Default       string
	BrokerSynonym string // the server.properties key that sets the broker-wide default
	Doc           string
	validate      func(string) error
}

func (k TopicKey) Validate(v string) error {
	if k.validate != nil {
		if err := k.validate(v); err != nil {
			return err
		}
	}
	switch k.Type {
	case TypeBoolean:
		if v != "true" && v != "false" {
			return fmt.Errorf("invalid value %q for configuration %s: expected a boolean", v, k.Name)
		}
	case TypeInt:
		if _, err := strconv.ParseInt(v, 10, 32); err != nil {
			return fmt.Errorf("invalid value %q for configuration %s: expected an int", v, k.Name)
		}
	case TypeLong:
		if _, err := strconv.ParseInt(v, 10, 64); err != nil {
			return fmt.Errorf("invalid value %q for configuration %s: expected a long", v, k.Name)
		}
	case TypeDouble:
		if _, err := strconv.ParseFloat(v, 64); err != nil {
			return fmt.Errorf("invalid value %q for configuration %s: expected a double", v, k.Name)
		}
	}
	return nil
}

func oneOf(values ...string) func(string) error {
	return func(v string) error {
		for _, item := range strings.Split(v, ",") {
			item = strings.TrimSpace(item)
			ok := false
			for _, allowed := range values {
				if item == allowed {
					ok = true
				}
			}
			if !ok {
				return fmt.Errorf("invalid value %q: must be one of %s", v, strings.Join(values, ", "))
			}
		}
		return nil
	}
}

func atLeast(min int64) func(string) error {
	return func(v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err == nil && n < min {
			return fmt.Errorf("invalid value %s: must be at least %d", v, min)
		}
		return nil
	}
}

var maxLong = strconv.FormatInt(math.MaxInt64, 10)

// levelIn accepts a compression level in [lo, hi], or -1 for gzip's
// default, as Kafka's compression.*.level.
func levelIn(lo, hi int64) func(string) error {
	return func(v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err == nil && (n < lo || n > hi) && !(lo == 1 && hi == 9 && n == -1) {
			return fmt.Errorf("invalid value %s: must be in [%d, %d]", v, lo, hi)
		}
		return nil
	}
}

// ratio accepts a double in [0, 1], as Kafka's min.cleanable.dirty.ratio.
func ratio(v string) error {
	if f, err := strconv.ParseFloat(v, 64); err == nil && (f < 0 || f > 1) {
		return fmt.Errorf("invalid value %s: must be between 0 and 1", v)
	}
	return nil
}

// TopicKeys is every topic config Kafka 4 defines, in name order.
var TopicKeys = []TopicKey{
	{Name: "cleanup.policy", Type: TypeList, Default: "delete", BrokerSynonym: "log.cleanup.policy", Doc: "Retention policy for old log segments: delete or compact.", validate: oneOf("delete", "compact")},
	{Name: "compression.gzip.level", Type: TypeInt, Default: "-1", BrokerSynonym: "compression.gzip.level", Doc: "gzip level when the topic's compression.type is gzip (accepted; sluice compresses at the codec's default level).", validate: levelIn(1, 9)},
	{Name: "compression.lz4.level", Type: TypeInt, Default: "9", BrokerSynonym: "compression.lz4.level", Doc: "lz4 level when the topic's compression.type is lz4 (accepted; sluice compresses at the codec's default level).", validate: levelIn(1, 17)},
	{Name: "compression.type", Type: TypeString, Default: "producer", BrokerSynonym: "compression.type", Doc: "Final compression type for the topic; producer keeps the producer's codec.", validate: oneOf("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer", "none")},
	{Name: "compression.zstd.level", Type: TypeInt, Default: "3", BrokerSynonym: "compression.zstd.level", Doc: "zstd level when the topic's compression.type is zstd (accepted; sluice compresses at the codec's default level).", validate: levelIn(-131072, 22)},
	{Name: "delete.retention.ms", Type: TypeLong, Default: "86400000", BrokerSynonym: "log.cleaner.delete.retention.ms", Doc: "How long delete tombstones are kept on compacted topics.", validate: atLeast(0)},
	{Name: "file.delete.delay.ms", Type: TypeLong, Default: "60000", BrokerSynonym: "log.segment.delete.delay.ms", Doc: "Time to wait before deleting a file from the filesystem.", validate: atLeast(0)},
	{Name: "flush.messages", Type: TypeLong, Default: maxLong, BrokerSynonym: "log.flush.interval.messages", Doc: "Force an fsync after this many messages.", validate: atLeast(1)},
	{Name: "flush.ms", Type: TypeLong, Default: maxLong, BrokerSynonym: "log.flush.interval.ms", Doc: "Force an fsync after this much time.", validate: atLeast(0)},
	{Name: "follower.replication.throttled.replicas", Type: TypeList, Default: "", Doc: "Replicas whose follower replication is throttled."},
	{Name: "index.interval.bytes", Type: TypeInt, Default: "4096", BrokerSynonym: "log.index.interval.bytes", Doc: "Bytes between entries of the sparse offset index.", validate: atLeast(0)},
	{Name: "leader.replication.throttled.replicas", Type: TypeList, Default: "", Doc: "Replicas whose leader replication is throttled."},
	{Name: "local.retention.bytes", Type: TypeLong, Default: "-2", BrokerSynonym: "log.local.retention.bytes", Doc: "Local retention for tiered storage (not used by sluice).", validate: atLeast(-2)},
	{Name: "local.retention.ms", Type: TypeLong, Default: "-2", BrokerSynonym: "log.local.retention.ms", Doc: "Local retention for tiered storage (not used by sluice).", validate: atLeast(-2)},
	{Name: "max.compaction.lag.ms", Type: TypeLong, Default: maxLong, BrokerSynonym: "log.cleaner.max.compaction.lag.ms", Doc: "Maximum time a message stays ineligible for compaction.", validate: atLeast(1)},
	{Name: "max.message.bytes", Type: TypeInt, Default: "1048588", BrokerSynonym: "message.max.bytes", Doc: "Largest record batch size allowed.", validate: atLeast(0)},
	{Name: "message.timestamp.after.max.ms", Type: TypeLong, Default: maxLong, BrokerSynonym: "log.message.timestamp.after.max.ms", Doc: "Allowed amount a record timestamp may be ahead of the broker time.", validate: atLeast(0)},
	{Name: "message.timestamp.before.max.ms", Type: TypeLong, Default: maxLong, BrokerSynonym: "log.message.timestamp.before.max.ms", Doc: "Allowed amount a record timestamp may be behind the broker time.", validate: atLeast(0)},
	{Name: "message.timestamp.type", Type: TypeString, Default: "CreateTime", BrokerSynonym: "log.message.timestamp.type", Doc: "CreateTime or LogAppendTime.", validate: oneOf("CreateTime", "LogAppendTime")},
	{Name: "min.cleanable.dirty.ratio", Type: TypeDouble, Default: "0.5", BrokerSynonym: "log.cleaner.min.cleanable.ratio", Doc: "Dirty ratio that triggers compaction.", validate: ratio},
	{Name: "min.compaction.lag.ms", Type: TypeLong, Default: "0", BrokerSynonym: "log.cleaner.min.compaction.lag.ms", Doc: "Minimum time a message stays uncompacted.", validate: atLeast(0)},
	{Name: "min.insync.replicas", Type: TypeInt, Default: "1", BrokerSynonym: "min.insync.replicas", Doc: "Replicas (primary included) that must hold a batch before acks=all is answered.", validate: atLeast(1)},
	{Name: "preallocate", Type: TypeBoolean, Default: "false", BrokerSynonym: "log.preallocate", Doc: "Preallocate segment files."},
	{Name: "remote.log.copy.disable", Type: TypeBoolean, Default: "false", Doc: "Tiered storage (not supported by sluice)."},
	{Name: "remote.log.delete.on.disable", Type: TypeBoolean, Default: "false", Doc: "Tiered storage (not supported by sluice)."},
	{Name: "remote.storage.enable", Type: TypeBoolean, Default: "false", Doc: "Tiered storage (not supported by sluice)."},
	{Name: "retention.bytes", Type: TypeLong, Default: "-1", BrokerSynonym: "log.retention.bytes", Doc: "Largest size a partition may grow to before old segments are deleted; -1 means no limit."},
	{Name: "retention.ms", Type: TypeLong, Default: "604800000", BrokerSynonym: "log.retention.ms", Doc: "Longest time a segment is kept; -1 means no limit.", validate: atLeast(-1)},
	{Name: "segment.bytes", Type: TypeInt, Default: "1073741824", BrokerSynonym: "log.segment.bytes", Doc: "Segment file size.", validate: atLeast(14)},
	{Name: "segment.index.bytes", Type: TypeInt, Default: "10485760", BrokerSynonym: "log.index.size.max.bytes", Doc: "Size of the offset index.", validate: atLeast(4)},
	{Name: "segment.jitter.ms", Type: TypeLong, Default: "0", BrokerSynonym: "log.roll.jitter.ms", Doc: "Random jitter subtracted from segment.ms.", validate: atLeast(0)},
	{Name: "segment.ms", Type: TypeLong, Default: "604800000", BrokerSynonym: "log.roll.ms", Doc: "Time after which a segment is rolled even if not full.", validate: atLeast(1)},
	{Name: "unclean.leader.election.enable", Type: TypeBoolean, Default: "false", BrokerSynonym: "unclean.leader.election.enable", Doc: "Allow an out-of-sync replica to become leader."},
}

var topicKeyIndex = func() map[string]int {
	m := make(map[string]int, len(TopicKeys))
	for i, k := range TopicKeys {
		m[k.Name] = i
	}
	return m
}()

// LookupTopicKey returns the definition of a topic config.
func LookupTopicKey(name string) (TopicKey, bool) {
	i, ok := topicKeyIndex[name]
	if !ok {
		return TopicKey{}, false
	}
	return TopicKeys[i], true
}

// ValidateTopicConfigs checks overrides as CreateTopics and AlterConfigs do.
func ValidateTopicConfigs(overrides map[string]string) error {
	for name, v := range overrides {
		k, ok := LookupTopicKey(name)
		if !ok {
			return fmt.Errorf("unknown topic config name: %s", name)
		}
		if err := k.Validate(v); err != nil {
			return err
		}
	}
	return nil
}

// Entry is one config with its effective value and where it came from.
type Entry struct {
	Key    TopicKey
	Value  string
	Source Source
}

// Topic is the effective configuration of one topic: its overrides over the
// broker's defaults over Kafka's defaults.
type Topic struct {
	Overrides map[string]string
	broker    *Broker
}

// NewTopic builds a topic's effective configuration.
func NewTopic(b *Broker, overrides map[string]string) Topic {
	return Topic{Overrides: overrides, broker: b}
}

// Entries lists every topic config, in name order.
func (t Topic) Entries() []Entry {
	out := make([]Entry, 0, len(TopicKeys))
	for _, k := range TopicKeys {
		out = append(out, t.entry(k))
	}
	return out
}

// Entry returns one named config.
func (t Topic) Entry(name string) (Entry, bool) {
	k, ok := LookupTopicKey(name)
	if !ok {
		return Entry{}, false
	}
	return t.entry(k), true
}

func (t Topic) entry(k TopicKey) Entry {
	if v, ok := t.Overrides[k.Name]; ok {
		return Entry{Key: k, Value: v, Source: SourceDynamicTopic}
	}
	if t.broker != nil {
		if v, ok := t.broker.topicDefault(k); ok {
			return Entry{Key: k, Value: v, Source: SourceStaticBroker}
		}
	}
	return Entry{Key: k, Value: k.Default, Source: SourceDefault}
}

func (t Topic) value(name string) string {
	e, _ := t.Entry(name)
	return e.Value
}

func (t Topic) int64(name string) int64 {
	n, _ := strconv.ParseInt(t.value(name), 10, 64)
	return n
}

// SegmentBytes is segment.bytes.
func (t Topic) SegmentBytes() int64 { return t.int64("segment.bytes") }

// SegmentMs is segment.ms.
func (t Topic) SegmentMs() time.Duration {
	return time.Duration(t.int64("segment.ms")) * time.Millisecond
}

// RetentionMs is retention.ms; negative means unlimited.
func (t Topic) RetentionMs() time.Duration {
	v := t.int64("retention.ms")
	if v < 0 {
		return -1
	}
	return time.Duration(v) * time.Millisecond
}

// RetentionBytes is retention.bytes; negative means unlimited.
func (t Topic) RetentionBytes() int64 { return t.int64("retention.bytes") }

// IndexIntervalBytes is index.interval.bytes.
func (t Topic) IndexIntervalBytes() int { return int(t.int64("index.interval.bytes")) }

// MaxMessageBytes is max.message.bytes.
func (t Topic) MaxMessageBytes() int { return int(t.int64("max.message.bytes")) }

// LogAppendTime reports message.timestamp.type=LogAppendTime.
func (t Topic) LogAppendTime() bool { return t.value("message.timestamp.type") == "LogAppendTime" }

// CompressionType is compression.type, normalised: "producer" keeps the
// producer's codec; "uncompressed" is "none".
func (t Topic) CompressionType() string {
	v := t.value("compression.type")
	if v == "uncompressed" {
		return "none"
	}
	return v
}

// Compact reports whether cleanup.policy holds compact; Delete whether it
// holds delete (retention by time and size).
func (t Topic) Compact() bool { return t.policy("compact") }
func (t Topic) Delete() bool  { return t.policy("delete") }

// policy reports whether cleanup.policy lists p; it allocates nothing (the
// produce path asks).
func (t Topic) policy(p string) bool {
	for rest := t.value("cleanup.policy"); rest != ""; {
		var item string
		item, rest, _ = strings.Cut(rest, ",")
		if strings.TrimSpace(item) == p {
			return true
		}
	}
	return false
}

// DeleteRetentionMs is delete.retention.ms.
func (t Topic) DeleteRetentionMs() time.Duration {
	return time.Duration(t.int64("delete.retention.ms")) * time.Millisecond
}

// MinCleanableRatio is min.cleanable.dirty.ratio.
func (t Topic) MinCleanableRatio() float64 {
	v, err := strconv.ParseFloat(t.value("min.cleanable.dirty.ratio"), 64)
	if err != nil {
		return 0.5
	}
	return v
}

// MinCompactionLag and MaxCompactionLag are min/max.compaction.lag.ms
// (the latter's default, Long.MAX_VALUE, is no maximum: 0 here).
func (t Topic) MinCompactionLag() time.Duration {
	return time.Duration(t.int64("min.compaction.lag.ms")) * time.Millisecond
}

func (t Topic) MaxCompactionLag() time.Duration {
	ms := t.int64("max.compaction.lag.ms")
	if ms >= math.MaxInt64/int64(time.Millisecond) {
		return 0
	}
	return time.Duration(ms) * time.Millisecond
}

// Preallocate is preallocate.
func (t Topic) Preallocate() bool { return t.value("preallocate") == "true" }

// MinInsyncReplicas is min.insync.replicas.
func (t Topic) MinInsyncReplicas() int { return int(t.int64("min.insync.replicas")) }

// FlushMessages is flush.messages: 1 makes every append durable before it is
// acknowledged, whatever the producer's acks (Kafka's
// log.flush.interval.messages=1).
func (t Topic) FlushMessages() int64 { return t.int64("flush.messages") }
