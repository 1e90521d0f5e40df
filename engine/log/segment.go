package log

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/sluice-broker/sluice/engine/storage"
)

const (
	logSuffix       = ".log"
	indexSuffix     = ".index"
	timeIndexSuffix = ".timeindex"
	tmpSuffix       = ".tmp"
	offsetDigits    = 20
)

// SegmentRef pins a segment's .log file for a reader. The file is closed
// when the last reference is released, so retention, truncation of the
// topic or Close may unlink the segment while a fetch is still sending from
// it. Release may be called from any goroutine; it is the only part of this
// package that is.
type SegmentRef struct {
	refs atomic.Int32
	file storage.File
}

func newSegmentRef(f storage.File) *SegmentRef {
	r := &SegmentRef{file: f}
	r.refs.Store(1) // the log's own reference
	return r
}

func (r *SegmentRef) acquire() { r.refs.Add(1) }

// Acquire pins the file again (a reader of a region a WouldBlock names);
// only while the log still holds it, on the shard thread.
func (r *SegmentRef) Acquire() { r.acquire() }

// Release drops a reference taken by Read. Calling it on nil is a no-op, so
// an empty ReadResult can be released unconditionally.
func (r *SegmentRef) Release() {
	if r == nil {
		return
	}
	switch n := r.refs.Add(-1); {
	case n == 0:
		r.file.Close()
	case n < 0:
		panic("log: SegmentRef released more often than acquired")
	}
}

// segment is one .log file and its indexes. All fields belong to the shard.
type segment struct {
	base Offset
	ref  *SegmentRef
	file storage.File
	size int64 // bytes of whole batches: the end position
	// next is the offset after the last batch, for every segment but the
	// active one (whose end is the log's end offset).
	next Offset

	// loaded says index and timeIndex hold the segment's indexes; old
	// segments load them on first use.
	loaded    bool
	index     []indexEntry
	timeIndex []timeEntry
	// Entries already written to the index files; indexWritten says this
	// run created (or rewrote) them, so the counts describe them. The
	// files are open only while they have writes or a sync to come.
	indexFlushed, timeFlushed int
	indexWritten              bool
	indexFile, timeFile       storage.File
	bytesSinceIndex           int64

	// Largest batch maxTimestamp and the base offset of its batch; valid when
	// loaded (noTimestamp if none).
	maxTimestamp       int64
	maxTimestampOffset Offset

	rolled bool
	// indexDurable: a rolled segment's index files are synced. indexListed
	// is the PendingSync round that last asked for them.
	indexDurable bool
	indexListed  uint64
	// cutListed is the PendingSync round that last listed the segment for
	// its truncated padding (Log.cuts).
	cutListed uint64
}

const noTimestamp = -1

func segmentName(dir string, base Offset, suffix string) string {
	return filepath.Join(dir, fmt.Sprintf("%0*d%s", offsetDigits, int64(base), suffix))
}

// parseSegmentName returns the base offset of a segment file name.
func parseSegmentName(name, suffix string) (Offset, bool) {
	digits, ok := strings.CutSuffix(name, suffix)
	if !ok || len(digits) != offsetDigits {
		return 0, false
	}
	v, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || v < 0 {
		return 0, false
	}
	return Offset(v), true
}

// segmentFileBase returns the base offset of a .log, .index or .timeindex
// file name.
func segmentFileBase(name string) (Offset, bool) {
	for _, suffix := range []string{logSuffix, indexSuffix, timeIndexSuffix} {
		if base, ok := parseSegmentName(name, suffix); ok {
			return base, true
		}
	}
	return 0, false
}

// addBatch records a batch just written at position pos in the in-memory
// indexes, following the sparse rules of the package comment.
func (s *segment) addBatch(h *batchHeader, pos int64, interval int64) {
	if h.maxTimestamp > s.maxTimestamp {
		s.maxTimestamp = h.maxTimestamp
		s.maxTimestampOffset = h.baseOffset
	}
	if s.bytesSinceIndex >= interval && pos > 0 {
		s.index = append(s.index, indexEntry{relOffset: uint32(h.baseOffset - s.base), position: uint32(pos)})
		s.bytesSinceIndex = 0
		s.sealTimeIndex()
	}
	s.bytesSinceIndex += h.size()
}

// sealTimeIndex appends a time index entry for the current largest
// timestamp if it grew since the last entry.
func (s *segment) sealTimeIndex() {
	if s.maxTimestamp == noTimestamp {
		return
	}
	if n := len(s.timeIndex); n > 0 && s.timeIndex[n-1].timestamp >= s.maxTimestamp {
		return
	}
	s.timeIndex = append(s.timeIndex, timeEntry{timestamp: s.maxTimestamp, relOffset: uint32(s.maxTimestampOffset - s.base)})
}

// resetIndexes empties the in-memory indexes, before a rebuild.
func (s *segment) resetIndexes() {
	s.index = s.index[:0]
	s.timeIndex = s.timeIndex[:0]
	s.indexFlushed, s.timeFlushed = 0, 0
	s.bytesSinceIndex = 0
	s.maxTimestamp, s.maxTimestampOffset = noTimestamp, s.base
	s.loaded = true
}
