package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The standby pair over loopback: a primary and a `--standby-of` standby,
// two real bin/sluice processes, driven by franz-go.

// pairLag is replica.lag.time.max.ms for the pair tests: short, so a
// standby that stops fetching leaves the in-sync set within the test.
const pairLag = 2 * time.Second

// startPair starts a primary and its standby (node ids 1 and 2) with
// config on both, and waits until the standby has registered.
func startPair(t *testing.T, config map[string]string) (primary, standby *Broker) {
	return startPairRacks(t, config, "", "")
}

// startPairRacks is startPair with each node's broker.rack.
func startPairRacks(t *testing.T, config map[string]string, primaryRack, standbyRack string) (primary, standby *Broker) {
	t.Helper()
	cfg := defaultBrokerConfig()
	cfg["replica.lag.time.max.ms"] = fmt.Sprint(pairLag.Milliseconds())
	for k, v := range config {
		cfg[k] = v
	}
	withRack := func(rack string) map[string]string {
		c := maps.Clone(cfg)
		if rack != "" {
			c["broker.rack"] = rack
		}
		return c
	}
	primary = StartSluice(t, BrokerOptions{Config: withRack(primaryRack)})
	standby = StartSluice(t, BrokerOptions{Config: withRack(standbyRack), Flags: []string{"--node-id", "2", "--standby-of", primary.Addr}})
	waitFor(t, 20*time.Second, "the standby registers with the primary", func() (bool, string) {
		st := nodeStatus(t, primary)
		return st.Peer != nil && st.Peer.NodeID == 2, fmt.Sprintf("%+v", st.Peer)
	})
	return primary, standby
}

// statusDoc is GET /v1/status.
type statusDoc struct {
	Role        string `json:"role"`
	NodeID      int32  `json:"node_id"`
	LeaderEpoch int32  `json:"leader_epoch"`
	Peer        *struct {
		NodeID  int32  `json:"node_id"`
		Address string `json:"address"`
	} `json:"peer"`
	Partitions []struct {
		Topic         string `json:"topic"`
		Partition     int32  `json:"partition"`
		InSync        bool   `json:"in_sync"`
		LogEndOffset  int64  `json:"log_end_offset"`
		HighWatermark int64  `json:"high_watermark"`
		LagRecords    int64  `json:"lag_records"`
	} `json:"partitions"`
}

func nodeStatus(t testing.TB, b *Broker) statusDoc {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + b.HTTPAddr + "/v1/status")
	if err != nil {
		t.Fatalf("GET /v1/status: %v", err)
	}
	defer resp.Body.Close()
	var st statusDoc
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("GET /v1/status: %v", err)
	}
	return st
}

// metricValue reads one unlabelled gauge or counter from /metrics.
func metricValue(t testing.TB, b *Broker, name string) float64 {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + b.HTTPAddr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	t.Fatalf("metric %s not exported", name)
	return 0
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("waited %v for %s; last state: %s", d, what, last)
}

// waitCaughtUp waits until every partition of the primary has the same log
// end and high watermark on the standby.
func waitCaughtUp(t testing.TB, primary, standby *Broker) {
	t.Helper()
	waitFor(t, 30*time.Second, "the standby to catch up", func() (bool, string) {
		p, s := nodeStatus(t, primary), nodeStatus(t, standby)
		have := map[string][2]int64{}
		for _, x := range s.Partitions {
			have[fmt.Sprintf("%s-%d", x.Topic, x.Partition)] = [2]int64{x.LogEndOffset, x.HighWatermark}
		}
		for _, x := range p.Partitions {
			k := fmt.Sprintf("%s-%d", x.Topic, x.Partition)
			if got := have[k]; got != [2]int64{x.LogEndOffset, x.HighWatermark} {
				return false, fmt.Sprintf("%s: primary end %d hw %d, standby %v", k, x.LogEndOffset, x.HighWatermark, got)
			}
		}
		return true, ""
	})
}

