package group

import (
	"fmt"
	"testing"
	"time"

	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

func TestCommitAnsweredOnlyWhenDurable(t *testing.T) {
	h := newHarness(t, testConfig())
	ids, gen := stableGroup(t, h, 1)
	a := h.commit(9, ids[0], gen, map[int32]int64{0: 10, 1: 20})
	if a.done {
		t.Fatal("a commit must not be answered before its records are durable")
	}
	if got := h.fetched("g"); len(got) != 0 {
		t.Fatalf("offsets visible before they are durable: %+v", got)
	}
	h.log.flush()
	r := a.wait(t, "commit")
	for _, p := range r.Topics[0].Partitions {
		if p.ErrorCode != 0 {
			t.Fatalf("commit: %+v", r)
		}
	}
	got := h.fetched("g")
	if got[0].CommittedOffset != 10 || got[1].CommittedOffset != 20 || *got[1].Metadata != "md-1" || got[1].CommittedLeaderEpoch != 7 {
		t.Fatalf("fetched %+v", got)
	}
}

func TestCommitFailureChangesNothing(t *testing.T) {
	h := newHarness(t, testConfig())
	ids, gen := stableGroup(t, h, 1)
	h.log.failAll = kerr.New(kerr.KafkaStorageError, "disk gone")
	a := h.commit(9, ids[0], gen, map[int32]int64{0: 10})
	h.log.flush()
	if code := kerr.Code(a.wait(t, "commit").Topics[0].Partitions[0].ErrorCode); code != kerr.NotCoordinator {
		t.Fatalf("failed commit: %v, want NOT_COORDINATOR", code)
	}
	if got := h.fetched("g"); len(got) != 0 {
		t.Fatalf("a failed commit must not be visible: %+v", got)
	}
}

func TestCommitValidation(t *testing.T) {
	h := newHarness(t, testConfig())
	ids, gen := stableGroup(t, h, 1)
	check := func(name string, a *answer[*msg.OffsetCommitResponse], want kerr.Code) {
		t.Helper()
		h.log.flush()
		r := a.wait(t, name)
		if got := kerr.Code(r.Topics[0].Partitions[0].ErrorCode); got != want {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
	check("wrong generation", h.commit(9, ids[0], gen+1, map[int32]int64{0: 1}), kerr.IllegalGeneration)
	check("unknown member", h.commit(9, "nobody", gen, map[int32]int64{0: 1}), kerr.UnknownMemberID)
	check("simple commit into a live group", h.commit(9, "", -1, map[int32]int64{0: 1}), kerr.UnknownMemberID)
	check("unknown partition", h.commit(9, ids[0], gen, map[int32]int64{99: 1}), kerr.UnknownTopicOrPartition)

	req := &msg.OffsetCommitRequest{GroupId: "g", GenerationIdOrMemberEpoch: gen, MemberId: ids[0], Topics: []msg.OffsetCommitRequestTopic{{Name: "no-such-topic", Partitions: []msg.OffsetCommitRequestPartition{{PartitionIndex: 0, CommittedOffset: 1}}}}}
	a := &answer[*msg.OffsetCommitResponse]{}
	h.c.CommitOffsets(h.rc(9), req, a.reply)
	check("unknown topic", a, kerr.UnknownTopicOrPartition)

	big := string(make([]byte, 5000))
	req = &msg.OffsetCommitRequest{GroupId: "g", GenerationIdOrMemberEpoch: gen, MemberId: ids[0], Topics: []msg.OffsetCommitRequestTopic{{Name: "t", Partitions: []msg.OffsetCommitRequestPartition{{PartitionIndex: 0, CommittedOffset: 1, CommittedMetadata: &big}}}}}
	a = &answer[*msg.OffsetCommitResponse]{}
	h.c.CommitOffsets(h.rc(9), req, a.reply)
	check("metadata too large", a, kerr.OffsetMetadataTooLarge)

	// A commit with a generation into a group that does not exist.
	req = &msg.OffsetCommitRequest{GroupId: "nogroup", GenerationIdOrMemberEpoch: 3, MemberId: "m", Topics: []msg.OffsetCommitRequestTopic{{Name: "t", Partitions: []msg.OffsetCommitRequestPartition{{}}}}}
	for version, want := range map[int16]kerr.Code{8: kerr.IllegalGeneration, 9: kerr.GroupIDNotFound} {
		a = &answer[*msg.OffsetCommitResponse]{}
		h.c.CommitOffsets(h.rc(version), req, a.reply)
		check(fmt.Sprintf("v%d unknown group", version), a, want)
	}
}

func TestSimpleCommitCreatesGroupAndNullMetadata(t *testing.T) {
	h := newHarness(t, testConfig())
	req := &msg.OffsetCommitRequest{GroupId: "simple", GenerationIdOrMemberEpoch: -1, Topics: []msg.OffsetCommitRequestTopic{{Name: "t", Partitions: []msg.OffsetCommitRequestPartition{{PartitionIndex: 2, CommittedOffset: 42, CommittedLeaderEpoch: -1}}}}}
	a := &answer[*msg.OffsetCommitResponse]{}
	h.c.CommitOffsets(h.rc(2), req, a.reply)
	h.log.flush()
	if r := a.wait(t, "commit"); r.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("simple commit: %+v", r)
	}
	got := h.fetched("simple")
	if got[2].CommittedOffset != 42 || got[2].Metadata == nil || *got[2].Metadata != "" || got[2].CommittedLeaderEpoch != -1 {
		t.Fatalf("a null metadata reads back as \"\" (Kafka): %+v", got[2])
	}
	// OffsetFetch v1: no top-level error, -1 for what was never committed.
	resp := h.c.FetchOffsets(h.rc(1), &msg.OffsetFetchRequest{GroupId: "simple", Topics: []msg.OffsetFetchRequestTopic{{Name: "t", PartitionIndexes: []int32{2, 3}}}})
	if p := resp.Topics[0].Partitions; p[0].CommittedOffset != 42 || p[1].CommittedOffset != -1 {
		t.Fatalf("v1 fetch: %+v", resp)
	}
	// v2+ with null topics: everything committed.
	resp = h.c.FetchOffsets(h.rc(7), &msg.OffsetFetchRequest{GroupId: "simple"})
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("fetch all: %+v", resp)
	}
	d := h.c.DescribeGroups(h.rc(5), &msg.DescribeGroupsRequest{Groups: []string{"simple"}})
	if d.Groups[0].GroupState != "Empty" || d.Groups[0].ProtocolType != "" {
		t.Fatalf("a simple group is Empty with no protocol type: %+v", d.Groups[0])
	}
}

// TestReloadRestoresState replays the log into a fresh coordinator: groups,
// generations, members, assignments and offsets come back.
func TestReloadRestoresState(t *testing.T) {
	h := newHarness(t, testConfig())
	ids, gen := stableGroup(t, h, 2)
	h.commit(9, ids[0], gen, map[int32]int64{0: 5, 3: 9})
	h.log.flush()
	h.commit(9, ids[1], gen, map[int32]int64{0: 6})
	h.log.flush()

	c2 := New(testConfigWithTopics(h), newMemLog(1), h.now)
	c2.LoadPartition(0, h.now, h.log.records(0))
	g := c2.group("g")
	if g == nil || g.classic.state != stateStable || g.classic.generation != gen || len(g.classic.members) != 2 || g.classic.leader != ids[0] {
		t.Fatalf("reloaded group: %+v", g)
	}
	if string(g.classic.members[ids[1]].assignment) != "\x01" {
		t.Fatal("assignments must survive a reload")
	}
	if v := g.offsets[topicPartition{"t", 0}]; v.offset != 6 || *v.metadata != "md-0" || v.leaderEpoch != 7 {
		t.Fatalf("reloaded offset: %+v", v)
	}
	// Members get a fresh session after a reload and may carry on.
	if code := c2.Heartbeat(Request{Now: h.now, Version: 4}, &msg.HeartbeatRequest{GroupId: "g", GenerationId: gen, MemberId: ids[1]}).ErrorCode; code != 0 {
		t.Fatalf("heartbeat after reload: %d", code)
	}
}

func testConfigWithTopics(h *harness) Config {
	cfg := testConfig()
	cfg.Topics = func() *Catalog { return h.cat }
	return cfg
}

// TestSnapshotBoundsTheLog: with many commits the coordinator rewrites its
// live records and trims the log, and a load from the trimmed log gives
// the same offsets.
func TestSnapshotBoundsTheLog(t *testing.T) {
	cfg := testConfig()
	cfg.SnapshotMinBytes = 2000
	h := newHarness(t, cfg)
	ids, gen := stableGroup(t, h, 1)
	for i := range 500 {
		a := h.commit(9, ids[0], gen, map[int32]int64{int32(i % 6): int64(i)})
		if i%7 == 0 {
			h.log.flush() // commits in flight while snapshots start, too
			a.wait(t, "commit")
		}
	}
	h.log.flush()
	if h.log.start[0] == 0 {
		t.Fatal("no snapshot trimmed the log")
	}
	live := len(h.log.records(0))
	if live > 200 {
		t.Fatalf("%d records after the log start: the log is not bounded", live)
	}
	c2 := New(testConfigWithTopics(h), newMemLog(1), h.now)
	c2.LoadPartition(0, h.now, h.log.records(0))
	want := h.c.group("g")
	got := c2.group("g")
	if got == nil || len(got.offsets) != 6 {
		t.Fatalf("reloaded offsets: %+v", got)
	}
	for tp, v := range want.offsets {
		if got.offsets[tp].offset != v.offset {
			t.Fatalf("%v: reloaded %d, want %d", tp, got.offsets[tp].offset, v.offset)
		}
	}
	if got.classic.generation != gen || len(got.classic.members) != 1 {
		t.Fatal("the group record survives the snapshot")
	}
}

func TestOffsetRetention(t *testing.T) {
	cfg := testConfig()
	cfg.OffsetsRetention = time.Hour
	cfg.OffsetsRetentionCheck = time.Minute
	h := newHarness(t, cfg)
	ids, gen := stableGroup(t, h, 1)
	h.commit(9, ids[0], gen, map[int32]int64{0: 5})
	h.log.flush()
	for range 2 * 3600 / 5 { // two hours of a live member
		h.advance(5 * time.Second)
		h.heartbeat(ids[0], gen)
	}
	if len(h.fetched("g")) != 1 {
		t.Fatal("offsets of a live group's subscribed topic do not expire")
	}
	h.c.LeaveGroup(h.rc(5), &msg.LeaveGroupRequest{GroupId: "g", Members: []msg.LeaveGroupRequestMemberIdentity{{MemberId: ids[0]}}})
	h.settle()
	if h.c.group("g").classic.state != stateEmpty {
		t.Fatalf("state %v", h.c.group("g").classic.state)
	}
	h.advance(30 * time.Minute)
	if len(h.fetched("g")) != 1 {
		t.Fatal("offsets expire only an hour after the group became empty")
	}
	h.advance(31 * time.Minute)
	h.settle()
	if len(h.fetched("g")) != 0 || h.c.group("g") != nil {
		t.Fatal("offsets of a group empty for the retention period expire, and the group with them")
	}
	c2 := New(testConfigWithTopics(h), newMemLog(1), h.now)
	c2.LoadPartition(0, h.now, h.log.records(0))
	if c2.group("g") != nil {
		t.Fatal("the expiry is durable (tombstones)")
	}
}

func TestDeleteGroupAndOffsets(t *testing.T) {
	h := newHarness(t, testConfig())
	req := &msg.OffsetCommitRequest{GroupId: "g", GenerationIdOrMemberEpoch: -1, Topics: []msg.OffsetCommitRequestTopic{{Name: "t", Partitions: []msg.OffsetCommitRequestPartition{{PartitionIndex: 0, CommittedOffset: 1}, {PartitionIndex: 1, CommittedOffset: 2}}}}}
	h.c.CommitOffsets(h.rc(8), req, func(*msg.OffsetCommitResponse) {})
	h.log.flush()
	od := &answer[*msg.OffsetDeleteResponse]{}
	h.c.DeleteOffsets(h.rc(0), &msg.OffsetDeleteRequest{GroupId: "g", Topics: []msg.OffsetDeleteRequestTopic{{Name: "t", Partitions: []msg.OffsetDeleteRequestPartition{{PartitionIndex: 0}}}}}, od.reply)
	h.log.flush()
	if r := od.wait(t, "offset delete"); r.ErrorCode != 0 || r.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("offset delete: %+v", r)
	}
	if got := h.fetched("g"); len(got) != 1 {
		t.Fatalf("after offset delete: %+v", got)
	}
	del := &answer[*msg.DeleteGroupsResponse]{}
	h.c.DeleteGroups(h.rc(2), &msg.DeleteGroupsRequest{GroupsNames: []string{"g"}}, del.reply)
	if del.done {
		t.Fatal("DeleteGroups answers once the tombstones are durable")
	}
	h.log.flush()
	if r := del.wait(t, "delete"); r.Results[0].ErrorCode != 0 {
		t.Fatalf("delete: %+v", r)
	}
	c2 := New(testConfigWithTopics(h), newMemLog(1), h.now)
	c2.LoadPartition(0, h.now, h.log.records(0))
	if c2.group("g") != nil {
		t.Fatal("a deleted group stays deleted after a reload")
	}
}

