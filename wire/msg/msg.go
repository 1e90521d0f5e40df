package msg

import (
	"errors"
	"fmt"
	"math"

	"github.com/sluice-broker/sluice/wire"
)

// Message is any generated request or response body.
type Message interface {
	// APIKey returns the Kafka API key of the message.
	APIKey() int16
	// Default sets every field to its Kafka default.
	Default()
	// Read decodes the message in version from r; errors stay in r.
	Read(r *wire.Reader, version int16)
	// Decode decodes b as the message in version.
	Decode(b []byte, version int16) error
	// Append appends the body encoded in version to dst.
	Append(dst []byte, version int16) []byte
	// Versions returns the versions Kafka defines for the message.
	Versions() VersionRange
}

// Request is a request body.
type Request interface {
	Message
	isRequest()
}

// Response is a response body.
type Response interface {
	Message
	isResponse()
}

// NeverFlexible is VersionRange.FlexibleMin for APIs with no flexible
// version, so that "version >= FlexibleMin" is the flexibility test for
// every API.
const NeverFlexible = math.MaxInt16

// VersionRange is the inclusive range of versions of an API, and the first
// flexible (KIP-482) version, NeverFlexible if none.
type VersionRange struct{ Min, Max, FlexibleMin int16 }

// Contains reports whether version is in [Min, Max].
func (v VersionRange) Contains(version int16) bool { return version >= v.Min && version <= v.Max }

// IsFlexible reports whether version of the API uses flexible encodings
// (compact strings/arrays, tagged fields, request header v2).
func IsFlexible(apiKey, version int16) bool {
	vr, ok := RequestVersions(apiKey)
	return ok && version >= vr.FlexibleMin
}

// ResponseHeaderFlexible reports whether the response to version of apiKey
// uses response header v1 (with tagged fields). It is IsFlexible, except
// that ApiVersions responses always use header v0 so that a client can parse
// the response to a version the broker does not support (KIP-511).
func ResponseHeaderFlexible(apiKey, version int16) bool {
	if apiKey == APIKeyApiVersions {
		return false
	}
	return IsFlexible(apiKey, version)
}

// APIKeys returns every API key with generated codecs, ascending.
func APIKeys() []int16 { return append([]int16(nil), apiKeys...) }

// ErrUnsupportedVersion is returned by Decode for a version outside the
// message's range.
var ErrUnsupportedVersion = errors.New("msg: unsupported version")

func errVersion(apiKey, version int16) error {
	return fmt.Errorf("%w: %s v%d", ErrUnsupportedVersion, APIName(apiKey), version)
}

// insertSize inserts the UNSIGNED_VARINT length of dst[start:] at start:
// tagged fields are size-prefixed, and the size is known only after the
// value is encoded.
func insertSize(dst []byte, start int) []byte {
	size := uint32(len(dst) - start)
	n := wire.UvarintLen(size)
	for range n {
		dst = append(dst, 0)
	}
	copy(dst[start+n:], dst[start:len(dst)-n])
	wire.AppendUvarint(dst[:start], size)
	return dst
}

// deref returns *s, or "" for nil.
func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// ptr returns a pointer to a copy of v.
func ptr[T any](v T) *T { return &v }
