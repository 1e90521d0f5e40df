package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sluice-broker/sluice/engine/storage"
	"github.com/sluice-broker/sluice/wire/records"
)

// Compaction: Kafka's log cleaner, for cleanup.policy=compact.
//
// A cleaning pass keeps, of the records below the first uncleanable offset,
// the latest one per key. It builds a map of key -> latest offset from the
// dirty part of the log (from the cleaned offset, where the last pass
// stopped, up to the first uncleanable offset) and then rewrites every
// segment from the log's first up to that offset, dropping each record whose
// key has a later offset in the map. Offsets never change: a batch keeps its
// baseOffset and lastOffsetDelta even when records inside it go (gaps
// appear), and a batch that loses every record goes too, unless it is the
// last one of an idempotent producer, which stays with no records (as in
// Kafka) so that the producer's sequence numbers can be rebuilt from the
// log. Compressed batches are decompressed to find their keys and what is
// kept is compressed again with the batch's codec.
//
// Tombstones (a null value) are kept for delete.retention.ms after the pass
// that first kept them: that pass writes the delete horizon (now plus
// delete.retention.ms) into the batch's base timestamp and sets attribute
// bit 6 (KIP-534; the records' timestamp deltas are adjusted so that their
// timestamps do not change), and a pass after the horizon drops them.
// Records of aborted transactions are dropped; a commit marker goes once
// no record of its transaction is left before it and its own timestamp is
// delete.retention.ms old; abort markers stay (filterBatch says why).
// Records without a key, which a compacted topic refuses at produce, are
// dropped (Kafka counts them invalid).
//
// The first uncleanable offset is the lowest of: the active segment's base,
// the log's recovery point and the recovery point of its last checkpoint
// (only durable segments are rewritten), the first unstable offset (an
// open transaction's records wait), the high watermark, and the first
// segment holding a batch younger than min.compaction.lag.ms. A pass runs when the dirty bytes are at least
// min.cleanable.dirty.ratio of the cleanable bytes, or when the first dirty
// segment holds a batch older than max.compaction.lag.ms.
//
// # Steps and threads
//
// The shard thread plans a job (PlanClean) and pins the segments it reads;
// the cleaner's own thread runs it (Run): it reads those rolled segments,
// which never change, and writes the cleaned copies as new files,
// datasynced. Back on the shard thread, CommitClean puts the new segments
// in place of the old ones in memory, unless the log was truncated or
// closed meanwhile; then the cleaner's thread renames the files into place
// (Install) and the shard thread ends the job (FinishClean). Between
// CommitClean and FinishClean the shard must not delete, truncate or reset
// the log (it defers those): the files are changing names under it.
//
// # Files and crash safety
//
// Consecutive segments are cleaned into one output segment named by the
// first one's base offset while their sizes add up to at most
// segment.bytes. For output segment B replacing the segments from B up to
// (not including) offset E:
//
//	B.log.cleaned, B.index.cleaned, B.timeindex.cleaned   written, datasynced
//	rename B.log.cleaned -> B-E.swap; sync the directory  (the commit point)
//	unlink the other segments' files and B's old index files; sync
//	rename B-E.swap -> B.log, the .cleaned indexes -> B.index and
//	B.timeindex; sync
//
// Before the first swap, cleaner.offset records E of the last output as
// the gap bound (a recovery scan accepts gaps between batches up to it)
// with the cleaned offset as it was; after the last swap, the cleaned
// offset too. Open removes *.cleaned files, and completes a B-E.swap it
// finds: it unlinks every segment file with a base offset in (B, E) and
// B's index files, then renames the swap to B.log. Either way the log
// reads the same records as before the crash, cleaned or not; index files
// that were lost on the way are rebuilt from the segment when first
// needed. An install that fails before a swap's commit point puts the old
// segments back in memory (FinishClean).

const (
	cleanedSuffix   = ".cleaned"
	swapSuffix      = ".swap"
	cleanerFileName = "cleaner.offset"
	// attrDeleteHorizon: the batch's base timestamp is its delete horizon.
	attrDeleteHorizon = 0x40
)

// ErrCleanerBusy is returned by TruncateTo, ResetTo and Delete while a
// cleaning job renames files into place (between CommitClean and
// FinishClean); the shard defers those calls until it ends.
var ErrCleanerBusy = errors.New("log: cleaner is replacing segments")

// CleanIO is how a cleaning job reads and writes files. The engine's
// cleaner does it through its own io_uring ring, rate limited; PlainIO
// calls the files directly.
type CleanIO interface {
	ReadAt(f storage.File, p []byte, off int64) (int, error)
	WriteAt(f storage.File, p []byte, off int64) (int, error)
	Datasync(f storage.File) error
}

// PlainIO is CleanIO through the files' own methods.
type PlainIO struct{}

func (PlainIO) ReadAt(f storage.File, p []byte, off int64) (int, error)  { return f.ReadAt(p, off) }
func (PlainIO) WriteAt(f storage.File, p []byte, off int64) (int, error) { return f.WriteAt(p, off) }
func (PlainIO) Datasync(f storage.File) error                            { return f.Datasync() }

// CleanStats describes a finished Run.
type CleanStats struct {
	BytesRead, BytesWritten int64
	RecordsRead, Removed    int64
	SegmentsIn, SegmentsOut int
	Duration                time.Duration
	// Skipped: the job found nothing due (min/max compaction lag) and
	// wrote nothing.
	Skipped bool
}

