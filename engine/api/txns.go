package api

import (
	"time"

	"github.com/sluice-broker/sluice/engine/group"
	"github.com/sluice-broker/sluice/engine/group/service"
	"github.com/sluice-broker/sluice/engine/txn"
	"github.com/sluice-broker/sluice/wire/msg"
)

// Helpers shared by the transaction coordinator's handlers (22 with a
// transactional id, 24_add_partitions_to_txn.go, 25_add_offsets_to_txn.go,
// 26_end_txn.go, 65_describe_transactions.go, 66_list_transactions.go).
// The coordinator is engine/txn, run by engine/txn/service.

// serveTxn runs a coordinator call whose answer may come later (once a
// state change is durable). On a node without a coordinator (a standby)
// the request gets notCoordinator's answer.
func serveTxn[R msg.Response](h *Handler, rc *request, notCoordinator func() R, call func(c *txn.Coordinator, now time.Time, reply func(R))) *Response {
	t := h.txns.Load()
	if t == nil {
		return respond(rc, notCoordinator())
	}
	out := Pending()
	t.Do(func(c *txn.Coordinator, now time.Time) {
		call(c, now, func(resp R) {
			out.Parts = []Part{{Bytes: frame(rc, resp)}}
			out.Complete()
		})
	})
	return out
}

// withTxn runs fn on the coordinator and reports false on a node without
// one.
func (h *Handler) withTxn(fn func(c *txn.Coordinator, now time.Time)) bool {
	t := h.txns.Load()
	if t == nil {
		return false
	}
	t.Do(fn)
	return true
}

// groupOffsetsPartition is the __consumer_offsets partition of groupID,
// which a transaction holds to commit the group's offsets
// (AddOffsetsToTxn, TxnOffsetCommit); ok false before the topic exists.
func (h *Handler) groupOffsetsPartition(groupID string) (txn.TopicPartition, bool) {
	offsets, ok := h.b.Meta.Topic(service.Topic)
	if !ok {
		return txn.TopicPartition{}, false
	}
	return txn.TopicPartition{Topic: service.Topic, Partition: group.PartitionFor(groupID, int32(len(offsets.Partitions)))}, true
}
