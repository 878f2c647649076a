package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/activity"
	"github.com/sipsentry/sipsentry/internal/testpath"
	"github.com/sipsentry/sipsentry/state"
)

var (
	updateSourcesGolden = flag.Bool("update", false, "rewrite golden files (sources tests)")
	updateSample        = flag.Bool("update-sample", false, "regenerate contrib/sample from ../shared/testdata")
)

// srcRepoRoot is the directory holding go.mod.
func srcRepoRoot(t testing.TB) string {
	t.Helper()
	return testpath.RepoRoot(t)
}

func srcShared(t testing.TB, rel string) string {
	t.Helper()
	return testpath.Shared(t, rel)
}

// runSourcesCmd runs `sipsentry sources args...` in-process with an empty
// config file (so a config on the test machine cannot change the output).
func runSourcesCmd(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "empty.toml")
	if err := os.WriteFile(cfg, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	root := newRootCommand()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(append([]string{"--config", cfg, "sources"}, args...))
	err = root.Execute()
	return out.String(), errb.String(), err
}

// ---- the shipped sample ----

// sampleMap rewrites the recorded loopback (and TEST-NET) sources to real
// addresses inside the shipped country lists. 127.0.0.1 (the AMI clients
// on the PBX itself) and the PBX's own LocalAddress values are kept.
var sampleMap = []struct{ from, to, cc, role string }{
	{"127.0.0.11", "1.12.34.56", "CN", "SIP scanner and brute force (UDP)"},
	{"127.0.0.12", "5.16.77.12", "RU", "scanner over TCP"},
	{"::1", "2001:1284:7:77::1", "BR", "scanner over IPv6"},
	{"203.0.113.66", "43.128.66.66", "SG", "scanner reaching the PBX's second address"},
	{"127.0.0.21", "1.72.21.21", "JP", "the user's phone (Bria iOS)"},
	{"127.0.0.22", "14.8.22.22", "JP", "desk phone 1002 (TCP)"},
	{"127.0.0.31", "8.192.31.31", "US", "Bria push server registering 1001"},
	{"127.0.0.13", "2.160.13.13", "DE", "header-injection attacker (6.6.6.6 only appears inside its payloads)"},
}

var sampleLists = []string{"br", "cn", "de", "jp", "ru", "sg", "us"}

func sampleHeader() string {
	var m []string
	for _, e := range sampleMap {
		m = append(m, fmt.Sprintf("%s->%s %s", e.from, e.to, e.cc))
	}
	return "[Nov 25 13:12:03] NOTICE[0] sipsentry-sample: this is Asterisk 22.10.1's real security log from the recording in " +
		"shared/testdata/asterisk (security.log, then security-s9-injection.log), with the SIP source addresses rewritten " +
		"to addresses from the country lists in contrib/sample/lists: " + strings.Join(m, ", ") +
		". 127.0.0.1 (AMI clients on the PBX) and the PBX's own addresses are kept. See contrib/sample/README.md.\n"
}

func rewriteSample(src []byte) []byte {
	s := string(src)
	for _, e := range sampleMap {
		if e.from == "::1" {
			// The scanner's address only; the PBX's LocalAddress "IPV6/UDP/::1/5060" stays.
			s = strings.ReplaceAll(s, `RemoteAddress="IPV6/UDP/::1/`, `RemoteAddress="IPV6/UDP/`+e.to+`/`)
			s = strings.ReplaceAll(s, `@::1"`, `@`+e.to+`"`)
			continue
		}
		re := regexp.MustCompile(`\b` + regexp.QuoteMeta(e.from) + `\b`)
		s = re.ReplaceAllString(s, e.to)
	}
	return []byte(s)
}

func buildSample(t *testing.T) []byte {
	var b bytes.Buffer
	b.WriteString(sampleHeader())
	for _, name := range []string{"security.log", "security-s9-injection.log"} {
		src, err := os.ReadFile(srcShared(t, "asterisk/"+name))
		if err != nil {
			t.Fatal(err)
		}
		b.Write(rewriteSample(src))
	}
	return b.Bytes()
}

