package api

import (
	"regexp"
	"sort"

	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

const apiVersionsKey = 18

var _ = register(&handler{key: apiVersionsKey, min: 0, max: 4, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	return h.apiVersions(rc, body.(*msg.ApiVersionsRequest))
}})

// clientSoftwarePattern is Kafka's rule for ClientSoftwareName and
// ClientSoftwareVersion (KIP-511).
var clientSoftwarePattern = regexp.MustCompile(`^[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?$`)

func supportedVersions() msg.ApiVersionsResponse {
	var resp msg.ApiVersionsResponse
	resp.Default()
	sorted := append([]*handler(nil), handlers...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].key < sorted[j].key })
	for _, e := range sorted {
		lowest := e.min
		if e.advertiseMin != nil {
			lowest = *e.advertiseMin
		}
		resp.ApiKeys = append(resp.ApiKeys, msg.ApiVersionsResponseApiVersion{ApiKey: e.key, MinVersion: lowest, MaxVersion: e.max})
	}
	return resp
}

func (h *Handler) apiVersions(rc *request, req *msg.ApiVersionsRequest) *Response {
	resp := h.versions
	if rc.version >= 3 && (!clientSoftwarePattern.MatchString(req.ClientSoftwareName) || !clientSoftwarePattern.MatchString(req.ClientSoftwareVersion)) {
		resp.ErrorCode = int16(kerr.InvalidRequest)
	}
	return respond(rc, &resp)
}

// unsupportedAPIVersions answers an ApiVersions request of a version this
// broker does not know: the v0 response with UNSUPPORTED_VERSION and the
// supported list, so the client can pick a version it shares (KIP-511).
func (h *Handler) unsupportedAPIVersions(corr int32) *Response {
	resp := h.versions
	resp.ErrorCode = int16(kerr.UnsupportedVersion)
	return Ready(Part{Bytes: encodeFrame(corr, false, &resp, 0)})
}
