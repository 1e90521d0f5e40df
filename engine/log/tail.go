package log

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"slices"
	"syscall"

	"github.com/valyala/bytebufferpool"

	"github.com/sluice-broker/sluice/engine/storage"
)

// Direct mode (DESIGN.md, "Two write modes").
//
// A log opened with Config.Tail set appends by copying batches into its
// share of the shard's tail cache: chunks of registered, 4 KiB-aligned
// memory that map the newest bytes of the active segment. The shard takes
// the writes the log asks for (PendingWrites) to an O_DIRECT descriptor of
// the segment, with io_uring WRITE_FIXED, and reports completions
// (WriteDone). Writes are whole 4 KiB blocks: the block holding the end of
// the log is written zero-padded and rewritten as it fills. The file runs
// past the logical end, through that padding and the space allocated and
// pre-zeroed ahead of the writer (allocate, preZero), until the segment is
// rolled or the log closed, when it is cut back. Recovery treats the zeros
// as a torn tail.
//
// Two writes of the same block are never in flight together: the device
// may complete them in any order, so the older could land last. A write
// that would start inside the last block of a write still in flight waits.
//
// The chunks are the tail cache: Read serves fetches that start inside them
// from memory (a copy into a pooled buffer), and from the file (sendfile)
// below them. Every byte below the cache is written (a chunk is given up
// only once it is), and a fetch never reads past the high watermark, which
// in direct mode never passes the written end.

const (
	// BlockSize is the O_DIRECT alignment unit: file offsets, lengths and
	// buffer addresses of direct writes are multiples of it.
	BlockSize = 4096
	// ChunkSize is the tail cache's unit of allocation.
	ChunkSize = 64 << 10
	// maxWrite caps one write (the size measured best on this machine
	// class); adjacent chunks merge up to it.
	maxWrite = 1 << 20
	// allocAhead is how far ahead of the writer the segment file is
	// allocated and its size extended. A direct write inside the file's
	// size into allocated blocks is an overwrite that io_uring issues
	// inline; one past the end extends the inode, which ext4 will not do
	// without blocking, so io_uring hands it to a kernel worker.
	allocAhead = 8 << 20
)

var (
	// ErrTailFull: the tail cache has no chunk to give until a write
	// completes. The shard waits for a completion and retries.
	ErrTailFull = errors.New("log: tail cache full")
	// ErrTailBusy: the append must roll the segment, or needs the direct
	// writer idle, while writes are pending. The shard drains and retries.
	ErrTailBusy = errors.New("log: direct writes in flight")
)

// TailCache is one shard's pool of tail cache chunks, shared fairly by its
// direct-mode logs. Only the shard thread uses it.
type TailCache struct {
	mem  []byte
	free []int32
	// zero is a reserved run of zeroed chunks: the source of the writes
	// that pre-zero segment space ahead of the writer (nil: no pre-zeroing,
	// for caches too small to spare it).
	zero []byte
	// bounce holds 4 KiB slots: a write whose last block is partial writes
	// that block from a copy in a slot, so that appends can fill the block
	// in the chunk while the write is in flight (the device, or a layer
	// computing checksums or parity, may read the buffer any time until it
	// completes). freeBounce lists free slots.
	bounce     []byte
	freeBounce []int32
	// LRU of the logs holding chunks, least recently appended first.
	head, tailEnd *tail
	holders       int

	// Counters for metrics (read on the shard thread).
	Hits, Misses, Evictions, Reloads uint64
	// Restores: partial last blocks put back from the copy kept at
	// eviction, without a read (Reloads counts the reads).
	Restores uint64
}

