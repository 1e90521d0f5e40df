package group

import (
	"time"

	"github.com/sluice-broker/sluice/wire"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

// OffsetCommit API versions with special behaviour.
const (
	commitGroupNotFound   = 9 // GROUP_ID_NOT_FOUND for an unknown group (ILLEGAL_GENERATION before)
	commitModernProtocol  = 9 // the first version KIP-848 members may use
	fetchMemberValidation = 9
)

// CommitOffsets serves OffsetCommit. reply runs once the commit's records
// are durable (or failed), never before.
func (c *Coordinator) CommitOffsets(rc Request, req *msg.OffsetCommitRequest, reply func(*msg.OffsetCommitResponse)) {
	resp := &msg.OffsetCommitResponse{}
	slots := make([][]*msg.OffsetCommitResponsePartition, len(req.Topics))
	for i, t := range req.Topics {
		rt := msg.OffsetCommitResponseTopic{Name: t.Name, Partitions: make([]msg.OffsetCommitResponsePartition, len(t.Partitions))}
		resp.Topics = append(resp.Topics, rt)
		for j, p := range t.Partitions {
			resp.Topics[i].Partitions[j].PartitionIndex = p.PartitionIndex
			slots[i] = append(slots[i], &resp.Topics[i].Partitions[j])
		}
	}
	failAll := func(code kerr.Code) {
		for _, ps := range slots {
			for _, p := range ps {
				p.ErrorCode = int16(code)
			}
		}
		reply(resp)
	}
	notFound := kerr.IllegalGeneration
	if rc.Version >= commitGroupNotFound {
		notFound = kerr.GroupIDNotFound
	}
	g, code := c.groupForCommit(rc, req, rc.Version, notFound)
	if code == kerr.None && g.kind == kindClassic && req.GenerationIdOrMemberEpoch >= 0 {
		if m := g.classic.members[req.MemberId]; m != nil &&
			(g.classic.state == stateStable || g.classic.state == statePreparingRebalance) {
			// A commit keeps a classic member's session alive.
			c.timers.set(timerKey{kind: timerHeartbeat, group: g.id, member: m.id}, rc.Now.Add(m.sessionTimeout))
		}
	}
	if code != kerr.None {
		failAll(code)
		return
	}
	catalog := c.cfg.Topics()
	now := rc.Now.UnixMilli()
	expire := int64(-1)
	if req.RetentionTimeMs >= 0 && rc.Version >= 2 && rc.Version <= 4 {
		expire = now + req.RetentionTimeMs
	}
	type pending struct {
		tp   topicPartition
		v    committed
		slot *msg.OffsetCommitResponsePartition
	}
	var recs []Record
	var writes []pending
	for i, t := range req.Topics {
		topic := catalogTopic(catalog, t.Name)
		for j, p := range t.Partitions {
			slot := slots[i][j]
			metadata, code := c.checkCommitPartition(catalog, topic, p.PartitionIndex, p.CommittedMetadata)
			if code != kerr.None {
				slot.ErrorCode = int16(code)
				continue
			}
			leaderEpoch := p.CommittedLeaderEpoch
			if rc.Version < 6 {
				leaderEpoch = -1
			}
			v := committed{offset: p.CommittedOffset, leaderEpoch: leaderEpoch, metadata: metadata, commitTime: now, expireTime: expire}
			tp := topicPartition{t.Name, p.PartitionIndex}
			recs = append(recs, Record{Key: offsetKey(g.id, tp.topic, tp.partition), Value: encodeOffset(v)})
			writes = append(writes, pending{tp, v, slot})
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
			code := commitError(err)
			for _, w := range writes {
				w.slot.ErrorCode = int16(code)
			}
			reply(resp)
			return
		}
		if !g.dead {
			for _, w := range writes {
				g.offsets[w.tp] = w.v
			}
		}
		reply(resp)
	})
}

// groupForCommit finds the group an offset commit goes to (creating a
// simple group for a commit outside group management) and checks the
// committing member: OffsetCommit's rules, which TxnOffsetCommit shares.
// version selects the member rules (KIP-848's from commitModernProtocol);
// notFound answers a generation given for a group that does not exist.
func (c *Coordinator) groupForCommit(rc Request, req *msg.OffsetCommitRequest, version int16, notFound kerr.Code) (*Group, kerr.Code) {
	if code := c.loadingCode(req.GroupId); code != kerr.None {
		return nil, code
	}
	if !ValidGroupID(req.GroupId) {
		return nil, kerr.InvalidGroupID
	}
	g := c.group(req.GroupId)
	if g == nil {
		if req.GenerationIdOrMemberEpoch >= 0 {
			return nil, notFound
		}
		g = c.addGroup(req.GroupId, kindClassic, rc.Now)
	}
	if g.kind == kindConsumer {
		return g, c.validateConsumerCommit(g, req, version)
	}
	return g, g.classic.validateOffsetCommit(req)
}

