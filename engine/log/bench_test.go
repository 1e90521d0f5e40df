package log

import (
	"encoding/binary"
	"math/rand"
	"path/filepath"
	"testing"

	"github.com/sluice-broker/sluice/engine/storage"
)

func benchFS(b *testing.B) []fsCase {
	return []fsCase{
		{"os", storage.OS(), filepath.Join(b.TempDir(), "topic-0")},
		{"mem", storage.NewMem(), "data/topic-0"},
	}
}

// BenchmarkAppend appends 1 KiB batches of 16 records from an idempotent
// producer, with the shard's group-commit bookkeeping every 64 appends (the
// datasync itself is the shard's, through io_uring, and not measured) and
// retention keeping the disk bounded.
func BenchmarkAppend(b *testing.B) {
	for _, c := range benchFS(b) {
		b.Run(c.name, func(b *testing.B) {
			cfg := Config{SegmentBytes: 64 << 20, RetentionBytes: 256 << 20, RetentionMs: -1}
			l := mustOpen(b, c.fs, c.dir, cfg, Checkpoint{})
			defer l.Close()
			batch := makeBatch(batchSpec{records: 16, bodyBytes: 1024 - batchHeaderSize, pid: 1, epoch: 0, seq: 0}, 1)
			b.SetBytes(int64(len(batch)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				binary.BigEndian.PutUint32(batch[offBaseSequence:], uint32(i*16))
				if _, err := l.Append(batch, t0); err != nil {
					b.Fatal(err)
				}
				if i%64 == 63 {
					var upTo Offset
					for _, tg := range l.PendingSync() {
						upTo = max(upTo, tg.UpTo)
					}
					l.MarkSynced(upTo)
				}
				if i%65536 == 65535 {
					if _, err := l.EnforceRetention(t0); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkRead locates 1 MiB fetches at random offsets of a 64 MiB log of
// 1 KiB batches (index lookup and header walks; the bytes themselves would
// go out with sendfile and are not read).
func BenchmarkRead(b *testing.B) {
	for _, c := range benchFS(b) {
		b.Run(c.name, func(b *testing.B) {
			l := mustOpen(b, c.fs, c.dir, Config{SegmentBytes: 16 << 20}, Checkpoint{})
			defer l.Close()
			batch := makeBatch(batchSpec{records: 16, bodyBytes: 1024 - batchHeaderSize}, 1)
			for i := 0; i < 64<<10; i++ {
				mustAppend(b, l, batch)
			}
			end := l.LogEndOffset()
			rng := rand.New(rand.NewSource(1))
			offsets := make([]Offset, 4096)
			for i := range offsets {
				offsets[i] = Offset(rng.Int63n(int64(end)))
			}
			b.ReportAllocs()
			b.ResetTimer()
			var total int64
			for i := 0; i < b.N; i++ {
				r, err := l.Read(offsets[i%len(offsets)], 1<<20, true, end)
				if err != nil || r.Len == 0 {
					b.Fatal(err)
				}
				total += int64(r.Len)
				r.Seg.Release()
			}
			b.ReportMetric(float64(total)/float64(b.N), "bytes/fetch")
		})
	}
}
