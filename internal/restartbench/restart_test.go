// Package restartbench measures how long bin/sluice takes to come back after
// a SIGKILL, with little and with much data stored. DESIGN.md requires that
// restart time does not grow with the amount of data: only the tail past the
// recovery point is scanned. It is a benchmark, not part of `make test`: run
// it with `make bench-restart` (SLUICE_RESTART_BENCH=1).
package restartbench

import (
	"bufio"
	"context"
	"crypto/rand"
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

	"github.com/sluice-broker/sluice/internal/indexdamage"
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

// fill produces about n bytes of 1 KiB records to 6 partitions with acks=1,
// uncompressed (franz-go would otherwise snappy-compress them to almost
// nothing, and the bytes stored would not be n).
func fill(t *testing.T, addr, topic string, n int64) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite(), kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ProducerBatchMaxBytes(1<<20), kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(1<<16))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	value := make([]byte, 1024)
	rand.Read(value)
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

// largeBytes skips unless the benchmarks were asked for, and returns how
// much the large runs store: 10 GiB, or SLUICE_RESTART_LARGE_BYTES.
func largeBytes(t *testing.T) int64 {
	if os.Getenv("SLUICE_RESTART_BENCH") == "" {
		t.Skip("a benchmark that writes 10 GB: run it with make bench-restart (SLUICE_RESTART_BENCH=1)")
	}
	large := int64(10 << 30)
	if v := os.Getenv("SLUICE_RESTART_LARGE_BYTES"); v != "" {
		large, _ = strconv.ParseInt(v, 10, 64)
	}
	return large
}

// startEmpty starts a broker on a fresh data directory, waits for it to
// open its partitions, and returns an admin client of it (closed with the
// test) with the directory and address to restart it on.
func startEmpty(t *testing.T) (b *broker, adm *kadm.Client, dir, addr string) {
	t.Helper()
	dir, addr = t.TempDir(), freePort(t)
	b, _ = start(t, dir, addr)
	<-b.opened
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return b, kadm.NewClient(cl), dir, addr
}

