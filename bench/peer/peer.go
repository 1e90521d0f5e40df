// Package peer starts and stops the brokers a benchmark compares: sluice
// (the bin/sluice binary) and Apache Kafka (through scripts/kafka-peer, which
// runs the Maven Central jars as a single-node KRaft broker), each on
// loopback with a fresh data directory. It also runs Kafka's own
// ProducerPerformance tool (perf.go), so no comparison depends on the Go
// client alone.
//
// Every broker reports the settings it was started with, so a report can
// say exactly what was compared.
package peer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Broker is a running broker.
type Broker interface {
	Name() string      // "sluice", "kafka"
	Bootstrap() string // 127.0.0.1:PORT
	PID() int
	Settings() Settings
	// Stop shuts the broker down cleanly (SIGTERM, then SIGKILL after a grace
	// period) and returns what went wrong, if anything.
	Stop() error
}

// Settings describe how a broker was started, for reports.
type Settings struct {
	Name    string            `json:"name"`
	Version string            `json:"version"`
	Command string            `json:"command"`
	DataDir string            `json:"data_dir"`
	Config  map[string]string `json:"config,omitempty"` // server.properties in effect
	Notes   []string          `json:"notes,omitempty"`
	Log     string            `json:"log"`
}

// FreePort returns a TCP port on 127.0.0.1 nothing listens on now (and, when
// pairs is set, whose successor is free too: Kafka's controller takes
// PORT+1).
func FreePort(pair bool) (int, error) {
	for attempt := 0; attempt < 50; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !pair {
			return port, nil
		}
		if l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+1)); err == nil {
			l2.Close()
			return port, nil
		}
	}
	return 0, errors.New("no free port pair found")
}

// waitPort polls until something accepts on addr, the process dies, or the
// deadline passes.
func waitPort(addr string, alive func() bool, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		if !alive() {
			return errors.New("the process exited")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("nothing accepted on %s within %s", addr, timeout)
}

func pidAlive(pid int) bool {
	return pid > 0 && syscall.Kill(pid, 0) == nil
}

// SluiceConfig is how to start sluice.
type SluiceConfig struct {
	Name    string // the report's column (default "sluice")
	Binary  string // path to bin/sluice
	DataDir string // wiped and recreated
	// Config lines for a server.properties passed with --config (Kafka key
	// names; sluice ignores the ones it does not implement).
	Config map[string]string
	Args   []string // extra flags for sluice serve
}

// Sluice is a running sluice broker.
type Sluice struct {
	name      string
	cmd       *exec.Cmd
	bootstrap string
	settings  Settings
	exited    chan struct{}
	waitErr   error
}

// StartSluice starts bin/sluice on free loopback ports and waits until it
// accepts connections.
func StartSluice(cfg SluiceConfig) (*Sluice, error) {
	bin, err := filepath.Abs(cfg.Binary)
	if err != nil {
		return nil, err
	}
	if err := os.RemoveAll(cfg.DataDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, err
	}
	port, err := FreePort(false)
	if err != nil {
		return nil, err
	}
	httpPort, err := FreePort(false)
	if err != nil {
		return nil, err
	}
	bootstrap := fmt.Sprintf("127.0.0.1:%d", port)
	dataDir := filepath.Join(cfg.DataDir, "data")
	args := []string{"serve", "--data-dir", dataDir, "--listen", bootstrap, "--http", fmt.Sprintf("127.0.0.1:%d", httpPort)}
	if len(cfg.Config) > 0 {
		propsPath := filepath.Join(cfg.DataDir, "server.properties")
		if err := os.WriteFile(propsPath, []byte(properties(cfg.Config)), 0o644); err != nil {
			return nil, err
		}
		args = append(args, "--config", propsPath)
	}
	args = append(args, cfg.Args...)
	logPath := filepath.Join(cfg.DataDir, "sluice.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group: a Ctrl-C meant for the benchmark must not kill
	// the broker mid-run; Stop signals it by pid.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	name := cfg.Name
	if name == "" {
		name = "sluice"
	}
	s := &Sluice{name: name, cmd: cmd, bootstrap: bootstrap, exited: make(chan struct{})}
	go func() { s.waitErr = cmd.Wait(); logFile.Close(); close(s.exited) }()
	alive := func() bool {
		select {
		case <-s.exited:
			return false
		default:
			return true
		}
	}
	if err := waitPort(bootstrap, alive, 30*time.Second); err != nil {
		s.Stop()
		return nil, fmt.Errorf("sluice did not start: %v; log %s:\n%s", err, logPath, tail(logPath, 20))
	}
	version := "dev"
	if out, err := exec.Command(bin, "version").Output(); err == nil {
		version = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "sluice"))
	}
	s.settings = Settings{
		Name: name, Version: version, Command: bin + " " + strings.Join(args, " "),
		DataDir: dataDir, Config: cfg.Config, Log: logPath,
	}
	if line := firstMatching(logPath, "sluice serving"); line != "" {
		s.settings.Notes = append(s.settings.Notes, line)
	}
	return s, nil
}

