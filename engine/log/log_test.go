package log

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-broker/sluice/engine/storage"
	"golang.org/x/sys/unix"
)

func TestAppendReadRoundTripAcrossRolls(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		n    int
	}{
		{"one segment", Config{IndexIntervalBytes: 256}, 50},
		{"many rolls", Config{SegmentBytes: 2048, IndexIntervalBytes: 300}, 200},
		{"index every batch", Config{SegmentBytes: 4096, IndexIntervalBytes: 1}, 100},
		{"preallocated", Config{SegmentBytes: 4096, Preallocate: true}, 100},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			forEachFS(t, func(t *testing.T, c fsCase) {
				l := mustOpen(t, c.fs, c.dir, tc.cfg, Checkpoint{})
				var want []byte
				for i := 0; i < tc.n; i++ {
					b := makeBatch(batchSpec{records: 1 + i%7, bodyBytes: 20 + i*13%300, maxTs: t0.UnixMilli() + int64(i)}, byte(i))
					res := mustAppend(t, l, b)
					if res.BaseOffset != l.LogEndOffset()-Offset(1+i%7) || res.LastOffset != l.LogEndOffset()-1 {
						t.Fatalf("append %d: %+v, end %d", i, res, l.LogEndOffset())
					}
					want = append(want, b...) // b was rewritten in place with its offset
				}
				if got := readAll(t, l); !bytes.Equal(got, want) {
					t.Fatalf("read back differs (%d vs %d bytes)", len(got), len(want))
				}
				if !bytes.Equal(withOffsets(want, 0), want) {
					t.Fatal("offsets were not assigned contiguously from 0")
				}
				if tc.cfg.SegmentBytes == 2048 && l.SegmentCount() < 10 {
					t.Fatalf("expected rolls, have %d segments", l.SegmentCount())
				}
				if l.Size() != int64(len(want)) {
					t.Fatalf("size %d, want %d", l.Size(), len(want))
				}
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
				cp, _ := l.Checkpoint()
				l = mustOpen(t, c.fs, c.dir, tc.cfg, cp)
				defer l.Close()
				if got := readAll(t, l); !bytes.Equal(got, want) {
					t.Fatal("read back after reopen differs")
				}
				// Appending continues the offsets.
				b := makeBatch(batchSpec{records: 3, bodyBytes: 10}, 0)
				if res := mustAppend(t, l, b); res.BaseOffset != cp.RecoveryPoint {
					t.Fatalf("append after reopen at %d, want %d", res.BaseOffset, cp.RecoveryPoint)
				}
			})
		})
	}
}

func TestReadBounds(t *testing.T) {
	forEachFS(t, func(t *testing.T, c fsCase) {
		l := mustOpen(t, c.fs, c.dir, Config{IndexIntervalBytes: 100}, Checkpoint{})
		defer l.Close()
		// Ten batches of 5 records, 161 bytes each.
		for i := 0; i < 10; i++ {
			mustAppend(t, l, makeBatch(batchSpec{records: 5, bodyBytes: 100}, byte(i)))
		}
		const size = 161
		tests := []struct {
			from, upTo  Offset
			maxBytes    int
			minOne      bool
			pos, len    int
			first, next Offset
			wantErr     error
		}{
			{from: 0, upTo: 50, maxBytes: 10 * size, pos: 0, len: 10 * size, first: 0, next: 50},
			{from: 7, upTo: 50, maxBytes: 2*size + 10, pos: size, len: 2 * size, first: 5, next: 15},
			{from: 7, upTo: 50, maxBytes: 10, minOne: true, pos: size, len: size, first: 5, next: 10},
			{from: 7, upTo: 50, maxBytes: 10, minOne: false, len: 0, first: 7, next: 7},
			{from: 0, upTo: 23, maxBytes: 1 << 20, pos: 0, len: 4 * size, first: 0, next: 20},
			{from: 21, upTo: 23, maxBytes: 1 << 20, len: 0, first: 21, next: 21},
			{from: 50, upTo: 50, maxBytes: 1 << 20, len: 0, first: 50, next: 50},
			{from: 51, upTo: 60, maxBytes: 1 << 20, wantErr: ErrOffsetOutOfRange},
		}
		for i, tt := range tests {
			r, err := l.Read(tt.from, tt.maxBytes, tt.minOne, tt.upTo)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("%d: err %v", i, err)
			}
			if err != nil {
				continue
			}
			if int(r.Pos) != tt.pos || r.Len != tt.len || r.FirstOffset != tt.first || r.NextOffset != tt.next {
				t.Errorf("%d: got pos %d len %d first %d next %d", i, r.Pos, r.Len, r.FirstOffset, r.NextOffset)
			}
			if (r.Len == 0) != (r.Seg == nil && r.Mem == nil) {
				t.Errorf("%d: pinned %v with len %d", i, r.Seg != nil, r.Len)
			}
			r.Release()
		}
	})
}

// model is the brute-force picture of a log: every batch's place.
type modelBatch struct {
	base, last Offset
	seg        Offset // segment base
	pos, size  int64
	maxTs      int64
}

func modelOf(t *testing.T, l *Log) []modelBatch {
	var out []modelBatch
	for _, s := range l.segs {
		for pos := int64(0); pos < s.size; {
			h, ok, err := l.readHeader(s.file, pos, s.size)
			if err != nil || !ok {
				t.Fatalf("model: segment %d pos %d: %v", s.base, pos, err)
			}
			out = append(out, modelBatch{h.baseOffset, h.lastOffset(), s.base, pos, h.size(), h.maxTimestamp})
			pos += h.size()
		}
	}
	return out
}

// expectRead is Read computed by brute force over the model.
func expectRead(m []modelBatch, from Offset, maxBytes int, minOne bool, upTo Offset) (pos int64, length int, first, next Offset) {
	i := 0
	for i < len(m) && m[i].last < from {
		i++
	}
	if i == len(m) || m[i].last >= upTo {
		return 0, 0, from, from
	}
	start := m[i]
	end, next := start.pos, start.base
	for j := i; j < len(m) && m[j].seg == start.seg && m[j].last < upTo && m[j].pos+m[j].size-start.pos <= int64(maxBytes); j++ {
		end, next = m[j].pos+m[j].size, m[j].last+1
	}
	if end == start.pos {
		if !minOne {
			return 0, 0, from, from
		}
		end, next = start.pos+start.size, start.last+1
	}
	return start.pos, int(end - start.pos), start.base, next
}

