package fetchwire

import (
	"bytes"
	"encoding/binary"
	"math/rand"
	"testing"

	"github.com/sluice-broker/sluice/wire"
	"github.com/sluice-broker/sluice/wire/msg"
)

// randomResponse builds a fetch response with records in memory, for every
// shape the broker produces: null, empty and non-empty records, aborted
// transactions, and the tagged fields.
func randomResponse(rng *rand.Rand) (*msg.FetchResponse, [][]Records) {
	var m msg.FetchResponse
	m.Default()
	m.ThrottleTimeMs = rng.Int31()
	m.SessionId = rng.Int31()
	var recs [][]Records
	for t := 0; t < 1+rng.Intn(3); t++ {
		var topic msg.FetchResponseFetchableTopicResponse
		topic.Default()
		topic.Topic = string(rune('a' + t))
		rng.Read(topic.TopicId[:])
		var trecs []Records
		for p := 0; p < rng.Intn(4); p++ {
			var part msg.FetchResponsePartitionData
			part.Default()
			part.PartitionIndex = int32(p)
			part.HighWatermark = rng.Int63()
			part.LastStableOffset = rng.Int63()
			part.LogStartOffset = rng.Int63()
			if rng.Intn(2) == 0 {
				part.AbortedTransactions = []msg.FetchResponseAbortedTransaction{{ProducerId: 7, FirstOffset: 9}}
			}
			if rng.Intn(3) == 0 {
				part.CurrentLeader.LeaderId = 1
				part.CurrentLeader.LeaderEpoch = 2
			}
			if rng.Intn(3) == 0 {
				part.DivergingEpoch.Epoch = 3
				part.DivergingEpoch.EndOffset = 4
			}
			var r Records
			switch rng.Intn(3) {
			case 0:
				r = Records{Null: true}
			case 1:
				r = Records{Bytes: []byte{}}
			default:
				// Both sides of InlineMax: copied into the frame, or a
				// chunk of their own.
				r = Records{Bytes: bytes.Repeat([]byte{byte(p + 1)}, 1+rng.Intn(3*InlineMax))}
			}
			if !r.Null {
				part.Records = r.Bytes
			}
			topic.Partitions = append(topic.Partitions, part)
			trecs = append(trecs, r)
		}
		m.Responses = append(m.Responses, topic)
		recs = append(recs, trecs)
	}
	return &m, recs
}

// generated frames m with the generated encoder, the reference Encode must
// match byte for byte.
func generated(m *msg.FetchResponse, correlationID int32, version int16) []byte {
	want := make([]byte, 4)
	want = wire.AppendResponseHeader(want, correlationID, version >= 12)
	want = m.Append(want, version)
	binary.BigEndian.PutUint32(want, uint32(len(want)-4))
	return want
}

func join(t *testing.T, chunks []Chunk, file []byte) []byte {
	var out []byte
	for _, c := range chunks {
		if c.Bytes != nil {
			out = append(out, c.Bytes...)
			continue
		}
		out = append(out, file[c.Off:c.Off+int64(c.Len)]...)
	}
	return out
}

// TestMatchesGenerated checks the zero-copy encoder against the generated
// encoder byte for byte, for every Fetch version sluice serves.
func TestMatchesGenerated(t *testing.T) {
	seed := int64(1)
	rng := rand.New(rand.NewSource(seed))
	for version := int16(4); version <= 17; version++ {
		for i := 0; i < 50; i++ {
			m, recs := randomResponse(rng)
			want := generated(m, 42, version)
			got := join(t, Encode(nil, 42, m, version, recs), nil)
			if !bytes.Equal(got, want) {
				t.Fatalf("seed %d version %d case %d: zero-copy encoding differs from generated\n got %x\nwant %x", seed, version, i, got, want)
			}
		}
	}
}

// TestFileRanges checks that file-backed records become file chunks with the
// right framing around them.
func TestFileRanges(t *testing.T) {
	file := bytes.Repeat([]byte("0123456789"), 4*InlineMax/10)
	rng := rand.New(rand.NewSource(2))
	for version := int16(4); version <= 17; version++ {
		m, recs := randomResponse(rng)
		files := 0
		for ti := range recs {
			for pi := range recs[ti] {
				r := recs[ti][pi]
				if r.Null || len(r.Bytes) == 0 {
					continue
				}
				off := int64(rng.Intn(len(file) - len(r.Bytes)))
				m.Responses[ti].Partitions[pi].Records = file[off : off+int64(len(r.Bytes))]
				recs[ti][pi] = Records{File: 3, Off: off, Len: len(r.Bytes)}
				files++
			}
		}
		chunks := Encode(nil, 7, m, version, recs)
		n := 0
		for _, c := range chunks {
			if c.Bytes == nil {
				n++
			}
		}
		if n != files {
			t.Fatalf("version %d: %d file chunks, want %d", version, n, files)
		}
		want := generated(m, 7, version)
		if got := join(t, chunks, file); !bytes.Equal(got, want) {
			t.Fatalf("version %d: framing around file ranges differs", version)
		}
	}
}

// TestMemoryRecordsReferenced checks that records in memory larger than
// InlineMax are written from the caller's buffer, not copied into the frame,
// and that smaller ones are copied.
func TestMemoryRecordsReferenced(t *testing.T) {
	for version := int16(4); version <= 17; version++ {
		var m msg.FetchResponse
		m.Default()
		var topic msg.FetchResponseFetchableTopicResponse
		topic.Default()
		topic.Topic = "t"
		big := bytes.Repeat([]byte{1}, InlineMax+1)
		small := bytes.Repeat([]byte{2}, InlineMax)
		for i, b := range [][]byte{big, small} {
			var part msg.FetchResponsePartitionData
			part.Default()
			part.PartitionIndex = int32(i)
			part.Records = b
			topic.Partitions = append(topic.Partitions, part)
		}
		m.Responses = append(m.Responses, topic)
		chunks := Encode(nil, 1, &m, version, [][]Records{{{Bytes: big}, {Bytes: small}}})
		refs := map[*byte]bool{}
		for _, c := range chunks {
			if len(c.Bytes) > 0 {
				refs[&c.Bytes[0]] = true
			}
		}
		if !refs[&big[0]] {
			t.Errorf("version %d: records of %d bytes were copied into the frame", version, len(big))
		}
		if refs[&small[0]] {
			t.Errorf("version %d: records of %d bytes were not copied into the frame", version, len(small))
		}
		want := generated(&m, 1, version)
		if got := join(t, chunks, nil); !bytes.Equal(got, want) {
			t.Fatalf("version %d: encoding differs from generated", version)
		}
	}
}
