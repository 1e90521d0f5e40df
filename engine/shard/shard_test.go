package shard

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-broker/sluice/engine/config"
	"github.com/sluice-broker/sluice/engine/storage"
	"github.com/sluice-broker/sluice/wire/compress"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/records"
)

// mode is a shard backend and write mode a test body runs with.
type mode struct {
	uring, direct bool
}

// config sets c's backend and write mode (a small tail cache in direct
// mode, so that appends evict and wait).
func (m mode) config(c Config) Config {
	c.URing, c.Direct = m.uring, m.direct
	if m.direct {
		c.TailCacheBytes = 1 << 20
		c.DsyncWrites = true
		c.PreZero = true
	}
	return c
}

func (m mode) String() string {
	name := "plain"
	if m.uring {
		name = "io_uring"
	}
	if m.direct {
		name += "-direct"
	}
	return name
}

// backends runs a test body on both shard backends, in both write modes.
func backends(t *testing.T, body func(t *testing.T, m mode)) {
	for _, m := range []mode{{true, false}, {false, false}, {true, true}, {false, true}} {
		t.Run(m.String(), func(t *testing.T) {
			if err := URingAvailable(); m.uring && err != nil {
				t.Skipf("io_uring unavailable: %v", err)
			}
			body(t, m)
		})
	}
}

