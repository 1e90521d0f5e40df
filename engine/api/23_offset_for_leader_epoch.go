package api

import (
	"sync"

	"github.com/sluice-broker/sluice/engine/meta"
	"github.com/sluice-broker/sluice/engine/shard"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

// OffsetForLeaderEpoch: where a leader epoch ended in a partition's log.
// Consumers ask it to validate their position after the leader changed
// (KIP-320); a node that comes back as a standby asks it to find where its
// log diverged from the primary's. Kafka 4 serves v2 and up (v0-v1 have no
// current leader epoch); the primary answers, as a Kafka leader does.
var _ = register(&handler{key: 23, min: 2, max: 4, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	return respond(rc, h.offsetForLeaderEpoch(body.(*msg.OffsetForLeaderEpochRequest)))
}})

func (h *Handler) offsetForLeaderEpoch(req *msg.OffsetForLeaderEpochRequest) *msg.OffsetForLeaderEpochResponse {
	resp := &msg.OffsetForLeaderEpochResponse{}
	snap := h.b.Meta.Snapshot()
	var wg sync.WaitGroup
	for _, rt := range req.Topics {
		out := msg.OffsetForLeaderEpochResponseOffsetForLeaderTopicResult{Topic: rt.Topic}
		out.Partitions = make([]msg.OffsetForLeaderEpochResponseEpochEndOffset, len(rt.Partitions))
		t, known := h.b.TopicFor(snap, rt.Topic)
		for i, rp := range rt.Partitions {
			slot := &out.Partitions[i]
			*slot = msg.OffsetForLeaderEpochResponseEpochEndOffset{Partition: rp.Partition, LeaderEpoch: -1, EndOffset: -1}
			switch {
			case !known || rp.Partition < 0 || int(rp.Partition) >= len(t.Partitions):
				slot.ErrorCode = int16(kerr.UnknownTopicOrPartition)
			case h.b.IsStandby():
				slot.ErrorCode = int16(kerr.NotLeaderOrFollower)
			case h.epochCheck(rp.CurrentLeaderEpoch) != kerr.None:
				slot.ErrorCode = int16(h.epochCheck(rp.CurrentLeaderEpoch))
			default:
				wg.Add(1)
				h.endOffsetFor(t, rp.Partition, rp.LeaderEpoch, slot, &wg)
			}
		}
		resp.Topics = append(resp.Topics, out)
	}
	wg.Wait()
	return resp
}

func (h *Handler) endOffsetFor(t *meta.Topic, partition, epoch int32, slot *msg.OffsetForLeaderEpochResponseEpochEndOffset, wg *sync.WaitGroup) {
	k := shard.Key{Topic: t.Name, Partition: partition}
	h.b.ShardOf(t, partition).Do(func(s *shard.Shard) {
		defer wg.Done()
		e, end, code := s.EpochEnd(k, epoch)
		slot.ErrorCode, slot.LeaderEpoch, slot.EndOffset = int16(code), e, end
	})
}

// epochCheck applies Kafka's leader epoch fencing to a request's current
// leader epoch (-1: the client does not know it, nothing to check).
func (h *Handler) epochCheck(current int32) kerr.Code {
	switch ours := h.b.Epoch(); {
	case current < 0 || current == ours:
		return kerr.None
	case current < ours:
		return kerr.FencedLeaderEpoch
	default:
		return kerr.UnknownLeaderEpoch
	}
}
