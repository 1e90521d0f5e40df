package api

import (
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-broker/sluice/engine"
	"github.com/sluice-broker/sluice/engine/config"
	"github.com/sluice-broker/sluice/wire"
	"github.com/sluice-broker/sluice/wire/msg"
)

func newTestHandler(t testing.TB) (*Handler, *engine.Broker) {
	t.Helper()
	cfg := config.Defaults()
	cfg.DataDir = t.TempDir()
	cfg.Shards = 2
	cfg.TailCacheBytes = 16 << 20 // direct mode (the default): small, mapped quickly
	if m := os.Getenv("SLUICE_IO_MODE"); m != "" {
		cfg.IOMode = m
	}
	b, err := engine.Open(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	h, err := New(b)
	if err != nil {
		t.Fatal(err)
	}
	return h, b
}

// requestFrame encodes a request as a client would (without the size
// prefix), using franz-go's kmsg so our decoders meet an independent encoder.
func requestFrame(req kmsg.Request, version int16) []byte {
	req.SetVersion(version)
	flexible := req.IsFlexible()
	clientID := "test"
	b := wire.AppendRequestHeader(nil, wire.RequestHeader{APIKey: req.Key(), APIVersion: version, CorrelationID: 77, ClientID: &clientID}, flexible)
	return req.AppendTo(b)
}

// fetchFrame encodes a Fetch v13 request (min_bytes 1) for partition 0 of
// the topic with id, from offset 0, at most maxBytes.
func fetchFrame(id [16]byte, maxWaitMs, maxBytes int32) []byte {
	req := kmsg.NewPtrFetchRequest()
	req.MaxWaitMillis, req.MinBytes, req.MaxBytes = maxWaitMs, 1, maxBytes
	rt := kmsg.NewFetchRequestTopic()
	rt.TopicID = id
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.PartitionMaxBytes = maxBytes
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return requestFrame(req, 13)
}

// written concatenates a response's byte parts (no file parts expected).
func written(t testing.TB, r *Response) []byte {
	t.Helper()
	r.Wait()
	var out []byte
	for _, p := range r.Parts {
		if p.Bytes == nil && p.Len > 0 {
			buf := make([]byte, p.Len)
			f := os.NewFile(uintptr(p.File), "segment")
			if _, err := f.ReadAt(buf, p.Off); err != nil {
				t.Fatal(err)
			}
			out = append(out, buf...)
			continue
		}
		out = append(out, p.Bytes...)
	}
	if r.Release != nil {
		r.Release()
	}
	return out
}

func decodeResponse(t testing.TB, frame []byte, resp kmsg.Response, version int16, headerFlexible bool) {
	t.Helper()
	if got := int(binary.BigEndian.Uint32(frame)); got != len(frame)-4 {
		t.Fatalf("size prefix %d, frame has %d bytes", got, len(frame)-4)
	}
	corr, body, err := wire.ParseResponseHeader(frame[4:], headerFlexible)
	if err != nil || corr != 77 {
		t.Fatalf("response header: corr %d, err %v", corr, err)
	}
	resp.SetVersion(version)
	if err := resp.ReadFrom(body); err != nil {
		t.Fatalf("kmsg cannot decode our %T v%d: %v", resp, version, err)
	}
}

func TestUnknownAPIKeyClosesConnection(t *testing.T) {
	h, _ := newTestHandler(t)
	frame := requestFrame(kmsg.NewPtrMetadataRequest(), 4)
	binary.BigEndian.PutUint16(frame, 99)
	if r := h.Handle(frame, nil); r == nil || !r.Close {
		t.Fatal("an unknown API key must close the connection, as Kafka does")
	}
}

func TestUnsupportedVersionClosesConnection(t *testing.T) {
	h, _ := newTestHandler(t)
	frame := requestFrame(kmsg.NewPtrProduceRequest(), 3)
	binary.BigEndian.PutUint16(frame[2:], 2) // Produce v2: below Kafka 4's minimum
	if r := h.Handle(frame, nil); r == nil || !r.Close {
		t.Fatal("an unsupported Produce version must close the connection")
	}
}

// TestApiVersionsUnsupported: an ApiVersions request newer than we know gets
// the v0 response with UNSUPPORTED_VERSION and our list (KIP-511).
func TestApiVersionsUnsupported(t *testing.T) {
	h, _ := newTestHandler(t)
	frame := requestFrame(kmsg.NewPtrApiVersionsRequest(), 3)
	binary.BigEndian.PutUint16(frame[2:], 99)
	out := written(t, h.Handle(frame, nil))
	resp := kmsg.NewPtrApiVersionsResponse()
	decodeResponse(t, out, resp, 0, false)
	if resp.ErrorCode != 35 || len(resp.ApiKeys) == 0 {
		t.Fatalf("error %d with %d keys; want 35 and the supported list", resp.ErrorCode, len(resp.ApiKeys))
	}
}

// TestAdvertisedVersionsAreImplemented: what ApiVersions lists is exactly the
// dispatch table, and every advertised version decodes with our codecs.
func TestAdvertisedVersionsAreImplemented(t *testing.T) {
	h, _ := newTestHandler(t)
	for v := int16(0); v <= 4; v++ {
		req := kmsg.NewPtrApiVersionsRequest()
		req.ClientSoftwareName, req.ClientSoftwareVersion = "sluice-test", "1.0"
		out := written(t, h.Handle(requestFrame(req, v), nil))
		resp := kmsg.NewPtrApiVersionsResponse()
		decodeResponse(t, out, resp, v, false)
		if resp.ErrorCode != 0 {
			t.Fatalf("v%d: error %d", v, resp.ErrorCode)
		}
		for _, k := range resp.ApiKeys {
			e := h.table[k.ApiKey]
			lowest := int16(-1)
			if e != nil {
				lowest = e.min
				if e.advertiseMin != nil {
					lowest = *e.advertiseMin // listed but refused, as Kafka 4 does
				}
			}
			if e == nil || lowest != k.MinVersion || e.max != k.MaxVersion {
				t.Fatalf("advertised %d v%d-%d without a matching handler", k.ApiKey, k.MinVersion, k.MaxVersion)
			}
			vr, ok := msg.RequestVersions(k.ApiKey)
			if !ok || !vr.Contains(k.MinVersion) || !vr.Contains(k.MaxVersion) {
				t.Fatalf("advertised %d v%d-%d outside the codec's range %+v", k.ApiKey, k.MinVersion, k.MaxVersion, vr)
			}
		}
	}
}

// TestEveryVersionAnswers sends a default request of every advertised API
// and version (encoded by kmsg) and decodes the answer with kmsg.
func TestEveryVersionAnswers(t *testing.T) {
	h, _ := newTestHandler(t)
	for _, e := range handlers {
		for v := e.min; v <= e.max; v++ {
			req := kmsg.RequestForKey(e.key)
			if req == nil {
				t.Fatalf("kmsg has no request for key %d", e.key)
			}
			if e.key == 0 { // an acks=0 produce takes no answer
				req.(*kmsg.ProduceRequest).Acks = 1
			}
			r := h.Handle(requestFrame(req, v), nil)
			if r == nil || r.Close {
				t.Fatalf("%s v%d: no answer to a valid request", msg.APIName(e.key), v)
			}
			resp := req.ResponseKind()
			decodeResponse(t, written(t, r), resp, v, msg.ResponseHeaderFlexible(e.key, v))
		}
	}
}

// FuzzHandle feeds arbitrary frames through the whole request path of a
// real broker: nothing may panic, and the broker keeps answering.
func FuzzHandle(f *testing.F) {
	for _, e := range handlers {
		for _, v := range []int16{e.min, e.max} {
			req := kmsg.RequestForKey(e.key)
			f.Add(requestFrame(req, v))
		}
	}
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0xff}, 20))
	h, _ := newTestHandler(f)
	ping := requestFrame(kmsg.NewPtrApiVersionsRequest(), 2)
	f.Fuzz(func(t *testing.T, frame []byte) {
		if r := h.Handle(frame, nil); r != nil {
			// A long-poll fetch may legitimately wait up to its max_wait.
			go func() {
				r.Wait()
				if r.Release != nil {
					r.Release()
				}
			}()
		}
		if r := h.Handle(ping, nil); r == nil || r.Close {
			t.Fatal("broker stopped answering ApiVersions")
		} else {
			written(t, r)
		}
	})
}

