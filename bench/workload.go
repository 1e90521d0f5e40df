package bench

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Mode is what a run measures.
type Mode string

// The run modes.
const (
	ModeProduce Mode = "produce" // producers only
	ModeConsume Mode = "consume" // catch-up reads of existing data
	ModeE2E     Mode = "e2e"     // produce and consume together, latency send → arrival
)

// Keys is the key distribution of produced records.
type Keys string

// The key distributions.
const (
	KeysNone    Keys = "none"    // nil keys: the partitioner spreads batches
	KeysUniform Keys = "uniform" // KeyCount keys, each equally likely
	KeysSkewed  Keys = "skewed"  // KeyCount keys, Zipf-distributed with exponent KeySkew
)

// ConsumerMode is how consumers get their partitions.
type ConsumerMode string

// The consumer modes.
const (
	ConsumerDirect ConsumerMode = "direct" // partitions split round-robin, no group coordinator
	ConsumerGroup  ConsumerMode = "group"  // one consumer group; the broker's coordinator assigns
)

// Workload describes one benchmark run, in the spirit of the OpenMessaging
// Benchmark's workload files. The zero value of a field means "the default"
// (see Defaults); the YAML and JSON keys are the snake_case names below.
type Workload struct {
	Name        string `json:"name" yaml:"name"`
	Description string `json:"description,omitempty" yaml:"description,omitempty"`
	Mode        Mode   `json:"mode" yaml:"mode"`

	// Topic is the topic name prefix; each run appends a unique suffix so runs
	// never see each other's data, unless TopicExact is set (consume mode reads
	// an existing topic that way).
	Topic       string            `json:"topic" yaml:"topic"`
	TopicExact  bool              `json:"topic_exact,omitempty" yaml:"topic_exact,omitempty"`
	Partitions  int               `json:"partitions" yaml:"partitions"`
	Replication int               `json:"replication" yaml:"replication"`
	TopicConfig map[string]string `json:"topic_config,omitempty" yaml:"topic_config,omitempty"`
	// BrokerTopicConfig adds topic configs for one broker, by the name the
	// run gives the broker (e.g. "kafka": {"flush.messages": "1"} is how the
	// fsync durability mode is asked of Apache Kafka). They win over
	// TopicConfig.
	BrokerTopicConfig map[string]map[string]string `json:"broker_topic_config,omitempty" yaml:"broker_topic_config,omitempty"`
	KeepTopic         bool                         `json:"keep_topic,omitempty" yaml:"keep_topic,omitempty"`

	RecordSize Size    `json:"record_size" yaml:"record_size"`
	Keys       Keys    `json:"keys" yaml:"keys"`
	KeyCount   int     `json:"key_count" yaml:"key_count"`
	KeySkew    float64 `json:"key_skew" yaml:"key_skew"`

	Producers    int          `json:"producers" yaml:"producers"`
	Consumers    int          `json:"consumers" yaml:"consumers"`
	ConsumerMode ConsumerMode `json:"consumer_mode" yaml:"consumer_mode"`

	Acks               Acks     `json:"acks" yaml:"acks"`
	Idempotence        bool     `json:"idempotence" yaml:"idempotence"`
	Compression        string   `json:"compression" yaml:"compression"`
	Linger             Duration `json:"linger" yaml:"linger"`
	BatchSize          Size     `json:"batch_size" yaml:"batch_size"`
	MaxInFlight        int      `json:"max_in_flight" yaml:"max_in_flight"`
	MaxBufferedRecords int      `json:"max_buffered_records" yaml:"max_buffered_records"`

	// Rate is the target rate in records/s summed over all producers, sent
	// open-loop; 0 means as fast as the producers can go.
	Rate     float64  `json:"rate" yaml:"rate"`
	Warmup   Duration `json:"warmup" yaml:"warmup"`
	Duration Duration `json:"duration" yaml:"duration"`
	// PrefillRecords (consume mode) writes this many records, unmeasured,
	// before the catch-up read; 0 reads what the topic already holds.
	PrefillRecords int64 `json:"prefill_records,omitempty" yaml:"prefill_records,omitempty"`
	// BackgroundReaders (produce and e2e modes) are catch-up consumers that
	// read the topic's older data, the PrefillRecords written before the
	// run, from the start over and over while the producers run: produce
	// latency under a steady rate while older data is being read.
	BackgroundReaders int `json:"background_readers,omitempty" yaml:"background_readers,omitempty"`
	// DropCaches syncs and drops the page cache after the prefill (root
	// only; a note says when it could not), so the older data is read from
	// the disk.
	DropCaches bool `json:"drop_caches,omitempty" yaml:"drop_caches,omitempty"`
	// DrainTimeout bounds how long consumers may take to catch up after the
	// producers stop (e2e) or to read everything (consume).
	DrainTimeout Duration `json:"drain_timeout" yaml:"drain_timeout"`
}

