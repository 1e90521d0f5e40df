package e2e

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The records the client scenarios produce, how each client's output is
// checked against them, and franz-go as the independent reader of what the
// broker stored.

// codecs are the compression codecs every client produces with, by their
// Kafka compression.type names.
var codecs = []string{"none", "gzip", "snappy", "lz4", "zstd"}

// codecID is the batch attribute value (low 3 bits) of each codec.
var codecID = map[string]uint8{"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}

type header struct {
	Key   string
	Value []byte
}

// testRecord is one record of a dataset. Every record has a key, so its
// partition is murmur2(key) like the Java client's default partitioner.
type testRecord struct {
	Key       []byte
	Value     []byte
	Headers   []header
	Timestamp int64 // ms; strictly increasing through the dataset
}

type datasetOptions struct {
	// Text keeps keys, values and headers to printable ASCII without tab,
	// newline, comma or '=', for command-line tools.
	Text bool
	// HeaderGroup > 0 gives each run of that many records the same headers
	// (kcat sets headers per invocation, not per record).
	HeaderGroup int
}

const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

var words = []string{"sluice", "kafka", "broker", "partition", "offset", "segment", "batch", "record",
	"consumer", "producer", "leader", "epoch", "fsync", "shard", "ring", "zero-copy", "2024", "0xdeadbeef"}

// makeDataset generates n records from seed: keys of 1-24 bytes, values from
// empty to ~40 KB mixing compressible text and random bytes, 0-3 headers.
func makeDataset(seed uint64, n int, opts datasetOptions) []testRecord {
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	randText := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = alnum[rng.IntN(len(alnum))]
		}
		return b
	}
	randBytes := func(n int) []byte {
		if opts.Text {
			return randText(n)
		}
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		return b
	}
	compressible := func(n int) []byte {
		var buf bytes.Buffer
		for buf.Len() < n {
			buf.WriteString(words[rng.IntN(len(words))])
			buf.WriteByte(' ')
		}
		return buf.Bytes()[:n]
	}
	makeHeaders := func() []header {
		var hs []header
		for j := range rng.IntN(4) {
			name := fmt.Sprintf("h%d-%s", j, randText(1+rng.IntN(8)))
			var v []byte
			switch rng.IntN(4) {
			case 0:
				if opts.Text {
					v = randText(1)
				} else {
					v = []byte{} // empty, not null
				}
			case 1:
				v = compressible(1 + rng.IntN(40))
			default:
				v = randBytes(1 + rng.IntN(32))
			}
			hs = append(hs, header{Key: name, Value: v})
		}
		return hs
	}

	// Timestamps start an hour ago: inside any retention, and before
	// Kafka 4's default message.timestamp.after.max.ms (1 h) from now.
	base := time.Now().Add(-time.Hour).UnixMilli()
	recs := make([]testRecord, n)
	var groupHeaders []header
	for i := range recs {
		r := &recs[i]
		if opts.Text {
			r.Key = fmt.Appendf(nil, "k%06d-%s", i, randText(rng.IntN(12)))
		} else {
			r.Key = randBytes(1 + rng.IntN(24))
		}
		switch x := rng.IntN(1000); {
		case x < 30 && !opts.Text:
			r.Value = []byte{}
		case x < 35:
			r.Value = compressible(4096 + rng.IntN(36*1024))
		case x < 200:
			r.Value = randBytes(1 + rng.IntN(300))
		default:
			r.Value = append(compressible(16+rng.IntN(300)), randText(rng.IntN(16))...)
		}
		if opts.HeaderGroup > 0 {
			if i%opts.HeaderGroup == 0 {
				groupHeaders = makeHeaders()
			}
			r.Headers = groupHeaders
		} else {
			r.Headers = makeHeaders()
		}
		r.Timestamp = base + int64(i)
	}
	return recs
}

