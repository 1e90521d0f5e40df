package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/sluice-broker/sluice/engine/storage"
)

// Offset is a Kafka record offset.
type Offset int64

// Position is a byte position in a segment file.
type Position int64

// Epoch is a partition leader epoch.
type Epoch int32

// Config is the per-topic log configuration, in Kafka's terms. Zero fields
// take the defaults of DefaultConfig.
type Config struct {
	SegmentBytes       int64         // segment.bytes (default 1 GiB, at most 2 GiB-1)
	SegmentMs          time.Duration // segment.ms (default 7 days)
	RetentionMs        time.Duration // retention.ms; <0 = unlimited (default 7 days)
	RetentionBytes     int64         // retention.bytes; <0 = unlimited (default -1)
	IndexIntervalBytes int           // index.interval.bytes (default 4096)
	Preallocate        bool          // fallocate each new segment to SegmentBytes (KEEP_SIZE)
	// ProducerIDExpiration is producer.id.expiration.ms (default 1 day):
	// EnforceRetention forgets producers idle for longer.
	ProducerIDExpiration time.Duration
	// Tail, when set, puts the log in direct mode (tail.go), with its
	// share of this shard cache. It is fixed when the log opens.
	Tail *TailCache

	// Compaction (clean.go). Compact: cleanup.policy holds compact;
	// NoDelete: it does not hold delete, so retention by time and size
	// does not apply. Unlike the fields above, zero values are values
	// (delete.retention.ms=0 is allowed), except MaxCompactionLag, where
	// zero means Kafka's default (no maximum).
	Compact, NoDelete bool
	DeleteRetentionMs time.Duration // delete.retention.ms
	MinCleanableRatio float64       // min.cleanable.dirty.ratio
	MinCompactionLag  time.Duration // min.compaction.lag.ms
	MaxCompactionLag  time.Duration // max.compaction.lag.ms
}

// DefaultConfig returns Kafka's defaults.
func DefaultConfig() Config {
	return Config{
		SegmentBytes:         1 << 30,
		SegmentMs:            7 * 24 * time.Hour,
		RetentionMs:          7 * 24 * time.Hour,
		RetentionBytes:       -1,
		IndexIntervalBytes:   4096,
		ProducerIDExpiration: 24 * time.Hour,
	}
}

func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	if c.SegmentBytes == 0 {
		c.SegmentBytes = d.SegmentBytes
	}
	if c.SegmentMs == 0 {
		c.SegmentMs = d.SegmentMs
	}
	if c.RetentionMs == 0 {
		c.RetentionMs = d.RetentionMs
	}
	if c.RetentionBytes == 0 {
		c.RetentionBytes = d.RetentionBytes
	}
	if c.IndexIntervalBytes == 0 {
		c.IndexIntervalBytes = d.IndexIntervalBytes
	}
	if c.ProducerIDExpiration == 0 {
		c.ProducerIDExpiration = d.ProducerIDExpiration
	}
	if c.MaxCompactionLag <= 0 {
		c.MaxCompactionLag = maxDuration
	}
	if c.SegmentBytes < batchHeaderSize || c.SegmentBytes > math.MaxInt32 {
		return c, fmt.Errorf("log: segment.bytes %d out of range [%d, %d]", c.SegmentBytes, batchHeaderSize, math.MaxInt32)
	}
	if c.SegmentMs < 0 || c.IndexIntervalBytes < 0 {
		return c, fmt.Errorf("log: negative segment.ms or index.interval.bytes")
	}
	return c, nil
}

// Checkpoint is what the shard persists per partition (WriteCheckpointFile)
// and gives back to Open. The zero value means unknown: recover everything.
type Checkpoint struct {
	RecoveryPoint  Offset // every offset below it is durable
	LogStartOffset Offset
	Clean          bool // recorded after a successful Close
}

// AppendResult describes an Append.
type AppendResult struct {
	BaseOffset, LastOffset Offset
	// LogAppendTime is now in milliseconds when a batch uses LogAppendTime
	// (attribute bit 3), else -1, as the Produce response wants it.
	LogAppendTime int64
	MaxTimestamp  int64 // largest batch maxTimestamp appended
}

// SyncTarget is a file with data written but not yet datasynced.
type SyncTarget struct {
	File storage.File
	// UpTo is the log end offset the sync covers; pass the largest UpTo of
	// the completed targets to MarkSynced.
	UpTo Offset
	// Dir marks the partition directory (new or removed files): it needs a
	// full fsync rather than fdatasync. File.Datasync does the right thing.
	Dir bool
}

var (
	// ErrOffsetOutOfRange is Kafka's OFFSET_OUT_OF_RANGE.
	ErrOffsetOutOfRange = errors.New("log: offset out of range")
	// ErrClosed is returned after Close or Delete.
	ErrClosed = errors.New("log: closed")
)

