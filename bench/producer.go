package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// recordHeaderBytes is the send-time-and-sequence header at the start of
// every value (see the package comment).
const recordHeaderBytes = 16

// stampedRecord is a pooled record with its intended send time. The stamp is
// the record's Context, so the promise finds it again without a map or an
// allocation; it embeds Background, so kgo never sees it cancelled.
type stampedRecord struct {
	rec   kgo.Record
	stamp sendStamp
}

type sendStamp struct {
	context.Context
	intended time.Time
	owner    *stampedRecord
}

// producer is one producing client with its send loop.
type producer struct {
	id       int
	client   *kgo.Client
	rate     float64 // records/s for this producer; 0 = as fast as possible
	topic    string
	size     int
	keys     *keySource
	rec      *recorder
	pool     sync.Pool
	seq      uint64
	measured time.Time // records intended before this are warm-up
	acked    *atomic.Int64
	errs     func(err error)
	inflight sync.WaitGroup
}

func producerOptions(w *Workload, bootstrap, topic string) ([]kgo.Opt, error) {
	codec, err := compressionCodec(w.Compression)
	if err != nil {
		return nil, err
	}
	acks := kgo.LeaderAck()
	switch w.Acks.Value() {
	case 0:
		acks = kgo.NoAck()
	case -1:
		acks = kgo.AllISRAcks()
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(bootstrap),
		kgo.ClientID("sluice-bench"),
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(acks),
		kgo.ProducerLinger(w.Linger.D()),
		kgo.ProducerBatchMaxBytes(int32(w.BatchSize)),
		kgo.ProducerBatchCompression(codec),
		kgo.MaxBufferedRecords(w.MaxBufferedRecords),
		// A broker that stops answering fails records after this long instead
		// of hanging the run forever.
		kgo.RecordDeliveryTimeout(30 * time.Second),
	}
	if !w.Idempotence {
		opts = append(opts, kgo.DisableIdempotentWrite(), kgo.MaxProduceRequestsInflightPerBroker(w.MaxInFlight))
	}
	return opts, nil
}

func compressionCodec(name string) (kgo.CompressionCodec, error) {
	switch name {
	case "none", "":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.NoCompression(), fmt.Errorf("unknown compression %q", name)
}

func (p *producer) get() *stampedRecord {
	if v := p.pool.Get(); v != nil {
		return v.(*stampedRecord)
	}
	s := &stampedRecord{}
	s.stamp.Context = context.Background()
	s.stamp.owner = s
	s.rec.Value = make([]byte, p.size)
	// Pseudo-random payload, different per buffer: compression sees data
	// about as compressible as real encrypted or binary payloads (not very).
	fillRandom(s.rec.Value, uint64(p.id)<<32|p.seq)
	return s
}

func fillRandom(b []byte, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 0x736c75696365))
	for i := 0; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	for i := len(b) &^ 7; i < len(b); i++ {
		b[i] = byte(r.Uint32())
	}
}

// send produces one record intended to go out at intended.
func (p *producer) send(intended time.Time) {
	s := p.get()
	r := &s.rec
	r.Topic = p.topic
	r.Key = p.keys.next()
	r.Partition = 0
	r.Offset = 0
	r.Headers = nil
	r.Timestamp = intended
	r.Context = &s.stamp
	s.stamp.intended = intended
	if len(r.Value) >= recordHeaderBytes {
		binary.BigEndian.PutUint64(r.Value[0:8], uint64(intended.UnixNano()))
		binary.BigEndian.PutUint64(r.Value[8:16], uint64(p.id)<<40|p.seq)
	}
	p.seq++
	p.inflight.Add(1)
	p.client.Produce(context.Background(), r, p.promise)
}

func (p *producer) promise(r *kgo.Record, err error) {
	now := time.Now()
	stamp := r.Context.(*sendStamp)
	if err != nil {
		p.rec.failed()
		p.errs(err)
	} else {
		p.acked.Add(1)
		latency := time.Duration(-1)
		if !stamp.intended.Before(p.measured) {
			latency = now.Sub(stamp.intended)
		}
		p.rec.done(r.Partition, len(r.Value)+len(r.Key), latency)
	}
	r.Key = nil
	p.pool.Put(stamp.owner)
	p.inflight.Done()
}

// loop sends until stop is closed or end is reached. With a rate, each
// record has an intended send time on a fixed schedule from start; a loop
// that falls behind sends the overdue records at once (their latency counts
// from when they were due). Without a rate, it sends as fast as Produce
// accepts records (Produce blocks while the client's buffer is full).
func (p *producer) loop(start, end time.Time, stop <-chan struct{}) {
	if p.rate <= 0 {
		for i := 0; ; i++ {
			if i&63 == 0 {
				select {
				case <-stop:
					return
				default:
				}
			}
			now := time.Now()
			if !now.Before(end) {
				return
			}
			p.send(now)
		}
	}
	step := float64(time.Second) / p.rate
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for i := int64(0); ; i++ {
		intended := start.Add(time.Duration(float64(i) * step))
		if !intended.Before(end) {
			return
		}
		if wait := time.Until(intended); wait > 0 {
			timer.Reset(wait)
			select {
			case <-stop:
				return
			case <-timer.C:
			}
		} else if i&63 == 0 {
			select {
			case <-stop:
				return
			default:
			}
		}
		p.send(intended)
	}
}

// keySource draws keys from the workload's distribution. Not safe for
// concurrent use: each producer has its own.
type keySource struct {
	kind Keys
	keys [][]byte
	rng  *rand.Rand
	zipf *rand.Zipf
}

func newKeySource(w *Workload, seed uint64) *keySource {
	k := &keySource{kind: w.Keys}
	if w.Keys == KeysNone {
		return k
	}
	k.keys = make([][]byte, w.KeyCount)
	for i := range k.keys {
		k.keys[i] = []byte(fmt.Sprintf("key-%08d", i))
	}
	k.rng = rand.New(rand.NewPCG(seed, 0x6b657973))
	if w.Keys == KeysSkewed {
		k.zipf = rand.NewZipf(k.rng, w.KeySkew, 1, uint64(w.KeyCount-1))
	}
	return k
}

func (k *keySource) next() []byte {
	switch k.kind {
	case KeysUniform:
		return k.keys[k.rng.IntN(len(k.keys))]
	case KeysSkewed:
		return k.keys[k.zipf.Uint64()]
	}
	return nil
}
