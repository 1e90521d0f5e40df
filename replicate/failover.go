package replicate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sluice-broker/sluice/engine"
	"github.com/sluice-broker/sluice/engine/meta"
)

// Automatic failover (--failover-etcd). An etcd lease decides which node
// of the pair is primary: the node whose lease holds the leader key is
// primary; the other follows it. Keys, under /sluice/GROUP/:
//
//	cluster-id  the pair's Kafka cluster id, so both nodes share it
//	leader      the primary's record (node id, addresses, epoch), bound to
//	            its lease: it goes when the lease expires or is revoked
//	state       the last primary, its standby, whether that standby is in
//	            sync, and the epoch: written by the primary (while it holds
//	            the leader key) before the in-sync state changes
//
// Safety rests on three rules. A primary stops taking writes once it has
// not renewed its lease for 2/3 of the TTL (self-fencing: the lease cannot
// expire before that on the server, whatever the clocks read, unless their
// rates differ by a third). A node takes the leader key only if state says
// it may: it was the primary, or its in-sync standby (Kafka's
// unclean.leader.election.enable=false). And the primary records that its
// standby is out of sync in state before it acknowledges anything without
// it. So a standby that takes over holds every record acknowledged with
// acks=all, and no two nodes take writes in one epoch (each takeover is a
// promotion to a new epoch, begun only by the lease holder).

// FailoverConfig configures the etcd failover.
type FailoverConfig struct {
	Endpoints []string
	Group     string        // --failover-group, default sluice
	TTL       time.Duration // --failover-ttl, default 3s
}

func (c FailoverConfig) key(name string) string { return "/sluice/" + c.Group + "/" + name }

// leaderRecord is the value of the leader key.
type leaderRecord struct {
	NodeID int32  `json:"node_id"`
	Kafka  string `json:"kafka"`
	Admin  string `json:"admin,omitempty"`
	Epoch  int32  `json:"epoch"`
}

// stateRecord is the value of the state key.
type stateRecord struct {
	Primary int32 `json:"primary"`
	Standby int32 `json:"standby"` // -1: none registered
	InSync  bool  `json:"in_sync"`
	Epoch   int32 `json:"epoch"`
}

// dialEtcd connects to the endpoints.
func dialEtcd(cfg FailoverConfig) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: cfg.Endpoints, DialTimeout: 5 * time.Second, Logger: nil})
}

// FailoverClusterID returns the pair's cluster id from etcd, recording
// local (this data directory's, if any) there when none is recorded yet.
// A data directory of another cluster is refused.
func FailoverClusterID(cfg FailoverConfig, local string) (string, error) {
	cli, err := dialEtcd(cfg)
	if err != nil {
		return "", err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	want := local
	if want == "" {
		want = meta.NewClusterID()
	}
	key := cfg.key("cluster-id")
	resp, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, want)).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return "", fmt.Errorf("etcd at %v: %w", cfg.Endpoints, err)
	}
	if resp.Succeeded {
		return want, nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return "", errors.New("etcd lost the cluster id it just reported")
	}
	got := string(kvs[0].Value)
	if local != "" && got != local {
		return "", fmt.Errorf("failover group %q belongs to cluster %q but this data directory to %q", cfg.Group, got, local)
	}
	return got, nil
}

// NewFailover prepares n's part in the etcd election (Run starts it).
func NewFailover(n *Node, cfg FailoverConfig) *Failover {
	return &Failover{N: n, Cfg: cfg, handover: make(chan chan handoverResult)}
}

// Failover runs a node of an etcd-decided pair.
type Failover struct {
	N   *Node
	Cfg FailoverConfig

	cli *clientv3.Client
	// handover carries sluice demote's requests to the primary's term.
	handover chan chan handoverResult
	// yieldUntil: after handing over, this node does not campaign until
	// then, so the standby takes the key.
	yieldUntil time.Time
}

type handoverResult struct {
	epoch int32
	err   error
}

// HandOver is sluice demote on an etcd pair: the primary stops taking
// writes, waits until its standby holds everything, records it in sync,
// and gives its lease back; the standby takes the key and promotes itself.
func (f *Failover) HandOver() (int32, error) {
	if f.N.B.IsStandby() {
		return 0, errors.New("this node is a standby; demote its primary")
	}
	reply := make(chan handoverResult, 1)
	select {
	case f.handover <- reply:
	case <-time.After(5 * time.Second):
		return 0, errors.New("this node's primary term is not running (it is taking over or stepping down)")
	}
	r := <-reply
	return r.epoch, r.err
}

