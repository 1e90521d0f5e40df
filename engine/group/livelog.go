package group

import (
	"bytes"
	"log/slog"
	"sort"
)

// LiveLog is one partition of a coordinator's log as a compacted log would
// keep it: the latest value of every key (a nil value removes the key).
// Both coordinators (this package's and engine/txn's) keep their logs
// bounded with it: once the bytes appended since the last snapshot exceed
// both a minimum and the live set, the live set is appended again after a
// marker and, once that is durable, the log is trimmed before the marker
// (see the package documentation, "Durability").
type LiveLog struct {
	Live         map[string][]byte
	bytes        int // of the live set, with recordOverhead per record
	since        int // appended since the last snapshot began
	snapshotting bool
}

// recordOverhead approximates a record's framing in a batch.
const recordOverhead = 16

// NewLiveLog returns an empty live log.
func NewLiveLog() *LiveLog { return &LiveLog{Live: map[string][]byte{}} }

// Load sets the live set from recs, the records read from the log in
// order (the snapshot marker, which isMarker recognises, carries none);
// a snapshot is due once as much again is appended.
func (l *LiveLog) Load(recs []Record, marker []byte) {
	for _, r := range recs {
		if !bytes.Equal(r.Key, marker) {
			l.set(string(r.Key), r.Value)
		}
	}
	l.since = l.bytes
}

// SortedKeys returns the live keys in order.
func (l *LiveLog) SortedKeys() []string {
	keys := make([]string, 0, len(l.Live))
	for k := range l.Live {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (l *LiveLog) set(key string, value []byte) {
	if old, ok := l.Live[key]; ok {
		l.bytes -= len(key) + len(old) + recordOverhead
		delete(l.Live, key)
	}
	if value != nil {
		l.Live[key] = value
		l.bytes += len(key) + len(value) + recordOverhead
	}
}

// Write appends recs to partition p of log and calls done (if not nil)
// once they are durable or failed. The live set changes at once, so a
// snapshot taken meanwhile repeats these records; a failed append's
// records are undone where no later write changed them since, so that
// what was refused (a record too large, a failed disk) does not come
// back in a snapshot.
func (l *LiveLog) Write(log Log, p int32, recs []Record, done func(err error)) {
	type undo struct {
		key  string
		prev []byte
		had  bool
	}
	undos := make([]undo, 0, len(recs))
	for _, r := range recs {
		key := string(r.Key)
		prev, had := l.Live[key]
		undos = append(undos, undo{key, prev, had})
		l.set(key, r.Value)
		l.since += len(r.Key) + len(r.Value) + recordOverhead
	}
	log.Append(p, recs, func(_ int64, err error) {
		if err != nil {
			for i := len(undos) - 1; i >= 0; i-- {
				u, r := undos[i], recs[i]
				cur, ok := l.Live[u.key]
				if ok != (r.Value != nil) || ok && !sameSlice(cur, r.Value) {
					continue
				}
				if u.had {
					l.set(u.key, u.prev)
				} else {
					l.set(u.key, nil)
				}
			}
		}
		if done != nil {
			done(err)
		}
	})
}

// MaybeSnapshot appends the live set after marker(live records) to
// partition p once the log has grown past both minBytes and the live set
// since the last snapshot, and trims the log before it once it is
// durable. The marker comes first, so the snapshot starts at a record even
// when nothing is live (the log then holds only tombstones to drop).
func (l *LiveLog) MaybeSnapshot(log Log, p int32, minBytes int, marker func(records int) Record, logger *slog.Logger) {
	if l.snapshotting || l.since < minBytes || l.since < l.bytes {
		return
	}
	keys := l.SortedKeys()
	recs := make([]Record, 0, len(keys)+1)
	recs = append(recs, marker(len(keys)))
	for _, k := range keys {
		recs = append(recs, Record{Key: []byte(k), Value: l.Live[k]})
	}
	l.snapshotting = true
	l.since = 0
	log.Append(p, recs, func(base int64, err error) {
		l.snapshotting = false
		if err != nil {
			logger.Warn("coordinator log snapshot failed", "partition", p, "err", err)
			return
		}
		log.Trim(p, base)
	})
}
