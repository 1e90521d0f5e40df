package group

import (
	"time"

	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

// The classic rebalance protocol, after Kafka 4.0's GroupMetadataManager:
// members join (JoinGroup), the coordinator waits for every known member to
// rejoin or for the rebalance timeout, elects a leader and hands it the
// members' metadata, the leader's SyncGroup carries the assignment, which
// is made durable and then propagated to every member's SyncGroup.

// JoinGroup API versions with special behaviour.
const (
	joinRequiresKnownMemberID  = 4 // MEMBER_ID_REQUIRED on the first join of a dynamic member
	joinSupportsSkipAssignment = 9 // KIP-814
)

// JoinGroup serves a JoinGroup request; reply may run now or later (when
// the join phase completes).
func (c *Coordinator) JoinGroup(rc Request, req *msg.JoinGroupRequest, reply func(*msg.JoinGroupResponse)) {
	fail := func(code kerr.Code, memberID string) {
		var resp msg.JoinGroupResponse
		resp.Default()
		resp.ErrorCode = int16(code)
		resp.MemberId = memberID
		reply(&resp)
	}
	if code := c.loadingCode(req.GroupId); code != kerr.None {
		fail(code, req.MemberId)
		return
	}
	if !ValidGroupID(req.GroupId) {
		fail(kerr.InvalidGroupID, req.MemberId)
		return
	}
	session := time.Duration(req.SessionTimeoutMs) * time.Millisecond
	if session < c.cfg.MinSessionTimeout || session > c.cfg.MaxSessionTimeout {
		fail(kerr.InvalidSessionTimeout, req.MemberId)
		return
	}
	protocols := dedupeProtocols(req.Protocols)
	g := c.group(req.GroupId)
	if g != nil && g.kind == kindConsumer {
		if !g.empty() {
			// Kafka 4 lets classic members join a consumer group (online
			// migration); sluice keeps the protocols apart.
			fail(kerr.InconsistentGroupProtocol, req.MemberId)
			return
		}
		c.convertToClassic(g, rc.Now)
	}
	if g == nil {
		if req.MemberId != "" {
			fail(kerr.UnknownMemberID, req.MemberId)
			return
		}
		g = c.addGroup(req.GroupId, kindClassic, rc.Now)
	}
	if !c.acceptJoiningMember(g, req.MemberId) {
		if m := g.classic.members[req.MemberId]; m != nil {
			c.removeClassicMember(g, m, rc.Now)
		}
		g.classic.remove(req.MemberId)
		fail(kerr.GroupMaxSizeReached, "")
		return
	}
	j := &joinRequest{rc: rc, req: req, protocols: protocols, session: session, reply: reply}
	if req.MemberId == "" {
		c.joinNewMember(g, j)
	} else {
		c.joinExistingMember(g, j)
	}
}

// joinRequest is a JoinGroup being served.
type joinRequest struct {
	rc        Request
	req       *msg.JoinGroupRequest
	protocols []protocol
	session   time.Duration
	reply     func(*msg.JoinGroupResponse)
}

func (j *joinRequest) rebalanceTimeout() time.Duration {
	if j.req.RebalanceTimeoutMs < 0 {
		return j.session // JoinGroup v0 semantics
	}
	return time.Duration(j.req.RebalanceTimeoutMs) * time.Millisecond
}

func (j *joinRequest) fail(code kerr.Code, memberID string) {
	var resp msg.JoinGroupResponse
	resp.Default()
	resp.ErrorCode = int16(code)
	resp.MemberId = memberID
	j.reply(&resp)
}

// dedupeProtocols copies the request's protocols (the request buffer is
// not ours to keep), keeping the first of duplicate names as Kafka's keyed
// collection does.
func dedupeProtocols(in []msg.JoinGroupRequestProtocol) []protocol {
	out := make([]protocol, 0, len(in))
	seen := map[string]bool{}
	for _, p := range in {
		if seen[p.Name] {
			continue
		}
		seen[p.Name] = true
		out = append(out, protocol{name: p.Name, metadata: copyBytes(p.Metadata)})
	}
	return out
}

// acceptJoiningMember applies group.max.size.
func (c *Coordinator) acceptJoiningMember(g *Group, memberID string) bool {
	cg := &g.classic
	switch cg.state {
	case statePreparingRebalance:
		if m := cg.members[memberID]; m != nil && m.awaitingJoin() {
			return true
		}
		return cg.awaiting < c.cfg.MaxGroupSize
	case stateCompletingRebalance, stateStable:
		return cg.members[memberID] != nil || len(cg.members) < c.cfg.MaxGroupSize
	}
	return true
}

func (c *Coordinator) newMemberID(clientID string, instanceID *string) string {
	prefix := clientID
	if instanceID != nil {
		prefix = *instanceID
	}
	return prefix + "-" + uuidString(c.uuid4())
}

func (c *Coordinator) joinNewMember(g *Group, j *joinRequest) {
	cg := &g.classic
	if !cg.supportsProtocols(j.req.ProtocolType, j.protocols) {
		j.fail(kerr.InconsistentGroupProtocol, "")
		return
	}
	id := c.newMemberID(j.rc.ClientID, j.req.GroupInstanceId)
	if inst := j.req.GroupInstanceId; inst != nil {
		if old, ok := cg.static[*inst]; ok {
			c.replaceStaticMember(g, j, old, id)
			return
		}
		c.addMemberAndRebalance(g, j, id)
		return
	}
	if j.rc.Version >= joinRequiresKnownMemberID {
		// Hand out the id; the member rejoins with it. It expires if it
		// does not come back within its session timeout.
		cg.pendingJoin[id] = true
		c.timers.set(timerKey{kind: timerHeartbeat, group: g.id, member: id}, j.rc.Now.Add(j.session))
		j.fail(kerr.MemberIDRequired, id)
		return
	}
	c.addMemberAndRebalance(g, j, id)
}

func (c *Coordinator) joinExistingMember(g *Group, j *joinRequest) {
	cg := &g.classic
	id := j.req.MemberId
	if !cg.supportsProtocols(j.req.ProtocolType, j.protocols) {
		j.fail(kerr.InconsistentGroupProtocol, id)
		return
	}
	if cg.pendingJoin[id] {
		if j.req.GroupInstanceId != nil {
			j.fail(kerr.UnknownMemberID, id) // a pending member is never static
			return
		}
		c.addMemberAndRebalance(g, j, id)
		return
	}
	if code := cg.validateMember(id, j.req.GroupInstanceId); code != kerr.None {
		j.fail(code, id)
		return
	}
	m := cg.members[id]
	switch cg.state {
	case statePreparingRebalance:
		c.updateMemberAndRebalance(g, m, j)
	case stateCompletingRebalance:
		if m.matches(j.protocols) {
			// The member lost its JoinGroup answer: repeat it.
			j.reply(c.joinResponse(g, m.id, cg.leader == m.id, false))
			return
		}
		c.updateMemberAndRebalance(g, m, j)
	case stateStable:
		if cg.leader == id || !m.matches(j.protocols) {
			// A leader's join forces a rebalance (it saw a metadata change
			// that does not show in its own subscription).
			c.updateMemberAndRebalance(g, m, j)
			return
		}
		j.reply(c.joinResponse(g, m.id, false, false))
	default:
		j.fail(kerr.UnknownMemberID, id)
	}
}

// validateMember checks a member id and its group.instance.id.
func (cg *classicGroup) validateMember(memberID string, instanceID *string) kerr.Code {
	if instanceID != nil {
		existing, ok := cg.static[*instanceID]
		if !ok {
			return kerr.UnknownMemberID
		}
		if existing != memberID {
			return kerr.FencedInstanceID
		}
	}
	if cg.members[memberID] == nil {
		return kerr.UnknownMemberID
	}
	return kerr.None
}

// joinResponse is the answer to a member for the current generation.
func (c *Coordinator) joinResponse(g *Group, memberID string, withMembers, skipAssignment bool) *msg.JoinGroupResponse {
	cg := &g.classic
	var resp msg.JoinGroupResponse
	resp.Default()
	resp.MemberId = memberID
	resp.GenerationId = cg.generation
	resp.ProtocolType = nullableString(cg.protocolType)
	resp.ProtocolName = nullableString(cg.protocol)
	resp.Leader = cg.leader
	resp.SkipAssignment = skipAssignment
	resp.Members = []msg.JoinGroupResponseMember{}
	if withMembers {
		resp.Members = cg.joinMembers()
	}
	return &resp
}

func (c *Coordinator) addMemberAndRebalance(g *Group, j *joinRequest, id string) {
	cg := &g.classic
	m := &classicMember{
		id:               id,
		instanceID:       j.req.GroupInstanceId,
		clientID:         j.rc.ClientID,
		clientHost:       j.rc.ClientHost,
		rebalanceTimeout: j.rebalanceTimeout(),
		sessionTimeout:   j.session,
		protocolType:     j.req.ProtocolType,
		protocols:        j.protocols,
		isNew:            true,
	}
	if cg.state == statePreparingRebalance && cg.previous == stateEmpty {
		cg.newMemberAdded = true
	}
	m.joinReply, m.joinVersion = j.reply, j.rc.Version
	cg.add(m)
	// A new member cannot heartbeat while its JoinGroup is parked; it
	// expires if the join phase outlasts the new-member join timeout.
	c.timers.set(timerKey{kind: timerHeartbeat, group: g.id, member: id}, j.rc.Now.Add(c.cfg.NewMemberJoinTimeout))
	c.maybePrepareRebalanceOrCompleteJoin(g, j.rc.Now)
}

func (c *Coordinator) updateMemberAndRebalance(g *Group, m *classicMember, j *joinRequest) {
	cg := &g.classic
	if m.awaitingJoin() {
		// A second JoinGroup while the first is parked: the first is
		// superseded.
		cg.completeJoin(m, errorJoinResponse(kerr.RebalanceInProgress, m.id))
	}
	cg.setProtocols(m, j.protocols)
	m.rebalanceTimeout = j.rebalanceTimeout()
	m.sessionTimeout = j.session
	cg.setJoinReply(m, j.reply, j.rc.Version)
	c.maybePrepareRebalanceOrCompleteJoin(g, j.rc.Now)
}

func errorJoinResponse(code kerr.Code, memberID string) *msg.JoinGroupResponse {
	var resp msg.JoinGroupResponse
	resp.Default()
	resp.ErrorCode = int16(code)
	resp.MemberId = memberID
	return &resp
}

// replaceStaticMember lets a static member (group.instance.id) rejoin with
// a new member id: the old id is fenced, and a Stable group whose protocol
// does not change keeps its assignment without a rebalance (KIP-345).
func (c *Coordinator) replaceStaticMember(g *Group, j *joinRequest, oldID, newID string) {
	cg := &g.classic
	old := cg.members[oldID]
	if old == nil {
		delete(cg.static, *j.req.GroupInstanceId)
		c.addMemberAndRebalance(g, j, newID)
		return
	}
	currentLeader := cg.leader
	// Fence whatever the old member id has parked.
	cg.completeJoin(old, errorJoinResponse(kerr.FencedInstanceID, oldID))
	cg.completeSync(old, &msg.SyncGroupResponse{ErrorCode: int16(kerr.FencedInstanceID)})
	oldProtocols, oldRebalance, oldSession := old.protocols, old.rebalanceTimeout, old.sessionTimeout
	m := c.swapMember(g, old, newID)
	cg.setProtocols(m, j.protocols)
	m.rebalanceTimeout = j.rebalanceTimeout()
	m.sessionTimeout = j.session
	m.clientID, m.clientHost = j.rc.ClientID, j.rc.ClientHost
	cg.setJoinReply(m, j.reply, j.rc.Version)
	c.timers.set(timerKey{kind: timerHeartbeat, group: g.id, member: newID}, j.rc.Now.Add(m.sessionTimeout))

	switch cg.state {
	case stateStable:
		if cg.selectProtocol() != cg.protocol {
			c.maybePrepareRebalanceOrCompleteJoin(g, j.rc.Now)
			return
		}
		generation := cg.generation
		c.persistGroup(g, func(err error) {
			if g.dead || cg.members[newID] != m {
				return
			}
			if err != nil {
				// Undo: the old member id comes back.
				cg.setProtocols(m, oldProtocols)
				m.rebalanceTimeout, m.sessionTimeout = oldRebalance, oldSession
				reply := m.joinReply
				cg.setJoinReply(m, nil, 0)
				back := c.swapMember(g, m, oldID)
				c.timers.set(timerKey{kind: timerHeartbeat, group: g.id, member: oldID}, j.rc.Now.Add(back.sessionTimeout))
				if reply != nil {
					resp := errorJoinResponse(appendError(err), "")
					resp.GenerationId = generation
					resp.Leader = currentLeader
					reply(resp)
				}
				return
			}
			if j.rc.Version >= joinSupportsSkipAssignment {
				leader := cg.leader == newID
				cg.completeJoin(m, c.joinResponse(g, newID, leader, leader))
				return
			}
			// Before KIP-814 a rejoining static leader is not told it
			// leads (it would assign with no members): it is answered
			// with the leader id it replaced and acts as a follower.
			resp := c.joinResponse(g, newID, false, false)
			resp.Leader = currentLeader
			cg.completeJoin(m, resp)
		})
	case stateCompletingRebalance:
		// The leader may already assign to the old id: start over.
		c.prepareRebalance(g, j.rc.Now)
	case statePreparingRebalance:
		c.maybeCompleteJoinPhase(g, j.rc.Now)
	}
}

// swapMember replaces member old by a member with id newID carrying the
// same state, keeping its place in the join order and the leadership.
func (c *Coordinator) swapMember(g *Group, old *classicMember, newID string) *classicMember {
	cg := &g.classic
	m := *old
	m.id = newID
	m.joinReply, m.syncReply = nil, nil
	wasLeader := cg.leader == old.id
	pos := -1
	for i, id := range cg.order {
		if id == old.id {
			pos = i
		}
	}
	c.timers.cancel(timerKey{kind: timerHeartbeat, group: g.id, member: old.id})
	cg.remove(old.id)
	cg.add(&m)
	if pos >= 0 && pos < len(cg.order)-1 {
		copy(cg.order[pos+1:], cg.order[pos:len(cg.order)-1])
		cg.order[pos] = newID
	}
	if wasLeader {
		cg.leader = newID
	}
	if cg.pendingSync[old.id] {
		delete(cg.pendingSync, old.id)
		cg.pendingSync[newID] = true
	}
	return &m
}

// canRebalance: PreparingRebalance may follow Empty, Stable and
// CompletingRebalance.
func (cg *classicGroup) canRebalance() bool {
	return cg.state == stateEmpty || cg.state == stateStable || cg.state == stateCompletingRebalance
}

func (c *Coordinator) maybePrepareRebalanceOrCompleteJoin(g *Group, now time.Time) {
	if g.classic.canRebalance() {
		c.prepareRebalance(g, now)
		return
	}
	c.maybeCompleteJoinPhase(g, now)
}

// prepareRebalance starts a join phase: parked SyncGroups are told to
// rejoin, and the phase ends when every member has rejoined or at the
// rebalance timeout. A group's first rebalance waits the initial rebalance
// delay, so that members starting together land in one generation.
func (c *Coordinator) prepareRebalance(g *Group, now time.Time) {
	cg := &g.classic
	if cg.state == stateCompletingRebalance {
		c.resetAndPropagateAssignment(g, kerr.RebalanceInProgress, now)
	}
	c.removeSyncExpiration(g)
	initial := cg.state == stateEmpty
	g.transition(statePreparingRebalance, now)
	if initial {
		cg.initialDelay = c.cfg.InitialRebalanceDelay
		cg.initialRemaining = max(cg.rebalanceTimeout()-c.cfg.InitialRebalanceDelay, 0)
		cg.newMemberAdded = false
		c.timers.set(timerKey{kind: timerJoin, group: g.id}, now.Add(cg.initialDelay))
		return
	}
	cg.initialDelay, cg.initialRemaining = 0, -1
	c.maybeCompleteJoinElseSchedule(g, now)
}

func (c *Coordinator) maybeCompleteJoinElseSchedule(g *Group, now time.Time) {
	cg := &g.classic
	if cg.allJoined() {
		c.completeJoinPhase(g, now)
		return
	}
	cg.initialRemaining = -1
	c.timers.set(timerKey{kind: timerJoin, group: g.id}, now.Add(cg.rebalanceTimeout()))
}

// maybeCompleteJoinPhase ends the join phase early once every member has
// rejoined (not for a group's first rebalance, which waits its delay).
func (c *Coordinator) maybeCompleteJoinPhase(g *Group, now time.Time) {
	cg := &g.classic
	if cg.state != statePreparingRebalance || cg.previous == stateEmpty || !cg.allJoined() {
		return
	}
	c.completeJoinPhase(g, now)
}

// joinTimerFired: the initial delay or the rebalance timeout has passed.
func (c *Coordinator) joinTimerFired(g *Group, now time.Time) {
	cg := &g.classic
	if cg.state != statePreparingRebalance {
		return
	}
	if cg.initialRemaining >= 0 && cg.previous == stateEmpty {
		if cg.newMemberAdded && cg.initialRemaining != 0 {
			// A member joined during the delay: wait a little more, up to
			// the rebalance timeout.
			cg.newMemberAdded = false
			delay := min(c.cfg.InitialRebalanceDelay, cg.initialRemaining)
			cg.initialRemaining = max(cg.initialRemaining-cg.initialDelay, 0)
			cg.initialDelay = delay
			c.timers.set(timerKey{kind: timerJoin, group: g.id}, now.Add(delay))
			return
		}
	}
	c.completeJoinPhase(g, now)
}

// completeJoinPhase ends the join phase: dynamic members that did not
// rejoin are dropped, the next generation starts, and every parked
// JoinGroup is answered (the leader with the members' metadata).
func (c *Coordinator) completeJoinPhase(g *Group, now time.Time) {
	cg := &g.classic
	c.timers.cancel(timerKey{kind: timerJoin, group: g.id})
	for _, id := range append([]string(nil), cg.order...) {
		m := cg.members[id]
		if !m.awaitingJoin() && m.instanceID == nil {
			c.timers.cancel(timerKey{kind: timerHeartbeat, group: g.id, member: id})
			cg.completeSync(m, &msg.SyncGroupResponse{ErrorCode: int16(kerr.UnknownMemberID)})
			cg.remove(id)
		}
	}
	if len(cg.members) > 0 && !cg.electJoinedLeader() {
		// No member rejoined (only static members are left): wait for
		// their session timeouts to clear them. Never less than a second,
		// so a zero rebalance timeout cannot spin.
		cg.initialRemaining = -1
		c.timers.set(timerKey{kind: timerJoin, group: g.id}, now.Add(max(cg.rebalanceTimeout(), time.Second)))
		return
	}
	cg.generation++
	cg.pendingSync = map[string]bool{}
	if len(cg.members) == 0 {
		cg.protocol = ""
		cg.leader = ""
		g.transition(stateEmpty, now)
		c.persistGroup(g, func(err error) {
			if err != nil {
				c.logger.Warn("could not persist an empty group", "group", g.id, "err", err)
			}
		})
		return
	}
	cg.protocol = cg.selectProtocol()
	g.transition(stateCompletingRebalance, now)
	for _, id := range cg.order {
		m := cg.members[id]
		cg.completeJoin(m, c.joinResponse(g, id, id == cg.leader, false))
		m.isNew = false
		c.timers.set(timerKey{kind: timerHeartbeat, group: g.id, member: id}, now.Add(m.sessionTimeout))
		cg.pendingSync[id] = true
	}
	c.timers.set(timerKey{kind: timerSync, group: g.id}, now.Add(cg.rebalanceTimeout()))
}

// electJoinedLeader keeps the leader if it rejoined, else picks a member
// that did; false when none did.
func (cg *classicGroup) electJoinedLeader() bool {
	if l := cg.members[cg.leader]; l != nil && l.awaitingJoin() {
		return true
	}
	for _, id := range cg.order {
		if cg.members[id].awaitingJoin() {
			cg.leader = id
			return true
		}
	}
	return false
}

func (c *Coordinator) removeSyncExpiration(g *Group) {
	g.classic.pendingSync = map[string]bool{}
	c.timers.cancel(timerKey{kind: timerSync, group: g.id})
}

// expirePendingSync drops members that did not SyncGroup within the
// rebalance timeout after the join phase, and rebalances.
func (c *Coordinator) expirePendingSync(g *Group, now time.Time) {
	cg := &g.classic
	if (cg.state != stateCompletingRebalance && cg.state != stateStable) || len(cg.pendingSync) == 0 {
		return
	}
	for id := range cg.pendingSync {
		if m := cg.members[id]; m != nil {
			c.timers.cancel(timerKey{kind: timerHeartbeat, group: g.id, member: id})
			cg.completeJoin(m, errorJoinResponse(kerr.UnknownMemberID, ""))
			cg.remove(id)
		}
	}
	c.prepareRebalance(g, now)
}

// expireClassicHeartbeat: a member's (or a pending member id's) session
// ran out.
func (c *Coordinator) expireClassicHeartbeat(g *Group, memberID string, now time.Time) {
	cg := &g.classic
	if cg.pendingJoin[memberID] {
		cg.remove(memberID)
		if cg.state == statePreparingRebalance && cg.allJoined() {
			c.completeJoinPhase(g, now)
		}
		return
	}
	m := cg.members[memberID]
	if m == nil {
		return
	}
	if !m.isNew && (m.awaitingJoin() || m.awaitingSync()) {
		// A member with a parked request is waiting on the group, not
		// dead; its session restarts when it is answered.
		return
	}
	c.logger.Debug("group member session expired", "group", g.id, "member", memberID)
	c.removeClassicMember(g, m, now)
}

// removeClassicMember removes a member (expiry, LeaveGroup) and moves the
// group on: a rebalance, or the end of the current join phase.
func (c *Coordinator) removeClassicMember(g *Group, m *classicMember, now time.Time) {
	cg := &g.classic
	cg.completeJoin(m, errorJoinResponse(kerr.UnknownMemberID, ""))
	cg.completeSync(m, &msg.SyncGroupResponse{ErrorCode: int16(kerr.UnknownMemberID)})
	c.timers.cancel(timerKey{kind: timerHeartbeat, group: g.id, member: m.id})
	cg.remove(m.id)
	switch cg.state {
	case stateStable, stateCompletingRebalance:
		c.maybePrepareRebalanceOrCompleteJoin(g, now)
	case statePreparingRebalance:
		if cg.allJoined() {
			c.completeJoinPhase(g, now)
		}
	}
}

// resetAndPropagateAssignment answers every parked SyncGroup with code and
// clears the assignments.
func (c *Coordinator) resetAndPropagateAssignment(g *Group, code kerr.Code, now time.Time) {
	for _, m := range g.classic.members {
		m.assignment = []byte{}
	}
	c.propagateAssignment(g, code, now)
}

func (c *Coordinator) propagateAssignment(g *Group, code kerr.Code, now time.Time) {
	cg := &g.classic
	for _, id := range cg.order {
		m := cg.members[id]
		resp := &msg.SyncGroupResponse{ErrorCode: int16(code), Assignment: m.assignment}
		if code == kerr.None {
			resp.ProtocolType = nullableString(cg.protocolType)
			resp.ProtocolName = nullableString(cg.protocol)
		}
		if resp.Assignment == nil {
			resp.Assignment = []byte{}
		}
		if cg.completeSync(m, resp) {
			c.timers.set(timerKey{kind: timerHeartbeat, group: g.id, member: id}, now.Add(m.sessionTimeout))
		}
	}
}

// SyncGroup serves a SyncGroup request; reply may run later (a follower
// waits for the leader's assignment to be durable).
func (c *Coordinator) SyncGroup(rc Request, req *msg.SyncGroupRequest, reply func(*msg.SyncGroupResponse)) {
	fail := func(code kerr.Code) { reply(&msg.SyncGroupResponse{ErrorCode: int16(code), Assignment: []byte{}}) }
	if code := c.loadingCode(req.GroupId); code != kerr.None {
		fail(code)
		return
	}
	if !ValidGroupID(req.GroupId) {
		fail(kerr.InvalidGroupID)
		return
	}
	g := c.group(req.GroupId)
	if g == nil || g.kind != kindClassic || g.empty() {
		fail(kerr.UnknownMemberID)
		return
	}
	cg := &g.classic
	if code := cg.validateMember(req.MemberId, req.GroupInstanceId); code != kerr.None {
		fail(code)
		return
	}
	if req.GenerationId != cg.generation {
		fail(kerr.IllegalGeneration)
		return
	}
	if inconsistent(req.ProtocolType, cg.protocolType) || inconsistent(req.ProtocolName, cg.protocol) {
		fail(kerr.InconsistentGroupProtocol)
		return
	}
	m := cg.members[req.MemberId]
	switch cg.state {
	case statePreparingRebalance:
		fail(kerr.RebalanceInProgress)
	case stateCompletingRebalance:
		cg.completeSync(m, &msg.SyncGroupResponse{ErrorCode: int16(kerr.RebalanceInProgress), Assignment: []byte{}})
		m.syncReply = reply
		c.removePendingSync(g, m.id)
		if cg.leader == m.id {
			c.leaderSync(g, req, rc.Now)
		}
	case stateStable:
		c.removePendingSync(g, m.id)
		assignment := m.assignment
		if assignment == nil {
			assignment = []byte{}
		}
		reply(&msg.SyncGroupResponse{ProtocolType: nullableString(cg.protocolType), ProtocolName: nullableString(cg.protocol), Assignment: assignment})
	default:
		fail(kerr.UnknownMemberID)
	}
}

// inconsistent: a protocol type or name given in SyncGroup v5+ that is not
// the group's.
func inconsistent(given *string, have string) bool {
	return given != nil && have != "" && *given != have
}

func (c *Coordinator) removePendingSync(g *Group, memberID string) {
	cg := &g.classic
	delete(cg.pendingSync, memberID)
	if len(cg.pendingSync) == 0 {
		c.timers.cancel(timerKey{kind: timerSync, group: g.id})
	}
}

// leaderSync persists the leader's assignment; once durable, the group is
// Stable and every parked SyncGroup gets its member's assignment.
func (c *Coordinator) leaderSync(g *Group, req *msg.SyncGroupRequest, now time.Time) {
	cg := &g.classic
	assignment := make(map[string][]byte, len(cg.members))
	for _, a := range req.Assignments {
		if cg.members[a.MemberId] != nil {
			assignment[a.MemberId] = copyBytes(a.Assignment)
		}
	}
	saved := make(map[string][]byte, len(cg.members))
	for id, m := range cg.members {
		saved[id] = m.assignment
		m.assignment = assignment[id]
		if m.assignment == nil {
			m.assignment = []byte{}
		}
	}
	value := encodeGroup(g)
	for id, m := range cg.members {
		m.assignment = saved[id]
	}
	generation := cg.generation
	c.write(g.partition, []Record{{Key: groupKey(g.id), Value: value}}, func(err error) {
		if g.dead || cg.state != stateCompletingRebalance || cg.generation != generation {
			return // the group moved on while the write was in flight
		}
		if err != nil {
			c.resetAndPropagateAssignment(g, appendError(err), now)
			c.maybePrepareRebalanceOrCompleteJoin(g, now)
			return
		}
		for id, m := range cg.members {
			m.assignment = assignment[id]
			if m.assignment == nil {
				m.assignment = []byte{}
			}
		}
		c.propagateAssignment(g, kerr.None, now)
		g.transition(stateStable, now)
	})
}

// Heartbeat serves a classic Heartbeat.
func (c *Coordinator) Heartbeat(rc Request, req *msg.HeartbeatRequest) *msg.HeartbeatResponse {
	resp := &msg.HeartbeatResponse{}
	if code := c.loadingCode(req.GroupId); code != kerr.None {
		resp.ErrorCode = int16(code)
		return resp
	}
	if !ValidGroupID(req.GroupId) {
		resp.ErrorCode = int16(kerr.InvalidGroupID)
		return resp
	}
	g := c.group(req.GroupId)
	if g == nil || g.kind != kindClassic {
		resp.ErrorCode = int16(kerr.UnknownMemberID)
		return resp
	}
	cg := &g.classic
	if code := cg.validateMember(req.MemberId, req.GroupInstanceId); code != kerr.None {
		resp.ErrorCode = int16(code)
		return resp
	}
	if req.GenerationId != cg.generation {
		resp.ErrorCode = int16(kerr.IllegalGeneration)
		return resp
	}
	m := cg.members[req.MemberId]
	switch cg.state {
	case statePreparingRebalance:
		c.timers.set(timerKey{kind: timerHeartbeat, group: g.id, member: m.id}, rc.Now.Add(m.sessionTimeout))
		resp.ErrorCode = int16(kerr.RebalanceInProgress)
	case stateCompletingRebalance, stateStable:
		c.timers.set(timerKey{kind: timerHeartbeat, group: g.id, member: m.id}, rc.Now.Add(m.sessionTimeout))
	default:
		resp.ErrorCode = int16(kerr.UnknownMemberID)
	}
	return resp
}

// LeaveGroup serves LeaveGroup: one member (v0-2) or a batch (v3+), by
// member id or, for static members, by group.instance.id.
func (c *Coordinator) LeaveGroup(rc Request, req *msg.LeaveGroupRequest) *msg.LeaveGroupResponse {
	resp := &msg.LeaveGroupResponse{}
	members := req.Members
	if rc.Version < 3 {
		members = []msg.LeaveGroupRequestMemberIdentity{{MemberId: req.MemberId}}
	}
	top := kerr.None
	switch {
	case c.loadingCode(req.GroupId) != kerr.None:
		top = kerr.CoordinatorLoadInProgress
	case !ValidGroupID(req.GroupId):
		top = kerr.InvalidGroupID
	}
	g := c.group(req.GroupId)
	if top == kerr.None && (g == nil || g.kind != kindClassic) {
		if g != nil && g.kind == kindConsumer {
			top = kerr.None // answered per member below
		} else {
			top = kerr.UnknownMemberID
		}
	}
	if top != kerr.None {
		resp.ErrorCode = int16(top)
		return resp
	}
	removed := 0
	for _, lm := range members {
		out := msg.LeaveGroupResponseMemberResponse{MemberId: lm.MemberId, GroupInstanceId: lm.GroupInstanceId}
		out.ErrorCode = int16(c.leaveOne(g, lm, rc.Now, &removed))
		resp.Members = append(resp.Members, out)
	}
	if g.kind == kindClassic && removed > 0 {
		switch g.classic.state {
		case stateStable, stateCompletingRebalance:
			c.maybePrepareRebalanceOrCompleteJoin(g, rc.Now)
		case statePreparingRebalance:
			c.maybeCompleteJoinPhase(g, rc.Now)
		}
	}
	if rc.Version < 3 {
		resp.ErrorCode = resp.Members[0].ErrorCode
		resp.Members = nil
	}
	return resp
}

func (c *Coordinator) leaveOne(g *Group, lm msg.LeaveGroupRequestMemberIdentity, now time.Time, removed *int) kerr.Code {
	if g.kind == kindConsumer {
		return kerr.UnknownMemberID // consumer-protocol members leave by heartbeat
	}
	cg := &g.classic
	remove := func(id string) {
		m := cg.members[id]
		cg.completeJoin(m, errorJoinResponse(kerr.UnknownMemberID, ""))
		cg.completeSync(m, &msg.SyncGroupResponse{ErrorCode: int16(kerr.UnknownMemberID)})
		c.timers.cancel(timerKey{kind: timerHeartbeat, group: g.id, member: id})
		cg.remove(id)
		*removed++
	}
	switch {
	case lm.MemberId == "":
		// Administrative removal of a static member by instance id.
		if lm.GroupInstanceId == nil {
			return kerr.UnknownMemberID
		}
		id, ok := cg.static[*lm.GroupInstanceId]
		if !ok {
			return kerr.UnknownMemberID
		}
		remove(id)
	case cg.pendingJoin[lm.MemberId]:
		c.timers.cancel(timerKey{kind: timerHeartbeat, group: g.id, member: lm.MemberId})
		cg.remove(lm.MemberId)
	default:
		if code := cg.validateMember(lm.MemberId, lm.GroupInstanceId); code != kerr.None {
			return code
		}
		remove(lm.MemberId)
	}
	return kerr.None
}

// restoreTimers gives the members of a group loaded from the log a fresh
// session.
func (c *Coordinator) restoreTimers(g *Group, now time.Time) {
	switch g.kind {
	case kindClassic:
		for id, m := range g.classic.members {
			c.timers.set(timerKey{kind: timerHeartbeat, group: g.id, member: id}, now.Add(m.sessionTimeout))
		}
	case kindConsumer:
		c.restoreConsumerTimers(g, now)
	}
}

// convertToClassic turns an empty consumer group into an empty classic
// group, keeping its offsets.
func (c *Coordinator) convertToClassic(g *Group, now time.Time) {
	for id := range g.consumer.members {
		c.timers.cancel(timerKey{kind: timerConsumerSession, group: g.id, member: id})
		c.timers.cancel(timerKey{kind: timerConsumerRebalance, group: g.id, member: id})
	}
	g.kind = kindClassic
	g.consumer = nil
	g.classic = classicGroup{}
	g.classic.init()
	g.stateTime = now
}