// NewTailCache builds a cache over mem, whose length is a multiple of
// ChunkSize and which starts on a BlockSize boundary (registered slab
// memory). With reserve, up to 1 MiB of it (a quarter at most) is kept as
// the zero source for pre-zeroing segment space (see allocate), and up to
// 1 MiB (an eighth) as bounce slots for partial last blocks; without, the
// writer works without them (pieces come straight from the chunks).
func NewTailCache(mem []byte, reserve bool) (*TailCache, error) {
	if len(mem) < 2*ChunkSize || len(mem)%ChunkSize != 0 {
		return nil, fmt.Errorf("log: tail cache of %d bytes: want a multiple of %d, at least 2 chunks", len(mem), ChunkSize)
	}
	c := &TailCache{mem: mem}
	n := len(mem) / ChunkSize
	reserved := 0
	if reserve && n >= 8 {
		reserved = min(maxWrite/ChunkSize, n/4)
		c.zero = mem[: reserved*ChunkSize : reserved*ChunkSize]
		clear(c.zero)
		b := min(maxWrite/ChunkSize, n/8)
		c.bounce = mem[reserved*ChunkSize : (reserved+b)*ChunkSize : (reserved+b)*ChunkSize]
		for i := len(c.bounce)/BlockSize - 1; i >= 0; i-- {
			c.freeBounce = append(c.freeBounce, int32(i))
		}
		reserved += b
	}
	for i := n - 1; i >= reserved; i-- {
		c.free = append(c.free, int32(i)) // pop from the end: ascending addresses, so chunks merge
	}
	return c, nil
}

// NoPreZero turns pre-zeroing off (--direct-prezero=false): the zero
// source's chunks join the cache, and data writes go into fallocated,
// unwritten space (each datasync then also commits the extent conversion
// to the journal). Call it before any log uses the cache.
func (c *TailCache) NoPreZero() {
	if c.zero == nil {
		return
	}
	for i := len(c.zero)/ChunkSize - 1; i >= 0; i-- {
		c.free = append(c.free, int32(i))
	}
	c.zero = nil
}

// Bytes is what the cache can hold; Free how much is unused.
func (c *TailCache) Bytes() int64 { return int64(c.totalChunks()) * ChunkSize }
func (c *TailCache) Free() int64  { return int64(len(c.free)) * ChunkSize }

// Mem is the memory the cache hands out, for registration with a ring.
func (c *TailCache) Mem() []byte { return c.mem }

func (c *TailCache) chunk(i int32) []byte {
	return c.mem[int(i)*ChunkSize : (int(i)+1)*ChunkSize : (int(i)+1)*ChunkSize]
}

func (c *TailCache) totalChunks() int {
	return (len(c.mem) - len(c.zero) - len(c.bounce)) / ChunkSize
}

// touch moves t to the most recently used end, joining the list if needed.
func (c *TailCache) touch(t *tail) {
	if c.tailEnd == t {
		return
	}
	c.unlink(t)
	t.prev, t.next = c.tailEnd, nil
	if c.tailEnd != nil {
		c.tailEnd.next = t
	} else {
		c.head = t
	}
	c.tailEnd = t
	t.linked = true
	c.holders++
}

func (c *TailCache) unlink(t *tail) {
	if !t.linked {
		return
	}
	if t.prev != nil {
		t.prev.next = t.next
	} else {
		c.head = t.next
	}
	if t.next != nil {
		t.next.prev = t.prev
	} else {
		c.tailEnd = t.prev
	}
	t.prev, t.next, t.linked = nil, nil, false
	c.holders--
}

// acquire appends n more chunks to t's, taking them from the least recently used
// logs that hold more than a fair share first, then from any log with a
// chunk it can spare. It returns false, having taken nothing, when not
// enough chunks can be freed now.
func (c *TailCache) acquire(t *tail, n int) bool {
	if n > c.totalChunks() {
		return false
	}
	for len(c.free) < n {
		share := c.totalChunks() / max(c.holders, 1)
		var victim *tail
		for v := c.head; v != nil; v = v.next {
			if v == t && len(v.chunks) == 1 {
				continue // the chunk it appends into
			}
			if v.evictable() && (len(v.chunks) > share || victim == nil) {
				victim = v
				if len(v.chunks) > share {
					break
				}
			}
		}
		if victim == nil {
			return false
		}
		victim.evictFront()
		c.Evictions++
	}
	t.chunks = append(t.chunks, c.free[len(c.free)-n:]...)
	c.free = c.free[:len(c.free)-n]
	return true
}

