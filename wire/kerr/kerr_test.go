package kerr

import (
	"errors"
	"fmt"
	"testing"
)

func TestCodes(t *testing.T) {
	tests := []struct {
		code      Code
		value     int16
		name      string
		retriable bool
	}{
		{UnknownServerError, -1, "UNKNOWN_SERVER_ERROR", false},
		{None, 0, "NONE", false},
		{OffsetOutOfRange, 1, "OFFSET_OUT_OF_RANGE", false},
		{CorruptMessage, 2, "CORRUPT_MESSAGE", true},
		{UnknownTopicOrPartition, 3, "UNKNOWN_TOPIC_OR_PARTITION", true},
		{NotLeaderOrFollower, 6, "NOT_LEADER_OR_FOLLOWER", true},
		{MessageTooLarge, 10, "MESSAGE_TOO_LARGE", false},
		{UnsupportedVersion, 35, "UNSUPPORTED_VERSION", false},
		{InvalidConfig, 40, "INVALID_CONFIG", false},
		{UnsupportedForMessageFormat, 43, "UNSUPPORTED_FOR_MESSAGE_FORMAT", false},
		{OutOfOrderSequenceNumber, 45, "OUT_OF_ORDER_SEQUENCE_NUMBER", false},
		{InvalidProducerEpoch, 47, "INVALID_PRODUCER_EPOCH", false},
		{UnknownProducerID, 59, "UNKNOWN_PRODUCER_ID", false},
		{FetchSessionIDNotFound, 70, "FETCH_SESSION_ID_NOT_FOUND", true},
		{InvalidFetchSessionEpoch, 71, "INVALID_FETCH_SESSION_EPOCH", true},
		{FencedLeaderEpoch, 74, "FENCED_LEADER_EPOCH", true},
		{UnknownLeaderEpoch, 75, "UNKNOWN_LEADER_EPOCH", true},
		{UnknownTopicID, 100, "UNKNOWN_TOPIC_ID", true},
		{InconsistentTopicID, 103, "INCONSISTENT_TOPIC_ID", true},
		{TransactionAbortable, 120, "TRANSACTION_ABORTABLE", false},
	}
	for _, tt := range tests {
		if int16(tt.code) != tt.value || tt.code.String() != tt.name || tt.code.Retriable() != tt.retriable {
			t.Errorf("%d: got %d %s retriable=%v", tt.value, int16(tt.code), tt.code, tt.code.Retriable())
		}
		if tt.code != None && tt.code.Message() == "" {
			t.Errorf("%s has no message", tt.code)
		}
	}
	if Code(9999).String() != "UNKNOWN_CODE(9999)" || Code(9999).Known() || Code(-2).Known() {
		t.Error("unknown codes misreported")
	}
}

func TestTableDense(t *testing.T) {
	for i, info := range codeTable {
		if int(info.code) != i-1 {
			t.Fatalf("row %d holds code %d", i, info.code)
		}
	}
}

func TestFromError(t *testing.T) {
	if FromError(nil) != None {
		t.Error("nil is not None")
	}
	if FromError(errors.New("disk on fire")) != UnknownServerError {
		t.Error("plain error is not UnknownServerError")
	}
	err := fmt.Errorf("produce: %w", New(NotEnoughReplicas, "standby out of sync"))
	if FromError(err) != NotEnoughReplicas {
		t.Errorf("wrapped: got %s", FromError(err))
	}
	if !errors.Is(err, &Error{Code: NotEnoughReplicas}) {
		t.Error("errors.Is does not match on code")
	}
	if got := err.Error(); got != "produce: NOT_ENOUGH_REPLICAS: standby out of sync" {
		t.Errorf("Error() = %q", got)
	}
	if NotController.Err().Error() != "NOT_CONTROLLER: This is not the correct controller for this cluster." {
		t.Errorf("Err() = %q", NotController.Err())
	}
	if None.Err() != nil {
		t.Error("None.Err() != nil")
	}
}
