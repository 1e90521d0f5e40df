package group

import (
	"errors"
	"sort"

	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

// Offsets committed in transactions (TxnOffsetCommit): each is recorded
// durably under its producer id (key type 3) and becomes the group's
// committed offset only when the transaction coordinator completes the
// producer's transaction with a commit (CompleteTxn); an abort drops it.
// Until then an OffsetFetch with require_stable gets UNSTABLE_OFFSET_COMMIT
// for the partition, as in Kafka.

func (g *Group) addTxnOffset(pid int64, tp topicPartition, v committed) {
	if g.txnOffsets == nil {
		g.txnOffsets = map[int64]map[topicPartition]committed{}
	}
	m := g.txnOffsets[pid]
	if m == nil {
		m = map[topicPartition]committed{}
		g.txnOffsets[pid] = m
	}
	m[tp] = v
}

// unstable reports whether an open transaction holds an offset of tp.
func (g *Group) unstable(tp topicPartition) bool {
	for _, m := range g.txnOffsets {
		if _, ok := m[tp]; ok {
			return true
		}
	}
	return false
}

// TxnCommitOffsets serves TxnOffsetCommit: the offsets are recorded for
// the producer's transaction, answered once durable. The group and member
// are checked as an OffsetCommit's are (generation, member id, instance id;
// a KIP-848 member's epoch).
func (c *Coordinator) TxnCommitOffsets(rc Request, req *msg.TxnOffsetCommitRequest, reply func(*msg.TxnOffsetCommitResponse)) {
	resp := &msg.TxnOffsetCommitResponse{}
	var slots []*msg.TxnOffsetCommitResponsePartition
	for _, t := range req.Topics {
		rt := msg.TxnOffsetCommitResponseTopic{Name: t.Name, Partitions: make([]msg.TxnOffsetCommitResponsePartition, len(t.Partitions))}
		for j, p := range t.Partitions {
			rt.Partitions[j].PartitionIndex = p.PartitionIndex
		}
		resp.Topics = append(resp.Topics, rt)
	}
	for i := range resp.Topics {
		for j := range resp.Topics[i].Partitions {
			slots = append(slots, &resp.Topics[i].Partitions[j])
		}
	}
	failAll := func(code kerr.Code) {
		for _, s := range slots {
			s.ErrorCode = int16(code)
		}
		reply(resp)
	}
	if code := c.loadingCode(req.GroupId); code != kerr.None {
		failAll(code)
		return
	}
	if !ValidGroupID(req.GroupId) {
		failAll(kerr.InvalidGroupID)
		return
	}
	// The member checks of OffsetCommit, on the same fields.
	as := &msg.OffsetCommitRequest{GroupId: req.GroupId, GenerationIdOrMemberEpoch: req.GenerationId, MemberId: req.MemberId, GroupInstanceId: req.GroupInstanceId}
	g := c.group(req.GroupId)
	if g == nil {
		if req.GenerationId >= 0 {
			failAll(kerr.IllegalGeneration)
			return
		}
		g = c.addGroup(req.GroupId, kindClassic, rc.Now)
	}
	var code kerr.Code
	if g.kind == kindConsumer {
		code = c.validateConsumerCommit(g, as, commitModernProtocol)
	} else {
		code = g.classic.validateOffsetCommit(as)
	}
	if code != kerr.None {
		failAll(code)
		return
	}
	catalog := c.cfg.Topics()
	now := rc.Now.UnixMilli()
	type write struct {
		tp topicPartition
		v  committed
	}
	var recs []Record
	var writes []write
	k := 0
	for _, t := range req.Topics {
		topic := catalogTopic(catalog, t.Name)
		for _, p := range t.Partitions {
			slot := slots[k]
			k++
			switch {
			case catalog != nil && (topic == nil || p.PartitionIndex < 0 || p.PartitionIndex >= topic.Partitions):
				slot.ErrorCode = int16(kerr.UnknownTopicOrPartition)
			case p.CommittedMetadata != nil && len(*p.CommittedMetadata) > c.cfg.OffsetMetadataMaxBytes:
				slot.ErrorCode = int16(kerr.OffsetMetadataTooLarge)
			default:
				metadata := p.CommittedMetadata
				if metadata == nil {
					metadata = strPtr("")
				}
				v := committed{offset: p.CommittedOffset, leaderEpoch: p.CommittedLeaderEpoch, metadata: metadata, commitTime: now, expireTime: -1}
				tp := topicPartition{t.Name, p.PartitionIndex}
				recs = append(recs, Record{Key: txnOffsetKey(g.id, req.ProducerId, tp.topic, tp.partition), Value: encodeOffset(v)})
				writes = append(writes, write{tp, v})
			}
		}
	}
	if len(recs) == 0 {
		reply(resp)
		return
	}
	g.pendingCommits++
	c.write(g.partition, recs, func(err error) {
		g.pendingCommits--
		if err != nil {
			failAll(commitError(err))
			return
		}
		if !g.dead {
			for _, w := range writes {
				g.addTxnOffset(req.ProducerId, w.tp, w.v)
			}
		}
		reply(resp)
	})
}

// errNotLoaded: a transaction completes on a partition still loading; the
// transaction coordinator writes its markers again later.
var errNotLoaded = errors.New("group: __consumer_offsets partition still loading")

// CompleteTxn completes producer pid's transaction on partition p of
// __consumer_offsets, as its transaction marker does in Kafka: with a
// commit its transactional offsets become the groups' committed offsets,
// with an abort they are dropped. done runs once that is durable (at once
// when the producer has none there). Completing twice is harmless.
func (c *Coordinator) CompleteTxn(pid int64, commit bool, p int32, done func(error)) {
	if p < 0 || int(p) >= len(c.parts) {
		done(nil)
		return
	}
	if !c.parts[p].loaded {
		done(errNotLoaded)
		return
	}
	var groups []*Group
	for _, g := range c.groups {
		if g.partition == p && len(g.txnOffsets[pid]) > 0 {
			groups = append(groups, g)
		}
	}
	if len(groups) == 0 {
		done(nil)
		return
	}
	sort.Slice(groups, func(i, j int) bool { return groups[i].id < groups[j].id })
	var recs []Record
	for _, g := range groups {
		for _, tp := range sortedTopicPartitions(g.txnOffsets[pid]) {
			if commit {
				recs = append(recs, Record{Key: offsetKey(g.id, tp.topic, tp.partition), Value: encodeOffset(g.txnOffsets[pid][tp])})
			}
		}
	}
	// Tombstones after the offsets: a torn append keeps the pending
	// offsets, and the completion, made again, lands the same.
	for _, g := range groups {
		for _, tp := range sortedTopicPartitions(g.txnOffsets[pid]) {
			recs = append(recs, Record{Key: txnOffsetKey(g.id, pid, tp.topic, tp.partition)})
		}
	}
	c.write(p, recs, func(err error) {
		if err != nil {
			done(err)
			return
		}
		for _, g := range groups {
			if commit && !g.dead {
				for tp, v := range g.txnOffsets[pid] {
					g.offsets[tp] = v
				}
			}
			delete(g.txnOffsets, pid)
		}
		done(nil)
	})
}

func sortedTopicPartitions(m map[topicPartition]committed) []topicPartition {
	out := make([]topicPartition, 0, len(m))
	for tp := range m {
		out = append(out, tp)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].topic != out[j].topic {
			return out[i].topic < out[j].topic
		}
		return out[i].partition < out[j].partition
	})
	return out
}
