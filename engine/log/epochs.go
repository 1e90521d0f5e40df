package log

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Leader epochs, as Kafka keeps them: each entry says the epoch from whose
// start offset on batches were written under it. A primary records a new
// epoch (durably) before its first write in it; a standby records the
// epochs of the batches it appends. OffsetForLeaderEpoch answers from it,
// and a node that comes back after a failover uses it to find where its
// log diverged.
//
// On disk: leader-epoch-checkpoint in the partition directory, Kafka's
// format (a version line, a count line, then "epoch startOffset" lines),
// replaced atomically whenever an entry is added or removed, which happens
// at a promotion or a truncation, never per append.

const epochFileName = "leader-epoch-checkpoint"

// NoEpoch is Kafka's UNDEFINED_EPOCH (and, as an offset, the undefined
// end offset).
const NoEpoch Epoch = -1

// EpochEntry is one epoch and the first offset written under it.
type EpochEntry struct {
	Epoch Epoch
	Start Offset
}

// loadEpochs reads the epoch file and fits it to the recovered log:
// entries at or past the log end are dropped (a crash cut the log short).
// A log that has batches but no file (written before epochs were kept)
// gets epoch 0 from its start, the epoch sluice stamped then.
func (l *Log) loadEpochs() error {
	b, err := readWholeFile(l.fs, filepath.Join(l.dir, epochFileName))
	switch {
	case errors.Is(err, os.ErrNotExist):
		if l.logEnd > l.logStart {
			l.epochs = []EpochEntry{{Epoch: 0, Start: l.logStart}}
		}
		return nil
	case err != nil:
		return err
	}
	entries, err := parseEpochs(b)
	if err != nil {
		return fmt.Errorf("%s: %w", epochFileName, err)
	}
	l.epochs = entries
	if n := l.epochsBelow(l.logEnd); n < len(l.epochs) {
		l.epochs = l.epochs[:n]
		return l.writeEpochs()
	}
	return nil
}

func parseEpochs(b []byte) ([]EpochEntry, error) {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) < 2 || lines[0] != "0" {
		return nil, errors.New("not a version 0 leader epoch checkpoint")
	}
	n, err := strconv.Atoi(lines[1])
	if err != nil || n != len(lines)-2 {
		return nil, fmt.Errorf("count %q does not match %d entries", lines[1], len(lines)-2)
	}
	out := make([]EpochEntry, 0, n)
	for _, line := range lines[2:] {
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("bad entry %q", line)
		}
		e, err1 := strconv.ParseInt(f[0], 10, 32)
		s, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil || e < 0 || s < 0 {
			return nil, fmt.Errorf("bad entry %q", line)
		}
		if k := len(out); k > 0 && (Epoch(e) <= out[k-1].Epoch || Offset(s) < out[k-1].Start) {
			return nil, fmt.Errorf("entry %q out of order", line)
		}
		out = append(out, EpochEntry{Epoch: Epoch(e), Start: Offset(s)})
	}
	return out, nil
}

func (l *Log) writeEpochs() error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "0\n%d\n", len(l.epochs))
	for _, e := range l.epochs {
		fmt.Fprintf(&b, "%d %d\n", e.Epoch, e.Start)
	}
	return writeFileAtomic(l.fs, filepath.Join(l.dir, epochFileName), b.Bytes())
}

// epochsBelow is how many entries start below off.
func (l *Log) epochsBelow(off Offset) int {
	n := len(l.epochs)
	for n > 0 && l.epochs[n-1].Start >= off {
		n--
	}
	return n
}

// LatestEpoch is the newest epoch of the log, NoEpoch if it has none.
func (l *Log) LatestEpoch() Epoch {
	if len(l.epochs) == 0 {
		return NoEpoch
	}
	return l.epochs[len(l.epochs)-1].Epoch
}

// Epochs returns a copy of the epoch entries, oldest first.
func (l *Log) Epochs() []EpochEntry { return append([]EpochEntry(nil), l.epochs...) }

// BeginEpoch records, durably, that writes from the log end on are made
// under epoch e: a primary calls it at its promotion, before it takes a
// write. An epoch not newer than the latest is refused.
func (l *Log) BeginEpoch(e Epoch) error {
	if err := l.writable(); err != nil {
		return err
	}
	return l.assignEpoch(e, l.logEnd)
}

func (l *Log) assignEpoch(e Epoch, start Offset) error {
	if latest := l.LatestEpoch(); e <= latest {
		if e == latest {
			return nil
		}
		return fmt.Errorf("epoch %d is older than the log's latest, %d", e, latest)
	}
	// A new epoch at an offset where an older one starts replaces it (an
	// epoch begun with nothing written under it).
	n := l.epochsBelow(start + 1)
	if n > 0 && l.epochs[n-1].Start == start {
		n--
	}
	l.epochs = append(l.epochs[:n], EpochEntry{Epoch: e, Start: start})
	return l.writeEpochs()
}

// noteBatchEpochs records the epochs of batches about to be appended (a
// standby's, which keep the primary's epochs): before their bytes are
// written, so that no batch is ever in the log under an epoch the file
// lacks. It changes nothing unless a batch carries a newer epoch.
func (l *Log) noteBatchEpochs(batches []byte) error {
	for pos := 0; pos < len(batches); {
		h := parseHeader(batches[pos:])
		if e := Epoch(h.leaderEpoch); e > l.LatestEpoch() {
			if err := l.assignEpoch(e, Offset(h.baseOffset)); err != nil {
				return err
			}
		}
		pos += int(h.size())
	}
	return nil
}

// EndOffsetForEpoch answers OffsetForLeaderEpoch: the largest epoch not
// newer than e, and the offset where it ended (the start of the next one),
// or the log end if it is the latest. NoEpoch for both when the log knows
// no epoch that old.
//
// Kafka's rules (LeaderEpochFileCache.endOffsetFor): the latest epoch ends
// at the log end; an epoch newer than every known one is undefined; one
// older than the first ends where the first begins.
func (l *Log) EndOffsetForEpoch(e Epoch) (Epoch, Offset) {
	switch {
	case e < 0 || len(l.epochs) == 0:
		return NoEpoch, Offset(NoEpoch)
	case e == l.LatestEpoch():
		return e, l.logEnd
	case e > l.LatestEpoch():
		return NoEpoch, Offset(NoEpoch)
	case e < l.epochs[0].Epoch:
		return e, l.epochs[0].Start
	}
	for i := len(l.epochs) - 2; i >= 0; i-- {
		if l.epochs[i].Epoch <= e {
			return l.epochs[i].Epoch, l.epochs[i+1].Start
		}
	}
	return NoEpoch, Offset(NoEpoch)
}

// DropUnusedEpochs forgets epochs begun at the log end with nothing
// written under them (a primary that steps down): a standby records the
// epochs of the batches it appends, and an empty one would mislabel them.
func (l *Log) DropUnusedEpochs() {
	if n := l.epochsBelow(l.logEnd); n < len(l.epochs) {
		l.epochs = l.epochs[:n]
		if err := l.writeEpochs(); err != nil {
			l.fail(err)
		}
	}
}

// truncateEpochs drops the entries a truncation to end removed.
func (l *Log) truncateEpochs(end Offset) error {
	if n := l.epochsBelow(end); n < len(l.epochs) {
		l.epochs = l.epochs[:n]
		return l.writeEpochs()
	}
	return nil
}
