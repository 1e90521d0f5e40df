package api

import (
	"time"

	"github.com/sluice-broker/sluice/engine/group"
	"github.com/sluice-broker/sluice/engine/txn"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

// TxnOffsetCommit commits a consumer group's offsets in a transaction
// (sendOffsetsToTransaction): the group's __consumer_offsets partition
// must be in the producer's transaction (AddOffsetsToTxn first, KIP-890's
// check), and the offsets become the group's only when the transaction
// commits.
var _ = register(&handler{key: 28, min: 0, max: 4, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	req := body.(*msg.TxnOffsetCommitRequest)
	code := kerr.CoordinatorNotAvailable
	if p, ok := h.groupOffsetsPartition(req.GroupId); ok {
		code = kerr.NotCoordinator
		h.withTxn(func(c *txn.Coordinator, _ time.Time) {
			code = c.Verify(req.TransactionalId, req.ProducerId, req.ProducerEpoch, p)
		})
		if code == kerr.ConcurrentTransactions || code == kerr.NotCoordinator {
			// Not an answer TxnOffsetCommit has: the Java client treats it
			// as fatal. It retries this one.
			code = kerr.CoordinatorLoadInProgress
		}
	}
	if code != kerr.None {
		return respond(rc, txnOffsetCommitFailed(req, code))
	}
	return serveGroupLater(h, rc, func(c *group.Coordinator, r group.Request, reply func(*msg.TxnOffsetCommitResponse)) {
		c.TxnCommitOffsets(r, req, reply)
	})
}})

// txnOffsetCommitFailed answers every partition of req with code.
func txnOffsetCommitFailed(req *msg.TxnOffsetCommitRequest, code kerr.Code) *msg.TxnOffsetCommitResponse {
	resp := &msg.TxnOffsetCommitResponse{}
	for _, t := range req.Topics {
		rt := msg.TxnOffsetCommitResponseTopic{Name: t.Name}
		for _, p := range t.Partitions {
			rt.Partitions = append(rt.Partitions, msg.TxnOffsetCommitResponsePartition{PartitionIndex: p.PartitionIndex, ErrorCode: int16(code)})
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}
