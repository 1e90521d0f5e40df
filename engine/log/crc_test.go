package log

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/sluice-broker/sluice/engine/storage"
)

// AppendCheckingCRC refuses a set with a corrupt batch whole, whichever
// batch and wherever in it the damage is (the CRC field itself, a later
// CRC block, past a chunk boundary), leaves the log as it was, and what it
// appends reads back exactly, after a reopen too. In direct mode the check
// runs on the copy in the tail cache; on the page-cache path (and for a set
// larger than the cache) it runs on the caller's bytes.
func TestAppendCheckingCRC(t *testing.T) {
	forEachFS(t, func(t *testing.T, c fsCase) {
		cfg := Config{SegmentBytes: 8 << 20, IndexIntervalBytes: 4096}
		l := mustOpen(t, c.fs, c.dir, cfg, Checkpoint{})
		appendChecked := func(set []byte) (AppendResult, error) {
			t.Helper()
			res, err := l.AppendCheckingCRC(set, t0)
			if errors.Is(err, ErrTailBusy) {
				drive(t, l)
				res, err = l.AppendCheckingCRC(set, t0)
			}
			drive(t, l)
			return res, err
		}
		var want []byte
		first := makeBatch(batchSpec{records: 2, bodyBytes: 1000}, 1)
		if _, err := appendChecked(first); err != nil {
			t.Fatal(err)
		}
		want = append(want, first...)

		big := func(fill byte) []byte { return makeBatch(batchSpec{records: 5, bodyBytes: 100 << 10}, fill) }
		for _, damage := range []struct {
			name  string
			batch int // which of the set's three batches
			at    int // byte of that batch flipped
		}{
			{"crc field", 0, offCRC + 1},
			{"attributes, first byte under the crc", 2, batchCRCStart},
			{"a later crc block", 1, 40 << 10},
			{"last byte", 2, batchHeaderSize + 100<<10 - 1},
		} {
			set := [][]byte{big(10), big(20), big(30)}
			set[damage.batch][damage.at] ^= 0x40
			var joined []byte
			for _, b := range set {
				joined = append(joined, b...)
			}
			end := l.LogEndOffset()
			_, err := appendChecked(joined)
			var crcErr *CRCError
			if !errors.As(err, &crcErr) || !errors.Is(err, ErrCorruptBatch) {
				t.Fatalf("%s: append answered %v, want a *CRCError matching ErrCorruptBatch", damage.name, err)
			}
			if crcErr.Batch != damage.batch {
				t.Fatalf("%s: the error names batch %d, want %d", damage.name, crcErr.Batch, damage.batch)
			}
			if l.LogEndOffset() != end {
				t.Fatalf("%s: the refused append moved the log end from %d to %d", damage.name, end, l.LogEndOffset())
			}
		}

		// A good set after the refusals: the bytes the refused copies left
		// past the end must not show.
		good := append(append(big(40), first...), big(50)...)
		res, err := appendChecked(good)
		if err != nil {
			t.Fatal(err)
		}
		if res.BaseOffset != 2 {
			t.Fatalf("the good set went to offset %d, want 2", res.BaseOffset)
		}
		want = append(want, good...)
		// Larger than a 64-chunk (4 MiB) cache: written through the page
		// cache in direct mode, its CRCs checked on the caller's bytes.
		var huge []byte
		for i := range 45 {
			huge = append(huge, big(byte(60+i))...)
		}
		bad := append([]byte(nil), huge...)
		bad[len(bad)-5] ^= 1
		if _, err := appendChecked(bad); !errors.Is(err, ErrCorruptBatch) {
			t.Fatalf("a corrupt set larger than the cache: %v, want ErrCorruptBatch", err)
		}
		if _, err := appendChecked(huge); err != nil {
			t.Fatal(err)
		}
		want = append(want, huge...)
		if got := readAll(t, l); string(got) != string(withOffsets(want, 0)) {
			t.Fatalf("read back %d bytes that differ from the %d appended", len(got), len(want))
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		r := mustOpen(t, c.fs, c.dir, cfg, Checkpoint{})
		defer r.Close()
		if got := readAll(t, r); string(got) != string(withOffsets(want, 0)) {
			t.Fatalf("after reopening, read back %d bytes that differ from the %d appended", len(got), len(want))
		}
	})
}

// A corrupt set that would roll the log is refused before the roll, as
// Kafka checks CRCs before it rolls: no new segment for bad input.
func TestAppendCheckingCRCRefusesBeforeRolling(t *testing.T) {
	forEachFS(t, func(t *testing.T, c fsCase) {
		cfg := Config{SegmentBytes: 64 << 10, IndexIntervalBytes: 4096}
		l := mustOpen(t, c.fs, c.dir, cfg, Checkpoint{})
		defer l.Close()
		mustAppend(t, l, makeBatch(batchSpec{bodyBytes: 40 << 10}, 1))
		drive(t, l)
		bad := makeBatch(batchSpec{bodyBytes: 40 << 10}, 2) // does not fit: would roll
		bad[len(bad)-1] ^= 1
		segs := len(l.segs)
		_, err := l.AppendCheckingCRC(bad, t0)
		if !errors.Is(err, ErrCorruptBatch) {
			t.Fatalf("append answered %v, want ErrCorruptBatch", err)
		}
		if len(l.segs) != segs {
			t.Fatalf("the refused set rolled the log: %d segments, was %d", len(l.segs), segs)
		}
	})
}

// While a write in flight reads the log's partial last block from the
// cache (no bounce slot), a refused set must not be copied into that block
// first: the device could get its bytes past the log end, and recovery
// after a crash could find a batch the client was told was corrupt.
func TestRefusedSetNeverEntersTheBlockBeingWritten(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "topic-0")
	cfg := Config{SegmentBytes: 1 << 20, IndexIntervalBytes: 4096, Tail: testCache(t, 8)} // no bounce slots
	l := mustOpen(t, storage.OS(), dir, cfg, Checkpoint{})
	defer l.Close()
	if _, err := l.Append(makeBatch(batchSpec{bodyBytes: 100}, 1), t0); err != nil {
		t.Fatal(err)
	}
	ws := l.PendingWrites(nil, false) // in flight, from the cache
	if len(ws) == 0 {
		t.Fatal("no write due")
	}
	good, bad := makeBatch(batchSpec{bodyBytes: 200}, 2), makeBatch(batchSpec{bodyBytes: 200}, 3)
	bad[len(bad)-1] ^= 1
	if _, err := l.AppendCheckingCRC(append(good, bad...), t0); !errors.Is(err, ErrCorruptBatch) {
		t.Fatalf("append answered %v, want ErrCorruptBatch", err)
	}
	tl := l.tail
	past := tl.at(tl.hi)[:alignUp(tl.hi, BlockSize)-tl.hi]
	for i, b := range past {
		if b != 0 {
			t.Fatalf("byte %d past the log end in the block being written is %#x: the refused set was copied there", i, b)
		}
	}
	for _, w := range ws {
		_, err := w.File.WriteAt(w.Buf, w.Off)
		l.WriteDone(w.Seq, err)
	}
}
