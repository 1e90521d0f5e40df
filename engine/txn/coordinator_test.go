package txn

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/sluice-broker/sluice/wire/kerr"
)

var t0 = time.Unix(1_700_000_000, 0)

// fakeLog keeps appends pending until the test completes them, in order,
// and keeps every partition's records as a log would.
type fakeLog struct {
	pending []pendingAppend
	logs    map[int32][]Record
	start   map[int32]int // trimmed: records before this index are gone
	fail    error         // the next completions fail with it
}

type pendingAppend struct {
	p    int32
	recs []Record
	done func(int64, error)
}

func newFakeLog() *fakeLog { return &fakeLog{logs: map[int32][]Record{}, start: map[int32]int{}} }

func (l *fakeLog) Append(p int32, recs []Record, done func(int64, error)) {
	l.pending = append(l.pending, pendingAppend{p, recs, done})
}

func (l *fakeLog) Trim(p int32, offset int64) { l.start[p] = int(offset) }

// flush completes every pending append (and what completions append).
func (l *fakeLog) flush() {
	for len(l.pending) > 0 {
		a := l.pending[0]
		l.pending = l.pending[1:]
		if l.fail != nil {
			a.done(-1, l.fail)
			continue
		}
		base := int64(len(l.logs[a.p]))
		l.logs[a.p] = append(l.logs[a.p], a.recs...)
		a.done(base, nil)
	}
}

// live returns partition p's records from its start, as a load reads them.
func (l *fakeLog) live(p int32) []Record { return l.logs[p][l.start[p]:] }

type markerWrite struct {
	pid    int64
	epoch  int16
	commit bool
	parts  []TopicPartition
	done   func(error)
}

type fakeMarkers struct{ writes []markerWrite }

func (m *fakeMarkers) Write(pid int64, epoch int16, commit bool, parts []TopicPartition, done func(error)) {
	m.writes = append(m.writes, markerWrite{pid, epoch, commit, parts, done})
}

// complete finishes the oldest marker write with err.
func (m *fakeMarkers) complete(t *testing.T, err error) markerWrite {
	t.Helper()
	if len(m.writes) == 0 {
		t.Fatal("no marker write pending")
	}
	w := m.writes[0]
	m.writes = m.writes[1:]
	w.done(err)
	return w
}

type rig struct {
	t       *testing.T
	log     *fakeLog
	markers *fakeMarkers
	c       *Coordinator
	nextPID int64
	now     time.Time
}

func newRig(t *testing.T) *rig {
	r := &rig{t: t, log: newFakeLog(), markers: &fakeMarkers{}, nextPID: 1000, now: t0}
	cfg := DefaultConfig()
	cfg.Partitions = 3
	cfg.SnapshotMinBytes = 1
	cfg.NewProducerID = func() (int64, error) { r.nextPID++; return r.nextPID, nil }
	r.c = New(cfg, r.log, r.markers, t0)
	for p := range cfg.Partitions {
		r.c.LoadPartition(p, t0, nil)
	}
	return r
}

type initAnswer struct {
	pid   int64
	epoch int16
	code  kerr.Code
}

// init runs InitProducerId and flushes the log.
func (r *rig) init(id string, timeout time.Duration, pid int64, epoch int16) initAnswer {
	var a *initAnswer
	r.c.InitProducerID(r.now, id, timeout, pid, epoch, func(pid int64, epoch int16, code kerr.Code) { a = &initAnswer{pid, epoch, code} })
	r.log.flush()
	if a == nil {
		r.t.Fatal("InitProducerId not answered")
	}
	return *a
}

func (r *rig) codeOf(call func(reply func(kerr.Code))) kerr.Code {
	r.t.Helper()
	var got *kerr.Code
	call(func(c kerr.Code) { got = &c })
	r.log.flush()
	if got == nil {
		r.t.Fatal("not answered")
	}
	return *got
}

func (r *rig) add(id string, a initAnswer, parts ...TopicPartition) kerr.Code {
	return r.codeOf(func(reply func(kerr.Code)) { r.c.AddPartitions(r.now, id, a.pid, a.epoch, parts, reply) })
}

func (r *rig) end(id string, a initAnswer, commit bool) kerr.Code {
	return r.codeOf(func(reply func(kerr.Code)) { r.c.EndTxn(r.now, id, a.pid, a.epoch, commit, reply) })
}

