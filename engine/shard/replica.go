package shard

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sluice-broker/sluice/engine/log"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/records"
)

// Replication, both sides, for one partition.
//
// On the primary, the standby is a Kafka follower: each of its fetches says
// (by its fetch offset) what it has stored, and the shard keeps Kafka's
// in-sync rule. The standby is in sync while it has been caught up with the
// primary's log end within replica.lag.time.max.ms; it joins once its fetch
// offset reaches the high watermark. While it is in sync the high watermark
// waits for it (consumers never read what it lacks) and so do acks=all
// answers; out of sync, min.insync.replicas decides.
//
// On the standby, batches fetched from the primary are appended with their
// offsets and leader epochs untouched, and the high watermark never passes
// the primary's.

// follower is the primary's view of the standby in one partition.
type follower struct {
	seen bool // the standby fetched this partition since this node started
	// has: the standby stored every offset below it (its last fetch offset).
	has log.Offset
	// Kafka's lastCaughtUpTime rule: a fetch at or past the primary's end
	// catches up now; a fetch at or past the end the previous fetch saw
	// was caught up when that fetch came.
	caughtUp     time.Time
	lastFetch    time.Time
	lastFetchEnd log.Offset
	inSync       bool
	shrinks      int64
	expands      int64
}

// replicaPark is a replica's long-poll wait: woken once the replicable end
// passes after.
type replicaPark struct {
	after log.Offset
	ch    chan struct{}
}

// replicableEnd is how far the standby may read: what this node has
// written (the log end in page-cache mode; the end of completed O_DIRECT
// writes in direct mode), not merely copied into the tail cache.
func (p *Partition) replicableEnd() log.Offset {
	return min(p.Log.LogEndOffset(), p.Log.WrittenOffset())
}

// isrSize is how many replicas are in sync: this node, and the standby
// when it is.
func (p *Partition) isrSize() int {
	if p.follower.inSync {
		return 2
	}
	return 1
}

// standbyHas reports whether the standby holds everything below upTo, or
// need not: out of sync, the primary answers alone (once allowed to).
func (p *Partition) standbyHas(upTo log.Offset) bool {
	if !p.follower.inSync && p.aloneOK {
		return true
	}
	return p.follower.has >= upTo
}

// wakeReplicas wakes parked replica fetches the replicable end has passed.
func (p *Partition) wakeReplicas() {
	if len(p.replicaParked) == 0 {
		return
	}
	end := p.replicableEnd()
	kept := p.replicaParked[:0]
	for _, w := range p.replicaParked {
		if end > w.after || p.Log.Err() != nil {
			select {
			case w.ch <- struct{}{}:
			default:
			}
			continue
		}
		kept = append(kept, w)
	}
	clear(p.replicaParked[len(kept):])
	p.replicaParked = kept
}

// ReplicaReadAsync is the primary's answer to the standby's fetch of one
// partition: it records what the standby has stored (everything below
// offset), updates the in-sync state, releases the acknowledgements and
// the high watermark that waited for it, then reads from offset up to the
// replicable end (past the high watermark, as a Kafka leader serves its
// followers), at least one whole batch however large.
func (s *Shard) ReplicaReadAsync(k Key, offset int64, maxBytes int, w ReadWaiter) {
	p, ok := s.parts[k]
	if !ok {
		w.ReadDone(notLeaderRead)
		return
	}
	if s.standby {
		w.ReadDone(notLeaderRead)
		return
	}
	if off := log.Offset(offset); off <= p.Log.LogEndOffset() && offset >= int64(p.Log.LogStartOffset()) {
		s.followerFetched(p, off, time.Now())
	}
	s.readTryAs(k, offset, maxBytes, true, w, nil, readReplica)
}

// followerFetched applies one standby fetch at offset off to p's in-sync
// state.
func (s *Shard) followerFetched(p *Partition, off log.Offset, now time.Time) {
	f := &p.follower
	end := p.replicableEnd()
	switch {
	case off >= end:
		f.caughtUp = now
	case f.seen && off >= f.lastFetchEnd:
		f.caughtUp = f.lastFetch
	}
	if f.seen && off < f.has && f.inSync {
		// The standby lost what it had (a power cut, a wiped disk): it
		// is not in sync, whatever it was a moment ago.
		s.cfg.Logger.Warn("the standby's fetch offset went back: out of sync", "partition", p.Key.Dir(), "had", f.has, "fetches", off)
		f.inSync = false
		f.shrinks++
		s.publishInSync(p.Key, false)
	}
	f.seen = true
	f.lastFetch, f.lastFetchEnd = now, end
	f.has = off
	if !f.inSync && off >= p.Log.HighWatermark() {
		f.inSync = true
		f.expands++
		f.caughtUp = now // it holds everything acknowledged
		s.publishInSync(p.Key, true)
	}
	s.release(p)
}

