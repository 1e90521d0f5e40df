package group

import (
	"sort"
	"time"

	"github.com/sluice-broker/sluice/wire"
	"github.com/sluice-broker/sluice/wire/msg"
)

// groupKind is the protocol a group speaks.
type groupKind int8

const (
	kindClassic  groupKind = 0 // JoinGroup/SyncGroup, or a simple group that only stores offsets
	kindConsumer groupKind = 1 // KIP-848 ConsumerGroupHeartbeat
)

func (k groupKind) String() string {
	if k == kindConsumer {
		return "consumer"
	}
	return "classic"
}

type topicPartition struct {
	topic     string
	partition int32
}

// Group is one group: its committed offsets and the state of its protocol.
type Group struct {
	id        string
	partition int32 // __consumer_offsets partition
	kind      groupKind
	offsets   map[topicPartition]committed
	// txnOffsets are TxnOffsetCommit's offsets, by producer id, until the
	// producer's transaction commits (they become offsets) or aborts.
	txnOffsets map[int64]map[pendingOffset]committed
	// pendingCommits counts offset commits in flight, so retention does
	// not delete a group whose commit is about to land.
	pendingCommits int
	stateTime      time.Time // when the group entered its current state
	dead           bool      // removed; callbacks still holding it do nothing

	classic  classicGroup
	consumer *consumerGroup
}

func newGroupValue(id string, kind groupKind) *Group {
	g := &Group{id: id, kind: kind, offsets: map[topicPartition]committed{}}
	g.classic.init()
	if kind == kindConsumer {
		g.consumer = newConsumerGroup()
	}
	return g
}

// empty reports whether the group has no members.
func (g *Group) empty() bool {
	if g.kind == kindConsumer {
		return len(g.consumer.members) == 0
	}
	return g.classic.state == stateEmpty
}

// stateName is the state DescribeGroups and ListGroups report.
func (g *Group) stateName() string {
	if g.kind == kindConsumer {
		return g.consumer.state().String()
	}
	return g.classic.state.String()
}

func (g *Group) protocolType() string {
	if g.kind == kindConsumer {
		return "consumer"
	}
	return g.classic.protocolType
}

func (g *Group) sortedOffsets() []topicPartition {
	tps := make([]topicPartition, 0, len(g.offsets))
	for tp := range g.offsets {
		tps = append(tps, tp)
	}
	sort.Slice(tps, func(i, j int) bool {
		if tps[i].topic != tps[j].topic {
			return tps[i].topic < tps[j].topic
		}
		return tps[i].partition < tps[j].partition
	})
	return tps
}

// classicState is a classic group's state (Kafka's ClassicGroupState).
type classicState int8

const (
	stateEmpty classicState = iota
	statePreparingRebalance
	stateCompletingRebalance
	stateStable
	stateDead
)

func (s classicState) String() string {
	switch s {
	case stateEmpty:
		return "Empty"
	case statePreparingRebalance:
		return "PreparingRebalance"
	case stateCompletingRebalance:
		return "CompletingRebalance"
	case stateStable:
		return "Stable"
	}
	return "Dead"
}

// protocol is one (name, metadata) a member supports, in its preference
// order.
type protocol struct {
	name     string
	metadata []byte
}

// classicMember is a member of a classic group.
type classicMember struct {
	id               string
	instanceID       *string
	clientID         string
	clientHost       string
	rebalanceTimeout time.Duration
	sessionTimeout   time.Duration
	protocolType     string
	protocols        []protocol
	assignment       []byte

	// A parked JoinGroup (nil when none) and the version it came with.
	joinReply   func(*msg.JoinGroupResponse)
	joinVersion int16
	// A parked SyncGroup.
	syncReply func(*msg.SyncGroupResponse)
	// isNew is set from its first JoinGroup until the join phase ends: a
	// new member can expire while its JoinGroup is parked.
	isNew bool
}

func (m *classicMember) awaitingJoin() bool { return m.joinReply != nil }
func (m *classicMember) awaitingSync() bool { return m.syncReply != nil }

// metadataFor returns the member's metadata for a protocol.
func (m *classicMember) metadataFor(name string) ([]byte, bool) {
	for _, p := range m.protocols {
		if p.name == name {
			return p.metadata, true
		}
	}
	return nil, false
}

// matches reports whether protocols are exactly what the member joined with.
func (m *classicMember) matches(protocols []protocol) bool {
	if len(protocols) != len(m.protocols) {
		return false
	}
	for i := range protocols {
		if protocols[i].name != m.protocols[i].name || !sameBytes(protocols[i].metadata, m.protocols[i].metadata) {
			return false
		}
	}
	return true
}

