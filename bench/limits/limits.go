// Package limits measures the physical limits a broker on this machine works
// against, in the same run as the brokers, so a report can show each
// broker's throughput as a fraction of the limit that bounds it:
//
//   - sequential write bandwidth of the data directory's filesystem, buffered
//     (into the page cache: the bound of page-cache acknowledgement) and with
//     fdatasync after every 1 MiB write (the bound of fsync-before-ack), plus
//     the latency of a 4 KiB write + fdatasync, all with fio;
//   - loopback TCP bandwidth (one Go stream, 1 MiB writes), the bound of any
//     client-to-broker transfer here;
//   - memory copy bandwidth (Go copy of 64 MiB buffers), the bound of any
//     byte that passes through user space.
package limits

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Limits are the machine's measured limits. Bandwidths are MiB/s (2^20
// bytes per second); zero means not measured (see Errors).
type Limits struct {
	Dir        string `json:"dir"`
	Filesystem string `json:"filesystem,omitempty"`

	DiskBufferedMiBps float64 `json:"disk_buffered_mib_s"`
	DiskFsyncMiBps    float64 `json:"disk_fsync_1m_mib_s"`
	Fsync4KIOPS       float64 `json:"fsync_4k_iops"`
	Fsync4KP50Micros  float64 `json:"fsync_4k_p50_us"`
	Fsync4KP99Micros  float64 `json:"fsync_4k_p99_us"`
	LoopbackTCPMiBps  float64 `json:"loopback_tcp_mib_s"`
	MemcpyMiBps       float64 `json:"memcpy_mib_s"`

	FioVersion string   `json:"fio_version,omitempty"`
	Commands   []string `json:"commands"`
	Errors     []string `json:"errors,omitempty"`
}

// Options scale the measurements.
type Options struct {
	// BufferedSize is how much the buffered fio job writes (default 1 GiB;
	// it must fit in the page cache to measure the page cache).
	BufferedSize string
	// FsyncRuntime bounds each fsync job (default 8 s).
	FsyncRuntime time.Duration
	// NetDuration and MemDuration bound the TCP and memcpy tests (default 3 s, 2 s).
	NetDuration, MemDuration time.Duration
}

func (o *Options) defaults() {
	if o.BufferedSize == "" {
		o.BufferedSize = "1G"
	}
	if o.FsyncRuntime <= 0 {
		o.FsyncRuntime = 8 * time.Second
	}
	if o.NetDuration <= 0 {
		o.NetDuration = 3 * time.Second
	}
	if o.MemDuration <= 0 {
		o.MemDuration = 2 * time.Second
	}
}

// Measure runs every measurement. Disk tests write into a fresh
// subdirectory of dir (removed afterwards), so they see the filesystem the
// brokers' data directories are on. A measurement that cannot run (no fio)
// is recorded in Errors and the others still run.
func Measure(ctx context.Context, dir string, opt Options) *Limits {
	opt.defaults()
	l := &Limits{Dir: dir}
	l.Filesystem = filesystemOf(dir)
	work, err := os.MkdirTemp(dir, "limits-")
	if err != nil {
		l.Errors = append(l.Errors, "disk: "+err.Error())
	} else {
		defer os.RemoveAll(work)
		l.measureDisk(ctx, work, opt)
	}
	if v, err := loopbackTCP(opt.NetDuration); err != nil {
		l.Errors = append(l.Errors, "loopback tcp: "+err.Error())
	} else {
		l.LoopbackTCPMiBps = v
	}
	l.Commands = append(l.Commands, fmt.Sprintf("loopback TCP: one Go stream 127.0.0.1, 1 MiB writes, %s", opt.NetDuration))
	l.MemcpyMiBps = memcpy(opt.MemDuration)
	l.Commands = append(l.Commands, fmt.Sprintf("memcpy: Go copy() between two 64 MiB buffers, one goroutine, %s", opt.MemDuration))
	return l
}