func TestIndexLookupMatchesBruteForce(t *testing.T) {
	rng, _ := seedRand(t)
	forEachFS(t, func(t *testing.T, c fsCase) {
		cfg := Config{SegmentBytes: int64(2000 + rng.Intn(20000)), IndexIntervalBytes: 1 + rng.Intn(2000)}
		l := mustOpen(t, c.fs, c.dir, cfg, Checkpoint{})
		n := 300 + rng.Intn(300)
		for i := 0; i < n; i++ {
			ts := t0.UnixMilli() + int64(rng.Intn(100000)) // not monotonic
			mustAppend(t, l, makeBatch(batchSpec{records: 1 + rng.Intn(20), bodyBytes: rng.Intn(1500), maxTs: ts}, byte(i)))
		}
		check := func(stage string) {
			m := modelOf(t, l)
			end := l.LogEndOffset()
			for q := 0; q < 2000; q++ {
				from := Offset(rng.Int63n(int64(end) + 1))
				upTo := from + Offset(rng.Int63n(int64(end-from)+2))
				maxBytes := rng.Intn(8000)
				minOne := rng.Intn(2) == 0
				r, err := l.Read(from, maxBytes, minOne, upTo)
				if err != nil {
					t.Fatalf("%s: read(%d,%d,%v,%d): %v", stage, from, maxBytes, minOne, upTo, err)
				}
				pos, length, first, next := expectRead(m, from, maxBytes, minOne, min(upTo, end))
				if r.Len != length || (length > 0 && (int64(r.Pos) != pos || r.FirstOffset != first)) || r.NextOffset != next {
					t.Fatalf("%s: read(%d,%d,%v,%d) = pos %d len %d first %d next %d; brute force pos %d len %d first %d next %d",
						stage, from, maxBytes, minOne, upTo, r.Pos, r.Len, r.FirstOffset, r.NextOffset, pos, length, first, next)
				}
				r.Seg.Release()

				ts := t0.UnixMilli() + int64(rng.Intn(110000)) - 5000
				off, found, ok := l.OffsetForTimestamp(ts)
				wantOK := false
				for _, b := range m {
					if b.maxTs >= ts {
						if !ok || off != b.base || found != b.maxTs {
							t.Fatalf("%s: OffsetForTimestamp(%d) = %d %d %v, want %d %d", stage, ts, off, found, ok, b.base, b.maxTs)
						}
						wantOK = true
						break
					}
				}
				if ok != wantOK {
					t.Fatalf("%s: OffsetForTimestamp(%d) ok %v", stage, ts, ok)
				}
			}
			var maxTs int64 = -1
			var maxOff Offset = -1
			for _, b := range m {
				if b.maxTs > maxTs {
					maxTs, maxOff = b.maxTs, b.base
				}
			}
			if ts, off := l.MaxTimestamp(); ts != maxTs || off != maxOff {
				t.Fatalf("%s: MaxTimestamp %d@%d, want %d@%d", stage, ts, off, maxTs, maxOff)
			}
		}
		check("live")
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		cp, _ := l.Checkpoint()
		l = mustOpen(t, c.fs, c.dir, cfg, cp)
		check("clean reopen")
		l.closeFiles()
		l = mustOpen(t, c.fs, c.dir, cfg, Checkpoint{RecoveryPoint: cp.RecoveryPoint / 2})
		check("recovered")
		l.Close()
	})
}

// After a clean shutdown, open reads no segment data at all; after a crash
// it reads only past the recovery point.
func TestRecoveryReadsOnlyPastRecoveryPoint(t *testing.T) {
	forEachFS(t, func(t *testing.T, c fsCase) {
		cfg := Config{SegmentBytes: 10_000, IndexIntervalBytes: 500}
		l := mustOpen(t, c.fs, c.dir, cfg, Checkpoint{})
		for i := 0; i < 500; i++ {
			mustAppend(t, l, makeBatch(batchSpec{records: 4, bodyBytes: 200, maxTs: int64(i)}, byte(i)))
		}
		want := readAll(t, l)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		cp, _ := l.Checkpoint()
		if !cp.Clean || cp.RecoveryPoint != 2000 {
			t.Fatalf("checkpoint after close %+v", cp)
		}
		counting := &countingFS{FS: c.fs, suffix: logSuffix}
		l = mustOpen(t, counting, c.dir, cfg, cp)
		if n := counting.reads.Load(); n != 0 {
			t.Fatalf("clean open read the log %d times", n)
		}
		if l.LogEndOffset() != 2000 || l.SegmentCount() < 10 {
			t.Fatalf("end %d segments %d", l.LogEndOffset(), l.SegmentCount())
		}
		// A crash 20 batches after a checkpoint: open reads only those.
		for i := 0; i < 20; i++ {
			mustAppend(t, l, makeBatch(batchSpec{records: 4, bodyBytes: 200, maxTs: int64(500 + i)}, byte(i)))
		}
		if err := l.Sync(); err != nil {
			t.Fatal(err)
		}
		cp2, err := l.Checkpoint()
		if err != nil || cp2.RecoveryPoint != 2080 {
			t.Fatalf("checkpoint %+v %v", cp2, err)
		}
		for i := 0; i < 20; i++ {
			mustAppend(t, l, makeBatch(batchSpec{records: 4, bodyBytes: 200, maxTs: int64(520 + i)}, byte(i)))
		}
		l.Sync()
		want = readAll(t, l)
		l.closeFiles() // crash: no Close
		counting.reads.Store(0)
		l = mustOpen(t, counting, c.dir, cfg, cp2)
		// 20 batches, two reads each, plus the index entry check and at most
		// an index interval of headers to find the recovery point.
		if n := counting.reads.Load(); n > 2*20+1+3 {
			t.Fatalf("crash recovery read the log %d times", n)
		}
		if got := readAll(t, l); !bytes.Equal(got, want) {
			t.Fatal("data differs after recovery")
		}
		l.Close()
	})
}

// syncViaTargets does what the shard does: datasync each target, MarkSynced.
func syncViaTargets(t *testing.T, l *Log) {
	t.Helper()
	var upTo Offset
	for _, tg := range l.PendingSync() {
		if err := tg.File.Datasync(); err != nil {
			t.Fatal(err)
		}
		upTo = max(upTo, tg.UpTo)
	}
	l.MarkSynced(upTo)
}

func TestCrashKeepsSyncedBatchesAndTruncatesTornTail(t *testing.T) {
	rng, seed := seedRand(t)
	for round := 0; round < 40; round++ {
		mem := storage.NewMem()
		cfg := Config{SegmentBytes: int64(1500 + rng.Intn(5000)), IndexIntervalBytes: 1 + rng.Intn(800)}
		l := mustOpen(t, mem, "d/t-0", cfg, Checkpoint{})
		var all []byte
		var cp Checkpoint
		n := 50 + rng.Intn(200)
		syncedBytes := 0
		for i := 0; i < n; i++ {
			b := makeBatch(batchSpec{records: 1 + rng.Intn(10), bodyBytes: rng.Intn(600), maxTs: int64(i)}, byte(i))
			mustAppend(t, l, b)
			all = append(all, b...)
			switch rng.Intn(10) {
			case 0:
				syncViaTargets(t, l)
				syncedBytes = len(all)
			case 1:
				var err error
				if cp, err = l.Checkpoint(); err != nil {
					t.Fatal(err)
				}
				syncedBytes = len(all)
			}
		}
		synced := l.SyncedOffset()
		crashed := mem.CrashTorn(seed + int64(round))
		if rng.Intn(2) == 0 {
			cp.RecoveryPoint = 0 // the shard's checkpoint may be older
		}
		r, err := Open(crashed, "d/t-0", cfg, cp, t0)
		if err != nil {
			t.Fatalf("round %d: open after crash: %v", round, err)
		}
		got := readAll(t, r)
		if r.LogEndOffset() < synced || len(got) < syncedBytes {
			t.Fatalf("round %d: lost synced data: end %d < synced %d", round, r.LogEndOffset(), synced)
		}
		if !bytes.Equal(got, all[:len(got)]) {
			t.Fatalf("round %d: recovered data is not a prefix of what was written", round)
		}
		// The recovered log takes appends and survives another crash.
		b := makeBatch(batchSpec{records: 2, bodyBytes: 30}, 9)
		if res := mustAppend(t, r, b); res.BaseOffset != r.LogEndOffset()-2 {
			t.Fatalf("append after recovery at %d", res.BaseOffset)
		}
		r.Sync()
		r2 := mustOpen(t, crashed.Crash(), "d/t-0", cfg, Checkpoint{})
		if got2 := readAll(t, r2); !bytes.Equal(got2, append(got, b...)) {
			t.Fatalf("round %d: second crash lost data", round)
		}
	}
}

