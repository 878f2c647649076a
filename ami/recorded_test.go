package ami_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/ami"
)

// Tests against the byte-exact recordings of a real Asterisk 22 in
// ../shared/testdata/asterisk. Expected numbers come from its README tables.

var scenarioFiles = []string{
	"ami-s0-login.raw", "ami-s1-scanner-register.raw", "ami-s2-wrong-password.raw",
	"ami-s3-register-ok-push.raw", "ami-s4-invite-noauth.raw", "ami-s5-options-probe.raw",
	"ami-s6-ami-logins.raw", "ami-s7-acl.raw", "ami-s8-ipv6-tcp-netns.raw",
}

// eventCounts counts messages by Event header ("" for responses).
func eventCounts(msgs []ami.Message) map[string]int {
	c := map[string]int{}
	for i := range msgs {
		c[msgs[i].Get("Event")]++
	}
	return c
}

func sameCounts(t *testing.T, what string, got, want map[string]int) {
	t.Helper()
	keys := map[string]bool{}
	for k := range got {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	for k := range keys {
		if got[k] != want[k] {
			t.Errorf("%s: %q: got %d, want %d", what, k, got[k], want[k])
		}
	}
}

func TestRecordedSessionCounts(t *testing.T) {
	data := readCodecData(t, "ami-security-session.raw")
	msgs, st := readAll(t, data, true)
	if st.Malformed != 0 || st.Oversized != 0 {
		t.Fatalf("real stream gave skipped messages: %+v", st)
	}
	// README: 189 events + the Login response.
	sameCounts(t, "session", eventCounts(msgs), map[string]int{
		"": 1, "FullyBooted": 1, "ContactStatus": 8, "PeerStatus": 4, "DeviceStateChange": 4,
		"InvalidAccountID": 68, "ChallengeSent": 80, "ChallengeResponseFailed": 7, "SuccessfulAuth": 11,
		"FailedACL": 3, "InvalidPassword": 1, "RequestNotAllowed": 1, "RequestBadFormat": 1,
	})
	sec := 0
	for i := range msgs {
		if !ami.IsSecurityEvent(&msgs[i]) {
			continue
		}
		sec++
		ev, err := ami.ParseSecurityEvent(&msgs[i])
		if err != nil {
			t.Errorf("event %d (%s): %v", i, msgs[i].Get("Event"), err)
		}
		if ev.Suspicion != "" {
			t.Errorf("genuine event %d (%s) marked suspicious: %s", i, ev.Type, ev.Suspicion)
		}
		if ev.Time.IsZero() || ev.Time.Year() != 2026 {
			t.Errorf("event %d: EventTV %q parsed as %v", i, msgs[i].Get("EventTV"), ev.Time)
		}
	}
	if sec != 172 || len(msgs)-1 != 189 {
		t.Fatalf("security events %d (want 172), events %d (want 189)", sec, len(msgs)-1)
	}

	// The scenario cuts concatenate to the session, byte for byte.
	var cat []byte
	for _, f := range scenarioFiles {
		cat = append(cat, readCodecData(t, f)...)
	}
	if !bytes.Equal(cat, data) {
		t.Fatal("s0..s8 do not concatenate to ami-security-session.raw")
	}
}

func TestRecordedScenarioCounts(t *testing.T) {
	// The README's per-scenario table ("AMI events (count)").
	want := [][2]any{
		{"ami-s0-login.raw", map[string]int{"": 1, "FullyBooted": 1, "SuccessfulAuth": 1}},
		{"ami-s1-scanner-register.raw", map[string]int{"InvalidAccountID": 50, "ChallengeSent": 50}},
		{"ami-s2-wrong-password.raw", map[string]int{"ChallengeSent": 5, "ChallengeResponseFailed": 5}},
		{"ami-s3-register-ok-push.raw", map[string]int{"ChallengeSent": 6, "SuccessfulAuth": 7, "ContactStatus": 8, "PeerStatus": 4, "DeviceStateChange": 4}},
		{"ami-s4-invite-noauth.raw", map[string]int{"InvalidAccountID": 2, "ChallengeSent": 3}},
		{"ami-s5-options-probe.raw", map[string]int{"InvalidAccountID": 3, "ChallengeSent": 3}},
		{"ami-s6-ami-logins.raw", map[string]int{"InvalidPassword": 1, "InvalidAccountID": 1, "FailedACL": 1, "ChallengeResponseFailed": 1, "SuccessfulAuth": 3, "RequestNotAllowed": 1, "RequestBadFormat": 1}},
		{"ami-s7-acl.raw", map[string]int{"FailedACL": 2, "ChallengeSent": 1, "ChallengeResponseFailed": 1}},
		{"ami-s8-ipv6-tcp-netns.raw", map[string]int{"InvalidAccountID": 12, "ChallengeSent": 12}},
	}
	for _, w := range want {
		name := w[0].(string)
		t.Run(name, func(t *testing.T) {
			msgs, st := readAll(t, readCodecData(t, name), name == "ami-s0-login.raw")
			if st.Malformed+st.Oversized != 0 {
				t.Fatalf("skipped messages: %+v", st)
			}
			sameCounts(t, name, eventCounts(msgs), w[1].(map[string]int))
		})
	}
}

// parseScenario returns the security events of one scenario file.
func parseScenario(t *testing.T, name string) []ami.SecurityEvent {
	t.Helper()
	msgs, _ := readAll(t, readCodecData(t, name), name == "ami-s0-login.raw")
	var out []ami.SecurityEvent
	for i := range msgs {
		if !ami.IsSecurityEvent(&msgs[i]) {
			continue
		}
		ev, err := ami.ParseSecurityEvent(&msgs[i])
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, ev)
	}
	return out
}

