package geo

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"go4.org/netipx"
)

func TestParseList(t *testing.T) {
	good := "# header\n\n198.51.100.0/24\n  203.0.113.0/25   # trailing comment\n203.0.113.128/25\n"
	ps, err := ParseList(strings.NewReader(good), false)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"198.51.100.0/24", "203.0.113.0/25", "203.0.113.128/25"}
	if len(ps) != len(want) {
		t.Fatalf("got %v, want %v", ps, want)
	}
	for i, w := range want {
		if ps[i].String() != w {
			t.Errorf("entry %d = %s, want %s", i, ps[i], w)
		}
	}
	v6, err := ParseList(strings.NewReader("2001:db8::/32\n2001:db8:1::/48\n"), true)
	if err != nil || len(v6) != 2 {
		t.Fatalf("v6: %v %v", v6, err)
	}
}

func TestParseListRejectsWholeList(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		v6         bool
		want       string
	}{
		{"bad line", "198.51.100.0/24\n198.51.100.300/24\n203.0.113.0/24\n", false, "line 2"},
		{"bare address", "198.51.100.0/24\n198.51.100.7\n", false, "line 2"},
		{"v6 in v4 list", "198.51.100.0/24\n2001:db8::/32\n", false, "not an IPv4 CIDR"},
		{"v4 in v6 list", "2001:db8::/32\n198.51.100.0/24\n", true, "not an IPv6 CIDR"},
		{"mapped v4 in v6 list", "::ffff:198.51.100.0/120\n", true, "not an IPv6 CIDR"},
		{"html page", "<!DOCTYPE html>\n<html><body>rate limited</body></html>\n", false, "HTML"},
		{"html after comments", "# x\n<html>\n", false, "HTML"},
		{"json", "{\"prefixes\": []}\n", false, "JSON"},
		{"garbage", "hello world\n", false, "line 1"},
		{"truncated mid-line", "198.51.100.0/24\n203.0.11", false, "line 2"},
		{"long line", strings.Repeat("1", 5000) + "\n", false, "longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps, err := ParseList(strings.NewReader(tc.body), tc.v6)
			if err == nil {
				t.Fatalf("accepted: %v", ps)
			}
			if ps != nil {
				t.Errorf("partial result returned with error: %v", ps)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
	_, err := ParseList(strings.NewReader("<html>"), false)
	if !errors.Is(err, ErrNotAList) {
		t.Errorf("HTML error %v is not ErrNotAList", err)
	}
}

func pfx(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestNormalize(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in, out []netip.Prefix
	}{
		{"host bits", pfx("198.51.100.77/24"), pfx("198.51.100.0/24")},
		{"adjacent halves", pfx("198.51.100.128/25", "198.51.100.0/25"), pfx("198.51.100.0/24")},
		{"contained", pfx("198.51.100.0/24", "198.51.100.64/26"), pfx("198.51.100.0/24")},
		{"duplicate", pfx("203.0.113.0/24", "203.0.113.0/24"), pfx("203.0.113.0/24")},
		{"adjacent unaligned", pfx("198.51.100.0/24", "198.51.101.0/24", "198.51.102.0/24"),
			pfx("198.51.100.0/23", "198.51.102.0/24")},
		{"overlap unaligned", pfx("10.0.0.0/9", "10.64.0.0/10", "10.128.0.0/9"), pfx("10.0.0.0/8")},
		{"whole v4", pfx("0.0.0.0/1", "128.0.0.0/1"), pfx("0.0.0.0/0")},
		{"top of v4", pfx("255.255.255.255/32", "255.255.255.254/32"), pfx("255.255.255.254/31")},
		{"v6 merge", pfx("2001:db8::/33", "2001:db8:8000::/33", "2001:db8::1/128"), pfx("2001:db8::/32")},
		{"whole v6", pfx("::/1", "8000::/1"), pfx("::/0")},
		{"top of v6", pfx("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"), pfx("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128")},
		{"mixed families sorted", pfx("2001:db8::/32", "203.0.113.0/24", "198.51.100.0/24"),
			pfx("198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")},
		{"empty", nil, []netip.Prefix{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.in)
			got := Normalize(tc.in)
			if !slices.Equal(got, tc.out) {
				t.Errorf("Normalize(%v) = %v, want %v", tc.in, got, tc.out)
			}
			if !slices.Equal(in, tc.in) {
				t.Error("input modified")
			}
		})
	}
}

// netipxNormalize is the reference: netipx's IPSet yields the minimal prefixes.
func netipxNormalize(t testing.TB, ps []netip.Prefix) []netip.Prefix {
	var b netipx.IPSetBuilder
	for _, p := range ps {
		b.AddPrefix(p.Masked())
	}
	s, err := b.IPSet()
	if err != nil {
		t.Fatal(err)
	}
	return s.Prefixes()
}

func TestNormalizeMatchesNetipxRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 300; round++ {
		var ps []netip.Prefix
		for i := 0; i < 1+r.IntN(40); i++ {
			if r.IntN(2) == 0 {
				// Clustered v4 so that overlaps and adjacency are common.
				a := netip.AddrFrom4([4]byte{198, 51, byte(r.IntN(4)), byte(r.IntN(256))})
				ps = append(ps, netip.PrefixFrom(a, 20+r.IntN(13)))
			} else {
				var b [16]byte
				b[0], b[1], b[2], b[3] = 0x20, 0x01, 0x0d, 0xb8
				b[4] = byte(r.IntN(3))
				b[15] = byte(r.IntN(256))
				ps = append(ps, netip.PrefixFrom(netip.AddrFrom16(b), 30+r.IntN(99)))
			}
		}
		got, want := Normalize(ps), netipxNormalize(t, ps)
		if !slices.Equal(got, want) {
			t.Fatalf("round %d: Normalize(%v)\n got %v\nwant %v", round, ps, got, want)
		}
	}
}

