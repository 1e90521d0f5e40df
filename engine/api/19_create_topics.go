package api

import (
	"github.com/sluice-broker/sluice/engine/config"
	"github.com/sluice-broker/sluice/engine/meta"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

// CreateTopics v2 is Kafka 4's minimum.
var _ = register(&handler{key: 19, min: 2, max: 7, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	return respond(rc, h.createTopics(rc, body.(*msg.CreateTopicsRequest)))
}})

func (h *Handler) createTopics(rc *request, req *msg.CreateTopicsRequest) *msg.CreateTopicsResponse {
	var resp msg.CreateTopicsResponse
	resp.Default()
	seen := map[string]int{}
	for _, rt := range req.Topics {
		seen[rt.Name]++
	}
	for _, rt := range req.Topics {
		var out msg.CreateTopicsResponseCreatableTopicResult
		out.Default()
		out.Name = rt.Name
		if seen[rt.Name] > 1 {
			out.ErrorCode = int16(kerr.InvalidRequest)
			out.ErrorMessage = strPtr("duplicate topic name in the request: " + rt.Name)
			resp.Topics = append(resp.Topics, out)
			continue
		}
		partitions, replication := rt.NumPartitions, rt.ReplicationFactor
		var err error
		if len(rt.Assignments) > 0 {
			if partitions != -1 || replication != -1 {
				err = kerr.New(kerr.InvalidRequest, "both numPartitions or replicationFactor and replicasAssignments were set")
			}
			partitions = int32(len(rt.Assignments))
			for _, a := range rt.Assignments {
				if len(a.BrokerIds) != 1 || a.BrokerIds[0] != h.b.Cfg.NodeID {
					err = kerr.New(kerr.InvalidReplicaAssignment, "replicas must be exactly this broker")
				}
			}
			replication = 1
		}
		configs := map[string]string{}
		for _, c := range rt.Configs {
			if c.Value == nil {
				continue
			}
			configs[c.Name] = *c.Value
		}
		if err == nil {
			var t *meta.Topic
			if t, err = h.b.CreateTopic(rt.Name, partitions, replication, configs, req.ValidateOnly); err == nil {
				out.TopicId = t.ID
			}
		}
		if err == nil {
			if partitions == -1 {
				partitions = h.b.Cfg.NumPartitions
			}
			out.NumPartitions = partitions
			out.ReplicationFactor = 1
			for _, e := range config.NewTopic(h.b.Cfg, configs).Entries() {
				v := e.Value
				out.Configs = append(out.Configs, msg.CreateTopicsResponseCreatableTopicConfigs{
					Name: e.Key.Name, Value: &v, ConfigSource: int8(e.Source),
				})
			}
		} else {
			out.ErrorCode, out.ErrorMessage = errorCode(err)
		}
		resp.Topics = append(resp.Topics, out)
	}
	return &resp
}
