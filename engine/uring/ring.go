//go:build linux

package uring

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Errors returned by Submit, SubmitAndWait and WaitTimeout.
var (
	// ErrBusy: the kernel accepted none of the queued SQEs because
	// completions are backed up (EBUSY) or it could not allocate requests
	// (EAGAIN). The SQEs stay queued; Reap, then submit again.
	ErrBusy = errors.New("uring: submission refused until completions are reaped (EBUSY/EAGAIN)")

	// ErrCompletionsLost: the kernel dropped CQEs (EBADR), so some
	// operations will never complete. The ring cannot be trusted any more.
	ErrCompletionsLost = errors.New("uring: the kernel dropped completions (EBADR)")

	// ErrWrongThread: a SINGLE_ISSUER/DEFER_TASKRUN ring was used from a
	// thread other than the one that created it (EEXIST).
	ErrWrongThread = errors.New("uring: ring used from a thread other than its owner (EEXIST); the owner must stay runtime.LockOSThread'ed")
)

// Params sizes a ring.
type Params struct {
	Entries   uint32 // SQ entries, 1..32768, rounded up to a power of two by the kernel
	CQEntries uint32 // CQ entries; 0 means 2×Entries
}

// Info describes what the kernel set up, for the start-up log line.
type Info struct {
	SQEntries  uint32
	CQEntries  uint32
	SetupFlags uint32 // IORING_SETUP_* the kernel accepted
	Features   uint32 // IORING_FEAT_*
	// Refused lists the setup flag sets the kernel rejected with EINVAL
	// before one was accepted, e.g. "SINGLE_ISSUER|DEFER_TASKRUN|...".
	// Empty when the first choice worked.
	Refused []string
}

// DeferTaskrun reports whether completions are deferred to io_uring_enter.
func (i Info) DeferTaskrun() bool { return i.SetupFlags&setupDeferTaskrun != 0 }

func (i Info) String() string {
	s := fmt.Sprintf("io_uring sq=%d cq=%d setup=%s features=%#x", i.SQEntries, i.CQEntries, setupFlagNames(i.SetupFlags), i.Features)
	if len(i.Refused) > 0 {
		s += " refused=[" + strings.Join(i.Refused, " ; ") + "]"
	}
	return s
}

func setupFlagNames(f uint32) string {
	names := []struct {
		bit  uint32
		name string
	}{
		{setupCQSize, "CQSIZE"}, {setupSubmitAll, "SUBMIT_ALL"}, {setupCoopTaskrun, "COOP_TASKRUN"},
		{setupTaskrunFlag, "TASKRUN_FLAG"}, {setupSingleIssuer, "SINGLE_ISSUER"}, {setupDeferTaskrun, "DEFER_TASKRUN"},
	}
	var parts []string
	for _, n := range names {
		if f&n.bit != 0 {
			parts = append(parts, n.name)
			f &^= n.bit
		}
	}
	if f != 0 {
		parts = append(parts, fmt.Sprintf("%#x", f))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "|")
}

// setupChoices are tried in order; the first the kernel accepts wins.
// Every choice includes CQSIZE (5.5), which sluice needs.
var setupChoices = []uint32{
	setupSingleIssuer | setupDeferTaskrun | setupTaskrunFlag | setupSubmitAll, // 6.1+
	setupSingleIssuer | setupCoopTaskrun | setupTaskrunFlag | setupSubmitAll,  // 6.0
	setupCoopTaskrun | setupTaskrunFlag | setupSubmitAll,                      // 5.19
	0,
}

// CQE is one completion, laid out as struct io_uring_cqe.
type CQE struct {
	UserData uint64
	Res      int32 // result, or -errno
	Flags    uint32
}

