package api

import (
	"github.com/sluice-broker/sluice/engine/group"
	"github.com/sluice-broker/sluice/wire/msg"
)

// JoinGroup v2 is Kafka 4's minimum (KIP-896 removed v0-1). The answer
// waits for the end of the join phase.
var _ = register(&handler{key: 11, min: 2, max: 9, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	req := body.(*msg.JoinGroupRequest)
	return serveGroupLater(h, rc, func(c *group.Coordinator, r group.Request, reply func(*msg.JoinGroupResponse)) {
		c.JoinGroup(r, req, reply)
	})
}})
