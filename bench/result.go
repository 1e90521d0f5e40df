package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

// Result is everything one run measured. It is written as JSON (--json) and
// read back by reports and comparisons.
type Result struct {
	Tool     string    `json:"tool"`
	Broker   Target    `json:"broker"`
	Workload Workload  `json:"workload"`
	Topic    string    `json:"topic"`
	Host     string    `json:"host"`
	CPUs     int       `json:"cpus"`
	Started  time.Time `json:"started"`
	// WarmupSeconds and MeasuredSeconds are the lengths of the two phases;
	// throughput figures are over the measured phase only.
	WarmupSeconds   float64 `json:"warmup_s"`
	MeasuredSeconds float64 `json:"measured_s"`

	Produce *Throughput `json:"produce,omitempty"`
	Consume *Throughput `json:"consume,omitempty"`
	// ProduceLatency is acknowledgement time minus intended send time, for
	// records sent in the measured phase.
	ProduceLatency *Histogram `json:"produce_latency,omitempty"`
	// EndToEndLatency is consumer arrival time minus the send time embedded
	// in the record, for records sent in the measured phase.
	EndToEndLatency *Histogram `json:"e2e_latency,omitempty"`
	// BackgroundRead is what the background readers read during the
	// measured phase (Workload.BackgroundReaders).
	BackgroundRead *Throughput `json:"background_read,omitempty"`

	// Offsets are the topic's log start and end offsets at the end of the
	// run, summed over partitions: a log start above zero means retention
	// (or DeleteRecords) removed data during the run.
	Offsets *TopicOffsets `json:"offsets,omitempty"`

	Series    []Interval      `json:"series"`
	Resources ResourceSummary `json:"resources"`
	Check     *Check          `json:"check,omitempty"`

	// ClientBound is set when the machine's CPUs were saturated and the
	// client used at least as much CPU as the broker: the broker may be
	// faster than this run shows.
	ClientBound bool         `json:"client_bound"`
	Notes       []string     `json:"notes,omitempty"`
	Errors      []ErrorCount `json:"errors,omitempty"`
	// Failed is why the run did not complete; the figures are partial.
	Failed string `json:"failed,omitempty"`
}

// Throughput is one direction's totals over the measured phase.
type Throughput struct {
	Records       int64   `json:"records"`
	Bytes         int64   `json:"bytes"`
	RecordsPerSec float64 `json:"records_per_s"`
	MiBPerSec     float64 `json:"mib_per_s"`
	Errors        int64   `json:"errors"`
	// PerPartition counts records per partition over the whole run (warm-up
	// included), which shows what a key distribution did.
	PerPartition []int64 `json:"per_partition,omitempty"`
}

// Interval is one sampling interval. T is the end of the interval in seconds
// from the start of the measured phase (≤ 0 during warm-up). Latency figures
// are in milliseconds, CPU in cores (1.0 = one CPU busy), MachineBusy a
// fraction of all CPUs.
type Interval struct {
	T               float64 `json:"t"`
	Warmup          bool    `json:"warmup,omitempty"`
	ProducedRecords int64   `json:"produced"`
	ProducedBytes   int64   `json:"produced_bytes"`
	ConsumedRecords int64   `json:"consumed"`
	ConsumedBytes   int64   `json:"consumed_bytes"`
	Errors          int64   `json:"errors,omitempty"`
	ProduceP50      float64 `json:"produce_p50_ms,omitempty"`
	ProduceP99      float64 `json:"produce_p99_ms,omitempty"`
	ProduceMax      float64 `json:"produce_max_ms,omitempty"`
	E2EP50          float64 `json:"e2e_p50_ms,omitempty"`
	E2EP99          float64 `json:"e2e_p99_ms,omitempty"`
	E2EMax          float64 `json:"e2e_max_ms,omitempty"`
	BrokerCPU       float64 `json:"broker_cpu"`
	BrokerRSS       int64   `json:"broker_rss"`
	ClientCPU       float64 `json:"client_cpu"`
	MachineBusy     float64 `json:"machine_busy"`
	Steal           float64 `json:"steal,omitempty"` // of all CPUs, part of MachineBusy
	Seconds         float64 `json:"seconds"`
}

