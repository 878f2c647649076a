package report

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/activity"
	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/geo"
	"github.com/sipsentry/sipsentry/internal/testpath"
	"github.com/sipsentry/sipsentry/seclog"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func sharedData(t testing.TB, rel string) string {
	t.Helper()
	return testpath.Shared(t, rel)
}

// fakeGeo answers from a table, like geo.Geo with lists for JP and US, an
// mmdb, and JP allowed.
type fakeGeo map[netip.Addr]geo.Verdict

func (f fakeGeo) Lookup(a netip.Addr) geo.Verdict {
	v, ok := f[a]
	if !ok {
		return geo.Verdict{IP: a}
	}
	v.IP = a
	return v
}

var testGeo = fakeGeo{
	netip.MustParseAddr("127.0.0.11"):   {MMDBCountry: "CN", ListCountry: "CN"},
	netip.MustParseAddr("127.0.0.12"):   {MMDBCountry: "RU", ListCountry: "RU"},
	netip.MustParseAddr("127.0.0.21"):   {MMDBCountry: "JP", ListCountry: "JP", InAllowed: true},
	netip.MustParseAddr("127.0.0.22"):   {MMDBCountry: "JP", ListCountry: "JP", InAllowed: true},
	netip.MustParseAddr("127.0.0.31"):   {MMDBCountry: "US", ListCountry: "US"},
	netip.MustParseAddr("127.0.0.1"):    {MMDBCountry: "SG", ListCountry: "DE", Disagree: true},
	netip.MustParseAddr("::1"):          {MMDBCountry: "DE", ListCountry: "DE"},
	netip.MustParseAddr("203.0.113.66"): {MMDBCountry: "", ListCountry: ""},
	netip.MustParseAddr("127.0.0.13"):   {MMDBCountry: "RU", ListCountry: "RU"},
}

var testGeoInfo = GeoInfo{ListsLoaded: true, MMDBLoaded: true, AllowCountries: []string{"JP"}}

func aggregate(t testing.TB, files ...string) *Aggregator {
	t.Helper()
	agg := NewAggregator()
	for _, name := range files {
		f, err := os.Open(sharedData(t, "asterisk/"+name))
		if err != nil {
			t.Fatal(err)
		}
		r := seclog.NewReader(f)
		for {
			ev, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			agg.Add(&ev)
		}
		f.Close()
	}
	return agg
}

// testReport is the recorded logs plus two sources with daemon decisions,
// so every status and note shows up.
func testReport(t testing.TB) *Report {
	in := aggregate(t, "security.log", "security-s9-injection.log").Inputs()
	t0 := time.Date(2026, 11, 25, 13, 20, 0, 0, time.UTC)
	banned := Input{Source: activity.Source{Addr: netip.MustParseAddr("198.51.100.9"), FirstSeen: t0, LastSeen: t0.Add(time.Minute),
		Counts: activity.Counts{AuthFailed: 7}, Accounts: []activity.AccountCount{{Account: "1001", Count: 7}}, DistinctAccounts: 1,
		LastUserAgent: "sipcli/v1.8"}, Status: StatusBanned, BannedUntil: t0.Add(4 * time.Hour), Offences: 2, Note: "7 failures in 10m0s"}
	push := Input{Source: activity.Source{Addr: netip.MustParseAddr("2001:db8::31"), FirstSeen: t0, LastSeen: t0.Add(2 * time.Minute),
		Counts: activity.Counts{AuthOK: 3}, LastUserAgent: "Bria Push Service\x1b[31m"}, Status: StatusLearnedPush,
		Note: "push server (user_agent): UA Bria Push Service"}
	in = append(in, banned, push)
	g := fakeGeo{}
	for k, v := range testGeo {
		g[k] = v
	}
	g[netip.MustParseAddr("2001:db8::31")] = geo.Verdict{MMDBCountry: "US", ListCountry: "US"}
	g[netip.MustParseAddr("198.51.100.9")] = geo.Verdict{MMDBCountry: "BR", ListCountry: "BR"}
	rep := Build(in, g, testGeoInfo)
	if err := rep.Apply(Options{}); err != nil {
		t.Fatal(err)
	}
	return rep
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run `go test ./report -update` to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (rerun with -update if intended)\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestGoldenTable(t *testing.T) {
	var b bytes.Buffer
	if err := WriteTable(&b, testReport(t), TableOptions{Footer: []string{"read 218 lines: 213 events, 0 garbage lines"}}); err != nil {
		t.Fatal(err)
	}
	golden(t, "sources.table.golden", b.Bytes())
}

func TestGoldenTableNarrow(t *testing.T) {
	for _, w := range []int{120, 60} {
		var b bytes.Buffer
		if err := WriteTable(&b, testReport(t), TableOptions{Width: w}); err != nil {
			t.Fatal(err)
		}
		for i, l := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
			if Width(l) > w {
				t.Fatalf("width %d: line %d is %d wide: %q", w, i+1, Width(l), l)
			}
		}
		golden(t, "sources.table"+map[int]string{120: "-120", 60: "-60"}[w]+".golden", b.Bytes())
	}
}

