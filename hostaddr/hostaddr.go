// Package hostaddr knows this host's own addresses as they are now: it
// follows address changes by netlink and answers, for any address, whether
// it is one of the host's own, or the network or broadcast address of one
// of the host's IPv4 subnets, so that a ban decision never locks the host
// out of itself. Reason is safe for concurrent use on the hot path: the
// answers live in an immutable table swapped by an atomic pointer, so a
// lookup takes no lock and makes no syscall.
//
// It must never change an address, a link or a route: it only listens. The
// fixed categories (loopback, multicast, link-local, unspecified, limited
// broadcast) are not its business either; they hold on every host and are
// judged where the decision is made.
package hostaddr

import (
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"
)

// Reasons Reason returns (the subnet is appended to the last two).
const (
	reasonOwn       = "host's own address"
	reasonNetwork   = "network address of "
	reasonBroadcast = "broadcast of "
)

// Set is the host's addresses at one moment and what each derived address
// is. The zero Set knows no address.
type Set struct {
	table atomic.Pointer[table]
}

// table is one immutable generation.
type table struct {
	reasons map[netip.Addr]string
	own     []netip.Prefix // sorted, for Prefixes
}

// Fixed returns a Set holding exactly the given interface addresses (an
// address with its prefix length, "203.0.113.7/24"): for tests of the
// callers, and for hosts where netlink is not available.
func Fixed(ifaddrs ...netip.Prefix) *Set {
	s := &Set{}
	s.replace(ifaddrs)
	return s
}

// Reason says why a must not be banned ("host's own address",
// "broadcast of 203.0.113.0/24", "network address of 203.0.113.0/24"), or
// "" when it is none of these. A nil Set knows no address.
func (s *Set) Reason(a netip.Addr) string {
	if s == nil {
		return ""
	}
	t := s.table.Load()
	if t == nil {
		return ""
	}
	return t.reasons[a.Unmap().WithZone("")]
}

// Prefixes returns the interface addresses now known, with their prefix
// lengths, sorted.
func (s *Set) Prefixes() []netip.Prefix {
	if s == nil {
		return nil
	}
	if t := s.table.Load(); t != nil {
		return slices.Clone(t.own)
	}
	return nil
}

// replace builds the table for ifaddrs and swaps it in.
func (s *Set) replace(ifaddrs []netip.Prefix) {
	t := &table{reasons: make(map[netip.Addr]string, 3*len(ifaddrs))}
	for _, p := range ifaddrs {
		if !p.IsValid() {
			continue
		}
		bits := p.Bits()
		if p.Addr().Is4In6() {
			bits -= 96 // ::ffff:a.b.c.d/120 is a.b.c.d/24
		}
		p = netip.PrefixFrom(p.Addr().Unmap().WithZone(""), bits)
		if !p.IsValid() {
			continue
		}
		t.own = append(t.own, p)
		if p.Addr().Is4() && p.Bits() <= 30 {
			// /31 and /32 have no network or broadcast address (RFC 3021).
			subnet := p.Masked()
			net := subnet.Addr()
			bcast := lastAddr(subnet)
			setIfFree(t.reasons, net, reasonNetwork+subnet.String())
			setIfFree(t.reasons, bcast, reasonBroadcast+subnet.String())
		}
	}
	// Own addresses win over a derived reason for the same address.
	for _, p := range t.own {
		t.reasons[p.Addr()] = reasonOwn
	}
	slices.SortFunc(t.own, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	t.own = slices.Compact(t.own)
	s.table.Store(t)
}

func setIfFree(m map[netip.Addr]string, a netip.Addr, reason string) {
	if _, ok := m[a]; !ok {
		m[a] = reason
	}
}

// lastAddr is the highest address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= uint32(1)<<(32-p.Bits()) - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// String lists the known interface addresses, for logs.
func (s *Set) String() string { return fmt.Sprint(s.Prefixes()) }
