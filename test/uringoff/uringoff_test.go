// Package uringoff checks what bin/sluice does when the kernel forbids
// io_uring (sysctl kernel.io_uring_disabled=2): one clear line at start-up
// and a broker that still serves on plain syscalls, or a refusal to start
// with --require-io-uring.
//
// The sysctl is global, so this must not run beside anything else that uses
// io_uring: `make test` runs it alone, after the rest of the suite, with
// SLUICE_URING_SYSCTL_TEST=1.
package uringoff

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const sysctl = "/proc/sys/kernel/io_uring_disabled"

func binary() string {
	if p := os.Getenv("SLUICE_BIN"); p != "" {
		return p
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "bin", "sluice")
}

// disableURing sets the sysctl to 2 for the test and restores it.
func disableURing(t *testing.T) {
	if os.Getenv("SLUICE_URING_SYSCTL_TEST") == "" {
		t.Skip("changes a global sysctl: run alone with SLUICE_URING_SYSCTL_TEST=1 (make test does)")
	}
	old, err := os.ReadFile(sysctl)
	if err != nil {
		t.Skipf("kernel has no %s: %v", sysctl, err)
	}
	if err := os.WriteFile(sysctl, []byte("2"), 0); err != nil {
		t.Skipf("cannot set %s (needs root outside a read-only /proc): %v", sysctl, err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(sysctl, bytes.TrimSpace(old), 0); err != nil {
			t.Errorf("restoring %s: %v", sysctl, err)
		}
	})
}

// syncBuffer is a bytes.Buffer the broker's stderr copier and the test can
// share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestFallsBackToPlainSyscalls(t *testing.T) {
	disableURing(t)
	addr := freeAddr(t)
	stderr := &syncBuffer{}
	cmd := exec.Command(binary(), "serve", "--data-dir", t.TempDir(), "--listen", addr, "--http", "")
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker never listened: %v\n%s", err, stderr.String())
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("plain"), kgo.ConsumeTopics("plain"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.Ping(ctx); err != nil {
		t.Fatalf("broker never answered: %v\n%s", err, stderr.String())
	}
	if _, err := kadm.NewClient(cl).CreateTopics(ctx, 1, 1, nil, "plain"); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("durable without io_uring")}).FirstErr(); err != nil {
		t.Fatalf("acks=all produce on plain syscalls: %v", err)
	}
	fs := cl.PollFetches(ctx)
	if err := fs.Err(); err != nil || fs.NumRecords() != 1 {
		t.Fatalf("consume: %v, %d records", err, fs.NumRecords())
	}
	var lines []string
	for _, l := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(l, "io_uring") && strings.Contains(l, "unavailable") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "plain syscalls") || !strings.Contains(lines[0], "disabled") {
		t.Fatalf("want exactly one start-up line saying io_uring is disabled and plain syscalls are used; log:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), `io="plain syscalls"`) {
		t.Fatalf("the serving line does not name the plain backend:\n%s", stderr.String())
	}
}

func TestRequireIOURingRefuses(t *testing.T) {
	disableURing(t)
	out, err := exec.Command(binary(), "serve", "--data-dir", t.TempDir(), "--listen", freeAddr(t), "--http", "", "--require-io-uring").CombinedOutput()
	if err == nil {
		t.Fatal("started without io_uring although --require-io-uring was given")
	}
	if !strings.Contains(string(out), "io_uring is unavailable") {
		t.Fatalf("refusal does not say why:\n%s", out)
	}
}
