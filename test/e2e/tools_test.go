package e2e

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// kafkaTool runs the main class of one of Kafka's command-line tools
// (kafka-tools, from Maven Central) against b and returns its output.
func kafkaTool(t *testing.T, b *Broker, class string, args ...string) string {
	t.Helper()
	full := append([]string{"-cp", kafkaTools(t), "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"org.apache.kafka.tools." + class, "--bootstrap-server", b.Addr}, args...)
	return string(runCommand(t, time.Minute, "java", full...))
}

// kafkaCore returns the classpath of Kafka's broker jars (kafka-configs
// lives there, kafka.admin.ConfigCommand), cached by scripts/kafka-peer
// install.
func kafkaCore(t *testing.T) string {
	t.Helper()
	_, err := exec.LookPath("java")
	requireTool(t, err == nil, "kafka-configs", "java is not on PATH")
	dir := filepath.Join(cacheRoot(), "kafka-4.3.1")
	jars, _ := filepath.Glob(filepath.Join(dir, "kafka_2.13-*.jar"))
	requireTool(t, len(jars) > 0, "kafka-configs", "no kafka_2.13 jar in "+dir+" (scripts/kafka-peer install)")
	return filepath.Join(dir, "*")
}

// kafka-log-dirs --describe: the data directory with every partition of
// the topic and its size.
func TestKafkaLogDirsTool(t *testing.T) {
	b := Shared(t)
	requireOwnBroker(t, "sluice's data directory")
	topic := topicName(t, "")
	createTopic(t, b, topic, 2)
	cl := b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err := cl.ProduceSync(testContext(t, 30*time.Second), &kgo.Record{Topic: topic, Partition: 0, Value: []byte(strings.Repeat("x", 5000))}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	out := kafkaTool(t, b, "LogDirsCommand", "--describe", "--topic-list", topic)
	var doc struct {
		Brokers []struct {
			Broker  int `json:"broker"`
			LogDirs []struct {
				Error      *string `json:"error"`
				LogDir     string  `json:"logDir"`
				Partitions []struct {
					Partition string `json:"partition"`
					Size      int64  `json:"size"`
				} `json:"partitions"`
			} `json:"logDirs"`
		} `json:"brokers"`
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "{") {
			if err := json.Unmarshal([]byte(line), &doc); err != nil {
				t.Fatalf("%v in:\n%s", err, out)
			}
		}
	}
	if len(doc.Brokers) != 1 || len(doc.Brokers[0].LogDirs) != 1 {
		t.Fatalf("kafka-log-dirs --describe:\n%s", out)
	}
	d := doc.Brokers[0].LogDirs[0]
	want, _ := filepath.Abs(b.dataDir)
	if d.Error != nil || d.LogDir != want {
		t.Fatalf("log dir %q (error %v), want %q", d.LogDir, d.Error, want)
	}
	sizes := map[string]int64{}
	for _, p := range d.Partitions {
		sizes[p.Partition] = p.Size
	}
	if len(sizes) != 2 || sizes[topic+"-0"] < 5000 {
		t.Fatalf("partitions %v, want %s-0 of at least 5000 bytes and %s-1", sizes, topic, topic)
	}
}

// kafka-features describe: metadata.version and the other features, as a
// one-node Kafka shows them.
func TestKafkaFeaturesTool(t *testing.T) {
	b := Shared(t)
	requireOwnBroker(t, "sluice's feature levels")
	out := kafkaTool(t, b, "FeatureCommand", "describe")
	lines := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "Feature:" {
			lines[f[1]] = line
		}
	}
	mv := lines["metadata.version"]
	if !strings.Contains(mv, "FinalizedVersionLevel: 3.9-IV0") || !strings.Contains(mv, "SupportedMinVersion: 3.3-IV3") {
		t.Fatalf("metadata.version: %q in:\n%s", mv, out)
	}
	if gv := lines["group.version"]; !strings.Contains(gv, "FinalizedVersionLevel: 1") {
		t.Fatalf("group.version: %q in:\n%s", gv, out)
	}
}

// kafka-metadata-quorum describe: a single voter, this node, leading.
func TestKafkaMetadataQuorumTool(t *testing.T) {
	b := Shared(t)
	requireOwnBroker(t, "sluice's metadata log")
	out := kafkaTool(t, b, "MetadataQuorumCommand", "describe", "--status")
	fields := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	if fields["LeaderId"] != "1" || fields["CurrentObservers"] != "[]" || !strings.Contains(fields["CurrentVoters"], `"id": 1`) {
		t.Fatalf("kafka-metadata-quorum describe --status:\n%s", out)
	}
	out = kafkaTool(t, b, "MetadataQuorumCommand", "describe", "--replication")
	if !strings.Contains(out, "Leader") {
		t.Fatalf("kafka-metadata-quorum describe --replication:\n%s", out)
	}
}

// kafka-configs: the broker's settings with --all include what sluice
// honours; Kafka 4's newer topic configs are accepted and shown.
func TestKafkaConfigsTool(t *testing.T) {
	b := Shared(t)
	requireOwnBroker(t, "sluice's broker settings")
	cp := kafkaCore(t)
	tool := func(args ...string) string {
		t.Helper()
		full := append([]string{"-cp", cp, "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
			"kafka.admin.ConfigCommand", "--bootstrap-server", b.Addr}, args...)
		return string(runCommand(t, time.Minute, "java", full...))
	}
	out := tool("--describe", "--all", "--entity-type", "brokers", "--entity-name", "1")
	for _, want := range []string{"auto.create.topics.enable=true", "log.cleaner.enable=true", "num.partitions=1", "log.retention.hours=", "log.segment.bytes="} {
		if !strings.Contains(out, want) && !(want == "log.retention.hours=" && strings.Contains(out, "log.retention.ms=")) {
			t.Errorf("kafka-configs --describe --all on the broker lacks %q", want)
		}
	}
	if t.Failed() {
		t.Fatalf("output:\n%s", out)
	}
	topic := topicName(t, "")
	createTopic(t, b, topic, 1)
	tool("--alter", "--entity-type", "topics", "--entity-name", topic, "--add-config", "compression.gzip.level=5,compression.zstd.level=10,cleanup.policy=compact")
	out = tool("--describe", "--entity-type", "topics", "--entity-name", topic)
	for _, want := range []string{"compression.gzip.level=5", "compression.zstd.level=10", "cleanup.policy=compact"} {
		if !strings.Contains(out, want) {
			t.Fatalf("after --alter, %q missing from:\n%s", want, out)
		}
	}
	// Out of range, refused as Kafka refuses it.
	for _, c := range []struct{ setting, refusal string }{
		{"compression.gzip.level=42", "must be in [1, 9]"},
		{"compression.lz4.level=0", "must be in [1, 17]"},
		{"compression.zstd.level=23", "must be in [-131072, 22]"},
	} {
		ctx := testContext(t, time.Minute)
		cmd := exec.CommandContext(ctx, "java", "-cp", cp, "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "kafka.admin.ConfigCommand",
			"--bootstrap-server", b.Addr, "--alter", "--entity-type", "topics", "--entity-name", topic, "--add-config", c.setting)
		if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "InvalidConfigurationException") || !strings.Contains(string(out), c.refusal) {
			t.Fatalf("%s: %v, want INVALID_CONFIG saying %q:\n%s", c.setting, err, c.refusal, out)
		}
	}
	// Nothing changed, and gzip's -1 (its default) is accepted.
	tool("--alter", "--entity-type", "topics", "--entity-name", topic, "--add-config", "compression.gzip.level=-1")
	out = tool("--describe", "--entity-type", "topics", "--entity-name", topic)
	if !strings.Contains(out, "compression.gzip.level=-1") || !strings.Contains(out, "compression.zstd.level=10") {
		t.Fatalf("after the refusals:\n%s", out)
	}
}
