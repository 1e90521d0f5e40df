package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Crash and restart: the broker is SIGKILLed in the middle of acks=all
// produce traffic, or stopped with SIGTERM, and restarted on the same data.
// These need a broker process the suite owns, so they skip against
// SLUICE_E2E_BOOTSTRAP; scripts/kafka-as-sluice runs them on Apache Kafka.

// crashBrokerConfig rolls segments often, so recovery crosses segments.
func crashBrokerConfig() map[string]string {
	cfg := defaultBrokerConfig()
	cfg["log.segment.bytes"] = "1048576" // Kafka's minimum
	return cfg
}

// storedBatch is one record batch as the broker serves it.
type storedBatch struct {
	kmsg.RecordBatch
	Records []kmsg.Record
}

// readStoredBatches fetches a whole partition with raw Fetch requests and
// checks every batch's framing: magic 2, CRC32C, record count, offsets
// contiguous from 0 to the high watermark. Only
// uncompressed batches are parsed into records.
func readStoredBatches(t testing.TB, b *Broker, topic string, partition int32) []storedBatch {
	t.Helper()
	conn := dialRaw(t, b.Addr)
	version := conn.version(1, 12) // v13+ names topics by id
	var out []storedBatch
	offset := int64(0) // these tests never delete records
	hwm := int64(-1)
	for range 100000 {
		req := kmsg.NewPtrFetchRequest()
		req.Version = version
		req.ReplicaID = -1
		req.MaxWaitMillis = 0
		req.MinBytes = 1
		req.MaxBytes = 32 << 20
		req.SessionEpoch = -1
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition = partition
		rp.FetchOffset = offset
		rp.CurrentLeaderEpoch = -1
		rp.LogStartOffset = -1
		rp.PartitionMaxBytes = 8 << 20
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := conn.roundTrip(req)
		if err != nil {
			t.Fatalf("Fetch %s/%d at %d: %v", topic, partition, offset, err)
		}
		fr := resp.(*kmsg.FetchResponse)
		if fr.ErrorCode != 0 || len(fr.Topics) != 1 || len(fr.Topics[0].Partitions) != 1 {
			t.Fatalf("Fetch %s/%d: error %d, %d topics", topic, partition, fr.ErrorCode, len(fr.Topics))
		}
		p := fr.Topics[0].Partitions[0]
		if p.ErrorCode != 0 {
			t.Fatalf("Fetch %s/%d at %d: error %d", topic, partition, offset, p.ErrorCode)
		}
		hwm = p.HighWatermark
		if offset >= hwm {
			return out
		}
		rest := p.RecordBatches
		progressed := false
		for len(rest) >= 61 {
			size := int(int32(binary.BigEndian.Uint32(rest[8:])))
			if size < 49 || 12+size > len(rest) {
				break // a partial batch at the end of the response is normal
			}
			raw := rest[:12+size]
			rest = rest[12+size:]
			var sb storedBatch
			if err := sb.RecordBatch.ReadFrom(raw); err != nil {
				t.Fatalf("%s/%d: undecodable batch at offset %d: %v", topic, partition, offset, err)
			}
			if sb.Magic != 2 {
				t.Fatalf("%s/%d: batch at %d has magic %d", topic, partition, sb.FirstOffset, sb.Magic)
			}
			if crc := crc32.Checksum(raw[21:], castagnoli); int32(crc) != sb.CRC {
				t.Fatalf("%s/%d: batch at offset %d has CRC %08x, computed %08x: a torn or corrupt batch is served", topic, partition, sb.FirstOffset, uint32(sb.CRC), crc)
			}
			last := sb.FirstOffset + int64(sb.LastOffsetDelta)
			if last < offset {
				continue // Kafka may return a batch holding the fetch offset from its start
			}
			if sb.FirstOffset != offset {
				t.Fatalf("%s/%d: batch at offset %d, want %d: offsets are not contiguous", topic, partition, sb.FirstOffset, offset)
			}
			if sb.Attributes&0x7 == 0 {
				recs := sb.RecordBatch.Records
				for range sb.NumRecords {
					length, n := binary.Varint(recs)
					if n <= 0 || int(length) > len(recs)-n {
						t.Fatalf("%s/%d: batch at %d: record framing broken", topic, partition, sb.FirstOffset)
					}
					var r kmsg.Record
					if err := r.ReadFrom(recs[:n+int(length)]); err != nil {
						t.Fatalf("%s/%d: batch at %d: record: %v", topic, partition, sb.FirstOffset, err)
					}
					recs = recs[n+int(length):]
					sb.Records = append(sb.Records, r)
				}
				if len(recs) != 0 || int32(len(sb.Records)) != sb.LastOffsetDelta+1 {
					t.Fatalf("%s/%d: batch at %d: %d records, %d bytes left, last offset delta %d",
						topic, partition, sb.FirstOffset, len(sb.Records), len(recs), sb.LastOffsetDelta)
				}
			}
			out = append(out, sb)
			offset = last + 1
			progressed = true
		}
		if offset >= hwm {
			return out
		}
		if !progressed {
			t.Fatalf("%s/%d: no complete batch at offset %d (high watermark %d)", topic, partition, offset, hwm)
		}
	}
	t.Fatalf("%s/%d: too many fetches", topic, partition)
	return nil
}

