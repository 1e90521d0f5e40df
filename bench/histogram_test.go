package bench

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"sort"
	"testing"
	"time"
)

// within reports whether got is within the histogram's precision (three
// significant digits, plus the microsecond unit) of want.
func within(got, want time.Duration) bool {
	diff := math.Abs(float64(got - want))
	return diff <= float64(want)/1000+float64(time.Microsecond)
}

func TestHistogramUniform(t *testing.T) {
	h := NewHistogram()
	// 1..100000 µs, once each: percentile p is p% of 100 ms.
	for i := 1; i <= 100_000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	if h.Count() != 100_000 {
		t.Fatalf("count %d", h.Count())
	}
	for _, p := range []float64{50, 95, 99, 99.9, 99.99} {
		want := time.Duration(p * float64(time.Millisecond))
		if got := h.Percentile(p); !within(got, want) {
			t.Errorf("p%g = %s, want %s", p, got, want)
		}
	}
	if h.Max() != 100*time.Millisecond || h.Min() != time.Microsecond {
		t.Errorf("min %s max %s", h.Min(), h.Max())
	}
	if m := h.Mean(); !within(m, 50000500*time.Nanosecond) {
		t.Errorf("mean %s", m)
	}
	if !h.Summary().Ordered() {
		t.Errorf("summary not ordered: %+v", h.Summary())
	}
}

// The percentiles of a random sample agree with the exact ones from sorting.
func TestHistogramMatchesSortedSample(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	h := NewHistogram()
	var vals []time.Duration
	for i := 0; i < 50_000; i++ {
		// Log-normal-ish latencies from 10 µs to seconds.
		v := time.Duration(math.Exp(rng.NormFloat64()*1.5+8) * float64(time.Microsecond))
		vals = append(vals, v)
		h.Record(v)
	}
	sort.Slice(vals, func(i, j int) bool { return vals[i] < vals[j] })
	for _, p := range []float64{50, 95, 99, 99.9} {
		// The rank HdrHistogram uses: p% of n, rounded to nearest.
		idx := int(p/100*float64(len(vals))+0.5) - 1
		want := vals[idx]
		if got := h.Percentile(p); !within(got, want) {
			t.Errorf("p%g = %s, exact %s (seed %d)", p, got, want, seed)
		}
	}
	if h.Max() != vals[len(vals)-1] {
		t.Errorf("max %s, want exactly %s", h.Max(), vals[len(vals)-1])
	}
}

func TestHistogramMergeEqualsRecordingAll(t *testing.T) {
	a, b, all := NewHistogram(), NewHistogram(), NewHistogram()
	for i := 0; i < 1000; i++ {
		d := time.Duration(i*i) * time.Microsecond
		all.Record(d)
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	a.Merge(b)
	if a.Summary() != all.Summary() {
		t.Fatalf("merged %+v\nall    %+v", a.Summary(), all.Summary())
	}
	a.Reset()
	if a.Count() != 0 || a.Max() != 0 || a.Percentile(99) != 0 {
		t.Fatalf("reset left %+v", a.Summary())
	}
}

func TestHistogramClampsAndNegative(t *testing.T) {
	h := NewHistogram()
	h.Record(-time.Second)
	h.Record(time.Hour)
	s := h.Summary()
	if s.Count != 2 || s.Clamped != 1 || s.Min != 0 || s.Max != float64(time.Hour/time.Millisecond) {
		t.Fatalf("%+v", s)
	}
	// Percentiles never exceed the exact maximum.
	if h.Percentile(100) > h.Max() {
		t.Fatalf("p100 %s > max %s", h.Percentile(100), h.Max())
	}
}

func TestHistogramJSONRoundTrip(t *testing.T) {
	h := NewHistogram()
	for i := 1; i <= 5000; i++ {
		h.Record(time.Duration(i) * 37 * time.Microsecond)
	}
	data, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var back Histogram
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if back.Summary() != h.Summary() {
		t.Fatalf("round trip\n got %+v\nwant %+v", back.Summary(), h.Summary())
	}
}

func TestHistogramCurve(t *testing.T) {
	h := NewHistogram()
	for i := 1; i <= 10_000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	c := h.Curve()
	if len(c) < 40 {
		t.Fatalf("%d points for 10^4 values, want ~42", len(c))
	}
	for i := 1; i < len(c); i++ {
		if c[i].Percentile <= c[i-1].Percentile || c[i].Millis < c[i-1].Millis {
			t.Fatalf("curve not monotonic at %d: %+v then %+v", i, c[i-1], c[i])
		}
	}
	if last := c[len(c)-1]; last.Percentile != 100 || last.Millis != 10 {
		t.Fatalf("curve ends at %+v, want p100 = 10ms", last)
	}
}

func TestPercentilesOrdered(t *testing.T) {
	good := Percentiles{Min: 1, P50: 2, P95: 3, P99: 3, P999: 4, P9999: 5, Max: 5}
	if !good.Ordered() {
		t.Error("ordered percentiles reported unordered")
	}
	bad := good
	bad.P99 = 6
	if bad.Ordered() {
		t.Error("p99 > p99.9 reported ordered")
	}
}

func TestRecordersTake(t *testing.T) {
	rs := newRecorders(3, 4)
	for i := 0; i < 30; i++ {
		rs.pick(i).done(int32(i%4), 100, time.Duration(i)*time.Millisecond)
	}
	rs.pick(1).done(2, 100, -1) // warm-up: counted, no latency
	rs.pick(2).failed()
	got := rs.take()
	if got.records != 31 || got.bytes != 3100 || got.errors != 1 || got.hist.Count() != 30 {
		t.Fatalf("took records %d bytes %d errors %d latencies %d", got.records, got.bytes, got.errors, got.hist.Count())
	}
	if want := []int64{8, 8, 8, 7}; !equalInts(rs.partitionCounts, want) {
		t.Fatalf("per partition %v, want %v", rs.partitionCounts, want)
	}
	if again := rs.take(); again.records != 0 || again.hist.Count() != 0 {
		t.Fatalf("second take not empty: %d", again.records)
	}
}

func equalInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
