package log

import (
	"time"
)

// EnforceRetention deletes whole closed segments, oldest first: those whose
// largest timestamp is older than RetentionMs (Kafka compares the segment's
// largest batch timestamp; a segment without timestamps is kept), then
// while the log without the oldest segment is still at least
// RetentionBytes. The active segment is never deleted. It advances
// LogStartOffset and forgets expired producers. Files are unlinked at once;
// a reader that pinned a deleted segment keeps reading it until it releases
// it.
func (l *Log) EnforceRetention(now time.Time) (deletedSegments int, err error) {
	if err := l.writable(); err != nil {
		return 0, err
	}
	nowMs := now.UnixMilli()
	// Segments wholly below the log start whose deletion a cleaning job
	// deferred (DeleteRecordsBefore).
	for len(l.segs) > 1 && l.segs[1].base <= l.logStart && !l.cleanerHolds(l.segs[0]) {
		if err := l.deleteOldestSegment(); err != nil {
			return deletedSegments, err
		}
		deletedSegments++
	}
	if l.cfg.RetentionMs >= 0 && !l.cfg.NoDelete {
		for len(l.segs) > 1 && !l.cleanerHolds(l.segs[0]) {
			seg := l.segs[0]
			if err := l.ensureLoaded(seg); err != nil {
				return deletedSegments, err
			}
			// A closed segment compaction emptied holds nothing to keep;
			// else one without timestamps is kept.
			if seg.size > 0 && (seg.maxTimestamp == noTimestamp || nowMs-seg.maxTimestamp <= l.cfg.RetentionMs.Milliseconds()) {
				break
			}
			if err := l.deleteOldestSegment(); err != nil {
				return deletedSegments, err
			}
			deletedSegments++
		}
	}
	if l.cfg.RetentionBytes >= 0 && !l.cfg.NoDelete {
		for len(l.segs) > 1 && l.size-l.segs[0].size >= l.cfg.RetentionBytes && !l.cleanerHolds(l.segs[0]) {
			if err := l.deleteOldestSegment(); err != nil {
				return deletedSegments, err
			}
			deletedSegments++
		}
	}
	if l.producers.expire(nowMs, l.cfg.ProducerIDExpiration) > 0 {
		l.changes++
	}
	return deletedSegments, nil
}

// deleteOldestSegment drops the first segment and raises the log start.
func (l *Log) deleteOldestSegment() error {
	l.changes++
	seg := l.segs[0]
	copy(l.segs, l.segs[1:])
	l.segs[len(l.segs)-1] = nil
	l.segs = l.segs[:len(l.segs)-1]
	l.size -= seg.size
	l.logStart = max(l.logStart, l.segs[0].base)
	l.hw = max(l.hw, l.logStart)
	l.producers.dropAbortedBelow(l.logStart)
	return l.removeSegmentFiles(seg)
}

// DeleteRecordsBefore raises LogStartOffset to off (the DeleteRecords API)
// and deletes the segments wholly below it. off must not exceed the high
// watermark (ErrOffsetOutOfRange, as Kafka). The new log start is made
// durable by the shard's next checkpoint.
func (l *Log) DeleteRecordsBefore(off Offset) error {
	if err := l.writable(); err != nil {
		return err
	}
	l.changes++
	if off > l.hw {
		return ErrOffsetOutOfRange
	}
	if off <= l.logStart {
		return nil
	}
	l.logStart = off
	l.producers.dropAbortedBelow(off)
	// A segment a cleaning job reads goes at the next retention run.
	for len(l.segs) > 1 && l.segs[1].base <= off && !l.cleanerHolds(l.segs[0]) {
		if err := l.deleteOldestSegment(); err != nil {
			return err
		}
	}
	return nil
}