func (l *Limits) measureDisk(ctx context.Context, work string, opt Options) {
	if _, err := exec.LookPath("fio"); err != nil {
		l.Errors = append(l.Errors, "fio not found (apt-get install -y fio): disk limits not measured")
		return
	}
	if out, err := exec.Command("fio", "--version").Output(); err == nil {
		l.FioVersion = strings.TrimSpace(string(out))
	}
	runtime := fmt.Sprintf("%ds", int(opt.FsyncRuntime.Seconds()))
	jobs := []struct {
		name string
		args []string
		use  func(fioJob)
	}{
		{"buffered", []string{"--rw=write", "--bs=1M", "--size=" + opt.BufferedSize, "--ioengine=psync", "--end_fsync=0"},
			func(j fioJob) { l.DiskBufferedMiBps = j.Write.BWBytes / (1 << 20) }},
		{"fsync-1m", []string{"--rw=write", "--bs=1M", "--size=2G", "--ioengine=psync", "--fdatasync=1", "--runtime=" + runtime},
			func(j fioJob) { l.DiskFsyncMiBps = j.Write.BWBytes / (1 << 20) }},
		{"fsync-4k", []string{"--rw=write", "--bs=4k", "--size=256M", "--ioengine=psync", "--fdatasync=1", "--runtime=" + runtime},
			func(j fioJob) {
				l.Fsync4KIOPS = j.Write.IOPS
				l.Fsync4KP50Micros = j.Sync.Lat.Percentile["50.000000"] / 1000
				l.Fsync4KP99Micros = j.Sync.Lat.Percentile["99.000000"] / 1000
			}},
	}
	for _, job := range jobs {
		args := append([]string{"--name=" + job.name, "--directory=" + work, "--output-format=json"}, job.args...)
		l.Commands = append(l.Commands, "fio "+strings.Join(args, " "))
		out, err := exec.CommandContext(ctx, "fio", args...).Output()
		if err != nil {
			l.Errors = append(l.Errors, fmt.Sprintf("fio %s: %v", job.name, err))
			continue
		}
		var res fioOutput
		if err := json.Unmarshal(out, &res); err != nil || len(res.Jobs) == 0 {
			l.Errors = append(l.Errors, fmt.Sprintf("fio %s: unreadable output: %v", job.name, err))
			continue
		}
		job.use(res.Jobs[0])
		files, _ := filepath.Glob(filepath.Join(work, job.name+".*"))
		for _, f := range files {
			os.Remove(f)
		}
	}
}

type fioOutput struct {
	Jobs []fioJob `json:"jobs"`
}

type fioJob struct {
	Write struct {
		BWBytes float64 `json:"bw_bytes"`
		IOPS    float64 `json:"iops"`
	} `json:"write"`
	Sync struct {
		Lat struct {
			Percentile map[string]float64 `json:"percentile"`
		} `json:"lat_ns"`
	} `json:"sync"`
}

// filesystemOf names the filesystem type and device under dir, from
// /proc/self/mounts (the longest mount point that prefixes dir).
func filesystemOf(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	data, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return ""
	}
	best, bestLen := "", -1
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		mp := f[1]
		if (abs == mp || strings.HasPrefix(abs, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > bestLen {
			best, bestLen = fmt.Sprintf("%s on %s (%s)", f[2], f[0], mp), len(mp)
		}
	}
	return best
}

// loopbackTCP streams 1 MiB writes over one loopback connection for d and
// returns the receive rate in MiB/s.
func loopbackTCP(d time.Duration) (float64, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	type result struct {
		n   int64
		err error
	}
	got := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		n, err := io.CopyBuffer(io.Discard, c, make([]byte, 1<<20))
		got <- result{n, err}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 1<<20)
	start := time.Now()
	deadline := start.Add(d)
	for time.Now().Before(deadline) {
		if _, err := c.Write(buf); err != nil {
			c.Close()
			return 0, err
		}
	}
	c.Close()
	r := <-got
	elapsed := time.Since(start)
	if r.err != nil && !errors.Is(r.err, io.EOF) {
		return 0, r.err
	}
	return float64(r.n) / elapsed.Seconds() / (1 << 20), nil
}

// memcpy copies between two 64 MiB buffers (well beyond the caches) for d
// and returns MiB copied per second.
func memcpy(d time.Duration) float64 {
	const size = 64 << 20
	a, b := make([]byte, size), make([]byte, size)
	for i := range a {
		a[i] = byte(i)
	}
	copy(b, a) // fault the pages in before timing
	var n int64
	start := time.Now()
	for time.Since(start) < d {
		copy(b, a)
		a, b = b, a
		n += size
	}
	return float64(n) / time.Since(start).Seconds() / (1 << 20)
}
