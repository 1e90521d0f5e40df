package tuning

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// DefaultStateFile is where apply records what it changed, inside the root.
const DefaultStateFile = "/var/lib/sluice/tune-state.json"

// ApplyOptions selects what apply changes and how.
type ApplyOptions struct {
	Options
	Only    []string // tuner names; empty means every tuner that is off
	DryRun  bool     // print the plan, change nothing
	Persist bool     // write sysctl.d, udev and limits.d files instead of runtime values
	// StateFile is the record of changes (default: DefaultStateFile in the root).
	StateFile string
}

// Outcome is what apply or revert did with one finding or change.
type Outcome string

const (
	OutcomeChanged      Outcome = "changed"
	OutcomeWouldChange  Outcome = "would change"
	OutcomePersisted    Outcome = "persisted"
	OutcomeWouldPersist Outcome = "would persist"
	OutcomeCannot       Outcome = "cannot"
	OutcomeFailed       Outcome = "failed"
	OutcomeUnchanged    Outcome = "unchanged"
	OutcomeRestored     Outcome = "restored"
)

// Result reports one step of apply or revert.
type Result struct {
	Name    string  `json:"name"`
	Target  string  `json:"target,omitempty"`
	Outcome Outcome `json:"outcome"`
	Detail  string  `json:"detail"`
}

func (r Result) String() string {
	name := r.Name
	if r.Target != "" {
		name += " (" + r.Target + ")"
	}
	return fmt.Sprintf("%-13s %s: %s", r.Outcome, name, r.Detail)
}

// Failed reports whether some step failed or could not be done.
func Failed(results []Result) bool {
	for _, r := range results {
		if r.Outcome == OutcomeFailed || r.Outcome == OutcomeCannot {
			return true
		}
	}
	return false
}

// change is one recorded modification, enough to undo it.
type change struct {
	Tuner    string    `json:"tuner"`
	Kind     string    `json:"kind"` // value, file or dir
	Path     string    `json:"path"` // host path
	Previous string    `json:"previous,omitempty"`
	Existed  bool      `json:"existed,omitempty"` // kind file: whether it existed before
	Applied  string    `json:"applied,omitempty"`
	Time     time.Time `json:"time"`
}

const (
	kindValue = "value"
	kindFile  = "file"
	kindDir   = "dir"

	stateTuner = "state" // dirs created to hold the state file itself
)

type state struct {
	Version int      `json:"version"`
	Root    string   `json:"root"`
	Changes []change `json:"changes"`
}

func (h *host) statePath(file string) string {
	if file != "" {
		return file
	}
	return h.path(DefaultStateFile)
}

func loadState(path string) (*state, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	if s.Version != 1 {
		return nil, fmt.Errorf("state file %s: version %d, want 1", path, s.Version)
	}
	return &s, nil
}

