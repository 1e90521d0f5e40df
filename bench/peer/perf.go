package peer

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ToolsDir is where InstallTools caches the kafka-tools jars for a version.
func ToolsDir(version string) string {
	return filepath.Join(filepath.Dir(peerLastFile()), "kafka-tools-"+version)
}

// InstallTools fetches org.apache.kafka:kafka-tools:VERSION and its runtime
// dependencies from Maven Central (mvn dependency:copy-dependencies) into
// the cache outside the repository, once. It returns the directory.
func InstallTools(ctx context.Context, version string) (string, error) {
	dir := ToolsDir(version)
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return dir, nil
	}
	if _, err := exec.LookPath("mvn"); err != nil {
		return "", fmt.Errorf("mvn not found (apt-get install -y maven)")
	}
	work, err := os.MkdirTemp("", "kafka-tools-pom-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	pom := fmt.Sprintf(`<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.sluice.bench</groupId>
  <artifactId>kafka-tools</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>%s</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-nop</artifactId><version>1.7.36</version></dependency>
  </dependencies>
</project>
`, version)
	if err := os.WriteFile(filepath.Join(work, "pom.xml"), []byte(pom), 0o644); err != nil {
		return "", err
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, "mvn", "-q", "-B", "-Dstyle.color=never", "dependency:copy-dependencies",
		"-DoutputDirectory="+tmp, "-DincludeScope=runtime")
	cmd.Dir = work
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("mvn could not fetch kafka-tools %s: %v\n%s", version, err, out)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644); err != nil {
		return "", err
	}
	os.RemoveAll(dir)
	return dir, os.Rename(tmp, dir)
}

// PerfConfig is one ProducerPerformance run.
type PerfConfig struct {
	ToolsDir   string
	Bootstrap  string
	Topic      string // must exist (create it with the partitions wanted)
	NumRecords int64
	RecordSize int
	// Props are producer properties (acks, linger.ms, batch.size, ...).
	Props map[string]string
	Heap  string // default 512m
}

// PerfResult is what ProducerPerformance printed on its summary line. MB in
// its output is 2^20 bytes, so MiBPerSec is that figure.
type PerfResult struct {
	Command       string  `json:"command"`
	Records       int64   `json:"records"`
	RecordsPerSec float64 `json:"records_per_s"`
	MiBPerSec     float64 `json:"mib_per_s"`
	AvgMs         float64 `json:"avg_ms"`
	MaxMs         float64 `json:"max_ms"`
	P50Ms         float64 `json:"p50_ms"`
	P95Ms         float64 `json:"p95_ms"`
	P99Ms         float64 `json:"p99_ms"`
	P999Ms        float64 `json:"p99_9_ms"`
	Seconds       float64 `json:"seconds"`
	Error         string  `json:"error,omitempty"`
	OutputTail    string  `json:"output_tail,omitempty"`
}

// "1000 records sent, 53908.355795 records/sec (52.64 MB/sec), 46.72 ms avg
// latency, 778.00 ms max latency, 21 ms 50th, 135 ms 95th, 162 ms 99th, 167
// ms 99.9th."
var perfSummary = regexp.MustCompile(`(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, ([\d.]+) ms max latency, ([\d.]+) ms 50th, ([\d.]+) ms 95th, ([\d.]+) ms 99th, ([\d.]+) ms 99.9th`)

// RunProducerPerformance runs org.apache.kafka.tools.ProducerPerformance
// (what kafka-producer-perf-test.sh runs) and parses its summary line.
func RunProducerPerformance(ctx context.Context, cfg PerfConfig) *PerfResult {
	heap := cfg.Heap
	if heap == "" {
		heap = "512m"
	}
	keys := make([]string, 0, len(cfg.Props))
	for k := range cfg.Props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := []string{"-Xmx" + heap, "-cp", filepath.Join(cfg.ToolsDir, "*"), "org.apache.kafka.tools.ProducerPerformance",
		"--bootstrap-server", cfg.Bootstrap, "--topic", cfg.Topic,
		"--num-records", strconv.FormatInt(cfg.NumRecords, 10), "--record-size", strconv.Itoa(cfg.RecordSize),
		"--throughput", "-1"}
	if len(keys) > 0 {
		args = append(args, "--command-property")
		for _, k := range keys {
			args = append(args, k+"="+cfg.Props[k])
		}
	}
	res := &PerfResult{Command: "java " + strings.Join(args, " ")}
	start := time.Now()
	out, err := exec.CommandContext(ctx, "java", args...).CombinedOutput()
	res.Seconds = time.Since(start).Seconds()
	res.OutputTail = lastLines(string(out), 6)
	if !parsePerfSummary(string(out), res) {
		if err == nil {
			err = fmt.Errorf("no summary line in the output")
		}
	}
	if err != nil {
		res.Error = err.Error()
	}
	return res
}

// parsePerfSummary fills res from the last summary line of the output.
func parsePerfSummary(out string, res *PerfResult) bool {
	m := perfSummary.FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		return false
	}
	last := m[len(m)-1]
	f := func(i int) float64 { v, _ := strconv.ParseFloat(last[i], 64); return v }
	res.Records = int64(f(1))
	res.RecordsPerSec, res.MiBPerSec, res.AvgMs, res.MaxMs = f(2), f(3), f(4), f(5)
	res.P50Ms, res.P95Ms, res.P99Ms, res.P999Ms = f(6), f(7), f(8), f(9)
	return true
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
