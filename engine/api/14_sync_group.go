package api

import (
	"github.com/sluice-broker/sluice/engine/group"
	"github.com/sluice-broker/sluice/wire/msg"
)

// SyncGroup: a follower's answer waits for the leader's assignment, which
// is made durable first.
var _ = register(&handler{key: 14, min: 0, max: 5, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	req := body.(*msg.SyncGroupRequest)
	return serveGroupLater(h, rc, func(c *group.Coordinator, r group.Request, reply func(*msg.SyncGroupResponse)) {
		c.SyncGroup(r, req, reply)
	})
}})
