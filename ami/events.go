package ami

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Typed events on top of Message. Asterisk copies attacker-controlled
// values into security events without escaping: the From user (AccountID,
// URL-decoded, so %0D%0A becomes a real CR LF and adds AMI headers), the
// Call-ID (SessionID) and the client's digest fields. The recordings in
// shared/testdata/asterisk (the "s9 injection" section of its README) show
// forged RemoteAddress headers placed BEFORE the true one, and a forged
// "Event: SuccessfulAuth" block split off a real event. The rules below
// follow from that:
//
//   - the source is the LAST RemoteAddress header (Local likewise); an
//     earlier one is never used, even when the last does not parse;
//   - a repeated key, or a block lacking what every genuine security event
//     carries, sets Suspicion: the event is evidence of an injection
//     attempt and is still attributed to its last RemoteAddress;
//   - AccountID, SessionID, Challenge, Response, ... are opaque strings,
//     never split or interpreted.

// ErrNotSecurityEvent is returned by ParseSecurityEvent for a message whose
// Event header is not one of the security event types.
var ErrNotSecurityEvent = errors.New("ami: not a security event")

// ErrNoSource is returned by ParseSecurityEvent, together with the filled-in
// event, when the event has no parsable last RemoteAddress (for instance the
// first half of an event cut short by an injected blank line). Such an
// event must not be attributed to any address.
var ErrNoSource = errors.New("ami: security event without a usable RemoteAddress")

// IsSecurityEvent reports whether m's (first) Event header names one of the
// security event types. It says nothing about whether the event is genuine;
// ParseSecurityEvent judges that.
func IsSecurityEvent(m *Message) bool {
	for i := range m.Headers {
		if k := m.Headers[i].Key; k == "Event" || equalFold(k, "Event") {
			return isSecurityType(m.Headers[i].Value)
		}
	}
	return false
}

func isSecurityType(t string) bool {
	switch t {
	case EventFailedACL, EventInvalidAccountID, EventSessionLimit, EventMemoryLimit,
		EventLoadAverageLimit, EventRequestNotSupported, EventRequestNotAllowed,
		EventAuthMethodNotAllowed, EventRequestBadFormat, EventSuccessfulAuth,
		EventUnexpectedAddress, EventChallengeResponseFailed, EventInvalidPassword,
		EventChallengeSent, EventInvalidTransport:
		return true
	}
	return false
}

// header slots of the fields every security event shares.
const (
	cEvent = iota
	cPrivilege
	cSystemName
	cEventTV
	cSeverity
	cService
	cEventVersion
	cAccountID
	cSessionID
	cSessionTV
	cLocalAddress
	cRemoteAddress
	nCommon
)

var commonNames = [nCommon]string{"Event", "Privilege", "SystemName", "EventTV", "Severity", "Service",
	"EventVersion", "AccountID", "SessionID", "SessionTV", "LocalAddress", "RemoteAddress"}

func commonSlot(k string) int {
	// Keys from the Reader are usually the interned constants, so the exact
	// switch hits; the fold loop covers other casings.
	switch k {
	case "Event":
		return cEvent
	case "Privilege":
		return cPrivilege
	case "SystemName":
		return cSystemName
	case "EventTV":
		return cEventTV
	case "Severity":
		return cSeverity
	case "Service":
		return cService
	case "EventVersion":
		return cEventVersion
	case "AccountID":
		return cAccountID
	case "SessionID":
		return cSessionID
	case "SessionTV":
		return cSessionTV
	case "LocalAddress":
		return cLocalAddress
	case "RemoteAddress":
		return cRemoteAddress
	}
	for i, n := range commonNames {
		if len(n) == len(k) && strings.EqualFold(n, k) {
			return i
		}
	}
	return -1
}

