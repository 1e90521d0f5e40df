package groups

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// direct sends a request to the broker as is: no coordinator lookup, no
// retries.
func direct[R kmsg.Response](t *testing.T, cl *kgo.Client, req kmsg.Request) R {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := cl.Broker(1).Request(ctx, req)
	if err != nil {
		t.Fatalf("%T: %v", req, err)
	}
	return resp.(R)
}

func wantCode(t *testing.T, what string, got int16, want *kerr.Error) {
	t.Helper()
	if got != want.Code {
		t.Errorf("%s: %v, want %v", what, kerr.ErrorForCode(got), want)
	}
}

func subscription(topics ...string) []byte {
	s := kmsg.NewConsumerMemberMetadata()
	s.Topics = topics
	return s.AppendTo(nil)
}

func joinReq(group, member string, metadata []byte) *kmsg.JoinGroupRequest {
	req := kmsg.NewPtrJoinGroupRequest()
	req.Group, req.MemberID, req.ProtocolType = group, member, "consumer"
	req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = 10000, 10000
	req.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: metadata}}
	return req
}

// joinLeader makes cl the only member (and leader) of a Stable group.
func joinLeader(t *testing.T, cl *kgo.Client, group string) (string, int32) {
	t.Helper()
	first := direct[*kmsg.JoinGroupResponse](t, cl, joinReq(group, "", subscription("t")))
	wantCode(t, "first join", first.ErrorCode, kerr.MemberIDRequired)
	jr := direct[*kmsg.JoinGroupResponse](t, cl, joinReq(group, first.MemberID, subscription("t")))
	if jr.ErrorCode != 0 {
		t.Fatalf("join: %v", kerr.ErrorForCode(jr.ErrorCode))
	}
	sync := kmsg.NewPtrSyncGroupRequest()
	sync.Group, sync.Generation, sync.MemberID = group, jr.Generation, jr.MemberID
	sync.GroupAssignment = []kmsg.SyncGroupRequestGroupAssignment{{MemberID: jr.MemberID, MemberAssignment: []byte{0, 0}}}
	if sr := direct[*kmsg.SyncGroupResponse](t, cl, sync); sr.ErrorCode != 0 {
		t.Fatalf("sync: %v", kerr.ErrorForCode(sr.ErrorCode))
	}
	return jr.MemberID, jr.Generation
}