// Run takes part in the election until ctx ends.
func (f *Failover) Run(ctx context.Context) error {
	cli, err := dialEtcd(f.Cfg)
	if err != nil {
		return err
	}
	f.cli = cli
	defer cli.Close()
	logged := ""
	say := func(msg string, args ...any) {
		if msg != logged {
			f.N.Logger.Info(msg, args...)
			logged = msg
		}
	}
	for ctx.Err() == nil {
		leader, rev, err := f.leader(ctx)
		if err != nil {
			say("failover: etcd unreachable; retrying", "err", err)
			sleepCtx(ctx, time.Second)
			continue
		}
		switch {
		case leader != nil && leader.NodeID != f.N.B.Cfg.NodeID:
			say("failover: following the lease holder", "primary_node_id", leader.NodeID, "primary", leader.Kafka)
			f.follow(leader)
			f.waitLeaderChange(ctx, rev)
		case leader != nil:
			// Our own record from before a restart: its lease runs out.
			say("failover: waiting for this node's previous lease to expire")
			f.waitLeaderChange(ctx, rev)
		default:
			st, err := f.state(ctx)
			if err != nil {
				say("failover: etcd unreachable; retrying", "err", err)
				sleepCtx(ctx, time.Second)
				continue
			}
			if time.Now().Before(f.yieldUntil) {
				say("failover: handed over; waiting for the standby to take the lease")
				f.waitLeaderChange(ctx, rev)
				continue
			}
			if !f.eligible(st) {
				say("failover: no primary, and this node may not take over (it was not the in-sync standby); waiting for the primary", "state", fmt.Sprintf("%+v", st))
				f.waitLeaderChange(ctx, rev)
				continue
			}
			lease, epoch, asked, ok, err := f.campaign(ctx, st)
			if err != nil {
				say("failover: campaign failed", "err", err)
				sleepCtx(ctx, time.Second)
				continue
			}
			if !ok {
				continue // another node was faster
			}
			logged = ""
			f.lead(ctx, lease, epoch, asked)
		}
	}
	return ctx.Err()
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (f *Failover) leader(ctx context.Context) (*leaderRecord, int64, error) {
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := f.cli.Get(c, f.Cfg.key("leader"))
	if err != nil {
		return nil, 0, err
	}
	if len(resp.Kvs) == 0 {
		return nil, resp.Header.Revision, nil
	}
	var l leaderRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &l); err != nil {
		return nil, 0, fmt.Errorf("leader record: %w", err)
	}
	return &l, resp.Header.Revision, nil
}

func (f *Failover) state(ctx context.Context) (*stateRecord, error) {
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := f.cli.Get(c, f.Cfg.key("state"))
	if err != nil || len(resp.Kvs) == 0 {
		return nil, err
	}
	var s stateRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &s); err != nil {
		return nil, fmt.Errorf("state record: %w", err)
	}
	return &s, nil
}

// eligible: no pair history yet, or this node was the primary, or its
// in-sync standby.
func (f *Failover) eligible(st *stateRecord) bool {
	me := f.N.B.Cfg.NodeID
	return st == nil || st.Primary == me || st.Standby == me && st.InSync
}

// waitLeaderChange blocks until the leader key changes after rev (or a
// while passes, to look again).
func (f *Failover) waitLeaderChange(ctx context.Context, rev int64) {
	c, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for resp := range f.cli.Watch(clientv3.WithRequireLeader(c), f.Cfg.key("leader"), clientv3.WithRev(rev+1)) {
		if resp.Err() != nil || len(resp.Events) > 0 {
			return
		}
	}
}

// follow makes this node the standby of leader, unless it follows it
// already.
func (f *Failover) follow(l *leaderRecord) {
	n := f.N
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.primary == l.Kafka && n.B.IsStandby() {
		return
	}
	if !n.B.IsStandby() {
		n.Roles.BecomeStandby()
		if err := n.B.BecomeStandby(engine.Peer{NodeID: -1}, l.Epoch); err != nil {
			n.Logger.Error("failover: becoming a standby", "err", err)
		}
	}
	host, port := splitHostPort(l.Kafka)
	n.followLocked(l.Kafka, Primary{NodeID: l.NodeID, Host: host, Port: port, ClusterID: n.B.Meta.ClusterID()})
}

func splitHostPort(addr string) (string, int32) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, 0
	}
	n, _ := strconv.Atoi(p)
	return h, int32(n)
}

