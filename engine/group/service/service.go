// Package service runs the group coordinator (engine/group, a pure state
// machine) on a broker: one mutex serialises every call into it, one timer
// fires its next deadline (no polling), and its records go to the
// partitions of the internal topic __consumer_offsets on the broker's
// shards, appended with acks=all so a commit is answered only after its
// datasync. At start-up every partition is read back from its log start
// (the latest snapshot, see engine/group) while requests for its groups
// are answered COORDINATOR_LOAD_IN_PROGRESS. Consumer-group lag is
// exported to the broker's Prometheus registry (metrics.go).
package service

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
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

// Topic is the internal topic holding group metadata and offsets.
const Topic = "__consumer_offsets"

// maxBatchBytes bounds one record batch of the coordinator's appends, well
// under the topic's max.message.bytes; one record larger than that still
// gets a batch of its own (and fails with MESSAGE_TOO_LARGE past the limit,
// as in Kafka).
const maxBatchBytes = 512 << 10

// loadReadBytes is how much of a partition is read at once at start-up.
const loadReadBytes = 1 << 20

// Service is the group coordinator of one broker.
type Service struct {
	b      *engine.Broker
	logger *slog.Logger
	topic  *meta.Topic

	mu     sync.Mutex // guards c and the timer
	c      *group.Coordinator
	timer  *time.Timer
	armed  time.Time // the deadline the timer is set for; zero when idle
	closed bool

	// Completions of appends, run in order by one goroutine under mu.
	doneMu   sync.Mutex
	doneFns  []func()
	doneWake chan struct{}
	stop     chan struct{}
	wg       sync.WaitGroup

	catMu   sync.Mutex
	catSnap *meta.Snapshot
	cat     *group.Catalog

	unregisterMetrics func()
}

// Start creates __consumer_offsets if needed and starts the coordinator;
// its partitions load in the background.
func Start(b *engine.Broker) (*Service, error) {
	cfg, topicCfg, partitions, err := configFrom(b)
	if err != nil {
		return nil, err
	}
	t, err := b.EnsureInternalTopic(Topic, partitions, topicCfg)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", Topic, err)
	}
	cfg.Partitions = int32(len(t.Partitions))
	s := &Service{b: b, logger: b.Logger, topic: t, doneWake: make(chan struct{}, 1), stop: make(chan struct{})}
	cfg.Topics = s.catalog
	cfg.Logger = b.Logger
	now := time.Now()
	s.c = group.New(cfg, s, now)
	s.timer = time.AfterFunc(time.Hour, s.fire)
	s.timer.Stop()
	s.mu.Lock()
	s.rearm()
	s.mu.Unlock()
	s.wg.Add(2)
	go s.runCompletions()
	go s.load()
	s.unregisterMetrics = s.registerMetrics()
	b.OnClose(s.Close)
	return s, nil
}

