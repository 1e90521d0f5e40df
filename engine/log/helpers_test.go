package log

import (
	"encoding/binary"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluice-broker/sluice/engine/storage"
)

var t0 = time.Unix(1_700_000_000, 0)

// batchSpec describes a test batch.
type batchSpec struct {
	records   int
	bodyBytes int
	maxTs     int64
	pid       int64
	epoch     int16
	seq       int32
}

// makeBatch builds a well-framed v2 batch with a valid CRC. The records
// section is filler: the log never parses records.
func makeBatch(s batchSpec, fill byte) []byte {
	if s.records == 0 {
		s.records = 1
	}
	if s.pid == 0 {
		s.pid, s.epoch, s.seq = -1, -1, -1
	}
	b := make([]byte, batchHeaderSize+s.bodyBytes)
	binary.BigEndian.PutUint32(b[offBatchLength:], uint32(len(b)-batchFrameSize))
	b[offMagic] = batchMagic
	binary.BigEndian.PutUint32(b[offLastOffsetDelta:], uint32(s.records-1))
	binary.BigEndian.PutUint64(b[27:], uint64(s.maxTs))
	binary.BigEndian.PutUint64(b[offMaxTimestamp:], uint64(s.maxTs))
	binary.BigEndian.PutUint64(b[offProducerID:], uint64(s.pid))
	binary.BigEndian.PutUint16(b[offProducerEpoch:], uint16(s.epoch))
	binary.BigEndian.PutUint32(b[offBaseSequence:], uint32(s.seq))
	binary.BigEndian.PutUint32(b[57:], uint32(s.records))
	for i := batchHeaderSize; i < len(b); i++ {
		b[i] = fill + byte(i)
	}
	binary.BigEndian.PutUint32(b[offCRC:], batchCRC(b))
	return b
}

// fsCase is one storage implementation the log tests run against.
type fsCase struct {
	name string
	fs   storage.FS
	dir  string
}

// forEachFS runs body on the OS and in-memory file systems, each in both
// write modes: a directFS makes mustOpen open the log in direct mode, and
// mustAppend then drives its writes as the shard would.
func forEachFS(t *testing.T, body func(t *testing.T, c fsCase)) {
	t.Helper()
	for _, c := range []fsCase{
		{"os", storage.OS(), filepath.Join(t.TempDir(), "topic-0")},
		{"mem", storage.NewMem(), "data/topic-0"},
		{"os-direct", &directFS{storage.OS(), testZeroingCache(t, 64)}, filepath.Join(t.TempDir(), "topic-0")},
		{"mem-direct", &directFS{storage.NewMem(), testZeroingCache(t, 64)}, "data/topic-0"},
	} {
		t.Run(c.name, func(t *testing.T) { body(t, c) })
	}
}

// directFS marks a file system whose logs mustOpen opens in direct mode.
type directFS struct {
	storage.FS
	cache *TailCache
}

// testCache maps a tail cache of chunks chunks (aligned, as O_DIRECT
// wants), without pre-zeroing: the pieces PendingWrites returns are all data.
func testCache(t testing.TB, chunks int) *TailCache { return newTestCache(t, chunks, false) }

// testZeroingCache is a cache that pre-zeroes segment space, as the shard's.
func testZeroingCache(t testing.TB, chunks int) *TailCache { return newTestCache(t, chunks, true) }

func newTestCache(t testing.TB, chunks int, preZero bool) *TailCache {
	t.Helper()
	mem, err := unix.Mmap(-1, 0, chunks*ChunkSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(mem) })
	c, err := NewTailCache(mem, preZero)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// drive submits and completes a direct log's due writes, in order.
func drive(t testing.TB, l *Log) {
	t.Helper()
	for {
		ws := l.PendingWrites(nil, false)
		if len(ws) == 0 {
			return
		}
		for _, w := range ws {
			_, err := w.File.WriteAt(w.Buf, w.Off)
			l.WriteDone(w.Seq, err)
		}
	}
}

func mustOpen(t testing.TB, fs storage.FS, dir string, cfg Config, cp Checkpoint) *Log {
	t.Helper()
	if d, ok := fs.(*directFS); ok {
		cfg.Tail = d.cache
	}
	l, err := Open(fs, dir, cfg, cp, t0)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return l
}

func mustAppend(t testing.TB, l *Log, b []byte) AppendResult {
	t.Helper()
	res, err := l.Append(b, t0)
	if err == ErrTailBusy {
		drive(t, l)
		res, err = l.Append(b, t0)
	}
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	drive(t, l)
	return res
}

// readAll reads the whole log from LogStartOffset through Read and returns
// the batches' bytes, checking ranges are contiguous.
func readAll(t testing.TB, l *Log) []byte {
	t.Helper()
	var out []byte
	off := l.LogStartOffset()
	for off < l.LogEndOffset() {
		r, err := l.Read(off, 1<<20, true, l.LogEndOffset())
		if err != nil {
			t.Fatalf("read %d: %v", off, err)
		}
		if r.Len == 0 {
			t.Fatalf("read %d: empty below the end %d", off, l.LogEndOffset())
		}
		buf, err := r.Bytes()
		if err != nil {
			t.Fatalf("readat: %v", err)
		}
		r.Release()
		out = append(out, buf...)
		off = r.NextOffset
	}
	return out
}

// zeroOffsets returns a copy of a batch stream with baseOffsets cleared,
// to compare contents independent of offset assignment.
func withOffsets(stream []byte, first Offset) []byte {
	out := append([]byte(nil), stream...)
	next := first
	for pos := 0; pos < len(out); {
		h := parseHeader(out[pos:])
		binary.BigEndian.PutUint64(out[pos:], uint64(next))
		next += Offset(h.lastOffsetDelta) + 1
		pos += int(h.size())
	}
	return out
}

// countingFS counts ReadAt calls on files whose names end in suffix.
type countingFS struct {
	storage.FS
	suffix string
	reads  atomic.Int64
}

func (c *countingFS) OpenFile(name string, flag int, perm os.FileMode) (storage.File, error) {
	f, err := c.FS.OpenFile(name, flag, perm)
	if err != nil || !strings.HasSuffix(name, c.suffix) {
		return f, err
	}
	return &countingFile{File: f, fs: c}, nil
}

type countingFile struct {
	storage.File
	fs *countingFS
}

func (f *countingFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.reads.Add(1)
	return f.File.ReadAt(p, off)
}

func seedRand(t testing.TB) (*rand.Rand, int64) {
	seed := time.Now().UnixNano()
	if s := os.Getenv("SLUICE_SEED"); s != "" {
		var v int64
		for _, c := range s {
			v = v*10 + int64(c-'0')
		}
		seed = v
	}
	t.Logf("seed %d (replay with SLUICE_SEED=%d)", seed, seed)
	return rand.New(rand.NewSource(seed)), seed
}
