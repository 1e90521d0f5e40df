package shard

import (
	"errors"
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sluice-broker/sluice/engine/storage"
	"github.com/sluice-broker/sluice/engine/uring"
)

// tagDoorbell marks the completion of the eventfd read that wakes a sleeping
// shard; datasync tags are never this value.
const tagDoorbell = ^uint64(0)

// uringBackend runs datasyncs through the shard's own io_uring ring and
// sleeps in io_uring_enter, woken by an eventfd read kept armed in the ring.
// It must be created and used on the shard's locked OS thread.
type uringBackend struct {
	r        *uring.Ring
	slab     *uring.Slab // 8 bytes of it receive the doorbell's eventfd counter
	doorbell *uring.Doorbell
	armed    bool         // the doorbell read is queued or in flight
	inline   []completion // datasyncs of files that have no OS descriptor
	cqes     []uring.CQE
	// The registered buffer indexes of the tail cache and the read slots,
	// -1 when not registered: writes from the cache are then plain WRITE,
	// reads plain READ, from and into the same memory.
	tailBuf, readBuf int
	// Vectored writes (WRITEV_FIXED from the tail cache): iovec arrays in
	// slab memory, one slot per write in flight, freed at its completion.
	iovSlab *uring.Slab
	iovFree []int32
	iovTag  map[uint64]int32
}

// writevSegs is how many pieces one vectored write takes. A tail cache
// write's pieces are runs of adjacent 64 KiB chunks (at most 1 MiB each)
// scattered over the cache, and a bounce block: one SQE carries at least
// 4 MiB of scattered chunks. A longer write goes as several SQEs.
const writevSegs = 64

func newURingBackend(entries uint32) (*uringBackend, error) {
	ring, err := uring.New(uring.Params{Entries: entries})
	if err != nil {
		return nil, err
	}
	slab, err := uring.NewSlab(4096, 1)
	if err != nil {
		ring.Close()
		return nil, err
	}
	db, err := uring.NewDoorbell()
	if err != nil {
		slab.Close()
		ring.Close()
		return nil, err
	}
	b := &uringBackend{r: ring, slab: slab, doorbell: db, cqes: make([]uring.CQE, 0, 2*entries), tailBuf: -1, readBuf: -1}
	if !b.arm() {
		b.close()
		return nil, fmt.Errorf("io_uring: cannot arm the doorbell read")
	}
	if err := b.submit(false); err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}

// arm queues the doorbell read unless it is already queued.
func (b *uringBackend) arm() bool {
	if b.armed {
		return true
	}
	b.armed = b.r.PrepRead(b.doorbell.Fd(), b.slab.Buf(0)[:8], 0, tagDoorbell)
	return b.armed
}

// submit hands queued SQEs to the kernel (waiting for one completion if
// wait). A busy ring is retried on the next turn; a ring that lost
// completions or is used from the wrong thread is a bug that must not be
// papered over.
func (b *uringBackend) submit(wait bool) error {
	var err error
	if wait {
		_, err = b.r.SubmitAndWait(1)
	} else {
		_, err = b.r.Submit()
	}
	switch {
	case err == nil, errors.Is(err, uring.ErrBusy):
		return nil
	case errors.Is(err, uring.ErrCompletionsLost), errors.Is(err, uring.ErrWrongThread):
		panic(fmt.Sprintf("shard io_uring: %v", err))
	}
	return err
}

func (b *uringBackend) sync(f storage.File, datasync bool, tag uint64) bool {
	fd := f.Fd()
	if fd < 0 {
		b.inline = append(b.inline, completion{tag: tag, err: f.Datasync()})
		return true
	}
	// Keep one SQE free for re-arming the doorbell.
	if b.r.SQSpace() < 2 {
		return false
	}
	return b.r.PrepFsync(int32(fd), datasync, tag)
}

func (b *uringBackend) write(f storage.File, buf []byte, off int64, dsync bool, tag uint64) bool {
	fd := f.Fd()
	if fd < 0 {
		n, err := writeDsync(f, buf, off, dsync)
		b.inline = append(b.inline, completion{tag: tag, err: err, n: n})
		return true
	}
	if b.r.SQSpace() < 2 {
		return false
	}
	var ok bool
	if b.tailBuf >= 0 {
		ok = b.r.PrepWriteFixed(int32(fd), buf, uint16(b.tailBuf), uint64(off), tag)
	} else {
		ok = b.r.PrepWrite(int32(fd), buf, uint64(off), tag)
	}
	if ok && dsync {
		b.r.DsyncLast()
	}
	return ok
}

