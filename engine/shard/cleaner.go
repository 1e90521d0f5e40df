package shard

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluice-broker/sluice/engine/log"
	"github.com/sluice-broker/sluice/engine/storage"
	"github.com/sluice-broker/sluice/engine/uring"
)

// Cleaner runs log compaction (engine/log/clean.go) for every shard of the
// broker, as Kafka's log cleaner thread does: one job at a time on its own
// OS thread, which runs at the lowest CPU priority (nice 19) and in the
// idle I/O class, so that the shard threads keep the CPU and the device;
// its reads and writes go through its own io_uring ring (plain syscalls
// where there is none), at most IOBytesPerSec of them. A shard plans a job
// on its thread (Shard.PlanCleaning), the cleaner runs it, the shard
// commits it, the cleaner installs the files, and the shard ends it.
type Cleaner struct {
	cfg CleanerConfig

	mu    sync.Mutex
	queue []*cleanReq
	wake  chan struct{}
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once

	stats CleanerStats
}

// CleanerConfig configures the cleaner.
type CleanerConfig struct {
	// IOBytesPerSec is log.cleaner.io.max.bytes.per.second (0: no limit),
	// bytes read plus bytes written.
	IOBytesPerSec float64
	// DedupeBytes is log.cleaner.dedupe.buffer.size: how much key map one
	// pass may build before it stops at a segment boundary.
	DedupeBytes int64
	URing       bool
	Logger      *slog.Logger
}

// CleanerStats are the cleaner's counters, for metrics.
type CleanerStats struct {
	Passes, Failures, Skipped atomic.Int64
	BytesRead, BytesWritten   atomic.Int64
	RecordsRemoved            atomic.Int64
	BusyNanos                 atomic.Int64
}

type cleanReq struct {
	s   *Shard
	p   *Partition
	job *log.CleanJob
}

// errCleanerStopped ends a job the broker's shutdown interrupted.
var errCleanerStopped = errors.New("cleaner stopped")

// StartCleaner starts the cleaner's thread.
func StartCleaner(cfg CleanerConfig) *Cleaner {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &Cleaner{cfg: cfg, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c
}

// Stats returns the cleaner's counters.
func (c *Cleaner) Stats() *CleanerStats { return &c.stats }

// Stop interrupts the job under way (its files are removed at the next
// open) and ends the thread. Queued jobs are dropped: their logs close
// with the shards.
func (c *Cleaner) Stop() {
	c.once.Do(func() { close(c.stop) })
	<-c.done
}

func (c *Cleaner) submit(r *cleanReq) {
	c.mu.Lock()
	c.queue = append(c.queue, r)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *Cleaner) next() *cleanReq {
	for {
		c.mu.Lock()
		if len(c.queue) > 0 {
			r := c.queue[0]
			c.queue = c.queue[1:]
			c.mu.Unlock()
			return r
		}
		c.mu.Unlock()
		select {
		case <-c.wake:
		case <-c.stop:
			return nil
		}
	}
}

func (c *Cleaner) run() {
	defer close(c.done)
	runtime.LockOSThread() // the ring and the priorities belong to this thread
	tid := unix.Gettid()
	if err := unix.Setpriority(unix.PRIO_PROCESS, tid, 19); err != nil {
		c.cfg.Logger.Warn("cleaner: could not lower its CPU priority", "err", err)
	}
	const ioprioWhoProcess, ioprioClassIdle = 1, 3
	if _, _, errno := unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, uintptr(tid), ioprioClassIdle<<13); errno != 0 {
		c.cfg.Logger.Warn("cleaner: could not move to the idle I/O class", "err", errno)
	}
	cio := &cleanerIO{limit: c.cfg.IOBytesPerSec, stop: c.stop, stats: &c.stats}
	if c.cfg.URing {
		if err := cio.setUp(); err != nil {
			c.cfg.Logger.Warn("cleaner: no io_uring ring; plain syscalls", "err", err)
		}
	}
	defer cio.close()
	for {
		r := c.next()
		if r == nil {
			return
		}
		c.clean(r, cio)
	}
}