// cleanSource is a segment a job reads, copied from the shard's segment so
// that the cleaner's thread never touches the log.
type cleanSource struct {
	seg        *segment // identity only: CommitClean checks it is still there
	base, next Offset
	size       int64
	file       storage.File
}

// cleanOut is one output segment.
type cleanOut struct {
	seg  *segment // base, size, indexes, max timestamp; file = the .cleaned file
	srcs []cleanSource
	next Offset
}

// CleanJob is one cleaning pass over a log. See the section comment.
type CleanJob struct {
	fs          storage.FS
	dir         string
	cfg         Config
	gen         uint64
	srcs        []cleanSource
	firstDirty  Offset
	dirtyFrom   int // index in srcs of the first dirty segment
	aborted     map[int64][]AbortedTxn
	lastOfPid   map[int64]Offset
	dedupeBytes int64
	log         *Log // for the shard-side steps only

	// End is where the cleaned range ends (set by Run): the next pass's
	// dirty part starts there.
	End   Offset
	outs  []*cleanOut
	Stats CleanStats
	Err   error
	rd    *batchReader
	// cancel: the partition is being deleted (CancelCleaning). state:
	// queued, running (Start), or ended before it ran.
	cancel atomic.Bool
	state  atomic.Int32
	// What cleaner.offset held when the job was planned, and whether
	// Install wrote its new gap bound.
	prevGaps, prevCleaned Offset
	gapsWritten           bool
	// replaced: the files FinishClean took out, for ReleaseReplaced.
	replaced []*SegmentRef
}

// Dir is the partition directory of the job's log.
func (j *CleanJob) Dir() string { return j.dir }

// DirtyRatio returns the share of the cleanable bytes (closed, durable
// segments) written since the last pass, 0 for a log that is not compacted.
func (l *Log) DirtyRatio() float64 {
	if !l.cfg.Compact {
		return 0
	}
	_, clean, dirty := l.cleanableRange()
	if clean+dirty == 0 {
		return 0
	}
	return float64(dirty) / float64(clean+dirty)
}

// cleanableRange returns how many leading segments may be cleaned, and
// the clean and dirty bytes among them.
func (l *Log) cleanableRange() (n int, clean, dirty int64) {
	// The first unstable offset itself, not LastStableOffset, which is
	// raised to the log start: an open transaction that began below a
	// DeleteRecords point still has records above it.
	limit := min(l.recoveryPoint, l.checkpointedPoint.RecoveryPoint, l.producers.firstUnstable(), l.hw)
	for n < len(l.segs)-1 {
		s := l.segs[n]
		if s.next > limit || !s.indexDurable || slices.Contains(l.cuts, s) {
			break
		}
		n++
	}
	firstDirty := max(l.cleanedTo, l.logStart)
	for _, s := range l.segs[:n] {
		if s.next <= firstDirty {
			clean += s.size
		} else {
			dirty += s.size
		}
	}
	return n, clean, dirty
}

// PlanClean returns the cleaning job the log is due for, or nil: not a
// compacted topic, a job already running, nothing cleanable, or a dirty
// ratio below min.cleanable.dirty.ratio (unless max.compaction.lag.ms is
// set: then Run reads the first dirty segment's age and may skip). The
// job pins the segments it reads; run it, then hand it to CommitClean
// (which also ends a job that failed or was skipped).
func (l *Log) PlanClean(dedupeBytes int64) *CleanJob {
	if !l.cfg.Compact || l.closed || l.err != nil || l.cleaning != nil {
		return nil
	}
	n, clean, dirty := l.cleanableRange()
	if n == 0 || dirty == 0 {
		return nil
	}
	ratioDue := float64(dirty)/float64(clean+dirty) >= l.cfg.MinCleanableRatio
	if !ratioDue && l.cfg.MaxCompactionLag >= maxDuration {
		return nil
	}
	j := &CleanJob{
		fs: l.fs, dir: l.dir, cfg: l.cfg, gen: l.truncGen, log: l,
		firstDirty: max(l.cleanedTo, l.logStart), dedupeBytes: dedupeBytes,
		aborted: map[int64][]AbortedTxn{}, lastOfPid: map[int64]Offset{},
	}
	j.cfg.Tail = nil
	j.prevGaps, j.prevCleaned = l.cleanerGaps, l.cleanedTo
	if ratioDue {
		j.cfg.MaxCompactionLag = maxDuration // due already: Run need not check
	}
	j.dirtyFrom = -1
	for i, s := range l.segs[:n] {
		s.ref.acquire()
		j.srcs = append(j.srcs, cleanSource{seg: s, base: s.base, next: s.next, size: s.size, file: s.file})
		if j.dirtyFrom < 0 && s.next > j.firstDirty {
			j.dirtyFrom = i
		}
	}
	for _, a := range l.producers.aborted {
		j.aborted[a.ProducerID] = append(j.aborted[a.ProducerID], a)
	}
	for pid, e := range l.producers.producers {
		if e.n > 0 {
			j.lastOfPid[pid] = e.last().LastOffset
		}
	}
	l.cleaning = j
	return j
}

// Job states.
const (
	jobQueued int32 = iota
	jobRunning
	jobDropped
)

// Start marks the job running, on the cleaner's thread, before Run; false
// means CancelCleaning ended it while it waited in the queue: skip it.
func (j *CleanJob) Start() bool { return j.state.CompareAndSwap(jobQueued, jobRunning) }

// maxDuration is max.compaction.lag.ms's default (Long.MAX_VALUE ms).
const maxDuration = time.Duration(math.MaxInt64)

