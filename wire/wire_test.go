package wire

import (
	"bytes"
	"errors"
	"math"
	"testing"
)

func TestUvarint(t *testing.T) {
	tests := []struct {
		v   uint32
		enc []byte
	}{
		{0, []byte{0x00}},
		{1, []byte{0x01}},
		{127, []byte{0x7f}},
		{128, []byte{0x80, 0x01}},
		{300, []byte{0xac, 0x02}},
		{16383, []byte{0xff, 0x7f}},
		{16384, []byte{0x80, 0x80, 0x01}},
		{math.MaxUint32, []byte{0xff, 0xff, 0xff, 0xff, 0x0f}},
	}
	for _, tt := range tests {
		got := AppendUvarint(nil, tt.v)
		if !bytes.Equal(got, tt.enc) {
			t.Errorf("AppendUvarint(%d) = %x, want %x", tt.v, got, tt.enc)
		}
		if UvarintLen(tt.v) != len(tt.enc) {
			t.Errorf("UvarintLen(%d) = %d, want %d", tt.v, UvarintLen(tt.v), len(tt.enc))
		}
		r := NewReader(tt.enc)
		if v := r.Uvarint(); v != tt.v || r.Err() != nil || r.Remaining() != 0 {
			t.Errorf("Uvarint(%x) = %d, %v, %d left", tt.enc, v, r.Err(), r.Remaining())
		}
	}
}

func TestVarint(t *testing.T) {
	tests := []struct {
		v   int32
		enc []byte
	}{
		{0, []byte{0x00}},
		{-1, []byte{0x01}},
		{1, []byte{0x02}},
		{-64, []byte{0x7f}},
		{64, []byte{0x80, 0x01}},
		{math.MaxInt32, []byte{0xfe, 0xff, 0xff, 0xff, 0x0f}},
		{math.MinInt32, []byte{0xff, 0xff, 0xff, 0xff, 0x0f}},
	}
	for _, tt := range tests {
		got := AppendVarint(nil, tt.v)
		if !bytes.Equal(got, tt.enc) {
			t.Errorf("AppendVarint(%d) = %x, want %x", tt.v, got, tt.enc)
		}
		r := NewReader(tt.enc)
		if v := r.Varint(); v != tt.v || r.Err() != nil {
			t.Errorf("Varint(%x) = %d, %v", tt.enc, v, r.Err())
		}
	}
}

func TestVarlong(t *testing.T) {
	for _, v := range []int64{0, -1, 1, 63, -64, 64, math.MaxInt32, math.MinInt32, math.MaxInt64, math.MinInt64} {
		enc := AppendVarlong(nil, v)
		r := NewReader(enc)
		if got := r.Varlong(); got != v || r.Err() != nil || r.Remaining() != 0 {
			t.Errorf("Varlong round trip of %d: got %d, %v (enc %x)", v, got, r.Err(), enc)
		}
	}
	if n := len(AppendVarlong(nil, math.MinInt64)); n != 10 {
		t.Errorf("MinInt64 encodes in %d bytes, want 10", n)
	}
}

func TestVarintErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		read func(r *Reader)
		want error
	}{
		{"uvarint empty", nil, func(r *Reader) { r.Uvarint() }, ErrShortBuffer},
		{"uvarint truncated", []byte{0x80, 0x80}, func(r *Reader) { r.Uvarint() }, ErrShortBuffer},
		{"uvarint 6 bytes", []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, func(r *Reader) { r.Uvarint() }, ErrVarintOverflow},
		{"varlong 11 bytes", bytes.Repeat([]byte{0xff}, 11), func(r *Reader) { r.Varlong() }, ErrVarintOverflow},
	}
	for _, tt := range tests {
		r := NewReader(tt.in)
		tt.read(&r)
		if !errors.Is(r.Err(), tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, r.Err(), tt.want)
		}
	}
}

func TestFixedWidthRoundTrip(t *testing.T) {
	var b []byte
	b = AppendInt8(b, -2)
	b = AppendInt16(b, -300)
	b = AppendInt32(b, -70000)
	b = AppendInt64(b, math.MinInt64)
	b = AppendUint16(b, 65535)
	b = AppendUint32(b, math.MaxUint32)
	b = AppendFloat64(b, 3.25)
	b = AppendBool(b, true)
	b = AppendBool(b, false)
	uuid := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	b = AppendUUID(b, uuid)
	if len(b) != 1+2+4+8+2+4+8+1+1+16 {
		t.Fatalf("encoded %d bytes", len(b))
	}
	r := NewReader(b)
	if r.Int8() != -2 || r.Int16() != -300 || r.Int32() != -70000 || r.Int64() != math.MinInt64 ||
		r.Uint16() != 65535 || r.Uint32() != math.MaxUint32 || r.Float64() != 3.25 ||
		!r.Bool() || r.Bool() || r.UUID() != uuid {
		t.Fatal("round trip mismatch")
	}
	if r.Err() != nil || r.Remaining() != 0 || r.Offset() != len(b) {
		t.Fatalf("err %v, remaining %d, offset %d", r.Err(), r.Remaining(), r.Offset())
	}
}

