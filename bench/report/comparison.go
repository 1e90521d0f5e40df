package report

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/sluice-broker/sluice/bench"
	"github.com/sluice-broker/sluice/bench/limits"
	"github.com/sluice-broker/sluice/bench/peer"
)

// Comparison is the same workloads run against several brokers. It is what
// `sluice bench compare` saves as JSON and renders as a report.
type Comparison struct {
	Title    string          `json:"title"`
	Command  string          `json:"command"`
	Started  time.Time       `json:"started"`
	Finished time.Time       `json:"finished"`
	Machine  Machine         `json:"machine"`
	Brokers  []peer.Settings `json:"brokers"`
	// Order names the brokers in column order; the ratio column is the
	// first ÷ the second.
	Order     []string       `json:"order"`
	Limits    *limits.Limits `json:"limits,omitempty"`
	Scenarios []*Scenario    `json:"scenarios"`
	Perf      []*PerfRun     `json:"producer_performance,omitempty"`
	Notes     []string       `json:"notes,omitempty"`
	Failures  []Failure      `json:"failures,omitempty"`
	// DataFile is where the comparison's JSON was saved, relative to the
	// report.
	DataFile string `json:"-"`
}

// Machine describes the host a comparison ran on.
type Machine struct {
	Host      string  `json:"host"`
	CPUs      int     `json:"cpus"`
	CPUModel  string  `json:"cpu_model"`
	MemoryGiB float64 `json:"memory_gib"`
	Kernel    string  `json:"kernel"`
	GoVersion string  `json:"go_version"`
	LoadStart string  `json:"load_start"`
	LoadEnd   string  `json:"load_end"`
	// Source is the git commit of the working tree the harness ran from.
	Source string `json:"source,omitempty"`
}

// Scenario is one workload of a comparison and its runs on every broker.
type Scenario struct {
	ID         string `json:"id"`
	Title      string `json:"title"`
	Durability string `json:"durability,omitempty"`
	// Metrics picks the summary rows: throughput, ack_latency, e2e_latency,
	// consume_throughput, retention.
	Metrics []string `json:"metrics"`
	// Bound names the limit that bounds the throughput: disk_buffered,
	// disk_fsync or tcp ("" for none).
	Bound    string          `json:"bound,omitempty"`
	Workload bench.Workload  `json:"workload"`
	Runs     []*bench.Result `json:"runs"` // in the order they ran (interleaved)
	Notes    []string        `json:"notes,omitempty"`
}

// PerfRun is one run of Kafka's ProducerPerformance.
type PerfRun struct {
	Broker     string            `json:"broker"`
	Durability string            `json:"durability"`
	Topic      string            `json:"topic"`
	Props      map[string]string `json:"props"`
	Result     *peer.PerfResult  `json:"result"`
}

// Failure is something that went wrong, with what the broker logged.
type Failure struct {
	Scenario string `json:"scenario"`
	Broker   string `json:"broker"`
	Error    string `json:"error"`
	LogTail  string `json:"log_tail,omitempty"`
}

// DisturbedCPU is how much CPU (in cores) neither the broker nor the client
// may use during a run's measured phase before the report calls the run
// disturbed. Some of it is kernel work on the broker's behalf (writeback,
// softirqs), hence the margin.
const DisturbedCPU = 0.75

func (c *Comparison) disturbedRuns() (n, total int) {
	for _, s := range c.Scenarios {
		for _, r := range s.Runs {
			total++
			if r.Resources.OtherCPUAvg >= DisturbedCPU {
				n++
			}
		}
	}
	return n, total
}

// aggregate is one broker's runs of one scenario, combined: medians of the
// per-run rates, latencies from the runs' histograms merged.
type aggregate struct {
	runs, failed     int
	recordsPerSec    []float64
	mibPerSec        []float64
	produceLat       *bench.Histogram
	e2eLat           *bench.Histogram
	brokerCPU        []float64
	clientCPU        []float64
	rssMax           int64
	clientBound      bool
	p99Step          []float64
	retentionDeleted []bool
	backgroundMiB    []float64
	failures         []string
	clientErrors     int64 // failed records and fetch errors, all runs
}