// Ring is one io_uring instance owned by one locked OS thread. See the
// package comment for the rules; no method is safe for concurrent use.
type Ring struct {
	fd int

	ringMem []byte // SQ ring (and CQ ring when featSingleMmap)
	cqMem   []byte // CQ ring when mapped separately
	sqeMem  []byte
	scratch []byte // one page for syscall arguments that hold addresses

	sqHead    *uint32 // advanced by the kernel as it consumes SQEs
	sqTail    *uint32 // advanced by us to publish SQEs
	sqFlags   *uint32
	sqMask    uint32
	sqEntries uint32
	sqes      []sqe
	sqeTail   uint32 // next SQE to prepare; sqeTail - *sqTail are prepared but unpublished
	last      int32  // index of the last prepared, unpublished SQE, or -1

	cqHead     *uint32 // advanced by us as we consume CQEs
	cqTail     *uint32 // advanced by the kernel
	cqOverflow *uint32 // CQEs the kernel dropped
	cqMask     uint32
	cqes       []CQE

	info    Info
	buffers []span // registered buffers, by index
	files   int    // size of the registered file table
	// writevFixed: the kernel has IORING_OP_WRITEV_FIXED (probed at New).
	writevFixed bool

	submitted   uint64
	completed   uint64
	interrupted uint64 // EINTRs retried, for tests
	lost        bool   // the kernel reported dropped CQEs (EBADR); sticky
}

// span is a [start, end) address range of mmap'ed memory.
type span struct{ start, end uintptr }

func (s span) contains(p, n uintptr) bool { return p >= s.start && p <= s.end && n <= s.end-p }

// Scratch page layout: syscall arguments whose contents hold further
// addresses live here, never on the Go heap or stack.
const (
	scratchGetEvents = 0  // getEventsArg
	scratchTimespec  = 32 // kernelTimespec
	scratchFiles     = 64 // filesUpdate
	scratchFd        = 96 // int32 for filesUpdate.fds
	scratchSize      = 4096
)

// New sets up a ring. It must be called on the owner's OS thread, already
// locked with runtime.LockOSThread: with SINGLE_ISSUER that thread becomes
// the only one allowed to submit, register or reap.
func New(p Params) (*Ring, error) {
	if p.Entries == 0 || p.Entries > entriesMax {
		return nil, fmt.Errorf("uring: Entries %d out of range 1..%d", p.Entries, entriesMax)
	}
	cqEntries := p.CQEntries
	if cqEntries == 0 {
		cqEntries = 2 * p.Entries
	}
	if cqEntries < p.Entries || cqEntries > cqEntriesMax {
		return nil, fmt.Errorf("uring: CQEntries %d out of range %d..%d", cqEntries, p.Entries, cqEntriesMax)
	}

	var (
		params  setupParams
		fd      int
		refused []string
	)
	for _, choice := range setupChoices {
		params = setupParams{flags: choice | setupCQSize, cqEntries: cqEntries}
		// The kernel copies params in and out during the call; a Go
		// pointer in the call expression is kept alive and unmoved.
		r1, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(p.Entries), uintptr(unsafe.Pointer(&params)), 0)
		if errno == unix.EINVAL && choice != 0 {
			refused = append(refused, setupFlagNames(choice))
			continue
		}
		if errno != 0 {
			return nil, os.NewSyscallError("io_uring_setup", errno)
		}
		fd = int(r1)
		break
	}
	r := &Ring{fd: fd, last: -1}
	r.info = Info{SQEntries: params.sqEntries, CQEntries: params.cqEntries, SetupFlags: params.flags, Features: params.features, Refused: refused}
	if err := r.mapRings(&params); err != nil {
		r.Close()
		return nil, err
	}
	r.writevFixed = r.supports(opWritevFixed)
	return r, nil
}

