package api

import (
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

var _ = register(&handler{key: 60, min: 0, max: 1, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	return respond(rc, h.describeCluster(body.(*msg.DescribeClusterRequest)))
}})

// allClusterOperations: every cluster operation allowed (no ACLs yet).
const allClusterOperations = 1<<4 | 1<<5 | 1<<7 | 1<<8 | 1<<9 | 1<<10 | 1<<11 | 1<<12

func (h *Handler) describeCluster(req *msg.DescribeClusterRequest) *msg.DescribeClusterResponse {
	var resp msg.DescribeClusterResponse
	resp.Default()
	// EndpointType 1 is brokers; 2 (controllers) is for KRaft controllers,
	// which a single sluice node does not expose separately.
	if req.EndpointType != 1 {
		resp.ErrorCode = int16(kerr.UnsupportedEndpointType)
		resp.ErrorMessage = strPtr("only broker endpoints are served")
		return &resp
	}
	resp.EndpointType = req.EndpointType
	host, port, _ := h.b.Cfg.AdvertisedAddress()
	resp.ClusterId = h.b.Meta.ClusterID()
	resp.ControllerId = h.b.Cfg.NodeID
	resp.Brokers = []msg.DescribeClusterResponseDescribeClusterBroker{{BrokerId: h.b.Cfg.NodeID, Host: host, Port: port}}
	resp.ClusterAuthorizedOperations = authorizedOperationsOmitted
	if req.IncludeClusterAuthorizedOperations {
		resp.ClusterAuthorizedOperations = allClusterOperations
	}
	return &resp
}
