package api

import (
	"time"

	"github.com/sluice-broker/sluice/engine/group"
	"github.com/sluice-broker/sluice/wire/msg"
)

// Helpers shared by the group coordinator's handlers (08_offset_commit.go
// to 16_list_groups.go, 42_delete_groups.go, 47_offset_delete.go,
// 68_consumer_group_heartbeat.go, 69_consumer_group_describe.go). The
// coordinator itself is engine/group, run by engine/group/service.

// groupRequest is what the coordinator knows of a request.
func groupRequest(rc *request, now time.Time) group.Request {
	r := group.Request{Now: now, Version: rc.version}
	if rc.header.ClientID != nil {
		r.ClientID = *rc.header.ClientID
	}
	return r
}

// serveGroup runs a synchronous coordinator call and frames its answer.
func serveGroup[R msg.Response](h *Handler, rc *request, call func(c *group.Coordinator, r group.Request) R) *Response {
	g := h.groups.Load()
	if g == nil { // demoted since Handle looked
		return closeConnection()
	}
	var resp R
	g.Do(func(c *group.Coordinator, now time.Time) {
		resp = call(c, groupRequest(rc, now))
	})
	return respond(rc, resp)
}

// serveGroupLater runs a coordinator call whose answer may come later (a
// parked JoinGroup, a commit waiting for its datasync): the response is
// pending until the coordinator replies.
func serveGroupLater[R msg.Response](h *Handler, rc *request, call func(c *group.Coordinator, r group.Request, reply func(R))) *Response {
	g := h.groups.Load()
	if g == nil {
		return closeConnection()
	}
	out := Pending()
	g.Do(func(c *group.Coordinator, now time.Time) {
		call(c, groupRequest(rc, now), func(resp R) {
			out.Parts = []Part{{Bytes: frame(rc, resp)}}
			out.Complete()
		})
	})
	return out
}