func TestShippedListsParseAndNormalize(t *testing.T) {
	for _, cc := range shippedCountries {
		for _, v6 := range []bool{false, true} {
			fam := map[bool]string{false: "ipv4", true: "ipv6"}[v6]
			ps := readShipped(t, cc, v6)
			if n := shippedCount(t, cc, fam); len(ps) != n {
				t.Errorf("%s-%s: parsed %d prefixes, file has %d", cc, fam, len(ps), n)
			}
			norm := Normalize(ps)
			if !slices.Equal(norm, netipxNormalize(t, ps)) {
				t.Errorf("%s-%s: Normalize differs from netipx", cc, fam)
			}
			if len(norm) > len(ps) {
				t.Errorf("%s-%s: normalising grew the list %d → %d", cc, fam, len(ps), len(norm))
			}
			if !slices.Equal(Normalize(norm), norm) {
				t.Errorf("%s-%s: Normalize is not idempotent", cc, fam)
			}
		}
	}
	// The lists are already minimal as CIDRs (ipverse aggregates them), but
	// the README counts 14,736 adjacent pairs in US v4: as ranges they merge.
	us := readShipped(t, "us", false)
	if n := len(Normalize(us)); n != len(us) {
		t.Errorf("US v4: %d → %d prefixes; the shipped list is already minimal", len(us), n)
	}
	v4, _ := NewIndex(map[string][]netip.Prefix{"US": us}).Ranges()
	if want := len(us) - 14736; v4 != want {
		t.Errorf("US v4: %d ranges, want %d (prefixes minus adjacent pairs)", v4, want)
	}
}

func TestDiffCount(t *testing.T) {
	a := pfx("198.51.100.0/24", "203.0.113.0/25")
	b := pfx("198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
	added, removed := diffCount(a, b)
	if added != 2 || removed != 1 {
		t.Errorf("diffCount = +%d -%d, want +2 -1", added, removed)
	}
}

// TestParsePrefix4FastPath checks the allocation-free IPv4 parser against
// netip.ParsePrefix: whenever it accepts, netip must agree exactly.
func TestParsePrefix4FastPath(t *testing.T) {
	cases := []string{"1.2.3.0/24", "0.0.0.0/0", "255.255.255.255/32", "01.2.3.0/24", "1.2.3.0/33",
		"1.2.3.0/024", "256.1.1.1/8", "1.2.3/24", "1.2.3.4", "1.2.3.4/", "1.2.3.4/8x", "1..2.3/8", "1.2.3.4/00",
		"1.2.3.4/0", "1.2.3.4 /8", "1.2.3.4/ 8", "1234.1.1.1/8", "1.2.3.4/-1"}
	r := rand.New(rand.NewPCG(5, 6))
	const alphabet = "0123456789./"
	for i := 0; i < 200000; i++ {
		b := make([]byte, 7+r.IntN(12))
		for j := range b {
			b[j] = alphabet[r.IntN(len(alphabet))]
		}
		cases = append(cases, string(b))
	}
	accepted := 0
	for _, c := range cases {
		got, ok := parsePrefix4([]byte(c))
		want, err := netip.ParsePrefix(c)
		if ok {
			accepted++
			if err != nil || got != want {
				t.Fatalf("parsePrefix4(%q) = %v, netip says %v, %v", c, got, want, err)
			}
		}
	}
	if accepted < 3 {
		t.Fatalf("fast path accepted only %d inputs", accepted)
	}
}

// FuzzParseList: never panics; whatever is accepted normalises to the same
// address set as netipx computes, and survives a print/parse round trip.
func FuzzParseList(f *testing.F) {
	f.Add([]byte("# c\n198.51.100.0/24\n198.51.101.0/24 # x\n"), false)
	f.Add([]byte("2001:db8::/32\n2001:db8:8000::/33\n"), true)
	f.Add([]byte("<html>\n"), false)
	f.Add([]byte("1.2.3.4/33\n"), false)
	f.Fuzz(func(t *testing.T, data []byte, v6 bool) {
		ps, err := ParseList(bytes.NewReader(data), v6)
		if err != nil {
			return
		}
		norm := Normalize(ps)
		if !slices.Equal(norm, netipxNormalize(t, ps)) {
			t.Fatalf("Normalize(%v) = %v, netipx disagrees", ps, norm)
		}
		var b strings.Builder
		for _, p := range norm {
			b.WriteString(p.String() + "\n")
		}
		again, err := ParseList(strings.NewReader(b.String()), v6)
		if err != nil || !slices.Equal(again, norm) {
			t.Fatalf("round trip of %v: %v, %v", norm, again, err)
		}
	})
}
