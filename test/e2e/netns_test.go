package e2e

import (
	"crypto/rand"
	"encoding/hex"
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
)

// Two hosts on one machine: network namespaces A and B, each joined to the
// test's own namespace by a veth pair and routed through it, so that
// nftables rules here can cut A→B, B→A, or one host's way to etcd, while
// the test (the clients) still reaches both.
//
//	A 10.N.1.2 ── veth ── 10.N.1.1  (the test, etcd, nftables)  10.N.2.1 ── veth ── 10.N.2.2 B

type twoHosts struct {
	t        *testing.T
	id       string
	nsA, nsB string
	ipA, ipB string // the hosts' addresses
	gwA, gwB string // their gateways: the test's side
	table    string
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// newTwoHosts builds the namespaces, the veth pairs, routing and an
// nftables table, all removed when the test ends.
func newTwoHosts(t *testing.T) *twoHosts {
	t.Helper()
	requireOwnBroker(t, "brokers in network namespaces")
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	_, errIP := exec.LookPath("ip")
	requireTool(t, errIP == nil, "ip", "iproute2")
	_, errNft := exec.LookPath("nft")
	requireTool(t, errNft == nil, "nft", "nftables")
	var raw [2]byte
	rand.Read(raw[:])
	id := hex.EncodeToString(raw[:])
	net := 16 + int(raw[0])%200
	h := &twoHosts{t: t, id: id, nsA: "slA" + id, nsB: "slB" + id,
		ipA: fmt.Sprintf("10.%d.1.2", net), ipB: fmt.Sprintf("10.%d.2.2", net),
		gwA: fmt.Sprintf("10.%d.1.1", net), gwB: fmt.Sprintf("10.%d.2.1", net),
		table: "sluice" + id}
	forward, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	t.Cleanup(func() {
		exec.Command("nft", "delete", "table", "inet", h.table).Run()
		exec.Command("ip", "netns", "del", h.nsA).Run()
		exec.Command("ip", "netns", "del", h.nsB).Run()
		exec.Command("ip", "link", "del", "va"+id).Run()
		exec.Command("ip", "link", "del", "vb"+id).Run()
		if len(forward) > 0 {
			os.WriteFile("/proc/sys/net/ipv4/ip_forward", forward, 0o644)
		}
	})
	for _, side := range []struct{ ns, host, peer, ip, gw string }{
		{h.nsA, "va" + id, "pa" + id, h.ipA, h.gwA},
		{h.nsB, "vb" + id, "pb" + id, h.ipB, h.gwB},
	} {
		run(t, "ip", "netns", "add", side.ns)
		run(t, "ip", "link", "add", side.host, "type", "veth", "peer", "name", side.peer)
		run(t, "ip", "link", "set", side.peer, "netns", side.ns)
		run(t, "ip", "addr", "add", side.gw+"/24", "dev", side.host)
		run(t, "ip", "link", "set", side.host, "up")
		run(t, "ip", "-n", side.ns, "addr", "add", side.ip+"/24", "dev", side.peer)
		run(t, "ip", "-n", side.ns, "link", "set", side.peer, "up")
		run(t, "ip", "-n", side.ns, "link", "set", "lo", "up")
		run(t, "ip", "-n", side.ns, "route", "add", "default", "via", side.gw)
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644); err != nil {
		t.Skipf("cannot enable IPv4 forwarding: %v", err)
	}
	run(t, "nft", "add", "table", "inet", h.table)
	run(t, "nft", "add", "chain", "inet", h.table, "forward", "{ type filter hook forward priority 0 ; policy accept ; }")
	run(t, "nft", "add", "chain", "inet", h.table, "input", "{ type filter hook input priority 0 ; policy accept ; }")
	return h
}

// cut drops packets from one host to the other (dir "A>B" or "B>A").
func (h *twoHosts) cut(dir string) {
	from, to := h.ipA, h.ipB
	if dir == "B>A" {
		from, to = h.ipB, h.ipA
	}
	run(h.t, "nft", "add", "rule", "inet", h.table, "forward", "ip", "saddr", from, "ip", "daddr", to, "drop")
}

// cutFromPort drops packets from a host to a port of the test's side (its
// way to etcd).
func (h *twoHosts) cutFromPort(hostIP string, port int) {
	run(h.t, "nft", "add", "rule", "inet", h.table, "input", "ip", "saddr", hostIP, "tcp", "dport", strconv.Itoa(port), "drop")
}

// heal removes every rule.
func (h *twoHosts) heal() {
	run(h.t, "nft", "flush", "chain", "inet", h.table, "forward")
	run(h.t, "nft", "flush", "chain", "inet", h.table, "input")
}

// etcdFor starts an etcd both hosts reach through their gateways.
func (h *twoHosts) etcd() (endpointA, endpointB string, port int) {
	t := h.t
	t.Helper()
	bin, err := exec.LookPath("etcd")
	requireTool(t, err == nil, "etcd", "Debian's etcd-server")
	ports, err := freePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	port = ports[0]
	dir := t.TempDir()
	logf, err := os.Create(filepath.Join(dir, "etcd.log"))
	if err != nil {
		t.Fatal(err)
	}
	peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	cmd := exec.Command(bin, "--data-dir", filepath.Join(dir, "data"), "--name", "e2e",
		"--listen-client-urls", "http://0.0.0.0:"+strconv.Itoa(port), "--advertise-client-urls", "http://"+h.gwA+":"+strconv.Itoa(port),
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "e2e="+peer)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); logf.Close() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", net.JoinHostPort(h.gwA, strconv.Itoa(port)), time.Second); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd did not listen: %s", tailFile(filepath.Join(dir, "etcd.log"), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return net.JoinHostPort(h.gwA, strconv.Itoa(port)), net.JoinHostPort(h.gwB, strconv.Itoa(port)), port
}

// startEtcdPairIn starts node 1 on host A and node 2 on host B, an etcd
// pair; node 1 takes the lease.
func (h *twoHosts) startEtcdPair() (a, b *Broker, etcdPort int) {
	t := h.t
	t.Helper()
	epA, epB, port := h.etcd()
	cfg := defaultBrokerConfig()
	cfg["replica.lag.time.max.ms"] = fmt.Sprint(pairLag.Milliseconds())
	flags := func(id int, ep string) []string {
		return []string{"--node-id", strconv.Itoa(id), "--failover-etcd", ep, "--failover-group", "netns" + h.id, "--failover-ttl", failoverTTL.String()}
	}
	a = StartSluice(t, BrokerOptions{Config: cfg, Host: h.ipA, Prefix: []string{"ip", "netns", "exec", h.nsA}, Flags: flags(1, epA)})
	waitFor(t, 20*time.Second, "node 1 to take the lease", func() (bool, string) {
		st := nodeStatus(t, a)
		return st.Role == "primary", st.Role
	})
	b = StartSluice(t, BrokerOptions{Config: cfg, Host: h.ipB, Prefix: []string{"ip", "netns", "exec", h.nsB}, Flags: flags(2, epB)})
	waitFor(t, 20*time.Second, "node 2 to register as the standby", func() (bool, string) {
		st := nodeStatus(t, a)
		return st.Peer != nil && st.Peer.NodeID == 2, fmt.Sprintf("%+v", st.Peer)
	})
	return a, b, port
}

// TestNetnsStandbyCutOffFromThePrimary: an asymmetric partition, first
// with the standby unable to reach the primary, then the reverse, while
// clients reach both. The primary keeps its lease and its writes (the
// standby leaves the in-sync set, recorded in etcd first); the standby
// never becomes primary; after each heal it catches up, and every
// acknowledged record is on both, identical.
func TestNetnsStandbyCutOffFromThePrimary(t *testing.T) {
	h := newTwoHosts(t)
	a, b, _ := h.startEtcdPair()
	topic := topicName(t, "asym")
	createReplicated(t, a, topic, 2)
	acks, stop := steadyProducer(t, []*Broker{a, b}, topic, 100)
	for _, dir := range []string{"B>A", "A>B"} {
		waitInSyncRecorded(t, a)
		h.cut(dir)
		waitFor(t, 20*time.Second, "the standby to leave the in-sync set ("+dir+" cut)", func() (bool, string) {
			v := metricValue(t, a, "sluice_under_replicated_partitions")
			return v > 0, fmt.Sprint(v)
		})
		before := len(acks.times)
		time.Sleep(failoverTTL + time.Second)
		if st := nodeStatus(t, b); st.Role != "standby" {
			t.Fatalf("with %s cut, the standby became %s", dir, st.Role)
		}
		if st := nodeStatus(t, a); st.Role != "primary" {
			t.Fatalf("with %s cut, the primary became %s", dir, st.Role)
		}
		acks.mu.Lock()
		after := len(acks.times)
		acks.mu.Unlock()
		if after <= before {
			t.Errorf("with %s cut, the primary acknowledged nothing for %v", dir, failoverTTL+time.Second)
		}
		h.heal()
		waitCaughtUp(t, a, b)
	}
	if failed := stop(); failed > 0 {
		t.Errorf("%d produces failed", failed)
	}
	checkEveryAck(t, a, topic, acks)
	stopIdentical(t, a, b)
}

// TestNetnsPrimaryLosesEtcd: the primary's way to etcd is cut while
// clients and the standby still reach it. It must stop taking writes
// within the TTL; the in-sync standby takes over once the lease expires;
// clients move; no acknowledged record is lost; and when the old primary
// reaches etcd again it rejoins as the standby and ends identical.
func TestNetnsPrimaryLosesEtcd(t *testing.T) {
	h := newTwoHosts(t)
	a, b, etcdPort := h.startEtcdPair()
	topic, probes := topicName(t, "noetcd"), topicName(t, "probes")
	createReplicated(t, a, topic, 2)
	createReplicated(t, a, probes, 1)
	acks, stop := steadyProducer(t, []*Broker{a, b}, topic, 100)
	waitInSyncRecorded(t, a)
	raw := dialRaw(t, a.Addr)
	h.cutFromPort(h.ipA, etcdPort)
	cut := time.Now()
	var refused time.Duration
	for time.Since(cut) < 2*failoverTTL {
		code, err := raw.produceRawAcks(probes, 0, buildBatch([]rawRecord{{Value: []byte("probe")}}, time.Now().UnixMilli(), -1, 0, 0), 1)
		if err != nil {
			t.Fatal(err)
		}
		if code != 0 {
			refused = time.Since(cut)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("the primary refused writes %v after losing etcd (TTL %v)", refused, failoverTTL)
	if refused == 0 || refused > failoverTTL {
		t.Errorf("the primary took writes for %v without reaching etcd; its lease lasts %v", refused, failoverTTL)
	}
	waitFor(t, failoverTTL+10*time.Second, "the standby to take over", func() (bool, string) {
		st := nodeStatus(t, b)
		return st.Role == "primary", st.Role
	})
	t.Logf("the standby took over %v after the cut", time.Since(cut))
	time.Sleep(2 * time.Second)
	h.heal()
	waitFor(t, 30*time.Second, "the old primary to rejoin as the standby", func() (bool, string) {
		st := nodeStatus(t, a)
		return st.Role == "standby" && st.Peer != nil && st.Peer.NodeID == 2, fmt.Sprintf("%s %+v", st.Role, st.Peer)
	})
	if failed := stop(); failed > 0 {
		t.Errorf("%d produces failed", failed)
	}
	t.Logf("longest gap between acks: %v", acks.longestGap(cut))
	checkEveryAck(t, b, topic, acks)
	stopIdentical(t, b, a)
}
