// Package meta is the broker's topic catalogue: topic names and IDs, their
// partitions and the shard each partition is placed on, and per-topic config
// overrides. It is control-plane state, changed rarely and under a mutex; the
// data path reads immutable snapshots of it.
//
// On disk it is one JSON document, `topics.json` in the data directory,
// replaced atomically (write to a temporary file, fdatasync, rename, fsync the
// directory) on every change, so a crash leaves either the old or the new
// catalogue. The cluster identity lives beside it in `meta.properties`, as in
// Kafka's KRaft log directories.
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
}

// Errors returned by the store; the API layer maps them to Kafka codes.
var (
	ErrTopicExists  = errors.New("topic already exists")
	ErrUnknownTopic = errors.New("unknown topic")
)

type document struct {
	Topics []*Topic `json:"topics"`
}

// Open loads the catalogue from dir, creating it if absent. shards is the
// number of shards now running: partitions placed on a shard that no longer
// exists are re-placed on the least-loaded shard (and the change persisted).
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
	var doc document
	b, err := os.ReadFile(filepath.Join(dir, "topics.json"))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		if err := json.Unmarshal(b, &doc); err != nil {
			return nil, fmt.Errorf("topics.json: %w", err)
		}
	}
	snap := &Snapshot{Topics: map[string]*Topic{}, ByID: map[TopicID]*Topic{}}
	moved := false
	for _, t := range doc.Topics {
		snap.Topics[t.Name] = t
		snap.ByID[t.ID] = t
	}
	load := loadOf(snap, shards)
	for _, t := range doc.Topics {
		for i := range t.Partitions {
			if t.Partitions[i].Shard >= shards || t.Partitions[i].Shard < 0 {
				t.Partitions[i].Shard = leastLoaded(load)
				load[t.Partitions[i].Shard]++
				moved = true
			}
		}
	}
	s.current.Store(snap)
	if moved {
		if err := s.persist(snap); err != nil {
			return nil, err
		}
	}
	return s, nil
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
// next snapshot from the current one, which is persisted before it is
// published, so readers never see a change that a crash could undo.
func (s *Store) change(fn func(old *Snapshot) (*Snapshot, *Topic, error)) (*Topic, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next, t, err := fn(s.current.Load())
	if err != nil {
		return nil, err
	}
	if err := s.persist(next); err != nil {
		return nil, err
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
		next := &Snapshot{Topics: make(map[string]*Topic, len(old.Topics)), ByID: make(map[TopicID]*Topic, len(old.ByID))}
		for n, t := range old.Topics {
			if n != name {
				next.Topics[n] = t
				next.ByID[t.ID] = t
			}
		}
		return next, cur, nil
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

func (s *Store) persist(snap *Snapshot) error {
	doc := document{}
	for _, n := range snap.Names() {
		doc.Topics = append(doc.Topics, snap.Topics[n])
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(s.dir, "topics.json"), b)
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
