package engine

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/activity"
	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/state"
)

// countingFW is a no-op firewall that counts calls: the benchmark measures
// the engine, not a backend.
type countingFW struct{ adds atomic.Int64 }

func (f *countingFW) Up(context.Context) error                                      { return nil }
func (f *countingFW) Down(context.Context) error                                    { return nil }
func (f *countingFW) Replace(context.Context, firewall.Set, []firewall.Entry) error { return nil }
func (f *countingFW) Add(_ context.Context, _ firewall.Set, es ...firewall.Entry) error {
	f.adds.Add(int64(len(es)))
	return nil
}
func (f *countingFW) Delete(context.Context, firewall.Set, ...netip.Prefix) error { return nil }
func (f *countingFW) Contains(context.Context, firewall.Set, netip.Addr) (bool, error) {
	return false, nil
}
func (f *countingFW) List(context.Context, firewall.Set) ([]firewall.Entry, error) { return nil, nil }
func (f *countingFW) DropFlows(context.Context, netip.Addr) error                  { return nil }
func (f *countingFW) Status(context.Context) (firewall.Status, error)              { return firewall.Status{}, nil }
func (f *countingFW) Close() error                                                 { return nil }

var (
	benchOnce   sync.Once
	benchEvents []ami.SecurityEvent
)

// benchStream is the recorded session's security events (s1..s8: scanners,
// brute force, phones, AMI logins) with their sources spread over 20k
// random addresses, 64k events.
func benchStream(b *testing.B) []ami.SecurityEvent {
	benchOnce.Do(func() {
		rec := loadEvents(b, "ami-security-session.raw", recordedMap)
		rng := rand.New(rand.NewPCG(3, 4))
		pool := make([]netip.Addr, 20000)
		for i := range pool {
			pool[i] = randomSource(rng)
		}
		benchEvents = make([]ami.SecurityEvent, 1<<16)
		for i := range benchEvents {
			ev := rec[i%len(rec)]
			ev.Remote.AddrPort = netip.AddrPortFrom(pool[rng.IntN(len(pool))], ev.Remote.AddrPort.Port())
			benchEvents[i] = ev
		}
	})
	return benchEvents
}

func benchEngine(b *testing.B, store *state.Store) (*Engine, *countingFW) {
	cfg := testConfig()
	fw := &countingFW{}
	e, err := New(cfg, Deps{Firewall: fw, Geo: testGeo, Store: store, Resolver: noDNS{},
		Logger:    slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError})),
		HostAddrs: []netip.Addr{}})
	if err != nil {
		b.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	return e, fw
}

// baselines measures, in this run and over the same n events, (1)
// activity.Source.Observe alone on a map of sources — the floor any engine
// sharing the aggregate pays — and (2) a naive engine: a map of sources,
// each a slice of failure times filtered on every failure (fail2ban's
// shape). It returns ns per event for each. (testing.Benchmark cannot be
// nested in a benchmark: it would deadlock on the benchmark lock.)
func baselines(evs []ami.SecurityEvent, n int) (observe, naiveNs float64) {
	m := map[netip.Addr]*activity.Source{}
	now := time.Now()
	start := time.Now()
	for i := 0; i < n; i++ {
		ev := &evs[i&(len(evs)-1)]
		s := m[ev.Remote.Addr()]
		if s == nil {
			s = &activity.Source{Addr: ev.Remote.Addr()}
			m[ev.Remote.Addr()] = s
		}
		s.Observe(ev, now)
	}
	observe = float64(time.Since(start).Nanoseconds()) / float64(n)

	type naive struct{ fails []time.Time }
	nm := map[netip.Addr]*naive{}
	banned := map[netip.Addr]bool{}
	start = time.Now()
	for i := 0; i < n; i++ {
		ev := &evs[i&(len(evs)-1)]
		now := time.Now()
		a := ev.Remote.Addr()
		s := nm[a]
		if s == nil {
			s = &naive{}
			nm[a] = s
		}
		if !activity.Classify(ev).IsFailure() {
			continue
		}
		s.fails = append(s.fails, now)
		kept := s.fails[:0]
		for _, t := range s.fails {
			if now.Sub(t) <= 10*time.Minute {
				kept = append(kept, t)
			}
		}
		s.fails = kept
		if len(kept) >= 5 {
			banned[a] = true
		}
	}
	naiveNs = float64(time.Since(start).Nanoseconds()) / float64(n)
	return observe, naiveNs
}

// cpuTime is the process's user+system CPU time: on a shared, overloaded
// machine wall time measures the neighbours, CPU time measures us.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportHandle(b *testing.B, evs []ami.SecurityEvent, wall, cpu time.Duration) {
	b.ReportMetric(float64(b.N)/wall.Seconds(), "decisions/wall-s")
	n := max(b.N, len(evs))
	c0 := cpuTime()
	baselineObserve, baselineNaive := baselines(evs, n)
	bc := cpuTime() - c0
	// baselines' wall-clock split, scaled to CPU time spent on both loops.
	scale := float64(bc.Nanoseconds()) / (baselineObserve + baselineNaive) / float64(n)
	baselineObserve *= scale
	baselineNaive *= scale
	ns := float64(cpu.Nanoseconds()) / float64(b.N)
	b.ReportMetric(1e9/ns, "decisions/cpu-s")
	b.ReportMetric(baselineObserve, "observe-ns/op")
	b.ReportMetric(ns/baselineObserve, "x-observe")
	b.ReportMetric(baselineNaive, "naive-ns/op")
	b.ReportMetric(ns/baselineNaive, "x-naive")
}

// BenchmarkHandle: decisions/s of the hot path without kernel or DB, with
// ratios to the in-run baselines. Run with -cpu 1 for "one core".
func BenchmarkHandle(b *testing.B) {
	evs := benchStream(b)
	e, fw := benchEngine(b, nil)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	start, c0 := time.Now(), cpuTime()
	for i := 0; i < b.N; i++ {
		e.Handle(ctx, evs[i&(len(evs)-1)])
	}
	el, cpu := time.Since(start), cpuTime()-c0
	b.StopTimer()
	reportHandle(b, evs, el, cpu)
	b.ReportMetric(float64(fw.adds.Load()), "bans")
}

// BenchmarkHandleWithStore: the same with the state DB and Run's writer
// goroutine flushing every 100 ms, competing for the same core(s).
func BenchmarkHandleWithStore(b *testing.B) {
	evs := benchStream(b)
	st, err := state.Open(filepath.Join(b.TempDir(), state.FileName))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	e, _ := benchEngine(b, st)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	b.ReportAllocs()
	b.ResetTimer()
	start, c0 := time.Now(), cpuTime()
	for i := 0; i < b.N; i++ {
		e.Handle(ctx, evs[i&(len(evs)-1)])
	}
	el, cpu := time.Since(start), cpuTime()-c0
	b.StopTimer()
	cancel()
	<-done
	reportHandle(b, evs, el, cpu)
	b.ReportMetric(float64(e.Snapshot().DroppedWrites), "dropped-log-rows")
}
