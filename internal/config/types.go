package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written as a Go duration string ("10m", "24h").
// Days ("7d") are accepted too because ban times are naturally said in days.
type Duration time.Duration

func (d *Duration) UnmarshalText(b []byte) error {
	s := string(b)
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseFloat(n, 64)
		if err != nil || days < 0 {
			return fmt.Errorf("bad duration %q: want e.g. \"90s\", \"10m\", \"24h\" or \"7d\"", s)
		}
		*d = Duration(time.Duration(days * float64(24*time.Hour)))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("bad duration %q: want e.g. \"90s\", \"10m\", \"24h\" or \"7d\"", s)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Prefix is a CIDR or a bare address (taken as a host prefix), host bits masked.
type Prefix struct{ netip.Prefix }

func (p *Prefix) UnmarshalText(b []byte) error {
	v, err := ParsePrefix(string(b))
	if err != nil {
		return err
	}
	p.Prefix = v
	return nil
}

func (p Prefix) MarshalText() ([]byte, error) { return []byte(p.Prefix.String()), nil }

// ParsePrefix accepts "203.0.113.0/24", "2001:db8::/32" or a bare address.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad CIDR %q: want e.g. \"203.0.113.0/24\" or \"2001:db8::/32\"", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("bad address %q: want an IPv4/IPv6 address or a CIDR", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// PortRange is "5060" or "10000-20000".
type PortRange struct{ From, To uint16 }

func (r *PortRange) UnmarshalText(b []byte) error {
	s := string(b)
	lo, hi, isRange := strings.Cut(s, "-")
	if !isRange {
		hi = lo
	}
	a, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	z, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
	if err1 != nil || err2 != nil || a == 0 || z < a {
		return fmt.Errorf("bad port or range %q: want e.g. \"5060\" or \"10000-20000\"", s)
	}
	r.From, r.To = uint16(a), uint16(z)
	return nil
}

func (r PortRange) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// String gives the iptables --dport form ("5060" or "10000:20000").
func (r PortRange) String() string {
	if r.From == r.To {
		return strconv.Itoa(int(r.From))
	}
	return fmt.Sprintf("%d-%d", r.From, r.To)
}

// Regexp is a regular expression checked when the config is read.
type Regexp struct{ *regexp.Regexp }

func (r *Regexp) UnmarshalText(b []byte) error {
	re, err := regexp.Compile(string(b))
	if err != nil {
		return fmt.Errorf("bad regular expression %q: %v", string(b), err)
	}
	r.Regexp = re
	return nil
}

func (r Regexp) MarshalText() ([]byte, error) {
	if r.Regexp == nil {
		return nil, nil
	}
	return []byte(r.String()), nil
}
