package shard

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-broker/sluice/engine/config"
	"github.com/sluice-broker/sluice/engine/log"
	"github.com/sluice-broker/sluice/wire/kerr"
)

// Partition is one partition owned by a shard. Only the shard thread touches
// it.
type Partition struct {
	Key     Key
	TopicID [16]byte
	Log     *log.Log
	Cfg     config.Topic

	waiters []waiter        // acks=all appends waiting for their datasync, in offset order
	parked  []chan struct{} // long-poll fetches waiting for the high watermark to move
	// Replication (replica.go): on a primary, the standby's state and its
	// parked fetches; on a standby, the primary's high watermark and when
	// this node last held all of it.
	follower       follower
	replicaParked  []replicaPark
	leaderHW       log.Offset
	leaderCaughtUp time.Time
	standby        bool // the shard's role, copied: this partition follows a primary
	// aloneOK, copied from the shard: with the standby out of sync, the
	// primary may acknowledge acks=all alone. With etcd deciding failover
	// it may only once etcd records the standby out of sync (else the
	// standby could take over without what was acknowledged).
	aloneOK bool
	syncing bool // a datasync of this partition is in flight
	queued  bool // in the shard's toSync list
	// Direct mode: writing counts write pieces in flight; wq holds pieces
	// the ring had no room for, from wqi on; wqueued: in toWrite.
	writing int
	wq      []log.DirectWrite
	wqi     int
	wqueued bool
	// failureReported: the log's failure was logged and counted once.
	failureReported bool
	// diskFull: the last append found no space; cleared by the next one
	// that fits (every append tries), or by deleting the partition.
	diskFull bool
	// afterSync holds work that deletes or closes segment files (retention,
	// DeleteRecords, deletion): it must not run while a datasync of this
	// partition is in flight, or the ring would fsync a closed (or reused)
	// file descriptor.
	afterSync deferred
	// afterWrites: work that closes the O_DIRECT descriptor (deletion)
	// waits for the writes in flight on it.
	afterWrites deferred
	// afterSwap: work that deletes, truncates or resets the log, held
	// while the cleaner renames its files (cleaner.go).
	afterSwap deferred
	// afterClean: deletion, held while a cleaning job holds the log.
	afterClean deferred
	// cleanRetryAt: a cleaning pass failed; none is planned before then.
	cleanRetryAt time.Time

	bytesIn, recordsIn prometheus.Counter // this topic's counters, resolved once
}

// waiter is an acknowledgement held back until the data up to upTo is on
// disk.
type waiter struct {
	base  log.Offset // first offset of the append: the high watermark stays below it until released
	upTo  log.Offset // one past the append's last offset
	since time.Time  // when it was appended, for the produce-to-durable latency
	// durable: released by the datasync covering upTo (acks=all); else by
	// the completed direct write (acks 0 and 1 in direct mode).
	durable bool
	// acksAll: the producer asked acks=all, so the in-sync standby must
	// have the batch too (flush.messages=1 makes acks=1 durable, not
	// replicated).
	acksAll bool
	// res is the answer reply gets once the rule is met (a storage error
	// replaces it if the write or sync fails). Held here rather than in a
	// closure: no allocation per append.
	res   ProduceResult
	reply func(ProduceResult)
}

func (w *waiter) done(err error) {
	if err != nil {
		w.reply(produceFailed(kerr.KafkaStorageError, err.Error()))
		return
	}
	w.reply(w.res)
}

func (p *Partition) failWaiters(err error) {
	for _, w := range p.waiters {
		w.done(err)
	}
	p.waiters = nil
	p.wakeParked()
}