func startShard(t *testing.T, fs storage.FS, m mode) *Shard {
	t.Helper()
	s, err := Start(m.config(Config{ID: 0, DataDir: "data", FS: fs, PinCPU: -1}))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var testKey = Key{Topic: "t", Partition: 0}

func openTestPartition(t testing.TB, s *Shard, overrides map[string]string) {
	t.Helper()
	var err error
	s.Call(func(s *Shard) {
		_, err = s.OpenPartition(testKey, [16]byte{1}, config.NewTopic(config.Defaults(), overrides))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func batch(t testing.TB, n int, codec compress.Codec) []byte {
	t.Helper()
	recs := make([]records.Record, n)
	for i := range recs {
		recs[i] = records.Record{OffsetDelta: int32(i), Key: []byte(fmt.Sprint(i)), Value: make([]byte, 1024)}
	}
	h := records.Header{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, BaseTimestamp: time.Now().UnixMilli(), Magic: 2}
	b, err := records.AppendBatch(nil, h, recs, codec)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func produce(s *Shard, set []byte, acks int16) ProduceResult {
	ch := make(chan ProduceResult, 1)
	s.Do(func(s *Shard) { s.Produce(testKey, set, acks, func(r ProduceResult) { ch <- r }) })
	return <-ch
}

func TestProduceAcksAndHighWatermark(t *testing.T) {
	backends(t, func(t *testing.T, m mode) {
		s := startShard(t, storage.NewMem(), m)
		defer s.Stop()
		openTestPartition(t, s, nil)
		for i, acks := range []int16{1, -1, 0, -1} {
			r := produce(s, batch(t, 4, compress.None), acks)
			if r.Err != kerr.None || r.BaseOffset != int64(i*4) {
				t.Fatalf("append %d (acks=%d): %+v", i, acks, r)
			}
			var off Offsets
			s.Call(func(s *Shard) { off = s.PartitionOffsets(testKey) })
			if off.HighWatermark != int64(i*4+4) {
				t.Fatalf("after an acknowledged append the high watermark is %d, want %d", off.HighWatermark, i*4+4)
			}
		}
	})
}

// TestGroupCommit: many concurrent acks=all appends share datasyncs.
func TestGroupCommit(t *testing.T) {
	backends(t, func(t *testing.T, m mode) {
		dir := t.TempDir()
		s, err := Start(m.config(Config{ID: 0, DataDir: dir, FS: storage.OS(), PinCPU: -1}))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Stop()
		openTestPartition(t, s, nil)
		const producers, each = 16, 25
		var wg sync.WaitGroup
		errs := make(chan error, producers*each)
		for p := 0; p < producers; p++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					if r := produce(s, batch(t, 1, compress.None), -1); r.Err != kerr.None {
						errs <- fmt.Errorf("%v %s", r.Err, r.ErrMessage)
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		rounds := s.Stats().SyncRounds
		t.Logf("%d acks=all appends, %d datasync rounds", producers*each, rounds)
		if rounds >= producers*each {
			t.Fatalf("no group commit: %d datasync rounds for %d appends", rounds, producers*each)
		}
	})
}

func TestDatasyncFailureIsSticky(t *testing.T) {
	backends(t, func(t *testing.T, m mode) {
		fs := storage.NewFaulty(storage.NewMem(), storage.EIO(storage.OpDatasync, "*.log", 0))
		s := startShard(t, fs, m)
		defer s.Stop()
		openTestPartition(t, s, nil)
		if r := produce(s, batch(t, 1, compress.None), -1); r.Err != kerr.KafkaStorageError {
			t.Fatalf("acks=all over a failing datasync answered %v, want KAFKA_STORAGE_ERROR", r.Err)
		}
		if r := produce(s, batch(t, 1, compress.None), 1); r.Err != kerr.KafkaStorageError {
			t.Fatalf("the partition accepted a write after a failed datasync: %v", r.Err)
		}
	})
}

// Bad batches get Kafka's error codes in every mode; in direct mode the
// CRC is checked by the log's copy into the tail cache, which must answer
// the same, name the same batch, and append nothing of the set.
func TestProduceValidation(t *testing.T) {
	backends(t, func(t *testing.T, m mode) {
		s := startShard(t, storage.NewMem(), m)
		defer s.Stop()
		openTestPartition(t, s, map[string]string{"max.message.bytes": "2000"})
		corrupt := batch(t, 1, compress.None)
		corrupt[len(corrupt)-1] ^= 0xff
		old := batch(t, 1, compress.None)
		old[16] = 1 // magic 1
		secondBad := append(batch(t, 1, compress.None), corrupt...)
		cases := []struct {
			name     string
			set      []byte
			want     kerr.Code
			badBatch int32
		}{
			{"crc", corrupt, kerr.CorruptMessage, 0},
			{"crc of the second batch", secondBad, kerr.CorruptMessage, 1},
			{"magic 1", old, kerr.UnsupportedForMessageFormat, 0},
			{"too large", batch(t, 3, compress.None), kerr.MessageTooLarge, -1},
			{"truncated", batch(t, 1, compress.None)[:40], kerr.InvalidRecord, -1},
			{"empty", []byte{}, kerr.InvalidRecord, -1},
		}
		for _, c := range cases {
			r := produce(s, c.set, 1)
			if r.Err != c.want {
				t.Errorf("%s: %v, want %v", c.name, r.Err, c.want)
			}
			if c.badBatch >= 0 && (len(r.RecordErrors) != 1 || r.RecordErrors[0].BatchIndex != c.badBatch) {
				t.Errorf("%s: record errors %+v, want one for batch %d", c.name, r.RecordErrors, c.badBatch)
			}
		}
		if _, _, end := offsetsOf(s); end != 0 {
			t.Fatalf("refused sets moved the log end to %d", end)
		}
		if r := produce(s, batch(t, 1, compress.None), -1); r.Err != kerr.None || r.BaseOffset != 0 {
			t.Fatalf("a good batch after the refusals: %+v", r)
		}
		// A retry of an appended idempotent batch is answered without an
		// append; damaged in transit, it still fails its CRC.
		h := records.Header{Magic: 2, ProducerID: 7, ProducerEpoch: 0, BaseSequence: 0, BaseTimestamp: time.Now().UnixMilli()}
		idem, err := records.AppendBatch(nil, h, []records.Record{{Value: []byte("v")}}, compress.None)
		if err != nil {
			t.Fatal(err)
		}
		if r := produce(s, idem, -1); r.Err != kerr.None {
			t.Fatalf("idempotent batch: %v", r.Err)
		}
		good := append([]byte(nil), idem...)
		idem[len(idem)-2] ^= 0x01
		if r := produce(s, idem, -1); r.Err != kerr.CorruptMessage {
			t.Fatalf("a damaged retry of an appended batch: %v, want CORRUPT_MESSAGE", r.Err)
		}
		// Kafka checks every batch's CRC before sequence numbers, sizes of
		// later batches, or duplicates: the damaged batch is the answer.
		h.BaseSequence = 5
		gap, err := records.AppendBatch(nil, h, []records.Record{{Value: []byte("v")}}, compress.None)
		if err != nil {
			t.Fatal(err)
		}
		gap[len(gap)-2] ^= 0x01
		// Damaged inside a value: well-formed records, a wrong CRC.
		damagedValue := batch(t, 1, compress.None)
		damagedValue[len(damagedValue)-100] ^= 0xff
		for _, c := range []struct {
			name string
			set  []byte
		}{
			{"damaged, and out of sequence", gap},
			{"damaged, then too large", append(append([]byte(nil), damagedValue...), batch(t, 3, compress.None)...)},
			{"damaged, then a duplicate", append(append([]byte(nil), damagedValue...), good...)},
		} {
			r := produce(s, c.set, -1)
			if r.Err != kerr.CorruptMessage || len(r.RecordErrors) != 1 || r.RecordErrors[0].BatchIndex != 0 {
				t.Errorf("%s: %v %+v, want CORRUPT_MESSAGE for batch 0", c.name, r.Err, r.RecordErrors)
			}
		}
	})
}

func TestLongPollWokenByAppend(t *testing.T) {
	s := startShard(t, storage.NewMem(), mode{})
	defer s.Stop()
	openTestPartition(t, s, nil)
	ch := make(chan struct{}, 1)
	s.Call(func(s *Shard) { s.Park(testKey, 0, ch) })
	select {
	case <-ch:
		t.Fatal("woken before any append")
	default:
	}
	produce(s, batch(t, 1, compress.None), 1)
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("an append did not wake the parked fetch")
	}
}

func TestRecompressToTopicCodec(t *testing.T) {
	s := startShard(t, storage.NewMem(), mode{})
	defer s.Stop()
	openTestPartition(t, s, map[string]string{"compression.type": "zstd"})
	if r := produce(s, batch(t, 5, compress.Gzip), 1); r.Err != kerr.None {
		t.Fatal(r.Err, r.ErrMessage)
	}
	var res ReadResult
	s.Call(func(s *Shard) { res = s.Read(testKey, 0, 1<<20, true) })
	defer res.Data.Seg.Release()
	buf := make([]byte, res.Data.Len)
	if _, err := res.Data.File.ReadAt(buf, int64(res.Data.Pos)); err != nil {
		t.Fatal(err)
	}
	h, err := records.Validate(buf)
	if err != nil {
		t.Fatal(err)
	}
	if h.Codec() != compress.Zstd || h.NumRecords != 5 {
		t.Fatalf("stored batch has codec %v and %d records, want zstd and 5", h.Codec(), h.NumRecords)
	}
}

// BenchmarkProduce measures the shard's produce path for one 16-record,
// 1 KiB-per-record batch (acks=1, page cache), allocations included: the
// goal is none per record.
func BenchmarkProduce(b *testing.B) {
	for _, m := range []mode{{false, false}, {true, false}, {true, true}} {
		b.Run(m.String(), func(b *testing.B) {
			dir := b.TempDir()
			s, err := Start(m.config(Config{ID: 0, DataDir: dir, FS: storage.OS(), PinCPU: -1}))
			if err != nil {
				b.Skip(err)
			}
			defer s.Stop()
			var openErr error
			s.Call(func(s *Shard) {
				_, openErr = s.OpenPartition(testKey, [16]byte{1}, config.NewTopic(config.Defaults(), nil))
			})
			if openErr != nil {
				b.Fatal(openErr)
			}
			set := batch(b, 16, compress.None)
			done := make(chan ProduceResult, 1)
			callback := func(r ProduceResult) { done <- r }
			op := func(s *Shard) { s.Produce(testKey, set, 1, callback) }
			b.SetBytes(int64(len(set)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s.Do(op)
				if r := <-done; r.Err != kerr.None {
					b.Fatal(r.Err)
				}
			}
		})
	}
}

// The shard's produce path allocates nothing per append, in every mode
// (what BenchmarkProduce reports, kept by a test: a per-produce escape
// once crept in unnoticed).
func TestProduceAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	for _, m := range []mode{{false, false}, {true, false}, {true, true}} {
		t.Run(m.String(), func(t *testing.T) {
			s, err := Start(m.config(Config{ID: 0, DataDir: t.TempDir(), FS: storage.OS(), PinCPU: -1}))
			if err != nil {
				t.Skip(err)
			}
			defer s.Stop()
			openTestPartition(t, s, nil)
			set := batch(t, 16, compress.None)
			done := make(chan ProduceResult, 1)
			callback := func(r ProduceResult) { done <- r }
			op := func(s *Shard) { s.Produce(testKey, set, 1, callback) }
			produceOnce := func() {
				s.Do(op)
				if r := <-done; r.Err != kerr.None {
					t.Fatal(r.Err)
				}
			}
			for range 100 { // warm up pools, maps and slices
				produceOnce()
			}
			if n := testing.AllocsPerRun(1000, produceOnce); n >= 0.5 {
				t.Fatalf("%.2f allocations per produce, want none", n)
			}
		})
	}
}

// TestListOffsetByTimestampFindsTheRecord: within a batch, ListOffsets
// answers the first record at or after the timestamp, as Kafka does, and
// MAX_TIMESTAMP the record that holds it.
func TestListOffsetByTimestampFindsTheRecord(t *testing.T) {
	for _, codec := range []compress.Codec{compress.None, compress.Zstd} {
		s := startShard(t, storage.NewMem(), mode{})
		openTestPartition(t, s, nil)
		base := int64(1_700_000_000_000)
		recs := make([]records.Record, 5)
		for i := range recs {
			recs[i] = records.Record{OffsetDelta: int32(i), TimestampDelta: int64(i * 10), Value: []byte("v")}
		}
		recs[2].TimestampDelta = 100 // the max sits in the middle
		h := records.Header{Magic: 2, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, BaseTimestamp: base}
		b, err := records.AppendBatch(nil, h, recs, codec)
		if err != nil {
			t.Fatal(err)
		}
		if r := produce(s, b, 1); r.Err != kerr.None {
			t.Fatal(r.Err)
		}
		cases := []struct{ ts, wantOff, wantTs int64 }{
			{base, 0, base},
			{base + 25, 2, base + 100},
			{base + 31, 2, base + 100},
			{MaxTimestamp, 2, base + 100},
			{base + 101, -1, -1},
		}
		for _, c := range cases {
			var off, ts int64
			var code kerr.Code
			answered := make(chan struct{})
			s.Do(func(s *Shard) {
				s.ListOffset(testKey, c.ts, func(o, t int64, c kerr.Code) { off, ts, code = o, t, c; close(answered) })
			})
			<-answered
			if code != kerr.None || off != c.wantOff || ts != c.wantTs {
				t.Errorf("%v: timestamp %d: offset %d ts %d (%v), want %d ts %d", codec, c.ts, off, ts, code, c.wantOff, c.wantTs)
			}
		}
		s.Stop()
	}
}

// TestRetentionDuringDatasyncs: retention deleting segments while datasyncs
// are in flight must not close a file under the ring (which made the fsync
// fail with EBADF and the partition refuse all writes). Appends with acks=1
// roll segments fast while periodic flushes sync them and retention deletes
// them.
func TestRetentionDuringDatasyncs(t *testing.T) {
	backends(t, func(t *testing.T, m mode) {
		s, err := Start(m.config(Config{ID: 0, DataDir: t.TempDir(), FS: storage.OS(), PinCPU: -1}))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Stop()
		openTestPartition(t, s, map[string]string{"segment.bytes": "65536", "retention.bytes": "131072"})
		stop := make(chan struct{})
		ticked := make(chan int)
		go func() {
			n := 0
			for {
				select {
				case <-stop:
					ticked <- n
					return
				default:
					s.Tick(time.Now(), true, true)
					n++
					time.Sleep(100 * time.Microsecond)
				}
			}
		}()
		set := batch(t, 16, compress.None) // ~16 KiB: a roll every 4 appends
		deadline := time.Now().Add(2 * time.Second)
		var appends atomic.Int64
		failures := make(chan string, 4)
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					acks := int16(1)
					if appends.Add(1)%8 == 0 {
						acks = -1
					}
					if r := produce(s, append([]byte(nil), set...), acks); r.Err != kerr.None {
						failures <- fmt.Sprintf("append failed while retention ran: %v %s", r.Err, r.ErrMessage)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(stop)
		ticks := <-ticked
		select {
		case f := <-failures:
			t.Fatal(f)
		default:
		}
		var off Offsets
		s.Call(func(s *Shard) { off = s.PartitionOffsets(testKey) })
		t.Logf("%d appends, %d flush and retention runs, log start %d", appends.Load(), ticks, off.LogStartOffset)
		if off.LogStartOffset == 0 {
			t.Fatal("retention never deleted a segment: the test did not exercise the race")
		}
	})
}

// TestAppendStampsLeaderEpoch: stored batches carry the leader epoch, not
// the producer's -1, as Kafka's do.
func TestAppendStampsLeaderEpoch(t *testing.T) {
	s := startShard(t, storage.NewMem(), mode{})
	defer s.Stop()
	const leaderEpoch = 3 // as after three promotions
	s.Call(func(s *Shard) { s.epoch = leaderEpoch })
	openTestPartition(t, s, nil)
	b := batch(t, 2, compress.None)
	records.SetPartitionLeaderEpoch(b, -1)
	if r := produce(s, b, 1); r.Err != kerr.None {
		t.Fatal(r.Err)
	}
	var res ReadResult
	s.Call(func(s *Shard) { res = s.Read(testKey, 0, 1<<20, true) })
	defer res.Data.Seg.Release()
	buf := make([]byte, res.Data.Len)
	if _, err := res.Data.File.ReadAt(buf, int64(res.Data.Pos)); err != nil {
		t.Fatal(err)
	}
	h, err := records.Validate(buf)
	if err != nil {
		t.Fatal(err)
	}
	if h.PartitionLeaderEpoch != leaderEpoch {
		t.Fatalf("stored batch has leader epoch %d, want %d", h.PartitionLeaderEpoch, leaderEpoch)
	}
	// The primary began the epoch in the partition before writing under it.
	var latest int32
	s.Call(func(s *Shard) { latest = s.LatestEpoch(testKey) })
	if latest != leaderEpoch {
		t.Fatalf("the partition's latest epoch is %d, want %d", latest, leaderEpoch)
	}
}

// A record set larger than segment.bytes is refused with
// RECORD_LIST_TOO_LARGE, as Kafka does, and the partition keeps taking
// appends (it used to latch the log's refusal as a storage failure).
func TestRecordSetLargerThanSegment(t *testing.T) {
	backends(t, func(t *testing.T, m mode) {
		s := startShard(t, storage.NewMem(), m)
		defer s.Stop()
		openTestPartition(t, s, map[string]string{"segment.bytes": "65536"})
		if r := produce(s, batch(t, 80, compress.None), 1); r.Err != kerr.RecordListTooLarge {
			t.Fatalf("80 KiB batch into 64 KiB segments: %v, want RECORD_LIST_TOO_LARGE", r.Err)
		}
		for i := 0; i < 3; i++ {
			if r := produce(s, batch(t, 8, compress.None), 1); r.Err != kerr.None || r.BaseOffset != int64(8*i) {
				t.Fatalf("append after the refusal: %+v", r)
			}
		}
	})
}
