package groups

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const churnPartitions = 6

// producer writes keyed records in the background until stopped.
type producer struct {
	stopCh chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	keys   []string
	err    error
}

func startProducer(t *testing.T, b *broker, topic string) *producer {
	cl := b.client(t, kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(5*time.Millisecond))
	p := &producer{stopCh: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		n := 0
		for {
			select {
			case <-p.stopCh:
				return
			case <-tick.C:
			}
			var recs []*kgo.Record
			for range 10 {
				recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprintf("k-%d", n)), Value: []byte("v")})
				n++
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			err := cl.ProduceSync(ctx, recs...).FirstErr()
			cancel()
			p.mu.Lock()
			if err != nil && p.err == nil {
				p.err = err
			}
			for _, r := range recs {
				p.keys = append(p.keys, string(r.Key))
			}
			p.mu.Unlock()
		}
	}()
	t.Cleanup(p.stop)
	return p
}

func (p *producer) stop() {
	select {
	case <-p.stopCh:
	default:
		close(p.stopCh)
	}
	<-p.done
}

func (p *producer) produced() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.keys), p.err
}

// watcher samples the group from the broker's side: in every Stable
// generation no partition may have two owners, and committed offsets may
// only move forward.
type watcher struct {
	mu         sync.Mutex
	stable     int // assignments sampled (classic: in Stable generations)
	violations []string
	committed  map[int32]int64
	stop       chan struct{}
	done       chan struct{}
}

func watchGroup(t *testing.T, b *broker, group, topic string, consumerProtocol bool) *watcher {
	cl := b.client(t)
	adm := kadm.NewClient(cl)
	w := &watcher{committed: map[int32]int64{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if consumerProtocol {
				w.sampleConsumerAssignments(ctx, cl, group)
			} else {
				w.sampleAssignments(ctx, cl, group, topic)
			}
			w.sampleOffsets(ctx, adm, group, topic)
			cancel()
		}
	}()
	t.Cleanup(func() {
		select {
		case <-w.stop:
		default:
			close(w.stop)
		}
		<-w.done
	})
	return w
}

func (w *watcher) violate(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.violations) < 20 {
		w.violations = append(w.violations, fmt.Sprintf(format, args...))
	}
}

func (w *watcher) sampleAssignments(ctx context.Context, cl *kgo.Client, group, topic string) {
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = []string{group}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil || len(resp.Groups) != 1 || resp.Groups[0].State != "Stable" {
		return
	}
	w.mu.Lock()
	w.stable++
	w.mu.Unlock()
	owners := map[int32][]string{}
	for _, m := range resp.Groups[0].Members {
		var a kmsg.ConsumerMemberAssignment
		if err := a.ReadFrom(m.MemberAssignment); err != nil {
			w.violate("member %s: assignment does not decode: %v", m.MemberID, err)
			continue
		}
		for _, t := range a.Topics {
			if t.Topic != topic {
				continue
			}
			for _, p := range t.Partitions {
				owners[p] = append(owners[p], m.MemberID)
			}
		}
	}
	for p, ms := range owners {
		if len(ms) > 1 {
			w.violate("partition %d has %d owners in one generation: %v", p, len(ms), ms)
		}
	}
}

// sampleConsumerAssignments checks a KIP-848 group: members' current
// assignments never overlap, whatever the group's state (partitions are
// revoked before they are handed over).
func (w *watcher) sampleConsumerAssignments(ctx context.Context, cl *kgo.Client, group string) {
	req := kmsg.NewPtrConsumerGroupDescribeRequest()
	req.Groups = []string{group}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil || len(resp.Groups) != 1 || resp.Groups[0].ErrorCode != 0 {
		return
	}
	w.mu.Lock()
	w.stable++
	w.mu.Unlock()
	owners := map[int32][]string{}
	for _, m := range resp.Groups[0].Members {
		for _, t := range m.Assignment.TopicPartitions {
			for _, p := range t.Partitions {
				owners[p] = append(owners[p], m.MemberID)
			}
		}
	}
	for p, ms := range owners {
		if len(ms) > 1 {
			w.violate("partition %d assigned to %d members at once: %v", p, len(ms), ms)
		}
	}
}