func (r *Ring) mapRings(p *setupParams) error {
	sqSize := int(p.sqOff.array) + int(p.sqEntries)*4
	cqSize := int(p.cqOff.cqes) + int(p.cqEntries)*int(unsafe.Sizeof(CQE{}))
	single := p.features&featSingleMmap != 0
	if single {
		sqSize = max(sqSize, cqSize)
	}
	var err error
	const prot, flags = unix.PROT_READ | unix.PROT_WRITE, unix.MAP_SHARED | unix.MAP_POPULATE
	if r.ringMem, err = unix.Mmap(r.fd, offSQRing, sqSize, prot, flags); err != nil {
		return os.NewSyscallError("mmap sq ring", err)
	}
	cqMem := r.ringMem
	if !single {
		if r.cqMem, err = unix.Mmap(r.fd, offCQRing, cqSize, prot, flags); err != nil {
			return os.NewSyscallError("mmap cq ring", err)
		}
		cqMem = r.cqMem
	}
	if r.sqeMem, err = unix.Mmap(r.fd, offSQEs, int(p.sqEntries)*int(unsafe.Sizeof(sqe{})), prot, flags); err != nil {
		return os.NewSyscallError("mmap sqes", err)
	}
	if r.scratch, err = unix.Mmap(-1, 0, scratchSize, prot, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE); err != nil {
		return os.NewSyscallError("mmap scratch", err)
	}

	u32 := func(mem []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&mem[off])) }
	r.sqHead = u32(r.ringMem, p.sqOff.head)
	r.sqTail = u32(r.ringMem, p.sqOff.tail)
	r.sqFlags = u32(r.ringMem, p.sqOff.flags)
	r.sqMask = *u32(r.ringMem, p.sqOff.ringMask)
	r.sqEntries = *u32(r.ringMem, p.sqOff.ringEntries)
	r.sqes = unsafe.Slice((*sqe)(unsafe.Pointer(&r.sqeMem[0])), r.sqEntries)
	// The SQ index array is an indirection sluice does not need: slot i
	// always names SQE i, written once here.
	array := unsafe.Slice(u32(r.ringMem, p.sqOff.array), r.sqEntries)
	for i := range array {
		array[i] = uint32(i)
	}
	r.sqeTail = atomic.LoadUint32(r.sqTail)

	r.cqHead = u32(cqMem, p.cqOff.head)
	r.cqTail = u32(cqMem, p.cqOff.tail)
	r.cqOverflow = u32(cqMem, p.cqOff.overflow)
	r.cqMask = *u32(cqMem, p.cqOff.ringMask)
	r.cqes = unsafe.Slice((*CQE)(unsafe.Pointer(&cqMem[p.cqOff.cqes])), *u32(cqMem, p.cqOff.ringEntries))
	return nil
}

// Close releases the ring; the kernel cancels whatever is in flight. Close
// it before the slabs its operations point into. Call it on the owner
// thread, and no other method afterwards (the rings are unmapped).
func (r *Ring) Close() error {
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	for _, m := range []*[]byte{&r.scratch, &r.sqeMem, &r.cqMem, &r.ringMem} {
		if *m != nil {
			keep(unix.Munmap(*m))
			*m = nil
		}
	}
	r.sqes, r.cqes = nil, nil
	if r.fd >= 0 {
		keep(unix.Close(r.fd))
		r.fd = -1
	}
	return first
}

// Info returns what the kernel set up.
func (r *Ring) Info() Info { return r.info }

// Stats returns the number of SQEs the kernel accepted and CQEs reaped.
func (r *Ring) Stats() (submitted, completed uint64) { return r.submitted, r.completed }

// Dropped returns the kernel's count of CQEs it could not keep (only when it
// ran out of memory for its overflow list); nonzero means lost completions.
func (r *Ring) Dropped() uint32 { return atomic.LoadUint32(r.cqOverflow) }

// Submit hands every prepared SQE to the kernel without waiting and returns
// how many it accepted. With DEFER_TASKRUN it also runs pending completion
// work when the kernel flags some, so a following Reap finds it.
func (r *Ring) Submit() (int, error) { return r.submit(0, -1) }

// SubmitAndWait submits and then sleeps until at least waitNr CQEs are
// ready to Reap. A signal or a ring-level error may end the wait early;
// callers loop on Reap anyway.
func (r *Ring) SubmitAndWait(waitNr uint32) (int, error) {
	return r.submit(min(waitNr, uint32(len(r.cqes))), -1) // more could never be ready
}

// WaitTimeout submits and sleeps until at least one CQE is ready or d has
// passed (expiry is not an error). d <= 0 is Submit.
func (r *Ring) WaitTimeout(d time.Duration) (int, error) {
	if d <= 0 {
		return r.submit(0, -1)
	}
	return r.submit(1, d)
}

