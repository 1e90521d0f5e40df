// Package group is sluice's group coordinator as a pure state machine: the
// classic rebalance protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup),
// the KIP-848 consumer protocol (ConsumerGroupHeartbeat with server-side
// assignors), committed offsets and the admin APIs over groups. It does no
// I/O of its own and reads no clock: every call carries the time, timeouts
// are deadlines the caller fires with Advance, and durable state leaves as
// records through the Log interface, whose completions the caller feeds
// back. It is therefore steppable in tests without a disk, a socket or a
// sleep (see the transcript tests in testdata/), and engine/group/service
// runs it on a broker: one mutex, one timer, the __consumer_offsets
// partitions on the shards.
//
// Kafka's behaviour is the specification (Apache Kafka 4.0's
// group-coordinator module): error codes, state transitions, the initial
// rebalance delay, static membership, pending-sync expiry, the offset
// retention rules of KIP-211 and KIP-496, member epochs and reconciliation
// of KIP-848.
//
// # Durability
//
// Group metadata and committed offsets are records in the partitions of the
// internal topic __consumer_offsets. A group lives in partition
// abs(javaHashCode(groupID)) % partitions, as in Kafka, so one partition holds
// everything about a group and its records are totally ordered. An offset
// commit is answered only after its records are durable (the caller appends
// them with acks=all); a failed append answers the commit with an error and
// changes nothing.
//
// The log is compacted in spirit: for each partition the coordinator keeps
// the latest record per key (a tombstone removes the key), which is exactly
// what a compacted log would retain. When the bytes appended since the last
// snapshot exceed both SnapshotMinBytes and the size of that live set, the
// coordinator appends a marker and the whole live set again (the snapshot)
// and, once it is durable, asks the log to drop everything before the
// marker (Log.Trim, which raises the log start offset and deletes whole
// segments). This is the choice made instead of a log cleaner: the log's
// own retention never deletes __consumer_offsets (retention.ms=-1), and a
// load reads from the log start, so it reads one snapshot and what came
// after it.
// Records appended before the snapshot but not yet durable are part of the
// live set, so nothing the snapshot does not repeat is ever dropped; a crash
// before the trim only means the next load replays some records twice, and
// replaying a record is idempotent (it sets a key to a value). Load time is
// therefore bounded by about twice the live state, not by the number of
// commits ever made.
//
// # Record format
//
// Records are ordinary Kafka records (RecordBatch v2, uncompressed) whose
// key and value are encoded as below. Integers are big-endian;
// string16 is an INT16 length followed by UTF-8 bytes (-1 for null when
// nullable); bytes32 is an INT32 length followed by the bytes; uuid is 16
// raw bytes. A null value is a tombstone: the key's state is deleted. An
// unknown key type or value version is skipped at load with a warning, so
// a newer sluice can add types an older one ignores.
//
// Offset commit key (type 0):
//
//	+--------------+----------------+----------------+-----------------+
//	| type int16=0 | group string16 | topic string16 | partition int32 |
//	+--------------+----------------+----------------+-----------------+
//
// Offset commit value (version 0):
//
//	+-----------------+--------------+--------------------+
//	| version int16=0 | offset int64 | leaderEpoch int32  |
//	+-----------------+--------------+--------------------+
//	| metadata nullable string16 | commitTimestampMs int64 |
//	+----------------------------+-------------------------+
//	| expireTimestampMs int64 (-1: none, KIP-211 retention) |
//	+-------------------------------------------------------+
//
// Snapshot marker key (type 2), the first record of every snapshot, with
// a value holding the number of live records that follow (it carries no
// state; the log is trimmed to its offset):
//
//	+--------------+        +-----------------+--------------------+
//	| type int16=2 |        | version int16=0 | liveRecords int32  |
//	+--------------+        +-----------------+--------------------+
//
// Group key (type 1), for both kinds of group:
//
//	+--------------+----------------+
//	| type int16=1 | group string16 |
//	+--------------+----------------+
//
// Group value (version 0): a header, then the body of the group's kind.
//
//	+-----------------+--------------------------------+------------------------+
//	| version int16=0 | kind int8 (0 classic, 1 consumer) | stateTimestampMs int64 |
//	+-----------------+--------------------------------+------------------------+
//
// Classic body: the generation as of the last SyncGroup (or the empty
// generation), with each member's protocols and assignment:
//
//	+-----------------------+------------------+-----------------------------+
//	| protocolType string16 | generation int32 | protocol nullable string16  |
//	+-----------------------+------------------+-----------------------------+
//	| leader nullable string16 | memberCount int32 | member ... |
//	+--------------------------+-------------------+------------+
//
//	member:
//	+-------------------+-----------------------------+-------------------+
//	| memberID string16 | instanceID nullable string16 | clientID string16 |
//	+-------------------+-----------------------------+-------------------+
//	| clientHost string16 | rebalanceTimeoutMs int32 | sessionTimeoutMs int32 |
//	+---------------------+--------------------------+------------------------+
//	| protocolCount int32 | (name string16, metadata bytes32) ... | assignment bytes32 |
//	+---------------------+----------------------------------------+--------------------+
//
// Consumer (KIP-848) body: the group epoch, the epoch of the target
// assignment, and each member with its subscription, epochs, reconciliation
// state, current assignment, partitions pending revocation and target
// assignment. Subscription metadata is derived from the topic catalogue at
// load and not stored.
//
//	+------------------+-----------------------+-------------------+------------+
//	| groupEpoch int32 | assignmentEpoch int32 | memberCount int32 | member ... |
//	+------------------+-----------------------+-------------------+------------+
//
//	member:
//	+-------------------+-----------------------------+---------------------------+
//	| memberID string16 | instanceID nullable string16 | rackID nullable string16 |
//	+-------------------+-----------------------------+---------------------------+
//	| clientID string16 | clientHost string16 | rebalanceTimeoutMs int32 |
//	+-------------------+---------------------+--------------------------+
//	| serverAssignor nullable string16 | topicCount int32 | topic string16 ... |
//	+----------------------------------+------------------+--------------------+
//	| regex nullable string16 | memberEpoch int32 | previousEpoch int32 | state int8 |
//	+-------------------------+-------------------+---------------------+------------+
//	| assigned partitions | pending revocation partitions | target partitions |
//	+---------------------+-------------------------------+-------------------+
//
//	partitions: count int32, then per topic (topicID uuid, n int32, partition int32 × n)
package group
