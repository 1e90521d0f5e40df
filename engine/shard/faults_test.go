package shard

import (
	"bytes"
	"encoding/binary"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-broker/sluice/engine/log"
	"github.com/sluice-broker/sluice/engine/storage"
	"github.com/sluice-broker/sluice/wire/compress"
	"github.com/sluice-broker/sluice/wire/kerr"
	"golang.org/x/sys/unix"
)

// Storage faults where the shard hands I/O to its backend (io_uring, or
// the plain backend's helper goroutine): the same bodies on every backend
// and write mode, over real files, with the faults injected by
// Config.Faults. A failed datasync or write fails the partition's log for
// good until a restart: no later "successful" round may move its recovery
// point or high watermark, it never closes clean, and a restart recovers it
// and takes writes again.

// faultRig is a shard on real files with a fault injector, restartable on
// the same data directory.
type faultRig struct {
	t      *testing.T
	m      mode
	dir    string
	fs     storage.FS
	faults *storage.Injector
	s      *Shard
	// noPreZero: no zeroing writes ahead of the direct writer, so that
	// a write rule hits the data write.
	noPreZero bool
}

func newFaultRig(t *testing.T, m mode, fs storage.FS) *faultRig {
	r := &faultRig{t: t, m: m, dir: t.TempDir(), fs: fs, faults: storage.NewInjector()}
	if r.fs == nil {
		r.fs = storage.OS()
	}
	t.Cleanup(func() {
		if r.s != nil {
			r.s.Stop()
		}
	})
	r.start(nil)
	return r
}

// start starts the shard with the checkpoints recorded by the last run and
// opens the test partition.
func (r *faultRig) start(overrides map[string]string) {
	r.t.Helper()
	cps, err := log.ReadCheckpointFile(storage.OS(), r.checkpointPath())
	if err != nil {
		cps = nil // the first start: no file yet
	}
	cfg := r.m.config(Config{ID: 0, DataDir: r.dir, FS: r.fs, PinCPU: -1, Checkpoints: cps, Faults: r.faults})
	cfg.PreZero = cfg.PreZero && !r.noPreZero
	s, err := Start(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	r.s = s
	openTestPartition(r.t, s, overrides)
	if err := s.MarkStarted(); err != nil {
		r.t.Fatal(err)
	}
}

// stop stops the shard: it flushes, checkpoints and closes the logs.
func (r *faultRig) stop() error {
	err := r.s.Stop()
	r.s = nil
	return err
}

// restart stops the shard (an error from a failed partition is expected)
// and starts it again with a fresh injector.
func (r *faultRig) restart(overrides map[string]string) error {
	err := r.stop()
	r.faults = storage.NewInjector()
	r.start(overrides)
	return err
}

func (r *faultRig) checkpointPath() string { return filepath.Join(r.dir, "shard-0.checkpoint") }

// checkpoint reads the test partition's entry of the checkpoint file.
func (r *faultRig) checkpoint() log.Checkpoint {
	r.t.Helper()
	cps, err := log.ReadCheckpointFile(storage.OS(), r.checkpointPath())
	if err != nil {
		r.t.Fatal(err)
	}
	cp, ok := cps[testKey.Dir()]
	if !ok {
		r.t.Fatalf("no checkpoint entry for %s", testKey.Dir())
	}
	return cp
}

// state reads the partition's recovery point, high watermark, log end and
// sticky error on the shard thread.
func (r *faultRig) state() (synced, hw, end log.Offset, err error) {
	r.s.Call(func(s *Shard) {
		l := s.parts[testKey].Log
		synced, hw, end, err = l.SyncedOffset(), l.HighWatermark(), l.LogEndOffset(), l.Err()
	})
	return
}

// flush runs the periodic flush and checkpoint, and waits until its sync
// rounds and the checkpoint are over.
func (r *faultRig) flush() {
	r.t.Helper()
	r.s.Tick(time.Now(), false, true)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var busy bool
		r.s.Call(func(s *Shard) { busy = s.checkpoint || len(s.syncs) > 0 || len(s.toSync) > 0 || len(s.writes) > 0 })
		if !busy {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatal("the flush's sync rounds did not finish")
		}
		time.Sleep(time.Millisecond)
	}
}

// produceOK appends a batch and fails the test unless it is acknowledged.
func (r *faultRig) produceOK(acks int16) []byte {
	r.t.Helper()
	b := batch(r.t, 3, compress.None)
	if res := produce(r.s, b, acks); res.Err != kerr.None {
		r.t.Fatalf("acks=%d append: %v %s", acks, res.Err, res.ErrMessage)
	}
	return b // its base offset is the one assigned
}

