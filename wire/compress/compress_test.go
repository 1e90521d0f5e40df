package compress

import (
	"bytes"
	stdgzip "compress/gzip"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kgo"
)

var allCodecs = []Codec{None, Gzip, Snappy, LZ4, Zstd}

// semiCompressible returns n bytes that look like JSON log records: text
// that compresses by a few times, not to nothing. The seed makes it replayable.
func semiCompressible(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	words := []string{"user", "order", "payment", "shipped", "pending", "eu-west-1", "checkout", "cart", "true", "false"}
	var b bytes.Buffer
	for b.Len() < n {
		fmt.Fprintf(&b, `{"id":%d,"ts":%d,"kind":%q,"state":%q,"amount":%d.%02d,"token":"%x"}`+"\n",
			rng.Uint64N(1<<40), 1700000000000+rng.Uint64N(1<<30), words[rng.IntN(len(words))],
			words[rng.IntN(len(words))], rng.IntN(10000), rng.IntN(100), rng.Uint64())
	}
	return b.Bytes()[:n]
}

func testInputs() map[string][]byte {
	return map[string][]byte{
		"empty":      {},
		"one":        {42},
		"zeros-100k": make([]byte, 100_000),
		"text-16k":   semiCompressible(16<<10, 1),
		"text-200k":  semiCompressible(200<<10, 2), // several xerial and lz4 blocks
		"random-70k": randomBytes(70_000, 3),
	}
}

func randomBytes(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	for _, c := range allCodecs {
		for name, in := range testInputs() {
			t.Run(c.String()+"/"+name, func(t *testing.T) {
				prefix := []byte("prefix")
				comp, err := Compress(c, append([]byte(nil), prefix...), in)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.HasPrefix(comp, prefix) {
					t.Fatal("Compress did not append to dst")
				}
				out, err := Decompress(c, []byte("dst"), comp[len(prefix):], len(in))
				if err != nil {
					t.Fatal(err)
				}
				if string(out[:3]) != "dst" || !bytes.Equal(out[3:], in) {
					t.Fatalf("round trip mismatch: %d bytes in, %d out", len(in), len(out)-3)
				}
				if len(in) > 0 {
					if _, err := Decompress(c, nil, comp[len(prefix):], len(in)-1); !errors.Is(err, ErrTooLarge) {
						t.Fatalf("maxSize %d: got %v, want ErrTooLarge", len(in)-1, err)
					}
				}
			})
		}
	}
}