func (c *TailCache) release(ids ...int32) { c.free = append(c.free, ids...) }

// tail is a direct-mode log's writer and cache state for its active segment.
type tail struct {
	cache *TailCache
	log   *Log
	dfile storage.File // O_DIRECT descriptor of the active segment
	seg   *segment     // the segment it maps (nil while detached)
	rd    tailReader   // reads seg through the cache

	chunks []int32 // chunks[i] maps segment positions [lo+i*ChunkSize, lo+(i+1)*ChunkSize)
	lo     int64   // a multiple of ChunkSize
	valid  int64   // the cache holds the bytes [valid, hi)
	hi     int64   // the logical end: the active segment's size

	submitted  int64  // bytes below it are in submitted writes
	written    int64  // bytes below it are written (completions, in order)
	writtenOff Offset // the offset that ends at written
	lastEnd    int64  // block-aligned end of the newest submitted write
	allocEnd   int64  // the file's size: allocated ahead of the writer
	// Pre-zeroing: while zeroing, a zero write covers [zeroFrom, zeroEnd)
	// and no data write may touch those blocks. zeroEnd is the end of the
	// zeroing issued so far.
	zeroFrom, zeroEnd int64
	zeroing           bool
	inflight          []directWrite
	// kept is a copy of the partial last block [keptAt, hi), taken when
	// the tail lost its last chunk (keptAt -1: none).
	kept    []byte
	keptAt  int64
	nextSeq uint64

	prev, next *tail
	linked     bool
}

// directWrite is one submitted write: one or more pieces (SQEs).
type directWrite struct {
	seq    uint64
	end    int64  // the logical end it makes written
	off    Offset // the offset at end
	pieces int
	slot   int32 // the bounce slot its last block is written from, or -1
	// chained: an RWF_DSYNC write submitted when everything before it was
	// durable or in chained writes: once it and those complete, the log is
	// durable up to off without a datasync.
	chained bool
}

// DirectWrite is a piece of a write for the shard to submit: Buf (inside
// the tail cache's memory) to File at Off. Report its completion with
// WriteDone(Seq, err).
type DirectWrite struct {
	File storage.File
	Buf  []byte
	Off  int64
	Seq  uint64
	// Dsync asks for an RWF_DSYNC write (the log counts it as durable).
	Dsync bool
}

func alignDown(x, a int64) int64 { return x &^ (a - 1) }
func alignUp(x, a int64) int64   { return (x + a - 1) &^ (a - 1) }

// idle: nothing submitted is in flight and nothing appended is unsubmitted.
func (t *tail) idle() bool { return len(t.inflight) == 0 && !t.zeroing && t.submitted == t.hi }

// evictable reports whether the front chunk can be given up: its bytes are
// all written and no write in flight or to come reads it.
func (t *tail) evictable() bool {
	if len(t.chunks) == 0 {
		return false
	}
	if t.log.err != nil {
		// A failed log writes nothing more and serves nothing past its
		// written end: its chunks go once no write reads them.
		return len(t.inflight) == 0 && !t.zeroing
	}
	return t.lo+ChunkSize <= alignDown(t.written, BlockSize) || t.idle() && t.written == t.hi
}

func (t *tail) evictFront() {
	if len(t.chunks) == 1 {
		// The last chunk holds the partial last block, which the next
		// append rewrites: keep a copy, so that append need not read it
		// back from the device on the shard thread.
		if blk := alignDown(t.hi, BlockSize); t.hi > blk && blk >= t.lo && t.valid <= blk {
			t.kept = append(t.kept[:0], t.at(blk)[:t.hi-blk]...)
			t.keptAt = blk
		}
	}
	t.cache.release(t.chunks[0])
	t.chunks = t.chunks[1:]
	t.lo += ChunkSize
	if len(t.chunks) == 0 {
		t.lo, t.valid = alignDown(t.hi, ChunkSize), t.hi
		t.cache.unlink(t)
		return
	}
	t.valid = max(t.valid, t.lo)
}