// Run cleans, on the cleaner's thread: it builds the key map from the dirty
// segments and writes the cleaned segments as .cleaned files, datasynced.
// It touches nothing of the log. Errors are in Err; CommitClean discards
// the job then.
func (j *CleanJob) Run(cio CleanIO, now time.Time) {
	start := time.Now()
	defer func() { j.Stats.Duration = time.Since(start) }()
	if cio == nil {
		cio = PlainIO{}
	}
	m, err := j.plan(cio, now)
	if err != nil || m == 0 {
		j.Err = err
		j.Stats.Skipped = err == nil
		return
	}
	keys, m, err := j.buildMap(cio, m)
	if err != nil {
		j.Err = err
		return
	}
	j.End = j.srcs[m-1].next
	if err := j.writeCleaned(cio, keys, m, now); err != nil {
		j.Err = err
		j.removeCleaned()
		j.outs = nil
	}
}

// plan applies the compaction lags, which need batch timestamps: it returns
// how many leading sources to clean (0: nothing is due).
func (j *CleanJob) plan(cio CleanIO, now time.Time) (int, error) {
	m := len(j.srcs)
	if j.cfg.MinCompactionLag <= 0 && j.cfg.MaxCompactionLag >= maxDuration {
		return m, nil
	}
	nowMs := now.UnixMilli()
	for i := j.dirtyFrom; i < len(j.srcs); i++ {
		if j.cancel.Load() {
			return 0, ErrCleanCanceled
		}
		first, largest, err := segmentTimes(cio, j.srcs[i])
		if err != nil {
			return 0, err
		}
		if i == j.dirtyFrom && j.cfg.MaxCompactionLag < maxDuration {
			// Not due by its ratio: due only if the first dirty
			// segment's first batch is older than max.compaction.lag.ms.
			if first == noTimestamp || nowMs-first <= j.cfg.MaxCompactionLag.Milliseconds() {
				return 0, nil
			}
		}
		if j.cfg.MinCompactionLag > 0 && largest != noTimestamp && nowMs-largest < j.cfg.MinCompactionLag.Milliseconds() {
			m = i // this segment and later ones are too young
			break
		}
	}
	if m <= j.dirtyFrom {
		return 0, nil
	}
	return m, nil
}

// segmentTimes returns the first batch's and the largest batch timestamp
// of a segment, reading headers only.
func segmentTimes(cio CleanIO, s cleanSource) (first, largest int64, err error) {
	first, largest = noTimestamp, noTimestamp
	var hdr [batchHeaderSize]byte
	for pos := int64(0); pos+batchHeaderSize <= s.size; {
		if n, err := cio.ReadAt(s.file, hdr[:], pos); n < batchHeaderSize {
			return 0, 0, fmt.Errorf("log: cleaner reading %s: %w", s.file.Name(), orEOF(err))
		}
		h := parseHeader(hdr[:])
		if !h.framingOK() {
			return 0, 0, fmt.Errorf("%w: %s at position %d", ErrCorruptSegment, s.file.Name(), pos)
		}
		if first == noTimestamp {
			first = h.maxTimestamp
		}
		largest = max(largest, h.maxTimestamp)
		pos += h.size()
	}
	return first, largest, nil
}

func orEOF(err error) error {
	if err == nil {
		return io.ErrUnexpectedEOF
	}
	return err
}

// keyMap maps a key to the offset of its latest record in the dirty range.
type keyMap map[string]Offset

// buildMap reads the dirty sources [dirtyFrom, m) into the key map, whole
// segments only, stopping after the segment that takes the map past the
// dedupe buffer (the first always goes in). It returns the map and how
// many sources the pass covers.
func (j *CleanJob) buildMap(cio CleanIO, m int) (keyMap, int, error) {
	keys := keyMap{}
	var mem int64
	for i := j.dirtyFrom; i < m; i++ {
		if i > j.dirtyFrom && j.dedupeBytes > 0 && mem >= j.dedupeBytes {
			return keys, i, nil
		}
		r := j.reader(cio, j.srcs[i])
		for {
			batch, h, err := r.next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, 0, err
			}
			j.Stats.BytesRead += h.size()
			if h.attributes&attrControl != 0 || j.isAborted(&h) {
				continue
			}
			err = records.ForEachRecord(batch, r.scratch[:0], func(rec *records.Record) error {
				if rec.Key == nil {
					return nil
				}
				off := h.baseOffset + Offset(rec.OffsetDelta)
				if old, ok := keys[string(rec.Key)]; ok {
					if off > old {
						keys[string(rec.Key)] = off
					}
					return nil
				}
				keys[string(rec.Key)] = off
				mem += int64(len(rec.Key)) + 48 // the key, the map's entry and string header
				return nil
			})
			if err != nil {
				return nil, 0, fmt.Errorf("%w: %s batch at offset %d: %w", ErrCorruptSegment, j.srcs[i].file.Name(), h.baseOffset, err)
			}
		}
	}
	return keys, m, nil
}

// isAborted reports whether a transactional data batch belongs to an
// aborted transaction.
func (j *CleanJob) isAborted(h *batchHeader) bool {
	if h.attributes&attrTransactional == 0 {
		return false
	}
	for _, a := range j.aborted[h.producerID] {
		if h.baseOffset >= a.FirstOffset && h.baseOffset <= a.LastOffset {
			return true
		}
	}
	return false
}

