// Package dryrun is a firewall backend that changes nothing in the kernel: it
// keeps sets in memory and records each operation it would have made. It
// serves `--dry-run`, `backend = "dry-run"` and tests of the engine.
package dryrun

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sipsentry/sipsentry/firewall"
)

// Op is one recorded operation.
type Op struct {
	Time    time.Time
	Verb    string // prepare, up, down, replace, add, delete, dropflows, dropflow
	Set     firewall.Set
	Entries []firewall.Entry
}

func (o Op) String() string {
	var b strings.Builder
	b.WriteString(o.Verb)
	if o.Set != "" {
		b.WriteString(" ")
		b.WriteString(string(o.Set))
	}
	for i, e := range o.Entries {
		if i == 8 {
			fmt.Fprintf(&b, " ... (%d entries)", len(o.Entries))
			break
		}
		b.WriteString(" ")
		b.WriteString(e.Prefix.String())
		if e.Timeout > 0 {
			fmt.Fprintf(&b, " timeout %s", e.Timeout)
		}
		if e.Comment != "" {
			fmt.Fprintf(&b, " comment %q", e.Comment)
		}
	}
	return b.String()
}

type member struct {
	entry   firewall.Entry
	expires time.Time // zero: permanent
}

// Backend is safe for concurrent use.
type Backend struct {
	mu      sync.Mutex
	now     func() time.Time
	mode    firewall.Mode
	maxElem int
	up      bool
	sets    map[firewall.Set]map[netip.Prefix]member
	ops     []Op
	out     io.Writer
}

// Options configure a Backend; zero values are usable.
type Options struct {
	Mode    firewall.Mode    // reported in Status; default monitor
	MaxElem int              // ban set capacity; default 1<<20
	Now     func() time.Time // clock for timeouts; default time.Now
	Log     io.Writer        // if set, each operation is printed as a line
}

func New(o Options) *Backend {
	if o.Mode == "" {
		o.Mode = firewall.ModeMonitor
	}
	if o.MaxElem == 0 {
		o.MaxElem = 1 << 20
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	b := &Backend{now: o.Now, mode: o.Mode, maxElem: o.MaxElem, out: o.Log,
		sets: map[firewall.Set]map[netip.Prefix]member{}}
	for _, s := range firewall.Sets {
		b.sets[s] = map[netip.Prefix]member{}
	}
	return b
}

var (
	_ firewall.Backend     = (*Backend)(nil)
	_ firewall.FlowDropper = (*Backend)(nil)

	_ firewall.BulkFlowDropper = (*Backend)(nil)
	_ firewall.Preparer        = (*Backend)(nil)
)

func (b *Backend) record(op Op) {
	op.Time = b.now()
	op.Entries = slices.Clone(op.Entries)
	b.ops = append(b.ops, op)
	if b.out != nil {
		fmt.Fprintf(b.out, "dry-run: %s\n", op)
	}
}

// Ops returns the operations recorded so far.
func (b *Backend) Ops() []Op {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.ops)
}

func (b *Backend) Up(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.up = true
	b.record(Op{Verb: "up"})
	return nil
}

// Prepare records that the sets would be created (firewall.UpWith then
// fills allow-cc before Up, as with the kernel backend).
func (b *Backend) Prepare(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.record(Op{Verb: "prepare"})
	return nil
}

func (b *Backend) Down(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.up = false
	for s := range b.sets {
		b.sets[s] = map[netip.Prefix]member{}
	}
	b.record(Op{Verb: "down"})
	return nil
}

func (b *Backend) put(set firewall.Set, m map[netip.Prefix]member, e firewall.Entry) {
	e.Prefix = e.Prefix.Masked()
	var exp time.Time
	if e.Timeout > 0 {
		exp = b.now().Add(e.Timeout)
	}
	m[e.Prefix] = member{entry: e, expires: exp}
}

func (b *Backend) Replace(_ context.Context, set firewall.Set, entries []firewall.Entry) error {
	entries, err := firewall.ValidateAll(set, entries)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	m := make(map[netip.Prefix]member, len(entries))
	for _, e := range entries {
		b.put(set, m, e)
	}
	b.sets[set] = m
	b.record(Op{Verb: "replace", Set: set, Entries: entries})
	return nil
}

