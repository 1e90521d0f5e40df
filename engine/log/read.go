package log

import (
	"fmt"

	"github.com/valyala/bytebufferpool"

	"github.com/sluice-broker/sluice/engine/storage"
)

// ReadResult is a contiguous range of whole batches in one segment file, to
// be sent with sendfile (or read) from File at Pos for Len bytes. Seg pins
// the file: release it when done. Len 0 means nothing to send (Seg nil).
// In direct mode a range the tail cache holds comes as Mem, a copy (File
// and Seg nil); Release releases either.
type ReadResult struct {
	Seg  *SegmentRef
	Mem  *bytebufferpool.ByteBuffer
	File storage.File
	Pos  Position
	Len  int
	// FirstOffset is the base offset of the first batch (<= the offset
	// asked for: a fetch starts at the batch containing it, as in Kafka).
	FirstOffset Offset
	// NextOffset is the offset after the last batch returned.
	NextOffset Offset
}

// Read finds the batches to serve a fetch from offset from: starting with
// the batch that contains from, ending before the first batch that reaches
// upTo (the high watermark or last stable offset), within maxBytes, except
// that with minOneBatch a first batch larger than maxBytes is still
// returned whole (KIP-74). The range never crosses a segment boundary.
// ErrOffsetOutOfRange if from is below LogStartOffset or above
// LogEndOffset. It reads batch headers only: an index lookup then at most
// about an index interval of headers at each end.
func (l *Log) Read(from Offset, maxBytes int, minOneBatch bool, upTo Offset) (ReadResult, error) {
	if l.closed {
		return ReadResult{}, ErrClosed
	}
	if from < l.logStart || from > l.logEnd {
		return ReadResult{}, ErrOffsetOutOfRange
	}
	upTo = min(upTo, l.logEnd)
	if from >= upTo {
		return ReadResult{FirstOffset: from, NextOffset: from}, nil
	}
	i := l.segmentFor(from)
	seg := l.segs[i]
	if err := l.ensureLoaded(seg); err != nil {
		return ReadResult{}, err
	}
	start, first, found, err := l.findBatch(seg, from)
	if err != nil {
		return ReadResult{}, err
	}
	// Compaction may have removed the segment's last batches (or all of
	// them): the batch holding from, or the first after it, is then in
	// a later segment.
	for !found && i+1 < len(l.segs) {
		i++
		seg = l.segs[i]
		if err := l.ensureLoaded(seg); err != nil {
			return ReadResult{}, err
		}
		if start, first, found, err = l.findBatch(seg, from); err != nil {
			return ReadResult{}, err
		}
	}
	if !found || first.lastOffset() >= upTo {
		return ReadResult{FirstOffset: from, NextOffset: from}, nil
	}

	// The end: the last batch boundary within start+maxBytes whose batches
	// all end below upTo. Start from the last index entry known to satisfy
	// both, then walk headers.
	limit := start + int64(max(maxBytes, 0))
	end, next := start, first.baseOffset
	if i := lookupPosition(seg.index, uint32(min(limit, seg.size))); i >= 0 {
		for i >= 0 && seg.base+Offset(seg.index[i].relOffset) >= upTo {
			i--
		}
		if i >= 0 && int64(seg.index[i].position) > start {
			end, next = int64(seg.index[i].position), seg.base+Offset(seg.index[i].relOffset)
		}
	}
	for end < seg.size {
		h, ok, err := l.readHeader(l.reader(seg), end, seg.size)
		if err != nil {
			return ReadResult{}, err
		}
		if !ok {
			return ReadResult{}, fmt.Errorf("%w: %s at position %d", ErrCorruptSegment, seg.file.Name(), end)
		}
		if h.lastOffset() >= upTo || end+h.size() > limit {
			break
		}
		end += h.size()
		next = h.lastOffset() + 1
	}
	if end == start {
		if !minOneBatch {
			return ReadResult{FirstOffset: from, NextOffset: from}, nil
		}
		end, next = start+first.size(), first.lastOffset()+1
	}
	if mem, ok := l.fromCache(seg, start, end); ok {
		return ReadResult{
			Mem: mem, Pos: Position(start), Len: int(end - start),
			FirstOffset: first.baseOffset, NextOffset: next,
		}, nil
	}
	seg.ref.acquire()
	return ReadResult{
		Seg: seg.ref, File: seg.file, Pos: Position(start), Len: int(end - start),
		FirstOffset: first.baseOffset, NextOffset: next,
	}, nil
}