func TestStrings(t *testing.T) {
	s := "héllo"
	tests := []struct {
		name string
		enc  []byte
		read func(r *Reader) any
		want any
	}{
		{"string", AppendString(nil, s), func(r *Reader) any { return r.String() }, s},
		{"empty string", AppendString(nil, ""), func(r *Reader) any { return r.String() }, ""},
		{"nullable", AppendNullableString(nil, &s), func(r *Reader) any { return *r.NullableString() }, s},
		{"nullable null", AppendNullableString(nil, nil), func(r *Reader) any { return r.NullableString() == nil }, true},
		{"compact", AppendCompactString(nil, s), func(r *Reader) any { return r.CompactString() }, s},
		{"compact nullable", AppendCompactNullableString(nil, &s), func(r *Reader) any { return *r.CompactNullableString() }, s},
		{"compact null", AppendCompactNullableString(nil, nil), func(r *Reader) any { return r.CompactNullableString() == nil }, true},
	}
	for _, tt := range tests {
		r := NewReader(tt.enc)
		if got := tt.read(&r); got != tt.want || r.Err() != nil || r.Remaining() != 0 {
			t.Errorf("%s: got %v (err %v, %d left), want %v", tt.name, got, r.Err(), r.Remaining(), tt.want)
		}
	}
	if enc := AppendCompactNullableString(nil, nil); !bytes.Equal(enc, []byte{0}) {
		t.Errorf("compact null = %x", enc)
	}
	if enc := AppendNullableString(nil, nil); !bytes.Equal(enc, []byte{0xff, 0xff}) {
		t.Errorf("null = %x", enc)
	}
}

func TestBytesAlias(t *testing.T) {
	payload := []byte("payload")
	for _, tt := range []struct {
		name string
		enc  []byte
		read func(r *Reader) []byte
	}{
		{"bytes", AppendBytes(nil, payload), (*Reader).Bytes},
		{"nullable", AppendNullableBytes(nil, payload), (*Reader).NullableBytes},
		{"compact", AppendCompactBytes(nil, payload), (*Reader).CompactBytes},
		{"compact nullable", AppendCompactNullableBytes(nil, payload), (*Reader).CompactNullableBytes},
	} {
		r := NewReader(tt.enc)
		got := tt.read(&r)
		if !bytes.Equal(got, payload) || r.Err() != nil {
			t.Errorf("%s: got %q, %v", tt.name, got, r.Err())
			continue
		}
		// The result aliases the input, and cannot grow into what follows.
		tt.enc[len(tt.enc)-1] = 'X'
		if got[len(got)-1] != 'X' {
			t.Errorf("%s: result does not alias the input", tt.name)
		}
		if cap(got) != len(got) {
			t.Errorf("%s: cap %d > len %d", tt.name, cap(got), len(got))
		}
	}
	for _, tt := range []struct {
		name string
		enc  []byte
		read func(r *Reader) []byte
	}{
		{"nullable", AppendNullableBytes(nil, nil), (*Reader).NullableBytes},
		{"compact nullable", AppendCompactNullableBytes(nil, nil), (*Reader).CompactNullableBytes},
	} {
		r := NewReader(tt.enc)
		if got := tt.read(&r); got != nil || r.Err() != nil {
			t.Errorf("%s null: got %v, %v", tt.name, got, r.Err())
		}
	}
	// Empty but not null stays non-nil, so it re-encodes as empty.
	r := NewReader(AppendNullableBytes(nil, []byte{}))
	if got := r.NullableBytes(); got == nil || len(got) != 0 {
		t.Errorf("empty bytes decoded as %v", got)
	}
}

func TestLengthErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		read func(r *Reader)
		want error
	}{
		{"string null", AppendInt16(nil, -1), func(r *Reader) { _ = r.String() }, ErrUnexpectedNull},
		{"string -2", AppendInt16(nil, -2), func(r *Reader) { r.NullableString() }, ErrInvalidLength},
		{"string short", AppendInt16(nil, 5), func(r *Reader) { _ = r.String() }, ErrShortBuffer},
		{"compact string null", []byte{0}, func(r *Reader) { r.CompactString() }, ErrUnexpectedNull},
		{"bytes null", AppendInt32(nil, -1), func(r *Reader) { r.Bytes() }, ErrUnexpectedNull},
		{"bytes -7", AppendInt32(nil, -7), func(r *Reader) { r.NullableBytes() }, ErrInvalidLength},
		{"bytes huge", AppendInt32(nil, math.MaxInt32), func(r *Reader) { r.Bytes() }, ErrShortBuffer},
		{"compact bytes huge", AppendUvarint(nil, math.MaxUint32), func(r *Reader) { r.CompactBytes() }, ErrShortBuffer},
		{"array -2", AppendInt32(nil, -2), func(r *Reader) { r.ArrayLen() }, ErrInvalidLength},
		{"array too long", AppendInt32(nil, 10), func(r *Reader) { r.ArrayLen() }, ErrShortBuffer},
		{"compact array too long", AppendUvarint(nil, 3), func(r *Reader) { r.CompactArrayLen() }, ErrShortBuffer},
		{"span negative", nil, func(r *Reader) { r.Span(-1) }, ErrInvalidLength},
		{"int64 short", []byte{1, 2, 3}, func(r *Reader) { r.Int64() }, ErrShortBuffer},
	}
	for _, tt := range tests {
		r := NewReader(tt.in)
		tt.read(&r)
		if !errors.Is(r.Err(), tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, r.Err(), tt.want)
		}
	}
}

