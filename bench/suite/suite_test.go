package suite_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sluice-broker/sluice/bench"
	"github.com/sluice-broker/sluice/bench/peer"
	"github.com/sluice-broker/sluice/bench/suite"
)

func TestLoadStandardSet(t *testing.T) {
	f, err := suite.Load("../workloads/standard.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Scenarios) != 8 || f.Reps != 3 {
		t.Fatalf("%d scenarios, %d reps", len(f.Scenarios), f.Reps)
	}
	byID := map[string]*suite.Spec{}
	for _, s := range f.Scenarios {
		byID[s.ID] = s
	}
	if w := byID["1"].Workload; w.Partitions != 6 || w.Producers != 4 || w.RecordSize != 1024 || w.Acks != bench.AcksOne || w.Rate != 0 {
		t.Errorf("scenario 1: %+v", w)
	}
	if w := byID["2"].Workload; w.Acks != bench.AcksAll || w.TopicConfigFor("kafka")["flush.messages"] != "1" || len(w.TopicConfigFor("sluice")) != 0 {
		t.Errorf("scenario 2: acks %s, kafka %v", w.Acks, w.TopicConfigFor("kafka"))
	}
	if byID["3"].ConsumeFrom != "1" || byID["3"].Workload.Consumers != 2 {
		t.Errorf("scenario 3: %+v", byID["3"])
	}
	if rf := byID["4"].RateFrom; rf == nil || rf.Scenario != "1" || rf.Broker != "kafka" || rf.Fraction != 0.5 {
		t.Errorf("scenario 4 rate_from %+v", rf)
	}
	if w := byID["5"].Workload; w.RecordSize != 100 {
		t.Errorf("scenario 5 record size %d", w.RecordSize)
	}
	if w := byID["6"].Workload; w.Partitions != 1000 || w.Producers != 100 {
		t.Errorf("scenario 6: %d partitions, %d producers", w.Partitions, w.Producers)
	}
	if w := byID["7"].Workload; w.Keys != bench.KeysSkewed {
		t.Errorf("scenario 7 keys %s", w.Keys)
	}
	if w := byID["8"].Workload; w.TopicConfig["retention.bytes"] == "" || w.Rate <= 0 {
		t.Errorf("scenario 8: %+v", w)
	}
	for _, b := range []string{"sluice", "kafka"} {
		if f.BrokerConfig[b]["log.retention.check.interval.ms"] == "" {
			t.Errorf("%s: no retention check interval", b)
		}
	}
}

func TestLoadRejectsBadReferences(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "p.yaml"), []byte("mode: produce\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "c.yaml"), []byte("mode: consume\n"), 0o644)
	for _, tc := range []struct{ suite, want string }{
		{"scenarios:\n - {id: a, workload: c.yaml, consume_from: b}\n", "not an earlier scenario"},
		{"scenarios:\n - {id: a, workload: p.yaml}\n - {id: b, workload: p.yaml, consume_from: a}\n", "consume workload"},
		{"scenarios:\n - {id: a, workload: p.yaml}\n - {id: b, workload: p.yaml, rate_from: {scenario: a}}\n", "fraction"},
		{"scenarios:\n - {id: a, workload: p.yaml}\n - {id: a, workload: p.yaml}\n", "twice"},
		{"scenarios:\n - {id: a, workload: missing.yaml}\n", "missing.yaml"},
		{"scenarioz: []\n", "scenarioz"},
	} {
		path := filepath.Join(dir, "s.yaml")
		os.WriteFile(path, []byte(tc.suite), 0o644)
		if _, err := suite.Load(path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.suite, err, tc.want)
		}
	}
}

// A two-broker comparison (the same sluice under two names) runs the
// repetitions interleaved A B A B, derives a rate from an earlier scenario,
// and reads back the topic an earlier scenario kept.
func TestRunInterleavedAgainstSluice(t *testing.T) {
	bin := os.Getenv("SLUICE_BIN")
	if bin == "" {
		_, file, _, _ := runtime.Caller(0)
		bin = filepath.Join(filepath.Dir(file), "..", "..", "bin", "sluice")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("no sluice binary at %s (make build)", bin)
	}
	s, err := peer.StartSluice(peer.SluiceConfig{Binary: bin, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "p.yaml"), []byte("mode: produce\npartitions: 2\nrecord_size: 256\nrate: 3000\nduration: 1s\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "c.yaml"), []byte("mode: consume\nconsumers: 2\nduration: 20s\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "s.yaml"), []byte(`title: t
reps: 2
scenarios:
 - {id: "1", workload: p.yaml}
 - {id: "2", workload: c.yaml, consume_from: "1"}
 - {id: "3", workload: p.yaml, rate_from: {scenario: "1", broker: b, fraction: 0.5}}
`), 0o644)
	f, err := suite.Load(filepath.Join(dir, "s.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c := suite.Run(context.Background(), f, suite.Options{Brokers: []peer.Broker{peer.External("a", s.Bootstrap()), peer.External("b", s.Bootstrap())}, NoSettle: true})
	if len(c.Failures) > 0 {
		t.Fatalf("failures: %+v", c.Failures)
	}
	var order []string
	for _, r := range c.Scenarios[0].Runs {
		order = append(order, r.Broker.Name)
	}
	if strings.Join(order, " ") != "a b a b" {
		t.Errorf("run order %v, want a b a b", order)
	}
	for _, r := range c.Scenarios[1].Runs {
		// Each broker name reads the topic of its own last run of scenario 1:
		// 3000 records/s for 1 s.
		if r.Check == nil || !r.Check.OK || r.Check.Consumed != 3000 {
			t.Errorf("%s consumed %+v", r.Broker.Name, r.Check)
		}
	}
	if got := c.Scenarios[2].Workload.Rate; got < 1400 || got > 1600 {
		t.Errorf("derived rate %g, want half of ~3000", got)
	}
	if c.Finished.Sub(c.Started) > 60*time.Second {
		t.Errorf("took %s", c.Finished.Sub(c.Started))
	}
}