// TestApiVersionsRejectsBadSoftwareName: v3+ names must match Kafka's
// pattern (KIP-511), else INVALID_REQUEST.
func TestApiVersionsRejectsBadSoftwareName(t *testing.T) {
	h, _ := newTestHandler(t)
	req := kmsg.NewPtrApiVersionsRequest()
	req.ClientSoftwareName, req.ClientSoftwareVersion = "bad name!", "1"
	resp := kmsg.NewPtrApiVersionsResponse()
	decodeResponse(t, written(t, h.Handle(requestFrame(req, 3), nil)), resp, 3, false)
	if resp.ErrorCode != 42 {
		t.Fatalf("error %d, want INVALID_REQUEST (42)", resp.ErrorCode)
	}
}

// TestInternalTopicsRefuseClients: clients cannot write to, grow or delete
// the broker's internal topics.
func TestInternalTopicsRefuseClients(t *testing.T) {
	h, b := newTestHandler(t)
	if _, err := b.EnsureInternalTopic("__internal_test", 1, nil); err != nil {
		t.Fatal(err)
	}
	produce := kmsg.NewPtrProduceResponse()
	decodeResponse(t, written(t, h.Handle(produceFrame(t, "__internal_test", 1), nil)), produce, 11, true)
	if code := produce.Topics[0].Partitions[0].ErrorCode; code != 17 {
		t.Errorf("produce to an internal topic: error %d, want INVALID_TOPIC_EXCEPTION (17)", code)
	}
	del := kmsg.NewPtrDeleteTopicsRequest()
	del.TopicNames = []string{"__internal_test"}
	delResp := kmsg.NewPtrDeleteTopicsResponse()
	decodeResponse(t, written(t, h.Handle(requestFrame(del, 5), nil)), delResp, 5, true)
	if code := delResp.Topics[0].ErrorCode; code != 42 {
		t.Errorf("deleting an internal topic: error %d, want INVALID_REQUEST (42)", code)
	}
	grow := kmsg.NewPtrCreatePartitionsRequest()
	gt := kmsg.NewCreatePartitionsRequestTopic()
	gt.Topic, gt.Count = "__internal_test", 3
	grow.Topics = append(grow.Topics, gt)
	growResp := kmsg.NewPtrCreatePartitionsResponse()
	decodeResponse(t, written(t, h.Handle(requestFrame(grow, 3), nil)), growResp, 3, true)
	if code := growResp.Topics[0].ErrorCode; code != 42 {
		t.Errorf("growing an internal topic: error %d, want INVALID_REQUEST (42)", code)
	}
}