func produceAll(t testing.TB, cl *kgo.Client, recs []*kgo.Record) {
	t.Helper()
	if err := cl.ProduceSync(testContext(t, 60*time.Second), recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// consumeN reads n records of topic from b, from the start.
func consumeN(t testing.TB, b *Broker, topic string, n int, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	cl := b.Client(t, append([]kgo.Opt{kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)...)
	ctx := testContext(t, 60*time.Second)
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records of %s", len(out), n, topic)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Logf("fetch error: %v", err) })
		out = append(out, fs.Records()...)
	}
	return out
}

// logBatches returns the bytes of the whole batches at the start of a
// segment file (what follows, preallocated space, is not compared).
func logBatches(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pos := 0
	for pos+12 <= len(b) {
		n := int(binary.BigEndian.Uint32(b[pos+8:]))
		if n == 0 || pos+12+n > len(b) {
			break
		}
		pos += 12 + n
	}
	return b[:pos]
}

// compareLogs checks that every segment of every partition of the primary
// holds the same batches on the standby, byte for byte.
func compareLogs(t testing.TB, primary, standby *Broker) (segments int) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(primary.dataDir, "*", "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		rel, _ := filepath.Rel(primary.dataDir, f)
		want := logBatches(t, f)
		got := logBatches(t, filepath.Join(standby.dataDir, rel))
		if !bytes.Equal(want, got) {
			t.Errorf("%s: the primary holds %d bytes of batches, the standby %d, and they differ", rel, len(want), len(got))
		}
		segments++
	}
	return segments
}

// waitAllInSync waits (20 s at most) until the primary counts no
// under-replicated partition: its standby is in sync everywhere.
func waitAllInSync(t *testing.T, primary *Broker, what string) {
	t.Helper()
	waitFor(t, 20*time.Second, what, func() (bool, string) {
		v := metricValue(t, primary, "sluice_under_replicated_partitions")
		return v == 0, fmt.Sprint(v)
	})
}

// valueBatch is an uncompressed batch of one record whose value is v.
func valueBatch(v string) []byte {
	return buildBatch([]rawRecord{{Value: []byte(v)}}, time.Now().UnixMilli(), -1, 0, 0)
}

// createReplicated creates topic on b with replication factor 2 (the pair).
func createReplicated(t *testing.T, b *Broker, topic string, partitions int32) {
	t.Helper()
	if _, err := b.Admin(t).CreateTopic(testContext(t, 30*time.Second), partitions, 2, nil, topic); err != nil {
		t.Fatalf("create %s with replication factor 2: %v", topic, err)
	}
}

// stopIdentical waits until follower has caught up with leader, stops
// both, and checks that their logs hold the same batches.
func stopIdentical(t *testing.T, leader, follower *Broker) {
	t.Helper()
	waitCaughtUp(t, leader, follower)
	leader.Stop(t)
	follower.Stop(t)
	compareLogs(t, leader, follower)
}

func TestStandbyFollowsEveryPartitionByteForByte(t *testing.T) {
	requireOwnBroker(t, "a pair of brokers")
	primary, standby := startPair(t, nil)
	adm := primary.Admin(t)
	ctx := testContext(t, 2*time.Minute)
	plain, big := topicName(t, "plain"), topicName(t, "big")
	if _, err := adm.CreateTopic(ctx, 3, 2, nil, plain); err != nil {
		t.Fatalf("create %s with replication factor 2: %v", plain, err)
	}
	// One record larger than the standby's 1 MiB partition fetch limit:
	// replication must still move past it (Kafka returns a whole batch).
	if _, err := adm.CreateTopic(ctx, 1, -1, map[string]*string{"max.message.bytes": kadm.StringPtr(fmt.Sprint(8 << 20))}, big); err != nil {
		t.Fatal(err)
	}
	cl := primary.Client(t, kgo.ProducerBatchCompression(kgo.ZstdCompression()), kgo.ProducerBatchMaxBytes(8<<20), kgo.MaxBufferedBytes(64<<20))
	var recs []*kgo.Record
	for i := range 3000 {
		recs = append(recs, &kgo.Record{Topic: plain, Key: []byte(fmt.Sprint(i % 17)), Value: []byte(fmt.Sprintf("value-%06d", i))})
	}
	produceAll(t, cl, recs)
	large := bytes.Repeat([]byte("0123456789abcdef"), (3<<20)/16)
	produceAll(t, cl, []*kgo.Record{{Topic: big, Value: []byte("small before")}, {Topic: big, Value: large}, {Topic: big, Value: []byte("small after")}})
	// A group commits offsets: __consumer_offsets is followed too.
	grp := topicName(t, "group")
	gc := primary.Client(t, kgo.ConsumerGroup(grp), kgo.ConsumeTopics(plain), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	got := 0
	for got < len(recs) {
		fs := gc.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("group consumer read %d of %d", got, len(recs))
		}
		got += len(fs.Records())
	}
	if err := gc.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}
	gc.Close()

	waitCaughtUp(t, primary, standby)

	// Metadata, from either node, lists the pair: the primary leads every
	// partition, both are replicas, both in sync.
	for _, node := range []*Broker{primary, standby} {
		md, err := node.Admin(t).Metadata(ctx, plain)
		if err != nil {
			t.Fatal(err)
		}
		if len(md.Brokers) != 2 {
			t.Errorf("Metadata from %s lists %d brokers, want 2", node.Addr, len(md.Brokers))
		}
		for _, p := range md.Topics[plain].Partitions {
			if p.Leader != 1 || !slices.Equal(p.Replicas, []int32{1, 2}) {
				t.Errorf("Metadata from %s: partition %d leader %d replicas %v; want leader 1, replicas [1 2]", node.Addr, p.Partition, p.Leader, p.Replicas)
			}
			if node == primary && !slices.Equal(p.ISR, []int32{1, 2}) {
				t.Errorf("the primary's Metadata: partition %d in-sync %v, want [1 2]", p.Partition, p.ISR)
			}
		}
	}
	if v := metricValue(t, primary, "sluice_under_replicated_partitions"); v != 0 {
		t.Errorf("sluice_under_replicated_partitions = %v with the standby in sync", v)
	}
	checkDashboardPanels(t, primary, "Replication:")

	// A consumer of the standby reads everything, up to the replicated
	// high watermark (Kafka serves consumers from followers since KIP-392).
	fromStandby := consumeN(t, standby, plain, len(recs))
	seen := map[string]bool{}
	for _, r := range fromStandby {
		seen[string(r.Value)] = true
	}
	if len(seen) != len(recs) {
		t.Errorf("the standby served %d distinct records of %d", len(seen), len(recs))
	}
	bigRecs := consumeN(t, standby, big, 3, kgo.FetchMaxBytes(16<<20), kgo.FetchMaxPartitionBytes(16<<20))
	if !bytes.Equal(bigRecs[1].Value, large) {
		t.Errorf("the standby's copy of the 3 MiB record differs")
	}

	// The standby refuses produce; a client given only the standby's
	// address produces to the primary by itself.
	raw := dialRaw(t, standby.Addr)
	code, err := raw.produceRaw(plain, 0, buildBatch([]rawRecord{{Value: []byte("to the standby")}}, time.Now().UnixMilli(), -1, 0, 0))
	if err != nil || code != kerr.NotLeaderForPartition.Code {
		t.Errorf("produce to the standby: code %d, err %v; want NOT_LEADER_OR_FOLLOWER (%d)", code, err, kerr.NotLeaderForPartition.Code)
	}
	viaStandby := standby.Client(t)
	produceAll(t, viaStandby, []*kgo.Record{{Topic: plain, Partition: 0, Value: []byte("bootstrapped on the standby")}})
	waitCaughtUp(t, primary, standby)

	// The standby coordinates no group: group requests sent to it get
	// NOT_COORDINATOR, as a Kafka broker answers for a group it does not
	// coordinate, and an admin listing the groups of the pair (it asks
	// every broker) sees the primary's.
	checkNotCoordinator(t, viaStandby, grp, plain)
	groups, err := standby.Admin(t).ListGroups(ctx)
	if err != nil || !slices.Contains(groups.Groups(), grp) {
		t.Errorf("ListGroups through the pair: %v, err %v; want %s listed", groups.Groups(), err, grp)
	}

	primary.Stop(t)
	standby.Stop(t)
	if n := compareLogs(t, primary, standby); n < 6 {
		t.Errorf("compared %d segments; want every partition's (at least 6)", n)
	}
}

