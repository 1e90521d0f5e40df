package log

import (
	"encoding/binary"
	"sort"
)

const (
	indexEntrySize     = 8
	timeIndexEntrySize = 12
)

// indexEntry locates a batch: its base offset relative to the segment and
// its position in the segment file.
type indexEntry struct {
	relOffset uint32
	position  uint32
}

// timeEntry: the segment's largest timestamp so far and the relative base
// offset of the first batch that carried it.
type timeEntry struct {
	timestamp int64
	relOffset uint32
}

// lookupOffset returns the last entry whose offset is <= rel, or ok false.
func lookupOffset(entries []indexEntry, rel uint32) (indexEntry, bool) {
	i := sort.Search(len(entries), func(i int) bool { return entries[i].relOffset > rel })
	if i == 0 {
		return indexEntry{}, false
	}
	return entries[i-1], true
}

// lookupPosition returns the index of the last entry whose position is <=
// pos, or -1.
func lookupPosition(entries []indexEntry, pos uint32) int {
	return sort.Search(len(entries), func(i int) bool { return entries[i].position > pos }) - 1
}

// firstTimeAtLeast returns the index of the first entry with timestamp >= ts,
// or len(entries).
func firstTimeAtLeast(entries []timeEntry, ts int64) int {
	return sort.Search(len(entries), func(i int) bool { return entries[i].timestamp >= ts })
}

func appendIndexEntries(dst []byte, entries []indexEntry) []byte {
	for _, e := range entries {
		dst = binary.BigEndian.AppendUint32(dst, e.relOffset)
		dst = binary.BigEndian.AppendUint32(dst, e.position)
	}
	return dst
}

func appendTimeEntries(dst []byte, entries []timeEntry) []byte {
	for _, e := range entries {
		dst = binary.BigEndian.AppendUint64(dst, uint64(e.timestamp))
		dst = binary.BigEndian.AppendUint32(dst, e.relOffset)
	}
	return dst
}

// decodeIndex parses and validates an .index file of a segment holding
// segmentSize bytes and offsets below segmentBase+relLimit.
func decodeIndex(b []byte, segmentSize int64, relLimit uint64) ([]indexEntry, bool) {
	if len(b)%indexEntrySize != 0 {
		return nil, false
	}
	entries := make([]indexEntry, len(b)/indexEntrySize)
	for i := range entries {
		e := indexEntry{
			relOffset: binary.BigEndian.Uint32(b[i*indexEntrySize:]),
			position:  binary.BigEndian.Uint32(b[i*indexEntrySize+4:]),
		}
		if int64(e.position) >= segmentSize || uint64(e.relOffset) >= relLimit || e.position == 0 {
			return nil, false
		}
		if i > 0 && (e.relOffset <= entries[i-1].relOffset || e.position <= entries[i-1].position) {
			return nil, false
		}
		entries[i] = e
	}
	return entries, true
}

func decodeTimeIndex(b []byte, relLimit uint64) ([]timeEntry, bool) {
	if len(b)%timeIndexEntrySize != 0 {
		return nil, false
	}
	entries := make([]timeEntry, len(b)/timeIndexEntrySize)
	for i := range entries {
		e := timeEntry{
			timestamp: int64(binary.BigEndian.Uint64(b[i*timeIndexEntrySize:])),
			relOffset: binary.BigEndian.Uint32(b[i*timeIndexEntrySize+8:]),
		}
		if uint64(e.relOffset) >= relLimit {
			return nil, false
		}
		if i > 0 && (e.timestamp <= entries[i-1].timestamp || e.relOffset <= entries[i-1].relOffset) {
			return nil, false
		}
		entries[i] = e
	}
	return entries, true
}