// Defaults fills every unset field with its default.
func (w *Workload) Defaults() {
	if w.Mode == "" {
		w.Mode = ModeProduce
	}
	if w.Name == "" {
		w.Name = string(w.Mode)
	}
	if w.Topic == "" {
		w.Topic = "sluice-bench"
	}
	if w.Partitions == 0 {
		w.Partitions = 6
	}
	if w.Replication == 0 {
		w.Replication = 1
	}
	if w.RecordSize == 0 {
		w.RecordSize = 1024
	}
	if w.Keys == "" {
		w.Keys = KeysNone
	}
	if w.KeyCount == 0 {
		w.KeyCount = 1000
	}
	if w.KeySkew == 0 {
		w.KeySkew = 1.2
	}
	if w.Producers == 0 && w.Mode != ModeConsume {
		w.Producers = 1
	}
	if w.Consumers == 0 && w.Mode != ModeProduce {
		w.Consumers = 1
	}
	if w.ConsumerMode == "" {
		w.ConsumerMode = ConsumerDirect
	}
	if !w.Acks.set {
		w.Acks = AcksOne
	}
	if w.Compression == "" {
		w.Compression = "none"
	}
	if w.BatchSize == 0 {
		w.BatchSize = 1 << 20
	}
	if w.MaxInFlight == 0 {
		w.MaxInFlight = 5
	}
	if w.MaxBufferedRecords == 0 {
		w.MaxBufferedRecords = 10000
	}
	if w.Duration == 0 {
		w.Duration = Duration(10 * time.Second)
	}
	if w.DrainTimeout == 0 {
		w.DrainTimeout = Duration(60 * time.Second)
	}
}

// Validate reports the first thing wrong with a defaulted workload.
func (w *Workload) Validate() error {
	switch w.Mode {
	case ModeProduce, ModeConsume, ModeE2E:
	default:
		return fmt.Errorf("mode %q: want produce, consume or e2e", w.Mode)
	}
	switch w.Keys {
	case KeysNone, KeysUniform, KeysSkewed:
	default:
		return fmt.Errorf("keys %q: want none, uniform or skewed", w.Keys)
	}
	switch w.ConsumerMode {
	case ConsumerDirect, ConsumerGroup:
	default:
		return fmt.Errorf("consumer_mode %q: want direct or group", w.ConsumerMode)
	}
	switch w.Compression {
	case "none", "gzip", "snappy", "lz4", "zstd":
	default:
		return fmt.Errorf("compression %q: want none, gzip, snappy, lz4 or zstd", w.Compression)
	}
	switch {
	case w.Partitions < 1:
		return fmt.Errorf("partitions %d: want at least 1", w.Partitions)
	case w.RecordSize < 1:
		return fmt.Errorf("record_size %d: want at least 1 byte", w.RecordSize)
	case w.Mode != ModeConsume && w.Producers < 1:
		return fmt.Errorf("producers %d: want at least 1", w.Producers)
	case w.Mode != ModeProduce && w.Consumers < 1:
		return fmt.Errorf("consumers %d: want at least 1", w.Consumers)
	case w.BackgroundReaders < 0 || w.BackgroundReaders > 0 && (w.Mode == ModeConsume || w.PrefillRecords <= 0):
		return fmt.Errorf("background_readers %d: want 0, or readers in produce or e2e mode with prefill_records to read", w.BackgroundReaders)
	case w.Keys == KeysSkewed && w.KeySkew <= 1:
		return fmt.Errorf("key_skew %g: the Zipf exponent must be > 1", w.KeySkew)
	case w.KeyCount < 1:
		return fmt.Errorf("key_count %d: want at least 1", w.KeyCount)
	case w.Rate < 0:
		return fmt.Errorf("rate %g: want >= 0 (0 is max rate)", w.Rate)
	case w.Duration <= 0:
		return fmt.Errorf("duration %s: want > 0", w.Duration)
	case w.Warmup < 0:
		return fmt.Errorf("warmup %s: want >= 0", w.Warmup)
	case w.BatchSize < 1024:
		return fmt.Errorf("batch_size %d: want at least 1 KiB", w.BatchSize)
	case w.MaxInFlight < 1:
		return fmt.Errorf("max_in_flight %d: want at least 1", w.MaxInFlight)
	case w.Idempotence && w.Acks.Value() != -1:
		return fmt.Errorf("idempotence needs acks=all (got acks=%s)", w.Acks)
	}
	return nil
}

