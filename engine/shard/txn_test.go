package shard

import (
	"testing"
	"time"

	"github.com/sluice-broker/sluice/engine/storage"
	"github.com/sluice-broker/sluice/wire/compress"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/records"
)

// txnRecords is a transactional batch of n records of producer pid.
func txnRecords(t *testing.T, pid int64, seq int32, n int) []byte {
	t.Helper()
	recs := make([]records.Record, n)
	for i := range recs {
		recs[i] = records.Record{OffsetDelta: int32(i), Value: []byte("in a transaction")}
	}
	h := records.Header{ProducerID: pid, ProducerEpoch: 0, BaseSequence: seq, BaseTimestamp: time.Now().UnixMilli(), Attributes: records.AttrTransactional}
	b, err := records.AppendBatch(nil, h, recs, compress.None)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeMarker(s *Shard, pid int64, commit bool) ProduceResult {
	ch := make(chan ProduceResult, 1)
	s.Do(func(s *Shard) { s.WriteMarker(testKey, pid, 0, commit, 3, func(r ProduceResult) { ch <- r }) })
	return <-ch
}

func readCommittedAt(s *Shard, offset int64) ReadResult {
	ch := make(readChan, 1)
	s.Do(func(s *Shard) { s.ReadCommittedAsync(testKey, offset, 1<<20, ch) })
	return <-ch
}

func listCommitted(s *Shard, ts int64) int64 {
	ch := make(chan int64, 1)
	s.Do(func(s *Shard) { s.ListOffsetCommitted(testKey, ts, func(off, _ int64, _ kerr.Code) { ch <- off }) })
	return <-ch
}

// A read_committed reader stops at the last stable offset; markers close
// transactions, an abort listed with the records that follow it; ListOffsets
// for read_committed answers the last stable offset as latest.
func TestTransactionMarkersAndReadCommitted(t *testing.T) {
	backends(t, func(t *testing.T, m mode) {
		s := startShard(t, storage.NewMem(), m)
		defer s.Stop()
		openTestPartition(t, s, nil)
		if r := produce(s, txnRecords(t, 7, 0, 3), -1); r.Err != kerr.None || r.BaseOffset != 0 { // 0-2
			t.Fatalf("transactional produce: %+v", r)
		}
		if r := produce(s, batch(t, 1, compress.None), -1); r.Err != kerr.None { // 3
			t.Fatal(r.Err)
		}
		r := readCommittedAt(s, 0)
		if r.Err != kerr.None || r.HasData || r.LastStable != 0 || r.HighWatermark != 4 {
			t.Fatalf("read_committed with pid 7 open at 0: %+v", r)
		}
		if off := listCommitted(s, LatestTimestamp); off != 0 {
			t.Fatalf("read_committed latest offset %d, want the LSO 0", off)
		}
		if o, _, _ := listOffset(s, LatestTimestamp); o != 4 {
			t.Fatalf("read_uncommitted latest offset %d, want 4", o)
		}

		if w := writeMarker(s, 7, false); w.Err != kerr.None || w.BaseOffset != 4 {
			t.Fatalf("abort marker: %+v", w)
		}
		r = readCommittedAt(s, 0)
		if !r.HasData || r.LastStable != 5 || r.Data.NextOffset != 5 {
			t.Fatalf("read_committed after the abort: %+v", r)
		}
		resultBytes(t, r)
		if len(r.Aborted) != 1 || r.Aborted[0].ProducerID != 7 || r.Aborted[0].FirstOffset != 0 {
			t.Fatalf("aborted transactions %+v, want pid 7 from 0", r.Aborted)
		}

		if w := produce(s, txnRecords(t, 8, 0, 2), -1); w.Err != kerr.None { // 5-6
			t.Fatal(w.Err)
		}
		if w := writeMarker(s, 8, true); w.Err != kerr.None || w.BaseOffset != 7 {
			t.Fatalf("commit marker: %+v", w)
		}
		r = readCommittedAt(s, 5)
		if !r.HasData || r.LastStable != 8 || len(r.Aborted) != 0 {
			t.Fatalf("read_committed of a committed transaction: %+v", r)
		}
		got := resultBytes(t, r)
		it := records.NewIter(got)
		var last records.Header
		for {
			_, h, ok := it.Next()
			if !ok {
				break
			}
			last = h
		}
		var epoch int32
		s.Call(func(s *Shard) { epoch = s.epoch })
		if !last.Control() || last.BaseOffset != 7 || last.PartitionLeaderEpoch != epoch {
			t.Fatalf("the last batch read is %+v, want the commit marker at 7 stamped with the leader epoch", last)
		}
		var open bool
		s.Call(func(s *Shard) { _, open = s.parts[testKey].Log.OpenTransaction(8) })
		if open {
			t.Fatal("pid 8's transaction still open after its commit marker")
		}
	})
}
