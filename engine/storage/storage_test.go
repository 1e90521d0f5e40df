package storage

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// implementations returns every FS with a fresh root directory to use.
func implementations(t *testing.T) []struct {
	name string
	fs   FS
	root string
} {
	return []struct {
		name string
		fs   FS
		root string
	}{
		{"os", OS(), t.TempDir()},
		{"mem", NewMem(), "data"},
		{"faulty-mem", NewFaulty(NewMem()), "data"},
		{"faulty-os", NewFaulty(OS()), t.TempDir()},
	}
}

func forEachFS(t *testing.T, body func(t *testing.T, fs FS, root string)) {
	for _, impl := range implementations(t) {
		t.Run(impl.name, func(t *testing.T) {
			if err := impl.fs.MkdirAll(impl.root, 0o755); err != nil {
				t.Fatal(err)
			}
			body(t, impl.fs, impl.root)
		})
	}
}

func TestFileBasics(t *testing.T) {
	forEachFS(t, func(t *testing.T, fs FS, root string) {
		name := filepath.Join(root, "a.log")
		f, err := fs.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte("hello world"), 0); err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte("WORLD"), 6); err != nil {
			t.Fatal(err)
		}
		if err := f.Allocate(0, 1<<20); err != nil {
			t.Fatal(err)
		}
		if err := f.Datasync(); err != nil {
			t.Fatal(err)
		}
		if size, err := f.Size(); err != nil || size != 11 {
			t.Fatalf("size %d %v, want 11 (Allocate keeps the size)", size, err)
		}
		buf := make([]byte, 11)
		if n, err := f.ReadAt(buf, 0); err != nil || n != 11 || string(buf) != "hello WORLD" {
			t.Fatalf("read %q %d %v", buf, n, err)
		}
		if n, err := f.ReadAt(buf, 5); err != io.EOF || n != 6 {
			t.Fatalf("short read at end: %d %v, want 6 EOF", n, err)
		}
		if err := f.Truncate(5); err != nil {
			t.Fatal(err)
		}
		if size, _ := fs.Stat(name); size != 5 {
			t.Fatalf("stat size %d after truncate", size)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}

		if _, err := fs.OpenFile(filepath.Join(root, "missing"), os.O_RDONLY, 0); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("open missing: %v", err)
		}
		if err := fs.Rename(name, filepath.Join(root, "b.log")); err != nil {
			t.Fatal(err)
		}
		if err := fs.MkdirAll(filepath.Join(root, "sub", "dir"), 0o755); err != nil {
			t.Fatal(err)
		}
		names, err := fs.ReadDir(root)
		if err != nil || len(names) != 2 || names[0] != "b.log" || names[1] != "sub" {
			t.Fatalf("readdir %v %v", names, err)
		}
		if err := fs.SyncDir(root); err != nil {
			t.Fatal(err)
		}
		d, err := fs.OpenFile(root, os.O_RDONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Datasync(); err != nil {
			t.Fatalf("datasync of a directory: %v", err)
		}
		d.Close()
		if err := fs.Remove(filepath.Join(root, "b.log")); err != nil {
			t.Fatal(err)
		}
		if err := fs.RemoveAll(filepath.Join(root, "sub")); err != nil {
			t.Fatal(err)
		}
		if names, _ := fs.ReadDir(root); len(names) != 0 {
			t.Fatalf("left %v", names)
		}
	})
}

// An open file stays readable after its name is removed: pinned fetch
// readers depend on it.
func TestReadAfterRemove(t *testing.T) {
	forEachFS(t, func(t *testing.T, fs FS, root string) {
		name := filepath.Join(root, "x")
		f, err := fs.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		f.WriteAt([]byte("still here"), 0)
		if err := fs.RemoveAll(root); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 10)
		if _, err := f.ReadAt(buf, 0); err != nil || string(buf) != "still here" {
			t.Fatalf("%q %v", buf, err)
		}
	})
}

