package api

import (
	"github.com/sluice-broker/sluice/engine/group"
	"github.com/sluice-broker/sluice/wire/msg"
)

var _ = register(&handler{key: 12, min: 0, max: 4, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	req := body.(*msg.HeartbeatRequest)
	return serveGroup(h, rc, func(c *group.Coordinator, r group.Request) *msg.HeartbeatResponse {
		return c.Heartbeat(r, req)
	})
}})
