package e2e

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// This file speaks the Kafka protocol by hand: frames, request headers, and
// record batches built and corrupted byte by byte.

// maxFrameBytes bounds what the suite reads back; a response bigger than this
// is a broker bug as far as these tests go.
const maxFrameBytes = 64 << 20

// readFrame reads one size-prefixed frame and returns what follows the size.
func readFrame(r io.Reader) ([]byte, error) {
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		return nil, err
	}
	n := int32(binary.BigEndian.Uint32(size[:]))
	if n < 0 || n > maxFrameBytes {
		return nil, fmt.Errorf("response frame of %d bytes", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return body, nil
}

// rawConn is a Kafka connection the test drives byte by byte.
type rawConn struct {
	t           testing.TB
	conn        net.Conn
	correlation int32
	formatter   *kmsg.RequestFormatter
	versions    map[int16][2]int16 // api key → broker's [min, max], after negotiate
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawConn{
		t:         t,
		conn:      conn,
		formatter: kmsg.NewRequestFormatter(kmsg.FormatterClientID("sluice-e2e-raw")),
	}
}

// frame encodes a request with a fresh correlation id.
func (r *rawConn) frame(req kmsg.Request) ([]byte, int32) {
	r.correlation++
	return r.formatter.AppendRequest(nil, req, r.correlation), r.correlation
}

func (r *rawConn) write(b []byte) error {
	r.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := r.conn.Write(b)
	return err
}

// readResponse reads the response to correlation id corr and decodes it into
// resp (whose version must be set), skipping the flexible response header's
// tags. ApiVersions always answers with header v0.
func (r *rawConn) readResponse(corr int32, resp kmsg.Response, timeout time.Duration) error {
	r.conn.SetReadDeadline(time.Now().Add(timeout))
	body, err := readFrame(r.conn)
	if err != nil {
		return err
	}
	if len(body) < 4 {
		return fmt.Errorf("response of %d bytes", len(body))
	}
	if got := int32(binary.BigEndian.Uint32(body)); got != corr {
		return fmt.Errorf("correlation id %d, want %d", got, corr)
	}
	body = body[4:]
	if resp.IsFlexible() && resp.Key() != 18 {
		if body, err = skipTags(body); err != nil {
			return fmt.Errorf("response header: %w", err)
		}
	}
	return resp.ReadFrom(body)
}

// skipTags skips a tagged-field section (a uvarint count, then per field a
// uvarint tag, a uvarint size and that many bytes).
func skipTags(b []byte) ([]byte, error) {
	next := func() (uint64, error) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, errors.New("bad uvarint")
		}
		b = b[n:]
		return v, nil
	}
	count, err := next()
	if err != nil {
		return nil, err
	}
	for ; count > 0; count-- {
		if _, err := next(); err != nil {
			return nil, err
		}
		size, err := next()
		if err != nil {
			return nil, err
		}
		if size > uint64(len(b)) {
			return nil, errors.New("tag longer than the frame")
		}
		b = b[size:]
	}
	return b, nil
}

// roundTrip sends req and decodes the answer into a response of the same
// version.
func (r *rawConn) roundTrip(req kmsg.Request) (kmsg.Response, error) {
	b, corr := r.frame(req)
	if err := r.write(b); err != nil {
		return nil, err
	}
	resp := req.ResponseKind()
	resp.SetVersion(req.GetVersion())
	if err := r.readResponse(corr, resp, 15*time.Second); err != nil {
		return nil, err
	}
	return resp, nil
}

// negotiate asks ApiVersions, as every client does first.
func (r *rawConn) negotiate() {
	r.t.Helper()
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 3
	req.ClientSoftwareName = "sluice-e2e"
	req.ClientSoftwareVersion = "0"
	resp, err := r.roundTrip(req)
	if err != nil {
		r.t.Fatalf("ApiVersions: %v", err)
	}
	av := resp.(*kmsg.ApiVersionsResponse)
	if av.ErrorCode != 0 {
		r.t.Fatalf("ApiVersions v3: error code %d", av.ErrorCode)
	}
	r.versions = map[int16][2]int16{}
	for _, k := range av.ApiKeys {
		r.versions[k.ApiKey] = [2]int16{k.MinVersion, k.MaxVersion}
	}
}

// version picks the highest version of key both the broker and the test
// support, no higher than want; it fails the test when there is none.
func (r *rawConn) version(key int16, want int16) int16 {
	r.t.Helper()
	if r.versions == nil {
		r.negotiate()
	}
	v, ok := r.versions[key]
	if !ok {
		r.t.Fatalf("the broker does not advertise API key %d", key)
	}
	if want > v[1] {
		want = v[1]
	}
	if want < v[0] {
		r.t.Fatalf("API key %d: broker supports v%d-v%d, the test needs <= v%d", key, v[0], v[1], want)
	}
	return want
}

