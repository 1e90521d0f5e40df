package log

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"
)

// damage is one way an unclean shutdown or a bad sector leaves an index
// file: it rewrites the file's bytes.
type damage struct {
	name   string
	suffix string
	fn     func(b []byte) []byte
}

var damages = []damage{
	{"index truncated mid-entry", indexSuffix, func(b []byte) []byte { return b[:len(b)-3] }},
	{"index zeroed", indexSuffix, func(b []byte) []byte { return make([]byte, len(b)) }},
	{"index out of order", indexSuffix, func(b []byte) []byte {
		c := append([]byte(nil), b...)
		copy(c[0:8], b[8:16])
		copy(c[8:16], b[0:8])
		return c
	}},
	{"index entry off a batch boundary", indexSuffix, func(b []byte) []byte {
		c := append([]byte(nil), b...)
		n := len(c) / indexEntrySize
		pos := binary.BigEndian.Uint32(c[(n-1)*indexEntrySize+4:])
		binary.BigEndian.PutUint32(c[(n-1)*indexEntrySize+4:], pos+1)
		return c
	}},
	{"time index empty", timeIndexSuffix, func([]byte) []byte { return nil }},
	{"time index zeroed", timeIndexSuffix, func(b []byte) []byte { return make([]byte, len(b)) }},
	{"time index stale", timeIndexSuffix, func(b []byte) []byte { return b[:len(b)-timeIndexEntrySize] }},
	{"time index timestamp too large", timeIndexSuffix, func(b []byte) []byte {
		c := append([]byte(nil), b...)
		n := len(c) / timeIndexEntrySize
		ts := binary.BigEndian.Uint64(c[(n-1)*timeIndexEntrySize:])
		binary.BigEndian.PutUint64(c[(n-1)*timeIndexEntrySize:], ts+1000)
		return c
	}},
}

// Damaged index files are found when a segment is first used and rebuilt
// from its batches, that segment only; every read and timestamp lookup
// answers as with intact files. Through the no-wait path the log does not
// load on the caller's thread: it names the load, which runs elsewhere.
func TestDamagedIndexesAreRebuiltOnFirstUse(t *testing.T) {
	for _, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			forEachFS(t, func(t *testing.T, c fsCase) {
				cfg := Config{SegmentBytes: 10_000, IndexIntervalBytes: 500}
				l := mustOpen(t, c.fs, c.dir, cfg, Checkpoint{})
				for i := range 200 {
					mustAppend(t, l, makeBatch(batchSpec{records: 3, bodyBytes: 200, maxTs: 1000 + int64(i)*10}, byte(i)))
				}
				want := readAll(t, l)
				type lookup struct {
					off Offset
					ts  int64
				}
				var wantTs []lookup
				for _, ts := range []int64{0, 1005, 1500, 2990, 2991} {
					off, got, _ := l.OffsetForTimestamp(ts)
					wantTs = append(wantTs, lookup{off, got})
				}
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
				cp, _ := l.Checkpoint()
				// Damage every rolled segment's file of that kind but the
				// first (kept intact: only damaged ones are rebuilt).
				names, _ := c.fs.ReadDir(c.dir)
				damaged := 0
				for _, n := range names {
					base, ok := parseSegmentName(n, d.suffix)
					if !ok || base == 0 || base >= cp.RecoveryPoint-60 {
						continue
					}
					path := c.dir + "/" + n
					b, err := readWholeFile(c.fs, path)
					if err != nil {
						t.Fatal(err)
					}
					f, _ := c.fs.OpenFile(path, os.O_RDWR|os.O_TRUNC, 0o644)
					f.WriteAt(d.fn(b), 0)
					f.Close()
					damaged++
				}
				if damaged < 3 {
					t.Fatalf("only %d segments to damage", damaged)
				}
				l = mustOpen(t, c.fs, c.dir, cfg, cp)
				defer l.Close()

				// A fetch in no-wait mode names the load instead of doing it.
				l.BeginNoWait(nil)
				_, err := l.Read(l.segs[1].base, 1<<20, true, l.LogEndOffset())
				wb := l.EndNoWait()
				var blocked *WouldBlock
				if !errors.As(err, &blocked) || wb == nil || wb.Indexes == nil {
					t.Fatalf("a no-wait read of an unloaded segment: %v, %v; want a WouldBlock naming its index load", err, wb)
				}
				wb.Indexes.Run()
				if ok, err := l.InstallIndexes(wb.Indexes); !ok || err != nil || !wb.Indexes.Rebuilt {
					t.Fatalf("installing the load: %v %v (rebuilt %v)", ok, err, wb.Indexes.Rebuilt)
				}

				if got := readAll(t, l); !bytes.Equal(got, want) {
					t.Fatal("reads over damaged indexes differ")
				}
				for i, ts := range []int64{0, 1005, 1500, 2990, 2991} {
					if off, got, _ := l.OffsetForTimestamp(ts); off != wantTs[i].off || got != wantTs[i].ts {
						t.Fatalf("OffsetForTimestamp(%d) = %d@%d over damaged indexes; want %d@%d", ts, off, got, wantTs[i].off, wantTs[i].ts)
					}
				}
				if got := int(l.IndexRebuilds) + 1; got != damaged { // +1: the one rebuilt above
					t.Fatalf("%d segments rebuilt; want the %d damaged", got, damaged)
				}
			})
		})
	}
}

// Intact index files are loaded as they are, with no rebuild.
func TestIntactIndexesAreNotRebuilt(t *testing.T) {
	forEachFS(t, func(t *testing.T, c fsCase) {
		cfg := Config{SegmentBytes: 10_000, IndexIntervalBytes: 500}
		l := mustOpen(t, c.fs, c.dir, cfg, Checkpoint{})
		for i := range 100 {
			mustAppend(t, l, makeBatch(batchSpec{records: 3, bodyBytes: 200, maxTs: 1000 + int64(i)}, byte(i)))
		}
		want := readAll(t, l)
		l.Close()
		cp, _ := l.Checkpoint()
		l = mustOpen(t, c.fs, c.dir, cfg, cp)
		defer l.Close()
		if got := readAll(t, l); !bytes.Equal(got, want) || l.IndexRebuilds != 0 {
			t.Fatalf("reads match: %v; %d segments rebuilt, want 0", bytes.Equal(got, want), l.IndexRebuilds)
		}
	})
}
