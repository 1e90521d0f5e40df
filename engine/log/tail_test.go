package log

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sluice-broker/sluice/engine/storage"
)

// Tests of direct write mode (tail.go): the shard's side is played by
// fakeDevice, which holds submitted pieces and completes them in any order.

// tailModel is what a test appended to a log: the batches laid end to end
// (offsets assigned by Append, which rewrites them in place).
type tailModel struct {
	content []byte
	starts  []int    // position in content of each batch
	bases   []Offset // base offset of each batch
}

func (m *tailModel) add(b []byte) {
	m.starts = append(m.starts, len(m.content))
	m.bases = append(m.bases, Offset(binary.BigEndian.Uint64(b[offBaseOffset:])))
	m.content = append(m.content, b...)
}

// posOf is the position in content of the batch based at base (or of the
// end when base is the end offset): offsets are always at batch boundaries.
func (m *tailModel) posOf(t testing.TB, base Offset) int {
	t.Helper()
	i := sort.Search(len(m.bases), func(i int) bool { return m.bases[i] >= base })
	if i == len(m.bases) {
		return len(m.content)
	}
	if m.bases[i] != base {
		t.Fatalf("offset %d is not a batch boundary", base)
	}
	return m.starts[i]
}

// checkRead checks a ReadResult's bytes against the model.
func (m *tailModel) checkRead(t testing.TB, r ReadResult) {
	t.Helper()
	got, err := r.Bytes()
	if err != nil {
		t.Fatalf("read bytes: %v", err)
	}
	pos := m.posOf(t, r.FirstOffset)
	if pos+len(got) > len(m.content) || !bytes.Equal(got, m.content[pos:pos+len(got)]) {
		t.Fatalf("read at %d (%d bytes, mem %v) differs from what was appended", r.FirstOffset, r.Len, r.Mem != nil)
	}
	if next := m.posOf(t, r.NextOffset); next != pos+len(got) {
		t.Fatalf("read at %d: next offset %d at position %d, want %d", r.FirstOffset, r.NextOffset, next, pos+len(got))
	}
}

// fakePiece is a submitted piece of a direct write.
type fakePiece struct {
	l    *Log
	w    DirectWrite
	done bool // written to the file, completion not reported yet
}

func (p *fakePiece) write(t testing.TB) {
	t.Helper()
	if p.done {
		return
	}
	// The device reads the buffer when it gets to it, not at submission.
	if n, err := p.w.File.WriteAt(p.w.Buf, p.w.Off); err != nil || n != len(p.w.Buf) {
		t.Fatalf("direct write of %d bytes at %d: %d, %v", len(p.w.Buf), p.w.Off, n, err)
	}
	p.done = true
}

// fakeDevice holds the pieces submitted and not yet completed, of any
// number of logs.
type fakeDevice struct {
	pieces []*fakePiece
}

func (d *fakeDevice) submit(l *Log) []DirectWrite {
	ws := l.PendingWrites(nil, false)
	for _, w := range ws {
		d.pieces = append(d.pieces, &fakePiece{l: l, w: w})
	}
	return ws
}

// complete writes piece i (unless done) and reports its completion.
func (d *fakeDevice) complete(t testing.TB, i int) *fakePiece {
	t.Helper()
	p := d.pieces[i]
	d.pieces = append(d.pieces[:i], d.pieces[i+1:]...)
	p.write(t)
	p.l.WriteDone(p.w.Seq, nil)
	return p
}

// drain completes everything in flight, in random order, and every write
// the logs still have to submit.
func (d *fakeDevice) drain(t testing.TB, rng *rand.Rand, logs ...*Log) {
	t.Helper()
	for {
		for len(d.pieces) > 0 {
			d.complete(t, rng.Intn(len(d.pieces)))
		}
		more := false
		for _, l := range logs {
			more = len(d.submit(l)) > 0 || more
		}
		if !more {
			return
		}
	}
}

// appendTo appends b, completing writes in random order while the log says
// it is busy or its cache full, as the shard does.
func (d *fakeDevice) appendTo(t testing.TB, rng *rand.Rand, l *Log, b []byte) AppendResult {
	t.Helper()
	for tries := 0; ; tries++ {
		res, err := l.Append(b, t0)
		switch {
		case err == nil:
			return res
		case errors.Is(err, ErrTailBusy) || errors.Is(err, ErrTailFull):
			if tries > 10_000 {
				t.Fatalf("append keeps failing: %v", err)
			}
			if len(d.pieces) > 0 {
				d.complete(t, rng.Intn(len(d.pieces)))
			} else if len(d.submit(l)) == 0 {
				t.Fatalf("append: %v with nothing in flight and nothing to submit", err)
			}
		default:
			t.Fatalf("append: %v", err)
		}
	}
}

// checkPieces checks the pieces of one write: block-aligned, inside the
// cache's memory, contiguous over [start, alignUp(hi)), holding the log's
// bytes and zero padding after hi.
func checkPieces(t testing.TB, cache *TailCache, ws []DirectWrite, start, hi int64, content []byte) {
	t.Helper()
	mem := cache.Mem()
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(mem)))
	pos := start
	for i, w := range ws {
		addr := uintptr(unsafe.Pointer(unsafe.SliceData(w.Buf)))
		switch {
		case w.Seq != ws[0].Seq:
			t.Fatalf("piece %d of one write has seq %d, not %d", i, w.Seq, ws[0].Seq)
		case w.Off != pos:
			t.Fatalf("piece %d at %d, want %d (pieces %+v)", i, w.Off, pos, ws)
		case w.Off%BlockSize != 0 || len(w.Buf)%BlockSize != 0 || len(w.Buf) == 0 || len(w.Buf) > maxWrite:
			t.Fatalf("piece %d: %d bytes at %d are not whole blocks", i, len(w.Buf), w.Off)
		case addr%BlockSize != 0 || addr < lo || addr+uintptr(len(w.Buf)) > lo+uintptr(len(mem)):
			t.Fatalf("piece %d: buffer not aligned inside the tail cache", i)
		}
		for k, c := range w.Buf {
			p := w.Off + int64(k)
			want := byte(0)
			if p < hi {
				want = content[p]
			}
			if c != want {
				t.Fatalf("piece %d: byte at %d is %#x, want %#x (end %d)", i, p, c, want, hi)
			}
		}
		pos += int64(len(w.Buf))
	}
	if pos != alignUp(hi, BlockSize) {
		t.Fatalf("write covers [%d, %d), want up to %d", start, pos, alignUp(hi, BlockSize))
	}
}

func openOrFatal(t testing.TB, fs storage.FS, dir string, cfg Config, cp Checkpoint) *Log {
	t.Helper()
	l, err := Open(fs, dir, cfg, cp, t0)
	if err != nil {
		t.Fatalf("open %s (direct %v): %v", dir, cfg.Tail != nil, err)
	}
	return l
}

