package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-broker/sluice/internal/indexdamage"
)

// Index files damaged by an unclean shutdown or a bad sector cost the
// rebuild of the segments a request needs, never a slow start or a wrong
// answer: the broker is stopped, every .index and .timeindex file is zeroed
// or cut mid-entry, and after the restart Fetch and ListOffsets (by
// timestamp) answer as they did before, while /metrics counts the
// rebuilds. make bench-restart does the same with 10 GiB.
func TestDamagedIndexFilesAfterARestart(t *testing.T) {
	requireOwnBroker(t, "a restart, and its data directory's files")
	b := StartSluice(t, BrokerOptions{Config: defaultBrokerConfig()})
	adm := b.Admin(t)
	ctx := testContext(t, 3*time.Minute)
	topic := topicName(t, "")
	if resp, err := adm.CreateTopic(ctx, 2, 1, map[string]*string{"segment.bytes": kadm.StringPtr("65536")}, topic); err != nil || resp.Err != nil {
		t.Fatalf("create: %v %v", err, resp.Err)
	}
	cl := b.Client(t, kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.ProducerLinger(0))
	value := make([]byte, 2000)
	rand.Read(value)
	base := time.Now().Add(-time.Hour).UnixMilli()
	const records = 2000 // ~4 MiB: about 30 segments per partition
	for i := range records {
		r := &kgo.Record{Topic: topic, Partition: int32(i % 2), Value: value, Timestamp: time.UnixMilli(base + int64(i))}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}
	mid := base + records/2
	want, err := adm.ListOffsetsAfterMilli(ctx, mid, topic)
	if err != nil {
		t.Fatal(err)
	}
	probe := map[int32]int64{0: 123, 1: 456}
	wantAt := firstRecordsAt(t, b, topic, probe)

	b.Stop(t) // clean: every index file is written and synced
	damaged, err := indexdamage.All(b.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if damaged < 20 {
		t.Fatalf("only %d index files to damage", damaged)
	}
	b.Restart(t)

	got, err := b.Admin(t).ListOffsetsAfterMilli(ctx, mid, topic)
	if err != nil {
		t.Fatal(err)
	}
	want.Each(func(o kadm.ListedOffset) {
		if g, ok := got.Lookup(topic, o.Partition); !ok || g.Offset != o.Offset || g.Timestamp != o.Timestamp {
			t.Errorf("ListOffsets by timestamp %d, partition %d, over damaged indexes: %+v; want offset %d, timestamp %d", mid, o.Partition, g, o.Offset, o.Timestamp)
		}
	})
	if gotAt := firstRecordsAt(t, b, topic, probe); fmt.Sprint(gotAt) != fmt.Sprint(wantAt) {
		t.Errorf("fetches over damaged indexes returned %v; before the damage %v", gotAt, wantAt)
	}
	m := scrape(t, ctx, b)
	var rebuilt float64
	for k, v := range m {
		if len(k) > len("sluice_index_rebuilds_total") && k[:len("sluice_index_rebuilds_total")] == "sluice_index_rebuilds_total" {
			rebuilt += v
		}
	}
	if rebuilt == 0 {
		t.Error("no index rebuild was counted in sluice_index_rebuilds_total")
	}
	t.Logf("%d index files damaged; %v segments rebuilt to answer", damaged, rebuilt)
}

// firstRecordsAt fetches each partition at its offset and returns the
// offset and timestamp of the first record each answered.
func firstRecordsAt(t *testing.T, b *Broker, topic string, at map[int32]int64) map[int32][2]int64 {
	t.Helper()
	offsets := map[int32]kgo.Offset{}
	for p, o := range at {
		offsets[p] = kgo.NewOffset().At(o)
	}
	cl := b.Client(t, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := map[int32][2]int64{}
	for len(out) < len(at) {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("fetching %s: %d of %d partitions answered", topic, len(out), len(at))
		}
		fs.EachError(func(_ string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if _, ok := out[r.Partition]; !ok {
				out[r.Partition] = [2]int64{r.Offset, r.Timestamp.UnixMilli()}
			}
		})
	}
	return out
}