// checkFollowers drops from the in-sync set every partition whose standby
// has not been caught up within lagMax (Kafka's ISR shrink), releasing
// what waited for it.
func (s *Shard) checkFollowers(now time.Time) {
	for _, p := range s.parts {
		if s.followerLagging(p, now) {
			s.shrink(p, now)
		}
	}
}

func (s *Shard) followerLagging(p *Partition, now time.Time) bool {
	return p.follower.inSync && now.Sub(p.follower.caughtUp) > s.lagMax()
}

func (s *Shard) shrink(p *Partition, now time.Time) {
	f := &p.follower
	f.inSync = false
	f.shrinks++
	s.publishInSync(p.Key, false)
	s.cfg.Logger.Info("standby out of sync", "partition", p.Key.Dir(), "standby_has", f.has, "log_end", p.Log.LogEndOffset(), "caught_up_ago", now.Sub(f.caughtUp).Round(time.Millisecond))
	s.release(p)
}

func (s *Shard) lagMax() time.Duration {
	if s.cfg.ReplicaLagMax > 0 {
		return s.cfg.ReplicaLagMax
	}
	return 30 * time.Second
}

// CheckFollowers runs the in-sync check on the shard thread and waits
// for it.
func (s *Shard) CheckFollowers(now time.Time) {
	s.Call(func(s *Shard) { s.checkFollowers(now) })
}

// ParkReplica is Park for a replica fetch: ch receives once the
// replicable end passes after.
func (s *Shard) ParkReplica(k Key, after int64, ch chan struct{}) {
	p, ok := s.parts[k]
	if !ok || int64(p.replicableEnd()) > after || p.Log.Err() != nil {
		select {
		case ch <- struct{}{}:
		default:
		}
		return
	}
	p.replicaParked = append(p.replicaParked, replicaPark{after: log.Offset(after), ch: ch})
}

// UnparkReplica removes a wait registered with ParkReplica.
func (s *Shard) UnparkReplica(k Key, ch chan struct{}) {
	p, ok := s.parts[k]
	if !ok {
		return
	}
	for i, w := range p.replicaParked {
		if w.ch == ch {
			p.replicaParked = append(p.replicaParked[:i], p.replicaParked[i+1:]...)
			return
		}
	}
}

// isrTable is the shard's in-sync set, readable from any goroutine
// (Metadata, metrics): written on the shard thread when a standby joins or
// leaves a partition's in-sync set, which is rare.
type isrTable struct {
	mu     sync.RWMutex
	inSync map[Key]bool
}

func (s *Shard) publishInSync(k Key, in bool) {
	s.isr.mu.Lock()
	defer s.isr.mu.Unlock()
	if s.isr.inSync == nil {
		s.isr.inSync = map[Key]bool{}
	}
	if in {
		s.isr.inSync[k] = true
	} else {
		delete(s.isr.inSync, k)
	}
}

// StandbyInSync reports whether the standby is in k's in-sync set;
// callable from any goroutine.
func (s *Shard) StandbyInSync(k Key) bool {
	s.isr.mu.RLock()
	defer s.isr.mu.RUnlock()
	return s.isr.inSync[k]
}

// InSyncCount is how many of the shard's partitions have the standby in
// sync; callable from any goroutine.
func (s *Shard) InSyncCount() int {
	s.isr.mu.RLock()
	defer s.isr.mu.RUnlock()
	return len(s.isr.inSync)
}

// ReplicaStats is one partition's replication state, for metrics and
// status.
type ReplicaStats struct {
	Key    Key
	Seen   bool
	InSync bool
	// LagRecords: offsets the peer lacks (primary: its log end minus what
	// the standby has; standby: the primary's high watermark minus its
	// own log end). LagSeconds: since the standby was last caught up.
	LagRecords       int64
	LagSeconds       float64
	Shrinks, Expands int64
	LogEndOffset     int64
	HighWatermark    int64
}

