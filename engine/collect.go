package engine

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-broker/sluice/engine/shard"
	"github.com/sluice-broker/sluice/wire/msg"
)

// The engine's scrape-time metrics: shard counters and per-partition state,
// read from the shards on their own threads when Prometheus asks.
var (
	descInboxDepth   = prometheus.NewDesc("sluice_shard_inbox_depth", "Ops queued in the shard's inbox.", []string{"shard"}, nil)
	descBusy         = prometheus.NewDesc("sluice_shard_busy_seconds_total", "Time the shard spent running ops (its busy ratio is the rate of this).", []string{"shard"}, nil)
	descWakeups      = prometheus.NewDesc("sluice_shard_wakeups_total", "Times the shard slept and was woken.", []string{"shard"}, nil)
	descSyncRounds   = prometheus.NewDesc("sluice_shard_sync_rounds_total", "Datasync rounds started; each covers every append since the previous one.", []string{"shard"}, nil)
	descSubmitted    = prometheus.NewDesc("sluice_uring_submissions_total", "io_uring submissions (datasyncs on the plain backend).", []string{"shard"}, nil)
	descCompleted    = prometheus.NewDesc("sluice_uring_completions_total", "io_uring completions (datasyncs on the plain backend).", []string{"shard"}, nil)
	descPartitions   = prometheus.NewDesc("sluice_shard_partitions", "Partitions owned by the shard.", []string{"shard"}, nil)
	descSegments     = prometheus.NewDesc("sluice_partition_segments", "Segments of a partition.", []string{"topic", "partition"}, nil)
	descSize         = prometheus.NewDesc("sluice_partition_size_bytes", "Bytes stored for a partition.", []string{"topic", "partition"}, nil)
	descLogStart     = prometheus.NewDesc("sluice_partition_log_start_offset", "First offset of a partition.", []string{"topic", "partition"}, nil)
	descHighWater    = prometheus.NewDesc("sluice_partition_high_watermark", "High watermark of a partition.", []string{"topic", "partition"}, nil)
	descLogEnd       = prometheus.NewDesc("sluice_partition_log_end_offset", "Log end offset of a partition.", []string{"topic", "partition"}, nil)
	descIndexLoads   = prometheus.NewDesc("sluice_index_loads_total", "Old segments whose indexes were loaded on first use beside the shard thread (after a restart).", []string{"shard"}, nil)
	descIndexRebuilt = prometheus.NewDesc("sluice_index_rebuilds_total", "Of those, segments whose index files failed their checks (truncated, zeroed, out of order, not matching the batches) and were rebuilt from the batches.", []string{"shard"}, nil)
	descRefusing     = prometheus.NewDesc("sluice_partition_refusing_writes", "1 for each partition that refuses writes (KAFKA_STORAGE_ERROR), labelled with why: storage_error (a write or datasync failed; recovered by a restart) or disk_full (no space for the last append; writes resume when one fits).", []string{"topic", "partition", "reason"}, nil)
	descDirtyRatio   = prometheus.NewDesc("sluice_partition_dirty_ratio", "Compacted partitions: the share of the cleanable bytes (closed, durable segments) written since the last cleaning pass; a pass runs once it reaches min.cleanable.dirty.ratio.", []string{"topic", "partition"}, nil)
	descCleanPasses  = prometheus.NewDesc("sluice_cleaner_passes_total", "Log cleaning passes by outcome: done (segments replaced), skipped (nothing due under the compaction lags), failed (the log left as it was).", []string{"outcome"}, nil)
	descCleanBytes   = prometheus.NewDesc("sluice_cleaner_bytes_total", "Bytes the log cleaner read and wrote.", []string{"direction"}, nil)
	descCleanRecords = prometheus.NewDesc("sluice_cleaner_records_removed_total", "Records the log cleaner removed (superseded, expired tombstones, aborted).", nil, nil)
	descCleanSeconds = prometheus.NewDesc("sluice_cleaner_busy_seconds_total", "Time the log cleaner spent on passes.", nil, nil)
	descRefusingN    = prometheus.NewDesc("sluice_partitions_refusing_writes", "Partitions that refuse writes; /readyz answers 503 while this is above 0.", nil, nil)
	descUnderRepl    = prometheus.NewDesc("sluice_under_replicated_partitions", "Primary: partitions whose registered standby is out of sync (0 without a standby, and on the standby).", nil, nil)
	descReplInSync   = prometheus.NewDesc("sluice_replica_in_sync", "1 while the partition's standby is in sync (primary; on a standby, 1 for every partition it follows).", []string{"topic", "partition"}, nil)
	descReplLagRec   = prometheus.NewDesc("sluice_replica_lag_records", "Offsets the standby lacks: on the primary its log end minus what the standby has stored; on the standby the primary's high watermark minus its log end.", []string{"topic", "partition"}, nil)
	descReplLagSec   = prometheus.NewDesc("sluice_replica_lag_seconds", "Seconds since the standby last held everything (0 while it does).", []string{"topic", "partition"}, nil)
	descReplShrinks  = prometheus.NewDesc("sluice_isr_shrinks_total", "Times the standby left a partition's in-sync set (replica.lag.time.max.ms passed without it catching up).", nil, nil)
	descReplExpands  = prometheus.NewDesc("sluice_isr_expands_total", "Times the standby joined a partition's in-sync set.", nil, nil)
	descRole         = prometheus.NewDesc("sluice_role", "1 for this node's role in the pair.", []string{"role"}, nil)
	descLeaderEpoch  = prometheus.NewDesc("sluice_leader_epoch", "The leader epoch this node's partitions are at.", nil, nil)
	descTailBytes    = prometheus.NewDesc("sluice_tail_cache_bytes", "Direct mode: the shard's tail cache size.", []string{"shard"}, nil)
	descTailFree     = prometheus.NewDesc("sluice_tail_cache_free_bytes", "Direct mode: tail cache memory no partition holds.", []string{"shard"}, nil)
	descTailReads    = prometheus.NewDesc("sluice_tail_cache_reads_total", "Direct mode: fetches of the active segment served from the tail cache (hit) or from the file (miss).", []string{"shard", "result"}, nil)
	descTailEvict    = prometheus.NewDesc("sluice_tail_cache_evictions_total", "Direct mode: chunks taken from one partition to give to another.", []string{"shard"}, nil)
	descTailReload   = prometheus.NewDesc("sluice_tail_cache_reloads_total", "Direct mode: partial last blocks read back after a partition's chunks were all taken.", []string{"shard"}, nil)
	descTailRestore  = prometheus.NewDesc("sluice_tail_cache_restores_total", "Direct mode: partial last blocks put back from the copy kept when a partition's chunks were all taken (no read).", []string{"shard"}, nil)
	descDirectW      = prometheus.NewDesc("sluice_direct_writes_total", "Direct mode: O_DIRECT write SQEs submitted (dsync: RWF_DSYNC ones, for acks=all).", []string{"shard", "kind"}, nil)
	descDirectP      = prometheus.NewDesc("sluice_direct_write_pieces_total", "Direct mode: the tail cache pieces (chunks, partial blocks) those writes carried; above the writes when WRITEV_FIXED writes several pieces at once.", []string{"shard"}, nil)
	descColdReads    = prometheus.NewDesc("sluice_cold_reads_total", "Regions of segment files a fetch or ListOffsets needed on the shard thread that were not in memory, read asynchronously (READ_FIXED) instead of blocking the shard.", []string{"shard"}, nil)
	descColdBytes    = prometheus.NewDesc("sluice_cold_read_bytes_total", "Bytes the cold reads read.", []string{"shard"}, nil)
	descColdErr      = prometheus.NewDesc("sluice_cold_read_errors_total", "Asynchronous cold reads that failed (the request then reads normally and reports what that read meets).", []string{"shard"}, nil)
	descColdFall     = prometheus.NewDesc("sluice_cold_read_fallbacks_total", "Requests finished with blocking reads after too many cold reads, or a failed one.", []string{"shard"}, nil)
	engineMetricSet  = []*prometheus.Desc{descColdReads, descColdBytes, descColdFall, descColdErr, descInboxDepth, descBusy, descWakeups, descSyncRounds, descSubmitted, descCompleted,
		descPartitions, descSegments, descSize, descLogStart, descHighWater, descLogEnd, descUnderRepl, descReplInSync, descReplLagRec, descReplLagSec, descReplShrinks, descReplExpands, descRole, descLeaderEpoch, descRefusing, descRefusingN, descDirtyRatio, descCleanPasses, descCleanBytes, descCleanRecords, descCleanSeconds, descIndexLoads, descIndexRebuilt,
		descTailBytes, descTailFree, descTailReads, descTailEvict, descTailReload, descTailRestore, descDirectW, descDirectP}
)

