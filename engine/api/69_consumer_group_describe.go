package api

import (
	"github.com/sluice-broker/sluice/engine/group"
	"github.com/sluice-broker/sluice/wire/msg"
)

var _ = register(&handler{key: 69, min: 0, max: 0, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	req := body.(*msg.ConsumerGroupDescribeRequest)
	return serveGroup(h, rc, func(c *group.Coordinator, r group.Request) *msg.ConsumerGroupDescribeResponse {
		return c.ConsumerDescribe(r, req)
	})
}})
