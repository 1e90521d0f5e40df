package api

import (
	"time"

	"github.com/sluice-broker/sluice/engine/txn"
	"github.com/sluice-broker/sluice/wire/msg"
)

// ListTransactions (kafka-transactions.sh list): the transactions this
// node coordinates, filtered by state, producer id and (v1) how long they
// have been open. A standby coordinates none.
var _ = register(&handler{key: 66, min: 0, max: 1, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	req := body.(*msg.ListTransactionsRequest)
	resp := &msg.ListTransactionsResponse{UnknownStateFilters: []string{}, TransactionStates: []msg.ListTransactionsResponseTransactionState{}}
	var states []txn.State
	for _, name := range req.StateFilters {
		s, ok := txn.ParseState(name)
		if !ok {
			resp.UnknownStateFilters = append(resp.UnknownStateFilters, name)
			continue
		}
		states = append(states, s)
	}
	if len(req.StateFilters) > 0 && len(states) == 0 {
		return respond(rc, resp) // only unknown states: nothing matches
	}
	h.withTxn(func(c *txn.Coordinator, now time.Time) {
		for _, t := range c.List(states, req.ProducerIdFilters) {
			if req.DurationFilter >= 0 && rc.version >= 1 {
				if t.State != txn.Ongoing || now.Sub(t.Start) < time.Duration(req.DurationFilter)*time.Millisecond {
					continue
				}
			}
			resp.TransactionStates = append(resp.TransactionStates, msg.ListTransactionsResponseTransactionState{
				TransactionalId: t.ID, ProducerId: t.ProducerID, TransactionState: t.State.String(),
			})
		}
	})
	return respond(rc, resp)
}})
