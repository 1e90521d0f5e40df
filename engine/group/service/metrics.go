package service

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-broker/sluice/engine/group"
	"github.com/sluice-broker/sluice/engine/shard"
	"github.com/sluice-broker/sluice/wire/kerr"
)

// Consumer-group lag, read at scrape time: per group and partition, the
// committed offset, the partition's end and their difference. The end is
// the high watermark, as in Kafka's kafka-consumer-groups.sh (its
// LOG-END-OFFSET column is ListOffsets' latest offset, which is the high
// watermark for read_uncommitted).
var (
	descCommitted = prometheus.NewDesc("sluice_consumer_group_committed_offset",
		"Committed offset of a consumer group for a partition.", []string{"group", "topic", "partition"}, nil)
	descGroupEnd = prometheus.NewDesc("sluice_consumer_group_log_end_offset",
		"High watermark of a partition a consumer group has committed offsets for (kafka-consumer-groups.sh's LOG-END-OFFSET).", []string{"group", "topic", "partition"}, nil)
	descLag = prometheus.NewDesc("sluice_consumer_group_lag",
		"Records between a consumer group's committed offset and the partition's high watermark (kafka-consumer-groups.sh's LAG).", []string{"group", "topic", "partition"}, nil)
)

// lagCollector is the coordinator's prometheus.Collector.
type lagCollector struct{ s *Service }

// Describe implements prometheus.Collector.
func (l lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descCommitted
	ch <- descGroupEnd
	ch <- descLag
}

// Collect implements prometheus.Collector. The coordinator's lock is held
// only to copy the offsets; partition ends are then read on each shard's
// thread, one call per shard for all of its partitions.
func (l lagCollector) Collect(ch chan<- prometheus.Metric) {
	s := l.s
	var offsets []group.CommittedOffset
	if !s.r.Locked(func() { offsets = s.c.AppendCommittedOffsets(nil) }) {
		return
	}
	if len(offsets) == 0 {
		return
	}
	// The partitions to read, grouped by the shard that owns them. A
	// partition whose topic is gone (or has shrunk) has no end: only its
	// committed offset is reported, as kafka-consumer-groups.sh shows "-".
	snap := s.b.Meta.Snapshot()
	type tp struct {
		topic     string
		partition int32
	}
	ends := map[tp]int64{}
	byShard := map[int][]shard.Key{}
	for _, o := range offsets {
		k := tp{o.Topic, o.Partition}
		if _, seen := ends[k]; seen {
			continue
		}
		ends[k] = -1
		t := snap.Topics[o.Topic]
		if t == nil || o.Partition < 0 || int(o.Partition) >= len(t.Partitions) {
			continue
		}
		sh := t.Partitions[o.Partition].Shard
		byShard[sh] = append(byShard[sh], shard.Key{Topic: o.Topic, Partition: o.Partition})
	}
	for id, keys := range byShard {
		if id < 0 || id >= len(s.b.Shards) {
			continue
		}
		s.b.Shards[id].Call(func(sh *shard.Shard) {
			for _, k := range keys {
				if off := sh.PartitionOffsets(k); off.Err == kerr.None {
					ends[tp{k.Topic, k.Partition}] = off.HighWatermark
				}
			}
		})
	}
	for _, o := range offsets {
		labels := []string{o.Group, o.Topic, strconv.Itoa(int(o.Partition))}
		ch <- prometheus.MustNewConstMetric(descCommitted, prometheus.GaugeValue, float64(o.Offset), labels...)
		end := ends[tp{o.Topic, o.Partition}]
		if end < 0 {
			continue
		}
		ch <- prometheus.MustNewConstMetric(descGroupEnd, prometheus.GaugeValue, float64(end), labels...)
		if o.Offset >= 0 {
			// As kafka-consumer-groups.sh: end minus committed, unclamped.
			ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(end-o.Offset), labels...)
		}
	}
}

var _ prometheus.Collector = lagCollector{}

// registerMetrics adds the lag collector to the broker's registry, when
// the broker has metrics; unregister undoes it.
func (s *Service) registerMetrics() (unregister func()) {
	if s.b.Metrics == nil || s.b.Metrics.Registry == nil {
		return func() {}
	}
	c := lagCollector{s}
	if err := s.b.Metrics.Registry.Register(c); err != nil {
		s.logger.Warn("consumer group lag metrics are unavailable", "err", err)
		return func() {}
	}
	return func() { s.b.Metrics.Registry.Unregister(c) }
}