// writeCleaned rewrites sources [0, m) into output segments.
func (j *CleanJob) writeCleaned(cio CleanIO, keys keyMap, m int, now time.Time) error {
	nowMs := now.UnixMilli()
	horizon := nowMs + min(j.cfg.DeleteRetentionMs.Milliseconds(), math.MaxInt64-nowMs)
	txnData := map[int64]bool{} // a producer's transaction has records kept so far
	f := &batchFilter{keys: keys, nowMs: nowMs, horizon: horizon}
	for g := 0; g < m; {
		n, err := j.cleanGroup(cio, j.srcs[g:m], f, txnData)
		if err != nil {
			return err
		}
		j.Stats.SegmentsIn += n
		j.Stats.SegmentsOut++
		g += n
	}
	return nil
}

// cleanGroup writes one output segment from the first of srcs and as many
// after it as surely fit (what is written so far plus the next source
// whole stays within segment.bytes, and its offsets within 2^32 of the
// base), adds it to j.outs (also when it fails: removeCleaned removes its
// files) and returns how many sources it took.
func (j *CleanJob) cleanGroup(cio CleanIO, srcs []cleanSource, f *batchFilter, txnData map[int64]bool) (int, error) {
	base := srcs[0].base
	file, err := j.fs.OpenFile(segmentName(j.dir, base, logSuffix+cleanedSuffix), os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err != nil {
		return 0, err
	}
	seg := &segment{base: base, file: file, maxTimestamp: noTimestamp, maxTimestampOffset: base, loaded: true, rolled: true}
	out := &cleanOut{seg: seg}
	j.outs = append(j.outs, out)
	w := segWriter{cio: cio, seg: seg, interval: int64(j.cfg.IndexIntervalBytes)}
	n := 0
	for n < len(srcs) {
		if n > 0 && (seg.size+srcs[n].size > j.cfg.SegmentBytes || int64(srcs[n].next-base) > math.MaxUint32) {
			break
		}
		src := srcs[n]
		n++
		out.srcs, out.next = srcs[:n], src.next
		r := j.reader(cio, src)
		for {
			batch, h, err := r.next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return 0, err
			}
			kept, err := j.filterBatch(f, batch, &h, r.scratch, txnData)
			if err != nil {
				return 0, fmt.Errorf("%w: %s batch at offset %d: %w", ErrCorruptSegment, src.file.Name(), h.baseOffset, err)
			}
			if kept != nil {
				if h.producerID >= 0 && h.attributes&(attrTransactional|attrControl) == attrTransactional {
					txnData[h.producerID] = true // a marker after it is still needed
				}
				if err := w.add(kept); err != nil {
					return 0, err
				}
			}
		}
	}
	if err := w.flush(); err != nil {
		return 0, err
	}
	if err := cio.Datasync(file); err != nil {
		return 0, err
	}
	seg.sealTimeIndex()
	for _, x := range []struct {
		suffix string
		data   []byte
	}{
		{indexSuffix, appendIndexEntries(nil, seg.index)},
		{timeIndexSuffix, appendTimeEntries(nil, seg.timeIndex)},
	} {
		if err := writeSynced(j.fs, cio, segmentName(j.dir, base, x.suffix+cleanedSuffix), x.data); err != nil {
			return 0, err
		}
	}
	seg.indexFlushed, seg.timeFlushed = len(seg.index), len(seg.timeIndex)
	seg.indexWritten, seg.indexDurable = true, true
	j.Stats.BytesWritten += seg.size
	return n, nil
}

