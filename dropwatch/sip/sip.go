// Package sip reads the few facts sipsentry wants from the text of one SIP
// request that the firewall dropped: the method, the Request-URI user, the
// From and To users, the User-Agent and which push parameters (RFC 8599
// pn-provider, pn-prid, pn-param; pn-tok and app-id of older Bria builds)
// its Contact carries.
//
// The input is a UDP payload copied by the kernel (NFLOG, at most
// --nflog-size bytes, so often cut short) and every byte of it is written by
// whoever sent the packet. So this package must never:
//
//   - allocate from a length the packet claims (Content-Length is ignored;
//     every extracted value is cut at a fixed cap, see the Max constants);
//   - look at more than MaxInput bytes or more than MaxHeaders header lines;
//   - panic, loop without bound or keep a reference to the input;
//   - interpret a value as anything but bytes: users are kept as sent
//     (percent-encoding included), and Printable must be used to print them.
//
// It is not a SIP stack: it accepts what Asterisk would reject (a raw quote
// in a user, a folded line) because a dropped packet is evidence, not a
// request to serve.
package sip

import (
	"bytes"
	"errors"
	"log/slog"
	"strconv"
)

// Caps on what is read and kept. The values are those of real traffic with
// room to spare: methods are at most 9 bytes (SUBSCRIBE), Asterisk itself
// cuts an account name to 36 bytes, and Bria's longest User-Agent seen is
// 40 bytes.
const (
	// MaxInput is how much of a payload is read (NFLOG copies 512).
	MaxInput = 4096
	// MaxHeaders is how many header lines are looked at.
	MaxHeaders = 64
	// MaxMethod is the longest method token accepted.
	MaxMethod = 16
	// MaxUser is where a URI user is cut.
	MaxUser = 64
	// MaxUserAgent is where a User-Agent is cut.
	MaxUserAgent = 128
)

// PushParams is a set of push parameters seen in a Contact.
type PushParams uint8

const (
	PNProvider PushParams = 1 << iota // pn-provider (RFC 8599)
	PNPrid                            // pn-prid (RFC 8599)
	PNParam                           // pn-param (RFC 8599)
	PNTok                             // pn-tok (older Bria builds)
	AppID                             // app-id (older Bria builds)
)

var pushNames = [...]struct {
	name string
	bit  PushParams
}{
	{"pn-provider", PNProvider}, {"pn-prid", PNPrid}, {"pn-param", PNParam},
	{"pn-tok", PNTok}, {"app-id", AppID},
}

// String lists the parameters, e.g. "pn-provider,pn-prid".
func (p PushParams) String() string {
	var b []byte
	for _, n := range pushNames {
		if p&n.bit != 0 {
			if len(b) > 0 {
				b = append(b, ',')
			}
			b = append(b, n.name...)
		}
	}
	return string(b)
}

// Request is what one request's text says. Every string holds the sender's
// bytes (possibly invalid UTF-8, control characters, quotes), cut at its cap.
type Request struct {
	Method    string
	RURIUser  string
	FromUser  string
	ToUser    string
	UserAgent string
	// Push is the set of push parameters found in any Contact.
	Push PushParams
	// Truncated: the text ended before the end of the headers, or a value
	// was cut at its cap, or more than MaxHeaders lines were skipped.
	Truncated bool
}

// Sentinel errors of Parse.
var (
	// ErrNotRequest: the payload does not start with a SIP request line.
	ErrNotRequest = errors.New("sip: not a SIP request")
	// ErrResponse: the payload is a SIP response (status line), not a request.
	ErrResponse = errors.New("sip: a SIP response, not a request")
)

