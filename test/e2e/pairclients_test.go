package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// The Kafka Java client and librdkafka (confluent-kafka for Python, kcat)
// across a hand-over: each producer is given both addresses and produces
// acks=all through `sluice demote`; every record it was acknowledged is on
// the new primary once and in order, and kcat reads them all through the
// pair.

// steadyAck is one line of a client's produce-steady.
type steadyAck struct {
	P       int32  `json:"p"`
	O       int64  `json:"o"`
	V       string `json:"v"`
	T       int64  `json:"t"`
	Failed  string `json:"failed"`
	Message string `json:"message"`
}

func TestRealClientsAcrossAHandOver(t *testing.T) {
	requireOwnBroker(t, "a pair of brokers")
	for _, client := range []string{"java", "python"} {
		t.Run(client, func(t *testing.T) {
			var cmd []string
			switch client {
			case "java":
				cp := prepareJava(t)
				cmd = []string{"java", "-cp", cp, "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
					"-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "io.sluice.e2e.SluiceE2E", "produce-steady"}
			case "python":
				python, script := preparePython(t)
				cmd = []string{python, script, "produce-steady"}
			}
			primary, standby := startPair(t, nil)
			topic := topicName(t, client)
			if _, err := primary.Admin(t).CreateTopic(testContext(t, 30*time.Second), 2, 2, nil, topic); err != nil {
				t.Fatal(err)
			}
			waitAllInSync(t, primary, "the standby in sync everywhere")
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			args := append(cmd[1:], "--bootstrap", primary.Addr+","+standby.Addr, "--topic", topic, "--rate", "100", "--seconds", "8")
			p := exec.CommandContext(ctx, cmd[0], args...)
			var out, errOut bytes.Buffer
			p.Stdout, p.Stderr = &out, &errOut
			if err := p.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(3 * time.Second)
			demoted := time.Now()
			if msg, err := roleCommand(t, "demote", primary, false); err != nil {
				t.Fatalf("sluice demote: %v: %s", err, msg)
			}
			if err := p.Wait(); err != nil {
				t.Fatalf("%s produce-steady: %v\n%s\n%s", client, err, lastLines(out.String(), 5), lastLines(errOut.String(), 20))
			}
			var acks []steadyAck
			failed := 0
			for _, line := range jsonLines(t, client+" produce-steady", out.Bytes()) {
				var a steadyAck
				if err := json.Unmarshal(line, &a); err != nil {
					t.Fatal(err)
				}
				if a.Failed != "" {
					failed++
					t.Logf("%s: %s failed: %s", client, a.Failed, a.Message)
					continue
				}
				acks = append(acks, a)
			}
			if failed > 0 {
				t.Errorf("%s: %d records failed across the hand-over", client, failed)
			}
			if len(acks) < 400 {
				t.Fatalf("%s: only %d records acknowledged in 8 s at 100/s", client, len(acks))
			}
			// The longest time without an ack from the hand-over on.
			times := []int64{demoted.UnixMilli()}
			for _, a := range acks {
				if a.T >= demoted.UnixMilli() {
					times = append(times, a.T)
				}
			}
			slices.Sort(times)
			var gap int64
			for i := 1; i < len(times); i++ {
				gap = max(gap, times[i]-times[i-1])
			}
			t.Logf("%s: %d records acknowledged; longest gap between acks from the hand-over on: %d ms", client, len(acks), gap)

			// Every ack on the new primary, once, in order, at its offset.
			byPart := map[int32][]steadyAck{}
			for _, a := range acks {
				byPart[a.P] = append(byPart[a.P], a)
			}
			got := map[int32][]string{}
			for _, r := range consumeN(t, standby, topic, len(acks)) {
				got[r.Partition] = append(got[r.Partition], fmt.Sprintf("%d:%s", r.Offset, r.Value))
			}
			for part, as := range byPart {
				sort.Slice(as, func(i, j int) bool { return as[i].O < as[j].O })
				var want []string
				for _, a := range as {
					want = append(want, fmt.Sprintf("%d:%s", a.O, a.V))
				}
				if !slices.Equal(got[part], want) {
					t.Errorf("%s: partition %d on the new primary: %d records, %d acknowledged; first difference at %d", client, part, len(got[part]), len(want), firstDiff(got[part], want))
				}
			}

			// kcat, given both addresses, reads them all through the pair.
			bin := kcatBinary(t)
			kc := exec.CommandContext(ctx, bin, "-C", "-b", primary.Addr+","+standby.Addr, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%p:%o:%s\n")
			kout, err := kc.CombinedOutput()
			if err != nil {
				t.Fatalf("kcat: %v: %s", err, lastLines(string(kout), 10))
			}
			if n := strings.Count(string(kout), "\n"); n != len(acks) {
				t.Errorf("kcat read %d records through the pair; %d were acknowledged", n, len(acks))
			}
		})
	}
}
