package api

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-broker/sluice/engine/shard"
	"github.com/sluice-broker/sluice/wire/compress"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/records"
)

// Fetch and ListOffsets with isolation_level=1 (read_committed): the
// fetch stops at the last stable offset and lists the aborted
// transactions in what it returns; ListOffsets answers the LSO as latest.
// read_uncommitted readers see everything up to the high watermark.
func TestReadCommittedFetchAndListOffsets(t *testing.T) {
	h, b := newTestHandler(t)
	tp, err := b.CreateTopic("txn", 1, -1, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	sh := b.ShardOf(tp, 0)
	k := shard.Key{Topic: "txn", Partition: 0}
	on := func(f func(s *shard.Shard, done func(shard.ProduceResult))) shard.ProduceResult {
		ch := make(chan shard.ProduceResult, 1)
		sh.Do(func(s *shard.Shard) { f(s, func(r shard.ProduceResult) { ch <- r }) })
		return <-ch
	}
	txn := func(pid int64, n int) []byte {
		recs := make([]records.Record, n)
		for i := range recs {
			recs[i] = records.Record{OffsetDelta: int32(i), Value: []byte("v")}
		}
		hd := records.Header{ProducerID: pid, BaseSequence: 0, BaseTimestamp: time.Now().UnixMilli(), Attributes: records.AttrTransactional}
		set, err := records.AppendBatch(nil, hd, recs, compress.None)
		if err != nil {
			t.Fatal(err)
		}
		return set
	}
	steps := []func(s *shard.Shard, done func(shard.ProduceResult)){
		func(s *shard.Shard, done func(shard.ProduceResult)) { s.Produce(k, txn(11, 2), -1, done) },      // 0-1, aborted below
		func(s *shard.Shard, done func(shard.ProduceResult)) { s.Produce(k, txn(12, 1), -1, done) },      // 2, left open
		func(s *shard.Shard, done func(shard.ProduceResult)) { s.WriteMarker(k, 11, 0, false, 0, done) }, // 3
	}
	for i, f := range steps {
		if r := on(f); r.Err != kerr.None {
			t.Fatalf("step %d: %+v", i, r)
		}
	}

	fetch := func(isolation int8) kmsg.FetchResponseTopicPartition {
		req := kmsg.NewPtrFetchRequest()
		req.MinBytes, req.MaxBytes, req.IsolationLevel = 1, 1<<20, isolation
		rt := kmsg.NewFetchRequestTopic()
		rt.TopicID = tp.ID
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.PartitionMaxBytes = 1 << 20
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		var resp kmsg.FetchResponse
		decodeResponse(t, written(t, h.Handle(requestFrame(req, 13), nil)), &resp, 13, true)
		return resp.Topics[0].Partitions[0]
	}
	p := fetch(1)
	if p.ErrorCode != 0 || p.HighWatermark != 4 || p.LastStableOffset != 2 {
		t.Fatalf("read_committed fetch: error %d, high watermark %d, LSO %d; want 0, 4, 2", p.ErrorCode, p.HighWatermark, p.LastStableOffset)
	}
	if len(p.AbortedTransactions) != 1 || p.AbortedTransactions[0].ProducerID != 11 || p.AbortedTransactions[0].FirstOffset != 0 {
		t.Fatalf("aborted transactions %+v, want producer 11 from 0", p.AbortedTransactions)
	}
	if n := lastOffsetIn(t, p.RecordBatches); n != 1 {
		t.Fatalf("read_committed fetch ends at offset %d, want 1 (below the LSO 2)", n)
	}
	if p := fetch(0); len(p.AbortedTransactions) != 0 || lastOffsetIn(t, p.RecordBatches) != 3 {
		t.Fatalf("read_uncommitted fetch: aborted %+v, last offset %d; want none, 3", p.AbortedTransactions, lastOffsetIn(t, p.RecordBatches))
	}

	for _, c := range []struct {
		isolation int8
		want      int64
	}{{0, 4}, {1, 2}} {
		req := kmsg.NewPtrListOffsetsRequest()
		req.IsolationLevel = c.isolation
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = "txn"
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Timestamp = -1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		var resp kmsg.ListOffsetsResponse
		decodeResponse(t, written(t, h.Handle(requestFrame(req, 7), nil)), &resp, 7, true)
		if got := resp.Topics[0].Partitions[0].Offset; got != c.want {
			t.Errorf("ListOffsets latest, isolation %d: %d, want %d", c.isolation, got, c.want)
		}
	}
}

// lastOffsetIn is the last offset of the last batch in set (-1 if none).
func lastOffsetIn(t *testing.T, set []byte) int64 {
	t.Helper()
	last := int64(-1)
	it := records.NewIter(set)
	for {
		_, h, ok := it.Next()
		if !ok {
			return last
		}
		last = h.LastOffset()
	}
}
