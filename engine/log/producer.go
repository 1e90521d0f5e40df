package log

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"time"
)

// Idempotent producer state, following Kafka's ProducerStateManager and
// ProducerAppendInfo: per producer id the epoch and the metadata of its last
// five batches, enough to answer a retried batch with its original offsets.

// producerBatchesKept is Kafka's ProducerStateEntry.NUM_BATCHES_TO_RETAIN,
// which is also the producer's max.in.flight.requests.per.connection limit.
const producerBatchesKept = 5

var (
	// ErrOutOfOrderSequence is OUT_OF_ORDER_SEQUENCE_NUMBER.
	ErrOutOfOrderSequence = errors.New("log: out of order sequence number")
	// ErrInvalidProducerEpoch is INVALID_PRODUCER_EPOCH (the producer is fenced).
	ErrInvalidProducerEpoch = errors.New("log: invalid producer epoch")
)

// BatchMeta is what the log remembers of a producer's batch.
type BatchMeta struct {
	FirstSeq, LastSeq       int32
	FirstOffset, LastOffset Offset
	Timestamp               int64 // the batch's maxTimestamp
}

type producerEntry struct {
	epoch         int16
	batches       [producerBatchesKept]BatchMeta // ring, oldest at head
	head, n       int
	lastTimestamp int64
}

func (e *producerEntry) last() *BatchMeta {
	return &e.batches[(e.head+e.n-1)%producerBatchesKept]
}

type producerState struct {
	producers map[int64]*producerEntry
	// open: the first offset of each producer's open transaction;
	// aborted: the aborted transactions, in marker order (txn.go).
	open    map[int64]Offset
	aborted []AbortedTxn
}

func newProducerState() producerState {
	return producerState{producers: map[int64]*producerEntry{}, open: map[int64]Offset{}}
}

// CheckProducer validates the next batch of an idempotent producer against
// the state, before Append:
//
//   - a batch equal (epoch, firstSeq, lastSeq) to one of the producer's last
//     five is a retry: dup describes it (its original offsets) and the batch
//     must not be appended. dup points into the log's state and is valid
//     until the next Append.
//   - ErrInvalidProducerEpoch: the epoch is older than the producer's.
//   - ErrOutOfOrderSequence: a new epoch not starting at sequence 0, or a
//     sequence that does not follow the producer's last one.
//
// A producer with no state here (its state expired, or DeleteRecords and
// retention removed all its batches) may continue at any sequence: Kafka's
// ProducerAppendInfo accepts that since KIP-360 rather than answering
// UNKNOWN_PRODUCER_ID, and clients rely on it after a long pause.
func (l *Log) CheckProducer(pid int64, epoch int16, firstSeq, lastSeq int32) (dup *BatchMeta, err error) {
	e := l.producers.producers[pid]
	if e == nil {
		return nil, nil
	}
	if epoch == e.epoch {
		for i := 0; i < e.n; i++ {
			b := &e.batches[(e.head+i)%producerBatchesKept]
			if b.FirstSeq == firstSeq && b.LastSeq == lastSeq {
				return b, nil
			}
		}
	}
	switch {
	case epoch < e.epoch:
		return nil, ErrInvalidProducerEpoch
	case epoch > e.epoch:
		// A bumped epoch restarts the sequence.
		if firstSeq != 0 {
			return nil, ErrOutOfOrderSequence
		}
		return nil, nil
	}
	if e.n == 0 {
		return nil, nil
	}
	lastSeqKnown := e.last().LastSeq
	if firstSeq != lastSeqKnown+1 && !(firstSeq == 0 && lastSeqKnown == math.MaxInt32) {
		return nil, ErrOutOfOrderSequence
	}
	return nil, nil
}

// record adds an appended batch to the state.
func (p *producerState) record(h *batchHeader) {
	e := p.producers[h.producerID]
	if e == nil {
		e = &producerEntry{epoch: h.producerEpoch}
		p.producers[h.producerID] = e
	}
	if h.producerEpoch != e.epoch {
		e.epoch, e.head, e.n = h.producerEpoch, 0, 0
	}
	meta := BatchMeta{
		FirstSeq: h.baseSequence, LastSeq: h.lastSequence(),
		FirstOffset: h.baseOffset, LastOffset: h.lastOffset(),
		Timestamp: h.maxTimestamp,
	}
	if e.n < producerBatchesKept {
		e.batches[(e.head+e.n)%producerBatchesKept] = meta
		e.n++
	} else {
		e.batches[e.head] = meta
		e.head = (e.head + 1) % producerBatchesKept
	}
	e.lastTimestamp = h.maxTimestamp
}

