// Package probe attaches sluice's eBPF programs to kernel tracepoints and
// reads what they measured, for perf experiments:
//
//   - block I/O latency, issue to completion, per operation, on the disks
//     that hold the data directory (block:block_rq_issue, block_rq_complete);
//   - io_uring request latency, submission to completion, per opcode
//     (io_uring:io_uring_submit_req, io_uring_complete);
//   - page-cache misses on reads of the data directory's file system
//     (readahead:page_cache_sync_ra and page_cache_async_ra,
//     filemap:mm_filemap_add_to_page_cache and mm_filemap_get_pages).
//
// Only tracepoints are used: on the hosts sluice targets kprobes may be
// compiled out and fentry refused, while tracepoints are a stable interface.
// Field offsets come from the running kernel's BTF (CO-RE), so the checked-in
// objects (bpf/*.c compiled by bpf2go) load on other kernel versions too.
//
// Each BPF program keeps log2 histograms in array maps:
//
//	struct hist { u64 slots[40]; u64 count; u64 sum; }   slot k: [2^k, 2^(k+1))
//
// in nanoseconds for latencies and pages for miss sizes. Probes reads them
// when asked, on the terminal (Trace) or as Prometheus histograms (it is a
// prometheus.Collector).
package probe

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/sluice-broker/sluice/tuning"
)

// Config says what to watch.
type Config struct {
	// DataDir selects the disks (block latency) and the file system (page
	// cache) to watch; "" watches every disk and file system.
	DataDir string
	// PID limits io_uring latency to one process (the broker passes its
	// own); 0 watches every process.
	PID int
}

// UnavailableError lists what the host lacks for the probes.
type UnavailableError struct{ Missing []string }

func (e *UnavailableError) Error() string {
	return "eBPF probes unavailable: " + strings.Join(e.Missing, "; ")
}

// histSlots matches HIST_SLOTS in bpf/common.h.
const histSlots = 40

// hist is struct hist of bpf/common.h.
type hist struct {
	Slots [histSlots]uint64
	Count uint64
	Sum   uint64
}

// Block operations, as enumerated in bpf/block.c.
var blockOps = []string{"read", "write", "flush", "discard", "other"}

// Page-cache counters, as enumerated in bpf/pagecache.c.
const (
	pcReadMisses = iota
	pcPagesRead
	pcPagesOther
)

// Probes is a set of attached probes. Close detaches them.
type Probes struct {
	// Attached names the probes that run; Missing says why others do not.
	Attached []string
	Missing  []string
	// Disks are the disks the block probe watches (empty: all).
	Disks []tuning.Disk

	mu        sync.Mutex
	links     []link.Link
	block     *blockObjects
	uring     *uringObjects
	pagecache *pagecacheObjects
}

// Requirements lists what this host lacks to run the probes: privileges,
// kernel BTF and tracefs, which it mounts at /sys/kernel/tracing when
// absent. Empty means the probes can load.
func Requirements() []string {
	var missing []string
	privileged := capable()
	if !privileged {
		missing = append(missing, "privileges: run as root, or with CAP_BPF and CAP_PERFMON")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		missing = append(missing, "kernel BTF: /sys/kernel/btf/vmlinux is absent (needs a kernel built with CONFIG_DEBUG_INFO_BTF)")
	}
	if err := ensureTracefs(privileged); err != nil {
		missing = append(missing, "tracefs: "+err.Error())
	}
	return missing
}

// capable reports whether the process may load tracing programs:
// CAP_SYS_ADMIN, or CAP_BPF with CAP_PERFMON.
func capable() bool {
	const capSysAdmin, capPerfmon, capBPF = 21, 38, 39
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return os.Geteuid() == 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				break
			}
			has := func(bit uint) bool { return caps&(1<<bit) != 0 }
			return has(capSysAdmin) || (has(capBPF) && has(capPerfmon))
		}
	}
	return os.Geteuid() == 0
}

const tracefs = "/sys/kernel/tracing"

// ensureTracefs makes tracepoint ids readable: cilium/ebpf reads them from
// tracefs, which some hosts do not mount.
func ensureTracefs(privileged bool) error {
	for _, dir := range []string{tracefs, "/sys/kernel/debug/tracing"} {
		_, err := os.Stat(dir + "/events")
		if err == nil {
			return nil
		}
		if errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("%s is not readable without root", dir)
		}
	}
	if !privileged {
		return fmt.Errorf("not mounted at %s, and mounting it needs root", tracefs)
	}
	if err := unix.Mount("tracefs", tracefs, "tracefs", 0, ""); err != nil {
		return fmt.Errorf("not mounted at %s, and mounting it failed: %w", tracefs, err)
	}
	return nil
}

