package firewall

import (
	"fmt"
	"net/netip"
	"strings"
)

// MaxComment is the longest entry comment kept; the kernel stores at most
// 255 bytes and longer ones are cut, not refused.
const MaxComment = 255

// KnownSet tells whether s is one of sipsentry's sets.
func KnownSet(s Set) bool {
	switch s {
	case SetAllow, SetBan, SetBanNet, SetProbation, SetAllowCountry:
		return true
	}
	return false
}

// Validate checks e for set and returns it normalized (host bits masked,
// IPv4-mapped IPv6 turned into IPv4, comment made safe for every backend).
// Every backend calls it before touching the kernel, so that an invalid
// entry is refused with ErrInvalid before any change.
func Validate(set Set, e Entry) (Entry, error) {
	if !KnownSet(set) {
		return e, fmt.Errorf("%w: unknown set %q", ErrInvalid, set)
	}
	p := e.Prefix
	if !p.IsValid() {
		return e, fmt.Errorf("%w: %q is not a valid CIDR", ErrInvalid, p)
	}
	a := p.Addr()
	if a.Zone() != "" {
		return e, fmt.Errorf("%w: %s has a zone", ErrInvalid, p)
	}
	if a.Is4In6() {
		if p.Bits() < 96 {
			return e, fmt.Errorf("%w: %s mixes IPv4-mapped and IPv6 space", ErrInvalid, p)
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	p = p.Masked()
	// ipset's hash:net takes /1 to /32 (/128); /0 would match everything,
	// which is never what a ban or allow entry means.
	if p.Bits() == 0 {
		return e, fmt.Errorf("%w: %s covers the whole address space", ErrInvalid, p)
	}
	if (set == SetBan || set == SetProbation) && p.Bits() != p.Addr().BitLen() {
		return e, fmt.Errorf("%w: the ban set takes single addresses, not %s", ErrInvalid, p)
	}
	if e.Timeout < 0 {
		return e, fmt.Errorf("%w: negative timeout %s for %s", ErrInvalid, e.Timeout, p)
	}
	if set == SetAllowCountry && e.Timeout != 0 {
		return e, fmt.Errorf("%w: %s entries have no timeout (%s)", ErrInvalid, set, p)
	}
	e.Prefix = p
	e.Comment = CleanComment(e.Comment)
	return e, nil
}

// CleanComment makes a comment safe to store: quotes and control
// characters become spaces (ipset restore quotes comments and would
// otherwise split or refuse them) and it is cut to MaxComment bytes.
func CleanComment(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '"' || r == '\\' {
			return ' '
		}
		return r
	}, s)
	for len(s) > MaxComment {
		_, size := lastRune(s)
		s = s[:len(s)-size]
	}
	return s
}

func lastRune(s string) (rune, int) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i]&0xC0 != 0x80 {
			return rune(s[i]), len(s) - i
		}
	}
	return 0, 1
}

// ValidateAll validates every entry; the first invalid one fails all.
func ValidateAll(set Set, entries []Entry) ([]Entry, error) {
	out := make([]Entry, len(entries))
	for i, e := range entries {
		v, err := Validate(set, e)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}