func (s *Scenario) aggregate(broker string) *aggregate {
	a := &aggregate{produceLat: bench.NewHistogram(), e2eLat: bench.NewHistogram()}
	for _, r := range s.Runs {
		if r.Broker.Name != broker {
			continue
		}
		a.runs++
		for _, e := range r.Errors {
			a.clientErrors += e.Count
		}
		if r.Failed != "" {
			a.failed++
			a.failures = append(a.failures, r.Failed)
			continue
		}
		t := r.Produce
		if r.Workload.Mode == bench.ModeConsume {
			t = r.Consume
		}
		if t != nil {
			a.recordsPerSec = append(a.recordsPerSec, t.RecordsPerSec)
			a.mibPerSec = append(a.mibPerSec, t.MiBPerSec)
		}
		a.produceLat.Merge(r.ProduceLatency)
		a.e2eLat.Merge(r.EndToEndLatency)
		a.brokerCPU = append(a.brokerCPU, r.Resources.BrokerCPUAvg)
		a.clientCPU = append(a.clientCPU, r.Resources.ClientCPUAvg)
		a.rssMax = max(a.rssMax, r.Resources.BrokerRSSMax)
		a.clientBound = a.clientBound || r.ClientBound
		if step, ok := P99Step(r); ok {
			a.p99Step = append(a.p99Step, step)
		}
		if r.Offsets != nil {
			a.retentionDeleted = append(a.retentionDeleted, r.Offsets.Start > 0)
		}
		if r.BackgroundRead != nil {
			a.backgroundMiB = append(a.backgroundMiB, r.BackgroundRead.MiBPerSec)
		}
	}
	return a
}

func (a *aggregate) ok() bool { return a.runs > a.failed }

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// P99Step compares a run's latency in the second half of the measured phase
// with the first: the median of the interval p99s after the midpoint divided
// by the median before it. About 1 means no step up.
func P99Step(r *bench.Result) (float64, bool) {
	var first, second []float64
	var measured []bench.Interval
	for _, iv := range r.Series {
		if !iv.Warmup {
			measured = append(measured, iv)
		}
	}
	for i, iv := range measured {
		v := iv.ProduceP99
		if r.Workload.Mode == bench.ModeE2E {
			v = iv.E2EP99
		}
		if v <= 0 {
			continue
		}
		if i < len(measured)/2 {
			first = append(first, v)
		} else {
			second = append(second, v)
		}
	}
	if len(first) == 0 || len(second) == 0 {
		return 0, false
	}
	return median(second) / median(first), true
}

// metricRow is one summary line: a value per broker and which way is better.
type metricRow struct {
	metric       string
	values       []float64 // per broker, NaN when missing
	format       func(float64) string
	higherBetter bool
	noRatio      bool
	text         []string // overrides the formatted value
}

func fmtRate(v float64) string {
	if math.IsNaN(v) {
		return "—"
	}
	return groupThousands(int64(math.Round(v)))
}

func fmtMiB(v float64) string {
	if math.IsNaN(v) {
		return "—"
	}
	return fmt.Sprintf("%.1f", v)
}

func fmtLatency(v float64) string {
	if math.IsNaN(v) {
		return "—"
	}
	return bench.FormatMillis(v)
}

func fmtPercent(v float64) string {
	if math.IsNaN(v) {
		return "—"
	}
	return fmt.Sprintf("%.0f%%", 100*v)
}

func fmtRatio(v float64) string {
	if math.IsNaN(v) {
		return "—"
	}
	return fmt.Sprintf("%.2f", v)
}