func (s *Sluice) Name() string       { return s.name }
func (s *Sluice) Bootstrap() string  { return s.bootstrap }
func (s *Sluice) PID() int           { return s.cmd.Process.Pid }
func (s *Sluice) Settings() Settings { return s.settings }

// Alive reports whether the process still runs.
func (s *Sluice) Alive() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM and waits up to 30 s, then SIGKILL.
func (s *Sluice) Stop() error {
	if !s.Alive() {
		return s.exitError()
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		return s.exitError()
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return errors.New("sluice ignored SIGTERM for 30 s and was killed")
	}
}

func (s *Sluice) exitError() error {
	if s.waitErr != nil {
		return fmt.Errorf("sluice exited: %v; log %s:\n%s", s.waitErr, s.settings.Log, tail(s.settings.Log, 20))
	}
	return nil
}

// LogTail is the end of the broker's log, for failure reports.
func (s *Sluice) LogTail(lines int) string { return tail(s.settings.Log, lines) }

// LogSize is the log's current length, to mark where a run started.
func (s *Sluice) LogSize() int64 { return fileSize(s.settings.Log) }

// LogSince is the log's warnings and errors written since offset.
func (s *Sluice) LogSince(offset int64, lines int) string {
	return logExcerpt(s.settings.Log, offset, lines)
}

// KafkaConfig is how to start Apache Kafka.
type KafkaConfig struct {
	Script  string // scripts/kafka-peer
	DataDir string // wiped by the script
	Heap    string // KAFKA_PEER_HEAP (default the script's)
	Version string // KAFKA_PEER_VERSION (default the script's)
	// Config lines appended to the generated server.properties (they win).
	Config map[string]string
}

// Kafka is a running Apache Kafka peer.
type Kafka struct {
	cfg       KafkaConfig
	bootstrap string
	pid       int
	settings  Settings
}

// StartKafka starts a fresh single-node Kafka through scripts/kafka-peer.
func StartKafka(ctx context.Context, cfg KafkaConfig) (*Kafka, error) {
	script, err := filepath.Abs(cfg.Script)
	if err != nil {
		return nil, err
	}
	cfg.Script = script
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	cfg.DataDir = dir
	port, err := FreePort(true)
	if err != nil {
		return nil, err
	}
	extra := ""
	env := os.Environ()
	if len(cfg.Config) > 0 {
		f, err := os.CreateTemp("", "kafka-peer-extra-*.properties")
		if err != nil {
			return nil, err
		}
		extra = f.Name()
		defer os.Remove(extra)
		if _, err := f.WriteString(properties(cfg.Config)); err != nil {
			f.Close()
			return nil, err
		}
		f.Close()
		env = append(env, "KAFKA_PEER_EXTRA_CONFIG="+extra)
	}
	if cfg.Heap != "" {
		env = append(env, "KAFKA_PEER_HEAP="+cfg.Heap)
	}
	if cfg.Version != "" {
		env = append(env, "KAFKA_PEER_VERSION="+cfg.Version)
	}
	// The script records the last peer it started in a file other sessions
	// may rely on; put it back afterwards so this peer does not hijack a
	// bare `kafka-peer stop`.
	lastFile, lastBefore := peerLastFile(), ""
	if b, err := os.ReadFile(lastFile); err == nil {
		lastBefore = string(b)
	}
	// Run a private copy: bash reads a script as it executes, so an edit to
	// the shared script in the middle of a start would break it.
	copyPath, err := privateCopy(script)
	if err != nil {
		return nil, err
	}
	defer os.Remove(copyPath)
	cmd := exec.CommandContext(ctx, copyPath, "start", strconv.Itoa(port), dir)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if lastBefore != "" {
		_ = os.WriteFile(lastFile, []byte(lastBefore), 0o644)
	}
	if err != nil {
		// The JVM may be up even though the script failed: do not leave it.
		_ = exec.Command(script, "stop", dir).Run()
		return nil, fmt.Errorf("kafka-peer start: %v\n%s", err, out)
	}
	pidText, err := os.ReadFile(filepath.Join(dir, "kafka.pid"))
	if err != nil {
		return nil, err
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pidText)))
	k := &Kafka{cfg: cfg, bootstrap: fmt.Sprintf("127.0.0.1:%d", port), pid: pid}
	props, _ := readProperties(filepath.Join(dir, "server.properties"))
	version := cfg.Version
	if version == "" {
		version = ScriptDefault(script, "KAFKA_PEER_VERSION")
	}
	heap := cfg.Heap
	if heap == "" {
		heap = ScriptDefault(script, "KAFKA_PEER_HEAP")
	}
	k.settings = Settings{
		Name: "kafka", Version: version,
		Command: fmt.Sprintf("KAFKA_PEER_HEAP=%s %s start %d %s", heap, cfg.Script, port, dir),
		DataDir: filepath.Join(dir, "logs"), Config: props, Log: filepath.Join(dir, "kafka.log"),
		Notes: []string{"JVM: -Xmx" + heap + " -Xms256m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 (kafka-run-class defaults, smaller heap)", strings.TrimSpace(lastLine(string(out)))},
	}
	if jv, err := exec.Command("java", "-version").CombinedOutput(); err == nil {
		k.settings.Notes = append(k.settings.Notes, "java: "+strings.SplitN(strings.TrimSpace(string(jv)), "\n", 2)[0])
	}
	return k, nil
}

