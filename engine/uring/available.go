//go:build linux

package uring

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Available returns nil if io_uring works for this process, otherwise an
// error that says why in one line, for the broker's start-up log before it
// falls back to plain syscalls. It sets up a small ring and completes a NOP
// through it, on the calling goroutine's thread (locked for the duration).
func Available() error {
	policy := ""
	if b, err := os.ReadFile("/proc/sys/kernel/io_uring_disabled"); err == nil {
		switch v := strings.TrimSpace(string(b)); v {
		case "0":
		case "1":
			group := "?"
			if g, err := os.ReadFile("/proc/sys/kernel/io_uring_group"); err == nil {
				group = strings.TrimSpace(string(g))
			}
			policy = fmt.Sprintf("sysctl kernel.io_uring_disabled=1 allows io_uring only to group kernel.io_uring_group=%s and CAP_SYS_ADMIN", group)
		case "2":
			return errors.New("io_uring unavailable: disabled by sysctl kernel.io_uring_disabled=2")
		default:
			policy = "sysctl kernel.io_uring_disabled=" + v
		}
	}

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r, err := New(Params{Entries: 4})
	if err != nil {
		switch {
		case errors.Is(err, unix.ENOSYS):
			return fmt.Errorf("io_uring unavailable: the kernel has no io_uring (ENOSYS; needs Linux 5.11+ built with CONFIG_IO_URING): %w", err)
		case errors.Is(err, unix.EPERM) && policy != "":
			return fmt.Errorf("io_uring unavailable: %s (EPERM): %w", policy, err)
		case errors.Is(err, unix.EPERM):
			return fmt.Errorf("io_uring unavailable: not permitted (EPERM), likely a seccomp filter of the container runtime: %w", err)
		}
		return fmt.Errorf("io_uring unavailable: %w", err)
	}
	defer r.Close()
	if f := r.info.Features; f&featNoDrop == 0 || f&featExtArg == 0 {
		return fmt.Errorf("io_uring unavailable: kernel too old (features %#x lack NODROP or EXT_ARG; needs Linux 5.11+)", f)
	}
	r.PrepNop(1)
	if _, err := r.SubmitAndWait(1); err != nil {
		return fmt.Errorf("io_uring unavailable: NOP submission failed: %w", err)
	}
	var cqes [4]CQE
	got := r.Reap(cqes[:0])
	if len(got) != 1 || got[0].UserData != 1 || got[0].Res != 0 {
		return fmt.Errorf("io_uring unavailable: NOP completed as %+v", got)
	}
	return nil
}
