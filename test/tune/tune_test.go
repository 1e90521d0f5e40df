// Package tune tests `sluice tune` through the real binary: check on this
// host, apply and revert on a fake tree, and trace with and without the
// privileges eBPF needs. SLUICE_BIN names the binary (default bin/sluice,
// built here when missing).
package tune

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

var binary string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	binary = os.Getenv("SLUICE_BIN")
	if binary == "" {
		binary = "../../bin/sluice"
	}
	if _, err := os.Stat(binary); err != nil {
		dir, err := os.MkdirTemp("", "sluice-tune-bin-")
		if err != nil {
			panic(err)
		}
		defer os.RemoveAll(dir)
		binary = filepath.Join(dir, "sluice")
		build := exec.Command("go", "build", "-o", binary, "../../cmd/sluice")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			panic("building sluice: " + err.Error())
		}
	}
	abs, err := filepath.Abs(binary)
	if err != nil {
		panic(err)
	}
	binary = abs
	return m.Run()
}

// sluice runs the binary and returns its output and exit status.
func sluice(t *testing.T, cred *syscall.Credential, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &exit):
		return out.String(), exit.ExitCode()
	}
	t.Fatalf("sluice %v: %v", args, err)
	return "", -1
}

// TestCheckThisHost runs check on the machine the suite runs on: whatever
// its settings, the command must work (exit 0: nothing off, 1: something
// off) and report every tuner.
func TestCheckThisHost(t *testing.T) {
	dir := t.TempDir()
	out, code := sluice(t, nil, "tune", "check", "--data-dir", dir)
	t.Logf("exit %d\n%s", code, out)
	if code != 0 && code != 1 {
		t.Fatalf("tune check: exit %d", code)
	}
	if !strings.Contains(out, "checks:") || !strings.Contains(out, "why:") {
		t.Errorf("report incomplete:\n%s", out)
	}
	names, code := sluice(t, nil, "tune", "list")
	if code != 0 {
		t.Fatalf("tune list: exit %d", code)
	}
	js, code2 := sluice(t, nil, "tune", "check", "--json", "--data-dir", dir)
	if code2 != code && code2 > 1 {
		t.Fatalf("check --json: exit %d", code2)
	}
	var findings []struct {
		Name, Status, Current, Recommended, Reason string
		Matters                                    bool
	}
	if err := json.Unmarshal([]byte(js), &findings); err != nil {
		t.Fatalf("check --json is not JSON: %v\n%s", err, js)
	}
	seen := map[string]bool{}
	anyOff := false
	for _, f := range findings {
		seen[f.Name] = true
		anyOff = anyOff || f.Status == "off"
	}
	for _, n := range strings.Fields(names) {
		if !seen[n] {
			t.Errorf("tuner %s missing from --json", n)
		}
	}
	if wantCode := map[bool]int{false: 0, true: 1}[anyOff]; code2 != wantCode {
		t.Errorf("exit %d with off=%v, want %d", code2, anyOff, wantCode)
	}
}

