// Package fetchwire is the hand-written, zero-copy encoder of Fetch
// responses. The generated msg.FetchResponse encoder copies every
// partition's record bytes into the frame; this one stops where a
// partition's records go, leaving a gap that the connection fills straight
// from the segment file with sendfile. Everything else is encoded exactly as
// msg.FetchResponse.Append does (a test checks it byte for byte), so the two
// stay interchangeable.
//
// A response frame is written as a list of chunks:
//
//	[ size | header | body up to partition 0's records length ] [ file range ] [ tags, partition 1 ... ] ...
package fetchwire

import (
	"encoding/binary"

	"github.com/sluice-broker/sluice/wire"
	"github.com/sluice-broker/sluice/wire/msg"
)

// Records is where a partition's record bytes come from: memory (Bytes) or a
// file range (File, Off, Len). Null records are Null. Encode copies Bytes
// of up to InlineMax bytes and references larger ones.
type Records struct {
	Null  bool
	Bytes []byte
	File  int
	Off   int64
	Len   int
}

// Size is the number of record bytes.
func (r Records) Size() int {
	if r.Bytes != nil {
		return len(r.Bytes)
	}
	return r.Len
}

// InlineMax is the most record bytes from memory that Encode copies into
// the frame; larger ones are referenced by a chunk of their own, so they
// must stay unchanged until the frame is written.
const InlineMax = 512

// Chunk is one piece of the encoded frame: bytes, or a file range when Bytes
// is nil.
type Chunk struct {
	Bytes []byte
	File  int
	Off   int64
	Len   int
}

// Encode frames m as a complete response (size prefix, response header v0
// or v1, body) in version, taking partition records from recs[t][p]
// (m's own Records fields are ignored). It appends chunks to dst.
func Encode(dst []Chunk, correlationID int32, m *msg.FetchResponse, version int16, recs [][]Records) []Chunk {
	flexible := version >= 12
	buf := make([]byte, 4, 512)
	buf = wire.AppendResponseHeader(buf, correlationID, flexible)
	start := 0 // where the current byte chunk starts in buf
	total := 0 // bytes of the frame after the size prefix, file ranges included
	first := len(dst)
	flush := func() {
		if len(buf) > start {
			dst = append(dst, Chunk{Bytes: buf[start:len(buf):len(buf)]})
			total += len(buf) - start
		}
		start = len(buf)
	}
	if version >= 1 {
		buf = wire.AppendInt32(buf, m.ThrottleTimeMs)
	}
	if version >= 7 {
		buf = wire.AppendInt16(buf, m.ErrorCode)
		buf = wire.AppendInt32(buf, m.SessionId)
	}
	buf = appendLen(buf, len(m.Responses), flexible)
	for ti := range m.Responses {
		t := &m.Responses[ti]
		if version >= 13 {
			buf = wire.AppendUUID(buf, t.TopicId)
		} else if flexible {
			buf = wire.AppendCompactString(buf, t.Topic)
		} else {
			buf = wire.AppendString(buf, t.Topic)
		}
		buf = appendLen(buf, len(t.Partitions), flexible)
		for pi := range t.Partitions {
			p := &t.Partitions[pi]
			var r Records
			if ti < len(recs) && pi < len(recs[ti]) {
				r = recs[ti][pi]
			} else {
				r = Records{Null: true}
			}
			saved := p.Records
			p.Records = nil
			buf = appendPartitionHead(buf, p, version)
			p.Records = saved
			switch {
			case r.Null:
				buf = appendNullLen(buf, flexible)
			case r.Bytes != nil && len(r.Bytes) > InlineMax:
				// Records in memory (the tail cache's copy) become a chunk
				// of their own, as a file range does, rather than a second
				// copy into a growing frame buffer: tailing consumers
				// would otherwise churn the heap at their own byte rate.
				buf = appendLen(buf, len(r.Bytes), flexible)
				flush()
				dst = append(dst, Chunk{Bytes: r.Bytes})
				total += len(r.Bytes)
			case r.Bytes != nil || r.Len == 0:
				if flexible {
					buf = wire.AppendCompactBytes(buf, r.Bytes)
				} else {
					buf = wire.AppendBytes(buf, r.Bytes)
				}
			default:
				if flexible {
					buf = wire.AppendUvarint(buf, uint32(r.Len)+1)
				} else {
					buf = wire.AppendInt32(buf, int32(r.Len))
				}
				flush()
				dst = append(dst, Chunk{File: r.File, Off: r.Off, Len: r.Len})
				total += r.Len
			}
			if flexible {
				buf = appendPartitionTags(buf, p)
			}
		}
		if flexible {
			buf = wire.AppendEmptyTaggedFields(buf)
		}
	}
	if flexible {
		if version >= 16 && len(m.NodeEndpoints) > 0 {
			buf = wire.AppendUvarint(buf, 1)
			buf = wire.AppendUvarint(buf, 0)
			tagStart := len(buf)
			buf = wire.AppendCompactArrayLen(buf, len(m.NodeEndpoints))
			for i := range m.NodeEndpoints {
				buf = m.NodeEndpoints[i].Append(buf, version)
			}
			buf = insertSize(buf, tagStart)
		} else {
			buf = wire.AppendEmptyTaggedFields(buf)
		}
	}
	flush()
	binary.BigEndian.PutUint32(dst[first].Bytes[:4], uint32(total-4))
	return dst
}