// checkCommitPartition checks one partition of an offset commit
// (OffsetCommit or TxnOffsetCommit): the partition exists when the
// catalogue is known, the metadata fits offset.metadata.max.bytes. It
// returns the metadata to store: Kafka stores a null metadata as "".
func (c *Coordinator) checkCommitPartition(catalog *Catalog, topic *Topic, partition int32, metadata *string) (*string, kerr.Code) {
	switch {
	case catalog != nil && (topic == nil || partition < 0 || partition >= topic.Partitions):
		return nil, kerr.UnknownTopicOrPartition
	case metadata != nil && len(*metadata) > c.cfg.OffsetMetadataMaxBytes:
		return nil, kerr.OffsetMetadataTooLarge
	case metadata == nil:
		return strPtr(""), kerr.None
	}
	return metadata, kerr.None
}

func catalogTopic(cat *Catalog, name string) *Topic {
	if cat == nil {
		return nil
	}
	return cat.ByName[name]
}

// validateOffsetCommit is Kafka's ClassicGroup.validateOffsetCommit.
func (cg *classicGroup) validateOffsetCommit(req *msg.OffsetCommitRequest) kerr.Code {
	generation := req.GenerationIdOrMemberEpoch
	if generation < 0 && cg.state == stateEmpty {
		return kerr.None // a simple commit into an empty group
	}
	if generation >= 0 || req.MemberId != "" || req.GroupInstanceId != nil {
		if code := cg.validateMember(req.MemberId, req.GroupInstanceId); code != kerr.None {
			return code
		}
		if generation != cg.generation {
			return kerr.IllegalGeneration
		}
	} else if cg.state != stateEmpty {
		return kerr.UnknownMemberID
	}
	if cg.state == stateCompletingRebalance {
		return kerr.RebalanceInProgress
	}
	return kerr.None
}

// FetchOffsets serves OffsetFetch: one group (v1-7) or a batch (v8+).
func (c *Coordinator) FetchOffsets(rc Request, req *msg.OffsetFetchRequest) *msg.OffsetFetchResponse {
	resp := &msg.OffsetFetchResponse{}
	if rc.Version >= 8 {
		for _, rg := range req.Groups {
			resp.Groups = append(resp.Groups, c.fetchGroup(rc, rg, req.RequireStable))
		}
		return resp
	}
	// v1-7: one group, the same shape without member fields.
	rg := msg.OffsetFetchRequestGroup{GroupId: req.GroupId, MemberEpoch: -1}
	if req.Topics != nil || rc.Version < 2 {
		rg.Topics = []msg.OffsetFetchRequestTopics{}
		for _, t := range req.Topics {
			rg.Topics = append(rg.Topics, msg.OffsetFetchRequestTopics{Name: t.Name, PartitionIndexes: t.PartitionIndexes})
		}
	}
	out := c.fetchGroup(rc, rg, req.RequireStable && rc.Version >= 7)
	if rc.Version >= 2 {
		resp.ErrorCode = out.ErrorCode
	}
	for _, t := range out.Topics {
		rt := msg.OffsetFetchResponseTopic{Name: t.Name}
		for _, p := range t.Partitions {
			ec := p.ErrorCode
			if rc.Version < 2 && out.ErrorCode != 0 {
				ec = out.ErrorCode // v1 has no top-level error
			}
			rt.Partitions = append(rt.Partitions, msg.OffsetFetchResponsePartition{
				PartitionIndex: p.PartitionIndex, CommittedOffset: p.CommittedOffset,
				CommittedLeaderEpoch: p.CommittedLeaderEpoch, Metadata: p.Metadata, ErrorCode: ec,
			})
		}
		resp.Topics = append(resp.Topics, rt)
	}
	if rc.Version >= 2 && out.ErrorCode != 0 {
		resp.Topics = []msg.OffsetFetchResponseTopic{}
	}
	return resp
}

