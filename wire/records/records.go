// Package records reads, validates, mutates and builds Kafka RecordBatch v2
// (magic 2), the only record format sluice accepts and stores.
//
// A record set (the records field of a Produce request, a Fetch response's
// records, a segment file) is batches laid end to end. All integers are
// big-endian; the batch is 12 bytes of framing followed by batchLength bytes:
//
//	offset  size  field
//	     0     8  baseOffset            int64   first offset of the batch    ┐ outside the CRC,
//	     8     4  batchLength           int32   bytes after this field       │ rewritten in place
//	    12     4  partitionLeaderEpoch  int32   set by the leader            ┘ by the broker
//	    16     1  magic                 int8    2 (0 and 1 are the legacy formats, also at byte 16)
//	    17     4  crc                   uint32  CRC-32C (Castagnoli) of bytes 21..end
//	    21     2  attributes            int16   ┐
//	    23     4  lastOffsetDelta       int32   │
//	    27     8  baseTimestamp         int64   │
//	    35     8  maxTimestamp          int64   │ covered
//	    43     8  producerId            int64   │ by the
//	    51     2  producerEpoch         int16   │ CRC
//	    53     4  baseSequence          int32   │
//	    57     4  recordCount           int32   │
//	    61     -  records (compressed as one blob when attributes bits 0-2 != 0)
//
//	+--------------+-------------+-------------+-------+-----------+------------+-----------------+
//	| baseOffset 8 | batchLen 4  | leaderEp 4  | mag 1 | crc 4     | attrs 2    | lastOffDelta 4  |
//	+--------------+-------------+-------------+-------+-----------+------------+-----------------+
//	| baseTimestamp 8 | maxTimestamp 8 | producerId 8 | prodEpoch 2 | baseSeq 4 | count 4 | records |
//	+-----------------+----------------+--------------+-------------+-----------+---------+---------+
//
// Attributes:
//
//	bits 0-2  compression codec (none 0, gzip 1, snappy 2, lz4 3, zstd 4)
//	bit  3    timestamp type (0 CreateTime, 1 LogAppendTime: maxTimestamp is every record's time)
//	bit  4    transactional
//	bit  5    control batch (transaction markers; not allowed from clients)
//	bit  6    hasDeleteHorizonMs (set by compaction; baseTimestamp is then the delete horizon)
//
// Each record is laid out with zigzag varints (varint: at most 5 bytes,
// int32; varlong: at most 10 bytes, int64), a length of -1 meaning null:
//
//	+------------+------------+-------------------+----------------+----------------+-----+
//	| length vi  | attrs int8 | timestampDelta vl | offsetDelta vi | keyLength vi   | key |
//	+------------+------------+-------------------+----------------+----------------+-----+
//	| valueLength vi | value | headerCount vi | headers...                                  |
//	+----------------+-------+----------------+---------------------------------------------+
//	header: | keyLength vi (never null) | key (UTF-8) | valueLength vi | value |
//
// length counts the bytes after itself. A record's offset is baseOffset +
// offsetDelta, its timestamp baseTimestamp + timestampDelta (CreateTime) or
// maxTimestamp (LogAppendTime); its sequence is baseSequence + offsetDelta.
//
// Everything here works on slices of the caller's buffer: parsing,
// validation and iteration allocate nothing, so the produce path can check
// and store batches without copying them.
package records

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"

	"github.com/sluice-broker/sluice/wire/compress"
)

// Layout of the batch header.
const (
	HeaderSize = 61 // bytes from baseOffset through recordCount

	// frameSize is the part of the header not counted by batchLength.
	frameSize = 12
	// minBatchLength is the smallest valid batchLength: a header with no records.
	minBatchLength = HeaderSize - frameSize

	offsetBaseOffset           = 0
	offsetBatchLength          = 8
	offsetPartitionLeaderEpoch = 12
	offsetMagic                = 16
	offsetCRC                  = 17
	offsetAttributes           = 21
	offsetLastOffsetDelta      = 23
	offsetBaseTimestamp        = 27
	offsetMaxTimestamp         = 35
	offsetProducerID           = 43
	offsetProducerEpoch        = 51
	offsetBaseSequence         = 53
	offsetRecordCount          = 57
)

// Magic is the only supported record format version.
const Magic = 2

// Attribute bits.
const (
	AttrCodecMask          int16 = 0x07
	AttrLogAppendTime      int16 = 0x08
	AttrTransactional      int16 = 0x10
	AttrControl            int16 = 0x20
	AttrHasDeleteHorizonMs int16 = 0x40
)

