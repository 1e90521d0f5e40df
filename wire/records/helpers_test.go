package records

import (
	"bytes"
	stdgzip "compress/gzip"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-broker/sluice/wire/compress"
)

var allCodecs = []compress.Codec{compress.None, compress.Gzip, compress.Snappy, compress.LZ4, compress.Zstd}

// testRecords returns n records of about valueSize bytes each, with the
// shapes that matter: null and empty keys and values, headers with null
// values, negative and large timestamp deltas. Offset deltas are 0..n-1.
func testRecords(n, valueSize int, seed uint64) []Record {
	rng := rand.New(rand.NewPCG(seed, 1))
	recs := make([]Record, n)
	for i := range recs {
		r := &recs[i]
		r.OffsetDelta = int32(i)
		r.TimestampDelta = int64(i) * 7
		if i == 1 {
			r.TimestampDelta = -5
		}
		if i == 2 {
			r.TimestampDelta = 1 << 40
		}
		switch i % 4 {
		case 0:
			r.Key = fmt.Appendf(nil, "key-%d", i)
		case 1:
			r.Key = nil
		case 2:
			r.Key = []byte{}
		case 3:
			r.Key = bytes.Repeat([]byte{byte(i)}, 200)
		}
		if i%5 == 4 {
			r.Value = nil // tombstone
		} else {
			r.Value = make([]byte, valueSize)
			for j := range r.Value {
				r.Value[j] = "abcdefghij"[rng.IntN(10)] // compressible, not trivially
			}
		}
		for h := range i % 3 {
			var v []byte
			if h != 1 {
				v = fmt.Appendf(nil, "header-value-%d", rng.IntN(1000))
			}
			r.Headers = append(r.Headers, RecordHeader{Key: fmt.Sprintf("h%d", h), Value: v})
		}
	}
	return recs
}

func testHeader() Header {
	return Header{
		BaseOffset:           0,
		PartitionLeaderEpoch: -1,
		BaseTimestamp:        1_700_000_000_000,
		ProducerID:           -1,
		ProducerEpoch:        -1,
		BaseSequence:         -1,
	}
}

// independentCompress compresses with implementations other than ours.
func independentCompress(t testing.TB, c compress.Codec, in []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	switch c {
	case compress.None:
		return append([]byte(nil), in...)
	case compress.Gzip:
		w := stdgzip.NewWriter(&b)
		w.Write(in)
		w.Close()
	case compress.Snappy:
		return snappy.Encode(nil, in) // raw block
	case compress.LZ4:
		w := lz4.NewWriter(&b)
		w.Write(in)
		w.Close()
	case compress.Zstd:
		var w *zstd.Encoder
		w, _ = zstd.NewWriter(&b) // streamed: no content size in the frame
		w.Write(in)
		w.Close()
	}
	return b.Bytes()
}

