package geo

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net/netip"
	"slices"
	"strings"
)

// ErrNotAList is returned by ParseList for input that is plainly not a CIDR
// list (an HTML error page, a login portal, a JSON document).
var ErrNotAList = errors.New("geo: not a CIDR list")

// maxLineBytes bounds one line of a list; real lines are under 50 bytes.
const maxLineBytes = 4096

// ParseList reads a country list: '#' starts a comment (whole line or after
// the CIDR), blank lines are skipped, every other line must be one CIDR of
// the requested family (v6 false: IPv4 only, true: IPv6 only). One bad line
// rejects the whole list: a partly parsed list would silently drop countries'
// networks from the allow set. Host bits are kept; Normalize masks them.
func ParseList(r io.Reader, v6 bool) ([]netip.Prefix, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("geo: reading list: %w", err)
	}
	fam := "IPv4"
	if v6 {
		fam = "IPv6"
	}
	// Sized once from the line count: the lists run to tens of thousands.
	out := make([]netip.Prefix, 0, bytes.Count(data, []byte{'\n'})+1)
	for n := 1; len(data) > 0; n++ {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if len(line) > maxLineBytes {
			return nil, fmt.Errorf("%w: line %d is longer than %d bytes", ErrNotAList, n, maxLineBytes)
		}
		if i := bytes.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if line[0] == '<' || line[0] == '{' || line[0] == '[' {
			return nil, fmt.Errorf("%w: line %d starts with %q (an HTML or JSON page?)", ErrNotAList, n, clip(line))
		}
		p, ok := parsePrefix4(line)
		if !ok {
			if p, err = netip.ParsePrefix(string(line)); err != nil {
				return nil, fmt.Errorf("geo: line %d: %q is not a CIDR: the whole list is rejected", n, clip(line))
			}
		}
		if p.Addr().Zone() != "" || p.Addr().Is4() == v6 || p.Addr().Is4In6() {
			return nil, familyError{fmt.Sprintf("geo: line %d: %q is not an %s CIDR: the whole list is rejected", n, clip(line), fam)}
		}
		out = append(out, p)
	}
	return out, nil
}

// familyError is ParseList's error for a CIDR of the other family; it
// matches errWrongFamily.
type familyError struct{ msg string }

func (e familyError) Error() string        { return e.msg }
func (e familyError) Is(target error) bool { return target == errWrongFamily }

// parsePrefix4 is an allocation-free fast path for the canonical IPv4 form
// "a.b.c.d/n" (no leading zeros). Anything else reports !ok and goes to
// netip.ParsePrefix, which has the final word.
func parsePrefix4(b []byte) (netip.Prefix, bool) {
	var oct [4]byte
	i := 0
	num := func(maxv int) (int, bool) {
		start, v := i, 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' && i-start < 3 {
			v = v*10 + int(b[i]-'0')
			i++
		}
		if i == start || (b[start] == '0' && i-start > 1) || v > maxv {
			return 0, false
		}
		return v, true
	}
	for k := 0; k < 4; k++ {
		v, ok := num(255)
		if !ok {
			return netip.Prefix{}, false
		}
		oct[k] = byte(v)
		sep := byte('.')
		if k == 3 {
			sep = '/'
		}
		if i >= len(b) || b[i] != sep {
			return netip.Prefix{}, false
		}
		i++
	}
	bits, ok := num(32)
	if !ok || i != len(b) {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(netip.AddrFrom4(oct), bits), true
}

func clip(b []byte) string {
	s := string(b)
	if len(s) > 60 {
		s = s[:60] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

// u128 is an address as a 128-bit number; IPv4 lives in lo.
type u128 struct{ hi, lo uint64 }

func u128Of(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{0, uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])}
	}
	b := a.As16()
	var v u128
	for i := 0; i < 8; i++ {
		v.hi = v.hi<<8 | uint64(b[i])
		v.lo = v.lo<<8 | uint64(b[8+i])
	}
	return v
}

func (v u128) addr(is4 bool) netip.Addr {
	if is4 {
		return netip.AddrFrom4([4]byte{byte(v.lo >> 24), byte(v.lo >> 16), byte(v.lo >> 8), byte(v.lo)})
	}
	var b [16]byte
	for i := 0; i < 8; i++ {
		b[7-i] = byte(v.hi >> (8 * i))
		b[15-i] = byte(v.lo >> (8 * i))
	}
	return netip.AddrFrom16(b)
}

func (v u128) cmp(w u128) int {
	if c := cmp.Compare(v.hi, w.hi); c != 0 {
		return c
	}
	return cmp.Compare(v.lo, w.lo)
}

func (v u128) less(w u128) bool { return v.hi < w.hi || (v.hi == w.hi && v.lo < w.lo) }

