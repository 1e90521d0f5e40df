package records

import (
	"encoding/binary"
	"fmt"
)

// Iter walks the batches of a record set without copying them. It checks
// framing only (magic, length, bounds), not CRCs or records: call Validate
// or VerifyCRC on each batch.
//
//	it := records.NewIter(set)
//	for batch, h, ok := it.Next(); ok; batch, h, ok = it.Next() { ... }
//	if err := it.Err(); err != nil { ... } // it.Pos() is where the bad bytes start
type Iter struct {
	set []byte
	pos int
	err error
}

// NewIter returns an iterator over the batches laid end to end in set.
func NewIter(set []byte) Iter { return Iter{set: set} }

// Next returns the next batch (a slice of the set) and its header. At the
// end, or at the first malformed batch, it returns ok false; Err tells which.
func (it *Iter) Next() (batch []byte, h Header, ok bool) {
	if it.err != nil {
		return nil, Header{}, false
	}
	rest := it.set[it.pos:]
	if len(rest) == 0 {
		return nil, Header{}, false
	}
	if len(rest) < frameSize {
		if isZero(rest) {
			it.err = fmt.Errorf("%w at byte %d", ErrZeroTail, it.pos)
		} else {
			it.err = fmt.Errorf("%w: %d bytes left at byte %d, too few for a batch", ErrTruncated, len(rest), it.pos)
		}
		return nil, Header{}, false
	}
	length := int32(binary.BigEndian.Uint32(rest[offsetBatchLength:]))
	if length == 0 && binary.BigEndian.Uint64(rest) == 0 {
		it.err = fmt.Errorf("%w at byte %d", ErrZeroTail, it.pos)
		return nil, Header{}, false
	}
	// The magic sits at byte 16 in every format, and legacy messages are
	// shorter than a v2 header: check it before the v2 minimum length,
	// after the legacy one (as Kafka's ByteBufferLogInputStream does).
	if length < legacyMinLength {
		it.err = fmt.Errorf("%w: batch length %d below the minimum %d at byte %d", ErrCorrupt, length, legacyMinLength, it.pos)
		return nil, Header{}, false
	}
	if len(rest) > offsetMagic && rest[offsetMagic] != Magic {
		it.err = fmt.Errorf("%w: magic %d at byte %d", ErrUnsupportedMagic, int8(rest[offsetMagic]), it.pos)
		return nil, Header{}, false
	}
	if length < minBatchLength {
		it.err = fmt.Errorf("%w: batch length %d below the minimum %d at byte %d", ErrCorrupt, length, minBatchLength, it.pos)
		return nil, Header{}, false
	}
	size := frameSize + int(length)
	if size > len(rest) {
		it.err = fmt.Errorf("%w: batch of %d bytes at byte %d, %d present", ErrTruncated, size, it.pos, len(rest))
		return nil, Header{}, false
	}
	batch = rest[:size:size]
	it.pos += size
	return batch, decodeHeader(batch), true
}

// Err is nil after a clean end, otherwise why iteration stopped:
// ErrTruncated, ErrCorrupt (impossible length), ErrUnsupportedMagic or
// ErrZeroTail (the rest starts with zeros, as unwritten preallocated space
// does; only the first 12 bytes are looked at).
func (it *Iter) Err() error { return it.err }

// Pos is the number of bytes of whole batches returned so far: after an
// error, where the bad bytes start (where a recovery scan truncates).
func (it *Iter) Pos() int { return it.pos }

// legacyMinLength is the smallest magic 0 message after its 12-byte
// prefix (Kafka's LegacyRecord.RECORD_OVERHEAD_V0).
const legacyMinLength = 14

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
