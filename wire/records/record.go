package records

import (
	"encoding/binary"
	"fmt"
	"sync"
	"unsafe"

	"github.com/sluice-broker/sluice/wire/compress"
)

// Record is one decoded record. Key, Value, header keys and header values
// alias the batch (or the scratch it was decompressed into): they are
// valid only while those bytes are, and inside ForEachRecord only during
// the callback. A nil Key or Value is null; a non-nil empty one is empty.
type Record struct {
	Attributes     int8
	TimestampDelta int64
	OffsetDelta    int32
	Key, Value     []byte
	Headers        []RecordHeader
}

// RecordHeader is a record header; Value nil is null (the key cannot be).
type RecordHeader struct {
	Key   string
	Value []byte
}

// Varint limits of the record format (Kafka's ByteUtils).
const (
	maxVarintBytes  = 5
	maxVarlongBytes = 10
	// minRecordBytes is the smallest record: a one-byte length and six
	// one-byte fields.
	minRecordBytes = 7
)

// uvarint decodes an unsigned LEB128 varint of at most maxBytes bytes,
// returning n == 0 when b ends first and n < 0 when it is too long.
func uvarint(b []byte, maxBytes int) (uint64, int) {
	var x uint64
	var shift uint
	for i, c := range b {
		if i == maxBytes {
			return 0, -1
		}
		if c < 0x80 {
			return x | uint64(c)<<shift, i + 1
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
	return 0, 0
}

// recordReader decodes the fields of one record. It records the first
// failure and then returns zero values, so the caller checks once.
type recordReader struct {
	b   []byte
	bad bool
}

func (r *recordReader) varint() int32 {
	u, n := uvarint(r.b, maxVarintBytes)
	if n <= 0 || u>>32 != 0 {
		r.bad = true
		r.b = nil
		return 0
	}
	r.b = r.b[n:]
	return int32(uint32(u)>>1) ^ -int32(u&1)
}

func (r *recordReader) varlong() int64 {
	u, n := uvarint(r.b, maxVarlongBytes)
	if n <= 0 || (n == maxVarlongBytes && r.b[n-1] > 1) {
		r.bad = true
		r.b = nil
		return 0
	}
	r.b = r.b[n:]
	return int64(u>>1) ^ -int64(u&1)
}

func (r *recordReader) int8() int8 {
	if len(r.b) == 0 {
		r.bad = true
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return int8(c)
}

// bytes reads a varint length and that many bytes; -1 is null, other
// negative lengths are malformed.
func (r *recordReader) bytes() []byte {
	n := r.varint()
	if n < 0 {
		if n != -1 {
			r.bad = true
			r.b = nil
		}
		return nil
	}
	if int(n) > len(r.b) {
		r.bad = true
		r.b = nil
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// parseRecord decodes the record at the start of b into rec and returns
// its size. With keepHeaders false the headers are checked but not stored.
func parseRecord(b []byte, rec *Record, keepHeaders bool) (int, error) {
	length, n := uvarint(b, maxVarintBytes)
	if n <= 0 || length>>32 != 0 {
		return 0, fmt.Errorf("%w: malformed record length", ErrInvalidRecord)
	}
	bodyLength := int32(uint32(length)>>1) ^ -int32(length&1)
	if bodyLength < 0 || int(bodyLength) > len(b)-n {
		return 0, fmt.Errorf("%w: record length %d, %d bytes left", ErrInvalidRecord, bodyLength, len(b)-n)
	}
	r := recordReader{b: b[n : n+int(bodyLength)]}
	rec.Attributes = r.int8()
	rec.TimestampDelta = r.varlong()
	rec.OffsetDelta = r.varint()
	rec.Key = r.bytes()
	rec.Value = r.bytes()
	count := r.varint()
	if count < 0 {
		return 0, fmt.Errorf("%w: %d record headers", ErrInvalidRecord, count)
	}
	if keepHeaders {
		clear(rec.Headers)
		rec.Headers = rec.Headers[:0]
	}
	for i := int32(0); i < count && !r.bad; i++ {
		keyLength := r.varint()
		if keyLength < 0 || int(keyLength) > len(r.b) {
			return 0, fmt.Errorf("%w: record header key length %d", ErrInvalidRecord, keyLength)
		}
		key := r.b[:keyLength]
		r.b = r.b[keyLength:]
		value := r.bytes()
		if keepHeaders && !r.bad {
			rec.Headers = append(rec.Headers, RecordHeader{Key: unsafeString(key), Value: value})
		}
	}
	if r.bad {
		return 0, fmt.Errorf("%w: malformed record", ErrInvalidRecord)
	}
	if len(r.b) != 0 {
		return 0, fmt.Errorf("%w: record length %d leaves %d bytes unread", ErrInvalidRecord, bodyLength, len(r.b))
	}
	return n + int(bodyLength), nil
}

// unsafeString views b as a string without copying; b must not change
// while the string is in use (the documented lifetime of Record).
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// recordBodySize is the number of bytes of rec after its length varint.
func recordBodySize(rec *Record) int {
	n := 1 + varlongSize(rec.TimestampDelta) + varlongSize(int64(rec.OffsetDelta)) +
		bytesSize(rec.Key) + bytesSize(rec.Value) + varlongSize(int64(len(rec.Headers)))
	for i := range rec.Headers {
		h := &rec.Headers[i]
		n += varlongSize(int64(len(h.Key))) + len(h.Key) + bytesSize(h.Value)
	}
	return n
}

func varlongSize(v int64) int {
	u := uint64(v<<1) ^ uint64(v>>63)
	n := 1
	for u >= 0x80 {
		u >>= 7
		n++
	}
	return n
}

func bytesSize(b []byte) int {
	if b == nil {
		return 1
	}
	return varlongSize(int64(len(b))) + len(b)
}

// appendBytes appends a varint length and b; nil is written as -1 (null).
func appendBytes(dst, b []byte) []byte {
	if b == nil {
		return binary.AppendVarint(dst, -1)
	}
	dst = binary.AppendVarint(dst, int64(len(b)))
	return append(dst, b...)
}

// appendRecord appends rec in wire form. Zigzag varints of int32 values
// encode the same in 32 and 64 bits, so binary.AppendVarint serves both.
func appendRecord(dst []byte, rec *Record) []byte {
	dst = binary.AppendVarint(dst, int64(recordBodySize(rec)))
	dst = append(dst, byte(rec.Attributes))
	dst = binary.AppendVarint(dst, rec.TimestampDelta)
	dst = binary.AppendVarint(dst, int64(rec.OffsetDelta))
	dst = appendBytes(dst, rec.Key)
	dst = appendBytes(dst, rec.Value)
	dst = binary.AppendVarint(dst, int64(len(rec.Headers)))
	for i := range rec.Headers {
		h := &rec.Headers[i]
		dst = binary.AppendVarint(dst, int64(len(h.Key)))
		dst = append(dst, h.Key...)
		dst = appendBytes(dst, h.Value)
	}
	return dst
}

var recordPool = sync.Pool{New: func() any { return new(Record) }}

// ForEachRecord decodes the records of batch in order and calls fn for
// each, stopping at and returning fn's first error. A compressed batch is
// decompressed into scratch (give it capacity to avoid an allocation); the
// *Record passed to fn is reused between calls and its slices alias batch or
// scratch, so copy what must outlive the call.
//
// It checks the framing and the record structure (record count, lengths),
// not the CRC or offset deltas: see Validate. Records are reported as
// they are decoded, so fn may have seen some before an error is returned.
func ForEachRecord(batch, scratch []byte, fn func(r *Record) error) error {
	h, err := checkFrame(batch)
	if err != nil {
		return err
	}
	data, err := recordsSection(batch, &h, scratch)
	if err != nil {
		return err
	}
	rec := recordPool.Get().(*Record)
	defer func() {
		clear(rec.Headers)
		*rec = Record{Headers: rec.Headers[:0]}
		recordPool.Put(rec)
	}()
	if h.NumRecords < 0 {
		return fmt.Errorf("%w: record count %d", ErrInvalidRecord, h.NumRecords)
	}
	for i := int32(0); i < h.NumRecords; i++ {
		if len(data) == 0 {
			return fmt.Errorf("%w: record count %d, only %d records present", ErrInvalidRecord, h.NumRecords, i)
		}
		n, err := parseRecord(data, rec, true)
		if err != nil {
			return err
		}
		data = data[n:]
		if err := fn(rec); err != nil {
			return err
		}
	}
	if len(data) != 0 {
		return fmt.Errorf("%w: %d bytes after the last of %d records", ErrInvalidRecord, len(data), h.NumRecords)
	}
	return nil
}

// recordsSection returns the batch's records, decompressed into scratch
// when the batch is compressed.
func recordsSection(batch []byte, h *Header, scratch []byte) ([]byte, error) {
	data := batch[HeaderSize:]
	codec := h.Codec()
	if codec == compress.None {
		return data, nil
	}
	if !codec.Valid() {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRecord, compress.ErrUnknownCodec)
	}
	out, err := compress.Decompress(codec, scratch[:0], data, MaxDecompressedBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %s records: %w", ErrInvalidRecord, codec, err)
	}
	return out, nil
}