// writeSynced creates name with data, datasynced.
func writeSynced(fs storage.FS, cio CleanIO, name string, data []byte) error {
	f, err := fs.OpenFile(name, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if len(data) > 0 {
		if _, err := cio.WriteAt(f, data, 0); err != nil {
			return err
		}
	}
	return cio.Datasync(f)
}

// batchFilter holds what deciding about one record needs.
type batchFilter struct {
	keys           keyMap
	nowMs, horizon int64
	recs           []records.Record // the kept records of the batch at hand
	headers        []records.RecordHeader
	out            []byte
}

// filterBatch returns the batch to write for batch (itself, a rebuilt
// copy, or nil to drop it).
func (j *CleanJob) filterBatch(f *batchFilter, batch []byte, h *batchHeader, scratch []byte, txnData map[int64]bool) ([]byte, error) {
	j.Stats.BytesRead += h.size()
	isLast := h.producerID >= 0 && j.lastOfPid[h.producerID] == h.lastOffset()
	if h.attributes&attrControl != 0 {
		// A commit marker goes once its transaction kept nothing before
		// it and it is delete.retention.ms old. Abort markers stay: the
		// aborted transactions read_committed fetches list (txn.go) name
		// them, and a client skips the producer's records from a listed
		// transaction's first offset until it meets its marker.
		had := txnData[h.producerID]
		delete(txnData, h.producerID)
		if !had && !isLast && controlTypeOf(batch) == ControlCommit && f.nowMs-h.maxTimestamp > j.cfg.DeleteRetentionMs.Milliseconds() {
			return nil, nil
		}
		return batch, nil
	}
	hdr, err := records.ParseHeader(batch)
	if err != nil {
		return nil, err
	}
	j.Stats.RecordsRead += int64(hdr.NumRecords)
	if j.isAborted(h) {
		j.Stats.Removed += int64(hdr.NumRecords)
		if isLast {
			return f.rebuild(hdr, nil)
		}
		return nil, nil
	}
	hasHorizon := hdr.Attributes&attrDeleteHorizon != 0
	f.recs = f.recs[:0]
	f.headers = f.headers[:0:0] // earlier records' headers keep their array
	all, needHorizon := true, false
	err = records.ForEachRecord(batch, scratch[:0], func(rec *records.Record) error {
		off := h.baseOffset + Offset(rec.OffsetDelta)
		keep := rec.Key != nil
		if keep {
			if latest, ok := f.keys[string(rec.Key)]; ok && latest > off {
				keep = false
			}
		}
		if keep && rec.Value == nil {
			if hasHorizon && f.nowMs >= hdr.BaseTimestamp {
				keep = false // a tombstone past its delete horizon
			} else if !hasHorizon {
				needHorizon = true
			}
		}
		if !keep {
			all = false
			j.Stats.Removed++
			return nil
		}
		f.recs = append(f.recs, f.copyRecord(rec))
		return nil
	})
	if err != nil {
		return nil, err
	}
	switch {
	case all && !needHorizon:
		return batch, nil
	case len(f.recs) == 0 && !isLast:
		return nil, nil
	}
	if needHorizon {
		// KIP-534: the base timestamp becomes the delete horizon; the
		// records' deltas move so that their timestamps stay.
		shift := f.horizon - hdr.BaseTimestamp
		for i := range f.recs {
			f.recs[i].TimestampDelta -= shift
		}
		hdr.BaseTimestamp = f.horizon
		hdr.Attributes |= attrDeleteHorizon
	}
	return f.rebuild(hdr, f.recs)
}

// rebuild encodes a batch with hdr's fields and recs (which may be empty),
// compressed with the batch's codec.
func (f *batchFilter) rebuild(hdr records.Header, recs []records.Record) ([]byte, error) {
	if len(recs) == 0 && hdr.Attributes&records.AttrLogAppendTime == 0 {
		hdr.MaxTimestamp = hdr.BaseTimestamp // nothing left to take it from; keep the field sane
	}
	out, err := records.AppendRetained(f.out[:0], hdr, recs, hdr.Codec())
	f.out = out
	return out, err
}

// copyRecord copies rec for after ForEachRecord's callback, which reuses
// the Record and its header slice; keys, values and header names and
// values alias the batch or its decompressed copy, which stay as they are
// until the batch is rebuilt.
func (f *batchFilter) copyRecord(rec *records.Record) records.Record {
	c := *rec
	if len(rec.Headers) > 0 {
		start := len(f.headers)
		f.headers = append(f.headers, rec.Headers...)
		c.Headers = f.headers[start:len(f.headers):len(f.headers)]
	} else {
		c.Headers = nil
	}
	return c
}

// batchReader reads a source segment's batches in large sequential reads.
type batchReader struct {
	cancel  *atomic.Bool
	cio     CleanIO
	src     cleanSource
	buf     []byte
	lo, hi  int   // buf[lo:hi] holds file bytes from filePos
	filePos int64 // file position of buf[lo]
	scratch []byte
}

const cleanReadSize = 1 << 20

// reader returns the job's batch reader set to read src: one buffer for
// every segment of the pass.
func (j *CleanJob) reader(cio CleanIO, src cleanSource) *batchReader {
	if j.rd == nil {
		j.rd = &batchReader{buf: make([]byte, cleanReadSize), scratch: make([]byte, 0, cleanReadSize)}
	}
	r := j.rd
	r.cio, r.src, r.lo, r.hi, r.filePos, r.cancel = cio, src, 0, 0, 0, &j.cancel
	return r
}

// next returns the next whole batch (valid until the next call), or io.EOF
// at the end of the segment.
func (r *batchReader) next() ([]byte, batchHeader, error) {
	if r.filePos >= r.src.size {
		return nil, batchHeader{}, io.EOF
	}
	if r.cancel.Load() {
		return nil, batchHeader{}, ErrCleanCanceled
	}
	if err := r.fill(batchHeaderSize); err != nil {
		return nil, batchHeader{}, err
	}
	h := parseHeader(r.buf[r.lo:])
	if !h.framingOK() || r.filePos+h.size() > r.src.size {
		return nil, h, fmt.Errorf("%w: %s at position %d", ErrCorruptSegment, r.src.file.Name(), r.filePos)
	}
	if err := r.fill(int(h.size())); err != nil {
		return nil, h, err
	}
	batch := r.buf[r.lo : r.lo+int(h.size())]
	if batchCRC(batch) != h.crc {
		return nil, h, fmt.Errorf("%w: %s: CRC mismatch at position %d", ErrCorruptSegment, r.src.file.Name(), r.filePos)
	}
	r.lo += len(batch)
	r.filePos += int64(len(batch))
	return batch, h, nil
}

// fill makes buf[lo:] hold at least n bytes (or what the segment has).
func (r *batchReader) fill(n int) error {
	if r.hi-r.lo >= n {
		return nil
	}
	copy(r.buf, r.buf[r.lo:r.hi])
	r.hi -= r.lo
	r.lo = 0
	if n > len(r.buf) {
		r.buf = append(r.buf[:r.hi], make([]byte, n-r.hi)...)
		r.buf = r.buf[:cap(r.buf)]
	}
	for r.hi < n {
		pos := r.filePos + int64(r.hi)
		want := min(int64(len(r.buf)-r.hi), r.src.size-pos)
		if want <= 0 {
			return fmt.Errorf("%w: %s ends inside a batch", ErrCorruptSegment, r.src.file.Name())
		}
		k, err := r.cio.ReadAt(r.src.file, r.buf[r.hi:r.hi+int(want)], pos)
		r.hi += k
		if k < int(want) {
			return fmt.Errorf("log: cleaner reading %s: %w", r.src.file.Name(), orEOF(err))
		}
	}
	return nil
}

// segWriter appends batches to an output segment in large writes and
// indexes them.
type segWriter struct {
	cio      CleanIO
	seg      *segment
	interval int64
	buf      []byte
	flushed  int64
}

func (w *segWriter) add(batch []byte) error {
	h := parseHeader(batch)
	w.seg.addBatch(&h, w.seg.size, w.interval)
	w.seg.size += int64(len(batch))
	w.buf = append(w.buf, batch...)
	if len(w.buf) >= cleanReadSize {
		return w.flush()
	}
	return nil
}

func (w *segWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	if _, err := w.cio.WriteAt(w.seg.file, w.buf, w.flushed); err != nil {
		return err
	}
	w.flushed += int64(len(w.buf))
	w.buf = w.buf[:0]
	return nil
}

// removeCleaned closes and removes the job's .cleaned files.
func (j *CleanJob) removeCleaned() {
	for _, o := range j.outs {
		o.seg.file.Close()
	}
	j.unlinkCleaned(j.outs)
}

// unlinkCleaned removes the .cleaned files of outs (their descriptors stay
// open where the log holds them).
func (j *CleanJob) unlinkCleaned(outs []*cleanOut) {
	for _, o := range outs {
		for _, suffix := range []string{logSuffix, indexSuffix, timeIndexSuffix} {
			j.fs.Remove(segmentName(j.dir, o.seg.base, suffix+cleanedSuffix))
		}
	}
}

// Discard removes what a job that CommitClean refused wrote; on the
// cleaner's thread.
func (j *CleanJob) Discard() { j.removeCleaned() }

// CommitClean ends a job that failed, was skipped or is outdated (the log
// was truncated, reset, failed or closed meanwhile), returning false: then
// call Discard (off the shard thread). Otherwise it puts the cleaned
// segments in place of the ones they replace, in memory, and returns true:
// then call Install on the cleaner's thread and FinishClean after it. On
// the shard thread.
func (l *Log) CommitClean(j *CleanJob) bool {
	if l.cleaning != j {
		return false
	}
	for _, s := range j.srcs {
		s.seg.ref.Release() // the job's pins
	}
	ok := j.Err == nil && len(j.outs) > 0 && j.gen == l.truncGen && !l.closed && l.err == nil
	n := 0
	for _, o := range j.outs {
		n += len(o.srcs)
	}
	for i := 0; ok && i < n; i++ {
		ok = i < len(l.segs)-1 && l.segs[i] == j.srcs[i].seg
	}
	if !ok {
		l.cleaning = nil
		return false
	}
	fresh := make([]*segment, 0, len(l.segs)-n+len(j.outs))
	for _, o := range j.outs {
		o.seg.ref = newSegmentRef(o.seg.file)
		o.seg.next = o.next
		fresh = append(fresh, o.seg)
		l.size += o.seg.size
	}
	// The replaced segments stay open until FinishClean: an install that
	// fails before its commit point puts them back.
	for _, s := range l.segs[:n] {
		l.size -= s.size
	}
	l.segs = append(fresh, l.segs[n:]...)
	l.changes++
	l.truncGen++ // regions read from the old files are not these
	l.maxTimestampKnown = false
	l.swapping = true
	return true
}

// InstallResult says how far Install got: Done output segments are in
// place; if Err is set, PastCommit says whether the next one's swap file
// was already renamed (then recovery completes it, whatever follows).
type InstallResult struct {
	Done       int
	PastCommit bool
	Err        error
}

// Install renames a committed job's files into place (see the section
// comment), on the cleaner's thread. What it did not install is removed
// from the disk here; FinishClean puts those segments back in memory.
func (j *CleanJob) Install() InstallResult {
	r := j.install()
	if r.Err != nil && r.Done > 0 && r.Done < len(j.outs) {
		// Those done are clean; best effort (less cleaning if it fails).
		writeCleanerFile(j.fs, j.dir, max(j.prevGaps, j.End), j.outs[r.Done-1].next)
	}
	if r.Err != nil {
		from := r.Done
		if r.PastCommit {
			from++
		}
		j.unlinkCleaned(j.outs[from:])
	}
	return r
}

func (j *CleanJob) install() InstallResult {
	if j.cancel.Load() {
		return InstallResult{Err: ErrCleanCanceled}
	}
	// The gap bound first, the cleaned offset as it was: a crash from
	// here on must not make the next pass take unswapped segments for
	// clean (their keys would miss its map, and a tombstone there could
	// outlive nothing but the record it deleted).
	gaps := max(j.prevGaps, j.End)
	if err := writeCleanerFile(j.fs, j.dir, gaps, j.prevCleaned); err != nil {
		return InstallResult{Err: err}
	}
	j.gapsWritten = true
	for i, o := range j.outs {
		b := o.seg.base
		swap := swapName(j.dir, b, o.next)
		if err := j.fs.Rename(segmentName(j.dir, b, logSuffix+cleanedSuffix), swap); err != nil {
			return InstallResult{Done: i, Err: err}
		}
		if err := j.fs.SyncDir(j.dir); err != nil {
			return InstallResult{Done: i, PastCommit: true, Err: err}
		}
		if err := completeSwap(j.fs, j.dir, b, o.next, o.srcs); err != nil {
			return InstallResult{Done: i, PastCommit: true, Err: err}
		}
	}
	if err := writeCleanerFile(j.fs, j.dir, gaps, j.End); err != nil {
		// Every swap is done; the next pass only cleans this range again.
		return InstallResult{Done: len(j.outs), Err: err}
	}
	return InstallResult{Done: len(j.outs)}
}

// completeSwap finishes the swap of B-E.swap: the replaced segments' files
// and B's old indexes go, then the swap becomes B.log and the cleaned
// indexes B's. srcs, when known, names the replaced segments; recovery
// passes nil and removes every segment file with a base in (b, e).
func completeSwap(fs storage.FS, dir string, b, e Offset, srcs []cleanSource) error {
	var doomed []Offset
	if srcs != nil {
		for _, s := range srcs[1:] {
			doomed = append(doomed, s.base)
		}
	} else {
		names, err := fs.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, name := range names {
			if base, ok := segmentFileBase(name); ok && base > b && base < e && !slices.Contains(doomed, base) {
				doomed = append(doomed, base)
			}
		}
	}
	remove := func(name string) error {
		if err := fs.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	for _, base := range doomed {
		for _, suffix := range []string{logSuffix, indexSuffix, timeIndexSuffix} {
			if err := remove(segmentName(dir, base, suffix)); err != nil {
				return err
			}
		}
	}
	for _, suffix := range []string{indexSuffix, timeIndexSuffix} {
		if err := remove(segmentName(dir, b, suffix)); err != nil {
			return err
		}
	}
	if err := fs.SyncDir(dir); err != nil {
		return err
	}
	if err := fs.Rename(swapName(dir, b, e), segmentName(dir, b, logSuffix)); err != nil {
		return err
	}
	for _, suffix := range []string{indexSuffix, timeIndexSuffix} {
		if err := fs.Rename(segmentName(dir, b, suffix+cleanedSuffix), segmentName(dir, b, suffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return fs.SyncDir(dir)
}

// FinishClean ends a committed job after Install, on the shard thread.
// The segments Install put in place replace the old ones for good; those
// it did not reach are swapped back in memory (their .cleaned files are
// gone). A failure past a swap's commit point leaves the files between two
// states that both read the same records, which only a restart sorts out:
// the log fails then.
func (l *Log) FinishClean(j *CleanJob, r InstallResult) {
	if l.cleaning != j {
		return
	}
	l.cleaning, l.swapping = nil, false
	installed := r.Done
	if r.Err != nil && r.PastCommit {
		installed++
	}
	prefix := make([]*segment, 0, len(j.srcs))
	reverted := false
	for i, o := range j.outs {
		if i >= len(l.segs)-1 || l.segs[i] != o.seg {
			l.fail(fmt.Errorf("log: cleaned segment %d is not where it was put", o.seg.base))
			return
		}
		if i < installed {
			for _, src := range o.srcs {
				closeIndexFiles(src.seg)
				j.replaced = append(j.replaced, src.seg.ref)
			}
			prefix = append(prefix, o.seg)
			continue
		}
		reverted = true
		j.replaced = append(j.replaced, o.seg.ref)
		l.size -= o.seg.size
		for _, src := range o.srcs {
			prefix = append(prefix, src.seg)
			l.size += src.seg.size
		}
	}
	if reverted {
		l.segs = append(prefix, l.segs[len(j.outs):]...)
		l.truncGen++
		l.changes++
		l.maxTimestampKnown = false
	}
	if r.Err != nil && r.PastCommit {
		l.fail(fmt.Errorf("log: installing cleaned segments: %w", r.Err))
		return
	}
	if j.gapsWritten {
		l.cleanerGaps = max(l.cleanerGaps, j.End)
		l.gapsBelow = max(l.gapsBelow, l.cleanerGaps)
	}
	if r.Done > 0 {
		l.cleanedTo = max(l.cleanedTo, j.outs[r.Done-1].next)
	}
}

// ReleaseReplaced drops the log's references to the segment files a
// finished job took out of the log, from any goroutine: the last close of
// an unlinked file frees its blocks, which the file system may take
// milliseconds over, so the cleaner's thread does it, not the shard's.
func (j *CleanJob) ReleaseReplaced() {
	for _, r := range j.replaced {
		r.Release()
	}
	j.replaced = nil
}

// CancelCleaning makes the job under way stop at its next read or write
// (the partition is being deleted); it ends as a failed one. A job already
// renaming files finishes.
func (l *Log) CancelCleaning() {
	j := l.cleaning
	if j == nil || l.swapping {
		return
	}
	if j.state.CompareAndSwap(jobQueued, jobDropped) {
		// Still queued: it ends here, and the cleaner skips it.
		for _, s := range j.srcs {
			s.seg.ref.Release()
		}
		l.cleaning = nil
		return
	}
	j.cancel.Store(true)
}

// Cleaning reports whether a job holds the log (planned and not ended).
func (l *Log) Cleaning() bool { return l.cleaning != nil }

// Swapping reports whether a committed job is renaming files (between
// CommitClean and FinishClean).
func (l *Log) Swapping() bool { return l.swapping }

// CleanedOffset is where the last cleaning pass ended: the log below it may
// have gaps between batches.
func (l *Log) CleanedOffset() Offset { return l.cleanedTo }

// cleanerHolds reports whether seg is one the running job reads or, while
// it renames files, one it wrote.
func (l *Log) cleanerHolds(seg *segment) bool {
	if l.cleaning == nil {
		return false
	}
	for _, s := range l.cleaning.srcs {
		if s.seg == seg {
			return true
		}
	}
	for _, o := range l.cleaning.outs {
		if l.swapping && o.seg == seg {
			return true // renamed into place meanwhile
		}
	}
	return false
}

func swapName(dir string, b, e Offset) string {
	return filepath.Join(dir, fmt.Sprintf("%0*d-%0*d%s", offsetDigits, int64(b), offsetDigits, int64(e), swapSuffix))
}

// parseSwapName returns B and E of a B-E.swap file name.
func parseSwapName(name string) (b, e Offset, ok bool) {
	digits, ok := strings.CutSuffix(name, swapSuffix)
	if !ok || len(digits) != 2*offsetDigits+1 || digits[offsetDigits] != '-' {
		return 0, 0, false
	}
	x, err1 := strconv.ParseInt(digits[:offsetDigits], 10, 64)
	y, err2 := strconv.ParseInt(digits[offsetDigits+1:], 10, 64)
	if err1 != nil || err2 != nil || x < 0 || y <= x {
		return 0, 0, false
	}
	return Offset(x), Offset(y), true
}

// The offset files. cleaner.offset is written by the cleaner's thread
// (and by a truncation, which never runs while it renames files): the gap
// bound, below which batches may have gaps, and the cleaned offset, where
// the next pass's dirty part starts. replica.gaps is written by the shard
// thread before a standby appends batches with a gap: the gaps its
// primary's compaction left lie below it. Each starts with a magic and the
// CRC-32C of what follows.
const (
	cleanerMagic    = "SLC2"
	replicaGapsName = "replica.gaps"
	replicaMagic    = "SLRG"
)

// ErrCleanCanceled ends a job whose partition is being deleted.
var ErrCleanCanceled = errors.New("log: cleaning canceled")

func writeOffsetFile(fs storage.FS, path, magic string, offs ...Offset) error {
	b := make([]byte, 8+8*len(offs))
	copy(b, magic)
	for i, off := range offs {
		binary.BigEndian.PutUint64(b[8+8*i:], uint64(off))
	}
	binary.BigEndian.PutUint32(b[4:], crc32.Checksum(b[8:], castagnoli))
	return writeFileAtomic(fs, path, b)
}

func writeCleanerFile(fs storage.FS, dir string, gaps, cleaned Offset) error {
	return writeOffsetFile(fs, filepath.Join(dir, cleanerFileName), cleanerMagic, gaps, cleaned)
}

// readOffsetFile returns the n offsets in path (zeros if there is no
// file); ok is false for a damaged file.
func readOffsetFile(fs storage.FS, path, magic string, n int) (offs []Offset, ok bool, err error) {
	offs = make([]Offset, n)
	b, err := readWholeFile(fs, path)
	if errors.Is(err, os.ErrNotExist) {
		return offs, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	if len(b) != 8+8*n || string(b[:4]) != magic || binary.BigEndian.Uint32(b[4:]) != crc32.Checksum(b[8:], castagnoli) {
		return offs, false, nil
	}
	for i := range offs {
		offs[i] = Offset(binary.BigEndian.Uint64(b[8+8*i:]))
	}
	return offs, true, nil
}

// loadGapBounds reads the offset files at open. A damaged one (written
// atomically, so the disk's doing) costs compaction, never data: the log
// is taken as cleaned nowhere and as possibly gapped everywhere, so a
// recovery scan checks each batch's framing, CRC and rising offsets but
// does not stop at a gap.
func (l *Log) loadGapBounds() error {
	cleaner, ok1, err := readOffsetFile(l.fs, filepath.Join(l.dir, cleanerFileName), cleanerMagic, 2)
	if err != nil {
		return err
	}
	replica, ok2, err := readOffsetFile(l.fs, filepath.Join(l.dir, replicaGapsName), replicaMagic, 1)
	if err != nil {
		return err
	}
	l.cleanerGaps, l.cleanedTo = cleaner[0], min(cleaner[1], cleaner[0])
	l.gapsBelow = max(l.cleanerGaps, replica[0])
	if !ok1 || !ok2 {
		l.cleanerGaps, l.cleanedTo, l.gapsBelow = 0, 0, math.MaxInt64
	}
	return nil
}

// lowerCleanedTo moves the cleaned offset down to end after a truncation,
// durably: offsets at or past end may be written again, and the next pass
// must see them as dirty even after a restart.
func (l *Log) lowerCleanedTo(end Offset) error {
	if l.cleanedTo <= end {
		return nil
	}
	l.cleanedTo = end
	return writeCleanerFile(l.fs, l.dir, l.cleanerGaps, l.cleanedTo)
}

// recoverCleaning, at open, completes the swaps a crash interrupted and
// removes unfinished .cleaned files. It returns whether it changed the
// directory.
func recoverCleaning(fs storage.FS, dir string, names []string) (bool, error) {
	changed := false
	for _, name := range names {
		if b, e, ok := parseSwapName(name); ok {
			if err := completeSwap(fs, dir, b, e, nil); err != nil {
				return changed, err
			}
			changed = true
		}
	}
	if changed {
		var err error
		if names, err = fs.ReadDir(dir); err != nil {
			return changed, err
		}
	}
	for _, name := range names {
		if strings.HasSuffix(name, cleanedSuffix) {
			if err := fs.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return changed, err
			}
			changed = true
		}
	}
	return changed, nil
}
