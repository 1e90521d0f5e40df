package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	// brokerStartTimeout bounds how long a started sluice may take to answer
	// ApiVersions. Generous: the machine is shared.
	brokerStartTimeout = 60 * time.Second
	// brokerStopTimeout bounds a clean shutdown after SIGTERM.
	brokerStopTimeout = 30 * time.Second
)

// externalAddr is the broker under test when the suite is pointed at one
// (Apache Kafka, to validate the suite), empty when it starts bin/sluice.
var externalAddr = os.Getenv("SLUICE_E2E_BOOTSTRAP")

var (
	sharedMu     sync.Mutex
	sharedBroker *Broker
	// tempRoot holds everything the suite writes (data dirs, logs, compiled
	// Java classes); removed when the suite ends.
	tempRoot string
)

func TestMain(m *testing.M) {
	var err error
	tempRoot, err = os.MkdirTemp("", "sluice-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(2)
	}
	code := m.Run()
	sharedMu.Lock()
	if sharedBroker != nil && !sharedBroker.External {
		if err := sharedBroker.terminate(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: stopping the shared broker:", err)
		}
	}
	sharedMu.Unlock()
	if code == 0 || os.Getenv("SLUICE_E2E_KEEP") == "" {
		os.RemoveAll(tempRoot)
	} else {
		fmt.Fprintln(os.Stderr, "e2e: kept", tempRoot)
	}
	os.Exit(code)
}

// ciMode reports whether the suite runs in CI, where a missing client tool is
// a failure of the install step rather than a reason to skip.
func ciMode() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v != "" && v != "false" && v != "0"
}

// requireTool skips the test when a client tool is missing, or fails it in CI.
func requireTool(t testing.TB, ok bool, what, problem string) {
	t.Helper()
	if ok {
		return
	}
	if ciMode() {
		t.Fatalf("%s is missing (%s); CI=true, so .ci/install-deps should have installed it", what, problem)
	}
	t.Skipf("%s is missing (%s); run `bash .ci/install-deps` to install it", what, problem)
}

// requireOwnBroker skips tests that must kill, restart or configure the
// broker process when the suite runs against an external one.
func requireOwnBroker(t testing.TB, why string) {
	t.Helper()
	if externalAddr != "" {
		t.Skipf("needs a broker process the suite owns (%s); SLUICE_E2E_BOOTSTRAP=%s is external", why, externalAddr)
	}
}

// BrokerOptions configure a sluice the harness starts.
type BrokerOptions struct {
	// Config is written to the server.properties passed with --config.
	Config map[string]string
	// Shards is passed as --shards when positive.
	Shards int
	// Flags are extra command-line flags for serve.
	Flags []string
	// Prefix runs the broker through a command that then execs it, such
	// as prlimit, setpriv or ip netns exec (the broker keeps the process id).
	Prefix []string
	// Host is the address the broker's listeners bind (default 127.0.0.1):
	// a broker in a network namespace listens on its veth address.
	Host string
}

// defaultBrokerConfig is Kafka's default for the keys the suite relies on,
// written out so sluice's server.properties parsing is exercised too.
func defaultBrokerConfig() map[string]string {
	return map[string]string{
		"auto.create.topics.enable": "true",
		"num.partitions":            "1",
	}
}

// Broker is the broker under test: a bin/sluice process the harness owns, or
// an external broker (External) that it can only talk to.
type Broker struct {
	// Addr is the Kafka listener, host:port.
	Addr string
	// HTTPAddr is sluice's --http listener (metrics, health); empty when external.
	HTTPAddr string
	External bool

	bin        string
	dataDir    string
	configPath string
	logPath    string
	opts       BrokerOptions

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the process has exited
	exitErr  error
	stopping bool // an exit is expected (Kill, Stop)
}

// Shared returns the broker most tests share: the external one, or a sluice
// started on first use with the default configuration. It fails the test if
// the broker dies during it, and shows the broker's log on failure.
func Shared(t testing.TB) *Broker {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if sharedBroker == nil {
		if externalAddr != "" {
			sharedBroker = &Broker{Addr: externalAddr, External: true}
		} else {
			b, err := newSluice(BrokerOptions{Config: defaultBrokerConfig()})
			if err != nil {
				t.Fatalf("starting the shared sluice: %v", err)
			}
			sharedBroker = b
		}
	} else if !sharedBroker.External && sharedBroker.hasExited() {
		// It died during an earlier test, which failed for it. Start a
		// fresh one so one crash does not fail every later test.
		old := sharedBroker
		b, err := newSluice(BrokerOptions{Config: defaultBrokerConfig()})
		if err != nil {
			t.Fatalf("restarting the shared sluice (the previous one died: %v): %v", old.exitErr, err)
		}
		t.Logf("the shared sluice had died (%v, log %s); started a fresh one", old.exitErr, old.logPath)
		sharedBroker = b
	}
	b := sharedBroker
	b.watch(t)
	return b
}

