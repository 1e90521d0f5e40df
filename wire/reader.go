package wire

import (
	"encoding/binary"
	"errors"
	"math"
)

// Decoding errors. Reader methods record the first one they hit; Err returns it.
var (
	// ErrShortBuffer means the input ended before the value did, or an
	// array count claims more elements than there are bytes left.
	ErrShortBuffer = errors.New("wire: short buffer")
	// ErrInvalidLength means a length or count prefix is negative where
	// that is not allowed (anything below -1, or -1 for a non-nullable field).
	ErrInvalidLength = errors.New("wire: invalid length")
	// ErrVarintOverflow means a varint ran past its maximum width.
	ErrVarintOverflow = errors.New("wire: varint overflows")
	// ErrUnexpectedNull means a field that is not nullable in the decoded
	// version was encoded as null.
	ErrUnexpectedNull = errors.New("wire: null in a non-nullable field")
)

// Reader decodes Kafka primitives from a byte slice. The zero value reads an
// empty input. Errors are sticky: see the package documentation.
type Reader struct {
	buf []byte
	off int
	err error
}

// NewReader returns a Reader positioned at the start of b.
func NewReader(b []byte) Reader { return Reader{buf: b} }

// Err returns the first error encountered, or nil.
func (r *Reader) Err() error { return r.err }

// Fail records err unless an earlier error is already recorded. Decoders use
// it to reject values that are well-formed bytes but invalid in context.
func (r *Reader) Fail(err error) {
	if r.err == nil {
		r.err = err
		r.off = len(r.buf)
	}
}

// Remaining returns the number of unread bytes (0 after an error).
func (r *Reader) Remaining() int { return len(r.buf) - r.off }

// Offset returns the number of bytes consumed so far.
func (r *Reader) Offset() int { return r.off }

// Span returns the next n raw bytes, aliasing the input.
func (r *Reader) Span(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 {
		r.Fail(ErrInvalidLength)
		return nil
	}
	if n > len(r.buf)-r.off {
		r.Fail(ErrShortBuffer)
		return nil
	}
	b := r.buf[r.off : r.off+n : r.off+n]
	r.off += n
	return b
}

// Int8 reads an INT8.
func (r *Reader) Int8() int8 {
	b := r.Span(1)
	if b == nil {
		return 0
	}
	return int8(b[0])
}

// Bool reads a BOOLEAN; any non-zero byte is true.
func (r *Reader) Bool() bool { return r.Int8() != 0 }

// Int16 reads an INT16.
func (r *Reader) Int16() int16 { return int16(r.Uint16()) }

// Uint16 reads a UINT16.
func (r *Reader) Uint16() uint16 {
	b := r.Span(2)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint16(b)
}

// Int32 reads an INT32.
func (r *Reader) Int32() int32 { return int32(r.Uint32()) }

// Uint32 reads a UINT32.
func (r *Reader) Uint32() uint32 {
	b := r.Span(4)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

// Int64 reads an INT64.
func (r *Reader) Int64() int64 {
	b := r.Span(8)
	if b == nil {
		return 0
	}
	return int64(binary.BigEndian.Uint64(b))
}

// Float64 reads a FLOAT64.
func (r *Reader) Float64() float64 {
	b := r.Span(8)
	if b == nil {
		return 0
	}
	return math.Float64frombits(binary.BigEndian.Uint64(b))
}

// UUID reads a UUID.
func (r *Reader) UUID() [16]byte {
	var u [16]byte
	copy(u[:], r.Span(16))
	return u
}

// uvarint64 reads an unsigned varint of at most maxBytes bytes.
func (r *Reader) uvarint64(maxBytes int) uint64 {
	if r.err != nil {
		return 0
	}
	var v uint64
	for i := 0; i < maxBytes; i++ {
		if r.off >= len(r.buf) {
			r.Fail(ErrShortBuffer)
			return 0
		}
		c := r.buf[r.off]
		r.off++
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v
		}
	}
	r.Fail(ErrVarintOverflow)
	return 0
}

// Uvarint reads an UNSIGNED_VARINT (at most 5 bytes). Bits above 32 in the
// fifth byte are discarded, as Kafka's ByteUtils does.
func (r *Reader) Uvarint() uint32 { return uint32(r.uvarint64(5)) }

// Varint reads a zigzag-encoded VARINT.
func (r *Reader) Varint() int32 {
	u := r.Uvarint()
	return int32(u>>1) ^ -int32(u&1)
}

// Varlong reads a zigzag-encoded VARLONG (at most 10 bytes).
func (r *Reader) Varlong() int64 {
	u := r.uvarint64(10)
	return int64(u>>1) ^ -int64(u&1)
}

