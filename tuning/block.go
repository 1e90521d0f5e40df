package tuning

import (
	"fmt"
	"strconv"
	"strings"
)

const udevFile = "/etc/udev/rules.d/60-sluice.rules"

// blockFindings runs one check per disk under the data directory.
func blockFindings(h *host, name, reason string, check func(d blockDev, f *Finding)) []Finding {
	disks, m, err := h.dataDisks()
	if err != nil {
		return []Finding{{Name: name, Reason: reason, Status: StatusUnknown, Current: "?", Recommended: "?",
			Error: "finding the data directory's disk: " + err.Error()}}
	}
	if len(disks) == 0 {
		return []Finding{{Name: name, Reason: reason, Status: StatusIgnored, Current: "-", Recommended: "-",
			Target: m.point, Scope: fmt.Sprintf("%s is on %s (%s), which has no block device", h.dataDir, m.point, m.fsType)}}
	}
	var out []Finding
	for _, d := range disks {
		f := Finding{Name: name, Target: d.name, Reason: reason, Matters: true,
			Scope: fmt.Sprintf("%s holds %s", d.name, h.dataDir)}
		check(d, &f)
		out = append(out, f)
	}
	return out
}

// queueWrite plans setting a disk's queue attribute at runtime, or with
// --persist in a udev rule that sets it whenever the disk appears.
func queueWrite(d blockDev, attr, value, reason string) plan {
	return plan{
		writes: []write{{path: d.sys + "/queue/" + attr, value: value}},
		persist: []persistLine{{
			file: udevFile, key: d.name + " queue/" + attr, comment: reason,
			line: fmt.Sprintf(`ACTION=="add|change", SUBSYSTEM=="block", KERNEL=="%s", ATTR{queue/%s}="%s"`, d.name, attr, value),
		}},
	}
}

func (h *host) rotational(d blockDev) bool {
	v, err := h.read(d.sys + "/queue/rotational")
	return err == nil && v == "1"
}

func checkScheduler(h *host) []Finding {
	const reason = "an SSD reorders better than the kernel, so 'none' spends no CPU per request; a spinning disk needs mq-deadline to bound read latency behind writes"
	return blockFindings(h, "block.scheduler", reason, func(d blockDev, f *Finding) {
		raw, err := h.readRaw(d.sys + "/queue/scheduler")
		if err != nil {
			f.Status, f.Current, f.Recommended, f.Error = StatusUnknown, "?", "?", err.Error()
			return
		}
		cur, available, ok := selector(raw)
		if !ok {
			cur = strings.TrimSpace(raw) // "none" alone on single-queue drivers
			available = []string{cur}
		}
		want := "none"
		if h.rotational(d) {
			want = "mq-deadline"
			f.Scope += " and reports itself rotational (virtual disks often do)"
		}
		f.Current, f.Recommended = cur, want
		if cur == want {
			f.Status = StatusOK
			return
		}
		f.Status = StatusOff
		for _, a := range available {
			if a == want {
				f.plan = queueWrite(d, "scheduler", want, reason)
				return
			}
		}
		f.plan = plan{cannot: fmt.Sprintf("%s is not available (this kernel offers %s)", want, strings.Join(available, ", "))}
	})
}

func checkNomerges(h *host) []Finding {
	const reason = "the broker already issues large sequential writes; merge lookups cost CPU per request on fast devices (2 = never merge), while a spinning disk gains from merging (0)"
	return blockFindings(h, "block.nomerges", reason, func(d blockDev, f *Finding) {
		cur, err := h.readInt(d.sys + "/queue/nomerges")
		if err != nil {
			f.Status, f.Current, f.Recommended, f.Error = StatusUnknown, "?", "?", err.Error()
			return
		}
		want := int64(2)
		if h.rotational(d) {
			want = 0
			f.Scope += " and reports itself rotational"
		}
		f.Current, f.Recommended = itoa(cur), itoa(want)
		if cur == want {
			f.Status = StatusOK
			return
		}
		f.Status = StatusOff
		f.plan = queueWrite(d, "nomerges", itoa(want), reason)
	})
}

const (
	readAheadMinKB = 128
	readAheadMaxKB = 4096
	readAheadKB    = 1024
)

func checkReadAhead(h *host) []Finding {
	const reason = "catch-up consumers read segments sequentially and readahead makes their fetches large disk reads, but megabytes per stream evict the hot tail live consumers read"
	return blockFindings(h, "block.read_ahead_kb", reason, func(d blockDev, f *Finding) {
		cur, err := h.readInt(d.sys + "/queue/read_ahead_kb")
		f.Recommended = fmt.Sprintf("%d-%d (apply sets %d)", readAheadMinKB, readAheadMaxKB, readAheadKB)
		if err != nil {
			f.Status, f.Current, f.Error = StatusUnknown, "?", err.Error()
			return
		}
		f.Current = strconv.FormatInt(cur, 10)
		if cur >= readAheadMinKB && cur <= readAheadMaxKB {
			f.Status = StatusOK
			return
		}
		f.Status = StatusOff
		f.plan = queueWrite(d, "read_ahead_kb", itoa(readAheadKB), reason)
	})
}

func checkWriteCache(h *host) []Finding {
	const reason = "'write back' makes every fsync send a cache flush, which is what makes acks=all durable; forcing 'write through' is safe only with power-loss protection, so sluice never changes it"
	return blockFindings(h, "block.write_cache", reason, func(d blockDev, f *Finding) {
		cur, err := h.read(d.sys + "/queue/write_cache")
		f.Recommended = "as the device reports"
		if err != nil {
			f.Status, f.Current, f.Error = StatusUnknown, "?", err.Error()
			return
		}
		f.Current, f.Status = cur, StatusOK
		switch cur {
		case "write back":
			f.Scope += "; it has a volatile cache, so fsync latency includes a flush"
		case "write through":
			f.Scope += "; it reports no volatile cache (or was told so), so fsync sends no flush"
		}
	})
}
