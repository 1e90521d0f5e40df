package probe

import (
	"math"

	"github.com/prometheus/client_golang/prometheus"
)

// Probes is a prometheus.Collector: register it and every scrape reads the
// BPF maps (a few hundred bytes per histogram; nothing runs between scrapes).
var _ prometheus.Collector = (*Probes)(nil)

var (
	blockLatencyDesc = prometheus.NewDesc("sluice_ebpf_block_io_latency_seconds",
		"Block I/O latency from issue to completion on the disks holding the data directory, by operation (eBPF, block:block_rq_issue/complete).",
		[]string{"op"}, nil)
	uringLatencyDesc = prometheus.NewDesc("sluice_ebpf_io_uring_request_latency_seconds",
		"io_uring request latency from submission to completion, by opcode (eBPF, io_uring:io_uring_submit_req/complete).",
		[]string{"op"}, nil)
	readMissesDesc = prometheus.NewDesc("sluice_ebpf_page_cache_read_misses_total",
		"Reads of the data directory's file system that missed the page cache (eBPF, readahead:page_cache_sync_ra).",
		nil, nil)
	missPagesDesc = prometheus.NewDesc("sluice_ebpf_page_cache_read_miss_pages",
		"Pages each read that missed the page cache asked for.",
		nil, nil)
	insertedDesc = prometheus.NewDesc("sluice_ebpf_page_cache_inserted_pages_total",
		"Pages inserted into the page cache on the data directory's file system: for reads (misses and readahead) or otherwise (writes).",
		[]string{"cause"}, nil)
)

// Latency buckets: slot k of a BPF histogram counts [2^k, 2^(k+1)) ns, so
// the bucket bounds are powers of two from 1 µs (2^10 ns) to 2^36 ns (69 s);
// the slots below 1 µs fall into the first bucket.
const (
	firstLatencySlot = 9
	firstPagesSlot   = 0
)

// promBuckets converts log2 slots to Prometheus's cumulative buckets with
// upper bounds 2^(k+1) × scale for k from first on. Page counts are small
// integers where powers of two are common, so their bounds are exact:
// 2^(k+1)-1 (1, 3, 7, 15, ...); for nanoseconds the difference is nil.
func promBuckets(slots [histSlots]uint64, first int, scale float64, exact bool) map[float64]uint64 {
	buckets := make(map[float64]uint64, histSlots-first)
	var cumulative uint64
	for k := 0; k < histSlots; k++ {
		cumulative += slots[k]
		if k >= first && k < histSlots-1 {
			bound := math.Ldexp(1, k+1)
			if exact {
				bound--
			}
			buckets[bound*scale] = cumulative
		}
	}
	return buckets
}

// Describe sends the descriptors of every metric the probes can produce.
func (p *Probes) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{blockLatencyDesc, uringLatencyDesc, readMissesDesc, missPagesDesc, insertedDesc} {
		ch <- d
	}
}

// Collect reads the maps of the probes that are attached.
func (p *Probes) Collect(ch chan<- prometheus.Metric) {
	s, err := p.Snapshot()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(blockLatencyDesc, err)
		return
	}
	for _, h := range s.Block {
		if h.Label == "other" && h.Count == 0 {
			continue
		}
		ch <- prometheus.MustNewConstHistogram(blockLatencyDesc, h.Count, float64(h.Sum)/1e9,
			promBuckets(h.Slots, firstLatencySlot, 1e-9, false), h.Label)
	}
	for _, h := range s.URing {
		ch <- prometheus.MustNewConstHistogram(uringLatencyDesc, h.Count, float64(h.Sum)/1e9,
			promBuckets(h.Slots, firstLatencySlot, 1e-9, false), h.Label)
	}
	if s.HasPageCache {
		ch <- prometheus.MustNewConstMetric(readMissesDesc, prometheus.CounterValue, float64(s.ReadMisses))
		ch <- prometheus.MustNewConstHistogram(missPagesDesc, s.MissPages.Count, float64(s.MissPages.Sum),
			promBuckets(s.MissPages.Slots, firstPagesSlot, 1, true))
		ch <- prometheus.MustNewConstMetric(insertedDesc, prometheus.CounterValue, float64(s.PagesRead), "read")
		ch <- prometheus.MustNewConstMetric(insertedDesc, prometheus.CounterValue, float64(s.PagesOther), "other")
	}
}