// TestStandbyInSyncRules: while the standby is in sync the high watermark
// and acks=all wait for it; when it stops fetching it leaves the in-sync
// set after replica.lag.time.max.ms, and min.insync.replicas=2 then refuses
// acks=all; when it comes back it catches up and rejoins.
func TestStandbyInSyncRules(t *testing.T) {
	requireOwnBroker(t, "a pair of brokers")
	primary, standby := startPair(t, nil)
	adm := primary.Admin(t)
	ctx := testContext(t, 2*time.Minute)
	strict, loose := topicName(t, "strict"), topicName(t, "loose")
	if _, err := adm.CreateTopic(ctx, 1, 2, map[string]*string{"min.insync.replicas": kadm.StringPtr("2")}, strict); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateTopic(ctx, 1, 2, nil, loose); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the standby in sync on both topics", func() (bool, string) {
		st := nodeStatus(t, primary)
		n := 0
		for _, p := range st.Partitions {
			if (p.Topic == strict || p.Topic == loose) && p.InSync {
				n++
			}
		}
		return n == 2, fmt.Sprintf("%d of 2 in sync", n)
	})
	raw := dialRaw(t, primary.Addr)
	if code, err := raw.produceRaw(strict, 0, valueBatch("in sync")); err != nil || code != 0 {
		t.Fatalf("acks=all with min.insync.replicas=2 and the standby in sync: code %d, err %v", code, err)
	}

	// Freeze the standby: it holds its connection but fetches nothing.
	standby.signal(syscall.SIGSTOP)
	defer standby.signal(syscall.SIGCONT)
	frozen := time.Now()
	if code, err := raw.produceRawAcks(loose, 0, valueBatch("acks=1 while the standby is frozen"), 1); err != nil || code != 0 {
		t.Fatalf("acks=1 with the standby frozen: code %d, err %v", code, err)
	}
	// Over the raw connection to the primary: a client that knows the
	// pair could pick the frozen standby for Metadata and wait out its
	// request timeout.
	if hw := raw.highWatermark(t, loose, 0); hw != 0 && time.Since(frozen) < pairLag {
		t.Errorf("high watermark %d moved past what the in-sync standby has (0) within %v of freezing it", hw, time.Since(frozen))
	}
	// acks=all on the strict topic waits for the standby, which never
	// answers: the primary drops it from the in-sync set after the lag
	// and answers NOT_ENOUGH_REPLICAS_AFTER_APPEND, as Kafka does.
	start := time.Now()
	code, err := raw.produceRaw(strict, 0, valueBatch("waits for the frozen standby"))
	waited := time.Since(start)
	if err != nil || code != kerr.NotEnoughReplicasAfterAppend.Code {
		t.Errorf("acks=all while the in-sync standby is frozen: code %d, err %v; want NOT_ENOUGH_REPLICAS_AFTER_APPEND", code, err)
	}
	if waited < pairLag/2 {
		t.Errorf("acks=all answered after %v, before the standby could have left the in-sync set", waited)
	}
	if code, err := raw.produceRaw(strict, 0, valueBatch("out of sync")); err != nil || code != kerr.NotEnoughReplicas.Code {
		t.Errorf("acks=all with min.insync.replicas=2 and the standby out of sync: code %d, err %v; want NOT_ENOUGH_REPLICAS", code, err)
	}
	if v := metricValue(t, primary, "sluice_under_replicated_partitions"); v < 2 {
		t.Errorf("sluice_under_replicated_partitions = %v with the standby frozen; want at least 2", v)
	}
	// Out of sync, the high watermark no longer waits for it.
	waitFor(t, 10*time.Second, "the high watermark to pass the acks=1 record", func() (bool, string) {
		hw := raw.highWatermark(t, loose, 0)
		return hw == 1, fmt.Sprint(hw)
	})
	mdReq := kmsg.NewPtrMetadataRequest()
	mdReq.Version = 12
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(strict)
	mdReq.Topics = append(mdReq.Topics, mt)
	mdResp, err := raw.roundTrip(mdReq)
	if err != nil {
		t.Fatal(err)
	}
	if isr := mdResp.(*kmsg.MetadataResponse).Topics[0].Partitions[0].ISR; !slices.Equal(isr, []int32{1}) {
		t.Errorf("in-sync replicas with the standby frozen: %v, want [1]", isr)
	}

	// Thaw it: it catches up, rejoins, and acks=all works again.
	standby.signal(syscall.SIGCONT)
	waitCaughtUp(t, primary, standby)
	waitAllInSync(t, primary, "the standby to rejoin")
	if code, err := raw.produceRaw(strict, 0, valueBatch("back in sync")); err != nil || code != 0 {
		t.Errorf("acks=all after the standby rejoined: code %d, err %v", code, err)
	}
	if v := metricValue(t, primary, "sluice_isr_shrinks_total"); v < 2 {
		t.Errorf("sluice_isr_shrinks_total = %v, want at least 2", v)
	}
	// The strict topic holds all four batches (the one answered
	// NOT_ENOUGH_REPLICAS_AFTER_APPEND is in the log, as in Kafka), the
	// refused one is not: offsets 0..2 plus "back in sync".
	recs := consumeN(t, standby, strict, 3)
	var vals []string
	for _, r := range recs {
		vals = append(vals, string(r.Value))
	}
	want := []string{"in sync", "waits for the frozen standby", "back in sync"}
	if !slices.Equal(vals, want) {
		t.Errorf("the strict topic on the standby holds %q, want %q", vals, want)
	}
}