// checkFileSizes checks that each segment file of l holds whole batches up
// to its very end (no zero padding left behind), want bytes in all.
func checkFileSizes(t testing.TB, fs storage.FS, l *Log, want int64) {
	t.Helper()
	var total int64
	for _, s := range l.segs {
		size, err := fs.Stat(segmentName(l.dir, s.base, logSuffix))
		if err != nil {
			t.Fatal(err)
		}
		for pos := int64(0); pos < size; {
			h, ok, err := l.readHeader(s.file, pos, size)
			if err != nil || !ok {
				t.Fatalf("segment %d: no batch at %d of its %d bytes (padding?): %v", s.base, pos, size, err)
			}
			pos += h.size()
		}
		total += size
	}
	if total != want || l.Size() != want {
		t.Fatalf("segment files hold %d bytes, log size %d, want %d", total, l.Size(), want)
	}
}

// checkTail checks the invariants of a direct log's cache: every byte
// below the cache is written, and the chunks cover the cache up to the
// block holding the end.
func checkTail(t testing.TB, l *Log) {
	t.Helper()
	tl := l.tail
	if tl.valid > tl.written || tl.written > tl.hi || tl.submitted > tl.hi || tl.written > tl.submitted {
		t.Fatalf("cache from %d, written %d, submitted %d, end %d", tl.valid, tl.written, tl.submitted, tl.hi)
	}
	if len(tl.chunks) == 0 {
		if tl.valid != tl.hi {
			t.Fatalf("no chunk, but the cache holds [%d, %d)", tl.valid, tl.hi)
		}
		return
	}
	if tl.lo%ChunkSize != 0 || tl.lo > tl.valid || tl.lo+int64(len(tl.chunks))*ChunkSize < alignUp(tl.hi, BlockSize) {
		t.Fatalf("chunks [%d, +%d chunks) for the cache [%d, %d)", tl.lo, len(tl.chunks), tl.valid, tl.hi)
	}
}

// readUpTo reads everything below upTo (at most the written end in direct
// mode, as fetches do) and checks it against the model.
func readUpTo(t testing.TB, l *Log, m *tailModel, upTo Offset) {
	t.Helper()
	for off := l.LogStartOffset(); off < upTo; {
		r, err := l.Read(off, 1+rand.Intn(64<<10), true, upTo)
		if err != nil {
			t.Fatalf("read %d up to %d: %v", off, upTo, err)
		}
		if r.Len == 0 {
			t.Fatalf("read %d: nothing below %d", off, upTo)
		}
		m.checkRead(t, r)
		r.Release()
		off = r.NextOffset
	}
}

type storageCase struct {
	name string
	fs   storage.FS
	root string
}

func storageCases(t *testing.T) []storageCase {
	return []storageCase{
		{"os", storage.OS(), t.TempDir()},
		{"mem", storage.NewMem(), "data"},
	}
}

// alignedBatch is a batch of exactly n bytes.
func alignedBatch(records, n int, fill byte) []byte {
	return makeBatch(batchSpec{records: records, bodyBytes: n - batchHeaderSize}, fill)
}

