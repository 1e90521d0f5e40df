package api

import (
	"sync/atomic"
	"time"

	"github.com/sluice-broker/sluice/engine/shard"
	"github.com/sluice-broker/sluice/engine/txn"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
	"github.com/sluice-broker/sluice/wire/records"
)

// Produce v3 is Kafka 4's minimum (RecordBatch v2 only); v11 is the newest in
// the shared definitions. Like Kafka 4, v0-v2 are listed in ApiVersions but
// refused (the connection closes): librdkafka needs them listed to compress.
var _ = register(&handler{key: 0, min: 3, max: 11, advertiseMin: new(int16), serve: func(h *Handler, rc *request, body msg.Request) *Response {
	return h.produce(rc, body.(*msg.ProduceRequest))
}})

// produceCall gathers the per-partition answers of one Produce request from
// the shards that own the partitions, and frames the response when the last
// one arrives.
type produceCall struct {
	h       *Handler
	rc      *request
	acks    int16
	resp    msg.ProduceResponse
	out     *Response
	pending atomic.Int32
	failed  atomic.Bool // for acks=0: any error closes the connection, as Kafka does
}

func (h *Handler) produce(rc *request, req *msg.ProduceRequest) *Response {
	call := &produceCall{h: h, rc: rc, acks: req.Acks, out: Pending()}
	call.resp.Default()
	call.resp.Responses = make([]msg.ProduceResponseTopicProduceResponse, len(req.TopicData))
	snap := h.b.Meta.Snapshot()
	type work struct {
		key     shard.Key
		records []byte
		slot    *msg.ProduceResponsePartitionProduceResponse
	}
	perShard := make([][]work, len(h.b.Shards))
	total := int32(0)
	for ti, td := range req.TopicData {
		tr := &call.resp.Responses[ti]
		tr.Name = td.Name
		tr.PartitionResponses = make([]msg.ProduceResponsePartitionProduceResponse, len(td.PartitionData))
		t, known := snap.Topics[td.Name]
		for pi, pd := range td.PartitionData {
			slot := &tr.PartitionResponses[pi]
			slot.Default()
			slot.Index = pd.Index
			slot.BaseOffset = -1
			switch {
			case req.Acks != 0 && req.Acks != 1 && req.Acks != -1:
				slot.ErrorCode = int16(kerr.InvalidRequiredAcks)
			case !known || pd.Index < 0 || int(pd.Index) >= len(t.Partitions):
				slot.ErrorCode = int16(kerr.UnknownTopicOrPartition)
			case t.Internal:
				// Only the broker writes its internal topics (Kafka:
				// "Cannot append to internal topic").
				slot.ErrorCode = int16(kerr.InvalidTopicException)
				slot.ErrorMessage = strPtr("cannot append to internal topic " + td.Name)
			case pd.Records == nil:
				slot.ErrorCode = int16(kerr.CorruptMessage)
			case h.txnCheck(req.TransactionalId, pd.Records, td.Name, pd.Index, slot):
			default:
				sh := t.Partitions[pd.Index].Shard
				perShard[sh] = append(perShard[sh], work{shard.Key{Topic: td.Name, Partition: pd.Index}, pd.Records, slot})
				total++
				continue
			}
			call.failed.Store(true)
		}
	}
	if total == 0 {
		return call.finish()
	}
	call.pending.Store(total)
	for i, ws := range perShard {
		if len(ws) == 0 {
			continue
		}
		h.b.Shards[i].Do(func(s *shard.Shard) {
			for _, w := range ws {
				slot := w.slot
				s.Produce(w.key, w.records, req.Acks, func(r shard.ProduceResult) {
					slot.ErrorCode = int16(r.Err)
					slot.BaseOffset = r.BaseOffset
					slot.LogAppendTimeMs = r.LogAppendTime
					slot.LogStartOffset = r.LogStartOffset
					if r.Err != kerr.None {
						call.failed.Store(true)
						if r.ErrMessage != "" {
							m := r.ErrMessage
							slot.ErrorMessage = &m
						}
						for _, re := range r.RecordErrors {
							m := re.Message
							slot.RecordErrors = append(slot.RecordErrors, msg.ProduceResponseBatchIndexAndErrorMessage{BatchIndex: re.BatchIndex, BatchIndexErrorMessage: &m})
						}
					}
					if call.pending.Add(-1) == 0 {
						call.finish()
					}
				})
			}
		})
	}
	// With acks=0 nothing is written; the connection only closes if
	// something failed (finish decides).
	return call.out
}

