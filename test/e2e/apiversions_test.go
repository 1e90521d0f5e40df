package e2e

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestApiVersionsClientFeatureGates: librdkafka (kcat, confluent-kafka)
// turns features on from the ranges ApiVersions advertises, and silently
// falls back when one is missing (src/rdkafka_feature.c). A broker that
// advertises only what it serves loses compression with it, so Kafka 4
// advertises some versions it refuses (KAFKA-18659). The ranges below are the
// ones librdkafka checks; all hold for Apache Kafka 4.3.
func TestApiVersionsClientFeatureGates(t *testing.T) {
	b := Shared(t)
	c := dialRaw(t, b.Addr)
	c.negotiate()
	type gate struct {
		key      int16
		name     string
		min, max int16 // the broker's range must overlap [min, max]
		feature  string
	}
	for _, g := range []gate{
		{0, "Produce", 2, 2, "MsgVer1, which librdkafka needs to compress with gzip/snappy/lz4 (Kafka 4 advertises Produce v0-v2 and refuses them)"},
		{1, "Fetch", 4, 4, "MsgVer2 (record batches)"},
		{0, "Produce", 3, 3, "MsgVer2 (record batches)"},
		{0, "Produce", 7, 7, "ZSTD"},
		{1, "Fetch", 10, 10, "ZSTD"},
		{10, "FindCoordinator", 0, 0, "LZ4 (and consumer groups)"},
		{2, "ListOffsets", 1, 1, "OffsetTime (offsets by timestamp)"},
		{22, "InitProducerId", 0, 0, "IdempotentProducer"},
	} {
		v, ok := c.versions[g.key]
		if !ok || v[0] > g.max || v[1] < g.min {
			t.Errorf("ApiVersions advertises %s (key %d) as %v (present %v); librdkafka needs it to overlap v%d-v%d for %s",
				g.name, g.key, v, ok, g.min, g.max, g.feature)
		}
	}

	// Produce v0-v2 are advertised but refused: Kafka 4.3 closes the
	// connection.
	topic := topicName(t, "")
	(&franzClient{b: b}).CreateTopic(t, topic, 1, nil)
	waitForTopic(t, b, topic, 1)
	for _, version := range []int16{0, 2} {
		conn := dialRaw(t, b.Addr)
		req := kmsg.NewPtrProduceRequest()
		req.Version = version
		req.Acks = 1
		req.TimeoutMillis = 5000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = buildLegacyMessageSet(1, nil, []byte("x"), time.Now().UnixMilli())
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		frame, _ := conn.frame(req)
		conn.write(frame)
		if err := conn.expectClosed(10 * time.Second); err != nil {
			t.Errorf("Produce v%d: %v; Kafka 4 closes the connection", version, err)
		}
	}

	// ApiVersions v0, as the oldest clients send it, is answered.
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 0
	resp, err := dialRaw(t, b.Addr).roundTrip(req)
	if err != nil {
		t.Fatalf("ApiVersions v0: %v", err)
	}
	if av := resp.(*kmsg.ApiVersionsResponse); av.ErrorCode != 0 || len(av.ApiKeys) < 10 {
		t.Errorf("ApiVersions v0: error %d, %d APIs", av.ErrorCode, len(av.ApiKeys))
	}
}