// Log is one partition's log. See the package comment.
type Log struct {
	fs  storage.FS
	dir string
	cfg Config

	segs     []*segment // by base offset; the last one is the active segment
	logStart Offset
	logEnd   Offset
	hw       Offset
	// recoveryPoint: every batch below it, with its segment's directory
	// entry and (for rolled segments) index files, is durable.
	recoveryPoint Offset
	size          int64

	// The partition directory: dirGen counts file creations and removals,
	// dirSyncedGen is the last generation known durable. PendingSync notes
	// the generation and UpTo of the directory target it returned; a
	// MarkSynced reaching that UpTo makes that generation durable.
	dirFile        storage.File
	dirGen         uint64
	dirSyncedGen   uint64
	pendingDirGen  uint64
	pendingDirUpTo Offset

	// rollStartMs is when the first batch went into the active segment.
	rollStartMs int64

	maxTimestamp       int64
	maxTimestampOffset Offset
	maxTimestampKnown  bool

	producers producerState
	// epochs: the leader epochs and where each began (epochs.go).
	epochs []EpochEntry

	// err latches the first write or sync failure: the log then refuses
	// every write (sticky, as storage.Sticky does per file).
	err    error
	closed bool
	// closedClean is set by a successful Close.
	closedClean bool

	// changes counts what a checkpoint must capture (appends, deleted
	// segments, a moved log start, expired producers); checkpointed is its
	// value at the last successful Checkpoint, which is skipped, with no
	// I/O, while the two are equal.
	changes, checkpointed uint64
	checkpointedPoint     Checkpoint
	haveCheckpoint        bool

	// syncDeferred: the latest PendingSync could not open the directory
	// for want of descriptors (SyncDeferred).
	syncDeferred bool

	// IndexRebuilds counts segments whose index files failed their checks
	// and were rebuilt from the batches (on this thread; the shard counts
	// the ones it rebuilt on another).
	IndexRebuilds uint64

	tail *tail // direct mode; nil in page-cache mode
	// cuts are segments whose zero padding was truncated off (direct mode)
	// and not yet synced: a datasync must make the shorter size durable
	// even when their data already was.
	cuts []*segment

	// nw reads segment files without waiting (BeginNoWait); truncGen
	// counts truncations, which invalidate regions fetched before them.
	nw       noWaitReader
	truncGen uint64

	header  [batchHeaderSize]byte // scratch for header reads on the read path
	targets []SyncTarget          // PendingSync's reused result
	// syncRound counts PendingSync calls; MarkSynced answers the latest.
	syncRound uint64
	buf       []byte // scratch for index and snapshot encoding

	// capture is the producer snapshot CaptureSnapshot encoded at
	// captureAt, for CheckpointSynced to write once the recovery point
	// reaches it; captured says it is current.
	capture   []byte
	captureAt Offset
	captured  bool

	// Compaction (clean.go): cleanedTo is where the last pass ended
	// (cleaner.offset), where the next one's dirty part starts; up to
	// gapsBelow batches may have gaps between them (cleaner.offset, and
	// replica.gaps for a standby's copy of its primary's gaps). cleaning
	// is the job planned and not yet ended; swapping says it is renaming
	// files.
	cleanedTo   Offset
	gapsBelow   Offset
	cleanerGaps Offset // the gap bound in cleaner.offset
	cleaning    *CleanJob
	swapping    bool
}

// Open opens (creating if needed) the partition log in dir, recovering it
// as described in the package comment.
func Open(fs storage.FS, dir string, cfg Config, cp Checkpoint, now time.Time) (*Log, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	l := &Log{fs: fs, dir: dir, cfg: cfg, producers: newProducerState(), maxTimestamp: noTimestamp}
	if err := l.open(cp, now); err != nil {
		l.closeFiles()
		return nil, err
	}
	// Open made everything present durable: its recovery point is the
	// log's first checkpoint, with nothing to write for it. A start with
	// thousands of partitions would otherwise datasync each one's index
	// files and producer snapshot before serving (MarkStarted), or stall
	// the first periodic checkpoint doing it; the checkpoint after the
	// log's first change writes them. Recovery never trusts them unchecked
	// (positionBelow checks the last index entry; a stale snapshot only
	// means more to replay). It is also what a failed log falls back to.
	l.checkpointedPoint = Checkpoint{RecoveryPoint: l.recoveryPoint, LogStartOffset: l.logStart}
	l.checkpointed, l.haveCheckpoint = l.changes, true
	if cfg.Tail != nil {
		l.tail = &tail{cache: cfg.Tail, log: l}
		if err := l.openDirect(); err != nil {
			l.closeFiles()
			return nil, err
		}
	}
	return l, nil
}

func (l *Log) active() *segment { return l.segs[len(l.segs)-1] }

