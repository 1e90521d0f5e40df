package shard

import (
	"sync"

	"github.com/sluice-broker/sluice/engine/storage"
)

// completion is the result of an asynchronous datasync.
type completion struct {
	tag uint64
	err error
}

// backend is how a shard sleeps, is woken, and runs datasyncs without
// blocking itself: io_uring (the production one) or plain syscalls on a
// helper goroutine where io_uring is unavailable.
type backend interface {
	// sync queues an fdatasync of f (a full fsync when datasync is false:
	// directories); its completion comes back from poll/wait with tag. It
	// returns false when the backend cannot take more now; the shard
	// retries on a later turn.
	sync(f storage.File, datasync bool, tag uint64) bool
	// poll returns completions that are ready, appending to dst, without
	// blocking.
	poll(dst []completion) []completion
	// wait blocks until at least one completion or a doorbell ring.
	wait(dst []completion) []completion
	// wake wakes the shard; callable from any goroutine.
	wake()
	close()
	name() string
	stats() (submitted, completed uint64)
}

// plainBackend runs datasyncs on one helper goroutine per shard and sleeps
// on a channel.
type plainBackend struct {
	bell  chan struct{}
	jobs  chan plainJob
	mu    sync.Mutex
	done  []completion
	stop  chan struct{}
	wg    sync.WaitGroup
	count struct {
		mu                   sync.Mutex
		submitted, completed uint64
	}
}

type plainJob struct {
	f   storage.File
	tag uint64
}

func newPlainBackend() *plainBackend {
	b := &plainBackend{bell: make(chan struct{}, 1), jobs: make(chan plainJob, 1024), stop: make(chan struct{})}
	b.wg.Add(1)
	go b.syncer()
	return b
}

func (b *plainBackend) syncer() {
	defer b.wg.Done()
	for {
		select {
		case j := <-b.jobs:
			// storage.File.Datasync is a full fsync for directories.
			err := j.f.Datasync()
			b.mu.Lock()
			b.done = append(b.done, completion{tag: j.tag, err: err})
			b.mu.Unlock()
			b.wake()
		case <-b.stop:
			return
		}
	}
}

func (b *plainBackend) sync(f storage.File, _ bool, tag uint64) bool {
	select {
	case b.jobs <- plainJob{f, tag}:
		b.count.mu.Lock()
		b.count.submitted++
		b.count.mu.Unlock()
		return true
	default:
		return false
	}
}

func (b *plainBackend) poll(dst []completion) []completion {
	b.mu.Lock()
	n := len(b.done)
	dst = append(dst, b.done...)
	b.done = b.done[:0]
	b.mu.Unlock()
	b.count.mu.Lock()
	b.count.completed += uint64(n)
	b.count.mu.Unlock()
	return dst
}

func (b *plainBackend) wait(dst []completion) []completion {
	<-b.bell
	return b.poll(dst)
}

func (b *plainBackend) wake() {
	select {
	case b.bell <- struct{}{}:
	default:
	}
}

func (b *plainBackend) close() {
	close(b.stop)
	b.wg.Wait()
}

func (b *plainBackend) name() string { return "plain syscalls" }

func (b *plainBackend) stats() (uint64, uint64) {
	b.count.mu.Lock()
	defer b.count.mu.Unlock()
	return b.count.submitted, b.count.completed
}
