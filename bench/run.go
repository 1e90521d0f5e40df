package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Target is the broker a run drives.
type Target struct {
	// Name labels the broker in reports and picks its BrokerTopicConfig
	// ("sluice", "kafka", ...).
	Name      string `json:"name"`
	Bootstrap string `json:"bootstrap"`
	// PID is the broker process sampled from /proc: 0 finds the process
	// listening on the bootstrap port, -1 turns sampling off.
	PID int `json:"pid,omitempty"`
}

// Options are the parts of a run that are not the workload.
type Options struct {
	// Progress receives a live progress line every interval (nil: none).
	// On a terminal the line is redrawn in place; elsewhere one line is
	// written every ProgressEvery.
	Progress      io.Writer
	ProgressEvery time.Duration
	// Interval is the sampling interval (default 1s).
	Interval time.Duration
}

const (
	recordersPerSide = 8
	flushTimeout     = 45 * time.Second
	topicReadyWait   = 60 * time.Second
)

// Run executes one workload against one broker. It returns a result
// whenever anything was measured, with Failed set (and an error returned)
// if the run could not complete.
func Run(ctx context.Context, target Target, w Workload, opt Options) (*Result, error) {
	w.Defaults()
	if err := w.Validate(); err != nil {
		return nil, err
	}
	if opt.Interval <= 0 {
		opt.Interval = time.Second
	}
	if opt.ProgressEvery <= 0 {
		opt.ProgressEvery = 5 * time.Second
	}
	host, _ := os.Hostname()
	res := &Result{Tool: "sluice bench", Broker: target, Workload: w, Host: host, CPUs: runtime.NumCPU(), Started: time.Now().UTC()}
	r := &run{ctx: ctx, target: target, w: &w, opt: opt, res: res}
	err := r.execute()
	if err != nil && res.Failed == "" {
		res.Failed = err.Error()
	}
	res.Errors = r.errors.list()
	return res, err
}

// run is the state of one Run.
type run struct {
	ctx    context.Context
	target Target
	w      *Workload
	opt    Options
	res    *Result

	admin *kadm.Client
	topic string

	errMu  sync.Mutex
	errors errorLog

	produced, consumed     *recorders
	produceTotal, e2eTotal *Histogram
	acked, consumedCount   atomic.Int64
	sampler                *resourceSampler
	progress               *progressLine
}

func (r *run) recordError(where string) func(error) {
	return func(err error) {
		r.errMu.Lock()
		r.errors.add(where, err)
		r.errMu.Unlock()
	}
}

func (r *run) execute() error {
	w := r.w
	pid := r.target.PID
	if pid == 0 {
		if _, portText, err := net.SplitHostPort(r.target.Bootstrap); err == nil {
			port, _ := strconv.Atoi(portText)
			if found, err := FindListenerPID(port); err == nil {
				pid = found
			} else {
				r.res.Resources.SampleError = "broker process not found: " + err.Error()
			}
		}
	}
	if pid > 0 {
		r.res.Resources.BrokerPID = pid
	}
	r.sampler = newResourceSampler(pid)
	if pid > 0 && r.sampler.brokerErr != nil {
		r.res.Resources.SampleError = r.sampler.brokerErr.Error()
	}
	r.progress = newProgressLine(r.opt.Progress, r.opt.ProgressEvery, r.target.Name, w.Name)

	adminClient, err := kgo.NewClient(kgo.SeedBrokers(r.target.Bootstrap), kgo.ClientID("sluice-bench-admin"))
	if err != nil {
		return err
	}
	defer adminClient.Close()
	r.admin = kadm.NewClient(adminClient)

	r.topic = w.Topic
	if !w.TopicExact {
		r.topic = w.Topic + "-" + runID()
	}
	r.res.Topic = r.topic
	createTopic := !(w.Mode == ModeConsume && w.TopicExact)
	if createTopic {
		if err := r.createTopic(); err != nil {
			return fmt.Errorf("create topic %s: %w", r.topic, err)
		}
		if !w.KeepTopic {
			defer r.deleteTopic()
		}
	}
	switch w.Mode {
	case ModeConsume:
		return r.consumeCatchUp()
	default:
		return r.produceRun()
	}
}

func runID() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return time.Now().UTC().Format("150405") + "-" + hex.EncodeToString(b[:])
}

