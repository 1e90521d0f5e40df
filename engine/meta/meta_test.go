package meta

import (
	"errors"
	"testing"
)

// memJournal is a metadata log in memory.
type memJournal struct{ recs []Record }

func (j *memJournal) Append(recs []Record) error {
	j.recs = append(j.recs, recs...)
	return nil
}

func TestCatalogueSurvivesReplay(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, 2, "")
	if err != nil {
		t.Fatal(err)
	}
	j := &memJournal{}
	s.SetJournal(j)
	a, err := s.Create("a", 3, map[string]string{"retention.ms": "1000"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create("a", 1, nil, false); !errors.Is(err, ErrTopicExists) {
		t.Fatalf("creating a topic twice: %v", err)
	}
	if _, err := s.AddPartitions("a", 5); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetConfigs("a", map[string]string{"retention.ms": "2000"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create("b", 1, nil, true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete("b"); err != nil {
		t.Fatal(err)
	}
	load := []int{0, 0}
	for _, p := range s.Snapshot().Topics["a"].Partitions {
		load[p.Shard]++
	}
	if load[0]+load[1] != 5 || load[0]-load[1] > 1 || load[1]-load[0] > 1 {
		t.Fatalf("partitions not spread over the shards: %v", load)
	}

	r, err := Open(dir, 2, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Replay(j.recs); err != nil {
		t.Fatal(err)
	}
	if r.ClusterID() != s.ClusterID() {
		t.Fatalf("cluster id changed across a reopen: %s then %s", s.ClusterID(), r.ClusterID())
	}
	got, ok := r.Topic("a")
	if !ok || got.ID != a.ID || len(got.Partitions) != 5 || got.Configs["retention.ms"] != "2000" {
		t.Fatalf("reopened topic a: %+v", got)
	}
	for i, p := range got.Partitions {
		if p != s.Snapshot().Topics["a"].Partitions[i] {
			t.Fatalf("partition placement moved across a replay: %+v", got.Partitions)
		}
	}
	if n := len(j.recs); n != 5 {
		t.Errorf("%d records journalled for 5 changes", n)
	}
	if _, ok := r.Topic("b"); ok {
		t.Fatal("a deleted topic came back")
	}
	if _, ok := r.Snapshot().ByID[a.ID]; !ok {
		t.Fatal("topic not found by id after reopen")
	}

	// Fewer shards: every partition is placed on the shards there are.
	one, err := Open(dir, 1, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := one.Replay(j.recs); err != nil {
		t.Fatal(err)
	}
	for _, p := range one.Snapshot().Topics["a"].Partitions {
		if p.Shard != 0 {
			t.Fatalf("partition %d left on missing shard %d", p.Index, p.Shard)
		}
	}
}
