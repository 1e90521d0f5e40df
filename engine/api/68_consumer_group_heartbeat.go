package api

import (
	"github.com/sluice-broker/sluice/engine/group"
	"github.com/sluice-broker/sluice/wire/msg"
)

// ConsumerGroupHeartbeat (KIP-848): v1, as in Kafka 4.0, has client-made
// member ids and regex subscriptions. The answer comes once the group's
// changed state is durable.
var _ = register(&handler{key: 68, min: 0, max: 1, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	req := body.(*msg.ConsumerGroupHeartbeatRequest)
	return serveGroupLater(h, rc, func(c *group.Coordinator, r group.Request, reply func(*msg.ConsumerGroupHeartbeatResponse)) {
		c.ConsumerHeartbeat(r, req, reply)
	})
}})
