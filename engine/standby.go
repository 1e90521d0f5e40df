package engine

import (
	"errors"
	"fmt"
	"maps"
	"sync"

	"github.com/sluice-broker/sluice/engine/meta"
	"github.com/sluice-broker/sluice/engine/shard"
)

// What a standby's replicator (package replicate) asks of the engine.

// MirrorTopic is one topic of the primary's catalogue as the standby
// learns it.
type MirrorTopic struct {
	Name       string
	ID         meta.TopicID
	Partitions int32
	Configs    map[string]string
	Internal   bool
}

// MirrorCatalogue makes this standby's catalogue the primary's: topics it
// lacks are created under the primary's IDs, topics the primary no longer
// has (or has re-created under another ID) are deleted with their data,
// partitions are added and config overrides replaced. It reports whether
// anything changed.
func (b *Broker) MirrorCatalogue(topics []MirrorTopic) (bool, error) {
	if !b.IsStandby() {
		return false, errors.New("only a standby mirrors a catalogue")
	}
	b.topicMu.Lock()
	defer b.topicMu.Unlock()
	want := map[string]MirrorTopic{}
	for _, t := range topics {
		want[t.Name] = t
	}
	changed := false
	var errs []error
	for _, name := range b.Meta.Snapshot().Names() {
		cur, _ := b.Meta.Topic(name)
		if w, ok := want[name]; ok && w.ID == cur.ID {
			continue
		}
		if _, err := b.deleteTopicLocked(name); err != nil {
			errs = append(errs, err)
			continue
		}
		b.Logger.Info("standby: topic deleted as on the primary", "topic", name)
		changed = true
	}
	for _, w := range topics {
		cur, ok := b.Meta.Topic(w.Name)
		switch {
		case !ok:
			t, err := b.Meta.CreateWithID(w.Name, w.ID, w.Partitions, w.Configs, w.Internal)
			if err != nil {
				errs = append(errs, fmt.Errorf("creating %s: %w", w.Name, err))
				continue
			}
			if err := b.openTopicPartitions(t, 0); err != nil {
				errs = append(errs, fmt.Errorf("opening %s: %w", w.Name, err))
			}
			b.Logger.Info("standby: topic created as on the primary", "topic", w.Name, "partitions", w.Partitions)
			changed = true
		case int32(len(cur.Partitions)) < w.Partitions:
			have := int32(len(cur.Partitions))
			nt, err := b.Meta.AddPartitions(w.Name, w.Partitions)
			if err == nil {
				err = b.openTopicPartitions(nt, have)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("adding partitions to %s: %w", w.Name, err))
			}
			changed = true
		}
		if cur, ok = b.Meta.Topic(w.Name); ok && !maps.Equal(cur.Configs, w.Configs) {
			if err := b.setTopicConfigsLocked(w.Name, w.Configs); err != nil {
				errs = append(errs, fmt.Errorf("configs of %s: %w", w.Name, err))
			}
			changed = true
		}
	}
	return changed, errors.Join(errs...)
}

// ReplicaPosition is where a standby's partition stands: it fetches from
// its log end.
type ReplicaPosition struct {
	Key         shard.Key
	TopicID     meta.TopicID
	LogStart    int64
	LogEnd      int64
	LatestEpoch int32 // -1: the log has no epoch yet
}

// ReplicaPositions lists every partition with its log start and end, in
// catalogue order.
func (b *Broker) ReplicaPositions() []ReplicaPosition {
	snap := b.Meta.Snapshot()
	perShard := make([][]int, len(b.Shards))
	var out []ReplicaPosition
	// The metadata log first: the catalogue the rest depends on.
	for _, name := range append([]string{MetadataTopic}, snap.Names()...) {
		t, _ := b.TopicFor(snap, name)
		for _, p := range t.Partitions {
			perShard[p.Shard] = append(perShard[p.Shard], len(out))
			out = append(out, ReplicaPosition{Key: shard.Key{Topic: t.Name, Partition: p.Index}, TopicID: t.ID, LogStart: -1, LogEnd: -1})
		}
	}
	var wg sync.WaitGroup
	for i, idx := range perShard {
		if len(idx) == 0 {
			continue
		}
		wg.Add(1)
		b.Shards[i].Do(func(s *shard.Shard) {
			defer wg.Done()
			for _, j := range idx {
				if start, end, ok := s.ReplicaOffsets(out[j].Key); ok {
					out[j].LogStart, out[j].LogEnd = start, end
					out[j].LatestEpoch = s.LatestEpoch(out[j].Key)
				}
			}
		})
	}
	wg.Wait()
	kept := out[:0]
	for _, p := range out {
		if p.LogEnd >= 0 {
			kept = append(kept, p)
		}
	}
	return kept
}

