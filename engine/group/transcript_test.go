package group

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-broker/sluice/wire/kerr"
	"github.com/sluice-broker/sluice/wire/msg"
)

// Transcript tests: testdata/*.txt hold classic-protocol sessions, one
// command per block, each followed by "----" and what the coordinator
// answered (answers that arrive later, when a join phase ends or a write
// becomes durable, show under the command that caused them). Members are
// named by aliases; the member ids the coordinator hands out are printed
// as those aliases. SLUICE_REWRITE=1 rewrites the expected output.
//
// Commands:
//
//	join <alias> [v=9] [instance=id] [session=ms] [rebalance=ms] [protocols=range,roundrobin] [type=consumer]
//	sync <alias> [gen=n] [assign=a:x,b:y]
//	heartbeat <alias> [gen=n]
//	leave <alias>... | leave instance=<id>
//	commit <alias|-> p=offset...        (- is a simple commit, generation -1)
//	fetch
//	flush                                (complete every pending log append)
//	advance <duration>                   (move the clock, fire deadlines)
//	state
func TestTranscripts(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if len(files) == 0 {
		t.Fatal("no transcripts in testdata")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) { runTranscript(t, file) })
	}
}

type transcript struct {
	h       *harness
	ids     map[string]string // alias -> member id
	aliases map[string]string // member id -> alias
	gens    map[string]int32  // alias -> last generation it was told
	out     []string
}