func (r *rig) state(id string) Txn {
	r.t.Helper()
	t, code := r.c.Describe(id)
	if code != kerr.None {
		r.t.Fatalf("describe %s: %v", id, code)
	}
	return t
}

var (
	tp0 = TopicPartition{"t", 0}
	tp1 = TopicPartition{"t", 1}
	off = TopicPartition{"__consumer_offsets", 7}
)

func TestCommitAndAbort(t *testing.T) {
	r := newRig(t)
	a := r.init("app", time.Minute, -1, -1)
	if a.code != kerr.None || a.pid != 1001 || a.epoch != 0 {
		t.Fatalf("InitProducerId: %+v", a)
	}
	if got := r.state("app"); got.State != Empty {
		t.Fatalf("after InitProducerId: %v", got.State)
	}
	if code := r.add("app", a, tp0, tp1); code != kerr.None {
		t.Fatal(code)
	}
	if code := r.add("app", a, off); code != kerr.None { // AddOffsetsToTxn
		t.Fatal(code)
	}
	if got := r.state("app"); got.State != Ongoing || len(got.Partitions) != 3 || !got.Start.Equal(t0) {
		t.Fatalf("after adding partitions: %+v", got)
	}
	if code := r.end("app", a, true); code != kerr.None {
		t.Fatal(code)
	}
	if got := r.state("app"); got.State != PrepareCommit {
		t.Fatalf("after EndTxn: %v, want PrepareCommit until the markers are written", got.State)
	}
	// While the markers are written the id is busy (AddPartitions waits:
	// TestNextTransactionWaitsForTheMarkers).
	if code := r.end("app", a, true); code != kerr.ConcurrentTransactions {
		t.Fatalf("EndTxn again while completing: %v", code)
	}
	w := r.markers.complete(t, nil)
	if !w.commit || w.pid != a.pid || w.epoch != a.epoch || !slices.Equal(w.parts, []TopicPartition{off, tp0, tp1}) {
		t.Fatalf("markers %+v", w)
	}
	r.log.flush()
	if got := r.state("app"); got.State != CompleteCommit || len(got.Partitions) != 0 {
		t.Fatalf("after the markers: %+v", got)
	}
	if code := r.end("app", a, true); code != kerr.None {
		t.Fatalf("a retried commit: %v", code)
	}
	if code := r.end("app", a, false); code != kerr.InvalidTxnState {
		t.Fatalf("abort after commit: %v", code)
	}

	// The next transaction, aborted.
	if code := r.add("app", a, tp1); code != kerr.None {
		t.Fatal(code)
	}
	if got := r.state("app"); len(got.Partitions) != 1 {
		t.Fatalf("a new transaction starts with no partition of the last: %+v", got.Partitions)
	}
	if code := r.end("app", a, false); code != kerr.None {
		t.Fatal(code)
	}
	if w := r.markers.complete(t, nil); w.commit {
		t.Fatal("commit markers for an abort")
	}
	r.log.flush()
	if got := r.state("app"); got.State != CompleteAbort {
		t.Fatalf("after abort: %v", got.State)
	}
	if code := r.end("app", a, false); code != kerr.None {
		t.Fatalf("a retried abort: %v", code)
	}
}

