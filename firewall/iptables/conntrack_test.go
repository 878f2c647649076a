package iptables

import (
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/internal/netnstest"
)

// TestWalkDoesNotHoldAdds: while a conntrack table walk is in progress (its
// lock held), a ban add and a single-flow delete still go through: the walk
// has a netlink socket of its own, opened in the backend's namespace.
func TestWalkDoesNotHoldAdds(t *testing.T) {
	requireKernel(t)
	ns := netnstest.NewNS(t, "ctwalk")
	b := newInNS(t, ns, testConfig("enforce"))
	if err := b.Up(ctx); err != nil {
		t.Fatal(err)
	}
	if b.ctWalker == nil || b.ctWalker == b.nl {
		t.Fatal("the conntrack walk has no netlink handle of its own")
	}
	remote := netip.MustParseAddrPort("203.0.113.7:5062")
	local := netip.MustParseAddrPort("198.51.100.1:5060")
	makeFlow(t, b, remote, local)

	b.walkMu.Lock() // a walk in progress
	done := make(chan error, 1)
	go func() {
		if err := b.Add(ctx, firewall.SetBan, firewall.Entry{Prefix: netip.PrefixFrom(remote.Addr(), 32), Timeout: time.Hour}); err != nil {
			done <- err
			return
		}
		done <- b.DropFlow(ctx, "udp", remote, local)
	}()
	select {
	case err := <-done:
		b.walkMu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute): // a liveness bound, not a speed assertion
		b.walkMu.Unlock()
		t.Fatal("a ban add or DropFlow waited for the conntrack walk")
	}
	if ok, err := b.Contains(ctx, firewall.SetBan, remote.Addr()); err != nil || !ok {
		t.Fatalf("ban set contains %s: %v, %v", remote.Addr(), ok, err)
	}
	// The flow was cut inside the namespace; a walk there finds nothing left.
	fs, err := b.ctWalker.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		if s, _ := netip.AddrFromSlice(f.Forward.SrcIP); s == remote.Addr() {
			t.Fatalf("flow of %s still in the namespace's conntrack table", remote.Addr())
		}
	}
	// And the walk itself works on its socket.
	makeFlow(t, b, remote, local)
	if err := b.DropFlowsOf(ctx, []netip.Addr{remote.Addr()}); err != nil {
		t.Fatal(err)
	}
	fs, err = b.ctWalker.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 0 {
		t.Fatalf("%d flows left after DropFlowsOf", len(fs))
	}
}

// TestLowPriority: the walk's thread runs at nice 19; the caller's thread
// keeps its priority.
func TestLowPriority(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before, err := unix.Getpriority(unix.PRIO_PROCESS, unix.Gettid())
	if err != nil {
		t.Fatal(err)
	}
	var inside int
	lowPriority(func() {
		// The raw syscall returns 20 - nice.
		inside, err = unix.Getpriority(unix.PRIO_PROCESS, unix.Gettid())
	})
	if err != nil {
		t.Fatal(err)
	}
	if inside != 20-19 {
		t.Errorf("walk thread at getpriority %d, want %d (nice 19)", inside, 20-19)
	}
	if after, _ := unix.Getpriority(unix.PRIO_PROCESS, unix.Gettid()); after != before {
		t.Errorf("caller's priority changed from %d to %d", before, after)
	}
}
