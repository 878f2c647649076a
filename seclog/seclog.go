// Package seclog reads Asterisk's security log (logger.conf
// `security => security`) into ami.SecurityEvent values, streaming, one
// record at a time.
//
// Asterisk writes each event as
//
//	[Nov 25 13:12:05] SECURITY[25970] res_security_log.c: SecurityEvent="InvalidAccountID",EventTV="...",Severity="Error",Service="PJSIP",EventVersion="1",AccountID="100",SessionID="1-26047@127.0.0.11",LocalAddress="IPV4/UDP/127.0.0.1/5060",RemoteAddress="IPV4/UDP/127.0.0.11/5070"
//
// with NO escaping: AccountID (the URL-decoded From user), SessionID (the
// Call-ID), Challenge and Response (the client's digest) are written
// verbatim, so they can hold `",RemoteAddress="IPV4/UDP/6.6.6.6/5060`, UTF-8
// and raw CR LF that split one record over several physical lines. The
// reader therefore never searches for "the" RemoteAddress: it walks the key
// order Asterisk writes (SecurityEvent, EventTV, Severity, Service,
// EventVersion, [AccountID], SessionID, LocalAddress, RemoteAddress, then
// event-specific keys) and takes as the source the last LocalAddress/
// RemoteAddress pair at which that order holds: everything after it must be
// event-specific keys, everything before it AccountID and SessionID.
//
// Framing: a record starts at a "[date] " line holding SecurityEvent=". A
// following line continues it only while the record is still incomplete
// (no well-formed address pair yet): that is how an attacker's CR LF in
// AccountID splits a record, and it keeps a stray line after a complete
// record from corrupting it (the stray line is counted as garbage).
//
// Suspicion, in the AMI parser's terms: "repeated RemoteAddress" when a
// second RemoteAddress key (or LocalAddress/RemoteAddress pair) appears in a
// record, otherwise ami.ForgedValue's reason: a line break in a value (on
// AMI those bytes split headers and messages) or an address key forged
// inside one.
//
// It must never attribute an event to an address that appears only inside
// an attacker-controlled value, and never read a whole file into memory.
package seclog

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/sipsentry/sipsentry/ami"
)

// MaxRecordBytes bounds one record (all its physical lines). Asterisk cuts
// the From user to 36 bytes but not the Call-ID; a SIP message over UDP is
// at most 64 KiB, so a longer record is not something Asterisk wrote.
const MaxRecordBytes = 64 << 10

// Stats counts what the reader saw. Garbage is a record or line that claims
// to be part of the security log but could not be read as an event; it is
// counted, never fatal.
type Stats struct {
	Lines      int // physical lines read
	Records    int // security-event records (one may span several lines)
	Events     int // records returned as events
	Garbage    int // records or lines that could not be read
	Skipped    int // other log lines (the "Asterisk ... built by" header, other channels)
	Suspicious int // events with Suspicion set (injection evidence)
	// FirstGarbageLine is the physical line number (1-based) of the first
	// garbage record, 0 if none.
	FirstGarbageLine int
}

// Reader reads events from one security log stream.
type Reader struct {
	br *bufio.Reader

	// Counters of the framing side.
	lines, records, skipped       int
	lineGarbage, firstLineGarbage int
	// Counters of the parsing side.
	events, suspicious          int
	recGarbage, firstRecGarbage int

	pending     []byte // the record being assembled (may span lines); reused
	spare       []byte // the previous record's buffer: its view is in use until the next start
	open        bool   // pending holds a record
	pendingLine int    // line number where pending starts
	over        bool   // pending exceeded MaxRecordBytes
	eof         bool

	// copyRecords makes every record a copied string (the path before the
	// in-place parse); tests compare the two.
	copyRecords bool
	state       parseState   // scratch fields and address caches, reused
	fieldBlock  []ami.Header // detached fields, shared by many events
	lastAccount lastCopy     // the previous event's AccountID copy
	lastSession lastCopy     // the previous event's SessionID copy
}

