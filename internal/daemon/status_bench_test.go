package daemon

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/engine"
	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/firewall/dryrun"
	"github.com/sipsentry/sipsentry/geo"
	"github.com/sipsentry/sipsentry/internal/config"
	"github.com/sipsentry/sipsentry/internal/metrics"
	"github.com/sipsentry/sipsentry/state"
)

// statusDaemon is a daemon with n active bans (dry-run firewall), wired as
// Run wires /status, /healthz and /metrics.
func statusDaemon(tb testing.TB, n int) *daemon {
	tb.Helper()
	return statusDaemonWith(tb, n, &nopBackend{Backend: dryrun.New(dryrun.Options{Mode: "enforce", MaxElem: 2 * n})})
}

func statusDaemonWith(tb testing.TB, n int, fw firewall.Backend) *daemon {
	tb.Helper()
	cfg := config.Default()
	cfg.StateDir = tb.TempDir()
	cfg.Firewall.Backend, cfg.Firewall.Mode, cfg.Engine.GeoMode = "dry-run", "enforce", "strict"
	cfg.Firewall.BanMaxElem = 2 * n
	g, err := geo.Open(GeoOptions(config.Geo{}, cfg.StateDir), nil)
	if err != nil {
		tb.Fatal(err)
	}
	st, err := state.Open(state.Path(cfg.StateDir))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	eng, err := engine.New(EngineOptions(cfg), engine.Deps{Firewall: fw, HostAddrs: []netip.Addr{}})
	if err != nil {
		tb.Fatal(err)
	}
	d := &daemon{cfg: cfg, started: time.Now(), recent: newRecentEvents(20), fw: fw, geo: g, eng: eng, store: st,
		met: metrics.New(nil), verifyReq: make(chan struct{}, 1), repairs: firewall.NewRepairCounter(), log: slog.New(slog.DiscardHandler)}
	d.verifier, _ = fw.(firewall.Verifier)
	if err := fw.Up(context.Background()); err != nil { // as bringUp does
		tb.Fatal(err)
	}
	d.fwUp.Store(true)
	ctx := context.Background()
	for i := range n {
		if err := eng.BanFor(ctx, benchAddr(i), "bench"); err != nil {
			tb.Fatal(err)
		}
	}
	if got := eng.Snapshot().ActiveBans; got != n {
		tb.Fatalf("%d active bans, want %d", got, n)
	}
	d.initStatusCaches()
	d.met.SetState(d.metricsState)
	return d
}

// nopBackend is the dry-run backend with Add counted only: the dry-run's
// own Add walks every entry for expiry (O(n) per ban), which would measure
// the fake rather than the daemon.
type nopBackend struct {
	*dryrun.Backend
	added atomic.Int64
}

func (b *nopBackend) Add(_ context.Context, _ firewall.Set, es ...firewall.Entry) error {
	b.added.Add(int64(len(es)))
	return nil
}

// benchAddr is the i-th address of 100.64.0.0/10 (shared address space:
// never a host's own, never loopback).
func benchAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{100, 64 + byte(i>>16), byte(i >> 8), byte(i)})
}

// /status is answered from memory whatever the ban count, and its document
// says how many bans there are (a summary, not a list).
func TestStatusIsASummary(t *testing.T) {
	d := statusDaemon(t, 5000)
	h := d.met.Handler(d.status)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/status", nil))
	if rec.Code != 200 {
		t.Fatalf("/status: %d %s", rec.Code, rec.Body)
	}
	if rec.Body.Len() > 64<<10 {
		t.Errorf("/status is %d bytes at 5000 bans: it must summarise, not list", rec.Body.Len())
	}
	var r StatusReport
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if !r.Running || r.Engine == nil || r.Engine.ActiveBans != 5000 {
		t.Errorf("status = %+v, want running with 5000 active bans", r)
	}
}

// BenchmarkStatus200k compares, at 200k bans, one /status request with the
// engine walk it used to make per request (Snapshot under the ban lock), and
// the engine's own ban with and without two loops of /status requests.
// Run: go test -run '^$' -bench Status200k -benchtime 2s ./internal/daemon/
func BenchmarkStatus200k(b *testing.B) {
	const n = 200_000
	d := statusDaemon(b, n)
	h := d.met.Handler(d.status)
	get := func(path string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code
	}
	b.Run("snapshot-per-request(before)", func(b *testing.B) {
		for b.Loop() {
			d.eng.Snapshot()
		}
	})
	b.Run("status-request", func(b *testing.B) {
		for b.Loop() {
			if get("/status") != 200 {
				b.Fatal("status failed")
			}
		}
	})
	b.Run("healthz-request", func(b *testing.B) {
		for b.Loop() {
			get("/healthz")
		}
	})
	next := atomic.Int64{}
	next.Store(n)
	ban := func(b *testing.B) {
		ctx := context.Background()
		for b.Loop() {
			_ = d.eng.BanFor(ctx, benchAddr(int(next.Add(1))), "bench")
		}
	}
	// Two request loops take CPU from the ban on two cores whatever they
	// ask; the loops of a path that does nothing (404) are the baseline that
	// separates that share from what /status itself costs the ban path.
	withLoops := func(paths ...string) func(b *testing.B) {
		return func(b *testing.B) {
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
							for _, p := range paths {
								get(p)
							}
						}
					}
				}()
			}
			ban(b)
			close(stop)
			wg.Wait()
		}
	}
	b.Run("ban", ban)
	b.Run("ban-with-2-loops-of-404", withLoops("/nothing"))
	b.Run("ban-with-2-loops-of-status+healthz", withLoops("/status", "/healthz"))
}