// releaseAll gives every chunk back (the segment rolled, or the log closed
// or was deleted with no write in flight).
func (t *tail) releaseAll() {
	t.cache.release(t.chunks...)
	t.chunks = t.chunks[:0]
	t.cache.unlink(t)
}

// reset points the tail at the active segment's end with nothing cached.
func (t *tail) reset(size int64, end Offset) {
	t.releaseAll()
	t.lo, t.valid, t.hi = alignDown(size, ChunkSize), size, size
	t.kept, t.keptAt = t.kept[:0], -1
	t.submitted, t.written, t.lastEnd = size, size, alignUp(size, BlockSize)
	t.writtenOff = end
	t.inflight = t.inflight[:0]
	t.zeroing, t.zeroFrom, t.zeroEnd = false, 0, alignUp(size, BlockSize)
}

// chunksFor is how many chunks an append of n bytes needs at most: from
// the chunk holding the end to the block boundary after the new end.
func (t *tail) chunksFor(n int) int {
	return int((alignUp(t.hi+int64(n), BlockSize) - alignDown(t.hi, ChunkSize) + ChunkSize - 1) / ChunkSize)
}

// at returns the cache memory for position pos (in [lo, lo+len*ChunkSize)),
// up to the end of its chunk.
func (t *tail) at(pos int64) []byte {
	i := (pos - t.lo) / ChunkSize
	return t.cache.chunk(t.chunks[i])[(pos-t.lo)%ChunkSize:]
}

// memOff is the offset in the cache's memory of position pos.
func (t *tail) memOff(pos int64) int64 {
	return int64(t.chunks[(pos-t.lo)/ChunkSize])*ChunkSize + (pos-t.lo)%ChunkSize
}

// copyOut copies the cached bytes at pos into p (all within [valid, hi)).
func (t *tail) copyOut(p []byte, pos int64) {
	for len(p) > 0 {
		n := copy(p, t.at(pos))
		p, pos = p[n:], pos+int64(n)
	}
}

func (t *tail) copyIn(b []byte, pos int64) {
	for len(b) > 0 {
		n := copy(t.at(pos), b)
		b, pos = b[n:], pos+int64(n)
	}
}

// crcBlock is how much of a batch copyInCheckingCRC copies before it
// checksums the copy: small enough to still be in L1 when it does.
const crcBlock = 16 << 10

// copyInCheckingCRC is copyIn of whole batches (framing checked), each
// batch's CRC-32C computed over the copy block by block; a mismatch stops
// it with a *CRCError.
func (t *tail) copyInCheckingCRC(batches []byte, pos int64) error {
	for i, off := 0, 0; off < len(batches); i++ {
		h := parseHeader(batches[off:])
		end := off + int(h.size())
		crc := uint32(0)
		for p := off; p < end; {
			dst := t.at(pos + int64(p))
			n := min(len(dst), end-p, crcBlock)
			copy(dst[:n], batches[p:p+n])
			if from := max(p, off+batchCRCStart); from < p+n {
				crc = crc32.Update(crc, castagnoli, dst[from-p:n])
			}
			p += n
		}
		if crc != h.crc {
			return &CRCError{Batch: i, Stored: h.crc, Calculated: crc}
		}
		off = end
	}
	return nil
}

// writingFromTailBlock reports whether a write in flight reads the block
// holding hi from the cache itself (it had no bounce slot for its partial
// last block), so that bytes copied past hi can reach the device with it.
func (t *tail) writingFromTailBlock() bool {
	n := len(t.inflight)
	if n == 0 || t.hi%BlockSize == 0 {
		return false
	}
	w := t.inflight[n-1]
	return w.slot < 0 && alignUp(w.end, BlockSize) > alignDown(t.hi, BlockSize)
}

// checkCRCs checks every batch's CRC-32C (framing checked).
func checkCRCs(batches []byte) error {
	for i, off := 0, 0; off < len(batches); i++ {
		h := parseHeader(batches[off:])
		end := off + int(h.size())
		if crc := batchCRC(batches[off:end]); crc != h.crc {
			return &CRCError{Batch: i, Stored: h.crc, Calculated: crc}
		}
		off = end
	}
	return nil
}

