package group

import (
	"container/heap"
	"time"
)

// timerKind names what a deadline is for.
type timerKind uint8

const (
	timerHeartbeat         timerKind = iota // classic member session (or new-member join) expiry
	timerJoin                               // classic group: end of the join phase
	timerSync                               // classic group: members that did not SyncGroup in time
	timerConsumerSession                    // KIP-848 member session expiry
	timerConsumerRebalance                  // KIP-848 member did not revoke in time
	timerOffsetExpiry                       // offsets.retention.check.interval.ms
)

type timerKey struct {
	kind   timerKind
	group  string
	member string
}

// timers is a set of keyed deadlines: setting a key replaces its previous
// deadline. Cancelled and replaced entries stay in the heap and are skipped
// when they surface (lazy deletion), so set and cancel are O(log n) and O(1).
type timers struct {
	current map[timerKey]uint64 // key -> sequence number of its live entry
	heap    timerHeap
	seq     uint64
}

type timerEntry struct {
	at  time.Time
	key timerKey
	seq uint64
}

type timerHeap []timerEntry

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h timerHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)   { *h = append(*h, x.(timerEntry)) }
func (h *timerHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

func (t *timers) set(key timerKey, at time.Time) {
	if t.current == nil {
		t.current = map[timerKey]uint64{}
	}
	t.seq++
	t.current[key] = t.seq
	heap.Push(&t.heap, timerEntry{at: at, key: key, seq: t.seq})
	// Keep the heap from filling with dead entries when one key is reset
	// over and over (every heartbeat resets its member's deadline).
	if len(t.heap) > 64 && len(t.heap) > 4*len(t.current) {
		t.compact()
	}
}

func (t *timers) cancel(key timerKey) { delete(t.current, key) }

func (t *timers) has(key timerKey) bool {
	_, ok := t.current[key]
	return ok
}

// next is the earliest live deadline.
func (t *timers) next() (time.Time, bool) {
	t.dropDead()
	if len(t.heap) == 0 {
		return time.Time{}, false
	}
	return t.heap[0].at, true
}

// pop removes and returns the earliest live deadline at or before now,
// with its time.
func (t *timers) pop(now time.Time) (timerKey, time.Time, bool) {
	t.dropDead()
	if len(t.heap) == 0 || t.heap[0].at.After(now) {
		return timerKey{}, time.Time{}, false
	}
	e := heap.Pop(&t.heap).(timerEntry)
	delete(t.current, e.key)
	return e.key, e.at, true
}

func (t *timers) dropDead() {
	for len(t.heap) > 0 {
		e := t.heap[0]
		if seq, ok := t.current[e.key]; ok && seq == e.seq {
			return
		}
		heap.Pop(&t.heap)
	}
}

func (t *timers) compact() {
	live := t.heap[:0]
	for _, e := range t.heap {
		if seq, ok := t.current[e.key]; ok && seq == e.seq {
			live = append(live, e)
		}
	}
	clear(t.heap[len(live):])
	t.heap = live
	heap.Init(&t.heap)
}
