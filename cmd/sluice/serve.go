package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluice-broker/sluice/engine"
	"github.com/sluice-broker/sluice/engine/api"
	"github.com/sluice-broker/sluice/engine/config"
	"github.com/sluice-broker/sluice/engine/meta"
	"github.com/sluice-broker/sluice/netio"
	"github.com/sluice-broker/sluice/replicate"
	"github.com/sluice-broker/sluice/tuning"
	"github.com/sluice-broker/sluice/tuning/probe"
)

func serve(args []string) error {
	cfg := config.Defaults()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "", "data directory (default ./data, or log.dirs from --config)")
	listen := fs.String("listen", "", "Kafka listener host:port (default 127.0.0.1:9092)")
	advertise := fs.String("advertise", "", "host:port given to clients in Metadata (default: the listen address)")
	httpAddr := fs.String("http", "", "metrics and admin listener host:port (default 127.0.0.1:9645; empty string disables)")
	shards := fs.Int("shards", 0, "number of shards, one per core (default: number of CPUs)")
	nodeID := fs.Int("node-id", int(cfg.NodeID), "broker node id (without this flag, node.id or broker.id from --config if set)")
	configFile := fs.String("config", "", "a Kafka-style server.properties file; flags win over it")
	pinCPUs := fs.Bool("pin-cpus", false, "pin each shard thread to its own CPU")
	requireURing := fs.Bool("require-io-uring", false, "refuse to start when io_uring is unavailable instead of running on plain syscalls")
	ioMode := fs.String("io-mode", config.IOModeDirect, "write mode: direct (O_DIRECT appends through io_uring, tail cache) or page-cache")
	tailCache := fs.Int64("tail-cache-bytes", 256<<20, "direct mode: memory for the tail cache, split across shards and fairly across partitions")
	directDsync := fs.Bool("direct-dsync", true, "direct mode: make acks=all appends durable with RWF_DSYNC writes instead of a write then fdatasync")
	directPreZero := fs.Bool("direct-prezero", true, "direct mode: overwrite segment space with zeros ahead of the writer, so datasyncs need no journal commit (doubles the bytes written)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	standbyOf := fs.String("standby-of", "", "run as the standby of the primary whose Kafka listener is HOST:PORT")
	failoverEtcd := fs.String("failover-etcd", "", "comma-separated etcd endpoints: an etcd lease decides which node of the pair is primary (both nodes get the same flags)")
	failoverGroup := fs.String("failover-group", "sluice", "with --failover-etcd: the pair's name in etcd")
	failoverTTL := fs.Duration("failover-ttl", 3*time.Second, "with --failover-etcd: the primary's lease; it stops taking writes after 2/3 of it without a renewal, and its standby takes over once it expires")
	ebpf := fs.Bool("ebpf", false, "attach the eBPF probes (block I/O, io_uring and page-cache latency) and export them as metrics")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *configFile != "" {
		if err := cfg.LoadFile(*configFile); err != nil {
			return err
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["data-dir"] {
		cfg.DataDir = *dataDir
	}
	if set["listen"] {
		cfg.Listen = *listen
	}
	if set["advertise"] {
		cfg.Advertise = *advertise
	}
	if set["http"] {
		cfg.HTTP = *httpAddr
	}
	if set["shards"] {
		cfg.Shards = *shards
	}
	if set["node-id"] {
		cfg.NodeID = int32(*nodeID)
	}
	cfg.PinCPUs = *pinCPUs
	if set["io-mode"] {
		cfg.IOMode = *ioMode
	}
	if set["tail-cache-bytes"] {
		cfg.TailCacheBytes = *tailCache
	}
	if set["direct-dsync"] {
		cfg.DirectDsync = *directDsync
	}
	if set["direct-prezero"] {
		cfg.DirectPreZero = *directPreZero
	}
	cfg.RequireURing = *requireURing
	cfg.StandbyOf = *standbyOf
	var failover replicate.FailoverConfig
	if *failoverEtcd != "" {
		if cfg.StandbyOf != "" {
			return errors.New("--standby-of and --failover-etcd exclude each other: with etcd, the lease decides which node follows which")
		}
		if *failoverTTL < 2*time.Second {
			return fmt.Errorf("--failover-ttl %v: etcd leases last whole seconds, at least 2", *failoverTTL)
		}
		cfg.Failover = true
		failover = replicate.FailoverConfig{Endpoints: strings.Split(*failoverEtcd, ","), Group: *failoverGroup, TTL: failoverTTL.Truncate(time.Second)}
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(logger)

	// Report host settings that are off, one line each; never change them
	// (that is `sluice tune apply`).
	for _, f := range tuning.CheckSummary(cfg.DataDir, cfg.Shards) {
		logger.Warn("host setting is off (see sluice tune check)", "tuner", f.Name, "target", f.Target, "current", f.Current, "recommended", f.Recommended, "why", f.Reason)
	}
	if limit := config.DefaultMemoryLimit(); limit > 0 {
		debug.SetMemoryLimit(limit)
	}
	var primary replicate.Primary
	if cfg.StandbyOf != "" {
		var err error
		if primary, err = findPrimary(cfg, logger); err != nil {
			return err
		}
		cfg.ClusterID = primary.ClusterID
	}
	if cfg.Failover {
		local, _, err := meta.ReadClusterID(cfg.DataDir)
		if err != nil {
			return err
		}
		if cfg.ClusterID, err = replicate.FailoverClusterID(failover, local); err != nil {
			return err
		}
	}
	broker, err := engine.Open(cfg, logger)
	if err != nil {
		return err
	}
	if *ebpf {
		p, err := probe.Start(probe.Config{DataDir: cfg.DataDir, PID: os.Getpid()})
		if err != nil {
			logger.Warn("eBPF probes off", "err", err)
		} else {
			defer p.Close()
			for _, m := range p.Missing {
				logger.Warn("eBPF probe not attached", "why", m)
			}
			broker.Metrics.Registry.MustRegister(p)
		}
	}
	handler, err := api.New(broker)
	if err != nil {
		broker.Close()
		return err
	}
	node := &replicate.Node{B: broker, Roles: handler, Logger: logger}
	if cfg.Failover {
		node.Failover = replicate.NewFailover(node, failover)
	}
	srv, err := netio.Listen(cfg.Listen, handler, netio.Config{
		MaxRequestBytes: cfg.SocketRequestMaxBytes,
		IdleTimeout:     cfg.ConnectionsMaxIdle,
		Logger:          logger,
		Observe:         broker.ObserveRequest,
		Connections:     broker.Metrics.Connections,
	})
	if err != nil {
		broker.Close()
		return err
	}
	var httpSrv *http.Server
	if cfg.HTTP != "" {
		httpSrv = &http.Server{Addr: cfg.HTTP, Handler: adminMux(broker, node)}
		go func() {
			if err := httpSrv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("http listener", "addr", cfg.HTTP, "err", err)
			}
		}()
	}
	logger.Info("sluice serving", "kafka", srv.Addr().String(), "http", cfg.HTTP, "data_dir", cfg.DataDir,
		"shards", len(broker.Shards), "io", broker.IOBackend, "io_mode", broker.IOMode, "pin_cpus", cfg.PinCPUs, "node_id", cfg.NodeID)

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve() }()
	if cfg.StandbyOf != "" {
		node.Follow(cfg.StandbyOf, primary)
	}
	stopFailover := func() {}
	if cfg.Failover {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := node.Failover.Run(ctx); err != nil && ctx.Err() == nil {
				logger.Error("failover stopped", "err", err)
			}
		}()
		// A clean stop gives the lease back: the standby takes over at
		// once instead of after the TTL.
		stopFailover = func() { cancel(); <-done }
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case s := <-sig:
		logger.Info("shutting down", "signal", s.String())
	case err := <-serveErr:
		logger.Error("listener failed", "err", err)
	}
	stopFailover()
	node.Close()
	srv.Close()
	if httpSrv != nil {
		httpSrv.Close()
	}
	if err := broker.Close(); err != nil {
		return err
	}
	logger.Info("clean shutdown")
	return nil
}