// TestSampleIsTheRecordedLog keeps contrib/sample honest: the shipped log is
// exactly the recording with the documented rewrite, and the lists are the
// shared CC0 copies. -update-sample regenerates both.
func TestSampleIsTheRecordedLog(t *testing.T) {
	root := srcRepoRoot(t)
	dir := filepath.Join(root, "contrib", "sample")
	want := buildSample(t)
	body := want[len(sampleHeader()):]
	if bytes.Contains(body, []byte("127.0.0.11")) || bytes.Contains(body, []byte("RemoteAddress=\"IPV6/UDP/::1/")) {
		t.Fatal("rewrite left a recorded source behind")
	}
	if *updateSample {
		if err := os.MkdirAll(filepath.Join(dir, "lists"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "security.log"), want, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, cc := range sampleLists {
			for _, fam := range []string{"ipv4", "ipv6"} {
				b, err := os.ReadFile(srcShared(t, "geo/"+cc+"-"+fam+"-aggregated.txt"))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "lists", cc+"-"+fam+".txt"), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	got, err := os.ReadFile(filepath.Join(dir, "security.log"))
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/sipsentry -run TestSampleIsTheRecordedLog -update-sample)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("contrib/sample/security.log is not the recorded log with the documented rewrite (regenerate with -update-sample)")
	}
	for _, cc := range sampleLists {
		for _, fam := range []string{"ipv4", "ipv6"} {
			a, err1 := os.ReadFile(srcShared(t, "geo/"+cc+"-"+fam+"-aggregated.txt"))
			b, err2 := os.ReadFile(filepath.Join(dir, "lists", cc+"-"+fam+".txt"))
			if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
				t.Fatalf("contrib/sample/lists/%s-%s.txt differs from the shared CC0 list (%v %v)", cc, fam, err1, err2)
			}
			if !bytes.Contains(b[:min(len(b), 400)], []byte("CC0")) {
				t.Fatalf("%s-%s.txt lost its CC0 header", cc, fam)
			}
		}
	}
}

// ---- the README's first command and golden output ----

// sampleArgs runs from the repository root with the README's relative
// paths, so the output (which names the file) does not depend on where the
// checkout lives.
func sampleArgs(t *testing.T, extra ...string) []string {
	t.Chdir(srcRepoRoot(t))
	return append([]string{"--from-log", filepath.Join("contrib", "sample", "security.log"),
		"--lists-dir", filepath.Join("contrib", "sample", "lists")}, extra...)
}

