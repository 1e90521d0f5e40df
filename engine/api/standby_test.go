package api

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-broker/sluice/engine"
	"github.com/sluice-broker/sluice/engine/shard"
)

// A partition created while the standby is live starts with it in the
// in-sync set, as Kafka's controller puts every live replica in a new
// partition's ISR: acks=all to it waits for the standby from the first
// record. With the standby silent everywhere, new partitions start without
// it.
func TestNewPartitionStartsWithALiveStandbyInSync(t *testing.T) {
	h, b := newTestHandler(t)
	if err := b.RegisterStandby(engine.Peer{NodeID: 2, Host: "127.0.0.1", Port: 19092}, b.Meta.ClusterID()); err != nil {
		t.Fatal(err)
	}
	inSync := func(topic string) []bool {
		tp, ok := b.Meta.Topic(topic)
		if !ok {
			t.Fatalf("no topic %s", topic)
		}
		var out []bool
		for _, p := range tp.Partitions {
			out = append(out, b.StandbyInSync(b.Shards[p.Shard], shard.Key{Topic: topic, Partition: p.Index}))
		}
		return out
	}
	if _, err := b.CreateTopic("before", 2, 2, nil, false); err != nil {
		t.Fatal(err)
	}
	for i, in := range inSync("before") {
		if in {
			t.Errorf("before the standby fetched anything, partition %d starts with it in sync", i)
		}
	}

	// The standby fetches partition 0 of "before" at its end: in sync there.
	tp, _ := b.Meta.Topic("before")
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaState.ID, req.ReplicaState.Epoch = 2, -1
	req.MinBytes, req.MaxBytes = 1, 1<<20
	rt := kmsg.NewFetchRequestTopic()
	rt.TopicID = tp.ID
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.CurrentLeaderEpoch, rp.PartitionMaxBytes = -1, 1<<20
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	var resp kmsg.FetchResponse
	decodeResponse(t, written(t, h.Handle(requestFrame(req, 15), nil)), &resp, 15, true)
	if code := resp.Topics[0].Partitions[0].ErrorCode; code != 0 {
		t.Fatalf("replica fetch: error %d", code)
	}
	if got := inSync("before"); !got[0] {
		t.Fatal("the standby's fetch at the log end did not put it in sync")
	}

	if _, err := b.CreateTopic("after", 3, 2, nil, false); err != nil {
		t.Fatal(err)
	}
	for i, in := range inSync("after") {
		if !in {
			t.Errorf("partition %d, created while the standby is live, starts without it in sync", i)
		}
	}
}
