package shard

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/sluice-broker/sluice/engine/log"
	"github.com/sluice-broker/sluice/wire/compress"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/records"
)

// ProduceResult is the answer for one partition of a Produce request.
type ProduceResult struct {
	Err            kerr.Code
	ErrMessage     string
	BaseOffset     int64
	LogAppendTime  int64 // -1 unless the topic uses LogAppendTime
	LogStartOffset int64
	RecordErrors   []RecordError
	// DiskFull: refused for want of space (KAFKA_STORAGE_ERROR, retriable),
	// for callers inside the broker that treat a full disk apart.
	DiskFull bool

	dupEnd log.Offset // a duplicate's end: one past its original's last offset
}

// RecordError points at the batch that made a produce fail.
type RecordError struct {
	BatchIndex int32
	Message    string
}

func produceFailed(code kerr.Code, msg string) ProduceResult {
	return ProduceResult{Err: code, ErrMessage: msg, BaseOffset: -1, LogAppendTime: -1, LogStartOffset: -1}
}

// Produce validates and appends a partition's record set, then calls done
// (on the shard thread) once the acks rule is met: for acks 0 and 1 at once
// in page-cache mode (the write reached the page cache), when the O_DIRECT
// write completed in direct mode; after the covering datasync for acks=all. records must stay untouched by the caller until done runs; the
// shard rewrites base offsets (and, for LogAppendTime topics, timestamps) in
// place.
func (s *Shard) Produce(k Key, set []byte, acks int16, done func(ProduceResult)) {
	p, refused, ok := s.leaderFor(k, acks)
	if !ok {
		done(refused)
		return
	}
	now := time.Now()
	crcOnCopy := s.crcOnCopy(p)
	set, records, res, ok := s.validate(p, set, now, crcOnCopy)
	if !ok {
		done(res)
		return
	}
	if res.BaseOffset >= 0 {
		// A retry of a batch already appended: answer with its offsets,
		// once the original is acknowledged by the same rule (its write,
		// or its datasync, may still be under way).
		durable := acks == -1 || p.Cfg.FlushMessages() == 1
		p.waiters = append(p.waiters, waiter{
			base: log.Offset(res.BaseOffset), upTo: res.dupEnd, since: now, durable: durable, acksAll: acks == -1, res: res, reply: done,
		})
		if durable {
			s.wantSync(p)
		}
		s.release(p)
		return
	}
	s.appendAndAnswer(p, set, records, now, crcOnCopy, acks, done)
}

// appendAndAnswer appends a validated set to p and answers done by the
// acks rule (Produce).
func (s *Shard) appendAndAnswer(p *Partition, set []byte, records int64, now time.Time, crcOnCopy bool, acks int16, done func(ProduceResult)) {
	appended, err := s.append(p, set, now, crcOnCopy)
	if errors.Is(err, log.ErrTailFull) || errors.Is(err, log.ErrTailBusy) {
		// Nothing in flight could make room: not a storage failure.
		done(produceFailed(kerr.KafkaStorageError, err.Error()))
		return
	}
	if errors.Is(err, log.ErrCorruptBatch) {
		if crcErr, ok := err.(*log.CRCError); ok { // a value, not errors.As: nothing escapes on the hot path
			done(crcFailed(crcErr))
			return
		}
		// The log refused the input before writing anything: the request
		// fails, the partition does not.
		done(produceFailed(kerr.CorruptMessage, err.Error()))
		return
	}
	if errors.Is(err, log.ErrDiskFull) {
		// Not a failure: nothing was appended, and the partition takes
		// writes again as soon as one fits. Clients retry this error.
		s.reportDiskFull(p, err)
		res := produceFailed(kerr.KafkaStorageError, err.Error())
		res.DiskFull = true
		done(res)
		return
	}
	if errors.Is(err, log.ErrNoDescriptors) {
		// Nor is a file a roll could not open for want of descriptors.
		s.cfg.Logger.Warn("append refused: no file descriptor left", "partition", p.Key.Dir(), "err", err)
		done(produceFailed(kerr.KafkaStorageError, err.Error()))
		return
	}
	if err != nil {
		p.Log.MarkFailed(err) // the log latched it already if it wrote anything
		s.reportFailure(p, "append")
		done(produceFailed(kerr.KafkaStorageError, err.Error()))
		return
	}
	if p.diskFull {
		s.reportSpaceReturned(p)
	}
	p.bytesIn.Add(float64(len(set)))
	p.recordsIn.Add(float64(records))
	res := ProduceResult{BaseOffset: int64(appended.BaseOffset), LogAppendTime: -1, LogStartOffset: int64(p.Log.LogStartOffset())}
	if p.Cfg.LogAppendTime() {
		res.LogAppendTime = now.UnixMilli()
	}
	durable := acks == -1 || p.Cfg.FlushMessages() == 1
	if durable || p.Log.Direct() {
		// acks=all waits for the datasync; in direct mode every append
		// also waits for its O_DIRECT write (acks=1 is answered then, and
		// the high watermark never passes unwritten data).
		p.waiters = append(p.waiters, waiter{
			base:    appended.BaseOffset,
			upTo:    appended.LastOffset + 1,
			since:   now,
			durable: durable,
			acksAll: acks == -1,
			res:     res,
			reply:   done,
		})
		s.wantWrite(p)
		if durable {
			s.wantSync(p)
		}
		// Answered now if already written (an append too large for the
		// tail cache goes through the page cache), else by the write.
		s.release(p)
		return
	}
	p.advanceHighWatermark()
	done(res)
}