// writeDatasetFile writes recs for the Java and Python programs: one record a
// line, "timestampMs TAB keyHex TAB valueHex TAB name:valueHex,...".
func writeDatasetFile(t testing.TB, recs []testRecord) string {
	t.Helper()
	var buf bytes.Buffer
	for _, r := range recs {
		fmt.Fprintf(&buf, "%d\t%x\t%x\t", r.Timestamp, r.Key, r.Value)
		for j, h := range r.Headers {
			if j > 0 {
				buf.WriteByte(',')
			}
			fmt.Fprintf(&buf, "%x:%x", h.Key, h.Value)
		}
		buf.WriteByte('\n')
	}
	path := filepath.Join(t.TempDir(), "records.tsv")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// murmur2 is Kafka's hash for keyed partitioning (Utils.murmur2).
func murmur2(data []byte) int32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	length := len(data)
	h := seed ^ uint32(length)
	for i := 0; i+4 <= length; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := length &^ 3
	switch length % 4 {
	case 3:
		h ^= uint32(data[tail+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[tail+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[tail])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

// keyPartition is the partition the Java client's default partitioner picks
// for a keyed record.
func keyPartition(key []byte, partitions int) int32 {
	return (murmur2(key) & 0x7fffffff) % int32(partitions)
}

// layout is where each record of a dataset lands: per partition, the dataset
// indexes in produce order, so record byPartition[p][o] is at offset o.
type layout struct {
	byPartition [][]int
	partitionOf []int32
	offsetOf    []int64
}

func layoutOf(recs []testRecord, partitions int) layout {
	l := layout{byPartition: make([][]int, partitions), partitionOf: make([]int32, len(recs)), offsetOf: make([]int64, len(recs))}
	for i, r := range recs {
		p := keyPartition(r.Key, partitions)
		l.partitionOf[i] = p
		l.offsetOf[i] = int64(len(l.byPartition[p]))
		l.byPartition[p] = append(l.byPartition[p], i)
	}
	return l
}

// acked is where a producer was told a record landed.
type acked struct {
	Index     int   `json:"i"`
	Partition int32 `json:"p"`
	Offset    int64 `json:"o"`
}

// checkAcks compares the producer's acknowledgements with the layout.
func checkAcks(t testing.TB, who string, l layout, acks []acked) {
	t.Helper()
	if len(acks) != len(l.partitionOf) {
		t.Fatalf("%s: %d acknowledgements for %d records", who, len(acks), len(l.partitionOf))
	}
	bad := 0
	for _, a := range acks {
		if a.Partition != l.partitionOf[a.Index] || a.Offset != l.offsetOf[a.Index] {
			if bad < 5 {
				t.Errorf("%s: record %d acknowledged at partition %d offset %d, want partition %d (murmur2 of the key) offset %d",
					who, a.Index, a.Partition, a.Offset, l.partitionOf[a.Index], l.offsetOf[a.Index])
			}
			bad++
		}
	}
	if bad > 0 {
		t.Fatalf("%s: %d of %d acknowledgements wrong", who, bad, len(acks))
	}
}

// fetched is a record as a consumer returned it.
type fetched struct {
	Partition   int32
	Offset      int64
	Timestamp   int64
	Key, Value  []byte
	KeyNull     bool
	ValueNull   bool
	Headers     []header
	Compression int8 // the batch's codec id, -1 when the client does not say
}

// jsonRecord is a consumed record in the JSON lines of the Java and Python
// programs: hex strings, null for a null key or value.
type jsonRecord struct {
	P  int32        `json:"p"`
	O  int64        `json:"o"`
	TS int64        `json:"ts"`
	K  *string      `json:"k"`
	V  *string      `json:"v"`
	H  [][2]*string `json:"h"`
}

func (j jsonRecord) toFetched() (fetched, error) {
	f := fetched{Partition: j.P, Offset: j.O, Timestamp: j.TS, Compression: -1}
	var err error
	if j.K == nil {
		f.KeyNull = true
	} else if f.Key, err = hex.DecodeString(*j.K); err != nil {
		return f, err
	}
	if j.V == nil {
		f.ValueNull = true
	} else if f.Value, err = hex.DecodeString(*j.V); err != nil {
		return f, err
	}
	for _, h := range j.H {
		if h[0] == nil {
			return f, fmt.Errorf("header with a null name")
		}
		name, err := hex.DecodeString(*h[0])
		if err != nil {
			return f, err
		}
		var v []byte
		if h[1] != nil {
			if v, err = hex.DecodeString(*h[1]); err != nil {
				return f, err
			}
		}
		f.Headers = append(f.Headers, header{Key: string(name), Value: v})
	}
	return f, nil
}

// jsonLines splits a program's output into its JSON objects, failing on an
// {"error":...} line.
func jsonLines(t testing.TB, who string, out []byte) []json.RawMessage {
	t.Helper()
	var lines []json.RawMessage
	for _, line := range bytes.Split(out, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if line[0] != '{' {
			t.Logf("%s: ignoring non-JSON output line %.200q", who, line)
			continue
		}
		var e struct {
			Error *string `json:"error"`
		}
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("%s: bad JSON line %.200q: %v", who, line, err)
		}
		if e.Error != nil {
			t.Fatalf("%s: %s", who, *e.Error)
		}
		lines = append(lines, json.RawMessage(line))
	}
	return lines
}

// parseProduceOutput reads the acknowledgement lines of a produce command.
func parseProduceOutput(t testing.TB, who string, out []byte) []acked {
	t.Helper()
	var acks []acked
	done := false
	for _, line := range jsonLines(t, who, out) {
		var d struct {
			Done  string `json:"done"`
			Count int    `json:"count"`
		}
		json.Unmarshal(line, &d)
		if d.Done != "" {
			done = true
			continue
		}
		var a acked
		if err := json.Unmarshal(line, &a); err != nil {
			t.Fatalf("%s: %v", who, err)
		}
		acks = append(acks, a)
	}
	if !done {
		t.Fatalf("%s: no completion line", who)
	}
	return acks
}

// parseConsumeOutput reads the record lines of a consume command.
func parseConsumeOutput(t testing.TB, who string, out []byte) []fetched {
	t.Helper()
	var recs []fetched
	done := false
	for _, line := range jsonLines(t, who, out) {
		var d struct {
			Done string `json:"done"`
		}
		json.Unmarshal(line, &d)
		if d.Done != "" {
			done = true
			continue
		}
		var j jsonRecord
		if err := json.Unmarshal(line, &j); err != nil {
			t.Fatalf("%s: %v", who, err)
		}
		f, err := j.toFetched()
		if err != nil {
			t.Fatalf("%s: %v in %s", who, err, line)
		}
		recs = append(recs, f)
	}
	if !done {
		t.Fatalf("%s: no completion line", who)
	}
	return recs
}

type verifyOptions struct {
	// start is the first offset expected per partition (after DeleteRecords).
	start map[int32]int64
	// timestamps checks that each record kept the producer's timestamp.
	timestamps bool
	// codec, if set, is the batch compression every record must come from.
	codec string
	// nullHeaderIsEmpty accepts a null header value for an empty one (a
	// text tool cannot tell them apart).
	nullHeaderIsEmpty bool
}

// sentUncompressed holds, per test, the offset ranges its producer reports
// having sent in uncompressed batches although asked for a codec: librdkafka
// does so when compressing a batch would not make it smaller (see
// kcatClient.Produce). verifyFetched wants codec none for those records.
var (
	sentUncompressedMu sync.Mutex
	sentUncompressed   = map[testing.TB][]offsetRange{}
)

type offsetRange struct {
	partition   int32
	first, last int64 // last exclusive
}

// noteSentUncompressed records that t's producer sent offsets [first, last)
// of partition in uncompressed batches.
func noteSentUncompressed(t testing.TB, partition int32, first, last int64) {
	sentUncompressedMu.Lock()
	defer sentUncompressedMu.Unlock()
	if _, ok := sentUncompressed[t]; !ok {
		t.Cleanup(func() {
			sentUncompressedMu.Lock()
			delete(sentUncompressed, t)
			sentUncompressedMu.Unlock()
		})
	}
	sentUncompressed[t] = append(sentUncompressed[t], offsetRange{partition, first, last})
}

// verifyFetched checks that got is exactly the dataset from each
// partition's start offset to its end, byte for byte and in offset order.
func verifyFetched(t testing.TB, who string, recs []testRecord, l layout, got []fetched, opts verifyOptions) {
	t.Helper()
	next := make([]int64, len(l.byPartition))
	for p := range next {
		next[p] = opts.start[int32(p)]
	}
	sentUncompressedMu.Lock()
	uncompressed := sentUncompressed[t]
	sentUncompressedMu.Unlock()
	bad := 0
	report := func(format string, args ...any) {
		if bad < 8 {
			t.Errorf(who+": "+format, args...)
		}
		bad++
	}
	for _, f := range got {
		if f.Partition < 0 || int(f.Partition) >= len(l.byPartition) {
			report("record from partition %d", f.Partition)
			continue
		}
		want := next[f.Partition]
		if f.Offset != want {
			report("partition %d: got offset %d, want %d (offsets must be consecutive from %d)", f.Partition, f.Offset, want, opts.start[f.Partition])
			if f.Offset < want {
				continue
			}
		}
		next[f.Partition] = f.Offset + 1
		if f.Offset >= int64(len(l.byPartition[f.Partition])) {
			report("partition %d: offset %d beyond the %d records produced to it", f.Partition, f.Offset, len(l.byPartition[f.Partition]))
			continue
		}
		idx := l.byPartition[f.Partition][f.Offset]
		r := recs[idx]
		where := fmt.Sprintf("partition %d offset %d (record %d)", f.Partition, f.Offset, idx)
		if f.KeyNull || !bytes.Equal(f.Key, r.Key) {
			report("%s: key %s, want %s", where, short(f.Key, f.KeyNull), short(r.Key, false))
		}
		if f.ValueNull || !bytes.Equal(f.Value, r.Value) {
			report("%s: value %s (%d bytes), want %s (%d bytes)", where, short(f.Value, f.ValueNull), len(f.Value), short(r.Value, false), len(r.Value))
		}
		if !headersEqual(f.Headers, r.Headers, opts.nullHeaderIsEmpty) {
			report("%s: headers %s, want %s", where, fmtHeaders(f.Headers), fmtHeaders(r.Headers))
		}
		if opts.timestamps && f.Timestamp != r.Timestamp {
			report("%s: timestamp %d, want %d", where, f.Timestamp, r.Timestamp)
		}
		if opts.codec != "" && f.Compression >= 0 {
			want, why := opts.codec, "the topic's compression.type is producer"
			for _, u := range uncompressed {
				if u.partition == f.Partition && f.Offset >= u.first && f.Offset < u.last {
					want, why = "none", "the producer sent it uncompressed, "+opts.codec+" would not have made its batch smaller, and "+why
				}
			}
			if uint8(f.Compression) != codecID[want] {
				report("%s: stored in a batch compressed with codec %d, want %d (%s): %s",
					where, f.Compression, codecID[want], want, why)
			}
		}
	}
	for p := range next {
		if want := int64(len(l.byPartition[p])); next[p] != want {
			report("partition %d: consumed up to offset %d, want up to %d", p, next[p], want)
		}
	}
	if bad > 0 {
		t.Fatalf("%s: %d mismatches in %d records fetched", who, bad, len(got))
	}
}

func headersEqual(got, want []header, nullIsEmpty bool) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i].Key != want[i].Key {
			return false
		}
		if !bytes.Equal(got[i].Value, want[i].Value) {
			return false
		}
		if !nullIsEmpty && (got[i].Value == nil) != (want[i].Value == nil) {
			return false
		}
	}
	return true
}

