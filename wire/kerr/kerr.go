// Package kerr names every Kafka protocol error code.
//
// A Code is the int16 carried in response ErrorCode fields. Its String is
// Kafka's SCREAMING_SNAKE name (as in the protocol guide), Message is Kafka's
// one-line description, and Retriable says whether Kafka's client treats the
// error as transient (its exception extends RetriableException).
//
// Error carries a Code plus an optional detail message through Go error
// chains, so a handler can return a typed error deep in the engine and the
// response builder can recover the code with FromError.
package kerr

import (
	"errors"
	"strconv"
)

// Code is a Kafka protocol error code as carried in responses.
type Code int16

// The Kafka error codes, named after Kafka's own names in Go CamelCase.
const (
	UnknownServerError                     Code = -1
	None                                   Code = 0
	OffsetOutOfRange                       Code = 1
	CorruptMessage                         Code = 2
	UnknownTopicOrPartition                Code = 3
	InvalidFetchSize                       Code = 4
	LeaderNotAvailable                     Code = 5
	NotLeaderOrFollower                    Code = 6
	RequestTimedOut                        Code = 7
	BrokerNotAvailable                     Code = 8
	ReplicaNotAvailable                    Code = 9
	MessageTooLarge                        Code = 10
	StaleControllerEpoch                   Code = 11
	OffsetMetadataTooLarge                 Code = 12
	NetworkException                       Code = 13
	CoordinatorLoadInProgress              Code = 14
	CoordinatorNotAvailable                Code = 15
	NotCoordinator                         Code = 16
	InvalidTopicException                  Code = 17
	RecordListTooLarge                     Code = 18
	NotEnoughReplicas                      Code = 19
	NotEnoughReplicasAfterAppend           Code = 20
	InvalidRequiredAcks                    Code = 21
	IllegalGeneration                      Code = 22
	InconsistentGroupProtocol              Code = 23
	InvalidGroupID                         Code = 24
	UnknownMemberID                        Code = 25
	InvalidSessionTimeout                  Code = 26
	RebalanceInProgress                    Code = 27
	InvalidCommitOffsetSize                Code = 28
	TopicAuthorizationFailed               Code = 29
	GroupAuthorizationFailed               Code = 30
	ClusterAuthorizationFailed             Code = 31
	InvalidTimestamp                       Code = 32
	UnsupportedSASLMechanism               Code = 33
	IllegalSASLState                       Code = 34
	UnsupportedVersion                     Code = 35
	TopicAlreadyExists                     Code = 36
	InvalidPartitions                      Code = 37
	InvalidReplicationFactor               Code = 38
	InvalidReplicaAssignment               Code = 39
	InvalidConfig                          Code = 40
	NotController                          Code = 41
	InvalidRequest                         Code = 42
	UnsupportedForMessageFormat            Code = 43
	PolicyViolation                        Code = 44
	OutOfOrderSequenceNumber               Code = 45
	DuplicateSequenceNumber                Code = 46
	InvalidProducerEpoch                   Code = 47
	InvalidTxnState                        Code = 48
	InvalidProducerIDMapping               Code = 49
	InvalidTransactionTimeout              Code = 50
	ConcurrentTransactions                 Code = 51
	TransactionCoordinatorFenced           Code = 52
	TransactionalIDAuthorizationFailed     Code = 53
	SecurityDisabled                       Code = 54
	OperationNotAttempted                  Code = 55
	KafkaStorageError                      Code = 56
	LogDirNotFound                         Code = 57
	SASLAuthenticationFailed               Code = 58
	UnknownProducerID                      Code = 59
	ReassignmentInProgress                 Code = 60
	DelegationTokenAuthDisabled            Code = 61
	DelegationTokenNotFound                Code = 62
	DelegationTokenOwnerMismatch           Code = 63
	DelegationTokenRequestNotAllowed       Code = 64
	DelegationTokenAuthorizationFailed     Code = 65
	DelegationTokenExpired                 Code = 66
	InvalidPrincipalType                   Code = 67
	NonEmptyGroup                          Code = 68
	GroupIDNotFound                        Code = 69
	FetchSessionIDNotFound                 Code = 70
	InvalidFetchSessionEpoch               Code = 71
	ListenerNotFound                       Code = 72
	TopicDeletionDisabled                  Code = 73
	FencedLeaderEpoch                      Code = 74
	UnknownLeaderEpoch                     Code = 75
	UnsupportedCompressionType             Code = 76
	StaleBrokerEpoch                       Code = 77
	OffsetNotAvailable                     Code = 78
	MemberIDRequired                       Code = 79
	PreferredLeaderNotAvailable            Code = 80
	GroupMaxSizeReached                    Code = 81
	FencedInstanceID                       Code = 82
	EligibleLeadersNotAvailable            Code = 83
	ElectionNotNeeded                      Code = 84
	NoReassignmentInProgress               Code = 85
	GroupSubscribedToTopic                 Code = 86
	InvalidRecord                          Code = 87
	UnstableOffsetCommit                   Code = 88
	ThrottlingQuotaExceeded                Code = 89
	ProducerFenced                         Code = 90
	ResourceNotFound                       Code = 91
	DuplicateResource                      Code = 92
	UnacceptableCredential                 Code = 93
	InconsistentVoterSet                   Code = 94
	InvalidUpdateVersion                   Code = 95
	FeatureUpdateFailed                    Code = 96
	PrincipalDeserializationFailure        Code = 97
	SnapshotNotFound                       Code = 98
	PositionOutOfRange                     Code = 99
	UnknownTopicID                         Code = 100
	DuplicateBrokerRegistration            Code = 101
	BrokerIDNotRegistered                  Code = 102
	InconsistentTopicID                    Code = 103
	InconsistentClusterID                  Code = 104
	TransactionalIDNotFound                Code = 105
	FetchSessionTopicIDError               Code = 106
	IneligibleReplica                      Code = 107
	NewLeaderElected                       Code = 108
	OffsetMovedToTieredStorage             Code = 109
	FencedMemberEpoch                      Code = 110
	UnreleasedInstanceID                   Code = 111
	UnsupportedAssignor                    Code = 112
	StaleMemberEpoch                       Code = 113
	MismatchedEndpointType                 Code = 114
	UnsupportedEndpointType                Code = 115
	UnknownControllerID                    Code = 116
	UnknownSubscriptionID                  Code = 117
	TelemetryTooLarge                      Code = 118
	InvalidRegistration                    Code = 119
	TransactionAbortable                   Code = 120
	InvalidRecordState                     Code = 121
	ShareSessionNotFound                   Code = 122
	InvalidShareSessionEpoch               Code = 123
	FencedStateEpoch                       Code = 124
	InvalidVoterKey                        Code = 125
	DuplicateVoter                         Code = 126
	VoterNotFound                          Code = 127
	InvalidRegularExpression               Code = 128
	RebootstrapRequired                    Code = 129
	StreamsInvalidTopology                 Code = 130
	StreamsInvalidTopologyEpoch            Code = 131
	StreamsTopologyFenced                  Code = 132
	ShareSessionLimitReached               Code = 133
	GroupDeletionFailed                    Code = 134
	StreamsTopologyDescriptionUpdateFailed Code = 135
	ControllerIDNotRegistered              Code = 136
)