func (r *run) createTopic() error {
	cfg := map[string]*string{}
	for k, v := range r.w.TopicConfigFor(r.target.Name) {
		cfg[k] = kadm.StringPtr(v)
	}
	ctx, cancel := context.WithTimeout(r.ctx, topicReadyWait)
	defer cancel()
	resp, err := r.admin.CreateTopic(ctx, int32(r.w.Partitions), int16(r.w.Replication), cfg, r.topic)
	if err != nil {
		return err
	}
	if resp.Err != nil {
		return resp.Err
	}
	// Wait until every partition is served, so topic creation is not part
	// of the warm-up (or, without warm-up, of the measurement). Metadata
	// naming a leader is not enough: Apache Kafka announces leaders before
	// its replica manager has created the logs (1,000 partitions took it
	// 10-30 s here), and until then produce is refused and retried. A
	// partition answers ListOffsets only once its log exists.
	for {
		if r.topicServed(ctx) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("partitions were not all served (leader known, offsets listable) within %s", topicReadyWait)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (r *run) topicServed(ctx context.Context) bool {
	td, err := r.admin.ListTopics(ctx, r.topic)
	if err != nil {
		return false
	}
	t, ok := td[r.topic]
	if !ok || t.Err != nil || len(t.Partitions) != r.w.Partitions {
		return false
	}
	for _, p := range t.Partitions {
		if p.Err != nil || p.Leader < 0 {
			return false
		}
	}
	ends, err := r.admin.ListEndOffsets(ctx, r.topic)
	if err != nil {
		return false
	}
	served := 0
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil {
			served++
		}
	})
	return served == r.w.Partitions
}

func (r *run) deleteTopic() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := r.admin.DeleteTopics(ctx, r.topic); err != nil {
		r.res.Notes = append(r.res.Notes, "deleting the topic failed: "+err.Error())
	}
}

// roundUp rounds d up to whole intervals.
func roundUp(d, interval time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return (d + interval - 1) / interval * interval
}