func TestRequestErrors(t *testing.T) {
	r := newRig(t)
	for _, timeout := range []time.Duration{0, -time.Second, 16 * time.Minute} {
		if a := r.init("x", timeout, -1, -1); a.code != kerr.InvalidTransactionTimeout {
			t.Errorf("timeout %v: %v", timeout, a.code)
		}
	}
	a := r.init("app", time.Minute, -1, -1)
	other := initAnswer{pid: a.pid + 1, epoch: a.epoch}
	old := initAnswer{pid: a.pid, epoch: a.epoch - 1}
	for _, c := range []struct {
		what string
		got  kerr.Code
		want kerr.Code
	}{
		{"AddPartitions on an unknown id", r.add("nobody", a, tp0), kerr.InvalidProducerIDMapping},
		{"AddPartitions with another producer id", r.add("app", other, tp0), kerr.InvalidProducerIDMapping},
		{"AddPartitions with an old epoch", r.add("app", old, tp0), kerr.ProducerFenced},
		{"EndTxn with nothing open", r.end("app", a, true), kerr.InvalidTxnState},
		{"EndTxn with an old epoch", r.end("app", old, false), kerr.ProducerFenced},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
		}
	}
	if got := r.state("app"); got.State != Empty || len(got.Partitions) != 0 {
		t.Fatalf("refused requests changed the state: %+v", got)
	}
	// A change being written: CONCURRENT_TRANSACTIONS.
	var first *kerr.Code
	r.c.AddPartitions(r.now, "app", a.pid, a.epoch, []TopicPartition{tp0}, func(c kerr.Code) { first = &c })
	if code := r.add("app", a, tp1); code != kerr.ConcurrentTransactions {
		t.Fatalf("a second change while one is written: %v", code)
	}
	if first == nil || *first != kerr.None {
		t.Fatalf("the first change: %v", first)
	}
	if _, code := r.c.Describe("nobody"); code != kerr.TransactionalIDNotFound {
		t.Fatalf("describe an unknown id: %v", code)
	}
	// KIP-360: an InitProducerId with a producer id and epoch that are not
	// the current ones is fenced.
	if b := r.init("app", time.Minute, a.pid, a.epoch+5); b.code != kerr.ProducerFenced {
		t.Fatalf("InitProducerId with a stale epoch: %+v", b)
	}
}

// A failed append changes nothing, and the request can be made again.
func TestFailedAppendChangesNothing(t *testing.T) {
	r := newRig(t)
	a := r.init("app", time.Minute, -1, -1)
	r.log.fail = errors.Join(kerr.New(kerr.NotEnoughReplicas, "standby out of sync"))
	if code := r.add("app", a, tp0); code != kerr.CoordinatorNotAvailable {
		t.Fatalf("AddPartitions with the append failing: %v", code)
	}
	r.log.fail = nil
	if got := r.state("app"); got.State != Empty || len(got.Partitions) != 0 {
		t.Fatalf("after a failed append: %+v", got)
	}
	if code := r.add("app", a, tp0); code != kerr.None {
		t.Fatal(code)
	}
}

// A new instance of a producer fences the old one: its open transaction
// is aborted with the epoch bumped, and the new one retries.
func TestNewInstanceFencesTheOld(t *testing.T) {
	r := newRig(t)
	old := r.init("app", time.Minute, -1, -1)
	if code := r.add("app", old, tp0); code != kerr.None {
		t.Fatal(code)
	}
	if a := r.init("app", time.Minute, -1, -1); a.code != kerr.ConcurrentTransactions {
		t.Fatalf("InitProducerId with a transaction open: %+v", a)
	}
	if got := r.state("app"); got.State != PrepareAbort || got.Epoch != old.epoch+1 {
		t.Fatalf("the old transaction: %+v, want PrepareAbort at epoch %d", got, old.epoch+1)
	}
	w := r.markers.complete(t, nil)
	if w.commit || w.epoch != old.epoch+1 {
		t.Fatalf("fencing markers %+v", w)
	}
	r.log.flush()
	if code := r.add("app", old, tp1); code != kerr.ProducerFenced {
		t.Fatalf("the old instance adds a partition: %v", code)
	}
	if code := r.end("app", old, true); code != kerr.ProducerFenced {
		t.Fatalf("the old instance commits: %v", code)
	}
	a := r.init("app", time.Minute, -1, -1)
	if a.code != kerr.None || a.pid != old.pid || a.epoch != old.epoch+2 {
		t.Fatalf("the retried InitProducerId: %+v", a)
	}
}

// A transaction past its timeout is aborted, its producer fenced.
func TestTimedOutTransactionIsAborted(t *testing.T) {
	r := newRig(t)
	a := r.init("app", 5*time.Second, -1, -1)
	if code := r.add("app", a, tp0); code != kerr.None {
		t.Fatal(code)
	}
	if d, _ := r.c.NextDeadline(); !d.Equal(t0.Add(10 * time.Second)) {
		t.Fatalf("next deadline %v", d)
	}
	r.now = t0.Add(10 * time.Second)
	r.c.Advance(r.now)
	r.log.flush()
	w := r.markers.complete(t, nil)
	if w.commit || w.epoch != a.epoch+1 || !slices.Equal(w.parts, []TopicPartition{tp0}) {
		t.Fatalf("timeout markers %+v", w)
	}
	r.log.flush()
	if got := r.state("app"); got.State != CompleteAbort {
		t.Fatalf("after the timeout: %v", got.State)
	}
	if code := r.end("app", a, true); code != kerr.ProducerFenced {
		t.Fatalf("commit after the timeout abort: %v", code)
	}
}

