package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The failover scenario: producers at a fixed rate with acks=all against a
// replicated cluster (a sluice pair, or Kafka with replication factor 2),
// the leader killed mid-run. It measures what a user of the cluster sees:
// the unavailability window (the last acknowledgement before the kill to
// the first after it), acknowledged records lost (must be 0), and the ack
// latency before and after.

// FailoverConfig is one failover run.
type FailoverConfig struct {
	Bootstrap         []string // every node of the cluster
	Topic             string
	Partitions        int
	ReplicationFactor int16
	Rate              int // records a second
	RecordBytes       int
	Duration          time.Duration // the whole run
	KillAfter         time.Duration // when the leader is killed
	// Kill kills the leader (SIGKILL of its process); AfterKill, if set,
	// runs right after (a manual pair's `sluice promote`).
	Kill, AfterKill func() error
	// MetadataMinAge is the client's fastest metadata refresh (franz-go's
	// default is 5 s; Kafka's Java client refreshes after retry.backoff.ms,
	// 100 ms, which is the default here).
	MetadataMinAge time.Duration
}

// FailoverResult is what a failover run measured.
type FailoverResult struct {
	Sent, Acked, Failed int
	// Lost: acknowledged records not found afterwards; Duplicated: found
	// more than once.
	Lost, Duplicated int
	KilledAt         time.Time
	// Window: the longest time without an acknowledgement that ends after
	// the kill: from the last acknowledgement before the outage to the
	// first after it. (Acknowledgements already on their way when the
	// leader died can arrive just after the kill; they do not close it.)
	Window time.Duration
	// Ack latency (send to acknowledgement) of records acknowledged before
	// the kill, and of records sent after the window closed.
	Before, After Percentiles
}

type failoverAck struct {
	seq        uint64
	sent, done time.Time
	err        error
}

// RunFailover runs the scenario.
func RunFailover(ctx context.Context, cfg FailoverConfig) (*FailoverResult, error) {
	if cfg.Rate <= 0 || cfg.Duration <= cfg.KillAfter || cfg.Kill == nil {
		return nil, errors.New("failover: need a rate, a duration longer than --kill-after, and a process to kill")
	}
	if cfg.MetadataMinAge <= 0 {
		cfg.MetadataMinAge = 100 * time.Millisecond
	}
	if cfg.RecordBytes < 8 {
		cfg.RecordBytes = 8
	}
	adminCl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Bootstrap...))
	if err != nil {
		return nil, err
	}
	adm := kadm.NewClient(adminCl)
	defer adm.Close()
	if _, err := adm.CreateTopic(ctx, int32(cfg.Partitions), cfg.ReplicationFactor, nil, cfg.Topic); err != nil {
		return nil, fmt.Errorf("failover: creating %s: %w", cfg.Topic, err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Bootstrap...), kgo.DefaultProduceTopic(cfg.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0), kgo.RecordRetries(1<<30),
		kgo.RetryTimeout(2*time.Minute), kgo.RecordDeliveryTimeout(2*time.Minute), kgo.MetadataMinAge(cfg.MetadataMinAge),
		kgo.RetryBackoffFn(func(int) time.Duration { return 20 * time.Millisecond }))
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	var acks []failoverAck
	res := &FailoverResult{}
	tick := time.NewTicker(time.Second / time.Duration(cfg.Rate))
	killAt := time.NewTimer(cfg.KillAfter)
	end := time.NewTimer(cfg.Duration)
	defer tick.Stop()
	defer killAt.Stop()
	defer end.Stop()
	var seq uint64
	killed := false
