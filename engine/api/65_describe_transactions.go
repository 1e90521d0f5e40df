package api

import (
	"time"

	"github.com/sluice-broker/sluice/engine/txn"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

// DescribeTransactions (kafka-transactions.sh describe): each id's state,
// producer, timeout and partitions.
var _ = register(&handler{key: 65, min: 0, max: 0, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	req := body.(*msg.DescribeTransactionsRequest)
	resp := &msg.DescribeTransactionsResponse{TransactionStates: []msg.DescribeTransactionsResponseTransactionState{}}
	describe := func(c *txn.Coordinator, id string) msg.DescribeTransactionsResponseTransactionState {
		out := msg.DescribeTransactionsResponseTransactionState{TransactionalId: id, ProducerId: -1, ProducerEpoch: -1, TransactionStartTimeMs: -1, Topics: []msg.DescribeTransactionsResponseTopicData{}}
		if c == nil {
			out.ErrorCode = int16(kerr.NotCoordinator)
			return out
		}
		t, code := c.Describe(id)
		if code != kerr.None {
			out.ErrorCode = int16(code)
			return out
		}
		out.TransactionState = t.State.String()
		out.TransactionTimeoutMs = int32(t.Timeout / time.Millisecond)
		out.ProducerId, out.ProducerEpoch = t.ProducerID, t.Epoch
		if t.State == txn.Ongoing || t.State == txn.PrepareCommit || t.State == txn.PrepareAbort {
			out.TransactionStartTimeMs = t.Start.UnixMilli()
		}
		for _, p := range t.SortedPartitions() {
			if n := len(out.Topics); n > 0 && out.Topics[n-1].Topic == p.Topic {
				out.Topics[n-1].Partitions = append(out.Topics[n-1].Partitions, p.Partition)
				continue
			}
			out.Topics = append(out.Topics, msg.DescribeTransactionsResponseTopicData{Topic: p.Topic, Partitions: []int32{p.Partition}})
		}
		return out
	}
	ran := h.withTxn(func(c *txn.Coordinator, _ time.Time) {
		for _, id := range req.TransactionalIds {
			resp.TransactionStates = append(resp.TransactionStates, describe(c, id))
		}
	})
	if !ran {
		for _, id := range req.TransactionalIds {
			resp.TransactionStates = append(resp.TransactionStates, describe(nil, id))
		}
	}
	return respond(rc, resp)
}})
