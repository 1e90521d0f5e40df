package records

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-broker/sluice/wire/compress"
)

func TestHeaderSizeMatchesKmsg(t *testing.T) {
	var b kmsg.RecordBatch
	if n := len(b.AppendTo(nil)); n != HeaderSize {
		t.Fatalf("kmsg header is %d bytes, HeaderSize %d", n, HeaderSize)
	}
}

// TestOracleKmsgBuilds decodes batches built by franz-go's kmsg, with
// records compressed by our codecs and by independent implementations.
func TestOracleKmsgBuilds(t *testing.T) {
	recs := testRecords(23, 300, 1)
	h := testHeader()
	h.BaseOffset = 1234
	h.PartitionLeaderEpoch = 7
	h.ProducerID, h.ProducerEpoch, h.BaseSequence = 99, 3, 1000
	h.Attributes = AttrTransactional
	for _, codec := range allCodecs {
		for _, enc := range []struct {
			name string
			fn   func(testing.TB, compress.Codec, []byte) []byte
		}{{"ours", ourCompress}, {"independent", independentCompress}} {
			t.Run(codec.String()+"/"+enc.name, func(t *testing.T) {
				batch := kmsgBatch(t, h, recs, codec, enc.fn)
				kb, _ := kmsgDecode(t, batch)
				got, err := Validate(batch)
				if err != nil {
					t.Fatal(err)
				}
				want := Header{
					BaseOffset: kb.FirstOffset, BatchLength: kb.Length, PartitionLeaderEpoch: kb.PartitionLeaderEpoch,
					Magic: kb.Magic, CRC: uint32(kb.CRC), Attributes: kb.Attributes, LastOffsetDelta: kb.LastOffsetDelta,
					BaseTimestamp: kb.FirstTimestamp, MaxTimestamp: kb.MaxTimestamp, ProducerID: kb.ProducerID,
					ProducerEpoch: kb.ProducerEpoch, BaseSequence: kb.FirstSequence, NumRecords: kb.NumRecords,
				}
				if got != want {
					t.Fatalf("header\n got %+v\nwant %+v", got, want)
				}
				if p, _ := ParseHeader(batch); p != want {
					t.Fatalf("ParseHeader %+v", p)
				}
				if got.Codec() != codec || !got.Transactional() || got.Control() || got.LogAppendTime() || !got.Idempotent() {
					t.Fatalf("attribute accessors wrong for %+v", got)
				}
				if got.LastOffset() != 1234+22 || got.LastSequence() != 1022 {
					t.Fatalf("LastOffset %d LastSequence %d", got.LastOffset(), got.LastSequence())
				}
				if _, err := ValidateDeep(batch, nil); err != nil {
					t.Fatal(err)
				}
				sameRecords(t, collect(t, batch), recs)
			})
		}
	}
}

// TestOracleKmsgDecodes builds batches with AppendBatch and decodes them
// with kmsg and independent decompressors, comparing every field.
func TestOracleKmsgDecodes(t *testing.T) {
	recs := testRecords(17, 500, 2)
	h := testHeader()
	h.BaseOffset = 1 << 40
	h.PartitionLeaderEpoch = 12
	h.ProducerID, h.ProducerEpoch, h.BaseSequence = 5, 1, math.MaxInt32-3
	for _, codec := range allCodecs {
		t.Run(codec.String(), func(t *testing.T) {
			batch := mustBatch(t, h, recs, codec)
			kb, krecs := kmsgDecode(t, batch)
			if kb.FirstOffset != h.BaseOffset || kb.Length != int32(len(batch)-12) || kb.PartitionLeaderEpoch != 12 ||
				kb.Magic != 2 || kb.Attributes != int16(codec) || kb.LastOffsetDelta != 16 ||
				kb.FirstTimestamp != h.BaseTimestamp || kb.MaxTimestamp != h.BaseTimestamp+1<<40 ||
				kb.ProducerID != 5 || kb.ProducerEpoch != 1 || kb.FirstSequence != math.MaxInt32-3 || kb.NumRecords != 17 {
				t.Fatalf("kmsg read %+v", kb)
			}
			if uint32(kb.CRC) != CRC(batch[21:]) {
				t.Fatal("CRC")
			}
			if got, err := Validate(batch); err != nil || got.LastSequence() != 12 {
				t.Fatalf("Validate: %v, last sequence %d (want 12: wraps past MaxInt32)", err, got.LastSequence())
			}
			for i, k := range krecs {
				r := &recs[i]
				if k.Attributes != r.Attributes || k.TimestampDelta64 != r.TimestampDelta || k.OffsetDelta != r.OffsetDelta ||
					!sameBytes(k.Key, r.Key) || !sameBytes(k.Value, r.Value) || len(k.Headers) != len(r.Headers) {
					t.Fatalf("record %d: kmsg %+v, want %+v", i, k, *r)
				}
				for j := range k.Headers {
					if k.Headers[j].Key != r.Headers[j].Key || !sameBytes(k.Headers[j].Value, r.Headers[j].Value) {
						t.Fatalf("record %d header %d", i, j)
					}
				}
			}
		})
	}
}

