package group

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

// Member epochs with a meaning in ConsumerGroupHeartbeat.
const (
	epochJoin        = 0
	epochLeave       = -1
	epochStaticLeave = -2
)

// consumerGeneratedMemberID is the ConsumerGroupHeartbeat version from which
// the client generates its member id (v1, KIP-848 GA).
const consumerGeneratedMemberID = 1

// ConsumerHeartbeat serves ConsumerGroupHeartbeat (KIP-848). reply runs
// once the group's changed state is durable.
func (c *Coordinator) ConsumerHeartbeat(rc Request, req *msg.ConsumerGroupHeartbeatRequest, reply func(*msg.ConsumerGroupHeartbeatResponse)) {
	fail := func(code kerr.Code, message string) {
		c.logger.Debug("consumer heartbeat failed", "group", req.GroupId, "member", req.MemberId, "epoch", req.MemberEpoch, "err", code, "message", message)
		resp := &msg.ConsumerGroupHeartbeatResponse{ErrorCode: int16(code)}
		if message != "" {
			resp.ErrorMessage = &message
		}
		reply(resp)
	}
	if code := c.loadingCode(req.GroupId); code != kerr.None {
		fail(code, "")
		return
	}
	if code, message := c.validateConsumerHeartbeat(rc, req); code != kerr.None {
		fail(code, message)
		return
	}
	g := c.group(req.GroupId)
	if req.MemberEpoch == epochLeave || req.MemberEpoch == epochStaticLeave {
		c.consumerLeave(rc, g, req, reply, fail)
		return
	}
	if g == nil {
		if req.MemberEpoch != epochJoin {
			fail(kerr.GroupIDNotFound, fmt.Sprintf("Consumer group %s not found.", req.GroupId))
			return
		}
		g = c.addGroup(req.GroupId, kindConsumer, rc.Now)
	} else if g.kind == kindClassic {
		if req.MemberEpoch != epochJoin || !g.empty() {
			// Kafka can upgrade a classic group online; sluice keeps the
			// protocols apart.
			fail(kerr.GroupIDNotFound, fmt.Sprintf("Group %s is not a consumer group.", req.GroupId))
			return
		}
		c.convertToConsumer(g, rc.Now)
	}
	cg := g.consumer
	before := encodeGroup(g)

	memberID := req.MemberId
	if memberID == "" {
		u := c.uuid4()
		memberID = base64.RawURLEncoding.EncodeToString(u[:])
	}
	m, isNew, code, message := c.consumerMemberFor(g, req, memberID)
	if code != kerr.None {
		fail(code, message)
		return
	}
	// Update the member from the request; nil fields mean "unchanged".
	bump := isNew
	if req.InstanceId != nil {
		m.instanceID = req.InstanceId
	}
	if req.RackId != nil {
		m.rackID = req.RackId
	}
	if req.RebalanceTimeoutMs != -1 {
		m.rebalanceTimeout = time.Duration(req.RebalanceTimeoutMs) * time.Millisecond
	}
	if req.ServerAssignor != nil {
		m.serverAssignor = req.ServerAssignor
	}
	if req.SubscribedTopicNames != nil {
		names := slices.Clone(req.SubscribedTopicNames)
		sort.Strings(names)
		names = slices.Compact(names)
		if !slices.Equal(names, m.topics) {
			m.topics = names
			bump = true
		}
	}
	if req.SubscribedTopicRegex != nil {
		regex := req.SubscribedTopicRegex
		if *regex == "" {
			regex = nil
		}
		if (regex == nil) != (m.regex == nil) || regex != nil && *regex != *m.regex {
			m.regex = regex
			bump = true
		}
	}
	m.clientID, m.clientHost = rc.ClientID, rc.ClientHost
	if isNew {
		cg.members[m.id] = m
		if m.instanceID != nil {
			cg.static[*m.instanceID] = m.id
		}
	}
	// The partitions of what the group subscribes to: a change (a topic
	// created, partitions added) is a new group epoch too.
	catalog := c.cfg.Topics()
	if bump || !cg.subscriptionKnown || catalog != nil && catalog.Version != cg.subscriptionVersion {
		sub := cg.computeSubscription(catalog)
		switch {
		case cg.subscriptionKnown:
			bump = bump || !sameSubscription(sub, cg.subscription)
		case cg.assignmentEpoch == cg.groupEpoch:
			// Not known since a load or a fence: a new epoch only if the
			// target assignment does not cover what is subscribed now
			// (topics changed meanwhile), so a restart does not rebalance.
			cg.subscription = sub
			bump = bump || !cg.targetCovers()
		}
		cg.subscription, cg.subscriptionKnown = sub, true
		if catalog != nil {
			cg.subscriptionVersion = catalog.Version
		}
	}
	if bump {
		cg.groupEpoch++
	}
	if cg.groupEpoch > cg.assignmentEpoch {
		c.computeTargetAssignment(g)
	}
	prevAssigned := m.assigned.clone()
	c.reconcile(g, m, req.TopicPartitions, rc.Now)
	c.timers.set(timerKey{kind: timerConsumerSession, group: g.id, member: m.id}, rc.Now.Add(c.cfg.ConsumerSessionTimeout))

	resp := &msg.ConsumerGroupHeartbeatResponse{
		MemberId:            &m.id,
		MemberEpoch:         m.epoch,
		HeartbeatIntervalMs: int32(c.cfg.ConsumerHeartbeatInterval.Milliseconds()),
	}
	full := req.MemberEpoch == epochJoin || req.RebalanceTimeoutMs != -1 && (req.SubscribedTopicNames != nil || req.SubscribedTopicRegex != nil) && req.TopicPartitions != nil
	if full || !prevAssigned.equal(m.assigned) {
		resp.Assignment = &msg.ConsumerGroupHeartbeatResponseAssignment{TopicPartitions: responsePartitions(m.assigned)}
	}
	if c.logger.Enabled(context.Background(), slog.LevelDebug) {
		c.logger.Debug("consumer heartbeat", "group", g.id, "member", m.id, "epoch", req.MemberEpoch, "newEpoch", m.epoch,
			"owned", fmt.Sprint(req.TopicPartitions), "assigned", fmt.Sprint(m.assigned), "revoking", fmt.Sprint(m.pendingRevocation),
			"target", fmt.Sprint(m.target), "state", m.state, "groupEpoch", cg.groupEpoch, "sent", resp.Assignment != nil)
	}
	c.persistIfChanged(g, before, func(err error) {
		if err != nil {
			fail(appendError(err), "")
			return
		}
		reply(resp)
	})
}

