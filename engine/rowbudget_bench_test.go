package engine

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/state"
)

// BenchmarkFloodPersistence: bench/flood's shape in-process and on a fake
// clock (sources × 6 failures, one round through all sources per failure,
// 10k events/s, max_sources half the sources, bans at the 5th), each
// 100 ms of events followed by one of Run's flushes. "full" writes every
// changed row at each flush (Run before the budget), "budgeted" is Run's
// flush now. It reports the CPU time of the flushes against that of
// Handle, the source rows written, and the final complete Flush
// (shutdown). Compare the two in one run:
//
//	go test -run '^$' -bench FloodPersistence -benchtime 1x ./engine/
func BenchmarkFloodPersistence(b *testing.B) {
	const (
		sources = 20000
		fails   = 6
		perStep = 1000 // events per flush interval: 10k events/s
	)
	for _, mode := range []string{"full", "budgeted"} {
		b.Run(mode, func(b *testing.B) {
			for range b.N {
				st, err := state.Open(filepath.Join(b.TempDir(), state.FileName))
				if err != nil {
					b.Fatal(err)
				}
				clock := newClock()
				cfg := testConfig()
				cfg.MaxSources = sources / 2
				e, err := New(cfg, Deps{Firewall: &countingFW{}, Geo: testGeo, Store: st, Resolver: noDNS{}, Now: clock.Now,
					Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), HostAddrs: []netip.Addr{}})
				if err != nil {
					b.Fatal(err)
				}
				ctx := context.Background()
				if err := e.Start(ctx); err != nil {
					b.Fatal(err)
				}
				flush := e.Flush
				if mode == "budgeted" {
					flush = e.flushBudgeted
				}
				var handleCPU, flushCPU time.Duration
				n := 0
				c0 := cpuTime()
				for range fails {
					for i := range sources {
						e.Handle(ctx, fail(floodAddr(i), n))
						n++
						if n%perStep == 0 {
							c1 := cpuTime()
							handleCPU += c1 - c0
							clock.Advance(flushInterval)
							if err := flush(ctx); err != nil {
								b.Fatal(err)
							}
							c0 = cpuTime()
							flushCPU += c0 - c1
						}
					}
				}
				rows := e.Snapshot().SourceRows
				c1 := cpuTime()
				if err := e.Flush(ctx); err != nil {
					b.Fatal(err)
				}
				final := cpuTime() - c1
				b.ReportMetric(handleCPU.Seconds(), "handle-cpu-s")
				b.ReportMetric(flushCPU.Seconds(), "flush-cpu-s")
				b.ReportMetric(100*flushCPU.Seconds()/(handleCPU+flushCPU).Seconds(), "flush-%")
				b.ReportMetric(float64(rows.Written), "source-rows")
				b.ReportMetric(float64(rows.Waiting), "waiting-at-end")
				b.ReportMetric(final.Seconds(), "final-flush-cpu-s")
				b.ReportMetric(float64(e.Snapshot().DroppedSource), "dropped-rows")
				b.ReportMetric(float64(e.Snapshot().ActiveBans), "bans")
				st.Close()
			}
		})
	}
}
