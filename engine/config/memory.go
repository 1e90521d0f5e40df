package config

import (
	"os"

	"golang.org/x/sys/unix"
)

// DefaultMemoryLimit is the soft memory limit the Go runtime gets when
// GOMEMLIMIT is not set: three quarters of physical memory, so the garbage
// collector works harder before the kernel's page cache (which serves
// fetches) is squeezed. It returns 0 when GOMEMLIMIT is set or memory cannot
// be read, meaning: leave the runtime alone.
func DefaultMemoryLimit() int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0
	}
	var info unix.Sysinfo_t
	if err := unix.Sysinfo(&info); err != nil {
		return 0
	}
	total := int64(info.Totalram) * int64(info.Unit)
	return total / 4 * 3
}
