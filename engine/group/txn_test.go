package group

import (
	"testing"

	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

func (h *harness) txnCommit(pid int64, offsets map[int32]int64) *answer[*msg.TxnOffsetCommitResponse] {
	req := &msg.TxnOffsetCommitRequest{TransactionalId: "app", GroupId: "g", ProducerId: pid, GenerationId: -1}
	t := msg.TxnOffsetCommitRequestTopic{Name: "t"}
	for p, off := range offsets {
		t.Partitions = append(t.Partitions, msg.TxnOffsetCommitRequestPartition{PartitionIndex: p, CommittedOffset: off, CommittedLeaderEpoch: -1})
	}
	req.Topics = []msg.TxnOffsetCommitRequestTopic{t}
	a := &answer[*msg.TxnOffsetCommitResponse]{}
	h.c.TxnCommitOffsets(h.rc(3), req, a.reply)
	return a
}

func (h *harness) completeTxn(pid int64, commit bool) {
	h.t.Helper()
	var got error
	called := false
	h.c.CompleteTxn(h.now, pid, 0, commit, 0, func(err error) { got, called = err, true })
	h.log.flush()
	if !called || got != nil {
		h.t.Fatalf("CompleteTxn(%d, commit %v): called %v, err %v", pid, commit, called, got)
	}
}

// stableFetch is OffsetFetch v8 with require_stable for partition p of t.
func (h *harness) stableFetch(p int32) msg.OffsetFetchResponsePartitions {
	resp := h.c.FetchOffsets(h.rc(8), &msg.OffsetFetchRequest{RequireStable: true, Groups: []msg.OffsetFetchRequestGroup{{GroupId: "g", MemberEpoch: -1,
		Topics: []msg.OffsetFetchRequestTopics{{Name: "t", PartitionIndexes: []int32{p}}}}}})
	return resp.Groups[0].Topics[0].Partitions[0]
}

// Offsets committed in a transaction reach the group only when it commits;
// an abort drops them; until then a stable fetch is refused; a reload
// keeps them pending.
func TestTransactionalOffsets(t *testing.T) {
	h := newHarness(t, testConfig())
	a := h.txnCommit(7, map[int32]int64{0: 10, 1: 20})
	h.log.flush()
	for _, p := range a.wait(t, "TxnOffsetCommit").Topics[0].Partitions {
		if p.ErrorCode != 0 {
			t.Fatalf("TxnOffsetCommit partition %d: %v", p.PartitionIndex, kerr.Code(p.ErrorCode))
		}
	}
	if got := h.fetched("g"); len(got) != 0 {
		t.Fatalf("offsets visible before the commit: %+v", got)
	}
	if p := h.stableFetch(0); p.ErrorCode != int16(kerr.UnstableOffsetCommit) {
		t.Fatalf("stable fetch during the transaction: %+v", p)
	}
	// A reload keeps them pending.
	recs := h.log.records(0)
	c2 := New(h.c.Config(), h.log, h.now)
	c2.LoadPartition(0, h.now, recs)
	h.c = c2
	if p := h.stableFetch(1); p.ErrorCode != int16(kerr.UnstableOffsetCommit) {
		t.Fatalf("after a reload, stable fetch: %+v", p)
	}
	h.completeTxn(7, true)
	got := h.fetched("g")
	if got[0].CommittedOffset != 10 || got[1].CommittedOffset != 20 {
		t.Fatalf("after the commit: %+v", got)
	}
	if p := h.stableFetch(0); p.ErrorCode != 0 || p.CommittedOffset != 10 {
		t.Fatalf("stable fetch after the commit: %+v", p)
	}
	h.completeTxn(7, true) // a marker written again: harmless

	h.txnCommit(8, map[int32]int64{0: 99})
	h.log.flush()
	h.completeTxn(8, false)
	if got := h.fetched("g"); got[0].CommittedOffset != 10 {
		t.Fatalf("after an abort: %+v", got)
	}
	// Reloaded from the log, the outcome is the same.
	c3 := New(h.c.Config(), h.log, h.now)
	c3.LoadPartition(0, h.now, h.log.records(0))
	h.c = c3
	if got := h.fetched("g"); got[0].CommittedOffset != 10 || got[1].CommittedOffset != 20 {
		t.Fatalf("after a reload: %+v", got)
	}
	if p := h.stableFetch(0); p.ErrorCode != 0 {
		t.Fatalf("a reload brought back a completed transaction's offsets: %+v", p)
	}
}

// A completion fences older epochs of its producer: a zombie's
// TxnOffsetCommit is refused, also one whose write was under way, and its
// offsets never reach the group.
func TestTransactionalOffsetsOfAFencedProducer(t *testing.T) {
	h := newHarness(t, testConfig())
	zombie := h.txnCommit(7, map[int32]int64{0: 10}) // epoch 0, write in flight
	done := false
	h.c.CompleteTxn(h.now, 7, 1, false, 0, func(err error) { done = err == nil }) // fencing abort, epoch 1
	h.log.flush()
	if !done {
		t.Fatal("the fencing completion did not finish")
	}
	if p := zombie.wait(t, "the zombie's commit").Topics[0].Partitions[0]; p.ErrorCode != int16(kerr.ProducerFenced) {
		t.Fatalf("a commit fenced while its write was under way: %v", kerr.Code(p.ErrorCode))
	}
	late := h.txnCommit(7, map[int32]int64{1: 20})
	h.log.flush()
	if p := late.wait(t, "a late commit").Topics[0].Partitions[0]; p.ErrorCode != int16(kerr.ProducerFenced) {
		t.Fatalf("a commit of a fenced epoch: %v", kerr.Code(p.ErrorCode))
	}
	if p := h.stableFetch(0); p.ErrorCode != 0 {
		t.Fatalf("the zombie's offsets are pending: %+v", p)
	}
	// The new instance's transaction (epoch 1) commits its own only.
	req := &msg.TxnOffsetCommitRequest{TransactionalId: "app", GroupId: "g", ProducerId: 7, ProducerEpoch: 1, GenerationId: -1,
		Topics: []msg.TxnOffsetCommitRequestTopic{{Name: "t", Partitions: []msg.TxnOffsetCommitRequestPartition{{PartitionIndex: 2, CommittedOffset: 30, CommittedLeaderEpoch: -1}}}}}
	a := &answer[*msg.TxnOffsetCommitResponse]{}
	h.c.TxnCommitOffsets(h.rc(3), req, a.reply)
	h.log.flush()
	h.c.CompleteTxn(h.now, 7, 1, true, 0, func(error) {})
	h.log.flush()
	got := h.fetched("g")
	if len(got) != 1 || got[2].CommittedOffset != 30 {
		t.Fatalf("committed offsets %+v: want only partition 2's, from epoch 1", got)
	}
	// Reloaded: no pending offset left behind.
	c2 := New(h.c.Config(), h.log, h.now)
	c2.LoadPartition(0, h.now, h.log.records(0))
	h.c = c2
	for p := range int32(3) {
		if f := h.stableFetch(p); f.ErrorCode != 0 {
			t.Fatalf("after a reload, partition %d: %+v", p, f)
		}
	}
}

// A fenced instance's write that lands after its successor's, for the same
// partition, does not replace it: the successor's commit commits its own
// offset, and the zombie's is dropped.
func TestZombieOffsetDoesNotReplaceItsSuccessors(t *testing.T) {
	h := newHarness(t, testConfig())
	commit := func(epoch int16, off int64) *answer[*msg.TxnOffsetCommitResponse] {
		req := &msg.TxnOffsetCommitRequest{TransactionalId: "app", GroupId: "g", ProducerId: 7, ProducerEpoch: epoch, GenerationId: -1,
			Topics: []msg.TxnOffsetCommitRequestTopic{{Name: "t", Partitions: []msg.TxnOffsetCommitRequestPartition{{PartitionIndex: 0, CommittedOffset: off, CommittedLeaderEpoch: -1}}}}}
		a := &answer[*msg.TxnOffsetCommitResponse]{}
		h.c.TxnCommitOffsets(h.rc(3), req, a.reply)
		return a
	}
	successor := commit(2, 50)
	zombie := commit(0, 10) // in flight at the same time, written after
	h.log.flush()
	successor.wait(t, "the successor's commit")
	zombie.wait(t, "the zombie's commit")
	h.c.CompleteTxn(h.now, 7, 2, true, 0, func(error) {})
	h.log.flush()
	if got := h.fetched("g"); got[0].CommittedOffset != 50 {
		t.Fatalf("committed %+v, want the successor's 50", got)
	}
	if p := h.stableFetch(0); p.ErrorCode != 0 {
		t.Fatalf("a pending offset left behind: %+v", p)
	}
}
