package api

import (
	"github.com/sluice-broker/sluice/engine/group"
	"github.com/sluice-broker/sluice/wire/msg"
)

// ListGroups v4 adds the state filter, v5 the type filter (classic,
// consumer).
var _ = register(&handler{key: 16, min: 0, max: 5, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	req := body.(*msg.ListGroupsRequest)
	return serveGroup(h, rc, func(c *group.Coordinator, r group.Request) *msg.ListGroupsResponse {
		return c.ListGroups(r, req)
	})
}})
