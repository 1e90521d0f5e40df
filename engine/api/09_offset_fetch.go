package api

import (
	"github.com/sluice-broker/sluice/engine/group"
	"github.com/sluice-broker/sluice/wire/msg"
)

// OffsetFetch v1 is Kafka 4's minimum (KIP-896 removed v0); v8+ fetches
// several groups at once, v9 checks a KIP-848 member's epoch.
var _ = register(&handler{key: 9, min: 1, max: 9, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	req := body.(*msg.OffsetFetchRequest)
	return serveGroup(h, rc, func(c *group.Coordinator, r group.Request) *msg.OffsetFetchResponse {
		return c.FetchOffsets(r, req)
	})
}})
