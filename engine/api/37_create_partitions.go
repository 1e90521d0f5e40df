package api

import (
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

var _ = register(&handler{key: 37, min: 0, max: 3, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	return respond(rc, h.createPartitions(body.(*msg.CreatePartitionsRequest)))
}})

func (h *Handler) createPartitions(req *msg.CreatePartitionsRequest) *msg.CreatePartitionsResponse {
	var resp msg.CreatePartitionsResponse
	resp.Default()
	for _, rt := range req.Topics {
		out := msg.CreatePartitionsResponseCreatePartitionsTopicResult{Name: rt.Name}
		var err error
		for _, a := range rt.Assignments {
			if len(a.BrokerIds) != 1 || a.BrokerIds[0] != h.b.Cfg.NodeID {
				err = kerr.New(kerr.InvalidReplicaAssignment, "replicas must be exactly this broker")
			}
		}
		if err == nil {
			err = h.b.AddPartitions(rt.Name, rt.Count, req.ValidateOnly)
		}
		out.ErrorCode, out.ErrorMessage = errorCode(err)
		resp.Results = append(resp.Results, out)
	}
	return &resp
}
