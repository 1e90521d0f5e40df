// Package powerloss cuts the power under a running sluice. SIGKILL leaves
// the page cache intact, so it cannot test what is lost between a write
// and its fsync; here bin/sluice runs inside a small KVM guest with its
// data directory on a virtio disk, real clients outside produce with
// acks=all and acks=1, and the test kills the whole guest (SIGKILL to
// qemu) at random moments, boots it again on the same disk and checks:
//
//   - every acks=all record acknowledged before the cut is there, once,
//     at the offset it was acknowledged with, byte for byte;
//   - no record appears that was never sent, and none is damaged;
//   - offsets never move: a record seen after one recovery is at the same
//     offset after every later one;
//   - for acks=1 the acknowledged records lost are counted and reported.
//
// Both write modes, on ext4 and on xfs. POWER_CUTS sets the cuts per mode
// and file system (default 3, as `make test` runs it; `make
// test-power-loss` runs 10); POWER_SEED replays a schedule (the seed is
// printed).
package powerloss

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func cutsPerRun() int {
	if n, err := strconv.Atoi(os.Getenv("POWER_CUTS")); err == nil && n > 0 {
		return n
	}
	return 3
}

func seed(t *testing.T) int64 {
	s := time.Now().UnixNano()
	if v, err := strconv.ParseInt(os.Getenv("POWER_SEED"), 10, 64); err == nil {
		s = v
	}
	t.Logf("seed %d (replay with POWER_SEED=%d)", s, s)
	return s
}

func sluiceBinary(t *testing.T) string {
	p := os.Getenv("SLUICE_BIN")
	if p == "" {
		_, file, _, _ := runtime.Caller(0)
		p = filepath.Join(filepath.Dir(file), "..", "..", "bin", "sluice")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("bin/sluice is missing (make build): %v", err)
	}
	return p
}

func TestPowerLoss(t *testing.T) {
	requireGuest(t)
	t.Logf("qemu accelerator: %s", accel(t))
	vmlinuz, modDir := kernel(t)
	initrd := filepath.Join(t.TempDir(), "initrd.cpio")
	buildInitramfs(t, initrd, sluiceBinary(t), modDir)
	for _, mode := range []string{"direct", "page-cache"} {
		for _, fs := range []string{"ext4", "xfs"} {
			t.Run(mode+"/"+fs, func(t *testing.T) {
				_, err := exec.LookPath("mkfs." + fs)
				need(t, err == nil, "mkfs."+fs, "apt-get install e2fsprogs xfsprogs")
				runCuts(t, vmlinuz, initrd, mode, fs)
			})
		}
	}
}

// The topics: one produced to with acks=all, one with acks=1.
var topics = []struct {
	name string
	acks kgo.Acks
	all  bool
}{
	{"acks-all", kgo.AllISRAcks(), true},
	{"acks-one", kgo.LeaderAck(), false},
}

const partitions = 2

func runCuts(t *testing.T, vmlinuz, initrd, mode, fs string) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.img")
	f, err := os.Create(disk)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(1 << 30)
	f.Close()
	mkfs := []string{"-q", "-F", disk}
	if fs == "xfs" {
		mkfs = []string{"-q", "-f", disk}
	}
	if out, err := exec.Command("mkfs."+fs, mkfs...).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.%s: %v\n%s", fs, err, out)
	}
	rng := rand.New(rand.NewSource(seed(t)))
	led := newLedger()
	cuts := cutsPerRun()
	for cut := 0; ; cut++ {
		console := filepath.Join(dir, fmt.Sprintf("console-%d.log", cut))
		g := boot(t, vmlinuz, initrd, disk, fs, mode, console)
		if cut == 0 {
			createTopics(t, g.addr())
		}
		led.verify(t, g.addr(), cut)
		if cut == cuts {
			g.kill()
			break
		}
		// Produce, then cut the power at a random moment.
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for i, tp := range topics {
			wg.Add(1)
			go func() {
				defer wg.Done()
				produce(ctx, g.addr(), tp.name, tp.acks, led, uint64(cut)<<40|uint64(i)<<32)
			}()
		}
		after := time.Duration(300+rng.Intn(2700)) * time.Millisecond
		time.Sleep(after)
		g.kill()
		cancel()
		wg.Wait()
		t.Logf("cut %d after %v of producing", cut+1, after)
	}
	s := led.summary()
	t.Logf("power-loss summary: mode=%s fs=%s cuts=%d acks_all_acknowledged=%d acks_all_lost=%d acks_one_acknowledged=%d acks_one_lost=%d",
		mode, fs, cuts, s.ackedAll, s.lostAll, s.ackedOne, s.lostOne)
}

func createTopics(t *testing.T, addr string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tp := range topics {
		// Small segments, so the cuts meet rolls too.
		resp, err := adm.CreateTopic(ctx, partitions, 1, map[string]*string{"segment.bytes": kadm.StringPtr("1048576")}, tp.name)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			t.Fatalf("create %s: %v", tp.name, err)
		}
	}
}

// produce sends records to topic until ctx ends, recording what was sent
// and what was acknowledged. Ids start at base.
func produce(ctx context.Context, addr, topic string, acks kgo.Acks, led *ledger, base uint64) {
	opts := []kgo.Opt{kgo.SeedBrokers(addr), kgo.RequiredAcks(acks), kgo.ProducerLinger(time.Millisecond),
		kgo.MaxBufferedRecords(2000), kgo.RecordRetries(3), kgo.RetryTimeout(5 * time.Second)}
	if acks != kgo.AllISRAcks() {
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return
	}
	defer cl.Close() // aborts what is still buffered
	for id := base; ctx.Err() == nil; id++ {
		led.sent(id)
		cl.Produce(ctx, &kgo.Record{Topic: topic, Value: recordValue(id)}, func(r *kgo.Record, err error) {
			if err == nil {
				led.acked(topic, id, r.Partition, r.Offset)
			}
		})
	}
}