// persistIfChanged writes the group's record if its encoding changed.
func (c *Coordinator) persistIfChanged(g *Group, before []byte, done func(err error)) {
	after := encodeGroup(g)
	if sameBytes(before, after) {
		done(nil)
		return
	}
	c.write(g.partition, []Record{{Key: groupKey(g.id), Value: after}}, done)
}

// validateConsumerHeartbeat is Kafka's request validation.
func (c *Coordinator) validateConsumerHeartbeat(rc Request, req *msg.ConsumerGroupHeartbeatRequest) (kerr.Code, string) {
	epoch := req.MemberEpoch
	if (rc.Version >= consumerGeneratedMemberID || epoch > 0 || epoch == epochLeave) && req.MemberId == "" {
		return kerr.InvalidRequest, "MemberId can't be empty."
	}
	if req.GroupId == "" {
		return kerr.InvalidRequest, "GroupId can't be empty."
	}
	if req.InstanceId != nil && *req.InstanceId == "" {
		return kerr.InvalidRequest, "InstanceId can't be empty."
	}
	if req.RackId != nil && *req.RackId == "" {
		return kerr.InvalidRequest, "RackId can't be empty."
	}
	switch {
	case epoch == epochJoin:
		if req.RebalanceTimeoutMs == -1 {
			return kerr.InvalidRequest, "RebalanceTimeoutMs must be provided in first request."
		}
		if req.TopicPartitions == nil || len(req.TopicPartitions) > 0 {
			return kerr.InvalidRequest, "TopicPartitions must be empty when (re-)joining."
		}
		if req.SubscribedTopicNames == nil && req.SubscribedTopicRegex == nil {
			return kerr.InvalidRequest, "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when (re-)joining."
		}
	case epoch == epochStaticLeave:
		if req.InstanceId == nil {
			return kerr.InvalidRequest, "InstanceId can't be null."
		}
	case epoch < epochStaticLeave:
		return kerr.InvalidRequest, "MemberEpoch is invalid."
	}
	if req.ServerAssignor != nil && !slices.Contains(c.cfg.ConsumerAssignors, *req.ServerAssignor) {
		return kerr.UnsupportedAssignor, fmt.Sprintf("ServerAssignor %s is not supported. Supported assignors: %v.", *req.ServerAssignor, c.cfg.ConsumerAssignors)
	}
	if req.SubscribedTopicRegex != nil && *req.SubscribedTopicRegex != "" {
		if _, err := compileTopicRegex(*req.SubscribedTopicRegex); err != nil {
			return kerr.InvalidRegularExpression, fmt.Sprintf("SubscribedTopicRegex %q is invalid: %v", *req.SubscribedTopicRegex, err)
		}
	}
	return kerr.None, ""
}