// ParseSecurityEvent turns a security event message into a SecurityEvent.
//
// Errors: ErrNotSecurityEvent (zero event) when m's Event is not a security
// type; ErrNoSource, with the event otherwise filled in, when the last
// RemoteAddress is missing or does not parse (the genuine first half of
// s9-11's split InvalidAccountID is such an event). Callers that attribute
// events skip any error; a reporter may still show an ErrNoSource event.
//
// Remote and Local come from the LAST RemoteAddress / LocalAddress header.
// Event, Privilege, EventTV, Severity, Service, EventVersion and AccountID
// come from their FIRST header: Asterisk writes them first, and a header
// injected through AccountID can only follow it. SessionID and SessionTV
// come from the last. Time/SessionTV are zero when absent or unparsable. Suspicion is set (reasons joined by "; ") when any key repeats, or
// the block lacks Privilege "security", EventTV, Severity, Service,
// EventVersion, SessionID, LocalAddress, RemoteAddress, or AccountID
// (optional for RequestBadFormat only), or when a value carries a forged
// "…Address=" key. Every other header goes to Fields in
// wire order, repeats included.
func ParseSecurityEvent(m *Message) (SecurityEvent, error) {
	var first, last [nCommon]int
	var count [nCommon]uint8
	var slots [32]int8 // commonSlot of the first headers, to not look twice
	nFields := 0
	for i := range m.Headers {
		s := commonSlot(m.Headers[i].Key)
		if i < len(slots) {
			slots[i] = int8(s)
		}
		if s < 0 {
			nFields++
			continue
		}
		if count[s] == 0 {
			first[s] = i
		}
		last[s] = i
		if count[s] < 255 {
			count[s]++
		}
	}
	if count[cEvent] == 0 || !isSecurityType(m.Headers[first[cEvent]].Value) {
		return SecurityEvent{}, ErrNotSecurityEvent
	}
	val := func(s int, useLast bool) string {
		if count[s] == 0 {
			return ""
		}
		if useLast {
			return m.Headers[last[s]].Value
		}
		return m.Headers[first[s]].Value
	}
	ev := SecurityEvent{
		Type:         val(cEvent, false),
		Severity:     val(cSeverity, false),
		Service:      val(cService, false),
		EventVersion: val(cEventVersion, false),
		AccountID:    val(cAccountID, false),
		SessionID:    val(cSessionID, true),
	}
	ev.Received = m.Received
	ev.Time, _ = ParseEventTV(val(cEventTV, false))
	ev.SessionTV, _ = ParseEventTV(val(cSessionTV, true))
	if count[cLocalAddress] > 0 {
		ev.Local, _ = ParseAddress(val(cLocalAddress, true))
	}
	var remoteErr error
	if count[cRemoteAddress] > 0 {
		ev.Remote, remoteErr = ParseAddress(val(cRemoteAddress, true))
	}
	if nFields > 0 {
		ev.Fields = make([]Header, 0, nFields)
		for i := range m.Headers {
			s := -1
			if i < len(slots) {
				s = int(slots[i])
			} else {
				s = commonSlot(m.Headers[i].Key)
			}
			if s < 0 {
				ev.Fields = append(ev.Fields, m.Headers[i])
			}
		}
	}

	var why []string
	for s, c := range count {
		if c > 1 {
			why = append(why, "repeated "+commonNames[s])
		}
	}
	if rep := repeatedField(ev.Fields); rep != "" {
		why = append(why, "repeated "+rep)
	}
	if count[cPrivilege] == 0 || !hasPrivilege(val(cPrivilege, false), "security") {
		why = append(why, "no security Privilege")
	}
	for _, s := range [...]int{cEventTV, cSeverity, cService, cEventVersion, cSessionID, cLocalAddress, cRemoteAddress} {
		if count[s] == 0 {
			why = append(why, "missing "+commonNames[s])
		}
	}
	if count[cAccountID] == 0 && ev.Type != EventRequestBadFormat {
		why = append(why, "missing AccountID")
	}
	if remoteErr != nil {
		why = append(why, "unparsable last RemoteAddress")
	}
	// A forged address inside a value (s9-01: a Call-ID carrying
	// `",RemoteAddress="IPV4/UDP/6.6.6.6/5060`) fools no parser of ours, but
	// it is an injection attempt all the same; the security log reader
	// applies the same rule, so both sources agree.
	if r := ForgedValue(&ev); r != "" {
		why = append(why, r)
	}
	if len(why) > 0 {
		ev.Suspicion = strings.Join(why, "; ")
	}
	if !ev.Remote.IsValid() {
		return ev, ErrNoSource
	}
	return ev, nil
}

