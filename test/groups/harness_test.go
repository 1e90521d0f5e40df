package groups

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
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

// childEnv marks a process started by the suite as a consumer (see
// TestMain and runChildConsumer).
const childEnv = "SLUICE_GROUPS_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChildConsumer())
	}
	code := m.Run()
	if javaClasses != "" {
		os.RemoveAll(javaClasses)
	}
	os.Exit(code)
}

var (
	javaOnce    sync.Once
	javaClasses string // compiled java/*.java, removed when the suite ends
	javaCP      string
	javaProblem string
)

// prepareJava compiles java/GroupConsumer.java once against the Kafka Java
// client jars that .ci/install-deps caches ($SLUICE_JAVA_LIBS, default
// $HOME/.cache/sluice/java) and returns the classpath. Without Java or the
// jars the test is skipped, except in CI (CI=true), where it fails.
func prepareJava(t testing.TB) string {
	t.Helper()
	javaOnce.Do(func() {
		for _, tool := range []string{"java", "javac"} {
			if _, err := exec.LookPath(tool); err != nil {
				javaProblem = tool + " is not on PATH"
				return
			}
		}
		libs := os.Getenv("SLUICE_JAVA_LIBS")
		if libs == "" {
			home, _ := os.UserHomeDir()
			libs = filepath.Join(home, ".cache", "sluice", "java")
		}
		if jars, _ := filepath.Glob(filepath.Join(libs, "kafka-clients-*.jar")); len(jars) == 0 {
			javaProblem = "no kafka-clients jar in " + libs + " (run .ci/install-deps)"
			return
		}
		dir, err := os.MkdirTemp("", "sluice-groups-java-")
		if err != nil {
			javaProblem = err.Error()
			return
		}
		javaClasses = dir
		out, err := exec.Command("javac", "-nowarn", "-d", dir, "-cp", filepath.Join(libs, "*"), filepath.Join("java", "GroupConsumer.java")).CombinedOutput()
		if err != nil {
			javaProblem = "compile-error: " + err.Error() + "\n" + string(out)
			return
		}
		javaCP = dir + string(os.PathListSeparator) + filepath.Join(libs, "*")
	})
	if strings.HasPrefix(javaProblem, "compile-error: ") {
		t.Fatalf("javac failed on java/GroupConsumer.java: %s", javaProblem)
	}
	if javaProblem != "" {
		missingTool(t, "the Kafka Java client", javaProblem)
	}
	return javaCP
}

// inCI reports whether the suite runs in CI (CI=true), where a missing
// client or tool is a failure rather than a skip.
func inCI() bool {
	ci := strings.ToLower(os.Getenv("CI"))
	return ci != "" && ci != "false" && ci != "0"
}

// missingTool skips the test for a client or tool that is not installed,
// or fails it in CI, where .ci/install-deps should have installed it.
func missingTool(t testing.TB, what, why string) {
	t.Helper()
	if inCI() {
		t.Fatalf("%s is missing (%s); CI=true, so .ci/install-deps should have installed it", what, why)
	}
	t.Skipf("%s is missing (%s)", what, why)
}

// brokerConfig is the server.properties of the brokers the suite starts:
// Kafka's test settings, so rebalances do not wait the 3 s initial delay
// and a crashed consumer is expelled after a short session timeout.
func brokerConfig() map[string]string {
	return map[string]string{
		"auto.create.topics.enable":            "false",
		"group.initial.rebalance.delay.ms":     "0",
		"group.min.session.timeout.ms":         "1000",
		"group.consumer.heartbeat.interval.ms": "500",
		"group.consumer.session.timeout.ms":    "4000",
	}
}

// broker is a bin/sluice process owned by a test.
type broker struct {
	t       testing.TB
	addr    string
	http    string // the --http listener (metrics), "" when off
	dataDir string
	cfgPath string
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

func sluiceBinary(t testing.TB) string {
	if p := os.Getenv("SLUICE_BIN"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "bin", "sluice")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test directory")
		}
		dir = parent
	}
}

// startBroker starts a sluice on a free port with its own data directory;
// it is killed when the test ends.
func startBroker(t testing.TB, extra map[string]string) *broker {
	t.Helper()
	return startBrokerWith(t, extra, false)
}