// TopicConfigFor returns the topic configs for a broker by name: TopicConfig
// with that broker's BrokerTopicConfig on top.
func (w *Workload) TopicConfigFor(broker string) map[string]string {
	out := map[string]string{}
	for k, v := range w.TopicConfig {
		out[k] = v
	}
	for k, v := range w.BrokerTopicConfig[broker] {
		out[k] = v
	}
	return out
}

// Summary is a one-line description of the workload's shape.
func (w *Workload) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s, %s records, %d partitions", w.Mode, w.RecordSize, w.Partitions)
	if w.Producers > 0 {
		fmt.Fprintf(&b, ", %d producers", w.Producers)
	}
	if w.Consumers > 0 {
		fmt.Fprintf(&b, ", %d consumers (%s)", w.Consumers, w.ConsumerMode)
	}
	if w.Mode != ModeConsume {
		if w.Rate > 0 {
			fmt.Fprintf(&b, ", %s rec/s open-loop", strconv.FormatFloat(w.Rate, 'f', -1, 64))
		} else {
			b.WriteString(", max rate")
		}
		fmt.Fprintf(&b, ", acks=%s", w.Acks)
		if w.Keys != KeysNone {
			fmt.Fprintf(&b, ", keys %s", w.Keys)
		}
		if w.Compression != "none" {
			fmt.Fprintf(&b, ", %s", w.Compression)
		}
	}
	return b.String()
}

// LoadWorkload reads a workload from a YAML or JSON file (JSON is YAML, so
// one decoder reads both). Unknown keys are errors: a typo must not silently
// fall back to a default. The result is defaulted and validated.
func LoadWorkload(path string) (Workload, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Workload{}, err
	}
	var w Workload
	if err := decodeStrict(data, &w); err != nil {
		return Workload{}, fmt.Errorf("%s: %w", path, err)
	}
	if w.Name == "" {
		w.Name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	w.Defaults()
	if err := w.Validate(); err != nil {
		return Workload{}, fmt.Errorf("%s: %w", path, err)
	}
	return w, nil
}

// ParseWorkload decodes, defaults and validates a YAML or JSON workload.
func ParseWorkload(data []byte) (Workload, error) {
	var w Workload
	if err := decodeStrict(data, &w); err != nil {
		return Workload{}, err
	}
	w.Defaults()
	if err := w.Validate(); err != nil {
		return Workload{}, err
	}
	return w, nil
}

func decodeStrict(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return err
	}
	return nil
}

// Duration is a time.Duration written as Go duration text ("10s", "500ms")
// in YAML and JSON; a bare number is seconds.
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// ParseDuration accepts Go duration text or a number of seconds.
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("duration %q: want e.g. 10s, 500ms or a number of seconds", s)
	}
	return Duration(d), nil
}

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseDuration(n.Value)
	*d = v
	return err
}

func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s any
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := ParseDuration(fmt.Sprint(s))
	*d = v
	return err
}

// Size is a byte count written as a number or with a unit: 100, 1KiB, 1MiB,
// 64KB (KB and MB are 1000-based, KiB and MiB 1024-based, K and M 1024).
type Size int64

// ParseSize reads a byte count.
func ParseSize(s string) (Size, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		scale  int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
		{"KB", 1000}, {"MB", 1000_000}, {"GB", 1000_000_000},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1},
	}
	scale := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, scale = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.scale
			break
		}
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want a byte count such as 1024, 1KiB or 1MiB", s)
	}
	return Size(n * float64(scale)), nil
}

