package group

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sluice-broker/sluice/wire/msg"
)

// memLog is an in-memory Log: appends wait until the test flushes them, so
// tests see exactly what is answered before and after durability.
type memLog struct {
	pending []memAppend
	log     [][]memRecord // per partition, what is durable
	next    []int64
	start   []int64 // trimmed log start per partition
	failAll error   // when set, flushed appends fail with it
}

type memAppend struct {
	p    int32
	recs []Record
	done func(int64, error)
}

type memRecord struct {
	offset int64
	rec    Record
}

func newMemLog(partitions int32) *memLog {
	return &memLog{log: make([][]memRecord, partitions), next: make([]int64, partitions), start: make([]int64, partitions)}
}

func (l *memLog) Append(p int32, recs []Record, done func(int64, error)) {
	l.pending = append(l.pending, memAppend{p, recs, done})
}

func (l *memLog) Trim(p int32, offset int64) {
	if offset > l.start[p] {
		l.start[p] = offset
	}
}

// flush completes every pending append in order (completions may append
// more; those are flushed too).
func (l *memLog) flush() {
	for len(l.pending) > 0 {
		a := l.pending[0]
		l.pending = l.pending[1:]
		if l.failAll != nil {
			a.done(-1, l.failAll)
			continue
		}
		base := l.next[a.p]
		for _, r := range a.recs {
			l.log[a.p] = append(l.log[a.p], memRecord{l.next[a.p], r})
			l.next[a.p]++
		}
		a.done(base, nil)
	}
}

// records is partition p's log from its start, as a load would read it.
func (l *memLog) records(p int32) []Record {
	var out []Record
	for _, r := range l.log[p] {
		if r.offset >= l.start[p] {
			out = append(out, r.rec)
		}
	}
	return out
}

// harness drives one coordinator with a fake clock.
type harness struct {
	t   *testing.T
	c   *Coordinator
	log *memLog
	now time.Time
	cat *Catalog
	ids int
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Partitions = 1
	cfg.InitialRebalanceDelay = 0
	return cfg
}

func newHarness(t *testing.T, cfg Config) *harness {
	h := &harness{t: t, log: newMemLog(cfg.Partitions), now: time.Unix(1_700_000_000, 0)}
	h.cat = &Catalog{Version: 1, ByName: map[string]*Topic{}, ByID: map[[16]byte]*Topic{}}
	h.addTopic("t", 6)
	cfg.Topics = func() *Catalog { return h.cat }
	cfg.Random = func(b []byte) {
		h.ids++
		for i := range b {
			b[i] = 0
		}
		binary.BigEndian.PutUint64(b[len(b)-8:], uint64(h.ids))
	}
	h.c = New(cfg, h.log, h.now)
	for p := range cfg.Partitions {
		h.c.LoadPartition(p, h.now, nil)
	}
	return h
}

func (h *harness) addTopic(name string, partitions int32) *Topic {
	var id [16]byte
	copy(id[:], fmt.Sprintf("%-16s", name))
	t := &Topic{Name: name, ID: id, Partitions: partitions}
	next := &Catalog{Version: h.cat.Version + 1, ByName: map[string]*Topic{}, ByID: map[[16]byte]*Topic{}}
	for k, v := range h.cat.ByName {
		next.ByName[k] = v
		next.ByID[v.ID] = v
	}
	next.ByName[name] = t
	next.ByID[id] = t
	h.cat = next
	return t
}

func (h *harness) rc(version int16) Request {
	return Request{Now: h.now, Version: version, ClientID: "client", ClientHost: "/127.0.0.1"}
}

// advance moves the clock and fires what is due.
func (h *harness) advance(d time.Duration) {
	h.now = h.now.Add(d)
	h.c.Advance(h.now)
}

// settle fires what is due now and flushes the log until quiet.
func (h *harness) settle() {
	for i := 0; i < 100; i++ {
		h.c.Advance(h.now)
		if len(h.log.pending) == 0 {
			return
		}
		h.log.flush()
	}
	h.t.Fatal("the coordinator does not settle")
}

// answer captures a response that may come later.
type answer[T any] struct {
	got  T
	done bool
	n    int
}

func (a *answer[T]) reply(v T) {
	a.got = v
	a.done = true
	a.n++
}

func (a *answer[T]) wait(t *testing.T, what string) T {
	t.Helper()
	if !a.done {
		t.Fatalf("%s: not answered", what)
	}
	return a.got
}

