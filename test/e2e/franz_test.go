package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// franzClient runs the scenario with franz-go: kgo to produce and consume,
// kadm for everything else.
type franzClient struct {
	b *Broker
}

func (c *franzClient) Name() string                   { return "franz-go" }
func (c *franzClient) DatasetOptions() datasetOptions { return datasetOptions{} }
func (c *franzClient) SetsTimestamps() bool           { return true }
func (c *franzClient) SupportsMaxTimestamp() bool     { return true }

func kerrCode(err error) int16 {
	if err == nil {
		return errNone
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Code
	}
	return -1
}

func (c *franzClient) CreateTopic(t *testing.T, topic string, partitions int, configs map[string]string) {
	t.Helper()
	cfg := map[string]*string{}
	for k, v := range configs {
		cfg[k] = kadm.StringPtr(v)
	}
	resp, err := c.b.Admin(t).CreateTopic(testContext(t, 30*time.Second), int32(partitions), 1, cfg, topic)
	if err != nil || resp.Err != nil {
		t.Fatalf("kadm CreateTopic %s: %v %v %s", topic, err, resp.Err, resp.ErrMessage)
	}
	if resp.NumPartitions != int32(partitions) {
		t.Errorf("CreateTopics response says %d partitions, want %d", resp.NumPartitions, partitions)
	}
}

