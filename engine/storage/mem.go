package storage

import (
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// MemFS is an in-memory FS that models what survives a power loss:
//
//   - a file's durable content is what it held at its last Datasync;
//   - a directory's durable entries are what it held at its last SyncDir
//     (or Datasync of the directory opened as a File). A file created,
//     renamed or removed without a SyncDir of its directory is, after a crash,
//     back to where the last SyncDir saw it. The root directory is the mount
//     point: its entries are always durable.
//
// Crash and CrashTorn build the file system found after the power comes back.
// All methods are safe for concurrent use (one mutex; this is a test FS).
type MemFS struct {
	mu   sync.Mutex
	root *memNode
}

type memNode struct {
	isDir bool

	// Files.
	data    []byte
	durable []byte
	// dirtyFrom is the lowest byte changed (written or truncated) since the
	// last Datasync; len(durable) when only appends happened.
	dirtyFrom int64

	// Directories.
	children        map[string]*memNode
	durableChildren map[string]*memNode
}

func newDirNode() *memNode {
	return &memNode{isDir: true, children: map[string]*memNode{}, durableChildren: map[string]*memNode{}}
}

// NewMem returns an empty in-memory file system.
func NewMem() *MemFS { return &MemFS{root: newDirNode()} }

func splitPath(name string) []string {
	name = filepath.ToSlash(filepath.Clean(name))
	var parts []string
	for _, p := range strings.Split(name, "/") {
		if p != "" && p != "." {
			parts = append(parts, p)
		}
	}
	return parts
}

// lookup resolves name; parent is the directory holding it (nil for root).
func (m *MemFS) lookup(name string) (parent, node *memNode, base string, err error) {
	parts := splitPath(name)
	if len(parts) == 0 {
		return nil, m.root, "", nil
	}
	dir := m.root
	for _, p := range parts[:len(parts)-1] {
		next, ok := dir.children[p]
		if !ok {
			return nil, nil, "", unix.ENOENT
		}
		if !next.isDir {
			return nil, nil, "", unix.ENOTDIR
		}
		dir = next
	}
	base = parts[len(parts)-1]
	return dir, dir.children[base], base, nil
}

func (m *MemFS) setChild(dir *memNode, base string, n *memNode) {
	if n == nil {
		delete(dir.children, base)
	} else {
		dir.children[base] = n
	}
	if dir == m.root {
		if n == nil {
			delete(dir.durableChildren, base)
		} else {
			dir.durableChildren[base] = n
		}
	}
}

func pathErr(op, name string, err error) error { return &os.PathError{Op: op, Path: name, Err: err} }

func (m *MemFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	parent, n, base, err := m.lookup(name)
	if err != nil {
		return nil, pathErr("open", name, err)
	}
	if n == nil {
		if flag&os.O_CREATE == 0 {
			return nil, pathErr("open", name, unix.ENOENT)
		}
		n = &memNode{}
		m.setChild(parent, base, n)
	} else {
		if flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0 {
			return nil, pathErr("open", name, unix.EEXIST)
		}
		if n.isDir && flag&(os.O_WRONLY|os.O_RDWR) != 0 {
			return nil, pathErr("open", name, unix.EISDIR)
		}
		if flag&os.O_TRUNC != 0 && !n.isDir {
			n.truncate(0)
		}
	}
	return Sticky(&memFile{fs: m, node: n, name: name, writable: flag&(os.O_WRONLY|os.O_RDWR) != 0}), nil
}

func (m *MemFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	parent, n, base, err := m.lookup(name)
	if err == nil && n == nil {
		err = unix.ENOENT
	}
	if err == nil && parent == nil {
		err = unix.EBUSY
	}
	if err == nil && n.isDir && len(n.children) > 0 {
		err = unix.ENOTEMPTY
	}
	if err != nil {
		return pathErr("remove", name, err)
	}
	m.setChild(parent, base, nil)
	return nil
}

func (m *MemFS) Rename(oldName, newName string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	oldParent, n, oldBase, err := m.lookup(oldName)
	if err == nil && n == nil {
		err = unix.ENOENT
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: oldName, New: newName, Err: err}
	}
	newParent, existing, newBase, err := m.lookup(newName)
	if err == nil && (newParent == nil || oldParent == nil) {
		err = unix.EBUSY
	}
	if err == nil && existing != nil && existing.isDir && (!n.isDir || len(existing.children) > 0) {
		err = unix.EISDIR
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: oldName, New: newName, Err: err}
	}
	m.setChild(oldParent, oldBase, nil)
	m.setChild(newParent, newBase, n)
	return nil
}

func (m *MemFS) ReadDir(dir string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, n, _, err := m.lookup(dir)
	if err == nil && n == nil {
		err = unix.ENOENT
	}
	if err == nil && !n.isDir {
		err = unix.ENOTDIR
	}
	if err != nil {
		return nil, pathErr("readdir", dir, err)
	}
	names := make([]string, 0, len(n.children))
	for name := range n.children {
		names = append(names, name)
	}
	sort.Strings(names)
	return names, nil
}

func (m *MemFS) MkdirAll(dir string, perm os.FileMode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.root
	for _, p := range splitPath(dir) {
		next, ok := cur.children[p]
		if !ok {
			next = newDirNode()
			m.setChild(cur, p, next)
		} else if !next.isDir {
			return pathErr("mkdir", dir, unix.ENOTDIR)
		}
		cur = next
	}
	return nil
}