func TestAppendBatchFields(t *testing.T) {
	recs := testRecords(3, 10, 3)
	h := testHeader()
	h.Attributes = AttrLogAppendTime | int16(compress.Zstd) // codec bits are replaced
	h.MaxTimestamp = 42
	b := mustBatch(t, h, recs, compress.None)
	got, err := Validate(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Codec() != compress.None || !got.LogAppendTime() || got.MaxTimestamp != 42 {
		t.Fatalf("LogAppendTime batch: %+v", got)
	}
	// An empty batch keeps the caller's lastOffsetDelta, as compaction needs.
	h = testHeader()
	h.LastOffsetDelta = 9
	b = mustBatch(t, h, nil, compress.Gzip)
	got, err = VerifyCRC(b)
	if err != nil || got.LastOffsetDelta != 9 || got.NumRecords != 0 {
		t.Fatalf("empty batch: %+v, %v", got, err)
	}
	if _, err := Validate(b); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("Validate of an empty batch: %v", err)
	}
	if _, err := AppendBatch(nil, h, recs, compress.Codec(6)); !errors.Is(err, compress.ErrUnknownCodec) {
		t.Fatalf("codec 6: %v", err)
	}
	// AppendBatch appends.
	prefix := []byte("prefix")
	b, _ = AppendBatch(prefix, testHeader(), recs, compress.None)
	if !bytes.HasPrefix(b, []byte("prefix")) {
		t.Fatal("AppendBatch did not append")
	}
	if _, err := Validate(b[len(prefix):]); err != nil {
		t.Fatal(err)
	}
}

func TestRecompressAllPairs(t *testing.T) {
	recs := testRecords(40, 400, 4)
	h := testHeader()
	h.BaseOffset = 77
	h.PartitionLeaderEpoch = 3
	h.ProducerID, h.ProducerEpoch, h.BaseSequence = 8, 2, 10
	h.Attributes = AttrTransactional
	for _, from := range allCodecs {
		src := mustBatch(t, h, recs, from)
		srcHeader, _ := Validate(src)
		for _, to := range allCodecs {
			t.Run(from.String()+"-to-"+to.String(), func(t *testing.T) {
				out, err := Recompress([]byte("x"), src, to, make([]byte, 0, 1024))
				if err != nil {
					t.Fatal(err)
				}
				out = out[1:]
				got, err := Validate(out)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := ValidateDeep(out, nil); err != nil {
					t.Fatal(err)
				}
				want := srcHeader
				want.Attributes = want.Attributes&^AttrCodecMask | int16(to)
				want.BatchLength, want.CRC = got.BatchLength, got.CRC
				if got != want {
					t.Fatalf("header\n got %+v\nwant %+v", got, want)
				}
				sameRecords(t, collect(t, out), recs)
				kmsgDecode(t, out)
			})
		}
	}
	bad := mustBatch(t, h, recs, compress.None)
	bad[len(bad)-1] ^= 1
	if _, err := Recompress(nil, bad, compress.Zstd, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Recompress of a corrupt batch: %v", err)
	}
}

