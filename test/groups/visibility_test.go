package groups

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Lag, as operators see it: the broker's Prometheus metrics and Kafka's
// own kafka-consumer-groups.sh --describe.

// produceCounts appends counts[p] records to each partition p, acks=all.
func produceCounts(t testing.TB, b *broker, topic string, counts map[int32]int) {
	t.Helper()
	cl := b.client(t, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var recs []*kgo.Record
	for p, n := range counts {
		for i := range n {
			recs = append(recs, &kgo.Record{Partition: p, Key: fmt.Appendf(nil, "%s-%d-%d", topic, p, i), Value: []byte("v")})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce to %s: %v", topic, err)
	}
}

// commitGroupOffsets commits offsets outside group management
// (generation -1), as an admin tool or a simple consumer does.
func commitGroupOffsets(t testing.TB, adm *kadm.Client, group, topic string, offsets map[int32]int64) {
	t.Helper()
	var offs kadm.Offsets
	for p, o := range offsets {
		offs.Add(kadm.Offset{Topic: topic, Partition: p, At: o, LeaderEpoch: -1})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := adm.CommitAllOffsets(ctx, group, offs); err != nil {
		t.Fatalf("commit %s %v: %v", group, offsets, err)
	}
}

// committedOffsets is what OffsetFetch answers for group on topic.
func committedOffsets(t testing.TB, adm *kadm.Client, group, topic string) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := adm.FetchOffsets(ctx, group)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("fetch offsets of %s: %v", group, err)
	}
	out := map[int32]int64{}
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil && o.At >= 0 {
			out[o.Partition] = o.At
		}
	})
	return out
}

var seriesLine = regexp.MustCompile(`^(sluice_consumer_group_[a-z_]+)\{([^}]*)\} (\S+)$`)

// scrapeGroupMetrics reads /metrics on the broker's --http listener and
// returns the sluice_consumer_group_* series: name -> "group/topic/partition" -> value.
func scrapeGroupMetrics(t testing.TB, b *broker) map[string]map[string]float64 {
	t.Helper()
	if b.http == "" {
		t.Fatal("the broker has no --http listener (startBrokerHTTP)")
	}
	var body []byte
	waitFor(t, 10*time.Second, "GET /metrics", func() (bool, string) {
		resp, err := http.Get("http://" + b.http + "/metrics")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		body, err = io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			return false, fmt.Sprintf("status %d, %v", resp.StatusCode, err)
		}
		return true, ""
	})
	out := map[string]map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		m := seriesLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		labels := map[string]string{}
		for _, kv := range strings.Split(m[2], ",") {
			k, v, _ := strings.Cut(kv, "=")
			labels[k] = strings.Trim(v, `"`)
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", sc.Text(), err)
		}
		if out[m[1]] == nil {
			out[m[1]] = map[string]float64{}
		}
		out[m[1]][labels["group"]+"/"+labels["topic"]+"/"+labels["partition"]] = v
	}
	return out
}

// onlyGroup keeps the series of one group.
func onlyGroup(series map[string]float64, group string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range series {
		if strings.HasPrefix(k, group+"/") {
			out[k] = v
		}
	}
	return out
}

// TestGroupLagMetrics: committed offsets, partition ends (high watermarks)
// and lag per group and partition in the broker's /metrics, read at scrape
// time, so a produce or a commit shows at the next scrape.
func TestGroupLagMetrics(t *testing.T) {
	b := startBrokerHTTP(t, nil)
	adm := b.admin(t)
	topic, group := "lagged", "lag-group"
	createTopic(t, adm, topic, 3)
	produceCounts(t, b, topic, map[int32]int{0: 20, 1: 30, 2: 40})
	commitGroupOffsets(t, adm, group, topic, map[int32]int64{0: 5, 1: 30, 2: 0})
	produceCounts(t, b, topic, map[int32]int{0: 7, 2: 3})

	check := func(when string, committed, ends map[int32]int64) {
		t.Helper()
		got := scrapeGroupMetrics(t, b)
		want := map[string]map[string]float64{
			"sluice_consumer_group_committed_offset": {},
			"sluice_consumer_group_log_end_offset":   {},
			"sluice_consumer_group_lag":              {},
		}
		for p, c := range committed {
			k := fmt.Sprintf("%s/%s/%d", group, topic, p)
			want["sluice_consumer_group_committed_offset"][k] = float64(c)
			want["sluice_consumer_group_log_end_offset"][k] = float64(ends[p])
			want["sluice_consumer_group_lag"][k] = float64(ends[p] - c)
		}
		for name, series := range want {
			if g := onlyGroup(got[name], group); !maps.Equal(g, series) {
				t.Errorf("%s: %s = %v, want %v", when, name, g, series)
			}
		}
	}
	// 27-5, 30-30, 43-0: exactly the records produced past each commit.
	check("after the extra records", map[int32]int64{0: 5, 1: 30, 2: 0}, map[int32]int64{0: 27, 1: 30, 2: 43})
	commitGroupOffsets(t, adm, group, topic, map[int32]int64{0: 27, 2: 40})
	produceCounts(t, b, topic, map[int32]int{1: 4})
	check("after another commit and produce", map[int32]int64{0: 27, 1: 30, 2: 40}, map[int32]int64{0: 27, 1: 34, 2: 43})
}