// Release drops what pins the result (a segment, or a copy of cached
// bytes); safe on an empty result, from any goroutine.
func (r *ReadResult) Release() {
	r.Seg.Release()
	if r.Mem != nil {
		readPool.Put(r.Mem)
	}
	r.Seg, r.Mem = nil, nil
}

// Bytes reads the result's bytes into a new slice (internal readers:
// coordinators, ListOffsets).
func (r *ReadResult) Bytes() ([]byte, error) {
	buf := make([]byte, r.Len)
	if r.Mem != nil {
		copy(buf, r.Mem.B)
		return buf, nil
	}
	if r.File == nil {
		return buf[:0], nil
	}
	if n, err := r.File.ReadAt(buf, int64(r.Pos)); n < len(buf) {
		return nil, err
	}
	return buf, nil
}

// findBatch returns the position and header of the batch of seg containing
// off, or found false if off is past seg's batches.
func (l *Log) findBatch(seg *segment, off Offset) (int64, batchHeader, bool, error) {
	var pos int64
	if off < seg.base {
		off = seg.base // a later segment, after a compaction gap
	}
	if e, ok := lookupOffset(seg.index, uint32(off-seg.base)); ok {
		pos = int64(e.position)
	}
	for pos < seg.size {
		h, ok, err := l.readHeader(l.reader(seg), pos, seg.size)
		if err != nil {
			return 0, batchHeader{}, false, err
		}
		if !ok {
			return 0, batchHeader{}, false, fmt.Errorf("%w: %s at position %d", ErrCorruptSegment, seg.file.Name(), pos)
		}
		if h.lastOffset() >= off {
			return pos, h, true, nil
		}
		pos += h.size()
	}
	return seg.size, batchHeader{}, false, nil
}

// OffsetForTimestamp returns the first offset whose batch has a
// maxTimestamp >= ts, with that timestamp (ListOffsets by timestamp). The
// answer is at batch granularity: the batch's base offset, or
// LogStartOffset if that is inside the batch. ok is false when no batch
// qualifies or an I/O error prevented the lookup.
func (l *Log) OffsetForTimestamp(ts int64) (Offset, int64, bool) {
	if l.closed {
		return -1, -1, false
	}
	for i := max(l.segmentFor(l.logStart), 0); i < len(l.segs); i++ {
		seg := l.segs[i]
		if err := l.ensureLoaded(seg); err != nil {
			return -1, -1, false
		}
		if seg.maxTimestamp < ts || seg.size == 0 {
			continue
		}
		// All batches before the entry preceding the first entry >= ts have
		// smaller timestamps: start there.
		from := seg.base
		if k := firstTimeAtLeast(seg.timeIndex, ts); k > 0 {
			from = seg.base + Offset(seg.timeIndex[k-1].relOffset)
		}
		pos, h, found, err := l.findBatch(seg, max(from, l.logStart))
		if err != nil {
			return -1, -1, false
		}
		if !found {
			continue // compaction emptied the rest of the segment
		}
		for {
			if h.maxTimestamp >= ts && h.lastOffset() >= l.logStart {
				return max(h.baseOffset, l.logStart), h.maxTimestamp, true
			}
			pos += h.size()
			var ok bool
			if h, ok, err = l.readHeader(l.reader(seg), pos, seg.size); err != nil || !ok {
				break
			}
		}
	}
	return -1, -1, false
}

// MaxTimestamp returns the largest batch maxTimestamp in the log and the
// base offset of its batch (ListOffsets MAX_TIMESTAMP), or -1, -1 if the
// log has no timestamps. After a restart the first call loads every
// segment's time index.
func (l *Log) MaxTimestamp() (ts int64, off Offset) {
	if !l.maxTimestampKnown && !l.closed {
		l.maxTimestamp, l.maxTimestampOffset = noTimestamp, -1
		for _, seg := range l.segs {
			if err := l.ensureLoaded(seg); err != nil {
				return -1, -1
			}
			if seg.maxTimestamp > l.maxTimestamp {
				l.maxTimestamp, l.maxTimestampOffset = seg.maxTimestamp, seg.maxTimestampOffset
			}
		}
		l.maxTimestampKnown = true
	}
	if l.maxTimestamp == noTimestamp {
		return -1, -1
	}
	return l.maxTimestamp, l.maxTimestampOffset
}