func TestMutators(t *testing.T) {
	b := mustBatch(t, testHeader(), testRecords(5, 20, 5), compress.LZ4)
	SetBaseOffset(b, 1<<50)
	SetPartitionLeaderEpoch(b, 99)
	h, err := Validate(b)
	if err != nil {
		t.Fatalf("in-place fields broke the batch: %v", err)
	}
	if h.BaseOffset != 1<<50 || h.PartitionLeaderEpoch != 99 {
		t.Fatalf("%+v", h)
	}
	SetLogAppendTime(b, 1_800_000_000_000)
	h, err = Validate(b)
	if err != nil {
		t.Fatalf("after SetLogAppendTime: %v", err)
	}
	if !h.LogAppendTime() || h.MaxTimestamp != 1_800_000_000_000 || h.BaseTimestamp != testHeader().BaseTimestamp || h.Codec() != compress.LZ4 {
		t.Fatalf("SetLogAppendTime: %+v", h)
	}
	kb, _ := kmsgDecode(t, b)
	if kb.Attributes&8 == 0 || kb.MaxTimestamp != 1_800_000_000_000 || uint32(kb.CRC) != CRC(b[21:]) {
		t.Fatalf("kmsg sees %+v", kb)
	}
}

func TestLastSequence(t *testing.T) {
	for _, tc := range []struct{ base, delta, want int32 }{
		{-1, 5, -1},
		{0, 0, 0},
		{10, 5, 15},
		{math.MaxInt32, 0, math.MaxInt32},
		{math.MaxInt32, 1, 0},
		{math.MaxInt32 - 1, 3, 1},
	} {
		h := Header{BaseSequence: tc.base, LastOffsetDelta: tc.delta}
		if got := h.LastSequence(); got != tc.want {
			t.Errorf("base %d delta %d: %d, want %d", tc.base, tc.delta, got, tc.want)
		}
	}
}

// Hand-made record bytes for the error table.
func rawRecord(fields ...[]byte) []byte {
	body := bytes.Join(fields, nil)
	return append(binary.AppendVarint(nil, int64(len(body))), body...)
}

func vi(v int64) []byte { return binary.AppendVarint(nil, v) }

