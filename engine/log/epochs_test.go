package log

import (
	"encoding/binary"
	"slices"
	"testing"
)

// withLeaderEpoch stamps a batch's partitionLeaderEpoch (outside its CRC).
func withLeaderEpoch(b []byte, e Epoch) []byte {
	binary.BigEndian.PutUint32(b[offBatchLength+4:], uint32(e))
	return b
}

func TestLeaderEpochs(t *testing.T) {
	forEachFS(t, func(t *testing.T, c fsCase) {
		cfg := Config{SegmentBytes: 4000, IndexIntervalBytes: 100}
		l := mustOpen(t, c.fs, c.dir, cfg, Checkpoint{})
		if l.LatestEpoch() != NoEpoch {
			t.Fatalf("a new log has epoch %d", l.LatestEpoch())
		}
		// A primary at epoch 0 writes 10 offsets.
		if err := l.BeginEpoch(0); err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			mustAppend(t, l, withLeaderEpoch(makeBatch(batchSpec{records: 5, bodyBytes: 20}, byte(i)), 0))
		}
		// A standby's appends carry the primary's epochs: 2 from offset 10
		// (epoch 1 was begun and never written under), then 4 from 15.
		mustAppend(t, l, withLeaderEpoch(makeBatch(batchSpec{records: 5, bodyBytes: 20}, 2), 2))
		mustAppend(t, l, withLeaderEpoch(makeBatch(batchSpec{records: 5, bodyBytes: 20}, 3), 4))
		want := []EpochEntry{{0, 0}, {2, 10}, {4, 15}}
		if got := l.Epochs(); !slices.Equal(got, want) {
			t.Fatalf("epochs %v, want %v", got, want)
		}
		for _, tc := range []struct {
			ask     Epoch
			e       Epoch
			endWant Offset
		}{{0, 0, 10}, {1, 0, 10}, {2, 2, 15}, {3, 2, 15}, {4, 4, 20}, {9, NoEpoch, -1}, {-1, NoEpoch, -1}} {
			if e, end := l.EndOffsetForEpoch(tc.ask); e != tc.e || end != tc.endWant {
				t.Errorf("EndOffsetForEpoch(%d) = %d, %d; want %d, %d", tc.ask, e, end, tc.e, tc.endWant)
			}
		}
		if err := l.BeginEpoch(3); err == nil {
			t.Error("BeginEpoch accepted an epoch older than the latest")
		}
		// The epochs survive a crash, and a truncation drops what it cut.
		l.closeFiles()
		l = mustOpen(t, c.fs, c.dir, cfg, Checkpoint{})
		if got := l.Epochs(); !slices.Equal(got, want) {
			t.Fatalf("epochs after a crash %v, want %v", got, want)
		}
		if err := l.TruncateTo(12); err != nil {
			t.Fatal(err)
		}
		// 12 lies in the batch at 10: the log ends at 10, and epoch 2,
		// which began there, is gone.
		if got, w := l.Epochs(), []EpochEntry{{0, 0}}; l.LogEndOffset() != 10 || !slices.Equal(got, w) {
			t.Fatalf("after truncating to 12: end %d, epochs %v; want 10, %v", l.LogEndOffset(), got, w)
		}
		if e, end := l.EndOffsetForEpoch(0); e != 0 || end != 10 {
			t.Errorf("after the truncation, EndOffsetForEpoch(0) = %d, %d; want 0, 10", e, end)
		}
		if e, end := l.EndOffsetForEpoch(4); e != NoEpoch || end != -1 {
			t.Errorf("after the truncation, EndOffsetForEpoch(4), newer than every epoch, = %d, %d; want undefined", e, end)
		}
		// A promotion at the log end, then a restart: the entry is begun
		// again by the node (it held no batch), and the rest stay.
		if err := l.BeginEpoch(5); err != nil {
			t.Fatal(err)
		}
		l.Close()
		l = mustOpen(t, c.fs, c.dir, cfg, Checkpoint{})
		if got, w := l.Epochs(), []EpochEntry{{0, 0}}; !slices.Equal(got, w) {
			t.Fatalf("epochs after a restart %v, want %v", got, w)
		}
		if err := l.ResetTo(100); err != nil || l.LogEndOffset() != 100 || l.LogStartOffset() != 100 || len(l.Epochs()) != 0 {
			t.Fatalf("ResetTo(100): %v, start %d end %d epochs %v", err, l.LogStartOffset(), l.LogEndOffset(), l.Epochs())
		}
		l.Close()
	})
}

// An epoch older than the log's first ends where the first begins, as in
// Kafka (a log whose early epochs retention removed).
func TestEndOffsetForAnEpochOlderThanTheFirst(t *testing.T) {
	forEachFS(t, func(t *testing.T, c fsCase) {
		l := mustOpen(t, c.fs, c.dir, Config{SegmentBytes: 4000, IndexIntervalBytes: 100}, Checkpoint{})
		defer l.Close()
		mustAppend(t, l, withLeaderEpoch(makeBatch(batchSpec{records: 5, bodyBytes: 20}, 1), 3))
		if e, end := l.EndOffsetForEpoch(1); e != 1 || end != 0 {
			t.Fatalf("EndOffsetForEpoch(1) with epochs %v = %d, %d; want 1, 0", l.Epochs(), e, end)
		}
	})
}
