// Package replicate is the standby's half of primary-to-standby
// replication: it registers with the primary as a Kafka broker registers
// with its controller (BrokerRegistration) and follows every partition with
// Kafka's follower Fetch, appending the batches byte for byte at their
// offsets; the topic catalogue comes with them, in the metadata log
// (__cluster_metadata), which it replays. The primary's half
// (in-sync tracking, the high watermark, acks=all) is in engine/shard.
package replicate

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/sluice-broker/sluice/engine"
	"github.com/sluice-broker/sluice/engine/api"
	"github.com/sluice-broker/sluice/engine/meta"
	"github.com/sluice-broker/sluice/engine/shard"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

// Kafka's follower defaults.
const (
	fetchMaxWait      = 500 * time.Millisecond // replica.fetch.wait.max.ms
	fetchMaxBytes     = 10 << 20               // replica.fetch.response.max.bytes
	partitionMaxBytes = 1 << 20                // replica.fetch.max.bytes
	fetchBackoff      = time.Second            // replica.fetch.backoff.ms
	checkEvery        = time.Second            // how often the primary is checked
	dialTimeout       = 3 * time.Second
	fetchVersion      = 15 // replica id in ReplicaState, topics by id
	metadataVersion   = 12
	registrationVer   = 0
	apiVersionsVer    = 3
	epochVersion      = 4 // OffsetForLeaderEpoch with the replica id
)

// ErrUnreachable: no connection to the primary could be made.
var ErrUnreachable = errors.New("cannot reach the primary")

// Primary is what the standby learned of its primary.
type Primary struct {
	NodeID    int32
	Host      string
	Port      int32
	ClusterID string
}

// Probe checks that addr is a sluice primary this node may follow: it
// speaks the follower protocol, it is not this node, and (when localCluster
// is not empty) it belongs to the same cluster. Its errors are one clear
// line each.
func Probe(addr string, nodeID int32, localCluster string) (Primary, error) {
	c, err := dial(addr, "sluice-standby", dialTimeout)
	if err != nil {
		return Primary{}, fmt.Errorf("%w at %s: %v", ErrUnreachable, addr, err)
	}
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	var av msg.ApiVersionsResponse
	avReq := &msg.ApiVersionsRequest{ClientSoftwareName: "sluice-standby", ClientSoftwareVersion: "1"}
	if err := c.roundTrip(avReq, &av, apiVersionsVer, deadline); err != nil {
		return Primary{}, fmt.Errorf("%s is not a Kafka broker sluice can follow (ApiVersions: %v)", addr, err)
	}
	has := map[int16]msg.ApiVersionsResponseApiVersion{}
	for _, k := range av.ApiKeys {
		has[k.ApiKey] = k
	}
	if k, ok := has[62]; !ok || k.MinVersion > registrationVer {
		return Primary{}, fmt.Errorf("%s is not a sluice primary: it takes no BrokerRegistration from a standby", addr)
	}
	if k, ok := has[1]; !ok || k.MaxVersion < fetchVersion {
		return Primary{}, fmt.Errorf("%s is not a sluice primary: it serves no Fetch v%d", addr, fetchVersion)
	}
	var md msg.MetadataResponse
	mdReq := &msg.MetadataRequest{}
	mdReq.Default()
	mdReq.Topics = []msg.MetadataRequestTopic{}
	if err := c.roundTrip(mdReq, &md, metadataVersion, deadline); err != nil {
		return Primary{}, fmt.Errorf("metadata from %s: %w", addr, err)
	}
	p := Primary{NodeID: md.ControllerId}
	if md.ClusterId != nil {
		p.ClusterID = *md.ClusterId
	}
	for _, b := range md.Brokers {
		if b.NodeId == md.ControllerId {
			p.Host, p.Port = b.Host, b.Port
		}
	}
	switch {
	case p.NodeID == nodeID:
		return Primary{}, fmt.Errorf("%s is node %d, this node's own id: a standby needs its own --node-id (or --standby-of points at this node)", addr, nodeID)
	case p.Host == "":
		return Primary{}, fmt.Errorf("%s does not list itself (node %d) in Metadata: it is a standby or not a sluice primary", addr, p.NodeID)
	case localCluster != "" && p.ClusterID != localCluster:
		return Primary{}, fmt.Errorf("the primary at %s belongs to cluster %q but this data directory to %q: start the standby on an empty --data-dir", addr, p.ClusterID, localCluster)
	}
	return p, nil
}

// Standby follows a primary until its context ends.
type Standby struct {
	B       *engine.Broker
	Addr    string // the primary's Kafka address (--standby-of)
	Primary Primary
	Logger  *slog.Logger

	incarnation [16]byte
	lastCheck   time.Time // when the primary was last checked
	epoch       int32     // the primary's leader epoch, from its Metadata
	// retryCatalogue: the last catalogue change could not be applied (a
	// full disk): try again after each fetch.
	retryCatalogue bool
}