// StartSluice starts a sluice only this test uses; it is killed when the test
// ends. Skips against an external broker.
func StartSluice(t testing.TB, opts BrokerOptions) *Broker {
	t.Helper()
	requireOwnBroker(t, "a private broker")
	if opts.Config == nil {
		opts.Config = defaultBrokerConfig()
	}
	b, err := newSluice(opts)
	if err != nil {
		t.Fatalf("starting sluice: %v", err)
	}
	b.watch(t)
	t.Cleanup(func() { b.terminate() })
	return b
}

func sluiceBinary() (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	if p := os.Getenv("SLUICE_BIN"); p != "" {
		// go test runs in the package directory: a relative path is
		// taken from the repository root.
		if !filepath.IsAbs(p) {
			p = filepath.Join(root, p)
		}
		return p, nil
	}
	return filepath.Join(root, "bin", "sluice"), nil
}

// repoRoot is the directory holding go.mod, found upwards from the package.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the test directory")
		}
		dir = parent
	}
}

func newSluice(opts BrokerOptions) (*Broker, error) { return newSluiceWith(opts, nil) }

// newSluiceWith is newSluice with a step run after the directories are
// made and before the broker starts.
func newSluiceWith(opts BrokerOptions, prepare func(*Broker) error) (*Broker, error) {
	bin, err := sluiceBinary()
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(bin); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("the sluice binary %s is missing or not executable: build it first (`make build`, which `make test` runs), or set SLUICE_BIN", bin)
	}
	dir, err := os.MkdirTemp(tempRoot, "sluice-")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	host := opts.Host
	if host == "" {
		host = "127.0.0.1"
	}
	b := &Broker{
		Addr:       net.JoinHostPort(host, strconv.Itoa(ports[0])),
		HTTPAddr:   net.JoinHostPort(host, strconv.Itoa(ports[1])),
		bin:        bin,
		dataDir:    filepath.Join(dir, "data"),
		configPath: filepath.Join(dir, "server.properties"),
		logPath:    filepath.Join(dir, "sluice.log"),
		opts:       opts,
	}
	if err := os.MkdirAll(b.dataDir, 0o755); err != nil {
		return nil, err
	}
	if err := writeProperties(b.configPath, opts.Config); err != nil {
		return nil, err
	}
	if prepare != nil {
		if err := prepare(b); err != nil {
			return nil, err
		}
	}
	if err := b.start(); err != nil {
		return nil, err
	}
	return b, nil
}