// kafkaToolsVersion is the Kafka whose kafka-consumer-groups.sh the suite
// runs; .ci/install-deps caches its kafka-tools jars.
const kafkaToolsVersion = "4.3.1"

// prepareKafkaTools returns the classpath of Kafka's command-line tools
// (org.apache.kafka:kafka-tools with its runtime dependencies, cached by
// .ci/install-deps in $SLUICE_KAFKA_TOOLS, default
// $HOME/.cache/sluice/kafka-tools-VERSION): missing, the test is skipped,
// or fails in CI.
func prepareKafkaTools(t testing.TB) string {
	t.Helper()
	if _, err := exec.LookPath("java"); err != nil {
		missingTool(t, "Kafka's kafka-consumer-groups.sh", "java is not on PATH")
	}
	dir := os.Getenv("SLUICE_KAFKA_TOOLS")
	if dir == "" {
		cache := os.Getenv("SLUICE_CACHE")
		if cache == "" {
			home, _ := os.UserHomeDir()
			cache = filepath.Join(home, ".cache", "sluice")
		}
		dir = filepath.Join(cache, "kafka-tools-"+kafkaToolsVersion)
	}
	if jars, _ := filepath.Glob(filepath.Join(dir, "kafka-tools-*.jar")); len(jars) == 0 {
		missingTool(t, "Kafka's kafka-consumer-groups.sh", "no kafka-tools jar in "+dir+" (run .ci/install-deps)")
	}
	return filepath.Join(dir, "*")
}

// describedRow is one partition row of kafka-consumer-groups.sh --describe.
type describedRow struct {
	current, end, lag string // as printed; "-" when unknown
	consumerID        string
}

// describeWithKafkaTool runs kafka-consumer-groups.sh --describe (its main
// class) for groups and parses the partition rows: group -> "topic/partition" -> row.
func describeWithKafkaTool(t *testing.T, cp string, b *broker, groups ...string) (map[string]map[string]describedRow, string) {
	t.Helper()
	args := []string{"-cp", cp, "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"org.apache.kafka.tools.consumer.group.ConsumerGroupCommand", "--bootstrap-server", b.addr, "--describe"}
	for _, g := range groups {
		args = append(args, "--group", g)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "java", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("kafka-consumer-groups.sh --describe: %v\n%s", err, out)
	}
	rows := map[string]map[string]describedRow{}
	var header []string
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 0 && fields[0] == "GROUP" {
			header = fields
			continue
		}
		if header == nil || len(fields) < 6 {
			continue
		}
		col := map[string]string{}
		for i, name := range header {
			if i < len(fields) {
				col[name] = fields[i]
			}
		}
		if rows[col["GROUP"]] == nil {
			rows[col["GROUP"]] = map[string]describedRow{}
		}
		// HOST may print empty, shifting CLIENT-ID; CONSUMER-ID comes first.
		rows[col["GROUP"]][col["TOPIC"]+"/"+col["PARTITION"]] = describedRow{
			current: col["CURRENT-OFFSET"], end: col["LOG-END-OFFSET"], lag: col["LAG"], consumerID: col["CONSUMER-ID"],
		}
	}
	return rows, string(out)
}

