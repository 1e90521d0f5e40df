package api

import (
	"time"

	"github.com/sluice-broker/sluice/engine/txn"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

// AddPartitionsToTxn adds partitions to a transaction before the producer
// writes to them (v0-3: one transaction, from a client), or, v4+, for
// several transactions at once, with verify_only for KIP-890's check that
// a partition is in the transaction. A partition of an unknown topic fails
// the whole transaction's request: UNKNOWN_TOPIC_OR_PARTITION for it,
// OPERATION_NOT_ATTEMPTED for the others, as in Kafka.
var _ = register(&handler{key: 24, min: 0, max: 5, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	req := body.(*msg.AddPartitionsToTxnRequest)
	txns := req.Transactions
	if rc.version <= 3 {
		txns = []msg.AddPartitionsToTxnRequestAddPartitionsToTxnTransaction{{
			TransactionalId: req.V3AndBelowTransactionalId, ProducerId: req.V3AndBelowProducerId,
			ProducerEpoch: req.V3AndBelowProducerEpoch, Topics: req.V3AndBelowTopics,
		}}
	}
	results := make([]msg.AddPartitionsToTxnResponseAddPartitionsToTxnResult, len(txns))
	build := func() *msg.AddPartitionsToTxnResponse {
		resp := &msg.AddPartitionsToTxnResponse{}
		if rc.version <= 3 {
			resp.ResultsByTopicV3AndBelow = results[0].TopicResults
		} else {
			resp.ResultsByTransaction = results
		}
		return resp
	}
	// answerAll gives every partition of transaction i the same code.
	answerAll := func(i int, code func(topic string, p int32) kerr.Code) {
		r := &results[i]
		r.TransactionalId = txns[i].TransactionalId
		r.TopicResults = r.TopicResults[:0]
		for _, t := range txns[i].Topics {
			tr := msg.AddPartitionsToTxnResponseAddPartitionsToTxnTopicResult{Name: t.Name}
			for _, p := range t.Partitions {
				tr.ResultsByPartition = append(tr.ResultsByPartition, msg.AddPartitionsToTxnResponseAddPartitionsToTxnPartitionResult{PartitionIndex: p, PartitionErrorCode: int16(code(t.Name, p))})
			}
			r.TopicResults = append(r.TopicResults, tr)
		}
	}
	snap := h.b.Meta.Snapshot()
	known := func(topic string, p int32) bool {
		t, ok := h.b.TopicFor(snap, topic)
		return ok && p >= 0 && int(p) < len(t.Partitions)
	}
	notCoordinator := func() *Response {
		for i := range txns {
			answerAll(i, func(string, int32) kerr.Code { return kerr.NotCoordinator })
		}
		return respond(rc, build())
	}
	left := len(txns)
	if left == 0 {
		return respond(rc, build())
	}
	out := Pending()
	done := func() {
		left--
		if left == 0 {
			out.Parts = []Part{{Bytes: frame(rc, build())}}
			out.Complete()
		}
	}
	ran := h.withTxn(func(c *txn.Coordinator, now time.Time) {
		for i, t := range txns {
			unknown := false
			var parts []txn.TopicPartition
			for _, tp := range t.Topics {
				for _, p := range tp.Partitions {
					unknown = unknown || !known(tp.Name, p)
					parts = append(parts, txn.TopicPartition{Topic: tp.Name, Partition: p})
				}
			}
			switch {
			case unknown:
				answerAll(i, func(topic string, p int32) kerr.Code {
					if !known(topic, p) {
						return kerr.UnknownTopicOrPartition
					}
					return kerr.OperationNotAttempted
				})
				done()
			case t.VerifyOnly:
				answerAll(i, func(topic string, p int32) kerr.Code {
					return c.Verify(t.TransactionalId, t.ProducerId, t.ProducerEpoch, txn.TopicPartition{Topic: topic, Partition: p})
				})
				done()
			default:
				c.AddPartitions(now, t.TransactionalId, t.ProducerId, t.ProducerEpoch, parts, func(code kerr.Code) {
					answerAll(i, func(string, int32) kerr.Code { return code })
					done()
				})
			}
		}
	})
	if !ran { // a standby
		return notCoordinator()
	}
	return out
}})
