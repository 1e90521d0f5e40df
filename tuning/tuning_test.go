package tuning

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func fakeOptions(root string) Options {
	return Options{Root: root, DataDir: "/var/lib/sluice/data", Shards: 2}
}

func findingsByKey(fs []Finding) map[string]Finding {
	out := map[string]Finding{}
	for _, f := range fs {
		key := f.Name
		if f.Target != "" {
			key += "@" + f.Target
		}
		out[key] = f
	}
	return out
}

func TestCheckFakeTree(t *testing.T) {
	root := fakeTree(t)
	findings, err := Check(fakeOptions(root))
	if err != nil {
		t.Fatal(err)
	}
	got := findingsByKey(findings)
	tests := []struct {
		key, status, current, recommended string
	}{
		{"vm.swappiness", "off", "60", "1"},
		{"vm.dirty_background_bytes", "off", "vm.dirty_background_ratio=10 (~1.6 GiB)", "268435456 (256 MiB, from 16 GiB RAM)"},
		{"vm.dirty_bytes", "ok", "vm.dirty_ratio=20 (~3.2 GiB)", "4294967296 (4 GiB, from 16 GiB RAM)"},
		{"vm.max_map_count", "n/a", "65530", ">= 262144"},
		{"vm.zone_reclaim_mode", "ok", "0", "0"},
		{"fs.file-max", "ok", "9223372036854775807", ">= 1048576"},
		{"RLIMIT_NOFILE@hard limit", "off", "4096 (soft 1024)", ">= 1048576"},
		{"RLIMIT_MEMLOCK", "off", "8 MiB (hard 8 MiB)", "unlimited or >= 256 MiB"},
		{"kernel.io_uring_disabled", "off", "2", "0"},
		{"fs.aio-max-nr", "n/a", "65536", ">= 1048576"},
		{"net.core.somaxconn", "ok", "4096", ">= 4096"},
		{"net.ipv4.tcp_max_syn_backlog", "off", "512", ">= 4096"},
		{"net.core.rmem_max", "off", "212992", ">= 16777216"},
		{"net.core.wmem_max", "off", "212992", ">= 16777216"},
		{"net.ipv4.tcp_rmem", "off", "4096 131072 6291456", "max >= 16777216"},
		{"net.ipv4.tcp_wmem", "off", "4096 16384 4194304", "max >= 16777216"},
		{"transparent_hugepage", "off", "always", "madvise"},
		{"block.scheduler@nvme0n1", "ok", "none", "none"},
		{"block.nomerges@nvme0n1", "off", "0", "2"},
		{"block.read_ahead_kb@nvme0n1", "off", "8192", "128-4096 (apply sets 1024)"},
		{"block.write_cache@nvme0n1", "ok", "write back", "as the device reports"},
		{"cpu.governor", "off", "powersave (cpu 0-3)", "performance"},
		{"irq.affinity@2 shard(s) on cpu 0-1", "off", "3 IRQ(s) on shard cores (51:1 40:0-3 41:0-3)", "2-3"},
		{"clocksource", "off", "hpet", "tsc"},
		{"swap", "off", "1 area(s), 8.0 GiB", "none, or vm.swappiness=1"},
		{"datadir.filesystem@/var/lib/sluice", "ok", "xfs", "xfs or ext4"},
		{"datadir.noatime@/var/lib/sluice", "off", "relatime", "noatime"},
	}
	for _, tt := range tests {
		f, ok := got[tt.key]
		if !ok {
			t.Errorf("%s: no finding (have %v)", tt.key, keys(got))
			continue
		}
		if string(f.Status) != tt.status || f.Current != tt.current || f.Recommended != tt.recommended {
			t.Errorf("%s: got %s / %q / %q, want %s / %q / %q", tt.key, f.Status, f.Current, f.Recommended, tt.status, tt.current, tt.recommended)
		}
		if f.Reason == "" || strings.Contains(f.Reason, "\n") {
			t.Errorf("%s: reason must be one line: %q", tt.key, f.Reason)
		}
	}
	// Every tuner reports, and free space is measured on the real file system under the tree.
	names := map[string]bool{}
	for _, f := range findings {
		names[f.Name] = true
	}
	for _, n := range Names() {
		if !names[n] {
			t.Errorf("tuner %s reported nothing", n)
		}
	}
	if f := got["datadir.free_space@/var/lib/sluice"]; f.Status == StatusUnknown || f.Current == "" {
		t.Errorf("free space: %+v", f)
	}
	if !AnyOff(findings) {
		t.Error("AnyOff: false on an untuned tree")
	}
}