func TestCorruptionInUnsyncedTailTruncatesThere(t *testing.T) {
	for _, corrupt := range []string{"crc", "length", "zero", "offset"} {
		t.Run(corrupt, func(t *testing.T) {
			forEachFS(t, func(t *testing.T, c fsCase) {
				cfg := Config{SegmentBytes: 3000, IndexIntervalBytes: 200}
				l := mustOpen(t, c.fs, c.dir, cfg, Checkpoint{})
				for i := 0; i < 10; i++ {
					mustAppend(t, l, makeBatch(batchSpec{records: 3, bodyBytes: 200}, byte(i)))
				}
				cp, _ := l.Checkpoint() // recovery point 30
				var positions []int64
				var segBase Offset
				for i := 0; i < 30; i++ {
					if l.active().size == 0 || l.active().size+261 > 3000 {
						positions = positions[:0]
					}
					positions = append(positions, l.active().size)
					mustAppend(t, l, makeBatch(batchSpec{records: 3, bodyBytes: 200}, byte(i)))
					segBase = l.active().base
				}
				l.Sync() // on disk, but past the recorded recovery point
				l.closeFiles()
				// Damage the batch at index 4 of the active segment.
				pos := positions[4]
				f, err := c.fs.OpenFile(segmentName(c.dir, segBase, logSuffix), os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				hdr := make([]byte, batchHeaderSize)
				f.ReadAt(hdr, pos)
				badBase := Offset(parseHeader(hdr).baseOffset)
				switch corrupt {
				case "crc":
					f.WriteAt([]byte{0xff}, pos+100)
				case "length":
					f.WriteAt([]byte{0x7f, 0, 0, 0}, pos+offBatchLength)
				case "zero":
					f.WriteAt(make([]byte, 261), pos)
				case "offset":
					f.WriteAt([]byte{0, 0, 0, 0, 0, 0, 0, 1}, pos)
				}
				f.Close()
				r := mustOpen(t, c.fs, c.dir, cfg, cp)
				defer r.Close()
				if r.LogEndOffset() != badBase {
					t.Fatalf("end %d, want truncation at %d", r.LogEndOffset(), badBase)
				}
				if size, _ := c.fs.Stat(segmentName(c.dir, segBase, logSuffix)); size != pos {
					t.Fatalf("segment size %d, want %d", size, pos)
				}
				readAll(t, r)
			})
		})
	}
}

// A full disk is not a failed disk: appends refused with ErrDiskFull leave
// nothing behind (in page-cache mode the part a short write put past the
// end is cut off; in direct mode the allocation fails before anything is
// copied), rolls are retried, the log stays writable, and the next append
// that fits succeeds. Nothing appended before is touched.
func TestDiskFullIsNotAFailure(t *testing.T) {
	forEachFS(t, func(t *testing.T, c fsCase) {
		faulty := storage.NewFaulty(c.fs)
		var fs storage.FS = faulty
		// Page-cache mode finds the disk full on a write (any file: a
		// roll's index write too); direct mode when it allocates a segment.
		rule := storage.Rule{Ops: storage.OpWrite, Times: 4, Err: unix.ENOSPC, Short: true}
		if d, ok := c.fs.(*directFS); ok {
			faulty = storage.NewFaulty(d.FS)
			fs = &directFS{faulty, d.cache}
			rule.Ops = storage.OpAllocate
		}
		cfg := Config{SegmentBytes: 64 << 10}
		l := mustOpen(t, fs, c.dir, cfg, Checkpoint{})
		var want []byte
		for i := range 3 {
			b := makeBatch(batchSpec{records: 2, bodyBytes: 5000}, byte(i))
			mustAppend(t, l, b)
			want = append(want, b...)
		}
		faulty.AddRule(rule)
		full := 0
		for i := 0; i < 40 && faulty.Fired() < rule.Times; i++ {
			b := makeBatch(batchSpec{records: 2, bodyBytes: 5000}, byte(10+i))
			end := l.LogEndOffset()
			_, err := l.Append(b, t0)
			switch {
			case err == nil:
				drive(t, l)
				want = append(want, b...)
			case errors.Is(err, ErrDiskFull) && errors.Is(err, unix.ENOSPC):
				full++
				if l.Err() != nil || l.LogEndOffset() != end {
					t.Fatalf("a full disk failed the log (%v) or moved its end %d→%d", l.Err(), end, l.LogEndOffset())
				}
				if l.tail == nil {
					if size, _ := l.active().file.Size(); size != l.active().size {
						t.Fatalf("after a short write on a full disk the segment file is %d bytes, its batches %d", size, l.active().size)
					}
				}
			default:
				t.Fatalf("append %d: %v", i, err)
			}
		}
		if full < 2 {
			t.Fatalf("%d appends refused for a full disk; want at least 2 (the rule fired %d times)", full, faulty.Fired())
		}
		// Space returned: the next append fits.
		mustAppend(t, l, makeBatch(batchSpec{records: 2, bodyBytes: 5000}, 99))
		want = append(want, l.mustLast(t)...)
		if got := readAll(t, l); !bytes.Equal(got, want) {
			t.Fatalf("after the disk was full the log holds %d bytes; want the %d appended", len(got), len(want))
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		cp, _ := l.Checkpoint()
		l = mustOpen(t, fs, c.dir, cfg, cp)
		defer l.Close()
		if got := readAll(t, l); !bytes.Equal(got, want) {
			t.Fatalf("after a restart the log holds %d bytes; want %d", len(got), len(want))
		}
	})
}

// mustLast returns the bytes of the log's last batch.
func (l *Log) mustLast(t *testing.T) []byte {
	t.Helper()
	all := readAll(t, l)
	var last int
	for pos := 0; pos < len(all); {
		last = pos
		h := parseHeader(all[pos:])
		pos += int(h.size())
	}
	return all[last:]
}

func TestWriteAndSyncErrorsAreSticky(t *testing.T) {
	cases := []struct {
		name string
		rule storage.Rule
		do   func(l *Log) error
	}{
		{"write EIO", storage.EIO(storage.OpWrite, "*.log", 3), nil},
		{"datasync EIO", storage.EIO(storage.OpDatasync, "*.log", 0), func(l *Log) error { return l.Sync() }},
		{"index write EIO at roll", storage.EIO(storage.OpWrite, "*index", 0), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mem := storage.NewMem()
			l := mustOpen(t, mem, "d/t-0", Config{SegmentBytes: 1000}, Checkpoint{})
			fs := storage.NewFaulty(mem, tc.rule)
			l.fs = fs
			// Reopen through the faulty FS so the segment files are wrapped.
			l.closeFiles()
			l = mustOpen(t, fs, "d/t-0", Config{SegmentBytes: 1000}, Checkpoint{})
			var first error
			for i := 0; i < 20 && first == nil; i++ {
				_, first = l.Append(makeBatch(batchSpec{bodyBytes: 200}, 1), t0)
				if first == nil && tc.do != nil {
					first = tc.do(l)
				}
			}
			if first == nil {
				t.Fatal("no error injected")
			}
			if !errors.Is(first, unix.EIO) && !errors.Is(first, unix.ENOSPC) {
				t.Fatalf("unexpected error %v", first)
			}
			end := l.LogEndOffset()
			for i := 0; i < 3; i++ {
				if _, err := l.Append(makeBatch(batchSpec{bodyBytes: 10}, 1), t0); err != first {
					t.Fatalf("append after failure: %v, want %v", err, first)
				}
			}
			if err := l.Sync(); err != first {
				t.Fatalf("sync after failure: %v", err)
			}
			if _, err := l.Checkpoint(); err != first {
				t.Fatalf("checkpoint after failure: %v", err)
			}
			if l.LogEndOffset() != end {
				t.Fatal("end moved after failure")
			}
			// Reads of what is there keep working.
			if end > 0 {
				readAll(t, l)
			}
		})
	}
	t.Run("io_uring fsync failure", func(t *testing.T) {
		l := mustOpen(t, storage.NewMem(), "d", Config{}, Checkpoint{})
		mustAppend(t, l, makeBatch(batchSpec{}, 0))
		boom := errors.New("fsync: EIO")
		l.MarkFailed(boom)
		if _, err := l.Append(makeBatch(batchSpec{}, 0), t0); err != boom {
			t.Fatalf("got %v", err)
		}
	})
}

func TestRetentionWithPinnedReader(t *testing.T) {
	forEachFS(t, func(t *testing.T, c fsCase) {
		cfg := Config{SegmentBytes: 1000, RetentionMs: time.Hour, RetentionBytes: -1}
		l := mustOpen(t, c.fs, c.dir, cfg, Checkpoint{})
		defer l.Close()
		old := t0.Add(-2 * time.Hour).UnixMilli()
		for i := 0; i < 12; i++ { // three segments of old data, 4 batches each
			mustAppend(t, l, makeBatch(batchSpec{records: 2, bodyBytes: 150, maxTs: old}, byte(i)))
		}
		for i := 0; i < 12; i++ {
			mustAppend(t, l, makeBatch(batchSpec{records: 2, bodyBytes: 150, maxTs: t0.UnixMilli()}, byte(i)))
		}
		if l.SegmentCount() != 6 {
			t.Fatalf("segments %d", l.SegmentCount())
		}
		pinned, err := l.Read(0, 1<<20, true, l.LogEndOffset())
		if err != nil || pinned.Len == 0 {
			t.Fatal(err)
		}
		wantPinned := make([]byte, pinned.Len)
		pinned.File.ReadAt(wantPinned, int64(pinned.Pos))

		n, err := l.EnforceRetention(t0)
		if err != nil || n != 3 {
			t.Fatalf("deleted %d %v", n, err)
		}
		if l.LogStartOffset() != 24 {
			t.Fatalf("log start %d", l.LogStartOffset())
		}
		if _, err := c.fs.Stat(segmentName(c.dir, 0, logSuffix)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("segment file still there: %v", err)
		}
		if _, err := l.Read(0, 100, true, 100); !errors.Is(err, ErrOffsetOutOfRange) {
			t.Fatalf("read below start: %v", err)
		}
		// The pinned reader still reads the deleted segment.
		got := make([]byte, pinned.Len)
		if _, err := pinned.File.ReadAt(got, int64(pinned.Pos)); err != nil || !bytes.Equal(got, wantPinned) {
			t.Fatalf("pinned read after delete: %v", err)
		}
		pinned.Seg.Release()
		if _, err := pinned.File.ReadAt(got, 0); err == nil {
			t.Fatal("file still open after the last release")
		}

		// By bytes: keep at least 1000 bytes.
		l.cfg.RetentionBytes = 1000
		l.cfg.RetentionMs = -1
		n, err = l.EnforceRetention(t0)
		if err != nil || n != 1 || l.SegmentCount() != 2 {
			t.Fatalf("bytes retention: deleted %d, %d left, %v", n, l.SegmentCount(), err)
		}
		if l.Size() < 1000 {
			t.Fatalf("size %d below retention.bytes", l.Size())
		}
		// The active segment is never deleted.
		l.cfg.RetentionBytes = 0
		l.EnforceRetention(t0)
		if l.SegmentCount() != 1 {
			t.Fatalf("segments %d", l.SegmentCount())
		}
	})
}

func TestDeleteRecordsBefore(t *testing.T) {
	forEachFS(t, func(t *testing.T, c fsCase) {
		cfg := Config{SegmentBytes: 1000}
		l := mustOpen(t, c.fs, c.dir, cfg, Checkpoint{})
		for i := 0; i < 20; i++ {
			mustAppend(t, l, makeBatch(batchSpec{records: 5, bodyBytes: 150}, byte(i)))
		}
		if err := l.DeleteRecordsBefore(50); !errors.Is(err, ErrOffsetOutOfRange) {
			t.Fatalf("above the high watermark: %v", err)
		}
		l.AdvanceHighWatermark(100)
		if err := l.DeleteRecordsBefore(47); err != nil {
			t.Fatal(err)
		}
		if l.LogStartOffset() != 47 || l.segs[0].base != 40 {
			t.Fatalf("start %d first segment %d", l.LogStartOffset(), l.segs[0].base)
		}
		if _, err := l.Read(46, 100, true, 100); !errors.Is(err, ErrOffsetOutOfRange) {
			t.Fatal(err)
		}
		r, err := l.Read(47, 100, true, 100)
		if err != nil || r.FirstOffset != 45 {
			t.Fatalf("read at start: %+v %v", r, err)
		}
		r.Seg.Release()
		cp, _ := l.Checkpoint()
		l.closeFiles()
		l = mustOpen(t, c.fs, c.dir, cfg, cp)
		defer l.Close()
		if l.LogStartOffset() != 47 {
			t.Fatalf("start after reopen %d", l.LogStartOffset())
		}
	})
}

func TestTruncateTo(t *testing.T) {
	forEachFS(t, func(t *testing.T, c fsCase) {
		cfg := Config{SegmentBytes: 1000, IndexIntervalBytes: 100}
		l := mustOpen(t, c.fs, c.dir, cfg, Checkpoint{})
		var all [][]byte
		for i := 0; i < 20; i++ {
			b := makeBatch(batchSpec{records: 5, bodyBytes: 150, pid: 7, epoch: 0, seq: int32(5 * i)}, byte(i))
			mustAppend(t, l, b)
			all = append(all, b)
		}
		l.AdvanceHighWatermark(100)
		if err := l.TruncateTo(33); err != nil {
			t.Fatal(err)
		}
		if l.LogEndOffset() != 30 || l.HighWatermark() != 30 {
			t.Fatalf("end %d hw %d", l.LogEndOffset(), l.HighWatermark())
		}
		if got := readAll(t, l); !bytes.Equal(got, bytes.Join(all[:6], nil)) {
			t.Fatal("content after truncation")
		}
		// Producer state follows: sequence 30 is next again.
		if _, err := l.CheckProducer(7, 0, 30, 34); err != nil {
			t.Fatalf("producer after truncate: %v", err)
		}
		b := makeBatch(batchSpec{records: 5, bodyBytes: 10, pid: 7, seq: 30}, 0)
		if res := mustAppend(t, l, b); res.BaseOffset != 30 {
			t.Fatalf("append at %d", res.BaseOffset)
		}
		l.closeFiles()
		l = mustOpen(t, c.fs, c.dir, cfg, Checkpoint{})
		if l.LogEndOffset() != 35 {
			t.Fatalf("end after crash %d", l.LogEndOffset())
		}
		if err := l.TruncateTo(0); err != nil || l.LogEndOffset() != 0 || l.Size() != 0 {
			t.Fatalf("truncate to 0: %v end %d", err, l.LogEndOffset())
		}
		l.Close()
	})
}

func TestDelete(t *testing.T) {
	forEachFS(t, func(t *testing.T, c fsCase) {
		l := mustOpen(t, c.fs, c.dir, Config{}, Checkpoint{})
		mustAppend(t, l, makeBatch(batchSpec{bodyBytes: 100}, 3))
		r, _ := l.Read(0, 1000, true, 1)
		if err := l.Delete(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.fs.ReadDir(c.dir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("dir still there: %v", err)
		}
		if _, err := r.Bytes(); err != nil {
			t.Fatalf("pinned reader after delete: %v", err)
		}
		r.Release()
		if _, err := l.Append(makeBatch(batchSpec{}, 0), t0); err != ErrClosed {
			t.Fatal(err)
		}
	})
}

// Every segment created by a roll and every file removed is made durable by
// the directory target of PendingSync: a crash right after MarkSynced loses
// nothing.
func TestPendingSyncCoversDirectory(t *testing.T) {
	mem := storage.NewMem()
	cfg := Config{SegmentBytes: 600}
	l := mustOpen(t, mem, "d/t-0", cfg, Checkpoint{})
	for i := 0; i < 30; i++ {
		mustAppend(t, l, makeBatch(batchSpec{records: 2, bodyBytes: 200}, byte(i)))
		if i%7 == 0 {
			syncViaTargets(t, l)
			if len(l.PendingSync()) != 0 {
				t.Fatalf("still pending after MarkSynced: %+v", l.PendingSync())
			}
		}
	}
	syncViaTargets(t, l)
	want := readAll(t, l)
	r := mustOpen(t, mem.Crash(), "d/t-0", cfg, Checkpoint{})
	if got := readAll(t, r); !bytes.Equal(got, want) || r.SegmentCount() != l.SegmentCount() {
		t.Fatalf("lost data across crash: %d vs %d bytes", len(got), len(want))
	}
	// MarkSynced covers only what PendingSync listed.
	targets := l.PendingSync()
	if len(targets) != 0 {
		t.Fatalf("targets %v", targets)
	}
	mustAppend(t, l, makeBatch(batchSpec{records: 2, bodyBytes: 500}, 1)) // rolls
	targets = l.PendingSync()
	var dir bool
	for _, tg := range targets {
		dir = dir || tg.Dir
	}
	if !dir || len(targets) < 4 {
		t.Fatalf("roll targets %+v", targets)
	}
}

func TestCheckpointFile(t *testing.T) {
	forEachFS(t, func(t *testing.T, c fsCase) {
		c.fs.MkdirAll(c.dir, 0o755)
		path := filepath.Join(c.dir, "recovery-point-offset-checkpoint")
		if m, err := ReadCheckpointFile(c.fs, path); err != nil || len(m) != 0 {
			t.Fatalf("missing file: %v %v", m, err)
		}
		want := map[string]Checkpoint{
			"orders-0":             {RecoveryPoint: 4711, LogStartOffset: 12, Clean: true},
			"orders-1":             {},
			"__consumer_offsets-7": {RecoveryPoint: 1 << 40},
		}
		if err := WriteCheckpointFile(c.fs, path, want); err != nil {
			t.Fatal(err)
		}
		got, err := ReadCheckpointFile(c.fs, path)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("got %v %v", got, err)
		}
		for _, bad := range []string{"", "2\n0\n", "1\n2\na 1 2 1\n", "1\n1\na 1 x 0\n", "1\n1\na 1 2 0\nextra\n", "1\n1\na -1 2 0\n"} {
			f, _ := c.fs.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
			f.WriteAt([]byte(bad), 0)
			f.Close()
			if _, err := ReadCheckpointFile(c.fs, path); err == nil {
				t.Errorf("accepted %q", bad)
			}
		}
	})
	if mem := storage.NewMem(); true {
		mem.MkdirAll("d", 0o755)
		WriteCheckpointFile(mem, "d/cp", map[string]Checkpoint{"a-0": {RecoveryPoint: 5}})
		got, err := ReadCheckpointFile(mem.Crash(), "d/cp")
		if err != nil || got["a-0"].RecoveryPoint != 5 {
			t.Fatalf("checkpoint file not durable: %v %v", got, err)
		}
	}
}

func TestProducerState(t *testing.T) {
	batch := func(pid int64, epoch int16, seq int32, records int) []byte {
		return makeBatch(batchSpec{records: records, bodyBytes: 40, pid: pid, epoch: epoch, seq: seq, maxTs: t0.UnixMilli()}, byte(seq))
	}
	type step struct {
		pid     int64
		epoch   int16
		seq     int32
		records int
		wantErr error
		wantDup Offset // first offset of the duplicate; -1 none
		append  bool
	}
	steps := []step{
		{pid: 9, epoch: 0, seq: 5, records: 1, wantDup: -1},               // unknown producer: any sequence (KIP-360)
		{pid: 1, epoch: 0, seq: 0, records: 3, wantDup: -1, append: true}, // offsets 0-2
		{pid: 1, epoch: 0, seq: 3, records: 2, wantDup: -1, append: true}, // 3-4
		{pid: 2, epoch: 4, seq: 0, records: 1, wantDup: -1, append: true}, // 5
		{pid: 1, epoch: 0, seq: 0, records: 3, wantDup: 0},                // retry of the first batch
		{pid: 1, epoch: 0, seq: 3, records: 2, wantDup: 3},
		{pid: 1, epoch: 0, seq: 7, records: 1, wantErr: ErrOutOfOrderSequence, wantDup: -1},   // gap
		{pid: 1, epoch: 0, seq: 4, records: 1, wantErr: ErrOutOfOrderSequence, wantDup: -1},   // overlap, not a dup
		{pid: 1, epoch: 1, seq: 5, records: 1, wantErr: ErrOutOfOrderSequence, wantDup: -1},   // new epoch must start at 0
		{pid: 1, epoch: 1, seq: 0, records: 1, wantDup: -1, append: true},                     // epoch bump: 6
		{pid: 1, epoch: 0, seq: 5, records: 1, wantErr: ErrInvalidProducerEpoch, wantDup: -1}, // fenced
		{pid: 1, epoch: 0, seq: 0, records: 3, wantErr: ErrInvalidProducerEpoch, wantDup: -1}, // old dup is fenced too
		{pid: 1, epoch: 1, seq: 1, records: 1, wantDup: -1, append: true},                     // 7
	}
	run := func(t *testing.T, l *Log, steps []step) {
		for i, s := range steps {
			dup, err := l.CheckProducer(s.pid, s.epoch, s.seq, s.seq+int32(s.records)-1)
			if !errors.Is(err, s.wantErr) {
				t.Fatalf("step %d: err %v, want %v", i, err, s.wantErr)
			}
			if (dup != nil) != (s.wantDup >= 0) || dup != nil && (dup.FirstOffset != s.wantDup || dup.LastOffset != s.wantDup+Offset(s.records)-1) {
				t.Fatalf("step %d: dup %+v, want first offset %d", i, dup, s.wantDup)
			}
			if s.append {
				mustAppend(t, l, batch(s.pid, s.epoch, s.seq, s.records))
			}
		}
	}
	forEachFS(t, func(t *testing.T, c fsCase) {
		l := mustOpen(t, c.fs, c.dir, Config{SegmentBytes: 300}, Checkpoint{})
		run(t, l, steps)
		// Five batches are remembered: the sixth oldest is no longer a dup.
		for i := int32(0); i < 5; i++ {
			mustAppend(t, l, batch(9, 0, i, 1))
		}
		if dup, _ := l.CheckProducer(9, 0, 0, 0); dup == nil {
			t.Fatal("batch 0 of 5 forgotten")
		}
		mustAppend(t, l, batch(9, 0, 5, 1))
		if dup, err := l.CheckProducer(9, 0, 0, 0); dup != nil || err != ErrOutOfOrderSequence {
			t.Fatalf("sixth-oldest batch: %v %v", dup, err)
		}
		after := []step{
			{pid: 1, epoch: 1, seq: 1, records: 1, wantDup: 7},
			{pid: 1, epoch: 1, seq: 2, records: 1, wantDup: -1},
			{pid: 1, epoch: 0, seq: 2, records: 1, wantErr: ErrInvalidProducerEpoch, wantDup: -1},
			{pid: 2, epoch: 4, seq: 0, records: 1, wantDup: 5},
			{pid: 9, epoch: 0, seq: 6, records: 1, wantDup: -1},
		}
		// Survives a clean restart (snapshot) ...
		l.Close()
		cp, _ := l.Checkpoint()
		l = mustOpen(t, c.fs, c.dir, Config{SegmentBytes: 300}, cp)
		run(t, l, after)
		l.closeFiles()
		// ... and a crash with no checkpoint at all (replayed from the log).
		l = mustOpen(t, c.fs, c.dir, Config{SegmentBytes: 300}, Checkpoint{})
		run(t, l, after)
		l.closeFiles()
	})
	t.Run("crash after checkpoint", func(t *testing.T) {
		mem := storage.NewMem()
		l := mustOpen(t, mem, "d/t-0", Config{SegmentBytes: 300}, Checkpoint{})
		run(t, l, steps[:4])
		cp, err := l.Checkpoint() // snapshot at offset 6
		if err != nil {
			t.Fatal(err)
		}
		run(t, l, steps[4:]) // appends 6 and 7 after the snapshot
		syncViaTargets(t, l)
		mustAppend(t, l, batch(1, 1, 2, 1)) // unsynced: lost in the crash
		r := mustOpen(t, mem.Crash(), "d/t-0", Config{SegmentBytes: 300}, cp)
		if r.LogEndOffset() != 8 {
			t.Fatalf("end %d", r.LogEndOffset())
		}
		if dup, err := r.CheckProducer(1, 1, 1, 1); err != nil || dup == nil || dup.FirstOffset != 7 {
			t.Fatalf("replayed tail: %+v %v", dup, err)
		}
		if dup, err := r.CheckProducer(1, 1, 2, 2); err != nil || dup != nil {
			t.Fatalf("lost batch must be appendable again: %+v %v", dup, err)
		}
		if _, err := r.CheckProducer(1, 0, 9, 9); err != ErrInvalidProducerEpoch {
			t.Fatalf("fencing lost: %v", err)
		}
	})
	t.Run("expiration", func(t *testing.T) {
		l := mustOpen(t, storage.NewMem(), "d", Config{ProducerIDExpiration: time.Minute}, Checkpoint{})
		mustAppend(t, l, batch(3, 0, 0, 1))
		l.EnforceRetention(t0.Add(2 * time.Minute))
		if dup, err := l.CheckProducer(3, 0, 7, 7); err != nil || dup != nil {
			t.Fatalf("an expired producer continues at any sequence: %+v %v", dup, err)
		}
		if _, err := l.CheckProducer(3, 0, 0, 0); err != nil {
			t.Fatalf("expired producer's old batch is no longer a known duplicate: %v", err)
		}
	})
}

func TestAppendAllocatesNothing(t *testing.T) {
	forEachFS(t, func(t *testing.T, c fsCase) {
		l := mustOpen(t, c.fs, c.dir, Config{IndexIntervalBytes: 4096}, Checkpoint{})
		defer l.Close()
		b := makeBatch(batchSpec{records: 16, bodyBytes: 1024 - batchHeaderSize, pid: 1, epoch: 0, seq: 0}, 1)
		seq := int32(0)
		allocs := testing.AllocsPerRun(2000, func() {
			binary.BigEndian.PutUint32(b[offBaseSequence:], uint32(seq))
			seq += 16
			if _, err := l.Append(b, t0); err != nil {
				t.Fatal(err)
			}
			if seq%(16*64) == 0 {
				for _, tg := range l.PendingSync() {
					_ = tg
				}
				l.MarkSynced(l.LogEndOffset())
			}
		})
		if allocs != 0 {
			t.Fatalf("%v allocations per append", allocs)
		}
		r := func() {
			res, err := l.Read(l.LogEndOffset()-160, 1<<20, true, l.LogEndOffset())
			if err != nil {
				t.Fatal(err)
			}
			res.Release()
		}
		if allocs := testing.AllocsPerRun(1000, r); allocs != 0 {
			t.Fatalf("%v allocations per read", allocs)
		}
	})
}

// Fetch goroutines release pins concurrently with the shard deleting
// segments (run with -race).
func TestReleaseFromOtherGoroutines(t *testing.T) {
	l := mustOpen(t, storage.NewMem(), "d", Config{SegmentBytes: 500, RetentionBytes: 500, RetentionMs: -1}, Checkpoint{})
	done := make(chan struct{})
	pins := make(chan ReadResult, 64)
	go func() {
		defer close(done)
		buf := make([]byte, 64)
		for r := range pins {
			r.File.ReadAt(buf[:min(r.Len, 64)], int64(r.Pos))
			r.Seg.Release()
		}
	}()
	for i := 0; i < 500; i++ {
		mustAppend(t, l, makeBatch(batchSpec{bodyBytes: 100}, byte(i)))
		r, err := l.Read(l.LogStartOffset(), 1000, true, l.LogEndOffset())
		if err != nil {
			t.Fatal(err)
		}
		pins <- r
		if _, err := l.EnforceRetention(t0); err != nil {
			t.Fatal(err)
		}
	}
	close(pins)
	<-done
	l.Close()
}

// TestCheckpointWithoutChangesDoesNoIO: the shard checkpoints every
// partition periodically; an idle partition must cost no writes or syncs.
func TestCheckpointWithoutChangesDoesNoIO(t *testing.T) {
	fs := storage.NewFaulty(storage.NewMem())
	l := mustOpen(t, fs, "d", Config{}, Checkpoint{})
	io := func() int {
		return fs.Count(storage.OpWrite) + fs.Count(storage.OpDatasync) + fs.Count(storage.OpRename)
	}
	mustAppend(t, l, makeBatch(batchSpec{records: 3, maxTs: 1}, 1))
	if _, err := l.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	before := io()
	cp, err := l.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	if io() != before {
		t.Fatalf("a checkpoint with nothing new did %d I/O operations", io()-before)
	}
	if cp.RecoveryPoint != 3 {
		t.Fatalf("cached checkpoint recovery point %d, want 3", cp.RecoveryPoint)
	}
	mustAppend(t, l, makeBatch(batchSpec{records: 2, maxTs: 2}, 2))
	cp, err = l.Checkpoint()
	if err != nil || cp.RecoveryPoint != 5 || io() == before {
		t.Fatalf("after an append the checkpoint must persist again: %+v %v (I/O %d)", cp, err, io()-before)
	}
}

// sequencedAppender returns a function appending the next 3-record batch
// of idempotent producer pid (epoch 0), its sequences following on.
func sequencedAppender(t *testing.T, l *Log, pid int64) func() {
	seq := int32(0)
	return func() {
		t.Helper()
		mustAppend(t, l, makeBatch(batchSpec{records: 3, pid: pid, epoch: 0, seq: seq}, byte(seq)))
		seq += 3
	}
}

// TestCheckpointSyncedLeavesDataToTheSyncRounds: the shard's periodic
// checkpoint records what earlier datasync rounds made durable and never
// datasyncs segment data itself (that waited, on the shard thread, for the
// writeback of everything appended since). A crash that loses the unsynced
// batches its producer snapshot already describes still recovers the right
// producer state.
func TestCheckpointSyncedLeavesDataToTheSyncRounds(t *testing.T) {
	mem := storage.NewMem()
	fs := storage.NewFaulty(mem)
	l := mustOpen(t, fs, "d", Config{}, Checkpoint{})
	const pid = 7
	appendSeq := sequencedAppender(t, l, pid)
	for range 4 {
		appendSeq()
	}
	if err := l.Sync(); err != nil { // a datasync round: 12 offsets durable
		t.Fatal(err)
	}
	for range 4 {
		appendSeq() // appended, never synced
	}
	fs.AddRule(storage.Rule{Ops: storage.OpDatasync, Pattern: "*.log", Err: unix.EIO})
	before := fs.Count(storage.OpDatasync)
	cp, err := l.CheckpointSynced()
	if err != nil {
		t.Fatalf("CheckpointSynced datasynced segment data: %v", err)
	}
	if cp.RecoveryPoint != 12 || l.LogEndOffset() != 24 {
		t.Fatalf("recovery point %d with log end %d, want 12 and 24", cp.RecoveryPoint, l.LogEndOffset())
	}
	t.Logf("CheckpointSynced: %d datasyncs (index files, snapshot; no segment data)", fs.Count(storage.OpDatasync)-before)

	// Power loss: only the synced batches survive, while the snapshot
	// written by the checkpoint describes sequences up to 23.
	r := mustOpen(t, mem.Crash(), "d", Config{}, cp)
	defer r.Close()
	if r.LogEndOffset() != 12 {
		t.Fatalf("recovered log end %d, want 12", r.LogEndOffset())
	}
	// The producer's next sequence is the first lost one, 12: in order,
	// neither a duplicate nor out of sequence.
	if dup, err := r.CheckProducer(pid, 0, 12, 14); err != nil || dup != nil {
		t.Fatalf("sequence 12 after recovery: dup %v, err %v", dup, err)
	}
	// Sequence 9 survived: its retry is a duplicate.
	if dup, err := r.CheckProducer(pid, 0, 9, 11); err != nil || dup == nil || dup.FirstOffset != 9 {
		t.Fatalf("retry of sequence 9 after recovery: dup %+v, err %v", dup, err)
	}
}

// TestCheckpointSyncedMakesRolledIndexesDurable: a datasync round that
// covered a segment's last byte while it was active moves the recovery
// point to the segment's end, but the index files its roll wrote afterwards
// (and in direct mode the cut of its zero padding) were not in the round.
// The checkpoint must make them durable before it records that recovery
// point, since recovery trusts every segment below it (found by review).
func TestCheckpointSyncedMakesRolledIndexesDurable(t *testing.T) {
	for _, direct := range []bool{false, true} {
		t.Run(map[bool]string{false: "page-cache", true: "direct"}[direct], func(t *testing.T) {
			mem := storage.NewMem()
			var fs storage.FS = mem
			if direct {
				fs = &directFS{mem, testZeroingCache(t, 64)}
			}
			cfg := Config{SegmentBytes: 3000, IndexIntervalBytes: 200}
			l := mustOpen(t, fs, "d", cfg, Checkpoint{})
			batch := func(i int) []byte {
				return makeBatch(batchSpec{records: 3, bodyBytes: 200, maxTs: int64(1000 + i)}, byte(i))
			}
			i := 0
			for ; l.active().size+int64(len(batch(i)))*2 <= cfg.SegmentBytes; i++ {
				mustAppend(t, l, batch(i)) // all but the last batch that fits
			}
			mustAppend(t, l, batch(i))
			i++
			first := l.active().base
			// A round starts with the first segment active and wholly written.
			upTo := Offset(-1)
			for _, tg := range l.PendingSync() {
				if err := tg.File.Datasync(); err != nil {
					t.Fatal(err)
				}
				upTo = max(upTo, tg.UpTo)
			}
			// Before it completes, the next append rolls the segment.
			mustAppend(t, l, batch(i))
			if l.active().base == first {
				t.Fatalf("the append did not roll the segment (size %d)", l.segs[0].size)
			}
			l.MarkSynced(upTo)
			if l.SyncedOffset() != l.active().base {
				t.Fatalf("recovery point %d, want the rolled segment's end %d", l.SyncedOffset(), l.active().base)
			}
			size := l.segs[0].size
			cp, err := l.CheckpointSynced()
			if err != nil {
				t.Fatal(err)
			}
			crashed := mem.Crash()
			for _, suffix := range []string{indexSuffix, timeIndexSuffix} {
				name := segmentName("d", first, suffix)
				want, err := (&Log{fs: mem}).readWhole(name)
				if err != nil {
					t.Fatal(err)
				}
				got, _ := (&Log{fs: crashed}).readWhole(name)
				if len(want) == 0 || !bytes.Equal(got, want) {
					t.Errorf("%s: %d bytes survive a crash after the checkpoint, want its %d", suffix, len(got), len(want))
				}
			}
			if got, _ := (&Log{fs: crashed}).readWhole(segmentName("d", first, logSuffix)); int64(len(got)) != size {
				t.Errorf("the rolled segment is %d bytes after the crash, want %d (its padding cut off)", len(got), size)
			}
			r := mustOpen(t, crashed, "d", cfg, cp) // page-cache mode reads a direct-mode directory
			defer r.Close()
			if r.LogEndOffset() < cp.RecoveryPoint {
				t.Fatalf("recovered log end %d below the recorded recovery point %d", r.LogEndOffset(), cp.RecoveryPoint)
			}
			if got := readAll(t, r); len(got) == 0 {
				t.Fatal("nothing readable after recovery")
			}
		})
	}
}

// TestCaptureSnapshotKeepsTheSnapshotBehindTheRecoveryPoint: the shard
// captures the producer snapshot as it starts the periodic datasync rounds,
// and the checkpoint after them writes that capture, so the snapshot on disk
// never describes batches a crash can lose (recovery then never has to
// rebuild the producer state from the whole log). A truncation after the
// capture drops it: the captured state describes batches that are gone.
func TestCaptureSnapshotKeepsTheSnapshotBehindTheRecoveryPoint(t *testing.T) {
	mem := storage.NewMem()
	l := mustOpen(t, mem, "d", Config{}, Checkpoint{})
	defer l.Close()
	const pid = 7
	appendSeq := sequencedAppender(t, l, pid)
	onDisk := func() Offset {
		t.Helper()
		snap, err := l.readSnapshot()
		if err != nil || snap == nil {
			t.Fatalf("snapshot: %v %v", snap, err)
		}
		return snap.endOffset
	}
	for range 4 {
		appendSeq()
	}
	l.CaptureSnapshot() // at 12, as the rounds start
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		appendSeq() // during the rounds: unsynced
	}
	cp, err := l.CheckpointSynced()
	if err != nil {
		t.Fatal(err)
	}
	if got := onDisk(); got != 12 || cp.RecoveryPoint != 12 {
		t.Fatalf("snapshot at %d with recovery point %d, want both at 12", got, cp.RecoveryPoint)
	}
	// Power loss: the unsynced batches are gone; the snapshot still holds.
	r := mustOpen(t, mem.Crash(), "d", Config{}, cp)
	if dup, err := r.CheckProducer(pid, 0, 12, 14); err != nil || dup != nil {
		t.Fatalf("sequence 12 after recovery: dup %v, err %v", dup, err)
	}
	r.Close()

	// A capture, then a truncation below it: the checkpoint must not write
	// the stale capture even once the recovery point passes it again.
	appendSeq()         // 24..26: a change since the checkpoint, so there is something to capture
	l.CaptureSnapshot() // at 27
	if err := l.TruncateTo(18); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		appendSeq() // 18..29, other batches than the captured state saw
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.CheckpointSynced(); err != nil {
		t.Fatal(err)
	}
	if got := onDisk(); got != 30 {
		t.Fatalf("snapshot at %d after the truncation and 4 appends, want 30 (the stale capture was at 27)", got)
	}
}

