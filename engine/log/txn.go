package log

import (
	"encoding/binary"
	"io"
	"slices"
	"sort"
)

// Transactions in the log, following Kafka's ProducerStateManager (each
// producer's open transaction), TransactionIndex (the aborted transactions)
// and the last stable offset.
//
// A transactional batch (attribute bit 4) of a producer with no open
// transaction opens one at its base offset. A control batch of the same
// producer (a marker the transaction coordinator writes) closes it: a
// commit makes its records visible to read_committed readers, an abort
// records the transaction in the aborted list, which read_committed
// fetches return so that clients skip its records. The last stable offset
// is the first offset of the earliest open transaction, or the high
// watermark: read_committed readers read below it.
//
// The state is part of the producer state: rebuilt by the same replay
// (recovery, truncation) and saved in the same snapshot, at the same
// offset, so the two never disagree. Departure from Kafka: the aborted
// transactions are kept in that snapshot, not in one .txnindex file per
// segment; retention drops the ones that end below the log start.

// Control record types (Kafka's ControlRecordType).
const (
	ControlAbort  int16 = 0
	ControlCommit int16 = 1
	controlNone   int16 = -1 // not a control batch, or not one understood
)

const attrTransactional = 1 << 4

// AbortedTxn is one aborted transaction of a partition: its producer, its
// first offset and the offset of its abort marker (LastOffset).
// LastStableOffset is the last stable offset when the marker was written,
// as Kafka's index keeps it.
type AbortedTxn struct {
	ProducerID       int64
	FirstOffset      Offset
	LastOffset       Offset
	LastStableOffset Offset
}

// controlTypeOf returns the control type of an uncompressed control batch
// (the first record's key: version int16, type int16), or controlNone.
func controlTypeOf(batch []byte) int16 {
	if len(batch) <= batchHeaderSize {
		return controlNone
	}
	h := parseHeader(batch)
	if h.attributes&attrControl == 0 || h.attributes&0x7 != 0 {
		return controlNone
	}
	b := batch[batchHeaderSize:]
	// record: length, attributes int8, timestampDelta, offsetDelta,
	// keyLength, key (zigzag varints).
	if _, n := binary.Varint(b); n > 0 {
		b = b[n:]
	} else {
		return controlNone
	}
	if len(b) < 1 {
		return controlNone
	}
	b = b[1:]
	for range 2 {
		_, n := binary.Varint(b)
		if n <= 0 {
			return controlNone
		}
		b = b[n:]
	}
	keyLen, n := binary.Varint(b)
	if n <= 0 || keyLen < 4 || int64(len(b)-n) < keyLen {
		return controlNone
	}
	key := b[n:]
	return int16(binary.BigEndian.Uint16(key[2:]))
}

// controlTypeAt reads the control type of the control batch whose header
// is at pos of r. A failed read is an error, never "not a marker": that
// would close a transaction as if committed.
func controlTypeAt(r io.ReaderAt, pos int64, h *batchHeader) (int16, error) {
	var buf [batchHeaderSize + 32]byte
	n := min(int64(len(buf)), h.size())
	if k, err := r.ReadAt(buf[:n], pos); int64(k) < n {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return controlNone, err
	}
	return controlTypeOf(buf[:n]), nil
}