// recordValue is the value of record id: its id, its length and bytes
// derived from the id, so any record read back can be checked on its own.
func recordValue(id uint64) []byte {
	r := rand.New(rand.NewSource(int64(id)))
	n := 64 + r.Intn(4000)
	b := make([]byte, 12+n)
	binary.BigEndian.PutUint64(b, id)
	binary.BigEndian.PutUint32(b[8:], uint32(n))
	r.Read(b[12:])
	return b
}

// parseValue returns the id of a well-formed value.
func parseValue(b []byte) (uint64, bool) {
	if len(b) < 12 {
		return 0, false
	}
	id := binary.BigEndian.Uint64(b)
	want := recordValue(id)
	return id, string(want) == string(b)
}

type position struct {
	partition int32
	offset    int64
}

// ledger is what the clients sent, what was acknowledged, and what each
// recovery showed.
type ledger struct {
	mu       sync.Mutex
	sentIDs  map[uint64]bool
	ackedPos map[string]map[uint64]position // topic -> id -> where acknowledged
	seen     map[string]map[uint64]position // topic -> id -> where the last recovery showed it
	lostOne  map[uint64]bool                // acks=1 records acknowledged and then lost
}

func newLedger() *ledger {
	l := &ledger{sentIDs: map[uint64]bool{}, ackedPos: map[string]map[uint64]position{}, seen: map[string]map[uint64]position{}, lostOne: map[uint64]bool{}}
	for _, tp := range topics {
		l.ackedPos[tp.name] = map[uint64]position{}
		l.seen[tp.name] = map[uint64]position{}
	}
	return l
}

func (l *ledger) sent(id uint64) {
	l.mu.Lock()
	l.sentIDs[id] = true
	l.mu.Unlock()
}

func (l *ledger) acked(topic string, id uint64, p int32, off int64) {
	l.mu.Lock()
	l.ackedPos[topic][id] = position{p, off}
	l.mu.Unlock()
}

// verify reads both topics back and checks the promises (package
// comment).
func (l *ledger) verify(t *testing.T, addr string, boot int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, tp := range topics {
		got := readAll(t, addr, tp.name)
		where := map[uint64]position{}
		for pos, v := range got {
			id, ok := parseValue(v)
			if !ok {
				t.Fatalf("boot %d: %s %d/%d holds a damaged record (%d bytes)", boot, tp.name, pos.partition, pos.offset, len(v))
			}
			if !l.sentIDs[id] {
				t.Fatalf("boot %d: %s %d/%d holds record %#x, which was never sent", boot, tp.name, pos.partition, pos.offset, id)
			}
			if prev, dup := where[id]; dup {
				if tp.all {
					t.Fatalf("boot %d: %s holds record %#x twice (%v and %v)", boot, tp.name, id, prev, pos)
				}
				continue // acks=1 without idempotence: a retry may write it twice
			}
			where[id] = pos
		}
		for id, pos := range l.seen[tp.name] {
			if now, ok := where[id]; !ok || now != pos {
				t.Fatalf("boot %d: %s record %#x was at %v after an earlier recovery and is now at %v (present %v): offsets moved", boot, tp.name, id, pos, now, ok)
			}
		}
		for id, pos := range l.ackedPos[tp.name] {
			now, ok := where[id]
			switch {
			case ok && now != pos:
				t.Fatalf("boot %d: %s record %#x was acknowledged at %v and is at %v", boot, tp.name, id, pos, now)
			case !ok && tp.all:
				t.Fatalf("boot %d: %s lost record %#x, acknowledged with acks=all at %v", boot, tp.name, id, pos)
			case !ok:
				l.lostOne[id] = true
			}
		}
		l.seen[tp.name] = where
	}
}

type summary struct{ ackedAll, lostAll, ackedOne, lostOne int }

func (l *ledger) summary() summary {
	l.mu.Lock()
	defer l.mu.Unlock()
	return summary{ackedAll: len(l.ackedPos["acks-all"]), ackedOne: len(l.ackedPos["acks-one"]), lostOne: len(l.lostOne)}
}

// readAll reads every record of topic from its log start to its high
// watermark.
func readAll(t *testing.T, addr, topic string) map[position][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	cl.Close()
	if err != nil {
		t.Fatalf("ListEndOffsets %s: %v", topic, err)
	}
	end := map[int32]int64{}
	offsets := map[int32]kgo.Offset{}
	remaining := 0
	ends.Each(func(o kadm.ListedOffset) {
		end[o.Partition] = o.Offset
		offsets[o.Partition] = kgo.NewOffset().AtStart()
		if o.Offset > 0 {
			remaining++
		}
	})
	out := map[position][]byte{}
	if remaining == 0 {
		return out
	}
	cl, err = kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for remaining > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s back: timed out (ends %v)", topic, end)
		}
		fs.EachError(func(_ string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset >= end[r.Partition] {
				return
			}
			out[position{r.Partition, r.Offset}] = r.Value
			if r.Offset+1 == end[r.Partition] {
				remaining--
			}
		})
	}
	return out
}