// fetchGroup answers one group of an OffsetFetch. A nil Topics asks for
// every committed offset. With requireStable, a partition with an offset
// in an open transaction answers UNSTABLE_OFFSET_COMMIT (the client asks
// again once it completes).
func (c *Coordinator) fetchGroup(rc Request, rg msg.OffsetFetchRequestGroup, requireStable bool) msg.OffsetFetchResponseGroup {
	out := msg.OffsetFetchResponseGroup{GroupId: rg.GroupId, Topics: []msg.OffsetFetchResponseTopics{}}
	code := c.loadingCode(rg.GroupId)
	if code == kerr.None && !ValidGroupID(rg.GroupId) {
		code = kerr.InvalidGroupID
	}
	g := c.group(rg.GroupId)
	if code == kerr.None && g != nil && g.kind == kindConsumer && rc.Version >= fetchMemberValidation {
		code = g.consumer.validateOffsetFetch(rg.MemberId, rg.MemberEpoch)
	}
	if code != kerr.None {
		out.ErrorCode = int16(code)
		if rc.Version < 2 {
			// v1 reports errors per partition: answer what was asked.
			for _, t := range rg.Topics {
				rt := msg.OffsetFetchResponseTopics{Name: t.Name}
				for _, p := range t.PartitionIndexes {
					rt.Partitions = append(rt.Partitions, msg.OffsetFetchResponsePartitions{PartitionIndex: p, CommittedOffset: -1, CommittedLeaderEpoch: -1, Metadata: strPtr("")})
				}
				out.Topics = append(out.Topics, rt)
			}
		}
		return out
	}
	if rg.Topics == nil {
		if g == nil {
			return out
		}
		var cur *msg.OffsetFetchResponseTopics
		for _, tp := range g.sortedOffsets() {
			v := g.offsets[tp]
			if cur == nil || cur.Name != tp.topic {
				out.Topics = append(out.Topics, msg.OffsetFetchResponseTopics{Name: tp.topic})
				cur = &out.Topics[len(out.Topics)-1]
			}
			cur.Partitions = append(cur.Partitions, offsetPartition(tp.partition, v, true))
		}
		return out
	}
	for _, t := range rg.Topics {
		rt := msg.OffsetFetchResponseTopics{Name: t.Name, Partitions: []msg.OffsetFetchResponsePartitions{}}
		for _, p := range t.PartitionIndexes {
			var v committed
			ok := false
			if g != nil {
				v, ok = g.offsets[topicPartition{t.Name, p}]
			}
			part := offsetPartition(p, v, ok)
			if requireStable && g != nil && g.unstable(topicPartition{t.Name, p}) {
				part.ErrorCode = int16(kerr.UnstableOffsetCommit)
			}
			rt.Partitions = append(rt.Partitions, part)
		}
		out.Topics = append(out.Topics, rt)
	}
	return out
}

func offsetPartition(p int32, v committed, ok bool) msg.OffsetFetchResponsePartitions {
	if !ok {
		return msg.OffsetFetchResponsePartitions{PartitionIndex: p, CommittedOffset: -1, CommittedLeaderEpoch: -1, Metadata: strPtr("")}
	}
	md := v.metadata
	if md == nil {
		md = strPtr("")
	}
	return msg.OffsetFetchResponsePartitions{PartitionIndex: p, CommittedOffset: v.offset, CommittedLeaderEpoch: v.leaderEpoch, Metadata: md}
}

