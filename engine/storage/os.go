package storage

import (
	"errors"
	"io"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// OS returns the real file system.
func OS() FS { return osFS{} }

type osFS struct{}

func (osFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	fd := int(f.Fd())
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, &os.PathError{Op: "fstat", Path: name, Err: err}
	}
	return Sticky(&osFile{f: f, fd: fd, dir: st.Mode&unix.S_IFMT == unix.S_IFDIR}), nil
}

func (osFS) Remove(name string) error                    { return os.Remove(name) }
func (osFS) Rename(oldName, newName string) error        { return os.Rename(oldName, newName) }
func (osFS) MkdirAll(dir string, perm os.FileMode) error { return os.MkdirAll(dir, perm) }
func (osFS) RemoveAll(dir string) error                  { return os.RemoveAll(dir) }

func (osFS) ReadDir(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return nil, err
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names, nil
}

func (osFS) SyncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = retryEINTR(func() error { return unix.Fsync(int(f.Fd())) })
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return &os.PathError{Op: "fsync", Path: dir, Err: err}
	}
	return nil
}

func (osFS) Stat(name string) (int64, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// osFile keeps the *os.File so its finalizer does not close fd under us; all
// I/O goes straight to the descriptor with positional syscalls, so concurrent
// readers never share a file offset.
type osFile struct {
	f   *os.File
	fd  int
	dir bool
}

func (o *osFile) ReadAt(p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Pread(o.fd, p[done:], off+int64(done))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, &os.PathError{Op: "pread", Path: o.f.Name(), Err: err}
		}
		if n == 0 {
			return done, io.EOF
		}
		done += n
	}
	return done, nil
}

// noWaitRefused is set once the kernel refuses RWF_NOWAIT reads (see
// ReadAtNoWait's EOPNOTSUPP, ENOSYS and EINVAL); ReadAtNoWait then reads
// normally.
var noWaitRefused atomic.Bool

func (o *osFile) ReadAtNoWait(p []byte, off int64) (int, error) {
	if noWaitRefused.Load() {
		return o.ReadAt(p, off)
	}
	done := 0
	for done < len(p) {
		n, err := unix.Preadv2(o.fd, [][]byte{p[done:]}, off+int64(done), unix.RWF_NOWAIT)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return done, ErrWouldBlock
		case err == unix.EOPNOTSUPP, err == unix.ENOSYS, err == unix.EINVAL && done == 0 && off >= 0:
			// No RWF_NOWAIT here (EOPNOTSUPP), no preadv2 (ENOSYS), or a
			// kernel that does not know the flag (EINVAL).
			noWaitRefused.Store(true)
			k, err := o.ReadAt(p[done:], off+int64(done))
			return done + k, err
		case err != nil:
			return done, &os.PathError{Op: "preadv2", Path: o.f.Name(), Err: err}
		case n == 0:
			return done, io.EOF
		}
		done += n
	}
	return done, nil
}

func (o *osFile) WriteAt(p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Pwrite(o.fd, p[done:], off+int64(done))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, &os.PathError{Op: "pwrite", Path: o.f.Name(), Err: err}
		}
		if n == 0 {
			return done, io.ErrShortWrite
		}
		done += n
	}
	return done, nil
}

func (o *osFile) Truncate(size int64) error {
	if err := retryEINTR(func() error { return unix.Ftruncate(o.fd, size) }); err != nil {
		return &os.PathError{Op: "ftruncate", Path: o.f.Name(), Err: err}
	}
	return nil
}

func (o *osFile) Allocate(off, length int64) error {
	err := retryEINTR(func() error { return unix.Fallocate(o.fd, unix.FALLOC_FL_KEEP_SIZE, off, length) })
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		return nil // file system without fallocate: preallocation is optional
	}
	if err != nil {
		return &os.PathError{Op: "fallocate", Path: o.f.Name(), Err: err}
	}
	return nil
}

func (o *osFile) Datasync() error {
	var err error
	if o.dir {
		// fdatasync may skip directory metadata; directories need fsync.
		err = retryEINTR(func() error { return unix.Fsync(o.fd) })
	} else {
		err = retryEINTR(func() error { return unix.Fdatasync(o.fd) })
	}
	if err != nil {
		return &os.PathError{Op: "fdatasync", Path: o.f.Name(), Err: err}
	}
	return nil
}

func (o *osFile) Size() (int64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(o.fd, &st); err != nil {
		return 0, &os.PathError{Op: "fstat", Path: o.f.Name(), Err: err}
	}
	return st.Size, nil
}

func (o *osFile) Fd() int      { return o.fd }
func (o *osFile) Name() string { return o.f.Name() }
func (o *osFile) Close() error { return o.f.Close() }

func retryEINTR(f func() error) error {
	for {
		if err := f(); err != unix.EINTR {
			return err
		}
	}
}