// expire forgets producers whose last batch is older than the expiration
// (Kafka's producer.id.expiration.ms), keeping the map bounded.
// expire forgets producers idle for longer than expiration and returns
// how many it forgot.
func (p *producerState) expire(nowMs int64, expiration time.Duration) int {
	n := 0
	for pid, e := range p.producers {
		if _, open := p.open[pid]; open {
			continue // Kafka never expires a producer in a transaction
		}
		if nowMs-e.lastTimestamp >= expiration.Milliseconds() {
			delete(p.producers, pid)
			n++
		}
	}
	return n
}

// ProducerCount is the number of producers with state.
func (l *Log) ProducerCount() int { return len(l.producers.producers) }

const (
	snapshotName        = "producer.snapshot"
	snapshotMagic       = "SLPS"
	snapshotVersion     = 2 // 2: open and aborted transactions follow the producers
	snapshotHeaderSize  = 48
	snapshotEntrySize   = 20
	snapshotBatchSize   = 32
	snapshotOpenSize    = 16
	snapshotAbortedSize = 32
	snapshotCRCStart    = 12
	snapshotMaxProducer = 1 << 24 // bound on what a snapshot may claim
)

type snapshot struct {
	endOffset, tailBase Offset
	tailSize            int64
	rollStartMs         int64
	producers           producerState
}

// writeSnapshot writes producer.snapshot atomically at the log end offset.
// After Close and Checkpoint, which sync the data first, it never runs ahead
// of what is durable; CheckpointSynced uses it only when it has no capture
// below the recovery point (CaptureSnapshot), and then recovery rebuilds the
// producer state if the batches it describes did not survive.
func (l *Log) writeSnapshot() error {
	l.captured = false // superseded; and a truncation must not write it later
	l.buf = l.appendSnapshot(l.buf[:0])
	return writeFileAtomic(l.fs, filepath.Join(l.dir, snapshotName), l.buf)
}

// appendSnapshot appends the snapshot of the producer state at the log end
// offset to b.
func (l *Log) appendSnapshot(b []byte) []byte {
	act := l.active()
	b = append(b, snapshotMagic...)
	b = binary.BigEndian.AppendUint16(b, snapshotVersion)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint32(b, 0) // crc, below
	b = binary.BigEndian.AppendUint64(b, uint64(l.logEnd))
	b = binary.BigEndian.AppendUint64(b, uint64(act.base))
	b = binary.BigEndian.AppendUint64(b, uint64(act.size))
	b = binary.BigEndian.AppendUint64(b, uint64(l.rollStartMs))
	b = binary.BigEndian.AppendUint32(b, uint32(len(l.producers.producers)))
	for pid, e := range l.producers.producers {
		b = binary.BigEndian.AppendUint64(b, uint64(pid))
		b = binary.BigEndian.AppendUint16(b, uint16(e.epoch))
		b = append(b, byte(e.n), 0)
		b = binary.BigEndian.AppendUint64(b, uint64(e.lastTimestamp))
		for i := 0; i < e.n; i++ {
			m := &e.batches[(e.head+i)%producerBatchesKept]
			b = binary.BigEndian.AppendUint32(b, uint32(m.FirstSeq))
			b = binary.BigEndian.AppendUint32(b, uint32(m.LastSeq))
			b = binary.BigEndian.AppendUint64(b, uint64(m.FirstOffset))
			b = binary.BigEndian.AppendUint64(b, uint64(m.LastOffset))
			b = binary.BigEndian.AppendUint64(b, uint64(m.Timestamp))
		}
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(l.producers.open)))
	for pid, first := range l.producers.open {
		b = binary.BigEndian.AppendUint64(b, uint64(pid))
		b = binary.BigEndian.AppendUint64(b, uint64(first))
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(l.producers.aborted)))
	for _, a := range l.producers.aborted {
		b = binary.BigEndian.AppendUint64(b, uint64(a.ProducerID))
		b = binary.BigEndian.AppendUint64(b, uint64(a.FirstOffset))
		b = binary.BigEndian.AppendUint64(b, uint64(a.LastOffset))
		b = binary.BigEndian.AppendUint64(b, uint64(a.LastStableOffset))
	}
	binary.BigEndian.PutUint32(b[8:], crc32.Checksum(b[snapshotCRCStart:], castagnoli))
	return b
}

