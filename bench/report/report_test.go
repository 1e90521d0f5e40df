package report

import (
	"encoding/xml"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-broker/sluice/bench"
	"github.com/sluice-broker/sluice/bench/limits"
)

// result makes a synthetic result: rate records/s and latencies spread
// evenly from 1 ms to lat ms.
func result(broker string, mode bench.Mode, rate float64, lat float64) *bench.Result {
	w := bench.Workload{Name: "w", Mode: mode}
	w.Defaults()
	r := &bench.Result{Broker: bench.Target{Name: broker}, Workload: w, MeasuredSeconds: 10, Started: time.Unix(1e9, 0)}
	h := bench.NewHistogram()
	for i := 0; i <= 1000; i++ {
		h.Record(time.Duration((1 + (lat-1)*float64(i)/1000) * float64(time.Millisecond)))
	}
	tp := &bench.Throughput{RecordsPerSec: rate, MiBPerSec: rate / 1024}
	if mode == bench.ModeConsume {
		r.Consume = tp
	} else {
		r.Produce = tp
		r.ProduceLatency = h
	}
	for i := -1; i < 10; i++ {
		r.Series = append(r.Series, bench.Interval{T: float64(i + 1), Warmup: i < 0, Seconds: 1, ProducedBytes: int64(rate * 1024), ProduceP99: lat, BrokerCPU: 0.5})
	}
	return r
}

func TestSummaryRatiosAndMedians(t *testing.T) {
	c := &Comparison{Title: "t", Order: []string{"sluice", "kafka"}, Limits: &limits.Limits{DiskBufferedMiBps: 1000, LoopbackTCPMiBps: 2000}}
	s := &Scenario{ID: "1", Title: "produce", Metrics: []string{"throughput", "ack_latency"}, Bound: "disk_buffered"}
	// Interleaved A B A B A B; medians 300 and 100.
	for _, rates := range [][2]float64{{200, 100}, {300, 90}, {400, 110}} {
		s.Runs = append(s.Runs, result("sluice", bench.ModeProduce, rates[0], 10), result("kafka", bench.ModeProduce, rates[1], 40))
	}
	failed := result("kafka", bench.ModeProduce, 1e9, 1)
	failed.Failed = "broker died"
	s.Runs = append(s.Runs, failed) // a failed run does not count
	c.Scenarios = []*Scenario{s}
	tab := c.SummaryTable()
	get := func(metric string) []string {
		for _, r := range tab.Rows {
			if r[2] == metric {
				return r
			}
		}
		t.Fatalf("no row %q in %v", metric, tab.Rows)
		return nil
	}
	if r := get("records/s"); r[3] != "300" || r[4] != "100" || r[5] != "3.00×" || r[6] != "sluice" {
		t.Errorf("records/s row %v", r)
	}
	if r := get("ack latency p99"); r[6] != "sluice" || !strings.HasSuffix(r[5], "×") {
		t.Errorf("latency row %v: lower is better", r)
	}
	// 300 rec/s of 1 KiB = 0.29 MiB/s of a 1000 MiB/s buffered-disk bound.
	if r := get("share of buffered disk write limit (1000.0 MiB/s)"); r[3] != "0%" {
		t.Errorf("limit row %v", r)
	}
}

func TestFailedBrokerShowsFailed(t *testing.T) {
	c := &Comparison{Title: "t", Order: []string{"sluice", "kafka"}}
	bad := result("sluice", bench.ModeProduce, 1, 1)
	bad.Failed = "UNKNOWN_TOPIC_OR_PARTITION"
	c.Scenarios = []*Scenario{{ID: "1", Metrics: []string{"throughput"}, Runs: []*bench.Result{bad, result("kafka", bench.ModeProduce, 5, 5)}}}
	r := c.SummaryTable().Rows[0]
	if r[3] != "FAILED" || r[5] != "—" {
		t.Fatalf("row %v", r)
	}
}

