package log

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sluice-broker/sluice/engine/storage"
	"github.com/sluice-broker/sluice/wire/compress"
	"github.com/sluice-broker/sluice/wire/records"
)

// txnBatch is a transactional data batch of pid.
func txnBatch(pid int64, epoch int16, seq int32, n int) []byte {
	b := makeBatch(batchSpec{records: n, bodyBytes: 40, pid: pid, epoch: epoch, seq: seq, maxTs: t0.UnixMilli()}, byte(seq))
	binary.BigEndian.PutUint16(b[offAttributes:], attrTransactional)
	binary.BigEndian.PutUint32(b[offCRC:], batchCRC(b))
	return b
}

// marker is a transaction marker of pid as Kafka's coordinator writes it,
// built with the wire encoder (an independent check of controlTypeOf).
func marker(t testing.TB, pid int64, epoch int16, typ int16) []byte {
	t.Helper()
	key := binary.BigEndian.AppendUint16([]byte{0, 0}, uint16(typ))
	value := []byte{0, 0, 0, 0, 0, 7} // version 0, coordinator epoch 7
	h := records.Header{ProducerID: pid, ProducerEpoch: epoch, BaseSequence: -1, BaseTimestamp: t0.UnixMilli(),
		Attributes: records.AttrControl | records.AttrTransactional}
	b, err := records.AppendBatch(nil, h, []records.Record{{Key: key, Value: value}}, compress.None)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestControlTypeOf(t *testing.T) {
	if got := controlTypeOf(marker(t, 1, 0, ControlCommit)); got != ControlCommit {
		t.Errorf("commit marker: %d", got)
	}
	if got := controlTypeOf(marker(t, 1, 0, ControlAbort)); got != ControlAbort {
		t.Errorf("abort marker: %d", got)
	}
	if got := controlTypeOf(txnBatch(1, 0, 0, 1)); got != controlNone {
		t.Errorf("a data batch: %d", got)
	}
	m := marker(t, 1, 0, ControlAbort)
	if got := controlTypeOf(m[:batchHeaderSize+3]); got != controlNone {
		t.Errorf("a cut marker: %d", got)
	}
}

// appendHW appends and moves the high watermark to the log end, as the
// shard does once the batch is durable.
func appendHW(t *testing.T, l *Log, b []byte) {
	t.Helper()
	mustAppend(t, l, b)
	l.AdvanceHighWatermark(l.LogEndOffset())
}

// txnView is what a read_committed reader depends on.
type txnView struct {
	lso     Offset
	open    map[int64]Offset
	aborted []AbortedTxn
}

func viewOf(l *Log) txnView {
	v := txnView{lso: l.LastStableOffset(), open: map[int64]Offset{}, aborted: l.AbortedTxns(nil, 0, l.LogEndOffset())}
	for pid := range int64(10) {
		if off, ok := l.OpenTransaction(pid); ok {
			v.open[pid] = off
		}
	}
	for i := range v.aborted {
		v.aborted[i].LastStableOffset = 0 // informational: not compared
	}
	return v
}

func sameView(a, b txnView) bool {
	if a.lso != b.lso || len(a.open) != len(b.open) || !slices.Equal(a.aborted, b.aborted) {
		return false
	}
	for k, v := range a.open {
		if b.open[k] != v {
			return false
		}
	}
	return true
}

// Transactions open, commit and abort; the last stable offset and the
// aborted list follow, and survive a clean restart (snapshot), a crash
// with no checkpoint (replayed from the log), a truncation, and
// DeleteRecords.
func TestTransactionsInTheLog(t *testing.T) {
	forEachFS(t, func(t *testing.T, c fsCase) {
		cfg := Config{SegmentBytes: 400}
		l := mustOpen(t, c.fs, c.dir, cfg, Checkpoint{})
		appendHW(t, l, txnBatch(1, 0, 0, 3)) // 0-2: pid 1 opens at 0
		if lso := l.LastStableOffset(); lso != 0 {
			t.Fatalf("LSO with pid 1 open at 0: %d", lso)
		}
		appendHW(t, l, makeBatch(batchSpec{bodyBytes: 40}, 1)) // 3: not transactional
		appendHW(t, l, txnBatch(2, 0, 0, 2))                   // 4-5: pid 2 opens at 4
		appendHW(t, l, marker(t, 1, 0, ControlCommit))         // 6
		if lso := l.LastStableOffset(); lso != 4 {
			t.Fatalf("LSO after pid 1 commits, pid 2 open at 4: %d", lso)
		}
		appendHW(t, l, marker(t, 2, 0, ControlAbort)) // 7
		if lso := l.LastStableOffset(); lso != 8 {
			t.Fatalf("LSO with nothing open: %d, want the high watermark 8", lso)
		}
		want := []AbortedTxn{{ProducerID: 2, FirstOffset: 4, LastOffset: 7}}
		for _, q := range []struct {
			from, to Offset
			want     []AbortedTxn
		}{{0, 8, want}, {6, 8, want}, {7, 9, want}, {8, 9, nil}, {0, 4, nil}, {0, 5, want}} {
			got := l.AbortedTxns(nil, q.from, q.to)
			for i := range got {
				got[i].LastStableOffset = 0
			}
			if !slices.Equal(got, q.want) {
				t.Errorf("AbortedTxns(%d, %d) = %+v, want %+v", q.from, q.to, got, q.want)
			}
		}
		appendHW(t, l, txnBatch(3, 0, 0, 2)) // 8-9: pid 3 stays open
		mustAppend(t, l, txnBatch(4, 0, 0, 1))
		// 10: pid 4 opens past the high watermark (10): the LSO is the
		// earlier of the two bounds.
		if lso := l.LastStableOffset(); lso != 8 {
			t.Fatalf("LSO: %d, want 8", lso)
		}
		l.AdvanceHighWatermark(l.LogEndOffset())
		before := viewOf(l)
		wantOpen := map[int64]Offset{3: 8, 4: 10}
		if !sameView(before, txnView{lso: 8, open: wantOpen, aborted: want}) {
			t.Fatalf("state %+v", before)
		}

		// A clean restart reads it from the snapshot ...
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		cp, err := l.Checkpoint()
		if err != nil {
			t.Fatal(err)
		}
		l = mustOpen(t, c.fs, c.dir, cfg, cp)
		if got := viewOf(l); !sameView(got, before) {
			t.Fatalf("after a clean restart: %+v, want %+v", got, before)
		}
		l.closeFiles()
		// ... without the snapshot, a replay of the batch headers up to
		// the recovery point rebuilds it, markers read for their type ...
		noSnapshot := func() {
			t.Helper()
			if err := c.fs.Remove(filepath.Join(c.dir, snapshotName)); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
		}
		noSnapshot()
		l = mustOpen(t, c.fs, c.dir, cfg, cp)
		if got := viewOf(l); !sameView(got, before) {
			t.Fatalf("after a replay of the headers: %+v, want %+v", got, before)
		}
		l.closeFiles()
		// ... and so does recovery with no checkpoint at all, which checks
		// every batch.
		noSnapshot()
		l = mustOpen(t, c.fs, c.dir, cfg, Checkpoint{})
		if got := viewOf(l); !sameView(got, before) {
			t.Fatalf("after recovery from the log: %+v, want %+v", got, before)
		}

		// Truncating below pid 2's abort marker reopens its transaction.
		if err := l.TruncateTo(7); err != nil {
			t.Fatal(err)
		}
		if got := viewOf(l); !sameView(got, txnView{lso: 4, open: map[int64]Offset{2: 4}}) {
			t.Fatalf("after truncation to 7: %+v", got)
		}
		appendHW(t, l, marker(t, 2, 0, ControlAbort)) // 7 again
		appendHW(t, l, txnBatch(3, 0, 0, 1))          // 8: pid 3 opens
		appendHW(t, l, marker(t, 3, 0, ControlAbort)) // 9
		if got := viewOf(l); !sameView(got, txnView{lso: 10, open: map[int64]Offset{}, aborted: []AbortedTxn{
			{ProducerID: 2, FirstOffset: 4, LastOffset: 7}, {ProducerID: 3, FirstOffset: 8, LastOffset: 9},
		}}) {
			t.Fatalf("after two aborts: %+v", got)
		}

		// DeleteRecords past an aborted transaction's marker forgets it.
		if err := l.DeleteRecordsBefore(8); err != nil {
			t.Fatal(err)
		}
		if got := viewOf(l).aborted; len(got) != 1 || got[0].ProducerID != 3 {
			t.Fatalf("after DeleteRecords to 8: aborted %+v", got)
		}
		l.closeFiles()
	})
}

// A producer in a transaction is not expired however long it is idle
// (Kafka's rule: its transaction could never be closed); an idle producer
// without one is.
func TestOpenTransactionKeepsItsProducer(t *testing.T) {
	l := mustOpen(t, storage.NewMem(), "d/t-0", Config{SegmentBytes: 1 << 20, RetentionMs: -1, RetentionBytes: -1, ProducerIDExpiration: time.Hour}, Checkpoint{})
	appendHW(t, l, txnBatch(5, 0, 0, 1))
	appendHW(t, l, makeBatch(batchSpec{bodyBytes: 40, pid: 6, epoch: 0, seq: 0, maxTs: t0.UnixMilli()}, 0))
	if _, err := l.EnforceRetention(t0.Add(2 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n := l.ProducerCount(); n != 1 {
		t.Fatalf("%d producers after expiry, want the one in a transaction", n)
	}
	if off, ok := l.OpenTransaction(5); !ok || off != 0 {
		t.Fatalf("pid 5's transaction: %d %v", off, ok)
	}
}

// FuzzDecodeSnapshot: whatever a snapshot file holds (with a CRC that
// matches, so that the fuzzer reaches the decoder), decoding it never
// panics, and what it accepts keeps the invariants the log relies on.
func FuzzDecodeSnapshot(f *testing.F) {
	l := mustOpen(f, storage.NewMem(), "d/t-0", Config{SegmentBytes: 1 << 20}, Checkpoint{})
	mustAppend(f, l, txnBatch(1, 0, 0, 2))
	mustAppend(f, l, txnBatch(2, 0, 0, 1))
	mustAppend(f, l, marker(f, 1, 0, ControlAbort))
	mustAppend(f, l, makeBatch(batchSpec{bodyBytes: 40, pid: 3, epoch: 0, seq: 0}, 0))
	f.Add(l.appendSnapshot(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) >= snapshotHeaderSize {
			copy(b, snapshotMagic)
			binary.BigEndian.PutUint32(b[8:], crc32.Checksum(b[snapshotCRCStart:], castagnoli))
		}
		s, ok := decodeSnapshot(b)
		if !ok {
			return
		}
		for pid, first := range s.producers.open {
			if first >= s.endOffset {
				t.Fatalf("producer %d's transaction opens at %d, past the snapshot's end %d", pid, first, s.endOffset)
			}
		}
		for i, a := range s.producers.aborted {
			if a.LastOffset >= s.endOffset || a.FirstOffset > a.LastOffset || i > 0 && s.producers.aborted[i-1].LastOffset >= a.LastOffset {
				t.Fatalf("aborted transaction %d out of order or range: %+v", i, a)
			}
		}
	})
}

// FuzzControlTypeOf: any bytes as a control batch: no panic.
func FuzzControlTypeOf(f *testing.F) {
	f.Add(marker(f, 1, 0, ControlCommit))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > offAttributes+2 {
			binary.BigEndian.PutUint16(b[offAttributes:], attrControl)
		}
		controlTypeOf(b)
	})
}

// A marker raises its producer's epoch even in a partition where the
// producer has no state: a fenced producer's batch that comes after it is
// refused instead of opening a transaction nothing would close. A control
// batch of an unknown type changes nothing.
func TestMarkerFencesAnOlderEpoch(t *testing.T) {
	forEachFS(t, func(t *testing.T, c fsCase) {
		l := mustOpen(t, c.fs, c.dir, Config{SegmentBytes: 1 << 20}, Checkpoint{})
		appendHW(t, l, marker(t, 9, 1, ControlAbort)) // the fencing abort, epoch 1
		if _, err := l.CheckProducer(9, 0, 0, 0); !errors.Is(err, ErrInvalidProducerEpoch) {
			t.Fatalf("a batch of epoch 0 after a marker of epoch 1: %v", err)
		}
		appendHW(t, l, txnBatch(3, 0, 0, 1))
		appendHW(t, l, marker(t, 3, 0, 7)) // type 7: unknown
		if _, open := l.OpenTransaction(3); !open {
			t.Fatal("a control batch of an unknown type closed a transaction")
		}
		l.closeFiles()
	})
}