// readSnapshot returns the snapshot, or nil if it is missing or invalid
// (then the state is rebuilt from the log).
func (l *Log) readSnapshot() (*snapshot, error) {
	b, err := l.readWhole(filepath.Join(l.dir, snapshotName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	s, ok := decodeSnapshot(b)
	if !ok {
		return nil, nil
	}
	return s, nil
}

func decodeSnapshot(b []byte) (*snapshot, bool) {
	if len(b) < snapshotHeaderSize || string(b[:4]) != snapshotMagic {
		return nil, false
	}
	version := binary.BigEndian.Uint16(b[4:])
	if version < 1 || version > snapshotVersion || binary.BigEndian.Uint32(b[8:]) != crc32.Checksum(b[snapshotCRCStart:], castagnoli) {
		return nil, false
	}
	s := &snapshot{
		endOffset:   Offset(binary.BigEndian.Uint64(b[12:])),
		tailBase:    Offset(binary.BigEndian.Uint64(b[20:])),
		tailSize:    int64(binary.BigEndian.Uint64(b[28:])),
		rollStartMs: int64(binary.BigEndian.Uint64(b[36:])),
		producers:   newProducerState(),
	}
	count := binary.BigEndian.Uint32(b[44:])
	rest := b[snapshotHeaderSize:]
	if uint64(count)*snapshotEntrySize > uint64(len(rest)) || count > snapshotMaxProducer {
		return nil, false
	}
	for range count {
		if len(rest) < snapshotEntrySize {
			return nil, false
		}
		pid := int64(binary.BigEndian.Uint64(rest))
		e := &producerEntry{epoch: int16(binary.BigEndian.Uint16(rest[8:])), n: int(rest[10])}
		e.lastTimestamp = int64(binary.BigEndian.Uint64(rest[12:]))
		rest = rest[snapshotEntrySize:]
		if e.n > producerBatchesKept || len(rest) < e.n*snapshotBatchSize {
			return nil, false
		}
		for i := 0; i < e.n; i++ {
			e.batches[i] = BatchMeta{
				FirstSeq:    int32(binary.BigEndian.Uint32(rest)),
				LastSeq:     int32(binary.BigEndian.Uint32(rest[4:])),
				FirstOffset: Offset(binary.BigEndian.Uint64(rest[8:])),
				LastOffset:  Offset(binary.BigEndian.Uint64(rest[16:])),
				Timestamp:   int64(binary.BigEndian.Uint64(rest[24:])),
			}
			rest = rest[snapshotBatchSize:]
		}
		s.producers.producers[pid] = e
	}
	if version >= 2 {
		var ok bool
		if rest, ok = decodeTxnState(rest, &s.producers, s.endOffset); !ok {
			return nil, false
		}
	}
	if len(rest) != 0 {
		return nil, false
	}
	return s, true
}

// decodeTxnState decodes a snapshot's open and aborted transactions
// (version 2) into p and returns what follows them.
func decodeTxnState(rest []byte, p *producerState, end Offset) ([]byte, bool) {
	if len(rest) < 4 {
		return nil, false
	}
	count := binary.BigEndian.Uint32(rest)
	rest = rest[4:]
	if uint64(count)*snapshotOpenSize > uint64(len(rest)) {
		return nil, false
	}
	for range count {
		first := Offset(binary.BigEndian.Uint64(rest[8:]))
		if first >= end {
			return nil, false
		}
		p.open[int64(binary.BigEndian.Uint64(rest))] = first
		rest = rest[snapshotOpenSize:]
	}
	if len(rest) < 4 {
		return nil, false
	}
	count = binary.BigEndian.Uint32(rest)
	rest = rest[4:]
	if uint64(count)*snapshotAbortedSize > uint64(len(rest)) {
		return nil, false
	}
	p.aborted = make([]AbortedTxn, 0, count)
	for range count {
		a := AbortedTxn{
			ProducerID:       int64(binary.BigEndian.Uint64(rest)),
			FirstOffset:      Offset(binary.BigEndian.Uint64(rest[8:])),
			LastOffset:       Offset(binary.BigEndian.Uint64(rest[16:])),
			LastStableOffset: Offset(binary.BigEndian.Uint64(rest[24:])),
		}
		if a.LastOffset >= end || a.FirstOffset > a.LastOffset || len(p.aborted) > 0 && p.aborted[len(p.aborted)-1].LastOffset >= a.LastOffset {
			return nil, false
		}
		p.aborted = append(p.aborted, a)
		rest = rest[snapshotAbortedSize:]
	}
	return rest, true
}
