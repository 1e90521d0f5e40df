package shard

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-broker/sluice/engine/config"
	"github.com/sluice-broker/sluice/engine/log"
	"github.com/sluice-broker/sluice/engine/storage"
	"github.com/sluice-broker/sluice/wire/compress"
	"github.com/sluice-broker/sluice/wire/kerr"
)

// gatedFS holds opens of one partition's index files until the gate
// opens: a disk that takes its time.
type gatedFS struct {
	storage.FS
	dir    string
	armed  atomic.Bool
	gate   chan struct{}
	waited atomic.Int32
}

func (g *gatedFS) OpenFile(name string, flag int, perm os.FileMode) (storage.File, error) {
	if g.armed.Load() && strings.Contains(name, g.dir) && strings.HasSuffix(name, ".index") {
		g.waited.Add(1)
		<-g.gate
	}
	return g.FS.OpenFile(name, flag, perm)
}

// After a restart an old segment's indexes are loaded beside the shard
// thread: while the disk is slow to give them, the shard goes on serving
// its other partitions, and the fetch that needed them is answered once
// they are in.
func TestOldSegmentIndexLoadDoesNotBlockTheShard(t *testing.T) {
	backends(t, func(t *testing.T, m mode) {
		g := &gatedFS{FS: storage.OS(), dir: "/" + testKey.Dir() + "/", gate: make(chan struct{})}
		dir := t.TempDir()
		other := Key{Topic: "u", Partition: 0}
		start := func() *Shard {
			cps, _ := log.ReadCheckpointFile(storage.OS(), filepath.Join(dir, "shard-0.checkpoint"))
			s, err := Start(m.config(Config{ID: 0, DataDir: dir, FS: g, PinCPU: -1, Checkpoints: cps}))
			if err != nil {
				t.Fatal(err)
			}
			openTestPartition(t, s, map[string]string{"segment.bytes": "20000"})
			s.Call(func(s *Shard) { _, err = s.OpenPartition(other, [16]byte{2}, config.NewTopic(config.Defaults(), nil)) })
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		s := start()
		var first []byte
		for i := range 20 {
			b := batch(t, 3, compress.None)
			if r := produce(s, b, -1); r.Err != kerr.None {
				t.Fatal(r.Err)
			}
			if i == 0 {
				first = b
			}
		}
		if err := s.Stop(); err != nil {
			t.Fatal(err)
		}
		s = start()
		defer func() {
			select {
			case <-g.gate:
			default:
				close(g.gate)
			}
			s.Stop()
		}()
		g.armed.Store(true)
		answer := make(chan ReadResult, 1)
		s.Do(func(s *Shard) { s.ReadAsync(testKey, 0, 1<<20, true, readChan(answer)) })
		deadline := time.Now().Add(10 * time.Second)
		for g.waited.Load() == 0 {
			if time.Now().After(deadline) {
				select {
				case r := <-answer:
					t.Fatalf("the fetch of the first segment never asked for its index; answered %v %d bytes", r.Err, r.Data.Len)
				default:
				}
				t.Fatal("the fetch of the first segment never asked for its index")
			}
			time.Sleep(time.Millisecond)
		}
		// The index load waits on the disk; the shard does not.
		done := make(chan ProduceResult, 1)
		set := batch(t, 1, compress.None)
		s.Do(func(s *Shard) { s.Produce(other, set, -1, func(r ProduceResult) { done <- r }) })
		select {
		case r := <-done:
			if r.Err != kerr.None {
				t.Fatalf("produce to another partition: %v", r.Err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the shard stalled while an old segment's index was being loaded")
		}
		select {
		case <-answer:
			t.Fatal("the fetch was answered before its segment's index was loaded")
		default:
		}
		close(g.gate)
		select {
		case r := <-answer:
			if r.Err != kerr.None || !bytes.HasPrefix(resultBytes(t, r), first) {
				t.Fatalf("the fetch after the index load: %v", r.Err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the fetch was never answered")
		}
		var st ColdStats
		s.Call(func(s *Shard) { st = s.cold })
		if st.IndexLoads == 0 {
			t.Fatal("no index load was counted")
		}
	})
}

// Retention's first look at an old segment after a restart loads its time
// index beside the shard too: while the disk is slow to give it, the shard
// serves its other partitions; then retention deletes what expired.
func TestRetentionIndexLoadDoesNotBlockTheShard(t *testing.T) {
	backends(t, func(t *testing.T, m mode) {
		g := &gatedFS{FS: storage.OS(), dir: "/" + testKey.Dir() + "/", gate: make(chan struct{})}
		dir := t.TempDir()
		other := Key{Topic: "u", Partition: 0}
		start := func() *Shard {
			cps, _ := log.ReadCheckpointFile(storage.OS(), filepath.Join(dir, "shard-0.checkpoint"))
			s, err := Start(m.config(Config{ID: 0, DataDir: dir, FS: g, PinCPU: -1, Checkpoints: cps}))
			if err != nil {
				t.Fatal(err)
			}
			openTestPartition(t, s, map[string]string{"segment.bytes": "20000", "retention.ms": "3600000"})
			s.Call(func(s *Shard) { _, err = s.OpenPartition(other, [16]byte{2}, config.NewTopic(config.Defaults(), nil)) })
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		s := start()
		for range 20 {
			if r := produce(s, batch(t, 3, compress.None), -1); r.Err != kerr.None {
				t.Fatal(r.Err)
			}
		}
		if err := s.Stop(); err != nil {
			t.Fatal(err)
		}
		s = start()
		defer func() {
			select {
			case <-g.gate:
			default:
				close(g.gate)
			}
			s.Stop()
		}()
		var segments int
		s.Call(func(s *Shard) { segments = s.parts[testKey].Log.SegmentCount() })
		g.armed.Store(true)
		// Two hours on, every closed segment has expired.
		s.Tick(time.Now().Add(2*time.Hour), true, false)
		deadline := time.Now().Add(10 * time.Second)
		for g.waited.Load() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("retention never asked for the oldest segment's index")
			}
			time.Sleep(time.Millisecond)
		}
		done := make(chan ProduceResult, 1)
		set := batch(t, 1, compress.None)
		s.Do(func(s *Shard) { s.Produce(other, set, -1, func(r ProduceResult) { done <- r }) })
		select {
		case r := <-done:
			if r.Err != kerr.None {
				t.Fatalf("produce to another partition: %v", r.Err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the shard stalled while retention loaded an old segment's index")
		}
		close(g.gate)
		for {
			var left int
			s.Call(func(s *Shard) { left = s.parts[testKey].Log.SegmentCount() })
			if left == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("retention left %d of %d segments; want only the active one", left, segments)
			}
			time.Sleep(time.Millisecond)
		}
	})
}
