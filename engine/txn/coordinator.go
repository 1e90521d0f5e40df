package txn

import (
	"log/slog"
	"math"
	"sort"
	"time"

	"github.com/sluice-broker/sluice/engine/group"
	"github.com/sluice-broker/sluice/wire/kerr"
)

// State is a transaction's state, as Kafka names them.
type State int8

const (
	Empty State = iota
	Ongoing
	PrepareCommit
	PrepareAbort
	CompleteCommit
	CompleteAbort
)

var stateNames = [...]string{"Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort"}

func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "Unknown"
}

// TopicPartition names a partition in a transaction.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// Txn is the state of one transactional id.
type Txn struct {
	ID             string
	ProducerID     int64
	LastProducerID int64
	Epoch          int16
	LastEpoch      int16
	Timeout        time.Duration
	State          State
	Partitions     map[TopicPartition]struct{}
	Start          time.Time // when it became Ongoing
	Update         time.Time // its last change

	// pending: a change is being written, or markers are; requests on
	// the id meanwhile get CONCURRENT_TRANSACTIONS.
	pending bool
	// fencing: an abort that bumps the epoch (abortFencing) is being
	// written; the producer it fences is refused meanwhile.
	fencing bool
	// retryAt: its markers failed; written again then.
	retryAt time.Time
	// parked: requests that came while its markers were being written
	// (the producer's next transaction right after EndTxn), run once it
	// completes.
	parked []parkedRequest
}

// parkedRequest is a request waiting for a transaction to complete: run
// serves it then; busy answers it CONCURRENT_TRANSACTIONS if the
// completion fails (its markers are retried later).
type parkedRequest struct{ run, busy func() }

// completing reports whether t's markers are being written: a request now
// is served once they are, rather than answered CONCURRENT_TRANSACTIONS.
// Kafka answers it so and the client retries after a backoff (20 ms and
// more); a sluice marker costs a datasync, so without this every
// transaction after the first would wait out that backoff.
func (t *Txn) completing() bool {
	return t.pending && (t.State == PrepareCommit || t.State == PrepareAbort)
}

// unpark runs (ok) or refuses the requests parked on t.
func (t *Txn) unpark(ok bool) {
	parked := t.parked
	t.parked = nil
	for _, p := range parked {
		if ok {
			p.run()
		} else {
			p.busy()
		}
	}
}

// Config holds the coordinator's settings, under their Kafka broker names.
type Config struct {
	Partitions        int32         // transaction.state.log.num.partitions
	MaxTimeout        time.Duration // transaction.max.timeout.ms
	AbortCheck        time.Duration // transaction.abort.timed.out.transaction.cleanup.interval.ms
	IDExpiration      time.Duration // transactional.id.expiration.ms
	IDExpirationCheck time.Duration // transaction.remove.expired.transaction.cleanup.interval.ms
	MarkerRetry       time.Duration // backoff before markers that failed are written again
	SnapshotMinBytes  int

	// NewProducerID hands out a producer id never given before.
	NewProducerID func() (int64, error)
	// PartitionOf is the __transaction_state partition of an id (default:
	// Kafka's abs(hashCode) % Partitions).
	PartitionOf func(id string) int32
	Logger      *slog.Logger
}

// DefaultConfig is Kafka 4's defaults.
func DefaultConfig() Config {
	return Config{
		Partitions:        50,
		MaxTimeout:        15 * time.Minute,
		AbortCheck:        10 * time.Second,
		IDExpiration:      7 * 24 * time.Hour,
		IDExpirationCheck: time.Hour,
		MarkerRetry:       time.Second,
		SnapshotMinBytes:  4 << 20,
	}
}

// Log is where the coordinator's records go: the partitions of
// __transaction_state. It is group.Log: done runs later, through the
// owner, in the order of the appends to p.
type Log = group.Log

