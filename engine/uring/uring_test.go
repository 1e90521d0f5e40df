//go:build linux

package uring

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// newTestRing locks the test goroutine's thread (never unlocked: the
// thread is discarded when the test goroutine exits) and sets up a ring.
func newTestRing(t testing.TB, p Params) *Ring {
	t.Helper()
	if err := Available(); err != nil {
		t.Skip(err)
	}
	runtime.LockOSThread()
	r, err := New(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	})
	return r
}

func newTestSlab(t testing.TB, bufSize, count int) *Slab {
	t.Helper()
	s, err := NewSlab(bufSize, count)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// waitFor submits and reaps until n CQEs have arrived, failing on error or
// after a generous deadline (not a sleep: it returns as soon as they come).
func waitFor(t testing.TB, r *Ring, n int) []CQE {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var got []CQE
	for len(got) < n {
		if time.Now().After(deadline) {
			t.Fatalf("got %d of %d completions: %+v", len(got), n, got)
		}
		if _, err := r.WaitTimeout(time.Second); err != nil {
			t.Fatal(err)
		}
		got = r.Reap(got)
	}
	if len(got) != n {
		t.Fatalf("got %d completions, want %d: %+v", len(got), n, got)
	}
	return got
}

func byUserData(cqes []CQE) map[uint64]CQE {
	m := make(map[uint64]CQE, len(cqes))
	for _, c := range cqes {
		m[c.UserData] = c
	}
	return m
}

func TestAvailable(t *testing.T) {
	if err := Available(); err != nil {
		t.Skipf("io_uring not available here: %v", err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r, err := New(Params{Entries: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	info := r.Info()
	t.Logf("%s", info)
	if info.SQEntries != 8 || info.CQEntries != 16 {
		t.Errorf("sizes %d/%d, want 8/16", info.SQEntries, info.CQEntries)
	}
	if !info.DeferTaskrun() {
		t.Logf("kernel refused DEFER_TASKRUN: %v", info.Refused)
	}
}

func TestNewRejectsBadParams(t *testing.T) {
	for _, p := range []Params{{Entries: 0}, {Entries: 1 << 16}, {Entries: 8, CQEntries: 4}} {
		if r, err := New(p); err == nil {
			r.Close()
			t.Errorf("New(%+v) succeeded", p)
		}
	}
}

func TestPrepZeroesRecycledSQE(t *testing.T) {
	r := newTestRing(t, Params{Entries: 1})
	// Dirty the only SQE slot as a previous operation would have.
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&r.sqes[0])), unsafe.Sizeof(sqe{}))
	for i := range raw {
		raw[i] = 0xff
	}
	if !r.PrepFsync(3, false, 42) {
		t.Fatal("SQ full")
	}
	want := sqe{opcode: opFsync, fd: 3, userData: 42}
	if r.sqes[0] != want {
		t.Fatalf("sqe %+v, want %+v", r.sqes[0], want)
	}
}

func TestNopAndSQFull(t *testing.T) {
	r := newTestRing(t, Params{Entries: 8})
	for round := range 3 {
		n := 0
		for r.PrepNop(uint64(round*100 + n)) {
			n++
		}
		if n != 8 || r.SQSpace() != 0 {
			t.Fatalf("round %d: prepared %d, space %d; want 8, 0", round, n, r.SQSpace())
		}
		if r.PrepFsync(0, false, 1) || r.PrepNop(1) {
			t.Fatal("Prep succeeded on a full SQ")
		}
		submitted, err := r.Submit()
		if err != nil || submitted != 8 {
			t.Fatalf("Submit = %d, %v", submitted, err)
		}
		got := waitFor(t, r, 8)
		for i, c := range got {
			if c.Res != 0 || c.UserData != uint64(round*100+i) {
				t.Fatalf("cqe %d: %+v", i, c)
			}
		}
	}
	if s, c := r.Stats(); s != 24 || c != 24 {
		t.Errorf("Stats = %d, %d; want 24, 24", s, c)
	}
}

func TestLinkLastPanicsWithoutSQE(t *testing.T) {
	r := newTestRing(t, Params{Entries: 1})
	r.PrepNop(1)
	r.PrepNop(2) // fails: SQ full
	defer func() {
		if recover() == nil {
			t.Fatal("LinkLast after a failed Prep did not panic")
		}
	}()
	r.LinkLast()
}

func TestPrepRefusesGoMemory(t *testing.T) {
	r := newTestRing(t, Params{Entries: 4})
	heap := make([]byte, 4096)
	defer func() {
		if recover() == nil {
			t.Fatal("PrepRead into Go heap memory did not panic")
		}
	}()
	r.PrepRead(0, heap, 0, 1)
}

func TestFsync(t *testing.T) {
	r := newTestRing(t, Params{Entries: 4})
	f, err := os.CreateTemp("", "uring-fsync-*")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.WriteString("durable"); err != nil {
		t.Fatal(err)
	}
	r.PrepFsync(int32(f.Fd()), false, 1)
	r.PrepFsync(int32(f.Fd()), true, 2)
	r.PrepFsync(999_999, true, 3) // not an open descriptor
	got := byUserData(waitFor(t, r, 3))
	if got[1].Res != 0 || got[2].Res != 0 {
		t.Errorf("fsync results %d, %d; want 0, 0", got[1].Res, got[2].Res)
	}
	if got[3].Res != -int32(unix.EBADF) {
		t.Errorf("fsync of a bad fd: Res %d, want -EBADF (%d)", got[3].Res, -int32(unix.EBADF))
	}
}

// TestFixedRoundTrip writes with WRITE_FIXED linked to a datasync, reads
// back with READ_FIXED, through a plain fd and through a registered slot.
func TestFixedRoundTrip(t *testing.T) {
	for _, mode := range []string{"plain-fd", "fixed-file"} {
		t.Run(mode, func(t *testing.T) {
			r := newTestRing(t, Params{Entries: 8})
			slab := newTestSlab(t, 8192, 4)
			if err := r.RegisterBuffers(slab); err != nil {
				t.Fatal(err)
			}
			f, err := os.CreateTemp("", "uring-fixed-*")
			if err != nil {
				t.Fatal(err)
			}
			defer os.Remove(f.Name())
			defer f.Close()
			fd := int32(f.Fd())
			if mode == "fixed-file" {
				if err := r.RegisterFiles([]int32{-1, -1, -1, -1}); err != nil { // sparse
					t.Fatal(err)
				}
				if err := r.UpdateFile(2, fd); err != nil {
					t.Fatal(err)
				}
				fd = 2
			}
			fixed := func() {
				if mode == "fixed-file" {
					r.FixedFileLast()
				}
			}
			out := slab.Buf(1)[:6000]
			for i := range out {
				out[i] = byte(i * 7)
			}
			if r.SQSpace() < 2 {
				t.Fatal("no room for a linked pair")
			}
			r.PrepWriteFixed(fd, out, 1, 4096, 10)
			fixed()
			r.LinkLast()
			r.PrepFsync(fd, true, 11)
			fixed()
			got := byUserData(waitFor(t, r, 2))
			if got[10].Res != 6000 || got[11].Res != 0 {
				t.Fatalf("write %d, fsync %d; want 6000, 0", got[10].Res, got[11].Res)
			}

			in := slab.Buf(3)[:6000]
			r.PrepReadFixed(fd, in, 3, 4096, 20)
			fixed()
			got = byUserData(waitFor(t, r, 1))
			if got[20].Res != 6000 || !bytes.Equal(in, out) {
				t.Fatalf("read %d bytes, equal %v", got[20].Res, bytes.Equal(in, out))
			}
			onDisk := make([]byte, 6000)
			if _, err := f.ReadAt(onDisk, 4096); err != nil || !bytes.Equal(onDisk, out) {
				t.Fatalf("file content differs (%v)", err)
			}
			if mode == "fixed-file" {
				if err := r.UpdateFile(2, -1); err != nil {
					t.Fatal(err)
				}
				r.PrepFsync(2, true, 30)
				r.FixedFileLast()
				if got := waitFor(t, r, 1); got[0].Res != -int32(unix.EBADF) {
					t.Fatalf("fsync of an emptied slot: %d, want -EBADF", got[0].Res)
				}
			}
		})
	}
}

// openDirectTemp creates a temporary file opened with O_DIRECT, removed
// and closed when the test ends; it skips where the file system refuses
// O_DIRECT.
func openDirectTemp(t *testing.T, prefix string) (int, string) {
	t.Helper()
	path := filepath.Join(os.TempDir(), prefix+time.Now().Format("150405.000000000"))
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_DIRECT|unix.O_CLOEXEC, 0o600)
	if errors.Is(err, unix.EINVAL) {
		t.Skipf("%s does not support O_DIRECT: %v", os.TempDir(), err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.Close(fd)
		os.Remove(path)
	})
	return fd, path
}

// TestDirectWrite writes 4 KiB-aligned registered buffers to an O_DIRECT
// file and reads them back.
func TestDirectWrite(t *testing.T) {
	r := newTestRing(t, Params{Entries: 8})
	slab := newTestSlab(t, 64<<10, 2)
	if err := r.RegisterBuffers(slab); err != nil {
		t.Fatal(err)
	}
	fd, _ := openDirectTemp(t, "uring-direct-")
	out := slab.Buf(0)
	for i := range out {
		out[i] = byte(i>>12) ^ byte(i)
	}
	const writes = 4
	for i := range writes { // 4 writes of 16 KiB in flight at once
		r.PrepWriteFixed(int32(fd), out[i*16<<10:(i+1)*16<<10], 0, uint64(i*16<<10), uint64(i))
	}
	for _, c := range waitFor(t, r, writes) {
		if c.Res == -int32(unix.EINVAL) {
			t.Skipf("O_DIRECT write refused (EINVAL)")
		}
		if c.Res != 16<<10 {
			t.Fatalf("direct write %d: Res %d", c.UserData, c.Res)
		}
	}
	in := slab.Buf(1)
	r.PrepReadFixed(int32(fd), in, 1, 0, 9)
	if got := waitFor(t, r, 1); got[0].Res != 64<<10 || !bytes.Equal(in, out) {
		t.Fatalf("direct read %d bytes, equal %v", got[0].Res, bytes.Equal(in, out))
	}
}

// TestWritevFixed writes three pieces of a registered buffer, not in
// memory order, as one O_DIRECT RWF_DSYNC write: one completion for all
// their bytes, and the file holds them in iovec order.
func TestWritevFixed(t *testing.T) {
	r := newTestRing(t, Params{Entries: 8})
	if !r.WritevFixed() {
		t.Skip("this kernel has no IORING_OP_WRITEV_FIXED (Linux 6.15+); the shard falls back to one WRITE_FIXED per piece")
	}
	slab := newTestSlab(t, 64<<10, 1)
	other := newTestSlab(t, 4096, 1)
	if err := r.RegisterBuffers(slab); err != nil {
		t.Fatal(err)
	}
	fd, path := openDirectTemp(t, "uring-writev-")
	mem := slab.Buf(0)
	for i := range mem {
		mem[i] = byte(i>>12) ^ byte(i)
	}
	pieces := [][]byte{mem[32<<10 : 48<<10], mem[0:4096], mem[60<<10 : 64<<10]}
	iovs := IovecsIn(other.Buf(0))[:len(pieces)]
	var want []byte
	for i, p := range pieces {
		iovs[i].Base = &p[0]
		iovs[i].SetLen(len(p))
		want = append(want, p...)
	}
	if !r.PrepWritevFixed(int32(fd), iovs, 0, 8192, 5) {
		t.Fatal("SQ full")
	}
	r.DsyncLast()
	got := waitFor(t, r, 1)
	if got[0].Res == -int32(unix.EINVAL) {
		t.Skipf("O_DIRECT write refused (EINVAL)")
	}
	if got[0].Res != int32(len(want)) {
		t.Fatalf("writev: Res %d, want %d", got[0].Res, len(want))
	}
	onDisk, err := os.ReadFile(path) // buffered: O_DIRECT would need an aligned buffer
	if err != nil {
		t.Fatal(err)
	}
	onDisk = onDisk[8192:]
	if !bytes.Equal(onDisk, want) {
		t.Fatal("file content differs from the pieces in iovec order")
	}

	// A piece outside the registered buffer, or an iovec array in Go
	// memory, is refused before it reaches the kernel.
	mustPanic := func(what string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s: no panic", what)
			}
		}()
		f()
	}
	iovs[0].Base = &other.Buf(0)[len(other.Buf(0))-8]
	iovs[0].SetLen(8)
	mustPanic("piece outside the buffer", func() { r.PrepWritevFixed(int32(fd), iovs, 0, 0, 6) })
	goIovs := make([]unix.Iovec, 1)
	goIovs[0].Base = &mem[0]
	goIovs[0].SetLen(4096)
	mustPanic("Go memory iovecs", func() { r.PrepWritevFixed(int32(fd), goIovs, 0, 0, 7) })
}

