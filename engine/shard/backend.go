package shard

import (
	"io"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/sluice-broker/sluice/engine/storage"
)

// completion is the result of an asynchronous datasync.
type completion struct {
	tag uint64
	err error
	n   int // bytes written, for writes
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
	// write queues a write of buf (tail cache memory) to f at off, its
	// completion coming back with tag like a sync's. False when full.
	// With dsync the write is RWF_DSYNC: durable when it completes.
	write(f storage.File, buf []byte, off int64, dsync bool, tag uint64) bool
	// writev is write of several buffers (tail cache memory, at most
	// vectorMax) to consecutive bytes of f from off: one write, one
	// completion, one RWF_DSYNC. Only called when vectorMax is above 1.
	writev(f storage.File, bufs [][]byte, off int64, dsync bool, tag uint64) bool
	// vectorMax is how many buffers one writev takes; 1: no writev.
	vectorMax() int
	// read queues a read of f at off into buf (the shard's read slots),
	// its completion (n bytes, 0 at the end of the file) coming back with
	// tag. False when full.
	read(f storage.File, buf []byte, off int64, tag uint64) bool
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
	f     storage.File
	tag   uint64
	buf   []byte // a write when not nil
	off   int64
	dsync bool
	read  bool // buf is read into, not written
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
			var err error
			n := 0
			if j.read {
				n, err = readAt(j.f, j.buf, j.off)
			} else if j.buf != nil {
				n, err = writeDsync(j.f, j.buf, j.off, j.dsync)
				if err == nil && n < len(j.buf) {
					err = io.ErrShortWrite
				}
			} else {
				// storage.File.Datasync is a full fsync for directories.
				err = j.f.Datasync()
			}
			b.mu.Lock()
			b.done = append(b.done, completion{tag: j.tag, err: err, n: n})
			b.mu.Unlock()
			b.wake()
		case <-b.stop:
			return
		}
	}
}

func (b *plainBackend) sync(f storage.File, _ bool, tag uint64) bool {
	return b.queue(plainJob{f: f, tag: tag})
}

func (b *plainBackend) write(f storage.File, buf []byte, off int64, dsync bool, tag uint64) bool {
	return b.queue(plainJob{f: f, tag: tag, buf: buf, off: off, dsync: dsync})
}

func (b *plainBackend) writev(storage.File, [][]byte, int64, bool, uint64) bool {
	panic("shard: writev on the plain backend")
}

// vectorMax: the plain backend writes piece by piece (one pwritev2 each),
// as a fallback for machines without io_uring.
func (b *plainBackend) vectorMax() int { return 1 }

func (b *plainBackend) read(f storage.File, buf []byte, off int64, tag uint64) bool {
	return b.queue(plainJob{f: f, tag: tag, buf: buf, off: off, read: true})
}

// readAt reads buf at off like a read completion: a short count at the end
// of the file is no error.
func readAt(f storage.File, buf []byte, off int64) (int, error) {
	n, err := f.ReadAt(buf, off)
	if err == io.EOF {
		err = nil
	}
	return n, err
}

// writeDsync writes buf at off; with dsync it is durable on return
// (pwritev2 with RWF_DSYNC on an OS file, a datasync after it otherwise).
func writeDsync(f storage.File, buf []byte, off int64, dsync bool) (int, error) {
	if !dsync {
		return f.WriteAt(buf, off)
	}
	if fd := f.Fd(); fd >= 0 {
		for {
			n, err := unix.Pwritev2(fd, [][]byte{buf}, off, unix.RWF_DSYNC)
			if err != unix.EINTR {
				return n, err
			}
		}
	}
	n, err := f.WriteAt(buf, off)
	if err == nil {
		err = f.Datasync()
	}
	return n, err
}

func (b *plainBackend) queue(j plainJob) bool {
	select {
	case b.jobs <- j:
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
