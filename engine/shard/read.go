package shard

import (
	"errors"

	"github.com/sluice-broker/sluice/engine/log"
	"github.com/sluice-broker/sluice/engine/storage"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/records"
)

// ReadResult is one partition's part of a fetch: offsets, and the pinned
// file range of whole batches to send (Data.Len 0 when there is nothing).
type ReadResult struct {
	Err            kerr.Code
	HighWatermark  int64
	LastStable     int64
	LogStartOffset int64
	Data           log.ReadResult
	HasData        bool
	// Aborted: for a read_committed read, the aborted transactions with
	// records in what Data holds (the reader skips their records).
	Aborted []log.AbortedTxn
}

// readMode is whose read it is: a consumer's up to the high watermark
// (read_uncommitted) or the last stable offset (read_committed), or the
// standby's up to what this node has written.
type readMode uint8

const (
	readUncommitted readMode = iota
	readCommitted
	readReplica
)

// ReadWritten is Read up to what this node has written rather than the
// high watermark: a standby replays its metadata log to its end, since
// that log, not the acknowledgement, is what a promotion would go by.
func (s *Shard) ReadWritten(k Key, offset int64, maxBytes int) ReadResult {
	p, ok := s.parts[k]
	if !ok {
		return notLeaderRead
	}
	return s.readAs(p, offset, maxBytes, true, readReplica)
}

// Read returns the batches from offset on, at most maxBytes unless the first
// batch alone is larger and minOneBatch is set. Data is pinned: the caller
// releases it (Data.Seg.Release) after sending, from any goroutine. Read
// may wait for the device on the shard thread: fetches use ReadAsync.
func (s *Shard) Read(k Key, offset int64, maxBytes int, minOneBatch bool) ReadResult {
	p, ok := s.parts[k]
	if !ok {
		return notLeaderRead
	}
	return s.read(p, offset, maxBytes, minOneBatch)
}

var notLeaderRead = ReadResult{Err: kerr.NotLeaderOrFollower, HighWatermark: -1, LastStable: -1, LogStartOffset: -1}

// ReadWaiter receives the answer of a ReadAsync.
type ReadWaiter interface {
	// ReadDone is called once, on the shard thread.
	ReadDone(ReadResult)
}

// ReadAsync is Read that never waits for the device on the shard thread:
// what the page cache and the tail cache do not hold is read
// asynchronously (coldread.go) and w answered once it is in. An answer
// from memory comes before ReadAsync returns.
func (s *Shard) ReadAsync(k Key, offset int64, maxBytes int, minOneBatch bool, w ReadWaiter) {
	s.readTryAs(k, offset, maxBytes, minOneBatch, w, nil, readUncommitted)
}

// ReadCommittedAsync is ReadAsync for a read_committed consumer: up to the
// last stable offset, with the aborted transactions in what it returns.
func (s *Shard) ReadCommittedAsync(k Key, offset int64, maxBytes int, w ReadWaiter) {
	s.readTryAs(k, offset, maxBytes, true, w, nil, readCommitted)
}

// readTryAs reads as mode says.
func (s *Shard) readTryAs(k Key, offset int64, maxBytes int, minOneBatch bool, w ReadWaiter, a *coldRetry, mode readMode) {
	p, ok := s.parts[k]
	if !ok {
		a.end(s)
		w.ReadDone(notLeaderRead)
		return
	}
	var res ReadResult
	wb := s.noWait(p, a, func() { res = s.readAs(p, offset, maxBytes, minOneBatch, mode) })
	if wb != nil {
		res.Data.Release()
		if a == nil {
			a = &coldRetry{}
		}
		if s.fetchFor(p, a, wb, func() { s.readTryAs(k, offset, maxBytes, minOneBatch, w, a, mode) }) {
			return
		}
		res = s.readAs(p, offset, maxBytes, minOneBatch, mode)
	}
	a.end(s)
	w.ReadDone(res)
}

func (s *Shard) read(p *Partition, offset int64, maxBytes int, minOneBatch bool) ReadResult {
	return s.readAs(p, offset, maxBytes, minOneBatch, readUncommitted)
}

