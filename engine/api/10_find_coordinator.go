package api

import (
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

// FindCoordinator v1 is Kafka 4's minimum (KIP-896 removed v0); v4+ asks
// for several keys at once. The primary coordinates every group and every
// transactional id; share groups (key type 2) are not supported, as on a
// Kafka broker with share groups disabled. Like Kafka 4, v0 is listed in ApiVersions but refused:
// librdkafka enables LZ4 only when it is listed.
var _ = register(&handler{key: 10, min: 1, max: 6, advertiseMin: new(int16), serve: func(h *Handler, rc *request, body msg.Request) *Response {
	return respond(rc, h.findCoordinator(rc, body.(*msg.FindCoordinatorRequest)))
}})

// Coordinator key types.
const (
	coordinatorGroup       = 0
	coordinatorTransaction = 1
)

func (h *Handler) findCoordinator(rc *request, req *msg.FindCoordinatorRequest) *msg.FindCoordinatorResponse {
	resp := &msg.FindCoordinatorResponse{}
	keys := req.CoordinatorKeys
	if rc.version < 4 {
		keys = []string{req.Key}
	}
	for _, key := range keys {
		c := h.coordinatorFor(req.KeyType, key)
		if rc.version < 4 {
			resp.ErrorCode, resp.ErrorMessage = c.ErrorCode, c.ErrorMessage
			resp.NodeId, resp.Host, resp.Port = c.NodeId, c.Host, c.Port
			return resp
		}
		resp.Coordinators = append(resp.Coordinators, c)
	}
	if resp.Coordinators == nil {
		resp.Coordinators = []msg.FindCoordinatorResponseCoordinator{}
	}
	return resp
}

func (h *Handler) coordinatorFor(keyType int8, key string) msg.FindCoordinatorResponseCoordinator {
	c := msg.FindCoordinatorResponseCoordinator{Key: key, NodeId: -1, Port: -1}
	fail := func(code kerr.Code, message string) msg.FindCoordinatorResponseCoordinator {
		c.ErrorCode = int16(code)
		c.ErrorMessage = &message
		return c
	}
	switch keyType {
	case coordinatorGroup, coordinatorTransaction:
	default:
		return fail(kerr.InvalidRequest, "unsupported coordinator key type")
	}
	// The primary coordinates every group and transactional id (a
	// standby sends clients there).
	c.NodeId, c.Host, c.Port = h.primaryNode()
	if c.NodeId < 0 {
		return fail(kerr.CoordinatorNotAvailable, "this standby has not reached its primary yet")
	}
	return c
}
