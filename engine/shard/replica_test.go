package shard

import (
	"bytes"
	"errors"
	"testing"

	"github.com/sluice-broker/sluice/engine/log"
	"github.com/sluice-broker/sluice/engine/storage"
	"github.com/sluice-broker/sluice/wire/compress"
	"github.com/sluice-broker/sluice/wire/records"
)

// appendReplica runs AppendReplica on the test partition and waits for it.
func appendReplica(s *Shard, set []byte, leaderHW int64) error {
	ch := make(chan error, 1)
	s.Do(func(s *Shard) { s.AppendReplica(testKey, set, leaderHW, func(err error) { ch <- err }) })
	return <-ch
}

// controlBatch is a transaction marker as a primary's coordinator writes
// it: one control record, key version 0 and type (0 abort, 1 commit).
func controlBatch(t *testing.T, base int64, commit bool) []byte {
	t.Helper()
	typ := byte(0)
	if commit {
		typ = 1
	}
	h := records.Header{BaseOffset: base, ProducerID: 7, ProducerEpoch: 0, BaseSequence: -1, Magic: 2,
		Attributes: records.AttrControl | records.AttrTransactional}
	b, err := records.AppendBatch(nil, h, []records.Record{{Key: []byte{0, 0, 0, typ}, Value: []byte{0, 0, 0, 0, 0, 0}}}, compress.None)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A standby appends the primary's log as it is, control batches included
// (a client may not write them, the primary's coordinator does); a batch
// damaged on the way is refused whole, the partition stays writable, and
// the same fetch made again appends.
func TestAppendReplicaTakesThePrimarysLog(t *testing.T) {
	backends(t, func(t *testing.T, m mode) {
		s := startShard(t, storage.NewMem(), m)
		defer s.Stop()
		openTestPartition(t, s, nil)
		data := batch(t, 5, compress.None)
		set := append(append([]byte(nil), data...), controlBatch(t, 5, true)...)

		damaged := bytes.Clone(set)
		damaged[len(data)-1] ^= 0xff // the last record's value: inside the CRC
		err := appendReplica(s, damaged, 0)
		var crcErr *log.CRCError
		if !errors.As(err, &crcErr) || crcErr.Batch != 0 {
			t.Fatalf("a damaged batch: %v, want a CRC error for batch 0", err)
		}
		if _, _, end := offsetsOf(s); end != 0 {
			t.Fatalf("after a refused fetch the log ends at %d, want 0", end)
		}

		if err := appendReplica(s, set, 6); err != nil {
			t.Fatalf("a data batch and a control batch: %v", err)
		}
		if _, _, end := offsetsOf(s); end != 6 {
			t.Fatalf("log end %d, want 6", end)
		}
		got := resultBytes(t, readAsync(s, 0, 1<<20))
		if !bytes.Equal(got[:len(set)], set) {
			t.Fatal("the log does not hold the fetched batches byte for byte")
		}
	})
}
