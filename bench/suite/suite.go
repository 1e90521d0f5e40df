// Package suite runs comparisons: the same workloads against several
// brokers, repetitions interleaved (A B A B ...) so that drift in the
// machine (other load, page cache, thermal) falls on every broker alike.
// A suite file (bench/workloads/standard.yaml is the standard set) lists
// scenarios, each a workload file plus how the scenarios depend on each
// other: a catch-up read of the data an earlier scenario wrote, or a rate
// derived from what a broker achieved earlier. The result is a
// report.Comparison, with the machine's limits and Kafka's own
// ProducerPerformance figures when asked for.
package suite

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"gopkg.in/yaml.v3"

	"github.com/sluice-broker/sluice/bench"
	"github.com/sluice-broker/sluice/bench/limits"
	"github.com/sluice-broker/sluice/bench/peer"
	"github.com/sluice-broker/sluice/bench/report"
)

// File is a suite file.
type File struct {
	Title string `yaml:"title"`
	Reps  int    `yaml:"reps"`
	// BrokerConfig holds server.properties lines for brokers the suite
	// starts itself, by broker name ("sluice", "kafka").
	BrokerConfig map[string]map[string]string `yaml:"broker_config"`
	Scenarios    []*Spec                      `yaml:"scenarios"`
}

// Spec is one scenario of a suite file.
type Spec struct {
	ID           string   `yaml:"id"`
	Title        string   `yaml:"title"`
	WorkloadFile string   `yaml:"workload"`
	Durability   string   `yaml:"durability"`
	Metrics      []string `yaml:"metrics"`
	Bound        string   `yaml:"bound"`
	// ConsumeFrom names an earlier scenario whose last run on each broker
	// left the topic this (consume-mode) scenario reads.
	ConsumeFrom string `yaml:"consume_from"`
	// RateFrom sets this scenario's rate from an earlier scenario's median
	// records/s on one broker.
	RateFrom *RateFrom `yaml:"rate_from"`
	// Perf runs Kafka's ProducerPerformance after this scenario with the
	// same topic shape, record size and acks, on every broker.
	Perf     bool           `yaml:"producer_performance"`
	Note     string         `yaml:"note"`
	Workload bench.Workload `yaml:"-"`
}

// RateFrom derives a rate from an earlier result.
type RateFrom struct {
	Scenario string  `yaml:"scenario"`
	Broker   string  `yaml:"broker"`
	Fraction float64 `yaml:"fraction"`
}

// Load reads a suite file and the workload files it names (relative to the
// suite file), and checks the references between scenarios.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if f.Reps == 0 {
		f.Reps = 2
	}
	seen := map[string]*Spec{}
	for i, s := range f.Scenarios {
		if s.ID == "" {
			s.ID = fmt.Sprint(i + 1)
		}
		if seen[s.ID] != nil {
			return nil, fmt.Errorf("%s: scenario id %q twice", path, s.ID)
		}
		wpath := s.WorkloadFile
		if !filepath.IsAbs(wpath) {
			wpath = filepath.Join(filepath.Dir(path), wpath)
		}
		w, err := bench.LoadWorkload(wpath)
		if err != nil {
			return nil, fmt.Errorf("scenario %s: %w", s.ID, err)
		}
		s.Workload = w
		if s.Title == "" {
			s.Title = w.Name
		}
		if len(s.Metrics) == 0 {
			s.Metrics = defaultMetrics(w.Mode)
		}
		if s.ConsumeFrom != "" {
			from := seen[s.ConsumeFrom]
			if from == nil {
				return nil, fmt.Errorf("scenario %s: consume_from %q is not an earlier scenario", s.ID, s.ConsumeFrom)
			}
			if w.Mode != bench.ModeConsume || from.Workload.Mode == bench.ModeConsume {
				return nil, fmt.Errorf("scenario %s: consume_from needs a consume workload reading a produce or e2e scenario", s.ID)
			}
		}
		if s.RateFrom != nil {
			if seen[s.RateFrom.Scenario] == nil {
				return nil, fmt.Errorf("scenario %s: rate_from %q is not an earlier scenario", s.ID, s.RateFrom.Scenario)
			}
			if s.RateFrom.Fraction <= 0 {
				return nil, fmt.Errorf("scenario %s: rate_from needs a fraction > 0", s.ID)
			}
		}
		seen[s.ID] = s
	}
	return &f, nil
}

