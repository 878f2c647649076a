package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// DNSResolver asks one DNS server directly (miekg/dns), so the push learner
// uses the resolver the admin configured and tests can point it at a server
// on loopback.
type DNSResolver struct {
	server string
	client *dns.Client
}

// NewDNSResolver returns a resolver for server ("host:port", port default
// 53), or the first nameserver of /etc/resolv.conf when server is empty.
func NewDNSResolver(server string) (*DNSResolver, error) {
	if server == "" {
		cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil {
			return nil, fmt.Errorf("engine: reading /etc/resolv.conf: %w (set push.resolver)", err)
		}
		if len(cc.Servers) == 0 {
			return nil, errors.New("engine: /etc/resolv.conf lists no nameserver (set push.resolver)")
		}
		server = net.JoinHostPort(cc.Servers[0], cc.Port)
	} else if _, _, err := net.SplitHostPort(server); err != nil {
		server = net.JoinHostPort(strings.Trim(server, "[]"), "53")
	}
	return &DNSResolver{server: server, client: &dns.Client{Timeout: 3 * time.Second}}, nil
}

// Server is the address queries go to.
func (r *DNSResolver) Server() string { return r.server }

func (r *DNSResolver) query(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	in, _, err := r.client.ExchangeContext(ctx, m, r.server)
	if err == nil && in.Truncated {
		tcp := &dns.Client{Net: "tcp", Timeout: r.client.Timeout}
		in, _, err = tcp.ExchangeContext(ctx, m, r.server)
	}
	if err != nil {
		return nil, fmt.Errorf("engine: DNS %s %s via %s: %w", dns.TypeToString[qtype], name, r.server, err)
	}
	switch in.Rcode {
	case dns.RcodeSuccess:
		return in.Answer, nil
	case dns.RcodeNameError:
		return nil, nil
	}
	return nil, fmt.Errorf("engine: DNS %s %s via %s: %s", dns.TypeToString[qtype], name, r.server, dns.RcodeToString[in.Rcode])
}

// LookupPTR returns the PTR names of a, without the trailing dot.
func (r *DNSResolver) LookupPTR(ctx context.Context, a netip.Addr) ([]string, error) {
	arpa, err := dns.ReverseAddr(a.Unmap().String())
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	rrs, err := r.query(ctx, arpa, dns.TypePTR)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range rrs {
		if p, ok := rr.(*dns.PTR); ok {
			out = append(out, strings.TrimSuffix(p.Ptr, "."))
		}
	}
	return out, nil
}

// LookupAddrs returns host's A and AAAA addresses.
func (r *DNSResolver) LookupAddrs(ctx context.Context, host string) ([]netip.Addr, error) {
	var out []netip.Addr
	var errs []error
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		rrs, err := r.query(ctx, host, qt)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, rr := range rrs {
			var ip net.IP
			switch v := rr.(type) {
			case *dns.A:
				ip = v.A
			case *dns.AAAA:
				ip = v.AAAA
			default:
				continue // CNAME chain: the server has already followed it in Answer
			}
			if a, ok := netip.AddrFromSlice(ip); ok {
				out = append(out, a.Unmap())
			}
		}
	}
	if len(errs) == 2 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}
