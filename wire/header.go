package wire

// RequestHeader is a decoded request header (v1, or v2 for flexible
// request versions).
//
//	v1: INT16 api_key | INT16 api_version | INT32 correlation_id |
//	    NULLABLE_STRING client_id
//	v2: v1 | tagged fields
//
// client_id stays a classic INT16-length NULLABLE_STRING even in v2, for
// compatibility with brokers that parse it before knowing the version.
// Header v0 (no client_id) was only used by ControlledShutdown v0, which
// Kafka 4 removed; it is not supported.
type RequestHeader struct {
	APIKey        int16
	APIVersion    int16
	CorrelationID int32
	ClientID      *string
}

// ParseRequestHeader decodes the request header at the start of frame (the
// bytes after the 4-byte size prefix) and returns the body that follows it,
// aliasing frame. flexible selects header v2 (tagged fields); decide it with
// msg.IsFlexible after PeekAPIKeyVersion.
func ParseRequestHeader(frame []byte, flexible bool) (h RequestHeader, body []byte, err error) {
	r := NewReader(frame)
	h.APIKey = r.Int16()
	h.APIVersion = r.Int16()
	h.CorrelationID = r.Int32()
	h.ClientID = r.NullableString()
	if flexible {
		r.TaggedFields(nil)
	}
	if err := r.Err(); err != nil {
		return RequestHeader{}, nil, err
	}
	return h, frame[r.Offset():], nil
}

// PeekAPIKeyVersion reads the fixed-width start of a request header: the API
// key, version and correlation ID. ok is false if frame is shorter than 8
// bytes. The correlation ID lets a broker answer even a request it cannot
// parse further.
func PeekAPIKeyVersion(frame []byte) (key, version int16, corr int32, ok bool) {
	if len(frame) < 8 {
		return 0, 0, 0, false
	}
	r := NewReader(frame[:8])
	return r.Int16(), r.Int16(), r.Int32(), true
}

// AppendRequestHeader appends a request header (v2 when flexible, else v1).
func AppendRequestHeader(b []byte, h RequestHeader, flexible bool) []byte {
	b = AppendInt16(b, h.APIKey)
	b = AppendInt16(b, h.APIVersion)
	b = AppendInt32(b, h.CorrelationID)
	b = AppendNullableString(b, h.ClientID)
	if flexible {
		b = AppendEmptyTaggedFields(b)
	}
	return b
}

// AppendResponseHeader appends a response header: v0 is the correlation ID,
// v1 (flexible) adds an empty tagged-field section. Whether a response uses
// v1 is msg.ResponseHeaderFlexible, not simply the request's flexibility:
// ApiVersions responses always use v0 (KIP-511).
func AppendResponseHeader(b []byte, correlationID int32, flexible bool) []byte {
	b = AppendInt32(b, correlationID)
	if flexible {
		b = AppendEmptyTaggedFields(b)
	}
	return b
}

// ParseResponseHeader decodes a response header and returns the body.
func ParseResponseHeader(frame []byte, flexible bool) (correlationID int32, body []byte, err error) {
	r := NewReader(frame)
	correlationID = r.Int32()
	if flexible {
		r.TaggedFields(nil)
	}
	if err := r.Err(); err != nil {
		return 0, nil, err
	}
	return correlationID, frame[r.Offset():], nil
}
