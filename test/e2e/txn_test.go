package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-broker/sluice/wire/compress"
	"github.com/sluice-broker/sluice/wire/records"
)

// createTopic creates topic with partitions partitions on b.
func createTopic(t *testing.T, b *Broker, topic string, partitions int32) {
	t.Helper()
	if _, err := b.Admin(t).CreateTopic(testContext(t, 30*time.Second), partitions, -1, nil, topic); err != nil {
		t.Fatalf("create %s: %v", topic, err)
	}
}

// txnProduce produces values in one transaction of cl and ends it.
func txnProduce(t *testing.T, cl *kgo.Client, topic string, commit bool, values ...string) {
	t.Helper()
	ctx := testContext(t, 30*time.Second)
	if err := cl.BeginTransaction(); err != nil {
		t.Fatalf("begin: %v", err)
	}
	var recs []*kgo.Record
	for _, v := range values {
		recs = append(recs, &kgo.Record{Topic: topic, Value: []byte(v)})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce in a transaction: %v", err)
	}
	if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
		t.Fatalf("end transaction (commit %v): %v", commit, err)
	}
}

// readValues reads topic from the start until n records came, with the
// given isolation, and returns their values.
func readValues(t *testing.T, b *Broker, topic string, n int, isolation kgo.IsolationLevel) []string {
	t.Helper()
	var out []string
	for _, r := range consumeN(t, b, topic, n, kgo.FetchIsolationLevel(isolation)) {
		out = append(out, string(r.Value))
	}
	return out
}

