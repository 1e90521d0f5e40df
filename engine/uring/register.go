//go:build linux

package uring

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Registration. With SINGLE_ISSUER these, too, must run on the owner
// thread (the kernel answers EEXIST otherwise).
//
// Passing Go memory here is sound, unlike in an SQE: io_uring_register
// copies its argument array during the call (copy_from_user of each iovec
// in io_sqe_buffers_register, of each fd in io_sqe_files_register) and
// keeps no pointer to it, and a Go pointer converted to uintptr inside the
// syscall's argument list is kept alive and unmoved until the call returns.
// What must stay valid afterwards is what the iovecs point at — the slab —
// whose pages the kernel pins for the life of the registration.

// RegisterBuffers registers every buffer of the slabs, numbered in order
// (the first slab's buffer i is index i, the next slab's follow), for
// PrepReadFixed/PrepWriteFixed. A ring registers buffers once.
func (r *Ring) RegisterBuffers(slabs ...*Slab) error {
	if r.buffers != nil {
		return errors.New("uring: buffers already registered on this ring")
	}
	var iovecs []unix.Iovec
	var spans []span
	for _, s := range slabs {
		for i := 0; i < s.count; i++ {
			b := s.Buf(i)
			var v unix.Iovec
			v.Base = &b[0]
			v.SetLen(len(b))
			iovecs = append(iovecs, v)
			p := uintptr(unsafe.Pointer(&b[0]))
			spans = append(spans, span{p, p + uintptr(len(b))})
		}
	}
	if len(iovecs) == 0 {
		return errors.New("uring: RegisterBuffers with no buffers")
	}
	if len(iovecs) > registerBuffersMax {
		return fmt.Errorf("uring: %d buffers exceed the kernel's %d", len(iovecs), registerBuffersMax)
	}
	if err := r.register(registerBuffers, unsafe.Pointer(&iovecs[0]), len(iovecs)); err != nil {
		return err
	}
	r.buffers = spans
	return nil
}

// RegisterFiles registers the file table; fd -1 leaves a slot empty
// (sparse), to be filled later by UpdateFile. A ring registers files once.
func (r *Ring) RegisterFiles(fds []int32) error {
	if len(fds) == 0 {
		return errors.New("uring: RegisterFiles with no slots")
	}
	if r.files != 0 {
		return errors.New("uring: files already registered on this ring")
	}
	if err := r.register(registerFiles, unsafe.Pointer(&fds[0]), len(fds)); err != nil {
		return err
	}
	r.files = len(fds)
	return nil
}

// UpdateFile puts fd into slot (fd -1 empties it). Operations already
// submitted against the slot keep the file they resolved.
func (r *Ring) UpdateFile(slot int, fd int32) error {
	if slot < 0 || slot >= r.files {
		return fmt.Errorf("uring: slot %d outside the registered file table (%d)", slot, r.files)
	}
	// The update struct holds the address of the fd array, so both live in
	// the ring's scratch page rather than in Go memory.
	fdCell := (*int32)(unsafe.Pointer(&r.scratch[scratchFd]))
	*fdCell = fd
	up := (*filesUpdate)(unsafe.Pointer(&r.scratch[scratchFiles]))
	*up = filesUpdate{offset: uint32(slot), fds: uint64(uintptr(unsafe.Pointer(fdCell)))}
	return r.register(registerFilesUpdate, unsafe.Pointer(up), 1)
}

// supports asks the kernel whether it knows op (IORING_REGISTER_PROBE,
// Linux 5.6); false when it cannot say.
func (r *Ring) supports(op uint8) bool {
	var pr probe
	if err := r.register(registerProbe, unsafe.Pointer(&pr), opLast); err != nil {
		return false
	}
	return op <= pr.lastOp && pr.ops[op].flags&probeOpSupported != 0
}

// WritevFixed reports whether PrepWritevFixed can be used on this kernel
// (IORING_OP_WRITEV_FIXED, Linux 6.15).
func (r *Ring) WritevFixed() bool { return r.writevFixed }

func (r *Ring) register(op uintptr, arg unsafe.Pointer, n int) error {
	for {
		_, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), op, uintptr(arg), uintptr(n), 0, 0)
		switch errno {
		case 0:
			return nil
		case unix.EINTR:
			r.interrupted++
		case unix.EEXIST:
			return ErrWrongThread
		default:
			return os.NewSyscallError("io_uring_register", errno)
		}
	}
}
