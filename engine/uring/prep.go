//go:build linux

package uring

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Preparing SQEs. Every Prep* returns false, and changes nothing, when the
// submission queue is full. The shard then keeps the operation in its own
// bounded overflow queue and retries after the next Submit, which frees the
// whole SQ (SQEs are copied by the kernel at submission):
//
//	for len(pending) > 0 && r.PrepWriteFixed(...pending[0]...) { pending = pending[1:] }
//	r.Submit()
//
// A linked pair needs two free slots: check r.SQSpace() >= 2 first, or a
// dangling IOSQE_IO_LINK would chain onto whatever is prepared next.
//
// Buffers must be slab memory (NewSlab); that is checked and a violation
// panics, because a Go-heap or stack address in an SQE is a memory
// corruption waiting for the garbage collector or a stack move.

// SQSpace is the number of SQEs that can be prepared before the next Submit.
func (r *Ring) SQSpace() int { return int(r.sqEntries - (r.sqeTail - atomic.LoadUint32(r.sqHead))) }

// Pending is the number of prepared SQEs the kernel has not accepted yet.
func (r *Ring) Pending() int { return int(r.sqeTail - atomic.LoadUint32(r.sqHead)) }

// next returns a zeroed SQE, or nil if the SQ is full. Zeroing the whole
// entry matters: a recycled SQE still holds the previous operation's
// rw_flags, buf_index, personality and so on.
func (r *Ring) next() *sqe {
	if r.sqeTail-atomic.LoadUint32(r.sqHead) >= r.sqEntries {
		r.last = -1
		return nil
	}
	i := r.sqeTail & r.sqMask
	s := &r.sqes[i]
	*s = sqe{}
	r.sqeTail++
	r.last = int32(i)
	return s
}

// LinkLast sets IOSQE_IO_LINK on the SQE prepared last, so the next one
// prepared starts only after it succeeds (a short write or error cancels
// the rest of the chain with -ECANCELED). It panics if the last Prep*
// failed or the SQE was already submitted.
func (r *Ring) LinkLast() { r.lastSQE("LinkLast").flags |= sqeIOLink }

// DsyncLast makes the last prepared read or write an RWF_DSYNC one: it
// completes once the data (and any metadata needed to read it back) is
// durable, as if followed by fdatasync. It panics like LinkLast.
func (r *Ring) DsyncLast() { r.lastSQE("DsyncLast").opFlags |= rwfDsync }

// IdleLast gives the read or write prepared last the idle I/O priority
// class (IOPRIO_CLASS_IDLE): schedulers that honour priorities (mq-deadline,
// bfq) serve it only when no other I/O waits. Same rules as LinkLast.
func (r *Ring) IdleLast() { r.lastSQE("IdleLast").ioprio = ioprioClassIdle << ioprioClassShift }

const (
	ioprioClassIdle  = 3
	ioprioClassShift = 13
)

// FixedFileLast marks the SQE prepared last as addressing a slot of the
// registered file table (IOSQE_FIXED_FILE): its fd argument was a slot.
// Same rules as LinkLast.
func (r *Ring) FixedFileLast() {
	s := r.lastSQE("FixedFileLast")
	if s.fd < 0 || int(s.fd) >= r.files {
		panic(fmt.Sprintf("uring: FixedFileLast: slot %d outside the registered file table (%d)", s.fd, r.files))
	}
	s.flags |= sqeFixedFile
}

func (r *Ring) lastSQE(caller string) *sqe {
	if r.last < 0 {
		panic("uring: " + caller + " without a prepared, unsubmitted SQE")
	}
	return &r.sqes[r.last]
}

// PrepNop prepares a no-op; its CQE has Res 0.
func (r *Ring) PrepNop(userData uint64) bool {
	s := r.next()
	if s == nil {
		return false
	}
	s.opcode = opNop
	s.fd = -1
	s.userData = userData
	return true
}

// PrepFsync prepares fsync(2), or fdatasync(2) when datasync is set.
func (r *Ring) PrepFsync(fd int32, datasync bool, userData uint64) bool {
	s := r.next()
	if s == nil {
		return false
	}
	s.opcode = opFsync
	s.fd = fd
	if datasync {
		s.opFlags = fsyncDatasync
	}
	s.userData = userData
	return true
}

// PrepWriteFixed prepares a pwrite of buf at off from registered buffer
// bufIndex; buf must lie inside that buffer (panics otherwise).
func (r *Ring) PrepWriteFixed(fd int32, buf []byte, bufIndex uint16, off uint64, userData uint64) bool {
	return r.prepFixed(opWriteFixed, fd, buf, bufIndex, off, userData)
}

