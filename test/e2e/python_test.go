package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// pythonClient runs the scenario with confluent-kafka for Python
// (librdkafka underneath): test/clients/python/sluice_e2e.py, one process per
// sub-command.
type pythonClient struct {
	b      *Broker
	python string
	script string
}

var (
	pythonOnce    sync.Once
	pythonBin     string
	pythonProblem string
)

// preparePython finds a Python with confluent_kafka, or says why not.
func preparePython(t testing.TB) (python, script string) {
	t.Helper()
	pythonOnce.Do(func() {
		pythonBin = os.Getenv("SLUICE_PYTHON")
		if pythonBin == "" {
			pythonBin = "python3"
		}
		if _, err := exec.LookPath(pythonBin); err != nil {
			pythonProblem = pythonBin + " is not on PATH"
			return
		}
		out, err := exec.Command(pythonBin, "-c", "import confluent_kafka").CombinedOutput()
		if err != nil {
			pythonProblem = "cannot import confluent_kafka (pip install confluent-kafka): " + strings.TrimSpace(lastLines(string(out), 3))
			return
		}
	})
	requireTool(t, pythonProblem == "", "confluent-kafka for Python", pythonProblem)
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return pythonBin, filepath.Join(root, "test", "clients", "python", "sluice_e2e.py")
}

func (c *pythonClient) run(t testing.TB, command string, args ...string) []byte {
	t.Helper()
	all := append([]string{c.script, command, "--bootstrap", c.b.Addr}, args...)
	return runCommand(t, 3*time.Minute, c.python, all...)
}

func (c *pythonClient) Name() string                   { return "python confluent-kafka" }
func (c *pythonClient) DatasetOptions() datasetOptions { return datasetOptions{} }
func (c *pythonClient) SetsTimestamps() bool           { return true }
func (c *pythonClient) SupportsMaxTimestamp() bool     { return true }

func (c *pythonClient) CreateTopic(t *testing.T, topic string, partitions int, configs map[string]string) {
	t.Helper()
	args := append([]string{"--topic", topic, "--partitions", strconv.Itoa(partitions)}, configArgs("--config", configs)...)
	if r := parseOp(t, "python create-topic", c.run(t, "create-topic", args...)); r.Code != 0 {
		t.Fatalf("python create-topic %s: error %d: %s", topic, r.Code, r.Message)
	}
}

func (c *pythonClient) Produce(t *testing.T, topic, codec string, recs []testRecord) []acked {
	t.Helper()
	in := writeDatasetFile(t, recs)
	out := c.run(t, "produce", "--topic", topic, "--codec", codec, "--input", in)
	return parseProduceOutput(t, "python producer", takeSentUncompressed(t, codec, out))
}

// takeSentUncompressed notes, for verifyFetched, the records the python
// producer reports librdkafka sent in uncompressed batches although asked
// for codec: librdkafka does so when compressing a batch would not make it
// smaller (rd_kafka_msgset_writer_compress: ciov.iov_len > len). The script
// maps the batches of librdkafka's msg debug log to the offsets of its
// delivery reports, and fails on librdkafka's other reasons for not
// compressing. It returns out without those lines.
func takeSentUncompressed(t *testing.T, codec string, out []byte) []byte {
	t.Helper()
	var rest bytes.Buffer
	for _, line := range bytes.SplitAfter(out, []byte("\n")) {
		var r struct {
			SentUncompressed *struct {
				Partition int32 `json:"p"`
				First     int64 `json:"first"`
				Last      int64 `json:"last"`
				MsgID     int64 `json:"msgid"`
				Count     int   `json:"count"`
				Bytes     int   `json:"bytes"`
			} `json:"sentUncompressed"`
			Note *string `json:"note"`
		}
		if trimmed := bytes.TrimSpace(line); len(trimmed) == 0 || trimmed[0] != '{' || json.Unmarshal(trimmed, &r) != nil {
			rest.Write(line)
			continue
		}
		switch u := r.SentUncompressed; {
		case u != nil:
			if codec == "none" || u.First < 0 || u.Last <= u.First {
				t.Fatalf("python producer: bad report %s", bytes.TrimSpace(line))
			}
			t.Logf("python producer: librdkafka sent partition %d offsets %d..%d uncompressed (batch of %d message(s) from msgid %d, %d bytes; %s would not have made it smaller)",
				u.Partition, u.First, u.Last-1, u.Count, u.MsgID, u.Bytes, codec)
			noteSentUncompressed(t, u.Partition, u.First, u.Last)
		case r.Note != nil:
			t.Logf("python producer: %s", *r.Note)
		default:
			rest.Write(line)
		}
	}
	return rest.Bytes()
}

func (c *pythonClient) Consume(t *testing.T, topic string, partitions int, from map[int32]int64) []fetched {
	t.Helper()
	args := []string{"--topic", topic, "--partitions", strconv.Itoa(partitions)}
	for p, o := range from {
		args = append(args, "--from", fmt.Sprintf("%d:%d", p, o))
	}
	got := parseConsumeOutput(t, "python consumer", c.run(t, "consume", args...))
	// librdkafka interleaves partitions; the checks want offset order per
	// partition, which it keeps.
	return got
}

func (c *pythonClient) ListOffsets(t *testing.T, topic string, partitions int, specs ...string) []map[int32]listedOffset {
	t.Helper()
	args := []string{"--topic", topic, "--partitions", strconv.Itoa(partitions)}
	for _, spec := range specs {
		args = append(args, "--spec", spec)
	}
	out := c.run(t, "list-offsets", args...)
	return parseListedOffsets(t, "python list-offsets", out, partitions, specs)
}

func (c *pythonClient) DeleteRecords(t *testing.T, topic string, partition int32, before int64) (int64, int16) {
	t.Helper()
	r := parseOp(t, "python delete-records", c.run(t, "delete-records", "--topic", topic,
		"--partition", strconv.Itoa(int(partition)), "--before", strconv.FormatInt(before, 10)))
	return r.Low, r.Code
}

func (c *pythonClient) DescribeConfigs(t *testing.T, topic string) map[string]configEntry {
	t.Helper()
	return parseDescribedConfigs(t, "python describe-configs", c.run(t, "describe-configs", "--topic", topic))
}

func (c *pythonClient) AlterConfigs(t *testing.T, topic string, set map[string]string, del []string, validateOnly bool) int16 {
	t.Helper()
	args := append([]string{"--topic", topic, "--validate-only", strconv.FormatBool(validateOnly)}, configArgs("--set", set)...)
	for _, k := range del {
		args = append(args, "--delete", k)
	}
	r := parseOp(t, "python alter-configs", c.run(t, "alter-configs", args...))
	if r.Code != 0 {
		t.Logf("python alter-configs %v %v: error %d: %s", set, del, r.Code, r.Message)
	}
	return r.Code
}

// TestPythonClient runs the client scenario with confluent-kafka for Python.
func TestPythonClient(t *testing.T) {
	python, script := preparePython(t)
	runClientScenario(t, &pythonClient{b: Shared(t), python: python, script: script})
}

// TestPythonDescribeCluster: AdminClient.describe_cluster sees one node, the
// controller, at the advertised address.
func TestPythonDescribeCluster(t *testing.T) {
	python, script := preparePython(t)
	b := Shared(t)
	c := &pythonClient{b: b, python: python, script: script}
	var lines [][]byte
	for _, l := range jsonLines(t, "python describe-cluster", c.run(t, "describe-cluster")) {
		lines = append(lines, l)
	}
	checkClusterDescription(t, "python describe-cluster", b, lines)
}
