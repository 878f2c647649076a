package hostaddr

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/sipsentry/sipsentry/internal/netnstest"
)

func TestFixedReasons(t *testing.T) {
	s := Fixed(
		netip.MustParsePrefix("203.0.113.7/24"),
		netip.MustParsePrefix("198.51.100.1/31"),  // point-to-point: no network/broadcast
		netip.MustParsePrefix("198.51.100.64/32"), // a single address
		netip.MustParsePrefix("198.51.100.129/30"),
		netip.MustParsePrefix("2001:db8::7/64"),
		netip.MustParsePrefix("::ffff:198.51.100.200/128"), // IPv4-mapped: taken as 198.51.100.200/32
	)
	for _, tc := range []struct{ addr, want string }{
		{"203.0.113.7", "host's own address"},
		{"203.0.113.0", "network address of 203.0.113.0/24"},
		{"203.0.113.255", "broadcast of 203.0.113.0/24"},
		{"203.0.113.8", ""},
		{"198.51.100.1", "host's own address"},
		{"198.51.100.0", ""},
		{"198.51.100.64", "host's own address"},
		{"198.51.100.128", "network address of 198.51.100.128/30"},
		{"198.51.100.131", "broadcast of 198.51.100.128/30"},
		{"198.51.100.130", ""},
		{"2001:db8::7", "host's own address"},
		{"2001:db8::", ""},
		{"::ffff:203.0.113.7", "host's own address"},
		{"::ffff:203.0.113.255", "broadcast of 203.0.113.0/24"},
		{"198.51.100.200", "host's own address"},
	} {
		if got := s.Reason(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("Reason(%s) = %q, want %q", tc.addr, got, tc.want)
		}
	}
	var nilSet *Set
	if nilSet.Reason(netip.MustParseAddr("203.0.113.7")) != "" || (&Set{}).Reason(netip.MustParseAddr("203.0.113.7")) != "" {
		t.Error("an empty Set knows an address")
	}
}

// TestOwnAddressWinsOverDerived: an address that is both the host's own
// and another subnet's broadcast is reported as the host's own.
func TestOwnAddressWinsOverDerived(t *testing.T) {
	s := Fixed(netip.MustParsePrefix("203.0.113.7/24"), netip.MustParsePrefix("203.0.113.255/32"))
	if got := s.Reason(netip.MustParseAddr("203.0.113.255")); got != "host's own address" {
		t.Errorf("Reason = %q", got)
	}
}

// TestReasonConcurrentWithSwaps is for the race detector: lookups while
// the table is replaced.
func TestReasonConcurrentWithSwaps(t *testing.T) {
	s := Fixed()
	a := netip.MustParseAddr("203.0.113.7")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					_ = s.Reason(a)
				}
			}
		}()
	}
	for i := range 1000 {
		if i%2 == 0 {
			s.replace([]netip.Prefix{netip.MustParsePrefix("203.0.113.7/24")})
		} else {
			s.replace(nil)
		}
	}
	close(stop)
	wg.Wait()
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWatchFollowsAddressChanges runs the netlink watch in a network
// namespace of its own: an address there before the start is known at
// once; one added after the start is reported (with its subnet's network
// and broadcast addresses) within a short wait; a deleted one no longer.
func TestWatchFollowsAddressChanges(t *testing.T) {
	ns := netnstest.NewNS(t, "haddr")
	h, err := netns.GetFromName(ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	peer := netnstest.NewNS(t, "hpeer")
	// Two links in ns (veth ends; the dummy module may be missing).
	dev, _ := netnstest.Veth(t, ns, peer, []netnstest.Addr{"198.51.100.9/24"}, nil)
	dev2, _ := netnstest.Veth(t, ns, peer, nil, nil)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := watchAt(ctx, nil, h)
	if err != nil {
		t.Fatal(err)
	}
	reason := func(a string) string { return s.Reason(netip.MustParseAddr(a)) }
	if got := reason("198.51.100.9"); got != "host's own address" {
		t.Fatalf("address present at start: Reason = %q (known: %v)", got, s)
	}
	if got := reason("127.0.0.1"); got != "host's own address" {
		t.Errorf("loopback address of the namespace: Reason = %q", got)
	}
	if got := reason("203.0.113.7"); got != "" {
		t.Fatalf("before it is added: Reason = %q", got)
	}

	ns.MustExec("ip", "addr", "add", "203.0.113.7/24", "dev", dev)
	ns.MustExec("ip", "addr", "add", "2001:db8:7::7/64", "dev", dev, "nodad")
	eventually(t, "the added IPv4 address is known", func() bool { return reason("203.0.113.7") == "host's own address" })
	eventually(t, "the added IPv6 address is known", func() bool { return reason("2001:db8:7::7") == "host's own address" })
	if got := reason("203.0.113.255"); got != "broadcast of 203.0.113.0/24" {
		t.Errorf("broadcast: Reason = %q", got)
	}
	if got := reason("203.0.113.0"); got != "network address of 203.0.113.0/24" {
		t.Errorf("network: Reason = %q", got)
	}

	ns.MustExec("ip", "addr", "del", "203.0.113.7/24", "dev", dev)
	eventually(t, "the deleted address is forgotten", func() bool { return reason("203.0.113.7") == "" })
	if got := reason("203.0.113.255"); got != "" {
		t.Errorf("broadcast of a subnet no longer ours: Reason = %q", got)
	}
	if got := reason("198.51.100.9"); got != "host's own address" {
		t.Errorf("an untouched address was lost: Reason = %q", got)
	}

	// The same address on two links: removing it from one keeps it.
	ns.MustExec("ip", "addr", "add", "198.51.100.9/24", "dev", dev2)
	ns.MustExec("ip", "addr", "add", "203.0.113.50/24", "dev", dev2) // a marker: once known, dev2's first add is applied too
	eventually(t, "the second link's addresses are known", func() bool { return reason("203.0.113.50") != "" })
	ns.MustExec("ip", "addr", "del", "198.51.100.9/24", "dev", dev)
	ns.MustExec("ip", "addr", "del", "203.0.113.50/24", "dev", dev2)
	eventually(t, "the marker is forgotten", func() bool { return reason("203.0.113.50") == "" })
	if got := reason("198.51.100.9"); got != "host's own address" {
		t.Errorf("address still on the second link: Reason = %q", got)
	}
}
