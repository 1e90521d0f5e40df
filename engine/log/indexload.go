package log

import (
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/sluice-broker/sluice/engine/storage"
)

// Loading a segment's indexes.
//
// After a restart only the active segment's indexes are in memory; an
// older segment loads its .index and .timeindex files the first time a
// read needs it. Files left truncated, zeroed or out of order by an
// unclean shutdown or a bad sector fail the checks below (Kafka's index
// sanity check, and one header read at each index's last entry), and the
// segment's indexes are then rebuilt from its batch headers, for that
// segment only. Either may read the disk for a while: during no-wait reads
// (fetches, ListOffsets) the log does not load on the shard thread but
// names the load in the WouldBlock it returns, the shard runs it on another
// goroutine (IndexLoad.Run), installs the result (InstallIndexes) and
// serves the request again. A rolled segment never changes, so the load
// reads it safely beside the shard; its file is pinned meanwhile.

// IndexLoad loads (or rebuilds) the indexes of one rolled segment away
// from the shard thread. Run it once, from any goroutine, then hand it to
// the log's InstallIndexes on the shard thread.
type IndexLoad struct {
	seg      *segment
	fs       storage.FS
	dir      string
	interval int64
	end      Offset // the segment's next offset
	gen      uint64 // the log's truncation generation when it was asked for

	loaded  segmentIndexes
	Rebuilt bool  // the files failed their checks (or were missing)
	Err     error // the segment itself is unreadable or corrupt
}

// segmentIndexes is what loading gives a segment.
type segmentIndexes struct {
	index              []indexEntry
	timeIndex          []timeEntry
	maxTimestamp       int64
	maxTimestampOffset Offset
	bytesSinceIndex    int64
}

// indexLoadFor describes the load of seg for InstallIndexes.
func (l *Log) indexLoadFor(seg *segment) *IndexLoad {
	end := l.logEnd
	if seg.rolled {
		end = seg.next
	}
	return &IndexLoad{seg: seg, fs: l.fs, dir: l.dir, interval: int64(l.cfg.IndexIntervalBytes), end: end, gen: l.truncGen}
}

// Run loads the indexes: from the files when they pass the checks, else
// by walking the segment's batch headers. It touches nothing of the log.
func (j *IndexLoad) Run() {
	j.loaded, j.Rebuilt, j.Err = loadIndexes(j.fs, j.dir, j.seg.base, j.seg.file, j.seg.file.Name(), j.seg.size, j.end, j.interval, true)
}

// InstallIndexes gives the segment what Run loaded, unless the segment was
// loaded meanwhile or the log was truncated (the load may describe bytes
// that are gone). It reports whether it installed them, and returns the
// load's error for a corrupt segment.
func (l *Log) InstallIndexes(j *IndexLoad) (bool, error) {
	if j.Err != nil {
		return false, j.Err
	}
	if j.seg.loaded || j.gen != l.truncGen || l.closed {
		return false, nil
	}
	j.seg.install(j.loaded)
	return true, nil
}

// install sets seg's indexes to what was loaded.
func (s *segment) install(x segmentIndexes) {
	s.index, s.timeIndex = x.index, x.timeIndex
	s.indexFlushed, s.timeFlushed = len(x.index), len(x.timeIndex)
	s.maxTimestamp, s.maxTimestampOffset = x.maxTimestamp, x.maxTimestampOffset
	s.bytesSinceIndex = x.bytesSinceIndex
	s.loaded = true
}

// loadIndexes reads the index files of the segment at base, whose batches
// fill size bytes of f and end at end, and checks them (with verify, also
// the entries lastEntriesHold reads the segment for); files that fail give
// indexes rebuilt from the batch headers (rebuilt true).
func loadIndexes(fs storage.FS, dir string, base Offset, f io.ReaderAt, name string, size int64, end Offset, interval int64, verify bool) (segmentIndexes, bool, error) {
	rel := uint64(end - base)
	idxBytes, err1 := readWholeFile(fs, segmentName(dir, base, indexSuffix))
	timeBytes, err2 := readWholeFile(fs, segmentName(dir, base, timeIndexSuffix))
	var idx []indexEntry
	var ti []timeEntry
	ok1, ok2 := false, false
	if err1 == nil && err2 == nil {
		idx, ok1 = decodeIndex(idxBytes, size, rel)
		ti, ok2 = decodeTimeIndex(timeBytes, rel)
		if ok1 && ok2 && (!verify || lastEntriesHold(f, base, size, idx, ti)) {
			x := segmentIndexes{index: idx, timeIndex: ti, maxTimestamp: noTimestamp, maxTimestampOffset: base, bytesSinceIndex: size}
			if n := len(ti); n > 0 {
				x.maxTimestamp = ti[n-1].timestamp
				x.maxTimestampOffset = base + Offset(ti[n-1].relOffset)
			}
			if n := len(idx); n > 0 {
				x.bytesSinceIndex = size - int64(idx[n-1].position)
			}
			return x, false, nil
		}
	}
	x, err := rebuildSegmentIndexes(f, name, base, size, interval)
	// A segment whose batches carry no timestamp has an empty time index
	// that the checks cannot tell from a lost one: a walk that finds the
	// same indexes was a check, not a repair.
	same := ok1 && ok2 && len(ti) == 0 && len(x.timeIndex) == 0 && slices.Equal(idx, x.index)
	return x, !same, err
}