// consumerMemberFor finds (or creates, on a join) the member a heartbeat
// is for, checking its epoch and instance id.
func (c *Coordinator) consumerMemberFor(g *Group, req *msg.ConsumerGroupHeartbeatRequest, memberID string) (m *consumerMember, isNew bool, code kerr.Code, message string) {
	cg := g.consumer
	epoch := req.MemberEpoch
	owned := req.TopicPartitions
	if req.InstanceId == nil {
		m = cg.members[memberID]
		if m == nil {
			if epoch != epochJoin {
				return nil, false, kerr.UnknownMemberID, fmt.Sprintf("Member %s is not a member of group %s.", memberID, g.id)
			}
			if len(cg.members) >= c.cfg.ConsumerMaxSize {
				return nil, false, kerr.GroupMaxSizeReached, fmt.Sprintf("The consumer group has reached its maximum capacity of %d members.", c.cfg.ConsumerMaxSize)
			}
			return &consumerMember{id: memberID, assigned: assignment{}, pendingRevocation: assignment{}, target: assignment{}}, true, kerr.None, ""
		}
		if code, message := checkMemberEpoch(m, epoch, owned); code != kerr.None {
			if epoch != epochJoin {
				return nil, false, code, message
			}
			c.resetConsumerMember(g, m)
		}
		return m, false, kerr.None, ""
	}
	inst := *req.InstanceId
	existing := cg.members[cg.static[inst]]
	if epoch == epochJoin {
		if existing == nil {
			if m := cg.members[memberID]; m != nil {
				if code, _ := checkMemberEpoch(m, epoch, owned); code != kerr.None {
					c.resetConsumerMember(g, m)
				}
				return m, false, kerr.None, ""
			}
			if len(cg.members) >= c.cfg.ConsumerMaxSize {
				return nil, false, kerr.GroupMaxSizeReached, fmt.Sprintf("The consumer group has reached its maximum capacity of %d members.", c.cfg.ConsumerMaxSize)
			}
			return &consumerMember{id: memberID, assigned: assignment{}, pendingRevocation: assignment{}, target: assignment{}}, true, kerr.None, ""
		}
		if existing.id == memberID {
			if code, _ := checkMemberEpoch(existing, epoch, owned); code != kerr.None {
				c.resetConsumerMember(g, existing)
			}
			return existing, false, kerr.None, ""
		}
		if existing.epoch != epochStaticLeave {
			return nil, false, kerr.UnreleasedInstanceID, fmt.Sprintf("Static member %s with instance id %s cannot join the group because the instance id is owned by %s member.", memberID, inst, existing.id)
		}
		// The instance comes back under a new member id: it takes over
		// the departed member's assignment without a rebalance.
		c.timers.cancel(timerKey{kind: timerConsumerSession, group: g.id, member: existing.id})
		c.timers.cancel(timerKey{kind: timerConsumerRebalance, group: g.id, member: existing.id})
		delete(cg.members, existing.id)
		nm := *existing
		nm.id = memberID
		nm.epoch, nm.previousEpoch = 0, 0
		nm.state = memberStable
		cg.members[memberID] = &nm
		cg.static[inst] = memberID
		cg.rebuildOwners()
		return &nm, false, kerr.None, ""
	}
	if existing == nil {
		return nil, false, kerr.UnknownMemberID, fmt.Sprintf("Instance id %s is unknown.", inst)
	}
	if existing.id != memberID {
		return nil, false, kerr.FencedInstanceID, fmt.Sprintf("Static member %s with instance id %s was fenced by member %s.", memberID, inst, existing.id)
	}
	if code, message := checkMemberEpoch(existing, epoch, owned); code != kerr.None {
		return nil, false, code, message
	}
	return existing, false, kerr.None, ""
}