func (s *Shard) readAs(p *Partition, offset int64, maxBytes int, minOneBatch bool, mode readMode) ReadResult {
	lso := p.Log.LastStableOffset()
	upTo := p.Log.HighWatermark()
	switch mode {
	case readReplica:
		upTo = p.replicableEnd()
	case readCommitted:
		upTo = lso
	}
	res := ReadResult{
		HighWatermark:  int64(p.Log.HighWatermark()),
		LastStable:     int64(lso),
		LogStartOffset: int64(p.Log.LogStartOffset()),
	}
	if offset < res.LogStartOffset || offset > int64(p.Log.LogEndOffset()) {
		res.Err = kerr.OffsetOutOfRange
		return res
	}
	if offset >= int64(upTo) || maxBytes <= 0 && !minOneBatch {
		return res
	}
	data, err := p.Log.Read(log.Offset(offset), maxBytes, minOneBatch, upTo)
	switch {
	case errors.Is(err, log.ErrOffsetOutOfRange):
		res.Err = kerr.OffsetOutOfRange
	case err != nil:
		res.Err = kerr.KafkaStorageError
	default:
		res.Data = data
		res.HasData = data.Len > 0
		if !res.HasData {
			data.Release()
			res.Data = log.ReadResult{}
		} else if mode == readCommitted {
			res.Aborted = p.Log.AbortedTxns(nil, log.Offset(offset), log.Offset(data.NextOffset))
		}
	}
	return res
}

// Park arranges for ch to receive once the partition's high watermark moves
// past after (at once if it already has). Long-poll fetches wait on it.
func (s *Shard) Park(k Key, after int64, ch chan struct{}) {
	p, ok := s.parts[k]
	if !ok || int64(p.Log.HighWatermark()) > after {
		select {
		case ch <- struct{}{}:
		default:
		}
		return
	}
	p.parked = append(p.parked, ch)
}

// Offsets are a partition's bounds.
type Offsets struct {
	Err            kerr.Code
	LogStartOffset int64
	HighWatermark  int64
	LogEndOffset   int64
}

// PartitionOffsets reads a partition's bounds.
func (s *Shard) PartitionOffsets(k Key) Offsets {
	p, ok := s.parts[k]
	if !ok {
		return Offsets{Err: kerr.NotLeaderOrFollower}
	}
	return Offsets{LogStartOffset: int64(p.Log.LogStartOffset()), HighWatermark: int64(p.Log.HighWatermark()), LogEndOffset: int64(p.Log.LogEndOffset())}
}

// ListOffsets timestamps with special meaning, as in the ListOffsets API.
const (
	LatestTimestamp   = -1
	EarliestTimestamp = -2
	MaxTimestamp      = -3
	EarliestLocal     = -4
	LatestTiered      = -5
)

// ListOffset answers one partition of ListOffsets: the offset (and its
// timestamp) for a timestamp or one of the special values. done runs on
// the shard thread, perhaps later: the batch headers and the batch it
// reads are read without blocking the shard, like a fetch's.
func (s *Shard) ListOffset(k Key, timestamp int64, done func(offset, ts int64, code kerr.Code)) {
	s.listTry(k, timestamp, done, nil)
}

// ListOffsetCommitted is ListOffset for a read_committed client: the
// latest offset is the last stable offset.
func (s *Shard) ListOffsetCommitted(k Key, timestamp int64, done func(offset, ts int64, code kerr.Code)) {
	if p, ok := s.parts[k]; ok && timestamp == LatestTimestamp {
		done(int64(p.Log.LastStableOffset()), -1, kerr.None)
		return
	}
	s.listTry(k, timestamp, done, nil)
}

func (s *Shard) listTry(k Key, timestamp int64, done func(offset, ts int64, code kerr.Code), a *coldRetry) {
	p, ok := s.parts[k]
	if !ok {
		a.end(s)
		done(-1, -1, kerr.NotLeaderOrFollower)
		return
	}
	switch timestamp {
	case LatestTimestamp:
		done(int64(p.Log.HighWatermark()), -1, kerr.None)
		return
	case EarliestTimestamp, EarliestLocal:
		done(int64(p.Log.LogStartOffset()), -1, kerr.None)
		return
	case LatestTiered:
		done(-1, -1, kerr.None)
		return
	}
	if timestamp < 0 && timestamp != MaxTimestamp {
		done(-1, -1, kerr.InvalidRequest)
		return
	}
	var (
		data  log.ReadResult
		match func(int64) bool
		code  kerr.Code
	)
	wb := s.noWait(p, a, func() { data, match, code = s.locate(p, timestamp) })
	if wb != nil {
		data.Release()
		if a == nil {
			a = &coldRetry{}
		}
		if s.fetchFor(p, a, wb, func() { s.listTry(k, timestamp, done, a) }) {
			return
		}
		data, match, code = s.locate(p, timestamp)
	}
	a.end(s)
	if data.Len == 0 {
		done(-1, -1, code)
		return
	}
	// The batch itself: from memory, the page cache, or read without
	// blocking. ListOffsets is rare, so reading (and, if need be,
	// decompressing) one batch here is fine.
	if data.Mem != nil || data.File == nil {
		b, _ := data.Bytes()
		data.Release()
		done(recordAt(b, match))
		return
	}
	buf := make([]byte, data.Len)
	n, err := data.File.ReadAtNoWait(buf, int64(data.Pos))
	if err == nil && n == len(buf) {
		data.Release()
		done(recordAt(buf, match))
		return
	}
	if !errors.Is(err, storage.ErrWouldBlock) {
		data.Release()
		done(-1, -1, kerr.KafkaStorageError)
		return
	}
	s.cold.Reads++
	s.readInto(data.File, int64(data.Pos), len(buf), buf, func(_ []byte, err error) {
		data.Release()
		if err != nil {
			done(-1, -1, kerr.KafkaStorageError)
			return
		}
		done(recordAt(buf, match))
	})
}

