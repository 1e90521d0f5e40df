package storage

import (
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// Op is a kind of file system operation, as a bit so a Rule can match several.
type Op uint16

const (
	OpRead Op = 1 << iota
	OpWrite
	OpDatasync // File.Datasync and FS.SyncDir
	OpTruncate
	OpAllocate
	OpOpen
	OpRemove // Remove and RemoveAll
	OpRename
	// OpReadNoWait is File.ReadAtNoWait; a rule with Err ErrWouldBlock
	// makes reads look cold to the shard.
	OpReadNoWait
	OpAll Op = 1<<iota - 1
)

// Rule injects a fault into the operations it matches. Rules are checked in
// order; the first one that fires decides the error. Matching is counted per
// rule, so faults are deterministic for a deterministic sequence of calls.
type Rule struct {
	Ops Op
	// Pattern is a filepath.Match pattern on the base name of the file or
	// directory operated on; empty matches every name.
	Pattern string
	// Dir is a filepath.Match pattern on the base name of the directory
	// holding it (a partition's directory, "orders-3"); empty matches all.
	Dir string
	// After is how many matching operations succeed before the rule fires.
	After int
	// Times is how many times the rule fires; 0 means every time from then on.
	Times int
	// Err is the error injected; nil means EIO.
	Err error
	// Short makes a matching write write the first half of its bytes before
	// failing, like a device that ran out of space mid-write.
	Short bool
}

// EIO returns a rule that fails ops on names matching pattern with EIO after
// the first after of them succeeded.
func EIO(ops Op, pattern string, after int) Rule {
	return Rule{Ops: ops, Pattern: pattern, After: after, Err: unix.EIO}
}

// ENOSPC returns a rule that fails writes on names matching pattern with
// ENOSPC, writing half the bytes first, after the first after writes.
func ENOSPC(pattern string, after int) Rule {
	return Rule{Ops: OpWrite, Pattern: pattern, After: after, Err: unix.ENOSPC, Short: true}
}

// Injector decides which operations fail, by its rules; FaultyFS consults
// one for file system calls, and the shard (engine/shard) for the I/O it
// hands to io_uring or its helper goroutine, which never calls File's
// methods. Safe for concurrent use.
type Injector struct {
	mu    sync.Mutex
	rules []Rule
	seen  []int // matching operations seen per rule
	fired []int
	count [16]int // operations seen per Op bit
}

// NewInjector returns an injector with rules.
func NewInjector(rules ...Rule) *Injector {
	return &Injector{rules: rules, seen: make([]int, len(rules)), fired: make([]int, len(rules))}
}

// FaultyFS wraps an FS and injects faults according to its rules.
type FaultyFS struct {
	*Injector
	inner FS
}

// NewFaulty wraps inner with fault-injecting rules.
func NewFaulty(inner FS, rules ...Rule) *FaultyFS {
	return &FaultyFS{inner: inner, Injector: NewInjector(rules...)}
}

// AddRule adds a rule; its count starts now.
func (f *Injector) AddRule(r Rule) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = append(f.rules, r)
	f.seen = append(f.seen, 0)
	f.fired = append(f.fired, 0)
}

// Fired returns how many times the rules have fired in all.
func (f *Injector) Fired() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, k := range f.fired {
		n += k
	}
	return n
}

// Count returns how many operations of kind op (a single bit) were issued.
func (f *Injector) Count(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := 0; i < len(f.count); i++ {
		if op == 1<<i {
			return f.count[i]
		}
	}
	return 0
}

// Check records an operation of kind op on the file name and returns the
// fault to inject, if any, and whether a write should be cut short (write
// part of its bytes, then fail).
func (f *Injector) Check(op Op, name string) (err error, short bool) { return f.check(op, name) }

