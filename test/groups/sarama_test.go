package groups

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// sarama (IBM/sarama) in a consumer group, in this process: each member is
// its own sarama.ConsumerGroup.

// saramaEvent is what a member did: a session began (setup) or ended
// (cleanup) with its claims, or a record was processed (rec).
type saramaEvent struct {
	at         time.Time
	member     string
	kind       string
	generation int32
	claims     []int32
	partition  int32
	offset     int64
}

type saramaLog struct {
	mu         sync.Mutex
	events     []saramaEvent
	commitErrs []string
}

func (l *saramaLog) add(ev saramaEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ev.at = time.Now()
	l.events = append(l.events, ev)
}

func (l *saramaLog) snapshot() []saramaEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// saramaMember processes records one by one, marking and committing each
// (auto-commit off), and commits again when its session ends.
type saramaMember struct {
	name   string
	topic  string
	log    *saramaLog
	delay  time.Duration // processing time per record
	max    int64         // stop after this many records (0: no limit)
	count  atomic.Int64
	cancel context.CancelFunc
	group  sarama.ConsumerGroup
	done   chan struct{}
}

func (m *saramaMember) Setup(s sarama.ConsumerGroupSession) error {
	m.log.add(saramaEvent{member: m.name, kind: "setup", generation: s.GenerationID(), claims: slices.Sorted(slices.Values(s.Claims()[m.topic]))})
	return nil
}

func (m *saramaMember) Cleanup(s sarama.ConsumerGroupSession) error {
	s.Commit()
	m.log.add(saramaEvent{member: m.name, kind: "cleanup", generation: s.GenerationID(), claims: slices.Sorted(slices.Values(s.Claims()[m.topic]))})
	return nil
}

func (m *saramaMember) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case <-s.Context().Done():
			return nil
		case msg, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			if m.max > 0 && m.count.Add(1) > m.max {
				m.cancel()
				return nil
			}
			m.log.add(saramaEvent{member: m.name, kind: "rec", generation: s.GenerationID(), partition: msg.Partition, offset: msg.Offset})
			time.Sleep(m.delay)
			s.MarkMessage(msg, "")
			s.Commit()
		}
	}
}

