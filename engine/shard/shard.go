// Package shard is sluice's thread-per-core executor. A shard is one
// goroutine locked to its OS thread (optionally pinned to a CPU) that
// exclusively owns a set of partitions and its own io_uring ring. Nothing else
// touches a partition's state, so the data path takes no locks: other
// goroutines hand the shard work through its bounded inbox (Do) and get
// answers back through callbacks run on the shard thread.
//
// One loop turn drains everything queued, so appends from many connections to
// one partition become one fdatasync (group commit) per turn; the shard spins
// briefly before sleeping in io_uring_enter, woken by a doorbell eventfd read
// kept armed in its ring.
package shard

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sluice-broker/sluice/engine/config"
	"github.com/sluice-broker/sluice/engine/log"
	"github.com/sluice-broker/sluice/engine/metrics"
	"github.com/sluice-broker/sluice/engine/storage"
	"github.com/sluice-broker/sluice/engine/uring"
)

// Key names a partition.
type Key struct {
	Topic     string
	Partition int32
}

// Dir is the partition's directory name, as Kafka names it.
func (k Key) Dir() string { return fmt.Sprintf("%s-%d", k.Topic, k.Partition) }

// Config configures one shard.
type Config struct {
	ID            int
	DataDir       string
	FS            storage.FS
	PinCPU        int  // CPU to pin the shard thread to; -1 leaves placement to the kernel
	URing         bool // use io_uring; false runs on plain syscalls
	InboxCapacity int
	Logger        *slog.Logger
	Metrics       *metrics.Metrics // nil: a private, unexported set
	// Checkpoints is what the previous run recorded, by partition directory.
	Checkpoints map[string]log.Checkpoint
	// Direct selects direct mode (O_DIRECT appends from a tail cache of
	// TailCacheBytes); false is page-cache mode.
	Direct         bool
	TailCacheBytes int64
	// DsyncWrites makes direct writes that acks=all appends wait on
	// RWF_DSYNC writes instead of writes followed by a datasync.
	DsyncWrites bool
	// PreZero: pre-zero segment space ahead of the direct writer.
	PreZero bool
	// Faults, for tests: fail chosen datasyncs, writes and reads where the
	// shard hands them to its backend (backend_faulty.go). Nil in
	// production.
	Faults *storage.Injector
	// ReplicaLagMax is replica.lag.time.max.ms: how long the standby may
	// go without catching up before it leaves the in-sync set (default
	// 30 s, Kafka's).
	ReplicaLagMax time.Duration
	// Standby starts the shard as a standby's; Epoch is the node's leader
	// epoch (a primary begins it in every partition it opens).
	Standby bool
	Epoch   int32
	// AloneNeedsLicense: with etcd deciding failover, acks=all is answered
	// without an out-of-sync standby only after SetAloneOK(true).
	AloneNeedsLicense bool
	// Cleaner compacts the shard's compacted topics (nil: none do).
	Cleaner *Cleaner
}

// spinBeforeSleep is how long an idle shard keeps polling its inbox and
// completion queue before it sleeps; waking a sleeping thread costs tens of
// microseconds on this machine class.
const spinBeforeSleep = 20 * time.Microsecond

