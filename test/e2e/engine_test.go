package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestPinCPUs: with --pin-cpus every shard thread (named shard-N) may run on
// exactly one CPU, N mod the CPU count, as /proc shows.
func TestPinCPUs(t *testing.T) {
	b := StartSluice(t, BrokerOptions{Shards: 2, Flags: []string{"--pin-cpus"}})
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", b.PID()))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("no threads under /proc for pid %d: %v", b.PID(), err)
	}
	seen := map[int]string{}
	for _, task := range tasks {
		comm, _ := os.ReadFile(filepath.Join(task, "comm"))
		name := strings.TrimSpace(string(comm))
		if !strings.HasPrefix(name, "shard-") {
			continue
		}
		id, _ := strconv.Atoi(strings.TrimPrefix(name, "shard-"))
		status, _ := os.ReadFile(filepath.Join(task, "status"))
		m := regexp.MustCompile(`(?m)^Cpus_allowed_list:\s*(\S+)$`).FindSubmatch(status)
		if m == nil {
			t.Fatalf("%s: no Cpus_allowed_list", task)
		}
		seen[id] = string(m[1])
	}
	if len(seen) != 2 {
		t.Fatalf("found shard threads %v, want shard-0 and shard-1", seen)
	}
	for id, cpus := range seen {
		if want := strconv.Itoa(id % runtime.NumCPU()); cpus != want {
			t.Errorf("shard-%d may run on CPUs %q, want only %s", id, cpus, want)
		}
	}
}

// TestIdleConnectionsClosed: connections.max.idle.ms closes a connection
// that sends nothing, and only after that long.
func TestIdleConnectionsClosed(t *testing.T) {
	cfg := defaultBrokerConfig()
	cfg["connections.max.idle.ms"] = "500"
	b := StartSluice(t, BrokerOptions{Config: cfg})
	c, err := net.Dial("tcp", b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("idle connection: read gave %v, want EOF (closed by the broker)", err)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Fatalf("closed after %v, before connections.max.idle.ms", d)
	}
}

// TestRetentionWhileConsuming: with small segments and a size limit,
// retention deletes whole old segments while a consumer reads from the
// start; the log start moves forward and the consumer never sees an error
// other than being moved past deleted data.
func TestRetentionWhileConsuming(t *testing.T) {
	cfg := defaultBrokerConfig()
	cfg["log.retention.check.interval.ms"] = "200"
	b := StartSluice(t, BrokerOptions{Config: cfg})
	topic := topicName(t, "")
	ctx := testContext(t, 60*time.Second)
	adm := b.Admin(t)
	resp, err := adm.CreateTopics(ctx, 1, 1, map[string]*string{
		"segment.bytes":   kadm.StringPtr("65536"),
		"retention.bytes": kadm.StringPtr("262144"),
	}, topic)
	if err != nil || resp[topic].Err != nil {
		t.Fatalf("create: %v %v", err, resp[topic].Err)
	}
	// Uncompressed, so the bytes stored are what is sent.
	cl := b.Client(t, kgo.DefaultProduceTopic(topic), kgo.ProducerBatchMaxBytes(16384), kgo.ProducerBatchCompression(kgo.NoCompression()))
	value := make([]byte, 1000)
	const n = 2000 // ~2 MB: far past retention.bytes
	for i := 0; i < n; i++ {
		cl.Produce(ctx, &kgo.Record{Value: value}, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var start int64
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		starts, err := adm.ListStartOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		start = starts[topic][0].Offset
		if start > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("retention never deleted a segment")
		}
	}
	ends, _ := adm.ListEndOffsets(ctx, topic)
	if end := ends[topic][0].Offset; end != n {
		t.Fatalf("log end %d, want %d: retention must delete only old segments", end, n)
	}
	// A consumer from the (new) start reads everything that is left.
	cons := b.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := int64(0)
	for got < n-start {
		fs := cons.PollFetches(ctx)
		if err := fs.Err(); err != nil {
			t.Fatalf("consuming after retention: %v (read %d of %d)", err, got, n-start)
		}
		got += int64(fs.NumRecords())
	}
	t.Logf("retention moved the log start to %d; consumed the remaining %d records", start, got)
}

// TestMetricsCountWhatHappened: after producing and consuming a known
// number of records to a fresh topic, /metrics counts exactly those.
func TestMetricsCountWhatHappened(t *testing.T) {
	b := StartSluice(t, BrokerOptions{})
	topic := topicName(t, "")
	ctx := testContext(t, 60*time.Second)
	if resp, err := b.Admin(t).CreateTopics(ctx, 3, 1, nil, topic); err != nil || resp[topic].Err != nil {
		t.Fatalf("create: %v", err)
	}
	cl := b.Client(t, kgo.DefaultProduceTopic(topic))
	const n = 1234
	for i := 0; i < n; i++ {
		cl.Produce(ctx, &kgo.Record{Key: []byte(strconv.Itoa(i)), Value: []byte("metrics")}, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	cons := b.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	for got := 0; got < n; {
		fs := cons.PollFetches(ctx)
		if err := fs.Err(); err != nil {
			t.Fatal(err)
		}
		got += fs.NumRecords()
	}
	// A request's latency is observed just after its response is written,
	// so the last fetch's may land a moment after the client has it.
	var m map[string]float64
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		m = scrape(t, ctx, b)
		if m[`sluice_request_duration_seconds_count{api="Fetch"}`] >= 1 || time.Now().After(deadline) {
			break
		}
	}
	label := fmt.Sprintf(`{topic="%s"}`, topic)
	for name, want := range map[string]float64{
		"sluice_topic_records_in_total" + label:  n,
		"sluice_topic_records_out_total" + label: n,
	} {
		if got := m[name]; got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if m["sluice_topic_bytes_in_total"+label] <= 0 || m["sluice_topic_bytes_in_total"+label] != m["sluice_topic_bytes_out_total"+label] {
		t.Errorf("bytes in %v and out %v: every appended byte was fetched once", m["sluice_topic_bytes_in_total"+label], m["sluice_topic_bytes_out_total"+label])
	}
	// franz-go's default producer is idempotent with acks=all: every batch
	// waited to be durable, and each was timed. Page-cache mode makes it
	// durable with datasync rounds; direct mode with RWF_DSYNC writes.
	var dsyncWrites float64
	for name, v := range m {
		if strings.HasPrefix(name, "sluice_direct_writes_total{") && strings.Contains(name, `kind="dsync"`) {
			dsyncWrites += v
		}
	}
	durableBy, durableCount := "fsync", m["sluice_fsync_duration_seconds_count"]
	if directMode() {
		durableBy, durableCount = "RWF_DSYNC writes", dsyncWrites
	}
	if m["sluice_produce_durable_seconds_count"] < 1 || durableCount < 1 {
		t.Errorf("durability metrics did not move: produce_durable %v, %s %v", m["sluice_produce_durable_seconds_count"], durableBy, durableCount)
	}
	if m[`sluice_request_duration_seconds_count{api="Produce"}`] < 1 || m[`sluice_request_duration_seconds_count{api="Fetch"}`] < 1 {
		t.Errorf("request latency histograms did not move")
	}
	var hw float64
	for p := 0; p < 3; p++ {
		hw += m[fmt.Sprintf(`sluice_partition_high_watermark{partition="%d",topic="%s"}`, p, topic)]
	}
	if hw != n {
		t.Errorf("high watermarks sum to %v, want %d", hw, n)
	}
}

// scrape reads /metrics into name{labels} → value.
func scrape(t *testing.T, ctx context.Context, b *Broker) map[string]float64 {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+b.HTTPAddr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}
