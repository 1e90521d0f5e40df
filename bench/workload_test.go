package bench

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseWorkloadYAML(t *testing.T) {
	w, err := ParseWorkload([]byte(`
name: produce-1k
mode: produce
partitions: 6
record_size: 1KiB
keys: skewed
key_skew: 1.5
producers: 4
acks: all
idempotence: true
compression: zstd
linger: 5ms
batch_size: 256KiB
rate: 20000
warmup: 2s
duration: 1m
topic_config:
  retention.bytes: "1048576"
broker_topic_config:
  kafka:
    flush.messages: "1"
`))
	if err != nil {
		t.Fatal(err)
	}
	want := Workload{
		Name: "produce-1k", Mode: ModeProduce, Topic: "sluice-bench", Partitions: 6, Replication: 1,
		RecordSize: 1024, Keys: KeysSkewed, KeyCount: 1000, KeySkew: 1.5, Producers: 4, Consumers: 0,
		ConsumerMode: ConsumerDirect, Acks: AcksAll, Idempotence: true, Compression: "zstd",
		Linger: Duration(5 * time.Millisecond), BatchSize: 256 << 10, MaxInFlight: 5, MaxBufferedRecords: 10000,
		Rate: 20000, Warmup: Duration(2 * time.Second), Duration: Duration(time.Minute), DrainTimeout: Duration(time.Minute),
	}
	// Maps are compared separately.
	gotCfg, gotBroker := w.TopicConfig, w.BrokerTopicConfig
	w.TopicConfig, w.BrokerTopicConfig = nil, nil
	if !reflect.DeepEqual(w, want) {
		t.Fatalf("got  %+v\nwant %+v", w, want)
	}
	w.TopicConfig, w.BrokerTopicConfig = gotCfg, gotBroker
	if c := w.TopicConfigFor("kafka"); c["flush.messages"] != "1" || c["retention.bytes"] != "1048576" {
		t.Fatalf("kafka topic config %v", c)
	}
	if c := w.TopicConfigFor("sluice"); len(c) != 1 {
		t.Fatalf("sluice topic config %v", c)
	}
}

func TestParseWorkloadJSONAndDefaults(t *testing.T) {
	w, err := ParseWorkload([]byte(`{"mode": "e2e", "acks": -1, "record_size": 100, "duration": 3}`))
	if err != nil {
		t.Fatal(err)
	}
	if w.Acks.Value() != -1 || w.RecordSize != 100 || w.Duration.D() != 3*time.Second || w.Producers != 1 || w.Consumers != 1 || w.Name != "e2e" {
		t.Fatalf("%+v", w)
	}
	if w.Acks != AcksAll {
		t.Fatalf("acks %v", w.Acks)
	}
	// Unset acks defaults to 1.
	w, err = ParseWorkload([]byte(`mode: produce`))
	if err != nil || w.Acks != AcksOne {
		t.Fatalf("default acks %v, %v", w.Acks, err)
	}
}

func TestParseWorkloadErrors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{`mode: stream`, "mode"},
		{`keys: zipf`, "keys"},
		{`acks: 2`, "acks"},
		{`record_size: lots`, "size"},
		{`duration: forever`, "duration"},
		{`partitons: 6`, "partitons"}, // typo: unknown keys are errors
		{`compression: brotli`, "compression"},
		{`idempotence: true`, "idempotence needs acks=all"},
		{"keys: skewed\nkey_skew: 0.9", "Zipf"},
		{`rate: -5`, "rate"},
		{"mode: consume\nconsumers: -1", "consumers"},
	} {
		_, err := ParseWorkload([]byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one mentioning %q", tc.doc, err, tc.want)
		}
	}
}

func TestParseSizeAndDuration(t *testing.T) {
	for in, want := range map[string]Size{"100": 100, "1KiB": 1024, "1 MiB": 1 << 20, "64KB": 64000, "2M": 2 << 20, "1.5KiB": 1536} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for in, want := range map[string]time.Duration{"10s": 10 * time.Second, "500ms": 500 * time.Millisecond, "2.5": 2500 * time.Millisecond} {
		if got, err := ParseDuration(in); err != nil || got.D() != want {
			t.Errorf("ParseDuration(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
}

// Flags apply over a file, and only the flags that were given.
func TestWorkloadFlagsOverFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.yaml")
	if err := os.WriteFile(path, []byte("mode: e2e\npartitions: 12\nrate: 1000\nacks: all\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := LoadWorkload(path)
	if err != nil {
		t.Fatal(err)
	}
	if w.Name != "w" {
		t.Fatalf("name from file name: %q", w.Name)
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	wf := BindWorkloadFlags(fs)
	if err := fs.Parse([]string{"--rate", "500", "--topic-config", "a=1", "--topic-config", "b=2", "--keys", "uniform"}); err != nil {
		t.Fatal(err)
	}
	if err := wf.Apply(&w); err != nil {
		t.Fatal(err)
	}
	if w.Rate != 500 || w.Partitions != 12 || w.Acks != AcksAll || w.Keys != KeysUniform || w.TopicConfig["a"] != "1" || w.TopicConfig["b"] != "2" {
		t.Fatalf("%+v", w)
	}
	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(nopWriter{})
	BindWorkloadFlags(fs)
	if err := fs.Parse([]string{"--acks", "two"}); err == nil {
		t.Fatal("bad --acks accepted")
	}
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }

// Every workload file in the repo parses.
func TestRepoWorkloadsParse(t *testing.T) {
	files, _ := filepath.Glob("workloads/*.yaml")
	if len(files) == 0 {
		t.Skip("no workload files")
	}
	for _, f := range files {
		if filepath.Base(f) == "standard.yaml" {
			continue // the suite file, tested in bench/suite
		}
		if _, err := LoadWorkload(f); err != nil {
			t.Error(err)
		}
	}
}
