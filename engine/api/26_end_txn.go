package api

import (
	"time"

	"github.com/sluice-broker/sluice/engine/txn"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

// EndTxn commits or aborts a transaction: answered once the decision is
// durable; the markers follow. v5 (KIP-890's epoch bump on every end,
// transaction.version 2) is not served: clients then use v4's rules.
var _ = register(&handler{key: 26, min: 0, max: 4, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	req := body.(*msg.EndTxnRequest)
	answer := func(code kerr.Code) *msg.EndTxnResponse {
		return &msg.EndTxnResponse{ErrorCode: int16(code), ProducerId: -1, ProducerEpoch: -1}
	}
	return serveTxn(h, rc, func() *msg.EndTxnResponse { return answer(kerr.NotCoordinator) },
		func(c *txn.Coordinator, now time.Time, reply func(*msg.EndTxnResponse)) {
			c.EndTxn(now, req.TransactionalId, req.ProducerId, req.ProducerEpoch, req.Committed, func(code kerr.Code) { reply(answer(code)) })
		})
}})
