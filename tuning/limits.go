package tuning

import (
	"fmt"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

const limitsFile = "/etc/security/limits.d/60-sluice.conf"

// capIPCLock is CAP_IPC_LOCK's bit: with it, locked memory is not limited.
const capIPCLock = 14

func limitText(v int64, unit func(int64) string) string {
	if v < 0 {
		return "unlimited"
	}
	return unit(v)
}

// limitsPlan cannot change a running process's inherited limit, so it only
// persists: pam_limits applies limits.d to login sessions.
func limitsPlan(item, value, reason, unitKey string) plan {
	var lines []persistLine
	for _, who := range []string{"*", "root"} { // "*" does not match root
		for _, kind := range []string{"soft", "hard"} {
			lines = append(lines, persistLine{
				file: limitsFile, key: who + " " + kind + " " + item,
				line: fmt.Sprintf("%-5s %s %s %s", who, kind, item, value), comment: reason,
			})
		}
	}
	return plan{
		persist: lines,
		cannot: fmt.Sprintf("a process limit is inherited from whatever starts the broker: set %s=%s in its systemd unit, or --persist writes %s for login sessions",
			unitKey, value, limitsFile),
	}
}

func checkNofile(h *host) []Finding {
	const reason = "one descriptor per open segment, index and connection; Go raises the soft limit to the hard one at start, so the hard limit is what counts"
	f := Finding{Name: "RLIMIT_NOFILE", Target: "hard limit", Reason: reason, Matters: true,
		Scope: "the limit of this process, which the broker inherits when started the same way"}
	want := int64(1048576)
	if nrOpen, err := h.readInt("/proc/sys/fs/nr_open"); err == nil && nrOpen < want {
		want = nrOpen // the kernel refuses a hard limit above fs.nr_open
	}
	f.Recommended = ">= " + strconv.FormatInt(want, 10)
	l, err := h.limit("Max open files")
	if err != nil {
		f.Status, f.Current, f.Error = StatusUnknown, "?", err.Error()
		return []Finding{f}
	}
	f.Current = fmt.Sprintf("%s (soft %s)", limitText(l.hard, itoa), limitText(l.soft, itoa))
	if l.hard < 0 || l.hard >= want {
		f.Status = StatusOK
		return []Finding{f}
	}
	f.Status = StatusOff
	f.plan = limitsPlan("nofile", strconv.FormatInt(want, 10), reason, "LimitNOFILE")
	return []Finding{f}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

func checkMemlock(h *host) []Finding {
	const reason = "io_uring registered buffers (direct mode's staging buffers) are pinned and counted against it; too small and buffer registration fails with ENOMEM"
	const want = 256 * mib
	f := Finding{Name: "RLIMIT_MEMLOCK", Reason: reason, Matters: true,
		Recommended: fmt.Sprintf("unlimited or >= %s", bytesText(want))}
	l, err := h.limit("Max locked memory")
	if err != nil {
		f.Status, f.Current, f.Error = StatusUnknown, "?", err.Error()
		return []Finding{f}
	}
	f.Current = fmt.Sprintf("%s (hard %s)", limitText(l.soft, bytesText), limitText(l.hard, bytesText))
	if l.soft < 0 || l.soft >= want {
		f.Status = StatusOK
		return []Finding{f}
	}
	if ok, err := h.capability(capIPCLock); err == nil && ok {
		f.Status, f.Matters = StatusIgnored, false
		f.Scope = "this process has CAP_IPC_LOCK, which lifts the limit"
		return []Finding{f}
	}
	f.Status = StatusOff
	f.plan = limitsPlan("memlock", "unlimited", reason, "LimitMEMLOCK")
	return []Finding{f}
}

// probeIOURing sets up and closes a one-entry ring on the real host.
func probeIOURing() error {
	var params [120]byte // struct io_uring_params, zeroed
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params[0])), 0)
	if errno != 0 {
		return errno
	}
	unix.Close(int(fd))
	return nil
}
