package engine

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/firewall/dryrun"
)

// BenchmarkEntriesBan100k: one pass over Entries(SetBan) with 100k enforced
// bans (what the verifier does every verify_interval), against the dry-run
// backend's List of the same 100k entries in the same run (an in-memory
// copy of a set: the baseline). Report the ratio of ns/op and B/op.
func BenchmarkEntriesBan100k(b *testing.B) {
	const n = 100_000
	clock := newClock()
	fw := dryrun.New(dryrun.Options{Mode: "enforce", MaxElem: 2 * n, Now: clock.Now})
	o := testConfig()
	o.BanMaxElem = 2 * n
	e, err := New(o, Deps{Firewall: fw, Geo: testGeo, Resolver: noDNS{}, HostAddrs: []netip.Addr{}, Now: clock.Now})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	reasons := []string{"5 failures in 10m0s", "geo strict: failure from outside the allowed countries", "user enumeration: 3 accounts tried"}
	seen := map[netip.Addr]bool{}
	for i := 0; i < n; {
		a := randomSource(rng)
		if seen[a] {
			continue
		}
		seen[a] = true
		if _, err := e.banWith(bg, banRequest{addr: a, reason: reasons[i%3], now: clock.Now(), start: time.Now()}); err == nil {
			i++
		}
	}
	if got := e.Snapshot().ActiveBans; got != n {
		b.Fatalf("%d bans", got)
	}
	b.Run("entries", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c := 0
			for en := range e.Entries(firewall.SetBan) {
				if en.Timeout > 0 {
					c++
				}
			}
			if c != n {
				b.Fatalf("%d entries", c)
			}
		}
	})
	b.Run("baseline_dryrun_list", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			es, _ := fw.List(bg, firewall.SetBan)
			c := 0
			for _, en := range es {
				if en.Timeout > 0 {
					c++
				}
			}
			if c != n {
				b.Fatalf("%d entries", c)
			}
		}
	})
}