// codeInfo is one row of the error table.
type codeInfo struct {
	code      Code
	name      string
	retriable bool
	message   string
}

// codeTable lists every known code in ascending order. Its rows mirror
// org.apache.kafka.common.protocol.Errors.
var codeTable = [...]codeInfo{
	{UnknownServerError, "UNKNOWN_SERVER_ERROR", false, "The server experienced an unexpected error when processing the request."},
	{None, "NONE", false, ""},
	{OffsetOutOfRange, "OFFSET_OUT_OF_RANGE", false, "The requested offset is not within the range of offsets maintained by the server."},
	{CorruptMessage, "CORRUPT_MESSAGE", true, "This message has failed its CRC checksum, exceeds the valid size, has a null key for a compacted topic, or is otherwise corrupt."},
	{UnknownTopicOrPartition, "UNKNOWN_TOPIC_OR_PARTITION", true, "This server does not host this topic-partition."},
	{InvalidFetchSize, "INVALID_FETCH_SIZE", false, "The requested fetch size is invalid."},
	{LeaderNotAvailable, "LEADER_NOT_AVAILABLE", true, "There is no leader for this topic-partition as we are in the middle of a leadership election."},
	{NotLeaderOrFollower, "NOT_LEADER_OR_FOLLOWER", true, "This server is not the leader for that topic-partition."},
	{RequestTimedOut, "REQUEST_TIMED_OUT", true, "The request timed out."},
	{BrokerNotAvailable, "BROKER_NOT_AVAILABLE", true, "The broker is not available."},
	{ReplicaNotAvailable, "REPLICA_NOT_AVAILABLE", true, "The replica is not available for the requested topic-partition."},
	{MessageTooLarge, "MESSAGE_TOO_LARGE", false, "The request included a message larger than the max message size the server will accept."},
	{StaleControllerEpoch, "STALE_CONTROLLER_EPOCH", false, "The controller moved to another broker."},
	{OffsetMetadataTooLarge, "OFFSET_METADATA_TOO_LARGE", false, "The metadata field of the offset request was too large."},
	{NetworkException, "NETWORK_EXCEPTION", true, "The server disconnected before a response was received."},
	{CoordinatorLoadInProgress, "COORDINATOR_LOAD_IN_PROGRESS", true, "The coordinator is loading and hence can't process requests."},
	{CoordinatorNotAvailable, "COORDINATOR_NOT_AVAILABLE", true, "The coordinator is not available."},
	{NotCoordinator, "NOT_COORDINATOR", true, "This is not the correct coordinator."},
	{InvalidTopicException, "INVALID_TOPIC_EXCEPTION", false, "The request attempted to perform an operation on an invalid topic."},
	{RecordListTooLarge, "RECORD_LIST_TOO_LARGE", false, "The request included message batch larger than the configured segment size on the server."},
	{NotEnoughReplicas, "NOT_ENOUGH_REPLICAS", true, "Messages are rejected since there are fewer in-sync replicas than required."},
	{NotEnoughReplicasAfterAppend, "NOT_ENOUGH_REPLICAS_AFTER_APPEND", true, "Messages are written to the log, but to fewer in-sync replicas than required."},
	{InvalidRequiredAcks, "INVALID_REQUIRED_ACKS", false, "Produce request specified an invalid value for required acks."},
	{IllegalGeneration, "ILLEGAL_GENERATION", false, "Specified group generation id is not valid."},
	{InconsistentGroupProtocol, "INCONSISTENT_GROUP_PROTOCOL", false, "The group member's supported protocols are incompatible with those of existing members or first group member tried to join with empty protocol type or empty protocol list."},
	{InvalidGroupID, "INVALID_GROUP_ID", false, "The configured groupID is invalid."},
	{UnknownMemberID, "UNKNOWN_MEMBER_ID", false, "The coordinator is not aware of this member."},
	{InvalidSessionTimeout, "INVALID_SESSION_TIMEOUT", false, "The session timeout is not within the range allowed by the broker (as configured by group.min.session.timeout.ms and group.max.session.timeout.ms)."},
	{RebalanceInProgress, "REBALANCE_IN_PROGRESS", false, "The group is rebalancing, so a rejoin is needed."},
	{InvalidCommitOffsetSize, "INVALID_COMMIT_OFFSET_SIZE", false, "The committing offset data size is not valid."},
	{TopicAuthorizationFailed, "TOPIC_AUTHORIZATION_FAILED", false, "Not authorized to access topics: [Topic authorization failed.]"},
	{GroupAuthorizationFailed, "GROUP_AUTHORIZATION_FAILED", false, "Not authorized to access group: Group authorization failed."},
	{ClusterAuthorizationFailed, "CLUSTER_AUTHORIZATION_FAILED", false, "Cluster authorization failed."},
	{InvalidTimestamp, "INVALID_TIMESTAMP", false, "The timestamp of the message is out of acceptable range."},
	{UnsupportedSASLMechanism, "UNSUPPORTED_SASL_MECHANISM", false, "The broker does not support the requested SASL mechanism."},
	{IllegalSASLState, "ILLEGAL_SASL_STATE", false, "Request is not valid given the current SASL state."},
	{UnsupportedVersion, "UNSUPPORTED_VERSION", false, "The version of API is not supported."},
	{TopicAlreadyExists, "TOPIC_ALREADY_EXISTS", false, "Topic with this name already exists."},
	{InvalidPartitions, "INVALID_PARTITIONS", false, "Number of partitions is below 1."},
	{InvalidReplicationFactor, "INVALID_REPLICATION_FACTOR", false, "Replication factor is below 1 or larger than the number of available brokers."},
	{InvalidReplicaAssignment, "INVALID_REPLICA_ASSIGNMENT", false, "Replica assignment is invalid."},
	{InvalidConfig, "INVALID_CONFIG", false, "Configuration is invalid."},
	{NotController, "NOT_CONTROLLER", true, "This is not the correct controller for this cluster."},
	{InvalidRequest, "INVALID_REQUEST", false, "This most likely occurs because of a request being malformed by the client library or the message was sent to an incompatible broker. See the broker logs for more details."},
	{UnsupportedForMessageFormat, "UNSUPPORTED_FOR_MESSAGE_FORMAT", false, "The message format version on the broker does not support the request."},
	{PolicyViolation, "POLICY_VIOLATION", false, "Request parameters do not satisfy the configured policy."},
	{OutOfOrderSequenceNumber, "OUT_OF_ORDER_SEQUENCE_NUMBER", false, "The broker received an out of order sequence number."},
	{DuplicateSequenceNumber, "DUPLICATE_SEQUENCE_NUMBER", false, "The broker received a duplicate sequence number."},
	{InvalidProducerEpoch, "INVALID_PRODUCER_EPOCH", false, "Producer attempted an operation with an old epoch."},
	{InvalidTxnState, "INVALID_TXN_STATE", false, "The producer attempted a transactional operation in an invalid state."},
	{InvalidProducerIDMapping, "INVALID_PRODUCER_ID_MAPPING", false, "The producer attempted to use a producer id which is not currently assigned to its transactional id."},
	{InvalidTransactionTimeout, "INVALID_TRANSACTION_TIMEOUT", false, "The transaction timeout is larger than the maximum value allowed by the broker (as configured by transaction.max.timeout.ms)."},
	{ConcurrentTransactions, "CONCURRENT_TRANSACTIONS", false, "The producer attempted to update a transaction while another concurrent operation on the same transaction was ongoing."},
	{TransactionCoordinatorFenced, "TRANSACTION_COORDINATOR_FENCED", false, "Indicates that the transaction coordinator sending a WriteTxnMarker is no longer the current coordinator for a given producer."},
	{TransactionalIDAuthorizationFailed, "TRANSACTIONAL_ID_AUTHORIZATION_FAILED", false, "Transactional ID authorization failed."},
	{SecurityDisabled, "SECURITY_DISABLED", false, "Security features are disabled."},
	{OperationNotAttempted, "OPERATION_NOT_ATTEMPTED", false, "The broker did not attempt to execute this operation. This may happen for batched RPCs where some operations in the batch failed, causing the broker to respond without trying the rest."},
	{KafkaStorageError, "KAFKA_STORAGE_ERROR", true, "Disk error when trying to access log file on the disk."},
	{LogDirNotFound, "LOG_DIR_NOT_FOUND", false, "The user-specified log directory is not found in the broker config."},
	{SASLAuthenticationFailed, "SASL_AUTHENTICATION_FAILED", false, "SASL Authentication failed."},
	{UnknownProducerID, "UNKNOWN_PRODUCER_ID", false, "This exception is raised by the broker if it could not locate the producer metadata associated with the producerID in question. This could happen if, for instance, the producer's records were deleted because their retention time had elapsed. Once the last records of the producerID are removed, the producer's metadata is removed from the broker, and future appends by the producer will return this exception."},
	{ReassignmentInProgress, "REASSIGNMENT_IN_PROGRESS", false, "A partition reassignment is in progress."},
	{DelegationTokenAuthDisabled, "DELEGATION_TOKEN_AUTH_DISABLED", false, "Delegation Token feature is not enabled."},
	{DelegationTokenNotFound, "DELEGATION_TOKEN_NOT_FOUND", false, "Delegation Token is not found on server."},
	{DelegationTokenOwnerMismatch, "DELEGATION_TOKEN_OWNER_MISMATCH", false, "Specified Principal is not valid Owner/Renewer."},
	{DelegationTokenRequestNotAllowed, "DELEGATION_TOKEN_REQUEST_NOT_ALLOWED", false, "Delegation Token requests are not allowed on PLAINTEXT/1-way SSL channels and on delegation token authenticated channels."},
	{DelegationTokenAuthorizationFailed, "DELEGATION_TOKEN_AUTHORIZATION_FAILED", false, "Delegation Token authorization failed."},
	{DelegationTokenExpired, "DELEGATION_TOKEN_EXPIRED", false, "Delegation Token is expired."},
	{InvalidPrincipalType, "INVALID_PRINCIPAL_TYPE", false, "Supplied principalType is not supported."},
	{NonEmptyGroup, "NON_EMPTY_GROUP", false, "The group is not empty."},
	{GroupIDNotFound, "GROUP_ID_NOT_FOUND", false, "The group id does not exist."},
	{FetchSessionIDNotFound, "FETCH_SESSION_ID_NOT_FOUND", true, "The fetch session ID was not found."},
	{InvalidFetchSessionEpoch, "INVALID_FETCH_SESSION_EPOCH", true, "The fetch session epoch is invalid."},
	{ListenerNotFound, "LISTENER_NOT_FOUND", true, "There is no listener on the leader broker that matches the listener on which metadata request was processed."},
	{TopicDeletionDisabled, "TOPIC_DELETION_DISABLED", false, "Topic deletion is disabled."},
	{FencedLeaderEpoch, "FENCED_LEADER_EPOCH", true, "The leader epoch in the request is older than the epoch on the broker"},
	{UnknownLeaderEpoch, "UNKNOWN_LEADER_EPOCH", true, "The leader epoch in the request is newer than the epoch on the broker"},
	{UnsupportedCompressionType, "UNSUPPORTED_COMPRESSION_TYPE", false, "The requesting client does not support the compression type of given partition."},
	{StaleBrokerEpoch, "STALE_BROKER_EPOCH", false, "Broker epoch has changed"},
	{OffsetNotAvailable, "OFFSET_NOT_AVAILABLE", true, "The leader high watermark has not caught up from a recent leader election so the offsets cannot be guaranteed to be monotonically increasing"},
	{MemberIDRequired, "MEMBER_ID_REQUIRED", false, "The group member needs to have a valid member id before actually entering a consumer group"},
	{PreferredLeaderNotAvailable, "PREFERRED_LEADER_NOT_AVAILABLE", true, "The preferred leader was not available"},
	{GroupMaxSizeReached, "GROUP_MAX_SIZE_REACHED", false, "The consumer group has reached its max size"},
	{FencedInstanceID, "FENCED_INSTANCE_ID", false, "The broker rejected this static consumer since another consumer with the same group.instance.id has registered with a different member.id."},
	{EligibleLeadersNotAvailable, "ELIGIBLE_LEADERS_NOT_AVAILABLE", true, "Eligible topic partition leaders are not available"},
	{ElectionNotNeeded, "ELECTION_NOT_NEEDED", true, "Leader election not needed for topic partition"},
	{NoReassignmentInProgress, "NO_REASSIGNMENT_IN_PROGRESS", false, "No partition reassignment is in progress."},
	{GroupSubscribedToTopic, "GROUP_SUBSCRIBED_TO_TOPIC", false, "Deleting offsets of a topic is forbidden while the consumer group is actively subscribed to it."},
	{InvalidRecord, "INVALID_RECORD", false, "This record has failed the validation on the broker and hence been rejected."},
	{UnstableOffsetCommit, "UNSTABLE_OFFSET_COMMIT", true, "There are unstable offsets that need to be cleared."},
	{ThrottlingQuotaExceeded, "THROTTLING_QUOTA_EXCEEDED", true, "The throttling quota has been exceeded."},
	{ProducerFenced, "PRODUCER_FENCED", false, "There is a newer producer with the same transactionalId which fences the current one."},
	{ResourceNotFound, "RESOURCE_NOT_FOUND", false, "A request illegally referred to a resource that does not exist."},
	{DuplicateResource, "DUPLICATE_RESOURCE", false, "A request illegally referred to the same resource twice."},
	{UnacceptableCredential, "UNACCEPTABLE_CREDENTIAL", false, "Requested credential would not meet criteria for acceptability."},
	{InconsistentVoterSet, "INCONSISTENT_VOTER_SET", false, "Indicates that either the sender or recipient of a voter-only request is not one of the expected voters."},
	{InvalidUpdateVersion, "INVALID_UPDATE_VERSION", false, "The given update version was invalid."},
	{FeatureUpdateFailed, "FEATURE_UPDATE_FAILED", false, "Unable to update finalized features due to an unexpected server error."},
	{PrincipalDeserializationFailure, "PRINCIPAL_DESERIALIZATION_FAILURE", false, "Request principal deserialization failed during forwarding. This indicates an internal error on the broker cluster security setup."},
	{SnapshotNotFound, "SNAPSHOT_NOT_FOUND", false, "Requested snapshot was not found."},
	{PositionOutOfRange, "POSITION_OUT_OF_RANGE", false, "Requested position is not greater than or equal to zero, and less than the size of the snapshot."},
	{UnknownTopicID, "UNKNOWN_TOPIC_ID", true, "This server does not host this topic ID."},
	{DuplicateBrokerRegistration, "DUPLICATE_BROKER_REGISTRATION", false, "This broker ID is already in use."},
	{BrokerIDNotRegistered, "BROKER_ID_NOT_REGISTERED", false, "The given broker ID was not registered."},
	{InconsistentTopicID, "INCONSISTENT_TOPIC_ID", true, "The log's topic ID did not match the topic ID in the request."},
	{InconsistentClusterID, "INCONSISTENT_CLUSTER_ID", false, "The clusterId in the request does not match that found on the server."},
	{TransactionalIDNotFound, "TRANSACTIONAL_ID_NOT_FOUND", false, "The transactionalId could not be found."},
	{FetchSessionTopicIDError, "FETCH_SESSION_TOPIC_ID_ERROR", true, "The fetch session encountered inconsistent topic ID usage."},
	{IneligibleReplica, "INELIGIBLE_REPLICA", false, "The new ISR contains at least one ineligible replica."},
	{NewLeaderElected, "NEW_LEADER_ELECTED", false, "The AlterPartition request successfully updated the partition state but the leader has changed."},
	{OffsetMovedToTieredStorage, "OFFSET_MOVED_TO_TIERED_STORAGE", false, "The requested offset is moved to tiered storage."},
	{FencedMemberEpoch, "FENCED_MEMBER_EPOCH", false, "The member epoch is fenced by the group coordinator. The member must abandon all its partitions and rejoin."},
	{UnreleasedInstanceID, "UNRELEASED_INSTANCE_ID", false, "The instance ID is still used by another member in the consumer group. That member must leave first."},
	{UnsupportedAssignor, "UNSUPPORTED_ASSIGNOR", false, "The assignor or its version range is not supported by the consumer group."},
	{StaleMemberEpoch, "STALE_MEMBER_EPOCH", false, "The member epoch is stale. The member must retry after receiving its updated member epoch via the ConsumerGroupHeartbeat API."},
	{MismatchedEndpointType, "MISMATCHED_ENDPOINT_TYPE", false, "The request was sent to an endpoint of the wrong type."},
	{UnsupportedEndpointType, "UNSUPPORTED_ENDPOINT_TYPE", false, "This endpoint type is not supported yet."},
	{UnknownControllerID, "UNKNOWN_CONTROLLER_ID", false, "This controller ID is not known"},
	{UnknownSubscriptionID, "UNKNOWN_SUBSCRIPTION_ID", false, "Client sent a push telemetry request with an invalid or outdated subscription ID."},
	{TelemetryTooLarge, "TELEMETRY_TOO_LARGE", false, "Client sent a push telemetry request larger than the maximum size the broker will accept."},
	{InvalidRegistration, "INVALID_REGISTRATION", false, "The controller has considered the broker registration to be invalid."},
	{TransactionAbortable, "TRANSACTION_ABORTABLE", false, "The server encountered an error with the transaction. The client can abort the transaction to continue using this transactional ID."},
	{InvalidRecordState, "INVALID_RECORD_STATE", false, "The record state is invalid. The acknowledgement of delivery could not be completed."},
	{ShareSessionNotFound, "SHARE_SESSION_NOT_FOUND", true, "The share session was not found."},
	{InvalidShareSessionEpoch, "INVALID_SHARE_SESSION_EPOCH", true, "The share session epoch is invalid."},
	{FencedStateEpoch, "FENCED_STATE_EPOCH", false, "The coordinator rejected the request because the state epoch did not match."},
	{InvalidVoterKey, "INVALID_VOTER_KEY", false, "The voter key doesn't match the receiving replica's key."},
	{DuplicateVoter, "DUPLICATE_VOTER", false, "The voter is already part of the set of voters."},
	{VoterNotFound, "VOTER_NOT_FOUND", false, "The voter is not part of the set of voters."},
	{InvalidRegularExpression, "INVALID_REGULAR_EXPRESSION", false, "The regular expression is not valid."},
	{RebootstrapRequired, "REBOOTSTRAP_REQUIRED", false, "Client metadata is stale. The client should rebootstrap to obtain new metadata."},
	{StreamsInvalidTopology, "STREAMS_INVALID_TOPOLOGY", false, "The supplied topology is invalid."},
	{StreamsInvalidTopologyEpoch, "STREAMS_INVALID_TOPOLOGY_EPOCH", false, "The supplied topology epoch is invalid."},
	{StreamsTopologyFenced, "STREAMS_TOPOLOGY_FENCED", false, "The supplied topology epoch is outdated."},
	{ShareSessionLimitReached, "SHARE_SESSION_LIMIT_REACHED", true, "The limit of share sessions has been reached."},
	{GroupDeletionFailed, "GROUP_DELETION_FAILED", false, "DeleteGroups could not complete; see the error message on the per-group result for details."},
	{StreamsTopologyDescriptionUpdateFailed, "STREAMS_TOPOLOGY_DESCRIPTION_UPDATE_FAILED", false, "The broker could not process the topology description update; see the error message for details."},
	{ControllerIDNotRegistered, "CONTROLLER_ID_NOT_REGISTERED", false, "The given controller ID was not registered."},
}

