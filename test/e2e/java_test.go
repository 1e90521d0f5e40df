package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// javaClient runs the scenario with the Apache Kafka Java client: the
// program in test/clients/java, compiled once per run with javac against the
// jars .ci/install-deps put in the cache, one JVM per sub-command.
type javaClient struct {
	b         *Broker
	classpath string
}

var (
	javaOnce      sync.Once
	javaClasspath string
	javaProblem   string // why the Java client cannot run, if it cannot
)

// javaLibs is the directory of the Kafka Java client jars.
func javaLibs() string {
	if p := os.Getenv("SLUICE_JAVA_LIBS"); p != "" {
		return p
	}
	return filepath.Join(cacheRoot(), "java")
}

func cacheRoot() string {
	if p := os.Getenv("SLUICE_CACHE"); p != "" {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "sluice-cache")
	}
	return filepath.Join(home, ".cache", "sluice")
}

// prepareJava compiles the Java test client once, or says why it cannot.
func prepareJava(t testing.TB) string {
	t.Helper()
	javaOnce.Do(func() {
		javaClasspath, javaProblem = compileJavaSources(javaLibs(), "kafka-clients-*.jar", "java", "java-classes")
	})
	requireTool(t, javaProblem == "", "the Kafka Java client", javaProblem)
	if strings.HasPrefix(javaClasspath, "compile-error: ") {
		t.Fatalf("javac failed on test/clients/java: %s", strings.TrimPrefix(javaClasspath, "compile-error: "))
	}
	return javaClasspath
}

// compileJavaSources compiles test/clients/SRC (package io.sluice.e2e)
// with javac against the jars in libs, which must hold one matching jar,
// into tempRoot/CLASSES. It returns the classpath to run them with, or why
// they cannot run (problem: a tool or the jars missing); a compile error,
// a bug in the suite, comes back as a classpath "compile-error: ...".
func compileJavaSources(libs, jar, src, classes string) (classpath, problem string) {
	for _, tool := range []string{"java", "javac"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", tool + " is not on PATH (Debian: apt-get install openjdk-17-jdk-headless)"
		}
	}
	if jars, _ := filepath.Glob(filepath.Join(libs, jar)); len(jars) == 0 {
		return "", "no " + jar + " in " + libs + " (.ci/install-deps fetches it with mvn)"
	}
	root, err := repoRoot()
	if err != nil {
		return "", err.Error()
	}
	sources, _ := filepath.Glob(filepath.Join(root, "test", "clients", src, "src", "main", "java", "io", "sluice", "e2e", "*.java"))
	if len(sources) == 0 {
		return "", "no Java sources under test/clients/" + src
	}
	dir := filepath.Join(tempRoot, classes)
	args := append([]string{"-d", dir, "-cp", filepath.Join(libs, "*"), "-encoding", "UTF-8"}, sources...)
	if out, err := exec.Command("javac", args...).CombinedOutput(); err != nil {
		return "compile-error: " + err.Error() + "\n" + string(out), ""
	}
	return dir + string(os.PathListSeparator) + filepath.Join(libs, "*"), ""
}

func (c *javaClient) run(t testing.TB, command string, args ...string) []byte {
	t.Helper()
	jvm := []string{
		"-cp", c.classpath,
		"-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", // small and quick to start
		"-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
		"io.sluice.e2e.SluiceE2E", command, "--bootstrap", c.b.Addr,
	}
	return runCommand(t, 3*time.Minute, "java", append(jvm, args...)...)
}

func (c *javaClient) Name() string                   { return "java" }
func (c *javaClient) DatasetOptions() datasetOptions { return datasetOptions{} }
func (c *javaClient) SetsTimestamps() bool           { return true }
func (c *javaClient) SupportsMaxTimestamp() bool     { return true }

// opResult is the line of an admin sub-command that can fail with a Kafka
// error code.
type opResult struct {
	Op      string `json:"op"`
	Code    int16  `json:"code"`
	Message string `json:"message"`
	Low     int64  `json:"low"`
}

func parseOp(t testing.TB, who string, out []byte) opResult {
	t.Helper()
	lines := jsonLines(t, who, out)
	if len(lines) != 1 {
		t.Fatalf("%s: %d result lines, want 1:\n%s", who, len(lines), out)
	}
	var r opResult
	if err := json.Unmarshal(lines[0], &r); err != nil {
		t.Fatalf("%s: %v", who, err)
	}
	return r
}

func configArgs(flag string, kv map[string]string) []string {
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var args []string
	for _, k := range keys {
		args = append(args, flag, k+"="+kv[k])
	}
	return args
}

func (c *javaClient) CreateTopic(t *testing.T, topic string, partitions int, configs map[string]string) {
	t.Helper()
	args := append([]string{"--topic", topic, "--partitions", strconv.Itoa(partitions)}, configArgs("--config", configs)...)
	if r := parseOp(t, "java create-topic", c.run(t, "create-topic", args...)); r.Code != 0 {
		t.Fatalf("java create-topic %s: error %d: %s", topic, r.Code, r.Message)
	}
}

func (c *javaClient) Produce(t *testing.T, topic, codec string, recs []testRecord) []acked {
	t.Helper()
	in := writeDatasetFile(t, recs)
	return parseProduceOutput(t, "java producer", c.run(t, "produce", "--topic", topic, "--codec", codec, "--input", in))
}

