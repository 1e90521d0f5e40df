package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-broker/sluice/bench"
	"github.com/sluice-broker/sluice/bench/peer"
	"github.com/sluice-broker/sluice/bench/report"
	"github.com/sluice-broker/sluice/bench/suite"
	"github.com/sluice-broker/sluice/replicate"
)

const benchUsage = `sluice bench: benchmark any Kafka-compatible broker

usage:
  sluice bench produce|consume|e2e --bootstrap HOST:PORT [workload flags] [--json FILE]
  sluice bench run WORKLOAD-FILE [--bootstrap HOST:PORT] [workload flags] [--json FILE]
  sluice bench compare [flags] [WORKLOAD-FILE...]   (sluice bench compare -h lists them)
  sluice bench report RESULT.json...                 tables from saved results
  sluice bench failover --bootstrap A,B --kill-pid PID [flags]
  sluice bench txn --bootstrap HOST:PORT [flags]   transactional producers: commits/s and EndTxn latency
                                                     acks=all at a fixed rate, the leader killed mid-run

Each subcommand's -h lists its flags.
`

func benchMain(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, benchUsage)
		return errors.New("bench: missing subcommand")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "produce", "consume", "e2e":
		return benchOne(ctx, bench.Mode(args[0]), "", args[1:])
	case "run":
		rest := args[1:]
		if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
			return errors.New("bench run: usage: sluice bench run WORKLOAD-FILE [flags]")
		}
		return benchOne(ctx, "", rest[0], rest[1:])
	case "compare":
		return benchCompare(ctx, args[1:])
	case "report":
		return benchReport(args[1:])
	case "failover":
		return benchFailover(ctx, args[1:])
	case "txn":
		return benchTxn(ctx, args[1:])
	case "-h", "--help", "help":
		fmt.Print(benchUsage)
		return nil
	}
	return fmt.Errorf("bench: unknown subcommand %q\n\n%s", args[0], benchUsage)
}

// benchOne runs one workload: from a mode and flags, or from a file with
// flags on top.
func benchOne(ctx context.Context, mode bench.Mode, file string, args []string) error {
	name := "bench " + string(mode)
	if file != "" {
		name = "bench run"
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	bootstrap := fs.String("bootstrap", "127.0.0.1:9092", "broker address host:port")
	brokerName := fs.String("broker-name", "", "label for the broker in results (default: the bootstrap address)")
	brokerPID := fs.Int("broker-pid", 0, "broker process to sample from /proc (default: the process listening on the bootstrap port; -1: none)")
	jsonOut := fs.String("json", "", "write the result as JSON to this file")
	reportOut := fs.String("report", "", "write a report with plots: BASE.md, BASE.html and BASE/*.svg")
	quiet := fs.Bool("quiet", false, "no live progress line")
	wf := bench.BindWorkloadFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected arguments %q", name, fs.Args())
	}
	var w bench.Workload
	if file != "" {
		var err error
		if w, err = bench.LoadWorkload(file); err != nil {
			return err
		}
	} else {
		w.Mode = mode
	}
	if err := wf.Apply(&w); err != nil {
		return err
	}
	target := bench.Target{Name: *brokerName, Bootstrap: *bootstrap, PID: *brokerPID}
	if target.Name == "" {
		target.Name = *bootstrap
	}
	opt := bench.Options{}
	if !*quiet {
		opt.Progress = os.Stderr
	}
	res, err := bench.Run(ctx, target, w, opt)
	if res != nil {
		bench.WriteTable(os.Stdout, res)
		if *jsonOut != "" {
			if werr := bench.WriteJSON(*jsonOut, res); werr != nil {
				return werr
			}
		}
		if *reportOut != "" {
			c := report.FromResults("sluice bench: "+res.Workload.Name+" on "+target.Name, []*bench.Result{res})
			c.Command = "sluice " + name + " " + strings.Join(args, " ")
			if werr := writeReport(c, *reportOut, true); werr != nil {
				return werr
			}
		}
	}
	return err
}

