package shard

import (
	"encoding/binary"
	"time"

	"github.com/sluice-broker/sluice/engine/log"
	"github.com/sluice-broker/sluice/wire/compress"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/records"
)

// WriteMarker appends a transaction marker of producer pid at epoch to k
// (a commit or an abort: Kafka's WriteTxnMarkers on a partition's leader)
// and calls done on the shard thread once it is acknowledged by the
// acks=all rule: durable and, while the standby is in sync, replicated.
// The coordinator completes a transaction only once every marker is. The
// marker closes pid's open transaction in the log; a commit makes its
// records visible to read_committed readers, an abort lists them as
// aborted.
func (s *Shard) WriteMarker(k Key, pid int64, epoch int16, commit bool, coordinatorEpoch int32, done func(ProduceResult)) {
	p, refused, ok := s.leaderFor(k, -1)
	if !ok {
		done(refused)
		return
	}
	now := time.Now()
	batch, err := MarkerBatch(pid, epoch, commit, coordinatorEpoch, now.UnixMilli())
	if err != nil {
		done(produceFailed(kerr.UnknownServerError, err.Error()))
		return
	}
	records.SetPartitionLeaderEpoch(batch, s.epoch)
	s.appendAndAnswer(p, batch, 1, now, false, -1, done)
}

// MarkerBatch builds a control batch holding one transaction marker, as
// Kafka's EndTransactionMarker writes it: key (version 0, type 1 commit or
// 0 abort), value (version 0, the coordinator's epoch).
func MarkerBatch(pid int64, epoch int16, commit bool, coordinatorEpoch int32, timestamp int64) ([]byte, error) {
	typ := uint16(0)
	if commit {
		typ = 1
	}
	key := binary.BigEndian.AppendUint16(make([]byte, 2, 4), typ)
	value := binary.BigEndian.AppendUint32(make([]byte, 2, 6), uint32(coordinatorEpoch))
	h := records.Header{
		ProducerID: pid, ProducerEpoch: epoch, BaseSequence: -1, BaseTimestamp: timestamp,
		Attributes: records.AttrControl | records.AttrTransactional,
	}
	return records.AppendBatch(nil, h, []records.Record{{Key: key, Value: value}}, compress.None)
}

// Producers returns the producers with state in k (DescribeProducers);
// ok false when the partition is not here.
func (s *Shard) Producers(k Key) (infos []log.ProducerInfo, ok bool) {
	p, ok := s.parts[k]
	if !ok {
		return nil, false
	}
	return p.Log.Producers(nil), true
}