// startBrokerHTTP is startBroker with the --http listener (/metrics) on
// another free port, b.http.
func startBrokerHTTP(t testing.TB, extra map[string]string) *broker {
	t.Helper()
	return startBrokerWith(t, extra, true)
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startBrokerWith(t testing.TB, extra map[string]string, withHTTP bool) *broker {
	t.Helper()
	bin := sluiceBinary(t)
	if st, err := os.Stat(bin); err != nil || st.Mode()&0o111 == 0 {
		t.Fatalf("the sluice binary %s is missing: run `make build` first (make test does), or set SLUICE_BIN", bin)
	}
	dir := t.TempDir()
	addr := freeAddr(t)
	b := &broker{t: t, addr: addr, dataDir: filepath.Join(dir, "data"), cfgPath: filepath.Join(dir, "server.properties"), logPath: filepath.Join(dir, "sluice.log")}
	cfg := brokerConfig()
	for k, v := range extra {
		cfg[k] = v
	}
	var props bytes.Buffer
	keys := make([]string, 0, len(cfg))
	for k := range cfg {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&props, "%s=%s\n", k, cfg[k])
	}
	if err := os.WriteFile(b.cfgPath, props.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if withHTTP {
		b.http = freeAddr(t)
	}
	b.start()
	t.Cleanup(func() {
		b.signal(syscall.SIGKILL)
		b.waitExit(10 * time.Second)
		if t.Failed() || os.Getenv("SLUICE_GROUPS_LOG") != "" {
			data, _ := os.ReadFile(b.logPath)
			t.Logf("sluice log:\n%s", lastLines(string(data), 80))
		}
	})
	return b
}

func (b *broker) start() {
	b.t.Helper()
	logFile, err := os.OpenFile(b.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		b.t.Fatal(err)
	}
	defer logFile.Close()
	args := []string{"serve", "--data-dir", b.dataDir, "--listen", b.addr, "--http", b.http, "--config", b.cfgPath, "--shards", "2", "--log-level", logLevel()}
	// make test runs the suite once per write mode (SLUICE_IO_MODE; unset
	// is the default, direct, with a small tail cache to make partitions
	// compete for it).
	switch m := os.Getenv("SLUICE_IO_MODE"); m {
	case "", "direct":
		args = append(args, "--io-mode", "direct", "--tail-cache-bytes", strconv.Itoa(16<<20))
	default:
		args = append(args, "--io-mode", m)
	}
	cmd := exec.Command(sluiceBinary(b.t), args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	b.mu.Lock()
	b.cmd, b.exited = cmd, exited
	b.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			data, _ := os.ReadFile(b.logPath)
			b.t.Fatalf("sluice exited during start-up:\n%s", lastLines(string(data), 40))
		default:
		}
		if probe(b.addr) == nil {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatal("sluice did not answer within 30 s")
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

func (b *broker) signal(sig syscall.Signal) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd != nil && b.cmd.Process != nil {
		b.cmd.Process.Signal(sig)
	}
}

func (b *broker) waitExit(d time.Duration) bool {
	b.mu.Lock()
	ch := b.exited
	b.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

// kill SIGKILLs the broker and waits until it is gone.
func (b *broker) kill() {
	b.t.Helper()
	b.signal(syscall.SIGKILL)
	if !b.waitExit(10 * time.Second) {
		b.t.Fatal("sluice still runs 10 s after SIGKILL")
	}
}

// restart starts the broker again on the same port and data directory.
func (b *broker) restart() { b.start() }

func logLevel() string {
	if l := os.Getenv("SLUICE_GROUPS_LOG"); l != "" && l != "1" {
		return l
	}
	return "info"
}

// probe sends one ApiVersions request.
func probe(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 3
	req.ClientSoftwareName, req.ClientSoftwareVersion = "sluice-groups", "0"
	if _, err := conn.Write(kmsg.NewRequestFormatter().AppendRequest(nil, req, 1)); err != nil {
		return err
	}
	var size [4]byte
	if _, err := io.ReadFull(conn, size[:]); err != nil {
		return err
	}
	return nil
}

// client is a franz-go client of the broker, closed when the test ends.
func (b *broker) client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	base := []kgo.Opt{kgo.SeedBrokers(b.addr), kgo.RetryTimeout(60 * time.Second)}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func (b *broker) admin(t testing.TB) *kadm.Client { return kadm.NewClient(b.client(t)) }

func createTopic(t testing.TB, adm *kadm.Client, name string, partitions int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := adm.CreateTopic(ctx, partitions, 1, nil, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s (last: %s)", d, what, last)
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ---- consumer processes ----

// consumerSpec configures one consumer process.
type consumerSpec struct {
	name     string
	group    string
	topic    string
	balancer string // "range", "cooperative-sticky" or "server" (KIP-848)
	instance string // group.instance.id, optional
	java     bool   // the Kafka Java client (java/GroupConsumer.java) instead of franz-go
}

// event is one line a consumer process reports.
type event struct {
	at        time.Time
	member    string // consumer name
	kind      string // assigned, revoked, lost, rec, committed, closed
	partition int32
	offset    int64
	parts     []int32
	key       string
}

// consumer is a running consumer process.
type consumer struct {
	spec   consumerSpec
	cmd    *exec.Cmd
	exited chan struct{}
	stderr *bytes.Buffer
}

// fleet runs consumer processes and gathers their events.
type fleet struct {
	t      *testing.T
	broker *broker
	mu     sync.Mutex
	events []event
	procs  map[string]*consumer
	ends   map[string]time.Time // when a killed process was gone
}

func newFleet(t *testing.T, b *broker) *fleet {
	f := &fleet{t: t, broker: b, procs: map[string]*consumer{}, ends: map[string]time.Time{}}
	t.Cleanup(func() {
		for _, c := range f.procs {
			c.cmd.Process.Kill()
			<-c.exited
			if t.Failed() && c.stderr.Len() > 0 {
				t.Logf("consumer %s stderr:\n%s", c.spec.name, lastLines(c.stderr.String(), 30))
			}
		}
	})
	return f
}

// start launches a consumer process (this test binary, re-executed).
func (f *fleet) start(spec consumerSpec) *consumer {
	f.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	if spec.java {
		cmd = exec.Command("java", "-cp", prepareJava(f.t), "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
			"-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "GroupConsumer")
	}
	cmd.Env = append(os.Environ(),
		childEnv+"=1",
		"CHILD_BROKER="+f.broker.addr,
		"CHILD_NAME="+spec.name,
		"CHILD_GROUP="+spec.group,
		"CHILD_TOPIC="+spec.topic,
		"CHILD_BALANCER="+spec.balancer,
		"CHILD_INSTANCE="+spec.instance,
	)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		f.t.Fatal(err)
	}
	c := &consumer{spec: spec, cmd: cmd, exited: make(chan struct{}), stderr: &bytes.Buffer{}}
	cmd.Stderr = &lockedWriter{w: c.stderr}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.mu.Lock()
	f.procs[spec.name] = c
	f.mu.Unlock()
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if ev, ok := parseEvent(spec.name, sc.Text()); ok {
				f.mu.Lock()
				f.events = append(f.events, ev)
				f.mu.Unlock()
			}
		}
		cmd.Wait()
		close(c.exited)
	}()
	return c
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// kill SIGKILLs a consumer: it crashes without leaving the group.
func (f *fleet) kill(name string) {
	f.t.Helper()
	c := f.procs[name]
	c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.exited
	f.mu.Lock()
	f.ends[name] = time.Now()
	f.mu.Unlock()
}

// stop asks a consumer to close cleanly (commit, leave the group).
func (f *fleet) stop(name string) {
	f.t.Helper()
	c := f.procs[name]
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		f.t.Fatalf("consumer %s did not close within 30 s", name)
	}
	f.mu.Lock()
	f.ends[name] = time.Now()
	f.mu.Unlock()
}

func (f *fleet) snapshot() []event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]event(nil), f.events...)
}

