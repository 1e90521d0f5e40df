package group

import (
	"sort"
	"time"

	"github.com/sluice-broker/sluice/wire"
)

// A consumer group (KIP-848): members heartbeat with their subscription
// and owned partitions; the coordinator computes a target assignment with a
// server-side assignor whenever the group epoch moves, and reconciles each
// member towards it one step at a time: partitions are revoked before they
// are given to another member, and a member's epoch advances only when it
// has nothing left to revoke.

// consumerState is a consumer group's state for describe and list.
type consumerState int8

const (
	consumerEmpty consumerState = iota
	consumerAssigning
	consumerReconciling
	consumerStable
)

func (s consumerState) String() string {
	switch s {
	case consumerEmpty:
		return "Empty"
	case consumerAssigning:
		return "Assigning"
	case consumerReconciling:
		return "Reconciling"
	}
	return "Stable"
}

// memberState is where a member is in its reconciliation.
type memberState int8

const (
	memberStable               memberState = 0 // has its target assignment for its epoch
	memberUnrevokedPartitions  memberState = 1 // must give up partitions before moving on
	memberUnreleasedPartitions memberState = 2 // waits for partitions others still own
)

func (s memberState) String() string {
	switch s {
	case memberUnrevokedPartitions:
		return "UNREVOKED_PARTITIONS"
	case memberUnreleasedPartitions:
		return "UNRELEASED_PARTITIONS"
	}
	return "STABLE"
}

// assignment maps topic ids to sorted partitions.
type assignment map[[16]byte][]int32

func (a assignment) clone() assignment {
	out := make(assignment, len(a))
	for t, ps := range a {
		out[t] = append([]int32(nil), ps...)
	}
	return out
}

func (a assignment) count() int {
	n := 0
	for _, ps := range a {
		n += len(ps)
	}
	return n
}

func (a assignment) has(topic [16]byte, p int32) bool {
	for _, q := range a[topic] {
		if q == p {
			return true
		}
	}
	return false
}

func (a assignment) equal(b assignment) bool {
	if len(a) != len(b) {
		return false
	}
	for t, ps := range a {
		qs, ok := b[t]
		if !ok || len(ps) != len(qs) {
			return false
		}
		for i := range ps {
			if ps[i] != qs[i] {
				return false
			}
		}
	}
	return true
}

func (a assignment) add(topic [16]byte, p int32) {
	ps := a[topic]
	i := sort.Search(len(ps), func(i int) bool { return ps[i] >= p })
	if i < len(ps) && ps[i] == p {
		return
	}
	ps = append(ps, 0)
	copy(ps[i+1:], ps[i:])
	ps[i] = p
	a[topic] = ps
}

func (a assignment) sortedTopics() [][16]byte {
	ts := make([][16]byte, 0, len(a))
	for t := range a {
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return string(ts[i][:]) < string(ts[j][:]) })
	return ts
}

// consumerMember is a member of a consumer group.
type consumerMember struct {
	id               string
	instanceID       *string
	rackID           *string
	clientID         string
	clientHost       string
	rebalanceTimeout time.Duration
	serverAssignor   *string
	topics           []string // subscribed names, sorted
	regex            *string  // subscribed pattern (RE2)

	epoch, previousEpoch int32
	state                memberState
	assigned             assignment // what the member owns (its answer's assignment)
	pendingRevocation    assignment // what it must give up first
	target               assignment // its share of the target assignment
}

// consumerGroup is the KIP-848 state of a group.
type consumerGroup struct {
	groupEpoch      int32
	assignmentEpoch int32
	members         map[string]*consumerMember
	static          map[string]string // instance id -> member id

	// Derived, not persisted: the partitions of the subscribed topics as
	// of the catalogue version it was computed at, and who owns what.
	subscription        map[string]subscribedTopic
	subscriptionVersion uint64
	subscriptionKnown   bool
	owners              map[[16]byte]map[int32]int32 // topic -> partition -> owner's epoch
}

type subscribedTopic struct {
	id         [16]byte
	partitions int32
}

func newConsumerGroup() *consumerGroup {
	return &consumerGroup{members: map[string]*consumerMember{}, static: map[string]string{}, owners: map[[16]byte]map[int32]int32{}}
}

func (cg *consumerGroup) state() consumerState {
	switch {
	case len(cg.members) == 0:
		return consumerEmpty
	case cg.assignmentEpoch < cg.groupEpoch:
		return consumerAssigning
	}
	for _, m := range cg.members {
		if m.epoch != cg.assignmentEpoch || m.state != memberStable {
			return consumerReconciling
		}
	}
	return consumerStable
}