// vote is the member's most preferred protocol among candidates.
func (m *classicMember) vote(candidates map[string]bool) string {
	for _, p := range m.protocols {
		if candidates[p.name] {
			return p.name
		}
	}
	return ""
}

// classicGroup is the classic protocol's state of a group.
type classicGroup struct {
	state, previous classicState
	protocolType    string // "" for a simple group (offsets only)
	protocol        string // selected protocol of the generation; "" none
	generation      int32
	leader          string // "" none

	members     map[string]*classicMember
	order       []string          // member ids in join order (Kafka's LinkedHashMap)
	static      map[string]string // group.instance.id -> member id
	pendingJoin map[string]bool   // ids handed out with MEMBER_ID_REQUIRED
	pendingSync map[string]bool   // members yet to SyncGroup this generation
	supported   map[string]int    // protocol name -> members supporting it
	awaiting    int               // members with a parked JoinGroup

	// Initial rebalance delay (group.initial.rebalance.delay.ms) state.
	newMemberAdded   bool
	initialDelay     time.Duration
	initialRemaining time.Duration
}

func (cg *classicGroup) init() {
	cg.members = map[string]*classicMember{}
	cg.static = map[string]string{}
	cg.pendingJoin = map[string]bool{}
	cg.pendingSync = map[string]bool{}
	cg.supported = map[string]int{}
}

// add makes m a member (a parked JoinGroup may come with it).
func (cg *classicGroup) add(m *classicMember) {
	if len(cg.members) == 0 {
		cg.protocolType = m.protocolType
	}
	if m.instanceID != nil {
		cg.static[*m.instanceID] = m.id
	}
	if cg.leader == "" {
		cg.leader = m.id
	}
	cg.members[m.id] = m
	cg.order = append(cg.order, m.id)
	for _, p := range m.protocols {
		cg.supported[p.name]++
	}
	if m.awaitingJoin() {
		cg.awaiting++
	}
	delete(cg.pendingJoin, m.id)
}

// remove drops a member (or a pending member id) without a rebalance.
func (cg *classicGroup) remove(id string) {
	if m, ok := cg.members[id]; ok {
		for _, p := range m.protocols {
			cg.supported[p.name]--
			if cg.supported[p.name] == 0 {
				delete(cg.supported, p.name)
			}
		}
		if m.awaitingJoin() {
			cg.awaiting--
		}
		if m.instanceID != nil && cg.static[*m.instanceID] == id {
			delete(cg.static, *m.instanceID)
		}
		delete(cg.members, id)
		for i, o := range cg.order {
			if o == id {
				cg.order = append(cg.order[:i], cg.order[i+1:]...)
				break
			}
		}
	}
	if cg.leader == id {
		cg.leader = ""
		if len(cg.order) > 0 {
			cg.leader = cg.order[0]
		}
	}
	delete(cg.pendingJoin, id)
	delete(cg.pendingSync, id)
}

// setProtocols replaces a member's protocols, keeping the counts right.
func (cg *classicGroup) setProtocols(m *classicMember, protocols []protocol) {
	for _, p := range m.protocols {
		cg.supported[p.name]--
		if cg.supported[p.name] == 0 {
			delete(cg.supported, p.name)
		}
	}
	m.protocols = protocols
	for _, p := range m.protocols {
		cg.supported[p.name]++
	}
}

// setJoinReply parks (or, with nil, clears) a member's JoinGroup.
func (cg *classicGroup) setJoinReply(m *classicMember, reply func(*msg.JoinGroupResponse), version int16) {
	if m.awaitingJoin() && reply == nil {
		cg.awaiting--
	} else if !m.awaitingJoin() && reply != nil {
		cg.awaiting++
	}
	m.joinReply = reply
	m.joinVersion = version
}

// completeJoin answers a member's parked JoinGroup, if any.
func (cg *classicGroup) completeJoin(m *classicMember, resp *msg.JoinGroupResponse) bool {
	reply := m.joinReply
	if reply == nil {
		return false
	}
	cg.setJoinReply(m, nil, 0)
	reply(resp)
	return true
}

// completeSync answers a member's parked SyncGroup, if any.
func (cg *classicGroup) completeSync(m *classicMember, resp *msg.SyncGroupResponse) bool {
	reply := m.syncReply
	if reply == nil {
		return false
	}
	m.syncReply = nil
	reply(resp)
	return true
}

// allJoined: every member has a parked JoinGroup and no MEMBER_ID_REQUIRED
// answer is outstanding.
func (cg *classicGroup) allJoined() bool {
	return len(cg.members) == cg.awaiting && len(cg.pendingJoin) == 0
}

// rebalanceTimeout is the largest of the members' rebalance timeouts.
func (cg *classicGroup) rebalanceTimeout() time.Duration {
	var d time.Duration
	for _, m := range cg.members {
		d = max(d, m.rebalanceTimeout)
	}
	return d
}

