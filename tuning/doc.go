// Package tuning checks, applies and reverts the host settings a streaming
// broker depends on: sysctls, process limits, the data device's queue
// settings, transparent huge pages, the CPU governor, IRQ affinity, the clock
// source, swap and the data directory's file system.
//
// Every tuner reads the host through one root directory. "/" is the real
// host; any other directory is a fake tree laid out like it
// (ROOT/proc/sys/vm/swappiness stands for /proc/sys/vm/swappiness), which is
// how the tests run every tuner without touching the machine. In a fake tree
// files behave as plain files, except where the kernel's files do not:
// a write to a selector file such as
//
//	ROOT/sys/block/vda/queue/scheduler   "[mq-deadline] none\n"
//
// moves the brackets ("mq-deadline [none]\n") the way sysfs does, so an
// apply followed by a revert leaves a fake tree byte-identical.
//
// Check is pure reading. Apply first plans (which files get which values),
// then writes, recording every previous value in a state file before moving
// on; Revert walks that record backwards and writes each previous value
// that is not already in place:
//
//	state file (JSON)
//	{"version":1,"changes":[
//	  {"tuner":"vm.swappiness","kind":"value","path":"/proc/sys/vm/swappiness",
//	   "previous":"60\n","applied":"1"},
//	  {"tuner":"persist","kind":"file","path":"/etc/sysctl.d/60-sluice.conf","existed":false},
//	  {"tuner":"persist","kind":"dir","path":"/etc/sysctl.d"}]}
//
// "Already in place" matters where one kernel file changes another: writing
// vm.dirty_background_bytes zeroes vm.dirty_background_ratio, and the
// kernel refuses a 0 written back to the _bytes file, so revert restores the
// ratio (which zeroes the bytes again) and skips the bytes file.
//
// The eBPF probes live in tuning/probe.
package tuning