// leaderFor returns k's partition if it may take a write with acks now (a
// primary's, not fenced, enough replicas in sync for acks=all, its epoch
// begun), or the answer refusing it.
func (s *Shard) leaderFor(k Key, acks int16) (*Partition, ProduceResult, bool) {
	p, ok := s.parts[k]
	if !ok {
		return nil, produceFailed(kerr.NotLeaderOrFollower, "partition is not on this broker"), false
	}
	if err := p.Log.Err(); err != nil {
		return nil, produceFailed(kerr.KafkaStorageError, err.Error()), false
	}
	if s.standby || s.fenced {
		return nil, produceFailed(kerr.NotLeaderOrFollower, "this node is a standby, or handing the primary role over; produce to the primary"), false
	}
	if acks == -1 && p.Cfg.MinInsyncReplicas() > p.isrSize() {
		// Kafka's rule for min.insync.replicas: the standby, if any, is
		// out of sync.
		return nil, produceFailed(kerr.NotEnoughReplicas, fmt.Sprintf("min.insync.replicas=%d but only %d replica is in sync", p.Cfg.MinInsyncReplicas(), p.isrSize())), false
	}
	if p.Log.LatestEpoch() < log.Epoch(s.epoch) {
		// The first write of this primary's epoch in the partition: the
		// epoch is recorded, durably, before it. Done here rather than at
		// open or promotion, so that a start with thousands of partitions
		// writes no epoch file until they are written to.
		if err := p.Log.BeginEpoch(log.Epoch(s.epoch)); err != nil {
			return nil, produceFailed(kerr.KafkaStorageError, err.Error()), false
		}
	}
	return p, ProduceResult{}, true
}

// validate checks every batch as Kafka's LogValidator does for the parts
// sluice needs: magic 2 only, CRC32C, size limit, idempotent sequence rules,
// LogAppendTime stamping and recompression to the topic's codec. It returns
// the (possibly rebuilt) record set and its record count. A result with
// BaseOffset >= 0 and ok means the set is a duplicate of an appended batch.
//
// With crcLater (crcOnCopy: the log checks CRCs as it copies), validate
// leaves them to the log, except when it answers without an append: a
// refusal, or a duplicate. Kafka checks every batch's CRC before the batch's records,
// sequence numbers or producer epoch (and after its size), so those
// answers first check the CRCs of the batches they depend on, and a damaged
// batch gets CORRUPT_MESSAGE as it would in Kafka.
func (s *Shard) validate(p *Partition, set []byte, now time.Time, crcLater bool) ([]byte, int64, ProduceResult, bool) {
	// refuse answers res unless one of the batches 0..through fails its CRC.
	refuse := func(res ProduceResult, through int32) ([]byte, int64, ProduceResult, bool) {
		if crcLater {
			if bad, ok := firstBadCRC(set, through); ok {
				res = bad
			}
		}
		return nil, 0, res, false
	}
	maxBytes := p.Cfg.MaxMessageBytes()
	target := compress.None
	recompress := false
	if ct := p.Cfg.CompressionType(); ct != "producer" {
		c, err := compress.ParseCodec(ct)
		if err == nil {
			target, recompress = c, true
		}
	}
	compacted := p.Cfg.Compact()
	it := records.NewIter(set)
	n := int32(0)
	count := int64(0)
	needRebuild := false
	for {
		batch, h, ok := it.Next()
		if !ok {
			break
		}
		if len(batch) > maxBytes {
			return refuse(produceFailed(kerr.MessageTooLarge, fmt.Sprintf("batch of %d bytes exceeds max.message.bytes %d", len(batch), maxBytes)), n-1)
		}
		validate := records.Validate
		if crcLater {
			validate = records.ValidateExceptCRC
		}
		if _, err := validate(batch); err != nil {
			return refuse(batchError(n, err), n)
		}
		if compacted && !h.Control() {
			if res, ok := s.checkKeys(p, batch, n); !ok {
				return refuse(res, n)
			}
		}
		if h.Idempotent() {
			dup, err := p.Log.CheckProducer(h.ProducerID, h.ProducerEpoch, h.BaseSequence, h.LastSequence())
			if err != nil {
				return refuse(producerError(err), n)
			}
			if dup != nil {
				// The whole set is answered as this duplicate.
				if crcLater {
					if bad, ok := firstBadCRC(set, math.MaxInt32); ok {
						return nil, 0, bad, false
					}
				}
				return set, 0, ProduceResult{BaseOffset: int64(dup.FirstOffset), LogAppendTime: -1, LogStartOffset: int64(p.Log.LogStartOffset()), dupEnd: dup.LastOffset + 1}, true
			}
		}
		if p.Cfg.LogAppendTime() {
			records.SetLogAppendTime(batch, now.UnixMilli())
		}
		// Stamp the leader epoch the batch was appended under, as Kafka
		// does (outside the CRC); clients commit it with their offsets.
		records.SetPartitionLeaderEpoch(batch, s.epoch)
		if recompress && h.Codec() != target {
			needRebuild = true
		}
		count += int64(h.NumRecords)
		n++
	}
	if err := it.Err(); err != nil {
		return refuse(batchError(n, err), n-1)
	}
	if n == 0 {
		return nil, 0, produceFailed(kerr.InvalidRecord, "record set holds no batch"), false
	}
	if needRebuild {
		rebuilt, err := rebuild(set, target)
		if err != nil {
			return nil, 0, produceFailed(kerr.CorruptMessage, err.Error()), false
		}
		set = rebuilt
	}
	if int64(len(set)) > p.Cfg.SegmentBytes() {
		// Kafka's UnifiedLog refuses what cannot fit in one segment.
		return refuse(produceFailed(kerr.RecordListTooLarge, fmt.Sprintf("record set of %d bytes exceeds segment.bytes %d", len(set), p.Cfg.SegmentBytes())), math.MaxInt32)
	}
	return set, count, ProduceResult{BaseOffset: -1}, true
}

