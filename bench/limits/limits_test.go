package limits

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestLoopbackAndMemcpy(t *testing.T) {
	tcp, err := loopbackTCP(200 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if tcp < 10 {
		t.Errorf("loopback %.0f MiB/s: implausibly slow", tcp)
	}
	if m := memcpy(200 * time.Millisecond); m < 100 {
		t.Errorf("memcpy %.0f MiB/s: implausibly slow", m)
	}
}

func TestFilesystemOf(t *testing.T) {
	if fs := filesystemOf(t.TempDir()); fs == "" || !strings.Contains(fs, " on ") {
		t.Errorf("filesystemOf: %q", fs)
	}
}

// A scaled-down Measure: every figure present, or the reason it is not.
func TestMeasureSmall(t *testing.T) {
	if _, err := exec.LookPath("fio"); err != nil {
		t.Skip("fio not installed")
	}
	l := Measure(context.Background(), t.TempDir(), Options{BufferedSize: "32M", FsyncRuntime: time.Second, NetDuration: 200 * time.Millisecond, MemDuration: 200 * time.Millisecond})
	if len(l.Errors) > 0 {
		t.Fatalf("errors: %v", l.Errors)
	}
	if l.DiskBufferedMiBps <= 0 || l.DiskFsyncMiBps <= 0 || l.Fsync4KIOPS <= 0 || l.Fsync4KP50Micros <= 0 || l.Fsync4KP99Micros < l.Fsync4KP50Micros {
		t.Fatalf("%+v", l)
	}
}
