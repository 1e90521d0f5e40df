package api

import (
	"github.com/sluice-broker/sluice/engine/group"
	"github.com/sluice-broker/sluice/wire/msg"
)

// OffsetCommit v2 is Kafka 4's minimum (KIP-896 removed v0-1). The answer
// comes once the commit's records are durable (acks=all on
// __consumer_offsets).
var _ = register(&handler{key: 8, min: 2, max: 9, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	req := body.(*msg.OffsetCommitRequest)
	return serveGroupLater(h, rc, func(c *group.Coordinator, r group.Request, reply func(*msg.OffsetCommitResponse)) {
		c.CommitOffsets(r, req, reply)
	})
}})
