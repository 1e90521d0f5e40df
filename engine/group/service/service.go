// Package service runs the group coordinator (engine/group, a pure state
// machine) on a broker with engine/coordinator: its records go to the
// partitions of the internal topic __consumer_offsets, appended with
// acks=all so a commit is answered only after its datasync, and they are
// read back at start-up while requests for the groups of a partition not
// yet read are answered COORDINATOR_LOAD_IN_PROGRESS. Consumer-group lag
// is exported to the broker's Prometheus registry (metrics.go).
package service

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-broker/sluice/engine"
	"github.com/sluice-broker/sluice/engine/coordinator"
	"github.com/sluice-broker/sluice/engine/group"
	"github.com/sluice-broker/sluice/engine/meta"
)

// Topic is the internal topic holding group metadata and offsets.
const Topic = "__consumer_offsets"

// Service is the group coordinator of one broker.
type Service struct {
	b      *engine.Broker
	logger *slog.Logger
	r      *coordinator.Runner
	c      *group.Coordinator // used under the runner's lock

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
	s := &Service{b: b, logger: b.Logger}
	cfg.Topics = s.catalog
	cfg.Logger = b.Logger
	r, err := coordinator.Start(b, "group coordinator", Topic, partitions, topicCfg, func(r *coordinator.Runner, n int32, now time.Time) coordinator.Machine {
		cfg.Partitions = n
		s.c = group.New(cfg, r, now)
		return s.c
	})
	if err != nil {
		return nil, err
	}
	s.r = r
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
	s.r.Do(func(now time.Time) { fn(s.c, now) })
}

// Close stops the coordinator. Appends still in flight complete into
// nothing; the shards stop after this.
func (s *Service) Close() {
	if s.r.Close() {
		s.unregisterMetrics()
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
