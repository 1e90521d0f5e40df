package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/sluice-broker/sluice/tuning"
	"github.com/sluice-broker/sluice/tuning/probe"
)

const tuneUsage = `usage:
  sluice tune check  [--json] [--root DIR] [--data-dir DIR] [--shards N]
  sluice tune apply  [--only NAME...] [--dry-run] [--persist] [--root DIR] [--state FILE] [--data-dir DIR] [--shards N]
  sluice tune revert [--root DIR] [--state FILE]
  sluice tune trace  [--duration D] [--data-dir DIR] [--pid PID]
  sluice tune list

check prints every tuner's current and recommended value, why, and whether it
matters on this host. apply changes what is off and records the previous
values in the state file; revert puts them back. --root DIR reads and writes a
fake tree (DIR/proc/sys/vm/swappiness stands for /proc/sys/vm/swappiness).
trace attaches eBPF tracepoints and prints latency histograms.

exit status: 0 nothing off (check) or everything done (apply, revert);
1 something is off, or could not be applied or reverted; 2 usage or error.
`

// tuneExit ends the process with the tune command's exit status.
var tuneExit = os.Exit

func tuneMain(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, tuneUsage)
		tuneExit(2)
		return nil
	}
	var (
		code int
		err  error
	)
	switch args[0] {
	case "check":
		code, err = tuneCheck(args[1:])
	case "apply":
		code, err = tuneApply(args[1:])
	case "revert":
		code, err = tuneRevert(args[1:])
	case "trace":
		code, err = tuneTrace(args[1:])
	case "list":
		fmt.Println(strings.Join(tuning.Names(), "\n"))
	case "-h", "--help", "help":
		fmt.Print(tuneUsage)
	default:
		fmt.Fprintf(os.Stderr, "sluice tune: unknown command %q\n\n%s", args[0], tuneUsage)
		code = 2
	}
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "sluice tune:", err)
			code = 2
		}
	}
	if code != 0 {
		tuneExit(code)
	}
	return nil
}

func tuneFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("tune "+name, flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), tuneUsage) }
	return fs
}

func tuneCheck(args []string) (int, error) {
	fs := tuneFlags("check")
	asJSON := fs.Bool("json", false, "print JSON")
	root := fs.String("root", "/", "the directory that stands for /")
	dataDir := fs.String("data-dir", "./data", "the broker's data directory")
	shards := fs.Int("shards", 0, "shard threads the broker will run (default: number of CPUs)")
	if err := fs.Parse(args); err != nil {
		return 2, err
	}
	findings, err := tuning.Check(tuning.Options{Root: *root, DataDir: *dataDir, Shards: *shards})
	if err != nil {
		return 2, err
	}
	if *asJSON {
		err = tuning.WriteJSON(os.Stdout, findings)
	} else {
		err = tuning.WriteReport(os.Stdout, findings)
	}
	if err != nil {
		return 2, err
	}
	if tuning.AnyOff(findings) {
		return 1, nil
	}
	return 0, nil
}

func tuneApply(args []string) (int, error) {
	fs := tuneFlags("apply")
	var only []string
	fs.Func("only", "apply only this tuner (repeat, or NAME,NAME)", func(v string) error {
		only = append(only, strings.Split(v, ",")...)
		return nil
	})
	dryRun := fs.Bool("dry-run", false, "print what would change, change nothing")
	persist := fs.Bool("persist", false, "write sysctl.d, udev and limits.d files instead of runtime values")
	root := fs.String("root", "/", "the directory that stands for /")
	state := fs.String("state", "", "state file (default "+tuning.DefaultStateFile+" under --root)")
	dataDir := fs.String("data-dir", "./data", "the broker's data directory")
	shards := fs.Int("shards", 0, "shard threads the broker will run (default: number of CPUs)")
	if err := fs.Parse(args); err != nil {
		return 2, err
	}
	only = append(only, fs.Args()...) // --only a b c
	results, err := tuning.Apply(tuning.ApplyOptions{
		Options: tuning.Options{Root: *root, DataDir: *dataDir, Shards: *shards},
		Only:    only, DryRun: *dryRun, Persist: *persist, StateFile: *state,
	})
	for _, r := range results {
		fmt.Println(r)
	}
	if err != nil {
		return 2, err
	}
	if len(results) == 0 {
		fmt.Println("nothing is off: no change")
	}
	if tuning.Failed(results) {
		return 1, nil
	}
	return 0, nil
}

func tuneRevert(args []string) (int, error) {
	fs := tuneFlags("revert")
	root := fs.String("root", "/", "the directory that stands for /")
	state := fs.String("state", "", "state file (default "+tuning.DefaultStateFile+" under --root)")
	if err := fs.Parse(args); err != nil {
		return 2, err
	}
	results, err := tuning.Revert(tuning.RevertOptions{Root: *root, StateFile: *state})
	for _, r := range results {
		fmt.Println(r)
	}
	if err != nil {
		return 2, err
	}
	if tuning.Failed(results) {
		return 1, nil
	}
	return 0, nil
}

func tuneTrace(args []string) (int, error) {
	fs := tuneFlags("trace")
	duration := fs.Duration("duration", 10*time.Second, "how long to trace")
	dataDir := fs.String("data-dir", "./data", "trace block I/O and page-cache misses of the device holding this directory")
	pid := fs.Int("pid", 0, "trace io_uring requests of this process only (default: all)")
	if err := fs.Parse(args); err != nil {
		return 2, err
	}
	return probe.Trace(os.Stdout, probe.Config{DataDir: *dataDir, PID: *pid}, *duration)
}