// add1 returns v+1 and whether it wrapped around.
func (v u128) add1() (u128, bool) {
	lo := v.lo + 1
	hi := v.hi
	if lo == 0 {
		hi++
		if hi == 0 {
			return u128{}, true
		}
	}
	return u128{hi, lo}, false
}

func (v u128) sub(w u128) u128 {
	lo, borrow := bits.Sub64(v.lo, w.lo, 0)
	hi, _ := bits.Sub64(v.hi, w.hi, borrow)
	return u128{hi, lo}
}

func (v u128) or(w u128) u128  { return u128{v.hi | w.hi, v.lo | w.lo} }
func (v u128) and(w u128) u128 { return u128{v.hi & w.hi, v.lo & w.lo} }

// ones returns 2^k - 1.
func ones(k int) u128 {
	switch {
	case k <= 0:
		return u128{}
	case k < 64:
		return u128{0, 1<<uint(k) - 1}
	case k == 64:
		return u128{0, ^uint64(0)}
	case k < 128:
		return u128{1<<uint(k-64) - 1, ^uint64(0)}
	default:
		return u128{^uint64(0), ^uint64(0)}
	}
}

func (v u128) trailingZeros() int {
	if v.lo != 0 {
		return bits.TrailingZeros64(v.lo)
	}
	if v.hi != 0 {
		return 64 + bits.TrailingZeros64(v.hi)
	}
	return 128
}

func (v u128) bitLen() int {
	if v.hi != 0 {
		return 64 + bits.Len64(v.hi)
	}
	return bits.Len64(v.lo)
}

// span is an inclusive address range of one family.
type span struct{ first, last u128 }

func prefixSpan(p netip.Prefix) span {
	p = p.Masked()
	first := u128Of(p.Addr())
	return span{first, first.or(ones(p.Addr().BitLen() - p.Bits()))}
}

// mergeSpans sorts and merges overlapping and adjacent spans in place.
func mergeSpans(s []span) []span {
	if len(s) == 0 {
		return s
	}
	// Published lists are usually sorted already; checking is O(n).
	byFirst := func(a, b span) int { return a.first.cmp(b.first) }
	if !slices.IsSortedFunc(s, byFirst) {
		slices.SortFunc(s, byFirst)
	}
	out := s[:1]
	for _, x := range s[1:] {
		cur := &out[len(out)-1]
		next, wrapped := cur.last.add1()
		if wrapped || !next.less(x.first) { // overlapping or adjacent
			if cur.last.less(x.last) {
				cur.last = x.last
			}
			continue
		}
		out = append(out, x)
	}
	return out
}

// appendSpanPrefixes appends the fewest CIDRs that cover [first,last] exactly.
func appendSpanPrefixes(out []netip.Prefix, s span, is4 bool) []netip.Prefix {
	width := 128
	if is4 {
		width = 32
	}
	start := s.first
	for {
		k := min(start.trailingZeros(), width, s.last.sub(start).bitLen())
		// 2^k-1 may still overshoot by one power of two; step down once.
		if k > 0 && s.last.less(start.or(ones(k))) {
			k--
		}
		out = append(out, netip.PrefixFrom(start.addr(is4), width-k))
		end := start.or(ones(k))
		if end == s.last {
			return out
		}
		start, _ = end.add1()
	}
}

// Normalize masks host bits and merges overlapping and adjacent prefixes
// into the fewest CIDRs covering exactly the same addresses: IPv4 first, then
// IPv6, each sorted. The input is not modified. IPv4-mapped IPv6 prefixes are
// kept as IPv6.
func Normalize(ps []netip.Prefix) []netip.Prefix {
	v4 := make([]span, 0, len(ps))
	var v6 []span
	for _, p := range ps {
		if !p.IsValid() {
			continue
		}
		if p.Addr().Is4() {
			v4 = append(v4, prefixSpan(p))
		} else {
			v6 = append(v6, prefixSpan(netip.PrefixFrom(p.Addr().WithZone(""), p.Bits())))
		}
	}
	v4, v6 = mergeSpans(v4), mergeSpans(v6)
	out := make([]netip.Prefix, 0, len(v4)+len(v6))
	for _, s := range v4 {
		out = appendSpanPrefixes(out, s, true)
	}
	for _, s := range v6 {
		out = appendSpanPrefixes(out, s, false)
	}
	return out
}

// diffCount counts prefixes in b not in a (added) and in a not in b
// (removed); both must be normalized (sorted, disjoint).
func diffCount(a, b []netip.Prefix) (added, removed int) {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch c := comparePrefix(a[i], b[j]); {
		case c == 0:
			i++
			j++
		case c < 0:
			removed++
			i++
		default:
			added++
			j++
		}
	}
	return added + len(b) - j, removed + len(a) - i
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}