// Start loads and attaches every probe that this kernel supports. It fails
// with an *UnavailableError when none can run; otherwise Missing says which
// did not and why.
func Start(cfg Config) (*Probes, error) {
	if missing := Requirements(); len(missing) > 0 {
		return nil, &UnavailableError{Missing: missing}
	}
	// Kernels before 5.11 count BPF memory against RLIMIT_MEMLOCK.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, &UnavailableError{Missing: []string{"raising RLIMIT_MEMLOCK for BPF maps: " + err.Error()}}
	}
	p := &Probes{}
	var sdev uint32
	if cfg.DataDir != "" {
		disks, err := tuning.DataDisks(cfg.DataDir)
		if err != nil {
			p.Missing = append(p.Missing, fmt.Sprintf("block I/O filter: the disk of %s: %v (watching every disk)", cfg.DataDir, err))
		}
		p.Disks = disks
		if dir, err := tuning.ExistingDir(cfg.DataDir); err == nil {
			var st unix.Stat_t
			if err := unix.Stat(dir, &st); err == nil {
				sdev = kernelDev(unix.Major(st.Dev), unix.Minor(st.Dev))
			}
		}
	}
	steps := []struct {
		name  string
		start func() error
		drop  func() // frees what a failed start loaded
	}{
		{"block I/O latency", p.startBlock, func() { closeObjects(&p.block) }},
		{"io_uring request latency", func() error { return p.startURing(cfg.PID) }, func() { closeObjects(&p.uring) }},
		{"page-cache read misses", func() error { return p.startPageCache(sdev) }, func() { closeObjects(&p.pagecache) }},
	}
	for _, s := range steps {
		linked := len(p.links)
		if err := s.start(); err != nil {
			p.Missing = append(p.Missing, s.name+": "+err.Error())
			for _, l := range p.links[linked:] {
				l.Close()
			}
			p.links = p.links[:linked]
			s.drop()
			continue
		}
		p.Attached = append(p.Attached, s.name)
	}
	if len(p.Attached) == 0 {
		p.Close()
		return nil, &UnavailableError{Missing: p.Missing}
	}
	return p, nil
}

// kernelDev encodes a device number as the kernel's dev_t (MKDEV), the
// form tracepoints report.
func kernelDev(major, minor uint32) uint32 { return major<<20 | minor }

func (p *Probes) attach(group, name string, prog *ebpf.Program) error {
	l, err := link.Tracepoint(group, name, prog, nil)
	if err != nil {
		return fmt.Errorf("attaching %s:%s: %w", group, name, err)
	}
	p.links = append(p.links, l)
	return nil
}

// loadErr shortens the verifier log cilium/ebpf appends to load errors.
func loadErr(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Errorf("loading: %v", ve.Cause)
	}
	return fmt.Errorf("loading: %w", err)
}

func (p *Probes) startBlock() error {
	spec, err := loadBlock()
	if err != nil {
		return err
	}
	if len(p.Disks) > 0 {
		if err := spec.Variables["block_filter"].Set(uint32(1)); err != nil {
			return err
		}
	}
	objs := &blockObjects{}
	if err := spec.LoadAndAssign(objs, nil); err != nil {
		return loadErr(err)
	}
	for _, d := range p.Disks {
		if err := objs.BlockDevs.Put(kernelDev(d.Major, d.Minor), uint8(1)); err != nil {
			objs.Close()
			return err
		}
	}
	p.block = objs
	if err := p.attach("block", "block_rq_issue", objs.BlockRqIssue); err != nil {
		return err
	}
	return p.attach("block", "block_rq_complete", objs.BlockRqComplete)
}

func (p *Probes) startURing(pid int) error {
	spec, err := loadUring()
	if err != nil {
		return err
	}
	if err := spec.Variables["uring_tgid"].Set(uint32(pid)); err != nil {
		return err
	}
	objs := &uringObjects{}
	if err := spec.LoadAndAssign(objs, nil); err != nil {
		return loadErr(err)
	}
	p.uring = objs
	if err := p.attach("io_uring", "io_uring_submit_req", objs.IoUringSubmitReq); err != nil {
		return err
	}
	return p.attach("io_uring", "io_uring_complete", objs.IoUringComplete)
}

func (p *Probes) startPageCache(sdev uint32) error {
	spec, err := loadPagecache()
	if err != nil {
		return err
	}
	if err := spec.Variables["pc_sdev"].Set(sdev); err != nil {
		return err
	}
	objs := &pagecacheObjects{}
	if err := spec.LoadAndAssign(objs, nil); err != nil {
		return loadErr(err)
	}
	p.pagecache = objs
	for _, tp := range []struct {
		group, name string
		prog        *ebpf.Program
	}{
		{"readahead", "page_cache_sync_ra", objs.PageCacheSyncRa},
		{"readahead", "page_cache_async_ra", objs.PageCacheAsyncRa},
		{"filemap", "mm_filemap_add_to_page_cache", objs.MmFilemapAddToPageCache},
		{"filemap", "mm_filemap_get_pages", objs.MmFilemapGetPages},
	} {
		if err := p.attach(tp.group, tp.name, tp.prog); err != nil {
			return err
		}
	}
	return nil
}

// closeObjects closes a set of loaded objects and forgets it.
func closeObjects[T any, P interface {
	*T
	Close() error
}](objs *P) {
	if *objs != nil {
		(*objs).Close()
		*objs = nil
	}
}

