package engine

import (
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// probeDirect checks that dir's file system takes O_DIRECT writes (tmpfs
// before Linux 6.6 and some overlay file systems refuse them, at open or at
// the first write): one aligned block written to a scratch file.
func probeDirect(dir string) error {
	name := filepath.Join(dir, ".direct-probe")
	defer os.Remove(name)
	fd, err := unix.Open(name, unix.O_RDWR|unix.O_CREAT|unix.O_TRUNC|syscall.O_DIRECT|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return &os.PathError{Op: "open O_DIRECT", Path: name, Err: err}
	}
	defer unix.Close(fd)
	mem, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return err
	}
	defer unix.Munmap(mem)
	if _, err := unix.Pwrite(fd, mem, 0); err != nil {
		return &os.PathError{Op: "O_DIRECT write", Path: name, Err: err}
	}
	return nil
}
