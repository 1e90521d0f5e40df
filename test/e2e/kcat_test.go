package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// kcatClient runs the scenario with kcat (librdkafka): kcat produces,
// consumes and lists offsets; it has no admin API, so topic creation,
// DeleteRecords and configs go through franz-go's kadm (the embedded
// franzClient).
type kcatClient struct {
	franzClient
	bin string
}

// kcatBinary finds kcat (or its old name, kafkacat), honouring SLUICE_KCAT.
func kcatBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("SLUICE_KCAT"); p != "" {
		path, err := exec.LookPath(p)
		requireTool(t, err == nil, "kcat", fmt.Sprintf("SLUICE_KCAT=%s: %v", p, err))
		return path
	}
	for _, name := range []string{"kcat", "kafkacat"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	requireTool(t, false, "kcat", "neither kcat nor kafkacat is on PATH (Debian: apt-get install kcat)")
	return ""
}

func (c *kcatClient) Name() string { return "kcat" }

// kcat reads keys and values as text lines and sets headers per invocation.
func (c *kcatClient) DatasetOptions() datasetOptions {
	return datasetOptions{Text: true, HeaderGroup: 2500}
}

// kcat's producer cannot set a record's timestamp.
func (c *kcatClient) SetsTimestamps() bool       { return false }
func (c *kcatClient) SupportsMaxTimestamp() bool { return false }

func (c *kcatClient) Produce(t *testing.T, topic, codec string, recs []testRecord) []acked {
	t.Helper()
	// librdkafka sends a batch uncompressed when compressing it would make
	// it larger (rd_kafka_msgset_writer_compress: ciov.iov_len > len), as
	// it does for a small batch of incompressible text. Its msg debug log
	// names each batch's codec: the batches it sent uncompressed are noted
	// for verifyFetched, which then wants codec none for their records.
	var batches *kcatBatches
	if codec != "none" {
		batches = c.newKcatBatches(t, topic)
	}
	// One invocation per run of records sharing their headers.
	for start := 0; start < len(recs); {
		end := start + 1
		for end < len(recs) && sameHeaders(recs[end].Headers, recs[start].Headers) {
			end++
		}
		var in bytes.Buffer
		for _, r := range recs[start:end] {
			in.Write(r.Key)
			in.WriteByte('\t')
			in.Write(r.Value)
			in.WriteByte('\n')
		}
		args := []string{"-P", "-b", c.b.Addr, "-t", topic, "-z", codec, "-K", "\t",
			// The Java client's partitioner for keyed records, so the test
			// knows each record's partition.
			"-X", "partitioner=murmur2_random",
			"-X", "message.timeout.ms=60000"}
		if batches != nil {
			args = append(args, "-X", "debug=msg")
		}
		for _, h := range recs[start].Headers {
			args = append(args, "-H", h.Key+"="+string(h.Value))
		}
		_, stderr := c.runOut(t, &in, args...)
		if batches != nil {
			batches.read(t, codec, stderr, end-start)
		}
		start = end
	}
	return nil // kcat does not report offsets
}

// kcatBatches follows, from librdkafka's msg debug log, the batches kcat
// sent to a topic and at which offsets they landed.
type kcatBatches struct {
	// line matches librdkafka's log of each batch it builds
	// (rd_kafka_msgset_writer_finalize): partition, message count and
	// codec, "uncompressed" when it sends the batch without one.
	line *regexp.Regexp
	// next is the offset each partition's next batch lands at: batches of
	// a partition are built, sent and appended in order.
	next map[int32]int64
	// lost is set once the log and the records disagree (a batch built
	// again for a retry); no batch is noted after that, so verifyFetched
	// is strict.
	lost bool
}

func (c *kcatClient) newKcatBatches(t *testing.T, topic string) *kcatBatches {
	t.Helper()
	ends, err := c.b.Admin(t).ListEndOffsets(testContext(t, time.Minute), topic)
	if err != nil {
		t.Fatalf("ListEndOffsets %s: %v", topic, err)
	}
	kb := &kcatBatches{
		line: regexp.MustCompile(`: ` + regexp.QuoteMeta(topic) + ` \[(\d+)\]: Produce MessageSet with (\d+) message\(s\) \(.*, (\w+)\)$`),
		next: map[int32]int64{},
	}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			t.Fatalf("ListEndOffsets %s/%d: %v", o.Topic, o.Partition, o.Err)
		}
		kb.next[o.Partition] = o.Offset
	})
	return kb
}

