package api

import (
	"errors"

	"github.com/sluice-broker/sluice/engine"
	"github.com/sluice-broker/sluice/engine/meta"
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
	node := h.b.Cfg.NodeID
	resp.Brokers = []msg.MetadataResponseBroker{{NodeId: node, Host: host, Port: port}}
	clusterID := h.b.Meta.ClusterID()
	resp.ClusterId = &clusterID
	resp.ControllerId = node
	snap := h.b.Meta.Snapshot()

	all := req.Topics == nil || (rc.version == 0 && len(req.Topics) == 0)
	if all {
		for _, name := range snap.Names() {
			resp.Topics = append(resp.Topics, h.describeTopic(snap.Topics[name], req.IncludeTopicAuthorizedOperations))
		}
		return &resp
	}
	autoCreate := h.b.Cfg.AutoCreate && (rc.version < 4 || req.AllowAutoTopicCreation)
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
	node := h.b.Cfg.NodeID
	name := t.Name
	out := msg.MetadataResponseTopic{Name: &name, TopicId: t.ID, IsInternal: t.Internal, TopicAuthorizedOperations: authorizedOperationsOmitted}
	if includeOps {
		out.TopicAuthorizedOperations = allTopicOperations
	}
	out.Partitions = make([]msg.MetadataResponsePartition, len(t.Partitions))
	for i, p := range t.Partitions {
		out.Partitions[i] = msg.MetadataResponsePartition{
			PartitionIndex:  p.Index,
			LeaderId:        node,
			LeaderEpoch:     0,
			ReplicaNodes:    []int32{node},
			IsrNodes:        []int32{node},
			OfflineReplicas: []int32{},
		}
	}
	return out
}
