package powerloss

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The guest: a Debian kernel, an initramfs of busybox, the kernel modules
// for virtio and the file system, and bin/sluice, which init runs as the
// only process with its data directory on the virtio disk. Clients reach
// it through qemu's user-mode network on a forwarded loopback port. A
// "power cut" is SIGKILL to qemu: the guest's page cache, and whatever the
// guest had not yet flushed to its virtual disk, are gone; what it flushed
// is in the image file on the host.

// guestModules are the modules init loads, with their dependencies.
var guestModules = []string{"virtio_pci", "virtio_blk", "virtio_net", "crc32c_generic", "ext4", "xfs"}

// kernel finds a kernel image and its module tree on this machine.
func kernel(t *testing.T) (vmlinuz, modules string) {
	t.Helper()
	images, _ := filepath.Glob("/boot/vmlinuz-*")
	sort.Strings(images)
	for i := len(images) - 1; i >= 0; i-- {
		version := strings.TrimPrefix(filepath.Base(images[i]), "vmlinuz-")
		dir := filepath.Join("/lib/modules", version)
		if _, err := os.Stat(filepath.Join(dir, "modules.dep")); err == nil {
			return images[i], dir
		}
	}
	need(t, false, "a kernel in /boot with its modules", "apt-get install linux-image-amd64")
	return "", ""
}

// moduleOrder returns the module files (relative to the module tree) to
// insmod, dependencies first.
func moduleOrder(t *testing.T, modDir string, names []string) []string {
	t.Helper()
	dep, err := os.ReadFile(filepath.Join(modDir, "modules.dep"))
	if err != nil {
		t.Fatal(err)
	}
	deps := map[string][]string{} // file -> its dependencies
	byName := map[string]string{} // module name -> file
	for _, line := range strings.Split(string(dep), "\n") {
		file, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		deps[file] = strings.Fields(rest)
		name := strings.TrimSuffix(filepath.Base(file), ".ko")
		byName[strings.ReplaceAll(name, "-", "_")] = file
	}
	var order []string
	seen := map[string]bool{}
	var visit func(file string)
	visit = func(file string) {
		if seen[file] {
			return
		}
		seen[file] = true
		// modules.dep lists every dependency, nearest last: load them
		// from the far end.
		for i := len(deps[file]) - 1; i >= 0; i-- {
			visit(deps[file][i])
		}
		order = append(order, file)
	}
	for _, n := range names {
		file, ok := byName[n]
		if !ok {
			continue // built into this kernel
		}
		visit(file)
	}
	return order
}

// initScript is the guest's /init. Its settings come on the kernel
// command line (sluice.fs, sluice.port, sluice.mode).
func initScript(modules []string) string {
	var b strings.Builder
	b.WriteString(`#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    sluice.fs=*) FS="${arg#sluice.fs=}" ;;
    sluice.port=*) PORT="${arg#sluice.port=}" ;;
    sluice.mode=*) MODE="${arg#sluice.mode=}" ;;
  esac
done
`)
	for _, m := range modules {
		fmt.Fprintf(&b, "insmod /modules/%s\n", filepath.Base(m))
	}
	b.WriteString(`i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
mkdir -p /data
mount -t "$FS" /dev/vda /data || { echo "sluice-guest: cannot mount /dev/vda as $FS"; poweroff -f; }
echo "sluice-guest: starting sluice ($MODE mode on $FS)"
/sluice serve --data-dir /data --listen 0.0.0.0:9092 --advertise 127.0.0.1:$PORT --http "" \
  --io-mode "$MODE" --tail-cache-bytes 33554432 --shards 2
echo "sluice-guest: sluice exited with $?"
poweroff -f
`)
	return b.String()
}