// tailReader reads the active segment through the cache where it holds the
// bytes, from the file below it.
type tailReader struct {
	t    *tail
	file io.ReaderAt
}

func (r *tailReader) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > r.t.hi {
		if off >= r.t.hi {
			return 0, io.EOF
		}
		n, _ := r.ReadAt(p[:r.t.hi-off], off)
		return n, io.EOF
	}
	if off >= r.t.valid {
		r.t.copyOut(p, off)
		return len(p), nil
	}
	below := min(int64(len(p)), r.t.valid-off)
	if n, err := r.file.ReadAt(p[:below], off); int64(n) < below {
		return n, err
	}
	r.t.copyOut(p[below:], r.t.valid)
	return len(p), nil
}

// reader returns how to read seg's bytes.
func (l *Log) reader(seg *segment) io.ReaderAt {
	f := l.segReader(seg)
	if l.tail != nil && seg == l.tail.seg {
		l.tail.rd.file = f
		return &l.tail.rd
	}
	return f
}

// openDirect opens the O_DIRECT descriptor of the active segment and points
// the tail at its end.
func (l *Log) openDirect() error {
	t := l.tail
	if t.dfile != nil {
		t.dfile.Close()
		t.dfile = nil
	}
	seg := l.active()
	f, err := l.fs.OpenFile(segmentName(l.dir, seg.base, logSuffix), os.O_RDWR|syscall.O_DIRECT, 0o644)
	if err != nil {
		return err
	}
	t.dfile, t.seg, t.rd = f, seg, tailReader{t, seg.file}
	t.reset(seg.size, l.logEnd)
	if t.allocEnd, err = seg.file.Size(); err != nil {
		return err
	}
	return nil
}

// detachTail stops the tail from describing the active segment, before a
// truncation changes it (openDirect attaches it again).
func (l *Log) detachTail() {
	if t := l.tail; t != nil {
		t.releaseAll()
		t.seg = nil
	}
}

// appendDirect copies batches to the cache at the end of the active
// segment. It fails with ErrTailFull, changing nothing, when the cache
// cannot hold them now.
func (l *Log) appendDirect(seg *segment, batches []byte, checkCRC bool) error {
	t := l.tail
	end := alignUp(t.hi+int64(len(batches)), BlockSize)
	// Space first, while nothing has changed: a full disk refuses the
	// append here (ErrDiskFull), never a write of data already taken.
	if err := t.allocate(end); err != nil {
		return l.writeFailed(err)
	}
	if len(t.chunks) == 0 {
		t.lo = alignDown(t.hi, ChunkSize)
	}
	need := int((max(end-(t.lo+int64(len(t.chunks))*ChunkSize), 0) + ChunkSize - 1) / ChunkSize)
	if need > 0 {
		if len(t.chunks) == 0 {
			t.lo = alignDown(t.hi, ChunkSize)
		}
		if !t.cache.acquire(t, need) {
			return ErrTailFull
		}
	}
	t.cache.touch(t)
	// The block holding the end must be in memory: it is rewritten whole.
	if blk := alignDown(t.hi, BlockSize); t.valid > blk {
		if err := l.reloadBlock(seg, blk); err != nil {
			return err
		}
	}
	switch {
	case checkCRC && t.writingFromTailBlock():
		// A write in flight reads the block holding hi from the cache:
		// a set refused after its copy could reach the disk past the
		// log end there, so check before copying.
		if err := checkCRCs(batches); err != nil {
			return err
		}
		t.copyIn(batches, t.hi)
	case checkCRC:
		if err := t.copyInCheckingCRC(batches, t.hi); err != nil {
			return err // nothing appended: the bytes past hi are not the log's
		}
	default:
		t.copyIn(batches, t.hi)
	}
	t.hi += int64(len(batches))
	return nil
}

