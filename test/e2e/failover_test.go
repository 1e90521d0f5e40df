package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// The etcd-decided pair (--failover-etcd) against a real etcd server
// (Debian's etcd-server, which .ci/install-deps installs).

const failoverTTL = 3 * time.Second

type etcdServer struct {
	Endpoint string
	cmd      *exec.Cmd
}

// startEtcd runs a one-member etcd for the test.
func startEtcd(t *testing.T) *etcdServer {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	requireTool(t, err == nil, "etcd", "Debian's etcd-server")
	ports, err := freePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	dir := t.TempDir()
	logf, err := os.Create(filepath.Join(dir, "etcd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--data-dir", filepath.Join(dir, "data"), "--name", "e2e",
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "e2e="+peer)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting etcd: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGCONT)
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(ports[0]), time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd did not listen within 20 s: %s", tailFile(filepath.Join(dir, "etcd.log"), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &etcdServer{Endpoint: "127.0.0.1:" + strconv.Itoa(ports[0]), cmd: cmd}
}

// startEtcdPair starts nodes 1 and 2 with the same failover flags; node 1
// starts first, so it takes the lease.
func startEtcdPair(t *testing.T, etcd *etcdServer) (first, second *Broker) {
	t.Helper()
	cfg := defaultBrokerConfig()
	cfg["replica.lag.time.max.ms"] = fmt.Sprint(pairLag.Milliseconds())
	group := strings.ToLower(strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()))
	flags := func(id int) []string {
		return []string{"--node-id", strconv.Itoa(id), "--failover-etcd", etcd.Endpoint, "--failover-group", group, "--failover-ttl", failoverTTL.String()}
	}
	first = StartSluice(t, BrokerOptions{Config: cfg, Flags: flags(1)})
	waitFor(t, 20*time.Second, "node 1 to take the lease", func() (bool, string) {
		st := nodeStatus(t, first)
		return st.Role == "primary", st.Role
	})
	second = StartSluice(t, BrokerOptions{Config: cfg, Flags: flags(2)})
	waitFor(t, 20*time.Second, "node 2 to register as the standby", func() (bool, string) {
		st := nodeStatus(t, first)
		return st.Peer != nil && st.Peer.NodeID == 2, fmt.Sprintf("%+v", st.Peer)
	})
	return first, second
}

// waitInSyncRecorded waits until the standby is in sync everywhere and
// the primary has had time to record that in etcd (its in-sync check runs
// every 100 ms).
func waitInSyncRecorded(t *testing.T, primary *Broker) {
	t.Helper()
	waitAllInSync(t, primary, "the standby in sync everywhere")
	time.Sleep(pairLag/4 + 300*time.Millisecond)
}

// TestEtcdFailoverAfterThePrimaryDies: SIGKILL the primary under acks=all
// load; the in-sync standby takes the lease once it expires, every
// acknowledged record is there, the unavailability window is under TTL +
// 1 s, and the old primary, restarted with the same flags, rejoins as the
// standby by itself and ends with an identical log.
func TestEtcdFailoverAfterThePrimaryDies(t *testing.T) {
	requireOwnBroker(t, "a pair of brokers")
	etcd := startEtcd(t)
	primary, standby := startEtcdPair(t, etcd)
	topic := topicName(t, "etcd")
	createReplicated(t, primary, topic, 2)
	acks, stop := steadyProducer(t, []*Broker{primary, standby}, topic, 200)
	time.Sleep(time.Second)
	waitInSyncRecorded(t, primary)
	primary.Kill(t)
	killed := time.Now()
	waitFor(t, failoverTTL+5*time.Second, "the standby to take over", func() (bool, string) {
		st := nodeStatus(t, standby)
		return st.Role == "primary", st.Role
	})
	t.Logf("the standby was primary %v after the kill", time.Since(killed))
	time.Sleep(2 * time.Second)
	if failed := stop(); failed > 0 {
		t.Errorf("%d produces failed across the failover", failed)
	}
	window := acks.longestGap(killed.Add(-200 * time.Millisecond))
	t.Logf("unavailability window (longest gap between acks): %v", window)
	if window > failoverTTL+time.Second {
		t.Errorf("no write was acknowledged for %v across the failover; want under TTL + 1 s = %v", window, failoverTTL+time.Second)
	}
	checkEveryAck(t, standby, topic, acks)
	if st := nodeStatus(t, standby); st.LeaderEpoch < 2 {
		t.Errorf("the new primary's epoch is %d; want a new one (at least 2)", st.LeaderEpoch)
	}

	// The old primary comes back with the same flags: a standby now.
	if err := primary.start(); err != nil {
		t.Fatalf("restarting the old primary: %v", err)
	}
	waitFor(t, 20*time.Second, "the old primary to rejoin as the standby", func() (bool, string) {
		st := nodeStatus(t, primary)
		return st.Role == "standby" && st.Peer != nil && st.Peer.NodeID == 2, fmt.Sprintf("%s %+v", st.Role, st.Peer)
	})
	stopIdentical(t, standby, primary)
}

