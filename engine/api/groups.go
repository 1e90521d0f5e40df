package api

import (
	"time"

	"github.com/sluice-broker/sluice/engine/group"
	"github.com/sluice-broker/sluice/wire/kerr"
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

// notCoordinator answers a group request that reached a node running no
// coordinator (a standby, or a primary demoted since the request came) as
// Kafka answers one sent to a broker that does not coordinate the group:
// NOT_COORDINATOR wherever the response carries an error, so the client
// looks the coordinator up again (FindCoordinator names the primary).
// ListGroups lists no groups: an admin client asks every broker and merges
// their answers.
func notCoordinator(rc *request, body msg.Request) msg.Response {
	code := int16(kerr.NotCoordinator)
	switch req := body.(type) {
	case *msg.OffsetCommitRequest:
		resp := &msg.OffsetCommitResponse{}
		for _, t := range req.Topics {
			out := msg.OffsetCommitResponseTopic{Name: t.Name}
			for _, p := range t.Partitions {
				out.Partitions = append(out.Partitions, msg.OffsetCommitResponsePartition{PartitionIndex: p.PartitionIndex, ErrorCode: code})
			}
			resp.Topics = append(resp.Topics, out)
		}
		return resp
	case *msg.OffsetFetchRequest:
		resp := &msg.OffsetFetchResponse{}
		switch {
		case rc.version >= 8:
			for _, g := range req.Groups {
				resp.Groups = append(resp.Groups, msg.OffsetFetchResponseGroup{GroupId: g.GroupId, ErrorCode: code})
			}
		case rc.version >= 2:
			resp.ErrorCode = code
		default: // v1 has errors per partition only
			for _, t := range req.Topics {
				out := msg.OffsetFetchResponseTopic{Name: t.Name}
				for _, p := range t.PartitionIndexes {
					out.Partitions = append(out.Partitions, msg.OffsetFetchResponsePartition{PartitionIndex: p, CommittedOffset: -1, CommittedLeaderEpoch: -1, ErrorCode: code})
				}
				resp.Topics = append(resp.Topics, out)
			}
		}
		return resp
	case *msg.JoinGroupRequest:
		resp := &msg.JoinGroupResponse{}
		resp.Default()
		resp.ErrorCode = code
		return resp
	case *msg.HeartbeatRequest:
		return &msg.HeartbeatResponse{ErrorCode: code}
	case *msg.LeaveGroupRequest:
		return &msg.LeaveGroupResponse{ErrorCode: code}
	case *msg.SyncGroupRequest:
		return &msg.SyncGroupResponse{ErrorCode: code}
	case *msg.DescribeGroupsRequest:
		resp := &msg.DescribeGroupsResponse{}
		for _, id := range req.Groups {
			g := msg.DescribeGroupsResponseDescribedGroup{}
			g.Default()
			g.GroupId, g.ErrorCode = id, code
			resp.Groups = append(resp.Groups, g)
		}
		return resp
	case *msg.ListGroupsRequest:
		return &msg.ListGroupsResponse{}
	case *msg.TxnOffsetCommitRequest:
		return txnOffsetCommitFailed(req, kerr.NotCoordinator)
	case *msg.DeleteGroupsRequest:
		resp := &msg.DeleteGroupsResponse{}
		for _, id := range req.GroupsNames {
			resp.Results = append(resp.Results, msg.DeleteGroupsResponseDeletableGroupResult{GroupId: id, ErrorCode: code})
		}
		return resp
	case *msg.OffsetDeleteRequest:
		return &msg.OffsetDeleteResponse{ErrorCode: code}
	case *msg.ConsumerGroupHeartbeatRequest:
		resp := &msg.ConsumerGroupHeartbeatResponse{}
		resp.Default()
		resp.ErrorCode = code
		return resp
	case *msg.ConsumerGroupDescribeRequest:
		resp := &msg.ConsumerGroupDescribeResponse{}
		for _, id := range req.GroupIds {
			g := msg.ConsumerGroupDescribeResponseDescribedGroup{}
			g.Default()
			g.GroupId, g.ErrorCode = id, code
			resp.Groups = append(resp.Groups, g)
		}
		return resp
	}
	return nil
}