// save writes the state file whole, through a rename so a crash leaves the
// old record or the new one.
func (s *state) save(path string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// mkdirAll creates dir (a real path) and returns the directories it made,
// outermost first.
func mkdirAll(dir string) ([]string, error) {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		missing = append([]string{d}, missing...)
		if filepath.Dir(d) == d {
			break
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return missing, nil
}

// applier carries one apply run: the host, the state record and the results.
type applier struct {
	h         *host
	opts      ApplyOptions
	statePath string
	st        *state
	results   []Result
	applied   map[string]bool // tuners changed (or that would be) in this run
}

// Apply changes what check finds off (only the named tuners with Only),
// recording every previous value in the state file before going on. A
// tuner that cannot apply says why and the others go on.
func Apply(opts ApplyOptions) ([]Result, error) {
	h, err := newHost(opts.Options)
	if err != nil {
		return nil, err
	}
	findings, err := selectFindings(h.checkAll(), opts.Only)
	if err != nil {
		return nil, err
	}
	a := &applier{h: h, opts: opts, statePath: h.statePath(opts.StateFile), applied: map[string]bool{}}
	if !opts.DryRun {
		if err := a.openState(); err != nil {
			return nil, err
		}
	}
	explicit := len(opts.Only) > 0
	persistByFile := map[string][]persistLine{}
	var persistOwners []Finding
	for _, f := range findings {
		switch {
		case f.Status == StatusOK:
			if explicit {
				a.report(f, OutcomeUnchanged, "already "+f.Current)
			}
			continue
		case f.Status == StatusUnknown:
			a.report(f, OutcomeCannot, "could not read it: "+f.Error)
			continue
		case f.Status == StatusIgnored && !explicit:
			continue // does not matter here; --only NAME applies it anyway
		}
		p := f.plan
		switch {
		case p.coveredBy != "" && a.applied[p.coveredBy]:
			a.report(f, OutcomeUnchanged, p.coveredBy+", applied above, makes it fine")
		case opts.Persist && len(p.persist) > 0:
			for _, l := range p.persist {
				persistByFile[l.file] = append(persistByFile[l.file], l)
			}
			persistOwners = append(persistOwners, f)
			a.applied[f.Name] = true
		case len(p.writes) > 0:
			a.applyWrites(f)
		case p.cannot != "":
			a.report(f, OutcomeCannot, p.cannot)
		default:
			a.report(f, OutcomeCannot, "no way to change it automatically")
		}
	}
	a.persist(persistByFile, persistOwners)
	// Persisted lines are reported last; show every result in check order.
	order := map[string]int{}
	for i, n := range Names() {
		order[n] = i
	}
	sort.SliceStable(a.results, func(i, j int) bool { return order[a.results[i].Name] < order[a.results[j].Name] })
	if !opts.DryRun && len(a.st.Changes) == 0 {
		// Nothing was recorded: leave no empty state file behind.
		a.dropEmptyState()
	}
	return a.results, nil
}

func (a *applier) report(f Finding, o Outcome, detail string) {
	switch o {
	case OutcomeChanged, OutcomeWouldChange, OutcomePersisted, OutcomeWouldPersist:
		a.applied[f.Name] = true
	}
	a.results = append(a.results, Result{Name: f.Name, Target: f.Target, Outcome: o, Detail: detail})
}

// openState loads the record of earlier applies (so revert undoes all of
// them) or starts one, creating its directory.
func (a *applier) openState() error {
	st, err := loadState(a.statePath)
	switch {
	case err == nil:
		if st.Root != a.h.root {
			return fmt.Errorf("state file %s records changes under root %s, not %s", a.statePath, st.Root, a.h.root)
		}
		a.st = st
		return nil
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	a.st = &state{Version: 1, Root: a.h.root}
	dirs, err := mkdirAll(filepath.Dir(a.statePath))
	if err != nil {
		return fmt.Errorf("state file directory: %w", err)
	}
	for _, d := range dirs {
		a.st.Changes = append(a.st.Changes, change{Tuner: stateTuner, Kind: kindDir, Path: d, Time: time.Now()})
	}
	return nil
}

func (a *applier) dropEmptyState() {
	for _, c := range a.st.Changes {
		if c.Tuner != stateTuner {
			return
		}
	}
	os.Remove(a.statePath)
	for i := len(a.st.Changes) - 1; i >= 0; i-- {
		os.Remove(a.st.Changes[i].Path)
	}
}

// record appends a change and saves the state before anything else moves.
func (a *applier) record(c change) error {
	c.Time = time.Now().UTC()
	a.st.Changes = append(a.st.Changes, c)
	return a.st.save(a.statePath)
}

func (a *applier) applyWrites(f Finding) {
	h := a.h
	var done []string
	for _, w := range f.plan.writes {
		prev, err := h.restoreValue(w.path)
		if err != nil {
			a.report(f, OutcomeFailed, explain(err))
			return
		}
		value := strings.Join(strings.Fields(w.value), " ")
		if a.opts.DryRun {
			done = append(done, fmt.Sprintf("%s = %s (now %s)", w.path, value, strings.Join(strings.Fields(prev), " ")))
			continue
		}
		affected := map[string]string{}
		for _, p := range w.affects {
			if v, err := h.restoreValue(p); err == nil {
				affected[p] = v
			}
		}
		if err := h.write(w.path, w.value); err != nil {
			a.report(f, OutcomeFailed, fmt.Sprintf("%s: %s", w.path, explain(err)))
			return
		}
		if err := a.record(change{Tuner: f.Name, Kind: kindValue, Path: w.path, Previous: prev, Applied: value}); err != nil {
			a.report(f, OutcomeFailed, "wrote "+w.path+" but could not record it: "+err.Error())
			return
		}
		// Side effects are recorded after the write they follow, so revert
		// restores them first.
		for _, p := range w.affects {
			if v, ok := affected[p]; ok {
				if err := a.record(change{Tuner: f.Name, Kind: kindValue, Path: p, Previous: v}); err != nil {
					a.report(f, OutcomeFailed, "could not record "+p+": "+err.Error())
					return
				}
			}
		}
		done = append(done, fmt.Sprintf("%s = %s (was %s)", w.path, value, strings.Join(strings.Fields(prev), " ")))
	}
	detail := strings.Join(done, "; ")
	if a.opts.Persist && f.plan.noPersist != "" {
		detail += "; runtime only, no file for --persist: " + f.plan.noPersist
	}
	if a.opts.DryRun {
		a.report(f, OutcomeWouldChange, detail)
		return
	}
	a.report(f, OutcomeChanged, detail)
}

const persistHeader = "# Written by `sluice tune apply --persist`; `sluice tune revert` restores the previous file.\n"

// persist merges the lines into each file (a line for the same setting is
// replaced) and records each file's previous content.
func (a *applier) persist(byFile map[string][]persistLine, owners []Finding) {
	files := make([]string, 0, len(byFile))
	for f := range byFile {
		files = append(files, f)
	}
	sort.Strings(files)
	outcome := OutcomePersisted
	if a.opts.DryRun {
		outcome = OutcomeWouldPersist
	}
	failed := map[string]string{}
	for _, file := range files {
		if err := a.persistFile(file, byFile[file]); err != nil {
			failed[file] = explain(err)
		}
	}
	for _, f := range owners {
		var lines []string
		var file string
		for _, l := range f.plan.persist {
			file = l.file
			lines = append(lines, l.line)
		}
		if why, bad := failed[file]; bad {
			a.report(f, OutcomeFailed, file+": "+why)
			continue
		}
		a.report(f, outcome, fmt.Sprintf("%s: %s (%s)", file, strings.Join(lines, " | "), takesEffect(file)))
	}
}

func takesEffect(file string) string {
	switch file {
	case sysctlFile:
		return "takes effect at boot, or now with sysctl --system"
	case udevFile:
		return "takes effect when the disk appears, or now with udevadm trigger --subsystem-match=block"
	case limitsFile:
		return "takes effect at the next login session; systemd units need LimitNOFILE=/LimitMEMLOCK="
	}
	return "takes effect at boot"
}

func (a *applier) persistFile(file string, lines []persistLine) error {
	full := a.h.path(file)
	old, err := os.ReadFile(full)
	existed := err == nil
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	content := mergePersist(string(old), lines)
	if a.opts.DryRun {
		return nil
	}
	dirs, err := mkdirAll(filepath.Dir(full))
	if err != nil {
		return err
	}
	for _, d := range dirs {
		if err := a.record(change{Tuner: "persist", Kind: kindDir, Path: a.h.unroot(d)}); err != nil {
			return err
		}
	}
	if err := a.record(change{Tuner: "persist", Kind: kindFile, Path: file, Previous: string(old), Existed: existed}); err != nil {
		return err
	}
	return os.WriteFile(full, []byte(content), 0o644)
}

// mergePersist adds lines to a sluice-owned file. Each line follows a
// marker comment "# sluice: KEY: reason"; an old line with the same key is
// dropped with its marker, and any other line is kept.
func mergePersist(old string, lines []persistLine) string {
	replace := map[string]bool{}
	for _, l := range lines {
		replace[l.key] = true
	}
	var kept []string
	skipNext := false
	for _, line := range strings.Split(strings.TrimSuffix(old, "\n"), "\n") {
		if skipNext {
			skipNext = false
			continue
		}
		if line == "" || line+"\n" == persistHeader {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "# sluice: "); ok {
			key, _, _ := strings.Cut(rest, ": ")
			if replace[key] {
				skipNext = true
				continue
			}
		}
		kept = append(kept, line)
	}
	var b strings.Builder
	b.WriteString(persistHeader)
	for _, l := range kept {
		b.WriteString(l + "\n")
	}
	for _, l := range lines {
		fmt.Fprintf(&b, "# sluice: %s: %s\n%s\n", l.key, l.comment, l.line)
	}
	return b.String()
}

// RevertOptions names the host and the state file to undo.
type RevertOptions struct {
	Root      string
	StateFile string
}

// Revert undoes every recorded change, newest first, writing each previous
// value that is not already in place. What it cannot undo stays in the
// state file; when everything is undone the state file is removed.
func Revert(opts RevertOptions) ([]Result, error) {
	h, err := newHost(Options{Root: opts.Root})
	if err != nil {
		return nil, err
	}
	path := h.statePath(opts.StateFile)
	st, err := loadState(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no state file at %s: nothing was applied (or it was reverted already)", path)
	}
	if err != nil {
		return nil, err
	}
	if st.Root != h.root {
		return nil, fmt.Errorf("state file %s records changes under root %s, not %s: pass --root %s", path, st.Root, h.root, st.Root)
	}
	var results []Result
	var left, stateDirs []change
	for i := len(st.Changes) - 1; i >= 0; i-- {
		c := st.Changes[i]
		if c.Tuner == stateTuner {
			stateDirs = append(stateDirs, c)
			continue
		}
		r, err := h.undo(c)
		results = append(results, r)
		if err != nil {
			left = append([]change{c}, left...)
		}
	}
	if len(left) > 0 {
		var keep []change
		for i := len(stateDirs) - 1; i >= 0; i-- {
			keep = append(keep, stateDirs[i])
		}
		st.Changes = append(keep, left...)
		if err := st.save(path); err != nil {
			return results, fmt.Errorf("could not keep the changes left to revert in %s: %w", path, err)
		}
		return results, nil
	}
	if err := os.Remove(path); err != nil {
		return results, err
	}
	for _, d := range stateDirs { // newest (innermost) first
		os.Remove(d.Path)
	}
	return results, nil
}

func (h *host) undo(c change) (Result, error) {
	r := Result{Name: c.Tuner}
	switch c.Kind {
	case kindValue:
		r.Target = c.Path
		cur, err := h.restoreValue(c.Path)
		if err == nil && cur == c.Previous {
			r.Outcome, r.Detail = OutcomeUnchanged, "already "+strings.Join(strings.Fields(c.Previous), " ")
			return r, nil
		}
		if err := h.write(c.Path, c.Previous); err != nil {
			r.Outcome, r.Detail = OutcomeFailed, explain(err)
			return r, err
		}
		r.Outcome = OutcomeRestored
		r.Detail = strings.Join(strings.Fields(c.Previous), " ")
		if c.Applied != "" {
			r.Detail += " (was " + c.Applied + ")"
		}
		return r, nil
	case kindFile:
		r.Target = c.Path
		full := h.path(c.Path)
		if !c.Existed {
			err := os.Remove(full)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				r.Outcome, r.Detail = OutcomeFailed, explain(err)
				return r, err
			}
			r.Outcome, r.Detail = OutcomeRestored, "removed"
			return r, nil
		}
		if cur, err := os.ReadFile(full); err == nil && string(cur) == c.Previous {
			r.Outcome, r.Detail = OutcomeUnchanged, "already as before"
			return r, nil
		}
		if err := os.WriteFile(full, []byte(c.Previous), 0o644); err != nil {
			r.Outcome, r.Detail = OutcomeFailed, explain(err)
			return r, err
		}
		r.Outcome, r.Detail = OutcomeRestored, "previous content written back"
		return r, nil
	case kindDir:
		r.Target = c.Path
		err := os.Remove(h.path(c.Path))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			r.Outcome, r.Detail = OutcomeFailed, "not removed: "+err.Error()
			return r, err
		}
		r.Outcome, r.Detail = OutcomeRestored, "removed the directory apply created"
		return r, nil
	}
	err := fmt.Errorf("unknown change kind %q", c.Kind)
	r.Outcome, r.Detail = OutcomeFailed, err.Error()
	return r, err
}