func TestRecordedSources(t *testing.T) {
	ap := netip.MustParseAddrPort
	cases := []struct {
		file string
		// source -> count, written as "TRANSPORT ip:port"
		want map[string]int
	}{
		{"ami-s1-scanner-register.raw", map[string]int{"UDP 127.0.0.11:5070": 100}},
		{"ami-s2-wrong-password.raw", map[string]int{"UDP 127.0.0.11:5071": 10}},
		{"ami-s5-options-probe.raw", map[string]int{"UDP 127.0.0.11:5075": 6}},
		{"ami-s7-acl.raw", map[string]int{"UDP 127.0.0.21:5076": 4}},
		{"ami-s8-ipv6-tcp-netns.raw", map[string]int{
			"UDP [::1]:5077": 6, "TCP 127.0.0.12:5078": 6, "UDP 203.0.113.66:5060": 10, "UDP 203.0.113.66:5061": 2}},
	}
	for _, c := range cases {
		got := map[string]int{}
		for _, ev := range parseScenario(t, c.file) {
			got[ev.Remote.Transport+" "+ev.Remote.AddrPort.String()]++
			if ev.Service != "PJSIP" {
				t.Errorf("%s: Service %q", c.file, ev.Service)
			}
			if !ev.Local.IsValid() || ev.Local.AddrPort.Port() != 5060 {
				t.Errorf("%s: Local %v", c.file, ev.Local)
			}
		}
		sameCounts(t, c.file, got, c.want)
	}
	// IPv6 comes without brackets on the wire and must not be split on ':'.
	for _, ev := range parseScenario(t, "ami-s8-ipv6-tcp-netns.raw") {
		if ev.Remote.Addr().Is6() {
			if ev.Remote.AddrPort != ap("[::1]:5077") || ev.Local.AddrPort != ap("[::1]:5060") || ev.Local.Transport != "UDP" {
				t.Errorf("IPv6 event: remote %v local %v", ev.Remote, ev.Local)
			}
			if !strings.HasSuffix(ev.SessionID, "@::1") {
				t.Errorf("IPv6 SessionID %q", ev.SessionID)
			}
		}
		if ev.Remote.Addr() == netip.MustParseAddr("203.0.113.66") && ev.Local.Addr() != netip.MustParseAddr("198.51.100.1") {
			t.Errorf("netns attacker reached %v, want 198.51.100.1", ev.Local)
		}
	}
	// AMI events come from 127.0.0.1 over TCP to 5038.
	for _, ev := range parseScenario(t, "ami-s6-ami-logins.raw") {
		if ev.Service != "AMI" || ev.Remote.Transport != "TCP" || ev.Remote.Addr() != netip.MustParseAddr("127.0.0.1") || ev.Local.AddrPort != ap("127.0.0.1:5038") {
			t.Errorf("AMI event %s: service %q remote %v local %v", ev.Type, ev.Service, ev.Remote, ev.Local)
		}
	}
}

