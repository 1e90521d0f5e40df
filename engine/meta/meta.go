// Package meta is the broker's topic catalogue: topic names and IDs, their
// partitions and the shard each partition is placed on, and per-topic config
// overrides. It is control-plane state, changed rarely and under a mutex; the
// data path reads immutable snapshots of it.
//
// It is kept in a log, the __cluster_metadata partition (Kafka KRaft's name
// for its metadata log), one record per change: the topic's name as key, its
// ID, partition count, configs and internal flag as value, or no value when
// it is deleted. A primary appends each change durably (through its
// Journal) before publishing it; a standby follows that partition like any
// other and replays it, so both nodes hold the same catalogue. Placement on
// shards is local: replaying the records in order with this node's shard
// count places every partition on the least-loaded shard, the same way each
// time, so a restart does not move them. The cluster identity lives beside
// it in `meta.properties`, as in Kafka's KRaft log directories. Catalogues
// of earlier versions (topics.json) are migrated into the log once.
package meta

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// TopicID is a Kafka topic UUID.
type TopicID [16]byte

// IsZero reports the all-zero ID (no ID).
func (id TopicID) IsZero() bool { return id == TopicID{} }

// String renders the ID as Kafka does (URL-safe base64 without padding).
func (id TopicID) String() string { return base64.RawURLEncoding.EncodeToString(id[:]) }

// Partition is one partition's placement.
type Partition struct {
	Index int32 `json:"index"`
	Shard int   `json:"shard"`
}

// Topic is one topic in the catalogue. Values are immutable once published:
// changes copy.
type Topic struct {
	Name       string            `json:"name"`
	ID         TopicID           `json:"id"`
	Partitions []Partition       `json:"partitions"`
	Configs    map[string]string `json:"configs,omitempty"`
	Internal   bool              `json:"internal,omitempty"`
}

// Snapshot is an immutable view of the catalogue.
type Snapshot struct {
	Topics map[string]*Topic
	ByID   map[TopicID]*Topic
}

