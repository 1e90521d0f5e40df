package shard

import (
	"os"
	"testing"
	"time"

	"github.com/sluice-broker/sluice/engine/config"
	"github.com/sluice-broker/sluice/engine/storage"
	"github.com/sluice-broker/sluice/wire/compress"
	"github.com/sluice-broker/sluice/wire/kerr"
)

func openFDs(t *testing.T) int {
	t.Helper()
	names, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count descriptors: %v", err)
	}
	return len(names)
}

// A partition between checkpoints holds its segments' log files open and
// nothing else: one descriptor per segment, and in direct mode one more for
// the active segment (the O_DIRECT one it writes; fetches sendfile from
// the buffered one). Its directory and index files are open only while
// they have a sync to come.
// With five per partition, as before, a few thousand partitions used up a
// 20,000-descriptor limit and the broker could not start again.
func TestDescriptorsPerIdlePartition(t *testing.T) {
	backends(t, func(t *testing.T, m mode) {
		s, err := Start(m.config(Config{ID: 0, DataDir: t.TempDir(), FS: storage.OS(), PinCPU: -1}))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Stop()
		before := openFDs(t)
		const partitions = 64
		for i := range partitions {
			k := Key{Topic: "fd", Partition: int32(i)}
			s.Call(func(s *Shard) {
				// Small segments: the second append rolls, so the
				// directory has an entry to sync after the open too.
				_, err = s.OpenPartition(k, [16]byte{1}, config.NewTopic(config.Defaults(), map[string]string{"segment.bytes": "3000"}))
			})
			if err != nil {
				t.Fatal(err)
			}
			for range 2 {
				ch := make(chan ProduceResult, 1)
				set := batch(t, 2, compress.None)
				s.Do(func(s *Shard) { s.Produce(k, set, -1, func(r ProduceResult) { ch <- r }) })
				if r := <-ch; r.Err != kerr.None {
					t.Fatalf("produce to %s: %v", k.Dir(), r.Err)
				}
			}
		}
		// A checkpoint writes and syncs every partition's index files and
		// producer snapshot, then closes them.
		s.Tick(time.Now(), false, true)
		deadline := time.Now().Add(10 * time.Second)
		for busy := true; busy; {
			s.Call(func(s *Shard) { busy = s.checkpoint || len(s.syncs) > 0 || len(s.toSync) > 0 })
			if time.Now().After(deadline) {
				t.Fatal("the checkpoint did not finish")
			}
		}
		// The rolled segment's log file, the active one's, and in direct
		// mode its O_DIRECT twin.
		per := 2
		if m.direct {
			per = 3
		}
		if got := openFDs(t) - before; got > per*partitions {
			t.Fatalf("%d partitions with two segments hold %d descriptors after a checkpoint; want at most %d each", partitions, got, per)
		}
	})
}