func runTranscript(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.MinSessionTimeout = time.Second
	cfg.InitialRebalanceDelay = 3 * time.Second // Kafka's default
	ts := &transcript{h: newHarness(t, cfg), ids: map[string]string{}, aliases: map[string]string{}, gens: map[string]int32{}}
	var rewritten strings.Builder
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			rewritten.WriteString(line + "\n")
			continue
		}
		cmd := line
		var want []string
		if !sc.Scan() || sc.Text() != "----" {
			t.Fatalf("%s: %q must be followed by ----", file, cmd)
		}
		for sc.Scan() && sc.Text() != "" {
			want = append(want, sc.Text())
		}
		ts.out = nil
		ts.run(t, cmd)
		got := ts.out
		rewritten.WriteString(cmd + "\n----\n")
		for _, g := range got {
			rewritten.WriteString(g + "\n")
		}
		rewritten.WriteString("\n")
		if strings.Join(got, "\n") != strings.Join(want, "\n") && os.Getenv("SLUICE_REWRITE") == "" {
			t.Errorf("%s: %s\ngot:\n%s\nwant:\n%s", file, cmd, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	if os.Getenv("SLUICE_REWRITE") != "" {
		if err := os.WriteFile(file, []byte(strings.TrimRight(rewritten.String(), "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func (ts *transcript) printf(format string, args ...any) {
	ts.out = append(ts.out, fmt.Sprintf(format, args...))
}

func (ts *transcript) name(id string) string {
	if id == "" {
		return `""`
	}
	if a, ok := ts.aliases[id]; ok {
		return a
	}
	return "?"
}

func code(c int16) string { return kerr.Code(c).String() }

func (ts *transcript) run(t *testing.T, line string) {
	fields := strings.Fields(line)
	args := map[string]string{}
	var pos []string
	for _, f := range fields[1:] {
		if k, v, ok := strings.Cut(f, "="); ok {
			args[k] = v
		} else {
			pos = append(pos, f)
		}
	}
	num := func(k string, def int64) int64 {
		if v, ok := args[k]; ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("%s: %s=%q", line, k, v)
			}
			return n
		}
		return def
	}
	h := ts.h
	switch fields[0] {
	case "join":
		alias := pos[0]
		o := joinOpts{version: int16(num("v", 9)), member: ts.ids[alias], session: int32(num("session", 10000)), rebalance: int32(num("rebalance", 30000)), protoType: args["type"]}
		if inst, ok := args["instance"]; ok {
			o.instance = &inst
		}
		if ps, ok := args["protocols"]; ok {
			for _, p := range strings.Split(ps, ",") {
				o.protocols = append(o.protocols, msg.JoinGroupRequestProtocol{Name: p, Metadata: consumerMetadata("t")})
			}
		}
		req := &msg.JoinGroupRequest{GroupId: "g", SessionTimeoutMs: o.session, RebalanceTimeoutMs: o.rebalance, MemberId: o.member, GroupInstanceId: o.instance, ProtocolType: "consumer", Protocols: o.protocols}
		if o.protoType != "" {
			req.ProtocolType = o.protoType
		}
		if req.Protocols == nil {
			req.Protocols = []msg.JoinGroupRequestProtocol{{Name: "range", Metadata: consumerMetadata("t")}}
		}
		h.c.JoinGroup(h.rc(o.version), req, func(r *msg.JoinGroupResponse) {
			if r.MemberId != "" && (r.ErrorCode == 0 || kerr.Code(r.ErrorCode) == kerr.MemberIDRequired) {
				if old, ok := ts.ids[alias]; ok && old != r.MemberId {
					delete(ts.aliases, old)
				}
				ts.ids[alias] = r.MemberId
				ts.aliases[r.MemberId] = alias
			}
			if r.ErrorCode != 0 {
				ts.printf("join %s: %s", alias, code(r.ErrorCode))
				return
			}
			ts.gens[alias] = r.GenerationId
			var members []string
			for _, m := range r.Members {
				members = append(members, ts.name(m.MemberId))
			}
			extra := ""
			if r.SkipAssignment {
				extra = " skip-assignment"
			}
			ts.printf("join %s: generation %d leader %s protocol %s members [%s]%s", alias, r.GenerationId, ts.name(r.Leader), deref(r.ProtocolName), strings.Join(members, " "), extra)
		})
		ts.settleTimers()
	case "sync":
		alias := pos[0]
		req := &msg.SyncGroupRequest{GroupId: "g", GenerationId: int32(num("gen", int64(ts.gens[alias]))), MemberId: ts.ids[alias]}
		if inst, ok := args["instance"]; ok {
			req.GroupInstanceId = &inst
		}
		if as, ok := args["assign"]; ok {
			for _, pair := range strings.Split(as, ",") {
				who, what, _ := strings.Cut(pair, ":")
				req.Assignments = append(req.Assignments, msg.SyncGroupRequestAssignment{MemberId: ts.ids[who], Assignment: []byte(what)})
			}
		}
		h.c.SyncGroup(h.rc(5), req, func(r *msg.SyncGroupResponse) {
			if r.ErrorCode != 0 {
				ts.printf("sync %s: %s", alias, code(r.ErrorCode))
				return
			}
			ts.printf("sync %s: assignment %q", alias, r.Assignment)
		})
		ts.settleTimers()
	case "heartbeat":
		alias := pos[0]
		req := &msg.HeartbeatRequest{GroupId: "g", GenerationId: int32(num("gen", int64(ts.gens[alias]))), MemberId: ts.ids[alias]}
		if inst, ok := args["instance"]; ok {
			req.GroupInstanceId = &inst
		}
		ts.printf("heartbeat %s: %s", alias, code(h.c.Heartbeat(h.rc(4), req).ErrorCode))
		ts.settleTimers()
	case "leave":
		req := &msg.LeaveGroupRequest{GroupId: "g"}
		for _, alias := range pos {
			req.Members = append(req.Members, msg.LeaveGroupRequestMemberIdentity{MemberId: ts.ids[alias]})
		}
		if inst, ok := args["instance"]; ok {
			req.Members = append(req.Members, msg.LeaveGroupRequestMemberIdentity{GroupInstanceId: &inst})
		}
		resp := h.c.LeaveGroup(h.rc(5), req)
		var parts []string
		for _, m := range resp.Members {
			parts = append(parts, fmt.Sprintf("%s=%s", ts.name(m.MemberId), code(m.ErrorCode)))
		}
		ts.printf("leave: %s [%s]", code(resp.ErrorCode), strings.Join(parts, " "))
		ts.settleTimers()
	case "commit":
		alias := pos[0]
		gen, member := int32(-1), ""
		if alias != "-" {
			gen, member = ts.gens[alias], ts.ids[alias]
		}
		req := &msg.OffsetCommitRequest{GroupId: "g", GenerationIdOrMemberEpoch: int32(num("gen", int64(gen))), MemberId: member}
		topic := msg.OffsetCommitRequestTopic{Name: "t"}
		for _, f := range pos[1:] {
			t.Fatalf("%s: unexpected %q", line, f)
		}
		var ps []string
		for k := range args {
			if strings.HasPrefix(k, "p") && k != "gen" {
				ps = append(ps, k)
			}
		}
		sort.Strings(ps)
		for _, k := range ps {
			p, _ := strconv.Atoi(k[1:])
			topic.Partitions = append(topic.Partitions, msg.OffsetCommitRequestPartition{PartitionIndex: int32(p), CommittedOffset: num(k, 0), CommittedLeaderEpoch: -1})
		}
		req.Topics = []msg.OffsetCommitRequestTopic{topic}
		h.c.CommitOffsets(h.rc(9), req, func(r *msg.OffsetCommitResponse) {
			var parts []string
			for _, p := range r.Topics[0].Partitions {
				parts = append(parts, fmt.Sprintf("p%d=%s", p.PartitionIndex, code(p.ErrorCode)))
			}
			ts.printf("commit %s: %s", alias, strings.Join(parts, " "))
		})
		ts.settleTimers()
	case "fetch":
		got := h.fetched("g")
		var ps []int32
		for p := range got {
			ps = append(ps, p)
		}
		sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
		var parts []string
		for _, p := range ps {
			if got[p].CommittedOffset >= 0 {
				parts = append(parts, fmt.Sprintf("p%d=%d", p, got[p].CommittedOffset))
			}
		}
		ts.printf("offsets: %s", strings.Join(parts, " "))
	case "flush":
		h.log.flush()
		ts.settleTimers()
	case "advance":
		d, err := time.ParseDuration(pos[0])
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		h.advance(d)
	case "state":
		g := h.c.group("g")
		if g == nil {
			ts.printf("no group")
			return
		}
		cg := &g.classic
		var members []string
		for _, id := range cg.order {
			members = append(members, ts.name(id))
		}
		ts.printf("%s generation %d leader %s protocol %q members [%s]", cg.state, cg.generation, ts.name(cg.leader), cg.protocol, strings.Join(members, " "))
	default:
		t.Fatalf("unknown command %q", line)
	}
}

// settleTimers fires what is due now (a zero initial rebalance delay ends
// the join phase at once), without flushing the log.
func (ts *transcript) settleTimers() { ts.h.c.Advance(ts.h.now) }
