package api

import (
	"github.com/sluice-broker/sluice/engine/meta"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

// DeleteTopics v1 is Kafka 4's minimum; v6 deletes by topic ID too.
var _ = register(&handler{key: 20, min: 1, max: 6, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	return respond(rc, h.deleteTopics(rc, body.(*msg.DeleteTopicsRequest)))
}})

func (h *Handler) deleteTopics(rc *request, req *msg.DeleteTopicsRequest) *msg.DeleteTopicsResponse {
	var resp msg.DeleteTopicsResponse
	resp.Default()
	type target struct {
		name *string
		id   [16]byte
	}
	var targets []target
	if rc.version >= 6 {
		for _, t := range req.Topics {
			targets = append(targets, target{t.Name, t.TopicId})
		}
	} else {
		for _, n := range req.TopicNames {
			n := n
			targets = append(targets, target{name: &n})
		}
	}
	for _, tg := range targets {
		var out msg.DeleteTopicsResponseDeletableTopicResult
		out.Default()
		out.Name, out.TopicId = tg.name, tg.id
		name := ""
		switch {
		case tg.name != nil:
			name = *tg.name
		default:
			t, ok := h.b.Meta.Snapshot().ByID[meta.TopicID(tg.id)]
			if !ok {
				out.ErrorCode = int16(kerr.UnknownTopicID)
				resp.Responses = append(resp.Responses, out)
				continue
			}
			name = t.Name
			out.Name = &t.Name
		}
		t, err := h.b.DeleteTopic(name)
		if err != nil {
			out.ErrorCode, out.ErrorMessage = errorCode(err)
		} else {
			out.TopicId = t.ID
		}
		resp.Responses = append(resp.Responses, out)
	}
	return &resp
}
