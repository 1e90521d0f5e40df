package api

import (
	"regexp"
	"sort"
	"time"

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
	for _, f := range features {
		resp.SupportedFeatures = append(resp.SupportedFeatures, msg.ApiVersionsResponseSupportedFeatureKey{Name: f.name, MinVersion: f.min, MaxVersion: f.max})
		resp.FinalizedFeatures = append(resp.FinalizedFeatures, msg.ApiVersionsResponseFinalizedFeatureKey{Name: f.name, MinVersionLevel: f.finalized, MaxVersionLevel: f.finalized})
	}
	// Clients take a finalized set only with a higher epoch than the one
	// they hold: a restart (an upgrade) must raise it.
	resp.FinalizedFeaturesEpoch = startEpoch
	return resp
}

// startEpoch is the finalized features' epoch: the process's start time.
var startEpoch = time.Now().UnixMilli()

// feature is one of Kafka's feature flags (KIP-584), as a broker reports it
// in ApiVersions (v3+) and kafka-features describe shows it.
type feature struct {
	name                string
	min, max, finalized int16
}

// features: metadata.version at the level of the Kafka release whose
// message definitions the codecs come from (3.9-IV0, level 21; 3.3-IV3,
// level 7, is the oldest Kafka 4 takes), and group.version 1, the consumer
// group protocol of KIP-848, served. Features at level 0 only are not
// listed, as Kafka lists none finalized at 0 (older Java admin clients
// refuse such a range): transaction.version is 0, KIP-890's second part
// (EndTxn v5) not being served, so clients keep to the first; kraft.version
// 0, a static quorum of one voter.
var features = []feature{
	{name: "group.version", min: 0, max: 1, finalized: 1},
	{name: "metadata.version", min: 7, max: 21, finalized: 21},
}

func (h *Handler) apiVersions(rc *request, req *msg.ApiVersionsRequest) *Response {
	resp := h.versions
	if rc.version >= 3 && (!clientSoftwarePattern.MatchString(req.ClientSoftwareName) || !clientSoftwarePattern.MatchString(req.ClientSoftwareVersion)) {
		resp.ErrorCode = int16(kerr.InvalidRequest)
	}
	if rc.version < 4 {
		// As Kafka: before v4, supported features whose minimum is 0 are
		// left out (older clients refuse a range that starts at 0).
		resp.SupportedFeatures = nil
		for _, f := range h.versions.SupportedFeatures {
			if f.MinVersion > 0 {
				resp.SupportedFeatures = append(resp.SupportedFeatures, f)
			}
		}
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