// TestApplyRevertFakeTree drives apply, --dry-run and revert through the
// binary on a small fake tree and compares it byte for byte.
func TestApplyRevertFakeTree(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"proc/sys/vm/swappiness":                      "60\n",
		"proc/sys/net/core/somaxconn":                 "128\n",
		"proc/sys/net/ipv4/tcp_wmem":                  "4096\t16384\t4194304\n",
		"proc/swaps":                                  "Filename\tType\tSize\tUsed\tPriority\n/swapfile file 1048572 0 -2\n",
		"proc/self/mountinfo":                         "22 1 8:1 / / rw,noatime - ext4 /dev/sda1 rw\n",
		"sys/devices/pci0000:00/sda/dev":              "8:0\n",
		"sys/devices/pci0000:00/sda/sda1/partition":   "1\n",
		"sys/devices/pci0000:00/sda/sda1/dev":         "8:1\n",
		"sys/devices/pci0000:00/sda/queue/scheduler":  "[mq-deadline] kyber bfq none\n",
		"sys/devices/pci0000:00/sda/queue/rotational": "0\n",
		"sys/kernel/mm/transparent_hugepage/enabled":  "[always] madvise never\n",
	}
	for name, content := range files {
		p := filepath.Join(root, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(root, "sys/dev/block"), 0o755)
	os.Symlink("../../devices/pci0000:00/sda/sda1", filepath.Join(root, "sys/dev/block/8:1"))
	os.MkdirAll(filepath.Join(root, "sys/block"), 0o755)
	os.Symlink("../devices/pci0000:00/sda", filepath.Join(root, "sys/block/sda"))
	os.MkdirAll(filepath.Join(root, "srv/sluice"), 0o755)
	before := snapshot(t, root)
	common := []string{"--root", root, "--data-dir", "/srv/sluice"}

	out, code := sluice(t, nil, append([]string{"tune", "apply", "--dry-run"}, common...)...)
	t.Logf("apply --dry-run: exit %d\n%s", code, out)
	if !strings.Contains(out, "would change  vm.swappiness: /proc/sys/vm/swappiness = 1 (now 60)") {
		t.Errorf("dry run does not show the swappiness change:\n%s", out)
	}
	if d := diff(before, snapshot(t, root)); d != "" {
		t.Fatalf("--dry-run changed the tree:\n%s", d)
	}

	out, code = sluice(t, nil, append([]string{"tune", "apply"}, common...)...)
	t.Logf("apply: exit %d\n%s", code, out)
	for _, want := range []string{
		"changed       vm.swappiness: /proc/sys/vm/swappiness = 1 (was 60)",
		"changed       block.scheduler (sda): /sys/block/sda/queue/scheduler = none (was mq-deadline)",
		"changed       transparent_hugepage",
		"cannot        RLIMIT_NOFILE",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("apply output lacks %q", want)
		}
	}
	if code != 1 {
		t.Errorf("apply with tuners that cannot apply: exit %d, want 1", code)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "sys/devices/pci0000:00/sda/queue/scheduler")); string(b) != "mq-deadline kyber bfq [none]\n" {
		t.Errorf("scheduler after apply: %q", b)
	}
	out, code = sluice(t, nil, append([]string{"tune", "check"}, common...)...)
	if strings.Contains(out, "off     vm.swappiness") {
		t.Errorf("swappiness still off after apply:\n%s", out)
	}

	out, code = sluice(t, nil, "tune", "revert", "--root", root)
	t.Logf("revert: exit %d\n%s", code, out)
	if code != 0 {
		t.Errorf("revert: exit %d", code)
	}
	if d := diff(before, snapshot(t, root)); d != "" {
		t.Errorf("tree differs after apply and revert:\n%s", d)
	}
	if _, code = sluice(t, nil, "tune", "apply", "--root", root, "--only", "no.such.tuner"); code != 2 {
		t.Errorf("unknown --only: exit %d, want 2", code)
	}
}

// TestTraceWithoutPrivileges runs trace as an unprivileged user: it must
// say what is missing and exit 0.
func TestTraceWithoutPrivileges(t *testing.T) {
	if os.Geteuid() != 0 {
		out, code := sluice(t, nil, "tune", "trace", "--duration", "100ms")
		assertUnavailable(t, out, code)
		return
	}
	// Copy the binary where user nobody may run it.
	dir, err := os.MkdirTemp("", "sluice-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	b, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "sluice")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "tune", "trace", "--duration", "100ms", "--data-dir", dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	assertUnavailable(t, string(out), code)
}

func assertUnavailable(t *testing.T, out string, code int) {
	t.Helper()
	t.Logf("exit %d\n%s", code, out)
	if code != 0 || !strings.Contains(out, "missing") || !strings.Contains(out, "privileges") {
		t.Errorf("unprivileged trace: exit %d, want 0 and the missing privileges named:\n%s", code, out)
	}
}

// TestTraceSeesBlockIO runs trace as root while writing and fsyncing a file
// next to the test: the block histogram must show writes. It skips with
// trace's own reason where the probes cannot run.
func TestTraceSeesBlockIO(t *testing.T) {
	dir, err := os.MkdirTemp(".", "trace-")
	if err != nil {
		t.Fatal(err)
	}
	dir, _ = filepath.Abs(dir)
	defer os.RemoveAll(dir)
	cmd := exec.Command(binary, "tune", "trace", "--duration", "2s", "--data-dir", dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		f, err := os.Create(filepath.Join(dir, "segment.log"))
		if err != nil {
			t.Fatal(err)
		}
		f.Write(bytes.Repeat([]byte{'x'}, 256<<10))
		f.Sync()
		f.Close()
		time.Sleep(50 * time.Millisecond) // pacing the writer, not waiting for a condition
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("trace: %v\n%s", err, out.String())
	}
	t.Logf("\n%s", out.String())
	if strings.Contains(out.String(), "unavailable") {
		t.Skipf("skipping: %s", out.String())
	}
	if !strings.Contains(out.String(), "write:") {
		t.Errorf("trace saw no block writes:\n%s", out.String())
	}
}

func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out[rel] = "link " + target
		case d.IsDir():
			out[rel] = "dir"
		default:
			b, _ := os.ReadFile(p)
			out[rel] = string(b)
		}
		return nil
	})
	return out
}

func diff(a, b map[string]string) string {
	var d []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			d = append(d, "removed "+k)
		} else if v != w {
			d = append(d, "changed "+k+": "+v+" -> "+w)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			d = append(d, "added "+k)
		}
	}
	return strings.Join(d, "\n")
}