// owned is what each live consumer owns now, from its events.
func (f *fleet) owned() map[string]map[int32]bool {
	out := map[string]map[int32]bool{}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ev := range f.events {
		if _, gone := f.ends[ev.member]; gone {
			continue
		}
		m := out[ev.member]
		if m == nil {
			m = map[int32]bool{}
			out[ev.member] = m
		}
		switch ev.kind {
		case "assigned":
			for _, p := range ev.parts {
				m[p] = true
			}
		case "revoked", "lost":
			for _, p := range ev.parts {
				delete(m, p)
			}
		}
	}
	return out
}

// parseEvent reads "EV <unixnano> <kind> ..." lines.
func parseEvent(member, line string) (event, bool) {
	fields := strings.Fields(line)
	if len(fields) < 3 || fields[0] != "EV" {
		return event{}, false
	}
	ns, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		return event{}, false
	}
	ev := event{at: time.Unix(0, ns), member: member, kind: fields[2]}
	args := fields[3:]
	switch ev.kind {
	case "assigned", "revoked", "lost":
		if len(args) > 0 && args[0] != "-" {
			for _, s := range strings.Split(args[0], ",") {
				p, _ := strconv.Atoi(s)
				ev.parts = append(ev.parts, int32(p))
			}
		}
	case "rec", "committed":
		if len(args) < 2 {
			return event{}, false
		}
		p, _ := strconv.Atoi(args[0])
		o, _ := strconv.ParseInt(args[1], 10, 64)
		ev.partition, ev.offset = int32(p), o
		if len(args) > 2 {
			ev.key = args[2]
		}
	}
	return ev, true
}

