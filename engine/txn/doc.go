// Package txn is sluice's transaction coordinator as a pure state machine,
// like engine/group: it does no I/O of its own and reads no clock. Every
// call carries the time; durable state leaves as records through the Log
// interface and transaction markers through the Markers interface, whose
// completions the owner feeds back; periodic work (aborting transactions
// past their timeout, expiring idle transactional ids, retrying markers)
// runs when the owner calls Advance at NextDeadline. It is therefore
// steppable in tests without a disk, a socket or a sleep.
//
// Kafka's behaviour is the specification (Apache Kafka 4's
// TransactionCoordinator and TransactionMetadata): the states Empty,
// Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, CompleteAbort and
// the error each request gets in each, epoch bumps on InitProducerId and
// when a transaction is aborted to fence its producer (a new instance, or
// the transaction's timeout), transaction.max.timeout.ms and
// transactional.id.expiration.ms.
//
// # The life of a transaction
//
//	InitProducerId      Empty (epoch bumped; a new producer id past 32766)
//	AddPartitionsToTxn  -> Ongoing, partitions recorded (durable before the answer)
//	AddOffsetsToTxn     -> Ongoing, the group's __consumer_offsets partition recorded
//	EndTxn              -> PrepareCommit | PrepareAbort (durable, then answered)
//	                       markers written to every partition (acks=all)
//	                    -> CompleteCommit | CompleteAbort, partitions cleared
//
// A transaction whose producer is replaced (InitProducerId while it is
// Ongoing) or that outlives its timeout is aborted with the epoch bumped,
// so its producer's next request is fenced (PRODUCER_FENCED).
//
// # Durability
//
// A transactional id lives in partition abs(javaHashCode(id)) % partitions
// of __transaction_state, as in Kafka. Every state change is one record
// (key: the id; value: the whole state) appended with acks=all before the
// change is answered or acted on; a failed append changes nothing. As in
// engine/group, the coordinator keeps each partition's live set (the
// latest record per key; a tombstone removes it) and, once the log has
// grown past both SnapshotMinBytes and that set, rewrites the set after a
// marker record and trims the log before it, so a load reads about twice
// the live state at most.
//
// Loading a transaction found in PrepareCommit or PrepareAbort (the
// coordinator stopped after the decision, before every marker was written)
// writes its markers again and completes it: a decided transaction is
// always completed, as Kafka's coordinator does on becoming leader.
//
// # Record format
//
// Integers are big-endian; string16 is an INT16 length and UTF-8 bytes.
//
// Transaction key (type 0):
//
//	| type int16=0 | transactionalId string16 |
//
// Transaction value (version 0); a null value is a tombstone:
//
//	| version int16=0 | producerId int64 | lastProducerId int64 |
//	| producerEpoch int16 | lastProducerEpoch int16 | timeoutMs int32 |
//	| state int8 | startMs int64 | updateMs int64 |
//	| count int32 | count x ( topic string16 | partition int32 ) |
//
// Snapshot marker key (type 1), with value | version int16=0 | liveRecords int32 |.
package txn