// FromWorkloads makes a suite of workload files with no dependencies.
func FromWorkloads(paths []string, reps int) (*File, error) {
	f := &File{Title: "sluice bench compare", Reps: reps}
	for i, p := range paths {
		w, err := bench.LoadWorkload(p)
		if err != nil {
			return nil, err
		}
		f.Scenarios = append(f.Scenarios, &Spec{ID: fmt.Sprint(i + 1), Title: w.Name, Workload: w, WorkloadFile: p, Metrics: defaultMetrics(w.Mode)})
	}
	return f, nil
}

func defaultMetrics(m bench.Mode) []string {
	switch m {
	case bench.ModeConsume:
		return []string{"consume_throughput"}
	case bench.ModeE2E:
		return []string{"throughput", "e2e_latency"}
	}
	return []string{"throughput", "ack_latency"}
}

// Options control a suite run.
type Options struct {
	Brokers []peer.Broker
	Reps    int // overrides the file's
	// Duration and Warmup, when set, override every workload's (a quick
	// run of the standard set); Scale multiplies them instead.
	Duration, Warmup time.Duration
	Scale            float64
	Progress         io.Writer
	// Limits, when set, measures the machine in LimitsDir (the brokers'
	// data filesystem) before the scenarios.
	Limits     bool
	LimitsDir  string
	LimitsOpts limits.Options
	// PerfTools is the kafka-tools directory for ProducerPerformance ("" to
	// skip it); PerfSeconds sizes its runs.
	PerfTools   string
	PerfSeconds float64
	// Logf reports what the suite is doing.
	Logf func(format string, args ...any)
	// NoSettle skips the sync and pause between runs (tests).
	NoSettle bool
}

// Run executes the suite and returns the comparison (also when something
// failed: failures are part of it).
func Run(ctx context.Context, f *File, opt Options) *report.Comparison {
	if opt.Logf == nil {
		opt.Logf = func(string, ...any) {}
	}
	reps := f.Reps
	if opt.Reps > 0 {
		reps = opt.Reps
	}
	c := &report.Comparison{Title: f.Title, Started: time.Now().UTC(), Machine: DescribeMachine()}
	for _, b := range opt.Brokers {
		c.Order = append(c.Order, b.Name())
		c.Brokers = append(c.Brokers, b.Settings())
	}
	if opt.Limits {
		opt.Logf("measuring machine limits in %s", opt.LimitsDir)
		c.Limits = limits.Measure(ctx, opt.LimitsDir, opt.LimitsOpts)
	}
	s := &suiteRun{ctx: ctx, opt: opt, c: c, reps: reps, byID: map[string]*report.Scenario{}, kept: map[string][]string{}, readLater: map[string]bool{}, logMark: -1}
	for _, spec := range f.Scenarios {
		if spec.ConsumeFrom != "" {
			s.readLater[spec.ConsumeFrom] = true
		}
	}
	for _, spec := range f.Scenarios {
		if ctx.Err() != nil {
			c.Notes = append(c.Notes, "interrupted before scenario "+spec.ID)
			break
		}
		s.scenario(spec)
	}
	s.dropKept("")
	c.Machine.LoadEnd = loadAverage()
	c.Finished = time.Now().UTC()
	return c
}

type suiteRun struct {
	ctx  context.Context
	opt  Options
	c    *report.Comparison
	reps int
	byID map[string]*report.Scenario
	// kept lists topics left for a later consume_from scenario, by
	// "scenarioID/broker".
	kept map[string][]string
	// readLater marks scenarios a consume_from refers to.
	readLater map[string]bool
	// logMark is the broker log's length when the current run started (-1:
	// no run, or no log).
	logMark int64
}

// brokerLog is implemented by brokers whose log the suite can quote.
type brokerLog interface {
	LogTail(lines int) string
	LogSize() int64
	LogSince(offset int64, lines int) string
}