func (b *uringBackend) read(f storage.File, buf []byte, off int64, tag uint64) bool {
	fd := f.Fd()
	if fd < 0 {
		n, err := readAt(f, buf, off)
		b.inline = append(b.inline, completion{tag: tag, err: err, n: n})
		return true
	}
	if b.r.SQSpace() < 2 {
		return false
	}
	if b.readBuf >= 0 {
		return b.r.PrepReadFixed(int32(fd), buf, uint16(b.readBuf), uint64(off), tag)
	}
	return b.r.PrepRead(int32(fd), buf, uint64(off), tag)
}

// registerBuffers registers the tail cache's slab (nil in page-cache mode)
// and the read slots' slab, one buffer each.
func (b *uringBackend) registerBuffers(tail, reads *uring.Slab) error {
	slabs := []*uring.Slab{reads}
	if tail != nil {
		slabs = []*uring.Slab{tail, reads}
	}
	if err := b.r.RegisterBuffers(slabs...); err != nil {
		return err
	}
	b.tailBuf, b.readBuf = -1, len(slabs)-1
	if tail != nil {
		b.tailBuf = 0
		if b.r.WritevFixed() {
			b.setUpWritev()
		}
	}
	return nil
}

// setUpWritev maps iovec slots for as many vectored writes as the SQ
// holds. Without them (the mmap failed) writes go piece by piece:
// sluice_direct_write_pieces_total then equals sluice_direct_writes_total.
func (b *uringBackend) setUpWritev() {
	slots := int(b.r.Info().SQEntries)
	slab, err := uring.NewSlab(writevSegs*int(unsafe.Sizeof(unix.Iovec{})), slots)
	if err != nil {
		return // the buffers are registered; only vectoring is off
	}
	b.iovSlab, b.iovTag = slab, make(map[uint64]int32, slots)
	for i := slots - 1; i >= 0; i-- {
		b.iovFree = append(b.iovFree, int32(i))
	}
}

func (b *uringBackend) vectorMax() int {
	if b.iovSlab == nil {
		return 1
	}
	return writevSegs
}

func (b *uringBackend) writev(f storage.File, bufs [][]byte, off int64, dsync bool, tag uint64) bool {
	if f.Fd() < 0 {
		n, err := 0, error(nil)
		for _, buf := range bufs {
			var k int
			k, err = writeDsync(f, buf, off+int64(n), dsync)
			n += k
			if err != nil {
				break
			}
		}
		b.inline = append(b.inline, completion{tag: tag, err: err, n: n})
		return true
	}
	if b.r.SQSpace() < 2 || len(b.iovFree) == 0 {
		return false
	}
	slot := b.iovFree[len(b.iovFree)-1]
	iovs := uring.IovecsIn(b.iovSlab.Buf(int(slot)))[:len(bufs)]
	for i, buf := range bufs {
		iovs[i].Base = &buf[0]
		iovs[i].SetLen(len(buf))
	}
	if !b.r.PrepWritevFixed(int32(f.Fd()), iovs, uint16(b.tailBuf), uint64(off), tag) {
		return false
	}
	if dsync {
		b.r.DsyncLast()
	}
	b.iovFree = b.iovFree[:len(b.iovFree)-1]
	b.iovTag[tag] = slot
	return true
}

func (b *uringBackend) collect(dst []completion) []completion {
	dst = append(dst, b.inline...)
	b.inline = b.inline[:0]
	b.cqes = b.r.Reap(b.cqes[:0])
	for _, c := range b.cqes {
		if c.UserData == tagDoorbell {
			b.armed = false
			b.arm()
			continue
		}
		if slot, ok := b.iovTag[c.UserData]; ok {
			delete(b.iovTag, c.UserData)
			b.iovFree = append(b.iovFree, slot)
		}
		var err error
		n := 0
		if c.Res < 0 {
			err = syscall.Errno(-c.Res)
		} else {
			n = int(c.Res)
		}
		dst = append(dst, completion{tag: c.UserData, err: err, n: n})
	}
	return dst
}

func (b *uringBackend) poll(dst []completion) []completion {
	if err := b.submit(false); err != nil {
		panic(fmt.Sprintf("shard io_uring submit: %v", err))
	}
	return b.collect(dst)
}

func (b *uringBackend) wait(dst []completion) []completion {
	if len(b.inline) > 0 || !b.arm() {
		// Without an armed doorbell the shard must not sleep: it could
		// never be woken. Poll instead; the SQ drains on submit.
		return b.poll(dst)
	}
	if err := b.submit(true); err != nil {
		panic(fmt.Sprintf("shard io_uring wait: %v", err))
	}
	return b.collect(dst)
}

func (b *uringBackend) wake() { b.doorbell.Ring() }

func (b *uringBackend) close() {
	b.doorbell.Close()
	b.r.Close()
	b.slab.Close()
	if b.iovSlab != nil {
		b.iovSlab.Close()
	}
}

func (b *uringBackend) name() string { return "io_uring" }

func (b *uringBackend) stats() (uint64, uint64) { return b.r.Stats() }