// ReplicaSnapshot reads every partition's replication state on the shard
// thread.
func (s *Shard) ReplicaSnapshot(now time.Time) []ReplicaStats {
	var out []ReplicaStats
	s.Call(func(s *Shard) {
		for _, k := range s.sortedKeys() {
			p := s.parts[k]
			st := ReplicaStats{Key: k, LogEndOffset: int64(p.Log.LogEndOffset()), HighWatermark: int64(p.Log.HighWatermark())}
			if s.standby {
				st.Seen, st.InSync = true, true
				st.LagRecords = max(0, int64(p.leaderHW)-int64(p.Log.LogEndOffset()))
				if st.LagRecords > 0 && !p.leaderCaughtUp.IsZero() {
					st.LagSeconds = now.Sub(p.leaderCaughtUp).Seconds()
				}
			} else {
				f := &p.follower
				st.Seen, st.InSync, st.Shrinks, st.Expands = f.seen, f.inSync, f.shrinks, f.expands
				st.LagRecords = int64(p.Log.LogEndOffset()) - int64(f.has)
				if st.LagRecords > 0 && f.seen {
					st.LagSeconds = now.Sub(f.caughtUp).Seconds()
				}
			}
			out = append(out, st)
		}
	})
	return out
}

// SetRole makes the shard a standby's (its partitions follow a primary,
// refuse produce, and keep their high watermark at or below the primary's)
// or a primary's at epoch, which each partition records durably before its
// first write under it (Produce). Every partition starts with its standby
// out of sync.
func (s *Shard) SetRole(standby bool, epoch int32, fenced bool) {
	s.Call(func(s *Shard) {
		demoted := standby && !s.standby
		s.standby, s.epoch, s.fenced = standby, epoch, fenced
		for _, k := range s.sortedKeys() {
			p := s.parts[k]
			if demoted {
				// What waits for a datasync or the standby is not
				// acknowledged by a node that is no longer primary: Kafka
				// answers NOT_LEADER_OR_FOLLOWER and the client retries
				// on the new primary (its idempotence dedupes).
				for _, w := range p.waiters {
					w.reply(produceFailed(kerr.NotLeaderOrFollower, "this node stopped being the primary"))
				}
				p.waiters = nil
				p.leaderHW = p.Log.HighWatermark()
				p.Log.DropUnusedEpochs()
			}
			p.standby = standby
			p.follower = follower{}
			s.publishInSync(p.Key, false)
			s.release(p)
		}
	})
}

// AdmitStandby puts the standby in the in-sync set of partition k, just
// created on this primary (see Broker.openTopicPartitions); the shard
// thread calls it.
func (s *Shard) AdmitStandby(k Key) {
	p, ok := s.parts[k]
	if !ok || s.standby {
		return
	}
	p.follower = follower{inSync: true, caughtUp: time.Now()}
	s.publishInSync(k, true)
}

// SetAloneOK allows (or forbids) answering acks=all without an
// out-of-sync standby; see Config.AloneNeedsLicense.
func (s *Shard) SetAloneOK(ok bool) {
	s.Call(func(s *Shard) {
		s.aloneOK = ok
		for _, p := range s.parts {
			p.aloneOK = ok
			s.release(p)
		}
	})
}

// ResetFollowers forgets the standby's state in every partition (another
// node registered as the standby).
func (s *Shard) ResetFollowers() {
	s.Call(func(s *Shard) {
		for _, p := range s.parts {
			p.follower = follower{}
			s.publishInSync(p.Key, false)
			s.release(p)
		}
	})
}

// SetFenced makes a primary refuse produce (a hand-over: the standby must
// get everything the primary holds before it takes over) or take it again.
func (s *Shard) SetFenced(fenced bool) { s.Call(func(s *Shard) { s.fenced = fenced }) }

// StandbyHasAll reports whether the standby holds every offset of every
// partition (and is in sync in each), with the first partition it lacks.
func (s *Shard) StandbyHasAll() (bool, string) {
	ok, lacking := true, ""
	s.Call(func(s *Shard) {
		for _, k := range s.sortedKeys() {
			p := s.parts[k]
			if !p.follower.inSync || p.follower.has < p.Log.LogEndOffset() {
				ok, lacking = false, fmt.Sprintf("%s: the standby has %d of %d (in sync: %v)", k.Dir(), p.follower.has, p.Log.LogEndOffset(), p.follower.inSync)
				return
			}
		}
	})
	return ok, lacking
}