// Committed transactions are read by read_committed consumers, aborted
// ones are not (they are by read_uncommitted ones), and a transaction left
// open holds read_committed readers back at its first offset until it
// commits.
func TestTransactionsCommitAndAbort(t *testing.T) {
	b := Shared(t)
	topic := topicName(t, "txn")
	createTopic(t, b, topic, 1)
	cl := b.Client(t, kgo.TransactionalID(topic+"-producer"), kgo.TransactionTimeout(30*time.Second))
	txnProduce(t, cl, topic, true, "c1", "c2", "c3")
	txnProduce(t, cl, topic, false, "a1", "a2")
	txnProduce(t, cl, topic, true, "c4")

	if got := readValues(t, b, topic, 4, kgo.ReadCommitted()); !slices.Equal(got, []string{"c1", "c2", "c3", "c4"}) {
		t.Fatalf("read_committed: %q", got)
	}
	if got := readValues(t, b, topic, 6, kgo.ReadUncommitted()); !slices.Equal(got, []string{"c1", "c2", "c3", "a1", "a2", "c4"}) {
		t.Fatalf("read_uncommitted: %q", got)
	}

	// An open transaction: read_committed stops before it.
	ctx := testContext(t, 30*time.Second)
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("o1")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	adm := b.Admin(t)
	committedEnd := func() int64 {
		ends, err := adm.ListCommittedOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		o, _ := ends.Lookup(topic, 0)
		return o.Offset
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup(topic, 0)
	lso := committedEnd()
	if lso >= end.Offset {
		t.Fatalf("with a transaction open the read_committed end is %d, the end %d: want it before", lso, end.Offset)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	if got := readValues(t, b, topic, 5, kgo.ReadCommitted()); got[4] != "o1" {
		t.Fatalf("read_committed after the commit: %q", got)
	}
}

// A second producer with the same transactional id fences the first: its
// open transaction is aborted and its next end fails.
func TestTransactionalProducerFenced(t *testing.T) {
	b := Shared(t)
	topic := topicName(t, "fence")
	createTopic(t, b, topic, 1)
	id := topic + "-producer"
	old := b.Client(t, kgo.TransactionalID(id))
	ctx := testContext(t, time.Minute)
	if err := old.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := old.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("zombie")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	fresh := b.Client(t, kgo.TransactionalID(id))
	txnProduce(t, fresh, topic, true, "fresh")
	err := old.EndTransaction(ctx, kgo.TryCommit)
	if err == nil {
		t.Fatal("the fenced producer committed")
	}
	if !errors.Is(err, kerr.ProducerFenced) && !errors.Is(err, kerr.InvalidProducerEpoch) && !errors.Is(err, kerr.InvalidProducerIDMapping) {
		t.Logf("fenced producer's error: %v", err)
	}
	if got := readValues(t, b, topic, 1, kgo.ReadCommitted()); !slices.Equal(got, []string{"fresh"}) {
		t.Fatalf("read_committed: %q, want only the fresh producer's record", got)
	}
	// kafka-transactions.sh's view: describe and list.
	adm := b.Admin(t)
	described, err := adm.DescribeTransactions(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	d, ok := described[id]
	if !ok || d.Err != nil || d.State != "CompleteCommit" {
		t.Fatalf("describe %s: %+v", id, d)
	}
	listed, err := adm.ListTransactions(ctx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := listed[id]; !ok {
		t.Fatalf("list: %v lacks %s", listed.TransactionalIDs(), id)
	}
}

// Transactional records the producer's transaction does not allow are
// refused whole: without a transactional id in the request, and to a
// partition not added to the transaction (Kafka 4's verification).
func TestTransactionalProduceVerified(t *testing.T) {
	b := Shared(t)
	topic := topicName(t, "verify")
	createTopic(t, b, topic, 2)
	id := topic + "-producer"
	cl := b.Client(t, kgo.TransactionalID(id), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx := testContext(t, time.Minute)
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: 0, Value: []byte("in")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	pid, epoch, err := cl.ProducerID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	raw := b.Client(t)
	topics, err := b.Admin(t).ListTopics(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	topicID := topics[topic].ID // Produce v13+ names topics by id
	send := func(txnID *string, partition int32, seq int32) int16 {
		t.Helper()
		h := records.Header{ProducerID: pid, ProducerEpoch: epoch, BaseSequence: seq, BaseTimestamp: time.Now().UnixMilli(), Attributes: records.AttrTransactional}
		set, err := records.AppendBatch(nil, h, []records.Record{{Value: []byte("sneaked in")}}, compress.None)
		if err != nil {
			t.Fatal(err)
		}
		req := kmsg.NewPtrProduceRequest()
		req.TransactionID, req.Acks, req.TimeoutMillis = txnID, -1, 10000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic, rt.TopicID = topic, topicID
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Partition, rp.Records = partition, set
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := raw.Request(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode
	}
	if code := send(nil, 0, 1); code != kerr.TransactionalIDAuthorizationFailed.Code {
		t.Errorf("transactional records without a transactional id: error %d, want TRANSACTIONAL_ID_AUTHORIZATION_FAILED", code)
	}
	if b.External {
		// Kafka 4 with transaction.version 2 (its default) adds the
		// partition to the transaction on the produce's behalf; sluice
		// serves transaction.version 1, where clients add it first.
		t.Log("not checked against an external broker: its transaction.version may add partitions implicitly")
		return
	}
	if code := send(&id, 1, 0); code != kerr.InvalidTxnState.Code {
		t.Errorf("transactional records to a partition not in the transaction: error %d, want INVALID_TXN_STATE", code)
	}
	if err := cl.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	if got := readValues(t, b, topic, 1, kgo.ReadUncommitted()); !slices.Equal(got, []string{"in"}) {
		t.Fatalf("what was appended: %q", got)
	}
}

// copyOnce runs a consume-transform-produce session (franz-go's
// GroupTransactSession: read_committed input, output and offsets in one
// transaction) until it has copied want records from in to out, or the
// input is idle for a while; it returns how many it copied.
func copyOnce(t *testing.T, b *Broker, id, group, in, out string, want int) int {
	t.Helper()
	ctx := testContext(t, time.Minute)
	sess, err := kgo.NewGroupTransactSession(
		kgo.SeedBrokers(b.Addr), kgo.TransactionalID(id), kgo.ConsumerGroup(group), kgo.ConsumeTopics(in),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(), kgo.FetchMaxWait(200*time.Millisecond), kgo.DefaultProduceTopic(out),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	copied, idle := 0, 0
	for copied < want && idle < 10 {
		fs := sess.PollFetches(ctx)
		if err := fs.Err0(); err != nil && ctx.Err() != nil {
			t.Fatalf("poll: %v", err)
		}
		recs := fs.Records()
		if len(recs) == 0 {
			idle++
			continue
		}
		idle = 0
		if err := sess.Begin(); err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			sess.Produce(ctx, &kgo.Record{Value: append([]byte("copy of "), r.Value...)}, func(_ *kgo.Record, err error) {
				if err != nil {
					t.Errorf("produce: %v", err)
				}
			})
		}
		committed, err := sess.End(ctx, kgo.TryCommit)
		if err != nil {
			t.Fatalf("end: %v", err)
		}
		if committed {
			copied += len(recs)
		}
	}
	return copied
}

// Consume-transform-produce, exactly once: the output and the input
// offsets commit together (AddOffsetsToTxn, TxnOffsetCommit); a second
// session of the same group starts where the first committed, so nothing
// is copied twice and nothing is lost.
func TestConsumeTransformProduceExactlyOnce(t *testing.T) {
	b := Shared(t)
	in, out := topicName(t, "in"), topicName(t, "out")
	createTopic(t, b, in, 2)
	createTopic(t, b, out, 1)
	group, id := topicName(t, "group"), topicName(t, "copier")
	producer := b.Client(t)
	var recs []*kgo.Record
	for i := range 300 {
		recs = append(recs, &kgo.Record{Topic: in, Value: []byte(fmt.Sprintf("r%03d", i))})
	}
	produceAll(t, producer, recs[:200])
	copied := copyOnce(t, b, id, group, in, out, 200)
	produceAll(t, producer, recs[200:])
	copied += copyOnce(t, b, id, group, in, out, 100)
	if copied != 300 {
		t.Fatalf("copied %d records in committed transactions, want 300", copied)
	}
	got := readValues(t, b, out, 300, kgo.ReadCommitted())
	seen := map[string]int{}
	for _, v := range got {
		seen[v]++
	}
	for _, r := range recs {
		if n := seen["copy of "+string(r.Value)]; n != 1 {
			t.Errorf("%s copied %d times", r.Value, n)
		}
	}
	offsets, err := b.Admin(t).FetchOffsets(testContext(t, 30*time.Second), group)
	if err != nil {
		t.Fatal(err)
	}
	total := int64(0)
	offsets.Each(func(o kadm.OffsetResponse) { total += o.At })
	if total != 300 {
		t.Fatalf("the group's committed offsets sum to %d, want 300", total)
	}
}

// The Java client's transactions: initTransactions, sendOffsetsToTransaction,
// an abort then commits, with a read_committed consumer; what it commits is
// read once by read_committed readers, what it aborted only by
// read_uncommitted ones, and the group's offsets are the input's end.
func TestJavaClientTransactions(t *testing.T) {
	b := Shared(t)
	java := &javaClient{b: b, classpath: prepareJava(t)}
	in, out := topicName(t, "jin"), topicName(t, "jout")
	createTopic(t, b, in, 1)
	createTopic(t, b, out, 1)
	var recs []*kgo.Record
	for i := range 50 {
		recs = append(recs, &kgo.Record{Topic: in, Value: []byte(fmt.Sprintf("j%02d", i))})
	}
	produceAll(t, b.Client(t), recs)
	group := topicName(t, "jgroup")
	lines := jsonLines(t, "java txn-copy", java.run(t, "txn-copy", "--in", in, "--out", out, "--group", group, "--id", group+"-txn", "--count", "50"))
	var res struct{ Copied, Aborted int }
	if len(lines) != 1 || json.Unmarshal(lines[0], &res) != nil || res.Copied != 50 || res.Aborted == 0 {
		t.Fatalf("java txn-copy: %s", lines)
	}
	committed := readValues(t, b, out, 50, kgo.ReadCommitted())
	seen := map[string]int{}
	for _, v := range committed {
		seen[v]++
	}
	for _, r := range recs {
		if n := seen["java copy of "+string(r.Value)]; n != 1 {
			t.Errorf("%s: %d committed copies", r.Value, n)
		}
	}
	if all := readValues(t, b, out, 50+res.Aborted, kgo.ReadUncommitted()); len(all) != 50+res.Aborted {
		t.Fatalf("read_uncommitted read %d records, want the %d committed and %d aborted", len(all), 50, res.Aborted)
	}
	offsets, err := b.Admin(t).FetchOffsets(testContext(t, 30*time.Second), group)
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := offsets.Lookup(in, 0); !ok || o.At != 50 {
		t.Fatalf("the group's committed offset: %+v", o)
	}
}

// kafkaTools returns the classpath of Kafka's command-line tools, cached
// by .ci/install-deps ($SLUICE_KAFKA_TOOLS, default
// $SLUICE_CACHE/kafka-tools-4.3.1).
func kafkaTools(t *testing.T) string {
	t.Helper()
	_, err := exec.LookPath("java")
	requireTool(t, err == nil, "Kafka's command-line tools", "java is not on PATH")
	dir := os.Getenv("SLUICE_KAFKA_TOOLS")
	if dir == "" {
		dir = filepath.Join(cacheRoot(), "kafka-tools-4.3.1")
	}
	jars, _ := filepath.Glob(filepath.Join(dir, "kafka-tools-*.jar"))
	requireTool(t, len(jars) > 0, "Kafka's command-line tools", "no kafka-tools jar in "+dir+" (run .ci/install-deps)")
	return filepath.Join(dir, "*")
}

// kafka-transactions.sh (its main class) lists and describes an open
// transaction.
func TestKafkaTransactionsTool(t *testing.T) {
	b := Shared(t)
	cp := kafkaTools(t)
	topic := topicName(t, "tool")
	createTopic(t, b, topic, 1)
	id := topic + "-producer"
	cl := b.Client(t, kgo.TransactionalID(id))
	ctx := testContext(t, time.Minute)
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("open")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	tool := func(args ...string) string {
		t.Helper()
		full := append([]string{"-cp", cp, "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
			"org.apache.kafka.tools.TransactionsCommand", "--bootstrap-server", b.Addr}, args...)
		return string(runCommand(t, time.Minute, "java", full...))
	}
	if out := tool("list"); !strings.Contains(out, id) || !strings.Contains(out, "Ongoing") {
		t.Fatalf("kafka-transactions.sh list does not show %s Ongoing:\n%s", id, out)
	}
	out := tool("describe", "--transactional-id", id)
	if !strings.Contains(out, "Ongoing") || !strings.Contains(out, topic+"-0") {
		t.Fatalf("kafka-transactions.sh describe:\n%s", out)
	}
	// describe-producers: the producer, its open transaction from offset 0.
	pid, _, err := cl.ProducerID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out = tool("describe-producers", "--topic", topic, "--partition", "0")
	found := false
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && f[0] == fmt.Sprint(pid) {
			found = true
			if f[len(f)-1] != "0" {
				t.Errorf("describe-producers: the open transaction starts at %s, want 0:\n%s", f[len(f)-1], out)
			}
		}
	}
	if !found {
		t.Fatalf("describe-producers does not list producer %d:\n%s", pid, out)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	if out := tool("describe", "--transactional-id", id); !strings.Contains(out, "CompleteCommit") {
		t.Fatalf("kafka-transactions.sh describe after the commit:\n%s", out)
	}
}

// Transactional producers under a SIGKILL loop: in each round a producer
// of the same transactional id commits some transactions, aborts others
// and leaves one open, and the broker is killed. After every restart
// nothing committed is lost or duplicated, nothing aborted (or left open
// at the kill) is read by read_committed readers, and the last stable
// offset reaches the log end once the next instance has fenced the open
// transaction.
func TestTransactionsSurviveSIGKILL(t *testing.T) {
	requireOwnBroker(t, "a broker killed with SIGKILL")
	b := StartSluice(t, BrokerOptions{})
	topic := topicName(t, "kill")
	createTopic(t, b, topic, 2)
	id := topic + "-producer"
	var committed, aborted []string
	const rounds = 4
	for round := range rounds {
		cl := b.Client(t, kgo.TransactionalID(id), kgo.TransactionTimeout(time.Minute))
		for n := range 6 {
			values := []string{}
			for i := range 5 {
				values = append(values, fmt.Sprintf("r%d-t%d-%d", round, n, i))
			}
			commit := n%3 != 1
			txnProduce(t, cl, topic, commit, values...)
			if commit {
				committed = append(committed, values...)
			} else {
				aborted = append(aborted, values...)
			}
		}
		// One more transaction, produced but never ended: killed open.
		ctx := testContext(t, 30*time.Second)
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		open := fmt.Sprintf("r%d-open", round)
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte(open)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		aborted = append(aborted, open)
		cl.Close()
		b.Kill(t)
		b.Restart(t)
		// The next instance of the id fences (aborts) the open
		// transaction, or the last round's check below does.
	}
	fence := b.Client(t, kgo.TransactionalID(id))
	txnProduce(t, fence, topic, true, "last")
	committed = append(committed, "last")

	got := readValues(t, b, topic, len(committed), kgo.ReadCommitted())
	count := map[string]int{}
	for _, v := range got {
		count[v]++
	}
	for _, v := range committed {
		if count[v] != 1 {
			t.Errorf("committed %s read %d times", v, count[v])
		}
	}
	for _, v := range aborted {
		if count[v] != 0 {
			t.Errorf("aborted %s read by a read_committed reader", v)
		}
	}
	ctx := testContext(t, 30*time.Second)
	adm := b.Admin(t)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	stable, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(e kadm.ListedOffset) {
		s, _ := stable.Lookup(e.Topic, e.Partition)
		if s.Offset != e.Offset {
			t.Errorf("partition %d: last stable offset %d, log end %d: a transaction is left open", e.Partition, s.Offset, e.Offset)
		}
	})
}

// Transactions across a hand-over of the pair: the standby follows
// __transaction_state and the markers like any log, so after `sluice
// demote` the new primary's coordinator knows the transactional id; the
// transaction left open at the hand-over is aborted when the producer's
// next instance starts, and read_committed readers of the new primary see
// every committed record once and nothing else.
func TestTransactionsAcrossAHandOver(t *testing.T) {
	requireOwnBroker(t, "a pair of brokers")
	primary, standby := startPair(t, nil)
	topic := topicName(t, "txnpair")
	createReplicated(t, primary, topic, 2)
	id := topic + "-producer"
	pair := kgo.SeedBrokers(primary.Addr, standby.Addr)
	cl := primary.Client(t, pair, kgo.TransactionalID(id))
	txnProduce(t, cl, topic, true, "before-1", "before-2")
	txnProduce(t, cl, topic, false, "aborted-1")
	ctx := testContext(t, time.Minute)
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("open-at-hand-over")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitAllInSync(t, primary, "the standby in sync everywhere")
	if out, err := roleCommand(t, "demote", primary, false); err != nil {
		t.Fatalf("sluice demote: %v: %s", err, out)
	}
	cl.Close()
	next := standby.Client(t, pair, kgo.TransactionalID(id))
	txnProduce(t, next, topic, true, "after-1", "after-2")
	if got := readAllValues(t, standby, topic, kgo.ReadCommitted()); !sameSet(got, []string{"before-1", "before-2", "after-1", "after-2"}) {
		t.Fatalf("read_committed on the new primary: %q", got)
	}
}

// sameSet reports whether a and b hold the same strings, each once.
func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]int{}
	for _, v := range a {
		seen[v]++
	}
	for _, v := range b {
		if seen[v] != 1 {
			return false
		}
	}
	return true
}
