// Package log is a partition's log: segments of Kafka RecordBatch v2 bytes,
// their sparse indexes, recovery after a crash, retention, the idempotent
// producer state, and the zero-copy read path fetch serves from.
//
// A Log is owned by one shard (one locked OS thread) and is not safe for
// concurrent use; it takes no locks. The single exception is SegmentRef:
// a fetch pins the segment it reads with an atomic reference count and may
// release it from any goroutine after sendfile.
//
// The log writes synchronously through storage.File (pwrite into the page
// cache) but never fsyncs on the append path. The shard asks PendingSync what
// needs a datasync, does it asynchronously (io_uring, group commit) and
// reports back with MarkSynced; SyncedOffset is the recovery point.
//
// # Directory
//
// A partition is a directory <topic>-<partition>/ holding, for each segment,
// three files named by the segment's base offset in 20 decimal digits, plus
// the producer snapshot:
//
//	00000000000000000000.log        batches, exactly as served to consumers
//	00000000000000000000.index      sparse offset index
//	00000000000000000000.timeindex  sparse time index
//	00000000000000004711.log        ... the next segment, base offset 4711
//	producer.snapshot               idempotent producer state + log tail
//	cleaner.offset, replica.gaps    compaction's gap bounds (clean.go)
//	*.cleaned, B-E.swap             a cleaning pass under way (clean.go)
//	*.tmp                           an interrupted atomic write; removed at open
//
// # .log
//
// Whole RecordBatch v2 batches laid end to end, offsets ascending and
// contiguous (each batch's baseOffset is the previous batch's
// baseOffset+lastOffsetDelta+1; the first equals the segment's base offset),
// except below the gap bound compaction records (clean.go): there batches
// may be missing, leaving gaps, and a segment may start past its base.
// The log rewrites baseOffset when it appends; baseOffset is outside the CRC.
// All integers big-endian:
//
//	 0                   8          12                     16     17
//	+-------------------+----------+----------------------+------+
//	| baseOffset int64  | length   | partitionLeaderEpoch | magic|
//	|                   | int32    | int32                | =2   |
//	+-------+-----------+----------+-----------+----------+------+
//	17      21          23                     27
//	| crc   | attributes| lastOffsetDelta int32 | baseTimestamp int64 ...
//	| u32   | int16     |                       |
//	+-------+-----------+-----------------------+------------------
//	35                  43                 51          53           57       61
//	| maxTimestamp int64| producerId int64 | prodEpoch | baseSequence| records|
//	|                   |                  | int16     | int32       | int32  |
//	+-------------------+------------------+-----------+-------------+--------+
//	| records ... (length-49 bytes)                                          |
//
// length counts the bytes after the length field, so a batch occupies
// 12+length bytes. crc is CRC32C (Castagnoli) of bytes 21..end. A zero
// length, a magic other than 2, a CRC mismatch, a batch running past the end
// of the file or an offset that does not continue the previous batch marks
// the end of the valid log during recovery.
//
// Segments are created empty; with Config.Preallocate they are fallocated to
// SegmentBytes with FALLOC_FL_KEEP_SIZE, so in page-cache mode the file size
// is always the number of bytes written.
//
// In direct mode (tail.go) the active segment's file runs past its last
// batch: the block holding the end is written zero-padded to 4 KiB, and the
// file is allocated, size extended and pre-zeroed up to 8 MiB ahead of the
// writer. Roll and Close cut the file back to its last batch and sync the
// cut, so a rolled or cleanly closed segment looks exactly like one written
// in page-cache mode and either mode opens what the other wrote. After a
// crash the zeros end the valid log like any torn tail; zeros after the last
// batch of a segment that another segment continues are that cut not yet
// made durable, and only they are truncated, not the later segments.
//
// # .index
//
// A sparse offset index: an entry for the first batch written after at
// least IndexIntervalBytes of batches since the previous entry (the first
// batch of a segment needs none: it is at position 0). Each entry is 8 bytes:
//
//	0                      4                      8
//	+----------------------+----------------------+
//	| relativeOffset u32   | position u32         |
//	+----------------------+----------------------+
//
// relativeOffset is the batch's baseOffset minus the segment's base offset
// (Kafka stores the batch's last offset; sluice stores the base, so an entry
// names a batch boundary exactly), position is the batch's byte position in
// the .log file. Both strictly increase. Segments are at most 2 GiB and hold
// at most 2^32 offsets (the log rolls early otherwise).
//
// # .timeindex
//
// Entries of 12 bytes, appended together with an offset index entry when the
// segment's largest batch maxTimestamp grew since the previous entry, and
// once more when the segment is rolled or checkpointed:
//
//	0                                  8                      12
//	+----------------------------------+----------------------+
//	| timestamp int64 (ms)             | relativeOffset u32   |
//	+----------------------------------+----------------------+
//
// timestamp is the largest maxTimestamp of the segment's batches up to that
// point, relativeOffset the base offset (minus the segment base) of the first
// batch that carried it. Both strictly increase. The last entry of a rolled
// segment is therefore the segment's largest timestamp, which time retention
// and ListOffsets use.
//
// # Index files and restart time
//
// A segment's index files are written when it is rolled and datasynced with
// its data (PendingSync returns them), or by CheckpointSynced when a round
// covered the segment's data before it rolled, so every segment below a
// recorded recovery point has durable indexes. The active segment's index
// files are written by Checkpoint, CheckpointSynced and Close. At open, older segments are not read at all: their
// sizes come from the file sizes and their index files are loaded lazily on
// first use (a read, a timestamp lookup, time retention). An index file that
// is missing or fails validation (size not a multiple of the entry, entries
// not increasing, positions past the end of the segment) is rebuilt in memory
// by walking that segment's batch headers when it is first needed.
//
// # producer.snapshot
//
// Written atomically (tmp file, datasync, rename, directory sync) by
// Checkpoint, CheckpointSynced and Close. Checkpoint and Close write it at
// the log end offset after a datasync of the data, so it never describes
// bytes that could be lost. The shard's periodic CheckpointSynced writes the
// state CaptureSnapshot encoded as the datasync rounds began, which the
// rounds made durable; when there is no such capture (in direct mode, bytes
// not yet written when the rounds began) it writes the state at the log
// end offset, and a crash that loses batches that snapshot describes makes
// recovery rebuild the producer state from the log. Besides the producer
// state it carries the log tail, which lets a clean open skip every scan:
//
//	 0        4         6          8          12
//	+--------+---------+----------+----------+
//	| "SLPS" | version | reserved | crc32c   |  crc of bytes 12..end
//	|        | u16 = 2 | u16      | u32      |
//	+--------+---------+----------+----------+------------------+
//	12                 20                  28                 36
//	| endOffset int64  | tailBase int64    | tailSize int64    |
//	+------------------+-------------------+-------------------+
//	36                 44            48
//	| rollStartMs int64| count u32   | count producer entries ...
//	+------------------+-------------+
//
//	producer entry: 20 bytes, then n batch entries of 32 bytes
//	+------------------+-----------+-----+-----+-----------------------+
//	| producerId int64 | epoch i16 | n u8| 0   | lastTimestamp int64   |
//	+------------------+-----------+-----+-----+-----------------------+
//	batch entry (oldest first, n <= 5):
//	+--------------+-------------+--------------------+-------------------+---------------+
//	| firstSeq i32 | lastSeq i32 | firstOffset int64  | lastOffset int64  | timestamp i64 |
//	+--------------+-------------+--------------------+-------------------+---------------+
//
// Version 2 (transactions, txn.go) goes on with the open transactions and
// the aborted ones, the latter in marker order; version 1 files (no
// transactions) are still read.
//
//	| count u32 | count x ( producerId int64 | firstOffset int64 )
//	| count u32 | count x ( producerId int64 | firstOffset int64 | lastOffset int64 | lastStableOffset int64 )
//
// # Recovery
//
// Open is given the Checkpoint the shard recorded (see WriteCheckpointFile).
//
//   - Clean (Checkpoint.Clean, the snapshot's endOffset equals the recovery
//     point, and the active segment has the size the snapshot recorded):
//     nothing is scanned; the state comes from the snapshot and index files.
//   - Otherwise only the bytes past the recovery point are read: the byte
//     position of the recovery point is found through the index of its
//     segment (entries below the recovery point, then a walk of at most one
//     index interval of headers), and from there every batch is checked
//     (framing, magic, offset continuity, CRC32C) across the remaining
//     segments. The log is truncated at the first bad batch and any later
//     segments are deleted; indexes and producer state are rebuilt from the
//     same pass; then everything is datasynced so the next crash starts from
//     here.
//   - The producer state is replayed from the snapshot's endOffset, which
//     is at or past the recovery point recorded with it; if the snapshot is
//     older, the batch headers between it and the recovery point are read as
//     well (not the records). A snapshot past the recovered log end (its
//     batches were lost) is dropped and the state is rebuilt from the first
//     segment's headers.
//
// Segments wholly below Checkpoint.LogStartOffset (deleted by retention just
// before a crash) are removed at open.
package log