// configFrom reads the coordinator's settings from server.properties under
// their Kafka names.
func configFrom(b *engine.Broker) (group.Config, map[string]string, int32, error) {
	cfg := group.DefaultConfig()
	props := b.Cfg.Props
	var err error
	ms := func(key string, dst *time.Duration, unit time.Duration) {
		v, ok := props[key]
		if !ok || err != nil {
			return
		}
		n, perr := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if perr != nil || n < 0 {
			err = fmt.Errorf("%s=%q: want a non-negative integer", key, v)
			return
		}
		*dst = time.Duration(n) * unit
	}
	integer := func(key string, dst *int) {
		v, ok := props[key]
		if !ok || err != nil {
			return
		}
		n, perr := strconv.Atoi(strings.TrimSpace(v))
		if perr != nil || n <= 0 {
			err = fmt.Errorf("%s=%q: want a positive integer", key, v)
			return
		}
		*dst = n
	}
	ms("group.min.session.timeout.ms", &cfg.MinSessionTimeout, time.Millisecond)
	ms("group.max.session.timeout.ms", &cfg.MaxSessionTimeout, time.Millisecond)
	ms("group.initial.rebalance.delay.ms", &cfg.InitialRebalanceDelay, time.Millisecond)
	ms("offsets.retention.minutes", &cfg.OffsetsRetention, time.Minute)
	ms("offsets.retention.check.interval.ms", &cfg.OffsetsRetentionCheck, time.Millisecond)
	ms("group.consumer.session.timeout.ms", &cfg.ConsumerSessionTimeout, time.Millisecond)
	ms("group.consumer.heartbeat.interval.ms", &cfg.ConsumerHeartbeatInterval, time.Millisecond)
	integer("group.max.size", &cfg.MaxGroupSize)
	integer("group.consumer.max.size", &cfg.ConsumerMaxSize)
	integer("offset.metadata.max.bytes", &cfg.OffsetMetadataMaxBytes)
	// sluice's own: how far the log grows before a snapshot (see engine/group).
	integer("sluice.offsets.snapshot.min.bytes", &cfg.SnapshotMinBytes)
	if v, ok := props["group.consumer.assignors"]; ok {
		var names []string
		for _, a := range strings.Split(v, ",") {
			a = strings.TrimSpace(a)
			switch {
			case a == "uniform" || strings.HasSuffix(a, ".UniformAssignor"):
				names = append(names, "uniform")
			case a == "range" || strings.HasSuffix(a, ".RangeAssignor"):
				names = append(names, "range")
			case a == "":
			default:
				return cfg, nil, 0, fmt.Errorf("group.consumer.assignors: unknown assignor %q (sluice has uniform and range)", a)
			}
		}
		if len(names) > 0 {
			cfg.ConsumerAssignors = names
		}
	}
	// One partition per shard by default: appends of different groups
	// then datasync in parallel, and each shard group-commits its own.
	partitions := max(b.Cfg.Shards, 1)
	integer("offsets.topic.num.partitions", &partitions)
	segmentBytes := 100 << 20
	integer("offsets.topic.segment.bytes", &segmentBytes)
	topicCfg := map[string]string{
		"cleanup.policy":      "compact",
		"retention.ms":        "-1", // the coordinator trims the log itself, after snapshots
		"retention.bytes":     "-1",
		"segment.bytes":       strconv.Itoa(segmentBytes),
		"min.insync.replicas": "1",
		"compression.type":    "producer",
	}
	return cfg, topicCfg, int32(partitions), err
}

// Do runs fn on the coordinator, serialised with everything else that
// touches it. Replies fn arranges may run later (from the completion
// goroutine or the timer), also under the same lock.
func (s *Service) Do(fn func(c *group.Coordinator, now time.Time)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s.c, time.Now())
	s.rearm()
}

// rearm points the timer at the coordinator's next deadline. Call with mu.
func (s *Service) rearm() {
	if s.closed {
		return
	}
	next, ok := s.c.NextDeadline()
	if !ok {
		if !s.armed.IsZero() {
			s.timer.Stop()
			s.armed = time.Time{}
		}
		return
	}
	if next.Equal(s.armed) {
		return
	}
	s.armed = next
	s.timer.Reset(max(time.Until(next), 0))
}

func (s *Service) fire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.armed = time.Time{}
	s.c.Advance(time.Now())
	s.rearm()
}

