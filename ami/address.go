package ami

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Address is an Asterisk security-event address such as
// "IPV4/UDP/203.0.113.5/5060" or "IPV6/TLS/2001:db8::1/5061".
type Address struct {
	Transport string // UDP, TCP, TLS, WS, WSS (upper case, as Asterisk writes it)
	AddrPort  netip.AddrPort
}

// IsValid reports whether a holds an address.
func (a Address) IsValid() bool { return a.AddrPort.IsValid() }

// Addr is the IP part.
func (a Address) Addr() netip.Addr { return a.AddrPort.Addr() }

func (a Address) String() string {
	if !a.IsValid() {
		return ""
	}
	fam := "IPV4"
	if a.Addr().Is6() {
		fam = "IPV6"
	}
	return fmt.Sprintf("%s/%s/%s/%d", fam, a.Transport, a.Addr(), a.AddrPort.Port())
}

// ParseAddress is the one parser for Asterisk's "FAMILY/TRANSPORT/IP/PORT"
// form. IPv6 addresses come without brackets, so it splits on '/', never
// ':'. The family must match the address; anything else is an error, since
// the value may be attacker-shaped.
func ParseAddress(s string) (Address, error) {
	fam, rest, ok1 := strings.Cut(s, "/")
	transport, rest, ok2 := strings.Cut(rest, "/")
	ip, port, ok3 := strings.Cut(rest, "/")
	if !ok1 || !ok2 || !ok3 {
		return Address{}, fmt.Errorf("ami: address %q: want FAMILY/TRANSPORT/IP/PORT", s)
	}
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Zone() != "" {
		return Address{}, fmt.Errorf("ami: address %q: bad IP", s)
	}
	switch {
	case fam == "IPV4" && a.Is4():
	case fam == "IPV6" && a.Is6():
		a = a.Unmap() // Asterisk may write v4-mapped peers on a dual-stack socket
	default:
		return Address{}, fmt.Errorf("ami: address %q: family %q does not match the IP", s, fam)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return Address{}, fmt.Errorf("ami: address %q: bad port", s)
	}
	switch transport {
	case "UDP", "TCP", "TLS", "WS", "WSS", "SCTP":
	default:
		return Address{}, fmt.Errorf("ami: address %q: unknown transport %q", s, transport)
	}
	return Address{Transport: transport, AddrPort: netip.AddrPortFrom(a, uint16(p))}, nil
}
