package e2e

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Bad input on raw TCP. Every expectation here was checked against Apache
// Kafka 4.3 (scripts/kafka-peer); where sluice is specified to answer
// differently the test says so. Throughout, a well-behaved franz-go client
// produces and consumes on its own connections, and must see no error.

// steadyTraffic is a franz-go producer and consumer running beside the
// abuse, on their own connections.
type steadyTraffic struct {
	topic   string
	stop    chan struct{}
	stopped chan struct{}

	mu       sync.Mutex
	acked    []int
	consumed []int
	errs     []error
}

func startSteadyTraffic(t *testing.T, b *Broker) *steadyTraffic {
	t.Helper()
	s := &steadyTraffic{topic: topicName(t, "steady"), stop: make(chan struct{}), stopped: make(chan struct{})}
	(&franzClient{b: b}).CreateTopic(t, s.topic, 1, nil)
	waitForTopic(t, b, s.topic, 1)
	producer := b.Client(t, kgo.DefaultProduceTopic(s.topic))
	consumer := b.Client(t,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{s.topic: {0: kgo.NewOffset().AtStart()}}),
		kgo.FetchMaxWait(100*time.Millisecond))
	// Bounded in time even if the test never calls finish.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)

	go func() {
		defer close(s.stopped)
		for i := 0; ; i++ {
			select {
			case <-s.stop:
				return
			case <-ctx.Done():
				return
			default:
			}
			pctx, pcancel := context.WithTimeout(ctx, 15*time.Second)
			err := producer.ProduceSync(pctx, &kgo.Record{Value: []byte(strconv.Itoa(i))}).FirstErr()
			pcancel()
			s.mu.Lock()
			if err != nil {
				s.errs = append(s.errs, fmt.Errorf("produce %d: %w", i, err))
			} else {
				s.acked = append(s.acked, i)
			}
			s.mu.Unlock()
			time.Sleep(5 * time.Millisecond) // pacing, not waiting for a condition
		}
	}()
	go func() {
		for ctx.Err() == nil {
			fs := consumer.PollFetches(ctx)
			s.mu.Lock()
			fs.EachError(func(_ string, _ int32, err error) {
				if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
					s.errs = append(s.errs, fmt.Errorf("consume: %w", err))
				}
			})
			fs.EachRecord(func(r *kgo.Record) {
				v, _ := strconv.Atoi(string(r.Value))
				s.consumed = append(s.consumed, v)
			})
			s.mu.Unlock()
		}
	}()
	return s
}