// TestBadGroupInput: malformed or mistaken group requests get Kafka's error
// codes, and the broker keeps serving.
func TestBadGroupInput(t *testing.T) {
	b := startBroker(t, nil)
	cl := b.client(t)
	createTopic(t, b.admin(t), "t", 2)
	member, gen := joinLeader(t, cl, "g")

	t.Run("join", func(t *testing.T) {
		req := joinReq("g", "", subscription("t"))
		req.ProtocolType = "connect"
		wantCode(t, "other protocol type", direct[*kmsg.JoinGroupResponse](t, cl, req).ErrorCode, kerr.InconsistentGroupProtocol)
		req = joinReq("g", "", subscription("t"))
		req.Protocols[0].Name = "no-such-assignor"
		wantCode(t, "unknown protocol", direct[*kmsg.JoinGroupResponse](t, cl, req).ErrorCode, kerr.InconsistentGroupProtocol)
		req = joinReq("new-group", "", nil)
		req.Protocols = nil
		wantCode(t, "no protocols", direct[*kmsg.JoinGroupResponse](t, cl, req).ErrorCode, kerr.InconsistentGroupProtocol)
		req = joinReq("g", "", subscription("t"))
		req.SessionTimeoutMillis = 10
		wantCode(t, "session timeout too small", direct[*kmsg.JoinGroupResponse](t, cl, req).ErrorCode, kerr.InvalidSessionTimeout)
		req = joinReq("", "", subscription("t"))
		wantCode(t, "empty group id", direct[*kmsg.JoinGroupResponse](t, cl, req).ErrorCode, kerr.InvalidGroupID)
		req = joinReq("g", "not-a-member", subscription("t"))
		wantCode(t, "unknown member", direct[*kmsg.JoinGroupResponse](t, cl, req).ErrorCode, kerr.UnknownMemberID)
	})

	t.Run("generations", func(t *testing.T) {
		hb := kmsg.NewPtrHeartbeatRequest()
		hb.Group, hb.Generation, hb.MemberID = "g", gen+1, member
		wantCode(t, "heartbeat, wrong generation", direct[*kmsg.HeartbeatResponse](t, cl, hb).ErrorCode, kerr.IllegalGeneration)
		hb.Generation, hb.MemberID = gen, "stranger"
		wantCode(t, "heartbeat, unknown member", direct[*kmsg.HeartbeatResponse](t, cl, hb).ErrorCode, kerr.UnknownMemberID)
		sync := kmsg.NewPtrSyncGroupRequest()
		sync.Group, sync.Generation, sync.MemberID = "g", gen-1, member
		wantCode(t, "sync, wrong generation", direct[*kmsg.SyncGroupResponse](t, cl, sync).ErrorCode, kerr.IllegalGeneration)
		commit := kmsg.NewPtrOffsetCommitRequest()
		commit.Group, commit.Generation, commit.MemberID = "g", gen+7, member
		commit.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 1}}}}
		resp := direct[*kmsg.OffsetCommitResponse](t, cl, commit)
		wantCode(t, "commit, wrong generation", resp.Topics[0].Partitions[0].ErrorCode, kerr.IllegalGeneration)
	})

	t.Run("commits", func(t *testing.T) {
		commit := kmsg.NewPtrOffsetCommitRequest()
		commit.Group, commit.Generation, commit.MemberID = "g", gen, member
		commit.Topics = []kmsg.OffsetCommitRequestTopic{
			{Topic: "no-such-topic", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 1}}},
			{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 9, Offset: 1}, {Partition: 1, Offset: 5}}},
		}
		resp := direct[*kmsg.OffsetCommitResponse](t, cl, commit)
		wantCode(t, "unknown topic", resp.Topics[0].Partitions[0].ErrorCode, kerr.UnknownTopicOrPartition)
		wantCode(t, "unknown partition", resp.Topics[1].Partitions[0].ErrorCode, kerr.UnknownTopicOrPartition)
		if resp.Topics[1].Partitions[1].ErrorCode != 0 {
			t.Errorf("a good partition beside bad ones: %v", kerr.ErrorForCode(resp.Topics[1].Partitions[1].ErrorCode))
		}
		md := string(bytes.Repeat([]byte("m"), 5000))
		commit.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 1, Metadata: &md}}}}
		resp = direct[*kmsg.OffsetCommitResponse](t, cl, commit)
		wantCode(t, "metadata too large", resp.Topics[0].Partitions[0].ErrorCode, kerr.OffsetMetadataTooLarge)
		commit.Group = "never-seen"
		resp = direct[*kmsg.OffsetCommitResponse](t, cl, commit)
		wantCode(t, "commit with a generation into an unknown group", resp.Topics[0].Partitions[0].ErrorCode, kerr.GroupIDNotFound)
	})

	t.Run("oversized metadata", func(t *testing.T) {
		// Kafka accepts the join and fails when the group's record does not
		// fit the offsets topic's max.message.bytes: the SyncGroup answers
		// UNKNOWN_SERVER_ERROR.
		big := bytes.Repeat([]byte{1}, 2<<20)
		first := direct[*kmsg.JoinGroupResponse](t, cl, joinReq("big", "", big))
		wantCode(t, "first join", first.ErrorCode, kerr.MemberIDRequired)
		jr := direct[*kmsg.JoinGroupResponse](t, cl, joinReq("big", first.MemberID, big))
		if jr.ErrorCode != 0 || len(jr.Members) != 1 || len(jr.Members[0].ProtocolMetadata) != len(big) {
			t.Fatalf("join with big metadata: %v", kerr.ErrorForCode(jr.ErrorCode))
		}
		sync := kmsg.NewPtrSyncGroupRequest()
		sync.Group, sync.Generation, sync.MemberID = "big", jr.Generation, jr.MemberID
		wantCode(t, "sync of an oversized group", direct[*kmsg.SyncGroupResponse](t, cl, sync).ErrorCode, kerr.UnknownServerError)
	})

	t.Run("consumer protocol", func(t *testing.T) {
		hb := kmsg.NewPtrConsumerGroupHeartbeatRequest()
		hb.Group, hb.MemberID, hb.MemberEpoch, hb.RebalanceTimeoutMillis = "cg", "m1", 0, -1
		hb.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
		hb.SubscribedTopicNames = []string{"t"}
		resp := direct[*kmsg.ConsumerGroupHeartbeatResponse](t, cl, hb)
		wantCode(t, "join without a rebalance timeout", resp.ErrorCode, kerr.InvalidRequest)
		hb.RebalanceTimeoutMillis = 10000
		assignor := "no-such-assignor"
		hb.ServerAssignor = &assignor
		wantCode(t, "unknown assignor", direct[*kmsg.ConsumerGroupHeartbeatResponse](t, cl, hb).ErrorCode, kerr.UnsupportedAssignor)
		hb.ServerAssignor = nil
		regex := "(unclosed"
		hb.SubscribedTopicRegex, hb.SubscribedTopicNames = &regex, nil
		wantCode(t, "invalid regex", direct[*kmsg.ConsumerGroupHeartbeatResponse](t, cl, hb).ErrorCode, kerr.InvalidRegularExpression)
		hb.SubscribedTopicRegex, hb.SubscribedTopicNames = nil, []string{"t"}
		hb.Group = "g" // a classic group
		wantCode(t, "classic group", direct[*kmsg.ConsumerGroupHeartbeatResponse](t, cl, hb).ErrorCode, kerr.GroupIDNotFound)
		hb.Group, hb.MemberEpoch = "cg", 5
		wantCode(t, "unknown member", direct[*kmsg.ConsumerGroupHeartbeatResponse](t, cl, hb).ErrorCode, kerr.GroupIDNotFound)
	})

	t.Run("admin", func(t *testing.T) {
		del := kmsg.NewPtrDeleteGroupsRequest()
		del.Groups = []string{"g", "missing", ""}
		resp := direct[*kmsg.DeleteGroupsResponse](t, cl, del)
		wantCode(t, "delete a live group", resp.Groups[0].ErrorCode, kerr.NonEmptyGroup)
		wantCode(t, "delete a missing group", resp.Groups[1].ErrorCode, kerr.GroupIDNotFound)
		wantCode(t, "delete an empty group id", resp.Groups[2].ErrorCode, kerr.InvalidGroupID)
		od := kmsg.NewPtrOffsetDeleteRequest()
		od.Group = "missing"
		wantCode(t, "offset delete, missing group", direct[*kmsg.OffsetDeleteResponse](t, cl, od).ErrorCode, kerr.GroupIDNotFound)
		fc := kmsg.NewPtrFindCoordinatorRequest()
		fc.CoordinatorType = 7
		fc.CoordinatorKeys = []string{"x"}
		fr := direct[*kmsg.FindCoordinatorResponse](t, cl, fc)
		if len(fr.Coordinators) != 1 {
			t.Fatalf("find coordinator: %+v", fr)
		}
		wantCode(t, "unknown coordinator type", fr.Coordinators[0].ErrorCode, kerr.InvalidRequest)
	})

	if err := probe(b.addr); err != nil {
		t.Fatalf("the broker stopped answering: %v", err)
	}
	// And it still runs groups.
	joinLeader(t, cl, "after")
}
