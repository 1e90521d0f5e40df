package api

import (
	"io"
	"log/slog"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-broker/sluice/engine"
	"github.com/sluice-broker/sluice/engine/config"
	"github.com/sluice-broker/sluice/engine/group/service"
	"github.com/sluice-broker/sluice/engine/shard"
	"github.com/sluice-broker/sluice/wire/compress"
	"github.com/sluice-broker/sluice/wire/msg"
	"github.com/sluice-broker/sluice/wire/records"
)

// openBroker opens a broker on dir with its request handler; the test
// closes it (cleanly) with the returned function.
func openBroker(t *testing.T, dir string, props map[string]string) (*Handler, *engine.Broker, func()) {
	t.Helper()
	cfg := config.Defaults()
	cfg.DataDir = dir
	cfg.Shards = 2
	cfg.TailCacheBytes = 16 << 20 // direct mode (the default): small, mapped quickly
	cfg.Props["group.initial.rebalance.delay.ms"] = "0"
	for k, v := range props {
		cfg.Props[k] = v
	}
	b, err := engine.Open(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(b)
	if err != nil {
		b.Close()
		t.Fatal(err)
	}
	closed := false
	closeFn := func() {
		if !closed {
			closed = true
			if err := b.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		}
	}
	t.Cleanup(closeFn)
	return h, b, closeFn
}

// call sends req through the whole request path and decodes the answer
// with kmsg.
func call[R kmsg.Response](t *testing.T, h *Handler, req kmsg.Request, version int16) R {
	t.Helper()
	r := h.Handle(requestFrame(req, version), nil)
	if r == nil || r.Close {
		t.Fatalf("%T v%d: no answer", req, version)
	}
	resp := req.ResponseKind()
	decodeResponse(t, written(t, r), resp, version, msg.ResponseHeaderFlexible(req.Key(), version))
	return resp.(R)
}

// waitLoaded polls until the coordinator has loaded (OffsetFetch stops
// answering COORDINATOR_LOAD_IN_PROGRESS).
func waitLoaded(t *testing.T, h *Handler) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		req := kmsg.NewPtrListGroupsRequest()
		if resp := call[*kmsg.ListGroupsResponse](t, h, req, 5); resp.ErrorCode == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the group coordinator did not load within 10 s")
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
}

// joinAndSync makes a one-member group on topic t and returns the member
// id and generation.
func joinAndSync(t *testing.T, h *Handler, group string) (string, int32) {
	t.Helper()
	join := kmsg.NewPtrJoinGroupRequest()
	join.Group, join.SessionTimeoutMillis, join.RebalanceTimeoutMillis, join.ProtocolType = group, 30000, 60000, "consumer"
	join.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: []byte{0, 0, 0, 0, 0, 1, 0, 1, 't', 0xff, 0xff, 0xff, 0xff}}}
	first := call[*kmsg.JoinGroupResponse](t, h, join, 9)
	if first.ErrorCode != 79 {
		t.Fatalf("first join: %d, want MEMBER_ID_REQUIRED", first.ErrorCode)
	}
	join.MemberID = first.MemberID
	jr := call[*kmsg.JoinGroupResponse](t, h, join, 9)
	if jr.ErrorCode != 0 || jr.LeaderID != jr.MemberID {
		t.Fatalf("join: %+v", jr)
	}
	sync := kmsg.NewPtrSyncGroupRequest()
	sync.Group, sync.Generation, sync.MemberID = group, jr.Generation, jr.MemberID
	sync.GroupAssignment = []kmsg.SyncGroupRequestGroupAssignment{{MemberID: jr.MemberID, MemberAssignment: []byte("assignment")}}
	sr := call[*kmsg.SyncGroupResponse](t, h, sync, 5)
	if sr.ErrorCode != 0 || string(sr.MemberAssignment) != "assignment" {
		t.Fatalf("sync: %+v", sr)
	}
	return jr.MemberID, jr.Generation
}

func commit(t *testing.T, h *Handler, group, member string, generation int32, offsets map[int32]int64) {
	t.Helper()
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group, req.Generation, req.MemberID = group, generation, member
	ct := kmsg.OffsetCommitRequestTopic{Topic: "t"}
	for p, off := range offsets {
		md := "meta-" + string(rune('a'+p))
		ct.Partitions = append(ct.Partitions, kmsg.OffsetCommitRequestTopicPartition{Partition: p, Offset: off, LeaderEpoch: 3, Metadata: &md})
	}
	req.Topics = []kmsg.OffsetCommitRequestTopic{ct}
	resp := call[*kmsg.OffsetCommitResponse](t, h, req, 9)
	for _, p := range resp.Topics[0].Partitions {
		if p.ErrorCode != 0 {
			t.Fatalf("commit partition %d: error %d", p.Partition, p.ErrorCode)
		}
	}
}

