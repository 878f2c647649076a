package engine

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/ami"
)

// hostAddrs is a LocalReason whose answers a test changes while the engine
// runs, as the netlink watcher does when an address is added.
type hostAddrs struct {
	mu  sync.Mutex
	why map[netip.Addr]string
}

func (h *hostAddrs) reason(a netip.Addr) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.why[a]
}

func (h *hostAddrs) set(a, why string) {
	h.mu.Lock()
	h.why[netip.MustParseAddr(a)] = why
	h.mu.Unlock()
}

// The engine refuses by itself what can never be an attacker's source,
// and asks Deps.LocalReason at every ban, so an address the host gains
// after start is protected at once. Both through Handle and BanManual.
func TestNeverBanAddresses(t *testing.T) {
	host := &hostAddrs{why: map[netip.Addr]string{}}
	r := newRig(t, rigOpt{deps: func(d *Deps) { d.LocalReason = host.reason }})
	host.set("203.0.113.255", "broadcast address of the host's subnet 203.0.113.0/24")
	cases := []struct{ addr, why string }{
		{"255.255.255.255", "limited broadcast"},
		{"0.0.0.0", "unspecified"},
		{"::", "unspecified"},
		{"224.0.0.5", "multicast"},
		{"ff02::1", "multicast"},
		{"127.0.0.2", "loopback"},
		{"::1", "loopback"},
		{"169.254.10.1", "link-local"},
		{"fe80::1", "link-local"},
		{"203.0.113.255", "broadcast address of the host's subnet 203.0.113.0/24"},
		{"203.0.113.254", ""}, // an ordinary foreign source: banned
	}
	for i, c := range cases {
		t.Run(c.addr, func(t *testing.T) {
			for j := range 5 {
				r.eng.Handle(context.Background(), ev(ami.EventChallengeResponseFailed, "1001", c.addr, fmt.Sprint(i, j)))
			}
			if got := r.banned(c.addr); got != (c.why == "") {
				t.Errorf("banned by Handle: %v", got)
			}
			_, err := r.eng.BanManual(bg, netip.MustParseAddr(c.addr), time.Hour, "", 0)
			if c.why == "" {
				if err != nil {
					t.Errorf("BanManual: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrNeverBan) || !strings.Contains(err.Error(), c.why) {
				t.Errorf("BanManual = %v, want ErrNeverBan with %q", err, c.why)
			}
		})
	}
	// An address the host gains after start.
	if _, err := r.eng.BanManual(bg, netip.MustParseAddr("203.0.113.253"), time.Hour, "", 0); err != nil {
		t.Fatal(err)
	}
	host.set("203.0.113.252", "host's own address")
	if _, err := r.eng.BanManual(bg, netip.MustParseAddr("203.0.113.252"), time.Hour, "", 0); !errors.Is(err, ErrNeverBan) {
		t.Errorf("address added after start: %v", err)
	}
}

// The default LocalReason (no watcher): the host's addresses and their
// subnets' network and broadcast addresses.
func TestFixedLocal(t *testing.T) {
	why := fixedLocal(
		[]netip.Addr{netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("2001:db8::10")},
		[]netip.Prefix{netip.MustParsePrefix("198.51.100.10/24"), netip.MustParsePrefix("2001:db8::10/64"),
			netip.MustParsePrefix("203.0.113.1/31"), netip.MustParsePrefix("203.0.113.9/32")})
	for a, want := range map[string]string{
		"198.51.100.10":  "host's own address",
		"198.51.100.0":   "network address of the host's subnet 198.51.100.0/24",
		"198.51.100.255": "broadcast address of the host's subnet 198.51.100.0/24",
		"2001:db8::10":   "host's own address",
		"2001:db8::":     "network address of the host's subnet 2001:db8::/64",
		"198.51.100.11":  "",
		"203.0.113.0":    "", // a /31 has no network or broadcast address
		"203.0.113.1":    "",
	} {
		if got := why(netip.MustParseAddr(a)); got != want {
			t.Errorf("%s: %q, want %q", a, got, want)
		}
	}
}