// benchReport prints saved results as tables and, with --out, renders them
// (or a saved comparison) as a report with plots.
func benchReport(args []string) error {
	fs := flag.NewFlagSet("bench report", flag.ContinueOnError)
	out := fs.String("out", "", "write BASE.md, BASE.html and plots in BASE/ (default: tables on the terminal only)")
	title := fs.String("title", "sluice bench results", "report title")
	png := fs.Bool("png", true, "also rasterise the plots to PNG when a headless Chromium is installed")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("bench report: usage: sluice bench report [--out BASE] RESULT.json... | COMPARISON.json")
	}
	var results []*bench.Result
	for _, path := range fs.Args() {
		if c, err := report.ReadComparison(path); err == nil {
			if *out == "" {
				return errors.New("bench report: a comparison needs --out")
			}
			if rel, err := filepath.Rel(filepath.Dir(*out), path); err == nil {
				c.DataFile = rel
			}
			return writeReport(c, *out, *png)
		}
		r, err := bench.ReadResult(path)
		if err != nil {
			return err
		}
		bench.WriteTable(os.Stdout, r)
		results = append(results, r)
	}
	if *out == "" {
		return nil
	}
	c := report.FromResults(*title, results)
	c.Command = "sluice bench report " + strings.Join(args, " ")
	return writeReport(c, *out, *png)
}

func writeReport(c *report.Comparison, base string, png bool) error {
	files, err := c.Doc().Write(base, png)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "report: %s, %s, plots in %s/ (%d PNG)\n", files.Markdown, files.HTML, files.FigDir, len(files.PNGs))
	return nil
}