// Markers that fail are written again; the transaction completes then.
func TestMarkersRetried(t *testing.T) {
	r := newRig(t)
	a := r.init("app", time.Minute, -1, -1)
	r.add("app", a, tp0)
	r.end("app", a, true)
	r.markers.complete(t, kerr.New(kerr.NotLeaderOrFollower, "moved"))
	if got := r.state("app"); got.State != PrepareCommit {
		t.Fatalf("after failed markers: %v", got.State)
	}
	if d, _ := r.c.NextDeadline(); !d.Equal(t0.Add(time.Second)) {
		t.Fatalf("retry at %v", d)
	}
	r.now = t0.Add(time.Second)
	r.c.Advance(r.now)
	if w := r.markers.complete(t, nil); !w.commit {
		t.Fatal("the retry writes abort markers")
	}
	r.log.flush()
	if got := r.state("app"); got.State != CompleteCommit {
		t.Fatalf("after the retry: %v", got.State)
	}
}

// A coordinator that loads its log finds every transaction as it was; one
// decided but not complete gets its markers again and completes.
func TestLoadCompletesDecidedTransactions(t *testing.T) {
	r := newRig(t)
	a := r.init("decided", time.Minute, -1, -1)
	r.add("decided", a, tp0, tp1)
	r.end("decided", a, false) // PrepareAbort durable; markers never done
	b := r.init("open", time.Minute, -1, -1)
	r.add("open", b, tp1)
	for i := range 50 { // many changes: snapshots and trims
		c := r.init("busy", time.Minute, -1, -1)
		if c.epoch != int16(i) {
			t.Fatalf("busy: epoch %d, want %d", c.epoch, i)
		}
	}

	r2 := &rig{t: t, log: r.log, markers: &fakeMarkers{}, nextPID: 5000, now: t0.Add(time.Second)}
	cfg := r.c.Config()
	cfg.NewProducerID = func() (int64, error) { r2.nextPID++; return r2.nextPID, nil }
	r2.c = New(cfg, r.log, r2.markers, r2.now)
	trimmed := false
	for p := range cfg.Partitions {
		trimmed = trimmed || r.log.start[p] > 0
		r2.c.LoadPartition(p, r2.now, slices.Clone(r.log.live(p)))
	}
	if !trimmed {
		t.Fatal("50 changes trimmed no partition: the log is not kept bounded")
	}
	if got := r2.state("open"); got.State != Ongoing || got.ProducerID != b.pid || len(got.Partitions) != 1 {
		t.Fatalf("open after load: %+v", got)
	}
	if got := r2.state("busy"); got.Epoch != 49 {
		t.Fatalf("busy after load: epoch %d", got.Epoch)
	}
	w := r2.markers.complete(t, nil)
	if w.commit || w.pid != a.pid || !slices.Equal(w.parts, []TopicPartition{tp0, tp1}) {
		t.Fatalf("markers written at load: %+v", w)
	}
	r2.log.flush()
	if got := r2.state("decided"); got.State != CompleteAbort {
		t.Fatalf("decided after load: %v", got.State)
	}
}

// Idle transactional ids expire after transactional.id.expiration.ms.
func TestIdleIDsExpire(t *testing.T) {
	r := newRig(t)
	r.init("idle", time.Minute, -1, -1)
	a := r.init("open", 10*time.Minute, -1, -1)
	if code := r.add("open", a, tp0); code != kerr.None {
		t.Fatal(code)
	}
	r.now = t0.Add(7*24*time.Hour + time.Hour)
	r.c.Advance(r.now) // "open" is past its timeout too: aborted, not expired
	r.log.flush()
	if _, code := r.c.Describe("idle"); code != kerr.TransactionalIDNotFound {
		t.Fatalf("an idle id after expiry: %v", code)
	}
	if got := r.c.List(nil, nil); len(got) != 1 || got[0].ID != "open" {
		t.Fatalf("List after expiry: %+v", got)
	}
	if got := r.c.List([]State{Empty}, nil); len(got) != 0 {
		t.Fatalf("List Empty: %+v", got)
	}
}