// WrittenOffset moves only when every earlier write completed; PendingSync
// and Sync cover only what is written; a write never starts in the block of
// a write in flight.
func TestDirectWrittenOffsetWaitsForEarlierWrites(t *testing.T) {
	for _, sc := range storageCases(t) {
		t.Run(sc.name, func(t *testing.T) {
			cache := testCache(t, 4)
			dir := filepath.Join(sc.root, "t-0")
			l := openOrFatal(t, sc.fs, dir, Config{Tail: cache}, Checkpoint{})
			var m tailModel
			var ws [][]DirectWrite
			for i := 0; i < 3; i++ { // three writes of one block each, all in flight
				b := alignedBatch(2, BlockSize, byte(i))
				if _, err := l.Append(b, t0); err != nil {
					t.Fatal(err)
				}
				m.add(b)
				w := l.PendingWrites(nil, false)
				if len(w) != 1 || w[0].Off != int64(i)*BlockSize {
					t.Fatalf("write %d: %+v", i, w)
				}
				ws = append(ws, w)
			}
			if l.WrittenOffset() != 0 || l.WritesIdle() || l.WritesPending() {
				t.Fatalf("written %d idle %v pending %v", l.WrittenOffset(), l.WritesIdle(), l.WritesPending())
			}
			done := func(i int) {
				w := ws[i][0]
				if _, err := w.File.WriteAt(w.Buf, w.Off); err != nil {
					t.Fatal(err)
				}
				l.WriteDone(w.Seq, nil)
			}
			done(2)
			done(1)
			if l.WrittenOffset() != 0 {
				t.Fatalf("written %d before the first write completed", l.WrittenOffset())
			}
			for _, tg := range l.PendingSync() {
				if !tg.Dir && tg.UpTo > 0 {
					t.Fatalf("sync target %+v covers unwritten data", tg)
				}
			}
			if err := l.Sync(); err != nil || l.SyncedOffset() != 0 {
				t.Fatalf("sync: %v, synced %d", err, l.SyncedOffset())
			}
			done(0)
			if l.WrittenOffset() != 6 || !l.WritesIdle() {
				t.Fatalf("written %d idle %v after all completed", l.WrittenOffset(), l.WritesIdle())
			}
			if err := l.Sync(); err != nil || l.SyncedOffset() != 6 {
				t.Fatalf("sync: %v, synced %d", err, l.SyncedOffset())
			}

			// A write ending inside a block holds the next one back.
			b := makeBatch(batchSpec{records: 1, bodyBytes: 900}, 7)
			if _, err := l.Append(b, t0); err != nil {
				t.Fatal(err)
			}
			m.add(b)
			w4 := l.PendingWrites(nil, false)
			checkPieces(t, cache, w4, 3*BlockSize, l.Size(), m.content)
			b = makeBatch(batchSpec{records: 1, bodyBytes: 300}, 8)
			if _, err := l.Append(b, t0); err != nil {
				t.Fatal(err)
			}
			m.add(b)
			if w := l.PendingWrites(nil, false); len(w) != 0 {
				t.Fatalf("a write started in the block of the write in flight: %+v", w)
			}
			if !l.WritesPending() || l.WritesIdle() {
				t.Fatal("the held back write is not pending")
			}
			if _, err := w4[0].File.WriteAt(w4[0].Buf, w4[0].Off); err != nil {
				t.Fatal(err)
			}
			l.WriteDone(w4[0].Seq, nil)
			if l.WrittenOffset() != 7 {
				t.Fatalf("written %d, want 7", l.WrittenOffset())
			}
			// Reads below the written end are right, from memory.
			readUpTo(t, l, &m, l.WrittenOffset())
			w5 := l.PendingWrites(nil, false)
			checkPieces(t, cache, w5, 3*BlockSize, l.Size(), m.content)
			if _, err := w5[0].File.WriteAt(w5[0].Buf, w5[0].Off); err != nil {
				t.Fatal(err)
			}
			l.WriteDone(w5[0].Seq, nil)
			if l.WrittenOffset() != 8 || !l.WritesIdle() {
				t.Fatalf("written %d", l.WrittenOffset())
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			r := openOrFatal(t, sc.fs, dir, Config{}, Checkpoint{})
			defer r.Close()
			if got := readAll(t, r); !bytes.Equal(got, m.content) {
				t.Fatal("file content differs")
			}
		})
	}
}

// ooLog is the model of one log's direct writer for the out-of-order test.
type ooLog struct {
	l         *Log
	m         tailModel
	submitted int64 // bytes below it are in submitted writes
	lastEnd   int64 // block-aligned end of the newest write
	writes    []*ooWrite
	written   Offset
}

type ooWrite struct {
	seq        uint64
	start, end int64
	endOff     Offset
	left       int // pieces not completed
}

// Writes of two logs sharing a cache are submitted and their pieces
// completed in random order, several writes in flight at once.
func TestDirectOutOfOrderCompletion(t *testing.T) {
	rng, _ := seedRand(t)
	for _, sc := range storageCases(t) {
		t.Run(sc.name, func(t *testing.T) {
			cache := testCache(t, 4+rng.Intn(5))
			var logs []*ooLog
			for i := 0; i < 2; i++ {
				l := openOrFatal(t, sc.fs, filepath.Join(sc.root, fmt.Sprintf("t-%d", i)), Config{IndexIntervalBytes: 1 + rng.Intn(4096), Tail: cache}, Checkpoint{})
				logs = append(logs, &ooLog{l: l})
			}
			dev := &fakeDevice{}
			var lastSeq = map[*Log]uint64{}
			multiPiece, maxInFlight := 0, 0

			submit := func(o *ooLog) {
				hi := o.l.Size()
				start := alignDown(o.submitted, BlockSize)
				incomplete := false
				for _, w := range o.writes {
					incomplete = incomplete || w.left > 0
				}
				mustSubmit := o.submitted < hi && (!incomplete || o.lastEnd <= start)
				mustRefuse := o.submitted == hi
				for _, w := range o.writes {
					mustRefuse = mustRefuse || w.left > 0 && w.end > start
				}
				if o.submitted < hi != o.l.WritesPending() {
					t.Fatalf("WritesPending %v with %d of %d bytes submitted", o.l.WritesPending(), o.submitted, hi)
				}
				ws := dev.submit(o.l)
				if len(ws) == 0 {
					if mustSubmit {
						t.Fatalf("no write submitted: [%d, %d) due, nothing in its way", start, hi)
					}
					return
				}
				if mustRefuse {
					t.Fatalf("write from %d submitted while the write of that block is in flight", start)
				}
				checkPieces(t, cache, ws, start, hi, o.m.content)
				if ws[0].Seq <= lastSeq[o.l] {
					t.Fatalf("seq %d after %d", ws[0].Seq, lastSeq[o.l])
				}
				lastSeq[o.l] = ws[0].Seq
				if len(ws) > 1 {
					multiPiece++
				}
				o.writes = append(o.writes, &ooWrite{seq: ws[0].Seq, start: start, end: alignUp(hi, BlockSize), endOff: o.l.LogEndOffset(), left: len(ws)})
				o.submitted, o.lastEnd = hi, alignUp(hi, BlockSize)
				n := 0
				for _, w := range o.writes {
					if w.left > 0 {
						n++
					}
				}
				maxInFlight = max(maxInFlight, n)
			}
			complete := func() {
				p := dev.complete(t, rng.Intn(len(dev.pieces)))
				var o *ooLog
				for _, x := range logs {
					if x.l == p.l {
						o = x
					}
				}
				found := false
				for _, w := range o.writes {
					if w.seq == p.w.Seq {
						w.left--
						found = true
					}
				}
				if !found {
					t.Fatalf("completion of unknown write %d", p.w.Seq)
				}
				n := 0
				for n < len(o.writes) && o.writes[n].left == 0 {
					o.written = o.writes[n].endOff
					n++
				}
				o.writes = o.writes[n:]
				if got := o.l.WrittenOffset(); got != o.written {
					t.Fatalf("written offset %d, want %d (every write before it complete)", got, o.written)
				}
			}

			slow := false // phases where the device lags: writes pile up over chunks
			for step := 0; step < 3000; step++ {
				if step%100 == 0 {
					slow = rng.Intn(2) == 0
				}
				o := logs[rng.Intn(len(logs))]
				k := rng.Intn(10)
				if slow && k >= 6 && k < 9 && rng.Intn(5) > 0 {
					k = 0
				}
				switch {
				case k < 3:
					var b []byte
					switch size := o.l.Size(); rng.Intn(3) {
					case 0: // a whole number of blocks
						b = alignedBatch(1+rng.Intn(4), BlockSize*(1+rng.Intn(3)), byte(step))
					case 1: // up to the next block boundary: writes can pile up
						n := int(alignUp(size, BlockSize) - size)
						if n < batchHeaderSize {
							n += BlockSize
						}
						b = alignedBatch(1+rng.Intn(4), n, byte(step))
					default:
						b = makeBatch(batchSpec{records: 1 + rng.Intn(4), bodyBytes: rng.Intn(9000)}, byte(step))
					}
					end, size := o.l.LogEndOffset(), o.l.Size()
					_, err := o.l.Append(b, t0)
					if errors.Is(err, ErrTailFull) {
						if o.l.LogEndOffset() != end || o.l.Size() != size {
							t.Fatal("a refused append changed the log")
						}
						continue
					}
					if err != nil {
						t.Fatalf("append: %v", err)
					}
					o.m.add(b)
				case k < 6:
					submit(o)
				case k < 9:
					if len(dev.pieces) > 0 {
						complete()
					}
				default:
					if rng.Intn(4) == 0 {
						if err := o.l.Sync(); err != nil {
							t.Fatal(err)
						}
						if o.l.SyncedOffset() != o.written {
							t.Fatalf("synced %d, written %d", o.l.SyncedOffset(), o.written)
						}
					}
					readUpTo(t, o.l, &o.m, o.l.WrittenOffset())
				}
				for _, o := range logs {
					checkTail(t, o.l)
				}
			}
			for done := false; !done; {
				for len(dev.pieces) > 0 {
					complete()
				}
				done = true
				for _, o := range logs {
					if o.l.WritesPending() {
						submit(o)
						done = false
					}
				}
			}
			if multiPiece == 0 || maxInFlight < 2 {
				t.Fatalf("test too weak: %d writes of several pieces, at most %d in flight", multiPiece, maxInFlight)
			}
			t.Logf("%d writes of several pieces, up to %d in flight, %d evictions", multiPiece, maxInFlight, cache.Evictions)
			for i, o := range logs {
				if !o.l.WritesIdle() || o.l.WrittenOffset() != o.l.LogEndOffset() {
					t.Fatalf("log %d: idle %v written %d end %d", i, o.l.WritesIdle(), o.l.WrittenOffset(), o.l.LogEndOffset())
				}
				if err := o.l.Close(); err != nil {
					t.Fatal(err)
				}
				cp, _ := o.l.Checkpoint()
				r := openOrFatal(t, sc.fs, o.l.Dir(), Config{}, cp)
				if got := readAll(t, r); !bytes.Equal(got, o.m.content) || !bytes.Equal(withOffsets(o.m.content, 0), o.m.content) {
					t.Fatalf("log %d: file content differs from the appended batches", i)
				}
				checkFileSizes(t, sc.fs, r, int64(len(o.m.content)))
				r.Close()
			}
		})
	}
}

// Logs sharing a small cache take chunks from each other; every read is
// right, from memory above a log's cache and from the file below it.
func TestDirectSharedTailCacheEvictsAndReloads(t *testing.T) {
	rng, _ := seedRand(t)
	for _, sc := range storageCases(t) {
		t.Run(sc.name, func(t *testing.T) {
			chunks := 4 + rng.Intn(4)
			cache := testCache(t, chunks)
			n := chunks + rng.Intn(3) // at most a chunk each: logs lose their last one
			logs := make([]*Log, n)
			models := make([]tailModel, n)
			cfgs := make([]Config, n)
			for i := range logs {
				cfgs[i] = Config{SegmentBytes: 200_000 + rng.Int63n(800_000), IndexIntervalBytes: 1 + rng.Intn(4096), Tail: cache}
				logs[i] = openOrFatal(t, sc.fs, filepath.Join(sc.root, fmt.Sprintf("t-%d", i)), cfgs[i], Checkpoint{})
			}
			memReads, fileReads, activeFileReads := 0, 0, 0
			for step := 0; step < 800; step++ {
				i := rng.Intn(n)
				if rng.Intn(3) == 0 {
					i = 0 // one busy log, taking chunks from the others
				}
				if rng.Intn(100) == 0 { // a restart of one log, in direct mode again
					if err := logs[i].Close(); err != nil {
						t.Fatal(err)
					}
					cp, _ := logs[i].Checkpoint()
					logs[i] = openOrFatal(t, sc.fs, logs[i].Dir(), cfgs[i], cp)
				}
				l, m := logs[i], &models[i]
				b := makeBatch(batchSpec{records: 1 + rng.Intn(5), bodyBytes: rng.Intn(20_000)}, byte(step))
				res := mustAppend(t, l, b)
				m.add(b)
				if len(l.tail.chunks) == 0 {
					t.Fatal("a log just appended to holds no chunk")
				}
				for _, x := range logs {
					checkTail(t, x)
				}

				// The newest batch is in the cache.
				hits := cache.Hits
				r, err := l.Read(res.BaseOffset, 1<<20, true, l.LogEndOffset())
				if err != nil {
					t.Fatal(err)
				}
				if r.Mem == nil || r.Seg != nil || cache.Hits != hits+1 {
					t.Fatalf("read of the newest batch: mem %v, hits %d -> %d", r.Mem != nil, hits, cache.Hits)
				}
				m.checkRead(t, r)
				r.Release()

				// A random read of a random log.
				j := rng.Intn(n)
				l, m = logs[j], &models[j]
				if l.LogEndOffset() == 0 {
					continue
				}
				off := l.LogStartOffset() + Offset(rng.Int63n(int64(l.LogEndOffset()-l.LogStartOffset())))
				seg := l.segs[l.segmentFor(off)]
				active := seg == l.active()
				hits, misses := cache.Hits, cache.Misses
				r, err = l.Read(off, 1+rng.Intn(100_000), true, l.LogEndOffset())
				if err != nil {
					t.Fatal(err)
				}
				m.checkRead(t, r)
				cached := active && int64(r.Pos) >= l.tail.valid
				switch {
				case r.Mem != nil:
					if !cached || cache.Hits != hits+1 || r.Seg != nil {
						t.Fatalf("read at %d from memory: active %v pos %d, cache from %d", off, active, r.Pos, l.tail.valid)
					}
					memReads++
				default:
					if cached || r.Seg == nil || r.File != seg.file {
						t.Fatalf("read at %d from the file: active %v pos %d, cache from %d", off, active, r.Pos, l.tail.valid)
					}
					if active {
						if cache.Misses != misses+1 {
							t.Fatal("a read below the cache was not counted as a miss")
						}
						activeFileReads++
					}
					fileReads++
				}
				r.Release()
			}
			t.Logf("%d logs, %d chunks: %d evictions, %d restores, %d reloads, %d hits, %d misses; random reads: %d memory, %d file (%d of the active segment)",
				n, cache.Bytes()/ChunkSize, cache.Evictions, cache.Restores, cache.Reloads, cache.Hits, cache.Misses, memReads, fileReads, activeFileReads)
			// A log that lost its last chunk keeps a copy of its partial
			// last block: the next append puts it back without a read. A
			// reopened log has no copy and reads its block back once.
			if cache.Evictions == 0 || cache.Restores == 0 {
				t.Fatalf("evictions %d restores %d: want both", cache.Evictions, cache.Restores)
			}
			if memReads == 0 || activeFileReads == 0 {
				t.Fatalf("reads: %d from memory, %d from the file below the cache", memReads, activeFileReads)
			}
			for i, l := range logs {
				if got := readAll(t, l); !bytes.Equal(got, models[i].content) {
					t.Fatalf("log %d: content differs", i)
				}
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
			}
			if cache.Free() != cache.Bytes() {
				t.Fatalf("%d of %d cache bytes free after every log closed", cache.Free(), cache.Bytes())
			}
			for i, l := range logs {
				cp, _ := l.Checkpoint()
				r := openOrFatal(t, sc.fs, l.Dir(), Config{}, cp)
				if got := readAll(t, r); !bytes.Equal(got, models[i].content) {
					t.Fatalf("log %d: content differs after reopening", i)
				}
				checkFileSizes(t, sc.fs, r, int64(len(models[i].content)))
				r.Close()
			}
		})
	}
}

// With every chunk held by writes in flight an append fails with
// ErrTailFull and changes nothing; once the writes below complete, in order,
// it succeeds.
func TestDirectTailFullUntilWritesComplete(t *testing.T) {
	rng, _ := seedRand(t)
	const chunks = 4
	for _, sc := range storageCases(t) {
		for _, other := range []bool{false, true} {
			name := sc.name + "/same log"
			if other {
				name = sc.name + "/other log"
			}
			t.Run(name, func(t *testing.T) {
				cache := testCache(t, chunks)
				dir := filepath.Join(sc.root, "a")
				if other {
					dir += "-other"
				}
				l := openOrFatal(t, sc.fs, dir, Config{Tail: cache}, Checkpoint{})
				var m tailModel
				var writes [][]DirectWrite
				for i := 0; i < chunks*ChunkSize/BlockSize; i++ {
					b := alignedBatch(1, BlockSize, byte(i))
					if _, err := l.Append(b, t0); err != nil {
						t.Fatalf("append %d: %v", i, err)
					}
					m.add(b)
					ws := l.PendingWrites(nil, false)
					if len(ws) != 1 {
						t.Fatalf("write %d: %d pieces", i, len(ws))
					}
					writes = append(writes, ws)
				}
				if cache.Free() != 0 {
					t.Fatalf("%d bytes free", cache.Free())
				}
				target, tm := l, &m
				var om tailModel
				if other {
					target = openOrFatal(t, sc.fs, dir+"b", Config{Tail: cache}, Checkpoint{})
					tm = &om
				}
				b := makeBatch(batchSpec{records: 3, bodyBytes: 500}, 0xaa)
				try := func() error {
					end, size, written := target.LogEndOffset(), target.Size(), target.WrittenOffset()
					_, err := target.Append(b, t0)
					if err == ErrTailFull && (target.LogEndOffset() != end || target.Size() != size || target.WrittenOffset() != written || target.WritesPending()) {
						t.Fatal("a refused append changed the log")
					}
					return err
				}
				if err := try(); err != ErrTailFull {
					t.Fatalf("append with every chunk in flight: %v", err)
				}
				// Everything but the first write completes, in random order:
				// nothing below is written, nothing can be given up.
				rest := writes[1:]
				rng.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
				for _, ws := range rest {
					if _, err := ws[0].File.WriteAt(ws[0].Buf, ws[0].Off); err != nil {
						t.Fatal(err)
					}
					l.WriteDone(ws[0].Seq, nil)
				}
				if l.WrittenOffset() != 0 {
					t.Fatalf("written %d with the first write in flight", l.WrittenOffset())
				}
				if err := try(); err != ErrTailFull {
					t.Fatalf("append with the oldest write in flight: %v", err)
				}
				readUpTo(t, l, &m, l.LogEndOffset()) // all still in memory
				evictions := cache.Evictions
				w := writes[0][0]
				if _, err := w.File.WriteAt(w.Buf, w.Off); err != nil {
					t.Fatal(err)
				}
				l.WriteDone(w.Seq, nil)
				if l.WrittenOffset() != l.LogEndOffset() {
					t.Fatalf("written %d of %d", l.WrittenOffset(), l.LogEndOffset())
				}
				if err := try(); err != nil {
					t.Fatalf("append after the writes completed: %v", err)
				}
				tm.add(b)
				if cache.Evictions == evictions {
					t.Fatal("no chunk was given up")
				}
				drive(t, target)
				for _, x := range []struct {
					l *Log
					m *tailModel
				}{{l, &m}, {target, tm}} {
					if got := readAll(t, x.l); !bytes.Equal(got, x.m.content) {
						t.Fatal("content differs")
					}
				}
				if other {
					target.Close()
				}
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
				r := openOrFatal(t, sc.fs, dir, Config{}, Checkpoint{})
				defer r.Close()
				if got := readAll(t, r); !bytes.Equal(got, m.content) {
					t.Fatal("file content differs")
				}
			})
		}
	}
}

// A crash with direct writes in flight, completed out of order, keeps what
// was synced, keeps only a prefix of what was appended, and the log goes on.
func TestDirectCrashKeepsSyncedBatches(t *testing.T) {
	rng, seed := seedRand(t)
	for round := 0; round < 60; round++ {
		mem := storage.NewMem()
		cfg := Config{SegmentBytes: int64(1600 + rng.Intn(20_000)), IndexIntervalBytes: 1 + rng.Intn(800)}
		dcfg := cfg
		dcfg.Tail = testCache(t, 2+rng.Intn(7))
		l := openOrFatal(t, mem, "d/t-0", dcfg, Checkpoint{})
		dev := &fakeDevice{}
		var m tailModel
		var cp Checkpoint
		n := 50 + rng.Intn(200)
		for i := 0; i < n; i++ {
			b := makeBatch(batchSpec{records: 1 + rng.Intn(10), bodyBytes: rng.Intn(1500), maxTs: int64(i)}, byte(i))
			dev.appendTo(t, rng, l, b)
			m.add(b)
			if rng.Intn(3) > 0 {
				dev.submit(l)
			}
			for k := rng.Intn(3); k > 0 && len(dev.pieces) > 0; k-- {
				dev.complete(t, rng.Intn(len(dev.pieces)))
			}
			if len(dev.pieces) > 0 && rng.Intn(4) == 0 {
				dev.pieces[rng.Intn(len(dev.pieces))].write(t) // on disk, completion not seen yet
			}
			switch rng.Intn(10) {
			case 0:
				syncViaTargets(t, l)
			case 1:
				var err error
				if cp, err = l.Checkpoint(); err != nil {
					t.Fatal(err)
				}
			}
			checkTail(t, l)
			if l.SyncedOffset() > l.WrittenOffset() {
				t.Fatalf("round %d: synced %d past the written end %d", round, l.SyncedOffset(), l.WrittenOffset())
			}
		}
		synced := l.SyncedOffset()
		syncedBytes := m.posOf(t, synced)
		crashed := mem.CrashTorn(seed + int64(round))
		if rng.Intn(2) == 0 {
			cp.RecoveryPoint = 0 // the shard's checkpoint may be older
		}
		rcfg := cfg
		if rng.Intn(2) == 0 {
			rcfg.Tail = testCache(t, 2+rng.Intn(7))
		}
		r, err := Open(crashed, "d/t-0", rcfg, cp, t0)
		if err != nil {
			t.Fatalf("round %d: open after crash (direct %v, cp %+v): %v", round, rcfg.Tail != nil, cp, err)
		}
		got := readAll(t, r)
		if r.LogEndOffset() < synced || len(got) < syncedBytes {
			t.Fatalf("round %d: lost synced data: end %d < synced %d", round, r.LogEndOffset(), synced)
		}
		if !bytes.Equal(got, m.content[:len(got)]) {
			t.Fatalf("round %d: recovered data is not a prefix of what was appended", round)
		}
		b := makeBatch(batchSpec{records: 2, bodyBytes: 30}, 9)
		if res := mustAppend(t, r, b); res.BaseOffset != r.LogEndOffset()-2 {
			t.Fatalf("round %d: append after recovery at %d", round, res.BaseOffset)
		}
		if err := r.Sync(); err != nil {
			t.Fatal(err)
		}
		r2 := openOrFatal(t, crashed.Crash(), "d/t-0", cfg, Checkpoint{})
		if got2 := readAll(t, r2); !bytes.Equal(got2, append(got, b...)) {
			t.Fatalf("round %d: second crash lost data", round)
		}
	}
}

// A data directory moves between the write modes: direct mode leaves no
// padding behind, and picks up a page-cache log's partial last block.
func TestDirectDataDirectoryMovesBetweenModes(t *testing.T) {
	rng, _ := seedRand(t)
	for _, sc := range storageCases(t) {
		t.Run(sc.name, func(t *testing.T) {
			cfg := Config{SegmentBytes: 20_000, IndexIntervalBytes: 512}
			dcfg := cfg
			dcfg.Tail = testCache(t, 4)
			appendSome := func(l *Log, m *tailModel, k int) {
				for i := 0; i < k; i++ {
					b := makeBatch(batchSpec{records: 1 + rng.Intn(5), bodyBytes: rng.Intn(3000), maxTs: int64(i)}, byte(i))
					mustAppend(t, l, b)
					m.add(b)
				}
			}

			// Direct, then page cache.
			dir := filepath.Join(sc.root, "direct-first")
			var m tailModel
			l := openOrFatal(t, sc.fs, dir, dcfg, Checkpoint{})
			appendSome(l, &m, 40+rng.Intn(40))
			for l.active().size%BlockSize == 0 { // the last block partial: padding to cut
				appendSome(l, &m, 1)
			}
			// Padded to a block, and allocated ahead of the writer.
			if size, _ := sc.fs.Stat(segmentName(dir, l.active().base, logSuffix)); size < alignUp(l.active().size, BlockSize) {
				t.Fatalf("active segment file of %d bytes before Close, want at least the padded %d", size, alignUp(l.active().size, BlockSize))
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			cp, _ := l.Checkpoint()
			p := openOrFatal(t, sc.fs, dir, cfg, cp)
			if p.SegmentCount() < 3 {
				t.Fatalf("%d segments", p.SegmentCount())
			}
			checkFileSizes(t, sc.fs, p, int64(len(m.content)))
			if p.LogEndOffset() != l.LogEndOffset() {
				t.Fatalf("size %d end %d, want %d %d", p.Size(), p.LogEndOffset(), len(m.content), l.LogEndOffset())
			}
			if got := readAll(t, p); !bytes.Equal(got, m.content) {
				t.Fatal("content differs in page-cache mode")
			}
			appendSome(p, &m, 5) // and goes on
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}

			// Page cache, then direct.
			dir = filepath.Join(sc.root, "page-cache-first")
			m = tailModel{}
			p = openOrFatal(t, sc.fs, dir, cfg, Checkpoint{})
			appendSome(p, &m, 40+rng.Intn(40))
			for p.active().size%BlockSize == 0 || p.active().size > 15_000 {
				appendSome(p, &m, 1) // the first direct append goes into the partial block
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			cp, _ = p.Checkpoint()
			l = openOrFatal(t, sc.fs, dir, dcfg, cp)
			if got := readAll(t, l); !bytes.Equal(got, m.content) {
				t.Fatal("content differs in direct mode")
			}
			reloads := dcfg.Tail.Reloads
			b := makeBatch(batchSpec{records: 2, bodyBytes: 200}, 0xee)
			mustAppend(t, l, b)
			m.add(b)
			if dcfg.Tail.Reloads != reloads+1 {
				t.Fatal("the partial last block was not read back in")
			}
			appendSome(l, &m, 30+rng.Intn(30))
			if got := readAll(t, l); !bytes.Equal(got, m.content) {
				t.Fatal("content differs after direct appends")
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			cp, _ = l.Checkpoint()
			p = openOrFatal(t, sc.fs, dir, cfg, cp)
			defer p.Close()
			checkFileSizes(t, sc.fs, p, int64(len(m.content)))
			if got := readAll(t, p); !bytes.Equal(got, m.content) {
				t.Fatal("content differs back in page-cache mode")
			}
		})
	}
}

// paddedRollCase builds, on a MemFS, a log whose first segment was synced
// in direct mode while its last block was partial, then rolled: a crash
// finds it ending in zero padding, and the next segment synced.
type paddedRollCase struct {
	mem     *storage.MemFS
	l       *Log
	aEnd    int64 // logical size of the rolled segment
	content []byte
	cp      Checkpoint // taken after the roll
}

const paddedDir = "d/t-0"

func buildPaddedRoll(t *testing.T) paddedRollCase {
	t.Helper()
	mem := storage.NewMem()
	cfg := Config{SegmentBytes: 3000, IndexIntervalBytes: 100, Tail: testCache(t, 4)}
	l := openOrFatal(t, mem, paddedDir, cfg, Checkpoint{})
	var m tailModel
	for i := 0; i < 2; i++ {
		b := makeBatch(batchSpec{records: 2, bodyBytes: 500 - batchHeaderSize}, byte(i))
		mustAppend(t, l, b)
		m.add(b)
	}
	if err := l.Sync(); err != nil { // the first segment, padded, is durable
		t.Fatal(err)
	}
	for i, body := range []int{2100, 340, 340} { // the first rolls
		b := makeBatch(batchSpec{records: 3, bodyBytes: body}, byte(10+i))
		mustAppend(t, l, b)
		m.add(b)
	}
	if l.SegmentCount() != 2 {
		t.Fatalf("%d segments", l.SegmentCount())
	}
	cp, err := l.Checkpoint()
	if err != nil || cp.RecoveryPoint != l.LogEndOffset() {
		t.Fatalf("checkpoint %+v %v", cp, err)
	}
	return paddedRollCase{mem: mem, l: l, aEnd: 1000, content: m.content, cp: cp}
}

// crashWithPadding crashes c's file system and checks (or makes, when the
// log made the cut durable) the rolled segment end in zero padding.
func (c paddedRollCase) crashWithPadding(t *testing.T, force bool) *storage.MemFS {
	t.Helper()
	crashed := c.mem.Crash()
	name := segmentName(paddedDir, 0, logSuffix)
	size, err := crashed.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	if size == c.aEnd && force {
		f, err := crashed.OpenFile(name, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteAt(make([]byte, alignUp(c.aEnd, BlockSize)-c.aEnd), c.aEnd)
		f.Datasync()
		f.Close()
		size = alignUp(c.aEnd, BlockSize)
	}
	if size < c.aEnd {
		t.Fatalf("rolled segment of %d bytes after the crash", size)
	}
	if size, _ := crashed.Stat(segmentName(paddedDir, 4, logSuffix)); size < int64(len(c.content))-c.aEnd {
		t.Fatalf("second segment of %d bytes after the crash", size)
	}
	return crashed
}

func checkPaddedRecovery(t *testing.T, crashed *storage.MemFS, c paddedRollCase, cfg Config, cp Checkpoint) {
	t.Helper()
	r, err := Open(crashed, paddedDir, cfg, cp, t0)
	if err != nil {
		t.Fatalf("open (cp %+v): %v", cp, err)
	}
	defer r.Close()
	if r.SegmentCount() != 2 || r.LogEndOffset() != c.l.LogEndOffset() {
		t.Fatalf("after recovery (cp %+v): %d segments, end %d; want 2 segments, end %d", cp, r.SegmentCount(), r.LogEndOffset(), c.l.LogEndOffset())
	}
	if got := readAll(t, r); !bytes.Equal(got, c.content) {
		t.Fatalf("after recovery (cp %+v): content differs", cp)
	}
	if r.Size() != int64(len(c.content)) {
		t.Fatalf("after recovery (cp %+v): size %d, want %d", cp, r.Size(), len(c.content))
	}
	checkFileSizes(t, crashed, r, int64(len(c.content)))
	b := makeBatch(batchSpec{records: 1, bodyBytes: 10}, 1)
	if res := mustAppend(t, r, b); res.BaseOffset != c.l.LogEndOffset() {
		t.Fatalf("append after recovery at %d", res.BaseOffset)
	}
}

// Recovery takes the zero padding a direct-mode segment can keep after a
// roll and a crash for padding: the next segment's data stays.
func TestDirectRolledSegmentPaddingAfterCrash(t *testing.T) {
	for _, direct := range []bool{false, true} {
		t.Run(fmt.Sprintf("reopen direct %v", direct), func(t *testing.T) {
			c := buildPaddedRoll(t)
			cfg := Config{SegmentBytes: 3000, IndexIntervalBytes: 100}
			if direct {
				cfg.Tail = testCache(t, 2)
			}
			crashed := c.crashWithPadding(t, true)
			// An older checkpoint: the padded segment is scanned.
			checkPaddedRecovery(t, crashed, c, cfg, Checkpoint{})
		})
	}
	t.Run("not zero", func(t *testing.T) {
		// Anything but zeros after the rolled segment's batches is a torn
		// tail: the log ends there.
		c := buildPaddedRoll(t)
		crashed := c.crashWithPadding(t, true)
		f, err := crashed.OpenFile(segmentName(paddedDir, 0, logSuffix), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteAt([]byte{1}, 3000)
		f.Close()
		r := openOrFatal(t, crashed, paddedDir, Config{SegmentBytes: 3000}, Checkpoint{})
		defer r.Close()
		if r.SegmentCount() != 1 || r.Size() != c.aEnd || r.LogEndOffset() != 4 {
			t.Fatalf("%d segments, size %d, end %d", r.SegmentCount(), r.Size(), r.LogEndOffset())
		}
		if got := readAll(t, r); !bytes.Equal(got, c.content[:c.aEnd]) {
			t.Fatal("content differs")
		}
	})
}

// The cut of a rolled segment's zero padding is made durable even when the
// segment's data already was: recovery does not look at segments below the
// recovery point, so otherwise a checkpoint taken after the roll (or a
// clean Close) would leave the padding in the segment after a crash, and
// reads of it would fail with ErrCorruptSegment. (A bug these tests found.)
func TestDirectRolledPaddingCutIsDurable(t *testing.T) {
	t.Run("checkpoint after the roll", func(t *testing.T) {
		c := buildPaddedRoll(t)
		crashed := c.crashWithPadding(t, false)
		checkPaddedRecovery(t, crashed, c, Config{SegmentBytes: 3000, IndexIntervalBytes: 100}, c.cp)
	})
	t.Run("power loss after a clean close", func(t *testing.T) {
		c := buildPaddedRoll(t)
		if err := c.l.Close(); err != nil {
			t.Fatal(err)
		}
		cp, _ := c.l.Checkpoint()
		crashed := c.crashWithPadding(t, false)
		checkPaddedRecovery(t, crashed, c, Config{SegmentBytes: 3000, IndexIntervalBytes: 100}, cp)
	})
}

// An append larger than the whole cache goes through the page cache, once
// the direct writer is idle.
func TestDirectAppendLargerThanTailCache(t *testing.T) {
	for _, sc := range storageCases(t) {
		t.Run(sc.name, func(t *testing.T) {
			cache := testCache(t, 2)
			dir := filepath.Join(sc.root, "t-0")
			l := openOrFatal(t, sc.fs, dir, Config{Tail: cache}, Checkpoint{})
			var m tailModel
			small := makeBatch(batchSpec{records: 2, bodyBytes: 1000}, 1)
			mustAppend(t, l, small)
			m.add(small)
			small = makeBatch(batchSpec{records: 2, bodyBytes: 1000}, 2)
			if _, err := l.Append(small, t0); err != nil {
				t.Fatal(err)
			}
			m.add(small)
			ws := l.PendingWrites(nil, false) // in flight

			big := makeBatch(batchSpec{records: 50, bodyBytes: 200 << 10}, 3)
			end := l.LogEndOffset()
			if _, err := l.Append(big, t0); err != ErrTailBusy {
				t.Fatalf("large append with a write in flight: %v", err)
			}
			if l.LogEndOffset() != end {
				t.Fatal("a refused append changed the log")
			}
			for _, w := range ws {
				w.File.WriteAt(w.Buf, w.Off)
				l.WriteDone(w.Seq, nil)
			}
			res, err := l.Append(big, t0)
			if err != nil {
				t.Fatalf("large append: %v", err)
			}
			m.add(big)
			if l.WrittenOffset() != l.LogEndOffset() || !l.WritesIdle() || l.WritesPending() {
				t.Fatalf("written %d of %d after a page-cache append", l.WrittenOffset(), l.LogEndOffset())
			}
			r, err := l.Read(res.BaseOffset, 1<<20, true, l.LogEndOffset())
			if err != nil || r.Len != len(big) {
				t.Fatalf("read: %v, %d bytes", err, r.Len)
			}
			m.checkRead(t, r)
			r.Release()
			// Direct appends go on after it, into its partial last block.
			for i := 0; i < 20; i++ {
				b := makeBatch(batchSpec{records: 1, bodyBytes: 3000}, byte(10+i))
				mustAppend(t, l, b)
				m.add(b)
			}
			if cache.Reloads == 0 {
				t.Fatal("the block after the large batch was not read back")
			}
			if got := readAll(t, l); !bytes.Equal(got, m.content) {
				t.Fatal("content differs")
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			cp, _ := l.Checkpoint()
			p := openOrFatal(t, sc.fs, dir, Config{}, cp)
			defer p.Close()
			checkFileSizes(t, sc.fs, p, int64(len(m.content)))
			if got := readAll(t, p); !bytes.Equal(got, m.content) {
				t.Fatal("content differs after reopening")
			}
		})
	}
}

// An append smaller than the cache but spanning more chunks than the cache
// has, counted from the chunk holding the log's end, goes through the page
// cache instead of being refused with ErrTailFull forever. (A bug these
// tests found.)
func TestDirectAppendSpanningMoreChunksThanTheCache(t *testing.T) {
	cache := testCache(t, 2)
	l := openOrFatal(t, storage.NewMem(), "d", Config{Tail: cache}, Checkpoint{})
	mustAppend(t, l, makeBatch(batchSpec{bodyBytes: 60 << 10}, 1)) // the end at 60 KiB
	b := makeBatch(batchSpec{bodyBytes: 70 << 10}, 2)              // 70 KiB < 128 KiB - 8 KiB
	for i := 0; i < 3; i++ {
		drive(t, l)
		if !l.WritesIdle() {
			t.Fatal("writer not idle")
		}
		if _, err := l.Append(b, t0); err == nil {
			return
		} else if err != ErrTailFull {
			t.Fatal(err)
		}
	}
	t.Fatalf("append of %d bytes at %d refused with ErrTailFull with the writer idle and nothing else in the cache", len(b), l.Size())
}

// A failed direct write latches the log's error; WrittenOffset stays.
func TestDirectWriteFailureIsSticky(t *testing.T) {
	l := openOrFatal(t, storage.NewMem(), "d", Config{Tail: testCache(t, 2)}, Checkpoint{})
	mustAppend(t, l, makeBatch(batchSpec{records: 2, bodyBytes: 100}, 1))
	if _, err := l.Append(makeBatch(batchSpec{records: 2, bodyBytes: 100}, 2), t0); err != nil {
		t.Fatal(err)
	}
	ws := l.PendingWrites(nil, false)
	if len(ws) != 1 {
		t.Fatalf("%d pieces", len(ws))
	}
	l.WriteDone(ws[0].Seq, unix.EIO)
	if l.WrittenOffset() != 2 || !errors.Is(l.Err(), unix.EIO) {
		t.Fatalf("written %d err %v", l.WrittenOffset(), l.Err())
	}
	if _, err := l.Append(makeBatch(batchSpec{}, 3), t0); !errors.Is(err, unix.EIO) {
		t.Fatalf("append after a failed write: %v", err)
	}
	if ws := l.PendingWrites(nil, false); len(ws) != 0 || l.WritesPending() {
		t.Fatal("writes after a failure")
	}
}

// Pre-zeroing: the space allocated ahead of the writer is zeroed by writes
// from the cache's zero buffer, and no data write touches a block while a
// zero write of it is in flight (the device could complete them in either
// order and the zeros land last).
func TestDirectPreZeroingNeverRacesData(t *testing.T) {
	mem := storage.NewMem()
	cache := testZeroingCache(t, 16)
	l := mustOpen(t, mem, "d/t-0", Config{Tail: cache}, Checkpoint{})
	var all []byte
	var zeros []DirectWrite
	sawRefusal := false
	for i := 0; i < 400; i++ {
		b := makeBatch(batchSpec{records: 2, bodyBytes: 20000 + i}, byte(i))
		_, err := l.Append(b, t0)
		if err == ErrTailFull {
			// The data waits behind the zero write in flight and fills the
			// cache: the shard would wait for completions, as here.
			sawRefusal = true
			for _, z := range zeros {
				z.File.WriteAt(z.Buf, z.Off)
				l.WriteDone(zeroSeq, nil)
			}
			zeros = zeros[:0]
			drive(t, l)
			_, err = l.Append(b, t0)
		}
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		all = append(all, b...)
		for {
			ws := l.PendingWrites(nil, false)
			if len(ws) == 0 {
				if l.WritesPending() && len(zeros) > 0 {
					sawRefusal = true
				}
				break
			}
			for _, w := range ws {
				if w.Seq == zeroSeq {
					if !bytes.Equal(w.Buf, make([]byte, len(w.Buf))) {
						t.Fatal("a zero write of non-zero bytes")
					}
					for _, z := range zeros {
						if w.Off < z.Off+int64(len(z.Buf)) && z.Off < w.Off+int64(len(w.Buf)) {
							t.Fatal("two zero writes of one block in flight")
						}
					}
					zeros = append(zeros, w) // completed later, out of order
					continue
				}
				for _, z := range zeros {
					if w.Off < z.Off+int64(len(z.Buf)) && z.Off < w.Off+int64(len(w.Buf)) {
						t.Fatalf("data write [%d,+%d) while the zero write [%d,+%d) is in flight", w.Off, len(w.Buf), z.Off, len(z.Buf))
					}
				}
				if _, err := w.File.WriteAt(w.Buf, w.Off); err != nil {
					t.Fatal(err)
				}
				l.WriteDone(w.Seq, nil)
			}
		}
		// Complete the zero writes rarely (every ~2 MiB of appends), so
		// that the writer catches up with one in flight.
		if i%100 == 99 {
			for j := len(zeros) - 1; j >= 0; j-- {
				if _, err := zeros[j].File.WriteAt(zeros[j].Buf, zeros[j].Off); err != nil {
					t.Fatal(err)
				}
				l.WriteDone(zeroSeq, nil)
			}
			zeros = zeros[:0]
			drive(t, l)
		}
	}
	for _, z := range zeros {
		z.File.WriteAt(z.Buf, z.Off)
		l.WriteDone(zeroSeq, nil)
	}
	drive(t, l)
	if !sawRefusal {
		t.Fatal("no data write ever waited for pre-zeroing: the test did not exercise it")
	}
	if l.WrittenOffset() != l.LogEndOffset() {
		t.Fatalf("written %d of %d", l.WrittenOffset(), l.LogEndOffset())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	r := mustOpen(t, mem, "d/t-0", Config{}, Checkpoint{})
	if got := readAll(t, r); !bytes.Equal(got, withOffsets(all, 0)) {
		t.Fatal("content differs after pre-zeroed writes")
	}
}

// A log whose direct write failed gives its chunks back once no write
// reads them: a healthy log sharing the cache must not be refused
// forever. (Found in review.)
func TestDirectFailedLogReleasesChunks(t *testing.T) {
	cache := testCache(t, 4)
	fs := storage.NewMem()
	a := openOrFatal(t, fs, "a", Config{Tail: cache}, Checkpoint{})
	b := openOrFatal(t, fs, "b", Config{Tail: cache}, Checkpoint{})
	for i := 0; i < 3; i++ {
		if _, err := a.Append(makeBatch(batchSpec{bodyBytes: 60 << 10}, byte(i)), t0); err != nil {
			t.Fatal(err)
		}
	}
	for _, w := range a.PendingWrites(nil, false) {
		a.WriteDone(w.Seq, errors.New("injected EIO"))
	}
	if a.Err() == nil {
		t.Fatal("the failed write did not latch the log's error")
	}
	for i := 0; i < 3; i++ {
		if _, err := b.Append(makeBatch(batchSpec{bodyBytes: 100 << 10}, 9), t0); err != nil {
			t.Fatalf("healthy log beside a failed one: %v", err)
		}
		drive(t, b)
	}
}

// An append never changes the bytes of a write in flight: the partial last
// block is written from a bounce copy, so the next append can fill the
// block in the cache meanwhile. (A device, or a layer computing checksums
// or parity from the buffer, may read it any time until completion. Found
// in review.)
func TestDirectAppendLeavesInflightBuffersAlone(t *testing.T) {
	for _, size := range []int{1000, 5000, 70000} {
		l := openOrFatal(t, storage.NewMem(), fmt.Sprintf("d%d", size), Config{Tail: testZeroingCache(t, 16)}, Checkpoint{})
		var all []byte
		var inflight []DirectWrite
		var snaps [][]byte
		for i := 0; i < 20; i++ {
			b := makeBatch(batchSpec{bodyBytes: size}, byte(i))
			if _, err := l.Append(b, t0); err != nil {
				t.Fatal(err)
			}
			all = append(all, b...)
			for j, w := range inflight {
				if !bytes.Equal(snaps[j], w.Buf) {
					t.Fatalf("batch size %d: append %d changed the buffer of piece [%d,+%d) in flight", size, i, w.Off, len(w.Buf))
				}
			}
			ws := l.PendingWrites(nil, false)
			if len(ws) == 0 {
				// The next write waits for the one in flight: complete it.
				for _, w := range inflight {
					w.File.WriteAt(w.Buf, w.Off)
					l.WriteDone(w.Seq, nil)
				}
				inflight, snaps = inflight[:0], snaps[:0]
				ws = l.PendingWrites(nil, false)
			}
			for _, w := range ws {
				inflight = append(inflight, w)
				snaps = append(snaps, bytes.Clone(w.Buf))
			}
		}
		for _, w := range inflight {
			w.File.WriteAt(w.Buf, w.Off)
			l.WriteDone(w.Seq, nil)
		}
		drive(t, l)
		if got := readAll(t, l); !bytes.Equal(got, withOffsets(all, 0)) {
			t.Fatalf("batch size %d: content differs", size)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// With pre-zeroing off (--direct-prezero=false) the zero source's chunks
// hold data instead, and no write is a zero write.
func TestDirectNoPreZero(t *testing.T) {
	mem := storage.NewMem()
	cache := testZeroingCache(t, 16)
	before := cache.Bytes()
	cache.NoPreZero()
	if cache.Bytes() <= before || cache.Free() != cache.Bytes() {
		t.Fatalf("cache %d bytes (%d free) after NoPreZero, %d before: the zero source should have joined it", cache.Bytes(), cache.Free(), before)
	}
	l := mustOpen(t, mem, "d/t-0", Config{Tail: cache}, Checkpoint{})
	var all []byte
	for i := 0; i < 300; i++ {
		b := makeBatch(batchSpec{records: 2, bodyBytes: 20000 + i}, byte(i))
		if _, err := l.Append(b, t0); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		all = append(all, b...)
		for ws := l.PendingWrites(nil, false); len(ws) > 0; ws = l.PendingWrites(nil, false) {
			for _, w := range ws {
				if w.Seq == zeroSeq {
					t.Fatalf("a zero write [%d,+%d) with pre-zeroing off", w.Off, len(w.Buf))
				}
				if _, err := w.File.WriteAt(w.Buf, w.Off); err != nil {
					t.Fatal(err)
				}
				l.WriteDone(w.Seq, nil)
			}
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	r := mustOpen(t, mem, "d/t-0", Config{}, Checkpoint{})
	if got := readAll(t, r); !bytes.Equal(got, withOffsets(all, 0)) {
		t.Fatal("content differs")
	}
}