func (w *watcher) sampleOffsets(ctx context.Context, adm *kadm.Client, group, topic string) {
	resp, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return
	}
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Topic != topic || o.Err != nil {
			return
		}
		w.mu.Lock()
		prev, seen := w.committed[o.Partition]
		w.mu.Unlock()
		if seen && o.At < prev {
			w.violate("partition %d: committed offset went back from %d to %d", o.Partition, prev, o.At)
		}
		w.mu.Lock()
		w.committed[o.Partition] = max(prev, o.At)
		w.mu.Unlock()
	})
}

func (w *watcher) check(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stable == 0 || len(w.committed) == 0 {
		t.Errorf("the watcher saw %d assignment samples and %d committed partitions: it checked nothing", w.stable, len(w.committed))
	}
	t.Logf("watcher: %d assignment samples, committed %v", w.stable, w.committed)
	for _, v := range w.violations {
		t.Error(v)
	}
}

// waitOwners waits until exactly members (by name) own every partition
// between them, each partition once, as the consumers report it.
func waitOwners(t *testing.T, f *fleet, members ...string) {
	t.Helper()
	want := strings.Join(members, ",")
	waitFor(t, 60*time.Second, "partitions owned by "+want, func() (bool, string) {
		owned := f.owned()
		var names []string
		count := map[int32]int{}
		for name, ps := range owned {
			if len(ps) > 0 {
				names = append(names, name)
			}
			for p := range ps {
				count[p]++
			}
		}
		sort.Strings(names)
		state := fmt.Sprintf("owners %v, counts %v", names, count)
		if strings.Join(names, ",") != want || len(count) != churnPartitions {
			return false, state
		}
		for _, n := range count {
			if n != 1 {
				return false, state
			}
		}
		return true, state
	})
}

// waitProgress waits until n more records were processed.
func waitProgress(t *testing.T, f *fleet, n int) {
	t.Helper()
	count := func() int {
		c := 0
		for _, ev := range f.snapshot() {
			if ev.kind == "rec" {
				c++
			}
		}
		return c
	}
	start := count()
	waitFor(t, 60*time.Second, fmt.Sprintf("%d more records processed", n), func() (bool, string) {
		c := count()
		return c-start >= n, fmt.Sprintf("%d processed", c-start)
	})
}

// checkOwnership checks, from the consumers' own reports, that no two
// consumers ever owned a partition at the same time.
func checkOwnership(t *testing.T, f *fleet) {
	t.Helper()
	type interval struct {
		member     string
		start, end time.Time
	}
	now := time.Now()
	open := map[string]map[int32]time.Time{}
	byPartition := map[int32][]interval{}
	f.mu.Lock()
	events := append([]event(nil), f.events...)
	ends := map[string]time.Time{}
	for k, v := range f.ends {
		ends[k] = v
	}
	f.mu.Unlock()
	for _, ev := range events {
		m := open[ev.member]
		if m == nil {
			m = map[int32]time.Time{}
			open[ev.member] = m
		}
		switch ev.kind {
		case "assigned":
			for _, p := range ev.parts {
				if _, ok := m[p]; !ok {
					m[p] = ev.at
				}
			}
		case "revoked", "lost":
			for _, p := range ev.parts {
				if start, ok := m[p]; ok {
					byPartition[p] = append(byPartition[p], interval{ev.member, start, ev.at})
					delete(m, p)
				}
			}
		}
	}
	for member, m := range open {
		end, gone := ends[member]
		if !gone {
			end = now
		}
		for p, start := range m {
			byPartition[p] = append(byPartition[p], interval{member, start, end})
		}
	}
	n := 0
	for _, ivs := range byPartition {
		n += len(ivs)
	}
	t.Logf("ownership: %d intervals over %d partitions from %d events", n, len(byPartition), len(events))
	for p, ivs := range byPartition {
		sort.Slice(ivs, func(i, j int) bool { return ivs[i].start.Before(ivs[j].start) })
		for i := 1; i < len(ivs); i++ {
			prev, cur := ivs[i-1], ivs[i]
			if cur.member != prev.member && cur.start.Before(prev.end) {
				t.Errorf("partition %d owned by %s from %v and by %s until %v", p, cur.member, cur.start.Format("15:04:05.000"), prev.member, prev.end.Format("15:04:05.000"))
			}
		}
	}
}