// buildInitramfs writes the guest's initramfs (a newc cpio archive) to
// path.
func buildInitramfs(t *testing.T, path, sluice, modDir string) {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	need(t, err == nil, "busybox", "apt-get install busybox-static")
	if out, _ := exec.Command("file", "-L", bb).Output(); len(out) > 0 && !bytes.Contains(out, []byte("statically linked")) && !bytes.Contains(out, []byte("static-pie")) {
		need(t, false, "a statically linked busybox", "apt-get install busybox-static")
	}
	modules := moduleOrder(t, modDir, guestModules)
	w := newCPIO()
	for _, d := range []string{"bin", "proc", "sys", "dev", "modules", "data"} {
		w.dir(d)
	}
	w.fileFrom(t, "bin/busybox", bb, 0o755)
	w.file("init", []byte(initScript(modules)), 0o755)
	w.fileFrom(t, "sluice", sluice, 0o755)
	for _, m := range modules {
		w.fileFrom(t, "modules/"+filepath.Base(m), filepath.Join(modDir, m), 0o644)
	}
	if err := os.WriteFile(path, w.close(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// cpio writes a newc ("070701") archive.
type cpio struct {
	buf bytes.Buffer
	ino uint32
}

func newCPIO() *cpio { return &cpio{ino: 1} }

func (c *cpio) entry(name string, mode uint32, data []byte) {
	c.ino++
	fmt.Fprintf(&c.buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	c.buf.WriteString(name)
	c.buf.WriteByte(0)
	c.pad()
	c.buf.Write(data)
	c.pad()
}

func (c *cpio) pad() {
	for c.buf.Len()%4 != 0 {
		c.buf.WriteByte(0)
	}
}

func (c *cpio) dir(name string)                            { c.entry(name, syscall.S_IFDIR|0o755, nil) }
func (c *cpio) file(name string, data []byte, perm uint32) { c.entry(name, syscall.S_IFREG|perm, data) }

func (c *cpio) fileFrom(t *testing.T, name, src string, perm uint32) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	c.file(name, data, perm)
}

func (c *cpio) close() []byte {
	c.entry("TRAILER!!!", 0, nil)
	return c.buf.Bytes()
}

// guest is one boot of the VM.
type guest struct {
	cmd     *exec.Cmd
	port    int
	console string
	exited  chan error
}

// boot starts the VM on disk and waits until sluice answers ApiVersions.
func boot(t *testing.T, vmlinuz, initrd, disk, fs, mode, console string) *guest {
	t.Helper()
	port := freePort(t)
	g := &guest{port: port, console: console, exited: make(chan error, 1)}
	cmdline := fmt.Sprintf("console=ttyS0 panic=-1 quiet sluice.fs=%s sluice.port=%d sluice.mode=%s", fs, port, mode)
	args := []string{"-enable-kvm", "-cpu", "host"}
	if accel(t) == "tcg" {
		args = []string{"-accel", "tcg,thread=multi", "-cpu", "max"}
	}
	g.cmd = exec.Command("qemu-system-x86_64", append(args,
		"-smp", "2", "-m", "1024",
		"-display", "none", "-no-reboot", "-nodefaults",
		"-serial", "file:"+console,
		"-kernel", vmlinuz, "-initrd", initrd, "-append", cmdline,
		"-drive", "file="+disk+",if=virtio,format=raw,cache=writeback",
		"-netdev", fmt.Sprintf("user,id=n0,hostfwd=tcp:127.0.0.1:%d-:9092", port),
		"-device", "virtio-net-pci,netdev=n0",
	)...)
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := g.cmd.Start(); err != nil {
		t.Fatalf("starting qemu: %v", err)
	}
	go func() { g.exited <- g.cmd.Wait() }()
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case err := <-g.exited:
			t.Fatalf("the guest stopped while booting (%v); console:\n%s", err, tail(console, 40))
		default:
		}
		if apiVersions(fmt.Sprintf("127.0.0.1:%d", port)) == nil {
			return g
		}
		if time.Now().After(deadline) {
			g.kill()
			t.Fatalf("sluice in the guest did not answer within 90 s; console:\n%s", tail(console, 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kill cuts the power: SIGKILL to qemu, and waits for it to be gone.
func (g *guest) kill() {
	g.cmd.Process.Kill()
	<-g.exited
}

func (g *guest) addr() string { return fmt.Sprintf("127.0.0.1:%d", g.port) }

// apiVersions sends one ApiVersions v0 request and waits for an answer.
func apiVersions(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	// size, api key 18, version 0, correlation id 1, client id "p"
	req := []byte{0, 0, 0, 11, 0, 18, 0, 0, 0, 0, 0, 1, 0, 1, 'p'}
	if _, err := c.Write(req); err != nil {
		return err
	}
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		return err
	}
	if binary.BigEndian.Uint32(size[:]) < 4 {
		return errors.New("short ApiVersions answer")
	}
	return nil
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// need skips the test when something it needs is missing, or fails it in
// CI, where .ci/install-deps should have installed it.
func need(t *testing.T, ok bool, what, fix string) {
	t.Helper()
	if ok {
		return
	}
	if v := os.Getenv("CI"); v != "" && v != "false" && v != "0" {
		t.Fatalf("%s is missing (%s); CI=true, so .ci/install-deps should have installed it", what, fix)
	}
	t.Skipf("%s is missing (%s)", what, fix)
}

// accel is how qemu runs the guest: KVM where it can boot a stock kernel,
// else qemu's own emulation (TCG, about ten times slower here; the test
// produces less but cuts the same way). POWER_ACCEL=kvm or tcg chooses.
// A host whose /dev/kvm is PVM (the kvm_pvm module: these sandboxes) runs
// only kernels built as PVM guests, and Debian ships none: the stock
// kernel hangs before its first line, so TCG it is.
func accel(t *testing.T) string {
	switch a := os.Getenv("POWER_ACCEL"); a {
	case "kvm", "tcg":
		return a
	}
	if _, err := os.Stat("/sys/module/kvm_pvm"); err == nil {
		return "tcg"
	}
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err == nil {
		f.Close()
		return "kvm"
	}
	return "tcg"
}

// requireGuest skips without what a guest needs.
func requireGuest(t *testing.T) {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Skip("the power-loss guest is built for x86-64")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: the kernel image in /boot is readable by root only")
	}
	_, err := exec.LookPath("qemu-system-x86_64")
	need(t, err == nil, "qemu-system-x86_64", "apt-get install qemu-system-x86")
}
