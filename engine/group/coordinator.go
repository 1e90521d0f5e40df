package group

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"math"
	"time"

	"github.com/sluice-broker/sluice/wire/kerr"
)

// Config holds the coordinator's settings, under their Kafka broker names.
type Config struct {
	// Partitions is the number of __consumer_offsets partitions
	// (offsets.topic.num.partitions); groups are spread over them.
	Partitions int32

	MinSessionTimeout     time.Duration // group.min.session.timeout.ms
	MaxSessionTimeout     time.Duration // group.max.session.timeout.ms
	InitialRebalanceDelay time.Duration // group.initial.rebalance.delay.ms
	MaxGroupSize          int           // group.max.size
	// NewMemberJoinTimeout bounds how long a new member's JoinGroup may stay
	// parked (Kafka's classic new-member join timeout, 5 minutes).
	NewMemberJoinTimeout time.Duration

	OffsetsRetention       time.Duration // offsets.retention.minutes
	OffsetsRetentionCheck  time.Duration // offsets.retention.check.interval.ms
	OffsetMetadataMaxBytes int           // offset.metadata.max.bytes

	ConsumerSessionTimeout    time.Duration // group.consumer.session.timeout.ms
	ConsumerHeartbeatInterval time.Duration // group.consumer.heartbeat.interval.ms
	ConsumerMaxSize           int           // group.consumer.max.size
	ConsumerAssignors         []string      // group.consumer.assignors; the first is the default

	// SnapshotMinBytes is the least a partition's log grows before the
	// coordinator rewrites its live records and trims the log before them.
	SnapshotMinBytes int

	// Topics returns the current topic catalogue (nil means none).
	Topics func() *Catalog
	// Random fills b with random bytes (member ids); crypto/rand if nil.
	Random func(b []byte)
	Logger *slog.Logger
}

// DefaultConfig is Kafka 4.0's defaults.
func DefaultConfig() Config {
	return Config{
		Partitions:                50,
		MinSessionTimeout:         6 * time.Second,
		MaxSessionTimeout:         30 * time.Minute,
		InitialRebalanceDelay:     3 * time.Second,
		MaxGroupSize:              math.MaxInt32,
		NewMemberJoinTimeout:      5 * time.Minute,
		OffsetsRetention:          7 * 24 * time.Hour,
		OffsetsRetentionCheck:     10 * time.Minute,
		OffsetMetadataMaxBytes:    4096,
		ConsumerSessionTimeout:    45 * time.Second,
		ConsumerHeartbeatInterval: 5 * time.Second,
		ConsumerMaxSize:           math.MaxInt32,
		ConsumerAssignors:         []string{"uniform", "range"},
		SnapshotMinBytes:          4 << 20,
	}
}

// Catalog is a view of the broker's topics for the coordinator: commits are
// checked against it and KIP-848 assignors assign its partitions.
type Catalog struct {
	// Version changes whenever the catalogue does.
	Version uint64
	ByName  map[string]*Topic
	ByID    map[[16]byte]*Topic
}

// Topic is one topic of the catalogue.
type Topic struct {
	Name       string
	ID         [16]byte
	Partitions int32
	Internal   bool
}

// Log is where the coordinator's records go: the partitions of
// __consumer_offsets.
type Log interface {
	// Append makes recs durable in partition p, after everything appended
	// to p before, then calls done with the offset of the first record, or
	// an error (a *kerr.Error carries the append's Kafka code). done must
	// be called later through the coordinator's owner, never from inside
	// Append, and in the order of the appends to p.
	Append(p int32, recs []Record, done func(base int64, err error))
	// Trim lets the log drop everything before offset in partition p: a
	// durable snapshot starting there repeats every live record.
	Trim(p int32, offset int64)
}

// Request is what the coordinator knows of the request it serves.
type Request struct {
	Now        time.Time
	Version    int16
	ClientID   string
	ClientHost string
}

