package replicate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/sluice-broker/sluice/engine"
)

// Roles is what the request layer does when the node's role changes
// (api.Handler): it runs the group coordinator only as primary, and moves
// producer ids to the new epoch's range.
type Roles interface {
	BecomePrimary(epoch int32) error
	BecomeStandby()
}

// Node runs one node of a pair through its role changes: following a
// primary, promotion, and handing the primary role over.
type Node struct {
	B      *engine.Broker
	Roles  Roles
	Logger *slog.Logger
	// Failover, when set, is the etcd election this node takes part in:
	// etcd, not the operator, decides the primary, and a hand-over goes
	// through it.
	Failover *Failover

	mu      sync.Mutex // serialises role changes
	cancel  context.CancelFunc
	done    chan struct{}
	primary string // the Kafka address followed, while a standby
}

// Follow starts following the primary at addr (already probed).
func (n *Node) Follow(addr string, p Primary) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.followLocked(addr, p)
}

func (n *Node) followLocked(addr string, p Primary) {
	n.stopLocked()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	sb := &Standby{B: n.B, Addr: addr, Primary: p, Logger: n.Logger}
	go func() { defer close(done); sb.Run(ctx) }()
	n.cancel, n.done, n.primary = cancel, done, addr
}

func (n *Node) stopLocked() {
	if n.cancel != nil {
		n.cancel()
		<-n.done
		n.cancel, n.done, n.primary = nil, nil, ""
	}
}

// Close stops following.
func (n *Node) Close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.stopLocked()
}

// ErrPrimaryAlive refuses a promotion while the old primary still serves
// as primary.
var ErrPrimaryAlive = errors.New("the primary is reachable and still primary")

// Promote makes this standby the primary at the next epoch. Unless force
// (or a hand-over, whose old primary has fenced itself) it first asks the
// primary it follows and refuses while that one answers as primary: two
// primaries must never take writes at once. It returns the new epoch.
func (n *Node) Promote(force bool) (int32, error) { return n.promote(force, 0) }

// promote is Promote at a given epoch (0: the next this node has not seen).
func (n *Node) promote(force bool, at int32) (int32, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.B.IsStandby() {
		return 0, errAlreadyPrimary
	}
	if old, known := n.B.Peer(); !force && known && n.primary != "" {
		if p, err := Probe(n.primary, n.B.Cfg.NodeID, n.B.Meta.ClusterID()); err == nil && p.NodeID == old.NodeID {
			return 0, fmt.Errorf("%w: node %d at %s (hand over with sluice demote, or stop it; --force promotes anyway)", ErrPrimaryAlive, p.NodeID, n.primary)
		}
	}
	n.stopLocked()
	epoch, err := n.B.Promote(at)
	if err != nil {
		return 0, err
	}
	if err := n.Roles.BecomePrimary(epoch); err != nil {
		return epoch, fmt.Errorf("promoted to epoch %d, but the group coordinator did not start: %w", epoch, err)
	}
	return epoch, nil
}

// handoverWait bounds how long a hand-over waits for the standby to hold
// everything the primary has.
const handoverWait = 10 * time.Second