// Errors. Each is returned wrapped with detail; test with errors.Is. The
// produce path maps them to Kafka error codes: ErrUnsupportedMagic to
// UNSUPPORTED_FOR_MESSAGE_FORMAT, ErrCorrupt and ErrTruncated to
// CORRUPT_MESSAGE, ErrInvalidRecord to INVALID_RECORD.
var (
	// ErrTruncated: the bytes end inside a batch.
	ErrTruncated = errors.New("records: truncated batch")
	// ErrCorrupt: the CRC does not match, or the batch length is impossible.
	ErrCorrupt = errors.New("records: corrupt batch")
	// ErrUnsupportedMagic: the magic byte is not 2.
	ErrUnsupportedMagic = errors.New("records: unsupported message format (magic)")
	// ErrInvalidRecord: the header is intact but its fields or its records
	// break the format's rules (counts, offsets deltas, lengths).
	ErrInvalidRecord = errors.New("records: invalid record")
	// ErrZeroTail: the remaining bytes start with a zero baseOffset and
	// batchLength, as preallocated, never written space does. A recovery
	// scan stops there without treating it as a torn write.
	ErrZeroTail = errors.New("records: zero-filled tail")
)

// MaxDecompressedBytes bounds how large a compressed batch may decompress
// to in ValidateDeep, ForEachRecord and Recompress, a guard against
// decompression bombs. Set it once at startup, before use.
var MaxDecompressedBytes = 128 << 20

// Header is the decoded 61-byte batch header.
type Header struct {
	BaseOffset           int64
	BatchLength          int32
	PartitionLeaderEpoch int32
	Magic                int8
	CRC                  uint32
	Attributes           int16
	LastOffsetDelta      int32
	BaseTimestamp        int64
	MaxTimestamp         int64
	ProducerID           int64
	ProducerEpoch        int16
	BaseSequence         int32
	NumRecords           int32
}

// Codec is the compression codec of the batch's records (attributes bits 0-2).
func (h Header) Codec() compress.Codec { return compress.Codec(h.Attributes & AttrCodecMask) }

// LogAppendTime reports whether timestamps are the broker's append time.
func (h Header) LogAppendTime() bool { return h.Attributes&AttrLogAppendTime != 0 }

// Transactional reports whether the batch belongs to a transaction.
func (h Header) Transactional() bool { return h.Attributes&AttrTransactional != 0 }

// Control reports whether the batch holds control records (transaction markers).
func (h Header) Control() bool { return h.Attributes&AttrControl != 0 }

// HasDeleteHorizon reports whether baseTimestamp is a compaction delete horizon.
func (h Header) HasDeleteHorizon() bool { return h.Attributes&AttrHasDeleteHorizonMs != 0 }

// Idempotent reports whether the batch has a producer id.
func (h Header) Idempotent() bool { return h.ProducerID >= 0 }

// Size is the number of bytes of the whole batch.
func (h Header) Size() int { return frameSize + int(h.BatchLength) }

// LastOffset is the offset of the batch's last record (kept even when
// compaction removed that record).
func (h Header) LastOffset() int64 { return h.BaseOffset + int64(h.LastOffsetDelta) }

// LastSequence is the sequence number of the batch's last record, wrapping
// past math.MaxInt32 to 0 as Kafka does; -1 (no sequence) stays -1.
func (h Header) LastSequence() int32 {
	if h.BaseSequence == -1 {
		return -1
	}
	return incrementSequence(h.BaseSequence, h.LastOffsetDelta)
}