// TestCQOverflow completes far more operations than the CQ holds without
// reaping; nothing may be lost.
func TestCQOverflow(t *testing.T) {
	r := newTestRing(t, Params{Entries: 4, CQEntries: 8})
	const total = 64
	busy := 0
	next := uint64(0)
	for next < total {
		for next < total && r.PrepNop(next) {
			next++
		}
		if _, err := r.Submit(); errors.Is(err, ErrBusy) {
			busy++
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if busy == 0 && atomic.LoadUint32(r.sqFlags)&sqCQOverflow == 0 {
		t.Fatalf("%d NOPs on an 8-entry CQ neither overflowed nor got EBUSY", next)
	}
	var got []CQE
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < int(next) || next < total {
		if time.Now().After(deadline) {
			t.Fatalf("reaped %d of %d", len(got), next)
		}
		for next < total && r.PrepNop(next) {
			next++
		}
		if _, err := r.Submit(); err != nil && !errors.Is(err, ErrBusy) {
			t.Fatal(err)
		}
		got = r.Reap(got)
	}
	seen := make(map[uint64]bool)
	for _, c := range got {
		if seen[c.UserData] || c.Res != 0 {
			t.Fatalf("duplicate or failed %+v", c)
		}
		seen[c.UserData] = true
	}
	if len(seen) != total || r.Dropped() != 0 {
		t.Fatalf("saw %d of %d, dropped %d", len(seen), total, r.Dropped())
	}
	t.Logf("EBUSY/EAGAIN answers: %d", busy)
}

// TestWrongThread checks that SINGLE_ISSUER is in force: another thread
// may not submit.
func TestWrongThread(t *testing.T) {
	r := newTestRing(t, Params{Entries: 4})
	if r.Info().SetupFlags&setupSingleIssuer == 0 {
		t.Skip("kernel refused SINGLE_ISSUER")
	}
	r.PrepNop(1)
	errc := make(chan error)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		_, err := r.Submit()
		errc <- err
	}()
	if err := <-errc; !errors.Is(err, ErrWrongThread) {
		t.Fatalf("Submit from another thread: %v, want ErrWrongThread", err)
	}
	waitFor(t, r, 1) // the owner can still submit it
}

func TestWaitTimeoutExpires(t *testing.T) {
	r := newTestRing(t, Params{Entries: 4})
	start := time.Now()
	if _, err := r.WaitTimeout(20 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 20*time.Millisecond || d > 2*time.Second {
		t.Fatalf("WaitTimeout(20ms) returned after %v", d)
	}
	if got := r.Reap(nil); len(got) != 0 {
		t.Fatalf("completions from nowhere: %+v", got)
	}
}

// TestDoorbell: a goroutine rings while the owner sleeps in the ring; the
// owner wakes with the eventfd read completion. 1,000 times.
func TestDoorbell(t *testing.T) {
	r := newTestRing(t, Params{Entries: 8})
	slab := newTestSlab(t, 4096, 1)
	db, err := NewDoorbell()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const doorbellTag = 0xd00b
	counter := slab.Buf(0)[:8]

	ring := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range ring {
			db.Ring()
		}
	}()
	defer func() { close(ring); <-done }()

	cqes := make([]CQE, 0, 16)
	for i := range 1000 {
		if !r.PrepRead(db.Fd(), counter, 0, doorbellTag) {
			t.Fatal("SQ full")
		}
		if _, err := r.Submit(); err != nil {
			t.Fatal(err)
		}
		ring <- struct{}{}
		deadline := time.Now().Add(10 * time.Second)
		cqes = cqes[:0]
		for len(cqes) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("iteration %d: no doorbell completion", i)
			}
			// The shard sleeps either way: without or with a timer.
			var err error
			if i%2 == 0 {
				_, err = r.SubmitAndWait(1)
			} else {
				_, err = r.WaitTimeout(5 * time.Second)
			}
			if err != nil {
				t.Fatal(err)
			}
			cqes = r.Reap(cqes)
		}
		c := cqes[0]
		if len(cqes) != 1 || c.UserData != doorbellTag || c.Res != 8 || binary.NativeEndian.Uint64(counter) != 1 {
			t.Fatalf("iteration %d: %+v, counter %d", i, cqes, binary.NativeEndian.Uint64(counter))
		}
	}
}

