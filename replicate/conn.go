package replicate

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/sluice-broker/sluice/wire"
	"github.com/sluice-broker/sluice/wire/msg"
)

// conn is one Kafka connection to the primary: requests go out one at a
// time, framed with the generated codecs of wire/msg.
type conn struct {
	c        net.Conn
	r        *bufio.Reader
	corr     int32
	clientID string
	buf      []byte
	frame    []byte // the last fetch response, kept for the next one
}

// maxResponse bounds a response frame the standby accepts (a fetch
// response is at most its max_bytes plus one batch per partition).
const maxResponse = 256 << 20

func dial(addr, clientID string, timeout time.Duration) (*conn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	return &conn{c: c, r: bufio.NewReaderSize(c, 64<<10), clientID: clientID}, nil
}

func (c *conn) Close() error { return c.c.Close() }

// roundTrip sends req in version and decodes the answer into resp, with
// deadline bounding the whole exchange.
func (c *conn) roundTrip(req, resp msg.Message, version int16, deadline time.Time) error {
	return c.exchange(req, resp, version, deadline, false)
}

// fetchRoundTrip is roundTrip for the follower's fetches: the response is
// read into the buffer the previous one used, so resp (whose records alias
// it) is valid only until the next fetchRoundTrip. A follower appends a
// fetch's records before it fetches again; allocating and zeroing up to
// 10 MiB a fetch instead cost it a fifth of its CPU.
func (c *conn) fetchRoundTrip(req, resp msg.Message, version int16, deadline time.Time) error {
	return c.exchange(req, resp, version, deadline, true)
}

func (c *conn) exchange(req, resp msg.Message, version int16, deadline time.Time, reuse bool) error {
	key := req.APIKey()
	c.corr++
	id := c.clientID
	b := append(c.buf[:0], 0, 0, 0, 0)
	b = wire.AppendRequestHeader(b, wire.RequestHeader{APIKey: key, APIVersion: version, CorrelationID: c.corr, ClientID: &id}, msg.IsFlexible(key, version))
	b = req.Append(b, version)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	c.buf = b
	if err := c.c.SetDeadline(deadline); err != nil {
		return err
	}
	if _, err := c.c.Write(b); err != nil {
		return err
	}
	var size [4]byte
	if _, err := io.ReadFull(c.r, size[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(size[:])
	if n > maxResponse {
		return fmt.Errorf("a %s response of %d bytes is larger than %d", msg.APIName(key), n, maxResponse)
	}
	var frame []byte
	if reuse {
		if cap(c.frame) < int(n) {
			c.frame = make([]byte, n)
		}
		frame = c.frame[:n]
	} else {
		frame = make([]byte, n)
	}
	if _, err := io.ReadFull(c.r, frame); err != nil {
		return err
	}
	corr, body, err := wire.ParseResponseHeader(frame, msg.ResponseHeaderFlexible(key, version))
	if err != nil {
		return err
	}
	if corr != c.corr {
		return fmt.Errorf("%s response has correlation id %d, want %d", msg.APIName(key), corr, c.corr)
	}
	return resp.Decode(body, version)
}