// produceRun runs produce and e2e modes.
func (r *run) produceRun() error {
	w := r.w
	iv := r.opt.Interval
	warmup := roundUp(w.Warmup.D(), iv)
	measure := roundUp(w.Duration.D(), iv)
	r.res.WarmupSeconds = warmup.Seconds()

	parts := w.Partitions
	r.produced = newRecorders(min(recordersPerSide, w.Producers), parts)
	r.produceTotal = NewHistogram()
	r.res.Produce = &Throughput{}
	r.res.ProduceLatency = r.produceTotal

	var consumers []*consumer
	var consumerWG sync.WaitGroup
	var measuredNanos atomic.Int64
	consumeCtx, stopConsumers := context.WithCancel(r.ctx)
	defer stopConsumers()
	if w.Mode == ModeE2E {
		r.consumed = newRecorders(min(recordersPerSide, w.Consumers), parts)
		r.e2eTotal = NewHistogram()
		r.res.Consume = &Throughput{}
		r.res.EndToEndLatency = r.e2eTotal
		group := "sluice-bench-" + runID()
		var assigned atomic.Int64
		// Nothing is measured until the clock starts, below.
		measuredNanos.Store(time.Now().Add(24 * time.Hour).UnixNano())
		for i := 0; i < w.Consumers; i++ {
			cl, err := kgo.NewClient(consumerOptions(w, r.target.Bootstrap, r.topic, group, i, w.Consumers, &assigned)...)
			if err != nil {
				return err
			}
			c := &consumer{id: i, client: cl, rec: r.consumed.pick(i), measured: &measuredNanos, consumed: &r.consumedCount, errs: r.recordError("consume")}
			consumers = append(consumers, c)
			consumerWG.Add(1)
			go func() { defer consumerWG.Done(); c.loop(consumeCtx) }()
		}
		defer func() {
			stopConsumers()
			consumerWG.Wait()
			for _, c := range consumers {
				c.client.Close()
			}
		}()
		if w.ConsumerMode == ConsumerGroup {
			if err := r.waitForGroup(&assigned); err != nil {
				return err
			}
		}
	}

	if w.PrefillRecords > 0 {
		if err := r.prefill(w.PrefillRecords); err != nil {
			return fmt.Errorf("prefill: %w", err)
		}
		if w.DropCaches {
			if err := dropCaches(); err != nil {
				r.res.Notes = append(r.res.Notes, "page cache not dropped after the prefill: "+err.Error())
			}
		}
	}
	var bg *backgroundReaders
	if w.BackgroundReaders > 0 {
		var err error
		if bg, err = r.startBackgroundReaders(); err != nil {
			return err
		}
		defer bg.stop()
	}

	var producers []*producer
	for i := 0; i < w.Producers; i++ {
		opts, err := producerOptions(w, r.target.Bootstrap, r.topic)
		if err != nil {
			return err
		}
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			return err
		}
		p := &producer{
			id: i, client: cl, rate: w.Rate / float64(w.Producers), topic: r.topic, size: int(w.RecordSize),
			keys: newKeySource(w, uint64(i)+1), rec: r.produced.pick(i),
			acked: &r.acked, errs: r.recordError("produce"),
		}
		producers = append(producers, p)
	}
	defer func() {
		for _, p := range producers {
			p.client.Close()
		}
	}()

	// The clock starts once every client exists (a hundred take a while).
	// Clients connect lazily, so the first records of the warm-up pay for
	// connection setup.
	start := time.Now().Add(200 * time.Millisecond)
	measured := start.Add(warmup)
	end := measured.Add(measure)
	measuredNanos.Store(measured.UnixNano())
	if bg != nil {
		bg.measureFrom(measured, end)
	}
	for _, p := range producers {
		p.measured = measured
	}

	stop := make(chan struct{})
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }) }
	var loops sync.WaitGroup
	for _, p := range producers {
		loops.Add(1)
		go func() { defer loops.Done(); p.loop(start, end, stop) }()
	}

	time.Sleep(time.Until(start))
	r.sampler = newResourceSampler(r.sampler.brokerPID)
	ticker := time.NewTicker(iv)
	defer ticker.Stop()
	last := start
	var interrupted error
	for !last.Add(iv / 2).After(end) {
		select {
		case <-r.ctx.Done():
			interrupted = r.ctx.Err()
		case now := <-ticker.C:
			r.closeInterval(now.Sub(last), now.Sub(measured), now.Before(measured.Add(iv/2)))
			last = now
			continue
		}
		break
	}
	// The producers stop by themselves at end, after sending every record
	// scheduled before it (a loop that fell behind sends the overdue ones
	// late). Stopping them here instead dropped those on a busy machine:
	// the window's last tick may come before they are sent.
	if interrupted != nil {
		halt()
	}
	loops.Wait()
	r.progress.finish()
	if bg != nil {
		r.res.BackgroundRead = bg.result(measure)
		r.res.Notes = append(r.res.Notes, fmt.Sprintf("%d background readers re-read the %d prefilled records at %.1f MiB/s during the measured phase",
			w.BackgroundReaders, w.PrefillRecords, r.res.BackgroundRead.MiBPerSec))
	}

	// Records sent in the window but acknowledged after it still count for
	// latency, not for throughput.
	flushCtx, cancel := context.WithTimeout(r.ctx, flushTimeout)
	for _, p := range producers {
		if err := p.client.Flush(flushCtx); err != nil {
			r.res.Notes = append(r.res.Notes, fmt.Sprintf("producer %d did not flush within %s: %v", p.id, flushTimeout, err))
		}
	}
	cancel()
	tail := r.produced.take()
	r.produceTotal.Merge(tail.hist)
	r.res.Produce.Errors += tail.errors

	if w.Mode == ModeE2E {
		r.drain(measured)
	}
	r.readOffsets()
	r.finish(measured)
	if r.res.Produce != nil {
		r.res.Produce.PerPartition = r.produced.partitionCounts
	}
	if r.res.Consume != nil {
		r.res.Consume.PerPartition = r.consumed.partitionCounts
	}
	if interrupted != nil {
		return fmt.Errorf("interrupted: %w", interrupted)
	}
	if r.acked.Load() == 0 {
		return errors.New("no record was acknowledged")
	}
	if r.res.Check != nil && !r.res.Check.OK {
		return errors.New("consistency check failed: " + r.res.Check.Detail)
	}
	return nil
}

