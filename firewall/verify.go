package firewall

import (
	"context"
	"fmt"
	"iter"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Desired is what the kernel must hold: the whole content of each set.
// The engine implements it for SetBan and SetAllow (static, learned and
// manual allows); the daemon composes SetAllowCountry from the lists
// (With). A Timeout is the time left (0: permanent).
//
// Entries may be called more than once per check (a second pass runs only
// when something differs) and must not call the backend. Verify reads the
// kernel before it iterates, so an entry must be in the desired state no
// later than it is added to the kernel: then a ban added during a check is
// never removed by it.
type Desired interface {
	Entries(set Set) iter.Seq[Entry]
}

// DesiredSets is a Desired held in memory; a set not in the map must be
// empty.
type DesiredSets map[Set][]Entry

// Entries yields d[set].
func (d DesiredSets) Entries(set Set) iter.Seq[Entry] {
	return func(yield func(Entry) bool) {
		for _, e := range d[set] {
			if !yield(e) {
				return
			}
		}
	}
}

// With returns base with set's content taken from entries instead (e.g.
// the allowed countries' prefixes next to the engine's bans and allows).
func With(base Desired, set Set, entries func() iter.Seq[Entry]) Desired {
	return with{base: base, set: set, entries: entries}
}

type with struct {
	base    Desired
	set     Set
	entries func() iter.Seq[Entry]
}

func (w with) Entries(set Set) iter.Seq[Entry] {
	if set == w.set {
		return w.entries()
	}
	if w.base == nil {
		return func(func(Entry) bool) {}
	}
	return w.base.Entries(set)
}

// PrefixEntries yields one permanent entry per prefix.
func PrefixEntries(ps []netip.Prefix) iter.Seq[Entry] {
	return func(yield func(Entry) bool) {
		for _, p := range ps {
			if !yield(Entry{Prefix: p}) {
				return
			}
		}
	}
}

// Verifier is implemented by backends that can compare the kernel with the
// desired state and repair the difference.
type Verifier interface {
	// Verify compares set members (with their timeouts), the chain's rules
	// and the INPUT jumps with want and what Up installs. The kernel is read
	// first and want iterated after, so an entry added meanwhile is never
	// removed (at worst it is re-added). With repair, missing entries are
	// added with their time left, entries that should not be there are
	// removed, timeouts are corrected and the chain, its rules and the
	// jumps are re-created; an object that is not sipsentry's (the
	// ownership rules of Up) is reported in the Drift and left alone. The
	// error is for a check that could not run; a refused repair is in
	// Drift, not in the error.
	Verify(ctx context.Context, want Desired, repair bool) (Drift, error)
}

// Drift is what differed between the kernel and the desired state, one
// record per kernel object that differed. No record: the kernel is as
// desired.
type Drift struct {
	Objects []ObjectDrift
}

// ObjectDrift is one object's difference.
type ObjectDrift struct {
	// Object names the kernel object: "ban-v4", "allow-v6", "allow-cc-v4"
	// (sets), "chain-v4", "jump-v6" (the chain's rules, the INPUT jumps).
	// It is the label of sipsentry_firewall_repairs_total.
	Object string
	// Missing: desired entries (or rules) the kernel lacked; Extra: kernel
	// entries (or rules) not desired; Changed: entries whose timeout
	// differed by more than TimeoutSlack.
	Missing, Extra, Changed int
	// Detail says what differed in words (a few examples, the rule text).
	Detail string
	// Repaired: the difference was repaired by this Verify.
	Repaired bool
	// Refused: why it was not repaired (wraps ErrNotOurs when the object
	// is someone else's); nil when repaired or when repair was not asked.
	Refused error
}

// TimeoutSlack is how far a kernel entry's time left may be from the
// desired one before Verify calls it changed: the kernel counts whole
// seconds and rounds up at add, the desired state is read a moment later.
const TimeoutSlack = 10 * time.Second

// Clean tells whether nothing differed.
func (d Drift) Clean() bool { return len(d.Objects) == 0 }

func (d Drift) String() string {
	if d.Clean() {
		return "no drift"
	}
	var b strings.Builder
	for i, o := range d.Objects {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(o.String())
	}
	return b.String()
}

func (o ObjectDrift) String() string {
	var b strings.Builder
	b.WriteString(o.Object)
	b.WriteString(":")
	if o.Missing > 0 {
		fmt.Fprintf(&b, " %d missing", o.Missing)
	}
	if o.Extra > 0 {
		fmt.Fprintf(&b, " %d extra", o.Extra)
	}
	if o.Changed > 0 {
		fmt.Fprintf(&b, " %d with another timeout", o.Changed)
	}
	if o.Detail != "" {
		b.WriteString(" (" + o.Detail + ")")
	}
	switch {
	case o.Repaired:
		b.WriteString(", repaired")
	case o.Refused != nil:
		fmt.Fprintf(&b, ", not repaired: %v", o.Refused)
	}
	return b.String()
}

// RepairCounter counts repairs per object for Prometheus
// (sipsentry_firewall_repairs_total{object}). The daemon registers one and
// passes it every Drift; the backends count nothing themselves.
type RepairCounter struct {
	desc    *prometheus.Desc
	countMu sync.Mutex // guards count
	count   map[string]uint64
}

// NewRepairCounter returns an empty counter.
func NewRepairCounter() *RepairCounter {
	return &RepairCounter{
		desc: prometheus.NewDesc("sipsentry_firewall_repairs_total",
			"Kernel objects (a set's members, the chain's rules, the INPUT jumps) found to differ from the desired state and repaired.",
			[]string{"object"}, nil),
		count: map[string]uint64{},
	}
}

// Record counts each repaired object of d once.
func (c *RepairCounter) Record(d Drift) {
	c.countMu.Lock()
	defer c.countMu.Unlock()
	for _, o := range d.Objects {
		if o.Repaired {
			c.count[o.Object]++
		}
	}
}

// Count returns the repairs counted for object.
func (c *RepairCounter) Count(object string) uint64 {
	c.countMu.Lock()
	defer c.countMu.Unlock()
	return c.count[object]
}

func (c *RepairCounter) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *RepairCounter) Collect(ch chan<- prometheus.Metric) {
	c.countMu.Lock()
	defer c.countMu.Unlock()
	for o, n := range c.count {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(n), o)
	}
}

// Loader is implemented by backends that can stream many entries into a
// set while the caller is still producing them (e.g. reading bans from the
// state DB), instead of collecting them first.
type Loader interface {
	// BulkLoad adds every entry of seq to set (present ones refreshed).
	// Invalid entries are skipped and counted, never sent; the first kernel
	// error stops the load. It returns how many entries were loaded. Other
	// writes to set wait until the load ends, so seq must not call the
	// backend.
	BulkLoad(ctx context.Context, set Set, seq iter.Seq[Entry]) (BulkResult, error)
}

// BulkResult is what a BulkLoad did.
type BulkResult struct {
	Loaded  int
	Invalid int   // entries refused by Validate (not sent)
	First   error // the first invalid entry's error, if any
}
