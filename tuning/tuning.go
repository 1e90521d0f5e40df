package tuning

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Options says which host to look at and what the broker will run there.
type Options struct {
	// Root is the directory that stands for "/": "" or "/" is the real host.
	Root string
	// DataDir is the broker's data directory (default ./data); the block
	// device, file system and free-space tuners look at what holds it.
	DataDir string
	// Shards is the number of shard threads (default: number of CPUs);
	// IRQs belong on the CPUs that run none.
	Shards int
}

// Status is a tuner's verdict on this host.
type Status string

const (
	StatusOK      Status = "ok"      // as recommended
	StatusOff     Status = "off"     // differs from the recommendation, and it matters here
	StatusIgnored Status = "n/a"     // does not matter on this host (Scope says why)
	StatusUnknown Status = "unknown" // could not be read (Error says why)
)

// Finding is what one tuner found for one target (a sysctl, a disk, ...).
type Finding struct {
	Name        string `json:"name"`             // what it sets, e.g. vm.swappiness; --only takes it
	Target      string `json:"target,omitempty"` // the disk, mount or CPUs it is about, if any
	Current     string `json:"current"`
	Recommended string `json:"recommended"`
	Reason      string `json:"reason"` // why the recommendation, in one line
	Status      Status `json:"status"`
	Matters     bool   `json:"matters"`         // whether it matters on this host
	Scope       string `json:"scope,omitempty"` // why it matters here, or why not
	Applicable  bool   `json:"applicable"`      // whether tune apply can change it
	Apply       string `json:"apply,omitempty"` // what apply writes, or why it cannot
	Error       string `json:"error,omitempty"`

	plan plan
}

// String is the finding on one line, as the broker logs it at start-up.
func (f Finding) String() string {
	name := f.Name
	if f.Target != "" {
		name += " (" + f.Target + ")"
	}
	if f.Status == StatusUnknown {
		return fmt.Sprintf("%s: unknown (%s)", name, f.Error)
	}
	return fmt.Sprintf("%s is %s, recommended %s: %s", name, f.Current, f.Recommended, f.Reason)
}

// plan is what applying a finding writes; it is computed by the check, so
// --dry-run shows exactly what apply would do.
type plan struct {
	writes    []write
	persist   []persistLine
	cannot    string // why apply cannot change it ("" when it can)
	noPersist string // why --persist has no file for it (it is applied at runtime)
	coveredBy string // a tuner whose change makes this one fine (swap: vm.swappiness)
}

// write is one kernel file to set; affects lists files the kernel changes
// as a side effect, whose previous values are recorded too.
type write struct {
	path, value string
	affects     []string
}

// persistLine is one line in a sysctl.d, udev or limits.d file; a line with
// the same key already in the file is replaced.
type persistLine struct {
	file, key, line, comment string
}

// tuner checks one concern and returns a finding per target.
type tuner struct {
	name  string
	check func(h *host) []Finding
}

// Names lists every tuner's name, in check order.
func Names() []string {
	var out []string
	for _, t := range tuners {
		out = append(out, t.name)
	}
	return out
}

// Check runs every tuner against the host. It never changes anything.
func Check(opts Options) ([]Finding, error) {
	h, err := newHost(opts)
	if err != nil {
		return nil, err
	}
	return h.checkAll(), nil
}

func (h *host) checkAll() []Finding {
	var out []Finding
	for _, t := range tuners {
		for _, f := range t.check(h) {
			if f.Name == "" {
				f.Name = t.name
			}
			f.finish()
			out = append(out, f)
		}
	}
	return out
}