loop:
	for {
		select {
		case <-ctx.Done():
			cl.Close()
			return nil, ctx.Err()
		case <-end.C:
			break loop
		case <-killAt.C:
			res.KilledAt = time.Now()
			if err := cfg.Kill(); err != nil {
				cl.Close()
				return nil, fmt.Errorf("failover: killing the leader: %w", err)
			}
			killed = true
			if cfg.AfterKill != nil {
				if err := cfg.AfterKill(); err != nil {
					cl.Close()
					return nil, fmt.Errorf("failover: after the kill: %w", err)
				}
			}
		case <-tick.C:
			v := make([]byte, cfg.RecordBytes)
			binary.BigEndian.PutUint64(v, seq)
			a := failoverAck{seq: seq, sent: time.Now()}
			seq++
			res.Sent++
			cl.Produce(ctx, &kgo.Record{Value: v}, func(_ *kgo.Record, err error) {
				a.done, a.err = time.Now(), err
				mu.Lock()
				acks = append(acks, a)
				mu.Unlock()
			})
		}
	}
	if err := cl.Flush(ctx); err != nil {
		cl.Close()
		return nil, err
	}
	cl.Close()
	if !killed {
		return nil, errors.New("failover: the run ended before the kill")
	}
	// Read everything back, through the surviving node(s).
	present, err := readAllSeqs(ctx, cfg)
	if err != nil {
		return nil, err
	}
	before, after := NewHistogram(), NewHistogram()
	var times []time.Time
	for _, a := range acks {
		if a.err != nil {
			res.Failed++
			continue
		}
		res.Acked++
		switch n := present[a.seq]; {
		case n == 0:
			res.Lost++
		case n > 1:
			res.Duplicated++
		}
		times = append(times, a.done)
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	var firstAfter time.Time // when the outage ended
	for i := 1; i < len(times); i++ {
		if times[i].After(res.KilledAt) && times[i].Sub(times[i-1]) > res.Window {
			res.Window, firstAfter = times[i].Sub(times[i-1]), times[i]
		}
	}
	for _, a := range acks {
		if a.err != nil {
			continue
		}
		switch {
		case a.done.Before(res.KilledAt):
			before.Record(a.done.Sub(a.sent))
		case !firstAfter.IsZero() && a.sent.After(firstAfter):
			after.Record(a.done.Sub(a.sent))
		}
	}
	res.Before, res.After = before.Summary(), after.Summary()
	return res, nil
}

// readAllSeqs reads the topic from its start to its end and counts each
// sequence number.
func readAllSeqs(ctx context.Context, cfg FailoverConfig) (map[uint64]int, error) {
	admCl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Bootstrap...), kgo.MetadataMinAge(cfg.MetadataMinAge))
	if err != nil {
		return nil, err
	}
	adm := kadm.NewClient(admCl)
	defer adm.Close()
	var ends kadm.ListedOffsets
	for try := 0; ; try++ {
		ends, err = adm.ListEndOffsets(ctx, cfg.Topic)
		if err == nil && ends.Error() == nil {
			break
		}
		if try == 50 {
			return nil, fmt.Errorf("failover: listing end offsets: %v %v", err, ends.Error())
		}
		time.Sleep(200 * time.Millisecond)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { want[o.Partition] = o.Offset })
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Bootstrap...), kgo.ConsumeTopics(cfg.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.MetadataMinAge(cfg.MetadataMinAge))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	present := map[uint64]int{}
	next := map[int32]int64{}
	deadline := time.Now().Add(2 * time.Minute)
	for !reached(next, want) {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("failover: reading back: reached %v of %v", next, want)
		}
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		fs := cl.PollFetches(c)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			if len(r.Value) >= 8 {
				present[binary.BigEndian.Uint64(r.Value)]++
			}
			next[r.Partition] = r.Offset + 1
		})
	}
	return present, nil
}

func reached(next, want map[int32]int64) bool {
	for p, w := range want {
		if next[p] < w {
			return false
		}
	}
	return true
}

// Table renders a failover result.
func (r *FailoverResult) Table() string {
	rows := [][2]string{
		{"records sent", fmt.Sprint(r.Sent)},
		{"acknowledged", fmt.Sprint(r.Acked)},
		{"failed (not acknowledged)", fmt.Sprint(r.Failed)},
		{"acknowledged and lost", fmt.Sprint(r.Lost)},
		{"acknowledged and duplicated", fmt.Sprint(r.Duplicated)},
		{"unavailability window", r.Window.Round(time.Millisecond).String()},
		{"ack latency before the kill p50 / p99", fmt.Sprintf("%.1f / %.1f ms", r.Before.P50, r.Before.P99)},
		{"ack latency after the window p50 / p99", fmt.Sprintf("%.1f / %.1f ms", r.After.P50, r.After.P99)},
	}
	out := "| measure | value |\n| --- | --- |\n"
	for _, row := range rows {
		out += "| " + row[0] + " | " + row[1] + " |\n"
	}
	return out
}
