package groups

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestConsumerProtocolChurn is TestClassicGroupChurn under the KIP-848
// consumer protocol (franz-go's ServerSideBalancer): the broker assigns
// with its uniform assignor and members reconcile incrementally.
func TestConsumerProtocolChurn(t *testing.T) {
	runChurn(t, "server", false)
}

// TestConsumerGroupDescribe: ConsumerGroupDescribe of a live KIP-848 group.
func TestConsumerGroupDescribe(t *testing.T) {
	b := startBroker(t, nil)
	topic, group := "described", "group-described"
	createTopic(t, b.admin(t), topic, churnPartitions)
	f := newFleet(t, b)
	for _, name := range []string{"a", "b"} {
		f.start(consumerSpec{name: name, group: group, topic: topic, balancer: "server"})
	}
	waitOwners(t, f, "a", "b")
	cl := b.client(t)
	req := kmsg.NewPtrConsumerGroupDescribeRequest()
	req.Groups = []string{group, "classic-or-missing"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil || len(resp.Groups) != 2 {
		t.Fatalf("ConsumerGroupDescribe: %v %+v", err, resp)
	}
	d := resp.Groups[0]
	if d.ErrorCode != 0 || d.State != "Stable" || len(d.Members) != 2 || d.AssignorName != "uniform" || d.Epoch == 0 || d.AssignmentEpoch != d.Epoch {
		t.Fatalf("described group: %+v", d)
	}
	total := 0
	for _, m := range d.Members {
		if len(m.SubscribedTopics) != 1 || m.SubscribedTopics[0] != topic || m.MemberEpoch != d.Epoch {
			t.Errorf("member %s: %+v", m.MemberID, m)
		}
		for _, tp := range m.Assignment.TopicPartitions {
			if tp.Topic != topic {
				t.Errorf("assignment names topic %q", tp.Topic)
			}
			total += len(tp.Partitions)
		}
	}
	if total != churnPartitions {
		t.Errorf("%d partitions assigned, want %d", total, churnPartitions)
	}
	if resp.Groups[1].ErrorCode != 69 { // GROUP_ID_NOT_FOUND
		t.Errorf("a missing group: error %d", resp.Groups[1].ErrorCode)
	}
	f.stop("a")
	f.stop("b")
}
