package records

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"

	"github.com/sluice-broker/sluice/wire/compress"
)

// bufferPool holds the uncompressed records section while AppendBatch
// compresses it.
var bufferPool = sync.Pool{New: func() any { return new([]byte) }}

// AppendBatch appends a complete v2 batch holding recs, compressed with
// codec, to dst. From h it takes BaseOffset, PartitionLeaderEpoch,
// Attributes (bits 0-2 are replaced by codec), BaseTimestamp, ProducerID,
// ProducerEpoch and BaseSequence; a fresh producer-less batch wants
// ProducerID -1, ProducerEpoch -1 and BaseSequence -1. It computes the
// rest as Kafka's MemoryRecordsBuilder does: magic 2, batchLength,
// recordCount, lastOffsetDelta (the last record's OffsetDelta, or
// h.LastOffsetDelta for an empty batch), maxTimestamp (h.MaxTimestamp
// under LogAppendTime or for an empty batch, else the records' latest
// BaseTimestamp+TimestampDelta) and the CRC. Records are written as given:
// the caller sets OffsetDelta (0..n-1 for a new batch).
func AppendBatch(dst []byte, h Header, recs []Record, codec compress.Codec) ([]byte, error) {
	if !codec.Valid() {
		return dst, fmt.Errorf("%w: %d", compress.ErrUnknownCodec, int8(codec))
	}
	h.Magic = Magic
	h.Attributes = h.Attributes&^AttrCodecMask | int16(codec)
	h.NumRecords = int32(len(recs))
	if len(recs) > 0 {
		h.LastOffsetDelta = recs[len(recs)-1].OffsetDelta
		if !h.LogAppendTime() {
			h.MaxTimestamp = h.BaseTimestamp + recs[0].TimestampDelta
			for i := range recs[1:] {
				h.MaxTimestamp = max(h.MaxTimestamp, h.BaseTimestamp+recs[i+1].TimestampDelta)
			}
		}
	}

	start := len(dst)
	dst = slices.Grow(dst, HeaderSize)[:start+HeaderSize]
	if codec == compress.None {
		for i := range recs {
			dst = appendRecord(dst, &recs[i])
		}
	} else {
		buffer := bufferPool.Get().(*[]byte)
		data := (*buffer)[:0]
		for i := range recs {
			data = appendRecord(data, &recs[i])
		}
		var err error
		dst, err = compress.Compress(codec, dst, data)
		*buffer = data[:0]
		bufferPool.Put(buffer)
		if err != nil {
			return dst[:start], err
		}
	}
	return finishBatch(dst, start, &h)
}

// finishBatch writes h as the header of the batch at dst[start:], with the
// batch length and CRC of what follows it.
func finishBatch(dst []byte, start int, h *Header) ([]byte, error) {
	size := len(dst) - start
	if size-frameSize > 1<<31-1 {
		return dst[:start], fmt.Errorf("%w: batch of %d bytes", ErrInvalidRecord, size)
	}
	h.BatchLength = int32(size - frameSize)
	batch := dst[start:]
	h.CRC = 0
	putHeader(batch, h)
	binary.BigEndian.PutUint32(batch[offsetCRC:], CRC(batch[offsetAttributes:]))
	return dst, nil
}

// Recompress appends to dst the same batch with its records compressed with
// codec: every header field is kept but the codec bits, batchLength and
// CRC. The batch's CRC must be valid; a compressed batch is decompressed
// into scratch (bounded by MaxDecompressedBytes). dst must not overlap
// batch or scratch.
func Recompress(dst, batch []byte, codec compress.Codec, scratch []byte) ([]byte, error) {
	if !codec.Valid() {
		return dst, fmt.Errorf("%w: %d", compress.ErrUnknownCodec, int8(codec))
	}
	h, err := VerifyCRC(batch)
	if err != nil {
		return dst, err
	}
	data, err := recordsSection(batch, &h, scratch)
	if err != nil {
		return dst, err
	}
	start := len(dst)
	dst = append(dst, batch[:HeaderSize]...)
	if dst, err = compress.Compress(codec, dst, data); err != nil {
		return dst[:start], err
	}
	h.Attributes = h.Attributes&^AttrCodecMask | int16(codec)
	return finishBatch(dst, start, &h)
}

// AppendRetained is AppendBatch for the log cleaner, which keeps some of a
// batch's records: the new batch keeps h.LastOffsetDelta, as Kafka's cleaner
// does, so the offsets of removed records stay inside the batch and a
// producer's last sequence number still ends where its last offset does.
// recs may be empty: a batch with no records keeps an idempotent producer's
// place in the log. Every record's OffsetDelta must be at most
// h.LastOffsetDelta.
func AppendRetained(dst []byte, h Header, recs []Record, codec compress.Codec) ([]byte, error) {
	last := h.LastOffsetDelta
	if n := len(recs); n > 0 && recs[n-1].OffsetDelta > last {
		return dst, fmt.Errorf("%w: offset delta %d past the batch's last, %d", ErrInvalidRecord, recs[n-1].OffsetDelta, last)
	}
	start := len(dst)
	dst, err := AppendBatch(dst, h, recs, codec)
	if err != nil {
		return dst, err
	}
	out := decodeHeader(dst[start:])
	out.LastOffsetDelta = last
	return finishBatch(dst, start, &out)
}
