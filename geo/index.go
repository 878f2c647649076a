package geo

import (
	"net/netip"
	"slices"
	"sort"
)

// Index answers "which country list holds this address" for a fixed set of
// lists. It is immutable once built; swap a whole new Index to update.
//
// IPv4 is a sorted array of disjoint uint32 ranges with a 65,536-entry table
// keyed by the top 16 bits that narrows each binary search to one bucket
// (typically a handful of ranges). IPv6 is sorted disjoint 128-bit ranges
// with a plain binary search.
type Index struct {
	names []string // country codes, sorted; an entry's cc indexes this

	v4first, v4last []uint32
	v4cc            []uint16
	v4bucket        []uint32 // len 65537 when v4first is non-empty
	// v4uniform answers most lookups from one 64 KiB table: per /16, 0 =
	// mixed (search the ranges), 1 = no list holds any of it, 2+id = the
	// whole /16 is in country id. Nil when there are over 253 countries.
	v4uniform []uint8

	v6first, v6last []u128
	v6cc            []uint16

	prefixes int // normalised prefix count, both families
}

// NewIndex builds an index from country code → prefixes (any order, any
// overlap). Each country's prefixes are normalised. Where two countries'
// lists overlap — RIR delegations should not, but hand-made lists may — the
// alphabetically first code wins, so the answer is deterministic.
func NewIndex(byCountry map[string][]netip.Prefix) *Index {
	in := make(map[string]*ccSpans, len(byCountry))
	for cc, ps := range byCountry {
		c := &ccSpans{}
		for _, p := range Normalize(ps) {
			c.n++
			if p.Addr().Is4() {
				c.v4 = append(c.v4, prefixSpan(p))
			} else {
				c.v6 = append(c.v6, prefixSpan(p))
			}
		}
		in[cc] = c
	}
	return newIndexSpans(in)
}

// ccSpans is one country's address ranges (any order, may overlap within a
// family) and its normalised prefix count.
type ccSpans struct {
	v4, v6 []span
	n      int
}

// newIndexSpans builds an index from ranges, so the daemon never holds a
// country's prefixes and its ranges at once.
func newIndexSpans(byCountry map[string]*ccSpans) *Index {
	ix := &Index{}
	for cc := range byCountry {
		ix.names = append(ix.names, cc)
	}
	slices.Sort(ix.names)
	type tagged struct {
		span
		cc uint16
	}
	var n4, n6 int
	for _, c := range byCountry {
		n4, n6 = n4+len(c.v4), n6+len(c.v6)
	}
	r4, r6 := make([]tagged, 0, n4), make([]tagged, 0, n6)
	for id, cc := range ix.names {
		c := byCountry[cc]
		ix.prefixes += c.n
		for _, s := range c.v4 {
			r4 = append(r4, tagged{s, uint16(id)})
		}
		for _, s := range c.v6 {
			r6 = append(r6, tagged{s, uint16(id)})
		}
	}
	build := func(rs []tagged) []tagged {
		slices.SortFunc(rs, func(a, b tagged) int {
			if c := a.first.cmp(b.first); c != 0 {
				return c
			}
			return int(a.cc) - int(b.cc)
		})
		overlap := false
		for i := 1; i < len(rs); i++ {
			if !rs[i-1].last.less(rs[i].first) {
				overlap = true
				break
			}
		}
		if overlap {
			rs = resolveOverlaps(rs, func(t tagged) (span, uint16) { return t.span, t.cc },
				func(s span, cc uint16) tagged { return tagged{s, cc} })
		}
		// Merge adjacent ranges of the same country across prefix borders.
		out := rs[:0]
		for _, t := range rs {
			if n := len(out); n > 0 && out[n-1].cc == t.cc {
				if next, wrapped := out[n-1].last.add1(); !wrapped && next == t.first {
					out[n-1].last = t.last
					continue
				}
			}
			out = append(out, t)
		}
		return out
	}
	r4, r6 = build(r4), build(r6)

	ix.v4first = make([]uint32, len(r4))
	ix.v4last = make([]uint32, len(r4))
	ix.v4cc = make([]uint16, len(r4))
	for i, t := range r4 {
		ix.v4first[i], ix.v4last[i], ix.v4cc[i] = uint32(t.first.lo), uint32(t.last.lo), t.cc
	}
	if len(r4) > 0 {
		// v4bucket[b] = number of ranges starting before b<<16.
		ix.v4bucket = make([]uint32, 65537)
		j := 0
		for b := 0; b <= 65536; b++ {
			for j < len(r4) && uint64(ix.v4first[j]) < uint64(b)<<16 {
				j++
			}
			ix.v4bucket[b] = uint32(j)
		}
		if len(ix.names) <= 253 {
			uni := make([]uint8, 65536)
			for b := uint32(0); b < 65536; b++ {
				i0 := ix.search4(b << 16)
				switch {
				case i0 >= 0 && i0 == ix.search4(b<<16|0xffff):
					uni[b] = 2 + uint8(ix.v4cc[i0])
				case i0 < 0 && ix.v4bucket[b+1] == ix.v4bucket[b]:
					uni[b] = 1
				}
			}
			ix.v4uniform = uni
		}
	}
	ix.v6first = make([]u128, len(r6))
	ix.v6last = make([]u128, len(r6))
	ix.v6cc = make([]uint16, len(r6))
	for i, t := range r6 {
		ix.v6first[i], ix.v6last[i], ix.v6cc[i] = t.first, t.last, t.cc
	}
	return ix
}