func (p *Partition) wakeParked() {
	for _, ch := range p.parked {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	p.parked = p.parked[:0]
}

// advanceHighWatermark moves the high watermark to the end of what is
// acknowledged: the written end (the log end in page-cache mode), or the
// first append still waiting for its write or datasync. The log owns the
// high watermark: it never moves down (an idempotent retry waiting, with
// acks=all, for a batch already acknowledged with acks=1 must not pull it
// back), and never moves on a failed log, whose later bytes may never have
// reached the disk.
//
// With a standby, the high watermark is Kafka's: on the primary it also
// waits for the standby while the standby is in sync; on the standby it
// never passes the primary's.
func (p *Partition) advanceHighWatermark() {
	p.wakeReplicas()
	if p.Log.Err() != nil {
		p.wakeParked()
		return
	}
	hw := min(p.Log.LogEndOffset(), p.Log.WrittenOffset())
	if len(p.waiters) > 0 {
		hw = min(hw, p.waiters[0].base)
	}
	if p.standby {
		hw = min(hw, p.leaderHW)
	} else if p.follower.inSync || !p.aloneOK {
		hw = min(hw, p.follower.has)
	}
	if p.Log.AdvanceHighWatermark(hw) {
		p.wakeParked()
	}
}

// Errors a shard reports for partitions.
var (
	ErrUnknownPartition = errors.New("this shard does not own that partition")
	ErrPartitionExists  = errors.New("partition already open")
)

// OpenPartition opens (creating if needed) a partition's log on this shard.
// Call from the shard thread.
func (s *Shard) OpenPartition(k Key, topicID [16]byte, cfg config.Topic) (*Partition, error) {
	if _, ok := s.parts[k]; ok {
		return nil, ErrPartitionExists
	}
	dir := filepath.Join(s.cfg.DataDir, k.Dir())
	if err := s.cfg.FS.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	l, err := log.Open(s.cfg.FS, dir, s.logConfig(cfg), s.cfg.Checkpoints[k.Dir()], time.Now())
	if err != nil {
		return nil, err
	}
	p := &Partition{Key: k, TopicID: topicID, Log: l, Cfg: cfg, standby: s.standby, aloneOK: s.aloneOK,
		bytesIn: s.cfg.Metrics.BytesIn.WithLabelValues(k.Topic), recordsIn: s.cfg.Metrics.RecordsIn.WithLabelValues(k.Topic)}
	s.parts[k] = p
	s.partitionsN.Add(1)
	s.preloadPartialBlock(p)
	return p, nil
}

// preloadPartialBlock reads a direct log's partial last block through the
// ring after open, so that the first append restores it from memory
// instead of reading it back on the shard thread. An append that comes
// first reads it itself, as before.
func (s *Shard) preloadPartialBlock(p *Partition) {
	f, ref, off, n, ok := p.Log.PartialBlock()
	if !ok {
		return
	}
	ref.Acquire()
	s.readInto(f, off, n, nil, func(buf []byte, err error) {
		ref.Release()
		if err == nil && s.parts[p.Key] == p {
			p.Log.KeepPartialBlock(off, buf[:n])
		}
		s.putPrefetchBuf(buf)
	})
}

// Partition returns an owned partition, or nil.
func (s *Shard) Partition(k Key) *Partition { return s.parts[k] }

// deferred is work held back until some I/O of a partition is over.
type deferred []func()

// when runs fn at once if idle, else keeps it for run.
func (d *deferred) when(idle bool, fn func()) {
	if idle {
		fn()
		return
	}
	*d = append(*d, fn)
}

// run runs the kept work, in order, while idle holds (a fn may start I/O).
func (d *deferred) run(idle func() bool) {
	for len(*d) > 0 && idle() {
		fn := (*d)[0]
		*d = (*d)[1:]
		fn()
	}
}

func (p *Partition) syncIdle() bool   { return !p.syncing }
func (p *Partition) writesIdle() bool { return p.writing == 0 }

// whenSyncIdle runs fn at once if no datasync of p is in flight, else as
// soon as the one in flight completes (before the next one starts).
func (s *Shard) whenSyncIdle(p *Partition, fn func()) { p.afterSync.when(p.syncIdle(), fn) }

func (s *Shard) runAfterSync(p *Partition) { p.afterSync.run(p.syncIdle) }

// DeletePartition removes a partition and its data, then calls done (on the
// shard thread). Readers holding segments keep reading what they pinned.
func (s *Shard) DeletePartition(k Key, done func(error)) {
	p, ok := s.parts[k]
	if !ok {
		done(ErrUnknownPartition)
		return
	}
	delete(s.parts, k)
	s.partitionsN.Add(-1)
	s.setRefusing(k, Refusal{})
	p.wq, p.wqi = p.wq[:0], 0 // never submit pieces of a deleted log
	p.failWaiters(ErrUnknownPartition)
	// Deleting closes the O_DIRECT descriptor too: wait for its writes.
	p.Log.CancelCleaning()
	s.whenCleanIdle(p, func() {
		s.whenSyncIdle(p, func() { s.whenWritesIdle(p, func() { done(p.Log.Delete()) }) })
	})
}

// SetTopicConfig applies a topic's changed configuration to a partition.
func (s *Shard) SetTopicConfig(k Key, cfg config.Topic) error {
	p, ok := s.parts[k]
	if !ok {
		return ErrUnknownPartition
	}
	p.Cfg = cfg
	return p.Log.SetConfig(s.logConfig(cfg))
}

// MarkStarted records that this run has begun: a checkpoint written now
// without the clean flag, so that a crash from here on is recovered as one.
func (s *Shard) MarkStarted() error { return s.writeCheckpointEntries(false) }

// syncJob is one datasync round of one partition: several files (a roll
// leaves the previous segment to sync too), one completion each.
type syncJob struct {
	p         *Partition
	started   time.Time
	upTo      log.Offset
	remaining int
	err       error
}

// wantSync queues p for a datasync on this loop turn.
func (s *Shard) wantSync(p *Partition) {
	if !p.queued {
		p.queued = true
		s.toSync = append(s.toSync, p)
	}
}

// submitSyncs starts one datasync round for every partition that wants one
// and has none in flight: every append since the last round rides on it.
func (s *Shard) submitSyncs() {
	keep := s.toSync[:0]
	for _, p := range s.toSync {
		if p.syncing {
			keep = append(keep, p) // the next round starts when this one ends
			continue
		}
		if _, ok := s.parts[p.Key]; !ok {
			p.queued = false
			continue
		}
		targets := p.Log.PendingSync()
		if len(targets) == 0 {
			p.queued = false
			switch {
			case p.Log.Err() != nil:
				s.reportFailure(p, "datasync") // PendingSync failed the log
			case p.Log.SyncDeferred():
				// No descriptor for the directory: the next append or
				// flush tick asks again; the acknowledgements wait.
				s.cfg.Logger.Warn("datasync deferred: no file descriptor left to open the partition directory", "partition", p.Key.Dir())
			default:
				s.synced(p, p.Log.WrittenOffset())
			}
			continue
		}
		s.syncRounds.Add(1)
		job := &syncJob{p: p, remaining: len(targets), started: time.Now()}
		for _, t := range targets {
			if t.UpTo > job.upTo {
				job.upTo = t.UpTo
			}
		}
		submitted := 0
		for _, t := range targets {
			s.nextTag++
			tag := s.nextTag
			if !s.be.sync(t.File, !t.Dir, tag) {
				break
			}
			s.syncs[tag] = job
			submitted++
		}
		if submitted < len(targets) {
			// The ring is full; what was submitted completes normally, the
			// rest is retried on the next turn by a fresh round.
			job.remaining = submitted
			job.upTo = 0
			keep = append(keep, p)
			if submitted > 0 {
				p.syncing = true
			}
			continue
		}
		p.syncing = true
		p.queued = false
	}
	s.toSync = keep
}

// complete handles finished datasyncs.
func (s *Shard) complete(comps []completion) {
	var idle []*Partition // partitions whose sync round just ended
	defer func() {
		// Work held back while the round was in flight runs now, before
		// the next round can start (submitSyncs runs after complete).
		for _, p := range idle {
			s.runAfterSync(p)
		}
	}()
	for _, c := range comps {
		if j, ok := s.reads[c.tag]; ok {
			delete(s.reads, c.tag)
			s.readDone(j, c)
			continue
		}
		if ref, ok := s.writes[c.tag]; ok {
			delete(s.writes, c.tag)
			s.written(ref, c)
			continue
		}
		job, ok := s.syncs[c.tag]
		if !ok {
			continue
		}
		delete(s.syncs, c.tag)
		if c.err != nil && job.err == nil {
			job.err = c.err
		}
		job.remaining--
		if job.remaining > 0 {
			continue
		}
		p := job.p
		p.syncing = false
		s.cfg.Metrics.FsyncLatency.Observe(time.Since(job.started).Seconds())
		idle = append(idle, p)
		if job.err != nil {
			// A failed fdatasync leaves the page cache in an unknown state,
			// and Linux clears the error once it has reported it: the log
			// must fail for good, or the next round's "success" would move
			// the recovery point over pages that never reached the disk.
			// Kafka takes the whole log directory offline; sluice confines
			// the fault to the partition.
			p.Log.MarkFailed(job.err)
			s.reportFailure(p, "datasync")
			continue
		}
		if job.upTo > 0 {
			s.synced(p, job.upTo)
		}
		if s.needSync(p) {
			s.wantSync(p)
		}
	}
}

// synced records that everything below upTo is on disk and releases the
// acknowledgements it covers.
func (s *Shard) synced(p *Partition, upTo log.Offset) {
	if upTo > p.Log.SyncedOffset() {
		p.Log.MarkSynced(upTo)
	}
	s.release(p)
}

// release answers the waiters whose rule is met: durable ones covered by
// the recovery point, the others (direct mode) by the completed writes.
// The rest keep their offset order; the high watermark stays below them.
func (s *Shard) release(p *Partition) {
	synced, written := p.Log.SyncedOffset(), p.Log.WrittenOffset()
	ws := p.waiters
	p.waiters = nil
	kept := ws[:0]
	now := time.Now()
	for _, w := range ws {
		switch {
		case w.acksAll && w.upTo <= synced && !p.follower.inSync && p.aloneOK && p.Cfg.MinInsyncReplicas() > 1:
			// The standby left the in-sync set while this append waited
			// for it: Kafka's answer (the batch is in the log).
			w.reply(produceFailed(kerr.NotEnoughReplicasAfterAppend, fmt.Sprintf("min.insync.replicas=%d but the standby fell out of sync", p.Cfg.MinInsyncReplicas())))
		case w.durable && w.upTo <= synced && (!w.acksAll || p.standbyHas(w.upTo)):
			s.cfg.Metrics.ProduceDurableLatency.Observe(now.Sub(w.since).Seconds())
			w.done(nil)
		case !w.durable && w.upTo <= written:
			w.done(nil)
		default:
			kept = append(kept, w)
		}
	}
	clear(ws[len(kept):])
	p.waiters = append(kept, p.waiters...) // a done may have appended
	p.advanceHighWatermark()
}

// needSync reports whether a durable waiter waits for written data that no
// datasync has covered yet.
func (s *Shard) needSync(p *Partition) bool {
	if p.Log.WrittenOffset() <= p.Log.SyncedOffset() {
		return false
	}
	for _, w := range p.waiters {
		if w.durable {
			return true
		}
	}
	return false
}