// Recovery's cut of a torn tail is durable: when the checkpoint already
// covers the log up to the cut, no later sync round lists that segment, so
// a cut left in the page cache would let a second crash bring the torn
// bytes back, and that recovery would drop the segments appended since.
// (Found with SLUICE_SEED=1795353812927908415 of
// TestCrashKeepsSyncedBatchesAndTruncatesTornTail.)
func TestRecoveryCutOfATornTailSurvivesASecondCrash(t *testing.T) {
	mem := storage.NewMem()
	a, b := makeBatch(batchSpec{bodyBytes: 300}, 1), makeBatch(batchSpec{bodyBytes: 300}, 2)
	cfg := Config{SegmentBytes: int64(len(a) + len(b) + 50), IndexIntervalBytes: 4096}
	l := mustOpen(t, mem, "d/t-0", cfg, Checkpoint{})
	mustAppend(t, l, a)
	mustAppend(t, l, b)
	cp, err := l.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	// A torn write that reached the disk: half a batch past the end.
	seg := l.active()
	torn := makeBatch(batchSpec{bodyBytes: 300}, 3)[:200]
	if _, err := seg.file.WriteAt(torn, seg.size); err != nil {
		t.Fatal(err)
	}
	if err := seg.file.Datasync(); err != nil {
		t.Fatal(err)
	}
	first := mem.Crash()
	r := mustOpen(t, first, "d/t-0", cfg, cp) // cuts the torn half batch
	c := makeBatch(batchSpec{bodyBytes: 300}, 4)
	mustAppend(t, r, c) // rolls: the cut segment is below the recovery point
	if r.SegmentCount() != 2 {
		t.Fatalf("%d segments, want the append to have rolled", r.SegmentCount())
	}
	if err := r.Sync(); err != nil {
		t.Fatal(err)
	}
	r2 := mustOpen(t, first.Crash(), "d/t-0", cfg, Checkpoint{})
	defer r2.Close()
	want := withOffsets(append(append(append([]byte(nil), a...), b...), c...), 0)
	if got := readAll(t, r2); string(got) != string(want) {
		t.Fatalf("after the second crash the log holds %d bytes, want %d: the synced batch after the cut was lost", len(got), len(want))
	}
}

