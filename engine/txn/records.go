package txn

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/sluice-broker/sluice/engine/group"
	"github.com/sluice-broker/sluice/wire"
)

// Record is one key/value pair of the __transaction_state log, in the
// format of the package documentation. A nil Value is a tombstone. It is
// engine/group's type, so that one runner (engine/coordinator) carries
// both coordinators' records.
type Record = group.Record

const (
	keyTypeTxn      int16 = 0
	keyTypeSnapshot int16 = 1
	valueVersion    int16 = 0
)

var errBadRecord = errors.New("txn: malformed __transaction_state record")

func txnKey(id string) []byte {
	b := make([]byte, 0, 4+len(id))
	b = wire.AppendInt16(b, keyTypeTxn)
	return wire.AppendString(b, id)
}

func snapshotMarkerKey() []byte { return wire.AppendInt16(nil, keyTypeSnapshot) }

func snapshotMarkerValue(records int) []byte {
	return wire.AppendInt32(wire.AppendInt16(nil, 0), int32(records))
}

// parseKey returns the transactional id of a transaction key, or ok false
// for the snapshot marker.
func parseKey(b []byte) (id string, ok bool, err error) {
	r := wire.NewReader(b)
	switch typ := r.Int16(); typ {
	case keyTypeTxn:
		id = r.String()
		ok = true
	case keyTypeSnapshot:
	default:
		if r.Err() == nil {
			return "", false, fmt.Errorf("%w: unknown key type %d", errBadRecord, typ)
		}
	}
	if r.Err() != nil || r.Remaining() != 0 {
		return "", false, fmt.Errorf("%w: key", errBadRecord)
	}
	return id, ok, nil
}

// encode is the value of t's record: its whole durable state.
func (t *Txn) encode() []byte {
	b := make([]byte, 0, 64+len(t.Partitions)*24)
	b = wire.AppendInt16(b, valueVersion)
	b = wire.AppendInt64(b, t.ProducerID)
	b = wire.AppendInt64(b, t.LastProducerID)
	b = wire.AppendInt16(b, t.Epoch)
	b = wire.AppendInt16(b, t.LastEpoch)
	b = wire.AppendInt32(b, int32(t.Timeout/time.Millisecond))
	b = wire.AppendInt8(b, int8(t.State))
	b = wire.AppendInt64(b, t.Start.UnixMilli())
	b = wire.AppendInt64(b, t.Update.UnixMilli())
	parts := t.SortedPartitions()
	b = wire.AppendInt32(b, int32(len(parts)))
	for _, p := range parts {
		b = wire.AppendString(b, p.Topic)
		b = wire.AppendInt32(b, p.Partition)
	}
	return b
}

func decodeTxn(id string, b []byte) (*Txn, error) {
	r := wire.NewReader(b)
	if v := r.Int16(); v != valueVersion {
		return nil, fmt.Errorf("%w: value version %d", errBadRecord, v)
	}
	t := &Txn{ID: id, ProducerID: r.Int64(), LastProducerID: r.Int64(), Epoch: r.Int16(), LastEpoch: r.Int16()}
	t.Timeout = time.Duration(r.Int32()) * time.Millisecond
	t.State = State(r.Int8())
	t.Start = time.UnixMilli(r.Int64())
	t.Update = time.UnixMilli(r.Int64())
	n := r.Int32()
	if r.Err() != nil || n < 0 || int(n) > r.Remaining()/6 {
		return nil, fmt.Errorf("%w: value of %q", errBadRecord, id)
	}
	t.Partitions = make(map[TopicPartition]struct{}, n)
	for range n {
		t.Partitions[TopicPartition{Topic: r.String(), Partition: r.Int32()}] = struct{}{}
	}
	if r.Err() != nil || r.Remaining() != 0 || t.State > CompleteAbort || t.State < Empty {
		return nil, fmt.Errorf("%w: value of %q", errBadRecord, id)
	}
	return t, nil
}

// SortedPartitions lists the transaction's partitions in order.
func (t *Txn) SortedPartitions() []TopicPartition {
	out := make([]TopicPartition, 0, len(t.Partitions))
	for p := range t.Partitions {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].Partition < out[j].Partition
	})
	return out
}
