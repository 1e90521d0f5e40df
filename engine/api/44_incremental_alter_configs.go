package api

import (
	"strings"

	"github.com/sluice-broker/sluice/engine/config"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

var _ = register(&handler{key: 44, min: 0, max: 1, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	return respond(rc, h.incrementalAlterConfigs(body.(*msg.IncrementalAlterConfigsRequest)))
}})

// Incremental config operations (KIP-339).
const (
	opSet      = 0
	opDelete   = 1
	opAppend   = 2
	opSubtract = 3
)

func (h *Handler) incrementalAlterConfigs(req *msg.IncrementalAlterConfigsRequest) *msg.IncrementalAlterConfigsResponse {
	var resp msg.IncrementalAlterConfigsResponse
	resp.Default()
	seen := map[string]int{}
	for _, res := range req.Resources {
		seen[string(rune(res.ResourceType))+res.ResourceName]++
	}
	for _, res := range req.Resources {
		out := msg.IncrementalAlterConfigsResponseAlterConfigsResourceResponse{ResourceType: res.ResourceType, ResourceName: res.ResourceName}
		var err error
		switch {
		case seen[string(rune(res.ResourceType))+res.ResourceName] > 1:
			err = kerr.New(kerr.InvalidRequest, "duplicate resource in the request")
		case res.ResourceType == resourceTopic:
			err = h.alterTopicIncrementally(res, req.ValidateOnly)
		case res.ResourceType == resourceBroker:
			err = errBrokerConfigsStatic
		default:
			err = kerr.New(kerr.InvalidRequest, "unsupported resource type")
		}
		out.ErrorCode, out.ErrorMessage = errorCode(err)
		resp.Responses = append(resp.Responses, out)
	}
	return &resp
}

func (h *Handler) alterTopicIncrementally(res msg.IncrementalAlterConfigsRequestAlterConfigsResource, validateOnly bool) error {
	t, ok := h.b.Meta.Topic(res.ResourceName)
	if !ok {
		return kerr.New(kerr.UnknownTopicOrPartition, "unknown topic "+res.ResourceName)
	}
	tc := h.b.TopicConfig(t)
	overrides := make(map[string]string, len(t.Configs))
	for k, v := range t.Configs {
		overrides[k] = v
	}
	for _, c := range res.Configs {
		key, known := config.LookupTopicKey(c.Name)
		if !known {
			return kerr.New(kerr.InvalidConfig, "unknown topic config name: "+c.Name)
		}
		value := ""
		if c.Value != nil {
			value = *c.Value
		}
		switch c.ConfigOperation {
		case opSet:
			if c.Value == nil {
				return kerr.New(kerr.InvalidRequest, "null value for SET of "+c.Name)
			}
			overrides[c.Name] = value
		case opDelete:
			delete(overrides, c.Name)
		case opAppend, opSubtract:
			if key.Type != config.TypeList {
				return kerr.New(kerr.InvalidConfig, "config "+c.Name+" is not a list: APPEND and SUBTRACT do not apply")
			}
			e, _ := tc.Entry(c.Name)
			cur := splitList(e.Value)
			if n, ok := overrides[c.Name]; ok {
				cur = splitList(n)
			}
			for _, item := range splitList(value) {
				idx := indexOf(cur, item)
				if c.ConfigOperation == opAppend && idx < 0 {
					cur = append(cur, item)
				}
				if c.ConfigOperation == opSubtract && idx >= 0 {
					cur = append(cur[:idx], cur[idx+1:]...)
				}
			}
			overrides[c.Name] = strings.Join(cur, ",")
		default:
			return kerr.New(kerr.InvalidRequest, "unknown config operation")
		}
	}
	return h.b.SetTopicConfigs(res.ResourceName, overrides, validateOnly)
}

func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}