func (c *javaClient) Consume(t *testing.T, topic string, partitions int, from map[int32]int64) []fetched {
	t.Helper()
	args := []string{"--topic", topic, "--partitions", strconv.Itoa(partitions)}
	for p, o := range from {
		args = append(args, "--from", fmt.Sprintf("%d:%d", p, o))
	}
	return parseConsumeOutput(t, "java consumer", c.run(t, "consume", args...))
}

// parseListedOffsets reads list-offsets lines, {"spec":S,"p":P,"o":O,"ts":T},
// into one map per spec, in the order of specs.
func parseListedOffsets(t testing.TB, who string, out []byte, partitions int, specs []string) []map[int32]listedOffset {
	t.Helper()
	bySpec := map[string]map[int32]listedOffset{}
	for _, line := range jsonLines(t, who, out) {
		var l struct {
			Spec string `json:"spec"`
			P    int32  `json:"p"`
			listedOffset
		}
		if err := json.Unmarshal(line, &l); err != nil {
			t.Fatalf("%s: %v", who, err)
		}
		if bySpec[l.Spec] == nil {
			bySpec[l.Spec] = map[int32]listedOffset{}
		}
		bySpec[l.Spec][l.P] = l.listedOffset
	}
	res := make([]map[int32]listedOffset, len(specs))
	for i, spec := range specs {
		res[i] = bySpec[spec]
		if len(res[i]) != partitions {
			t.Fatalf("%s: %s: offsets for %d partitions, want %d:\n%s", who, spec, len(res[i]), partitions, out)
		}
	}
	return res
}

func (c *javaClient) ListOffsets(t *testing.T, topic string, partitions int, specs ...string) []map[int32]listedOffset {
	t.Helper()
	args := []string{"--topic", topic, "--partitions", strconv.Itoa(partitions)}
	for _, spec := range specs {
		args = append(args, "--spec", spec)
	}
	out := c.run(t, "list-offsets", args...)
	return parseListedOffsets(t, "java list-offsets", out, partitions, specs)
}

func (c *javaClient) DeleteRecords(t *testing.T, topic string, partition int32, before int64) (int64, int16) {
	t.Helper()
	r := parseOp(t, "java delete-records", c.run(t, "delete-records", "--topic", topic,
		"--partition", strconv.Itoa(int(partition)), "--before", strconv.FormatInt(before, 10)))
	return r.Low, r.Code
}

func parseDescribedConfigs(t testing.TB, who string, out []byte) map[string]configEntry {
	t.Helper()
	res := map[string]configEntry{}
	for _, line := range jsonLines(t, who, out) {
		var e struct {
			Name     string  `json:"name"`
			Value    *string `json:"value"`
			Source   string  `json:"source"`
			ReadOnly bool    `json:"readOnly"`
		}
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("%s: %v", who, err)
		}
		res[e.Name] = configEntry{Value: e.Value, Source: e.Source, ReadOnly: e.ReadOnly}
	}
	return res
}

func (c *javaClient) DescribeConfigs(t *testing.T, topic string) map[string]configEntry {
	t.Helper()
	return parseDescribedConfigs(t, "java describe-configs", c.run(t, "describe-configs", "--topic", topic))
}

func (c *javaClient) AlterConfigs(t *testing.T, topic string, set map[string]string, del []string, validateOnly bool) int16 {
	t.Helper()
	args := append([]string{"--topic", topic, "--validate-only", strconv.FormatBool(validateOnly)}, configArgs("--set", set)...)
	for _, k := range del {
		args = append(args, "--delete", k)
	}
	r := parseOp(t, "java alter-configs", c.run(t, "alter-configs", args...))
	if r.Code != 0 {
		t.Logf("java alter-configs %v %v: error %d: %s", set, del, r.Code, r.Message)
	}
	return r.Code
}

// clusterDescription is the output of describe-cluster.
type clusterDescription struct {
	ClusterID  string `json:"clusterId"`
	Controller int32  `json:"controller"`
	Nodes      []struct {
		ID   int32  `json:"id"`
		Host string `json:"host"`
		Port int    `json:"port"`
	} `json:"nodes"`
}

func checkClusterDescription(t testing.TB, who string, b *Broker, lines [][]byte) {
	t.Helper()
	if len(lines) != 1 {
		t.Fatalf("%s: %d lines, want 1", who, len(lines))
	}
	var d clusterDescription
	if err := json.Unmarshal(lines[0], &d); err != nil {
		t.Fatalf("%s: %v", who, err)
	}
	if d.ClusterID == "" || len(d.Nodes) != 1 || d.Controller != d.Nodes[0].ID ||
		fmt.Sprintf("%s:%d", d.Nodes[0].Host, d.Nodes[0].Port) != b.Addr {
		t.Errorf("%s: %s; want a cluster id, one node at %s, and it the controller", who, lines[0], b.Addr)
	}
}

// TestJavaClient runs the client scenario with the Kafka Java client.
func TestJavaClient(t *testing.T) {
	cp := prepareJava(t)
	runClientScenario(t, &javaClient{b: Shared(t), classpath: cp})
}

// TestJavaDescribeCluster: AdminClient.describeCluster sees one node, the
// controller, at the advertised address.
func TestJavaDescribeCluster(t *testing.T) {
	cp := prepareJava(t)
	b := Shared(t)
	c := &javaClient{b: b, classpath: cp}
	var lines [][]byte
	for _, l := range jsonLines(t, "java describe-cluster", c.run(t, "describe-cluster")) {
		lines = append(lines, l)
	}
	checkClusterDescription(t, "java describe-cluster", b, lines)
}