// lastEntriesHold checks the entries a damaged file could get wrong while
// still well ordered: the offset index's last entry must name a batch
// boundary with that base offset, and the time index's last entry the
// largest timestamp of the batches from its offset to the end of the
// segment (later batches must not hold a larger one, nor the batch there a
// smaller one). A zeroed or stale time index would otherwise make
// retention delete a segment early, or ListOffsets miss records.
func lastEntriesHold(f io.ReaderAt, base Offset, size int64, idx []indexEntry, ti []timeEntry) bool {
	var hdr [batchHeaderSize]byte
	if n := len(idx); n > 0 {
		e := idx[n-1]
		h, ok, err := readHeaderInto(f, hdr[:], int64(e.position), size)
		if err != nil || !ok || h.baseOffset != base+Offset(e.relOffset) {
			return false
		}
	}
	n := len(ti)
	if n == 0 {
		return size == 0
	}
	// Walk the batches from the index entry at or below the time entry's
	// offset to the end of the segment. The largest timestamp is usually
	// in the last batches, so this reads a few headers; a segment whose
	// largest timestamp came early (a producer's clock ran ahead) costs a
	// walk of the rest of it, as much as a rebuild. It runs beside the
	// shard (IndexLoad.Run).
	last := ti[n-1]
	target := base + Offset(last.relOffset)
	pos := int64(0)
	for _, e := range idx {
		if base+Offset(e.relOffset) > target {
			break
		}
		pos = int64(e.position)
	}
	found, maxTs := false, int64(noTimestamp)
	for pos < size {
		h, ok, err := readHeaderInto(f, hdr[:], pos, size)
		if err != nil || !ok {
			return false
		}
		if h.lastOffset() >= target {
			if !found && h.baseOffset != target {
				return false // the entry does not name a batch
			}
			found = true
			maxTs = max(maxTs, h.maxTimestamp)
		}
		pos += h.size()
	}
	return found && maxTs == last.timestamp
}

// rebuildSegmentIndexes walks the batch headers of the segment at base,
// whose batches fill size bytes of f (named name, for errors).
func rebuildSegmentIndexes(f io.ReaderAt, name string, base Offset, size int64, interval int64) (segmentIndexes, error) {
	s := &segment{base: base, maxTimestamp: noTimestamp, maxTimestampOffset: base}
	var hdr [batchHeaderSize]byte
	expected := base
	for pos := int64(0); pos < size; {
		h, ok, err := readHeaderInto(f, hdr[:], pos, size)
		if err != nil {
			return segmentIndexes{}, err
		}
		// Compaction leaves gaps (clean.go); offsets only grow.
		if !ok || h.baseOffset < expected {
			return segmentIndexes{}, fmt.Errorf("%w: %s at position %d", ErrCorruptSegment, name, pos)
		}
		s.addBatch(&h, pos, interval)
		pos += h.size()
		expected = h.lastOffset() + 1
	}
	s.sealTimeIndex()
	return segmentIndexes{index: s.index, timeIndex: s.timeIndex, maxTimestamp: s.maxTimestamp,
		maxTimestampOffset: s.maxTimestampOffset, bytesSinceIndex: s.bytesSinceIndex}, nil
}

// readHeaderInto reads the batch header at pos into buf (batchHeaderSize
// bytes of scratch); ok is false when no well-framed batch ends at or
// before limit there. Log.readHeader passes the log's scratch; loads off
// the shard thread their own.
func readHeaderInto(f io.ReaderAt, buf []byte, pos, limit int64) (batchHeader, bool, error) {
	if limit-pos < batchHeaderSize {
		return batchHeader{}, false, nil
	}
	n, err := f.ReadAt(buf[:batchHeaderSize], pos)
	if n < batchHeaderSize {
		if err == nil || err == io.EOF {
			return batchHeader{}, false, nil
		}
		return batchHeader{}, false, err
	}
	h := parseHeader(buf)
	if !h.framingOK() || pos+h.size() > limit {
		return batchHeader{}, false, nil
	}
	return h, true, nil
}

// readWholeFile reads a small file (index, snapshot) entirely.
func readWholeFile(fs storage.FS, name string) ([]byte, error) {
	f, err := fs.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	b := make([]byte, size)
	if n, err := f.ReadAt(b, 0); n < len(b) {
		return nil, err
	}
	return b, nil
}