// PartialBlock names the partial last block of a direct log's active
// segment when nothing of it is in memory (after open, the tail holds no
// chunk and no kept copy): the next append rewrites that block whole and
// would read it back on the shard thread. The shard reads it through its
// ring instead, right after open, and hands it to KeepPartialBlock; ref
// pins the file for the read. ok is false when there is nothing to read.
func (l *Log) PartialBlock() (f storage.File, ref *SegmentRef, off int64, n int, ok bool) {
	t := l.tail
	if t == nil || t.seg == nil || l.closed || l.err != nil {
		return nil, nil, 0, 0, false
	}
	blk := alignDown(t.hi, BlockSize)
	if t.hi == blk || t.valid <= blk || t.keptAt == blk {
		return nil, nil, 0, 0, false
	}
	return t.seg.file, t.seg.ref, blk, int(t.hi - blk), true
}

// KeepPartialBlock keeps b, the bytes at off that PartialBlock named, as
// the copy the next append restores the block from, if the tail still
// needs exactly those (no append came first).
func (l *Log) KeepPartialBlock(off int64, b []byte) {
	if f, _, want, n, ok := l.PartialBlock(); !ok || f == nil || want != off || n != len(b) {
		return
	}
	t := l.tail
	t.kept = append(t.kept[:0], b...)
	t.keptAt = off
}

// reloadBlock reads the written bytes [blk, hi) back into the cache after
// the log's chunks were given up.
func (l *Log) reloadBlock(seg *segment, blk int64) error {
	t := l.tail
	buf := t.at(blk)[:t.hi-blk]
	if t.keptAt == blk && len(t.kept) == len(buf) {
		copy(buf, t.kept)
		t.valid = blk
		t.kept, t.keptAt = t.kept[:0], -1
		t.cache.Restores++
		return nil
	}
	if n, err := seg.file.ReadAt(buf, blk); n < len(buf) {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return l.fail(err)
	}
	t.valid = blk
	t.cache.Reloads++
	return nil
}

// PendingWrites appends to dst the pieces of the next write of a direct
// log, if any is due, and records it as in flight. A log in page-cache mode
// never has any. With dsync (acks=all appends wait) the write is RWF_DSYNC
// where that alone makes the log durable to its end (nothing but the
// active segment's data waits for a sync): group commit without a separate
// fdatasync round trip.
func (l *Log) PendingWrites(dst []DirectWrite, dsync bool) []DirectWrite {
	t := l.tail
	if t == nil || l.closed || l.err != nil || t.submitted == t.hi {
		return dst
	}
	start := alignDown(t.submitted, BlockSize)
	if len(t.inflight) > 0 && t.lastEnd > start {
		return dst // that block is still being written
	}
	end := alignUp(t.hi, BlockSize)
	if t.zeroing && end > t.zeroFrom {
		return dst // those blocks are being zeroed
	}
	if end+allocAhead/2 > t.allocEnd {
		if err := t.allocate(end); err != nil {
			l.fail(err)
			return dst
		}
	}
	dst = t.preZero(dst, end)
	if end > t.hi {
		clear(t.at(t.hi)[:end-t.hi]) // zero padding to the block boundary
	}
	t.nextSeq++
	w := directWrite{seq: t.nextSeq, end: t.hi, off: l.logEnd, slot: -1}
	dataEnd := end // the end of what is written from the chunks
	if c := t.cache; end > t.hi && len(c.freeBounce) > 0 {
		w.slot = c.freeBounce[len(c.freeBounce)-1]
		c.freeBounce = c.freeBounce[:len(c.freeBounce)-1]
		dataEnd = end - BlockSize
	}
	if dsync && l.onlyActiveUnsynced() {
		if n := len(t.inflight); n > 0 {
			w.chained = t.inflight[n-1].chained
		} else {
			w.chained = l.recoveryPoint == t.writtenOff
		}
	}
	first := len(dst)
	for pos := start; pos < dataEnd; {
		o := t.memOff(pos)
		n := min(ChunkSize-(pos-t.lo)%ChunkSize, dataEnd-pos)
		if k := len(dst); k > first {
			prev := &dst[k-1]
			po := t.memOff(prev.Off)
			if po+int64(len(prev.Buf)) == o && int64(len(prev.Buf))+n <= maxWrite {
				prev.Buf = t.cache.mem[po : o+n : o+n]
				pos += n
				continue
			}
		}
		dst = append(dst, DirectWrite{File: t.dfile, Buf: t.cache.mem[o : o+n : o+n], Off: pos, Seq: w.seq, Dsync: w.chained})
		pos += n
	}
	if w.slot >= 0 {
		b := t.cache.bounce[int(w.slot)*BlockSize : int(w.slot+1)*BlockSize : int(w.slot+1)*BlockSize]
		t.copyOut(b, dataEnd)
		dst = append(dst, DirectWrite{File: t.dfile, Buf: b, Off: dataEnd, Seq: w.seq, Dsync: w.chained})
	}
	w.pieces = len(dst) - first
	t.inflight = append(t.inflight, w)
	t.submitted, t.lastEnd = t.hi, end
	return dst
}