func TestArrayLen(t *testing.T) {
	r := NewReader(AppendArrayLen(nil, -1))
	if n := r.ArrayLen(); n != -1 || r.Err() != nil {
		t.Errorf("null array: %d, %v", n, r.Err())
	}
	r = NewReader(AppendCompactArrayLen(nil, -1))
	if n := r.CompactArrayLen(); n != -1 || r.Err() != nil {
		t.Errorf("null compact array: %d, %v", n, r.Err())
	}
	b := AppendCompactArrayLen(nil, 3)
	b = append(b, 1, 2, 3)
	r = NewReader(b)
	if n := r.CompactArrayLen(); n != 3 || r.Err() != nil {
		t.Errorf("compact array: %d, %v", n, r.Err())
	}
}

// TestArrayLenBoundNoAlloc checks that a hostile count is rejected before
// anything is allocated for it.
func TestArrayLenBoundNoAlloc(t *testing.T) {
	in := make([]byte, 10)
	copy(in, AppendInt32(nil, math.MaxInt32))
	allocs := testing.AllocsPerRun(100, func() {
		r := NewReader(in)
		n := r.ArrayLen()
		if r.Err() == nil {
			_ = make([]int64, n) // what a decoder would do
			t.Fatal("count 2^31-1 accepted on a 10-byte buffer")
		}
		if !errors.Is(r.Err(), ErrShortBuffer) || n != 0 {
			t.Fatalf("n = %d, err = %v", n, r.Err())
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations, want 0", allocs)
	}
}

func TestStickyError(t *testing.T) {
	r := NewReader([]byte{0, 1, 2})
	if r.Int32(); r.Err() == nil {
		t.Fatal("no error reading 4 bytes from 3")
	}
	first := r.Err()
	if v := r.Int8(); v != 0 {
		t.Errorf("Int8 after error = %d", v)
	}
	if s := r.NullableString(); s != nil {
		t.Errorf("NullableString after error = %v", *s)
	}
	if r.Remaining() != 0 || r.Err() != first {
		t.Errorf("remaining %d, err %v", r.Remaining(), r.Err())
	}
	r.Fail(ErrInvalidLength)
	if r.Err() != first {
		t.Error("Fail replaced the first error")
	}
}

func TestTaggedFields(t *testing.T) {
	var b []byte
	b = AppendUvarint(b, 2)
	b = AppendUvarint(b, 0)
	b = AppendUvarint(b, 2)
	b = append(b, 0xaa, 0xbb)
	b = AppendUvarint(b, 300)
	b = AppendUvarint(b, 0)
	b = append(b, 0x42) // trailing byte after the section
	type tf struct {
		tag  uint32
		data string
	}
	var got []tf
	r := NewReader(b)
	r.TaggedFields(func(tag uint32, data []byte) { got = append(got, tf{tag, string(data)}) })
	if r.Err() != nil || len(got) != 2 || got[0] != (tf{0, "\xaa\xbb"}) || got[1] != (tf{300, ""}) {
		t.Fatalf("got %v, err %v", got, r.Err())
	}
	if r.Int8() != 0x42 {
		t.Error("section not consumed exactly")
	}
	r = NewReader(b)
	r.TaggedFields(nil)
	if r.Err() != nil || r.Remaining() != 1 {
		t.Errorf("skip: err %v, remaining %d", r.Err(), r.Remaining())
	}
	r = NewReader([]byte{5, 0})
	r.TaggedFields(nil)
	if r.Err() == nil {
		t.Error("count of 5 in 2 bytes accepted")
	}
	if !bytes.Equal(AppendEmptyTaggedFields(nil), []byte{0}) {
		t.Error("empty tagged fields is not 0x00")
	}
}

func TestAppendZeroAlloc(t *testing.T) {
	buf := make([]byte, 0, 256)
	s := "client"
	allocs := testing.AllocsPerRun(100, func() {
		b := buf[:0]
		b = AppendInt32(b, 1)
		b = AppendCompactNullableString(b, &s)
		b = AppendNullableBytes(b, []byte("x"))
		b = AppendVarlong(b, -12345)
		_ = AppendEmptyTaggedFields(b)
	})
	if allocs != 0 {
		t.Errorf("%v allocations, want 0", allocs)
	}
}