// resolveOverlaps turns overlapping tagged ranges (sorted by first) into
// disjoint ones, the lowest tag winning. Rare path: lists normally don't
// overlap, so clarity beats speed here.
func resolveOverlaps[T any](rs []T, get func(T) (span, uint16), mk func(span, uint16) T) []T {
	type event struct {
		at    u128
		end   bool // at is one past the end (never wraps: ends at max have no event)
		cc    uint16
		order int
	}
	var ev []event
	maxcc := 0
	for _, r := range rs {
		s, cc := get(r)
		maxcc = max(maxcc, int(cc))
		ev = append(ev, event{at: s.first, cc: cc})
		if next, wrapped := s.last.add1(); !wrapped {
			ev = append(ev, event{at: next, end: true, cc: cc})
		}
	}
	sort.SliceStable(ev, func(i, j int) bool { return ev[i].at.less(ev[j].at) })
	active := make([]int, maxcc+1)
	var out []T
	for i := 0; i < len(ev); {
		at := ev[i].at
		for ; i < len(ev) && ev[i].at == at; i++ {
			if ev[i].end {
				active[ev[i].cc]--
			} else {
				active[ev[i].cc]++
			}
		}
		win := -1
		for cc, n := range active {
			if n > 0 {
				win = cc
				break
			}
		}
		if win < 0 {
			continue
		}
		last := u128{^uint64(0), ^uint64(0)}
		if i < len(ev) {
			last = ev[i].at.sub(u128{0, 1})
		}
		out = append(out, mk(span{at, last}, uint16(win)))
	}
	return out
}

// Country returns the country whose list holds a, and whether one does.
// IPv4-mapped IPv6 addresses are looked up as IPv4.
func (ix *Index) Country(a netip.Addr) (string, bool) {
	if ix == nil {
		return "", false
	}
	if a.Is4() {
		return ix.country4(a.As4())
	}
	if a.Is4In6() {
		return ix.country4(a.Unmap().As4())
	}
	if i := ix.find6(u128Of(a)); i >= 0 {
		return ix.names[ix.v6cc[i]], true
	}
	return "", false
}

// Contains reports whether any list holds a.
func (ix *Index) Contains(a netip.Addr) bool {
	_, ok := ix.Country(a)
	return ok
}