// submit publishes prepared SQEs and enters the kernel. timeout < 0 means
// none; with a timeout it uses IORING_ENTER_EXT_ARG (5.11).
func (r *Ring) submit(waitNr uint32, timeout time.Duration) (int, error) {
	if r.lost {
		return 0, ErrCompletionsLost
	}
	atomic.StoreUint32(r.sqTail, r.sqeTail) // release: SQE contents before the tail
	r.last = -1

	var deadline time.Time
	if timeout >= 0 {
		deadline = time.Now().Add(timeout)
	}
	total := 0
	for {
		toSubmit := r.sqeTail - atomic.LoadUint32(r.sqHead)
		var flags uint32
		if waitNr > 0 || atomic.LoadUint32(r.sqFlags)&(sqTaskrun|sqCQOverflow) != 0 {
			flags |= enterGetEvents
		}
		if toSubmit == 0 && flags == 0 {
			return total, nil
		}
		var arg, argSize uintptr
		if timeout >= 0 {
			remaining := time.Until(deadline)
			if remaining <= 0 {
				remaining = 0
			}
			ts := (*kernelTimespec)(unsafe.Pointer(&r.scratch[scratchTimespec]))
			ts.sec, ts.nsec = int64(remaining/time.Second), int64(remaining%time.Second)
			ga := (*getEventsArg)(unsafe.Pointer(&r.scratch[scratchGetEvents]))
			*ga = getEventsArg{ts: uint64(uintptr(unsafe.Pointer(ts)))}
			arg, argSize = uintptr(unsafe.Pointer(ga)), unsafe.Sizeof(*ga)
			flags |= enterExtArg
		} else {
			argSize = 8 // _NSIG/8, ignored with a nil sigmask
		}
		n, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), uintptr(waitNr), uintptr(flags), arg, argSize)
		switch errno {
		case 0:
			r.submitted += uint64(n)
			total += int(n)
			// The kernel reports the submission count even when a
			// signal cut the wait short; go back to sleep if so.
			if waitNr == 0 || r.cqReady() >= waitNr || atomic.LoadUint32(r.sqFlags)&(sqTaskrun|sqCQOverflow) != 0 {
				return total, nil
			}
			if timeout >= 0 && !time.Now().Before(deadline) {
				return total, nil
			}
		case unix.EINTR:
			r.interrupted++ // Go's preemption and GC signals land here
		case unix.ETIME:
			return total, nil
		case unix.EBUSY, unix.EAGAIN:
			return total, ErrBusy
		case unix.EBADR:
			r.lost = true
			return total, ErrCompletionsLost
		case unix.EEXIST:
			return total, ErrWrongThread
		default:
			return total, os.NewSyscallError("io_uring_enter", errno)
		}
	}
}

// cqReady is the number of CQEs in the ring, waiting for Reap.
func (r *Ring) cqReady() uint32 { return atomic.LoadUint32(r.cqTail) - atomic.LoadUint32(r.cqHead) }

// Reap appends every available CQE to dst and returns it; it allocates only
// if dst's capacity runs out (size dst to CQEntries to avoid that). When the
// kernel flags deferred completion work or overflowed CQEs it enters the
// kernel once (GETEVENTS, no wait) to bring them into the ring and reaps
// those too. It panics if used from a thread other than the owner's.
func (r *Ring) Reap(dst []CQE) []CQE {
	dst = r.drain(dst)
	for range 8 { // bounded: each round moves up to CQEntries overflowed CQEs
		if atomic.LoadUint32(r.sqFlags)&(sqTaskrun|sqCQOverflow) == 0 {
			break
		}
		_, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), 0, 0, enterGetEvents, 0, 8)
		switch errno {
		case 0, unix.ETIME, unix.EBUSY, unix.EAGAIN:
		case unix.EINTR:
			r.interrupted++
			continue
		case unix.EEXIST:
			panic(ErrWrongThread)
		case unix.EBADR:
			r.lost = true // reported as ErrCompletionsLost by every submit from now on
		default:
			panic(os.NewSyscallError("io_uring_enter (reap)", errno))
		}
		before := len(dst)
		dst = r.drain(dst)
		if len(dst) == before {
			break
		}
	}
	return dst
}

func (r *Ring) drain(dst []CQE) []CQE {
	head := atomic.LoadUint32(r.cqHead)
	tail := atomic.LoadUint32(r.cqTail) // acquire: CQE contents after the tail
	for ; head != tail; head++ {
		dst = append(dst, r.cqes[head&r.cqMask])
		r.completed++
	}
	atomic.StoreUint32(r.cqHead, head) // release the slots back to the kernel
	return dst
}
