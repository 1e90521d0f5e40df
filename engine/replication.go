package engine

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-broker/sluice/engine/meta"
	"github.com/sluice-broker/sluice/engine/shard"
	"github.com/sluice-broker/sluice/wire/kerr"
)

// Peer is the other node of a pair: the standby a primary serves, or the
// primary a standby follows. Host and Port are its advertised Kafka
// listener.
type Peer struct {
	NodeID int32
	Host   string
	Port   int32
	Rack   string
	// AdminAddr is its --http listener (host:port), where a hand-over asks
	// it to take the primary role; empty when it has none.
	AdminAddr string
	// Since: when it registered (on a primary) or was found (on a standby).
	Since time.Time
}

// replication is the broker's side of the pair: its role and its peer.
// The per-partition state lives on the shards (shard/replica.go).
type replication struct {
	mu sync.Mutex // serialises role changes
	// peer is read from any goroutine, shard threads included (a
	// produce's leader hint), so never behind mu: role changes hold mu
	// while they wait for the shards.
	peer    atomic.Pointer[Peer]
	standby atomic.Bool
	fenced  atomic.Bool // a hand-over is under way
	noLease atomic.Bool // the primary could not renew its etcd lease in time
	epoch   atomic.Int32
}

// IsStandby reports whether this node follows a primary.
func (b *Broker) IsStandby() bool { return b.repl.standby.Load() }

// Epoch is the node's leader epoch: the one its batches are written under
// as primary, or the last it knew of as standby.
func (b *Broker) Epoch() int32 { return b.repl.epoch.Load() }

// Role names this node's role: "primary" or "standby".
func (b *Broker) Role() string {
	if b.IsStandby() {
		return "standby"
	}
	return "primary"
}

// Peer returns the other node of the pair, if one is known.
func (b *Broker) Peer() (Peer, bool) {
	p := b.repl.peer.Load()
	if p == nil {
		return Peer{}, false
	}
	return *p, true
}

// SetPrimary records, on a standby, the primary it follows.
func (b *Broker) SetPrimary(p Peer) {
	b.repl.mu.Lock()
	defer b.repl.mu.Unlock()
	p.Since = time.Now()
	b.repl.peer.Store(&p)
}

// RegisterStandby accepts, on a primary, a standby's registration (Kafka's
// BrokerRegistration, which a standby sends as a broker registers with its
// controller). A primary has one standby: another node may take its place
// only once the registered one has been silent for replica.lag.time.max.ms
// (a standby rebuilt under a new node id).
func (b *Broker) RegisterStandby(p Peer, clusterID string) error {
	switch {
	case b.IsStandby():
		return kerr.New(kerr.NotController, "this node is itself a standby")
	case clusterID != b.Meta.ClusterID():
		return kerr.New(kerr.InconsistentClusterID, fmt.Sprintf("the standby belongs to cluster %q, this primary to %q", clusterID, b.Meta.ClusterID()))
	case p.NodeID == b.Cfg.NodeID:
		return kerr.New(kerr.DuplicateBrokerRegistration, fmt.Sprintf("node id %d is this primary's own; give the standby another --node-id", p.NodeID))
	case p.NodeID < 0:
		return kerr.New(kerr.InvalidRequest, fmt.Sprintf("node id %d is negative", p.NodeID))
	}
	b.repl.mu.Lock()
	defer b.repl.mu.Unlock()
	if old := b.repl.peer.Load(); old != nil && old.NodeID != p.NodeID && b.standbyActive() {
		return kerr.New(kerr.DuplicateBrokerRegistration, fmt.Sprintf("node %d is this primary's standby already", old.NodeID))
	}
	p.Since = time.Now()
	if old := b.repl.peer.Load(); old == nil || old.NodeID != p.NodeID {
		b.Logger.Info("standby registered", "node_id", p.NodeID, "host", p.Host, "port", p.Port, "rack", p.Rack)
		if old != nil {
			// A new standby starts out of sync everywhere.
			for _, sh := range b.Shards {
				sh.ResetFollowers()
			}
		}
	}
	b.repl.peer.Store(&p)
	return nil
}

// standbyActive reports whether any partition has the standby in sync;
// the caller holds repl.mu.
func (b *Broker) standbyActive() bool {
	for _, sh := range b.Shards {
		if sh.InSyncCount() > 0 {
			return true
		}
	}
	return false
}

// standbyLive reports whether this primary has a registered standby that
// is in sync somewhere (Kafka's live, unfenced broker).
func (b *Broker) standbyLive() bool {
	if b.IsStandby() {
		return false
	}
	if _, ok := b.Peer(); !ok {
		return false
	}
	b.repl.mu.Lock()
	defer b.repl.mu.Unlock()
	return b.standbyActive()
}