func groupThousands(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// boundLimit returns the limit (MiB/s) and its name for a scenario.
func (c *Comparison) boundLimit(s *Scenario) (float64, string) {
	if c.Limits == nil {
		return 0, ""
	}
	l := c.Limits
	switch s.Bound {
	case "disk_buffered":
		// Page-cache acknowledgement: bytes cross loopback TCP and land in
		// the page cache; the smaller limit bounds it.
		if l.LoopbackTCPMiBps > 0 && (l.DiskBufferedMiBps == 0 || l.LoopbackTCPMiBps < l.DiskBufferedMiBps) {
			return l.LoopbackTCPMiBps, "loopback TCP"
		}
		return l.DiskBufferedMiBps, "buffered disk write"
	case "disk_fsync":
		return l.DiskFsyncMiBps, "fsync'd disk write (1 MiB)"
	case "tcp":
		return l.LoopbackTCPMiBps, "loopback TCP"
	}
	return 0, ""
}

func (c *Comparison) rows(s *Scenario) []metricRow {
	aggs := make([]*aggregate, len(c.Order))
	for i, b := range c.Order {
		aggs[i] = s.aggregate(b)
	}
	per := func(f func(a *aggregate) float64) []float64 {
		out := make([]float64, len(aggs))
		for i, a := range aggs {
			out[i] = math.NaN()
			if a.ok() {
				out[i] = f(a)
			}
		}
		return out
	}
	pct := func(h func(a *aggregate) *bench.Histogram, p float64) func(a *aggregate) float64 {
		return func(a *aggregate) float64 {
			x := h(a)
			if x.Count() == 0 {
				return math.NaN()
			}
			if p == 100 {
				return float64(x.Max()) / float64(time.Millisecond)
			}
			return float64(x.Percentile(p)) / float64(time.Millisecond)
		}
	}
	ack := func(a *aggregate) *bench.Histogram { return a.produceLat }
	e2e := func(a *aggregate) *bench.Histogram { return a.e2eLat }
	var rows []metricRow
	for _, m := range s.Metrics {
		switch m {
		case "throughput", "consume_throughput":
			rows = append(rows,
				metricRow{metric: "records/s", values: per(func(a *aggregate) float64 { return median(a.recordsPerSec) }), format: fmtRate, higherBetter: true},
				metricRow{metric: "MiB/s", values: per(func(a *aggregate) float64 { return median(a.mibPerSec) }), format: fmtMiB, higherBetter: true})
			if limit, name := c.boundLimit(s); limit > 0 {
				rows = append(rows, metricRow{metric: "share of " + name + " limit (" + fmtMiB(limit) + " MiB/s)",
					values: per(func(a *aggregate) float64 { return median(a.mibPerSec) / limit }), format: fmtPercent, higherBetter: true})
			}
		case "ack_latency":
			rows = append(rows,
				metricRow{metric: "ack latency p50", values: per(pct(ack, 50)), format: fmtLatency},
				metricRow{metric: "ack latency p99", values: per(pct(ack, 99)), format: fmtLatency})
		case "ack_latency_tail":
			for _, p := range []float64{50, 99, 99.9, 100} {
				name := fmt.Sprintf("ack latency p%g", p)
				if p == 100 {
					name = "ack latency max"
				}
				rows = append(rows, metricRow{metric: name, values: per(pct(ack, p)), format: fmtLatency})
			}
		case "background_read":
			rows = append(rows, metricRow{metric: "older data read meanwhile, MiB/s", values: per(func(a *aggregate) float64 { return median(a.backgroundMiB) }), format: fmtMiB, higherBetter: true})
		case "broker_cpu":
			rows = append(rows,
				metricRow{metric: "broker CPU (cores)", values: per(func(a *aggregate) float64 { return median(a.brokerCPU) }), format: fmtRatio},
				metricRow{metric: "broker CPU-seconds per GiB produced", values: per(func(a *aggregate) float64 {
					if m := median(a.mibPerSec); m > 0 {
						return median(a.brokerCPU) / (m / 1024)
					}
					return math.NaN()
				}), format: fmtRatio})
		case "e2e_latency":
			for _, p := range []float64{50, 99, 99.9, 99.99, 100} {
				name := fmt.Sprintf("end-to-end p%g", p)
				if p == 100 {
					name = "end-to-end max"
				}
				rows = append(rows, metricRow{metric: name, values: per(pct(e2e, p)), format: fmtLatency})
			}
		case "retention":
			rows = append(rows,
				metricRow{metric: "ack latency p99", values: per(pct(ack, 99)), format: fmtLatency},
				metricRow{metric: "p99 second half ÷ first half (≈1: no step up)", values: per(func(a *aggregate) float64 { return median(a.p99Step) }), format: fmtRatio})
			deleted := metricRow{metric: "retention deleted segments during the run", noRatio: true, values: make([]float64, len(aggs))}
			for i, a := range aggs {
				deleted.values[i] = math.NaN()
				switch {
				case !a.ok():
					deleted.text = append(deleted.text, "—")
				case len(a.retentionDeleted) == 0:
					deleted.text = append(deleted.text, "unknown")
				default:
					yes := 0
					for _, d := range a.retentionDeleted {
						if d {
							yes++
						}
					}
					deleted.text = append(deleted.text, fmt.Sprintf("%d of %d runs", yes, len(a.retentionDeleted)))
				}
			}
			rows = append(rows, deleted)
		}
	}
	anyErrors := false
	for _, a := range aggs {
		anyErrors = anyErrors || a.clientErrors > 0
	}
	if anyErrors {
		errs := metricRow{metric: "client errors (failed records, fetch errors), all runs", noRatio: true, values: make([]float64, len(aggs)), format: fmtRate}
		for i, a := range aggs {
			errs.values[i] = float64(a.clientErrors)
		}
		rows = append(rows, errs)
	}
	for i, a := range aggs {
		if !a.ok() && a.runs > 0 {
			for j := range rows {
				if rows[j].text == nil {
					rows[j].text = make([]string, len(aggs))
				}
				rows[j].text[i] = "FAILED"
			}
		}
	}
	return rows
}

// ratioCells formats the first ÷ second ratio and names the better broker.
func (c *Comparison) ratioCells(r metricRow) (string, string) {
	if r.noRatio || len(r.values) < 2 {
		return "", ""
	}
	a, b := r.values[0], r.values[1]
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return "—", ""
	}
	ratio := a / b
	better := ""
	switch {
	case math.Abs(ratio-1) < 0.02:
		better = "≈"
	case (ratio > 1) == r.higherBetter:
		better = displayName(c.Order[0])
	default:
		better = displayName(c.Order[1])
	}
	return fmt.Sprintf("%.2f×", ratio), better
}

