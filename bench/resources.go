package bench

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicksPerSecond is USER_HZ, the unit of /proc CPU times. It is 100 on
// every Linux architecture Go supports outside exotic kernels.
const clockTicksPerSecond = 100

// ProcessUsage is a cumulative CPU and current memory reading of a process.
type ProcessUsage struct {
	CPU      time.Duration // user + system, cumulative
	RSSBytes int64
}

// ReadProcess reads /proc/PID/stat and /proc/PID/statm.
func ReadProcess(pid int) (ProcessUsage, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcessUsage{}, err
	}
	// The command name (field 2) may hold spaces and parentheses: the fields
	// we want are counted from the last ')'.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ProcessUsage{}, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return ProcessUsage{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseUint(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return ProcessUsage{}, fmt.Errorf("/proc/%d/stat: bad cpu times", pid)
	}
	statm, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid))
	if err != nil {
		return ProcessUsage{}, err
	}
	mf := strings.Fields(string(statm))
	if len(mf) < 2 {
		return ProcessUsage{}, fmt.Errorf("/proc/%d/statm: malformed", pid)
	}
	pages, err := strconv.ParseInt(mf[1], 10, 64)
	if err != nil {
		return ProcessUsage{}, fmt.Errorf("/proc/%d/statm: %w", pid, err)
	}
	return ProcessUsage{
		CPU:      time.Duration(utime+stime) * time.Second / clockTicksPerSecond,
		RSSBytes: pages * int64(os.Getpagesize()),
	}, nil
}

// SelfCPU is this process's cumulative user + system CPU time, from
// getrusage (finer than /proc's ticks).
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// MachineCPU is a cumulative reading of the first line of /proc/stat.
type MachineCPU struct {
	Busy, Total uint64 // clock ticks
	// Steal is the part of Busy the hypervisor gave to other guests while
	// this one's CPUs wanted to run (a virtual machine's "steal" time).
	Steal uint64
}

// ReadMachineCPU reads /proc/stat.
func ReadMachineCPU() (MachineCPU, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return MachineCPU{}, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return MachineCPU{}, fmt.Errorf("/proc/stat: empty")
	}
	return parseMachineCPU(sc.Text())
}

// parseMachineCPU reads the "cpu" line of /proc/stat: user nice system
// idle iowait irq softirq steal (guest, guest_nice are inside user).
func parseMachineCPU(line string) (MachineCPU, error) {
	fields := strings.Fields(line)
	if len(fields) < 5 || fields[0] != "cpu" {
		return MachineCPU{}, fmt.Errorf("/proc/stat: unexpected first line")
	}
	var m MachineCPU
	for i, v := range fields[1:] {
		if i >= 8 { // guest time is already inside user
			break
		}
		n, _ := strconv.ParseUint(v, 10, 64)
		m.Total += n
		if i != 3 && i != 4 { // idle, iowait
			m.Busy += n
		}
		if i == 7 {
			m.Steal = n
		}
	}
	return m, nil
}

// BusyFraction is the fraction of all CPUs busy between two readings.
func (m MachineCPU) BusyFraction(since MachineCPU) float64 {
	total := m.Total - since.Total
	if total == 0 {
		return 0
	}
	return float64(m.Busy-since.Busy) / float64(total)
}

// StealFraction is the fraction of all CPUs stolen by the hypervisor
// between two readings.
func (m MachineCPU) StealFraction(since MachineCPU) float64 {
	total := m.Total - since.Total
	if total == 0 {
		return 0
	}
	return float64(m.Steal-since.Steal) / float64(total)
}

// FindListenerPID returns the process that listens on TCP port (any local
// address), by matching the socket inode from /proc/net/tcp{,6} against the
// file descriptors of every process. Needs permission to read other
// processes' fd tables (root, or the same user).
func FindListenerPID(port int) (int, error) {
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, portHex, ok := strings.Cut(f[1], ":")
			if !ok {
				continue
			}
			if p, err := strconv.ParseUint(portHex, 16, 32); err == nil && int(p) == port {
				inodes["socket:["+f[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("nothing listens on port %d", port)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		fds, err := os.ReadDir(p + "/fd")
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if link, err := os.Readlink(p + "/fd/" + fd.Name()); err == nil && inodes[link] {
				pid, _ := strconv.Atoi(filepath.Base(p))
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("a socket listens on port %d but no visible process owns it (not root?)", port)
}

// resourceSampler turns cumulative readings into per-interval rates.
type resourceSampler struct {
	brokerPID  int
	lastBroker ProcessUsage
	brokerErr  error
	lastSelf   time.Duration
	lastCPU    MachineCPU
	lastAt     time.Time
}

func newResourceSampler(brokerPID int) *resourceSampler {
	s := &resourceSampler{brokerPID: brokerPID, lastAt: time.Now(), lastSelf: SelfCPU()}
	s.lastCPU, _ = ReadMachineCPU()
	if brokerPID > 0 {
		s.lastBroker, s.brokerErr = ReadProcess(brokerPID)
	}
	return s
}

// resourceReading is one interval's resource use. CPU figures are in cores
// (1.0 = one CPU fully busy); MachineBusy is a fraction of all CPUs.
type resourceReading struct {
	BrokerCPU   float64
	BrokerRSS   int64
	ClientCPU   float64
	MachineBusy float64
	Steal       float64 // fraction of all CPUs, part of MachineBusy
	BrokerOK    bool
}

func (s *resourceSampler) sample() resourceReading {
	now := time.Now()
	elapsed := now.Sub(s.lastAt).Seconds()
	s.lastAt = now
	var r resourceReading
	if elapsed <= 0 {
		return r
	}
	self := SelfCPU()
	r.ClientCPU = (self - s.lastSelf).Seconds() / elapsed
	s.lastSelf = self
	if m, err := ReadMachineCPU(); err == nil {
		r.MachineBusy = m.BusyFraction(s.lastCPU)
		r.Steal = m.StealFraction(s.lastCPU)
		s.lastCPU = m
	}
	if s.brokerPID > 0 && s.brokerErr == nil {
		u, err := ReadProcess(s.brokerPID)
		if err != nil {
			s.brokerErr = err
		} else {
			r.BrokerCPU = (u.CPU - s.lastBroker.CPU).Seconds() / elapsed
			r.BrokerRSS = u.RSSBytes
			r.BrokerOK = true
			s.lastBroker = u
		}
	}
	return r
}