func (k *Kafka) Name() string       { return "kafka" }
func (k *Kafka) Bootstrap() string  { return k.bootstrap }
func (k *Kafka) PID() int           { return k.pid }
func (k *Kafka) Settings() Settings { return k.settings }

// Alive reports whether the JVM still runs.
func (k *Kafka) Alive() bool { return pidAlive(k.pid) }

// LogTail is the end of the broker's log.
func (k *Kafka) LogTail(lines int) string { return tail(k.settings.Log, lines) }

// LogSize is the log's current length, to mark where a run started.
func (k *Kafka) LogSize() int64 { return fileSize(k.settings.Log) }

// LogSince is the log's warnings and errors written since offset.
func (k *Kafka) LogSince(offset int64, lines int) string {
	return logExcerpt(k.settings.Log, offset, lines)
}

// Stop runs kafka-peer stop on this peer's data directory.
func (k *Kafka) Stop() error {
	out, err := exec.Command(k.cfg.Script, "stop", k.cfg.DataDir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("kafka-peer stop: %v\n%s", err, out)
	}
	return nil
}

func peerLastFile() string {
	root := os.Getenv("SLUICE_CACHE")
	if root == "" {
		home, _ := os.UserHomeDir()
		root = filepath.Join(home, ".cache", "sluice")
	}
	return filepath.Join(root, "kafka-peer.last")
}

// ScriptDefault reads `NAME:-default}` from the script, so the report names
// the version and heap the script really used.
func ScriptDefault(script, name string) string {
	data, err := os.ReadFile(script)
	if err != nil {
		return ""
	}
	s := string(data)
	i := strings.Index(s, "${"+name+":-")
	if i < 0 {
		return ""
	}
	s = s[i+len(name)+4:]
	if j := strings.IndexByte(s, '}'); j >= 0 {
		return s[:j]
	}
	return ""
}

func properties(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s\n", k, m[k])
	}
	return b.String()
}

func readProperties(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out, nil
}

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func firstMatching(path, substr string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, substr) {
			return line
		}
	}
	return ""
}

// External is a broker the harness did not start: it is only addressed.
func External(name, bootstrap string) Broker {
	return &external{name: name, bootstrap: bootstrap}
}

type external struct{ name, bootstrap string }

func (e *external) Name() string      { return e.name }
func (e *external) Bootstrap() string { return e.bootstrap }
func (e *external) PID() int          { return 0 } // found by its listening port
func (e *external) Stop() error       { return nil }
func (e *external) Settings() Settings {
	return Settings{Name: e.name, Command: "(already running at " + e.bootstrap + "; not started by the harness)"}
}

func privateCopy(script string) (string, error) {
	data, err := os.ReadFile(script)
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp("", "kafka-peer-*.sh")
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		return "", err
	}
	return f.Name(), f.Chmod(0o755)
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// logExcerpt returns the last n warning or error lines written to a log
// since offset (sluice's level=WARN/ERROR, Kafka's WARN/ERROR), or, if there
// are none, the last few lines since offset.
func logExcerpt(path string, offset int64, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(offset, 0); err != nil {
		return ""
	}
	// Bounded: a chatty broker's log since a run can be large.
	const readMax = 8 << 20
	if size := fileSize(path); size-offset > readMax {
		f.Seek(size-readMax, 0)
	}
	data, _ := io.ReadAll(f)
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	var picked []string
	for _, line := range all {
		if strings.Contains(line, "ERROR") || strings.Contains(line, "WARN") || strings.Contains(line, "panic") || strings.Contains(line, "FATAL") {
			picked = append(picked, line)
		}
	}
	if len(picked) == 0 {
		picked = all
		n = min(n, 5)
	}
	if len(picked) > n {
		picked = picked[len(picked)-n:]
	}
	return strings.TrimSpace(strings.Join(picked, "\n"))
}