// expectClosed waits for the broker to close the connection, failing if it
// answers with data instead or keeps it open past timeout.
func (r *rawConn) expectClosed(timeout time.Duration) error {
	r.conn.SetReadDeadline(time.Now().Add(timeout))
	var buf [4096]byte
	n, err := r.conn.Read(buf[:])
	switch {
	case n > 0:
		return fmt.Errorf("the broker answered %d bytes instead of closing the connection", n)
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
		return nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("the connection was still open %v later", timeout)
	default:
		return nil // closed in some other way (reset, ...)
	}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// rawRecord is one record of a hand-built batch.
type rawRecord struct {
	Key, Value []byte
	Headers    []kmsg.Header
}

// buildBatch encodes an uncompressed RecordBatch v2 (magic 2) holding recs,
// with a correct length and CRC32C. The base offset is 0: the broker assigns
// offsets. producerID -1 means not idempotent.
func buildBatch(recs []rawRecord, timestampMs int64, producerID int64, producerEpoch int16, firstSequence int32) []byte {
	var records []byte
	for i, rec := range recs {
		kr := kmsg.Record{
			OffsetDelta: int32(i),
			Key:         rec.Key,
			Value:       rec.Value,
			Headers:     rec.Headers,
		}
		// Length is the varint size of what follows it: encode once to
		// learn it (a zero length takes one byte), then for real.
		body := kr.AppendTo(nil)[1:]
		kr.Length = int32(len(body))
		records = kr.AppendTo(records)
	}
	batch := kmsg.RecordBatch{
		FirstOffset:          0,
		PartitionLeaderEpoch: -1,
		Magic:                2,
		Attributes:           0,
		LastOffsetDelta:      int32(len(recs) - 1),
		FirstTimestamp:       timestampMs,
		MaxTimestamp:         timestampMs,
		ProducerID:           producerID,
		ProducerEpoch:        producerEpoch,
		FirstSequence:        firstSequence,
		NumRecords:           int32(len(recs)),
		Records:              records,
	}
	b := batch.AppendTo(nil)
	fixBatch(b)
	return b
}

// fixBatch rewrites a v2 batch's length and CRC after its bytes changed.
//
//	offset  0  baseOffset            int64
//	        8  batchLength           int32   bytes after this field
//	       12  partitionLeaderEpoch  int32
//	       16  magic                 int8
//	       17  crc                   uint32  CRC32C of bytes 21..end
//	       21  attributes ...
func fixBatch(b []byte) {
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)-12))
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], castagnoli))
}

// buildLegacyMessageSet encodes one message of the pre-2017 format (magic 0
// or 1), which Kafka 4 and sluice refuse.
//
//	offset int64, size int32, crc uint32 (IEEE, of what follows), magic int8,
//	attributes int8, [timestamp int64 if magic 1], key bytes, value bytes
func buildLegacyMessageSet(magic int8, key, value []byte, timestampMs int64) []byte {
	var msg []byte
	msg = append(msg, byte(magic), 0)
	if magic == 1 {
		msg = binary.BigEndian.AppendUint64(msg, uint64(timestampMs))
	}
	msg = binary.BigEndian.AppendUint32(msg, uint32(len(key)))
	msg = append(msg, key...)
	msg = binary.BigEndian.AppendUint32(msg, uint32(len(value)))
	msg = append(msg, value...)
	crc := crc32.ChecksumIEEE(msg)
	var out []byte
	out = binary.BigEndian.AppendUint64(out, 0)
	out = binary.BigEndian.AppendUint32(out, uint32(4+len(msg)))
	out = binary.BigEndian.AppendUint32(out, crc)
	return append(out, msg...)
}

// produceRaw sends one Produce request carrying batch for topic/partition on
// conn and returns the partition's error code.
func (r *rawConn) produceRaw(topic string, partition int32, batch []byte) (int16, error) {
	return r.produceRawAcks(topic, partition, batch, -1)
}

// produceRawAcks is produceRaw with acks 1 or -1.
func (r *rawConn) produceRawAcks(topic string, partition int32, batch []byte, acks int16) (int16, error) {
	req := kmsg.NewPtrProduceRequest()
	// v13 names topics by id; the tests name them.
	req.Version = r.version(0, 12)
	req.Acks = acks
	req.TimeoutMillis = 15000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition = partition
	rp.Records = batch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := r.roundTrip(req)
	if err != nil {
		return 0, err
	}
	pr := resp.(*kmsg.ProduceResponse)
	if len(pr.Topics) != 1 || len(pr.Topics[0].Partitions) != 1 {
		return 0, fmt.Errorf("produce response with %d topics", len(pr.Topics))
	}
	return pr.Topics[0].Partitions[0].ErrorCode, nil
}