// TestNewPartitionStartsWithTheStandbyInSync: a topic created while the
// standby is live starts with it in the in-sync set, as Kafka's controller
// creates partitions with every live replica in their ISR, so the first
// acks=all record is acknowledged only once the standby has it.
func TestNewPartitionStartsWithTheStandbyInSync(t *testing.T) {
	requireOwnBroker(t, "a pair of brokers")
	primary, standby := startPair(t, nil)
	ctx := testContext(t, time.Minute)
	warm := topicName(t, "warm")
	createReplicated(t, primary, warm, 1)
	waitFor(t, 20*time.Second, "the standby in sync on "+warm, func() (bool, string) {
		for _, p := range nodeStatus(t, primary).Partitions {
			if p.Topic == warm {
				return p.InSync, fmt.Sprintf("%+v", p)
			}
		}
		return false, "not listed"
	})

	fresh := topicName(t, "fresh")
	adm := primary.Admin(t)
	if _, err := adm.CreateTopic(ctx, 2, 2, nil, fresh); err != nil {
		t.Fatal(err)
	}
	// The primary's Metadata (a standby does not know the in-sync set).
	cl := primary.Client(t, kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	mdReq := kmsg.NewPtrMetadataRequest()
	mdReq.Topics = []kmsg.MetadataRequestTopic{{Topic: kmsg.StringPtr(fresh)}}
	resp, err := cl.Broker(1).Request(ctx, mdReq)
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range resp.(*kmsg.MetadataResponse).Topics {
		for _, p := range tp.Partitions {
			if !slices.Equal(p.ISR, []int32{1, 2}) {
				t.Errorf("partition %d of a topic just created: in-sync %v on the primary, want [1 2]", p.Partition, p.ISR)
			}
		}
	}
	produceAll(t, cl, []*kgo.Record{{Topic: fresh, Partition: 0, Value: []byte("first")}, {Topic: fresh, Partition: 1, Value: []byte("first")}})
	// Acknowledged with acks=all: the standby holds both records now.
	held := 0
	for _, p := range nodeStatus(t, standby).Partitions {
		if p.Topic == fresh && p.LogEndOffset >= 1 {
			held++
		}
	}
	if held != 2 {
		t.Errorf("right after acks=all acks, the standby holds the record of %d of the 2 new partitions", held)
	}
}

// TestStandbyRefusesWhatItCannotFollow: each mistake is one clear line and
// a refusal to start.
func TestStandbyRefusesWhatItCannotFollow(t *testing.T) {
	requireOwnBroker(t, "brokers this test starts")
	primary := StartSluice(t, BrokerOptions{})
	bin, err := sluiceBinary()
	if err != nil {
		t.Fatal(err)
	}
	// Something that accepts connections but is no Kafka broker.
	notKafka, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer notKafka.Close()
	go func() {
		for {
			c, err := notKafka.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("HTTP/1.0 400 Bad Request\r\n\r\n"))
			c.Close()
		}
	}()
	otherCluster := t.TempDir()
	os.WriteFile(filepath.Join(otherCluster, "meta.properties"), []byte("version=1\ncluster.id=some-other-cluster\n"), 0o644)
	for _, tc := range []struct {
		name    string
		dataDir string
		args    []string
		want    string
	}{
		{"itself", t.TempDir(), []string{"--listen", "127.0.0.1:39099", "--standby-of", "127.0.0.1:39099"}, "this node's own listener"},
		{"the primary's node id", t.TempDir(), []string{"--node-id", "1", "--standby-of", primary.Addr}, "this node's own id"},
		{"another cluster", otherCluster, []string{"--node-id", "2", "--standby-of", primary.Addr}, "belongs to cluster"},
		{"not a Kafka broker", t.TempDir(), []string{"--node-id", "2", "--standby-of", notKafka.Addr().String()}, "not a Kafka broker sluice can follow"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"serve", "--data-dir", tc.dataDir, "--http", "", "--listen", "127.0.0.1:0"}, tc.args...)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("sluice %s: err %v, want exit status 1; output:\n%s", strings.Join(args, " "), err, out)
			}
			last := lastLines(strings.TrimSpace(string(out)), 1)
			if !strings.Contains(last, tc.want) {
				t.Errorf("last line %q does not say %q", last, tc.want)
			}
		})
	}

	// A replica fetch from a node that is not the registered standby.
	cl := primary.Client(t)
	req := kmsg.NewPtrFetchRequest()
	req.Version = 15
	req.ReplicaState.ID = 7
	req.ReplicaState.Epoch = -1
	req.MaxWaitMillis = 0
	tp := kmsg.NewFetchRequestTopic()
	md, err := primary.Admin(t).Metadata(testContext(t, 30*time.Second), "__consumer_offsets")
	if err != nil {
		t.Fatal(err)
	}
	tp.TopicID = md.Topics["__consumer_offsets"].ID
	pp := kmsg.NewFetchRequestTopicPartition()
	pp.PartitionMaxBytes = 1 << 20
	tp.Partitions = append(tp.Partitions, pp)
	req.Topics = append(req.Topics, tp)
	resp, err := req.RequestWith(testContext(t, 30*time.Second), cl)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Topics) != 1 || resp.Topics[0].Partitions[0].ErrorCode != kerr.NotLeaderForPartition.Code {
		t.Errorf("a replica fetch from unknown node 7 was not refused with NOT_LEADER_OR_FOLLOWER: %+v", resp.Topics)
	}
}

// highWatermark asks ListOffsets (latest) for one partition's high
// watermark.
func (r *rawConn) highWatermark(t testing.TB, topic string, partition int32) int64 {
	t.Helper()
	req := kmsg.NewPtrListOffsetsRequest()
	req.Version = r.version(2, 8)
	lt := kmsg.NewListOffsetsRequestTopic()
	lt.Topic = topic
	lp := kmsg.NewListOffsetsRequestTopicPartition()
	lp.Partition = partition
	lp.Timestamp = -1
	lt.Partitions = append(lt.Partitions, lp)
	req.Topics = append(req.Topics, lt)
	resp, err := r.roundTrip(req)
	if err != nil {
		t.Fatalf("ListOffsets: %v", err)
	}
	p := resp.(*kmsg.ListOffsetsResponse).Topics[0].Partitions[0]
	if p.ErrorCode != 0 {
		t.Fatalf("ListOffsets %s-%d: error %d", topic, partition, p.ErrorCode)
	}
	return p.Offset
}

// roleCommand runs `sluice promote|demote --http ADDR [--force]`.
func roleCommand(t testing.TB, what string, b *Broker, force bool) (string, error) {
	t.Helper()
	bin, err := sluiceBinary()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{what, "--http", b.HTTPAddr}
	if force {
		args = append(args, "--force")
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// ackLog keeps what a producer got acknowledged, per partition, in order.
type ackLog struct {
	mu    sync.Mutex
	acked map[int32][]string
	last  time.Time
	times []time.Time
}

func (a *ackLog) add(r *kgo.Record) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.acked == nil {
		a.acked = map[int32][]string{}
	}
	a.acked[r.Partition] = append(a.acked[r.Partition], string(r.Value))
	a.times = append(a.times, time.Now())
}

// longestGap is the longest time between two consecutive acks at or
// after from: the unavailability window of a role change.
func (a *ackLog) longestGap(from time.Time) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	var gap time.Duration
	prev := from
	for _, at := range a.times {
		if at.Before(from) {
			continue
		}
		gap = max(gap, at.Sub(prev))
		prev = at
	}
	return gap
}

