package log

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-broker/sluice/engine/storage"
	"github.com/sluice-broker/sluice/wire/compress"
	"github.com/sluice-broker/sluice/wire/records"
)

// kv is a test record: value nil is a tombstone.
type kv struct {
	key, value string
	tombstone  bool
}

// keyedBatch builds a batch of records with keys and values at timestamp ts.
func keyedBatch(t testing.TB, codec compress.Codec, ts int64, recs ...kv) []byte {
	t.Helper()
	h := records.Header{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, BaseTimestamp: ts}
	rs := make([]records.Record, len(recs))
	for i, r := range recs {
		rs[i] = records.Record{OffsetDelta: int32(i)}
		if r.key != "" {
			rs[i].Key = []byte(r.key) // "" is a null key
		}
		if !r.tombstone {
			rs[i].Value = []byte(r.value)
		}
	}
	b, err := records.AppendBatch(nil, h, rs, codec)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readRecord is a record as read back, with its offset and timestamp.
type readRecord struct {
	kv
	ts int64
}

// recordsOf reads every record of the log through Read, by offset,
// checking each batch's CRC.
func recordsOf(t testing.TB, l *Log) map[Offset]readRecord {
	t.Helper()
	out := map[Offset]readRecord{}
	set := readAll(t, l)
	it := records.NewIter(set)
	for {
		batch, h, ok := it.Next()
		if !ok {
			break
		}
		if _, err := records.VerifyCRC(batch); err != nil {
			t.Fatalf("batch at %d: %v", h.BaseOffset, err)
		}
		err := records.ForEachRecord(batch, nil, func(r *records.Record) error {
			off := Offset(h.BaseOffset + int64(r.OffsetDelta))
			if _, dup := out[off]; dup {
				t.Fatalf("offset %d read twice", off)
			}
			out[off] = readRecord{kv{string(r.Key), string(r.Value), r.Value == nil}, h.BaseTimestamp + r.TimestampDelta}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// latest returns, per key, the offset of its last record.
func latest(recs map[Offset]readRecord) map[string]Offset {
	m := map[string]Offset{}
	for off, r := range recs {
		if off > m[r.key] || m[r.key] == 0 {
			m[r.key] = max(m[r.key], off)
		}
	}
	return m
}

func compactConfig() Config {
	return Config{SegmentBytes: 600, Compact: true, NoDelete: true, MinCleanableRatio: 0.5, DeleteRetentionMs: time.Hour}
}

// settle makes everything appended durable and readable, as the shard's
// rounds and checkpoints do.
func settle(t testing.TB, l *Log) {
	t.Helper()
	drive(t, l)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	l.AdvanceHighWatermark(l.LogEndOffset())
}

// cleanNow runs one whole cleaning pass, as the shard and cleaner do, and
// returns its job (nil when none was due).
func cleanNow(t testing.TB, l *Log, now time.Time) *CleanJob {
	t.Helper()
	settle(t, l)
	j := l.PlanClean(0)
	if j == nil {
		return nil
	}
	j.Run(PlainIO{}, now)
	if !l.CommitClean(j) {
		j.Discard()
		if j.Err != nil {
			t.Fatalf("clean: %v", j.Err)
		}
		return j
	}
	l.FinishClean(j, j.Install())
	j.ReleaseReplaced()
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	return j
}

// fillKeys appends n single-record batches cycling through keys k0..k(keys-1),
// the value naming the batch's index.
func fillKeys(t testing.TB, l *Log, n, keys int) {
	t.Helper()
	for i := 0; i < n; i++ {
		mustAppend(t, l, keyedBatch(t, compress.None, t0.UnixMilli()+int64(i), kv{key: "k" + strconv.Itoa(i%keys), value: fmt.Sprintf("v%d-%d", l.LogEndOffset(), i)}))
	}
}

// checkCompacted checks after a pass: every record read is the one
// written at its offset, every key's latest record is there, and below
// the cleaned offset each key appears once.
func checkCompacted(t *testing.T, before, after map[Offset]readRecord, cleanedTo Offset) {
	t.Helper()
	for off, r := range after {
		if before[off] != r {
			t.Fatalf("offset %d reads %+v, was written %+v", off, r, before[off])
		}
	}
	for key, off := range latest(before) {
		if key == "" {
			continue // records without a key: compaction drops them
		}
		if _, ok := after[off]; !ok {
			t.Fatalf("key %s: its latest record, offset %d, is gone", key, off)
		}
	}
	seen := map[string]Offset{}
	for off, r := range after {
		if off >= cleanedTo {
			continue
		}
		if prev, dup := seen[r.key]; dup {
			t.Fatalf("key %s at %d and %d below the cleaned offset %d", r.key, prev, off, cleanedTo)
		}
		seen[r.key] = off
	}
}

func TestCleanKeepsLatestPerKey(t *testing.T) {
	forEachFS(t, func(t *testing.T, c fsCase) {
		l := mustOpen(t, c.fs, c.dir, compactConfig(), Checkpoint{})
		fillKeys(t, l, 300, 7)
		before := recordsOf(t, l)
		segsBefore := l.SegmentCount()
		j := cleanNow(t, l, t0)
		if j == nil || j.Stats.Removed == 0 {
			t.Fatalf("no pass, or nothing removed: %+v", j)
		}
		after := recordsOf(t, l)
		checkCompacted(t, before, after, l.CleanedOffset())
		if len(after) >= len(before)/2 || l.SegmentCount() >= segsBefore {
			t.Fatalf("%d of %d records and %d of %d segments left", len(after), len(before), l.SegmentCount(), segsBefore)
		}
		// Reading from every offset works across the gaps.
		for off := l.LogStartOffset(); off < l.LogEndOffset(); off++ {
			r, err := l.Read(off, 1<<20, true, l.LogEndOffset())
			if err != nil || r.Len == 0 || r.NextOffset <= off {
				t.Fatalf("read at %d: %+v, %v", off, r, err)
			}
			r.Release()
		}
		// More writes, a clean restart, and a restart that scans every
		// segment (no checkpoint) read the same.
		fillKeys(t, l, 20, 7)
		want := recordsOf(t, l)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		cp, _ := l.Checkpoint()
		for _, cp := range []Checkpoint{cp, {}} {
			l = mustOpen(t, c.fs, c.dir, compactConfig(), cp)
			if got := recordsOf(t, l); !maps.Equal(got, want) {
				t.Fatalf("after reopen with %+v: %d records, want %d", cp, len(got), len(want))
			}
			if l.CleanedOffset() != j.End {
				t.Fatalf("cleaned offset %d after reopen, want %d", l.CleanedOffset(), j.End)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func TestCleanTombstonesAfterDeleteRetention(t *testing.T) {
	forEachFS(t, func(t *testing.T, c fsCase) {
		cfg := compactConfig()
		cfg.MinCleanableRatio = 0.01
		l := mustOpen(t, c.fs, c.dir, cfg, Checkpoint{})
		ts := t0.UnixMilli() - 1000
		mustAppend(t, l, keyedBatch(t, compress.None, ts, kv{key: "gone", value: "1"}, kv{key: "stays", value: "1"}))
		mustAppend(t, l, keyedBatch(t, compress.None, ts, kv{key: "gone", tombstone: true}))
		fillKeys(t, l, 40, 5)
		if cleanNow(t, l, t0) == nil {
			t.Fatal("no pass")
		}
		after := recordsOf(t, l)
		r, ok := after[2]
		if !ok || !r.tombstone || r.ts != ts {
			t.Fatalf("the tombstone after the first pass: %+v %v (timestamp must stay %d)", r, ok, ts)
		}
		if _, ok := after[0]; ok {
			t.Fatal("the record the tombstone deletes is still there")
		}
		if after[1].key != "stays" || after[1].ts != ts {
			t.Fatalf("offset 1 holds %+v, want the 'stays' record at %d", after[1], ts)
		}
		// Before the horizon another pass keeps it; after, it goes.
		fillKeys(t, l, 40, 5)
		cleanNow(t, l, t0.Add(30*time.Minute))
		if r := recordsOf(t, l)[2]; !r.tombstone {
			t.Fatalf("tombstone gone before delete.retention.ms: %+v", r)
		}
		fillKeys(t, l, 40, 5)
		cleanNow(t, l, t0.Add(2*time.Hour))
		got := recordsOf(t, l)
		if _, ok := got[2]; ok {
			t.Fatal("tombstone kept past delete.retention.ms")
		}
		if got[1].key != "stays" {
			t.Fatal("the key 'stays' went with the tombstone")
		}
		l.Close()
	})
}

func TestCleanCompressedBatchesKeepTheirCodec(t *testing.T) {
	for _, codec := range []compress.Codec{compress.Gzip, compress.Snappy, compress.LZ4, compress.Zstd} {
		t.Run(codec.String(), func(t *testing.T) {
			fs := storage.NewMem()
			l := mustOpen(t, fs, "d/t-0", compactConfig(), Checkpoint{})
			for i := 0; i < 40; i++ {
				mustAppend(t, l, keyedBatch(t, codec, t0.UnixMilli(),
					kv{key: "a", value: strconv.Itoa(i)}, kv{key: "b" + strconv.Itoa(i%3), value: "x"}, kv{key: "c", value: strconv.Itoa(i)}))
			}
			before := recordsOf(t, l)
			if j := cleanNow(t, l, t0); j == nil || j.Stats.Removed == 0 {
				t.Fatal("nothing cleaned")
			}
			checkCompacted(t, before, recordsOf(t, l), l.CleanedOffset())
			it := records.NewIter(readAll(t, l))
			for {
				batch, h, ok := it.Next()
				if !ok {
					break
				}
				if h.Codec() != codec {
					t.Fatalf("batch at %d has codec %v", h.BaseOffset, h.Codec())
				}
				if _, err := records.VerifyCRC(batch); err != nil {
					t.Fatalf("batch at %d: %v", h.BaseOffset, err)
				}
			}
		})
	}
}

func TestCleanDropsAbortedKeepsProducersLastBatch(t *testing.T) {
	fs := storage.NewMem()
	cfg := compactConfig()
	cfg.DeleteRetentionMs = 0
	l := mustOpen(t, fs, "d/t-0", cfg, Checkpoint{})
	// An idempotent producer writes one key twice; an aborted
	// transaction writes another.
	idem := func(seq int32, value string) []byte {
		b := keyedBatch(t, compress.None, t0.UnixMilli(), kv{key: "p", value: value})
		return reframe(t, b, 7, 0, seq, false)
	}
	mustAppend(t, l, idem(0, "first"))
	mustAppend(t, l, reframe(t, keyedBatch(t, compress.None, t0.UnixMilli(), kv{key: "t", value: "aborted"}), 9, 0, 0, true))
	mustAppend(t, l, markerBatch(9, 0, false))
	// A committed transaction whose only record is superseded later.
	mustAppend(t, l, reframe(t, keyedBatch(t, compress.None, t0.UnixMilli(), kv{key: "c", value: "committed"}), 11, 0, 0, true))
	mustAppend(t, l, markerBatch(11, 0, true))
	mustAppend(t, l, keyedBatch(t, compress.None, t0.UnixMilli(), kv{key: "c", tombstone: true}))
	// Its producer goes on, so that batch is not its last one.
	mustAppend(t, l, reframe(t, keyedBatch(t, compress.None, t0.UnixMilli(), kv{key: "c2", value: "later"}), 11, 0, 1, false))
	fillKeys(t, l, 30, 3)
	mustAppend(t, l, idem(1, "second"))
	fillKeys(t, l, 30, 3)
	mustAppend(t, l, keyedBatch(t, compress.None, t0.UnixMilli(), kv{key: "p", value: "newest"}))
	fillKeys(t, l, 30, 3) // roll past it
	cleanNow(t, l, t0.Add(time.Hour))
	got := recordsOf(t, l)
	for off, r := range got {
		if r.key == "t" || r.key == "c" && !r.tombstone {
			t.Fatalf("record %+v at %d survived", r, off)
		}
	}
	// The abort marker stays with its entry in the aborted list (clients
	// skip the producer's records until they meet it); the commit marker
	// of a transaction whose records all went goes.
	if ab := l.AbortedTxns(nil, 0, l.LogEndOffset()); len(ab) != 1 || ab[0].ProducerID != 9 {
		t.Fatalf("aborted transactions: %+v", ab)
	}
	markers := map[int64]bool{}
	for it := records.NewIter(readAll(t, l)); ; {
		_, h, ok := it.Next()
		if !ok {
			break
		}
		if h.Control() {
			markers[h.ProducerID] = true
		}
	}
	if !markers[9] || markers[11] {
		t.Fatalf("markers left, by producer: %v (want 9's abort marker, not 11's commit marker)", markers)
	}
	// The producer's last batch stays, with no records.
	set := readAll(t, l)
	it := records.NewIter(set)
	found := false
	for {
		_, h, ok := it.Next()
		if !ok {
			break
		}
		if h.ProducerID == 7 && h.BaseSequence == 1 {
			found = true
			if h.NumRecords != 0 {
				t.Fatalf("producer's last batch kept %d records", h.NumRecords)
			}
		}
		if h.ProducerID == 7 && h.BaseSequence == 0 {
			t.Fatal("the producer's older batch was kept")
		}
	}
	if !found {
		t.Fatal("the idempotent producer's last batch went")
	}
	l.Close()
	// Its state survives a restart that rebuilds it from the log.
	fs.Remove("d/t-0/" + snapshotName)
	l = mustOpen(t, fs, "d/t-0", cfg, Checkpoint{})
	if dup, err := l.CheckProducer(7, 0, 1, 1); err != nil || dup == nil {
		t.Fatalf("producer state after the rebuild: its last batch is not a duplicate (%v, %v)", dup, err)
	}
	if _, err := l.CheckProducer(7, 0, 3, 3); err == nil {
		t.Fatal("producer state after the rebuild: a sequence gap was accepted")
	}
	l.Close()
}

// reframe gives an unpacked test batch producer fields (and the
// transactional bit) and fixes its CRC.
func reframe(t testing.TB, b []byte, pid int64, epoch int16, seq int32, txn bool) []byte {
	t.Helper()
	h, err := records.ParseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	var recs []records.Record
	records.ForEachRecord(b, nil, func(r *records.Record) error {
		c := *r
		c.Key, c.Value, c.Headers = slices.Clone(r.Key), slices.Clone(r.Value), nil
		recs = append(recs, c)
		return nil
	})
	h.ProducerID, h.ProducerEpoch, h.BaseSequence = pid, epoch, seq
	if txn {
		h.Attributes |= records.AttrTransactional
	}
	out, err := records.AppendBatch(nil, h, recs, h.Codec())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// markerBatch builds a commit or abort marker of a producer.
func markerBatch(pid int64, epoch int16, commit bool) []byte {
	typ := int16(0)
	if commit {
		typ = 1
	}
	key := []byte{0, 0, byte(typ >> 8), byte(typ)}
	h := records.Header{ProducerID: pid, ProducerEpoch: epoch, BaseSequence: -1, BaseTimestamp: t0.UnixMilli(),
		Attributes: records.AttrTransactional | records.AttrControl}
	b, _ := records.AppendBatch(nil, h, []records.Record{{Key: key, Value: []byte{0, 0, 0, 0, 0, 0}}}, compress.None)
	return b
}

// TestCleanCrashAtEveryStep fails the n-th file operation of a cleaning
// pass, for every n, crashes the machine there (only what was made
// durable survives), and checks that the log reopens reading the same
// records: all from before the pass or all from after it, never a mix
// that loses a key's latest record or repeats an offset.
func TestCleanCrashAtEveryStep(t *testing.T) {
	for n := 0; ; n++ {
		mem := storage.NewMem()
		ffs := storage.NewFaulty(mem)
		l := mustOpen(t, ffs, "d/t-0", compactConfig(), Checkpoint{})
		fillKeys(t, l, 200, 5)
		endWithDroppedBatches(t, l)
		settle(t, l)
		before := recordsOf(t, l)
		cp, _ := l.Checkpoint()
		ffs.AddRule(storage.Rule{Ops: storage.OpWrite | storage.OpDatasync | storage.OpOpen | storage.OpRemove | storage.OpRename, After: n, Times: 1})
		j := l.PlanClean(0)
		if j == nil {
			t.Fatal("no pass planned")
		}
		j.Run(PlainIO{}, t0)
		if l.CommitClean(j) {
			r := j.Install()
			l.FinishClean(j, r)
			if r.Err != nil && !r.PastCommit {
				// Failed before its commit point: the log goes on as it was.
				if err := l.Err(); err != nil {
					t.Fatalf("step %d: install failed before committing, and the log failed: %v", n, err)
				}
				checkCompacted(t, before, recordsOf(t, l), 0)
				if got := recordsOf(t, l); r.Done == 0 && len(got) != len(before) {
					t.Fatalf("step %d: %d records after a reverted install, want %d", n, len(got), len(before))
				}
			}
		} else if j.Err == nil {
			t.Fatalf("step %d: the commit was refused", n)
		} else {
			j.Discard()
		}
		fired := ffs.Fired() > 0
		if !fired {
			// Every step passed: the whole pass, then a crash.
			after := recordsOf(t, l)
			checkCompacted(t, before, after, j.End)
		}
		for _, crashed := range []*storage.MemFS{mem.Crash(), mem.CrashTorn(int64(n))} {
			// Reopened with the checkpoint recorded before the pass, and
			// with none at all (a scan of every segment, across the gaps).
			for _, cp := range []Checkpoint{cp, {}} {
				fs := crashed.Crash() // a fresh copy for each open
				r := mustOpen(t, fs, "d/t-0", compactConfig(), cp)
				got := recordsOf(t, r)
				checkCompacted(t, before, got, 0)
				if len(got) != len(before) && r.gapsBelow == 0 {
					t.Fatalf("step %d: records went without a gap bound recorded", n)
				}
				if r.LogEndOffset() != l.LogEndOffset() {
					t.Fatalf("step %d, checkpoint %+v: log end %d after the crash, want %d", n, cp, r.LogEndOffset(), l.LogEndOffset())
				}
				r.Close()
			}
		}
		if !fired {
			t.Logf("a whole pass took %d file operations", n)
			if n < 10 {
				t.Fatalf("a pass took only %d file operations", n)
			}
			return
		}
	}
}

// endWithDroppedBatches fills the active segment with keyless batches
// (compaction drops them) until it rolls, then appends one keyed batch:
// the segment after the cleanable range starts right after a run of
// batches that the pass removes, a gap at its end.
func endWithDroppedBatches(t testing.TB, l *Log) {
	t.Helper()
	segs := l.SegmentCount()
	for l.SegmentCount() == segs {
		mustAppend(t, l, keyedBatch(t, compress.None, t0.UnixMilli(), kv{value: "no key"}))
	}
	mustAppend(t, l, keyedBatch(t, compress.None, t0.UnixMilli(), kv{key: "after", value: "the gap"}))
}

func TestCleanGapAtTheCleanedEnd(t *testing.T) {
	forEachFS(t, func(t *testing.T, c fsCase) {
		l := mustOpen(t, c.fs, c.dir, compactConfig(), Checkpoint{})
		fillKeys(t, l, 50, 5)
		endWithDroppedBatches(t, l)
		fillKeys(t, l, 20, 5)
		before := recordsOf(t, l)
		j := cleanNow(t, l, t0)
		if j == nil {
			t.Fatal("no pass")
		}
		want := recordsOf(t, l)
		checkCompacted(t, before, want, j.End)
		end := l.LogEndOffset()
		// A crash with no checkpoint: the scan must cross the gap.
		r := mustOpen(t, c.fs, c.dir, compactConfig(), Checkpoint{})
		if r.LogEndOffset() != end || !maps.Equal(recordsOf(t, r), want) {
			t.Fatalf("after a full scan: log end %d (want %d), %d records (want %d)", r.LogEndOffset(), end, len(recordsOf(t, r)), len(want))
		}
		r.Close()
		l.Close()
	})
}

// TestCleanInstallFailureRevertsInMemory fails the rename that commits a
// pass: the log goes on reading the segments it had, takes writes, and
// a later pass cleans.
func TestCleanInstallFailureRevertsInMemory(t *testing.T) {
	mem := storage.NewMem()
	ffs := storage.NewFaulty(mem)
	l := mustOpen(t, ffs, "d/t-0", compactConfig(), Checkpoint{})
	fillKeys(t, l, 200, 5)
	settle(t, l)
	before := recordsOf(t, l)
	ffs.AddRule(storage.Rule{Ops: storage.OpRename, Pattern: "*.swap", Times: 1})
	j := l.PlanClean(0)
	j.Run(PlainIO{}, t0)
	if !l.CommitClean(j) {
		t.Fatal(j.Err)
	}
	r := j.Install()
	if r.Err == nil || r.PastCommit || r.Done != 0 {
		t.Fatalf("install: %+v", r)
	}
	l.FinishClean(j, r)
	if err := l.Err(); err != nil {
		t.Fatalf("the log failed: %v", err)
	}
	if got := recordsOf(t, l); !maps.Equal(got, before) {
		t.Fatalf("%d records after the revert, want %d", len(got), len(before))
	}
	names, _ := mem.ReadDir("d/t-0")
	for _, n := range names {
		if strings.HasSuffix(n, ".cleaned") || strings.HasSuffix(n, ".swap") {
			t.Fatalf("%s left behind", n)
		}
	}
	fillKeys(t, l, 20, 5)
	if j := cleanNow(t, l, t0); j == nil || j.Stats.Removed == 0 {
		t.Fatal("no pass after the failed one")
	}
	l.Close()
}

// TestTombstonedKeyStaysDeletedAfterAFailedInstall: a pass whose install
// fails before its commit point must not leave the log recorded as clean
// past what was swapped. Else, after a restart, the next passes would not
// put that range's keys in their map: a tombstone there would go at its
// horizon and leave the record it deleted behind. (Found in review.)
func TestTombstonedKeyStaysDeletedAfterAFailedInstall(t *testing.T) {
	mem := storage.NewMem()
	ffs := storage.NewFaulty(mem)
	cfg := compactConfig()
	cfg.MinCleanableRatio = 0.01
	l := mustOpen(t, ffs, "d/t-0", cfg, Checkpoint{})
	mustAppend(t, l, keyedBatch(t, compress.None, t0.UnixMilli(), kv{key: "x", value: "old"}))
	fillKeys(t, l, 30, 3)
	mustAppend(t, l, keyedBatch(t, compress.None, t0.UnixMilli(), kv{key: "x", tombstone: true}))
	fillKeys(t, l, 30, 3)
	settle(t, l)
	// The first pass, over both, fails at its commit point: nothing is
	// cleaned. Then a restart.
	ffs.AddRule(storage.Rule{Ops: storage.OpRename, Pattern: "*.swap", Times: 1})
	j := l.PlanClean(0)
	j.Run(PlainIO{}, t0)
	if !l.CommitClean(j) {
		t.Fatal(j.Err)
	}
	l.FinishClean(j, j.Install())
	j.ReleaseReplaced()
	fillKeys(t, l, 30, 3)
	settle(t, l)
	cp, _ := l.Checkpoint()
	l.Close()
	l = mustOpen(t, mem, "d/t-0", cfg, cp)
	// Passes before and after the tombstone's horizon.
	cleanNow(t, l, t0)
	fillKeys(t, l, 30, 3)
	cleanNow(t, l, t0.Add(2*time.Hour))
	for off, r := range recordsOf(t, l) {
		if r.key == "x" && !r.tombstone {
			t.Fatalf("key x, deleted by a tombstone, reads %q at offset %d", r.value, off)
		}
	}
	l.Close()
}

func TestCompactOnlySkipsRetention(t *testing.T) {
	fs := storage.NewMem()
	cfg := compactConfig()
	cfg.RetentionMs = time.Millisecond
	cfg.RetentionBytes = 1
	l := mustOpen(t, fs, "d/t-0", cfg, Checkpoint{})
	fillKeys(t, l, 50, 50)
	n, err := l.EnforceRetention(t0.Add(24 * time.Hour))
	if err != nil || n != 0 {
		t.Fatalf("retention on a compact-only topic deleted %d segments (%v)", n, err)
	}
	cfg.NoDelete = false // compact,delete
	if err := l.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if n, _ := l.EnforceRetention(t0.Add(24 * time.Hour)); n == 0 {
		t.Fatal("compact,delete: retention deleted nothing")
	}
	l.Close()
}

// TestReplicatedGapsSurviveRecovery copies a cleaned log, gaps and all,
// into another as a standby does, crashes that one before any checkpoint
// and checks the recovery scan keeps every batch past the gaps.
func TestReplicatedGapsSurviveRecovery(t *testing.T) {
	forEachFS(t, func(t *testing.T, c fsCase) {
		src := mustOpen(t, storage.NewMem(), "src/t-0", compactConfig(), Checkpoint{})
		fillKeys(t, src, 200, 5)
		cleanNow(t, src, t0)
		want := recordsOf(t, src)
		dst := mustOpen(t, c.fs, c.dir, compactConfig(), Checkpoint{})
		for off := src.LogStartOffset(); off < src.LogEndOffset(); {
			r, err := src.Read(off, 700, true, src.LogEndOffset())
			if err != nil {
				t.Fatal(err)
			}
			set, _ := r.Bytes()
			r.Release()
			if _, err := dst.AppendReplicated(set, t0, 0); err == ErrTailBusy {
				drive(t, dst)
				if _, err := dst.AppendReplicated(set, t0, 0); err != nil {
					t.Fatal(err)
				}
			} else if err != nil {
				t.Fatalf("append at %d: %v", off, err)
			}
			drive(t, dst)
			off = r.NextOffset
		}
		if dst.LogEndOffset() != src.LogEndOffset() {
			t.Fatalf("log end %d, the source's %d", dst.LogEndOffset(), src.LogEndOffset())
		}
		if err := dst.Sync(); err != nil {
			t.Fatal(err)
		}
		// No checkpoint: the reopen scans every segment.
		dst = mustOpen(t, c.fs, c.dir, compactConfig(), Checkpoint{})
		if got := recordsOf(t, dst); !maps.Equal(got, want) {
			t.Fatalf("after recovery: %d records, want %d", len(got), len(want))
		}
		// Going backwards is refused.
		r, _ := src.Read(src.LogStartOffset(), 100, true, src.LogEndOffset())
		set, _ := r.Bytes()
		r.Release()
		if _, err := dst.AppendReplicated(set, t0, 0); err == nil {
			t.Fatal("a batch below the log end was appended")
		}
		dst.Close()
	})
}
