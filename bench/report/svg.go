package report

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// Point is one (x, y) sample of a series.
type Point struct{ X, Y float64 }

// Series is one line of a chart.
type Series struct {
	Name  string
	Color string
	// Dash picks the line style: 0 solid, then dashed, dotted, dash-dot
	// (repetitions of one broker share a colour and differ in dash).
	Dash   int
	Points []Point
}

var dashes = []string{"", "7 4", "2 3", "9 3 2 3"}

func dashAttr(i int) string {
	if i <= 0 {
		return ""
	}
	return ` stroke-dasharray="` + dashes[1+(i-1)%(len(dashes)-1)] + `"`
}

// Band shades an x range (the warm-up, say).
type Band struct {
	From, To float64
	Label    string
}

// Chart is a line chart rendered as a standalone SVG, with no dependency
// beyond the standard library, so reports open anywhere (browsers, GitHub's
// Markdown view) and can be rasterised by any SVG renderer.
type Chart struct {
	Title, XLabel, YLabel string
	Width, Height         int
	Series                []Series
	Bands                 []Band
	// PercentileX draws x (a percentile in [0, 100]) on a log(1/(1-p))
	// axis, the HdrHistogram way; p = 100 (the maximum) is drawn just right
	// of the last finite point and labelled "max".
	PercentileX bool
	LogY        bool
}

const (
	marginLeft   = 70
	marginRight  = 20
	marginTop    = 34
	marginBottom = 64
)

// Palette assigns broker colours: sluice blue, Kafka red, others after.
func Palette(i int, name string) string {
	switch strings.ToLower(name) {
	case "sluice":
		return "#1f6fb4"
	case "kafka":
		return "#d0352b"
	}
	others := []string{"#2a9d3a", "#8c4fb8", "#e08a1e", "#17a2b8", "#6d6d6d"}
	return others[i%len(others)]
}

func percentileToX(p float64) float64 {
	if p >= 100 {
		return math.Inf(1)
	}
	return math.Log10(100 / (100 - p))
}

