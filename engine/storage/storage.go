// Package storage is the file I/O interface the partition logs are written
// through, with several real implementations that the tests run the same
// bodies across (the pebble vfs habit):
//
//   - OS: the real file system; pwrite, fdatasync and fallocate through
//     golang.org/x/sys/unix. Its File.Fd is the OS descriptor, so the shard
//     can datasync it with io_uring and the fetch path can sendfile from it.
//   - NewMem: an in-memory file system that remembers, per file, which bytes
//     were datasynced and, per directory, which entries were made durable by
//     SyncDir. (*MemFS).Crash and CrashTorn return the file system a machine
//     would see after losing power, to test recovery.
//   - NewFaulty: wraps another FS and injects errors (EIO, ENOSPC, short
//     writes) deterministically, by operation kind, file name pattern and
//     operation count.
//
// # Sticky errors
//
// Every File returned by these file systems is wrapped by Sticky: after a
// WriteAt, Truncate or Datasync fails, the file refuses every later WriteAt,
// Truncate and Datasync with the same error (nats-server filestore habit).
// After a failed fdatasync the kernel may have dropped the dirty pages and
// cleared the error, so a later "successful" fsync would lie; the only safe
// reaction is to stop writing that file and recover from what is on disk.
// Reads stay allowed so fetches of data already written keep working.
// Allocate failures are not sticky: preallocation is an optimisation.
//
// A full disk is not a failed disk: ENOSPC and EDQUOT from WriteAt and
// Truncate (IsNoSpace) are returned but not latched. Nothing was lost: the
// write did not happen, or happened in part past what the caller counts as
// written, and the caller cuts that part off and tries again once space
// returns. A no-space error from Datasync is latched like any other: a
// failed writeback may have dropped pages.
//
// The stickiness lives here, in one wrapper used by all implementations, so a
// fault injected by NewFaulty behaves exactly like a real one. The partition
// log additionally latches its first write error (engine/log), because it
// also learns of fsync failures that happen outside this package (io_uring).
package storage

import (
	"errors"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// File is an open file. ReadAt may be called from any goroutine concurrently
// with the writer; the mutating methods are called by one goroutine at a time.
type File interface {
	ReadAt(p []byte, off int64) (int, error)
	// ReadAtNoWait is ReadAt that never waits for the device: it fails
	// with ErrWouldBlock (having read n < len(p) bytes) when the bytes are
	// not all in memory (preadv2 with RWF_NOWAIT on an OS file). The shard
	// thread reads with it and fetches what would block asynchronously.
	ReadAtNoWait(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	Truncate(size int64) error
	// Allocate reserves space without changing the file size
	// (fallocate(FALLOC_FL_KEEP_SIZE)) where supported; a no-op elsewhere.
	Allocate(off, length int64) error
	// Datasync makes the written data durable (fdatasync). For a directory
	// opened with OpenFile it is a full fsync of the directory.
	Datasync() error
	Size() (int64, error)
	// Fd is the OS descriptor for sendfile and io_uring fsync, or -1 when the
	// file is not an OS file.
	Fd() int
	Name() string
	Close() error
}

// FS is a file system. Names use the OS path syntax.
type FS interface {
	// OpenFile opens a file; opening a directory read-only gives a File whose
	// only useful methods are Datasync (fsync of the directory), Fd and Close.
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	Remove(name string) error
	Rename(oldName, newName string) error
	// ReadDir returns the names in dir, sorted.
	ReadDir(dir string) ([]string, error)
	MkdirAll(dir string, perm os.FileMode) error
	RemoveAll(dir string) error
	// SyncDir makes the creations, renames and removals in dir durable.
	SyncDir(dir string) error
	Stat(name string) (size int64, err error)
}

// ErrWouldBlock: ReadAtNoWait would have had to wait for the device.
var ErrWouldBlock = errors.New("storage: read would block")

// ErrClosed is returned by operations on a closed File.
var ErrClosed = errors.New("storage: file already closed")

// Sticky wraps f so that the first error from WriteAt, Truncate or Datasync
// is returned again by every later call of those methods. Wrapping an
// already sticky file returns it unchanged.
func Sticky(f File) File {
	if s, ok := f.(*stickyFile); ok {
		return s
	}
	return &stickyFile{File: f}
}

// StickyError returns the error latched by a file from Sticky, or nil.
func StickyError(f File) error {
	if s, ok := f.(*stickyFile); ok {
		if b := s.err.Load(); b != nil {
			return b.err
		}
	}
	return nil
}

type errBox struct{ err error }

// stickyFile latches the first write-side error. The latch is atomic because
// the shard may datasync from a helper goroutine while it writes.
type stickyFile struct {
	File
	err atomic.Pointer[errBox]
}

func (s *stickyFile) latched() error {
	if b := s.err.Load(); b != nil {
		return b.err
	}
	return nil
}

func (s *stickyFile) latch(err error) error {
	s.err.CompareAndSwap(nil, &errBox{err: err})
	return s.latched()
}

func (s *stickyFile) WriteAt(p []byte, off int64) (int, error) {
	if err := s.latched(); err != nil {
		return 0, err
	}
	n, err := s.File.WriteAt(p, off)
	if err == nil && n < len(p) {
		err = errShortWrite
	}
	if err != nil {
		if IsNoSpace(err) {
			return n, err
		}
		return n, s.latch(err)
	}
	return n, nil
}

func (s *stickyFile) Truncate(size int64) error {
	if err := s.latched(); err != nil {
		return err
	}
	if err := s.File.Truncate(size); err != nil {
		if IsNoSpace(err) {
			return err
		}
		return s.latch(err)
	}
	return nil
}

// IsOutOfDescriptors reports whether err says the process (EMFILE) or the
// system (ENFILE) has no file descriptor left: a transient condition, not
// a fault of the file.
func IsOutOfDescriptors(err error) bool {
	return errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE)
}

// IsNoSpace reports whether err says the file system is full (ENOSPC) or
// the owner's quota is (EDQUOT).
func IsNoSpace(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)
}

func (s *stickyFile) Datasync() error {
	if err := s.latched(); err != nil {
		return err
	}
	if err := s.File.Datasync(); err != nil {
		return s.latch(err)
	}
	return nil
}

var errShortWrite = errors.New("storage: short write")