func TestRecordedEventFields(t *testing.T) {
	var all []ami.SecurityEvent
	for _, f := range scenarioFiles {
		all = append(all, parseScenario(t, f)...)
	}
	byType := map[string][]ami.SecurityEvent{}
	for _, ev := range all {
		byType[ev.Type] = append(byType[ev.Type], ev)
	}
	keys := func(ev ami.SecurityEvent) string {
		var ks []string
		for _, h := range ev.Fields {
			ks = append(ks, h.Key)
		}
		return strings.Join(ks, ",")
	}
	sessionTV := func(ev ami.SecurityEvent) string { return ev.SessionTV.UTC().Format("2006-01-02T15:04:05.000") }

	for _, ev := range all {
		// The recording has InvalidPassword at EventVersion 2, every other
		// type at 1.
		if wantV := map[bool]string{true: "2", false: "1"}[ev.Type == ami.EventInvalidPassword]; ev.EventVersion != wantV {
			t.Errorf("%s: EventVersion %q", ev.Type, ev.EventVersion)
		}
		wantSev := "Error"
		if ev.Type == ami.EventSuccessfulAuth || ev.Type == ami.EventChallengeSent {
			wantSev = "Informational"
		}
		if ev.Severity != wantSev {
			t.Errorf("%s: Severity %q, want %q", ev.Type, ev.Severity, wantSev)
		}
		if ev.Time.Before(time.Date(2026, 11, 25, 13, 12, 3, 0, time.UTC)) || ev.Time.After(time.Date(2026, 11, 25, 13, 13, 12, 0, time.UTC)) {
			t.Errorf("%s: EventTV %v outside the recording window", ev.Type, ev.Time)
		}
	}

	// ChallengeSent: PJSIP always has an empty Challenge.
	for _, ev := range byType[ami.EventChallengeSent] {
		if keys(ev) != "Challenge" || ev.Field("Challenge") != "" || ev.Service != "PJSIP" {
			t.Errorf("ChallengeSent fields %q challenge %q", keys(ev), ev.Field("Challenge"))
		}
	}
	// ChallengeResponseFailed: PJSIP has nonce + digest and empty
	// ExpectedResponse; AMI has an empty AccountID, a numeric challenge and a
	// filled ExpectedResponse.
	nPJ, nAMI := 0, 0
	for _, ev := range byType[ami.EventChallengeResponseFailed] {
		if k := keys(ev); !strings.HasPrefix(k, "Challenge,Response,ExpectedResponse") {
			t.Errorf("ChallengeResponseFailed fields %q", k)
		}
		switch ev.Service {
		case "PJSIP":
			nPJ++
			if !strings.Contains(ev.Field("Challenge"), "/") || len(ev.Field("Response")) != 32 || ev.Field("ExpectedResponse") != "" {
				t.Errorf("PJSIP ChallengeResponseFailed %q", ev.Fields)
			}
		case "AMI":
			nAMI++
			if ev.AccountID != "" || ev.Field("Challenge") == "" || strings.Trim(ev.Field("Challenge"), "0123456789") != "" || len(ev.Field("ExpectedResponse")) != 32 {
				t.Errorf("AMI ChallengeResponseFailed account %q fields %q", ev.AccountID, ev.Fields)
			}
			if sessionTV(ev) != "1970-01-01T00:00:00.000" {
				t.Errorf("AMI failed login SessionTV %v", ev.SessionTV)
			}
		}
	}
	if nPJ != 6 || nAMI != 1 {
		t.Errorf("ChallengeResponseFailed PJSIP %d AMI %d, want 6 and 1", nPJ, nAMI)
	}
	// FailedACL: ACLName; PJSIP's is not_match_endpoint_acl.
	for _, ev := range byType[ami.EventFailedACL] {
		if ev.Service == "PJSIP" && (ev.Field("ACLName") != "not_match_endpoint_acl" || ev.AccountID != "acl1003") {
			t.Errorf("PJSIP FailedACL account %q ACLName %q", ev.AccountID, ev.Field("ACLName"))
		}
		if ev.Service == "AMI" && ev.AccountID != "aclonly" {
			t.Errorf("AMI FailedACL account %q", ev.AccountID)
		}
	}
	// SuccessfulAuth: UsingPassword 1 for PJSIP, 0 for AMI.
	pj, am := 0, 0
	for _, ev := range byType[ami.EventSuccessfulAuth] {
		want := map[string]string{"PJSIP": "1", "AMI": "0"}[ev.Service]
		if ev.Field("UsingPassword") != want {
			t.Errorf("SuccessfulAuth %s UsingPassword %q, want %q", ev.Service, ev.Field("UsingPassword"), want)
		}
		if ev.Service == "PJSIP" {
			pj++
		} else {
			am++
		}
	}
	if pj != 6 || am != 5 {
		t.Errorf("SuccessfulAuth PJSIP %d AMI %d, want 6 and 5", pj, am)
	}
	// InvalidAccountID: the From user, or the AMI user name.
	accts := map[string]int{}
	for _, ev := range byType[ami.EventInvalidAccountID] {
		accts[ev.AccountID]++
	}
	for _, a := range []string{"100", "149", "anonymous", "admin"} {
		if accts[a] == 0 {
			t.Errorf("no InvalidAccountID for %q (have %d accounts)", a, len(accts))
		}
	}
	// ChallengeSent pairs with InvalidAccountID as <unknown>.
	if n := countAcct(byType[ami.EventChallengeSent], ami.UnknownAccount); n != 50+3+2+1+12 {
		t.Errorf("ChallengeSent <unknown>: %d", n)
	}
	// InvalidPassword (AMI only) and RequestNotAllowed / RequestBadFormat.
	for _, ev := range byType[ami.EventInvalidPassword] {
		if ev.Service != "AMI" || ev.AccountID != "sentry" || len(ev.Fields) != 0 || sessionTV(ev) != "1970-01-01T00:00:00.000" {
			t.Errorf("InvalidPassword %s %q %q %v", ev.Service, ev.AccountID, ev.Fields, ev.SessionTV)
		}
	}
	for _, ev := range byType[ami.EventRequestNotAllowed] {
		if ev.Field("RequestType") != "Action: Originate" || ev.AccountID != "sentry" {
			t.Errorf("RequestNotAllowed %q %q", ev.AccountID, ev.Fields)
		}
	}
	for _, ev := range byType[ami.EventRequestBadFormat] {
		// AccountID comes last on the wire, after SessionTV; it still lands
		// in AccountID, not in Fields.
		if ev.AccountID != "sentry" || keys(ev) != "RequestType" || ev.Field("RequestType") != "Action: NoSuchAction" || ev.SessionTV.IsZero() {
			t.Errorf("RequestBadFormat account %q fields %q", ev.AccountID, ev.Fields)
		}
	}
}