func (m *MemFS) RemoveAll(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	parent, n, base, err := m.lookup(dir)
	if err != nil || n == nil {
		return nil
	}
	if parent == nil {
		return pathErr("removeall", dir, unix.EBUSY)
	}
	m.setChild(parent, base, nil)
	return nil
}

func (m *MemFS) SyncDir(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, n, _, err := m.lookup(dir)
	if err == nil && n == nil {
		err = unix.ENOENT
	}
	if err == nil && !n.isDir {
		err = unix.ENOTDIR
	}
	if err != nil {
		return pathErr("fsync", dir, err)
	}
	n.syncDir()
	return nil
}

func (n *memNode) syncDir() {
	clear(n.durableChildren)
	for k, v := range n.children {
		n.durableChildren[k] = v
	}
}

func (m *MemFS) Stat(name string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, n, _, err := m.lookup(name)
	if err == nil && n == nil {
		err = unix.ENOENT
	}
	if err != nil {
		return 0, pathErr("stat", name, err)
	}
	return int64(len(n.data)), nil
}

// Crash returns the file system as found after a power loss now: only
// datasynced bytes, reachable through SyncDir'ed directory entries. The
// receiver is unchanged and its open files keep working.
func (m *MemFS) Crash() *MemFS { return m.crash(nil) }

// CrashTorn is Crash where each file whose unsynced changes only appended
// to it also keeps a random prefix of those appended bytes (a torn write).
// The same seed tears the same way.
func (m *MemFS) CrashTorn(seed int64) *MemFS { return m.crash(rand.New(rand.NewSource(seed))) }

func (m *MemFS) crash(rng *rand.Rand) *MemFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	return &MemFS{root: copyDurable(m.root, rng)}
}

func copyDurable(dir *memNode, rng *rand.Rand) *memNode {
	out := newDirNode()
	names := make([]string, 0, len(dir.durableChildren))
	for name := range dir.durableChildren {
		names = append(names, name)
	}
	sort.Strings(names) // deterministic use of rng
	for _, name := range names {
		child := dir.durableChildren[name]
		var c *memNode
		if child.isDir {
			c = copyDurable(child, rng)
		} else {
			content := append([]byte(nil), child.durable...)
			extra := int64(len(child.data)) - int64(len(child.durable))
			if rng != nil && extra > 0 && child.dirtyFrom >= int64(len(child.durable)) {
				keep := rng.Int63n(extra + 1)
				content = append(content, child.data[len(child.durable):int64(len(child.durable))+keep]...)
			}
			c = &memNode{data: content, durable: append([]byte(nil), content...), dirtyFrom: int64(len(content))}
		}
		out.children[name] = c
		out.durableChildren[name] = c
	}
	return out
}

func (n *memNode) truncate(size int64) {
	if size < n.dirtyFrom {
		n.dirtyFrom = size
	}
	if size <= int64(len(n.data)) {
		n.data = n.data[:size]
		return
	}
	n.data = append(n.data, make([]byte, size-int64(len(n.data)))...)
}

type memFile struct {
	fs       *MemFS
	node     *memNode
	name     string
	writable bool
	closed   bool
}

// ReadAtNoWait never blocks: memory is all there is.
func (f *memFile) ReadAtNoWait(p []byte, off int64) (int, error) { return f.ReadAt(p, off) }

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return 0, ErrClosed
	}
	if f.node.isDir {
		return 0, pathErr("read", f.name, unix.EISDIR)
	}
	if off < 0 {
		return 0, pathErr("read", f.name, unix.EINVAL)
	}
	if off >= int64(len(f.node.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.node.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return 0, ErrClosed
	}
	if !f.writable || f.node.isDir {
		return 0, pathErr("write", f.name, unix.EBADF)
	}
	if off < 0 {
		return 0, pathErr("write", f.name, unix.EINVAL)
	}
	n := f.node
	end := off + int64(len(p))
	if end > int64(len(n.data)) {
		if end <= int64(cap(n.data)) {
			n.data = n.data[:end]
		} else {
			grown := make([]byte, end, max(end, 2*int64(cap(n.data))))
			copy(grown, n.data)
			n.data = grown
		}
	}
	copy(n.data[off:], p)
	if off < n.dirtyFrom {
		n.dirtyFrom = off
	}
	return len(p), nil
}

func (f *memFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return ErrClosed
	}
	if !f.writable || f.node.isDir || size < 0 {
		return pathErr("truncate", f.name, unix.EINVAL)
	}
	f.node.truncate(size)
	return nil
}

func (f *memFile) Allocate(off, length int64) error { return nil }

func (f *memFile) Datasync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return ErrClosed
	}
	n := f.node
	if n.isDir {
		n.syncDir()
		return nil
	}
	if n.dirtyFrom >= int64(len(n.durable)) && len(n.data) >= len(n.durable) {
		n.durable = append(n.durable, n.data[len(n.durable):]...)
	} else {
		n.durable = append(n.durable[:0:0], n.data...)
	}
	n.dirtyFrom = int64(len(n.durable))
	return nil
}

func (f *memFile) Size() (int64, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return 0, ErrClosed
	}
	return int64(len(f.node.data)), nil
}

func (f *memFile) Fd() int      { return -1 }
func (f *memFile) Name() string { return f.name }

func (f *memFile) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return ErrClosed
	}
	f.closed = true
	return nil
}
