// Package replicate is the standby's half of primary-to-standby
// replication: it registers with the primary as a Kafka broker registers
// with its controller (BrokerRegistration), mirrors the primary's topic
// catalogue, and follows every partition with Kafka's follower Fetch,
// appending the batches byte for byte at their offsets. The primary's half
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
	"github.com/sluice-broker/sluice/engine/config"
	"github.com/sluice-broker/sluice/engine/meta"
	"github.com/sluice-broker/sluice/engine/shard"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

// Kafka's follower defaults.
const (
	fetchMaxWait       = 500 * time.Millisecond // replica.fetch.wait.max.ms
	fetchMaxBytes      = 10 << 20               // replica.fetch.response.max.bytes
	partitionMaxBytes  = 1 << 20                // replica.fetch.max.bytes
	fetchBackoff       = time.Second            // replica.fetch.backoff.ms
	catalogueEvery     = time.Second
	dialTimeout        = 3 * time.Second
	fetchVersion       = 15 // replica id in ReplicaState, topics by id
	metadataVersion    = 12
	registrationVer    = 0
	describeConfigsVer = 4
	apiVersionsVer     = 3
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
	lastCatalog time.Time
}

// Run follows the primary until ctx ends, reconnecting after failures.
func (s *Standby) Run(ctx context.Context) {
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	_, _ = rand.Read(s.incarnation[:])
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
	s.lastCatalog = time.Time{}
	for ctx.Err() == nil {
		if time.Since(s.lastCatalog) >= catalogueEvery {
			if err := s.mirror(c); err != nil {
				return err
			}
			s.lastCatalog = time.Now()
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

// mirror copies the primary's catalogue: Metadata for names, IDs and
// partition counts; DescribeConfigs for each topic's overrides.
func (s *Standby) mirror(c *conn) error {
	deadline := time.Now().Add(10 * time.Second)
	var md msg.MetadataResponse
	mdReq := &msg.MetadataRequest{}
	mdReq.Default()
	mdReq.Topics = nil // all topics
	if err := c.roundTrip(mdReq, &md, metadataVersion, deadline); err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	if md.ClusterId == nil || *md.ClusterId != s.B.Meta.ClusterID() {
		return fmt.Errorf("the primary's cluster id changed to %v", md.ClusterId)
	}
	var topics []engine.MirrorTopic
	dc := &msg.DescribeConfigsRequest{}
	dc.Default()
	for _, t := range md.Topics {
		if t.ErrorCode != 0 || t.Name == nil {
			continue
		}
		topics = append(topics, engine.MirrorTopic{Name: *t.Name, ID: meta.TopicID(t.TopicId), Partitions: int32(len(t.Partitions)), Internal: t.IsInternal})
		dc.Resources = append(dc.Resources, msg.DescribeConfigsRequestDescribeConfigsResource{ResourceType: 2, ResourceName: *t.Name})
	}
	if len(dc.Resources) > 0 {
		var dr msg.DescribeConfigsResponse
		if err := c.roundTrip(dc, &dr, describeConfigsVer, deadline); err != nil {
			return fmt.Errorf("describe configs: %w", err)
		}
		byName := map[string]map[string]string{}
		for _, r := range dr.Results {
			if r.ErrorCode != 0 {
				continue
			}
			m := map[string]string{}
			for _, e := range r.Configs {
				if e.ConfigSource == int8(config.SourceDynamicTopic) && e.Value != nil {
					m[e.Name] = *e.Value
				}
			}
			byName[r.ResourceName] = m
		}
		for i := range topics {
			topics[i].Configs = byName[topics[i].Name]
		}
	}
	if _, err := s.B.MirrorCatalogue(topics); err != nil {
		// A topic that cannot be created here (a full disk) is logged and
		// tried again; the others go on.
		s.Logger.Warn("standby: mirroring the catalogue", "err", err)
	}
	return nil
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
		fp.PartitionMaxBytes = partitionMaxBytes
		last.Partitions = append(last.Partitions, fp)
	}
	if len(req.Topics) == 0 {
		time.Sleep(fetchMaxWait)
		return nil
	}
	var resp msg.FetchResponse
	if err := c.roundTrip(req, &resp, fetchVersion, time.Now().Add(fetchMaxWait+30*time.Second)); err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	if resp.ErrorCode != 0 {
		return fmt.Errorf("fetch: %s", kerr.Code(resp.ErrorCode))
	}
	byID := map[meta.TopicID]string{}
	for _, p := range positions {
		byID[p.TopicID] = p.Key.Topic
	}
	var apps []engine.ReplicaAppend
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
			case kerr.UnknownTopicID, kerr.UnknownTopicOrPartition:
				s.lastCatalog = time.Time{} // the catalogue changed: mirror it now
			case kerr.NotLeaderOrFollower:
				return fmt.Errorf("the primary does not take this node's replica fetches (is another standby registered?)")
			default:
				s.Logger.Warn("standby: partition fetch failed", "partition", k.Dir(), "err", kerr.Code(p.ErrorCode))
			}
		}
	}
	s.B.AppendReplicas(apps)
	var errs []error
	for _, a := range apps {
		if a.Err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a.Key.Dir(), a.Err))
		}
	}
	if len(errs) > 0 {
		s.Logger.Warn("standby: appending fetched batches", "err", errors.Join(errs...))
		time.Sleep(fetchBackoff / 10)
	}
	return nil
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