func TestValidateErrors(t *testing.T) {
	good := mustBatch(t, testHeader(), testRecords(4, 50, 6), compress.None)
	edit := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	put32 := func(off int, v int32) func([]byte) []byte {
		return func(b []byte) []byte { binary.BigEndian.PutUint32(b[off:], uint32(v)); return fixCRC(b) }
	}
	okRecord := rawRecord([]byte{0}, vi(0), vi(0), vi(-1), vi(1), []byte("v"), vi(0))
	cases := []struct {
		name  string
		batch []byte
		want  error
	}{
		{"empty", nil, ErrTruncated},
		{"16 bytes", good[:16], ErrTruncated},
		{"header only", good[:HeaderSize-1], ErrTruncated},
		{"truncated", good[:len(good)-1], ErrTruncated},
		{"trailing byte", append(append([]byte(nil), good...), 0), ErrCorrupt},
		{"bad crc", edit(func(b []byte) []byte { b[len(b)-3] ^= 0x40; return b }), ErrCorrupt},
		{"crc field", edit(func(b []byte) []byte { b[offsetCRC] ^= 1; return b }), ErrCorrupt},
		{"magic 0", edit(func(b []byte) []byte { b[offsetMagic] = 0; return b }), ErrUnsupportedMagic},
		{"magic 1", edit(func(b []byte) []byte { b[offsetMagic] = 1; return b }), ErrUnsupportedMagic},
		{"magic 3", edit(func(b []byte) []byte { b[offsetMagic] = 3; return b }), ErrUnsupportedMagic},
		{"short legacy message", legacyMessageV0(), ErrUnsupportedMagic},
		{"negative batch length", edit(func(b []byte) []byte { binary.BigEndian.PutUint32(b[8:], 0xffffff00); return b }), ErrCorrupt},
		{"batch length below header", edit(func(b []byte) []byte { binary.BigEndian.PutUint32(b[8:], 48); return b }), ErrCorrupt},
		{"batch length too long", edit(func(b []byte) []byte { binary.BigEndian.PutUint32(b[8:], uint32(len(b))); return b }), ErrTruncated},
		{"count too high", edit(put32(offsetRecordCount, 5)), ErrInvalidRecord},
		{"count too low", edit(func(b []byte) []byte { put32(offsetRecordCount, 3)(b); return put32(offsetLastOffsetDelta, 2)(b) }), ErrInvalidRecord},
		{"count zero", withRecordsSection(testHeader(), 0, -1, nil), ErrInvalidRecord},
		{"count negative", edit(put32(offsetRecordCount, -1)), ErrInvalidRecord},
		{"last offset delta", edit(put32(offsetLastOffsetDelta, 4)), ErrInvalidRecord},
		{"unknown codec", edit(func(b []byte) []byte { b[offsetAttributes+1] |= 5; return fixCRC(b) }), compress.ErrUnknownCodec},
		{"producer id without sequence", edit(func(b []byte) []byte {
			binary.BigEndian.PutUint64(b[offsetProducerID:], 7)
			return fixCRC(b)
		}), ErrInvalidRecord},
		{"offset delta gap", withRecordsSection(testHeader(), 2, 1, append(append([]byte(nil), okRecord...),
			rawRecord([]byte{0}, vi(0), vi(2), vi(-1), vi(-1), vi(0))...)), ErrInvalidRecord},
		{"offset delta repeat", withRecordsSection(testHeader(), 2, 1, append(append([]byte(nil), okRecord...), okRecord...)), ErrInvalidRecord},
		{"negative record length", withRecordsSection(testHeader(), 1, 0, vi(-3)), ErrInvalidRecord},
		{"record length past the end", withRecordsSection(testHeader(), 1, 0, append(vi(100), 0, 0, 0)), ErrInvalidRecord},
		{"record length too long for body", withRecordsSection(testHeader(), 1, 0,
			append(vi(9), []byte{0, 0, 0, 1, 1, 0, 0, 0, 0}...)), ErrInvalidRecord},
		{"record body overruns length", withRecordsSection(testHeader(), 1, 0,
			append(vi(4), []byte{0, 0, 0, 1, 1, 0}...)), ErrInvalidRecord},
		{"key length -2", withRecordsSection(testHeader(), 1, 0, rawRecord([]byte{0}, vi(0), vi(0), vi(-2), vi(-1), vi(0))), ErrInvalidRecord},
		{"value past record", withRecordsSection(testHeader(), 1, 0, rawRecord([]byte{0}, vi(0), vi(0), vi(-1), vi(5), []byte("ab"), vi(0))), ErrInvalidRecord},
		{"negative header count", withRecordsSection(testHeader(), 1, 0, rawRecord([]byte{0}, vi(0), vi(0), vi(-1), vi(-1), vi(-1))), ErrInvalidRecord},
		{"header count past the end", withRecordsSection(testHeader(), 1, 0, rawRecord([]byte{0}, vi(0), vi(0), vi(-1), vi(-1), vi(3), vi(0), vi(0))), ErrInvalidRecord},
		{"null header key", withRecordsSection(testHeader(), 1, 0, rawRecord([]byte{0}, vi(0), vi(0), vi(-1), vi(-1), vi(1), vi(-1), vi(-1))), ErrInvalidRecord},
		{"varint too long", withRecordsSection(testHeader(), 1, 0, rawRecord([]byte{0}, vi(0), []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0}, vi(-1), vi(-1), vi(0))), ErrInvalidRecord},
		{"varlong too long", withRecordsSection(testHeader(), 1, 0, rawRecord([]byte{0}, bytes.Repeat([]byte{0xff}, 11), vi(0), vi(-1), vi(-1), vi(0))), ErrInvalidRecord},
		{"empty record section", withRecordsSection(testHeader(), 1, 0, nil), ErrInvalidRecord},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Validate(tc.batch)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Validate: got %v, want %v", err, tc.want)
			}
			if _, err := ValidateDeep(tc.batch, nil); !errors.Is(err, tc.want) {
				t.Fatalf("ValidateDeep: got %v, want %v", err, tc.want)
			}
		})
	}
	// The hand-made good record passes, so the table tests what it says.
	if _, err := Validate(withRecordsSection(testHeader(), 1, 0, okRecord)); err != nil {
		t.Fatalf("hand-made record: %v", err)
	}
	// Clients may not write control batches; the broker's own (a
	// producer id, no sequence) pass VerifyCRC.
	ctl := testHeader()
	ctl.Attributes = AttrControl | AttrTransactional
	ctl.ProducerID = 4
	marker := withRecordsSection(ctl, 1, 0, okRecord)
	if _, err := Validate(marker); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("control batch: got %v, want ErrInvalidRecord", err)
	}
	if h, err := VerifyCRC(marker); err != nil || !h.Control() {
		t.Fatalf("VerifyCRC of a control batch: %v", err)
	}
}