// length validates a decoded length prefix: -1 is null (allowed only when
// nullable), anything below is invalid.
func (r *Reader) length(n int64, nullable bool) int {
	if n >= 0 || r.err != nil {
		return int(n)
	}
	if n == -1 && nullable {
		return -1
	}
	if n == -1 {
		r.Fail(ErrUnexpectedNull)
	} else {
		r.Fail(ErrInvalidLength)
	}
	return -2
}

// String reads a non-nullable STRING (INT16 length).
//
// Beware: the name makes *Reader a fmt.Stringer, so printing a *Reader
// with fmt consumes input. Print r.Offset() or r.Err() instead.
func (r *Reader) String() string {
	n := r.length(int64(r.Int16()), false)
	if n < 0 {
		return ""
	}
	return string(r.Span(n))
}

// NullableString reads a NULLABLE_STRING; nil means null.
func (r *Reader) NullableString() *string {
	n := r.length(int64(r.Int16()), true)
	if n < 0 {
		return nil
	}
	s := string(r.Span(n))
	if r.err != nil {
		return nil
	}
	return &s
}

// compactLength reads an UNSIGNED_VARINT length+1 and returns the length,
// -1 for null.
func (r *Reader) compactLength(nullable bool) int {
	return r.length(int64(r.Uvarint())-1, nullable)
}

// CompactString reads a non-nullable COMPACT_STRING.
func (r *Reader) CompactString() string {
	n := r.compactLength(false)
	if n < 0 {
		return ""
	}
	return string(r.Span(n))
}

// CompactNullableString reads a COMPACT_NULLABLE_STRING; nil means null.
func (r *Reader) CompactNullableString() *string {
	n := r.compactLength(true)
	if n < 0 {
		return nil
	}
	s := string(r.Span(n))
	if r.err != nil {
		return nil
	}
	return &s
}

// Bytes reads non-nullable BYTES (INT32 length), aliasing the input.
func (r *Reader) Bytes() []byte {
	n := r.length(int64(r.Int32()), false)
	if n < 0 {
		return nil
	}
	return r.Span(n)
}

// NullableBytes reads NULLABLE_BYTES, aliasing the input; nil means null.
func (r *Reader) NullableBytes() []byte {
	n := r.length(int64(r.Int32()), true)
	if n < 0 {
		return nil
	}
	return r.Span(n)
}

// CompactBytes reads non-nullable COMPACT_BYTES, aliasing the input.
func (r *Reader) CompactBytes() []byte {
	n := r.compactLength(false)
	if n < 0 {
		return nil
	}
	return r.Span(n)
}

// CompactNullableBytes reads COMPACT_NULLABLE_BYTES, aliasing the input;
// nil means null.
func (r *Reader) CompactNullableBytes() []byte {
	n := r.compactLength(true)
	if n < 0 {
		return nil
	}
	return r.Span(n)
}

// arrayLen validates an array count: -1 is null, below that is invalid, and
// a count above the bytes remaining is impossible because every element
// takes at least one byte. The check happens before any caller allocates.
func (r *Reader) arrayLen(n int64) int32 {
	if r.err != nil {
		return 0
	}
	if n < -1 {
		r.Fail(ErrInvalidLength)
		return 0
	}
	if n > int64(r.Remaining()) {
		r.Fail(ErrShortBuffer)
		return 0
	}
	return int32(n)
}

// ArrayLen reads an ARRAY count (INT32); -1 means null. The caller decides
// whether null is acceptable.
func (r *Reader) ArrayLen() int32 { return r.arrayLen(int64(r.Int32())) }

// CompactArrayLen reads a COMPACT_ARRAY count (UNSIGNED_VARINT n+1); -1
// means null.
func (r *Reader) CompactArrayLen() int32 { return r.arrayLen(int64(r.Uvarint()) - 1) }

// TaggedFields reads a tagged-field section, calling fn with each tag and
// its raw data (aliasing the input). A nil fn skips the fields.
func (r *Reader) TaggedFields(fn func(tag uint32, data []byte)) {
	count := r.Uvarint()
	// Each field takes at least two bytes (tag and size).
	if int64(count) > int64(r.Remaining()) {
		r.Fail(ErrShortBuffer)
		return
	}
	for i := uint32(0); i < count && r.err == nil; i++ {
		tag := r.Uvarint()
		size := r.Uvarint()
		data := r.Span(int(size))
		if r.err == nil && fn != nil {
			fn(tag, data)
		}
	}
}