// Coordinator is the group coordinator state machine. It is not safe for
// concurrent use: its owner serialises calls (including Log completions and
// Advance).
type Coordinator struct {
	cfg    Config
	log    Log
	logger *slog.Logger
	groups map[string]*Group
	// txnFence: per producer id, the highest epoch a transaction of it
	// was completed with here, and when; offsets committed in
	// transactions by an older epoch are a fenced producer's and are
	// refused. Entries go after txnFenceKept.
	txnFence map[int64]fence
	timers   timers
	parts    []*partitionState
}

// partitionState is the coordinator's view of one __consumer_offsets
// partition: whether it is loaded, and its live (compacted) records.
type partitionState struct {
	loaded bool
	*LiveLog
}

// New returns a coordinator whose partitions are all still loading.
func New(cfg Config, log Log, now time.Time) *Coordinator {
	def := DefaultConfig()
	if cfg.Partitions <= 0 {
		cfg.Partitions = 1
	}
	if cfg.MaxGroupSize <= 0 {
		cfg.MaxGroupSize = def.MaxGroupSize
	}
	if cfg.ConsumerMaxSize <= 0 {
		cfg.ConsumerMaxSize = def.ConsumerMaxSize
	}
	if cfg.NewMemberJoinTimeout <= 0 {
		cfg.NewMemberJoinTimeout = def.NewMemberJoinTimeout
	}
	if cfg.OffsetsRetentionCheck <= 0 {
		cfg.OffsetsRetentionCheck = def.OffsetsRetentionCheck
	}
	if cfg.ConsumerHeartbeatInterval <= 0 {
		cfg.ConsumerHeartbeatInterval = def.ConsumerHeartbeatInterval
	}
	if cfg.ConsumerSessionTimeout <= 0 {
		cfg.ConsumerSessionTimeout = def.ConsumerSessionTimeout
	}
	if len(cfg.ConsumerAssignors) == 0 {
		cfg.ConsumerAssignors = def.ConsumerAssignors
	}
	if cfg.Random == nil {
		cfg.Random = func(b []byte) { io.ReadFull(rand.Reader, b) }
	}
	if cfg.Topics == nil {
		cfg.Topics = func() *Catalog { return nil }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Coordinator{cfg: cfg, log: log, logger: cfg.Logger, groups: map[string]*Group{}, txnFence: map[int64]fence{}}
	for range cfg.Partitions {
		c.parts = append(c.parts, &partitionState{LiveLog: NewLiveLog()})
	}
	c.timers.set(timerKey{kind: timerOffsetExpiry}, now.Add(cfg.OffsetsRetentionCheck))
	return c
}

// Config returns the coordinator's effective configuration.
func (c *Coordinator) Config() Config { return c.cfg }

// partitionOf is the __consumer_offsets partition of a group.
func (c *Coordinator) partitionOf(groupID string) int32 {
	return PartitionFor(groupID, c.cfg.Partitions)
}

// Loaded reports whether partition p's state has been loaded.
func (c *Coordinator) Loaded(p int32) bool { return c.parts[p].loaded }

// loadingCode is COORDINATOR_LOAD_IN_PROGRESS while the group's partition
// is still being read at start-up.
func (c *Coordinator) loadingCode(groupID string) kerr.Code {
	if !c.parts[c.partitionOf(groupID)].loaded {
		return kerr.CoordinatorLoadInProgress
	}
	return kerr.None
}

// allLoaded reports whether every partition is loaded.
func (c *Coordinator) allLoaded() bool {
	for _, p := range c.parts {
		if !p.loaded {
			return false
		}
	}
	return true
}

// LoadPartition rebuilds partition p's groups and offsets from recs, the
// records read from its log in log order, and starts serving it. Members
// restored from the log get a full session from now.
func (c *Coordinator) LoadPartition(p int32, now time.Time, recs []Record) {
	ps := c.parts[p]
	ps.Load(recs, snapshotMarkerKey())
	// Groups first: offsets of a group attach to it whatever order the
	// records came in.
	keys := ps.SortedKeys()
	var offsets []recordKey
	for _, k := range keys {
		key, err := parseKey([]byte(k))
		if err != nil {
			c.logger.Warn("skipping a __consumer_offsets record", "partition", p, "err", err)
			continue
		}
		switch key.typ {
		case keyTypeGroup:
			g, err := decodeGroup(key.group, ps.Live[k])
			if err != nil {
				c.logger.Warn("skipping a group record", "partition", p, "group", key.group, "err", err)
				continue
			}
			g.partition = p
			c.groups[g.id] = g
			c.restoreTimers(g, now)
		case keyTypeOffset, keyTypeTxnOffset:
			offsets = append(offsets, key)
		}
	}
	for _, key := range offsets {
		k := offsetKey(key.group, key.topic, key.partition)
		if key.typ == keyTypeTxnOffset {
			k = txnOffsetKey(key.group, key.pid, key.epoch, key.topic, key.partition)
		}
		v, err := decodeOffset(ps.Live[string(k)])
		if err != nil {
			c.logger.Warn("skipping an offset record", "partition", p, "group", key.group, "err", err)
			continue
		}
		g := c.groups[key.group]
		if g == nil {
			// Offsets without a group record: a simple (standalone) group.
			g = newGroupValue(key.group, kindClassic)
			g.partition = p
			g.stateTime = now
			c.groups[key.group] = g
		}
		if key.typ == keyTypeTxnOffset {
			g.addTxnOffset(key.pid, pendingOffset{topicPartition{key.topic, key.partition}, key.epoch}, v)
			continue
		}
		g.offsets[topicPartition{key.topic, key.partition}] = v
	}
	ps.loaded = true
	c.logger.Info("group coordinator partition loaded", "partition", p, "records", len(recs), "live", len(ps.Live))
}

// write appends recs to partition p and calls done once they are durable
// (err nil) or failed (LiveLog.Write), then snapshots the partition if one
// is due.
func (c *Coordinator) write(p int32, recs []Record, done func(err error)) {
	c.parts[p].Write(c.log, p, recs, done)
	c.parts[p].MaybeSnapshot(c.log, p, c.cfg.SnapshotMinBytes, func(n int) Record {
		return Record{Key: snapshotMarkerKey(), Value: snapshotMarkerValue(n)}
	}, c.logger)
}

// sameSlice reports whether a and b are the same bytes in memory.
func sameSlice(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// appendError maps a failed append to the code Kafka answers for group
// metadata writes.
func appendError(err error) kerr.Code {
	switch code := kerr.FromError(err); code {
	case kerr.UnknownTopicOrPartition, kerr.NotEnoughReplicas, kerr.RequestTimedOut:
		return kerr.CoordinatorNotAvailable
	case kerr.NotLeaderOrFollower, kerr.KafkaStorageError:
		return kerr.NotCoordinator
	case kerr.MessageTooLarge, kerr.RecordListTooLarge, kerr.InvalidFetchSize:
		return kerr.UnknownServerError
	default:
		return code
	}
}

// commitError maps a failed append of offset commits to Kafka's code.
func commitError(err error) kerr.Code {
	switch code := kerr.FromError(err); code {
	case kerr.MessageTooLarge, kerr.RecordListTooLarge, kerr.InvalidFetchSize:
		return kerr.InvalidCommitOffsetSize
	default:
		return appendError(err)
	}
}

// maxTimersPerAdvance bounds the deadlines one Advance fires.
const maxTimersPerAdvance = 100_000

// NextDeadline is the earliest time Advance has work to do.
func (c *Coordinator) NextDeadline() (time.Time, bool) { return c.timers.next() }

// Advance fires every deadline at or before now, in order: session and
// rebalance timeouts, the end of join phases, pending-sync expiry, offset
// retention. Each fires at its own time (what it schedules is relative to
// its deadline), so one large step gives the same result as many small
// ones.
func (c *Coordinator) Advance(until time.Time) {
	for fired := 0; ; fired++ {
		if fired == maxTimersPerAdvance {
			// A deadline that keeps re-arming itself in the past would
			// hold the coordinator forever: yield, the caller comes back.
			c.logger.Error("group coordinator: too many deadlines due at once; deferring the rest", "fired", fired)
			return
		}
		key, now, ok := c.timers.pop(until)
		if !ok {
			return
		}
		switch key.kind {
		case timerOffsetExpiry:
			c.timers.set(key, now.Add(c.cfg.OffsetsRetentionCheck))
			c.expireOffsets(now)
			continue
		}
		g := c.groups[key.group]
		if g == nil {
			continue
		}
		switch key.kind {
		case timerHeartbeat:
			c.expireClassicHeartbeat(g, key.member, now)
		case timerJoin:
			c.joinTimerFired(g, now)
		case timerSync:
			c.expirePendingSync(g, now)
		case timerConsumerSession:
			c.expireConsumerSession(g, key.member, now)
		case timerConsumerRebalance:
			c.consumerRebalanceTimeout(g, key.member, now)
		}
	}
}

// group returns a loaded group, or nil.
func (c *Coordinator) group(id string) *Group { return c.groups[id] }

// addGroup registers a new, empty group of kind.
func (c *Coordinator) addGroup(id string, kind groupKind, now time.Time) *Group {
	g := newGroupValue(id, kind)
	g.partition = c.partitionOf(id)
	g.stateTime = now
	c.groups[id] = g
	return g
}

// dropGroup forgets a group (its tombstones are the caller's to write) and
// cancels its timers.
func (c *Coordinator) dropGroup(g *Group) {
	if c.groups[g.id] == g {
		delete(c.groups, g.id)
	}
	g.dead = true
	c.timers.cancel(timerKey{kind: timerJoin, group: g.id})
	c.timers.cancel(timerKey{kind: timerSync, group: g.id})
	for _, m := range g.classic.members {
		c.timers.cancel(timerKey{kind: timerHeartbeat, group: g.id, member: m.id})
	}
	for id := range g.classic.pendingJoin {
		c.timers.cancel(timerKey{kind: timerHeartbeat, group: g.id, member: id})
	}
	if g.consumer != nil {
		for id := range g.consumer.members {
			c.timers.cancel(timerKey{kind: timerConsumerSession, group: g.id, member: id})
			c.timers.cancel(timerKey{kind: timerConsumerRebalance, group: g.id, member: id})
		}
	}
}

// groupTombstones is every record deleting g: its offsets and its metadata.
func groupTombstones(g *Group) []Record {
	recs := make([]Record, 0, len(g.offsets)+1)
	for _, tp := range g.sortedOffsets() {
		recs = append(recs, Record{Key: offsetKey(g.id, tp.topic, tp.partition)})
	}
	return append(recs, Record{Key: groupKey(g.id)})
}

// persistGroup writes g's metadata record and calls done once durable.
func (c *Coordinator) persistGroup(g *Group, done func(err error)) {
	c.write(g.partition, []Record{{Key: groupKey(g.id), Value: encodeGroup(g)}}, done)
}

// uuid4 is a random (version 4) UUID.
func (c *Coordinator) uuid4() [16]byte {
	var u [16]byte
	c.cfg.Random(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

// uuidString formats a UUID as Java's UUID.toString does.
func uuidString(u [16]byte) string {
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:])
}

// ValidGroupID is Kafka's rule for group ids: not empty.
func ValidGroupID(id string) bool { return id != "" }

// sameBytes compares byte slices treating nil and empty alike.
func sameBytes(a, b []byte) bool { return bytes.Equal(a, b) }

func strPtr(s string) *string { return &s }

func nullableString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
