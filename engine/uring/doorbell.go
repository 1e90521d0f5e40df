//go:build linux

package uring

import (
	"encoding/binary"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Doorbell wakes a shard sleeping in its ring: an eventfd whose read the
// shard keeps armed in the ring (PrepRead(db.Fd(), 8 slab bytes, 0, tag),
// re-armed after each completion). Whether to ring at all (only when the
// shard sleeps) is the shard's business, not the doorbell's.
type Doorbell struct {
	// mu makes Close wait for Rings in progress and later Rings see the
	// close: a Ring racing with Close must not write to the descriptor
	// number after it is closed (and perhaps reused by a socket).
	mu sync.RWMutex
	fd int
}

// doorbellIncrement is the 8-byte value 1 that Ring writes. write(2) copies
// it during the call, so ordinary Go memory is fine; it is never modified,
// so any number of goroutines may pass it at once.
var doorbellIncrement = binary.NativeEndian.AppendUint64(nil, 1)

// NewDoorbell creates the eventfd (non-blocking, close-on-exec).
func NewDoorbell() (*Doorbell, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, os.NewSyscallError("eventfd", err)
	}
	return &Doorbell{fd: fd}, nil
}

// Ring adds 1 to the eventfd; safe from any goroutine. Rings before the
// shard reads coalesce into one read of their sum. EAGAIN (the counter is
// saturated) means it is rung already.
func (d *Doorbell) Ring() {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.fd < 0 {
		return // closed: nobody is listening
	}
	for {
		_, err := unix.Write(d.fd, doorbellIncrement)
		if err != unix.EINTR {
			return
		}
	}
}

// Fd is the eventfd, for PrepRead.
func (d *Doorbell) Fd() int32 { return int32(d.fd) }

// Close closes the eventfd; a Ring after it does nothing. A read armed in
// a ring holds its own reference to the file until that ring is closed.
func (d *Doorbell) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fd < 0 {
		return nil
	}
	err := unix.Close(d.fd)
	d.fd = -1
	return err
}
