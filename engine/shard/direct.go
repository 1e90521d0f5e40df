package shard

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/sluice-broker/sluice/engine/log"
	"github.com/sluice-broker/sluice/engine/uring"
)

// Direct mode: the shard's side of log/tail.go. Appends land in the tail
// cache; each loop turn submits one write per partition with new data (all
// appends of the turn ride on it), WRITE_FIXED from the registered cache on
// io_uring. Completions release acks 0/1 and, once a datasync covers them,
// acks=all.

// writeRef is a write in flight: one piece of the log's write, or
// several written as one vectored write.
type writeRef struct {
	p      *Partition
	seq    uint64
	n      int
	pieces int
}

// setUpTail maps the tail cache (setUpReads registers it with the read
// slots).
func (s *Shard) setUpTail() error {
	size := s.cfg.TailCacheBytes &^ (log.ChunkSize - 1)
	size = min(max(size, 2*log.ChunkSize), 1<<30) // one registered buffer holds at most 1 GiB
	slab, err := uring.NewSlab(int(size), 1)
	if err != nil {
		return err
	}
	cache, err := log.NewTailCache(slab.Buf(0), true)
	if err != nil {
		slab.Close()
		return err
	}
	if !s.cfg.PreZero {
		cache.NoPreZero()
	}
	s.tail, s.tailSlab = cache, slab
	return nil
}

// wantWrite queues p's new data for a write on this loop turn.
func (s *Shard) wantWrite(p *Partition) {
	if !p.wqueued && p.Log.WritesPending() {
		p.wqueued = true
		s.toWrite = append(s.toWrite, p)
	}
}

// submitWrites hands the ring the writes of every partition that has new
// data. A partition whose next write must wait for one in flight (same
// block) leaves the list; that write's completion queues it again.
func (s *Shard) submitWrites() {
	keep := s.toWrite[:0]
	for _, p := range s.toWrite {
		if s.parts[p.Key] != p { // deleted (and perhaps created again)
			p.wqueued = false
			continue
		}
		if p.wqi == len(p.wq) {
			p.wq, p.wqi = p.Log.PendingWrites(p.wq[:0], s.dsyncWanted(p)), 0
			if len(p.wq) == 0 && p.Log.Err() != nil {
				s.reportFailure(p, "direct write") // PendingWrites failed the log
			}
		}
		for p.wqi < len(p.wq) {
			w := p.wq[p.wqi]
			k, n := s.vectorRun(p.wq[p.wqi:])
			s.nextTag++
			var ok bool
			if k == 1 {
				ok = s.be.write(w.File, w.Buf, w.Off, w.Dsync, s.nextTag)
			} else {
				s.iov = s.iov[:0]
				for _, v := range p.wq[p.wqi : p.wqi+k] {
					s.iov = append(s.iov, v.Buf)
				}
				ok = s.be.writev(w.File, s.iov, w.Off, w.Dsync, s.nextTag)
				clear(s.iov) // no reference to the cache past the call
			}
			if !ok {
				break
			}
			s.writes[s.nextTag] = writeRef{p: p, seq: w.Seq, n: n, pieces: k}
			s.directWrites++
			s.writePieces += uint64(k)
			if w.Dsync {
				s.dsyncWrites++
			}
			p.writing++
			p.wqi += k
		}
		if p.wqi < len(p.wq) {
			keep = append(keep, p) // the ring is full: the rest next turn
			continue
		}
		p.wqueued = false
	}
	s.toWrite = keep
}

// vectorRun returns how many of the pieces at the front of wq go into one
// write, and their bytes: consecutive pieces of the same write of the
// log, up to what the backend's writev takes. One write instead of one per
// 64 KiB chunk means one RWF_DSYNC (a device cache flush where the device
// has no FUA) per write, not per chunk.
func (s *Shard) vectorRun(wq []log.DirectWrite) (k, n int) {
	w := wq[0]
	k, n = 1, len(w.Buf)
	for limit := s.be.vectorMax(); k < len(wq) && k < limit; k++ {
		v := wq[k]
		if v.Seq != w.Seq || v.File != w.File || v.Off != w.Off+int64(n) {
			break
		}
		n += len(v.Buf)
	}
	return k, n
}

// dsyncWanted: an acks=all append waits on p, so its next write should be
// durable by itself.
func (s *Shard) dsyncWanted(p *Partition) bool {
	if !s.cfg.DsyncWrites {
		return false
	}
	for i := len(p.waiters) - 1; i >= 0; i-- {
		if p.waiters[i].durable {
			return true
		}
	}
	return false
}

// written handles a completed write piece.
func (s *Shard) written(ref writeRef, c completion) {
	p := ref.p
	p.writing--
	err := c.err
	if err == nil && c.n != ref.n {
		err = fmt.Errorf("direct write of %d bytes wrote %d: %w", ref.n, c.n, io.ErrShortWrite)
	}
	p.Log.WritesDone(ref.seq, ref.pieces, err) // latches err: the log fails
	if err != nil {
		s.reportFailure(p, "direct write")
	} else {
		s.release(p)
		if s.needSync(p) {
			s.wantSync(p)
		}
		s.wantWrite(p)
	}
	if p.writing == 0 {
		s.runAfterWrites(p)
	}
}

// whenWritesIdle runs fn once no write of p is in flight.
func (s *Shard) whenWritesIdle(p *Partition, fn func()) { p.afterWrites.when(p.writesIdle(), fn) }

func (s *Shard) runAfterWrites(p *Partition) { p.afterWrites.run(p.writesIdle) }

// append appends set to p's log. In direct mode an append can find the
// cache full, or need the writer idle before a roll; the shard then runs
// its I/O until that changes (backpressure: the shard is bound by the
// disk) and tries again.
func (s *Shard) append(p *Partition, set []byte, now time.Time, checkCRC bool) (log.AppendResult, error) {
	appendFn := p.Log.Append
	if checkCRC {
		appendFn = p.Log.AppendCheckingCRC
	}
	return s.appendWith(p, set, now, appendFn)
}

// appendWith is append through one of the log's append methods.
func (s *Shard) appendWith(p *Partition, set []byte, now time.Time, appendFn func([]byte, time.Time) (log.AppendResult, error)) (log.AppendResult, error) {
	for {
		res, err := appendFn(set, now)
		switch {
		case errors.Is(err, log.ErrTailBusy):
			if !s.drain(func() bool { return p.Log.WritesIdle() }) {
				return res, err
			}
		case errors.Is(err, log.ErrTailFull):
			if !s.drain(nil) {
				return res, err
			}
		default:
			return res, err
		}
	}
}

// drain submits pending writes and processes completions until done
// reports true (nil: after one round of completions). It returns false when
// nothing is in flight that could change the answer.
func (s *Shard) drain(done func() bool) bool {
	for {
		if done != nil && done() {
			return true
		}
		// Every partition with unsubmitted data is in toWrite already: an
		// append queues it, and a write completion queues it again when
		// its next write had to wait.
		s.submitWrites()
		if len(s.writes) == 0 && len(s.syncs) == 0 {
			// Nothing in flight can free a chunk or end a write (a full
			// ring frees up as syncs complete, so those count too).
			return done != nil && done()
		}
		s.comps = s.be.wait(s.comps[:0])
		s.complete(s.comps)
		if done == nil {
			return true
		}
	}
}
