package bench

import (
	"sync"
	"time"
)

// recorder collects what happens during one sampling interval: a latency
// histogram and counts. Client callbacks record into it concurrently; the
// run's interval loop takes the contents every interval. Producers and
// consumers are spread over a few recorders so callbacks rarely contend.
type recorder struct {
	mu      sync.Mutex
	hist    *Histogram
	records int64
	bytes   int64
	errors  int64
	// perPartition counts completed records by partition.
	perPartition []int64
}

func newRecorder(partitions int) *recorder {
	return &recorder{hist: NewHistogram(), perPartition: make([]int64, partitions)}
}

// done records one record that completed (acknowledged or consumed) with
// size bytes. latency < 0 means "count it but keep its latency out" (warm-up).
func (r *recorder) done(partition int32, size int, latency time.Duration) {
	r.mu.Lock()
	r.records++
	r.bytes += int64(size)
	if latency >= 0 {
		r.hist.Record(latency)
	}
	if int(partition) >= 0 && int(partition) < len(r.perPartition) {
		r.perPartition[partition]++
	}
	r.mu.Unlock()
}

func (r *recorder) failed() {
	r.mu.Lock()
	r.errors++
	r.mu.Unlock()
}

// intervalTotals is what a set of recorders collected over one interval.
type intervalTotals struct {
	records, bytes, errors int64
	hist                   *Histogram
}

// recorders is a set of recorders shared by a group of clients.
type recorders struct {
	rs    []*recorder
	spare *Histogram
	// partitionCounts accumulates perPartition over the whole run.
	partitionCounts []int64
}

func newRecorders(n, partitions int) *recorders {
	rs := &recorders{spare: NewHistogram(), partitionCounts: make([]int64, partitions)}
	for i := 0; i < n; i++ {
		rs.rs = append(rs.rs, newRecorder(partitions))
	}
	return rs
}

func (rs *recorders) pick(i int) *recorder { return rs.rs[i%len(rs.rs)] }

// take empties every recorder and returns the sum. The returned histogram is
// owned by the caller until the next take.
func (rs *recorders) take() intervalTotals {
	out := intervalTotals{hist: rs.spare}
	out.hist.Reset()
	for _, r := range rs.rs {
		r.mu.Lock()
		out.records += r.records
		out.bytes += r.bytes
		out.errors += r.errors
		out.hist.Merge(r.hist)
		for i, n := range r.perPartition {
			rs.partitionCounts[i] += n
			r.perPartition[i] = 0
		}
		r.records, r.bytes, r.errors = 0, 0, 0
		r.hist.Reset()
		r.mu.Unlock()
	}
	return out
}