func TestGoldenJSON(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, testReport(t)); err != nil {
		t.Fatal(err)
	}
	golden(t, "sources.json.golden", b.Bytes())
	var rows []map[string]any
	if err := json.Unmarshal(b.Bytes(), &rows); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ip", "country_mmdb", "country_list", "in_allowed", "first_seen", "last_seen", "auth_ok",
		"auth_failed", "unknown_account", "acl", "other", "injection", "failures", "accounts", "distinct_accounts",
		"last_user_agent", "status", "notes"} {
		if _, ok := rows[0][k]; !ok {
			t.Errorf("JSON row lacks key %q", k)
		}
	}
}

func TestGoldenCSV(t *testing.T) {
	var b bytes.Buffer
	if err := WriteCSV(&b, testReport(t)); err != nil {
		t.Fatal(err)
	}
	golden(t, "sources.csv.golden", b.Bytes())
	recs, err := csv.NewReader(bytes.NewReader(b.Bytes())).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(testReport(t).Rows)+1 {
		t.Fatalf("%d CSV records", len(recs))
	}
}

// The numbers in the report are the activity aggregate's, checked here
// against an independent count of the recorded log.
func TestCountsFromRecordedLog(t *testing.T) {
	rep := Build(aggregate(t, "security.log").Inputs(), testGeo, testGeoInfo)
	byIP := map[string]Row{}
	for _, r := range rep.Rows {
		byIP[r.IP.String()] = r
	}
	if len(byIP) != 8 {
		t.Fatalf("%d sources, want 8 (127.0.0.1/.11/.12/.21/.22/.31, ::1, 203.0.113.66)", len(byIP))
	}
	// s1: 50 unknown users from the scanner, each InvalidAccountID +
	// ChallengeSent(<unknown>) for one request counted once; s4 2 + 1 spoofed
	// 1001 (ChallengeSent only: neutral); s5 3. s2: 5 wrong passwords.
	sc := byIP["127.0.0.11"]
	if sc.UnknownAccount != 50+2+3 || sc.AuthFailed != 5 || sc.AuthOK != 0 {
		t.Errorf("scanner 127.0.0.11: %+v", sc)
	}
	if sc.DistinctAccounts < 50 { // 100..149, then anonymous and the s5 probes
		t.Errorf("scanner accounts: %d distinct, want at least 50", sc.DistinctAccounts)
	}
	if r := byIP["203.0.113.66"]; r.UnknownAccount != 6 || r.Failures != 6 {
		t.Errorf("203.0.113.66: %+v", r)
	}
	if r := byIP["127.0.0.21"]; r.ACL != 2 || r.AuthOK == 0 {
		t.Errorf("phone 127.0.0.21: %+v", r)
	}
	// Loopback has no country: no "foreign login" even outside the allowed set.
	if r := byIP["127.0.0.31"]; r.AuthOK == 0 || strings.Contains(strings.Join(r.Notes, ";"), "foreign login") {
		t.Errorf("127.0.0.31: %+v", r)
	}
	// A login from a global address outside the allowed countries gets the note.
	foreign := Input{Source: activity.Source{Addr: netip.MustParseAddr("198.51.100.31"), Counts: activity.Counts{AuthOK: 1}}}
	g := fakeGeo{foreign.Addr: {MMDBCountry: "US", ListCountry: "US"}}
	if r := Build([]Input{foreign}, g, testGeoInfo).Rows[0]; !strings.Contains(strings.Join(r.Notes, ";"), "foreign login") {
		t.Errorf("198.51.100.31: %+v", r)
	}
	if r := byIP["127.0.0.21"]; strings.Contains(strings.Join(r.Notes, ";"), "foreign login") {
		t.Errorf("127.0.0.21 is in an allowed country: %+v", r)
	}
	if r := byIP["127.0.0.1"]; !strings.Contains(strings.Join(r.Notes, ";"), "list and mmdb disagree") {
		t.Errorf("127.0.0.1: %+v", r)
	}
}

