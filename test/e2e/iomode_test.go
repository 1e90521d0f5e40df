package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// withIOMode replaces the broker's write mode for its next start (the last
// --io-mode on the command line wins).
func withIOMode(b *Broker, mode string) {
	b.opts.Flags = append(b.opts.Flags, "--io-mode", mode)
}

func brokerLog(t *testing.T, b *Broker) string {
	t.Helper()
	out, err := os.ReadFile(b.logPath)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// A data directory written in one write mode opens in the other, after a
// crash and after a clean shutdown: the direct mode's zero-padded,
// preallocated segment tails are cut or recovered, and the page-cache
// mode's unaligned tails are picked up by the direct writer. Small segments
// make rolls (and their padding cuts) happen.
func TestWriteModesShareADataDirectory(t *testing.T) {
	requireOwnBroker(t, "restarts in both write modes")
	const parts = 3
	b := StartSluice(t, BrokerOptions{Config: crashBrokerConfig(), Flags: []string{"--io-mode", "direct", "--tail-cache-bytes", "4194304"}})
	if log := brokerLog(t, b); !strings.Contains(log, "io_mode=direct") {
		t.Fatalf("the broker did not start in direct mode:\n%s", lastLines(log, 5))
	}
	seed := testSeed(t)
	c := &franzClient{b: b}
	topicA, topicB := topicName(t, "direct-first"), topicName(t, "page-cache-first")
	for _, topic := range []string{topicA, topicB} {
		c.CreateTopic(t, topic, parts, map[string]string{"segment.bytes": "1048576"})
		waitForTopic(t, b, topic, parts)
	}
	recsA := makeDataset(seed, 4000, datasetOptions{})
	la := layoutOf(recsA, parts)
	checkAcks(t, "franz-go producer (direct mode)", la, c.Produce(t, topicA, "none", recsA))
	// Read it back while it is in the tail cache: served from memory.
	got := consumeWithFranz(t, b, topicA, parts, nil)
	verifyFetched(t, "direct-mode data from the tail cache", recsA, la, got, verifyOptions{timestamps: true})
	m := scrape(t, testContext(t, 10*time.Second), b)
	var hits, writes, dsync float64
	for k, v := range m {
		switch {
		case strings.HasPrefix(k, "sluice_tail_cache_reads_total{") && strings.Contains(k, `result="hit"`):
			hits += v
		case strings.HasPrefix(k, "sluice_direct_writes_total{"):
			writes += v
			if strings.Contains(k, `kind="dsync"`) {
				dsync += v
			}
		}
	}
	if hits == 0 || writes == 0 || dsync == 0 {
		t.Errorf("direct mode metrics: %v tail cache hits, %v direct writes (%v RWF_DSYNC for the acks=all producer): want all above 0", hits, writes, dsync)
	}

	b.Kill(t)
	withIOMode(b, "page-cache")
	b.Restart(t)
	got = consumeWithFranz(t, b, topicA, parts, nil)
	verifyFetched(t, "direct-mode data read in page-cache mode after SIGKILL", recsA, la, got, verifyOptions{timestamps: true})
	recsB := makeDataset(seed+1, 4000, datasetOptions{})
	lb := layoutOf(recsB, parts)
	checkAcks(t, "franz-go producer (page-cache mode)", lb, c.Produce(t, topicB, "lz4", recsB))

	b.Kill(t)
	withIOMode(b, "direct")
	b.Restart(t)
	for _, r := range []struct {
		what       string
		topic      string
		recs       []testRecord
		l          layout
		codec      string
		appendMore bool
	}{
		{"direct-mode data back in direct mode", topicA, recsA, la, "", false},
		{"page-cache-mode data read in direct mode after SIGKILL", topicB, recsB, lb, "lz4", true},
	} {
		got := consumeWithFranz(t, b, r.topic, parts, nil)
		verifyFetched(t, r.what, r.recs, r.l, got, verifyOptions{timestamps: true, codec: r.codec})
	}
	// The direct writer continues a log that page-cache mode left with an
	// unaligned end, and a clean shutdown cuts its padding.
	more := makeDataset(seed+2, 1000, datasetOptions{})
	acks := c.Produce(t, topicB, "none", more)
	if len(acks) != len(more) {
		t.Fatalf("%d of %d appends acknowledged", len(acks), len(more))
	}
	b.Stop(t)
	filepath.WalkDir(b.dataDir, func(path string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(path, ".log") {
			if fi, err := os.Stat(path); err == nil && fi.Size()%4096 == 0 && fi.Size() >= 1<<20 {
				t.Errorf("%s is %d bytes after a clean shutdown: preallocated space not cut", path, fi.Size())
			}
		}
		return nil
	})
	withIOMode(b, "page-cache")
	b.Restart(t)
	got = consumeWithFranz(t, b, topicA, parts, nil)
	verifyFetched(t, "direct-mode data after a clean shutdown, in page-cache mode", recsA, la, got, verifyOptions{timestamps: true})
	total := 0
	for p := range int32(parts) {
		total += len(lb.byPartition[p])
	}
	if n := len(consumeWithFranz(t, b, topicB, parts, nil)); n != total+len(more) {
		t.Fatalf("topic %s holds %d records, want %d", topicB, n, total+len(more))
	}
}

// A data directory on a file system that refuses O_DIRECT (ramfs here)
// gets one clear log line and page-cache mode, and works.
func TestDirectModeFallsBackWithoutODirect(t *testing.T) {
	requireOwnBroker(t, "a data directory on ramfs")
	if os.Geteuid() != 0 {
		t.Skip("mounting a ramfs needs root")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "ramfs", "ramfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a ramfs (%v: %s): this kernel or sandbox does not allow it", err, out)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	b := StartSluice(t, BrokerOptions{Flags: []string{"--io-mode", "direct", "--data-dir", filepath.Join(mnt, "data")}})
	t.Cleanup(func() { b.terminate() }) // before the unmount (cleanups run last first)
	log := brokerLog(t, b)
	if n := strings.Count(log, "refuses O_DIRECT"); n != 1 {
		t.Errorf("%d log lines about O_DIRECT, want 1:\n%s", n, lastLines(log, 10))
	}
	if !strings.Contains(log, "io_mode=page-cache") {
		t.Errorf("the start-up line does not say page-cache mode:\n%s", lastLines(log, 5))
	}
	seed := testSeed(t)
	c := &franzClient{b: b}
	topic := topicName(t, "ramfs")
	c.CreateTopic(t, topic, 2, nil)
	waitForTopic(t, b, topic, 2)
	recs := makeDataset(seed, 500, datasetOptions{})
	l := layoutOf(recs, 2)
	checkAcks(t, "franz-go producer", l, c.Produce(t, topic, "none", recs))
	verifyFetched(t, "on ramfs", recs, l, consumeWithFranz(t, b, topic, 2, nil), verifyOptions{timestamps: true})
}

// Direct mode without pre-zeroing (--direct-prezero=false): data lands in
// fallocated, unwritten space; what was acknowledged survives a SIGKILL.
func TestDirectModeWithoutPreZeroing(t *testing.T) {
	requireOwnBroker(t, "a broker started with --direct-prezero=false, then killed")
	if !directMode() {
		t.Skip("the flag is about direct mode; this run is in page-cache mode")
	}
	b := StartSluice(t, BrokerOptions{Config: crashBrokerConfig(), Flags: []string{"--direct-prezero=false"}})
	seed := testSeed(t)
	c := &franzClient{b: b}
	topic := topicName(t, "no-prezero")
	c.CreateTopic(t, topic, 2, map[string]string{"segment.bytes": "1048576"})
	waitForTopic(t, b, topic, 2)
	recs := makeDataset(seed, 8000, datasetOptions{})
	l := layoutOf(recs, 2)
	checkAcks(t, "franz-go producer", l, c.Produce(t, topic, "zstd", recs))
	b.Kill(t)
	b.Restart(t)
	verifyFetched(t, "after SIGKILL, written without pre-zeroing", recs, l, consumeWithFranz(t, b, topic, 2, nil), verifyOptions{timestamps: true, codec: "zstd"})
}
