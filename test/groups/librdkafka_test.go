package groups

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// librdkafka (confluent-kafka for Python) in a consumer group:
// python/group_member.py is one member per process.

var (
	pythonOnce    sync.Once
	pythonBin     string
	pythonProblem string
)

// preparePython finds a Python that imports confluent_kafka
// ($SLUICE_PYTHON, default python3; .ci/install-deps installs it).
func preparePython(t testing.TB) string {
	t.Helper()
	pythonOnce.Do(func() {
		pythonBin = os.Getenv("SLUICE_PYTHON")
		if pythonBin == "" {
			pythonBin = "python3"
		}
		if _, err := exec.LookPath(pythonBin); err != nil {
			pythonProblem = pythonBin + " is not on PATH"
			return
		}
		if out, err := exec.Command(pythonBin, "-c", "import confluent_kafka").CombinedOutput(); err != nil {
			pythonProblem = "cannot import confluent_kafka: " + lastLines(strings.TrimSpace(string(out)), 2)
		}
	})
	if pythonProblem != "" {
		missingTool(t, "confluent-kafka for Python (librdkafka)", pythonProblem)
	}
	return pythonBin
}

// rdEvent is one line of group_member.py.
type rdEvent struct {
	Ev         string  `json:"ev"`
	T          int64   `json:"t"`
	Partitions []int32 `json:"partitions"`
	P          int32   `json:"p"`
	O          int64   `json:"o"`
	Error      string  `json:"error"`
	member     string
}

// rdMember is a running group_member.py.
type rdMember struct {
	name   string
	cmd    *exec.Cmd
	stderr bytes.Buffer
	done   chan error // the process's exit, once stdout is read to its end

	mu     sync.Mutex
	events []rdEvent
	bad    []string // lines that are not events
}

func startRdMember(t *testing.T, python string, b *broker, name, group, topic, strategy string, extra ...string) *rdMember {
	t.Helper()
	args := append([]string{filepath.Join("python", "group_member.py"), "--bootstrap", b.addr, "--group", group,
		"--topic", topic, "--strategy", strategy, "--client-id", name}, extra...)
	m := &rdMember{name: name, done: make(chan error, 1)}
	m.cmd = exec.Command(python, args...)
	m.cmd.Stderr = &m.stderr
	stdout, err := m.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var ev rdEvent
			m.mu.Lock()
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				m.bad = append(m.bad, sc.Text())
			} else {
				ev.member = name
				m.events = append(m.events, ev)
			}
			m.mu.Unlock()
		}
		m.done <- m.cmd.Wait()
	}()
	t.Cleanup(func() {
		m.cmd.Process.Kill()
		err := <-m.done
		m.done <- err
	})
	return m
}

// snapshot returns the events so far.
func (m *rdMember) snapshot() []rdEvent {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.events)
}

// wait waits for the member to exit by itself and returns its events.
func (m *rdMember) wait(t *testing.T, d time.Duration) []rdEvent {
	t.Helper()
	select {
	case err := <-m.done:
		m.done <- err
		if err != nil {
			t.Fatalf("member %s: %v\nstderr:\n%s", m.name, err, lastLines(m.stderr.String(), 30))
		}
	case <-time.After(d):
		t.Fatalf("member %s did not finish within %v\nstderr:\n%s", m.name, d, lastLines(m.stderr.String(), 30))
	}
	m.mu.Lock()
	bad := slices.Clone(m.bad)
	m.mu.Unlock()
	if len(bad) > 0 {
		t.Fatalf("member %s printed lines that are not events: %q", m.name, bad)
	}
	evs := m.snapshot()
	if len(evs) == 0 || evs[len(evs)-1].Ev != "closed" {
		t.Fatalf("member %s did not close cleanly\nstderr:\n%s", m.name, lastLines(m.stderr.String(), 30))
	}
	return evs
}