func signalNotify(ch chan os.Signal) { signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT) }

// runChildConsumer is a consumer process: it joins the group, consumes,
// commits, and reports what happens on stdout until SIGTERM (clean close)
// or SIGKILL (a crash).
func runChildConsumer() int {
	out := bufio.NewWriter(os.Stdout)
	var outMu sync.Mutex
	emit := func(format string, args ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Fprintf(out, "EV %d "+format+"\n", append([]any{time.Now().UnixNano()}, args...)...)
		out.Flush()
	}
	parts := func(m map[string][]int32) string {
		var ps []string
		for _, p := range m[os.Getenv("CHILD_TOPIC")] {
			ps = append(ps, strconv.Itoa(int(p)))
		}
		if len(ps) == 0 {
			return "-"
		}
		return strings.Join(ps, ",")
	}
	reportCommit := func(_ *kgo.Client, req *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil || resp == nil {
			return
		}
		asked := map[int32]int64{}
		for _, t := range req.Topics {
			for _, p := range t.Partitions {
				asked[p.Partition] = p.Offset
			}
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if p.ErrorCode == 0 {
					emit("committed %d %d", p.Partition, asked[p.Partition])
				}
			}
		}
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(os.Getenv("CHILD_BROKER")),
		kgo.ConsumerGroup(os.Getenv("CHILD_GROUP")),
		kgo.ConsumeTopics(os.Getenv("CHILD_TOPIC")),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.SessionTimeout(3 * time.Second),
		kgo.HeartbeatInterval(300 * time.Millisecond),
		kgo.RebalanceTimeout(20 * time.Second),
		kgo.AutoCommitInterval(300 * time.Millisecond),
		kgo.AutoCommitCallback(reportCommit),
		kgo.FetchMaxWait(200 * time.Millisecond),
		kgo.BlockRebalanceOnPoll(),
		kgo.RetryTimeout(60 * time.Second),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			emit("assigned %s", parts(m))
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
			// Commit what was processed before giving the partitions up.
			cl.CommitUncommittedOffsets(ctx)
			emit("revoked %s", parts(m))
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			emit("lost %s", parts(m))
		}),
	}
	switch os.Getenv("CHILD_BALANCER") {
	case "range":
		opts = append(opts, kgo.Balancers(kgo.RangeBalancer()))
	case "cooperative-sticky":
		opts = append(opts, kgo.Balancers(kgo.CooperativeStickyBalancer()))
	case "server":
		opts = append(opts, kgo.Balancers(kgo.CooperativeStickyBalancer()), kgo.ServerSideBalancer())
	}
	if id := os.Getenv("CHILD_INSTANCE"); id != "" {
		opts = append(opts, kgo.InstanceID(id))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	signalNotify(sigs)
	go func() { <-sigs; cancel() }()
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				fmt.Fprintf(os.Stderr, "fetch %s/%d: %v\n", t, p, err)
			}
		})
		fetches.EachRecord(func(r *kgo.Record) {
			emit("rec %d %d %s", r.Partition, r.Offset, r.Key)
		})
		cl.AllowRebalance()
	}
	cl.AllowRebalance()
	closeCtx, done := context.WithTimeout(context.Background(), 20*time.Second)
	defer done()
	cl.CommitUncommittedOffsets(closeCtx)
	cl.Close()
	emit("closed -")
	return 0
}