// TestEtcdPrimaryFencesItselfWithoutEtcd: with etcd frozen, the primary
// cannot renew its lease and refuses writes within the TTL, while clients
// still reach it; the standby cannot take over meanwhile. Once etcd is
// back, one node is primary and takes writes again.
func TestEtcdPrimaryFencesItselfWithoutEtcd(t *testing.T) {
	requireOwnBroker(t, "a pair of brokers")
	etcd := startEtcd(t)
	primary, standby := startEtcdPair(t, etcd)
	topic := topicName(t, "fence")
	createReplicated(t, primary, topic, 1)
	waitInSyncRecorded(t, primary)
	raw := dialRaw(t, primary.Addr)
	if code, err := raw.produceRaw(topic, 0, valueBatch("before")); err != nil || code != 0 {
		t.Fatalf("produce before: %d %v", code, err)
	}
	etcd.cmd.Process.Signal(syscall.SIGSTOP)
	frozen := time.Now()
	var fencedAfter time.Duration
	for time.Since(frozen) < failoverTTL+2*time.Second {
		code, err := raw.produceRawAcks(topic, 0, valueBatch("during"), 1)
		if err != nil {
			t.Fatal(err)
		}
		if code == kerr.NotLeaderForPartition.Code {
			fencedAfter = time.Since(frozen)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if fencedAfter == 0 {
		t.Fatalf("the primary still took writes %v after etcd froze", time.Since(frozen))
	}
	t.Logf("the primary refused writes %v after etcd froze (TTL %v)", fencedAfter, failoverTTL)
	if fencedAfter > failoverTTL {
		t.Errorf("the primary took writes for %v without its lease; the lease lasts %v", fencedAfter, failoverTTL)
	}
	if st := nodeStatus(t, standby); st.Role != "standby" {
		t.Errorf("the standby became %s while etcd was frozen", st.Role)
	}
	etcd.cmd.Process.Signal(syscall.SIGCONT)
	var writer *Broker
	waitFor(t, 20*time.Second, "a primary taking writes again", func() (bool, string) {
		for _, b := range []*Broker{primary, standby} {
			c := dialRaw(t, b.Addr)
			code, err := c.produceRaw(topic, 0, valueBatch("after"))
			if err == nil && code == 0 {
				writer = b
				return true, ""
			}
		}
		return false, "no node took the write"
	})
	other := standby
	if writer == standby {
		other = primary
	}
	waitFor(t, 20*time.Second, "the other node to follow", func() (bool, string) {
		st := nodeStatus(t, other)
		return st.Role == "standby", st.Role
	})
	t.Logf("node %d is primary after etcd came back", nodeStatus(t, writer).NodeID)
}

// TestEtcdStandbyOutOfSyncDoesNotTakeOver: a standby that fell out of sync
// (frozen past replica.lag.time.max.ms) is recorded so in etcd before the
// primary acknowledges anything without it; when the primary then dies,
// that standby does not take over (it lacks acknowledged records) and the
// pair waits for the primary, which retakes the lease when it returns.
func TestEtcdStandbyOutOfSyncDoesNotTakeOver(t *testing.T) {
	requireOwnBroker(t, "a pair of brokers")
	etcd := startEtcd(t)
	primary, standby := startEtcdPair(t, etcd)
	topic := topicName(t, "outofsync")
	createReplicated(t, primary, topic, 1)
	waitInSyncRecorded(t, primary)
	standby.signal(syscall.SIGSTOP)
	raw := dialRaw(t, primary.Addr)
	// acks=all waits for the frozen in-sync standby until it is dropped
	// (after etcd records it), then is answered by the primary alone.
	start := time.Now()
	if code, err := raw.produceRaw(topic, 0, valueBatch("only on the primary")); err != nil || code != 0 {
		t.Fatalf("acks=all with the standby frozen: %d %v", code, err)
	}
	t.Logf("acks=all answered %v after the standby froze", time.Since(start))
	primary.Kill(t)
	standby.signal(syscall.SIGCONT)
	time.Sleep(failoverTTL + 2*time.Second)
	if st := nodeStatus(t, standby); st.Role != "standby" {
		t.Fatalf("the out-of-sync standby became %s after the primary died: it lacks an acknowledged record", st.Role)
	}
	if err := primary.start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the old primary to retake the lease", func() (bool, string) {
		st := nodeStatus(t, primary)
		return st.Role == "primary", st.Role
	})
	recs := consumeN(t, primary, topic, 1)
	if string(recs[0].Value) != "only on the primary" {
		t.Errorf("read %q", recs[0].Value)
	}
	waitFor(t, 20*time.Second, "the standby to catch up again", func() (bool, string) {
		st := nodeStatus(t, standby)
		for _, p := range st.Partitions {
			if p.Topic == topic {
				return p.LogEndOffset == 1, fmt.Sprint(p.LogEndOffset)
			}
		}
		return false, "no partition"
	})
}
