package dryrun

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/firewall"
)

// legacyBackend is the dry-run backend's Add as it was before it became
// O(1) per entry (kept here only as the benchmark's baseline): every Add
// walked the whole set for expired members and every operation was kept
// forever.
type legacyBackend struct {
	now  func() time.Time
	sets map[firewall.Set]map[netip.Prefix]member
	ops  []Op
}

func (b *legacyBackend) Add(_ context.Context, set firewall.Set, entries ...firewall.Entry) error {
	entries, err := firewall.ValidateAll(set, entries)
	if err != nil {
		return err
	}
	m := b.sets[set]
	now := b.now()
	for p, v := range m {
		if !v.expires.IsZero() && !now.Before(v.expires) {
			delete(m, p)
		}
	}
	for _, e := range entries {
		var exp time.Time
		if e.Timeout > 0 {
			exp = now.Add(e.Timeout)
		}
		m[e.Prefix] = member{entry: e, expires: exp}
	}
	b.ops = append(b.ops, Op{Time: now, Verb: "add", Set: set, Entries: slices.Clone(entries)})
	return nil
}

type adder interface {
	Add(context.Context, firewall.Set, ...firewall.Entry) error
}

// BenchmarkFloodAdd: one ban at a time into a ban set already holding
// `held` bans, the dry-run backend under a flood. Before (legacy) and
// after in the same run; heap-MB is what the record and sets hold after
// the adds.
//
//	go test -run '^$' -bench FloodAdd -benchtime=2000x ./firewall/dryrun/
func BenchmarkFloodAdd(b *testing.B) {
	for _, held := range []int{10000, 100000} {
		for _, impl := range []string{"legacy", "new"} {
			b.Run(fmt.Sprintf("%s/held=%d", impl, held), func(b *testing.B) {
				var fw adder
				switch impl {
				case "legacy":
					l := &legacyBackend{now: time.Now, sets: map[firewall.Set]map[netip.Prefix]member{}}
					for _, s := range firewall.Sets {
						l.sets[s] = map[netip.Prefix]member{}
					}
					fw = l
				default:
					fw = New(Options{Mode: firewall.ModeEnforce})
				}
				a := netip.MustParseAddr("100.64.0.0")
				fill := make([]firewall.Entry, held)
				for i := range fill {
					fill[i] = firewall.Entry{Prefix: netip.PrefixFrom(a, 32), Timeout: time.Hour}
					a = a.Next()
				}
				if err := fw.Add(context.Background(), firewall.SetBan, fill...); err != nil {
					b.Fatal(err)
				}
				runtime.GC()
				var m0 runtime.MemStats
				runtime.ReadMemStats(&m0)
				b.ResetTimer()
				for range b.N {
					if err := fw.Add(context.Background(), firewall.SetBan, firewall.Entry{Prefix: netip.PrefixFrom(a, 32), Timeout: time.Hour, Comment: "flood"}); err != nil {
						b.Fatal(err)
					}
					a = a.Next()
				}
				b.StopTimer()
				runtime.GC()
				var m1 runtime.MemStats
				runtime.ReadMemStats(&m1)
				b.ReportMetric(float64(m1.HeapAlloc)/(1<<20), "heap-MB")
				if nb, ok := fw.(*Backend); ok {
					b.ReportMetric(float64(len(nb.Ops())), "ops-kept")
				} else {
					b.ReportMetric(float64(len(fw.(*legacyBackend).ops)), "ops-kept")
				}
			})
		}
	}
}