// readAll returns the partition's batches from offset 0 to its high
// watermark.
func (r *faultRig) readAll() []byte {
	r.t.Helper()
	var out []byte
	for off := int64(0); ; {
		res := readAsync(r.s, off, 1<<20)
		if res.Err != kerr.None {
			r.t.Fatalf("read at %d: %v", off, res.Err)
		}
		if !res.HasData {
			return out
		}
		b := resultBytes(r.t, res)
		out = append(out, b...)
		off = nextOffset(b)
	}
}

// nextOffset is one past the last offset of the batches laid end to end
// in b.
func nextOffset(b []byte) int64 {
	var next int64
	for pos := 0; pos+61 <= len(b); {
		base := int64(binary.BigEndian.Uint64(b[pos:]))
		size := 12 + int(binary.BigEndian.Uint32(b[pos+8:]))
		next = base + int64(binary.BigEndian.Uint32(b[pos+23:])) + 1
		pos += size
	}
	return next
}

// mustHold checks that the log holds exactly the acknowledged batches, in
// order, byte for byte.
func (r *faultRig) mustHold(acked ...[]byte) {
	r.t.Helper()
	if got, want := r.readAll(), bytes.Join(acked, nil); !bytes.Equal(got, want) {
		r.t.Fatalf("the log holds %d bytes up to offset %d; want the %d acknowledged batches, %d bytes up to offset %d",
			len(got), nextOffset(got), len(acked), len(want), nextOffset(want))
	}
}

// mustHoldAround checks that the log holds the acknowledged batches before
// and after, byte for byte, with the refused batch between them either
// whole or not at all: an append answered KAFKA_STORAGE_ERROR may have
// reached the disk (a write after the failing one did), as a Kafka
// producer's timed-out request may have, but never torn. Each batch's base
// offset is the one the shard assigned, so a batch in the wrong place does
// not compare equal.
func (r *faultRig) mustHoldAround(before [][]byte, refused []byte, after ...[]byte) {
	r.t.Helper()
	got := r.readAll()
	without := bytes.Join(append(append([][]byte{}, before...), after...), nil)
	with := bytes.Join(append(append(append([][]byte{}, before...), refused), after...), nil)
	if !bytes.Equal(got, without) && !bytes.Equal(got, with) {
		r.t.Fatalf("the log holds %d bytes up to offset %d; want the acknowledged batches (%d bytes), with or without the refused one (%d bytes)",
			len(got), nextOffset(got), len(without), len(refused))
	}
}

// The bug the storage-faults issue opened with: a datasync that failed
// through the backend was recorded by the shard alone, so the periodic
// checkpoint's next round (which Linux lets succeed: it reports a writeback
// error once) moved the recovery point over pages that never reached the
// disk, the checkpoint file recorded it, and a stop closed the log clean.
func TestFailedDatasyncThenCheckpointStopAndRestart(t *testing.T) {
	backends(t, func(t *testing.T, m mode) {
		r := newFaultRig(t, m, nil)
		a := r.produceOK(-1)
		r.flush()
		synced0, _, _, _ := r.state()
		if synced0 == 0 {
			t.Fatal("an acknowledged acks=all append is not below the recovery point")
		}

		// One datasync of the partition's files fails, once.
		r.faults.AddRule(storage.Rule{Ops: storage.OpDatasync, Dir: testKey.Dir(), Times: 1})
		b := r.produceOK(1) // written, not yet synced
		r.flush()           // its round fails
		synced, hw, end, err := r.state()
		if res := produce(r.s, batch(t, 1, compress.None), -1); res.Err != kerr.KafkaStorageError {
			t.Fatalf("an append to the failed partition answered %v, want KAFKA_STORAGE_ERROR", res.Err)
		}
		r.flush() // the periodic checkpoint: this round would succeed
		synced2, hw2, end2, _ := r.state()
		if synced2 != synced || synced2 != synced0 {
			t.Fatalf("recovery point %d before the failure, %d after it, %d after the next checkpoint: it must not move", synced0, synced, synced2)
		}
		if hw2 != hw || end2 != end {
			t.Fatalf("high watermark %d→%d, log end %d→%d after the failure", hw, hw2, end, end2)
		}
		if cp := r.checkpoint(); cp.Clean || cp.RecoveryPoint > synced0 {
			t.Fatalf("checkpoint of the failed partition: %+v; want not clean, recovery point at most %d", cp, synced0)
		}
		if err == nil {
			t.Fatal("a failed datasync left the log writable")
		}
		if got := r.s.RefusingWrites()[testKey]; got.Reason != RefusalStorageError {
			t.Fatal("the failed partition is not reported as refusing writes")
		}
		// Reads below the high watermark go on.
		r.mustHold(a, b)

		// A clean stop does not close it clean.
		if err := r.stop(); err == nil {
			t.Fatal("stopping a shard with a failed partition reported no error")
		}
		if cp := r.checkpoint(); cp.Clean || cp.RecoveryPoint > synced0 {
			t.Fatalf("checkpoint of the failed partition after a stop: %+v; want not clean, recovery point at most %d", cp, synced0)
		}
		r.faults = storage.NewInjector()
		r.start(nil)
		// The restart recovered it (a CRC scan from the recovery point):
		// everything written is there, and it takes writes again.
		c := r.produceOK(-1)
		r.mustHold(a, b, c)
		if got, ok := r.s.RefusingWrites()[testKey]; ok {
			t.Fatalf("after a restart the partition still refuses writes: %+v", got)
		}
		if err := r.stop(); err != nil {
			t.Fatalf("a clean stop after recovery: %v", err)
		}
		if cp := r.checkpoint(); !cp.Clean {
			t.Fatalf("after a clean stop the checkpoint is %+v", cp)
		}
	})
}

