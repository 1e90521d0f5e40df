package msg

import (
	"bytes"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// The differential test checks every generated codec against franz-go's
// kmsg, an independent implementation: for every API both know and every
// version in our definitions,
//
//	(a) random ours → our bytes → kmsg decode → kmsg bytes == our bytes
//	(b) random kmsg → kmsg bytes → our decode → our bytes == kmsg bytes
//
// Replay a failure with: go test ./wire/msg -run TestDiffKmsg -diff.seed=N

var diffSeed = flag.Uint64("diff.seed", 0, "base seed for TestDiffKmsg (0: time-based)")

// diffRounds is the number of random messages per direction and version.
const diffRounds = 4

// kmsgMessage is what kmsg requests and responses have in common.
type kmsgMessage interface {
	SetVersion(int16)
	AppendTo([]byte) []byte
	ReadFrom([]byte) error
	MaxVersion() int16
}

// diffSkip lists versions where kmsg's definition is known to differ from
// the Kafka JSON we generate from, with the reason. Keyed by
// "Name vN" (N = -1: every version).
var diffSkip = map[string]string{
	"StopReplicaRequest v4": "kmsg places IsKRaftController after ControllerEpoch; Kafka's JSON, " +
		"which the Java serializer follows, places it after ControllerId",
	"ReadShareGroupStateSummaryResponse v0": "kmsg's v0 has LeaderEpoch, added to the unstable v0 after our Kafka snapshot (2024-10-25)",
}

// kmsgTagFix is a kmsg tagged field that kmsg writes in versions where
// Kafka's JSON does not tag it: kmsg writes every known tag in every
// flexible version, ignoring taggedVersions, and knows tags newer than our
// definitions. Direction (b) resets such fields to their defaults below
// version Below before encoding with kmsg, so the comparison covers
// everything else.
type kmsgTagFix struct {
	Path  string // dotted kmsg field path; slices are traversed
	Below int16  // reset when version < Below (MaxInt16: a tag we lack)
}

var kmsgTagFixes = map[string][]kmsgTagFix{
	"ProduceResponse": {{"Topics.Partitions.CurrentLeader", 10}, {"Brokers", 10}},
	"FetchRequest": {{"ReplicaState", 15}, {"Topics.Partitions.ReplicaDirectoryID", 17},
		{"Topics.Partitions.HighWatermark", math.MaxInt16}},
	"FetchResponse":          {{"Brokers", 16}},
	"VoteResponse":           {{"NodeEndpoints", 1}},
	"FetchSnapshotRequest":   {{"Topics.Partitions.ReplicaDirectoryID", 1}},
	"FetchSnapshotResponse":  {{"NodeEndpoints", 1}},
	"BrokerHeartbeatRequest": {{"OfflineLogDirs", 1}, {"CordonedLogDirs", math.MaxInt16}},
}

// resetPath sets the field at path (through structs, pointers and slices)
// to its default.
func resetPath(v reflect.Value, path []string) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			resetPath(v.Elem(), path)
		}
		return
	case reflect.Slice:
		for i := range v.Len() {
			resetPath(v.Index(i), path)
		}
		return
	}
	f := v.FieldByName(path[0])
	if !f.IsValid() {
		panic("kmsgTagFixes: no field " + path[0] + " in " + v.Type().String())
	}
	if len(path) > 1 {
		resetPath(f, path[1:])
		return
	}
	// The field's default is what a defaulted parent holds.
	parent := reflect.New(v.Type())
	if d, ok := parent.Interface().(interface{ Default() }); ok {
		d.Default()
	}
	f.Set(parent.Elem().FieldByName(path[0]))
}

func skipReason(name string, version int16) (string, bool) {
	if r, ok := diffSkip[fmt.Sprintf("%s v%d", name, version)]; ok {
		return r, true
	}
	r, ok := diffSkip[name+" v-1"]
	return r, ok
}

func TestDiffKmsg(t *testing.T) {
	base := *diffSeed
	if base == 0 {
		base = uint64(time.Now().UnixNano())
	}
	t.Logf("base seed %d (replay with -diff.seed=%d)", base, base)
	for _, key := range APIKeys() {
		for _, request := range []bool{true, false} {
			var ours Message
			var newKmsg func() kmsgMessage
			if request {
				ours = NewRequest(key)
				if kmsg.RequestForKey(key) != nil {
					newKmsg = func() kmsgMessage { return kmsg.RequestForKey(key) }
				}
			} else {
				ours = NewResponse(key)
				if kmsg.ResponseForKey(key) != nil {
					newKmsg = func() kmsgMessage { return kmsg.ResponseForKey(key) }
				}
			}
			name := reflect.TypeOf(ours).Elem().Name()
			t.Run(name, func(t *testing.T) {
				if newKmsg == nil {
					t.Skipf("skip %s: kmsg has no message for key %d", name, key)
				}
				vr := ours.Versions()
				kmax := newKmsg().MaxVersion()
				for v := vr.Min; v <= vr.Max; v++ {
					if v > kmax {
						t.Logf("skip %s v%d: kmsg knows versions up to %d only", name, v, kmax)
						continue
					}
					if reason, ok := skipReason(name, v); ok {
						t.Logf("skip %s v%d: %s", name, v, reason)
						continue
					}
					for round := range uint64(diffRounds) {
						seed := base ^ (uint64(key)<<32 | uint64(v)<<16 | round<<1)
						if request {
							seed ^= 1 << 63
						}
						diffOursToKmsg(t, name, ours, newKmsg, v, seed)
						diffKmsgToOurs(t, name, ours, newKmsg, v, seed+1)
					}
				}
			})
		}
	}
}