// errNoKey stops the walk of a batch at its first record without a key.
var errNoKey = errors.New("record without a key")

// checkKeys refuses a batch of a compacted topic holding a record without
// a key, as Kafka does (INVALID_RECORD, with its message): compaction keeps
// the latest record per key, and such a record has none. A compressed batch
// is decompressed to read its keys.
func (s *Shard) checkKeys(p *Partition, batch []byte, index int32) (ProduceResult, bool) {
	err := records.ForEachRecord(batch, s.keyScratch[:0], func(r *records.Record) error {
		if r.Key == nil {
			return errNoKey
		}
		return nil
	})
	switch {
	case errors.Is(err, errNoKey):
		return produceFailed(kerr.InvalidRecord, fmt.Sprintf("Compacted topic cannot accept message without key in topic partition %s.", p.Key.Dir())), false
	case err != nil:
		return batchError(index, err), false
	}
	return ProduceResult{}, true
}

// firstBadCRC checks the CRCs of set's batches 0..through (framing already
// walked) and answers the first that fails, as validate would.
func firstBadCRC(set []byte, through int32) (ProduceResult, bool) {
	it := records.NewIter(set)
	for i := int32(0); i <= through; i++ {
		batch, _, ok := it.Next()
		if !ok {
			break
		}
		if _, err := records.VerifyCRC(batch); err != nil {
			return batchError(i, err), true
		}
	}
	return ProduceResult{}, false
}

// crcOnCopy reports whether p's appends leave the CRC check to the log's
// copy into the tail cache (AppendCheckingCRC): in direct mode, unless the
// broker rewrites batches before appending them (LogAppendTime recomputes
// the CRC; recompression decompresses), which needs the producer's CRC
// checked first.
func (s *Shard) crcOnCopy(p *Partition) bool {
	return p.Log.Direct() && !p.Cfg.LogAppendTime() && p.Cfg.CompressionType() == "producer"
}

// rebuild recompresses every batch of set to codec.
func rebuild(set []byte, codec compress.Codec) ([]byte, error) {
	out := make([]byte, 0, len(set))
	var scratch []byte
	it := records.NewIter(set)
	for {
		batch, h, ok := it.Next()
		if !ok {
			break
		}
		if h.Codec() == codec {
			out = append(out, batch...)
			continue
		}
		var err error
		out, err = records.Recompress(out, batch, codec, scratch[:0])
		if err != nil {
			return nil, err
		}
	}
	return out, it.Err()
}

func batchError(index int32, err error) ProduceResult {
	var res ProduceResult
	switch {
	case errors.Is(err, records.ErrUnsupportedMagic):
		res = produceFailed(kerr.UnsupportedForMessageFormat, "sluice stores record batch v2 only (magic 2)")
	case errors.Is(err, records.ErrCorrupt):
		res = produceFailed(kerr.CorruptMessage, err.Error())
	default:
		res = produceFailed(kerr.InvalidRecord, err.Error())
	}
	res.RecordErrors = []RecordError{{BatchIndex: index, Message: err.Error()}}
	return res
}

// crcFailed answers a batch the log found corrupt as validate would have.
func crcFailed(e *log.CRCError) ProduceResult {
	return batchError(int32(e.Batch), fmt.Errorf("%w: %w", records.ErrCorrupt, e))
}

func producerError(err error) ProduceResult {
	switch {
	case errors.Is(err, log.ErrOutOfOrderSequence):
		return produceFailed(kerr.OutOfOrderSequenceNumber, err.Error())
	case errors.Is(err, log.ErrInvalidProducerEpoch):
		return produceFailed(kerr.InvalidProducerEpoch, err.Error())
	}
	return produceFailed(kerr.UnknownServerError, err.Error())
}
