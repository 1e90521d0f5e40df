package group

import (
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

// kipClient models a KIP-848 consumer as franz-go and the Java client
// behave: it adopts the assignment of each answer (revoking what left it
// at once), reports what it owns when that changed (a full request) and
// sends a keepalive otherwise.
type kipClient struct {
	h        *harness
	id       string
	group    string
	epoch    int32
	owned    assignment
	lastSent assignment // what the last full request reported
	topics   []string
	regex    *string
	assignor *string
	instance *string
	fenced   int
}

func (h *harness) kipMember(id string, topics ...string) *kipClient {
	return &kipClient{h: h, id: id, group: "cg", owned: assignment{}, topics: topics}
}

func (k *kipClient) request() *msg.ConsumerGroupHeartbeatRequest {
	req := &msg.ConsumerGroupHeartbeatRequest{GroupId: k.group, MemberId: k.id, MemberEpoch: k.epoch, InstanceId: k.instance, RebalanceTimeoutMs: -1}
	if k.epoch == 0 || k.lastSent == nil || !k.lastSent.equal(k.owned) {
		req.RebalanceTimeoutMs = 30000
		req.SubscribedTopicNames = k.topics
		req.SubscribedTopicRegex = k.regex
		req.ServerAssignor = k.assignor
		req.TopicPartitions = []msg.ConsumerGroupHeartbeatRequestTopicPartitions{}
		for _, t := range k.owned.sortedTopics() {
			req.TopicPartitions = append(req.TopicPartitions, msg.ConsumerGroupHeartbeatRequestTopicPartitions{TopicId: t, Partitions: slices.Clone(k.owned[t])})
		}
		if req.SubscribedTopicNames == nil && req.SubscribedTopicRegex == nil {
			req.SubscribedTopicNames = []string{}
		}
		k.lastSent = k.owned.clone()
	}
	return req
}

// beat sends one heartbeat and applies the answer once it is durable.
func (k *kipClient) beat() *msg.ConsumerGroupHeartbeatResponse {
	k.h.t.Helper()
	a := &answer[*msg.ConsumerGroupHeartbeatResponse]{}
	k.h.c.ConsumerHeartbeat(k.h.rc(1), k.request(), a.reply)
	k.h.log.flush()
	resp := a.wait(k.h.t, "consumer heartbeat "+k.id)
	switch kerr.Code(resp.ErrorCode) {
	case kerr.None:
	case kerr.FencedMemberEpoch, kerr.UnknownMemberID:
		k.fenced++
		k.epoch, k.owned, k.lastSent = 0, assignment{}, nil
		return resp
	default:
		k.h.t.Fatalf("%s heartbeat: %v %v", k.id, kerr.Code(resp.ErrorCode), deref(resp.ErrorMessage))
	}
	k.epoch = resp.MemberEpoch
	if resp.Assignment != nil {
		owned := assignment{}
		for _, tp := range resp.Assignment.TopicPartitions {
			for _, p := range tp.Partitions {
				owned.add(tp.TopicId, p)
			}
		}
		k.owned = owned
	}
	return resp
}

func (k *kipClient) leave() {
	req := &msg.ConsumerGroupHeartbeatRequest{GroupId: k.group, MemberId: k.id, MemberEpoch: epochLeave, InstanceId: k.instance, RebalanceTimeoutMs: -1}
	if k.instance != nil {
		req.MemberEpoch = epochStaticLeave
	}
	a := &answer[*msg.ConsumerGroupHeartbeatResponse]{}
	k.h.c.ConsumerHeartbeat(k.h.rc(1), req, a.reply)
	k.h.log.flush()
	if r := a.wait(k.h.t, "leave"); r.ErrorCode != 0 {
		k.h.t.Fatalf("leave: %v", kerr.Code(r.ErrorCode))
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// converge heartbeats every member round-robin until no answer changes
// anything and the group is Stable; it checks on the way that no
// partition is ever owned by two members.
func converge(t *testing.T, members ...*kipClient) {
	t.Helper()
	for round := 0; round < 30; round++ {
		for _, m := range members {
			m.beat()
			checkExclusive(t, members)
			m.h.advance(100 * time.Millisecond)
		}
		g := members[0].h.c.group(members[0].group)
		if g.consumer.state() == consumerStable {
			stable := true
			for _, m := range members {
				if !m.owned.equal(g.consumer.members[m.id].assigned) {
					stable = false
				}
			}
			if stable {
				return
			}
		}
	}
	t.Fatalf("the group does not converge: %s", describeOwned(members))
}

func checkExclusive(t *testing.T, members []*kipClient) {
	t.Helper()
	seen := map[tpID]string{}
	for _, m := range members {
		for tid, ps := range m.owned {
			for _, p := range ps {
				if other, ok := seen[tpID{tid, p}]; ok {
					t.Fatalf("partition %d owned by %s and %s: %s", p, other, m.id, describeOwned(members))
				}
				seen[tpID{tid, p}] = m.id
			}
		}
	}
}

func describeOwned(members []*kipClient) string {
	s := ""
	for _, m := range members {
		var ps []int32
		for _, q := range m.owned {
			ps = append(ps, q...)
		}
		slices.Sort(ps)
		s += fmt.Sprintf("%s(epoch %d)=%v ", m.id, m.epoch, ps)
	}
	return s
}

func ownedCount(members ...*kipClient) int {
	n := 0
	for _, m := range members {
		n += m.owned.count()
	}
	return n
}

func TestConsumerGroupJoinLeaveConverge(t *testing.T) {
	h := newHarness(t, testConfig())
	a, b, c := h.kipMember("a", "t"), h.kipMember("b", "t"), h.kipMember("c", "t")
	converge(t, a, b, c)
	if ownedCount(a, b, c) != 6 || a.owned.count() != 2 {
		t.Fatalf("3 members on 6 partitions: %s", describeOwned([]*kipClient{a, b, c}))
	}
	epoch := h.c.group("cg").consumer.groupEpoch
	c.leave()
	if h.c.group("cg").consumer.groupEpoch <= epoch {
		t.Fatal("a leave bumps the group epoch")
	}
	converge(t, a, b)
	if ownedCount(a, b) != 6 || a.owned.count() != 3 {
		t.Fatalf("after a leave: %s", describeOwned([]*kipClient{a, b}))
	}
	// A new member takes partitions only once their owners released them.
	d := h.kipMember("d", "t")
	converge(t, a, b, d)
	if ownedCount(a, b, d) != 6 || d.owned.count() != 2 {
		t.Fatalf("after a join: %s", describeOwned([]*kipClient{a, b, d}))
	}
}

func TestConsumerGroupSessionExpiry(t *testing.T) {
	cfg := testConfig()
	cfg.ConsumerSessionTimeout = 5 * time.Second
	h := newHarness(t, cfg)
	a, b := h.kipMember("a", "t"), h.kipMember("b", "t")
	converge(t, a, b)
	for range 8 { // b goes silent
		h.advance(time.Second)
		a.beat()
	}
	if h.c.group("cg").consumer.members["b"] != nil {
		t.Fatal("a silent member must be fenced after the session timeout")
	}
	converge(t, a)
	if a.owned.count() != 6 {
		t.Fatalf("the survivor takes everything: %s", describeOwned([]*kipClient{a}))
	}
	b.beat()
	if b.fenced == 0 {
		t.Fatal("the expired member learns it was fenced")
	}
	converge(t, a, b)
}

func TestConsumerGroupRevocationTimeout(t *testing.T) {
	h := newHarness(t, testConfig())
	a := h.kipMember("a", "t")
	converge(t, a)
	b := h.kipMember("b", "t")
	b.beat()
	// a heartbeats but never gives up its partitions (a stuck client).
	req := a.request()
	resp := &answer[*msg.ConsumerGroupHeartbeatResponse]{}
	h.c.ConsumerHeartbeat(h.rc(1), req, resp.reply)
	h.log.flush()
	if h.c.group("cg").consumer.members["a"].state != memberUnrevokedPartitions {
		t.Fatalf("a must be asked to revoke: %v", h.c.group("cg").consumer.members["a"].state)
	}
	h.advance(31 * time.Second)
	if h.c.group("cg").consumer.members["a"] != nil {
		t.Fatal("a member that does not revoke within its rebalance timeout is fenced")
	}
}

func TestConsumerGroupStaticMember(t *testing.T) {
	h := newHarness(t, testConfig())
	inst := "i-1"
	a, b := h.kipMember("a", "t"), h.kipMember("b", "t")
	a.instance = &inst
	converge(t, a, b)
	owned := a.owned.clone()
	epoch := h.c.group("cg").consumer.groupEpoch
	a.leave() // static: epoch -2, keeps its assignment
	a2 := h.kipMember("a2", "t")
	a2.instance = &inst
	converge(t, a2, b)
	if !a2.owned.equal(owned) || h.c.group("cg").consumer.groupEpoch != epoch {
		t.Fatalf("a static member coming back takes over its assignment without a new epoch: %s", describeOwned([]*kipClient{a2, b}))
	}
	// A second instance with the same id while it is in use.
	a3 := h.kipMember("a3", "t")
	a3.instance = &inst
	r := &answer[*msg.ConsumerGroupHeartbeatResponse]{}
	h.c.ConsumerHeartbeat(h.rc(1), a3.request(), r.reply)
	if code := kerr.Code(r.wait(t, "duplicate instance").ErrorCode); code != kerr.UnreleasedInstanceID {
		t.Fatalf("duplicate instance id: %v", code)
	}
}

func TestConsumerGroupRegexAndNewTopics(t *testing.T) {
	h := newHarness(t, testConfig())
	re := "orders-.*"
	h.addTopic("orders-eu", 2)
	a := h.kipMember("a")
	a.topics, a.regex = nil, &re
	converge(t, a)
	if a.owned.count() != 2 {
		t.Fatalf("regex subscription: %s", describeOwned([]*kipClient{a}))
	}
	h.addTopic("orders-us", 3)
	h.addTopic("other", 3)
	converge(t, a)
	if a.owned.count() != 5 {
		t.Fatalf("a new matching topic is picked up: %s", describeOwned([]*kipClient{a}))
	}
	d := h.c.ConsumerDescribe(h.rc(0), &msg.ConsumerGroupDescribeRequest{GroupIds: []string{"cg", "missing"}})
	g := d.Groups[0]
	if g.GroupState != "Stable" || *g.Members[0].SubscribedTopicRegex != re || len(g.Members[0].Assignment.TopicPartitions) != 2 {
		t.Fatalf("describe: %+v", g)
	}
	names := []string{g.Members[0].Assignment.TopicPartitions[0].TopicName, g.Members[0].Assignment.TopicPartitions[1].TopicName}
	sort.Strings(names)
	if names[0] != "orders-eu" || names[1] != "orders-us" {
		t.Fatalf("describe names the topics: %v", names)
	}
	if kerr.Code(d.Groups[1].ErrorCode) != kerr.GroupIDNotFound {
		t.Fatalf("describe missing: %+v", d.Groups[1])
	}
}

func TestConsumerGroupRangeAssignor(t *testing.T) {
	h := newHarness(t, testConfig())
	h.addTopic("u", 6)
	rangeName := "range"
	a, b := h.kipMember("a", "t", "u"), h.kipMember("b", "t", "u")
	a.assignor, b.assignor = &rangeName, &rangeName
	converge(t, a, b)
	tid, uid := h.cat.ByName["t"].ID, h.cat.ByName["u"].ID
	if !slices.Equal(a.owned[tid], []int32{0, 1, 2}) || !slices.Equal(a.owned[uid], []int32{0, 1, 2}) {
		t.Fatalf("range gives co-partitioned contiguous ranges: %s", describeOwned([]*kipClient{a, b}))
	}
}

func TestConsumerGroupOffsets(t *testing.T) {
	h := newHarness(t, testConfig())
	a := h.kipMember("a", "t")
	converge(t, a)
	commit := func(version int16, epoch int32) kerr.Code {
		req := &msg.OffsetCommitRequest{GroupId: "cg", GenerationIdOrMemberEpoch: epoch, MemberId: "a", Topics: []msg.OffsetCommitRequestTopic{{Name: "t", Partitions: []msg.OffsetCommitRequestPartition{{PartitionIndex: 0, CommittedOffset: 3}}}}}
		r := &answer[*msg.OffsetCommitResponse]{}
		h.c.CommitOffsets(h.rc(version), req, r.reply)
		h.log.flush()
		return kerr.Code(r.wait(t, "commit").Topics[0].Partitions[0].ErrorCode)
	}
	if code := commit(9, a.epoch); code != kerr.None {
		t.Fatalf("commit: %v", code)
	}
	if code := commit(9, a.epoch+1); code != kerr.FencedMemberEpoch {
		t.Fatalf("commit with a future epoch: %v", code)
	}
	if code := commit(8, a.epoch); code != kerr.UnsupportedVersion {
		t.Fatalf("commit v8 from a consumer-protocol member: %v", code)
	}
	mid := "a"
	resp := h.c.FetchOffsets(h.rc(9), &msg.OffsetFetchRequest{Groups: []msg.OffsetFetchRequestGroup{{GroupId: "cg", MemberId: &mid, MemberEpoch: a.epoch - 1, Topics: []msg.OffsetFetchRequestTopics{{Name: "t", PartitionIndexes: []int32{0}}}}}})
	if kerr.Code(resp.Groups[0].ErrorCode) != kerr.StaleMemberEpoch {
		t.Fatalf("fetch with a stale epoch: %+v", resp.Groups[0])
	}
	// The group and its members survive a reload.
	c2 := New(testConfigWithTopics(h), newMemLog(1), h.now)
	c2.LoadPartition(0, h.now, h.log.records(0))
	g := c2.group("cg")
	if g == nil || g.kind != kindConsumer || g.consumer.members["a"].epoch != a.epoch || g.consumer.members["a"].assigned.count() != 6 {
		t.Fatalf("reloaded consumer group: %+v", g)
	}
}

func TestUniformAssignorBalancesAndSticks(t *testing.T) {
	var t1, t2 [16]byte
	t1[0], t2[0] = 1, 2
	in := assignorInput{topics: map[[16]byte]int32{t1: 7, t2: 5}, names: map[[16]byte]string{t1: "a", t2: "b"}}
	for _, id := range []string{"m1", "m2", "m3"} {
		in.members = append(in.members, assignorMember{id: id, topics: map[[16]byte]bool{t1: true, t2: true}})
	}
	out := assignUniform(in)
	for id, a := range out {
		if n := a.count(); n != 4 {
			t.Fatalf("%s has %d partitions, want 4", id, n)
		}
	}
	// A fourth member: the others keep all but what it needs.
	for i := range in.members {
		in.members[i].current = out[in.members[i].id]
	}
	in.members = append(in.members, assignorMember{id: "m4", topics: map[[16]byte]bool{t1: true, t2: true}})
	next := assignUniform(in)
	moved := 0
	for _, m := range in.members[:3] {
		for tid, ps := range m.current {
			for _, p := range ps {
				if !next[m.id].has(tid, p) {
					moved++
				}
			}
		}
	}
	if next["m4"].count() != 3 || moved != 3 {
		t.Fatalf("m4 gets 3 and exactly 3 move: m4=%d moved=%d", next["m4"].count(), moved)
	}
	// Heterogeneous: m5 subscribes to t2 only.
	in.members = append(in.members, assignorMember{id: "m5", topics: map[[16]byte]bool{t2: true}})
	out = assignUniform(in)
	total := 0
	for _, a := range out {
		total += a.count()
		for tid := range a {
			if tid == t1 && a.count() > 0 && len(out["m5"][t1]) > 0 {
				t.Fatal("m5 must not get partitions of a topic it does not subscribe to")
			}
		}
	}
	if total != 12 {
		t.Fatalf("every partition is assigned: %d", total)
	}
}

// TestConsumerGroupRejoinAfterFence: a fenced client rejoins with its member
// id and epoch 0 (franz-go and the Java client keep the id) and gets its
// partitions back.
func TestConsumerGroupRejoinAfterFence(t *testing.T) {
	h := newHarness(t, testConfig())
	a, b := h.kipMember("a", "t"), h.kipMember("b", "t")
	converge(t, a, b)
	a.epoch += 5 // a confused client
	a.beat()
	if a.fenced != 1 {
		t.Fatal("a member ahead of the coordinator's epoch is fenced")
	}
	r := a.beat() // epoch 0, owning nothing
	if r.ErrorCode != 0 {
		t.Fatalf("rejoin after a fence: %v", kerr.Code(r.ErrorCode))
	}
	converge(t, a, b)
	if ownedCount(a, b) != 6 {
		t.Fatalf("after the rejoin: %s", describeOwned([]*kipClient{a, b}))
	}
}

// TestEmptyGroupsChangeProtocol: an empty consumer group can be joined by
// a classic member and the other way round, keeping the offsets; a live
// group of the other protocol cannot.
func TestEmptyGroupsChangeProtocol(t *testing.T) {
	h := newHarness(t, testConfig())
	a := h.kipMember("a", "t")
	a.group = "g"
	converge(t, a)
	h.c.CommitOffsets(h.rc(9), &msg.OffsetCommitRequest{GroupId: "g", GenerationIdOrMemberEpoch: a.epoch, MemberId: "a", Topics: []msg.OffsetCommitRequestTopic{{Name: "t", Partitions: []msg.OffsetCommitRequestPartition{{PartitionIndex: 0, CommittedOffset: 7}}}}}, func(*msg.OffsetCommitResponse) {})
	h.log.flush()
	if r := h.join(joinOpts{}).wait(t, "classic join"); kerr.Code(r.ErrorCode) != kerr.InconsistentGroupProtocol {
		t.Fatalf("a classic join into a live consumer group: %v", kerr.Code(r.ErrorCode))
	}
	a.leave()
	ids, _ := stableGroup(t, h, 1)
	if g := h.c.group("g"); g.kind != kindClassic || g.offsets[topicPartition{"t", 0}].offset != 7 {
		t.Fatalf("the emptied consumer group becomes classic with its offsets: %+v", g)
	}
	b := h.kipMember("b", "t")
	b.group = "g"
	r := &answer[*msg.ConsumerGroupHeartbeatResponse]{}
	h.c.ConsumerHeartbeat(h.rc(1), b.request(), r.reply)
	if code := kerr.Code(r.wait(t, "heartbeat").ErrorCode); code != kerr.GroupIDNotFound {
		t.Fatalf("a consumer heartbeat into a live classic group: %v", code)
	}
	h.c.LeaveGroup(h.rc(5), &msg.LeaveGroupRequest{GroupId: "g", Members: []msg.LeaveGroupRequestMemberIdentity{{MemberId: ids[0]}}})
	h.settle()
	converge(t, b)
	if g := h.c.group("g"); g.kind != kindConsumer || g.offsets[topicPartition{"t", 0}].offset != 7 {
		t.Fatalf("the emptied classic group becomes a consumer group with its offsets: %+v", g)
	}
}

// TestConsumerGroupReloadKeepsEpoch: after a restart the members carry on
// in their epoch; a topic that grew meanwhile is a new epoch.
func TestConsumerGroupReloadKeepsEpoch(t *testing.T) {
	h := newHarness(t, testConfig())
	a, b := h.kipMember("a", "t"), h.kipMember("b", "t")
	converge(t, a, b)
	epoch := h.c.group("cg").consumer.groupEpoch
	c2 := New(testConfigWithTopics(h), h.log, h.now)
	c2.LoadPartition(0, h.now, h.log.records(0))
	h.c = c2
	converge(t, a, b)
	if got := c2.group("cg").consumer.groupEpoch; got != epoch {
		t.Fatalf("group epoch %d after a reload, want %d", got, epoch)
	}
	h.addTopic("t", 8) // t grows to 8 partitions (same name, same id here)
	h.cat.ByName["t"].ID = c2.group("cg").consumer.subscription["t"].id
	converge(t, a, b)
	if ownedCount(a, b) != 8 || c2.group("cg").consumer.groupEpoch == epoch {
		t.Fatalf("new partitions are a new epoch and get assigned: %s", describeOwned([]*kipClient{a, b}))
	}
}
