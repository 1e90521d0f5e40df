package engine

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sluice-broker/sluice/engine/config"
	"github.com/sluice-broker/sluice/wire/kerr"
)

// Open file descriptors. A partition holds its active segment open (two
// descriptors in direct mode: the O_DIRECT one it writes and the buffered
// one fetches sendfile from) and each older segment's log file; its
// directory and index files are open only while they have a sync or write
// to come. With a few thousand partitions that can be more than a host's
// limit, and a broker that cannot open its partitions cannot start. So the
// broker raises its own limit at start, as far as the kernel lets it, and
// refuses to create partitions that would leave too few descriptors for
// the ones it has, its connections and its segment rolls. Internal topics
// are not refused: the broker needs them to start.

// raiseOpenFileLimit raises RLIMIT_NOFILE's soft and hard limits to the
// kernel's ceiling (fs.nr_open) where the process may (root, or
// CAP_SYS_RESOURCE), else the soft limit to the hard one, and returns the
// limits before and after.
func raiseOpenFileLimit() (before, after uint64, err error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, err
	}
	before = lim.Cur
	ceiling := lim.Max
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && n > ceiling {
			ceiling = n
		}
	}
	if lim.Cur >= ceiling {
		return before, lim.Cur, nil
	}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: ceiling, Max: ceiling}); err == nil {
		return before, ceiling, nil
	}
	// Not privileged: the hard limit is as far as we may go.
	if lim.Cur < lim.Max {
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: lim.Max, Max: lim.Max}); err != nil {
			return before, lim.Cur, err
		}
	}
	return before, lim.Max, nil
}

// descriptorsReserved is kept for connections, the HTTP listener and the
// broker's own files: at least this, or a tenth of the limit.
const descriptorsReserved = 256

// descriptorsPerPartition is what a new partition is budgeted: its active
// segment (one descriptor in page-cache mode, two in direct mode) and one
// rolled segment. Directory and index files are open only one partition
// at a time, or while a roll's sync is under way.
func descriptorsPerPartition(direct bool) uint64 {
	if direct {
		return 3
	}
	return 2
}

// descriptorBudget says whether more partitions, per descriptors each,
// fit in the open file limit given the descriptors open now, and how many
// would.
func descriptorBudget(limit, open, per uint64, more int) (fits bool, room int) {
	reserve := max(uint64(descriptorsReserved), limit/10)
	if open+reserve >= limit {
		return more <= 0, 0
	}
	room = int((limit - open - reserve) / per)
	return more <= room, room
}

// checkDescriptorBudget refuses to create more partitions when the
// descriptors they need would not be there: INVALID_PARTITIONS, before
// anything is created, naming the limit.
func (b *Broker) checkDescriptorBudget(more int32) error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return nil // cannot tell: let the open itself report it
	}
	open, err := openDescriptors()
	if err != nil {
		return nil
	}
	per := descriptorsPerPartition(b.IOMode == config.IOModeDirect)
	if fits, room := descriptorBudget(lim.Cur, open, per, int(more)); !fits {
		return kerr.New(kerr.InvalidPartitions, fmt.Sprintf(
			"not enough file descriptors for %d more partitions: the broker's open file limit is %d with %d open, which leaves room for %d more partitions; raise the limit (LimitNOFILE=, ulimit -n, or run as root to let sluice raise it to fs.nr_open) and restart",
			more, lim.Cur, open, room))
	}
	return nil
}

// openDescriptors counts the process's open file descriptors.
func openDescriptors() (uint64, error) {
	f, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return 0, err
	}
	return uint64(len(names)), nil
}