func TestInjectionLogRows(t *testing.T) {
	agg := aggregate(t, "security-s9-injection.log")
	if agg.Events != 41 || agg.Unattributed != 0 {
		t.Fatalf("events %d unattributed %d", agg.Events, agg.Unattributed)
	}
	rep := Build(agg.Inputs(), testGeo, testGeoInfo)
	if len(rep.Rows) != 2 {
		t.Fatalf("rows: %+v", rep.Rows)
	}
	for _, r := range rep.Rows {
		if r.IP == netip.MustParseAddr("6.6.6.6") {
			t.Fatal("row for the forged 6.6.6.6")
		}
		if r.IP == netip.MustParseAddr("127.0.0.13") {
			if r.Status != StatusFlagged || r.Injection == 0 || !strings.Contains(strings.Join(r.Notes, ";"), "injection attempt") {
				t.Errorf("127.0.0.13: %+v", r)
			}
		}
	}
}

func TestApplyFilters(t *testing.T) {
	cases := []struct {
		name string
		o    Options
		want []string
	}{
		{"country", Options{Countries: []string{"JP"}, Sort: "ip"}, []string{"127.0.0.21", "127.0.0.22"}},
		{"status", Options{Statuses: []string{StatusBanned, StatusLearnedPush}, Sort: "ip"}, []string{"198.51.100.9", "2001:db8::31"}},
		{"min failures + sort", Options{MinFailures: 7, Sort: "failures"}, []string{"127.0.0.11", "127.0.0.13", "198.51.100.9"}},
		{"limit", Options{Sort: "failures", Limit: 1}, []string{"127.0.0.11"}},
		{"since", Options{Since: time.Date(2026, 11, 25, 13, 30, 0, 0, time.UTC), Sort: "ip"}, []string{"127.0.0.1", "127.0.0.13"}},
	}
	for _, c := range cases {
		rep := testReport(t)
		if err := rep.Apply(c.o); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range rep.Rows {
			got = append(got, r.IP.String())
		}
		if strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("%s: got %v want %v", c.name, got, c.want)
		}
	}
	rep := testReport(t)
	if err := rep.Apply(Options{Sort: "bogus"}); err == nil {
		t.Error("bad sort key accepted")
	}
	if err := rep.Apply(Options{Statuses: []string{"bogus"}}); err == nil {
		t.Error("bad status accepted")
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"plain":              "plain",
		"日本":                 "日本",
		"x\r\nRemoteAddress": `x\r\nRemoteAddress`,
		"\x1b[31mred":        `\x1b[31mred`,
		"a\u202eb":           `a\u202eb`,
		string([]byte{0xff}): `\xff`,
		"\u0085next-line-c1": `\x85next-line-c1`,
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
	if got := Truncate("日本語テキスト", 7); Width(got) > 7 || !strings.HasSuffix(got, "…") {
		t.Errorf("Truncate wide: %q (%d)", got, Width(got))
	}
	if noFormula("=cmd") != "'=cmd" || noFormula("100") != "100" {
		t.Error("formula guard")
	}
}

func TestEveryWidthFits(t *testing.T) {
	rep := testReport(t)
	for w := 20; w <= 260; w += 7 {
		var b bytes.Buffer
		if err := WriteTable(&b, rep, TableOptions{Width: w, Footer: []string{strings.Repeat("x", 300)}}); err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
			if Width(l) > w {
				t.Fatalf("width %d: %q is %d wide", w, l, Width(l))
			}
		}
		if !strings.Contains(b.String(), "127.0.0.13") {
			t.Fatalf("width %d: a source is missing", w)
		}
	}
}

// An event without EventTV (the forged AMI block of s9-11 has none) must
// not move first seen to the zero time or past the events around it.
func TestAggregatorEventWithoutTime(t *testing.T) {
	agg := NewAggregator()
	t0 := time.Date(2026, 11, 25, 13, 43, 53, 0, time.UTC)
	src := netip.MustParseAddrPort("198.51.100.13:5090")
	for i, at := range []time.Time{t0, {}, t0.Add(20 * time.Second)} {
		ev := ami.SecurityEvent{Type: ami.EventInvalidAccountID, Time: at, AccountID: fmt.Sprint(9000 + i),
			SessionID: fmt.Sprint(i), Remote: ami.Address{Transport: "UDP", AddrPort: src}}
		agg.Add(&ev)
	}
	in := agg.Inputs()
	if len(in) != 1 || !in[0].FirstSeen.Equal(t0) || !in[0].LastSeen.Equal(t0.Add(20*time.Second)) || in[0].Counts.UnknownAccount != 3 {
		t.Fatalf("%+v", in)
	}
}

