package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/sluice-broker/sluice/bench"
)

const benchUsage = `sluice bench: benchmark any Kafka-compatible broker

usage:
  sluice bench produce|consume|e2e --bootstrap HOST:PORT [workload flags] [--json FILE]
  sluice bench run WORKLOAD-FILE [--bootstrap HOST:PORT] [workload flags] [--json FILE]
  sluice bench compare [flags] [WORKLOAD-FILE...]   (sluice bench compare -h lists them)
  sluice bench report RESULT.json...                 tables from saved results

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
	}
	return err
}

// benchReport prints the tables of saved results.
func benchReport(args []string) error {
	if len(args) == 0 {
		return errors.New("bench report: usage: sluice bench report RESULT.json...")
	}
	for _, path := range args {
		r, err := bench.ReadResult(path)
		if err != nil {
			return err
		}
		bench.WriteTable(os.Stdout, r)
	}
	return nil
}

func benchCompare(ctx context.Context, args []string) error {
	return errors.New("bench compare: not yet")
}
