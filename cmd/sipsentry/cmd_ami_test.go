package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/ami/amitest"
	"github.com/sipsentry/sipsentry/internal/testpath"
)

// lockedBuf is an output buffer the command writes from its event goroutine
// while the test reads it.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedBuf) lines() []string {
	s := strings.TrimSuffix(l.String(), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func amiTailConfig(t *testing.T, addr, secret string, mode os.FileMode) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "sipsentry.toml")
	body := fmt.Sprintf("state_dir = %q\n[log]\nlevel = \"error\"\n[ami]\naddress = %q\nusername = \"sentry\"\nsecret = %q\nauth = \"md5\"\nreconnect_max = \"50ms\"\n",
		dir, addr, secret)
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// tailRun runs `sipsentry ami tail` in-process until stop is called.
type tailRun struct {
	out    *lockedBuf
	cancel context.CancelFunc
	done   chan error
}

func startTail(t *testing.T, args ...string) *tailRun {
	t.Helper()
	r := &tailRun{out: &lockedBuf{}, done: make(chan error, 1)}
	root := newRootCommand()
	root.SetArgs(args)
	root.SetOut(r.out)
	root.SetErr(io.Discard)
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- root.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		default:
			<-r.done
		}
	})
	return r
}

// waitLines blocks until n lines were printed (or the command ended).
func (r *tailRun) waitLines(t *testing.T, n int) []string {
	t.Helper()
	for {
		if ls := r.out.lines(); len(ls) >= n {
			return ls
		}
		select {
		case err := <-r.done:
			r.done <- err
			t.Fatalf("ami tail ended early (%v) after:\n%s", err, r.out)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// amiRecording is a file of ../shared/testdata/asterisk beside the repo root.
func amiRecording(t *testing.T, name string) string {
	t.Helper()
	return testpath.Shared(t, "asterisk", name)
}

func recordedSecurityEvents(t *testing.T, raw []byte) []ami.SecurityEvent {
	t.Helper()
	rd := ami.NewReader(bytes.NewReader(raw), ami.ReaderOptions{})
	var out []ami.SecurityEvent
	for {
		m, err := rd.ReadMessage()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if ami.IsSecurityEvent(&m) {
			ev, err := ami.ParseSecurityEvent(&m)
			if err != nil {
				t.Fatalf("recorded event does not parse: %v", err)
			}
			out = append(out, ev)
		}
	}
}

// sessionEvents is the recorded monitoring stream from its first event on
// (the fake server sends its own banner and login response).
func sessionEvents(t *testing.T) []byte {
	raw, err := os.ReadFile(amiRecording(t, "ami-security-session.raw"))
	if err != nil {
		t.Fatal(err)
	}
	return raw[bytes.Index(raw, []byte("Event: ")):]
}

func TestAMITailJSONReplaysRecordedSession(t *testing.T) {
	srv := amitest.NewServer(t, amitest.Options{})
	cfg := amiTailConfig(t, srv.Addr(), "sentry-secret", 0o600)
	raw := sessionEvents(t)
	want := recordedSecurityEvents(t, raw)
	if len(want) != 172 {
		t.Fatalf("recording has %d security events, README says 172", len(want))
	}

	r := startTail(t, "--config", cfg, "ami", "tail", "--json")
	if !srv.WaitLogins(1) {
		t.Fatal("no login")
	}
	login, _ := srv.WaitRequest("Login")
	if ev := login.Get("Events"); ev != "security,system" || login.Get("AuthType") != "MD5" {
		t.Errorf("login Events=%q AuthType=%q", ev, login.Get("AuthType"))
	}
	srv.Send(raw)
	lines := r.waitLines(t, len(want))
	r.cancel()
	if err := <-r.done; err != nil {
		t.Fatalf("ami tail after cancel: %v", err)
	}
	r.done <- nil
	if _, ok := srv.WaitRequest("Logoff"); !ok {
		t.Error("no Logoff on cancel")
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d (one per security event)", len(lines), len(want))
	}
	type row struct {
		Time, Event, Service, Account, Session, Transport, IP, Local, Severity, Suspicion string
		Port                                                                              int
		UsingPassword                                                                     string `json:"using_password"`
	}
	seen := map[string]bool{}
	for i, l := range lines {
		var g row
		if err := json.Unmarshal([]byte(l), &g); err != nil {
			t.Fatalf("line %d is not JSON: %v: %s", i, err, l)
		}
		w := want[i]
		if g.Event != w.Type || g.IP != w.Remote.Addr().String() || g.Port != int(w.Remote.AddrPort.Port()) ||
			g.Transport != w.Remote.Transport || g.Account != w.AccountID || g.Session != w.SessionID ||
			g.Service != w.Service || g.Severity != w.Severity || g.Local != w.Local.AddrPort.String() ||
			g.Time != w.Time.UTC().Format("2006-01-02T15:04:05.000Z07:00") || g.Suspicion != "" {
			t.Errorf("line %d = %s\nwant %+v", i, l, w)
		}
		seen[fmt.Sprintf("%s %s %d %s", g.Event, g.IP, g.Port, g.Transport)] = true
		seen[g.IP] = true
		if i == 0 && (g.Event != "SuccessfulAuth" || g.Account != "sentry" || g.UsingPassword != "0") {
			t.Errorf("first event should be sentry's own AMI login with using_password 0: %s", l)
		}
	}
	// Spot checks written by hand from the README's roles table.
	for _, k := range []string{
		"InvalidAccountID 127.0.0.11 5070 UDP", // s1 scanner
		"InvalidAccountID ::1 5077 UDP",        // s8a IPv6
		"InvalidAccountID 127.0.0.12 5078 TCP", // s8b TCP
		"ChallengeResponseFailed 127.0.0.11 5071 UDP",
		"203.0.113.66", // s8c/d from the namespace
	} {
		if !seen[k] {
			t.Errorf("no event %q printed", k)
		}
	}
}

func TestAMITailLines(t *testing.T) {
	srv := amitest.NewServer(t, amitest.Options{})
	cfg := amiTailConfig(t, srv.Addr(), "sentry-secret", 0o600)
	r := startTail(t, "--config", cfg, "ami", "tail")
	srv.WaitLogins(1)
	raw, err := os.ReadFile(amiRecording(t, "ami-s8-ipv6-tcp-netns.raw"))
	if err != nil {
		t.Fatal(err)
	}
	want := recordedSecurityEvents(t, raw)
	srv.Send(raw)
	lines := r.waitLines(t, len(want))
	text := strings.Join(lines, "\n")
	for _, s := range []string{
		`InvalidAccountID        PJSIP  "100"`,
		"[::1]:5077             UDP",
		"127.0.0.12:5078        TCP",
		"203.0.113.66:5060",
		"2026-11-25T13:1",
	} {
		if !strings.Contains(text, s) {
			t.Errorf("output lacks %q:\n%s", s, text)
		}
	}

	// An injected CR LF in the account is quoted, never printed raw, and the
	// event is flagged.
	srv.Send([]byte("Event: InvalidAccountID\r\nPrivilege: security,all\r\nEventTV: 2026-11-25T13:44:00.000+0000\r\nSeverity: Error\r\nService: PJSIP\r\nEventVersion: 1\r\nAccountID: x\r\nRemoteAddress: IPV4/UDP/6.6.6.6/1\r\nSessionID: 1-4323@127.0.0.13\r\nLocalAddress: IPV4/UDP/127.0.0.1/5060\r\nRemoteAddress: IPV4/UDP/127.0.0.13/5099\r\n\r\n"))
	last := r.waitLines(t, len(want)+1)[len(want)]
	if !strings.Contains(last, "127.0.0.13:5099") || strings.Contains(last, "6.6.6.6") || !strings.Contains(last, "SUSPICIOUS") {
		t.Errorf("injected event printed as %q", last)
	}
}

func TestAMITailWrongSecret(t *testing.T) {
	srv := amitest.NewServer(t, amitest.Options{})
	cfg := amiTailConfig(t, srv.Addr(), "not-the-secret", 0o600)
	r := startTail(t, "--config", cfg, "ami", "tail")
	err := <-r.done
	r.done <- err
	if !errors.Is(err, ami.ErrAuth) || !strings.Contains(err.Error(), "sentry@"+srv.Addr()) {
		t.Fatalf("err = %v, want ErrAuth naming sentry@%s", err, srv.Addr())
	}
	var ue usageError
	if errors.As(err, &ue) {
		t.Error("wrong credentials must exit 1 (failure), not 2 (usage)")
	}
	if srv.FailedLogins() != 1 {
		t.Errorf("%d login attempts, want 1", srv.FailedLogins())
	}
}

func TestAMITailInsecureConfig(t *testing.T) {
	cfg := amiTailConfig(t, "127.0.0.1:1", "sentry-secret", 0o644)
	r := startTail(t, "--config", cfg, "ami", "tail")
	err := <-r.done
	r.done <- err
	if err == nil || !strings.Contains(err.Error(), "chmod 600 "+cfg) {
		t.Fatalf("err = %v, want the chmod hint for %s", err, cfg)
	}
}

func TestSnakeCase(t *testing.T) {
	for in, want := range map[string]string{
		"ExpectedResponse": "expected_response", "ACLName": "acl_name", "UsingPassword": "using_password",
		"Challenge": "challenge", "SessionTV": "session_tv", "LocalAddress": "local_address",
	} {
		if got := snakeCase(in); got != want {
			t.Errorf("snakeCase(%q) = %q, want %q", in, got, want)
		}
	}
}

// The recorded injection attempts (README "s9 injection"): no line may name
// the forged 6.6.6.6 as the source, and the forged or split events are
// flagged.
func TestAMITailInjectionCapture(t *testing.T) {
	srv := amitest.NewServer(t, amitest.Options{})
	cfg := amiTailConfig(t, srv.Addr(), "sentry-secret", 0o600)
	raw, err := os.ReadFile(amiRecording(t, "ami-s9-injection.raw"))
	if err != nil {
		t.Fatal(err)
	}
	raw = raw[557:] // after banner, login response, FullyBooted and sentry's SuccessfulAuth
	r := startTail(t, "--config", cfg, "ami", "tail", "--json")
	srv.WaitLogins(1)
	srv.Send(raw)
	// 40 PJSIP events + the forged SuccessfulAuth block; a marker event
	// after them shows that nothing more was printed.
	srv.Send([]byte("Event: SuccessfulAuth\r\nPrivilege: security,all\r\nEventTV: 2026-11-25T13:45:00.000+0000\r\nSeverity: Informational\r\nService: AMI\r\nEventVersion: 1\r\nAccountID: marker\r\nSessionID: 0x1\r\nLocalAddress: IPV4/TCP/127.0.0.1/5038\r\nRemoteAddress: IPV4/TCP/127.0.0.13/40000\r\nUsingPassword: 0\r\nSessionTV: 2026-11-25T13:45:00.000+0000\r\n\r\n"))
	lines := r.waitLines(t, 42)
	if len(lines) != 42 || !strings.Contains(lines[41], `"account":"marker"`) {
		t.Fatalf("want 41 events then the marker, got %d lines, last %s", len(lines), lines[len(lines)-1])
	}
	lines = lines[:41]
	suspicious := 0
	for _, l := range lines {
		var g struct{ IP, Suspicion string }
		if err := json.Unmarshal([]byte(l), &g); err != nil {
			t.Fatal(err)
		}
		if g.IP == "6.6.6.6" || (g.IP != "" && g.IP != "127.0.0.13") {
			t.Errorf("wrong source in %s", l)
		}
		if g.Suspicion != "" {
			suspicious++
		}
	}
	if suspicious < 2 { // s9-10 (repeated RemoteAddress), s9-11 (split + forged block)
		t.Errorf("%d events flagged, want at least the s9-10 and s9-11 ones", suspicious)
	}
}
