// Package msg holds the request and response bodies of every Kafka API, as
// Go structs with codecs generated from Apache Kafka's JSON message
// definitions (../../../shared/kafka-messages, kept outside the repository).
//
// Each message type T (ProduceRequest, FetchResponse, ...) has:
//
//	Default()                         sets the JSON "default" of every field
//	Read(r *wire.Reader, version)     decodes; errors stay sticky in r
//	Decode(b []byte, version) error   Read over b; ErrUnsupportedVersion outside Versions()
//	Append(dst []byte, version) []byte encodes the body (no header, no size)
//	APIKey() int16, Versions() VersionRange
//
// Nested structs are named <Message><JSONName>, or just <JSONName> when that
// already starts with the message name. Field names are the JSON names. A
// string that is nullable in some version is *string; a nullable struct is
// *T; a null array or bytes is nil. Byte fields (bytes, records) alias the
// decoded input: the caller owns the input buffer's lifetime.
//
// Where a pointer field is nil in a version where it is not nullable,
// Append writes the empty value (empty string, default struct) rather
// than failing. Fields absent from a version are neither read nor written;
// unknown tagged fields are skipped on read and never written. Bytes left
// after a complete body are ignored, as kmsg does; whether Kafka itself
// rejects them has not been verified.
//
// Regenerate with `make generate` (go generate ./wire/msg).
package msg

//go:generate go run ../internal/msggen -in ../../../shared/kafka-messages -out .
