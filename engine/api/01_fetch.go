package api

import (
	"sync"
	"time"

	"github.com/sluice-broker/sluice/engine"
	"github.com/sluice-broker/sluice/engine/meta"
	"github.com/sluice-broker/sluice/engine/shard"
	"github.com/sluice-broker/sluice/wire/fetchwire"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

// Fetch v4 is Kafka 4's minimum; v17 the newest in the shared definitions.
// Incremental fetch sessions (KIP-227) are declined the way Kafka declines
// them when its session cache is full: the response carries session id 0, so
// clients keep sending full fetch requests.
var _ = register(&handler{key: 1, min: 4, max: 17, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	return h.fetch(rc, body.(*msg.FetchRequest))
}})

// maxFetchWait bounds a long poll whatever the client asks.
const maxFetchWait = 30 * time.Second

// fetchPartition is one requested partition and what its shard answered.
type fetchPartition struct {
	key      shard.Key
	shard    int
	offset   int64
	maxBytes int
	slot     *msg.FetchResponsePartitionData
	res      shard.ReadResult
	readable bool // the partition exists here; errors were set otherwise
	keep     bool // its data goes into the response
	// preferred: KIP-392, the standby in the consumer's rack serves this
	// partition; the answer names it and carries no records.
	preferred int32
	wg        *sync.WaitGroup
}

// ReadDone takes the shard's answer (shard.ReadWaiter).
func (fp *fetchPartition) ReadDone(r shard.ReadResult) {
	fp.res = r
	fp.wg.Done()
}

type fetchCall struct {
	h    *Handler
	rc   *request
	req  *msg.FetchRequest
	resp msg.FetchResponse
	// replica: the standby's fetch (a follower fetch with its replica
	// id): it reads past the high watermark and tells the primary what
	// the standby has stored.
	replica bool
	parts   []*fetchPartition
	// byTopic mirrors resp.Responses for the encoder's records table.
	byTopic [][]*fetchPartition
}

func (h *Handler) fetch(rc *request, req *msg.FetchRequest) *Response {
	c := &fetchCall{h: h, rc: rc, req: req}
	c.resp.Default()
	if req.SessionId != 0 {
		// sluice never hands out a session, so no session id can be valid.
		c.resp.ErrorCode = int16(kerr.FetchSessionIDNotFound)
		return c.encode()
	}
	replicaID := req.ReplicaId
	if rc.version >= 15 {
		replicaID = req.ReplicaState.ReplicaId
	}
	refuseReplica := false
	if replicaID >= 0 {
		// Kafka's follower fetch; consumers send -1.
		if h.b.IsReplica(replicaID) {
			c.replica = true
		} else {
			refuseReplica = true
			h.log.Warn("refusing a replica fetch from a node that is not this primary's standby", "node_id", replicaID, "standby", h.standbyID())
		}
	}
	rack := ""
	if rc.version >= 11 && !c.replica {
		rack = req.RackId
	}
	snap := h.b.Meta.Snapshot()
	for _, rt := range req.Topics {
		var t *meta.Topic
		var known bool
		code := kerr.UnknownTopicOrPartition
		if rc.version >= 13 {
			t, known = snap.ByID[meta.TopicID(rt.TopicId)]
			code = kerr.UnknownTopicID
			if !known && c.replica && meta.TopicID(rt.TopicId) == engine.MetadataTopicID {
				t, known = h.b.MetadataTopicEntry(), true // followed by the standby only
			}
		} else {
			t, known = snap.Topics[rt.Topic]
			if !known && c.replica && rt.Topic == engine.MetadataTopic {
				t, known = h.b.MetadataTopicEntry(), true
			}
		}
		var out msg.FetchResponseFetchableTopicResponse
		out.Default()
		out.Topic, out.TopicId = rt.Topic, rt.TopicId
		out.Partitions = make([]msg.FetchResponsePartitionData, len(rt.Partitions))
		var row []*fetchPartition
		for i, rp := range rt.Partitions {
			slot := &out.Partitions[i]
			slot.Default()
			slot.PartitionIndex = rp.Partition
			fp := &fetchPartition{slot: slot, offset: rp.FetchOffset, maxBytes: int(rp.PartitionMaxBytes), preferred: -1}
			switch {
			case refuseReplica:
				slot.ErrorCode = int16(kerr.NotLeaderOrFollower)
			case !known || rp.Partition < 0 || int(rp.Partition) >= len(t.Partitions):
				slot.ErrorCode = int16(code)
			case h.epochCheck(rp.CurrentLeaderEpoch) != kerr.None:
				slot.ErrorCode = int16(h.epochCheck(rp.CurrentLeaderEpoch))
			default:
				fp.key = shard.Key{Topic: t.Name, Partition: rp.Partition}
				fp.shard = t.Partitions[rp.Partition].Shard
				fp.readable = true
				if rack != "" {
					fp.preferred = h.preferredReplica(rack, fp.shard, fp.key)
				}
			}
			row = append(row, fp)
			c.parts = append(c.parts, fp)
		}
		c.resp.Responses = append(c.resp.Responses, out)
		c.byTopic = append(c.byTopic, row)
	}
	c.read()
	if c.satisfied() || req.MaxWaitMs <= 0 {
		return c.encode()
	}
	out := Pending()
	go c.longPoll(out)
	return out
}