// apply adds an appended or replayed batch to the state: idempotence for
// data batches, transactions for transactional ones. ctl is the control
// type of a control batch (controlNone otherwise).
func (p *producerState) apply(h *batchHeader, ctl int16, hw Offset) {
	if h.producerID < 0 {
		return
	}
	if h.attributes&attrControl == 0 {
		p.record(h)
		if h.attributes&attrTransactional != 0 {
			if _, open := p.open[h.producerID]; !open {
				p.open[h.producerID] = h.baseOffset
			}
		}
		return
	}
	if ctl != ControlAbort && ctl != ControlCommit {
		return // a control type this code does not know: Kafka ignores it
	}
	// A marker: it ends the producer's open transaction, if any, and
	// carries the producer's epoch, which it raises here even where the
	// producer has no state yet, as Kafka's appendEndTxnMarker does: a
	// fenced producer's batch that arrives after the marker is refused
	// (INVALID_PRODUCER_EPOCH) rather than opening a transaction nothing
	// would close.
	switch e := p.producers[h.producerID]; {
	case e == nil:
		p.producers[h.producerID] = &producerEntry{epoch: h.producerEpoch, lastTimestamp: h.maxTimestamp}
	case h.producerEpoch > e.epoch:
		e.epoch, e.head, e.n = h.producerEpoch, 0, 0
	}
	first, open := p.open[h.producerID]
	if !open {
		return
	}
	delete(p.open, h.producerID)
	if ctl == ControlAbort {
		p.aborted = append(p.aborted, AbortedTxn{
			ProducerID: h.producerID, FirstOffset: first, LastOffset: h.baseOffset,
			LastStableOffset: min(p.firstUnstable(), hw),
		})
	}
}

// firstUnstable is the first offset of the earliest open transaction, or
// the largest offset when none is open.
func (p *producerState) firstUnstable() Offset {
	first := Offset(1<<63 - 1)
	for _, off := range p.open {
		first = min(first, off)
	}
	return first
}

// dropAbortedBelow forgets aborted transactions that end below start
// (retention, DeleteRecords).
func (p *producerState) dropAbortedBelow(start Offset) {
	i := sort.Search(len(p.aborted), func(i int) bool { return p.aborted[i].LastOffset >= start })
	if i > 0 {
		p.aborted = slices.Delete(p.aborted, 0, i)
	}
}

// LastStableOffset is the end of what read_committed readers may read:
// the first offset of the earliest open transaction, at most the high
// watermark (and at least the log start: what lies below it is gone).
func (l *Log) LastStableOffset() Offset {
	return max(min(l.producers.firstUnstable(), l.hw), l.logStart)
}

// OpenTransactions is how many producers have an open transaction.
func (l *Log) OpenTransactions() int { return len(l.producers.open) }

// OpenTransaction returns the first offset of pid's open transaction.
func (l *Log) OpenTransaction(pid int64) (Offset, bool) {
	off, ok := l.producers.open[pid]
	return off, ok
}

// AbortedTxns appends to dst the aborted transactions with records in
// [from, to): those whose marker is at or past from and that began
// before to, as a read_committed fetch of that range reports them.
func (l *Log) AbortedTxns(dst []AbortedTxn, from, to Offset) []AbortedTxn {
	ab := l.producers.aborted
	for i := sort.Search(len(ab), func(i int) bool { return ab[i].LastOffset >= from }); i < len(ab); i++ {
		if ab[i].FirstOffset < to {
			dst = append(dst, ab[i])
		}
	}
	return dst
}

// ProducerInfo is one producer's state in a partition (DescribeProducers).
type ProducerInfo struct {
	ProducerID    int64
	Epoch         int16
	LastSequence  int32 // -1 when no batch of the epoch is remembered
	LastTimestamp int64
	TxnStart      Offset // first offset of its open transaction, -1 if none
}

// Producers appends to dst every producer with state in the log, by id.
func (l *Log) Producers(dst []ProducerInfo) []ProducerInfo {
	start := len(dst)
	for pid, e := range l.producers.producers {
		info := ProducerInfo{ProducerID: pid, Epoch: e.epoch, LastSequence: -1, LastTimestamp: e.lastTimestamp, TxnStart: -1}
		if e.n > 0 {
			info.LastSequence = e.last().LastSeq
		}
		if first, ok := l.producers.open[pid]; ok {
			info.TxnStart = first
		}
		dst = append(dst, info)
	}
	for pid, first := range l.producers.open {
		if _, ok := l.producers.producers[pid]; !ok {
			dst = append(dst, ProducerInfo{ProducerID: pid, LastSequence: -1, TxnStart: first})
		}
	}
	slices.SortFunc(dst[start:], func(a, b ProducerInfo) int { return cmpInt64(a.ProducerID, b.ProducerID) })
	return dst
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
