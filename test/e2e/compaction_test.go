package e2e

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// compactingBroker starts a sluice whose cleaner looks often, with a short
// checkpoint interval (the cleaner rewrites only segments a checkpoint has
// recorded durable) and extra broker settings.
func compactingBroker(t *testing.T, extra map[string]string) *Broker {
	cfg := defaultBrokerConfig()
	cfg["log.cleaner.backoff.ms"] = "200"
	cfg["log.flush.offset.checkpoint.interval.ms"] = "200"
	for k, v := range extra {
		cfg[k] = v
	}
	return StartSluice(t, BrokerOptions{Config: cfg})
}

// compactedTopic creates a one-partition compacted topic with small
// segments that roll within 100 ms.
func compactedTopic(t *testing.T, b *Broker, configs map[string]string) string {
	t.Helper()
	topic := topicName(t, "")
	all := map[string]*string{}
	for k, v := range map[string]string{
		"cleanup.policy": "compact", "segment.bytes": "16384", "segment.ms": "100",
		"min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "5000",
	} {
		all[k] = &v
	}
	for k, v := range configs {
		all[k] = &v
	}
	if _, err := b.Admin(t).CreateTopic(testContext(t, 30*time.Second), 1, -1, all, topic); err != nil {
		t.Fatalf("create %s: %v", topic, err)
	}
	return topic
}

// keyedRecord is what a test wrote for a key: the latest value, or a
// tombstone.
type keyedRecord struct {
	value     string
	tombstone bool
}

// produceKeyed writes n records over keys k0..k(keys-1) with random values
// (a few of them tombstones when tombstones is set) and returns, per key,
// the last thing written.
func produceKeyed(t *testing.T, cl *kgo.Client, topic string, n, keys int, tombstones bool, rng *rand.Rand) map[string]keyedRecord {
	t.Helper()
	last := map[string]keyedRecord{}
	recs := make([]*kgo.Record, 0, n)
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("k%d", rng.IntN(keys))
		r := &kgo.Record{Topic: topic, Key: []byte(key), Value: []byte(fmt.Sprintf("%s-v%d-%s", key, i, strings.Repeat("x", rng.IntN(200))))}
		if tombstones && rng.IntN(20) == 0 {
			r.Value = nil
		}
		recs = append(recs, r)
		last[key] = keyedRecord{value: string(r.Value), tombstone: r.Value == nil}
	}
	if err := cl.ProduceSync(testContext(t, 60*time.Second), recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	return last
}

