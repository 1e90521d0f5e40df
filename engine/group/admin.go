package group

import (
	"math"
	"sort"
	"strings"

	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

// allGroupOperations is the authorized-operations bitfield for a principal
// allowed everything on a group (sluice has no ACLs): READ(3), DELETE(6),
// DESCRIBE(8).
const allGroupOperations = 1<<3 | 1<<6 | 1<<8

// authorizedOperationsOmitted is Kafka's value when they were not asked for.
const authorizedOperationsOmitted = math.MinInt32

func (c *Coordinator) sortedGroups() []*Group {
	out := make([]*Group, 0, len(c.groups))
	for _, g := range c.groups {
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// DescribeGroups serves DescribeGroups. A group that does not exist is
// described as Dead with no error, as Kafka does below v6.
func (c *Coordinator) DescribeGroups(rc Request, req *msg.DescribeGroupsRequest) *msg.DescribeGroupsResponse {
	resp := &msg.DescribeGroupsResponse{}
	for _, id := range req.Groups {
		d := msg.DescribeGroupsResponseDescribedGroup{GroupId: id, Members: []msg.DescribeGroupsResponseDescribedGroupMember{}, AuthorizedOperations: authorizedOperationsOmitted}
		if req.IncludeAuthorizedOperations {
			d.AuthorizedOperations = allGroupOperations
		}
		switch {
		case c.loadingCode(id) != kerr.None:
			d.ErrorCode = int16(kerr.CoordinatorLoadInProgress)
		case !ValidGroupID(id):
			d.ErrorCode = int16(kerr.InvalidGroupID)
		default:
			g := c.group(id)
			if g == nil {
				d.GroupState = stateDead.String()
				break
			}
			d.GroupState = g.stateName()
			d.ProtocolType = g.protocolType()
			if g.kind == kindConsumer {
				for _, m := range g.consumer.sortedMembers() {
					d.Members = append(d.Members, msg.DescribeGroupsResponseDescribedGroupMember{
						MemberId: m.id, GroupInstanceId: m.instanceID, ClientId: m.clientID, ClientHost: m.clientHost,
						MemberMetadata: []byte{}, MemberAssignment: []byte{},
					})
				}
				break
			}
			cg := &g.classic
			stable := cg.state == stateStable
			if stable {
				d.ProtocolData = cg.protocol
			}
			for _, mid := range cg.order {
				m := cg.members[mid]
				dm := msg.DescribeGroupsResponseDescribedGroupMember{
					MemberId: m.id, GroupInstanceId: m.instanceID, ClientId: m.clientID, ClientHost: m.clientHost,
					MemberMetadata: []byte{}, MemberAssignment: []byte{},
				}
				if stable {
					if md, ok := m.metadataFor(cg.protocol); ok {
						dm.MemberMetadata = md
					}
					if m.assignment != nil {
						dm.MemberAssignment = m.assignment
					}
				}
				d.Members = append(d.Members, dm)
			}
		}
		resp.Groups = append(resp.Groups, d)
	}
	return resp
}

// ListGroups serves ListGroups, with the state filter (v4+) and the type
// filter (v5), both case-insensitive.
func (c *Coordinator) ListGroups(rc Request, req *msg.ListGroupsRequest) *msg.ListGroupsResponse {
	resp := &msg.ListGroupsResponse{Groups: []msg.ListGroupsResponseListedGroup{}}
	if !c.allLoaded() {
		resp.ErrorCode = int16(kerr.CoordinatorLoadInProgress)
		return resp
	}
	states := lowerSet(req.StatesFilter)
	types := lowerSet(req.TypesFilter)
	for _, g := range c.sortedGroups() {
		state := g.stateName()
		if len(states) > 0 && !states[strings.ToLower(state)] {
			continue
		}
		if len(types) > 0 && !types[g.kind.String()] {
			continue
		}
		resp.Groups = append(resp.Groups, msg.ListGroupsResponseListedGroup{
			GroupId: g.id, ProtocolType: g.protocolType(), GroupState: state, GroupType: g.kind.String(),
		})
	}
	return resp
}

func lowerSet(in []string) map[string]bool {
	out := map[string]bool{}
	for _, s := range in {
		out[strings.ToLower(s)] = true
	}
	return out
}

// DeleteGroups serves DeleteGroups: each empty group's offsets and metadata
// are tombstoned; reply runs once every tombstone is durable.
func (c *Coordinator) DeleteGroups(rc Request, req *msg.DeleteGroupsRequest, reply func(*msg.DeleteGroupsResponse)) {
	resp := &msg.DeleteGroupsResponse{}
	pending := 1 // released after the loop
	finish := func() {
		pending--
		if pending == 0 {
			reply(resp)
		}
	}
	resp.Results = make([]msg.DeleteGroupsResponseDeletableGroupResult, len(req.GroupsNames))
	for i, id := range req.GroupsNames {
		res := &resp.Results[i]
		res.GroupId = id
		switch {
		case !ValidGroupID(id):
			res.ErrorCode = int16(kerr.InvalidGroupID)
			continue
		case c.loadingCode(id) != kerr.None:
			res.ErrorCode = int16(kerr.CoordinatorLoadInProgress)
			continue
		}
		g := c.group(id)
		switch {
		case g == nil:
			res.ErrorCode = int16(kerr.GroupIDNotFound)
			continue
		case !g.empty():
			res.ErrorCode = int16(kerr.NonEmptyGroup)
			continue
		}
		recs := groupTombstones(g)
		c.dropGroup(g)
		pending++
		c.write(g.partition, recs, func(err error) {
			if err != nil {
				res.ErrorCode = int16(appendError(err))
			}
			finish()
		})
	}
	finish()
}
