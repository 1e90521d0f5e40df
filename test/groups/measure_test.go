package groups

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestMeasure prints the numbers the README quotes: rebalance time of a
// 3-member group (classic versus KIP-848), offset commits per second with
// acks=all durability, and broker memory per idle group. It is a
// measurement, not a check, so it runs only with SLUICE_GROUPS_MEASURE=1:
//
//	make build && SLUICE_GROUPS_MEASURE=1 go test -count=1 -v -run TestMeasure ./test/groups/
func TestMeasure(t *testing.T) {
	if os.Getenv("SLUICE_GROUPS_MEASURE") == "" {
		t.Skip("a measurement; set SLUICE_GROUPS_MEASURE=1 to run it")
	}
	t.Run("rebalance", func(t *testing.T) {
		for _, mode := range []string{"classic-eager-range", "classic-cooperative-sticky", "kip848-uniform"} {
			join, leave := measureRebalance(t, mode)
			t.Logf("%-28s 3 members join a new group: %v; after one leaves, the other two own everything in %v", mode, join.Round(time.Millisecond), leave.Round(time.Millisecond))
		}
	})
	t.Run("commits", func(t *testing.T) {
		for _, n := range []int{1, 16, 64} {
			rate := measureCommits(t, n)
			t.Logf("%2d committers: %.0f commits/s (acks=all: each answered after its datasync)", n, rate)
		}
	})
	t.Run("memory", func(t *testing.T) {
		perGroup := measureGroupMemory(t, 20000)
		t.Logf("memory per idle group (one committed offset): %.0f bytes of broker RSS", perGroup)
	})
}

// measureRebalance starts 3 in-process consumers on a 6-partition topic and
// times until they own every partition, then closes one and times until the
// other two own everything again.
func measureRebalance(t *testing.T, mode string) (join, leave time.Duration) {
	b := startBroker(t, nil)
	topic, group := "m-"+mode, "g-"+mode
	createTopic(t, b.admin(t), topic, 6)
	var mu sync.Mutex
	owned := map[int]map[int32]bool{}
	total := func(members ...int) bool {
		mu.Lock()
		defer mu.Unlock()
		seen := map[int32]int{}
		for _, m := range members {
			for p := range owned[m] {
				seen[p]++
			}
		}
		if len(seen) != 6 {
			return false
		}
		for _, n := range seen {
			if n != 1 {
				return false
			}
		}
		return true
	}
	var clients []*kgo.Client
	start := time.Now()
	for i := range 3 {
		owned[i] = map[int32]bool{}
		opts := []kgo.Opt{
			kgo.SeedBrokers(b.addr), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
			kgo.SessionTimeout(6 * time.Second), kgo.HeartbeatInterval(200 * time.Millisecond),
			kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
				mu.Lock()
				for _, p := range m[topic] {
					owned[i][p] = true
				}
				mu.Unlock()
			}),
			kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
				mu.Lock()
				for _, p := range m[topic] {
					delete(owned[i], p)
				}
				mu.Unlock()
			}),
		}
		switch mode {
		case "classic-eager-range":
			opts = append(opts, kgo.Balancers(kgo.RangeBalancer()))
		case "classic-cooperative-sticky":
			opts = append(opts, kgo.Balancers(kgo.CooperativeStickyBalancer()))
		default:
			opts = append(opts, kgo.Balancers(kgo.CooperativeStickyBalancer()), kgo.ServerSideBalancer())
		}
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, cl)
		go func() {
			for {
				if f := cl.PollFetches(context.Background()); f.IsClientClosed() {
					return
				}
			}
		}()
	}
	waitFor(t, 60*time.Second, "3 members own everything", func() (bool, string) { return total(0, 1, 2), "" })
	join = time.Since(start)
	// Let the group settle (a cooperative second round, KIP-848 epochs).
	time.Sleep(2 * time.Second) // measurement pause, not a condition
	start = time.Now()
	clients[2].Close()
	waitFor(t, 60*time.Second, "2 members own everything", func() (bool, string) { return total(0, 1), "" })
	leave = time.Since(start)
	clients[0].Close()
	clients[1].Close()
	return join, leave
}

// measureCommits runs n committers, each committing one offset at a time
// to its own group, for 3 seconds.
func measureCommits(t *testing.T, n int) float64 {
	b := startBroker(t, nil)
	createTopic(t, b.admin(t), "commits", 1)
	adm := kadm.NewClient(b.client(t))
	var done atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			group := fmt.Sprintf("committer-%d", i)
			for off := int64(0); ctx.Err() == nil; off++ {
				offsets := kadm.Offsets{}
				offsets.AddOffset("commits", 0, off, -1)
				if _, err := adm.CommitOffsets(ctx, group, offsets); err == nil {
					done.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return float64(done.Load()) / 3
}

// measureGroupMemory creates n simple groups with one committed offset each
// and compares the broker's resident memory before and after.
func measureGroupMemory(t *testing.T, n int) float64 {
	b := startBroker(t, nil)
	createTopic(t, b.admin(t), "mem", 1)
	adm := kadm.NewClient(b.client(t))
	ctx := context.Background()
	commit := func(from, to int) {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 32)
		for i := from; i < to; i++ {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				offsets := kadm.Offsets{}
				offsets.AddOffset("mem", 0, int64(i), -1)
				if _, err := adm.CommitOffsets(ctx, fmt.Sprintf("idle-group-%06d", i), offsets); err != nil {
					t.Errorf("commit: %v", err)
				}
			}()
		}
		wg.Wait()
	}
	commit(0, 1000) // warm up the broker's buffers
	time.Sleep(time.Second)
	before := rss(t, b)
	commit(1000, 1000+n)
	time.Sleep(time.Second)
	after := rss(t, b)
	return float64(after-before) / float64(n)
}

func rss(t *testing.T, b *broker) int64 {
	b.mu.Lock()
	pid := b.cmd.Process.Pid
	b.mu.Unlock()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
