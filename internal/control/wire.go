package control

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode"
)

// Version is the protocol version a Request carries; the server refuses
// any other, so that an old CLI and a new daemon never half-understand
// each other.
const Version = 1

// Caps on what crosses the socket.
const (
	// MaxRequestBytes bounds one request line: an address, a duration and a
	// 200-byte reason fit many times over.
	MaxRequestBytes = 4 << 10
	// MaxResponseLineBytes bounds one response line (one record with its
	// push evidence: account, user agent, URI, PTR are each capped far
	// below this by the engine).
	MaxResponseLineBytes = 64 << 10
	// MaxTextBytes bounds a reason or a comment.
	MaxTextBytes = 200
)

// Operations.
const (
	OpBan      = "ban"
	OpUnban    = "unban"
	OpAllow    = "allow"
	OpDisallow = "disallow"
	OpBans     = "bans"
	OpAllows   = "allows"
)

// DefaultDuration in a ban request means "the daemon's engine.ban_time
// (escalated by the offence count)"; 0 means no timeout.
const DefaultDuration time.Duration = -1

// Request is one line from the client.
type Request struct {
	V  int    `json:"v"`
	Op string `json:"op"`
	// Target is the address (ban, unban) or the CIDR (allow, disallow),
	// parsed by the server.
	Target string `json:"target,omitempty"`
	// For is a Go duration ("1h30m"); "" means DefaultDuration for a ban
	// and no timeout for an allow; "0s" means no timeout.
	For string `json:"for,omitempty"`
	// Text is the ban's reason or the allow's comment.
	Text string `json:"text,omitempty"`
}

// Response is one line from the server.
type Response struct {
	OK    bool         `json:"ok"`
	Error *WireError   `json:"error,omitempty"`
	Ban   *BanRecord   `json:"ban,omitempty"`
	Allow *AllowRecord `json:"allow,omitempty"`
	// More is set on every line of a listing but the last.
	More bool `json:"more,omitempty"`
}

// WireError is a refusal or a failure as it crosses the socket.
type WireError struct {
	Code    string `json:"code"` // one of the Code* constants
	Message string `json:"message"`
}

// Error codes on the wire; each maps to one sentinel error.
const (
	CodeRefused       = "refused"        // ErrRefused
	CodeNotBanned     = "not_banned"     // ErrNotBanned
	CodeNotAllowed    = "not_allowed"    // ErrNotAllowed
	CodeInvalid       = "invalid"        // ErrInvalid
	CodeUnauthorized  = "unauthorized"   // ErrUnauthorized
	CodeUnavailable   = "unavailable"    // ErrUnavailable
	CodeProtocol      = "protocol"       // ErrProtocol
	CodeInternalError = "internal_error" // anything else
)

var (
	// ErrRefused: the engine will not do it (never-ban rule); the message says why.
	ErrRefused = errors.New("control: refused")
	// ErrNotBanned: unban of an address that has no active ban.
	ErrNotBanned = errors.New("control: not banned")
	// ErrNotAllowed: disallow of a prefix that has no allow entry.
	ErrNotAllowed = errors.New("control: not allowed")
	// ErrInvalid: the request itself is wrong (bad address, duration, text).
	ErrInvalid = errors.New("control: invalid request")
	// ErrUnauthorized: the peer is neither root nor in control.group.
	ErrUnauthorized = errors.New("control: not authorized")
	// ErrUnavailable: the daemon cannot serve the request now (shutting down).
	ErrUnavailable = errors.New("control: unavailable")
	// ErrProtocol: the other side spoke something else (garbage, oversized line).
	ErrProtocol = errors.New("control: protocol error")
)

var codes = []struct {
	code string
	err  error
}{
	{CodeRefused, ErrRefused}, {CodeNotBanned, ErrNotBanned}, {CodeNotAllowed, ErrNotAllowed},
	{CodeInvalid, ErrInvalid}, {CodeUnauthorized, ErrUnauthorized}, {CodeUnavailable, ErrUnavailable},
	{CodeProtocol, ErrProtocol},
}

// wireError turns a handler's error into its wire form. The message is the
// error's text without the sentinel's own prefix.
func wireError(err error) *WireError {
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return &WireError{Code: c.code, Message: err.Error()}
		}
	}
	return &WireError{Code: CodeInternalError, Message: err.Error()}
}

// remoteError is an error received over the socket: its text is the
// server's, and it matches the sentinel of its code.
type remoteError struct {
	code, msg string
}

func (e *remoteError) Error() string { return e.msg }

func (e *remoteError) Is(target error) bool {
	for _, c := range codes {
		if c.code == e.code && c.err == target {
			return true
		}
	}
	return false
}

// Err returns the sentinel-matching error a WireError stands for.
func (w *WireError) Err() error {
	msg := sanitize(w.Message, 1024)
	if msg == "" {
		msg = "control: " + sanitize(w.Code, 64)
	}
	return &remoteError{code: w.Code, msg: msg}
}

