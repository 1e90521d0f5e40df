package bench

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// progressLine prints the live status of a run: redrawn in place on a
// terminal, one line every few seconds elsewhere (logs, CI).
type progressLine struct {
	out      io.Writer
	terminal bool
	every    time.Duration
	lastAt   time.Time
	prefix   string
	drawn    bool
}

func newProgressLine(out io.Writer, every time.Duration, broker, workload string) *progressLine {
	p := &progressLine{out: out, every: every, prefix: broker + " " + workload}
	if f, ok := out.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.terminal = true
		}
	}
	return p
}

func (p *progressLine) update(iv Interval, res *Result) {
	if p.out == nil {
		return
	}
	now := time.Now()
	if !p.terminal && now.Sub(p.lastAt) < p.every {
		return
	}
	p.lastAt = now
	var b strings.Builder
	phase := "measure"
	if iv.Warmup {
		phase = "warm-up"
	}
	fmt.Fprintf(&b, "%s [%s %5.1fs]", p.prefix, phase, iv.T)
	secs := iv.Seconds
	if secs <= 0 {
		secs = 1
	}
	if res.Produce != nil && res.Workload.Mode != ModeConsume {
		fmt.Fprintf(&b, " produce %9.0f rec/s %7.1f MiB/s", float64(iv.ProducedRecords)/secs, float64(iv.ProducedBytes)/secs/(1<<20))
		if iv.ProduceP99 > 0 {
			fmt.Fprintf(&b, " ack p99 %s", fmtMs(iv.ProduceP99))
		}
	}
	if res.Consume != nil {
		fmt.Fprintf(&b, " | consume %9.0f rec/s %7.1f MiB/s", float64(iv.ConsumedRecords)/secs, float64(iv.ConsumedBytes)/secs/(1<<20))
		if iv.E2EP99 > 0 {
			fmt.Fprintf(&b, " e2e p99 %s", fmtMs(iv.E2EP99))
		}
	}
	if iv.Errors > 0 {
		fmt.Fprintf(&b, " | %d errors", iv.Errors)
	}
	if iv.BrokerRSS > 0 {
		fmt.Fprintf(&b, " | broker %.2f cpu %d MiB", iv.BrokerCPU, iv.BrokerRSS>>20)
	}
	fmt.Fprintf(&b, " | client %.2f cpu", iv.ClientCPU)
	if p.terminal {
		fmt.Fprintf(p.out, "\r\033[K%s", b.String())
		p.drawn = true
	} else {
		fmt.Fprintln(p.out, b.String())
	}
}

// finish ends the in-place line so what follows starts on a fresh line.
func (p *progressLine) finish() {
	if p.out != nil && p.terminal && p.drawn {
		fmt.Fprintln(p.out)
		p.drawn = false
	}
}