// Run follows the primary until ctx ends, reconnecting after failures.
func (s *Standby) Run(ctx context.Context) {
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	_, _ = rand.Read(s.incarnation[:])
	s.epoch = -1
	s.B.SetPrimary(engine.Peer{NodeID: s.Primary.NodeID, Host: s.Primary.Host, Port: s.Primary.Port})
	for ctx.Err() == nil {
		err := s.session(ctx)
		if ctx.Err() != nil {
			return
		}
		s.Logger.Warn("standby: lost the primary; retrying", "primary", s.Addr, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(fetchBackoff):
		}
	}
}

// session is one connection's life: register, then mirror and fetch.
func (s *Standby) session(ctx context.Context) error {
	c, err := dial(s.Addr, "sluice-standby-"+strconv.Itoa(int(s.B.Cfg.NodeID)), dialTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if err := s.register(c); err != nil {
		return err
	}
	if err := s.checkPrimary(c); err != nil {
		return err
	}
	s.lastCheck = time.Now()
	if err := s.reconcile(c); err != nil {
		return err
	}
	s.applyCatalogue()
	for ctx.Err() == nil {
		if time.Since(s.lastCheck) >= checkEvery {
			if err := s.checkPrimary(c); err != nil {
				return err
			}
			s.lastCheck = time.Now()
		}
		if err := s.fetch(c); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func (s *Standby) register(c *conn) error {
	host, port, err := s.B.Cfg.AdvertisedAddress()
	if err != nil {
		return err
	}
	req := &msg.BrokerRegistrationRequest{}
	req.Default()
	req.BrokerId = s.B.Cfg.NodeID
	req.ClusterId = s.B.Meta.ClusterID()
	req.IncarnationId = s.incarnation
	req.Listeners = []msg.BrokerRegistrationRequestListener{{Name: "PLAINTEXT", Host: host, Port: uint16(port)}}
	if admin := s.B.Cfg.HTTP; admin != "" {
		if h, p, err := net.SplitHostPort(admin); err == nil {
			if n, err := strconv.ParseUint(p, 10, 16); err == nil {
				if h == "" || h == "0.0.0.0" || h == "::" {
					h = host
				}
				req.Listeners = append(req.Listeners, msg.BrokerRegistrationRequestListener{Name: api.AdminListenerName, Host: h, Port: uint16(n)})
			}
		}
	}
	req.Features = []msg.BrokerRegistrationRequestFeature{}
	if s.B.Cfg.Rack != "" {
		req.Rack = &s.B.Cfg.Rack
	}
	var resp msg.BrokerRegistrationResponse
	if err := c.roundTrip(req, &resp, registrationVer, time.Now().Add(10*time.Second)); err != nil {
		return fmt.Errorf("registering with the primary: %w", err)
	}
	if resp.ErrorCode != 0 {
		return fmt.Errorf("the primary refused this standby's registration: %s", kerr.Code(resp.ErrorCode))
	}
	s.Logger.Info("standby: registered with the primary", "primary", s.Addr, "primary_node_id", s.Primary.NodeID)
	return nil
}

// checkPrimary asks the primary's Metadata who is primary and at which
// epoch: a standby follows only the primary its session began with, of its
// own cluster, at an epoch no older than its own.
func (s *Standby) checkPrimary(c *conn) error {
	var md msg.MetadataResponse
	req := &msg.MetadataRequest{}
	req.Default()
	name := "__consumer_offsets" // every primary has it: its partitions carry the epoch
	req.Topics = []msg.MetadataRequestTopic{{Name: &name}}
	req.AllowAutoTopicCreation = false
	if err := c.roundTrip(req, &md, metadataVersion, time.Now().Add(10*time.Second)); err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	if md.ClusterId == nil || *md.ClusterId != s.B.Meta.ClusterID() {
		return fmt.Errorf("the primary's cluster id changed to %v", md.ClusterId)
	}
	if md.ControllerId != s.Primary.NodeID {
		// It handed its role over (or another node was promoted): follow
		// whoever is primary now, from a fresh session.
		return fmt.Errorf("%s is no longer the primary (Metadata names node %d)", s.Addr, md.ControllerId)
	}
	primaryEpoch := int32(-1)
	for _, t := range md.Topics {
		for _, p := range t.Partitions {
			primaryEpoch = max(primaryEpoch, p.LeaderEpoch)
		}
	}
	if primaryEpoch < 0 {
		return nil // not known yet (the primary is starting)
	}
	if own := s.B.Epoch(); primaryEpoch < own {
		// Following it would truncate what this node wrote as a newer
		// primary: never follow an older epoch.
		return fmt.Errorf("%s is at leader epoch %d, older than this node's %d: refusing to follow it", s.Addr, primaryEpoch, own)
	}
	if primaryEpoch > s.epoch {
		s.epoch = primaryEpoch
		if err := s.B.NoteLeaderEpoch(primaryEpoch); err != nil {
			return err
		}
	}
	return nil
}

// applyCatalogue brings the catalogue in line with the followed metadata
// log. A topic that cannot be created here (a full disk) is logged and
// tried again at the next change; the others go on.
func (s *Standby) applyCatalogue() {
	if _, err := s.B.ApplyCatalogue(); err != nil {
		s.Logger.Warn("standby: applying the primary's catalogue", "err", err)
		s.retryCatalogue = true
	}
}

// fetch runs one follower fetch for every partition and appends what it
// brings.
func (s *Standby) fetch(c *conn) error {
	positions := s.B.ReplicaPositions()
	req := &msg.FetchRequest{}
	req.Default()
	req.ReplicaState.ReplicaId = s.B.Cfg.NodeID
	req.ReplicaState.ReplicaEpoch = -1
	req.MaxWaitMs = int32(fetchMaxWait / time.Millisecond)
	req.MinBytes = 1
	req.MaxBytes = fetchMaxBytes
	req.IsolationLevel = 0
	req.SessionEpoch = -1
	var last *msg.FetchRequestFetchTopic
	for _, p := range positions {
		if last == nil || last.TopicId != p.TopicID {
			req.Topics = append(req.Topics, msg.FetchRequestFetchTopic{Topic: p.Key.Topic, TopicId: p.TopicID})
			last = &req.Topics[len(req.Topics)-1]
		}
		fp := msg.FetchRequestFetchPartition{}
		fp.Default()
		fp.Partition = p.Key.Partition
		fp.FetchOffset = p.LogEnd
		fp.LogStartOffset = p.LogStart
		fp.CurrentLeaderEpoch = s.epoch
		fp.PartitionMaxBytes = partitionMaxBytes
		last.Partitions = append(last.Partitions, fp)
	}
	if len(req.Topics) == 0 {
		time.Sleep(fetchMaxWait)
		return nil
	}
	var resp msg.FetchResponse
	if err := c.fetchRoundTrip(req, &resp, fetchVersion, time.Now().Add(fetchMaxWait+30*time.Second)); err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	if resp.ErrorCode != 0 {
		return fmt.Errorf("fetch: %s", kerr.Code(resp.ErrorCode))
	}
	byID := map[meta.TopicID]string{}
	ends := map[shard.Key]int64{}
	for _, p := range positions {
		byID[p.TopicID] = p.Key.Topic
		ends[p.Key] = p.LogEnd
	}
	var apps []engine.ReplicaAppend
	metaChanged, partFailed := false, false
	for _, t := range resp.Responses {
		name, ok := byID[meta.TopicID(t.TopicId)]
		if !ok {
			continue
		}
		for _, p := range t.Partitions {
			k := shard.Key{Topic: name, Partition: p.PartitionIndex}
			switch kerr.Code(p.ErrorCode) {
			case kerr.None:
				apps = append(apps, engine.ReplicaAppend{Key: k, Records: p.Records, HighWatermark: p.HighWatermark})
				if name == engine.MetadataTopic && len(p.Records) > 0 {
					metaChanged = true
				}
			case kerr.UnknownTopicID, kerr.UnknownTopicOrPartition:
				// Deleted on the primary: the metadata log's next records
				// delete it here too.
			case kerr.NotLeaderOrFollower:
				return fmt.Errorf("the primary does not take this node's replica fetches (is another standby registered, or is it no longer primary?)")
			case kerr.FencedLeaderEpoch, kerr.UnknownLeaderEpoch:
				return fmt.Errorf("%s: %s (this standby knows epoch %d)", k.Dir(), kerr.Code(p.ErrorCode), s.epoch)
			case kerr.OffsetOutOfRange:
				if ends[k] < p.LogStartOffset {
					// Retention on the primary deleted what this standby
					// would fetch next: start over where the primary starts.
					s.Logger.Warn("standby: the primary's log starts past this one's end; starting over there", "partition", k.Dir(), "end", ends[k], "primary_log_start", p.LogStartOffset)
					if err := s.B.ResetReplica(k, p.LogStartOffset); err != nil {
						return err
					}
					continue
				}
				// Past the primary's end (its log lost a tail this one
				// has): cut back to its high watermark, which it surely
				// has, and fetch the rest again (Kafka asks for the
				// leader's end; refetching a little more is as safe).
				s.Logger.Warn("standby: fetch offset past the primary's log end; truncating to its high watermark", "partition", k.Dir(), "end", ends[k], "primary_high_watermark", p.HighWatermark)
				if err := s.B.TruncateReplicaTo(k, p.HighWatermark); err != nil {
					return err
				}
			default:
				s.Logger.Warn("standby: partition fetch failed", "partition", k.Dir(), "err", kerr.Code(p.ErrorCode))
				partFailed = true
			}
		}
	}
	s.B.AppendReplicas(apps)
	if metaChanged || s.retryCatalogue {
		s.retryCatalogue = false
		s.applyCatalogue()
	}
	var errs []error
	for _, a := range apps {
		if a.Err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a.Key.Dir(), a.Err))
		}
	}
	if len(errs) > 0 {
		s.Logger.Warn("standby: appending fetched batches", "err", errors.Join(errs...))
	}
	if len(errs) > 0 || partFailed {
		// A partition that keeps failing (a full disk, a storage error)
		// answers at once: do not spin on it.
		time.Sleep(fetchBackoff / 10)
	}
	return nil
}