// Parse reads the request line and headers of payload. It returns
// ErrNotRequest or ErrResponse, and then a zero Request, when the first line
// is not a request line; otherwise every field it could find.
func Parse(payload []byte) (Request, error) {
	var r Request
	b := payload
	if len(b) > MaxInput {
		b, r.Truncated = b[:MaxInput], true
	}
	line, rest, complete := cutLine(b)
	if bytes.HasPrefix(line, []byte("SIP/2.0 ")) {
		return Request{}, ErrResponse
	}
	sp := bytes.IndexByte(line, ' ')
	if sp < 1 || sp > MaxMethod || !isToken(line[:sp]) {
		return Request{}, ErrNotRequest
	}
	method, afterMethod := line[:sp], line[sp+1:]
	uri, version, hasVersion := bytes.Cut(afterMethod, []byte(" "))
	if !hasScheme(uri) {
		return Request{}, ErrNotRequest
	}
	version = bytes.TrimRight(version, " ")
	switch {
	case complete && !bytes.EqualFold(version, []byte("SIP/2.0")):
		return Request{}, ErrNotRequest
	case !complete && hasVersion && (len(version) > 7 || !bytes.EqualFold(version, []byte("SIP/2.0")[:len(version)])):
		// A request line cut by the capture may end inside the version.
		return Request{}, ErrNotRequest
	}
	r.Method = methodString(method)
	r.RURIUser = r.clip(uriUser(uri), MaxUser)
	if !complete {
		r.Truncated = true
		return r, nil
	}
	var haveFrom, haveTo, haveUA bool
	for n := 0; ; n++ {
		if len(rest) == 0 {
			r.Truncated = true // no empty line ended the headers
			return r, nil
		}
		if n == MaxHeaders {
			r.Truncated = true
			return r, nil
		}
		var h []byte
		h, rest, complete = cutHeader(rest)
		if len(h) == 0 && complete {
			return r, nil // the empty line: the body is not read
		}
		if !complete {
			r.Truncated = true
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			continue
		}
		name = bytes.TrimRight(name, " \t")
		value = bytes.TrimLeft(value, " \t")
		switch {
		case !haveFrom && (bytes.EqualFold(name, []byte("From")) || bytes.EqualFold(name, []byte("f"))):
			haveFrom = true
			r.FromUser = r.clip(uriUser(addrURI(value)), MaxUser)
		case !haveTo && (bytes.EqualFold(name, []byte("To")) || bytes.EqualFold(name, []byte("t"))):
			haveTo = true
			r.ToUser = r.clip(uriUser(addrURI(value)), MaxUser)
		case !haveUA && bytes.EqualFold(name, []byte("User-Agent")):
			haveUA = true
			r.UserAgent = r.clipUnfold(bytes.TrimRight(value, " \t"), MaxUserAgent)
		case bytes.EqualFold(name, []byte("Contact")) || bytes.EqualFold(name, []byte("m")):
			r.Push |= pushParams(value)
		}
		if !complete {
			return r, nil
		}
	}
}

// cutLine splits b at its first LF. complete is false when there is none
// (the capture ended inside the line). A CR before the LF is dropped.
func cutLine(b []byte) (line, rest []byte, complete bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return bytes.TrimSuffix(b, []byte("\r")), nil, false
	}
	line = b[:i]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, b[i+1:], true
}

// cutHeader is cutLine that joins folded continuation lines (a line that
// starts with a space or tab): the header keeps its CR LF and whitespace,
// which the callers skip or unfold.
func cutHeader(b []byte) (h, rest []byte, complete bool) {
	end := 0
	for {
		i := bytes.IndexByte(b[end:], '\n')
		if i < 0 {
			return bytes.TrimSuffix(b, []byte("\r")), nil, false
		}
		end += i + 1
		blank := end == 1 || (end == 2 && b[0] == '\r')
		if !blank && end < len(b) && (b[end] == ' ' || b[end] == '\t') {
			continue // folded: the header goes on
		}
		h = b[:end-1]
		if n := len(h); n > 0 && h[n-1] == '\r' {
			h = h[:n-1]
		}
		return h, b[end:], true
	}
}

// isToken reports whether b is an RFC 3261 token.
func isToken(b []byte) bool {
	for _, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case bytes.IndexByte([]byte("-.!%*_+`'~"), c) >= 0:
		default:
			return false
		}
	}
	return len(b) > 0
}