// findPrimary checks, before anything is opened, that --standby-of names
// a sluice primary of this data directory's cluster other than this node.
// A primary that cannot be reached yet is waited for: a standby's first
// start needs its cluster id, and a restarted pair may come up in any
// order.
func findPrimary(cfg *config.Broker, logger *slog.Logger) (replicate.Primary, error) {
	for _, own := range []string{cfg.Listen, cfg.Advertise} {
		if own != "" && replicate.SameAddress(cfg.StandbyOf, own) {
			return replicate.Primary{}, fmt.Errorf("--standby-of %s is this node's own listener", cfg.StandbyOf)
		}
	}
	local, _, err := meta.ReadClusterID(cfg.DataDir)
	if err != nil {
		return replicate.Primary{}, err
	}
	for {
		p, err := replicate.Probe(cfg.StandbyOf, cfg.NodeID, local)
		if !errors.Is(err, replicate.ErrUnreachable) {
			return p, err
		}
		logger.Warn("waiting for the primary", "primary", cfg.StandbyOf, "err", err)
		time.Sleep(time.Second)
	}
}

// adminMux serves health endpoints on the --http listener.
func adminMux(b *engine.Broker, node *replicate.Node) *http.ServeMux {
	mux := http.NewServeMux()
	node.Routes(mux)
	mux.Handle("/metrics", promhttp.HandlerFor(b.Metrics.Registry, promhttp.HandlerOpts{}))
	// Go's profiler, for perf experiments (go tool pprof http://HOST:PORT/debug/pprof/profile).
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/v1/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(b.Status())
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if ready, report := b.Readiness(); !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, report)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}