func (s *suiteRun) scale(w *bench.Workload) {
	if s.opt.Scale > 0 {
		w.Duration = bench.Duration(float64(w.Duration) * s.opt.Scale)
		w.Warmup = bench.Duration(float64(w.Warmup) * s.opt.Scale)
		if w.Duration < bench.Duration(time.Second) {
			w.Duration = bench.Duration(time.Second)
		}
	}
	if s.opt.Duration > 0 {
		w.Duration = bench.Duration(s.opt.Duration)
	}
	if s.opt.Warmup > 0 && w.Warmup > 0 {
		w.Warmup = bench.Duration(s.opt.Warmup)
	}
}

func (s *suiteRun) scenario(spec *Spec) {
	w := spec.Workload
	if w.Mode != bench.ModeConsume {
		s.scale(&w)
	}
	sc := &report.Scenario{ID: spec.ID, Title: spec.Title, Durability: spec.Durability, Metrics: spec.Metrics, Bound: spec.Bound, Workload: w}
	if spec.Note != "" {
		sc.Notes = append(sc.Notes, spec.Note)
	}
	s.c.Scenarios = append(s.c.Scenarios, sc)
	s.byID[spec.ID] = sc
	if rf := spec.RateFrom; rf != nil {
		rate, from, ok := s.rateFrom(rf)
		if !ok {
			s.fail(sc, "", fmt.Sprintf("no rate: scenario %s has no successful run to take it from", rf.Scenario))
			return
		}
		w.Rate = float64(int64(rate*rf.Fraction + 0.5))
		sc.Workload = w
		sc.Notes = append(sc.Notes, fmt.Sprintf("Rate: %.0f records/s, %g × the median %s achieved in scenario %s (%.0f records/s).", w.Rate, rf.Fraction, displayName(from), rf.Scenario, rate))
	}
	keepFor := s.keptBy(spec.ID)
	for rep := 0; rep < s.reps; rep++ {
		for _, b := range s.opt.Brokers {
			if s.ctx.Err() != nil {
				return
			}
			run := w
			if spec.ConsumeFrom != "" {
				topics := s.kept[spec.ConsumeFrom+"/"+b.Name()]
				if len(topics) == 0 {
					s.fail(sc, b.Name(), fmt.Sprintf("no topic left by scenario %s to read", spec.ConsumeFrom))
					continue
				}
				run.Topic, run.TopicExact = topics[len(topics)-1], true
			}
			if keepFor {
				run.KeepTopic = true
			}
			s.runOne(sc, b, run, rep)
			if keepFor {
				if r := sc.Runs[len(sc.Runs)-1]; r.Failed == "" && r.Broker.Name == b.Name() {
					key := spec.ID + "/" + b.Name()
					// Only the newest topic is read later; drop the older.
					s.deleteTopics(b, s.kept[key])
					s.kept[key] = []string{r.Topic}
				}
			}
		}
	}
	if spec.ConsumeFrom != "" {
		s.dropKept(spec.ConsumeFrom)
	}
	if spec.Perf && s.opt.PerfTools != "" {
		s.perf(sc, spec)
	}
}

// keptBy reports whether a later scenario reads this one's topics.
func (s *suiteRun) keptBy(id string) bool { return s.readLater[id] }

func (s *suiteRun) runOne(sc *report.Scenario, b peer.Broker, w bench.Workload, rep int) {
	if !alive(b) {
		s.fail(sc, b.Name(), "the broker is not running (it died earlier)")
		return
	}
	s.opt.Logf("scenario %s (%s), %s, run %d of %d", sc.ID, sc.Title, b.Name(), rep+1, s.reps)
	s.logMark = -1
	if l, ok := b.(brokerLog); ok {
		s.logMark = l.LogSize()
	}
	target := bench.Target{Name: b.Name(), Bootstrap: b.Bootstrap(), PID: b.PID()}
	res, err := bench.Run(s.ctx, target, w, bench.Options{Progress: s.opt.Progress, ProgressEvery: 5 * time.Second})
	if res == nil {
		res = &bench.Result{Broker: target, Workload: w, Started: time.Now().UTC()}
		if err != nil {
			res.Failed = err.Error()
		}
	}
	sc.Runs = append(sc.Runs, res)
	if err != nil {
		msg := err.Error()
		if len(res.Errors) > 0 {
			msg += fmt.Sprintf(" (client errors: %d× %s)", res.Errors[0].Count, res.Errors[0].Message)
		}
		s.fail(sc, b.Name(), msg)
	} else {
		s.opt.Logf("  %s", res.Headline())
		if n := res.Errors; len(n) > 0 {
			// The run completed, but some records failed: the figures stand,
			// the errors are reported.
			var total int64
			for _, e := range n {
				total += e.Count
			}
			s.fail(sc, b.Name(), fmt.Sprintf("run %d completed, but the client saw %d errors, first: %s: %s", rep+1, total, n[0].Where, n[0].Message))
		}
	}
	// Flush what this run left dirty, so its writeback does not land in the
	// next broker's run, and let background work settle.
	if !s.opt.NoSettle {
		syscall.Sync()
		time.Sleep(time.Second)
	}
}