// NewReader returns a Reader on r. It buffers (1 MiB: few read calls on a
// large file, and memory that does not depend on the file); it does not
// close r.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, 1<<20)}
}

// Stats returns the counters so far.
func (r *Reader) Stats() Stats {
	st := Stats{Lines: r.lines, Records: r.records, Events: r.events, Skipped: r.skipped,
		Suspicious: r.suspicious, Garbage: r.lineGarbage + r.recGarbage}
	st.FirstGarbageLine = r.firstLineGarbage
	if r.firstRecGarbage != 0 && (st.FirstGarbageLine == 0 || r.firstRecGarbage < st.FirstGarbageLine) {
		st.FirstGarbageLine = r.firstRecGarbage
	}
	return st
}

// frame is one record as the framing hands it on, in stream order: either
// raw text still to parse (the common case) or a result the framing
// already had to compute to find the record's end.
type frame struct {
	rec  string // raw record, trailing CR removed; parsed when raw
	buf  []byte // the bytes rec views (nil when rec is a copy)
	raw  bool
	line int // where the record starts
	ev   ami.SecurityEvent
	err  error
}

func (r *Reader) parse(f *frame) {
	if !f.raw {
		return
	}
	f.raw = false
	if f.buf == nil { // a copied record: its event may keep everything
		f.ev, f.err = parseRecord(f.rec, nil)
		return
	}
	r.state.scratch = r.state.scratch[:0]
	f.ev, f.err = parseRecord(f.rec, &r.state)
	if cap(f.ev.Fields) > cap(r.state.scratch) {
		r.state.scratch = f.ev.Fields[:0] // keep the grown scratch slice
	}
	if f.err == nil {
		r.detach(&f.ev, f.buf)
	} else {
		f.ev = ami.SecurityEvent{}
	}
}

// account counts a frame's outcome and returns its event, if any.
func (r *Reader) account(f *frame) (ami.SecurityEvent, bool) {
	r.parse(f)
	if f.err == nil {
		r.events++
		if f.ev.Suspicion != "" {
			r.suspicious++
		}
		return f.ev, true
	}
	r.recGarbage++
	if r.firstRecGarbage == 0 || f.line < r.firstRecGarbage {
		r.firstRecGarbage = f.line
	}
	return ami.SecurityEvent{}, false
}

// Next returns the next event, or io.EOF after the last one. Records that
// cannot be read are counted in Stats().Garbage and skipped; only an I/O
// error from the underlying reader is returned as an error.
func (r *Reader) Next() (ami.SecurityEvent, error) {
	for {
		f, ok, err := r.nextFrame()
		if err != nil {
			return ami.SecurityEvent{}, err
		}
		if !ok {
			continue
		}
		if ev, ok := r.account(&f); ok {
			return ev, nil
		}
	}
}

// nextFrame reads one line and returns the record it closed, if any; at
// the end it returns the last record, then io.EOF.
func (r *Reader) nextFrame() (frame, bool, error) {
	if r.eof {
		if r.open {
			r.open = false
			return r.rawFrame(), true, nil
		}
		return frame{}, false, io.EOF
	}
	line, err := r.readLine()
	if err != nil && !errors.Is(err, io.EOF) {
		return frame{}, false, fmt.Errorf("seclog: read line %d: %w", r.lines+1, err)
	}
	if errors.Is(err, io.EOF) {
		r.eof = true
		if line == nil {
			return frame{}, false, nil
		}
	}
	r.lines++
	f, ok := r.frameLine(line)
	return f, ok, nil
}

// readLine returns one physical line without its LF (a CR before the LF is
// kept: it is part of a value when Asterisk wrote an attacker's CR LF).
// Lines longer than the buffer are truncated to MaxRecordBytes+1 bytes so
// they are recognised as garbage without being held whole.
func (r *Reader) readLine() ([]byte, error) {
	b, err := r.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		// Too long for a line Asterisk writes: keep the head, drop the rest.
		head := append([]byte(nil), b...)
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = r.br.ReadSlice('\n')
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		if len(head) > MaxRecordBytes {
			head = head[:MaxRecordBytes+1]
		}
		return head, nil
	}
	if len(b) == 0 && err != nil {
		return nil, err
	}
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	return b, err
}