// appendPartitionHead encodes a partition up to (not including) its records.
func appendPartitionHead(buf []byte, p *msg.FetchResponsePartitionData, version int16) []byte {
	flexible := version >= 12
	buf = wire.AppendInt32(buf, p.PartitionIndex)
	buf = wire.AppendInt16(buf, p.ErrorCode)
	buf = wire.AppendInt64(buf, p.HighWatermark)
	if version >= 4 {
		buf = wire.AppendInt64(buf, p.LastStableOffset)
	}
	if version >= 5 {
		buf = wire.AppendInt64(buf, p.LogStartOffset)
	}
	if version >= 4 {
		if p.AbortedTransactions == nil {
			buf = appendNullLen(buf, flexible)
		} else {
			buf = appendLen(buf, len(p.AbortedTransactions), flexible)
			for i := range p.AbortedTransactions {
				buf = p.AbortedTransactions[i].Append(buf, version)
			}
		}
	}
	if version >= 11 {
		buf = wire.AppendInt32(buf, p.PreferredReadReplica)
	}
	return buf
}

// appendPartitionTags encodes a partition's tagged fields (flexible
// versions): diverging epoch (0), current leader (1), snapshot id (2), each
// only when it differs from its default.
func appendPartitionTags(buf []byte, p *msg.FetchResponsePartitionData) []byte {
	diverging := p.DivergingEpoch.Epoch != -1 || p.DivergingEpoch.EndOffset != -1
	leader := p.CurrentLeader.LeaderId != -1 || p.CurrentLeader.LeaderEpoch != -1
	snapshot := p.SnapshotId.EndOffset != -1 || p.SnapshotId.Epoch != -1
	n := uint32(0)
	for _, b := range []bool{diverging, leader, snapshot} {
		if b {
			n++
		}
	}
	buf = wire.AppendUvarint(buf, n)
	if diverging {
		buf = wire.AppendUvarint(buf, 0)
		s := len(buf)
		buf = wire.AppendInt32(buf, p.DivergingEpoch.Epoch)
		buf = wire.AppendInt64(buf, p.DivergingEpoch.EndOffset)
		buf = wire.AppendEmptyTaggedFields(buf)
		buf = insertSize(buf, s)
	}
	if leader {
		buf = wire.AppendUvarint(buf, 1)
		s := len(buf)
		buf = wire.AppendInt32(buf, p.CurrentLeader.LeaderId)
		buf = wire.AppendInt32(buf, p.CurrentLeader.LeaderEpoch)
		buf = wire.AppendEmptyTaggedFields(buf)
		buf = insertSize(buf, s)
	}
	if snapshot {
		buf = wire.AppendUvarint(buf, 2)
		s := len(buf)
		buf = wire.AppendInt64(buf, p.SnapshotId.EndOffset)
		buf = wire.AppendInt32(buf, p.SnapshotId.Epoch)
		buf = wire.AppendEmptyTaggedFields(buf)
		buf = insertSize(buf, s)
	}
	return buf
}

func appendLen(buf []byte, n int, flexible bool) []byte {
	if flexible {
		return wire.AppendCompactArrayLen(buf, n)
	}
	return wire.AppendArrayLen(buf, n)
}

func appendNullLen(buf []byte, flexible bool) []byte {
	if flexible {
		return wire.AppendUvarint(buf, 0)
	}
	return wire.AppendInt32(buf, -1)
}

// insertSize inserts, at start, the uvarint length of buf[start:] (a tagged
// field's size prefix).
func insertSize(buf []byte, start int) []byte {
	n := len(buf) - start
	var tmp [5]byte
	size := wire.AppendUvarint(tmp[:0], uint32(n))
	buf = append(buf, size...)
	copy(buf[start+len(size):], buf[start:start+n])
	copy(buf[start:], size)
	return buf
}