func countAcct(evs []ami.SecurityEvent, acct string) int {
	n := 0
	for _, ev := range evs {
		if ev.AccountID == acct {
			n++
		}
	}
	return n
}

func TestRecordedContactStatus(t *testing.T) {
	msgs, _ := readAll(t, readCodecData(t, "ami-s3-register-ok-push.raw"), false)
	status := map[string]int{}
	for i := range msgs {
		if msgs[i].Get("Event") != "ContactStatus" {
			if _, err := ami.ParseContactStatus(&msgs[i]); err == nil {
				t.Errorf("ParseContactStatus accepted %q", msgs[i].Get("Event"))
			}
			continue
		}
		cs, err := ami.ParseContactStatus(&msgs[i])
		if err != nil {
			t.Fatal(err)
		}
		status[cs.ContactStatus]++
		if !strings.HasPrefix(cs.URI, "sip:100") || cs.AOR != cs.EndpointName {
			t.Errorf("ContactStatus %+v", cs)
		}
		if cs.ContactStatus == "Reachable" && (cs.RoundtripUsec == "" || cs.RoundtripUsec == "0") {
			t.Errorf("Reachable without roundtrip: %+v", cs)
		}
		if strings.HasPrefix(cs.URI, "sip:1001@127.0.0.21") && !strings.HasSuffix(cs.URI, ";pn-provider=apns;pn-prid=abc;pn-param=xyz") {
			t.Errorf("push params lost: %q", cs.URI)
		}
	}
	sameCounts(t, "ContactStatus", status, map[string]int{"NonQualified": 3, "Reachable": 2, "Removed": 3})
}