// A log whose directory cannot be opened to sync it (a new segment's entry
// is waiting) never closes clean: EIO fails it, EMFILE defers the sync, and
// either way the checkpoint says recover. (Found in review: Sync used to
// return nil over a PendingSync that failed, and Close recorded clean.)
func TestCloseIsNotCleanWhenTheDirectoryCannotBeSynced(t *testing.T) {
	for _, errno := range []error{unix.EIO, unix.EMFILE} {
		t.Run(errno.Error(), func(t *testing.T) {
			mem := storage.NewMem()
			fs := storage.NewFaulty(mem)
			cfg := Config{SegmentBytes: 1000}
			l := mustOpen(t, fs, "d/t-0", cfg, Checkpoint{})
			for i := range 6 { // rolls: the directory has new entries
				mustAppendNoDrive(t, l, makeBatch(batchSpec{bodyBytes: 300}, byte(i)))
			}
			fs.AddRule(storage.Rule{Ops: storage.OpOpen, Pattern: "t-0", Err: errno})
			if err := l.Close(); err == nil {
				t.Fatal("Close succeeded although the directory could not be synced")
			}
			if cp, _ := l.Checkpoint(); cp.Clean {
				t.Fatalf("checkpoint %+v: clean although the directory was never synced", cp)
			}
		})
	}
}

