package config

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Broker is the configuration of one sluice broker.
type Broker struct {
	DataDir      string
	Listen       string // host:port the Kafka listener binds
	Advertise    string // host:port given to clients in Metadata
	HTTP         string // metrics and admin listener
	Shards       int
	NodeID       int32
	PinCPUs      bool
	RequireURing bool // refuse to start without io_uring instead of falling back
	// IOMode is the write mode: IOModeDirect or IOModePageCache.
	IOMode string
	// TailCacheBytes is direct mode's tail cache budget, split evenly
	// across shards (each shard's share split fairly across partitions).
	TailCacheBytes int64
	// DirectDsync: in direct mode, acks=all appends are made durable by
	// RWF_DSYNC writes rather than writes then fdatasync.
	DirectDsync bool
	// DirectPreZero: in direct mode, segment space allocated ahead of the
	// writer is overwritten with zeros before data lands in it.
	DirectPreZero bool
	ClusterID     string
	NumPartitions int32
	AutoCreate    bool

	SocketRequestMaxBytes int32
	ConnectionsMaxIdle    time.Duration
	// RetentionCheckInterval is log.retention.check.interval.ms.
	RetentionCheckInterval time.Duration
	// CheckpointInterval is log.flush.offset.checkpoint.interval.ms: how
	// often every partition is synced and its recovery point recorded,
	// which bounds what a crash recovery scans. Kafka's default is 60 s;
	// sluice's is 10 s.
	CheckpointInterval time.Duration
	// ReplicaLagTimeMax is replica.lag.time.max.ms: a standby that has not
	// caught up with the primary for this long leaves the in-sync set
	// (Kafka's default, 30 s).
	ReplicaLagTimeMax time.Duration
	// StandbyOf is the Kafka address of the primary this node follows
	// (--standby-of); empty on a primary.
	StandbyOf string
	// Failover: an etcd lease decides which node of the pair is primary
	// (--failover-etcd); the primary answers acks=all without its standby
	// only while etcd records the standby out of sync.
	Failover bool
	// Rack is broker.rack, given to the primary by a standby (KIP-392).
	Rack string

	// The log cleaner (compaction): log.cleaner.enable,
	// log.cleaner.io.max.bytes.per.second (0: no limit, Kafka's default
	// being Double.MAX_VALUE), log.cleaner.dedupe.buffer.size and
	// log.cleaner.backoff.ms (how often compacted logs are checked).
	CleanerEnable          bool
	CleanerIOBytesPerSec   float64
	CleanerDedupeBufferLen int64
	CleanerBackoff         time.Duration

	// Props holds every key read from server.properties (and broker-level
	// topic defaults set by flags), so topic configs can report their broker
	// synonyms.
	Props map[string]string
}

// Defaults returns Kafka's defaults adapted to one node.
// The write modes of DESIGN.md.
const (
	IOModeDirect    = "direct"
	IOModePageCache = "page-cache"
)

func Defaults() *Broker {
	return &Broker{
		IOMode:                 IOModeDirect,
		TailCacheBytes:         256 << 20,
		DirectDsync:            true,
		DirectPreZero:          true,
		DataDir:                "./data",
		Listen:                 "127.0.0.1:9092",
		HTTP:                   "127.0.0.1:9645",
		Shards:                 runtime.NumCPU(),
		NodeID:                 1,
		NumPartitions:          1,
		AutoCreate:             true,
		SocketRequestMaxBytes:  104857600,
		ConnectionsMaxIdle:     10 * time.Minute,
		RetentionCheckInterval: 5 * time.Minute,
		CheckpointInterval:     10 * time.Second,
		ReplicaLagTimeMax:      30 * time.Second,
		CleanerEnable:          true,
		CleanerDedupeBufferLen: 128 << 20,
		CleanerBackoff:         15 * time.Second,
		Props:                  map[string]string{},
	}
}

