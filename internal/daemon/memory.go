package daemon

import (
	"context"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"time"
)

// trimWhenIdle gives the heap's garbage and free pages back to the OS once a
// burst of work (a flood, a list swap, a restore) is over. The GC collects
// only when the heap reaches twice the live data (GOGC 100), so after a
// burst the daemon would keep up to its live heap again as garbage for as
// long as it stays quiet, i.e. most of its life. A soft memory limit
// (GOMEMLIMIT) is not used for this: the daemon's live heap is not bounded
// by a small constant (engine.max_sources aggregates alone are ~26 MB in a
// flood), and a limit below the live heap makes every event pay for GC
// (engine's BenchmarkFloodUnderMemoryLimit: 5x slower per event at 24 MiB),
// just when an attack needs the engine fast. Trimming costs one forced GC
// per burst, never during one. GOGC and GOMEMLIMIT from the environment
// still apply.
func trimWhenIdle(ctx context.Context) {
	const (
		every = 2 * time.Second
		quiet = 1 << 20 // allocated in the last period: the burst is over
		burst = 4 << 20 // allocated since the last trim: worth a GC
	)
	s := []rtmetrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	rtmetrics.Read(s)
	last := s[0].Value.Uint64()
	trimmed := last
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rtmetrics.Read(s)
		allocs := s[0].Value.Uint64()
		if allocs-last < quiet && allocs-trimmed > burst {
			debug.FreeOSMemory()
			trimmed = allocs
		}
		last = allocs
	}
}