// reconcile finds, for every partition with batches, where its log
// diverges from the primary's (OffsetForLeaderEpoch for its latest epoch)
// and truncates the divergent tail: a node that was primary and comes back
// as a standby drops what it wrote that the new primary never had. A
// partition whose latest epoch the primary does not know is asked again
// from the epoch before, as a Kafka follower does.
func (s *Standby) reconcile(c *conn) error {
	for round := 0; ; round++ {
		done, err := s.reconcileRound(c)
		if err != nil || done {
			return err
		}
		if round == 32 {
			return errors.New("divergence search did not converge in 32 rounds")
		}
	}
}

func (s *Standby) reconcileRound(c *conn) (bool, error) {
	positions := s.B.ReplicaPositions()
	req := &msg.OffsetForLeaderEpochRequest{ReplicaId: s.B.Cfg.NodeID}
	var last *msg.OffsetForLeaderEpochRequestOffsetForLeaderTopic
	n := 0
	for _, p := range positions {
		if p.LogEnd <= p.LogStart || p.LatestEpoch < 0 {
			continue
		}
		if last == nil || last.Topic != p.Key.Topic {
			req.Topics = append(req.Topics, msg.OffsetForLeaderEpochRequestOffsetForLeaderTopic{Topic: p.Key.Topic})
			last = &req.Topics[len(req.Topics)-1]
		}
		last.Partitions = append(last.Partitions, msg.OffsetForLeaderEpochRequestOffsetForLeaderPartition{Partition: p.Key.Partition, CurrentLeaderEpoch: s.epoch, LeaderEpoch: p.LatestEpoch})
		n++
	}
	if n == 0 {
		return true, nil
	}
	var resp msg.OffsetForLeaderEpochResponse
	if err := c.roundTrip(req, &resp, epochVersion, time.Now().Add(30*time.Second)); err != nil {
		return false, fmt.Errorf("offset for leader epoch: %w", err)
	}
	var ds []engine.Divergence
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			k := shard.Key{Topic: t.Topic, Partition: p.Partition}
			switch kerr.Code(p.ErrorCode) {
			case kerr.None:
				ds = append(ds, engine.Divergence{Key: k, LeaderEpoch: p.LeaderEpoch, EndOffset: p.EndOffset})
			case kerr.UnknownTopicOrPartition:
				// Deleted on the primary: the metadata log deletes it here.
			default:
				return false, fmt.Errorf("offset for leader epoch of %s: %s", k.Dir(), kerr.Code(p.ErrorCode))
			}
		}
	}
	s.B.Reconcile(ds)
	var errs []error
	complete := true
	for _, d := range ds {
		if d.Err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", d.Key.Dir(), d.Err))
			continue
		}
		if d.To < d.From {
			s.Logger.Info("standby: divergent tail truncated", "partition", d.Key.Dir(), "from", d.From, "to", d.To)
		}
		complete = complete && (d.Complete || d.To == d.From)
	}
	return complete, errors.Join(errs...)
}

// SameAddress reports whether a and b name the same listener (for a
// standby pointed at itself).
func SameAddress(a, b string) bool {
	ha, pa, err1 := net.SplitHostPort(a)
	hb, pb, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || pa != pb {
		return false
	}
	ia, ib := net.ParseIP(ha), net.ParseIP(hb)
	if ha == hb || ia != nil && ib != nil && ia.Equal(ib) {
		return true
	}
	local := func(ip net.IP) bool { return ip != nil && (ip.IsLoopback() || ip.IsUnspecified()) }
	return local(ia) && local(ib)
}