func mustAppendNoDrive(t *testing.T, l *Log, b []byte) {
	t.Helper()
	if _, err := l.Append(b, t0); err != nil {
		t.Fatal(err)
	}
}

// Direct mode: a roll refused for a full disk has already cut the old
// segment's zero padding. An append that then fits in the old segment must
// allocate its space again, not write into blocks the cut gave back.
// (Found in review.)
func TestDirectAppendAfterARollRefusedForAFullDisk(t *testing.T) {
	mem := storage.NewMem()
	fs := storage.NewFaulty(mem)
	d := &directFS{fs, testCache(t, 64)}
	cfg := Config{SegmentBytes: 64 << 10}
	l := mustOpen(t, d, "d/t-0", cfg, Checkpoint{})
	defer l.Close()
	for i := range 10 {
		mustAppend(t, l, makeBatch(batchSpec{bodyBytes: 5000}, byte(i))) // ~50 KiB
	}
	fs.AddRule(storage.Rule{Ops: storage.OpOpen, Pattern: "*.log", Times: 1, Err: unix.ENOSPC})
	if _, err := l.Append(makeBatch(batchSpec{bodyBytes: 20000}, 99), t0); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("an append whose roll cannot create the segment: %v, want ErrDiskFull", err)
	}
	allocs := fs.Count(storage.OpAllocate)
	mustAppend(t, l, makeBatch(batchSpec{bodyBytes: 1000}, 100)) // fits: no roll
	if fs.Count(storage.OpAllocate) == allocs {
		t.Fatal("an append after the refused roll wrote without allocating the space the roll had cut")
	}
	if l.Err() != nil {
		t.Fatal(l.Err())
	}
}