// resetConsumerMember handles a member that rejoins (epoch 0, owning
// nothing) while the coordinator still knows it at a later epoch, as
// clients do after FENCED_MEMBER_EPOCH with their member id: its partitions
// are released and it reconciles from scratch towards its target.
func (c *Coordinator) resetConsumerMember(g *Group, m *consumerMember) {
	m.epoch, m.previousEpoch = 0, 0
	m.state = memberStable
	m.assigned, m.pendingRevocation = assignment{}, assignment{}
	c.timers.cancel(timerKey{kind: timerConsumerRebalance, group: g.id, member: m.id})
	g.consumer.rebuildOwners()
}

// checkMemberEpoch fences a member whose epoch is not the coordinator's,
// except the previous epoch with a subset of its partitions (the answer
// that bumped it may have been lost).
func checkMemberEpoch(m *consumerMember, epoch int32, owned []msg.ConsumerGroupHeartbeatRequestTopicPartitions) (kerr.Code, string) {
	if epoch > m.epoch {
		return kerr.FencedMemberEpoch, fmt.Sprintf("The consumer group member has a greater member epoch (%d) than the one known by the group coordinator (%d). The member must abandon all its partitions and rejoin.", epoch, m.epoch)
	}
	if epoch < m.epoch && (epoch != m.previousEpoch || !ownedSubset(owned, m.assigned)) {
		return kerr.FencedMemberEpoch, fmt.Sprintf("The consumer group member has a smaller member epoch (%d) than the one known by the group coordinator (%d). The member must abandon all its partitions and rejoin.", epoch, m.epoch)
	}
	return kerr.None, ""
}

func ownedSubset(owned []msg.ConsumerGroupHeartbeatRequestTopicPartitions, a assignment) bool {
	if owned == nil {
		return false
	}
	for _, t := range owned {
		for _, p := range t.Partitions {
			if !a.has(t.TopicId, p) {
				return false
			}
		}
	}
	return true
}

func responsePartitions(a assignment) []msg.ConsumerGroupHeartbeatResponseTopicPartitions {
	out := []msg.ConsumerGroupHeartbeatResponseTopicPartitions{}
	for _, t := range a.sortedTopics() {
		out = append(out, msg.ConsumerGroupHeartbeatResponseTopicPartitions{TopicId: t, Partitions: slices.Clone(a[t])})
	}
	return out
}

// consumerLeave handles epoch -1 (leave) and -2 (a static member leaving
// for a while, keeping its assignment until its session expires).
func (c *Coordinator) consumerLeave(rc Request, g *Group, req *msg.ConsumerGroupHeartbeatRequest, reply func(*msg.ConsumerGroupHeartbeatResponse), fail func(kerr.Code, string)) {
	if g == nil || g.kind != kindConsumer {
		fail(kerr.GroupIDNotFound, fmt.Sprintf("Consumer group %s not found.", req.GroupId))
		return
	}
	cg := g.consumer
	var m *consumerMember
	if req.InstanceId == nil {
		m = cg.members[req.MemberId]
		if m == nil {
			fail(kerr.UnknownMemberID, fmt.Sprintf("Member %s is not a member of group %s.", req.MemberId, g.id))
			return
		}
	} else {
		m = cg.members[cg.static[*req.InstanceId]]
		if m == nil {
			fail(kerr.UnknownMemberID, fmt.Sprintf("Instance id %s is unknown.", *req.InstanceId))
			return
		}
		if m.id != req.MemberId {
			fail(kerr.FencedInstanceID, fmt.Sprintf("Static member %s with instance id %s was fenced by member %s.", req.MemberId, *req.InstanceId, m.id))
			return
		}
	}
	before := encodeGroup(g)
	resp := &msg.ConsumerGroupHeartbeatResponse{MemberId: &m.id, MemberEpoch: req.MemberEpoch}
	if req.MemberEpoch == epochStaticLeave {
		m.epoch = epochStaticLeave
		m.pendingRevocation = assignment{}
		c.timers.cancel(timerKey{kind: timerConsumerRebalance, group: g.id, member: m.id})
		cg.rebuildOwners()
	} else {
		c.fenceConsumerMember(g, m, rc.Now)
	}
	c.persistIfChanged(g, before, func(err error) {
		if err != nil {
			fail(appendError(err), "")
			return
		}
		reply(resp)
	})
}