// BanRecord is one ban as the control socket shows it.
type BanRecord struct {
	Addr    netip.Addr `json:"addr"`
	Country string     `json:"country,omitempty"`
	Reason  string     `json:"reason"`
	// Origin says who decided: "engine" or "manual".
	Origin  string    `json:"origin"`
	Offence int       `json:"offence"`
	Created time.Time `json:"created"`
	// Until is the ban's end; zero: no timeout.
	Until time.Time `json:"until"`
	// Monitor marks a would-ban: recorded, not in the kernel
	// (firewall.mode = "monitor").
	Monitor bool `json:"monitor,omitempty"`
	// Allowed marks a ban kept out of the kernel although the firewall
	// enforces, because its address is allow-listed now (the allow came
	// after the ban); recorded only, it ends at Until or with unban.
	Allowed bool `json:"allowed,omitempty"`
	// UID is the operator's uid for a manual ban.
	UID *uint32 `json:"uid,omitempty"`
}

// Allow kinds.
const (
	AllowStatic  = "static"  // firewall.allow in the config
	AllowLearned = "learned" // a push server learned from its registrations
	AllowSeeded  = "seeded"  // a push host of push.hosts, resolved by DNS
	AllowManual  = "manual"  // `sipsentry allow`
	// AllowProbation: a push candidate let through to the UDP SIP ports for
	// push.probation (drop mode), not an allow-set entry.
	AllowProbation = "probation"
)

// AllowRecord is one allow entry as the control socket shows it.
type AllowRecord struct {
	Prefix netip.Prefix `json:"prefix"`
	Kind   string       `json:"kind"` // AllowStatic, AllowLearned, AllowManual
	// Until is the entry's end; zero: no timeout.
	Until   time.Time `json:"until"`
	Comment string    `json:"comment,omitempty"`
	// Evidence is why a learned push server was allowed.
	Evidence *Evidence `json:"evidence,omitempty"`
	UID      *uint32   `json:"uid,omitempty"`
}

// Evidence is what made a push server learned.
type Evidence struct {
	How       string    `json:"how"`
	Account   string    `json:"account,omitempty"`
	UserAgent string    `json:"user_agent,omitempty"`
	URI       string    `json:"uri,omitempty"`
	AOR       string    `json:"aor,omitempty"`
	PTR       string    `json:"ptr,omitempty"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}

// ParseAddr parses a ban target: one address (a /32 or /128 is accepted),
// zone-less, IPv4-mapped IPv6 unmapped.
func ParseAddr(s string) (netip.Addr, error) {
	p, err := ParsePrefix(s)
	if err != nil {
		return netip.Addr{}, err
	}
	if p.Bits() != p.Addr().BitLen() {
		return netip.Addr{}, fmt.Errorf("%w: %s is a network: a ban takes one address", ErrInvalid, sanitize(s, 64))
	}
	return p.Addr(), nil
}

// ParsePrefix parses an allow target: a CIDR (host bits masked) or one
// address.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if len(s) > 64 {
		return netip.Prefix{}, fmt.Errorf("%w: target longer than 64 bytes", ErrInvalid)
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil || p.Addr().Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%w: bad CIDR %q: want e.g. \"203.0.113.0/24\" or \"2001:db8::/32\"", ErrInvalid, sanitize(s, 64))
		}
		if p.Addr().Is4In6() {
			bits := p.Bits() - 96
			if bits < 0 {
				return netip.Prefix{}, fmt.Errorf("%w: bad CIDR %q: an IPv4-mapped prefix shorter than /96", ErrInvalid, sanitize(s, 64))
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), bits)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%w: bad address %q: want an IPv4/IPv6 address or a CIDR", ErrInvalid, sanitize(s, 64))
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// ParseFor parses a request's For: "" gives def, anything else a
// non-negative Go duration.
func ParseFor(s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || len(s) > 32 {
		return 0, fmt.Errorf("%w: bad duration %q: want e.g. \"90s\", \"10m\", \"24h\"", ErrInvalid, sanitize(s, 32))
	}
	return d, nil
}

// CheckText refuses a reason or comment that is too long or holds control
// characters (it ends up in logs, the DB and the kernel's set comments).
func CheckText(what, s string) error {
	if len(s) > MaxTextBytes {
		return fmt.Errorf("%w: %s longer than %d bytes", ErrInvalid, what, MaxTextBytes)
	}
	for _, r := range s {
		if r == unicode.ReplacementChar || unicode.IsControl(r) {
			return fmt.Errorf("%w: %s holds a control character or invalid UTF-8", ErrInvalid, what)
		}
	}
	return nil
}

// sanitize makes peer-supplied text safe to print: control characters
// escaped, at most n bytes.
func sanitize(s string, n int) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= n {
			b.WriteString("…")
			break
		}
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			fmt.Fprintf(&b, "\\x%02x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