func (r metricRow) cell(i int) string {
	if r.text != nil && i < len(r.text) && r.text[i] != "" {
		return r.text[i]
	}
	if r.format == nil {
		return ""
	}
	return r.format(r.values[i])
}

// SummaryTable is the one-line-per-metric table: every broker, the ratio of
// the first to the second, and which is better.
func (c *Comparison) SummaryTable() Table {
	t := Table{Header: []string{"#", "scenario", "metric"}}
	for _, b := range c.Order {
		t.Header = append(t.Header, displayName(b))
	}
	if len(c.Order) >= 2 {
		t.Header = append(t.Header, fmt.Sprintf("%s ÷ %s", displayName(c.Order[0]), displayName(c.Order[1])), "better")
	}
	t.Right = make([]bool, len(t.Header))
	for i := 3; i < len(t.Header); i++ {
		t.Right[i] = true
	}
	for _, s := range c.Scenarios {
		for j, r := range c.rows(s) {
			id, title := s.ID, s.Title
			if j > 0 {
				id, title = "", ""
			}
			row := []string{id, title, r.metric}
			for i := range c.Order {
				row = append(row, r.cell(i))
			}
			if len(c.Order) >= 2 {
				ratio, better := c.ratioCells(r)
				row = append(row, ratio, better)
			}
			t.Rows = append(t.Rows, row)
		}
	}
	return t
}

func displayName(b string) string {
	switch b {
	case "kafka":
		return "Kafka"
	}
	return b
}

// Doc builds the full report.
func (c *Comparison) Doc() *Doc {
	d := &Doc{Title: c.Title}
	took := c.Finished.Sub(c.Started).Round(time.Second)
	intro := fmt.Sprintf("Produced by `%s` on %s, %s to %s UTC (%s).", c.Command, c.Machine.Host, c.Started.UTC().Format("2006-01-02 15:04"), c.Finished.UTC().Format("15:04"), took)
	if c.DataFile != "" {
		intro += fmt.Sprintf(" Every figure below comes from the result data ([`%s`](%s)); none is typed in by hand.", c.DataFile, c.DataFile)
	}
	d.add(Para{intro})
	d.add(Heading{2, "Summary"})
	d.add(c.SummaryTable())
	d.add(Para{"Throughput is the median over the repetitions (interleaved, so drift in the machine falls on every broker alike); latencies are percentiles of all repetitions' HDR histograms merged. " +
		"CPU figures are cores (1.00 = one CPU busy), averaged over the measured phase; \"other CPU\" is what neither the broker nor the benchmark client used (other processes on a shared machine, kernel work charged to neither, and on a virtual machine the hypervisor's steal time, which a disturbed run's note gives on its own). " +
		"Produce latency is acknowledgement time minus the record's intended send time; at max rate that includes time queued in the client, " +
		"so compare it between brokers, not with the end-to-end figures. Ratios are the first broker ÷ the second: above 1 is better for throughput, below 1 for latency."})
	if n, total := c.disturbedRuns(); n > 0 {
		d.add(Para{fmt.Sprintf("**%d of %d runs were disturbed**: processes other than the broker and the client (this machine is shared), or kernel threads, used %.2f CPUs or more on average during their measured phase (marked in the per-run tables). Medians over repetitions damp this; single figures may not.", n, total, DisturbedCPU)})
	}
	if len(c.Notes) > 0 {
		d.add(List{c.Notes})
	}
	c.machineSection(d)
	c.brokerSection(d)
	for _, s := range c.Scenarios {
		c.scenarioSection(d, s)
	}
	if len(c.Perf) > 0 {
		c.perfSection(d)
	}
	if len(c.Failures) > 0 {
		d.add(Heading{2, "Failures"})
		d.add(Para{"What failed, with the client's error and the end of the broker's log. A failed run's figures are left out of the summary."})
		for _, f := range c.Failures {
			d.add(Para{fmt.Sprintf("**%s, %s**: %s", f.Scenario, displayName(f.Broker), f.Error)})
			if f.LogTail != "" {
				d.add(Code{f.LogTail})
			}
		}
	}
	return d
}