// A failed acks=all datasync answers KAFKA_STORAGE_ERROR, and the batch it
// covered never becomes visible.
func TestFailedDatasyncOfAnAcksAllAppend(t *testing.T) {
	backends(t, func(t *testing.T, m mode) {
		r := newFaultRig(t, m, nil)
		a := r.produceOK(-1)
		// In direct mode with RWF_DSYNC writes an acks=all append is
		// made durable by its write: fail that, else the datasync.
		ops := storage.OpDatasync
		if m.direct {
			ops |= storage.OpWrite
		}
		r.faults.AddRule(storage.Rule{Ops: ops, Dir: testKey.Dir(), Times: 1})
		refused := batch(t, 3, compress.None)
		if res := produce(r.s, refused, -1); res.Err != kerr.KafkaStorageError {
			t.Fatalf("acks=all over a failing datasync answered %v, want KAFKA_STORAGE_ERROR", res.Err)
		}
		r.flush()
		if _, hw, _, _ := r.state(); hw != log.Offset(nextOffset(a)) {
			t.Fatalf("high watermark %d after the failed append; want %d", hw, nextOffset(a))
		}
		r.mustHold(a)
		r.restart(nil)
		b := r.produceOK(-1)
		r.mustHoldAround([][]byte{a}, refused, b)
	})
}

// A direct-mode write of a partial block that fails (EIO, or ENOSPC after
// part of it was written) fails the log; the tail cache's copy is never
// served, a restart recovers what was written before it.
func TestFailedDirectWriteOfAPartialBlock(t *testing.T) {
	for _, m := range []mode{{true, true}, {false, true}} {
		for _, rule := range []storage.Rule{
			{Ops: storage.OpWrite, Dir: testKey.Dir(), Times: 1, Err: unix.EIO},
			{Ops: storage.OpWrite, Dir: testKey.Dir(), Times: 1, Err: unix.ENOSPC, Short: true},
		} {
			t.Run(m.String()+"/"+rule.Err.Error(), func(t *testing.T) {
				if err := URingAvailable(); m.uring && err != nil {
					t.Skipf("io_uring unavailable: %v", err)
				}
				r := newFaultRig(t, m, nil)
				r.noPreZero = true
				r.restart(nil)
				a := r.produceOK(1) // 3 KiB: a partial block
				r.faults.AddRule(rule)
				// A batch that ends in a partial block: with Short, the
				// first whole blocks reach the file and the rest fails.
				big := batch(t, 20, compress.None)
				if res := produce(r.s, big, 1); res.Err != kerr.KafkaStorageError {
					t.Fatalf("an append whose write failed answered %v, want KAFKA_STORAGE_ERROR", res.Err)
				}
				r.flush()
				synced, hw, _, err := r.state()
				if err == nil || hw != log.Offset(nextOffset(a)) || synced > hw {
					t.Fatalf("after a failed write: log error %v, high watermark %d (want %d), recovery point %d", err, hw, nextOffset(a), synced)
				}
				r.mustHold(a)
				r.restart(nil)
				b := r.produceOK(-1)
				r.mustHold(a, b)
			})
		}
	}
}

