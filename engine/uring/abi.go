//go:build linux

package uring

import "unsafe"

// The kernel ABI of io_uring, transcribed from include/uapi/linux/io_uring.h.
// golang.org/x/sys/unix has the syscall numbers but none of these, so they
// live here, unexported: callers see only the typed API.

// io_uring_setup(2) flags (params.flags).
const (
	setupCQSize       = 1 << 3  // CQEntries is valid (5.5)
	setupSubmitAll    = 1 << 7  // do not stop submitting at the first SQE that fails (5.18)
	setupCoopTaskrun  = 1 << 8  // no IPI to interrupt the task for task work (5.19)
	setupTaskrunFlag  = 1 << 9  // kernel sets sqTaskrun when task work is pending (5.19)
	setupSingleIssuer = 1 << 12 // only one task submits (6.0)
	setupDeferTaskrun = 1 << 13 // task work runs only inside io_uring_enter(GETEVENTS) (6.1)
)

// params.features bits.
const (
	featSingleMmap = 1 << 0 // SQ and CQ rings share one mapping (5.4)
	featNoDrop     = 1 << 1 // CQEs are kept on an overflow list instead of dropped (5.5)
	featExtArg     = 1 << 8 // io_uring_enter takes io_uring_getevents_arg (5.11)
)

// SQE flags (sqe.flags).
const (
	sqeFixedFile = 1 << 0 // fd is an index into the registered file table
	sqeIOLink    = 1 << 2 // the next SQE starts only after this one succeeds
)

// Opcodes used by sluice.
const (
	opNop        = 0
	opFsync      = 3
	opReadFixed  = 4
	opWriteFixed = 5
	opRead       = 22
	opWrite      = 23
	// opWritevFixed is a pwritev2 whose iovecs all lie inside one
	// registered buffer (Linux 6.15).
	opWritevFixed = 61
)

// opLast bounds the opcodes a probe is asked about.
const opLast = 64

// probeOpSupported is IO_URING_OP_SUPPORTED in io_uring_probe_op.flags.
const probeOpSupported = 1 << 0

// probe is struct io_uring_probe with room for opLast ops.
type probe struct {
	lastOp uint8
	opsLen uint8
	_      uint16
	_      [3]uint32
	ops    [opLast]probeOp
}

// probeOp is struct io_uring_probe_op.
type probeOp struct {
	op    uint8
	_     uint8
	flags uint16
	_     uint32
}

// fsync flags (sqe.opFlags for opFsync).
const fsyncDatasync = 1 << 0

// rwfDsync is RWF_DSYNC, a per-write O_DSYNC (the rw_flags of a read/write SQE).
const rwfDsync = 0x2

// SQ ring flags (*Ring.sqFlags, written by the kernel).
const (
	sqNeedWakeup = 1 << 0 // SQPOLL only; unused here
	sqCQOverflow = 1 << 1 // completions wait on the kernel's overflow list
	sqTaskrun    = 1 << 2 // task work (completions) is pending; enter with GETEVENTS
)

// io_uring_enter(2) flags.
const (
	enterGetEvents = 1 << 0
	enterExtArg    = 1 << 3
)

// io_uring_register(2) opcodes.
const (
	registerBuffers     = 0
	registerFiles       = 2
	registerFilesUpdate = 6
	registerProbe       = 8
)

// mmap offsets of the three ring regions.
const (
	offSQRing = 0
	offCQRing = 0x8000000
	offSQEs   = 0x10000000
)

// Kernel limits checked before asking, so the error says which one.
const (
	entriesMax         = 32768 // IORING_MAX_ENTRIES
	cqEntriesMax       = 2 * entriesMax
	registerBuffersMax = 1 << 14 // IORING_MAX_REG_BUFFERS
)

type sqRingOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqRingOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

// setupParams is struct io_uring_params (120 bytes).
type setupParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqRingOffsets
	cqOff                                                                  cqRingOffsets
}

// sqe is struct io_uring_sqe (64 bytes). The unions are reduced to the
// member sluice uses; opFlags is rw_flags / fsync_flags.
type sqe struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	opFlags     uint32
	userData    uint64
	bufIndex    uint16
	personality uint16
	spliceFdIn  int32
	addr3       uint64
	_           uint64
}

// getEventsArg is struct io_uring_getevents_arg, passed with enterExtArg.
type getEventsArg struct {
	sigmask     uint64
	sigmaskSize uint32
	minWaitUsec uint32 // pad before 6.12
	ts          uint64 // address of a kernelTimespec
}

type kernelTimespec struct {
	sec, nsec int64
}

// filesUpdate is struct io_uring_files_update (IORING_REGISTER_FILES_UPDATE).
type filesUpdate struct {
	offset uint32
	resv   uint32
	fds    uint64 // address of an int32 array
}

// Compile-time layout checks: a wrong size here would corrupt the rings.
var (
	_ [64 - unsafe.Sizeof(sqe{})]struct{}
	_ [unsafe.Sizeof(sqe{}) - 64]struct{}
	_ [16 - unsafe.Sizeof(CQE{})]struct{}
	_ [unsafe.Sizeof(CQE{}) - 16]struct{}
	_ [120 - unsafe.Sizeof(setupParams{})]struct{}
	_ [unsafe.Sizeof(setupParams{}) - 120]struct{}
	_ [24 - unsafe.Sizeof(getEventsArg{})]struct{}
	_ [unsafe.Sizeof(getEventsArg{}) - 24]struct{}
	_ [16 - unsafe.Sizeof(filesUpdate{})]struct{}
	_ [unsafe.Sizeof(filesUpdate{}) - 16]struct{}
)
