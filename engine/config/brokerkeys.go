package config

import (
	"strconv"
	"strings"
)

// BrokerKey describes one broker-level setting sluice honours, for
// DescribeConfigs on the broker resource (kafka-configs --describe --all
// --entity-type brokers). The broker-level synonyms of topic configs
// (log.retention.ms, ...) come from TopicKeys; these are the others.
type BrokerKey struct {
	Name string
	Type Type
	Doc  string
	// Default is the value when server.properties does not set it:
	// Kafka's, or sluice's own where it differs (said in Doc).
	Default func(b *Broker) string
	// Live: Default reads what the broker runs with, which a flag may
	// have set over server.properties; it is the value shown either way.
	Live bool
}

func fixed(v string) func(*Broker) string { return func(*Broker) string { return v } }

// shardsDefault is sluice's default for the internal topics' partition
// counts: one per shard.
func shardsDefault(b *Broker) string { return strconv.Itoa(max(b.Shards, 1)) }

// BrokerKeys lists the broker settings sluice honours, by name.
var BrokerKeys = []BrokerKey{
	{Name: "advertised.listeners", Type: TypeString, Doc: "The listener given to clients in Metadata (the first PLAINTEXT one).", Live: true, Default: func(b *Broker) string {
		if b.Advertise != "" {
			return "PLAINTEXT://" + b.Advertise
		}
		return "PLAINTEXT://" + b.Listen
	}},
	{Name: "auto.create.topics.enable", Type: TypeBoolean, Doc: "Create a topic when a client asks for one that does not exist.", Default: fixed("true")},
	{Name: "broker.id", Type: TypeInt, Doc: "The node's id (node.id).", Live: true, Default: func(b *Broker) string { return strconv.Itoa(int(b.NodeID)) }},
	{Name: "broker.rack", Type: TypeString, Doc: "The node's rack, for follower fetching from the standby (KIP-392).", Default: fixed("")},
	{Name: "connections.max.idle.ms", Type: TypeLong, Doc: "Idle connections are closed after this long.", Default: fixed("600000")},
	{Name: "group.consumer.assignors", Type: TypeList, Doc: "Server-side assignors of the consumer group protocol (uniform, range).", Default: fixed("uniform,range")},
	{Name: "group.consumer.heartbeat.interval.ms", Type: TypeInt, Doc: "Heartbeat interval of the consumer group protocol.", Default: fixed("5000")},
	{Name: "group.consumer.max.size", Type: TypeInt, Doc: "Most members of a consumer-protocol group.", Default: fixed("2147483647")},
	{Name: "group.consumer.session.timeout.ms", Type: TypeInt, Doc: "Session timeout of the consumer group protocol.", Default: fixed("45000")},
	{Name: "group.initial.rebalance.delay.ms", Type: TypeInt, Doc: "How long a new classic group waits for more members before its first rebalance.", Default: fixed("3000")},
	{Name: "group.max.session.timeout.ms", Type: TypeInt, Doc: "Longest session timeout a classic member may ask for.", Default: fixed("1800000")},
	{Name: "group.max.size", Type: TypeInt, Doc: "Most members of a classic group.", Default: fixed("2147483647")},
	{Name: "group.min.session.timeout.ms", Type: TypeInt, Doc: "Shortest session timeout a classic member may ask for.", Default: fixed("6000")},
	{Name: "listeners", Type: TypeString, Doc: "The Kafka listener (the first PLAINTEXT one).", Live: true, Default: func(b *Broker) string { return "PLAINTEXT://" + b.Listen }},
	{Name: "log.cleaner.backoff.ms", Type: TypeLong, Doc: "How often the log cleaner looks for compacted logs due a pass.", Default: fixed("15000")},
	{Name: "log.cleaner.dedupe.buffer.size", Type: TypeLong, Doc: "Memory for one cleaning pass's key map.", Default: fixed("134217728")},
	{Name: "log.cleaner.enable", Type: TypeBoolean, Doc: "Run the log cleaner (compaction of cleanup.policy=compact topics).", Default: fixed("true")},
	{Name: "log.cleaner.io.max.bytes.per.second", Type: TypeDouble, Doc: "The log cleaner's read plus write rate limit.", Default: fixed("1.7976931348623157E308")},
	{Name: "log.dirs", Type: TypeString, Doc: "The data directory (the first one).", Live: true, Default: func(b *Broker) string { return b.DataDir }},
	{Name: "log.flush.offset.checkpoint.interval.ms", Type: TypeInt, Doc: "How often every partition is synced and its recovery point recorded (sluice's default, 10 s; Kafka's is 60 s).", Default: fixed("10000")},
	{Name: "log.retention.check.interval.ms", Type: TypeLong, Doc: "How often retention runs.", Default: fixed("300000")},
	{Name: "node.id", Type: TypeInt, Doc: "The node's id.", Live: true, Default: func(b *Broker) string { return strconv.Itoa(int(b.NodeID)) }},
	{Name: "num.partitions", Type: TypeInt, Doc: "Partitions of an automatically created topic.", Default: fixed("1")},
	{Name: "offset.metadata.max.bytes", Type: TypeInt, Doc: "Largest metadata string of a committed offset.", Default: fixed("4096")},
	{Name: "offsets.retention.check.interval.ms", Type: TypeLong, Doc: "How often expired committed offsets are removed.", Default: fixed("600000")},
	{Name: "offsets.retention.minutes", Type: TypeInt, Doc: "How long an empty group's committed offsets are kept.", Default: fixed("10080")},
	{Name: "offsets.topic.num.partitions", Type: TypeInt, Doc: "Partitions of __consumer_offsets (sluice's default: one per shard).", Default: shardsDefault},
	{Name: "offsets.topic.segment.bytes", Type: TypeInt, Doc: "segment.bytes of __consumer_offsets.", Default: fixed("104857600")},
	{Name: "replica.lag.time.max.ms", Type: TypeLong, Doc: "How long the standby may go without catching up before it leaves the in-sync set.", Default: fixed("30000")},
	{Name: "socket.request.max.bytes", Type: TypeInt, Doc: "Largest request a client may send.", Default: fixed("104857600")},
	{Name: "transaction.abort.timed.out.transaction.cleanup.interval.ms", Type: TypeInt, Doc: "How often transactions past their timeout are aborted.", Default: fixed("10000")},
	{Name: "transaction.max.timeout.ms", Type: TypeInt, Doc: "Longest transaction.timeout.ms a producer may ask for.", Default: fixed("900000")},
	{Name: "transaction.remove.expired.transaction.cleanup.interval.ms", Type: TypeInt, Doc: "How often expired transactional ids are removed.", Default: fixed("3600000")},
	{Name: "transaction.state.log.num.partitions", Type: TypeInt, Doc: "Partitions of __transaction_state (sluice's default: one per shard).", Default: shardsDefault},
	{Name: "transaction.state.log.segment.bytes", Type: TypeInt, Doc: "segment.bytes of __transaction_state.", Default: fixed("104857600")},
	{Name: "transactional.id.expiration.ms", Type: TypeInt, Doc: "How long a transactional id's state is kept without use.", Default: fixed("604800000")},
}

// Sensitive reports a setting whose value DescribeConfigs must not show
// (Kafka's PASSWORD type: passwords, secrets, JAAS configurations).
func Sensitive(name string) bool {
	for _, part := range []string{"password", "secret", "jaas.config", "credentials"} {
		if strings.Contains(name, part) {
			return true
		}
	}
	return false
}
