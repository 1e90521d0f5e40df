package api

import (
	"sort"
	"strconv"

	"github.com/sluice-broker/sluice/engine/config"
	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

// DescribeConfigs v1 is Kafka 4's minimum.
var _ = register(&handler{key: 32, min: 1, max: 4, serve: func(h *Handler, rc *request, body msg.Request) *Response {
	return respond(rc, h.describeConfigs(rc, body.(*msg.DescribeConfigsRequest)))
}})

// Config resource types, as the admin APIs number them.
const (
	resourceTopic  = 2
	resourceBroker = 4
)

func (h *Handler) describeConfigs(rc *request, req *msg.DescribeConfigsRequest) *msg.DescribeConfigsResponse {
	var resp msg.DescribeConfigsResponse
	resp.Default()
	for _, res := range req.Resources {
		out := msg.DescribeConfigsResponseDescribeConfigsResult{ResourceType: res.ResourceType, ResourceName: res.ResourceName}
		var entries []config.Entry
		switch res.ResourceType {
		case resourceTopic:
			t, ok := h.b.Meta.Topic(res.ResourceName)
			if !ok {
				out.ErrorCode = int16(kerr.UnknownTopicOrPartition)
				out.ErrorMessage = strPtr("unknown topic " + res.ResourceName)
				resp.Results = append(resp.Results, out)
				continue
			}
			entries = h.b.TopicConfig(t).Entries()
		case resourceBroker:
			if res.ResourceName != "" && res.ResourceName != strconv.Itoa(int(h.b.Cfg.NodeID)) {
				out.ErrorCode = int16(kerr.InvalidRequest)
				out.ErrorMessage = strPtr("unexpected broker id, expected " + strconv.Itoa(int(h.b.Cfg.NodeID)))
				resp.Results = append(resp.Results, out)
				continue
			}
			entries = h.brokerEntries()
		default:
			out.ErrorCode = int16(kerr.InvalidRequest)
			out.ErrorMessage = strPtr("unsupported resource type " + strconv.Itoa(int(res.ResourceType)))
			resp.Results = append(resp.Results, out)
			continue
		}
		want := map[string]bool{}
		for _, k := range res.ConfigurationKeys {
			want[k] = true
		}
		for _, e := range entries {
			if res.ConfigurationKeys != nil && !want[e.Key.Name] {
				continue
			}
			out.Configs = append(out.Configs, h.describeEntry(rc, req, res.ResourceType, e))
		}
		resp.Results = append(resp.Results, out)
	}
	return &resp
}

func (h *Handler) describeEntry(rc *request, req *msg.DescribeConfigsRequest, resourceType int8, e config.Entry) msg.DescribeConfigsResponseDescribeConfigsResourceResult {
	v := e.Value
	r := msg.DescribeConfigsResponseDescribeConfigsResourceResult{
		Name:         e.Key.Name,
		Value:        &v,
		ReadOnly:     resourceType == resourceBroker,
		IsDefault:    e.Source == config.SourceDefault,
		ConfigSource: int8(e.Source),
		ConfigType:   int8(e.Key.Type),
	}
	sensitive := config.Sensitive(e.Key.Name)
	if sensitive {
		r.Value, r.IsSensitive = nil, true // as Kafka: never shown
	}
	if req.IncludeDocumentation {
		r.Documentation = strPtr(e.Key.Doc)
	}
	if req.IncludeSynonyms {
		r.Synonyms = []msg.DescribeConfigsResponseDescribeConfigsSynonym{}
		if resourceType == resourceTopic {
			if o, ok := h.topicOverride(e); ok {
				r.Synonyms = append(r.Synonyms, o)
			}
		}
		if resourceType == resourceBroker && e.Source == config.SourceStaticBroker && !sensitive {
			r.Synonyms = append(r.Synonyms, msg.DescribeConfigsResponseDescribeConfigsSynonym{Name: e.Key.Name, Value: strPtr(e.Value), Source: int8(config.SourceStaticBroker)})
		} else if e.Key.BrokerSynonym != "" && !sensitive {
			if bv, ok := h.b.Cfg.Props[e.Key.BrokerSynonym]; ok {
				r.Synonyms = append(r.Synonyms, msg.DescribeConfigsResponseDescribeConfigsSynonym{Name: e.Key.BrokerSynonym, Value: strPtr(bv), Source: int8(config.SourceStaticBroker)})
			}
		}
		name := e.Key.Name
		if e.Key.BrokerSynonym != "" {
			name = e.Key.BrokerSynonym
		}
		r.Synonyms = append(r.Synonyms, msg.DescribeConfigsResponseDescribeConfigsSynonym{Name: name, Value: strPtr(e.Key.Default), Source: int8(config.SourceDefault)})
	}
	return r
}

func (h *Handler) topicOverride(e config.Entry) (msg.DescribeConfigsResponseDescribeConfigsSynonym, bool) {
	if e.Source != config.SourceDynamicTopic {
		return msg.DescribeConfigsResponseDescribeConfigsSynonym{}, false
	}
	return msg.DescribeConfigsResponseDescribeConfigsSynonym{Name: e.Key.Name, Value: strPtr(e.Value), Source: int8(config.SourceDynamicTopic)}, true
}

// brokerEntries lists the broker's own settings: those sluice honours
// (config.BrokerKeys), every broker-level synonym of a topic config, plus
// whatever else server.properties set.
func (h *Handler) brokerEntries() []config.Entry {
	seen := map[string]bool{}
	var out []config.Entry
	for _, k := range config.BrokerKeys {
		seen[k.Name] = true
		def := k.Default(h.b.Cfg)
		e := config.Entry{Key: config.TopicKey{Name: k.Name, Type: k.Type, Default: def, Doc: k.Doc}, Value: def, Source: config.SourceDefault}
		if v, ok := h.b.Cfg.Props[k.Name]; ok {
			e.Source = config.SourceStaticBroker
			if !k.Live {
				e.Value = v
			}
		}
		out = append(out, e)
	}
	for _, k := range config.TopicKeys {
		if k.BrokerSynonym == "" || seen[k.BrokerSynonym] {
			continue
		}
		seen[k.BrokerSynonym] = true
		e := config.Entry{Key: config.TopicKey{Name: k.BrokerSynonym, Type: k.Type, Default: k.Default, Doc: k.Doc}, Value: k.Default, Source: config.SourceDefault}
		if v, ok := h.b.Cfg.Props[k.BrokerSynonym]; ok {
			e.Value, e.Source = v, config.SourceStaticBroker
		}
		out = append(out, e)
	}
	for k, v := range h.b.Cfg.Props {
		if !seen[k] {
			seen[k] = true
			out = append(out, config.Entry{Key: config.TopicKey{Name: k, Type: config.TypeString}, Value: v, Source: config.SourceStaticBroker})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key.Name < out[j].Key.Name })
	return out
}