func TestOffsetDeleteRefusesSubscribedTopics(t *testing.T) {
	h := newHarness(t, testConfig())
	ids, gen := stableGroup(t, h, 1)
	h.commit(9, ids[0], gen, map[int32]int64{0: 1})
	h.log.flush()
	od := &answer[*msg.OffsetDeleteResponse]{}
	h.c.DeleteOffsets(h.rc(0), &msg.OffsetDeleteRequest{GroupId: "g", Topics: []msg.OffsetDeleteRequestTopic{{Name: "t", Partitions: []msg.OffsetDeleteRequestPartition{{PartitionIndex: 0}}}}}, od.reply)
	if r := od.wait(t, "offset delete"); kerr.Code(r.Topics[0].Partitions[0].ErrorCode) != kerr.GroupSubscribedToTopic {
		t.Fatalf("offset delete of a subscribed topic: %+v", r)
	}
	od = &answer[*msg.OffsetDeleteResponse]{}
	h.c.DeleteOffsets(h.rc(0), &msg.OffsetDeleteRequest{GroupId: "missing"}, od.reply)
	if r := od.wait(t, "offset delete"); kerr.Code(r.ErrorCode) != kerr.GroupIDNotFound {
		t.Fatalf("offset delete of a missing group: %+v", r)
	}
}