// benchCompare runs the same workloads against several brokers, interleaved,
// and writes a report.
func benchCompare(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench compare", flag.ContinueOnError)
	suiteFile := fs.String("suite", "", "suite file (bench/workloads/standard.yaml is the standard set); otherwise the WORKLOAD-FILE arguments")
	var brokers []string
	fs.Func("broker", "a running broker to compare, name=host:port (repeatable; order = report columns)", func(v string) error {
		if !strings.Contains(v, "=") {
			return fmt.Errorf("want name=host:port, got %q", v)
		}
		brokers = append(brokers, v)
		return nil
	})
	start := fs.String("start", "", "brokers to start fresh on loopback: sluice, sluice-direct, sluice-page-cache (sluice with that --io-mode), kafka")
	sluiceBin := fs.String("sluice-bin", "", "sluice binary to start (default: this one)")
	kafkaPeer := fs.String("kafka-peer", "scripts/kafka-peer", "the Kafka peer script")
	kafkaHeap := fs.String("kafka-heap", "", "Kafka JVM heap (default: the script's)")
	workDir := fs.String("work-dir", filepath.Join(os.TempDir(), "sluice-bench"), "data directories of started brokers, and where disk limits are measured")
	reps := fs.Int("reps", 0, "repetitions per broker (default: the suite's, 2)")
	duration := fs.Duration("duration", 0, "override every workload's measured duration")
	warmup := fs.Duration("warmup", 0, "override every workload's warm-up")
	scale := fs.Float64("scale", 0, "multiply every workload's duration and warm-up")
	measureLimits := fs.Bool("limits", true, "measure the machine's limits (fio, loopback TCP, memcpy) in the same run")
	perf := fs.Bool("producer-performance", true, "also run Kafka's ProducerPerformance where the suite asks (needs mvn and java)")
	perfSeconds := fs.Float64("producer-performance-seconds", 10, "size ProducerPerformance runs to take about this long")
	outDir := fs.String("out", "bench/results", "directory for the report")
	name := fs.String("name", "", "report base name (default DATE-HOST)")
	png := fs.Bool("png", true, "rasterise plots to PNG when a headless Chromium is installed")
	quiet := fs.Bool("quiet", false, "no progress lines")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	var (
		file *suite.File
		err  error
	)
	switch {
	case *suiteFile != "":
		file, err = suite.Load(*suiteFile)
	case fs.NArg() > 0:
		file, err = suite.FromWorkloads(fs.Args(), 2)
	default:
		return errors.New("bench compare: give --suite FILE or WORKLOAD-FILE arguments")
	}
	if err != nil {
		return err
	}
	logf := func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
	}

	var running []peer.Broker
	defer func() {
		for _, b := range running {
			if err := b.Stop(); err != nil {
				logf("stopping %s: %v", b.Name(), err)
			}
		}
	}()
	startedKafka := false
	var stopNotes []string
	for _, which := range strings.Split(*start, ",") {
		switch strings.TrimSpace(which) {
		case "":
		case "sluice", "sluice-direct", "sluice-page-cache":
			// sluice-MODE starts sluice with --io-mode MODE, to compare
			// the write modes side by side.
			var args []string
			if mode, ok := strings.CutPrefix(strings.TrimSpace(which), "sluice-"); ok {
				args = []string{"--io-mode", mode}
			}
			bin := *sluiceBin
			if bin == "" {
				if bin, err = os.Executable(); err != nil {
					return err
				}
			}
			logf("starting sluice (%s)", bin)
			s, err := peer.StartSluice(peer.SluiceConfig{Name: strings.TrimSpace(which), Binary: bin, DataDir: filepath.Join(*workDir, strings.TrimSpace(which)), Config: file.BrokerConfig["sluice"], Args: args})
			if err != nil {
				return err
			}
			running = append(running, s)
		case "kafka":
			logf("starting Apache Kafka with %s", *kafkaPeer)
			k, err := peer.StartKafka(ctx, peer.KafkaConfig{Script: *kafkaPeer, DataDir: filepath.Join(*workDir, "kafka"), Heap: *kafkaHeap, Config: file.BrokerConfig["kafka"]})
			if err != nil {
				return err
			}
			running = append(running, k)
			startedKafka = true
		default:
			return fmt.Errorf("bench compare: --start knows sluice, sluice-direct, sluice-page-cache and kafka, not %q", which)
		}
	}
	all := append([]peer.Broker(nil), running...)
	for _, b := range brokers {
		n, addr, _ := strings.Cut(b, "=")
		all = append(all, peer.External(n, addr))
	}
	if len(all) == 0 {
		return errors.New("bench compare: no brokers (use --start and/or --broker)")
	}
	opt := suite.Options{
		Brokers: all, Reps: *reps, Duration: *duration, Warmup: *warmup, Scale: *scale,
		Limits: *measureLimits, LimitsDir: *workDir, Logf: logf,
	}
	if !*quiet {
		opt.Progress = os.Stderr
	}
	if *measureLimits {
		if err := os.MkdirAll(*workDir, 0o755); err != nil {
			return err
		}
	}
	if *perf && startedKafka {
		version := peer.ScriptDefault(*kafkaPeer, "KAFKA_PEER_VERSION")
		logf("fetching kafka-tools %s for ProducerPerformance", version)
		if dir, err := peer.InstallTools(ctx, version); err != nil {
			stopNotes = append(stopNotes, "ProducerPerformance not run: "+err.Error())
		} else {
			opt.PerfTools, opt.PerfSeconds = dir, *perfSeconds
		}
	}
	c := suite.Run(ctx, file, opt)
	c.Command = "sluice bench compare " + strings.Join(args, " ")
	if mk := os.Getenv("BENCH_COMMAND"); mk != "" {
		c.Command = mk
	}
	for _, b := range running {
		if err := b.Stop(); err != nil {
			stopNotes = append(stopNotes, fmt.Sprintf("stopping %s at the end: %v", b.Name(), err))
		}
	}
	running = nil
	c.Notes = append(c.Notes, stopNotes...)

	base := *name
	if base == "" {
		host, _ := os.Hostname()
		base = c.Started.Format("2006-01-02") + "-" + host
	}
	base = filepath.Join(*outDir, base)
	if err := os.MkdirAll(base, 0o755); err != nil {
		return err
	}
	c.DataFile = filepath.Join(filepath.Base(base), "results.json")
	if err := bench.WriteJSON(filepath.Join(base, "results.json"), c); err != nil {
		return err
	}
	if err := writeReport(c, base, *png); err != nil {
		return err
	}
	fmt.Println()
	report.WriteText(os.Stdout, c.SummaryTable())
	if len(c.Failures) > 0 {
		fmt.Printf("\n%d failures: see the Failures section of %s.md\n", len(c.Failures), base)
	}
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	return nil
}