// allocate allocates the segment file to allocAhead past end and extends
// its size there; the zeros past the logical end are cut at roll and Close,
// and recovery after a crash stops at them.
// On a nearly full disk it allocates just to end when the allocation ahead
// does not fit, and answers ENOSPC only when that does not either.
func (t *tail) allocate(end int64) error {
	// Never past the segment size limit: the segment rolls before that.
	need := alignUp(end, BlockSize)
	to := max(min(alignUp(end+allocAhead, allocAhead), alignUp(t.log.cfg.SegmentBytes, BlockSize)), need)
	if to <= t.allocEnd {
		return nil
	}
	err := t.extend(to)
	if storage.IsNoSpace(err) && need < to {
		if need <= t.allocEnd {
			return nil // what is written next has its space
		}
		err = t.extend(need)
	}
	return err
}

// extend allocates the active segment to size to and sets its size there.
func (t *tail) extend(to int64) error {
	f := t.seg.file
	if err := f.Allocate(t.allocEnd, to-t.allocEnd); err != nil {
		return err
	}
	if err := f.Truncate(to); err != nil {
		return err
	}
	t.allocEnd = to
	return nil
}

// Pre-zeroing, when the cache has a zero buffer. Fallocated blocks are
// "unwritten" extents: a write into one makes the next fdatasync commit the
// extent change to the journal, while an overwrite of written blocks needs
// only the data flushed (about 50 µs against 650 µs measured here after
// 1 MiB writes). So the allocated space is overwritten with zeros ahead of
// the writer: one write of at most the zero buffer (1 MiB) at a time,
// starting zeroGap past the end and staying at most zeroAhead ahead, so the
// zeroing trickles along with the data instead of competing with it in
// bursts, and a data write never has to wait for it unless it outruns it.
const (
	zeroGap   = 1 << 20
	zeroAhead = 4 << 20
)

// preZero appends the next zero write to dst, if one is due.
func (t *tail) preZero(dst []DirectWrite, end int64) []DirectWrite {
	z := t.cache.zero
	if z == nil || t.zeroing {
		return dst
	}
	from := max(t.zeroEnd, end+zeroGap)
	to := min(from+int64(len(z)), end+zeroAhead, t.allocEnd)
	if from >= to {
		return dst
	}
	t.zeroFrom, t.zeroEnd, t.zeroing = from, to, true
	return append(dst, DirectWrite{File: t.dfile, Buf: z[: to-from : to-from], Off: from, Seq: zeroSeq})
}

// zeroSeq marks the pieces of a pre-zeroing write.
const zeroSeq = 0

// WriteDone records the completion of a piece of write seq. A failure
// latches the log's error: the log refuses writes from then on.
func (l *Log) WriteDone(seq uint64, err error) { l.WritesDone(seq, 1, err) }