func TestRestartTimeAfterSIGKILL(t *testing.T) {
	large := largeBytes(t)
	tail := int64(10 << 20)
	type result struct {
		stored          int64
		listen, opening time.Duration
	}
	var results []result
	for _, stored := range []int64{10 << 20, large} {
		b, adm, dir, addr := startEmpty(t)
		if _, err := adm.CreateTopics(context.Background(), 6, 1, nil, "restart"); err != nil {
			t.Fatal(err)
		}
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

// TestRestartWithDamagedIndexes: with 10 GiB in small segments and every
// index file damaged (zeroed, or cut mid-entry) after a SIGKILL, the broker
// must listen within 1 s of exec and answer Fetch and ListOffsets (by offset
// and by timestamp) correctly at once: a damaged index costs the rebuild of
// the segment a request needs, off the shard thread, never a slow start.
func TestRestartWithDamagedIndexes(t *testing.T) {
	stored := largeBytes(t)
	const topic = "damaged"
	b, adm, dir, addr := startEmpty(t)
	// 16 MiB segments: 640 of them in 10 GiB.
	if _, err := adm.CreateTopics(context.Background(), 6, 1, map[string]*string{"segment.bytes": kadm.StringPtr("16777216")}, topic); err != nil {
		t.Fatal(err)
	}
	fill(t, addr, topic, stored/2)
	midTs := time.Now().UnixMilli()
	time.Sleep(5 * time.Millisecond)
	fill(t, addr, topic, stored/2)
	ctx := context.Background()
	// What an intact broker answers.
	wantByTs, err := adm.ListOffsetsAfterMilli(ctx, midTs, topic)
	if err != nil {
		t.Fatal(err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	probes := map[int32]int64{} // partition -> an offset a third of the way in
	ends.Each(func(o kadm.ListedOffset) { probes[o.Partition] = o.Offset / 3 })
	wantAt := fetchAt(t, addr, topic, probes)
	// Let the periodic flush checkpoint it all: what is measured is the
	// damaged indexes, not the scan past an old recovery point.
	time.Sleep(12 * time.Second)
	b.kill()

	// Damage every index file: zeroed, or cut in the middle of an entry.
	damaged, err := indexdamage.All(dir)
	if err != nil {
		t.Fatal(err)
	}

	b2, listen := start(t, dir, addr)
	defer b2.kill()
	<-b2.opened
	begin := time.Now()
	cl2, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Close()
	gotByTs, err := kadm.NewClient(cl2).ListOffsetsAfterMilli(ctx, midTs, topic)
	if err != nil {
		t.Fatal(err)
	}
	byTs := time.Since(begin)
	wantByTs.Each(func(o kadm.ListedOffset) {
		if g, ok := gotByTs.Lookup(topic, o.Partition); !ok || g.Offset != o.Offset || g.Timestamp != o.Timestamp {
			t.Errorf("ListOffsets(%d) of %s/%d over damaged indexes: %+v; want offset %d timestamp %d", midTs, topic, o.Partition, g, o.Offset, o.Timestamp)
		}
	})
	begin = time.Now()
	gotAt := fetchAt(t, addr, topic, probes)
	fetched := time.Since(begin)
	for p, want := range wantAt {
		if got := gotAt[p]; got != want {
			t.Errorf("fetch of %s/%d at %d over damaged indexes: %+v; want %+v", topic, p, probes[p], got, want)
		}
	}
	fmt.Printf("\n| stored | index files damaged | exec → listening | ListOffsets by timestamp | Fetch at a third of each partition |\n|---|---|---|---|---|\n")
	fmt.Printf("| %d MiB | %d | %v | %v | %v |\n", stored>>20, damaged, listen.Round(time.Millisecond), byTs.Round(time.Millisecond), fetched.Round(time.Millisecond))
	if listen > time.Second {
		t.Errorf("with every index file damaged the broker listened %v after exec; the goal is 1 s", listen)
	}
}

// fetched is the first record a fetch at an offset returned.
type fetched struct {
	offset, timestamp int64
}

// fetchAt fetches each partition at its offset and returns the first
// record each answered.
func fetchAt(t *testing.T, addr, topic string, at map[int32]int64) map[int32]fetched {
	t.Helper()
	offsets := map[int32]kgo.Offset{}
	for p, o := range at {
		offsets[p] = kgo.NewOffset().At(o)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}), kgo.FetchMaxBytes(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := map[int32]fetched{}
	for len(out) < len(at) {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("fetching %s: timed out with %d of %d partitions answered", topic, len(out), len(at))
		}
		fs.EachError(func(_ string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if _, ok := out[r.Partition]; !ok {
				out[r.Partition] = fetched{r.Offset, r.Timestamp.UnixMilli()}
			}
		})
	}
	return out
}

// TestRestartWithManyPartitions: start-up time with thousands of
// partitions (SLUICE_RESTART_PARTITIONS, default 5,000: with two
// descriptors each in direct mode, as many as a 20,000-descriptor limit
// holds with room to spare), after a clean shutdown and after SIGKILL.
func TestRestartWithManyPartitions(t *testing.T) {
	largeBytes(t) // the same switch as the other restart benchmarks
	partitions := 5000
	if v := os.Getenv("SLUICE_RESTART_PARTITIONS"); v != "" {
		partitions, _ = strconv.Atoi(v)
	}
	b, adm, dir, addr := startEmpty(t)
	for i := 0; i < partitions/100; i++ {
		resp, err := adm.CreateTopic(context.Background(), 100, 1, nil, fmt.Sprintf("many-%03d", i))
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			t.Fatalf("creating topic %d of %d: %v %s", i+1, partitions/100, err, resp.ErrMessage)
		}
	}
	b.cmd.Process.Signal(syscall.SIGTERM)
	b.cmd.Wait()
	b, clean := start(t, dir, addr)
	cleanOpened := <-b.opened
	b.kill()
	b, killed := start(t, dir, addr)
	killedOpened := <-b.opened
	b.kill()
	fmt.Printf("\n| partitions | after | exec → listening | partitions opened |\n|---|---|---|---|\n")
	fmt.Printf("| %d | a clean shutdown | %v | %v |\n", partitions, clean.Round(time.Millisecond), cleanOpened.Round(time.Millisecond))
	fmt.Printf("| %d | SIGKILL | %v | %v |\n", partitions, killed.Round(time.Millisecond), killedOpened.Round(time.Millisecond))
}