func (c *Comparison) machineSection(d *Doc) {
	m := c.Machine
	if m.Kernel == "" && c.Limits == nil {
		return
	}
	d.add(Heading{2, "Machine and its limits"})
	d.add(Table{Header: []string{"machine", ""}, Rows: [][]string{
		{"host", m.Host},
		{"CPUs", fmt.Sprintf("%d × %s", m.CPUs, m.CPUModel)},
		{"memory", fmt.Sprintf("%.1f GiB", m.MemoryGiB)},
		{"kernel", m.Kernel},
		{"Go", m.GoVersion},
		{"load average at start / end", m.LoadStart + " / " + m.LoadEnd},
		{"source", m.Source},
	}})
	if c.Limits == nil {
		return
	}
	l := c.Limits
	d.add(Para{fmt.Sprintf("Measured in the same run, on the filesystem of the brokers' data directories (%s).", l.Filesystem)})
	d.add(Table{Header: []string{"limit", "measured", "how"}, Right: []bool{false, true, false}, Rows: [][]string{
		{"sequential write, buffered (page cache)", fmtMiB(l.DiskBufferedMiBps) + " MiB/s", "fio, 1 MiB writes, psync, no fsync"},
		{"sequential write, fdatasync after each 1 MiB", fmtMiB(l.DiskFsyncMiBps) + " MiB/s", "fio, 1 MiB writes, psync, fdatasync=1"},
		{"4 KiB write + fdatasync", fmt.Sprintf("%.0f IOPS, p50 %.0f µs, p99 %.0f µs", l.Fsync4KIOPS, l.Fsync4KP50Micros, l.Fsync4KP99Micros), "fio, 4 KiB writes, fdatasync=1"},
		{"loopback TCP", fmtMiB(l.LoopbackTCPMiBps) + " MiB/s", "one Go stream, 1 MiB writes"},
		{"memory copy", fmtMiB(l.MemcpyMiBps) + " MiB/s", "Go copy(), 64 MiB buffers, one core"},
	}})
	if len(l.Errors) > 0 {
		d.add(List{l.Errors})
	}
	d.add(Code{strings.Join(l.Commands, "\n")})
}