func (ix *Index) country4(b [4]byte) (string, bool) {
	ip := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	if ix.v4uniform != nil {
		switch u := ix.v4uniform[ip>>16]; u {
		case 0:
		case 1:
			return "", false
		default:
			return ix.names[u-2], true
		}
	}
	if i := ix.search4(ip); i >= 0 {
		return ix.names[ix.v4cc[i]], true
	}
	return "", false
}

func (ix *Index) search4(ip uint32) int {
	if len(ix.v4first) == 0 {
		return -1
	}
	hi := ip >> 16
	lo, n := int(ix.v4bucket[hi]), int(ix.v4bucket[hi+1])
	// Count ranges in [lo,n) whose first <= ip; the candidate is the last of them
	// (or the one before the bucket, which may cover into it).
	for lo < n {
		m := int(uint(lo+n) >> 1)
		if ix.v4first[m] <= ip {
			lo = m + 1
		} else {
			n = m
		}
	}
	k := lo - 1
	if k < 0 || ix.v4last[k] < ip {
		return -1
	}
	return k
}

func (ix *Index) find6(v u128) int {
	lo, n := 0, len(ix.v6first)
	for lo < n {
		m := int(uint(lo+n) >> 1)
		if !v.less(ix.v6first[m]) {
			lo = m + 1
		} else {
			n = m
		}
	}
	k := lo - 1
	if k < 0 || ix.v6last[k].less(v) {
		return -1
	}
	return k
}

// unionPrefixes returns the fewest prefixes covering every address the index
// holds, whatever its country: IPv4 then IPv6, each sorted (Normalize of all
// the lists' prefixes).
func (ix *Index) unionPrefixes() []netip.Prefix {
	if ix == nil {
		return nil
	}
	// Sized for the case of no two countries' ranges touching: growing by
	// doubling would allocate several times the result at start-up.
	out := make([]netip.Prefix, 0, ix.prefixes)
	var cur span
	open := false
	flush := func(is4 bool) {
		if open {
			out = appendSpanPrefixes(out, cur, is4)
		}
		open = false
	}
	add := func(s span, is4 bool) {
		if open {
			if next, wrapped := cur.last.add1(); !wrapped && next == s.first {
				cur.last = s.last
				return
			}
			flush(is4)
		}
		cur, open = s, true
	}
	for i := range ix.v4first {
		add(span{u128{0, uint64(ix.v4first[i])}, u128{0, uint64(ix.v4last[i])}}, true)
	}
	flush(true)
	for i := range ix.v6first {
		add(span{ix.v6first[i], ix.v6last[i]}, false)
	}
	flush(false)
	return out
}

// Countries returns the country codes the index was built from, sorted.
func (ix *Index) Countries() []string {
	if ix == nil {
		return nil
	}
	return slices.Clone(ix.names)
}

// Len returns the number of normalised prefixes (both families).
func (ix *Index) Len() int {
	if ix == nil {
		return 0
	}
	return ix.prefixes
}

// Ranges returns the number of disjoint IPv4 and IPv6 ranges searched.
func (ix *Index) Ranges() (v4, v6 int) {
	if ix == nil {
		return 0, 0
	}
	return len(ix.v4first), len(ix.v6first)
}

// countryID returns cc's position in names, which tags its ranges.
func (ix *Index) countryID(cc string) (uint16, bool) {
	if ix == nil {
		return 0, false
	}
	i, ok := slices.BinarySearch(ix.names, cc)
	return uint16(i), ok
}

// spansOf returns the ranges of one family tagged with country id, sorted
// (a fresh slice): a list's view of the index, so that the lists need not
// keep a second copy of their ranges.
func (ix *Index) spansOf(id uint16, v6 bool) []span {
	var out []span
	if !v6 {
		for i, cc := range ix.v4cc {
			if cc == id {
				out = append(out, span{u128{0, uint64(ix.v4first[i])}, u128{0, uint64(ix.v4last[i])}})
			}
		}
		return out
	}
	for i, cc := range ix.v6cc {
		if cc == id {
			out = append(out, span{ix.v6first[i], ix.v6last[i]})
		}
	}
	return out
}
