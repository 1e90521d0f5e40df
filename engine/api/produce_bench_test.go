package api

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-broker/sluice/wire/compress"
	"github.com/sluice-broker/sluice/wire/records"
)

// produceFrame builds an acks=1 Produce v11 frame with one batch of n
// 1 KiB records for partition 0 of topic.
func produceFrame(tb testing.TB, topic string, n int) []byte {
	tb.Helper()
	recs := make([]records.Record, n)
	for i := range recs {
		recs[i] = records.Record{OffsetDelta: int32(i), Key: []byte(fmt.Sprint(i)), Value: make([]byte, 1024)}
	}
	h := records.Header{Magic: 2, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, BaseTimestamp: time.Now().UnixMilli()}
	batch, err := records.AppendBatch(nil, h, recs, compress.None)
	if err != nil {
		tb.Fatal(err)
	}
	req := kmsg.NewPtrProduceRequest()
	req.Acks = 1
	req.TimeoutMillis = 1000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = batch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return requestFrame(req, 11)
}

// BenchmarkProduceRequest drives whole Produce requests through the handler
// (decode, shard append, response framing). Allocations are per request and
// the same whatever the number of records in the batch: none per record.
func BenchmarkProduceRequest(b *testing.B) {
	for _, n := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			h, br := newTestHandler(b)
			if _, err := br.CreateTopic("bench", 1, 1, nil, false); err != nil {
				b.Fatal(err)
			}
			frame := produceFrame(b, "bench", n)
			work := make([]byte, len(frame))
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				copy(work, frame) // the shard rewrites base offsets in place
				r := h.Handle(work, nil)
				r.Wait()
			}
		})
	}
}

// TestProduceAllocationsIndependentOfRecords asserts the benchmark's claim.
func TestProduceAllocationsIndependentOfRecords(t *testing.T) {
	h, br := newTestHandler(t)
	if _, err := br.CreateTopic("allocs", 1, 1, nil, false); err != nil {
		t.Fatal(err)
	}
	allocs := func(n int) float64 {
		frame := produceFrame(t, "allocs", n)
		work := make([]byte, len(frame))
		return testing.AllocsPerRun(200, func() {
			copy(work, frame)
			h.Handle(work, nil).Wait()
		})
	}
	one, many := allocs(1), allocs(256)
	t.Logf("allocations per Produce request: %.1f with 1 record, %.1f with 256 records", one, many)
	if many > one+1 {
		t.Fatalf("allocations grow with records: %.1f for 1, %.1f for 256", one, many)
	}
}

// TestFetchBytesAllocatedIndependentOfRecords fetches a partition's records
// over and over and checks that the heap bytes allocated per Fetch do not
// grow with the record bytes returned. In direct mode the records come from
// the tail cache through a pooled buffer; copying them again into the
// response frame allocated their size per fetch, and tailing consumers
// then drove the garbage collector at their own byte rate.
func TestFetchBytesAllocatedIndependentOfRecords(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop buffers at random, so pooled buffers are reallocated")
	}
	h, br := newTestHandler(t)
	perFetch := func(name string, n int) float64 {
		topic, err := br.CreateTopic(name, 1, 1, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		frame := produceFrame(t, name, n)
		var pr kmsg.ProduceResponse
		decodeResponse(t, written(t, h.Handle(frame, nil)), &pr, 11, true)
		if code := pr.Topics[0].Partitions[0].ErrorCode; code != 0 {
			t.Fatalf("produce: error %d", code)
		}
		fetch := fetchFrame(topic.ID, 0, 4<<20)
		got := 0
		run := func() {
			r := h.Handle(fetch, nil)
			r.Wait()
			got = 0
			for _, p := range r.Parts {
				got += len(p.Bytes) + p.Len
			}
			r.Release()
		}
		for range 20 { // warm the buffer pools
			run()
		}
		if got < n*1024 {
			t.Fatalf("fetch returned %d bytes, want the %d records", got, n)
		}
		const runs = 200
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range runs {
			run()
		}
		runtime.ReadMemStats(&after)
		return float64(after.TotalAlloc-before.TotalAlloc) / runs
	}
	one, many := perFetch("one", 1), perFetch("many", 256)
	t.Logf("heap bytes allocated per Fetch: %.0f returning 1 KiB of records, %.0f returning 256 KiB", one, many)
	if many > one+16<<10 {
		t.Fatalf("allocation grows with the record bytes fetched: %.0f bytes per fetch for 1 KiB, %.0f for 256 KiB", one, many)
	}
}