// PrepWritevFixed prepares a pwritev of the buffers iovs points at, all
// inside registered buffer bufIndex, at off: one write, one completion.
// iovs itself is slab memory (IovecsIn) and must stay untouched until the
// completion (the kernel may read it as late as the write's issue). It
// panics on a buffer outside the registered one or iovs outside a slab,
// and on a kernel without the opcode (see WritevFixed).
func (r *Ring) PrepWritevFixed(fd int32, iovs []unix.Iovec, bufIndex uint16, off uint64, userData uint64) bool {
	if !r.writevFixed {
		panic("uring: PrepWritevFixed: the kernel has no IORING_OP_WRITEV_FIXED")
	}
	p, n := uintptr(unsafe.Pointer(unsafe.SliceData(iovs))), uintptr(len(iovs))*unsafe.Sizeof(unix.Iovec{})
	if len(iovs) == 0 || !inSlab(p, n) {
		panic(fmt.Sprintf("uring: iovec array [%#x,+%d) is empty or not slab memory", p, n))
	}
	if int(bufIndex) >= len(r.buffers) {
		panic(fmt.Sprintf("uring: registered buffer %d does not exist", bufIndex))
	}
	for _, v := range iovs {
		if b := uintptr(unsafe.Pointer(v.Base)); !r.buffers[bufIndex].contains(b, uintptr(v.Len)) {
			panic(fmt.Sprintf("uring: buffer [%#x,+%d) is not inside registered buffer %d", b, v.Len, bufIndex))
		}
	}
	return r.prepIO(opWritevFixed, fd, off, uint64(p), uint32(len(iovs)), bufIndex, userData)
}

// IovecsIn lays an iovec array over buf (slab memory, 8-byte aligned),
// for PrepWritevFixed.
func IovecsIn(buf []byte) []unix.Iovec {
	size := int(unsafe.Sizeof(unix.Iovec{}))
	if len(buf) < size || uintptr(unsafe.Pointer(&buf[0]))%8 != 0 {
		panic("uring: IovecsIn needs at least one 8-byte aligned iovec's room")
	}
	return unsafe.Slice((*unix.Iovec)(unsafe.Pointer(&buf[0])), len(buf)/size)
}

// PrepReadFixed prepares a pread into buf at off, buf inside registered
// buffer bufIndex (panics otherwise).
func (r *Ring) PrepReadFixed(fd int32, buf []byte, bufIndex uint16, off uint64, userData uint64) bool {
	return r.prepFixed(opReadFixed, fd, buf, bufIndex, off, userData)
}

func (r *Ring) prepFixed(op uint8, fd int32, buf []byte, bufIndex uint16, off uint64, userData uint64) bool {
	p, n := bufferSpan(buf)
	if int(bufIndex) >= len(r.buffers) || !r.buffers[bufIndex].contains(p, n) {
		panic(fmt.Sprintf("uring: buffer [%#x,+%d) is not inside registered buffer %d", p, n, bufIndex))
	}
	return r.prepIO(op, fd, off, uint64(p), uint32(n), bufIndex, userData)
}

// prepIO fills the next SQE for a read or write (addr and len as op
// reads them: a buffer, or an iovec array and its length).
func (r *Ring) prepIO(op uint8, fd int32, off, addr uint64, n uint32, bufIndex uint16, userData uint64) bool {
	s := r.next()
	if s == nil {
		return false
	}
	s.opcode = op
	s.fd = fd
	s.off = off
	s.addr = addr
	s.len = n
	s.bufIndex = bufIndex
	s.userData = userData
	return true
}

// PrepRead prepares a pread into buf (slab memory, panics otherwise) at
// off. On a non-seekable file such as an eventfd the offset is ignored and
// the read stays armed until data arrives.
func (r *Ring) PrepRead(fd int32, buf []byte, off uint64, userData uint64) bool {
	return r.prepRW(opRead, fd, buf, off, userData)
}

// PrepWrite prepares a pwrite of buf (slab memory, panics otherwise) at off.
func (r *Ring) PrepWrite(fd int32, buf []byte, off uint64, userData uint64) bool {
	return r.prepRW(opWrite, fd, buf, off, userData)
}

func (r *Ring) prepRW(op uint8, fd int32, buf []byte, off uint64, userData uint64) bool {
	p, n := bufferSpan(buf)
	if !inSlab(p, n) {
		panic(fmt.Sprintf("uring: buffer [%#x,+%d) is not slab memory", p, n))
	}
	return r.prepIO(op, fd, off, uint64(p), uint32(n), 0, userData)
}

func bufferSpan(buf []byte) (uintptr, uintptr) {
	return uintptr(unsafe.Pointer(unsafe.SliceData(buf))), uintptr(len(buf))
}