// Describe implements prometheus.Collector.
func (b *Broker) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range engineMetricSet {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (b *Broker) Collect(ch chan<- prometheus.Metric) {
	for _, sh := range b.Shards {
		st, parts := sh.Snapshot()
		id := strconv.Itoa(sh.ID())
		ch <- prometheus.MustNewConstMetric(descInboxDepth, prometheus.GaugeValue, float64(st.InboxDepth), id)
		ch <- prometheus.MustNewConstMetric(descBusy, prometheus.CounterValue, float64(st.BusyNanos)/1e9, id)
		ch <- prometheus.MustNewConstMetric(descWakeups, prometheus.CounterValue, float64(st.Wakeups), id)
		ch <- prometheus.MustNewConstMetric(descSyncRounds, prometheus.CounterValue, float64(st.SyncRounds), id)
		ch <- prometheus.MustNewConstMetric(descSubmitted, prometheus.CounterValue, float64(st.Submitted), id)
		ch <- prometheus.MustNewConstMetric(descCompleted, prometheus.CounterValue, float64(st.Completed), id)
		ch <- prometheus.MustNewConstMetric(descPartitions, prometheus.GaugeValue, float64(st.Partitions), id)
		ch <- prometheus.MustNewConstMetric(descColdReads, prometheus.CounterValue, float64(st.Cold.Reads), id)
		ch <- prometheus.MustNewConstMetric(descColdBytes, prometheus.CounterValue, float64(st.Cold.Bytes), id)
		ch <- prometheus.MustNewConstMetric(descColdFall, prometheus.CounterValue, float64(st.Cold.Fallbacks), id)
		ch <- prometheus.MustNewConstMetric(descColdErr, prometheus.CounterValue, float64(st.Cold.Errors), id)
		ch <- prometheus.MustNewConstMetric(descIndexLoads, prometheus.CounterValue, float64(st.Cold.IndexLoads), id)
		ch <- prometheus.MustNewConstMetric(descIndexRebuilt, prometheus.CounterValue, float64(st.Cold.IndexRebuilds), id)
		if t := st.Tail; t != nil {
			ch <- prometheus.MustNewConstMetric(descTailBytes, prometheus.GaugeValue, float64(t.Bytes), id)
			ch <- prometheus.MustNewConstMetric(descTailFree, prometheus.GaugeValue, float64(t.FreeBytes), id)
			ch <- prometheus.MustNewConstMetric(descTailReads, prometheus.CounterValue, float64(t.Hits), id, "hit")
			ch <- prometheus.MustNewConstMetric(descTailReads, prometheus.CounterValue, float64(t.Misses), id, "miss")
			ch <- prometheus.MustNewConstMetric(descTailEvict, prometheus.CounterValue, float64(t.Evictions), id)
			ch <- prometheus.MustNewConstMetric(descTailReload, prometheus.CounterValue, float64(t.Reloads), id)
			ch <- prometheus.MustNewConstMetric(descTailRestore, prometheus.CounterValue, float64(t.Restores), id)
			ch <- prometheus.MustNewConstMetric(descDirectW, prometheus.CounterValue, float64(t.Writes-t.DsyncWrites), id, "plain")
			ch <- prometheus.MustNewConstMetric(descDirectW, prometheus.CounterValue, float64(t.DsyncWrites), id, "dsync")
			ch <- prometheus.MustNewConstMetric(descDirectP, prometheus.CounterValue, float64(t.WritePieces), id)
		}
		for _, p := range parts {
			labels := []string{p.Key.Topic, strconv.Itoa(int(p.Key.Partition))}
			ch <- prometheus.MustNewConstMetric(descSegments, prometheus.GaugeValue, float64(p.Segments), labels...)
			ch <- prometheus.MustNewConstMetric(descSize, prometheus.GaugeValue, float64(p.SizeBytes), labels...)
			ch <- prometheus.MustNewConstMetric(descLogStart, prometheus.GaugeValue, float64(p.LogStartOffset), labels...)
			ch <- prometheus.MustNewConstMetric(descHighWater, prometheus.GaugeValue, float64(p.HighWatermark), labels...)
			ch <- prometheus.MustNewConstMetric(descLogEnd, prometheus.GaugeValue, float64(p.LogEndOffset), labels...)
			if p.Compacted {
				ch <- prometheus.MustNewConstMetric(descDirtyRatio, prometheus.GaugeValue, p.DirtyRatio, labels...)
			}
		}
	}
	if c := b.Cleaner; c != nil {
		st := c.Stats()
		ch <- prometheus.MustNewConstMetric(descCleanPasses, prometheus.CounterValue, float64(st.Passes.Load()), "done")
		ch <- prometheus.MustNewConstMetric(descCleanPasses, prometheus.CounterValue, float64(st.Skipped.Load()), "skipped")
		ch <- prometheus.MustNewConstMetric(descCleanPasses, prometheus.CounterValue, float64(st.Failures.Load()), "failed")
		ch <- prometheus.MustNewConstMetric(descCleanBytes, prometheus.CounterValue, float64(st.BytesRead.Load()), "read")
		ch <- prometheus.MustNewConstMetric(descCleanBytes, prometheus.CounterValue, float64(st.BytesWritten.Load()), "written")
		ch <- prometheus.MustNewConstMetric(descCleanRecords, prometheus.CounterValue, float64(st.RecordsRemoved.Load()))
		ch <- prometheus.MustNewConstMetric(descCleanSeconds, prometheus.CounterValue, float64(st.BusyNanos.Load())/1e9)
	}
	refusing := b.RefusingWrites()
	for k, why := range refusing {
		ch <- prometheus.MustNewConstMetric(descRefusing, prometheus.GaugeValue, 1, k.Topic, strconv.Itoa(int(k.Partition)), why.Reason)
	}
	ch <- prometheus.MustNewConstMetric(descRefusingN, prometheus.GaugeValue, float64(len(refusing)))
	ch <- prometheus.MustNewConstMetric(descUnderRepl, prometheus.GaugeValue, float64(b.UnderReplicated()))
	b.collectReplication(ch)
}

func (b *Broker) collectReplication(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descRole, prometheus.GaugeValue, 1, b.Role())
	ch <- prometheus.MustNewConstMetric(descLeaderEpoch, prometheus.GaugeValue, float64(b.Epoch()))
	var shrinks, expands int64
	_, hasPeer := b.Peer()
	now := time.Now()
	for _, sh := range b.Shards {
		for _, r := range sh.ReplicaSnapshot(now) {
			shrinks += r.Shrinks
			expands += r.Expands
			if !hasPeer && !b.IsStandby() {
				continue // no standby: no replication to report
			}
			labels := []string{r.Key.Topic, strconv.Itoa(int(r.Key.Partition))}
			in := 0.0
			if r.InSync {
				in = 1
			}
			ch <- prometheus.MustNewConstMetric(descReplInSync, prometheus.GaugeValue, in, labels...)
			ch <- prometheus.MustNewConstMetric(descReplLagRec, prometheus.GaugeValue, float64(r.LagRecords), labels...)
			ch <- prometheus.MustNewConstMetric(descReplLagSec, prometheus.GaugeValue, r.LagSeconds, labels...)
		}
	}
	ch <- prometheus.MustNewConstMetric(descReplShrinks, prometheus.CounterValue, float64(shrinks))
	ch <- prometheus.MustNewConstMetric(descReplExpands, prometheus.CounterValue, float64(expands))
}