// fenceConsumerMember removes a member and bumps the group epoch; its
// partitions are free for the others at their next heartbeat.
func (c *Coordinator) fenceConsumerMember(g *Group, m *consumerMember, now time.Time) {
	cg := g.consumer
	delete(cg.members, m.id)
	if m.instanceID != nil && cg.static[*m.instanceID] == m.id {
		delete(cg.static, *m.instanceID)
	}
	c.timers.cancel(timerKey{kind: timerConsumerSession, group: g.id, member: m.id})
	c.timers.cancel(timerKey{kind: timerConsumerRebalance, group: g.id, member: m.id})
	cg.groupEpoch++
	cg.subscriptionKnown = false
	cg.rebuildOwners()
	if len(cg.members) == 0 {
		g.stateTime = now
	}
}

// expireConsumerSession fences a member that stopped heartbeating.
func (c *Coordinator) expireConsumerSession(g *Group, memberID string, now time.Time) {
	if g.kind != kindConsumer {
		return
	}
	m := g.consumer.members[memberID]
	if m == nil {
		return
	}
	c.logger.Debug("consumer group member session expired", "group", g.id, "member", memberID)
	c.fenceConsumerMember(g, m, now)
	c.persistGroup(g, nil)
}

// consumerRebalanceTimeout fences a member that did not revoke its
// partitions within its rebalance timeout.
func (c *Coordinator) consumerRebalanceTimeout(g *Group, memberID string, now time.Time) {
	if g.kind != kindConsumer {
		return
	}
	m := g.consumer.members[memberID]
	if m == nil || m.state != memberUnrevokedPartitions {
		return
	}
	c.logger.Debug("consumer group member did not revoke in time", "group", g.id, "member", memberID)
	c.fenceConsumerMember(g, m, now)
	c.persistGroup(g, nil)
}

func (c *Coordinator) restoreConsumerTimers(g *Group, now time.Time) {
	for id, m := range g.consumer.members {
		c.timers.set(timerKey{kind: timerConsumerSession, group: g.id, member: id}, now.Add(c.cfg.ConsumerSessionTimeout))
		if m.state == memberUnrevokedPartitions {
			c.timers.set(timerKey{kind: timerConsumerRebalance, group: g.id, member: id}, now.Add(m.rebalanceTimeout))
		}
	}
}

// convertToConsumer turns an empty classic group into an empty consumer
// group, keeping its offsets.
func (c *Coordinator) convertToConsumer(g *Group, now time.Time) {
	c.timers.cancel(timerKey{kind: timerJoin, group: g.id})
	c.timers.cancel(timerKey{kind: timerSync, group: g.id})
	for id := range g.classic.pendingJoin {
		c.timers.cancel(timerKey{kind: timerHeartbeat, group: g.id, member: id})
	}
	g.kind = kindConsumer
	g.classic = classicGroup{}
	g.classic.init()
	g.consumer = newConsumerGroup()
	g.stateTime = now
}