// Open makes everything present durable, so its first checkpoint writes
// nothing: a start with thousands of partitions used to datasync every
// one's index files and producer snapshot before serving (about 3.5 s for
// 3,000 partitions here). A crash right after, or a clean stop, still
// finds everything.
func TestFirstCheckpointAfterOpenWritesNothing(t *testing.T) {
	for _, clean := range []bool{true, false} {
		t.Run(fmt.Sprintf("clean=%v", clean), func(t *testing.T) {
			mem := storage.NewMem()
			cfg := Config{SegmentBytes: 4000}
			l := mustOpen(t, mem, "d/t-0", cfg, Checkpoint{})
			for i := range 20 {
				mustAppend(t, l, makeBatch(batchSpec{records: 2, bodyBytes: 300, maxTs: int64(i)}, byte(i)))
			}
			want := readAll(t, l)
			var cp Checkpoint
			if clean {
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
				cp, _ = l.Checkpoint()
			} else {
				l.Sync()
				l.closeFiles() // a crash, with nothing checkpointed
			}
			fs := storage.NewFaulty(mem)
			l = mustOpen(t, fs, "d/t-0", cfg, cp)
			writes, syncs := fs.Count(storage.OpWrite), fs.Count(storage.OpDatasync)
			first, err := l.CheckpointSynced()
			if err != nil || first.Clean || first.RecoveryPoint != l.LogEndOffset() {
				t.Fatalf("first checkpoint after open: %+v %v; want the log end, not clean", first, err)
			}
			if w, s := fs.Count(storage.OpWrite)-writes, fs.Count(storage.OpDatasync)-syncs; w != 0 || s != 0 {
				t.Fatalf("the first checkpoint after open made %d writes and %d datasyncs; want none", w, s)
			}
			// A crash now: recovery from that checkpoint finds everything.
			crashed := mem.Crash()
			l.closeFiles()
			l = mustOpen(t, crashed, "d/t-0", cfg, first)
			defer l.Close()
			if got := readAll(t, l); !bytes.Equal(got, want) {
				t.Fatal("after a crash right after the first checkpoint the log differs")
			}
		})
	}
}