// A segment roll that cannot create the new segment file fails the
// partition; the acknowledged data stays, and a restart takes writes again.
func TestFailedSegmentRoll(t *testing.T) {
	backends(t, func(t *testing.T, m mode) {
		fs := storage.NewFaulty(storage.OS())
		seg := map[string]string{"segment.bytes": "16384"}
		r := newFaultRig(t, m, fs)
		r.restart(seg)
		var acked [][]byte
		for i := 0; i < 3; i++ {
			acked = append(acked, r.produceOK(-1)) // ~3 KiB each: no roll yet
		}
		fs.AddRule(storage.Rule{Ops: storage.OpOpen, Pattern: "*.log", Times: 1})
		var refused bool
		for i := 0; i < 10 && !refused; i++ {
			b := batch(t, 3, compress.None)
			switch res := produce(r.s, b, -1); res.Err {
			case kerr.None:
				acked = append(acked, b) // before the roll
			case kerr.KafkaStorageError:
				refused = true
			default:
				t.Fatalf("append over a failed roll answered %v", res.Err)
			}
		}
		if !refused || len(acked) > 6 {
			t.Fatalf("%d appends of 3 KiB to 16 KiB segments acknowledged; want the roll's failure refused", len(acked))
		}
		if res := produce(r.s, batch(t, 1, compress.None), 1); res.Err != kerr.KafkaStorageError {
			t.Fatalf("after a failed roll an append answered %v, want KAFKA_STORAGE_ERROR", res.Err)
		}
		r.flush()
		r.mustHold(acked...)
		r.restart(seg)
		acked = append(acked, r.produceOK(-1))
		r.mustHold(acked...)
	})
}

// A full disk is not a failed disk: the append is refused with
// KAFKA_STORAGE_ERROR (clients retry it), the partition is reported as
// refusing writes for disk_full, nothing is appended, reads go on, and the
// next append that fits is acknowledged and ends the refusal, with no
// restart.
func TestFullDiskRefusesUntilSpaceReturns(t *testing.T) {
	backends(t, func(t *testing.T, m mode) {
		fs := storage.NewFaulty(storage.OS())
		r := newFaultRig(t, m, fs)
		a := r.produceOK(-1)
		// Page-cache mode meets the full disk in its write; direct mode
		// when it allocates space (a new segment: segment.bytes is small).
		rule := storage.Rule{Ops: storage.OpWrite, Pattern: "*.log", Times: 2, Err: unix.ENOSPC, Short: true}
		if m.direct {
			rule.Ops = storage.OpAllocate
		}
		seg := map[string]string{"segment.bytes": "16384"}
		r.restart(seg)
		acked := [][]byte{a}
		fs.AddRule(rule)
		refused := 0
		for i := 0; i < 20 && fs.Fired() < rule.Times; i++ {
			b := batch(t, 3, compress.None)
			switch res := produce(r.s, b, -1); res.Err {
			case kerr.None:
				acked = append(acked, b)
			case kerr.KafkaStorageError:
				refused++
				if why := r.s.RefusingWrites()[testKey]; why.Reason != RefusalDiskFull {
					t.Fatalf("a partition refused for a full disk is reported as %+v", why)
				}
				if _, _, _, err := r.state(); err != nil {
					t.Fatalf("a full disk failed the log: %v", err)
				}
			default:
				t.Fatalf("append on a full disk answered %v", res.Err)
			}
		}
		if refused == 0 {
			t.Fatalf("no append was refused (the rule fired %d times)", fs.Fired())
		}
		r.mustHold(acked...)
		acked = append(acked, r.produceOK(-1)) // space returned
		if why, ok := r.s.RefusingWrites()[testKey]; ok {
			t.Fatalf("after an acknowledged append the partition is still reported refusing: %+v", why)
		}
		r.flush()
		r.mustHold(acked...)
		if err := r.stop(); err != nil {
			t.Fatal(err)
		}
		if cp := r.checkpoint(); !cp.Clean {
			t.Fatalf("a clean stop after a full disk: %+v", cp)
		}
		r.start(seg)
		r.mustHold(acked...)
	})
}

// A failure met while listing what to sync (the partition directory cannot
// be opened) answers the waiting acks=all appends at once and reports the
// partition; EMFILE there is no failure, only a delay. (Found in review:
// the appends waited for the next flush tick.)
func TestFailureWhileListingSyncsIsReported(t *testing.T) {
	backends(t, func(t *testing.T, m mode) {
		fs := storage.NewFaulty(storage.OS())
		r := newFaultRig(t, m, fs)
		r.restart(map[string]string{"segment.bytes": "8192"})
		r.produceOK(-1)
		// The next appends roll: the directory has a new entry to sync,
		// and opening it fails.
		fs.AddRule(storage.Rule{Ops: storage.OpOpen, Pattern: testKey.Dir(), Err: unix.EIO})
		answered := make(chan ProduceResult, 8)
		for range 4 {
			b := batch(t, 3, compress.None)
			r.s.Do(func(s *Shard) { s.Produce(testKey, b, -1, func(res ProduceResult) { answered <- res }) })
		}
		for i := range 4 {
			select {
			case res := <-answered:
				if res.Err != kerr.KafkaStorageError && res.Err != kerr.None {
					t.Fatalf("append %d answered %v", i, res.Err)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("append %d was not answered: a failure while listing the syncs went unreported", i)
			}
		}
		if why := r.s.RefusingWrites()[testKey]; why.Reason != RefusalStorageError {
			t.Fatalf("the partition is reported as %+v; want storage_error", why)
		}
	})
}
