package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// A private reader of the 61-byte RecordBatch v2 header: the log needs only
// framing, offsets, timestamps and producer fields, never the records.

const (
	batchHeaderSize   = 61
	batchFrameSize    = 12 // baseOffset + length: bytes not counted by length
	batchMinLength    = batchHeaderSize - batchFrameSize
	batchMagic        = 2
	batchCRCStart     = 21
	attrLogAppendTime = 1 << 3
	attrControl       = 1 << 5

	offBaseOffset      = 0
	offBatchLength     = 8
	offMagic           = 16
	offCRC             = 17
	offAttributes      = 21
	offLastOffsetDelta = 23
	offMaxTimestamp    = 35
	offProducerID      = 43
	offProducerEpoch   = 51
	offBaseSequence    = 53
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorruptBatch reports bytes given to Append that are not whole v2 batches.
var ErrCorruptBatch = errors.New("log: malformed record batch")

// CRCError is AppendCheckingCRC's refusal of a batch whose CRC-32C does not
// match its bytes; it matches ErrCorruptBatch.
type CRCError struct {
	Batch              int // its index in the appended set
	Stored, Calculated uint32
}

func (e *CRCError) Error() string {
	return fmt.Sprintf("log: batch %d of the set: crc %#08x, computed %#08x", e.Batch, e.Stored, e.Calculated)
}

func (e *CRCError) Is(target error) bool { return target == ErrCorruptBatch }

// batchHeader is the part of a batch header the log uses.
type batchHeader struct {
	baseOffset      Offset
	length          int32 // bytes after the length field
	leaderEpoch     int32 // partitionLeaderEpoch
	magic           int8
	crc             uint32
	attributes      int16
	lastOffsetDelta int32
	maxTimestamp    int64
	producerID      int64
	producerEpoch   int16
	baseSequence    int32
}

func (h *batchHeader) size() int64        { return batchFrameSize + int64(h.length) }
func (h *batchHeader) lastOffset() Offset { return h.baseOffset + Offset(h.lastOffsetDelta) }

// lastSequence is baseSequence+lastOffsetDelta wrapped as Kafka does.
func (h *batchHeader) lastSequence() int32 {
	return int32((int64(h.baseSequence) + int64(h.lastOffsetDelta)) % (1 << 31))
}

func parseHeader(b []byte) batchHeader {
	_ = b[batchHeaderSize-1]
	return batchHeader{
		baseOffset:      Offset(binary.BigEndian.Uint64(b[offBaseOffset:])),
		length:          int32(binary.BigEndian.Uint32(b[offBatchLength:])),
		leaderEpoch:     int32(binary.BigEndian.Uint32(b[offBatchLength+4:])),
		magic:           int8(b[offMagic]),
		crc:             binary.BigEndian.Uint32(b[offCRC:]),
		attributes:      int16(binary.BigEndian.Uint16(b[offAttributes:])),
		lastOffsetDelta: int32(binary.BigEndian.Uint32(b[offLastOffsetDelta:])),
		maxTimestamp:    int64(binary.BigEndian.Uint64(b[offMaxTimestamp:])),
		producerID:      int64(binary.BigEndian.Uint64(b[offProducerID:])),
		producerEpoch:   int16(binary.BigEndian.Uint16(b[offProducerEpoch:])),
		baseSequence:    int32(binary.BigEndian.Uint32(b[offBaseSequence:])),
	}
}

// framingOK checks what can be checked from the header alone.
func (h *batchHeader) framingOK() bool {
	return h.magic == batchMagic && h.length >= batchMinLength && h.lastOffsetDelta >= 0
}

func batchCRC(batch []byte) uint32 { return crc32.Checksum(batch[batchCRCStart:], castagnoli) }