// TestLongPollEndsWhenConnectionCloses: a fetch parked for its max_wait
// completes as soon as its connection goes away, so shutdown and closing
// clients never wait it out.
func TestLongPollEndsWhenConnectionCloses(t *testing.T) {
	h, b := newTestHandler(t)
	topic, err := b.CreateTopic("longpoll", 1, 1, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	r := h.Handle(fetchFrame(topic.ID, 20000, 1<<20), closed)
	done := make(chan struct{})
	go func() { r.Wait(); close(done) }()
	select {
	case <-done:
		t.Fatal("a fetch with nothing to read answered before its max_wait")
	case <-time.After(100 * time.Millisecond):
	}
	start := time.Now()
	close(closed)
	select {
	case <-done:
		t.Logf("parked fetch ended %v after its connection closed", time.Since(start))
	case <-time.After(5 * time.Second):
		t.Fatal("a parked fetch outlived its connection")
	}
	if r.Release != nil {
		r.Release()
	}
}

// Every group API, in every version served, has a NOT_COORDINATOR answer
// for a node without a coordinator (a standby), and it encodes.
func TestNotCoordinatorAnswersEveryGroupAPI(t *testing.T) {
	for _, e := range handlers {
		if !groupAPIs[e.key] {
			continue
		}
		for v := e.min; v <= e.max; v++ {
			req := msg.NewRequest(e.key)
			req.Default()
			rc := &request{version: v}
			resp := notCoordinator(rc, req)
			if resp == nil {
				t.Fatalf("%s v%d: no NOT_COORDINATOR answer", msg.APIName(e.key), v)
			}
			if b := resp.Append(nil, v); len(b) == 0 {
				t.Fatalf("%s v%d: the answer encodes to nothing", msg.APIName(e.key), v)
			}
		}
	}
}
