package compress

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"
	"unsafe"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// appendWriter is an io.Writer that appends to b, so that streaming encoders
// write straight into the caller's dst.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// readAppend reads r to EOF, appending to dst, and fails with ErrTooLarge as
// soon as more than maxSize bytes were produced. It grows dst itself (rather
// than through bytes.Buffer) so the output lands in the caller's slice.
func readAppend(dst []byte, r io.Reader, maxSize int) ([]byte, error) {
	start := len(dst)
	limit := start + maxSize + 1 // one byte past the bound detects overflow
	for {
		if len(dst) == cap(dst) {
			grow := max(4096, len(dst)-start)
			grow = min(grow, limit-len(dst))
			dst = slices.Grow(dst, grow)
		}
		end := min(cap(dst), limit)
		n, err := r.Read(dst[len(dst):end])
		dst = dst[:len(dst)+n]
		if len(dst)-start > maxSize {
			return dst[:start], ErrTooLarge
		}
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst[:start], err
		}
	}
}

// ---- gzip ----

type gzipEncoder struct {
	w   *gzip.Writer
	out appendWriter
}

var gzipEncoders = sync.Pool{New: func() any {
	e := new(gzipEncoder)
	e.w, _ = gzip.NewWriterLevel(&e.out, gzip.DefaultCompression)
	return e
}}

func compressGzip(dst, src []byte) ([]byte, error) {
	e := gzipEncoders.Get().(*gzipEncoder)
	e.out.b = dst
	e.w.Reset(&e.out)
	_, err := e.w.Write(src)
	if err == nil {
		err = e.w.Close()
	}
	out := e.out.b
	e.out.b = nil
	gzipEncoders.Put(e)
	if err != nil {
		return dst, err
	}
	return out, nil
}

type gzipDecoder struct {
	r   gzip.Reader
	src bytes.Reader
}

var gzipDecoders = sync.Pool{New: func() any { return new(gzipDecoder) }}

func decompressGzip(dst, src []byte, maxSize int) ([]byte, error) {
	d := gzipDecoders.Get().(*gzipDecoder)
	defer gzipDecoders.Put(d)
	d.src.Reset(src)
	defer d.src.Reset(nil)
	if err := d.r.Reset(&d.src); err != nil {
		return dst, fmt.Errorf("gzip: %w", err)
	}
	return readAppend(dst, &d.r, maxSize)
}

// ---- lz4 ----

type lz4Encoder struct {
	w   *lz4.Writer
	out appendWriter
}

var lz4Encoders = sync.Pool{New: func() any {
	e := new(lz4Encoder)
	e.w = lz4.NewWriter(&e.out)
	// 64 KiB blocks as the Java client writes them; the 4 MiB default
	// would cost a 4 MiB buffer per pooled encoder.
	_ = e.w.Apply(lz4.BlockSizeOption(lz4.Block64Kb))
	return e
}}

func compressLZ4(dst, src []byte) ([]byte, error) {
	e := lz4Encoders.Get().(*lz4Encoder)
	e.out.b = dst
	e.w.Reset(&e.out)
	_, err := e.w.Write(src)
	if err == nil {
		err = e.w.Close()
	}
	out := e.out.b
	e.out.b = nil
	lz4Encoders.Put(e)
	if err != nil {
		return dst, err
	}
	return out, nil
}

type lz4Decoder struct {
	r   *lz4.Reader
	src bytes.Reader
}

var lz4Decoders = sync.Pool{New: func() any {
	d := new(lz4Decoder)
	d.r = lz4.NewReader(&d.src)
	return d
}}

func decompressLZ4(dst, src []byte, maxSize int) ([]byte, error) {
	if len(src) == 0 {
		return dst, fmt.Errorf("%w: lz4: empty input", ErrCorrupt)
	}
	d := lz4Decoders.Get().(*lz4Decoder)
	defer lz4Decoders.Put(d)
	d.src.Reset(src)
	defer d.src.Reset(nil)
	d.r.Reset(&d.src)
	out, err := readAppend(dst, d.r, maxSize)
	if err != nil && !errors.Is(err, ErrTooLarge) {
		err = fmt.Errorf("lz4: %w", err)
	}
	return out, err
}

// ---- zstd ----

var zstdEncoders = sync.Pool{New: func() any {
	e, err := zstd.NewWriter(nil,
		zstd.WithEncoderConcurrency(1),
		zstd.WithZeroFrames(true), // an empty input still gives a frame, which every reader accepts
	)
	if err != nil {
		panic(err) // only for invalid options
	}
	return e
}}

func compressZstd(dst, src []byte) []byte {
	e := zstdEncoders.Get().(*zstd.Encoder)
	dst = e.EncodeAll(src, dst)
	zstdEncoders.Put(e)
	return dst
}

// zstdDecoder is a pooled decoder with the reader it streams from and the
// ceiling it was last configured with.
type zstdDecoder struct {
	d       *zstd.Decoder
	src     bytes.Reader
	ceiling uint64
}

// zstdCeiling is the smallest decoded-size ceiling a decoder is configured
// with. klauspost/zstd also caps the window size by it, and Java producers at
// high levels use windows up to 128 MiB (window log 27), so it must not be
// the per-call bound: that is checked separately.
const zstdCeiling = 128 << 20

var zstdDecoders = sync.Pool{New: func() any {
	d, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxMemory(zstdCeiling),
	)
	if err != nil {
		panic(err) // only for invalid options
	}
	zd := &zstdDecoder{d: d, ceiling: zstdCeiling}
	runtime.SetFinalizer(zd, func(zd *zstdDecoder) { zd.d.Close() })
	return zd
}}

