package api

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-broker/sluice/engine/meta"
	"github.com/sluice-broker/sluice/engine/txn"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

var _ = register(&handler{key: 22, min: 0, max: 5, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	req := body.(*msg.InitProducerIdRequest)
	if req.TransactionalId != nil && *req.TransactionalId != "" {
		// A transactional producer: the transaction coordinator gives its
		// id a producer id and a bumped epoch, fencing older instances.
		answer := func(pid int64, epoch int16, code kerr.Code) *msg.InitProducerIdResponse {
			resp := &msg.InitProducerIdResponse{}
			resp.Default()
			resp.ProducerId, resp.ProducerEpoch, resp.ErrorCode = pid, epoch, int16(code)
			return resp
		}
		timeout := time.Duration(req.TransactionTimeoutMs) * time.Millisecond
		return serveTxn(h, rc, func() *msg.InitProducerIdResponse { return answer(-1, -1, kerr.NotCoordinator) },
			func(c *txn.Coordinator, now time.Time, reply func(*msg.InitProducerIdResponse)) {
				c.InitProducerID(now, *req.TransactionalId, timeout, req.ProducerId, req.ProducerEpoch, func(pid int64, epoch int16, code kerr.Code) {
					reply(answer(pid, epoch, code))
				})
			})
	}
	return respond(rc, h.initProducerID(req))
}})

func (h *Handler) initProducerID(req *msg.InitProducerIdRequest) *msg.InitProducerIdResponse {
	var resp msg.InitProducerIdResponse
	resp.Default()
	if h.b.IsStandby() {
		// Producer ids come from the primary; clients retry this error
		// (on another node, the primary, as the least loaded one).
		resp.ErrorCode = int16(kerr.CoordinatorLoadInProgress)
		return &resp
	}
	// An idempotent producer without a transactional id always gets a
	// fresh id, as Kafka does (the epoch bump of KIP-360 also ends here).
	id, err := h.pids.next()
	if err != nil {
		h.log.Error("allocating a producer id", "err", err)
		resp.ErrorCode = int16(kerr.UnknownServerError)
		return &resp
	}
	resp.ProducerId, resp.ProducerEpoch = id, 0
	return &resp
}

// producerIDBlock is how many producer ids are reserved on disk at once.
const producerIDBlock = 1000

// producerIDs hands out producer ids that are never reused, across restarts
// and crashes: the end of the reserved block is persisted before any id of
// it is given out, like Kafka's controller-allocated blocks.
type producerIDs struct {
	path       string
	mu         sync.Mutex
	nextID     int64
	reservedTo int64
}

func openProducerIDs(dir string) (*producerIDs, error) {
	p := &producerIDs{path: filepath.Join(dir, "producer-ids")}
	b, err := os.ReadFile(p.path)
	switch {
	case os.IsNotExist(err):
	case err != nil:
		return nil, err
	default:
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.path, err)
		}
		p.nextID, p.reservedTo = n, n
	}
	return p, nil
}

// producerIDBase is the first producer id of leader epoch e: each epoch has
// its own range of 2^40 ids, so a promoted standby never hands out an id
// its old primary gave an idempotent producer whose state the standby may
// not have followed yet.
func producerIDBase(e int32) int64 { return int64(e) << 40 }

// atLeast moves the next id to from, if it is below.
func (p *producerIDs) atLeast(from int64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.nextID >= from {
		return nil
	}
	if err := meta.WriteFileAtomic(p.path, []byte(strconv.FormatInt(from, 10)+"\n")); err != nil {
		return err
	}
	p.nextID, p.reservedTo = from, from
	return nil
}

func (p *producerIDs) next() (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.nextID >= p.reservedTo {
		end := p.nextID + producerIDBlock
		if err := meta.WriteFileAtomic(p.path, []byte(strconv.FormatInt(end, 10)+"\n")); err != nil {
			return 0, err
		}
		p.reservedTo = end
	}
	id := p.nextID
	p.nextID++
	return id, nil
}
