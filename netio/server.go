// Package netio moves bytes between clients and the engine: the Kafka
// listener, one reader and one writer goroutine per connection (Go's
// netpoller underneath), pipelined requests answered strictly in request
// order, and zero-copy writes of record bytes with sendfile.
//
// A connection reads a 4-byte big-endian size and then that many bytes: one
// request frame. A size below zero or above socket.request.max.bytes, a
// truncated frame, or a handler's request to close ends only that
// connection.
package netio

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/sluice-broker/sluice/engine/api"
)

// Handler turns one request frame (header and body, without the size prefix)
// into a response. It returns nil when the request takes no response
// (Produce with acks=0). It may keep references into frame until its
// response is released.
type Handler interface {
	// Handle serves one frame; closed is closed when the connection goes
	// away, so waiting work (a long-poll fetch) can end early.
	Handle(frame []byte, closed <-chan struct{}) *api.Response
}

// Config bounds what a connection may do.
type Config struct {
	MaxRequestBytes int32         // socket.request.max.bytes
	IdleTimeout     time.Duration // connections.max.idle.ms
	MaxInFlight     int           // pipelined requests per connection before reading pauses
	Logger          *slog.Logger
	// Observe, if set, is told each request's API key and the time from
	// reading its frame to writing its response.
	Observe func(apiKey int16, d time.Duration)
	// Connections, if set, counts open connections.
	Connections interface {
		Inc()
		Dec()
	}
}

// Server accepts Kafka connections.
type Server struct {
	cfg     Config
	handler Handler
	ln      net.Listener

	mu     sync.Mutex
	conns  map[*Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// Listen binds addr.
func Listen(addr string, h Handler, cfg Config) (*Server, error) {
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 64
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, handler: h, ln: ln, conns: map[*Conn]struct{}{}}, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve accepts connections until Close.
func (s *Server) Serve() error {
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		if tc, ok := nc.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
		}
		c := &Conn{srv: s, nc: nc, queue: make(chan queued, s.cfg.MaxInFlight), closed: make(chan struct{})}
		if s.cfg.Connections != nil {
			s.cfg.Connections.Inc()
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return nil
		}
		s.conns[c] = struct{}{}
		s.wg.Add(2)
		s.mu.Unlock()
		go c.readLoop()
		go c.writeLoop()
	}
}

// Close stops accepting, closes every connection and waits for their
// goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	conns := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	err := s.ln.Close()
	for _, c := range conns {
		c.nc.Close()
	}
	s.wg.Wait()
	return err
}

// Conn is one client connection.
type Conn struct {
	srv    *Server
	nc     net.Conn
	queue  chan queued
	once   sync.Once
	closed chan struct{} // closed by close()
}

// queued is a response with what the latency metric needs, and the pooled
// frame buffer to give back once the response is done.
type queued struct {
	resp   *api.Response
	apiKey int16
	start  time.Time
	frame  *bytebufferpool.ByteBuffer
}

// framePool recycles Produce request frames, the large ones: a Produce
// handler is done with its frame once its response completes (record bytes
// are written to the log by then, and nothing else keeps them), so the
// buffer returns to the pool after the response. This spares the garbage
// collector a megabyte-sized allocation, and its zeroing, per request.
var framePool bytebufferpool.Pool

const produceKey = 0

// RemoteAddr is the client's address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

func (c *Conn) close() {
	c.once.Do(func() {
		close(c.closed)
		c.nc.Close()
		if c.srv.cfg.Connections != nil {
			c.srv.cfg.Connections.Dec()
		}
		c.srv.mu.Lock()
		delete(c.srv.conns, c)
		c.srv.mu.Unlock()
	})
}

func (c *Conn) readLoop() {
	defer c.srv.wg.Done()
	defer close(c.queue)
	var size [4]byte
	for {
		if c.srv.cfg.IdleTimeout > 0 {
			c.nc.SetReadDeadline(time.Now().Add(c.srv.cfg.IdleTimeout))
		}
		if _, err := io.ReadFull(c.nc, size[:]); err != nil {
			c.close()
			return
		}
		n := int32(binary.BigEndian.Uint32(size[:]))
		if n < 0 || n > c.srv.cfg.MaxRequestBytes {
			c.srv.cfg.Logger.Debug("closing connection: bad request size", "remote", c.nc.RemoteAddr(), "size", n)
			c.close()
			return
		}
		buf := framePool.Get()
		if cap(buf.B) < int(n) {
			buf.B = make([]byte, n)
		}
		buf.B = buf.B[:n]
		if _, err := io.ReadFull(c.nc, buf.B); err != nil {
			framePool.Put(buf)
			c.close()
			return
		}
		key := int16(-1)
		if n >= 2 {
			key = int16(binary.BigEndian.Uint16(buf.B))
		}
		frame := buf.B
		if key != produceKey {
			// Other requests may keep slices of their frame (group
			// metadata, for one): they get a buffer of their own.
			frame = append([]byte(nil), buf.B...)
			framePool.Put(buf)
			buf = nil
		}
		start := time.Now()
		resp := c.srv.handler.Handle(frame, c.closed)
		if resp == nil {
			// Nothing tells when the handler is done with the frame:
			// leave it to the garbage collector.
			continue
		}
		c.queue <- queued{resp, key, start, buf}
		if resp.Close {
			return
		}
	}
}

func (c *Conn) writeLoop() {
	defer c.srv.wg.Done()
	broken := false
	for q := range c.queue {
		resp := q.resp
		resp.Wait()
		if resp.Close {
			broken = true
			c.close()
		}
		if !broken {
			if err := c.write(resp.Parts); err != nil {
				broken = true
				c.close()
			}
		}
		if resp.Release != nil {
			resp.Release()
		}
		if q.frame != nil {
			framePool.Put(q.frame)
		}
		if !broken && !resp.Close && c.srv.cfg.Observe != nil {
			c.srv.cfg.Observe(q.apiKey, time.Since(q.start))
		}
	}
	c.close()
}

// write sends the parts in order: runs of byte parts with one writev, file
// ranges with sendfile.
func (c *Conn) write(parts []api.Part) error {
	var bufs net.Buffers
	for _, p := range parts {
		if p.Bytes != nil || p.Len == 0 {
			if len(p.Bytes) > 0 {
				bufs = append(bufs, p.Bytes)
			}
			continue
		}
		if len(bufs) > 0 {
			if _, err := bufs.WriteTo(c.nc); err != nil {
				return err
			}
			bufs = nil
		}
		if err := sendFile(c.nc, p.File, p.Off, p.Len); err != nil {
			return err
		}
	}
	if len(bufs) > 0 {
		_, err := bufs.WriteTo(c.nc)
		return err
	}
	return nil
}