// SVG renders the chart.
func (c *Chart) SVG() string {
	w, h := c.Width, c.Height
	if w == 0 {
		w = 760
	}
	if h == 0 {
		h = 320
	}
	pw, ph := float64(w-marginLeft-marginRight), float64(h-marginTop-marginBottom)

	// Transform points and find the ranges.
	type line struct {
		s   Series
		pts []Point
	}
	var lines []line
	xmin, xmax := math.Inf(1), math.Inf(-1)
	ymin, ymax := math.Inf(1), math.Inf(-1)
	maxFiniteX := 0.0
	for _, s := range c.Series {
		var pts []Point
		for _, p := range s.Points {
			x, y := p.X, p.Y
			if c.PercentileX {
				x = percentileToX(x)
				if !math.IsInf(x, 1) {
					maxFiniteX = math.Max(maxFiniteX, x)
				}
			}
			if c.LogY {
				if y <= 0 {
					continue
				}
				y = math.Log10(y)
			}
			if math.IsNaN(y) {
				continue
			}
			pts = append(pts, Point{x, y})
		}
		lines = append(lines, line{s, pts})
	}
	maxX := maxFiniteX + 0.5 // where p100 goes
	for i := range lines {
		for j, p := range lines[i].pts {
			if math.IsInf(p.X, 1) {
				lines[i].pts[j].X = maxX
			}
			p = lines[i].pts[j]
			xmin, xmax = math.Min(xmin, p.X), math.Max(xmax, p.X)
			ymin, ymax = math.Min(ymin, p.Y), math.Max(ymax, p.Y)
		}
	}
	for _, b := range c.Bands {
		xmin, xmax = math.Min(xmin, b.From), math.Max(xmax, b.To)
	}
	if math.IsInf(xmin, 1) { // no data at all
		xmin, xmax, ymin, ymax = 0, 1, 0, 1
	}
	if c.PercentileX {
		xmin = 0
	}
	var yticks []float64
	if c.LogY {
		ymin, ymax = math.Floor(ymin), math.Ceil(ymax)
		if ymax <= ymin {
			ymax = ymin + 1
		}
		for v := ymin; v <= ymax+1e-9; v++ {
			yticks = append(yticks, v)
		}
	} else {
		ymin = math.Min(0, ymin)
		if ymax <= ymin {
			ymax = ymin + 1
		}
		yticks = niceTicks(ymin, ymax, 5)
		ymax = math.Max(ymax, yticks[len(yticks)-1])
	}
	if xmax <= xmin {
		xmax = xmin + 1
	}
	sx := func(x float64) float64 { return marginLeft + (x-xmin)/(xmax-xmin)*pw }
	sy := func(y float64) float64 { return marginTop + ph - (y-ymin)/(ymax-ymin)*ph }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">`, w, h, w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`, w, h)
	// Titles longer than the chart get a smaller font, then an ellipsis.
	title, size := c.Title, 14.0
	if avail := float64(w - marginLeft - 10); float64(len([]rune(title)))*size*0.6 > avail {
		size = 12
		if maxRunes := int(avail / (size * 0.6)); len([]rune(title)) > maxRunes {
			title = string([]rune(title)[:maxRunes-1]) + "…"
		}
	}
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="%.0f" font-weight="bold">%s</text>`, marginLeft, size, esc(title))
	for _, band := range c.Bands {
		x0, x1 := sx(band.From), sx(band.To)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="%.1f" fill="#eeeeee"/>`, x0, marginTop, x1-x0, ph)
		if band.Label != "" {
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" fill="#888888" font-size="11">%s</text>`, x0+4, marginTop+14, esc(band.Label))
		}
	}
	// Grid and y labels.
	for _, t := range yticks {
		y := sy(t)
		fmt.Fprintf(&b, `<line x1="%d" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#dddddd"/>`, marginLeft, marginLeft+pw, y, y)
		label := formatTick(t)
		if c.LogY {
			label = formatTick(math.Pow(10, t))
		}
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`, marginLeft-6, y+4, label)
	}
	// X ticks.
	if c.PercentileX {
		for d := 0.0; d <= maxX-0.45; d++ {
			x := sx(d)
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%.1f" stroke="#dddddd"/>`, x, x, marginTop, marginTop+ph)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, x, marginTop+ph+16, percentileLabel(d))
		}
		x := sx(maxX)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">max</text>`, x, marginTop+ph+16)
	} else {
		for _, t := range niceTicks(xmin, xmax, 8) {
			if t < xmin-1e-9 || t > xmax+1e-9 {
				continue
			}
			x := sx(t)
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#999999"/>`, x, x, marginTop+ph, marginTop+ph+4)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, x, marginTop+ph+16, formatTick(t))
		}
	}
	// Axes.
	fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%d" y2="%.1f" stroke="#333333"/>`, marginLeft, marginLeft, marginTop, marginTop+ph)
	fmt.Fprintf(&b, `<line x1="%d" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#333333"/>`, marginLeft, marginLeft+pw, marginTop+ph, marginTop+ph)
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, marginLeft+pw/2, marginTop+ph+34, esc(c.XLabel))
	fmt.Fprintf(&b, `<text transform="translate(16 %.1f) rotate(-90)" text-anchor="middle">%s</text>`, marginTop+ph/2, esc(c.YLabel))
	// Lines.
	for _, l := range lines {
		if len(l.pts) == 0 {
			continue
		}
		var d strings.Builder
		for i, p := range l.pts {
			cmd := "L"
			if i == 0 {
				cmd = "M"
			}
			fmt.Fprintf(&d, "%s%.1f %.1f ", cmd, sx(p.X), sy(p.Y))
		}
		fmt.Fprintf(&b, `<path d="%s" fill="none" stroke="%s" stroke-width="1.8"%s/>`, strings.TrimSpace(d.String()), l.s.Color, dashAttr(l.s.Dash))
		if len(l.pts) == 1 {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`, sx(l.pts[0].X), sy(l.pts[0].Y), l.s.Color)
		}
	}
	// Legend, below the axis label.
	lx := float64(marginLeft)
	ly := float64(h) - 10
	for _, l := range lines {
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="2"%s/>`, lx, lx+22, ly-4, ly-4, l.s.Color, dashAttr(l.s.Dash))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`, lx+27, ly, esc(l.s.Name))
		lx += 27 + 7*float64(len(l.s.Name)) + 18
	}
	b.WriteString(`</svg>`)
	return b.String()
}

func esc(s string) string { return html.EscapeString(s) }

// niceTicks returns about n round tick values covering [lo, hi].
func niceTicks(lo, hi float64, n int) []float64 {
	span := hi - lo
	if span <= 0 {
		span = 1
	}
	raw := span / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	var step float64
	switch r := raw / mag; {
	case r <= 1:
		step = mag
	case r <= 2:
		step = 2 * mag
	case r <= 5:
		step = 5 * mag
	default:
		step = 10 * mag
	}
	var out []float64
	for v := math.Floor(lo/step) * step; v <= hi+step*0.999; v += step {
		out = append(out, math.Round(v/step)*step)
		if len(out) > 4*n {
			break
		}
	}
	return out
}

func formatTick(v float64) string {
	a := math.Abs(v)
	switch {
	case a == 0:
		return "0"
	case a >= 1e6:
		return trimZeros(fmt.Sprintf("%.1f", v/1e6)) + "M"
	case a >= 1e4:
		return trimZeros(fmt.Sprintf("%.1f", v/1e3)) + "k"
	case a >= 1:
		return trimZeros(fmt.Sprintf("%.2f", v))
	}
	return trimZeros(fmt.Sprintf("%.3f", v))
}

func trimZeros(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

func percentileLabel(decades float64) string {
	if decades == 0 {
		return "0%"
	}
	p := 100 * (1 - math.Pow(10, -decades))
	return trimZeros(fmt.Sprintf("%.*f", int(math.Max(0, decades-2)), p)) + "%"
}
