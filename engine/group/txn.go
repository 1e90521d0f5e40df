package group

import (
	"errors"
	"sort"
	"time"

	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

// Offsets committed in transactions (TxnOffsetCommit): each is recorded
// durably under its producer id and epoch (key type 3) and becomes the
// group's committed offset only when the transaction coordinator
// completes the producer's transaction with a commit (CompleteTxn) of the
// same epoch; an abort, or a completion of a later epoch, drops it. Until
// then an OffsetFetch with require_stable gets UNSTABLE_OFFSET_COMMIT for
// the partition, as in Kafka. A completion fences older epochs of its
// producer (Kafka's marker raises the producer epoch in
// __consumer_offsets): a fenced producer's TxnOffsetCommit is refused
// PRODUCER_FENCED, also when its write was already under way, and then its
// records are tombstoned. The fence is kept in memory for txnFenceKept
// (Kafka's producer.id.expiration.ms): a fenced producer's requests come
// over connections a restart or a hand-over closes, and anything of it
// found pending on disk is dropped by its producer's next completion,
// whose epoch is newer.

// txnFenceKept is how long a completion's fence is remembered.
const txnFenceKept = 24 * time.Hour

// fence is the newest epoch a producer's transaction was completed with.
type fence struct {
	epoch int16
	at    time.Time
}

// pendingOffset keys an offset of an open transaction.
type pendingOffset struct {
	tp    topicPartition
	epoch int16
}

func (g *Group) addTxnOffset(pid int64, k pendingOffset, v committed) {
	if g.txnOffsets == nil {
		g.txnOffsets = map[int64]map[pendingOffset]committed{}
	}
	m := g.txnOffsets[pid]
	if m == nil {
		m = map[pendingOffset]committed{}
		g.txnOffsets[pid] = m
	}
	m[k] = v
}

// fenced reports whether a transaction of pid at epoch was completed past.
func (c *Coordinator) fenced(pid int64, epoch int16) bool {
	f, ok := c.txnFence[pid]
	return ok && epoch < f.epoch
}

// expireFences forgets fences older than txnFenceKept.
func (c *Coordinator) expireFences(now time.Time) {
	for pid, f := range c.txnFence {
		if now.Sub(f.at) > txnFenceKept {
			delete(c.txnFence, pid)
		}
	}
}

// unstable reports whether an open transaction holds an offset of tp.
func (g *Group) unstable(tp topicPartition) bool {
	for _, m := range g.txnOffsets {
		for k := range m {
			if k.tp == tp {
				return true
			}
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
	if c.fenced(req.ProducerId, req.ProducerEpoch) {
		failAll(kerr.ProducerFenced)
		return
	}
	// OffsetCommit's group and member checks, on the same fields.
	as := &msg.OffsetCommitRequest{GroupId: req.GroupId, GenerationIdOrMemberEpoch: req.GenerationId, MemberId: req.MemberId, GroupInstanceId: req.GroupInstanceId}
	g, code := c.groupForCommit(rc, as, commitModernProtocol, kerr.IllegalGeneration)
	if code != kerr.None {
		failAll(code)
		return
	}
	catalog := c.cfg.Topics()
	now := rc.Now.UnixMilli()
	type write struct {
		k     pendingOffset
		v     committed
		key   []byte
		value []byte
	}
	var recs []Record
	var writes []write
	k := 0
	for _, t := range req.Topics {
		topic := catalogTopic(catalog, t.Name)
		for _, p := range t.Partitions {
			slot := slots[k]
			k++
			metadata, code := c.checkCommitPartition(catalog, topic, p.PartitionIndex, p.CommittedMetadata)
			if code != kerr.None {
				slot.ErrorCode = int16(code)
				continue
			}
			v := committed{offset: p.CommittedOffset, leaderEpoch: p.CommittedLeaderEpoch, metadata: metadata, commitTime: now, expireTime: -1}
			pk := pendingOffset{topicPartition{t.Name, p.PartitionIndex}, req.ProducerEpoch}
			w := write{k: pk, v: v, key: txnOffsetKey(g.id, req.ProducerId, pk.epoch, pk.tp.topic, pk.tp.partition), value: encodeOffset(v)}
			recs = append(recs, Record{Key: w.key, Value: w.value})
			writes = append(writes, w)
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
		if c.fenced(req.ProducerId, req.ProducerEpoch) {
			// Fenced while the write was under way: drop what it wrote
			// (unless a newer write replaced it since).
			var drop []Record
			ps := c.parts[g.partition]
			for _, w := range writes {
				if cur, ok := ps.Live[string(w.key)]; ok && sameSlice(cur, w.value) {
					drop = append(drop, Record{Key: w.key})
				}
			}
			if len(drop) > 0 {
				c.write(g.partition, drop, nil)
			}
			failAll(kerr.ProducerFenced)
			return
		}
		if !g.dead {
			for _, w := range writes {
				g.addTxnOffset(req.ProducerId, w.k, w.v)
			}
		}
		reply(resp)
	})
}

// errNotLoaded: a transaction completes on a partition still loading; the
// transaction coordinator writes its markers again later.
var errNotLoaded = errors.New("group: __consumer_offsets partition still loading")

// CompleteTxn completes producer pid's transaction of epoch on partition p
// of __consumer_offsets at now, as its transaction marker does in Kafka:
// with a commit its transactional offsets of that epoch become the groups'
// committed offsets; with an abort, and for older epochs (a fenced
// producer's), they are dropped. done runs once that is durable (at once
// when the producer has none there). Completing twice is harmless.
func (c *Coordinator) CompleteTxn(now time.Time, pid int64, epoch int16, commit bool, p int32, done func(error)) {
	if p < 0 || int(p) >= len(c.parts) {
		done(nil)
		return
	}
	if !c.parts[p].loaded {
		done(errNotLoaded)
		return
	}
	if f, ok := c.txnFence[pid]; !ok || epoch >= f.epoch {
		c.txnFence[pid] = fence{epoch, now}
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
		for _, k := range sortedPending(g.txnOffsets[pid]) {
			if commit && k.epoch == epoch {
				recs = append(recs, Record{Key: offsetKey(g.id, k.tp.topic, k.tp.partition), Value: encodeOffset(g.txnOffsets[pid][k])})
			}
		}
	}
	// Tombstones after the offsets: a torn append keeps the pending
	// offsets, and the completion, made again, lands the same.
	for _, g := range groups {
		for _, k := range sortedPending(g.txnOffsets[pid]) {
			recs = append(recs, Record{Key: txnOffsetKey(g.id, pid, k.epoch, k.tp.topic, k.tp.partition)})
		}
	}
	c.write(p, recs, func(err error) {
		if err != nil {
			done(err)
			return
		}
		for _, g := range groups {
			if commit && !g.dead {
				for k, v := range g.txnOffsets[pid] {
					if k.epoch == epoch {
						g.offsets[k.tp] = v
					}
				}
			}
			delete(g.txnOffsets, pid)
		}
		done(nil)
	})
}

func sortedPending(m map[pendingOffset]committed) []pendingOffset {
	out := make([]pendingOffset, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.tp.topic != b.tp.topic {
			return a.tp.topic < b.tp.topic
		}
		if a.tp.partition != b.tp.partition {
			return a.tp.partition < b.tp.partition
		}
		return a.epoch < b.epoch
	})
	return out
}