// TestKafkaConsumerGroupsDescribe: Kafka's own kafka-consumer-groups.sh
// --describe shows, for an empty group, a classic group with a member and
// a KIP-848 group with a member, each partition's committed offset, log
// end offset and lag exactly, and who owns it; the broker's lag metrics
// say the same.
func TestKafkaConsumerGroupsDescribe(t *testing.T) {
	cp := prepareKafkaTools(t)
	b := startBrokerHTTP(t, nil)
	adm := b.admin(t)
	topic := "described-lag"
	createTopic(t, adm, topic, 3)
	produceCounts(t, b, topic, map[int32]int{0: 10, 1: 20, 2: 30})
	committed := map[string]map[int32]int64{
		"tool-empty":    {0: 4, 1: 20, 2: 0},
		"tool-classic":  {0: 1, 1: 2, 2: 3},
		"tool-consumer": {0: 10, 1: 0, 2: 29},
	}
	for g, offs := range committed {
		commitGroupOffsets(t, adm, g, topic, offs)
	}
	// Members that consume but never commit, so their lag stays put.
	member := func(group string, opts ...kgo.Opt) {
		base := []kgo.Opt{kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.DisableAutoCommit(),
			kgo.ClientID(group + "-client"), kgo.SessionTimeout(6 * time.Second), kgo.HeartbeatInterval(300 * time.Millisecond)}
		b.client(t, append(base, opts...)...)
	}
	member("tool-classic", kgo.Balancers(kgo.RangeBalancer()))
	member("tool-consumer", kgo.Balancers(kgo.CooperativeStickyBalancer()), kgo.ServerSideBalancer())
	cl := b.client(t)
	memberIDs := map[string]string{}
	waitFor(t, 30*time.Second, "both groups to assign every partition to their member", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		dg := kmsg.NewPtrDescribeGroupsRequest()
		dg.Groups = []string{"tool-classic"}
		dr, err := dg.RequestWith(ctx, cl)
		if err != nil || len(dr.Groups) != 1 || dr.Groups[0].State != "Stable" || len(dr.Groups[0].Members) != 1 {
			return false, fmt.Sprintf("classic group: %v %+v", err, dr)
		}
		memberIDs["tool-classic"] = dr.Groups[0].Members[0].MemberID
		cg := kmsg.NewPtrConsumerGroupDescribeRequest()
		cg.Groups = []string{"tool-consumer"}
		cr, err := cg.RequestWith(ctx, cl)
		if err != nil || len(cr.Groups) != 1 || cr.Groups[0].State != "Stable" || len(cr.Groups[0].Members) != 1 {
			return false, fmt.Sprintf("consumer group: %v %+v", err, cr)
		}
		m := cr.Groups[0].Members[0]
		n := 0
		for _, tp := range m.Assignment.TopicPartitions {
			n += len(tp.Partitions)
		}
		if n != 3 {
			return false, fmt.Sprintf("consumer group member owns %d partitions", n)
		}
		memberIDs["tool-consumer"] = m.MemberID
		return true, ""
	})
	produceCounts(t, b, topic, map[int32]int{0: 5, 2: 2})
	ends := map[int32]int64{0: 15, 1: 20, 2: 32}

	rows, out := describeWithKafkaTool(t, cp, b, "tool-empty", "tool-classic", "tool-consumer")
	t.Logf("kafka-consumer-groups.sh --describe:\n%s", out)
	metrics := scrapeGroupMetrics(t, b)
	for g, offs := range committed {
		if len(rows[g]) != len(offs) {
			t.Errorf("%s: %d partition rows, want %d", g, len(rows[g]), len(offs))
		}
		for p, c := range offs {
			key := fmt.Sprintf("%s/%d", topic, p)
			row, ok := rows[g][key]
			if !ok {
				continue
			}
			want := describedRow{current: strconv.FormatInt(c, 10), end: strconv.FormatInt(ends[p], 10), lag: strconv.FormatInt(ends[p]-c, 10), consumerID: "-"}
			if id := memberIDs[g]; id != "" {
				want.consumerID = id
			}
			if row != want {
				t.Errorf("%s %s: CURRENT-OFFSET %s LOG-END-OFFSET %s LAG %s CONSUMER-ID %s, want %s %s %s %s",
					g, key, row.current, row.end, row.lag, row.consumerID, want.current, want.end, want.lag, want.consumerID)
			}
			if lag := metrics["sluice_consumer_group_lag"][g+"/"+key]; strconv.FormatFloat(lag, 'f', -1, 64) != row.lag {
				t.Errorf("%s %s: sluice_consumer_group_lag %v, the tool's LAG %s", g, key, lag, row.lag)
			}
		}
	}
}