// openSegment opens base's .log file (creating it if create).
func (l *Log) openSegment(base Offset, create bool) (*segment, error) {
	flag := os.O_RDWR
	if create {
		flag |= os.O_CREATE | os.O_EXCL
	}
	f, err := l.fs.OpenFile(segmentName(l.dir, base, logSuffix), flag, 0o644)
	if err != nil {
		return nil, err
	}
	s := &segment{base: base, file: f, ref: newSegmentRef(f), maxTimestamp: noTimestamp, maxTimestampOffset: base}
	if create {
		s.loaded = true
		if l.cfg.Preallocate {
			// Best effort: preallocation only makes later syncs cheaper.
			_ = f.Allocate(0, l.cfg.SegmentBytes)
		}
	} else if s.size, err = f.Size(); err != nil {
		f.Close()
		return nil, err
	}
	return s, nil
}

// ErrDiskFull reports that the file system had no room (ENOSPC, EDQUOT)
// for an append, a roll or a checkpoint. It does not fail the log: nothing
// of the append is in it, what a write put past the log's end is cut off,
// and the same call succeeds once space returns (retention, DeleteRecords,
// a deleted topic, the operator). The error wraps the file system's.
var ErrDiskFull = errors.New("log: no space left on the device")

// ErrNoDescriptors reports that a file the log needed could not be opened
// for want of file descriptors (EMFILE, ENFILE). Like ErrDiskFull it does
// not fail the log: nothing changed, and the same call succeeds once
// descriptors are free again.
var ErrNoDescriptors = errors.New("log: no file descriptor left")

// writeFailed is what a failed write (or the open of a file to write)
// means for the log: a full disk or a lack of descriptors leaves it
// writable (ErrDiskFull, ErrNoDescriptors); any other error fails it for
// good.
func (l *Log) writeFailed(err error) error {
	switch {
	case storage.IsNoSpace(err):
		return fmt.Errorf("%w (%w)", ErrDiskFull, err)
	case storage.IsOutOfDescriptors(err):
		return fmt.Errorf("%w (%w)", ErrNoDescriptors, err)
	}
	return l.fail(err)
}

// fail latches err as the log's sticky error.
func (l *Log) fail(err error) error {
	if l.err == nil {
		l.err = err
	}
	return l.err
}

func (l *Log) writable() error {
	if l.closed {
		return ErrClosed
	}
	return l.err
}

// Append appends one or more whole v2 batches laid end to end in batches,
// assigning offsets from LogEndOffset by rewriting each baseOffset in place.
// The caller validated them (CRC, records); Append checks framing only.
// Producer state is recorded for batches with a producer id; call
// CheckProducer first. Nothing is fsynced: see PendingSync.
func (l *Log) Append(batches []byte, now time.Time) (AppendResult, error) {
	return l.append(batches, now, false, assignOffsets)
}

// AppendCheckingCRC is Append for batches whose CRC-32C the caller has not
// checked: a batch whose CRC does not match fails the whole append with a
// *CRCError and appends nothing. In direct mode each block of a batch is
// checked right after it is copied into the tail cache, while it is still
// in the CPU's cache: one pass over the bytes from memory instead of two.
func (l *Log) AppendCheckingCRC(batches []byte, now time.Time) (AppendResult, error) {
	return l.append(batches, now, true, assignOffsets)
}

// AppendReplicated is AppendCheckingCRC for a standby's copy of its
// primary's batches: their offsets are kept, not assigned. They must
// start at or past the log end offset and only grow; a gap between two
// batches (the primary's compaction removed what lay between) is kept as
// it is, and recorded before the bytes are written (replica.gaps) so that
// a recovery scan accepts it. The bound recorded is at least bound (the
// primary's high watermark): one write covers a whole catch-up.
func (l *Log) AppendReplicated(batches []byte, now time.Time, bound Offset) (AppendResult, error) {
	return l.append(batches, now, true, max(bound, 0))
}

// assignOffsets, as append's gapBound: the log assigns the offsets.
const assignOffsets Offset = -1

