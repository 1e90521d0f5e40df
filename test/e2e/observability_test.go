package e2e

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestEBPFProbesSeeProduceIO: with serve --ebpf, an acks=all produce run's
// block I/O and io_uring datasyncs show up in the probes' histograms. It
// skips, saying why, where the probes cannot attach (no root, BTF or
// tracefs), as the broker itself then runs without them.
func TestEBPFProbesSeeProduceIO(t *testing.T) {
	b := StartSluice(t, BrokerOptions{Flags: []string{"--ebpf"}})
	logText := readFrom(b.logPath, 0, 1000)
	if strings.Contains(logText, "eBPF probes off") {
		t.Skipf("the broker could not attach its probes here: %s", lastLines(grepLines(logText, "eBPF"), 3))
	}
	topic := topicName(t, "")
	ctx := testContext(t, 60*time.Second)
	if resp, err := b.Admin(t).CreateTopics(ctx, 1, 1, nil, topic); err != nil || resp[topic].Err != nil {
		t.Fatalf("create: %v", err)
	}
	cl := b.Client(t, kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(kgo.NoCompression()))
	value := make([]byte, 64<<10)
	rand.Read(value)
	for i := 0; i < 160; i++ { // 10 MiB, each batch fdatasync'ed
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: value}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	m := scrape(t, ctx, b)
	// Page-cache mode makes acks=all durable with io_uring fsyncs, direct
	// mode with io_uring RWF_DSYNC WRITE_FIXEDs.
	op := "FSYNC"
	if directMode() {
		op = "WRITE_FIXED"
	}
	var blockWrites, uringOps float64
	for name, v := range m {
		if strings.HasPrefix(name, "sluice_ebpf_block_io_latency_seconds_count") && strings.Contains(name, "write") {
			blockWrites += v
		}
		if strings.HasPrefix(name, "sluice_ebpf_io_uring_request_latency_seconds_count") && strings.Contains(name, `"`+op+`"`) {
			uringOps += v
		}
	}
	t.Logf("probes saw %v block writes and %v io_uring %s requests", blockWrites, uringOps, op)
	if blockWrites == 0 {
		t.Errorf("the block I/O probe saw no writes during a 10 MiB acks=all produce run")
	}
	if uringOps == 0 {
		t.Errorf("the io_uring probe saw no %s requests during an acks=all produce run", op)
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestGrafanaDashboardUsesRealMetrics: every sluice_ metric the bundled
// Grafana dashboard queries is one the broker exports (after some activity:
// a produce, a consume, a group commit).
func TestGrafanaDashboardUsesRealMetrics(t *testing.T) {
	dash := loadDashboard(t)
	b := StartSluice(t, BrokerOptions{Flags: []string{"--ebpf"}})
	ebpf := !strings.Contains(readFrom(b.logPath, 0, 1000), "eBPF probes off")
	topic := topicName(t, "")
	ctx := testContext(t, 60*time.Second)
	if resp, err := b.Admin(t).CreateTopics(ctx, 1, 1, nil, topic); err != nil || resp[topic].Err != nil {
		t.Fatalf("create: %v", err)
	}
	cl := b.Client(t, kgo.DefaultProduceTopic(topic), kgo.ConsumeTopics(topic), kgo.ConsumerGroup(topic+"-group"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	for i := 0; i < 10; i++ {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("dashboard")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	for got := 0; got < 10; {
		fs := cl.PollFetches(ctx)
		if err := fs.Err(); err != nil {
			t.Fatal(err)
		}
		got += fs.NumRecords()
	}
	if err := cl.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatal(err)
	}
	have := scrapedFamilies(t, ctx, b)
	var missing []string
	for _, p := range dash.Panels {
		if strings.HasPrefix(p.Title, "Replication:") {
			continue // a pair's metrics: TestStandbyFollowsEveryPartitionByteForByte checks them
		}
		for _, tg := range p.Targets {
			for _, name := range dashboardNameRE.FindAllString(tg.Expr, -1) {
				base := strings.TrimSuffix(name, "_bucket")
				if strings.HasPrefix(base, "sluice_ebpf_") && !ebpf {
					continue // the probes could not attach on this host
				}
				if (strings.HasPrefix(base, "sluice_tail_cache_") || strings.HasPrefix(base, "sluice_direct_")) && !directMode() {
					continue // direct mode's metrics; this run is in page-cache mode
				}
				if !have[base] {
					missing = append(missing, p.Title+": "+name)
				}
			}
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("the dashboard queries metrics the broker does not export:\n%s", strings.Join(missing, "\n"))
	}
}

var dashboardNameRE = regexp.MustCompile(`\b(sluice_[a-z0-9_]+|go_[a-z0-9_]+|process_[a-z0-9_]+)`)

// scrapedFamilies lists the metric families b exports, by name
// (histograms by base name).
func scrapedFamilies(t *testing.T, ctx context.Context, b *Broker) map[string]bool {
	t.Helper()
	have := map[string]bool{}
	for name := range scrape(t, ctx, b) {
		base := name
		if i := strings.IndexByte(base, '{'); i >= 0 {
			base = base[:i]
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			base = strings.TrimSuffix(base, suffix)
		}
		have[base] = true
	}
	return have
}

// checkDashboardPanels fails t for every metric the dashboard's panels
// whose titles start with prefix query that b does not export.
func checkDashboardPanels(t *testing.T, b *Broker, prefix string) {
	t.Helper()
	dash := loadDashboard(t)
	have := scrapedFamilies(t, testContext(t, 30*time.Second), b)
	n := 0
	for _, p := range dash.Panels {
		if !strings.HasPrefix(p.Title, prefix) {
			continue
		}
		for _, tg := range p.Targets {
			for _, name := range dashboardNameRE.FindAllString(tg.Expr, -1) {
				n++
				if !have[name] {
					t.Errorf("dashboard panel %q queries %s, which %s does not export", p.Title, name, b.Addr)
				}
			}
		}
	}
	if n == 0 {
		t.Errorf("the dashboard has no panel titled %q...", prefix)
	}
}

// dashboard is the part of the bundled Grafana dashboard the tests read.
type dashboard struct {
	Panels []struct {
		Title   string
		Targets []struct{ Expr string }
	}
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(root, "deploy", "grafana", "sluice.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash dashboard
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	return dash
}
