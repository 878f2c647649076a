package iptables

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sipsentry/sipsentry/firewall"
)

var _ firewall.Verifier = (*Backend)(nil)

// goldenRules are a family's rules as last seen right, as netlink
// fingerprints: the chain's rules in order, sipsentry's INPUT jumps sorted.
type goldenRules struct {
	chain, jumps [][32]byte
	// execOnly: nf_tables does not hold the rules (iptables-legacy), so
	// every check reads them with `iptables -S`.
	execOnly bool
}

// confirmMax: when at most this many entries differ, each difference is
// confirmed (a kernel test per missing entry, a second pass over the
// desired entries for extra ones) so that a ban added or lifted during the
// check is not reported as drift.
const confirmMax = 256

// Verify compares the kernel with want and what Up installs, and repairs
// the difference when asked; see firewall.Verifier. Set members and the
// rules are read by netlink; `iptables -S` runs only when the rules'
// fingerprints differ from the last good ones (or on a first check), to
// name and repair the difference in iptables' own words.
func (b *Backend) Verify(ctx context.Context, want firewall.Desired, repair bool) (firewall.Drift, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	b.verifyMu.Lock()
	defer b.verifyMu.Unlock()
	var d firewall.Drift
	if b.vconn == nil {
		return d, fmt.Errorf("iptables: verify on a closed backend")
	}
	for _, set := range firewall.Sets {
		if err := b.verifySet(ctx, &d, set, want, repair); err != nil {
			return d, err
		}
	}
	// Rules that would name a set that is not sipsentry's are not made
	// (Up refuses the same way).
	for _, o := range d.Objects {
		if errors.Is(o.Refused, firewall.ErrNotOurs) {
			repair = false
		}
	}
	for _, fam := range families {
		if err := b.verifyRules(ctx, &d, fam, repair); err != nil {
			return d, err
		}
	}
	if !d.Clean() {
		b.log.Warn("iptables: kernel differs from the desired state", "drift", d.String(), "repair", repair)
	}
	return d, nil
}

func objectName(set firewall.Set, fam string) string { return string(set) + suffix(fam) }