// locate finds the batch ListOffsets answers from (data.Len 0 when none:
// code says whether that is an error) and how to match its record.
func (s *Shard) locate(p *Partition, timestamp int64) (data log.ReadResult, match func(int64) bool, code kerr.Code) {
	var off log.Offset
	if timestamp == MaxTimestamp {
		t, o := p.Log.MaxTimestamp()
		if o < 0 || o >= p.Log.HighWatermark() {
			return log.ReadResult{}, nil, kerr.None
		}
		// The log knows the batch; Kafka answers the record.
		off, match = o, func(ts int64) bool { return ts == t }
	} else {
		o, _, ok := p.Log.OffsetForTimestamp(timestamp)
		if !ok || o >= p.Log.HighWatermark() {
			return log.ReadResult{}, nil, kerr.None
		}
		off, match = o, func(ts int64) bool { return ts >= timestamp }
	}
	data, err := p.Log.Read(off, 1, true, p.Log.HighWatermark())
	if err != nil || data.Len == 0 {
		data.Release()
		return log.ReadResult{}, nil, kerr.KafkaStorageError
	}
	return data, match, kerr.None
}

// recordAt finds, in the batch at the start of buf, the first record whose
// timestamp satisfies match, and answers its offset and timestamp.
func recordAt(buf []byte, match func(ts int64) bool) (int64, int64, kerr.Code) {
	it := records.NewIter(buf)
	batch, h, ok := it.Next()
	if !ok {
		return -1, -1, kerr.KafkaStorageError
	}
	if h.LogAppendTime() {
		// Every record of the batch carries the append time.
		return h.BaseOffset, h.MaxTimestamp, kerr.None
	}
	off, ts := int64(-1), int64(-1)
	errFound := errors.New("found")
	err := records.ForEachRecord(batch, nil, func(r *records.Record) error {
		t := h.BaseTimestamp + r.TimestampDelta
		if match(t) {
			off, ts = h.BaseOffset+int64(r.OffsetDelta), t
			return errFound
		}
		return nil
	})
	if err != nil && !errors.Is(err, errFound) {
		return -1, -1, kerr.KafkaStorageError
	}
	if off < 0 {
		// The batch's max timestamp matched, so a record must have; fall
		// back to the batch rather than answer nothing.
		return h.BaseOffset, h.MaxTimestamp, kerr.None
	}
	return off, ts, kerr.None
}

// DeleteRecords raises the log start offset to offset (-1 means the high
// watermark), deletes the segments wholly below it, and calls done (on the
// shard thread) with the new low watermark.
func (s *Shard) DeleteRecords(k Key, offset int64, done func(low int64, code kerr.Code)) {
	p, ok := s.parts[k]
	if !ok || s.standby {
		done(-1, kerr.NotLeaderOrFollower)
		return
	}
	s.whenSyncIdle(p, func() {
		if offset == -1 {
			offset = int64(p.Log.HighWatermark())
		}
		if offset < 0 || offset > int64(p.Log.HighWatermark()) {
			done(-1, kerr.OffsetOutOfRange)
			return
		}
		if offset > int64(p.Log.LogStartOffset()) {
			if err := p.Log.DeleteRecordsBefore(log.Offset(offset)); err != nil {
				done(-1, kerr.KafkaStorageError)
				return
			}
			// The new log start must survive a crash: record it now.
			if err := s.writeCheckpointEntries(false); err != nil {
				done(-1, kerr.KafkaStorageError)
				return
			}
		}
		done(int64(p.Log.LogStartOffset()), kerr.None)
	})
}

// Unpark removes a long-poll wait registered with Park.
func (s *Shard) Unpark(k Key, ch chan struct{}) {
	p, ok := s.parts[k]
	if !ok {
		return
	}
	for i, c := range p.parked {
		if c == ch {
			p.parked = append(p.parked[:i], p.parked[i+1:]...)
			return
		}
	}
}
