package shard

import (
	"github.com/sluice-broker/sluice/engine/log"
	"github.com/sluice-broker/sluice/engine/storage"
)

// faultyBackend injects faults where the shard hands I/O to its backend:
// the datasyncs, direct writes and cold reads that io_uring (or the plain
// backend's helper goroutine) runs on a descriptor, never through
// storage.File's methods, so storage.FaultyFS cannot reach them. Its rules
// (Config.Faults) choose operations by kind (storage.OpDatasync, OpWrite,
// OpRead), by file and partition directory name, and by count, so one
// test body can fail "the second datasync of t-0" on every backend and in
// both write modes, over real files.
//
// A failed operation is not submitted: its completion carries the error.
// A Short rule submits the first half of a write (rounded down to whole
// blocks, as O_DIRECT requires) and then reports the rule's error with
// the bytes that were written, like a device that filled up mid-write.
type faultyBackend struct {
	backend
	faults  *storage.Injector
	pending []completion     // injected completions, returned by the next poll or wait
	cut     map[uint64]error // tags of writes cut short: the error their completion gets
}

func newFaultyBackend(inner backend, faults *storage.Injector) *faultyBackend {
	return &faultyBackend{backend: inner, faults: faults, cut: map[uint64]error{}}
}

func (b *faultyBackend) sync(f storage.File, datasync bool, tag uint64) bool {
	if err, _ := b.faults.Check(storage.OpDatasync, f.Name()); err != nil {
		b.pending = append(b.pending, completion{tag: tag, err: err})
		return true
	}
	return b.backend.sync(f, datasync, tag)
}

func (b *faultyBackend) write(f storage.File, buf []byte, off int64, dsync bool, tag uint64) bool {
	err, short := b.faults.Check(storage.OpWrite, f.Name())
	if err == nil {
		return b.backend.write(f, buf, off, dsync, tag)
	}
	return b.fail(f, buf, off, dsync, tag, err, short)
}

// fail completes a write of buf with err, having written the first half
// of it when short.
func (b *faultyBackend) fail(f storage.File, buf []byte, off int64, dsync bool, tag uint64, err error, short bool) bool {
	if n := shortLength(len(buf)); short && n > 0 {
		if !b.backend.write(f, buf[:n], off, dsync, tag) {
			return false
		}
		b.cut[tag] = err
		return true
	}
	b.pending = append(b.pending, completion{tag: tag, err: err})
	return true
}

func (b *faultyBackend) writev(f storage.File, bufs [][]byte, off int64, dsync bool, tag uint64) bool {
	err, short := b.faults.Check(storage.OpWrite, f.Name())
	if err == nil {
		return b.backend.writev(f, bufs, off, dsync, tag)
	}
	if k := len(bufs) / 2; short && k > 0 {
		// The first half of the pieces: whole pieces keep block alignment.
		if !b.backend.writev(f, bufs[:k], off, dsync, tag) {
			return false
		}
		b.cut[tag] = err
		return true
	}
	return b.fail(f, bufs[0], off, dsync, tag, err, short) // one piece: cut within it
}

func (b *faultyBackend) read(f storage.File, buf []byte, off int64, tag uint64) bool {
	if err, _ := b.faults.Check(storage.OpRead, f.Name()); err != nil {
		b.pending = append(b.pending, completion{tag: tag, err: err})
		return true
	}
	return b.backend.read(f, buf, off, tag)
}

// shortLength is how much of an n-byte write a Short rule lets through:
// half, in whole blocks.
func shortLength(n int) int { return n / 2 &^ (log.BlockSize - 1) }

func (b *faultyBackend) poll(dst []completion) []completion {
	return b.finish(len(dst), b.backend.poll(dst))
}

func (b *faultyBackend) wait(dst []completion) []completion {
	if len(b.pending) > 0 {
		return b.poll(dst)
	}
	return b.finish(len(dst), b.backend.wait(dst))
}

// finish adds the injected completions to got and gives the writes cut
// short, among got[from:], their error.
func (b *faultyBackend) finish(from int, got []completion) []completion {
	for i := from; i < len(got); i++ {
		if err, ok := b.cut[got[i].tag]; ok {
			delete(b.cut, got[i].tag)
			if got[i].err == nil {
				got[i].err = err
			}
		}
	}
	got = append(got, b.pending...)
	b.pending = b.pending[:0]
	return got
}
