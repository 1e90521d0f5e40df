package group

import (
	"testing"
	"time"

	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

// stableGroup brings members through a first rebalance and returns their
// ids (the first is the leader) and the generation.
func stableGroup(t *testing.T, h *harness, n int) ([]string, int32) {
	t.Helper()
	var ids []string
	var joins []*answer[*msg.JoinGroupResponse]
	for range n {
		id, a := h.joinDynamic(joinOpts{})
		ids = append(ids, id)
		joins = append(joins, a)
	}
	h.settle()
	var gen int32
	assign := map[string][]byte{}
	for i, a := range joins {
		r := a.wait(t, "join")
		if r.ErrorCode != 0 {
			t.Fatalf("join %d: error %d", i, r.ErrorCode)
		}
		gen = r.GenerationId
		assign[ids[i]] = []byte{byte(i)}
	}
	var syncs []*answer[*msg.SyncGroupResponse]
	for i, id := range ids {
		if i == 0 {
			continue
		}
		syncs = append(syncs, h.sync(id, gen, nil))
	}
	syncs = append(syncs, h.sync(ids[0], gen, assign))
	h.settle()
	for _, s := range syncs {
		if r := s.wait(t, "sync"); r.ErrorCode != 0 {
			t.Fatalf("sync: error %d", r.ErrorCode)
		}
	}
	if st := h.c.group("g").classic.state; st != stateStable {
		t.Fatalf("state %v, want Stable", st)
	}
	return ids, gen
}

func TestMemberIDRequiredThenJoin(t *testing.T) {
	h := newHarness(t, testConfig())
	first := h.join(joinOpts{version: 4}).wait(t, "join")
	if kerr.Code(first.ErrorCode) != kerr.MemberIDRequired || first.MemberId == "" {
		t.Fatalf("first v4 join: %+v, want MEMBER_ID_REQUIRED with an id", first)
	}
	// Below v4 the coordinator admits the member at once.
	old := h.join(joinOpts{version: 3, groupID: "g3"})
	h.settle()
	if r := old.wait(t, "v3 join"); r.ErrorCode != 0 || r.MemberId == "" || r.Leader != r.MemberId {
		t.Fatalf("v3 join: %+v", r)
	}
	second := h.join(joinOpts{version: 4, member: first.MemberId})
	if second.done {
		t.Fatal("the join must wait for the join phase to end")
	}
	h.settle()
	r := second.wait(t, "second join")
	if r.ErrorCode != 0 || r.GenerationId != 1 || r.Leader != first.MemberId || len(r.Members) != 1 {
		t.Fatalf("join: %+v", r)
	}
	if *r.ProtocolName != "range" || *r.ProtocolType != "consumer" {
		t.Fatalf("protocol %v/%v", *r.ProtocolType, *r.ProtocolName)
	}
}

func TestPendingMemberExpires(t *testing.T) {
	h := newHarness(t, testConfig())
	first := h.join(joinOpts{session: 6000}).wait(t, "join")
	if !h.c.group("g").classic.pendingJoin[first.MemberId] {
		t.Fatal("the handed-out id must be pending")
	}
	h.advance(6 * time.Second)
	if h.c.group("g").classic.pendingJoin[first.MemberId] {
		t.Fatal("a pending id must expire after the session timeout")
	}
	r := h.join(joinOpts{member: first.MemberId}).wait(t, "late join")
	if kerr.Code(r.ErrorCode) != kerr.UnknownMemberID {
		t.Fatalf("late join: error %d, want UNKNOWN_MEMBER_ID", r.ErrorCode)
	}
}

func TestInitialRebalanceDelay(t *testing.T) {
	cfg := testConfig()
	cfg.InitialRebalanceDelay = 3 * time.Second
	h := newHarness(t, cfg)
	_, a := h.joinDynamic(joinOpts{})
	h.advance(2 * time.Second)
	_, b := h.joinDynamic(joinOpts{})
	h.advance(1 * time.Second) // the first delay ends; b joined during it: extended
	if a.done || b.done {
		t.Fatal("a member joining during the delay extends it")
	}
	h.advance(3 * time.Second)
	ra, rb := a.wait(t, "a"), b.wait(t, "b")
	if ra.GenerationId != 1 || rb.GenerationId != 1 || ra.Leader != rb.Leader {
		t.Fatalf("both members must land in generation 1: %+v %+v", ra, rb)
	}
}

func TestRebalanceAndSync(t *testing.T) {
	h := newHarness(t, testConfig())
	ids, gen := stableGroup(t, h, 2)
	if code := h.heartbeat(ids[1], gen); code != 0 {
		t.Fatalf("heartbeat: %d", code)
	}
	// A third member triggers a rebalance: heartbeats say so.
	_, c := h.joinDynamic(joinOpts{})
	if code := h.heartbeat(ids[1], gen); kerr.Code(code) != kerr.RebalanceInProgress {
		t.Fatalf("heartbeat during rebalance: %d", code)
	}
	if r := h.sync(ids[1], gen, nil).wait(t, "sync"); kerr.Code(r.ErrorCode) != kerr.RebalanceInProgress {
		t.Fatalf("sync during rebalance: %d", r.ErrorCode)
	}
	a := h.join(joinOpts{member: ids[0]})
	b := h.join(joinOpts{member: ids[1]})
	h.settle()
	for _, x := range []*answer[*msg.JoinGroupResponse]{a, b, c} {
		r := x.wait(t, "rejoin")
		if r.ErrorCode != 0 || r.GenerationId != gen+1 || r.Leader != ids[0] {
			t.Fatalf("rejoin: %+v", r)
		}
	}
	if code := h.heartbeat(ids[1], gen); kerr.Code(code) != kerr.IllegalGeneration {
		t.Fatalf("heartbeat of the old generation: %d, want ILLEGAL_GENERATION", code)
	}
	// The follower's sync waits for the leader's assignment, which is only
	// given out once durable.
	f := h.sync(ids[1], gen+1, nil)
	l := h.sync(ids[0], gen+1, map[string][]byte{ids[0]: {1}, ids[1]: {2}})
	if f.done || l.done {
		t.Fatal("syncs must wait for the assignment to be durable")
	}
	h.settle()
	if r := f.wait(t, "follower sync"); r.ErrorCode != 0 || string(r.Assignment) != "\x02" {
		t.Fatalf("follower sync: %+v", r)
	}
	if r := l.wait(t, "leader sync"); r.ErrorCode != 0 || string(r.Assignment) != "\x01" {
		t.Fatalf("leader sync: %+v", r)
	}
}

func TestSessionExpiryRebalances(t *testing.T) {
	h := newHarness(t, testConfig())
	ids, gen := stableGroup(t, h, 2)
	h.advance(5 * time.Second)
	if code := h.heartbeat(ids[0], gen); code != 0 {
		t.Fatalf("heartbeat: %d", code)
	}
	h.advance(6 * time.Second) // ids[1] silent for 11 s > 10 s
	g := h.c.group("g")
	if g.classic.members[ids[1]] != nil {
		t.Fatal("a silent member must be expelled after its session timeout")
	}
	if g.classic.state != statePreparingRebalance {
		t.Fatalf("state %v, want PreparingRebalance", g.classic.state)
	}
	if code := h.heartbeat(ids[1], gen); kerr.Code(code) != kerr.UnknownMemberID {
		t.Fatalf("expelled member heartbeat: %d", code)
	}
	r := h.join(joinOpts{member: ids[0]})
	h.settle()
	if got := r.wait(t, "rejoin"); got.GenerationId != gen+1 || len(got.Members) != 1 {
		t.Fatalf("rejoin: %+v", got)
	}
}

func TestRebalanceTimeoutDropsLaggards(t *testing.T) {
	h := newHarness(t, testConfig())
	ids, _ := stableGroup(t, h, 2)
	a := h.join(joinOpts{member: ids[0]})
	for range 10 { // ids[1] keeps heartbeating but never rejoins
		if a.done {
			t.Fatal("the join phase must wait for the rebalance timeout (30 s)")
		}
		h.advance(3 * time.Second)
		h.heartbeat(ids[1], 1)
	}
	r := a.wait(t, "join")
	if r.GenerationId != 2 || len(r.Members) != 1 {
		t.Fatalf("join after the rebalance timeout: %+v", r)
	}
}

func TestPendingSyncExpiry(t *testing.T) {
	h := newHarness(t, testConfig())
	_, a := h.joinDynamic(joinOpts{rebalance: 5000})
	_, b := h.joinDynamic(joinOpts{rebalance: 5000})
	h.settle()
	ra, rb := a.wait(t, "a"), b.wait(t, "b")
	leader := ra.MemberId
	h.sync(leader, ra.GenerationId, map[string][]byte{})
	h.settle()
	h.advance(5 * time.Second) // b never synced
	g := h.c.group("g")
	if g.classic.members[rb.MemberId] != nil || g.classic.state != statePreparingRebalance {
		t.Fatalf("a member that never syncs is removed and the group rebalances: state %v", g.classic.state)
	}
}

func TestStaticMemberRejoinsWithoutRebalance(t *testing.T) {
	h := newHarness(t, testConfig())
	inst := "instance-1"
	a := h.join(joinOpts{instance: &inst})
	_, b := h.joinDynamic(joinOpts{})
	h.settle()
	ra, rb := a.wait(t, "static join"), b.wait(t, "join")
	if ra.ErrorCode != 0 {
		t.Fatalf("a static member joins without MEMBER_ID_REQUIRED: %+v", ra)
	}
	gen := ra.GenerationId
	leader := ra.Leader
	h.sync(rb.MemberId, gen, nil)
	h.sync(leader, gen, map[string][]byte{ra.MemberId: {7}, rb.MemberId: {8}})
	h.settle()
	// The static member restarts: it rejoins with its instance id and no
	// member id.
	again := h.join(joinOpts{instance: &inst})
	h.settle()
	r := again.wait(t, "static rejoin")
	if r.ErrorCode != 0 || r.GenerationId != gen || r.MemberId == ra.MemberId {
		t.Fatalf("static rejoin: %+v (old id %s)", r, ra.MemberId)
	}
	if st := h.c.group("g").classic.state; st != stateStable {
		t.Fatalf("a static rejoin must not rebalance: state %v", st)
	}
	if s := h.sync(r.MemberId, gen, nil).wait(t, "sync"); s.ErrorCode != 0 || string(s.Assignment) != "\x07" {
		t.Fatalf("the new id keeps the assignment: %+v", s)
	}
	code := h.c.Heartbeat(h.rc(4), &msg.HeartbeatRequest{GroupId: "g", GenerationId: gen, MemberId: ra.MemberId, GroupInstanceId: &inst}).ErrorCode
	if kerr.Code(code) != kerr.FencedInstanceID {
		t.Fatalf("the old member id: %d, want FENCED_INSTANCE_ID", code)
	}
	// LeaveGroup by instance id (the admin way) removes it.
	resp := h.c.LeaveGroup(h.rc(5), &msg.LeaveGroupRequest{GroupId: "g", Members: []msg.LeaveGroupRequestMemberIdentity{{GroupInstanceId: &inst}}})
	if resp.ErrorCode != 0 || resp.Members[0].ErrorCode != 0 {
		t.Fatalf("leave by instance id: %+v", resp)
	}
	if h.c.group("g").classic.state != statePreparingRebalance {
		t.Fatal("a leave rebalances")
	}
}

func TestJoinErrors(t *testing.T) {
	h := newHarness(t, testConfig())
	stableGroup(t, h, 1)
	cases := []struct {
		name string
		o    joinOpts
		want kerr.Code
	}{
		{"empty group id", joinOpts{groupID: "", version: 5}, kerr.InvalidGroupID},
		{"session too short", joinOpts{session: 100}, kerr.InvalidSessionTimeout},
		{"session too long", joinOpts{session: 1 << 30}, kerr.InvalidSessionTimeout},
		{"other protocol type", joinOpts{protoType: "connect"}, kerr.InconsistentGroupProtocol},
		{"no common protocol", joinOpts{protocols: []msg.JoinGroupRequestProtocol{{Name: "roundrobin"}}}, kerr.InconsistentGroupProtocol},
		{"unknown member", joinOpts{member: "nobody"}, kerr.UnknownMemberID},
		{"unknown member, unknown group", joinOpts{member: "nobody", groupID: "other"}, kerr.UnknownMemberID},
		{"empty protocols on a new group", joinOpts{groupID: "new", protocols: []msg.JoinGroupRequestProtocol{}}, kerr.InconsistentGroupProtocol},
	}
	for _, tc := range cases {
		o := tc.o
		if tc.name == "empty group id" {
			req := &msg.JoinGroupRequest{SessionTimeoutMs: 10000, RebalanceTimeoutMs: 10000, ProtocolType: "consumer"}
			a := &answer[*msg.JoinGroupResponse]{}
			h.c.JoinGroup(h.rc(5), req, a.reply)
			if got := kerr.Code(a.wait(t, tc.name).ErrorCode); got != tc.want {
				t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
			}
			continue
		}
		if got := kerr.Code(h.join(o).wait(t, tc.name).ErrorCode); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestSyncAndHeartbeatErrors(t *testing.T) {
	h := newHarness(t, testConfig())
	ids, gen := stableGroup(t, h, 1)
	if r := h.sync(ids[0], gen+5, nil).wait(t, "sync"); kerr.Code(r.ErrorCode) != kerr.IllegalGeneration {
		t.Errorf("sync wrong generation: %d", r.ErrorCode)
	}
	if r := h.sync("nobody", gen, nil).wait(t, "sync"); kerr.Code(r.ErrorCode) != kerr.UnknownMemberID {
		t.Errorf("sync unknown member: %d", r.ErrorCode)
	}
	other := "other"
	req := &msg.SyncGroupRequest{GroupId: "g", GenerationId: gen, MemberId: ids[0], ProtocolName: &other}
	a := &answer[*msg.SyncGroupResponse]{}
	h.c.SyncGroup(h.rc(5), req, a.reply)
	if r := a.wait(t, "sync"); kerr.Code(r.ErrorCode) != kerr.InconsistentGroupProtocol {
		t.Errorf("sync wrong protocol name: %d", r.ErrorCode)
	}
	if code := h.heartbeat(ids[0], gen-1); kerr.Code(code) != kerr.IllegalGeneration {
		t.Errorf("heartbeat wrong generation: %d", code)
	}
	if code := h.c.Heartbeat(h.rc(4), &msg.HeartbeatRequest{GroupId: "nogroup", MemberId: "x"}).ErrorCode; kerr.Code(code) != kerr.UnknownMemberID {
		t.Errorf("heartbeat unknown group: %d", code)
	}
	resp := h.c.LeaveGroup(h.rc(1), &msg.LeaveGroupRequest{GroupId: "g", MemberId: "nobody"})
	if kerr.Code(resp.ErrorCode) != kerr.UnknownMemberID {
		t.Errorf("leave v1 unknown member: %d", resp.ErrorCode)
	}
}

func TestLoadingAnswersLoadInProgress(t *testing.T) {
	cfg := testConfig()
	log := newMemLog(1)
	c := New(cfg, log, time.Unix(0, 0))
	rc := Request{Now: time.Unix(0, 0), Version: 9}
	a := &answer[*msg.JoinGroupResponse]{}
	c.JoinGroup(rc, &msg.JoinGroupRequest{GroupId: "g", SessionTimeoutMs: 10000}, a.reply)
	if kerr.Code(a.wait(t, "join").ErrorCode) != kerr.CoordinatorLoadInProgress {
		t.Fatal("a loading coordinator answers COORDINATOR_LOAD_IN_PROGRESS")
	}
	if kerr.Code(c.ListGroups(rc, &msg.ListGroupsRequest{}).ErrorCode) != kerr.CoordinatorLoadInProgress {
		t.Fatal("ListGroups while loading")
	}
	resp := c.FetchOffsets(Request{Version: 1}, &msg.OffsetFetchRequest{GroupId: "g", Topics: []msg.OffsetFetchRequestTopic{{Name: "t", PartitionIndexes: []int32{0}}}})
	if kerr.Code(resp.Topics[0].Partitions[0].ErrorCode) != kerr.CoordinatorLoadInProgress {
		t.Fatalf("OffsetFetch v1 while loading: %+v", resp)
	}
}

func TestDescribeAndListGroups(t *testing.T) {
	h := newHarness(t, testConfig())
	ids, _ := stableGroup(t, h, 2)
	d := h.c.DescribeGroups(h.rc(5), &msg.DescribeGroupsRequest{Groups: []string{"g", "missing"}})
	g := d.Groups[0]
	if g.GroupState != "Stable" || g.ProtocolType != "consumer" || g.ProtocolData != "range" || len(g.Members) != 2 {
		t.Fatalf("describe: %+v", g)
	}
	if g.Members[0].MemberId != ids[0] || len(g.Members[0].MemberAssignment) != 1 || len(g.Members[0].MemberMetadata) == 0 {
		t.Fatalf("describe member: %+v", g.Members[0])
	}
	if d.Groups[1].GroupState != "Dead" || d.Groups[1].ErrorCode != 0 {
		t.Fatalf("describe missing: %+v", d.Groups[1])
	}
	l := h.c.ListGroups(h.rc(5), &msg.ListGroupsRequest{StatesFilter: []string{"stable"}})
	if len(l.Groups) != 1 || l.Groups[0].GroupState != "Stable" || l.Groups[0].GroupType != "classic" {
		t.Fatalf("list: %+v", l)
	}
	if l := h.c.ListGroups(h.rc(5), &msg.ListGroupsRequest{StatesFilter: []string{"Empty"}}); len(l.Groups) != 0 {
		t.Fatalf("list empty: %+v", l)
	}
	del := &answer[*msg.DeleteGroupsResponse]{}
	h.c.DeleteGroups(h.rc(2), &msg.DeleteGroupsRequest{GroupsNames: []string{"g", "missing"}}, del.reply)
	r := del.wait(t, "delete")
	if kerr.Code(r.Results[0].ErrorCode) != kerr.NonEmptyGroup || kerr.Code(r.Results[1].ErrorCode) != kerr.GroupIDNotFound {
		t.Fatalf("delete: %+v", r)
	}
}

// TestNoRejoinedMemberDoesNotSpin: a join phase left with only static
// members that did not rejoin waits for their sessions instead of
// re-arming its zero rebalance timeout forever.
func TestNoRejoinedMemberDoesNotSpin(t *testing.T) {
	h := newHarness(t, testConfig())
	inst := "static"
	a := h.join(joinOpts{instance: &inst, rebalance: 0})
	h.settle()
	ra := a.wait(t, "static join")
	h.sync(ra.MemberId, ra.GenerationId, map[string][]byte{ra.MemberId: {1}})
	h.settle()
	b := h.join(joinOpts{version: 3, rebalance: 0})
	_ = b
	g := h.c.group("g")
	var bID string
	for id := range g.classic.members {
		if id != ra.MemberId {
			bID = id
		}
	}
	h.c.LeaveGroup(h.rc(5), &msg.LeaveGroupRequest{GroupId: "g", Members: []msg.LeaveGroupRequestMemberIdentity{{MemberId: bID}}})
	h.c.Advance(h.now) // must return
	next, ok := h.c.NextDeadline()
	if !ok || next.Sub(h.now) < time.Second {
		t.Fatalf("next deadline in %v: the join phase must wait for the static member's session", next.Sub(h.now))
	}
}
