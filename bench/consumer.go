package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// consumer is one consuming client and its poll loop.
type consumer struct {
	id       int
	client   *kgo.Client
	rec      *recorder
	measured *atomic.Int64 // unix ns; records sent before this are warm-up
	consumed *atomic.Int64
	errs     func(err error)
}

// consumerOptions builds the options of consumer i of n. Direct assignment
// splits the partitions round-robin and reads each from its start (the topic
// is fresh, or a catch-up read wants everything); group mode lets the
// broker's group coordinator assign.
//
// In group mode, assigned tracks how many partitions the group has handed
// out, so a run can wait for a stable group before its clock starts (a
// rebalance mid-run would re-read uncommitted records and show duplicates).
// Offsets are committed on revocation, as a real consumer does.
func consumerOptions(w *Workload, bootstrap, topic, group string, i, n int, assigned *atomic.Int64) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(bootstrap),
		kgo.ClientID("sluice-bench"),
		// The Java consumer's defaults: answer within 500 ms, as soon as one
		// byte is there.
		kgo.FetchMaxWait(500 * time.Millisecond),
		kgo.FetchMinBytes(1),
	}
	switch w.ConsumerMode {
	case ConsumerGroup:
		opts = append(opts,
			kgo.ConsumerGroup(group),
			kgo.ConsumeTopics(topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
				assigned.Add(int64(len(m[topic])))
			}),
			kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
				_ = cl.CommitUncommittedOffsets(ctx)
				assigned.Add(-int64(len(m[topic])))
			}),
			kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
				assigned.Add(-int64(len(m[topic])))
			}),
		)
	default:
		parts := map[int32]kgo.Offset{}
		for p := i; p < w.Partitions; p += n {
			parts[int32(p)] = kgo.NewOffset().AtStart()
		}
		opts = append(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts}))
	}
	return opts
}

// loop polls until ctx ends. Latency is arrival minus the send time in the
// record header (or the record timestamp, ms, for records too small for the
// header).
func (c *consumer) loop(ctx context.Context) {
	for {
		fetches := c.client.PollRecords(ctx, 10000)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			if errors.Is(err, context.Canceled) {
				return
			}
			c.errs(fmt.Errorf("fetch %s[%d]: %w", topic, partition, err))
		})
		nowNanos := time.Now().UnixNano()
		measuredNanos := c.measured.Load()
		var n int64
		fetches.EachRecord(func(r *kgo.Record) {
			n++
			sent := r.Timestamp.UnixNano()
			if len(r.Value) >= recordHeaderBytes {
				sent = int64(binary.BigEndian.Uint64(r.Value[0:8]))
			}
			latency := time.Duration(-1)
			if sent >= measuredNanos {
				latency = time.Duration(nowNanos - sent)
			}
			c.rec.done(r.Partition, len(r.Value)+len(r.Key), latency)
		})
		c.consumed.Add(n)
	}
}
