package api

import (
	"errors"

	"github.com/sluice-broker/sluice/engine"
	"github.com/sluice-broker/sluice/engine/meta"
	"github.com/sluice-broker/sluice/engine/shard"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

var _ = register(&handler{key: 3, min: 0, max: 12, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	return respond(rc, h.metadata(rc, body.(*msg.MetadataRequest)))
}})

// authorizedOperationsOmitted is Kafka's value for "not requested".
const authorizedOperationsOmitted = -2147483648

func (h *Handler) metadata(rc *request, req *msg.MetadataRequest) *msg.MetadataResponse {
	var resp msg.MetadataResponse
	resp.Default()
	host, port, _ := h.b.Cfg.AdvertisedAddress()
	self := msg.MetadataResponseBroker{NodeId: h.b.Cfg.NodeID, Host: host, Port: port}
	if h.b.Cfg.Rack != "" {
		self.Rack = &h.b.Cfg.Rack
	}
	resp.Brokers = []msg.MetadataResponseBroker{self}
	if p, ok := h.b.Peer(); ok {
		// The pair, as a Kafka cluster of two brokers would list it.
		peer := msg.MetadataResponseBroker{NodeId: p.NodeID, Host: p.Host, Port: p.Port}
		if p.Rack != "" {
			peer.Rack = &p.Rack
		}
		resp.Brokers = append(resp.Brokers, peer)
	}
	clusterID := h.b.Meta.ClusterID()
	resp.ClusterId = &clusterID
	// The primary plays the controller (topics are created there).
	resp.ControllerId, _, _ = h.primaryNode()
	snap := h.b.Meta.Snapshot()

	all := req.Topics == nil || (rc.version == 0 && len(req.Topics) == 0)
	if all {
		for _, name := range snap.Names() {
			resp.Topics = append(resp.Topics, h.describeTopic(snap.Topics[name], req.IncludeTopicAuthorizedOperations))
		}
		return &resp
	}
	// A standby creates topics only as its primary's catalogue says.
	autoCreate := h.b.Cfg.AutoCreate && (rc.version < 4 || req.AllowAutoTopicCreation) && !h.b.IsStandby()
	for _, rt := range req.Topics {
		var t *meta.Topic
		var ok bool
		switch {
		case rt.Name == nil:
			if t, ok = snap.ByID[meta.TopicID(rt.TopicId)]; !ok {
				resp.Topics = append(resp.Topics, msg.MetadataResponseTopic{ErrorCode: int16(kerr.UnknownTopicID), TopicId: rt.TopicId, TopicAuthorizedOperations: authorizedOperationsOmitted})
				continue
			}
		default:
			t, ok = snap.Topics[*rt.Name]
		}
		if !ok {
			name := *rt.Name
			code := kerr.UnknownTopicOrPartition
			if err := engine.ValidateTopicName(name); err != nil {
				code = kerr.InvalidTopicException
			} else if autoCreate {
				created, err := h.b.CreateTopic(name, -1, -1, nil, false)
				var ke *kerr.Error
				switch {
				case err == nil:
					t, ok = created, true
				case errors.As(err, &ke) && ke.Code == kerr.TopicAlreadyExists:
					t, ok = h.b.Meta.Topic(name) // created meanwhile by another request
				default:
					code = kerr.FromError(err)
				}
			}
			if !ok {
				resp.Topics = append(resp.Topics, msg.MetadataResponseTopic{ErrorCode: int16(code), Name: &name, TopicAuthorizedOperations: authorizedOperationsOmitted})
				continue
			}
		}
		resp.Topics = append(resp.Topics, h.describeTopic(t, req.IncludeTopicAuthorizedOperations))
	}
	return &resp
}

// allTopicOperations is the authorized-operations bitfield for a principal
// allowed everything on a topic (sluice has no ACLs yet): READ(3), WRITE(4),
// CREATE(5), DELETE(6), ALTER(7), DESCRIBE(8), DESCRIBE_CONFIGS(10),
// ALTER_CONFIGS(11).
const allTopicOperations = 1<<3 | 1<<4 | 1<<5 | 1<<6 | 1<<7 | 1<<8 | 1<<10 | 1<<11

func (h *Handler) describeTopic(t *meta.Topic, includeOps bool) msg.MetadataResponseTopic {
	leader, _, _ := h.primaryNode()
	replicas := []int32{leader}
	standby := int32(-1)
	if p, ok := h.b.Peer(); ok {
		standby = p.NodeID
		if h.b.IsStandby() {
			standby = h.b.Cfg.NodeID
		}
		replicas = append(replicas, standby)
	} else if h.b.IsStandby() {
		standby = h.b.Cfg.NodeID
		replicas = append(replicas, standby)
	}
	name := t.Name
	out := msg.MetadataResponseTopic{Name: &name, TopicId: t.ID, IsInternal: t.Internal, TopicAuthorizedOperations: authorizedOperationsOmitted}
	if includeOps {
		out.TopicAuthorizedOperations = allTopicOperations
	}
	out.Partitions = make([]msg.MetadataResponsePartition, len(t.Partitions))
	for i, p := range t.Partitions {
		isr := []int32{leader}
		if standby >= 0 && h.b.StandbyInSync(h.b.Shards[p.Shard], shard.Key{Topic: t.Name, Partition: p.Index}) {
			isr = append(isr, standby)
		}
		out.Partitions[i] = msg.MetadataResponsePartition{
			PartitionIndex:  p.Index,
			LeaderId:        leader,
			LeaderEpoch:     h.b.Epoch(),
			ReplicaNodes:    replicas,
			IsrNodes:        isr,
			OfflineReplicas: []int32{},
		}
	}
	return out
}