// reconcile moves a member towards its target assignment (Kafka's
// CurrentAssignmentBuilder): it keeps what it owns of the target, must
// revoke the rest first (staying in its epoch), and receives partitions
// of the target only once no other member owns them.
func (c *Coordinator) reconcile(g *Group, m *consumerMember, owned []msg.ConsumerGroupHeartbeatRequestTopicPartitions, now time.Time) {
	cg := g.consumer
	target := cg.assignmentEpoch
	if m.epoch == target && m.state == memberStable {
		return
	}
	ownsRevoked := func(pending assignment) bool {
		if owned == nil {
			return true
		}
		for _, t := range owned {
			for _, p := range t.Partitions {
				if pending.has(t.TopicId, p) {
					return true
				}
			}
		}
		return false
	}
	prevEpoch, prevState := m.epoch, m.state
	switch m.state {
	case memberUnrevokedPartitions:
		if ownsRevoked(m.pendingRevocation) {
			return
		}
		c.nextAssignment(cg, m, m.epoch+1, target, ownsRevoked)
	default:
		c.nextAssignment(cg, m, m.epoch, target, ownsRevoked)
	}
	if m.epoch != prevEpoch {
		m.previousEpoch = prevEpoch
	}
	cg.rebuildOwners()
	if m.state == memberUnrevokedPartitions {
		if prevState != memberUnrevokedPartitions || m.epoch != prevEpoch {
			c.timers.set(timerKey{kind: timerConsumerRebalance, group: g.id, member: m.id}, now.Add(m.rebalanceTimeout))
		}
	} else {
		c.timers.cancel(timerKey{kind: timerConsumerRebalance, group: g.id, member: m.id})
	}
}

func (c *Coordinator) nextAssignment(cg *consumerGroup, m *consumerMember, epoch, targetEpoch int32, ownsRevoked func(assignment) bool) {
	newAssigned, revoke, pending := assignment{}, assignment{}, assignment{}
	unreleased := false
	topics := map[[16]byte]bool{}
	for t := range m.target {
		topics[t] = true
	}
	for t := range m.assigned {
		topics[t] = true
	}
	for t := range topics {
		for _, p := range m.assigned[t] {
			if m.target.has(t, p) {
				newAssigned.add(t, p)
			} else {
				revoke.add(t, p)
			}
		}
		for _, p := range m.target[t] {
			if newAssigned.has(t, p) {
				continue
			}
			if owner := cg.ownerEpoch(t, p); owner != -1 && !m.assigned.has(t, p) {
				unreleased = true
				continue
			}
			pending.add(t, p)
		}
	}
	switch {
	case len(revoke) > 0 && ownsRevoked(revoke):
		m.state = memberUnrevokedPartitions
		m.epoch = epoch
		m.assigned = newAssigned
		m.pendingRevocation = revoke
	case len(pending) > 0:
		for t, ps := range pending {
			for _, p := range ps {
				newAssigned.add(t, p)
			}
		}
		m.state = memberStable
		if unreleased {
			m.state = memberUnreleasedPartitions
		}
		m.epoch = targetEpoch
		m.assigned = newAssigned
		m.pendingRevocation = assignment{}
	default:
		m.state = memberStable
		if unreleased {
			m.state = memberUnreleasedPartitions
		}
		m.epoch = targetEpoch
		m.assigned = newAssigned
		m.pendingRevocation = assignment{}
	}
}

// computeSubscription resolves the group's subscriptions (names and
// regexes) against the catalogue.
func (cg *consumerGroup) computeSubscription(cat *Catalog) map[string]subscribedTopic {
	out := map[string]subscribedTopic{}
	if cat == nil {
		return out
	}
	for _, m := range cg.members {
		for _, name := range m.topics {
			if t := cat.ByName[name]; t != nil {
				out[name] = subscribedTopic{id: t.ID, partitions: t.Partitions}
			}
		}
		if m.regex != nil {
			re, err := compileTopicRegex(*m.regex)
			if err != nil {
				continue
			}
			for name, t := range cat.ByName {
				if !t.Internal && re.MatchString(name) {
					out[name] = subscribedTopic{id: t.ID, partitions: t.Partitions}
				}
			}
		}
	}
	return out
}

func sameSubscription(a, b map[string]subscribedTopic) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// targetCovers reports whether the members' targets hold exactly the
// partitions of the topics they subscribe to.
func (cg *consumerGroup) targetCovers() bool {
	want := map[tpID]bool{}
	for _, m := range cg.members {
		topics := cg.memberTopics(m)
		for _, t := range cg.subscription {
			if topics[t.id] {
				for p := int32(0); p < t.partitions; p++ {
					want[tpID{t.id, p}] = true
				}
			}
		}
	}
	n := 0
	for _, m := range cg.members {
		for t, ps := range m.target {
			for _, p := range ps {
				if !want[tpID{t, p}] {
					return false
				}
				n++
			}
		}
	}
	return n == len(want)
}

