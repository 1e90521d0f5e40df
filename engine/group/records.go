package group

import (
	"errors"
	"fmt"
	"time"

	"github.com/sluice-broker/sluice/wire"
)

// Record is one key/value pair of the __consumer_offsets log, in the format
// of the package documentation. A nil Value is a tombstone.
type Record struct {
	Key, Value []byte
}

// Key types.
const (
	keyTypeOffset int16 = 0
	keyTypeGroup  int16 = 1
	// keyTypeSnapshot marks the start of a snapshot; it holds no state.
	keyTypeSnapshot int16 = 2
	// keyTypeTxnOffset is an offset of an open transaction (TxnOffsetCommit).
	keyTypeTxnOffset int16 = 3
)

// Value versions written by this code.
const (
	offsetValueVersion int16 = 0
	groupValueVersion  int16 = 0
)

// errBadRecord reports a record this code cannot decode.
var errBadRecord = errors.New("group: malformed __consumer_offsets record")

func offsetKey(group, topic string, partition int32) []byte {
	b := make([]byte, 0, 2+2+len(group)+2+len(topic)+4)
	b = wire.AppendInt16(b, keyTypeOffset)
	b = wire.AppendString(b, group)
	b = wire.AppendString(b, topic)
	return wire.AppendInt32(b, partition)
}

// txnOffsetKey is the key of producer pid's transactional offset at
// epoch: a fenced instance's write never replaces its successor's.
func txnOffsetKey(group string, pid int64, epoch int16, topic string, partition int32) []byte {
	b := make([]byte, 0, 2+2+len(group)+8+2+2+len(topic)+4)
	b = wire.AppendInt16(b, keyTypeTxnOffset)
	b = wire.AppendString(b, group)
	b = wire.AppendInt64(b, pid)
	b = wire.AppendInt16(b, epoch)
	b = wire.AppendString(b, topic)
	return wire.AppendInt32(b, partition)
}

func groupKey(group string) []byte {
	b := make([]byte, 0, 4+len(group))
	b = wire.AppendInt16(b, keyTypeGroup)
	return wire.AppendString(b, group)
}

func snapshotMarkerKey() []byte { return wire.AppendInt16(nil, keyTypeSnapshot) }

// snapshotMarkerValue records how many live records follow the marker
// (informational: loading needs no marker).
func snapshotMarkerValue(records int) []byte {
	b := wire.AppendInt16(nil, 0)
	return wire.AppendInt32(b, int32(records))
}

// recordKey is a decoded key.
type recordKey struct {
	typ       int16
	group     string
	topic     string
	partition int32
	pid       int64 // keyTypeTxnOffset
	epoch     int16 // keyTypeTxnOffset
}

func parseKey(b []byte) (recordKey, error) {
	r := wire.NewReader(b)
	k := recordKey{typ: r.Int16()}
	switch k.typ {
	case keyTypeOffset:
		k.group = r.String()
		k.topic = r.String()
		k.partition = r.Int32()
	case keyTypeGroup:
		k.group = r.String()
	case keyTypeTxnOffset:
		k.group = r.String()
		k.pid = r.Int64()
		k.epoch = r.Int16()
		k.topic = r.String()
		k.partition = r.Int32()
	case keyTypeSnapshot:
	default:
		if r.Err() == nil {
			return k, fmt.Errorf("%w: unknown key type %d", errBadRecord, k.typ)
		}
	}
	if r.Err() != nil || r.Remaining() != 0 {
		return k, fmt.Errorf("%w: key of type %d", errBadRecord, k.typ)
	}
	return k, nil
}

// committed is one committed offset.
type committed struct {
	offset      int64
	leaderEpoch int32
	metadata    *string
	commitTime  int64 // ms
	expireTime  int64 // ms; -1 when the commit did not ask for a retention time
}

func encodeOffset(c committed) []byte {
	n := 2 + 8 + 4 + 2 + 8 + 8
	if c.metadata != nil {
		n += len(*c.metadata)
	}
	b := make([]byte, 0, n)
	b = wire.AppendInt16(b, offsetValueVersion)
	b = wire.AppendInt64(b, c.offset)
	b = wire.AppendInt32(b, c.leaderEpoch)
	b = wire.AppendNullableString(b, c.metadata)
	b = wire.AppendInt64(b, c.commitTime)
	return wire.AppendInt64(b, c.expireTime)
}

func decodeOffset(b []byte) (committed, error) {
	r := wire.NewReader(b)
	if v := r.Int16(); v != offsetValueVersion {
		return committed{}, fmt.Errorf("%w: offset value version %d", errBadRecord, v)
	}
	c := committed{offset: r.Int64(), leaderEpoch: r.Int32(), metadata: r.NullableString(), commitTime: r.Int64(), expireTime: r.Int64()}
	if r.Err() != nil || r.Remaining() != 0 {
		return committed{}, fmt.Errorf("%w: offset value", errBadRecord)
	}
	return c, nil
}

// encodeGroup is the value of a group's record: its whole durable state.
func encodeGroup(g *Group) []byte {
	b := make([]byte, 0, 256)
	b = wire.AppendInt16(b, groupValueVersion)
	b = wire.AppendInt8(b, int8(g.kind))
	b = wire.AppendInt64(b, g.stateTime.UnixMilli())
	switch g.kind {
	case kindClassic:
		b = g.classic.appendTo(b)
	case kindConsumer:
		b = g.consumer.appendTo(b)
	}
	return b
}

// decodeGroup rebuilds a group from its record value.
func decodeGroup(id string, b []byte) (*Group, error) {
	r := wire.NewReader(b)
	if v := r.Int16(); v != groupValueVersion {
		return nil, fmt.Errorf("%w: group value version %d", errBadRecord, v)
	}
	g := newGroupValue(id, groupKind(r.Int8()))
	g.stateTime = time.UnixMilli(r.Int64())
	switch g.kind {
	case kindClassic:
		g.classic.readFrom(&r)
	case kindConsumer:
		g.consumer.readFrom(&r)
	default:
		return nil, fmt.Errorf("%w: group kind %d", errBadRecord, g.kind)
	}
	if r.Err() != nil || r.Remaining() != 0 {
		return nil, fmt.Errorf("%w: group value of %q", errBadRecord, id)
	}
	return g, nil
}

// readCount reads an INT32 element count, bounded by the bytes left (each
// element takes at least minBytes), so a corrupt count cannot allocate.
func readCount(r *wire.Reader, minBytes int) int {
	n := r.Int32()
	if n < 0 || int(n)*minBytes > r.Remaining() {
		r.Fail(errBadRecord)
		return 0
	}
	return int(n)
}

// copyBytes copies b, keeping nil as nil (the wire reader aliases its input).
func copyBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}

// javaStringHash is Java's String.hashCode over UTF-16 code units, which
// Kafka uses to place a group in a __consumer_offsets partition.
func javaStringHash(s string) int32 {
	var h int32
	for _, r := range s {
		if r >= 0x10000 {
			r -= 0x10000
			h = 31*h + int32(0xD800+(r>>10))
			h = 31*h + int32(0xDC00+(r&0x3FF))
			continue
		}
		h = 31*h + int32(r)
	}
	return h
}

// PartitionFor is the __consumer_offsets partition of a group, as Kafka
// computes it (Utils.abs of the Java hash code, modulo the partitions).
func PartitionFor(groupID string, partitions int32) int32 {
	h := javaStringHash(groupID)
	if h == -2147483648 {
		h = 0
	} else if h < 0 {
		h = -h
	}
	return h % partitions
}