// TestStressGCAndSignals runs 50,000 NOP/fsync round trips while another
// goroutine allocates, forces GC and signals the owner thread, so that
// io_uring_enter is interrupted; no completion may be lost and EINTR must
// never surface.
func TestStressGCAndSignals(t *testing.T) {
	rounds := 50_000
	if testing.Short() {
		rounds = 5_000
	}
	r := newTestRing(t, Params{Entries: 32})
	f, err := os.CreateTemp("", "uring-stress-*")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	fd := int32(f.Fd())

	tid := unix.Gettid()
	pid := unix.Getpid()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var garbage atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		var keep [][]byte
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			keep = append(keep, make([]byte, 64<<10))
			if len(keep) > 64 {
				keep = keep[:0]
			}
			garbage.Add(64 << 10)
			if i%64 == 0 {
				runtime.GC()
			}
			if i%8 == 0 {
				// SIGURG is Go's preemption signal; the runtime ignores a
				// stray one, the kernel interrupts the owner's wait.
				unix.Tgkill(pid, tid, unix.SIGURG)
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	cqes := make([]CQE, 0, 64)
	completed := 0
	for i := range rounds {
		want := uint64(i)
		ok := false
		if i%4 == 0 {
			ok = r.PrepFsync(fd, true, want)
		} else {
			ok = r.PrepNop(want)
		}
		if !ok {
			t.Fatal("SQ full")
		}
		deadline := time.Now().Add(10 * time.Second)
		cqes = cqes[:0]
		for len(cqes) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: completion lost", i)
			}
			if _, err := r.SubmitAndWait(1); err != nil {
				t.Fatalf("round %d: %v", i, err)
			}
			cqes = r.Reap(cqes)
		}
		if len(cqes) != 1 || cqes[0].UserData != want || cqes[0].Res != 0 {
			t.Fatalf("round %d: %+v", i, cqes)
		}
		completed++
	}
	s, c := r.Stats()
	t.Logf("%d round trips, stats %d/%d, EINTR retried %d, %d MiB allocated alongside", completed, s, c, r.interrupted, garbage.Load()>>20)
	if s != uint64(rounds) || c != uint64(rounds) {
		t.Fatalf("stats %d/%d, want %d", s, c, rounds)
	}
}