// finish stops producing and checks that the consumer saw every
// acknowledged record, in order, and that nothing failed.
func (s *steadyTraffic) finish(t *testing.T) {
	t.Helper()
	// Let it run on after the abuse: at least minSteadyRecords in all.
	const minSteadyRecords = 200
	deadline := time.Now().Add(20 * time.Second)
	for {
		s.mu.Lock()
		n := len(s.acked) + len(s.errs)
		s.mu.Unlock()
		if n >= minSteadyRecords || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	close(s.stop)
	<-s.stopped
	deadline = time.Now().Add(30 * time.Second)
	for {
		s.mu.Lock()
		acked, consumed := len(s.acked), len(s.consumed)
		s.mu.Unlock()
		if consumed >= acked || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, err := range s.errs {
		if i < 5 {
			t.Errorf("the well-behaved client failed: %v", err)
		}
	}
	if len(s.acked) < minSteadyRecords/2 {
		t.Errorf("the well-behaved client had only %d records acknowledged", len(s.acked))
	}
	if len(s.consumed) != len(s.acked) {
		t.Fatalf("the well-behaved client consumed %d records, %d were acknowledged", len(s.consumed), len(s.acked))
	}
	for i := range s.acked {
		if s.consumed[i] != s.acked[i] {
			t.Fatalf("the well-behaved client consumed %d at position %d, want %d", s.consumed[i], i, s.acked[i])
		}
	}
	t.Logf("the well-behaved client produced and consumed %d records meanwhile", len(s.acked))
}

// rawFrame builds a request frame by hand: size, request header (v1, or v2
// with an empty tag section when flexible), body.
func rawFrame(key, version int16, correlation int32, flexible bool, body []byte) []byte {
	const clientID = "sluice-e2e-raw"
	f := make([]byte, 4, 64+len(body))
	f = binary.BigEndian.AppendUint16(f, uint16(key))
	f = binary.BigEndian.AppendUint16(f, uint16(version))
	f = binary.BigEndian.AppendUint32(f, uint32(correlation))
	f = binary.BigEndian.AppendUint16(f, uint16(len(clientID)))
	f = append(f, clientID...)
	if flexible {
		f = append(f, 0)
	}
	f = append(f, body...)
	binary.BigEndian.PutUint32(f, uint32(len(f)-4))
	return f
}

// rssBytes is a process's resident memory, from /proc.
func rssBytes(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// closedOrAnswered waits for the broker either to close the connection or to
// answer one frame (an error response); anything but silence is fine.
func closedOrAnswered(c *rawConn, timeout time.Duration) error {
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	_, err := readFrame(c.conn)
	if err == nil {
		return nil
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("neither an answer nor a close within %v", timeout)
	}
	return nil // EOF, reset: closed
}

func TestBadInput(t *testing.T) {
	b := Shared(t)
	steady := startSteadyTraffic(t, b)

	pid := 0
	var rssBefore int64
	if !b.External {
		pid = b.PID()
		rssBefore, _ = rssBytes(pid)
	}
	alive := func(t *testing.T) {
		t.Helper()
		if err := probeAPIVersions(b.Addr, 5*time.Second); err != nil {
			t.Fatalf("the broker no longer answers ApiVersions: %v", err)
		}
	}

	topic := topicName(t, "target")
	(&franzClient{b: b}).CreateTopic(t, topic, 1, map[string]string{"max.message.bytes": "10000"})
	waitForTopic(t, b, topic, 1)
	now := time.Now().UnixMilli()
	good := buildBatch([]rawRecord{{Key: []byte("k"), Value: []byte("hello")}}, now, -1, -1, -1)

	t.Run("TruncatedFrameThenClose", func(t *testing.T) {
		c := dialRaw(t, b.Addr)
		frame := rawFrame(18, 0, 1, false, nil)
		binary.BigEndian.PutUint32(frame, 100) // claims 100 bytes, sends 10
		c.write(frame)
		c.conn.Close()
		// Half a header, then close.
		c2 := dialRaw(t, b.Addr)
		c2.write([]byte{0, 0})
		c2.conn.Close()
		alive(t)
	})

	t.Run("NegativeLength", func(t *testing.T) {
		c := dialRaw(t, b.Addr)
		c.write([]byte{0xff, 0xff, 0xff, 0xf0, 0, 18, 0, 0, 0, 0, 0, 1})
		if err := c.expectClosed(10 * time.Second); err != nil {
			t.Errorf("a frame of negative length: %v; Kafka closes the connection", err)
		}
		alive(t)
	})

	t.Run("HugeLength", func(t *testing.T) {
		// socket.request.max.bytes is 104857600 by default; one more is
		// refused before anything is allocated, by closing.
		for _, size := range []uint32{104857601, 0x7fffffff} {
			c := dialRaw(t, b.Addr)
			f := binary.BigEndian.AppendUint32(nil, size)
			f = append(f, 0, 18, 0, 0, 0, 0, 0, 1)
			c.write(f)
			if err := c.expectClosed(10 * time.Second); err != nil {
				t.Errorf("a frame of %d bytes: %v; Kafka closes the connection", size, err)
			}
		}
		alive(t)
	})

	t.Run("HugeArrayCount", func(t *testing.T) {
		// Array counts far beyond the bytes that follow. Kafka fails to
		// parse the request and closes the connection; an error response
		// is fine too. What matters: no crash, no allocation by count.
		probe := dialRaw(t, b.Addr)
		metadataV := probe.version(3, 12)
		produceV := probe.version(0, 12)
		var cases []struct {
			name  string
			frame []byte
		}
		add := func(name string, frame []byte) {
			cases = append(cases, struct {
				name  string
				frame []byte
			}{name, frame})
		}
		if metadataV >= 9 { // flexible: compact array, uvarint count+1
			add("Metadata topics", rawFrame(3, metadataV, 7, true, []byte{0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0, 0}))
		} else {
			add("Metadata topics", rawFrame(3, metadataV, 7, false, []byte{0x7f, 0xff, 0xff, 0xff, 0, 0, 0}))
		}
		if produceV >= 9 {
			// transactional id null (0), acks -1, timeout, topics count.
			add("Produce topics", rawFrame(0, produceV, 8, true, []byte{0, 0xff, 0xff, 0, 0, 0x3a, 0x98, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0}))
			// One topic, then a huge partition count.
			body := []byte{0, 0xff, 0xff, 0, 0, 0x3a, 0x98, 2, byte(len(topic) + 1)}
			body = append(body, topic...)
			body = append(body, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0)
			add("Produce partitions", rawFrame(0, produceV, 9, true, body))
		} else {
			add("Produce topics", rawFrame(0, produceV, 8, false, []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0x3a, 0x98, 0x7f, 0xff, 0xff, 0xff, 0, 0}))
		}
		for _, tc := range cases {
			c := dialRaw(t, b.Addr)
			c.write(tc.frame)
			if err := closedOrAnswered(c, 10*time.Second); err != nil {
				t.Errorf("%s with a huge count: %v", tc.name, err)
			}
		}
		alive(t)
		// A record batch claiming 2^31-1 records, with a valid CRC:
		// INVALID_RECORD (87) in Kafka.
		huge := append([]byte{}, good...)
		binary.BigEndian.PutUint32(huge[57:], 0x7fffffff)
		fixBatch(huge)
		c := dialRaw(t, b.Addr)
		code, err := c.produceRaw(topic, 0, huge)
		if err != nil || code != errInvalidRecord {
			t.Errorf("batch claiming 2^31-1 records: error code %d (%v), want %d (INVALID_RECORD)", code, err, errInvalidRecord)
		}
		alive(t)
	})

	t.Run("WrongCRC", func(t *testing.T) {
		c := dialRaw(t, b.Addr)
		bad := append([]byte{}, good...)
		bad[len(bad)-1] ^= 0xff // a value byte; the CRC no longer matches
		code, err := c.produceRaw(topic, 0, bad)
		if err != nil || code != errCorruptMessage {
			t.Errorf("batch with a wrong CRC: error code %d (%v), want %d (CORRUPT_MESSAGE)", code, err, errCorruptMessage)
		}
		// The connection stays usable.
		code, err = c.produceRaw(topic, 0, good)
		if err != nil || code != errNone {
			t.Errorf("good batch after the corrupt one, same connection: error code %d (%v)", code, err)
		}
	})

	t.Run("MalformedBatch", func(t *testing.T) {
		// A valid CRC over an inconsistent batch. Kafka validates the
		// records of uncompressed batches and answers INVALID_RECORD (87).
		c := dialRaw(t, b.Addr)
		count := append([]byte{}, good...)
		binary.BigEndian.PutUint32(count[57:], 5) // says 5 records, holds 1
		fixBatch(count)
		if code, err := c.produceRaw(topic, 0, count); err != nil || code != errInvalidRecord {
			t.Errorf("batch whose record count disagrees with its records: error code %d (%v), want %d (INVALID_RECORD)", code, err, errInvalidRecord)
		}
		// Batch length beyond the bytes sent.
		if code, err := c.produceRaw(topic, 0, good[:len(good)-3]); err != nil || code != errInvalidRecord {
			t.Errorf("truncated batch: error code %d (%v), want %d (INVALID_RECORD)", code, err, errInvalidRecord)
		}
		// No records at all.
		if code, err := c.produceRaw(topic, 0, []byte{}); err != nil || code != errInvalidRecord {
			t.Errorf("empty record set: error code %d (%v), want %d (INVALID_RECORD)", code, err, errInvalidRecord)
		}
	})

	t.Run("UnknownAPIKey", func(t *testing.T) {
		c := dialRaw(t, b.Addr)
		c.write(rawFrame(999, 0, 1, false, []byte{0, 0, 0, 0}))
		if err := c.expectClosed(10 * time.Second); err != nil {
			t.Errorf("request with API key 999: %v; Kafka closes the connection", err)
		}
		alive(t)
	})

	t.Run("UnsupportedApiVersionsVersion", func(t *testing.T) {
		// Kafka answers an ApiVersions of a version it does not know with
		// an ApiVersions v0 response: UNSUPPORTED_VERSION (35), listing at
		// least ApiVersions' own range so the client can retry (Kafka 4.3
		// lists only that one entry).
		c := dialRaw(t, b.Addr)
		req := kmsg.NewPtrApiVersionsRequest()
		req.Version = 127
		frame, corr := c.frame(req)
		c.write(frame)
		resp := kmsg.NewPtrApiVersionsResponse()
		resp.Version = 0
		if err := c.readResponse(corr, resp, 10*time.Second); err != nil {
			t.Fatalf("ApiVersions v127: %v", err)
		}
		if resp.ErrorCode != errUnsupportedVersion {
			t.Errorf("ApiVersions v127: error %d, want %d (UNSUPPORTED_VERSION)", resp.ErrorCode, errUnsupportedVersion)
		}
		found := false
		for _, k := range resp.ApiKeys {
			if k.ApiKey == 18 {
				found = true
				if k.MinVersion != 0 || k.MaxVersion < 3 {
					t.Errorf("ApiVersions range v%d-v%d, want v0 to at least v3", k.MinVersion, k.MaxVersion)
				}
			}
		}
		if !found {
			t.Errorf("the UNSUPPORTED_VERSION answer does not list ApiVersions (key 18): %+v", resp.ApiKeys)
		}
		// The connection stays open: a supported version now works.
		req.Version = 3
		req.ClientSoftwareName, req.ClientSoftwareVersion = "sluice-e2e", "0"
		if _, err := c.roundTrip(req); err != nil {
			t.Errorf("ApiVersions v3 after the v127 attempt, same connection: %v", err)
		}
	})

	t.Run("LegacyMagic", func(t *testing.T) {
		// Message sets of magic 0 and 1 (and a v2-shaped batch saying
		// magic 1) are refused. sluice is specified to answer
		// UNSUPPORTED_FOR_MESSAGE_FORMAT (43); Apache Kafka 4.3 answers
		// INVALID_RECORD (87) ("Produce requests with version 3 and above
		// must contain record batches of magic 2").
		want, wantName := errUnsupportedForMessageFormat, "UNSUPPORTED_FOR_MESSAGE_FORMAT"
		if b.External {
			want, wantName = errInvalidRecord, "INVALID_RECORD (Kafka's answer)"
		}
		relabeled := append([]byte{}, good...)
		relabeled[16] = 1
		c := dialRaw(t, b.Addr)
		for _, tc := range []struct {
			name  string
			batch []byte
		}{
			{"magic 0 message set", buildLegacyMessageSet(0, []byte("k"), []byte("v"), now)},
			{"magic 1 message set", buildLegacyMessageSet(1, []byte("k"), []byte("v"), now)},
			{"v2 batch labelled magic 1", relabeled},
		} {
			code, err := c.produceRaw(topic, 0, tc.batch)
			if err != nil || code != want {
				t.Errorf("%s: error code %d (%v), want %d (%s)", tc.name, code, err, want, wantName)
			}
		}
	})

	t.Run("MessageTooLarge", func(t *testing.T) {
		// The topic has max.message.bytes=10000; a batch over it is
		// MESSAGE_TOO_LARGE (10).
		c := dialRaw(t, b.Addr)
		big := buildBatch([]rawRecord{{Value: make([]byte, 20000)}}, now, -1, -1, -1)
		code, err := c.produceRaw(topic, 0, big)
		if err != nil || code != errMessageTooLarge {
			t.Errorf("a 20 KB batch to a topic with max.message.bytes=10000: error code %d (%v), want %d (MESSAGE_TOO_LARGE)", code, err, errMessageTooLarge)
		}
		// Just under the limit is accepted.
		small := buildBatch([]rawRecord{{Value: make([]byte, 9000)}}, now, -1, -1, -1)
		if code, err := c.produceRaw(topic, 0, small); err != nil || code != errNone {
			t.Errorf("a 9 KB batch: error code %d (%v), want 0", code, err)
		}
	})

	t.Run("UnknownPartition", func(t *testing.T) {
		c := dialRaw(t, b.Addr)
		code, err := c.produceRaw(topic, 7, good)
		if err != nil || code != errUnknownTopicOrPartition {
			t.Errorf("produce to partition 7 of a 1-partition topic: error code %d (%v), want %d (UNKNOWN_TOPIC_OR_PARTITION)", code, err, errUnknownTopicOrPartition)
		}
	})

	t.Run("GarbageBytes", func(t *testing.T) {
		// Random-looking bytes as a request: closed, never a crash.
		c := dialRaw(t, b.Addr)
		c.write([]byte("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
		if err := closedOrAnswered(c, 10*time.Second); err != nil {
			t.Errorf("an HTTP request on the Kafka port: %v", err)
		}
		alive(t)
	})

	steady.finish(t)

	// The log holds exactly the good batches (the accepted ones above).
	got := consumeWithFranz(t, b, topic, 1, nil)
	for _, f := range got {
		if len(f.Value) != 5 && len(f.Value) != 9000 {
			t.Errorf("the target topic holds a record of %d bytes at offset %d: a refused batch was stored", len(f.Value), f.Offset)
		}
	}

	if pid != 0 {
		rssAfter, err := rssBytes(pid)
		if err == nil && rssAfter-rssBefore > 256<<20 {
			t.Errorf("broker resident memory grew from %d MiB to %d MiB during the bad-input tests", rssBefore>>20, rssAfter>>20)
		}
		t.Logf("broker RSS %d MiB before, %d MiB after", rssBefore>>20, rssAfter>>20)
	}
}
