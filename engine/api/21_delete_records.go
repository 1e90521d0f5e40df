package api

import (
	"github.com/sluice-broker/sluice/engine/shard"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

var _ = register(&handler{key: 21, min: 0, max: 2, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	return respond(rc, h.deleteRecords(body.(*msg.DeleteRecordsRequest)))
}})

func (h *Handler) deleteRecords(req *msg.DeleteRecordsRequest) *msg.DeleteRecordsResponse {
	var resp msg.DeleteRecordsResponse
	resp.Default()
	snap := h.b.Meta.Snapshot()
	for _, rt := range req.Topics {
		out := msg.DeleteRecordsResponseDeleteRecordsTopicResult{Name: rt.Name}
		t, known := snap.Topics[rt.Name]
		for _, rp := range rt.Partitions {
			p := msg.DeleteRecordsResponseDeleteRecordsPartitionResult{PartitionIndex: rp.PartitionIndex, LowWatermark: -1}
			if !known || rp.PartitionIndex < 0 || int(rp.PartitionIndex) >= len(t.Partitions) {
				p.ErrorCode = int16(kerr.UnknownTopicOrPartition)
			} else {
				k := shard.Key{Topic: t.Name, Partition: rp.PartitionIndex}
				answered := make(chan struct{})
				h.b.ShardOf(t, rp.PartitionIndex).Do(func(s *shard.Shard) {
					s.DeleteRecords(k, rp.Offset, func(low int64, code kerr.Code) {
						p.LowWatermark, p.ErrorCode = low, int16(code)
						close(answered)
					})
				})
				<-answered
			}
			out.Partitions = append(out.Partitions, p)
		}
		resp.Topics = append(resp.Topics, out)
	}
	return &resp
}