// legacyMessageV0 is a magic-0 message set entry: offset, size, crc, magic,
// attributes, key, value.
func legacyMessageV0() []byte {
	b := make([]byte, 12, 26)
	binary.BigEndian.PutUint32(b[8:], 14)
	b = append(b, 0, 0, 0, 0, 0 /* magic */, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	return b
}

func TestValidateDeepCompressedErrors(t *testing.T) {
	recs := testRecords(3, 10, 7)
	for _, codec := range allCodecs[1:] {
		t.Run(codec.String(), func(t *testing.T) {
			// Records with an offset delta gap, compressed: Validate
			// does not look inside, ValidateDeep does.
			bad := append([]Record(nil), recs...)
			bad[2].OffsetDelta = 5
			h := testHeader()
			b := mustBatch(t, h, bad, codec)
			binary.BigEndian.PutUint32(b[offsetLastOffsetDelta:], 2)
			fixCRC(b)
			if _, err := Validate(b); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if _, err := ValidateDeep(b, nil); !errors.Is(err, ErrInvalidRecord) {
				t.Fatalf("ValidateDeep: got %v, want ErrInvalidRecord", err)
			}
			// Garbage in place of the compressed records.
			g := withRecordsSection(h, 3, 2, []byte("not compressed at all"))
			g[offsetAttributes+1] |= byte(codec)
			fixCRC(g)
			if _, err := ValidateDeep(g, nil); !errors.Is(err, ErrInvalidRecord) {
				t.Fatalf("garbage: got %v", err)
			}
			if err := ForEachRecord(g, nil, func(*Record) error { return nil }); !errors.Is(err, ErrInvalidRecord) {
				t.Fatalf("ForEachRecord garbage: got %v", err)
			}
			// A bomb: more than MaxDecompressedBytes.
			defer func(old int) { MaxDecompressedBytes = old }(MaxDecompressedBytes)
			MaxDecompressedBytes = 1 << 10
			big := mustBatch(t, h, testRecords(3, 1000, 8), codec)
			if _, err := ValidateDeep(big, nil); !errors.Is(err, compress.ErrTooLarge) {
				t.Fatalf("bomb: got %v, want ErrTooLarge", err)
			}
		})
	}
}

func TestForEachRecord(t *testing.T) {
	recs := testRecords(9, 30, 9)
	b := mustBatch(t, testHeader(), recs, compress.Snappy)
	stop := errors.New("stop")
	n := 0
	err := ForEachRecord(b, nil, func(r *Record) error {
		n++
		if n == 4 {
			return stop
		}
		return nil
	})
	if err != stop || n != 4 {
		t.Fatalf("callback error: %v after %d records", err, n)
	}
	// Compaction leaves gaps in offset deltas: ForEachRecord reports them.
	gappy := []Record{recs[0], recs[3], recs[8]}
	h := testHeader()
	b = mustBatch(t, h, gappy, compress.None)
	got := collect(t, b)
	if got[1].OffsetDelta != 3 || got[2].OffsetDelta != 8 {
		t.Fatalf("offset deltas %d %d", got[1].OffsetDelta, got[2].OffsetDelta)
	}
	if hh, err := VerifyCRC(b); err != nil || hh.LastOffsetDelta != 8 {
		t.Fatalf("VerifyCRC: %+v %v", hh, err)
	}
	for _, bad := range [][]byte{nil, good16(), legacyMessageV0()} {
		if err := ForEachRecord(bad, nil, func(*Record) error { return nil }); err == nil {
			t.Fatal("ForEachRecord accepted a malformed batch")
		}
	}
}

func good16() []byte { return make([]byte, 16) }

func TestIter(t *testing.T) {
	var set []byte
	var want []Header
	for i, codec := range allCodecs {
		h := testHeader()
		h.BaseOffset = int64(i * 100)
		before := len(set)
		set = mustBatchAppend(t, set, h, testRecords(i+1, 64, uint64(i)), codec)
		hh, _ := ParseHeader(set[before:])
		want = append(want, hh)
	}
	whole := len(set)
	check := func(t *testing.T, set []byte, wantErr error, wantPos int) {
		t.Helper()
		it := NewIter(set)
		var got []Header
		for batch, h, ok := it.Next(); ok; batch, h, ok = it.Next() {
			if _, err := Validate(batch); err != nil {
				t.Fatal(err)
			}
			got = append(got, h)
		}
		if !errors.Is(it.Err(), wantErr) || (wantErr == nil && it.Err() != nil) {
			t.Fatalf("Err() = %v, want %v", it.Err(), wantErr)
		}
		if it.Pos() != wantPos {
			t.Fatalf("Pos() = %d, want %d", it.Pos(), wantPos)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("batch %d header %+v, want %+v", i, got[i], want[i])
			}
		}
		if _, _, ok := it.Next(); ok {
			t.Fatal("Next after the end returned a batch")
		}
	}
	t.Run("clean end", func(t *testing.T) { check(t, set, nil, whole) })
	t.Run("empty set", func(t *testing.T) { check(t, nil, nil, 0) })
	t.Run("zero tail", func(t *testing.T) { check(t, append(set, make([]byte, 4096)...), ErrZeroTail, whole) })
	t.Run("short zero tail", func(t *testing.T) { check(t, append(set, make([]byte, 5)...), ErrZeroTail, whole) })
	t.Run("short garbage tail", func(t *testing.T) { check(t, append(set, 1, 2, 3), ErrTruncated, whole) })
	t.Run("torn batch", func(t *testing.T) { check(t, set[:whole-1], ErrTruncated, whole-len(lastBatch(set))) })
	t.Run("torn header", func(t *testing.T) {
		check(t, append(set, set[:20]...), ErrTruncated, whole)
	})
	t.Run("torn batch then zeros", func(t *testing.T) {
		// The zeros complete the torn batch's framing: Iter returns
		// it, and the CRC is what catches it.
		first := NewIter(set)
		b, _, _ := first.Next()
		s := append(append([]byte(nil), set...), b[:len(b)/2]...)
		s = append(s, make([]byte, len(b))...)
		it := NewIter(s)
		for range want {
			it.Next()
		}
		torn, _, ok := it.Next()
		if !ok || it.Pos() != whole+len(b) {
			t.Fatalf("torn batch not framed: %v", it.Err())
		}
		if _, err := VerifyCRC(torn); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("VerifyCRC of the torn batch: %v", err)
		}
		if _, _, ok := it.Next(); ok || !errors.Is(it.Err(), ErrZeroTail) {
			t.Fatalf("after the torn batch: %v", it.Err())
		}
	})
	t.Run("legacy magic", func(t *testing.T) { check(t, append(set, legacyMessageV0()...), ErrUnsupportedMagic, whole) })
	t.Run("batch length below header", func(t *testing.T) {
		b := append([]byte(nil), set[:HeaderSize]...)
		binary.BigEndian.PutUint32(b[8:], 20)
		check(t, append(set, b...), ErrCorrupt, whole)
	})
	t.Run("negative batch length", func(t *testing.T) {
		b := append([]byte(nil), set[:HeaderSize]...)
		binary.BigEndian.PutUint32(b[8:], 0x80000000)
		check(t, append(set, b...), ErrCorrupt, whole)
	})
	t.Run("zero length, nonzero offset", func(t *testing.T) {
		b := make([]byte, 100)
		b[7] = 1
		check(t, append(set, b...), ErrCorrupt, whole)
	})
}

