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

func (m member) expired(now time.Time) bool {
	return !m.expires.IsZero() && !now.Before(m.expires)
}

// memberSet is one set: its members, and how many members have each
// prefix length, so Contains tries only the lengths present.
type memberSet struct {
	m    map[netip.Prefix]member
	bits map[int]int
}

func newMemberSet(n int) *memberSet {
	return &memberSet{m: make(map[netip.Prefix]member, n), bits: map[int]int{}}
}

func (s *memberSet) del(p netip.Prefix) {
	if _, ok := s.m[p]; ok {
		delete(s.m, p)
		if s.bits[p.Bits()]--; s.bits[p.Bits()] == 0 {
			delete(s.bits, p.Bits())
		}
	}
}

// expiryRef names a member that may expire in its bucket's second.
type expiryRef struct {
	set     firewall.Set
	prefix  netip.Prefix
	expires time.Time
}

// Backend is safe for concurrent use. Every operation costs O(1) per
// entry it names (List and Status excepted): no walk of a whole set on
// Add or Contains. Expired members are dropped by a wheel of one bucket
// per second, swept as time passes, and treated as absent when met before.
// The record of operations is bounded (Options.MaxOps, MaxOpEntries).
type Backend struct {
	mu      sync.Mutex
	now     func() time.Time
	mode    firewall.Mode
	maxElem int
	up      bool
	sets    map[firewall.Set]*memberSet
	wheel   map[int64][]expiryRef // by the second at or after which they expire
	swept   int64                 // every bucket up to this second was swept
	out     io.Writer

	maxOps, maxOpEntries int
	ops                  []Op // ops[opStart:] is the record, oldest first
	opStart              int
	opEntries            int // entries held by the record
	opsDropped           int
}

// Options configure a Backend; zero values are usable.
type Options struct {
	Mode    firewall.Mode    // reported in Status; default monitor
	MaxElem int              // ban set capacity; default 1<<20
	Now     func() time.Time // clock for timeouts; default time.Now
	Log     io.Writer        // if set, each operation is printed as a line
	// MaxOps and MaxOpEntries bound the record of operations (Ops): the
	// oldest go first when either is exceeded. Defaults 4096 operations,
	// 65536 entries.
	MaxOps, MaxOpEntries int
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
	if o.MaxOps <= 0 {
		o.MaxOps = 4096
	}
	if o.MaxOpEntries <= 0 {
		o.MaxOpEntries = 65536
	}
	b := &Backend{now: o.Now, mode: o.Mode, maxElem: o.MaxElem, out: o.Log,
		sets: map[firewall.Set]*memberSet{}, wheel: map[int64][]expiryRef{},
		maxOps: o.MaxOps, maxOpEntries: o.MaxOpEntries}
	b.swept = b.now().Unix()
	for _, s := range firewall.Sets {
		b.sets[s] = newMemberSet(0)
	}
	return b
}

var (
	_ firewall.Backend     = (*Backend)(nil)
	_ firewall.FlowDropper = (*Backend)(nil)

	_ firewall.BulkFlowDropper = (*Backend)(nil)
	_ firewall.Preparer        = (*Backend)(nil)
	_ firewall.Verifier        = (*Backend)(nil)
	_ firewall.Loader          = (*Backend)(nil)
)

func (b *Backend) record(op Op) {
	op.Time = b.now()
	op.Entries = slices.Clone(op.Entries)
	if b.out != nil {
		fmt.Fprintf(b.out, "dry-run: %s\n", op)
	}
	b.ops = append(b.ops, op)
	b.opEntries += len(op.Entries)
	for len(b.ops)-b.opStart > b.maxOps || (b.opEntries > b.maxOpEntries && len(b.ops)-b.opStart > 1) {
		b.opEntries -= len(b.ops[b.opStart].Entries)
		b.ops[b.opStart] = Op{}
		b.opStart++
		b.opsDropped++
	}
	// Compact now and then: amortized O(1) per operation.
	if b.opStart > len(b.ops)/2 && b.opStart > 64 {
		n := copy(b.ops, b.ops[b.opStart:])
		clear(b.ops[n:])
		b.ops, b.opStart = b.ops[:n], 0
	}
}

// Ops returns the operations recorded and still held, oldest first.
func (b *Backend) Ops() []Op {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.ops[b.opStart:])
}

// OpsDropped tells how many operations left the bounded record.
func (b *Backend) OpsDropped() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.opsDropped
}

func (b *Backend) Up(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.up = true
	b.record(Op{Verb: "up"})
	return nil
}

