// Package restartbench measures how long bin/sluice takes to come back after
// a SIGKILL, with little and with much data stored. DESIGN.md requires that
// restart time does not grow with the amount of data: only the tail past the
// recovery point is scanned. It is a benchmark, not part of `make test`: run
// it with `make bench-restart` (SLUICE_RESTART_BENCH=1).
package restartbench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func binary(t *testing.T) string {
	if p := os.Getenv("SLUICE_BIN"); p != "" {
		return p
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "bin", "sluice")
}

type broker struct {
	cmd    *exec.Cmd
	addr   string
	opened chan time.Duration // the "partitions opened" time the broker logs
}

var openedRE = regexp.MustCompile(`msg="partitions opened".* took=([0-9.]+[µmn]?s)`)

func start(t *testing.T, dir, addr string) (*broker, time.Duration) {
	t.Helper()
	b := &broker{addr: addr, opened: make(chan time.Duration, 1)}
	b.cmd = exec.Command(binary(t), "serve", "--data-dir", dir, "--listen", addr, "--http", "")
	stderr, err := b.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := openedRE.FindStringSubmatch(sc.Text()); m != nil {
				d, _ := time.ParseDuration(m[1])
				b.opened <- d
			}
		}
	}()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker did not listen within 5 minutes")
		}
		time.Sleep(2 * time.Millisecond)
	}
	return b, time.Since(begin)
}

func (b *broker) kill() {
	b.cmd.Process.Signal(syscall.SIGKILL)
	b.cmd.Wait()
}

// fill produces about n bytes of 1 KiB records to 6 partitions with acks=1.
func fill(t *testing.T, addr, topic string, n int64) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite(),
		kgo.ProducerBatchMaxBytes(1<<20), kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(1<<16))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	value := make([]byte, 1024)
	ctx := context.Background()
	errs := make(chan error, 1)
	for sent := int64(0); sent < n; sent += int64(len(value)) {
		cl.Produce(ctx, &kgo.Record{Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				select {
				case errs <- err:
				default:
				}
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}

func TestRestartTimeAfterSIGKILL(t *testing.T) {
	if os.Getenv("SLUICE_RESTART_BENCH") == "" {
		t.Skip("a benchmark that writes 10 GB: run it with make bench-restart (SLUICE_RESTART_BENCH=1)")
	}
	large := int64(10 << 30)
	if v := os.Getenv("SLUICE_RESTART_LARGE_BYTES"); v != "" {
		large, _ = strconv.ParseInt(v, 10, 64)
	}
	tail := int64(10 << 20)
	type result struct {
		stored          int64
		listen, opening time.Duration
	}
	var results []result
	for _, stored := range []int64{10 << 20, large} {
		dir := t.TempDir()
		addr := freePort(t)
		b, _ := start(t, dir, addr)
		<-b.opened
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kadm.NewClient(cl).CreateTopics(context.Background(), 6, 1, nil, "restart"); err != nil {
			t.Fatal(err)
		}
		cl.Close()
		fill(t, addr, "restart", stored-tail)
		// Let the periodic flush checkpoint the bulk, then write a tail of
		// the same size in both runs and kill at once: the two restarts
		// then differ only in how much is stored.
		time.Sleep(12 * time.Second)
		fill(t, addr, "restart", tail)
		b.kill()
		b2, listen := start(t, dir, addr)
		opening := <-b2.opened
		b2.kill()
		results = append(results, result{stored, listen, opening})
		t.Logf("stored %d MiB: listening %v after exec, partitions opened (recovery) in %v", stored>>20, listen.Round(time.Millisecond), opening)
	}
	fmt.Printf("\n| stored | exec → listening | recovery (partitions opened) |\n|---|---|---|\n")
	for _, r := range results {
		fmt.Printf("| %d MiB | %v | %v |\n", r.stored>>20, r.listen.Round(time.Millisecond), r.opening.Round(time.Microsecond))
	}
	small, big := results[0], results[1]
	if big.listen > 5*small.listen+time.Second {
		t.Errorf("restart grew with the data: %v with %d MiB against %v with %d MiB", big.listen, big.stored>>20, small.listen, small.stored>>20)
	}
}
