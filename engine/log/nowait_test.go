package log

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"

	"github.com/sluice-broker/sluice/engine/storage"
)

// coldCase is a file system whose every no-wait read would block: the log
// must then name the regions it needs and finish from them alone. faulty
// counts its blocking reads.
type coldCase struct {
	fsCase
	faulty *storage.FaultyFS
}

func coldCases(t *testing.T) []coldCase {
	cold := func(fs storage.FS) *storage.FaultyFS {
		return storage.NewFaulty(fs, storage.Rule{Ops: storage.OpReadNoWait, Err: storage.ErrWouldBlock})
	}
	osCold, memCold := cold(storage.OS()), cold(storage.NewMem())
	osDirect, memDirect := cold(storage.OS()), cold(storage.NewMem())
	return []coldCase{
		{fsCase{"os", osCold, filepath.Join(t.TempDir(), "topic-0")}, osCold},
		{fsCase{"mem", memCold, "data/topic-0"}, memCold},
		// A cache of 4 chunks holds 256 KiB of a 2 MiB segment: reads of
		// the active segment go below the cache, to the stable end.
		{fsCase{"os-direct", &directFS{osDirect, testCache(t, 4)}, filepath.Join(t.TempDir(), "topic-0")}, osDirect},
		{fsCase{"mem-direct", &directFS{memDirect, testCache(t, 4)}, "data/topic-0"}, memDirect},
	}
}

// noWait runs fn in no-wait mode, fetching (with ordinary reads) every
// region it names, until it completes; it checks that fn never read a file
// the blocking way and each region against the rules of nowait.go, and
// returns how many rounds it took. between, if set, runs after each fetch:
// the log may change while a region is read.
func noWait(t *testing.T, c coldCase, l *Log, between func(), fn func() error) int {
	t.Helper()
	var pre []Prefetched
	for rounds := 0; ; rounds++ {
		blocking := c.faulty.Count(storage.OpRead)
		l.BeginNoWait(pre)
		err := fn()
		wb := l.EndNoWait()
		if n := c.faulty.Count(storage.OpRead) - blocking; n > 0 {
			t.Fatalf("%d blocking reads in no-wait mode", n)
		}
		if wb == nil {
			if err != nil {
				t.Fatalf("no-wait read: %v", err)
			}
			return rounds
		}
		if !errors.Is(err, wb) && err != nil {
			t.Fatalf("blocked read failed with %v, want the WouldBlock %v", err, wb)
		}
		if rounds > 2*maxRoundsSeen {
			t.Fatalf("no progress after %d rounds: %v", rounds, wb)
		}
		var seg *segment
		for _, s := range l.segs {
			if s.file == wb.File {
				seg = s
			}
		}
		switch {
		case seg == nil:
			t.Fatalf("%v: not a segment of the log", wb)
		case wb.Off%BlockSize != 0 || wb.Len <= 0 || wb.Len > PrefetchSize:
			t.Fatalf("%v: want a block-aligned region of 1..%d bytes", wb, PrefetchSize)
		}
		// Bytes past the segment's size, or in the tail cache, may still
		// change (direct mode rewrites the block at the end).
		stable := seg.size
		if l.tail != nil && seg == l.tail.seg {
			stable = l.tail.valid
		}
		if wb.Off+int64(wb.Len) > stable {
			t.Fatalf("%v: past the segment's stable end %d", wb, stable)
		}
		buf := make([]byte, wb.Len)
		if n, err := wb.File.ReadAt(buf, wb.Off); n < len(buf) {
			t.Fatalf("fetch %v: %d bytes, %v", wb, n, err)
		}
		pre = append(pre, wb.Done(buf))
		if between != nil {
			between()
		}
	}
}

// maxRoundsSeen bounds the rounds one request may take here: index
// entries every IndexIntervalBytes keep each header walk within a region
// or two.
const maxRoundsSeen = 4

