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
	cmd := exec.Command("java", "-cp", cp, "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
		"io.sluice.e2e.SluiceStreams", "--bootstrap", b.Addr, "--app-id", appID, "--in", in, "--out", out,
		"--state-dir", filepath.Join(t.TempDir(), "state"))
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
