package records

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/sluice-broker/sluice/wire/compress"
)

// fuzzLimit keeps decompression bounded while fuzzing.
const fuzzLimit = 1 << 20

func fuzzSeeds(f *testing.F) {
	for i, codec := range allCodecs {
		b := mustBatch(f, testHeader(), testRecords(3+i, 20, uint64(i)), codec)
		f.Add(b)
		f.Add(kmsgBatch(f, testHeader(), testRecords(2, 10, 9), codec, independentCompress))
		f.Add(append(bytes.Clone(b), make([]byte, 30)...))
		f.Add(b[:len(b)/2])
	}
	f.Add(legacyMessageV0())
	f.Add(withRecordsSection(testHeader(), 1, 0, rawRecord([]byte{0}, vi(0), vi(0), vi(-1), vi(1), []byte("v"), vi(1), vi(1), []byte("k"), vi(-1))))
}

// FuzzIter checks that Iter never panics, returns batches that tile the
// input from the start, and stops with an error or at the exact end.
func FuzzIter(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, set []byte) {
		it := NewIter(set)
		pos := 0
		for batch, h, ok := it.Next(); ok; batch, h, ok = it.Next() {
			if len(batch) < HeaderSize || &batch[0] != &set[pos] || h.Size() != len(batch) {
				t.Fatalf("batch at %d: %d bytes, header %+v", pos, len(batch), h)
			}
			if p, err := ParseHeader(batch); err != nil || p != h {
				t.Fatalf("ParseHeader disagrees: %+v %v", p, err)
			}
			pos += len(batch)
		}
		if it.Pos() != pos {
			t.Fatalf("Pos %d, batches end at %d", it.Pos(), pos)
		}
		if (it.Err() == nil) != (pos == len(set)) {
			t.Fatalf("stopped at %d of %d with %v", pos, len(set), it.Err())
		}
	})
}

// FuzzValidate checks that Validate never panics and that what it accepts
// the other readers accept too, with the records it promised.
func FuzzValidate(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, batch []byte) {
		defer func(old int) { MaxDecompressedBytes = old }(MaxDecompressedBytes)
		MaxDecompressedBytes = fuzzLimit
		checkValidate(t, batch)
		// Random bytes rarely have a right CRC and length: also check
		// the input made consistent, so the record checks get fuzzed.
		if len(batch) >= HeaderSize {
			fixed := bytes.Clone(batch)
			fixed[offsetMagic] = Magic
			binary.BigEndian.PutUint32(fixed[offsetBatchLength:], uint32(len(fixed)-frameSize))
			checkValidate(t, fixCRC(fixed))
		}
	})
}

func checkValidate(t *testing.T, batch []byte) {
	{
		h, err := Validate(batch)
		// ValidateExceptCRC is Validate less the CRC: it accepts all
		// Validate accepts, and what it refuses Validate refuses too.
		// (Validate's error is the same one, unless the CRC failed first.)
		switch _, errNoCRC := ValidateExceptCRC(batch); {
		case err == nil && errNoCRC != nil:
			t.Fatalf("ValidateExceptCRC refuses a batch Validate accepts: %v", errNoCRC)
		case errNoCRC != nil && !errors.Is(err, ErrCorrupt) && err.Error() != errNoCRC.Error():
			t.Fatalf("ValidateExceptCRC: %v; Validate: %v", errNoCRC, err)
		}
		if err != nil {
			for _, known := range []error{ErrTruncated, ErrCorrupt, ErrUnsupportedMagic, ErrInvalidRecord} {
				if errors.Is(err, known) {
					return
				}
			}
			t.Fatalf("Validate returned an unclassified error: %v", err)
		}
		if _, err := VerifyCRC(batch); err != nil {
			t.Fatalf("Validate passed, VerifyCRC failed: %v", err)
		}
		if _, err := ValidateDeep(batch, nil); err != nil {
			if h.Codec() == compress.None {
				t.Fatalf("ValidateDeep rejects an uncompressed batch Validate accepted: %v", err)
			}
			return
		}
		n := int32(0)
		err = ForEachRecord(batch, nil, func(r *Record) error {
			if r.OffsetDelta != n {
				t.Fatalf("record %d has offset delta %d", n, r.OffsetDelta)
			}
			n++
			return nil
		})
		if err != nil || n != h.NumRecords {
			t.Fatalf("ForEachRecord: %v after %d of %d records", err, n, h.NumRecords)
		}
		re, err := Recompress(nil, batch, compress.Codec(h.NumRecords%5), nil)
		if err != nil {
			t.Fatalf("Recompress: %v", err)
		}
		if _, err := ValidateDeep(re, nil); err != nil {
			t.Fatalf("recompressed batch invalid: %v", err)
		}
	}
}

// FuzzForEachRecord checks that decoding arbitrary bytes, compressed or
// not, never panics and keeps records inside their batch.
func FuzzForEachRecord(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, batch []byte) {
		defer func(old int) { MaxDecompressedBytes = old }(MaxDecompressedBytes)
		MaxDecompressedBytes = fuzzLimit
		scratch := make([]byte, 0, 4096)
		total := 0
		_ = ForEachRecord(batch, scratch, func(r *Record) error {
			total += len(r.Key) + len(r.Value)
			for _, h := range r.Headers {
				total += len(h.Key) + len(h.Value)
			}
			if total > fuzzLimit+len(batch) {
				t.Fatalf("records hold %d bytes from a %d-byte batch", total, len(batch))
			}
			return nil
		})
	})
}