// supportsProtocols: a joining member must share the protocol type and
// support a protocol every current member supports.
func (cg *classicGroup) supportsProtocols(protocolType string, protocols []protocol) bool {
	if cg.state == stateEmpty {
		return protocolType != "" && len(protocols) > 0
	}
	if cg.protocolType != protocolType {
		return false
	}
	for _, p := range protocols {
		if cg.supported[p.name] == len(cg.members) {
			return true
		}
	}
	return false
}

// selectProtocol picks the protocol every member supports that most members
// prefer (ties go to the leader's preference).
func (cg *classicGroup) selectProtocol() string {
	candidates := map[string]bool{}
	for name, n := range cg.supported {
		if n == len(cg.members) {
			candidates[name] = true
		}
	}
	votes := map[string]int{}
	for _, m := range cg.members {
		votes[m.vote(candidates)]++
	}
	best, bestVotes := "", -1
	// Deterministic order: the leader's preference list, then the rest.
	var order []string
	if l, ok := cg.members[cg.leader]; ok {
		for _, p := range l.protocols {
			order = append(order, p.name)
		}
	}
	names := make([]string, 0, len(votes))
	for n := range votes {
		names = append(names, n)
	}
	sort.Strings(names)
	order = append(order, names...)
	for _, n := range order {
		if v, ok := votes[n]; ok && n != "" && v > bestVotes {
			best, bestVotes = n, v
		}
	}
	return best
}

// transition moves to s, remembering the previous state and the time.
func (g *Group) transition(s classicState, now time.Time) {
	g.classic.previous = g.classic.state
	g.classic.state = s
	g.stateTime = now
}

// joinMembers is the member list the leader receives.
func (cg *classicGroup) joinMembers() []msg.JoinGroupResponseMember {
	out := make([]msg.JoinGroupResponseMember, 0, len(cg.members))
	for _, id := range cg.order {
		m := cg.members[id]
		md, _ := m.metadataFor(cg.protocol)
		out = append(out, msg.JoinGroupResponseMember{MemberId: m.id, GroupInstanceId: m.instanceID, Metadata: md})
	}
	return out
}

// appendTo encodes the classic body of a group record.
func (cg *classicGroup) appendTo(b []byte) []byte {
	b = wire.AppendString(b, cg.protocolType)
	b = wire.AppendInt32(b, cg.generation)
	b = wire.AppendNullableString(b, nullableString(cg.protocol))
	b = wire.AppendNullableString(b, nullableString(cg.leader))
	b = wire.AppendInt32(b, int32(len(cg.order)))
	for _, id := range cg.order {
		m := cg.members[id]
		b = wire.AppendString(b, m.id)
		b = wire.AppendNullableString(b, m.instanceID)
		b = wire.AppendString(b, m.clientID)
		b = wire.AppendString(b, m.clientHost)
		b = wire.AppendInt32(b, int32(m.rebalanceTimeout.Milliseconds()))
		b = wire.AppendInt32(b, int32(m.sessionTimeout.Milliseconds()))
		b = wire.AppendInt32(b, int32(len(m.protocols)))
		for _, p := range m.protocols {
			b = wire.AppendString(b, p.name)
			b = wire.AppendBytes(b, p.metadata)
		}
		b = wire.AppendBytes(b, m.assignment)
	}
	return b
}

// readFrom decodes the classic body of a group record. A group with
// members comes back Stable in its generation; without, Empty.
func (cg *classicGroup) readFrom(r *wire.Reader) {
	cg.protocolType = r.String()
	cg.generation = r.Int32()
	if p := r.NullableString(); p != nil {
		cg.protocol = *p
	}
	var leader string
	if l := r.NullableString(); l != nil {
		leader = *l
	}
	n := readCount(r, 2+2+2+2+4+4+4+4)
	for range n {
		m := &classicMember{id: r.String(), instanceID: r.NullableString(), clientID: r.String(), clientHost: r.String()}
		m.rebalanceTimeout = time.Duration(r.Int32()) * time.Millisecond
		m.sessionTimeout = time.Duration(r.Int32()) * time.Millisecond
		m.protocolType = cg.protocolType
		np := readCount(r, 2+4)
		for range np {
			m.protocols = append(m.protocols, protocol{name: r.String(), metadata: copyBytes(r.Bytes())})
		}
		m.assignment = copyBytes(r.Bytes())
		if r.Err() != nil {
			return
		}
		cg.add(m)
	}
	if leader != "" && cg.members[leader] != nil {
		cg.leader = leader
	}
	if len(cg.members) > 0 {
		cg.state = stateStable
	} else {
		cg.state = stateEmpty
		cg.leader = ""
	}
}