// Shard is one thread-per-core executor.
type Shard struct {
	cfg      Config
	in       *inbox
	be       backend
	sleeping atomic.Bool

	parts   map[Key]*Partition
	syncs   map[uint64]*syncJob
	writes  map[uint64]writeRef // direct writes in flight, by tag
	iov     [][]byte            // scratch: the pieces of one vectored write
	toWrite []*Partition
	tail    *log.TailCache
	// keyScratch: decompressed records of a compacted topic's batch whose
	// keys produce checks.
	keyScratch []byte
	tailSlab   *uring.Slab
	// Cold reads (coldread.go): the registered read slots, free ones,
	// reads in flight by tag, reads waiting for a slot or ring space,
	// finished ones whose continuations have yet to run, and spare
	// prefetch buffers.
	readSlab   *uring.Slab
	freeSlots  []int
	reads      map[uint64]*readJob
	readQueue  []*readJob
	readsReady []*readJob
	pfFree     [][]byte
	cold       ColdStats
	// Index loads under way on other goroutines, by segment, with the
	// requests waiting for them; indexSlots bounds how many run at once.
	indexWaits map[*log.SegmentRef][]indexWaiter
	indexSlots chan struct{}
	// direct write pieces submitted, and how many were RWF_DSYNC
	directWrites, dsyncWrites uint64
	writePieces               uint64
	nextTag                   uint64
	comps                     []completion
	toSync                    []*Partition
	checkpoint                bool // write the checkpoint file once in-flight syncs finish
	stopping                  bool
	stopped                   chan error
	syncRounds                atomic.Int64 // datasync rounds started (one covers many appends)
	// refusing names the partitions that refuse writes and why, for
	// /readyz and the metrics; written on the shard thread.
	refusingMu sync.Mutex
	refusing   map[Key]Refusal
	// standby: this node follows a primary (replica.go); isr: which
	// partitions have the standby in sync, for other goroutines.
	standby     bool
	epoch       int32 // stamped into every batch appended as primary
	fenced      bool  // a hand-over is under way: refuse produce
	aloneOK     bool  // see Partition.aloneOK
	isr         isrTable
	busyNanos   atomic.Int64
	wakeups     atomic.Int64
	partitionsN atomic.Int64
}

// Start launches the shard's thread and returns once its ring is set up.
func Start(cfg Config) (*Shard, error) {
	if cfg.InboxCapacity <= 0 {
		cfg.InboxCapacity = 4096
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New()
	}
	s := &Shard{
		cfg:     cfg,
		in:      newInbox(cfg.InboxCapacity),
		parts:   map[Key]*Partition{},
		syncs:   map[uint64]*syncJob{},
		writes:  map[uint64]writeRef{},
		stopped: make(chan error, 1),
		standby: cfg.Standby,
		epoch:   cfg.Epoch,
		aloneOK: !cfg.AloneNeedsLicense,
	}
	ready := make(chan error, 1)
	go s.run(ready)
	if err := <-ready; err != nil {
		return nil, err
	}
	return s, nil
}

// ID is the shard's index.
func (s *Shard) ID() int { return s.cfg.ID }

// Backend names how the shard does its I/O ("io_uring" or "plain syscalls").
func (s *Shard) Backend() string { return s.be.name() }

// Do queues op to run on the shard thread. It blocks while the inbox is full.
func (s *Shard) Do(op Op) {
	s.in.push(op)
	if s.sleeping.Load() {
		s.be.wake()
	}
}

// Call runs fn on the shard thread and waits for it.
func (s *Shard) Call(fn func(s *Shard)) {
	done := make(chan struct{})
	s.Do(func(s *Shard) { fn(s); close(done) })
	<-done
}

func (s *Shard) run(ready chan<- error) {
	runtime.LockOSThread() // never unlocked: the ring belongs to this thread
	// Name the thread so top -H, perf and /proc show which one is a shard.
	name, _ := unix.BytePtrFromString(fmt.Sprintf("shard-%d", s.cfg.ID))
	unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(name)), 0, 0, 0)
	if s.cfg.PinCPU >= 0 {
		var set unix.CPUSet
		set.Set(s.cfg.PinCPU)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			ready <- fmt.Errorf("shard %d: pin to CPU %d: %w", s.cfg.ID, s.cfg.PinCPU, err)
			return
		}
	}
	if s.cfg.URing {
		be, err := newURingBackend(256)
		if err != nil {
			ready <- fmt.Errorf("shard %d: io_uring: %w", s.cfg.ID, err)
			return
		}
		s.be = be
	} else {
		s.be = newPlainBackend()
	}
	if s.cfg.Faults != nil {
		s.be = newFaultyBackend(s.be, s.cfg.Faults)
	}
	if s.cfg.Direct {
		if err := s.setUpTail(); err != nil {
			s.be.close()
			ready <- fmt.Errorf("shard %d: tail cache: %w", s.cfg.ID, err)
			return
		}
	}
	if err := s.setUpReads(); err != nil {
		s.be.close()
		if s.tailSlab != nil {
			s.tailSlab.Close()
		}
		ready <- fmt.Errorf("shard %d: read slots: %w", s.cfg.ID, err)
		return
	}
	ready <- nil
	s.loop()
}

