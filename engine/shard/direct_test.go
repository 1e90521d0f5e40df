package shard

import (
	"fmt"
	"testing"
	"time"

	"github.com/sluice-broker/sluice/engine/config"
	"github.com/sluice-broker/sluice/engine/log"
	"github.com/sluice-broker/sluice/engine/storage"
	"github.com/sluice-broker/sluice/wire/compress"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/records"
)

// offsetsOf reads a partition's high watermark, written end and log end.
func offsetsOf(s *Shard) (hw, written, end log.Offset) {
	s.Call(func(s *Shard) {
		p := s.parts[testKey]
		hw, written, end = p.Log.HighWatermark(), p.Log.WrittenOffset(), p.Log.LogEndOffset()
	})
	return
}

// After a failed direct write the high watermark stays at the written end:
// a later sync round (a flush tick) must not raise it over the batch whose
// write failed, which the tail cache still holds. (Found in review.)
func TestDirectWriteFailureKeepsHighWatermark(t *testing.T) {
	for _, m := range []mode{{false, true}, {true, true}} {
		t.Run(m.String(), func(t *testing.T) {
			fs := storage.NewFaulty(storage.NewMem())
			s := startShard(t, fs, m)
			defer s.Stop()
			openTestPartition(t, s, nil)
			if r := produce(s, batch(t, 1, compress.None), 1); r.Err != kerr.None {
				t.Fatalf("first append: %v", r.Err)
			}
			fs.AddRule(storage.EIO(storage.OpWrite, "*.log", 0))
			if r := produce(s, batch(t, 1, compress.None), 1); r.Err != kerr.KafkaStorageError {
				t.Fatalf("append over a failing write answered %v, want KAFKA_STORAGE_ERROR", r.Err)
			}
			s.Tick(time.Now(), false, true)
			s.Call(func(*Shard) {}) // the tick's op has run
			hw, written, end := offsetsOf(s)
			if hw > written || written >= end {
				t.Fatalf("high watermark %d, written %d, log end %d: want the high watermark at most the written end, below the log end", hw, written, end)
			}
			var rr ReadResult
			s.Call(func(s *Shard) { rr = s.Read(testKey, int64(written), 1<<20, true) })
			defer rr.Data.Release()
			if rr.HasData {
				t.Fatalf("a fetch at the written end %d returned %d bytes of a batch whose write failed", written, rr.Data.Len)
			}
		})
	}
}

// An acks=1 append too large for the tail cache goes through the page
// cache; it is answered at once, not at the next flush tick. (Found in
// review.)
func TestDirectAppendLargerThanCacheIsAnswered(t *testing.T) {
	for _, m := range []mode{{false, true}, {true, true}} {
		t.Run(m.String(), func(t *testing.T) {
			s := startShard(t, storage.NewMem(), m) // a 1 MiB cache
			defer s.Stop()
			openTestPartition(t, s, nil)
			if r := produce(s, batch(t, 1, compress.None), 1); r.Err != kerr.None {
				t.Fatalf("first append: %v", r.Err)
			}
			big := batch(t, 900, compress.None)
			ch := make(chan ProduceResult, 1)
			s.Do(func(s *Shard) { s.Produce(testKey, big, 1, func(r ProduceResult) { ch <- r }) })
			select {
			case r := <-ch:
				if r.Err != kerr.None {
					t.Fatalf("append of %d bytes: %v", len(big), r.Err)
				}
			case <-time.After(5 * time.Second):
				hw, written, end := offsetsOf(s)
				t.Fatalf("acks=1 append of %d bytes not answered after 5 s: hw %d written %d end %d", len(big), hw, written, end)
			}
			if hw, _, end := offsetsOf(s); hw != end {
				t.Fatalf("high watermark %d, log end %d after the answer", hw, end)
			}
		})
	}
}

// A retry of an idempotent batch whose original is still waiting for its
// write (direct mode, acks=1) is answered after the original, not before:
// had the write failed, the retry would have been acknowledged for data
// that never reached the disk. (Found in review.)
func TestDirectRetryAnsweredAfterOriginal(t *testing.T) {
	for _, m := range []mode{{false, true}, {true, true}} {
		t.Run(m.String(), func(t *testing.T) {
			s := startShard(t, storage.NewMem(), m)
			defer s.Stop()
			openTestPartition(t, s, nil)
			recs := []records.Record{{Value: []byte("once")}}
			h := records.Header{Magic: 2, ProducerID: 7, ProducerEpoch: 0, BaseSequence: 0, BaseTimestamp: time.Now().UnixMilli()}
			set, err := records.AppendBatch(nil, h, recs, compress.None)
			if err != nil {
				t.Fatal(err)
			}
			retry := append([]byte(nil), set...)
			var order []string
			answered := make(chan struct{}, 2)
			s.Do(func(s *Shard) {
				s.Produce(testKey, set, 1, func(r ProduceResult) {
					order = append(order, fmt.Sprintf("original %v@%d", r.Err, r.BaseOffset))
					answered <- struct{}{}
				})
				s.Produce(testKey, retry, 1, func(r ProduceResult) {
					order = append(order, fmt.Sprintf("retry %v@%d", r.Err, r.BaseOffset))
					answered <- struct{}{}
				})
			})
			<-answered
			<-answered
			var got []string
			s.Call(func(*Shard) { got = order })
			if len(got) != 2 || got[0] != "original NONE@0" || got[1] != "retry NONE@0" {
				t.Fatalf("answers in the order %q, want the original (offset 0) then the retry (offset 0)", got)
			}
		})
	}
}