func TestRecordedContactList(t *testing.T) {
	s2c, c2s := transcriptSides(t, readCodecData(t, "ami-action-pjsipshowcontacts.raw"))
	req, _ := readAll(t, c2s, false)
	if len(req) != 1 || req[0].Get("Action") != "PJSIPShowContacts" {
		t.Fatalf("request %q", req)
	}
	msgs, st := readAll(t, s2c, false)
	if st.Malformed != 0 {
		t.Fatalf("stats %+v", st)
	}
	var cs []ami.Contact
	for i := range msgs {
		if msgs[i].Get("Event") == "ContactList" {
			c, err := ami.ParseContact(&msgs[i])
			if err != nil {
				t.Fatal(err)
			}
			cs = append(cs, c)
		}
	}
	if len(cs) != 3 {
		t.Fatalf("%d contacts, want 3", len(cs))
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].ViaAddr < cs[j].ViaAddr })
	want := []struct {
		via, ua, endpoint, uriPrefix string
		push                         bool
	}{
		{"127.0.0.21:5061", "Bria iOS release 6.5.4 stamp 12345", "1001", "sip:1001@127.0.0.21:5061;transport=UDP", true},
		{"127.0.0.22:5063", "Zoiper rv2.10.20.6", "1002", "sip:1002@127.0.0.22:5063", false},
		{"127.0.0.31:5062", "Bria Push Service", "1001", "sip:1001@127.0.0.31:5062;transport=UDP", true},
	}
	for i, w := range want {
		c := cs[i]
		via, ok := c.Via()
		if !ok || via != netip.MustParseAddrPort(w.via) {
			t.Errorf("contact %d Via %v %v, want %s", i, via, ok, w.via)
		}
		if c.UserAgent != w.ua || c.Endpoint != w.endpoint || !strings.HasPrefix(c.URI, w.uriPrefix) {
			t.Errorf("contact %d = %+v", i, c)
		}
		if w.push != strings.Contains(c.URI, ";pn-provider=apns;pn-prid=abc;pn-param=xyz") {
			t.Errorf("contact %d push params: %q", i, c.URI)
		}
		if !strings.HasPrefix(c.ObjectName, w.endpoint+";@") || c.CallID == "" || c.RegServer != "sentrylab" || c.Status == "" {
			t.Errorf("contact %d = %+v", i, c)
		}
		// Registered during the 13:12 recording with expires 120..300 s.
		if c.ExpirationTime.Before(time.Date(2026, 11, 25, 13, 12, 0, 0, time.UTC)) || c.ExpirationTime.After(time.Date(2026, 11, 25, 13, 20, 0, 0, time.UTC)) {
			t.Errorf("contact %d ExpirationTime %v", i, c.ExpirationTime)
		}
	}
	if cs[2].ExpirationTime.Unix() != 1795612464 {
		t.Errorf("ExpirationTime %d, want the recorded 1795612464", cs[2].ExpirationTime.Unix())
	}
}

// Every transcript parses on both sides without a skipped message.
func TestRecordedTranscripts(t *testing.T) {
	dir := filepath.Dir(codecData(t, "ami-actions.raw"))
	files, err := filepath.Glob(filepath.Join(dir, "*.raw"))
	if err != nil || len(files) == 0 {
		t.Fatalf("glob: %v", err)
	}
	n := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(raw, []byte("#### ")) {
			continue // pure streams are covered above
		}
		n++
		s2c, c2s := transcriptSides(t, raw)
		base := filepath.Base(f)
		srv, st := readAll(t, s2c, bytes.HasPrefix(s2c, []byte("Asterisk Call Manager/")))
		if st.Malformed+st.Oversized != 0 || len(srv) == 0 {
			t.Errorf("%s S->C: %d messages, %+v", base, len(srv), st)
		}
		cli, st := readAll(t, c2s, false)
		if st.Malformed+st.Oversized != 0 || len(cli) == 0 {
			t.Errorf("%s C->S: %d messages, %+v", base, len(cli), st)
		}
		// Every action is answered with its ActionID.
		ids := map[string]bool{}
		for i := range srv {
			ids[srv[i].Get("ActionID")] = true
		}
		for i := range cli {
			if id := cli[i].Get("ActionID"); id != "" && !ids[id] {
				t.Errorf("%s: no response for ActionID %q", base, id)
			}
		}
	}
	if n < 10 {
		t.Fatalf("only %d transcripts found", n)
	}
}