func (cg *consumerGroup) sortedMembers() []*consumerMember {
	out := make([]*consumerMember, 0, len(cg.members))
	for _, m := range cg.members {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// rebuildOwners recomputes which member epoch owns each partition, from
// the members' assigned and pending-revocation partitions.
func (cg *consumerGroup) rebuildOwners() {
	cg.owners = map[[16]byte]map[int32]int32{}
	for _, m := range cg.members {
		cg.addOwner(m.assigned, m.epoch)
		cg.addOwner(m.pendingRevocation, m.epoch)
	}
}

func (cg *consumerGroup) addOwner(a assignment, epoch int32) {
	for t, ps := range a {
		o := cg.owners[t]
		if o == nil {
			o = map[int32]int32{}
			cg.owners[t] = o
		}
		for _, p := range ps {
			o[p] = epoch
		}
	}
}

// ownerEpoch is the epoch of the member owning a partition, -1 if free.
func (cg *consumerGroup) ownerEpoch(topic [16]byte, p int32) int32 {
	if e, ok := cg.owners[topic][p]; ok {
		return e
	}
	return -1
}

func appendAssignment(b []byte, a assignment) []byte {
	ts := a.sortedTopics()
	b = wire.AppendInt32(b, int32(len(ts)))
	for _, t := range ts {
		b = wire.AppendUUID(b, t)
		b = wire.AppendInt32(b, int32(len(a[t])))
		for _, p := range a[t] {
			b = wire.AppendInt32(b, p)
		}
	}
	return b
}

func readAssignment(r *wire.Reader) assignment {
	a := assignment{}
	n := readCount(r, 16+4)
	for range n {
		t := r.UUID()
		np := readCount(r, 4)
		ps := make([]int32, 0, np)
		for range np {
			ps = append(ps, r.Int32())
		}
		if r.Err() != nil {
			return a
		}
		sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
		a[t] = ps
	}
	return a
}

// appendTo encodes the consumer body of a group record.
func (cg *consumerGroup) appendTo(b []byte) []byte {
	b = wire.AppendInt32(b, cg.groupEpoch)
	b = wire.AppendInt32(b, cg.assignmentEpoch)
	ms := cg.sortedMembers()
	b = wire.AppendInt32(b, int32(len(ms)))
	for _, m := range ms {
		b = wire.AppendString(b, m.id)
		b = wire.AppendNullableString(b, m.instanceID)
		b = wire.AppendNullableString(b, m.rackID)
		b = wire.AppendString(b, m.clientID)
		b = wire.AppendString(b, m.clientHost)
		b = wire.AppendInt32(b, int32(m.rebalanceTimeout.Milliseconds()))
		b = wire.AppendNullableString(b, m.serverAssignor)
		b = wire.AppendInt32(b, int32(len(m.topics)))
		for _, t := range m.topics {
			b = wire.AppendString(b, t)
		}
		b = wire.AppendNullableString(b, m.regex)
		b = wire.AppendInt32(b, m.epoch)
		b = wire.AppendInt32(b, m.previousEpoch)
		b = wire.AppendInt8(b, int8(m.state))
		b = appendAssignment(b, m.assigned)
		b = appendAssignment(b, m.pendingRevocation)
		b = appendAssignment(b, m.target)
	}
	return b
}

// readFrom decodes the consumer body of a group record.
func (cg *consumerGroup) readFrom(r *wire.Reader) {
	cg.groupEpoch = r.Int32()
	cg.assignmentEpoch = r.Int32()
	n := readCount(r, 2+2+2+2+2+4+2+4+2+4+4+1+12)
	for range n {
		m := &consumerMember{id: r.String(), instanceID: r.NullableString(), rackID: r.NullableString(), clientID: r.String(), clientHost: r.String()}
		m.rebalanceTimeout = time.Duration(r.Int32()) * time.Millisecond
		m.serverAssignor = r.NullableString()
		nt := readCount(r, 2)
		for range nt {
			m.topics = append(m.topics, r.String())
		}
		m.regex = r.NullableString()
		m.epoch = r.Int32()
		m.previousEpoch = r.Int32()
		m.state = memberState(r.Int8())
		m.assigned = readAssignment(r)
		m.pendingRevocation = readAssignment(r)
		m.target = readAssignment(r)
		if r.Err() != nil {
			return
		}
		cg.members[m.id] = m
		if m.instanceID != nil {
			cg.static[*m.instanceID] = m.id
		}
	}
	cg.rebuildOwners()
}