func mustBatchAppend(t testing.TB, dst []byte, h Header, recs []Record, codec compress.Codec) []byte {
	t.Helper()
	out, err := AppendBatch(dst, h, recs, codec)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func lastBatch(set []byte) []byte {
	it := NewIter(set)
	var last []byte
	for b, _, ok := it.Next(); ok; b, _, ok = it.Next() {
		last = b
	}
	return last
}

func TestParseHeaderErrors(t *testing.T) {
	b := mustBatch(t, testHeader(), testRecords(1, 1, 1), compress.None)
	if _, err := ParseHeader(b[:16]); !errors.Is(err, ErrTruncated) {
		t.Fatal(err)
	}
	if _, err := ParseHeader(b[:60]); !errors.Is(err, ErrTruncated) {
		t.Fatal(err)
	}
	if _, err := ParseHeader(legacyMessageV0()); !errors.Is(err, ErrUnsupportedMagic) {
		t.Fatal(err)
	}
	if _, err := ParseHeader(b[:61]); err != nil {
		t.Fatal(err)
	}
}

// benchBatch is 16 records of 1 KiB values, as a producer sends them.
func benchBatch(tb testing.TB, codec compress.Codec) []byte {
	recs := make([]Record, 16)
	for i := range recs {
		v := make([]byte, 1024)
		for j := range v {
			v[j] = byte("the quick brown fox jumps over the lazy dog "[(i+j)%44])
		}
		recs[i] = Record{OffsetDelta: int32(i), TimestampDelta: int64(i), Key: []byte("key"), Value: v,
			Headers: []RecordHeader{{Key: "trace", Value: []byte("abc")}}}
	}
	return mustBatch(tb, testHeader(), recs, codec)
}

func TestZeroAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	b := benchBatch(t, compress.None)
	set := bytes.Repeat(b, 8)
	zstdBatch := benchBatch(t, compress.Zstd)
	scratch := make([]byte, 0, 64<<10)
	count := 0
	fn := func(r *Record) error { count += len(r.Value) + len(r.Headers); return nil }
	for name, f := range map[string]func(){
		"Validate": func() {
			if _, err := Validate(b); err != nil {
				t.Fatal(err)
			}
		},
		"Iter": func() {
			it := NewIter(set)
			for _, _, ok := it.Next(); ok; _, _, ok = it.Next() {
			}
			if it.Err() != nil {
				t.Fatal(it.Err())
			}
		},
		"ForEachRecord": func() {
			if err := ForEachRecord(b, nil, fn); err != nil {
				t.Fatal(err)
			}
		},
		"ForEachRecord/zstd": func() {
			if err := ForEachRecord(zstdBatch, scratch, fn); err != nil {
				t.Fatal(err)
			}
		},
		"ValidateDeep/zstd": func() {
			if _, err := ValidateDeep(zstdBatch, scratch); err != nil {
				t.Fatal(err)
			}
		},
		"SetLogAppendTime": func() { SetLogAppendTime(b, int64(count)) },
	} {
		f() // warm pools
		if allocs := testing.AllocsPerRun(100, f); allocs != 0 {
			t.Errorf("%s: %.1f allocations per run, want 0", name, allocs)
		}
	}
}

