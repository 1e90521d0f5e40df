package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Kafka Streams: a stateless application with exactly_once_v2
// (test/clients/streams), compiled with javac against the Kafka Streams
// jars .ci/install-deps caches in $SLUICE_STREAMS_LIBS (default
// $SLUICE_CACHE/streams).

var (
	streamsOnce      sync.Once
	streamsClasspath string
	streamsProblem   string
)

func prepareStreams(t *testing.T) string {
	t.Helper()
	streamsOnce.Do(func() {
		libs := os.Getenv("SLUICE_STREAMS_LIBS")
		if libs == "" {
			libs = filepath.Join(cacheRoot(), "streams")
		}
		streamsClasspath, streamsProblem = compileJavaSources(libs, "kafka-streams-*.jar", "streams", "streams-classes")
	})
	requireTool(t, streamsProblem == "", "Kafka Streams", streamsProblem)
	if strings.HasPrefix(streamsClasspath, "compile-error: ") {
		t.Fatalf("javac failed on test/clients/streams: %s", strings.TrimPrefix(streamsClasspath, "compile-error: "))
	}
	return streamsClasspath
}

// startStreams starts the application and waits until it is RUNNING; the
// returned function kills it (SIGKILL).
func startStreams(t *testing.T, cp string, b *Broker, appID, in, out string) (kill func()) {
	t.Helper()
	return startStreamsApp(t, cp, "SluiceStreams", nil, "--bootstrap", b.Addr, "--app-id", appID, "--in", in, "--out", out,
		"--state-dir", filepath.Join(t.TempDir(), "state"))
}

// startStreamsApp starts one of test/clients/streams' applications and
// waits until it is RUNNING; every other line it prints goes to onLine
// (from another goroutine). The returned function kills it (SIGKILL).
func startStreamsApp(t *testing.T, cp, class string, onLine func(string), args ...string) (kill func()) {
	t.Helper()
	cmd := exec.Command("java", append([]string{"-cp", cp, "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "io.sluice.e2e." + class}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	running := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if line == "RUNNING" || strings.HasPrefix(line, "ERROR") || strings.HasPrefix(line, "STATE") {
				select {
				case running <- line:
				default:
				}
			} else if onLine != nil {
				onLine(line)
			}
		}
	}()
	var once sync.Once
	kill = func() {
		once.Do(func() {
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
		})
	}
	t.Cleanup(kill)
	select {
	case line := <-running:
		if line != "RUNNING" {
			kill()
			t.Fatalf("the Streams application: %s\n%s", line, lastLines(logs.String(), 40))
		}
	case <-time.After(90 * time.Second):
		kill()
		t.Fatalf("the Streams application did not reach RUNNING in 90 s\n%s", lastLines(logs.String(), 40))
	}
	return kill
}

// waitGroupOffsets waits until the committed offsets of group on topic sum
// to want.
func waitGroupOffsets(t *testing.T, b *Broker, group, topic string, want int64) {
	t.Helper()
	adm := b.Admin(t)
	waitFor(t, 90*time.Second, fmt.Sprintf("group %s to commit %d offsets", group, want), func() (bool, string) {
		offsets, err := adm.FetchOffsets(testContext(t, 10*time.Second), group)
		if err != nil {
			return false, err.Error()
		}
		sum := int64(0)
		offsets.Each(func(o kadm.OffsetResponse) {
			if o.Topic == topic {
				sum += o.At
			}
		})
		return sum == want, fmt.Sprint(sum)
	})
}

// A Kafka Streams application with processing.guarantee=exactly_once_v2,
// SIGKILLed mid-run and started again: its output holds every input record
// exactly once for read_committed readers.
func TestKafkaStreamsExactlyOnce(t *testing.T) {
	b := Shared(t)
	cp := prepareStreams(t)
	in, out := topicName(t, "sin"), topicName(t, "sout")
	createTopic(t, b, in, 2)
	createTopic(t, b, out, 1)
	appID := topicName(t, "streams")
	producer := b.Client(t)
	var recs []*kgo.Record
	for i := range 400 {
		recs = append(recs, &kgo.Record{Topic: in, Value: []byte(fmt.Sprintf("s%03d", i))})
	}
	produceAll(t, producer, recs[:200])
	kill := startStreams(t, cp, b, appID, in, out)
	waitGroupOffsets(t, b, appID, in, 200)
	// Killed while records keep arriving: whatever it had in an open
	// transaction is aborted when the next instance fences it.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, r := range recs[200:] {
			if err := producer.ProduceSync(testContext(t, 30*time.Second), r).FirstErr(); err != nil {
				t.Errorf("produce: %v", err)
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	kill()
	<-done
	kill = startStreams(t, cp, b, appID, in, out)
	waitGroupOffsets(t, b, appID, in, 400)
	kill()

	got := readValues(t, b, out, 400, kgo.ReadCommitted())
	seen := map[string]int{}
	for _, v := range got {
		seen[v]++
	}
	for _, r := range recs {
		if n := seen["streamed "+string(r.Value)]; n != 1 {
			t.Errorf("%s: %d copies in the output", r.Value, n)
		}
	}
	// Nothing beyond the 400: the committed output ends there.
	if all := readAllValues(t, b, out, kgo.ReadCommitted()); len(all) != 400 {
		t.Fatalf("read_committed readers see %d records in the output, want 400", len(all))
	}
}

// readAllValues reads topic from the start until three polls in a row
// (a second each) bring nothing, and returns the values.
func readAllValues(t *testing.T, b *Broker, topic string, isolation kgo.IsolationLevel) []string {
	t.Helper()
	cl := b.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(isolation))
	var out []string
	for idle := 0; idle < 3; {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		recs := fs.Records()
		if len(recs) == 0 {
			idle++
			continue
		}
		idle = 0
		for _, r := range recs {
			out = append(out, string(r.Value))
		}
	}
	return out
}

