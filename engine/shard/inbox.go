package shard

import (
	"sync"
	"sync/atomic"
)

// Op is work run on a shard's own thread. It may touch the shard's
// partitions freely; it must not block.
type Op func(s *Shard)

// inbox is the shard's bounded multi-producer, single-consumer queue. Senders
// take a slot (blocking while the shard is full: back-pressure, memory never
// grows without bound), append under a short lock, and ring the doorbell only
// when the shard has said it is going to sleep.
type inbox struct {
	slots chan struct{} // one token per queued op
	mu    sync.Mutex
	ops   []Op
	spare []Op
	depth atomic.Int64
}

func newInbox(capacity int) *inbox {
	return &inbox{slots: make(chan struct{}, capacity), ops: make([]Op, 0, capacity), spare: make([]Op, 0, capacity)}
}

func (q *inbox) push(op Op) {
	q.slots <- struct{}{}
	q.mu.Lock()
	q.ops = append(q.ops, op)
	q.mu.Unlock()
	q.depth.Add(1)
}

// take swaps out everything queued. The caller calls release with the count
// once the ops have run.
func (q *inbox) take() []Op {
	q.mu.Lock()
	ops := q.ops
	q.ops = q.spare[:0]
	q.mu.Unlock()
	q.spare = nil
	return ops
}

func (q *inbox) release(ops []Op) {
	for i := range ops {
		ops[i] = nil
		<-q.slots
	}
	q.depth.Add(-int64(len(ops)))
	q.spare = ops[:0]
}

func (q *inbox) empty() bool { return q.depth.Load() == 0 }
