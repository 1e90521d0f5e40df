package api

import (
	"github.com/sluice-broker/sluice/engine/group"
	"github.com/sluice-broker/sluice/wire/msg"
)

// DeleteGroups v1 is Kafka 4's minimum (KIP-896 removed v0). The answer
// comes once the groups' tombstones are durable.
var _ = register(&handler{key: 42, min: 1, max: 2, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	req := body.(*msg.DeleteGroupsRequest)
	return serveGroupLater(h, rc, func(c *group.Coordinator, r group.Request, reply func(*msg.DeleteGroupsResponse)) {
		c.DeleteGroups(r, req, reply)
	})
}})
