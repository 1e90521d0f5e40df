// Package compress implements the record-batch compression codecs of the
// Kafka protocol: the codec numbering of RecordBatch attributes bits 0-2 and
// byte-compatible encoders and decoders for each.
//
// Wire formats, as the Java client and librdkafka/franz-go read and write them:
//
//	codec   id  format
//	none    0   the records, as is
//	gzip    1   RFC 1952 gzip, one or more members
//	snappy  2   xerial framing (what the Java client writes, what every client reads):
//	              +----------------------------+---------+---------+-----------------------------+
//	              | magic "\x82SNAPPY\x00" (8) | ver (4) | compat  | (len int32 BE | raw block)... |
//	              |                            |   = 1   | (4) = 1 |                             |
//	              +----------------------------+---------+---------+-----------------------------+
//	            or one raw snappy block (some librdkafka builds); Decompress accepts both,
//	            Compress writes xerial framing with 32 KiB blocks, as the Java client does
//	lz4     3   LZ4 frame format (not the legacy Kafka 0.8 framing), 64 KiB independent blocks
//	zstd    4   zstd frames, one or more
//
// Encoders and decoders are expensive to build, so they are pooled; Compress
// and Decompress append to the caller's slice and, once the pools are warm and
// dst has room, allocate nothing of their own for gzip, snappy and zstd.
//
// Decompress bounds its output (maxSize) so that a small hostile batch cannot
// expand into gigabytes: the bound is checked before allocating where the
// format declares the decoded size (snappy, zstd with a content size) and while
// streaming otherwise.
package compress

import (
	"errors"
	"fmt"
)

// Codec is a Kafka compression codec, numbered as in RecordBatch attributes
// bits 0-2.
type Codec int8

const (
	None   Codec = 0
	Gzip   Codec = 1
	Snappy Codec = 2
	LZ4    Codec = 3
	Zstd   Codec = 4
)

var (
	// ErrUnknownCodec is returned for a codec id outside 0-4 (attributes
	// bits 0-2 can hold 5-7) or an unknown codec name.
	ErrUnknownCodec = errors.New("compress: unknown compression codec")
	// ErrTooLarge is returned by Decompress when the output would exceed
	// maxSize.
	ErrTooLarge = errors.New("compress: decompressed size exceeds the limit")
	// ErrCorrupt is returned for malformed compressed input that the
	// underlying decoder did not already describe.
	ErrCorrupt = errors.New("compress: malformed compressed data")
)

// String returns the Kafka name of the codec (the compression.type value).
func (c Codec) String() string {
	switch c {
	case None:
		return "none"
	case Gzip:
		return "gzip"
	case Snappy:
		return "snappy"
	case LZ4:
		return "lz4"
	case Zstd:
		return "zstd"
	}
	return fmt.Sprintf("codec(%d)", int8(c))
}

// Valid reports whether c is one of the five Kafka codecs.
func (c Codec) Valid() bool { return c >= None && c <= Zstd }

// ParseCodec parses a Kafka compression.type value. It accepts the producer
// names (none, gzip, snappy, lz4, zstd) and the topic-level "uncompressed";
// like Kafka it is case-sensitive. The topic-level "producer" is not a codec
// and is left to the caller.
func ParseCodec(name string) (Codec, error) {
	switch name {
	case "none", "uncompressed":
		return None, nil
	case "gzip":
		return Gzip, nil
	case "snappy":
		return Snappy, nil
	case "lz4":
		return LZ4, nil
	case "zstd":
		return Zstd, nil
	}
	return None, fmt.Errorf("%w: %q", ErrUnknownCodec, name)
}

// Compress appends src compressed with c to dst and returns the extended
// slice.
func Compress(c Codec, dst, src []byte) ([]byte, error) {
	switch c {
	case None:
		return append(dst, src...), nil
	case Gzip:
		return compressGzip(dst, src)
	case Snappy:
		return appendXerial(dst, src), nil
	case LZ4:
		return compressLZ4(dst, src)
	case Zstd:
		return compressZstd(dst, src), nil
	}
	return dst, fmt.Errorf("%w: %d", ErrUnknownCodec, int8(c))
}

// Decompress appends src decompressed with c to dst and returns the
// extended slice. It fails with ErrTooLarge, having allocated at most about
// maxSize bytes, if the output would exceed maxSize bytes.
func Decompress(c Codec, dst, src []byte, maxSize int) ([]byte, error) {
	if maxSize < 0 {
		maxSize = 0
	}
	switch c {
	case None:
		if len(src) > maxSize {
			return dst, ErrTooLarge
		}
		return append(dst, src...), nil
	case Gzip:
		return decompressGzip(dst, src, maxSize)
	case Snappy:
		return decompressSnappy(dst, src, maxSize)
	case LZ4:
		return decompressLZ4(dst, src, maxSize)
	case Zstd:
		return decompressZstd(dst, src, maxSize)
	}
	return dst, fmt.Errorf("%w: %d", ErrUnknownCodec, int8(c))
}
