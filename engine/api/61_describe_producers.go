package api

import (
	"github.com/sluice-broker/sluice/engine/log"
	"github.com/sluice-broker/sluice/engine/shard"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

// DescribeProducers (kafka-transactions.sh describe-producers): the
// producers with state in each partition, their epoch, last sequence and
// the start of their open transaction, as the partition's leader knows
// them. A standby answers NOT_LEADER_OR_FOLLOWER, as a follower does.
var _ = register(&handler{key: 61, min: 0, max: 0, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	req := body.(*msg.DescribeProducersRequest)
	resp := &msg.DescribeProducersResponse{Topics: []msg.DescribeProducersResponseTopicResponse{}}
	snap := h.b.Meta.Snapshot()
	for _, rt := range req.Topics {
		out := msg.DescribeProducersResponseTopicResponse{Name: rt.Name, Partitions: []msg.DescribeProducersResponsePartitionResponse{}}
		t, known := h.b.TopicFor(snap, rt.Name)
		for _, p := range rt.PartitionIndexes {
			pr := msg.DescribeProducersResponsePartitionResponse{PartitionIndex: p, ActiveProducers: []msg.DescribeProducersResponseProducerState{}}
			switch {
			case !known || p < 0 || int(p) >= len(t.Partitions):
				pr.ErrorCode = int16(kerr.UnknownTopicOrPartition)
			case h.b.IsStandby():
				pr.ErrorCode = int16(kerr.NotLeaderOrFollower)
			default:
				var infos []log.ProducerInfo
				found := false
				k := shard.Key{Topic: t.Name, Partition: p}
				h.b.ShardOf(t, p).Call(func(s *shard.Shard) { infos, found = s.Producers(k) })
				if !found {
					pr.ErrorCode = int16(kerr.NotLeaderOrFollower)
				}
				for _, i := range infos {
					pr.ActiveProducers = append(pr.ActiveProducers, msg.DescribeProducersResponseProducerState{
						ProducerId: i.ProducerID, ProducerEpoch: int32(i.Epoch), LastSequence: i.LastSequence,
						LastTimestamp: i.LastTimestamp, CoordinatorEpoch: -1, CurrentTxnStartOffset: int64(i.TxnStart),
					})
				}
			}
			out.Partitions = append(out.Partitions, pr)
		}
		resp.Topics = append(resp.Topics, out)
	}
	return respond(rc, resp)
}})
