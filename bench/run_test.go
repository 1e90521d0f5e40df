package bench_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/sluice-broker/sluice/bench"
	"github.com/sluice-broker/sluice/bench/peer"
)

// startSluice starts the real binary ($SLUICE_BIN, default bin/sluice at the
// repository root) on free ports with a fresh data directory.
func startSluice(t *testing.T) *peer.Sluice {
	t.Helper()
	bin := os.Getenv("SLUICE_BIN")
	if bin == "" {
		_, file, _, _ := runtime.Caller(0)
		bin = filepath.Join(filepath.Dir(file), "..", "bin", "sluice")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("no sluice binary at %s (make build): %v", bin, err)
	}
	s, err := peer.StartSluice(peer.SluiceConfig{Binary: bin, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stopping sluice: %v", err)
		}
	})
	return s
}

func checkLatency(t *testing.T, name string, h *bench.Histogram, wantCount int64) {
	t.Helper()
	if h == nil {
		t.Fatalf("%s: no histogram", name)
	}
	s := h.Summary()
	if !s.Ordered() {
		t.Errorf("%s percentiles out of order: %+v", name, s)
	}
	if s.Count != wantCount {
		t.Errorf("%s latency count %d, want %d (one per record sent in the measured window)", name, s.Count, wantCount)
	}
	if s.P50 <= 0 || s.Max > 10_000 {
		t.Errorf("%s latencies implausible: %+v", name, s)
	}
}

// An end-to-end run at a fixed rate against the real binary: every
// acknowledged record is consumed, the open-loop schedule sends exactly
// rate × duration records in the window, and the percentiles are ordered.
func TestRunEndToEndAgainstSluice(t *testing.T) {
	s := startSluice(t)
	w := bench.Workload{
		Mode: bench.ModeE2E, Partitions: 4, RecordSize: 512, Producers: 2, Consumers: 2,
		Rate: 2000, Warmup: bench.Duration(time.Second), Duration: bench.Duration(3 * time.Second),
		Keys: bench.KeysUniform, DrainTimeout: bench.Duration(15 * time.Second),
	}
	res, err := bench.Run(context.Background(), bench.Target{Name: "sluice", Bootstrap: s.Bootstrap(), PID: s.PID()}, w, bench.Options{})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, s.LogTail(20))
	}
	if res.Check == nil || !res.Check.OK || res.Check.Consumed != res.Check.Acknowledged {
		t.Fatalf("check: %+v", res.Check)
	}
	// 2000 rec/s over 1 s warm-up + 3 s measured, all acknowledged.
	if res.Check.Acknowledged != 8000 {
		t.Errorf("acknowledged %d, want 8000", res.Check.Acknowledged)
	}
	if res.Produce.Errors != 0 || len(res.Errors) != 0 {
		t.Errorf("errors: %d %+v", res.Produce.Errors, res.Errors)
	}
	// Records intended in the measured window each have one latency.
	checkLatency(t, "produce", res.ProduceLatency, 6000)
	checkLatency(t, "end-to-end", res.EndToEndLatency, 6000)
	// Throughput in the window is the target rate, give or take the records
	// acknowledged across the window's edges.
	if rps := res.Produce.RecordsPerSec; rps < 1800 || rps > 2200 {
		t.Errorf("produce %.0f rec/s, want ~2000", rps)
	}
	var measured int
	var sum int64
	for _, iv := range res.Series {
		if !iv.Warmup {
			measured++
			sum += iv.ProducedRecords
		}
	}
	if measured != 3 || sum != res.Produce.Records {
		t.Errorf("%d measured intervals summing to %d records, want 3 summing to %d", measured, sum, res.Produce.Records)
	}
	var total int64
	for _, n := range res.Produce.PerPartition {
		total += n
	}
	if total != res.Check.Acknowledged || len(res.Produce.PerPartition) != 4 {
		t.Errorf("per-partition counts %v sum to %d, want %d over 4", res.Produce.PerPartition, total, res.Check.Acknowledged)
	}
	if !res.Resources.BrokerSampled || res.Resources.BrokerRSSMax <= 0 {
		t.Errorf("broker not sampled: %+v", res.Resources)
	}
}