// Names returns the topic names in order.
func (s *Snapshot) Names() []string {
	names := make([]string, 0, len(s.Topics))
	for n := range s.Topics {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Store is the persisted catalogue.
type Store struct {
	dir       string
	shards    int
	clusterID string

	mu      sync.Mutex // serialises changes; readers use current
	current atomic.Pointer[Snapshot]
	// journal makes changes durable (the primary's metadata log); nil on
	// a standby, whose catalogue changes come from the log it follows.
	journal Journal
}

// Record is one catalogue change as stored in the metadata log: the topic
// name, and the topic's state (nil: deleted).
type Record struct {
	Key, Value []byte
}

// Journal appends records durably: the primary's metadata log.
type Journal interface {
	Append(recs []Record) error
}

// topicRecord is a record's value.
type topicRecord struct {
	ID         TopicID           `json:"id"`
	Partitions int32             `json:"partitions"`
	Configs    map[string]string `json:"configs,omitempty"`
	Internal   bool              `json:"internal,omitempty"`
}

// RecordOf encodes a topic's state (t nil: name deleted).
func RecordOf(name string, t *Topic) Record {
	r := Record{Key: []byte(name)}
	if t != nil {
		r.Value, _ = json.Marshal(topicRecord{ID: t.ID, Partitions: int32(len(t.Partitions)), Configs: t.Configs, Internal: t.Internal})
	}
	return r
}

// SetJournal makes later changes durable through j before they are
// published (nil: changes are kept in memory, a standby's).
func (s *Store) SetJournal(j Journal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.journal = j
}

// Replay rebuilds the catalogue from the metadata log's records, in order,
// placing partitions as they were added.
func (s *Store) Replay(recs []Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap, err := s.replay(recs)
	if err != nil {
		return err
	}
	s.current.Store(snap)
	return nil
}

// Desired replays recs into a catalogue without installing it: what a
// standby's catalogue should become.
func (s *Store) Desired(recs []Record) (*Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.replay(recs)
}

func (s *Store) replay(recs []Record) (*Snapshot, error) {
	snap := &Snapshot{Topics: map[string]*Topic{}, ByID: map[TopicID]*Topic{}}
	for i, r := range recs {
		name := string(r.Key)
		cur, exists := snap.Topics[name]
		if r.Value == nil {
			if exists {
				snap = snap.without(name)
			}
			continue
		}
		var tr topicRecord
		if err := json.Unmarshal(r.Value, &tr); err != nil {
			return nil, fmt.Errorf("metadata record %d (%s): %w", i, name, err)
		}
		if exists && cur.ID != tr.ID {
			snap = snap.without(name)
			exists = false
		}
		t := &Topic{Name: name, ID: tr.ID, Configs: tr.Configs, Internal: tr.Internal}
		have := int32(0)
		if exists {
			t.Partitions = append([]Partition(nil), cur.Partitions...)
			have = int32(len(cur.Partitions))
		}
		if tr.Partitions > have {
			s.place(snap, t, have, tr.Partitions)
		}
		snap = snap.with(t)
	}
	return snap, nil
}

func (old *Snapshot) without(name string) *Snapshot {
	next := &Snapshot{Topics: make(map[string]*Topic, len(old.Topics)), ByID: make(map[TopicID]*Topic, len(old.ByID))}
	for n, t := range old.Topics {
		if n != name {
			next.Topics[n] = t
			next.ByID[t.ID] = t
		}
	}
	return next
}

// Errors returned by the store; the API layer maps them to Kafka codes.
var (
	ErrTopicExists  = errors.New("topic already exists")
	ErrUnknownTopic = errors.New("unknown topic")
)

type document struct {
	Topics []*Topic `json:"topics"`
}

// Open opens the store in dir with an empty catalogue: the broker replays
// the metadata log into it (Replay). shards is the number of shards now
// running.
func Open(dir string, shards int, clusterID string) (*Store, error) {
	s := &Store{dir: dir, shards: shards}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	id, err := loadOrCreateClusterID(dir, clusterID)
	if err != nil {
		return nil, err
	}
	s.clusterID = id
	s.current.Store(&Snapshot{Topics: map[string]*Topic{}, ByID: map[TopicID]*Topic{}})
	return s, nil
}

// LegacyFile is the catalogue file of versions before the metadata log.
const LegacyFile = "topics.json"

// LegacyRecords reads a topics.json catalogue as metadata log records, in
// name order; ok is false when there is none.
func LegacyRecords(dir string) (recs []Record, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, LegacyFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	var doc document
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, false, fmt.Errorf("%s: %w", LegacyFile, err)
	}
	sort.Slice(doc.Topics, func(i, j int) bool { return doc.Topics[i].Name < doc.Topics[j].Name })
	for _, t := range doc.Topics {
		recs = append(recs, RecordOf(t.Name, t))
	}
	return recs, true, nil
}

// ClusterID is the cluster's identity, persisted in meta.properties.
func (s *Store) ClusterID() string { return s.clusterID }

// Snapshot returns the current catalogue.
func (s *Store) Snapshot() *Snapshot { return s.current.Load() }

// Topic returns one topic from the current catalogue.
func (s *Store) Topic(name string) (*Topic, bool) {
	t, ok := s.current.Load().Topics[name]
	return t, ok
}

func loadOf(snap *Snapshot, shards int) []int {
	load := make([]int, shards)
	for _, t := range snap.Topics {
		for _, p := range t.Partitions {
			if p.Shard >= 0 && p.Shard < shards {
				load[p.Shard]++
			}
		}
	}
	return load
}

func leastLoaded(load []int) int {
	best := 0
	for i, n := range load {
		if n < load[best] {
			best = i
		}
	}
	return best
}

// change applies one catalogue change under the store's lock: fn builds the
// next snapshot from the current one, which is journalled (the primary's
// metadata log) before it is published, so readers never see a change that
// a crash could undo. The record is the changed topic's state, in next, or
// its deletion.
func (s *Store) change(fn func(old *Snapshot) (*Snapshot, *Topic, error)) (*Topic, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next, t, err := fn(s.current.Load())
	if err != nil {
		return nil, err
	}
	if s.journal != nil {
		if err := s.journal.Append([]Record{RecordOf(t.Name, next.Topics[t.Name])}); err != nil {
			return nil, err
		}
	}
	s.current.Store(next)
	return t, nil
}

// place appends partitions first..total-1 to t, each on the least-loaded
// shard.
func (s *Store) place(old *Snapshot, t *Topic, first, total int32) {
	load := loadOf(old, s.shards)
	for i := first; i < total; i++ {
		sh := leastLoaded(load)
		load[sh]++
		t.Partitions = append(t.Partitions, Partition{Index: i, Shard: sh})
	}
}

// Create adds a topic with n partitions placed on the least-loaded shards.
func (s *Store) Create(name string, partitions int32, configs map[string]string, internal bool) (*Topic, error) {
	var id TopicID
	if _, err := rand.Read(id[:]); err != nil {
		return nil, err
	}
	return s.CreateWithID(name, id, partitions, configs, internal)
}

// CreateWithID is Create with the topic's ID given: a standby creates its
// primary's topics under their IDs.
func (s *Store) CreateWithID(name string, id TopicID, partitions int32, configs map[string]string, internal bool) (*Topic, error) {
	return s.change(func(old *Snapshot) (*Snapshot, *Topic, error) {
		if _, ok := old.Topics[name]; ok {
			return nil, nil, ErrTopicExists
		}
		if _, ok := old.ByID[id]; ok || id.IsZero() {
			return nil, nil, fmt.Errorf("topic id %s is zero or taken", id)
		}
		t := &Topic{Name: name, ID: id, Configs: configs, Internal: internal}
		s.place(old, t, 0, partitions)
		return old.with(t), t, nil
	})
}

// AddPartitions grows a topic to total partitions.
func (s *Store) AddPartitions(name string, total int32) (*Topic, error) {
	return s.change(func(old *Snapshot) (*Snapshot, *Topic, error) {
		cur, ok := old.Topics[name]
		if !ok {
			return nil, nil, ErrUnknownTopic
		}
		t := *cur
		t.Partitions = append([]Partition(nil), cur.Partitions...)
		s.place(old, &t, int32(len(cur.Partitions)), total)
		return old.with(&t), &t, nil
	})
}

// SetConfigs replaces a topic's config overrides.
func (s *Store) SetConfigs(name string, configs map[string]string) (*Topic, error) {
	return s.change(func(old *Snapshot) (*Snapshot, *Topic, error) {
		cur, ok := old.Topics[name]
		if !ok {
			return nil, nil, ErrUnknownTopic
		}
		t := *cur
		t.Configs = configs
		return old.with(&t), &t, nil
	})
}

// Delete removes a topic from the catalogue.
func (s *Store) Delete(name string) (*Topic, error) {
	return s.change(func(old *Snapshot) (*Snapshot, *Topic, error) {
		cur, ok := old.Topics[name]
		if !ok {
			return nil, nil, ErrUnknownTopic
		}
		return old.without(name), cur, nil
	})
}

func (old *Snapshot) with(t *Topic) *Snapshot {
	next := &Snapshot{Topics: make(map[string]*Topic, len(old.Topics)+1), ByID: make(map[TopicID]*Topic, len(old.ByID)+1)}
	for n, o := range old.Topics {
		next.Topics[n] = o
		next.ByID[o.ID] = o
	}
	next.Topics[t.Name] = t
	next.ByID[t.ID] = t
	return next
}

// WriteFileAtomic replaces path with data so that a crash leaves either the
// old or the new content.
func WriteFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	// On failure the old file stays, and the new one is removed: on a
	// full disk it must not hold the space the next try needs.
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ReadLeaderEpoch returns the node's leader epoch, recorded in
// leader-epoch in dir (0 when absent): the epoch of the pair it last
// belonged to as primary or standby. A promotion writes the next one
// before the new primary takes a write.
func ReadLeaderEpoch(dir string) (int32, error) {
	b, err := os.ReadFile(filepath.Join(dir, "leader-epoch"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	for _, line := range splitLines(string(b)) {
		if v, ok := strings.CutPrefix(line, "leader.epoch="); ok {
			n, err := strconv.ParseInt(v, 10, 32)
			if err != nil || n < 0 {
				return 0, fmt.Errorf("leader-epoch: bad value %q", v)
			}
			return int32(n), nil
		}
	}
	return 0, errors.New("leader-epoch: no leader.epoch line")
}

// WriteLeaderEpoch records the node's leader epoch durably.
func WriteLeaderEpoch(dir string, epoch int32) error {
	return WriteFileAtomic(filepath.Join(dir, "leader-epoch"), []byte(fmt.Sprintf("# written by sluice\nleader.epoch=%d\n", epoch)))
}

// ReadClusterID returns the cluster id recorded in dir, if any (a standby
// checks it against its primary's before it opens anything).
func ReadClusterID(dir string) (string, bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, "meta.properties"))
	if errors.Is(err, os.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	for _, line := range splitLines(string(b)) {
		if v, ok := strings.CutPrefix(line, "cluster.id="); ok {
			return v, true, nil
		}
	}
	return "", false, nil
}

// NewClusterID makes a random cluster id, as Kafka's storage tool does.
func NewClusterID() string {
	var raw [16]byte
	rand.Read(raw[:]) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

func loadOrCreateClusterID(dir, want string) (string, error) {
	path := filepath.Join(dir, "meta.properties")
	b, err := os.ReadFile(path)
	if err == nil {
		for _, line := range splitLines(string(b)) {
			if len(line) > len("cluster.id=") && line[:len("cluster.id=")] == "cluster.id=" {
				return line[len("cluster.id="):], nil
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	id := want
	if id == "" {
		id = NewClusterID()
	}
	content := "# written by sluice\nversion=1\ncluster.id=" + id + "\n"
	return id, WriteFileAtomic(path, []byte(content))
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}