func (z Size) String() string {
	switch {
	case z >= 1<<20 && z%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", z>>20)
	case z >= 1<<10 && z%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", z>>10)
	}
	return fmt.Sprintf("%dB", int64(z))
}

func (z *Size) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseSize(n.Value)
	*z = v
	return err
}

func (z *Size) UnmarshalJSON(b []byte) error {
	var s any
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := ParseSize(fmt.Sprint(s))
	*z = v
	return err
}

// Acks is the producer's acks setting: 0, 1 or all (-1).
type Acks struct {
	v   int16
	set bool
}

// The acks settings.
var (
	AcksNone = Acks{0, true}
	AcksOne  = Acks{1, true}
	AcksAll  = Acks{-1, true}
)

// ParseAcks reads 0, 1, all or -1.
func ParseAcks(s string) (Acks, error) {
	switch strings.TrimSpace(strings.ToLower(s)) {
	case "0":
		return AcksNone, nil
	case "1":
		return AcksOne, nil
	case "all", "-1":
		return AcksAll, nil
	}
	return Acks{}, fmt.Errorf("acks %q: want 0, 1 or all", s)
}

// Value is the wire value: 0, 1 or -1.
func (a Acks) Value() int16 { return a.v }

func (a Acks) String() string {
	if a.v == -1 {
		return "all"
	}
	return strconv.Itoa(int(a.v))
}

func (a *Acks) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseAcks(n.Value)
	*a = v
	return err
}

func (a Acks) MarshalYAML() (any, error) { return a.String(), nil }

func (a Acks) MarshalJSON() ([]byte, error) { return json.Marshal(a.String()) }

func (a *Acks) UnmarshalJSON(b []byte) error {
	var s any
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := ParseAcks(fmt.Sprint(s))
	*a = v
	return err
}

// workloadFlag is one command-line flag that sets a workload field.
type workloadFlag struct {
	name, usage string
	set         func(w *Workload, v string) error
}

func intField(p func(w *Workload) *int) func(*Workload, string) error {
	return func(w *Workload, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("want an integer, got %q", v)
		}
		*p(w) = n
		return nil
	}
}

func boolField(p func(w *Workload) *bool) func(*Workload, string) error {
	return func(w *Workload, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", v)
		}
		*p(w) = b
		return nil
	}
}

func durationField(p func(w *Workload) *Duration) func(*Workload, string) error {
	return func(w *Workload, v string) error {
		d, err := ParseDuration(v)
		*p(w) = d
		return err
	}
}

func sizeField(p func(w *Workload) *Size) func(*Workload, string) error {
	return func(w *Workload, v string) error {
		z, err := ParseSize(v)
		*p(w) = z
		return err
	}
}