// benchFailover is the failover scenario (bench/failover.go).
func benchFailover(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench failover", flag.ContinueOnError)
	bootstrap := fs.String("bootstrap", "", "every node of the cluster, comma-separated")
	killPID := fs.Int("kill-pid", 0, "the leader's process, killed with SIGKILL mid-run")
	promote := fs.String("promote-http", "", "a manual pair: run sluice promote against this standby admin listener right after the kill")
	rate := fs.Int("rate", 500, "records a second")
	recordBytes := fs.Int("record-bytes", 512, "record value size")
	duration := fs.Duration("duration", 30*time.Second, "the whole run")
	killAfter := fs.Duration("kill-after", 10*time.Second, "when the leader is killed")
	partitions := fs.Int("partitions", 6, "partitions of the topic")
	rf := fs.Int("replication-factor", 2, "replication factor of the topic")
	topic := fs.String("topic", "", "topic to create (default bench-failover-TIME)")
	jsonOut := fs.String("json", "", "write the result as JSON to this file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *bootstrap == "" || *killPID <= 0 {
		return errors.New("bench failover: --bootstrap and --kill-pid are required")
	}
	if *topic == "" {
		*topic = fmt.Sprintf("bench-failover-%d", time.Now().Unix())
	}
	cfg := bench.FailoverConfig{
		Bootstrap: strings.Split(*bootstrap, ","), Topic: *topic, Partitions: *partitions, ReplicationFactor: int16(*rf),
		Rate: *rate, RecordBytes: *recordBytes, Duration: *duration, KillAfter: *killAfter,
		Kill: func() error { return syscall.Kill(*killPID, syscall.SIGKILL) },
	}
	if *promote != "" {
		cfg.AfterKill = func() error {
			for range 100 {
				if _, err := replicate.RequestRoleChange(*promote, "promote", false); err == nil {
					return nil
				}
				time.Sleep(20 * time.Millisecond) // the standby may still see the primary's socket
			}
			return fmt.Errorf("sluice promote --http %s did not succeed", *promote)
		}
	}
	res, err := bench.RunFailover(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Print(res.Table())
	if *jsonOut != "" {
		if err := bench.WriteJSON(*jsonOut, res); err != nil {
			return err
		}
	}
	if res.Lost > 0 {
		return fmt.Errorf("bench failover: %d acknowledged records lost", res.Lost)
	}
	return nil
}

// benchTxn is the transactions scenario (bench/txn.go).
func benchTxn(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench txn", flag.ContinueOnError)
	bootstrap := fs.String("bootstrap", "127.0.0.1:9092", "broker address host:port")
	producers := fs.Int("producers", 4, "transactional producers, one transactional id each")
	txnRecords := fs.Int("txn-records", 100, "records per transaction")
	recordBytes := fs.Int("record-bytes", 1024, "record value size")
	partitions := fs.Int("partitions", 6, "partitions of the topic")
	duration := fs.Duration("duration", 20*time.Second, "measured time")
	warmup := fs.Duration("warmup", 3*time.Second, "time before measuring")
	topic := fs.String("topic", "", "topic to create (default bench-txn-TIME)")
	jsonOut := fs.String("json", "", "write the result as JSON to this file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *topic == "" {
		*topic = fmt.Sprintf("bench-txn-%d", time.Now().Unix())
	}
	res, err := bench.RunTxn(ctx, bench.TxnConfig{
		Bootstrap: strings.Split(*bootstrap, ","), Topic: *topic, Partitions: *partitions, Producers: *producers,
		TxnRecords: *txnRecords, RecordBytes: *recordBytes, Duration: *duration, Warmup: *warmup,
	})
	if err != nil {
		return err
	}
	fmt.Print(res.Table())
	if *jsonOut != "" {
		return bench.WriteJSON(*jsonOut, res)
	}
	return nil
}