// Prepare records that the sets would be created (firewall.UpFilled then
// fills the allow sets before Up, as with the kernel backend).
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
		b.sets[s] = newMemberSet(0)
	}
	clear(b.wheel)
	b.record(Op{Verb: "down"})
	return nil
}

// put inserts or refreshes e (validated) in set.
func (b *Backend) put(set firewall.Set, ms *memberSet, e firewall.Entry, now time.Time) {
	var exp time.Time
	if e.Timeout > 0 {
		exp = now.Add(e.Timeout)
		sec := exp.Unix()
		if exp.After(time.Unix(sec, 0)) {
			sec++ // the bucket swept once the member has surely expired
		}
		b.wheel[sec] = append(b.wheel[sec], expiryRef{set: set, prefix: e.Prefix, expires: exp})
	}
	if _, ok := ms.m[e.Prefix]; !ok {
		ms.bits[e.Prefix.Bits()]++
	}
	ms.m[e.Prefix] = member{entry: e, expires: exp}
}

// expire sweeps the buckets of the seconds passed since the last sweep.
func (b *Backend) expire(now time.Time) {
	sec := now.Unix()
	if sec <= b.swept {
		return
	}
	sweep := func(k int64) {
		for _, r := range b.wheel[k] {
			ms := b.sets[r.set]
			if m, ok := ms.m[r.prefix]; ok && m.expires.Equal(r.expires) {
				ms.del(r.prefix)
			}
		}
		delete(b.wheel, k)
	}
	if sec-b.swept > int64(len(b.wheel)) {
		// A long gap (a test clock's jump): visit the buckets, not the seconds.
		for k := range b.wheel {
			if k <= sec {
				sweep(k)
			}
		}
	} else {
		for k := b.swept + 1; k <= sec; k++ {
			sweep(k)
		}
	}
	b.swept = sec
}

// sweepAll drops every expired member (only when a set looks full).
func (b *Backend) sweepAll(ms *memberSet, now time.Time) {
	for p, m := range ms.m {
		if m.expired(now) {
			ms.del(p)
		}
	}
}

func (b *Backend) Replace(_ context.Context, set firewall.Set, entries []firewall.Entry) error {
	entries, err := firewall.ValidateAll(set, entries)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	b.expire(now)
	ms := newMemberSet(len(entries))
	for _, e := range entries {
		b.put(set, ms, e, now)
	}
	b.sets[set] = ms
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
	if err := b.add(set, entries); err != nil {
		return err
	}
	b.record(Op{Verb: "add", Set: set, Entries: entries})
	return nil
}

func (b *Backend) add(set firewall.Set, entries []firewall.Entry) error {
	now := b.now()
	b.expire(now)
	ms := b.sets[set]
	for _, e := range entries {
		if set == firewall.SetBan {
			if m, present := ms.m[e.Prefix]; (!present || m.expired(now)) && len(ms.m) >= b.maxElem {
				b.sweepAll(ms, now)
				if len(ms.m) >= b.maxElem {
					return fmt.Errorf("%w: %s holds %d entries (ban_maxelem)", firewall.ErrSetFull, set, len(ms.m))
				}
			}
		}
		b.put(set, ms, e, now)
	}
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
		b.sets[set].del(e.Prefix)
	}
	b.record(Op{Verb: "delete", Set: set, Entries: es})
	return nil
}

func (b *Backend) Contains(_ context.Context, set firewall.Set, addr netip.Addr) (bool, error) {
	if !firewall.KnownSet(set) || !addr.IsValid() {
		return false, fmt.Errorf("%w: contains %q in set %q", firewall.ErrInvalid, addr, set)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	b.expire(now)
	ms := b.sets[set]
	addr = addr.Unmap()
	// One lookup per prefix length in use (at most 32 or 128).
	for bits := range ms.bits {
		if bits > addr.BitLen() {
			continue
		}
		p, err := addr.Prefix(bits)
		if err != nil {
			continue
		}
		if m, ok := ms.m[p]; ok && !m.expired(now) {
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
	now := b.now()
	b.expire(now)
	ms := b.sets[set]
	out := make([]firewall.Entry, 0, len(ms.m))
	for _, v := range ms.m {
		if v.expired(now) {
			continue
		}
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
	now := b.now()
	b.expire(now)
	st := firewall.Status{Backend: "dry-run", Mode: string(b.mode), Up: b.up}
	for _, s := range firewall.Sets {
		n4, n6 := 0, 0
		for p, m := range b.sets[s].m {
			switch {
			case m.expired(now):
			case p.Addr().Is4():
				n4++
			default:
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