func fetchOffsets(t *testing.T, h *Handler, group string) map[int32]kmsg.OffsetFetchResponseTopicPartition {
	t.Helper()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = group
	req.Topics = []kmsg.OffsetFetchRequestTopic{{Topic: "t", Partitions: []int32{0, 1, 2, 3}}}
	resp := call[*kmsg.OffsetFetchResponse](t, h, req, 7)
	if resp.ErrorCode != 0 {
		t.Fatalf("offset fetch: error %d", resp.ErrorCode)
	}
	out := map[int32]kmsg.OffsetFetchResponseTopicPartition{}
	for _, p := range resp.Topics[0].Partitions {
		out[p.Partition] = p
	}
	return out
}

// TestGroupStateSurvivesRestart: offsets (with metadata and leader epoch)
// and the group's generation come back after a restart, and the member
// carries on with its id.
func TestGroupStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	h, b, closeBroker := openBroker(t, dir, nil)
	if _, err := b.CreateTopic("t", 4, -1, nil, false); err != nil {
		t.Fatal(err)
	}
	waitLoaded(t, h)
	member, gen := joinAndSync(t, h, "g1")
	commit(t, h, "g1", member, gen, map[int32]int64{0: 11, 3: 33})
	commit(t, h, "g1", member, gen, map[int32]int64{0: 12})
	closeBroker()

	h2, _, _ := openBroker(t, dir, nil)
	waitLoaded(t, h2)
	got := fetchOffsets(t, h2, "g1")
	if got[0].Offset != 12 || got[3].Offset != 33 || got[1].Offset != -1 {
		t.Fatalf("offsets after restart: %+v", got)
	}
	if *got[3].Metadata != "meta-d" || got[3].LeaderEpoch != 3 {
		t.Fatalf("metadata and leader epoch must round-trip exactly: %+v", got[3])
	}
	hb := kmsg.NewPtrHeartbeatRequest()
	hb.Group, hb.Generation, hb.MemberID = "g1", gen, member
	if r := call[*kmsg.HeartbeatResponse](t, h2, hb, 4); r.ErrorCode != 0 {
		t.Fatalf("the member carries on after a restart: heartbeat error %d", r.ErrorCode)
	}
	d := kmsg.NewPtrDescribeGroupsRequest()
	d.Groups = []string{"g1"}
	dr := call[*kmsg.DescribeGroupsResponse](t, h2, d, 5)
	if dr.Groups[0].State != "Stable" || len(dr.Groups[0].Members) != 1 || string(dr.Groups[0].Members[0].MemberAssignment) != "assignment" {
		t.Fatalf("describe after restart: %+v", dr.Groups[0])
	}
}

// TestSnapshotsTrimTheOffsetsLog: with a small snapshot threshold the
// coordinator trims __consumer_offsets, and a restart still finds every
// offset.
func TestSnapshotsTrimTheOffsetsLog(t *testing.T) {
	dir := t.TempDir()
	props := map[string]string{"offsets.topic.num.partitions": "1", "sluice.offsets.snapshot.min.bytes": "4096", "offsets.topic.segment.bytes": "16384"}
	h, b, closeBroker := openBroker(t, dir, props)
	if _, err := b.CreateTopic("t", 4, -1, nil, false); err != nil {
		t.Fatal(err)
	}
	waitLoaded(t, h)
	member, gen := joinAndSync(t, h, "g")
	for i := range 400 {
		commit(t, h, "g", member, gen, map[int32]int64{int32(i % 4): int64(i)})
	}
	topic, _ := b.Meta.Topic(service.Topic)
	var offs shard.Offsets
	b.ShardOf(topic, 0).Call(func(s *shard.Shard) { offs = s.PartitionOffsets(shard.Key{Topic: service.Topic, Partition: 0}) })
	if offs.LogStartOffset == 0 {
		t.Fatalf("the offsets log was never trimmed: %+v", offs)
	}
	closeBroker()
	h2, _, _ := openBroker(t, dir, props)
	waitLoaded(t, h2)
	got := fetchOffsets(t, h2, "g")
	for p := int32(0); p < 4; p++ {
		if want := int64(396 + p); got[p].Offset != want {
			t.Fatalf("partition %d after restart: %d, want %d", p, got[p].Offset, want)
		}
	}
}

