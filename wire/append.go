package wire

import (
	"encoding/binary"
	"math"
)

// AppendInt8 appends an INT8.
func AppendInt8(b []byte, v int8) []byte { return append(b, byte(v)) }

// AppendBool appends a BOOLEAN (0 or 1).
func AppendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// AppendInt16 appends an INT16.
func AppendInt16(b []byte, v int16) []byte { return binary.BigEndian.AppendUint16(b, uint16(v)) }

// AppendUint16 appends a UINT16.
func AppendUint16(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }

// AppendInt32 appends an INT32.
func AppendInt32(b []byte, v int32) []byte { return binary.BigEndian.AppendUint32(b, uint32(v)) }

// AppendUint32 appends a UINT32.
func AppendUint32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }

// AppendInt64 appends an INT64.
func AppendInt64(b []byte, v int64) []byte { return binary.BigEndian.AppendUint64(b, uint64(v)) }

// AppendFloat64 appends a FLOAT64.
func AppendFloat64(b []byte, v float64) []byte {
	return binary.BigEndian.AppendUint64(b, math.Float64bits(v))
}

// AppendUUID appends a UUID.
func AppendUUID(b []byte, v [16]byte) []byte { return append(b, v[:]...) }

// AppendUvarint appends an UNSIGNED_VARINT.
func AppendUvarint(b []byte, v uint32) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// appendUvarint64 appends a 64-bit unsigned varint.
func appendUvarint64(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// AppendVarint appends a zigzag VARINT.
func AppendVarint(b []byte, v int32) []byte {
	return AppendUvarint(b, uint32(v<<1)^uint32(v>>31))
}

// AppendVarlong appends a zigzag VARLONG.
func AppendVarlong(b []byte, v int64) []byte {
	return appendUvarint64(b, uint64(v<<1)^uint64(v>>63))
}

// UvarintLen returns the encoded size of v as an UNSIGNED_VARINT.
func UvarintLen(v uint32) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// AppendString appends a STRING.
func AppendString(b []byte, s string) []byte {
	b = AppendInt16(b, int16(len(s)))
	return append(b, s...)
}

// AppendNullableString appends a NULLABLE_STRING; nil is null.
func AppendNullableString(b []byte, s *string) []byte {
	if s == nil {
		return AppendInt16(b, -1)
	}
	return AppendString(b, *s)
}

// AppendCompactString appends a COMPACT_STRING.
func AppendCompactString(b []byte, s string) []byte {
	b = AppendUvarint(b, uint32(len(s))+1)
	return append(b, s...)
}

// AppendCompactNullableString appends a COMPACT_NULLABLE_STRING; nil is null.
func AppendCompactNullableString(b []byte, s *string) []byte {
	if s == nil {
		return append(b, 0)
	}
	return AppendCompactString(b, *s)
}

// AppendBytes appends BYTES.
func AppendBytes(b, v []byte) []byte {
	b = AppendInt32(b, int32(len(v)))
	return append(b, v...)
}

// AppendNullableBytes appends NULLABLE_BYTES; nil is null.
func AppendNullableBytes(b, v []byte) []byte {
	if v == nil {
		return AppendInt32(b, -1)
	}
	return AppendBytes(b, v)
}

// AppendCompactBytes appends COMPACT_BYTES.
func AppendCompactBytes(b, v []byte) []byte {
	b = AppendUvarint(b, uint32(len(v))+1)
	return append(b, v...)
}

// AppendCompactNullableBytes appends COMPACT_NULLABLE_BYTES; nil is null.
func AppendCompactNullableBytes(b, v []byte) []byte {
	if v == nil {
		return append(b, 0)
	}
	return AppendCompactBytes(b, v)
}

// AppendArrayLen appends an ARRAY count; n = -1 is null.
func AppendArrayLen(b []byte, n int) []byte { return AppendInt32(b, int32(n)) }

// AppendCompactArrayLen appends a COMPACT_ARRAY count; n = -1 is null.
func AppendCompactArrayLen(b []byte, n int) []byte { return AppendUvarint(b, uint32(n+1)) }

// AppendEmptyTaggedFields appends an empty tagged-field section.
func AppendEmptyTaggedFields(b []byte) []byte { return append(b, 0) }