// FuzzDecodeTxn: any bytes as a __transaction_state record decode without
// a panic, and what decodes survives an encode and a decode unchanged
// (encoding orders the partitions, so the first bytes may differ).
func FuzzDecodeTxn(f *testing.F) {
	txn := &Txn{ID: "app", ProducerID: 7, LastProducerID: -1, Epoch: 3, LastEpoch: 2, Timeout: time.Minute, State: Ongoing,
		Partitions: map[TopicPartition]struct{}{tp0: {}, off: {}}, Start: t0, Update: t0}
	f.Add(txnKey("app"), txn.encode())
	f.Add(snapshotMarkerKey(), snapshotMarkerValue(3))
	f.Fuzz(func(t *testing.T, key, value []byte) {
		parseKey(key)
		d, err := decodeTxn("id", value)
		if err != nil {
			return
		}
		enc := d.encode()
		d2, err := decodeTxn("id", enc)
		if err != nil {
			t.Fatalf("an encoded value does not decode: %v", err)
		}
		if again := d2.encode(); !slices.Equal(again, enc) {
			t.Fatalf("encode, decode, encode changed the value:\n%x\n%x", enc, again)
		}
	})
}

// The producer's next transaction, begun right after EndTxn while the
// markers are written, is served once they are, not refused.
func TestNextTransactionWaitsForTheMarkers(t *testing.T) {
	r := newRig(t)
	a := r.init("app", time.Minute, -1, -1)
	r.add("app", a, tp0)
	r.end("app", a, true)
	var got *kerr.Code
	r.c.AddPartitions(r.now, "app", a.pid, a.epoch, []TopicPartition{tp1}, func(c kerr.Code) { got = &c })
	r.log.flush()
	if got != nil {
		t.Fatalf("answered %v while the markers are written", *got)
	}
	r.markers.complete(t, nil)
	r.log.flush()
	if got == nil || *got != kerr.None {
		t.Fatalf("after the markers: %v", got)
	}
	if st := r.state("app"); st.State != Ongoing || len(st.Partitions) != 1 {
		t.Fatalf("the next transaction: %+v", st)
	}
	// Markers that fail: the parked request is refused, the client retries.
	r.end("app", a, false)
	got = nil
	r.c.AddPartitions(r.now, "app", a.pid, a.epoch, []TopicPartition{tp0}, func(c kerr.Code) { got = &c })
	r.markers.complete(t, kerr.New(kerr.NotLeaderOrFollower, "moved"))
	if got == nil || *got != kerr.ConcurrentTransactions {
		t.Fatalf("after failed markers: %v", got)
	}
}

// A producer being fenced is refused by Verify while the fencing abort is
// written, and its InitProducerId with its old epoch is not taken for a
// retry of that bump.
func TestFencedProducerStaysFenced(t *testing.T) {
	r := newRig(t)
	old := r.init("app", time.Minute, -1, -1)
	r.add("app", old, tp0)
	r.c.InitProducerID(r.now, "app", time.Minute, -1, -1, func(int64, int16, kerr.Code) {}) // a new instance: fencing abort starts
	if code := r.c.Verify("app", old.pid, old.epoch, tp0); code != kerr.ProducerFenced {
		t.Fatalf("Verify of the producer being fenced: %v", code)
	}
	r.log.flush()
	r.markers.complete(t, nil)
	r.log.flush()
	if a := r.init("app", time.Minute, old.pid, old.epoch); a.code != kerr.ProducerFenced {
		t.Fatalf("the fenced producer's InitProducerId with its old epoch: %+v", a)
	}
}

// KIP-360: an InitProducerId retried after its answer was lost gets the
// epoch the first attempt made, not a fence.
func TestInitProducerIDRetry(t *testing.T) {
	r := newRig(t)
	a := r.init("app", time.Minute, -1, -1)
	b := r.init("app", time.Minute, a.pid, a.epoch) // bumps to epoch 1
	if b.code != kerr.None || b.epoch != a.epoch+1 {
		t.Fatalf("bump: %+v", b)
	}
	again := r.init("app", time.Minute, a.pid, a.epoch) // the same request, retried
	if again.code != kerr.None || again.pid != b.pid || again.epoch != b.epoch {
		t.Fatalf("retry: %+v, want %+v", again, b)
	}
}