func TestFindCoordinatorIsThisBroker(t *testing.T) {
	h, b := newTestHandler(t)
	for v := int16(1); v <= 6; v++ {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.CoordinatorKey = "g"
		req.CoordinatorKeys = []string{"g", "h"}
		resp := call[*kmsg.FindCoordinatorResponse](t, h, req, v)
		if v < 4 {
			if resp.ErrorCode != 0 || resp.NodeID != b.Cfg.NodeID || resp.Port == 0 {
				t.Fatalf("v%d: %+v", v, resp)
			}
			continue
		}
		if len(resp.Coordinators) != 2 || resp.Coordinators[1].Key != "h" || resp.Coordinators[1].NodeID != b.Cfg.NodeID {
			t.Fatalf("v%d: %+v", v, resp)
		}
	}
	req := kmsg.NewPtrFindCoordinatorRequest()
	req.CoordinatorType = 1
	req.CoordinatorKey = "txn"
	if resp := call[*kmsg.FindCoordinatorResponse](t, h, req, 3); resp.ErrorCode != 0 || resp.NodeID != b.Cfg.NodeID {
		t.Fatalf("transaction coordinator: %+v, want this broker", resp)
	}
}

// appendRecords appends n records to partition p of topic with acks=all.
func appendRecords(t *testing.T, b *engine.Broker, topic string, p int32, n int) {
	t.Helper()
	recs := make([]records.Record, n)
	for i := range recs {
		recs[i] = records.Record{OffsetDelta: int32(i), Value: []byte("v")}
	}
	set, err := records.AppendBatch(nil, records.Header{PartitionLeaderEpoch: -1, BaseTimestamp: time.Now().UnixMilli(), ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}, recs, compress.None)
	if err != nil {
		t.Fatal(err)
	}
	tm, _ := b.Meta.Topic(topic)
	done := make(chan shard.ProduceResult, 1)
	b.ShardOf(tm, p).Do(func(sh *shard.Shard) {
		sh.Produce(shard.Key{Topic: topic, Partition: p}, set, -1, func(r shard.ProduceResult) { done <- r })
	})
	if r := <-done; r.Err != 0 {
		t.Fatalf("append to %s/%d: %v", topic, p, r.Err)
	}
}

// groupGauges gathers the broker's registry: name -> "group/topic/partition" -> value.
func groupGauges(t *testing.T, b *engine.Broker) map[string]map[string]float64 {
	t.Helper()
	mfs, err := b.Metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]float64{}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "sluice_consumer_group_") {
			continue
		}
		out[mf.GetName()] = map[string]float64{}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			out[mf.GetName()][l["group"]+"/"+l["topic"]+"/"+l["partition"]] = m.GetGauge().GetValue()
		}
	}
	return out
}

// TestGroupLagMetrics: per group and partition, the committed offset, the
// high watermark and their difference are read at scrape time; a deleted
// topic's offsets keep only the committed offset.
func TestGroupLagMetrics(t *testing.T) {
	h, b, _ := openBroker(t, t.TempDir(), nil)
	for _, name := range []string{"t", "gone"} {
		if _, err := b.CreateTopic(name, 4, -1, nil, false); err != nil {
			t.Fatal(err)
		}
	}
	waitLoaded(t, h)
	appendRecords(t, b, "t", 0, 10)
	appendRecords(t, b, "t", 3, 50)
	member, gen := joinAndSync(t, h, "g")
	commit(t, h, "g", member, gen, map[int32]int64{0: 4, 3: 50})
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group, req.Generation = "simple", -1
	req.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "gone", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 1, Offset: 0}}}}
	if r := call[*kmsg.OffsetCommitResponse](t, h, req, 9); r.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("simple commit: %+v", r)
	}
	appendRecords(t, b, "t", 3, 7)
	if _, err := b.DeleteTopic("gone"); err != nil {
		t.Fatal(err)
	}
	got := groupGauges(t, b)
	want := map[string]map[string]float64{
		"sluice_consumer_group_committed_offset": {"g/t/0": 4, "g/t/3": 50, "simple/gone/1": 0},
		"sluice_consumer_group_log_end_offset":   {"g/t/0": 10, "g/t/3": 57},
		"sluice_consumer_group_lag":              {"g/t/0": 6, "g/t/3": 7},
	}
	for name, series := range want {
		if !maps.Equal(got[name], series) {
			t.Errorf("%s = %v, want %v", name, got[name], series)
		}
	}
}
