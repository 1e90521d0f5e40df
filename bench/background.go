package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sys/unix"
)

// backgroundReaders re-read the prefilled start of the topic, from the
// first offset to where the prefill ended, over and over, while the
// producers run (Workload.BackgroundReaders).
type backgroundReaders struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// bytes read inside the measured window [from, to) (unix nanos).
	from, to atomic.Int64
	bytes    atomic.Int64
	records  atomic.Int64
}

func (r *run) startBackgroundReaders() (*backgroundReaders, error) {
	ctx, cancel := context.WithTimeout(r.ctx, topicReadyWait)
	ends, err := r.admin.ListEndOffsets(ctx, r.topic)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("background readers: end offsets: %w", err)
	}
	limit := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { limit[o.Partition] = o.Offset })
	bg := &backgroundReaders{}
	bg.from.Store(time.Now().Add(24 * time.Hour).UnixNano())
	bg.to.Store(bg.from.Load())
	bctx, stop := context.WithCancel(r.ctx)
	bg.cancel = stop
	n := r.w.BackgroundReaders
	for i := 0; i < n; i++ {
		parts := map[int32]int64{}
		for p := i; p < r.w.Partitions; p += n {
			if limit[int32(p)] > 0 {
				parts[int32(p)] = limit[int32(p)]
			}
		}
		if len(parts) == 0 {
			continue
		}
		bg.wg.Add(1)
		go func() {
			defer bg.wg.Done()
			bg.read(bctx, r.target.Bootstrap, r.topic, parts, r.recordError("background read"))
		}()
	}
	return bg, nil
}

// read reads parts (partition → end offset) from the start to their ends,
// then starts over, until ctx ends.
func (bg *backgroundReaders) read(ctx context.Context, bootstrap, topic string, parts map[int32]int64, errs func(error)) {
	for ctx.Err() == nil {
		start := map[int32]kgo.Offset{}
		for p := range parts {
			start[p] = kgo.NewOffset().AtStart()
		}
		cl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.ClientID("sluice-bench-background"),
			kgo.FetchMaxWait(500*time.Millisecond), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: start}))
		if err != nil {
			errs(err)
			return
		}
		left := len(parts)
		done := map[int32]bool{}
		for left > 0 && ctx.Err() == nil {
			fetches := cl.PollRecords(ctx, 10000)
			fetches.EachError(func(_ string, _ int32, err error) {
				if !errors.Is(err, context.Canceled) {
					errs(err)
				}
			})
			now := time.Now().UnixNano()
			counted := now >= bg.from.Load() && now < bg.to.Load()
			fetches.EachRecord(func(rec *kgo.Record) {
				if counted {
					bg.bytes.Add(int64(len(rec.Value) + len(rec.Key)))
					bg.records.Add(1)
				}
				if !done[rec.Partition] && rec.Offset+1 >= parts[rec.Partition] {
					done[rec.Partition] = true
					left--
					cl.PauseFetchPartitions(map[string][]int32{topic: {rec.Partition}})
				}
			})
		}
		cl.Close()
	}
}

func (bg *backgroundReaders) measureFrom(from, to time.Time) {
	bg.from.Store(from.UnixNano())
	bg.to.Store(to.UnixNano())
}

func (bg *backgroundReaders) result(measured time.Duration) *Throughput {
	s := measured.Seconds()
	b := bg.bytes.Load()
	return &Throughput{Records: bg.records.Load(), Bytes: b, RecordsPerSec: float64(bg.records.Load()) / s, MiBPerSec: float64(b) / s / (1 << 20)}
}

func (bg *backgroundReaders) stop() {
	bg.cancel()
	bg.wg.Wait()
}

// dropCaches writes back dirty pages and drops the clean ones, so that what
// the prefill wrote is read from the disk.
func dropCaches() error {
	unix.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("1"), 0)
}