// waitForGroup waits until the consumer group has assigned every partition
// and the assignment has held for a moment.
func (r *run) waitForGroup(assigned *atomic.Int64) error {
	deadline := time.Now().Add(topicReadyWait)
	var stableSince time.Time
	for time.Now().Before(deadline) {
		if r.ctx.Err() != nil {
			return r.ctx.Err()
		}
		if assigned.Load() == int64(r.w.Partitions) {
			if stableSince.IsZero() {
				stableSince = time.Now()
			} else if time.Since(stableSince) >= time.Second {
				return nil
			}
		} else {
			stableSince = time.Time{}
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.errMu.Lock()
	defer r.errMu.Unlock()
	msg := fmt.Sprintf("the consumer group assigned %d of %d partitions within %s", assigned.Load(), r.w.Partitions, topicReadyWait)
	if errs := r.errors.list(); len(errs) > 0 {
		msg += " (first error: " + errs[0].Message + ")"
	}
	return errors.New(msg)
}

// readOffsets records the topic's summed start and end offsets.
func (r *run) readOffsets() {
	ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
	defer cancel()
	starts, err := r.admin.ListStartOffsets(ctx, r.topic)
	if err != nil || starts.Error() != nil {
		return
	}
	ends, err := r.admin.ListEndOffsets(ctx, r.topic)
	if err != nil || ends.Error() != nil {
		return
	}
	o := &TopicOffsets{}
	starts.Each(func(l kadm.ListedOffset) { o.Start += l.Offset })
	ends.Each(func(l kadm.ListedOffset) { o.End += l.Offset })
	r.res.Offsets = o
}

// drain waits for consumers to read every acknowledged record.
func (r *run) drain(measured time.Time) {
	deadline := time.Now().Add(r.w.DrainTimeout.D())
	for r.consumedCount.Load() < r.acked.Load() && time.Now().Before(deadline) && r.ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	// A moment more, so duplicates (if the broker or client made any) are
	// seen rather than hidden by stopping at exactly the right count.
	time.Sleep(300 * time.Millisecond)
	tail := r.consumed.take()
	r.e2eTotal.Merge(tail.hist)
	acked, consumed := r.acked.Load(), r.consumedCount.Load()
	c := &Check{Acknowledged: acked, Consumed: consumed, Expected: acked, OK: acked == consumed}
	switch {
	case consumed < acked:
		c.Detail = fmt.Sprintf("%d acknowledged records were not consumed within %s", acked-consumed, r.w.DrainTimeout)
	case consumed > acked:
		c.Detail = fmt.Sprintf("%d more records consumed than acknowledged (duplicates)", consumed-acked)
	}
	r.res.Check = c
}

// closeInterval takes the recorders' contents for the interval that just
// ended, samples resources, and adds it to the series (and, when measuring,
// to the totals).
func (r *run) closeInterval(length, sinceMeasured time.Duration, warmup bool) {
	iv := Interval{T: round3(sinceMeasured.Seconds()), Warmup: warmup, Seconds: round3(length.Seconds())}
	if r.produced != nil {
		t := r.produced.take()
		iv.ProducedRecords, iv.ProducedBytes, iv.Errors = t.records, t.bytes, t.errors
		if t.hist.Count() > 0 {
			iv.ProduceP50, iv.ProduceP99, iv.ProduceMax = ms(t.hist.Percentile(50)), ms(t.hist.Percentile(99)), ms(t.hist.Max())
		}
		// Histograms only hold latencies of records intended inside the
		// measured window (recorders drop warm-up ones), whichever interval
		// they completed in.
		r.produceTotal.Merge(t.hist)
		if !warmup {
			r.res.Produce.Records += t.records
			r.res.Produce.Bytes += t.bytes
			r.res.Produce.Errors += t.errors
		}
	}
	if r.consumed != nil {
		t := r.consumed.take()
		iv.ConsumedRecords, iv.ConsumedBytes = t.records, t.bytes
		iv.Errors += t.errors
		if t.hist.Count() > 0 {
			iv.E2EP50, iv.E2EP99, iv.E2EMax = ms(t.hist.Percentile(50)), ms(t.hist.Percentile(99)), ms(t.hist.Max())
		}
		if r.e2eTotal != nil {
			r.e2eTotal.Merge(t.hist)
		}
		if !warmup {
			r.res.Consume.Records += t.records
			r.res.Consume.Bytes += t.bytes
			r.res.Consume.Errors += t.errors
		}
	}
	s := r.sampler.sample()
	iv.BrokerCPU, iv.BrokerRSS, iv.ClientCPU, iv.MachineBusy = round3(s.BrokerCPU), s.BrokerRSS, round3(s.ClientCPU), round3(s.MachineBusy)
	iv.Steal = round3(s.Steal)
	if !warmup {
		r.res.MeasuredSeconds += length.Seconds()
	}
	r.res.Series = append(r.res.Series, iv)
	r.progress.update(iv, r.res)
}

func round3(v float64) float64 {
	if v < 0 {
		return -round3(-v)
	}
	return float64(int64(v*1000+0.5)) / 1000
}

// finish computes rates and the resource summary from the series.
func (r *run) finish(measured time.Time) {
	res := r.res
	secs := res.MeasuredSeconds
	if secs > 0 {
		for _, t := range []*Throughput{res.Produce, res.Consume} {
			if t != nil {
				t.RecordsPerSec = float64(t.Records) / secs
				t.MiBPerSec = float64(t.Bytes) / secs / (1 << 20)
			}
		}
	}
	res.MeasuredSeconds = round3(secs)
	var n int
	rs := &res.Resources
	for _, iv := range res.Series {
		if iv.Warmup {
			continue
		}
		n++
		rs.BrokerCPUAvg += iv.BrokerCPU
		rs.ClientCPUAvg += iv.ClientCPU
		rs.MachineBusyAvg += iv.MachineBusy
		rs.StealCPUAvg += iv.Steal
		rs.BrokerCPUMax = max(rs.BrokerCPUMax, iv.BrokerCPU)
		rs.BrokerRSSMax = max(rs.BrokerRSSMax, iv.BrokerRSS)
		if iv.BrokerRSS > 0 {
			rs.BrokerRSSEnd = iv.BrokerRSS
		}
	}
	if n > 0 {
		rs.BrokerCPUAvg = round3(rs.BrokerCPUAvg / float64(n))
		rs.ClientCPUAvg = round3(rs.ClientCPUAvg / float64(n))
		rs.MachineBusyAvg = round3(rs.MachineBusyAvg / float64(n))
		rs.OtherCPUAvg = round3(max(0, rs.MachineBusyAvg*float64(res.CPUs)-rs.BrokerCPUAvg-rs.ClientCPUAvg))
		rs.StealCPUAvg = round3(min(rs.OtherCPUAvg, rs.StealCPUAvg/float64(n)*float64(res.CPUs)))
	}
	rs.BrokerSampled = rs.BrokerRSSMax > 0
	if r.sampler.brokerErr != nil && rs.SampleError == "" {
		rs.SampleError = r.sampler.brokerErr.Error()
	}
	// The machine was saturated and the client used at least as much CPU as
	// the broker: the broker was not the only bottleneck.
	if rs.MachineBusyAvg >= 0.9 && rs.BrokerSampled && rs.ClientCPUAvg >= rs.BrokerCPUAvg {
		res.ClientBound = true
		res.Notes = append(res.Notes, fmt.Sprintf(
			"client-bound: the machine's %d CPUs were %.0f%% busy and the benchmark client used %.2f CPUs against the broker's %.2f; the broker may be faster than this shows",
			res.CPUs, 100*rs.MachineBusyAvg, rs.ClientCPUAvg, rs.BrokerCPUAvg))
	} else if rs.MachineBusyAvg >= 0.9 {
		res.Notes = append(res.Notes, fmt.Sprintf("CPU-saturated: the machine's %d CPUs were %.0f%% busy (broker %.2f CPUs, client %.2f)",
			res.CPUs, 100*rs.MachineBusyAvg, rs.BrokerCPUAvg, rs.ClientCPUAvg))
	}
}

// consumeCatchUp reads the topic from its start to the end offsets it had
// when the read began, as fast as the consumers go.
func (r *run) consumeCatchUp() error {
	w := r.w
	if w.PrefillRecords > 0 {
		if err := r.prefill(w.PrefillRecords); err != nil {
			return fmt.Errorf("prefill: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
	starts, err := r.admin.ListStartOffsets(ctx, r.topic)
	if err == nil {
		err = starts.Error()
	}
	var ends kadm.ListedOffsets
	if err == nil {
		ends, err = r.admin.ListEndOffsets(ctx, r.topic)
		if err == nil {
			err = ends.Error()
		}
	}
	cancel()
	if err != nil {
		return fmt.Errorf("list offsets of %s: %w", r.topic, err)
	}
	var expected int64
	parts := 0
	ends.Each(func(o kadm.ListedOffset) {
		parts = max(parts, int(o.Partition)+1)
		if s, ok := starts.Lookup(o.Topic, o.Partition); ok {
			expected += o.Offset - s.Offset
		}
	})
	if expected == 0 {
		return fmt.Errorf("topic %s is empty: nothing to read (use prefill_records)", r.topic)
	}
	w.Partitions = parts
	r.res.Workload.Partitions = parts
	r.consumed = newRecorders(min(recordersPerSide, w.Consumers), parts)
	r.res.Consume = &Throughput{}

	var never atomic.Int64 // catch-up latency is not meaningful
	never.Store(time.Now().Add(24 * time.Hour).UnixNano())
	consumeCtx, stopConsumers := context.WithCancel(r.ctx)
	defer stopConsumers()
	var consumers []*consumer
	var wg sync.WaitGroup
	group := "sluice-bench-" + runID()
	var assigned atomic.Int64
	r.sampler = newResourceSampler(r.sampler.brokerPID)
	start := time.Now()
	for i := 0; i < w.Consumers; i++ {
		cl, err := kgo.NewClient(consumerOptions(w, r.target.Bootstrap, r.topic, group, i, w.Consumers, &assigned)...)
		if err != nil {
			return err
		}
		c := &consumer{id: i, client: cl, rec: r.consumed.pick(i), measured: &never, consumed: &r.consumedCount, errs: r.recordError("consume")}
		consumers = append(consumers, c)
		wg.Add(1)
		go func() { defer wg.Done(); c.loop(consumeCtx) }()
	}
	defer func() {
		stopConsumers()
		wg.Wait()
		for _, c := range consumers {
			c.client.Close()
		}
	}()

	iv := r.opt.Interval
	ticker := time.NewTicker(10 * time.Millisecond)
	defer ticker.Stop()
	last, deadline := start, start.Add(w.Duration.D())
	var done time.Time
	for done.IsZero() {
		select {
		case <-r.ctx.Done():
			r.finish(start)
			return fmt.Errorf("interrupted: %w", r.ctx.Err())
		case now := <-ticker.C:
			caughtUp := r.consumedCount.Load() >= expected
			if caughtUp || !now.Before(deadline) {
				done = now
			}
			if now.Sub(last) >= iv || !done.IsZero() {
				r.closeInterval(now.Sub(last), now.Sub(start), false)
				last = now
			}
		}
	}
	r.progress.finish()
	r.finish(start)
	r.res.Consume.PerPartition = r.consumed.partitionCounts
	consumed := r.consumedCount.Load()
	c := &Check{Consumed: consumed, Expected: expected, OK: consumed == expected}
	if consumed < expected {
		c.Detail = fmt.Sprintf("read %d of %d records within %s", consumed, expected, w.Duration)
	} else if consumed > expected {
		c.Detail = fmt.Sprintf("read %d records, %d more than the topic held", consumed, consumed-expected)
	}
	r.res.Check = c
	if !c.OK {
		return errors.New("consistency check failed: " + c.Detail)
	}
	return nil
}

// prefill writes n records as fast as one producer goes, unmeasured.
func (r *run) prefill(n int64) error {
	w := *r.w
	w.Mode = ModeProduce
	opts, err := producerOptions(&w, r.target.Bootstrap, r.topic)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	var acked atomic.Int64
	var firstErr error
	var mu sync.Mutex
	p := &producer{id: 0, client: cl, topic: r.topic, size: int(w.RecordSize), keys: newKeySource(&w, 1),
		rec: newRecorder(w.Partitions), measured: time.Now().Add(24 * time.Hour), acked: &acked,
		errs: func(err error) {
			mu.Lock()
			if firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
		}}
	for i := int64(0); i < n; i++ {
		if r.ctx.Err() != nil {
			return r.ctx.Err()
		}
		p.send(time.Now())
	}
	ctx, cancel := context.WithTimeout(r.ctx, flushTimeout)
	defer cancel()
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	if firstErr != nil {
		return firstErr
	}
	return nil
}