// check records an operation and returns the fault to inject, if any.
func (f *Injector) check(op Op, name string) (error, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := 0; i < len(f.count); i++ {
		if op == 1<<i {
			f.count[i]++
		}
	}
	base, dir := filepath.Base(name), filepath.Base(filepath.Dir(name))
	for i, r := range f.rules {
		if r.Ops&op == 0 {
			continue
		}
		if r.Pattern != "" {
			if ok, _ := filepath.Match(r.Pattern, base); !ok {
				continue
			}
		}
		if r.Dir != "" {
			if ok, _ := filepath.Match(r.Dir, dir); !ok {
				continue
			}
		}
		f.seen[i]++
		if f.seen[i] <= r.After || (r.Times > 0 && f.fired[i] >= r.Times) {
			continue
		}
		f.fired[i]++
		err := r.Err
		if err == nil {
			err = unix.EIO
		}
		return err, r.Short
	}
	return nil, false
}

func (f *FaultyFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	if err, _ := f.check(OpOpen, name); err != nil {
		return nil, pathErr("open", name, err)
	}
	inner, err := f.inner.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return Sticky(&faultyFile{File: inner, fs: f}), nil
}

func (f *FaultyFS) Remove(name string) error {
	if err, _ := f.check(OpRemove, name); err != nil {
		return pathErr("remove", name, err)
	}
	return f.inner.Remove(name)
}

func (f *FaultyFS) Rename(oldName, newName string) error {
	if err, _ := f.check(OpRename, newName); err != nil {
		return &os.LinkError{Op: "rename", Old: oldName, New: newName, Err: err}
	}
	return f.inner.Rename(oldName, newName)
}

func (f *FaultyFS) ReadDir(dir string) ([]string, error) {
	if err, _ := f.check(OpRead, dir); err != nil {
		return nil, pathErr("readdir", dir, err)
	}
	return f.inner.ReadDir(dir)
}

func (f *FaultyFS) MkdirAll(dir string, perm os.FileMode) error { return f.inner.MkdirAll(dir, perm) }

func (f *FaultyFS) RemoveAll(dir string) error {
	if err, _ := f.check(OpRemove, dir); err != nil {
		return pathErr("removeall", dir, err)
	}
	return f.inner.RemoveAll(dir)
}

func (f *FaultyFS) SyncDir(dir string) error {
	if err, _ := f.check(OpDatasync, dir); err != nil {
		return pathErr("fsync", dir, err)
	}
	return f.inner.SyncDir(dir)
}

func (f *FaultyFS) Stat(name string) (int64, error) { return f.inner.Stat(name) }

type faultyFile struct {
	File
	fs *FaultyFS
}

func (f *faultyFile) ReadAt(p []byte, off int64) (int, error) {
	if err, _ := f.fs.check(OpRead, f.Name()); err != nil {
		return 0, pathErr("read", f.Name(), err)
	}
	return f.File.ReadAt(p, off)
}

func (f *faultyFile) ReadAtNoWait(p []byte, off int64) (int, error) {
	if err, _ := f.fs.check(OpReadNoWait, f.Name()); err != nil {
		if err == ErrWouldBlock {
			return 0, err
		}
		return 0, pathErr("read", f.Name(), err)
	}
	if err, _ := f.fs.check(OpRead, f.Name()); err != nil {
		return 0, pathErr("read", f.Name(), err)
	}
	return f.File.ReadAtNoWait(p, off)
}

func (f *faultyFile) WriteAt(p []byte, off int64) (int, error) {
	if err, short := f.fs.check(OpWrite, f.Name()); err != nil {
		n := 0
		if short {
			n, _ = f.File.WriteAt(p[:len(p)/2], off)
		}
		return n, pathErr("write", f.Name(), err)
	}
	return f.File.WriteAt(p, off)
}

func (f *faultyFile) Truncate(size int64) error {
	if err, _ := f.fs.check(OpTruncate, f.Name()); err != nil {
		return pathErr("truncate", f.Name(), err)
	}
	return f.File.Truncate(size)
}

func (f *faultyFile) Allocate(off, length int64) error {
	if err, _ := f.fs.check(OpAllocate, f.Name()); err != nil {
		return pathErr("fallocate", f.Name(), err)
	}
	return f.File.Allocate(off, length)
}

func (f *faultyFile) Datasync() error {
	if err, _ := f.fs.check(OpDatasync, f.Name()); err != nil {
		return pathErr("fdatasync", f.Name(), err)
	}
	return f.File.Datasync()
}
