package tuning

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// host is the machine the tuners look at, through its root directory.
type host struct {
	root    string // "/" for the real host
	dataDir string // absolute, in the host's namespace (not joined with root)
	shards  int
}

func newHost(opts Options) (*host, error) {
	root := opts.Root
	if root == "" {
		root = "/"
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(root); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("root %s is not a directory", root)
	}
	dataDir := opts.DataDir
	if dataDir == "" {
		dataDir = "./data"
	}
	if !filepath.IsAbs(dataDir) {
		abs, err := filepath.Abs(dataDir)
		if err != nil {
			return nil, err
		}
		dataDir = abs
	}
	h := &host{root: root, dataDir: filepath.Clean(dataDir), shards: opts.Shards}
	if h.shards <= 0 {
		h.shards = runtime.NumCPU()
	}
	return h, nil
}

// fake reports whether the root is a fake tree rather than the real host.
func (h *host) fake() bool { return h.root != "/" }

// path maps a host path (/proc/sys/vm/swappiness) into the root.
func (h *host) path(p string) string {
	if !h.fake() {
		return p
	}
	return filepath.Join(h.root, p)
}

// unroot maps a path inside the root back to the host path it stands for.
func (h *host) unroot(p string) string {
	if !h.fake() {
		return p
	}
	rel, err := filepath.Rel(h.root, p)
	if err != nil || strings.HasPrefix(rel, "..") {
		return p
	}
	return "/" + rel
}

// readRaw returns a file's content exactly.
func (h *host) readRaw(p string) (string, error) {
	b, err := os.ReadFile(h.path(p))
	return string(b), err
}

// read returns a file's content with surrounding white space trimmed.
func (h *host) read(p string) (string, error) {
	s, err := h.readRaw(p)
	return strings.TrimSpace(s), err
}

func (h *host) readInt(p string) (int64, error) {
	s, err := h.read(p)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(s, 10, 64)
}

func (h *host) exists(p string) bool {
	_, err := os.Stat(h.path(p))
	return err == nil
}

func (h *host) glob(pattern string) []string {
	m, _ := filepath.Glob(h.path(pattern))
	out := make([]string, 0, len(m))
	for _, p := range m {
		out = append(out, h.unroot(p))
	}
	sort.Strings(out)
	return out
}

// selector parses a sysfs selector file ("none [mq-deadline] kyber"):
// the bracketed word and all the words. ok is false for any other content.
func selector(content string) (selected string, words []string, ok bool) {
	for _, f := range strings.Fields(content) {
		if strings.HasPrefix(f, "[") && strings.HasSuffix(f, "]") {
			f = strings.Trim(f, "[]")
			if selected != "" {
				return "", nil, false
			}
			selected = f
		}
		words = append(words, f)
	}
	return selected, words, selected != ""
}

// restoreValue is what must be written to p to bring back its current
// state: the selected word of a selector file, the raw content otherwise.
func (h *host) restoreValue(p string) (string, error) {
	raw, err := h.readRaw(p)
	if err != nil {
		return "", err
	}
	if sel, _, ok := selector(raw); ok {
		return sel, nil
	}
	return raw, nil
}