// ResourceSummary is resource use over the measured phase.
type ResourceSummary struct {
	BrokerPID      int     `json:"broker_pid,omitempty"`
	BrokerSampled  bool    `json:"broker_sampled"`
	BrokerCPUAvg   float64 `json:"broker_cpu_avg"`
	BrokerCPUMax   float64 `json:"broker_cpu_max"`
	BrokerRSSMax   int64   `json:"broker_rss_max"`
	BrokerRSSEnd   int64   `json:"broker_rss_end"`
	ClientCPUAvg   float64 `json:"client_cpu_avg"`
	MachineBusyAvg float64 `json:"machine_busy_avg"`
	// OtherCPUAvg is CPU used by neither the broker nor the client (other
	// processes, and kernel work not charged to either): on a shared
	// machine, the load the run competed with.
	OtherCPUAvg float64 `json:"other_cpu_avg"`
	// StealCPUAvg is the part of OtherCPUAvg the hypervisor gave to other
	// guests (steal time), in cores: load from outside this machine.
	StealCPUAvg float64 `json:"steal_cpu_avg,omitempty"`
	SampleError string  `json:"sample_error,omitempty"`
}

// Check is the run's internal consistency: every acknowledged record must be
// read back (e2e), and the read must cover what the topic held (consume).
type Check struct {
	Acknowledged int64  `json:"acknowledged"`
	Consumed     int64  `json:"consumed"`
	Expected     int64  `json:"expected"`
	OK           bool   `json:"ok"`
	Detail       string `json:"detail,omitempty"`
}

// TopicOffsets are summed partition offsets.
type TopicOffsets struct {
	Start int64 `json:"log_start"`
	End   int64 `json:"log_end"`
}

// ErrorCount is one distinct client error and how often it happened.
type ErrorCount struct {
	Where   string `json:"where"`
	Message string `json:"message"`
	Count   int64  `json:"count"`
}

// WriteJSON writes results (one, or a list) as indented JSON.
func WriteJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// ReadResult reads a result written by WriteJSON.
func ReadResult(path string) (*Result, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// errorLog counts distinct errors without letting a storm of them grow
// memory: at most errorKindsMax kinds are kept.
type errorLog struct {
	counts map[[2]string]int64
}

const errorKindsMax = 50

func (l *errorLog) add(where string, err error) {
	if l.counts == nil {
		l.counts = map[[2]string]int64{}
	}
	k := [2]string{where, err.Error()}
	if _, ok := l.counts[k]; !ok && len(l.counts) >= errorKindsMax {
		k = [2]string{where, "(other errors)"}
	}
	l.counts[k]++
}

func (l *errorLog) list() []ErrorCount {
	var out []ErrorCount
	for k, n := range l.counts {
		out = append(out, ErrorCount{Where: k[0], Message: k[1], Count: n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Message < out[j].Message
	})
	return out
}

// Headline is the result in one line, for logs.
func (r *Result) Headline() string {
	var parts []string
	if r.Produce != nil {
		parts = append(parts, fmt.Sprintf("produce %.0f rec/s %.1f MiB/s", r.Produce.RecordsPerSec, r.Produce.MiBPerSec))
	}
	if r.ProduceLatency != nil && r.ProduceLatency.Count() > 0 {
		s := r.ProduceLatency.Summary()
		parts = append(parts, fmt.Sprintf("ack p50 %s p99 %s", fmtMs(s.P50), fmtMs(s.P99)))
	}
	if r.Consume != nil {
		parts = append(parts, fmt.Sprintf("consume %.0f rec/s %.1f MiB/s", r.Consume.RecordsPerSec, r.Consume.MiBPerSec))
	}
	if r.EndToEndLatency != nil && r.EndToEndLatency.Count() > 0 {
		s := r.EndToEndLatency.Summary()
		parts = append(parts, fmt.Sprintf("e2e p50 %s p99 %s", fmtMs(s.P50), fmtMs(s.P99)))
	}
	if r.Failed != "" {
		parts = append(parts, "FAILED: "+r.Failed)
	}
	return strings.Join(parts, ", ")
}

// fmtMs formats milliseconds with a precision that suits the magnitude.
func fmtMs(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v < 1:
		return fmt.Sprintf("%.3fms", v)
	case v < 10:
		return fmt.Sprintf("%.2fms", v)
	case v < 1000:
		return fmt.Sprintf("%.1fms", v)
	}
	return fmt.Sprintf("%.2fs", v/1000)
}

// FormatMillis formats milliseconds for tables (exported for report).
func FormatMillis(v float64) string { return fmtMs(v) }
