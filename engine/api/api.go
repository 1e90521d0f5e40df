// Package api maps Kafka requests onto the engine. Each API key has its own
// file, named after the key (00_produce.go, 01_fetch.go, ...), holding the
// handler and the version range it supports; that declaration is exactly
// what ApiVersions advertises, so a version is advertised only where a
// handler implements it.
//
// The Handler decodes the request header and body with the generated codecs
// of wire/msg, runs the handler, and frames the response. A frame whose
// header cannot be parsed, an unknown API key, an unsupported version (other
// than ApiVersions, which answers with its v0 error response) or a body that
// does not decode closes the connection, as Kafka does.
package api

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/sluice-broker/sluice/engine"
	"github.com/sluice-broker/sluice/engine/group"
	"github.com/sluice-broker/sluice/engine/group/service"
	txnservice "github.com/sluice-broker/sluice/engine/txn/service"
	"github.com/sluice-broker/sluice/wire"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

// handler is one API's entry in the dispatch table.
type handler struct {
	key      int16
	min, max int16 // supported versions, advertised in ApiVersions
	// advertiseMin, when set below min, widens only what ApiVersions lists:
	// Kafka 4 lists Produce v0-v2 that it refuses, because librdkafka turns
	// compression off unless they are listed (KAFKA-18659).
	advertiseMin *int16
	serve        func(h *Handler, rc *request, body msg.Request) *Response
}

// request is the per-request context handlers see.
type request struct {
	header  wire.RequestHeader
	version int16
	// closed is closed when the client's connection goes away, so work
	// that waits (a long-poll fetch) can stop early; nil never closes.
	closed <-chan struct{}
}

// Handler serves Kafka requests against a broker.
type Handler struct {
	b        *engine.Broker
	log      *slog.Logger
	table    [maxAPIKey + 1]*handler
	versions msg.ApiVersionsResponse // the supported list, computed once
	pids     *producerIDs
	// groups is the group coordinator (08-16, 42, 47, 68, 69); nil on a
	// standby, which runs none.
	groups atomic.Pointer[service.Service]
	// txns is the transaction coordinator, started with the group
	// coordinator.
	txns atomic.Pointer[txnservice.Service]
}

const maxAPIKey = 127

// handlers lists every implemented API; each file adds its own entry.
var handlers []*handler

func register(h *handler) *handler {
	handlers = append(handlers, h)
	return h
}

// New builds the request handler for b.
func New(b *engine.Broker) (*Handler, error) {
	pids, err := openProducerIDs(b.Cfg.DataDir)
	if err != nil {
		return nil, err
	}
	h := &Handler{b: b, log: b.Logger, pids: pids}
	// A standby runs no group coordinator: FindCoordinator sends clients
	// to the primary, and __consumer_offsets is followed like any log.
	if !b.IsStandby() {
		if err := h.startGroups(); err != nil {
			return nil, err
		}
	}
	for _, e := range handlers {
		h.table[e.key] = e
	}
	h.versions = supportedVersions()
	return h, nil
}

// Handle serves one request frame. It returns nil when the request takes no
// response. closed, if not nil, is closed when the connection goes away.
func (h *Handler) Handle(frame []byte, closed <-chan struct{}) *Response {
	key, version, corr, ok := wire.PeekAPIKeyVersion(frame)
	if !ok || key < 0 || key > maxAPIKey || h.table[key] == nil {
		return closeConnection()
	}
	e := h.table[key]
	if version < e.min || version > e.max {
		if key == apiVersionsKey {
			return h.unsupportedAPIVersions(corr)
		}
		return closeConnection()
	}
	hdr, body, err := wire.ParseRequestHeader(frame, msg.IsFlexible(key, version))
	if err != nil {
		return closeConnection()
	}
	req := msg.NewRequest(key)
	if err := req.Decode(body, version); err != nil {
		h.log.Debug("closing connection: request does not decode", "api", msg.APIName(key), "version", version, "err", err)
		return closeConnection()
	}
	rc := &request{header: hdr, version: version, closed: closed}
	if groupAPIs[key] && h.groups.Load() == nil {
		// A standby: only a client that ignored FindCoordinator (or
		// one that found the coordinator before a hand-over) gets here.
		return respond(rc, notCoordinator(rc, req))
	}
	return e.serve(h, rc, req)
}

func closeConnection() *Response { return &Response{Close: true} }

// startGroups starts the coordinators: groups, then transactions.
func (h *Handler) startGroups() error {
	g, err := service.Start(h.b)
	if err != nil {
		return err
	}
	h.groups.Store(g)
	t, err := txnservice.Start(h.b, h.pids.next, func(pid int64, epoch int16, commit bool, p int32, done func(error)) {
		// A transaction's end reaches the group coordinator as its
		// marker reaches a __consumer_offsets partition in Kafka.
		g.Do(func(c *group.Coordinator, now time.Time) { c.CompleteTxn(now, pid, epoch, commit, p, done) })
	})
	if err != nil {
		return err
	}
	h.txns.Store(t)
	return nil
}

// BecomePrimary is the request layer's part of a promotion (the engine's,
// Broker.Promote, came first): the group coordinator starts, loading the
// groups from the __consumer_offsets this node followed, and producer ids
// move to this epoch's range, past any an earlier primary gave out.
func (h *Handler) BecomePrimary(epoch int32) error {
	if err := h.pids.atLeast(producerIDBase(epoch)); err != nil {
		return err
	}
	if h.groups.Load() != nil {
		return nil
	}
	return h.startGroups()
}

// BecomeStandby stops the group coordinator (its clients find the new
// primary's through FindCoordinator).
func (h *Handler) BecomeStandby() {
	if t := h.txns.Swap(nil); t != nil {
		t.Close()
	}
	if g := h.groups.Swap(nil); g != nil {
		g.Close()
	}
}

// groupAPIs are the group coordinator's API keys (groups.go).
var groupAPIs = map[int16]bool{8: true, 9: true, 11: true, 12: true, 13: true, 14: true, 15: true, 16: true, 28: true, 42: true, 47: true, 68: true, 69: true}

// frame encodes a whole response frame: size, response header, body.
func frame(rc *request, m msg.Response) []byte {
	return encodeFrame(rc.header.CorrelationID, msg.ResponseHeaderFlexible(rc.header.APIKey, rc.version), m, rc.version)
}

func encodeFrame(corr int32, headerFlexible bool, m msg.Response, version int16) []byte {
	b := make([]byte, 4, 256)
	b = wire.AppendResponseHeader(b, corr, headerFlexible)
	b = m.Append(b, version)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

// respond frames m as a ready response.
func respond(rc *request, m msg.Response) *Response {
	return Ready(Part{Bytes: frame(rc, m)})
}

// errorCode extracts the Kafka code of an engine error.
func errorCode(err error) (int16, *string) {
	if err == nil {
		return 0, nil
	}
	code := kerr.FromError(err)
	s := err.Error()
	var ke *kerr.Error
	if errors.As(err, &ke) && ke.Message != "" {
		s = ke.Message
	}
	return int16(code), &s
}

func strPtr(s string) *string { return &s }
