package api

import (
	"time"

	"github.com/sluice-broker/sluice/engine"
	"github.com/sluice-broker/sluice/engine/shard"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

// DescribeQuorum (kafka-metadata-quorum describe): sluice's metadata log
// is __cluster_metadata, KRaft's, with the primary as its single voter and
// leader, as a one-node Kafka reports, and the standby, which follows it,
// as an observer.
var _ = register(&handler{key: 55, min: 0, max: 2, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	return respond(rc, h.describeQuorum(rc, body.(*msg.DescribeQuorumRequest)))
}})

func (h *Handler) describeQuorum(rc *request, req *msg.DescribeQuorumRequest) *msg.DescribeQuorumResponse {
	var resp msg.DescribeQuorumResponse
	resp.Default()
	key := shard.Key{Topic: engine.MetadataTopic, Partition: 0}
	var meta shard.Offsets
	var repl *shard.ReplicaStats
	now := time.Now()
	for _, sh := range h.b.Shards {
		if o := sh.PartitionOffsets(key); o.Err == kerr.None {
			meta = o
			for _, r := range sh.ReplicaSnapshot(now) {
				if r.Key == key {
					r := r
					repl = &r
				}
			}
		}
	}
	nowMs := now.UnixMilli()
	self := h.b.Cfg.NodeID
	part := msg.DescribeQuorumResponsePartitionData{
		LeaderId: self, LeaderEpoch: h.b.Epoch(), HighWatermark: meta.HighWatermark,
		CurrentVoters: []msg.DescribeQuorumResponseReplicaState{{ReplicaId: self, LogEndOffset: meta.LogEndOffset, LastFetchTimestamp: nowMs, LastCaughtUpTimestamp: nowMs}},
		Observers:     []msg.DescribeQuorumResponseReplicaState{},
	}
	if h.b.IsStandby() {
		// A standby answers with what it knows: the primary it follows
		// leads (its own offsets there unknown), this node observes.
		leader := int32(-1)
		if p, ok := h.b.Peer(); ok {
			leader = p.NodeID
		}
		part.LeaderId = leader
		part.CurrentVoters = []msg.DescribeQuorumResponseReplicaState{{ReplicaId: leader, LogEndOffset: -1, LastFetchTimestamp: -1, LastCaughtUpTimestamp: -1}}
		part.Observers = []msg.DescribeQuorumResponseReplicaState{{ReplicaId: self, LogEndOffset: meta.LogEndOffset, LastFetchTimestamp: nowMs, LastCaughtUpTimestamp: nowMs}}
	} else if p, ok := h.b.Peer(); ok {
		obs := msg.DescribeQuorumResponseReplicaState{ReplicaId: p.NodeID, LogEndOffset: -1, LastFetchTimestamp: -1, LastCaughtUpTimestamp: -1}
		if repl != nil && repl.Seen {
			obs.LogEndOffset = meta.LogEndOffset - repl.LagRecords
			obs.LastFetchTimestamp = nowMs
			obs.LastCaughtUpTimestamp = nowMs - int64(repl.LagSeconds*1000)
		}
		part.Observers = append(part.Observers, obs)
	}
	for _, t := range req.Topics {
		td := msg.DescribeQuorumResponseTopicData{TopicName: t.TopicName}
		for _, p := range t.Partitions {
			if t.TopicName != engine.MetadataTopic || p.PartitionIndex != 0 {
				td.Partitions = append(td.Partitions, msg.DescribeQuorumResponsePartitionData{
					PartitionIndex: p.PartitionIndex, ErrorCode: int16(kerr.UnknownTopicOrPartition), LeaderId: -1, LeaderEpoch: -1, HighWatermark: -1,
				})
				continue
			}
			pd := part
			pd.PartitionIndex = p.PartitionIndex
			td.Partitions = append(td.Partitions, pd)
		}
		resp.Topics = append(resp.Topics, td)
	}
	if rc.version >= 2 {
		host, port, _ := h.b.Cfg.AdvertisedAddress()
		resp.Nodes = []msg.DescribeQuorumResponseNode{{NodeId: self, Listeners: []msg.DescribeQuorumResponseListener{{Name: "PLAINTEXT", Host: host, Port: uint16(port)}}}}
		if p, ok := h.b.Peer(); ok {
			resp.Nodes = append(resp.Nodes, msg.DescribeQuorumResponseNode{NodeId: p.NodeID, Listeners: []msg.DescribeQuorumResponseListener{{Name: "PLAINTEXT", Host: p.Host, Port: uint16(p.Port)}}})
		}
	}
	return &resp
}