// lookup returns the table row for c, or false if c is not a known code.
func lookup(c Code) (codeInfo, bool) {
	// The table is dense from -1 upward (0 included), so index directly.
	i := int(c) + 1
	if i < 0 || i >= len(codeTable) {
		return codeInfo{}, false
	}
	return codeTable[i], true
}

// String returns Kafka's name for the code, e.g. "UNKNOWN_TOPIC_OR_PARTITION",
// or "UNKNOWN_CODE(n)" for a code this package does not know.
func (c Code) String() string {
	if info, ok := lookup(c); ok {
		return info.name
	}
	return "UNKNOWN_CODE(" + strconv.Itoa(int(c)) + ")"
}

// Message returns Kafka's short description of the code ("" for None).
func (c Code) Message() string {
	if info, ok := lookup(c); ok {
		return info.message
	}
	return "Unknown error code."
}

// Retriable reports whether Kafka clients retry a request that failed with c.
func (c Code) Retriable() bool {
	info, ok := lookup(c)
	return ok && info.retriable
}

// Known reports whether c is a code this package has a name for.
func (c Code) Known() bool {
	_, ok := lookup(c)
	return ok
}

// Err returns c as an error: nil for None, else a *Error with no detail.
func (c Code) Err() error {
	if c == None {
		return nil
	}
	return &Error{Code: c}
}

// Error is a Kafka error code with an optional detail message, usable as a
// Go error. The detail is what goes into a response's ErrorMessage field
// where the response has one.
type Error struct {
	Code    Code
	Message string
}

// New returns an *Error for code with a detail message.
func New(code Code, message string) *Error {
	return &Error{Code: code, Message: message}
}

// Error implements error: "NAME: detail", falling back to Kafka's description.
func (e *Error) Error() string {
	message := e.Message
	if message == "" {
		message = e.Code.Message()
	}
	if message == "" {
		return e.Code.String()
	}
	return e.Code.String() + ": " + message
}

// Is makes errors.Is(err, &kerr.Error{Code: c}) match on the code alone.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// FromError returns the Kafka code for err: None for nil, the code of the
// first *Error in err's chain, else UnknownServerError.
func FromError(err error) Code {
	if err == nil {
		return None
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return UnknownServerError
}