// append appends batches; gapBound is assignOffsets, or the bound
// AppendReplicated records for a gap when the batches keep their offsets.
func (l *Log) append(batches []byte, now time.Time, checkCRC bool, gapBound Offset) (AppendResult, error) {
	keepOffsets := gapBound != assignOffsets
	if err := l.writable(); err != nil {
		return AppendResult{}, err
	}
	l.changes++
	// Pass 1: framing and the offset span.
	var span int64
	newEpoch := false
	gap := false
	expected := l.logEnd
	for pos := 0; pos < len(batches); {
		if len(batches)-pos < batchHeaderSize {
			return AppendResult{}, ErrCorruptBatch
		}
		h := parseHeader(batches[pos:])
		if !h.framingOK() || h.size() > int64(len(batches)-pos) {
			return AppendResult{}, ErrCorruptBatch
		}
		newEpoch = newEpoch || Epoch(h.leaderEpoch) > l.LatestEpoch()
		span += int64(h.lastOffsetDelta) + 1
		if keepOffsets {
			if h.baseOffset < expected {
				return AppendResult{}, fmt.Errorf("%w: batch at offset %d below the log end %d", ErrCorruptBatch, h.baseOffset, expected)
			}
			gap = gap || h.baseOffset > expected
			expected = h.lastOffset() + 1
			span = int64(expected - l.logEnd)
		}
		pos += int(h.size())
	}
	if span == 0 {
		return AppendResult{}, ErrCorruptBatch
	}
	if int64(len(batches)) > l.cfg.SegmentBytes {
		return AppendResult{}, fmt.Errorf("%w: %d bytes exceed segment.bytes", ErrCorruptBatch, len(batches))
	}

	seg := l.active()
	if seg.size > 0 && (seg.size+int64(len(batches)) > l.cfg.SegmentBytes ||
		now.UnixMilli()-l.rollStartMs >= l.cfg.SegmentMs.Milliseconds() ||
		int64(l.logEnd)+span-int64(seg.base) > math.MaxUint32) {
		if checkCRC {
			// A corrupt set must not roll the log (its span may be
			// nonsense): check before, as Kafka does. Rolls are rare.
			if err := checkCRCs(batches); err != nil {
				return AppendResult{}, err
			}
			checkCRC = false // checked: the copy need not check again
		}
		if l.tail != nil && !l.tail.idle() {
			return AppendResult{}, ErrTailBusy
		}
		if err := l.roll(); err != nil {
			return AppendResult{}, err
		}
		seg = l.active()
	}

	// Pass 2: assign offsets (baseOffset is outside the CRC).
	next := l.logEnd
	if keepOffsets {
		next = expected
		if gap && next > l.gapsBelow {
			// Durable before the batches are: a recovery scan must not
			// take the gap for the end of the log.
			bound := max(next, gapBound)
			if err := writeOffsetFile(l.fs, filepath.Join(l.dir, replicaGapsName), replicaMagic, bound); err != nil {
				return AppendResult{}, l.writeFailed(err)
			}
			l.gapsBelow = bound
		}
	}
	for pos := 0; pos < len(batches) && !keepOffsets; {
		binary.BigEndian.PutUint64(batches[pos+offBaseOffset:], uint64(next))
		h := parseHeader(batches[pos:])
		next = h.lastOffset() + 1
		pos += int(h.size())
	}

	if newEpoch {
		// Rare: a standby's first batch of a new epoch (a primary begins
		// its epoch before it writes). Recorded before the bytes land.
		if err := l.noteBatchEpochs(batches); err != nil {
			return AppendResult{}, l.fail(err)
		}
	}

	buffered := l.tail == nil
	if !buffered && l.tail.chunksFor(len(batches)) > l.tail.cache.totalChunks() {
		// Larger than the whole cache: written through the page cache,
		// once the direct writer is idle (never two writers of a block).
		if !l.tail.idle() {
			return AppendResult{}, ErrTailBusy
		}
		buffered = true
	}
	if buffered {
		if checkCRC {
			if err := checkCRCs(batches); err != nil {
				return AppendResult{}, err
			}
		}
		if _, err := seg.file.WriteAt(batches, seg.size); err != nil {
			if storage.IsNoSpace(err) && l.tail == nil {
				// Cut what the write put past the end: in page-cache mode
				// the file size is the bytes of whole batches. (In direct
				// mode the bytes past the end lie in allocated space the
				// next append overwrites.)
				if terr := seg.file.Truncate(seg.size); terr != nil {
					return AppendResult{}, l.fail(terr)
				}
			}
			return AppendResult{}, l.writeFailed(err)
		}
	} else if err := l.appendDirect(seg, batches, checkCRC); err != nil {
		return AppendResult{}, err
	}

	// Pass 3: bookkeeping, now that the bytes are in the file.
	res := AppendResult{BaseOffset: l.logEnd, LogAppendTime: -1, MaxTimestamp: noTimestamp}
	if seg.size == 0 {
		l.rollStartMs = now.UnixMilli()
	}
	interval := int64(l.cfg.IndexIntervalBytes)
	for pos := 0; pos < len(batches); {
		h := parseHeader(batches[pos:])
		seg.addBatch(&h, seg.size+int64(pos), interval)
		if h.maxTimestamp > res.MaxTimestamp {
			res.MaxTimestamp = h.maxTimestamp
		}
		if l.maxTimestampKnown && h.maxTimestamp > l.maxTimestamp {
			l.maxTimestamp, l.maxTimestampOffset = h.maxTimestamp, h.baseOffset
		}
		if h.attributes&attrLogAppendTime != 0 {
			res.LogAppendTime = now.UnixMilli()
		}
		if h.producerID >= 0 {
			ctl := controlNone
			if h.attributes&attrControl != 0 {
				ctl = controlTypeOf(batches[pos:])
			}
			l.producers.apply(&h, ctl, l.hw)
		}
		pos += int(h.size())
	}
	seg.size += int64(len(batches))
	l.size += int64(len(batches))
	l.logEnd = next
	res.LastOffset = next - 1
	if buffered && l.tail != nil {
		l.tail.reset(seg.size, l.logEnd)
	}
	return res, nil
}