// TruncateTo removes every batch at or above off (replication: dropping a
// divergent tail). The log ends at the base offset of the batch that
// contained off. Truncation below the log start empties the log and
// restarts it at off. It syncs the truncation and rewrites the producer
// snapshot before returning, so the dropped tail cannot come back after a
// crash. A reader that pinned the truncated segment may see its bytes cut
// short: replication truncates only while no consumer can read past the
// high watermark it lowers.
func (l *Log) TruncateTo(off Offset) error {
	if err := l.writable(); err != nil {
		return err
	}
	if l.swapping {
		return ErrCleanerBusy
	}
	if l.tail != nil && !l.tail.idle() {
		return ErrTailBusy
	}
	l.changes++
	if off >= l.logEnd {
		return nil
	}
	l.truncGen++
	l.detachTail()
	if off < l.logStart || off < l.segs[0].base {
		return l.truncateFullyAndStartAt(off)
	}
	i := l.segmentFor(off)
	l.dropSegmentsFrom(i + 1)
	seg := l.segs[i]
	if err := l.ensureLoaded(seg); err != nil {
		return err
	}
	seg.rolled, seg.next = false, 0
	pos, h, found, err := l.findBatch(seg, off)
	if err != nil {
		return err
	}
	newEnd := off
	if found {
		newEnd = h.baseOffset
	}
	if err := seg.file.Truncate(pos); err != nil {
		return l.fail(err)
	}
	if err := seg.file.Datasync(); err != nil {
		return l.fail(err)
	}
	l.size -= seg.size - pos
	seg.size = pos
	if err := l.rebuildIndexes(seg); err != nil {
		return err
	}
	l.logEnd = newEnd
	if err := l.lowerCleanedTo(newEnd); err != nil { // the gaps below stay where they are
		return l.fail(err)
	}
	l.hw = min(l.hw, newEnd)
	l.recoveryPoint = min(l.recoveryPoint, newEnd)
	l.maxTimestampKnown = false
	if seg.size == 0 {
		l.rollStartMs = 0
	}
	if err := l.rebuildProducers(); err != nil {
		return err
	}
	if err := l.truncateEpochs(newEnd); err != nil {
		return l.fail(err)
	}
	if l.tail != nil {
		if err := l.openDirect(); err != nil {
			return l.fail(err)
		}
	}
	return l.persistTail(true)
}

// ResetTo empties the log and restarts it at off, which may lie past its
// end: a standby whose primary no longer has the offsets it would fetch
// next (retention deleted them) starts over at the primary's log start.
func (l *Log) ResetTo(off Offset) error {
	if err := l.writable(); err != nil {
		return err
	}
	if l.swapping {
		return ErrCleanerBusy
	}
	if l.tail != nil && !l.tail.idle() {
		return ErrTailBusy
	}
	l.changes++
	l.truncGen++
	l.detachTail()
	return l.truncateFullyAndStartAt(off)
}

func (l *Log) truncateFullyAndStartAt(off Offset) error {
	l.dropSegmentsFrom(0)
	seg, err := l.openSegment(off, true)
	if err != nil {
		return l.fail(err)
	}
	l.segs = append(l.segs, seg)
	l.logStart, l.logEnd, l.hw, l.recoveryPoint = off, off, off, off
	if err := l.lowerCleanedTo(0); err != nil {
		return l.fail(err)
	}
	l.maxTimestamp, l.maxTimestampKnown = noTimestamp, true
	l.producers = newProducerState()
	l.markDirChanged()
	if len(l.epochs) > 0 {
		l.epochs = nil
		if err := l.writeEpochs(); err != nil {
			return l.fail(err)
		}
	}
	if l.tail != nil {
		if err := l.openDirect(); err != nil {
			return l.fail(err)
		}
	}
	return l.persistTail(true)
}

// rebuildProducers recomputes the producer state after a truncation: from
// the snapshot if it is not past the new end, else from the log start.
func (l *Log) rebuildProducers() error {
	snap, err := l.readSnapshot()
	if err != nil {
		return err
	}
	from := l.segs[0].base
	l.producers = newProducerState()
	if snap != nil && snap.endOffset <= l.logEnd && snap.endOffset >= from {
		l.producers, from = snap.producers, snap.endOffset
	}
	return l.replayProducers(from, l.logEnd)
}
