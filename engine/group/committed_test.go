package group

import (
	"cmp"
	"slices"
	"testing"
)

func TestAppendCommittedOffsetsListsDurableCommits(t *testing.T) {
	h := newHarness(t, testConfig())
	ids, gen := stableGroup(t, h, 1)
	h.commit(9, ids[0], gen, map[int32]int64{0: 10, 3: 42})
	if got := h.c.AppendCommittedOffsets(nil); len(got) != 0 {
		t.Fatalf("listed before durable: %+v", got)
	}
	h.log.flush()
	h.commit(9, ids[0], gen, map[int32]int64{0: 11})
	h.log.flush()
	got := h.c.AppendCommittedOffsets(nil)
	slices.SortFunc(got, func(a, b CommittedOffset) int { return cmp.Compare(a.Partition, b.Partition) })
	want := []CommittedOffset{{"g", "t", 0, 11}, {"g", "t", 3, 42}}
	if !slices.Equal(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}