// consumerMetadata is a ConsumerProtocolSubscription v0 for topics.
func consumerMetadata(topics ...string) []byte {
	b := []byte{0, 0}
	b = binary.BigEndian.AppendUint32(b, uint32(len(topics)))
	for _, t := range topics {
		b = binary.BigEndian.AppendUint16(b, uint16(len(t)))
		b = append(b, t...)
	}
	return binary.BigEndian.AppendUint32(b, 0xffffffff) // null user data
}

type joinOpts struct {
	version   int16
	member    string
	instance  *string
	protocols []msg.JoinGroupRequestProtocol
	session   int32
	rebalance int32
	protoType string
	groupID   string
	clientID  string
}

func (h *harness) join(o joinOpts) *answer[*msg.JoinGroupResponse] {
	if o.version == 0 {
		o.version = 9
	}
	if o.protocols == nil {
		o.protocols = []msg.JoinGroupRequestProtocol{{Name: "range", Metadata: consumerMetadata("t")}}
	}
	if o.session == 0 {
		o.session = 10000
	}
	if o.rebalance == 0 {
		o.rebalance = 30000
	}
	if o.protoType == "" {
		o.protoType = "consumer"
	}
	if o.groupID == "" {
		o.groupID = "g"
	}
	req := &msg.JoinGroupRequest{GroupId: o.groupID, SessionTimeoutMs: o.session, RebalanceTimeoutMs: o.rebalance, MemberId: o.member, GroupInstanceId: o.instance, ProtocolType: o.protoType, Protocols: o.protocols}
	a := &answer[*msg.JoinGroupResponse]{}
	rc := h.rc(o.version)
	if o.clientID != "" {
		rc.ClientID = o.clientID
	}
	h.c.JoinGroup(rc, req, a.reply)
	return a
}

// joinDynamic does the two-step join of a v4+ dynamic member and returns
// its member id and the pending answer of the second join.
func (h *harness) joinDynamic(o joinOpts) (string, *answer[*msg.JoinGroupResponse]) {
	h.t.Helper()
	first := h.join(o).wait(h.t, "first join")
	if first.ErrorCode != 79 {
		h.t.Fatalf("first join: error %d, want MEMBER_ID_REQUIRED", first.ErrorCode)
	}
	o.member = first.MemberId
	return first.MemberId, h.join(o)
}

func (h *harness) sync(member string, generation int32, assignments map[string][]byte) *answer[*msg.SyncGroupResponse] {
	req := &msg.SyncGroupRequest{GroupId: "g", GenerationId: generation, MemberId: member}
	for id, a := range assignments {
		req.Assignments = append(req.Assignments, msg.SyncGroupRequestAssignment{MemberId: id, Assignment: a})
	}
	a := &answer[*msg.SyncGroupResponse]{}
	h.c.SyncGroup(h.rc(5), req, a.reply)
	return a
}

func (h *harness) heartbeat(member string, generation int32) int16 {
	return h.c.Heartbeat(h.rc(4), &msg.HeartbeatRequest{GroupId: "g", GenerationId: generation, MemberId: member}).ErrorCode
}

func (h *harness) commit(version int16, member string, generation int32, offsets map[int32]int64) *answer[*msg.OffsetCommitResponse] {
	req := &msg.OffsetCommitRequest{GroupId: "g", GenerationIdOrMemberEpoch: generation, MemberId: member, RetentionTimeMs: -1}
	t := msg.OffsetCommitRequestTopic{Name: "t"}
	for p, off := range offsets {
		md := fmt.Sprintf("md-%d", p)
		t.Partitions = append(t.Partitions, msg.OffsetCommitRequestPartition{PartitionIndex: p, CommittedOffset: off, CommittedLeaderEpoch: 7, CommittedMetadata: &md})
	}
	req.Topics = []msg.OffsetCommitRequestTopic{t}
	a := &answer[*msg.OffsetCommitResponse]{}
	h.c.CommitOffsets(h.rc(version), req, a.reply)
	return a
}

// fetched returns the committed offsets of group g on topic t (v8 API).
func (h *harness) fetched(group string) map[int32]msg.OffsetFetchResponsePartitions {
	resp := h.c.FetchOffsets(h.rc(8), &msg.OffsetFetchRequest{Groups: []msg.OffsetFetchRequestGroup{{GroupId: group, MemberEpoch: -1}}})
	out := map[int32]msg.OffsetFetchResponsePartitions{}
	for _, t := range resp.Groups[0].Topics {
		if t.Name == "t" {
			for _, p := range t.Partitions {
				out[p.PartitionIndex] = p
			}
		}
	}
	return out
}

var errTestStorage = errors.New("injected storage failure")