// preferredReplica is KIP-392's rack-aware replica selection, on by
// default here (Kafka needs replica.selector.class): a consumer whose
// client.rack is the standby's broker.rack, and not the primary's, is sent
// to the standby for partitions where the standby is in sync; it reads
// there up to the replicated high watermark. -1: read here.
func (h *Handler) preferredReplica(rack string, sh int, k shard.Key) int32 {
	peer, ok := h.b.Peer()
	if !ok || h.b.IsStandby() || peer.Rack != rack || h.b.Cfg.Rack == rack || !h.b.StandbyInSync(h.b.Shards[sh], k) {
		return -1
	}
	return peer.NodeID
}

// read asks every owning shard for its partitions, in parallel across
// shards, and waits.
func (c *fetchCall) read() {
	perShard := make([][]*fetchPartition, len(c.h.b.Shards))
	for _, fp := range c.parts {
		if fp.readable {
			perShard[fp.shard] = append(perShard[fp.shard], fp)
		}
	}
	var wg sync.WaitGroup
	for i, fps := range perShard {
		if len(fps) == 0 {
			continue
		}
		wg.Add(len(fps))
		for _, fp := range fps {
			fp.wg = &wg
		}
		c.h.b.Shards[i].Do(func(s *shard.Shard) {
			for _, fp := range fps {
				switch {
				case c.replica:
					s.ReplicaReadAsync(fp.key, fp.offset, fp.maxBytes, fp)
				case c.req.IsolationLevel == 1:
					s.ReadCommittedAsync(fp.key, fp.offset, fp.maxBytes, fp)
				default:
					s.ReadAsync(fp.key, fp.offset, fp.maxBytes, true, fp)
				}
			}
		})
	}
	wg.Wait()
	c.budget()
}

// budget applies the response-wide max_bytes in request order: the first
// partition with data is kept even when larger (KIP-74), later ones only
// while they fit.
func (c *fetchCall) budget() {
	used := 0
	limit := int(c.req.MaxBytes)
	for _, fp := range c.parts {
		fp.keep = false
		if !fp.res.HasData || fp.preferred >= 0 {
			continue
		}
		n := fp.res.Data.Len
		if used == 0 || (used+n <= limit && n <= fp.maxBytes) {
			fp.keep = true
			used += n
		}
	}
}

func (c *fetchCall) bytes() (n int, failed bool) {
	for _, fp := range c.parts {
		if fp.keep {
			n += fp.res.Data.Len
		}
		if fp.slot.ErrorCode != 0 || fp.res.Err != kerr.None || fp.preferred >= 0 {
			failed = true // answered at once (a redirection counts too)
		}
	}
	return n, failed
}

// satisfied reports whether the response can go now: min_bytes reached, or
// an error to report.
func (c *fetchCall) satisfied() bool {
	n, failed := c.bytes()
	return failed || n >= int(c.req.MinBytes) && n > 0 || c.req.MinBytes <= 0
}

func (c *fetchCall) releaseData() {
	for _, fp := range c.parts {
		if fp.res.HasData {
			fp.res.Data.Release()
		}
		fp.res.HasData = false
	}
}