// roll closes the active segment for writing and starts a new one at the
// log end offset. The rolled segment's index files are written now and
// synced with its data (PendingSync).
func (l *Log) roll() error {
	old := l.active()
	if l.tail != nil {
		// The direct writer is idle: cut the zero padding off the old
		// segment before the new one can be written.
		if err := l.flushDirect(old); err != nil {
			return err
		}
	}
	old.sealTimeIndex()
	// A full disk fails the roll, not the log: nothing has changed that a
	// later roll does not do again.
	if err := l.writeIndexFiles(old); err != nil {
		return l.writeFailed(err)
	}
	seg, err := l.openSegment(l.logEnd, true)
	if err != nil {
		return l.writeFailed(err)
	}
	old.rolled, old.next, old.indexDurable = true, l.logEnd, false
	l.segs = append(l.segs, seg)
	l.markDirChanged()
	if l.tail != nil {
		if err := l.openDirect(); err != nil {
			return l.fail(err)
		}
	}
	return nil
}

func (l *Log) markDirChanged() { l.dirGen++ }

func (l *Log) dirDirty() bool { return l.dirGen > l.dirSyncedGen }

// writeIndexFiles writes the entries of seg's indexes not yet in its index
// files, creating them if needed. It does not sync them.
func (l *Log) writeIndexFiles(seg *segment) error {
	var err error
	if seg.indexFile == nil {
		if seg.indexFile, err = l.fs.OpenFile(segmentName(l.dir, seg.base, indexSuffix), os.O_CREATE|os.O_RDWR, 0o644); err != nil {
			return err
		}
		if !seg.indexWritten {
			seg.indexFlushed = 0
			l.markDirChanged()
		}
	}
	if seg.timeFile == nil {
		if seg.timeFile, err = l.fs.OpenFile(segmentName(l.dir, seg.base, timeIndexSuffix), os.O_CREATE|os.O_RDWR, 0o644); err != nil {
			return err
		}
		if !seg.indexWritten {
			seg.timeFlushed = 0
			l.markDirChanged()
		}
	}
	// From here on the files hold indexFlushed and timeFlushed entries: a
	// reopen after closeIndexFiles appends to them.
	seg.indexWritten = true
	l.buf = appendIndexEntries(l.buf[:0], seg.index[seg.indexFlushed:])
	if err := writeTail(seg.indexFile, l.buf, int64(seg.indexFlushed)*indexEntrySize); err != nil {
		return err
	}
	seg.indexFlushed = len(seg.index)
	l.buf = appendTimeEntries(l.buf[:0], seg.timeIndex[seg.timeFlushed:])
	if err := writeTail(seg.timeFile, l.buf, int64(seg.timeFlushed)*timeIndexEntrySize); err != nil {
		return err
	}
	seg.timeFlushed = len(seg.timeIndex)
	return nil
}

// writeTail writes b at off and cuts the file there, dropping stale entries
// a truncation left behind.
func writeTail(f storage.File, b []byte, off int64) error {
	if len(b) > 0 {
		if _, err := f.WriteAt(b, off); err != nil {
			return err
		}
	}
	size, err := f.Size()
	if err != nil {
		return err
	}
	if end := off + int64(len(b)); size > end {
		return f.Truncate(end)
	}
	return nil
}