// decompressZstd decodes with DecodeAll when the first frame declares its
// content size (what EncodeAll, franz-go and zstd-jni with a known size
// write), after checking that size against the bound; frames without a
// declared size are streamed with an exact bound instead, so a bomb costs
// at most maxSize bytes.
func decompressZstd(dst, src []byte, maxSize int) ([]byte, error) {
	zd := zstdDecoders.Get().(*zstdDecoder)
	defer zstdDecoders.Put(zd)
	if ceiling := uint64(max(maxSize, zstdCeiling)); zd.ceiling != ceiling {
		if err := zd.d.ResetWithOptions(nil, zstd.WithDecoderMaxMemory(ceiling)); err != nil {
			return dst, err
		}
		zd.ceiling = ceiling
	}
	var header zstd.Header
	if err := header.Decode(src); err == nil && header.HasFCS && !header.Skippable {
		if header.FrameContentSize > uint64(maxSize) {
			return dst, ErrTooLarge
		}
		// DecodeAll counts len(dst) against its ceiling, so hand it
		// only the free tail of dst.
		tail := dst[len(dst):]
		out, err := zd.d.DecodeAll(src, tail)
		if errors.Is(err, zstd.ErrDecoderSizeExceeded) {
			return dst, fmt.Errorf("%w: %w", ErrTooLarge, err)
		}
		if err != nil {
			return dst, fmt.Errorf("zstd: %w", err)
		}
		if len(out) > maxSize {
			return dst, ErrTooLarge
		}
		if cap(tail) > 0 && len(out) > 0 && unsafe.SliceData(out) == unsafe.SliceData(tail) {
			return dst[:len(dst)+len(out)], nil // decoded in place
		}
		return append(dst, out...), nil
	}
	zd.src.Reset(src)
	defer zd.src.Reset(nil)
	if err := zd.d.Reset(&zd.src); err != nil {
		return dst, fmt.Errorf("zstd: %w", err)
	}
	defer zd.d.Reset(nil)
	out, err := readAppend(dst, zd.d, maxSize)
	if err != nil && !errors.Is(err, ErrTooLarge) {
		if errors.Is(err, zstd.ErrDecoderSizeExceeded) {
			return out, fmt.Errorf("%w: %w", ErrTooLarge, err)
		}
		err = fmt.Errorf("zstd: %w", err)
	}
	return out, err
}

// ---- snappy ----

// xerialMagic starts a xerial-framed snappy stream; xerialHeader adds the
// version and the minimum compatible version, both 1 (snappy-java rejects a
// lower version).
var (
	xerialMagic  = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}
	xerialHeader = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1}
)

// xerialBlockSize is the block size snappy-java's SnappyOutputStream uses.
const xerialBlockSize = 32 << 10

func appendXerial(dst, src []byte) []byte {
	dst = append(dst, xerialHeader...)
	for len(src) > 0 {
		n := min(xerialBlockSize, len(src))
		dst = slices.Grow(dst, 4+s2.MaxEncodedLen(n))
		at := len(dst)
		block := s2.EncodeSnappy(dst[at+4:cap(dst)], src[:n]) // encodes in place, given the room
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(block)))
		dst = dst[:at+4+len(block)]
		src = src[n:]
	}
	return dst
}

func decompressSnappy(dst, src []byte, maxSize int) ([]byte, error) {
	if len(src) >= len(xerialHeader) && bytes.Equal(src[:len(xerialMagic)], xerialMagic) {
		return decodeXerial(dst, src[len(xerialHeader):], maxSize)
	}
	return decodeSnappyBlock(dst, src, maxSize)
}

// decodeSnappyBlock appends one raw snappy block, checking its declared
// length against the bound before allocating.
func decodeSnappyBlock(dst, block []byte, maxSize int) ([]byte, error) {
	n, err := s2.DecodedLen(block)
	if err != nil {
		return dst, fmt.Errorf("snappy: %w", err)
	}
	if n > maxSize {
		return dst, ErrTooLarge
	}
	dst = slices.Grow(dst, n)
	at := len(dst)
	if _, err := s2.Decode(dst[at:at+n], block); err != nil {
		return dst, fmt.Errorf("snappy: %w", err)
	}
	return dst[:at+n], nil
}

// decodeXerial decodes the blocks that follow the xerial header. It walks
// the block lengths first, so that the bound is checked and dst grows once.
func decodeXerial(dst, blocks []byte, maxSize int) ([]byte, error) {
	total := 0
	for rest := blocks; len(rest) > 0; {
		if len(rest) < 4 {
			return dst, fmt.Errorf("%w: snappy: truncated xerial block length", ErrCorrupt)
		}
		size := binary.BigEndian.Uint32(rest)
		rest = rest[4:]
		if uint64(size) > uint64(len(rest)) {
			return dst, fmt.Errorf("%w: snappy: xerial block of %d bytes past the end", ErrCorrupt, size)
		}
		n, err := s2.DecodedLen(rest[:size])
		if err != nil {
			return dst, fmt.Errorf("snappy: %w", err)
		}
		total += n
		if total > maxSize {
			return dst, ErrTooLarge
		}
		rest = rest[size:]
	}
	start := len(dst)
	dst = slices.Grow(dst, total)
	for len(blocks) > 0 {
		size := binary.BigEndian.Uint32(blocks)
		var err error
		if dst, err = decodeSnappyBlock(dst, blocks[4:4+size], maxSize); err != nil {
			return dst[:start], err
		}
		blocks = blocks[4+size:]
	}
	return dst, nil
}