// longPoll parks the fetch on its partitions until an append moves a high
// watermark or max_wait_ms passes, then reads again.
func (c *fetchCall) longPoll(out *Response) {
	wait := time.Duration(c.req.MaxWaitMs) * time.Millisecond
	if wait > maxFetchWait {
		wait = maxFetchWait
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	woken := make(chan struct{}, 1)
	for {
		c.releaseData()
		c.park(woken)
		select {
		case <-woken:
			c.unpark(woken)
			c.read()
			if c.satisfied() {
				c.finish(out)
				return
			}
		case <-deadline.C:
			c.unpark(woken)
			c.read()
			c.finish(out)
			return
		case <-c.rc.closed:
			// Nobody will read the answer; give the partitions back now so
			// a closing connection (or a shutdown) does not wait out max_wait.
			c.unpark(woken)
			c.finish(out)
			return
		}
	}
}

func (c *fetchCall) park(ch chan struct{}) {
	for _, fp := range c.parts {
		if !fp.readable {
			continue
		}
		if c.replica {
			// Woken by new data, not by the high watermark, which may
			// itself wait for this fetch.
			c.h.b.Shards[fp.shard].Do(func(s *shard.Shard) { s.ParkReplica(fp.key, fp.offset, ch) })
			continue
		}
		hw := fp.res.HighWatermark
		if fp.offset > hw {
			hw = fp.offset
		}
		c.h.b.Shards[fp.shard].Do(func(s *shard.Shard) { s.Park(fp.key, hw, ch) })
	}
}

func (c *fetchCall) unpark(ch chan struct{}) {
	for _, fp := range c.parts {
		if fp.readable && c.replica {
			c.h.b.Shards[fp.shard].Do(func(s *shard.Shard) { s.UnparkReplica(fp.key, ch) })
		} else if fp.readable {
			c.h.b.Shards[fp.shard].Do(func(s *shard.Shard) { s.Unpark(fp.key, ch) })
		}
	}
	select {
	case <-ch:
	default:
	}
}

func (c *fetchCall) finish(out *Response) {
	r := c.encode()
	out.Parts, out.Release = r.Parts, r.Release
	out.Complete()
}

// encode frames the response: partition fields from the shards' answers,
// record bytes as file ranges for sendfile.
func (c *fetchCall) encode() *Response {
	recs := make([][]fetchwire.Records, len(c.byTopic))
	for ti, row := range c.byTopic {
		recs[ti] = make([]fetchwire.Records, len(row))
		for pi, fp := range row {
			slot := fp.slot
			recs[ti][pi] = fetchwire.Records{Bytes: []byte{}}
			if !fp.readable {
				continue
			}
			slot.ErrorCode = int16(fp.res.Err)
			slot.PreferredReadReplica = fp.preferred
			slot.HighWatermark = fp.res.HighWatermark
			slot.LastStableOffset = fp.res.LastStable
			slot.LogStartOffset = fp.res.LogStartOffset
			if c.req.IsolationLevel == 1 {
				slot.AbortedTransactions = []msg.FetchResponseAbortedTransaction{}
			}
			if fp.res.HasData && !fp.keep {
				fp.res.Data.Release()
				fp.res.HasData = false
			}
			if fp.keep && fp.res.HasData {
				for _, a := range fp.res.Aborted {
					slot.AbortedTransactions = append(slot.AbortedTransactions, msg.FetchResponseAbortedTransaction{ProducerId: a.ProducerID, FirstOffset: int64(a.FirstOffset)})
				}
				d := fp.res.Data
				if d.Mem != nil {
					recs[ti][pi] = fetchwire.Records{Bytes: d.Mem.B} // from the tail cache
				} else {
					recs[ti][pi] = fetchwire.Records{File: d.File.Fd(), Off: int64(d.Pos), Len: d.Len}
				}
				if !c.replica { // consumers' traffic, not replication's
					c.h.b.Metrics.BytesOut.WithLabelValues(fp.key.Topic).Add(float64(d.Len))
					from := max(fp.offset, int64(d.FirstOffset))
					c.h.b.Metrics.RecordsOut.WithLabelValues(fp.key.Topic).Add(float64(int64(d.NextOffset) - from))
				}
			}
		}
	}
	chunks := fetchwire.Encode(nil, c.rc.header.CorrelationID, &c.resp, c.rc.version, recs)
	parts := make([]Part, len(chunks))
	for i, ch := range chunks {
		parts[i] = Part{Bytes: ch.Bytes, File: ch.File, Off: ch.Off, Len: ch.Len}
	}
	r := Ready(parts...)
	r.Release = c.releaseData
	return r
}