// PendingSync returns the files holding written but not yet durable data:
// rolled segments and their index files, the active segment, and the
// partition directory when files were created or removed. The slice is
// reused by the next call. After syncing them all, call MarkSynced with the
// largest UpTo.
func (l *Log) PendingSync() []SyncTarget {
	l.targets = l.targets[:0]
	l.syncDeferred = false
	if l.closed || l.err != nil {
		return l.targets // a failed log has nothing more to make durable
	}
	first := len(l.segs) - 1
	for first > 0 && (l.segs[first-1].next > l.recoveryPoint || !l.segs[first-1].indexDurable) {
		first--
	}
	l.syncRound++
	for _, seg := range l.segs[first:] {
		if !seg.rolled {
			if w := l.WrittenOffset(); w > l.recoveryPoint {
				l.targets = append(l.targets, SyncTarget{File: seg.file, UpTo: w})
			}
			continue
		}
		if seg.next > l.recoveryPoint {
			l.targets = append(l.targets, SyncTarget{File: seg.file, UpTo: seg.next})
		}
		if !seg.indexDurable {
			// Written at roll, possibly after the data was synced.
			seg.indexListed = l.syncRound
			if seg.indexFile != nil {
				l.targets = append(l.targets, SyncTarget{File: seg.indexFile, UpTo: seg.next})
			}
			if seg.timeFile != nil {
				l.targets = append(l.targets, SyncTarget{File: seg.timeFile, UpTo: seg.next})
			}
		}
	}
	for _, seg := range l.cuts {
		seg.cutListed = l.syncRound
		listed := false
		for _, t := range l.targets {
			listed = listed || t.File == seg.file
		}
		if !listed {
			l.targets = append(l.targets, SyncTarget{File: seg.file, UpTo: l.WrittenOffset()})
		}
	}
	if l.dirDirty() {
		if l.dirFile == nil {
			// Opened only while the directory has changes to sync, and
			// closed by the MarkSynced that makes them durable: a
			// descriptor per partition would cost thousands.
			f, err := l.fs.OpenFile(l.dir, os.O_RDONLY, 0)
			if err != nil {
				// No round now: one without the directory would let
				// MarkSynced trust files whose entries may not be durable.
				if storage.IsOutOfDescriptors(err) {
					l.syncDeferred = true // a later round tries again
				} else {
					l.fail(err)
				}
				l.targets = l.targets[:0]
				return l.targets
			}
			l.dirFile = f
		}
		l.targets = append(l.targets, SyncTarget{File: l.dirFile, UpTo: l.WrittenOffset(), Dir: true})
		l.pendingDirGen, l.pendingDirUpTo = l.dirGen, l.WrittenOffset()
	}
	return l.targets
}

// SyncDeferred reports that the latest PendingSync listed nothing because
// the partition directory could not be opened for want of descriptors:
// not a failure, and not "all synced" either; try again later.
func (l *Log) SyncDeferred() bool { return l.syncDeferred }

// MarkSynced records that every target the latest PendingSync returned
// with UpTo <= upTo has been synced (each sync started after that call).
// A failed log ignores it: a datasync that succeeds after one that failed
// proves nothing about the pages the failure dropped (Linux reports a
// writeback error to one fsync and then clears it).
func (l *Log) MarkSynced(upTo Offset) {
	if l.closed || l.err != nil {
		return
	}
	if l.pendingDirGen > l.dirSyncedGen && l.pendingDirUpTo <= upTo {
		l.dirSyncedGen = l.pendingDirGen
	}
	if !l.dirDirty() && l.dirFile != nil {
		l.dirFile.Close()
		l.dirFile = nil
	}
	upTo = min(upTo, l.logEnd)
	l.recoveryPoint = max(l.recoveryPoint, upTo)
	if len(l.cuts) > 0 {
		l.cuts = slices.DeleteFunc(l.cuts, func(s *segment) bool { return s.cutListed == l.syncRound })
	}
	for seg := range l.indexPending() {
		if seg.indexListed == l.syncRound && seg.next <= upTo {
			seg.markIndexDurable()
		}
	}
}

// indexPending yields, newest first, the rolled segments whose index files
// are not durable yet. It stops at the first durable one below the
// recovery point: all older ones are durable too.
func (l *Log) indexPending() iter.Seq[*segment] {
	return func(yield func(*segment) bool) {
		for i := len(l.segs) - 2; i >= 0; i-- {
			seg := l.segs[i]
			if seg.indexDurable {
				if seg.next <= l.recoveryPoint {
					return
				}
				continue
			}
			if !yield(seg) {
				return
			}
		}
	}
}

// markIndexDurable records that seg's index files are synced: they need
// no more writes.
func (seg *segment) markIndexDurable() {
	seg.indexDurable = true
	closeIndexFiles(seg)
}

// MarkFailed tells the log that I/O it handed out failed outside
// storage.Sticky: a datasync or a write the shard ran through io_uring or
// its helper. From then on the log is failed, for good until it is opened
// again: it refuses every write, its recovery point and high watermark
// never move again, it never closes clean, and its checkpoint is the one
// it had when it failed (see Checkpoint). Only a restart, which recovers
// the log by a CRC scan from that recovery point, takes it out of this
// state.
func (l *Log) MarkFailed(err error) { l.fail(err) }

// Err returns the sticky error, if any: non-nil means the log is failed.
func (l *Log) Err() error { return l.err }

func closeIndexFiles(seg *segment) {
	if seg.indexFile != nil {
		seg.indexFile.Close()
		seg.indexFile = nil
	}
	if seg.timeFile != nil {
		seg.timeFile.Close()
		seg.timeFile = nil
	}
}

// SyncedOffset is the recovery point: every offset below it is durable.
func (l *Log) SyncedOffset() Offset { return l.recoveryPoint }