// Demote hands the primary role to the in-sync standby: this node stops
// taking writes, waits until the standby holds every record, asks it to
// promote itself, and follows it. Nothing acknowledged is lost: every
// record is on the standby before it takes over. It returns the new
// primary's epoch.
func (n *Node) Demote() (int32, error) {
	if n.Failover != nil {
		return n.Failover.HandOver()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.B.IsStandby() {
		return 0, errors.New("this node is a standby; demote its primary")
	}
	peer, ok := n.B.Peer()
	switch {
	case !ok:
		return 0, errors.New("no standby has registered: there is nobody to hand over to")
	case peer.AdminAddr == "":
		return 0, fmt.Errorf("the standby (node %d) has no --http listener to ask to promote itself", peer.NodeID)
	}
	start := time.Now()
	n.B.Fence(true)
	resume := func(err error) (int32, error) {
		n.B.Fence(false)
		return 0, err
	}
	for {
		ok, lacking := n.B.StandbyHasAll()
		if ok {
			break
		}
		if time.Since(start) > handoverWait {
			return resume(fmt.Errorf("the standby did not catch up within %v (%s); writes resumed here", handoverWait, lacking))
		}
		time.Sleep(2 * time.Millisecond)
	}
	// Forced: this node, the primary it would ask about, has fenced itself.
	r, err := RequestRoleChange(peer.AdminAddr, "promote", true)
	epoch := r.LeaderEpoch
	if err != nil {
		// The answer may be lost while the promotion went through: stay
		// fenced unless the standby says it is still a standby.
		if role, serr := peerRole(peer.AdminAddr); serr != nil || role != "standby" {
			return 0, fmt.Errorf("the standby's promotion failed or was not confirmed (%v; its role: %q, %v): this node stays fenced; check both with sluice status", err, role, serr)
		}
		return resume(fmt.Errorf("the standby did not take over: %w; writes resumed here", err))
	}
	n.Roles.BecomeStandby()
	if err := n.B.BecomeStandby(peer, epoch); err != nil {
		return epoch, err
	}
	addr := net.JoinHostPort(peer.Host, strconv.Itoa(int(peer.Port)))
	n.followLocked(addr, Primary{NodeID: peer.NodeID, Host: peer.Host, Port: peer.Port, ClusterID: n.B.Meta.ClusterID()})
	n.Logger.Info("handed the primary role over", "to_node_id", peer.NodeID, "leader_epoch", epoch, "took", time.Since(start).Round(time.Millisecond))
	return epoch, nil
}

// peerRole asks a node's /v1/status for its role.
func peerRole(adminAddr string) (string, error) {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + adminAddr + "/v1/status")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var st struct {
		Role string `json:"role"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&st); err != nil {
		return "", err
	}
	return st.Role, nil
}

// RoleChange is the JSON answer of /v1/promote and /v1/demote.
type RoleChange struct {
	Role        string `json:"role,omitempty"`
	LeaderEpoch int32  `json:"leader_epoch,omitempty"`
	Error       string `json:"error,omitempty"`
}

// Routes adds POST /v1/promote (?force=1) and POST /v1/demote to mux.
func (n *Node) Routes(mux *http.ServeMux) {
	answer := func(w http.ResponseWriter, epoch int32, err error) {
		w.Header().Set("Content-Type", "application/json")
		r := RoleChange{Role: n.B.Role(), LeaderEpoch: epoch}
		if err != nil {
			r.Error = err.Error()
			w.WriteHeader(http.StatusConflict)
		}
		_ = json.NewEncoder(w).Encode(r)
	}
	mux.HandleFunc("POST /v1/promote", func(w http.ResponseWriter, r *http.Request) {
		if n.Failover != nil {
			answer(w, 0, errors.New("an etcd lease decides the primary of this pair (--failover-etcd): hand the role over with sluice demote on the primary"))
			return
		}
		force := r.URL.Query().Get("force") == "1"
		epoch, err := n.Promote(force)
		answer(w, epoch, err)
	})
	mux.HandleFunc("POST /v1/demote", func(w http.ResponseWriter, r *http.Request) {
		epoch, err := n.Demote()
		answer(w, epoch, err)
	})
}

// RequestRoleChange is `sluice promote` and `sluice demote`: it posts to
// a node's admin listener and returns what the node answered.
func RequestRoleChange(adminAddr, what string, force bool) (RoleChange, error) {
	url := "http://" + adminAddr + "/v1/" + what
	if force {
		url += "?force=1"
	}
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Post(url, "application/json", nil)
	if err != nil {
		return RoleChange{}, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var r RoleChange
	if err := json.Unmarshal(body, &r); err != nil {
		return RoleChange{}, fmt.Errorf("%s: %s", resp.Status, body)
	}
	if resp.StatusCode != http.StatusOK {
		return r, errors.New(r.Error)
	}
	return r, nil
}