func BenchmarkValidate(b *testing.B) {
	batch := benchBatch(b, compress.None)
	b.SetBytes(int64(len(batch)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Validate(batch); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkIter(b *testing.B) {
	set := bytes.Repeat(benchBatch(b, compress.None), 64)
	b.SetBytes(int64(len(set)))
	b.ReportAllocs()
	for b.Loop() {
		it := NewIter(set)
		n := 0
		for _, _, ok := it.Next(); ok; _, _, ok = it.Next() {
			n++
		}
		if n != 64 {
			b.Fatal(n)
		}
	}
}

func BenchmarkForEachRecord(b *testing.B) {
	for _, codec := range allCodecs {
		b.Run(codec.String(), func(b *testing.B) {
			batch := benchBatch(b, codec)
			scratch := make([]byte, 0, 64<<10)
			b.ReportAllocs()
			for b.Loop() {
				if err := ForEachRecord(batch, scratch, func(*Record) error { return nil }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAppendBatch(b *testing.B) {
	batch := benchBatch(b, compress.None)
	var recs []Record
	for _, r := range collect(b, batch) {
		recs = append(recs, r)
	}
	for _, codec := range allCodecs {
		b.Run(codec.String(), func(b *testing.B) {
			dst := make([]byte, 0, 64<<10)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := AppendBatch(dst, testHeader(), recs, codec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
