package shard

import (
	"fmt"
	"io"

	"github.com/sluice-broker/sluice/engine/log"
	"github.com/sluice-broker/sluice/engine/storage"
	"github.com/sluice-broker/sluice/engine/uring"
)

// Cold reads: the shard's side of log/nowait.go. A fetch or ListOffsets
// runs its log reads in no-wait mode; when one would wait for the device,
// the shard reads the region it names with READ_FIXED into one of its
// registered read slots, copies it out, and runs the request again with
// the region in hand, while it goes on serving everything else. The bytes
// of a fetch still go to the socket with sendfile from the connection's
// goroutine; only what the shard itself parses passes through the slots.

const (
	// readSlots is how many cold reads a shard has in flight at most, each
	// into its own log.PrefetchSize slot of registered memory.
	readSlots = 16
	// maxColdRounds bounds the fetches one request may wait for; a request
	// needing more (a header walk over many large batches) is finished
	// with ordinary reads, so every request ends.
	maxColdRounds = 8
)

// ColdStats count a shard's cold reads.
type ColdStats struct {
	Reads     uint64 // regions read asynchronously
	Bytes     uint64 // bytes they read
	Fallbacks uint64 // requests finished with blocking reads (maxColdRounds, or a failed read)
	Errors    uint64 // asynchronous reads that failed
	// IndexLoads counts old segments whose indexes were loaded beside the
	// shard; IndexRebuilds those whose files failed their checks.
	IndexLoads, IndexRebuilds uint64
}

// readJob reads n bytes of file at off into dst, piece by piece through
// one slot.
type readJob struct {
	file storage.File
	off  int64
	n    int
	dst  []byte // nil until the job has a slot, for a prefetch buffer
	done int
	slot int // -1 until it has one
	err  error
	then func(dst []byte, err error)
}

// setUpReads maps the read slots and registers them, with the tail cache
// in direct mode, as the ring's fixed buffers. A ring that refuses the
// registration (RLIMIT_MEMLOCK for an unprivileged user) reads and writes
// the same memory with plain READ and WRITE.
func (s *Shard) setUpReads() error {
	slab, err := uring.NewSlab(readSlots*log.PrefetchSize, 1)
	if err != nil {
		return err
	}
	s.readSlab = slab
	for i := readSlots - 1; i >= 0; i-- {
		s.freeSlots = append(s.freeSlots, i)
	}
	s.reads = map[uint64]*readJob{}
	be := s.be
	if fb, ok := be.(*faultyBackend); ok {
		be = fb.backend
	}
	if ub, ok := be.(*uringBackend); ok {
		if err := ub.registerBuffers(s.tailSlab, slab); err != nil {
			s.cfg.Logger.Warn("buffers not registered with io_uring; using READ and WRITE instead of READ_FIXED and WRITE_FIXED", "shard", s.cfg.ID, "err", err)
		}
	}
	return nil
}

func (s *Shard) slotBuf(i int) []byte {
	b := s.readSlab.Buf(0)
	return b[i*log.PrefetchSize : (i+1)*log.PrefetchSize : (i+1)*log.PrefetchSize]
}

// readInto reads n bytes of f at off without blocking the shard, into dst
// or (dst nil, n at most log.PrefetchSize) into a prefetch buffer taken
// when the read gets its slot; then runs on the shard thread, from the
// loop, once it is done, with the bytes. The caller keeps f open until
// then.
func (s *Shard) readInto(f storage.File, off int64, n int, dst []byte, then func(dst []byte, err error)) {
	s.readQueue = append(s.readQueue, &readJob{file: f, off: off, n: n, dst: dst, slot: -1, then: then})
}

// submitReads gives queued reads a slot and hands them to the ring. A job
// already holding a slot (its next piece) goes whether or not those queued
// before it can get one.
func (s *Shard) submitReads() {
	keep := s.readQueue[:0]
	full := false
	for _, j := range s.readQueue {
		if full {
			keep = append(keep, j)
			continue
		}
		if j.slot < 0 {
			if len(s.freeSlots) == 0 {
				keep = append(keep, j)
				continue
			}
			j.slot = s.freeSlots[len(s.freeSlots)-1]
			s.freeSlots = s.freeSlots[:len(s.freeSlots)-1]
			if j.dst == nil {
				j.dst = s.prefetchBuf()[:j.n]
			}
		}
		n := min(j.n-j.done, log.PrefetchSize)
		s.nextTag++
		if !s.be.read(j.file, s.slotBuf(j.slot)[:n], j.off+int64(j.done), s.nextTag) {
			keep = append(keep, j) // the ring is full: the rest next turn
			full = true
			continue
		}
		s.reads[s.nextTag] = j
	}
	clear(s.readQueue[len(keep):])
	s.readQueue = keep
}

// readDone takes a read completion: the piece is copied out of its slot,
// and the job either goes on or is finished (by finishReads).
func (s *Shard) readDone(j *readJob, c completion) {
	switch {
	case c.err != nil:
		j.err = fmt.Errorf("read %s at %d: %w", j.file.Name(), j.off+int64(j.done), c.err)
	case c.n == 0:
		j.err = fmt.Errorf("read %s at %d: %w", j.file.Name(), j.off+int64(j.done), io.ErrUnexpectedEOF)
	default:
		j.done += copy(j.dst[j.done:], s.slotBuf(j.slot)[:c.n])
		s.cold.Bytes += uint64(c.n)
	}
	if j.err == nil && j.done < j.n {
		s.readQueue = append(s.readQueue, j) // the next piece, same slot
		return
	}
	s.freeSlots = append(s.freeSlots, j.slot)
	j.slot = -1
	s.readsReady = append(s.readsReady, j)
}