func (s *Shard) loop() {
	idleSince := time.Time{}
	for {
		start := time.Now()
		ops := s.in.take()
		for _, op := range ops {
			op(s)
		}
		s.in.release(ops)
		s.submitWrites()
		s.submitSyncs()
		s.submitReads()
		s.comps = s.be.poll(s.comps[:0])
		s.complete(s.comps)
		s.finishReads()
		worked := len(ops) > 0 || len(s.comps) > 0
		if s.checkpoint && len(s.syncs) == 0 {
			s.checkpoint = false
			began := time.Now()
			s.writeCheckpoint(false)
			s.cfg.Metrics.CheckpointLatency.Observe(time.Since(began).Seconds())
		}
		if s.stopping && len(s.syncs) == 0 && len(s.writes) == 0 && len(s.toWrite) == 0 && s.in.empty() &&
			len(s.reads) == 0 && len(s.readQueue) == 0 && len(s.indexWaits) == 0 {
			s.stopped <- s.shutdown()
			return
		}
		if worked {
			s.busyNanos.Add(int64(time.Since(start)))
			idleSince = time.Time{}
			continue
		}
		if idleSince.IsZero() {
			idleSince = time.Now()
		}
		if time.Since(idleSince) < spinBeforeSleep {
			continue
		}
		s.sleeping.Store(true)
		if s.in.empty() {
			s.wakeups.Add(1)
			s.comps = s.be.wait(s.comps[:0])
			s.sleeping.Store(false)
			s.complete(s.comps)
			s.finishReads()
		}
		s.sleeping.Store(false)
		idleSince = time.Time{}
	}
}

// Stop flushes every partition, writes a clean checkpoint, closes the logs
// and ends the shard thread.
func (s *Shard) Stop() error {
	s.Do(func(s *Shard) {
		s.stopping = true
		for _, p := range s.parts {
			s.wantWrite(p)
			s.wantSync(p)
		}
	})
	return <-s.stopped
}

func (s *Shard) shutdown() error {
	var errs []error
	keys := s.sortedKeys()
	for _, k := range keys {
		p := s.parts[k]
		if err := p.Log.Close(); err != nil && p.Log.Err() == nil {
			// A failed log's error was reported when it failed, and the
			// checkpoint below returns it again.
			errs = append(errs, fmt.Errorf("%s: %w", k.Dir(), err))
		}
		p.failWaiters(errShuttingDown)
	}
	if err := s.writeCheckpointEntries(true); err != nil {
		errs = append(errs, err)
	}
	s.be.close()
	if s.tailSlab != nil {
		s.tailSlab.Close() // after the ring: nothing can write from it now
	}
	s.readSlab.Close()
	return errors.Join(errs...)
}

func (s *Shard) sortedKeys() []Key {
	keys := make([]Key, 0, len(s.parts))
	for k := range s.parts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Topic != keys[j].Topic {
			return keys[i].Topic < keys[j].Topic
		}
		return keys[i].Partition < keys[j].Partition
	})
	return keys
}

var errShuttingDown = errors.New("broker is shutting down")

// checkpointPath is where this shard records its partitions' recovery points.
func (s *Shard) checkpointPath() string {
	return filepath.Join(s.cfg.DataDir, fmt.Sprintf("shard-%d.checkpoint", s.cfg.ID))
}

// writeCheckpoint records every partition's recovery point, so a restart
// after a crash scans only what lies past it.
func (s *Shard) writeCheckpoint(clean bool) {
	if err := s.writeCheckpointEntries(clean); err != nil {
		s.cfg.Logger.Error("checkpoint failed", "shard", s.cfg.ID, "err", err)
	}
}

