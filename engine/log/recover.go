package log

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sluice-broker/sluice/engine/storage"
)

// ErrCorruptSegment reports a segment below the recovery point whose batch
// framing is broken: that data was durable, so it is refused, not skipped.
var ErrCorruptSegment = errors.New("log: corrupt segment")

func (l *Log) open(cp Checkpoint, now time.Time) error {
	names, err := l.fs.ReadDir(l.dir)
	if errors.Is(err, os.ErrNotExist) {
		if err := l.fs.MkdirAll(l.dir, 0o755); err != nil {
			return err
		}
		if err := l.fs.SyncDir(filepath.Dir(l.dir)); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	// A cleaning pass a crash interrupted: its swaps are completed, its
	// unfinished files removed (clean.go).
	if changed, err := recoverCleaning(l.fs, l.dir, names); err != nil {
		return err
	} else if changed {
		if names, err = l.fs.ReadDir(l.dir); err != nil {
			return err
		}
	}
	if err := l.loadGapBounds(); err != nil {
		return err
	}

	var bases []Offset
	for _, name := range names {
		if base, ok := parseSegmentName(name, logSuffix); ok {
			bases = append(bases, base) // ReadDir sorts; the names have fixed width
		}
	}
	// Leftovers: interrupted atomic writes, indexes without a segment, and
	// segments wholly below the log start offset that a crash resurrected.
	first := 0
	for first+1 < len(bases) && bases[first+1] <= cp.LogStartOffset {
		first++
	}
	keep := map[Offset]bool{}
	for _, b := range bases[first:] {
		keep[b] = true
	}
	removed := false
	for _, name := range names {
		base, isSegmentFile := segmentFileBase(name)
		if strings.HasSuffix(name, tmpSuffix) || isSegmentFile && !keep[base] {
			if err := l.fs.Remove(filepath.Join(l.dir, name)); err != nil {
				return err
			}
			removed = true
		}
	}
	bases = bases[first:]

	if len(bases) == 0 {
		// A new log (or one whose segments all went): start at the log
		// start offset with no producer state.
		start := max(cp.LogStartOffset, 0)
		if err := l.fs.Remove(filepath.Join(l.dir, snapshotName)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		seg, err := l.openSegment(start, true)
		if err != nil {
			return err
		}
		l.segs = []*segment{seg}
		l.logStart, l.logEnd, l.recoveryPoint, l.hw = start, start, start, start
		l.maxTimestampKnown = true
		if err := l.loadEpochs(); err != nil {
			return err
		}
		return l.fs.SyncDir(l.dir)
	}

	for i, base := range bases {
		seg, err := l.openSegment(base, false)
		if err != nil {
			return err
		}
		if i > 0 {
			prev := l.segs[i-1]
			prev.rolled, prev.next, prev.indexDurable = true, base, true
		}
		l.segs = append(l.segs, seg)
		l.size += seg.size
	}
	l.logStart = max(cp.LogStartOffset, bases[0])

	snap, err := l.readSnapshot()
	if err != nil {
		return err
	}
	act := l.active()
	if cp.Clean && snap != nil && snap.endOffset == cp.RecoveryPoint && snap.tailBase == act.base && snap.tailSize == act.size {
		l.logEnd, l.recoveryPoint = snap.endOffset, snap.endOffset
		l.rollStartMs = snap.rollStartMs
		l.producers = snap.producers
		if err := l.ensureLoaded(act); err != nil {
			return err
		}
	} else if err := l.recover(cp, snap, now); err != nil {
		return err
	}
	l.logStart = min(l.logStart, l.logEnd)
	if err := l.loadEpochs(); err != nil {
		return err
	}
	// Everything present is durable once open returns (the Sync below).
	l.hw = l.logEnd
	if removed {
		l.markDirChanged()
	}
	if l.recoveryPoint < l.logEnd || l.dirDirty() {
		return l.Sync()
	}
	return nil
}

// recover finds where the valid log ends, checking every batch past the
// recovery point, and truncates there.
func (l *Log) recover(cp Checkpoint, snap *snapshot, now time.Time) error {
	rp := max(cp.RecoveryPoint, l.segs[0].base)
	k := l.segmentFor(rp)
	seg := l.segs[k]

	pos, at, err := l.positionBelow(seg, rp)
	if err != nil {
		return err
	}
	snapOffset := Offset(-1)
	if snap != nil && snap.endOffset >= l.segs[0].base {
		l.producers, snapOffset = snap.producers, snap.endOffset
		if snapOffset < at {
			if err := l.replayProducers(snapOffset, at); err != nil {
				return err
			}
		}
	} else if at > l.segs[0].base {
		// No usable snapshot: rebuild from the start (headers only).
		snapOffset = l.segs[0].base
		if err := l.replayProducers(snapOffset, at); err != nil {
			return err
		}
	}

	expected := at
	for i := k; i < len(l.segs); i++ {
		s := l.segs[i]
		if i > k {
			if s.base != expected && !l.gapOK(expected, s.base) {
				l.dropSegmentsFrom(i)
				break
			}
			expected = s.base
			s.resetIndexes()
			pos = 0
		}
		end, next, err := l.scanSegment(s, pos, expected, snapOffset)
		if err != nil {
			return err
		}
		expected = next
		if end < s.size && i+1 < len(l.segs) && l.segs[i+1].base == expected {
			// A direct-mode segment rolled just before a crash can keep the
			// zero padding of its last block; the log goes on after it.
			if pad, err := l.zeroPadding(s, end); err != nil {
				return err
			} else if pad {
				if err := truncateDurably(s.file, end); err != nil {
					return err
				}
				l.size -= s.size - end
				s.size = end
				continue
			}
		}
		if end < s.size {
			if err := truncateDurably(s.file, end); err != nil {
				return err
			}
			l.size -= s.size - end
			s.size = end
			l.dropSegmentsFrom(i + 1)
			break
		}
	}
	// The last segment left is the active one.
	for i, s := range l.segs[:len(l.segs)-1] {
		s.rolled, s.next = true, l.segs[i+1].base
	}
	act := l.active()
	act.rolled, act.next = false, 0
	l.logEnd = expected
	if act.base > l.logEnd || (act.size == 0 && act.base != l.logEnd) {
		return fmt.Errorf("%w: segment %d does not continue the log ending at %d", ErrCorruptSegment, act.base, l.logEnd)
	}
	l.recoveryPoint = min(rp, l.logEnd)
	if snapOffset > l.logEnd {
		// The snapshot describes batches that are gone: rebuild.
		l.producers = newProducerState()
		if err := l.replayProducers(l.segs[0].base, l.logEnd); err != nil {
			return err
		}
	}
	l.rollStartMs = now.UnixMilli()
	if snap != nil && snap.tailBase == act.base && act.size > 0 {
		l.rollStartMs = snap.rollStartMs
	}
	// Rolled segments that were rescanned get fresh index files, which the
	// Sync at the end of open makes durable with their data.
	for _, s := range l.segs[k : len(l.segs)-1] {
		s.indexDurable = false
		s.sealTimeIndex()
		if err := l.writeIndexFiles(s); err != nil {
			return err
		}
	}
	return nil
}

// gapOK reports whether a batch (or segment) at off may follow a log that
// ended at expected: only compaction leaves gaps, and only below the offset
// its passes reached.
func (l *Log) gapOK(expected, off Offset) bool {
	// <=: the segment after a cleaned range starts at its end, and the
	// batches that led up to it may be gone.
	return off > expected && off <= l.gapsBelow
}

// truncateDurably cuts a segment file at end and datasyncs the cut.
// Recovery leaves the recovery point at or below end, so no later sync
// round lists the file for the bytes below it: were the cut lost in a
// second crash, the torn bytes would come back behind data appended since,
// and that recovery would drop every segment after this one.
func truncateDurably(f storage.File, end int64) error {
	if err := f.Truncate(end); err != nil {
		return err
	}
	return f.Datasync()
}

// zeroPadding reports whether s holds only zeros from end to its size: the
// padding and preallocated space of a direct-mode segment that rolled just
// before a crash.
func (l *Log) zeroPadding(s *segment, end int64) (bool, error) {
	b := make([]byte, min(s.size-end, 1<<20))
	for pos := end; pos < s.size; {
		n := min(int64(len(b)), s.size-pos)
		if k, err := s.file.ReadAt(b[:n], pos); int64(k) < n {
			return false, err
		}
		for _, c := range b[:n] {
			if c != 0 {
				return false, nil
			}
		}
		pos += n
	}
	return true, nil
}

// dropSegmentsFrom deletes the segments from index i on (a torn tail).
func (l *Log) dropSegmentsFrom(i int) {
	for len(l.segs) > i {
		s := l.segs[len(l.segs)-1]
		l.segs = l.segs[:len(l.segs)-1]
		l.size -= s.size
		l.removeSegmentFiles(s)
	}
}

// positionBelow returns the position in seg of the batch boundary at or
// just below rp, walking headers (no CRC: the bytes below the recovery point
// are durable) from the last index entry below rp. It loads what it can of
// seg's index files and leaves seg's in-memory indexes covering [base, at).
func (l *Log) positionBelow(seg *segment, rp Offset) (pos int64, at Offset, err error) {
	seg.resetIndexes()
	if rp == seg.base {
		return 0, rp, nil
	}
	// Keep the entries below rp of whatever valid index files there are.
	rel := uint32(rp - seg.base)
	if b, err := l.readWhole(segmentName(l.dir, seg.base, indexSuffix)); err == nil {
		if idx, ok := decodeIndex(b, seg.size, math.MaxUint32+1); ok {
			n := 0
			for n < len(idx) && idx[n].relOffset < rel {
				n++
			}
			seg.index = idx[:n]
		}
	}
	if b, err := l.readWhole(segmentName(l.dir, seg.base, timeIndexSuffix)); err == nil {
		if ti, ok := decodeTimeIndex(b, math.MaxUint32+1); ok {
			n := 0
			for n < len(ti) && ti[n].relOffset < rel {
				n++
			}
			seg.timeIndex = ti[:n]
		}
	}
	// The last entry must name a batch boundary; one header read checks it.
	if n := len(seg.index); n > 0 {
		e := seg.index[n-1]
		h, ok, err := l.readHeader(l.reader(seg), int64(e.position), seg.size)
		if err != nil {
			return 0, 0, err
		}
		if !ok || h.baseOffset != seg.base+Offset(e.relOffset) {
			seg.index, seg.timeIndex = seg.index[:0], seg.timeIndex[:0]
		}
	}
	seg.indexFlushed, seg.timeFlushed = len(seg.index), len(seg.timeIndex)
	if n := len(seg.timeIndex); n > 0 {
		seg.maxTimestamp = seg.timeIndex[n-1].timestamp
		seg.maxTimestampOffset = seg.base + Offset(seg.timeIndex[n-1].relOffset)
	}
	at = seg.base
	var indexed int64 = -1
	if n := len(seg.index); n > 0 {
		pos, at, indexed = int64(seg.index[n-1].position), seg.base+Offset(seg.index[n-1].relOffset), int64(seg.index[n-1].position)
	}
	interval := int64(l.cfg.IndexIntervalBytes)
	for at < rp && pos < seg.size {
		h, ok, err := l.readHeader(l.reader(seg), pos, seg.size)
		if err != nil {
			return 0, 0, err
		}
		if !ok || h.baseOffset != at && !l.gapOK(at, h.baseOffset) || h.lastOffset() >= rp {
			break // rp inside this batch, or the durable data ends early: scan from here
		}
		if pos == indexed {
			if h.maxTimestamp > seg.maxTimestamp {
				seg.maxTimestamp, seg.maxTimestampOffset = h.maxTimestamp, h.baseOffset
			}
			seg.bytesSinceIndex = h.size()
		} else {
			seg.addBatch(&h, pos, interval)
		}
		pos += h.size()
		at = h.lastOffset() + 1
	}
	return pos, at, nil
}

// scanSegment checks batches of s from pos (which holds offset expected)
// to its end: framing, continuity and CRC. It indexes them and feeds the
// producer state those at or past producersFrom. It returns where the valid
// batches end and the next offset.
func (l *Log) scanSegment(s *segment, pos int64, expected, producersFrom Offset) (int64, Offset, error) {
	interval := int64(l.cfg.IndexIntervalBytes)
	for pos < s.size {
		h, ok, err := l.readHeader(l.reader(s), pos, s.size)
		if err != nil {
			return 0, 0, err
		}
		if !ok || h.baseOffset != expected && !l.gapOK(expected, h.baseOffset) {
			break
		}
		size := int(h.size())
		if cap(l.buf) < size {
			l.buf = make([]byte, size)
		}
		batch := l.buf[:size]
		if n, err := s.file.ReadAt(batch, pos); n < size {
			if err != nil && err != io.EOF {
				return 0, 0, err
			}
			break
		}
		if batchCRC(batch) != h.crc {
			break
		}
		s.addBatch(&h, pos, interval)
		if h.producerID >= 0 && h.baseOffset >= producersFrom {
			ctl := controlNone
			if h.attributes&attrControl != 0 {
				ctl = controlTypeOf(batch)
			}
			l.producers.apply(&h, ctl, h.baseOffset)
		}
		pos += int64(size)
		expected = h.lastOffset() + 1
	}
	return pos, expected, nil
}

// replayProducers feeds the producer state the batches in [from, to),
// reading headers only.
func (l *Log) replayProducers(from, to Offset) error {
	var readErr error
	err := l.walkHeaders(from, to, func(h *batchHeader, r io.ReaderAt, pos int64) {
		if h.producerID < 0 || readErr != nil {
			return
		}
		ctl := controlNone
		if h.attributes&attrControl != 0 {
			ctl, readErr = controlTypeAt(r, pos, h) // markers are rare: one more small read
		}
		l.producers.apply(h, ctl, h.baseOffset)
	})
	if err == nil {
		err = readErr
	}
	return err
}

// walkHeaders calls fn for each batch overlapping [from, to), with where
// its header is, reading headers only. Segments are walked from their
// start (replays are rare).
func (l *Log) walkHeaders(from, to Offset, fn func(h *batchHeader, r io.ReaderAt, pos int64)) error {
	for i := max(l.segmentFor(from), 0); i < len(l.segs); i++ {
		s := l.segs[i]
		for pos := int64(0); pos < s.size; {
			h, ok, err := l.readHeader(l.reader(s), pos, s.size)
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			if h.baseOffset >= to {
				return nil
			}
			if h.lastOffset() >= from {
				fn(&h, l.reader(s), pos)
			}
			pos += h.size()
		}
	}
	return nil
}

// ensureLoaded loads seg's indexes from its files, or rebuilds them by
// walking its batch headers when the files are missing or fail their
// checks (indexload.go). During no-wait reads it does not load a rolled
// segment on the shard thread: it fails with a *WouldBlock naming the load
// (Indexes), which the shard runs on another goroutine.
func (l *Log) ensureLoaded(seg *segment) error {
	if seg.loaded {
		return nil
	}
	if l.nw.on && seg.rolled {
		if l.nw.blocked == nil {
			l.nw.blocked = &WouldBlock{File: seg.file, Seg: seg.ref, Indexes: l.indexLoadFor(seg), gen: l.truncGen}
		}
		return l.nw.blocked
	}
	// Reads normally even during no-wait reads (the active segment is
	// loaded at open; this is for callers that may block).
	if l.nw.on {
		saved := l.nw
		l.nw.on = false
		defer func() { l.nw = saved }()
	}
	// The active segment is loaded at open, where a clean start reads no
	// segment data (its files were synced by the clean shutdown, and
	// recovery checks the last entry after an unclean one); a rolled one
	// is checked against its batches.
	j := l.indexLoadFor(seg)
	x, rebuilt, err := loadIndexes(l.fs, l.dir, seg.base, l.reader(seg), seg.file.Name(), seg.size, j.end, j.interval, seg.rolled)
	if err != nil {
		return err
	}
	seg.install(x)
	if rebuilt {
		l.IndexRebuilds++
	}
	return nil
}

// rebuildIndexes rebuilds seg's in-memory indexes from its batch headers.
// The index files are rewritten when the segment is next flushed.
func (l *Log) rebuildIndexes(seg *segment) error {
	x, err := rebuildSegmentIndexes(l.reader(seg), seg.file.Name(), seg.base, seg.size, int64(l.cfg.IndexIntervalBytes))
	if err != nil {
		seg.loaded = false
		return err
	}
	seg.install(x)
	seg.indexFlushed, seg.timeFlushed = 0, 0 // the files are rewritten whole
	return nil
}

// readHeader reads the batch header at pos; ok is false when no well-framed
// batch ends at or before limit there.
func (l *Log) readHeader(f io.ReaderAt, pos, limit int64) (batchHeader, bool, error) {
	return readHeaderInto(f, l.header[:], pos, limit)
}

// readWhole reads a small file (index, snapshot) entirely.
func (l *Log) readWhole(name string) ([]byte, error) { return readWholeFile(l.fs, name) }

// removeSegmentFiles unlinks a segment's files and drops the log's
// reference; a pinned reader keeps the .log open until it releases it.
func (l *Log) removeSegmentFiles(s *segment) error {
	closeIndexFiles(s)
	l.cuts = slices.DeleteFunc(l.cuts, func(c *segment) bool { return c == s })
	var first error
	for _, suffix := range []string{logSuffix, indexSuffix, timeIndexSuffix} {
		if err := l.fs.Remove(segmentName(l.dir, s.base, suffix)); err != nil && !errors.Is(err, os.ErrNotExist) && first == nil {
			first = err
		}
	}
	s.ref.Release()
	if l.maxTimestampKnown && l.maxTimestampOffset >= s.base && (s.rolled && l.maxTimestampOffset < s.next || !s.rolled) {
		l.maxTimestampKnown = false
	}
	l.markDirChanged()
	return first
}