// independentDecompress decompresses with implementations other than ours.
func independentDecompress(t testing.TB, c compress.Codec, in []byte) []byte {
	t.Helper()
	var r io.Reader
	switch c {
	case compress.None:
		return in
	case compress.Gzip:
		gr, err := stdgzip.NewReader(bytes.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		r = gr
	case compress.Snappy:
		// xerial framing: 16-byte header, then (int32 length, raw block)...
		if !bytes.HasPrefix(in, []byte("\x82SNAPPY\x00")) {
			out, err := snappy.DecodeStrict(nil, in) // a raw block
			if err != nil {
				t.Fatal(err)
			}
			return out
		}
		var out []byte
		for rest := in[16:]; len(rest) > 0; {
			n := int(rest[0])<<24 | int(rest[1])<<16 | int(rest[2])<<8 | int(rest[3])
			block, err := snappy.DecodeStrict(nil, rest[4:4+n])
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, block...)
			rest = rest[4+n:]
		}
		return out
	case compress.LZ4:
		r = lz4.NewReader(bytes.NewReader(in))
	case compress.Zstd:
		d, _ := zstd.NewReader(bytes.NewReader(in))
		defer d.Close()
		r = d
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// kmsgRecord converts a Record to franz-go's, computing its Length.
func kmsgRecord(r *Record) kmsg.Record {
	k := kmsg.Record{
		Attributes:       r.Attributes,
		TimestampDelta64: r.TimestampDelta,
		OffsetDelta:      r.OffsetDelta,
		Key:              r.Key,
		Value:            r.Value,
	}
	for _, h := range r.Headers {
		k.Headers = append(k.Headers, kmsg.Header{Key: h.Key, Value: h.Value})
	}
	k.Length = int32(len(k.AppendTo(nil)) - 1) // a zero Length is one varint byte
	return k
}

// kmsgBatch builds a batch with franz-go's kmsg, its records compressed by
// compressFn, and a CRC computed by hand.
func kmsgBatch(t testing.TB, h Header, recs []Record, codec compress.Codec, compressFn func(testing.TB, compress.Codec, []byte) []byte) []byte {
	t.Helper()
	var raw []byte
	for i := range recs {
		k := kmsgRecord(&recs[i])
		raw = k.AppendTo(raw)
	}
	maxTs := h.BaseTimestamp
	for i := range recs {
		maxTs = max(maxTs, h.BaseTimestamp+recs[i].TimestampDelta)
	}
	b := kmsg.RecordBatch{
		FirstOffset:          h.BaseOffset,
		PartitionLeaderEpoch: h.PartitionLeaderEpoch,
		Magic:                2,
		Attributes:           h.Attributes&^7 | int16(codec),
		LastOffsetDelta:      int32(len(recs) - 1),
		FirstTimestamp:       h.BaseTimestamp,
		MaxTimestamp:         maxTs,
		ProducerID:           h.ProducerID,
		ProducerEpoch:        h.ProducerEpoch,
		FirstSequence:        h.BaseSequence,
		NumRecords:           int32(len(recs)),
		Records:              compressFn(t, codec, raw),
	}
	b.Length = int32(49 + len(b.Records))
	out := b.AppendTo(nil)
	crc := CRC(out[21:])
	out[17], out[18], out[19], out[20] = byte(crc>>24), byte(crc>>16), byte(crc>>8), byte(crc)
	return out
}

func ourCompress(t testing.TB, c compress.Codec, in []byte) []byte {
	out, err := compress.Compress(c, nil, in)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// kmsgDecode decodes a batch with franz-go's kmsg and the independent
// decompressors.
func kmsgDecode(t testing.TB, batch []byte) (kmsg.RecordBatch, []kmsg.Record) {
	t.Helper()
	var b kmsg.RecordBatch
	if err := b.ReadFrom(batch); err != nil {
		t.Fatalf("kmsg cannot read the batch: %v", err)
	}
	data := independentDecompress(t, compress.Codec(b.Attributes&7), b.Records)
	var recs []kmsg.Record
	for len(data) > 0 {
		length, n := varintForTest(data)
		if n <= 0 {
			t.Fatal("bad record length varint")
		}
		var r kmsg.Record
		if err := r.ReadFrom(data[:n+int(length)]); err != nil {
			t.Fatalf("kmsg cannot read record %d: %v", len(recs), err)
		}
		recs = append(recs, r)
		data = data[n+int(length):]
	}
	if int32(len(recs)) != b.NumRecords {
		t.Fatalf("kmsg found %d records, header says %d", len(recs), b.NumRecords)
	}
	return b, recs
}

func varintForTest(b []byte) (int64, int) {
	var u uint64
	for i, c := range b {
		u |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return int64(u>>1) ^ -int64(u&1), i + 1
		}
	}
	return 0, 0
}

// collect returns deep copies of the records of batch.
func collect(t testing.TB, batch []byte) []Record {
	t.Helper()
	var out []Record
	err := ForEachRecord(batch, nil, func(r *Record) error {
		c := Record{
			Attributes:     r.Attributes,
			TimestampDelta: r.TimestampDelta,
			OffsetDelta:    r.OffsetDelta,
			Key:            cloneBytes(r.Key),
			Value:          cloneBytes(r.Value),
		}
		for _, h := range r.Headers {
			c.Headers = append(c.Headers, RecordHeader{Key: string([]byte(h.Key)), Value: cloneBytes(h.Value)})
		}
		out = append(out, c)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// cloneBytes copies b keeping nil and empty apart.
func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

func sameBytes(a, b []byte) bool { return (a == nil) == (b == nil) && bytes.Equal(a, b) }

func sameRecords(t testing.TB, got, want []Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := &got[i], &want[i]
		if g.Attributes != w.Attributes || g.TimestampDelta != w.TimestampDelta || g.OffsetDelta != w.OffsetDelta ||
			!sameBytes(g.Key, w.Key) || !sameBytes(g.Value, w.Value) || len(g.Headers) != len(w.Headers) {
			t.Fatalf("record %d:\n got %+v\nwant %+v", i, *g, *w)
		}
		for j := range g.Headers {
			if g.Headers[j].Key != w.Headers[j].Key || !sameBytes(g.Headers[j].Value, w.Headers[j].Value) {
				t.Fatalf("record %d header %d: got %+v, want %+v", i, j, g.Headers[j], w.Headers[j])
			}
		}
	}
}

// mustBatch builds a batch with AppendBatch.
func mustBatch(t testing.TB, h Header, recs []Record, codec compress.Codec) []byte {
	t.Helper()
	b, err := AppendBatch(nil, h, recs, codec)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withRecordsSection builds an uncompressed batch around hand-made record
// bytes, with a correct length and CRC and the given count.
func withRecordsSection(h Header, count int32, lastOffsetDelta int32, section []byte) []byte {
	h.Magic = Magic
	h.NumRecords = count
	h.LastOffsetDelta = lastOffsetDelta
	b := make([]byte, HeaderSize, HeaderSize+len(section))
	b = append(b, section...)
	b, _ = finishBatch(b, 0, &h)
	return b
}

// fixCRC recomputes the CRC after a test edited a field under it.
func fixCRC(b []byte) []byte {
	crc := CRC(b[offsetAttributes:])
	b[17], b[18], b[19], b[20] = byte(crc>>24), byte(crc>>16), byte(crc>>8), byte(crc)
	return b
}
