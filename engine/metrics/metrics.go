// Package metrics defines sluice's Prometheus metrics. Hot paths hold
// pre-resolved children (a partition keeps its topic's counters), so
// recording is an atomic add, never a map lookup or a lock.
//
// Names follow Prometheus conventions: the sluice_ prefix, base units in the
// name, _total for counters.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics is every metric the broker records directly. Gauges that are read
// from engine state at scrape time are collected by the engine itself.
type Metrics struct {
	Registry *prometheus.Registry

	BytesIn    *prometheus.CounterVec // by topic: record batch bytes appended
	RecordsIn  *prometheus.CounterVec // by topic
	BytesOut   *prometheus.CounterVec // by topic: record bytes sent to fetchers
	RecordsOut *prometheus.CounterVec // by topic

	RequestLatency        *prometheus.HistogramVec // by api: frame read to response written
	ProduceDurableLatency prometheus.Histogram     // acks=all append to acknowledgement
	FsyncLatency          prometheus.Histogram     // one datasync round
	CheckpointLatency     prometheus.Histogram     // one periodic checkpoint, on the shard thread
	Connections           prometheus.Gauge
}

// latencyBuckets span 10 µs to ~40 s.
var latencyBuckets = prometheus.ExponentialBuckets(10e-6, 2.5, 17)

// New creates the metrics in a fresh registry, with the Go runtime's and the
// process's own collectors.
func New() *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry()}
	m.BytesIn = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_topic_bytes_in_total", Help: "Record batch bytes appended, by topic."}, []string{"topic"})
	m.RecordsIn = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_topic_records_in_total", Help: "Records appended, by topic."}, []string{"topic"})
	m.BytesOut = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_topic_bytes_out_total", Help: "Record bytes sent to fetchers, by topic."}, []string{"topic"})
	m.RecordsOut = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_topic_records_out_total", Help: "Records sent to fetchers, by topic (offsets covered)."}, []string{"topic"})
	m.RequestLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "sluice_request_duration_seconds", Help: "Time from reading a request frame to writing its response, by API.", Buckets: latencyBuckets}, []string{"api"})
	m.ProduceDurableLatency = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sluice_produce_durable_seconds", Help: "Time from appending an acks=all batch to acknowledging it durable.", Buckets: latencyBuckets})
	m.FsyncLatency = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sluice_fsync_duration_seconds", Help: "Duration of one datasync round of a partition.", Buckets: latencyBuckets})
	m.CheckpointLatency = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sluice_checkpoint_duration_seconds", Help: "Time a shard thread spent writing one periodic checkpoint of its partitions (index files, producer snapshots, recovery points); the shard serves nothing meanwhile.", Buckets: latencyBuckets})
	m.Connections = prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_connections", Help: "Open client connections."})
	m.Registry.MustRegister(m.BytesIn, m.RecordsIn, m.BytesOut, m.RecordsOut, m.RequestLatency,
		m.ProduceDurableLatency, m.FsyncLatency, m.CheckpointLatency, m.Connections,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