// A stateful Kafka Streams application (a count per key, a windowed count
// and a stream-table join) against a sluice whose cleaner compacts its
// changelogs: its results are exact, and after a SIGKILL an instance with
// an empty state directory restores its stores reading about one changelog
// record per key, not every update ever made.
func TestKafkaStreamsStatefulRestoreAfterCompaction(t *testing.T) {
	b := compactingBroker(t, nil)
	cp := prepareStreams(t)
	in, tiers := topicName(t, "events"), topicName(t, "tiers")
	counts, windowed, joined := topicName(t, "counts"), topicName(t, "windowed"), topicName(t, "joined")
	for _, topic := range []string{in, tiers, counts, windowed, joined} {
		createTopic(t, b, topic, 2)
	}
	appID := topicName(t, "stateful")
	const users, perUser = 20, 500
	producer := b.Client(t, kgo.ProducerLinger(5*time.Millisecond))
	var recs []*kgo.Record
	for u := range users {
		recs = append(recs, &kgo.Record{Topic: tiers, Key: []byte(fmt.Sprintf("u%02d", u)), Value: []byte(fmt.Sprintf("tier%d", u%3))})
	}
	produceAll(t, producer, recs)
	// Records each store partition read in its last restore (a rebalance
	// may restore a partition again).
	var restoredMu sync.Mutex
	restored := map[string]map[int]int64{}
	onLine := func(line string) {
		var store string
		var partition int
		var n int64
		if _, err := fmt.Sscanf(line, "RESTORED %s %d %d", &store, &partition, &n); err == nil {
			restoredMu.Lock()
			if restored[store] == nil {
				restored[store] = map[int]int64{}
			}
			restored[store][partition] = n
			restoredMu.Unlock()
		}
	}
	restoredRecords := func(store string) int64 {
		restoredMu.Lock()
		defer restoredMu.Unlock()
		sum := int64(0)
		for _, n := range restored[store] {
			sum += n
		}
		return sum
	}
	start := func() func() {
		return startStreamsApp(t, cp, "SluiceStatefulStreams", onLine, "--bootstrap", b.Addr, "--app-id", appID,
			"--state-dir", filepath.Join(t.TempDir(), "state"), "--in", in, "--tiers", tiers,
			"--counts", counts, "--windowed", windowed, "--joined", joined)
	}
	// lastCounts reads topic (lines "key count") and returns each key's
	// last count.
	lastCounts := func(topic string) map[string]int64 {
		out := map[string]int64{}
		for _, v := range readAllValues(t, b, topic, kgo.ReadUncommitted()) {
			var k string
			var n int64
			if _, err := fmt.Sscanf(v, "%s %d", &k, &n); err == nil {
				out[k] = n
			}
		}
		return out
	}
	waitCounts := func(want int64) {
		t.Helper()
		waitFor(t, 90*time.Second, fmt.Sprintf("every user counted %d", want), func() (bool, string) {
			got := lastCounts(counts)
			for u := range users {
				if got[fmt.Sprintf("u%02d", u)] != want {
					return false, fmt.Sprint(got)
				}
			}
			return true, ""
		})
	}
	kill := start()
	recs = recs[:0]
	for i := range users * perUser {
		u := i % users
		recs = append(recs, &kgo.Record{Topic: in, Key: []byte(fmt.Sprintf("u%02d", u)), Value: []byte("e")})
	}
	produceAll(t, producer, recs)
	waitCounts(perUser)
	// The windowed counts add up to the same, and every joined record
	// carries its user's tier.
	perKey := map[string]int64{}
	for k, n := range lastCounts(windowed) {
		user, _, _ := strings.Cut(k, "@")
		perKey[user] += n
	}
	for u := range users {
		if n := perKey[fmt.Sprintf("u%02d", u)]; n != perUser {
			t.Fatalf("u%02d: windowed counts add up to %d, want %d", u, n, perUser)
		}
	}
	joinedValues := readAllValues(t, b, joined, kgo.ReadUncommitted())
	if len(joinedValues) < users*perUser {
		t.Fatalf("%d joined records, want %d", len(joinedValues), users*perUser)
	}
	for _, v := range joinedValues {
		if !strings.HasPrefix(v, "e/tier") {
			t.Fatalf("joined record %q", v)
		}
	}
	kill()
	// The cleaner compacts the count store's changelog down to one record
	// per user, plus what each partition's active segment (never cleaned;
	// 1 KiB, some fifty records) holds: at most eight records a user,
	// 1.6% of the 10,000 updates.
	const bound = 8 * users
	changelog := appID + "-counts-changelog"
	waitCompacted(t, b, changelog, "partition 0 of the counts changelog compacted", atMost(bound/2))
	// A new instance with an empty state directory restores from it.
	restoredMu.Lock()
	clear(restored)
	restoredMu.Unlock()
	kill = start()
	n := restoredRecords("counts")
	if n < users || n > bound {
		t.Fatalf("the counts store restored %d changelog records (%d updates were made to %d keys)", n, users*perUser, users)
	}
	t.Logf("restore read %d changelog records for %d keys after %d updates (windowed store: %d)", n, users, users*perUser, restoredRecords("windowed"))
	// The restored counts go on from where they were.
	recs = recs[:0]
	for u := range users {
		recs = append(recs, &kgo.Record{Topic: in, Key: []byte(fmt.Sprintf("u%02d", u)), Value: []byte("e")})
	}
	produceAll(t, producer, recs)
	waitCounts(perUser + 1)
	kill()
}
