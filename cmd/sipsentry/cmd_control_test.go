package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/internal/config"
	"github.com/sipsentry/sipsentry/internal/control"
	"github.com/sipsentry/sipsentry/internal/daemon"
)

// ctlFake is a control.Handler that records its calls.
type ctlFake struct {
	mu      sync.Mutex
	calls   []string
	monitor bool
	bans    []control.BanRecord
	allows  []control.AllowRecord
}

func (f *ctlFake) rec(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

func (f *ctlFake) Ban(_ context.Context, a netip.Addr, d time.Duration, reason string, uid uint32) (control.BanRecord, error) {
	f.rec("ban %s %v %q uid=%d", a, d, reason, uid)
	if a.IsLoopback() {
		return control.BanRecord{}, fmt.Errorf("%w: %s is never banned: loopback", control.ErrRefused, a)
	}
	r := control.BanRecord{Addr: a, Reason: reason, Origin: "manual", Offence: 2, Monitor: f.monitor, UID: &uid}
	if d != 0 {
		r.Until = time.Now().Add(4 * time.Hour)
	}
	return r, nil
}

func (f *ctlFake) Unban(_ context.Context, a netip.Addr, uid uint32) error {
	f.rec("unban %s uid=%d", a, uid)
	if a != netip.MustParseAddr("203.0.113.7") {
		return fmt.Errorf("%w: %s", control.ErrNotBanned, a)
	}
	return nil
}

func (f *ctlFake) Allow(_ context.Context, p netip.Prefix, d time.Duration, c string, uid uint32) (control.AllowRecord, error) {
	f.rec("allow %s %v %q uid=%d", p, d, c, uid)
	return control.AllowRecord{Prefix: p, Kind: control.AllowManual, Comment: c, UID: &uid}, nil
}

func (f *ctlFake) Disallow(_ context.Context, p netip.Prefix, uid uint32) error {
	f.rec("disallow %s uid=%d", p, uid)
	return fmt.Errorf("%w: %s", control.ErrNotAllowed, p)
}

func (f *ctlFake) Bans(_ context.Context, _ time.Time, each func(control.BanRecord) error) error {
	f.rec("bans")
	for _, b := range f.bans {
		if err := each(b); err != nil {
			return err
		}
	}
	return nil
}

func (f *ctlFake) Allows(_ context.Context, _ time.Time, each func(control.AllowRecord) error) error {
	f.rec("allows")
	for _, a := range f.allows {
		if err := each(a); err != nil {
			return err
		}
	}
	return nil
}

func (f *ctlFake) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// ctlEnv is a config whose control.socket is served by a fake daemon
// (serve = true) or by nobody.
func ctlEnv(t *testing.T, f *ctlFake, serve bool, mode string) string {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "control.sock")
	cfg := filepath.Join(dir, "sipsentry.toml")
	writeFile(t, cfg, fmt.Sprintf("state_dir = %q\n[firewall]\nmode = %q\nbackend = \"dry-run\"\n[control]\nsocket = %q\n",
		filepath.Join(dir, "state"), mode, sock), 0o600)
	if serve {
		s, err := control.Listen(control.ServerOptions{Path: sock, Handler: f,
			Access: control.Access{GroupSet: true, Group: uint32(os.Getgid())}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { s.Serve(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	return cfg
}

func runCtl(t *testing.T, cfg string, args ...string) (string, error) {
	t.Helper()
	root := newRootCommand()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(append([]string{"--config", cfg}, args...))
	err := root.Execute()
	return out.String() + errb.String(), err
}

func isCtlUsage(err error) bool {
	var ue usageError
	return errors.As(err, &ue) || isFlagError(err)
}

func TestBanThroughTheSocket(t *testing.T) {
	f := &ctlFake{}
	cfg := ctlEnv(t, f, true, "enforce")
	uid := os.Getuid()

	out, err := runCtl(t, cfg, "ban", "203.0.113.7", "--reason", "brute force from the log")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "banned 203.0.113.7 until ") || !strings.Contains(out, "offence 2: the kernel drops it from now on") {
		t.Errorf("ban output %q", out)
	}
	if strings.Contains(out, "no daemon") {
		t.Errorf("ban through a running daemon says there is none: %q", out)
	}
	if _, err := runCtl(t, cfg, "ban", "203.0.113.8", "--for", "7d"); err != nil {
		t.Fatal(err)
	}
	if out, err := runCtl(t, cfg, "ban", "203.0.113.9", "--for", "30d"); err != nil || !strings.Contains(out, "banned 203.0.113.9") {
		t.Errorf("ban --for 30d: %q, %v", out, err)
	}

	out, err = runCtl(t, cfg, "ban", "127.0.0.1")
	if err == nil || isCtlUsage(err) || !strings.Contains(err.Error(), "loopback") || !strings.Contains(err.Error(), "refused") {
		t.Errorf("ban 127.0.0.1: %v (output %q); want a refusal with the reason, exit 1", err, out)
	}
	if out, err := runCtl(t, cfg, "unban", "203.0.113.7"); err != nil || !strings.Contains(out, "unbanned 203.0.113.7") {
		t.Errorf("unban: %q, %v", out, err)
	}
	_, err = runCtl(t, cfg, "unban", "203.0.113.99")
	if err == nil || isCtlUsage(err) || !strings.Contains(err.Error(), "not banned") {
		t.Errorf("unban of an address that is not banned: %v; want exit 1 saying so", err)
	}
	if out, err := runCtl(t, cfg, "allow", "198.51.100.0/24", "--for", "12h", "--comment", "office"); err != nil || !strings.Contains(out, "allowed 198.51.100.0/24") {
		t.Errorf("allow: %q, %v", out, err)
	}
	_, err = runCtl(t, cfg, "disallow", "198.51.100.0/24")
	if err == nil || isCtlUsage(err) || !strings.Contains(err.Error(), "no manual or learned allow entry") {
		t.Errorf("disallow of an absent entry: %v", err)
	}
	want := []string{
		fmt.Sprintf("ban 203.0.113.7 -1ns %q uid=%d", "brute force from the log", uid),
		fmt.Sprintf("ban 203.0.113.8 168h0m0s \"\" uid=%d", uid),
		fmt.Sprintf("ban 203.0.113.9 720h0m0s \"\" uid=%d", uid),
		fmt.Sprintf("ban 127.0.0.1 -1ns \"\" uid=%d", uid),
		fmt.Sprintf("unban 203.0.113.7 uid=%d", uid),
		fmt.Sprintf("unban 203.0.113.99 uid=%d", uid),
		fmt.Sprintf("allow 198.51.100.0/24 12h0m0s \"office\" uid=%d", uid),
		fmt.Sprintf("disallow 198.51.100.0/24 uid=%d", uid),
	}
	if got := f.Calls(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("the daemon saw:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestBanInMonitorModeSaysNothingIsDropped(t *testing.T) {
	f := &ctlFake{monitor: true}
	cfg := ctlEnv(t, f, true, "monitor")
	out, err := runCtl(t, cfg, "ban", "203.0.113.7")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "recorded as would-ban") || !strings.Contains(out, `nothing is dropped until firewall.mode = "enforce"`) ||
		strings.Contains(out, "banned 203") || strings.Contains(out, "drops it") {
		t.Errorf("ban in monitor mode printed %q", out)
	}
}

// Usage errors exit 2 and reach no daemon.
func TestControlUsageErrors(t *testing.T) {
	f := &ctlFake{}
	cfg := ctlEnv(t, f, true, "enforce")
	for _, args := range [][]string{
		{"ban"}, {"ban", "203.0.113.7", "203.0.113.8"}, {"ban", "203.0.113.0/24"}, {"ban", "nonsense"},
		{"ban", "203.0.113.7", "--for", "soon"}, {"ban", "203.0.113.7", "--for", "0"}, {"ban", "203.0.113.7", "--reason", "a\nb"},
		{"ban", "203.0.113.7", "--reason", strings.Repeat("r", 201)},
		{"unban"}, {"allow"}, {"allow", "203.0.113.0/33"}, {"disallow"}, {"disallow", "x", "y"},
		{"bans", "extra"}, {"allows", "extra"}, {"bans", "--nope"},
	} {
		_, err := runCtl(t, cfg, args...)
		if !isCtlUsage(err) {
			t.Errorf("sipsentry %s: %v; want a usage error (exit 2)", strings.Join(args, " "), err)
		}
	}
	if calls := f.Calls(); len(calls) != 0 {
		t.Errorf("usage errors reached the daemon: %q", calls)
	}
}

func TestBansAndAllowsListings(t *testing.T) {
	uid := uint32(0)
	until := time.Now().Add(90 * time.Minute)
	f := &ctlFake{
		bans: []control.BanRecord{
			{Addr: netip.MustParseAddr("203.0.113.11"), Country: "CN", Reason: "5 failures in 10m", Origin: "engine", Offence: 1, Until: until},
			{Addr: netip.MustParseAddr("198.51.100.9"), Country: "JP", Reason: "manual\x1b[31m", Origin: "manual", Offence: 3, UID: &uid},
			{Addr: netip.MustParseAddr("203.0.113.12"), Reason: "5 failures in 10m", Origin: "engine", Offence: 1, Until: until, Allowed: true},
		},
		allows: []control.AllowRecord{
			{Prefix: netip.MustParsePrefix("203.0.113.31/32"), Kind: control.AllowLearned, Until: until,
				Evidence: &control.Evidence{How: "user_agent", Account: "1001", UserAgent: "Bria Push Service", LastSeen: time.Now()}},
			{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Kind: control.AllowManual, Comment: "office", UID: &uid},
			{Prefix: netip.MustParsePrefix("192.168.0.0/16"), Kind: control.AllowStatic},
		},
	}
	cfg := ctlEnv(t, f, true, "enforce")
	out, err := runCtl(t, cfg, "bans")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "ADDRESS") || !strings.HasPrefix(lines[1], "198.51.100.9") ||
		!strings.Contains(lines[1], "manual (uid 0)") || !strings.Contains(lines[1], "never") ||
		!strings.Contains(lines[2], "CN") || !strings.Contains(lines[2], "engine") || !strings.Contains(lines[2], "1h30m") ||
		!strings.Contains(lines[3], "engine, held: allowed") || strings.Contains(lines[3], "would-ban") ||
		!strings.Contains(lines[4], "1 are held out of the kernel") || strings.Contains(lines[4], "monitor") {
		t.Errorf("bans table:\n%s", out)
	}
	if strings.Contains(out, "\x1b") {
		t.Errorf("bans printed a raw escape sequence: %q", out)
	}
	out, err = runCtl(t, cfg, "bans", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var bj []map[string]any
	if err := json.Unmarshal([]byte(out), &bj); err != nil {
		t.Fatalf("bans --json: %v\n%s", err, out)
	}
	if len(bj) != 3 || bj[2]["allowed"] != true || bj[1]["addr"] != "203.0.113.11" || bj[1]["country"] != "CN" || bj[1]["origin"] != "engine" ||
		bj[1]["time_left_seconds"].(float64) < 5000 || bj[0]["until"] != nil || bj[0]["uid"].(float64) != 0 {
		t.Errorf("bans --json: %s", out)
	}

	out, err = runCtl(t, cfg, "allows")
	if err != nil {
		t.Fatal(err)
	}
	lines = strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.Contains(lines[1], "static") || !strings.Contains(lines[2], "learned") ||
		!strings.Contains(lines[2], `ua="Bria Push Service"`) || !strings.Contains(lines[3], `"office" by uid 0`) {
		t.Errorf("allows table:\n%s", out)
	}
	out, err = runCtl(t, cfg, "allows", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var aj []struct {
		Prefix   string            `json:"prefix"`
		Kind     string            `json:"kind"`
		Evidence *control.Evidence `json:"evidence"`
	}
	if err := json.Unmarshal([]byte(out), &aj); err != nil || len(aj) != 3 || aj[1].Evidence == nil || aj[1].Evidence.Account != "1001" {
		t.Errorf("allows --json: %v\n%s", err, out)
	}
}

// Without a daemon the same operation goes to the engine opened offline,
// which is closed (flushed) afterwards, and the output says so.
func TestBanWithoutDaemonGoesOffline(t *testing.T) {
	f := &ctlFake{}
	cfg := ctlEnv(t, f, false, "enforce")
	closed := 0
	prev := openOffline
	var listOnly []bool
	openOffline = func(_ context.Context, c *config.Config, o daemon.OfflineOptions) (control.Handler, func() error, error) {
		listOnly = append(listOnly, o.ListOnly)
		return f, func() error { closed++; return nil }, nil
	}
	t.Cleanup(func() { openOffline = prev })
	out, err := runCtl(t, cfg, "ban", "203.0.113.7", "--for", "1h")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "banned 203.0.113.7") || !strings.Contains(out, "no daemon is running") || closed != 1 {
		t.Errorf("offline ban: %q, closed %d times", out, closed)
	}
	if _, err := runCtl(t, cfg, "ban", "127.0.0.1"); err == nil || !strings.Contains(err.Error(), "loopback") || closed != 2 {
		t.Errorf("offline ban 127.0.0.1: %v, closed %d times", err, closed)
	}
	if _, err := runCtl(t, cfg, "bans"); err != nil {
		t.Fatal(err)
	}
	if calls := f.Calls(); len(calls) != 3 {
		t.Errorf("offline calls %q", calls)
	}
	// Only the listing opens the engine without the kernel.
	if fmt.Sprint(listOnly) != "[false false true]" {
		t.Errorf("ListOnly per offline open: %v, want [false false true]", listOnly)
	}
}

// config check (the unit's ExecStartPre) refuses a control.group that run
// could not resolve.
func TestConfigCheckControlGroup(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sipsentry.toml")
	writeFile(t, cfg, fmt.Sprintf("state_dir = %q\n[ami]\nsecret = \"x\"\n[control]\ngroup = \"no-such-group-sipsentry\"\n", filepath.Join(dir, "state")), 0o600)
	out, err := runCtl(t, cfg, "config", "check")
	if !isCtlUsage(err) || !strings.Contains(err.Error(), "control.group") || !strings.Contains(err.Error(), "no-such-group-sipsentry") {
		t.Errorf("config check with an unknown control.group: %v\n%s", err, out)
	}
	writeFile(t, cfg, fmt.Sprintf("state_dir = %q\n[ami]\nsecret = \"x\"\n[control]\ngroup = \"64123\"\n", filepath.Join(dir, "state")), 0o600)
	if out, err := runCtl(t, cfg, "config", "check"); err != nil {
		t.Errorf("config check with a numeric control.group: %v\n%s", err, out)
	}
}