func fmtHeaders(hs []header) string {
	var parts []string
	for _, h := range hs {
		parts = append(parts, fmt.Sprintf("%q=%s", h.Key, short(h.Value, h.Value == nil)))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func short(b []byte, null bool) string {
	if null {
		return "null"
	}
	if len(b) > 24 {
		return fmt.Sprintf("%x...", b[:24])
	}
	return fmt.Sprintf("%x", b)
}

// consumeWithFranz reads every partition of topic from its start (or the
// given offsets) up to the end offsets it has now, with franz-go, keeping
// each record's batch compression.
func consumeWithFranz(t testing.TB, b *Broker, topic string, partitions int, from map[int32]int64) []fetched {
	t.Helper()
	ctx := testContext(t, 2*time.Minute)
	adm := b.Admin(t)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("ListEndOffsets: %v", err)
	}
	end := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			t.Fatalf("ListEndOffsets %s/%d: %v", o.Topic, o.Partition, o.Err)
		}
		end[o.Partition] = o.Offset
	})
	offsets := map[int32]kgo.Offset{}
	remaining := 0
	for p := range int32(partitions) {
		if start, ok := from[p]; ok {
			offsets[p] = kgo.NewOffset().At(start)
			if start < end[p] {
				remaining++
			}
		} else {
			offsets[p] = kgo.NewOffset().AtStart()
			if end[p] > 0 {
				remaining++
			}
		}
	}
	cl := b.Client(t,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}),
		kgo.FetchMaxWait(500*time.Millisecond),
	)
	var out []fetched
	done := map[int32]bool{}
	for remaining > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("franz-go consume of %s: timed out with %d partitions unfinished (ends %v)", topic, remaining, end)
		}
		fs.EachError(func(topic string, p int32, err error) {
			t.Fatalf("franz-go fetch %s/%d: %v", topic, p, err)
		})
		fs.EachRecord(func(r *kgo.Record) {
			if done[r.Partition] || r.Offset >= end[r.Partition] {
				return
			}
			f := fetched{
				Partition:   r.Partition,
				Offset:      r.Offset,
				Timestamp:   r.Timestamp.UnixMilli(),
				Key:         r.Key,
				KeyNull:     r.Key == nil,
				Value:       r.Value,
				ValueNull:   r.Value == nil,
				Compression: int8(r.Attrs.CompressionType()),
			}
			for _, h := range r.Headers {
				f.Headers = append(f.Headers, header{Key: h.Key, Value: h.Value})
			}
			out = append(out, f)
			if r.Offset+1 >= end[r.Partition] {
				done[r.Partition] = true
				remaining--
			}
		})
	}
	return out
}