// normalize is firewall.Validate's address part without its allocations
// (Verify meets every desired entry at every check).
func normalize(set firewall.Set, p netip.Prefix) (netip.Prefix, bool) {
	if !p.IsValid() || p.Addr().Zone() != "" {
		return p, false
	}
	a := p.Addr()
	if a.Is4In6() {
		if p.Bits() < 96 {
			return p, false
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	if p.Bits() == 0 || ((set == firewall.SetBan || set == firewall.SetProbation) && p.Bits() != p.Addr().BitLen()) {
		return p, false
	}
	if p.Bits() != p.Addr().BitLen() {
		p = p.Masked()
	}
	return p, true
}

// wantSeconds is a desired entry's time left as the kernel would hold it
// (0: permanent).
func wantSeconds(e firewall.Entry) uint32 {
	if e.Timeout <= 0 {
		return 0
	}
	return timeoutSeconds(e.Timeout)
}

type famDiff struct {
	missing, changed []firewall.Entry
	extra            []netip.Prefix
	invalid          int
}

// verifyBufs are the slices a check fills, kept from one check to the
// next (100k members are a few MB).
type verifyBufs struct {
	kern     map[string]*kernelSet // by kernel set name
	want4    []member4
	want6    []member6
	scratch4 []member4
}

// keepMembers bounds what verifyBufs keeps between checks: reusing up to
// 64k members' slices spares a check its allocations, but a million bans'
// copies (the kernel's and the desired, ~50 MB) held for the 10 s between
// checks would be most of the daemon's memory under a flood.
const keepMembers = 1 << 16

func (vb *verifyBufs) trim() {
	for name, k := range vb.kern {
		if cap(k.m4) > keepMembers || cap(k.m6) > keepMembers {
			delete(vb.kern, name)
		}
	}
	if cap(vb.want4) > keepMembers {
		vb.want4 = nil
	}
	if cap(vb.want6) > keepMembers {
		vb.want6 = nil
	}
	if cap(vb.scratch4) > keepMembers {
		vb.scratch4 = nil
	}
}

func (b *Backend) verifySet(ctx context.Context, d *firewall.Drift, set firewall.Set, want firewall.Desired, repair bool) error {
	vb := &b.vbufs
	if vb.kern == nil {
		vb.kern = map[string]*kernelSet{}
	}
	defer vb.trim()
	// The kernel first: an entry added after this read is in the desired
	// state by the time it is iterated, so at worst it is re-added.
	// The kernel does a dump's work (~0.5 µs a member) in the reading
	// thread: a nice 19 one, so that a check never takes a core from the
	// ban path.
	ks := map[string]*kernelSet{}
	var err error
	lowPriority(func() {
		for _, fam := range families {
			s := b.spec(set, fam)
			var k kernelSet
			if k, err = b.vconn.dumpSet(s.name, vb.kern[s.name]); err != nil {
				return
			}
			vb.kern[s.name] = &k
			ks[fam] = &k
		}
	})
	if err != nil {
		return err
	}
	refused := map[string]error{}
	for _, fam := range families {
		if k := ks[fam]; k.exists {
			if err := k.header.matches(b.spec(set, fam)); err != nil {
				refused[fam] = err
			}
		}
	}
	diff := map[string]*famDiff{"inet": {}, "inet6": {}}
	want4, want6 := vb.want4[:0], vb.want6[:0]
	for e := range want.Entries(set) {
		p, ok := normalize(set, e.Prefix)
		if !ok {
			diff[famOf(p)].invalid++
			continue
		}
		if p.Addr().Is4() {
			want4 = append(want4, member4{k: key4(p), t: wantSeconds(e)})
		} else {
			want6 = append(want6, member6{k: keyOf(p), t: wantSeconds(e)})
		}
	}
	vb.want4, vb.want6 = want4, want6
	slack := int64(firewall.TimeoutSlack / time.Second)
	timeouts := b.spec(set, "inet").timeout
	radixSort4(ks["inet"].m4, &vb.scratch4)
	radixSort4(want4, &vb.scratch4)
	sortMembers6(ks["inet6"].m6)
	sortMembers6(want6)
	miss4, extra4, chg4 := diffSorted(ks["inet"].m4, want4, cmpMember4, timeouts, slack)
	miss6, extra6, chg6 := diffSorted(ks["inet6"].m6, want6, cmpMember6, timeouts, slack)
	for _, m := range extra4 {
		diff["inet"].extra = append(diff["inet"].extra, prefix4(m.k))
	}
	for _, m := range extra6 {
		diff["inet6"].extra = append(diff["inet6"].extra, m.k.prefix(false))
	}
	if len(miss4)+len(chg4)+len(miss6)+len(chg6) > 0 {
		// The entries themselves (comments, time left now), from a second
		// pass over the desired state: only when something differs.
		// After a flush every desired entry of the family is missing: no
		// lookups then.
		all4, all6 := len(miss4) == len(want4), len(miss6) == len(want6)
		need := make(map[netip.Prefix]bool)
		isChanged := map[netip.Prefix]bool{}
		if !all4 {
			for _, m := range miss4 {
				need[prefix4(m.k)] = true
			}
		}
		if !all6 {
			for _, m := range miss6 {
				need[m.k.prefix(false)] = true
			}
		}
		for _, m := range chg4 {
			need[prefix4(m.k)], isChanged[prefix4(m.k)] = true, true
		}
		for _, m := range chg6 {
			need[m.k.prefix(false)], isChanged[m.k.prefix(false)] = true, true
		}
		for e := range want.Entries(set) {
			p, ok := normalize(set, e.Prefix)
			if !ok {
				continue
			}
			if is4 := p.Addr().Is4(); !(is4 && all4) && !(!is4 && all6) && !need[p] {
				continue
			}
			delete(need, p)
			e.Prefix = p
			fd := diff[famOf(p)]
			if isChanged[p] {
				fd.changed = append(fd.changed, e)
			} else {
				fd.missing = append(fd.missing, e)
			}
		}
	}
	b.confirm(set, want, diff)
	for _, fam := range families {
		fd, k, s := diff[fam], ks[fam], b.spec(set, fam)
		if k.exists && refused[fam] == nil && len(fd.missing)+len(fd.extra)+len(fd.changed) == 0 {
			continue
		}
		o := firewall.ObjectDrift{Object: objectName(set, fam), Missing: len(fd.missing), Extra: len(fd.extra), Changed: len(fd.changed)}
		var words []string
		if !k.exists {
			words = append(words, "set "+s.name+" missing")
		}
		words = append(words, examples("missing", fd.missing, nil)...)
		words = append(words, examples("extra", nil, fd.extra)...)
		words = append(words, examples("other timeout", fd.changed, nil)...)
		o.Detail = strings.Join(words, "; ")
		if err := refused[fam]; err != nil {
			o.Refused = err
			d.Objects = append(d.Objects, o)
			continue
		}
		if repair {
			if err := b.repairSet(ctx, set, s, k.exists, fd); err != nil {
				o.Refused = err
			} else {
				o.Repaired = true
			}
		}
		d.Objects = append(d.Objects, o)
	}
	return nil
}

func examples(what string, es []firewall.Entry, ps []netip.Prefix) []string {
	for _, e := range es {
		ps = append(ps, e.Prefix)
		if len(ps) == 3 {
			break
		}
	}
	if len(ps) == 0 {
		return nil
	}
	slices.SortFunc(ps, func(x, y netip.Prefix) int { return x.Addr().Compare(y.Addr()) })
	var s []string
	for i, p := range ps {
		if i == 3 {
			s = append(s, "…")
			break
		}
		s = append(s, p.String())
	}
	return []string{what + " " + strings.Join(s, " ")}
}

// confirm drops the differences that a change during the check explains.
func (b *Backend) confirm(set firewall.Set, want firewall.Desired, diff map[string]*famDiff) {
	extra := map[netip.Prefix]bool{}
	for _, fam := range families {
		if n := len(diff[fam].extra); n > 0 && n <= confirmMax {
			for _, p := range diff[fam].extra {
				extra[p] = true
			}
		}
	}
	if len(extra) > 0 {
		for e := range want.Entries(set) {
			if p, ok := normalize(set, e.Prefix); ok && extra[p] {
				delete(extra, p)
			}
		}
		for _, fam := range families {
			if n := len(diff[fam].extra); n > 0 && n <= confirmMax {
				diff[fam].extra = slices.DeleteFunc(diff[fam].extra, func(p netip.Prefix) bool { return !extra[p] })
			}
		}
	}
	for _, fam := range families {
		fd := diff[fam]
		if n := len(fd.missing); n == 0 || n > confirmMax {
			continue
		}
		s := b.spec(set, fam)
		fd.missing = slices.DeleteFunc(fd.missing, func(e firewall.Entry) bool {
			ne := &netlink.IPSetEntry{IP: e.Prefix.Addr().AsSlice()}
			if s.typ == "hash:net" {
				ne.CIDR = uint8(e.Prefix.Bits())
			}
			b.nlMu.Lock()
			in, err := b.nl.IpsetTest(s.name, ne)
			b.nlMu.Unlock()
			return err == nil && in
		})
	}
}

// repairSet re-creates a missing set, adds the missing and changed entries
// with their time left and deletes the extra ones, by netlink batches.
func (b *Backend) repairSet(ctx context.Context, set firewall.Set, s setSpec, exists bool, fd *famDiff) error {
	m := b.setMu[set]
	m.Lock()
	defer m.Unlock()
	if !exists {
		if err := b.restore(ctx, s.createLine(s.name, len(fd.missing), s.maxElem)); err != nil {
			return fmt.Errorf("iptables: re-create %s: %w", s.name, err)
		}
	}
	add := b.vconn.newBatch(nlCmdAdd)
	for _, list := range [][]firewall.Entry{fd.missing, fd.changed} {
		for _, e := range list {
			v, err := firewall.Validate(set, e)
			if err != nil {
				continue // not ours to send; the desired state is the caller's
			}
			if err := add.put(s, v); err != nil {
				return err
			}
		}
	}
	if err := add.flush(); err != nil {
		return err
	}
	del := b.vconn.newBatch(nlCmdDel)
	for _, p := range fd.extra {
		if err := del.put(s, firewall.Entry{Prefix: p}); err != nil {
			return err
		}
	}
	return del.flush()
}

// ---- rules

func (b *Backend) verifyRules(ctx context.Context, d *firewall.Drift, fam string, repair bool) error {
	g := b.golden[fam]
	if g != nil && !g.execOnly {
		var rules, input []ruleFP
		var exists bool
		var err error
		lowPriority(func() {
			if rules, exists, err = b.vconn.dumpRules(fam, b.cfg.Chain); err == nil {
				input, _, err = b.vconn.dumpRules(fam, "INPUT")
			}
		})
		if err != nil {
			return err
		}
		if exists && slices.Equal(sums(rules), g.chain) && slices.Equal(ourJumps(input), g.jumps) {
			return nil
		}
	}
	// A first check, or the fingerprints differ: read the rules as text.
	return b.checkRulesText(ctx, d, fam, repair)
}

// checkRulesText compares the chain and the jumps with what Up installs,
// in `iptables -S` lines, repairs them when asked, and records the
// fingerprints of rules found (or made) right.
func (b *Backend) checkRulesText(ctx context.Context, d *firewall.Drift, fam string, repair bool) error {
	st, err := b.chainState(fam)
	if err != nil {
		return err
	}
	want := b.chainRules(fam)
	chainOK := st.exists && st.ours && slices.Equal(st.rules, lines(want))
	if !chainOK {
		o := firewall.ObjectDrift{Object: "chain" + suffix(fam)}
		o.Missing, o.Extra = lineDiff(lines(want), st.rules)
		switch {
		case !st.exists:
			o.Detail = "chain " + b.cfg.Chain + " missing"
		case !st.ours && len(st.rules) == 0:
			o.Detail = "chain " + b.cfg.Chain + " empty"
		case !st.ours:
			o.Detail = "marker rule missing"
		default:
			o.Detail = "rules differ"
		}
		if err := b.chainNotOurs(fam, st); err != nil {
			o.Refused = err
			d.Objects = append(d.Objects, o)
			return nil // the jumps lead to a chain that is not ours: leave them
		}
		if repair {
			if err := b.upChain(fam, st); err != nil {
				o.Refused = err
			} else {
				o.Repaired, chainOK = true, true
			}
		}
		d.Objects = append(d.Objects, o)
	}
	cur, err := b.inputRules(fam)
	if err != nil {
		return err
	}
	var ours []string
	for _, l := range cur {
		if b.isOurJump(l) {
			ours = append(ours, l)
		}
	}
	wantJ := lines(b.jumpRules())
	jumpsOK := sameSet(ours, wantJ)
	if !jumpsOK {
		o := firewall.ObjectDrift{Object: "jump" + suffix(fam)}
		o.Missing, o.Extra = lineDiff(wantJ, ours)
		o.Detail = "INPUT jumps to " + b.cfg.Chain + " differ"
		if repair && chainOK {
			if err := b.upJumps(fam); err != nil {
				o.Refused = err
			} else {
				o.Repaired, jumpsOK = true, true
			}
		}
		d.Objects = append(d.Objects, o)
	}
	if chainOK && jumpsOK {
		b.recordGolden(fam)
	}
	return nil
}

// recordGolden stores the fingerprints of the family's rules, which the
// caller has just seen (or made) right. Called with verifyMu held.
func (b *Backend) recordGolden(fam string) {
	g := &goldenRules{}
	rules, exists, err := b.vconn.dumpRules(fam, b.cfg.Chain)
	input, _, err2 := b.vconn.dumpRules(fam, "INPUT")
	if err != nil || err2 != nil || !exists || len(rules) != len(b.chainRules(fam)) {
		g.execOnly = true // not nf_tables: check the text every time
	} else {
		g.chain, g.jumps = sums(rules), ourJumps(input)
	}
	b.golden[fam] = g
}

func lines(rs []rule) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.line
	}
	return out
}

// lineDiff counts the wanted lines absent from have and the lines of have
// not wanted.
func lineDiff(want, have []string) (missing, extra int) {
	w := map[string]int{}
	for _, l := range want {
		w[l]++
	}
	for _, l := range have {
		if w[l] > 0 {
			w[l]--
		} else {
			extra++
		}
	}
	for _, n := range w {
		missing += n
	}
	return missing, extra
}

func sameSet(a, b []string) bool {
	m, e := lineDiff(a, b)
	return m == 0 && e == 0
}
