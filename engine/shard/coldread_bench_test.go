package shard

import (
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluice-broker/sluice/engine/storage"
	"github.com/sluice-broker/sluice/wire/compress"
	"github.com/sluice-broker/sluice/wire/kerr"
)

// BenchmarkShardUnderColdReads measures how long the shard takes to answer
// a no-op op (its responsiveness to every other request) while a reader
// keeps fetching from random offsets of data the page cache has just
// dropped: with the blocking Read (the shard preads the batch headers
// itself, the behaviour before cold reads) and with ReadAsync (the headers
// come through the read slots), and without the reader (idle: the floor).
// Run them side by side:
//
//	go test -run '^$' -bench ShardUnderColdReads -benchtime 20000x ./engine/shard
func BenchmarkShardUnderColdReads(b *testing.B) {
	for _, reader := range []string{"idle", "blocking", "async"} {
		b.Run(reader, func(b *testing.B) { benchColdReads(b, reader) })
	}
}

func benchColdReads(b *testing.B, reader string) {
	async := reader == "async"
	if err := URingAvailable(); err != nil {
		b.Skipf("io_uring unavailable: %v", err)
	}
	dir := b.TempDir()
	s, err := Start(mode{uring: true, direct: true}.config(Config{ID: 0, DataDir: dir, FS: storage.OS(), PinCPU: -1}))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Stop()
	openTestPartition(b, s, map[string]string{"segment.bytes": "1048576"})
	set := batch(b, 60, compress.None) // about 61 KiB
	const sets = 800                   // about 48 MiB, 48 segments
	for i := 0; i < sets; i++ {
		if r := produce(s, set, 1); r.Err != kerr.None {
			b.Fatal(r.Err)
		}
	}
	var files []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".log") {
			files = append(files, p)
		}
		return err
	})
	evict := func() {
		for _, p := range files {
			if f, err := os.Open(p); err == nil {
				unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
				f.Close()
			}
		}
	}

	stop := make(chan struct{})
	var reads atomic.Int64
	var wg sync.WaitGroup
	readCold := func() {
		defer wg.Done()
		rng := rand.New(rand.NewSource(1))
		ch := make(readChan, 1)
		for {
			select {
			case <-stop:
				return
			default:
			}
			evict()
			off := rng.Int63n(sets * 60)
			if async {
				s.Do(func(s *Shard) { s.ReadAsync(testKey, off, 64<<10, true, ch) })
			} else {
				s.Do(func(s *Shard) { ch.ReadDone(s.Read(testKey, off, 64<<10, true)) })
			}
			r := <-ch
			r.Data.Release()
			reads.Add(1)
		}
	}
	if reader != "idle" {
		wg.Add(1)
		go readCold()
	}

	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		s.Call(func(*Shard) {})
		lat = append(lat, time.Since(t0))
	}
	elapsed := time.Since(start)
	b.StopTimer()
	close(stop)
	wg.Wait()
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(q(0.5), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
	b.ReportMetric(q(0.999), "p99.9-µs")
	b.ReportMetric(float64(reads.Load())/elapsed.Seconds(), "cold-fetches/s")
	st, _ := s.Snapshot()
	if async && st.Cold.Reads == 0 {
		b.Fatal("no cold reads: the page cache still held the headers")
	}
}