// frameLine feeds one physical line to the record assembler and returns a
// frame when the line closed a record.
func (r *Reader) frameLine(line []byte) (frame, bool) {
	if !r.open {
		r.start(line)
		return frame{}, false
	}
	if isRecordStart(line) && containsSecurityEvent(line) {
		// The next record starts: the pending one is final whatever it
		// parses to.
		f := r.rawFrame()
		r.start(line)
		return f, true
	}
	// The rarer cases need the parse result to decide where the record ends.
	f := r.rawFrame()
	r.parse(&f)
	if isRecordStart(line) {
		// An attacker's LF can put a "[..." line inside a record; join it
		// when the record so far is incomplete and the line is not a
		// security event of its own.
		if errors.Is(f.err, errIncomplete) && !bytes.Contains(line, []byte(`SecurityEvent="`)) {
			r.appendLine(line)
			return frame{}, false
		}
		r.start(line)
		return f, true
	}
	// A line that does not start a record continues the pending one only
	// if that one is not complete yet (an attacker's CR LF inside a value);
	// after a complete record it is garbage.
	if errors.Is(f.err, errIncomplete) {
		r.appendLine(line)
		return frame{}, false
	}
	r.open = false
	if len(bytes.TrimSpace(line)) > 0 {
		r.countLineGarbage()
	}
	return f, true
}

// rawFrame hands on the pending record.
func (r *Reader) rawFrame() frame {
	if r.over {
		return frame{line: r.pendingLine, err: errTooLong}
	}
	rec := r.pending
	// The one CR Asterisk never writes at a line end is the one an attacker
	// put there; a CRLF file (copied through another system) ends every
	// line in CR, so strip one trailing CR for parsing.
	if n := len(rec); n > 0 && rec[n-1] == '\r' {
		rec = rec[:n-1]
	}
	if r.copyRecords {
		return frame{rec: string(rec), raw: true, line: r.pendingLine}
	}
	return frame{rec: view(rec), buf: r.pending, raw: true, line: r.pendingLine}
}

func (r *Reader) start(line []byte) {
	r.open = false
	if !isRecordStart(line) {
		if len(bytes.TrimSpace(line)) > 0 {
			r.countLineGarbage()
		}
		return
	}
	if !containsSecurityEvent(line) {
		// Another log message (the file's first line says which Asterisk
		// wrote it; a shared file may hold other channels).
		r.skipped++
		return
	}
	r.records++
	// The buffers take turns: the record just framed may still be viewed
	// (its event is parsed and detached after this line is read).
	r.pending, r.spare = append(r.spare[:0], line...), r.pending
	r.open = true
	r.pendingLine = r.lines
	r.over = len(line) > MaxRecordBytes
}

func (r *Reader) appendLine(line []byte) {
	if len(r.pending)+1+len(line) > MaxRecordBytes {
		r.over = true
		return
	}
	r.pending = append(r.pending, '\n')
	r.pending = append(r.pending, line...)
}

func (r *Reader) countLineGarbage() {
	r.lineGarbage++
	if r.firstLineGarbage == 0 {
		r.firstLineGarbage = r.lines
	}
}

// isRecordStart reports whether a physical line starts a log message:
// "[<date>] ". The date format is configurable in logger.conf, so only the
// bracket shape is checked.
func isRecordStart(line []byte) bool {
	if len(line) < 3 || line[0] != '[' {
		return false
	}
	n := min(len(line), 48)
	for i := 1; i < n-1; i++ {
		if line[i] == ']' {
			return line[i+1] == ' '
		}
	}
	return false
}

func containsSecurityEvent(line []byte) bool {
	// Asterisk puts it within the first ~80 bytes: "[date] SECURITY[pid] res_security_log.c: ".
	n := min(len(line), 160)
	return bytes.Contains(line[:n], []byte(`SecurityEvent="`))
}

