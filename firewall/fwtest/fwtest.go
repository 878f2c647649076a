// Package fwtest is the test suite every firewall backend runs: the
// in-memory dry-run one, the ipset+iptables one in a network namespace and
// later nftables. It only calls the firewall.Backend interface; it must
// never know which backend it tests.
package fwtest

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/firewall"
)

// Suite runs the shared tests. newBackend returns a fresh backend whose
// sets and rules do not exist yet (Up not called); it registers its own
// cleanup.
func Suite(t *testing.T, newBackend func(t *testing.T) firewall.Backend) {
	tests := []struct {
		name string
		f    func(t *testing.T, b firewall.Backend)
	}{
		{"UpIdempotent", testUpIdempotent},
		{"AddContainsDelete", testAddContainsDelete},
		{"AllowPrefixes", testAllowPrefixes},
		{"ListTimeoutsComments", testListTimeouts},
		{"AddRefreshes", testAddRefreshes},
		{"Expiry", testExpiry},
		{"Replace", testReplace},
		{"BulkAdd", testBulkAdd},
		{"Invalid", testInvalid},
		{"DownUp", testDownUp},
		{"Status", testStatus},
		{"DropFlows", testDropFlows},
		{"Verify", testVerify},
		{"BulkLoad", testBulkLoad},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBackend(t)
			if err := b.Up(context.Background()); err != nil {
				t.Fatalf("Up: %v", err)
			}
			tc.f(t, b)
		})
	}
}

var ctx = context.Background()

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }
func host(s string) netip.Prefix {
	a := addr(s)
	return netip.PrefixFrom(a, a.BitLen())
}

func mustContain(t *testing.T, b firewall.Backend, set firewall.Set, a string, want bool) {
	t.Helper()
	got, err := b.Contains(ctx, set, addr(a))
	if err != nil {
		t.Fatalf("Contains(%s, %s): %v", set, a, err)
	}
	if got != want {
		t.Fatalf("Contains(%s, %s) = %v, want %v", set, a, got, want)
	}
}

func mustList(t *testing.T, b firewall.Backend, set firewall.Set) []firewall.Entry {
	t.Helper()
	es, err := b.List(ctx, set)
	if err != nil {
		t.Fatalf("List(%s): %v", set, err)
	}
	return es
}

func prefixes(es []firewall.Entry) []netip.Prefix {
	out := make([]netip.Prefix, len(es))
	for i, e := range es {
		out[i] = e.Prefix
	}
	slices.SortFunc(out, comparePrefix)
	return out
}

func comparePrefix(x, y netip.Prefix) int {
	if c := x.Addr().Compare(y.Addr()); c != 0 {
		return c
	}
	return x.Bits() - y.Bits()
}

func specs(st firewall.Status) []string {
	var out []string
	for _, r := range st.Rules {
		out = append(out, r.Family+" "+r.Spec)
	}
	return out
}

func testUpIdempotent(t *testing.T, b firewall.Backend) {
	if err := b.Add(ctx, firewall.SetBan, firewall.Entry{Prefix: host("198.51.100.7"), Timeout: time.Hour}); err != nil {
		t.Fatal(err)
	}
	st1, err := b.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st1.Up {
		t.Fatalf("Status.Up = false after Up")
	}
	if err := b.Up(ctx); err != nil {
		t.Fatalf("second Up: %v", err)
	}
	st2, err := b.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(specs(st1), specs(st2)) {
		t.Fatalf("rules changed by a second Up:\n%q\n%q", specs(st1), specs(st2))
	}
	// Up keeps the sets' content.
	mustContain(t, b, firewall.SetBan, "198.51.100.7", true)
}