// checkAllProcessed waits until every produced record was processed and
// the committed offsets reached the end of every partition.
func checkAllProcessed(t *testing.T, f *fleet, adm *kadm.Client, p *producer, group, topic string) {
	t.Helper()
	n, err := p.produced()
	if err != nil {
		t.Fatalf("producing: %v", err)
	}
	p.mu.Lock()
	keys := append([]string(nil), p.keys...)
	p.mu.Unlock()
	waitFor(t, 60*time.Second, "every record processed and committed", func() (bool, string) {
		seen := map[string]bool{}
		for _, ev := range f.snapshot() {
			if ev.kind == "rec" {
				seen[ev.key] = true
			}
		}
		missing := 0
		for _, k := range keys {
			if !seen[k] {
				missing++
			}
		}
		if missing > 0 {
			return false, fmt.Sprintf("%d of %d records not processed", missing, n)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ends, err := adm.ListEndOffsets(ctx, topic)
		if err != nil {
			return false, err.Error()
		}
		committed, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			return false, err.Error()
		}
		behind := []string{}
		ends.Each(func(o kadm.ListedOffset) {
			c, _ := committed.Lookup(topic, o.Partition)
			if c.At != o.Offset {
				behind = append(behind, fmt.Sprintf("p%d %d/%d", o.Partition, c.At, o.Offset))
			}
		})
		if len(behind) > 0 {
			return false, "committed behind the end: " + strings.Join(behind, " ")
		}
		return true, ""
	})
}

// TestClassicGroupChurn runs a 3-member franz-go group (eager range and
// cooperative-sticky) on a 6-partition topic while records flow: a member
// leaves, one crashes (SIGKILL), two rejoin. At every point no partition
// has two owners, committed offsets only move forward, and in the end
// every record was processed and committed.
func TestClassicGroupChurn(t *testing.T) {
	for _, balancer := range []string{"range", "cooperative-sticky"} {
		t.Run(balancer, func(t *testing.T) { runChurn(t, balancer, false) })
	}
}

// TestJavaGroupChurn is the same churn with the Kafka Java client
// (KafkaConsumer.subscribe): classic range, classic cooperative-sticky and
// group.protocol=consumer (KIP-848).
func TestJavaGroupChurn(t *testing.T) {
	prepareJava(t)
	for _, balancer := range []string{"range", "cooperative-sticky", "server"} {
		t.Run(balancer, func(t *testing.T) { runChurn(t, balancer, true) })
	}
}

func runChurn(t *testing.T, balancer string, java bool) {
	if java {
		prepareJava(t)
	}
	b := startBroker(t, nil)
	adm := b.admin(t)
	topic, group := "churn-"+balancer, "group-"+balancer
	createTopic(t, adm, topic, churnPartitions)
	f := newFleet(t, b)
	w := watchGroup(t, b, group, topic, balancer == "server")
	prod := startProducer(t, b, topic)
	spec := func(name string) consumerSpec {
		return consumerSpec{name: name, group: group, topic: topic, balancer: balancer, java: java}
	}
	f.start(spec("a"))
	f.start(spec("b"))
	f.start(spec("c"))
	waitOwners(t, f, "a", "b", "c")
	waitProgress(t, f, 300)

	f.stop("c") // leaves the group
	waitOwners(t, f, "a", "b")
	waitProgress(t, f, 300)

	f.kill("b") // crashes: expelled after its session timeout
	waitOwners(t, f, "a")
	waitProgress(t, f, 300)

	f.start(spec("b2"))
	f.start(spec("c2"))
	waitOwners(t, f, "a", "b2", "c2")
	waitProgress(t, f, 300)

	prod.stop()
	checkAllProcessed(t, f, adm, prod, group, topic)
	checkOwnership(t, f)
	close(w.stop)
	<-w.done
	w.check(t)
	for _, name := range []string{"a", "b2", "c2"} {
		f.stop(name)
	}
}