// crashValue is the deterministic value of producer k's record seq, so a
// record read back proves its own integrity.
func crashValue(k, seq int) []byte {
	prefix := fmt.Sprintf("p%d-s%d-", k, seq)
	n := 40 + (k*7919+seq*104729)%900
	v := make([]byte, n)
	copy(v, prefix)
	for i := len(prefix); i < n; i++ {
		v[i] = byte('a' + (i*31+seq+k)%26)
	}
	return v
}

func parseCrashValue(v []byte) (k, seq int, ok bool) {
	parts := bytes.SplitN(v, []byte("-"), 3)
	if len(parts) != 3 || len(parts[0]) < 2 || len(parts[1]) < 2 || parts[0][0] != 'p' || parts[1][0] != 's' {
		return 0, 0, false
	}
	k, err1 := strconv.Atoi(string(parts[0][1:]))
	seq, err2 := strconv.Atoi(string(parts[1][1:]))
	if err1 != nil || err2 != nil || k < 0 || seq < 0 {
		return 0, 0, false
	}
	return k, seq, bytes.Equal(v, crashValue(k, seq))
}

type crashAck struct {
	partition int32
	offset    int64
}

// TestCrashSIGKILL: several idempotent acks=all producers write
// uniquely numbered records; the broker is SIGKILLed mid-stream and
// restarted. Every acknowledged record must be there exactly once, at the
// offset it was acknowledged with, in per-producer order; what was not
// acknowledged is whole batches or nothing; the log continues after it.
func TestCrashSIGKILL(t *testing.T) {
	requireOwnBroker(t, "SIGKILL and restart")
	b := StartSluice(t, BrokerOptions{Config: crashBrokerConfig(), Shards: 2})
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 1))
	const producers = 4
	const partitions = 3
	topic := topicName(t, "")
	(&franzClient{b: b}).CreateTopic(t, topic, partitions, nil)
	waitForTopic(t, b, topic, partitions)

	var mu sync.Mutex
	acks := make([]map[int]crashAck, producers) // per producer: seq → where
	for k := range acks {
		acks[k] = map[int]crashAck{}
	}
	var ackCount atomic.Int64
	var killed atomic.Bool
	var earlyErr error
	stop := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	clients := make([]*kgo.Client, producers)
	// The kill comes after a random amount of acknowledged traffic.
	target := int64(5000 + rng.IntN(20000))
	for k := range producers {
		clients[k] = b.Client(t,
			kgo.DefaultProduceTopic(topic),
			kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
			kgo.ProducerBatchCompression(kgo.NoCompression()),
			kgo.MaxBufferedRecords(2000),
		)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				r := &kgo.Record{Key: []byte(fmt.Sprintf("p%d-k%d", k, seq%5)), Value: crashValue(k, seq)}
				clients[k].Produce(ctx, r, func(r *kgo.Record, err error) {
					if err != nil {
						// Failures are expected once the broker is
						// killed, never before.
						if !killed.Load() {
							mu.Lock()
							if earlyErr == nil {
								earlyErr = fmt.Errorf("producer %d record %d: %w", k, seq, err)
							}
							mu.Unlock()
						}
						return
					}
					mu.Lock()
					acks[k][seq] = crashAck{r.Partition, r.Offset}
					mu.Unlock()
					ackCount.Add(1)
				})
			}
		}()
	}
	deadline := time.Now().Add(60 * time.Second)
	for ackCount.Load() < target {
		if time.Now().After(deadline) {
			t.Fatalf("only %d records acknowledged after 60 s (wanted %d before the kill)", ackCount.Load(), target)
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
	killed.Store(true)
	b.Kill(t)
	killedAt := ackCount.Load()
	close(stop)
	cancel()
	for _, cl := range clients {
		cl.Close() // fails what is still buffered; acknowledged stays acknowledged
	}
	wg.Wait()
	t.Logf("SIGKILL after %d acknowledged records (target %d; %d acknowledged in all)", killedAt, target, ackCount.Load())
	if earlyErr != nil {
		t.Errorf("a produce failed before the broker was killed: %v", earlyErr)
	}

	b.Restart(t)
	verifyCrashLog(t, b, topic, partitions, producers, acks)
}

// verifyCrashLog reads the partitions raw and checks them against the
// acknowledgements.
func verifyCrashLog(t *testing.T, b *Broker, topic string, partitions, producers int, acks []map[int]crashAck) {
	t.Helper()
	type loc struct {
		partition int32
		offset    int64
	}
	seen := make([]map[int]loc, producers)
	for k := range seen {
		seen[k] = map[int]loc{}
	}
	producerOf := map[int64]int{} // producer id → producer index
	unacked := 0
	ends := map[int32]int64{}
	for p := range int32(partitions) {
		lastSeq := make([]int, producers)
		for k := range lastSeq {
			lastSeq[k] = -1
		}
		batches := readStoredBatches(t, b, topic, p)
		for _, sb := range batches {
			ends[p] = sb.FirstOffset + int64(sb.LastOffsetDelta) + 1
			batchProducer := -1
			for i, r := range sb.Records {
				off := sb.FirstOffset + int64(r.OffsetDelta)
				if r.OffsetDelta != int32(i) {
					t.Fatalf("partition %d batch %d: record %d has offset delta %d", p, sb.FirstOffset, i, r.OffsetDelta)
				}
				k, seq, ok := parseCrashValue(r.Value)
				if !ok || k >= producers {
					t.Fatalf("partition %d offset %d: a record no producer wrote, or damaged: %.60q", p, off, r.Value)
				}
				if want := fmt.Sprintf("p%d-k%d", k, seq%5); string(r.Key) != want {
					t.Fatalf("partition %d offset %d: key %q, want %q", p, off, r.Key, want)
				}
				if batchProducer == -1 {
					batchProducer = k
				} else if batchProducer != k {
					t.Fatalf("partition %d batch %d mixes producers %d and %d", p, sb.FirstOffset, batchProducer, k)
				}
				if prev, dup := seen[k][seq]; dup {
					t.Fatalf("producer %d record %d is stored twice: partition %d offsets %d and %d", k, seq, prev.partition, prev.offset, off)
				}
				seen[k][seq] = loc{p, off}
				if seq <= lastSeq[k] {
					t.Fatalf("partition %d offset %d: producer %d record %d after its record %d: out of order", p, off, k, seq, lastSeq[k])
				}
				lastSeq[k] = seq
				if a, ok := acks[k][seq]; ok {
					if a.partition != p || a.offset != off {
						t.Fatalf("producer %d record %d acknowledged at %d/%d but stored at %d/%d", k, seq, a.partition, a.offset, p, off)
					}
				} else {
					unacked++
				}
			}
			if batchProducer >= 0 {
				if k, ok := producerOf[sb.ProducerID]; ok && k != batchProducer {
					t.Fatalf("producer id %d used by producers %d and %d", sb.ProducerID, k, batchProducer)
				}
				producerOf[sb.ProducerID] = batchProducer
				if sb.ProducerID < 0 {
					t.Errorf("partition %d batch %d has no producer id; the producers are idempotent", p, sb.FirstOffset)
				}
			}
		}
	}
	lost := 0
	for k := range producers {
		for seq, a := range acks[k] {
			if _, ok := seen[k][seq]; !ok {
				if lost < 10 {
					t.Errorf("LOST: producer %d record %d, acknowledged at partition %d offset %d", k, seq, a.partition, a.offset)
				}
				lost++
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d acknowledged records lost", lost)
	}
	total := 0
	for k := range producers {
		total += len(acks[k])
	}
	t.Logf("all %d acknowledged records present once, in order; %d unacknowledged records survived in whole batches", total, unacked)

	// The log goes on where it ended.
	cl := b.Client(t, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx := testContext(t, 30*time.Second)
	for p := range int32(partitions) {
		r, err := cl.ProduceSync(ctx, &kgo.Record{Partition: p, Value: []byte("after restart")}).First()
		if err != nil {
			t.Fatalf("produce after restart to partition %d: %v", p, err)
		}
		if r.Offset != ends[p] {
			t.Errorf("produce after restart to partition %d landed at offset %d, want %d (the end of the recovered log)", p, r.Offset, ends[p])
		}
	}
}

// TestRestartSIGTERM: a clean shutdown and restart keeps everything: the
// records byte for byte, offsets, the log start after DeleteRecords, topics
// and their configs.
func TestRestartSIGTERM(t *testing.T) {
	requireOwnBroker(t, "SIGTERM and restart")
	b := StartSluice(t, BrokerOptions{Config: crashBrokerConfig()})
	seed := testSeed(t)
	c := &franzClient{b: b}
	topic := topicName(t, "data")
	c.CreateTopic(t, topic, scenarioPartitions, map[string]string{"retention.ms": "86400000"})
	other := topicName(t, "other")
	c.CreateTopic(t, other, 2, nil)
	waitForTopic(t, b, topic, scenarioPartitions)
	waitForTopic(t, b, other, 2)

	recs := makeDataset(seed, 5000, datasetOptions{})
	l := layoutOf(recs, scenarioPartitions)
	checkAcks(t, "franz-go producer", l, c.Produce(t, topic, "zstd", recs))
	if low, code := c.DeleteRecords(t, topic, 0, 10); code != 0 || low != 10 {
		t.Fatalf("DeleteRecords: low %d error %d", low, code)
	}
	if code := c.AlterConfigs(t, topic, map[string]string{"max.message.bytes": "2097152"}, nil, false); code != 0 {
		t.Fatalf("AlterConfigs: error %d", code)
	}

	b.Restart(t) // SIGTERM, clean exit, start

	got := consumeWithFranz(t, b, topic, scenarioPartitions, map[int32]int64{0: 10})
	verifyFetched(t, "after a clean restart", recs, l, got, verifyOptions{start: map[int32]int64{0: 10}, timestamps: true, codec: "zstd"})
	listed := c.ListOffsets(t, topic, scenarioPartitions, "earliest", "latest")
	for p := range int32(scenarioPartitions) {
		wantStart := int64(0)
		if p == 0 {
			wantStart = 10
		}
		if listed[0][p].Offset != wantStart || listed[1][p].Offset != int64(len(l.byPartition[p])) {
			t.Errorf("partition %d after restart: earliest %d latest %d, want %d and %d", p, listed[0][p].Offset, listed[1][p].Offset, wantStart, len(l.byPartition[p]))
		}
	}
	cfg := c.DescribeConfigs(t, topic)
	for name, want := range map[string]string{"retention.ms": "86400000", "max.message.bytes": "2097152"} {
		if e := cfg[name]; e.Value == nil || *e.Value != want || e.Source != "DYNAMIC_TOPIC_CONFIG" {
			t.Errorf("after restart %s = %s (%s), want %s (DYNAMIC_TOPIC_CONFIG)", name, ptrString(e.Value), e.Source, want)
		}
	}
	md, err := b.Admin(t).Metadata(testContext(t, 30*time.Second), other)
	if err != nil || md.Topics[other].Err != nil || len(md.Topics[other].Partitions) != 2 {
		t.Errorf("after restart, topic %s: %v %v", other, err, md.Topics[other].Err)
	}
	// And the log continues.
	cl := b.Client(t, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	r, err := cl.ProduceSync(testContext(t, 30*time.Second), &kgo.Record{Partition: 1, Value: []byte("more")}).First()
	if err != nil || r.Offset != int64(len(l.byPartition[1])) {
		t.Errorf("produce after restart: offset %d (%v), want %d", r.Offset, err, len(l.byPartition[1]))
	}
}