// campaign tries to take the leader key with a fresh lease, allocating
// the term's epoch in the same transaction (the epoch key, bumped only by a
// winning campaign), so two terms never share an epoch. It returns when it
// asked for the lease: the lease cannot expire before then + TTL.
func (f *Failover) campaign(ctx context.Context, st *stateRecord) (lease clientv3.LeaseID, epoch int32, asked time.Time, ok bool, err error) {
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	epochKey := f.Cfg.key("epoch")
	cur, err := f.cli.Get(c, epochKey)
	if err != nil {
		return 0, 0, time.Time{}, false, err
	}
	var rev int64
	stored := int64(0)
	if len(cur.Kvs) > 0 {
		rev = cur.Kvs[0].ModRevision
		stored, _ = strconv.ParseInt(string(cur.Kvs[0].Value), 10, 32)
	}
	seen := max(int32(stored), f.N.B.SeenEpoch())
	if st != nil {
		seen = max(seen, st.Epoch)
	}
	epoch = seen + 1
	ttl := int64(max(f.Cfg.TTL/time.Second, 1))
	asked = time.Now()
	grant, err := f.cli.Grant(c, ttl)
	if err != nil {
		return 0, 0, time.Time{}, false, err
	}
	host, port, err := f.N.B.Cfg.AdvertisedAddress()
	if err != nil {
		return 0, 0, time.Time{}, false, err
	}
	rec, _ := json.Marshal(leaderRecord{NodeID: f.N.B.Cfg.NodeID, Kafka: net.JoinHostPort(host, strconv.Itoa(int(port))), Admin: f.N.B.Cfg.HTTP, Epoch: epoch})
	key := f.Cfg.key("leader")
	resp, err := f.cli.Txn(c).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0), clientv3.Compare(clientv3.ModRevision(epochKey), "=", rev)).
		Then(clientv3.OpPut(key, string(rec), clientv3.WithLease(grant.ID)), clientv3.OpPut(epochKey, strconv.Itoa(int(epoch)))).Commit()
	if err != nil || !resp.Succeeded {
		f.cli.Revoke(context.Background(), grant.ID)
		return 0, 0, time.Time{}, false, err
	}
	return grant.ID, epoch, asked, true, nil
}

// lead is this node's term as primary: promote to the term's epoch, record
// state (this node primary, its standby out of sync) before any write,
// then renew the lease (fencing when renewals fail) and record in-sync
// changes, until the lease is lost or ctx ends.
func (f *Failover) lead(ctx context.Context, lease clientv3.LeaseID, epoch int32, asked time.Time) {
	n := f.N
	b := n.B
	termCtx, endTerm := context.WithCancel(ctx)
	defer endTerm()
	// The fence runs from the lease request on; the shards stay fenced
	// (and may not answer acks=all alone) until state is recorded.
	b.FenceForLease(true)
	b.SetAloneOK(false)
	lost := f.renew(termCtx, lease, asked)
	if _, err := n.promote(true, epoch); err != nil {
		n.Logger.Error("failover: promotion failed; giving the lease back", "err", err)
		endTerm()
		f.resign(lease)
		f.stepDown()
		return
	}
	cur := stateRecord{Primary: b.Cfg.NodeID, Standby: -1, InSync: false, Epoch: epoch}
	if err := f.putState(ctx, lease, cur); err != nil {
		n.Logger.Error("failover: recording state failed; giving the lease back", "err", err)
		endTerm()
		f.resign(lease)
		f.stepDown()
		return
	}
	b.SetAloneOK(true) // etcd says nobody is in sync: acks=all may go alone
	n.Logger.Info("failover: primary by lease", "leader_epoch", epoch, "took", time.Since(asked).Round(time.Millisecond))
	isr := time.NewTicker(100 * time.Millisecond)
	defer isr.Stop()
	for {
		select {
		case <-ctx.Done():
			endTerm()
			f.resign(lease)
			return
		case <-lost:
			n.Logger.Warn("failover: the lease expired; no longer primary")
			f.stepDown()
			return
		case reply := <-f.handover:
			epoch, err := f.handOverFrom(ctx, lease, &cur)
			reply <- handoverResult{epoch, err}
			if err == nil {
				return
			}
		case now := <-isr.C:
			f.recordInSync(ctx, lease, &cur, now)
		}
	}
}

// recordInSync shrinks the in-sync sets (replica.lag.time.max.ms) and
// keeps etcd's state in step with them, in the order that keeps a takeover
// safe. The standby is recorded in sync only when it is in sync everywhere,
// and acks=all may then no longer be answered without it (forbidden first,
// recorded second). Anything short of that (a partition out of sync,
// another standby) is recorded out of sync first, and only then may the
// primary answer acks=all alone.
func (f *Failover) recordInSync(ctx context.Context, lease clientv3.LeaseID, cur *stateRecord, now time.Time) {
	b := f.N.B
	b.CheckFollowers(now)
	peer, hasPeer := b.Peer()
	next := *cur
	next.Standby = -1
	if hasPeer {
		next.Standby = peer.NodeID
	}
	next.InSync = hasPeer && b.UnderReplicated() == 0
	if next == *cur {
		return
	}
	if next.InSync {
		b.SetAloneOK(false)
	}
	if err := f.putState(ctx, lease, next); err != nil {
		f.N.Logger.Warn("failover: recording the in-sync state failed; acks=all waits for the standby meanwhile", "err", err)
		if next.InSync {
			b.SetAloneOK(!cur.InSync)
		}
		return
	}
	*cur = next
	if !next.InSync {
		b.SetAloneOK(true)
	}
}

