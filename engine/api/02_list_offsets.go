package api

import (
	"sync"

	"github.com/sluice-broker/sluice/engine/shard"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

// ListOffsets v1 is Kafka 4's minimum. Special timestamps: -1 latest, -2
// earliest, -3 max timestamp (v7+), -4 earliest local (v8+), -5 latest
// tiered (v9+).
var _ = register(&handler{key: 2, min: 1, max: 10, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	return respond(rc, h.listOffsets(rc, body.(*msg.ListOffsetsRequest)))
}})

func (h *Handler) listOffsets(rc *request, req *msg.ListOffsetsRequest) *msg.ListOffsetsResponse {
	var resp msg.ListOffsetsResponse
	resp.Default()
	snap := h.b.Meta.Snapshot()
	// Every partition is asked at once: a shard may answer later (a cold
	// read), and partitions on different shards (or waiting on different
	// reads) should not wait for each other.
	var wg sync.WaitGroup
	var asked []*msg.ListOffsetsResponseListOffsetsPartitionResponse
	for _, rt := range req.Topics {
		out := msg.ListOffsetsResponseListOffsetsTopicResponse{Name: rt.Name}
		t, known := snap.Topics[rt.Name]
		out.Partitions = make([]msg.ListOffsetsResponseListOffsetsPartitionResponse, len(rt.Partitions))
		for i, rp := range rt.Partitions {
			p := &out.Partitions[i]
			p.Default()
			p.PartitionIndex = rp.PartitionIndex
			p.Timestamp, p.Offset = -1, -1
			switch {
			case !known || rp.PartitionIndex < 0 || int(rp.PartitionIndex) >= len(t.Partitions):
				p.ErrorCode = int16(kerr.UnknownTopicOrPartition)
			case rp.Timestamp == shard.MaxTimestamp && rc.version < 7,
				rp.Timestamp == shard.EarliestLocal && rc.version < 8,
				rp.Timestamp == shard.LatestTiered && rc.version < 9:
				p.ErrorCode = int16(kerr.UnsupportedVersion)
			default:
				k := shard.Key{Topic: t.Name, Partition: rp.PartitionIndex}
				ts := rp.Timestamp
				wg.Add(1)
				asked = append(asked, p)
				committed := req.IsolationLevel == 1 // read_committed: latest is the LSO
				h.b.ShardOf(t, rp.PartitionIndex).Do(func(s *shard.Shard) {
					answer := func(off, found int64, code kerr.Code) {
						p.Offset, p.Timestamp, p.ErrorCode = off, found, int16(code)
						wg.Done()
					}
					if committed {
						s.ListOffsetCommitted(k, ts, answer)
					} else {
						s.ListOffset(k, ts, answer)
					}
				})
			}
		}
		resp.Topics = append(resp.Topics, out)
	}
	wg.Wait()
	for _, p := range asked {
		if p.ErrorCode == 0 && p.Offset >= 0 {
			p.LeaderEpoch = 0
		}
	}
	return &resp
}