// ForgedValue returns why one of ev's attacker-controlled values (AccountID,
// SessionID, event-specific fields such as Challenge and Response) is shaped
// like an injection — a line break, or an Asterisk address key, which no
// Call-ID, account name, nonce or digest legitimately holds — or "".
func ForgedValue(ev *SecurityEvent) string {
	if r := forged("AccountID", ev.AccountID); r != "" {
		return r
	}
	if r := forged("SessionID", ev.SessionID); r != "" {
		return r
	}
	for _, f := range ev.Fields {
		if r := forged(f.Key, f.Value); r != "" {
			return r
		}
	}
	return ""
}

func forged(key, v string) string {
	switch {
	case strings.ContainsAny(v, "\r\n"):
		return "line break in " + key
	case strings.Contains(v, "Address=") || strings.Contains(v, "Address: "):
		return "address forged in " + key
	}
	return ""
}

// repeatedField returns the first key that occurs twice in fs, or "".
// Real events have a handful of fields, where a quadratic scan beats a map;
// a message may hold thousands of headers (up to MaxMessageBytes), so
// longer ones use a map to stay linear.
func repeatedField(fs []Header) string {
	if len(fs) > 32 {
		seen := make(map[string]struct{}, len(fs))
		for _, h := range fs {
			k := strings.ToLower(strings.ToUpper(h.Key)) // close to EqualFold's folding
			if _, ok := seen[k]; ok {
				return h.Key
			}
			seen[k] = struct{}{}
		}
		return ""
	}
	for i := 1; i < len(fs); i++ {
		for j := 0; j < i; j++ {
			if len(fs[i].Key) == len(fs[j].Key) && equalFold(fs[i].Key, fs[j].Key) {
				return fs[i].Key
			}
		}
	}
	return ""
}

// hasPrivilege reports whether the comma-separated list p holds class.
func hasPrivilege(p, class string) bool {
	for p != "" {
		var item string
		item, p, _ = strings.Cut(p, ",")
		if strings.EqualFold(strings.TrimSpace(item), class) {
			return true
		}
	}
	return false
}

var errEmptyTV = errors.New("ami: empty EventTV")