// IsReplica reports whether node may fetch as a replica: the registered
// standby.
func (b *Broker) IsReplica(node int32) bool {
	p, ok := b.Peer()
	return ok && !b.IsStandby() && p.NodeID == node
}

// StandbyInSync reports whether the standby is in partition k's in-sync
// set.
func (b *Broker) StandbyInSync(sh *shard.Shard, k shard.Key) bool {
	return !b.IsStandby() && sh.StandbyInSync(k)
}

// UnderReplicated counts the partitions whose standby is out of sync: 0
// without a standby, and on the standby itself.
func (b *Broker) UnderReplicated() int {
	if b.IsStandby() {
		return 0
	}
	if _, ok := b.Peer(); !ok {
		return 0
	}
	n := 0
	for _, sh := range b.Shards {
		n += int(sh.Stats().Partitions) - sh.InSyncCount()
	}
	return n
}

// Promote makes this standby the primary at the next leader epoch: the
// epoch is written durably, to the node and to every partition, before the
// role changes, so no write is ever taken under an older epoch. It returns
// the new epoch. The caller has stopped the follower loop.
//
// epoch, when positive, is the epoch to take (an etcd pair allocates it
// there, so two nodes never pick the same); it must be newer than every
// epoch this node has seen.
func (b *Broker) Promote(epoch int32) (int32, error) {
	b.repl.mu.Lock()
	defer b.repl.mu.Unlock()
	if !b.IsStandby() {
		return 0, errors.New("this node is the primary already")
	}
	seen := b.SeenEpoch()
	next := seen + 1
	if epoch > 0 {
		if epoch <= seen {
			return 0, fmt.Errorf("epoch %d is not newer than %d, which this node has seen", epoch, seen)
		}
		next = epoch
	}
	if err := meta.WriteLeaderEpoch(b.Cfg.DataDir, next); err != nil {
		return 0, fmt.Errorf("recording leader epoch %d: %w", next, err)
	}
	b.repl.epoch.Store(next)
	fenced := b.repl.fenced.Load() || b.repl.noLease.Load()
	for _, sh := range b.Shards {
		sh.SetRole(false, next, fenced)
	}
	b.repl.peer.Store(nil) // the old primary rejoins by registering as a standby
	b.repl.standby.Store(false)
	b.Meta.SetJournal(metadataJournal{b})
	b.Logger.Info("promoted to primary", "leader_epoch", next)
	return next, nil
}

// SeenEpoch is the newest epoch this node knows of: its own, or one in a
// batch it appended.
func (b *Broker) SeenEpoch() int32 {
	seen := b.Epoch()
	for _, sh := range b.Shards {
		seen = max(seen, sh.MaxEpoch())
	}
	return seen
}

// BecomeStandby makes this primary a standby of primary (the end of a
// hand-over, or a node that finds another primary at a newer epoch).
func (b *Broker) BecomeStandby(primary Peer, epoch int32) error {
	b.repl.mu.Lock()
	defer b.repl.mu.Unlock()
	if epoch > b.Epoch() {
		if err := meta.WriteLeaderEpoch(b.Cfg.DataDir, epoch); err != nil {
			return err
		}
		b.repl.epoch.Store(epoch)
	}
	b.repl.standby.Store(true)
	b.Meta.SetJournal(nil)
	for _, sh := range b.Shards {
		sh.SetRole(true, b.Epoch(), false)
	}
	b.repl.fenced.Store(false)
	b.repl.noLease.Store(false)
	if primary.NodeID < 0 {
		// Not known yet (an etcd pair whose primary lost its lease).
		b.repl.peer.Store(nil)
		b.Logger.Info("now a standby, waiting for the next primary", "leader_epoch", b.Epoch())
		return nil
	}
	primary.Since = time.Now()
	b.repl.peer.Store(&primary)
	b.Logger.Info("now the standby", "primary_node_id", primary.NodeID, "primary", fmt.Sprintf("%s:%d", primary.Host, primary.Port), "leader_epoch", b.Epoch())
	return nil
}

// CheckFollowers drops the standby from the in-sync set of every
// partition where it has not caught up within replica.lag.time.max.ms
// (Kafka's ISR shrink). With etcd deciding failover, a primary answers
// acks=all without the standby only once etcd records it out of sync
// (SetAloneOK), so the shrink can come first and the record after.
func (b *Broker) CheckFollowers(now time.Time) {
	for _, sh := range b.Shards {
		sh.CheckFollowers(now)
	}
}

