package msg

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/sluice-broker/sluice/wire"
)

func TestRegistry(t *testing.T) {
	keys := APIKeys()
	if len(keys) < 70 || keys[0] != APIKeyProduce {
		t.Fatalf("%d API keys, first %d", len(keys), keys[0])
	}
	for _, key := range keys {
		vr, ok := RequestVersions(key)
		if !ok || vr.Min > vr.Max || APIName(key) == "" {
			t.Errorf("key %d: %+v %v %q", key, vr, ok, APIName(key))
		}
		req, resp := NewRequest(key), NewResponse(key)
		if req == nil || resp == nil || req.APIKey() != key || resp.APIKey() != key {
			t.Fatalf("key %d: NewRequest/NewResponse broken", key)
		}
		if req.Versions() != vr || resp.Versions() != vr {
			t.Errorf("key %d: Versions() disagree with RequestVersions", key)
		}
	}
	if NewRequest(-1) != nil || NewResponse(32000) != nil || APIName(32000) != "" {
		t.Error("unknown keys return something")
	}
	if _, ok := RequestVersions(32000); ok {
		t.Error("RequestVersions(32000) ok")
	}
	tests := []struct {
		key, version           int16
		flexible, respFlexible bool
	}{
		{APIKeyProduce, 8, false, false},
		{APIKeyProduce, 9, true, true},
		{APIKeyApiVersions, 2, false, false},
		{APIKeyApiVersions, 3, true, false}, // KIP-511: response header v0
		{APIKeyMetadata, 9, true, true},
		{APIKeyMetadata, 8, false, false},
		{32000, 0, false, false},
	}
	for _, tt := range tests {
		if IsFlexible(tt.key, tt.version) != tt.flexible || ResponseHeaderFlexible(tt.key, tt.version) != tt.respFlexible {
			t.Errorf("key %d v%d: flexible %v, response header flexible %v", tt.key, tt.version,
				IsFlexible(tt.key, tt.version), ResponseHeaderFlexible(tt.key, tt.version))
		}
	}
	if vr, _ := RequestVersions(APIKeyLeaderAndIsr); vr.FlexibleMin == NeverFlexible {
		t.Error("LeaderAndIsr should be flexible from v4")
	}
	if vr, _ := RequestVersions(APIKeyProduce); vr != (VersionRange{Min: 0, Max: 11, FlexibleMin: 9}) {
		t.Errorf("Produce versions %+v", vr)
	}
	if !LatestVersionUnstable(APIKeyEndTxn) || LatestVersionUnstable(APIKeyProduce) {
		t.Error("LatestVersionUnstable")
	}
}

func TestDefaults(t *testing.T) {
	var f FetchRequest
	f.Default()
	if f.ReplicaId != -1 || f.MaxBytes != 0x7fffffff || f.ClusterId != nil || f.ReplicaState.ReplicaId != -1 {
		t.Errorf("FetchRequest defaults: %+v", f)
	}
	var p ProduceRequest
	p.Default()
	if p.TransactionalId != nil {
		t.Error("ProduceRequest.TransactionalId default is not null")
	}
	var m MetadataRequest
	m.Default()
	if !m.AllowAutoTopicCreation {
		t.Error("MetadataRequest.AllowAutoTopicCreation default is not true")
	}
}