func sourcesGolden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join(srcRepoRoot(t), "cmd", "sipsentry", "testdata", name)
	if *updateSourcesGolden {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (go test ./cmd/sipsentry -run TestSources -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (rerun with -update if intended)\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestSourcesSampleGolden(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
	}{
		{"sources-sample.table.golden", nil},
		{"sources-sample-narrow.table.golden", []string{"--width", "72"}},
		{"sources-sample.json.golden", []string{"--json"}},
		{"sources-sample.csv.golden", []string{"--csv"}},
		{"sources-sample-filtered.table.golden", []string{"--allow", "JP", "--min-failures", "3", "--sort", "failures", "--limit", "4"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := sampleArgs(t, c.args...)
			out, errOut, err := runSourcesCmd(t, args...)
			if err != nil {
				t.Fatalf("%v\n%s", err, errOut)
			}
			sourcesGolden(t, c.name, out)
		})
	}
}

type jsonRow struct {
	IP             string `json:"ip"`
	CountryList    string `json:"country_list"`
	AuthOK         int    `json:"auth_ok"`
	UnknownAccount int    `json:"unknown_account"`
	Injection      int    `json:"injection"`
	Status         string `json:"status"`
}

func sourcesJSON(t *testing.T, args ...string) ([]jsonRow, string) {
	t.Helper()
	out, errOut, err := runSourcesCmd(t, append(args, "--json")...)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	var rows []jsonRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return rows, errOut
}

// Every row of the sample has the country the rewrite promised.
func TestSourcesSampleCountries(t *testing.T) {
	rows, _ := sourcesJSON(t, sampleArgs(t)...)
	byIP := map[string]jsonRow{}
	for _, r := range rows {
		byIP[r.IP] = r
	}
	for _, e := range sampleMap {
		r, ok := byIP[e.to]
		if !ok {
			t.Errorf("no row for %s (%s)", e.to, e.role)
			continue
		}
		if r.CountryList != e.cc {
			t.Errorf("%s: list country %q, want %s", e.to, r.CountryList, e.cc)
		}
	}
	if _, ok := byIP["6.6.6.6"]; ok {
		t.Error("a row for 6.6.6.6, which only appears inside attacker values")
	}
	if len(rows) != len(sampleMap)+1 { // + 127.0.0.1
		t.Errorf("%d rows, want %d", len(rows), len(sampleMap)+1)
	}
}

// The log and the AMI capture of the same s9 session must agree on who
// tried to inject and how often.
func TestSourcesInjectionLogAndAMIAgree(t *testing.T) {
	count := func(args ...string) int {
		rows, _ := sourcesJSON(t, args...)
		for _, r := range rows {
			if r.IP == "6.6.6.6" {
				t.Fatalf("%v: a row for 6.6.6.6", args)
			}
			if r.IP == "127.0.0.13" {
				return r.Injection
			}
		}
		t.Fatalf("%v: no row for 127.0.0.13", args)
		return 0
	}
	fromLog := count("--from-log", srcShared(t, "asterisk/security-s9-injection.log"))
	fromAMI := count("--from-ami", srcShared(t, "asterisk/ami-s9-injection.raw"))
	// 16 events with injection evidence are 13 attempts: three forged
	// requests each gave the PJSIP pair InvalidAccountID + ChallengeSent
	// (issue 13: one request was counted twice).
	if fromLog != 13 || fromAMI != 13 {
		t.Fatalf("injection attempts: log %d, AMI %d; want 13 from both", fromLog, fromAMI)
	}
}

// The s9 recording through the CLI: 40 PJSIP events for 127.0.0.13, one AMI
// login for 127.0.0.1, nothing for 6.6.6.6.
func TestSourcesInjectionLog(t *testing.T) {
	rows, errOut := sourcesJSON(t, "--from-log", srcShared(t, "asterisk/security-s9-injection.log"))
	if len(rows) != 2 {
		t.Fatalf("rows %+v", rows)
	}
	for _, r := range rows {
		switch r.IP {
		case "127.0.0.13":
			// 16 events carry a forged key: s9-01..05 (Call-ID), s9-07..09
			// (From user), s9-10/11 (CR LF), s9-17/18 (digest fields); three
			// of them are second halves of a PJSIP pair: 13 attempts.
			if r.Status != "flagged" || r.Injection != 13 {
				t.Errorf("127.0.0.13: %+v", r)
			}
		case "127.0.0.1":
			if r.AuthOK != 1 {
				t.Errorf("127.0.0.1: %+v", r)
			}
		default:
			t.Errorf("unexpected row %+v", r)
		}
	}
	if !strings.Contains(errOut, "45 lines, 41 events, 0 garbage, 16 with injection evidence") {
		t.Errorf("summary on stderr: %q", errOut)
	}
}

func TestSourcesFromAMICapture(t *testing.T) {
	rows, errOut := sourcesJSON(t, "--from-ami", srcShared(t, "asterisk/ami-s9-injection.raw"))
	seen := map[string]bool{}
	for _, r := range rows {
		seen[r.IP] = true
		if r.IP == "6.6.6.6" {
			t.Fatalf("row for the forged 6.6.6.6: %+v", r)
		}
	}
	if !seen["127.0.0.13"] || len(rows) != 2 {
		t.Fatalf("rows %+v", rows)
	}
	if !strings.Contains(errOut, "1 without a source") {
		t.Errorf("the split InvalidAccountID of s9-11 must be counted as without a source: %q", errOut)
	}
	// The whole recorded session over AMI gives the same sources as the log.
	amiRows, _ := sourcesJSON(t, "--from-ami", srcShared(t, "asterisk/ami-security-session.raw"))
	logRows, _ := sourcesJSON(t, "--from-log", srcShared(t, "asterisk/security.log"))
	if fmt.Sprint(amiRows) != fmt.Sprint(logRows) {
		t.Errorf("AMI capture and security log disagree:\nami %+v\nlog %+v", amiRows, logRows)
	}
}

func TestSourcesGarbageCounted(t *testing.T) {
	src, err := os.ReadFile(srcShared(t, "asterisk/security.log"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(src), "\n")
	// Garbage in the middle: a stray line and a record cut short.
	bad := append([]string{}, lines[:10]...)
	bad = append(bad, "random noise\n", lines[10][:80]+"\n")
	bad = append(bad, lines[11:]...)
	p := filepath.Join(t.TempDir(), "security")
	if err := os.WriteFile(p, []byte(strings.Join(bad, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err := runSourcesCmd(t, "--from-log", p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "174 lines, 171 events, 2 garbage (first at line 11)") {
		t.Errorf("footer: %s", out)
	}
}

func TestSourcesMissingFile(t *testing.T) {
	_, _, err := runSourcesCmd(t, "--from-log", filepath.Join(t.TempDir(), "nope.log"))
	if exitCode(err) != exitUsage || !strings.Contains(err.Error(), "nope.log: no such file") {
		t.Fatalf("err %v, want a usage error (exit 2) naming the file", err)
	}
	_, _, err = runSourcesCmd(t, "--from-ami", filepath.Join(t.TempDir(), "nope.raw"))
	if exitCode(err) != exitUsage {
		t.Fatalf("--from-ami: err %v, want a usage error", err)
	}
	_, _, err = runSourcesCmd(t, "--db", filepath.Join(t.TempDir(), "nope.db"))
	if exitCode(err) != exitUsage || !strings.Contains(err.Error(), "--from-log") {
		t.Fatalf("--db: err %v, want a usage error with a hint", err)
	}
}

func TestSourcesBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--sort", "bogus"}, {"--status", "bogus"}, {"--since", "yesterday-ish"}, {"--country", "XX"},
	} {
		_, _, err := runSourcesCmd(t, append(sampleArgs(t), args...)...)
		if exitCode(err) != exitUsage {
			t.Errorf("%v: err %v, want a usage error", args, err)
		}
	}
}

// Live mode reads the daemon's DB read-only, also while the daemon holds
// it open with a write transaction in progress (WAL).
func TestSourcesLiveDBWhileLocked(t *testing.T) {
	dir := t.TempDir()
	path := state.Path(dir)
	st, err := state.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now().UTC().Truncate(time.Second)
	scanner := activity.Source{Addr: netip.MustParseAddr("198.51.100.7"), FirstSeen: now.Add(-time.Hour), LastSeen: now.Add(-time.Minute),
		Counts: activity.Counts{UnknownAccount: 40, AuthFailed: 3}, Accounts: []activity.AccountCount{{Account: "100", Count: 5}, {Account: "101", Count: 2}},
		DistinctAccounts: 2, LastUserAgent: "friendly-scanner"}
	push := activity.Source{Addr: netip.MustParseAddr("203.0.113.31"), FirstSeen: now.Add(-2 * time.Hour), LastSeen: now.Add(-2 * time.Minute),
		Counts: activity.Counts{AuthOK: 4}, LastUserAgent: "Bria Push Service"}
	err = st.Apply(context.Background(), &state.Batch{
		Sources: []state.SourceUpdate{{Session: 1, Source: scanner}, {Session: 1, Source: push}},
		Bans:    []state.Ban{{Addr: scanner.Addr, Until: now.Add(4 * time.Hour), Offences: 2, Reason: "43 failures in 10m", Created: now}},
		Allows: []state.Allow{{Prefix: netip.PrefixFrom(push.Addr, 32), PushEvidence: state.PushEvidence{How: state.HowUserAgent,
			Account: "1001", UserAgent: "Bria Push Service", FirstSeen: now.Add(-time.Hour), LastSeen: now}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	// A second writer connection holds the write lock, like the daemon mid-batch.
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(100)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`CREATE TABLE lock_probe(x)`); err != nil {
		t.Fatal(err)
	}

	out, errOut, err := runSourcesCmd(t, "--db", path, "--json")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	var rows []struct {
		IP          string     `json:"ip"`
		Status      string     `json:"status"`
		Offences    int        `json:"offences"`
		BannedUntil *time.Time `json:"banned_until"`
		Unknown     int        `json:"unknown_account"`
		UA          string     `json:"last_user_agent"`
		Notes       []string   `json:"notes"`
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(rows) != 2 {
		t.Fatalf("rows: %s", out)
	}
	for _, r := range rows {
		switch r.IP {
		case "198.51.100.7":
			if r.Status != "banned" || r.Offences != 2 || r.BannedUntil == nil || !r.BannedUntil.Equal(now.Add(4*time.Hour)) ||
				r.Unknown != 40 || r.UA != "friendly-scanner" {
				t.Errorf("banned row: %+v", r)
			}
		case "203.0.113.31":
			if r.Status != "learned_push" || len(r.Notes) == 0 || !strings.Contains(r.Notes[0], "Bria Push Service") {
				t.Errorf("push row: %+v", r)
			}
		default:
			t.Errorf("unexpected row %+v", r)
		}
	}
	table, _, err := runSourcesCmd(t, "--db", path, "--width", "250")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table, "banned until "+now.Add(4*time.Hour).Format("2006-01-02 15:04:05")+" (offence 2)") ||
		!strings.Contains(table, "bans: 1") || !strings.Contains(table, "learned push") {
		t.Errorf("table:\n%s", table)
	}
}