// readCompacted reads partition 0 of topic from the start to its end and
// returns the records, checking offsets only grow.
func readCompacted(t *testing.T, b *Broker, topic string) []*kgo.Record {
	t.Helper()
	ctx := testContext(t, 60*time.Second)
	ends, err := b.Admin(t).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup(topic, 0)
	cl := b.Client(t, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	var out []*kgo.Record
	next := int64(0)
	for next < end.Offset {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read up to %d of %s, end %d", next, topic, end.Offset)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("fetch: %v", err) })
		for _, r := range fs.Records() {
			if r.Offset < next {
				t.Fatalf("offset %d after %d", r.Offset, next)
			}
			next = r.Offset + 1
			out = append(out, r)
		}
	}
	return out
}

// latestPerKey checks that the latest record read for every key is the
// last one written (a tombstone, or absent once tombstones may have gone,
// when tombstonesGone) and returns how many records each key has.
func latestPerKey(t *testing.T, got []*kgo.Record, want map[string]keyedRecord, tombstonesGone bool) map[string]int {
	t.Helper()
	seen := map[string]keyedRecord{}
	count := map[string]int{}
	for _, r := range got {
		seen[string(r.Key)] = keyedRecord{value: string(r.Value), tombstone: r.Value == nil}
		count[string(r.Key)]++
	}
	for key, w := range want {
		g, ok := seen[key]
		switch {
		case w.tombstone && tombstonesGone:
			if ok && !g.tombstone {
				t.Fatalf("key %s: read %q after its tombstone", key, g.value)
			}
		case !ok:
			t.Fatalf("key %s: nothing read, want %+v", key, w)
		case g != w:
			t.Fatalf("key %s: last read %+v, want %+v", key, g, w)
		}
	}
	return count
}

// waitCompacted reads topic from the start until done says the records
// read show the cleaner's work, and returns them; it fails after 60 s.
func waitCompacted(t *testing.T, b *Broker, topic, what string, done func([]*kgo.Record) bool) []*kgo.Record {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := readCompacted(t, b, topic)
		if done(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 60 s (%d records read)", what, len(got))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// atMost is a waitCompacted condition: at most n records left.
func atMost(n int) func([]*kgo.Record) bool {
	return func(rs []*kgo.Record) bool { return len(rs) <= n }
}

// noTombstones is a waitCompacted condition.
func noTombstones(rs []*kgo.Record) bool {
	for _, r := range rs {
		if r.Value == nil {
			return false
		}
	}
	return true
}

// rollActive appends one record after segment.ms so that the segment
// holding the records before it rolls and becomes cleanable.
func rollActive(t *testing.T, cl *kgo.Client, topic string) {
	t.Helper()
	time.Sleep(150 * time.Millisecond)
	if err := cl.ProduceSync(testContext(t, 30*time.Second), &kgo.Record{Topic: topic, Key: []byte("roll"), Value: []byte("roll")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func TestCompactionKeepsLatestPerKey(t *testing.T) {
	b := compactingBroker(t, nil)
	rng := rand.New(rand.NewPCG(testSeed(t), 1))
	for _, c := range []struct {
		name  string
		codec kgo.CompressionCodec
	}{{"none", kgo.NoCompression()}, {"zstd", kgo.ZstdCompression()}, {"lz4", kgo.Lz4Compression()}} {
		codec := c.name
		topic := compactedTopic(t, b, nil)
		cl := b.Client(t, kgo.ProducerBatchCompression(c.codec), kgo.ProducerLinger(5*time.Millisecond), kgo.ProducerBatchMaxBytes(8000))
		want := produceKeyed(t, cl, topic, 3000, 40, true, rng)
		// Some keys surely end with a tombstone.
		var tombs []*kgo.Record
		for _, k := range []string{"k0", "k1", "k2"} {
			tombs = append(tombs, &kgo.Record{Topic: topic, Key: []byte(k)})
			want[k] = keyedRecord{tombstone: true}
		}
		if err := cl.ProduceSync(testContext(t, 30*time.Second), tombs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		rollActive(t, cl, topic)
		want["roll"] = keyedRecord{value: "roll"}
		// 40 keys, "roll", and what the uncleaned active segment holds.
		got := waitCompacted(t, b, topic, codec+": a pass", atMost(3000/3))
		latestPerKey(t, got, want, false)
		// Past delete.retention.ms (5 s) later passes drop the tombstones.
		got = waitCompacted(t, b, topic, codec+": tombstones gone after delete.retention.ms", func(rs []*kgo.Record) bool {
			rollActive(t, cl, topic) // more dirt, and the segment with the tombstones closed
			return noTombstones(rs)
		})
		latestPerKey(t, got, want, true)
	}
	m := scrape(t, testContext(t, 10*time.Second), b)
	if m[`sluice_cleaner_bytes_total{direction="written"}`] == 0 || m["sluice_cleaner_records_removed_total"] == 0 {
		t.Fatalf("cleaner metrics did not move: %v / %v", m[`sluice_cleaner_bytes_total{direction="written"}`], m["sluice_cleaner_records_removed_total"])
	}
	found := false
	for name := range m {
		found = found || strings.HasPrefix(name, "sluice_partition_dirty_ratio{")
	}
	if !found {
		t.Fatal("no sluice_partition_dirty_ratio series for the compacted topics")
	}
}

func TestCompactedTopicRefusesRecordsWithoutKey(t *testing.T) {
	b := Shared(t)
	requireOwnBroker(t, "a compacted topic's produce checks")
	topic := compactedTopic(t, b, nil)
	for codec, c := range map[string]kgo.CompressionCodec{"none": kgo.NoCompression(), "snappy": kgo.SnappyCompression()} {
		cl := b.Client(t, kgo.ProducerBatchCompression(c), kgo.RecordRetries(0))
		err := cl.ProduceSync(testContext(t, 30*time.Second),
			&kgo.Record{Topic: topic, Key: []byte("k"), Value: []byte("v")},
			&kgo.Record{Topic: topic, Value: []byte("no key")}).FirstErr()
		if !errors.Is(err, kerr.InvalidRecord) {
			t.Fatalf("%s: a batch with a keyless record: %v, want INVALID_RECORD", codec, err)
		}
		if err := cl.ProduceSync(testContext(t, 30*time.Second), &kgo.Record{Topic: topic, Key: []byte("k"), Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatalf("%s: a keyed record after the refusal: %v", codec, err)
		}
	}
}

// TestCompactionSurvivesCrashes kills the broker while it cleans, slowed
// down by its rate limit so that the kill lands inside a pass, and checks
// after each restart that every key still reads its last record and that
// cleaning then finishes.
func TestCompactionSurvivesCrashes(t *testing.T) {
	b := compactingBroker(t, map[string]string{"log.cleaner.io.max.bytes.per.second": "400000"})
	rng := rand.New(rand.NewPCG(testSeed(t), 2))
	topic := compactedTopic(t, b, map[string]string{"segment.bytes": "65536"})
	cl := b.Client(t, kgo.ProducerLinger(5*time.Millisecond), kgo.ProducerBatchMaxBytes(8000))
	want := produceKeyed(t, cl, topic, 6000, 100, false, rng)
	rollActive(t, cl, topic)
	want["roll"] = keyedRecord{value: "roll"}
	dir := filepath.Join(b.dataDir, topic+"-0")
	kills := 0
	for kills < 3 {
		// Wait for a pass to be writing its files, then kill.
		deadline := time.Now().Add(30 * time.Second)
		for !hasCleanedFile(t, dir) {
			if time.Now().After(deadline) {
				t.Fatalf("no cleaning pass started in 30 s after %d kills", kills)
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		b.Kill(t)
		kills++
		b.Restart(t)
		latestPerKey(t, readCompacted(t, b, topic), want, false)
		if kills < 3 {
			// More dirt for the next pass to clean.
			cl = b.Client(t, kgo.ProducerLinger(5*time.Millisecond), kgo.ProducerBatchMaxBytes(8000))
			for k, v := range produceKeyed(t, cl, topic, 2000, 100, false, rng) {
				want[k] = v
			}
			rollActive(t, cl, topic)
		}
	}
	// After the kills the cleaner finishes: about one record per key.
	got := waitCompacted(t, b, topic, "compacted after the kills", atMost(3*100+50))
	latestPerKey(t, got, want, false)
	t.Logf("%d kills during cleaning; %d records left of %d written", kills, len(got), 6000+2*2000+3)
}

func hasCleanedFile(t *testing.T, dir string) bool {
	t.Helper()
	names, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, n := range names {
		if strings.HasSuffix(n.Name(), ".cleaned") || strings.HasSuffix(n.Name(), ".swap") {
			return true
		}
	}
	return false
}

// TestStandbyCatchesUpOverCompactionGaps: a standby that was down while
// its primary compacted a topic fetches batches with gaps between them
// (and batches that lost records); it keeps them with their offsets, and
// once promoted serves every key's last record.
func TestStandbyCatchesUpOverCompactionGaps(t *testing.T) {
	requireOwnBroker(t, "a pair of brokers")
	cfg := defaultBrokerConfig()
	cfg["log.cleaner.backoff.ms"] = "200"
	cfg["log.flush.offset.checkpoint.interval.ms"] = "200"
	primary := StartSluice(t, BrokerOptions{Config: cfg})
	topic := compactedTopic(t, primary, nil)
	rng := rand.New(rand.NewPCG(testSeed(t), 3))
	cl := primary.Client(t, kgo.ProducerLinger(5*time.Millisecond), kgo.ProducerBatchMaxBytes(8000))
	want := produceKeyed(t, cl, topic, 3000, 30, false, rng)
	rollActive(t, cl, topic)
	want["roll"] = keyedRecord{value: "roll"}
	waitCompacted(t, primary, topic, "the primary's pass", atMost(1000))
	// A new standby copies the compacted log, gaps and all. It records
	// no checkpoint for a minute, so its restart below scans what it
	// copied.
	scfg := defaultBrokerConfig()
	scfg["log.flush.offset.checkpoint.interval.ms"] = "60000"
	standby := StartSluice(t, BrokerOptions{Config: scfg, Flags: []string{"--node-id", "2", "--standby-of", primary.Addr}})
	waitCaughtUp(t, primary, standby)
	// The standby crashes, and so does the primary before it is back; the
	// operator restarts the standby's data as a primary. What it serves is
	// what its recovery scan kept, with nothing to fetch again.
	standby.Kill(t)
	primary.Kill(t)
	standby.opts.Flags = []string{"--node-id", "2"}
	if err := standby.start(); err != nil {
		t.Fatalf("restarting the standby as a primary: %v", err)
	}
	got := readCompacted(t, standby, topic)
	latestPerKey(t, got, want, false)
	if len(got) > 1000 {
		t.Fatalf("the standby holds %d records: it did not copy the compacted log", len(got))
	}
}