// writeCheckpointEntries records every partition's checkpoint in one
// atomically replaced file. A failed partition does not hold the others
// back: its entry is the one its log had when it failed, never clean, so
// the next start scans it from there; its failure was reported when it
// happened, and is returned here only at shutdown.
func (s *Shard) writeCheckpointEntries(clean bool) error {
	entries := make(map[string]log.Checkpoint, len(s.parts))
	var errs []error
	skipped, skipErr := 0, error(nil)
	defer func() {
		if skipped > 0 && !clean {
			s.cfg.Logger.Warn("checkpoint kept the last recovery points of partitions it had no room or descriptors to checkpoint", "shard", s.cfg.ID, "partitions", skipped, "err", skipErr)
		}
	}()
	for k, p := range s.parts {
		// After Close, it reports the clean state without I/O; before, it
		// records what the datasync rounds Tick started have made
		// durable, and never waits for data appended since on this
		// thread.
		cp, err := p.Log.CheckpointSynced()
		if err != nil {
			// cp is the last checkpoint the log recorded: still true.
			switch {
			case p.Log.Err() != nil:
				s.reportFailure(p, "checkpoint")
			case errors.Is(err, log.ErrDiskFull), errors.Is(err, log.ErrNoDescriptors):
				skipped++
				skipErr = err
			case !errors.Is(err, log.ErrClosed):
				return fmt.Errorf("%s: %w", k.Dir(), err) // a bug
			}
			if clean {
				errs = append(errs, fmt.Errorf("%s: %w", k.Dir(), err))
			}
		} else if cp.Clean != clean {
			return fmt.Errorf("%s: checkpoint clean=%v, want %v", k.Dir(), cp.Clean, clean)
		}
		entries[k.Dir()] = cp
	}
	if err := log.WriteCheckpointFile(s.cfg.FS, s.checkpointPath(), entries); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Tick runs the shard's periodic work: retention, and a flush of every
// partition followed by a checkpoint so crash recovery stays short.
func (s *Shard) Tick(now time.Time, retention, flush bool) {
	s.Do(func(s *Shard) {
		if retention {
			for _, k := range s.sortedKeys() {
				p := s.parts[k]
				s.whenSwapIdle(p, func() { s.whenSyncIdle(p, func() { s.enforceRetention(p, now, nil) }) })
			}
		}
		if flush {
			s.recheckDiskFull()
			for _, p := range s.parts {
				// The rounds started here will cover the captured
				// snapshot, so the checkpoint after them can write one
				// that never runs ahead of the recovery point.
				p.Log.CaptureSnapshot()
				if p.Log.SyncedOffset() < p.Log.LogEndOffset() {
					s.wantSync(p)
				}
			}
			s.checkpoint = true
		}
	})
}

// reportFailure answers p's waiting appends with its log's error and, the
// first time, logs which partition refuses writes and why (one line per
// partition, however many requests it refuses afterwards).
func (s *Shard) reportFailure(p *Partition, during string) {
	err := p.Log.Err()
	// Recorded before the answers go out: a client told KAFKA_STORAGE_ERROR
	// finds the partition reported (unless it was deleted while its last
	// I/O was in flight: then nothing refuses).
	if !p.failureReported && s.parts[p.Key] == p {
		s.cfg.Logger.Error("partition refuses writes until the broker restarts", "partition", p.Key.Dir(), "during", during, "err", err)
		s.setRefusing(p.Key, Refusal{Reason: RefusalStorageError, Detail: fmt.Sprintf("%s failed: %v", during, err)})
	}
	p.failureReported = true
	p.failWaiters(err)
}

// reportDiskFull records that p's append found no space: one log line
// when it starts refusing, a refusal for /readyz and the metrics.
func (s *Shard) reportDiskFull(p *Partition, err error) {
	if p.diskFull || p.failureReported || s.parts[p.Key] != p {
		return
	}
	p.diskFull = true
	s.cfg.Logger.Error("partition refuses writes: the disk is full; it takes writes again when space returns", "partition", p.Key.Dir(), "err", err)
	s.setRefusing(p.Key, Refusal{Reason: RefusalDiskFull, Detail: err.Error()})
}

// spaceToResume is how much free space the flush tick must find to end
// disk-full refusals of partitions no append has tried since: two of
// direct mode's allocations ahead.
const spaceToResume = 16 << 20

// recheckDiskFull ends the disk-full refusals when the data directory's
// file system has space again, so that /readyz does not wait for an
// append to a partition nobody writes to any more. An append that still
// finds no room refuses again.
func (s *Shard) recheckDiskFull() {
	var st unix.Statfs_t
	for _, p := range s.parts {
		if !p.diskFull {
			continue
		}
		if st.Bsize == 0 {
			if err := unix.Statfs(s.cfg.DataDir, &st); err != nil {
				return
			}
		}
		if st.Bavail*uint64(st.Bsize) < spaceToResume {
			return
		}
		s.reportSpaceReturned(p)
	}
}

// reportSpaceReturned ends p's disk-full refusal.
func (s *Shard) reportSpaceReturned(p *Partition) {
	p.diskFull = false
	if p.failureReported {
		return
	}
	s.cfg.Logger.Info("partition takes writes again: space returned", "partition", p.Key.Dir())
	s.setRefusing(p.Key, Refusal{})
}

// Refusal says why a partition refuses writes.
type Refusal struct {
	Reason string // RefusalStorageError, ...: a metric label
	Detail string // for people: what failed, with the error
}

// Why a partition refuses writes.
const (
	// RefusalStorageError: a write or datasync failed; the log is failed
	// until the broker restarts and recovers it.
	RefusalStorageError = "storage_error"
	// RefusalDiskFull: the last append found no space on the device;
	// the partition takes writes again as soon as one fits.
	RefusalDiskFull = "disk_full"
)

// setRefusing records (why.Reason != "") or clears why k refuses writes.
func (s *Shard) setRefusing(k Key, why Refusal) {
	s.refusingMu.Lock()
	defer s.refusingMu.Unlock()
	if why.Reason == "" {
		delete(s.refusing, k)
		return
	}
	if s.refusing == nil {
		s.refusing = map[Key]Refusal{}
	}
	s.refusing[k] = why
}

// RefusingWrites returns the partitions that refuse writes, with why;
// callable from any goroutine.
func (s *Shard) RefusingWrites() map[Key]Refusal {
	s.refusingMu.Lock()
	defer s.refusingMu.Unlock()
	out := make(map[Key]Refusal, len(s.refusing))
	for k, v := range s.refusing {
		out[k] = v
	}
	return out
}

// enforceRetention applies p's retention. The oldest segment's time index
// may not be loaded yet after a restart (or need a rebuild): that load runs
// beside the shard, like a fetch's, and retention runs again after it. A
// load that failed makes the next attempt read normally and report the
// error.
func (s *Shard) enforceRetention(p *Partition, now time.Time, a *coldRetry) {
	if s.parts[p.Key] != p {
		return // deleted meanwhile
	}
	var n int
	var err error
	wb := s.noWait(p, a, func() { n, err = p.Log.EnforceRetention(now) })
	if wb != nil {
		if a == nil {
			a = &coldRetry{}
		}
		if s.fetchFor(p, a, wb, func() { s.whenSyncIdle(p, func() { s.enforceRetention(p, now, a) }) }) {
			return
		}
		n, err = p.Log.EnforceRetention(now)
	}
	a.end(s)
	if err != nil {
		if p.Log.Err() == nil { // a failed log refuses retention too: reported already
			s.cfg.Logger.Error("retention failed", "partition", p.Key.Dir(), "err", err)
		}
	} else if n > 0 {
		s.cfg.Logger.Debug("retention deleted segments", "partition", p.Key.Dir(), "segments", n)
	}
}

// Stats is a snapshot of the shard's counters for metrics.
type Stats struct {
	InboxDepth int64
	BusyNanos  int64
	Wakeups    int64
	Partitions int64
	SyncRounds int64
	// Submitted and Completed count io_uring submissions and completions
	// (datasyncs on the plain backend); filled only by Snapshot, on the
	// shard thread.
	Submitted, Completed uint64
	// Tail describes the direct mode's tail cache (nil in page-cache
	// mode); filled only by Snapshot.
	Tail *TailStats
	// Cold counts reads that would have blocked the shard; filled only by
	// Snapshot.
	Cold ColdStats
}

// TailStats are a shard's tail cache and direct write counters.
type TailStats struct {
	Bytes, FreeBytes                 int64
	Hits, Misses, Evictions, Reloads uint64
	Restores                         uint64
	Writes, DsyncWrites              uint64 // write SQEs submitted
	WritePieces                      uint64 // the log's write pieces they carried
}

// PartitionStats describes one partition for metrics.
type PartitionStats struct {
	Key                                         Key
	Segments                                    int
	SizeBytes                                   int64
	LogStartOffset, HighWatermark, LogEndOffset int64
	// Compacted: cleanup.policy holds compact; then DirtyRatio is the
	// share of the cleanable bytes not yet cleaned.
	Compacted  bool
	DirtyRatio float64
}

// Snapshot reads the shard's counters and every partition's state on the
// shard thread.
func (s *Shard) Snapshot() (Stats, []PartitionStats) {
	var st Stats
	var parts []PartitionStats
	depth := s.in.depth.Load() // before our own op joins the queue
	s.Call(func(s *Shard) {
		st = s.Stats()
		st.InboxDepth = depth
		st.Submitted, st.Completed = s.be.stats()
		st.Cold = s.cold
		if c := s.tail; c != nil {
			st.Tail = &TailStats{Bytes: c.Bytes(), FreeBytes: c.Free(), Hits: c.Hits, Misses: c.Misses, Evictions: c.Evictions, Reloads: c.Reloads, Restores: c.Restores,
				Writes: s.directWrites, DsyncWrites: s.dsyncWrites, WritePieces: s.writePieces}
		}
		for _, k := range s.sortedKeys() {
			p := s.parts[k]
			parts = append(parts, PartitionStats{
				Key: k, Segments: p.Log.SegmentCount(), SizeBytes: p.Log.Size(),
				LogStartOffset: int64(p.Log.LogStartOffset()), HighWatermark: int64(p.Log.HighWatermark()), LogEndOffset: int64(p.Log.LogEndOffset()),
				Compacted: p.Cfg.Compact(), DirtyRatio: p.Log.DirtyRatio(),
			})
		}
	})
	return st, parts
}

// Stats reads the shard's counters; callable from any goroutine.
func (s *Shard) Stats() Stats {
	return Stats{
		InboxDepth: s.in.depth.Load(),
		BusyNanos:  s.busyNanos.Load(),
		Wakeups:    s.wakeups.Load(),
		Partitions: s.partitionsN.Load(),
		SyncRounds: s.syncRounds.Load(),
	}
}

// URingAvailable reports whether io_uring can be used here, and why not.
func URingAvailable() error { return uring.Available() }

// logConfig maps a topic's configuration onto the log's.
func (s *Shard) logConfig(t config.Topic) log.Config {
	return log.Config{
		Tail:               s.tail,
		SegmentBytes:       t.SegmentBytes(),
		SegmentMs:          t.SegmentMs(),
		RetentionMs:        t.RetentionMs(),
		RetentionBytes:     t.RetentionBytes(),
		IndexIntervalBytes: t.IndexIntervalBytes(),
		Preallocate:        t.Preallocate(),
		Compact:            t.Compact(),
		NoDelete:           !t.Delete(),
		DeleteRetentionMs:  t.DeleteRetentionMs(),
		MinCleanableRatio:  t.MinCleanableRatio(),
		MinCompactionLag:   t.MinCompactionLag(),
		MaxCompactionLag:   t.MaxCompactionLag(),
	}
}