// Sync datasyncs everything PendingSync lists, synchronously (shutdown,
// tests, recovery).
func (l *Log) Sync() error {
	if err := l.writable(); err != nil {
		return err
	}
	upTo := l.WrittenOffset()
	targets := l.PendingSync()
	switch {
	case l.err != nil:
		return l.err // PendingSync failed the log: nothing was synced
	case l.syncDeferred:
		return fmt.Errorf("%w: cannot open %s to sync it", ErrNoDescriptors, l.dir)
	}
	for _, t := range targets {
		var err error
		if t.Dir {
			err = l.fs.SyncDir(l.dir)
		} else {
			err = t.File.Datasync()
		}
		if err != nil {
			return l.fail(err)
		}
	}
	l.MarkSynced(upTo)
	return nil
}

func (l *Log) LogStartOffset() Offset { return l.logStart }
func (l *Log) LogEndOffset() Offset   { return l.logEnd }

// HighWatermark is the end of what consumers may read: the offset below
// which everything is acknowledged under the durability rules. The log is
// its one owner; the shard moves it with AdvanceHighWatermark.
func (l *Log) HighWatermark() Offset { return l.hw }

// AdvanceHighWatermark raises the high watermark to off (clamped to the log
// end) and reports whether it moved. It never moves down, and never moves
// on a failed log: what lies past it may never have reached the disk.
func (l *Log) AdvanceHighWatermark(off Offset) bool {
	off = min(off, l.logEnd)
	if l.err != nil || off <= l.hw {
		return false
	}
	l.hw = off
	return true
}

// Size is the number of bytes in the log's segments.
func (l *Log) Size() int64       { return l.size }
func (l *Log) SegmentCount() int { return len(l.segs) }
func (l *Log) Dir() string       { return l.dir }

// segmentFor returns the index of the segment holding off.
func (l *Log) segmentFor(off Offset) int {
	return sort.Search(len(l.segs), func(i int) bool { return l.segs[i].base > off }) - 1
}

// Checkpoint makes the log's state durable for a fast restart and returns
// what the shard should record for this partition: it datasyncs the data,
// writes and syncs the active segment's index files, and writes the
// producer snapshot. It blocks on those syncs; call it periodically (Kafka's
// log.flush.offset.checkpoint.interval.ms), not per append. After a
// successful Close it returns the clean checkpoint without I/O.
func (l *Log) Checkpoint() (Checkpoint, error) { return l.checkpoint(true) }

// CheckpointSynced is Checkpoint without the data datasync, for the shard's
// periodic checkpoint: the recovery point it returns is what the shard's
// group-committed datasync rounds have already made durable
// (SyncedOffset), and bytes appended since stay for the next round. The
// shard runs its checkpoint on its own thread; a datasync there waited for
// the writeback of everything appended since the round before (in
// page-cache mode at max rate, hundreds of MiB), and every partition of the
// shard waited with it. The active segment's index files and the producer
// snapshot are still written and synced, and so is the metadata of rolled
// segments below the recovery point (syncRolledMetadata); all are small.
// The snapshot
// written is the one CaptureSnapshot encoded as the rounds began, when the
// rounds covered it; else the state at the log end offset, which may
// describe batches past the recovery point (if a crash loses them, recovery
// rebuilds the producer state from the log).
func (l *Log) CheckpointSynced() (Checkpoint, error) { return l.checkpoint(false) }

func (l *Log) checkpoint(syncData bool) (Checkpoint, error) {
	if l.closedClean {
		return Checkpoint{RecoveryPoint: l.logEnd, LogStartOffset: l.logStart, Clean: true}, nil
	}
	if err := l.writable(); err != nil {
		return l.fallbackCheckpoint(), err
	}
	if l.haveCheckpoint && l.checkpointed == l.changes && l.checkpointedPoint.RecoveryPoint == l.recoveryPoint {
		return l.checkpointedPoint, nil // nothing happened since: no I/O
	}
	changes := l.changes
	if !syncData {
		if err := l.syncRolledMetadata(); err != nil {
			return l.fallbackCheckpoint(), err
		}
	}
	if err := l.persistTail(syncData); err != nil {
		return l.fallbackCheckpoint(), err
	}
	cp := Checkpoint{RecoveryPoint: l.recoveryPoint, LogStartOffset: l.logStart}
	l.checkpointed, l.checkpointedPoint, l.haveCheckpoint = changes, cp, true
	return cp, nil
}

// fallbackCheckpoint is what a log records when it cannot checkpoint: it
// failed, the disk is full, or it closed without syncing. It is the last
// checkpoint it recorded, or the recovery point if that is lower (a failed
// log's froze when it failed: MarkSynced ignores later rounds), never
// clean, so that a restart scans, CRC-checks and truncates everything past
// it. The segment metadata below it was made durable before it was
// recorded (syncRolledMetadata runs before a checkpoint records a recovery
// point past a roll).
func (l *Log) fallbackCheckpoint() Checkpoint {
	return Checkpoint{RecoveryPoint: min(l.recoveryPoint, l.checkpointedPoint.RecoveryPoint), LogStartOffset: l.logStart}
}