// finishReads runs the continuations of finished reads. It runs from the
// loop only, never inside drain: a continuation may read any partition's
// log, which must not happen in the middle of an append.
func (s *Shard) finishReads() {
	for len(s.readsReady) > 0 {
		ready := s.readsReady
		s.readsReady = nil
		for _, j := range ready {
			if j.err != nil {
				s.cold.Errors++
			}
			j.then(j.dst, j.err)
		}
	}
}

// coldRetry is a request waiting for regions its no-wait reads needed.
type coldRetry struct {
	pre    []log.Prefetched
	rounds int
	failed bool // a read failed: finish with ordinary reads
}

// noWait runs fn with p's log in no-wait mode over the regions a has
// fetched (a may be nil), and returns what would have blocked.
func (s *Shard) noWait(p *Partition, a *coldRetry, fn func()) *log.WouldBlock {
	var pre []log.Prefetched
	if a != nil {
		pre = a.pre
	}
	p.Log.BeginNoWait(pre)
	fn()
	return p.Log.EndNoWait()
}

// fetchFor reads the region wb names for the request a, then runs again.
// It returns false, changing nothing, when a has waited for enough
// regions: the caller then finishes the request with ordinary reads.
func (s *Shard) fetchFor(p *Partition, a *coldRetry, wb *log.WouldBlock, again func()) bool {
	if wb.Indexes != nil && !a.failed {
		// Not a region: a segment's indexes. Loading them is progress (a
		// request meets each segment once), so it counts no round.
		s.loadIndexes(p, a, wb, again)
		return true
	}
	if a.failed || a.rounds >= maxColdRounds {
		s.cold.Fallbacks++
		return false
	}
	a.rounds++
	s.cold.Reads++
	wb.Seg.Acquire()
	s.readInto(wb.File, wb.Off, wb.Len, nil, func(buf []byte, err error) {
		wb.Seg.Release()
		if err != nil {
			// Let the ordinary read meet the error and report it.
			s.cfg.Logger.Warn("cold read failed; retrying with a blocking read", "shard", s.cfg.ID, "err", err)
			s.putPrefetchBuf(buf)
			a.failed = true
		} else {
			a.pre = append(a.pre, wb.Done(buf))
		}
		again()
	})
	return true
}

func (s *Shard) prefetchBuf() []byte {
	if n := len(s.pfFree); n > 0 {
		b := s.pfFree[n-1]
		s.pfFree = s.pfFree[:n-1]
		return b[:cap(b)]
	}
	return make([]byte, log.PrefetchSize)
}

// putPrefetchBuf keeps b for reuse, up to one per slot.
func (s *Shard) putPrefetchBuf(b []byte) {
	if b != nil && len(s.pfFree) < readSlots {
		s.pfFree = append(s.pfFree, b[:0])
	}
}

// end gives a's buffers back; safe on nil.
func (a *coldRetry) end(s *Shard) {
	if a == nil {
		return
	}
	for _, pf := range a.pre {
		s.putPrefetchBuf(pf.Buf)
	}
	a.pre = nil
}

// indexWaiter is a request waiting for a segment's index load.
type indexWaiter struct {
	a     *coldRetry
	again func()
}

// indexLoadsAtOnce bounds the index loads a shard runs beside itself: each
// may read a whole segment.
const indexLoadsAtOnce = 2

// loadIndexes loads the segment's indexes wb names on another goroutine
// (the first time a request needs an old segment after a restart, or a
// rebuild of damaged index files: either may read the disk for a while),
// installs them on the shard thread and runs every request that waited for
// them again. The segment stays pinned meanwhile.
func (s *Shard) loadIndexes(p *Partition, a *coldRetry, wb *log.WouldBlock, again func()) {
	w := indexWaiter{a: a, again: again}
	if waiting, ok := s.indexWaits[wb.Seg]; ok {
		s.indexWaits[wb.Seg] = append(waiting, w)
		return
	}
	if s.indexWaits == nil {
		s.indexWaits = map[*log.SegmentRef][]indexWaiter{}
		s.indexSlots = make(chan struct{}, indexLoadsAtOnce)
	}
	s.indexWaits[wb.Seg] = []indexWaiter{w}
	wb.Seg.Acquire()
	job, slots := wb.Indexes, s.indexSlots
	go func() {
		slots <- struct{}{}
		job.Run()
		<-slots
		s.Do(func(s *Shard) {
			wb.Seg.Release()
			waiting := s.indexWaits[wb.Seg]
			delete(s.indexWaits, wb.Seg)
			s.cold.IndexLoads++
			if job.Rebuilt {
				s.cold.IndexRebuilds++
				s.cfg.Logger.Warn("index files of a segment failed their checks; rebuilt from its batches", "partition", p.Key.Dir(), "segment", wb.File.Name())
			}
			if _, err := p.Log.InstallIndexes(job); err != nil {
				// The retry reads normally and answers the error.
				s.cfg.Logger.Error("loading a segment's indexes", "partition", p.Key.Dir(), "err", err)
				for _, w := range waiting {
					w.a.failed = true
				}
			}
			for _, w := range waiting {
				w.again()
			}
		})
	}()
}