// s9: every request row of s9-offsets.tsv. No event may be attributed to
// 6.6.6.6; every event's source is 127.0.0.13:<row port>; rows whose AMI
// bytes repeat a key or split a message carry Suspicion, clean rows not.
func TestRecordedS9Injection(t *testing.T) {
	data := readCodecData(t, "ami-s9-injection.raw")
	rows := readS9Offsets(t)
	if len(rows) != 25 {
		t.Fatalf("%d rows in s9-offsets.tsv", len(rows))
	}
	// From the README's s9 table: which rows put a repeated key or a split
	// into the AMI bytes. s9-01..05 keep their injection inside one SessionID
	// value; s9-07..09 inside one AccountID value.
	// Structural evidence (s9-10: a repeated RemoteAddress header; s9-11: a
	// forged block) and forged address keys inside values (Call-ID in
	// s9-01..05, From user in s9-07..09, digest Response/nonce in s9-17/18).
	suspicious := map[string]bool{"s9-01": true, "s9-02": true, "s9-03": true, "s9-04": true, "s9-05": true,
		"s9-07": true, "s9-08": true, "s9-09": true, "s9-10": true, "s9-11": true, "s9-17": true, "s9-18": true}
	fake := netip.MustParseAddr("6.6.6.6")
	total := map[string]int{}
	for _, row := range rows {
		t.Run(row.id, func(t *testing.T) {
			chunk := data[row.start:row.end]
			msgs, st := readAll(t, chunk, row.id == "s9-00")
			if st.Malformed+st.Oversized != 0 {
				t.Fatalf("skipped: %+v", st)
			}
			if row.port == 0 {
				return
			}
			sawSuspicion := false
			nEvents := 0
			for i := range msgs {
				total[msgs[i].Get("Event")]++
				if !ami.IsSecurityEvent(&msgs[i]) {
					t.Errorf("non-security message in a request row: %q", msgs[i].Headers)
					continue
				}
				ev, err := ami.ParseSecurityEvent(&msgs[i])
				if ev.Remote.Addr() == fake || ev.Local.Addr() == fake {
					t.Fatalf("event attributed to the injected 6.6.6.6: %+v", ev)
				}
				if ev.Suspicion != "" {
					sawSuspicion = true
				}
				if errors.Is(err, ami.ErrNoSource) {
					// Only s9-11's cut InvalidAccountID has no source at all.
					if row.id != "s9-11" || ev.Type != ami.EventInvalidAccountID || ev.Suspicion == "" {
						t.Errorf("no source: %+v", ev)
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				nEvents++
				want := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.13"), row.port)
				if ev.Remote.AddrPort != want || ev.Remote.Transport != "UDP" {
					t.Errorf("%s: Remote %v, want UDP %v", ev.Type, ev.Remote, want)
				}
				if !suspicious[row.id] && ev.Suspicion != "" {
					t.Errorf("%s in a clean row: Suspicion %q", ev.Type, ev.Suspicion)
				}
			}
			if suspicious[row.id] != sawSuspicion {
				t.Errorf("row suspicion %v, want %v", sawSuspicion, suspicious[row.id])
			}
			if row.rc == "124" && len(msgs) != 0 {
				t.Errorf("rejected request produced %d messages", len(msgs))
			}
			if row.rc == "0" && nEvents == 0 {
				t.Error("accepted request produced no attributable event")
			}
		})
	}
	// README: InvalidAccountID 14, ChallengeSent 21, ChallengeResponseFailed 5
	// over the request rows, plus one forged SuccessfulAuth block.
	sameCounts(t, "s9 request rows", total, map[string]int{
		"InvalidAccountID": 14, "ChallengeSent": 21, "ChallengeResponseFailed": 5, "SuccessfulAuth": 1,
	})
}

func TestRecordedS9Details(t *testing.T) {
	data := readCodecData(t, "ami-s9-injection.raw")
	msgs, _ := readAll(t, data, true)
	sameCounts(t, "s9 stream", eventCounts(msgs), map[string]int{
		"": 1, "FullyBooted": 1, "SuccessfulAuth": 2, "InvalidAccountID": 14, "ChallengeSent": 21, "ChallengeResponseFailed": 5,
	})
	var evs []ami.SecurityEvent
	for i := range msgs {
		if ami.IsSecurityEvent(&msgs[i]) {
			ev, _ := ami.ParseSecurityEvent(&msgs[i])
			evs = append(evs, ev)
		}
	}
	find := func(port uint16, typ string) []ami.SecurityEvent {
		var out []ami.SecurityEvent
		for _, ev := range evs {
			if ev.Remote.AddrPort.Port() == port && ev.Type == typ {
				out = append(out, ev)
			}
		}
		return out
	}
	// s9-01: the injected text is one opaque SessionID.
	if e := find(5090, ami.EventInvalidAccountID); len(e) != 1 || e[0].SessionID != `x",LocalAddress="IPV4/UDP/127.0.0.1/5060",RemoteAddress="IPV4/UDP/6.6.6.6/5060` || e[0].AccountID != "9001" {
		t.Errorf("s9-01: %+v", e)
	}
	// s9-07: AccountID cut to 36 bytes, verbatim.
	if e := find(5096, ami.EventInvalidAccountID); len(e) != 1 || e[0].AccountID != `",RemoteAddress="IPV4/UDP/6.6.6.6/50` {
		t.Errorf("s9-07: %+v", e)
	}
	// s9-10: two RemoteAddress headers, the fake first.
	e := find(5099, ami.EventInvalidAccountID)
	if len(e) != 1 || e[0].AccountID != "x" || !strings.Contains(e[0].Suspicion, "repeated RemoteAddress") {
		t.Errorf("s9-10: %+v", e)
	}
	// s9-11: the forged block has no Privilege/EventTV/Service/AccountID.
	e = find(5100, ami.EventSuccessfulAuth)
	if len(e) != 1 || !e[0].Time.IsZero() || e[0].Service != "" {
		t.Fatalf("s9-11 forged block: %+v", e)
	}
	for _, why := range []string{"no security Privilege", "missing EventTV", "missing Service", "missing AccountID"} {
		if !strings.Contains(e[0].Suspicion, why) {
			t.Errorf("s9-11 Suspicion %q lacks %q", e[0].Suspicion, why)
		}
	}
	// s9-14 and s9-22: raw UTF-8 kept as is.
	if e := find(5103, ami.EventInvalidAccountID); len(e) != 1 || e[0].AccountID != "日本" {
		t.Errorf("s9-14: %+v", e)
	}
	if e := find(5111, ami.EventChallengeSent); len(e) != 1 || e[0].SessionID != "日本-1@127.0.0.13" {
		t.Errorf("s9-22: %+v", e)
	}
	// s9-17: the injection sits in Response, after the true RemoteAddress.
	if e := find(5106, ami.EventChallengeResponseFailed); len(e) != 1 || e[0].Field("Response") != `abc\",RemoteAddress=\"IPV4/UDP/6.6.6.6/5060` || e[0].Suspicion != "address forged in Response" {
		t.Errorf("s9-17: %+v", e)
	}
	// s9-24: SessionID of 411 characters, not cut.
	if e := find(5113, ami.EventInvalidAccountID); len(e) != 1 || len(e[0].SessionID) != 411 {
		t.Errorf("s9-24: %+v", e)
	}
}

type s9Row struct {
	id         string
	port       uint16
	rc         string
	start, end int
}

func readS9Offsets(t testing.TB) []s9Row {
	t.Helper()
	var rows []s9Row
	lines := strings.Split(strings.TrimSpace(string(readCodecData(t, "s9-offsets.tsv"))), "\n")
	for _, l := range lines[1:] {
		f := strings.Split(l, "\t")
		if len(f) < 5 {
			t.Fatalf("bad row %q", l)
		}
		r := s9Row{id: f[0], rc: f[2]}
		if f[1] != "-" {
			ap, err := netip.ParseAddrPort(strings.TrimPrefix(f[1], "UDP "))
			if err != nil {
				t.Fatal(err)
			}
			r.port = ap.Port()
		}
		if _, err := fmt.Sscan(f[3], &r.start); err != nil {
			t.Fatal(err)
		}
		if _, err := fmt.Sscan(f[4], &r.end); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, r)
	}
	return rows
}

// The stream in Example is cut from the recordings, byte for byte.
func TestExampleStreamIsCaptured(t *testing.T) {
	rec := append(readCodecData(t, "ami-s8-ipv6-tcp-netns.raw"), readCodecData(t, "ami-s9-injection.raw")...)
	body := strings.TrimPrefix(captured, "Asterisk Call Manager/11.0.0\r\n")
	blocks := strings.SplitAfter(body, "\r\n\r\n")
	n := 0
	for _, b := range blocks {
		if b == "" {
			continue
		}
		n++
		if !bytes.Contains(rec, []byte(b)) {
			t.Errorf("example block not in the recordings: %q", b)
		}
	}
	if n != 4 {
		t.Fatalf("%d blocks", n)
	}
}