// steadyProducer produces acks=all records to topic at about rate per
// second through a client that knows both nodes, until stop.
func steadyProducer(t *testing.T, nodes []*Broker, topic string, rate int) (acks *ackLog, stop func() int) {
	t.Helper()
	seeds := []string{}
	for _, n := range nodes {
		seeds = append(seeds, n.Addr)
	}
	// MetadataMinAge: franz-go's default (5 s) would hide the broker's
	// failover time behind the client's; Kafka's Java client refreshes
	// after retry.backoff.ms (100 ms).
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.RecordRetries(1000), kgo.RetryTimeout(60*time.Second), kgo.MetadataMinAge(100*time.Millisecond),
		kgo.ProducerLinger(0), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RetryBackoffFn(func(int) time.Duration { return 20 * time.Millisecond }))
	if err != nil {
		t.Fatal(err)
	}
	acks = &ackLog{}
	done := make(chan struct{})
	var wg sync.WaitGroup
	sent := 0
	var failed atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			sent++
			cl.Produce(context.Background(), &kgo.Record{Topic: topic, Value: []byte(fmt.Sprintf("v%06d", i))}, func(r *kgo.Record, err error) {
				if err != nil {
					failed.Add(1)
					t.Logf("produce %s: %v", r.Value, err)
					return
				}
				acks.add(r)
			})
		}
	}()
	return acks, func() int {
		close(done)
		wg.Wait()
		if err := cl.Flush(testContext(t, 60*time.Second)); err != nil {
			t.Errorf("flush: %v", err)
		}
		cl.Close()
		return int(failed.Load())
	}
}