func testAddContainsDelete(t *testing.T, b firewall.Backend) {
	for _, a := range []string{"198.51.100.7", "2001:db8::7"} {
		if err := b.Add(ctx, firewall.SetBan, firewall.Entry{Prefix: host(a), Timeout: time.Hour, Comment: "test"}); err != nil {
			t.Fatalf("Add %s: %v", a, err)
		}
		mustContain(t, b, firewall.SetBan, a, true)
	}
	mustContain(t, b, firewall.SetBan, "198.51.100.8", false)
	mustContain(t, b, firewall.SetBan, "2001:db8::8", false)
	mustContain(t, b, firewall.SetAllow, "198.51.100.7", false)
	// An IPv4-mapped address is its IPv4 address.
	mustContain(t, b, firewall.SetBan, "::ffff:198.51.100.7", true)
	for _, a := range []string{"198.51.100.7", "2001:db8::7"} {
		if err := b.Delete(ctx, firewall.SetBan, host(a)); err != nil {
			t.Fatalf("Delete %s: %v", a, err)
		}
		mustContain(t, b, firewall.SetBan, a, false)
		if err := b.Delete(ctx, firewall.SetBan, host(a)); err != nil {
			t.Fatalf("Delete of an absent entry: %v, want nil", err)
		}
	}
}

func testAllowPrefixes(t *testing.T, b firewall.Backend) {
	es := []firewall.Entry{
		{Prefix: pfx("203.0.113.0/24"), Comment: "push"},
		{Prefix: pfx("2001:db8:5::/48"), Timeout: time.Hour},
	}
	if err := b.Add(ctx, firewall.SetAllow, es...); err != nil {
		t.Fatal(err)
	}
	mustContain(t, b, firewall.SetAllow, "203.0.113.99", true)
	mustContain(t, b, firewall.SetAllow, "203.0.114.1", false)
	mustContain(t, b, firewall.SetAllow, "2001:db8:5:1::9", true)
	mustContain(t, b, firewall.SetAllow, "2001:db8:6::1", false)
	// Host bits are masked: 198.51.100.77/24 is 198.51.100.0/24.
	if err := b.Add(ctx, firewall.SetAllowCountry, firewall.Entry{Prefix: netip.PrefixFrom(addr("198.51.100.77"), 24)}); err != nil {
		t.Fatal(err)
	}
	got := prefixes(mustList(t, b, firewall.SetAllowCountry))
	if !slices.Equal(got, []netip.Prefix{pfx("198.51.100.0/24")}) {
		t.Fatalf("allow-cc = %v, want [198.51.100.0/24]", got)
	}
}

func testListTimeouts(t *testing.T, b firewall.Backend) {
	es := []firewall.Entry{
		{Prefix: host("198.51.100.1"), Timeout: time.Hour, Comment: "5 failed auths"},
		{Prefix: host("198.51.100.2")},
		{Prefix: host("2001:db8::2"), Timeout: 2 * time.Hour, Comment: "scanner"},
	}
	if err := b.Add(ctx, firewall.SetBan, es...); err != nil {
		t.Fatal(err)
	}
	got := mustList(t, b, firewall.SetBan)
	if len(got) != 3 {
		t.Fatalf("List = %v, want 3 entries", got)
	}
	byP := map[netip.Prefix]firewall.Entry{}
	for _, e := range got {
		byP[e.Prefix] = e
	}
	for _, want := range es {
		e, ok := byP[want.Prefix]
		if !ok {
			t.Fatalf("List lacks %s: %v", want.Prefix, got)
		}
		if e.Comment != want.Comment {
			t.Errorf("%s comment = %q, want %q", want.Prefix, e.Comment, want.Comment)
		}
		if want.Timeout == 0 {
			if e.Timeout != 0 {
				t.Errorf("%s timeout = %s, want permanent (0)", want.Prefix, e.Timeout)
			}
			continue
		}
		// Remaining time: at most the timeout, and not much less (the test
		// takes seconds, not minutes).
		if e.Timeout > want.Timeout || e.Timeout < want.Timeout-time.Minute {
			t.Errorf("%s remaining timeout = %s, want within a minute below %s", want.Prefix, e.Timeout, want.Timeout)
		}
	}
}

