// Package uring is sluice's io_uring: the small part of it the shards need,
// written on golang.org/x/sys/unix raw syscalls (io_uring_setup, _enter,
// _register). giouring was measured and rejected: it links on Go ≥ 1.23
// only with -ldflags=-checklinkname=0, leaves stale rw_flags in recycled
// SQEs and cannot size the CQ (DESIGN.md, "io_uring").
//
// # Ownership: one ring, one locked thread
//
// A Ring belongs to one shard, a goroutine that called runtime.LockOSThread
// before New and never unlocks. New, every Prep*, Submit*, WaitTimeout,
// Reap, Register* and Close must run on that thread; no method is safe for
// concurrent use. Only Doorbell.Ring and Slab memory are for other
// goroutines.
//
// The ring is set up with IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN |
// TASKRUN_FLAG | SUBMIT_ALL (plus CQSIZE). If the kernel answers EINVAL the
// next weaker set is tried — SINGLE_ISSUER|COOP_TASKRUN (6.0), then
// COOP_TASKRUN (5.19), then none — and Info().Refused records what was
// refused, for the start-up log. With DEFER_TASKRUN, completions of file
// I/O are task work queued to the submitting thread and posted to the CQ
// only inside io_uring_enter(IORING_ENTER_GETEVENTS): the owner must enter
// the kernel to see them. SubmitAndWait and WaitTimeout do; Submit and Reap
// do it when the kernel raises IORING_SQ_TASKRUN (or IORING_SQ_CQ_OVERFLOW),
// so a shard spinning on Submit+Reap sees completions without sleeping. An
// unlocked owner migrates between threads, and on SINGLE_ISSUER the kernel
// then refuses it (EEXIST, ErrWrongThread; Reap panics with it).
//
// # Memory rules
//
// No Go-heap or stack address is ever put in an SQE: the kernel reads and
// writes SQE buffers after the syscall returned, when the garbage collector
// may have freed them or a stack may have moved. Buffers are Slab memory
// (anonymous mmap, 4096-aligned, outside the Go heap); Prep* panics on
// anything else. Syscall arguments that themselves hold addresses
// (io_uring_getevents_arg and its timespec, io_uring_files_update) live in
// a per-ring mmap'ed scratch page. Flat arrays read during a syscall only
// (io_uring_setup params, the iovec and fd arrays of io_uring_register, the
// 8 bytes of an eventfd write) may be Go memory: the kernel copies them
// before returning, and a pointer converted to uintptr in the syscall's
// argument list is kept alive and unmoved for the call.
//
// # Submission, back-pressure and errors
//
// Prep* returns false when the SQ is full; the caller keeps the operation
// in its own bounded overflow queue and retries after the next Submit.
// io_uring_enter is retried on EINTR, which Go's preemption and GC signals
// cause; it never surfaces. EBUSY/EAGAIN (completions backed up, or no
// memory for requests) surface as ErrBusy with the SQEs still queued: Reap,
// then submit again. EBADR (the kernel dropped CQEs) is sticky as
// ErrCompletionsLost. Reap flushes the kernel's CQ overflow list.
//
// # Measured on the development VM (Linux 6.18, 2 shared vCPUs, ext4)
//
//   - SINGLE_ISSUER|DEFER_TASKRUN|TASKRUN_FLAG|SUBMIT_ALL|CQSIZE accepted
//     first time; features 0x3ffff.
//   - NOP round trip (prep, SubmitAndWait(1), Reap): 220–400 ns, 0 allocs.
//   - 4 KiB WRITE_FIXED, one in flight, into a preallocated file: 3.5–11 µs
//     buffered, 16–58 µs O_DIRECT; 0 allocs (noisy: shared cores).
//   - 50,000 NOP/fsync round trips with a goroutine forcing GC and sending
//     SIGURG to the owner thread: 74–190 EINTRs retried per run, none lost.
//   - 64 NOPs through an 8-entry CQ without reaping: no EBUSY on this
//     kernel; the overflow list is flushed by the next enter and nothing is
//     dropped.
//
// Minimum kernel: 5.11 (IORING_FEAT_EXT_ARG, for WaitTimeout), which
// Available checks.
package uring