// EpochEnd answers OffsetForLeaderEpoch for one partition.
func (s *Shard) EpochEnd(k Key, epoch int32) (int32, int64, kerr.Code) {
	p, ok := s.parts[k]
	if !ok {
		return -1, -1, kerr.NotLeaderOrFollower
	}
	e, end := p.Log.EndOffsetForEpoch(log.Epoch(epoch))
	return int32(e), int64(end), kerr.None
}

// MaxEpoch is the newest epoch of any of the shard's logs (-1 if none);
// callable from any goroutine.
func (s *Shard) MaxEpoch() int32 {
	e := int32(-1)
	s.Call(func(s *Shard) {
		for _, p := range s.parts {
			e = max(e, int32(p.Log.LatestEpoch()))
		}
	})
	return e
}

// LatestEpoch is the newest epoch of k's log (-1 if none).
func (s *Shard) LatestEpoch(k Key) int32 {
	if p, ok := s.parts[k]; ok {
		return int32(p.Log.LatestEpoch())
	}
	return -1
}

// Reconcile cuts a standby's partition where its log diverges from the
// primary's, from the primary's OffsetForLeaderEpoch answer for the
// partition's latest epoch (leaderEpoch: the largest epoch the primary
// has not newer than that one; leaderEnd: where it ended there). Kafka's
// follower rules (AbstractFetcherThread): keep up to the smaller of
// leaderEnd and this log's own end of leaderEpoch; when this log does not
// know leaderEpoch, cut to where its floor epoch ends and ask again
// (complete false); when the primary knows no end, keep everything. done
// gets the log end before and after.
func (s *Shard) Reconcile(k Key, leaderEpoch int32, leaderEnd int64, done func(from, to int64, complete bool, err error)) {
	p, ok := s.parts[k]
	if !ok {
		done(0, 0, true, ErrUnknownPartition)
		return
	}
	end := int64(p.Log.LogEndOffset())
	target, complete := end, true
	switch e, ownEnd := p.Log.EndOffsetForEpoch(log.Epoch(leaderEpoch)); {
	case leaderEnd < 0:
	case leaderEpoch < 0 || e < 0:
		target = min(leaderEnd, end)
	case e != log.Epoch(leaderEpoch):
		target, complete = int64(ownEnd), false
	default:
		target = min(leaderEnd, int64(ownEnd))
	}
	target = max(target, int64(p.Log.LogStartOffset()))
	if target >= end {
		done(end, end, complete, nil)
		return
	}
	s.cfg.Logger.Warn("standby: truncating a divergent tail", "partition", k.Dir(), "from", end, "to", target, "primary_epoch", leaderEpoch, "primary_epoch_end", leaderEnd)
	s.TruncateReplica(k, target, false, func(err error) { done(end, int64(p.Log.LogEndOffset()), complete, err) })
}

// TruncateReplica cuts a standby's partition back to off (a divergent
// tail, after OffsetForLeaderEpoch) or, when off lies past its end and
// reset is set, empties it to start at off (the primary no longer has the
// offsets it would fetch next). done runs on the shard thread.
func (s *Shard) TruncateReplica(k Key, off int64, reset bool, done func(error)) {
	p, ok := s.parts[k]
	if !ok {
		done(ErrUnknownPartition)
		return
	}
	s.whenSwapIdle(p, func() {
		s.whenSyncIdle(p, func() { s.whenWritesIdle(p, func() { s.truncateReplica(p, off, reset, done) }) })
	})
}

func (s *Shard) truncateReplica(p *Partition, off int64, reset bool, done func(error)) {
	var err error
	if reset {
		err = p.Log.ResetTo(log.Offset(off))
	} else {
		err = p.Log.TruncateTo(log.Offset(off))
	}
	if err == nil {
		// The checkpoint must not name offsets the log dropped.
		err = s.writeCheckpointEntries(false)
	}
	p.wakeParked()
	done(err)
}

// ErrNotContiguous reports fetched batches that start below the standby's
// log end, or go backwards.
var ErrNotContiguous = errors.New("fetched batches do not start at the log end")