// hasScheme reports whether u starts with a URI scheme and a colon.
func hasScheme(u []byte) bool {
	i := bytes.IndexByte(u, ':')
	if i < 1 || i > 8 {
		return false
	}
	for _, c := range u[:i] {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// knownMethods are returned without an allocation.
var knownMethods = []string{"REGISTER", "INVITE", "OPTIONS", "ACK", "BYE", "CANCEL",
	"SUBSCRIBE", "NOTIFY", "MESSAGE", "INFO", "PUBLISH", "REFER", "PRACK", "UPDATE"}

func methodString(m []byte) string {
	for _, k := range knownMethods {
		if string(m) == k {
			return k
		}
	}
	return string(m)
}

// uriUser returns the user part of a sip:, sips: or tel: URI (before the
// '@', without a password), or nil.
func uriUser(u []byte) []byte {
	scheme, rest, ok := bytes.Cut(u, []byte(":"))
	if !ok {
		return nil
	}
	if bytes.EqualFold(scheme, []byte("tel")) {
		if i := bytes.IndexAny(rest, ";?"); i >= 0 {
			rest = rest[:i]
		}
		return rest
	}
	if !bytes.EqualFold(scheme, []byte("sip")) && !bytes.EqualFold(scheme, []byte("sips")) {
		return nil
	}
	at := bytes.IndexByte(rest, '@')
	if at < 0 {
		return nil
	}
	user := rest[:at]
	if i := bytes.IndexByte(user, ':'); i >= 0 {
		user = user[:i] // user:password@host
	}
	return user
}

// addrURI returns the URI of a From, To or Contact value: the text inside
// <...> after an optional display name, or an addr-spec up to its first
// header parameter.
func addrURI(v []byte) []byte {
	rest := v
	if len(rest) > 0 && rest[0] == '"' {
		// Skip the quoted display name (it may hold '<' and '\"').
		i := 1
		for i < len(rest) && rest[i] != '"' {
			if rest[i] == '\\' {
				i++
			}
			i++
		}
		if i >= len(rest) {
			return nil
		}
		rest = rest[i+1:]
	}
	if lt := bytes.IndexByte(rest, '<'); lt >= 0 {
		rest = rest[lt+1:]
		if gt := bytes.IndexByte(rest, '>'); gt >= 0 {
			rest = rest[:gt]
		}
		return rest
	}
	if i := bytes.IndexAny(rest, ";, \t\r"); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// pushParams finds push parameters anywhere in a Contact value (URI or
// header parameters, of any of several contacts).
func pushParams(v []byte) PushParams {
	var p PushParams
	for {
		i := bytes.IndexByte(v, ';')
		if i < 0 {
			return p
		}
		v = bytes.TrimLeft(v[i+1:], " \t")
		end := bytes.IndexAny(v, "=;>, \t\r\n")
		if end < 0 {
			end = len(v)
		}
		name := v[:end]
		for _, n := range pushNames {
			if bytes.EqualFold(name, []byte(n.name)) {
				p |= n.bit
			}
		}
	}
}

// clip copies at most max bytes of b into a new string; cutting marks r.
func (r *Request) clip(b []byte, max int) string {
	if len(b) > max {
		b, r.Truncated = b[:max], true
	}
	return string(b)
}

// clipUnfold is clip that turns each folded line break (CR? LF followed by
// whitespace) into one space.
func (r *Request) clipUnfold(b []byte, max int) string {
	if bytes.IndexByte(b, '\n') < 0 {
		return r.clip(b, max)
	}
	var buf [MaxUserAgent]byte
	out := buf[:0]
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c == '\r' && i+1 < len(b) && b[i+1] == '\n' {
			continue
		}
		if c == '\n' {
			for i+1 < len(b) && (b[i+1] == ' ' || b[i+1] == '\t') {
				i++
			}
			c = ' '
		}
		if len(out) == max || len(out) == len(buf) {
			r.Truncated = true
			break
		}
		out = append(out, c)
	}
	return string(out)
}

// Printable returns s unchanged when it holds only printable ASCII and no
// backslash or double quote, and otherwise s escaped as a Go string literal's contents
// (\", \\, \r, \x00, \u65e5, ...). The two forms cannot be confused: only an
// escaped value contains a backslash. Use it wherever a SIP value is
// printed (logs, tables, terminals).
func Printable(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '\\' || c == '"' {
			q := strconv.QuoteToASCII(s)
			return q[1 : len(q)-1]
		}
	}
	return s
}

// LogValue prints every value escaped with Printable.
func (r Request) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("method", Printable(r.Method)),
		slog.String("ruri_user", Printable(r.RURIUser)),
		slog.String("from_user", Printable(r.FromUser)),
		slog.String("to_user", Printable(r.ToUser)),
		slog.String("user_agent", Printable(r.UserAgent)),
	}
	if r.Push != 0 {
		attrs = append(attrs, slog.String("push_params", r.Push.String()))
	}
	if r.Truncated {
		attrs = append(attrs, slog.Bool("truncated", true))
	}
	return slog.GroupValue(attrs...)
}