func writeProperties(path string, config map[string]string) error {
	keys := make([]string, 0, len(config))
	for k := range config {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var buf bytes.Buffer
	buf.WriteString("# written by the sluice e2e harness\n")
	for _, k := range keys {
		fmt.Fprintf(&buf, "%s=%s\n", k, config[k])
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// freePorts finds n distinct free loopback ports. Another process could take
// one before sluice binds it; the start then fails loudly, never silently.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// ioModeFlags select the write mode the suite runs in: SLUICE_IO_MODE, or
// the default, direct (make test runs the suite once per mode). Direct mode
// gets a small tail cache, so that the tests' partitions compete for it and
// evict.
func ioModeFlags() []string {
	if directMode() {
		return []string{"--io-mode", "direct", "--tail-cache-bytes", strconv.Itoa(16 << 20)}
	}
	return []string{"--io-mode", os.Getenv("SLUICE_IO_MODE")}
}

// directMode reports whether the suite's brokers run in direct mode.
func directMode() bool {
	m := os.Getenv("SLUICE_IO_MODE")
	return m == "" || m == "direct"
}

func (b *Broker) args() []string {
	args := []string{
		"serve",
		"--data-dir", b.dataDir,
		"--listen", b.Addr,
		"--http", b.HTTPAddr,
		"--node-id", "1",
		"--config", b.configPath,
	}
	if b.opts.Shards > 0 {
		args = append(args, "--shards", strconv.Itoa(b.opts.Shards))
	}
	args = append(args, ioModeFlags()...)
	return append(args, b.opts.Flags...)
}

// start launches the process and waits until it answers ApiVersions.
func (b *Broker) start() error {
	logFile, err := os.OpenFile(b.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own descriptor
	fmt.Fprintf(logFile, "=== e2e harness %s: %s %s\n", time.Now().Format(time.RFC3339Nano), b.bin, strings.Join(b.args(), " "))
	cmd := exec.Command(b.bin, b.args()...)
	if p := b.opts.Prefix; len(p) > 0 {
		cmd = exec.Command(p[0], append(append(p[1:len(p):len(p)], b.bin), b.args()...)...)
	}
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// Own process group, so a ^C to `go test` reaches the harness, which
	// stops the broker itself; Pdeathsig kills it if the test binary dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", b.bin, err)
	}
	exited := make(chan struct{})
	b.mu.Lock()
	b.cmd = cmd
	b.exited = exited
	b.exitErr = nil
	b.stopping = false
	b.mu.Unlock()
	go func() {
		err := cmd.Wait()
		b.mu.Lock()
		b.exitErr = err
		if err == nil {
			b.exitErr = errors.New("exit status 0")
		}
		b.mu.Unlock()
		close(exited)
	}()
	return b.waitReady(exited)
}

// waitReady polls ApiVersions until the broker answers, it exits, or the
// start deadline passes.
func (b *Broker) waitReady(exited chan struct{}) error {
	deadline := time.Now().Add(brokerStartTimeout)
	var lastErr error
	for {
		select {
		case <-exited:
			return fmt.Errorf("sluice exited during startup (%v); log %s:\n%s", b.exitError(), b.logPath, tailFile(b.logPath, 60))
		default:
		}
		if lastErr = probeAPIVersions(b.Addr, time.Second); lastErr == nil {
			return nil
		}
		if time.Now().After(deadline) {
			b.signal(syscall.SIGKILL)
			return fmt.Errorf("sluice did not answer ApiVersions on %s within %v (last: %v); log %s:\n%s",
				b.Addr, brokerStartTimeout, lastErr, b.logPath, tailFile(b.logPath, 60))
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

// probeAPIVersions sends one ApiVersions v3 request, as clients do first, and
// accepts any well-formed answer.
func probeAPIVersions(addr string, timeout time.Duration) error {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 3
	req.ClientSoftwareName = "sluice-e2e"
	req.ClientSoftwareVersion = "0"
	frame := kmsg.NewRequestFormatter(kmsg.FormatterClientID("sluice-e2e-probe")).AppendRequest(nil, req, 1)
	if _, err := conn.Write(frame); err != nil {
		return err
	}
	body, err := readFrame(conn)
	if err != nil {
		return err
	}
	if len(body) < 4 || int32(be32(body)) != 1 {
		return fmt.Errorf("ApiVersions answer with a bad correlation id")
	}
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = 3
	if err := resp.ReadFrom(body[4:]); err != nil {
		return fmt.Errorf("decoding ApiVersions response: %w", err)
	}
	return nil
}

func (b *Broker) exitError() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.exitErr
}

func (b *Broker) hasExited() bool {
	b.mu.Lock()
	ch := b.exited
	b.mu.Unlock()
	if ch == nil {
		return false
	}
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// PID is the broker's process id (0 when external).
func (b *Broker) PID() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil || b.cmd.Process == nil {
		return 0
	}
	return b.cmd.Process.Pid
}

func (b *Broker) signal(sig syscall.Signal) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd != nil && b.cmd.Process != nil {
		b.stopping = true
		if sig == syscall.SIGKILL {
			// The whole process group (the broker runs in its own), so
			// nothing it started survives it.
			syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		}
		b.cmd.Process.Signal(sig)
	}
}

func (b *Broker) waitExit(timeout time.Duration) bool {
	b.mu.Lock()
	ch := b.exited
	b.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (b *Broker) Kill(t testing.TB) {
	t.Helper()
	requireOwnBroker(t, "SIGKILL")
	b.signal(syscall.SIGKILL)
	if !b.waitExit(10 * time.Second) {
		t.Fatalf("sluice (pid %d) still running 10 s after SIGKILL", b.PID())
	}
}

// Stop sends SIGTERM and waits for a clean exit (status 0).
func (b *Broker) Stop(t testing.TB) {
	t.Helper()
	requireOwnBroker(t, "SIGTERM")
	start := time.Now()
	b.signal(syscall.SIGTERM)
	if !b.waitExit(brokerStopTimeout) {
		b.signal(syscall.SIGKILL)
		b.waitExit(10 * time.Second)
		t.Fatalf("sluice did not exit within %v of SIGTERM (killed it)", brokerStopTimeout)
	}
	b.mu.Lock()
	state := b.cmd.ProcessState
	b.mu.Unlock()
	if state == nil || !state.Exited() || state.ExitCode() != 0 {
		t.Errorf("sluice did not shut down cleanly after SIGTERM: %v (a clean shutdown exits with status 0)", state)
	}
	t.Logf("sluice stopped by SIGTERM in %v", time.Since(start).Round(time.Millisecond))
}

// Restart stops the broker (SIGTERM) if it runs, then starts it again on the
// same ports and data directory and waits until it answers.
func (b *Broker) Restart(t testing.TB) {
	t.Helper()
	requireOwnBroker(t, "restart")
	if !b.hasExited() {
		b.Stop(t)
	}
	start := time.Now()
	if err := b.start(); err != nil {
		t.Fatalf("restarting sluice: %v", err)
	}
	t.Logf("sluice restarted and answering in %v", time.Since(start).Round(time.Millisecond))
}

// terminate stops the process, SIGTERM then SIGKILL, without a test.
func (b *Broker) terminate() error {
	if b.External || b.hasExited() || b.PID() == 0 {
		return nil
	}
	b.signal(syscall.SIGTERM)
	if b.waitExit(brokerStopTimeout) {
		return nil
	}
	b.signal(syscall.SIGKILL)
	b.waitExit(10 * time.Second)
	return fmt.Errorf("sluice did not exit within %v of SIGTERM", brokerStopTimeout)
}

// watch fails t if the broker dies unexpectedly during it, and shows the part
// of the broker's log written during t when t fails.
func (b *Broker) watch(t testing.TB) {
	if b.External {
		return
	}
	var offset int64
	if st, err := os.Stat(b.logPath); err == nil {
		offset = st.Size()
	}
	t.Cleanup(func() {
		if b.hasExited() {
			b.mu.Lock()
			unexpected := !b.stopping
			b.mu.Unlock()
			if unexpected {
				t.Errorf("sluice died during the test: %v", b.exitError())
			}
		}
		if t.Failed() {
			t.Logf("sluice log (%s) during this test:\n%s", b.logPath, readFrom(b.logPath, offset, 200))
		}
	})
}

func readFrom(path string, offset int64, maxLines int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	f.Seek(offset, io.SeekStart)
	data, _ := io.ReadAll(f)
	return lastLines(string(data), maxLines)
}

func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return lastLines(string(data), n)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d earlier lines)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// logBuffer collects a client's log lines, shown only when the test fails
// (t.Log from a client's goroutines could outlive the test).
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len() < 1<<20 {
		l.buf.Write(p)
	}
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Client is a franz-go client of the broker, closed when the test ends. Its
// warnings and errors are shown if the test fails.
func (b *Broker) Client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	logs := &logBuffer{}
	base := []kgo.Opt{
		kgo.SeedBrokers(b.Addr),
		kgo.ClientID("sluice-e2e"),
		kgo.WithLogger(kgo.BasicLogger(logs, kgo.LogLevelWarn, nil)),
		kgo.RequestTimeoutOverhead(20 * time.Second),
		kgo.RetryTimeout(60 * time.Second),
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		t.Fatalf("kgo.NewClient: %v", err)
	}
	t.Cleanup(func() {
		cl.Close()
		if t.Failed() {
			if s := logs.String(); s != "" {
				t.Logf("franz-go client log:\n%s", lastLines(s, 80))
			}
		}
	})
	return cl
}

// Admin is a kadm client of the broker.
func (b *Broker) Admin(t testing.TB) *kadm.Client {
	t.Helper()
	return kadm.NewClient(b.Client(t))
}

// testContext is a context that ends with the test or after d.
func testContext(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

var topicUnsafe = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

// topicName is a fresh topic name derived from the test's name, so topics of
// different tests and runs never collide on a shared broker.
func topicName(t testing.TB, suffix string) string {
	name := strings.ToLower(topicUnsafe.ReplaceAllString(t.Name(), "-"))
	if len(name) > 150 {
		name = name[:150]
	}
	name = "e2e-" + name
	if suffix != "" {
		name += "-" + suffix
	}
	return fmt.Sprintf("%s-%06x", name, rand.Uint32()&0xffffff)
}

// testSeed is the seed of a randomized test, logged so a failure replays with
// SLUICE_E2E_SEED.
func testSeed(t testing.TB) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SLUICE_E2E_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("SLUICE_E2E_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (replay with SLUICE_E2E_SEED=%d)", seed, seed)
	return seed
}

// recordsPerCodec is how many records each client scenario produces per codec.
func recordsPerCodec(t testing.TB) int {
	if s := os.Getenv("SLUICE_E2E_RECORDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 100 {
			t.Fatalf("SLUICE_E2E_RECORDS=%q: want an integer >= 100", s)
		}
		return n
	}
	return 10000
}

// runCommand runs a client program with a deadline and returns its stdout;
// it fails the test, showing stderr and the last lines of stdout, when the
// program fails.
func runCommand(t testing.TB, timeout time.Duration, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	if err != nil {
		t.Fatalf("%s %s: %v after %v\nstderr:\n%s\nstdout (end):\n%s", name, strings.Join(shorten(args), " "), err,
			time.Since(start).Round(time.Millisecond), lastLines(stderr.String(), 40), lastLines(stdout.String(), 10))
	}
	return stdout.Bytes()
}

func shorten(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if len(a) > 200 {
			a = a[:200] + "..."
		}
		out[i] = a
	}
	return out
}

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