var (
	errIncomplete = errors.New("seclog: record incomplete")
	errTooLong    = errors.New("seclog: record longer than 64 KiB")
)

// ParseRecord parses one whole record (its physical lines joined by LF).
// It is exported for tests and for callers that frame records themselves.
func ParseRecord(rec string) (ami.SecurityEvent, error) {
	return parseRecord(rec, nil)
}

// parseState is what the Reader carries from one record to the next: a
// scratch slice for the event's fields and the last addresses parsed. With
// it, AccountID, SessionID and the fields point into the record: the Reader
// detaches them itself (see detach.go). nil (ParseRecord) copies them.
type parseState struct {
	scratch       []ami.Header
	local, remote addrCache
}

// addrCache remembers the last address text parsed and its result: a PBX
// writes the same LocalAddress on every event, and a scanner's requests
// arrive in bursts from one RemoteAddress.
type addrCache struct {
	text string // a copy, never a view of a record
	addr ami.Address
}

func (c *addrCache) parse(s string) (ami.Address, error) {
	if c == nil {
		return ami.ParseAddress(s)
	}
	if s == c.text && s != "" {
		return c.addr, nil
	}
	a, err := ami.ParseAddress(s)
	if err != nil {
		return a, err
	}
	a.Transport = internTransport(a.Transport, nil)
	if aliasesAny(a.Transport, s) { // an unknown transport: keep a copy
		a.Transport = strings.Clone(a.Transport)
	}
	c.text, c.addr = strings.Clone(s), a
	return a, nil
}

// parseRecord is ParseRecord with the Reader's state (nil: none).
func parseRecord(rec string, st *parseState) (ami.SecurityEvent, error) {
	i := strings.Index(rec, `SecurityEvent="`)
	if i < 0 || i > 160 {
		return ami.SecurityEvent{}, errors.New("seclog: no SecurityEvent key")
	}
	return parseBody(rec[i:], st)
}

// header keys in the order Asterisk writes them; their values are written
// by Asterisk itself and never contain a quote.
var headKeys = [...]string{"SecurityEvent", "EventTV", "Severity", "Service", "EventVersion"}

func parseBody(body string, st *parseState) (ami.SecurityEvent, error) {
	clone := strings.Clone
	var scratch []ami.Header
	var localCache, remoteCache *addrCache
	if st != nil {
		clone = func(s string) string { return s }
		scratch = st.scratch
		localCache, remoteCache = &st.local, &st.remote
	}
	var ev ami.SecurityEvent
	p := body
	var vals [len(headKeys)]string
	for k, key := range headKeys {
		if !strings.HasPrefix(p, key) || !strings.HasPrefix(p[len(key):], `="`) {
			if k >= 2 {
				return ev, fmt.Errorf("seclog: %s missing", key)
			}
			return ev, errIncomplete
		}
		p = p[len(key)+2:]
		end := strings.IndexByte(p, '"')
		if end < 0 {
			return ev, errIncomplete
		}
		vals[k] = p[:end]
		p = p[end+1:]
		if !strings.HasPrefix(p, ",") {
			return ev, errIncomplete
		}
		p = p[1:]
	}
	ev.Type = internType(vals[0])
	if ev.Type == "" {
		return ev, fmt.Errorf("seclog: bad event name %q", vals[0])
	}
	ev.Time, _ = ami.ParseEventTV(vals[1])
	ev.Severity = ami.InternSeverity(vals[2])
	ev.Service = ami.InternService(vals[3])
	ev.EventVersion = vals[4]

	// p now holds "[AccountID=..,]SessionID=..,LocalAddress=..,RemoteAddress=..[,tail]".
	// Walk the LocalAddress/RemoteAddress pairs from the right: the genuine
	// one is the last at which both sides parse as Asterisk writes them.
	const la = `",LocalAddress="`
	// Forward search (vectorised) for every candidate; usually one.
	var candBuf [4]int
	cands := candBuf[:0]
	for off := 0; ; {
		j := strings.Index(p[off:], la)
		if j < 0 {
			break
		}
		cands = append(cands, off+j)
		off += j + len(la)
	}
	found := false
	pairs := 0
	prefixEnd := 0
	for c := len(cands) - 1; c >= 0; c-- {
		j := cands[c]
		local, remote, rest, ok := parsePair(p[j+len(la):], localCache, remoteCache)
		if !ok {
			continue
		}
		pairs++
		if found {
			continue // only counting forged pairs to the left
		}
		acct, sess, hasAcct, ok := parsePrefix(p[:j+1], ev.Service)
		if !ok {
			continue
		}
		fields, tailAcct, ok := parseTail(rest, !hasAcct, scratch)
		if !ok {
			continue
		}
		ev.Local, ev.Remote = local, remote
		ev.SessionID = clone(sess)
		if hasAcct {
			if acct == ami.UnknownAccount { // half of all PJSIP events: no copy
				ev.AccountID = ami.UnknownAccount
			} else {
				ev.AccountID = clone(acct)
			}
		} else {
			ev.AccountID = clone(tailAcct)
		}
		ev.Fields = fields
		for _, f := range fields {
			if f.Key == "SessionTV" {
				ev.SessionTV, _ = ami.ParseEventTV(f.Value)
			}
		}
		prefixEnd = j
		found = true
	}
	if !found {
		if strings.Contains(p, `RemoteAddress="`) && (strings.HasSuffix(p, `"`)) {
			return ev, errors.New("seclog: no well-formed LocalAddress/RemoteAddress in Asterisk's key order")
		}
		return ev, errIncomplete
	}
	ev.Suspicion = suspicion(&ev, p, p[:prefixEnd], pairs)
	return ev, nil
}