func TestPartitionForMatchesKafka(t *testing.T) {
	// "my-group".hashCode() is -1906497762 in Java; Utils.abs of it mod 50 is 12.
	cases := map[string]int32{"my-group": 12, "": 0, "group-1": javaAbsMod("group-1", 50)}
	for id, want := range cases {
		if got := PartitionFor(id, 50); got != want {
			t.Errorf("PartitionFor(%q) = %d, want %d", id, got, want)
		}
	}
}

// javaAbsMod spells out Java's arithmetic for a cross-check.
func javaAbsMod(s string, n int32) int32 {
	var h int32
	for i := 0; i < len(s); i++ {
		h = 31*h + int32(s[i])
	}
	if h < 0 {
		h = -h
	}
	return h % n
}

// TestRefusedWriteLeavesNoTrace: a record the log refuses (too large) is
// not repeated by a later snapshot.
func TestRefusedWriteLeavesNoTrace(t *testing.T) {
	cfg := testConfig()
	cfg.SnapshotMinBytes = 1
	h := newHarness(t, cfg)
	ids, gen := stableGroup(t, h, 1)
	before := h.c.parts[0].Live[string(groupKey("g"))]
	h.log.failAll = kerr.New(kerr.MessageTooLarge, "too large")
	h.join(joinOpts{member: ids[0], protocols: []msg.JoinGroupRequestProtocol{{Name: "range", Metadata: make([]byte, 100)}}})
	h.settle()
	s := h.sync(ids[0], gen+1, map[string][]byte{ids[0]: {9}})
	h.log.flush()
	if r := s.wait(t, "sync"); kerr.Code(r.ErrorCode) != kerr.UnknownServerError {
		t.Fatalf("sync of a refused group record: %v", kerr.Code(r.ErrorCode))
	}
	if after := h.c.parts[0].Live[string(groupKey("g"))]; !sameBytes(after, before) {
		t.Fatal("the refused group record must not stay in the live set")
	}
}