// expectedTimestampOffset is Kafka's answer to ListOffsets by timestamp: the
// first offset whose record has a timestamp >= ts, or -1 when none has.
func expectedTimestampOffset(got []fetched, partition int32, ts int64) int64 {
	for _, f := range got {
		if f.Partition == partition && f.Timestamp >= ts {
			return f.Offset
		}
	}
	return -1
}

// partitionRecords returns the records of one partition, in offset order.
func partitionRecords(got []fetched, partition int32) []fetched {
	var out []fetched
	for _, f := range got {
		if f.Partition == partition {
			out = append(out, f)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Offset < out[j].Offset })
	return out
}

// waitForTopic polls Metadata until every partition of topic has a leader:
// Kafka creates topics asynchronously, and a client that produces right away
// sees UNKNOWN_TOPIC_OR_PARTITION for a moment.
func waitForTopic(t testing.TB, b *Broker, topic string, partitions int) {
	t.Helper()
	adm := b.Admin(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		md, err := adm.Metadata(ctx, topic)
		cancel()
		if err == nil {
			if td, ok := md.Topics[topic]; ok && td.Err == nil && len(td.Partitions) == partitions {
				ready := true
				for _, p := range td.Partitions {
					if p.Err != nil || p.Leader < 0 {
						ready = false
					}
				}
				if ready {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s has no leader for all %d partitions after 30 s (last error %v)", topic, partitions, err)
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
}
