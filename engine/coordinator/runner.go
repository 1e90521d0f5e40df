// Package coordinator runs a coordinator state machine (engine/group's,
// engine/txn's: pure, steppable) on a broker over its internal topic: one
// mutex serialises every call into it, one timer fires its next deadline
// (no polling), its records go to the topic's partitions on the broker's
// shards, appended with acks=all so a change is answered only after its
// datasync (and, while a standby is in sync, its replication), and
// completions run in order on one goroutine under the mutex. At start-up
// every partition is read back from its log start while the machine
// answers its requests COORDINATOR_LOAD_IN_PROGRESS.
package coordinator

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sluice-broker/sluice/engine"
	"github.com/sluice-broker/sluice/engine/group"
	"github.com/sluice-broker/sluice/engine/meta"
	"github.com/sluice-broker/sluice/engine/shard"
	"github.com/sluice-broker/sluice/wire/compress"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/records"
)

// Record is a key/value record of a coordinator's log (a nil Value is a
// tombstone); both coordinators share engine/group's type.
type Record = group.Record

// Machine is the state machine a Runner drives.
type Machine interface {
	// LoadPartition starts serving partition p with the records read
	// from its log, in order.
	LoadPartition(p int32, now time.Time, recs []Record)
	// NextDeadline is when Advance has work to do (ok false: never).
	NextDeadline() (time.Time, bool)
	Advance(now time.Time)
}

// maxBatchBytes bounds one record batch of a coordinator's appends, well
// under the topic's max.message.bytes; one record larger than that still
// gets a batch of its own (and fails with MESSAGE_TOO_LARGE past the limit,
// as in Kafka).
const maxBatchBytes = 512 << 10

// loadReadBytes is how much of a partition is read at once at start-up.
const loadReadBytes = 1 << 20

// Runner runs one Machine over one internal topic.
type Runner struct {
	B      *engine.Broker
	Logger *slog.Logger
	Topic  *meta.Topic
	name   string // for logs: "group coordinator", "transaction coordinator"

	mu     sync.Mutex // guards m and the timer
	m      Machine
	timer  *time.Timer
	armed  time.Time // the deadline the timer is set for; zero when idle
	closed bool

	doneMu   sync.Mutex
	doneFns  []func()
	doneWake chan struct{}
	stop     chan struct{}
	wg       sync.WaitGroup
}

// Start creates the internal topic if needed, builds the machine over the
// runner (its Log) and starts loading the partitions in the background.
func Start(b *engine.Broker, name, topic string, partitions int32, topicCfg map[string]string, build func(r *Runner, partitions int32, now time.Time) Machine) (*Runner, error) {
	t, err := b.EnsureInternalTopic(topic, partitions, topicCfg)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", topic, err)
	}
	r := &Runner{B: b, Logger: b.Logger, Topic: t, name: name, doneWake: make(chan struct{}, 1), stop: make(chan struct{})}
	r.m = build(r, int32(len(t.Partitions)), time.Now())
	r.timer = time.AfterFunc(time.Hour, r.fire)
	r.timer.Stop()
	r.mu.Lock()
	r.rearm()
	r.mu.Unlock()
	r.wg.Add(2)
	go r.runCompletions()
	go r.load()
	return r, nil
}

// Do runs fn serialised with everything else that touches the machine,
// then rearms the timer. Replies fn arranges may run later (from the
// completion goroutine or the timer), under the same lock.
func (r *Runner) Do(fn func(now time.Time)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fn(time.Now())
	r.rearm()
}

// Locked runs fn under the lock unless the runner is closed (metrics).
func (r *Runner) Locked(fn func()) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	fn()
	return true
}

// rearm points the timer at the machine's next deadline. Call with mu.
func (r *Runner) rearm() {
	if r.closed {
		return
	}
	next, ok := r.m.NextDeadline()
	if !ok {
		if !r.armed.IsZero() {
			r.timer.Stop()
			r.armed = time.Time{}
		}
		return
	}
	if next.Equal(r.armed) {
		return
	}
	r.armed = next
	r.timer.Reset(max(time.Until(next), 0))
}

func (r *Runner) fire() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.armed = time.Time{}
	r.m.Advance(time.Now())
	r.rearm()
}

// Close stops the timer and the completion goroutine. Appends still in
// flight complete into nothing; the shards stop after this.
func (r *Runner) Close() bool {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return false
	}
	r.closed = true
	r.timer.Stop()
	r.mu.Unlock()
	close(r.stop)
	r.wg.Wait()
	return true
}

// Append appends recs to partition p with acks=all as batches; done runs
// on the completion goroutine (the machines' Log).
func (r *Runner) Append(p int32, recs []Record, done func(base int64, err error)) {
	set, err := buildBatches(recs, time.Now().UnixMilli())
	if err != nil {
		r.Complete(func() { done(-1, err) })
		return
	}
	k := shard.Key{Topic: r.Topic.Name, Partition: p}
	r.B.ShardOf(r.Topic, p).Do(func(sh *shard.Shard) {
		sh.Produce(k, set, -1, func(res shard.ProduceResult) {
			var err error
			if res.Err != kerr.None {
				err = kerr.New(res.Err, res.ErrMessage)
			}
			r.Complete(func() { done(res.BaseOffset, err) })
		})
	})
}

