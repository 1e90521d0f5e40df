package tuning

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

const thpPath = "/sys/kernel/mm/transparent_hugepage/enabled"

func checkTHP(h *host) []Finding {
	const reason = "'always' makes page faults stall in compaction and khugepaged bloat memory (latency spikes); 'madvise' gives huge pages only to memory that asks, 'never' needlessly refuses them"
	f := Finding{Name: "transparent_hugepage", Recommended: "madvise", Reason: reason, Matters: true,
		Scope: "the broker's heap and buffers; the page cache is not affected"}
	raw, err := h.readRaw(thpPath)
	if err != nil {
		if !h.exists(filepath.Dir(thpPath)) {
			f.Status, f.Current, f.Matters = StatusIgnored, "absent", false
			f.Scope = "the kernel is built without transparent huge pages"
			return []Finding{f}
		}
		f.Status, f.Current, f.Error = StatusUnknown, "?", err.Error()
		return []Finding{f}
	}
	cur, _, ok := selector(raw)
	if !ok {
		f.Status, f.Current, f.Error = StatusUnknown, strings.TrimSpace(raw), "not a selector file"
		return []Finding{f}
	}
	f.Current = cur
	if cur == "madvise" {
		f.Status = StatusOK
		return []Finding{f}
	}
	f.Status = StatusOff
	f.plan = plan{
		writes:    []write{{path: thpPath, value: "madvise"}},
		noPersist: "add transparent_hugepage=madvise to the kernel command line",
	}
	return []Finding{f}
}

func checkGovernor(h *host) []Finding {
	const reason = "a shard spins briefly then sleeps; power-saving governors clock the core down between requests and every wake-up pays the ramp-up in latency"
	f := Finding{Name: "cpu.governor", Recommended: "performance", Reason: reason, Matters: true}
	files := h.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor")
	if len(files) == 0 {
		f.Status, f.Current, f.Matters = StatusIgnored, "none", false
		f.Scope = "no cpufreq governor (a VM, or frequency managed by firmware)"
		return []Finding{f}
	}
	byGovernor := map[string][]int{}
	var writes []write
	available := map[string]bool{}
	for _, p := range files {
		cpu := cpuNumber(p)
		g, err := h.read(p)
		if err != nil {
			f.Status, f.Current, f.Error = StatusUnknown, "?", err.Error()
			return []Finding{f}
		}
		byGovernor[g] = append(byGovernor[g], cpu)
		if g != "performance" {
			writes = append(writes, write{path: p, value: "performance"})
		}
		if a, err := h.read(filepath.Join(filepath.Dir(p), "scaling_available_governors")); err == nil {
			for _, w := range strings.Fields(a) {
				available[w] = true
			}
		}
	}
	var parts []string
	for g, cpus := range byGovernor {
		sort.Ints(cpus)
		parts = append(parts, fmt.Sprintf("%s (cpu %s)", g, formatCPUList(cpus)))
	}
	sort.Strings(parts)
	f.Current = strings.Join(parts, ", ")
	if len(writes) == 0 {
		f.Status = StatusOK
		return []Finding{f}
	}
	f.Status = StatusOff
	if len(available) > 0 && !available["performance"] {
		// intel_pstate in active mode offers performance and powersave only; others may lack it.
		f.plan = plan{cannot: "the cpufreq driver offers no performance governor"}
		return []Finding{f}
	}
	f.plan = plan{writes: writes, noPersist: "governors have no sysctl or udev form: use cpupower's or tuned's service"}
	return []Finding{f}
}

func cpuNumber(p string) int {
	for _, part := range strings.Split(p, "/") {
		if n, ok := strings.CutPrefix(part, "cpu"); ok {
			if v, err := strconv.Atoi(n); err == nil {
				return v
			}
		}
	}
	return -1
}

// irqsOf lists the interrupts of a device's sysfs directory, looking for
// msi_irqs in it and up to two parents (a virtio or nvme device sits below
// its PCI function).
func (h *host) irqsOf(devDir string) []int {
	real, err := filepath.EvalSymlinks(h.path(devDir))
	if err != nil {
		return nil
	}
	for _, d := range []string{real, filepath.Dir(real), filepath.Join(real, "device")} {
		entries, err := os.ReadDir(filepath.Join(d, "msi_irqs"))
		if err != nil || len(entries) == 0 {
			continue
		}
		var irqs []int
		for _, e := range entries {
			if n, err := strconv.Atoi(e.Name()); err == nil {
				irqs = append(irqs, n)
			}
		}
		sort.Ints(irqs)
		return irqs
	}
	return nil
}