// Close detaches every probe and frees its maps.
func (p *Probes) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for _, l := range p.links {
		errs = append(errs, l.Close())
	}
	p.links = nil
	if p.block != nil {
		errs = append(errs, p.block.Close())
		p.block = nil
	}
	if p.uring != nil {
		errs = append(errs, p.uring.Close())
		p.uring = nil
	}
	if p.pagecache != nil {
		errs = append(errs, p.pagecache.Close())
		p.pagecache = nil
	}
	return errors.Join(errs...)
}

// Histogram is one log2 histogram: Slots[k] counts values in [2^k, 2^(k+1)).
type Histogram struct {
	Label string // the operation or opcode
	Slots [histSlots]uint64
	Count uint64
	Sum   uint64 // nanoseconds, or pages for miss sizes
}

// Snapshot is everything the probes measured since they started.
type Snapshot struct {
	Block          []Histogram // per operation, nanoseconds
	URing          []Histogram // per opcode, nanoseconds
	ReadMisses     uint64      // reads that missed the page cache
	MissPages      Histogram   // pages each missing read wanted
	PagesRead      uint64      // pages inserted for reads (misses and readahead)
	PagesOther     uint64      // pages inserted otherwise (writes)
	HasBlock       bool
	HasURing       bool
	HasPageCache   bool
	WatchedDisks   []tuning.Disk
	NotAttached    []string
	AttachedProbes []string
}

func readHist(m *ebpf.Map, key uint32) (hist, error) {
	var h hist
	err := m.Lookup(key, &h)
	return h, err
}

// Snapshot reads the probes' maps.
func (p *Probes) Snapshot() (Snapshot, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Snapshot{WatchedDisks: p.Disks, NotAttached: p.Missing, AttachedProbes: p.Attached}
	if p.block != nil {
		s.HasBlock = true
		for i, op := range blockOps {
			h, err := readHist(p.block.BlockHist, uint32(i))
			if err != nil {
				return s, err
			}
			s.Block = append(s.Block, Histogram{Label: op, Slots: h.Slots, Count: h.Count, Sum: h.Sum})
		}
	}
	if p.uring != nil {
		s.HasURing = true
		for op := uint32(0); op < 64; op++ {
			h, err := readHist(p.uring.UringHist, op)
			if err != nil {
				return s, err
			}
			if h.Count > 0 {
				s.URing = append(s.URing, Histogram{Label: opcodeName(op), Slots: h.Slots, Count: h.Count, Sum: h.Sum})
			}
		}
	}
	if p.pagecache != nil {
		s.HasPageCache = true
		counters := make([]uint64, 3)
		for i := range counters {
			if err := p.pagecache.PcCounters.Lookup(uint32(i), &counters[i]); err != nil {
				return s, err
			}
		}
		s.ReadMisses, s.PagesRead, s.PagesOther = counters[pcReadMisses], counters[pcPagesRead], counters[pcPagesOther]
		h, err := readHist(p.pagecache.PcMissHist, 0)
		if err != nil {
			return s, err
		}
		s.MissPages = Histogram{Label: "pages", Slots: h.Slots, Count: h.Count, Sum: h.Sum}
	}
	return s, nil
}

// opcodes names io_uring opcodes (include/uapi/linux/io_uring.h).
var opcodes = []string{
	"NOP", "READV", "WRITEV", "FSYNC", "READ_FIXED", "WRITE_FIXED", "POLL_ADD", "POLL_REMOVE",
	"SYNC_FILE_RANGE", "SENDMSG", "RECVMSG", "TIMEOUT", "TIMEOUT_REMOVE", "ACCEPT", "ASYNC_CANCEL",
	"LINK_TIMEOUT", "CONNECT", "FALLOCATE", "OPENAT", "CLOSE", "FILES_UPDATE", "STATX", "READ",
	"WRITE", "FADVISE", "MADVISE", "SEND", "RECV", "OPENAT2", "EPOLL_CTL", "SPLICE",
	"PROVIDE_BUFFERS", "REMOVE_BUFFERS", "TEE", "SHUTDOWN", "RENAMEAT", "UNLINKAT", "MKDIRAT",
	"SYMLINKAT", "LINKAT", "MSG_RING", "FSETXATTR", "SETXATTR", "FGETXATTR", "GETXATTR", "SOCKET",
	"URING_CMD", "SEND_ZC", "SENDMSG_ZC", "READ_MULTISHOT", "WAITID", "FUTEX_WAIT", "FUTEX_WAKE",
	"FUTEX_WAITV", "FIXED_FD_INSTALL", "FTRUNCATE", "BIND", "LISTEN", "RECV_ZC", "EPOLL_WAIT",
	"READV_FIXED", "WRITEV_FIXED",
}

func opcodeName(op uint32) string {
	if int(op) < len(opcodes) {
		return opcodes[op]
	}
	return "OP_" + strconv.Itoa(int(op))
}
