package geo

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// ListProblem is an allowed country's list whose source is not in use: its
// last check refused the file or download (the last good copy stays in
// use), or there is no good copy at all. The daemon turns these into a
// degraded /healthz and doctor into warnings.
type ListProblem struct {
	List    string `json:"list"` // "jp-ipv4"
	Country string `json:"country"`
	Family  string `json:"family"` // "ipv4" | "ipv6"
	Source  string `json:"source"` // the refused file or URL
	Check   string `json:"check"`  // one of the Check* names
	Reason  string `json:"reason"`
	// Since is when this check first refused the source (repeats keep it).
	Since time.Time `json:"since"`
	// EntriesInUse are the normalised prefixes of the last good copy in use.
	EntriesInUse int `json:"entries_in_use"`
	// NoGoodCopy: nothing usable at all. The country's addresses of this
	// family are not in the allow set, so dropping by country would drop
	// its phones: the country cannot be enforced.
	NoGoodCopy bool `json:"no_good_copy"`
}

// String is the problem as one line for a log, /healthz or doctor.
func (p ListProblem) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", p.List, p.Reason)
	if p.Source != "" && !strings.Contains(p.Reason, p.Source) {
		fmt.Fprintf(&b, " (%s)", p.Source)
	}
	if p.NoGoodCopy {
		fmt.Fprintf(&b, "; there is no good copy: %s's %s addresses cannot be allowed by country", p.Country, strings.ToUpper(p.Family[:2])+p.Family[2:])
	} else {
		fmt.Fprintf(&b, "; the last good list (%d entries) stays in use", p.EntriesInUse)
	}
	return b.String()
}

// Health returns the allowed countries' list problems, sorted by list; nil
// when every allowed list is its source's current, checked content.
func (g *Geo) Health() []ListProblem {
	g.problemsMu.Lock()
	defer g.problemsMu.Unlock()
	var out []ListProblem
	for k, p := range g.problems {
		if slices.Contains(g.allow, k.cc) {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b ListProblem) int { return strings.Compare(a.List, b.List) })
	return out
}

// Unenforceable names the allowed lists ("jp-ipv4") with no good copy at
// all: with a country drop those addresses would be dropped. The daemon
// must not drop by country while this is non-empty.
func (g *Geo) Unenforceable() []string {
	var out []string
	for _, p := range g.Health() {
		if p.NoGoodCopy {
			out = append(out, p.List)
		}
	}
	return out
}

// note records the outcome of one list's check: a kept (refused or
// failed) list becomes a problem, anything accepted clears it. A download
// that merely failed while a good copy is in use is not a problem (the
// list's age tells), but keeps an earlier refusal.
func (g *Geo) note(k listKey, r ListResult, use *listState) {
	g.problemsMu.Lock()
	defer g.problemsMu.Unlock()
	if !r.Kept() {
		delete(g.problems, k)
		return
	}
	if r.Decision == DecisionFailed && use != nil && g.opts.ListsDir == "" {
		return
	}
	p := ListProblem{List: k.String(), Country: k.cc, Family: k.family(), Source: r.Source,
		Check: r.Check, Reason: r.Reason, Since: g.now(), NoGoodCopy: use == nil}
	if use != nil {
		p.EntriesInUse = use.n
	}
	if old, ok := g.problems[k]; ok && old.Check == p.Check {
		p.Since = old.Since
	}
	g.problems[k] = p
}
