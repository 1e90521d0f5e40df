// Package service runs the transaction coordinator (engine/txn, a pure
// state machine) on a broker with engine/coordinator: its records go to the
// partitions of the internal topic __transaction_state with acks=all, and
// its markers to the partitions of each transaction, written by their
// shards directly (WriteMarker: what WriteTxnMarkers does between Kafka
// brokers), each acknowledged by the acks=all rule.
package service

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-broker/sluice/engine"
	"github.com/sluice-broker/sluice/engine/coordinator"
	"github.com/sluice-broker/sluice/engine/shard"
	"github.com/sluice-broker/sluice/engine/txn"
	"github.com/sluice-broker/sluice/wire/kerr"
)

// Topic is the internal topic holding the coordinator's state.
const Topic = "__transaction_state"

// Service is the transaction coordinator of one broker.
type Service struct {
	b       *engine.Broker
	r       *coordinator.Runner
	c       *txn.Coordinator // used under the runner's lock
	offsets OffsetsCompleter
}

// OffsetsCompleter ends producer pid's transaction of epoch on partition p
// of __consumer_offsets (the group coordinator's CompleteTxn): where Kafka
// writes a marker, which its group coordinator reads, sluice tells its
// group coordinator directly. done may run on any goroutine.
type OffsetsCompleter func(pid int64, epoch int16, commit bool, p int32, done func(error))

// groupsTopic is where the group coordinator keeps offsets.
const groupsTopic = "__consumer_offsets"

// Start creates __transaction_state if needed and starts the coordinator,
// which hands out producer ids with newProducerID and completes
// transactional offset commits with offsets; its partitions load in the
// background.
func Start(b *engine.Broker, newProducerID func() (int64, error), offsets OffsetsCompleter) (*Service, error) {
	cfg, topicCfg, partitions, err := configFrom(b)
	if err != nil {
		return nil, err
	}
	cfg.NewProducerID = newProducerID
	cfg.Logger = b.Logger
	s := &Service{b: b, offsets: offsets}
	r, err := coordinator.Start(b, "transaction coordinator", Topic, partitions, topicCfg, func(r *coordinator.Runner, n int32, now time.Time) coordinator.Machine {
		cfg.Partitions = n
		s.c = txn.New(cfg, r, s, now)
		return s.c
	})
	if err != nil {
		return nil, err
	}
	s.r = r
	b.OnClose(s.Close)
	return s, nil
}

// configFrom reads the coordinator's settings from server.properties under
// their Kafka names.
func configFrom(b *engine.Broker) (txn.Config, map[string]string, int32, error) {
	cfg := txn.DefaultConfig()
	props := b.Cfg.Props
	var err error
	ms := func(key string, dst *time.Duration) {
		v, ok := props[key]
		if !ok || err != nil {
			return
		}
		n, perr := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if perr != nil || n <= 0 {
			err = fmt.Errorf("%s=%q: want a positive integer", key, v)
			return
		}
		*dst = time.Duration(n) * time.Millisecond
	}
	ms("transaction.max.timeout.ms", &cfg.MaxTimeout)
	ms("transaction.abort.timed.out.transaction.cleanup.interval.ms", &cfg.AbortCheck)
	ms("transactional.id.expiration.ms", &cfg.IDExpiration)
	ms("transaction.remove.expired.transaction.cleanup.interval.ms", &cfg.IDExpirationCheck)
	// One partition per shard by default, as __consumer_offsets.
	partitions := max(b.Cfg.Shards, 1)
	segmentBytes := 100 << 20
	for _, c := range []struct {
		key string
		dst *int
	}{{"transaction.state.log.num.partitions", &partitions}, {"transaction.state.log.segment.bytes", &segmentBytes}} {
		if v, ok := props[c.key]; ok && err == nil {
			n, perr := strconv.Atoi(strings.TrimSpace(v))
			if perr != nil || n <= 0 {
				err = fmt.Errorf("%s=%q: want a positive integer", c.key, v)
			}
			*c.dst = n
		}
	}
	minISR := "1"
	if v, ok := props["transaction.state.log.min.isr"]; ok {
		minISR = strings.TrimSpace(v)
	}
	topicCfg := map[string]string{
		"cleanup.policy":      "compact",
		"retention.ms":        "-1", // the coordinator trims the log itself, after snapshots
		"retention.bytes":     "-1",
		"segment.bytes":       strconv.Itoa(segmentBytes),
		"min.insync.replicas": minISR,
		"compression.type":    "producer",
	}
	return cfg, topicCfg, int32(partitions), err
}

// Do runs fn on the coordinator, serialised with everything else that
// touches it; replies fn arranges may run later, under the same lock.
func (s *Service) Do(fn func(c *txn.Coordinator, now time.Time)) {
	s.r.Do(func(now time.Time) { fn(s.c, now) })
}

// Close stops the coordinator.
func (s *Service) Close() { s.r.Close() }

// Write implements txn.Markers: one marker per partition, each written by
// its shard with the acks=all rule; done (on the completion goroutine)
// with the first failure. A partition of a topic deleted since is skipped,
// as Kafka drops markers for partitions that no longer exist.
func (s *Service) Write(pid int64, epoch int16, commit bool, parts []txn.TopicPartition, done func(err error)) {
	snap := s.b.Meta.Snapshot()
	var mu sync.Mutex
	var errs []error
	left := len(parts)
	finish := func(err error) {
		mu.Lock()
		if err != nil {
			errs = append(errs, err)
		}
		left--
		last := left == 0
		mu.Unlock()
		if last {
			s.r.Complete(func() { done(errors.Join(errs...)) })
		}
	}
	if left == 0 {
		s.r.Complete(func() { done(nil) })
		return
	}
	coordinatorEpoch := s.b.Epoch()
	for _, p := range parts {
		if p.Topic == groupsTopic {
			s.offsets(pid, epoch, commit, p.Partition, finish)
			continue
		}
		t, ok := s.b.TopicFor(snap, p.Topic)
		if !ok || p.Partition < 0 || int(p.Partition) >= len(t.Partitions) {
			finish(nil)
			continue
		}
		k := shard.Key{Topic: t.Name, Partition: p.Partition}
		s.b.ShardOf(t, p.Partition).Do(func(sh *shard.Shard) {
			sh.WriteMarker(k, pid, epoch, commit, coordinatorEpoch, func(r shard.ProduceResult) {
				if r.Err != kerr.None {
					finish(fmt.Errorf("%s: %w", k.Dir(), kerr.New(r.Err, r.ErrMessage)))
					return
				}
				finish(nil)
			})
		})
	}
}