// Reads and timestamp lookups in no-wait mode, over regions fetched on
// request, answer exactly what blocking reads answer.
func TestNoWaitReadsMatchBlockingReads(t *testing.T) {
	rng, _ := seedRand(t)
	for _, c := range coldCases(t) {
		t.Run(c.name, func(t *testing.T) {
			cfg := Config{SegmentBytes: 2 << 20, IndexIntervalBytes: 4096}
			l := mustOpen(t, c.fs, c.dir, cfg, Checkpoint{})
			defer l.Close()
			for i := 0; i < 2500; i++ {
				ts := t0.UnixMilli() + int64(i)*10 + int64(rng.Intn(30))
				mustAppend(t, l, makeBatch(batchSpec{records: 1 + rng.Intn(10), bodyBytes: rng.Intn(3000), maxTs: ts}, byte(i)))
			}
			if l.SegmentCount() < 2 {
				t.Fatalf("want several segments, have %d", l.SegmentCount())
			}
			end := l.LogEndOffset()
			// While a region is fetched, appends go on: the tail cache
			// moves up and evicts, the direct writer writes, segments roll.
			appended := 0
			appendOne := func() {
				appended++
				mustAppend(t, l, makeBatch(batchSpec{records: 3, bodyBytes: rng.Intn(3000), maxTs: t0.UnixMilli() + 30000 + int64(appended)}, byte(appended)))
			}
			cold := 0
			for q := 0; q < 300; q++ {
				from := Offset(rng.Int63n(int64(end)))
				maxBytes := rng.Intn(256 << 10)
				want, err := l.Read(from, maxBytes, true, end)
				if err != nil {
					t.Fatal(err)
				}
				var got ReadResult
				rounds := noWait(t, c, l, appendOne, func() (err error) {
					got.Release()
					got, err = l.Read(from, maxBytes, true, end)
					return err
				})
				if rounds > maxRoundsSeen {
					t.Fatalf("read(%d, %d) took %d rounds", from, maxBytes, rounds)
				}
				if rounds > 0 {
					cold++
				}
				if got.Pos != want.Pos || got.Len != want.Len || got.FirstOffset != want.FirstOffset || got.NextOffset != want.NextOffset {
					t.Fatalf("read(%d, %d): no-wait pos %d len %d first %d next %d; blocking pos %d len %d first %d next %d",
						from, maxBytes, got.Pos, got.Len, got.FirstOffset, got.NextOffset, want.Pos, want.Len, want.FirstOffset, want.NextOffset)
				}
				got.Release()
				want.Release()

				ts := t0.UnixMilli() + int64(rng.Intn(26000))
				wantOff, wantTs, wantOK := l.OffsetForTimestamp(ts)
				var gotOff Offset
				var gotTs int64
				var gotOK bool
				noWait(t, c, l, nil, func() error {
					gotOff, gotTs, gotOK = l.OffsetForTimestamp(ts)
					return nil
				})
				if gotOff != wantOff || gotTs != wantTs || gotOK != wantOK {
					t.Fatalf("OffsetForTimestamp(%d): no-wait %d %d %v, blocking %d %d %v", ts, gotOff, gotTs, gotOK, wantOff, wantTs, wantOK)
				}
			}
			// The file system refuses every no-wait read, so every request
			// that reached a segment file had to name a region.
			if cold == 0 || appended == 0 {
				t.Fatalf("%d reads needed a region, %d appends ran while one was fetched: the no-wait path was not exercised", cold, appended)
			}
		})
	}
}

// A region fetched before a truncation is never used after it: the bytes
// at those positions are different now.
func TestNoWaitRegionsDieWithTruncation(t *testing.T) {
	for _, c := range coldCases(t) {
		t.Run(c.name, func(t *testing.T) {
			cfg := Config{SegmentBytes: 1 << 20, IndexIntervalBytes: 4096}
			l := mustOpen(t, c.fs, c.dir, cfg, Checkpoint{})
			defer l.Close()
			for i := 0; i < 400; i++ {
				mustAppend(t, l, makeBatch(batchSpec{records: 2, bodyBytes: 1000}, byte(i)))
			}
			// The first 64 KiB of the segment as they are now, fetched the
			// way a no-wait read would have them.
			seg := l.segs[0]
			old := make([]byte, PrefetchSize)
			if n, err := seg.file.ReadAt(old, 0); n < len(old) {
				t.Fatalf("read: %d bytes, %v", n, err)
			}
			pre := []Prefetched{{File: seg.file, Off: 0, Buf: old, gen: l.truncGen}}
			if err := l.TruncateTo(4); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 400; i++ {
				mustAppend(t, l, makeBatch(batchSpec{records: 3, bodyBytes: 700}, byte(100+i)))
			}
			want, err := l.Read(10, 1<<20, true, l.LogEndOffset())
			if err != nil {
				t.Fatal(err)
			}
			defer want.Release()
			var got ReadResult
			noWait(t, c, l, nil, func() (err error) {
				got.Release()
				// The stale region comes first: were it used, the walk
				// would follow the old batches' lengths (the segment is
				// the same file, truncated and written again).
				if l.segs[0].file != seg.file {
					t.Fatal("the truncation replaced the segment's file: the test needs it kept")
				}
				l.nw.pre = append(pre[:1:1], l.nw.pre...)
				got, err = l.Read(10, 1<<20, true, l.LogEndOffset())
				return err
			})
			defer got.Release()
			if got.Pos != want.Pos || got.Len != want.Len || got.FirstOffset != want.FirstOffset {
				t.Fatalf("after truncation: no-wait pos %d len %d first %d, blocking pos %d len %d first %d",
					got.Pos, got.Len, got.FirstOffset, want.Pos, want.Len, want.FirstOffset)
			}
			wb, err := want.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			gb, err := got.Bytes()
			if err != nil || !bytes.Equal(gb, wb) {
				t.Fatalf("after truncation the bytes differ (%v)", err)
			}
		})
	}
}
