package api

import (
	"github.com/sluice-broker/sluice/engine/group"
	"github.com/sluice-broker/sluice/wire/msg"
)

var _ = register(&handler{key: 47, min: 0, max: 0, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	req := body.(*msg.OffsetDeleteRequest)
	return serveGroupLater(h, rc, func(c *group.Coordinator, r group.Request, reply func(*msg.OffsetDeleteResponse)) {
		c.DeleteOffsets(r, req, reply)
	})
}})
