package e2e

import (
	"context"
	"fmt"
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

// Thousands of partitions under a host's open file limit. The broker used
// to hold five descriptors per partition: creating partitions failed with
// KAFKA_STORAGE_ERROR after about 3,000 under a 20,000-descriptor limit,
// and then the broker could not start again. Now a partition holds its
// active segment open and little else, the broker raises its limit at
// start where it may, and CreateTopics refuses, before creating anything,
// what the limit cannot hold.

// requirePrivilegeTools skips (or fails in CI) without prlimit and setpriv
// (util-linux) or without root.
func requirePrivilegeTools(t *testing.T) {
	t.Helper()
	requireOwnBroker(t, "the broker's own open file limit")
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test lowers the broker's hard open file limit and runs it as another user")
	}
	for _, tool := range []string{"prlimit", "setpriv"} {
		_, err := exec.LookPath(tool)
		requireTool(t, err == nil, tool, "util-linux")
	}
}

// createPartitions creates topics of per partitions each until total.
func createPartitions(t *testing.T, adm *kadm.Client, prefix string, topics, per int) {
	t.Helper()
	ctx := testContext(t, 5*time.Minute)
	for i := range topics {
		name := fmt.Sprintf("%s-%03d", prefix, i)
		resp, err := adm.CreateTopic(ctx, int32(per), 1, nil, name)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			t.Fatalf("creating topic %d of %d (%d partitions each): %v %s", i+1, topics, per, err, resp.ErrMessage)
		}
	}
}

// Under a 4,096-descriptor limit that it may not raise, a broker holds
// 1,000 partitions (five descriptors each, as before, would need 5,000),
// and starts again on them after a SIGKILL.
func TestManyPartitionsUnderALowFileLimitSurviveARestart(t *testing.T) {
	requirePrivilegeTools(t)
	b := StartSluiceAs(t, 65534, BrokerOptions{Config: defaultBrokerConfig(), Prefix: unprivileged(4096)})
	adm := b.Admin(t)
	const topics, per = 5, 200
	prefix := topicName(t, "")
	createPartitions(t, adm, prefix, topics, per)
	cl := b.Client(t, kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DisableIdempotentWrite())
	ctx := testContext(t, 2*time.Minute)
	for i := range topics {
		rec := &kgo.Record{Topic: fmt.Sprintf("%s-%03d", prefix, i), Partition: int32(i * 7 % per), Value: []byte(fmt.Sprint(i))}
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatalf("produce to %s: %v", rec.Topic, err)
		}
	}
	b.Kill(t)
	b.Restart(t)
	adm2 := b.Admin(t)
	md, err := adm2.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, td := range md.Topics {
		if strings.HasPrefix(td.Topic, prefix) {
			n += len(td.Partitions)
		}
	}
	if n != topics*per {
		t.Fatalf("after the restart Metadata lists %d partitions of the test's topics; want %d", n, topics*per)
	}
	ends, err := adm2.ListEndOffsets(ctx, topicsOf(prefix, topics)...)
	if err != nil {
		t.Fatal(err)
	}
	var records int64
	ends.Each(func(o kadm.ListedOffset) { records += o.Offset })
	if records != topics {
		t.Fatalf("after the restart the topics hold %d records; want the %d acknowledged", records, topics)
	}
}

func topicsOf(prefix string, n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("%s-%03d", prefix, i))
	}
	return out
}

// A broker that may not raise its limit (no privilege: its hard limit is
// 2,048) refuses, with INVALID_PARTITIONS and a message naming the limit,
// a topic it has no descriptors for; nothing of that topic is created, and
// the broker goes on serving and creating what fits.
func TestCreateTopicsBeyondTheFileLimitIsRefusedWhole(t *testing.T) {
	requirePrivilegeTools(t)
	// The data directory must be the unprivileged user's.
	b := StartSluiceAs(t, 65534, BrokerOptions{Config: defaultBrokerConfig(), Prefix: unprivileged(2048)})
	adm := b.Admin(t)
	ctx := testContext(t, 2*time.Minute)
	big := topicName(t, "big")
	resp, err := adm.CreateTopic(ctx, 2000, 1, nil, big)
	if err == nil {
		err = resp.Err
	}
	if err != kerr.InvalidPartitions || !strings.Contains(resp.ErrMessage, "open file limit") {
		t.Fatalf("creating 2,000 partitions under a 2,048-descriptor limit: %v %q; want INVALID_PARTITIONS naming the open file limit", err, resp.ErrMessage)
	}
	topics, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if topics.Has(big) {
		t.Fatal("the refused topic exists")
	}
	if entries, _ := os.ReadDir(b.dataDir); hasPrefixEntry(entries, big) {
		t.Fatal("the refused topic left partition directories behind")
	}
	small := topicName(t, "small")
	if resp, err := adm.CreateTopic(ctx, 20, 1, nil, small); err != nil || resp.Err != nil {
		t.Fatalf("creating 20 partitions: %v %v", err, resp.Err)
	}
	cl := b.Client(t)
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: small, Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatalf("produce after the refusal: %v", err)
	}
	b.Kill(t)
	b.Restart(t)
}

// unprivileged is a command prefix that runs the broker as nobody, with no
// capabilities (so it cannot raise its hard limit) and an open file limit
// of nofile.
func unprivileged(nofile int) []string {
	return []string{"prlimit", fmt.Sprintf("--nofile=%d:%d", nofile, nofile), "--",
		"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--"}
}

func hasPrefixEntry(entries []os.DirEntry, prefix string) bool {
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			return true
		}
	}
	return false
}

// StartSluiceAs is StartSluice for a broker that runs as uid (through
// opts.Prefix): its data directory and the directories above it are made
// reachable and its own.
func StartSluiceAs(t *testing.T, uid int, opts BrokerOptions) *Broker {
	t.Helper()
	return startSluiceWith(t, opts, func(b *Broker) error {
		for dir := filepath.Dir(b.dataDir); dir != filepath.Dir(tempRoot); dir = filepath.Dir(dir) {
			if err := os.Chmod(dir, 0o755); err != nil {
				return err
			}
		}
		return os.Chown(b.dataDir, uid, uid)
	})
}