// syncRolledMetadata makes durable what a datasync round can miss below the
// recovery point: a round that covered a segment's last byte while it was
// active moves the recovery point to its end, but the index files written
// when it rolled, and in direct mode the cut of its zero padding, came after
// the round listed its files. Recovery trusts every segment below the
// recorded recovery point to have both. The files are small and their data
// is durable, so these syncs write metadata only. The shard calls this with
// no round in flight.
func (l *Log) syncRolledMetadata() error {
	for seg := range l.indexPending() {
		if seg.next > l.recoveryPoint {
			continue
		}
		for _, f := range []storage.File{seg.indexFile, seg.timeFile} {
			if f == nil {
				continue
			}
			if err := f.Datasync(); err != nil {
				return l.fail(err)
			}
		}
		seg.markIndexDurable()
	}
	var err error
	l.cuts = slices.DeleteFunc(l.cuts, func(seg *segment) bool {
		if err != nil || !seg.rolled || seg.next > l.recoveryPoint {
			return false
		}
		if err = seg.file.Datasync(); err != nil {
			err = l.fail(err)
			return false
		}
		return true
	})
	return err
}

// persistTail syncs the active segment's indexes and the snapshot, and with
// syncData the data (rolled segments and the directory too).
func (l *Log) persistTail(syncData bool) error {
	seg := l.active()
	seg.sealTimeIndex()
	if err := l.writeIndexFiles(seg); err != nil {
		return l.writeFailed(err)
	}
	if err := seg.indexFile.Datasync(); err != nil {
		return l.fail(err)
	}
	if err := seg.timeFile.Datasync(); err != nil {
		return l.fail(err)
	}
	// Synced: the next checkpoint reopens them. Keeping them open would
	// cost two descriptors per partition between checkpoints.
	closeIndexFiles(seg)
	if syncData {
		if err := l.Sync(); err != nil { // data, rolled segments, directory
			return err
		}
	} else if l.captured && l.captureAt <= l.recoveryPoint {
		// A snapshot at or below the recovery point: after any crash it
		// describes only batches that survived.
		l.captured = false
		if err := writeFileAtomic(l.fs, filepath.Join(l.dir, snapshotName), l.capture); err != nil {
			return l.writeFailed(err) // the old snapshot stays
		}
		return nil
	}
	if err := l.writeSnapshot(); err != nil {
		return l.writeFailed(err)
	}
	return nil
}

// CaptureSnapshot encodes the producer snapshot at the log end offset for the
// next CheckpointSynced, which writes it if the datasync rounds have made
// everything below it durable by then. The shard calls it as it starts the
// periodic rounds. Only a log whose every appended byte is written can be
// captured (always in page-cache mode); otherwise CheckpointSynced writes
// the snapshot at the log end offset, which may run ahead of the recovery
// point (then a crash that loses those batches makes recovery rebuild the
// producer state from the whole log). Nothing is captured for a log that
// has not changed since its last checkpoint.
func (l *Log) CaptureSnapshot() {
	l.captured = false
	if l.closed || l.err != nil || l.WrittenOffset() != l.logEnd ||
		l.haveCheckpoint && l.checkpointed == l.changes {
		return
	}
	l.capture = l.appendSnapshot(l.capture[:0])
	l.captureAt, l.captured = l.logEnd, true
}

// Close shuts the log down cleanly: everything synced, indexes and producer
// snapshot written. Then Checkpoint returns the clean checkpoint to record.
// Pinned readers keep their segments until they release them.
func (l *Log) Close() error {
	if l.closed {
		return ErrClosed
	}
	err := l.err
	if err == nil && l.tail != nil {
		err = l.flushDirect(l.active())
	}
	if err == nil {
		err = l.persistTail(true)
	}
	l.closeFiles()
	l.closed = true
	l.closedClean = err == nil && l.err == nil
	return err
}

func (l *Log) closeFiles() {
	for _, seg := range l.segs {
		closeIndexFiles(seg)
		seg.ref.Release()
	}
	l.segs = nil
	l.cuts = nil
	if l.tail != nil {
		if l.tail.dfile != nil {
			l.tail.dfile.Close()
			l.tail.dfile = nil
		}
		l.tail.releaseAll()
	}
	if l.dirFile != nil {
		l.dirFile.Close()
		l.dirFile = nil
	}
}

// Delete closes the log and removes its directory (topic deletion). Pinned
// readers keep reading their open files.
func (l *Log) Delete() error {
	if l.swapping {
		return ErrCleanerBusy
	}
	if !l.closed {
		l.closeFiles()
		l.closed = true
	}
	if err := l.fs.RemoveAll(l.dir); err != nil {
		return err
	}
	return l.fs.SyncDir(filepath.Dir(l.dir))
}
