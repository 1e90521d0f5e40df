package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluice-broker/sluice/engine/config"
	"github.com/sluice-broker/sluice/engine/meta"
	"github.com/sluice-broker/sluice/engine/shard"
	"github.com/sluice-broker/sluice/wire/compress"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/records"
)

// The metadata log: the topic catalogue as a partition (see package meta).
// It lives on shard 0, is never shown to clients (Metadata does not list
// it, as Kafka does not list its own), keeps everything (retention off),
// and is followed by a standby like any partition.

// MetadataTopic is the metadata log's topic name, KRaft's.
const MetadataTopic = "__cluster_metadata"

// MetadataTopicID is its topic id, KRaft's fixed one (Uuid.METADATA_TOPIC_ID).
var MetadataTopicID = meta.TopicID{15: 1}

var metadataKey = shard.Key{Topic: MetadataTopic, Partition: 0}

// metadataTopic is the metadata log as a catalogue entry (immutable, as
// catalogue entries are), for the replication paths that address it like
// a topic.
var metadataTopic = &meta.Topic{Name: MetadataTopic, ID: MetadataTopicID, Partitions: []meta.Partition{{Index: 0, Shard: 0}}, Internal: true}

// MetadataTopicEntry is the metadata log as a catalogue entry.
func (b *Broker) MetadataTopicEntry() *meta.Topic { return metadataTopic }

// TopicFor looks a topic up in snap, the metadata log included (for the
// replication paths: the standby's fetches and OffsetForLeaderEpoch).
func (b *Broker) TopicFor(snap *meta.Snapshot, name string) (*meta.Topic, bool) {
	if name == MetadataTopic {
		return b.MetadataTopicEntry(), true
	}
	t, ok := snap.Topics[name]
	return t, ok
}

// metadataConfig: keep every record, and answer a change once the primary
// alone has it durably when the standby is out of sync, whatever
// min.insync.replicas the broker sets for data.
func (b *Broker) metadataConfig() config.Topic {
	return config.NewTopic(b.Cfg, map[string]string{"retention.ms": "-1", "retention.bytes": "-1", "min.insync.replicas": "1", "segment.bytes": fmt.Sprint(64 << 20)})
}

// loadCatalogue opens the metadata log and replays it into the store. A
// primary whose log is empty migrates a topics.json left by an earlier
// version into it; then it journals every later change there.
func (b *Broker) loadCatalogue() error {
	var openErr error
	b.Shards[0].Call(func(s *shard.Shard) {
		_, openErr = s.OpenPartition(metadataKey, MetadataTopicID, b.metadataConfig())
	})
	if openErr != nil {
		return fmt.Errorf("opening the metadata log: %w", openErr)
	}
	recs, err := b.readMetadataLog()
	if err != nil {
		return err
	}
	legacy, haveLegacy, err := meta.LegacyRecords(b.Cfg.DataDir)
	if err != nil {
		return err
	}
	if haveLegacy {
		switch {
		case len(recs) > 0:
			b.Logger.Warn("ignoring topics.json: the metadata log holds the catalogue")
		case b.IsStandby():
			b.Logger.Warn("ignoring topics.json: a standby takes its catalogue from its primary's metadata log")
		default:
			if err := (metadataJournal{b}).Append(legacy); err != nil {
				return fmt.Errorf("migrating topics.json into the metadata log: %w", err)
			}
			recs = legacy
			b.Logger.Info("migrated topics.json into the metadata log", "topics", len(legacy))
		}
		old := filepath.Join(b.Cfg.DataDir, meta.LegacyFile)
		if err := os.Rename(old, old+".migrated"); err != nil {
			return err
		}
	}
	if err := b.Meta.Replay(recs); err != nil {
		return err
	}
	if !b.IsStandby() {
		b.Meta.SetJournal(metadataJournal{b})
	}
	return nil
}

// readMetadataLog returns the metadata log's records: all it holds (a
// standby applies a topic as soon as the record reaches it, so clients
// that ask it for metadata find the topic about when the primary's do).
func (b *Broker) readMetadataLog() ([]meta.Record, error) {
	sh := b.Shards[0]
	var out []meta.Record
	var next, end int64
	sh.Call(func(s *shard.Shard) {
		o := s.PartitionOffsets(metadataKey)
		next, end = o.LogStartOffset, o.LogEndOffset
	})
	for next < end {
		var rr shard.ReadResult
		sh.Call(func(s *shard.Shard) { rr = s.ReadWritten(metadataKey, next, 4<<20) })
		if rr.Err != kerr.None {
			return nil, fmt.Errorf("reading the metadata log at %d: %w", next, rr.Err.Err())
		}
		if !rr.HasData {
			break
		}
		buf, err := rr.Data.Bytes()
		nextOffset := int64(rr.Data.NextOffset)
		rr.Data.Release()
		if err != nil {
			return nil, fmt.Errorf("reading the metadata log at %d: %w", next, err)
		}
		it := records.NewIter(buf)
		for {
			batch, h, ok := it.Next()
			if !ok {
				break
			}
			err := records.ForEachRecord(batch, nil, func(r *records.Record) error {
				rec := meta.Record{Key: append([]byte(nil), r.Key...)}
				if r.Value != nil {
					rec.Value = append([]byte{}, r.Value...)
				}
				out = append(out, rec)
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("metadata log batch at %d: %w", h.BaseOffset, err)
			}
		}
		if err := it.Err(); err != nil {
			return nil, fmt.Errorf("metadata log at %d: %w", next, err)
		}
		if nextOffset <= next {
			break
		}
		next = nextOffset
	}
	return out, nil
}

// metadataJournal appends catalogue changes to the metadata log with
// acks=all: durable here and, while the standby is in sync, there.
type metadataJournal struct{ b *Broker }

func (j metadataJournal) Append(recs []meta.Record) error {
	if len(recs) == 0 {
		return nil
	}
	batch := make([]records.Record, len(recs))
	for i, r := range recs {
		batch[i] = records.Record{OffsetDelta: int32(i), Key: r.Key, Value: r.Value}
	}
	h := records.Header{PartitionLeaderEpoch: -1, BaseTimestamp: time.Now().UnixMilli(), ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}
	set, err := records.AppendBatch(nil, h, batch, compress.None)
	if err != nil {
		return err
	}
	done := make(chan shard.ProduceResult, 1)
	j.b.Shards[0].Do(func(s *shard.Shard) {
		s.Produce(metadataKey, set, -1, func(r shard.ProduceResult) { done <- r })
	})
	if r := <-done; r.Err != kerr.None {
		if r.DiskFull {
			return fmt.Errorf("writing the metadata log: %w", unix.ENOSPC)
		}
		code := r.Err
		if code == kerr.NotLeaderOrFollower {
			code = kerr.NotController // a standby, or a primary handing over
		}
		return kerr.New(code, "writing the metadata log: "+r.ErrMessage)
	}
	return nil
}

// ApplyCatalogue makes a standby's catalogue what its metadata log (the
// primary's, followed) says: topics created, deleted, grown and
// reconfigured to match, under the primary's topic ids.
func (b *Broker) ApplyCatalogue() (bool, error) {
	recs, err := b.readMetadataLog()
	if err != nil {
		return false, err
	}
	want, err := b.Meta.Desired(recs)
	if err != nil {
		return false, err
	}
	var topics []MirrorTopic
	for _, name := range want.Names() {
		t := want.Topics[name]
		topics = append(topics, MirrorTopic{Name: t.Name, ID: t.ID, Partitions: int32(len(t.Partitions)), Configs: t.Configs, Internal: t.Internal})
	}
	return b.MirrorCatalogue(topics)
}