// memberTopics is the set of subscribed topics (by id) of one member.
func (cg *consumerGroup) memberTopics(m *consumerMember) map[[16]byte]bool {
	out := map[[16]byte]bool{}
	for _, name := range m.topics {
		if t, ok := cg.subscription[name]; ok {
			out[t.id] = true
		}
	}
	if m.regex != nil {
		if re, err := compileTopicRegex(*m.regex); err == nil {
			for name, t := range cg.subscription {
				if re.MatchString(name) {
					out[t.id] = true
				}
			}
		}
	}
	return out
}

// subscribedTo reports whether a member subscribes to topic, by name or
// pattern.
func (cg *consumerGroup) subscribedTo(topic string) bool {
	for _, m := range cg.members {
		if slices.Contains(m.topics, topic) {
			return true
		}
		if m.regex != nil {
			if re, err := compileTopicRegex(*m.regex); err == nil && re.MatchString(topic) {
				return true
			}
		}
	}
	return false
}

// computeTargetAssignment runs the group's assignor over its members and
// subscribed partitions, at the group epoch.
func (c *Coordinator) computeTargetAssignment(g *Group) {
	cg := g.consumer
	name := cg.preferredAssignor(c.cfg.ConsumerAssignors[0])
	in := assignorInput{topics: map[[16]byte]int32{}, names: map[[16]byte]string{}}
	for n, t := range cg.subscription {
		in.topics[t.id] = t.partitions
		in.names[t.id] = n
	}
	for _, m := range cg.sortedMembers() {
		in.members = append(in.members, assignorMember{id: m.id, instanceID: m.instanceID, topics: cg.memberTopics(m), current: m.target})
	}
	var out map[string]assignment
	if name == "range" {
		out = assignRange(in)
	} else {
		out = assignUniform(in)
	}
	for id, m := range cg.members {
		m.target = out[id]
		if m.target == nil {
			m.target = assignment{}
		}
	}
	cg.assignmentEpoch = cg.groupEpoch
}

// preferredAssignor is the server assignor most members ask for, else the
// default.
func (cg *consumerGroup) preferredAssignor(def string) string {
	counts := map[string]int{}
	for _, m := range cg.members {
		if m.serverAssignor != nil {
			counts[*m.serverAssignor]++
		}
	}
	best, n := def, 0
	names := make([]string, 0, len(counts))
	for k := range counts {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if counts[k] > n {
			best, n = k, counts[k]
		}
	}
	return best
}

// validateOffsetFetch checks a v9 OffsetFetch's member id and epoch.
func (cg *consumerGroup) validateOffsetFetch(memberID *string, epoch int32) kerr.Code {
	if memberID == nil && epoch < 0 {
		return kerr.None
	}
	var m *consumerMember
	if memberID != nil {
		m = cg.members[*memberID]
	}
	if m == nil {
		return kerr.UnknownMemberID
	}
	return memberEpochCode(epoch, m)
}

func memberEpochCode(epoch int32, m *consumerMember) kerr.Code {
	switch {
	case epoch > m.epoch:
		return kerr.FencedMemberEpoch
	case epoch < m.epoch:
		return kerr.StaleMemberEpoch
	}
	return kerr.None
}

// validateConsumerCommit is Kafka's ConsumerGroup.validateOffsetCommit. It
// also accepts the member's previous epoch: a member commits what it
// consumed while its heartbeat moved it to a new epoch (Kafka 4.0 answers
// STALE_MEMBER_EPOCH there, which clients cannot always handle).
func (c *Coordinator) validateConsumerCommit(g *Group, req *msg.OffsetCommitRequest, version int16) kerr.Code {
	cg := g.consumer
	epoch := req.GenerationIdOrMemberEpoch
	if epoch < 0 && len(cg.members) == 0 {
		return kerr.None
	}
	m := cg.members[req.MemberId]
	if m == nil {
		return kerr.UnknownMemberID
	}
	if version < commitModernProtocol {
		return kerr.UnsupportedVersion
	}
	if epoch < m.epoch && epoch == m.previousEpoch {
		return kerr.None
	}
	return memberEpochCode(epoch, m)
}