// ReplicaAppend is one partition's fetched data for AppendReplicas.
type ReplicaAppend struct {
	Key           shard.Key
	Records       []byte
	HighWatermark int64
	Err           error // set by AppendReplicas
}

// AppendReplicas appends fetched batches to their partitions, in parallel
// across shards, and returns once all are written.
func (b *Broker) AppendReplicas(apps []ReplicaAppend) {
	snap := b.Meta.Snapshot()
	var wg sync.WaitGroup
	for i := range apps {
		a := &apps[i]
		t, ok := b.TopicFor(snap, a.Key.Topic)
		if !ok || int(a.Key.Partition) >= len(t.Partitions) {
			a.Err = shard.ErrUnknownPartition
			continue
		}
		wg.Add(1)
		b.ShardOf(t, a.Key.Partition).Do(func(s *shard.Shard) {
			s.AppendReplica(a.Key, a.Records, a.HighWatermark, func(err error) {
				a.Err = err
				wg.Done()
			})
		})
	}
	wg.Wait()
}

// Divergence is the primary's OffsetForLeaderEpoch answer for one
// partition, for Reconcile.
type Divergence struct {
	Key         shard.Key
	LeaderEpoch int32
	EndOffset   int64
	From, To    int64 // set by Reconcile: the log end before and after
	Complete    bool  // false: ask again from the new latest epoch
	Err         error
}

// Reconcile truncates each partition's divergent tail (a node that was
// primary and comes back as a standby), in parallel, and waits.
func (b *Broker) Reconcile(ds []Divergence) {
	b.onShards(len(ds), func(i int) shard.Key { return ds[i].Key }, func(i int, s *shard.Shard, done func()) {
		d := &ds[i]
		s.Reconcile(d.Key, d.LeaderEpoch, d.EndOffset, func(from, to int64, complete bool, err error) {
			d.From, d.To, d.Complete, d.Err = from, to, complete, err
			done()
		})
	})
}

// TruncateReplicaTo cuts a standby's partition back to off.
func (b *Broker) TruncateReplicaTo(k shard.Key, off int64) error {
	var err error
	b.onShards(1, func(int) shard.Key { return k }, func(_ int, s *shard.Shard, done func()) {
		s.TruncateReplica(k, off, false, func(e error) { err = e; done() })
	})
	return err
}

// ResetReplica empties a standby's partition to start at off: the primary
// no longer holds the offsets it would fetch next.
func (b *Broker) ResetReplica(k shard.Key, off int64) error {
	var err error
	b.onShards(1, func(int) shard.Key { return k }, func(_ int, s *shard.Shard, done func()) {
		s.TruncateReplica(k, off, true, func(e error) { err = e; done() })
	})
	return err
}

// onShards runs op for items 0..n-1 on the shards owning their keys and
// waits for every op to call done.
func (b *Broker) onShards(n int, key func(int) shard.Key, op func(i int, s *shard.Shard, done func())) {
	snap := b.Meta.Snapshot()
	var wg sync.WaitGroup
	for i := range n {
		k := key(i)
		t, ok := b.TopicFor(snap, k.Topic)
		if !ok || int(k.Partition) >= len(t.Partitions) {
			continue
		}
		wg.Add(1)
		b.ShardOf(t, k.Partition).Do(func(s *shard.Shard) { op(i, s, wg.Done) })
	}
	wg.Wait()
}