// Catch-up reads: prefill, then read everything with two consumers.
func TestRunConsumeAgainstSluice(t *testing.T) {
	s := startSluice(t)
	w := bench.Workload{
		Mode: bench.ModeConsume, Partitions: 3, RecordSize: 1024, Consumers: 2, PrefillRecords: 20000,
		Duration: bench.Duration(15 * time.Second),
	}
	res, err := bench.Run(context.Background(), bench.Target{Name: "sluice", Bootstrap: s.Bootstrap()}, w, bench.Options{})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, s.LogTail(20))
	}
	if c := res.Check; c == nil || !c.OK || c.Consumed != 20000 || c.Expected != 20000 {
		t.Fatalf("check: %+v", res.Check)
	}
	if res.Consume.Records != 20000 || res.Consume.RecordsPerSec <= 0 {
		t.Fatalf("consume %+v", res.Consume)
	}
	if res.Resources.BrokerPID != s.PID() {
		t.Errorf("broker found by port: pid %d, want %d", res.Resources.BrokerPID, s.PID())
	}
}

// Max-rate produce with skewed keys: the hottest partition gets the most.
func TestRunProduceSkewedAgainstSluice(t *testing.T) {
	s := startSluice(t)
	w := bench.Workload{
		Mode: bench.ModeProduce, Partitions: 6, RecordSize: 100, Producers: 2, Keys: bench.KeysSkewed, KeySkew: 2,
		Duration: bench.Duration(2 * time.Second), MaxBufferedRecords: 2000,
	}
	res, err := bench.Run(context.Background(), bench.Target{Name: "sluice", Bootstrap: s.Bootstrap(), PID: -1}, w, bench.Options{})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, s.LogTail(20))
	}
	if res.Produce.Records == 0 || res.Produce.Errors != 0 {
		t.Fatalf("produce %+v errors %+v", res.Produce, res.Errors)
	}
	if !res.ProduceLatency.Summary().Ordered() {
		t.Fatalf("percentiles out of order: %+v", res.ProduceLatency.Summary())
	}
	pp := res.Produce.PerPartition
	var hottest, total int64
	for _, n := range pp {
		hottest = max(hottest, n)
		total += n
	}
	// Zipf s=2 puts ~60% of records on the first key alone.
	if float64(hottest) < 0.4*float64(total) {
		t.Errorf("skewed keys spread evenly: %v", pp)
	}
}

// Background readers re-read the prefilled records while a steady-rate
// producer runs; what they read in the measured phase is reported.
func TestRunProduceWithBackgroundReaders(t *testing.T) {
	s := startSluice(t)
	w := bench.Workload{
		Mode: bench.ModeProduce, Partitions: 2, RecordSize: 1024, Producers: 1, Rate: 2000,
		PrefillRecords: 5000, BackgroundReaders: 2, Duration: bench.Duration(2 * time.Second),
	}
	res, err := bench.Run(context.Background(), bench.Target{Name: "sluice", Bootstrap: s.Bootstrap(), PID: -1}, w, bench.Options{})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, s.LogTail(20))
	}
	bg := res.BackgroundRead
	if bg == nil || bg.Records == 0 || bg.MiBPerSec <= 0 {
		t.Fatalf("background read %+v", bg)
	}
	// Re-reading from the start over and over reads more than the prefill
	// holds unless the readers never wrapped; either way the count is of
	// whole records.
	if bg.Bytes != bg.Records*1024 {
		t.Errorf("background read %d bytes for %d records of 1 KiB", bg.Bytes, bg.Records)
	}
	if res.Produce.Records == 0 {
		t.Fatalf("produce %+v", res.Produce)
	}
	bad := w
	bad.PrefillRecords = 0
	if _, err := bench.Run(context.Background(), bench.Target{Name: "sluice", Bootstrap: s.Bootstrap(), PID: -1}, bad, bench.Options{}); err == nil {
		t.Error("background readers without prefilled records to read were accepted")
	}
}