// Readiness reports whether the broker is ready (/readyz): not while any
// partition refuses writes, since a load balancer or orchestrator should
// not count on a broker some of whose partitions answer
// KAFKA_STORAGE_ERROR. The report names each with why.
func (b *Broker) Readiness() (ready bool, report string) {
	refusing := b.RefusingWrites()
	if len(refusing) == 0 {
		return true, ""
	}
	lines := make([]string, 0, len(refusing))
	for k, why := range refusing {
		lines = append(lines, fmt.Sprintf("%s: %s (%s)", k.Dir(), why.Reason, why.Detail))
	}
	sort.Strings(lines)
	return false, fmt.Sprintf("not ready: %d partitions refuse writes\n%s", len(refusing), strings.Join(lines, "\n"))
}

// RefusingWrites returns every partition that refuses writes, with why.
func (b *Broker) RefusingWrites() map[shard.Key]shard.Refusal {
	all := map[shard.Key]shard.Refusal{}
	for _, sh := range b.Shards {
		for k, why := range sh.RefusingWrites() {
			all[k] = why
		}
	}
	return all
}

// ObserveRequest records a request's latency under its API's name; callable
// from any connection goroutine.
func (b *Broker) ObserveRequest(apiKey int16, d time.Duration) {
	if name := msg.APIName(apiKey); name != "" {
		b.Metrics.RequestLatency.WithLabelValues(name).Observe(d.Seconds())
	}
}
