package netio

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sluice-broker/sluice/engine/api"
)

// echoHandler answers each frame with the frame itself; frames starting
// with "slow" complete only when release is closed, "close" asks to close,
// "none" takes no answer, "file" answers from a file with sendfile.
type echoHandler struct {
	release chan struct{}
	file    *os.File
	mu      sync.Mutex
	seen    int
}

func frameOf(b []byte) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(len(b)))
	return append(out, b...)
}

func (h *echoHandler) Handle(frame []byte, _ <-chan struct{}) *api.Response {
	h.mu.Lock()
	h.seen++
	h.mu.Unlock()
	switch {
	case bytes.HasPrefix(frame, []byte("slow")):
		r := api.Pending()
		go func() {
			<-h.release
			r.Parts = []api.Part{{Bytes: frameOf(frame)}}
			r.Complete()
		}()
		return r
	case bytes.HasPrefix(frame, []byte("close")):
		return &api.Response{Close: true}
	case bytes.HasPrefix(frame, []byte("none")):
		return nil
	case bytes.HasPrefix(frame, []byte("file")):
		head := binary.BigEndian.AppendUint32(nil, 10)
		return api.Ready(api.Part{Bytes: head}, api.Part{File: int(h.file.Fd()), Off: 3, Len: 10})
	}
	return api.Ready(api.Part{Bytes: frameOf(frame)})
}

func startServer(t *testing.T, h Handler, cfg Config) string {
	t.Helper()
	if cfg.MaxRequestBytes == 0 {
		cfg.MaxRequestBytes = 1 << 20
	}
	s, err := Listen("127.0.0.1:0", h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Close() })
	return s.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

func readFrame(t *testing.T, c net.Conn) []byte {
	t.Helper()
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		t.Fatalf("reading a response: %v", err)
	}
	b := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	return b
}

// expectClosed checks the server closed the connection (EOF, not a timeout).
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	if _, err := c.Read(b[:]); err != io.EOF {
		t.Fatalf("connection not closed by the server: %v", err)
	}
}

// TestPipelinedResponsesInOrder: a slow first request holds back the answers
// to later ones, which are then written in request order.
func TestPipelinedResponsesInOrder(t *testing.T) {
	h := &echoHandler{release: make(chan struct{})}
	c := dial(t, startServer(t, h, Config{}))
	for _, m := range []string{"slow-1", "fast-2", "none-3", "fast-4"} {
		c.Write(frameOf([]byte(m)))
	}
	time.Sleep(50 * time.Millisecond) // give the fast ones every chance to overtake
	close(h.release)
	for _, want := range []string{"slow-1", "fast-2", "fast-4"} {
		if got := string(readFrame(t, c)); got != want {
			t.Fatalf("got %q, want %q: responses out of request order", got, want)
		}
	}
}

func TestBadSizesCloseOnlyThatConnection(t *testing.T) {
	h := &echoHandler{}
	addr := startServer(t, h, Config{MaxRequestBytes: 100})
	good := dial(t, addr)
	for name, size := range map[string]int32{"negative": -5, "huge": 1 << 30, "over the limit": 101} {
		bad := dial(t, addr)
		binary.Write(bad, binary.BigEndian, size)
		expectClosed(t, bad)
		good.Write(frameOf([]byte("still-" + name)))
		if got := string(readFrame(t, good)); got != "still-"+name {
			t.Fatalf("the well-behaved connection got %q", got)
		}
	}
}

func TestTruncatedFrameClosesConnection(t *testing.T) {
	h := &echoHandler{}
	c := dial(t, startServer(t, h, Config{}))
	c.Write([]byte{0, 0, 0, 10, 'a', 'b'})
	c.(*net.TCPConn).CloseWrite()
	expectClosed(t, c)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.seen != 0 {
		t.Fatal("a truncated frame reached the handler")
	}
}

func TestCloseResponseAfterEarlierOnes(t *testing.T) {
	h := &echoHandler{}
	c := dial(t, startServer(t, h, Config{}))
	c.Write(append(frameOf([]byte("one")), frameOf([]byte("close"))...))
	if got := string(readFrame(t, c)); got != "one" {
		t.Fatalf("got %q", got)
	}
	expectClosed(t, c)
}

func TestIdleConnectionClosed(t *testing.T) {
	h := &echoHandler{}
	c := dial(t, startServer(t, h, Config{IdleTimeout: 200 * time.Millisecond}))
	c.Write(frameOf([]byte("hello")))
	readFrame(t, c)
	start := time.Now()
	expectClosed(t, c)
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("closed after %v, before the idle timeout", d)
	}
}

func TestSendfilePart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "segment")
	os.WriteFile(path, []byte("xxx0123456789yyy"), 0o644)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() }) // after the server's cleanup, which runs first
	h := &echoHandler{file: f}
	c := dial(t, startServer(t, h, Config{}))
	for i := 0; i < 3; i++ { // the file offset is explicit: repeated reads see the same bytes
		c.Write(frameOf([]byte("file")))
		if got := string(readFrame(t, c)); got != "0123456789" {
			t.Fatalf("sendfile part: got %q", got)
		}
	}
}