// clean takes one job through its steps.
func (c *Cleaner) clean(r *cleanReq, cio *cleanerIO) {
	start := time.Now()
	defer func() { c.stats.BusyNanos.Add(int64(time.Since(start))) }()
	j := r.job
	if !j.Start() {
		return // its partition's deletion ended it while it was queued
	}
	j.Run(cio, time.Now())
	decided := make(chan cleanDecision, 1)
	r.s.Do(func(s *Shard) { decided <- s.commitClean(r.p, j) })
	var d cleanDecision
	select {
	case d = <-decided:
	case <-c.stop:
		return
	}
	ok := d.committed
	switch {
	case d.gone:
		// Deleted (or closed) meanwhile: nothing failed.
	case j.Stats.Skipped:
		c.stats.Skipped.Add(1)
	case errors.Is(j.Err, log.ErrCleanCanceled):
		// The partition is being deleted: nothing failed.
	case j.Err != nil:
		c.stats.Failures.Add(1)
		if !errors.Is(j.Err, errCleanerStopped) {
			c.cfg.Logger.Error("cleaning failed; the log is left as it was, and cleaned again in a while", "partition", r.p.Key.Dir(), "retry_in", cleanRetryAfter, "err", j.Err)
		}
	}
	if !ok {
		j.Discard()
		return
	}
	res := j.Install()
	finished := make(chan struct{})
	r.s.Do(func(s *Shard) { s.finishClean(r.p, j, res); close(finished) })
	select {
	case <-finished:
		j.ReleaseReplaced() // the last close of an unlinked file, here
	case <-c.stop:
		return
	}
	if errors.Is(res.Err, log.ErrCleanCanceled) {
		return
	}
	if res.Err != nil {
		c.stats.Failures.Add(1)
		if !res.PastCommit {
			c.cfg.Logger.Error("installing cleaned segments failed; the rest of the log is left as it was", "partition", r.p.Key.Dir(), "installed", res.Done, "err", res.Err)
		}
		return
	}
	c.stats.Passes.Add(1)
	c.stats.RecordsRemoved.Add(j.Stats.Removed)
	c.cfg.Logger.Debug("log cleaned", "partition", r.p.Key.Dir(), "segments_in", j.Stats.SegmentsIn, "segments_out", j.Stats.SegmentsOut,
		"read", j.Stats.BytesRead, "written", j.Stats.BytesWritten, "removed", j.Stats.Removed, "took", j.Stats.Duration.Round(time.Millisecond))
}

// PlanCleaning plans a compaction pass for every compacted partition that is
// due one and hands them to the cleaner (Kafka checks every
// log.cleaner.backoff.ms).
func (s *Shard) PlanCleaning() {
	c := s.cfg.Cleaner
	if c == nil {
		return
	}
	s.Do(func(s *Shard) {
		now := time.Now()
		for _, k := range s.sortedKeys() {
			p := s.parts[k]
			if now.Before(p.cleanRetryAt) {
				continue
			}
			if j := p.Log.PlanClean(c.cfg.DedupeBytes); j != nil {
				c.submit(&cleanReq{s: s, p: p, job: j})
			}
		}
	})
}

// cleanDecision is what the shard made of a job the cleaner ran.
type cleanDecision struct {
	committed bool // in place in memory: install its files
	gone      bool // the partition was deleted or closed meanwhile
}

// cleanRetryAfter is how long a partition whose cleaning failed waits
// before it is planned again (Kafka marks it uncleanable until a restart).
const cleanRetryAfter = 5 * time.Minute

// commitClean puts a job's segments in place, or ends it (on the shard
// thread).
func (s *Shard) commitClean(p *Partition, j *log.CleanJob) cleanDecision {
	gone := s.parts[p.Key] != p || p.Log.Err() != nil || errors.Is(j.Err, log.ErrCleanCanceled)
	if j.Err != nil && !gone {
		p.cleanRetryAt = time.Now().Add(cleanRetryAfter)
	}
	d := cleanDecision{committed: p.Log.CommitClean(j), gone: gone}
	s.runAfterClean(p)
	return d
}

// finishClean ends a committed job once its files are in place and runs
// what waited for it.
func (s *Shard) finishClean(p *Partition, j *log.CleanJob, res log.InstallResult) {
	p.Log.FinishClean(j, res)
	if res.Err != nil && !errors.Is(res.Err, log.ErrCleanCanceled) {
		if res.PastCommit {
			s.reportFailure(p, "installing cleaned segments")
		} else {
			p.cleanRetryAt = time.Now().Add(cleanRetryAfter)
		}
	}
	s.runAfterClean(p)
}

func (s *Shard) runAfterClean(p *Partition) {
	p.afterSwap.run(func() bool { return !p.Log.Swapping() })
	p.afterClean.run(func() bool { return !p.Log.Cleaning() })
}

// whenSwapIdle runs fn at once unless the cleaner is renaming p's files,
// else once it is done: truncating or resetting the log, and retention,
// wait.
func (s *Shard) whenSwapIdle(p *Partition, fn func()) {
	p.afterSwap.when(!p.Log.Swapping(), fn)
}