// read takes the log of one kcat invocation that produced n records.
func (kb *kcatBatches) read(t *testing.T, codec string, stderr []byte, n int) {
	t.Helper()
	type batch struct {
		partition int32
		count     int64
		codec     string
	}
	var batches []batch
	total := 0
	for _, line := range strings.Split(string(stderr), "\n") {
		// librdkafka's other reasons for not compressing: the broker does
		// not support the codec, or compressing failed. Neither is the
		// size rule, so the batch must not pass as expected.
		if strings.Contains(line, "not compressing batch") || strings.Contains(line, "sending uncompressed") {
			t.Fatalf("kcat -z %s: %s", codec, line)
		}
		m := kb.line.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		p, _ := strconv.ParseInt(m[1], 10, 32)
		count, _ := strconv.ParseInt(m[2], 10, 64)
		batches = append(batches, batch{int32(p), count, m[3]})
		total += int(count)
	}
	if total != n && !kb.lost {
		t.Logf("kcat -z %s: librdkafka logged batches of %d messages for %d records (a retry?): no longer telling which records it sent uncompressed", codec, total, n)
		kb.lost = true
	}
	if kb.lost {
		return
	}
	for _, b := range batches {
		first := kb.next[b.partition]
		kb.next[b.partition] = first + b.count
		switch b.codec {
		case codec:
		case "uncompressed":
			t.Logf("kcat -z %s: librdkafka sent %d record(s) of partition %d from offset %d uncompressed (%s would not have made the batch smaller)",
				codec, b.count, b.partition, first, codec)
			noteSentUncompressed(t, b.partition, first, first+b.count)
		default:
			t.Fatalf("kcat -z %s: librdkafka logged a batch compressed with %s", codec, b.codec)
		}
	}
}

func sameHeaders(a, b []header) bool {
	return headersEqual(a, b, false)
}

// run runs kcat; kcat exits non-zero when a record could not be delivered.
func (c *kcatClient) run(t testing.TB, stdin *bytes.Buffer, args ...string) []byte {
	t.Helper()
	stdout, _ := c.runOut(t, stdin, args...)
	return stdout
}

// runOut is run that also returns kcat's standard error.
func (c *kcatClient) runOut(t testing.TB, stdin *bytes.Buffer, args ...string) (stdout, stderr []byte) {
	t.Helper()
	ctx := testContext(t, 2*time.Minute)
	cmd := exec.CommandContext(ctx, c.bin, args...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	var outBuf, errBuf bytes.Buffer
	cmd.Stdout = &outBuf
	cmd.Stderr = &errBuf
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat %s: %v\nstderr:\n%s", strings.Join(shorten(args), " "), err, lastLines(errBuf.String(), 30))
	}
	if strings.Contains(errBuf.String(), "% ERROR") {
		t.Fatalf("kcat %s reported errors:\n%s", strings.Join(shorten(args), " "), lastLines(errBuf.String(), 30))
	}
	return outBuf.Bytes(), errBuf.Bytes()
}

// The consume format: fields split by ASCII unit separators, records ended
// by record separators; neither occurs in the text dataset.
const (
	kcatFieldSep  = "\x1f"
	kcatRecordSep = "\x1e"
)

func (c *kcatClient) Consume(t *testing.T, topic string, partitions int, from map[int32]int64) []fetched {
	t.Helper()
	format := strings.Join([]string{"%p", "%o", "%T", "%k", "%s", "%h"}, kcatFieldSep) + kcatRecordSep
	var out []fetched
	for p := range int32(partitions) {
		offset := "beginning"
		if o, ok := from[p]; ok {
			offset = strconv.FormatInt(o, 10)
		}
		raw := c.run(t, nil, "-C", "-b", c.b.Addr, "-t", topic, "-p", strconv.Itoa(int(p)), "-o", offset, "-e", "-q", "-f", format)
		for _, rec := range strings.Split(string(raw), kcatRecordSep) {
			if rec == "" {
				continue
			}
			f := strings.Split(rec, kcatFieldSep)
			if len(f) != 6 {
				t.Fatalf("kcat consume: record with %d fields: %q", len(f), rec)
			}
			part, err1 := strconv.Atoi(f[0])
			off, err2 := strconv.ParseInt(f[1], 10, 64)
			ts, err3 := strconv.ParseInt(f[2], 10, 64)
			if err1 != nil || err2 != nil || err3 != nil {
				t.Fatalf("kcat consume: bad record %q", rec)
			}
			fr := fetched{Partition: int32(part), Offset: off, Timestamp: ts, Key: []byte(f[3]), Value: []byte(f[4]), Compression: -1}
			if f[5] != "" {
				for _, kv := range strings.Split(f[5], ",") {
					name, value, _ := strings.Cut(kv, "=")
					fr.Headers = append(fr.Headers, header{Key: name, Value: []byte(value)})
				}
			}
			out = append(out, fr)
		}
	}
	return out
}