func startSaramaMember(t *testing.T, b *broker, name, group, topic string, log *saramaLog, delay time.Duration, max int64) *saramaMember {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V4_0_0_0
	cfg.ClientID = name
	cfg.Consumer.Return.Errors = true
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Enable = false
	cfg.Consumer.MaxWaitTime = 100 * time.Millisecond
	cfg.Consumer.Group.Session.Timeout = 6 * time.Second
	cfg.Consumer.Group.Heartbeat.Interval = 300 * time.Millisecond
	cfg.Consumer.Group.Rebalance.Timeout = 20 * time.Second
	cfg.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyRange()}
	g, err := sarama.NewConsumerGroup([]string{b.addr}, group, cfg)
	if err != nil {
		t.Fatalf("sarama member %s: %v", name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &saramaMember{name: name, topic: topic, log: log, delay: delay, max: max, cancel: cancel, group: g, done: make(chan struct{})}
	go func() {
		for err := range g.Errors() {
			log.mu.Lock()
			log.commitErrs = append(log.commitErrs, fmt.Sprintf("%s: %v", name, err))
			log.mu.Unlock()
		}
	}()
	go func() {
		defer close(m.done)
		for ctx.Err() == nil {
			if err := g.Consume(ctx, []string{topic}, m); err != nil {
				if errors.Is(err, sarama.ErrClosedConsumerGroup) {
					return
				}
				log.mu.Lock()
				log.commitErrs = append(log.commitErrs, fmt.Sprintf("%s: consume: %v", name, err))
				log.mu.Unlock()
				time.Sleep(100 * time.Millisecond) // then join again
			}
		}
	}()
	t.Cleanup(func() { m.close(t) })
	return m
}

// close stops consuming and closes the group client, which leaves the group.
func (m *saramaMember) close(t *testing.T) {
	m.cancel()
	select {
	case <-m.done:
	case <-time.After(30 * time.Second):
		t.Errorf("sarama member %s did not stop within 30 s", m.name)
	}
	m.group.Close()
}

// TestSaramaGroup: sarama members (classic protocol, range): the first
// processes part of the topic, commits and leaves; two more join one after
// the other while records are processed; in every generation each
// partition has one owner and no partition is owned by two members at
// once; they resume exactly at the committed offsets, process every
// record once, and commit up to the log ends.
func TestSaramaGroup(t *testing.T) {
	b := startBroker(t, nil)
	adm := b.admin(t)
	const partitions, perPartition, first = 4, 100, 150
	topic, group := "sarama", "sarama-group"
	createTopic(t, adm, topic, partitions)
	counts := map[int32]int{}
	for p := range int32(partitions) {
		counts[p] = perPartition
	}
	produceCounts(t, b, topic, counts)

	log := &saramaLog{}
	a := startSaramaMember(t, b, "a", group, topic, log, 0, first)
	select {
	case <-a.done:
	case <-time.After(60 * time.Second):
		t.Fatal("sarama member a did not process its records within 60 s")
	}
	a.close(t)
	resume := map[int32]int64{}
	processedA := 0
	for _, ev := range log.snapshot() {
		if ev.kind == "rec" {
			resume[ev.partition] = max(resume[ev.partition], ev.offset+1)
			processedA++
		}
	}
	if processedA != first {
		t.Fatalf("a processed %d records, want %d", processedA, first)
	}
	if got := committedOffsets(t, adm, group, topic); !mapsEqualNonZero(got, resume) {
		t.Fatalf("after a left: committed %v, want what it processed %v", got, resume)
	}

	log2 := &saramaLog{}
	bm := startSaramaMember(t, b, "b", group, topic, log2, 10*time.Millisecond, 0)
	waitFor(t, 30*time.Second, "b to process records", func() (bool, string) {
		for _, ev := range log2.snapshot() {
			if ev.kind == "rec" {
				return true, ""
			}
		}
		return false, "none yet"
	})
	cm := startSaramaMember(t, b, "c", group, topic, log2, 10*time.Millisecond, 0)
	remaining := partitions*perPartition - first
	waitFor(t, 60*time.Second, "every remaining record to be processed", func() (bool, string) {
		seen := map[[2]int64]bool{}
		for _, ev := range log2.snapshot() {
			if ev.kind == "rec" {
				seen[[2]int64{int64(ev.partition), ev.offset}] = true
			}
		}
		return len(seen) >= remaining, fmt.Sprintf("%d of %d", len(seen), remaining)
	})
	bm.close(t)
	cm.close(t)

	evs := log2.snapshot()
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].at.Before(evs[j].at) })
	owner := map[int32]string{}
	byGeneration := map[int32]map[int32]string{}
	consumed := map[int32][]int64{}
	perMember := map[string]int{}
	var story []string
	for _, ev := range evs {
		switch ev.kind {
		case "setup":
			story = append(story, fmt.Sprintf("%s gen %d %v", ev.member, ev.generation, ev.claims))
			if byGeneration[ev.generation] == nil {
				byGeneration[ev.generation] = map[int32]string{}
			}
			for _, p := range ev.claims {
				if o := byGeneration[ev.generation][p]; o != "" {
					t.Errorf("generation %d: partition %d claimed by %s and %s", ev.generation, p, o, ev.member)
				}
				byGeneration[ev.generation][p] = ev.member
				if o := owner[p]; o != "" && o != ev.member {
					t.Errorf("partition %d claimed by %s while %s's session still holds it", p, ev.member, o)
				}
				owner[p] = ev.member
			}
		case "cleanup":
			for _, p := range ev.claims {
				if owner[p] == ev.member {
					delete(owner, p)
				}
			}
		case "rec":
			consumed[ev.partition] = append(consumed[ev.partition], ev.offset)
			perMember[ev.member]++
		}
	}
	t.Logf("a processed %d and committed %v; then sessions %s; processed %v", processedA, resume, strings.Join(story, ", "), perMember)
	shared := false
	for _, owners := range byGeneration {
		ms := map[string]bool{}
		for _, m := range owners {
			ms[m] = true
		}
		shared = shared || len(ms) == 2
	}
	if !shared || perMember["b"] == 0 || perMember["c"] == 0 {
		t.Errorf("b and c did not share the work: %s; processed %v", strings.Join(story, ", "), perMember)
	}
	log2.mu.Lock()
	commitErrs := slices.Clone(log2.commitErrs)
	log2.mu.Unlock()
	for _, e := range commitErrs {
		t.Logf("sarama error: %s", e)
	}
	for p := range int32(partitions) {
		offs := consumed[p]
		if len(offs) == 0 {
			if resume[p] != perPartition {
				t.Errorf("partition %d: nothing processed after resuming at %d", p, resume[p])
			}
			continue
		}
		if offs[0] != resume[p] {
			t.Errorf("partition %d: resumed at %d, committed %d", p, offs[0], resume[p])
		}
		seen := map[int64]int{}
		for _, o := range offs {
			seen[o]++
		}
		for o := resume[p]; o < perPartition; o++ {
			if seen[o] == 0 {
				t.Errorf("partition %d: record %d never processed", p, o)
			}
		}
		if dups := len(offs) - len(seen); dups > 0 && len(commitErrs) == 0 {
			t.Errorf("partition %d: %d records processed twice though every commit succeeded", p, dups)
		}
		if slices.Min(offs) < resume[p] {
			t.Errorf("partition %d: processed %d, before the committed %d", p, slices.Min(offs), resume[p])
		}
	}
	want := map[int32]int64{}
	for p := range int32(partitions) {
		want[p] = perPartition
	}
	if got := committedOffsets(t, adm, group, topic); !mapsEqualNonZero(got, want) {
		t.Errorf("committed at the end: %v, want %v", got, want)
	}
}