// independentDecode decodes our output with another implementation.
func independentDecode(t *testing.T, c Codec, comp []byte) []byte {
	t.Helper()
	switch c {
	case None:
		return comp
	case Gzip:
		r, err := stdgzip.NewReader(bytes.NewReader(comp))
		if err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		return out
	case LZ4:
		out, err := io.ReadAll(lz4.NewReader(bytes.NewReader(comp)))
		if err != nil {
			t.Fatal(err)
		}
		return out
	case Zstd:
		d, err := zstd.NewReader(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		out, err := d.DecodeAll(comp, nil)
		if err != nil {
			t.Fatal(err)
		}
		return out
	case Snappy:
		// xerial by hand: header, then (big-endian length, raw block)...
		if !bytes.HasPrefix(comp, xerialHeader) {
			t.Fatalf("snappy output lacks the xerial header: % x", comp[:min(16, len(comp))])
		}
		var out []byte
		for rest := comp[16:]; len(rest) > 0; {
			n := int(rest[0])<<24 | int(rest[1])<<16 | int(rest[2])<<8 | int(rest[3])
			block, err := snappy.DecodeStrict(nil, rest[4:4+n])
			if err != nil {
				t.Fatal(err)
			}
			if len(block) > xerialBlockSize {
				t.Fatalf("xerial block of %d bytes, snappy-java writes at most %d", len(block), xerialBlockSize)
			}
			out = append(out, block...)
			rest = rest[4+n:]
		}
		return out
	}
	t.Fatalf("codec %v", c)
	return nil
}

// independentEncode compresses in with another implementation.
func independentEncode(t *testing.T, c Codec, in []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	switch c {
	case None:
		return in
	case Gzip:
		w := stdgzip.NewWriter(&b)
		w.Write(in)
		w.Close()
	case LZ4:
		w := lz4.NewWriter(&b) // defaults: 4 MiB blocks, content checksum
		w.Write(in)
		w.Close()
	case Zstd:
		e, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
		return e.EncodeAll(in, nil)
	case Snappy:
		return snappy.Encode(nil, in) // a raw block, as some librdkafka builds write
	}
	return b.Bytes()
}

func TestInteropWithIndependentImplementations(t *testing.T) {
	for _, c := range allCodecs {
		for name, in := range testInputs() {
			t.Run(c.String()+"/"+name, func(t *testing.T) {
				comp, err := Compress(c, nil, in)
				if err != nil {
					t.Fatal(err)
				}
				if out := independentDecode(t, c, comp); !bytes.Equal(out, in) {
					t.Fatal("independent decoder disagrees with our encoder")
				}
				foreign := independentEncode(t, c, in)
				out, err := Decompress(c, nil, foreign, len(in))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(out, in) {
					t.Fatal("our decoder disagrees with the independent encoder")
				}
			})
		}
	}
}

// TestInteropWithFranzGo checks both directions against the codecs of the
// franz-go client (kgo), which librdkafka-compatible clients share.
func TestInteropWithFranzGo(t *testing.T) {
	dec := kgo.DefaultDecompressor()
	for _, c := range allCodecs[1:] {
		in := semiCompressible(100<<10, 7)
		t.Run(c.String(), func(t *testing.T) {
			comp, err := Compress(c, nil, in)
			if err != nil {
				t.Fatal(err)
			}
			out, err := dec.Decompress(comp, kgo.CompressionCodecType(c))
			if err != nil || !bytes.Equal(out, in) {
				t.Fatalf("kgo cannot read our %v: %v", c, err)
			}
			var codec kgo.CompressionCodec
			switch c {
			case Gzip:
				codec = kgo.GzipCompression()
			case Snappy:
				codec = kgo.SnappyCompression()
			case LZ4:
				codec = kgo.Lz4Compression()
			case Zstd:
				codec = kgo.ZstdCompression()
			}
			enc, err := kgo.DefaultCompressor(codec)
			if err != nil {
				t.Fatal(err)
			}
			theirs, used := enc.Compress(new(bytes.Buffer), in)
			if used != kgo.CompressionCodecType(c) {
				t.Fatalf("kgo used codec %d", used)
			}
			out, err = Decompress(c, nil, theirs, len(in))
			if err != nil || !bytes.Equal(out, in) {
				t.Fatalf("we cannot read kgo's %v: %v", c, err)
			}
		})
	}
}

func TestSnappyXerialEdgeCases(t *testing.T) {
	// A header with no blocks is an empty stream.
	out, err := Decompress(Snappy, nil, xerialHeader, 10)
	if err != nil || len(out) != 0 {
		t.Fatalf("header only: %q, %v", out, err)
	}
	good := appendXerial(nil, semiCompressible(40<<10, 4))
	for name, bad := range map[string][]byte{
		"short length":       good[:18],
		"block past the end": good[:len(good)-1],
		"garbage block":      append(append([]byte(nil), xerialHeader...), 0, 0, 0, 3, 0xff, 0xff, 0xff),
		"raw garbage":        {0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	} {
		if _, err := Decompress(Snappy, nil, bad, 1<<20); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestDecompressionBombs checks that small inputs claiming or producing
// huge outputs are refused without allocating the output.
func TestDecompressionBombs(t *testing.T) {
	huge := make([]byte, 64<<20)
	for _, c := range allCodecs[1:] {
		t.Run(c.String(), func(t *testing.T) {
			bomb, err := Compress(c, nil, huge)
			if err != nil {
				t.Fatal(err)
			}
			var before, after runtimeMem
			before.read()
			_, err = Decompress(c, nil, bomb, 1<<20)
			after.read()
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("%d-byte bomb: got %v, want ErrTooLarge", len(bomb), err)
			}
			if grew := after.totalAlloc - before.totalAlloc; grew > 16<<20 {
				t.Fatalf("refusing the bomb allocated %d bytes", grew)
			}
		})
	}
	// zstd frames written by a stream do not declare their size.
	t.Run("zstd-stream", func(t *testing.T) {
		var b bytes.Buffer
		w, _ := zstd.NewWriter(&b)
		w.Write(huge)
		w.Close()
		var header zstd.Header
		if err := header.Decode(b.Bytes()); err != nil || header.HasFCS {
			t.Fatalf("want a frame without content size: %+v, %v", header, err)
		}
		var before, after runtimeMem
		before.read()
		_, err := Decompress(Zstd, nil, b.Bytes(), 1<<20)
		after.read()
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("got %v, want ErrTooLarge", err)
		}
		if grew := after.totalAlloc - before.totalAlloc; grew > 16<<20 {
			t.Fatalf("refusing the bomb allocated %d bytes", grew)
		}
		// and the same stream within the bound decodes
		small := semiCompressible(50_000, 9)
		b.Reset()
		w.Reset(&b)
		w.Write(small)
		w.Close()
		out, err := Decompress(Zstd, []byte("x"), b.Bytes(), len(small))
		if err != nil || !bytes.Equal(out[1:], small) {
			t.Fatalf("streamed frame: %v", err)
		}
	})
	// A raw snappy block whose header claims 4 GiB.
	claim := s2.EncodeSnappy(nil, []byte("x"))
	claim = append([]byte{0xff, 0xff, 0xff, 0xff, 0x0f}, claim[1:]...)
	if _, err := Decompress(Snappy, nil, claim, 1<<20); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("snappy length claim: got %v, want ErrTooLarge", err)
	}
}

func TestParseCodec(t *testing.T) {
	for _, c := range allCodecs {
		got, err := ParseCodec(c.String())
		if err != nil || got != c {
			t.Errorf("ParseCodec(%q) = %v, %v", c.String(), got, err)
		}
	}
	if got, err := ParseCodec("uncompressed"); err != nil || got != None {
		t.Errorf("ParseCodec(uncompressed) = %v, %v", got, err)
	}
	for _, bad := range []string{"", "producer", "GZIP", "brotli"} {
		if _, err := ParseCodec(bad); !errors.Is(err, ErrUnknownCodec) {
			t.Errorf("ParseCodec(%q): got %v, want ErrUnknownCodec", bad, err)
		}
	}
	if s := Codec(5).String(); s != "codec(5)" {
		t.Errorf("Codec(5).String() = %q", s)
	}
	if _, err := Compress(Codec(7), nil, []byte("x")); !errors.Is(err, ErrUnknownCodec) {
		t.Errorf("Compress(7): %v", err)
	}
	if _, err := Decompress(Codec(-1), nil, []byte("x"), 10); !errors.Is(err, ErrUnknownCodec) {
		t.Errorf("Decompress(-1): %v", err)
	}
}

func TestMalformedInputs(t *testing.T) {
	for _, c := range allCodecs[1:] {
		for _, in := range [][]byte{nil, {0}, []byte("definitely not compressed data")} {
			if (c == Zstd && len(in) == 0) || (c == Snappy && len(in) == 1) {
				continue // zero zstd frames, and the snappy block "\x00", are valid empty streams
			}
			if _, err := Decompress(c, nil, in, 1<<20); err == nil {
				t.Errorf("%v accepted %q", c, in)
			}
		}
	}
}

func TestCompressAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	in := semiCompressible(16<<10, 5)
	for _, c := range []Codec{Snappy, Zstd, Gzip} {
		dst := make([]byte, 0, 64<<10)
		out := make([]byte, 0, 64<<10)
		comp, _ := Compress(c, dst, in)
		Decompress(c, out, comp, len(in))
		allocs := testing.AllocsPerRun(50, func() {
			comp, _ = Compress(c, dst, in)
			if _, err := Decompress(c, out, comp, len(in)); err != nil {
				t.Fatal(err)
			}
		})
		if allocs > 0 {
			t.Errorf("%v: %.1f allocations per compress+decompress, want 0", c, allocs)
		}
	}
}

