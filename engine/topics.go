package engine

import (
	"errors"
	"fmt"
	"regexp"
	"sync"

	"github.com/sluice-broker/sluice/engine/config"
	"github.com/sluice-broker/sluice/engine/meta"
	"github.com/sluice-broker/sluice/engine/shard"
	"github.com/sluice-broker/sluice/engine/storage"
	"github.com/sluice-broker/sluice/wire/kerr"
)

// errStandbyAdmin answers topic changes sent to a standby: Metadata names
// the primary as the controller, where admin clients send them.
var errStandbyAdmin = kerr.New(kerr.NotController, "this node is a standby; change topics on the primary")

// maxTopicNameLength is Kafka's limit.
const maxTopicNameLength = 249

// maxPartitions bounds the partitions of one broker: each is a directory,
// open files and memory, and one request must not be able to ask for
// billions of them.
const maxPartitions = 100_000

func (b *Broker) partitionCount() int {
	n := 0
	for _, t := range b.Meta.Snapshot().Topics {
		n += len(t.Partitions)
	}
	return n
}

func (b *Broker) checkPartitionBudget(more int32) error {
	if err := b.checkPartitionCount(more); err != nil {
		return err
	}
	return b.checkDescriptorBudget(more)
}

func (b *Broker) checkPartitionCount(more int32) error {
	if have := b.partitionCount(); have+int(more) > maxPartitions {
		return kerr.New(kerr.InvalidPartitions, fmt.Sprintf("this broker holds %d partitions; %d more would exceed its limit of %d", have, more, maxPartitions))
	}
	return nil
}

var legalTopicName = regexp.MustCompile(`^[a-zA-Z0-9._-]+$`)

// ValidateTopicName applies Kafka's topic naming rules.
func ValidateTopicName(name string) error {
	switch {
	case name == "":
		return kerr.New(kerr.InvalidTopicException, "topic name is empty")
	case name == "." || name == "..":
		return kerr.New(kerr.InvalidTopicException, "topic name cannot be \".\" or \"..\"")
	case name == MetadataTopic:
		return kerr.New(kerr.InvalidTopicException, "topic name "+MetadataTopic+" is reserved for the metadata log")
	case len(name) > maxTopicNameLength:
		return kerr.New(kerr.InvalidTopicException, fmt.Sprintf("topic name is longer than %d characters", maxTopicNameLength))
	case !legalTopicName.MatchString(name):
		return kerr.New(kerr.InvalidTopicException, fmt.Sprintf("topic name %q has characters other than ASCII alphanumerics, '.', '_' and '-'", name))
	}
	return nil
}

// CreateTopic validates and creates a topic, opening its partitions on their
// shards. With validateOnly nothing changes.
func (b *Broker) CreateTopic(name string, partitions int32, replicationFactor int16, configs map[string]string, validateOnly bool) (*meta.Topic, error) {
	if b.IsStandby() {
		return nil, errStandbyAdmin
	}
	if err := ValidateTopicName(name); err != nil {
		return nil, err
	}
	if partitions == -1 {
		partitions = b.Cfg.NumPartitions
	}
	if partitions <= 0 {
		return nil, kerr.New(kerr.InvalidPartitions, "number of partitions must be larger than 0")
	}
	brokers := int16(1)
	if _, ok := b.Peer(); ok {
		brokers = 2
	}
	if replicationFactor != -1 && (replicationFactor < 1 || replicationFactor > brokers) {
		// The primary and, if there is one, its standby, which follows
		// every partition whatever the factor.
		return nil, kerr.New(kerr.InvalidReplicationFactor, fmt.Sprintf("replication factor %d is larger than the %d available brokers", replicationFactor, brokers))
	}
	if err := config.ValidateTopicConfigs(configs); err != nil {
		return nil, kerr.New(kerr.InvalidConfig, err.Error())
	}
	b.topicMu.Lock()
	defer b.topicMu.Unlock()
	if _, ok := b.Meta.Topic(name); ok {
		return nil, kerr.New(kerr.TopicAlreadyExists, fmt.Sprintf("topic %q already exists", name))
	}
	if err := b.checkPartitionBudget(partitions); err != nil {
		return nil, err
	}
	if validateOnly {
		return &meta.Topic{Name: name, Partitions: make([]meta.Partition, partitions), Configs: configs}, nil
	}
	t, err := b.Meta.Create(name, partitions, configs, false)
	if err != nil {
		return nil, err
	}
	if err := b.openTopicPartitions(t, 0); err != nil {
		// Never leave a topic half-created: some of its partitions would
		// refuse every request, and a restart would try them again.
		if _, derr := b.deleteTopicLocked(name); derr != nil {
			b.Logger.Error("removing a topic whose partitions could not all be created", "topic", name, "err", derr)
		}
		return nil, kerr.New(kerr.KafkaStorageError, "creating the topic's partitions failed, and the topic was removed: "+err.Error())
	}
	return t, nil
}