// ConsumerDescribe serves ConsumerGroupDescribe.
func (c *Coordinator) ConsumerDescribe(rc Request, req *msg.ConsumerGroupDescribeRequest) *msg.ConsumerGroupDescribeResponse {
	resp := &msg.ConsumerGroupDescribeResponse{}
	catalog := c.cfg.Topics()
	for _, id := range req.GroupIds {
		d := msg.ConsumerGroupDescribeResponseDescribedGroup{GroupId: id, Members: []msg.ConsumerGroupDescribeResponseMember{}, AuthorizedOperations: authorizedOperationsOmitted}
		if req.IncludeAuthorizedOperations {
			d.AuthorizedOperations = allGroupOperations
		}
		g := c.group(id)
		switch {
		case c.loadingCode(id) != kerr.None:
			d.ErrorCode = int16(kerr.CoordinatorLoadInProgress)
		case !ValidGroupID(id):
			d.ErrorCode = int16(kerr.InvalidGroupID)
		case g == nil:
			d.ErrorCode = int16(kerr.GroupIDNotFound)
			d.ErrorMessage = strPtr(fmt.Sprintf("Group %s not found.", id))
		case g.kind != kindConsumer:
			d.ErrorCode = int16(kerr.GroupIDNotFound)
			d.ErrorMessage = strPtr(fmt.Sprintf("Group %s is not a consumer group.", id))
		default:
			cg := g.consumer
			d.GroupState = cg.state().String()
			d.GroupEpoch = cg.groupEpoch
			d.AssignmentEpoch = cg.assignmentEpoch
			d.AssignorName = cg.preferredAssignor(c.cfg.ConsumerAssignors[0])
			for _, m := range cg.sortedMembers() {
				dm := msg.ConsumerGroupDescribeResponseMember{
					MemberId: m.id, InstanceId: m.instanceID, RackId: m.rackID, MemberEpoch: m.epoch,
					ClientId: m.clientID, ClientHost: m.clientHost,
					SubscribedTopicNames: slices.Clone(m.topics), SubscribedTopicRegex: m.regex,
					Assignment:       describeAssignment(m.assigned, catalog),
					TargetAssignment: describeAssignment(m.target, catalog),
				}
				if dm.SubscribedTopicNames == nil {
					dm.SubscribedTopicNames = []string{}
				}
				d.Members = append(d.Members, dm)
			}
		}
		resp.Groups = append(resp.Groups, d)
	}
	return resp
}

func describeAssignment(a assignment, cat *Catalog) msg.ConsumerGroupDescribeResponseAssignment {
	out := msg.ConsumerGroupDescribeResponseAssignment{TopicPartitions: []msg.ConsumerGroupDescribeResponseTopicPartitions{}}
	for _, t := range a.sortedTopics() {
		name := ""
		if cat != nil {
			if topic := cat.ByID[t]; topic != nil {
				name = topic.Name
			}
		}
		out.TopicPartitions = append(out.TopicPartitions, msg.ConsumerGroupDescribeResponseTopicPartitions{TopicId: t, TopicName: name, Partitions: slices.Clone(a[t])})
	}
	return out
}

// regexCache keeps compiled subscription patterns (RE2 syntax, as Kafka's
// RE2/J); a pattern must match the whole topic name. It is bounded: when
// full it starts over.
var regexCache struct {
	sync.Mutex
	m map[string]*regexp.Regexp
}

// Bounds of subscription patterns.
const (
	maxRegexLength  = 4096
	regexCacheLimit = 1024
)

func compileTopicRegex(pattern string) (*regexp.Regexp, error) {
	regexCache.Lock()
	defer regexCache.Unlock()
	if re, ok := regexCache.m[pattern]; ok {
		return re, nil
	}
	if len(pattern) > maxRegexLength {
		return nil, fmt.Errorf("longer than %d bytes", maxRegexLength)
	}
	re, err := regexp.Compile("^(?:" + pattern + ")$")
	if err != nil {
		return nil, err
	}
	if regexCache.m == nil || len(regexCache.m) >= regexCacheLimit {
		regexCache.m = map[string]*regexp.Regexp{}
	}
	regexCache.m[pattern] = re
	return re, nil
}