func TestStickyErrors(t *testing.T) {
	for _, op := range []Op{OpWrite, OpDatasync, OpTruncate} {
		forEachFS(t, func(t *testing.T, inner FS, root string) {
			fs := NewFaulty(inner, Rule{Ops: op, Pattern: "*.log", After: 1, Times: 1})
			f, err := fs.OpenFile(filepath.Join(root, "s.log"), os.O_CREATE|os.O_RDWR, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			do := func() error {
				switch op {
				case OpWrite:
					_, err := f.WriteAt([]byte("abc"), 0)
					return err
				case OpDatasync:
					return f.Datasync()
				default:
					return f.Truncate(0)
				}
			}
			if err := do(); err != nil {
				t.Fatalf("first op: %v", err)
			}
			first := do()
			if !errors.Is(first, unix.EIO) {
				t.Fatalf("want EIO, got %v", first)
			}
			// The rule fired once only; the file must keep failing anyway.
			if _, err := f.WriteAt([]byte("x"), 0); err != first {
				t.Fatalf("write after failure: %v, want the sticky %v", err, first)
			}
			if err := f.Datasync(); err != first {
				t.Fatalf("datasync after failure: %v", err)
			}
			if StickyError(f) != first {
				t.Fatalf("StickyError = %v", StickyError(f))
			}
			buf := make([]byte, 1)
			if _, err := f.ReadAt(buf, 0); err != nil && err != io.EOF {
				t.Fatalf("reads stay allowed: %v", err)
			}
		})
	}
}

// A full disk is not a failed disk: ENOSPC is returned, not latched, and
// the file takes writes again; a datasync's ENOSPC is latched like EIO.
func TestNoSpaceIsNotSticky(t *testing.T) {
	forEachFS(t, func(t *testing.T, inner FS, root string) {
		fs := NewFaulty(inner, Rule{Ops: OpWrite, Times: 1, Err: unix.ENOSPC, Short: true})
		f, err := fs.OpenFile(filepath.Join(root, "s.log"), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(make([]byte, 100), 0); !IsNoSpace(err) {
			t.Fatalf("write on a full disk: %v, want ENOSPC", err)
		}
		if err := f.Truncate(0); err != nil {
			t.Fatalf("cutting the part written: %v", err)
		}
		if n, err := f.WriteAt([]byte("abc"), 0); n != 3 || err != nil {
			t.Fatalf("write once space returned: %d %v", n, err)
		}
		if StickyError(f) != nil {
			t.Fatalf("ENOSPC was latched: %v", StickyError(f))
		}
		fs.AddRule(Rule{Ops: OpDatasync, Times: 1, Err: unix.ENOSPC})
		first := f.Datasync()
		if !IsNoSpace(first) || f.Datasync() != first {
			t.Fatalf("a datasync's ENOSPC must be latched: %v", first)
		}
	})
}

func TestFaultyShortWriteAndPattern(t *testing.T) {
	forEachFS(t, func(t *testing.T, inner FS, root string) {
		fs := NewFaulty(inner, ENOSPC("*.index", 0))
		g, _ := fs.OpenFile(filepath.Join(root, "0.log"), os.O_CREATE|os.O_RDWR, 0o644)
		defer g.Close()
		if _, err := g.WriteAt(make([]byte, 100), 0); err != nil {
			t.Fatalf("non-matching file: %v", err)
		}
		f, _ := fs.OpenFile(filepath.Join(root, "0.index"), os.O_CREATE|os.O_RDWR, 0o644)
		defer f.Close()
		n, err := f.WriteAt(make([]byte, 100), 0)
		if n != 50 || !errors.Is(err, unix.ENOSPC) {
			t.Fatalf("short write: %d %v", n, err)
		}
		if size, _ := f.Size(); size != 50 {
			t.Fatalf("half written: size %d", size)
		}
		if fs.Count(OpWrite) != 2 {
			t.Fatalf("count %d", fs.Count(OpWrite))
		}
	})
}

func TestMemCrash(t *testing.T) {
	m := NewMem()
	m.MkdirAll("d", 0o755)
	f, _ := m.OpenFile("d/synced", os.O_CREATE|os.O_RDWR, 0o644)
	f.WriteAt([]byte("durable"), 0)
	f.Datasync()
	f.WriteAt([]byte("-volatile"), 7)
	g, _ := m.OpenFile("d/unsynced-entry", os.O_CREATE|os.O_RDWR, 0o644)
	m.SyncDir("d")
	h, _ := m.OpenFile("d/after-syncdir", os.O_CREATE|os.O_RDWR, 0o644)
	h.WriteAt([]byte("x"), 0)
	h.Datasync() // data synced but its directory entry is not
	g.WriteAt([]byte("lost"), 0)

	c := m.Crash()
	names, _ := c.ReadDir("d")
	if len(names) != 2 || names[0] != "synced" || names[1] != "unsynced-entry" {
		t.Fatalf("entries after crash %v", names)
	}
	read := func(fs *MemFS, name string) string {
		size, err := fs.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		f, _ := fs.OpenFile(name, os.O_RDONLY, 0)
		defer f.Close()
		buf := make([]byte, size)
		f.ReadAt(buf, 0)
		return string(buf)
	}
	if got := read(c, "d/synced"); got != "durable" {
		t.Fatalf("synced file %q", got)
	}
	if got := read(c, "d/unsynced-entry"); got != "" {
		t.Fatalf("unsynced data %q", got)
	}
	// The original keeps working.
	if got := read(m, "d/synced"); got != "durable-volatile" {
		t.Fatalf("original %q", got)
	}

	// Removal and rename need SyncDir too.
	m.Remove("d/synced")
	m.Rename("d/unsynced-entry", "d/renamed")
	if names, _ := m.Crash().ReadDir("d"); len(names) != 2 || names[0] != "synced" {
		t.Fatalf("unsynced remove/rename survived: %v", names)
	}
	m.SyncDir("d")
	if names, _ := m.Crash().ReadDir("d"); len(names) != 2 || names[0] != "after-syncdir" || names[1] != "renamed" {
		t.Fatalf("synced remove/rename: %v", names)
	}

	// Torn: a prefix of the unsynced append survives; deterministic by seed.
	seen := map[string]bool{}
	for seed := int64(0); seed < 20; seed++ {
		a := read(m.CrashTorn(seed), "d/after-syncdir")
		b := read(m.CrashTorn(seed), "d/after-syncdir")
		if a != b {
			t.Fatalf("seed %d not deterministic", seed)
		}
	}
	k, _ := m.OpenFile("d/after-syncdir", os.O_RDWR, 0)
	k.WriteAt([]byte("0123456789"), 1)
	for seed := int64(0); seed < 50; seed++ {
		got := read(m.CrashTorn(seed), "d/after-syncdir")
		if !bytes.HasPrefix([]byte("x0123456789"), []byte(got)) || len(got) < 1 {
			t.Fatalf("seed %d: torn content %q is not a prefix", seed, got)
		}
		seen[got] = true
	}
	if len(seen) < 3 {
		t.Fatalf("tearing does not vary: %v", seen)
	}
}
