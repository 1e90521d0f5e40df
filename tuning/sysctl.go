package tuning

import (
	"fmt"
	"strconv"
	"strings"
)

const (
	kib = int64(1) << 10
	mib = int64(1) << 20
	gib = int64(1) << 30

	sysctlFile = "/etc/sysctl.d/60-sluice.conf"
)

// tuners is every tuner, in the order check reports them.
var tuners = []tuner{
	{"vm.swappiness", checkSwappiness},
	{"vm.dirty_background_bytes", checkDirtyBackground},
	{"vm.dirty_bytes", checkDirty},
	{"vm.max_map_count", checkMaxMapCount},
	{"vm.zone_reclaim_mode", checkZoneReclaim},
	{"fs.file-max", checkFileMax},
	{"RLIMIT_NOFILE", checkNofile},
	{"RLIMIT_MEMLOCK", checkMemlock},
	{"kernel.io_uring_disabled", checkIOURing},
	{"fs.aio-max-nr", checkAIOMaxNr},
	{"net.core.somaxconn", checkSomaxconn},
	{"net.ipv4.tcp_max_syn_backlog", checkSynBacklog},
	{"net.core.rmem_max", checkSocketMax("net.core.rmem_max")},
	{"net.core.wmem_max", checkSocketMax("net.core.wmem_max")},
	{"net.ipv4.tcp_rmem", checkTCPMem("net.ipv4.tcp_rmem")},
	{"net.ipv4.tcp_wmem", checkTCPMem("net.ipv4.tcp_wmem")},
	{"transparent_hugepage", checkTHP},
	{"block.scheduler", checkScheduler},
	{"block.nomerges", checkNomerges},
	{"block.read_ahead_kb", checkReadAhead},
	{"block.write_cache", checkWriteCache},
	{"cpu.governor", checkGovernor},
	{"irq.affinity", checkIRQAffinity},
	{"clocksource", checkClocksource},
	{"swap", checkSwap},
	{"datadir.filesystem", checkFilesystem},
	{"datadir.noatime", checkNoatime},
	{"datadir.free_space", checkFreeSpace},
}

// sysctlPath is the /proc/sys file of a sysctl name.
func sysctlPath(name string) string { return "/proc/sys/" + strings.ReplaceAll(name, ".", "/") }

// sysctlWrite plans setting a sysctl at runtime, or with --persist in
// /etc/sysctl.d.
func sysctlWrite(name, value, reason string, affects ...string) plan {
	return plan{
		writes: []write{{path: sysctlPath(name), value: value, affects: affects}},
		persist: []persistLine{{
			file:    sysctlFile,
			key:     name,
			line:    name + " = " + strings.Join(strings.Fields(value), " "),
			comment: reason,
		}},
	}
}

// intSysctl is a numeric sysctl with a rule for what is fine.
type intSysctl struct {
	name        string
	reason      string
	recommended string            // as shown
	ok          func(int64) bool  // whether a current value is fine
	target      func(int64) int64 // what apply writes
}

func (s intSysctl) finding(h *host, matters bool, scope string) Finding {
	f := Finding{Name: s.name, Recommended: s.recommended, Reason: s.reason, Matters: matters, Scope: scope}
	cur, err := h.readInt(sysctlPath(s.name))
	if err != nil {
		f.Status, f.Error, f.Current = StatusUnknown, err.Error(), "?"
		return f
	}
	f.Current = strconv.FormatInt(cur, 10)
	if s.ok(cur) {
		f.Status = StatusOK
		return f
	}
	f.plan = sysctlWrite(s.name, strconv.FormatInt(s.target(cur), 10), s.reason)
	f.Status = StatusOff
	if !matters {
		f.Status = StatusIgnored
	}
	return f
}

func atLeast(n int64) (string, func(int64) bool, func(int64) int64) {
	return ">= " + strconv.FormatInt(n, 10), func(v int64) bool { return v >= n }, func(int64) int64 { return n }
}

func exactly(n int64) (string, func(int64) bool, func(int64) int64) {
	return strconv.FormatInt(n, 10), func(v int64) bool { return v == n }, func(int64) int64 { return n }
}

func newIntSysctl(name, reason string, rule func(int64) (string, func(int64) bool, func(int64) int64), n int64) intSysctl {
	rec, ok, target := rule(n)
	return intSysctl{name: name, reason: reason, recommended: rec, ok: ok, target: target}
}

// swapDevices counts active swap areas and their size.
func (h *host) swapDevices() (count int, bytes int64, err error) {
	s, err := h.read("/proc/swaps")
	if err != nil {
		return 0, 0, err
	}
	for i, line := range strings.Split(s, "\n") {
		fields := strings.Fields(line)
		if i == 0 || len(fields) < 3 {
			continue
		}
		count++
		kb, _ := strconv.ParseInt(fields[2], 10, 64)
		bytes += kb * kib
	}
	return count, bytes, nil
}