// DeleteOffsets serves OffsetDelete; reply runs once the tombstones are
// durable.
func (c *Coordinator) DeleteOffsets(rc Request, req *msg.OffsetDeleteRequest, reply func(*msg.OffsetDeleteResponse)) {
	resp := &msg.OffsetDeleteResponse{}
	fail := func(code kerr.Code) {
		resp.ErrorCode = int16(code)
		reply(resp)
	}
	if code := c.loadingCode(req.GroupId); code != kerr.None {
		fail(code)
		return
	}
	if !ValidGroupID(req.GroupId) {
		fail(kerr.InvalidGroupID)
		return
	}
	g := c.group(req.GroupId)
	if g == nil {
		fail(kerr.GroupIDNotFound)
		return
	}
	if g.kind == kindClassic && !g.empty() && g.classic.protocolType != consumerProtocolType {
		fail(kerr.NonEmptyGroup)
		return
	}
	catalog := c.cfg.Topics()
	var recs []Record
	var deleted []topicPartition
	for _, t := range req.Topics {
		rt := msg.OffsetDeleteResponseTopic{Name: t.Name}
		subscribed := g.subscribedTo(t.Name)
		topic := catalogTopic(catalog, t.Name)
		for _, p := range t.Partitions {
			out := msg.OffsetDeleteResponsePartition{PartitionIndex: p.PartitionIndex}
			tp := topicPartition{t.Name, p.PartitionIndex}
			switch {
			case catalog != nil && (topic == nil || p.PartitionIndex < 0 || p.PartitionIndex >= topic.Partitions):
				out.ErrorCode = int16(kerr.UnknownTopicOrPartition)
			case subscribed:
				out.ErrorCode = int16(kerr.GroupSubscribedToTopic)
			default:
				if _, ok := g.offsets[tp]; ok {
					recs = append(recs, Record{Key: offsetKey(g.id, tp.topic, tp.partition)})
					deleted = append(deleted, tp)
				}
			}
			rt.Partitions = append(rt.Partitions, out)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	if len(recs) == 0 {
		reply(resp)
		return
	}
	for _, tp := range deleted {
		delete(g.offsets, tp)
	}
	c.write(g.partition, recs, func(err error) {
		if err != nil {
			resp.ErrorCode = int16(appendError(err))
			resp.Topics = nil
		}
		reply(resp)
	})
}

// consumerProtocolType is the protocol type of consumer groups.
const consumerProtocolType = "consumer"

// subscribedTo reports whether the group's members consume topic (offsets
// of subscribed topics neither expire nor may be deleted).
func (g *Group) subscribedTo(topic string) bool {
	if g.kind == kindConsumer {
		return g.consumer.subscribedTo(topic)
	}
	cg := &g.classic
	if topics, known := cg.subscribedTopics(); known {
		return topics[topic]
	}
	return cg.protocolType == consumerProtocolType
}

// subscribedTopics parses the consumer protocol subscriptions of the
// members for the selected protocol (its version 0 prefix, as Kafka does);
// known is false when the group is not a consumer group or a subscription
// does not parse.
func (cg *classicGroup) subscribedTopics() (topics map[string]bool, known bool) {
	if cg.protocolType != consumerProtocolType {
		return nil, false
	}
	topics = map[string]bool{}
	if len(cg.members) == 0 {
		return topics, true
	}
	if cg.protocol == "" {
		return nil, false
	}
	for _, m := range cg.members {
		md, _ := m.metadataFor(cg.protocol)
		names, err := subscriptionTopics(md)
		if err != nil {
			return nil, false
		}
		for _, n := range names {
			topics[n] = true
		}
	}
	return topics, true
}

// subscriptionTopics reads the topics of a ConsumerProtocolSubscription:
// version int16, then (in every version) an array of topic names.
func subscriptionTopics(b []byte) ([]string, error) {
	r := wire.NewReader(b)
	r.Int16()
	n := readCount(&r, 2)
	names := make([]string, 0, n)
	for range n {
		names = append(names, r.String())
	}
	return names, r.Err()
}

// expireOffsets applies offsets.retention.minutes (KIP-211): the offsets of
// an empty group expire once the group has been empty that long; a simple
// group's (and a group's unsubscribed topics') once they were committed
// that long ago, or at the expire time a v2-4 commit asked for. A group
// left empty without offsets is deleted.
func (c *Coordinator) expireOffsets(now time.Time) {
	c.expireFences(now)
	nowMs := now.UnixMilli()
	retention := c.cfg.OffsetsRetention.Milliseconds()
	for _, g := range c.sortedGroups() {
		if !c.parts[g.partition].loaded || g.pendingCommits > 0 {
			continue
		}
		base, ok := g.expirationBase()
		var recs []Record
		if ok {
			for _, tp := range g.sortedOffsets() {
				v := g.offsets[tp]
				if g.subscribedTo(tp.topic) {
					continue
				}
				expired := false
				if v.expireTime >= 0 {
					expired = nowMs >= v.expireTime
				} else {
					expired = nowMs-base(v) >= retention
				}
				if expired {
					delete(g.offsets, tp)
					recs = append(recs, Record{Key: offsetKey(g.id, tp.topic, tp.partition)})
				}
			}
		}
		if g.empty() && len(g.offsets) == 0 {
			recs = append(recs, Record{Key: groupKey(g.id)})
			c.dropGroup(g)
			c.logger.Debug("group expired", "group", g.id)
		}
		if len(recs) > 0 {
			c.write(g.partition, recs, func(err error) {
				if err != nil {
					c.logger.Warn("writing expired offsets failed", "group", g.id, "err", err)
				}
			})
		}
	}
}

// expirationBase says from which time a committed offset's retention runs,
// or false when the group's offsets do not expire now.
func (g *Group) expirationBase() (func(committed) int64, bool) {
	byCommit := func(v committed) int64 { return v.commitTime }
	if g.kind == kindConsumer {
		return byCommit, true
	}
	cg := &g.classic
	if cg.protocolType == "" {
		return byCommit, true // a simple group
	}
	if cg.state == stateEmpty {
		since := g.stateTime.UnixMilli()
		return func(committed) int64 { return since }, true
	}
	if _, known := cg.subscribedTopics(); known && cg.state == stateStable {
		return byCommit, true // only unsubscribed topics are considered
	}
	return nil, false
}