func keys(m map[string]Finding) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestApplyRevertByteIdentical applies everything to an untuned tree,
// checks that the applied tuners now pass, and reverts: the tree must be
// byte-identical to before, state file and its directories included.
func TestApplyRevertByteIdentical(t *testing.T) {
	root := fakeTree(t)
	before := snapshot(t, root)
	results, err := Apply(ApplyOptions{Options: fakeOptions(root)})
	if err != nil {
		t.Fatal(err)
	}
	outcomes := map[string]Outcome{}
	for _, r := range results {
		t.Log(r)
		outcomes[r.Name] = r.Outcome
	}
	for _, n := range []string{"vm.swappiness", "vm.dirty_background_bytes", "kernel.io_uring_disabled",
		"net.ipv4.tcp_rmem", "transparent_hugepage", "block.nomerges", "block.read_ahead_kb", "cpu.governor",
		"irq.affinity", "clocksource"} {
		if outcomes[n] != OutcomeChanged {
			t.Errorf("%s: outcome %q, want changed", n, outcomes[n])
		}
	}
	for _, n := range []string{"RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "datadir.noatime"} {
		if outcomes[n] != OutcomeCannot {
			t.Errorf("%s: outcome %q, want cannot (with a reason)", n, outcomes[n])
		}
	}
	if outcomes["swap"] != OutcomeUnchanged {
		t.Errorf("swap: outcome %q, want unchanged (vm.swappiness=1 was applied)", outcomes["swap"])
	}
	if _, ok := outcomes["vm.max_map_count"]; ok {
		t.Error("vm.max_map_count does not matter here but was applied without --only")
	}
	if _, err := os.Stat(filepath.Join(root, DefaultStateFile)); err != nil {
		t.Fatalf("state file: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "sys/kernel/mm/transparent_hugepage/enabled")); string(b) != "always [madvise] never\n" {
		t.Errorf("THP selector after apply: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "proc/sys/net/ipv4/tcp_rmem")); string(b) != "4096\t131072\t16777216\n" {
		t.Errorf("tcp_rmem after apply: %q", b)
	}
	after, err := Check(fakeOptions(root))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range after {
		if outcomes[f.Name] == OutcomeChanged && f.Status != StatusOK {
			t.Errorf("%s applied but check says %s (%s)", f.Name, f.Status, f.Current)
		}
	}

	results, err = Revert(RevertOptions{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if r.Outcome == OutcomeFailed {
			t.Errorf("revert: %s", r)
		}
	}
	if d := diffSnapshots(before, snapshot(t, root)); len(d) > 0 {
		t.Errorf("tree differs after apply and revert:\n%s", strings.Join(d, "\n"))
	}
	if _, err := Revert(RevertOptions{Root: root}); err == nil {
		t.Error("a second revert found something to do")
	}
}

func TestApplyPersistRevert(t *testing.T) {
	root := fakeTree(t)
	// An operator's own sysctl file must survive untouched.
	other := filepath.Join(root, "etc/sysctl.d/99-local.conf")
	os.MkdirAll(filepath.Dir(other), 0o755)
	os.WriteFile(other, []byte("kernel.pid_max = 65536\n"), 0o644)
	before := snapshot(t, root)
	state := filepath.Join(t.TempDir(), "state.json")
	results, err := Apply(ApplyOptions{Options: fakeOptions(root), Persist: true, StateFile: state})
	if err != nil {
		t.Fatal(err)
	}
	outcomes := map[string]Result{}
	for _, r := range results {
		t.Log(r)
		outcomes[r.Name] = r
	}
	for _, n := range []string{"vm.swappiness", "net.ipv4.tcp_rmem", "block.nomerges", "RLIMIT_NOFILE"} {
		if outcomes[n].Outcome != OutcomePersisted {
			t.Errorf("%s: %s, want persisted", n, outcomes[n])
		}
	}
	if r := outcomes["transparent_hugepage"]; r.Outcome != OutcomeChanged || !strings.Contains(r.Detail, "runtime only") {
		t.Errorf("THP has no file form; it must apply at runtime and say so: %s", r)
	}
	sysctl, _ := os.ReadFile(filepath.Join(root, sysctlFile))
	for _, want := range []string{"vm.swappiness = 1\n", "net.ipv4.tcp_rmem = 4096 131072 16777216\n", "vm.dirty_background_bytes = 268435456\n"} {
		if !strings.Contains(string(sysctl), want) {
			t.Errorf("%s lacks %q:\n%s", sysctlFile, want, sysctl)
		}
	}
	udev, _ := os.ReadFile(filepath.Join(root, udevFile))
	if !strings.Contains(string(udev), `KERNEL=="nvme0n1", ATTR{queue/nomerges}="2"`) {
		t.Errorf("udev rule:\n%s", udev)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "proc/sys/vm/swappiness")); string(b) != "60\n" {
		t.Errorf("--persist changed the runtime value: %q", b)
	}
	// A second apply replaces its own lines instead of adding more.
	if _, err := Apply(ApplyOptions{Options: fakeOptions(root), Persist: true, StateFile: state, Only: []string{"vm.swappiness"}}); err != nil {
		t.Fatal(err)
	}
	sysctl2, _ := os.ReadFile(filepath.Join(root, sysctlFile))
	if n := strings.Count(string(sysctl2), "vm.swappiness = 1"); n != 1 {
		t.Errorf("vm.swappiness appears %d times after a second apply:\n%s", n, sysctl2)
	}
	if _, err := Revert(RevertOptions{Root: root, StateFile: state}); err != nil {
		t.Fatal(err)
	}
	if d := diffSnapshots(before, snapshot(t, root)); len(d) > 0 {
		t.Errorf("tree differs after persist and revert:\n%s", strings.Join(d, "\n"))
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state file left after a full revert: %v", err)
	}
}

func TestApplyDryRunChangesNothing(t *testing.T) {
	root := fakeTree(t)
	before := snapshot(t, root)
	results, err := Apply(ApplyOptions{Options: fakeOptions(root), DryRun: true, Persist: false})
	if err != nil {
		t.Fatal(err)
	}
	var would int
	for _, r := range results {
		if r.Outcome == OutcomeWouldChange {
			would++
			if !strings.Contains(r.Detail, "(now ") {
				t.Errorf("dry run must show the current value: %s", r)
			}
		}
		if r.Outcome == OutcomeChanged {
			t.Errorf("dry run changed: %s", r)
		}
	}
	if would < 10 {
		t.Errorf("dry run planned %d changes, want >= 10", would)
	}
	if d := diffSnapshots(before, snapshot(t, root)); len(d) > 0 {
		t.Errorf("dry run changed the tree:\n%s", strings.Join(d, "\n"))
	}
}

func TestApplyOnly(t *testing.T) {
	root := fakeTree(t)
	results, err := Apply(ApplyOptions{Options: fakeOptions(root), Only: []string{"vm.swappiness", "fs.aio-max-nr", "fs.file-max"}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Outcome{}
	for _, r := range results {
		got[r.Name] = r.Outcome
	}
	// fs.aio-max-nr does not matter here, but naming it applies it; fs.file-max is fine already.
	want := map[string]Outcome{"vm.swappiness": OutcomeChanged, "fs.aio-max-nr": OutcomeChanged, "fs.file-max": OutcomeUnchanged}
	if len(got) != len(want) {
		t.Errorf("results %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(root, "proc/sys/vm/dirty_background_bytes")); string(b) != "0\n" {
		t.Errorf("--only changed another tuner: dirty_background_bytes %q", b)
	}
	if _, err := Apply(ApplyOptions{Options: fakeOptions(root), Only: []string{"vm.nonsense"}}); err == nil || !strings.Contains(err.Error(), "vm.nonsense") {
		t.Errorf("unknown --only name: %v", err)
	}
}

// TestCannotApplyGoesOn makes one tuner's file refuse writes, as a
// read-only sysfs would: that tuner fails with the reason, the others apply,
// and revert still restores them.
func TestCannotApplyGoesOn(t *testing.T) {
	root := fakeTree(t)
	// /proc/sys/kernel/osrelease refuses writes even from root (EACCES).
	cs := filepath.Join(root, "sys/devices/system/clocksource/clocksource0/current_clocksource")
	os.Remove(cs)
	if err := os.Symlink("/proc/sys/kernel/osrelease", cs); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, root)
	results, err := Apply(ApplyOptions{Options: fakeOptions(root)})
	if err != nil {
		t.Fatal(err)
	}
	var failed, changed int
	for _, r := range results {
		switch {
		case r.Name == "clocksource":
			if r.Outcome != OutcomeFailed || !strings.Contains(r.Detail, "permission denied") {
				t.Errorf("clocksource: %s, want failed with the reason", r)
			}
			failed++
		case r.Outcome == OutcomeChanged:
			changed++
		}
	}
	if failed != 1 || changed < 8 {
		t.Errorf("failed %d, changed %d: the others must go on", failed, changed)
	}
	if !Failed(results) {
		t.Error("Failed: false")
	}
	if _, err := Revert(RevertOptions{Root: root}); err != nil {
		t.Fatal(err)
	}
	if d := diffSnapshots(before, snapshot(t, root)); len(d) > 0 {
		t.Errorf("tree differs after revert:\n%s", strings.Join(d, "\n"))
	}
}

// TestRevertRefusesOtherRoot keeps a state file recorded for a fake tree
// from being replayed onto the real host.
func TestRevertRefusesOtherRoot(t *testing.T) {
	root := fakeTree(t)
	state := filepath.Join(t.TempDir(), "state.json")
	if _, err := Apply(ApplyOptions{Options: fakeOptions(root), StateFile: state, Only: []string{"vm.swappiness"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := Revert(RevertOptions{Root: "/", StateFile: state}); err == nil || !strings.Contains(err.Error(), "--root") {
		t.Errorf("revert onto another root: %v", err)
	}
}

// TestDirtyBytesRevertLikeTheKernel emulates the kernel's coupling of the
// _bytes and _ratio files: writing one zeroes the other, and a 0 written to
// the _bytes file is refused. Revert must still restore the ratio.
func TestDirtyBytesRevertLikeTheKernel(t *testing.T) {
	root := fakeTree(t)
	h, _ := newHost(fakeOptions(root))
	ratio, bytes := sysctlPath("vm.dirty_background_ratio"), sysctlPath("vm.dirty_background_bytes")
	results, err := Apply(ApplyOptions{Options: fakeOptions(root), Only: []string{"vm.dirty_background_bytes"}})
	if err != nil || len(results) != 1 || results[0].Outcome != OutcomeChanged {
		t.Fatalf("apply: %v %v", results, err)
	}
	h.write(ratio, "0") // what the kernel did when bytes was written
	// Revert restores the ratio first; the kernel then zeroes bytes, which
	// is what the record says bytes was, so it is not written.
	st, err := loadState(h.path(DefaultStateFile))
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for i := len(st.Changes) - 1; i >= 0; i-- {
		if st.Changes[i].Kind == kindValue {
			order = append(order, st.Changes[i].Path)
		}
	}
	if len(order) != 2 || order[0] != ratio || order[1] != bytes {
		t.Fatalf("revert order %v, want ratio then bytes", order)
	}
	r, err := h.undo(st.Changes[len(st.Changes)-1])
	if err != nil || r.Outcome != OutcomeRestored {
		t.Fatalf("restoring the ratio: %v %v", r, err)
	}
	h.write(bytes, "0") // the kernel's side effect of writing the ratio
	r, err = h.undo(st.Changes[len(st.Changes)-2])
	if err != nil || r.Outcome != OutcomeUnchanged {
		t.Errorf("bytes after the ratio came back: %v %v, want unchanged (the kernel refuses 0)", r, err)
	}
}

func TestSelectorEmulation(t *testing.T) {
	tests := []struct{ content, word, want string }{
		{"[always] madvise never\n", "madvise", "always [madvise] never\n"},
		{"none [mq-deadline] kyber bfq \n", "none", "[none] mq-deadline kyber bfq \n"},
		{"[none] mq-deadline\n", "none", "[none] mq-deadline\n"},
	}
	for _, tt := range tests {
		if got := moveBrackets(tt.content, tt.word); got != tt.want {
			t.Errorf("moveBrackets(%q, %q) = %q, want %q", tt.content, tt.word, got, tt.want)
		}
	}
	root := t.TempDir()
	p := filepath.Join(root, "sched")
	os.WriteFile(p, []byte("[none] mq-deadline\n"), 0o644)
	h, _ := newHost(Options{Root: root})
	if err := h.write("/sched", "bfq"); err == nil {
		t.Error("writing a word the selector does not offer succeeded")
	}
}

func TestReportAndJSON(t *testing.T) {
	root := fakeTree(t)
	findings, err := Check(fakeOptions(root))
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	if err := WriteReport(&text, findings); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"STATUS", "vm.swappiness", "why: keep the broker", "apply: writes /proc/sys/vm/swappiness = 1", "checks:"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, text.String())
		}
	}
	var js bytes.Buffer
	if err := WriteJSON(&js, findings); err != nil {
		t.Fatal(err)
	}
	var back []map[string]any
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back) != len(findings) || back[0]["name"] != findings[0].Name || back[0]["status"] == nil {
		t.Errorf("JSON round trip: %d findings, first %v", len(back), back[0])
	}
	for _, f := range findings {
		if f.Status == StatusOff && f.String() == "" {
			t.Error("empty String()")
		}
	}
}

// TestCheckRealHost runs check against this machine: it must work and
// report every tuner, whatever the host's settings are.
func TestCheckRealHost(t *testing.T) {
	dir := t.TempDir()
	findings, err := Check(Options{Root: "/", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range findings {
		names[f.Name] = true
		if f.Status == "" || f.Reason == "" || f.Recommended == "" {
			t.Errorf("incomplete finding: %+v", f)
		}
	}
	for _, n := range Names() {
		if !names[n] {
			t.Errorf("tuner %s reported nothing on this host", n)
		}
	}
	var out bytes.Buffer
	WriteReport(&out, findings)
	t.Logf("check on this host:\n%s", out.String())
	for _, f := range CheckSummary(dir, 0) {
		if f.Status != StatusOff {
			t.Errorf("CheckSummary returned a finding that is not off: %v", f)
		}
		t.Logf("summary: %s", f)
	}
}