func FuzzDecompress(f *testing.F) {
	in := semiCompressible(2000, 6)
	for _, c := range allCodecs {
		comp, _ := Compress(c, nil, in)
		f.Add(uint8(c), comp)
	}
	f.Add(uint8(Snappy), snappy.Encode(nil, in))
	f.Fuzz(func(t *testing.T, codec uint8, data []byte) {
		const limit = 1 << 20
		out, err := Decompress(Codec(codec%5), nil, data, limit)
		if err == nil && len(out) > limit {
			t.Fatalf("%d bytes out past the %d limit", len(out), limit)
		}
	})
}

func BenchmarkCompress(b *testing.B) {
	in := semiCompressible(16<<10, 8)
	for _, c := range allCodecs {
		b.Run(c.String(), func(b *testing.B) {
			dst := make([]byte, 0, 64<<10)
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			var n int
			for b.Loop() {
				out, err := Compress(c, dst, in)
				if err != nil {
					b.Fatal(err)
				}
				n = len(out)
			}
			b.ReportMetric(float64(n)/float64(len(in)), "ratio")
		})
	}
}

func BenchmarkDecompress(b *testing.B) {
	in := semiCompressible(16<<10, 8)
	for _, c := range allCodecs {
		b.Run(c.String(), func(b *testing.B) {
			comp, _ := Compress(c, nil, in)
			dst := make([]byte, 0, 64<<10)
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decompress(c, dst, comp, len(in)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
