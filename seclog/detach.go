package seclog

import (
	"strings"
	"unsafe"

	"github.com/sipsentry/sipsentry/ami"
)

// The Reader parses each record in place, through a string view of its own
// buffer, instead of copying the record into a new string first: that copy
// was one allocation a line and a good part of the garbage the collector
// had to chase (issue 13's profile: 3.2 allocations a line, GC 13 %).
//
// The rule that keeps this safe: a view lives only until the record's event
// is returned. Before that, detach copies (or interns) every string of the
// event that still points into the buffer, and the buffer the view was made
// from is not written again until the record after next starts (two
// buffers take turns, see Reader.start). TestReaderEventsOutliveBuffers
// reads whole logs, keeps every event, and compares them with events read
// through the copying path.

// view returns a string sharing b's bytes. b must not change while the
// string, or anything cut from it, is in use.
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// detach makes ev independent of buf (the bytes its record was viewed in).
func (r *Reader) detach(ev *ami.SecurityEvent, buf []byte) {
	own := func(s string) string {
		if aliases(s, buf) {
			return strings.Clone(s)
		}
		return s
	}
	ev.Type = own(ev.Type)
	ev.Severity = own(ev.Severity)
	ev.Service = own(ev.Service)
	ev.EventVersion = internSmall(ev.EventVersion, buf)
	// PJSIP writes two events per rejected request (InvalidAccountID, then
	// ChallengeSent) with the same session, and a scanner repeats its
	// account: the previous event's copy is reused when the value is the same.
	ev.AccountID = r.lastAccount.own(ev.AccountID, buf)
	ev.SessionID = r.lastSession.own(ev.SessionID, buf)
	ev.Suspicion = own(ev.Suspicion)
	ev.Local.Transport = internTransport(ev.Local.Transport, buf)
	ev.Remote.Transport = internTransport(ev.Remote.Transport, buf)
	if len(ev.Fields) == 0 {
		ev.Fields = nil
		return
	}
	// The fields move from the parser's scratch slice into a shared block:
	// one allocation per few hundred events instead of one per event.
	n := len(ev.Fields)
	if cap(r.fieldBlock)-len(r.fieldBlock) < n {
		r.fieldBlock = make([]ami.Header, 0, max(fieldBlockSize, n))
	}
	start := len(r.fieldBlock)
	for _, f := range ev.Fields {
		r.fieldBlock = append(r.fieldBlock, ami.Header{Key: internKey(f.Key, buf), Value: internSmall(f.Value, buf)})
	}
	ev.Fields = r.fieldBlock[start : start+n : start+n]
}

// fieldBlockSize is how many event fields share one allocation (about
// 8 KiB; a security event has at most a handful).
const fieldBlockSize = 256

// aliases reports whether s points into buf.
func aliases(s string, buf []byte) bool {
	if len(s) == 0 || len(buf) == 0 {
		return false
	}
	p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
	b := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	return p >= b && p < b+uintptr(cap(buf))
}

// internSmall returns a constant for the values most events carry ("",
// "0", "1", "2": EventVersion, UsingPassword) and a copy of anything else
// that points into buf.
func internSmall(s string, buf []byte) string {
	switch s {
	case "":
		return ""
	case "0":
		return "0"
	case "1":
		return "1"
	case "2":
		return "2"
	}
	if aliases(s, buf) {
		return strings.Clone(s)
	}
	return s
}

func internTransport(s string, buf []byte) string {
	switch s {
	case "UDP":
		return "UDP"
	case "TCP":
		return "TCP"
	case "TLS":
		return "TLS"
	case "WS":
		return "WS"
	case "WSS":
		return "WSS"
	case "SCTP":
		return "SCTP"
	}
	if aliases(s, buf) {
		return strings.Clone(s)
	}
	return s
}

// internKey returns a constant for the event-specific keys Asterisk writes.
func internKey(s string, buf []byte) string {
	for _, k := range tailKeys {
		if s == k {
			return k
		}
	}
	if aliases(s, buf) {
		return strings.Clone(s)
	}
	return s
}

var tailKeys = [...]string{"Challenge", "Response", "ExpectedResponse", "ReceivedChallenge", "ReceivedHash",
	"UsingPassword", "ACLName", "Module", "RequestType", "RequestParams", "SessionTV", "AuthMethod",
	"AttemptedTransport", "ExpectedAddress", "AccountID"}

// lastCopy remembers the previous copy of one event field.
type lastCopy struct{ s string }

func (c *lastCopy) own(s string, buf []byte) string {
	if !aliases(s, buf) {
		return s
	}
	if s != c.s {
		c.s = strings.Clone(s)
	}
	return c.s
}

// aliasesAny reports whether a points into the bytes of b.
func aliasesAny(a, b string) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	pa := uintptr(unsafe.Pointer(unsafe.StringData(a)))
	pb := uintptr(unsafe.Pointer(unsafe.StringData(b)))
	return pa >= pb && pa < pb+uintptr(len(b))
}