func checkSwappiness(h *host) []Finding {
	s := newIntSysctl("vm.swappiness",
		"keep the broker's memory and the hot page cache in RAM; 1 (not 0) still lets the kernel swap rather than OOM-kill",
		exactly, 1)
	n, size, err := h.swapDevices()
	switch {
	case err != nil:
		return []Finding{s.finding(h, true, "cannot read /proc/swaps, assuming swap")}
	case n == 0:
		return []Finding{s.finding(h, false, "no swap configured, so nothing can be swapped out")}
	}
	return []Finding{s.finding(h, true, fmt.Sprintf("%d swap area(s), %s", n, bytesText(size)))}
}

// dirtyTargets sizes the writeback thresholds from RAM.
func dirtyTargets(memTotal int64) (background, limit int64) {
	background = clamp(memTotal/64, 64*mib, 1*gib)
	limit = clamp(memTotal/4, 1*gib, 16*gib)
	return roundMiB(background), roundMiB(limit)
}

func clamp(v, lo, hi int64) int64 { return max(lo, min(v, hi)) }

func roundMiB(v int64) int64 { return v / mib * mib }

// dirtyFinding checks one of the dirty thresholds, which the kernel takes
// either as bytes or as a ratio of memory (writing one zeroes the other).
func dirtyFinding(h *host, bytesName, ratioName, reason string, pick func(bg, limit int64) int64) Finding {
	f := Finding{Name: bytesName, Reason: reason, Matters: true, Scope: "page-cache mode appends and every fsync go through it"}
	mem, err := h.meminfo("MemTotal")
	if err != nil {
		f.Status, f.Error, f.Current, f.Recommended = StatusUnknown, err.Error(), "?", "?"
		return f
	}
	want := pick(dirtyTargets(mem))
	f.Recommended = fmt.Sprintf("%d (%s, from %s RAM)", want, bytesText(want), bytesText(mem))
	b, err1 := h.readInt(sysctlPath(bytesName))
	r, err2 := h.readInt(sysctlPath(ratioName))
	if err1 != nil || err2 != nil {
		f.Status, f.Current = StatusUnknown, "?"
		f.Error = fmt.Sprint(firstErr(err1, err2))
		return f
	}
	effective := b
	if b > 0 {
		f.Current = fmt.Sprintf("%d (%s)", b, bytesText(b))
	} else {
		effective = mem * r / 100
		f.Current = fmt.Sprintf("%s=%d (~%s)", ratioName, r, bytesText(effective))
	}
	// Within a factor of two is close enough to leave alone.
	if effective >= want/2 && effective <= want*2 {
		f.Status = StatusOK
		return f
	}
	f.Status = StatusOff
	f.plan = sysctlWrite(bytesName, strconv.FormatInt(want, 10), reason, sysctlPath(ratioName))
	return f
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func checkDirtyBackground(h *host) []Finding {
	return []Finding{dirtyFinding(h, "vm.dirty_background_bytes", "vm.dirty_background_ratio",
		"start writeback early and steadily, so group-commit fsyncs find little dirty data and the disk sees no flush storms",
		func(bg, _ int64) int64 { return bg })}
}

func checkDirty(h *host) []Finding {
	return []Finding{dirtyFinding(h, "vm.dirty_bytes", "vm.dirty_ratio",
		"high enough that a shard's pwrite is never throttled in balance_dirty_pages (it stalls the whole shard), bounded so unsynced data stays small",
		func(_, limit int64) int64 { return limit })}
}

func checkMaxMapCount(h *host) []Finding {
	s := newIntSysctl("vm.max_map_count",
		"Kafka-style brokers mmap two index files per segment and run out at the 65530 default",
		atLeast, 262144)
	return []Finding{s.finding(h, false, "sluice keeps its indexes in memory and maps only ring and buffer memory, so it needs few mappings")}
}

func checkZoneReclaim(h *host) []Finding {
	s := newIntSysctl("vm.zone_reclaim_mode",
		"reclaiming the local NUMA node's page cache instead of using a remote node's memory drops hot log data",
		exactly, 0)
	nodes, err := h.read("/sys/devices/system/node/online")
	if err != nil {
		return []Finding{s.finding(h, false, "no NUMA information, so assumed a single node")}
	}
	list, _ := cpuList(nodes)
	if len(list) <= 1 {
		return []Finding{s.finding(h, false, "one NUMA node, so there is no remote memory to prefer")}
	}
	return []Finding{s.finding(h, true, fmt.Sprintf("%d NUMA nodes", len(list)))}
}

func checkFileMax(h *host) []Finding {
	s := newIntSysctl("fs.file-max",
		"the whole host's descriptor limit: one per open segment and index file and one per client connection",
		atLeast, 1048576)
	return []Finding{s.finding(h, true, "")}
}

func checkAIOMaxNr(h *host) []Finding {
	s := newIntSysctl("fs.aio-max-nr",
		"caps in-flight Linux AIO requests host-wide; Seastar-based brokers need 1M+",
		atLeast, 1048576)
	return []Finding{s.finding(h, false, "sluice submits through io_uring, which this limit does not cover")}
}

func checkSomaxconn(h *host) []Finding {
	s := newIntSysctl("net.core.somaxconn",
		"Go's listen backlog is this value; a short accept queue drops connections when many clients reconnect at once (failover)",
		atLeast, 4096)
	return []Finding{s.finding(h, true, "")}
}

func checkSynBacklog(h *host) []Finding {
	s := newIntSysctl("net.ipv4.tcp_max_syn_backlog",
		"half-open connections queued during a reconnect storm (after a failover every client reconnects at once)",
		atLeast, 4096)
	return []Finding{s.finding(h, true, "")}
}

const socketBufferMax = 16 * mib

func checkSocketMax(name string) func(h *host) []Finding {
	return func(h *host) []Finding {
		s := newIntSysctl(name,
			"caps socket buffers set with SO_RCVBUF/SO_SNDBUF (Kafka's socket.*.buffer.bytes); 16 MiB covers a 10 Gb/s link at 10 ms RTT",
			atLeast, socketBufferMax)
		return []Finding{s.finding(h, true, "")}
	}
}

// checkTCPMem checks the autotuning maximum, the third of tcp_rmem's
// "min default max", keeping the other two.
func checkTCPMem(name string) func(h *host) []Finding {
	return func(h *host) []Finding {
		reason := "the most TCP autotuning may grow a connection's buffer to; large fetch responses and produce batches need a full window to move at line rate"
		f := Finding{Name: name, Reason: reason, Matters: true,
			Recommended: fmt.Sprintf("max >= %d", socketBufferMax)}
		s, err := h.read(sysctlPath(name))
		fields := strings.Fields(s)
		if err != nil || len(fields) != 3 {
			f.Status, f.Current = StatusUnknown, "?"
			f.Error = fmt.Sprint(firstErr(err, fmt.Errorf("%s is %q, not three numbers", name, s)))
			return []Finding{f}
		}
		f.Current = strings.Join(fields, " ")
		hi, err := strconv.ParseInt(fields[2], 10, 64)
		if err != nil {
			f.Status, f.Error = StatusUnknown, err.Error()
			return []Finding{f}
		}
		if hi >= socketBufferMax {
			f.Status = StatusOK
			return []Finding{f}
		}
		f.Status = StatusOff
		f.plan = sysctlWrite(name, fmt.Sprintf("%s\t%s\t%d", fields[0], fields[1], socketBufferMax), reason)
		return []Finding{f}
	}
}

func checkIOURing(h *host) []Finding {
	const reason = "sluice's shards do their disk I/O through io_uring; without it they fall back to plain syscalls that block the shard"
	f := Finding{Name: "kernel.io_uring_disabled", Recommended: "0", Reason: reason, Matters: true}
	v, err := h.readInt(sysctlPath(f.Name))
	switch {
	case err != nil && !h.exists(sysctlPath(f.Name)):
		f.Current, f.Status = "absent", StatusOK
		f.Scope = "the kernel predates the switch (6.6), so io_uring cannot be disabled by sysctl"
	case err != nil:
		f.Current, f.Status, f.Error = "?", StatusUnknown, err.Error()
		return []Finding{f}
	case v == 0:
		f.Current, f.Status = "0", StatusOK
	default:
		f.Current, f.Status = strconv.FormatInt(v, 10), StatusOff
		f.Scope = "1 allows io_uring only to the io_uring_group sysctl's group, 2 to nobody"
		f.plan = sysctlWrite(f.Name, "0", reason)
	}
	if f.Status == StatusOK && !h.fake() {
		if err := probeIOURing(); err != nil {
			f.Status = StatusOff
			f.Current += ", but io_uring_setup fails: " + err.Error()
			f.Scope = "a seccomp filter (Docker's default profile blocks io_uring) or an LSM refuses it"
			f.plan = plan{cannot: "allow io_uring_setup/io_uring_enter/io_uring_register in the container's seccomp profile"}
		}
	}
	return []Finding{f}
}

// bytesText formats a byte count with a binary unit.
func bytesText(n int64) string {
	switch {
	case n >= gib && n%gib == 0:
		return fmt.Sprintf("%d GiB", n/gib)
	case n >= gib:
		return fmt.Sprintf("%.1f GiB", float64(n)/float64(gib))
	case n >= mib:
		return fmt.Sprintf("%d MiB", n/mib)
	case n >= kib:
		return fmt.Sprintf("%d KiB", n/kib)
	}
	return fmt.Sprintf("%d B", n)
}
