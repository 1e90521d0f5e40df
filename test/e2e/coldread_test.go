package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// evictSegments drops topic's segment files from the page cache
// (fdatasync, then POSIX_FADV_DONTNEED, which drops clean pages only), so
// the broker's next reads of them are cold. It returns how many files.
func evictSegments(t *testing.T, b *Broker, topic string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(b.dataDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".log") || !strings.HasPrefix(filepath.Base(filepath.Dir(path)), topic+"-") {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			return fmt.Errorf("fdatasync %s: %w", path, err)
		}
		if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
			return fmt.Errorf("fadvise %s: %w", path, err)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func coldCounters(t *testing.T, b *Broker) (reads, fallbacks float64) {
	t.Helper()
	for k, v := range scrape(t, testContext(t, 10*time.Second), b) {
		switch {
		case strings.HasPrefix(k, "sluice_cold_reads_total{"):
			reads += v
		case strings.HasPrefix(k, "sluice_cold_read_fallbacks_total{"):
			fallbacks += v
		}
	}
	return reads, fallbacks
}

// Fetches and ListOffsets of data that is in neither the tail cache nor
// the page cache: the shard reads what it parses (batch headers, the batch
// ListOffsets answers from) asynchronously through its registered read
// slots, counted by sluice_cold_reads_total, and the answers are right.
func TestColdReadsAreAsynchronous(t *testing.T) {
	requireOwnBroker(t, "evicts its segment files from the page cache and reads its cold-read counters")
	const parts = 2
	b := StartSluice(t, BrokerOptions{})
	seed := testSeed(t)
	c := &franzClient{b: b}
	topic := topicName(t, "cold")
	// Small segments (as small as franz-go's 1 MB batches allow): most of
	// the data is in rolled segments, which the tail cache does not hold.
	c.CreateTopic(t, topic, parts, map[string]string{"segment.bytes": "1048576"})
	waitForTopic(t, b, topic, parts)
	recs := makeDataset(seed, 30000, datasetOptions{})
	l := layoutOf(recs, parts)
	checkAcks(t, "franz-go producer", l, c.Produce(t, topic, "none", recs))

	if n := evictSegments(t, b, topic); n < 4*parts {
		t.Fatalf("%d segment files: the dataset should fill several per partition", n)
	}
	before, _ := coldCounters(t, b)
	got := consumeWithFranz(t, b, topic, parts, nil)
	verifyFetched(t, "cold data", recs, l, got, verifyOptions{timestamps: true})
	afterFetch, fallbacks := coldCounters(t, b)
	if afterFetch <= before {
		t.Errorf("sluice_cold_reads_total went from %v to %v over a consume of evicted segments: the shard did not read them asynchronously", before, afterFetch)
	}
	if fallbacks > 0 {
		t.Errorf("%v cold requests fell back to blocking reads", fallbacks)
	}

	evictSegments(t, b, topic)
	// Timestamps from the first records of each partition: the lookups
	// land in the oldest (now cold) segment.
	for p := range int32(parts) {
		recsP := partitionRecords(got, p)
		if len(recsP) < 100 {
			t.Fatalf("partition %d has %d records", p, len(recsP))
		}
		ts := recsP[50].Timestamp
		listed := c.ListOffsets(t, topic, parts, fmt.Sprintf("timestamp:%d", ts))[0]
		if want := expectedTimestampOffset(got, p, ts); listed[p].Offset != want {
			t.Errorf("partition %d: ListOffsets(timestamp %d) of cold data = %d, want %d", p, ts, listed[p].Offset, want)
		}
	}
	afterList, _ := coldCounters(t, b)
	t.Logf("cold reads: %v before, %v after the consume, %v after ListOffsets", before, afterFetch, afterList)
	if afterList <= afterFetch {
		t.Errorf("sluice_cold_reads_total stayed at %v over ListOffsets of evicted segments", afterList)
	}
}
