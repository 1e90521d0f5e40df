package probe

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/sluice-broker/sluice/engine/uring"
	"github.com/sluice-broker/sluice/tuning"
)

// diskDir is a temporary directory on a real disk: the test's temporary
// directory unless that is tmpfs (no block I/O), else one in this package.
func diskDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err == nil && st.Type != unix.TMPFS_MAGIC {
		if disks, err := tuning.DataDisks(dir); err == nil && len(disks) > 0 {
			return dir
		}
	}
	dir, err := os.MkdirTemp(".", "probe-test-")
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(dir)
	t.Cleanup(func() { os.RemoveAll(abs) })
	if disks, err := tuning.DataDisks(abs); err != nil || len(disks) == 0 {
		t.Skipf("no directory on a block device for the test (%v)", err)
	}
	return abs
}

// startOrSkip starts the probes, skipping with the reason where the host
// cannot run them.
func startOrSkip(t *testing.T, cfg Config) *Probes {
	t.Helper()
	p, err := Start(cfg)
	if err != nil {
		if _, ok := err.(*UnavailableError); ok {
			t.Skipf("skipping: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	for _, m := range p.Missing {
		t.Logf("not attached: %s", m)
	}
	return p
}

// poll runs do until check passes or ten seconds have gone.
func poll(t *testing.T, p *Probes, do func(), check func(Snapshot) bool) Snapshot {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		do()
		s, err := p.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if check(s) {
			return s
		}
		if time.Now().After(deadline) {
			var out bytes.Buffer
			WriteSnapshot(&out, s, time.Second)
			t.Fatalf("the probes saw nothing of the I/O in 10 s:\n%s", out.String())
		}
	}
}

func writeAndSync(t *testing.T, path string, size int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(bytes.Repeat([]byte("sluice"), size/6)); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

func blockWrites(s Snapshot) uint64 {
	for _, h := range s.Block {
		if h.Label == "write" {
			return h.Count
		}
	}
	return 0
}

// TestProbesSeeIO loads the probes on this host (root and
// BTF needed), writes and fsyncs a file on the data disk, and checks that
// the block histogram counted writes, that the page-cache probe saw a read
// miss, and that an io_uring fsync was timed.
func TestProbesSeeIO(t *testing.T) {
	dir := diskDir(t)
	p := startOrSkip(t, Config{DataDir: dir, PID: os.Getpid()})
	if len(p.Disks) == 0 {
		t.Fatalf("no disk found under %s", dir)
	}
	t.Logf("attached %v on %v", p.Attached, p.Disks)

	file := filepath.Join(dir, "segment.log")
	s := poll(t, p, func() { writeAndSync(t, file, 1<<20) }, func(s Snapshot) bool { return blockWrites(s) > 0 })
	for _, h := range s.Block {
		if h.Label == "write" && (h.Sum == 0 || sumSlots(h) != h.Count) {
			t.Errorf("write histogram inconsistent: count %d, slots %d, sum %d", h.Count, sumSlots(h), h.Sum)
		}
	}

	if s.HasPageCache {
		// Evict the file's clean pages, then read it: the read must miss.
		s = poll(t, p, func() {
			f, err := os.Open(file)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
			buf := make([]byte, 64<<10)
			for {
				if n, _ := f.Read(buf); n == 0 {
					break
				}
			}
		}, func(s Snapshot) bool { return s.ReadMisses > 0 && s.PagesRead > 0 })
		t.Logf("page cache: %d misses, %d pages for reads, %d otherwise", s.ReadMisses, s.PagesRead, s.PagesOther)
	}

	if s.HasURing && uring.Available() == nil {
		s = poll(t, p, func() { uringFsync(t, file) }, func(s Snapshot) bool {
			for _, h := range s.URing {
				if h.Label == "FSYNC" && h.Count > 0 {
					return true
				}
			}
			return false
		})
	}

	var out bytes.Buffer
	WriteSnapshot(&out, s, time.Second)
	t.Logf("\n%s", out.String())
	if !strings.Contains(out.String(), "write:") {
		t.Errorf("trace output lacks the write histogram:\n%s", out.String())
	}
}

func sumSlots(h Histogram) uint64 {
	var n uint64
	for _, c := range h.Slots {
		n += c
	}
	return n
}

// uringFsync fsyncs file through an io_uring, as a shard's group commit does.
func uringFsync(t *testing.T, file string) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r, err := uring.New(uring.Params{Entries: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !r.PrepFsync(int32(f.Fd()), true, 1) {
		t.Fatal("SQ full")
	}
	if _, err := r.SubmitAndWait(1); err != nil {
		t.Fatal(err)
	}
	r.Reap(nil)
}

// TestCollector registers the probes as a Prometheus collector and checks
// the histograms it exposes after some block I/O.
func TestCollector(t *testing.T) {
	dir := diskDir(t)
	p := startOrSkip(t, Config{DataDir: dir})
	file := filepath.Join(dir, "f")
	poll(t, p, func() { writeAndSync(t, file, 256<<10) }, func(s Snapshot) bool { return blockWrites(s) > 0 })

	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(p); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range families {
		if mf.GetName() != "sluice_ebpf_block_io_latency_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			h := m.GetHistogram()
			if m.GetLabel()[0].GetValue() == "write" && h.GetSampleCount() > 0 {
				found = true
				last := uint64(0)
				for _, b := range h.GetBucket() {
					if b.GetCumulativeCount() < last {
						t.Errorf("buckets not cumulative at le=%g", b.GetUpperBound())
					}
					last = b.GetCumulativeCount()
				}
				if h.GetSampleSum() <= 0 {
					t.Errorf("sum %g", h.GetSampleSum())
				}
			}
		}
	}
	if !found {
		t.Error("no write histogram with samples in the scrape")
	}
	misses := 0
	for _, mf := range families {
		if mf.GetName() == "sluice_ebpf_page_cache_read_misses_total" {
			misses = len(mf.GetMetric())
		}
	}
	if p.pagecache != nil && misses != 1 {
		t.Errorf("page-cache miss counter: %d series, want 1", misses)
	}
}

func TestPromBuckets(t *testing.T) {
	var slots [histSlots]uint64
	slots[3] = 2  // [8, 16) ns: below the first bucket, folded into it
	slots[12] = 5 // [4096, 8192) ns
	b := promBuckets(slots, firstLatencySlot, 1e-9, false)
	if got := b[1024e-9]; got != 2 {
		t.Errorf("first bucket (le 1.024us) = %d, want 2", got)
	}
	if got := b[8192e-9]; got != 7 {
		t.Errorf("le 8.192us = %d, want 7", got)
	}
	pages := promBuckets(slots, 0, 1, true)
	if got := pages[15]; got != 2 {
		t.Errorf("pages le 15 = %d, want 2", got)
	}
}

// TestTraceRunsOrSaysWhatIsMissing runs Trace briefly: it either traces or
// lists what the host lacks, with exit status 0 either way.
func TestTraceRunsOrSaysWhatIsMissing(t *testing.T) {
	var out bytes.Buffer
	code, err := Trace(&out, Config{DataDir: t.TempDir()}, 10*time.Millisecond)
	if err != nil || code != 0 {
		t.Fatalf("trace: code %d, err %v", code, err)
	}
	t.Logf("\n%s", out.String())
	if len(Requirements()) > 0 && !strings.Contains(out.String(), "missing") {
		t.Errorf("missing requirements not printed:\n%s", out.String())
	}
}