func (c *kcatClient) ListOffsets(t *testing.T, topic string, partitions int, specs ...string) []map[int32]listedOffset {
	t.Helper()
	var out []map[int32]listedOffset
	for _, spec := range specs {
		out = append(out, c.listOffsets(t, topic, partitions, spec))
	}
	return out
}

func (c *kcatClient) listOffsets(t *testing.T, topic string, partitions int, spec string) map[int32]listedOffset {
	t.Helper()
	var ts string
	switch {
	case spec == "earliest":
		ts = "-2"
	case spec == "latest":
		ts = "-1"
	case strings.HasPrefix(spec, "timestamp:"):
		ts = strings.TrimPrefix(spec, "timestamp:")
	default:
		t.Fatalf("kcat cannot list offsets by %s", spec)
	}
	args := []string{"-Q", "-J", "-b", c.b.Addr}
	for p := range partitions {
		args = append(args, "-t", fmt.Sprintf("%s:%d:%s", topic, p, ts))
	}
	raw := c.run(t, nil, args...)
	// {"TOPIC":{"topic":"TOPIC","0":{"partition":0,"offset":3},...}}
	var doc map[string]map[string]json.RawMessage
	if err := json.Unmarshal(bytes.TrimSpace(raw), &doc); err != nil {
		t.Fatalf("kcat -Q: %v in %s", err, raw)
	}
	out := map[int32]listedOffset{}
	for p := range int32(partitions) {
		var po struct {
			Partition int32  `json:"partition"`
			Offset    int64  `json:"offset"`
			Err       string `json:"error"`
		}
		if err := json.Unmarshal(doc[topic][strconv.Itoa(int(p))], &po); err != nil || po.Err != "" {
			t.Fatalf("kcat -Q partition %d: %v %s in %s", p, err, po.Err, raw)
		}
		out[p] = listedOffset{Offset: po.Offset, Timestamp: -1}
	}
	return out
}

// TestKcat runs the client scenario with kcat.
func TestKcat(t *testing.T) {
	bin := kcatBinary(t)
	runClientScenario(t, &kcatClient{franzClient: franzClient{b: Shared(t)}, bin: bin})
}

// TestKcatMetadata: `kcat -L -J` shows the one broker and a topic's
// partitions led by it.
func TestKcatMetadata(t *testing.T) {
	bin := kcatBinary(t)
	b := Shared(t)
	c := &kcatClient{franzClient: franzClient{b: b}, bin: bin}
	topic := topicName(t, "")
	c.CreateTopic(t, topic, 3, nil)
	waitForTopic(t, b, topic, 3)
	raw := c.run(t, nil, "-L", "-J", "-b", b.Addr, "-t", topic)
	var md struct {
		ControllerID int32 `json:"controllerid"`
		Brokers      []struct {
			ID   int32  `json:"id"`
			Name string `json:"name"`
		} `json:"brokers"`
		Topics []struct {
			Topic      string `json:"topic"`
			Error      string `json:"error"`
			Partitions []struct {
				Partition int32 `json:"partition"`
				Leader    int32 `json:"leader"`
				Error     string
				Replicas  []struct{ ID int32 } `json:"replicas"`
				ISRs      []struct{ ID int32 } `json:"isrs"`
			} `json:"partitions"`
		} `json:"topics"`
	}
	if err := json.Unmarshal(raw, &md); err != nil {
		t.Fatalf("kcat -L -J: %v in %s", err, raw)
	}
	if len(md.Brokers) != 1 || md.Brokers[0].Name != b.Addr {
		t.Fatalf("brokers %+v, want one at %s", md.Brokers, b.Addr)
	}
	id := md.Brokers[0].ID
	if md.ControllerID != id {
		t.Errorf("controller %d, want %d", md.ControllerID, id)
	}
	if len(md.Topics) != 1 || md.Topics[0].Topic != topic || md.Topics[0].Error != "" || len(md.Topics[0].Partitions) != 3 {
		t.Fatalf("topics %s, want %s with 3 partitions", raw, topic)
	}
	for i, p := range md.Topics[0].Partitions {
		if p.Partition != int32(i) || p.Leader != id || len(p.Replicas) != 1 || p.Replicas[0].ID != id || len(p.ISRs) != 1 || p.ISRs[0].ID != id {
			t.Errorf("partition %+v, want partition %d led by %d, replicas and ISR [%d]", p, i, id, id)
		}
	}
}
