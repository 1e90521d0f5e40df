// Command sluice is the sluice broker appliance: a single-node,
// thread-per-core broker that speaks the Kafka wire protocol. This file
// parses flags and wires the parts together; it holds no logic of its own.
package main

import (
	"fmt"
	"os"
	"runtime"
)

const usage = `sluice: a Kafka-compatible broker appliance

usage:
  sluice serve [flags]      run the broker (sluice serve -h lists the flags);
                            --standby-of HOST:PORT runs it as a primary's standby
  sluice status --http H:P  role, leader epoch, peer and replication lag of a node
  sluice promote --http H:P make that standby the primary (--force: even while
                            its primary still answers as primary)
  sluice demote --http H:P  hand that primary's role to its in-sync standby
  sluice bench ...          benchmark any Kafka-compatible broker (sluice bench help)
  sluice tune ...           check, apply and revert host tuning; trace with eBPF (sluice tune help)
  sluice version            print the version
`

// init keeps the main goroutine on the process's main thread, so that no
// shard locks itself to it: shard threads rename themselves (shard-N), and
// the main thread's name is the process name tools like pgrep look for.
func init() { runtime.LockOSThread() }

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "status":
		err = statusMain(os.Args[2:])
	case "promote", "demote":
		err = roleMain(os.Args[1], os.Args[2:])
	case "bench":
		err = benchMain(os.Args[2:])
	case "tune":
		err = tuneMain(os.Args[2:])
	case "version":
		fmt.Println("sluice", version)
	case "-h", "--help", "help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "sluice: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sluice:", err)
		os.Exit(1)
	}
}