func testAddRefreshes(t *testing.T, b firewall.Backend) {
	p := host("198.51.100.3")
	if err := b.Add(ctx, firewall.SetBan, firewall.Entry{Prefix: p, Timeout: time.Minute, Comment: "first"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(ctx, firewall.SetBan, firewall.Entry{Prefix: p, Timeout: 3 * time.Hour, Comment: "second"}); err != nil {
		t.Fatalf("Add of a present entry: %v", err)
	}
	got := mustList(t, b, firewall.SetBan)
	if len(got) != 1 || got[0].Comment != "second" || got[0].Timeout <= time.Hour {
		t.Fatalf("after refresh List = %+v, want one entry with comment \"second\" and ~3h left", got)
	}
}

func testExpiry(t *testing.T, b firewall.Backend) {
	if err := b.Add(ctx, firewall.SetBan, firewall.Entry{Prefix: host("198.51.100.4"), Timeout: time.Second}); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(ctx, firewall.SetBan, firewall.Entry{Prefix: host("198.51.100.5")}); err != nil {
		t.Fatal(err)
	}
	// Not a speed assertion: wait as long as it takes, up to a generous bound.
	deadline := time.Now().Add(15 * time.Second)
	for {
		in, err := b.Contains(ctx, firewall.SetBan, addr("198.51.100.4"))
		if err != nil {
			t.Fatal(err)
		}
		if !in {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("entry with a 1s timeout still present after 15s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	mustContain(t, b, firewall.SetBan, "198.51.100.5", true)
	if got := prefixes(mustList(t, b, firewall.SetBan)); !slices.Equal(got, []netip.Prefix{host("198.51.100.5")}) {
		t.Fatalf("after expiry List = %v, want only the permanent entry", got)
	}
}

func entries(ps ...string) []firewall.Entry {
	out := make([]firewall.Entry, len(ps))
	for i, p := range ps {
		out[i] = firewall.Entry{Prefix: pfx(p), Comment: "cc"}
	}
	return out
}

func testReplace(t *testing.T, b firewall.Backend) {
	a := entries("198.51.100.0/24", "203.0.113.0/25", "2001:db8:1::/48")
	if err := b.Replace(ctx, firewall.SetAllowCountry, a); err != nil {
		t.Fatal(err)
	}
	if got, want := prefixes(mustList(t, b, firewall.SetAllowCountry)), prefixes(a); !slices.Equal(got, want) {
		t.Fatalf("after Replace(A) = %v, want %v", got, want)
	}
	bb := entries("203.0.113.128/25", "2001:db8:2::/48")
	if err := b.Replace(ctx, firewall.SetAllowCountry, bb); err != nil {
		t.Fatal(err)
	}
	if got, want := prefixes(mustList(t, b, firewall.SetAllowCountry)), prefixes(bb); !slices.Equal(got, want) {
		t.Fatalf("after Replace(B) = %v, want %v", got, want)
	}
	mustContain(t, b, firewall.SetAllowCountry, "198.51.100.1", false)
	mustContain(t, b, firewall.SetAllowCountry, "203.0.113.200", true)
	mustContain(t, b, firewall.SetAllowCountry, "2001:db8:1::1", false)
	mustContain(t, b, firewall.SetAllowCountry, "2001:db8:2::1", true)
	// Replace with nothing empties both families; bans are not touched.
	if err := b.Add(ctx, firewall.SetBan, firewall.Entry{Prefix: host("198.51.100.9")}); err != nil {
		t.Fatal(err)
	}
	if err := b.Replace(ctx, firewall.SetAllowCountry, nil); err != nil {
		t.Fatal(err)
	}
	if got := mustList(t, b, firewall.SetAllowCountry); len(got) != 0 {
		t.Fatalf("after Replace(nil) = %v, want empty", got)
	}
	mustContain(t, b, firewall.SetBan, "198.51.100.9", true)
	// Timeouts survive a Replace of the ban set (the engine restores bans).
	if err := b.Replace(ctx, firewall.SetBan, []firewall.Entry{{Prefix: host("198.51.100.10"), Timeout: time.Hour, Comment: "restored"}}); err != nil {
		t.Fatal(err)
	}
	got := mustList(t, b, firewall.SetBan)
	if len(got) != 1 || got[0].Prefix != host("198.51.100.10") || got[0].Timeout <= 59*time.Minute || got[0].Comment != "restored" {
		t.Fatalf("ban set after Replace = %+v", got)
	}
}

func testBulkAdd(t *testing.T, b firewall.Backend) {
	var es []firewall.Entry
	base := addr("198.18.0.0")
	a := base
	for range 1000 {
		es = append(es, firewall.Entry{Prefix: netip.PrefixFrom(a, 32), Timeout: time.Hour, Comment: "bulk"})
		a = a.Next()
	}
	if err := b.Add(ctx, firewall.SetBan, es...); err != nil {
		t.Fatal(err)
	}
	if got := mustList(t, b, firewall.SetBan); len(got) != 1000 {
		t.Fatalf("after bulk Add: %d entries, want 1000", len(got))
	}
	mustContain(t, b, firewall.SetBan, "198.18.3.231", true) // the 1000th
	mustContain(t, b, firewall.SetBan, "198.18.3.232", false)
	var ps []netip.Prefix
	for _, e := range es[:500] {
		ps = append(ps, e.Prefix)
	}
	if err := b.Delete(ctx, firewall.SetBan, ps...); err != nil {
		t.Fatal(err)
	}
	if got := mustList(t, b, firewall.SetBan); len(got) != 500 {
		t.Fatalf("after bulk Delete: %d entries, want 500", len(got))
	}
	mustContain(t, b, firewall.SetBan, "198.18.0.1", false)
}

func testInvalid(t *testing.T, b firewall.Backend) {
	good := entries("198.51.100.0/24")
	if err := b.Replace(ctx, firewall.SetAllowCountry, good); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		do   func() error
	}{
		{"ban of a network", func() error {
			return b.Add(ctx, firewall.SetBan, firewall.Entry{Prefix: pfx("203.0.113.0/24")})
		}},
		{"zero prefix", func() error { return b.Add(ctx, firewall.SetAllow, firewall.Entry{}) }},
		{"whole space", func() error { return b.Add(ctx, firewall.SetAllow, firewall.Entry{Prefix: pfx("0.0.0.0/0")}) }},
		{"whole v6 space", func() error { return b.Add(ctx, firewall.SetAllow, firewall.Entry{Prefix: pfx("::/0")}) }},
		{"timeout on allow-cc", func() error {
			return b.Add(ctx, firewall.SetAllowCountry, firewall.Entry{Prefix: pfx("203.0.113.0/24"), Timeout: time.Hour})
		}},
		{"negative timeout", func() error {
			return b.Add(ctx, firewall.SetBan, firewall.Entry{Prefix: host("203.0.113.1"), Timeout: -time.Second})
		}},
		{"unknown set", func() error { return b.Add(ctx, firewall.Set("nope"), firewall.Entry{Prefix: host("203.0.113.1")}) }},
		{"one bad entry in a Replace", func() error {
			return b.Replace(ctx, firewall.SetAllowCountry, append(entries("203.0.113.0/24"), firewall.Entry{}))
		}},
		{"one bad entry in a bulk Add", func() error {
			return b.Add(ctx, firewall.SetBan, firewall.Entry{Prefix: host("203.0.113.1")}, firewall.Entry{Prefix: pfx("203.0.113.0/24")})
		}},
		{"delete of a network from ban", func() error { return b.Delete(ctx, firewall.SetBan, pfx("203.0.113.0/24")) }},
		{"contains of an invalid address", func() error {
			_, err := b.Contains(ctx, firewall.SetBan, netip.Addr{})
			return err
		}},
	}
	for _, c := range cases {
		if err := c.do(); !errors.Is(err, firewall.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", c.name, err)
		}
	}
	// Nothing changed.
	if got := prefixes(mustList(t, b, firewall.SetAllowCountry)); !slices.Equal(got, prefixes(good)) {
		t.Fatalf("allow-cc after invalid calls = %v, want %v", got, prefixes(good))
	}
	if got := mustList(t, b, firewall.SetBan); len(got) != 0 {
		t.Fatalf("ban after invalid calls = %v, want empty", got)
	}
	if got := mustList(t, b, firewall.SetAllow); len(got) != 0 {
		t.Fatalf("allow after invalid calls = %v, want empty", got)
	}
}

func testDownUp(t *testing.T, b firewall.Backend) {
	if err := b.Add(ctx, firewall.SetBan, firewall.Entry{Prefix: host("198.51.100.7")}); err != nil {
		t.Fatal(err)
	}
	if err := b.Down(ctx); err != nil {
		t.Fatalf("Down: %v", err)
	}
	st, err := b.Status(ctx)
	if err != nil {
		t.Fatalf("Status after Down: %v", err)
	}
	if st.Up {
		t.Fatalf("Status.Up = true after Down")
	}
	if err := b.Down(ctx); err != nil {
		t.Fatalf("second Down: %v", err)
	}
	if err := b.Up(ctx); err != nil {
		t.Fatalf("Up after Down: %v", err)
	}
	mustContain(t, b, firewall.SetBan, "198.51.100.7", false)
}

func testStatus(t *testing.T, b firewall.Backend) {
	es := []firewall.Entry{{Prefix: host("198.51.100.1")}, {Prefix: host("198.51.100.2")}, {Prefix: host("2001:db8::1")}}
	if err := b.Add(ctx, firewall.SetBan, es...); err != nil {
		t.Fatal(err)
	}
	st, err := b.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode != "enforce" && st.Mode != "monitor" {
		t.Errorf("Status.Mode = %q", st.Mode)
	}
	n := map[string]int{}
	seen := 0
	for _, s := range st.Sets {
		if s.Set == firewall.SetBan {
			n[s.Family] = s.Entries
			if s.MaxElem < 3 {
				t.Errorf("ban %s maxelem = %d", s.Family, s.MaxElem)
			}
		}
		seen++
	}
	if seen != 2*len(firewall.Sets) {
		t.Errorf("Status lists %d sets, want %d (each set per family)", seen, 2*len(firewall.Sets))
	}
	if n["inet"] != 2 || n["inet6"] != 1 {
		t.Fatalf("ban sizes = %v, want inet 2, inet6 1", n)
	}
	ss, ok := b.(firewall.SetStatter)
	if !ok {
		t.Fatalf("%T does not implement firewall.SetStatter", b)
	}
	infos, err := ss.SetInfos(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2*len(firewall.Sets) {
		t.Errorf("SetInfos lists %d sets, want %d", len(infos), 2*len(firewall.Sets))
	}
	for _, si := range infos {
		if si.Set == firewall.SetBan && si.Entries != n[si.Family] {
			t.Errorf("SetInfos ban %s = %d entries, Status says %d", si.Family, si.Entries, n[si.Family])
		}
		if si.Set == firewall.SetBan && si.MaxElem < 3 {
			t.Errorf("SetInfos ban %s maxelem = %d", si.Family, si.MaxElem)
		}
	}
}

func testDropFlows(t *testing.T, b firewall.Backend) {
	for _, a := range []string{"198.51.100.7", "2001:db8::7"} {
		if err := b.DropFlows(ctx, addr(a)); err != nil {
			t.Fatalf("DropFlows(%s) without flows: %v", a, err)
		}
	}
	if err := b.DropFlows(ctx, netip.Addr{}); !errors.Is(err, firewall.ErrInvalid) {
		t.Fatalf("DropFlows(invalid) = %v, want ErrInvalid", err)
	}
	if fd, ok := b.(firewall.FlowDropper); ok {
		r, l := netip.MustParseAddrPort("198.51.100.7:5062"), netip.MustParseAddrPort("198.51.100.1:5060")
		if err := fd.DropFlow(ctx, "udp", r, l); err != nil {
			t.Fatalf("DropFlow of an absent flow: %v", err)
		}
		for _, bad := range []struct {
			proto string
			r, l  netip.AddrPort
		}{
			{"sctp", r, l},
			{"udp", netip.AddrPort{}, l},
			{"udp", r, netip.MustParseAddrPort("[2001:db8::1]:5060")},
		} {
			if err := fd.DropFlow(ctx, bad.proto, bad.r, bad.l); !errors.Is(err, firewall.ErrInvalid) {
				t.Errorf("DropFlow(%s, %s, %s) = %v, want ErrInvalid", bad.proto, bad.r, bad.l, err)
			}
		}
	}
	if bd, ok := b.(firewall.BulkFlowDropper); ok {
		if err := bd.DropFlowsOf(ctx, []netip.Addr{addr("198.51.100.7"), addr("2001:db8::7")}); err != nil {
			t.Fatalf("DropFlowsOf: %v", err)
		}
		if err := bd.DropFlowsOf(ctx, []netip.Addr{{}}); !errors.Is(err, firewall.ErrInvalid) {
			t.Fatalf("DropFlowsOf(invalid) = %v, want ErrInvalid", err)
		}
	}
}

// verifier returns b as a Verifier: every backend must be one.
func verifier(t *testing.T, b firewall.Backend) firewall.Verifier {
	t.Helper()
	v, ok := b.(firewall.Verifier)
	if !ok {
		t.Fatalf("%T does not implement firewall.Verifier", b)
	}
	return v
}

func object(d firewall.Drift, name string) (firewall.ObjectDrift, bool) {
	for _, o := range d.Objects {
		if o.Object == name {
			return o, true
		}
	}
	return firewall.ObjectDrift{}, false
}

func testVerify(t *testing.T, b firewall.Backend) {
	v := verifier(t, b)
	bans := []firewall.Entry{
		{Prefix: host("198.51.100.7"), Timeout: time.Hour, Comment: "ban"},
		{Prefix: host("198.51.100.8"), Timeout: time.Hour, Comment: "ban"},
		{Prefix: host("2001:db8::7"), Timeout: 2 * time.Hour, Comment: "ban"},
	}
	allows := []firewall.Entry{{Prefix: pfx("203.0.113.0/28"), Comment: "static"}}
	cc := entries("198.51.100.0/24", "2001:db8:1::/48")
	if err := b.Add(ctx, firewall.SetBan, bans...); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(ctx, firewall.SetAllow, allows...); err != nil {
		t.Fatal(err)
	}
	if err := b.Replace(ctx, firewall.SetAllowCountry, cc); err != nil {
		t.Fatal(err)
	}
	want := firewall.DesiredSets{firewall.SetBan: bans, firewall.SetAllow: allows, firewall.SetAllowCountry: cc}
	d, err := v.Verify(ctx, want, false)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Clean() {
		t.Fatalf("Verify right after loading the desired state: %s", d)
	}

	// Drift: a ban gone, a ban nobody wants, an allow with a timeout it
	// should not have, an allowed-country prefix gone.
	if err := b.Delete(ctx, firewall.SetBan, host("198.51.100.7")); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(ctx, firewall.SetBan, firewall.Entry{Prefix: host("203.0.113.66"), Timeout: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(ctx, firewall.SetAllow, firewall.Entry{Prefix: pfx("203.0.113.0/28"), Timeout: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, firewall.SetAllowCountry, pfx("2001:db8:1::/48")); err != nil {
		t.Fatal(err)
	}
	d, err = v.Verify(ctx, want, false)
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, missing, extra, changed int, repaired bool) {
		t.Helper()
		o, ok := object(d, name)
		if !ok {
			t.Fatalf("drift lacks %s: %s", name, d)
		}
		if o.Missing != missing || o.Extra != extra || o.Changed != changed || o.Repaired != repaired {
			t.Fatalf("%s: %+v, want missing %d extra %d changed %d repaired %v", name, o, missing, extra, changed, repaired)
		}
	}
	check("ban-v4", 1, 1, 0, false)
	check("allow-v4", 0, 0, 1, false)
	check("allow-cc-v6", 1, 0, 0, false)
	if len(d.Objects) != 3 {
		t.Fatalf("drift = %s, want exactly ban-v4, allow-v4, allow-cc-v6", d)
	}
	// Without repair nothing changed.
	mustContain(t, b, firewall.SetBan, "198.51.100.7", false)
	mustContain(t, b, firewall.SetBan, "203.0.113.66", true)

	d, err = v.Verify(ctx, want, true)
	if err != nil {
		t.Fatal(err)
	}
	check("ban-v4", 1, 1, 0, true)
	check("allow-v4", 0, 0, 1, true)
	check("allow-cc-v6", 1, 0, 0, true)
	mustContain(t, b, firewall.SetBan, "198.51.100.7", true)
	mustContain(t, b, firewall.SetBan, "203.0.113.66", false)
	mustContain(t, b, firewall.SetAllowCountry, "2001:db8:1::9", true)
	for _, e := range mustList(t, b, firewall.SetBan) {
		if e.Prefix == host("198.51.100.7") && (e.Timeout > time.Hour || e.Timeout < 59*time.Minute) {
			t.Fatalf("re-added ban has %s left, want its remaining hour", e.Timeout)
		}
	}
	for _, e := range mustList(t, b, firewall.SetAllow) {
		if e.Timeout != 0 {
			t.Fatalf("allow entry after repair: %+v, want permanent", e)
		}
	}
	if d, err = v.Verify(ctx, want, false); err != nil || !d.Clean() {
		t.Fatalf("Verify after the repair: %s, %v; want clean", d, err)
	}
}

func testBulkLoad(t *testing.T, b firewall.Backend) {
	l, ok := b.(firewall.Loader)
	if !ok {
		t.Fatalf("%T does not implement firewall.Loader", b)
	}
	const n = 5000
	seq := func(yield func(firewall.Entry) bool) {
		a := addr("198.18.0.0")
		for i := range n {
			if !yield(firewall.Entry{Prefix: netip.PrefixFrom(a, 32), Timeout: time.Duration(3600+i) * time.Second, Comment: "restored"}) {
				return
			}
			a = a.Next()
		}
		// One invalid entry is skipped and counted, not sent.
		yield(firewall.Entry{Prefix: pfx("203.0.113.0/24")})
		yield(firewall.Entry{Prefix: host("2001:db8::9"), Timeout: time.Hour})
	}
	r, err := l.BulkLoad(ctx, firewall.SetBan, seq)
	if err != nil {
		t.Fatal(err)
	}
	if r.Loaded != n+1 || r.Invalid != 1 || !errors.Is(r.First, firewall.ErrInvalid) {
		t.Fatalf("BulkLoad = %+v, want %d loaded, 1 invalid", r, n+1)
	}
	got := mustList(t, b, firewall.SetBan)
	if len(got) != n+1 {
		t.Fatalf("after BulkLoad: %d entries, want %d", len(got), n+1)
	}
	mustContain(t, b, firewall.SetBan, "198.18.19.135", true) // the 5000th
	mustContain(t, b, firewall.SetBan, "2001:db8::9", true)
	for _, e := range got {
		if e.Comment != "restored" && e.Prefix != host("2001:db8::9") || e.Timeout < 59*time.Minute {
			t.Fatalf("loaded entry %+v", e)
		}
	}
	if _, err := l.BulkLoad(ctx, firewall.Set("nope"), seq); !errors.Is(err, firewall.ErrInvalid) {
		t.Fatalf("BulkLoad of an unknown set: %v, want ErrInvalid", err)
	}
}
