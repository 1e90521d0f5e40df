package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// Trace attaches the probes for d (or until SIGINT/SIGTERM) and prints
// their histograms to w. A host that cannot run them gets a list of what
// is missing and exit status 0: lacking probes is not an error of the
// command. It returns the exit status for `sluice tune trace`.
func Trace(w io.Writer, cfg Config, d time.Duration) (int, error) {
	p, err := Start(cfg)
	var unavailable *UnavailableError
	if errors.As(err, &unavailable) {
		fmt.Fprintln(w, "eBPF probes unavailable on this host; missing:")
		for _, m := range unavailable.Missing {
			fmt.Fprintf(w, "  - %s\n", m)
		}
		return 0, nil
	}
	if err != nil {
		return 2, err
	}
	defer p.Close()
	fmt.Fprintf(w, "tracing %s for %s (Ctrl-C stops early)\n", strings.Join(p.Attached, ", "), d)
	for _, m := range p.Missing {
		fmt.Fprintf(w, "  not traced: %s\n", m)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
	s, err := p.Snapshot()
	if err != nil {
		return 2, err
	}
	fmt.Fprintln(w)
	WriteSnapshot(w, s, time.Since(start))
	return 0, nil
}

// WriteSnapshot prints a snapshot's histograms for a person.
func WriteSnapshot(w io.Writer, s Snapshot, elapsed time.Duration) {
	secs := elapsed.Seconds()
	if s.HasBlock {
		var names []string
		for _, d := range s.WatchedDisks {
			names = append(names, fmt.Sprintf("%s (%d:%d)", d.Name, d.Major, d.Minor))
		}
		where := "all disks"
		if len(names) > 0 {
			where = strings.Join(names, ", ")
		}
		fmt.Fprintf(w, "block I/O latency, issue to completion, on %s:\n", where)
		any := false
		for _, h := range s.Block {
			if h.Count == 0 {
				continue
			}
			any = true
			fmt.Fprintf(w, "  %s: %d requests (%.1f/s), mean %s\n", h.Label, h.Count, float64(h.Count)/secs, nanos(float64(h.Sum)/float64(h.Count)))
			writeHist(w, h, nanos)
		}
		if !any {
			fmt.Fprintln(w, "  no requests")
		}
		fmt.Fprintln(w)
	}
	if s.HasURing {
		fmt.Fprintln(w, "io_uring request latency, submission to completion:")
		for _, h := range s.URing {
			fmt.Fprintf(w, "  %s: %d requests (%.1f/s), mean %s\n", h.Label, h.Count, float64(h.Count)/secs, nanos(float64(h.Sum)/float64(h.Count)))
			writeHist(w, h, nanos)
		}
		if len(s.URing) == 0 {
			fmt.Fprintln(w, "  no requests")
		}
		fmt.Fprintln(w)
	}
	if s.HasPageCache {
		fmt.Fprintln(w, "page cache, data directory's file system:")
		fmt.Fprintf(w, "  reads that missed: %d; pages inserted for reads: %d (%s); pages inserted otherwise (writes): %d\n",
			s.ReadMisses, s.PagesRead, pagesText(s.PagesRead), s.PagesOther)
		if s.MissPages.Count > 0 {
			fmt.Fprintln(w, "  pages each missing read asked for:")
			writeHist(w, s.MissPages, func(v float64) string { return fmt.Sprintf("%.0f", v) })
		}
		fmt.Fprintln(w)
	}
}

func pagesText(pages uint64) string {
	b := float64(pages * 4096)
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", b/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	}
	return fmt.Sprintf("%.0f KiB", b/(1<<10))
}

// nanos formats a duration in nanoseconds with three significant digits.
func nanos(ns float64) string {
	switch {
	case ns < 1e3:
		return fmt.Sprintf("%.0fns", ns)
	case ns < 1e6:
		return fmt.Sprintf("%.3gus", ns/1e3)
	case ns < 1e9:
		return fmt.Sprintf("%.3gms", ns/1e6)
	}
	return fmt.Sprintf("%.3gs", ns/1e9)
}

// writeHist prints the non-empty range of a log2 histogram with bars.
func writeHist(w io.Writer, h Histogram, unit func(float64) string) {
	lo, hi := -1, -1
	var peak uint64
	for k, c := range h.Slots {
		if c == 0 {
			continue
		}
		if lo < 0 {
			lo = k
		}
		hi = k
		peak = max(peak, c)
	}
	if lo < 0 {
		return
	}
	const width = 40
	fmt.Fprintf(w, "    %21s  %8s  distribution\n", "range", "count")
	for k := lo; k <= hi; k++ {
		c := h.Slots[k]
		bar := int(c * width / peak)
		if c > 0 && bar == 0 {
			bar = 1
		}
		from, to := unit(float64(uint64(1)<<k)), unit(float64(uint64(1)<<(k+1)))
		fmt.Fprintf(w, "    %9s -> %-8s  %8d  |%-*s|\n", from, to, c, width, strings.Repeat("*", bar))
	}
}