// ReadProperties parses a Java-style properties file (key=value or key:value,
// # and ! comments, backslash line continuation).
func ReadProperties(r io.Reader) (map[string]string, error) {
	props := map[string]string{}
	sc := bufio.NewScanner(r)
	var pending string
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if pending == "" && (line == "" || line[0] == '#' || line[0] == '!') {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			pending += strings.TrimSuffix(line, `\`)
			continue
		}
		line = pending + line
		pending = ""
		i := strings.IndexAny(line, "=:")
		if i < 0 {
			props[line] = ""
			continue
		}
		props[strings.TrimSpace(line[:i])] = strings.TrimSpace(line[i+1:])
	}
	return props, sc.Err()
}

// LoadFile applies a server.properties file to b. Flags are applied after it
// by the caller, so flags win.
func (b *Broker) LoadFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	props, err := ReadProperties(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return b.Apply(props)
}

// Apply sets broker keys from Kafka property names.
func (b *Broker) Apply(props map[string]string) error {
	for k, v := range props {
		if err := b.set(k, v); err != nil {
			return fmt.Errorf("%s=%s: %w", k, v, err)
		}
		b.Props[k] = v
	}
	return nil
}

func listenerAddress(v string) string {
	// "PLAINTEXT://host:port[,...]": sluice serves the first plaintext one.
	first := strings.Split(v, ",")[0]
	if i := strings.Index(first, "://"); i >= 0 {
		first = first[i+3:]
	}
	return first
}

func (b *Broker) set(k, v string) error {
	switch k {
	case "log.dirs", "log.dir":
		b.DataDir = strings.Split(v, ",")[0]
	case "listeners":
		b.Listen = listenerAddress(v)
	case "advertised.listeners":
		b.Advertise = listenerAddress(v)
	case "node.id", "broker.id":
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil {
			return err
		}
		b.NodeID = int32(n)
	case "num.partitions":
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 1 {
			return fmt.Errorf("must be a positive int")
		}
		b.NumPartitions = int32(n)
	case "auto.create.topics.enable":
		b.AutoCreate = v == "true"
	case "socket.request.max.bytes":
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 1 {
			return fmt.Errorf("must be a positive int")
		}
		b.SocketRequestMaxBytes = int32(n)
	case "connections.max.idle.ms":
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return err
		}
		b.ConnectionsMaxIdle = time.Duration(n) * time.Millisecond
	case "cluster.id":
		b.ClusterID = v
	case "log.retention.check.interval.ms":
		return setMillis(&b.RetentionCheckInterval, v)
	case "log.flush.offset.checkpoint.interval.ms":
		return setMillis(&b.CheckpointInterval, v)
	case "replica.lag.time.max.ms":
		return setMillis(&b.ReplicaLagTimeMax, v)
	case "broker.rack":
		b.Rack = v
	case "log.cleaner.enable":
		b.CleanerEnable = v == "true"
	case "log.cleaner.io.max.bytes.per.second":
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			return fmt.Errorf("must be a positive number")
		}
		if f >= math.MaxFloat64/2 {
			f = 0 // Kafka's default, Double.MAX_VALUE: no limit
		}
		b.CleanerIOBytesPerSec = f
	case "log.cleaner.dedupe.buffer.size":
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1<<20 {
			return fmt.Errorf("must be at least 1048576")
		}
		b.CleanerDedupeBufferLen = n
	case "log.cleaner.backoff.ms":
		return setMillis(&b.CleanerBackoff, v)
	}
	return nil
}

func setMillis(d *time.Duration, v string) error {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return fmt.Errorf("must be a positive number of milliseconds")
	}
	*d = time.Duration(n) * time.Millisecond
	return nil
}

// topicDefault returns the broker-level value for a topic config, honouring
// Kafka's unit variants (log.retention.hours/minutes, log.roll.hours).
func (b *Broker) topicDefault(k TopicKey) (string, bool) {
	if k.BrokerSynonym == "" {
		return "", false
	}
	if v, ok := b.Props[k.BrokerSynonym]; ok {
		return v, true
	}
	scaled := func(key string, unit int64) (string, bool) {
		v, ok := b.Props[key]
		if !ok {
			return "", false
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return "", false
		}
		if n < 0 {
			return "-1", true
		}
		return strconv.FormatInt(n*unit, 10), true
	}
	switch k.Name {
	case "retention.ms":
		if v, ok := scaled("log.retention.minutes", 60_000); ok {
			return v, true
		}
		return scaled("log.retention.hours", 3_600_000)
	case "segment.ms":
		return scaled("log.roll.hours", 3_600_000)
	}
	return "", false
}

// AdvertisedAddress is what Metadata tells clients to connect to.
func (b *Broker) AdvertisedAddress() (string, int32, error) {
	addr := b.Advertise
	if addr == "" {
		addr = b.Listen
	}
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		return "", 0, fmt.Errorf("address %q has no port", addr)
	}
	port, err := strconv.ParseInt(addr[i+1:], 10, 32)
	if err != nil {
		return "", 0, fmt.Errorf("address %q: %w", addr, err)
	}
	host := addr[:i]
	if host == "" || host == "0.0.0.0" || host == "::" || host == "[::]" {
		host = "127.0.0.1"
	}
	return strings.Trim(host, "[]"), int32(port), nil
}
