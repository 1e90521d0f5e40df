package records

import (
	"fmt"

	"github.com/sluice-broker/sluice/wire/compress"
)

// Validate checks a batch received from a producer, as Kafka's LogValidator
// does before appending, without decompressing it:
//
//   - framing: magic 2 (else ErrUnsupportedMagic), batchLength matching
//     len(batch) (ErrTruncated, ErrCorrupt);
//   - the CRC-32C over attributes..end (ErrCorrupt);
//   - a known codec, recordCount > 0 and lastOffsetDelta == recordCount-1,
//     no control bit (only the broker writes transaction markers), and a
//     baseSequence when there is a producer id (ErrInvalidRecord);
//   - for an uncompressed batch, that exactly recordCount well-formed
//     records fill it, with offset deltas 0, 1, ..., n-1 (ErrInvalidRecord).
//
// These are the rules for batches from clients. Batches the broker wrote
// or replicates (control batches, compaction's empty batches and offset
// gaps) are checked with VerifyCRC instead. Policy left to the caller:
// timestamps, sizes, keys on compacted topics. Validate allocates nothing
// on success.
func Validate(batch []byte) (Header, error) {
	h, err := VerifyCRC(batch)
	if err != nil {
		return h, err
	}
	return h, checkClientBatch(batch, &h)
}

// ValidateExceptCRC is Validate without the CRC check, for a caller that
// checks the CRC as it copies the batch (direct mode's log, in
// AppendCheckingCRC), so that the bytes are read from memory once.
func ValidateExceptCRC(batch []byte) (Header, error) {
	h, err := checkFrame(batch)
	if err != nil {
		return h, err
	}
	return h, checkClientBatch(batch, &h)
}

// checkClientBatch is Validate's rules past the framing and the CRC.
func checkClientBatch(batch []byte, h *Header) error {
	if !h.Codec().Valid() {
		return fmt.Errorf("%w: %w", ErrInvalidRecord, compress.ErrUnknownCodec)
	}
	if h.NumRecords <= 0 {
		return fmt.Errorf("%w: record count %d", ErrInvalidRecord, h.NumRecords)
	}
	if h.LastOffsetDelta != h.NumRecords-1 {
		return fmt.Errorf("%w: last offset delta %d with %d records", ErrInvalidRecord, h.LastOffsetDelta, h.NumRecords)
	}
	if h.Control() {
		return fmt.Errorf("%w: clients may not write control batches", ErrInvalidRecord)
	}
	if h.ProducerID >= 0 && h.BaseSequence < 0 {
		return fmt.Errorf("%w: sequence %d with producer id %d", ErrInvalidRecord, h.BaseSequence, h.ProducerID)
	}
	if h.Codec() == compress.None {
		if err := checkRecords(batch[HeaderSize:], h.NumRecords); err != nil {
			return err
		}
	}
	return nil
}

// ValidateDeep is Validate plus, for a compressed batch, decompressing the
// records into scratch and checking them as Validate checks uncompressed
// ones. It returns scratch, possibly grown, holding the decompressed
// records (empty for an uncompressed batch): pass it back as the next
// scratch.
func ValidateDeep(batch, scratch []byte) ([]byte, error) {
	h, err := Validate(batch)
	if err != nil || h.Codec() == compress.None {
		return scratch[:0], err
	}
	data, err := recordsSection(batch, &h, scratch)
	if err != nil {
		return scratch[:0], err
	}
	if err := checkRecords(data, h.NumRecords); err != nil {
		return data[:0], err
	}
	return data, nil
}

// checkRecords checks that data is exactly count records with offset
// deltas 0..count-1.
func checkRecords(data []byte, count int32) error {
	var rec Record
	for i := int32(0); i < count; i++ {
		if len(data) == 0 {
			return fmt.Errorf("%w: record count %d, only %d records present", ErrInvalidRecord, count, i)
		}
		n, err := parseRecord(data, &rec, false)
		if err != nil {
			return err
		}
		if rec.OffsetDelta != i {
			return fmt.Errorf("%w: record %d has offset delta %d", ErrInvalidRecord, i, rec.OffsetDelta)
		}
		data = data[n:]
	}
	if len(data) != 0 {
		return fmt.Errorf("%w: %d bytes after the last of %d records", ErrInvalidRecord, len(data), count)
	}
	return nil
}