// NoteLeaderEpoch records, on a standby, its primary's epoch, so that a
// promotion goes past it and Metadata reports it.
func (b *Broker) NoteLeaderEpoch(epoch int32) error {
	b.repl.mu.Lock()
	defer b.repl.mu.Unlock()
	if epoch <= b.Epoch() {
		return nil
	}
	if err := meta.WriteLeaderEpoch(b.Cfg.DataDir, epoch); err != nil {
		return err
	}
	b.repl.epoch.Store(epoch)
	return nil
}

// SetAloneOK allows (or forbids) this primary to answer acks=all without
// an out-of-sync standby: an etcd pair allows it only while etcd records
// the standby out of sync.
func (b *Broker) SetAloneOK(ok bool) {
	for _, sh := range b.Shards {
		sh.SetAloneOK(ok)
	}
}

// Fence stops (or resumes) this primary's writes: a hand-over fences it
// while the standby takes everything it holds.
func (b *Broker) Fence(fenced bool) {
	b.repl.fenced.Store(fenced)
	b.applyFences()
}

// FenceForLease stops (or resumes) this primary's writes because it could
// not renew its etcd lease in time: another node may hold it soon.
func (b *Broker) FenceForLease(fenced bool) {
	if b.repl.noLease.Swap(fenced) != fenced {
		if fenced {
			b.Logger.Warn("the primary's etcd lease could not be renewed in time: refusing writes")
		} else {
			b.Logger.Info("the etcd lease is renewed: taking writes again")
		}
	}
	b.applyFences()
}

func (b *Broker) applyFences() {
	fenced := b.repl.fenced.Load() || b.repl.noLease.Load()
	for _, sh := range b.Shards {
		sh.SetFenced(fenced)
	}
}

// LeaderHint names the node clients should produce to instead of this one,
// with the leader epoch it has or is about to have (KIP-951: Produce
// answers NOT_LEADER_OR_FOLLOWER with the new leader, so clients move
// without waiting for a metadata refresh): on a standby its primary; on a
// primary handing its role over, the standby taking it.
func (b *Broker) LeaderHint() (Peer, int32, bool) {
	p, ok := b.Peer()
	switch {
	case !ok:
		return Peer{}, 0, false
	case b.IsStandby():
		return p, b.Epoch(), true
	case b.repl.fenced.Load():
		return p, b.Epoch() + 1, true
	}
	return Peer{}, 0, false
}

// StandbyHasAll reports whether the registered standby is in sync and
// holds every offset of every partition; if not, which partition it lacks.
func (b *Broker) StandbyHasAll() (bool, string) {
	for _, sh := range b.Shards {
		if ok, why := sh.StandbyHasAll(); !ok {
			return false, why
		}
	}
	return true, ""
}

// PartitionStatus is one partition's line of `sluice status`.
type PartitionStatus struct {
	Topic         string  `json:"topic"`
	Partition     int32   `json:"partition"`
	InSync        bool    `json:"in_sync"`
	LogEndOffset  int64   `json:"log_end_offset"`
	HighWatermark int64   `json:"high_watermark"`
	LagRecords    int64   `json:"lag_records"`
	LagSeconds    float64 `json:"lag_seconds"`
}

// Status is what `sluice status` and GET /v1/status report.
type Status struct {
	Role        string            `json:"role"`
	NodeID      int32             `json:"node_id"`
	LeaderEpoch int32             `json:"leader_epoch"`
	ClusterID   string            `json:"cluster_id"`
	Peer        *PeerStatus       `json:"peer,omitempty"`
	Partitions  []PartitionStatus `json:"partitions"`
}

// PeerStatus names the other node.
type PeerStatus struct {
	NodeID  int32  `json:"node_id"`
	Address string `json:"address"`
	Rack    string `json:"rack,omitempty"`
}

// Status reports the node's role, its peer and every partition's
// replication state.
func (b *Broker) Status() Status {
	st := Status{Role: b.Role(), NodeID: b.Cfg.NodeID, LeaderEpoch: b.Epoch(), ClusterID: b.Meta.ClusterID(), Partitions: []PartitionStatus{}}
	if p, ok := b.Peer(); ok {
		st.Peer = &PeerStatus{NodeID: p.NodeID, Address: fmt.Sprintf("%s:%d", p.Host, p.Port), Rack: p.Rack}
	}
	now := time.Now()
	for _, sh := range b.Shards {
		for _, r := range sh.ReplicaSnapshot(now) {
			st.Partitions = append(st.Partitions, PartitionStatus{
				Topic: r.Key.Topic, Partition: r.Key.Partition, InSync: r.InSync,
				LogEndOffset: r.LogEndOffset, HighWatermark: r.HighWatermark,
				LagRecords: r.LagRecords, LagSeconds: r.LagSeconds,
			})
		}
	}
	return st
}
