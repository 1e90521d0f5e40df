package tuning

import (
	"fmt"
	"strconv"
)

func checkSwap(h *host) []Finding {
	const reason = "a swapped-out broker page costs a disk read on the request path; keep swap only as an emergency reserve behind vm.swappiness=1"
	f := Finding{Name: "swap", Recommended: "none, or vm.swappiness=1", Reason: reason, Matters: true}
	n, size, err := h.swapDevices()
	if err != nil {
		f.Status, f.Current, f.Error = StatusUnknown, "?", err.Error()
		return []Finding{f}
	}
	if n == 0 {
		f.Status, f.Current = StatusOK, "none"
		return []Finding{f}
	}
	f.Current = fmt.Sprintf("%d area(s), %s", n, bytesText(size))
	sw, err := h.readInt(sysctlPath("vm.swappiness"))
	if err == nil && sw <= 1 {
		f.Status = StatusOK
		f.Scope = "vm.swappiness is " + strconv.FormatInt(sw, 10) + ", so swap is used only under pressure"
		return []Finding{f}
	}
	f.Status = StatusOff
	f.plan = plan{coveredBy: "vm.swappiness",
		cannot: "removing swap (swapoff -a and /etc/fstab) is the operator's call; apply vm.swappiness instead"}
	return []Finding{f}
}

// goodFilesystems are those whose fallocate, O_DIRECT and fsync behave as
// the engine relies on.
var goodFilesystems = map[string]bool{"ext4": true, "xfs": true}

func checkFilesystem(h *host) []Finding {
	const reason = "the engine relies on fallocate, O_DIRECT and fdatasync as ext4 and xfs do them; tmpfs loses everything at reboot, overlay and network file systems break O_DIRECT or fsync"
	f := Finding{Name: "datadir.filesystem", Recommended: "xfs or ext4", Reason: reason, Matters: true}
	m, err := h.dataMount()
	if err != nil {
		f.Status, f.Current, f.Error = StatusUnknown, "?", err.Error()
		return []Finding{f}
	}
	f.Target = m.point
	f.Current = m.fsType
	f.Scope = fmt.Sprintf("%s is on %s (%s)", h.dataDir, m.point, m.source)
	if goodFilesystems[m.fsType] {
		f.Status = StatusOK
		return []Finding{f}
	}
	f.Status = StatusOff
	f.plan = plan{cannot: "move --data-dir to an ext4 or xfs file system"}
	return []Finding{f}
}

func checkNoatime(h *host) []Finding {
	const reason = "every read of a segment would otherwise write its inode's access time (relatime still does once a day per file); nothing in sluice reads atime"
	f := Finding{Name: "datadir.noatime", Recommended: "noatime", Reason: reason, Matters: true}
	m, err := h.dataMount()
	if err != nil {
		f.Status, f.Current, f.Error = StatusUnknown, "?", err.Error()
		return []Finding{f}
	}
	f.Target = m.point
	f.Current = "atime"
	for _, o := range m.options {
		switch o {
		case "noatime", "relatime", "strictatime":
			f.Current = o
		}
	}
	if f.Current == "noatime" {
		f.Status = StatusOK
		return []Finding{f}
	}
	f.Status = StatusOff
	f.plan = plan{cannot: fmt.Sprintf("a mount option: mount -o remount,noatime %s, and add noatime to its /etc/fstab entry", m.point)}
	return []Finding{f}
}

const (
	freeSpaceMin      = 1 * gib
	freeSpaceFraction = 10 // percent
)

func checkFreeSpace(h *host) []Finding {
	const reason = "a full disk stops every append (ENOSPC makes a segment refuse further writes); retention deletes whole segments, so keep room for a few of them"
	f := Finding{Name: "datadir.free_space", Reason: reason, Matters: true,
		Recommended: fmt.Sprintf(">= %d%% and >= %s free", freeSpaceFraction, bytesText(freeSpaceMin))}
	total, avail, err := h.statfs()
	if err != nil {
		f.Status, f.Current, f.Error = StatusUnknown, "?", err.Error()
		return []Finding{f}
	}
	f.Target = h.dataDir
	if m, err := h.dataMount(); err == nil {
		f.Target = m.point
	}
	pct := float64(0)
	if total > 0 {
		pct = 100 * float64(avail) / float64(total)
	}
	f.Current = fmt.Sprintf("%s of %s (%.0f%%)", bytesText(int64(avail)), bytesText(int64(total)), pct)
	if int64(avail) >= freeSpaceMin && pct >= freeSpaceFraction {
		f.Status = StatusOK
		return []Finding{f}
	}
	f.Status = StatusOff
	f.plan = plan{cannot: "free space needs the operator: lower retention.bytes/retention.ms, or a bigger disk"}
	return []Finding{f}
}
