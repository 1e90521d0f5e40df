package shard

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-broker/sluice/engine/storage"
	"github.com/sluice-broker/sluice/wire/compress"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/records"
)

// keyedSet builds a batch of n records with keys k(i % keys) and values
// naming their sequence number from seq.
func keyedSet(t testing.TB, seq, n, keys int) []byte {
	t.Helper()
	recs := make([]records.Record, n)
	for i := range recs {
		recs[i] = records.Record{OffsetDelta: int32(i), Key: []byte(fmt.Sprintf("k%d", (seq+i)%keys)), Value: []byte(fmt.Sprintf("v%d", seq+i))}
	}
	h := records.Header{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, BaseTimestamp: time.Now().UnixMilli()}
	b, err := records.AppendBatch(nil, h, recs, compress.Snappy)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCleanerBesideProduce runs the cleaner's thread against a shard that
// keeps taking writes, checkpoints and plans passes (run it with -race),
// then checks every key's latest value, and deletes the partition while a
// pass may be under way.
func TestCleanerBesideProduce(t *testing.T) {
	backends(t, func(t *testing.T, m mode) {
		dir := t.TempDir()
		c := StartCleaner(CleanerConfig{URing: m.uring, DedupeBytes: 1 << 20})
		s, err := Start(m.config(Config{ID: 0, DataDir: dir, FS: storage.OS(), PinCPU: -1, Cleaner: c}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			c.Stop() // first, as the broker does
			s.Stop()
		})
		openTestPartition(t, s, map[string]string{"cleanup.policy": "compact", "segment.bytes": "8192", "min.cleanable.dirty.ratio": "0.01"})
		const keys, perBatch = 17, 5
		seq := 0
		latest := map[string]string{}
		deadline := time.Now().Add(20 * time.Second)
		for c.Stats().Passes.Load() < 3 {
			if time.Now().After(deadline) {
				t.Fatalf("%d passes in 20 s (failed %d)", c.Stats().Passes.Load(), c.Stats().Failures.Load())
			}
			for range 20 {
				if r := produce(s, keyedSet(t, seq, perBatch, keys), -1); r.Err != kerr.None {
					t.Fatalf("produce: %v %s", r.Err, r.ErrMessage)
				}
				for i := range perBatch {
					latest[fmt.Sprintf("k%d", (seq+i)%keys)] = fmt.Sprintf("v%d", seq+i)
				}
				seq += perBatch
			}
			s.Tick(time.Now(), true, true) // retention, a flush and a checkpoint
			s.PlanCleaning()
		}
		// Every key's latest value, read through the shard.
		got := map[string]string{}
		read := 0
		for off := int64(0); ; {
			var rr ReadResult
			s.Call(func(s *Shard) { rr = s.Read(testKey, off, 1<<20, true) })
			if rr.Err != kerr.None {
				t.Fatalf("read at %d: %v", off, rr.Err)
			}
			if !rr.HasData {
				break
			}
			set, err := rr.Data.Bytes()
			rr.Data.Release()
			if err != nil {
				t.Fatal(err)
			}
			it := records.NewIter(set)
			for {
				batch, h, ok := it.Next()
				if !ok {
					break
				}
				records.ForEachRecord(batch, nil, func(r *records.Record) error {
					got[string(r.Key)] = string(r.Value)
					read++
					return nil
				})
				off = h.LastOffset() + 1
			}
		}
		for k, v := range latest {
			if got[k] != v {
				t.Fatalf("key %s reads %q, was last written %q", k, got[k], v)
			}
		}
		if read >= seq {
			t.Fatalf("%d records read of %d written after %d passes", read, seq, c.Stats().Passes.Load())
		}
		// Deleted while a pass may run: the pass is cancelled or ends,
		// then the directory goes.
		produce(s, keyedSet(t, seq, perBatch, keys), -1)
		s.Tick(time.Now(), false, true)
		s.PlanCleaning()
		done := make(chan error, 1)
		s.Do(func(s *Shard) { s.DeletePartition(testKey, func(err error) { done <- err }) })
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("delete: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the deletion waited 20 s")
		}
		if _, err := os.Stat(filepath.Join(dir, testKey.Dir())); !os.IsNotExist(err) {
			t.Fatalf("the partition directory is still there: %v", err)
		}
	})
}
