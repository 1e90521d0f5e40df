//go:build linux

package uring

import (
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// slabAlign is the alignment and stride unit of slab buffers: the page size
// and the logical block size O_DIRECT needs on the devices sluice targets.
const slabAlign = 4096

// slabBufferMax is the kernel's limit on one registered buffer (1 GiB).
const slabBufferMax = 1 << 30

// Slab is one anonymous mmap region split into count buffers of bufSize
// bytes, each starting on a 4096-byte boundary (the stride is bufSize
// rounded up to 4096). The memory is outside the Go heap: the garbage
// collector neither moves nor frees it, which is what lets its addresses go
// into SQEs. A Slab may be read and written from any goroutine as ordinary
// memory. Distinct slabs may be created and closed concurrently.
type Slab struct {
	mem     []byte
	bufSize int
	stride  int
	count   int
}

// NewSlab maps count buffers of bufSize bytes, pre-faulted (MAP_POPULATE).
func NewSlab(bufSize, count int) (*Slab, error) {
	if bufSize <= 0 || bufSize > slabBufferMax || count <= 0 {
		return nil, fmt.Errorf("uring: slab of %d buffers of %d bytes: want 1..%d bytes and at least one buffer", count, bufSize, slabBufferMax)
	}
	stride := (bufSize + slabAlign - 1) &^ (slabAlign - 1)
	if count > (1<<46)/stride {
		return nil, fmt.Errorf("uring: slab of %d buffers of %d bytes is too large", count, bufSize)
	}
	mem, err := unix.Mmap(-1, 0, stride*count, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return nil, os.NewSyscallError("mmap slab", err)
	}
	s := &Slab{mem: mem, bufSize: bufSize, stride: stride, count: count}
	slabs.add(s.span())
	return s, nil
}

// Buf returns buffer i, len and cap bufSize (appending cannot spill into
// the next buffer).
func (s *Slab) Buf(i int) []byte {
	off := i * s.stride
	return s.mem[off : off+s.bufSize : off+s.bufSize]
}

// Len is the number of buffers; BufSize the size of each.
func (s *Slab) Len() int     { return s.count }
func (s *Slab) BufSize() int { return s.bufSize }

// Close unmaps the slab. Close the rings that used it first: an operation
// still in flight would write into whatever is mapped there next (pages of
// registered buffers stay pinned by the ring until it is closed, so those
// are merely lost, not corrupted).
func (s *Slab) Close() error {
	if s.mem == nil {
		return nil
	}
	slabs.remove(s.span())
	err := unix.Munmap(s.mem)
	s.mem = nil
	return err
}

func (s *Slab) span() span {
	p := uintptr(unsafe.Pointer(&s.mem[0]))
	return span{p, p + uintptr(len(s.mem))}
}

// slabs is the set of live slab address ranges, so that PrepRead and
// PrepWrite can refuse a buffer that is not slab memory. Readers (the
// shards' hot path) load an immutable slice without locking.
var slabs slabSet

type slabSet struct {
	mu    sync.Mutex
	spans atomic.Pointer[[]span]
}

func (set *slabSet) add(s span) {
	set.mu.Lock()
	defer set.mu.Unlock()
	var next []span
	if cur := set.spans.Load(); cur != nil {
		next = slices.Clone(*cur)
	}
	next = append(next, s)
	set.spans.Store(&next)
}

func (set *slabSet) remove(s span) {
	set.mu.Lock()
	defer set.mu.Unlock()
	next := slices.DeleteFunc(slices.Clone(*set.spans.Load()), func(x span) bool { return x == s })
	set.spans.Store(&next)
}

func inSlab(p, n uintptr) bool {
	cur := slabs.spans.Load()
	if cur == nil {
		return false
	}
	for _, s := range *cur {
		if s.contains(p, n) {
			return true
		}
	}
	return false
}