// No text is cut at any width (issue 13: --width 80 cut the footer): long
// lines wrap, nothing ends in an ellipsis, and the footer's words all
// arrive, in order.
func TestNoLineIsCut(t *testing.T) {
	rep := testReport(t)
	footer := "contrib/sample/security.log: 219 lines, 213 events, 0 garbage, 16 with injection evidence; " + strings.Repeat("y", 150)
	for w := 20; w <= 260; w++ {
		var b bytes.Buffer
		if err := WriteTable(&b, rep, TableOptions{Width: w, Footer: []string{footer}}); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		if strings.Contains(out, "…") {
			t.Fatalf("width %d: a cell or line was cut:\n%s", w, out)
		}
		for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
			if Width(l) > w {
				t.Fatalf("width %d: %q is %d wide", w, l, Width(l))
			}
		}
		i := strings.Index(out, "contrib/sample/")
		if i < 0 {
			t.Fatalf("width %d: footer missing:\n%s", w, out)
		}
		if got := strings.Join(strings.Fields(out[i:]), ""); got != strings.Join(strings.Fields(footer), "") {
			t.Fatalf("width %d: footer text changed by wrapping:\n%s", w, out[i:])
		}
		for _, r := range rep.Rows {
			if !strings.Contains(out, r.IP.String()) {
				t.Fatalf("width %d: %s missing", w, r.IP)
			}
		}
	}
}

// What the report tells from the recorded logs (issue 13): challenges
// without an answer, injection apart from other events, accounts that
// authenticated, the PBX's own address marked local, and the header
// counting the same events as the reader.
func TestReportTellsTheTruth(t *testing.T) {
	agg := aggregate(t, "security.log", "security-s9-injection.log")
	rep := Build(agg.Inputs(), testGeo, GeoInfo{ListsLoaded: true, MMDBLoaded: true, AllowCountries: []string{"JP"}, GeoMode: "drop", Enforce: true})
	if err := rep.Apply(Options{}); err != nil {
		t.Fatal(err)
	}
	rows := map[string]Row{}
	for _, r := range rep.Rows {
		rows[r.IP.String()] = r
	}
	if rep.Summary.Events != agg.Events-agg.Unattributed {
		t.Errorf("header events %d, the reader attributed %d", rep.Summary.Events, agg.Events-agg.Unattributed)
	}
	phone := rows["127.0.0.21"]
	if phone.Status != StatusAllowedCountry || len(phone.AccountsOK) != 1 || phone.AccountsOK[0].Account != "1001" {
		t.Errorf("in-country phone: status %q, accounts ok %v; want allowed_country and 1001", phone.Status, phone.AccountsOK)
	}
	push := rows["127.0.0.31"]
	if push.Status != StatusDropped || len(push.AccountsOK) != 1 || push.AccountsOK[0].Account != "1001" {
		t.Errorf("push server: status %q, accounts ok %v; want dropped (geo drop, enforce) and 1001", push.Status, push.AccountsOK)
	}
	ami := rows["127.0.0.1"]
	if !ami.Local || ami.Status == StatusDropped {
		t.Errorf("127.0.0.1 (the PBX's own AMI clients): local %v status %q, want local and not dropped", ami.Local, ami.Status)
	}
	inj := rows["127.0.0.13"]
	// 16 events with injection evidence, three of them the second half of
	// a PJSIP pair (InvalidAccountID + ChallengeSent(<unknown>), one request).
	if inj.Injection != 13 || inj.Other != 0 || inj.Unanswered == 0 {
		t.Errorf("injection source: injection %d other %d unanswered %d; want 13 attempts, 0, >0", inj.Injection, inj.Other, inj.Unanswered)
	}
	var b bytes.Buffer
	if err := WriteTable(&b, rep, TableOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CHAL", "INJ", "allowed: country", "dropped", "local", "!acl1003(2)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

// A challenge for a known account answered on the same session is not
// counted; one never answered is.
func TestUnansweredChallenges(t *testing.T) {
	agg := NewAggregator()
	src := ami.Address{Transport: "UDP", AddrPort: netip.MustParseAddrPort("198.51.100.20:5060")}
	t0 := time.Date(2026, 11, 25, 13, 0, 0, 0, time.UTC)
	for _, ev := range []ami.SecurityEvent{
		{Type: ami.EventChallengeSent, AccountID: "1001", SessionID: "a", Remote: src, Time: t0},
		{Type: ami.EventSuccessfulAuth, AccountID: "1001", SessionID: "a", Remote: src, Time: t0},
		{Type: ami.EventChallengeSent, AccountID: "1001", SessionID: "b", Remote: src, Time: t0},
		{Type: ami.EventChallengeSent, AccountID: "1002", SessionID: "c", Remote: src, Time: t0},
		{Type: ami.EventChallengeSent, AccountID: "1002", SessionID: "c", Remote: src, Time: t0},
	} {
		agg.Add(&ev)
	}
	in := agg.Inputs()
	if len(in) != 1 || in[0].Unanswered != 2 || in[0].Events != 5 {
		t.Fatalf("%+v: want 2 unanswered challenges (sessions b, c) of 5 events", in)
	}
}
