package api

import (
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

var _ = register(&handler{key: 33, min: 0, max: 2, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	return respond(rc, h.alterConfigs(body.(*msg.AlterConfigsRequest)))
}})

// errBrokerConfigsStatic answers attempts to change broker configs at run
// time, which sluice does not support yet.
var errBrokerConfigsStatic = kerr.New(kerr.InvalidRequest, "broker configs are static in sluice: change server.properties and restart")

// alterConfigs is the legacy, non-incremental form: the given configs
// replace all of a topic's overrides.
func (h *Handler) alterConfigs(req *msg.AlterConfigsRequest) *msg.AlterConfigsResponse {
	var resp msg.AlterConfigsResponse
	resp.Default()
	for _, res := range req.Resources {
		out := msg.AlterConfigsResponseAlterConfigsResourceResponse{ResourceType: res.ResourceType, ResourceName: res.ResourceName}
		var err error
		switch res.ResourceType {
		case resourceTopic:
			overrides := map[string]string{}
			for _, c := range res.Configs {
				if c.Value != nil {
					overrides[c.Name] = *c.Value
				}
			}
			err = h.b.SetTopicConfigs(res.ResourceName, overrides, req.ValidateOnly)
		case resourceBroker:
			err = errBrokerConfigsStatic
		default:
			err = kerr.New(kerr.InvalidRequest, "unsupported resource type")
		}
		out.ErrorCode, out.ErrorMessage = errorCode(err)
		resp.Responses = append(resp.Responses, out)
	}
	return &resp
}