// checkEveryAck reads topic from b and checks that every acknowledged
// record is there once, in order, per partition.
func checkEveryAck(t *testing.T, b *Broker, topic string, acks *ackLog) {
	t.Helper()
	acks.mu.Lock()
	want := map[int32][]string{}
	total := 0
	for p, vs := range acks.acked {
		want[p] = append([]string(nil), vs...)
		total += len(vs)
	}
	acks.mu.Unlock()
	got := map[int32][]string{}
	for _, r := range consumeN(t, b, topic, total) {
		got[r.Partition] = append(got[r.Partition], string(r.Value))
	}
	for p, vs := range want {
		if !slices.Equal(got[p], vs) {
			t.Errorf("partition %d on %s: %d records read, %d acknowledged; first difference at %d", p, b.Addr, len(got[p]), len(vs), firstDiff(got[p], vs))
		}
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestHandOverWithDemote: `sluice demote` hands the primary role to the
// in-sync standby under a steady acks=all load: no acknowledged record is
// lost or duplicated, the clients move by themselves, the first write on
// the new primary comes within 1 s, and the old primary follows the new
// one to an identical log.
func TestHandOverWithDemote(t *testing.T) {
	requireOwnBroker(t, "a pair of brokers")
	primary, standby := startPair(t, nil)
	topic := topicName(t, "handover")
	createReplicated(t, primary, topic, 2)
	acks, stop := steadyProducer(t, []*Broker{primary, standby}, topic, 200)
	time.Sleep(time.Second)
	waitAllInSync(t, primary, "the standby in sync everywhere")
	before := time.Now()
	out, err := roleCommand(t, "demote", primary, false)
	if err != nil {
		t.Fatalf("sluice demote: %v: %s", err, out)
	}
	t.Logf("sluice demote: %s (%v)", out, time.Since(before))
	time.Sleep(2 * time.Second)
	if failed := stop(); failed > 0 {
		t.Errorf("%d produces failed across the hand-over", failed)
	}
	gap := acks.longestGap(before)
	t.Logf("longest gap between acknowledgements across the hand-over: %v", gap)
	if gap > time.Second {
		t.Errorf("no write was acknowledged for %v across the hand-over; want under 1 s", gap)
	}
	if st := nodeStatus(t, standby); st.Role != "primary" {
		t.Errorf("the old standby's role after the hand-over: %s", st.Role)
	}
	if st := nodeStatus(t, primary); st.Role != "standby" || st.Peer == nil || st.Peer.NodeID != 2 {
		t.Errorf("the old primary after the hand-over: role %s, peer %+v; want a standby of node 2", st.Role, st.Peer)
	}
	checkEveryAck(t, standby, topic, acks)
	stopIdentical(t, standby, primary)
}

// TestForcedPromotionAndTheReturnOfTheOldPrimary: promote refuses while
// the primary still answers as primary; --force promotes anyway. The old
// primary, which took writes the new one never saw, is then restarted as
// a standby of the new one: it truncates that divergent tail and ends with
// the new primary's log, byte for byte.
func TestForcedPromotionAndTheReturnOfTheOldPrimary(t *testing.T) {
	requireOwnBroker(t, "a pair of brokers")
	primary, standby := startPair(t, nil)
	topic := topicName(t, "diverge")
	createReplicated(t, primary, topic, 1)
	before := []*kgo.Record{}
	for i := range 50 {
		before = append(before, &kgo.Record{Topic: topic, Value: []byte(fmt.Sprintf("both-%d", i))})
	}
	produceAll(t, primary.Client(t), before)
	waitCaughtUp(t, primary, standby)

	epochBefore := nodeStatus(t, primary).LeaderEpoch
	if out, err := roleCommand(t, "promote", standby, false); err == nil || !strings.Contains(out, "still primary") {
		t.Fatalf("sluice promote with the primary serving: err %v, output %q; want a refusal", err, out)
	}
	// The operator insists (the primary is, say, about to be cut off).
	out, err := roleCommand(t, "promote", standby, true)
	if err != nil {
		t.Fatalf("sluice promote --force: %v: %s", err, out)
	}
	if st := nodeStatus(t, standby); st.Role != "primary" || st.LeaderEpoch != epochBefore+1 {
		t.Fatalf("after the forced promotion: role %s epoch %d; want primary at epoch %d", st.Role, st.LeaderEpoch, epochBefore+1)
	}
	// The old primary still takes writes under epoch 0 (nobody told it):
	// these are the divergent tail. The new primary takes its own.
	raw := dialRaw(t, primary.Addr)
	for i := range 5 {
		if code, err := raw.produceRawAcks(topic, 0, buildBatch([]rawRecord{{Value: []byte(fmt.Sprintf("old-only-%d", i))}}, time.Now().UnixMilli(), -1, 0, 0), 1); err != nil || code != 0 {
			t.Fatalf("write to the old primary: %d %v", code, err)
		}
	}
	rawNew := dialRaw(t, standby.Addr)
	for i := range 3 {
		if code, err := rawNew.produceRaw(topic, 0, buildBatch([]rawRecord{{Value: []byte(fmt.Sprintf("new-%d", i))}}, time.Now().UnixMilli(), -1, 0, 0)); err != nil || code != 0 {
			t.Fatalf("write to the new primary: %d %v", code, err)
		}
	}
	// The old primary comes back as the new one's standby.
	primary.Stop(t)
	primary.opts.Flags = []string{"--node-id", "1", "--standby-of", standby.Addr}
	if err := primary.start(); err != nil {
		t.Fatalf("restarting the old primary as a standby: %v", err)
	}
	waitCaughtUp(t, standby, primary)
	vals := []string{}
	for _, r := range consumeN(t, primary, topic, 53) {
		vals = append(vals, string(r.Value))
	}
	for _, v := range vals {
		if strings.HasPrefix(v, "old-only") {
			t.Errorf("the returning node still serves %q, written only to it after the promotion", v)
		}
	}
	if vals[50] != "new-0" || vals[52] != "new-2" {
		t.Errorf("the returning node's log past the shared prefix: %q", vals[50:])
	}
	if b, err := os.ReadFile(filepath.Join(primary.dataDir, topic+"-0", "leader-epoch-checkpoint")); err != nil || !strings.Contains(string(b), fmt.Sprintf("\n%d 50\n", epochBefore+1)) {
		t.Errorf("the returning node's epoch file: %q, %v; want epoch %d from offset 50", b, err, epochBefore+1)
	}
	stopIdentical(t, standby, primary)
}

// TestPromotionAfterThePrimaryDies: SIGKILL the primary under a steady
// acks=all load, promote the standby (no --force: the primary is gone),
// and every record acknowledged while the standby was in sync is there.
func TestPromotionAfterThePrimaryDies(t *testing.T) {
	requireOwnBroker(t, "a pair of brokers")
	primary, standby := startPair(t, nil)
	topic := topicName(t, "dies")
	createReplicated(t, primary, topic, 2)
	acks, stop := steadyProducer(t, []*Broker{primary, standby}, topic, 200)
	time.Sleep(time.Second)
	waitAllInSync(t, primary, "the standby in sync everywhere")
	time.Sleep(500 * time.Millisecond)
	primary.Kill(t)
	killed := time.Now()
	out, err := roleCommand(t, "promote", standby, false)
	if err != nil {
		t.Fatalf("sluice promote after the primary died: %v: %s", err, out)
	}
	t.Logf("promoted %v after the kill: %s", time.Since(killed), out)
	time.Sleep(2 * time.Second)
	if failed := stop(); failed > 0 {
		t.Errorf("%d produces failed across the failover", failed)
	}
	t.Logf("longest gap between acknowledgements across the failover: %v", acks.longestGap(killed.Add(-100*time.Millisecond)))
	checkEveryAck(t, standby, topic, acks)
}

// TestConsumerInTheStandbysRackReadsFromIt: KIP-392 follower fetching. A
// consumer whose client.rack is the standby's broker.rack is sent there by
// the primary and reads everything from the standby.
func TestConsumerInTheStandbysRackReadsFromIt(t *testing.T) {
	requireOwnBroker(t, "a pair of brokers")
	primary, standby := startPairRacks(t, nil, "rack-a", "rack-b")
	topic := topicName(t, "rack")
	createReplicated(t, primary, topic, 2)
	var recs []*kgo.Record
	for i := range 500 {
		recs = append(recs, &kgo.Record{Topic: topic, Value: []byte(fmt.Sprintf("r%d", i))})
	}
	produceAll(t, primary.Client(t), recs)
	waitCaughtUp(t, primary, standby)
	got := consumeN(t, primary, topic, len(recs), kgo.Rack("rack-b"))
	if len(got) != len(recs) {
		t.Fatalf("read %d of %d", len(got), len(recs))
	}
	fromStandby := familyTotal(t, standby, "sluice_topic_records_out_total", topic)
	fromPrimary := familyTotal(t, primary, "sluice_topic_records_out_total", topic)
	t.Logf("records served: standby %v, primary %v", fromStandby, fromPrimary)
	if fromStandby < float64(len(recs)) || fromPrimary != 0 {
		t.Errorf("a rack-b consumer read %v records from the standby and %v from the primary; want all %d from the standby", fromStandby, fromPrimary, len(recs))
	}
	// A consumer of another rack reads from the primary.
	consumeN(t, primary, topic, len(recs), kgo.Rack("rack-c"))
	if v := familyTotal(t, primary, "sluice_topic_records_out_total", topic); v < float64(len(recs)) {
		t.Errorf("a rack-c consumer read %v records from the primary; want %d", v, len(recs))
	}
}

// familyTotal sums a labelled counter's series for one topic.
func familyTotal(t *testing.T, b *Broker, family, topic string) float64 {
	t.Helper()
	total := 0.0
	for name, v := range scrape(t, testContext(t, 30*time.Second), b) {
		if strings.HasPrefix(name, family+"{") && strings.Contains(name, `topic="`+topic+`"`) {
			total += v
		}
	}
	return total
}

// TestStandbyKilledThenCatchesUp: SIGKILL the standby under load, keep
// producing while it is down, restart it: it resumes from its own log end
// (nothing refetched), catches up, rejoins the in-sync set, and both logs
// end identical.
func TestStandbyKilledThenCatchesUp(t *testing.T) {
	requireOwnBroker(t, "a pair of brokers")
	primary, standby := startPair(t, nil)
	topic, bulk := topicName(t, "catchup"), topicName(t, "bulk")
	createReplicated(t, primary, topic, 3)
	if _, err := primary.Admin(t).CreateTopic(testContext(t, 30*time.Second), 2, 2, map[string]*string{"segment.bytes": kadm.StringPtr(fmt.Sprint(4 << 20))}, bulk); err != nil {
		t.Fatal(err)
	}
	acks, stop := steadyProducer(t, []*Broker{primary, standby}, topic, 200)
	time.Sleep(time.Second)
	standby.Kill(t)
	// The backlog: 64 MiB more while the standby is down.
	cl := primary.Client(t, kgo.ProducerBatchMaxBytes(1<<20), kgo.ProducerBatchCompression(kgo.NoCompression()))
	value := make([]byte, 16<<10)
	var recs []*kgo.Record
	for range 4096 {
		rand.Read(value)
		recs = append(recs, &kgo.Record{Topic: bulk, Value: bytes.Clone(value)})
	}
	produceAll(t, cl, recs)
	if err := standby.start(); err != nil {
		t.Fatalf("restarting the standby: %v", err)
	}
	restarted := time.Now()
	waitCaughtUp(t, primary, standby)
	t.Logf("the standby caught up with a 64 MiB backlog %v after its restart", time.Since(restarted))
	waitAllInSync(t, primary, "the standby to rejoin the in-sync set")
	if failed := stop(); failed > 0 {
		t.Errorf("%d produces failed", failed)
	}
	checkEveryAck(t, standby, topic, acks)
	stopIdentical(t, primary, standby)
}

// TestStandbyDiskFull: the standby's disk fills while the primary's does
// not. The standby stays a standby and keeps retrying; the primary drops it
// from the in-sync set and goes on taking acks=all writes. Once space
// returns (here: the operator deletes a file), the standby catches up and
// rejoins, without a restart.
func TestStandbyDiskFull(t *testing.T) {
	requireOwnBroker(t, "a standby on a small file system")
	cfg := defaultBrokerConfig()
	cfg["replica.lag.time.max.ms"] = fmt.Sprint(pairLag.Milliseconds())
	primary := StartSluice(t, BrokerOptions{Config: cfg})
	var ballast string
	standby := startSluiceWith(t, BrokerOptions{Config: cfg, Flags: []string{"--node-id", "2", "--standby-of", primary.Addr}}, func(b *Broker) error {
		mountImage(t, "ext4", 96, b.dataDir)
		ballast = filepath.Join(b.dataDir, "ballast")
		return os.WriteFile(ballast, make([]byte, 48<<20), 0o644)
	})
	topic := topicName(t, "standbyfull")
	adm := primary.Admin(t)
	ctx := testContext(t, 3*time.Minute)
	if _, err := adm.CreateTopic(ctx, 1, 2, map[string]*string{"segment.bytes": kadm.StringPtr(fmt.Sprint(1 << 20))}, topic); err != nil {
		t.Fatal(err)
	}
	cl := primary.Client(t, kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerBatchMaxBytes(1<<20), kgo.ProducerLinger(0), kgo.ProducerBatchCompression(kgo.NoCompression()))
	value := make([]byte, 64<<10)
	var acked int
	produce := func(n int) {
		var recs []*kgo.Record
		for range n {
			rand.Read(value)
			recs = append(recs, &kgo.Record{Topic: topic, Value: bytes.Clone(value)})
		}
		produceAll(t, cl, recs)
		acked += n
	}
	// 64 MiB: more than the 48 MiB the standby's disk has left.
	for range 4 {
		produce(256)
	}
	waitFor(t, 60*time.Second, "the standby's disk to fill", func() (bool, string) {
		code, body := readyz(t, standby)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "disk_full"), body
	})
	waitFor(t, 30*time.Second, "the standby to leave the topic's in-sync set", func() (bool, string) {
		for _, p := range nodeStatus(t, primary).Partitions {
			if p.Topic == topic {
				return !p.InSync, fmt.Sprintf("in sync %v, lag %d", p.InSync, p.LagRecords)
			}
		}
		return false, "no partition"
	})
	produce(16) // acks=all still answered, by the primary alone
	if st := nodeStatus(t, standby); st.Role != "standby" {
		t.Fatalf("the standby with a full disk is %s", st.Role)
	}
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	waitCaughtUp(t, primary, standby)
	waitFor(t, 30*time.Second, "the standby to rejoin the in-sync set", func() (bool, string) {
		v := metricValue(t, primary, "sluice_under_replicated_partitions")
		return v == 0, fmt.Sprint(v)
	})
	if got := len(consumeN(t, standby, topic, acked)); got < acked {
		t.Errorf("the standby serves %d records, %d were acknowledged", got, acked)
	}
}

// TestStandbyStartsOverWhenRetentionPassedIt: while the standby is down,
// retention on the primary deletes the segments holding the offsets it
// would fetch next. On its return it starts over at the primary's log
// start and catches up.
func TestStandbyStartsOverWhenRetentionPassedIt(t *testing.T) {
	requireOwnBroker(t, "a pair of brokers")
	primary, standby := startPair(t, map[string]string{"log.retention.check.interval.ms": "300"})
	topic := topicName(t, "passed")
	adm := primary.Admin(t)
	ctx := testContext(t, 2*time.Minute)
	if _, err := adm.CreateTopic(ctx, 1, 2, map[string]*string{"segment.bytes": kadm.StringPtr(fmt.Sprint(1 << 20)), "retention.bytes": kadm.StringPtr(fmt.Sprint(4 << 20))}, topic); err != nil {
		t.Fatal(err)
	}
	cl := primary.Client(t, kgo.ProducerBatchMaxBytes(1<<20), kgo.ProducerBatchCompression(kgo.NoCompression()))
	value := make([]byte, 64<<10)
	produce := func(n int) {
		var recs []*kgo.Record
		for range n {
			rand.Read(value)
			recs = append(recs, &kgo.Record{Topic: topic, Value: bytes.Clone(value)})
		}
		produceAll(t, cl, recs)
	}
	produce(16)
	waitCaughtUp(t, primary, standby)
	standby.Kill(t)
	produce(320) // 20 MiB: retention keeps 4
	waitFor(t, 20*time.Second, "retention on the primary", func() (bool, string) {
		offs, err := adm.ListStartOffsets(ctx, topic)
		if err != nil {
			return false, err.Error()
		}
		o, _ := offs.Lookup(topic, 0)
		return o.Offset > 16, fmt.Sprint(o.Offset)
	})
	if err := standby.start(); err != nil {
		t.Fatal(err)
	}
	waitCaughtUp(t, primary, standby)
	if !strings.Contains(readFrom(standby.logPath, 0, 1_000_000), "starting over there") {
		t.Errorf("the standby caught up without starting over at the primary's log start")
	}
}

// TestTopicsJSONMigratesIntoTheMetadataLog: a data directory of an earlier
// version keeps its catalogue in topics.json; the first start moves it
// into the metadata log (same ids, partitions, configs), keeps the file as
// topics.json.migrated, and a standby then receives it with the log.
func TestTopicsJSONMigratesIntoTheMetadataLog(t *testing.T) {
	requireOwnBroker(t, "a data directory prepared before the start")
	id := [16]byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	legacy := map[string]any{"topics": []map[string]any{{
		"name": "old-topic", "id": id,
		"partitions": []map[string]any{{"index": 0, "shard": 0}, {"index": 1, "shard": 1}, {"index": 2, "shard": 0}},
		"configs":    map[string]string{"retention.ms": "3600000"},
	}}}
	doc, err := json.Marshal(legacy)
	if err != nil {
		t.Fatal(err)
	}
	cfg := defaultBrokerConfig()
	cfg["replica.lag.time.max.ms"] = fmt.Sprint(pairLag.Milliseconds())
	primary := startSluiceWith(t, BrokerOptions{Config: cfg}, func(b *Broker) error {
		return os.WriteFile(filepath.Join(b.dataDir, "topics.json"), doc, 0o644)
	})
	check := func(b *Broker) {
		t.Helper()
		ctx := testContext(t, 30*time.Second)
		md, err := b.Admin(t).Metadata(ctx, "old-topic")
		if err != nil {
			t.Fatal(err)
		}
		td := md.Topics["old-topic"]
		if td.Err != nil || len(td.Partitions) != 3 || [16]byte(td.ID) != id {
			t.Fatalf("old-topic on %s: err %v, %d partitions, id %x; want 3 partitions and id %x", b.Addr, td.Err, len(td.Partitions), td.ID, id)
		}
		rc, err := b.Admin(t).DescribeTopicConfigs(ctx, "old-topic")
		if err != nil {
			t.Fatal(err)
		}
		v, err := rc.On("old-topic", nil)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, c := range v.Configs {
			if c.Key == "retention.ms" && c.Value != nil && *c.Value == "3600000" {
				found = true
			}
		}
		if !found {
			t.Errorf("old-topic on %s lost its retention.ms override", b.Addr)
		}
	}
	check(primary)
	if _, err := os.Stat(filepath.Join(primary.dataDir, "topics.json.migrated")); err != nil {
		t.Errorf("topics.json was not kept as topics.json.migrated: %v", err)
	}
	primary.Stop(t)
	if err := primary.start(); err != nil {
		t.Fatal(err)
	}
	check(primary)
	standby := StartSluice(t, BrokerOptions{Config: cfg, Flags: []string{"--node-id", "2", "--standby-of", primary.Addr}})
	waitFor(t, 20*time.Second, "the standby to follow old-topic", func() (bool, string) {
		n := 0
		for _, p := range nodeStatus(t, standby).Partitions {
			if p.Topic == "old-topic" {
				n++
			}
		}
		return n == 3, fmt.Sprint(n)
	})
	check(standby)
}

// checkNotCoordinator sends the standby (node 2) one request of each group
// API a client sends to a coordinator and wants NOT_COORDINATOR in each.
func checkNotCoordinator(t *testing.T, cl *kgo.Client, group, topic string) {
	t.Helper()
	ctx := testContext(t, 30*time.Second)
	node := cl.Broker(2)
	want := kerr.NotCoordinator.Code
	check := func(what string, req kmsg.Request, code func(kmsg.Response) int16) {
		t.Helper()
		resp, err := node.Request(ctx, req)
		if err != nil {
			t.Errorf("%s to the standby: %v; want an answer", what, err)
			return
		}
		if got := code(resp); got != want {
			t.Errorf("%s to the standby: error %d, want NOT_COORDINATOR (%d)", what, got, want)
		}
	}
	join := kmsg.NewPtrJoinGroupRequest()
	join.Group, join.ProtocolType, join.SessionTimeoutMillis, join.RebalanceTimeoutMillis = group, "consumer", 10000, 10000
	join.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: []byte{}}}
	check("JoinGroup", join, func(r kmsg.Response) int16 { return r.(*kmsg.JoinGroupResponse).ErrorCode })
	hb := kmsg.NewPtrHeartbeatRequest()
	hb.Group, hb.MemberID = group, "m"
	check("Heartbeat", hb, func(r kmsg.Response) int16 { return r.(*kmsg.HeartbeatResponse).ErrorCode })
	commit := kmsg.NewPtrOffsetCommitRequest()
	commit.Group, commit.Generation = group, -1
	commit.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: topic, Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 1}}}}
	check("OffsetCommit", commit, func(r kmsg.Response) int16 { return r.(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode })
	fetch := kmsg.NewPtrOffsetFetchRequest()
	fetch.Groups = []kmsg.OffsetFetchRequestGroup{{Group: group}}
	check("OffsetFetch", fetch, func(r kmsg.Response) int16 {
		resp := r.(*kmsg.OffsetFetchResponse)
		if len(resp.Groups) == 1 {
			return resp.Groups[0].ErrorCode
		}
		return resp.ErrorCode
	})
	describe := kmsg.NewPtrDescribeGroupsRequest()
	describe.Groups = []string{group}
	check("DescribeGroups", describe, func(r kmsg.Response) int16 { return r.(*kmsg.DescribeGroupsResponse).Groups[0].ErrorCode })
	cgh := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	cgh.Group, cgh.MemberEpoch, cgh.RebalanceTimeoutMillis, cgh.SubscribedTopicNames = group+"-848", 0, 10000, []string{topic}
	check("ConsumerGroupHeartbeat", cgh, func(r kmsg.Response) int16 { return r.(*kmsg.ConsumerGroupHeartbeatResponse).ErrorCode })
}