func (b *Backend) Add(_ context.Context, set firewall.Set, entries ...firewall.Entry) error {
	entries, err := firewall.ValidateAll(set, entries)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.sets[set]
	b.expire(m)
	for _, e := range entries {
		if _, present := m[e.Prefix.Masked()]; !present && set == firewall.SetBan && len(m) >= b.maxElem {
			return fmt.Errorf("%w: %s holds %d entries (ban_maxelem)", firewall.ErrSetFull, set, len(m))
		}
		b.put(set, m, e)
	}
	b.record(Op{Verb: "add", Set: set, Entries: entries})
	return nil
}

func (b *Backend) Delete(_ context.Context, set firewall.Set, prefixes ...netip.Prefix) error {
	es := make([]firewall.Entry, 0, len(prefixes))
	for _, p := range prefixes {
		e, err := firewall.Validate(set, firewall.Entry{Prefix: p})
		if err != nil {
			return err
		}
		es = append(es, e)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range es {
		delete(b.sets[set], e.Prefix)
	}
	b.record(Op{Verb: "delete", Set: set, Entries: es})
	return nil
}

func (b *Backend) expire(m map[netip.Prefix]member) {
	now := b.now()
	for p, v := range m {
		if !v.expires.IsZero() && !now.Before(v.expires) {
			delete(m, p)
		}
	}
}

func (b *Backend) Contains(_ context.Context, set firewall.Set, addr netip.Addr) (bool, error) {
	if !firewall.KnownSet(set) || !addr.IsValid() {
		return false, fmt.Errorf("%w: contains %q in set %q", firewall.ErrInvalid, addr, set)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.sets[set]
	b.expire(m)
	addr = addr.Unmap()
	for p := range m {
		if p.Contains(addr) {
			return true, nil
		}
	}
	return false, nil
}

func (b *Backend) List(_ context.Context, set firewall.Set) ([]firewall.Entry, error) {
	if !firewall.KnownSet(set) {
		return nil, fmt.Errorf("%w: unknown set %q", firewall.ErrInvalid, set)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.sets[set]
	b.expire(m)
	now := b.now()
	out := make([]firewall.Entry, 0, len(m))
	for _, v := range m {
		e := v.entry
		if !v.expires.IsZero() {
			e.Timeout = v.expires.Sub(now)
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(x, y firewall.Entry) int { return x.Prefix.Addr().Compare(y.Prefix.Addr()) })
	return out, nil
}

func (b *Backend) DropFlows(_ context.Context, addr netip.Addr) error {
	if !addr.IsValid() {
		return fmt.Errorf("%w: dropflows of an invalid address", firewall.ErrInvalid)
	}
	addr = addr.Unmap()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.record(Op{Verb: "dropflows", Entries: []firewall.Entry{{Prefix: netip.PrefixFrom(addr, addr.BitLen())}}})
	return nil
}

// DropFlowsOf records one dropflows per address.
func (b *Backend) DropFlowsOf(ctx context.Context, addrs []netip.Addr) error {
	for _, a := range addrs {
		if err := b.DropFlows(ctx, a); err != nil {
			return err
		}
	}
	return nil
}

// DropFlow records the flow it would cut.
func (b *Backend) DropFlow(_ context.Context, proto string, remote, local netip.AddrPort) error {
	if (proto != "udp" && proto != "tcp") || !remote.IsValid() || !local.IsValid() ||
		remote.Addr().Unmap().Is4() != local.Addr().Unmap().Is4() {
		return fmt.Errorf("%w: dropflow %s %s %s", firewall.ErrInvalid, proto, remote, local)
	}
	a := remote.Addr().Unmap()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.record(Op{Verb: "dropflow", Entries: []firewall.Entry{{Prefix: netip.PrefixFrom(a, a.BitLen()),
		Comment: fmt.Sprintf("%s %s -> %s", proto, remote, local)}}})
	return nil
}

func (b *Backend) Status(context.Context) (firewall.Status, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := firewall.Status{Backend: "dry-run", Mode: string(b.mode), Up: b.up}
	for _, s := range firewall.Sets {
		b.expire(b.sets[s])
		n4, n6 := 0, 0
		for p := range b.sets[s] {
			if p.Addr().Is4() {
				n4++
			} else {
				n6++
			}
		}
		max := 0
		if s == firewall.SetBan {
			max = b.maxElem
		}
		st.Sets = append(st.Sets, firewall.SetInfo{Set: s, Family: "inet", Entries: n4, MaxElem: max},
			firewall.SetInfo{Set: s, Family: "inet6", Entries: n6, MaxElem: max})
	}
	return st, nil
}

func (b *Backend) Close() error { return nil }
