package api

import (
	"github.com/sluice-broker/sluice/engine/group"
	"github.com/sluice-broker/sluice/wire/msg"
)

var _ = register(&handler{key: 15, min: 0, max: 5, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	req := body.(*msg.DescribeGroupsRequest)
	return serveGroup(h, rc, func(c *group.Coordinator, r group.Request) *msg.DescribeGroupsResponse {
		return c.DescribeGroups(r, req)
	})
}})