var workloadFlags = []workloadFlag{
	{"name", "workload name (for reports)", func(w *Workload, v string) error { w.Name = v; return nil }},
	{"topic", "topic name prefix (a unique suffix is added unless --topic-exact)", func(w *Workload, v string) error { w.Topic = v; return nil }},
	{"topic-exact", "use --topic as is (consume mode: read an existing topic)", boolField(func(w *Workload) *bool { return &w.TopicExact })},
	{"keep-topic", "do not delete the topic after the run", boolField(func(w *Workload) *bool { return &w.KeepTopic })},
	{"partitions", "partitions of the topic (default 6)", intField(func(w *Workload) *int { return &w.Partitions })},
	{"replication", "replication factor of the topic (default 1; 2 for Kafka with two brokers, or a sluice pair)", intField(func(w *Workload) *int { return &w.Replication })},
	{"topic-config", "topic config k=v (repeatable)", func(w *Workload, v string) error {
		k, val, ok := strings.Cut(v, "=")
		if !ok {
			return fmt.Errorf("want key=value, got %q", v)
		}
		if w.TopicConfig == nil {
			w.TopicConfig = map[string]string{}
		}
		w.TopicConfig[k] = val
		return nil
	}},
	{"record-size", "record value size (default 1KiB)", sizeField(func(w *Workload) *Size { return &w.RecordSize })},
	{"keys", "key distribution: none, uniform or skewed (default none)", func(w *Workload, v string) error { w.Keys = Keys(v); return nil }},
	{"key-count", "distinct keys (default 1000)", intField(func(w *Workload) *int { return &w.KeyCount })},
	{"key-skew", "Zipf exponent of skewed keys, > 1 (default 1.2)", func(w *Workload, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		w.KeySkew = f
		return err
	}},
	{"producers", "producer clients (default 1)", intField(func(w *Workload) *int { return &w.Producers })},
	{"consumers", "consumer clients (default 1)", intField(func(w *Workload) *int { return &w.Consumers })},
	{"consumer-mode", "direct (split partitions) or group (default direct)", func(w *Workload, v string) error { w.ConsumerMode = ConsumerMode(v); return nil }},
	{"acks", "0, 1 or all (default 1)", func(w *Workload, v string) error {
		a, err := ParseAcks(v)
		w.Acks = a
		return err
	}},
	{"idempotence", "idempotent producer (needs acks=all)", boolField(func(w *Workload) *bool { return &w.Idempotence })},
	{"compression", "none, gzip, snappy, lz4 or zstd (default none)", func(w *Workload, v string) error { w.Compression = v; return nil }},
	{"linger", "producer linger (default 0)", durationField(func(w *Workload) *Duration { return &w.Linger })},
	{"batch-size", "max record batch bytes (default 1MiB)", sizeField(func(w *Workload) *Size { return &w.BatchSize })},
	{"max-in-flight", "produce requests in flight per broker (default 5; 1 with idempotence)", intField(func(w *Workload) *int { return &w.MaxInFlight })},
	{"max-buffered-records", "records a producer may buffer before Produce blocks (default 10000)", intField(func(w *Workload) *int { return &w.MaxBufferedRecords })},
	{"rate", "target records/s over all producers, open-loop; 0 = max rate", func(w *Workload, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		w.Rate = f
		return err
	}},
	{"warmup", "warm-up before measuring (default 0)", durationField(func(w *Workload) *Duration { return &w.Warmup })},
	{"duration", "measured duration (default 10s)", durationField(func(w *Workload) *Duration { return &w.Duration })},
	{"background-readers", "produce/e2e: consumers re-reading the prefilled data during the run", intField(func(w *Workload) *int { return &w.BackgroundReaders })},
	{"drop-caches", "sync and drop the page cache after the prefill (root)", boolField(func(w *Workload) *bool { return &w.DropCaches })},
	{"prefill", "records to write (unmeasured) before the run: read in consume mode, re-read by background readers otherwise", func(w *Workload, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		w.PrefillRecords = n
		return err
	}},
	{"drain-timeout", "how long consumers may take to catch up (default 60s)", durationField(func(w *Workload) *Duration { return &w.DrainTimeout })},
}

// WorkloadFlags are the workload flags of a command line. They are applied
// over a workload read from a file (or the zero workload), so a flag wins
// over the file only when it is given.
type WorkloadFlags struct {
	fs     *flag.FlagSet
	values map[string][]string
	order  []string
}

// BindWorkloadFlags registers the workload flags on fs.
func BindWorkloadFlags(fs *flag.FlagSet) *WorkloadFlags {
	wf := &WorkloadFlags{fs: fs, values: map[string][]string{}}
	for _, f := range workloadFlags {
		name := f.name
		fs.Func(name, f.usage, func(v string) error {
			// Check the value now, so the error names the flag.
			var probe Workload
			if err := f.set(&probe, v); err != nil {
				return err
			}
			if _, seen := wf.values[name]; !seen {
				wf.order = append(wf.order, name)
			}
			wf.values[name] = append(wf.values[name], v)
			return nil
		})
	}
	return wf
}

// Apply sets the given flags on w, then defaults and validates it.
func (wf *WorkloadFlags) Apply(w *Workload) error {
	byName := map[string]workloadFlag{}
	for _, f := range workloadFlags {
		byName[f.name] = f
	}
	names := append([]string(nil), wf.order...)
	sort.Strings(names)
	for _, name := range names {
		for _, v := range wf.values[name] {
			if err := byName[name].set(w, v); err != nil {
				return fmt.Errorf("--%s: %w", name, err)
			}
		}
	}
	w.Defaults()
	return w.Validate()
}
