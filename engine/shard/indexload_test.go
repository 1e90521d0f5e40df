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

// gatedRig is a shard whose test partition, of several segments written
// before a clean restart, must load its old segments' indexes from a
// gatedFS; another partition, other, shows whether the shard still serves.
type gatedRig struct {
	t     *testing.T
	g     *gatedFS
	s     *Shard
	first []byte // the first batch written
}

var otherKey = Key{Topic: "u", Partition: 0}

func newGatedRig(t *testing.T, m mode, overrides map[string]string) *gatedRig {
	r := &gatedRig{t: t, g: &gatedFS{FS: storage.OS(), dir: "/" + testKey.Dir() + "/", gate: make(chan struct{})}}
	dir := t.TempDir()
	start := func() *Shard {
		cps, _ := log.ReadCheckpointFile(storage.OS(), filepath.Join(dir, "shard-0.checkpoint"))
		s, err := Start(m.config(Config{ID: 0, DataDir: dir, FS: r.g, PinCPU: -1, Checkpoints: cps}))
		if err != nil {
			t.Fatal(err)
		}
		openTestPartition(t, s, overrides)
		s.Call(func(s *Shard) {
			_, err = s.OpenPartition(otherKey, [16]byte{2}, config.NewTopic(config.Defaults(), nil))
		})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := start()
	for i := range 20 {
		b := batch(t, 3, compress.None)
		if res := produce(s, b, -1); res.Err != kerr.None {
			t.Fatal(res.Err)
		}
		if i == 0 {
			r.first = b
		}
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	r.s = start()
	t.Cleanup(func() {
		r.open()
		r.s.Stop()
	})
	r.g.armed.Store(true)
	return r
}

// open lets the held index opens through.
func (r *gatedRig) open() {
	select {
	case <-r.g.gate:
	default:
		close(r.g.gate)
	}
}

// waitHeld waits until an index open is held at the gate.
func (r *gatedRig) waitHeld(what string) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for r.g.waited.Load() == 0 {
		if time.Now().After(deadline) {
			r.t.Fatalf("%s never asked for an old segment's index", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// otherServed fails the test unless a produce to the other partition is
// answered while the index load is held.
func (r *gatedRig) otherServed(what string) {
	r.t.Helper()
	done := make(chan ProduceResult, 1)
	set := batch(r.t, 1, compress.None)
	r.s.Do(func(s *Shard) { s.Produce(otherKey, set, -1, func(res ProduceResult) { done <- res }) })
	select {
	case res := <-done:
		if res.Err != kerr.None {
			r.t.Fatalf("produce to another partition: %v", res.Err)
		}
	case <-time.After(10 * time.Second):
		r.t.Fatalf("the shard stalled while %s loaded an old segment's index", what)
	}
}

// After a restart an old segment's indexes are loaded beside the shard
// thread: while the disk is slow to give them, the shard goes on serving
// its other partitions, and the fetch that needed them is answered once
// they are in.
func TestOldSegmentIndexLoadDoesNotBlockTheShard(t *testing.T) {
	backends(t, func(t *testing.T, m mode) {
		r := newGatedRig(t, m, map[string]string{"segment.bytes": "20000"})
		answer := make(chan ReadResult, 1)
		r.s.Do(func(s *Shard) { s.ReadAsync(testKey, 0, 1<<20, true, readChan(answer)) })
		r.waitHeld("the fetch of the first segment")
		r.otherServed("a fetch")
		select {
		case <-answer:
			t.Fatal("the fetch was answered before its segment's index was loaded")
		default:
		}
		r.open()
		select {
		case res := <-answer:
			if res.Err != kerr.None || !bytes.HasPrefix(resultBytes(t, res), r.first) {
				t.Fatalf("the fetch after the index load: %v", res.Err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the fetch was never answered")
		}
		var st ColdStats
		r.s.Call(func(s *Shard) { st = s.cold })
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
		r := newGatedRig(t, m, map[string]string{"segment.bytes": "20000", "retention.ms": "3600000"})
		var segments int
		r.s.Call(func(s *Shard) { segments = s.parts[testKey].Log.SegmentCount() })
		// Two hours on, every closed segment has expired.
		r.s.Tick(time.Now().Add(2*time.Hour), true, false)
		r.waitHeld("retention")
		r.otherServed("retention")
		r.open()
		deadline := time.Now().Add(10 * time.Second)
		for {
			var left int
			r.s.Call(func(s *Shard) { left = s.parts[testKey].Log.SegmentCount() })
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