// Trim lets partition p drop everything before offset: a durable snapshot
// starts there (DeleteRecords: whole segments are deleted and the new log
// start is checkpointed).
func (r *Runner) Trim(p int32, offset int64) {
	k := shard.Key{Topic: r.Topic.Name, Partition: p}
	r.B.ShardOf(r.Topic, p).Do(func(sh *shard.Shard) {
		sh.DeleteRecords(k, offset, func(_ int64, code kerr.Code) {
			if code != kerr.None {
				r.Logger.Warn("trimming a coordinator log failed", "topic", r.Topic.Name, "partition", p, "offset", offset, "err", code)
			}
		})
	})
}

// buildBatches encodes records as uncompressed v2 batches of at most
// maxBatchBytes (one record per batch when a record is larger).
func buildBatches(recs []Record, nowMs int64) ([]byte, error) {
	var set []byte
	var batch []records.Record
	size := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		h := records.Header{PartitionLeaderEpoch: -1, BaseTimestamp: nowMs, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}
		var err error
		set, err = records.AppendBatch(set, h, batch, compress.None)
		batch, size = batch[:0], 0
		return err
	}
	for _, rec := range recs {
		n := len(rec.Key) + len(rec.Value) + 32
		if size+n > maxBatchBytes {
			if err := flush(); err != nil {
				return nil, err
			}
		}
		batch = append(batch, records.Record{OffsetDelta: int32(len(batch)), Key: rec.Key, Value: rec.Value})
		size += n
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return set, nil
}

// Complete queues fn for the completion goroutine, which runs completions
// in order under the machine's lock. It never blocks: shard threads call
// it.
func (r *Runner) Complete(fn func()) {
	r.doneMu.Lock()
	r.doneFns = append(r.doneFns, fn)
	r.doneMu.Unlock()
	select {
	case r.doneWake <- struct{}{}:
	default:
	}
}

func (r *Runner) runCompletions() {
	defer r.wg.Done()
	var fns []func()
	for {
		select {
		case <-r.doneWake:
		case <-r.stop:
			return
		}
		r.doneMu.Lock()
		fns, r.doneFns = r.doneFns, fns[:0]
		r.doneMu.Unlock()
		if len(fns) == 0 {
			continue
		}
		r.mu.Lock()
		for i, fn := range fns {
			fn()
			fns[i] = nil
		}
		r.rearm()
		r.mu.Unlock()
	}
}

// load reads every partition back into the machine, one at a time; each
// serves as soon as it is read.
func (r *Runner) load() {
	defer r.wg.Done()
	start := time.Now()
	total := 0
	for p := range int32(len(r.Topic.Partitions)) {
		select {
		case <-r.stop:
			return
		default:
		}
		recs, err := r.readPartition(p)
		if err != nil {
			// Serving the partition without its state would lose what it
			// holds: its keys stay COORDINATOR_LOAD_IN_PROGRESS.
			r.Logger.Error("loading a coordinator partition failed; it stays unavailable", "topic", r.Topic.Name, "partition", p, "err", err)
			continue
		}
		total += len(recs)
		r.mu.Lock()
		r.m.LoadPartition(p, time.Now(), recs)
		r.rearm()
		r.mu.Unlock()
	}
	r.Logger.Info(r.name+" loaded", "partitions", len(r.Topic.Partitions), "records", total, "took", time.Since(start).Round(time.Microsecond))
}

// readAnswer receives a ReadAsync's answer.
type readAnswer chan shard.ReadResult

func (a readAnswer) ReadDone(res shard.ReadResult) { a <- res }

// readPartition returns the records of a partition from its log start.
func (r *Runner) readPartition(p int32) ([]Record, error) {
	k := shard.Key{Topic: r.Topic.Name, Partition: p}
	sh := r.B.ShardOf(r.Topic, p)
	var bounds shard.Offsets
	sh.Call(func(sh *shard.Shard) { bounds = sh.PartitionOffsets(k) })
	if bounds.Err != kerr.None {
		return nil, bounds.Err.Err()
	}
	var out []Record
	var scratch []byte
	next := bounds.LogStartOffset
	for next < bounds.HighWatermark {
		// ReadAsync, not Read: the shard reads what is not in memory
		// through its ring and loads old segments' indexes beside itself,
		// so loading after a restart never stalls its partitions.
		answer := make(readAnswer, 1)
		sh.Do(func(sh *shard.Shard) { sh.ReadAsync(k, next, loadReadBytes, true, answer) })
		rr := <-answer
		if rr.Err != kerr.None {
			return nil, fmt.Errorf("reading offset %d: %w", next, rr.Err.Err())
		}
		if !rr.HasData {
			break
		}
		buf, err := rr.Data.Bytes()
		rr.Data.Release()
		if err != nil {
			return nil, fmt.Errorf("reading offset %d: %w", next, err)
		}
		it := records.NewIter(buf)
		for {
			batch, h, ok := it.Next()
			if !ok {
				break
			}
			if h.Control() {
				continue
			}
			err := records.ForEachRecord(batch, scratch[:0], func(rec *records.Record) error {
				if h.BaseOffset+int64(rec.OffsetDelta) < bounds.LogStartOffset {
					return nil
				}
				out = append(out, Record{Key: append([]byte(nil), rec.Key...), Value: cloneValue(rec.Value)})
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("batch at offset %d: %w", h.BaseOffset, err)
			}
		}
		if err := it.Err(); err != nil {
			return nil, fmt.Errorf("batches at offset %d: %w", next, err)
		}
		if int64(rr.Data.NextOffset) <= next {
			break
		}
		next = int64(rr.Data.NextOffset)
	}
	return out, nil
}

// cloneValue copies a record value, keeping nil (a tombstone) nil.
func cloneValue(v []byte) []byte {
	if v == nil {
		return nil
	}
	return append([]byte{}, v...)
}