func TestP99Step(t *testing.T) {
	r := result("b", bench.ModeProduce, 1, 1)
	for i := range r.Series {
		r.Series[i].ProduceP99 = 2
		if i > 5 {
			r.Series[i].ProduceP99 = 8
		}
	}
	step, ok := P99Step(r)
	if !ok || step != 4 {
		t.Fatalf("step %v %v, want 4", step, ok)
	}
}

// The whole report renders: Markdown, HTML and well-formed SVG figures.
func TestWriteReport(t *testing.T) {
	consumeA, consumeB := result("sluice", bench.ModeConsume, 1000, 0), result("kafka", bench.ModeConsume, 800, 0)
	consumeA.Workload.Name, consumeB.Workload.Name = "c", "c"
	c := FromResults("a report", []*bench.Result{
		result("sluice", bench.ModeProduce, 100, 5), result("kafka", bench.ModeProduce, 50, 9), consumeA, consumeB,
	})
	if len(c.Scenarios) != 2 || len(c.Scenarios[1].Runs) != 2 {
		t.Fatalf("%d scenarios", len(c.Scenarios))
	}
	base := filepath.Join(t.TempDir(), "2026-01-01-host")
	files, err := c.Doc().Write(base, false)
	if err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(files.Markdown)
	page, _ := os.ReadFile(files.HTML)
	for _, want := range []string{"# a report", "| sluice | Kafka |", "2.00×", "![1. w: throughput](2026-01-01-host/s1-throughput.svg)"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
	if !strings.Contains(string(page), "<svg") || !strings.Contains(string(page), "<table>") {
		t.Error("html lacks inline svg or tables")
	}
	svgs, _ := filepath.Glob(filepath.Join(files.FigDir, "*.svg"))
	if len(svgs) < 4 {
		t.Fatalf("%d svg figures", len(svgs))
	}
	for _, f := range svgs {
		data, _ := os.ReadFile(f)
		d := xml.NewDecoder(strings.NewReader(string(data)))
		for {
			if _, err := d.Token(); err != nil {
				if err.Error() != "EOF" {
					t.Errorf("%s: not well-formed: %v", f, err)
				}
				break
			}
		}
	}
}

// A disturbed run says how much of the other load was the hypervisor's
// steal time, which no process on the machine could have caused.
func TestDisturbedRunNamesSteal(t *testing.T) {
	a, b := result("sluice", bench.ModeProduce, 100, 5), result("kafka", bench.ModeProduce, 50, 9)
	a.Resources.OtherCPUAvg, a.Resources.StealCPUAvg = 0.9, 0.4
	b.Resources.OtherCPUAvg = 0.8
	c := FromResults("steal", []*bench.Result{a, b})
	files, err := c.Doc().Write(filepath.Join(t.TempDir(), "r"), false)
	if err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(files.Markdown)
	for _, want := range []string{
		"**disturbed**: 0.90 CPUs used by other processes or kernel threads, 0.40 of them stolen by the hypervisor",
		"**disturbed**: 0.80 CPUs used by other processes or kernel threads |",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
}

func TestNiceTicks(t *testing.T) {
	for _, tc := range []struct{ lo, hi float64 }{{0, 1}, {0, 487}, {-3, 10}, {0, 123456}, {0.001, 0.02}} {
		ticks := niceTicks(tc.lo, tc.hi, 5)
		if len(ticks) < 2 || ticks[0] > tc.lo || ticks[len(ticks)-1] < tc.hi {
			t.Errorf("ticks %v do not cover [%g, %g]", ticks, tc.lo, tc.hi)
		}
		step := ticks[1] - ticks[0]
		m := step / math.Pow(10, math.Floor(math.Log10(step)))
		if math.Abs(m-1) > 1e-9 && math.Abs(m-2) > 1e-9 && math.Abs(m-5) > 1e-9 {
			t.Errorf("step %g is not 1, 2 or 5 × 10^n", step)
		}
	}
}
