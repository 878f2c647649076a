package seclog

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/internal/testpath"
)

// testdata returns ../shared/testdata/asterisk/<name> relative to the
// module root (CI clones the repo with shared/ beside it).
func testdata(t testing.TB, name string) string {
	t.Helper()
	p := testpath.Shared(t, "asterisk", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("test data %s: %v (the shared/ directory must sit beside the repository)", name, err)
	}
	return p
}

func readAll(t testing.TB, r io.Reader) ([]ami.SecurityEvent, Stats) {
	t.Helper()
	sr := NewReader(r)
	var evs []ami.SecurityEvent
	for {
		ev, err := sr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	return evs, sr.Stats()
}

func readFile(t testing.TB, name string) ([]ami.SecurityEvent, Stats) {
	t.Helper()
	f, err := os.Open(testdata(t, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return readAll(t, f)
}

// countRecords counts, independently of the parser, the physical lines
// that open a security record.
func countRecords(t testing.TB, name string) int {
	b, err := os.ReadFile(testdata(t, name))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "[") && strings.Contains(l, "res_security_log.c: SecurityEvent=\"") {
			n++
		}
	}
	return n
}

func TestRecordedSecurityLog(t *testing.T) {
	evs, st := readFile(t, "security.log")
	want := countRecords(t, "security.log")
	if want != 172 {
		t.Fatalf("fixture: %d records, README says 172", want)
	}
	if len(evs) != want || st.Events != want || st.Garbage != 0 || st.Skipped != 1 {
		t.Fatalf("events %d (stats %+v), want %d events, 0 garbage, 1 skipped header", len(evs), st, want)
	}
	bySrc := map[netip.Addr]int{}
	byType := map[string]int{}
	for _, ev := range evs {
		if !ev.Remote.IsValid() || !ev.Local.IsValid() {
			t.Fatalf("event without addresses: %+v", ev)
		}
		if ev.Time.IsZero() {
			t.Fatalf("event without EventTV: %+v", ev)
		}
		if ev.Suspicion != "" {
			t.Errorf("clean log flagged %q: %+v", ev.Suspicion, ev)
		}
		bySrc[ev.Remote.Addr()]++
		byType[ev.Type]++
	}
	// From the README's scenario table: s1 100, s2 10, s4 5 from 127.0.0.11
	// (s5's 6 too: OPTIONS from the same scanner address).
	if got := bySrc[netip.MustParseAddr("127.0.0.11")]; got != 100+10+5+6 {
		t.Errorf("127.0.0.11: %d events, want 121", got)
	}
	if got := bySrc[netip.MustParseAddr("::1")]; got != 6 {
		t.Errorf("::1: %d events, want 6", got)
	}
	if got := bySrc[netip.MustParseAddr("203.0.113.66")]; got != 12 {
		t.Errorf("203.0.113.66: %d events, want 12", got)
	}
	if byType[ami.EventChallengeSent] != 80 || byType[ami.EventInvalidAccountID] != 68 || byType[ami.EventRequestBadFormat] != 1 {
		t.Errorf("types: %v", byType)
	}
}

func TestRequestBadFormatAccountLast(t *testing.T) {
	evs, _ := readFile(t, "security.log")
	for _, ev := range evs {
		if ev.Type != ami.EventRequestBadFormat {
			continue
		}
		if ev.AccountID != "sentry" || ev.SessionID != "0x7f0fd0001dd0" || ev.Field("RequestType") != "Action: NoSuchAction" {
			t.Fatalf("RequestBadFormat: %+v", ev)
		}
		if ev.SessionTV.IsZero() || ev.Remote.AddrPort != netip.MustParseAddrPort("127.0.0.1:47504") {
			t.Fatalf("RequestBadFormat: %+v", ev)
		}
		return
	}
	t.Fatal("no RequestBadFormat event")
}

// The s9 recording: every accepted request came from 127.0.0.13 with its
// own source port; 6.6.6.6 only ever appears inside attacker values.
func TestInjectionKeepsTrueSource(t *testing.T) {
	evs, st := readFile(t, "security-s9-injection.log")
	if len(evs) != 41 || st.Garbage != 0 || st.Lines != 45 || st.Records != 41 {
		t.Fatalf("got %d events, stats %+v; want 41 events (40 PJSIP + 1 AMI) over 45 lines, no garbage", len(evs), st)
	}
	src13 := netip.MustParseAddr("127.0.0.13")
	pj := 0
	for _, ev := range evs {
		a := ev.Remote.Addr()
		if a == netip.MustParseAddr("6.6.6.6") {
			t.Fatalf("event attributed to the forged 6.6.6.6: %+v", ev)
		}
		if ev.Service == "PJSIP" {
			pj++
			if a != src13 {
				t.Fatalf("PJSIP event from %v, want 127.0.0.13: %+v", a, ev)
			}
		} else if a != netip.MustParseAddr("127.0.0.1") || ev.Service != "AMI" {
			t.Fatalf("unexpected event %+v", ev)
		}
	}
	if pj != 40 {
		t.Fatalf("PJSIP events %d, want 40", pj)
	}
}

// Per request (s9-offsets.tsv): the port each record must carry and what
// the forged values look like after parsing.
func TestInjectionRecords(t *testing.T) {
	evs, _ := readFile(t, "security-s9-injection.log")
	byPort := map[uint16][]ami.SecurityEvent{}
	for _, ev := range evs {
		byPort[ev.Remote.AddrPort.Port()] = append(byPort[ev.Remote.AddrPort.Port()], ev)
	}
	check := func(port uint16, n int, f func(t *testing.T, evs []ami.SecurityEvent)) {
		t.Helper()
		got := byPort[port]
		if len(got) != n {
			t.Fatalf("port %d: %d events, want %d", port, len(got), n)
		}
		if f != nil {
			f(t, got)
		}
	}
	// s9-01: a forged LocalAddress/RemoteAddress pair inside the Call-ID.
	check(5090, 2, func(t *testing.T, evs []ami.SecurityEvent) {
		want := `x",LocalAddress="IPV4/UDP/127.0.0.1/5060",RemoteAddress="IPV4/UDP/6.6.6.6/5060`
		for _, ev := range evs {
			if ev.SessionID != want || ev.Suspicion == "" {
				t.Errorf("s9-01: SessionID %q suspicion %q", ev.SessionID, ev.Suspicion)
			}
		}
		if evs[0].AccountID != "9001" {
			t.Errorf("s9-01: AccountID %q", evs[0].AccountID)
		}
	})
	// s9-02: unquoted lookalike in the Call-ID, one genuine key only.
	check(5091, 2, func(t *testing.T, evs []ami.SecurityEvent) {
		if evs[0].SessionID != "abc,RemoteAddress=IPV4/UDP/6.6.6.6/5060" {
			t.Errorf("s9-02: SessionID %q", evs[0].SessionID)
		}
	})
	// s9-07: a forged key in AccountID before the real one.
	check(5096, 2, func(t *testing.T, evs []ami.SecurityEvent) {
		if evs[0].AccountID != `",RemoteAddress="IPV4/UDP/6.6.6.6/50` || evs[0].Suspicion != "repeated RemoteAddress" {
			t.Errorf("s9-07: %q %q", evs[0].AccountID, evs[0].Suspicion)
		}
		if evs[1].Suspicion != "" {
			t.Errorf("s9-07 ChallengeSent is clean, got %q", evs[1].Suspicion)
		}
	})
	// s9-10: CR LF in AccountID splits the record over 2 lines.
	check(5099, 2, func(t *testing.T, evs []ami.SecurityEvent) {
		if evs[0].AccountID != "x\r\nRemoteAddress: IPV4/UDP/6.6.6.6/1" || evs[0].Suspicion != "line break in AccountID" {
			t.Errorf("s9-10: %q %q", evs[0].AccountID, evs[0].Suspicion)
		}
		if evs[0].SessionID != "1-4323@127.0.0.13" {
			t.Errorf("s9-10: SessionID %q", evs[0].SessionID)
		}
	})
	// s9-11: 3 physical lines, a forged "Event: SuccessfulAuth" inside.
	check(5100, 2, func(t *testing.T, evs []ami.SecurityEvent) {
		if evs[0].Type != ami.EventInvalidAccountID || evs[0].AccountID != "\r\n\r\nEvent: SuccessfulAuth" {
			t.Errorf("s9-11: %s %q", evs[0].Type, evs[0].AccountID)
		}
	})
	// s9-14: raw UTF-8.
	check(5103, 2, func(t *testing.T, evs []ami.SecurityEvent) {
		if evs[0].AccountID != "日本" {
			t.Errorf("s9-14: %q", evs[0].AccountID)
		}
	})
	// s9-17: backslash-escaped forgery in Response lands after the real key.
	check(5106, 2, func(t *testing.T, evs []ami.SecurityEvent) {
		if got := evs[1].Field("Response"); got != `abc\",RemoteAddress=\"IPV4/UDP/6.6.6.6/5060` {
			t.Errorf("s9-17: Response %q", got)
		}
		if evs[1].Field("ExpectedResponse") != "" || len(evs[1].Fields) != 3 {
			t.Errorf("s9-17: fields %+v", evs[1].Fields)
		}
	})
	check(5107, 2, func(t *testing.T, evs []ami.SecurityEvent) {
		if got := evs[1].Field("Challenge"); got != `x\",RemoteAddress=\"IPV4/UDP/6.6.6.6/50601795614263/fffcd57fd78` {
			t.Errorf("s9-18: Challenge %q", got)
		}
	})
	// s9-24: a 411-byte Call-ID is not cut.
	check(5113, 2, func(t *testing.T, evs []ami.SecurityEvent) {
		if len(evs[0].SessionID) != 411 {
			t.Errorf("s9-24: SessionID length %d", len(evs[0].SessionID))
		}
	})
	for _, p := range []uint16{5095, 5102, 5108} { // dropped by pjsip: no record
		if len(byPort[p]) != 0 {
			t.Errorf("port %d: rejected request produced events", p)
		}
	}
}

func TestGarbageCountedNotFatal(t *testing.T) {
	in := strings.Join([]string{
		`[Nov 25 13:12:04] Asterisk 22.10.1 built by root @ vm`,
		`this is not a log line`,
		`[Nov 25 13:12:07] SECURITY[1] res_security_log.c: SecurityEvent="InvalidAccountID",EventTV="2026-11-25T13:12:07.974+0000",Severity="Error",Service="PJSIP",EventVersion="1",AccountID="100",SessionID="s1",LocalAddress="IPV4/UDP/127.0.0.1/5060",RemoteAddress="IPV4/UDP/198.51.100.7/5070"`,
		`garbage after a complete record`,
		`[Nov 25 13:12:08] SECURITY[1] res_security_log.c: SecurityEvent="InvalidAccountID",EventTV="2026-11-25T13:12:08.000+0000",Severity="Error",Service="PJSIP",EventVersion="1",AccountID="101",SessionID="s2",LocalAddress="IPV4/UDP/127.0.0.1/5060",RemoteAddress="IPV4/UDP/not-an-ip/5070"`,
		`[Nov 25 13:12:09] SECURITY[1] res_security_log.c: SecurityEvent="ChallengeSent",EventTV="2026-11-25T13:12:09.000+0000",Severity="Informational",Service="PJSIP",EventVersion="1",AccountID="<unknown>",SessionID="s3",LocalAddress="IPV4/UDP/127.0.0.1/5060",RemoteAddress="IPV6/UDP/2001:db8::7/5070",Challenge=""`,
		`[Nov 25 13:12:10] SECURITY[1] res_security_log.c: SecurityEvent="ChallengeSent",EventTV="2026-11-25T13:12:10.000+0000",Severity="Inform`,
		``,
	}, "\n")
	evs, st := readAll(t, strings.NewReader(in))
	if len(evs) != 2 {
		t.Fatalf("events %d, want 2: %+v", len(evs), evs)
	}
	if evs[0].Remote.Addr() != netip.MustParseAddr("198.51.100.7") || evs[1].Remote.Addr() != netip.MustParseAddr("2001:db8::7") {
		t.Fatalf("sources: %v %v", evs[0].Remote, evs[1].Remote)
	}
	if st.Garbage != 4 || st.FirstGarbageLine != 2 || st.Skipped != 1 {
		t.Fatalf("stats %+v, want 4 garbage (first at line 2), 1 skipped", st)
	}
}

// A forged pair followed by something that looks like a tail key, inside
// the Call-ID: both pairs look well formed, the genuine one is the last.
func TestForgedPairWithTailLookalike(t *testing.T) {
	rec := `[Nov 25 13:12:07] SECURITY[1] res_security_log.c: SecurityEvent="ChallengeSent",EventTV="2026-11-25T13:12:07.974+0000",Severity="Informational",Service="PJSIP",EventVersion="1",AccountID="<unknown>",SessionID="x",LocalAddress="IPV4/UDP/127.0.0.1/5060",RemoteAddress="IPV4/UDP/6.6.6.6/5060",ACLName="",LocalAddress="IPV4/UDP/127.0.0.1/5060",RemoteAddress="IPV4/UDP/203.0.113.9/5060",Challenge=""`
	ev, err := ParseRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Remote.Addr() != netip.MustParseAddr("203.0.113.9") || ev.Suspicion == "" {
		t.Fatalf("got %v suspicion %q", ev.Remote, ev.Suspicion)
	}
}

// An AMI request type is sent by the AMI client; a pair forged there comes
// after the genuine one, and the AMI SessionID (Asterisk's pointer) pins
// the genuine position.
func TestForgedPairInAMITail(t *testing.T) {
	rec := `[Nov 25 13:13:01] SECURITY[1] res_security_log.c: SecurityEvent="RequestNotAllowed",EventTV="2026-11-25T13:13:01.134+0000",Severity="Error",Service="AMI",EventVersion="1",AccountID="sentry",SessionID="0x7f0fd0001dd0",LocalAddress="IPV4/TCP/127.0.0.1/5038",RemoteAddress="IPV4/TCP/203.0.113.5/47504",RequestType="x",LocalAddress="IPV4/TCP/127.0.0.1/5038",RemoteAddress="IPV4/TCP/6.6.6.6/1",SessionTV="2026-11-25T13:13:01.134+0000"`
	ev, err := ParseRecord(rec)
	if err == nil && ev.Remote.Addr() == netip.MustParseAddr("6.6.6.6") {
		t.Fatalf("attributed to the forged address: %+v", ev)
	}
}

func FuzzParseRecord(f *testing.F) {
	for _, name := range []string{"security.log", "security-s9-injection.log"} {
		b, err := os.ReadFile(testdata(f, name))
		if err != nil {
			f.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n[") {
			f.Add("[" + l)
		}
	}
	f.Fuzz(func(t *testing.T, rec string) {
		ev, err := ParseRecord(rec)
		if err != nil {
			return
		}
		if !ev.Remote.IsValid() {
			t.Fatalf("event without source: %q", rec)
		}
		// The source must appear in the record as a RemoteAddress value.
		if !strings.Contains(rec, `RemoteAddress="`+ev.Remote.String()+`"`) {
			// ParseAddress unmaps v4-mapped v6; tolerate only that.
			if !ev.Remote.Addr().Is4() {
				t.Fatalf("source %v not in record %q", ev.Remote, rec)
			}
		}
	})
}

// FuzzReader feeds arbitrary streams (seeded with the recorded logs and
// splices of them) through the line framing: it must never panic, count
// every returned event, and only return events whose source was written in
// the stream as a RemoteAddress value.
func FuzzReader(f *testing.F) {
	for _, name := range []string{"security.log", "security-s9-injection.log"} {
		b, err := os.ReadFile(testdata(f, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[:min(len(b), 4000)])
		f.Add(b[len(b)-min(len(b), 4000):])
	}
	f.Add([]byte("[x] y\n\r\n[a] SecurityEvent=\"\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data))
		n := 0
		for {
			ev, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			n++
			if !ev.Remote.IsValid() {
				t.Fatalf("event without source")
			}
			if !bytes.Contains(data, []byte(`RemoteAddress="`+ev.Remote.String()+`"`)) && !ev.Remote.Addr().Is4() {
				t.Fatalf("source %v not in the stream", ev.Remote)
			}
		}
		st := r.Stats()
		if st.Events != n || st.Records < st.Events || st.Lines > bytes.Count(data, []byte("\n"))+1 {
			t.Fatalf("stats %+v for %d events", st, n)
		}
	})
}

// A log message of another kind between two records (Asterisk's "built by"
// line after a restart, as in the shipped sample) ends the record before it
// and is skipped; the record must not be returned twice.
func TestOtherLogLineBetweenRecords(t *testing.T) {
	rec := func(acct string) string {
		return `[Nov 25 13:12:07] SECURITY[1] res_security_log.c: SecurityEvent="InvalidAccountID",EventTV="2026-11-25T13:12:07.974+0000",Severity="Error",Service="PJSIP",EventVersion="1",AccountID="` +
			acct + `",SessionID="s",LocalAddress="IPV4/UDP/127.0.0.1/5060",RemoteAddress="IPV4/UDP/198.51.100.7/5070"`
	}
	in := rec("100") + "\n[Nov 25 13:43:47] Asterisk 22.10.1 built by root\n" + rec("101") + "\n[Nov 25 13:43:48] NOTICE[2] x.c: other\n"
	evs, st := readAll(t, strings.NewReader(in))
	if len(evs) != 2 || evs[0].AccountID != "100" || evs[1].AccountID != "101" || st.Skipped != 2 || st.Garbage != 0 {
		t.Fatalf("events %+v stats %+v", evs, st)
	}
}

// Lines longer than any record Asterisk writes are garbage, whether they
// fit the read buffer or not, and the records around them survive.
func TestOverlongLines(t *testing.T) {
	rec := `[Nov 25 13:12:07] SECURITY[1] res_security_log.c: SecurityEvent="InvalidAccountID",EventTV="2026-11-25T13:12:07.974+0000",Severity="Error",Service="PJSIP",EventVersion="1",AccountID="100",SessionID="s",LocalAddress="IPV4/UDP/127.0.0.1/5060",RemoteAddress="IPV4/UDP/198.51.100.7/5070"`
	huge := func(n int) string {
		return `[Nov 25 13:12:08] SECURITY[1] res_security_log.c: SecurityEvent="InvalidAccountID",EventTV="2026-11-25T13:12:07.974+0000",Severity="Error",Service="PJSIP",EventVersion="1",AccountID="x",SessionID="` +
			strings.Repeat("L", n) + `",LocalAddress="IPV4/UDP/127.0.0.1/5060",RemoteAddress="IPV4/UDP/6.6.6.6/5070"`
	}
	in := rec + "\n" + huge(100<<10) + "\n" + rec + "\n" + huge(3<<20) + "\n" + rec + "\n"
	evs, st := readAll(t, strings.NewReader(in))
	if len(evs) != 3 || st.Garbage != 2 || st.Lines != 5 {
		t.Fatalf("%d events, stats %+v", len(evs), st)
	}
	for _, ev := range evs {
		if ev.Remote.Addr() != netip.MustParseAddr("198.51.100.7") {
			t.Fatalf("event from %v", ev.Remote)
		}
	}
}