func checkIRQAffinity(h *host) []Finding {
	const reason = "an interrupt handled on a shard's core preempts that shard; steer NIC and disk queues to the cores that run no shard"
	f := Finding{Name: "irq.affinity", Reason: reason, Matters: true}
	online, err := h.onlineCPUs()
	if err != nil {
		f.Status, f.Current, f.Recommended, f.Error = StatusUnknown, "?", "?", err.Error()
		return []Finding{f}
	}
	if h.shards >= len(online) {
		f.Status, f.Matters = StatusIgnored, false
		f.Current, f.Recommended = "-", "cores without a shard"
		f.Scope = fmt.Sprintf("all %d CPUs run a shard, so there is no core to move interrupts to (run fewer --shards to free one)", len(online))
		return []Finding{f}
	}
	// Shards take CPUs from the first (as --pin-cpus places them); interrupts get the rest.
	spare := online[h.shards:]
	want := formatCPUList(spare)
	f.Recommended = want
	f.Target = fmt.Sprintf("%d shard(s) on cpu %s", h.shards, formatCPUList(online[:h.shards]))

	type source struct {
		name string
		irqs []int
	}
	var sources []source
	for _, n := range h.glob("/sys/class/net/*") {
		if filepath.Base(n) == "lo" {
			continue
		}
		if irqs := h.irqsOf(n + "/device"); len(irqs) > 0 {
			sources = append(sources, source{filepath.Base(n), irqs})
		}
	}
	if disks, _, err := h.dataDisks(); err == nil {
		for _, d := range disks {
			if irqs := h.irqsOf(d.sys + "/device"); len(irqs) > 0 {
				sources = append(sources, source{d.name, irqs})
			}
		}
	}
	if len(sources) == 0 {
		f.Status, f.Current, f.Matters = StatusIgnored, "-", false
		f.Scope = "found no MSI interrupts of a NIC or of the data disk"
		return []Finding{f}
	}
	var off, names []string
	var writes []write
	spareSet := map[int]bool{}
	for _, c := range spare {
		spareSet[c] = true
	}
	for _, s := range sources {
		names = append(names, s.name)
		for _, irq := range s.irqs {
			p := fmt.Sprintf("/proc/irq/%d/smp_affinity_list", irq)
			v, err := h.read(p)
			if err != nil {
				continue // the IRQ is not active
			}
			cpus, err := cpuList(v)
			if err != nil {
				continue
			}
			inside := len(cpus) > 0
			for _, c := range cpus {
				inside = inside && spareSet[c]
			}
			if !inside {
				off = append(off, fmt.Sprintf("%d:%s", irq, v))
				writes = append(writes, write{path: p, value: want})
			}
		}
	}
	f.Scope = "interrupts of " + strings.Join(names, ", ")
	if len(writes) == 0 {
		f.Status, f.Current = StatusOK, "cpu "+want
		return []Finding{f}
	}
	f.Status = StatusOff
	f.Current = fmt.Sprintf("%d IRQ(s) on shard cores (%s)", len(off), strings.Join(off, " "))
	f.plan = plan{writes: writes,
		noPersist: "affinity has no sysctl or udev form; with irqbalance running, ban the shard cores with IRQBALANCE_BANNED_CPULIST=" + formatCPUList(online[:h.shards])}
	return []Finding{f}
}

const clocksourceDir = "/sys/devices/system/clocksource/clocksource0"

// fastClocks are read in the vDSO without entering the kernel.
var fastClocks = []string{"tsc", "kvm-clock", "arch_sys_counter", "hyperv_clocksource_tsc_page"}

func checkClocksource(h *host) []Finding {
	const reason = "time.Now() runs on every request and latency sample; tsc and kvm-clock are read in the vDSO, hpet or acpi_pm cost a kernel entry (~1 us) each"
	f := Finding{Name: "clocksource", Reason: reason, Matters: true}
	cur, err := h.read(clocksourceDir + "/current_clocksource")
	if err != nil {
		f.Status, f.Current, f.Recommended, f.Error = StatusUnknown, "?", "tsc", err.Error()
		return []Finding{f}
	}
	avail, _ := h.read(clocksourceDir + "/available_clocksource")
	f.Current = cur
	isFast := func(c string) bool {
		for _, x := range fastClocks {
			if c == x {
				return true
			}
		}
		return false
	}
	if isFast(cur) {
		f.Status, f.Recommended = StatusOK, cur
		return []Finding{f}
	}
	want := ""
	for _, x := range fastClocks {
		for _, a := range strings.Fields(avail) {
			if a == x && want == "" {
				want = x
			}
		}
	}
	f.Status = StatusOff
	if want == "" {
		f.Recommended = "tsc"
		f.plan = plan{cannot: fmt.Sprintf("no vDSO clock is available (available: %s); the kernel marked tsc unstable", avail)}
		return []Finding{f}
	}
	f.Recommended = want
	f.plan = plan{writes: []write{{path: clocksourceDir + "/current_clocksource", value: want}},
		noPersist: "add clocksource=" + want + " to the kernel command line"}
	return []Finding{f}
}