// Close stops the timer and the completion goroutine. Appends still in
// flight complete into nothing; the shards stop after this.
func (s *Service) Close() {
	s.mu.Lock()
	if s.closed {
		// Closed once already (a demotion, then the broker's shutdown).
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.timer.Stop()
	s.mu.Unlock()
	s.unregisterMetrics()
	close(s.stop)
	s.wg.Wait()
}

// Append implements group.Log: the records become batches appended with
// acks=all to the partition's shard; done runs on the completion goroutine.
func (s *Service) Append(p int32, recs []group.Record, done func(base int64, err error)) {
	set, err := buildBatches(recs, time.Now().UnixMilli())
	if err != nil {
		s.complete(func() { done(-1, err) })
		return
	}
	k := shard.Key{Topic: Topic, Partition: p}
	s.b.ShardOf(s.topic, p).Do(func(sh *shard.Shard) {
		sh.Produce(k, set, -1, func(r shard.ProduceResult) {
			var err error
			if r.Err != kerr.None {
				err = kerr.New(r.Err, r.ErrMessage)
			}
			s.complete(func() { done(r.BaseOffset, err) })
		})
	})
}

// Trim implements group.Log: a durable snapshot starts at offset, so
// everything before it can go (DeleteRecords: whole segments are deleted
// and the new log start is checkpointed).
func (s *Service) Trim(p int32, offset int64) {
	k := shard.Key{Topic: Topic, Partition: p}
	s.b.ShardOf(s.topic, p).Do(func(sh *shard.Shard) {
		sh.DeleteRecords(k, offset, func(_ int64, code kerr.Code) {
			if code != kerr.None {
				s.logger.Warn("trimming __consumer_offsets failed", "partition", p, "offset", offset, "err", code)
			}
		})
	})
}

// buildBatches encodes records as uncompressed v2 batches of at most
// maxBatchBytes (one record per batch when a record is larger).
func buildBatches(recs []group.Record, nowMs int64) ([]byte, error) {
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
	for _, r := range recs {
		n := len(r.Key) + len(r.Value) + 32
		if size+n > maxBatchBytes {
			if err := flush(); err != nil {
				return nil, err
			}
		}
		batch = append(batch, records.Record{OffsetDelta: int32(len(batch)), Key: r.Key, Value: r.Value})
		size += n
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return set, nil
}

// complete queues a completion for the completion goroutine, which runs
// them in order under the coordinator's lock. It never blocks: it is
// called on shard threads.
func (s *Service) complete(fn func()) {
	s.doneMu.Lock()
	s.doneFns = append(s.doneFns, fn)
	s.doneMu.Unlock()
	select {
	case s.doneWake <- struct{}{}:
	default:
	}
}

func (s *Service) runCompletions() {
	defer s.wg.Done()
	var fns []func()
	for {
		select {
		case <-s.doneWake:
		case <-s.stop:
			return
		}
		s.doneMu.Lock()
		fns, s.doneFns = s.doneFns, fns[:0]
		s.doneMu.Unlock()
		if len(fns) == 0 {
			continue
		}
		s.mu.Lock()
		for i, fn := range fns {
			fn()
			fns[i] = nil
		}
		s.rearm()
		s.mu.Unlock()
	}
}

// catalog converts the broker's topic catalogue for the coordinator,
// cached per catalogue snapshot.
func (s *Service) catalog() *group.Catalog {
	snap := s.b.Meta.Snapshot()
	s.catMu.Lock()
	defer s.catMu.Unlock()
	if snap == s.catSnap && s.cat != nil {
		return s.cat
	}
	version := uint64(1)
	if s.cat != nil {
		version = s.cat.Version + 1
	}
	cat := &group.Catalog{Version: version, ByName: make(map[string]*group.Topic, len(snap.Topics)), ByID: make(map[[16]byte]*group.Topic, len(snap.Topics))}
	for name, t := range snap.Topics {
		gt := &group.Topic{Name: name, ID: t.ID, Partitions: int32(len(t.Partitions)), Internal: t.Internal}
		cat.ByName[name] = gt
		cat.ByID[t.ID] = gt
	}
	s.catSnap, s.cat = snap, cat
	return cat
}

// load reads every partition of __consumer_offsets back into the
// coordinator, one partition at a time; each serves as soon as it is read.
func (s *Service) load() {
	defer s.wg.Done()
	start := time.Now()
	total := 0
	for p := range int32(len(s.topic.Partitions)) {
		select {
		case <-s.stop:
			return
		default:
		}
		recs, err := s.readPartition(p)
		if err != nil {
			// Serving the partition without its state would lose commits:
			// its groups stay COORDINATOR_LOAD_IN_PROGRESS.
			s.logger.Error("loading __consumer_offsets failed; its groups stay unavailable", "partition", p, "err", err)
			continue
		}
		total += len(recs)
		s.mu.Lock()
		s.c.LoadPartition(p, time.Now(), recs)
		s.rearm()
		s.mu.Unlock()
	}
	s.logger.Info("group coordinator loaded", "partitions", len(s.topic.Partitions), "records", total, "took", time.Since(start).Round(time.Microsecond))
}

// readAnswer receives a ReadAsync's answer.
type readAnswer chan shard.ReadResult

func (a readAnswer) ReadDone(r shard.ReadResult) { a <- r }

// readPartition returns the records of a partition from its log start.
func (s *Service) readPartition(p int32) ([]group.Record, error) {
	k := shard.Key{Topic: Topic, Partition: p}
	sh := s.b.ShardOf(s.topic, p)
	var bounds shard.Offsets
	sh.Call(func(sh *shard.Shard) { bounds = sh.PartitionOffsets(k) })
	if bounds.Err != kerr.None {
		return nil, bounds.Err.Err()
	}
	var out []group.Record
	var scratch []byte
	next := bounds.LogStartOffset
	for next < bounds.HighWatermark {
		// ReadAsync, not Read: the shard reads what is not in memory
		// through its ring and loads old segments' indexes beside itself,
		// so loading groups after a restart never stalls its partitions.
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
			err := records.ForEachRecord(batch, scratch[:0], func(r *records.Record) error {
				if h.BaseOffset+int64(r.OffsetDelta) < bounds.LogStartOffset {
					return nil
				}
				rec := group.Record{Key: append([]byte(nil), r.Key...)}
				if r.Value != nil {
					rec.Value = append([]byte{}, r.Value...)
				}
				out = append(out, rec)
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