// write writes value to a kernel file. Kernel files are never created, so
// neither are fake ones; a fake selector file has its brackets moved.
func (h *host) write(p, value string) error {
	full := h.path(p)
	exact := false // a rewritten fake selector keeps its own line ending
	if h.fake() {
		raw, err := os.ReadFile(full)
		if err != nil {
			return err
		}
		if _, words, ok := selector(string(raw)); ok {
			v := strings.TrimSpace(value)
			found := false
			for _, w := range words {
				found = found || w == v
			}
			if !found {
				return &os.PathError{Op: "write", Path: full, Err: syscall.EINVAL}
			}
			value, exact = moveBrackets(string(raw), v), true
		}
	}
	if !exact && !strings.HasSuffix(value, "\n") {
		value += "\n"
	}
	f, err := os.OpenFile(full, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// moveBrackets rewrites a selector file's content with word selected,
// keeping every other byte.
func moveBrackets(content, word string) string {
	var b strings.Builder
	i := 0
	for i < len(content) {
		j := i
		for j < len(content) && content[j] != ' ' && content[j] != '\t' && content[j] != '\n' {
			j++
		}
		tok := content[i:j]
		if tok != "" {
			bare := strings.Trim(tok, "[]")
			if bare == word {
				b.WriteString("[" + bare + "]")
			} else {
				b.WriteString(bare)
			}
		}
		if j < len(content) {
			b.WriteByte(content[j])
			j++
		}
		i = j
	}
	return b.String()
}

// explain turns a write error into the reason a tuner cannot apply.
func explain(err error) string {
	switch {
	case errors.Is(err, syscall.EROFS):
		return "read-only file system (containers mount /proc/sys and /sys read-only): " + err.Error()
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return "permission denied (run as root, outside a container): " + err.Error()
	case errors.Is(err, syscall.ENOENT):
		return "not present on this kernel: " + err.Error()
	case errors.Is(err, syscall.EINVAL):
		return "the kernel refused the value: " + err.Error()
	case errors.Is(err, syscall.EIO):
		return "the kernel refused (a managed interrupt keeps the affinity the driver gave it): " + err.Error()
	}
	return err.Error()
}

// meminfo returns /proc/meminfo's value for key in bytes.
func (h *host) meminfo(key string) (int64, error) {
	f, err := os.Open(h.path("/proc/meminfo"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && strings.TrimSuffix(fields[0], ":") == key {
			n, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return 0, err
			}
			if len(fields) >= 3 && fields[2] == "kB" {
				n *= 1024
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("/proc/meminfo has no %s", key)
}

// limit is one row of /proc/self/limits; -1 stands for unlimited.
type limit struct{ soft, hard int64 }

func (h *host) limit(name string) (limit, error) {
	f, err := os.Open(h.path("/proc/self/limits"))
	if err != nil {
		return limit{}, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		fields := strings.Fields(line[len(name):])
		if len(fields) < 2 {
			break
		}
		parse := func(s string) (int64, error) {
			if s == "unlimited" {
				return -1, nil
			}
			return strconv.ParseInt(s, 10, 64)
		}
		soft, err1 := parse(fields[0])
		hard, err2 := parse(fields[1])
		if err1 != nil || err2 != nil {
			break
		}
		return limit{soft, hard}, nil
	}
	return limit{}, fmt.Errorf("/proc/self/limits has no %q row", name)
}

// capability reports whether the process has capability bit in CapEff.
func (h *host) capability(bit uint) (bool, error) {
	f, err := os.Open(h.path("/proc/self/status"))
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return false, err
			}
			return caps&(1<<bit) != 0, nil
		}
	}
	return false, errors.New("/proc/self/status has no CapEff")
}

// cpuList parses a kernel CPU list ("0-3,6").
func cpuList(s string) ([]int, error) {
	var cpus []int
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("cpu list %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return nil, fmt.Errorf("cpu list %q: %w", s, err)
			}
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

// formatCPUList writes cpus (sorted) in the kernel's list form.
func formatCPUList(cpus []int) string {
	var parts []string
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if i == j {
			parts = append(parts, strconv.Itoa(cpus[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", cpus[i], cpus[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

func (h *host) onlineCPUs() ([]int, error) {
	s, err := h.read("/sys/devices/system/cpu/online")
	if err != nil {
		return nil, err
	}
	return cpuList(s)
}

// mount is one row of /proc/self/mountinfo.
type mount struct {
	majorMinor string // "254:0"
	point      string
	fsType     string
	source     string
	options    []string // per-mount and super-block options
}

func (h *host) mounts() ([]mount, error) {
	f, err := os.Open(h.path("/proc/self/mountinfo"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mount
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, fl := range fields {
			if fl == "-" {
				sep = i
				break
			}
		}
		if sep < 6 || len(fields) < sep+3 {
			continue
		}
		m := mount{
			majorMinor: fields[2],
			point:      unescapeMount(fields[4]),
			fsType:     fields[sep+1],
			source:     fields[sep+2],
		}
		m.options = strings.Split(fields[5], ",")
		if len(fields) > sep+3 {
			m.options = append(m.options, strings.Split(fields[sep+3], ",")...)
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// existingDataDir is the data directory, or its nearest existing ancestor
// when it is not created yet, as a path inside the root.
func (h *host) existingDataDir() string {
	p := h.dataDir
	for {
		full := h.path(p)
		if st, err := os.Stat(full); err == nil && st.IsDir() {
			if !h.fake() {
				if r, err := filepath.EvalSymlinks(full); err == nil {
					return r
				}
			}
			return full
		}
		parent := filepath.Dir(p)
		if parent == p {
			return h.path("/")
		}
		p = parent
	}
}

// dataMount is the mount that holds the data directory: the longest mount
// point that is a prefix of it (the last such row wins, as mounts stack).
func (h *host) dataMount() (mount, error) {
	ms, err := h.mounts()
	if err != nil {
		return mount{}, err
	}
	dir := h.dataDir
	if !h.fake() {
		dir = h.existingDataDir()
	}
	best := -1
	for i, m := range ms {
		if !within(dir, m.point) {
			continue
		}
		if best < 0 || len(m.point) >= len(ms[best].point) {
			best = i
		}
	}
	if best < 0 {
		return mount{}, fmt.Errorf("no mount holds %s", h.dataDir)
	}
	return ms[best], nil
}

func within(p, dir string) bool {
	if dir == "/" {
		return strings.HasPrefix(p, "/")
	}
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// blockDev is a whole disk under /sys/block.
type blockDev struct {
	name string // vda, nvme0n1
	sys  string // host path of its sysfs directory
	dev  string // "254:0"
}

// dataDisks resolves the disks under the data directory: the mount's
// device, its parent disk when it is a partition, and the disks under a
// device-mapper or md device.
func (h *host) dataDisks() ([]blockDev, mount, error) {
	m, err := h.dataMount()
	if err != nil {
		return nil, m, err
	}
	var sysDir string
	if !strings.HasPrefix(m.majorMinor, "0:") {
		sysDir = h.path("/sys/dev/block/" + m.majorMinor)
	} else if strings.HasPrefix(m.source, "/dev/") {
		// btrfs and others report an anonymous device; the source names the real one.
		sysDir = h.path("/sys/class/block/" + filepath.Base(m.source))
	} else {
		return nil, m, nil
	}
	disks, err := h.disksOf(sysDir, 0)
	return disks, m, err
}

func (h *host) disksOf(sysDir string, depth int) ([]blockDev, error) {
	real, err := filepath.EvalSymlinks(sysDir)
	if err != nil {
		return nil, fmt.Errorf("block device %s: %w", h.unroot(sysDir), err)
	}
	if depth > 4 {
		return nil, fmt.Errorf("block device %s: stacked too deep", h.unroot(sysDir))
	}
	if _, err := os.Stat(filepath.Join(real, "partition")); err == nil {
		real = filepath.Dir(real)
	}
	slaves, _ := os.ReadDir(filepath.Join(real, "slaves"))
	if len(slaves) > 0 {
		var out []blockDev
		for _, s := range slaves {
			d, err := h.disksOf(filepath.Join(real, "slaves", s.Name()), depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, d...)
		}
		return out, nil
	}
	dev, _ := os.ReadFile(filepath.Join(real, "dev"))
	name := filepath.Base(real)
	sys := h.unroot(real)
	if h.exists("/sys/block/" + name) {
		sys = "/sys/block/" + name // the short name people know
	}
	return []blockDev{{name: name, sys: sys, dev: strings.TrimSpace(string(dev))}}, nil
}

// statfs reports the data directory's file system size and free bytes.
func (h *host) statfs() (total, avail uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(h.existingDataDir(), &st); err != nil {
		return 0, 0, err
	}
	return st.Blocks * uint64(st.Bsize), st.Bavail * uint64(st.Bsize), nil
}

// Disk is a whole disk under a data directory.
type Disk struct {
	Name         string // vda, nvme0n1
	Major, Minor uint32
}

// DataDisks returns the whole disks that hold dataDir on the real host:
// the disk of its partition, or the disks under a device-mapper or md
// device. It is empty when the file system has no block device (tmpfs).
func DataDisks(dataDir string) ([]Disk, error) {
	h, err := newHost(Options{Root: "/", DataDir: dataDir})
	if err != nil {
		return nil, err
	}
	devs, _, err := h.dataDisks()
	if err != nil {
		return nil, err
	}
	var out []Disk
	for _, d := range devs {
		var major, minor uint32
		if _, err := fmt.Sscanf(d.dev, "%d:%d", &major, &minor); err != nil {
			return nil, fmt.Errorf("disk %s: dev %q: %w", d.name, d.dev, err)
		}
		out = append(out, Disk{Name: d.name, Major: major, Minor: minor})
	}
	return out, nil
}

// ExistingDir is dir, or its nearest existing ancestor when it is not
// created yet, with symbolic links resolved.
func ExistingDir(dir string) (string, error) {
	h, err := newHost(Options{Root: "/", DataDir: dir})
	if err != nil {
		return "", err
	}
	return h.existingDataDir(), nil
}