// suspicion names the injection evidence a record carries, in the same
// terms the AMI parser uses: a key Asterisk writes once appearing again, or
// a line break inside a value (which on AMI splits headers and messages).
//
// prefix is the AccountID/SessionID part before the genuine pair: a
// RemoteAddress key there is a second one (after the genuine pair the tail
// parser already refuses it).
func suspicion(ev *ami.SecurityEvent, body, prefix string, pairs int) string {
	if pairs > 1 || strings.Contains(prefix, `RemoteAddress="`) {
		return "repeated RemoteAddress"
	}
	// The common case, decided on the record at once: no line break
	// anywhere and "Address" only in the keys that carry it, so no value
	// can hold what ForgedValue looks for.
	if strings.IndexByte(body, '\n') < 0 && strings.IndexByte(body, '\r') < 0 &&
		strings.Count(body, "Address") == addressKeys(ev) {
		return ""
	}
	return ami.ForgedValue(ev)
}

// addressKeys counts the keys of ev whose name holds "Address": the pair
// (LocalAddress, RemoteAddress) and tail keys such as ExpectedAddress.
func addressKeys(ev *ami.SecurityEvent) int {
	n := 2
	for _, f := range ev.Fields {
		n += strings.Count(f.Key, "Address")
	}
	return n
}

// parsePair reads `<local>",RemoteAddress="<remote>"` and returns what
// follows the closing quote.
func parsePair(s string, localCache, remoteCache *addrCache) (local, remote ami.Address, rest string, ok bool) {
	end := strings.IndexByte(s, '"')
	if end < 0 {
		return local, remote, "", false
	}
	var err error
	if local, err = localCache.parse(s[:end]); err != nil {
		return local, remote, "", false
	}
	s = s[end:]
	const ra = `",RemoteAddress="`
	if !strings.HasPrefix(s, ra) {
		return local, remote, "", false
	}
	s = s[len(ra):]
	end = strings.IndexByte(s, '"')
	if end < 0 {
		return local, remote, "", false
	}
	if remote, err = remoteCache.parse(s[:end]); err != nil {
		return local, remote, "", false
	}
	return local, remote, s[end+1:], true
}