// A write whose data lies in tail cache chunks scattered over the cache
// goes to the device as one vectored write (WRITEV_FIXED, one RWF_DSYNC),
// not one write per piece; and what it wrote reads back after a restart.
func TestDirectWriteOfScatteredChunksIsOneWrite(t *testing.T) {
	if err := URingAvailable(); err != nil {
		t.Skipf("io_uring unavailable: %v", err)
	}
	m := mode{uring: true, direct: true}
	c := m.config(Config{ID: 0, DataDir: t.TempDir(), FS: storage.OS(), PinCPU: -1})
	c.TailCacheBytes, c.PreZero = 4<<20, false // no pre-zeroing writes in the counts
	start := func() *Shard {
		s, err := Start(c)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := start()
	var vmax int
	s.Call(func(s *Shard) { vmax = s.be.vectorMax() })
	if vmax == 1 {
		s.Stop()
		t.Skip("this kernel has no IORING_OP_WRITEV_FIXED (Linux 6.15+): the shard writes piece by piece")
	}
	other := Key{Topic: "t", Partition: 1}
	openTestPartition(t, s, nil)
	s.Call(func(s *Shard) { _, _ = s.OpenPartition(other, [16]byte{2}, config.NewTopic(config.Defaults(), nil)) })
	produceTo := func(k Key, set []byte) {
		t.Helper()
		ch := make(chan ProduceResult, 1)
		s.Do(func(s *Shard) { s.Produce(k, set, -1, func(r ProduceResult) { ch <- r }) })
		if r := <-ch; r.Err != kerr.None {
			t.Fatalf("append to %v: %v", k, r.Err)
		}
	}
	tailStats := func() TailStats {
		st, _ := s.Snapshot()
		return *st.Tail
	}
	// The other partition's chunk lands between the test partition's
	// first chunk and the ones its next append takes.
	first, big := batch(t, 40, compress.None), batch(t, 200, compress.None)
	produceTo(testKey, first)
	produceTo(other, batch(t, 40, compress.None))
	before := tailStats()
	produceTo(testKey, big)
	after := tailStats()
	writes, pieces := after.Writes-before.Writes, after.WritePieces-before.WritePieces
	if pieces < 2 {
		t.Fatalf("setup: the %d-byte append was written in %d piece(s); the test needs it scattered over chunks", len(big), pieces)
	}
	if writes != 1 {
		t.Fatalf("the %d-byte append's %d pieces went out as %d writes, want 1", len(big), pieces, writes)
	}
	s.Stop()

	s = start()
	defer s.Stop()
	openTestPartition(t, s, nil)
	var rr ReadResult
	s.Call(func(s *Shard) { rr = s.Read(testKey, 0, 1<<20, true) })
	got := resultBytes(t, rr)
	want := append(append([]byte(nil), first...), big...)
	if len(got) != len(want) {
		t.Fatalf("read back %d bytes after the restart, want %d", len(got), len(want))
	}
	// Base offsets are assigned on append; compare past each batch's.
	for _, b := range []struct{ at, n int }{{0, len(first)}, {len(first), len(big)}} {
		if string(got[b.at+8:b.at+b.n]) != string(want[b.at+8:b.at+b.n]) {
			t.Fatalf("the batch at byte %d reads back different after the restart", b.at)
		}
	}
}

// After a restart the partial last block of a direct-mode segment is read
// through the ring right after open: the first append restores it from
// memory instead of reading it back on the shard thread.
func TestPartialBlockIsReadBackBesideTheShard(t *testing.T) {
	for _, m := range []mode{{true, true}, {false, true}} {
		t.Run(m.String(), func(t *testing.T) {
			if err := URingAvailable(); m.uring && err != nil {
				t.Skipf("io_uring unavailable: %v", err)
			}
			r := newFaultRig(t, m, nil)
			a := r.produceOK(-1) // ~3 KiB: the segment ends inside a block
			r.restart(nil)
			// The preload is one read through the backend: wait for it.
			deadline := time.Now().Add(10 * time.Second)
			for busy := true; busy; {
				r.s.Call(func(s *Shard) { busy = len(s.reads) > 0 || len(s.readQueue) > 0 || len(s.readsReady) > 0 })
				if time.Now().After(deadline) {
					t.Fatal("the partial block's read never finished")
				}
			}
			b := r.produceOK(-1)
			st, _ := r.s.Snapshot()
			if st.Tail.Reloads != 0 || st.Tail.Restores != 1 {
				t.Fatalf("the first append after a restart: %d blocks read back on the shard thread, %d restored from memory; want 0 and 1", st.Tail.Reloads, st.Tail.Restores)
			}
			r.mustHold(a, b)
		})
	}
}