// TestLibrdkafkaGroup: librdkafka consumers (confluent-kafka), eager range
// and cooperative-sticky: a first member processes part of the topic,
// commits and leaves; two more join, the second while the first of them
// processes records, share the partitions (never the same one at once), resume
// exactly at the committed offsets, each record is processed once, and
// the committed offsets end at the log ends.
func TestLibrdkafkaGroup(t *testing.T) {
	python := preparePython(t)
	b := startBroker(t, nil)
	adm := b.admin(t)
	for _, strategy := range []string{"range", "cooperative-sticky"} {
		t.Run(strategy, func(t *testing.T) {
			const partitions, perPartition, first = 4, 300, 150
			topic, group := "rd-"+strategy, "rd-group-"+strategy
			createTopic(t, adm, topic, partitions)
			counts := map[int32]int{}
			for p := range int32(partitions) {
				counts[p] = perPartition
			}
			produceCounts(t, b, topic, counts)

			// A processes exactly `first` records, commits, leaves.
			a := startRdMember(t, python, b, "a", group, topic, strategy, "--max", fmt.Sprint(first))
			evA := a.wait(t, 60*time.Second)
			resume := map[int32]int64{}
			seenA := 0
			for _, ev := range evA {
				switch ev.Ev {
				case "rec":
					if want := resume[ev.P]; ev.O != want {
						t.Fatalf("a: partition %d: record %d after %d (the first member reads from the start, in order)", ev.P, ev.O, want-1)
					}
					resume[ev.P] = ev.O + 1
					seenA++
				case "commit_failed":
					t.Fatalf("a: commit failed: %s", ev.Error)
				}
			}
			if seenA != first {
				t.Fatalf("a processed %d records, want %d", seenA, first)
			}
			if got := committedOffsets(t, adm, group, topic); !mapsEqualNonZero(got, resume) {
				t.Fatalf("after a left: committed %v, want what it processed %v", got, resume)
			}

			// B and C rejoin the group together and process the rest.
			// Processing is slowed down so that the second to join takes
			// partitions over from the first while records flow.
			slow := []string{"--idle-ms", "2000", "--delay-ms", "10", "--batch", "10"}
			bm := startRdMember(t, python, b, "b", group, topic, strategy, slow...)
			waitFor(t, 30*time.Second, "b to process records", func() (bool, string) {
				for _, ev := range bm.snapshot() {
					if ev.Ev == "rec" {
						return true, ""
					}
				}
				return false, "none yet"
			})
			cm := startRdMember(t, python, b, "c", group, topic, strategy, slow...)
			evs := append(bm.wait(t, 60*time.Second), cm.wait(t, 60*time.Second)...)
			sort.SliceStable(evs, func(i, j int) bool { return evs[i].T < evs[j].T })

			owner := map[int32]string{}
			consumed := map[int32][]int64{}
			failedCommits := 0
			together := false
			ownedBy := map[string]int{}
			for _, ev := range evs {
				switch ev.Ev {
				case "assigned":
					for _, p := range ev.Partitions {
						if o := owner[p]; o != "" && o != ev.member {
							t.Errorf("partition %d assigned to %s while %s still owns it", p, ev.member, o)
						}
						owner[p] = ev.member
					}
					ownedBy[ev.member] += len(ev.Partitions)
				case "revoked", "lost":
					for _, p := range ev.Partitions {
						if owner[p] == ev.member {
							delete(owner, p)
						}
					}
					ownedBy[ev.member] -= len(ev.Partitions)
				case "rec":
					if owner[ev.P] != ev.member {
						t.Errorf("%s processed %d/%d without owning the partition (owner %q)", ev.member, ev.P, ev.O, owner[ev.P])
					}
					consumed[ev.P] = append(consumed[ev.P], ev.O)
				case "commit_failed":
					failedCommits++
					t.Logf("%s: commit failed: %s", ev.member, ev.Error)
				}
				if ownedBy["b"] > 0 && ownedBy["c"] > 0 {
					together = true
				}
			}
			var story []string
			perMember := map[string]int{}
			for _, ev := range evs {
				switch ev.Ev {
				case "assigned", "revoked", "lost":
					story = append(story, fmt.Sprintf("%s %s %v", ev.member, ev.Ev, ev.Partitions))
				case "rec":
					perMember[ev.member]++
				}
			}
			t.Logf("a processed %d and committed %v; then %s; processed %v", seenA, resume, strings.Join(story, ", "), perMember)
			if !together || perMember["b"] == 0 || perMember["c"] == 0 {
				t.Errorf("b and c did not share the work (owned partitions at the same time: %v; processed %v)", together, perMember)
			}
			for p := range int32(partitions) {
				offs := consumed[p]
				if len(offs) == 0 {
					if resume[p] != perPartition {
						t.Errorf("partition %d: nothing processed after resuming at %d", p, resume[p])
					}
					continue
				}
				if offs[0] != resume[p] {
					t.Errorf("partition %d: resumed at %d, committed %d", p, offs[0], resume[p])
				}
				seen := map[int64]int{}
				for _, o := range offs {
					seen[o]++
				}
				for o := resume[p]; o < perPartition; o++ {
					if seen[o] == 0 {
						t.Errorf("partition %d: record %d never processed", p, o)
					}
				}
				if dups := len(offs) - len(seen); dups > 0 && failedCommits == 0 {
					t.Errorf("partition %d: %d records processed twice though every commit succeeded", p, dups)
				}
				if slices.Min(offs) < resume[p] {
					t.Errorf("partition %d: processed %d, before the committed %d", p, slices.Min(offs), resume[p])
				}
			}
			want := map[int32]int64{}
			for p := range int32(partitions) {
				want[p] = perPartition
			}
			if got := committedOffsets(t, adm, group, topic); !mapsEqualNonZero(got, want) {
				t.Errorf("committed at the end: %v, want %v", got, want)
			}
		})
	}
}

// mapsEqualNonZero compares committed offsets, where a partition that was
// never committed and one at 0 are the same.
func mapsEqualNonZero(a, b map[int32]int64) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return true
}