// EnsureInternalTopic returns the internal topic name (one the broker itself
// writes, such as the group coordinator's __consumer_offsets), creating it
// with partitions and configs if it does not exist. Metadata reports it as
// internal.
func (b *Broker) EnsureInternalTopic(name string, partitions int32, configs map[string]string) (*meta.Topic, error) {
	b.topicMu.Lock()
	defer b.topicMu.Unlock()
	if t, ok := b.Meta.Topic(name); ok {
		return t, nil
	}
	// No descriptor budget: the broker cannot serve groups without it.
	if err := b.checkPartitionCount(partitions); err != nil {
		return nil, err
	}
	t, err := b.Meta.Create(name, partitions, configs, true)
	if err != nil {
		return nil, err
	}
	if err := b.openTopicPartitions(t, 0); err != nil {
		return nil, kerr.New(kerr.KafkaStorageError, err.Error())
	}
	return t, nil
}

// openTopicPartitions opens partitions from index first on their shards and
// waits.
//
// On a primary whose standby is live, the new partitions start with the
// standby in their in-sync set, as Kafka's controller creates a partition
// with every live replica in its ISR: acks=all waits for the standby from
// the first record (min.insync.replicas=2 holds at once), and the standby
// leaves the set after replica.lag.time.max.ms if it does not follow.
func (b *Broker) openTopicPartitions(t *meta.Topic, first int32) error {
	tc := b.TopicConfig(t)
	admit := b.standbyLive()
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, p := range t.Partitions[first:] {
		wg.Add(1)
		k := shard.Key{Topic: t.Name, Partition: p.Index}
		b.Shards[p.Shard].Do(func(s *shard.Shard) {
			defer wg.Done()
			if _, err := s.OpenPartition(k, t.ID, tc); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			if admit {
				s.AdmitStandby(k)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// DeleteTopic removes a topic and its data.
func (b *Broker) DeleteTopic(name string) (*meta.Topic, error) {
	if b.IsStandby() {
		return nil, errStandbyAdmin
	}
	b.topicMu.Lock()
	defer b.topicMu.Unlock()
	if t, ok := b.Meta.Topic(name); ok && t.Internal {
		return nil, kerr.New(kerr.InvalidRequest, "cannot delete internal topic "+name)
	}
	return b.deleteTopicLocked(name)
}

// deleteTopicLocked removes a topic and its data; the caller holds topicMu.
// Partitions that were never opened are answered ErrUnknownPartition by
// their shard, which is not an error here.
func (b *Broker) deleteTopicLocked(name string) (*meta.Topic, error) {
	t, err := b.Meta.Delete(name)
	if storage.IsNoSpace(err) {
		// The catalogue could not be rewritten for want of space, and
		// deleting a topic is how an operator frees it: remove the data
		// first, then the catalogue entry. A crash in between leaves the
		// topic in the catalogue with empty partitions, never with data
		// that was asked to go.
		cur, ok := b.Meta.Topic(name)
		if !ok {
			return nil, kerr.New(kerr.UnknownTopicOrPartition, "unknown topic "+name)
		}
		b.Logger.Warn("the disk is full: deleting the topic's data before its catalogue entry", "topic", name)
		b.deletePartitions(cur)
		t, err = b.Meta.Delete(name)
		if err != nil {
			return nil, kerr.New(kerr.KafkaStorageError, fmt.Sprintf("topic %s: its data is deleted but the catalogue could not be written: %v", name, err))
		}
		return t, nil
	}
	if errors.Is(err, meta.ErrUnknownTopic) {
		return nil, kerr.New(kerr.UnknownTopicOrPartition, "unknown topic "+name)
	}
	if err != nil {
		return nil, kerr.New(kerr.KafkaStorageError, fmt.Sprintf("deleting topic %s: %v", name, err))
	}
	b.deletePartitions(t)
	return t, nil
}

// deletePartitions deletes t's partitions on their shards and waits.
func (b *Broker) deletePartitions(t *meta.Topic) {
	var wg sync.WaitGroup
	for _, p := range t.Partitions {
		wg.Add(1)
		k := shard.Key{Topic: t.Name, Partition: p.Index}
		b.Shards[p.Shard].Do(func(s *shard.Shard) {
			s.DeletePartition(k, func(err error) {
				if err != nil && !errors.Is(err, shard.ErrUnknownPartition) {
					b.Logger.Error("delete partition", "partition", k.Dir(), "err", err)
				}
				wg.Done()
			})
		})
	}
	wg.Wait()
}

// AddPartitions grows a topic to total partitions.
func (b *Broker) AddPartitions(name string, total int32, validateOnly bool) error {
	if b.IsStandby() {
		return errStandbyAdmin
	}
	b.topicMu.Lock()
	defer b.topicMu.Unlock()
	t, ok := b.Meta.Topic(name)
	if !ok {
		return kerr.New(kerr.UnknownTopicOrPartition, "unknown topic "+name)
	}
	if t.Internal {
		return kerr.New(kerr.InvalidRequest, "cannot add partitions to internal topic "+name)
	}
	have := int32(len(t.Partitions))
	if total < have {
		return kerr.New(kerr.InvalidPartitions, fmt.Sprintf("topic currently has %d partitions, which is higher than the requested %d", have, total))
	}
	if total == have {
		return kerr.New(kerr.InvalidPartitions, fmt.Sprintf("topic already has %d partitions", have))
	}
	if err := b.checkPartitionBudget(total - have); err != nil {
		return err
	}
	if validateOnly {
		return nil
	}
	nt, err := b.Meta.AddPartitions(name, total)
	if err != nil {
		return err
	}
	if err := b.openTopicPartitions(nt, have); err != nil {
		return kerr.New(kerr.KafkaStorageError, err.Error())
	}
	return nil
}

// SetTopicConfigs replaces a topic's overrides (after validation) and
// applies them to its partitions.
func (b *Broker) SetTopicConfigs(name string, overrides map[string]string, validateOnly bool) error {
	if b.IsStandby() {
		return errStandbyAdmin
	}
	if err := config.ValidateTopicConfigs(overrides); err != nil {
		return kerr.New(kerr.InvalidConfig, err.Error())
	}
	b.topicMu.Lock()
	defer b.topicMu.Unlock()
	if _, ok := b.Meta.Topic(name); !ok {
		return kerr.New(kerr.UnknownTopicOrPartition, "unknown topic "+name)
	}
	if validateOnly {
		return nil
	}
	return b.setTopicConfigsLocked(name, overrides)
}

// setTopicConfigsLocked replaces a topic's overrides and applies them; the
// caller holds topicMu.
func (b *Broker) setTopicConfigsLocked(name string, overrides map[string]string) error {
	t, err := b.Meta.SetConfigs(name, overrides)
	if err != nil {
		return err
	}
	tc := b.TopicConfig(t)
	var wg sync.WaitGroup
	for _, p := range t.Partitions {
		wg.Add(1)
		k := shard.Key{Topic: t.Name, Partition: p.Index}
		b.Shards[p.Shard].Do(func(s *shard.Shard) {
			defer wg.Done()
			s.SetTopicConfig(k, tc)
		})
	}
	wg.Wait()
	return nil
}
