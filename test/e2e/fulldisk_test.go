package e2e

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// mountImage makes a file system of size MiB in an image file (mkfs.ext4
// or mkfs.xfs) and loop-mounts it at dir; it is unmounted when the test
// ends, after the brokers registered later have stopped.
func mountImage(t *testing.T, fsType string, sizeMiB int, dir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to loop-mount a file system image")
	}
	mkfs := "mkfs." + fsType
	_, err := exec.LookPath(mkfs)
	requireTool(t, err == nil, mkfs, "e2fsprogs or xfsprogs")
	img := filepath.Join(t.TempDir(), fsType+".img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(sizeMiB) << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	args := []string{"-q", img}
	if fsType == "ext4" {
		// No blocks reserved for root: the broker runs as root here, and
		// the disk must really fill.
		args = []string{"-q", "-F", "-m", "0", img}
	}
	if out, err := exec.Command(mkfs, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", mkfs, err, out)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, dir).CombinedOutput(); err != nil {
		t.Skipf("cannot loop-mount a %s image here: %v: %s", fsType, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

// readyz returns /readyz's status and body.
func readyz(t *testing.T, b *Broker) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + b.HTTPAddr + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// A full disk is not a failed disk. With its data directory on a small
// ext4 file system, the broker is filled by a real client until produce
// fails with KAFKA_STORAGE_ERROR; it still serves fetches and metadata and
// reports the refusing partition on /readyz and /metrics; deleting a topic
// frees space, and the same broker takes writes again without a restart;
// after a SIGKILL every acknowledged record is there, once, in order.
func TestFullDiskThenSpaceReturns(t *testing.T) {
	requireOwnBroker(t, "its data directory on a small file system")
	b := startSluiceWith(t, BrokerOptions{Config: defaultBrokerConfig()}, func(b *Broker) error {
		mountImage(t, "ext4", 64, b.dataDir)
		return nil
	})
	adm := b.Admin(t)
	ctx := testContext(t, 3*time.Minute)
	keep, filler := topicName(t, "keep"), topicName(t, "filler")
	small := map[string]*string{"segment.bytes": kadm.StringPtr("1048576")}
	for _, name := range []string{keep, filler} {
		if resp, err := adm.CreateTopic(ctx, 1, 1, small, name); err != nil || resp.Err != nil {
			t.Fatalf("create %s: %v %v", name, err, resp.Err)
		}
	}
	cl := b.Client(t, kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordRetries(3),
		kgo.ProducerBatchMaxBytes(1<<20), kgo.ProducerLinger(0), kgo.ProducerBatchCompression(kgo.NoCompression()))
	var acked [][]byte
	produceKeep := func(i int) error {
		v := []byte(fmt.Sprintf("keep-%06d", i))
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: keep, Value: v}).FirstErr(); err != nil {
			return err
		}
		acked = append(acked, v)
		return nil
	}
	for i := range 20 {
		if err := produceKeep(i); err != nil {
			t.Fatalf("produce to %s: %v", keep, err)
		}
	}

	// Fill the disk.
	value := make([]byte, 64<<10)
	rand.Read(value) // incompressible, whatever the client does
	var fillErr error
	filled := 0
	for i := 0; i < 2000 && fillErr == nil; i++ {
		fillErr = cl.ProduceSync(ctx, &kgo.Record{Topic: filler, Value: value}).FirstErr()
		if fillErr == nil {
			filled++
		}
	}
	if !errors.Is(fillErr, kerr.KafkaStorageError) {
		t.Fatalf("after %d records of 64 KiB on a 64 MiB disk, produce answered %v; want KAFKA_STORAGE_ERROR", filled, fillErr)
	}
	t.Logf("the disk filled after %d records of 64 KiB", filled)

	// Still serving: metadata, fetches, and the reason on /readyz and /metrics.
	if _, err := adm.Metadata(ctx); err != nil {
		t.Fatalf("metadata on a full disk: %v", err)
	}
	if got := consumeWithFranz(t, b, keep, 1, nil); len(got) != len(acked) {
		t.Fatalf("fetch on a full disk: %d records of %s, want %d", len(got), keep, len(acked))
	}
	code, body := readyz(t, b)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, filler+"-0: disk_full") {
		t.Fatalf("/readyz on a full disk: %d %q; want 503 naming %s-0 disk_full", code, body, filler)
	}
	m := scrape(t, ctx, b)
	if m[fmt.Sprintf(`sluice_partition_refusing_writes{partition="0",reason="disk_full",topic="%s"}`, filler)] != 1 || m["sluice_partitions_refusing_writes"] < 1 {
		t.Fatalf("metrics on a full disk do not name %s-0 as refusing writes for disk_full", filler)
	}

	// One log line says so, however many produces it refused.
	logText, _ := os.ReadFile(b.logPath)
	if n := strings.Count(string(logText), "partition refuses writes: the disk is full"); n != 1 {
		t.Errorf("the broker logged %d lines about the full disk; want 1 for %s-0", n, filler)
	}

	// Free space by deleting the filler topic: writes resume, no restart.
	resp, err := adm.DeleteTopics(ctx, filler)
	if err != nil || resp[filler].Err != nil {
		t.Fatalf("deleting %s on a full disk: %v %v", filler, err, resp[filler].Err)
	}
	for i := 20; i < 40; i++ {
		if err := produceKeep(i); err != nil {
			t.Fatalf("produce after space returned (no restart): %v", err)
		}
	}
	if code, body := readyz(t, b); code != http.StatusOK {
		t.Fatalf("/readyz after space returned: %d %q", code, body)
	}

	logText, _ = os.ReadFile(b.logPath)
	t.Logf("what the broker logged about the full disk:\n%s", grepLines(string(logText), "space"))

	// Nothing acknowledged is lost: SIGKILL, restart, read it all.
	b.Kill(t)
	b.Restart(t)
	got := consumeWithFranz(t, b, keep, 1, nil)
	if len(got) != len(acked) {
		t.Fatalf("after a SIGKILL %s holds %d records; want the %d acknowledged", keep, len(got), len(acked))
	}
	for i, r := range got {
		if r.Offset != int64(i) || !bytes.Equal(r.Value, acked[i]) {
			t.Fatalf("record %d after the restart: offset %d value %q; want offset %d value %q", i, r.Offset, r.Value, i, acked[i])
		}
	}
}

// startSluiceWith is StartSluice with a step run before the broker starts
// (after its directories exist).
func startSluiceWith(t *testing.T, opts BrokerOptions, prepare func(*Broker) error) *Broker {
	t.Helper()
	requireOwnBroker(t, "a private broker")
	b, err := newSluiceWith(opts, prepare)
	if err != nil {
		t.Fatalf("starting sluice: %v", err)
	}
	b.watch(t)
	t.Cleanup(func() { b.terminate() })
	return b
}