// Markers writes transaction markers: a commit or abort marker of pid at
// epoch to every partition in parts, each acknowledged by the acks=all
// rule, then done (through the owner) with nil or the first failure.
type Markers interface {
	Write(pid int64, epoch int16, commit bool, parts []TopicPartition, done func(err error))
}

// Coordinator is the transaction coordinator state machine. It is not safe
// for concurrent use: its owner serialises calls (completions included).
type Coordinator struct {
	cfg     Config
	log     Log
	markers Markers
	logger  *slog.Logger
	txns    map[string]*Txn
	parts   []*partState
	now     time.Time // the latest time a call carried

	nextAbortCheck, nextExpiryCheck time.Time
}

// partState is one __transaction_state partition: loaded, and its live
// records (what compaction would keep).
type partState struct {
	loaded bool
	*group.LiveLog
}

// New returns a coordinator whose partitions are all still loading.
func New(cfg Config, log Log, markers Markers, now time.Time) *Coordinator {
	def := DefaultConfig()
	if cfg.Partitions <= 0 {
		cfg.Partitions = 1
	}
	for _, d := range []struct{ v, def *time.Duration }{
		{&cfg.MaxTimeout, &def.MaxTimeout}, {&cfg.AbortCheck, &def.AbortCheck}, {&cfg.IDExpiration, &def.IDExpiration},
		{&cfg.IDExpirationCheck, &def.IDExpirationCheck}, {&cfg.MarkerRetry, &def.MarkerRetry},
	} {
		if *d.v <= 0 {
			*d.v = *d.def
		}
	}
	if cfg.PartitionOf == nil {
		n := cfg.Partitions
		cfg.PartitionOf = func(id string) int32 { return group.PartitionFor(id, n) }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Coordinator{cfg: cfg, log: log, markers: markers, logger: cfg.Logger, txns: map[string]*Txn{}, now: now}
	for range cfg.Partitions {
		c.parts = append(c.parts, &partState{LiveLog: group.NewLiveLog()})
	}
	c.nextAbortCheck = now.Add(cfg.AbortCheck)
	c.nextExpiryCheck = now.Add(cfg.IDExpirationCheck)
	return c
}

// Config returns the effective configuration.
func (c *Coordinator) Config() Config { return c.cfg }

// PartitionOf is the __transaction_state partition of id.
func (c *Coordinator) PartitionOf(id string) int32 { return c.cfg.PartitionOf(id) }

// Loaded reports whether partition p is loaded.
func (c *Coordinator) Loaded(p int32) bool { return c.parts[p].loaded }

func (c *Coordinator) tick(now time.Time) {
	if now.After(c.now) {
		c.now = now
	}
}

// LoadPartition rebuilds partition p's transactions from recs, read from
// its log in order, and starts serving them. Transactions found decided
// but not complete get their markers written again.
func (c *Coordinator) LoadPartition(p int32, now time.Time, recs []Record) {
	c.tick(now)
	ps := c.parts[p]
	ps.Load(recs, snapshotMarkerKey())
	keys := ps.SortedKeys()
	for _, k := range keys {
		id, ok, err := parseKey([]byte(k))
		if err != nil || !ok {
			if err != nil {
				c.logger.Warn("skipping a __transaction_state record", "partition", p, "err", err)
			}
			continue
		}
		t, err := decodeTxn(id, ps.Live[k])
		if err != nil {
			c.logger.Warn("skipping a transaction record", "partition", p, "transactional_id", id, "err", err)
			continue
		}
		c.txns[id] = t
	}
	ps.loaded = true
	for _, k := range keys {
		id, _, _ := parseKey([]byte(k))
		if t := c.txns[id]; t != nil && (t.State == PrepareCommit || t.State == PrepareAbort) {
			c.writeMarkers(t)
		}
	}
	c.logger.Info("transaction coordinator partition loaded", "partition", p, "records", len(recs), "live", len(ps.Live))
}

// persist appends next as t's new state (nil: a tombstone) and calls done
// once it is durable or failed. t is pending meanwhile.
func (c *Coordinator) persist(t *Txn, next *Txn, done func(err error)) {
	p := c.PartitionOf(t.ID)
	var value []byte
	if next != nil {
		value = next.encode()
	}
	t.pending = true
	ps := c.parts[p]
	ps.Write(c.log, p, []Record{{Key: txnKey(t.ID), Value: value}}, func(err error) {
		t.pending = false
		done(err)
	})
	ps.MaybeSnapshot(c.log, p, c.cfg.SnapshotMinBytes, func(n int) Record {
		return Record{Key: snapshotMarkerKey(), Value: snapshotMarkerValue(n)}
	}, c.logger)
}

// appendError maps a failed append of the coordinator's state to the code
// Kafka answers (the client retries, finding the coordinator again).
func appendError(err error) kerr.Code {
	switch code := kerr.FromError(err); code {
	case kerr.UnknownTopicOrPartition, kerr.NotEnoughReplicas, kerr.NotEnoughReplicasAfterAppend, kerr.RequestTimedOut:
		return kerr.CoordinatorNotAvailable
	case kerr.NotLeaderOrFollower, kerr.KafkaStorageError:
		return kerr.NotCoordinator
	default:
		return kerr.UnknownServerError
	}
}

// clone copies t's durable state, to describe a change before it is made.
func (t *Txn) clone() *Txn {
	n := *t
	n.Partitions = make(map[TopicPartition]struct{}, len(t.Partitions))
	for p := range t.Partitions {
		n.Partitions[p] = struct{}{}
	}
	return &n
}

// adopt makes t's durable state that of n, once n's record is durable.
func (t *Txn) adopt(n *Txn) {
	t.ProducerID, t.LastProducerID, t.Epoch, t.LastEpoch = n.ProducerID, n.LastProducerID, n.Epoch, n.LastEpoch
	t.Timeout, t.State, t.Partitions, t.Start, t.Update = n.Timeout, n.State, n.Partitions, n.Start, n.Update
}

// loading answers COORDINATOR_LOAD_IN_PROGRESS while id's partition loads.
func (c *Coordinator) loading(id string) bool { return !c.parts[c.PartitionOf(id)].loaded }

// InitProducerID answers InitProducerId for a transactional id: a producer
// id and a bumped epoch, fencing every older instance. producerID and
// epoch are what the client had (KIP-360; -1 for a new instance).
func (c *Coordinator) InitProducerID(now time.Time, id string, timeout time.Duration, producerID int64, epoch int16, reply func(pid int64, epoch int16, code kerr.Code)) {
	c.tick(now)
	fail := func(code kerr.Code) { reply(-1, -1, code) }
	switch {
	case id == "":
		fail(kerr.InvalidRequest)
		return
	case timeout <= 0 || timeout > c.cfg.MaxTimeout:
		fail(kerr.InvalidTransactionTimeout)
		return
	case c.loading(id):
		fail(kerr.CoordinatorLoadInProgress)
		return
	}
	t := c.txns[id]
	if t == nil {
		pid, err := c.cfg.NewProducerID()
		if err != nil {
			c.logger.Error("allocating a producer id", "err", err)
			fail(kerr.UnknownServerError)
			return
		}
		t = &Txn{ID: id, ProducerID: pid, LastProducerID: -1, Epoch: -1, LastEpoch: -1, Partitions: map[TopicPartition]struct{}{}}
		c.txns[id] = t
		next := t.clone()
		next.Epoch, next.Timeout, next.State, next.Update = 0, timeout, Empty, now
		c.persist(t, next, func(err error) {
			if err != nil {
				if t.State == Empty && t.Epoch < 0 {
					delete(c.txns, id) // never durable
				}
				fail(appendError(err))
				return
			}
			t.adopt(next)
			reply(t.ProducerID, t.Epoch, kerr.None)
		})
		return
	}
	if t.pending {
		fail(kerr.ConcurrentTransactions)
		return
	}
	if producerID >= 0 && (producerID != t.ProducerID || epoch != t.Epoch) {
		// KIP-360: the client's id and epoch must be the current ones,
		// unless this is a retry of the bump that made them current (its
		// answer was lost): then the current ones are the answer, as in
		// Kafka's prepareIncrementProducerEpoch.
		retry := t.LastEpoch >= 0 && (producerID == t.ProducerID && epoch == t.LastEpoch ||
			producerID == t.LastProducerID && epoch == t.LastEpoch && t.LastProducerID != t.ProducerID)
		if retry && (t.State == Empty || t.State == CompleteCommit || t.State == CompleteAbort) {
			reply(t.ProducerID, t.Epoch, kerr.None)
			return
		}
		fail(kerr.ProducerFenced)
		return
	}
	switch t.State {
	case PrepareCommit, PrepareAbort:
		fail(kerr.ConcurrentTransactions) // completing: the client retries
		return
	case Ongoing:
		// A new instance: abort its predecessor's transaction with the
		// epoch bumped (fencing it), and have the new one retry.
		c.abortFencing(t)
		fail(kerr.ConcurrentTransactions)
		return
	}
	next := t.clone()
	next.LastProducerID, next.LastEpoch = t.ProducerID, t.Epoch
	if producerID < 0 {
		next.LastEpoch = -1 // a new instance: nothing to recognise a retry by (Kafka's rule)
	}
	if t.Epoch >= math.MaxInt16-1 {
		// The epoch would run out: a new producer id (Kafka's rule).
		pid, err := c.cfg.NewProducerID()
		if err != nil {
			fail(kerr.UnknownServerError)
			return
		}
		next.ProducerID, next.Epoch = pid, 0
	} else {
		next.Epoch = t.Epoch + 1
	}
	next.Timeout, next.State, next.Update = timeout, Empty, now
	clear(next.Partitions)
	c.persist(t, next, func(err error) {
		if err != nil {
			fail(appendError(err))
			return
		}
		t.adopt(next)
		reply(t.ProducerID, t.Epoch, kerr.None)
	})
}

// check validates a request of producer (pid, epoch) on id: the codes
// Kafka gives before looking at the state.
func (c *Coordinator) check(id string, pid int64, epoch int16) (*Txn, kerr.Code) {
	if c.loading(id) {
		return nil, kerr.CoordinatorLoadInProgress
	}
	t := c.txns[id]
	switch {
	case t == nil || t.Epoch < 0 || t.ProducerID != pid:
		return nil, kerr.InvalidProducerIDMapping
	case epoch != t.Epoch:
		return nil, kerr.ProducerFenced
	case t.pending:
		return nil, kerr.ConcurrentTransactions
	}
	return t, kerr.None
}

// AddPartitions adds partitions to the producer's transaction
// (AddPartitionsToTxn, and AddOffsetsToTxn with the group's
// __consumer_offsets partition), opening it: answered once durable.
func (c *Coordinator) AddPartitions(now time.Time, id string, pid int64, epoch int16, parts []TopicPartition, reply func(kerr.Code)) {
	c.tick(now)
	t, code := c.check(id, pid, epoch)
	if code == kerr.ConcurrentTransactions {
		if busy := c.txns[id]; busy.completing() {
			busy.parked = append(busy.parked, parkedRequest{
				run:  func() { c.AddPartitions(c.now, id, pid, epoch, parts, reply) },
				busy: func() { reply(kerr.ConcurrentTransactions) },
			})
			return
		}
	}
	if code != kerr.None {
		reply(code)
		return
	}
	if t.State == PrepareCommit || t.State == PrepareAbort {
		reply(kerr.ConcurrentTransactions)
		return
	}
	if t.State == Ongoing {
		missing := false
		for _, p := range parts {
			if _, ok := t.Partitions[p]; !ok {
				missing = true
				break
			}
		}
		if !missing {
			reply(kerr.None)
			return
		}
	}
	next := t.clone()
	if t.State != Ongoing {
		clear(next.Partitions)
		next.Start = now
	}
	next.State, next.Update = Ongoing, now
	for _, p := range parts {
		next.Partitions[p] = struct{}{}
	}
	c.persist(t, next, func(err error) {
		if err != nil {
			reply(appendError(err))
			return
		}
		t.adopt(next)
		reply(kerr.None)
	})
}

// Verify answers whether partition p is in the producer's open transaction
// (KIP-890's check before a transactional produce is appended):
// INVALID_TXN_STATE if it is not.
//
// While the transaction is being changed it answers from its durable
// state (a partition being added is not in it yet), as Kafka's check
// does, except that a producer an abort in flight is fencing is refused
// (PRODUCER_FENCED) at once, as Kafka's PrepareEpochFence does.
func (c *Coordinator) Verify(id string, pid int64, epoch int16, p TopicPartition) kerr.Code {
	t, code := c.check(id, pid, epoch)
	if code == kerr.ConcurrentTransactions {
		t, code = c.txns[id], kerr.None
		if t.fencing {
			return kerr.ProducerFenced
		}
	}
	if code != kerr.None {
		return code
	}
	if _, ok := t.Partitions[p]; !ok || t.State != Ongoing {
		return kerr.InvalidTxnState
	}
	return kerr.None
}

// EndTxn commits or aborts the producer's transaction: answered once the
// decision (PrepareCommit or PrepareAbort) is durable; the markers follow,
// then CompleteCommit or CompleteAbort.
func (c *Coordinator) EndTxn(now time.Time, id string, pid int64, epoch int16, commit bool, reply func(kerr.Code)) {
	c.tick(now)
	t, code := c.check(id, pid, epoch)
	if code != kerr.None {
		reply(code)
		return
	}
	switch {
	case t.State == Ongoing:
	case t.State == CompleteCommit && commit, t.State == CompleteAbort && !commit:
		reply(kerr.None) // a retry of what is done
		return
	case t.State == PrepareCommit && commit, t.State == PrepareAbort && !commit:
		reply(kerr.ConcurrentTransactions)
		return
	default:
		reply(kerr.InvalidTxnState)
		return
	}
	next := t.clone()
	next.State, next.Update = PrepareAbort, now
	if commit {
		next.State = PrepareCommit
	}
	c.persist(t, next, func(err error) {
		if err != nil {
			reply(appendError(err))
			return
		}
		t.adopt(next)
		reply(kerr.None)
		c.writeMarkers(t)
	})
}

// abortFencing aborts t's open transaction with its epoch bumped, so its
// producer's next request is fenced: a new instance took its id, or the
// transaction outlived its timeout.
func (c *Coordinator) abortFencing(t *Txn) {
	next := t.clone()
	next.State, next.Update = PrepareAbort, c.now
	if t.Epoch < math.MaxInt16-1 {
		// LastEpoch -1, as Kafka's fencing and timeout aborts leave it:
		// the fenced producer's InitProducerId with its old epoch must not
		// pass for a retry of this bump.
		next.LastEpoch, next.Epoch = -1, t.Epoch+1
	}
	t.fencing = true
	c.persist(t, next, func(err error) {
		t.fencing = false
		if err != nil {
			c.logger.Warn("aborting a transaction: the decision could not be written; tried again later", "transactional_id", t.ID, "err", err)
			return
		}
		t.adopt(next)
		c.writeMarkers(t)
	})
}

// writeMarkers writes t's markers (it is PrepareCommit or PrepareAbort),
// then completes it; failed markers are written again after MarkerRetry.
func (c *Coordinator) writeMarkers(t *Txn) {
	commit := t.State == PrepareCommit
	t.pending = true
	t.retryAt = time.Time{}
	c.markers.Write(t.ProducerID, t.Epoch, commit, t.SortedPartitions(), func(err error) {
		t.pending = false
		if err != nil {
			c.logger.Warn("transaction markers not all written; trying again", "transactional_id", t.ID, "err", err)
			t.retryAt = c.now.Add(c.cfg.MarkerRetry)
			t.unpark(false)
			return
		}
		next := t.clone()
		next.State, next.Update = CompleteAbort, c.now
		if commit {
			next.State = CompleteCommit
		}
		clear(next.Partitions)
		c.persist(t, next, func(err error) {
			if err != nil {
				t.retryAt = c.now.Add(c.cfg.MarkerRetry) // the markers again, then this
				t.unpark(false)
				return
			}
			t.adopt(next)
			t.unpark(true)
		})
	})
}

// NextDeadline is the earliest time Advance has work to do (there is
// always one: the periodic checks).
func (c *Coordinator) NextDeadline() (time.Time, bool) {
	next := c.nextAbortCheck
	if c.nextExpiryCheck.Before(next) {
		next = c.nextExpiryCheck
	}
	for _, t := range c.txns {
		if !t.retryAt.IsZero() && t.retryAt.Before(next) {
			next = t.retryAt
		}
	}
	return next, true
}

// Advance does what is due at now: markers written again, transactions
// past their timeout aborted (epoch bumped), idle ids expired.
func (c *Coordinator) Advance(now time.Time) {
	c.tick(now)
	ids := make([]string, 0, len(c.txns))
	for id := range c.txns {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	abortCheck := !now.Before(c.nextAbortCheck)
	if abortCheck {
		c.nextAbortCheck = now.Add(c.cfg.AbortCheck)
	}
	expiryCheck := !now.Before(c.nextExpiryCheck)
	if expiryCheck {
		c.nextExpiryCheck = now.Add(c.cfg.IDExpirationCheck)
	}
	for _, id := range ids {
		t := c.txns[id]
		if t.pending || c.loading(id) {
			continue
		}
		switch {
		case !t.retryAt.IsZero() && !now.Before(t.retryAt):
			c.writeMarkers(t)
		case abortCheck && t.State == Ongoing && !now.Before(t.Start.Add(t.Timeout)):
			c.logger.Info("aborting a transaction past its timeout", "transactional_id", id, "timeout", t.Timeout)
			c.abortFencing(t)
		case expiryCheck && (t.State == Empty || t.State == CompleteCommit || t.State == CompleteAbort) &&
			!now.Before(t.Update.Add(c.cfg.IDExpiration)):
			c.persist(t, nil, func(err error) {
				if err == nil {
					delete(c.txns, id)
				}
			})
		}
	}
}

// Describe returns a copy of id's state (DescribeTransactions).
func (c *Coordinator) Describe(id string) (Txn, kerr.Code) {
	if c.loading(id) {
		return Txn{}, kerr.CoordinatorLoadInProgress
	}
	t := c.txns[id]
	if t == nil || t.Epoch < 0 {
		return Txn{}, kerr.TransactionalIDNotFound
	}
	return *t.clone(), kerr.None
}

// List returns the transactions in the given states (all when empty) and
// of the given producer ids (all when empty), ordered by id
// (ListTransactions).
func (c *Coordinator) List(states []State, pids []int64) []Txn {
	var out []Txn
	for _, t := range c.txns {
		if t.Epoch < 0 || len(states) > 0 && !contains(states, t.State) || len(pids) > 0 && !contains(pids, t.ProducerID) {
			continue
		}
		out = append(out, *t.clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func contains[T comparable](s []T, v T) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// ParseState returns the state Kafka names name.
func ParseState(name string) (State, bool) {
	for i, n := range stateNames {
		if n == name {
			return State(i), true
		}
	}
	return 0, false
}