// finish fills the fields derived from the plan and status.
func (f *Finding) finish() {
	if f.Status == StatusUnknown {
		f.Matters = false
	}
	p := f.plan
	f.Applicable = len(p.writes) > 0 || len(p.persist) > 0
	var parts []string
	if len(p.writes) > 0 {
		var sets []string
		for _, w := range p.writes {
			sets = append(sets, w.path+" = "+strings.Join(strings.Fields(w.value), " "))
		}
		parts = append(parts, "writes "+strings.Join(sets, "; "))
	}
	if p.cannot != "" {
		parts = append(parts, "cannot apply: "+p.cannot)
	}
	if len(p.persist) > 0 && p.cannot == "" {
		parts = append(parts, "--persist writes "+p.persist[0].file)
	}
	if p.noPersist != "" && len(p.writes) > 0 {
		parts = append(parts, "no file for --persist: "+p.noPersist)
	}
	f.Apply = strings.Join(parts, "; ")
}

// CheckSummary checks the real host for a broker with this data directory
// and number of shards (0: one per CPU) and returns the findings that are
// off, for the broker to log one line each at start-up. It never applies
// anything, and a tuner it cannot read is left out.
func CheckSummary(dataDir string, shards int) []Finding {
	findings, err := Check(Options{Root: "/", DataDir: dataDir, Shards: shards})
	if err != nil {
		return nil
	}
	var off []Finding
	for _, f := range findings {
		if f.Status == StatusOff {
			off = append(off, f)
		}
	}
	return off
}

// AnyOff reports whether some finding is off.
func AnyOff(findings []Finding) bool {
	for _, f := range findings {
		if f.Status == StatusOff {
			return true
		}
	}
	return false
}

// WriteJSON writes the findings as a JSON array.
func WriteJSON(w io.Writer, findings []Finding) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if findings == nil {
		findings = []Finding{}
	}
	return enc.Encode(findings)
}

// WriteReport writes the findings for a person: one aligned row per
// finding with the reason and the host-specific note under it, then a count.
func WriteReport(w io.Writer, findings []Finding) error {
	rows := [][]string{{"STATUS", "TUNER", "TARGET", "CURRENT", "RECOMMENDED"}}
	for _, f := range findings {
		target := f.Target
		if target == "" {
			target = "-"
		}
		rows = append(rows, []string{string(f.Status), f.Name, target, f.Current, f.Recommended})
	}
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], len(c))
		}
	}
	bw := bufio.NewWriter(w)
	line := func(r []string) {
		for i, c := range r {
			if i == len(r)-1 {
				bw.WriteString(c + "\n")
			} else {
				fmt.Fprintf(bw, "%-*s  ", widths[i], c)
			}
		}
	}
	line(rows[0])
	counts := map[Status]int{}
	indent := strings.Repeat(" ", widths[0]+2)
	for i, f := range findings {
		counts[f.Status]++
		line(rows[i+1])
		fmt.Fprintf(bw, "%swhy: %s\n", indent, f.Reason)
		if f.Scope != "" {
			fmt.Fprintf(bw, "%shere: %s\n", indent, f.Scope)
		}
		if f.Error != "" {
			fmt.Fprintf(bw, "%serror: %s\n", indent, f.Error)
		}
		if f.Status == StatusOff && f.Apply != "" {
			fmt.Fprintf(bw, "%sapply: %s\n", indent, f.Apply)
		}
	}
	var parts []string
	for _, s := range []Status{StatusOff, StatusOK, StatusIgnored, StatusUnknown} {
		parts = append(parts, fmt.Sprintf("%d %s", counts[s], s))
	}
	fmt.Fprintf(bw, "\n%d checks: %s\n", len(findings), strings.Join(parts, ", "))
	return bw.Flush()
}

// selectFindings keeps the findings whose name is in only (all when only is
// empty) and reports names that match no tuner.
func selectFindings(findings []Finding, only []string) ([]Finding, error) {
	if len(only) == 0 {
		return findings, nil
	}
	known := map[string]bool{}
	for _, n := range Names() {
		known[n] = true
	}
	want := map[string]bool{}
	var unknown []string
	for _, n := range only {
		if !known[n] {
			unknown = append(unknown, n)
		}
		want[n] = true
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fmt.Errorf("no tuner named %s (tuners: %s)", strings.Join(unknown, ", "), strings.Join(Names(), " "))
	}
	var out []Finding
	for _, f := range findings {
		if want[f.Name] {
			out = append(out, f)
		}
	}
	return out, nil
}