// diffOursToKmsg is direction (a).
func diffOursToKmsg(t *testing.T, name string, ours Message, newKmsg func() kmsgMessage, v int16, seed uint64) {
	t.Helper()
	m := reflect.New(reflect.TypeOf(ours).Elem()).Interface().(Message)
	m.Default()
	fillRandom(reflect.ValueOf(m).Elem(), rand.New(rand.NewPCG(seed, seed)), 0)
	ourBytes := m.Append(nil, v)
	k := newKmsg()
	k.SetVersion(v)
	if err := k.ReadFrom(ourBytes); err != nil {
		t.Fatalf("%s v%d seed %d: kmsg cannot decode our encoding: %v\n%x", name, v, seed, err, ourBytes)
	}
	kBytes := k.AppendTo(nil)
	if !bytes.Equal(ourBytes, kBytes) {
		t.Fatalf("%s v%d seed %d: ours→kmsg re-encoding differs at byte %d\nours %x\nkmsg %x",
			name, v, seed, firstDiff(ourBytes, kBytes), ourBytes, kBytes)
	}
}

// diffKmsgToOurs is direction (b).
func diffKmsgToOurs(t *testing.T, name string, ours Message, newKmsg func() kmsgMessage, v int16, seed uint64) {
	t.Helper()
	k := newKmsg()
	if d, ok := k.(interface{ Default() }); ok {
		d.Default()
	}
	fillRandom(reflect.ValueOf(k).Elem(), rand.New(rand.NewPCG(seed, seed)), 0)
	for _, fix := range kmsgTagFixes[name] {
		if v < fix.Below {
			resetPath(reflect.ValueOf(k).Elem(), strings.Split(fix.Path, "."))
		}
	}
	k.SetVersion(v)
	kBytes := k.AppendTo(nil)
	m := reflect.New(reflect.TypeOf(ours).Elem()).Interface().(Message)
	if err := m.Decode(kBytes, v); err != nil {
		t.Fatalf("%s v%d seed %d: cannot decode kmsg's encoding: %v\n%x", name, v, seed, err, kBytes)
	}
	ourBytes := m.Append(nil, v)
	if !bytes.Equal(ourBytes, kBytes) {
		t.Fatalf("%s v%d seed %d: kmsg→ours re-encoding differs at byte %d\nkmsg %x\nours %x",
			name, v, seed, firstDiff(kBytes, ourBytes), kBytes, ourBytes)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// fillRandom sets every settable field reachable from v to a random value.
// Pointers are always non-nil (so a field is valid in versions where it is
// not nullable), empty slices are nil (kmsg compares tagged structs with
// reflect.DeepEqual), and kmsg's UnknownTags stay empty.
func fillRandom(v reflect.Value, rng *rand.Rand, depth int) {
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(kmsg.Tags{}) {
			return
		}
		for i := range v.NumField() {
			f := v.Field(i)
			if !f.CanSet() || v.Type().Field(i).Name == "UnknownTags" {
				continue
			}
			fillRandom(f, rng, depth+1)
		}
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fillRandom(p.Elem(), rng, depth+1)
		v.Set(p)
	case reflect.Slice:
		n := rng.IntN(3)
		if depth > 8 {
			n = 0
		}
		if n == 0 {
			v.SetZero()
			return
		}
		s := reflect.MakeSlice(v.Type(), n, n)
		for i := range n {
			fillRandom(s.Index(i), rng, depth+1)
		}
		v.Set(s)
	case reflect.Array:
		for i := range v.Len() {
			fillRandom(v.Index(i), rng, depth+1)
		}
	case reflect.String:
		const letters = "abcdefghijklmnopqrstuvwxyz0123456789-_."
		b := make([]byte, rng.IntN(6))
		for i := range b {
			b[i] = letters[rng.IntN(len(letters))]
		}
		v.SetString(string(b))
	case reflect.Bool:
		v.SetBool(rng.IntN(2) == 1)
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(rng.Uint64()))
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(rng.Uint64())
	case reflect.Float64:
		v.SetFloat(rng.NormFloat64() * 1e6)
	}
}