// parsePrefix splits `AccountID="a",SessionID="s"` (s includes the closing
// quote) or `SessionID="s"` (RequestBadFormat, where AccountID comes last).
// Both values are attacker-controlled and may contain anything, so the split
// is at the first `",SessionID="`; an AMI SessionID is Asterisk's own
// session pointer and must look like one.
func parsePrefix(s, service string) (acct, sess string, hasAcct, ok bool) {
	if !strings.HasSuffix(s, `"`) {
		return "", "", false, false
	}
	s = s[:len(s)-1]
	switch {
	case strings.HasPrefix(s, `AccountID="`):
		s = s[len(`AccountID="`):]
		k := strings.Index(s, `",SessionID="`)
		if k < 0 {
			return "", "", false, false
		}
		acct, sess, hasAcct = s[:k], s[k+len(`",SessionID="`):], true
	case strings.HasPrefix(s, `SessionID="`):
		sess = s[len(`SessionID="`):]
	default:
		return "", "", false, false
	}
	if service == "AMI" && !isHexPointer(sess) {
		return "", "", false, false
	}
	return acct, sess, hasAcct, true
}

func isHexPointer(s string) bool {
	if len(s) < 3 || len(s) > 18 || s[0] != '0' || s[1] != 'x' {
		return false
	}
	for i := 2; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// parseTail reads the event-specific keys after RemoteAddress:
// `,Key="value",Key="value"` to the end. A key boundary is `",Key="` where
// Key is an identifier; keys Asterisk writes before RemoteAddress may not
// appear here (AccountID only when acctAllowed, for RequestBadFormat), and
// no key twice. Tail values from the peer (digest Challenge/Response) are
// SIP quoted strings, so their quotes arrive as \" and never form `="`.
func parseTail(s string, acctAllowed bool, scratch []ami.Header) ([]ami.Header, string, bool) {
	if s == "" {
		return nil, "", true
	}
	if s[0] != ',' || !strings.HasSuffix(s, `"`) {
		return nil, "", false
	}
	fields := scratch[:0]
	if fields == nil {
		fields = make([]ami.Header, 0, 3)
	}
	var acct string
	s = s[1:]
	for s != "" {
		eq := strings.Index(s, `="`)
		if eq <= 0 || !isIdent(s[:eq]) {
			return nil, "", false
		}
		key := s[:eq]
		s = s[eq+2:]
		// Value ends at the next `",Ident="` or at the final quote.
		end := -1
		for off := 0; ; {
			k := strings.Index(s[off:], `",`)
			if k < 0 {
				break
			}
			k += off
			if rest := s[k+2:]; startsKey(rest) {
				end = k
				break
			}
			off = k + 2
		}
		var val string
		if end < 0 {
			if s == "" || s[len(s)-1] != '"' {
				return nil, "", false
			}
			val = s[:len(s)-1]
			s = ""
		} else {
			val = s[:end]
			s = s[end+2:]
		}
		switch key {
		case "SecurityEvent", "EventTV", "Severity", "Service", "EventVersion", "SessionID", "LocalAddress", "RemoteAddress":
			return nil, "", false
		case "AccountID":
			if !acctAllowed || acct != "" {
				return nil, "", false
			}
			acct = val
			acctAllowed = false
			continue
		}
		for _, f := range fields {
			if f.Key == key {
				return nil, "", false
			}
		}
		fields = append(fields, ami.Header{Key: key, Value: val})
	}
	return fields, acct, true
}

// startsKey reports whether s begins with `Ident="`.
func startsKey(s string) bool {
	for i := 0; i < len(s) && i < 40; i++ {
		c := s[i]
		if c == '=' {
			return i > 0 && i+1 < len(s) && s[i+1] == '"'
		}
		if !isIdentByte(c) {
			return false
		}
	}
	return false
}

func isIdent(s string) bool {
	if s == "" || len(s) > 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isIdentByte(s[i]) {
			return false
		}
	}
	return true
}

func isIdentByte(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_'
}

// internType returns the constant for a known event name (so events do not
// pin the record's memory), a copy of an unknown but well-formed one, and ""
// for a malformed one.
func internType(s string) string {
	if !isIdent(s) {
		return ""
	}
	return ami.InternType(s)
}
