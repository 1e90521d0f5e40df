package group

import (
	"sort"
)

// Server-side assignors of KIP-848 consumer groups: "uniform" (balanced and
// sticky, Kafka's default) and "range" (per topic, contiguous ranges,
// co-partitioned across topics).

type assignorMember struct {
	id         string
	instanceID *string
	topics     map[[16]byte]bool // subscribed topic ids
	current    assignment        // previous target, for stickiness
}

type assignorInput struct {
	members []assignorMember    // sorted by id
	topics  map[[16]byte]int32  // subscribed topic id -> partitions
	names   map[[16]byte]string // topic id -> name (for a stable order)
}

// sortedTopicIDs orders topics by name.
func (in assignorInput) sortedTopicIDs() [][16]byte {
	ids := make([][16]byte, 0, len(in.topics))
	for id := range in.topics {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return in.names[ids[i]] < in.names[ids[j]] })
	return ids
}

type tpID struct {
	topic     [16]byte
	partition int32
}

// assignUniform spreads every subscribed partition over the members
// subscribed to its topic so that counts differ as little as the
// subscriptions allow, keeping each member's previous partitions where
// that stays balanced.
func assignUniform(in assignorInput) map[string]assignment {
	out := make(map[string]assignment, len(in.members))
	owner := map[tpID]int{} // partition -> member index
	counts := make([]int, len(in.members))
	for i, m := range in.members {
		out[m.id] = assignment{}
		for t, ps := range m.current {
			n, ok := in.topics[t]
			if !ok || !m.topics[t] {
				continue
			}
			for _, p := range ps {
				tp := tpID{t, p}
				if p >= n {
					continue
				}
				if _, taken := owner[tp]; taken {
					continue
				}
				owner[tp] = i
				counts[i]++
			}
		}
	}
	// Give out the free partitions, each to the least loaded eligible
	// member.
	for _, t := range in.sortedTopicIDs() {
		for p := int32(0); p < in.topics[t]; p++ {
			tp := tpID{t, p}
			if _, ok := owner[tp]; ok {
				continue
			}
			best := -1
			for i, m := range in.members {
				if m.topics[t] && (best < 0 || counts[i] < counts[best]) {
					best = i
				}
			}
			if best >= 0 {
				owner[tp] = best
				counts[best]++
			}
		}
	}
	// Balance: move partitions from a member to an eligible one with at
	// least two fewer, until no such move remains. Each move lowers the
	// sum of squared counts, so this ends.
	byMember := make([][]tpID, len(in.members))
	for tp, i := range owner {
		byMember[i] = append(byMember[i], tp)
	}
	for i := range byMember {
		sortTPs(byMember[i], in.names)
	}
	for {
		moved := false
		order := make([]int, len(in.members))
		for i := range order {
			order[i] = i
		}
		sort.SliceStable(order, func(a, b int) bool { return counts[order[a]] > counts[order[b]] })
	moving:
		for _, from := range order {
			for k := len(byMember[from]) - 1; k >= 0; k-- {
				tp := byMember[from][k]
				to := -1
				for j, m := range in.members {
					if j != from && m.topics[tp.topic] && counts[j] < counts[from]-1 && (to < 0 || counts[j] < counts[to]) {
						to = j
					}
				}
				if to < 0 {
					continue
				}
				// One move at a time from the most loaded member, so no
				// partition moves that need not.
				byMember[from] = append(byMember[from][:k], byMember[from][k+1:]...)
				byMember[to] = append(byMember[to], tp)
				owner[tp] = to
				counts[from]--
				counts[to]++
				moved = true
				break moving
			}
		}
		if !moved {
			break
		}
	}
	for tp, i := range owner {
		out[in.members[i].id].add(tp.topic, tp.partition)
	}
	return out
}

func sortTPs(tps []tpID, names map[[16]byte]string) {
	sort.Slice(tps, func(i, j int) bool {
		if tps[i].topic != tps[j].topic {
			return names[tps[i].topic] < names[tps[j].topic]
		}
		return tps[i].partition < tps[j].partition
	})
}

// assignRange gives each member, per topic, a contiguous range of
// partitions: members subscribed to the topic in id order, the first
// (partitions mod members) getting one more. Topics with the same partition
// count are co-partitioned.
func assignRange(in assignorInput) map[string]assignment {
	out := make(map[string]assignment, len(in.members))
	for _, m := range in.members {
		out[m.id] = assignment{}
	}
	for _, t := range in.sortedTopicIDs() {
		var subs []string
		for _, m := range in.members {
			if m.topics[t] {
				subs = append(subs, m.id)
			}
		}
		if len(subs) == 0 {
			continue
		}
		n := in.topics[t]
		per, extra := n/int32(len(subs)), n%int32(len(subs))
		next := int32(0)
		for i, id := range subs {
			k := per
			if int32(i) < extra {
				k++
			}
			for p := next; p < next+k; p++ {
				out[id].add(t, p)
			}
			next += k
		}
	}
	return out
}
