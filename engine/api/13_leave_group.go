package api

import (
	"github.com/sluice-broker/sluice/engine/group"
	"github.com/sluice-broker/sluice/wire/msg"
)

// LeaveGroup v3+ leaves several members at once, by member id or by
// group.instance.id.
var _ = register(&handler{key: 13, min: 0, max: 5, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	req := body.(*msg.LeaveGroupRequest)
	return serveGroup(h, rc, func(c *group.Coordinator, r group.Request) *msg.LeaveGroupResponse {
		return c.LeaveGroup(r, req)
	})
}})
