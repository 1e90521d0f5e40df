package api

import (
	"net"
	"strconv"

	"github.com/sluice-broker/sluice/engine"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

// BrokerRegistration is how a Kafka broker joins its cluster's controller;
// a sluice standby sends it to its primary, which plays the controller's
// part: it checks the cluster id and the node id, and records the
// standby's address, which Metadata then lists as every partition's second
// replica. Replica fetches are served only to the registered node.
var _ = register(&handler{key: 62, min: 0, max: 4, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	return respond(rc, h.brokerRegistration(body.(*msg.BrokerRegistrationRequest)))
}})

func (h *Handler) brokerRegistration(req *msg.BrokerRegistrationRequest) *msg.BrokerRegistrationResponse {
	resp := &msg.BrokerRegistrationResponse{BrokerEpoch: -1}
	if len(req.Listeners) == 0 {
		resp.ErrorCode = int16(kerr.InvalidRequest)
		return resp
	}
	l := req.Listeners[0]
	peer := engine.Peer{NodeID: req.BrokerId, Host: l.Host, Port: int32(l.Port)}
	for _, x := range req.Listeners[1:] {
		if x.Name == AdminListenerName {
			peer.AdminAddr = net.JoinHostPort(x.Host, strconv.Itoa(int(x.Port)))
		}
	}
	if req.Rack != nil {
		peer.Rack = *req.Rack
	}
	if err := h.b.RegisterStandby(peer, req.ClusterId); err != nil {
		code, _ := errorCode(err)
		resp.ErrorCode = code
		h.log.Warn("standby registration refused", "node_id", req.BrokerId, "cluster_id", req.ClusterId, "err", err)
		return resp
	}
	resp.BrokerEpoch = 1
	return resp
}

// AdminListenerName names, in a standby's BrokerRegistration, its --http
// listener (after its Kafka listener): a hand-over asks it there to take
// the primary role.
const AdminListenerName = "SLUICE_ADMIN"

// standbyID is the registered standby's node id, or -1.
func (h *Handler) standbyID() int32 {
	if p, ok := h.b.Peer(); ok {
		return p.NodeID
	}
	return -1
}

// primaryNode is the node every partition's leader is: this one, or on a
// standby the primary it follows (-1 while unknown).
func (h *Handler) primaryNode() (id int32, host string, port int32) {
	if !h.b.IsStandby() {
		host, port, _ := h.b.Cfg.AdvertisedAddress()
		return h.b.Cfg.NodeID, host, port
	}
	if p, ok := h.b.Peer(); ok {
		return p.NodeID, p.Host, p.Port
	}
	return -1, "", -1
}