// AppendReplica appends batches fetched from the primary, as they are:
// offsets, leader epochs, timestamps and producer state unchanged. The
// first batch must start at the log end; every CRC is checked. leaderHW
// is the primary's high watermark from the same fetch: the local one
// follows it, never past what is stored here. done runs on the shard
// thread once the batches are written (page cache, or completed O_DIRECT
// writes), the standby's meaning of "has the batch".
func (s *Shard) AppendReplica(k Key, set []byte, leaderHW int64, done func(error)) {
	p, ok := s.parts[k]
	if !ok {
		done(ErrUnknownPartition)
		return
	}
	now := time.Now()
	// The primary's high watermark as it answered: never the largest seen,
	// which may be an earlier primary's.
	p.leaderHW = log.Offset(leaderHW)
	if len(set) == 0 {
		s.noteLeader(p, now)
		p.advanceHighWatermark()
		done(nil)
		return
	}
	if err := p.Log.Err(); err != nil {
		done(err)
		return
	}
	it := records.NewIter(set)
	next := p.Log.LogEndOffset()
	peek := records.NewIter(set)
	if first, h, ok := peek.Next(); ok && len(first) > 0 && p.Log.Size() == 0 &&
		log.Offset(h.BaseOffset) < next && log.Offset(h.BaseOffset+int64(h.LastOffsetDelta)) >= next {
		// An empty log restarted at the primary's log start, which lies
		// inside a batch (DeleteRecords): start at the batch, as Kafka does.
		if err := p.Log.ResetTo(log.Offset(h.BaseOffset)); err != nil {
			done(err)
			return
		}
		next = p.Log.LogEndOffset()
	}
	n := 0
	for {
		batch, h, ok := it.Next()
		if !ok {
			break
		}
		// Past the end is a gap the primary's compaction left (Kafka's
		// followers keep them too); before it is a fetch gone wrong.
		if log.Offset(h.BaseOffset) < next {
			done(fmt.Errorf("%w: batch %d starts at %d, the log ends at %d", ErrNotContiguous, n, h.BaseOffset, next))
			return
		}
		// Replicated batches are the primary's log: control batches and
		// compaction's gaps are theirs to hold, so only the framing is
		// checked here and the CRC as the log copies them (VerifyCRC's
		// rules, in one pass over the bytes).
		if _, err := records.CheckFrame(batch); err != nil {
			done(fmt.Errorf("batch at offset %d: %w", h.BaseOffset, err))
			return
		}
		next = log.Offset(h.BaseOffset + int64(h.LastOffsetDelta) + 1)
		n++
	}
	if err := it.Err(); err != nil && !errors.Is(err, records.ErrTruncated) {
		done(err)
		return
	}
	// A fetch response may end with a partial batch (Kafka cuts at
	// max_bytes); only whole batches are appended.
	set = set[:it.Pos()]
	if n == 0 {
		done(nil)
		return
	}
	appended, err := s.appendWith(p, set, now, func(set []byte, now time.Time) (log.AppendResult, error) {
		return p.Log.AppendReplicated(set, now, log.Offset(leaderHW))
	})
	if err != nil {
		var crcErr *log.CRCError
		if errors.As(err, &crcErr) {
			// Damaged on the way: nothing was appended; fetched again.
			done(err)
			return
		}
		if !errors.Is(err, log.ErrDiskFull) && !errors.Is(err, log.ErrNoDescriptors) && !errors.Is(err, log.ErrTailFull) && !errors.Is(err, log.ErrTailBusy) {
			p.Log.MarkFailed(err)
			s.reportFailure(p, "replica append")
		} else if errors.Is(err, log.ErrDiskFull) {
			s.reportDiskFull(p, err)
		}
		done(err)
		return
	}
	if p.diskFull {
		s.reportSpaceReturned(p)
	}
	p.bytesIn.Add(float64(len(set)))
	s.noteLeader(p, now)
	end := p.Log.LogEndOffset()
	if !p.Log.Direct() || p.Log.WrittenOffset() >= end {
		p.advanceHighWatermark()
		done(nil)
		return
	}
	p.waiters = append(p.waiters, waiter{base: appended.BaseOffset, upTo: end, since: now, reply: func(r ProduceResult) {
		if r.Err != kerr.None {
			done(errors.New(r.ErrMessage))
			return
		}
		done(nil)
	}})
	s.wantWrite(p)
	s.release(p)
}

// noteLeader records when the standby last held everything up to the
// primary's high watermark (its lag in seconds counts from then).
func (s *Shard) noteLeader(p *Partition, now time.Time) {
	if p.Log.LogEndOffset() >= p.leaderHW {
		p.leaderCaughtUp = now
	}
}

// ReplicaOffsets are what the standby asks the primary from: its log end
// and log start for every partition it owns.
func (s *Shard) ReplicaOffsets(k Key) (logStart, logEnd int64, ok bool) {
	p, found := s.parts[k]
	if !found {
		return 0, 0, false
	}
	return int64(p.Log.LogStartOffset()), int64(p.Log.LogEndOffset()), true
}
