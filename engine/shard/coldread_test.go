package shard

import (
	"bytes"
	"math/rand"
	"testing"
	"time"

	"github.com/sluice-broker/sluice/engine/storage"
	"github.com/sluice-broker/sluice/wire/compress"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/records"
)

// coldFS makes every no-wait read of the real file system look cold, so
// every header the shard needs from a segment file goes through its read
// slots (READ_FIXED on io_uring).
func coldFS() *storage.FaultyFS {
	return storage.NewFaulty(storage.OS(), storage.Rule{Ops: storage.OpReadNoWait, Err: storage.ErrWouldBlock})
}

// startColdShard starts a shard on coldFS with the test partition.
func startColdShard(t *testing.T, m mode, segmentBytes string) *Shard {
	t.Helper()
	s, err := Start(m.config(Config{ID: 0, DataDir: t.TempDir(), FS: coldFS(), PinCPU: -1}))
	if err != nil {
		t.Fatal(err)
	}
	openTestPartition(t, s, map[string]string{"segment.bytes": segmentBytes})
	return s
}

// timedBatch is a batch of n records of 1000 bytes of fill, timestamped
// base, base+1, ... ms.
func timedBatch(t *testing.T, n int, fill int, base int64) []byte {
	t.Helper()
	recs := make([]records.Record, n)
	for j := range recs {
		recs[j] = records.Record{OffsetDelta: int32(j), TimestampDelta: int64(j), Value: bytes.Repeat([]byte{byte(fill)}, 1000)}
	}
	h := records.Header{Magic: 2, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, BaseTimestamp: base}
	b, err := records.AppendBatch(nil, h, recs, compress.None)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type readChan chan ReadResult

func (c readChan) ReadDone(r ReadResult) { c <- r }

// readAsync runs ReadAsync and waits for its answer.
func readAsync(s *Shard, offset int64, maxBytes int) ReadResult {
	ch := make(readChan, 1)
	s.Do(func(s *Shard) { s.ReadAsync(testKey, offset, maxBytes, true, ch) })
	return <-ch
}

func listOffset(s *Shard, ts int64) (int64, int64, kerr.Code) {
	var off, found int64
	var code kerr.Code
	answered := make(chan struct{})
	s.Do(func(s *Shard) {
		s.ListOffset(testKey, ts, func(o, t int64, c kerr.Code) { off, found, code = o, t, c; close(answered) })
	})
	<-answered
	return off, found, code
}

func resultBytes(t *testing.T, r ReadResult) []byte {
	t.Helper()
	b, err := r.Data.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	r.Data.Release()
	return b
}

// Fetches and ListOffsets whose headers and batches are all cold answer
// what blocking reads answer, through the read slots.
func TestColdReadsMatchBlockingReads(t *testing.T) {
	backends(t, func(t *testing.T, m mode) {
		s := startColdShard(t, m, "1048576")
		defer s.Stop()
		base := int64(1_700_000_000_000)
		const batches = 300
		for i := 0; i < batches; i++ {
			if r := produce(s, timedBatch(t, 10, i, base+int64(i)*1000), -1); r.Err != kerr.None {
				t.Fatal(r.Err)
			}
		}
		rng := rand.New(rand.NewSource(time.Now().UnixNano()))
		for q := 0; q < 60; q++ {
			off := rng.Int63n(batches * 10)
			maxBytes := 1 + rng.Intn(200<<10)
			var want ReadResult
			s.Call(func(s *Shard) { want = s.Read(testKey, off, maxBytes, true) })
			got := readAsync(s, off, maxBytes)
			if got.Err != want.Err || got.HighWatermark != want.HighWatermark || got.Data.FirstOffset != want.Data.FirstOffset ||
				got.Data.NextOffset != want.Data.NextOffset || got.Data.Len != want.Data.Len {
				t.Fatalf("read %d (%d bytes): async %+v, blocking %+v", off, maxBytes, got, want)
			}
			if !bytes.Equal(resultBytes(t, got), resultBytes(t, want)) {
				t.Fatalf("read %d: the bytes differ", off)
			}
			i := rng.Int63n(batches)
			o, ts, code := listOffset(s, base+i*1000+5)
			if code != kerr.None || o != i*10+5 || ts != base+i*1000+5 {
				t.Fatalf("ListOffsets(batch %d + 5 ms) = %d@%d %v, want %d@%d", i, o, ts, code, i*10+5, base+i*1000+5)
			}
		}
		if o, ts, code := listOffset(s, MaxTimestamp); code != kerr.None || o != batches*10-1 || ts != base+(batches-1)*1000+9 {
			t.Fatalf("ListOffsets(max) = %d@%d %v", o, ts, code)
		}
		st, _ := s.Snapshot()
		if st.Cold.Reads == 0 || st.Cold.Bytes == 0 {
			t.Fatalf("cold reads %+v: the reads did not go through the read slots", st.Cold)
		}
		t.Logf("cold reads: %+v", st.Cold)
	})
}

// A partition deleted while a cold read for it is in flight: the read
// finishes on the still-pinned file, and the fetch is answered
// NOT_LEADER_OR_FOLLOWER.
func TestColdReadOfDeletedPartition(t *testing.T) {
	backends(t, func(t *testing.T, m mode) {
		s := startColdShard(t, m, "262144")
		defer s.Stop()
		for i := 0; i < 100; i++ {
			if r := produce(s, batch(t, 8, compress.None), 1); r.Err != kerr.None {
				t.Fatal(r.Err)
			}
		}
		ch := make(readChan, 1)
		deleted := make(chan error, 1)
		s.Do(func(s *Shard) {
			s.ReadAsync(testKey, 0, 1<<20, true, ch)
			s.DeletePartition(testKey, func(err error) { deleted <- err })
		})
		if err := <-deleted; err != nil {
			t.Fatal(err)
		}
		if r := <-ch; r.Err != kerr.NotLeaderOrFollower || r.HasData {
			t.Fatalf("read of a deleted partition: %+v", r)
		}
		// Without the pin the read would meet a closed descriptor (EBADF)
		// and fall back; with io_uring, a reused descriptor number would
		// read another file.
		if st, _ := s.Snapshot(); st.Cold.Reads == 0 || st.Cold.Errors != 0 || st.Cold.Fallbacks != 0 {
			t.Fatalf("cold reads %+v: want reads, no errors and no fallbacks", st.Cold)
		}
	})
}

// More cold reads than read slots, many of them in several pieces
// (ListOffsets reading batches larger than a slot), all in flight at
// once: each is answered (a queued read must never wait behind one that
// cannot get a slot while the slot holders wait behind it).
func TestColdReadsBeyondTheSlots(t *testing.T) {
	backends(t, func(t *testing.T, m mode) {
		s := startColdShard(t, m, "1048576")
		defer func() {
			// A shard with reads stuck in its queue would never stop: fail
			// fast instead of waiting for the test binary's timeout.
			if !t.Failed() {
				s.Stop()
			}
		}()
		base := int64(1_700_000_000_000)
		for i := 0; i < 40; i++ {
			// About 100 KiB: two slots' worth.
			if r := produce(s, timedBatch(t, 100, i, base+int64(i)*1000), 1); r.Err != kerr.None {
				t.Fatal(r.Err)
			}
		}
		const n = 3 * readSlots
		type answer struct {
			i       int
			off, ts int64
			code    kerr.Code
		}
		answers := make(chan answer, 2*n)
		s.Do(func(s *Shard) {
			for i := 0; i < n; i++ {
				ts := base + int64(i%40)*1000 + 50
				s.ListOffset(testKey, ts, func(off, found int64, code kerr.Code) { answers <- answer{i, off, found, code} })
				s.ReadAsync(testKey, int64(i%40)*100, 64<<10, true, readWaiterFunc(func(r ReadResult) {
					r.Data.Release()
					answers <- answer{-1, int64(r.Data.FirstOffset), 0, r.Err}
				}))
			}
		})
		timeout := time.After(20 * time.Second)
		for k := 0; k < 2*n; k++ {
			select {
			case a := <-answers:
				if a.code != kerr.None {
					t.Fatalf("answer %+v", a)
				}
				if a.i >= 0 {
					if want := int64(a.i%40)*100 + 50; a.off != want {
						t.Fatalf("ListOffsets %d: offset %d, want %d", a.i, a.off, want)
					}
				}
			case <-timeout:
				st, _ := s.Snapshot()
				t.Fatalf("%d of %d requests answered after 20 s (cold reads %+v)", k, 2*n, st.Cold)
			}
		}
	})
}

type readWaiterFunc func(ReadResult)

func (f readWaiterFunc) ReadDone(r ReadResult) { f(r) }
