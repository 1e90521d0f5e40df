// Package wire encodes and decodes the Kafka protocol's primitive types and
// request/response headers. The generated message codecs in wire/msg and the
// hand-written Produce/Fetch hot paths are built on these primitives.
//
// All integers are big-endian. The primitive encodings:
//
//	INT8/16/32/64, UINT16/32   fixed width, big-endian, two's complement
//	FLOAT64                    IEEE 754 binary64, big-endian
//	BOOLEAN                    one byte, 0 = false, anything else = true
//	UUID                       16 raw bytes
//	UNSIGNED_VARINT            7 bits per byte, least significant group
//	                           first, high bit set on every byte but the
//	                           last; at most 5 bytes for 32 bits
//	VARINT / VARLONG           zigzag ((n << 1) ^ (n >> 63)) then as an
//	                           unsigned varint; at most 5 / 10 bytes
//
// Length-prefixed data comes in two flavours. Classic (non-flexible)
// versions use a fixed-width length; flexible versions (KIP-482) use
// "compact" forms whose length is an unsigned varint holding length+1, so
// that 0 can mean null:
//
//	STRING                  INT16 n  (n >= 0)            | n bytes UTF-8
//	NULLABLE_STRING         INT16 n  (-1 = null)         | n bytes
//	BYTES / NULLABLE_BYTES  INT32 n  (-1 = null)         | n bytes
//	ARRAY                   INT32 n  (-1 = null)         | n elements
//	COMPACT_STRING          UVARINT n+1  (0 = null)      | n bytes
//	COMPACT_BYTES           UVARINT n+1  (0 = null)      | n bytes
//	COMPACT_ARRAY           UVARINT n+1  (0 = null)      | n elements
//
// Every structure in a flexible version ends with a tagged-field section:
//
//	+----------------+---------------+----------------+------------+---- ...
//	| UVARINT count  | UVARINT tag   | UVARINT size   | size bytes | next
//	+----------------+---------------+----------------+------------+---- ...
//
// An empty section is the single byte 0x00.
//
// Decoding goes through Reader, which reads from a byte slice and keeps the
// first error (sticky): after a failure every method returns zero values,
// so a decoder can read a whole structure and check Err once. Byte slices
// returned by a Reader alias its input; strings are copied. Array counts
// are checked against the bytes remaining before the caller allocates, so
// a hostile count cannot make a decoder allocate more than its input.
//
// Encoding is a family of Append functions that grow a caller-owned slice,
// in the style of strconv.AppendInt, so encoding into a reused buffer does
// not allocate.
package wire