var errAlreadyPrimary = errors.New("this node is the primary already")

// renew keeps the lease alive from its own goroutine, so that nothing the
// term does (a hand-over's wait, a slow etcd write) delays it or the fence.
// The fence is a timer: it fires 2/3 of the TTL after the send time of the
// last renewal that succeeded (the server renewed the lease after that
// moment, so it cannot expire before send time + TTL on its clock), and
// each success pushes it back and lifts the fence. The returned channel is
// closed when etcd says the lease is gone.
func (f *Failover) renew(ctx context.Context, lease clientv3.LeaseID, granted time.Time) <-chan struct{} {
	b := f.N.B
	lost := make(chan struct{})
	fenceAfter := f.Cfg.TTL * 2 / 3
	// The lease was granted after granted.
	fence := time.AfterFunc(time.Until(granted.Add(fenceAfter)), func() { b.FenceForLease(true) })
	b.FenceForLease(false)
	go func() {
		defer fence.Stop()
		tick := time.NewTicker(max(f.Cfg.TTL/6, 50*time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			sent := time.Now()
			c, cancel := context.WithTimeout(ctx, f.Cfg.TTL/3)
			_, err := f.cli.KeepAliveOnce(c, lease)
			cancel()
			switch {
			case err == nil:
				fence.Reset(time.Until(sent.Add(fenceAfter)))
				b.FenceForLease(false)
			case errors.Is(err, rpctypes.ErrLeaseNotFound):
				b.FenceForLease(true)
				close(lost)
				return
			}
		}
	}()
	return lost
}

// handOverFrom runs a hand-over inside the primary's term.
func (f *Failover) handOverFrom(ctx context.Context, lease clientv3.LeaseID, cur *stateRecord) (int32, error) {
	b := f.N.B
	peer, ok := b.Peer()
	if !ok {
		return 0, errors.New("no standby has registered: there is nobody to hand over to")
	}
	start := time.Now()
	b.Fence(true)
	for {
		ok, lacking := b.StandbyHasAll()
		if ok {
			break
		}
		if time.Since(start) > handoverWait {
			b.Fence(false)
			return 0, fmt.Errorf("the standby did not catch up within %v (%s); writes resumed here", handoverWait, lacking)
		}
		time.Sleep(2 * time.Millisecond)
	}
	next := stateRecord{Primary: b.Cfg.NodeID, Standby: peer.NodeID, InSync: true, Epoch: b.Epoch()}
	if err := f.putState(ctx, lease, next); err != nil {
		b.Fence(false)
		return 0, fmt.Errorf("recording the standby in sync: %w; writes resumed here", err)
	}
	*cur = next
	f.yieldUntil = time.Now().Add(3 * f.Cfg.TTL)
	f.resign(lease)
	f.stepDown()
	f.N.Logger.Info("failover: handed the lease over", "to_node_id", peer.NodeID, "took", time.Since(start).Round(time.Millisecond))
	return b.Epoch() + 1, nil
}

// putState writes state, only while this node's lease holds the leader key.
func (f *Failover) putState(ctx context.Context, lease clientv3.LeaseID, st stateRecord) error {
	c, cancel := context.WithTimeout(ctx, f.Cfg.TTL/3)
	defer cancel()
	b, _ := json.Marshal(st)
	key := f.Cfg.key("leader")
	resp, err := f.cli.Txn(c).If(clientv3.Compare(clientv3.LeaseValue(key), "=", lease)).
		Then(clientv3.OpPut(f.Cfg.key("state"), string(b))).Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return errors.New("this node no longer holds the leader key")
	}
	return nil
}

// resign gives the lease back (a clean stop): the standby takes over at
// once instead of after the TTL.
func (f *Failover) resign(lease clientv3.LeaseID) {
	f.N.B.FenceForLease(true)
	c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	f.cli.Revoke(c, lease)
}

// stepDown: the lease is gone; another node may be primary now. Stop
// taking writes and wait to follow whoever holds the key next.
func (f *Failover) stepDown() {
	n := f.N
	n.mu.Lock()
	defer n.mu.Unlock()
	n.Roles.BecomeStandby()
	if err := n.B.BecomeStandby(engine.Peer{NodeID: -1}, n.B.Epoch()); err != nil {
		n.Logger.Error("failover: becoming a standby", "err", err)
	}
}