func TestSlabLayout(t *testing.T) {
	s := newTestSlab(t, 5000, 3) // stride rounds up to 8192
	for i := range s.Len() {
		b := s.Buf(i)
		if p := uintptr(unsafe.Pointer(&b[0])); p%4096 != 0 || len(b) != 5000 || cap(b) != 5000 {
			t.Fatalf("buf %d at %#x len %d cap %d", i, p, len(b), cap(b))
		}
		if !inSlab(uintptr(unsafe.Pointer(&b[0])), uintptr(len(b))) {
			t.Fatalf("buf %d not recognised as slab memory", i)
		}
	}
	if _, err := NewSlab(0, 1); err == nil {
		t.Error("NewSlab(0, 1) succeeded")
	}
}

// TestZeroAllocs: the hot path — prepare, submit, wait, reap, ring a
// doorbell — allocates nothing.
func TestZeroAllocs(t *testing.T) {
	r := newTestRing(t, Params{Entries: 8})
	db, err := NewDoorbell()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cqes := make([]CQE, 0, 16)
	allocs := testing.AllocsPerRun(1000, func() {
		r.PrepNop(1)
		if _, err := r.SubmitAndWait(1); err != nil {
			t.Fatal(err)
		}
		cqes = r.Reap(cqes[:0])
		db.Ring()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per round trip", allocs)
	}
}

// TestReapRunsDeferredCompletions: the shard's spin loop calls Submit and
// Reap without ever waiting; with DEFER_TASKRUN a file operation's
// completion is task work that only io_uring_enter(GETEVENTS) posts, so
// Reap must notice the kernel's TASKRUN flag and do that.
func TestReapRunsDeferredCompletions(t *testing.T) {
	r := newTestRing(t, Params{Entries: 4})
	f, err := os.CreateTemp("", "uring-spin-*")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	f.WriteString("x")
	for i := range 100 {
		r.PrepFsync(int32(f.Fd()), true, uint64(i))
		if _, err := r.Submit(); err != nil {
			t.Fatal(err)
		}
		var got []CQE
		deadline := time.Now().Add(10 * time.Second)
		for len(got) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("fsync %d never reaped by a spinning Reap", i)
			}
			got = r.Reap(got)
		}
		if got[0].UserData != uint64(i) || got[0].Res != 0 {
			t.Fatalf("%+v", got)
		}
	}
}

// TestSetupFallback: a flag set the kernel refuses with EINVAL is recorded
// and the next one is used.
func TestSetupFallback(t *testing.T) {
	saved := setupChoices
	defer func() { setupChoices = saved }()
	setupChoices = append([]uint32{1 << 31}, saved...) // no kernel knows bit 31
	r := newTestRing(t, Params{Entries: 4})
	if len(r.Info().Refused) == 0 {
		t.Fatalf("refusal not recorded: %s", r.Info())
	}
	t.Logf("%s", r.Info())
	r.PrepNop(7)
	if got := waitFor(t, r, 1); got[0].UserData != 7 {
		t.Fatalf("%+v", got)
	}
}
