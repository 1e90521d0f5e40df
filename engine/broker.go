// Package engine is the broker core: it owns the shards (thread-per-core
// executors, each with its partitions and io_uring ring), the topic
// catalogue, and the operations that span them (creating and deleting
// topics, changing configs, start-up recovery and clean shutdown). The Kafka
// request handlers in engine/api map API calls onto it.
package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/sluice-broker/sluice/engine/config"
	"github.com/sluice-broker/sluice/engine/log"
	"github.com/sluice-broker/sluice/engine/meta"
	"github.com/sluice-broker/sluice/engine/metrics"
	"github.com/sluice-broker/sluice/engine/shard"
	"github.com/sluice-broker/sluice/engine/storage"
)

// Broker is one running sluice node's engine.
type Broker struct {
	Cfg    *config.Broker
	Meta   *meta.Store
	Shards []*shard.Shard
	// Cleaner compacts compacted topics (nil with log.cleaner.enable=false).
	Cleaner *shard.Cleaner
	Logger  *slog.Logger
	// Metrics is where the broker records; it also collects the engine's
	// scrape-time metrics (the Broker is a prometheus.Collector).
	Metrics *metrics.Metrics
	// IOBackend says what the shards use for I/O: "io_uring" or "plain
	// syscalls".
	IOBackend string
	// IOMode is the write mode in use (config.IOModeDirect or
	// config.IOModePageCache): the one asked for, unless the file system
	// refuses O_DIRECT.
	IOMode string

	fs       storage.FS
	topicMu  sync.Mutex // serialises topic creation, deletion and config changes
	stopTick chan struct{}
	tickWG   sync.WaitGroup

	closeMu sync.Mutex
	closers []func() // run first by Close, newest first (see OnClose)

	repl replication
}

// OnClose registers fn to run at the start of Close, while the shards still
// run: services built on the broker (the group coordinator) stop there.
func (b *Broker) OnClose(fn func()) {
	b.closeMu.Lock()
	defer b.closeMu.Unlock()
	b.closers = append(b.closers, fn)
}