// incrementSequence is Kafka's DefaultRecordBatch.incrementSequence.
func incrementSequence(sequence, increment int32) int32 {
	if sequence > math.MaxInt32-increment {
		return increment - (math.MaxInt32 - sequence) - 1
	}
	return sequence + increment
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CRC returns the CRC-32C (Castagnoli) of b, the checksum of RecordBatch v2.
func CRC(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// ParseHeader decodes the header at the start of b. It reads the magic
// byte first, so a legacy (magic 0 or 1) message gives ErrUnsupportedMagic
// whatever its length; otherwise b must hold at least HeaderSize bytes.
// It checks nothing else: see Validate.
func ParseHeader(b []byte) (Header, error) {
	if len(b) <= offsetMagic {
		return Header{}, fmt.Errorf("%w: %d bytes, need %d for a header", ErrTruncated, len(b), HeaderSize)
	}
	if m := int8(b[offsetMagic]); m != Magic {
		return Header{}, fmt.Errorf("%w: magic %d", ErrUnsupportedMagic, m)
	}
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("%w: %d bytes, need %d for a header", ErrTruncated, len(b), HeaderSize)
	}
	return decodeHeader(b), nil
}

// decodeHeader decodes a header from b, which holds at least HeaderSize bytes.
func decodeHeader(b []byte) Header {
	_ = b[HeaderSize-1]
	be := binary.BigEndian
	return Header{
		BaseOffset:           int64(be.Uint64(b[offsetBaseOffset:])),
		BatchLength:          int32(be.Uint32(b[offsetBatchLength:])),
		PartitionLeaderEpoch: int32(be.Uint32(b[offsetPartitionLeaderEpoch:])),
		Magic:                int8(b[offsetMagic]),
		CRC:                  be.Uint32(b[offsetCRC:]),
		Attributes:           int16(be.Uint16(b[offsetAttributes:])),
		LastOffsetDelta:      int32(be.Uint32(b[offsetLastOffsetDelta:])),
		BaseTimestamp:        int64(be.Uint64(b[offsetBaseTimestamp:])),
		MaxTimestamp:         int64(be.Uint64(b[offsetMaxTimestamp:])),
		ProducerID:           int64(be.Uint64(b[offsetProducerID:])),
		ProducerEpoch:        int16(be.Uint16(b[offsetProducerEpoch:])),
		BaseSequence:         int32(be.Uint32(b[offsetBaseSequence:])),
		NumRecords:           int32(be.Uint32(b[offsetRecordCount:])),
	}
}

// putHeader encodes h into b[:HeaderSize] as is (CRC included).
func putHeader(b []byte, h *Header) {
	_ = b[HeaderSize-1]
	be := binary.BigEndian
	be.PutUint64(b[offsetBaseOffset:], uint64(h.BaseOffset))
	be.PutUint32(b[offsetBatchLength:], uint32(h.BatchLength))
	be.PutUint32(b[offsetPartitionLeaderEpoch:], uint32(h.PartitionLeaderEpoch))
	b[offsetMagic] = byte(h.Magic)
	be.PutUint32(b[offsetCRC:], h.CRC)
	be.PutUint16(b[offsetAttributes:], uint16(h.Attributes))
	be.PutUint32(b[offsetLastOffsetDelta:], uint32(h.LastOffsetDelta))
	be.PutUint64(b[offsetBaseTimestamp:], uint64(h.BaseTimestamp))
	be.PutUint64(b[offsetMaxTimestamp:], uint64(h.MaxTimestamp))
	be.PutUint64(b[offsetProducerID:], uint64(h.ProducerID))
	be.PutUint16(b[offsetProducerEpoch:], uint16(h.ProducerEpoch))
	be.PutUint32(b[offsetBaseSequence:], uint32(h.BaseSequence))
	be.PutUint32(b[offsetRecordCount:], uint32(h.NumRecords))
}

// CheckFrame decodes the header of batch and checks that batch is exactly
// one batch: magic 2, a possible batchLength, and as many bytes as it says.
// It is VerifyCRC without the CRC, for a caller whose copy of the batch
// checks the CRC (the log's AppendCheckingCRC).
func CheckFrame(batch []byte) (Header, error) { return checkFrame(batch) }

func checkFrame(batch []byte) (Header, error) {
	h, err := ParseHeader(batch)
	if err != nil {
		return h, err
	}
	if h.BatchLength < minBatchLength {
		return h, fmt.Errorf("%w: batch length %d below the minimum %d", ErrCorrupt, h.BatchLength, minBatchLength)
	}
	if size := h.Size(); size != len(batch) {
		if size > len(batch) {
			return h, fmt.Errorf("%w: batch of %d bytes, %d present", ErrTruncated, size, len(batch))
		}
		return h, fmt.Errorf("%w: batch length %d leaves %d bytes over", ErrCorrupt, h.BatchLength, len(batch)-size)
	}
	return h, nil
}

// VerifyCRC checks what storage needs before trusting a batch read back from
// disk or a replica: magic, length and CRC. Unlike Validate it accepts what
// only the broker writes or keeps (empty batches left by compaction, control
// batches, gaps in offset deltas).
func VerifyCRC(batch []byte) (Header, error) {
	h, err := checkFrame(batch)
	if err != nil {
		return h, err
	}
	if sum := CRC(batch[offsetAttributes:]); sum != h.CRC {
		return h, fmt.Errorf("%w: crc %#08x, computed %#08x", ErrCorrupt, h.CRC, sum)
	}
	return h, nil
}

// SetBaseOffset rewrites the batch's baseOffset in place. The field is
// outside the CRC. batch must hold at least HeaderSize bytes.
func SetBaseOffset(batch []byte, offset int64) {
	binary.BigEndian.PutUint64(batch[offsetBaseOffset:], uint64(offset))
}

// SetPartitionLeaderEpoch rewrites the batch's partitionLeaderEpoch in
// place. The field is outside the CRC.
func SetPartitionLeaderEpoch(batch []byte, epoch int32) {
	binary.BigEndian.PutUint32(batch[offsetPartitionLeaderEpoch:], uint32(epoch))
}

// SetLogAppendTime marks the batch's timestamps as LogAppendTime with
// maxTimestamp = timestamp (baseTimestamp and the records keep their create
// times, as in Kafka's DefaultRecordBatch.setMaxTimestamp) and recomputes
// the CRC. batch must be a whole batch (as from Iter or Validate).
func SetLogAppendTime(batch []byte, timestamp int64) {
	be := binary.BigEndian
	attributes := int16(be.Uint16(batch[offsetAttributes:]))
	if attributes&AttrLogAppendTime != 0 && int64(be.Uint64(batch[offsetMaxTimestamp:])) == timestamp {
		return // unchanged; spare the CRC
	}
	be.PutUint16(batch[offsetAttributes:], uint16(attributes|AttrLogAppendTime))
	be.PutUint64(batch[offsetMaxTimestamp:], uint64(timestamp))
	be.PutUint32(batch[offsetCRC:], CRC(batch[offsetAttributes:]))
}
