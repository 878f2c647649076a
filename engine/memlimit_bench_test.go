package engine

import (
	"context"
	"math"
	"math/rand/v2"
	"net/netip"
	"runtime/debug"
	"strconv"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/ami"
)

// BenchmarkFloodUnderMemoryLimit: what a soft memory limit below the live
// heap costs the hot path. The engine holds 50k source aggregates (the
// max_sources default, ~26 MB live) and keeps taking events from them; the
// same work runs with no limit (GOGC 100), a fixed 24 MiB limit, GOGC 25,
// and a limit of live heap + 25% + 8 MiB, interleaved. Reported: each
// setting's time per event as a ratio to no limit, and the live heap.
func BenchmarkFloodUnderMemoryLimit(b *testing.B) {
	const n = 50000
	rng := rand.New(rand.NewPCG(9, 10))
	srcs := make([]netip.Addr, n)
	for i := range srcs {
		srcs[i] = randomSource(rng)
	}
	cfg := testConfig()
	cfg.MaxSources, cfg.EnumAccounts, cfg.MaxFailures, cfg.SlowMaxFailures = n, 0, 1<<20, 0
	e, err := New(cfg, Deps{Firewall: &countingFW{}, Geo: testGeo, Resolver: noDNS{}, HostAddrs: []netip.Addr{}})
	if err != nil {
		b.Fatal(err)
	}
	evs := make([]ami.SecurityEvent, n)
	for i, a := range srcs {
		evs[i] = ev(ami.EventInvalidAccountID, "user"+strconv.Itoa(i%50), a.String(), "1-"+strconv.Itoa(i)+"@x")
	}
	round := func() time.Duration {
		t0 := time.Now()
		for i := range evs {
			e.Handle(context.Background(), evs[i])
		}
		e.Flush(context.Background())
		return time.Since(t0)
	}
	round() // fill the aggregates
	live := int64(heapAlloc())
	oldLimit := debug.SetMemoryLimit(math.MaxInt64)
	oldPct := debug.SetGCPercent(100)
	defer func() { debug.SetMemoryLimit(oldLimit); debug.SetGCPercent(oldPct) }()
	type gcSetting struct {
		name  string
		pct   int
		limit int64
	}
	settings := []gcSetting{
		{"nolimit", 100, math.MaxInt64},
		{"24MiB", 100, 24 << 20},
		{"gogc25", 25, math.MaxInt64},
		{"live+25%+8MiB", 100, live*5/4 + 8<<20},
	}
	tot := make([]time.Duration, len(settings))
	b.ResetTimer()
	for range b.N {
		for i, st := range settings {
			debug.SetGCPercent(st.pct)
			debug.SetMemoryLimit(st.limit)
			tot[i] += round()
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(live)/(1<<20), "MB-live")
	b.ReportMetric(float64(tot[0].Nanoseconds())/float64(b.N*n), "ns/event-nolimit")
	for i, st := range settings[1:] {
		b.ReportMetric(float64(tot[i+1])/float64(tot[0]), "x-"+st.name)
	}
}