// hintLeader adds, for v10+ clients, the node to produce to instead to
// every NOT_LEADER_OR_FOLLOWER answer (KIP-951).
func (c *produceCall) hintLeader() {
	if c.rc.version < 10 || !c.failed.Load() {
		return
	}
	peer, epoch, ok := c.h.b.LeaderHint()
	if !ok {
		return
	}
	hinted := false
	for ti := range c.resp.Responses {
		for pi := range c.resp.Responses[ti].PartitionResponses {
			slot := &c.resp.Responses[ti].PartitionResponses[pi]
			if kerr.Code(slot.ErrorCode) == kerr.NotLeaderOrFollower {
				slot.CurrentLeader = msg.ProduceResponseLeaderIdAndEpoch{LeaderId: peer.NodeID, LeaderEpoch: epoch}
				hinted = true
			}
		}
	}
	if hinted {
		ep := msg.ProduceResponseNodeEndpoint{NodeId: peer.NodeID, Host: peer.Host, Port: peer.Port}
		if peer.Rack != "" {
			ep.Rack = &peer.Rack
		}
		c.resp.NodeEndpoints = []msg.ProduceResponseNodeEndpoint{ep}
	}
}

func (c *produceCall) finish() *Response {
	if c.acks == 0 {
		c.out.Close = c.failed.Load()
	} else {
		c.hintLeader()
		c.out.Parts = []Part{{Bytes: frame(c.rc, &c.resp)}}
	}
	c.out.Complete()
	return c.out
}

// txnCheck refuses transactional records the producer's transaction does
// not allow, as Kafka 4 does (KIP-890's verification before the append):
// a transactional batch needs the request's transactional id
// (TRANSACTIONAL_ID_AUTHORIZATION_FAILED, Kafka's answer without it) and
// its partition added to the producer's open transaction
// (INVALID_TXN_STATE), by its current epoch (PRODUCER_FENCED). What the
// check cannot tell now (the coordinator loading, or changing the
// transaction) answers NOT_ENOUGH_REPLICAS, the retriable code Kafka maps
// those to. Transactional records come one batch to a partition, as Kafka
// requires (INVALID_RECORD otherwise). A standby skips the check: its
// shards refuse the produce with NOT_LEADER_OR_FOLLOWER, which sends the
// client to the primary. It reports whether it answered slot.
func (h *Handler) txnCheck(id *string, set []byte, topic string, partition int32, slot *msg.ProduceResponsePartitionProduceResponse) bool {
	if h.b.IsStandby() {
		return false
	}
	var hd records.Header
	transactional, batches := false, 0
	for it := records.NewIter(set); ; batches++ {
		_, bh, ok := it.Next()
		if !ok {
			break
		}
		if bh.Transactional() && !bh.Control() && !transactional {
			hd, transactional = bh, true
		}
	}
	if !transactional {
		return false // not transactional, or for validation to refuse
	}
	code := kerr.TransactionalIDAuthorizationFailed
	switch {
	case batches > 1:
		code = kerr.InvalidRecord
	case id != nil && *id != "":
		code = kerr.NotCoordinator
		h.withTxn(func(c *txn.Coordinator, _ time.Time) {
			code = c.Verify(*id, hd.ProducerID, hd.ProducerEpoch, txn.TopicPartition{Topic: topic, Partition: partition})
		})
		switch code {
		case kerr.NotCoordinator, kerr.CoordinatorLoadInProgress, kerr.CoordinatorNotAvailable, kerr.ConcurrentTransactions:
			code = kerr.NotEnoughReplicas
		}
	}
	if code == kerr.None {
		return false
	}
	slot.ErrorCode = int16(code)
	return true
}
