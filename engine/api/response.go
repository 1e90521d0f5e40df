package api

// Part is one piece of a response frame: bytes from memory, or a range of a
// file sent with sendfile so that record bytes never enter user space.
type Part struct {
	Bytes []byte
	File  int // file descriptor when Bytes is nil
	Off   int64
	Len   int
}

// Response is what a handler answers for one request. Responses are written
// in request order; a handler that needs time (a produce waiting for its
// datasync, a long-poll fetch) returns a Response that is not ready yet and
// calls Complete later, from any goroutine.
type Response struct {
	Parts []Part
	// Release runs after the response was written (or dropped because the
	// connection closed): it unpins file ranges and returns buffers.
	Release func()
	// Close asks for the connection to be closed after the responses before
	// this one were written; Parts are ignored.
	Close bool

	ready chan struct{}
}

// Ready returns a response that is complete now.
func Ready(parts ...Part) *Response { return &Response{Parts: parts} }

// Pending returns a response to be completed later with Complete.
func Pending() *Response { return &Response{ready: make(chan struct{})} }

// Complete marks a pending response as ready to write. Set Parts, Release
// and Close before calling it.
func (r *Response) Complete() { close(r.ready) }

// Wait blocks until the response is ready.
func (r *Response) Wait() {
	if r.ready != nil {
		<-r.ready
	}
}