func (c *Comparison) brokerSection(d *Doc) {
	if len(c.Brokers) == 0 {
		return
	}
	d.add(Heading{2, "Brokers"})
	for _, b := range c.Brokers {
		d.add(Heading{3, fmt.Sprintf("%s %s", displayName(b.Name), b.Version)})
		text := "Started with `" + b.Command + "`"
		if b.DataDir != "" {
			text += "; data in `" + b.DataDir + "`"
		}
		d.add(Para{text + "."})
		if len(b.Notes) > 0 {
			d.add(List{b.Notes})
		}
		if len(b.Config) > 0 {
			keys := make([]string, 0, len(b.Config))
			for k := range b.Config {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var lines []string
			for _, k := range keys {
				lines = append(lines, k+"="+b.Config[k])
			}
			d.add(Para{"server.properties:"})
			d.add(Code{strings.Join(lines, "\n")})
		}
	}
}

func (c *Comparison) scenarioSection(d *Doc, s *Scenario) {
	d.add(Heading{2, fmt.Sprintf("%s. %s", s.ID, s.Title)})
	w := s.Workload
	text := w.Summary()
	if s.Durability != "" {
		text += ". Durability: " + s.Durability
	}
	d.add(Para{text + "."})
	var cfgs []string
	for _, b := range c.Order {
		if cfg := w.TopicConfigFor(b); len(cfg) > 0 {
			keys := make([]string, 0, len(cfg))
			for k := range cfg {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var kv []string
			for _, k := range keys {
				kv = append(kv, k+"="+cfg[k])
			}
			cfgs = append(cfgs, fmt.Sprintf("%s topic config: `%s`", displayName(b), strings.Join(kv, " ")))
		}
	}
	client := fmt.Sprintf("Client: franz-go, linger %s, batch %s, compression %s, idempotence %v, max %d requests in flight, %d buffered records per producer; warm-up %s, measured %s.",
		w.Linger, w.BatchSize, w.Compression, w.Idempotence, w.MaxInFlight, w.MaxBufferedRecords, w.Warmup, w.Duration)
	if w.Mode == bench.ModeConsume {
		client = fmt.Sprintf("Client: franz-go, %d consumers (%s assignment), reading from the log start to the end offsets taken when the read began.", w.Consumers, w.ConsumerMode)
	}
	d.add(List{append([]string{client}, cfgs...)})
	for _, n := range s.Notes {
		d.add(Para{n})
	}
	// Per-run table.
	t := Table{Header: []string{"run", "broker", "records/s", "MiB/s", "p50", "p95", "p99", "p99.9", "p99.99", "max", "broker CPU", "broker RSS", "client CPU", "other CPU", "notes"},
		Right: []bool{true, false, true, true, true, true, true, true, true, true, true, true, true, true, false}}
	for i, r := range s.Runs {
		row := []string{fmt.Sprint(i + 1), displayName(r.Broker.Name)}
		tp := r.Produce
		if r.Workload.Mode == bench.ModeConsume {
			tp = r.Consume
		}
		if tp != nil {
			row = append(row, fmtRate(tp.RecordsPerSec), fmtMiB(tp.MiBPerSec))
		} else {
			row = append(row, "—", "—")
		}
		h := r.ProduceLatency
		if r.Workload.Mode == bench.ModeE2E {
			h = r.EndToEndLatency
		}
		if h != nil && h.Count() > 0 {
			p := h.Summary()
			row = append(row, fmtLatency(p.P50), fmtLatency(p.P95), fmtLatency(p.P99), fmtLatency(p.P999), fmtLatency(p.P9999), fmtLatency(p.Max))
		} else {
			row = append(row, "—", "—", "—", "—", "—", "—")
		}
		rs := r.Resources
		row = append(row, fmt.Sprintf("%.2f", rs.BrokerCPUAvg), fmt.Sprintf("%d MiB", rs.BrokerRSSMax>>20), fmt.Sprintf("%.2f", rs.ClientCPUAvg), fmt.Sprintf("%.2f", rs.OtherCPUAvg))
		var notes []string
		if r.Failed != "" {
			notes = append(notes, "FAILED: "+r.Failed)
		}
		if rs.OtherCPUAvg >= DisturbedCPU {
			note := fmt.Sprintf("**disturbed**: %.2f CPUs used by other processes or kernel threads", rs.OtherCPUAvg)
			if rs.StealCPUAvg >= 0.01 {
				note += fmt.Sprintf(", %.2f of them stolen by the hypervisor", rs.StealCPUAvg)
			}
			notes = append(notes, note)
		}
		if r.ClientBound {
			notes = append(notes, "client-bound")
		} else if rs.MachineBusyAvg >= 0.9 {
			notes = append(notes, fmt.Sprintf("CPUs %.0f%% busy", 100*rs.MachineBusyAvg))
		}
		if r.Check != nil && !r.Check.OK {
			notes = append(notes, "check: "+r.Check.Detail)
		}
		if r.Offsets != nil && r.Workload.TopicConfig["retention.bytes"] != "" {
			notes = append(notes, fmt.Sprintf("log start %s of %s", groupThousands(r.Offsets.Start), groupThousands(r.Offsets.End)))
		}
		for _, e := range r.Errors {
			notes = append(notes, fmt.Sprintf("%s error %d×: %s", e.Where, e.Count, e.Message))
		}
		row = append(row, strings.Join(notes, "; "))
		t.Rows = append(t.Rows, row)
	}
	latName := "produce ack"
	if w.Mode == bench.ModeE2E {
		latName = "end-to-end"
	}
	if w.Mode != bench.ModeConsume {
		d.add(Para{"Runs in the order they ran; latency columns are " + latName + " latency."})
	}
	d.add(t)
	for _, f := range ScenarioFigures(s, c.Order) {
		d.add(f)
	}
}

// ScenarioFigures are a scenario's plots: throughput and p99 latency over
// time (every run; a broker's repetitions share its colour and differ in
// dash), the latency
// percentile spectrum per broker (runs merged), and broker CPU over time.
func ScenarioFigures(s *Scenario, order []string) []Figure {
	slug := "s" + anchor(s.ID)
	w := s.Workload
	consume := w.Mode == bench.ModeConsume
	label := s.ID + ". " + w.Name
	tput := &Chart{Title: label + ": throughput", XLabel: "seconds from start of measurement", YLabel: "MiB/s"}
	lat := &Chart{Title: label + ": p99 latency per second", XLabel: "seconds from start of measurement", YLabel: "ms (log scale)", LogY: true}
	cpu := &Chart{Title: label + ": broker CPU", XLabel: "seconds from start of measurement", YLabel: "cores"}
	curve := &Chart{Title: label + ": latency by percentile", XLabel: "percentile", YLabel: "ms (log scale)", LogY: true, PercentileX: true}
	seen := map[string]int{}
	warmupFrom := 0.0
	for _, r := range s.Runs {
		bi := indexOf(order, r.Broker.Name)
		color := Palette(bi, r.Broker.Name)
		rep := seen[r.Broker.Name]
		seen[r.Broker.Name]++
		name := fmt.Sprintf("%s #%d", displayName(r.Broker.Name), rep+1)
		var tp, lp, cp []Point
		for _, iv := range r.Series {
			secs := iv.Seconds
			if secs <= 0 {
				secs = 1
			}
			bytes := iv.ProducedBytes
			if consume {
				bytes = iv.ConsumedBytes
			}
			start := iv.T - secs
			if iv.Warmup {
				warmupFrom = math.Min(warmupFrom, start)
			}
			tp = append(tp, Point{iv.T, float64(bytes) / secs / (1 << 20)})
			l := iv.ProduceP99
			if w.Mode == bench.ModeE2E {
				l = iv.E2EP99
			}
			// A warm-up interval's histogram holds only the few measured
			// records that completed before its end: not a fair point.
			if l > 0 && !iv.Warmup {
				lp = append(lp, Point{iv.T, l})
			}
			cp = append(cp, Point{iv.T, iv.BrokerCPU})
		}
		tput.Series = append(tput.Series, Series{Name: name, Color: color, Dash: rep, Points: tp})
		if len(lp) > 0 {
			lat.Series = append(lat.Series, Series{Name: name, Color: color, Dash: rep, Points: lp})
		}
		cpu.Series = append(cpu.Series, Series{Name: name, Color: color, Dash: rep, Points: cp})
	}
	if warmupFrom < 0 {
		for _, c := range []*Chart{tput, lat, cpu} {
			c.Bands = []Band{{From: warmupFrom, To: 0, Label: "warm-up"}}
		}
	}
	for i, b := range order {
		a := s.aggregate(b)
		h := a.produceLat
		if w.Mode == bench.ModeE2E {
			h = a.e2eLat
		}
		if h.Count() == 0 {
			continue
		}
		var pts []Point
		for _, p := range h.Curve() {
			pts = append(pts, Point{p.Percentile, p.Millis})
		}
		curve.Series = append(curve.Series, Series{Name: displayName(b) + " (all runs)", Color: Palette(i, b), Points: pts})
	}
	figs := []Figure{{slug + "-throughput", tput}}
	if !consume {
		latName := "ack"
		if w.Mode == bench.ModeE2E {
			latName = "end-to-end"
		}
		lat.Title = fmt.Sprintf("%s: %s latency p99 per second", label, latName)
		curve.Title = fmt.Sprintf("%s: %s latency by percentile (all runs)", label, latName)
		figs = append(figs, Figure{slug + "-latency", lat}, Figure{slug + "-percentiles", curve})
	}
	figs = append(figs, Figure{slug + "-cpu", cpu})
	return figs
}

func indexOf(v []string, s string) int {
	for i, x := range v {
		if x == s {
			return i
		}
	}
	return len(v)
}

func (c *Comparison) perfSection(d *Doc) {
	d.add(Heading{2, "Kafka's own ProducerPerformance"})
	d.add(Para{"`org.apache.kafka.tools.ProducerPerformance` (what `kafka-producer-perf-test.sh` runs) from the kafka-tools jar, with the Java client, against each broker: the same topics shape as scenarios 1 and 2, so no result depends on the Go client alone. Its MB is 2^20 bytes; its latency is send() to callback."})
	t := Table{Header: []string{"broker", "durability", "producer properties", "records", "records/s", "MiB/s", "avg", "p50", "p95", "p99", "p99.9", "max", "error"},
		Right: []bool{false, false, false, true, true, true, true, true, true, true, true, true, false}}
	for _, p := range c.Perf {
		r := p.Result
		keys := make([]string, 0, len(p.Props))
		for k := range p.Props {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var kv []string
		for _, k := range keys {
			kv = append(kv, k+"="+p.Props[k])
		}
		row := []string{displayName(p.Broker), p.Durability, strings.Join(kv, " ")}
		if r == nil {
			row = append(row, "", "", "", "", "", "", "", "", "", "not run")
		} else {
			row = append(row, groupThousands(r.Records), fmtRate(r.RecordsPerSec), fmtMiB(r.MiBPerSec),
				fmtLatency(r.AvgMs), fmtLatency(r.P50Ms), fmtLatency(r.P95Ms), fmtLatency(r.P99Ms), fmtLatency(r.P999Ms), fmtLatency(r.MaxMs), r.Error)
		}
		t.Rows = append(t.Rows, row)
	}
	d.add(t)
	// Ratios per durability mode.
	if len(c.Order) >= 2 {
		byKey := map[string]*peer.PerfResult{}
		var modes []string
		for _, p := range c.Perf {
			if p.Result != nil && p.Result.Error == "" {
				byKey[p.Broker+"/"+p.Durability] = p.Result
			}
			if indexOf(modes, p.Durability) == len(modes) {
				modes = append(modes, p.Durability)
			}
		}
		var items []string
		for _, m := range modes {
			a, b := byKey[c.Order[0]+"/"+m], byKey[c.Order[1]+"/"+m]
			if a != nil && b != nil && b.RecordsPerSec > 0 && b.P99Ms > 0 {
				items = append(items, fmt.Sprintf("%s: %s ÷ %s throughput %.2f×, p99 latency %.2f×", m, displayName(c.Order[0]), displayName(c.Order[1]), a.RecordsPerSec/b.RecordsPerSec, a.P99Ms/b.P99Ms))
			}
		}
		if len(items) > 0 {
			d.add(List{items})
		}
	}
	var cmds []string
	for _, p := range c.Perf {
		if p.Result != nil {
			cmds = append(cmds, p.Result.Command)
		}
	}
	d.add(Code{strings.Join(cmds, "\n")})
}

// FromResults builds a comparison of saved results: one scenario per
// workload name, brokers in the order first seen.
func FromResults(title string, results []*bench.Result) *Comparison {
	c := &Comparison{Title: title}
	byName := map[string]*Scenario{}
	for _, r := range results {
		if indexOf(c.Order, r.Broker.Name) == len(c.Order) {
			c.Order = append(c.Order, r.Broker.Name)
		}
		s, ok := byName[r.Workload.Name]
		if !ok {
			s = &Scenario{ID: fmt.Sprint(len(c.Scenarios) + 1), Title: r.Workload.Name, Workload: r.Workload}
			switch r.Workload.Mode {
			case bench.ModeConsume:
				s.Metrics = []string{"consume_throughput"}
			case bench.ModeE2E:
				s.Metrics = []string{"throughput", "e2e_latency"}
			default:
				s.Metrics = []string{"throughput", "ack_latency"}
			}
			byName[r.Workload.Name] = s
			c.Scenarios = append(c.Scenarios, s)
		}
		s.Runs = append(s.Runs, r)
		if c.Started.IsZero() || r.Started.Before(c.Started) {
			c.Started = r.Started
		}
		end := r.Started.Add(time.Duration((r.WarmupSeconds + r.MeasuredSeconds) * float64(time.Second)))
		if end.After(c.Finished) {
			c.Finished = end
		}
		c.Machine.Host, c.Machine.CPUs = r.Host, r.CPUs
	}
	return c
}

// ReadComparison reads a comparison saved as JSON. A file that is not one
// (a single result, say) is an error.
func ReadComparison(path string) (*Comparison, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Comparison
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, err
	}
	if len(c.Scenarios) == 0 || len(c.Order) == 0 {
		return nil, fmt.Errorf("%s: not a comparison", path)
	}
	return &c, nil
}
