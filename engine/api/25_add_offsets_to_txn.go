package api

import (
	"time"

	"github.com/sluice-broker/sluice/engine/txn"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

// AddOffsetsToTxn adds the group's __consumer_offsets partition to the
// transaction, so that its TxnOffsetCommit is completed with it.
var _ = register(&handler{key: 25, min: 0, max: 4, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	req := body.(*msg.AddOffsetsToTxnRequest)
	answer := func(code kerr.Code) *msg.AddOffsetsToTxnResponse {
		return &msg.AddOffsetsToTxnResponse{ErrorCode: int16(code)}
	}
	p, ok := h.groupOffsetsPartition(req.GroupId)
	if !ok || req.GroupId == "" {
		code := kerr.CoordinatorNotAvailable
		if req.GroupId == "" {
			code = kerr.InvalidGroupID
		}
		return respond(rc, answer(code))
	}
	return serveTxn(h, rc, func() *msg.AddOffsetsToTxnResponse { return answer(kerr.NotCoordinator) },
		func(c *txn.Coordinator, now time.Time, reply func(*msg.AddOffsetsToTxnResponse)) {
			c.AddPartitions(now, req.TransactionalId, req.ProducerId, req.ProducerEpoch, []txn.TopicPartition{p}, func(code kerr.Code) { reply(answer(code)) })
		})
}})