// TestRoundTrip encodes random messages of every API and version, decodes
// them and re-encodes: the bytes must match. It covers what the kmsg
// differential test cannot (messages or versions kmsg lacks).
func TestRoundTrip(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	for _, key := range APIKeys() {
		for _, proto := range []Message{NewRequest(key), NewResponse(key)} {
			vr := proto.Versions()
			for v := vr.Min; v <= vr.Max; v++ {
				for range 3 {
					m := reflect.New(reflect.TypeOf(proto).Elem()).Interface().(Message)
					fillRandom(reflect.ValueOf(m).Elem(), rng, 0)
					enc := m.Append(nil, v)
					back := reflect.New(reflect.TypeOf(proto).Elem()).Interface().(Message)
					if err := back.Decode(enc, v); err != nil {
						t.Fatalf("%T v%d (seed %d): %v", m, v, seed, err)
					}
					if re := back.Append(nil, v); !bytes.Equal(re, enc) {
						t.Fatalf("%T v%d (seed %d): re-encoding differs at %d", m, v, seed, firstDiff(re, enc))
					}
					// Every strict prefix must fail to decode, not panic.
					if len(enc) > 0 {
						if err := back.Decode(enc[:rng.IntN(len(enc))], v); err == nil {
							// A prefix can be valid only if the tail was
							// all optional; re-encoding then differs.
							continue
						}
					}
				}
			}
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	var m MetadataRequest
	if err := m.Decode(nil, 99); err == nil {
		t.Error("version 99 accepted")
	}
	// A non-nullable array encoded as null.
	var p ProduceRequest
	b := wire.AppendInt16(nil, 1)  // acks
	b = wire.AppendInt32(b, 1000)  // timeout
	b = wire.AppendArrayLen(b, -1) // topic data: null
	if err := p.Decode(b, 2); err == nil {
		t.Error("null TopicData accepted")
	}
	// A hostile array count fails before allocating.
	b = wire.AppendInt16(nil, 1)
	b = wire.AppendInt32(b, 1000)
	b = wire.AppendArrayLen(b, 1<<31-1)
	allocs := testing.AllocsPerRun(50, func() {
		if err := p.Decode(b, 2); err == nil {
			t.Fatal("huge count accepted")
		}
	})
	if allocs > 1 {
		t.Errorf("%v allocations decoding a hostile count", allocs)
	}
}

func TestInsertSize(t *testing.T) {
	for _, n := range []int{0, 1, 127, 128, 20000} {
		dst := []byte{9, 9}
		start := len(dst)
		dst = append(dst, bytes.Repeat([]byte{7}, n)...)
		dst = insertSize(dst, start)
		r := wire.NewReader(dst[start:])
		if size := r.Uvarint(); int(size) != n || r.Remaining() != n || dst[0] != 9 {
			t.Errorf("n=%d: size %d, remaining %d", n, size, r.Remaining())
		}
	}
}

func TestAppendNoAlloc(t *testing.T) {
	m := &ProduceResponse{Responses: []ProduceResponseTopicProduceResponse{{
		Name:               "t",
		PartitionResponses: []ProduceResponsePartitionProduceResponse{{Index: 1, BaseOffset: 7}},
	}}}
	buf := make([]byte, 0, 1024)
	allocs := testing.AllocsPerRun(100, func() { _ = m.Append(buf[:0], 11) })
	if allocs != 0 {
		t.Errorf("%v allocations", allocs)
	}
}

// FuzzDecodeRequest decodes arbitrary bytes as any request and version:
// it must not panic, and allocation must stay proportional to the input
// (array counts are checked against the bytes left before allocating).
func FuzzDecodeRequest(f *testing.F) {
	for _, key := range APIKeys() {
		vr, _ := RequestVersions(key)
		for v := vr.Min; v <= vr.Max; v++ {
			f.Add(key, v, NewRequest(key).Append(nil, v))
		}
	}
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	f.Fuzz(func(t *testing.T, key, version int16, data []byte) {
		m := NewRequest(key)
		if m == nil {
			return
		}
		metrics.Read(sample)
		before := sample[0].Value.Uint64()
		err := m.Decode(data, version)
		metrics.Read(sample)
		// The largest generated struct is a few hundred bytes; every array
		// element takes at least one input byte.
		if allocated, limit := sample[0].Value.Uint64()-before, uint64(1024*len(data)+1<<20); allocated > limit {
			t.Fatalf("decoding %d bytes allocated %d", len(data), allocated)
		}
		if err != nil {
			return
		}
		// What decodes must re-encode and decode to the same encoding.
		enc := m.Append(nil, version)
		again := NewRequest(key)
		if err := again.Decode(enc, version); err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if !bytes.Equal(again.Append(nil, version), enc) {
			t.Fatal("encoding not stable")
		}
	})
}