// Open recovers the data directory and starts the shards.
func Open(cfg *config.Broker, logger *slog.Logger) (*Broker, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if cfg.Shards <= 0 {
		cfg.Shards = runtime.NumCPU()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, err
	}
	if before, after, err := raiseOpenFileLimit(); err != nil {
		logger.Warn("could not raise the open file limit", "limit", before, "err", err)
	} else if after != before {
		logger.Info("open file limit raised", "from", before, "to", after)
	}
	b := &Broker{Cfg: cfg, Logger: logger, Metrics: metrics.New(), fs: storage.OS(), stopTick: make(chan struct{})}
	useURing := true
	if err := shard.URingAvailable(); err != nil {
		if cfg.RequireURing {
			return nil, fmt.Errorf("io_uring is unavailable (%v) and --require-io-uring is set", err)
		}
		logger.Warn("io_uring is unavailable; running on plain syscalls", "reason", err.Error())
		useURing = false
	}
	b.IOMode = cfg.IOMode
	switch cfg.IOMode {
	case config.IOModePageCache:
	case config.IOModeDirect:
		if err := probeDirect(cfg.DataDir); err != nil {
			logger.Warn("the data directory's file system refuses O_DIRECT; running in page-cache mode", "data_dir", cfg.DataDir, "err", err)
			b.IOMode = config.IOModePageCache
		}
	default:
		return nil, fmt.Errorf("io mode %q: want %s or %s", cfg.IOMode, config.IOModeDirect, config.IOModePageCache)
	}
	store, err := meta.Open(cfg.DataDir, cfg.Shards, cfg.ClusterID)
	if err != nil {
		return nil, err
	}
	b.Meta = store
	checkpoints, err := readCheckpoints(b.fs, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	epoch, err := meta.ReadLeaderEpoch(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if cfg.StandbyOf == "" && !cfg.Failover {
		// A primary by configuration starts a new epoch every time: a
		// tail it lost in a crash and then rewrote must not carry the
		// epoch of the tail its standby kept. (An etcd pair's epochs come
		// from etcd; a standby's from its primary.)
		epoch++
		if err := meta.WriteLeaderEpoch(cfg.DataDir, epoch); err != nil {
			return nil, err
		}
	}
	b.repl.epoch.Store(epoch)
	// A node of an etcd-decided pair starts as a standby of nobody yet,
	// until it wins the primary's lease or finds who holds it.
	b.repl.standby.Store(cfg.StandbyOf != "" || cfg.Failover)
	if cfg.CleanerEnable {
		b.Cleaner = shard.StartCleaner(shard.CleanerConfig{
			IOBytesPerSec: cfg.CleanerIOBytesPerSec, DedupeBytes: cfg.CleanerDedupeBufferLen, URing: useURing, Logger: logger,
		})
	}
	ncpu := runtime.NumCPU()
	for i := 0; i < cfg.Shards; i++ {
		pin := -1
		if cfg.PinCPUs {
			pin = i % ncpu
		}
		sh, err := shard.Start(shard.Config{
			ID: i, DataDir: cfg.DataDir, FS: b.fs, PinCPU: pin, URing: useURing,
			Logger: logger, Metrics: b.Metrics, Checkpoints: checkpoints,
			Direct: b.IOMode == config.IOModeDirect, TailCacheBytes: cfg.TailCacheBytes / int64(cfg.Shards), DsyncWrites: cfg.DirectDsync, PreZero: cfg.DirectPreZero,
			ReplicaLagMax: cfg.ReplicaLagTimeMax, Standby: cfg.StandbyOf != "" || cfg.Failover, Epoch: epoch,
			AloneNeedsLicense: cfg.Failover, Cleaner: b.Cleaner,
		})
		if err != nil {
			b.stopShards()
			return nil, err
		}
		b.Shards = append(b.Shards, sh)
	}
	b.IOBackend = b.Shards[0].Backend()
	if err := b.loadCatalogue(); err != nil {
		b.stopShards()
		return nil, err
	}
	if err := b.openPartitions(); err != nil {
		b.stopShards()
		return nil, err
	}
	b.Metrics.Registry.MustRegister(b)
	b.tickWG.Add(1)
	go b.tick()
	return b, nil
}

// readCheckpoints merges every shard's checkpoint file: the shard count may
// have changed since they were written.
func readCheckpoints(fs storage.FS, dir string) (map[string]log.Checkpoint, error) {
	names, err := fs.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	all := map[string]log.Checkpoint{}
	for _, n := range names {
		if !strings.HasPrefix(n, "shard-") || !strings.HasSuffix(n, ".checkpoint") {
			continue
		}
		m, err := log.ReadCheckpointFile(fs, filepath.Join(dir, n))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		for k, v := range m {
			all[k] = v
		}
	}
	return all, nil
}

// openPartitions opens every partition of the catalogue on its shard, in
// parallel across shards, then marks the run as started (not clean).
func (b *Broker) openPartitions() error {
	snap := b.Meta.Snapshot()
	errs := make([]error, len(b.Shards))
	var wg sync.WaitGroup
	start := time.Now()
	for i, sh := range b.Shards {
		wg.Add(1)
		sh.Do(func(s *shard.Shard) {
			defer wg.Done()
			for _, name := range snap.Names() {
				t := snap.Topics[name]
				tc := config.NewTopic(b.Cfg, t.Configs)
				for _, p := range t.Partitions {
					if p.Shard != i {
						continue
					}
					if _, err := s.OpenPartition(shard.Key{Topic: t.Name, Partition: p.Index}, t.ID, tc); err != nil {
						errs[i] = errors.Join(errs[i], fmt.Errorf("open %s-%d: %w", t.Name, p.Index, err))
					}
				}
			}
			if err := s.MarkStarted(); err != nil {
				errs[i] = errors.Join(errs[i], err)
			}
		})
	}
	wg.Wait()
	b.Logger.Info("partitions opened", "topics", len(snap.Topics), "took", time.Since(start).Round(time.Microsecond))
	return errors.Join(errs...)
}

func (b *Broker) tick() {
	defer b.tickWG.Done()
	flush := time.NewTicker(b.Cfg.CheckpointInterval)
	retention := time.NewTicker(b.Cfg.RetentionCheckInterval)
	// Kafka checks its in-sync sets every replica.lag.time.max.ms / 2.
	isr := time.NewTicker(max(b.Cfg.ReplicaLagTimeMax/2, 50*time.Millisecond))
	clean := time.NewTicker(b.Cfg.CleanerBackoff)
	defer flush.Stop()
	defer retention.Stop()
	defer isr.Stop()
	defer clean.Stop()
	for {
		select {
		case now := <-isr.C:
			// With etcd deciding failover, the failover loop checks (more
			// often) and records the result there.
			if !b.IsStandby() && !b.Cfg.Failover {
				b.CheckFollowers(now)
			}
		case now := <-flush.C:
			for _, sh := range b.Shards {
				sh.Tick(now, false, true)
			}
		case now := <-retention.C:
			for _, sh := range b.Shards {
				sh.Tick(now, true, false)
			}
		case <-clean.C:
			for _, sh := range b.Shards {
				sh.PlanCleaning()
			}
		case <-b.stopTick:
			return
		}
	}
}

// Close flushes and checkpoints every partition and stops the shards.
func (b *Broker) Close() error {
	b.closeMu.Lock()
	closers := b.closers
	b.closers = nil
	b.closeMu.Unlock()
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i]()
	}
	close(b.stopTick)
	b.tickWG.Wait()
	return b.stopShards()
}

func (b *Broker) stopShards() error {
	if b.Cleaner != nil {
		b.Cleaner.Stop() // first: a job it runs would wait for its shard
	}
	var errs []error
	for _, sh := range b.Shards {
		if err := sh.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ShardOf returns the shard that owns a partition.
func (b *Broker) ShardOf(t *meta.Topic, partition int32) *shard.Shard {
	return b.Shards[t.Partitions[partition].Shard]
}

// TopicConfig is a topic's effective configuration.
func (b *Broker) TopicConfig(t *meta.Topic) config.Topic { return config.NewTopic(b.Cfg, t.Configs) }
