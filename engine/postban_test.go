package engine

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/firewall/dryrun"
)

// walkFW is the dry-run backend plus counting flow droppers; a walk can be
// held at a gate to show what does and does not wait for it.
type walkFW struct {
	*dryrun.Backend
	gate chan struct{} // nil: walks pass; else each walk waits until it is closed

	mu     sync.Mutex
	exact  map[netip.Addr]int
	walks  [][]netip.Addr
	walked chan struct{} // one send per finished walk (buffered)
}

func newWalkFW(d *Deps) *walkFW {
	f := &walkFW{Backend: d.Firewall.(*dryrun.Backend), exact: map[netip.Addr]int{}, walked: make(chan struct{}, 1024)}
	d.Firewall = f
	return f
}

func (f *walkFW) DropFlow(_ context.Context, proto string, remote, local netip.AddrPort) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.exact[remote.Addr()]++
	return nil
}

func (f *walkFW) DropFlowsOf(_ context.Context, addrs []netip.Addr) error {
	if f.gate != nil {
		<-f.gate
	}
	f.mu.Lock()
	f.walks = append(f.walks, append([]netip.Addr(nil), addrs...))
	f.mu.Unlock()
	f.walked <- struct{}{}
	return nil
}

// DropFlows is one walk per address: the engine must not call it when the
// bulk form exists.
func (f *walkFW) DropFlows(ctx context.Context, a netip.Addr) error {
	return f.DropFlowsOf(ctx, []netip.Addr{a})
}

func (f *walkFW) state() (exact map[netip.Addr]int, walks [][]netip.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	exact = map[netip.Addr]int{}
	for a, n := range f.exact {
		exact[a] = n
	}
	for _, w := range f.walks {
		walks = append(walks, append([]netip.Addr(nil), w...))
	}
	return exact, walks
}

var (
	_ firewall.FlowDropper     = (*walkFW)(nil)
	_ firewall.BulkFlowDropper = (*walkFW)(nil)
)

func setWalkEvery(e *Engine, d time.Duration) {
	e.post.walk.pendingMu.Lock()
	e.post.walk.every = d
	e.post.walk.pendingMu.Unlock()
}

// burst bans n foreign sources (geo_mode strict: banned at the first
// failure), each event with its own flow, and returns their addresses.
func burst(r *rig, first netip.Addr, n int) []netip.Addr {
	local := ami.Address{Transport: "UDP", AddrPort: netip.MustParseAddrPort("198.51.100.1:5060")}
	var out []netip.Addr
	a := first
	for range n {
		e := ev(ami.EventInvalidAccountID, "100", a.String(), "")
		e.Local = local
		r.eng.Handle(context.Background(), e)
		out = append(out, a)
		a = a.Next()
	}
	return out
}

func strict(c *Options) { c.GeoMode = GeoStrict }

// 100 bans in a burst: 100 exact-flow drops (each ban's own flow, at once)
// but the conntrack table walked once or twice in all, covering every
// banned address, and Sync returns only after that walk.
func TestPostBanWalkCoalesced(t *testing.T) {
	var fw *walkFW
	r := newRig(t, rigOpt{cfg: strict, deps: func(d *Deps) { fw = newWalkFW(d) }})
	// No timed walk in this test: only Sync's, so that the count is exact
	// on any machine.
	setWalkEvery(r.eng, time.Hour)
	addrs := burst(r, netip.MustParseAddr("203.0.113.1"), 100)
	r.sync()

	if got := r.eng.Snapshot().ActiveBans; got != 100 {
		t.Fatalf("%d active bans, want 100", got)
	}
	exact, walks := fw.state()
	for _, a := range addrs {
		if exact[a] != 1 {
			t.Errorf("%s: %d exact-flow drops, want 1", a, exact[a])
		}
	}
	if len(exact) != 100 {
		t.Errorf("exact-flow drops for %d addresses, want 100", len(exact))
	}
	if len(walks) < 1 || len(walks) > 2 {
		t.Fatalf("%d conntrack walks for a burst of 100 bans, want 1 or 2", len(walks))
	}
	seen := map[netip.Addr]int{}
	for _, w := range walks {
		for _, a := range w {
			seen[a]++
		}
	}
	for _, a := range addrs {
		if seen[a] != 1 {
			t.Errorf("%s in %d walks by the time Sync returned, want 1", a, seen[a])
		}
	}
	// Nothing is walked again afterwards.
	r.sync()
	if _, w := fw.state(); len(w) != len(walks) {
		t.Errorf("%d walks after a second Sync with no new bans, want %d", len(w), len(walks))
	}
}