// ParseEventTV parses Asterisk's EventTV / SessionTV timestamps:
// "2026-11-25T13:12:07.974+0000" (Asterisk 12 and later; no colon in the
// offset), also accepting RFC 3339 and the old "seconds-microseconds" form.
func ParseEventTV(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, errEmptyTV
	}
	if t, ok := parseTVFast(s); ok {
		return t, nil
	}
	for _, layout := range [...]string{"2006-01-02T15:04:05.000-0700", "2006-01-02T15:04:05.999999999-0700", time.RFC3339Nano} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	if sec, usec, ok := strings.Cut(s, "-"); ok {
		a, err1 := strconv.ParseInt(sec, 10, 64)
		b, err2 := strconv.ParseInt(usec, 10, 64)
		if err1 == nil && err2 == nil && b >= 0 && b < 1e6 {
			return time.Unix(a, b*1000).UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("ami: EventTV %q: want 2006-01-02T15:04:05.000-0700", s)
}

// ParseContactStatus parses a ContactStatus event. A repeated key is refused
// (the contact URI comes from the registering party): better no status
// than a forged one.
func ParseContactStatus(m *Message) (ContactStatus, error) {
	if m.Get("Event") != "ContactStatus" {
		return ContactStatus{}, fmt.Errorf("ami: Event %q is not ContactStatus", m.Get("Event"))
	}
	if k := repeatedField(m.Headers); k != "" {
		return ContactStatus{}, fmt.Errorf("ami: ContactStatus with repeated %s header (possible injection); ignored", k)
	}
	return ContactStatus{
		URI:           m.Get("URI"),
		ContactStatus: m.Get("ContactStatus"),
		AOR:           m.Get("AOR"),
		EndpointName:  m.Get("EndpointName"),
		RoundtripUsec: m.Get("RoundtripUsec"),
	}, nil
}

// ParseContact parses one ContactList event of PJSIPShowContacts. A repeated
// key is refused: contacts feed push-server learning, which allow-lists
// addresses, so a possibly forged entry is dropped rather than guessed at.
// ExpirationTime is unix seconds; ViaAddr/ViaPort stay as written (see Via).
func ParseContact(m *Message) (Contact, error) {
	if m.Get("Event") != "ContactList" {
		return Contact{}, fmt.Errorf("ami: Event %q is not ContactList", m.Get("Event"))
	}
	if k := repeatedField(m.Headers); k != "" {
		return Contact{}, fmt.Errorf("ami: ContactList entry with repeated %s header (possible injection); ignored", k)
	}
	c := Contact{
		ObjectName: m.Get("ObjectName"),
		Endpoint:   m.Get("Endpoint"),
		URI:        m.Get("Uri"),
		UserAgent:  m.Get("UserAgent"),
		ViaAddr:    m.Get("ViaAddr"),
		ViaPort:    m.Get("ViaPort"),
		CallID:     m.Get("CallId"),
		Status:     m.Get("Status"),
		RegServer:  m.Get("RegServer"),
	}
	if s := m.Get("ExpirationTime"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return Contact{}, fmt.Errorf("ami: ContactList %s: ExpirationTime %q is not unix seconds", c.ObjectName, s)
		}
		c.ExpirationTime = time.Unix(sec, 0).UTC()
	}
	return c, nil
}

// Via returns the address the contact registered from (ViaAddr:ViaPort),
// false when either is missing or does not parse.
func (c Contact) Via() (netip.AddrPort, bool) {
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(c.ViaAddr, "["), "]"))
	if err != nil || a.Zone() != "" {
		return netip.AddrPort{}, false
	}
	p, err := strconv.ParseUint(c.ViaPort, 10, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(p)), true
}

// parseTVFast handles the one layout Asterisk 12+ writes,
// "2026-11-25T13:12:07.974+0000", without time.Parse's layout walk: it runs
// twice per security event on the hot path.
func parseTVFast(s string) (time.Time, bool) {
	if len(s) != 28 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
		s[19] != '.' || (s[23] != '+' && s[23] != '-') {
		return time.Time{}, false
	}
	num := func(i, n int) (int, bool) {
		v := 0
		for _, c := range []byte(s[i : i+n]) {
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
		return v, true
	}
	y, ok1 := num(0, 4)
	mo, ok2 := num(5, 2)
	d, ok3 := num(8, 2)
	h, ok4 := num(11, 2)
	mi, ok5 := num(14, 2)
	se, ok6 := num(17, 2)
	ms, ok7 := num(20, 3)
	oh, ok8 := num(24, 2)
	om, ok9 := num(26, 2)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7 && ok8 && ok9) ||
		mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60 || oh > 23 || om > 59 {
		return time.Time{}, false
	}
	t := time.Date(y, time.Month(mo), d, h, mi, se, ms*1e6, time.UTC)
	if t.Day() != d { // 31 November and the like: let time.Parse reject it
		return time.Time{}, false
	}
	off := time.Duration(oh)*time.Hour + time.Duration(om)*time.Minute
	if s[23] == '+' {
		t = t.Add(-off)
	} else {
		t = t.Add(off)
	}
	return t, true
}
