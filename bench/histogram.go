package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram ranges: microsecond resolution, three significant digits (every
// recorded value is exact to within 0.1%), values up to ten minutes. Anything
// longer is clamped to the top and counted in Clamped.
const (
	histogramLowestMicros  = 1
	histogramHighestMicros = int64(10 * time.Minute / time.Microsecond)
	histogramDigits        = 3
)

// Histogram is an HDR latency histogram. It is not safe for concurrent use;
// recorders (recorder.go) guard theirs.
type Histogram struct {
	h       *hdrhistogram.Histogram
	max     time.Duration // exact, unlike the histogram's bucketed maximum
	min     time.Duration
	clamped int64
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	return &Histogram{h: hdrhistogram.New(histogramLowestMicros, histogramHighestMicros, histogramDigits), min: -1}
}

// Record adds one latency. Negative values (clock steps) count as zero.
func (h *Histogram) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	if d > h.max {
		h.max = d
	}
	if h.min < 0 || d < h.min {
		h.min = d
	}
	us := int64(d / time.Microsecond)
	if us > histogramHighestMicros {
		us = histogramHighestMicros
		h.clamped++
	}
	_ = h.h.RecordValue(us) // in range by construction
}

// Merge adds every value of o.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil || o.Count() == 0 {
		return
	}
	h.h.Merge(o.h)
	if o.max > h.max {
		h.max = o.max
	}
	if h.min < 0 || (o.min >= 0 && o.min < h.min) {
		h.min = o.min
	}
	h.clamped += o.clamped
}

// Reset empties the histogram.
func (h *Histogram) Reset() {
	h.h.Reset()
	h.max, h.min, h.clamped = 0, -1, 0
}

// Count is the number of values recorded.
func (h *Histogram) Count() int64 { return h.h.TotalCount() }

// Max is the largest value recorded, exactly.
func (h *Histogram) Max() time.Duration { return h.max }

// Min is the smallest value recorded, exactly (0 when empty).
func (h *Histogram) Min() time.Duration { return max(h.min, 0) }

// Mean is the mean of the recorded values, to histogram precision.
func (h *Histogram) Mean() time.Duration {
	return time.Duration(h.h.Mean() * float64(time.Microsecond))
}

// Percentile is the value at or below which p percent of the values lie
// (p in [0, 100]), to histogram precision but never above the exact maximum.
func (h *Histogram) Percentile(p float64) time.Duration {
	if h.Count() == 0 {
		return 0
	}
	v := time.Duration(h.h.ValueAtPercentile(p)) * time.Microsecond
	return min(v, h.max)
}

// Percentiles is a latency summary in milliseconds.
type Percentiles struct {
	Count   int64   `json:"count"`
	Min     float64 `json:"min_ms"`
	Mean    float64 `json:"mean_ms"`
	P50     float64 `json:"p50_ms"`
	P95     float64 `json:"p95_ms"`
	P99     float64 `json:"p99_ms"`
	P999    float64 `json:"p99_9_ms"`
	P9999   float64 `json:"p99_99_ms"`
	Max     float64 `json:"max_ms"`
	Clamped int64   `json:"clamped,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Summary returns the standard percentiles.
func (h *Histogram) Summary() Percentiles {
	return Percentiles{
		Count:   h.Count(),
		Min:     ms(h.Min()),
		Mean:    ms(h.Mean()),
		P50:     ms(h.Percentile(50)),
		P95:     ms(h.Percentile(95)),
		P99:     ms(h.Percentile(99)),
		P999:    ms(h.Percentile(99.9)),
		P9999:   ms(h.Percentile(99.99)),
		Max:     ms(h.Max()),
		Clamped: h.clamped,
	}
}

// Ordered reports whether min ≤ p50 ≤ p95 ≤ p99 ≤ p99.9 ≤ p99.99 ≤ max, which
// holds for any correct histogram.
func (p Percentiles) Ordered() bool {
	v := []float64{p.Min, p.P50, p.P95, p.P99, p.P999, p.P9999, p.Max}
	for i := 1; i < len(v); i++ {
		if v[i] < v[i-1] {
			return false
		}
	}
	return true
}

// CurvePoint is one point of a percentile spectrum: Percentile percent of
// values were at most Millis.
type CurvePoint struct {
	Percentile float64 `json:"p"`
	Millis     float64 `json:"ms"`
}

// Curve returns the percentile spectrum from p0 to the maximum, with points
// spaced evenly in log(1/(1-p)) (ten per decade: 90, 99, 99.9, ... and the
// steps between), up to the resolution the count supports. Plotted on that
// axis, it shows the tail the way HdrHistogram's plots do.
func (h *Histogram) Curve() []CurvePoint {
	n := h.Count()
	if n == 0 {
		return nil
	}
	var out []CurvePoint
	out = append(out, CurvePoint{0, ms(h.Min())})
	decades := math.Log10(float64(n)) // beyond 1-1/n the percentiles are all the max
	for x := 0.1; x <= decades+1e-9; x += 0.1 {
		p := 100 * (1 - math.Pow(10, -x))
		out = append(out, CurvePoint{p, ms(h.Percentile(p))})
	}
	out = append(out, CurvePoint{100, ms(h.Max())})
	return out
}

// MarshalJSON writes the summary plus the histogram itself (HdrHistogram's
// compressed V2 encoding, base64), so saved results can be merged and
// re-plotted later.
func (h *Histogram) MarshalJSON() ([]byte, error) {
	enc, err := h.h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		return nil, err
	}
	return json.Marshal(histogramJSON{Summary: h.Summary(), MaxNanos: int64(h.max), MinNanos: int64(h.Min()), Encoded: string(enc)})
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (h *Histogram) UnmarshalJSON(b []byte) error {
	var j histogramJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*h = *NewHistogram()
	if j.Encoded == "" {
		return nil
	}
	d, err := hdrhistogram.Decode([]byte(j.Encoded))
	if err != nil {
		return fmt.Errorf("histogram: %w", err)
	}
	h.h.Merge(d)
	h.max = time.Duration(j.MaxNanos)
	if h.Count() > 0 {
		h.min = time.Duration(j.MinNanos)
	}
	h.clamped = j.Summary.Clamped
	return nil
}

type histogramJSON struct {
	Summary  Percentiles `json:"summary"`
	MaxNanos int64       `json:"max_ns"`
	MinNanos int64       `json:"min_ns"`
	Encoded  string      `json:"hdr"`
}