// TestBrokerKillMidGroup: the broker is SIGKILLed while a group consumes
// and commits (classic cooperative-sticky, and KIP-848). After the restart
// no acknowledged commit is lost, the group carries on and every record is
// processed.
func TestBrokerKillMidGroup(t *testing.T) {
	for _, balancer := range []string{"cooperative-sticky", "server"} {
		t.Run(balancer, func(t *testing.T) { brokerKillMidGroup(t, balancer) })
	}
}

func brokerKillMidGroup(t *testing.T, balancer string) {
	b := startBroker(t, nil)
	adm := b.admin(t)
	topic, group := "killed", "group-killed"
	createTopic(t, adm, topic, churnPartitions)
	f := newFleet(t, b)
	prod := startProducer(t, b, topic)
	f.start(consumerSpec{name: "a", group: group, topic: topic, balancer: balancer})
	f.start(consumerSpec{name: "b", group: group, topic: topic, balancer: balancer})
	waitOwners(t, f, "a", "b")
	waitProgress(t, f, 500)

	b.kill()
	acked := map[int32]int64{}
	for _, ev := range f.snapshot() {
		if ev.kind == "committed" && ev.offset > acked[ev.partition] {
			acked[ev.partition] = ev.offset
		}
	}
	if len(acked) == 0 {
		t.Fatal("no commit was acknowledged before the kill")
	}
	b.restart()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var committed kadm.OffsetResponses
	waitFor(t, 30*time.Second, "offsets after the restart", func() (bool, string) {
		var err error
		committed, err = adm.FetchOffsets(ctx, group)
		if err == nil {
			err = committed.Error()
		}
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	for p, off := range acked {
		got, _ := committed.Lookup(topic, p)
		if got.At < off {
			t.Errorf("partition %d: committed offset %d after the restart, but %d was acknowledged before the kill", p, got.At, off)
		}
	}
	waitProgress(t, f, 300)
	prod.stop()
	checkAllProcessed(t, f, adm, prod, group, topic)
	f.stop("a")
	f.stop("b")
}

// TestStaticMemberRestart: a consumer with a group.instance.id that
// crashes and comes back within its session timeout takes its partitions
// back without a rebalance: the other member sees nothing happen.
func TestStaticMemberRestart(t *testing.T) {
	b := startBroker(t, nil)
	adm := b.admin(t)
	topic, group := "static", "group-static"
	createTopic(t, adm, topic, churnPartitions)
	f := newFleet(t, b)
	prod := startProducer(t, b, topic)
	f.start(consumerSpec{name: "s", group: group, topic: topic, balancer: "range", instance: "instance-1"})
	f.start(consumerSpec{name: "d", group: group, topic: topic, balancer: "range"})
	waitOwners(t, f, "d", "s")
	waitProgress(t, f, 200)
	before := f.owned()["s"]
	changes := func() int {
		n := 0
		for _, ev := range f.snapshot() {
			if ev.member == "d" && (ev.kind == "assigned" || ev.kind == "revoked" || ev.kind == "lost") {
				n++
			}
		}
		return n
	}
	dBefore := changes()
	f.kill("s")
	f.start(consumerSpec{name: "s2", group: group, topic: topic, balancer: "range", instance: "instance-1"})
	waitOwners(t, f, "d", "s2")
	if after := f.owned()["s2"]; fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("the restarted static member owns %v, before %v", after, before)
	}
	waitProgress(t, f, 200)
	if n := changes(); n != dBefore {
		t.Errorf("the other member saw %d assignment changes: a static restart must not rebalance", n-dBefore)
	}
	prod.stop()
	checkAllProcessed(t, f, adm, prod, group, topic)
	f.stop("s2")
	f.stop("d")
}