func (s *suiteRun) fail(sc *report.Scenario, broker, msg string) {
	f := report.Failure{Scenario: sc.ID + ". " + sc.Title, Broker: broker, Error: msg}
	for _, b := range s.opt.Brokers {
		if b.Name() == broker {
			if l, ok := b.(brokerLog); ok {
				if s.logMark >= 0 {
					f.LogTail = l.LogSince(s.logMark, 15)
				} else {
					f.LogTail = l.LogTail(15)
				}
			}
			if !alive(b) {
				f.Error += " — the broker process has exited"
			}
		}
	}
	s.opt.Logf("  FAILED (%s): %s", broker, msg)
	s.c.Failures = append(s.c.Failures, f)
}

func alive(b peer.Broker) bool {
	if a, ok := b.(interface{ Alive() bool }); ok {
		return a.Alive()
	}
	return true
}

func displayName(b string) string {
	if b == "kafka" {
		return "Kafka"
	}
	return b
}

// rateFrom is the median records/s of an earlier scenario on a broker, or
// on any broker that succeeded if that one did not.
func (s *suiteRun) rateFrom(rf *RateFrom) (float64, string, bool) {
	sc := s.byID[rf.Scenario]
	if sc == nil {
		return 0, "", false
	}
	candidates := append([]string{rf.Broker}, s.c.Order...)
	for _, b := range candidates {
		var rates []float64
		for _, r := range sc.Runs {
			if r.Broker.Name == b && r.Failed == "" && r.Produce != nil {
				rates = append(rates, r.Produce.RecordsPerSec)
			}
		}
		if len(rates) > 0 {
			return medianOf(rates), b, true
		}
	}
	return 0, "", false
}

func medianOf(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// dropKept deletes the topics kept for a consume_from scenario ("" = all).
func (s *suiteRun) dropKept(id string) {
	for key, topics := range s.kept {
		scen, broker, _ := strings.Cut(key, "/")
		if id != "" && scen != id {
			continue
		}
		for _, b := range s.opt.Brokers {
			if b.Name() == broker {
				s.deleteTopics(b, topics)
			}
		}
		delete(s.kept, key)
	}
}

func (s *suiteRun) deleteTopics(b peer.Broker, topics []string) {
	if len(topics) == 0 || !alive(b) {
		return
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Bootstrap()))
	if err != nil {
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	_, _ = kadm.NewClient(cl).DeleteTopics(ctx, topics...)
}

// DescribeMachine reads what a report says about the host.
func DescribeMachine() report.Machine {
	m := report.Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), LoadStart: loadAverage()}
	m.Host, _ = os.Hostname()
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb float64
		fmt.Sscanf(strings.TrimPrefix(strings.SplitN(string(data), "\n", 2)[0], "MemTotal:"), "%f", &kb)
		m.MemoryGiB = kb / (1 << 20)
	}
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		m.Kernel = utsString(u.Sysname[:]) + " " + utsString(u.Release[:])
	}
	m.Source = gitSource()
	return m
}

// gitSource names the commit of the working directory's repository, and
// says whether tracked files had uncommitted changes.
func gitSource() string {
	out, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return ""
	}
	src := "git " + strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		src += " with uncommitted changes"
	}
	return src
}

func utsString(b []int8) string {
	var s strings.Builder
	for _, c := range b {
		if c == 0 {
			break
		}
		s.WriteByte(byte(c))
	}
	return s.String()
}

func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