// whenCleanIdle runs fn once no cleaning job holds p (deleting the
// partition: a job still writes files in its directory until it ends).
func (s *Shard) whenCleanIdle(p *Partition, fn func()) {
	p.afterClean.when(!p.Log.Cleaning(), fn)
}

// cleanerIO is the cleaner thread's log.CleanIO: io_uring reads and writes
// through a bounce buffer of slab memory, rate limited, interrupted by Stop.
type cleanerIO struct {
	ring  *uring.Ring
	slab  *uring.Slab
	buf   []byte
	cqes  []uring.CQE
	limit float64 // bytes per second; 0: none
	// The limiter: bytes moved since since.
	since time.Time
	moved float64
	stop  <-chan struct{}
	stats *CleanerStats
}

const cleanerBufBytes = 1 << 20

func (c *cleanerIO) setUp() error {
	r, err := uring.New(uring.Params{Entries: 4})
	if err != nil {
		return err
	}
	slab, err := uring.NewSlab(cleanerBufBytes, 1)
	if err != nil {
		r.Close()
		return err
	}
	c.ring, c.slab, c.buf = r, slab, slab.Buf(0)
	return nil
}

func (c *cleanerIO) close() {
	if c.ring != nil {
		c.ring.Close()
		c.slab.Close()
	}
}

// throttle sleeps as long as moving n more bytes would take the cleaner
// past its rate, and fails once the cleaner is stopping.
func (c *cleanerIO) throttle(n int) error {
	select {
	case <-c.stop:
		return errCleanerStopped
	default:
	}
	if c.limit <= 0 {
		return nil
	}
	now := time.Now()
	if c.since.IsZero() || now.Sub(c.since) > time.Second {
		c.since, c.moved = now, 0 // no credit saved up beyond a second
	}
	c.moved += float64(n)
	if ahead := time.Duration(c.moved/c.limit*float64(time.Second)) - now.Sub(c.since); ahead > 0 {
		t := time.NewTimer(ahead)
		defer t.Stop()
		select {
		case <-t.C:
		case <-c.stop:
			return errCleanerStopped
		}
	}
	return nil
}

func (c *cleanerIO) ReadAt(f storage.File, p []byte, off int64) (int, error) {
	if err := c.throttle(len(p)); err != nil {
		return 0, err
	}
	c.stats.BytesRead.Add(int64(len(p)))
	if c.ring == nil || f.Fd() < 0 {
		return f.ReadAt(p, off)
	}
	n := 0
	for n < len(p) {
		k, err := c.do(func(tag uint64) bool {
			return c.ring.PrepRead(int32(f.Fd()), c.buf[:min(len(p)-n, len(c.buf))], uint64(off)+uint64(n), tag)
		}, true)
		if err != nil {
			return n, err
		}
		if k == 0 {
			return n, io.EOF
		}
		copy(p[n:], c.buf[:k])
		n += k
	}
	return n, nil
}

func (c *cleanerIO) WriteAt(f storage.File, p []byte, off int64) (int, error) {
	if err := c.throttle(len(p)); err != nil {
		return 0, err
	}
	c.stats.BytesWritten.Add(int64(len(p)))
	if c.ring == nil || f.Fd() < 0 {
		return f.WriteAt(p, off)
	}
	n := 0
	for n < len(p) {
		chunk := copy(c.buf, p[n:])
		k, err := c.do(func(tag uint64) bool {
			return c.ring.PrepWrite(int32(f.Fd()), c.buf[:chunk], uint64(off)+uint64(n), tag)
		}, true)
		if err != nil {
			return n, err
		}
		if k == 0 {
			return n, io.ErrShortWrite
		}
		n += k
	}
	return n, nil
}

func (c *cleanerIO) Datasync(f storage.File) error {
	if c.ring == nil || f.Fd() < 0 {
		return f.Datasync()
	}
	_, err := c.do(func(tag uint64) bool { return c.ring.PrepFsync(int32(f.Fd()), true, tag) }, false)
	return err
}

// do submits one operation and waits for its completion. Reads and
// writes go in the idle I/O class (fsync takes no priority: EINVAL).
func (c *cleanerIO) do(prep func(tag uint64) bool, idle bool) (int, error) {
	const tag = 1
	if !prep(tag) {
		return 0, fmt.Errorf("cleaner: submission queue full")
	}
	if idle {
		c.ring.IdleLast()
	}
	for {
		if _, err := c.ring.SubmitAndWait(1); err != nil {
			return 0, err
		}
		c.cqes = c.ring.Reap(c.cqes[:0])
		for _, e := range c.cqes {
			if e.UserData != tag {
				continue
			}
			if e.Res < 0 {
				return 0, syscall.Errno(-e.Res)
			}
			return int(e.Res), nil
		}
	}
}