// Without Sync the walk comes by itself, at its interval.
func TestPostBanWalkTimed(t *testing.T) {
	var fw *walkFW
	r := newRig(t, rigOpt{cfg: strict, deps: func(d *Deps) { fw = newWalkFW(d) }})
	setWalkEvery(r.eng, 10*time.Millisecond)
	addrs := burst(r, netip.MustParseAddr("203.0.113.1"), 10)
	seen := map[netip.Addr]bool{}
	deadline := time.After(time.Minute) // liveness bound only
	for len(seen) < len(addrs) {
		select {
		case <-fw.walked:
		case <-deadline:
			t.Fatalf("only %d of %d addresses walked without Sync", len(seen), len(addrs))
		}
		_, walks := fw.state()
		for _, w := range walks {
			for _, a := range w {
				seen[a] = true
			}
		}
	}
	for _, a := range addrs {
		if !seen[a] {
			t.Errorf("%s never walked", a)
		}
	}
}

// Hang-ups do not wait for the walk, and Sync does.
func TestPostBanHangupBeforeWalk(t *testing.T) {
	var fw *walkFW
	hung := make(chan netip.Addr, 16)
	r := newRig(t, rigOpt{cfg: strict, deps: func(d *Deps) {
		fw = newWalkFW(d)
		fw.gate = make(chan struct{})
		d.Hangup = func(_ context.Context, a netip.Addr) error { hung <- a; return nil }
	}})
	setWalkEvery(r.eng, time.Millisecond) // the walk starts (and blocks) at once
	a := burst(r, netip.MustParseAddr("203.0.113.9"), 1)[0]
	synced := make(chan error, 1)
	go func() { synced <- r.eng.Sync(context.Background()) }()
	select {
	case got := <-hung:
		if got != a {
			t.Fatalf("hung up %s, want %s", got, a)
		}
	case <-time.After(time.Minute): // liveness bound only
		close(fw.gate)
		t.Fatal("the hang-up waited for the conntrack walk")
	}
	if _, walks := fw.state(); len(walks) != 0 {
		t.Fatalf("walk finished while its gate was shut: %v", walks)
	}
	select {
	case err := <-synced:
		t.Fatalf("Sync returned (%v) while the conntrack walk was still running", err)
	default:
	}
	close(fw.gate)
	if err := <-synced; err != nil {
		t.Fatal(err)
	}
	if _, walks := fw.state(); len(walks) != 1 || len(walks[0]) != 1 || walks[0][0] != a {
		t.Fatalf("walks when Sync returned: %v, want one of %s", walks, a)
	}
}

// Addresses still waiting for their walk when Run ends are walked before
// Run returns.
func TestPostBanWalkOnShutdown(t *testing.T) {
	var fw *walkFW
	r := newRig(t, rigOpt{cfg: strict, deps: func(d *Deps) { fw = newWalkFW(d) }})
	setWalkEvery(r.eng, time.Hour)
	addrs := burst(r, netip.MustParseAddr("203.0.113.50"), 5)
	r.stop()
	seen := map[netip.Addr]bool{}
	_, walks := fw.state()
	for _, w := range walks {
		for _, a := range w {
			seen[a] = true
		}
	}
	for _, a := range addrs {
		if !seen[a] {
			t.Errorf("%s not walked by the time Run returned (walks %v)", a, walks)
		}
	}
}