// WritesDone records the completion of pieces pieces of write seq, written
// together (one vectored write), as WriteDone does for one.
func (l *Log) WritesDone(seq uint64, pieces int, err error) {
	t := l.tail
	if t == nil {
		return
	}
	if err != nil {
		l.fail(err)
	}
	if seq == zeroSeq {
		t.zeroing = false
		return
	}
	for i := range t.inflight {
		if w := &t.inflight[i]; w.seq == seq {
			w.pieces -= pieces
			if w.pieces == 0 && w.slot >= 0 {
				t.cache.freeBounce = append(t.cache.freeBounce, w.slot)
				w.slot = -1
			}
			break
		}
	}
	n := 0
	for n < len(t.inflight) && t.inflight[n].pieces == 0 {
		if l.err == nil {
			w := &t.inflight[n]
			t.written, t.writtenOff = w.end, w.off
			if w.chained {
				l.recoveryPoint = max(l.recoveryPoint, w.off)
			}
		}
		n++
	}
	t.inflight = append(t.inflight[:0], t.inflight[n:]...)
}

// onlyActiveUnsynced reports whether the active segment's data is all a
// sync would have to cover: no directory change, no rolled segment or
// index file, no cut padding waiting for one.
func (l *Log) onlyActiveUnsynced() bool {
	if l.dirDirty() || len(l.cuts) > 0 {
		return false
	}
	if n := len(l.segs); n > 1 {
		prev := l.segs[n-2]
		return prev.next <= l.recoveryPoint && prev.indexDurable
	}
	return true
}

// Direct reports whether the log is in direct mode.
func (l *Log) Direct() bool { return l.tail != nil }

// WrittenOffset is the end of what has left the broker's memory: the log
// end in page-cache mode, the end of the completed writes in direct mode.
func (l *Log) WrittenOffset() Offset {
	if l.tail == nil {
		return l.logEnd
	}
	return l.tail.writtenOff
}

// WritesIdle reports whether a direct log has nothing in flight and nothing
// left to submit (always true in page-cache mode).
func (l *Log) WritesIdle() bool { return l.tail == nil || l.tail.idle() }

// WritesPending reports whether PendingWrites has (or will have, once the
// write in flight completes) something to submit.
func (l *Log) WritesPending() bool {
	return l.tail != nil && !l.closed && l.err == nil && l.tail.submitted < l.tail.hi
}

// flushDirect writes what is appended but not submitted, synchronously, and
// cuts the file back to the logical end (Close, roll). Nothing may be in
// flight.
func (l *Log) flushDirect(seg *segment) error {
	t := l.tail
	if len(t.inflight) > 0 {
		return fmt.Errorf("log: %d direct writes still in flight", len(t.inflight))
	}
	for _, w := range l.PendingWrites(nil, false) {
		if _, err := w.File.WriteAt(w.Buf, w.Off); err != nil {
			return l.fail(err)
		}
		l.WriteDone(w.Seq, nil)
	}
	size, err := seg.file.Size()
	if err != nil {
		return l.fail(err)
	}
	if size > seg.size {
		if err := seg.file.Truncate(seg.size); err != nil {
			return l.fail(err)
		}
		if !slices.Contains(l.cuts, seg) {
			l.cuts = append(l.cuts, seg)
		}
		// The space past the end is gone: a roll that then fails (a full
		// disk) leaves the tail on this segment, and its next append
		// must allocate again rather than write into unallocated blocks.
		t.allocEnd = seg.size
		t.zeroEnd = min(t.zeroEnd, t.allocEnd)
	}
	return nil
}

var readPool bytebufferpool.Pool

// fromCache returns the bytes [start, end) of the active segment copied out
// of the tail cache, when the cache holds them.
func (l *Log) fromCache(seg *segment, start, end int64) (*bytebufferpool.ByteBuffer, bool) {
	t := l.tail
	if t == nil || seg != t.seg || start < t.valid || end > t.hi {
		if t != nil && seg == t.seg {
			t.cache.Misses++
		}
		return nil, false
	}
	b := readPool.Get()
	if cap(b.B) < int(end-start) {
		b.B = make([]byte, end-start)
	}
	b.B = b.B[:end-start]
	t.copyOut(b.B, start)
	t.cache.Hits++
	return b, true
}
