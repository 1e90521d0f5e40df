package log

import (
	"errors"
	"fmt"
	"io"

	"github.com/sluice-broker/sluice/engine/storage"
)

// Reads that must not block the shard (DESIGN.md: "a cold read must not
// block the shard").
//
// Serving a fetch or a ListOffsets reads batch headers (and, for
// ListOffsets, one batch) on the shard thread. Bytes the tail cache holds
// are in memory; older ones are read from the segment file, and when the
// page cache does not hold them a plain pread would stall every partition
// of the shard for a device round trip. Between BeginNoWait and EndNoWait
// the log reads segment files with ReadAtNoWait instead, first looking in
// the regions the caller has already fetched. A read that would wait
// fails; EndNoWait then names the region to fetch (a *WouldBlock), which
// the shard reads asynchronously (READ_FIXED into registered memory) and
// hands back to the next attempt, which starts over.
//
// A region is only ever fetched below the segment's stable end (bytes that
// are written and never change again: everything below the size of a
// page-cache or rolled segment, below the tail cache of a direct one), and
// is tagged with the log's truncation generation, so a fetched copy can
// never disagree with the file.

// PrefetchSize is how many bytes around a cold header one fetch reads.
const PrefetchSize = 64 << 10

// Prefetched is a region of a segment file read ahead for a no-wait read.
type Prefetched struct {
	File storage.File
	Off  int64
	Buf  []byte
	gen  uint64
}

// WouldBlock names the region a no-wait read needs: Len bytes of File at
// Off. Seg pins the file; the caller acquires it for as long as it reads.
// When Indexes is set, what is missing is not a region but the segment's
// indexes: run the load off the shard thread and install it
// (Log.InstallIndexes) before the next attempt.
type WouldBlock struct {
	File    storage.File
	Seg     *SegmentRef
	Off     int64
	Len     int
	Indexes *IndexLoad
	gen     uint64
}

func (w *WouldBlock) Error() string {
	if w.Indexes != nil {
		return fmt.Sprintf("log: the indexes of %s are not loaded", w.File.Name())
	}
	return fmt.Sprintf("log: %s [%d, +%d) is not in memory", w.File.Name(), w.Off, w.Len)
}

// Done turns the bytes read for w into a region for the next attempt.
func (w *WouldBlock) Done(buf []byte) Prefetched {
	return Prefetched{File: w.File, Off: w.Off, Buf: buf, gen: w.gen}
}

// BeginNoWait starts no-wait reads over the regions pre (see above). Only
// the shard thread calls it, and EndNoWait before anything else touches
// the log.
func (l *Log) BeginNoWait(pre []Prefetched) {
	l.nw = noWaitReader{l: l, on: true, pre: pre}
}

// EndNoWait ends no-wait reads. It returns the region the reads since
// BeginNoWait would have waited for, if any: their results are then
// meaningless, and the caller fetches the region and tries again.
func (l *Log) EndNoWait() *WouldBlock {
	w := l.nw.blocked
	l.nw = noWaitReader{}
	return w
}

// noWaitReader reads one segment file without waiting for the device.
type noWaitReader struct {
	l       *Log
	on      bool
	seg     *segment
	pre     []Prefetched
	blocked *WouldBlock
}

func (r *noWaitReader) ReadAt(p []byte, off int64) (int, error) {
	if r.blocked != nil {
		return 0, r.blocked
	}
	f := r.seg.file
	end := off + int64(len(p))
	for _, pf := range r.pre {
		if pf.File == f && pf.gen == r.l.truncGen && off >= pf.Off && end <= pf.Off+int64(len(pf.Buf)) {
			return copy(p, pf.Buf[off-pf.Off:]), nil
		}
	}
	n, err := f.ReadAtNoWait(p, off)
	if !errors.Is(err, storage.ErrWouldBlock) {
		return n, err
	}
	stable := r.l.stableEnd(r.seg)
	if end > stable {
		// Nothing reads unstable bytes from the file (the tail reader
		// serves them from memory); read them the slow way rather than
		// fetch bytes that may still change.
		return f.ReadAt(p, off)
	}
	from := alignDown(off, BlockSize)
	r.blocked = &WouldBlock{
		File: f, Seg: r.seg.ref, Off: from,
		Len: int(min(from+PrefetchSize, stable) - from),
		gen: r.l.truncGen,
	}
	return 0, r.blocked
}

// stableEnd is where the bytes of seg that are written and immutable end.
func (l *Log) stableEnd(seg *segment) int64 {
	if t := l.tail; t != nil && seg == t.seg {
		return t.valid
	}
	return seg.size
}

// segReader returns how to read seg's file: directly, or without waiting
// between BeginNoWait and EndNoWait.
func (l *Log) segReader(seg *segment) io.ReaderAt {
	if !l.nw.on {
		return seg.file
	}
	l.nw.seg = seg
	return &l.nw
}