func (c *franzClient) Produce(t *testing.T, topic, codec string, recs []testRecord) []acked {
	t.Helper()
	var comp kgo.CompressionCodec
	switch codec {
	case "none":
		comp = kgo.NoCompression()
	case "gzip":
		comp = kgo.GzipCompression()
	case "snappy":
		comp = kgo.SnappyCompression()
	case "lz4":
		comp = kgo.Lz4Compression()
	case "zstd":
		comp = kgo.ZstdCompression()
	}
	inner, err := kgo.DefaultCompressor(comp)
	if err != nil {
		t.Fatalf("franz-go compressor for %s: %v", codec, err)
	}
	watch := &compressionWatch{inner: inner, want: kgo.CompressionCodecType(codecID[codec])}
	opts := []kgo.Opt{
		kgo.DefaultProduceTopic(topic),
		kgo.ProducerBatchCompression(comp),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), // murmur2, as Java
	}
	if inner != nil { // nil for none
		opts = append(opts, kgo.WithCompressor(watch)) // comp, watched
	}
	// Defaults otherwise: idempotent, acks=all.
	cl := c.b.Client(t, opts...)
	ctx := testContext(t, 2*time.Minute)
	acks := make([]acked, len(recs))
	// franz-go sends a batch uncompressed when compressing it would not
	// make it smaller (sink.go keeps the compressed records only when
	// len(compressed) < len(toCompress)), as for a batch of one short
	// record. Each acknowledged record carries the attributes of the batch
	// it was written in: the records sent uncompressed are noted for
	// verifyFetched, which then wants codec none for them.
	uncompressed := map[int32][]int64{}
	var mu sync.Mutex
	var firstErr error
	for i, r := range recs {
		kr := &kgo.Record{Key: r.Key, Value: r.Value, Timestamp: time.UnixMilli(r.Timestamp)}
		for _, h := range r.Headers {
			kr.Headers = append(kr.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
		}
		cl.Produce(ctx, kr, func(kr *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = fmt.Errorf("record %d: %w", i, err)
			}
			acks[i] = acked{Index: i, Partition: kr.Partition, Offset: kr.Offset}
			if err != nil {
				return
			}
			switch sent := kr.Attrs.CompressionType(); {
			case sent == codecID[codec]:
			case sent == 0 && kr.Offset >= 0:
				uncompressed[kr.Partition] = append(uncompressed[kr.Partition], kr.Offset)
			case firstErr == nil:
				firstErr = fmt.Errorf("record %d: acknowledged at offset %d in a batch with codec %d, asked for %s", i, kr.Offset, sent, codec)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatalf("franz-go flush: %v", err)
	}
	if firstErr != nil {
		t.Fatalf("franz-go produce: %v", firstErr)
	}
	if trouble := watch.troubles(); trouble != "" {
		t.Fatalf("franz-go produce with %s: %s", codec, trouble)
	}
	noteFranzUncompressed(t, codec, watch.larger.Load(), uncompressed)
	return acks
}

// noteFranzUncompressed notes the offsets, per partition, that franz-go
// acknowledged in batches sent uncompressed, larger being how many times
// compressing a batch did not make it smaller.
func noteFranzUncompressed(t *testing.T, codec string, larger int64, uncompressed map[int32][]int64) {
	t.Helper()
	if len(uncompressed) > 0 && larger == 0 {
		t.Fatalf("franz-go produce with %s: records acknowledged in uncompressed batches, yet compression made no batch larger: %v", codec, uncompressed)
	}
	for p, offsets := range uncompressed {
		slices.Sort(offsets)
		for start := 0; start < len(offsets); {
			end := start + 1
			for end < len(offsets) && offsets[end] == offsets[end-1]+1 {
				end++
			}
			first, last := offsets[start], offsets[end-1]+1
			t.Logf("franz-go sent partition %d offsets %d..%d uncompressed (%s would not have made the batch smaller)", p, first, last-1, codec)
			noteSentUncompressed(t, p, first, last)
			start = end
		}
	}
}

// compressionWatch is franz-go's compressor for one codec that counts the
// batches compressing did not make smaller, which franz-go then sends
// uncompressed, and records any other way a batch would go out without
// the codec: a compression error (nil) or another codec.
type compressionWatch struct {
	inner  kgo.Compressor
	want   kgo.CompressionCodecType
	larger atomic.Int64

	mu      sync.Mutex
	trouble string
}

func (w *compressionWatch) Compress(dst *bytes.Buffer, src []byte, flags ...kgo.CompressFlag) ([]byte, kgo.CompressionCodecType) {
	out, codec := w.inner.Compress(dst, src, flags...)
	switch {
	case out == nil || codec != w.want:
		w.mu.Lock()
		if w.trouble == "" {
			w.trouble = fmt.Sprintf("compressing a batch of %d bytes gave codec %d (output nil: %v), want %d", len(src), codec, out == nil, w.want)
		}
		w.mu.Unlock()
	case len(out) >= len(src):
		w.larger.Add(1)
	}
	return out, codec
}

func (w *compressionWatch) troubles() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.trouble
}

func (c *franzClient) Consume(t *testing.T, topic string, partitions int, from map[int32]int64) []fetched {
	return consumeWithFranz(t, c.b, topic, partitions, from)
}

func (c *franzClient) ListOffsets(t *testing.T, topic string, partitions int, specs ...string) []map[int32]listedOffset {
	t.Helper()
	var out []map[int32]listedOffset
	for _, spec := range specs {
		out = append(out, c.listOffsets(t, topic, partitions, spec))
	}
	return out
}

func (c *franzClient) listOffsets(t *testing.T, topic string, partitions int, spec string) map[int32]listedOffset {
	t.Helper()
	adm := c.b.Admin(t)
	ctx := testContext(t, 30*time.Second)
	var listed kadm.ListedOffsets
	var err error
	switch {
	case spec == "earliest":
		listed, err = adm.ListStartOffsets(ctx, topic)
	case spec == "latest":
		listed, err = adm.ListEndOffsets(ctx, topic)
	case spec == "max-timestamp":
		listed, err = adm.ListMaxTimestampOffsets(ctx, topic)
	case strings.HasPrefix(spec, "timestamp:"):
		ms, _ := strconv.ParseInt(strings.TrimPrefix(spec, "timestamp:"), 10, 64)
		listed, err = adm.ListOffsetsAfterMilli(ctx, ms, topic)
		if err == nil {
			// kadm answers the end offset where the broker said -1
			// (no record at or after the timestamp). No record is at
			// the end offset, so mapping it back is exact.
			ends, err2 := adm.ListEndOffsets(ctx, topic)
			if err2 != nil {
				t.Fatalf("ListEndOffsets: %v", err2)
			}
			for p, o := range listed[topic] {
				if end, ok := ends.Lookup(topic, p); ok && o.Err == nil && o.Offset == end.Offset {
					o.Offset, o.Timestamp = -1, -1
					listed[topic][p] = o
				}
			}
		}
	default:
		t.Fatalf("unknown spec %s", spec)
	}
	if err != nil {
		t.Fatalf("kadm list offsets %s: %v", spec, err)
	}
	out := map[int32]listedOffset{}
	for p := range int32(partitions) {
		o, ok := listed.Lookup(topic, p)
		if !ok || o.Err != nil {
			t.Fatalf("kadm list offsets %s: partition %d: %v (present %v)", spec, p, o.Err, ok)
		}
		out[p] = listedOffset{Offset: o.Offset, Timestamp: o.Timestamp}
	}
	return out
}

func (c *franzClient) DeleteRecords(t *testing.T, topic string, partition int32, before int64) (int64, int16) {
	t.Helper()
	offs := kadm.OffsetsList{{Topic: topic, Partition: partition, At: before, LeaderEpoch: -1}}.Offsets()
	resp, err := c.b.Admin(t).DeleteRecords(testContext(t, 30*time.Second), offs)
	if err != nil {
		t.Fatalf("kadm DeleteRecords: %v", err)
	}
	r, ok := resp.Lookup(topic, partition)
	if !ok {
		t.Fatalf("kadm DeleteRecords: no answer for partition %d", partition)
	}
	if r.Err != nil {
		return -1, kerrCode(r.Err)
	}
	return r.LowWatermark, errNone
}

func (c *franzClient) DescribeConfigs(t *testing.T, topic string) map[string]configEntry {
	t.Helper()
	rcs, err := c.b.Admin(t).DescribeTopicConfigs(testContext(t, 30*time.Second), topic)
	if err != nil {
		t.Fatalf("kadm DescribeTopicConfigs: %v", err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil || rc.Err != nil {
		t.Fatalf("kadm DescribeTopicConfigs %s: %v %v", topic, err, rc.Err)
	}
	out := map[string]configEntry{}
	for _, cfg := range rc.Configs {
		// kadm's DescribeConfigs does not return read-only; the raw
		// request below checks it.
		out[cfg.Key] = configEntry{Value: cfg.Value, Source: cfg.Source.String()}
	}
	return out
}

func (c *franzClient) AlterConfigs(t *testing.T, topic string, set map[string]string, del []string, validateOnly bool) int16 {
	t.Helper()
	var alters []kadm.AlterConfig
	for k, v := range set {
		alters = append(alters, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: kadm.StringPtr(v)})
	}
	for _, k := range del {
		alters = append(alters, kadm.AlterConfig{Op: kadm.DeleteConfig, Name: k})
	}
	adm := c.b.Admin(t)
	ctx := testContext(t, 30*time.Second)
	var resps kadm.AlterConfigsResponses
	var err error
	if validateOnly {
		resps, err = adm.ValidateAlterTopicConfigs(ctx, alters, topic)
	} else {
		resps, err = adm.AlterTopicConfigs(ctx, alters, topic)
	}
	if err != nil {
		t.Fatalf("kadm alter topic configs: %v", err)
	}
	for _, r := range resps {
		if r.Name == topic {
			return kerrCode(r.Err)
		}
	}
	t.Fatalf("kadm alter topic configs: no answer for %s", topic)
	return -1
}

// TestFranzGo runs the client scenario with franz-go.
func TestFranzGo(t *testing.T) {
	runClientScenario(t, &franzClient{b: Shared(t)})
}

// TestFranzGoIdempotentProducer: a franz-go producer with its defaults
// (idempotent, acks=all) gets a producer id, its batches carry it with
// consecutive sequences, and nothing is duplicated.
func TestFranzGoIdempotentProducer(t *testing.T) {
	b := Shared(t)
	topic := topicName(t, "")
	(&franzClient{b: b}).CreateTopic(t, topic, 2, nil)
	waitForTopic(t, b, topic, 2)

	cl := b.Client(t, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx := testContext(t, time.Minute)
	const n = 2000
	var results kgo.ProduceResults
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		r := &kgo.Record{Partition: int32(i % 2), Value: []byte(strconv.Itoa(i))}
		cl.Produce(ctx, r, func(r *kgo.Record, err error) {
			defer wg.Done()
			mu.Lock()
			results = append(results, kgo.ProduceResult{Record: r, Err: err})
			mu.Unlock()
		})
	}
	wg.Wait()
	var pid int64 = -1
	for _, res := range results {
		if res.Err != nil {
			t.Fatalf("produce: %v", res.Err)
		}
		if pid == -1 {
			pid = res.Record.ProducerID
		}
		if res.Record.ProducerID != pid || pid < 0 {
			t.Fatalf("record produced with producer id %d, others with %d: want one non-negative id from InitProducerId", res.Record.ProducerID, pid)
		}
	}
	got := consumeWithFranz(t, b, topic, 2, nil)
	if len(got) != n {
		t.Fatalf("consumed %d records, want %d", len(got), n)
	}
	// Each partition holds its records in produce order, once each.
	next := [2]int{0, 1}
	for _, f := range got {
		want := strconv.Itoa(next[f.Partition])
		if string(f.Value) != want {
			t.Fatalf("partition %d offset %d: value %q, want %q", f.Partition, f.Offset, f.Value, want)
		}
		next[f.Partition] += 2
	}

	// The stored batches carry the producer id (read back raw).
	ocl := b.Client(t, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	fs := ocl.PollFetches(ctx)
	if errs := fs.Errors(); len(errs) > 0 {
		t.Fatalf("fetch: %v", errs[0].Err)
	}
	fs.EachRecord(func(r *kgo.Record) {
		if r.ProducerID != pid {
			t.Fatalf("stored record at offset %d has producer id %d, want %d", r.Offset, r.ProducerID, pid)
		}
	})

	// A second producer is a second producer id.
	cl2 := b.Client(t, kgo.DefaultProduceTopic(topic))
	r, err := cl2.ProduceSync(ctx, &kgo.Record{Value: []byte("second")}).First()
	if err != nil {
		t.Fatalf("second producer: %v", err)
	}
	if r.ProducerID == pid {
		t.Errorf("two producers were given the same producer id %d", pid)
	}
}

// TestIdempotentDuplicateBatch: re-sending the same idempotent batch (same
// producer id, epoch and sequence), as a producer does after a lost
// response, is acknowledged with the original offset and not appended again.
func TestIdempotentDuplicateBatch(t *testing.T) {
	b := Shared(t)
	topic := topicName(t, "")
	(&franzClient{b: b}).CreateTopic(t, topic, 1, nil)
	waitForTopic(t, b, topic, 1)

	conn := dialRaw(t, b.Addr)
	initReq := kmsg.NewPtrInitProducerIDRequest()
	initReq.Version = conn.version(22, 4)
	initReq.TransactionTimeoutMillis = 60000
	initReq.ProducerID = -1
	initReq.ProducerEpoch = -1
	resp, err := conn.roundTrip(initReq)
	if err != nil {
		t.Fatalf("InitProducerId: %v", err)
	}
	ip := resp.(*kmsg.InitProducerIDResponse)
	if ip.ErrorCode != 0 || ip.ProducerID < 0 {
		t.Fatalf("InitProducerId: error %d, producer id %d", ip.ErrorCode, ip.ProducerID)
	}
	ts := time.Now().UnixMilli()
	batch0 := buildBatch([]rawRecord{{Value: []byte("a")}, {Value: []byte("b")}}, ts, ip.ProducerID, ip.ProducerEpoch, 0)
	batch1 := buildBatch([]rawRecord{{Value: []byte("c")}}, ts, ip.ProducerID, ip.ProducerEpoch, 2)

	produce := func(batch []byte) kmsg.ProduceResponseTopicPartition {
		t.Helper()
		req := kmsg.NewPtrProduceRequest()
		req.Version = conn.version(0, 12)
		req.Acks = -1
		req.TimeoutMillis = 15000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = batch
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := conn.roundTrip(req)
		if err != nil {
			t.Fatalf("produce: %v", err)
		}
		return resp.(*kmsg.ProduceResponse).Topics[0].Partitions[0]
	}
	if p := produce(batch0); p.ErrorCode != 0 || p.BaseOffset != 0 {
		t.Fatalf("first batch: error %d base offset %d, want 0 and 0", p.ErrorCode, p.BaseOffset)
	}
	if p := produce(batch0); p.ErrorCode != 0 || p.BaseOffset != 0 {
		t.Fatalf("duplicate batch: error %d base offset %d, want error 0 and the original base offset 0", p.ErrorCode, p.BaseOffset)
	}
	if p := produce(batch1); p.ErrorCode != 0 || p.BaseOffset != 2 {
		t.Fatalf("next batch: error %d base offset %d, want 0 and 2", p.ErrorCode, p.BaseOffset)
	}
	// A gap in the sequence is OUT_OF_ORDER_SEQUENCE_NUMBER (45).
	gap := buildBatch([]rawRecord{{Value: []byte("z")}}, ts, ip.ProducerID, ip.ProducerEpoch, 10)
	if p := produce(gap); p.ErrorCode != 45 {
		t.Errorf("batch with a sequence gap: error %d, want 45 (OUT_OF_ORDER_SEQUENCE_NUMBER)", p.ErrorCode)
	}
	got := consumeWithFranz(t, b, topic, 1, nil)
	var values []string
	for _, f := range got {
		values = append(values, string(f.Value))
	}
	if strings.Join(values, ",") != "a,b,c" {
		t.Fatalf("log holds %q, want [a b c]", values)
	}
}

// TestFranzGoAdmin covers the kadm calls the scenario does not: creating
// topics (and the errors for duplicates and bad partition counts), adding
// partitions, deleting topics, and describing the cluster.
func TestFranzGoAdmin(t *testing.T) {
	b := Shared(t)
	adm := b.Admin(t)
	ctx := testContext(t, 2*time.Minute)

	t.Run("DescribeCluster", func(t *testing.T) {
		md, err := adm.BrokerMetadata(ctx)
		if err != nil {
			t.Fatalf("BrokerMetadata: %v", err)
		}
		if len(md.Brokers) != 1 {
			t.Fatalf("%d brokers, want 1: %+v", len(md.Brokers), md.Brokers)
		}
		host, port, _ := net.SplitHostPort(b.Addr)
		br := md.Brokers[0]
		if br.Host != host || strconv.Itoa(int(br.Port)) != port {
			t.Errorf("broker advertised at %s:%d, want %s", br.Host, br.Port, b.Addr)
		}
		if md.Controller != br.NodeID {
			t.Errorf("controller is %d, want the one broker, %d", md.Controller, br.NodeID)
		}
		if md.Cluster == "" {
			t.Errorf("empty cluster id")
		}
		// DescribeCluster (API 60), which the Java admin client uses.
		req := kmsg.NewPtrDescribeClusterRequest()
		resp, err := req.RequestWith(ctx, b.Client(t))
		if err != nil {
			t.Fatalf("DescribeCluster: %v", err)
		}
		if resp.ErrorCode != 0 || resp.ClusterID != md.Cluster || resp.ControllerID != md.Controller || len(resp.Brokers) != 1 ||
			resp.Brokers[0].NodeID != br.NodeID || resp.Brokers[0].Host != br.Host || resp.Brokers[0].Port != br.Port {
			t.Errorf("DescribeCluster = error %d cluster %q controller %d brokers %+v; Metadata said cluster %q controller %d broker %+v",
				resp.ErrorCode, resp.ClusterID, resp.ControllerID, resp.Brokers, md.Cluster, md.Controller, br)
		}
	})

	t.Run("CreateTopics", func(t *testing.T) {
		a, bb := topicName(t, "a"), topicName(t, "b")
		resps, err := adm.CreateTopics(ctx, 4, 1, nil, a, bb)
		if err != nil {
			t.Fatalf("CreateTopics: %v", err)
		}
		for _, name := range []string{a, bb} {
			if r := resps[name]; r.Err != nil || r.NumPartitions != 4 {
				t.Errorf("CreateTopics %s: %v, %d partitions", name, r.Err, r.NumPartitions)
			}
		}
		waitForTopic(t, b, a, 4)
		waitForTopic(t, b, bb, 4)
		md, err := adm.Metadata(ctx, a, bb)
		if err != nil {
			t.Fatalf("Metadata: %v", err)
		}
		for _, name := range []string{a, bb} {
			td := md.Topics[name]
			if td.Err != nil || len(td.Partitions) != 4 || td.IsInternal {
				t.Errorf("Metadata %s: %v, %d partitions, internal %v", name, td.Err, len(td.Partitions), td.IsInternal)
			}
			for _, p := range td.Partitions {
				if p.Leader != md.Brokers[0].NodeID || len(p.Replicas) != 1 || len(p.ISR) != 1 {
					t.Errorf("Metadata %s/%d: leader %d replicas %v isr %v", name, p.Partition, p.Leader, p.Replicas, p.ISR)
				}
			}
		}
		// Again: TOPIC_ALREADY_EXISTS.
		// (kadm's CreateTopic returns the topic's error as its error.)
		_, err = adm.CreateTopic(ctx, 4, 1, nil, a)
		if code := kerrCode(err); code != errTopicAlreadyExists {
			t.Errorf("creating %s twice: error %d (%v), want %d (TOPIC_ALREADY_EXISTS)", a, code, err, errTopicAlreadyExists)
		}
		// Zero partitions: INVALID_PARTITIONS.
		_, err = adm.CreateTopic(ctx, 0, 1, nil, topicName(t, "zero"))
		if code := kerrCode(err); code != errInvalidPartitions {
			t.Errorf("creating a topic with 0 partitions: error %d (%v), want %d (INVALID_PARTITIONS)", code, err, errInvalidPartitions)
		}
		// Validate-only creates nothing.
		vname := topicName(t, "validate")
		vr, err := adm.ValidateCreateTopics(ctx, 2, 1, nil, vname)
		if err != nil || vr[vname].Err != nil {
			t.Fatalf("validate-only CreateTopics: %v %v", err, vr[vname].Err)
		}
		md, err = adm.Metadata(ctx, vname)
		if err != nil {
			t.Fatalf("Metadata: %v", err)
		}
		if td := md.Topics[vname]; kerrCode(td.Err) != errUnknownTopicOrPartition {
			t.Errorf("after a validate-only create, Metadata for %s: %v, want UNKNOWN_TOPIC_OR_PARTITION", vname, td.Err)
		}
	})

	t.Run("CreatePartitions", func(t *testing.T) {
		topic := topicName(t, "")
		(&franzClient{b: b}).CreateTopic(t, topic, 3, nil)
		waitForTopic(t, b, topic, 3)
		resps, err := adm.CreatePartitions(ctx, 2, topic)
		if err != nil || resps[topic].Err != nil {
			t.Fatalf("CreatePartitions +2: %v %v %s", err, resps[topic].Err, resps[topic].ErrMessage)
		}
		waitForTopic(t, b, topic, 5)
		cl := b.Client(t, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		for p := range int32(5) {
			r, err := cl.ProduceSync(ctx, &kgo.Record{Partition: p, Value: []byte("x")}).First()
			if err != nil || r.Offset != 0 {
				t.Fatalf("produce to partition %d of 5: %v, offset %d", p, err, r.Offset)
			}
		}
		// Fewer partitions than now: INVALID_PARTITIONS.
		resps, err = adm.UpdatePartitions(ctx, 2, topic)
		if err != nil {
			t.Fatalf("UpdatePartitions 2: %v", err)
		}
		if code := kerrCode(resps[topic].Err); code != errInvalidPartitions {
			t.Errorf("shrinking to 2 partitions: error %d (%v), want %d (INVALID_PARTITIONS)", code, resps[topic].Err, errInvalidPartitions)
		}
		// Unknown topic: UNKNOWN_TOPIC_OR_PARTITION.
		missing := topicName(t, "missing")
		resps, err = adm.CreatePartitions(ctx, 1, missing)
		if err != nil {
			t.Fatalf("CreatePartitions on a missing topic: %v", err)
		}
		if code := kerrCode(resps[missing].Err); code != errUnknownTopicOrPartition {
			t.Errorf("CreatePartitions on a missing topic: error %d (%v), want %d", code, resps[missing].Err, errUnknownTopicOrPartition)
		}
	})

	t.Run("DeleteTopics", func(t *testing.T) {
		topic := topicName(t, "")
		(&franzClient{b: b}).CreateTopic(t, topic, 2, nil)
		waitForTopic(t, b, topic, 2)
		cl := b.Client(t, kgo.DefaultProduceTopic(topic))
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("before delete")}).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
		resps, err := adm.DeleteTopics(ctx, topic)
		if err != nil || resps[topic].Err != nil {
			t.Fatalf("DeleteTopics: %v %v", err, resps[topic].Err)
		}
		// Deletion may complete asynchronously (it does in Kafka): poll.
		deadline := time.Now().Add(30 * time.Second)
		for {
			md, err := adm.Metadata(ctx, topic)
			if err == nil && kerrCode(md.Topics[topic].Err) == errUnknownTopicOrPartition {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("topic %s still listed 30 s after DeleteTopics (%v)", topic, err)
			}
			time.Sleep(50 * time.Millisecond) // poll interval
		}
		resps, err = adm.DeleteTopics(ctx, topic)
		if err != nil {
			t.Fatalf("DeleteTopics again: %v", err)
		}
		if code := kerrCode(resps[topic].Err); code != errUnknownTopicOrPartition {
			t.Errorf("deleting a deleted topic: error %d (%v), want %d", code, resps[topic].Err, errUnknownTopicOrPartition)
		}
		// The name can be reused, and the new topic starts empty.
		recreate := func() error {
			_, err := adm.CreateTopic(ctx, 1, 1, nil, topic)
			return err
		}
		deadline = time.Now().Add(30 * time.Second)
		for {
			err := recreate()
			if err == nil {
				break
			}
			// Kafka may still be deleting: TOPIC_ALREADY_EXISTS for a moment.
			if kerrCode(err) != errTopicAlreadyExists || time.Now().After(deadline) {
				t.Fatalf("recreating %s: %v", topic, err)
			}
			time.Sleep(100 * time.Millisecond) // poll interval
		}
		waitForTopic(t, b, topic, 1)
		ends, err := adm.ListEndOffsets(ctx, topic)
		if err != nil {
			t.Fatalf("ListEndOffsets: %v", err)
		}
		if o, _ := ends.Lookup(topic, 0); o.Err != nil || o.Offset != 0 {
			t.Errorf("recreated topic: end offset %d (%v), want 0", o.Offset, o.Err)
		}
	})

	t.Run("MetadataNoAutoCreate", func(t *testing.T) {
		topic := topicName(t, "")
		req := kmsg.NewPtrMetadataRequest()
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(topic)
		req.Topics = append(req.Topics, rt)
		req.AllowAutoTopicCreation = false
		resp, err := req.RequestWith(ctx, b.Client(t))
		if err != nil {
			t.Fatalf("Metadata: %v", err)
		}
		if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != errUnknownTopicOrPartition {
			t.Fatalf("Metadata for a missing topic without auto-creation: %+v, want UNKNOWN_TOPIC_OR_PARTITION", resp.Topics)
		}
	})

	t.Run("DescribeConfigsReadOnly", func(t *testing.T) {
		// kadm hides the read-only flag; every topic config is alterable.
		topic := topicName(t, "")
		(&franzClient{b: b}).CreateTopic(t, topic, 1, nil)
		waitForTopic(t, b, topic, 1)
		req := kmsg.NewPtrDescribeConfigsRequest()
		rr := kmsg.NewDescribeConfigsRequestResource()
		rr.ResourceType = kmsg.ConfigResourceTypeTopic
		rr.ResourceName = topic
		req.Resources = append(req.Resources, rr)
		resp, err := req.RequestWith(ctx, b.Client(t))
		if err != nil {
			t.Fatalf("DescribeConfigs: %v", err)
		}
		if len(resp.Resources) != 1 || resp.Resources[0].ErrorCode != 0 {
			t.Fatalf("DescribeConfigs: %+v", resp.Resources)
		}
		if len(resp.Resources[0].Configs) < 10 {
			t.Errorf("DescribeConfigs of a topic lists %d configs; Kafka lists every topic config (over 30)", len(resp.Resources[0].Configs))
		}
		for _, c := range resp.Resources[0].Configs {
			if c.ReadOnly {
				t.Errorf("topic config %s described read-only", c.Name)
			}
		}
	})
}
